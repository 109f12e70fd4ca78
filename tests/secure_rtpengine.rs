//! Secure media against an independent implementation: rtpengine 10.5
//! (libsrtp2 and openssl, userspace `--table=-1`) is the far end of a
//! chain driven over ng:
//!
//! ```text
//! A (plain RTP) → tern → secure hop → rtpengine → C (plain RTP)
//! ```
//!
//! and back. The secure hop runs through a small proxy the test owns, so
//! it can see that the bytes there are really protected (their payloads
//! differ from the plain ones and carry an authentication tag) while A and
//! C receive exactly what the other sent.
//!
//! Skips, saying so, when rtpengine is not installed.

mod common;
use common::ng::{ng_exchange, str_of, BDict};
use common::rtpengine::{have_rtpengine, Rtpengine};
use common::*;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_ng::bencode::{bstr, str_list, Dict};

/// A `tern relay` with its ng socket.
struct Tern {
    proc_: Proc,
    instance: String,
    ng: u16,
    ports: String,
}

impl Tern {
    fn start(name: &str, ports: &str) -> Tern {
        let instance = format!("sec-{name}-{}", std::process::id());
        let ng = free_port();
        Tern {
            proc_: Tern::spawn(&instance, ng, ports),
            instance,
            ng,
            ports: ports.to_string(),
        }
    }

    fn spawn(instance: &str, ng: u16, ports: &str) -> Proc {
        spawn_relay(instance, ports, ng, &[]).0
    }

    /// SIGKILL mid-call, then a new `tern relay` on the same table.
    fn kill_and_restart(&mut self) {
        self.proc_.kill_hard();
        self.proc_ = Tern::spawn(&self.instance, self.ng, &self.ports);
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.ng).into()
    }
}

impl Drop for Tern {
    fn drop(&mut self) {
        let _ = self.proc_.stop();
        unlink_table(&self.instance);
    }
}

fn ng(sock: &UdpSocket, to: SocketAddr, n: &mut u32, d: Dict) -> BDict {
    *n += 1;
    let r = ng_exchange(sock, to, &format!("k{n}"), d);
    assert_eq!(str_of(&r, "result"), "ok", "{r:?}");
    r
}

fn plain_sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

fn m_port(sdp: &str) -> u16 {
    let m = sdp.lines().find(|l| l.starts_with("m=audio ")).unwrap();
    m.split(' ').nth(1).unwrap().parse().unwrap()
}

/// `sdp` with every ` {from}` port word replaced by ` {to}` (the `m=`
/// line and candidates), so the peer sends through the proxy.
fn via(sdp: &str, from: u16, to: u16) -> String {
    sdp.replace(&format!(" {from} "), &format!(" {to} "))
        .replace(&format!(" {from}\r\n"), &format!(" {to}\r\n"))
}

/// Datagrams the proxy passed, each way.
#[derive(Default)]
struct Seen {
    to_rtpengine: Vec<Vec<u8>>,
    to_tern: Vec<Vec<u8>>,
}

/// Relays between tern (`tern_side`, which tern sends to) and rtpengine
/// (`rtpe_side`, which rtpengine sends to) until `stop`, recording.
fn proxy(
    tern_side: UdpSocket,
    rtpe_side: UdpSocket,
    tern_port: u16,
    rtpe_port: Arc<Mutex<u16>>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        tern_side
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        rtpe_side
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok((n, _)) = tern_side.recv_from(&mut buf) {
                let port = *rtpe_port.lock().unwrap();
                if port != 0 {
                    let _ = rtpe_side.send_to(&buf[..n], ("127.0.0.1", port));
                }
                seen.lock().unwrap().to_rtpengine.push(buf[..n].to_vec());
            }
            if let Ok((n, _)) = rtpe_side.recv_from(&mut buf) {
                let _ = tern_side.send_to(&buf[..n], ("127.0.0.1", tern_port));
                seen.lock().unwrap().to_tern.push(buf[..n].to_vec());
            }
        }
    })
}

fn rtp(seq: u16, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160).map(|i| fill ^ (i as u8).wrapping_mul(7) ^ seq as u8));
    p
}

/// Sends `count` packets from `from` to `port` and returns the payloads
/// (bytes after the 12-byte header) `to` received (bounded wait).
fn flow(
    from: &UdpSocket,
    port: u16,
    to: &UdpSocket,
    count: u16,
    fill: u8,
    seq: &mut u16,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    to.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut sent = Vec::new();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    for _ in 0..count {
        // One sequence per sender: SRTP refuses an index twice.
        *seq = seq.wrapping_add(1);
        let p = rtp(*seq, 0x1111_0000 | u32::from(fill & 0xf0), fill);
        sent.push(p[12..].to_vec());
        from.send_to(&p, ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        while let Ok((n, _)) = to.recv_from(&mut buf) {
            got.push(buf[12..n].to_vec());
        }
    }
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        if let Ok((n, _)) = to.recv_from(&mut buf) {
            got.push(buf[12..n].to_vec());
        }
    }
    (sent, got)
}

/// Runs the chain with `extra` in tern's offer (its secure side); with
/// `tag_len`, every SRTP packet on the hop must carry a tag that long.
fn chain(name: &str, ports: (u16, u16), extra: Dict, tag_len: Option<usize>) -> String {
    chain_with(name, ports, extra, tag_len, false)
}

/// [`chain`]; with `restart`, `tern relay` is SIGKILLed after the first
/// flows (both directions' sequence numbers having wrapped, so each SRTP
/// stream's rollover counter is 1) and restarted on the same table, and
/// media must flow again both ways: the keys and rollover counters came
/// back from the slot.
fn chain_with(
    name: &str,
    ports: (u16, u16),
    extra: Dict,
    tag_len: Option<usize>,
    restart: bool,
) -> String {
    let mut tern = Tern::start(name, &format!("{}-{}", ports.0, ports.0 + 99));
    let rtpe = Rtpengine::start(&["127.0.0.1"], ports.1, ports.1 + 99, &[]);
    let ctl = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (pa, pc) = (
        a.local_addr().unwrap().port(),
        c.local_addr().unwrap().port(),
    );
    let tern_side = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtpe_side = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (pt, pr) = (
        tern_side.local_addr().unwrap().port(),
        rtpe_side.local_addr().unwrap().port(),
    );
    let mut n = 0;
    let call = format!("chain-{name}");

    // 1. A's plain offer into tern, which offers secure media onward.
    let mut d = extra;
    d.set("command", bstr("offer"))
        .set("call-id", bstr(call.as_str()))
        .set("from-tag", bstr("A"))
        .set("sdp", bstr(plain_sdp(pa)));
    let r1 = ng(&ctl, tern.addr(), &mut n, d);
    let sdp1 = str_of(&r1, "sdp");
    let tb = m_port(&sdp1);
    // 2. Into rtpengine (through the proxy), which offers plain RTP to C.
    let r2 = ng(
        &ctl,
        rtpe.addr(),
        &mut n,
        Dict::new()
            .with("command", bstr("offer"))
            .with("call-id", bstr(call.as_str()))
            .with("from-tag", bstr("A"))
            .with("transport-protocol", bstr("RTP/AVP"))
            .with("sdp", bstr(via(&sdp1, tb, pr))),
    );
    let sdp2 = str_of(&r2, "sdp");
    assert!(
        sdp2.contains("RTP/AVP") && !sdp2.contains("a=crypto"),
        "{sdp2}"
    );
    let rc = m_port(&sdp2);
    // 3. C's plain answer into rtpengine, which answers securely.
    let r3 = ng(
        &ctl,
        rtpe.addr(),
        &mut n,
        Dict::new()
            .with("command", bstr("answer"))
            .with("call-id", bstr(call.as_str()))
            .with("from-tag", bstr("A"))
            .with("to-tag", bstr("C"))
            .with("sdp", bstr(plain_sdp(pc))),
    );
    let sdp3 = str_of(&r3, "sdp");
    let ra = m_port(&sdp3);
    // The hop's proxy runs from here: rtpengine may start a DTLS
    // handshake or ICE checks as soon as it has answered.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let h = proxy(
        tern_side,
        rtpe_side,
        tb,
        Arc::new(Mutex::new(ra)),
        seen.clone(),
        stop.clone(),
    );

    // 4. Into tern (through the proxy), which answers A in plain RTP.
    let r4 = ng(
        &ctl,
        tern.addr(),
        &mut n,
        Dict::new()
            .with("command", bstr("answer"))
            .with("call-id", bstr(call.as_str()))
            .with("from-tag", bstr("A"))
            .with("to-tag", bstr("C"))
            .with("sdp", bstr(via(&sdp3, ra, pt))),
    );
    let sdp4 = str_of(&r4, "sdp");
    let offered_to_rtpengine = sdp1.clone();
    assert!(
        sdp4.contains(" RTP/AVP ") && !sdp4.contains("a=crypto"),
        "{sdp4}"
    );
    let ta = m_port(&sdp4);

    // Until media flows both ways (a DTLS handshake or ICE checks may
    // still be running): bounded, 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    // Both start near the wrap, so the rollover counters move to 1.
    let (mut seq_a, mut seq_c) = (65_520u16, 65_515u16);
    loop {
        let (_, at_a) = flow(&c, rc, &a, 2, 0xc3, &mut seq_c);
        let (_, at_c) = flow(&a, ta, &c, 2, 0xa5, &mut seq_a);
        if !at_a.is_empty() && !at_c.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            // Say why: the drops of every slot in use, by reason.
            if let Ok(t) = tern_shared::table::SlotTable::open(&tern.instance) {
                for id in 0..t.capacity() {
                    for leg in 0..2 {
                        let Ok(st) = t.stats(id, leg) else { continue };
                        if st.rx_packets + st.drops_total() > 0 {
                            eprintln!("slot {id} leg {leg}: {st:?}");
                        }
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no media both ways within 10 s (A got {}, C got {})",
            at_a.len(),
            at_c.len()
        );
    }
    let (sent_a, got_c) = flow(&a, ta, &c, 25, 0xa5, &mut seq_a);
    let (sent_c, got_a) = flow(&c, rc, &a, 25, 0xc3, &mut seq_c);
    assert!(
        seq_a < 1000 && seq_c < 1000,
        "both streams wrapped: {seq_a} {seq_c}"
    );
    let (sent_a, got_c, sent_c, got_a) = if restart {
        let before = (got_c.len(), got_a.len());
        tern.kill_and_restart();
        let (sent_a, got_c) = flow(&a, ta, &c, 25, 0xa5, &mut seq_a);
        let (sent_c, got_a) = flow(&c, rc, &a, 25, 0xc3, &mut seq_c);
        assert!(
            before.0 >= 20 && before.1 >= 20,
            "before the restart: {before:?}"
        );
        (sent_a, got_c, sent_c, got_a)
    } else {
        (sent_a, got_c, sent_c, got_a)
    };
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();

    let missing =
        |sent: &[Vec<u8>], got: &[Vec<u8>]| sent.iter().filter(|p| !got.contains(p)).count();
    assert!(
        got_c.len() >= 20 && missing(&sent_a, &got_c) <= 5,
        "A → C: {} of {} arrived byte-identical",
        sent_a.len() - missing(&sent_a, &got_c),
        sent_a.len()
    );
    assert!(
        got_a.len() >= 20 && missing(&sent_c, &got_a) <= 5,
        "C → A: {} of {} arrived byte-identical",
        sent_c.len() - missing(&sent_c, &got_a),
        sent_c.len()
    );
    // The secure hop really is protected: no plain payload crosses it, and
    // each packet carries its tag.
    let seen = seen.lock().unwrap();
    let rtp_len = 12 + 160;
    for (dir, pkts, sent) in [
        ("tern → rtpengine", &seen.to_rtpengine, &sent_a),
        ("rtpengine → tern", &seen.to_tern, &sent_c),
    ] {
        let media: Vec<&Vec<u8>> = pkts
            .iter()
            .filter(|p| p.len() >= rtp_len && p[0] >> 6 == 2 && !(192..=223).contains(&p[1]))
            .collect();
        assert!(
            media.len() >= 20,
            "{dir}: {} media packets seen",
            media.len()
        );
        for p in &media {
            assert!(
                !sent
                    .iter()
                    .any(|s| p.ends_with(s) || p[12..].starts_with(s)),
                "{dir}: a plain payload crossed the secure hop"
            );
            if let Some(t) = tag_len {
                assert_eq!(
                    p.len(),
                    rtp_len + t,
                    "{dir}: SRTP packet of {} bytes",
                    p.len()
                );
            } else {
                assert!(
                    p.len() > rtp_len,
                    "{dir}: no tag on a {}-byte packet",
                    p.len()
                );
            }
        }
    }
    format!("{offered_to_rtpengine}\n--\n{sdp3}")
}

#[test]
fn sdes_chain_through_rtpengine_with_aes_cm_80() {
    if !have_rtpengine() {
        return;
    }
    chain(
        "sdes-cm",
        (22000, 22400),
        Dict::new()
            .with("transport-protocol", bstr("RTP/SAVP"))
            .with("SDES", str_list(["only-AES_CM_128_HMAC_SHA1_80"])),
        Some(10),
    );
}

#[test]
fn sdes_chain_through_rtpengine_with_its_choice_of_suite() {
    if !have_rtpengine() {
        return;
    }
    chain(
        "sdes-any",
        (22600, 22800),
        Dict::new().with("transport-protocol", bstr("RTP/SAVP")),
        None,
    );
}

/// DTLS-SRTP on the hop with tern taking `ours` (`DTLS=`); rtpengine's
/// answer must take `theirs`, the other role (RFC 8842 §5).
fn dtls_chain(name: &str, ports: (u16, u16), ours: &str, theirs: &str) {
    if !have_rtpengine() {
        return;
    }
    let sdps = chain(
        name,
        ports,
        Dict::new()
            .with("transport-protocol", bstr("UDP/TLS/RTP/SAVP"))
            .with("DTLS", bstr(ours)),
        None,
    );
    let (offer, answer) = sdps.split_once("\n--\n").unwrap();
    assert!(
        offer.contains(&format!("a=setup:{ours}")) && offer.contains("a=fingerprint:sha-256 "),
        "{offer}"
    );
    assert!(
        answer.contains(&format!("a=setup:{theirs}")),
        "rtpengine takes the other role: {answer}"
    );
}

#[test]
fn dtls_chain_tern_passive_rtpengine_active() {
    dtls_chain("dtls-pas", (29400, 29600), "passive", "active");
}

#[test]
fn dtls_chain_tern_active_rtpengine_passive() {
    dtls_chain("dtls-act", (29800, 30000), "active", "passive");
}

#[test]
fn ice_chain_rtpengine_checks_terns_ice_lite() {
    if !have_rtpengine() {
        return;
    }
    let sdps = chain(
        "ice",
        (30200, 30400),
        Dict::new()
            .with("transport-protocol", bstr("RTP/SAVP"))
            .with("ICE", bstr("force")),
        None,
    );
    assert!(
        sdps.contains("a=ice-lite") && sdps.contains("typ host"),
        "{sdps}"
    );
    let answer = sdps.split("\n--\n").nth(1).unwrap();
    assert!(
        answer.contains("a=ice-ufrag:"),
        "rtpengine answered with ICE: {answer}"
    );
}

#[test]
fn srtp_call_survives_sigkill_with_its_rollover_counters() {
    if !have_rtpengine() {
        return;
    }
    chain_with(
        "restart",
        (30600, 30800),
        Dict::new()
            .with("transport-protocol", bstr("RTP/SAVP"))
            .with("SDES", str_list(["only-AES_CM_128_HMAC_SHA1_80"])),
        Some(10),
        true,
    );
}
