//! The B2BUA transcodes (issue 14, `[media] transcode`, on by default): a
//! PCMU-only caller calls a PCMA-only callee through `tern up`. The
//! callee is offered PCMA beside PCMU, answers PCMA alone, and the caller
//! gets its own PCMU back; each side then receives the other's test tone
//! in its own codec, correlating ≥ 0.99 with what was sent.
//!
//! Ports: SIP 18350 (ng 18351, HTTP 18352), relay 19200-19249.

mod common;
use common::audio::*;
use common::sipclient::*;
use common::*;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// The `m=audio` formats of a message's SDP body.
fn formats(msg: &str) -> Vec<u8> {
    body(msg)
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .map(|m| {
            m.split(' ')
                .skip(3)
                .filter_map(|p| p.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The `m=audio` port of a message's SDP body.
fn port(msg: &str) -> u16 {
    body(msg)
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .and_then(|m| m.split(' ').nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio in {msg}"))
}

/// A response to `req` with `code`, To-tagged, with `sdp` as its body.
fn answer(req: &str, code: u16, contact: &str, sdp: &str) -> String {
    let mut r = format!("SIP/2.0 {code} OK\r\n");
    for l in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if ["via", "from", "call-id", "cseq", "record-route"].contains(&name.as_str()) {
            r.push_str(l);
            r.push_str("\r\n");
        } else if name == "to" {
            r.push_str(&format!("{l};tag=bobtag\r\n"));
        }
    }
    r.push_str(&format!(
        "Contact: <{contact}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    r
}

#[test]
fn pcmu_caller_pcma_callee_through_tern_up() {
    let a = |p: u16| -> SocketAddr { ([127, 0, 0, 1], p).into() };
    let instance = format!("sip-xc-{}", std::process::id());
    let (sip, ng, http) = (a(18350), a(18351), a(18352));
    let (mut tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            &sip.to_string(),
            "--ports",
            "19200-19249",
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            &ng.to_string(),
            "--http",
            &http.to_string(),
        ],
        &["tern sip: listening"],
    );
    let registrar = sip.to_string();
    // bob (the callee) registers; open registration on loopback.
    let mut bob = Link::udp(sip);
    assert_eq!(
        register_digest(&mut bob, &registrar, "bob", "x", None),
        Some(200)
    );
    let (rtp_a, rtp_b) = (
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    );
    for s in [&rtp_a, &rtp_b] {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    }
    let (pa, pb) = (
        rtp_a.local_addr().unwrap().port(),
        rtp_b.local_addr().unwrap().port(),
    );

    // alice offers PCMU alone.
    let mut alice = Link::udp(sip);
    let uri = format!("sip:bob@{sip}");
    alice.send(&request(
        &alice,
        "INVITE",
        &uri,
        "alice",
        "bob",
        "sip-xc-1",
        1,
        "",
        &sdp(pa, Enc::Pcmu),
    ));
    let inv = bob.recv(Duration::from_secs(5)).expect("the INVITE at bob");
    assert!(inv.starts_with("INVITE "), "{inv}");
    // bob is offered alice's codec first, then what the relay transcodes.
    assert_eq!(formats(&inv), [0, 101, 8, 9, 96], "{inv}");
    let to_b = port(&inv);
    let (_, bob_host) = bob.via();
    bob.send(&answer(
        &inv,
        200,
        &format!("sip:bob@{bob_host}"),
        &sdp(pb, Enc::Pcma),
    ));
    let ok = alice
        .final_response("INVITE", Duration::from_secs(5))
        .expect("200 at alice");
    assert_eq!(status(&ok), Some(200), "{ok}");
    // alice gets her own codec (and her telephone-event) back.
    assert_eq!(formats(&ok), [0, 101], "{ok}");
    let to_a = port(&ok);
    let to = header(&ok, "To").unwrap();
    let ack = request(&alice, "ACK", &uri, "alice", "bob", "sip-xc-1", 1, "", "").replacen(
        "To: <sip:bob@127.0.0.1>",
        &format!("To: {to}"),
        1,
    );
    alice.send(&ack);

    // Media both ways, each in its own codec.
    send(&rtp_a, a(to_a), Enc::Pcmu, &tone(PACKETS * 160, 8000.0));
    let at_b = receive(&rtp_b, Enc::Pcma, 600);
    send(&rtp_b, a(to_b), Enc::Pcma, &tone(PACKETS * 160, 8000.0));
    let at_a = receive(&rtp_a, Enc::Pcmu, 600);
    let corr_b = correlation(
        &tone(at_b.pcm.len().min(PACKETS * 160), 8000.0),
        &at_b.pcm,
        800,
    );
    let corr_a = correlation(
        &tone(at_a.pcm.len().min(PACKETS * 160), 8000.0),
        &at_a.pcm,
        800,
    );
    eprintln!(
        "bob got {} packets pts {:?} corr {corr_b:.4}; alice got {} pts {:?} corr {corr_a:.4}",
        at_b.packets, at_b.pts, at_a.packets, at_a.pts
    );
    tern.stop();
    unlink_table(&instance);
    assert_eq!(at_b.pts, [8], "bob receives PCMA only");
    assert_eq!(at_a.pts, [0], "alice receives PCMU only");
    assert!(at_b.packets >= PACKETS - 2 && at_a.packets >= PACKETS - 2);
    assert!(corr_b >= 0.99, "alice → bob correlation {corr_b:.4}");
    assert!(corr_a >= 0.99, "bob → alice correlation {corr_a:.4}");
}
