//! Trunks end to end over real UDP with SIPp (Debian `sip-tester`):
//! - failover: a SIPp UAC on a trusted source (`inbound_from`) dials
//!   `9123`; route `9` strips one digit to the trunk, whose first gateway
//!   has nothing listening (its ICMP port unreachable fails the INVITE at
//!   once, RFC 3261 §18.4: with the default T1, Timer B would be 32 s,
//!   past the UAC's 10 s) and whose second is a SIPp UAS that must see
//!   `INVITE sip:123@...` and answers;
//! - registration: SIPp as the trunk's registrar (`sipp/registrar.xml`)
//!   challenges, grants 4 s and gets the refresh;
//! - health: after that Timer B the first gateway is down, the next call
//!   goes straight to the second, and a SIPp answering OPTIONS
//!   (`sipp/options.xml`) at the first brings it back up;
//! - RFC 3263: `dnsmasq` on loopback serves SRV records of two
//!   priorities for `carrier.test`; calls go to priority 10 and, with it
//!   down, to priority 20; and two of one priority, weights 90/10, for
//!   `weighted.test`: of 20 calls the heavy one takes most.
//!
//! Skipped (with a note) when `sipp` (or, for RFC 3263, `dnsmasq`) is
//! missing. Ports: SIP 18500-18549, DNS 18545, relay media 25400-25499
//! and 26600-26699 (the slots of 23 calls: without a dataplane worker a
//! freed slot is not reused).
//! Every process is stopped by PID, every wait bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tern_shared::table::{SlotState, SlotTable, TableParams};
use tern_signaling::snapshot::{SharedSnapshot, SipSnapshot};
use tern_signaling::{run, Server, ShmRelay, SipConfig, SipError, TrunkStatus};

const TERN: &str = "127.0.0.1:18510";
const GW_DOWN: u16 = 18511;
const GW_UP: u16 = 18512;
const UAC: u16 = 18513;

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn tail(path: &Path) -> String {
    let s = read(path);
    let start = s.len().saturating_sub(3000);
    s.get(start..).unwrap_or("").to_string()
}

fn sipp(work: &Path, args: &[&str], name: &str) -> Reaped {
    sipp_m(work, args, name, 1)
}

/// SIPp with `args`, ending after `calls` calls; logs in `work`.
fn sipp_m(work: &Path, args: &[&str], name: &str, calls: u32) -> Reaped {
    let child = Command::new("sipp")
        .current_dir(work)
        .args(args)
        .args(["-i", "127.0.0.1", "-m", &calls.to_string(), "-nostdin"])
        .args(["-trace_err", "-trace_msg"])
        .arg("-error_file")
        .arg(work.join(format!("{name}_err.log")))
        .arg("-message_file")
        .arg(work.join(format!("{name}_msg.log")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp");
    Reaped(child)
}

#[test]
fn sipp_call_through_a_trunk_fails_over_to_the_second_gateway() {
    if Command::new("sipp").arg("-v").output().is_err() {
        eprintln!("sipp not installed (Debian: sip-tester): test skipped");
        return;
    }
    let work = std::env::temp_dir().join(format!("tern-sipp-trunk-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let inst = format!("test-sig-sipp-trunk-{}", std::process::id());
    let table = Arc::new(
        SlotTable::create_or_attach(
            &inst,
            TableParams {
                port_lo: 25400,
                port_hi: 25415,
                workers: 1,
                media_ip: "127.0.0.1".parse().expect("ip"),
            },
        )
        .expect("slot table"),
    );
    let tern: SocketAddr = TERN.parse().expect("addr");
    let toml = format!(
        "[[trunks]]\nname = \"carrier\"\ngateways = [\"127.0.0.1:{GW_DOWN}\", \"127.0.0.1:{GW_UP}\"]\ninbound_from = [\"127.0.0.1/32\"]\n\n[[routes]]\nprefix = \"9\"\nstrip = 1\ntrunk = \"carrier\"\n"
    );
    // The default T1: Timer B (32 s) is past the UAC's timeout, so only
    // the ICMP error can move the call to the second gateway in time.
    let config = SipConfig::from_toml(tern, &toml).expect("config");
    let shutdown = Arc::new(AtomicBool::new(false));
    let server = {
        let (relay, shutdown) = (ShmRelay::new(table.clone()), shutdown.clone());
        thread::spawn(move || run(config, Box::new(relay), shutdown))
    };
    let uas = sipp(
        &work,
        &["-sn", "uas", "-p", &GW_UP.to_string(), "-mp", "25460"],
        "uas",
    );
    thread::sleep(Duration::from_millis(300));
    let mut uac = sipp(
        &work,
        &[
            "-sn",
            "uac",
            "-s",
            "9123",
            "-p",
            &UAC.to_string(),
            "-mp",
            "25470",
            "-timeout",
            "10s",
            "-timeout_error",
            TERN,
        ],
        "uac",
    );
    let status = wait_exit(&mut uac.0, Duration::from_secs(40));
    let active = table.count(SlotState::Active);
    shutdown.store(true, Ordering::Relaxed);
    let served = server.join().expect("server thread");
    drop(uas);
    drop(uac);
    let _ = table.unlink();
    let uas_log = read(&work.join("uas_msg.log"));
    assert!(
        status.is_some_and(|s| s.success()),
        "sipp UAC: {status:?}\nUAC messages:\n{}\nUAC errors:\n{}\nUAS messages:\n{}",
        tail(&work.join("uac_msg.log")),
        tail(&work.join("uac_err.log")),
        tail(&work.join("uas_msg.log")),
    );
    assert!(
        uas_log.contains(&format!("INVITE sip:123@127.0.0.1:{GW_UP} SIP/2.0")),
        "the gateway did not get 123:\n{}",
        tail(&work.join("uas_msg.log"))
    );
    assert!(served.is_ok(), "run(): {served:?}");
    assert_eq!(active, 0, "slot still active after the call");
    let _ = std::fs::remove_dir_all(&work);
}

fn have_sipp() -> bool {
    if Command::new("sipp").arg("-v").output().is_err() {
        eprintln!("sipp not installed (Debian: sip-tester): test skipped");
        return false;
    }
    true
}

/// A tern signaling node served on a thread from `toml` (T1 = 50 ms),
/// with a snapshot to watch; stopped (and its table unlinked) on drop.
struct Node {
    table: Arc<SlotTable>,
    shutdown: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Result<(), SipError>>>,
    snap: SharedSnapshot,
}

impl Node {
    fn start(name: &str, listen: &str, ports: (u16, u16), toml: &str) -> Node {
        let inst = format!("test-sig-sipp-{name}-{}", std::process::id());
        let table = Arc::new(
            SlotTable::create_or_attach(
                &inst,
                TableParams {
                    port_lo: ports.0,
                    port_hi: ports.1,
                    workers: 1,
                    media_ip: "127.0.0.1".parse().expect("ip"),
                },
            )
            .expect("slot table"),
        );
        let mut config = SipConfig::from_toml(listen.parse().expect("addr"), toml).expect("config");
        config.t1 = Duration::from_millis(50);
        let shutdown = Arc::new(AtomicBool::new(false));
        let snap = SipSnapshot::shared();
        let server = Server::bind(config)
            .expect("bind")
            .with_snapshot(snap.clone());
        let thread = {
            let (relay, shutdown) = (ShmRelay::new(table.clone()), shutdown.clone());
            thread::spawn(move || server.serve(Box::new(relay), shutdown))
        };
        Node {
            table,
            shutdown,
            thread: Some(thread),
            snap,
        }
    }

    /// The first trunk as last published.
    fn trunk(&self) -> Option<TrunkStatus> {
        let g = self.snap.lock().unwrap_or_else(|e| e.into_inner());
        g.trunks.first().cloned()
    }

    /// Waits (up to `limit`) until `f` holds for the first trunk.
    fn wait_trunk(&self, limit: Duration, f: impl Fn(&TrunkStatus) -> bool) -> Option<TrunkStatus> {
        self.wait_trunks(limit, |t| t.first().is_some_and(&f))
            .and_then(|t| t.first().cloned())
    }

    /// Waits (up to `limit`) until `f` holds for the trunks.
    fn wait_trunks(
        &self,
        limit: Duration,
        f: impl Fn(&[TrunkStatus]) -> bool,
    ) -> Option<Vec<TrunkStatus>> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            let t = self
                .snap
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .trunks
                .clone();
            if f(&t) {
                return Some(t);
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn stop(&mut self) -> Result<(), SipError> {
        self.shutdown.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(Ok(()), |t| t.join().expect("server thread"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = self.table.unlink();
    }
}

fn gw_up(t: &TrunkStatus, port: u16) -> Option<bool> {
    t.gateways
        .iter()
        .find(|(a, _)| a.port() == port)
        .map(|(_, up)| *up)
}

fn work_dir(name: &str) -> std::path::PathBuf {
    let work = std::env::temp_dir().join(format!("tern-sipp-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let scen = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp");
    for f in ["registrar.xml", "options.xml"] {
        std::fs::copy(scen.join(f), work.join(f)).expect("scenario");
    }
    work
}

/// A SIPp UAC dialling 9123 from `port` through `tern`; its exit status.
fn dial(work: &Path, tern: &str, port: u16, mp: u16, name: &str) -> Option<ExitStatus> {
    dial_n(work, tern, ("9123", 1), port, mp, name)
}

/// A SIPp UAC making `calls` calls to `number`, one at a time.
fn dial_n(
    work: &Path,
    tern: &str,
    (number, calls): (&str, u32),
    port: u16,
    mp: u16,
    name: &str,
) -> Option<ExitStatus> {
    let mut uac = sipp_m(
        work,
        &[
            "-sn",
            "uac",
            "-l",
            "1",
            "-s",
            number,
            "-p",
            &port.to_string(),
            "-mp",
            &mp.to_string(),
            "-timeout",
            "30s",
            "-timeout_error",
            tern,
        ],
        name,
        calls,
    );
    wait_exit(&mut uac.0, Duration::from_secs(40))
}

#[test]
fn sipp_registrar_keeps_the_trunk_registration() {
    if !have_sipp() {
        return;
    }
    const TERN_REG: &str = "127.0.0.1:18520";
    const REGISTRAR: u16 = 18521;
    let work = work_dir("trunk-reg");
    let mut registrar = sipp(
        &work,
        &["-sf", "registrar.xml", "-p", &REGISTRAR.to_string()],
        "registrar",
    );
    thread::sleep(Duration::from_millis(300));
    let toml = format!(
        "[[trunks]]\nname = \"carrier\"\ngateways = [\"127.0.0.1:{REGISTRAR}\"]\nusername = \"tern\"\npassword = \"secret\"\nregister = true\nregister_expires = 120\n"
    );
    let mut node = Node::start("trunk-reg", TERN_REG, (25416, 25419), &toml);
    let first = node.wait_trunk(Duration::from_secs(10), |t| t.registered == Some(true));
    // The registrar ends after it granted the refresh (at half of 4 s).
    let status = wait_exit(&mut registrar.0, Duration::from_secs(15));
    thread::sleep(Duration::from_millis(600));
    let after = node.trunk();
    let served = node.stop();
    let log = read(&work.join("registrar_msg.log"));
    assert!(
        first.is_some(),
        "never registered: {:?}\n{}",
        node.trunk(),
        tail(&work.join("registrar_msg.log"))
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "sipp registrar: {status:?}\nmessages:\n{}\nerrors:\n{}",
        tail(&work.join("registrar_msg.log")),
        tail(&work.join("registrar_err.log")),
    );
    assert!(
        log.contains("Authorization: Digest username=\"tern\""),
        "{log}"
    );
    assert!(
        log.matches("REGISTER sip:127.0.0.1:18521 SIP/2.0").count() >= 3,
        "challenge, answer, refresh:\n{log}"
    );
    let after = after.expect("trunk status");
    assert_eq!(
        (after.registered, after.register_failures),
        (Some(true), 0),
        "refreshed registration holds"
    );
    assert!(served.is_ok(), "serve(): {served:?}");
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn gateway_that_stays_down_is_skipped_then_probed_back_up() {
    if !have_sipp() {
        return;
    }
    const TERN_H: &str = "127.0.0.1:18530";
    const GW_A: u16 = 18531;
    const GW_B: u16 = 18532;
    const UAC_H: u16 = 18533;
    let work = work_dir("trunk-health");
    let toml = format!(
        "[[trunks]]\nname = \"carrier\"\ngateways = [\"127.0.0.1:{GW_A}\", \"127.0.0.1:{GW_B}\"]\nprobe_secs = 6\ninbound_from = [\"127.0.0.1/32\"]\n\n[[routes]]\nprefix = \"9\"\nstrip = 1\ntrunk = \"carrier\"\n"
    );
    let mut node = Node::start("trunk-health", TERN_H, (25420, 25427), &toml);
    let uas_b = sipp_m(
        &work,
        &["-sn", "uas", "-p", &GW_B.to_string(), "-mp", "25476"],
        "gw_b",
        2,
    );
    thread::sleep(Duration::from_millis(300));
    // Call 1: Timer B at A (nothing listening), then B answers.
    let first = dial(&work, TERN_H, UAC_H, 25480, "uac1");
    let down = node.wait_trunk(Duration::from_secs(3), |t| gw_up(t, GW_A) == Some(false));
    // Call 2 goes straight to B: well within Timer B (3.2 s).
    let t0 = Instant::now();
    let second = dial(&work, TERN_H, UAC_H, 25480, "uac2");
    let took = t0.elapsed();
    // A comes back, answering OPTIONS only: the probe (6 s after the
    // down-marking) brings it up.
    let mut gw_a = sipp(
        &work,
        &[
            "-sf",
            "options.xml",
            "-p",
            &GW_A.to_string(),
            "-mp",
            "25484",
        ],
        "gw_a",
    );
    let a_status = wait_exit(&mut gw_a.0, Duration::from_secs(15));
    let back = node.wait_trunk(Duration::from_secs(3), |t| gw_up(t, GW_A) == Some(true));
    let active = node.table.count(SlotState::Active);
    let served = node.stop();
    drop(uas_b);
    let b_log = read(&work.join("gw_b_msg.log"));
    let a_log = read(&work.join("gw_a_msg.log"));
    assert!(
        first.is_some_and(|s| s.success()) && second.is_some_and(|s| s.success()),
        "calls: {first:?} {second:?}\n{}\n{}",
        tail(&work.join("uac1_msg.log")),
        tail(&work.join("uac2_msg.log"))
    );
    assert!(down.is_some(), "A never marked down: {:?}", node.trunk());
    assert!(
        took < Duration::from_millis(2500),
        "second call took {took:?}: it waited for A"
    );
    assert_eq!(
        b_log
            .matches(&format!("INVITE sip:123@127.0.0.1:{GW_B} SIP/2.0"))
            .count(),
        2,
        "{}",
        tail(&work.join("gw_b_msg.log"))
    );
    assert!(
        a_status.is_some_and(|s| s.success()),
        "gateway A (OPTIONS): {a_status:?}\n{a_log}\n{}",
        tail(&work.join("gw_a_err.log"))
    );
    assert!(!a_log.contains("INVITE sip:"), "A got an INVITE:\n{a_log}");
    assert!(a_log.contains("OPTIONS sip:"), "{a_log}");
    assert!(back.is_some(), "A never up again: {:?}", node.trunk());
    assert_eq!(active, 0, "slot still active after the calls");
    assert!(served.is_ok(), "serve(): {served:?}");
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn rfc3263_srv_priorities_are_followed_with_dnsmasq() {
    if !have_sipp() {
        return;
    }
    // Not always on a non-root PATH.
    let Some(dnsmasq) = ["dnsmasq", "/usr/sbin/dnsmasq"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
    else {
        eprintln!("dnsmasq not installed (Debian: dnsmasq-base): test skipped");
        return;
    };
    const TERN_D: &str = "127.0.0.1:18540";
    const GW1: u16 = 18541;
    const GW2: u16 = 18542;
    const UAC_D: u16 = 18543;
    const DNS: u16 = 18545;
    const GW3: u16 = 18546;
    const GW4: u16 = 18547;
    const WEIGHTED_CALLS: u32 = 20;
    let work = work_dir("trunk-dns");
    let dns = Command::new(dnsmasq)
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--pid-file=",
            &format!("--port={DNS}"),
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--local-ttl=60",
            &format!("--srv-host=_sip._udp.carrier.test,gw2.carrier.test,{GW2},20,50"),
            &format!("--srv-host=_sip._udp.carrier.test,gw1.carrier.test,{GW1},10,50"),
            "--host-record=gw1.carrier.test,127.0.0.1",
            "--host-record=gw2.carrier.test,127.0.0.1",
            // One priority, weights 90/10.
            &format!("--srv-host=_sip._udp.weighted.test,gw4.carrier.test,{GW4},10,10"),
            &format!("--srv-host=_sip._udp.weighted.test,gw3.carrier.test,{GW3},10,90"),
            "--host-record=gw3.carrier.test,127.0.0.1",
            "--host-record=gw4.carrier.test,127.0.0.1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dnsmasq");
    let _dns = Reaped(dns);
    thread::sleep(Duration::from_millis(300));
    let toml = format!(
        "[sip]\ndns = \"127.0.0.1:{DNS}\"\n\n[[trunks]]\nname = \"carrier\"\ngateways = [\"carrier.test\"]\ninbound_from = [\"127.0.0.1/32\"]\n\n[[routes]]\nprefix = \"9\"\nstrip = 1\ntrunk = \"carrier\"\n\n[[trunks]]\nname = \"weighted\"\ngateways = [\"weighted.test\"]\ninbound_from = [\"127.0.0.1/32\"]\n\n[[routes]]\nprefix = \"8\"\nstrip = 1\ntrunk = \"weighted\"\n"
    );
    let mut node = Node::start("trunk-dns", TERN_D, (26600, 26699), &toml);
    let both = node.wait_trunks(Duration::from_secs(10), |t| {
        t.len() == 2 && t.iter().all(|t| t.gateways.len() == 2)
    });
    let resolved = both.as_ref().map(|t| t[0].clone());
    // Call 1: priority 10 (gw1) answers.
    let gw1 = sipp(
        &work,
        &["-sn", "uas", "-p", &GW1.to_string(), "-mp", "25488"],
        "gw1",
    );
    let gw2 = sipp(
        &work,
        &["-sn", "uas", "-p", &GW2.to_string(), "-mp", "25492"],
        "gw2",
    );
    thread::sleep(Duration::from_millis(300));
    let first = dial(&work, TERN_D, UAC_D, 25496, "uac1");
    drop(gw1);
    // Call 2: gw1 is gone (Timer B), priority 20 (gw2) answers.
    let second = dial(&work, TERN_D, UAC_D, 25496, "uac2");
    // Weights 90/10 within one priority: the first attempt of each call
    // follows them (both answer).
    let gw3 = sipp_m(
        &work,
        &["-sn", "uas", "-p", &GW3.to_string(), "-mp", "25444"],
        "gw3",
        WEIGHTED_CALLS,
    );
    let gw4 = sipp_m(
        &work,
        &["-sn", "uas", "-p", &GW4.to_string(), "-mp", "25448"],
        "gw4",
        WEIGHTED_CALLS,
    );
    thread::sleep(Duration::from_millis(300));
    let weighted = dial_n(
        &work,
        TERN_D,
        ("8123", WEIGHTED_CALLS),
        UAC_D,
        25496,
        "uac3",
    );
    drop((gw3, gw4));
    let active = node.table.count(SlotState::Active);
    let served = node.stop();
    drop(gw2);
    let log1 = read(&work.join("gw1_msg.log"));
    let log2 = read(&work.join("gw2_msg.log"));
    let resolved = resolved.unwrap_or_else(|| panic!("not resolved: {:?}", node.trunk()));
    let ports: Vec<u16> = resolved.gateways.iter().map(|(a, _)| a.port()).collect();
    assert_eq!(ports, [GW1, GW2]);
    assert!(
        first.is_some_and(|s| s.success()) && second.is_some_and(|s| s.success()),
        "calls: {first:?} {second:?}\n{}\n{}",
        tail(&work.join("uac1_msg.log")),
        tail(&work.join("uac2_msg.log"))
    );
    let inv = |p: u16| format!("INVITE sip:123@127.0.0.1:{p} SIP/2.0");
    assert_eq!(log1.matches(&inv(GW1)).count(), 1, "{log1}");
    // gw2 got only the second call (its first INVITE after gw1's).
    assert_eq!(log2.matches(&inv(GW2)).count(), 1, "{log2}");
    assert!(
        weighted.is_some_and(|s| s.success()),
        "weighted calls: {weighted:?}\n{}",
        tail(&work.join("uac3_msg.log"))
    );
    let heavy = read(&work.join("gw3_msg.log")).matches(&inv(GW3)).count();
    let light = read(&work.join("gw4_msg.log")).matches(&inv(GW4)).count();
    eprintln!("weighted.test: weight 90 got {heavy} calls, weight 10 got {light}");
    assert_eq!(heavy + light, WEIGHTED_CALLS as usize);
    // Binomial(20, 0.9): fewer than 13 happens about once in 2,500 runs.
    assert!(heavy >= 13, "weight 90 got {heavy}, weight 10 got {light}");
    assert_eq!(active, 0);
    assert!(served.is_ok(), "serve(): {served:?}");
    let _ = std::fs::remove_dir_all(&work);
}
