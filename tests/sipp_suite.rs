//! The SIPp scenario suite of issue 5: each test starts its own `tern up`
//! and SIPp agents on loopback and checks the outcome both in SIPp's exit
//! status and in the relay's slot table (media counters, slot freed).
//!
//! Ports (so that these tests run beside the others): SIP 15600-15699,
//! SIPp agents 15700-15799, SIPp media 16550-16999, relay 28000-29999,
//! ng 22351-22359 (later tests run without ng). Scenarios live in
//! `tests/sipp/`.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_shared::table::{Direction, LegStats, SlotState, SlotTable};

/// One `tern up` with its instance name; stopped by PID and its slot table
/// removed on drop.
struct Tern {
    proc_: Option<Proc>,
    instance: String,
    sip: String,
}

impl Drop for Tern {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc_.take() {
            p.stop();
        }
        unlink_table(&self.instance);
    }
}

/// Starts `tern up` on SIP port `sip`, relay ports `ports` (LO-HI), ng
/// port `ng` (`None`: no ng socket), with an optional `--config` file.
fn start_tern(
    name: &str,
    sip: u16,
    ports: &str,
    ng: impl Into<Option<u16>>,
    config: Option<&Path>,
) -> Tern {
    let instance = format!("t-h6-{name}-{}", std::process::id());
    let sip_addr = format!("127.0.0.1:{sip}");
    let ng_addr = ng
        .into()
        .map_or_else(|| "off".to_string(), |p| format!("127.0.0.1:{p}"));
    let mut args: Vec<String> = [
        "up",
        "--sip",
        &sip_addr,
        "--ports",
        ports,
        "--workers",
        "1",
        "--instance",
        &instance,
        "--ng",
        &ng_addr,
        // No HTTP API: its default port is shared by every test.
        "--http",
        "off",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(c) = config {
        args.push("--config".into());
        args.push(c.display().to_string());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (p, _) = spawn_tern(&argv, &["tern sip: listening"]);
    Tern {
        proc_: Some(p),
        instance,
        sip: sip_addr,
    }
}

fn sc(name: &str) -> String {
    scenario(name).display().to_string()
}

/// One reading of an active slot.
#[derive(Debug, Clone)]
struct Sample {
    /// ms since the sampler started.
    ms: u64,
    tag: u64,
    dirs: [Direction; 2],
    legs: [LegStats; 2],
}

/// Reads every active slot of an instance every 20 ms in a thread.
struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(instance: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let instance = instance.to_string();
        let handle = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut table = None;
                // Bounded: at most 5 minutes of 20 ms polls.
                for _ in 0..15_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if table.is_none() {
                        table = SlotTable::open(&instance).ok();
                    }
                    if let Some(t) = &table {
                        for id in 0..t.capacity() {
                            if t.state(id) != SlotState::Active {
                                continue;
                            }
                            let (Ok((cfg, _)), Ok(a), Ok(b)) =
                                (t.read_config(id), t.stats(id, 0), t.stats(id, 1))
                            else {
                                continue;
                            };
                            samples.lock().unwrap().push(Sample {
                                ms: t0.elapsed().as_millis() as u64,

                                tag: cfg.tag,
                                dirs: [cfg.legs[0].direction, cfg.legs[1].direction],
                                legs: [a, b],
                            });
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Sampler {
            stop,
            samples,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.samples.lock().unwrap().clone()
    }
}

/// Starts a SIPp callee `scenario` (a built-in name or a file of
/// tests/sipp) on `port`, media on `mport`, echoing RTP, and registers it
/// as bob from `reg_port`.
fn callee(t: &Tern, dir: &Path, scenario_: &str, port: u16, mport: u16, reg_port: u16) -> Proc {
    let (port_s, mport_s) = (port.to_string(), mport.to_string());
    let sf = if scenario_.ends_with(".xml") {
        vec!["-sf".to_string(), sc(scenario_)]
    } else {
        vec!["-sn".to_string(), scenario_.to_string()]
    };
    let mut args: Vec<&str> = sf.iter().map(String::as_str).collect();
    args.extend([
        "-i",
        "127.0.0.1",
        "-p",
        &port_s,
        "-mp",
        &mport_s,
        "-rtp_echo",
        "-m",
        "1",
        "-timeout",
        "60s",
    ]);
    let p = sipp(&args, dir);
    register("bob", &format!("127.0.0.1:{port}"), &t.sip, reg_port, dir);
    p
}

/// Runs a SIPp caller of scenario file `scenario_` calling bob, one call.
fn caller(t: &Tern, dir: &Path, scenario_: &str, port: u16, mport: u16) -> bool {
    let (port_s, mport_s) = (port.to_string(), mport.to_string());
    let file = sc(scenario_);
    let (flag, name) = if scenario_.ends_with(".xml") {
        ("-sf", file.as_str())
    } else {
        ("-sn", scenario_)
    };
    sipp_run(
        &[
            &t.sip,
            flag,
            name,
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            &port_s,
            "-mp",
            &mport_s,
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
        dir,
        Duration::from_secs(70),
    )
}

fn users_toml(dir: &Path) -> PathBuf {
    let p = dir.join("users.toml");
    std::fs::write(
        &p,
        "[[users]]\nname = \"alice\"\npassword = \"wonderland\"\n\n[[users]]\nname = \"bob\"\npassword = \"builder\"\n",
    )
    .unwrap();
    p
}

fn register_with(t: &Tern, dir: &Path, file: &str, user: &str, pass: &str, port: u16) -> bool {
    let port_s = port.to_string();
    let f = sc(file);
    sipp_run(
        &[
            &t.sip,
            "-sf",
            &f,
            "-s",
            user,
            "-au",
            user,
            "-ap",
            pass,
            "-i",
            "127.0.0.1",
            "-p",
            &port_s,
            "-m",
            "1",
            "-timeout",
            "15s",
            "-timeout_error",
        ],
        dir,
        Duration::from_secs(20),
    )
}

#[test]
fn register_with_401_challenge_and_md5() {
    let dir = sipp_workdir("h5-reg");
    let cfg = users_toml(&dir);
    let t = start_tern("reg", 15601, "28000-28099", 22351, Some(&cfg));
    assert!(
        register_with(&t, &dir, "register_auth.xml", "bob", "builder", 15701),
        "REGISTER with MD5 digest after a 401 failed"
    );
    // The same scenario with a user tern does not know is never let in.
    assert!(!register_with(
        &t,
        &dir,
        "register_auth.xml",
        "mallory",
        "builder",
        15701
    ));
}

#[test]
fn register_with_wrong_password_is_refused() {
    let dir = sipp_workdir("h5-regbad");
    let cfg = users_toml(&dir);
    let t = start_tern("regbad", 15602, "28100-28199", 22352, Some(&cfg));
    assert!(
        register_with(&t, &dir, "register_bad_password.xml", "bob", "wrong", 15702),
        "a wrong password must get 403 or 401 again"
    );
    // The scenario itself fails when the password is right (200): it can fail.
    assert!(!register_with(
        &t,
        &dir,
        "register_bad_password.xml",
        "bob",
        "builder",
        15702
    ));
}

#[test]
fn call_with_media_both_ways() {
    let dir = sipp_workdir("h5-media");
    let t = start_tern("media", 15603, "28200-28299", 22353, None);
    let mut uas = callee(&t, &dir, "uas", 15711, 16550, 15712);
    let sampler = Sampler::start(&t.instance);
    let ok = caller(&t, &dir, "uac_pcap", 15713, 16560);
    let samples = sampler.finish();
    assert!(ok, "the call failed");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true)
    );
    let last = samples.last().expect("no active slot seen");
    // g711a.pcap is 236 packets; the callee echoes them back.
    let [a, b] = last.legs;
    assert!(a.rx_packets > 100, "caller → relay: {a:?}");
    assert!(b.tx_packets > 100, "relay → callee: {b:?}");
    assert!(b.rx_packets > 100, "callee echo → relay: {b:?}");
    assert!(a.tx_packets > 100, "relay → caller: {a:?}");
    assert!(wait_all_free(&t.instance, Duration::from_secs(10)));
}

#[test]
fn cancel_before_answer_frees_the_slot() {
    let dir = sipp_workdir("h5-cancel");
    let t = start_tern("cancel", 15604, "28300-28399", 22354, None);
    let mut uas = callee(&t, &dir, "cancel_uas.xml", 15721, 16570, 15722);
    let sampler = Sampler::start(&t.instance);
    let ok = caller(&t, &dir, "cancel_uac.xml", 15723, 16580);
    let samples = sampler.finish();
    assert!(ok, "caller: 200 to CANCEL and 487 expected");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "callee: CANCEL expected"
    );
    assert!(!samples.is_empty(), "the slot was never active");
    assert!(
        wait_all_free(&t.instance, Duration::from_secs(10)),
        "slot not freed after CANCEL"
    );
}

#[test]
fn callee_busy_is_passed_back_and_slot_freed() {
    let dir = sipp_workdir("h5-busy");
    let t = start_tern("busy", 15607, "28600-28699", 22357, None);
    let mut uas = callee(&t, &dir, "busy_uas.xml", 15751, 16640, 15752);
    let sampler = Sampler::start(&t.instance);
    let ok = caller(&t, &dir, "busy_uac.xml", 15753, 16650);
    sampler.finish();
    assert!(ok, "caller: 486 expected");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true)
    );
    assert!(wait_all_free(&t.instance, Duration::from_secs(10)));
}

/// `v` without its first 100 ms: packets already in flight when the
/// slot's directions changed.
fn settle<'a>(v: &[&'a Sample]) -> Vec<&'a Sample> {
    let Some(t0) = v.first().map(|x| x.ms) else {
        return Vec::new();
    };
    v.iter().filter(|x| x.ms >= t0 + 100).copied().collect()
}

/// tx packets of `leg` grown between the first and last of `s`.
fn tx_growth(s: &[&Sample], leg: usize) -> u64 {
    match (s.first(), s.last()) {
        (Some(a), Some(b)) => b.legs[leg].tx_packets - a.legs[leg].tx_packets,
        _ => 0,
    }
}

/// Checks that the caller's hold (sendonly) stopped the media toward the
/// caller through the slot and that the resume started it again, from
/// the slot's samples split by its programmed directions.
fn assert_hold_then_resume(samples: &[Sample]) {
    let tag = samples.first().expect("no active slot").tag;
    let s: Vec<&Sample> = samples.iter().filter(|x| x.tag == tag).collect();
    // Phases by the slot's programmed directions: the caller's sendonly
    // makes leg 0 recvonly (nothing to the caller) and leg 1 sendonly.
    let hold_at = s
        .iter()
        .position(|x| x.dirs == [Direction::RecvOnly, Direction::SendOnly])
        .expect("hold never programmed");
    let resume_at = hold_at
        + s[hold_at..]
            .iter()
            .position(|x| x.dirs == [Direction::SendRecv, Direction::SendRecv])
            .expect("resume never programmed");
    let before = &s[..hold_at];
    let hold = settle(&s[hold_at..resume_at]);
    let after = settle(&s[resume_at..]);
    eprintln!(
        "before hold: to caller +{}, to callee +{}; on hold ({} ms): +{}, +{}; after resume ({} ms): +{}, +{}",
        tx_growth(before, 0),
        tx_growth(before, 1),
        hold.last().map_or(0, |x| x.ms) - hold.first().map_or(0, |x| x.ms),
        tx_growth(&hold, 0),
        tx_growth(&hold, 1),
        after.last().map_or(0, |x| x.ms) - after.first().map_or(0, |x| x.ms),
        tx_growth(&after, 0),
        tx_growth(&after, 1),
    );
    assert!(tx_growth(before, 0) > 10, "media to the caller before hold");
    assert!(hold.len() > 20, "hold lasted {} samples", hold.len());
    assert_eq!(tx_growth(&hold, 0), 0, "media reached the caller on hold");
    assert!(
        tx_growth(&hold, 1) > 20,
        "the caller's media stopped on hold"
    );
    let held = hold.last().unwrap();
    assert!(
        held.legs[1].rx_packets > 0,
        "the callee's echo arrived at leg 1"
    );
    assert!(
        tx_growth(&after, 0) > 20,
        "media to the caller did not resume"
    );
}

#[test]
fn hold_and_resume_by_reinvite_stops_and_restarts_media() {
    let dir = sipp_workdir("h5-hold");
    let t = start_tern("hold", 15605, "28400-28499", 22355, None);
    let mut uas = callee(&t, &dir, "hold_uas.xml", 15731, 16600, 15732);
    let sampler = Sampler::start(&t.instance);
    let ok = caller(&t, &dir, "hold_uac.xml", 15733, 16610);
    let samples = sampler.finish();
    assert!(ok, "caller: hold/resume call failed");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true)
    );
    assert_hold_then_resume(&samples);
    assert!(wait_all_free(&t.instance, Duration::from_secs(10)));
}

#[test]
fn hold_and_resume_by_update_stops_and_restarts_media() {
    let dir = sipp_workdir("h5-holdupd");
    let t = start_tern("holdupd", 15610, "29000-29099", None, None);
    let mut uas = callee(&t, &dir, "hold_uas.xml", 15781, 16720, 15782);
    let sampler = Sampler::start(&t.instance);
    let ok = caller(&t, &dir, "hold_update_uac.xml", 15783, 16730);
    let samples = sampler.finish();
    assert!(ok, "caller: hold/resume by UPDATE failed");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true)
    );
    assert_hold_then_resume(&samples);
    assert!(wait_all_free(&t.instance, Duration::from_secs(10)));
}

/// A callee that rings and never answers: at `[sip] timer_c` tern
/// CANCELs it (the callee scenario requires the CANCEL) and gives the
/// caller 408 (RFC 3261 §16.6 step 11 / §16.8).
#[test]
fn ringing_without_answer_gets_cancel_and_408() {
    let dir = sipp_workdir("h5-noans");
    let cfg = dir.join("timer_c.toml");
    std::fs::write(&cfg, "[sip]\ntimer_c = 2\n").unwrap();
    let t = start_tern("noans", 15611, "29100-29199", None, Some(&cfg));
    let mut uas = callee(&t, &dir, "cancel_uas.xml", 15785, 16740, 15786);
    let t0 = Instant::now();
    let ok = caller(&t, &dir, "noanswer_uac.xml", 15787, 16750);
    assert!(ok, "caller: 180 then 408 expected");
    assert!(t0.elapsed() >= Duration::from_secs(2), "408 before timer C");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "callee: CANCEL expected"
    );
    assert!(wait_all_free(&t.instance, Duration::from_secs(10)));
}

#[test]
fn options_answered_and_max_forwards_zero_refused() {
    let t = start_tern("mf", 15612, "29200-29299", None, None);
    let req = |method: &str, mf: u32| {
        format!(
            "{method} sip:bob@127.0.0.1:15612 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:15790;rport;branch=z9hG4bK-{method}-{mf}\r\n\
             From: <sip:alice@127.0.0.1>;tag=a{mf}\r\n\
             To: <sip:bob@127.0.0.1>\r\n\
             Call-ID: h5-{method}-{mf}@127.0.0.1\r\n\
             CSeq: 1 {method}\r\n\
             Max-Forwards: {mf}\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    assert_eq!(
        sip_exchange(req("OPTIONS", 70).as_bytes(), &t.sip),
        Some(200)
    );
    assert_eq!(sip_exchange(req("INVITE", 0).as_bytes(), &t.sip), Some(483));
    // Nothing was anchored for the refused INVITE.
    let table = SlotTable::open(&t.instance).unwrap();
    assert_eq!(table.count(SlotState::Free), table.capacity());
}

#[test]
fn early_media_flows_before_the_answer() {
    let dir = sipp_workdir("h5-early");
    let t = start_tern("early", 15606, "28500-28599", 22356, None);
    let mut uas = callee(&t, &dir, "early_media_uas.xml", 15741, 16620, 15742);
    let sampler = Sampler::start(&t.instance);
    let ok = caller(&t, &dir, "early_media_uac.xml", 15743, 16630);
    let samples = sampler.finish();
    assert!(ok, "caller: 183 then 200 expected");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true)
    );
    let first = samples.first().expect("no active slot");
    // The callee answers 3 s after its 183, and the slot was active before
    // the 183: whatever was counted in the first 2.5 s came before the 200.
    let early: Vec<&Sample> = samples
        .iter()
        .filter(|x| x.tag == first.tag && x.ms <= first.ms + 2500)
        .collect();
    let last = early.last().unwrap();
    assert!(
        last.legs[1].rx_packets > 20,
        "early media from the callee: {:?}",
        last.legs[1]
    );
    assert!(
        last.legs[0].tx_packets > 20,
        "early media to the caller: {:?}",
        last.legs[0]
    );
    assert!(wait_all_free(&t.instance, Duration::from_secs(10)));
}

/// REGISTER and calls over TCP (RFC 3261 §18) on the same port as UDP.
#[test]
fn calls_over_tcp() {
    let dir = sipp_workdir("h5-tcp");
    let t = start_tern("tcp", 15608, "28700-28799", 22358, None);
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-t",
            "t1",
            "-i",
            "127.0.0.1",
            "-p",
            "15761",
            "-timeout",
            "60s",
        ],
        &dir,
    );
    let reg = sc("register.xml");
    assert!(
        sipp_run(
            &[
                &t.sip,
                "-sf",
                &reg,
                "-s",
                "bob",
                "-key",
                "contact",
                "127.0.0.1:15761;transport=tcp",
                "-t",
                "t1",
                "-i",
                "127.0.0.1",
                "-p",
                "15762",
                "-m",
                "1",
                "-timeout",
                "15s",
                "-timeout_error",
            ],
            &dir,
            Duration::from_secs(20),
        ),
        "REGISTER over TCP failed"
    );
    let sampler = Sampler::start(&t.instance);
    let ok = sipp_run(
        &[
            &t.sip,
            "-sn",
            "uac",
            "-s",
            "bob",
            "-t",
            "t1",
            "-i",
            "127.0.0.1",
            "-p",
            "15763",
            "-d",
            "300",
            "-m",
            "5",
            "-r",
            "5",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
        &dir,
        Duration::from_secs(70),
    );
    let samples = sampler.finish();
    assert!(ok, "calls over TCP failed");
    uas.stop();
    // Each call holds its slot for the 300 ms pause: all five were seen.
    let mut tags: Vec<u64> = samples.iter().map(|x| x.tag).collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags.len(), 5, "calls seen anchored on a slot");
    assert!(wait_all_free(&t.instance, Duration::from_secs(10)));
}

/// SIPp `-lost 10` on the caller: 10% of what it sends and receives is
/// dropped, so tern must absorb retransmitted INVITEs and BYEs and
/// retransmit its 2xx until the ACK. The callee runs lossless because the
/// built-in `uas` aborts a call on a retransmitted INVITE once it has sent
/// its 200 (a SIPp limit, not a protocol one).
#[test]
fn hundred_calls_complete_with_ten_percent_loss() {
    let dir = sipp_workdir("h5-lost");
    let t = start_tern("lost", 15609, "28800-28999", 22359, None);
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            "15771",
            "-timeout",
            "150s",
        ],
        &dir,
    );
    register("bob", "127.0.0.1:15771", &t.sip, 15772, &dir);
    let ok = sipp_run(
        &[
            &t.sip,
            "-sn",
            "uac",
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            "15773",
            "-lost",
            "10",
            "-trace_screen",
            "-m",
            "100",
            "-r",
            "10",
            "-l",
            "40",
            "-timeout",
            "150s",
            "-timeout_error",
        ],
        &dir,
        Duration::from_secs(160),
    );
    uas.stop();
    assert!(ok, "not every call completed under 10% loss");
    // The loss was real: SIPp had to retransmit INVITEs (the odds of no
    // INVITE lost in 100 at 10% are 3e-5).
    let screen = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("_screen.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .unwrap_or_default();
    let retrans: Option<u64> = screen
        .lines()
        .find(|l| l.contains("INVITE ---"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok());
    assert!(
        retrans.is_some_and(|n| n > 0),
        "INVITE retransmissions: {retrans:?}"
    );
    assert!(wait_all_free(&t.instance, Duration::from_secs(40)));
}
