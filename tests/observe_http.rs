//! The HTTP API of `tern up` end to end: a SIPp call with media through the
//! relay, then `/metrics` (parsed with `prometheus-parse`) against the slot
//! table's own counters, `/health`, `/calls`, `/registrations`, the 4xx
//! answers, and `tern ctl`.

mod common;
use common::*;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tern_shared::table::{LegStats, SlotState, SlotTable};

const HTTP: &str = "127.0.0.1:18080";
const SIP: &str = "127.0.0.1:15470";

fn get(path: &str) -> (u16, String) {
    tern_observe::ctl::get(HTTP, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn get_json(path: &str) -> Value {
    let (status, body) = get(path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Status of a raw request line (for methods the client does not send).
fn raw_status(request: &str) -> u16 {
    let mut s = TcpStream::connect(HTTP).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.take(1 << 20).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// `/metrics`, parsed: metric name (with `_total` for counters) → samples.
fn scrape() -> HashMap<String, Vec<prometheus_parse::Sample>> {
    let (status, body) = get("/metrics");
    assert_eq!(status, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let s = prometheus_parse::Scrape::parse(lines).expect("/metrics parses as Prometheus text");
    let mut m: HashMap<String, Vec<prometheus_parse::Sample>> = HashMap::new();
    for x in s.samples {
        m.entry(x.metric.clone()).or_default().push(x);
    }
    m
}

fn value(s: &prometheus_parse::Sample) -> f64 {
    use prometheus_parse::Value::*;
    match &s.value {
        Counter(v) | Gauge(v) | Untyped(v) => *v,
        other => panic!("{}: not a scalar: {other:?}", s.metric),
    }
}

/// Sum of `name` over samples whose labels include `labels`.
fn sum(
    m: &HashMap<String, Vec<prometheus_parse::Sample>>,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let v = m.get(name).unwrap_or_else(|| panic!("no metric {name}"));
    v.iter()
        .filter(|s| labels.iter().all(|(k, want)| s.labels.get(k) == Some(want)))
        .map(value)
        .sum()
}

fn ctl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(tern_bin())
        .arg("ctl")
        .args(args)
        .output()
        .expect("run tern ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Live slots and their two legs' counters.
fn live(t: &SlotTable) -> Vec<(u32, [LegStats; 2])> {
    (0..t.capacity())
        .filter(|&id| matches!(t.state(id), SlotState::Active | SlotState::Reserved))
        .map(|id| (id, [t.stats(id, 0).unwrap(), t.stats(id, 1).unwrap()]))
        .collect()
}

#[test]
fn metrics_equal_relay_counters_and_api_answers() {
    let instance = format!("t-h3-obs-{}", std::process::id());
    let dir = sipp_workdir("t-h3-obs");
    let (_tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            SIP,
            "--ports",
            "26000-26099",
            "--workers",
            "2",
            "--instance",
            &instance,
            "--ng",
            "127.0.0.1:22331",
            "--http",
            HTTP,
        ],
        &[
            "tern sip: listening",
            "tern http: listening on 127.0.0.1:18080",
        ],
    );

    // Workers tick every 100 ms; /health is 200 once all have.
    let deadline = Instant::now() + Duration::from_secs(5);
    let health = loop {
        let (status, body) = get("/health");
        if status == 200 || Instant::now() > deadline {
            assert_eq!(status, 200, "/health: {body}");
            break serde_json::from_str::<Value>(&body).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health["status"], "ok");
    assert_eq!(
        health["workers"].as_array().map(Vec::len),
        Some(2),
        "{health}"
    );
    assert_eq!(get_json("/registrations"), Value::Array(vec![]));

    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            "15471",
            "-mp",
            "16300",
            "-rtp_echo",
            "-m",
            "1",
            "-timeout",
            "60s",
        ],
        &dir,
    );
    register("bob", "127.0.0.1:15471", SIP, 15472, &dir);
    // The snapshot is refreshed every 500 ms.
    let deadline = Instant::now() + Duration::from_secs(5);
    let regs = loop {
        let r = get_json("/registrations");
        if r.as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(regs.as_array().map(Vec::len), Some(1), "{regs}");
    assert!(
        regs[0]["aor"].as_str().unwrap().starts_with("bob@"),
        "{regs}"
    );
    assert!(
        regs[0]["contact"].as_str().unwrap().contains("15471"),
        "{regs}"
    );
    assert!(regs[0]["expires_s"].as_u64().unwrap() > 0, "{regs}");

    // g711a.pcap (about 7 s) then 5 s of silence before BYE.
    let sc = scenario("uac_pcap_hold.xml");
    let mut uac = sipp(
        &[
            SIP,
            "-sf",
            sc.to_str().unwrap(),
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            "15473",
            "-mp",
            "16310",
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
        &dir,
    );

    // Wait (bounded) until media flowed both ways and then stopped: the
    // counters are then still there (the slot is live) and settled.
    let table = SlotTable::open(&instance).expect("open table");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut prev: Option<Vec<(u32, [LegStats; 2])>> = None;
    let settled = loop {
        assert!(Instant::now() < deadline, "media never settled: {prev:?}");
        std::thread::sleep(Duration::from_millis(500));
        let now = live(&table);
        let flowed = now.len() == 1 && now[0].1.iter().all(|l| l.rx_packets > 100);
        if flowed && prev.as_ref() == Some(&now) {
            break now;
        }
        prev = Some(now);
    };
    let (slot, legs) = settled[0];

    let m = scrape();
    let after = live(&table);
    assert_eq!(after, settled, "counters moved during the scrape");
    let total = |f: fn(&LegStats) -> u64| legs.iter().map(f).sum::<u64>() as f64;
    let w = table.worker_of(slot).to_string();
    // The packet counters equal the slot table's, while the call is live
    // and (below) after it ended and its slot was freed.
    let check_counters = |m: &HashMap<String, Vec<prometheus_parse::Sample>>, when: &str| {
        for (name, want) in [
            ("tern_worker_rx_packets_total", total(|l| l.rx_packets)),
            ("tern_worker_tx_packets_total", total(|l| l.tx_packets)),
            ("tern_worker_rx_bytes_total", total(|l| l.rx_bytes)),
            ("tern_worker_tx_bytes_total", total(|l| l.tx_bytes)),
            (
                "tern_worker_forwarded_packets_total",
                total(|l| l.tx_packets),
            ),
        ] {
            assert_eq!(sum(m, name, &[]), want, "{name} {when}");
        }
        assert_eq!(
            sum(m, "tern_worker_rx_packets_total", &[("worker", &w)]),
            total(|l| l.rx_packets),
            "the slot's packets are counted under its worker {when}"
        );
        assert_eq!(
            sum(m, "tern_worker_drops_total", &[]),
            total(|l| l.drops_total()),
            "{when}"
        );
        assert_eq!(
            sum(m, "tern_worker_drops_total", &[]),
            sum(m, "tern_worker_dropped_packets_total", &[]),
            "drops by reason add up to the workers' totals {when}"
        );
    };
    check_counters(&m, "during the call");
    assert_eq!(sum(&m, "tern_worker_up", &[]), 2.0);
    assert_eq!(sum(&m, "tern_slots", &[("state", "active")]), 1.0);
    assert_eq!(sum(&m, "tern_calls_active", &[]), 1.0);
    assert_eq!(sum(&m, "tern_calls_total", &[]), 1.0);
    assert_eq!(sum(&m, "tern_registrations", &[]), 1.0);
    assert!(m.contains_key("tern_calls_per_second"));
    for h in [
        "tern_leg_loss_fraction",
        "tern_leg_jitter_ms",
        "tern_leg_mos",
    ] {
        let s = &m.get(h).unwrap_or_else(|| panic!("no histogram {h}"))[0];
        assert!(
            matches!(s.value, prometheus_parse::Value::Histogram(_)),
            "{h}: {s:?}"
        );
    }

    // /calls: one call, its counters those of the table.
    let all = get_json("/calls");
    assert_eq!(all["truncated"], false, "{all}");
    let calls = &all["calls"];
    assert_eq!(calls.as_array().map(Vec::len), Some(1), "{calls}");
    let c = &calls[0];
    assert_eq!(c["slot"], slot);
    assert_eq!(c["state"], "active");
    assert_eq!(c["sip_state"], "confirmed");
    let call_id = c["call_id"].as_str().expect("call_id").to_string();
    assert!(!call_id.is_empty());
    for (i, l) in legs.iter().enumerate() {
        let j = &c["legs"][i];
        assert_eq!(j["rx_packets"], l.rx_packets, "{j}");
        assert_eq!(j["tx_bytes"], l.tx_bytes, "{j}");
        let q = &j["quality"];
        assert!(
            q["expected"].as_u64().unwrap_or(0) >= 100,
            "leg {i} quality: {q}"
        );
        assert!(q["jitter_ms"].as_f64().is_some(), "leg {i} quality: {q}");
    }
    let enc: String = call_id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let one = get_json(&format!("/calls/{enc}"));
    assert_eq!(one["slots"][0]["slot"], slot);
    assert_eq!(one["slots"].as_array().map(Vec::len), Some(1), "{one}");
    assert!(one["dtmf"].is_array(), "{one}");

    // Bad requests: 4xx, counted, and the server still answers.
    assert_eq!(get("/calls/no-such-call").0, 404);
    assert_eq!(get("/no/such/path").0, 404);
    assert_eq!(
        raw_status("POST /calls HTTP/1.0\r\nContent-Length: 0\r\n\r\n"),
        405
    );
    assert_eq!(get(&format!("/calls/{}", "x".repeat(5000))).0, 414);
    let m = scrape();
    assert!(sum(&m, "tern_http_responses_total", &[("code", "404")]) >= 2.0);
    assert!(sum(&m, "tern_http_responses_total", &[("code", "405")]) >= 1.0);

    // tern ctl.
    let (ok, out, err) = ctl(&["--http", HTTP, "calls"]);
    assert!(ok, "{err}");
    assert!(out.contains(&call_id), "{out}");
    let (ok, out, err) = ctl(&["--http", HTTP, "call", &call_id]);
    assert!(ok, "{err}");
    assert!(out.contains("leg 0") && out.contains("leg 1"), "{out}");
    assert!(out.contains(&format!("rx {}", legs[0].rx_packets)), "{out}");
    let (ok, _, err) = ctl(&["--http", HTTP, "call", "no-such-call"]);
    assert!(!ok && err.contains("no call with Call-ID"), "{err}");
    let (ok, _, err) = ctl(&["--http", "127.0.0.1:18089", "calls"]);
    assert!(!ok && err.contains("cannot reach"), "{err}");

    assert_eq!(
        uac.wait_for(Duration::from_secs(30)).map(|s| s.success()),
        Some(true),
        "uac failed"
    );
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "uas failed"
    );
    assert!(
        wait_all_free(&instance, Duration::from_secs(5)),
        "slot not freed"
    );
    assert_eq!(get_json("/calls")["calls"], Value::Array(vec![]));
    assert_eq!(get(&format!("/calls/{enc}")).0, 404);
    // The workers publish their totals every 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    let m = scrape();
    check_counters(&m, "after BYE");
    assert_eq!(sum(&m, "tern_slots", &[("state", "active")]), 0.0);

    let _ = std::fs::remove_dir_all(&dir);
    drop(_tern);
    unlink_table(&instance);
}

#[test]
fn relay_alone_serves_http_and_a_taken_explicit_address_is_an_error() {
    let instance = format!("t-h3-relay-{}", std::process::id());
    let (mut relay, _) = spawn_tern(
        &[
            "relay",
            "--ports",
            "26200-26299",
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            "off",
            "--http",
            "127.0.0.1:18083",
        ],
        &["tern http: listening on 127.0.0.1:18083"],
    );
    let get = |p: &str| tern_observe::ctl::get("127.0.0.1:18083", p).expect("GET");
    assert_eq!(get("/registrations"), (200, "[]\n".to_string()));
    assert_eq!(
        get("/calls"),
        (
            200,
            "{\"calls\":[],\"total\":0,\"truncated\":false}\n".to_string()
        )
    );
    let (status, body) = get("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("tern_registrations 0"), "{body}");

    // The same address again, explicitly: a clear error, not a warning.
    let dir = std::env::temp_dir().join(format!("t-h3-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err_file = dir.join("stderr");
    let child = Command::new(tern_bin())
        .args([
            "relay",
            "--ports",
            "26300-26399",
            "--workers",
            "1",
            "--instance",
            &format!("{instance}-b"),
            "--ng",
            "off",
            "--http",
            "127.0.0.1:18083",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .spawn()
        .expect("spawn tern");
    let mut second = Proc {
        name: "tern relay (second)".into(),
        child,
    };
    let st = second.wait_for(Duration::from_secs(15));
    let err = std::fs::read_to_string(&err_file).unwrap_or_default();
    assert_eq!(st.map(|s| s.success()), Some(false), "{err}");
    assert!(err.contains("cannot listen on 127.0.0.1:18083"), "{err}");

    relay.stop();
    unlink_table(&instance);
    unlink_table(&format!("{instance}-b"));
    let _ = std::fs::remove_dir_all(&dir);
}
