//! What the host must give the relay before it starts: a descriptor for
//! every relay port, and a port range the kernel does not hand out to
//! other sockets.
//!
//! Linux picks the local port of every outgoing connection and of every
//! UDP socket that sends unbound from `net.ipv4.ip_local_port_range`
//! (default 32768-60999), minus `net.ipv4.ip_local_reserved_ports`. A relay
//! port inside that range can be taken by any such socket on the host; the
//! relay then holds its slot back (it is never handed out unbound), but
//! capacity shrinks at random. [`ephemeral_overlap`] finds the overlap so
//! that startup can say so and name the fix.

use std::fmt;

/// Where the kernel keeps its ephemeral range (`"LO\tHI\n"`).
pub const PORT_RANGE_PATH: &str = "/proc/sys/net/ipv4/ip_local_port_range";
/// Where the kernel keeps ports excluded from it (`"1000-2000,3000\n"`).
pub const RESERVED_PATH: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/// Ports of the relay's range that the kernel may give to other sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The relay's range, inclusive.
    pub ports: (u16, u16),
    /// The kernel's ephemeral range, inclusive.
    pub ephemeral: (u16, u16),
    /// Relay ports inside the ephemeral range and not reserved.
    pub exposed: u32,
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (lo, hi) = self.ports;
        write!(
            f,
            "--ports {lo}-{hi} overlaps the kernel's ephemeral port range {}-{} \
             (net.ipv4.ip_local_port_range) on {} ports: any outgoing connection or \
             unbound UDP socket on this host may take one, and its slot is then held back. \
             Use a range outside it (e.g. --ports 20000-29999, the default) or reserve it: \
             sysctl -w net.ipv4.ip_local_reserved_ports={lo}-{hi}",
            self.ephemeral.0, self.ephemeral.1, self.exposed
        )
    }
}

/// Parses `ip_local_port_range`: two decimal ports separated by white
/// space. `None` if it is not that.
pub fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace();
    let lo = it.next()?.parse().ok()?;
    let hi = it.next()?.parse().ok()?;
    (it.next().is_none() && lo <= hi).then_some((lo, hi))
}

/// Parses `ip_local_reserved_ports`: comma-separated ports and `LO-HI`
/// ranges, possibly empty. `None` if an item is not one.
pub fn parse_reserved(text: &str) -> Option<Vec<(u16, u16)>> {
    text.trim()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let item = item.trim();
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
                    (a <= b).then_some((a, b))
                }
                None => item.parse().ok().map(|p| (p, p)),
            }
        })
        .collect()
}

/// The relay ports of `ports` inside `ephemeral` and outside every range
/// of `reserved`; `None` when there are none.
pub fn overlap(
    ports: (u16, u16),
    ephemeral: (u16, u16),
    reserved: &[(u16, u16)],
) -> Option<Overlap> {
    let lo = ports.0.max(ephemeral.0);
    let hi = ports.1.min(ephemeral.1);
    if lo > hi {
        return None;
    }
    let exposed = (lo..=hi)
        .filter(|p| !reserved.iter().any(|&(a, b)| (a..=b).contains(p)))
        .count() as u32;
    (exposed > 0).then_some(Overlap {
        ports,
        ephemeral,
        exposed,
    })
}

/// [`overlap`] with the kernel's settings read from `/proc`; `None` also
/// when they cannot be read (not Linux, no `/proc`).
pub fn ephemeral_overlap(ports: (u16, u16)) -> Option<Overlap> {
    let range = std::fs::read_to_string(PORT_RANGE_PATH).ok()?;
    let reserved = std::fs::read_to_string(RESERVED_PATH).unwrap_or_default();
    overlap(
        ports,
        parse_port_range(&range)?,
        &parse_reserved(&reserved).unwrap_or_default(),
    )
}

/// Raises `RLIMIT_NOFILE`'s soft limit to at least `need` descriptors (up
/// to the hard limit), since every relay port is a socket held from start.
///
/// Errors: a message naming the limit when the hard limit is below `need`
/// or the calls fail.
pub fn raise_nofile(need: u64) -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read a plain struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
        }
        if lim.rlim_cur >= need {
            return Ok(());
        }
        let want = need.min(lim.rlim_max);
        lim.rlim_cur = want;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(format!(
                "setrlimit(RLIMIT_NOFILE, {want}): {}",
                std::io::Error::last_os_error()
            ));
        }
        if want < need {
            return Err(format!(
                "the port range needs {need} file descriptors but the hard limit is {want}; raise it (ulimit -Hn) or narrow --ports"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernels_files() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("1024 65535"), Some((1024, 65535)));
        assert_eq!(parse_port_range("60999 32768"), None);
        assert_eq!(parse_port_range("32768"), None);
        assert_eq!(parse_port_range("a b"), None);
        assert_eq!(parse_reserved("\n"), Some(vec![]));
        assert_eq!(
            parse_reserved("8080,30000-30999, 40000\n"),
            Some(vec![(8080, 8080), (30000, 30999), (40000, 40000)])
        );
        assert_eq!(parse_reserved("3-1"), None);
        assert_eq!(parse_reserved("x"), None);
    }

    #[test]
    fn overlap_counts_exposed_ports_and_names_the_fix() {
        let eph = (32768, 60999);
        // The old default: 7,232 ports inside.
        let o = overlap((30000, 39999), eph, &[]).unwrap();
        assert_eq!(o.exposed, 39999 - 32768 + 1);
        let msg = o.to_string();
        assert!(msg.contains("32768-60999"), "{msg}");
        assert!(msg.contains("ip_local_reserved_ports=30000-39999"), "{msg}");
        // The new default and a range above the ephemeral one: none.
        assert_eq!(overlap((20000, 29999), eph, &[]), None);
        assert_eq!(overlap((61000, 61999), eph, &[]), None);
        // Reserved ports are safe.
        assert_eq!(overlap((30000, 39999), eph, &[(30000, 39999)]), None);
        let part = overlap((30000, 39999), eph, &[(32768, 35000)]).unwrap();
        assert_eq!(part.exposed, 39999 - 35001 + 1);
        // Edges are inclusive.
        assert_eq!(overlap((32000, 32768), eph, &[]).unwrap().exposed, 1);
        assert_eq!(overlap((60999, 61100), eph, &[]).unwrap().exposed, 1);
    }
}
