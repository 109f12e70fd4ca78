//! Debian's rtpengine 10.5 as a test peer: userspace only (`--table=-1`),
//! on loopback, started with the interfaces a test names, stopped by PID.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, Proc};

/// Whether rtpengine can run here; prints a SKIP line when not.
pub fn have_rtpengine() -> bool {
    let ok = Command::new("rtpengine")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: rtpengine is not installed (Debian package rtpengine-daemon)");
    }
    ok
}

/// A userspace rtpengine with its ng socket on a free loopback port.
pub struct Rtpengine {
    proc_: Proc,
    pub ng: u16,
}

impl Rtpengine {
    /// rtpengine with `interfaces` (its `--interface` values, e.g.
    /// `127.0.0.1` or `pub/127.0.0.3!203.0.113.7`) and media ports
    /// `port_lo..=port_hi`; ready once it answers ping (bounded: 10 s).
    pub fn start(interfaces: &[&str], port_lo: u16, port_hi: u16, extra: &[&str]) -> Rtpengine {
        Rtpengine::start_on(free_port(), interfaces, port_lo, port_hi, extra)
    }

    /// [`Rtpengine::start`] with its ng socket on 127.0.0.1:`ng`.
    pub fn start_on(
        ng: u16,
        interfaces: &[&str],
        port_lo: u16,
        port_hi: u16,
        extra: &[&str],
    ) -> Rtpengine {
        let mut args: Vec<String> = vec![
            "--config-file=none".into(),
            "--table=-1".into(),
            format!("--listen-ng=127.0.0.1:{ng}"),
            "--foreground".into(),
            "--num-threads=1".into(),
            format!("--port-min={port_lo}"),
            format!("--port-max={port_hi}"),
            "--log-level=5".into(),
            "--log-stderr".into(),
            "--no-log-timestamps".into(),
        ];
        for i in interfaces {
            args.push(format!("--interface={i}"));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new("rtpengine")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtpengine");
        let me = Rtpengine {
            proc_: Proc {
                name: "rtpengine".into(),
                child,
            },
            ng,
        };
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let _ = sock.send_to(b"p1 d7:command4:pinge", me.addr());
            let mut b = [0u8; 256];
            if sock.recv_from(&mut b).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "rtpengine did not answer ping");
        }
        me
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.ng).into()
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        let _ = self.proc_.stop();
    }
}
