//! 1,000 calls set up and torn down over ng in a loop against `tern relay`
//! leave no slot held and no port bound behind. Prints the setup time per
//! call (offer + answer round trips over loopback UDP).

mod common;
use common::*;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use tern_ng::bencode::{bstr, decode_dict, encode, str_list, Dict, Value};
use tern_shared::table::{SlotState, SlotTable};

const CALLS: usize = 1000;
// Below the ephemeral range (32768-60999), so no other socket can hold one.
const PORTS: (u16, u16) = (23300, 23699);

fn sdp(port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp:{}\r\n", port + 1)
}

struct Client {
    sock: UdpSocket,
    to: (std::net::Ipv4Addr, u16),
    n: u64,
    buf: Vec<u8>,
}

impl Client {
    /// One exchange; the reply's `result` and the reply dictionary.
    fn cmd(&mut self, d: Dict) -> (String, Value) {
        self.n += 1;
        let cookie = format!("{}_{} ", std::process::id(), self.n);
        let mut msg = cookie.as_bytes().to_vec();
        msg.extend(encode(&d.into_value()));
        self.sock.send_to(&msg, self.to).unwrap();
        let (n, _) = self
            .sock
            .recv_from(&mut self.buf)
            .expect("ng reply within 3 s");
        let body = self.buf[..n]
            .strip_prefix(cookie.as_bytes())
            .expect("cookie");
        let v = Value::Dict(decode_dict(body).unwrap());
        let r = match &v {
            Value::Dict(m) => m
                .get(&b"result"[..])
                .and_then(|r| r.as_str())
                .unwrap_or("")
                .to_string(),
            _ => String::new(),
        };
        (r, v)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn thousand_calls_leave_no_slot_and_no_port_behind() {
    let instance = format!("ng-load-{}", std::process::id());
    let ng = free_port();
    let ports = format!("{}-{}", PORTS.0, PORTS.1);
    let ng_arg = format!("127.0.0.1:{ng}");
    let (tern, _) = spawn_tern(
        &[
            "relay",
            "--ports",
            &ports,
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            &ng_arg,
            "--no-pin",
        ],
        &["tern ng", "tern relay"],
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut c = Client {
        sock,
        to: (std::net::Ipv4Addr::LOCALHOST, ng),
        n: 0,
        buf: vec![0; 65536],
    };
    let mut setup = Vec::with_capacity(CALLS);
    let mut teardown = Vec::with_capacity(CALLS);
    let mut full_retries = 0u32;
    let t0 = Instant::now();
    for i in 0..CALLS {
        let call = format!("load-{i}");
        let offer = || {
            Dict::new()
                .with("command", bstr("offer"))
                .with("call-id", bstr(call.clone()))
                .with("from-tag", bstr("caller"))
                .with("replace", str_list(["origin", "session-connection"]))
                .with("flags", str_list(["trust-address"]))
                .with("sdp", bstr(sdp(40000)))
        };
        let start = Instant::now();
        let mut tries = 0;
        loop {
            let (r, v) = c.cmd(offer());
            if r == "ok" {
                break;
            }
            // Released slots are freed by the worker within a tick; only
            // "ran out of ports" is worth a retry.
            assert!(
                format!("{v:?}").contains("Ran out of ports"),
                "offer {i}: {v:?}"
            );
            tries += 1;
            full_retries += 1;
            assert!(tries < 200, "offer {i}: table stayed full");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (r, v) = c.cmd(
            Dict::new()
                .with("command", bstr("answer"))
                .with("call-id", bstr(call.clone()))
                .with("from-tag", bstr("caller"))
                .with("to-tag", bstr("callee"))
                .with("sdp", bstr(sdp(50000))),
        );
        assert_eq!(r, "ok", "answer {i}: {v:?}");
        setup.push(start.elapsed());
        let start = Instant::now();
        let (r, v) = c.cmd(
            Dict::new()
                .with("command", bstr("delete"))
                .with("call-id", bstr(call)),
        );
        assert_eq!(r, "ok", "delete {i}: {v:?}");
        teardown.push(start.elapsed());
    }
    let total = t0.elapsed();
    let (r, v) = c.cmd(Dict::new().with("command", bstr("list")));
    assert_eq!(r, "ok");
    assert!(
        format!("{v:?}").contains("ByteStr(\"calls\"): List([])"),
        "{v:?}"
    );

    // Every slot free again, each still holding its ports, ready for the
    // next call (bound before it is handed out).
    assert!(
        wait_all_free(&instance, Duration::from_secs(10)),
        "slots left behind"
    );
    let table = SlotTable::open(&instance).unwrap();
    assert_eq!(table.count(SlotState::Free), table.capacity());
    let unbound: Vec<u32> = (0..table.capacity())
        .filter(|&id| !table.is_bound(id))
        .collect();
    assert!(unbound.is_empty(), "free slots not ready: {unbound:?}");
    let mut lost = Vec::new();
    for p in PORTS.0..PORTS.0 + 4 * table.capacity() as u16 {
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            lost.push(p);
        }
    }
    assert!(lost.is_empty(), "ports the relay let go: {lost:?}");

    setup.sort();
    teardown.sort();
    let mean = setup.iter().sum::<Duration>() / CALLS as u32;
    eprintln!(
        "ng load: {CALLS} calls in {:.2} s ({:.0} calls/s); setup (offer+answer) mean {:?} p50 {:?} p99 {:?} max {:?}; delete p50 {:?} p99 {:?}; {} retries on a full table",
        total.as_secs_f64(),
        CALLS as f64 / total.as_secs_f64(),
        mean,
        percentile(&setup, 0.5),
        percentile(&setup, 0.99),
        setup[CALLS - 1],
        percentile(&teardown, 0.5),
        percentile(&teardown, 0.99),
        full_retries,
    );
    drop(tern);
    unlink_table(&instance);
}
