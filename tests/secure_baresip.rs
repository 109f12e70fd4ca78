//! A second, independent secure stack: baresip (libre/librem, its `srtp`
//! and `dtls_srtp` modules) places a call through stock Kamailio, whose
//! `rtpengine` module drives `tern relay` over ng, to SIPp's
//! `uas -rtp_echo`:
//!
//! ```text
//! baresip (SRTP or DTLS-SRTP) → tern → SIPp uas -rtp_echo (plain RTP)
//! ```
//!
//! tern terminates the protection on the leg facing baresip (SDES
//! `a=crypto`, or a DTLS handshake tern starts as `a=setup:active`) and
//! forwards plain RTP toward SIPp; SIPp's echo comes back through tern,
//! protected again, to baresip.
//!
//! baresip will not place media on loopback, so it runs in a network
//! namespace of its own, joined to the host by a veth pair; Kamailio, tern
//! and SIPp run on the host end's address. The namespace and the veth are
//! removed when the test ends, whatever happens.
//!
//! Skips, saying so, without baresip, kamailio, sipp, or root for
//! `ip netns`.

mod common;
use common::baresip::*;
use common::*;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// The two tests share the host's namespaces and CPU: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// baresip's `config` and `accounts` in `dir`.
fn write_baresip_config(dir: &Path, net: &Netns, wav: &Path, mediaenc: &str, rtcp_mux: bool) {
    let config = format!(
        "poll_method\t\tepoll\n\
         sip_listen\t\t{peer}:5060\n\
         sip_trans_def\t\tudp\n\
         call_local_timeout\t60\n\
         call_max_calls\t\t1\n\
         audio_source\t\taufile,{wav}\n\
         audio_srate\t\t8000\n\
         audio_channels\t\t1\n\
         rtp_tos\t\t\t0\n\
         rtp_ports\t\t40000-40099\n\
         rtp_timeout\t\t0\n\
         rtcp_mux\t\t{mux}\n\
         jitter_buffer_delay\t1-10\n\
         dns_fallback\t\t127.0.0.1:53\n\
         net_interface\t\t{ifname}\n\
         module_path\t\t/usr/lib/baresip/modules\n\
         module\t\t\tg711.so\n\
         module\t\t\taufile.so\n\
         module\t\t\tsrtp.so\n\
         module\t\t\tdtls_srtp.so\n\
         module_app\t\taccount.so\n\
         module_app\t\tmenu.so\n",
        peer = net.peer,
        wav = wav.display(),
        ifname = net.ns_if,
        mux = if rtcp_mux { "yes" } else { "no" },
    );
    std::fs::write(dir.join("config"), config).expect("write config");
    let accounts = format!(
        "<sip:alice@{host}>;regint=0;mediaenc={mediaenc};audio_codecs=PCMU\n",
        host = net.host
    );
    std::fs::write(dir.join("accounts"), accounts).expect("write accounts");
    // No contacts; an empty file keeps baresip from writing a template.
    std::fs::write(dir.join("contacts"), "").expect("write contacts");
}

/// Leg A's counters of the one active slot of `instance`, if any.
fn mid_call_stats(instance: &str) -> Option<tern_shared::table::LegStats> {
    use tern_shared::table::{SlotState, SlotTable};
    let t = SlotTable::open(instance).ok()?;
    (0..t.capacity())
        .filter(|&id| t.state(id) == SlotState::Active)
        .find_map(|id| t.stats(id, 0).ok())
}

enum Keying {
    Sdes,
    Dtls,
}

fn secure_call(keying: Keying) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !prerequisites() {
        return;
    }
    // DTLS-SRTP with RTCP on its own port needs a second handshake on
    // that port (RFC 5764 §4.1), which baresip waits for as the DTLS
    // server and tern does not start: its RTCP would stay plain, and be
    // dropped. With rtcp-mux, RTP and RTCP share the one session.
    let (tag, mediaenc, octet_off, ports, rtcp_mux) = match keying {
        Keying::Sdes => ("s", "srtp-mand", 0, "31900-31949", false),
        Keying::Dtls => ("d", "dtls_srtp", 1, "31950-31999", true),
    };
    let pid = std::process::id();
    let net = Netns::create(tag, 16 + (pid % 110) * 2 + octet_off);
    let host = net.host.clone();

    let dir = sipp_workdir(&format!("secure-bs-{tag}"));
    let wav = dir.join("tone.wav");
    write_sine_wav(&wav, CALL_SECS as u32 + 4);
    let cfgdir = dir.join("baresip");
    std::fs::create_dir_all(&cfgdir).unwrap();
    write_baresip_config(&cfgdir, &net, &wav, mediaenc, rtcp_mux);

    let instance = format!("secure-bs-{tag}-{pid}");
    let ng = free_port();
    let (tern, tern_lines) = spawn_relay(&instance, ports, ng, &["--media-ip", &host]);

    // Every SIP and SDP address on the host side is the veth's own, which
    // no other test uses: fixed ports are safe here.
    let (kam_port, uas_port, uas_media) = (5060u16, 5070u16, 6000u16);
    let kam = start_kamailio(
        "kamailio-srtp.cfg",
        &dir.join("kamailio-run"),
        &host,
        kam_port,
        ng,
        free_port(),
    );
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            &host,
            "-p",
            &uas_port.to_string(),
            "-mp",
            &uas_media.to_string(),
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
        &format!("{host}:{uas_port}"),
        &format!("{host}:{kam_port}"),
        free_port(),
        &dir,
    );

    let watch = SlotWatch::start(&instance);
    let (mut baresip, bs_lines) =
        start_baresip(&net, &cfgdir, &format!("sip:bob@{host}:{kam_port}"));
    // Mid-call, well before baresip hangs up: the counters of the leg
    // facing it, while SRTP flows both ways.
    std::thread::sleep(Duration::from_secs(CALL_SECS - 2));
    let mid = mid_call_stats(&instance);
    // baresip hangs up (BYE) at -t, then may linger on its own pending
    // transactions: it is stopped (SIGTERM) a while after.
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
    drop(kam);
    drop(uas);
    let tern_out = tern_lines.lock().unwrap().join("\n");
    drop(tern);
    unlink_table(&instance);
    drop(net);

    eprintln!("baresip exit: {bs_exit:?}; uas exit: {uas_exit:?}; slots seen: {seen:#?}");
    assert!(
        bs_out.to_ascii_lowercase().contains("established"),
        "baresip did not report the call established:\n{bs_out}"
    );
    assert!(
        bs_out.contains("terminated (duration"),
        "baresip did not hang up its call:\n{bs_out}"
    );
    assert_eq!(seen.len(), 1, "expected one slot for one call: {seen:?}");
    let slot = &seen[0];
    let [caller, callee] = slot.legs;
    let sec = slot.cfg.legs[0].secure;
    match keying {
        Keying::Sdes => assert!(
            sec.rx.is_some() && sec.tx.is_some(),
            "leg A (baresip) is not SDES-SRTP: {sec:?}"
        ),
        Keying::Dtls => assert!(
            sec.dtls.is_some(),
            "leg A (baresip) is not DTLS-SRTP: {sec:?}"
        ),
    }
    assert!(
        slot.cfg.legs[1].secure.is_plain(),
        "leg B (SIPp) should be plain: {:?}",
        slot.cfg.legs[1].secure
    );
    let mid = mid.expect("no active slot in the middle of the call");
    eprintln!("leg A mid-call: {mid:?}");
    assert!(mid.rx_packets > 50, "baresip -> tern mid-call: {mid:?}");
    assert!(mid.tx_packets > 50, "tern -> baresip mid-call: {mid:?}");
    assert_eq!(
        mid.drop_srtp_auth, 0,
        "SRTP/SRTCP auth failures mid-call: {mid:?}"
    );
    assert!(
        caller.rx_packets > 50,
        "baresip -> tern (SRTP, unprotected): {caller:?}"
    );
    // baresip 1.0 sends its closing RTCP BYE in the clear, after its SRTP
    // context is gone: that one packet fails authentication, as it must.
    assert!(
        caller.drop_srtp_auth <= 1,
        "SRTP/SRTCP auth failures beyond baresip's plain closing RTCP BYE: {caller:?}"
    );
    assert!(callee.tx_packets > 50, "tern -> SIPp (plain): {callee:?}");
    assert!(callee.rx_packets > 50, "SIPp's echo -> tern: {callee:?}");
    assert!(
        caller.tx_packets > 50,
        "tern -> baresip (SRTP, protected): {caller:?}"
    );
    assert_eq!(
        uas_exit.map(|s| s.success()),
        Some(true),
        "SIPp uas did not finish its call (BYE from baresip?)"
    );
    assert!(freed, "slot not freed after BYE");
    assert!(tern_out.contains("tern relay"), "{tern_out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn baresip_sdes_srtp_through_kamailio_and_tern_to_sipp_echo() {
    secure_call(Keying::Sdes);
}

#[test]
fn baresip_dtls_srtp_through_kamailio_and_tern_to_sipp_echo() {
    secure_call(Keying::Dtls);
}
