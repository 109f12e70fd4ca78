//! The pcap format of a recording, sans-IO: the libpcap file header and
//! one record per packet, with synthetic IP and UDP headers.
//!
//! ```text
//! file header (24 bytes, little-endian): magic a1b2c3d4, version 2.4,
//!   thiszone 0, sigfigs 0, snaplen 65535, network 101 (LINKTYPE_RAW)
//! record: ts_sec u32, ts_usec u32, incl_len u32, orig_len u32, then
//!   IPv4 (RFC 791, 20 bytes, TTL 64, protocol 17, header checksum) or
//!   IPv6 (RFC 8200, 40 bytes, hop limit 64, next header 17), then
//!   UDP (RFC 768, 8 bytes, checksum 0: "not computed", allowed for IPv4;
//!   for IPv6 the checksum is computed, RFC 8200 §8.1), then the payload.
//! ```
//!
//! Addresses of mixed families (an IPv4 peer on an IPv6 socket) are
//! written as IPv6 with the IPv4 one mapped (`::ffff:a.b.c.d`).

use std::net::{IpAddr, SocketAddr};

/// LINKTYPE_RAW: each record starts with an IPv4 or IPv6 header.
pub const LINKTYPE_RAW: u32 = 101;

/// The 24-byte file header.
pub fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&65535u32.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_RAW.to_le_bytes());
    h
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut it = data.chunks_exact(2);
    for c in &mut it {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = it.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Appends one record of `payload` from `src` to `dst` that arrived at
/// `at_us` (Unix µs) to `out`. A payload above 65,487 bytes cannot be a
/// UDP datagram and is cut there.
pub fn write_record(
    out: &mut Vec<u8>,
    at_us: u64,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) {
    let payload = &payload[..payload.len().min(65_487)];
    let udp_len = 8 + payload.len();
    let (v4, s6, d6) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (Some((s, d)), None, None),
        (s, d) => (None, Some(to_v6(s)), Some(to_v6(d))),
    };
    let ip_len = if v4.is_some() { 20 } else { 40 };
    let total = ip_len + udp_len;
    out.extend_from_slice(&((at_us / 1_000_000) as u32).to_le_bytes());
    out.extend_from_slice(&((at_us % 1_000_000) as u32).to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    if let Some((s, d)) = v4 {
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&s.octets());
        ip[16..20].copy_from_slice(&d.octets());
        let c = fold(sum16(&ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        out.extend_from_slice(&ip);
    } else if let (Some(s), Some(d)) = (s6, d6) {
        let mut ip = [0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        ip[6] = 17;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&s);
        ip[24..40].copy_from_slice(&d);
        // Pseudo-header: addresses, length, next header (RFC 8200 §8.1).
        let mut acc = sum16(&ip[8..40], 0);
        acc += udp_len as u32 + 17;
        acc = sum16(&udp, acc);
        acc = sum16(payload, acc);
        let c = match fold(acc) {
            0 => 0xffff,
            c => c,
        };
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        out.extend_from_slice(&ip);
    }
    out.extend_from_slice(&udp);
    out.extend_from_slice(payload);
}

fn to_v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// One record read back: arrival (Unix µs), source, destination and the
/// UDP payload; for tests and tools reading what [`write_record`] wrote.
pub type Record = (u64, SocketAddr, SocketAddr, Vec<u8>);

/// Parses a whole pcap file of [`write_record`] records; `None` when it
/// is not one (wrong magic or link type, a truncated record, a record
/// that is not IPv4/IPv6 + UDP).
pub fn parse(file: &[u8]) -> Option<Vec<Record>> {
    if file.len() < 24
        || file[0..4] != 0xa1b2_c3d4u32.to_le_bytes()
        || file[20..24] != LINKTYPE_RAW.to_le_bytes()
    {
        return None;
    }
    let mut at = 24;
    let mut out = Vec::new();
    let u32le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    while at < file.len() {
        let h = file.get(at..at + 16)?;
        let ts = u64::from(u32le(&h[0..4])) * 1_000_000 + u64::from(u32le(&h[4..8]));
        let n = u32le(&h[8..12]) as usize;
        let p = file.get(at + 16..at + 16 + n)?;
        at += 16 + n;
        let (src_ip, dst_ip, udp): (IpAddr, IpAddr, &[u8]) = match p.first()? >> 4 {
            4 => {
                let s: [u8; 4] = p.get(12..16)?.try_into().ok()?;
                let d: [u8; 4] = p.get(16..20)?.try_into().ok()?;
                (s.into(), d.into(), p.get(20..)?)
            }
            6 => {
                let s: [u8; 16] = p.get(8..24)?.try_into().ok()?;
                let d: [u8; 16] = p.get(24..40)?.try_into().ok()?;
                (s.into(), d.into(), p.get(40..)?)
            }
            _ => return None,
        };
        let sp = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
        let dp = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
        out.push((
            ts,
            SocketAddr::new(src_ip, sp),
            SocketAddr::new(dst_ip, dp),
            udp.get(8..)?.to_vec(),
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_record_round_trips_with_valid_checksum() {
        let mut f = file_header().to_vec();
        let s: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let d: SocketAddr = "10.0.0.2:30000".parse().unwrap();
        write_record(&mut f, 1_700_000_000_123_456, s, d, b"hello");
        assert_eq!(f.len(), 24 + 16 + 20 + 8 + 5);
        // The IPv4 header sums to 0xffff with its checksum in.
        assert_eq!(fold(sum16(&f[40..60], 0)), 0);
        let r = parse(&f).unwrap();
        assert_eq!(r, vec![(1_700_000_000_123_456, s, d, b"hello".to_vec())]);
    }

    #[test]
    fn v6_and_mixed_records() {
        let mut f = file_header().to_vec();
        let s: SocketAddr = "[::1]:5".parse().unwrap();
        let d: SocketAddr = "127.0.0.1:6".parse().unwrap();
        write_record(&mut f, 7, s, d, b"odd");
        let r = parse(&f).unwrap();
        assert_eq!(r[0].1, s);
        assert_eq!(
            r[0].2,
            "[::ffff:127.0.0.1]:6".parse::<SocketAddr>().unwrap()
        );
        // UDP checksum over pseudo-header, header and payload verifies.
        let ip = &f[40..80];
        let udp = &f[80..];
        let acc = sum16(udp, sum16(&ip[8..40], 0) + udp.len() as u32 + 17);
        assert_eq!(fold(acc), 0);
        assert!(parse(&f[..f.len() - 1]).is_none());
        assert!(parse(b"junk").is_none());
    }
}
