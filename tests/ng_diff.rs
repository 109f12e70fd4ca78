//! Differential test: the same ng commands go to rtpengine 10.5 and to
//! `tern relay`, and the SDPs they return are compared after
//! normalisation (ports, o= session id and version, ICE credentials,
//! candidate foundations and priorities, fingerprints, SDES keys). The
//! expected SDPs are rtpengine's, live, never frozen fixtures.
//!
//! Every difference must be listed in [`KNOWN`] with its justification,
//! which docs/NG.md ("Differential differences") repeats; a listed
//! difference that no longer occurs fails too, so the list stays true.
//!
//! Ports: rtpengine media 22100-22199 and 22300-22349, tern 22200-22299
//! and 22510-22699 (below the
//! kernel's ephemeral range), ng on free ports; instance `ngdiff-PID`.

mod common;
use common::ng::{ng_exchange, str_of, BDict};
use common::rtpengine::{have_rtpengine, Rtpengine};
use common::*;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};

use tern_ng::bencode::{bstr, str_list, Dict};

/// One relay under test: where its ng socket is.
struct Peer<'a> {
    name: &'static str,
    ng: SocketAddr,
    sock: &'a UdpSocket,
    cookie: std::cell::Cell<u32>,
}

impl Peer<'_> {
    fn send(&self, d: Dict) -> BDict {
        let n = self.cookie.get() + 1;
        self.cookie.set(n);
        ng_exchange(self.sock, self.ng, &format!("{}{n}", self.name), d)
    }
}

/// A step's SDP, or its result and error when it has none.
fn sdp_or_result(r: &BDict) -> String {
    let sdp = str_of(r, "sdp");
    if sdp.is_empty() {
        format!(
            "result={} error-reason={}",
            str_of(r, "result"),
            str_of(r, "error-reason")
        )
    } else {
        sdp
    }
}

/// SDP with what legitimately varies between runs and relays replaced by
/// placeholders, as one sorted set of lines per section (attribute order
/// is not meaningful in SDP, RFC 8866 §5 aside from m= grouping).
fn normalize(sdp: &str, ports: &mut Vec<String>) -> Vec<Vec<String>> {
    // A port becomes P<n>, n counting distinct ports in order of first
    // appearance over the steps of one case: which steps share a port
    // (a fork's own port, a re-answer's) is compared, not the numbers.
    let mut label = |p: &str| -> String {
        let i = match ports.iter().position(|q| q == p) {
            Some(i) => i,
            None => {
                ports.push(p.to_string());
                ports.len() - 1
            }
        };
        format!("P{i}")
    };
    let mut sections: Vec<Vec<String>> = vec![Vec::new()];
    for line in sdp.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let l = if let Some(rest) = line.strip_prefix("m=") {
            sections.push(Vec::new());
            let mut f: Vec<&str> = rest.split(' ').collect();
            let l;
            if f.len() > 1 && f[1] != "0" {
                l = label(f[1]);
                f[1] = &l;
            }
            format!("m={}", f.join(" "))
        } else if let Some(rest) = line.strip_prefix("o=") {
            let f: Vec<&str> = rest.split(' ').collect();
            match f.as_slice() {
                [user, _, _, rest @ ..] => format!("o={user} SID VER {}", rest.join(" ")),
                _ => line.to_string(),
            }
        } else if let Some(rest) = line.strip_prefix("a=rtcp:") {
            let f: Vec<&str> = rest.split(' ').collect();
            let tail = f.get(1..).map(|t| t.join(" ")).unwrap_or_default();
            let p = label(f.first().copied().unwrap_or(""));
            format!("a=rtcp:{p} {tail}").trim_end().to_string()
        } else if line.starts_with("a=ice-ufrag:") {
            "a=ice-ufrag:X".into()
        } else if line.starts_with("a=ice-pwd:") {
            "a=ice-pwd:X".into()
        } else if let Some(rest) = line.strip_prefix("a=candidate:") {
            let f: Vec<&str> = rest.split(' ').collect();
            match f.as_slice() {
                [_, comp, proto, _, ip, _, rest @ ..] => {
                    format!(
                        "a=candidate:F {comp} {} PRIO {ip} PORT {}",
                        proto.to_ascii_lowercase(),
                        rest.join(" ")
                    )
                }
                _ => line.to_string(),
            }
        } else if let Some(rest) = line.strip_prefix("a=fingerprint:") {
            format!(
                "a=fingerprint:{} X",
                rest.split(' ').next().unwrap_or("").to_ascii_lowercase()
            )
        } else if let Some(rest) = line.strip_prefix("a=crypto:") {
            let f: Vec<&str> = rest.split(' ').collect();
            format!(
                "a=crypto:{} {} inline:KEY",
                f.first().unwrap_or(&""),
                f.get(1).unwrap_or(&"")
            )
        } else if let Some(rest) = line.strip_prefix("a=ssrc:") {
            let attr = rest.split_once(' ').map_or("", |(_, a)| a);
            let name = attr.split(':').next().unwrap_or("");
            format!("a=ssrc:SSRC {name}")
        } else {
            line.to_string()
        };
        if let Some(s) = sections.last_mut() {
            s.push(l);
        }
    }
    for s in &mut sections {
        // The m= line first, the rest sorted.
        if s.first().is_some_and(|l| l.starts_with("m=")) {
            s[1..].sort();
        } else {
            s.sort();
        }
    }
    sections
}

/// A difference listed and justified: in case `case`, lines starting with
/// `line` appear only in `only_in` ("tern" or "rtpengine").
struct Known {
    case: &'static str,
    only_in: &'static str,
    line: &'static str,
    /// The justification (docs/NG.md repeats it).
    #[allow(dead_code)]
    why: &'static str,
}

/// Every justified difference; docs/NG.md "Differential differences"
/// says the same.
const KNOWN: &[Known] = &[
    Known {
        case: "*",
        only_in: "tern",
        line: "a=ice-lite",
        why: "tern is ICE-lite and says so (RFC 8445 §5.3); rtpengine is a full ICE agent",
    },
    Known {
        case: "plain to SDES",
        only_in: "rtpengine",
        line: "a=crypto:4 AES_256_CM_HMAC_SHA1_32 ",
        why: "a suite tern does not implement: it offers AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES_256_CM_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_80/32 (under rtpengine's tags)",
    },
    Known {
        case: "plain to SDES",
        only_in: "rtpengine",
        line: "a=crypto:5 AES_192_CM_HMAC_SHA1_80 ",
        why: "a suite tern does not implement: it offers AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES_256_CM_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_80/32 (under rtpengine's tags)",
    },
    Known {
        case: "plain to SDES",
        only_in: "rtpengine",
        line: "a=crypto:6 AES_192_CM_HMAC_SHA1_32 ",
        why: "a suite tern does not implement: it offers AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES_256_CM_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_80/32 (under rtpengine's tags)",
    },
    Known {
        case: "plain to SDES",
        only_in: "rtpengine",
        line: "a=crypto:9 F8_128_HMAC_SHA1_80 ",
        why: "a suite tern does not implement: it offers AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES_256_CM_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_80/32 (under rtpengine's tags)",
    },
    Known {
        case: "plain to SDES",
        only_in: "rtpengine",
        line: "a=crypto:10 F8_128_HMAC_SHA1_32 ",
        why: "a suite tern does not implement: it offers AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES_256_CM_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_80/32 (under rtpengine's tags)",
    },
    Known {
        case: "plain to SDES",
        only_in: "rtpengine",
        line: "a=crypto:11 NULL_HMAC_SHA1_80 ",
        why: "a suite tern does not implement: it offers AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES_256_CM_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_80/32 (under rtpengine's tags)",
    },
    Known {
        case: "plain to SDES",
        only_in: "rtpengine",
        line: "a=crypto:12 NULL_HMAC_SHA1_32 ",
        why: "a suite tern does not implement: it offers AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES_256_CM_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_80/32 (under rtpengine's tags)",
    },
    Known {
        case: "plain to SDES",
        only_in: "rtpengine",
        line: "a=fingerprint:",
        why: "rtpengine offers DTLS-SRTP beside SDES on RTP/SAVP; tern offers DTLS-SRTP only on UDP/TLS/RTP/SAVP(F) (RFC 5764 §8), SDES on RTP/SAVP",
    },
    Known {
        case: "plain to SDES",
        only_in: "rtpengine",
        line: "a=setup:actpass",
        why: "rtpengine offers DTLS-SRTP beside SDES on RTP/SAVP; tern offers DTLS-SRTP only on UDP/TLS/RTP/SAVP(F) (RFC 5764 §8), SDES on RTP/SAVP",
    },
];

fn covered(case: &str, only_in: &str, line: &str) -> Option<usize> {
    KNOWN.iter().position(|k| {
        (k.case == "*" || k.case == case) && k.only_in == only_in && line.starts_with(k.line)
    })
}

const OFFER: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n";
const ANSWER: &str = "v=0\r\no=bob 2808844564 2808844564 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

fn offer(call: &str, sdp: &str) -> Dict {
    Dict::new()
        .with("command", bstr("offer"))
        .with("call-id", bstr(call))
        .with("from-tag", bstr("ftag"))
        .with("received-from", str_list(["IP4", "127.0.0.1"]))
        .with("sdp", bstr(sdp))
}

fn answer(call: &str, sdp: &str) -> Dict {
    Dict::new()
        .with("command", bstr("answer"))
        .with("call-id", bstr(call))
        .with("from-tag", bstr("ftag"))
        .with("to-tag", bstr("ttag"))
        .with("received-from", str_list(["IP4", "127.0.0.1"]))
        .with("sdp", bstr(sdp))
}

fn with_sdp_lines(base: &str, extra_media: &str) -> String {
    format!("{base}{extra_media}")
}

type Drive = Box<dyn Fn(&Peer, &str) -> Vec<String>>;

/// The cases: each drives one relay and returns the SDPs (or results) of
/// its steps, in order.
fn cases() -> Vec<(&'static str, Drive)> {
    let offer_answer = |o: Dict, a: Option<Dict>| -> Drive {
        Box::new(move |p: &Peer, call: &str| {
            let mut out = Vec::new();
            let mut o = o.clone();
            o.set("call-id", bstr(call));
            out.push(sdp_or_result(&p.send(o)));
            if let Some(a) = &a {
                let mut a = a.clone();
                a.set("call-id", bstr(call));
                out.push(sdp_or_result(&p.send(a)));
            }
            let d = Dict::new()
                .with("command", bstr("delete"))
                .with("call-id", bstr(call))
                .with("from-tag", bstr("ftag"));
            p.send(d);
            out
        })
    };
    let ice_offer = with_sdp_lines(
        OFFER,
        "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\na=candidate:1 1 UDP 2130706431 127.0.0.1 30000 typ host\r\na=candidate:1 2 UDP 2130706430 127.0.0.1 30001 typ host\r\n",
    );
    let mux_offer = with_sdp_lines(OFFER, "a=rtcp-mux\r\n");
    let hold_offer = OFFER.replace("a=sendrecv", "a=sendonly");
    let zero_hold = OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
    let two_m = with_sdp_lines(
        OFFER,
        "m=video 30002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
    );
    let rejected = with_sdp_lines(OFFER, "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n");
    let sdes_offer = OFFER.replace("RTP/AVP", "RTP/SAVP").replace(
        "a=sendrecv",
        "a=sendrecv\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
    );
    let ptime = with_sdp_lines(OFFER, "a=ptime:20\r\n");
    let v: Vec<(&'static str, Drive)> = vec![
        (
            "plain offer/answer",
            offer_answer(offer("", OFFER), Some(answer("", ANSWER))),
        ),
        (
            "rtcp-mux offer",
            offer_answer(offer("", OFFER).with("rtcp-mux", str_list(["offer"])), None),
        ),
        (
            "rtcp-mux demux",
            offer_answer(
                offer("", &mux_offer).with("rtcp-mux", str_list(["demux"])),
                Some(answer("", ANSWER)),
            ),
        ),
        (
            "rtcp-mux accept",
            offer_answer(
                offer("", &mux_offer).with("rtcp-mux", str_list(["accept"])),
                Some(answer("", &with_sdp_lines(ANSWER, "a=rtcp-mux\r\n"))),
            ),
        ),
        (
            "rtcp-mux reject",
            offer_answer(
                offer("", &mux_offer).with("rtcp-mux", str_list(["reject"])),
                None,
            ),
        ),
        (
            "rtcp-mux passed",
            offer_answer(
                offer("", &mux_offer),
                Some(answer("", &with_sdp_lines(ANSWER, "a=rtcp-mux\r\n"))),
            ),
        ),
        (
            "ICE remove",
            offer_answer(
                offer("", &ice_offer).with("ICE", bstr("remove")),
                Some(answer("", ANSWER)),
            ),
        ),
        (
            "ICE force",
            offer_answer(offer("", OFFER).with("ICE", bstr("force")), None),
        ),
        (
            "replace origin",
            offer_answer(offer("", OFFER).with("replace", str_list(["origin"])), None),
        ),
        (
            "replace session-connection",
            offer_answer(
                offer("", OFFER).with("replace", str_list(["origin", "session-connection"])),
                None,
            ),
        ),
        ("hold sendonly", offer_answer(offer("", &hold_offer), None)),
        ("hold c=0.0.0.0", offer_answer(offer("", &zero_hold), None)),
        ("audio and video", offer_answer(offer("", &two_m), None)),
        ("rejected video", offer_answer(offer("", &rejected), None)),
        (
            "SDES to plain",
            offer_answer(
                offer("", &sdes_offer).with("transport-protocol", bstr("RTP/AVP")),
                Some(answer("", ANSWER)),
            ),
        ),
        (
            "plain to SDES",
            offer_answer(
                offer("", OFFER).with("transport-protocol", bstr("RTP/SAVP")),
                None,
            ),
        ),
        (
            "no-rtcp-attribute",
            offer_answer(
                offer("", OFFER).with("flags", str_list(["no-rtcp-attribute"])),
                None,
            ),
        ),
        (
            "full-rtcp-attribute",
            offer_answer(
                offer("", OFFER).with("flags", str_list(["full-rtcp-attribute"])),
                None,
            ),
        ),
        ("ptime kept", offer_answer(offer("", &ptime), None)),
        (
            "trust-address",
            offer_answer(
                offer("", OFFER).with("flags", str_list(["trust-address"])),
                None,
            ),
        ),
    ];
    v
}

/// Runs `cases` against both relays and checks every difference is
/// listed; `min` is how many cases there must be.
fn compare(
    rtpe_ng: SocketAddr,
    tern_ng: SocketAddr,
    cases: Vec<(&'static str, Drive)>,
    min: usize,
) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peers = [
        Peer {
            name: "rtpengine",
            ng: rtpe_ng,
            sock: &sock,
            cookie: 0.into(),
        },
        Peer {
            name: "tern",
            ng: tern_ng,
            sock: &sock,
            cookie: 0.into(),
        },
    ];
    assert!(cases.len() >= min, "{} cases", cases.len());
    let mut unexplained = Vec::new();
    for (i, (name, drive)) in cases.iter().enumerate() {
        let call = format!("diff-{name}-{i}-{}", std::process::id()).replace(' ', "_");
        let [r, t] = [&peers[0], &peers[1]].map(|p| drive(p, &call));
        assert_eq!(r.len(), t.len(), "{name}: steps");
        if std::env::var_os("NGDIFF_DUMP").is_some() {
            eprintln!(
                "==== {name}\n-- rtpengine:\n{}\n-- tern:\n{}",
                r.join("\n--\n"),
                t.join("\n--\n")
            );
        }
        let (mut rports, mut tports) = (Vec::new(), Vec::new());
        for (step, (rs, ts)) in r.iter().zip(&t).enumerate() {
            let (rn, tn) = (normalize(rs, &mut rports), normalize(ts, &mut tports));
            let flat = |n: &Vec<Vec<String>>| -> BTreeSet<(usize, String)> {
                n.iter()
                    .enumerate()
                    .flat_map(|(s, ls)| ls.iter().map(move |l| (s, l.clone())))
                    .collect()
            };
            let (rset, tset) = (flat(&rn), flat(&tn));
            for (only_in, set, other) in [("rtpengine", &rset, &tset), ("tern", &tset, &rset)] {
                for (sec, line) in set.difference(other) {
                    match covered(name, only_in, line) {
                        Some(k) => USED.with(|u| u.borrow_mut().insert(k)),
                        None => {
                            unexplained.push(format!(
                                "{name} step {step} section {sec}: only in {only_in}: {line}"
                            ));
                            true
                        }
                    };
                }
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "{} unexplained differences:\n{}",
        unexplained.len(),
        unexplained.join("\n")
    );
}

thread_local! {
    /// Indexes of [`KNOWN`] that some case of this test thread hit.
    static USED: std::cell::RefCell<BTreeSet<usize>> = const { std::cell::RefCell::new(BTreeSet::new()) };
}

/// Every listed difference of `cases` (by case name) must have been hit.
fn all_known_used(cases: &[&str]) {
    let used = USED.with(|u| u.borrow().clone());
    for (k, known) in KNOWN.iter().enumerate() {
        let mine = known.case == "*" || cases.contains(&known.case);
        if mine && known.case != "*" {
            assert!(
                used.contains(&k),
                "listed difference no longer seen (remove it here and in docs/NG.md): {} / {} / {}",
                known.case,
                known.only_in,
                known.line
            );
        }
    }
}

#[test]
fn tern_answers_ng_as_rtpengine_does() {
    if !have_rtpengine() {
        return;
    }
    let instance = format!("ngdiff-{}", std::process::id());
    let rtpe = Rtpengine::start(&["127.0.0.1"], 22100, 22199, &["--delete-delay=0"]);
    let tern_ng = free_port();
    let (_tern, _) = spawn_relay(
        &instance,
        "22200-22299",
        tern_ng,
        &["--media-ip", "127.0.0.1"],
    );
    let cases = cases();
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    compare(rtpe.addr(), ([127, 0, 0, 1], tern_ng).into(), cases, 20);
    all_known_used(&names);
    // The ICE-lite difference shows in the ICE cases.
    assert!(USED.with(|u| u.borrow().contains(&0)), "a=ice-lite seen");
}

#[test]
fn interfaces_families_and_forks_as_rtpengine_does() {
    if !have_rtpengine() {
        return;
    }
    let ifaces = ["priv/127.0.0.2", "pub/127.0.0.3!203.0.113.7", "v6/::1"];
    let instance = format!("ngdiff-if-{}", std::process::id());
    let rtpe = Rtpengine::start(&ifaces, 22300, 22349, &["--delete-delay=0"]);
    let tern_ng = free_port();
    let mut extra = Vec::new();
    for i in ifaces {
        extra.extend(["--interface", i]);
    }
    let (_tern, _) = spawn_relay(&instance, "22510-22699", tern_ng, &extra);
    let cases = iface_cases();
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    compare(rtpe.addr(), ([127, 0, 0, 1], tern_ng).into(), cases, 10);
    all_known_used(&names);
}

/// Offer (`o`) then answers (`answers`: to-tag and SDP), then `last`
/// (a delete or query), each step's SDP or result.
fn steps(o: Dict, answers: Vec<Dict>, last: Option<Dict>) -> Drive {
    Box::new(move |p: &Peer, call: &str| {
        let mut out = Vec::new();
        for d in std::iter::once(&o).chain(&answers).chain(last.iter()) {
            let mut d = d.clone();
            d.set("call-id", bstr(call));
            let r = p.send(d);
            let w = str_of(&r, "warning");
            let mut one = sdp_or_result(&r);
            if !w.is_empty() && one.starts_with("result=") {
                one.push_str(&format!(" warning={w}"));
            }
            out.push(one);
        }
        let d = Dict::new()
            .with("command", bstr("delete"))
            .with("call-id", bstr(call))
            .with("from-tag", bstr("ftag"));
        p.send(d);
        out
    })
}

fn answer_from(tag: &str, sdp: &str) -> Dict {
    answer("", sdp).with("to-tag", bstr(tag))
}

fn iface_cases() -> Vec<(&'static str, Drive)> {
    let v6_answer = ANSWER.replace("IN IP4 127.0.0.1", "IN IP6 ::1");
    // The second fork answers from its own address.
    let b2 = ANSWER
        .replace("m=audio 40000", "m=audio 40002")
        .replace("o=bob", "o=bob2");
    let b2 = b2.as_str();
    let dir = |a: &str, b: &str| str_list([a, b]);
    vec![
        (
            "direction priv to pub",
            steps(
                offer("", OFFER).with("direction", dir("priv", "pub")),
                vec![answer("", ANSWER).with("direction", dir("priv", "pub"))],
                None,
            ),
        ),
        (
            "direction pub to priv",
            steps(
                offer("", OFFER).with("direction", dir("pub", "priv")),
                vec![answer("", ANSWER).with("direction", dir("pub", "priv"))],
                None,
            ),
        ),
        (
            "direction priv to v6",
            steps(
                offer("", OFFER).with("direction", dir("priv", "v6")),
                vec![answer("", &v6_answer).with("direction", dir("priv", "v6"))],
                None,
            ),
        ),
        (
            "address family IP6",
            steps(
                offer("", OFFER).with("address family", bstr("IP6")),
                vec![answer("", &v6_answer)],
                None,
            ),
        ),
        (
            "address family IP4 from v6",
            steps(
                offer("", &OFFER.replace("IN IP4 127.0.0.1", "IN IP6 ::1"))
                    .with("received-from", str_list(["IP6", "::1"]))
                    .with("address family", bstr("IP4")),
                vec![answer("", ANSWER)],
                None,
            ),
        ),
        (
            "default interface",
            steps(offer("", OFFER), vec![answer("", ANSWER)], None),
        ),
        (
            "fork two to-tags",
            steps(
                offer("", OFFER),
                vec![answer_from("b1", ANSWER), answer_from("b2", b2)],
                None,
            ),
        ),
        (
            "fork then delete the loser",
            steps(
                offer("", OFFER),
                vec![answer_from("b1", ANSWER), answer_from("b2", b2)],
                Some(
                    Dict::new()
                        .with("command", bstr("delete"))
                        .with("from-tag", bstr("ftag"))
                        .with("to-tag", bstr("b1")),
                ),
            ),
        ),
        (
            "fork, delete loser, re-answer winner",
            steps(
                offer("", OFFER),
                vec![
                    answer_from("b1", ANSWER),
                    answer_from("b2", b2),
                    Dict::new()
                        .with("command", bstr("delete"))
                        .with("from-tag", bstr("ftag"))
                        .with("to-tag", bstr("b1")),
                    answer_from("b2", b2),
                ],
                None,
            ),
        ),
        (
            "delete an unknown to-tag",
            steps(
                offer("", OFFER),
                vec![answer_from("b1", ANSWER)],
                Some(
                    Dict::new()
                        .with("command", bstr("delete"))
                        .with("from-tag", bstr("ftag"))
                        .with("to-tag", bstr("nobody")),
                ),
            ),
        ),
        (
            "via-branch forks",
            steps(
                offer("", OFFER).with("via-branch", bstr("z9hG4bK1")),
                vec![
                    offer("", OFFER).with("via-branch", bstr("z9hG4bK2")),
                    answer_from("b1", ANSWER).with("via-branch", bstr("z9hG4bK1")),
                    answer_from("b2", b2).with("via-branch", bstr("z9hG4bK2")),
                ],
                None,
            ),
        ),
    ]
}
