//! The B2BUA's transcoding (issue 14, `[media] transcode`): an offer is
//! extended with the codecs tern transcodes, and an answer that shares no
//! codec with the offer is turned into one in the offerer's codec, with
//! each leg's media block programmed to transcode between the two.
//!
//! - [`extend_offer`]: PCMU, PCMA, G722 and opus the offer lacks are
//!   appended after its own codecs (static types 0, 8, 9; opus at the
//!   first free dynamic type), so an answerer that has one of the
//!   offerer's codecs still picks it (RFC 3264 §6.1: the answer keeps the
//!   offer's order of preference) and only a callee without one makes the
//!   call transcoded.
//! - [`transcoded_answer`]: the answer's first codec is the answerer's
//!   side, the offer's first transcodable codec the offerer's; the body
//!   toward the offerer names the offerer's codec (and its
//!   telephone-event), and [`XcPlan`] says what each leg decodes and
//!   encodes. telephone-event keeps each side's own payload type and is
//!   carried across clock rates.

use tern_shared::sdp::MediaLine;
use tern_shared::table::{LegMedia, MediaCodec, Transcode, MAX_LEG_CODECS};

use crate::sdp::{audio_formats, lines, writer, Format, SdpError};

/// What tern encodes at when the SDP asks for no packet duration, ms.
const PTIME_MS: u8 = 20;

/// The codecs [`extend_offer`] adds when missing: (payload type wanted,
/// `a=rtpmap` value).
const ADDED: [(u8, &str); 4] = [
    (0, "PCMU/8000"),
    (8, "PCMA/8000"),
    (9, "G722/8000"),
    (96, "opus/48000/2"),
];

fn media_codec(f: &Format) -> Option<MediaCodec> {
    MediaCodec::from_rtpmap(&f.name, f.rate)
}

fn is_event(f: &Format) -> bool {
    f.name.eq_ignore_ascii_case("telephone-event")
}

/// `body` with the codecs of [`ADDED`] it lacks appended to its first
/// audio `m=` line, each with its `a=rtpmap` (opus also `a=fmtp`
/// `useinbandfec=1`, RFC 7587 §6.1). A codec whose static type another
/// format holds takes the first free dynamic type (RFC 3551 §3).
///
/// Errors: those of [`audio_formats`].
pub fn extend_offer(body: &[u8]) -> Result<Vec<u8>, SdpError> {
    let fmts = audio_formats(body)?;
    let mut used: Vec<u8> = fmts.iter().map(|f| f.pt).collect();
    let mut extra: Vec<String> = Vec::new();
    let mut add: Vec<u8> = Vec::new();
    for (want, map) in ADDED {
        let (name, rate) = map.split_once('/').map_or((map, 0), |(n, r)| {
            (
                n,
                r.split('/')
                    .next()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0),
            )
        });
        let have = fmts
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(name) && f.rate == rate);
        if have {
            continue;
        }
        let pt = if used.contains(&want) {
            match (96..=127).find(|p| !used.contains(p)) {
                Some(p) => p,
                None => continue,
            }
        } else {
            want
        };
        used.push(pt);
        add.push(pt);
        extra.push(format!("a=rtpmap:{pt} {map}"));
        if name == "opus" {
            extra.push(format!("a=fmtp:{pt} useinbandfec=1"));
        }
    }
    if add.is_empty() {
        return Ok(body.to_vec());
    }
    let (doc, live) = lines(body)?;
    let mut w = writer(&doc, &live);
    for &i in &live {
        let l = &doc.lines()[i];
        let (Some(b'm'), Some(v)) = (l.kind(), l.value()) else {
            continue;
        };
        if MediaLine::media_of(v) != Some("audio") {
            continue;
        }
        let mut pts: Vec<String> = MediaLine::formats_of(v).map(str::to_string).collect();
        pts.extend(add.iter().map(u8::to_string));
        if w.set_media_formats(i, &pts) {
            for line in &extra {
                w.insert_after(i, line.clone());
            }
        }
        break;
    }
    Ok(w.finish().into_bytes())
}

/// What each leg of a transcoded call decodes and encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XcPlan {
    /// The media block of the offerer's leg: its codec, and what it sends
    /// transcoded into the answerer's codec.
    pub offerer: LegMedia,
    /// The media block of the answerer's leg.
    pub answerer: LegMedia,
}

fn codecs_of(f: &Format) -> [Option<(u8, MediaCodec)>; MAX_LEG_CODECS] {
    let mut c = [None; MAX_LEG_CODECS];
    c[0] = media_codec(f).map(|m| (f.pt, m));
    c
}

/// The telephone-event of `fmts`, at `rate` if there is one there.
fn event_of(fmts: &[Format], rate: u32) -> Option<&Format> {
    let mut events = fmts.iter().filter(|f| is_event(f));
    events
        .clone()
        .find(|f| f.rate == rate)
        .or_else(|| events.next())
}

/// The transcoding into codec `to` (and its telephone-event `te`).
fn into(to: &Format, te: Option<&Format>) -> Option<Transcode> {
    Some(Transcode {
        output_pt: to.pt,
        output: media_codec(to)?,
        output_ptime_ms: PTIME_MS,
        output_dtmf: te.map(|t| t.pt),
        opus_bitrate_kbps: 0,
        opus_fec: false,
        opus_dtx: false,
    })
}

/// An answer that shares no codec with `offer` made one in the
/// offerer's first transcodable codec: its `m=` line lists that codec
/// (and the offerer's telephone-event, if both sides have one), with the
/// offer's `a=rtpmap` lines in place of the answer's; and the plan of
/// both legs.
///
/// Errors: [`SdpError::NoCommonCodec`] when either side has no codec tern
/// transcodes; those of [`audio_formats`].
pub fn transcoded_answer(offer: &[u8], answer: &[u8]) -> Result<(Vec<u8>, XcPlan), SdpError> {
    let offered = audio_formats(offer)?;
    let answered = audio_formats(answer)?;
    let a = offered
        .iter()
        .find(|f| !is_event(f) && media_codec(f).is_some())
        .ok_or(SdpError::NoCommonCodec)?;
    let b = answered
        .iter()
        .find(|f| !is_event(f))
        .filter(|f| media_codec(f).is_some())
        .ok_or(SdpError::NoCommonCodec)?;
    let b_te = event_of(&answered, b.rate);
    let a_te = event_of(&offered, a.rate).filter(|_| b_te.is_some());
    let keep: Vec<&Format> = std::iter::once(a).chain(a_te).collect();
    let (doc, live) = lines(answer)?;
    let mut w = writer(&doc, &live);
    let mut in_audio = false;
    let mut seen = false;
    for &i in &live {
        let l = &doc.lines()[i];
        if let (Some(b'm'), Some(v)) = (l.kind(), l.value()) {
            in_audio = !seen && MediaLine::media_of(v) == Some("audio");
            if in_audio {
                seen = true;
                let pts: Vec<String> = keep.iter().map(|f| f.pt.to_string()).collect();
                w.set_media_formats(i, &pts);
                for f in &keep {
                    w.insert_after(i, format!("a=rtpmap:{} {}", f.pt, rtpmap_value(f)));
                    if is_event(f) {
                        w.insert_after(i, format!("a=fmtp:{} 0-16", f.pt));
                    }
                }
            }
            continue;
        }
        // The answer's codec lines describe the answerer's payload types.
        if in_audio && l.attribute().and_then(|a| a.payload_type()).is_some() {
            w.remove(i);
        }
    }
    let plan = XcPlan {
        offerer: LegMedia {
            codecs: codecs_of(a),
            transcode: into(b, b_te),
            ..LegMedia::default()
        },
        answerer: LegMedia {
            codecs: codecs_of(b),
            transcode: into(a, a_te),
            ..LegMedia::default()
        },
    };
    Ok((w.finish().into_bytes(), plan))
}

fn rtpmap_value(f: &Format) -> String {
    if f.name.eq_ignore_ascii_case("opus") {
        format!("{}/{}/2", f.name, f.rate)
    } else {
        format!("{}/{}", f.name, f.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(m: &str, maps: &[&str]) -> Vec<u8> {
        let mut s = format!(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP {m}\r\n"
        );
        for a in maps {
            s.push_str(a);
            s.push_str("\r\n");
        }
        s.push_str("a=sendrecv\r\n");
        s.into_bytes()
    }

    fn m_line(b: &[u8]) -> String {
        String::from_utf8_lossy(b)
            .lines()
            .find(|l| l.starts_with("m=audio"))
            .unwrap_or("")
            .to_string()
    }

    #[test]
    fn offer_gets_the_missing_codecs_after_its_own() {
        let o = sdp("0 101", &["a=rtpmap:101 telephone-event/8000"]);
        let x = extend_offer(&o).unwrap();
        assert_eq!(m_line(&x), "m=audio 4000 RTP/AVP 0 101 8 9 96");
        let t = String::from_utf8(x).unwrap();
        assert!(t.contains("a=rtpmap:96 opus/48000/2\r\n"), "{t}");
        assert!(t.contains("a=rtpmap:8 PCMA/8000\r\n"), "{t}");
        // Already complete: unchanged.
        let full = sdp("0 8 9 111", &["a=rtpmap:111 opus/48000/2"]);
        assert_eq!(extend_offer(&full).unwrap(), full);
    }

    #[test]
    fn a_taken_dynamic_type_moves_opus() {
        let o = sdp("96", &["a=rtpmap:96 G722/8000"]);
        let x = extend_offer(&o).unwrap();
        assert_eq!(m_line(&x), "m=audio 4000 RTP/AVP 96 0 8 97");
    }

    #[test]
    fn pcmu_offer_pcma_answer() {
        let o = sdp(
            "0 101",
            &["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"],
        );
        let a = sdp(
            "8 100",
            &["a=rtpmap:8 PCMA/8000", "a=rtpmap:100 telephone-event/8000"],
        );
        let (body, plan) = transcoded_answer(&o, &a).unwrap();
        assert_eq!(m_line(&body), "m=audio 4000 RTP/AVP 0 101");
        let t = String::from_utf8(body).unwrap();
        assert!(!t.contains("PCMA") && !t.contains(":100 "), "{t}");
        assert!(
            t.contains("a=rtpmap:0 PCMU/8000") && t.contains("a=rtpmap:101 telephone-event/8000"),
            "{t}"
        );
        let x = plan.offerer.transcode.unwrap();
        assert_eq!(
            (x.output, x.output_pt, x.output_dtmf),
            (MediaCodec::Pcma, 8, Some(100))
        );
        let x = plan.answerer.transcode.unwrap();
        assert_eq!(
            (x.output, x.output_pt, x.output_dtmf),
            (MediaCodec::Pcmu, 0, Some(101))
        );
        assert_eq!(plan.offerer.codec_of(0), Some(MediaCodec::Pcmu));
        assert_eq!(plan.answerer.codec_of(8), Some(MediaCodec::Pcma));
    }

    #[test]
    fn opus_offer_g711_answer_without_events() {
        let o = sdp("111", &["a=rtpmap:111 opus/48000/2"]);
        let a = sdp("0", &[]);
        let (body, plan) = transcoded_answer(&o, &a).unwrap();
        assert_eq!(m_line(&body), "m=audio 4000 RTP/AVP 111");
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("a=rtpmap:111 opus/48000/2"));
        assert_eq!(plan.offerer.transcode.unwrap().output, MediaCodec::Pcmu);
        assert_eq!(plan.answerer.transcode.unwrap().output, MediaCodec::Opus);
        assert_eq!(plan.answerer.transcode.unwrap().output_dtmf, None);
    }

    #[test]
    fn nothing_transcodable_is_no_common_codec() {
        let o = sdp("18", &["a=rtpmap:18 G729/8000"]);
        let a = sdp("0", &[]);
        assert_eq!(
            transcoded_answer(&o, &a).unwrap_err(),
            SdpError::NoCommonCodec
        );
        let o = sdp("0", &[]);
        let a = sdp("18", &["a=rtpmap:18 G729/8000"]);
        assert_eq!(
            transcoded_answer(&o, &a).unwrap_err(),
            SdpError::NoCommonCodec
        );
    }
}
