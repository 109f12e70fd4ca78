//! The fast path's BPF maps as seen from userspace: the layouts of
//! `bpf/fastpath.c` (change both together) and a worker's handle on the
//! pinned maps.

use std::net::SocketAddrV4;
use std::path::Path;

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use aya::Pod;

use crate::FastPathError;

/// Entry flag: the direction allows forwarding (else the packet is dropped
/// and counted as held).
pub const FP_FORWARD: u16 = 1;
/// Entry flag: rewrite SSRC, sequence number and timestamp.
pub const FP_REWRITE: u16 = 2;

/// Key of `tern_fwd`: the receiving leg's local IPv4 address and RTP port,
/// both in network byte order (8 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FpKey {
    /// Local address, network order.
    pub addr: u32,
    /// Local RTP port, network order.
    pub port: u16,
    /// Zero.
    pub pad: u16,
}

// SAFETY: plain integers, no padding (4 + 2 + 2 bytes).
unsafe impl Pod for FpKey {}

impl FpKey {
    /// The key of local address `a`.
    pub fn new(a: SocketAddrV4) -> FpKey {
        FpKey {
            addr: u32::from(*a.ip()).to_be(),
            port: a.port().to_be(),
            pad: 0,
        }
    }
}

/// One direction of a slot in `tern_fwd` (72 bytes): where the packets of
/// the latched source go and how they are rewritten. Addresses and ports
/// in network order, SSRCs and deltas in host order.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FpEntry {
    /// The latched source address the receiving leg accepts.
    pub src_addr: u32,
    /// Its port.
    pub src_port: u16,
    /// [`FP_FORWARD`], [`FP_REWRITE`].
    pub flags: u16,
    /// The other leg's local address (the packet's new source).
    pub out_saddr: u32,
    /// The other leg's peer (the packet's new destination).
    pub out_daddr: u32,
    /// The other leg's local RTP port.
    pub out_sport: u16,
    /// The other leg's peer's port.
    pub out_dport: u16,
    /// With [`FP_REWRITE`]: the input SSRC mapped now; another goes up.
    pub in_ssrc: u32,
    /// With [`FP_REWRITE`]: the SSRC sent.
    pub out_ssrc: u32,
    /// `out_ts = in_ts + ts_delta` (wrapping).
    pub ts_delta: u32,
    /// `out_seq = in_seq + seq_delta` (wrapping).
    pub seq_delta: u16,
    /// TOS byte of what is sent (EF, as the sockets mark).
    pub tos: u8,
    /// Zero.
    pub pad: u8,
    /// Index into `tern_stats` (the receiving leg: slot id × 2 + leg).
    pub stat: u32,
    /// Highest output sequence number sent by the fast path (low 16 bits),
    /// written by the program: a source switch continues after it.
    pub newest_seq: u32,
    /// The output timestamp of that packet.
    pub newest_ts: u32,
    /// Payload types sent up to the worker (bit n: PT n), e.g.
    /// telephone-event for DTMF detection, or those the leg does not allow.
    pub up_pt: [u64; 2],
    /// The interface toward the other leg's peer; 0: the one the packet
    /// arrived on.
    pub out_ifindex: u32,
    /// Zero.
    pub pad2: u32,
}

// SAFETY: plain integers laid out without padding (72 bytes, checked in tests).
unsafe impl Pod for FpEntry {}

impl FpEntry {
    /// Marks payload type `pt` (0–127) to go up.
    pub fn send_up(&mut self, pt: u8) {
        let pt = pt & 0x7f;
        self.up_pt[usize::from(pt >> 6)] |= 1 << (pt & 63);
    }
}

/// What the fast path did for one direction (per CPU in `tern_stats`;
/// summed by [`FastPathMaps::stats`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FpStats {
    /// Packets forwarded.
    pub packets: u64,
    /// Their UDP payload bytes.
    pub bytes: u64,
    /// Packets dropped because the direction forbids them (hold).
    pub held: u64,
    /// Zero.
    pub pad: u64,
}

// SAFETY: four u64s.
unsafe impl Pod for FpStats {}

impl FpStats {
    /// `self - earlier`, field by field (wrapping).
    pub fn since(&self, earlier: &FpStats) -> FpStats {
        FpStats {
            packets: self.packets.wrapping_sub(earlier.packets),
            bytes: self.bytes.wrapping_sub(earlier.bytes),
            held: self.held.wrapping_sub(earlier.held),
            pad: 0,
        }
    }
}

/// Why a packet went up, by `tern_up` index.
pub const UP_REASONS: [&str; 7] = [
    "no_entry",
    "source",
    "not_rtp",
    "payload_type",
    "ssrc",
    "route",
    "not_plain",
];

/// A handle on an instance's pinned maps: each worker opens its own (its
/// own descriptors, no sharing between threads).
pub struct FastPathMaps {
    fwd: HashMap<MapData, FpKey, FpEntry>,
    stats: PerCpuArray<MapData, FpStats>,
    folded: Array<MapData, FpStats>,
    up: PerCpuArray<MapData, u64>,
}

fn open(dir: &Path, name: &str) -> Result<MapData, FastPathError> {
    let p = dir.join(name);
    MapData::from_pin(&p).map_err(|e| FastPathError::Map(format!("{}: {e}", p.display())))
}

fn map_err(what: &'static str) -> impl Fn(aya::maps::MapError) -> FastPathError {
    move |e| FastPathError::Map(format!("{what}: {e}"))
}

impl FastPathMaps {
    /// Opens the maps pinned in `dir` (`/sys/fs/bpf/tern/<instance>`).
    ///
    /// Errors: [`FastPathError::Map`] when a map is not pinned there or has
    /// another layout.
    pub fn open(dir: &Path) -> Result<FastPathMaps, FastPathError> {
        Ok(FastPathMaps {
            fwd: HashMap::try_from(Map::HashMap(open(dir, "tern_fwd")?))
                .map_err(map_err("tern_fwd"))?,
            stats: PerCpuArray::try_from(Map::PerCpuArray(open(dir, "tern_stats")?))
                .map_err(map_err("tern_stats"))?,
            folded: Array::try_from(Map::Array(open(dir, "tern_folded")?))
                .map_err(map_err("tern_folded"))?,
            up: PerCpuArray::try_from(Map::PerCpuArray(open(dir, "tern_up")?))
                .map_err(map_err("tern_up"))?,
        })
    }

    /// Installs or replaces the entry of `key` (one `bpf(2)` call).
    ///
    /// Errors: [`FastPathError::Map`] (e.g. the map is full).
    pub fn install(&mut self, key: FpKey, e: &FpEntry) -> Result<(), FastPathError> {
        self.fwd
            .insert(key, e, 0)
            .map_err(map_err("tern_fwd insert"))
    }

    /// Removes the entry of `key`; packets to it go up from then on. An
    /// absent entry is not an error.
    pub fn remove(&mut self, key: FpKey) {
        let _ = self.fwd.remove(&key);
    }

    /// The entry of `key`, as the program last wrote it.
    pub fn entry(&self, key: FpKey) -> Option<FpEntry> {
        self.fwd.get(&key, 0).ok()
    }

    /// Stats of index `i`, summed over CPUs.
    pub fn stats(&self, i: u32) -> FpStats {
        let mut sum = FpStats::default();
        if let Ok(v) = self.stats.get(&i, 0) {
            for s in v.iter() {
                sum.packets = sum.packets.wrapping_add(s.packets);
                sum.bytes = sum.bytes.wrapping_add(s.bytes);
                sum.held = sum.held.wrapping_add(s.held);
            }
        }
        sum
    }

    /// What has been folded into the slot table for index `i`.
    pub fn folded(&self, i: u32) -> FpStats {
        self.folded.get(&i, 0).unwrap_or_default()
    }

    /// The new part of index `i`'s stats since the last fold, marked folded
    /// (so a restarted worker neither loses nor repeats it).
    pub fn fold(&mut self, i: u32) -> FpStats {
        let now = self.stats(i);
        let before = self.folded(i);
        let d = now.since(&before);
        if d != FpStats::default() {
            let _ = self.folded.set(i, now, 0);
        }
        d
    }

    /// Packets sent up, by [`UP_REASONS`] index, summed over CPUs.
    pub fn up(&self) -> [u64; 7] {
        let mut out = [0u64; 7];
        for (i, o) in out.iter_mut().enumerate() {
            if let Ok(v) = self.up.get(&(i as u32), 0) {
                *o = v.iter().copied().fold(0u64, u64::wrapping_add);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_c_program() {
        assert_eq!(std::mem::size_of::<FpKey>(), 8);
        assert_eq!(std::mem::size_of::<FpEntry>(), 72);
        assert_eq!(std::mem::size_of::<FpStats>(), 32);
        let mut e = FpEntry::default();
        e.send_up(101);
        e.send_up(0);
        assert_eq!(e.up_pt, [1, 1 << 37]);
        let k = FpKey::new("10.0.0.1:2000".parse().unwrap());
        assert_eq!(k.port, 2000u16.to_be());
        assert_eq!(k.addr.to_ne_bytes(), [10, 0, 0, 1]);
    }
}
