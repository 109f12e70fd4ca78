//! A WebRTC offerer (Chromium: ICE, DTLS-SRTP, rtcp-mux, BUNDLE of audio,
//! video and a data channel) bridged to a plain RTP answerer the way
//! Kamailio's rtpengine module drives the relay (tests/kamailio/
//! kamailio-ws.cfg): `ICE=remove DTLS=off RTP/AVP` on the offer toward the
//! answerer, `ICE=force UDP/TLS/RTP/SAVPF rtcp-mux-require` on the answer
//! back. rtpengine's semantics: those flags describe the SDP to the
//! recipient, so the browser's answer carries the relay's ICE-lite
//! credentials and host candidate, fingerprint, `a=setup:active`,
//! `a=rtcp-mux` and the offer's `a=mid`.
//!
//! Ports: 49000-49199.

use std::net::SocketAddr;

use tern_ng::bencode::{bstr, decode_dict, encode, str_list, Dict, Value};
use tern_ng::{CoreConfig, NgCore};
use tern_shared::table::testing::TempTable;
use tern_shared::table::DtlsRole;

const T0: u64 = 1_700_000_000_000;
const FP: &str = "AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB";

/// What Chromium offers for audio, video and a data channel after ICE
/// gathering (bundle policy `balanced`: a candidate per section).
fn chrome_offer() -> String {
    let ice = "a=ice-ufrag:ChRm\r\na=ice-pwd:chromepasswordchromepass\r\na=ice-options:trickle\r\n";
    let dtls = format!("a=fingerprint:sha-256 {FP}\r\na=setup:actpass\r\n");
    let cand = |port: u16| {
        format!("a=candidate:1467250027 1 udp 2122260223 10.0.0.1 {port} typ host generation 0 network-id 1\r\n")
    };
    format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE 0 1 2\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS s1\r\n\
         m=audio 50000 UDP/TLS/RTP/SAVPF 111 0 8 126\r\nc=IN IP4 10.0.0.1\r\n\
         a=rtcp:9 IN IP4 0.0.0.0\r\n{}{ice}{dtls}a=mid:0\r\n\
         a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendrecv\r\n\
         a=msid:s1 t1\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n\
         a=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\n\
         a=ssrc:1111 cname:abcd\r\n\
         m=video 50002 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 10.0.0.1\r\n\
         a=rtcp:9 IN IP4 0.0.0.0\r\n{}{ice}{dtls}a=mid:1\r\na=sendrecv\r\na=rtcp-mux\r\n\
         a=rtcp-rsize\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
         m=application 50004 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 10.0.0.1\r\n\
         {}{ice}{dtls}a=mid:2\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n",
        cand(50000),
        cand(50002),
        cand(50004),
    )
}

/// SIPp's answer: audio only, video and data rejected, no mid.
fn sipp_answer() -> String {
    "v=0\r\no=user1 53655765 2353687637 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
     m=audio 6000 RTP/AVP 0 126\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\n\
     m=video 0 RTP/AVP 96\r\nm=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        .to_string()
}

struct Fx {
    core: NgCore,
    table: TempTable,
    n: u64,
}

impl Fx {
    fn new(name: &str, lo: u16, hi: u16) -> Fx {
        let table = TempTable::with_media_ip(
            &format!("ngwebrtc-{name}"),
            lo,
            hi,
            1,
            "192.0.2.1".parse().unwrap(),
        )
        .unwrap();
        table.set_dtls_fingerprint(&[0xcd; 32]);
        Fx {
            core: NgCore::new(table.clone(), CoreConfig::default(), T0),
            table,
            n: 0,
        }
    }

    /// Sends `d` as command `cmd` of call `c`; the reply's SDP.
    fn sdp(&mut self, cmd: &str, d: Dict) -> String {
        self.n += 1;
        let mut d = d;
        d.set("command", bstr(cmd))
            .set("call-id", bstr("webrtc"))
            .set("from-tag", bstr("ft"));
        let cookie = format!("c{}", self.n);
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend(encode(&d.into_value()));
        let src: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let reply = self.core.handle(&msg, src, T0 + self.n).expect("a reply");
        let body = reply.strip_prefix(format!("{cookie} ").as_bytes()).unwrap();
        let v = decode_dict(body).unwrap();
        let get = |k: &str| {
            v.get(k.as_bytes())
                .and_then(Value::as_byte_str)
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        assert_eq!(
            get("result").as_deref(),
            Some("ok"),
            "{:?}",
            get("error-reason")
        );
        get("sdp").unwrap()
    }

    /// Kamailio's `rtpengine_offer(... ICE=remove rtcp-mux-demux DTLS=off
    /// RTP/AVP)`, then `rtpengine_answer(... ICE=force rtcp-mux-require
    /// UDP/TLS/RTP/SAVPF)`, as its rtpengine module encodes them.
    fn kamailio_call(&mut self, answer_ice: &str) -> (String, String) {
        let common = || {
            Dict::new()
                .with("flags", str_list(["trust-address"]))
                .with("replace", str_list(["origin", "session-connection"]))
        };
        let offer = self.sdp(
            "offer",
            common()
                .with("sdp", bstr(chrome_offer()))
                .with("ICE", bstr("remove"))
                .with("DTLS", bstr("off"))
                .with("rtcp-mux", str_list(["demux"]))
                .with("transport-protocol", bstr("RTP/AVP")),
        );
        let answer = self.sdp(
            "answer",
            common()
                .with("sdp", bstr(sipp_answer()))
                .with("to-tag", bstr("tt"))
                .with("ICE", bstr(answer_ice))
                .with("rtcp-mux", str_list(["require"]))
                .with("transport-protocol", bstr("UDP/TLS/RTP/SAVPF")),
        );
        (offer, answer)
    }
}

/// The session part and each media section of `sdp`, `m=` line first.
fn sections(sdp: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for l in sdp.split("\r\n").filter(|l| !l.is_empty()) {
        if l.starts_with("m=") {
            out.push(String::new());
        }
        let cur = out.last_mut().unwrap();
        cur.push_str(l);
        cur.push_str("\r\n");
    }
    out
}

fn port_of(section: &str) -> u16 {
    section.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn webrtc_offer_bridged_to_plain_rtp_is_answered_with_ice_dtls_mux_and_mid() {
    let mut f = Fx::new("bridge", 49000, 49099);
    let (offer, answer) = f.kamailio_call("force");

    // Toward SIPp: plain RTP, nothing of ICE, DTLS or BUNDLE; the data
    // channel keeps its protocol (transport-protocol is for RTP only).
    let o = sections(&offer);
    assert_eq!(o.len(), 4, "{offer}");
    assert!(o[1].starts_with("m=audio ") && o[1].contains(" RTP/AVP 111 0 8 126\r\n"));
    assert!(o[2].starts_with("m=video ") && o[2].contains(" RTP/AVP 96 97\r\n"));
    assert!(
        o[3].contains(" UDP/DTLS/SCTP webrtc-datachannel\r\n"),
        "{offer}"
    );
    for bad in [
        "ice-",
        "candidate",
        "fingerprint",
        "setup:",
        "group:BUNDLE",
        "rtcp-mux",
    ] {
        assert!(!offer.contains(bad), "{bad} toward SIPp: {offer}");
    }
    assert!(o[1].contains("a=mid:0\r\n") && o[1].contains("c=IN IP4 192.0.2.1\r\n"));

    // The browser's leg of the audio slot: ICE-lite with its ufrag, the
    // relay connecting (DTLS active, answering actpass); SIPp's: neither.
    let audio = f.core.slots_of("webrtc")[0];
    let (cfg, _) = f.table.read_config(audio).unwrap();
    let ice = cfg.legs[0].secure.ice.expect("ICE-lite toward the browser");
    assert_eq!(ice.remote_ufrag.unwrap().as_str(), "ChRm");
    let dtls = cfg.legs[0].secure.dtls.expect("DTLS toward the browser");
    assert_eq!(dtls.role, DtlsRole::Active);
    assert_eq!(dtls.digest(), &[0xab; 32][..]);
    assert!(cfg.legs[1].secure.ice.is_none() && cfg.legs[1].secure.dtls.is_none());
    assert!(cfg.legs[0].rtcp_mux, "rtcp-mux toward the browser");
    assert!(!cfg.legs[1].rtcp_mux, "SIPp did not take rtcp-mux");

    // Toward the browser.
    let a = sections(&answer);
    assert_eq!(a.len(), 4, "{answer}");
    assert!(a[0].contains("a=ice-lite\r\n"), "{answer}");
    assert!(!a[0].contains("group:BUNDLE"), "{answer}");
    let m = &a[1];
    let port = port_of(m);
    assert_eq!(port, f.table.ports(audio, 0).rtp);
    assert!(m.contains(" UDP/TLS/RTP/SAVPF 0 126\r\n"), "{m}");
    assert!(
        m.contains(&format!("a=ice-ufrag:{}\r\n", ice.local_ufrag.as_str())),
        "{m}"
    );
    assert!(
        m.contains(&format!("a=ice-pwd:{}\r\n", ice.local_pwd.as_str())),
        "{m}"
    );
    assert_eq!(ice.local_pwd.as_str().len(), 24);
    let cands: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    assert_eq!(cands.len(), 1, "one host candidate (rtcp-mux): {m}");
    assert!(
        cands[0].ends_with(&format!(" 192.0.2.1 {port} typ host")),
        "{m}"
    );
    assert!(m.contains(&format!(
        "a=fingerprint:sha-256 {}\r\n",
        ["CD"; 32].join(":")
    )));
    assert!(
        m.contains("a=setup:active\r\n") && !m.contains("AB:AB"),
        "{m}"
    );
    assert!(
        m.contains("a=rtcp-mux\r\n") && m.contains("a=mid:0\r\n"),
        "{m}"
    );
    assert!(!m.contains("ChRm") && !m.contains("10.0.0.2"), "{m}");
    // The rejected video and data sections still name the offer's mids.
    assert!(
        a[2].starts_with("m=video 0 ") && a[2].contains("a=mid:1\r\n"),
        "{answer}"
    );
    assert!(a[3].starts_with("m=application 0 ") && a[3].contains("a=mid:2\r\n"));
    assert!(!a[2].contains("candidate") && !a[3].contains("ice-ufrag"));
    assert_eq!(
        f.core.slots_of("webrtc").len(),
        1,
        "rejected slots released"
    );
}

#[test]
fn ice_default_also_answers_an_ice_offerer_and_remove_does_not() {
    let mut f = Fx::new("default", 49100, 49149);
    let (_, answer) = f.kamailio_call("default");
    assert!(
        answer.contains("a=ice-ufrag:") && answer.contains("typ host"),
        "{answer}"
    );
    assert!(answer.contains("a=setup:active\r\n"), "{answer}");

    let mut f = Fx::new("remove", 49150, 49199);
    let (_, answer) = f.kamailio_call("remove");
    assert!(
        !answer.contains("ice-") && !answer.contains("candidate"),
        "{answer}"
    );
    let (cfg, _) = f.table.read_config(f.core.slots_of("webrtc")[0]).unwrap();
    assert!(
        cfg.legs[0].secure.ice.is_none(),
        "no ICE toward the browser"
    );
    assert!(cfg.legs[0].secure.dtls.is_some(), "DTLS still terminated");
}
