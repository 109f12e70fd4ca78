//! ng `play DTMF` with real media, against `tern relay` and against
//! rtpengine 10.5 (userspace `--table=-1`, `inject-DTMF` as it needs)
//! with the same ng commands: A streams PCMU to B through the relay; the
//! digits played into A's stream are seen at B by tern's own DTMF
//! detector as RFC 4733 events, in order, from both relays. `block DTMF`
//! on A stops A's own events but, as in rtpengine, not those the relay
//! plays for A; after `unblock DTMF` A's own pass again.
//! tern's event packets also keep A's stream gap-free (they take the
//! sequence numbers of the audio they replace).
//!
//! Ports: tern relay 30700-30799, rtpengine 30200-30299.

mod common;
use common::ng::NgClient;
use common::rtpengine::{have_rtpengine, Rtpengine};
use common::*;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tern_dataplane::quality::dtmf::DtmfDetector;
use tern_ng::bencode::{bstr, int, str_list, Dict};

const DTMF_PT: u8 = 101;

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    s
}

struct Call {
    a: UdpSocket,
    b: UdpSocket,
    relay_a: u16,
    seq: u16,
    detector: DtmfDetector,
    /// B's received sequence numbers (tern keeps them gap-free).
    seqs: Vec<u16>,
    events_at_b: usize,
}

impl Call {
    /// Streams `ms` of 20 ms PCMU from A, the first five packets being
    /// A's own telephone-event `own` if given (the last three its end);
    /// feeds what B gets to the detector. The digits completed meanwhile.
    fn stream(&mut self, ms: u64, own: Option<u8>) -> String {
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        let mut k = 0u64;
        let mut digits = String::new();
        while start.elapsed() < Duration::from_millis(ms) {
            let due = start + Duration::from_millis(20 * k);
            if Instant::now() >= due {
                self.seq = self.seq.wrapping_add(1);
                let event = own.filter(|_| k < 5);
                let mut p = vec![0x80, if event.is_some() { DTMF_PT } else { 0 }];
                p.extend(self.seq.to_be_bytes());
                let ts0 = u32::from(self.seq - k as u16) * 160;
                let ts = if event.is_some() {
                    ts0
                } else {
                    u32::from(self.seq) * 160
                };
                p.extend(ts.to_be_bytes());
                p.extend(0xa11c_e000u32.to_be_bytes());
                match event {
                    Some(e) => {
                        let end = if k >= 2 { 0x80 } else { 0 };
                        let d = (160 * (k.min(2) + 1) as u16).to_be_bytes();
                        p.extend([e, end | 10, d[0], d[1]]);
                    }
                    None => p.extend([0xffu8; 160]),
                }
                self.a.send_to(&p, ("127.0.0.1", self.relay_a)).unwrap();
                k += 1;
            }
            while let Ok(n) = self.b.recv(&mut buf) {
                if n < 12 {
                    continue;
                }
                self.seqs.push(u16::from_be_bytes([buf[2], buf[3]]));
                if buf[1] & 0x7f == DTMF_PT {
                    self.events_at_b += 1;
                    let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                    let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    let _ = self.detector.on_packet(ssrc, ts, &buf[12..n], 0);
                    // The detector holds two completed events: take them
                    // as they come, as the worker does.
                    while let Some(e) = self.detector.poll() {
                        digits.push(e.digit);
                    }
                }
            }
        }
        digits
    }
}

/// The sequence against the relay at `ng`: (digits B saw after the
/// plays, after the blocked plays, after unblocking; B's sequence
/// numbers until the block).
fn run(ng: SocketAddr, flags: &[&str]) -> (String, String, String, Vec<u16>) {
    let (a, b) = (sock(), sock());
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let mut ng = NgClient::new(ng, "play-dtmf");
    let (to_b, relay_a) = ng.offer_answer("play-dtmf", &sdp(pa), &sdp(pb), flags);
    b.send_to(
        &[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9],
        ("127.0.0.1", to_b),
    )
    .unwrap();
    let mut call = Call {
        a,
        b,
        relay_a,
        seq: 100,
        detector: DtmfDetector::new(),
        seqs: Vec::new(),
        events_at_b: 0,
    };
    let play = |code: &str| {
        Dict::new()
            .with("command", bstr("play DTMF"))
            .with("call-id", bstr("play-dtmf"))
            .with("from-tag", bstr("A"))
            .with("code", bstr(code))
            .with("duration", int(100))
            .with("pause", int(100))
    };
    let ctl_cmd = |c: &str| {
        Dict::new()
            .with("command", bstr(c))
            .with("call-id", bstr("play-dtmf"))
            .with("from-tag", bstr("A"))
            .with("flags", str_list(["directional"]))
    };
    call.stream(300, None);
    for code in ["1", "#", "9"] {
        ng.ok(play(code));
    }
    let played = call.stream(1500, None);
    // Up to here nothing was blocked: the stream must be whole.
    let seqs = std::mem::take(&mut call.seqs);
    ng.ok(ctl_cmd("block DTMF"));
    let blocked_own = call.stream(500, Some(2));
    ng.ok(play("4"));
    let blocked_played = call.stream(800, None);
    ng.ok(ctl_cmd("unblock DTMF"));
    let unblocked = call.stream(500, Some(3));
    let blocked = format!("{blocked_own}{blocked_played}");
    ng.ok(Dict::new()
        .with("command", bstr("delete"))
        .with("call-id", bstr("play-dtmf"))
        .with("from-tag", bstr("A")));
    assert!(call.events_at_b > 0);
    (played, blocked, unblocked, seqs)
}

#[test]
fn played_digits_reach_the_far_side_as_rtpengines_do() {
    let instance = format!("ng-play-dtmf-{}", std::process::id());
    let ng = free_port();
    let (mut tern, _) = spawn_relay(&instance, "30700-30799", ng, &[]);
    let ours = run(([127, 0, 0, 1], ng).into(), &[]);
    tern.stop();
    unlink_table(&instance);
    eprintln!(
        "tern: played {:?}, blocked {:?}, unblocked {:?}",
        ours.0, ours.1, ours.2
    );
    assert_eq!(
        (ours.0.as_str(), ours.1.as_str(), ours.2.as_str()),
        ("1#9", "4", "3"),
        "played; A's own 2 blocked, 4 played; A's own 3"
    );
    // One stream at B while the digits played: every sequence number
    // once, none skipped (blocked events are dropped, so not after).
    let s = &ours.3;
    assert!(
        s.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "gap or reorder in B's stream: {s:?}"
    );

    if !have_rtpengine() {
        return;
    }
    let rtpe = Rtpengine::start(&["127.0.0.1"], 30200, 30299, &[]);
    let theirs = run(rtpe.addr(), &["inject-DTMF"]);
    drop(rtpe);
    eprintln!(
        "rtpengine: played {:?}, blocked {:?}, unblocked {:?}",
        theirs.0, theirs.1, theirs.2
    );
    assert_eq!(
        (ours.0, ours.1, ours.2),
        (theirs.0, theirs.1, theirs.2),
        "tern and rtpengine differ"
    );
}
