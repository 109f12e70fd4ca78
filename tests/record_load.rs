//! Many concurrent recorded calls through `tern relay --recording-dir`,
//! recording asked for by the offer's `record-call: yes`: every packet
//! each party sends reaches the other party (no forwarded packet lost to
//! recording), each call's JSON is written at `delete`, and the relay's
//! `tern_record_dropped_total` frames are reported.
//!
//! Calls: `TERN_RECORD_LOAD_CALLS` (default 500); 3 s of 20 ms PCMU per
//! leg. Ports: relay media 12000-13999 (2,000 ports: 500 calls × 4; no other test uses 10000-14999).
//! This 2-vCPU machine shares its CPUs with the generator (this test),
//! so loss at the receivers would first be checked against the relay's
//! own counters; none is allowed either way.

mod common;
use common::ng::{sdp_port, NgClient};
use common::*;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use tern_ng::bencode::{bstr, Dict};

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

struct Leg {
    s: UdpSocket,
    to: u16,
    sent: u64,
    got: u64,
}

fn leg() -> Leg {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    let s2 = socket2::SockRef::from(&s);
    let _ = s2.set_recv_buffer_size(1 << 20);
    Leg {
        s,
        to: 0,
        sent: 0,
        got: 0,
    }
}

#[test]
fn concurrent_recorded_calls_lose_no_forwarded_packet() {
    let calls: usize = std::env::var("TERN_RECORD_LOAD_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
        .clamp(1, 500);
    let dir = std::env::temp_dir().join(format!("tern-rec-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_s = dir.to_string_lossy().to_string();
    let instance = format!("rec-load-{}", std::process::id());
    let ng = free_port();
    let (mut tern, _) = spawn_relay(&instance, "12000-13999", ng, &["--recording-dir", &dir_s]);
    let mut c = NgClient::new(([127, 0, 0, 1], ng).into(), "rec-load");
    let mut legs: Vec<[Leg; 2]> = Vec::with_capacity(calls);
    for i in 0..calls {
        let (mut a, mut b) = (leg(), leg());
        let id = format!("rec-load-{i}");
        let pa = a.s.local_addr().unwrap().port();
        let pb = b.s.local_addr().unwrap().port();
        let r = c.ok(Dict::new()
            .with("command", bstr("offer"))
            .with("call-id", bstr(id.as_str()))
            .with("from-tag", bstr("A"))
            .with("record-call", bstr("yes"))
            .with("sdp", bstr(sdp(pa))));
        b.to = sdp_port(&r);
        let r = c.ok(Dict::new()
            .with("command", bstr("answer"))
            .with("call-id", bstr(id.as_str()))
            .with("from-tag", bstr("A"))
            .with("to-tag", bstr("B"))
            .with("sdp", bstr(sdp(pb))));
        a.to = sdp_port(&r);
        legs.push([a, b]);
    }
    let mut pkt = vec![0x80u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    pkt.extend([0xffu8; 160]);
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut k = 0u32;
    let drain = |legs: &mut Vec<[Leg; 2]>, buf: &mut [u8]| {
        for l in legs.iter_mut().flatten() {
            while l.s.recv(buf).is_ok() {
                l.got += 1;
            }
        }
    };
    while k < 150 {
        if Instant::now() >= start + Duration::from_millis(20 * u64::from(k)) {
            pkt[2..4].copy_from_slice(&(k as u16).to_be_bytes());
            pkt[4..8].copy_from_slice(&(k * 160).to_be_bytes());
            for (i, pair) in legs.iter_mut().enumerate() {
                for (j, l) in pair.iter_mut().enumerate() {
                    pkt[8..12].copy_from_slice(&((i as u32) << 1 | j as u32).to_be_bytes());
                    if l.s.send_to(&pkt, ("127.0.0.1", l.to)).is_ok() {
                        l.sent += 1;
                    }
                }
            }
            k += 1;
        }
        drain(&mut legs, &mut buf);
        std::thread::sleep(Duration::from_micros(500));
    }
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        drain(&mut legs, &mut buf);
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    let sent: u64 = legs.iter().flatten().map(|l| l.sent).sum();
    let lost: u64 = legs
        .iter()
        .map(|[a, b]| (a.sent - b.got.min(a.sent)) + (b.sent - a.got.min(b.sent)))
        .sum();
    for i in 0..calls {
        c.ok(Dict::new()
            .with("command", bstr("delete"))
            .with("call-id", bstr(format!("rec-load-{i}")))
            .with("from-tag", bstr("A")));
    }
    // Each call's JSON once the writer saw the slots go.
    let deadline = Instant::now() + Duration::from_secs(10);
    let count = || {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    };
    while count() < calls && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let jsons = count();
    let mut recorded = 0u64;
    for e in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
        if e.path().extension().is_some_and(|x| x == "json") {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
            recorded += v["legs"][0]["rtp_packets"].as_u64().unwrap_or(0)
                + v["legs"][1]["rtp_packets"].as_u64().unwrap_or(0);
        }
    }
    tern.stop();
    unlink_table(&instance);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "record load: {calls} recorded calls, {sent} packets sent in {:.2} s ({:.0} pps), {lost} lost, {recorded} recorded ({} not recorded: dropped at a full ring), {jsons} JSON files",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        sent.saturating_sub(recorded)
    );
    assert_eq!(lost, 0, "forwarded packets lost");
    assert_eq!(jsons, calls, "one JSON per recorded call");
}
