//! RFC 4475 messages that must be rejected get 400 from `tern up`, and the
//! server keeps serving calls afterwards.

mod common;
use common::*;
use std::time::Duration;

fn torture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/sip/rfc4475")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn rfc4475_rejects_get_400_and_calls_still_work() {
    let instance = format!("e2e-bad-{}", std::process::id());
    let dir = sipp_workdir("e2e-bad");
    let (_tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            "127.0.0.1:15360",
            "--ports",
            "31600-31699",
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            "127.0.0.1:22303",
        ],
        &["tern sip: listening"],
    );
    for name in [
        "badinv01.dat",
        "mismatch01.dat",
        "scalar02.dat",
        "insuf.dat",
    ] {
        let code = sip_exchange(&torture(name), "127.0.0.1:15360");
        assert_eq!(code, Some(400), "{name}");
    }
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            "15370",
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
    register("bob", "127.0.0.1:15370", "127.0.0.1:15360", 15371, &dir);
    let ok = sipp_run(
        &[
            "127.0.0.1:15360",
            "-sn",
            "uac",
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            "15380",
            "-m",
            "1",
            "-timeout",
            "30s",
            "-timeout_error",
        ],
        &dir,
        Duration::from_secs(40),
    );
    assert!(ok, "call after malformed input failed");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true)
    );
    assert!(wait_all_free(&instance, Duration::from_secs(5)));
    let _ = std::fs::remove_dir_all(&dir);
    drop(_tern);
    unlink_table(&instance);
}
