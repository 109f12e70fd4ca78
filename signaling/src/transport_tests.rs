//! Transport behaviour of the sans-IO core on a virtual clock: responses
//! on the request's TCP connection, Via `received`/`rport` (RFC 3261
//! §18.2.1, RFC 3581 §4), TCP contacts, no transaction-layer resends over
//! TCP, large requests over TCP (§18.1.1), draining for shutdown. A real slot table in /dev/shm, no sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_shared::table::{SlotTable, TableParams};

use crate::config::SipConfig;
use crate::core::SipCore;
use crate::relay::ShmRelay;
use crate::transport::{ConnId, Source, Transmit, Transport, MAX_UDP_REQUEST};

const TERN: &str = "127.0.0.1:5060";
const ALICE: &str = "127.0.0.1:5080";
const BOB: &str = "127.0.0.1:5070";

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
    fn new(name: &str) -> H {
        let inst = format!("test-sigtr-{name}-{}", std::process::id());
        let table = Arc::new(
            SlotTable::create_or_attach(
                &inst,
                TableParams {
                    port_lo: 30000,
                    port_hi: 30015,
                    workers: 1,
                    media_ip: "203.0.113.7".parse().unwrap(),
                },
            )
            .unwrap(),
        );
        let cfg = SipConfig {
            listen: addr(TERN),
            ..SipConfig::default()
        };
        let now = Instant::now();
        let core = SipCore::new(
            &cfg,
            Box::new(ShmRelay::new(table.clone())),
            addr(TERN),
            now,
        );
        H { core, table, now }
    }

    fn out(&mut self) -> Vec<Transmit> {
        let mut v = Vec::new();
        while let Some(t) = self.core.poll_output() {
            v.push(t);
        }
        v
    }

    fn udp(&mut self, from: &str, text: &str) -> Vec<Transmit> {
        self.core
            .handle_message(text.as_bytes(), Source::udp(addr(from)), self.now);
        self.out()
    }

    fn tcp(&mut self, conn: u64, from: &str, text: &str) -> Vec<Transmit> {
        self.core.handle_message(
            text.as_bytes(),
            Source::tcp(ConnId(conn), addr(from)),
            self.now,
        );
        self.out()
    }

    fn advance(&mut self, d: Duration) -> Vec<Transmit> {
        let end = self.now + d;
        let mut out = Vec::new();
        for _ in 0..10_000 {
            match self.core.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = t.max(self.now);
                    self.core.handle_timeout(self.now);
                    out.extend(self.out());
                }
                _ => break,
            }
        }
        self.now = end;
        self.core.handle_timeout(end);
        out.extend(self.out());
        out
    }
}

fn text(t: &Transmit) -> String {
    String::from_utf8_lossy(&t.bytes).into_owned()
}

fn code(t: &Transmit) -> Option<u16> {
    text(t).strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn method(t: &Transmit) -> Option<String> {
    let s = text(t);
    if s.starts_with("SIP/2.0 ") {
        return None;
    }
    s.split(' ').next().map(str::to_string)
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

fn options(via: &str) -> String {
    format!(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n\
         Via: {via}\r\n\
         From: <sip:alice@127.0.0.1>;tag=o1\r\n\
         To: <sip:127.0.0.1:5060>\r\n\
         Call-ID: opt-{}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        via.len()
    )
}

fn register(user: &str, contact: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/TCP {BOB};branch=z9hG4bKreg1\r\n\
         From: <sip:{user}@127.0.0.1:5060>;tag=r1\r\n\
         To: <sip:{user}@127.0.0.1:5060>\r\n\
         Call-ID: reg-{user}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <{contact}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn sdp(ip: &str, port: u16) -> String {
    format!("v=0\r\no=u 1 7 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
}

fn invite(call_id: &str) -> String {
    big_invite(call_id, 0)
}

/// A response from the callee to a request tern sent it.
fn answer(req: &Transmit, code: u16, body: &str) -> String {
    let r = text(req);
    let h = |n| header(&r, n).unwrap_or_else(|| panic!("no {n} in {r}"));
    let ctype = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_string()
    };
    format!(
        "SIP/2.0 {code} X\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=b1\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:bob@{BOB}>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        h("Via"),
        h("From"),
        h("To"),
        h("Call-ID"),
        h("CSeq"),
        body.len()
    )
}

/// An in-dialog request from the caller, for the response `ok` to its
/// INVITE.
fn from_a(method: &str, cseq: u32, ok: &Transmit) -> String {
    let r = text(ok);
    format!(
        "{method} sip:tern@{TERN} SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK{method}{cseq}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        header(&r, "From").unwrap(),
        header(&r, "To").unwrap(),
        header(&r, "Call-ID").unwrap(),
    )
}

#[test]
fn responses_go_back_on_the_request_connection() {
    let mut h = H::new("tcp-resp");
    let out = h.tcp(
        5,
        ALICE,
        &options("SIP/2.0/TCP 127.0.0.1:5080;branch=z9hG4bKo1"),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(code(&out[0]), Some(200));
    assert_eq!(out[0].transport, Transport::Tcp(ConnId(5)));
    assert_eq!(out[0].dest, addr(ALICE));
    // The requester's Via is echoed as it was (TCP), not rewritten.
    assert!(text(&out[0]).contains("Via: SIP/2.0/TCP 127.0.0.1:5080;branch=z9hG4bKo1"));
    // The same address over UDP is answered over UDP.
    let out = h.udp(
        ALICE,
        &options("SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKo2"),
    );
    assert_eq!(out[0].transport, Transport::Udp);
    // An unframed stream request: 400 on its connection, counted.
    h.core.handle_unframed(
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5080;branch=z9hG4bKo3\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:x>\r\nCall-ID: u1\r\nCSeq: 1 OPTIONS\r\n\r\n",
        Source::tcp(ConnId(6), addr("127.0.0.1:5081")),
        "no Content-Length on a stream",
        h.now,
    );
    let out = h.out();
    assert_eq!(out.len(), 1);
    assert_eq!(code(&out[0]), Some(400));
    assert_eq!(out[0].transport, Transport::Tcp(ConnId(6)));
    assert_eq!(h.core.stats().unframed, 1);
    // A bad Content-Length value: 400 too, from the salvaged headers.
    h.core.handle_unframed(
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5080;branch=z9hG4bKo4\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:x>\r\nCall-ID: u2\r\nCSeq: 1 OPTIONS\r\nContent-Length: abc\r\n\r\n",
        Source::tcp(ConnId(6), addr("127.0.0.1:5081")),
        "bad Content-Length",
        h.now,
    );
    let out = h.out();
    assert_eq!(out.len(), 1);
    assert_eq!(code(&out[0]), Some(400));
    assert_eq!(out[0].transport, Transport::Tcp(ConnId(6)));
    // A response without Content-Length is dropped, counted.
    h.core.handle_unframed(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKx\r\n\r\n",
        Source::tcp(ConnId(6), addr("127.0.0.1:5081")),
        "no Content-Length on a stream",
        h.now,
    );
    assert!(h.out().is_empty());
    assert_eq!(h.core.stats().unframed, 3);
}

#[test]
fn via_gets_received_and_rport_and_responses_follow_them() {
    let mut h = H::new("rport");
    // NAT: the Via names a private address; the request came from
    // another one, and asked for rport.
    let out = h.udp(
        "192.0.2.1:40000",
        &options("SIP/2.0/UDP 10.9.9.9:5070;rport;branch=z9hG4bKn1"),
    );
    assert_eq!(out.len(), 1);
    let via = header(&text(&out[0]), "Via").unwrap().to_string();
    assert_eq!(
        via,
        "SIP/2.0/UDP 10.9.9.9:5070;rport=40000;branch=z9hG4bKn1;received=192.0.2.1"
    );
    assert_eq!(out[0].dest, addr("192.0.2.1:40000"));
    // Sent-by matches the source: nothing added, nothing filled.
    let out = h.udp(
        "192.0.2.1:5070",
        &options("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKn2"),
    );
    let via = header(&text(&out[0]), "Via").unwrap().to_string();
    assert_eq!(via, "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKn2");
    assert_eq!(out[0].dest, addr("192.0.2.1:5070"));
    // An empty rport gets received even when sent-by is the source
    // (RFC 3581 §4); IPv6 sent-by compared without brackets.
    let out = h.udp(
        "192.0.2.1:5070",
        &options("SIP/2.0/UDP 192.0.2.1:5070;rport;branch=z9hG4bKn4"),
    );
    let via = header(&text(&out[0]), "Via").unwrap().to_string();
    assert_eq!(
        via,
        "SIP/2.0/UDP 192.0.2.1:5070;rport=5070;branch=z9hG4bKn4;received=192.0.2.1"
    );
    let out = h.udp(
        "[2001:db8::1]:5070",
        &options("SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKn5"),
    );
    let via = header(&text(&out[0]), "Via").unwrap().to_string();
    assert_eq!(via, "SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKn5");
    assert_eq!(out[0].dest, addr("[2001:db8::1]:5070"));
    // A host name in sent-by always gets received; an rport with a value
    // is kept; the response goes to the source (received:rport).
    let out = h.tcp(
        3,
        "192.0.2.2:41000",
        &options("SIP/2.0/TCP phone.example.com;rport=1;branch=z9hG4bKn3"),
    );
    let via = header(&text(&out[0]), "Via").unwrap().to_string();
    assert_eq!(
        via,
        "SIP/2.0/TCP phone.example.com;rport=1;branch=z9hG4bKn3;received=192.0.2.2"
    );
    assert_eq!(out[0].dest, addr("192.0.2.2:41000"));
    assert_eq!(out[0].transport, Transport::Tcp(ConnId(3)));
}

/// Alice calls bob (registered with `contact`) over UDP; returns what
/// tern sent bob.
fn call(h: &mut H, contact: &str, call_id: &str) -> Transmit {
    let out = h.udp(BOB, &register("bob", contact));
    assert_eq!(out.iter().filter_map(code).collect::<Vec<_>>(), [200]);
    let out = h.udp(ALICE, &invite(call_id));
    let inv: Vec<_> = out
        .iter()
        .filter(|t| method(t).as_deref() == Some("INVITE"))
        .collect();
    assert_eq!(inv.len(), 1, "{out:?}");
    inv[0].clone()
}

#[test]
fn a_tcp_contact_is_called_over_tcp_without_resends() {
    let mut h = H::new("tcp-contact");
    let inv = call(&mut h, "sip:bob@127.0.0.1:5090;transport=tcp", "c-tcp");
    assert_eq!(inv.dest, addr("127.0.0.1:5090"));
    assert_eq!(inv.transport, Transport::Tcp(ConnId::ANY));
    assert!(
        header(&text(&inv), "Via")
            .unwrap()
            .starts_with("SIP/2.0/TCP "),
        "{}",
        text(&inv)
    );
    // Over TCP the INVITE is not resent (timer A, RFC 3261 §17.1.1.2)...
    let out = h.advance(Duration::from_secs(10));
    assert!(
        !out.iter().any(|t| method(t).as_deref() == Some("INVITE")),
        "{out:?}"
    );
    // ...but the callee's answers, on the connection the transport opened,
    // go on.
    let ringing = answer(&inv, 180, "");
    let out = h.tcp(9, "127.0.0.1:5090", &ringing);
    let r: Vec<_> = out.iter().filter(|t| code(t) == Some(180)).collect();
    assert_eq!(r.len(), 1, "{out:?}");
    assert_eq!(r[0].transport, Transport::Udp);
    let ok = answer(&inv, 200, &sdp("127.0.0.1", 16000));
    let out = h.tcp(9, "127.0.0.1:5090", &ok);
    let ok_a: Vec<_> = out.iter().filter(|t| code(t) == Some(200)).collect();
    assert_eq!(ok_a.len(), 1, "{out:?}");
    assert_eq!(ok_a[0].dest, addr(ALICE));
    assert_eq!(ok_a[0].transport, Transport::Udp);
    let ok_a = ok_a[0].clone();
    // The caller's ACK is relayed to bob on his connection.
    let out = h.udp(ALICE, &from_a("ACK", 1, &ok_a));
    let ack: Vec<_> = out
        .iter()
        .filter(|t| method(t).as_deref() == Some("ACK"))
        .collect();
    assert_eq!(ack.len(), 1, "{out:?}");
    assert_eq!(ack[0].transport, Transport::Tcp(ConnId(9)));
    assert!(header(&text(ack[0]), "Via")
        .unwrap()
        .starts_with("SIP/2.0/TCP "));
    // The connection closes; a BYE to bob opens a new one.
    h.core.connection_closed(ConnId(9), h.now);
    let out = h.udp(ALICE, &from_a("BYE", 2, &ok_a));
    let bye: Vec<_> = out
        .iter()
        .filter(|t| method(t).as_deref() == Some("BYE"))
        .collect();
    assert_eq!(bye.len(), 1, "{out:?}");
    assert_eq!(bye[0].transport, Transport::Tcp(ConnId::ANY));
    assert_eq!(bye[0].dest, addr("127.0.0.1:5090"));
}

#[test]
fn a_udp_contact_is_still_called_over_udp_with_resends() {
    let mut h = H::new("udp-contact");
    let inv = call(&mut h, "sip:bob@127.0.0.1:5070", "c-udp");
    assert_eq!(inv.transport, Transport::Udp);
    assert!(header(&text(&inv), "Via")
        .unwrap()
        .starts_with("SIP/2.0/UDP "));
    // Timer A: resent after T1.
    let out = h.advance(Duration::from_millis(600));
    assert!(
        out.iter().any(|t| method(t).as_deref() == Some("INVITE")),
        "{out:?}"
    );
}

#[test]
fn draining_refuses_new_invites_and_serves_calls_up() {
    let mut h = H::new("drain");
    let inv = call(&mut h, "sip:bob@127.0.0.1:5070", "c-up");
    let ok = answer(&inv, 200, &sdp("127.0.0.1", 16000));
    let out = h.udp(BOB, &ok);
    let ok_a = out
        .iter()
        .find(|t| code(t) == Some(200))
        .expect("200 to alice")
        .clone();
    h.udp(ALICE, &from_a("ACK", 1, &ok_a));
    assert!(!h.core.drained());

    h.core.set_draining(Some(30));
    let out = h.udp(ALICE, &invite("c-new"));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(code(&out[0]), Some(503));
    assert_eq!(header(&text(&out[0]), "Retry-After"), Some("30"));
    assert_eq!(h.core.stats().drain_refused, 1);
    // A retransmission of the call up's INVITE is not refused.
    let out = h.udp(ALICE, &invite("c-up"));
    assert!(!out.iter().any(|t| code(t) == Some(503)), "{out:?}");
    // OPTIONS still answered.
    let out = h.udp(
        ALICE,
        &options("SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKd1"),
    );
    assert_eq!(code(&out[0]), Some(200));
    assert!(!h.core.drained());

    // The caller hangs up: 200, BYE to bob; drained once bob answers.
    let out = h.udp(ALICE, &from_a("BYE", 2, &ok_a));
    assert!(out.iter().any(|t| code(t) == Some(200)), "{out:?}");
    let bye = out
        .iter()
        .find(|t| method(t).as_deref() == Some("BYE"))
        .expect("BYE to bob")
        .clone();
    assert!(!h.core.drained(), "the BYE to bob is still in flight");
    h.udp(BOB, &answer(&bye, 200, ""));
    assert!(h.core.drained());
    // Accepting again.
    h.core.set_draining(None);
    let out = h.udp(ALICE, &invite("c-after"));
    assert!(!out.iter().any(|t| code(t) == Some(503)), "{out:?}");
}

#[test]
fn a_transport_error_ends_the_invite_at_once() {
    let mut h = H::new("tcp-fail");
    let inv = call(&mut h, "sip:bob@127.0.0.1:5090;transport=tcp", "c-fail");
    assert_eq!(inv.transport, Transport::Tcp(ConnId::ANY));
    // Another destination's failure changes nothing.
    h.core.transport_failed(addr("127.0.0.1:5091"), h.now);
    assert!(h.out().is_empty());
    // The connect to bob fails: the caller hears 408 now, not after
    // Timer B; the slot is released.
    h.core.transport_failed(addr("127.0.0.1:5090"), h.now);
    let out = h.out();
    assert!(out.iter().any(|t| code(t) == Some(408)), "{out:?}");
    assert_eq!(h.core.active_calls(), 0);
    assert!(h.core.drained());
}

/// Alice's INVITE with an SDP offer padded by `pad` attribute lines.
fn big_invite(call_id: &str, pad: usize) -> String {
    let mut body = sdp("127.0.0.1", 17000);
    for i in 0..pad {
        body.push_str(&format!("a=x-pad{i}:{}\r\n", "p".repeat(60)));
    }
    format!(
        "INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {ALICE};branch=z9hG4bKinv-{call_id}\r\n\
         From: Alice <sip:alice@{ALICE}>;tag=a1\r\n\
         To: <sip:bob@127.0.0.1:5060>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{ALICE}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_large_request_goes_over_tcp_and_falls_back_to_udp() {
    let mut h = H::new("large");
    let out = h.udp(BOB, &register("bob", "sip:bob@127.0.0.1:5070"));
    assert_eq!(out.iter().filter_map(code).collect::<Vec<_>>(), [200]);
    let is_invite = |t: &&Transmit| method(t).as_deref() == Some("INVITE");
    // A small INVITE to the UDP contact stays on UDP.
    let out = h.udp(ALICE, &big_invite("c-small", 0));
    let inv: Vec<_> = out.iter().filter(is_invite).collect();
    assert_eq!(inv[0].transport, Transport::Udp);
    assert!(inv[0].bytes.len() <= MAX_UDP_REQUEST);
    // Over 1300 bytes: TCP, with TCP in our Via (RFC 3261 §18.1.1).
    let out = h.udp(ALICE, &big_invite("c-big", 20));
    let inv: Vec<_> = out.iter().filter(is_invite).collect();
    assert_eq!(inv.len(), 1, "{out:?}");
    assert!(inv[0].bytes.len() > MAX_UDP_REQUEST);
    assert_eq!(inv[0].transport, Transport::Tcp(ConnId::ANY));
    assert_eq!(inv[0].dest, addr(BOB));
    let via = header(&text(inv[0]), "Via").unwrap().to_string();
    assert!(via.starts_with("SIP/2.0/TCP "), "{via}");
    // Bob does not take TCP: the call goes on (no 408) ...
    h.core.transport_failed(addr(BOB), h.now);
    let out = h.out();
    assert!(!out.iter().any(|t| code(t) == Some(408)), "{out:?}");
    assert_eq!(h.core.active_calls(), 2);
    // ... and timer A resends the INVITE over UDP, with a UDP Via.
    let out = h.advance(Duration::from_millis(600));
    let inv: Vec<_> = out
        .iter()
        .filter(is_invite)
        .filter(|t| t.bytes.len() > MAX_UDP_REQUEST)
        .collect();
    assert_eq!(inv.len(), 1, "{out:?}");
    assert_eq!(inv[0].transport, Transport::Udp);
    let via = header(&text(inv[0]), "Via").unwrap().to_string();
    assert!(via.starts_with("SIP/2.0/UDP "), "{via}");
    // Later large requests to bob go over UDP at once.
    let out = h.udp(ALICE, &big_invite("c-big2", 20));
    let inv: Vec<_> = out.iter().filter(is_invite).collect();
    assert_eq!(inv[0].transport, Transport::Udp);
}
