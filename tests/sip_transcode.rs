//! The B2BUA transcodes (issue 14, `[media] transcode`, on by default): a
//! PCMU-only caller calls a PCMA-only callee through `tern up`. The
//! callee is offered PCMA beside PCMU, answers PCMA alone, and the caller
//! gets its own PCMU back; each side then receives the other's test tone
//! in its own codec, correlating ≥ 0.99 with what was sent.
//!
//! And an opus-only baresip (in a network namespace of its own, joined
//! by a veth: it will not place media on loopback) calls SIPp's G.711
//! `uas -rtp_echo`: baresip's opus reaches SIPp as PCMU, the echo comes
//! back as opus, and baresip's `sndfile` dump of what it heard is its
//! 440 Hz tone. `[sip] auth_invites = false` there: baresip 1.0 (libre)
//! answers only an MD5 challenge, and fails the call (ENOSYS) on the
//! SHA-256 one tern offers beside it.
//!
//! Ports: SIP 18350 (ng 18351, HTTP 18352), relay 19200-19249; the
//! baresip call on the veth's own address, relay 19250-19299.

mod common;
use common::audio::*;
use common::sipclient::*;
use common::*;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// The `m=audio` formats of a message's SDP body.
fn formats(msg: &str) -> Vec<u8> {
    body(msg)
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .map(|m| {
            m.split(' ')
                .skip(3)
                .filter_map(|p| p.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The `m=audio` port of a message's SDP body.
fn port(msg: &str) -> u16 {
    body(msg)
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .and_then(|m| m.split(' ').nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio in {msg}"))
}

/// A response to `req` with `code`, To-tagged, with `sdp` as its body.
fn answer(req: &str, code: u16, contact: &str, sdp: &str) -> String {
    let mut r = format!("SIP/2.0 {code} OK\r\n");
    for l in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if ["via", "from", "call-id", "cseq", "record-route"].contains(&name.as_str()) {
            r.push_str(l);
            r.push_str("\r\n");
        } else if name == "to" {
            r.push_str(&format!("{l};tag=bobtag\r\n"));
        }
    }
    r.push_str(&format!(
        "Contact: <{contact}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    r
}

#[test]
fn pcmu_caller_pcma_callee_through_tern_up() {
    let a = |p: u16| -> SocketAddr { ([127, 0, 0, 1], p).into() };
    let instance = format!("sip-xc-{}", std::process::id());
    let (sip, ng, http) = (a(18350), a(18351), a(18352));
    let (mut tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            &sip.to_string(),
            "--ports",
            "19200-19249",
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            &ng.to_string(),
            "--http",
            &http.to_string(),
        ],
        &["tern sip: listening"],
    );
    let registrar = sip.to_string();
    // bob (the callee) registers; open registration on loopback.
    let mut bob = Link::udp(sip);
    assert_eq!(
        register_digest(&mut bob, &registrar, "bob", "x", None),
        Some(200)
    );
    let (rtp_a, rtp_b) = (
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    );
    for s in [&rtp_a, &rtp_b] {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    }
    let (pa, pb) = (
        rtp_a.local_addr().unwrap().port(),
        rtp_b.local_addr().unwrap().port(),
    );

    // alice offers PCMU alone.
    let mut alice = Link::udp(sip);
    let uri = format!("sip:bob@{sip}");
    alice.send(&request(
        &alice,
        "INVITE",
        &uri,
        "alice",
        "bob",
        "sip-xc-1",
        1,
        "",
        &sdp(pa, Enc::Pcmu),
    ));
    let inv = bob.recv(Duration::from_secs(5)).expect("the INVITE at bob");
    assert!(inv.starts_with("INVITE "), "{inv}");
    // bob is offered alice's codec first, then what the relay transcodes.
    assert_eq!(formats(&inv), [0, 101, 8, 9, 96], "{inv}");
    let to_b = port(&inv);
    let (_, bob_host) = bob.via();
    bob.send(&answer(
        &inv,
        200,
        &format!("sip:bob@{bob_host}"),
        &sdp(pb, Enc::Pcma),
    ));
    let ok = alice
        .final_response("INVITE", Duration::from_secs(5))
        .expect("200 at alice");
    assert_eq!(status(&ok), Some(200), "{ok}");
    // alice gets her own codec (and her telephone-event) back.
    assert_eq!(formats(&ok), [0, 101], "{ok}");
    let to_a = port(&ok);
    let to = header(&ok, "To").unwrap();
    let ack = request(&alice, "ACK", &uri, "alice", "bob", "sip-xc-1", 1, "", "").replacen(
        "To: <sip:bob@127.0.0.1>",
        &format!("To: {to}"),
        1,
    );
    alice.send(&ack);

    // Media both ways, each in its own codec.
    send(&rtp_a, a(to_a), Enc::Pcmu, &tone(PACKETS * 160, 8000.0));
    let at_b = receive(&rtp_b, Enc::Pcma, 600);
    send(&rtp_b, a(to_b), Enc::Pcma, &tone(PACKETS * 160, 8000.0));
    let at_a = receive(&rtp_a, Enc::Pcmu, 600);
    let corr_b = correlation(
        &tone(at_b.pcm.len().min(PACKETS * 160), 8000.0),
        &at_b.pcm,
        800,
    );
    let corr_a = correlation(
        &tone(at_a.pcm.len().min(PACKETS * 160), 8000.0),
        &at_a.pcm,
        800,
    );
    eprintln!(
        "bob got {} packets pts {:?} corr {corr_b:.4}; alice got {} pts {:?} corr {corr_a:.4}",
        at_b.packets, at_b.pts, at_a.packets, at_a.pts
    );
    tern.stop();
    unlink_table(&instance);
    assert_eq!(at_b.pts, [8], "bob receives PCMA only");
    assert_eq!(at_a.pts, [0], "alice receives PCMU only");
    assert!(at_b.packets >= PACKETS - 2 && at_a.packets >= PACKETS - 2);
    assert!(corr_b >= 0.99, "alice → bob correlation {corr_b:.4}");
    assert!(corr_a >= 0.99, "bob → alice correlation {corr_a:.4}");
}

/// baresip's `config` and `accounts` in `dir`: opus only (48 kHz stereo
/// from `wav`), received audio written by its `sndfile` module to `dir`.
fn write_opus_baresip(dir: &std::path::Path, net: &common::baresip::Netns, wav: &std::path::Path) {
    let config = format!(
        "poll_method\t\tepoll\n\
         sip_listen\t\t{peer}:5060\n\
         sip_trans_def\t\tudp\n\
         call_local_timeout\t60\n\
         call_max_calls\t\t1\n\
         audio_source\t\taufile,{wav}\n\
         audio_srate\t\t48000\n\
         audio_channels\t\t2\n\
         rtp_ports\t\t40000-40099\n\
         rtp_timeout\t\t0\n\
         jitter_buffer_delay\t1-10\n\
         dns_fallback\t\t127.0.0.1:53\n\
         net_interface\t\t{ifname}\n\
         snd_path\t\t{dir}\n\
         module_path\t\t/usr/lib/baresip/modules\n\
         module\t\t\topus.so\n\
         module\t\t\taufile.so\n         module\t\t\tsndfile.so\n\
\
         module_app\t\taccount.so\n\
         module_app\t\tmenu.so\n",
        peer = net.peer,
        wav = wav.display(),
        ifname = net.ns_if,
        dir = dir.display(),
    );
    std::fs::write(dir.join("config"), config).expect("write config");
    let accounts = format!(
        "<sip:alice@{host}>;auth_pass=wonderland;regint=0;audio_codecs=opus/48000/2\n",
        host = net.host
    );
    std::fs::write(dir.join("accounts"), accounts).expect("write accounts");
    std::fs::write(dir.join("contacts"), "").expect("write contacts");
}

/// The first `*dec.wav` baresip's `sndfile` wrote in `dir`: what it
/// received, decoded (16-bit samples, first channel).
fn received_wav(dir: &std::path::Path) -> Option<(u32, Vec<i16>)> {
    let path = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("dec.wav"))?;
    let mut r = hound::WavReader::open(&path).ok()?;
    let spec = r.spec();
    let step = usize::from(spec.channels.max(1));
    let s: Vec<i16> = r
        .samples::<i16>()
        .map_while(Result::ok)
        .step_by(step)
        .collect();
    Some((spec.sample_rate, s))
}

#[test]
fn opus_only_baresip_calls_a_g711_sipp_uas_through_tern_up() {
    use common::baresip::*;
    if !prerequisites() {
        return;
    }
    let pid = std::process::id();
    let net = Netns::create("x", 240 + pid % 10);
    let host = net.host.clone();
    let dir = sipp_workdir("sip-xc-bs");
    let wav = dir.join("tone48.wav");
    write_sine_wav_at(&wav, CALL_SECS as u32 + 4, 48000, 2);
    let cfgdir = dir.join("baresip");
    std::fs::create_dir_all(&cfgdir).unwrap();
    write_opus_baresip(&cfgdir, &net, &wav);
    let cfg = dir.join("tern.toml");
    std::fs::write(
        &cfg,
        "[sip]\ndomains = [\"127.0.0.1\"]\nauth_invites = false\n\n[[users]]\nname = \"alice\"\npassword = \"wonderland\"\n\n[[users]]\nname = \"bob\"\npassword = \"builder\"\n",
    )
    .unwrap();
    let instance = format!("sip-xc-bs-{pid}");
    // The veth's host address is this test's alone: fixed ports are safe.
    let sip = format!("{host}:5060");
    let (tern, tern_lines) = spawn_tern(
        &[
            "up",
            "--sip",
            &sip,
            "--ports",
            "19250-19299",
            "--workers",
            "1",
            "--instance",
            &instance,
            "--media-ip",
            &host,
            "--ng",
            "off",
            "--http",
            "off",
            "--config",
            cfg.to_str().unwrap(),
        ],
        &["tern sip: listening"],
    );
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            &host,
            "-p",
            "5070",
            "-mp",
            "6100",
            "-rtp_echo",
            "-m",
            "1",
            "-timeout",
            "60s",
        ],
        &dir,
    );
    // From the host address: a contact whose address is not the
    // request's source would be taken for one behind NAT.
    let rs = UdpSocket::bind((host.as_str(), 0)).unwrap();
    rs.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut reg = Link::Udp(rs, sip.parse().unwrap());
    assert_eq!(
        register_digest(
            &mut reg,
            &sip,
            "bob",
            "builder",
            Some(&format!("sip:bob@{host}:5070"))
        ),
        Some(200)
    );
    let watch = SlotWatch::start(&instance);
    let (mut baresip, bs_lines) = start_baresip(&net, &cfgdir, &format!("sip:bob@{sip}"));
    let bs_exit = baresip.wait_for(Duration::from_secs(CALL_SECS + 8));
    if bs_exit.is_none() {
        baresip.stop();
    }
    let uas_exit = uas.wait_for(Duration::from_secs(15));
    if uas_exit.is_none() {
        dump_sipp_errors(&dir);
    }
    let seen = watch.finish();
    let bs_out = bs_lines.lock().unwrap().join("\n");
    let freed = wait_all_free(&instance, Duration::from_secs(5));
    drop(uas);
    let tern_out = tern_lines.lock().unwrap().join("\n");
    drop(tern);
    unlink_table(&instance);
    drop(net);
    let heard = received_wav(&cfgdir);

    eprintln!("baresip exit: {bs_exit:?}; uas exit: {uas_exit:?}; slots seen: {seen:#?}");
    assert!(
        bs_out.to_ascii_lowercase().contains("established"),
        "baresip did not report the call established:\n{bs_out}\ntern:\n{tern_out}"
    );
    assert_eq!(seen.len(), 1, "one slot for one call: {seen:?}");
    let s = &seen[0];
    let to_sipp = s.cfg.legs[0]
        .media
        .transcode
        .expect("baresip's opus transcoded");
    assert_eq!(to_sipp.output, tern_shared::table::MediaCodec::Pcmu);
    let to_bs = s.cfg.legs[1]
        .media
        .transcode
        .expect("SIPp's PCMU transcoded");
    assert_eq!(to_bs.output, tern_shared::table::MediaCodec::Opus);
    let [caller, callee] = s.legs;
    eprintln!("leg A (baresip): {caller:?}\nleg B (SIPp): {callee:?}");
    // Two-way: baresip's opus reaches SIPp as PCMU, SIPp's echo comes
    // back to baresip as opus.
    assert!(caller.rx_packets > 100, "baresip -> tern: {caller:?}");
    assert!(callee.tx_packets > 100, "tern -> SIPp (PCMU): {callee:?}");
    assert!(callee.rx_packets > 100, "SIPp's echo -> tern: {callee:?}");
    assert!(
        caller.tx_packets > 100,
        "tern -> baresip (opus): {caller:?}"
    );
    assert!(
        caller.drop_transcode + callee.drop_transcode < 5,
        "{caller:?} {callee:?}"
    );
    // What baresip heard is its own tone come back through two
    // transcodings: loud, and a 440 Hz sine.
    let (rate, pcm) = heard.expect("baresip's sndfile wrote what it received");
    let tone: Vec<i16> = (0..pcm.len().min(rate as usize * 4))
        .map(|i| {
            (16_000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(rate)).sin())
                as i16
        })
        .collect();
    let tail = &pcm[pcm.len().saturating_sub(rate as usize * 5)..];
    let corr = correlation(
        &tone[..tone.len().min(tail.len() / 2)],
        tail,
        rate as usize / 100,
    );
    eprintln!(
        "baresip heard {} samples at {rate} Hz; 440 Hz correlation {corr:.3}",
        pcm.len()
    );
    assert!(
        corr >= 0.9,
        "baresip heard no tone back (correlation {corr:.3})"
    );
    assert_eq!(
        uas_exit.map(|e| e.success()),
        Some(true),
        "SIPp uas did not finish its call"
    );
    assert!(freed, "slot not freed after BYE");
    let _ = std::fs::remove_dir_all(&dir);
}
