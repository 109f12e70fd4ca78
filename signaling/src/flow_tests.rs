//! TLS, WS and WSS in the sans-IO core (RFC 7118, RFC 5626 flows,
//! RFC 5630 sips:): a party registered over a flow is reached over that
//! connection only and gets 480 once it is gone; `sips:` needs TLS/WSS
//! on both sides; browsers get the MD5 challenge alone. A real slot
//! table in /dev/shm, no sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tern_shared::table::{SlotTable, TableParams};

use crate::config::{Credential, SipConfig, User};
use crate::core::SipCore;
use crate::relay::ShmRelay;
use crate::transport::{ConnId, Source, Transmit, Transport};

const TERN: &str = "127.0.0.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

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
    fn new(name: &str, users: bool) -> H {
        let inst = format!("test-sigflow-{name}-{}", std::process::id());
        let table = Arc::new(
            SlotTable::create_or_attach(
                &inst,
                TableParams {
                    port_lo: 30100,
                    port_hi: 30115,
                    workers: 1,
                    media_ip: "203.0.113.7".parse().unwrap(),
                },
            )
            .unwrap(),
        );
        let mut cfg = SipConfig {
            listen: addr(TERN),
            ..SipConfig::default()
        };
        if users {
            cfg.users = vec![User {
                name: "alice".into(),
                credential: Credential::Password("pw".into()),
            }];
            for u in &mut cfg.users {
                u.hash_password("tern");
            }
        }
        let now = Instant::now();
        let core = SipCore::new(
            &cfg,
            Box::new(ShmRelay::new(table.clone())),
            addr(TERN),
            now,
        );
        H { core, table, now }
    }

    fn send(&mut self, src: Source, text: &str) -> Vec<Transmit> {
        self.core.handle_message(text.as_bytes(), src, self.now);
        let mut v = Vec::new();
        while let Some(t) = self.core.poll_output() {
            v.push(t);
        }
        v
    }
}

fn text(t: &Transmit) -> String {
    String::from_utf8_lossy(&t.bytes).into_owned()
}

fn code(t: &Transmit) -> Option<u16> {
    text(t).strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn register(scheme: &str, via: &str, user: &str, contact: &str) -> String {
    format!(
        "REGISTER {scheme}:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{via};branch=z9hG4bKr{user}\r\nFrom: <{scheme}:{user}@127.0.0.1>;tag=r1\r\nTo: <{scheme}:{user}@127.0.0.1>\r\nCall-ID: reg-{user}\r\nCSeq: 1 REGISTER\r\nContact: <{contact}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn invite(scheme: &str, via: &str, call_id: &str) -> String {
    let sdp = "v=0\r\no=u 1 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    format!(
        "INVITE {scheme}:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{via};branch=z9hG4bK{call_id}\r\nFrom: <sip:carol@127.0.0.1>;tag=c1\r\nTo: <{scheme}:bob@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@127.0.0.1:5090>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn final_code(out: &[Transmit]) -> Option<u16> {
    out.iter().filter_map(code).find(|c| *c >= 200)
}

#[test]
fn a_ws_registered_user_is_reached_over_its_connection_then_480() {
    let mut h = H::new("ws-flow", false);
    // A browser callee gets a WebRTC leg: the dataplane has a certificate.
    h.table.set_dtls_fingerprint(&[7u8; 32]);
    let browser = addr("192.0.2.9:51000");
    let ws = Source::stream(Transport::Ws(ConnId(4)), browser);
    let out = h.send(
        ws,
        &register(
            "sip",
            "WS df7jal23ls0d.invalid",
            "bob",
            "sip:x1@df7jal23ls0d.invalid;transport=ws",
        ),
    );
    assert_eq!(out.iter().filter_map(code).next(), Some(200));
    assert_eq!(
        out[0].transport,
        Transport::Ws(ConnId(4)),
        "the 200 goes back on the WebSocket"
    );
    let carol = Source::udp(addr("127.0.0.1:5090"));
    let out = h.send(carol, &invite("sip", "UDP 127.0.0.1:5090", "c1"));
    let inv = out
        .iter()
        .find(|t| text(t).starts_with("INVITE "))
        .expect("the INVITE to bob");
    assert_eq!(inv.transport, Transport::Ws(ConnId(4)));
    assert_eq!(inv.dest, browser);
    assert!(text(inv).contains("Via: SIP/2.0/WS "), "{}", text(inv));
    // A browser callee is offered WebRTC media.
    assert!(text(inv).contains("UDP/TLS/RTP/SAVPF"), "{}", text(inv));
    // The connection goes: the next INVITE gets 480 at once.
    h.core.connection_closed(ConnId(4), h.now);
    let out = h.send(carol, &invite("sip", "UDP 127.0.0.1:5090", "c2"));
    assert_eq!(final_code(&out), Some(480));
    assert!(!out.iter().any(|t| text(t).starts_with("INVITE ")));
    assert_eq!(h.core.stats().flow_down, 1);
}

#[test]
fn a_tls_binding_targets_the_connection_not_the_contact() {
    let mut h = H::new("tls-target", false);
    let phone = addr("127.0.0.1:40001");
    let tls = Source::stream(Transport::Tls(ConnId(9)), phone);
    // The Contact names the phone's listening port, not the connection's.
    h.send(
        tls,
        &register(
            "sips",
            "TLS 127.0.0.1:5061",
            "bob",
            "sips:bob@127.0.0.1:5061",
        ),
    );
    let b = h.core.location().lookup_user("bob", h.now);
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].target, b[0].transport),
        (phone, Transport::Tls(ConnId(9)))
    );
    // A sips: INVITE over TLS reaches it over its connection.
    let caller = Source::stream(Transport::Tls(ConnId(10)), addr("127.0.0.1:40002"));
    let out = h.send(caller, &invite("sips", "TLS 127.0.0.1:5071", "s1"));
    let inv = out
        .iter()
        .find(|t| text(t).starts_with("INVITE "))
        .expect("INVITE");
    assert_eq!(
        (inv.transport, inv.dest),
        (Transport::Tls(ConnId(9)), phone)
    );
    assert!(text(inv).contains("Via: SIP/2.0/TLS "), "{}", text(inv));
}

#[test]
fn sips_needs_tls_or_wss_on_both_sides() {
    let mut h = H::new("sips", false);
    let udp = Source::udp(addr("127.0.0.1:5090"));
    // Over plain UDP, a sips: REGISTER or INVITE is refused: 416.
    let out = h.send(
        udp,
        &register(
            "sips",
            "UDP 127.0.0.1:5090",
            "bob",
            "sip:bob@127.0.0.1:5090",
        ),
    );
    assert_eq!(final_code(&out), Some(416));
    h.send(
        udp,
        &register("sip", "UDP 127.0.0.1:5070", "bob", "sip:bob@127.0.0.1:5070"),
    );
    let out = h.send(udp, &invite("sips", "UDP 127.0.0.1:5090", "s2"));
    assert_eq!(final_code(&out), Some(416));
    // Over WSS it passes the first check, but bob is registered over UDP:
    // he cannot be reached securely, 480.
    let wss = Source::stream(Transport::Wss(ConnId(3)), addr("192.0.2.9:51001"));
    let out = h.send(wss, &invite("sips", "WSS x.invalid", "s3"));
    assert_eq!(final_code(&out), Some(480));
    // A plain sip: INVITE over WSS reaches him over UDP.
    let out = h.send(wss, &invite("sip", "WSS x.invalid", "s4"));
    let inv = out
        .iter()
        .find(|t| text(t).starts_with("INVITE "))
        .expect("INVITE");
    assert_eq!(inv.transport, Transport::Udp);
}

#[test]
fn browsers_get_the_md5_challenge_alone() {
    let mut h = H::new("ws-md5", true);
    let reg = register(
        "sip",
        "WS x.invalid",
        "alice",
        "sip:a@x.invalid;transport=ws",
    );
    let ws = Source::stream(Transport::Ws(ConnId(2)), addr("192.0.2.9:51002"));
    let out = h.send(ws, &reg);
    let r = text(&out[0]);
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    assert_eq!(r.matches("WWW-Authenticate:").count(), 1, "{r}");
    assert!(r.contains("algorithm=MD5"), "{r}");
    let udp = Source::udp(addr("127.0.0.1:5091"));
    let out = h.send(udp, &reg.replace("WS x.invalid", "UDP 127.0.0.1:5091"));
    let r = text(&out[0]);
    assert_eq!(r.matches("WWW-Authenticate:").count(), 2, "{r}");
    assert!(r.contains("algorithm=SHA-256"), "{r}");
}
