//! The `codec` operations against rtpengine 10.5 itself: the same offer
//! (PCMU, PCMA, G722, opus, telephone-event) with each codec-flag
//! combination goes to a userspace rtpengine (`--table=-1`) and to `tern
//! relay`; the `m=` formats and the `a=rtpmap`/`a=fmtp`/`a=rtcp-fb` lines
//! of both outputs must be the same, after [`normalize`]. Where tern
//! differs on purpose (docs/NG.md, "Differential differences"), the test
//! asserts that documented difference instead.
//!
//! Ports: tern's ng 18230 and media 21800-21899, rtpengine's ng 18231 and
//! media 21900-21999. Skips, saying so, when rtpengine is not installed.

mod common;
use common::ng::{ng_exchange, str_of, BDict};
use common::rtpengine::{have_rtpengine, Rtpengine};
use common::*;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};

use tern_ng::bencode::{bstr, str_list, Dict};

const TERN_NG: u16 = 18230;
const RTPE_NG: u16 = 18231;

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// The rtpmap (and fmtp, rtcp-fb) lines of the test's codecs.
fn codec_lines(pt: &str) -> &'static str {
    match pt {
        "0" => "a=rtpmap:0 PCMU/8000\r\n",
        "8" => "a=rtpmap:8 PCMA/8000\r\n",
        "9" => "a=rtpmap:9 G722/8000\r\n",
        "111" => {
            "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
             a=rtcp-fb:111 transport-cc\r\n"
        }
        "101" => "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
        _ => "",
    }
}

/// An SDP from port `port` with payload types `pts` (space-separated),
/// every one with its rtpmap.
fn sdp(port: u16, pts: &str) -> String {
    let maps: String = pts.split(' ').map(codec_lines).collect();
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {pts}\r\n{maps}a=sendrecv\r\n"
    )
}

const OFFER_PTS: &str = "0 8 9 111 101";

/// What the comparison looks at: each `m=` line with its port made
/// `PORT`, and the set of codec attribute lines. Everything else (`o=`
/// versions, `c=` addresses, ICE and candidates, `a=rtcp`, `a=ssrc`,
/// direction and secure-media attributes) is left out.
#[derive(Debug, PartialEq, Eq)]
struct Norm {
    media: Vec<String>,
    codecs: BTreeSet<String>,
}

fn normalize(sdp: &str) -> Norm {
    let mut media = Vec::new();
    let mut codecs = BTreeSet::new();
    for l in sdp.lines().map(str::trim_end) {
        if let Some(v) = l.strip_prefix("m=") {
            let mut w: Vec<&str> = v.split(' ').filter(|s| !s.is_empty()).collect();
            if w.len() > 1 {
                w[1] = "PORT";
            }
            media.push(format!("m={}", w.join(" ")));
        } else if ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .any(|p| l.starts_with(p))
        {
            codecs.insert(l.to_string());
        }
    }
    Norm { media, codecs }
}

struct Both {
    sock: UdpSocket,
    n: u32,
}

impl Both {
    fn ng(&mut self, port: u16, d: Dict) -> BDict {
        self.n += 1;
        let r = ng_exchange(&self.sock, addr(port), &format!("c{}", self.n), d);
        assert_eq!(str_of(&r, "result"), "ok", "{port}: {r:?}");
        r
    }

    /// Sends the offer (and the answer, when given) of case `name` to
    /// both relays; returns (rtpengine's, tern's) replies, offer then
    /// answer.
    fn call(
        &mut self,
        name: &str,
        offer: &str,
        extra: &[(&str, tern_ng::bencode::Value)],
        answer: Option<(&str, &[(&str, tern_ng::bencode::Value)])>,
    ) -> Vec<(BDict, BDict)> {
        let mut out = Vec::new();
        let mut replies = [Vec::new(), Vec::new()];
        for (k, port) in [RTPE_NG, TERN_NG].into_iter().enumerate() {
            let call_id = format!("{name}-{port}-{}", std::process::id());
            let mut d = Dict::new()
                .with("command", bstr("offer"))
                .with("call-id", bstr(call_id.as_str()))
                .with("from-tag", bstr("ft"))
                .with("sdp", bstr(offer));
            for (key, v) in extra {
                d.set(key, v.clone());
            }
            replies[k].push(self.ng(port, d));
            if let Some((pts, aextra)) = answer {
                let mut d = Dict::new()
                    .with("command", bstr("answer"))
                    .with("call-id", bstr(call_id.as_str()))
                    .with("from-tag", bstr("ft"))
                    .with("to-tag", bstr("tt"))
                    .with("sdp", bstr(sdp(42000, pts)));
                for (key, v) in aextra {
                    d.set(key, v.clone());
                }
                replies[k].push(self.ng(port, d));
            }
            let del = Dict::new()
                .with("command", bstr("delete"))
                .with("call-id", bstr(call_id.as_str()));
            self.ng(port, del);
        }
        let [r, t] = replies;
        for (a, b) in r.into_iter().zip(t) {
            out.push((a, b));
        }
        out
    }
}

fn codec(ops: &[(&str, &[&str])]) -> tern_ng::bencode::Value {
    let mut d = Dict::new();
    for (k, v) in ops {
        d.set(k, str_list(v.iter()));
    }
    d.into_value()
}

/// The normalized SDPs of a reply pair, with their text for messages.
fn norms(pair: &(BDict, BDict)) -> (Norm, Norm, String) {
    let (r, t) = (str_of(&pair.0, "sdp"), str_of(&pair.1, "sdp"));
    let text = format!("rtpengine:\n{r}\ntern:\n{t}");
    (normalize(&r), normalize(&t), text)
}

#[test]
fn codec_flags_match_rtpengine() {
    if !have_rtpengine() {
        return;
    }
    let _rtpe = Rtpengine::start_on(RTPE_NG, &["127.0.0.1"], 21900, 21999, &["--delete-delay=0"]);
    let instance = format!("codec-diff-{}", std::process::id());
    let (mut tern, _) = spawn_relay(&instance, "21800-21899", TERN_NG, &[]);
    let mut both = Both {
        sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
        n: 0,
    };
    let offer = sdp(40000, OFFER_PTS);
    let none: &[(&str, tern_ng::bencode::Value)] = &[];
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, tern_ng::bencode::Value)>,
        Option<(&'a str, Vec<(&'a str, tern_ng::bencode::Value)>)>,
    );
    let cases: Vec<Case> = vec![
        ("no-flags", vec![], Some(("0 8 101", vec![]))),
        (
            "strip-pcmu",
            vec![("codec", codec(&[("strip", &["PCMU"])]))],
            None,
        ),
        (
            "strip-all-offer-pcma",
            vec![("codec", codec(&[("strip", &["all"]), ("offer", &["PCMA"])]))],
            Some(("8", vec![])),
        ),
        (
            "strip-all-offer-order",
            vec![(
                "codec",
                codec(&[("strip", &["all"]), ("offer", &["opus", "PCMA", "G722"])]),
            )],
            None,
        ),
        (
            "mask-pcma",
            vec![("codec", codec(&[("mask", &["PCMA"])]))],
            Some(("0 9 101", vec![])),
        ),
        (
            "strip-all-except-opus",
            vec![(
                "codec",
                codec(&[("strip", &["all"]), ("except", &["opus"])]),
            )],
            None,
        ),
        (
            "except-opus-and-events",
            vec![(
                "codec",
                codec(&[
                    ("strip", &["all"]),
                    ("except", &["opus", "telephone-event"]),
                ]),
            )],
            Some(("111", vec![])),
        ),
        (
            "legacy-flags",
            vec![(
                "flags",
                str_list([
                    "codec-strip-PCMU",
                    "codec-mask-G722",
                    "codec-set-opus/48000/2",
                ]),
            )],
            None,
        ),
        (
            "legacy-strip-all-offer",
            vec![(
                "flags",
                str_list(["codec-strip-all", "codec-offer-opus", "codec-offer-PCMU"]),
            )],
            None,
        ),
        (
            "strip-number",
            vec![("codec", codec(&[("strip", &["0", "101"])]))],
            None,
        ),
        (
            "strip-events",
            vec![("codec", codec(&[("strip", &["telephone-event"])]))],
            None,
        ),
        (
            "strip-case",
            vec![(
                "codec",
                codec(&[("strip", &["pcmu", "OPUS/48000/2", "ALL"])]),
            )],
            None,
        ),
        (
            "strip-opus-mono-name",
            vec![("codec", codec(&[("strip", &["opus/48000"])]))],
            None,
        ),
        (
            "set-opus",
            vec![("codec", codec(&[("set", &["opus/48000/2"])]))],
            None,
        ),
        (
            "strip-all-alone",
            vec![("codec", codec(&[("strip", &["all"])]))],
            None,
        ),
        (
            "strip-then-offer-pcmu",
            vec![(
                "codec",
                codec(&[("strip", &["PCMU"]), ("offer", &["PCMU"])]),
            )],
            None,
        ),
        (
            "answer-after-strip",
            vec![("codec", codec(&[("strip", &["PCMU"])]))],
            Some(("8 9 101", vec![])),
        ),
        (
            "answer-stray-codec",
            vec![("codec", codec(&[("strip", &["PCMU"])]))],
            Some(("0 8 101", vec![])),
        ),
        (
            "answer-touched-rate",
            vec![("codec", codec(&[("strip", &["PCMU"])]))],
            Some(("111 101", vec![])),
        ),
        (
            "strip-in-answer",
            vec![],
            Some(("0 8 101", vec![("codec", codec(&[("strip", &["PCMA"])]))])),
        ),
        (
            "single-codec",
            vec![],
            Some(("111 0 101", vec![("flags", str_list(["single-codec"]))])),
        ),
    ];
    for (name, extra, answer) in &cases {
        let answer = answer.as_ref().map(|(p, e)| (*p, e.as_slice()));
        for (i, pair) in both.call(name, &offer, extra, answer).iter().enumerate() {
            let (r, t, text) = norms(pair);
            assert_eq!(r, t, "case {name}, message {i}:\n{text}");
            assert_eq!(str_of(&pair.1, "warning"), "", "case {name}: tern warned");
        }
    }

    // Documented differences (docs/NG.md, "Differential differences").
    // 1. rtpengine synthesises telephone-event/48000 for re-added opus
    //    (a transcoded DTMF payload type); tern cannot, and warns.
    let extra = [(
        "codec",
        codec(&[
            ("strip", &["all"]),
            ("except", &["telephone-event"]),
            ("offer", &["opus"]),
        ]),
    )];
    let pair = &both.call("synth-events", &offer, &extra, None)[0];
    let (r, t, text) = norms(pair);
    assert_eq!(t.media, ["m=audio PORT RTP/AVP 111"], "{text}");
    assert_eq!(r.media.len(), 1, "{text}");
    let extra_pt = r.media[0].strip_prefix("m=audio PORT RTP/AVP 111 ");
    let pt = extra_pt.unwrap_or_else(|| panic!("rtpengine added no payload type: {text}"));
    assert!(
        r.codecs
            .contains(&format!("a=rtpmap:{pt} telephone-event/48000")),
        "{text}"
    );
    assert!(t.codecs.is_subset(&r.codecs), "{text}");
    assert!(
        str_of(&pair.1, "warning").contains("telephone-event/48000 not added"),
        "{:?}",
        pair.1
    );
    // 2. rtpengine writes an a=rtpmap for static payload types that have
    //    none; tern leaves the SDP's lines as they are.
    let bare = offer.replace("a=rtpmap:0 PCMU/8000\r\n", "");
    let extra = [("codec", codec(&[("strip", &["PCMA"])]))];
    let pair = &both.call("static-rtpmap", &bare, &extra, None)[0];
    let (r, t, text) = norms(pair);
    assert_eq!(r.media, t.media, "{text}");
    let added: Vec<&String> = r.codecs.difference(&t.codecs).collect();
    assert_eq!(added, ["a=rtpmap:0 PCMU/8000"], "{text}");
    assert!(t.codecs.is_subset(&r.codecs), "{text}");
    // 3. An answer left with only telephone-event: rtpengine writes an
    //    m= line with no formats; tern keeps the telephone-event.
    let answer_extra = [("codec", codec(&[("strip", &["PCMU", "PCMA"])]))];
    let pairs = both.call(
        "answer-only-events",
        &offer,
        none,
        Some(("0 8 101", &answer_extra)),
    );
    let (r, t, text) = norms(&pairs[1]);
    assert_eq!(r.media, ["m=audio PORT RTP/AVP"], "{text}");
    assert_eq!(t.media, ["m=audio PORT RTP/AVP 101"], "{text}");
    // 4. transcode of a codec tern has no coder for: rtpengine adds
    //    G729; tern offers what it has and warns.
    let extra = [("codec", codec(&[("transcode", &["G729"])]))];
    let pair = &both.call("transcode", &offer, &extra, None)[0];
    let (r, t, text) = norms(pair);
    assert_eq!(t.media, ["m=audio PORT RTP/AVP 0 8 9 111 101"], "{text}");
    assert!(r.media[0].contains(" 18 "), "{text}");
    assert!(
        str_of(&pair.1, "warning").contains("codec G729 cannot be transcoded by tern"),
        "{:?}",
        pair.1
    );
    let _ = tern.stop();
    unlink_table(&instance);
}

#[test]
fn normalize_keeps_only_formats_and_codec_lines() {
    let a = "v=0\r\no=- 5 7 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             m=audio 30000 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtcp:30001\r\n\
             a=ssrc:1 cname:x\r\na=candidate:1 1 UDP 1 10.0.0.1 30000 typ host\r\n\
             a=rtpmap:0 PCMU/8000\r\n";
    let b = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 2000 RTP/AVP 8 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=sendrecv\r\n";
    assert_eq!(normalize(a), normalize(b));
    // Order of formats matters, and so does a missing line.
    assert_ne!(normalize(a), normalize(&b.replace("8 0", "0 8")));
    assert_ne!(
        normalize(a),
        normalize(&b.replace("a=rtpmap:0 PCMU/8000\r\n", ""))
    );
}
