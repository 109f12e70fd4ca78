//! Media quality through a real `tern relay` driven over ng: RFC 3550 loss
//! and jitter of generated streams with known loss and timestamp jitter,
//! MOS falling with loss, RFC 4733 DTMF events and their SSRC/offsets, and
//! the jitter buffer switched on per call.
//!
//! Ports: relay media 24000-24999, ng 22311-22319, HTTP 18085, instances
//! `t-h1-*`.

mod common;
use common::ng::{ng_exchange, sdp_port, str_of};
use common::*;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tern_ng::bencode::{bstr, int, str_list, ByteString, Dict, Value};

type BDict = BTreeMap<ByteString, Value>;

/// A `tern relay` with its ng socket; stopped and its table removed on drop.
struct Relay {
    proc_: Option<Proc>,
    instance: String,
    ng: SocketAddr,
}

impl Relay {
    fn start(name: &str, ports: &str, ng: u16, extra: &[&str]) -> Relay {
        let instance = format!("t-h1-{name}-{}", std::process::id());
        let (p, _) = spawn_relay(&instance, ports, ng, extra);
        Relay {
            proc_: Some(p),
            instance,
            ng: ([127, 0, 0, 1], ng).into(),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        drop(self.proc_.take());
        unlink_table(&self.instance);
    }
}

/// One ng exchange (bounded wait); the reply dictionary, `result` checked.
fn ng(sock: &UdpSocket, to: SocketAddr, cookie: &str, msg: Dict) -> BDict {
    let d = ng_exchange(sock, to, cookie, msg);
    assert_eq!(str_of(&d, "result"), "ok", "{}", show(&d));
    d
}

fn key<'a>(d: &'a BDict, k: &str) -> &'a Value {
    d.get(k.as_bytes())
        .unwrap_or_else(|| panic!("no key {k:?} in {:?}", d.keys().collect::<Vec<_>>()))
}

fn dict<'a>(d: &'a BDict, k: &str) -> &'a BDict {
    match key(d, k) {
        Value::Dict(x) => x,
        v => panic!("{k}: not a dict: {v:?}"),
    }
}

fn list<'a>(d: &'a BDict, k: &str) -> &'a [Value] {
    match key(d, k) {
        Value::List(x) => x,
        v => panic!("{k}: not a list: {v:?}"),
    }
}

fn num(d: &BDict, k: &str) -> i64 {
    let v = key(d, k);
    v.as_i64()
        .or_else(|| v.as_u64().and_then(|u| i64::try_from(u).ok()))
        .unwrap_or_else(|| panic!("{k}: not an integer: {v:?}"))
}

/// `d` with its keys as text, for messages.
fn show(d: &BDict) -> String {
    d.iter()
        .map(|(k, v)| format!("{}={v:?}", String::from_utf8_lossy(k.as_slice())))
        .collect::<Vec<_>>()
        .join(", ")
}

fn as_dict(v: &Value) -> &BDict {
    match v {
        Value::Dict(x) => x,
        v => panic!("not a dict: {v:?}"),
    }
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

/// A call set up over ng between sockets `a` (offerer) and `b`: returns
/// the relay ports `a` sends to and `b` sends to.
fn call(
    ctl: &UdpSocket,
    ng_addr: SocketAddr,
    call_id: &str,
    a: &UdpSocket,
    b: &UdpSocket,
    flags: &[&str],
    extra: &[(&str, i64)],
) -> (u16, u16) {
    let port = |s: &UdpSocket| s.local_addr().unwrap().port();
    let mut offer = Dict::new()
        .with("command", bstr("offer"))
        .with("call-id", bstr(call_id))
        .with("from-tag", bstr("a"))
        .with("flags", str_list(flags.iter().copied()))
        .with("sdp", bstr(sdp(port(a))));
    for (k, v) in extra {
        offer.set(k, int(*v));
    }
    let o = ng(ctl, ng_addr, &format!("{call_id}-o"), offer);
    let to_relay_from_b = sdp_port(&o);
    let answer = Dict::new()
        .with("command", bstr("answer"))
        .with("call-id", bstr(call_id))
        .with("from-tag", bstr("a"))
        .with("to-tag", bstr("b"))
        .with("sdp", bstr(sdp(port(b))));
    let r = ng(ctl, ng_addr, &format!("{call_id}-a"), answer);
    (sdp_port(&r), to_relay_from_b)
}

fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Parsed header of a received RTP packet: (pt, seq, ts, ssrc).
fn header(p: &[u8]) -> (u8, u16, u32, u32) {
    (
        p[1] & 0x7f,
        u16::from_be_bytes([p[2], p[3]]),
        u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
    )
}

/// Receives, on a thread, everything `s` gets (with its arrival time)
/// until it has been quiet for 500 ms after the first packet; bounded by
/// `limit` packets and 15 s.
fn collect(s: UdpSocket, limit: usize) -> std::thread::JoinHandle<Vec<(Instant, Vec<u8>)>> {
    std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while out.len() < limit && Instant::now() < deadline {
            match s.recv_from(&mut buf) {
                Ok((n, _)) => out.push((Instant::now(), buf[..n].to_vec())),
                Err(_) if !out.is_empty() => break,
                Err(_) => {}
            }
        }
        out
    })
}

/// The first RTP stream's `quality` of tag `tag` in a query/delete reply.
fn quality<'a>(reply: &'a BDict, tag: &str) -> &'a BDict {
    let t = dict(dict(reply, "tags"), tag);
    let media = as_dict(&list(t, "medias")[0]);
    let rtp = as_dict(&list(media, "streams")[0]);
    dict(rtp, "quality")
}

/// Two calls at once for 3 s of 10 ms PCMU packets (80 timestamp units):
/// call "lossy" skips every 10th sequence number and sends every odd
/// packet with its timestamp 80 units (10 ms) ahead, so RFC 3550 A.8's
/// |D| is 80 units at every step and J converges to 10 ms; call "clean"
/// is on time and complete and carries one DTMF key press (`5`, end packet
/// three times) through SSRC rewriting.
#[test]
fn query_reports_loss_jitter_mos_and_dtmf() {
    let relay = Relay::start("q", "24000-24099", 22311, &[]);
    let ctl = UdpSocket::bind("127.0.0.1:0").unwrap();
    let socks: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let (lossy_a, lossy_b) = call(&ctl, relay.ng, "h1-lossy", &socks[0], &socks[1], &[], &[]);
    let (clean_a, _) = call(
        &ctl,
        relay.ng,
        "h1-clean",
        &socks[2],
        &socks[3],
        &["SSRC-rewrite"],
        &[],
    );
    let _ = lossy_b;
    let clean_rx = collect(socks[3].try_clone().unwrap(), 1000);
    // The worker binds new slots at its next doorbell check (≤ 20 ms).
    std::thread::sleep(Duration::from_millis(100));
    let payload = [0xffu8; 80];
    let t0 = Instant::now();
    let n = 300u32;
    let mut dtmf_seq = 0u16;
    for k in 0..n {
        let due = t0 + Duration::from_millis(u64::from(k) * 10);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let seq = k as u16;
        if k % 10 != 9 {
            let ts = k * 80 + if k % 2 == 1 { 80 } else { 0 };
            let p = rtp(0, false, seq, ts, 0x1111, &payload);
            socks[0].send_to(&p, ("127.0.0.1", lossy_a)).unwrap();
        }
        // The clean call: audio, except packets 100..=106 are the key
        // press (RFC 4733: one timestamp, growing duration, E bit on the
        // last three).
        let (pt, body): (u8, Vec<u8>) = if (100..=106).contains(&k) {
            let dur = ((k - 99) * 80) as u16;
            let end = if k >= 104 { 0x80 } else { 0 };
            let mut b = vec![5, end | 10];
            b.extend_from_slice(&(if k >= 104 { 320u16 } else { dur }).to_be_bytes());
            dtmf_seq += 1;
            (101, b)
        } else {
            (0, payload.to_vec())
        };
        let ts = if pt == 101 { 100 * 80 } else { k * 80 };
        let p = rtp(pt, k == 100, seq, ts, 0x2222, &body);
        socks[2].send_to(&p, ("127.0.0.1", clean_a)).unwrap();
    }
    assert_eq!(dtmf_seq, 7);
    let got = clean_rx.join().unwrap();
    // Statistics are published every 100 ms (the collector waited 500).

    // What B of the clean call received: one SSRC (the rewritten one) for
    // audio and events alike, sequence numbers with no gap, and the event
    // packets' timestamp on the audio's timeline.
    assert!(got.len() >= 295, "clean call delivered {}", got.len());
    let hdrs: Vec<_> = got.iter().map(|(_, p)| header(p)).collect();
    let out_ssrc = hdrs[0].3;
    assert_ne!(out_ssrc, 0x2222, "SSRC-rewrite asked for");
    assert!(
        hdrs.iter().all(|h| h.3 == out_ssrc),
        "one SSRC for audio and events"
    );
    for w in hdrs.windows(2) {
        assert_eq!(w[1].1, w[0].1.wrapping_add(1), "sequence continues");
    }
    let ev: Vec<_> = hdrs.iter().filter(|h| h.0 == 101).collect();
    assert_eq!(ev.len(), 7);
    let audio_before = hdrs.iter().take_while(|h| h.0 != 101).last().unwrap();
    assert_eq!(
        ev[0].2,
        audio_before.2.wrapping_add(80),
        "event timestamp follows the audio's offset"
    );

    let q = |id: &str| {
        ng(
            &ctl,
            relay.ng,
            &format!("{id}-q"),
            Dict::new()
                .with("command", bstr("query"))
                .with("call-id", bstr(id)),
        )
    };
    let lossy = q("h1-lossy");
    let clean = q("h1-clean");
    let lq = quality(&lossy, "a");
    let cq = quality(&clean, "a");
    eprintln!("lossy: {}\nclean: {}", show(lq), show(cq));
    // Counted from seq 1 (A.1 probation) to 298: 298 expected, 29 lost
    // (9, 19, ..., 289): 9.7 %.
    let (exp, lost) = (num(lq, "expected"), num(lq, "lost"));
    assert!((296..=299).contains(&exp), "expected {exp}");
    let pct = lost as f64 * 100.0 / exp as f64;
    assert!((9.0..=11.5).contains(&pct), "loss {pct} % ({lost}/{exp})");
    let jit_us = num(lq, "jitter us");
    assert!(
        (7_000..=13_000).contains(&jit_us),
        "lossy jitter {jit_us} us, want about 10 ms"
    );
    assert_eq!(num(lq, "clock rate"), 8000);
    assert_eq!((num(cq, "lost"), num(cq, "duplicates")), (0, 0));
    assert!(
        num(cq, "jitter us") < 4_000,
        "clean jitter {}",
        num(cq, "jitter us")
    );
    let (mos_lossy, mos_clean) = (num(lq, "MOS x100"), num(cq, "MOS x100"));
    assert!(
        mos_lossy < mos_clean && mos_clean > 400 && mos_lossy > 100,
        "MOS {mos_lossy} (10 % loss) vs {mos_clean} (no loss)"
    );
    // rtpengine's top-level SSRC dictionary, keyed by the ingress SSRC.
    let ssrc = dict(dict(&lossy, "SSRC"), &0x1111u32.to_string());
    assert_eq!(num(ssrc, "cumulative loss"), lost);
    let avg = dict(ssrc, "average MOS");
    assert!((num(avg, "MOS") - mos_lossy / 10).abs() <= 1, "{avg:?}");
    assert!((9..=12).contains(&num(avg, "packet loss")));

    // One key press, once, although its end came three times.
    let dtmf = list(dict(dict(&clean, "tags"), "a"), "DTMF");
    assert_eq!(dtmf.len(), 1, "{dtmf:?}");
    let e = as_dict(&dtmf[0]);
    assert_eq!(str_of(e, "digit"), "5");
    assert_eq!(num(e, "event"), 5);
    assert_eq!(num(e, "duration"), 320);
    assert_eq!(num(e, "RTP timestamp"), 8000);
    assert!(list(dict(dict(&lossy, "tags"), "a"), "DTMF").is_empty());

    // delete answers with the same statistics.
    let del = ng(
        &ctl,
        relay.ng,
        "h1-lossy-d",
        Dict::new()
            .with("command", bstr("delete"))
            .with("call-id", bstr("h1-lossy")),
    );
    assert_eq!(num(quality(&del, "a"), "lost"), lost);
}

/// The jitter buffer switched on by the offer's flag: a stream whose
/// packets are swapped in pairs and whose arrival jitters comes out in
/// order, each packet no later than its arrival + the maximum delay; the
/// same stream without the flag comes out as sent (reordered).
#[test]
fn jitter_buffer_flag_reorders_with_bounded_delay() {
    let relay = Relay::start("jb", "24100-24199", 22312, &[]);
    let ctl = UdpSocket::bind("127.0.0.1:0").unwrap();
    let socks: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let (jb_a, _) = call(
        &ctl,
        relay.ng,
        "h1-jb",
        &socks[0],
        &socks[1],
        &["jitter-buffer"],
        &[("jitter-buffer-target", 40), ("jitter-buffer-max", 120)],
    );
    let (plain_a, _) = call(&ctl, relay.ng, "h1-plain", &socks[2], &socks[3], &[], &[]);
    let jb_rx = collect(socks[1].try_clone().unwrap(), 1000);
    let plain_rx = collect(socks[3].try_clone().unwrap(), 1000);
    std::thread::sleep(Duration::from_millis(100));
    let payload = [0xd5u8; 160];
    let n = 150u16;
    // Send order: 0, 2, 1, 4, 3, ... (pairs swapped after the first), at
    // 20 ms with up to 8 ms of extra delay.
    let mut order: Vec<u16> = vec![0];
    let mut k = 1;
    while k + 1 < n {
        order.extend([k + 1, k]);
        k += 2;
    }
    let t0 = Instant::now();
    let mut sent_at = vec![t0; n as usize];
    for (i, &seq) in order.iter().enumerate() {
        let extra = (i as u64 * 7919) % 9;
        let due = t0 + Duration::from_millis(i as u64 * 20 + extra);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let p = rtp(0, seq == 0, seq, u32::from(seq) * 160, 0x3333, &payload);
        sent_at[usize::from(seq)] = Instant::now();
        socks[0].send_to(&p, ("127.0.0.1", jb_a)).unwrap();
        socks[2].send_to(&p, ("127.0.0.1", plain_a)).unwrap();
    }
    let got = jb_rx.join().unwrap();
    let plain = plain_rx.join().unwrap();
    let seqs: Vec<u16> = got.iter().map(|(_, p)| header(p).1).collect();
    let plain_seqs: Vec<u16> = plain.iter().map(|(_, p)| header(p).1).collect();
    // A stall of the loaded test machine longer than the buffer's 120 ms
    // maximum makes a packet late, and a late packet is dropped by
    // design: a few (here up to 10 of 150) may go that way.
    assert!(
        seqs.len() >= n as usize - 10,
        "buffered call delivered {}",
        seqs.len()
    );
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "out of order through the buffer: {seqs:?}"
    );
    assert!(
        plain_seqs.windows(2).any(|w| w[1] < w[0]),
        "the unbuffered call should show the reordering: {plain_seqs:?}"
    );
    // Bounded delay: 120 ms maximum, plus scheduling slack.
    let mut worst = Duration::ZERO;
    for (at, p) in &got {
        let d = at.saturating_duration_since(sent_at[usize::from(header(p).1)]);
        worst = worst.max(d);
    }
    assert!(
        worst <= Duration::from_millis(120 + 60),
        "worst delay {worst:?} past the 120 ms maximum"
    );
    // And it did hold packets back (the target is 40 ms).
    let mean = got
        .iter()
        .map(|(at, p)| at.saturating_duration_since(sent_at[usize::from(header(p).1)]))
        .sum::<Duration>()
        / got.len() as u32;
    assert!(mean >= Duration::from_millis(15), "mean delay {mean:?}");
}

/// RTCP through the relay: B's SR is forwarded to A; A's RR echoes its
/// NTP middle bits as LSR with a DLSR of 20 ms after holding it 60 ms, so
/// the relay↔A round trip (RFC 3550 §6.4.1, measured from when the relay
/// forwarded the SR) is about 40 ms; A's report block also gives the peer
/// loss and jitter.
#[test]
fn rtcp_reports_give_rtt_and_peer_loss() {
    let relay = Relay::start("rtcp", "24200-24299", 22313, &[]);
    let ctl = UdpSocket::bind("127.0.0.1:0").unwrap();
    // RTCP goes to RTP port + 1: bind A and B on even/odd pairs.
    let pair = || {
        for _ in 0..200 {
            let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let p = rtp.local_addr().unwrap().port();
            if p.is_multiple_of(2) {
                if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", p + 1)) {
                    return (rtp, rtcp);
                }
            }
        }
        panic!("no even/odd port pair free");
    };
    let ((a, a_rtcp), (b, b_rtcp)) = (pair(), pair());
    let (to_a_side, to_b_side) = call(&ctl, relay.ng, "h1-rtcp", &a, &b, &[], &[]);
    std::thread::sleep(Duration::from_millis(100));
    // Some RTP both ways, so each side's source is learned.
    for k in 0..5u16 {
        a.send_to(
            &rtp(0, false, k, u32::from(k) * 160, 0xa, &[0; 160]),
            ("127.0.0.1", to_a_side),
        )
        .unwrap();
        b.send_to(
            &rtp(0, false, k, u32::from(k) * 160, 0xb, &[0; 160]),
            ("127.0.0.1", to_b_side),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // SR from B (NTP 0x0000b705:2000xxxx → middle 0xb7052000).
    let mut sr = vec![0x80, 200, 0, 6, 0, 0, 0, 0xb];
    sr.extend_from_slice(&[0, 0, 0xb7, 0x05, 0x20, 0x00, 0x12, 0x34]);
    sr.extend_from_slice(&[0; 12]);
    b_rtcp.send_to(&sr, ("127.0.0.1", to_b_side + 1)).unwrap();
    a_rtcp
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = a_rtcp.recv_from(&mut buf).expect("SR forwarded to A");
    assert_eq!(
        &buf[..n],
        &sr[..],
        "SR passes unchanged (no SSRC rewriting)"
    );
    std::thread::sleep(Duration::from_millis(60));
    // RR from A about B's stream: fraction lost 64/256, jitter 160 units.
    let dlsr: u32 = 65536 * 20 / 1000;
    let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 0xa, 0, 0, 0, 0xb, 64, 0, 0, 3];
    rr.extend_from_slice(&1234u32.to_be_bytes());
    rr.extend_from_slice(&160u32.to_be_bytes());
    rr.extend_from_slice(&0xb705_2000u32.to_be_bytes());
    rr.extend_from_slice(&dlsr.to_be_bytes());
    a_rtcp.send_to(&rr, ("127.0.0.1", to_a_side + 1)).unwrap();
    b_rtcp
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (n, _) = b_rtcp.recv_from(&mut buf).expect("RR forwarded to B");
    assert_eq!(n, rr.len());
    std::thread::sleep(Duration::from_millis(300));
    let reply = ng(
        &ctl,
        relay.ng,
        "h1-rtcp-q",
        Dict::new()
            .with("command", bstr("query"))
            .with("call-id", bstr("h1-rtcp")),
    );
    let q = quality(&reply, "a");
    eprintln!("a: {}", show(q));
    let rtt = num(q, "round-trip time us");
    assert!(
        (35_000..=80_000).contains(&rtt),
        "RTT {rtt} us, want about 40 ms"
    );
    assert_eq!(num(q, "peer fraction lost"), 64);
    assert_eq!(num(q, "peer jitter us"), 20_000);
    assert!(!dict(&reply, "tags").is_empty());
}

/// Calls with a jitter buffer deleted while it still holds packets (a
/// 1 s target, deleted 100 ms into the stream): every slot drains back
/// to free, nothing held is sent after the delete, and the relay goes on
/// relaying new buffered calls. Repeated, so retired stores are reused.
/// The target leaves the worker most of a second to see the delete, so
/// a stall of a loaded test machine does not let a held packet out first.
#[test]
fn deleting_a_call_with_held_packets_frees_everything() {
    let relay = Relay::start("jbdel", "24300-24399", 22314, &[]);
    let ctl = UdpSocket::bind("127.0.0.1:0").unwrap();
    let payload = [0xd5u8; 160];
    for round in 0..5u16 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let id = format!("h1-jbdel-{round}");
        let (to_relay, _) = call(
            &ctl,
            relay.ng,
            &id,
            &a,
            &b,
            &["jitter-buffer"],
            &[("jitter-buffer-target", 1000), ("jitter-buffer-max", 1500)],
        );
        std::thread::sleep(Duration::from_millis(50));
        for seq in 0..10u16 {
            let p = rtp(0, seq == 0, seq, u32::from(seq) * 160, 0x4444, &payload);
            a.send_to(&p, ("127.0.0.1", to_relay)).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        ng(
            &ctl,
            relay.ng,
            &format!("{id}-d"),
            Dict::new()
                .with("command", bstr("delete"))
                .with("call-id", bstr(id.as_str())),
        );
        // The held packets were due 1 s after arrival: none may come.
        b.set_read_timeout(Some(Duration::from_millis(1200)))
            .unwrap();
        let mut buf = [0u8; 2048];
        assert!(
            b.recv_from(&mut buf).is_err(),
            "round {round}: a held packet was sent after the delete"
        );
    }
    assert!(
        wait_all_free(&relay.instance, Duration::from_secs(5)),
        "slots did not drain"
    );
    // A last call still flows through its buffer.
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (to_relay, _) = call(
        &ctl,
        relay.ng,
        "h1-jbdel-last",
        &a,
        &b,
        &["jitter-buffer"],
        &[],
    );
    let rx = collect(b, 100);
    std::thread::sleep(Duration::from_millis(50));
    for seq in 0..20u16 {
        let p = rtp(0, seq == 0, seq, u32::from(seq) * 160, 0x5555, &payload);
        a.send_to(&p, ("127.0.0.1", to_relay)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = rx.join().unwrap();
    assert!(got.len() >= 18, "last call delivered {}", got.len());
}

/// An ng-only relay labels a slot with the first 64 bytes of its Call-ID:
/// a longer Call-ID is still found by `/calls/{call-id}` and `tern ctl`
/// (by prefix and the slot's tag), and another with the same first 64
/// bytes is not.
#[test]
fn long_call_id_is_found_over_http_and_ctl() {
    const HTTP: &str = "127.0.0.1:18085";
    let relay = Relay::start("long", "24400-24499", 22315, &["--http", HTTP]);
    let ctl = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let call_id = format!("{}@long.example.com", "k".repeat(100));
    let twin = format!("{}@other.example.com", "k".repeat(100));
    call(&ctl, relay.ng, &call_id, &a, &b, &[], &[]);
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|c| match c {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (c as char).to_string()
                }
                _ => format!("%{c:02X}"),
            })
            .collect()
    };
    let get = |p: &str| {
        // The HTTP thread may start just after the ng socket.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match tern_observe::ctl::get(HTTP, p) {
                Ok(r) => break r,
                Err(e) if Instant::now() > deadline => panic!("GET {p}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    };
    let (status, body) = get(&format!("/calls/{}", enc(&call_id)));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["slots"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(get(&format!("/calls/{}", enc(&twin))).0, 404);
    let out = std::process::Command::new(tern_bin())
        .args(["ctl", "--http", HTTP, "call", &call_id])
        .output()
        .expect("tern ctl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("leg 0") && stdout.contains("leg 1"),
        "{stdout}"
    );
    drop(relay);
}
