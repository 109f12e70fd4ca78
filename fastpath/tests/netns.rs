//! The fast path in a namespace pair: a generator and a sink in one
//! namespace, the relay's tc program on the veth end of the other. The
//! worker's part (installing entries) is played by the test, so this checks
//! the program and the maps: byte-identical payloads, SSRC rewriting,
//! exact counters, payload types and sources sent up, hold, removal, and
//! a reload that keeps the pinned entries (a relay restart).
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN), `ip` and a build with clang; skips
//! with a message otherwise.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use tern_fastpath::{FastPath, FastPathMaps, FpEntry, FpKey, Hook, FP_FORWARD, FP_REWRITE};

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success())
}

struct Netns {
    a: String,
    b: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        sh(&["ip", "netns", "del", &self.a]);
        sh(&["ip", "netns", "del", &self.b]);
    }
}

/// Runs `f` on a thread inside namespace `ns` (setns affects the calling
/// thread only).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let f_ns = std::fs::File::open(&path).expect("open netns");
        // SAFETY: setns on a valid namespace fd, for this thread only.
        let rc = unsafe { libc::setns(f_ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        f()
    })
    .join()
    .expect("namespace thread")
}

fn rtp(seq: u16, ts: u32, ssrc: u32, pt: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, pt];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Everything queued on `s` within `wait`, bounded in count.
fn drain(s: &UdpSocket, wait: Duration) -> Vec<(Vec<u8>, std::net::SocketAddr)> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    for _ in 0..10_000 {
        match s.recv_from(&mut buf) {
            Ok((n, a)) => out.push((buf[..n].to_vec(), a)),
            Err(_) => break,
        }
    }
    out
}

#[test]
fn fast_path_forwards_rewrites_counts_and_survives_a_reload() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !sh(&["ip", "-V"]) {
        eprintln!("SKIP fast_path netns test: needs root and iproute2");
        return;
    }
    if !tern_fastpath::built() {
        eprintln!("SKIP fast_path netns test: built without clang (no BPF object)");
        return;
    }
    let id = std::process::id() % 200 + 20;
    let ns = Netns {
        a: format!("tfpa{id}"),
        b: format!("tfpb{id}"),
    };
    let (va, vb) = (format!("tfva{id}"), format!("tfvb{id}"));
    let ip_a = Ipv4Addr::new(10, 213, id as u8, 1);
    let ip_b = Ipv4Addr::new(10, 213, id as u8, 2);
    for c in [
        vec!["ip", "netns", "add", &ns.a],
        vec!["ip", "netns", "add", &ns.b],
        vec![
            "ip", "link", "add", &va, "type", "veth", "peer", "name", &vb,
        ],
        vec!["ip", "link", "set", &va, "netns", &ns.a],
        vec!["ip", "link", "set", &vb, "netns", &ns.b],
    ] {
        assert!(sh(&c), "{c:?}");
    }
    let (ca, cb) = (format!("{ip_a}/24"), format!("{ip_b}/24"));
    for (n, dev, addr) in [(&ns.a, &va, &ca), (&ns.b, &vb, &cb)] {
        assert!(sh(&["ip", "-n", n, "addr", "add", addr, "dev", dev]));
        assert!(sh(&["ip", "-n", n, "link", "set", dev, "up"]));
        assert!(sh(&["ip", "-n", n, "link", "set", "lo", "up"]));
    }
    let instance = format!("fptest{id}");
    let (inst, dev) = (instance.clone(), vb.clone());
    let attached = in_ns(&ns.b, move || {
        FastPath::attach(&inst, &dev, Hook::Tc, 64).map(|f| f.dir().to_path_buf())
    });
    let dir = match attached {
        Ok(d) => d,
        // Root with a BPF object: a refusal here is a failure, not a skip,
        // unless the kernel has no BPF at all.
        Err(e) if !std::path::Path::new("/sys/fs/bpf").exists() => {
            eprintln!("SKIP fast_path netns test: no bpffs on this kernel ({e})");
            return;
        }
        Err(e) => panic!("fast path did not attach: {e}"),
    };

    // The relay's leg sockets (what goes up lands there) and the peers.
    let relay0 = SocketAddrV4::new(ip_b, 40000);
    let relay1 = SocketAddrV4::new(ip_b, 40002);
    let (r0, r1) = in_ns(&ns.b, move || {
        (
            UdpSocket::bind(relay0).unwrap(),
            UdpSocket::bind(relay1).unwrap(),
        )
    });
    let (gen, sink, other) = in_ns(&ns.a, move || {
        (
            UdpSocket::bind((ip_a, 30000)).unwrap(),
            UdpSocket::bind((ip_a, 30002)).unwrap(),
            UdpSocket::bind((ip_a, 30004)).unwrap(),
        )
    });
    // The relay has sent to the sink before (as the io_uring path does
    // before an entry exists): the neighbour entry is there.
    r1.send_to(b"hello", (ip_a, 30002)).unwrap();
    assert_eq!(drain(&sink, Duration::from_millis(300)).len(), 1);

    let mut maps = FastPathMaps::open(&dir).expect("open pinned maps");
    let key = FpKey::new(relay0);
    let mut e = FpEntry {
        src_addr: u32::from(ip_a).to_be(),
        src_port: 30000u16.to_be(),
        flags: FP_FORWARD | FP_REWRITE,
        out_saddr: u32::from(ip_b).to_be(),
        out_daddr: u32::from(ip_a).to_be(),
        out_sport: 40002u16.to_be(),
        out_dport: 30002u16.to_be(),
        in_ssrc: 0x1111_1111,
        out_ssrc: 0xabcd_ef01,
        ts_delta: 5000,
        seq_delta: 1000,
        tos: 0xb8,
        stat: 3,
        ..FpEntry::default()
    };
    e.send_up(101);
    maps.install(key, &e).unwrap();

    // 1. Forwarded below the sockets: rewritten, payload intact, counted.
    let mut bytes = 0u64;
    for i in 0..100u16 {
        let payload: Vec<u8> = (0..160).map(|k| (k as u16 * 7 + i) as u8).collect();
        bytes += 12 + payload.len() as u64;
        gen.send_to(
            &rtp(
                65500u16.wrapping_add(i),
                1000 + 160 * u32::from(i),
                0x1111_1111,
                0,
                &payload,
            ),
            relay0,
        )
        .unwrap();
    }
    let got = drain(&sink, Duration::from_millis(500));
    assert_eq!(got.len(), 100, "every packet reached the sink");
    for (i, (p, from)) in got.iter().enumerate() {
        let i = i as u16;
        assert_eq!(
            *from,
            std::net::SocketAddr::V4(relay1),
            "sent from the other leg's address"
        );
        assert_eq!(&p[8..12], &0xabcd_ef01u32.to_be_bytes(), "SSRC rewritten");
        assert_eq!(
            u16::from_be_bytes([p[2], p[3]]),
            65500u16.wrapping_add(i).wrapping_add(1000)
        );
        assert_eq!(
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            6000 + 160 * u32::from(i)
        );
        let payload: Vec<u8> = (0..160).map(|k| (k as u16 * 7 + i) as u8).collect();
        assert_eq!(&p[12..], &payload[..], "payload byte-identical");
    }
    assert!(
        drain(&r0, Duration::from_millis(50))
            .iter()
            .all(|(p, _)| p.len() < 12),
        "nothing went up"
    );
    let s = maps.stats(3);
    assert_eq!(
        (s.packets, s.bytes, s.held),
        (100, bytes, 0),
        "counters exact"
    );
    assert_eq!(maps.fold(3).packets, 100);
    assert_eq!(maps.fold(3).packets, 0, "folded once");
    let seen = maps.entry(key).unwrap();
    assert_eq!(
        seen.newest_seq as u16,
        65500u16.wrapping_add(99).wrapping_add(1000)
    );

    // 2. A telephone-event and a packet from another source go up.
    gen.send_to(&rtp(7, 0, 0x1111_1111, 101, &[1, 2, 3, 4]), relay0)
        .unwrap();
    other
        .send_to(&rtp(8, 0, 0x1111_1111, 0, &[9; 20]), relay0)
        .unwrap();
    // A new input SSRC goes up too (the worker's continuity logic).
    gen.send_to(&rtp(9, 0, 0x2222_2222, 0, &[9; 20]), relay0)
        .unwrap();
    let up = drain(&r0, Duration::from_millis(300));
    assert_eq!(up.len(), 3, "event, foreign source and new SSRC went up");
    assert!(drain(&sink, Duration::from_millis(50)).is_empty());

    // 3. Hold: the direction forbids; dropped and counted, nothing goes up.
    e.flags = FP_REWRITE;
    maps.install(key, &e).unwrap();
    for i in 0..10u16 {
        gen.send_to(&rtp(i, 0, 0x1111_1111, 0, &[0; 160]), relay0)
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        drain(&sink, Duration::from_millis(50)).is_empty(),
        "held direction stopped"
    );
    assert!(drain(&r0, Duration::from_millis(50)).is_empty());
    assert_eq!(maps.stats(3).held, 10);

    // 4. A reload (relay restart) keeps the pinned entry forwarding.
    e.flags = FP_FORWARD | FP_REWRITE;
    maps.install(key, &e).unwrap();
    drop(maps);
    let (inst, dev) = (instance.clone(), vb.clone());
    in_ns(&ns.b, move || {
        FastPath::attach(&inst, &dev, Hook::Tc, 64).map(|_| ())
    })
    .expect("reload");
    let mut maps = FastPathMaps::open(&dir).unwrap();
    gen.send_to(&rtp(1, 0, 0x1111_1111, 0, &[5; 160]), relay0)
        .unwrap();
    assert_eq!(
        drain(&sink, Duration::from_millis(300)).len(),
        1,
        "still forwarding after reload"
    );
    assert_eq!(
        maps.stats(3).packets,
        101,
        "counters kept across the reload"
    );

    // 5. Removed: packets go up again at once.
    maps.remove(key);
    gen.send_to(&rtp(2, 0, 0x1111_1111, 0, &[5; 160]), relay0)
        .unwrap();
    assert_eq!(
        drain(&r0, Duration::from_millis(300)).len(),
        1,
        "went up after removal"
    );
    assert!(drain(&sink, Duration::from_millis(50)).is_empty());
    assert!(maps.up()[0] >= 1, "counted as no_entry");

    let (inst, dev) = (instance.clone(), vb.clone());
    in_ns(&ns.b, move || {
        if let Ok(f) = FastPath::attach(&inst, &dev, Hook::Tc, 64) {
            f.detach();
        }
    });
    assert!(!dir.exists(), "pins removed on detach");
}
