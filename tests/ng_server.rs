//! The ng control server over real sockets (UDP and TCP) in front of real
//! relay workers: media flows through the ports of the rewritten SDP, the
//! counters show up in `query`, and `delete` frees the slot and its ports.
//!
//! Every wait is bounded in count and time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_dataplane::{start, RelayConfig};
use tern_ng::bencode::{bstr, decode_dict, encode, int, Dict, Value};
use tern_ng::{self as control, NgConfig};
use tern_shared::table::{SlotState, SlotTable, TableParams};

struct Node {
    table: Arc<SlotTable>,
    stop: Arc<AtomicBool>,
    relay: Option<tern_dataplane::Relay>,
    ng: Option<control::NgServer>,
}

impl Node {
    fn new(name: &str, lo: u16, cfg: NgConfig) -> Node {
        let inst = format!("test-ngsrv-{name}-{}", std::process::id());
        let table = Arc::new(
            SlotTable::create_or_attach(
                &inst,
                TableParams {
                    port_lo: lo,
                    port_hi: lo + 99,
                    workers: 1,
                    media_ip: "127.0.0.1".parse().unwrap(),
                },
            )
            .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let relay = start(
            RelayConfig {
                workers: 1,
                bind_ip: "127.0.0.1".parse().unwrap(),
                pin: false,
            },
            table.clone(),
            stop.clone(),
        )
        .unwrap();
        let ng = control::start(cfg, table.clone(), stop.clone()).unwrap();
        Node {
            table,
            stop,
            relay: Some(relay),
            ng: Some(ng),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.ng.as_ref().unwrap().udp_addr()
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ng) = self.ng.take() {
            ng.join();
        }
        if let Some(r) = self.relay.take() {
            r.join().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        let _ = self.table.unlink();
    }
}

fn local_cfg() -> NgConfig {
    NgConfig::new("127.0.0.1:0".parse().unwrap(), Vec::new(), 60)
}

fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// One ng request over UDP; the reply's dictionary.
fn ng(to: SocketAddr, d: Dict) -> Value {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let cookie = format!("t{} ", N.fetch_add(1, Ordering::Relaxed));
    let s = udp();
    let mut msg = cookie.as_bytes().to_vec();
    msg.extend(encode(&d.into_value()));
    s.send_to(&msg, to).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = s.recv_from(&mut buf).expect("ng reply");
    let body = buf[..n].strip_prefix(cookie.as_bytes()).expect("cookie");
    Value::Dict(decode_dict(body).unwrap())
}

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for p in path {
        cur = match cur {
            Value::Dict(d) => d
                .get(p.as_bytes())
                .unwrap_or_else(|| panic!("no {p} in {cur:?}")),
            Value::List(l) => &l[p.parse::<usize>().unwrap()],
            _ => panic!("{p}"),
        };
    }
    cur
}

fn text(v: &Value) -> String {
    String::from_utf8(v.as_byte_str().unwrap().to_vec()).unwrap()
}

fn sdp(port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n")
}

fn m_port(sdp: &str) -> u16 {
    let m = sdp.lines().find(|l| l.starts_with("m=")).unwrap();
    m.split(' ').nth(1).unwrap().parse().unwrap()
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend(vec![0xd5; 160]);
    p
}

/// Sends RTP from `from` to the relay port until `to` receives one
/// (the worker binds a new slot's sockets within a few ms). Bounded.
fn flows(from: &UdpSocket, relay_port: u16, to: &UdpSocket) -> bool {
    let dst: SocketAddr = ([127, 0, 0, 1], relay_port).into();
    let mut buf = [0u8; 2048];
    for seq in 0..50 {
        from.send_to(&rtp(seq), dst).unwrap();
        to.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok((n, _)) = to.recv_from(&mut buf) {
            return n == 172;
        }
    }
    false
}

fn offer(call: &str, port: u16) -> Dict {
    Dict::new()
        .with("command", bstr("offer"))
        .with("call-id", bstr(call))
        .with("from-tag", bstr("A"))
        .with("sdp", bstr(sdp(port)))
}

fn answer(call: &str, port: u16) -> Dict {
    Dict::new()
        .with("command", bstr("answer"))
        .with("call-id", bstr(call))
        .with("from-tag", bstr("A"))
        .with("to-tag", bstr("B"))
        .with("sdp", bstr(sdp(port)))
}

fn wait_until(ms: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_millis(ms);
    for _ in 0..10_000 {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn udp_offer_answer_relays_media_and_query_counts_it() {
    let node = Node::new("media", 48400, local_cfg());
    let (a, b) = (udp(), udp());
    let pa = a.local_addr().unwrap().port();
    let pb = b.local_addr().unwrap().port();
    let r = ng(node.addr(), offer("m1", pa));
    let to_callee = m_port(&text(get(&r, &["sdp"])));
    let r = ng(node.addr(), answer("m1", pb));
    let to_caller = m_port(&text(get(&r, &["sdp"])));
    assert!(flows(&a, to_caller, &b), "caller -> callee");
    assert!(flows(&b, to_callee, &a), "callee -> caller");
    let mut buf = [0u8; 2048];
    for seq in 100..110 {
        a.send_to(&rtp(seq), ("127.0.0.1", to_caller)).unwrap();
        b.recv_from(&mut buf).unwrap();
    }
    let q = ng(
        node.addr(),
        Dict::new()
            .with("command", bstr("query"))
            .with("call-id", bstr("m1")),
    );
    let packets = get(&q, &["totals", "RTP", "packets"]).as_u64().unwrap();
    assert!(packets >= 12, "query: {q:?}");
    let leg_a = get(
        &q,
        &[
            "tags", "A", "medias", "0", "streams", "0", "stats", "packets",
        ],
    );
    assert!(leg_a.as_u64().unwrap() >= 11);
    let r = ng(
        node.addr(),
        Dict::new()
            .with("command", bstr("delete"))
            .with("call-id", bstr("m1")),
    );
    assert_eq!(text(get(&r, &["result"])), "ok");
    let t = &node.table;
    assert!(wait_until(2000, || t.count(SlotState::Free) == t.capacity()));
    // Its ports stay the relay's, bound and ready for the next call...
    let (slot, _) = t.slot_of_port(to_caller).unwrap();
    assert!(wait_until(2000, || t.is_bound(slot)));
    assert!(UdpSocket::bind(("127.0.0.1", to_caller)).is_err());
    assert!(UdpSocket::bind(("127.0.0.1", to_callee)).is_err());
    // ...and carry nothing of the ended call.
    b.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for seq in 200..205 {
        a.send_to(&rtp(seq), ("127.0.0.1", to_caller)).unwrap();
    }
    assert!(
        b.recv_from(&mut buf).is_err(),
        "a freed slot forwards nothing"
    );
}

#[test]
fn tcp_frames_back_to_back_and_split_messages() {
    let node = Node::new("tcp", 48500, local_cfg());
    let tcp_addr = node.ng.as_ref().unwrap().tcp_addr().unwrap();
    let mut s = TcpStream::connect(tcp_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // Two pings in one write, then an offer split in three writes.
    s.write_all(b"a d7:command4:pinge\r\nb d7:command4:pinge")
        .unwrap();
    let mut o = b"c ".to_vec();
    o.extend(encode(&offer("t1", 40000).into_value()));
    let (x, y) = o.split_at(o.len() / 2);
    s.write_all(&x[..3]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(&x[3..]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(y).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if got.ends_with(b"\r\ne") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(
        text.starts_with("a d6:result4:pongeb d6:result4:pongec d6:result2:ok3:sdp"),
        "{text}"
    );
    // Garbage gets an error reply and the connection is closed.
    s.write_all(b"z not-bencode").unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest).to_string();
    assert!(rest.starts_with("z d12:error-reason"), "{rest}");
    // The server still answers on UDP and TCP.
    let r = ng(node.addr(), Dict::new().with("command", bstr("ping")));
    assert_eq!(text_of(&r, "result"), "pong");
    let mut s = TcpStream::connect(tcp_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"p d7:command4:pinge").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"p d6:result4:ponge");
}

fn text_of(v: &Value, k: &str) -> String {
    text(get(v, &[k]))
}

#[test]
fn shutdown_releases_the_calls_slots() {
    let mut node = Node::new("shutdown", 48600, local_cfg());
    for i in 0..3 {
        let r = ng(node.addr(), offer(&format!("s{i}"), 40000));
        assert_eq!(text_of(&r, "result"), "ok");
    }
    assert_eq!(node.table.count(SlotState::Active), 3);
    let stats = node.ng.as_ref().unwrap().stats();
    assert_eq!(stats.calls_current, 3);
    node.stop();
    assert_eq!(node.table.count(SlotState::Active), 0);
}

#[test]
fn media_timeout_deletes_silent_calls() {
    let mut cfg = local_cfg();
    cfg.core.timeout_ms = 1500;
    let node = Node::new("timeout", 48700, cfg);
    let r = ng(node.addr(), offer("quiet", 40000));
    assert_eq!(text_of(&r, "result"), "ok");
    let t = &node.table;
    assert!(wait_until(5000, || t.count(SlotState::Free) == t.capacity()));
    let r = ng(node.addr(), Dict::new().with("command", bstr("statistics")));
    assert_eq!(
        get(&r, &["statistics", "totalstatistics", "timeoutsessions"]).as_u64(),
        Some(1)
    );
    let r = ng(
        node.addr(),
        Dict::new()
            .with("command", bstr("list"))
            .with("limit", int(10)),
    );
    assert_eq!(get(&r, &["calls"]).as_list().map(Vec::len), Some(0));
}
