//! Forked calls with real media through `tern relay`, driven over ng, and
//! the same ng sequence against rtpengine 10.5 (userspace `--table=-1`)
//! to compare: caller A offers, the forks B1 and B2 (separate UDP sockets)
//! answer with early media, then B2 wins and the loser B1 is deleted by
//! its to-tag.
//!
//! Two ways a proxy forks (docs/NG.md, "Forked calls"):
//! - one offer per fork, each with its `via-branch` (Kamailio's
//!   `via-branch=` in a branch route): each fork is given its own port;
//! - one offer for all forks, two answers: both forks only know the
//!   offer's port.
//!
//! Ports: tern relay 22900-22949 and 22950-22999, rtpengine 30900-30999.

mod common;
use common::ng::{ng_exchange, sdp_port, str_of, BDict};
use common::rtpengine::{have_rtpengine, Rtpengine};
use common::*;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tern_ng::bencode::{bstr, int, Dict};

const RTPE_PORTS: (u16, u16) = (30900, 30999);

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend(seq.to_be_bytes());
    p.extend((u32::from(seq) * 160).to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend([0xffu8; 160]);
    p
}

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

fn port_of(s: &UdpSocket) -> u16 {
    s.local_addr().unwrap().port()
}

/// Sends RTP with `ssrc` from `from` to relay port `to`, 20 ms apart,
/// for up to `tries` packets or until `at` receives that SSRC; says
/// whether it did. Drains whatever else `at` got.
fn flows(from: &UdpSocket, to: u16, ssrc: u32, at: &UdpSocket, tries: u16) -> bool {
    let mut buf = [0u8; 2048];
    for seq in 0..tries {
        from.send_to(&rtp(seq, ssrc), ("127.0.0.1", to)).unwrap();
        let t = Instant::now() + Duration::from_millis(20);
        while Instant::now() < t {
            if let Ok(n) = at.recv(&mut buf) {
                if n >= 12 && buf[8..12] == ssrc.to_be_bytes() {
                    return true;
                }
            }
        }
    }
    false
}

/// Drains `s`: the SSRCs it got within 200 ms.
fn got(s: &UdpSocket) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    let mut buf = [0u8; 2048];
    let t = Instant::now() + Duration::from_millis(200);
    while Instant::now() < t {
        if let Ok(n) = s.recv(&mut buf) {
            if n >= 12 {
                out.insert(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]));
            }
        }
    }
    out
}

/// What one relay did with the sequence.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    /// Ports in the SDP: to the callee(s) per offer, to A per answer.
    offer: Vec<u16>,
    answer: Vec<u16>,
    /// Early media reached A: from B1, from B2.
    early: [bool; 2],
    /// A's media to the port of B1's answer reached: B1, B2.
    a_to_first: [bool; 2],
    /// A's media to the port of B2's answer reached: B1, B2.
    a_to_second: [bool; 2],
    /// After B1's delete: A (to B2's answer port) reached B1, B2; B2's
    /// media reached A; B1's media reached A.
    after: [bool; 4],
    delete_warning: String,
}

fn ok(r: &BDict) {
    assert_eq!(str_of(r, "result"), "ok", "{r:?}");
}

/// The sequence against the relay at `ng`; `via`: one offer per fork.
fn run(ng: SocketAddr, call: &str, via: bool) -> Seen {
    let ctl = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a, b1, b2) = (sock(), sock(), sock());
    let mut n = 0;
    let mut cmd = |d: Dict| {
        n += 1;
        let r = ng_exchange(&ctl, ng, &format!("{call}-{n}"), d);
        ok(&r);
        r
    };
    let base = |c: &str, from: &str| {
        Dict::new()
            .with("command", bstr(c))
            .with("call-id", bstr(call))
            .with("from-tag", bstr(from))
    };
    let mut seen = Seen::default();
    let branches: &[Option<&str>] = if via {
        &[Some("z9hG4bK.b1"), Some("z9hG4bK.b2")]
    } else {
        &[None]
    };
    for v in branches {
        let mut d = base("offer", "A").with("sdp", bstr(sdp(port_of(&a))));
        if let Some(v) = v {
            d.set("via-branch", bstr(*v));
        }
        seen.offer.push(sdp_port(&cmd(d)));
    }
    for (i, (tag, s)) in [("B1", &b1), ("B2", &b2)].into_iter().enumerate() {
        let mut d = base("answer", "A")
            .with("to-tag", bstr(tag))
            .with("sdp", bstr(sdp(port_of(s))));
        if let Some(v) = branches.get(i).copied().flatten() {
            d.set("via-branch", bstr(v));
        }
        seen.answer.push(sdp_port(&cmd(d)));
    }
    let to_b = |i: usize| seen.offer[i.min(seen.offer.len() - 1)];
    // Early media: each fork sends to the port it was offered.
    seen.early = [
        flows(&b1, to_b(0), 0xb1, &a, 50),
        flows(&b2, to_b(1), 0xb2, &a, 50),
    ];
    got(&a);
    let (a1, a2) = (seen.answer[0], seen.answer[1]);
    for (k, to) in [(0xa1, a1), (0xa2, a2)] {
        // Spread over 500 ms, so a loaded machine's late pickup of the
        // slot's configuration cannot swallow them all.
        let mut r = [false; 2];
        for seq in 0..25 {
            a.send_to(&rtp(seq, k), ("127.0.0.1", to)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        for (i, s) in [&b1, &b2].into_iter().enumerate() {
            r[i] = got(s).contains(&k);
        }
        if to == a1 {
            seen.a_to_first = r;
        } else {
            seen.a_to_second = r;
        }
    }
    // B2 won: the proxy deletes the loser by its to-tag.
    let r = cmd(base("delete", "A")
        .with("to-tag", bstr("B1"))
        .with("delete-delay", int(0)));
    seen.delete_warning = str_of(&r, "warning");
    got(&a);
    got(&b1);
    got(&b2);
    let to_b2 = flows(&a, a2, 0xa3, &b2, 50);
    let b1_got = got(&b1).contains(&0xa3);
    let b2_to_a = flows(&b2, to_b(1), 0xb3, &a, 25);
    let b1_to_a = flows(&b1, to_b(0), 0xb4, &a, 10);
    seen.after = [b1_got, to_b2, b2_to_a, b1_to_a];
    cmd(base("delete", "A").with("delete-delay", int(0)));
    seen
}

/// A `tern relay` on table `name` with media ports `ports`.
fn tern(name: &str, ports: &str) -> (Proc, SocketAddr) {
    let ng = free_port();
    let inst = format!("ngfork-{name}-{}", std::process::id());
    let (p, _) = spawn_relay(&inst, ports, ng, &[]);
    (p, ([127, 0, 0, 1], ng).into())
}

/// What tern does, with or without rtpengine to compare with.
fn check_tern(t: &Seen, via: bool) {
    let distinct = |v: &[u16]| v.iter().collect::<BTreeSet<_>>().len() == v.len();
    assert!(distinct(&t.answer), "A gets a port per fork: {t:?}");
    assert!(distinct(&t.offer), "a port per offered fork: {t:?}");
    assert_eq!(t.delete_warning, "", "{t:?}");
    // A's media goes to the fork whose port it sends to.
    assert_eq!(t.a_to_first, [true, false], "{t:?}");
    assert_eq!(t.a_to_second, [false, true], "{t:?}");
    if via {
        assert_eq!(t.early, [true, true], "both forks' early media: {t:?}");
        assert_eq!(t.after, [false, true, true, false], "{t:?}");
    } else {
        // Both forks send to the offer's port, B1's slot, which has
        // learned B1: B2's media is not taken there (rtpengine follows
        // the latest source and takes both).
        assert_eq!(t.early, [true, false], "{t:?}");
        // B1's delete releases that port: B2 can no longer reach A
        // (as with rtpengine), A still reaches B2.
        assert_eq!(t.after, [false, true, false, false], "{t:?}");
    }
}

#[test]
fn forked_early_media_and_loser_delete_through_tern() {
    let (mut relay, ng) = tern("media", "22900-22949");
    let via = run(ng, "fork-via", true);
    check_tern(&via, true);
    let plain = run(ng, "fork-plain", false);
    check_tern(&plain, false);
    let _ = relay.stop();
}

/// The same sequences against rtpengine 10.5: the SDP ports have the same
/// structure; the media differs only where docs/NG.md says.
#[test]
fn forked_call_matches_rtpengine() {
    if !have_rtpengine() {
        return;
    }
    let rtpe = Rtpengine::start(&["127.0.0.1"], RTPE_PORTS.0, RTPE_PORTS.1, &[]);
    let (mut relay, ng) = tern("cmp", "22950-22999");
    for via in [true, false] {
        let name = if via { "cmp-via" } else { "cmp-plain" };
        let r = run(rtpe.addr(), name, via);
        let t = run(ng, name, via);
        eprintln!("rtpengine: {r:?}\ntern:      {t:?}");
        // SDP structure: one port per offer (a new via-branch: a new
        // port), and a new port for A with each fork's answer.
        assert_eq!(r.offer.len(), t.offer.len());
        let distinct = |v: &[u16]| v.iter().collect::<BTreeSet<_>>().len() == v.len();
        assert!(distinct(&r.offer) && distinct(&r.answer), "{r:?}");
        check_tern(&t, via);
        assert_eq!(r.delete_warning, t.delete_warning);
        // Same: A's media to the latest answer's port reaches B2 only.
        assert_eq!(r.a_to_second, t.a_to_second);
        // Differs: rtpengine sends all of A's media to the latest answer's
        // fork, whichever of A's ports it arrives at; tern keeps each
        // fork's media path (A's port in B1's answer still reaches B1).
        assert_eq!(r.a_to_first, [false, true], "{r:?}");
        if via {
            assert_eq!(r.early, t.early, "each fork's early media reaches A");
            assert_eq!(r.after, t.after, "after the loser's delete");
        } else {
            // Differs: rtpengine takes both forks' media at the offer's
            // port (it follows the latest source); tern only the first.
            assert_eq!(r.early, [true, true], "{r:?}");
            // Same after the delete: the offer's port is gone with B1.
            assert_eq!(r.after, t.after, "after the loser's delete");
        }
    }
    let _ = relay.stop();
}
