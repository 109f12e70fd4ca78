//! baresip in a network namespace of its own (it will not place media on
//! loopback), joined to the host by a veth pair: the namespace, a WAV
//! for its `aufile` source, and baresip started dialling.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Proc;

/// How long baresip stays up (`-t`), seconds: the call lasts about this.
pub const CALL_SECS: u64 = 8;

pub fn have(bin: &str, arg: &str) -> bool {
    Command::new(bin)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Whether everything this test needs is here; prints why not.
pub fn prerequisites() -> bool {
    for (bin, arg, pkg) in [
        ("baresip", "-h", "baresip"),
        ("kamailio", "-v", "kamailio"),
        ("sipp", "-v", "sip-tester"),
    ] {
        if !have(bin, arg) {
            eprintln!("SKIP: {bin} is not installed (Debian package {pkg})");
            return false;
        }
    }
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: not root: `ip netns` and veth pairs need CAP_NET_ADMIN");
        return false;
    }
    let ok = Command::new("ip")
        .args(["netns", "list"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: `ip netns` is not available (iproute2)");
    }
    ok
}

pub fn ip(args: &[&str]) -> bool {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn ip");
    if !out.status.success() {
        eprintln!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status.success()
}

/// A network namespace holding one end of a veth pair: host end
/// `10.213.N.1/30`, namespace end `10.213.N.2/30`. Removed on drop.
pub struct Netns {
    pub name: String,
    pub host_if: String,
    pub ns_if: String,
    pub host: String,
    pub peer: String,
}

impl Netns {
    pub fn create(tag: &str, third_octet: u32) -> Netns {
        let pid = std::process::id();
        let name = format!("tern-bs-{pid}-{tag}");
        let host_if = format!("tbs{pid}{tag}a");
        let ns_if = format!("tbs{pid}{tag}b");
        let host = format!("10.213.{third_octet}.1");
        let peer = format!("10.213.{third_octet}.2");
        let me = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            ns_if: ns_if.clone(),
            host: host.clone(),
            peer: peer.clone(),
        };
        // A leftover from a killed run of the same PID: go.
        let _ = Command::new("ip")
            .args(["link", "del", &host_if])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let steps: [&[&str]; 8] = [
            &["netns", "add", &name],
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ],
            &["link", "set", &ns_if, "netns", &name],
            &["addr", "add", &format!("{host}/30"), "dev", &host_if],
            &["link", "set", &host_if, "up"],
            &[
                "netns",
                "exec",
                &name,
                "ip",
                "addr",
                "add",
                &format!("{peer}/30"),
                "dev",
                &ns_if,
            ],
            &["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"],
            &["netns", "exec", &name, "ip", "link", "set", "lo", "up"],
        ];
        for s in steps {
            assert!(ip(s), "network setup failed at `ip {}`", s.join(" "));
        }
        // The host address is usable once DAD-free IPv4 is up: bind it
        // (bounded: 5 s).
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::UdpSocket::bind((host.as_str(), 0)).is_err() {
            assert!(Instant::now() < deadline, "{host} not bindable");
            std::thread::sleep(Duration::from_millis(50));
        }
        me
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// An 8 kHz mono S16LE WAV: a 440 Hz sine at half scale, `secs` long.
pub fn write_sine_wav(path: &Path, secs: u32) {
    write_sine_wav_at(path, secs, 8000, 1);
}

/// A S16LE WAV of `rate` Hz and `channels` (the same in each): a 440 Hz
/// sine at half scale, `secs` long.
pub fn write_sine_wav_at(path: &Path, secs: u32, rate: u32, channels: u16) {
    let n = rate * secs;
    let ch = u32::from(channels);
    let mut data = Vec::with_capacity((n * ch) as usize * 2);
    for i in 0..n {
        let t = f64::from(i) / f64::from(rate);
        let s = (16_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
        for _ in 0..channels {
            data.extend_from_slice(&s.to_le_bytes());
        }
    }
    let mut w = Vec::with_capacity(44 + data.len());
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&channels.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2 * ch).to_le_bytes());
    w.extend_from_slice(&(2 * channels).to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    std::fs::write(path, w).expect("write wav");
}

/// Starts baresip inside the namespace with the config in `dir`, dialling
/// `uri` at once and quitting after [`CALL_SECS`]. Its stdout and stderr
/// lines are kept.
pub fn start_baresip(net: &Netns, dir: &Path, uri: &str) -> (Proc, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.name, "baresip", "-f"])
        .arg(dir)
        .args(["-e", &format!("/dial {uri}")])
        .args(["-t", &CALL_SECS.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn baresip");
    let lines = Arc::new(Mutex::new(Vec::new()));
    for (name, pipe) in [
        (
            "out",
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        ),
        ("err", Box::new(child.stderr.take().unwrap())),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[baresip {name}] {line}");
                lines.lock().unwrap().push(line);
            }
        });
    }
    (
        Proc {
            name: "baresip".into(),
            child,
        },
        lines,
    )
}
