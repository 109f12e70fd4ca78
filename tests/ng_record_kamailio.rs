//! Recording driven by stock Kamailio: its rtpengine module's
//! `start_recording()` (on the initial INVITE's 200) and
//! `stop_recording()` (on BYE) against `tern relay --recording-dir`
//! (config: tests/kamailio/kamailio-record.cfg). SIPp's `uac_pcap` calls
//! SIPp's `uas -rtp_echo` through Kamailio; the call's pcap, WAV and JSON
//! are checked: the WAV's left channel correlates ≥ 0.95 with the
//! caller's RTP as the pcap holds it, the right with the callee's, its
//! duration matches the recorded media, the JSON parses.
//!
//! Ports: relay media 20700-20799.

mod common;
use common::*;

use std::time::Duration;

fn ulaw_or_alaw(pt: u8, c: u8) -> f64 {
    let v = if pt == 0 {
        tern_codec::g711::ulaw_to_linear(c)
    } else {
        tern_codec::g711::alaw_to_linear(c)
    };
    f64::from(v)
}

fn corr_at(x: &[f64], y: &[f64], lag: usize) -> f64 {
    let n = x.len().min(y.len().saturating_sub(lag));
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        xy += x[i] * y[i + lag];
        xx += x[i] * x[i];
        yy += y[i + lag] * y[i + lag];
    }
    if xx == 0.0 || yy == 0.0 {
        return 0.0;
    }
    xy / (xx * yy).sqrt()
}

#[test]
fn kamailio_start_and_stop_recording_write_the_call() {
    if !kamailio_bin().exists() {
        eprintln!("skipping: kamailio not installed");
        return;
    }
    let instance = format!("ng-kam-rec-{}", std::process::id());
    let dir = sipp_workdir("ng-kam-rec");
    let rec_dir = dir.join("recordings");
    let rec_s = rec_dir.to_string_lossy().to_string();
    let ng = free_port();
    let ng_arg = format!("127.0.0.1:{ng}");
    let (mut tern, _) = spawn_tern(
        &[
            "relay",
            "--ports",
            "20700-20799",
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            &ng_arg,
            "--no-pin",
            "--http",
            "off",
            "--recording-dir",
            &rec_s,
        ],
        &["tern ng", "tern relay"],
    );
    let ports = SippPorts::pick();
    let kam = start_kamailio(
        "kamailio-record.cfg",
        &dir.join("kamailio-run"),
        "127.0.0.1",
        ports.kam,
        ng,
        ports.reg,
    );
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &ports.uas.to_string(),
            "-mp",
            &ports.uas_media.to_string(),
            "-rtp_echo",
            "-m",
            "1",
            "-timeout",
            "60s",
        ],
        &dir,
    );
    register(
        "bob",
        &format!("127.0.0.1:{}", ports.uas),
        &format!("127.0.0.1:{}", ports.kam),
        ports.reg,
        &dir,
    );
    let ok = sipp_run(
        &[
            &format!("127.0.0.1:{}", ports.kam),
            "-sn",
            "uac_pcap",
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            &ports.uac.to_string(),
            "-mp",
            &ports.uac_media.to_string(),
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
        &dir,
        Duration::from_secs(70),
    );
    assert!(ok, "the call through Kamailio failed");
    let _ = uas.wait_for(Duration::from_secs(15));
    // The writer closes a recording within its 100 ms check.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let json = loop {
        let found = std::fs::read_dir(&rec_dir).ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "json"))
        });
        match found {
            Some(p) => break p,
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            None => panic!("no recording JSON in {}", rec_dir.display()),
        }
    };
    drop(kam);
    tern.stop();
    unlink_table(&instance);

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("JSON parses");
    eprintln!("{v}");
    assert!(!v["call_id"].as_str().unwrap_or("").is_empty());
    let n0 = v["legs"][0]["rtp_packets"].as_u64().unwrap_or(0);
    let n1 = v["legs"][1]["rtp_packets"].as_u64().unwrap_or(0);
    assert!(n0 > 100 && n1 > 100, "packets recorded: {n0}, {n1}");
    let pc = std::fs::read(json.with_extension("pcap")).unwrap();
    let recs = tern_dataplane::record::pcap::parse(&pc).expect("pcap parses");
    assert_eq!(
        recs.len() as u64,
        n0 + n1
            + v["legs"][0]["rtcp_packets"].as_u64().unwrap_or(0)
            + v["legs"][1]["rtcp_packets"].as_u64().unwrap_or(0)
    );
    // Each party's audio as the pcap holds it, in arrival order.
    let audio = |port: u16| -> Vec<f64> {
        recs.iter()
            .filter(|r| r.1.port() == port && r.3.len() > 12 && r.3[1] & 0x7f <= 8)
            .flat_map(|r| {
                let pt = r.3[1] & 0x7f;
                r.3[12..].iter().map(move |&c| ulaw_or_alaw(pt, c))
            })
            .collect()
    };
    let (ra, rb) = (audio(ports.uac_media), audio(ports.uas_media));
    assert!(
        !ra.is_empty() && !rb.is_empty(),
        "no audio from a party in the pcap"
    );
    let first = recs.first().map_or(0, |r| r.0);
    let last = recs.last().map_or(0, |r| r.0);
    let wav = std::fs::read(json.with_extension("wav")).unwrap();
    let data = &wav[44..];
    let secs = data.len() as f64 / 4.0 / 8000.0;
    let media = (last - first) as f64 / 1e6 + 0.02;
    eprintln!("WAV {secs:.3} s, recorded media {media:.3} s");
    assert!(
        (secs - media).abs() <= 0.1,
        "WAV {secs:.3} s against {media:.3} s"
    );
    let chan = |c: usize| -> Vec<f64> {
        data.chunks_exact(4)
            .map(|f| f64::from(i16::from_le_bytes([f[2 * c], f[2 * c + 1]])))
            .collect()
    };
    let (left, right) = (chan(0), chan(1));
    // The channel's audio starts at its first packet's arrival: search
    // that lag (the reference begins there).
    let best = |ch: &[f64], r: &[f64]| {
        (0..4000)
            .step_by(1)
            .map(|l| corr_at(r, ch, l))
            .fold(0.0, f64::max)
    };
    let (cl, cr) = (best(&left, &ra), best(&right, &rb));
    eprintln!("correlation: left~caller {cl:.3}, right~callee {cr:.3}");
    assert!(cl >= 0.95, "left against the caller: {cl}");
    assert!(cr >= 0.95, "right against the callee: {cr}");
    let _ = std::fs::remove_dir_all(&dir);
}
