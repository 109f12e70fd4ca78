//! End-to-end tests of the relay workers over loopback: a slot table, real
//! io_uring workers, and UDP sockets standing in for the two peers.
//!
//! Every wait is bounded in both count and time.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_dataplane::{start, Relay, RelayConfig, RelayError};
use tern_shared::table::testing::TempTable;
use tern_shared::table::{Direction, LegStats, SlotConfig, SlotState, SlotTable};

const OUT_A: u32 = 0xA0A0_A0A0;
const OUT_B: u32 = 0xB1B1_B1B1;

/// A fresh table of 25 slots from port `lo`, removed when dropped.
fn table(name: &str, lo: u16, workers: u32) -> TempTable {
    TempTable::new(&format!("dp-{name}"), lo, lo + 99, workers).unwrap()
}

fn relay(t: &Arc<SlotTable>, workers: usize, pin: bool) -> (Relay, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = RelayConfig {
        workers,
        bind_ip: "127.0.0.1".parse().unwrap(),
        pin,
    };
    (start(cfg, t.clone(), stop.clone()).unwrap(), stop)
}

fn stop(r: Relay, flag: &AtomicBool) {
    flag.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    r.join().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "workers slow to stop"
    );
}

fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    s
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

fn relay_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `f` every 5 ms for at most `ms` ms.
fn wait_until(ms: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_millis(ms);
    for _ in 0..10_000 {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Whether something holds UDP port `p` on loopback (a plain bind fails).
fn port_bound(p: u16) -> bool {
    UdpSocket::bind(relay_addr(p)).is_err()
}

/// Waits until slot `id`'s worker applied its configuration; its ports
/// are bound (they were while it was free, or `rtcp` ones are checked).
fn wait_bound(t: &SlotTable, id: u32, rtcp: bool) {
    assert!(
        wait_until(3000, || t.is_applied(id)),
        "slot {id} never applied"
    );
    for leg in 0..2 {
        let ports = t.ports(id, leg);
        assert!(port_bound(ports.rtp) && (!rtcp || port_bound(ports.rtcp)));
    }
}

fn rtp(ssrc: u32, seq: u16, ts: u32, pt: u8) -> Vec<u8> {
    let mut v = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    v[2..4].copy_from_slice(&seq.to_be_bytes());
    v[4..8].copy_from_slice(&ts.to_be_bytes());
    v[8..12].copy_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(&[0xd5; 160]);
    v
}

/// An RTCP sender report without report blocks (RFC 3550 §6.4.1).
fn sr(ssrc: u32) -> Vec<u8> {
    let mut v = vec![0x80, 200, 0, 6];
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(&[0; 20]);
    v
}

fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    s.recv_from(&mut buf)
        .ok()
        .map(|(n, from)| (buf[..n].to_vec(), from))
}

/// Receives nothing within `ms` ms.
fn quiet(s: &UdpSocket, ms: u64) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(ms))).unwrap();
    let r = recv(s).is_none();
    s.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    r
}

fn ssrc_of(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[8], p[9], p[10], p[11]])
}

fn seq_of(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[2], p[3]])
}

/// Peers of one call: RTP and RTCP sockets of A (leg 0) and B (leg 1).
struct Peers {
    a: UdpSocket,
    a_rtcp: UdpSocket,
    b: UdpSocket,
    b_rtcp: UdpSocket,
}

impl Peers {
    fn new() -> Peers {
        Peers {
            a: udp(),
            a_rtcp: udp(),
            b: udp(),
            b_rtcp: udp(),
        }
    }

    fn config(&self) -> SlotConfig {
        let mut c = SlotConfig::default();
        c.legs[0].peer = Some(addr(&self.a));
        c.legs[0].peer_rtcp = Some(addr(&self.a_rtcp));
        c.legs[1].peer = Some(addr(&self.b));
        c.legs[1].peer_rtcp = Some(addr(&self.b_rtcp));
        c.legs[0].rewrite_ssrc = true;
        c.legs[0].out_ssrc = OUT_A;
        c.legs[1].rewrite_ssrc = true;
        c.legs[1].out_ssrc = OUT_B;
        c.tag = 42;
        c
    }
}

fn stats(t: &SlotTable, id: u32, leg: usize) -> LegStats {
    t.stats(id, leg).unwrap()
}

/// Sends `n` RTP packets A → leg 0 (SSRC `ssrc`, from `seq0`) and checks
/// that B gets each from leg 1's RTP port with `OUT_B` and sequence numbers
/// continuing from `out0`.
fn a_to_b(t: &SlotTable, id: u32, p: &Peers, ssrc: u32, seq0: u16, n: u16, out0: u16) {
    let (l0, l1) = (t.ports(id, 0), t.ports(id, 1));
    for k in 0..n {
        let pkt = rtp(ssrc, seq0 + k, 1000 + 160 * u32::from(k), 0);
        p.a.send_to(&pkt, relay_addr(l0.rtp)).unwrap();
        let (got, from) = recv(&p.b).expect("B received RTP");
        assert_eq!(from, relay_addr(l1.rtp), "sent from leg 1's RTP port");
        assert_eq!(ssrc_of(&got), OUT_B);
        assert_eq!(seq_of(&got), out0 + k);
        assert_eq!(got.len(), pkt.len());
        assert_eq!(&got[12..], &pkt[12..]);
    }
}

#[test]
fn forwards_rewrites_counts_and_drains() {
    let t = table("flow", 46000, 1);
    let (r, flag) = relay(&t, 1, false);
    let p = Peers::new();
    let id = t.reserve().unwrap();
    t.publish(id, &p.config()).unwrap();
    wait_bound(&t, id, true);
    let (l0, l1) = (t.ports(id, 0), t.ports(id, 1));

    // A -> B: SSRC rewritten, sequence continuous.
    a_to_b(&t, id, &p, 0x1111, 100, 5, 100);
    // B -> A.
    for k in 0..3u16 {
        p.b.send_to(&rtp(0x2222, 7000 + k, 0, 8), relay_addr(l1.rtp))
            .unwrap();
        let (got, from) = recv(&p.a).expect("A received RTP");
        assert_eq!(from, relay_addr(l0.rtp));
        assert_eq!(ssrc_of(&got), OUT_A);
        assert_eq!(seq_of(&got), 7000 + k);
    }
    // RTCP SR A -> B: sender SSRC mapped to what B sees.
    p.a_rtcp.send_to(&sr(0x1111), relay_addr(l0.rtcp)).unwrap();
    let (got, from) = recv(&p.b_rtcp).expect("B received RTCP");
    assert_eq!(from, relay_addr(l1.rtcp));
    assert_eq!(got.len(), 28);
    assert_eq!(&got[4..8], &OUT_B.to_be_bytes());

    // Counters (written by the worker before it sends).
    let s0 = stats(&t, id, 0);
    let s1 = stats(&t, id, 1);
    assert_eq!(
        (s0.rx_packets, s0.rtcp_rx_packets, s0.tx_packets),
        (5, 1, 3)
    );
    assert_eq!(
        (s1.rx_packets, s1.rtcp_rx_packets, s1.tx_packets),
        (3, 0, 6)
    );
    assert_eq!(s0.rx_bytes, 5 * 172);
    assert_eq!(s1.tx_bytes, 5 * 172 + 28);
    assert_eq!(s0.learned, Some(addr(&p.a)));
    assert_eq!(s1.learned, Some(addr(&p.b)));
    assert!(s0.last_rx_ms > 0);
    let persisted = t.counters(id, 1).unwrap().ssrc_state();
    assert_ne!(persisted, [0; 3], "SSRC state toward B persisted");

    // A third party is refused (learn-once locked on A).
    let c = udp();
    c.send_to(&rtp(0x3333, 1, 0, 0), relay_addr(l0.rtp))
        .unwrap();
    assert!(wait_until(2000, || stats(&t, id, 0).drop_source == 1));
    assert!(quiet(&p.b, 100), "nothing forwarded to B");

    // Malformed RTP is counted.
    p.a.send_to(&[0x80, 0, 1], relay_addr(l0.rtp)).unwrap();
    assert!(wait_until(2000, || stats(&t, id, 0).drop_malformed == 1));
    // What demuxes (RFC 7983) as STUN or DTLS on a plain leg (no ICE, no
    // DTLS-SRTP) is counted by its class, and bytes of no class too.
    p.a.send_to(&[0x00, 0x01, 0, 0], relay_addr(l0.rtp))
        .unwrap();
    p.a.send_to(&[22, 0xfe, 0xfd, 0], relay_addr(l0.rtp))
        .unwrap();
    p.a.send_to(&[100, 0, 0, 0], relay_addr(l0.rtp)).unwrap();
    assert!(wait_until(2000, || {
        let s = stats(&t, id, 0);
        s.drop_stun == 1 && s.drop_dtls == 1 && s.drop_demux == 1 && s.drop_malformed == 1
    }));
    assert!(quiet(&p.b, 100), "nothing forwarded to B");

    // Hold: leg 0 inactive; packets from either side are dropped.
    let mut cfg = p.config();
    cfg.legs[0].direction = Direction::Inactive;
    t.publish(id, &cfg).unwrap();
    let mut seq = 200;
    assert!(
        wait_until(3000, || {
            seq += 1;
            p.a.send_to(&rtp(0x1111, seq, 0, 0), relay_addr(l0.rtp))
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
            stats(&t, id, 0).drop_direction > 0
        }),
        "direction drop counted"
    );
    while recv_nowait(&p.b) {}
    let before = stats(&t, id, 1).drop_direction;
    p.b.send_to(&rtp(0x2222, 9000, 0, 8), relay_addr(l1.rtp))
        .unwrap();
    assert!(wait_until(2000, || stats(&t, id, 1).drop_direction == before + 1));
    assert!(quiet(&p.a, 100));

    // Worker heartbeat and totals.
    assert!(wait_until(2000, || {
        let (hb, fwd, dropped) = t.worker_status(0);
        hb > 0 && fwd >= 9 && dropped >= 4
    }));

    // Release: the worker stops reading the sockets, keeps them bound
    // for the next call, and frees the slot.
    t.release(id).unwrap();
    assert!(wait_until(2000, || t.state(id) == SlotState::Free));
    assert!(t.is_bound(id), "free and ready to hand out");
    assert!(port_bound(l0.rtp) && port_bound(l1.rtcp));
    assert_eq!(stats(&t, id, 0), LegStats::default());
    // A freed slot relays nothing, and its sockets queue nothing for the
    // next call.
    let pkt = rtp(0x1111, 7000, 0, 0);
    p.a.send_to(&pkt, relay_addr(l0.rtp)).unwrap();
    assert!(quiet(&p.b, 100));
    let id2 = reserve_exact(&t, id);
    t.publish(id2, &p.config()).unwrap();
    wait_bound(&t, id2, true);
    assert!(quiet(&p.b, 100), "nothing of the old call was queued");
    assert_eq!(stats(&t, id2, 0).rx_packets, 0);
    t.release(id2).unwrap();
    assert!(wait_until(2000, || t.state(id2) == SlotState::Free));

    stop(r, &flag);
    t.unlink().unwrap();
}

/// Reserves slot `want` (reservations start at random), releasing the
/// others it meets.
fn reserve_exact(t: &SlotTable, want: u32) -> u32 {
    let mut others = Vec::new();
    let id = loop {
        let id = t.reserve().unwrap();
        if id == want {
            break id;
        }
        others.push(id);
    };
    for o in others {
        t.release(o).unwrap();
    }
    id
}

fn recv_nowait(s: &UdpSocket) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let got = s.recv_from(&mut buf).is_ok();
    s.set_nonblocking(false).unwrap();
    got
}

#[test]
fn two_workers_each_relay_their_slots() {
    let t = table("two", 46100, 2);
    let (r, flag) = relay(&t, 2, true);
    // Find one slot on each worker; release the others at once (a slot
    // released while reserved is freed by its worker too).
    let mut picked = [None, None];
    let mut extra = Vec::new();
    for _ in 0..t.capacity() {
        let id = t.reserve().unwrap();
        let w = t.worker_of(id) as usize;
        if picked[w].is_none() {
            picked[w] = Some(id);
        } else {
            extra.push(id);
        }
        if picked.iter().all(Option::is_some) {
            break;
        }
    }
    for id in &extra {
        t.release(*id).unwrap();
    }
    let peers = [Peers::new(), Peers::new()];
    let ids = picked.map(Option::unwrap);
    for (id, p) in ids.iter().zip(&peers) {
        t.publish(*id, &p.config()).unwrap();
    }
    for (w, (id, p)) in ids.iter().zip(&peers).enumerate() {
        wait_bound(&t, *id, true);
        a_to_b(&t, *id, p, 0x5000 + w as u32, 10, 4, 10);
    }
    for id in &extra {
        assert!(wait_until(2000, || t.state(*id) == SlotState::Free));
    }
    for id in ids {
        t.release(id).unwrap();
        assert!(wait_until(2000, || t.state(id) == SlotState::Free));
    }
    stop(r, &flag);
    t.unlink().unwrap();
}

#[test]
fn restarted_relay_resumes_calls() {
    let t = table("restart", 46200, 1);
    let p = Peers::new();
    let id = t.reserve().unwrap();
    let (r, flag) = relay(&t, 1, false);
    t.publish(id, &p.config()).unwrap();
    wait_bound(&t, id, true);
    a_to_b(&t, id, &p, 0x1111, 10, 3, 10);

    stop(r, &flag);
    assert_eq!(
        t.state(id),
        SlotState::Active,
        "shutdown leaves slots alone"
    );
    let ports = t.ports(id, 0);
    assert!(
        wait_until(2000, || !port_bound(ports.rtp)),
        "sockets closed"
    );

    let (r, flag) = relay(&t, 1, false);
    wait_bound(&t, id, true);
    // Same ports; the same source continues...
    a_to_b(&t, id, &p, 0x1111, 13, 2, 13);
    // ...and a new source continues right after the newest output, which
    // only a restored SSRC state can know.
    a_to_b(&t, id, &p, 0x9999, 5000, 2, 15);
    let s0 = stats(&t, id, 0);
    assert_eq!(s0.rx_packets, 7, "counters survive the restart");
    assert_eq!(s0.learned, Some(addr(&p.a)));
    // Learned peers survive: a third party is still refused.
    let c = udp();
    c.send_to(&rtp(1, 1, 0, 0), relay_addr(ports.rtp)).unwrap();
    assert!(wait_until(2000, || stats(&t, id, 0).drop_source == 1));

    t.release(id).unwrap();
    assert!(wait_until(2000, || t.state(id) == SlotState::Free));
    stop(r, &flag);
    t.unlink().unwrap();
}

#[test]
fn rtcp_mux_and_symmetric_rtp() {
    let t = table("mux", 46300, 1);
    let (r, flag) = relay(&t, 1, false);
    let a = udp();
    let b = udp();
    let id = t.reserve().unwrap();
    let mut c = SlotConfig::default();
    c.legs[0].peer = Some(addr(&a));
    c.legs[0].rtcp_mux = true;
    c.legs[1].rtcp_mux = true;
    // B's address is unknown (e.g. behind NAT): learned from its packets.
    t.publish(id, &c).unwrap();
    wait_bound(&t, id, false);
    let (l0, l1) = (t.ports(id, 0), t.ports(id, 1));
    assert!(
        port_bound(l0.rtcp),
        "the RTCP port stays the relay's, unread"
    );
    // A -> B: no peer yet.
    a.send_to(&rtp(1, 1, 0, 0), relay_addr(l0.rtp)).unwrap();
    assert!(wait_until(2000, || stats(&t, id, 0).drop_no_peer == 1));
    // B speaks first on leg 1; then A's media reaches it.
    b.send_to(&rtp(2, 1, 0, 0), relay_addr(l1.rtp)).unwrap();
    let (_, from) = recv(&a).expect("A got B's RTP");
    assert_eq!(from, relay_addr(l0.rtp));
    a.send_to(&rtp(1, 2, 0, 0), relay_addr(l0.rtp)).unwrap();
    let (got, from) = recv(&b).expect("B got A's RTP");
    assert_eq!(
        (from, seq_of(&got), ssrc_of(&got)),
        (relay_addr(l1.rtp), 2, 1)
    );
    // RTCP on the RTP port, unchanged without rewriting.
    a.send_to(&sr(1), relay_addr(l0.rtp)).unwrap();
    let (got, from) = recv(&b).expect("B got A's RTCP");
    assert_eq!((from, got), (relay_addr(l1.rtp), sr(1)));
    assert_eq!(stats(&t, id, 0).rtcp_rx_packets, 1);
    // The unused RTCP port of a muxed leg reads nothing.
    a.send_to(&sr(1), relay_addr(l0.rtcp)).unwrap();
    assert!(quiet(&b, 100));
    assert_eq!(stats(&t, id, 0).rtcp_rx_packets, 1);
    t.release(id).unwrap();
    assert!(wait_until(2000, || t.state(id) == SlotState::Free));
    stop(r, &flag);
    t.unlink().unwrap();
}

/// A port another socket holds keeps its slot from being handed out (it
/// is counted as unbound, and each reservation that meets it as a miss)
/// until the port is free again; then the slot is bound and serves.
#[test]
fn taken_port_holds_its_slot_back_until_free() {
    let t = table("busy", 46400, 1);
    // Someone else holds leg 1's RTP port of slot 7 before the relay starts.
    let held = 7;
    let squatter = UdpSocket::bind(relay_addr(t.ports(held, 1).rtp)).unwrap();
    let (r, flag) = relay(&t, 1, false);
    assert!(!t.is_bound(held));
    assert!(wait_until(2000, || t.worker_unbound(0) >= 1));
    // Every other slot can be had, never the held one; then Full.
    let mut got = Vec::new();
    while let Ok(id) = t.reserve() {
        assert_ne!(id, held, "an unbound slot was handed out");
        got.push(id);
        assert!(got.len() < t.capacity() as usize);
    }
    // Other tests' sockets may hold a port of this range too: each such
    // slot is held back the same way.
    let unbound = t.worker_unbound(0) as u32;
    assert!(unbound >= 1);
    assert_eq!(got.len() as u32, t.capacity() - unbound);
    assert!(t.port_misses() >= 1);
    for id in got {
        t.release(id).unwrap();
    }
    // Freed: bound on a later retry, then it serves a call.
    drop(squatter);
    assert!(
        wait_until(8000, || t.is_bound(held)),
        "retried within FREE_BIND_RETRY_MS"
    );
    let p = Peers::new();
    let id = reserve_exact(&t, held);
    t.publish(id, &p.config()).unwrap();
    wait_bound(&t, id, true);
    a_to_b(&t, id, &p, 0x1111, 1, 2, 1);
    t.release(id).unwrap();
    assert!(wait_until(2000, || t.state(id) == SlotState::Free));
    stop(r, &flag);
    t.unlink().unwrap();
}

#[test]
fn start_refuses_worker_count_mismatch() {
    let t = table("mismatch", 46500, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = RelayConfig {
        workers: 1,
        bind_ip: "127.0.0.1".parse().unwrap(),
        pin: false,
    };
    let e = start(cfg, t.clone(), stop).unwrap_err();
    assert!(matches!(e, RelayError::Config(_)));
    assert!(e.to_string().contains("laid out for 2"));
    t.unlink().unwrap();
}

/// A burst far larger than the worker's 8 provided buffers: the multishot
/// receive ends with -ENOBUFS, is re-armed once sends give buffers back,
/// and every packet still gets through.
#[test]
fn buffer_exhaustion_rearms_and_loses_nothing() {
    let t = table("enobufs", 46600, 1);
    let flag = Arc::new(AtomicBool::new(false));
    let w = {
        let (t, flag) = (t.clone(), flag.clone());
        std::thread::spawn(move || {
            let w =
                tern_dataplane::worker::Worker::with_buffers(0, t, "127.0.0.1".parse().unwrap(), 8)
                    .unwrap();
            w.run(|| flag.load(Ordering::Relaxed))
        })
    };
    let p = Peers::new();
    let id = t.reserve().unwrap();
    t.publish(id, &p.config()).unwrap();
    wait_bound(&t, id, true);
    let l0 = t.ports(id, 0);
    const N: u16 = 150;
    for k in 0..N {
        p.a.send_to(&rtp(0x1111, k, 0, 0), relay_addr(l0.rtp))
            .unwrap();
    }
    for k in 0..N {
        let (got, _) = recv(&p.b).expect("burst packet forwarded");
        assert_eq!(seq_of(&got), k);
    }
    assert_eq!(stats(&t, id, 0).rx_packets, u64::from(N));
    // The worker counts the empty ring and the re-arms (published at its
    // next tick).
    assert!(wait_until(2000, || {
        let r = t.worker_ring(0);
        r.enobufs > 0 && r.rearms >= r.enobufs
    }));
    t.release(id).unwrap();
    assert!(wait_until(2000, || t.state(id) == SlotState::Free));
    flag.store(true, Ordering::Relaxed);
    w.join().unwrap().unwrap();
    t.unlink().unwrap();
}

/// Rough loopback throughput (run with `--ignored --nocapture`, release):
/// one sender thread A, one receiver B, one worker. Not a benchmark: the
/// three threads share the machine's CPUs.
#[test]
#[ignore]
fn throughput_smoke() {
    let t = table("thru", 46700, 1);
    let (r, flag) = relay(&t, 1, false);
    let p = Peers::new();
    let id = t.reserve().unwrap();
    t.publish(id, &p.config()).unwrap();
    wait_bound(&t, id, true);
    let l0 = t.ports(id, 0);
    let a = p.a.try_clone().unwrap();
    const N: u32 = 200_000;
    let t0 = Instant::now();
    let sender = std::thread::spawn(move || {
        for k in 0..N {
            let _ = a.send_to(&rtp(1, k as u16, k * 160, 0), relay_addr(l0.rtp));
            if k % 64 == 0 {
                std::thread::yield_now();
            }
        }
    });
    p.b.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = 0u32;
    while got < N && recv(&p.b).is_some() {
        got += 1;
    }
    sender.join().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let s0 = stats(&t, id, 0);
    println!(
        "sent {N}, relay rx {}, B got {got} in {secs:.2}s: {:.0} pkt/s",
        s0.rx_packets,
        f64::from(got) / secs
    );
    stop(r, &flag);
    t.unlink().unwrap();
}

/// Dual-stack: sockets bound on `::` relay IPv4 peers (IPv4-mapped source
/// addresses compare equal to the SDP's IPv4 ones).
#[test]
fn dual_stack_bind_relays_ipv4_peers() {
    let t = table("v6", 46800, 1);
    let flag = Arc::new(AtomicBool::new(false));
    let cfg = RelayConfig {
        workers: 1,
        bind_ip: "::".parse().unwrap(),
        pin: false,
    };
    let r = start(cfg, t.clone(), flag.clone()).unwrap();
    let p = Peers::new();
    let id = t.reserve().unwrap();
    let mut c = p.config();
    c.legs[0].learning = tern_shared::table::Learning::Strict;
    t.publish(id, &c).unwrap();
    wait_bound(&t, id, true);
    a_to_b(&t, id, &p, 0x1111, 1, 3, 1);
    assert_eq!(stats(&t, id, 0).learned, Some(addr(&p.a)));
    assert_eq!(stats(&t, id, 0).drop_source, 0);
    t.release(id).unwrap();
    assert!(wait_until(2000, || t.state(id) == SlotState::Free));
    stop(r, &flag);
    t.unlink().unwrap();
}

/// Packets a jitter buffer refuses are counted by reason on the leg they
/// arrived on, and the reasons add up to the worker's dropped total.
#[test]
fn jitter_buffer_refusals_are_counted_by_reason() {
    let t = table("jdrops", 24900, 1);
    let (r, flag) = relay(&t, 1, false);
    let p = Peers::new();
    let id = t.reserve().unwrap();
    let mut c = p.config();
    c.legs[1].jitter = tern_shared::table::JitterSettings {
        enabled: true,
        target_ms: 20,
        max_ms: 60,
        adaptive: false,
    };
    t.publish(id, &c).unwrap();
    wait_bound(&t, id, true);
    let l0 = t.ports(id, 0);
    let send = |seq: u16, ts: u32| {
        p.a.send_to(&rtp(0x2222, seq, ts, 0), relay_addr(l0.rtp))
            .unwrap()
    };
    for k in 0..3u16 {
        send(100 + k, 160 * u32::from(k));
        assert!(recv(&p.b).is_some(), "packet {k} played out");
    }
    // 101 was played: a second copy is too late.
    send(101, 160);
    // A jump past RFC 3550's MAX_DROPOUT is held on probation.
    send(9000, 480);
    assert!(
        wait_until(2000, || {
            let s = stats(&t, id, 0);
            s.drop_jitter_late == 1 && s.drop_jitter_overflow == 1
        }),
        "{:?}",
        stats(&t, id, 0)
    );
    assert!(quiet(&p.b, 100), "refused packets are not sent");
    assert!(wait_until(2000, || {
        let (_, _, dropped) = t.worker_status(0);
        dropped == 2 && t.worker_totals(0).drops_total() == dropped
    }));
    stop(r, &flag);
    t.unlink().unwrap();
}
