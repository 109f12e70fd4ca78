//! A relay's memory, for memory per slot: its resident set from
//! `/proc/PID/status` and the kernel's socket objects from `/proc/slabinfo`.
//!
//! Resident memory does not include what the kernel allocates per socket
//! (the UDP `struct sock`, its inode, the open file), which for a relay
//! holding four sockets per call is most of its memory per call; the
//! slab counts give it. `/proc/slabinfo` is readable by root only, and its
//! counts are machine-wide: other processes opening sockets or files at
//! the same time add noise.

use serde::{Deserialize, Serialize};

/// Slab caches a UDP socket allocates from, one object each: the socket
/// (`UDP`), its inode (`sock_inode_cache`). `filp` and `dentry` (one each
/// per socket too) are left out: compilers and tests churn them.
pub const SOCKET_SLABS: [&str; 2] = ["UDP", "sock_inode_cache"];

/// One snapshot of a process's memory (kB, as `/proc/PID/status` gives
/// it) and of the socket slab caches (objects in use, bytes per object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemSnapshot {
    /// `VmRSS`: resident set, kB (anonymous + file + shared memory).
    pub vm_rss_kb: u64,
    /// `RssAnon`: heap, stacks, kB.
    pub rss_anon_kb: u64,
    /// `RssFile`: mapped files (the binary), kB.
    pub rss_file_kb: u64,
    /// `RssShmem`: touched pages of shared memory (the slot table), kB.
    pub rss_shmem_kb: u64,
    /// Open file descriptors (`/proc/PID/fd` entries).
    pub fds: u64,
    /// Per cache of [`SOCKET_SLABS`]: (name, active objects, object bytes);
    /// empty when `/proc/slabinfo` cannot be read.
    pub slabs: Vec<(String, u64, u64)>,
}

impl MemSnapshot {
    /// Reads the snapshot of `pid`; `None` when its status cannot be read
    /// (it exited).
    pub fn read(pid: u32) -> Option<MemSnapshot> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let mut m = parse_status(&status)?;
        m.fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        if let Ok(s) = std::fs::read_to_string("/proc/slabinfo") {
            m.slabs = parse_slabinfo(&s, &SOCKET_SLABS);
        }
        Some(m)
    }

    /// Bytes in the socket slab caches (active objects × object size).
    pub fn slab_bytes(&self) -> u64 {
        self.slabs.iter().map(|(_, n, size)| n * size).sum()
    }
}

/// The kB fields of a `/proc/PID/status` text; `None` without `VmRSS`.
pub fn parse_status(s: &str) -> Option<MemSnapshot> {
    let kb = |key: &str| -> Option<u64> {
        s.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some(MemSnapshot {
        vm_rss_kb: kb("VmRSS")?,
        rss_anon_kb: kb("RssAnon").unwrap_or(0),
        rss_file_kb: kb("RssFile").unwrap_or(0),
        rss_shmem_kb: kb("RssShmem").unwrap_or(0),
        ..MemSnapshot::default()
    })
}

/// (name, active objects, object size) of each cache of `names` found in
/// a `/proc/slabinfo` text (version 2.1: `name active_objs num_objs
/// objsize ...`).
pub fn parse_slabinfo(s: &str, names: &[&str]) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for line in s.lines() {
        let mut f = line.split_whitespace();
        let Some(name) = f.next() else { continue };
        if !names.contains(&name) {
            continue;
        }
        let active = f.next().and_then(|v| v.parse().ok());
        let size = f.nth(1).and_then(|v| v.parse().ok());
        if let (Some(active), Some(size)) = (active, size) {
            out.push((name.to_string(), active, size));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_slabinfo() {
        let status = "Name:\ttern\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nRssAnon:\t    2000 kB\nRssFile:\t   10000 kB\nRssShmem:\t     345 kB\nThreads:\t4\n";
        let m = parse_status(status).unwrap();
        assert_eq!(
            (m.vm_rss_kb, m.rss_anon_kb, m.rss_file_kb, m.rss_shmem_kb),
            (12345, 2000, 10000, 345)
        );
        assert_eq!(
            parse_status("Name:\tx\n"),
            None,
            "no VmRSS: a kernel thread"
        );

        let slab = "slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> ...\nUDPv6 1 2 1536 21 8 : x\nUDP                   97    156   1344   12    4 : tunables    0    0    0 : slabdata     13     13      0\nsock_inode_cache     199    323    832   19    4 : t\nfilp 1 1 192\nbroken\n";
        let s = parse_slabinfo(slab, &SOCKET_SLABS);
        assert_eq!(
            s,
            vec![
                ("UDP".to_string(), 97, 1344),
                ("sock_inode_cache".to_string(), 199, 832)
            ]
        );
        let m = MemSnapshot {
            slabs: s,
            ..MemSnapshot::default()
        };
        assert_eq!(m.slab_bytes(), 97 * 1344 + 199 * 832);
    }
}
