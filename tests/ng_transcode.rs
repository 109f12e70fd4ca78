//! Transcoding driven over ng (issue 14), against `tern relay` and
//! against rtpengine 10.5 (userspace `--table=-1`) with the same
//! commands: an offerer with one codec, `codec: {transcode: [X]}`, and an
//! answerer that takes only X. What each side receives must be in its
//! own codec and decode to what the other side sent (correlation ≥ 0.99
//! for G.711 ↔ G.711, ≥ 0.9 through Opus), from both relays; and the
//! codecs the two relays put into the SDPs must be the same.
//!
//! Ports: tern relay 19000-19099, rtpengine 19100-19199.

mod common;
use common::audio::*;
use common::ng::{str_of, NgClient};
use common::rtpengine::{have_rtpengine, Rtpengine};
use common::*;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tern_ng::bencode::{bstr, str_list, Dict};

/// What a relay did with one call: the codecs of the offer it sent the
/// answerer and of the answer it sent the offerer, and what each side
/// received.
#[derive(Debug)]
struct Outcome {
    offer: Vec<String>,
    answer: Vec<String>,
    at_b: Received,
    at_a: Received,
    corr_b: f64,
    corr_a: f64,
}

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

/// An offerer in `a_enc`, `transcode: [name]`, an answerer in `b_enc`;
/// each side sends the test tone in its own codec.
fn run(ng: SocketAddr, call: &str, a_enc: Enc, b_enc: Enc, name: &str) -> Outcome {
    let (a, b) = (sock(), sock());
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let mut ng = NgClient::new(ng, call);
    let codec = Dict::new().with("transcode", str_list([name]));
    let r = ng.ok(Dict::new()
        .with("command", bstr("offer"))
        .with("call-id", bstr(call))
        .with("from-tag", bstr("A"))
        .with("codec", codec.into_value())
        .with("sdp", bstr(sdp(pa, a_enc))));
    let offer = str_of(&r, "sdp");
    let to_b = common::ng::sdp_port(&r);
    let r = ng.ok(Dict::new()
        .with("command", bstr("answer"))
        .with("call-id", bstr(call))
        .with("from-tag", bstr("A"))
        .with("to-tag", bstr("B"))
        .with("sdp", bstr(sdp(pb, b_enc))));
    let answer = str_of(&r, "sdp");
    let to_a = common::ng::sdp_port(&r);
    let relay = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let (ta, tb) = (
        tone(PACKETS * a_enc.frame(), a_enc.rate()),
        tone(PACKETS * b_enc.frame(), b_enc.rate()),
    );
    send(&a, relay(to_a), a_enc, &ta);
    let at_b = receive(&b, b_enc, 600);
    send(&b, relay(to_b), b_enc, &tb);
    let at_a = receive(&a, a_enc, 600);
    ng.ok(Dict::new()
        .with("command", bstr("delete"))
        .with("call-id", bstr(call))
        .with("from-tag", bstr("A")));
    // Compare at the receiver's rate: the sent tone regenerated there.
    let (rb, ra) = (b_enc.rate(), a_enc.rate());
    let corr_b = correlation(
        &tone(at_b.pcm.len().min(PACKETS * b_enc.frame()), rb),
        &at_b.pcm,
        (rb / 10.0) as usize,
    );
    let corr_a = correlation(
        &tone(at_a.pcm.len().min(PACKETS * a_enc.frame()), ra),
        &at_a.pcm,
        (ra / 10.0) as usize,
    );
    Outcome {
        offer: codecs(&offer),
        answer: codecs(&answer),
        at_b,
        at_a,
        corr_b,
        corr_a,
    }
}

fn check(o: &Outcome, who: &str, a_enc: Enc, b_enc: Enc, min: f64) {
    eprintln!(
        "{who}: offer {:?} answer {:?}; B got {} packets pts {:?} corr {:.4}; A got {} pts {:?} corr {:.4}",
        o.offer, o.answer, o.at_b.packets, o.at_b.pts, o.corr_b, o.at_a.packets, o.at_a.pts, o.corr_a
    );
    assert_eq!(
        o.at_b.pts,
        [pt_of(b_enc)],
        "{who}: B receives its own codec only"
    );
    assert_eq!(
        o.at_a.pts,
        [pt_of(a_enc)],
        "{who}: A receives its own codec only"
    );
    assert_eq!(o.at_b.ssrcs.len(), 1, "{who}: one SSRC toward B");
    // 1 s sent each way; at most a frame held back by the resampler.
    assert!(
        o.at_b.packets >= PACKETS - 2,
        "{who}: B got {}",
        o.at_b.packets
    );
    assert!(
        o.at_a.packets >= PACKETS - 2,
        "{who}: A got {}",
        o.at_a.packets
    );
    assert!(o.corr_b >= min, "{who}: A→B correlation {:.4}", o.corr_b);
    assert!(o.corr_a >= min, "{who}: B→A correlation {:.4}", o.corr_a);
}

fn both(
    tag: &str,
    ports: &str,
    rtpe_ports: (u16, u16),
    a_enc: Enc,
    b_enc: Enc,
    name: &str,
    min: f64,
) {
    let instance = format!("ng-xc-{tag}-{}", std::process::id());
    let ng = free_port();
    let (mut tern, _) = spawn_relay(&instance, ports, ng, &[]);
    let ours = run(
        ([127, 0, 0, 1], ng).into(),
        &format!("xc-{tag}"),
        a_enc,
        b_enc,
        name,
    );
    tern.stop();
    unlink_table(&instance);
    check(&ours, "tern", a_enc, b_enc, min);
    if !have_rtpengine() {
        return;
    }
    let rtpe = Rtpengine::start(&["127.0.0.1"], rtpe_ports.0, rtpe_ports.1, &[]);
    let theirs = run(rtpe.addr(), &format!("xc-{tag}-r"), a_enc, b_enc, name);
    drop(rtpe);
    check(&theirs, "rtpengine", a_enc, b_enc, min);
    assert_eq!(
        ours.answer, theirs.answer,
        "answers toward the offerer differ"
    );
    assert_eq!(
        ours.offer, theirs.offer,
        "offers toward the answerer differ"
    );
}

#[test]
fn pcmu_offerer_pcma_answerer() {
    both(
        "g711",
        "19000-19049",
        (19100, 19149),
        Enc::Pcmu,
        Enc::Pcma,
        "PCMA",
        0.99,
    );
}

#[test]
fn opus_offerer_pcmu_answerer() {
    both(
        "opus",
        "19050-19099",
        (19150, 19199),
        Enc::Opus,
        Enc::Pcmu,
        "PCMU",
        0.9,
    );
}
