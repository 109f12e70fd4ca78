//! ng media control with real media, against `tern relay` and against
//! rtpengine 10.5 (userspace `--table=-1`) with the same ng commands:
//! A sends PCMU and RFC 4733 events to B through the relay while the
//! call goes through `block DTMF` (call-wide, then directional for A),
//! `unblock DTMF`, `block media` and `unblock media`; what reaches B at
//! each step must be the same from both relays, and what the issue says.
//!
//! Ports: tern relay 30500-30599, rtpengine 30100-30199.

mod common;
use common::ng::NgClient;
use common::rtpengine::{have_rtpengine, Rtpengine};
use common::*;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tern_ng::bencode::{bstr, str_list, Dict};

const DTMF_PT: u8 = 101;

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
    )
}

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

/// One 20 ms PCMU packet, or one telephone-event packet (event 5, a
/// new event each time so no relay takes it for a retransmission).
fn packet(pt: u8, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend(seq.to_be_bytes());
    p.extend((u32::from(seq) * 160).to_be_bytes());
    p.extend(0x5eed_0001u32.to_be_bytes());
    if pt == DTMF_PT {
        // event, E|volume, duration (RFC 4733 §2.3).
        p.extend([5, 0x80 | 10, 0x03, 0x20]);
    } else {
        p.extend([0xd5u8; 160]);
    }
    p
}

/// What one step let through to B: (PCMU packets, event packets) of 5
/// each sent.
type Step = (usize, usize);

struct Media {
    a: UdpSocket,
    b: UdpSocket,
    relay_a: u16,
    seq: u16,
}

impl Media {
    fn step(&mut self) -> Step {
        let mut buf = [0u8; 2048];
        let (mut audio, mut events) = (0, 0);
        for _ in 0..5 {
            for pt in [0, DTMF_PT] {
                self.seq += 1;
                let p = packet(pt, self.seq);
                self.a.send_to(&p, ("127.0.0.1", self.relay_a)).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let end = Instant::now() + Duration::from_millis(300);
        while Instant::now() < end {
            if let Ok(n) = self.b.recv(&mut buf) {
                match (n >= 12).then(|| buf[1] & 0x7f) {
                    Some(0) => audio += 1,
                    Some(DTMF_PT) => events += 1,
                    _ => {}
                }
            }
        }
        (audio, events)
    }
}

/// The sequence against the relay whose ng socket is `ng`.
fn run(ng: SocketAddr) -> Vec<(&'static str, Step)> {
    let (a, b) = (sock(), sock());
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let mut ng = NgClient::new(ng, "ctl-media");
    let (to_b, relay_a) = ng.offer_answer("ctl-media", &sdp(pa), &sdp(pb), &[]);
    // B speaks first, so both relays have learned B before A's media.
    for seq in 0..3 {
        b.send_to(&packet(0, seq), ("127.0.0.1", to_b)).unwrap();
    }
    let mut m = Media {
        a,
        b,
        relay_a,
        seq: 0,
    };
    let cmd = |c: &str| {
        Dict::new()
            .with("command", bstr(c))
            .with("call-id", bstr("ctl-media"))
    };
    let a_only = |c: &str| {
        cmd(c)
            .with("from-tag", bstr("A"))
            .with("flags", str_list(["directional"]))
    };
    // Both relays learn A before anything is counted (what this test
    // compares is the commands, not the call's first packet).
    m.step();
    let mut out = vec![("open", m.step())];
    ng.ok(cmd("block DTMF"));
    out.push(("block DTMF (call)", m.step()));
    ng.ok(cmd("unblock DTMF"));
    out.push(("unblock DTMF (call)", m.step()));
    ng.ok(a_only("block DTMF"));
    out.push(("block DTMF (A)", m.step()));
    ng.ok(a_only("unblock DTMF"));
    ng.ok(a_only("block media"));
    out.push(("block media (A)", m.step()));
    ng.ok(a_only("unblock media"));
    out.push(("unblock media (A)", m.step()));
    ng.ok(cmd("delete").with("from-tag", bstr("A")));
    out
}

#[test]
fn block_and_unblock_let_through_what_rtpengine_does() {
    if !have_rtpengine() {
        return;
    }
    let instance = format!("ng-ctl-media-{}", std::process::id());
    let ng = free_port();
    let (mut tern, _) = spawn_relay(&instance, "30500-30599", ng, &[]);
    let ours = run(([127, 0, 0, 1], ng).into());
    tern.stop();
    unlink_table(&instance);
    let rtpe = Rtpengine::start(&["127.0.0.1"], 30100, 30199, &[]);
    let theirs = run(rtpe.addr());
    drop(rtpe);
    eprintln!("tern:      {ours:?}\nrtpengine: {theirs:?}");
    // What the commands mean, 5 of each sent per step.
    let want = [
        ("open", (5, 5)),
        ("block DTMF (call)", (5, 0)),
        ("unblock DTMF (call)", (5, 5)),
        ("block DTMF (A)", (5, 0)),
        ("block media (A)", (0, 5)),
        ("unblock media (A)", (5, 5)),
    ];
    assert_eq!(ours, want, "tern");
    assert_eq!(ours, theirs, "tern and rtpengine differ");
}
