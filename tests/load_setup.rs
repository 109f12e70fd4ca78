//! `tern load setup` against `tern relay` over ng: 20 sequential offer +
//! answer pairs, deleted at the end, all succeed without retransmission,
//! report consistent latencies, and leave every slot free.

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

use tern_loadtest::setup::SetupReport;

const PORTS: &str = "9000-9199";
const NG: &str = "127.0.0.1:22361";

#[test]
fn sequential_setups_against_tern_relay() {
    let instance = format!("load-setup-{}", std::process::id());
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
            NG,
            "--no-pin",
            "--http",
            "off",
        ],
        &["tern ng", "tern relay"],
    );
    let pid = tern.pid().to_string();
    let args = [
        "load",
        "setup",
        "--ng",
        NG,
        "--calls",
        "20",
        "--warmup",
        "5",
        "--relay-pid",
        &pid,
        "--json",
    ];
    let out = Command::new(tern_bin())
        .args(args)
        .output()
        .expect("run tern load setup");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tern {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: SetupReport = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("load setup: {r:?}");
    assert_eq!((r.calls, r.warmup, r.delete.as_str()), (20, 5, "end"));
    assert_eq!(r.retransmits, 0, "{r:?}");
    assert!(r.setups_per_s > 0.0, "{r:?}");
    let l = &r.setup_latency;
    assert!(
        0.0 < l.p50_us && l.p50_us <= l.p99_us && l.p99_us <= l.max_us,
        "{r:?}"
    );
    // A setup is an offer plus an answer: slower than either alone.
    assert!(l.max_us >= r.offer_latency.max_us.max(r.answer_latency.max_us) - 1.0);
    assert!(
        r.deletes_per_s > 0.0 && r.delete_latency.max_us > 0.0,
        "{r:?}"
    );
    assert!(r.relay_cpu_ns_per_setup.is_some_and(|ns| ns > 0.0), "{r:?}");
    assert!(
        wait_all_free(&instance, Duration::from_secs(10)),
        "calls left behind"
    );

    // A relay that is not there: a clear error, not a hang.
    let out = Command::new(tern_bin())
        .args(["load", "setup", "--ng", "127.0.0.1:22369", "--calls", "1"])
        .output()
        .expect("run tern load setup");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no reply") && err.contains("is a relay serving ng"),
        "{err}"
    );
    tern.stop();
    unlink_table(&instance);
}
