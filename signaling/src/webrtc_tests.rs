//! WebRTC legs through the B2BUA on a virtual clock: a Chrome caller to a
//! plain SIP callee through `SipCore` (offer, answer, hold, ICE restart),
//! a plain caller to a callee the transport marks WebRTC (driven on the
//! B2BUA directly, since the core does not set the hint yet), and the
//! refusals. A real slot table in /dev/shm, no dataplane.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use tern_shared::table::{Direction, DtlsRole, SlotConfig, SlotState, SlotTable, TableParams};

use crate::b2bua::{B2bua, Target};
use crate::config::{load_users_toml, SipConfig};
use crate::core::SipCore;
use crate::msg::{parse, Msg};
use crate::outbox::Outbox;
use crate::relay::ShmRelay;
use crate::retransmit::Retransmitter;
use crate::sdp::parse_audio;
use crate::snapshot::SipSnapshot;
use crate::stats::CoreStats;
use crate::tu::Tu;

const TERN: &str = "127.0.0.1:5060";
const ALICE: &str = "127.0.0.1:5080";
const BOB: &str = "127.0.0.1:5070";
const MEDIA_IP: &str = "203.0.113.7";
/// The dataplane's certificate fingerprint in these tests.
const OUR_FP: [u8; 32] = [0xab; 32];

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Chrome's fingerprint in [`chrome_offer`], as bytes.
fn chrome_fp() -> Vec<u8> {
    (0..32u8)
        .map(|i| i.wrapping_mul(7).wrapping_add(3))
        .collect()
}

fn fp_hex(d: &[u8]) -> String {
    d.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A Chrome 120 offer: BUNDLE of audio (mid 0), video (1) and data (2);
/// opus, red, G722, PCMU, PCMA, CN and two telephone-events; trickle ICE
/// with a host, an mDNS `.local` and a srflx candidate; `audio_dir` as the
/// audio direction.
fn chrome_offer(ufrag: &str, pwd: &str, audio_dir: &str) -> String {
    let fp = fp_hex(&chrome_fp());
    let msid = "0b8c6a1e-5d2f-4a3b-9c7d-1e2f3a4b5c6d";
    let track = "7d3fa1b2-c4d5-4e6f-8a9b-0c1d2e3f4a5b";
    let ice = format!(
        "a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=ice-options:trickle\r\na=fingerprint:sha-256 {fp}\r\na=setup:actpass\r\n"
    );
    format!(
        "v=0\r\n\
         o=- 4215775240449105457 2 IN IP4 127.0.0.1\r\n\
         s=-\r\n\
         t=0 0\r\n\
         a=group:BUNDLE 0 1 2\r\n\
         a=extmap-allow-mixed\r\n\
         a=msid-semantic: WMS {msid}\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
         c=IN IP4 0.0.0.0\r\n\
         a=rtcp:9 IN IP4 0.0.0.0\r\n\
         a=candidate:1467250027 1 udp 2122260223 192.168.1.20 54400 typ host generation 0 network-id 1\r\n\
         a=candidate:3256413436 1 udp 2122194687 3f6f0a3e-4b9d-4c1a-9c5e-1d2f3a4b5c6d.local 54401 typ host generation 0 network-id 2\r\n\
         a=candidate:1853887674 1 udp 1686052607 198.51.100.23 54400 typ srflx raddr 192.168.1.20 rport 54400 generation 0 network-id 1\r\n\
         {ice}\
         a=mid:0\r\n\
         a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
         a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
         a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
         a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
         a={audio_dir}\r\n\
         a=msid:{msid} {track}\r\n\
         a=rtcp-mux\r\n\
         a=rtcp-rsize\r\n\
         a=rtpmap:111 opus/48000/2\r\n\
         a=rtcp-fb:111 transport-cc\r\n\
         a=fmtp:111 minptime=10;useinbandfec=1\r\n\
         a=rtpmap:63 red/48000/2\r\n\
         a=fmtp:63 111/111\r\n\
         a=rtpmap:9 G722/8000\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:13 CN/8000\r\n\
         a=rtpmap:110 telephone-event/48000\r\n\
         a=rtpmap:126 telephone-event/8000\r\n\
         a=ssrc:3735928559 cname:Yq1bTzX0aWcJ5e3H\r\n\
         a=ssrc:3735928559 msid:{msid} {track}\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\n\
         c=IN IP4 0.0.0.0\r\n\
         a=rtcp:9 IN IP4 0.0.0.0\r\n\
         {ice}\
         a=mid:1\r\n\
         a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
         a=sendrecv\r\n\
         a=rtcp-mux\r\n\
         a=rtcp-rsize\r\n\
         a=rtpmap:96 VP8/90000\r\n\
         a=rtcp-fb:96 goog-remb\r\n\
         a=rtcp-fb:96 nack pli\r\n\
         a=rtpmap:97 rtx/90000\r\n\
         a=fmtp:97 apt=96\r\n\
         a=rtpmap:102 H264/90000\r\n\
         a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
         a=rtpmap:103 rtx/90000\r\n\
         a=fmtp:103 apt=102\r\n\
         a=ssrc-group:FID 1111 2222\r\n\
         a=ssrc:1111 cname:Yq1bTzX0aWcJ5e3H\r\n\
         a=ssrc:2222 cname:Yq1bTzX0aWcJ5e3H\r\n\
         m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
         c=IN IP4 0.0.0.0\r\n\
         {ice}\
         a=mid:2\r\n\
         a=sctp-port:5000\r\n\
         a=max-message-size:262144\r\n"
    )
}

const PWD1: &str = "8Yb0Fq3ZpWw2n5sR1tJ7kLmN";

/// A plain SIP phone's SDP: PCMU and telephone-event, no rtcp-mux.
fn plain_sdp(ip: &str, port: u16, extra: &str) -> String {
    format!(
        "v=0\r\no=bob 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n{extra}"
    )
}

fn table(name: &str, cert: bool) -> Arc<SlotTable> {
    let inst = format!("test-webrtc-{name}-{}", std::process::id());
    let t = SlotTable::create_or_attach(
        &inst,
        TableParams {
            port_lo: 32000,
            port_hi: 32015,
            workers: 1,
            media_ip: MEDIA_IP.parse().unwrap(),
        },
    )
    .unwrap();
    if cert {
        t.set_dtls_fingerprint(&OUR_FP);
    }
    Arc::new(t)
}

fn parse_all(out: &mut Outbox) -> Vec<(SocketAddr, Msg)> {
    let mut v = Vec::new();
    while let Some(t) = out.pop() {
        v.push((t.dest, parse(&t.bytes).unwrap()));
    }
    v
}

fn only<'a>(out: &'a [(SocketAddr, Msg)], what: &str) -> &'a Msg {
    let v: Vec<_> = out
        .iter()
        .filter(|(_, m)| {
            m.method() == Some(what) || m.code().map(|c| c.to_string()).as_deref() == Some(what)
        })
        .collect();
    assert_eq!(v.len(), 1, "expected one {what} in {} messages", out.len());
    &v[0].1
}

/// The core, its table and clock.
struct H {
    core: SipCore,
    table: Arc<SlotTable>,
    now: Instant,
}

impl Drop for H {
    fn drop(&mut self) {
        let _ = self.table.unlink();
    }
}

impl H {
    fn new(name: &str, cert: bool) -> H {
        let table = table(name, cert);
        let cfg = SipConfig {
            listen: addr(TERN),
            users: load_users_toml("").unwrap(),
            ..SipConfig::default()
        };
        let now = Instant::now();
        let relay = Box::new(ShmRelay::new(table.clone()));
        let core = SipCore::new(&cfg, relay, addr(TERN), now);
        let mut h = H { core, table, now };
        let reg = format!(
            "REGISTER sip:{TERN} SIP/2.0\r\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bKreg1\r\nFrom: <sip:bob@{TERN}>;tag=r1\r\nTo: <sip:bob@{TERN}>\r\nCall-ID: reg-bob\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@{BOB}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let out = h.send(BOB, &reg);
        only(&out, "200");
        h
    }

    fn send(&mut self, from: &str, text: &str) -> Vec<(SocketAddr, Msg)> {
        self.core
            .handle_datagram(text.as_bytes(), addr(from), self.now);
        let mut v = Vec::new();
        while let Some((d, b)) = self.core.poll_transmit() {
            v.push((d, parse(&b).unwrap()));
        }
        v
    }

    fn slot_cfg(&self) -> (u32, SlotConfig) {
        let v: Vec<u32> = (0..self.table.capacity())
            .filter(|&i| self.table.state(i) == SlotState::Active)
            .collect();
        assert_eq!(v.len(), 1, "active slots: {v:?}");
        (v[0], self.table.read_config(v[0]).unwrap().0)
    }
}

fn with_sdp(head: String, body: &str) -> String {
    format!(
        "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// alice's (the browser's) request in her dialog; `to_tag` empty for the
/// initial INVITE.
fn alice_req(method: &str, cseq: u32, to_tag: &str, body: Option<&str>) -> String {
    let tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    let head = format!(
        "{method} sip:bob@{TERN} SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK{method}{cseq}\r\nFrom: <sip:alice@{ALICE}>;tag=a1\r\nTo: <sip:bob@{TERN}>{tag}\r\nCall-ID: webrtc-1\r\nCSeq: {cseq} {method}\r\nContact: <sip:alice@{ALICE}>\r\nMax-Forwards: 70\r\n"
    );
    match body {
        Some(b) => with_sdp(head, b),
        None => head + "Content-Length: 0\r\n\r\n",
    }
}

/// A response to request `req` (which tern sent), To tag `tag`.
fn response_to(req: &Msg, code: u16, tag: &str, body: &str) -> String {
    let vias: String = req
        .headers("Via")
        .map(|v| format!("Via: {v}\r\n"))
        .collect();
    let to = req.header("To").unwrap();
    let to = if to.contains("tag=") {
        to.to_string()
    } else {
        format!("{to};tag={tag}")
    };
    let head = format!(
        "SIP/2.0 {code} OK\r\n{vias}From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:peer@{BOB}>\r\n",
        req.header("From").unwrap(),
        req.call_id,
        req.header("CSeq").unwrap(),
    );
    with_sdp(head, body)
}

fn text(m: &Msg) -> String {
    String::from_utf8(m.body().to_vec()).unwrap()
}

fn attr<'a>(body: &'a str, name: &str) -> Vec<&'a str> {
    let p = format!("a={name}:");
    body.lines().filter_map(|l| l.strip_prefix(&p)).collect()
}

/// Lines a plain party must never see.
const WEBRTC_ONLY: &[&str] = &[
    "UDP/TLS",
    "a=ice-",
    "a=candidate",
    "a=fingerprint",
    "a=setup",
    "a=mid",
    "a=group",
    "a=ssrc",
    "a=extmap",
    "a=rtcp-fb",
    "a=rtcp-rsize",
    "a=msid",
    "a=end-of-candidates",
    "m=video",
    "m=application",
];

/// Checks the SDP toward the browser: our ICE-lite, candidate, DTLS and
/// BUNDLE lines, and the offer's three m= lines with video and data
/// rejected. Returns (ufrag, pwd).
fn check_answer_to_browser(h: &H, slot: u32, body: &str, setup: &str) -> (String, String) {
    let p0 = h.table.ports(slot, 0);
    let m: Vec<&str> = body.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(m.len(), 3, "{body}");
    assert!(m[0].starts_with(&format!("m=audio {} UDP/TLS/RTP/SAVPF ", p0.rtp)));
    assert_eq!(m[1], "m=video 0 UDP/TLS/RTP/SAVPF 96 97 102 103", "{body}");
    assert_eq!(m[2], "m=application 0 UDP/DTLS/SCTP webrtc-datachannel");
    assert_eq!(attr(body, "mid"), ["0", "1", "2"], "{body}");
    let session = &body[..body.find("m=audio").unwrap()];
    assert!(session.contains("a=ice-lite\r\n"), "{body}");
    assert_eq!(attr(session, "group"), ["BUNDLE 0"], "{body}");
    assert_eq!(
        attr(body, "candidate"),
        [format!("1 1 UDP 2130706431 {MEDIA_IP} {} typ host", p0.rtp)]
    );
    assert_eq!(
        attr(body, "fingerprint"),
        [format!("sha-256 {}", fp_hex(&OUR_FP))]
    );
    assert_eq!(attr(body, "setup"), [setup]);
    assert_eq!(body.matches("a=rtcp-mux\r\n").count(), 1, "{body}");
    assert!(
        !body.contains("a=ssrc") && !body.contains("10.0.0.2"),
        "{body}"
    );
    let u = attr(body, "ice-ufrag");
    let p = attr(body, "ice-pwd");
    assert_eq!((u.len(), p.len()), (1, 1), "{body}");
    (u[0].to_string(), p[0].to_string())
}

#[test]
fn chrome_caller_to_plain_callee_then_hold_and_ice_restart() {
    let mut h = H::new("chrome", true);
    let out = h.send(
        ALICE,
        &alice_req(
            "INVITE",
            1,
            "",
            Some(&chrome_offer("Kq3Z", PWD1, "sendrecv")),
        ),
    );
    only(&out, "100");
    let inv = only(&out, "INVITE").clone();
    let (slot, cfg) = h.slot_cfg();

    // The plain callee sees RTP/AVP audio only, PCMU/PCMA and DTMF kept.
    let b = text(&inv);
    let p1 = h.table.ports(slot, 1);
    assert_eq!(b.matches("m=").count(), 1, "{b}");
    assert!(
        b.contains(&format!("m=audio {} RTP/AVP 111 9 0 8 110 126\r\n", p1.rtp)),
        "{b}"
    );
    for l in [
        "PCMU/8000",
        "PCMA/8000",
        "telephone-event/8000",
        "a=rtcp-mux",
    ] {
        assert!(b.contains(l), "{l} missing: {b}");
    }
    for l in WEBRTC_ONLY {
        assert!(!b.contains(l), "{l} sent to the plain callee: {b}");
    }
    assert!(b.contains(&format!("c=IN IP4 {MEDIA_IP}\r\n")), "{b}");

    // Leg 0 terminates DTLS-SRTP (we are passive, Chrome's certificate
    // pinned) and ICE-lite; leg 1 is plain.
    let sec = cfg.legs[0].secure;
    let dtls = sec.dtls.expect("leg 0 DTLS");
    assert_eq!((dtls.role, dtls.hash), (DtlsRole::Passive, 3));
    assert_eq!(dtls.digest(), &chrome_fp()[..]);
    let ice = sec.ice.expect("leg 0 ICE");
    assert_eq!(
        ice.remote_ufrag.map(|u| u.as_str().to_string()).as_deref(),
        Some("Kq3Z")
    );
    assert_eq!(ice.local_ufrag.as_str().len(), 8);
    assert!(cfg.legs[1].secure.is_plain());
    assert!(cfg.legs[0].rtcp_mux);

    // bob answers PCMU + DTMF without rtcp-mux.
    let out = h.send(
        BOB,
        &response_to(&inv, 200, "b1", &plain_sdp("10.0.0.2", 50000, "")),
    );
    let ok = only(&out, "200").clone();
    let a = text(&ok);
    let (u1, pw1) = check_answer_to_browser(&h, slot, &a, "passive");
    assert!(a.contains("UDP/TLS/RTP/SAVPF 0 101\r\n"), "{a}");
    assert_eq!(u1, ice.local_ufrag.as_str());
    assert_eq!(pw1, ice.local_pwd.as_str());
    let (_, cfg) = h.slot_cfg();
    assert_eq!(cfg.legs[1].peer, Some(addr("10.0.0.2:50000")));
    assert!(cfg.legs[0].rtcp_mux && !cfg.legs[1].rtcp_mux);
    assert_eq!(cfg.legs[0].secure, sec, "the answer keeps leg 0's security");
    let snap = SipSnapshot::capture_counts(&h.core);
    let legs = snap.calls[0].legs;
    assert_eq!(
        (
            legs[0].profile,
            legs[0].webrtc,
            legs[1].profile,
            legs[1].webrtc
        ),
        ("UDP/TLS/RTP/SAVPF", true, "RTP/AVP", false)
    );
    let a_tag = ok.to.tag().unwrap().to_string();
    let out = h.send(ALICE, &alice_req("ACK", 1, &a_tag, None));
    only(&out, "ACK");

    // Hold from the browser: sendonly, same ICE credentials.
    let hold = chrome_offer("Kq3Z", PWD1, "sendonly");
    let out = h.send(ALICE, &alice_req("INVITE", 2, &a_tag, Some(&hold)));
    let rinv = only(&out, "INVITE").clone();
    let b = text(&rinv);
    assert_eq!(
        parse_audio(rinv.body()).unwrap().direction,
        Direction::SendOnly
    );
    assert_eq!(b.matches("m=").count(), 1, "{b}");
    for l in WEBRTC_ONLY {
        assert!(!b.contains(l), "{l} in the hold re-INVITE: {b}");
    }
    let (_, cfg) = h.slot_cfg();
    assert_eq!(cfg.legs[0].direction, Direction::RecvOnly);
    assert_eq!(cfg.legs[1].direction, Direction::SendOnly);
    assert_eq!(cfg.legs[0].secure, sec, "no ICE restart, same DTLS");
    let out = h.send(
        BOB,
        &response_to(
            &rinv,
            200,
            "b1",
            &plain_sdp("10.0.0.2", 50000, "a=recvonly\r\n"),
        ),
    );
    let a = text(only(&out, "200"));
    let (u, pw) = check_answer_to_browser(&h, slot, &a, "passive");
    assert_eq!((u, pw), (u1.clone(), pw1.clone()), "same credentials: {a}");
    assert_eq!(
        parse_audio(a.as_bytes()).unwrap().direction,
        Direction::RecvOnly
    );
    let out = h.send(ALICE, &alice_req("ACK", 2, &a_tag, None));
    only(&out, "ACK");

    // ICE restart: new ufrag and pwd → new local credentials, the slot
    // reprogrammed, DTLS (same certificate) unchanged.
    let restart = chrome_offer("Zz9Y", "Qw7Er6Ty5Ui4Op3As2Df1Gh0", "sendrecv");
    let out = h.send(ALICE, &alice_req("INVITE", 3, &a_tag, Some(&restart)));
    let rinv = only(&out, "INVITE").clone();
    let (_, cfg) = h.slot_cfg();
    let ice2 = cfg.legs[0].secure.ice.expect("ICE after restart");
    assert_eq!(
        ice2.remote_ufrag.map(|u| u.as_str().to_string()).as_deref(),
        Some("Zz9Y")
    );
    assert_ne!(ice2.local_ufrag, ice.local_ufrag);
    assert_ne!(ice2.local_pwd, ice.local_pwd);
    assert_eq!(cfg.legs[0].secure.dtls, sec.dtls);
    let out = h.send(
        BOB,
        &response_to(&rinv, 200, "b1", &plain_sdp("10.0.0.2", 50000, "")),
    );
    let a = text(only(&out, "200"));
    let (u, pw) = check_answer_to_browser(&h, slot, &a, "passive");
    assert_ne!(u, u1, "{a}");
    assert_eq!(
        (u.as_str(), pw.as_str()),
        (ice2.local_ufrag.as_str(), ice2.local_pwd.as_str())
    );
    let (_, cfg) = h.slot_cfg();
    assert_eq!(cfg.legs[0].direction, Direction::SendRecv);
    assert_eq!(cfg.legs[0].secure.ice, Some(ice2));
    assert_eq!(
        cfg.legs[0].secure.dtls, sec.dtls,
        "DTLS kept across the restart"
    );
}

#[test]
fn webrtc_offer_without_certificate_or_fingerprint_is_488() {
    let mut h = H::new("nocert", false);
    let out = h.send(
        ALICE,
        &alice_req(
            "INVITE",
            1,
            "",
            Some(&chrome_offer("Kq3Z", PWD1, "sendrecv")),
        ),
    );
    let r = only(&out, "488");
    assert!(
        r.header("Warning").unwrap().contains("DTLS certificate"),
        "{:?}",
        r.header("Warning")
    );
    assert!(out.iter().all(|(_, m)| m.method() != Some("INVITE")));
    assert_eq!(h.table.count(SlotState::Active), 0);
    assert_eq!(h.table.count(SlotState::Reserved), 0);

    // With a certificate, DTLS-SRTP without a fingerprint is refused too.
    h.table.set_dtls_fingerprint(&OUR_FP);
    let offer = chrome_offer("Kq3Z", PWD1, "sendrecv");
    let offer: String = offer
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("a=fingerprint"))
        .collect();
    let req = alice_req("INVITE", 1, "", Some(&offer))
        .replace("webrtc-1", "webrtc-2")
        .replace("z9hG4bKINVITE1", "z9hG4bKnofp");
    let out = h.send(ALICE, &req);
    let r = only(&out, "488");
    assert!(r.header("Warning").unwrap().contains("fingerprint"));
    // A plain offer still goes through.
    let req = alice_req("INVITE", 1, "", Some(&plain_sdp("10.0.0.1", 40000, "")))
        .replace("webrtc-1", "webrtc-3")
        .replace("z9hG4bKINVITE1", "z9hG4bKplain");
    let out = h.send(ALICE, &req);
    only(&out, "INVITE");
}

/// A Chrome answer to our offer: `setup` its DTLS role.
fn chrome_answer(setup: &str) -> String {
    format!(
        "v=0\r\no=- 99 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=msid-semantic: WMS\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 101\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:Brw5\r\na=ice-pwd:Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8\r\na=ice-options:trickle\r\na=fingerprint:sha-256 {}\r\na=setup:{setup}\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ssrc:42 cname:x\r\n",
        fp_hex(&chrome_fp())
    )
}

#[test]
fn plain_caller_to_webrtc_callee_by_transport_hint() {
    for (setup, role) in [("active", DtlsRole::Passive), ("passive", DtlsRole::Active)] {
        let table = table(&format!("hint-{setup}"), true);
        let cfg = SipConfig::default();
        let mut relay = ShmRelay::new(table.clone());
        let (mut out, mut rt, mut stats) =
            (Outbox::new(), Retransmitter::new(), CoreStats::default());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut tu = Tu {
            cfg: &cfg,
            local: addr(TERN),
            relay: &mut relay,
            out: &mut out,
            rt: &mut rt,
            stats: &mut stats,
            rng: &mut rng,
        };
        let now = Instant::now();
        let mut b2b = B2bua::new();
        // alice offers audio (with rtcp-mux absent) and video.
        let offer = plain_sdp("10.0.0.1", 40000, "m=video 40002 RTP/AVP 31\r\n");
        let req = parse(alice_req("INVITE", 1, "", Some(&offer)).as_bytes()).unwrap();
        let target = Target {
            uri: format!("sip:bob@{BOB}"),
            dest: addr(BOB),
            webrtc: true,
        };
        b2b.new_call(&mut tu, req, addr(ALICE), target, false, 70, now);
        let sent = parse_all(tu.out);
        let inv = only(&sent, "INVITE").clone();
        let slot = (0..table.capacity())
            .find(|&i| table.state(i) == SlotState::Active)
            .unwrap();
        let p1 = tu.relay.leg_ports(slot, 1);
        let b = text(&inv);
        assert_eq!(b.matches("m=").count(), 1, "{b}");
        assert!(
            // The codecs the relay transcodes follow alice's ([media] transcode).
            b.contains(&format!(
                "m=audio {} UDP/TLS/RTP/SAVPF 0 101 8 9 96\r\n",
                p1.rtp
            )),
            "{b}"
        );
        assert_eq!(attr(&b, "setup"), ["actpass"]);
        assert_eq!(attr(&b, "mid"), ["0"]);
        assert!(b.contains("a=ice-lite\r\na=group:BUNDLE 0\r\n"), "{b}");
        assert_eq!(
            attr(&b, "candidate"),
            [format!("1 1 UDP 2130706431 {MEDIA_IP} {} typ host", p1.rtp)]
        );
        assert_eq!(
            attr(&b, "fingerprint"),
            [format!("sha-256 {}", fp_hex(&OUR_FP))]
        );
        assert!(b.contains("a=rtcp-mux\r\n"), "{b}");
        let (cfg1, _) = table.read_config(slot).unwrap();
        let ice = cfg1.legs[1]
            .secure
            .ice
            .expect("leg 1 ICE before the answer");
        assert_eq!(attr(&b, "ice-ufrag"), [ice.local_ufrag.as_str()]);
        assert_eq!(attr(&b, "ice-pwd"), [ice.local_pwd.as_str()]);
        assert!(
            cfg1.legs[1].secure.dtls.is_none(),
            "role unknown before the answer"
        );
        assert!(cfg1.legs[0].secure.is_plain());

        // The browser answers; its DTLS role decides ours.
        let resp = parse(response_to(&inv, 200, "b7", &chrome_answer(setup)).as_bytes()).unwrap();
        b2b.on_response(&mut tu, &resp, addr(BOB), now);
        let sent = parse_all(tu.out);
        let ok = only(&sent, "200");
        let a = text(ok);
        let (cfg1, _) = table.read_config(slot).unwrap();
        let dtls = cfg1.legs[1]
            .secure
            .dtls
            .expect("leg 1 DTLS after the answer");
        assert_eq!(dtls.role, role, "browser said {setup}");
        assert_eq!(dtls.digest(), &chrome_fp()[..]);
        let remote = cfg1.legs[1].secure.ice.and_then(|i| i.remote_ufrag);
        assert_eq!(
            remote.map(|u| u.as_str().to_string()).as_deref(),
            Some("Brw5")
        );
        assert!(cfg1.legs[1].rtcp_mux && !cfg1.legs[0].rtcp_mux);
        // alice gets an answer to her two m= lines, plain, without mux.
        let m: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
        let p0 = tu.relay.leg_ports(slot, 0);
        assert_eq!(
            m,
            [
                format!("m=audio {} RTP/AVP 0 101", p0.rtp).as_str(),
                "m=video 0 RTP/AVP 31"
            ]
        );
        for l in WEBRTC_ONLY
            .iter()
            .chain(&["a=rtcp-mux"])
            .filter(|l| !l.starts_with("m=video"))
        {
            assert!(!a.contains(l), "{l} in the answer to alice: {a}");
        }
        let call = b2b.live_calls().next().unwrap();
        assert_eq!(
            call.leg_profile(crate::b2bua::Side::Callee),
            "UDP/TLS/RTP/SAVPF"
        );
        assert!(!call.leg_webrtc(crate::b2bua::Side::Caller));
        let _ = table.unlink();
    }
}

/// bob's request in the B dialog (`inv` is tern's INVITE to him).
fn bob_req(method: &str, inv: &Msg, cseq: u32, body: &str) -> String {
    let head = format!(
        "{method} sip:tern@{TERN} SIP/2.0\r\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bKb{method}{cseq}\r\nFrom: {};tag=b1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:bob@{BOB}>\r\nMax-Forwards: 70\r\n",
        inv.header("To").unwrap(),
        inv.header("From").unwrap(),
        inv.call_id
    );
    with_sdp(head, body)
}

#[test]
fn plain_side_reoffer_to_the_browser_keeps_its_m_lines_role_and_credentials() {
    let mut h = H::new("reoffer", true);
    let out = h.send(
        ALICE,
        &alice_req(
            "INVITE",
            1,
            "",
            Some(&chrome_offer("Kq3Z", PWD1, "sendrecv")),
        ),
    );
    let inv = only(&out, "INVITE").clone();
    let (slot, _) = h.slot_cfg();
    let out = h.send(
        BOB,
        &response_to(&inv, 200, "b1", &plain_sdp("10.0.0.2", 50000, "")),
    );
    let ok = only(&out, "200").clone();
    let (u1, pw1) = check_answer_to_browser(&h, slot, &text(&ok), "passive");
    let a_tag = ok.to.tag().unwrap().to_string();
    only(&h.send(ALICE, &alice_req("ACK", 1, &a_tag, None)), "ACK");

    // bob holds: the re-INVITE to the browser is a WebRTC offer with the
    // session's three m= lines (RFC 3264 §8.1), our DTLS role kept
    // (RFC 8842 §5.5) and the same ICE credentials.
    let out = h.send(
        BOB,
        &bob_req(
            "INVITE",
            &inv,
            5,
            &plain_sdp("10.0.0.2", 50000, "a=sendonly\r\n"),
        ),
    );
    let ainv = only(&out, "INVITE").clone();
    let b = text(&ainv);
    let (u, pw) = check_answer_to_browser(&h, slot, &b, "passive");
    assert_eq!((u, pw), (u1, pw1), "{b}");
    assert_eq!(
        parse_audio(ainv.body()).unwrap().direction,
        Direction::SendOnly
    );
    let (_, cfg) = h.slot_cfg();
    assert_eq!(cfg.legs[0].direction, Direction::SendOnly);
    let dtls = cfg.legs[0].secure.dtls.expect("DTLS kept");
    assert_eq!(dtls.role, DtlsRole::Passive);

    // The browser answers recvonly (its own credentials unchanged): bob
    // gets a plain answer.
    let answer =
        chrome_offer("Kq3Z", PWD1, "recvonly").replace("a=setup:actpass", "a=setup:active");
    let out = h.send(ALICE, &response_to(&ainv, 200, "a1", &answer));
    let r = text(only(&out, "200"));
    assert_eq!(r.matches("m=").count(), 1, "{r}");
    for l in WEBRTC_ONLY {
        assert!(!r.contains(l), "{l} in the answer to bob: {r}");
    }
    assert_eq!(
        parse_audio(r.as_bytes()).unwrap().direction,
        Direction::RecvOnly
    );
    let (_, cfg) = h.slot_cfg();
    assert_eq!(cfg.legs[0].secure.dtls, Some(dtls));
}

#[test]
fn plain_answer_keeps_the_offers_m_lines() {
    let mut h = H::new("mlines", true);
    // A plain offer of audio, video and an image stream: bob sees audio only.
    let offer = plain_sdp(
        "10.0.0.1",
        40000,
        "m=video 40002 RTP/AVP 31\r\nm=image 40004 udptl t38\r\n",
    );
    let out = h.send(ALICE, &alice_req("INVITE", 1, "", Some(&offer)));
    let inv = only(&out, "INVITE").clone();
    let b = text(&inv);
    assert_eq!(b.matches("m=").count(), 1, "{b}");
    // bob answers audio only; alice gets her three m= lines back, in order.
    let out = h.send(
        BOB,
        &response_to(&inv, 200, "b1", &plain_sdp("10.0.0.2", 50000, "")),
    );
    let a = text(only(&out, "200"));
    let (slot, _) = h.slot_cfg();
    let m: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
    let audio = format!("m=audio {} RTP/AVP 0 101", h.table.ports(slot, 0).rtp);
    assert_eq!(
        m,
        [
            audio.as_str(),
            "m=video 0 RTP/AVP 31",
            "m=image 0 udptl t38"
        ],
        "{a}"
    );
    assert!(!a.contains("a=mid") && !a.contains("a=ice-lite"), "{a}");
}
