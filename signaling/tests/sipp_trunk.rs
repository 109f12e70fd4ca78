//! Trunks end to end over real UDP with SIPp (Debian `sip-tester`): a
//! SIPp UAC on a trusted source (`inbound_from`) dials `9123`; route `9`
//! strips one digit to the trunk, whose first gateway has nothing
//! listening (Timer B, shortened by a small T1) and whose second is a
//! SIPp UAS that must see `INVITE sip:123@...` and answers. Skipped (with
//! a note) when `sipp` is missing. Ports: SIP 18500-18549, relay media
//! 25400-25499. Every process is stopped by PID, every wait bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tern_shared::table::{SlotState, SlotTable, TableParams};
use tern_signaling::{run, ShmRelay, SipConfig};

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
    let child = Command::new("sipp")
        .current_dir(work)
        .args(args)
        .args(["-i", "127.0.0.1", "-m", "1", "-nostdin"])
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
                port_hi: 25447,
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
    let mut config = SipConfig::from_toml(tern, &toml).expect("config");
    // Timer B = 64·T1 = 3.2 s for the gateway that never answers.
    config.t1 = Duration::from_millis(50);
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
            "30s",
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
