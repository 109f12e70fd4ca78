//! `tern load rtp` against `tern relay` over ng: 10 calls at 500 pps for
//! 2 s arrive without loss or duplicates, with the SSRC the caller sent
//! (rewriting is off by default over ng, as in rtpengine); with
//! `--ssrc-rewrite` (the ng flag `SSRC-rewrite`) every stream arrives with
//! the relay's SSRC instead.

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

use tern_loadtest::Output;

const PORTS: &str = "23000-23299";

fn load(ng: &str, pid: i32, extra: &[&str]) -> Output {
    let pid = pid.to_string();
    let mut args = vec![
        "load",
        "rtp",
        "--ng",
        ng,
        "--calls",
        "10",
        "--pps",
        "500",
        "--relay-pid",
        &pid,
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = Command::new(tern_bin())
        .args(&args)
        .output()
        .expect("run tern load rtp");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tern {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Output::from_json(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn ten_calls_through_tern_relay_without_loss() {
    let instance = format!("load-smoke-{}", std::process::id());
    let ng = format!("127.0.0.1:{}", free_port());
    let (mut tern, _) = spawn_tern(
        &[
            "relay",
            "--ports",
            PORTS,
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            &ng,
            "--no-pin",
        ],
        &["tern ng", "tern relay"],
    );

    let out = load(&ng, tern.pid(), &["--duration", "2"]);
    assert_eq!(out.runs.len(), 1);
    let r = &out.runs[0];
    eprintln!("load smoke: {r:?}");
    assert!(
        r.sent >= 900,
        "about 1000 packets in 2 s at 500 pps: {}",
        r.sent
    );
    assert_eq!(r.lost, 0, "{r:?}");
    assert_eq!(r.received, r.sent, "{r:?}");
    assert_eq!(r.duplicates, 0, "{r:?}");
    assert_eq!(r.foreign, 0, "{r:?}");
    assert_eq!(r.streams_received, 10, "{r:?}");
    assert_eq!(
        r.streams_ssrc_rewritten, 0,
        "SSRC rewriting is off by default"
    );
    assert!(r.latency.max_us > 0.0 && r.latency.p50_us <= r.latency.p99_us);
    let cpu = r.relay_cpu_ns_per_pkt.expect("relay CPU per packet");
    assert!(cpu > 0.0, "{r:?}");

    let out = load(&ng, tern.pid(), &["--duration", "1", "--ssrc-rewrite"]);
    let r = &out.runs[0];
    assert_eq!((r.lost, r.duplicates), (0, 0), "{r:?}");
    assert_eq!(
        r.streams_ssrc_rewritten, 10,
        "SSRC-rewrite: every stream carries the relay's SSRC: {r:?}"
    );

    // The generator deleted its calls: every slot drains back to free.
    assert!(
        wait_all_free(&instance, Duration::from_secs(10)),
        "calls left behind"
    );
    tern.stop();
    unlink_table(&instance);
}
