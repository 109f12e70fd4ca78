//! `tern relay` driven over the ng control protocol by rtpengine's own
//! client (`rtpengine-ng-client`, Debian package rtpengine-utils), and by
//! raw datagrams for retransmissions and malformed input.

mod common;
use common::*;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tern_ng::bencode::{bstr, decode_dict, encode, int, str_list, Dict, Value};
use tern_shared::table::{SlotState, SlotTable};

/// A `tern relay` with its ng socket; stopped and its table removed on drop.
struct Relay {
    proc_: Option<Proc>,
    instance: String,
    ng: u16,
}

impl Relay {
    fn start(name: &str, ports: &str) -> Relay {
        let instance = format!("ng-{name}-{}", std::process::id());
        let ng = free_port();
        let (p, _) = spawn_relay(&instance, ports, ng, &[]);
        Relay {
            proc_: Some(p),
            instance,
            ng,
        }
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.ng).into()
    }

    fn table(&self) -> SlotTable {
        SlotTable::open(&self.instance).unwrap()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        drop(self.proc_.take());
        unlink_table(&self.instance);
    }
}

/// Runs `rtpengine-ng-client ARGS` against `port` (bounded: 10 s).
fn ng_client(port: u16, args: &[&str]) -> (bool, String) {
    let mut child = Command::new("rtpengine-ng-client")
        .args([
            "--proxy-address",
            "127.0.0.1",
            "--proxy-port",
            &port.to_string(),
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rtpengine-ng-client (install rtpengine-utils)");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("ng client output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The `m=audio` port of the "New SDP" that rtpengine-ng-client prints.
fn new_sdp_port(out: &str) -> u16 {
    let new = out
        .split("New SDP:")
        .nth(1)
        .unwrap_or_else(|| panic!("no new SDP in {out}"));
    let m = new
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .expect("m= line");
    m.split(' ').nth(1).unwrap().parse().unwrap()
}

/// `totals → RTP → packets` from the client's Data::Dumper output.
fn dumper_rtp_packets(out: &str) -> u64 {
    let t = out
        .split("totals => {")
        .nth(1)
        .unwrap_or_else(|| panic!("no totals in {out}"));
    let rtp = t.split("RTP => {").nth(1).expect("RTP totals");
    let p = rtp.split("packets => '").nth(1).expect("packets");
    p.split('\'').next().unwrap().parse().unwrap()
}

fn sdp(port: u16) -> String {
    format!("v=0\no=- 1545997027 1 IN IP4 127.0.0.1\ns=tester\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio {port} RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=sendrecv\n")
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0xca, 0xfe, 0xba, 0xbe];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend(vec![0xff; 160]);
    p
}

/// Sends RTP from `from` to the relay port until `to` receives
/// `want` packets (the worker binds a new slot within a few ms). Bounded.
fn relay_rtp(from: &UdpSocket, relay_port: u16, to: &UdpSocket, want: usize) -> usize {
    to.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 2048];
    for seq in 0..(want as u16 + 100) {
        from.send_to(&rtp(seq), ("127.0.0.1", relay_port)).unwrap();
        if let Ok((n, _)) = to.recv_from(&mut buf) {
            assert_eq!(n, 172);
            got += 1;
            if got == want {
                break;
            }
        }
    }
    got
}

#[test]
fn rtpengine_ng_client_ping_offer_answer_query_delete() {
    let relay = Relay::start("client", "23000-23099");
    let (ok, out) = ng_client(relay.ng, &["ping"]);
    assert!(ok && out.contains("pong"), "{out}");

    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let (ok, out) = ng_client(
        relay.ng,
        &[
            "offer",
            "--call-id=ngc-1",
            "--from-tag=caller",
            "--replace-origin",
            "--replace-session-connection",
            "--trust-address",
            "--ICE=remove",
            &format!("--sdp={}", sdp(pa)),
        ],
    );
    assert!(ok, "offer: {out}");
    let to_callee = new_sdp_port(&out);
    let (ok, out) = ng_client(
        relay.ng,
        &[
            "answer",
            "--call-id=ngc-1",
            "--from-tag=caller",
            "--to-tag=callee",
            &format!("--sdp={}", sdp(pb)),
        ],
    );
    assert!(ok, "answer: {out}");
    let to_caller = new_sdp_port(&out);
    assert_ne!(to_caller, to_callee);
    let (lo, hi) = (23000, 23099);
    assert!((lo..=hi).contains(&to_caller) && (lo..=hi).contains(&to_callee));

    // RTP sent to the ports of the rewritten SDP reaches the other side.
    assert_eq!(relay_rtp(&a, to_caller, &b, 20), 20, "caller -> callee");
    assert_eq!(relay_rtp(&b, to_callee, &a, 10), 10, "callee -> caller");

    let (ok, out) = ng_client(relay.ng, &["query", "--call-id=ngc-1"]);
    assert!(ok, "query: {out}");
    assert!(dumper_rtp_packets(&out) >= 30, "{out}");
    assert!(
        out.contains("caller => {") && out.contains("callee => {"),
        "{out}"
    );

    let (ok, out) = ng_client(relay.ng, &["list"]);
    assert!(ok && out.contains("ngc-1"), "{out}");
    let (ok, out) = ng_client(
        relay.ng,
        &["delete", "--call-id=ngc-1", "--from-tag=caller"],
    );
    assert!(ok, "delete: {out}");
    assert!(
        wait_all_free(&relay.instance, Duration::from_secs(5)),
        "slot not freed"
    );
    let (ok, out) = ng_client(relay.ng, &["statistics"]);
    assert!(
        ok && out.contains("regularterminatedsessions => '1'"),
        "{out}"
    );
    // An answer for the deleted call is an error, which the client reports.
    let (ok, out) = ng_client(
        relay.ng,
        &[
            "answer",
            "--call-id=ngc-1",
            "--from-tag=caller",
            "--to-tag=callee",
            &format!("--sdp={}", sdp(pb)),
        ],
    );
    assert!(!ok && out.contains("Unknown call-id"), "{out}");
}

/// One raw ng exchange: the reply's bytes (bounded wait).
fn raw(sock: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Vec<u8> {
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock.send_to(msg, to).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).expect("ng reply");
    buf.truncate(n);
    buf
}

fn reply_dict(reply: &[u8], cookie: &str) -> Value {
    let body = reply
        .strip_prefix(format!("{cookie} ").as_bytes())
        .expect("cookie echoed");
    Value::Dict(decode_dict(body).expect("bencode reply"))
}

fn result(v: &Value) -> String {
    match v {
        Value::Dict(d) => d
            .get(&b"result"[..])
            .and_then(|r| r.as_str())
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    }
}

#[test]
fn retransmitted_offer_is_answered_from_cache_and_allocates_nothing() {
    let relay = Relay::start("retx", "23100-23199");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let offer = Dict::new()
        .with("command", bstr("offer"))
        .with("call-id", bstr("retx-call"))
        .with("from-tag", bstr("a"))
        .with("replace", str_list(["origin", "session-connection"]))
        .with("sdp", bstr(sdp(40000)));
    let mut msg = b"8372_1 ".to_vec();
    msg.extend(encode(&offer.into_value()));
    let first = raw(&sock, relay.addr(), &msg);
    assert_eq!(result(&reply_dict(&first, "8372_1")), "ok");
    let table = relay.table();
    let active = || {
        (0..table.capacity())
            .filter(|&i| table.state(i) != SlotState::Free)
            .count()
    };
    assert_eq!(active(), 1);
    for _ in 0..5 {
        assert_eq!(
            raw(&sock, relay.addr(), &msg),
            first,
            "retransmission reply differs"
        );
    }
    assert_eq!(active(), 1, "a retransmission allocated a slot");
    // The same offer under a new cookie is a re-offer: same slot, same SDP.
    let mut again = b"8372_2 ".to_vec();
    again.extend_from_slice(&msg[7..]);
    let second = raw(&sock, relay.addr(), &again);
    assert_eq!(second[7..], first[7..]);
    assert_eq!(active(), 1);
    let stats = raw(&sock, relay.addr(), b"s1 d7:command10:statisticse");
    let text = String::from_utf8_lossy(&stats);
    assert!(text.contains("15:retransmissionsi5e"), "{text}");
}

#[test]
fn thirty_malformed_messages_each_get_an_error_and_ping_still_answers() {
    let relay = Relay::start("bad", "23200-23299");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let good = sdp(40000);
    let enc = |d: Dict| encode(&d.into_value());
    let offer = |sdp: &str| {
        Dict::new()
            .with("command", bstr("offer"))
            .with("call-id", bstr("x"))
            .with("from-tag", bstr("a"))
            .with("sdp", bstr(sdp))
    };
    let mut deep = b"d1:a".to_vec();
    deep.extend(vec![b'l'; 20_000]);
    deep.extend(vec![b'e'; 20_001]);
    let bad: Vec<Vec<u8>> = vec![
        // Truncated bencode.
        b"d7:command5:off".to_vec(),
        b"d7:command4:ping".to_vec(),
        b"d7:command4:pingi1".to_vec(),
        b"".to_vec(),
        // Not bencode, or not a dictionary.
        b"hello world".to_vec(),
        b"l4:pinge".to_vec(),
        b"i7e".to_vec(),
        b"d7:command4:pingeXYZ".to_vec(),
        // Huge lengths and depths.
        b"d3:sdp4294967296:v=0e".to_vec(),
        b"d7:command99999999999999999999999999:pinge".to_vec(),
        b"d1:ai999999999999999999999999999999ee".to_vec(),
        deep,
        // Wrong types.
        b"d7:commandi1ee".to_vec(),
        b"d7:commandl4:pingee".to_vec(),
        b"di1e4:pinge".to_vec(),
        enc(offer(&good).with("call-id", int(5))),
        enc(offer(&good).with("sdp", str_list(["v=0"]))),
        enc(offer(&good)
            .with("flags", bstr("x"))
            .with("replace", int(1))),
        enc(offer(&good).with("received-from", int(4))),
        // Missing keys, unknown command.
        b"de".to_vec(),
        b"d7:command7:explodee".to_vec(),
        enc(Dict::new()
            .with("command", bstr("offer"))
            .with("from-tag", bstr("a"))
            .with("sdp", bstr(good.clone()))),
        enc(Dict::new()
            .with("command", bstr("offer"))
            .with("call-id", bstr("x"))
            .with("sdp", bstr(good.clone()))),
        enc(Dict::new()
            .with("command", bstr("offer"))
            .with("call-id", bstr("x"))
            .with("from-tag", bstr("a"))),
        enc(Dict::new().with("command", bstr("query"))),
        // Bad SDP.
        enc(offer(
            "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nc=IN IP4 1.1.1.1\r\nt=0 0\r\n",
        )),
        enc(offer("not sdp at all")),
        enc(offer("v=0\r\nc=IN IP4 1.2.3\r\nm=audio 4000 RTP/AVP 0\r\n")),
        enc(offer(
            "v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio port RTP/AVP 0\r\n",
        )),
        // An answer for an unknown call.
        enc(Dict::new()
            .with("command", bstr("answer"))
            .with("call-id", bstr("never-offered"))
            .with("from-tag", bstr("a"))
            .with("to-tag", bstr("b"))
            .with("sdp", bstr(good.clone()))),
    ];
    assert_eq!(bad.len(), 30);
    for (i, body) in bad.iter().enumerate() {
        let cookie = format!("bad{i}");
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend_from_slice(body);
        let reply = raw(&sock, relay.addr(), &msg);
        let d = reply_dict(&reply, &cookie);
        assert_eq!(
            result(&d),
            "error",
            "message {i} ({:?}): {d:?}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        let Value::Dict(dd) = &d else { unreachable!() };
        assert!(
            dd.contains_key(&b"error-reason"[..]),
            "message {i}: no error-reason"
        );
    }
    let ping = raw(&sock, relay.addr(), b"alive d7:command4:pinge");
    assert_eq!(ping, b"alive d6:result4:ponge");
    let (ok, out) = ng_client(relay.ng, &["ping"]);
    assert!(ok && out.contains("pong"), "{out}");
    let t = relay.table();
    assert_eq!(t.count(SlotState::Free), t.capacity());
}
