//! Never hand out a port that is not bound: a relay whose range is partly
//! held by other sockets answers only with ports it holds, warns at start
//! when its range lies in the kernel's ephemeral one, and reclaims the
//! slots of a killed control plane.
//!
//! Ports: relay media 21000-21199 and 21400-21599 (below the ephemeral
//! range), ng and HTTP on free ports, instances `ports-*`.

mod common;
use common::ng::{ng_exchange as ng, sdp_port, str_of};
use common::*;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tern_ng::bencode::{bstr, Dict};
use tern_shared::table::{SlotState, SlotTable};

/// `tern relay` on `ports` with ng and HTTP on free ports; the guard stops
/// it by PID.
struct Relay {
    proc_: Proc,
    instance: String,
    ng: SocketAddr,
    http: String,
}

impl Relay {
    fn start(instance: &str, ports: &str, ng: u16, http: u16, extra: &[&str]) -> Relay {
        let ng_arg = format!("127.0.0.1:{ng}");
        let http = format!("127.0.0.1:{http}");
        let mut args = vec![
            "relay",
            "--ports",
            ports,
            "--workers",
            "1",
            "--instance",
            instance,
            "--ng",
            &ng_arg,
            "--http",
            &http,
            "--no-pin",
        ];
        args.extend_from_slice(extra);
        // HTTP starts after the relay line: wait for it too.
        let (p, _) = spawn_tern(&args, &["tern ng", "tern relay", "tern http: listening"]);
        Relay {
            proc_: p,
            instance: instance.to_string(),
            ng: ([127, 0, 0, 1], ng).into(),
            http,
        }
    }

    fn table(&self) -> SlotTable {
        SlotTable::open(&self.instance).expect("the relay's table")
    }

    /// A scalar of `/metrics` (summed over its label sets).
    fn metric(&self, name: &str) -> f64 {
        let (status, body) = tern_observe::ctl::get(&self.http, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        let lines = body.lines().map(|l| Ok(l.to_string()));
        let s = prometheus_parse::Scrape::parse(lines).expect("/metrics parses");
        let found: Vec<f64> = s
            .samples
            .iter()
            .filter(|x| x.metric == name)
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => panic!("{name} is not a scalar"),
            })
            .collect();
        assert!(!found.is_empty(), "no metric {name} in {body}");
        found.iter().sum()
    }
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

/// Offer from `a`, answer from `b`: `Ok((port a sends to, port b sends
/// to))`, or `Err(error-reason)` of the first command that failed.
fn call(
    ctl: &UdpSocket,
    to: SocketAddr,
    id: &str,
    a: &UdpSocket,
    b: &UdpSocket,
) -> Result<(u16, u16), String> {
    let port = |s: &UdpSocket| s.local_addr().unwrap().port();
    let o = ng(
        ctl,
        to,
        &format!("{id}-o"),
        Dict::new()
            .with("command", bstr("offer"))
            .with("call-id", bstr(id))
            .with("from-tag", bstr("a"))
            .with("sdp", bstr(sdp(port(a)))),
    );
    if str_of(&o, "result") != "ok" {
        return Err(str_of(&o, "error-reason"));
    }
    let r = ng(
        ctl,
        to,
        &format!("{id}-a"),
        Dict::new()
            .with("command", bstr("answer"))
            .with("call-id", bstr(id))
            .with("from-tag", bstr("a"))
            .with("to-tag", bstr("b"))
            .with("sdp", bstr(sdp(port(b)))),
    );
    if str_of(&r, "result") != "ok" {
        return Err(str_of(&r, "error-reason"));
    }
    Ok((sdp_port(&r), sdp_port(&o)))
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend([0xff; 160]);
    p
}

/// Whether RTP sent from `from` to relay port `port` reaches `to`: up to
/// 40 tries 50 ms apart (the worker applies a new slot within ms).
fn flows(from: &UdpSocket, port: u16, to: &UdpSocket) -> bool {
    to.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 2048];
    for seq in 0..40 {
        from.send_to(&rtp(seq), ("127.0.0.1", port)).unwrap();
        if let Ok((n, _)) = to.recv_from(&mut buf) {
            return n == 172;
        }
    }
    false
}

fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

/// A random tenth of the relay's ports is held by the test's own sockets
/// before the relay starts. Calls are set up until the range is full:
/// every call answered `ok` carries media both ways on ports the relay
/// holds, exactly the slots without a held port are handed out, and the
/// call after the last is an error that says so.
#[test]
fn held_ports_are_never_handed_out() {
    const LO: u16 = 21000;
    const HI: u16 = 21199;
    let instance = format!("ports-held-{}", std::process::id());
    unlink_table(&instance);
    let mut held = BTreeSet::new();
    let mut holders = Vec::new();
    while held.len() < usize::from(HI - LO + 1) / 10 {
        let p = LO + (rand_u32() % u32::from(HI - LO + 1)) as u16;
        if held.insert(p) {
            // Bound by us, or already by someone else: held either way.
            if let Ok(s) = UdpSocket::bind(("127.0.0.1", p)) {
                holders.push(s);
            }
        }
    }
    let held_slots: BTreeSet<u32> = held.iter().map(|p| u32::from(p - LO) / 4).collect();
    let relay = Relay::start(
        &instance,
        &format!("{LO}-{HI}"),
        free_port(),
        free_port(),
        &[],
    );
    let table = relay.table();
    let capacity = table.capacity();
    assert_eq!(capacity, 50);
    for &s in &held_slots {
        assert!(!table.is_bound(s), "slot {s} has a held port");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.metric("tern_slots_unbound") != held_slots.len() as f64 {
        assert!(
            Instant::now() < deadline,
            "tern_slots_unbound never matched"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let ctl = udp();
    let mut peers = Vec::new();
    let mut answered = 0;
    let mut refusal = None;
    for i in 0..=capacity {
        let (a, b) = (udp(), udp());
        match call(&ctl, relay.ng, &format!("held-{i}"), &a, &b) {
            Ok((to_a_leg, to_b_leg)) => {
                for port in [to_a_leg, to_b_leg] {
                    assert!(!held.contains(&port), "call {i} got held port {port}");
                    assert!((LO..=HI).contains(&port));
                }
                assert!(flows(&a, to_a_leg, &b), "call {i}: caller -> callee");
                assert!(flows(&b, to_b_leg, &a), "call {i}: callee -> caller");
                answered += 1;
                peers.push((a, b));
            }
            Err(reason) => {
                refusal = Some(reason);
                break;
            }
        }
    }
    let reason = refusal.expect("the range filled up and the next call was refused");
    assert!(reason.contains("Ran out of ports"), "{reason}");
    assert_eq!(answered, capacity as usize - held_slots.len());
    assert!(relay.metric("tern_slots_port_misses_total") >= 1.0);
    assert_eq!(
        table.count(SlotState::Active) as usize,
        answered,
        "no slot taken by a refused call"
    );
    drop(holders);
    drop(relay);
    unlink_table(&instance);
}

/// Starting with `--ports` inside the kernel's ephemeral range warns and
/// names the fix; a range outside it does not.
#[test]
fn ephemeral_overlap_warns_at_start() {
    let Some(eph) = std::fs::read_to_string(tern_dataplane::host::PORT_RANGE_PATH)
        .ok()
        .and_then(|t| tern_dataplane::host::parse_port_range(&t))
    else {
        eprintln!("SKIP: no {}", tern_dataplane::host::PORT_RANGE_PATH);
        return;
    };
    let reserved = std::fs::read_to_string(tern_dataplane::host::RESERVED_PATH)
        .ok()
        .and_then(|t| tern_dataplane::host::parse_reserved(&t))
        .unwrap_or_default();
    let inside = (eph.0, eph.0 + 99);
    assert!(
        tern_dataplane::host::overlap(inside, eph, &reserved).is_some(),
        "SKIP would hide this: {inside:?} is reserved on this host"
    );
    let err = start_stderr("in", inside);
    assert!(
        err.contains("overlaps the kernel's ephemeral port range"),
        "{err}"
    );
    assert!(err.contains("ip_local_reserved_ports"), "{err}");
    if eph.0 < 2000 {
        eprintln!(
            "SKIP (outside range): the ephemeral range starts at {}",
            eph.0
        );
        return;
    }
    let below = (eph.0 - 1000, eph.0 - 901);
    let err = start_stderr("out", below);
    assert!(!err.contains("ephemeral"), "{err}");
}

/// Runs `tern relay` on `ports` until it is up; returns what it wrote to
/// stderr by then.
fn start_stderr(name: &str, ports: (u16, u16)) -> String {
    let instance = format!("ports-warn-{name}-{}", std::process::id());
    let mut child = Command::new(tern_bin())
        .args([
            "relay",
            "--workers",
            "1",
            "--no-pin",
            "--ng",
            "off",
            "--http",
            "off",
        ])
        .args(["--instance", &instance, "--ports"])
        .arg(format!("{}-{}", ports.0, ports.1))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tern");
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send((true, l));
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send((false, l));
        }
    });
    let mut proc_ = Proc {
        name: format!("tern relay {instance}"),
        child,
    };
    let mut stderr = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, l)) if l.contains("tern relay:") => break,
            Ok((false, l)) => {
                stderr.push_str(&l);
                stderr.push('\n');
            }
            Ok(_) => {}
            Err(_) => panic!("tern relay on {ports:?} never came up: {stderr}"),
        }
    }
    proc_.stop();
    // Anything written before the stop that is still in the pipe.
    while let Ok((false, l)) = rx.recv_timeout(Duration::from_millis(200)) {
        stderr.push_str(&l);
        stderr.push('\n');
    }
    unlink_table(&instance);
    stderr
}

/// Calls set up over ng, then the relay is SIGKILLed and restarted: its
/// new control plane knows none of them, so their slots are reclaimed
/// (one at once by a `delete` naming its Call-ID, the rest by the media
/// timeout) and counted in `/metrics`; new calls work throughout.
#[test]
fn slots_of_a_killed_relay_are_reclaimed() {
    const CALLS: usize = 10;
    const TIMEOUT_S: u64 = 3;
    let instance = format!("ports-reclaim-{}", std::process::id());
    unlink_table(&instance);
    let (ng_port, http_port) = (free_port(), free_port());
    let timeout = TIMEOUT_S.to_string();
    let extra = ["--timeout", timeout.as_str()];
    let mut relay = Relay::start(&instance, "21400-21599", ng_port, http_port, &extra);
    let ctl = udp();
    let mut peers = Vec::new();
    for i in 0..CALLS {
        let (a, b) = (udp(), udp());
        let (pa, _) = call(&ctl, relay.ng, &format!("old-{i}"), &a, &b).expect("call");
        if i < 2 {
            assert!(flows(&a, pa, &b));
        }
        peers.push((a, b));
    }
    relay.proc_.kill_hard();
    let t0 = Instant::now();
    let relay = Relay::start(&instance, "21400-21599", ng_port, http_port, &extra);
    let table = relay.table();
    assert_eq!(
        table.count(SlotState::Active) as usize,
        CALLS,
        "left by the kill"
    );
    // A call the new control plane does not know, deleted by Call-ID.
    let d = ng(
        &ctl,
        relay.ng,
        "del-old-0",
        Dict::new()
            .with("command", bstr("delete"))
            .with("call-id", bstr("old-0")),
    );
    assert_eq!(str_of(&d, "result"), "ok");
    assert_eq!(relay.metric("tern_slots_reclaimed_total"), 1.0);
    // New calls are served meanwhile.
    let (a, b) = (udp(), udp());
    let (pa, pb) = call(&ctl, relay.ng, "new-0", &a, &b).expect("a new call");
    assert!(flows(&a, pa, &b) && flows(&b, pb, &a));
    // The rest: silent since the kill, released within the timeout (plus
    // the once-a-second poll and a margin).
    let deadline = t0 + Duration::from_secs(TIMEOUT_S + 6);
    while relay.metric("tern_slots_reclaimed_total") < CALLS as f64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {CALLS} reclaimed after {:?}",
            relay.metric("tern_slots_reclaimed_total"),
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(relay.metric("tern_slots_reclaimed_total"), CALLS as f64);
    // At most the new call still holds a slot (ng may have timed it out).
    let live = table.count(SlotState::Active) + table.count(SlotState::Reserved);
    assert!(live <= 1, "{live} slots still held");
    drop(relay);
    unlink_table(&instance);
}

/// A random u32 from the kernel's entropy (no extra dependency).
fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom(2) into a 4-byte buffer we own.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 4, 0) };
    assert_eq!(n, 4);
    u32::from_ne_bytes(b)
}
