//! The real-browser harness of tests/browser/ from Rust: whether Chromium,
//! node and the npm packages are here, and one bounded run of `drive.mjs`
//! (Chromium driven by playwright-core, JsSIP in the page) whose JSON line
//! it returns.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::Proc;

/// tests/browser/ of the repository.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The Chromium to drive: `$TERN_CHROMIUM`, else Debian's /usr/bin/chromium.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("TERN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Whether Chromium, node and tests/browser/node_modules are here; prints
/// why not (the test then skips).
pub fn browser_prerequisites() -> bool {
    let chromium = chromium_path();
    if !chromium.exists() {
        eprintln!(
            "SKIP: no Chromium at {} (Debian package chromium, or set TERN_CHROMIUM)",
            chromium.display()
        );
        return false;
    }
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        eprintln!("SKIP: node is not installed (Debian package nodejs)");
        return false;
    }
    for pkg in ["playwright-core", "jssip"] {
        if !browser_dir().join("node_modules").join(pkg).is_dir() {
            eprintln!("SKIP: tests/browser/node_modules/{pkg} is missing: run `npm ci --prefix tests/browser`");
            return false;
        }
    }
    true
}

/// Runs `node tests/browser/drive.mjs ARGS --timeout LIMIT-10` and returns
/// its JSON line (with `"ok"`, `"pages"` and `"error"`), bounded by
/// `limit`: past it node is stopped by PID (SIGTERM first, on which
/// playwright closes the browser it started). Panics when no JSON came.
pub fn drive(args: &[&str], limit: Duration) -> serde_json::Value {
    let inner = limit.as_secs().saturating_sub(10).max(10).to_string();
    let mut child = Command::new("node")
        .arg(browser_dir().join("drive.mjs"))
        .args(args)
        .args([
            "--chromium",
            chromium_path().to_str().unwrap(),
            "--timeout",
            &inner,
        ])
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn node");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut p = Proc {
        name: format!("node drive.mjs {}", args.join(" ")),
        child,
    };
    let status = p.wait_for(limit);
    if status.is_none() {
        p.stop();
    }
    let text = reader.join().unwrap_or_default();
    eprintln!("[drive] {}", text.trim());
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{} gave no JSON (exit {status:?}, limit {limit:?})", p.name));
    serde_json::from_str(line).expect("drive.mjs JSON")
}

/// `pages.NAME.packetsReceived` of a drive.mjs result (0 when absent).
pub fn packets_received(v: &serde_json::Value, page: &str) -> u64 {
    v["pages"][page]["packetsReceived"].as_u64().unwrap_or(0)
}
