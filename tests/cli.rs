//! The command-line contract: refusals that must happen before anything runs.

use std::process::Command;

fn tern(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .output()
        .expect("run tern");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn open_registrar_off_loopback_is_refused() {
    let (ok, err) = tern(&[
        "up",
        "--sip",
        "192.0.2.10:5060",
        "--instance",
        "cli-refuse",
        "--ng",
        "off",
    ]);
    assert!(!ok);
    assert!(err.contains("refusing to run an open registrar"), "{err}");
    assert!(
        !std::path::Path::new("/dev/shm/tern-cli-refuse").exists(),
        "nothing may start"
    );
}

#[test]
fn bad_arguments_and_config_get_clear_errors() {
    let (ok, err) = tern(&["relay", "--ports", "40000-30000"]);
    assert!(!ok && err.contains("bad port range"), "{err}");
    let cfg = std::env::temp_dir().join(format!("tern-cli-{}.toml", std::process::id()));
    std::fs::write(&cfg, "[[users]]\nname = \"alice\"\n").unwrap();
    let (ok, err) = tern(&[
        "up",
        "--config",
        cfg.to_str().unwrap(),
        "--instance",
        "cli-badcfg",
        "--ng",
        "off",
    ]);
    let _ = std::fs::remove_file(&cfg);
    assert!(!ok);
    assert!(err.contains("config"), "{err}");
    let (ok, err) = tern(&["sip", "--relay", "shm:no-such-relay-here"]);
    assert!(
        !ok && err.contains("tern relay --instance no-such-relay-here"),
        "{err}"
    );
}
