//! Harness for the end-to-end tests: real `tern` processes, real SIPp
//! agents and tshark on loopback. Every process started here is stopped by
//! PID when its guard drops; every wait is bounded in time.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tern_shared::table::{LegStats, SlotConfig, SlotState, SlotTable};

pub mod audio;
pub mod baresip;
pub mod browser;
pub mod ng;
pub mod rtpengine;
pub mod sipclient;

/// A child process killed (SIGTERM, then SIGKILL) by PID on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM, then SIGKILL after 5 s; returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Some(st);
        }
        self.signal(libc::SIGTERM);
        if let Some(st) = self.wait_for(Duration::from_secs(5)) {
            return Some(st);
        }
        self.signal(libc::SIGKILL);
        self.wait_for(Duration::from_secs(5))
    }

    /// SIGKILL and reap.
    pub fn kill_hard(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.wait_for(Duration::from_secs(5));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `tern` binary under test.
pub fn tern_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tern"))
}

/// Starts a SIP node with one worker and nothing else listening: `tern
/// up --sip SIP --ports PORTS --workers 1 --instance INSTANCE --ng off
/// --http off EXTRA...`, and waits until signaling listens.
pub fn spawn_sip_node(sip: &str, ports: &str, instance: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "up",
        "--sip",
        sip,
        "--ports",
        ports,
        "--workers",
        "1",
        "--instance",
        instance,
        "--ng",
        "off",
        "--http",
        "off",
    ];
    args.extend_from_slice(extra);
    spawn_tern(&args, &["tern sip: listening"]).0
}

/// Starts `tern ARGS` and waits (bounded) until it printed a line containing
/// every string of `ready` on stdout. Stdout lines are kept in `lines`.
pub fn spawn_tern(args: &[&str], ready: &[&str]) -> (Proc, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(tern_bin())
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tern");
    let out = child.stdout.take().expect("stdout");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                eprintln!("[tern] {line}");
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
    }
    let mut proc_ = Proc {
        name: format!("tern {}", args.join(" ")),
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = vec![false; ready.len()];
    while seen.iter().any(|s| !s) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                for (i, r) in ready.iter().enumerate() {
                    if line.contains(r) {
                        seen[i] = true;
                    }
                }
            }
            Err(_) => {
                let st = proc_.stop();
                panic!("tern {args:?} not ready (waiting for {ready:?}); exit {st:?}");
            }
        }
    }
    (proc_, lines)
}

/// A scratch directory holding `pcap -> /usr/share/sip-tester`, because
/// SIPp's built-in `uac_pcap` plays `pcap/g711a.pcap` relative to its cwd.
pub fn sipp_workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::os::unix::fs::symlink("/usr/share/sip-tester", dir.join("pcap")).expect("symlink");
    dir
}

/// The repository's SIPp scenarios.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// Starts sipp with `args` in `cwd`.
pub fn sipp(args: &[&str], cwd: &Path) -> Proc {
    let child = Command::new("sipp")
        .args(args)
        .args(["-nostdin", "-trace_err"])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sipp (install sip-tester)");
    Proc {
        name: format!("sipp {}", args.join(" ")),
        child,
    }
}

/// Runs sipp to completion (bounded by `limit`) and returns whether it
/// exited 0 (every call succeeded).
pub fn sipp_run(args: &[&str], cwd: &Path, limit: Duration) -> bool {
    let mut p = sipp(args, cwd);
    match p.wait_for(limit) {
        Some(st) => {
            if !st.success() {
                dump_sipp_errors(cwd);
            }
            st.success()
        }
        None => {
            dump_sipp_errors(cwd);
            panic!("{} ran past {limit:?}", p.name)
        }
    }
}

/// Starts SIPp's built-in `uas` with `-rtp_echo` on 127.0.0.1:`port`
/// (media on `media_port`) for `calls` calls, with a 60 s timeout.
pub fn uas_echo(port: u16, media_port: u16, calls: u32, cwd: &Path) -> Proc {
    let (port, media_port, calls) = (port.to_string(), media_port.to_string(), calls.to_string());
    sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-mp",
            &media_port,
            "-rtp_echo",
            "-m",
            &calls,
            "-timeout",
            "60s",
        ],
        cwd,
    )
}

/// Calls `user` through the SIP server at `server` with SIPp's built-in
/// `uac_pcap` (G.711 from `g711a.pcap`), from 127.0.0.1:`port` with media
/// on `media_port`: one call, bounded at 70 s. Returns whether it
/// succeeded.
pub fn uac_pcap_call(server: &str, user: &str, port: u16, media_port: u16, cwd: &Path) -> bool {
    let (port, media_port) = (port.to_string(), media_port.to_string());
    sipp_run(
        &[
            server,
            "-sn",
            "uac_pcap",
            "-s",
            user,
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-mp",
            &media_port,
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
        cwd,
        Duration::from_secs(70),
    )
}

/// Prints SIPp's error logs from `cwd`, for diagnosis.
pub fn dump_sipp_errors(cwd: &Path) {
    if let Ok(rd) = std::fs::read_dir(cwd) {
        for e in rd.flatten() {
            let p = e.path();
            if p.to_string_lossy().ends_with("_errors.log") {
                eprintln!(
                    "---- {}\n{}",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap_or_default()
                );
            }
        }
    }
}

/// Registers `user` with contact `contact` (HOST:PORT) at `registrar`.
pub fn register(user: &str, contact: &str, registrar: &str, local_port: u16, cwd: &Path) {
    let sc = scenario("register.xml");
    let port = local_port.to_string();
    let ok = sipp_run(
        &[
            registrar,
            "-sf",
            sc.to_str().unwrap(),
            "-s",
            user,
            "-key",
            "contact",
            contact,
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-m",
            "1",
            "-timeout",
            "15s",
            "-timeout_error",
        ],
        cwd,
        Duration::from_secs(20),
    );
    assert!(ok, "REGISTER of {user} failed");
}

/// What a watcher saw of one slot during a call: the last configuration and
/// counters read while it was active.
#[derive(Debug, Clone, Default)]
pub struct SlotSeen {
    pub id: u32,
    pub cfg: SlotConfig,
    pub legs: [LegStats; 2],
    /// Samples of (ms since the watch started, leg 0 rx, leg 1 rx).
    pub samples: Vec<(u64, u64, u64)>,
}

/// Polls the slot table of `instance` every 20 ms in a thread, keeping what
/// it saw of every active slot, until stopped.
pub struct SlotWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<SlotSeen>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl SlotWatch {
    pub fn start(instance: &str) -> SlotWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<SlotSeen>>> = Arc::new(Mutex::new(Vec::new()));
        let instance = instance.to_string();
        let handle = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut table = None;
                // Bounded: at most 10 minutes of 20 ms polls.
                for _ in 0..30_000 {
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
                            let mut s = seen.lock().unwrap();
                            let ms = t0.elapsed().as_millis() as u64;
                            match s.iter_mut().find(|x| x.id == id && x.cfg.tag == cfg.tag) {
                                Some(x) => {
                                    x.cfg = cfg;
                                    x.legs = [a, b];
                                    x.samples.push((ms, a.rx_packets, b.rx_packets));
                                }
                                None => s.push(SlotSeen {
                                    id,
                                    cfg,
                                    legs: [a, b],
                                    samples: vec![(ms, a.rx_packets, b.rx_packets)],
                                }),
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        SlotWatch {
            stop,
            seen,
            handle: Some(handle),
        }
    }

    /// Stops polling and returns what was seen.
    pub fn finish(mut self) -> Vec<SlotSeen> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.seen.lock().unwrap().clone()
    }
}

/// Waits (bounded) until the table of `instance` has no active, reserved
/// or draining slot. Returns whether it got there.
pub fn wait_all_free(instance: &str, limit: Duration) -> bool {
    let Ok(t) = SlotTable::open(instance) else {
        return false;
    };
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if t.count(SlotState::Free) == t.capacity() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Removes the slot table of `instance`.
pub fn unlink_table(instance: &str) {
    let _ = std::fs::remove_file(tern_shared::table::table_path(instance));
}

/// tshark capturing UDP on loopback with `filter` into a pcap file.
pub struct Capture {
    proc_: Proc,
    pub file: PathBuf,
}

impl Capture {
    /// Starts tshark and waits (bounded) until it reports capturing.
    pub fn start(filter: &str, file: &Path) -> Capture {
        let _ = std::fs::remove_file(file);
        let mut child = Command::new("tshark")
            .args(["-i", "lo", "-q", "-f", filter, "-w"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tshark (install tshark)");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("Capturing on") {
                    let _ = tx.send(());
                }
            }
        });
        let proc_ = Proc {
            name: "tshark".into(),
            child,
        };
        rx.recv_timeout(Duration::from_secs(20))
            .expect("tshark did not start capturing");
        Capture {
            proc_,
            file: file.to_path_buf(),
        }
    }

    /// Stops the capture (SIGINT flushes the file); returns the file.
    pub fn finish(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(300));
        self.proc_.signal(libc::SIGINT);
        let _ = self.proc_.wait_for(Duration::from_secs(10));
        self.file.clone()
    }

    /// Stops the capture (SIGINT flushes the file) and returns the SSRCs of
    /// the RTP packets in it, decoding UDP port `rtp_port` as RTP.
    pub fn rtp_ssrcs(mut self, rtp_port: u16) -> Vec<u32> {
        std::thread::sleep(Duration::from_millis(300));
        self.proc_.signal(libc::SIGINT);
        let _ = self.proc_.wait_for(Duration::from_secs(10));
        pcap_rtp_ssrcs(&self.file, rtp_port)
    }
}

/// The SSRC of every RTP packet on UDP port `port` in a pcap file.
pub fn pcap_rtp_ssrcs(file: &Path, port: u16) -> Vec<u32> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args([
            "-d",
            &format!("udp.port=={port},rtp"),
            "-Y",
            "rtp",
            "-T",
            "fields",
            "-e",
            "rtp.ssrc",
        ])
        .output()
        .expect("tshark -r");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| u32::from_str_radix(l.trim().trim_start_matches("0x"), 16).ok())
        .collect()
}

/// Sends `msg` from an ephemeral loopback socket to `to` and returns the
/// status code of the first response received within 3 s.
pub fn sip_exchange(msg: &[u8], to: &str) -> Option<u16> {
    let s = UdpSocket::bind("127.0.0.1:0").ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.send_to(msg, to).ok()?;
    let mut buf = [0u8; 65535];
    // Skip provisional responses (bounded: 10 datagrams).
    for _ in 0..10 {
        let (n, _) = s.recv_from(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]);
        let code: u16 = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        if code >= 200 {
            return Some(code);
        }
    }
    None
}

/// A port on loopback that is free for both UDP and TCP right now
/// (bounded: 100 tries).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port");
}

/// Starts `tern relay` on table `instance` with ports `ports`, ng on
/// 127.0.0.1:`ng`, one unpinned worker and `extra` arguments (HTTP off
/// unless `extra` names `--http`, so 127.0.0.1:8080 stays with the tests
/// of the HTTP API); waits until both planes are up.
pub fn spawn_relay(
    instance: &str,
    ports: &str,
    ng: u16,
    extra: &[&str],
) -> (Proc, Arc<Mutex<Vec<String>>>) {
    let ng_arg = format!("127.0.0.1:{ng}");
    let mut args = vec![
        "relay",
        "--ports",
        ports,
        "--workers",
        "1",
        "--instance",
        instance,
        "--ng",
        &ng_arg,
        "--no-pin",
    ];
    if !extra.contains(&"--http") {
        args.extend_from_slice(&["--http", "off"]);
    }
    args.extend_from_slice(extra);
    spawn_tern(&args, &["tern ng", "tern relay"])
}

/// The kamailio binary (Debian installs it in /usr/sbin).
pub fn kamailio_bin() -> PathBuf {
    for p in ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("kamailio")
}

/// Starts Kamailio in the foreground (`-DD -E`) with `tests/kamailio/CFG`,
/// listening on `addr:port` with its rtpengine module on tern's ng socket
/// 127.0.0.1:`ng`, its files under `run`; returns once it answers an
/// OPTIONS (sent from `probe_port`), bounded: 20 s.
pub fn start_kamailio(
    cfg: &str,
    run: &Path,
    addr: &str,
    port: u16,
    ng: u16,
    probe_port: u16,
) -> Proc {
    start_kamailio_listening(
        cfg,
        run,
        &[format!("udp:{addr}:{port}")],
        &[format!("NG_SOCK=\"udp:127.0.0.1:{ng}\"")],
        addr,
        port,
        probe_port,
    )
}

/// Starts Kamailio in the foreground (`-DD -E`) with `tests/kamailio/CFG`,
/// one `-l` per entry of `listens` (`udp:ADDR:PORT`, `tcp:ADDR:PORT`...),
/// one `-A` per entry of `defines`, its files under `run`; returns once
/// its UDP listener `addr:port` answers an OPTIONS (sent from
/// `probe_port`), bounded: 20 s.
pub fn start_kamailio_listening(
    cfg: &str,
    run: &Path,
    listens: &[String],
    defines: &[String],
    addr: &str,
    port: u16,
    probe_port: u16,
) -> Proc {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kamailio")
        .join(cfg);
    std::fs::create_dir_all(run).unwrap();
    let mut cmd = Command::new(kamailio_bin());
    cmd.args(["-DD", "-E", "-f"]).arg(&cfg);
    for l in listens {
        cmd.args(["-l", l]);
    }
    for d in defines {
        cmd.args(["-A", d]);
    }
    let child = cmd
        .args(["-m", "64", "-M", "8"])
        .arg("-w")
        .arg(run)
        .arg("-Y")
        .arg(run)
        .arg("-P")
        .arg(run.join("kamailio.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kamailio (install kamailio)");
    let mut p = Proc {
        name: "kamailio".into(),
        child,
    };
    let options = format!(
        "OPTIONS sip:ping@{addr}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{probe_port};rport;branch=z9hG4bK-ready\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:ping@{addr}>\r\nCall-ID: ready@t\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(st)) = p.child.try_wait() {
            panic!("kamailio exited at start: {st}");
        }
        if sip_exchange(options.as_bytes(), &format!("{addr}:{port}")).is_some() {
            return p;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    p.stop();
    panic!("kamailio did not answer SIP within 20 s");
}

/// `GET path` from the HTTP API at `http` (HOST:PORT): the whole answer,
/// status line and headers included (bounded: 3 s).
pub fn http_get(http: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The value of Prometheus series `series` (name and labels, as written)
/// in `text`; `0` when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.strip_prefix(series).is_some_and(|r| r.starts_with(' ')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// SIP and media ports of a Kamailio + SIPp test, picked free at run time, so that two runs of
/// the suite on one host do not collide.
pub struct SippPorts {
    pub kam: u16,
    pub uas: u16,
    pub reg: u16,
    pub uac: u16,
    pub uas_media: u16,
    pub uac_media: u16,
}

/// An even port `p` with `p..p+4` free on loopback (SIPp's media ports).
pub fn free_media_port() -> u16 {
    for _ in 0..200 {
        let p = free_port() & !1;
        if !(1024..=65_000).contains(&p) {
            continue;
        }
        let held: Vec<UdpSocket> = (p..p + 4)
            .filter_map(|q| UdpSocket::bind(("127.0.0.1", q)).ok())
            .collect();
        if held.len() == 4 {
            return p;
        }
    }
    panic!("no free media ports");
}

impl SippPorts {
    /// Kamailio's, SIPp's UAS, registrar and UAC ports and two media
    /// blocks, all free and apart.
    pub fn pick() -> SippPorts {
        let mut seen = Vec::new();
        let mut one = |media: bool| loop {
            let p = if media {
                free_media_port()
            } else {
                free_port()
            };
            if !seen.iter().any(|&q: &u16| q.abs_diff(p) < 4) {
                seen.push(p);
                return p;
            }
        };
        SippPorts {
            kam: one(false),
            uas: one(false),
            reg: one(false),
            uac: one(false),
            uas_media: one(true),
            uac_media: one(true),
        }
    }
}
