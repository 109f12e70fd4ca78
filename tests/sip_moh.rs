//! Music on hold through the B2BUA (`[media] moh`): a `tern up` call
//! between SIPp parties where the caller (`hold_uac.xml`: g711a.pcap
//! audio, a re-INVITE with `a=sendonly` at about 1.5 s, resumed 2 s
//! later) holds the callee (`hold_uas.xml`, SIPp without `-rtp_echo`).
//! What reaches the callee's media port, captured with tshark and
//! decoded as PCMA, contains the MoH file (a sweep written here with
//! hound): its normalized correlation with the file's first half second
//! is ≥ 0.9 at some offset, which the caller's speech never reaches.
//!
//! Ports: SIP 15880-15884, media 16880/16890, relay 32700-32759.

mod common;
use common::audio::{sweep, write_wav};
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RATE: u32 = 8000;

/// The best normalized correlation of `template` against any window of
/// `y`.
fn best_correlation(template: &[i16], y: &[i16]) -> f64 {
    let tt: f64 = template.iter().map(|&a| f64::from(a).powi(2)).sum();
    let mut best = 0.0f64;
    for lag in 0..y.len().saturating_sub(template.len()) {
        let w = &y[lag..lag + template.len()];
        let (mut xy, mut yy) = (0.0, 0.0);
        for (&a, &b) in template.iter().zip(w) {
            xy += f64::from(a) * f64::from(b);
            yy += f64::from(b) * f64::from(b);
        }
        if yy > 0.0 {
            best = best.max(xy / (tt * yy).sqrt());
        }
    }
    best
}

/// The RTP payloads to UDP port `port` in a pcap file, in order.
fn rtp_payloads(file: &Path, port: u16) -> Vec<Vec<u8>> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args([
            "-d",
            &format!("udp.port=={port},rtp"),
            "-Y",
            &format!("rtp && udp.dstport=={port}"),
            "-T",
            "fields",
            "-e",
            "rtp.payload",
        ])
        .output()
        .expect("tshark -r");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let h: String = l.chars().filter(char::is_ascii_hexdigit).collect();
            (0..h.len() / 2)
                .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
                .collect()
        })
        .collect()
}

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty());
    if !ok {
        eprintln!("SKIP: {tool} is not installed");
    }
    ok
}

#[test]
fn held_callee_hears_the_moh_file() {
    if !have("sipp") || !have("tshark") {
        return;
    }
    let dir = sipp_workdir("sip-moh");
    let wav = dir.join("moh.wav");
    let x = sweep(1.0, RATE);
    write_wav(&wav, RATE, &x);
    let cfg = dir.join("moh.toml");
    std::fs::write(
        &cfg,
        format!("[media]\nmoh = {:?}\n", wav.display().to_string()),
    )
    .unwrap();
    let instance = format!("sip-moh-{}", std::process::id());
    let cfg_s = cfg.to_string_lossy().to_string();
    let mut tern = spawn_sip_node(
        "127.0.0.1:15880",
        "32700-32759",
        &instance,
        &["--config", &cfg_s],
    );
    let sip = "127.0.0.1:15880";

    let callee_media = 16880u16;
    let mp = callee_media.to_string();
    let sf = scenario("hold_uas.xml");
    let mut uas = sipp(
        &[
            "-sf",
            sf.to_str().unwrap(),
            "-i",
            "127.0.0.1",
            "-p",
            "15881",
            "-mp",
            &mp,
            "-m",
            "1",
            "-timeout",
            "60s",
        ],
        &dir,
    );
    register("bob", "127.0.0.1:15881", sip, 15882, &dir);
    let cap = Capture::start(
        &format!("udp dst port {callee_media}"),
        &dir.join("callee.pcap"),
    );
    let uac = scenario("hold_uac.xml");
    let ok = sipp_run(
        &[
            sip,
            "-sf",
            uac.to_str().unwrap(),
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            "15883",
            "-mp",
            "16890",
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
        &dir,
        Duration::from_secs(70),
    );
    let pcap = cap.finish();
    let uas_ok = uas.wait_for(Duration::from_secs(15)).map(|s| s.success());
    tern.stop();
    let table = tern_shared::table::table_path(&instance);
    let prompts: Vec<_> = std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with(&format!(
                "{}.prompt-",
                table.file_name().unwrap().to_string_lossy()
            ))
        })
        .map(|e| e.path())
        .collect();
    for p in &prompts {
        let _ = std::fs::remove_file(p);
    }
    unlink_table(&instance);
    assert!(ok, "caller: hold/resume call failed");
    assert_eq!(uas_ok, Some(true), "callee");
    assert_eq!(prompts.len(), 1, "the MoH prompt was published once");

    let payloads = rtp_payloads(&pcap, callee_media);
    let y: Vec<i16> = payloads
        .iter()
        .flatten()
        .map(|&c| tern_codec::g711::alaw_to_linear(c))
        .collect();
    let corr = best_correlation(&x[..4000], &y);
    // The caller's speech alone, for contrast: the first second.
    let before = best_correlation(&x[..4000], &y[..y.len().min(8000)]);
    eprintln!(
        "callee got {} packets; MoH correlation {corr:.3}, before the hold {before:.3}",
        payloads.len()
    );
    assert!(payloads.len() > 200, "{} packets", payloads.len());
    assert!(corr >= 0.9, "MoH correlation {corr:.3}");
    assert!(before < 0.5, "the caller's audio correlates {before:.3}");
    let _ = std::fs::remove_dir_all(&dir);
}
