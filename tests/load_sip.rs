//! `tern load sip` against `tern up`: 20 calls/s for 2 s, as caller and
//! callee, with open registration and with digest users; every call
//! completes, the latencies are consistent, and every relay slot is free
//! afterwards. A SUT that is not there is a prompt error, not a hang.

mod common;
use common::*;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tern_loadtest::sip::{SipReport, SipSearch};

/// Runs `tern ARGS` to completion, bounded by `limit` (killed past it).
fn tern_run(args: &[&str], limit: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    let mut child = Command::new(tern_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tern");
    // Bounded: `limit` in 50 ms steps.
    while t0.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !matches!(child.try_wait(), Ok(Some(_))) {
        let _ = child.kill();
        let out = child.wait_with_output().expect("reap tern");
        panic!(
            "tern {args:?} ran past {limit:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (child.wait_with_output().expect("tern output"), t0.elapsed())
}

/// Starts `tern up` on `sip` with relay `ports` (and `config`), runs
/// `tern load sip` with `extra` arguments at 20 calls/s for 2 s, and
/// checks the report; returns it.
fn load_through_tern_up(
    name: &str,
    sip: &str,
    ports: &str,
    gen_port: &str,
    config: Option<&str>,
    extra: &[&str],
) -> SipReport {
    let instance = format!("load-sip-{name}-{}", std::process::id());
    let mut node_args = vec!["--no-pin"];
    if let Some(c) = config {
        node_args.extend(["--config", c]);
    }
    let mut tern = spawn_sip_node(sip, ports, &instance, &node_args);
    let pid = tern.pid().to_string();
    let mut load = vec![
        "load",
        "sip",
        "--sip",
        sip,
        "--port",
        gen_port,
        "--cps",
        "20",
        "--duration",
        "2",
        "--relay-pid",
        &pid,
        "--timeout-ms",
        "5000",
        "--json",
    ];
    load.extend(extra);
    let (out, _) = tern_run(&load, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tern {load:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r = SipReport::from_json(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("load sip ({name}): {r:?}");
    assert_eq!(r.failed, 0, "{r:?}");
    assert!(r.failures.is_empty(), "{r:?}");
    assert!(r.completed >= 35 && r.completed == r.attempted, "{r:?}");
    assert_eq!(r.answered, r.completed, "{r:?}");
    assert_eq!((r.unexpected, r.send_errors), (0, 0), "{r:?}");
    for l in [&r.setup_latency, &r.bye_latency] {
        assert!(
            0.0 < l.p50_us && l.p50_us <= l.p99_us && l.p99_us <= l.max_us,
            "{r:?}"
        );
    }
    // Per call, the SUT's share is the setup less the callee's turnaround.
    let (sut, setup) = (&r.sut_setup_latency, &r.setup_latency);
    assert!(
        0.0 < sut.p50_us && sut.p50_us <= setup.p50_us + 1.0 && sut.max_us <= setup.max_us + 1.0,
        "{r:?}"
    );
    assert!(r.callee_turnaround.p50_us > 0.0, "{r:?}");
    assert!(r.achieved_cps > 15.0 && r.achieved_cps < 25.0, "{r:?}");
    assert!(r.relay_cpu_ns_per_call.is_some_and(|ns| ns > 0.0), "{r:?}");
    assert!(
        wait_all_free(&instance, Duration::from_secs(10)),
        "relay slots left behind"
    );
    tern.stop();
    unlink_table(&instance);
    r
}

#[test]
fn calls_through_tern_up_with_open_registration() {
    let r = load_through_tern_up("open", "127.0.0.1:15901", "32300-32379", "15960", None, &[]);
    assert_eq!(r.auth_challenges, 0, "{r:?}");
}

#[test]
fn calls_through_tern_up_with_digest_users() {
    let dir = std::env::temp_dir().join(format!("tern-load-sip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = dir.join("users.toml");
    std::fs::write(
        &config,
        "[[users]]\nname = \"bob\"\npassword = \"secret\"\n",
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path");
    // REGISTER answers the 401, the first INVITE the 407, and the nonce
    // serves every later call (nonce-count up).
    let r = load_through_tern_up(
        "auth",
        "127.0.0.1:15902",
        "32380-32459",
        "15962",
        Some(config),
        &["--user", "bob", "--password", "secret"],
    );
    assert!(
        (1..=3).contains(&r.auth_challenges),
        "nonce not reused: {r:?}"
    );
    // A fresh challenge per call, answered with SHA-256.
    let r = load_through_tern_up(
        "auth-each",
        "127.0.0.1:15903",
        "32460-32539",
        "15964",
        Some(config),
        &[
            "--user",
            "bob",
            "--password",
            "secret",
            "--auth-each-call",
            "--sha256",
        ],
    );
    assert_eq!(r.auth_challenges, r.attempted, "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wrong_password_and_missing_sut_are_prompt_errors() {
    // Nothing listens on 15909: refused at once (ICMP on loopback).
    let (out, took) = tern_run(
        &[
            "load",
            "sip",
            "--sip",
            "127.0.0.1:15909",
            "--port",
            "15966",
            "--cps",
            "10",
            "--duration",
            "1",
        ],
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("127.0.0.1:15909"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {err}");

    let dir = std::env::temp_dir().join(format!("tern-load-sip-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = dir.join("users.toml");
    std::fs::write(
        &config,
        "[[users]]\nname = \"bob\"\npassword = \"secret\"\n",
    )
    .expect("write config");
    let instance = format!("load-sip-pw-{}", std::process::id());
    let mut tern = spawn_sip_node(
        "127.0.0.1:15904",
        "32540-32619",
        &instance,
        &["--config", config.to_str().expect("utf-8 path"), "--no-pin"],
    );
    for extra in [&["--password", "wrong"][..], &[]] {
        let mut args = vec![
            "load",
            "sip",
            "--sip",
            "127.0.0.1:15904",
            "--port",
            "15968",
            "--user",
            "bob",
            "--cps",
            "10",
            "--duration",
            "1",
        ];
        args.extend(extra);
        let (out, took) = tern_run(&args, Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(err.contains("REGISTER"), "{args:?}: {err}");
        assert!(took < Duration::from_secs(10), "took {took:?}: {err}");
    }
    tern.stop();
    unlink_table(&instance);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn find_max_steps_up_by_a_quarter_until_its_limit() {
    let instance = format!("load-sip-max-{}", std::process::id());
    let mut tern = spawn_sip_node("127.0.0.1:15905", "32620-32699", &instance, &["--no-pin"]);
    // 20 then 25 calls/s; 31.25 is over --max-cps.
    let args = [
        "load",
        "sip",
        "--sip",
        "127.0.0.1:15905",
        "--port",
        "15970",
        "--cps",
        "20",
        "--duration",
        "1",
        "--find-max",
        "--max-cps",
        "30",
        // The steps, not the latency, are under test: a debug build on a
        // busy machine may see a p99 over the default 50 ms.
        "--max-p99-ms",
        "2000",
        "--json",
    ];
    let (out, _) = tern_run(&args, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let s: SipSearch = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let targets: Vec<f64> = s.runs.iter().map(|r| r.target_cps).collect();
    assert!(
        s.runs
            .iter()
            .all(|r| r.failed == 0 && r.completed == r.attempted),
        "{s:?}"
    );
    match s.limited_by.as_str() {
        "limit" => {
            assert_eq!(targets, [20.0, 25.0], "{s:?}");
            // The second step ran its own 25 calls (indices go on).
            assert_eq!(s.runs[1].attempted, 25, "{s:?}");
            assert_eq!(s.max_cps, Some(25.0), "{s:?}");
        }
        // A stall of the test machine can put the generator behind its
        // schedule: the search stops at that step and says so.
        "generator" => {
            assert!(s.runs.last().is_some_and(|r| r.generator_limited), "{s:?}");
            assert_eq!(targets[..], [20.0, 25.0][..targets.len()], "{s:?}");
            let before = targets.len().checked_sub(2).map(|i| targets[i]);
            assert_eq!(s.max_cps, before, "{s:?}");
        }
        other => panic!("search ended by {other}: {s:?}"),
    }
    assert!(
        wait_all_free(&instance, Duration::from_secs(10)),
        "slots left behind"
    );
    tern.stop();
    unlink_table(&instance);
}
