//! Named interfaces through a real `tern relay` driven over ng:
//! `--interface priv/127.0.0.2 --interface pub/127.0.0.3!203.0.113.7
//! --interface v6/::1` (loopback aliases work on Linux `lo` without
//! configuration). `direction` puts each leg on its interface (the SDP
//! says the advertised address, media leaves from the leg's own address),
//! `address family: IP6` bridges an IPv4 caller to an IPv6 callee, and an
//! unknown name is an error.
//!
//! Ports: relay media 22410-22509, ng 18240-18242, instances `t-if-*`.

mod common;
use common::ng::{ng_exchange, sdp_port, str_of, BDict};
use common::*;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use tern_ng::bencode::{bstr, str_list, Dict};

const IFACES: [&str; 6] = [
    "--interface",
    "priv/127.0.0.2",
    "--interface",
    "pub/127.0.0.3!203.0.113.7",
    "--interface",
    "v6/::1",
];

/// A `tern relay` with the three interfaces; stopped and its table
/// removed on drop.
struct Relay {
    proc_: Option<Proc>,
    instance: String,
    ng: SocketAddr,
}

impl Relay {
    fn start(name: &str, ports: &str, ng: u16) -> Relay {
        let instance = format!("t-if-{name}-{}", std::process::id());
        let (p, _) = spawn_relay(&instance, ports, ng, &IFACES);
        Relay {
            proc_: Some(p),
            instance,
            ng: ([127, 0, 0, 1], ng).into(),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        drop(self.proc_.take());
        unlink_table(&self.instance);
    }
}

fn sdp(ip: &str, port: u16) -> String {
    let fam = if ip.contains(':') { "IP6" } else { "IP4" };
    format!(
        "v=0\r\no=- 1 1 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

fn msg(cmd: &str, call: &str, sdp: &str) -> Dict {
    Dict::new()
        .with("command", bstr(cmd))
        .with("call-id", bstr(call))
        .with("from-tag", bstr("ft"))
        .with("sdp", bstr(sdp))
}

fn ok(sock: &UdpSocket, to: SocketAddr, cookie: &str, m: Dict) -> BDict {
    let d = ng_exchange(sock, to, cookie, m);
    assert_eq!(
        str_of(&d, "result"),
        "ok",
        "{}: {}",
        str_of(&d, "error-reason"),
        str_of(&d, "warning")
    );
    d
}

/// Every `c=` line of the reply's SDP (session and media level).
fn conns(d: &BDict) -> Vec<String> {
    str_of(d, "sdp")
        .lines()
        .filter(|l| l.starts_with("c="))
        .map(str::to_string)
        .collect()
}

fn rtp(seq: u16, tag: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&[tag; 160]);
    p
}

/// Sends RTP from `from` to `to` until `at` receives one (bounded: 3 s);
/// returns the source address it came from.
fn flows(from: &UdpSocket, to: SocketAddr, at: &UdpSocket, tag: u8) -> SocketAddr {
    at.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 2048];
    for seq in 0..60u16 {
        from.send_to(&rtp(seq, tag), to).unwrap();
        if let Ok((n, src)) = at.recv_from(&mut buf) {
            assert_eq!(n, 172);
            assert_eq!(buf[12], tag, "the payload passes unchanged");
            return src;
        }
    }
    panic!(
        "no RTP from {:?} to {to} reached {:?}",
        from.local_addr(),
        at.local_addr()
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn direction_puts_each_leg_on_its_interface() {
    let relay = Relay::start("dir", "22410-22449", 18240);
    let ctl = UdpSocket::bind("127.0.0.1:0").unwrap();
    let caller = UdpSocket::bind("127.0.0.2:0").unwrap();
    let callee = UdpSocket::bind("127.0.0.3:0").unwrap();
    let (cp, ep) = (
        caller.local_addr().unwrap().port(),
        callee.local_addr().unwrap().port(),
    );
    let offer = ok(
        &ctl,
        relay.ng,
        "o1",
        msg("offer", "if-a", &sdp("127.0.0.2", cp)).with("direction", str_list(["priv", "pub"])),
    );
    // Toward the callee: pub's advertised address.
    assert_eq!(
        conns(&offer),
        ["c=IN IP4 203.0.113.7"],
        "{}",
        str_of(&offer, "sdp")
    );
    let p1 = sdp_port(&offer);
    assert!((22410..=22449).contains(&p1));
    // The port is held on pub's own address.
    assert!(
        UdpSocket::bind(("127.0.0.3", p1)).is_err(),
        "{p1} not bound on 127.0.0.3"
    );
    let answer = ok(
        &ctl,
        relay.ng,
        "a1",
        msg("answer", "if-a", &sdp("127.0.0.3", ep))
            .with("to-tag", bstr("tt"))
            .with("direction", str_list(["pub", "priv"])),
    );
    assert_eq!(
        conns(&answer),
        ["c=IN IP4 127.0.0.2"],
        "{}",
        str_of(&answer, "sdp")
    );
    let p0 = sdp_port(&answer);
    // Caller -> priv -> pub -> callee: it leaves from pub's address.
    let src = flows(&caller, SocketAddr::new(ip("127.0.0.2"), p0), &callee, 0xa1);
    assert_eq!(src, SocketAddr::new(ip("127.0.0.3"), p1));
    // And back: the callee sends to pub's real address (203.0.113.7 is
    // the NAT's), the caller hears priv's.
    let src = flows(&callee, SocketAddr::new(ip("127.0.0.3"), p1), &caller, 0xb2);
    assert_eq!(src, SocketAddr::new(ip("127.0.0.2"), p0));
    // Leg 0's port on another interface than priv reads nothing.
    caller
        .send_to(&rtp(100, 0xee), SocketAddr::new(ip("127.0.0.3"), p0))
        .unwrap();
    callee
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = callee.recv_from(&mut buf) {
        assert_ne!(
            buf[12..n].first(),
            Some(&0xee),
            "pub's copy of leg 0's port forwarded"
        );
    }
}

#[test]
fn address_family_ip6_bridges_a_v4_caller_to_a_v6_callee() {
    let relay = Relay::start("v6", "22450-22489", 18241);
    let ctl = UdpSocket::bind("127.0.0.1:0").unwrap();
    let caller = UdpSocket::bind("127.0.0.2:0").unwrap();
    let callee = UdpSocket::bind("[::1]:0").unwrap();
    let (cp, ep) = (
        caller.local_addr().unwrap().port(),
        callee.local_addr().unwrap().port(),
    );
    let offer = ok(
        &ctl,
        relay.ng,
        "o2",
        msg("offer", "if-b", &sdp("127.0.0.2", cp)).with("address family", bstr("IP6")),
    );
    assert_eq!(conns(&offer), ["c=IN IP6 ::1"], "{}", str_of(&offer, "sdp"));
    let p1 = sdp_port(&offer);
    let answer = ok(
        &ctl,
        relay.ng,
        "a2",
        msg("answer", "if-b", &sdp("::1", ep)).with("to-tag", bstr("tt")),
    );
    // The caller stays on the first IPv4 interface.
    assert_eq!(
        conns(&answer),
        ["c=IN IP4 127.0.0.2"],
        "{}",
        str_of(&answer, "sdp")
    );
    let p0 = sdp_port(&answer);
    let src = flows(&caller, SocketAddr::new(ip("127.0.0.2"), p0), &callee, 0x46);
    assert_eq!(src, SocketAddr::new(ip("::1"), p1));
    let src = flows(&callee, SocketAddr::new(ip("::1"), p1), &caller, 0x64);
    assert_eq!(src, SocketAddr::new(ip("127.0.0.2"), p0));
}

#[test]
fn unknown_interface_names_are_errors() {
    let relay = Relay::start("bad", "22490-22509", 18242);
    let ctl = UdpSocket::bind("127.0.0.1:0").unwrap();
    let offer = |cookie: &str, call: &str, m: fn(Dict) -> Dict| {
        ng_exchange(
            &ctl,
            relay.ng,
            cookie,
            m(msg("offer", call, &sdp("127.0.0.2", 4000))),
        )
    };
    let d = offer("e1", "if-c1", |m| {
        m.with("direction", str_list(["priv", "dmz"]))
    });
    assert_eq!(str_of(&d, "result"), "error");
    assert_eq!(str_of(&d, "error-reason"), "Interface 'dmz' not found");
    let d = offer("e2", "if-c2", |m| m.with("from-interface", bstr("lan")));
    assert_eq!(str_of(&d, "error-reason"), "Interface 'lan' not found");
    // `to-interface` picks the recipient's side like direction's second.
    let d = offer("e3", "if-c3", |m| m.with("to-interface", bstr("pub")));
    assert_eq!(str_of(&d, "result"), "ok");
    assert_eq!(conns(&d), ["c=IN IP4 203.0.113.7"]);
    // Nothing of the refused calls is left: the same call-id offers anew.
    let d = offer("e4", "if-c1", |m| {
        m.with("direction", str_list(["priv", "v6"]))
    });
    assert_eq!(str_of(&d, "result"), "ok", "{}", str_of(&d, "error-reason"));
    assert_eq!(conns(&d), ["c=IN IP6 ::1"]);
}
