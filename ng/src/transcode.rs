//! rtpengine 10.5's transcoding keys of the `codec` dictionary
//! (`docs/ng_control_protocol.md`, "codec"): `transcode`, `accept`,
//! `consume` and the `always transcode` flag, as a sans-IO planner over
//! the payload lists [`crate::codec`] works on.
//!
//! # The offer
//!
//! [`offer_additions`]: each `transcode` codec tern can decode and encode
//! (PCMU, PCMA, G722, opus) that the outgoing offer lacks is added, at its
//! static payload type (RFC 3551 table 4) when the offer does not use it,
//! else at the first free dynamic one (96..=127), with its `a=rtpmap`.
//! Once one is added, codecs tern cannot transcode leave the outgoing
//! offer (rtpengine: it must be able to receive and send any codec it
//! offers); supplemental ones (`telephone-event`, `CN`) stay, and a
//! `telephone-event` is added at a new clock rate when the offerer had
//! one at another. `consume` is `mask` (see [`crate::codec`]).
//!
//! # The answer
//!
//! [`answer_plan`], over the answerer's codecs that survived
//! [`crate::codec::answer`]:
//! - the answer's first audio codec is the answerer's side of the call;
//! - the offerer's side is what the offerer offered of the answer's
//!   codecs (same payload type and name), else, when the answerer chose an
//!   added codec, the offerer's first transcodable codec (masked and
//!   consumed ones included); then every transcodable offerer codec named
//!   in `accept` (`all`, or the `always transcode` flag: every one);
//! - a direction is transcoded when what its sender may send is not all
//!   the receiver accepts: the offerer's codecs into the answerer's
//!   first, the answerer's into the offerer's first;
//! - `telephone-event` is carried across clock rates (each side keeps its
//!   own payload type).
//!
//! With nothing to transcode the plan is `None` and the answer goes out
//! as [`crate::codec::answer`] made it.

use tern_shared::table::{LegMedia, MediaCodec, Transcode, MAX_LEG_CODECS};

use crate::payload::Codec;

/// Output packet duration tern encodes at when the SDP says none, ms
/// (RFC 3551 §4.5's default for the audio codecs here).
pub const DEFAULT_PTIME_MS: u8 = 20;

/// The codec tern transcodes of an SDP codec, if any (opus is
/// `opus/48000/2` in SDP, RFC 7587 §7).
pub fn media_codec(c: &Codec) -> Option<MediaCodec> {
    MediaCodec::from_rtpmap(&c.encoding, c.clock_rate)
}

/// A `transcode` entry: `ENC`, `ENC/RATE`, `ENC/RATE/CH` or
/// `ENC/RATE/CH/BITRATE` (bit/s); the codec as it goes into SDP and the
/// bitrate asked for (kbit/s, 0: the encoder's default). `None` for a
/// codec tern cannot transcode or a malformed entry.
pub fn parse_name(s: &str) -> Option<(Codec, u16)> {
    let mut it = s.trim().split('/');
    let enc = it.next().filter(|e| !e.is_empty())?;
    let (pt, name, clock, ch) = match enc.to_ascii_lowercase().as_str() {
        "pcmu" => (0, "PCMU", 8000, 1),
        "pcma" => (8, "PCMA", 8000, 1),
        "g722" => (9, "G722", 8000, 1),
        "opus" => (96, "opus", 48000, 2),
        _ => return None,
    };
    let num = |v: Option<&str>| -> Option<Option<u32>> {
        match v {
            None | Some("") => Some(None),
            Some(x) => x.parse().ok().map(Some),
        }
    };
    if num(it.next())?.is_some_and(|r| r != clock) {
        return None;
    }
    let _channels = num(it.next())?;
    let bitrate = num(it.next())?.map_or(0, |b| (b / 1000).min(510) as u16);
    Some((Codec::new(pt, name, clock, ch), bitrate))
}

/// What the offer added for transcoding (kept for its answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Added {
    /// Codecs added to the outgoing offer, with the bitrate asked for
    /// (kbit/s, 0: default).
    pub codecs: Vec<(Codec, u16)>,
    /// `telephone-event` payload types added at new clock rates.
    pub events: Vec<Codec>,
    /// Offerer codecs named in `accept` (or all of them: `all`, `always
    /// transcode`).
    pub accept: Vec<String>,
    /// `accept` named `all`, or `always transcode` was given.
    pub accept_all: bool,
}

impl Added {
    /// Whether the codec was added by the relay.
    pub fn has_pt(&self, pt: u8) -> bool {
        self.codecs.iter().any(|(c, _)| c.pt == pt) || self.events.iter().any(|c| c.pt == pt)
    }
}

/// A free payload type for `want` among `used`: its own when free, else
/// the first free dynamic one (RFC 3551 §3: 96..=127).
fn free_pt(want: u8, used: &[u8]) -> Option<u8> {
    if !used.contains(&want) {
        return Some(want);
    }
    (96..=127).find(|p| !used.contains(p))
}

/// The offer's additions for the `transcode` names: `orig` is the offer's
/// codecs, `out` the payload types going out after strip/mask/offer (the
/// new list is written back to it). `accept` and `accept_all` are kept
/// for the answer.
pub fn offer_additions(
    orig: &[Codec],
    out: &mut Vec<u8>,
    names: &[String],
    accept: &[String],
    accept_all: bool,
) -> Added {
    let mut added = Added {
        accept: accept.to_vec(),
        accept_all: accept_all || accept.iter().any(|a| a == "all" || a == "any"),
        ..Added::default()
    };
    let mut used: Vec<u8> = orig.iter().map(|c| c.pt).collect();
    for name in names {
        let Some((mut c, kbps)) = parse_name(name) else {
            continue;
        };
        let media = media_codec(&c);
        let present = out.iter().any(|pt| {
            orig.iter()
                .find(|o| o.pt == *pt)
                .is_some_and(|o| media_codec(o) == media)
        });
        if present || added.codecs.iter().any(|(a, _)| media_codec(a) == media) {
            continue;
        }
        let Some(pt) = free_pt(c.pt, &used) else {
            continue;
        };
        c.pt = pt;
        used.push(pt);
        added.codecs.push((c, kbps));
    }
    if added.codecs.is_empty() {
        return added;
    }
    // What the relay cannot transcode leaves the offer.
    out.retain(|pt| {
        orig.iter()
            .find(|o| o.pt == *pt)
            .is_none_or(|o| o.is_supplemental() || media_codec(o).is_some())
    });
    let te_rates: Vec<u32> = orig
        .iter()
        .filter(|c| c.encoding.eq_ignore_ascii_case("telephone-event") && out.contains(&c.pt))
        .map(|c| c.clock_rate)
        .collect();
    // Before the supplemental codecs, as rtpengine orders them.
    let at = out
        .iter()
        .position(|pt| orig.iter().any(|o| o.pt == *pt && o.is_supplemental()))
        .unwrap_or(out.len());
    for (k, (c, _)) in added.codecs.iter().enumerate() {
        out.insert(at + k, c.pt);
    }
    if !te_rates.is_empty() {
        for (c, _) in &added.codecs {
            if te_rates.contains(&c.clock_rate)
                || added.events.iter().any(|e| e.clock_rate == c.clock_rate)
            {
                continue;
            }
            let Some(pt) = free_pt(101, &used) else { break };
            used.push(pt);
            added
                .events
                .push(Codec::new(pt, "telephone-event", c.clock_rate, 1));
            out.push(pt);
        }
    }
    added
}

/// The `a=rtpmap` (and `a=fmtp`) lines of codec `c` (RFC 8866 §6.6; RFC
/// 7587 §7 for opus, RFC 4733 §7.1.1 for telephone-event).
pub fn rtpmap_lines(c: &Codec) -> Vec<String> {
    let mut v = vec![if c.channels > 1 {
        format!(
            "a=rtpmap:{} {}/{}/{}",
            c.pt, c.encoding, c.clock_rate, c.channels
        )
    } else {
        format!("a=rtpmap:{} {}/{}", c.pt, c.encoding, c.clock_rate)
    }];
    if c.encoding.eq_ignore_ascii_case("opus") {
        v.push(format!("a=fmtp:{} useinbandfec=1", c.pt));
    } else if c.encoding.eq_ignore_ascii_case("telephone-event") {
        v.push(format!("a=fmtp:{} 0-16", c.pt));
    }
    v
}

/// One side's media as the plan programs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Side {
    /// Its audio codecs (what its peer may send), the first preferred.
    pub codecs: Vec<Codec>,
    /// Its telephone-event codec, if any.
    pub dtmf: Option<Codec>,
}

impl Side {
    fn first(&self) -> Option<&Codec> {
        self.codecs.first()
    }

    /// The leg's codec table ([`LegMedia::codecs`]).
    pub fn media_codecs(&self) -> [Option<(u8, MediaCodec)>; MAX_LEG_CODECS] {
        leg_codecs(&self.codecs)
    }
}

/// The first [`MAX_LEG_CODECS`] transcodable codecs of `codecs`, as a
/// leg's media block names them.
pub fn leg_codecs(codecs: &[Codec]) -> [Option<(u8, MediaCodec)>; MAX_LEG_CODECS] {
    let mut out = [None; MAX_LEG_CODECS];
    for (o, (pt, m)) in out
        .iter_mut()
        .zip(codecs.iter().filter_map(|c| Some((c.pt, media_codec(c)?))))
    {
        *o = Some((pt, m));
    }
    out
}

/// What the answer decided when something is transcoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The offerer's side: what goes into the answer toward it.
    pub offerer: Side,
    /// The answerer's side.
    pub answerer: Side,
    /// Transcoding of what the offerer sends (into the answerer's first
    /// codec), if needed.
    pub from_offerer: Option<Transcode>,
    /// Transcoding of what the answerer sends (into the offerer's first
    /// codec), if needed.
    pub from_answerer: Option<Transcode>,
}

impl Plan {
    /// The `m=` formats of the answer toward the offerer.
    pub fn formats(&self) -> Vec<u8> {
        let o = &self.offerer;
        o.codecs.iter().chain(&o.dtmf).map(|c| c.pt).collect()
    }

    /// The codec lines of the answer toward the offerer (its own
    /// payload types' lines are replaced by these).
    pub fn lines(&self) -> Vec<String> {
        let o = &self.offerer;
        o.codecs
            .iter()
            .chain(&o.dtmf)
            .flat_map(rtpmap_lines)
            .collect()
    }

    /// Programs both legs' media blocks: `offerer` and `answerer` are the
    /// two legs' [`LegMedia`].
    pub fn program(&self, offerer: &mut LegMedia, answerer: &mut LegMedia) {
        offerer.codecs = self.offerer.media_codecs();
        answerer.codecs = self.answerer.media_codecs();
        offerer.transcode = self.from_offerer;
        answerer.transcode = self.from_answerer;
    }
}

fn is_te(c: &Codec) -> bool {
    c.encoding.eq_ignore_ascii_case("telephone-event")
}

/// The transcoding into `to`'s first codec (and its telephone-event).
fn transcode_into(to: &Side, kbps: u16) -> Option<Transcode> {
    let c = to.first()?;
    Some(Transcode {
        output_pt: c.pt,
        output: media_codec(c)?,
        output_ptime_ms: DEFAULT_PTIME_MS,
        output_dtmf: to.dtmf.as_ref().map(|d| d.pt),
        opus_bitrate_kbps: kbps,
        opus_fec: false,
        opus_dtx: false,
    })
}

/// The answer's plan: `answer` is the answerer's codecs (payload types
/// from its SDP), `kept` the payload types [`crate::codec::answer`] kept of
/// them, `offerer` the offerer's side of the offer (`OfferCodecs::offerer`)
/// and `added` what the offer added. `None` when nothing is transcoded.
pub fn answer_plan(
    answer: &[Codec],
    kept: &[u8],
    offerer: &[Codec],
    added: &Added,
) -> Option<Plan> {
    let ans: Vec<&Codec> = kept
        .iter()
        .filter_map(|pt| answer.iter().find(|c| c.pt == *pt))
        .collect();
    let b_first = ans.iter().find(|c| !c.is_supplemental())?;
    let same = |a: &Codec, b: &Codec| {
        a.pt == b.pt && a.encoding.eq_ignore_ascii_case(&b.encoding) && a.clock_rate == b.clock_rate
    };
    // The offerer's side: the answer's codecs it offered itself.
    let mut a_codecs: Vec<Codec> = ans
        .iter()
        .filter(|c| !c.is_supplemental() && !added.has_pt(c.pt))
        .filter(|c| offerer.iter().any(|o| same(o, c)))
        .map(|c| (*c).clone())
        .collect();
    if a_codecs.is_empty() {
        let first = offerer
            .iter()
            .find(|o| !o.is_supplemental() && media_codec(o).is_some())?;
        a_codecs.push(first.clone());
    }
    for o in offerer {
        let named = added.accept_all || added.accept.iter().any(|n| o.is_named(n));
        if named
            && !o.is_supplemental()
            && media_codec(o).is_some()
            && !a_codecs.iter().any(|a| same(a, o))
        {
            a_codecs.push(o.clone());
        }
    }
    let b_codecs: Vec<Codec> = ans
        .iter()
        .filter(|c| !c.is_supplemental())
        .map(|c| (*c).clone())
        .collect();
    // Everything the offerer may send, the answerer accepts as it is (and
    // the other way round): nothing to do.
    let a_to_b = a_codecs
        .iter()
        .any(|a| !b_codecs.iter().any(|b| same(a, b)));
    let b_to_a = !a_codecs.iter().any(|a| same(a, b_first));
    if !a_to_b && !b_to_a {
        return None;
    }
    if media_codec(b_first).is_none() || a_codecs.iter().any(|a| media_codec(a).is_none()) {
        // Not a codec tern decodes: no transcoding (rtpengine would not
        // have offered it).
        return None;
    }
    let offerer_te = |rate: u32| {
        offerer
            .iter()
            .filter(|o| is_te(o))
            .find(|o| o.clock_rate == rate)
            .or_else(|| offerer.iter().find(|o| is_te(o)))
            .cloned()
    };
    let a_side = Side {
        dtmf: offerer_te(a_codecs[0].clock_rate),
        codecs: a_codecs,
    };
    let b_te = |rate: u32| {
        ans.iter()
            .filter(|c| is_te(c))
            .find(|c| c.clock_rate == rate)
            .or_else(|| ans.iter().find(|c| is_te(c)))
            .map(|c| (*c).clone())
    };
    let b_side = Side {
        dtmf: b_te(b_first.clock_rate),
        codecs: b_codecs,
    };
    let kbps = |c: &Codec| {
        added
            .codecs
            .iter()
            .find(|(a, _)| a.pt == c.pt)
            .map_or(0, |(_, k)| *k)
    };
    Some(Plan {
        from_offerer: a_to_b
            .then(|| transcode_into(&b_side, kbps(b_first)))
            .flatten(),
        from_answerer: b_to_a.then(|| transcode_into(&a_side, 0)).flatten(),
        offerer: a_side,
        answerer: b_side,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(pt: u8, enc: &str, rate: u32) -> Codec {
        Codec::new(pt, enc, rate, if enc == "opus" { 2 } else { 1 })
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("PCMA").map(|x| x.0.pt), Some(8));
        assert_eq!(parse_name("opus/48000/2/32000").map(|x| x.1), Some(32));
        assert_eq!(parse_name("opus/8000"), None, "opus runs at 48000");
        assert_eq!(parse_name("G729"), None, "not transcodable");
        assert_eq!(parse_name("PCMU/x"), None);
        assert_eq!(parse_name(""), None);
    }

    #[test]
    fn offer_adds_at_static_or_dynamic_types_and_strips_the_rest() {
        let orig = [
            c(0, "PCMU", 8000),
            c(18, "G729", 8000),
            c(101, "telephone-event", 8000),
        ];
        let mut out = vec![0, 18, 101];
        let a = offer_additions(
            &orig,
            &mut out,
            &["PCMA".into(), "opus".into(), "PCMU".into()],
            &[],
            false,
        );
        assert_eq!(
            a.codecs.iter().map(|(c, _)| c.pt).collect::<Vec<_>>(),
            [8, 96]
        );
        // G729 is gone, the added ones come before telephone-event, and
        // opus gets a telephone-event of its rate.
        assert_eq!(a.events, [c(97, "telephone-event", 48000)]);
        assert_eq!(out, [0, 8, 96, 101, 97]);
        // Nothing to add: nothing changes.
        let mut out = vec![0, 18, 101];
        let a = offer_additions(&orig, &mut out, &["PCMU".into()], &[], false);
        assert!(a.codecs.is_empty());
        assert_eq!(out, [0, 18, 101]);
    }

    #[test]
    fn static_type_taken_by_another_codec_gets_a_dynamic_one() {
        let orig = [c(8, "PCMU", 8000), c(96, "G722", 8000)];
        let mut out = vec![8, 96];
        let a = offer_additions(&orig, &mut out, &["PCMA".into()], &[], false);
        assert_eq!(a.codecs[0].0.pt, 97);
    }

    #[test]
    fn answerer_picks_the_added_codec() {
        let offerer = [c(0, "PCMU", 8000), c(101, "telephone-event", 8000)];
        let mut out = vec![0, 101];
        let added = offer_additions(&offerer, &mut out, &["PCMA".into()], &[], false);
        let answer = [c(8, "PCMA", 8000), c(101, "telephone-event", 8000)];
        let p = answer_plan(&answer, &[8, 101], &offerer, &added).expect("transcoded");
        assert_eq!(p.formats(), [0, 101]);
        let t = p.from_offerer.unwrap();
        assert_eq!(
            (t.output, t.output_pt, t.output_dtmf),
            (MediaCodec::Pcma, 8, Some(101))
        );
        let t = p.from_answerer.unwrap();
        assert_eq!((t.output, t.output_pt), (MediaCodec::Pcmu, 0));
        assert!(p.lines().contains(&"a=rtpmap:0 PCMU/8000".to_string()));
        let (mut a, mut b) = (LegMedia::default(), LegMedia::default());
        p.program(&mut a, &mut b);
        assert_eq!(a.codec_of(0), Some(MediaCodec::Pcmu));
        assert_eq!(b.codec_of(8), Some(MediaCodec::Pcma));
    }

    #[test]
    fn answerer_picks_the_offerers_codec_no_transcoding() {
        let offerer = [c(0, "PCMU", 8000)];
        let mut out = vec![0];
        let added = offer_additions(&offerer, &mut out, &["PCMA".into()], &[], false);
        assert_eq!(
            answer_plan(&[c(0, "PCMU", 8000)], &[0], &offerer, &added),
            None
        );
    }

    #[test]
    fn opus_to_g711_carries_events_across_rates() {
        let offerer = [c(111, "opus", 48000), c(110, "telephone-event", 48000)];
        let mut out = vec![111, 110];
        let added = offer_additions(&offerer, &mut out, &["PCMU".into()], &[], false);
        assert_eq!(added.events, [c(101, "telephone-event", 8000)]);
        let answer = [c(0, "PCMU", 8000), c(101, "telephone-event", 8000)];
        let p = answer_plan(&answer, &[0, 101], &offerer, &added).unwrap();
        let t = p.from_answerer.unwrap();
        assert_eq!(
            (t.output, t.output_pt, t.output_dtmf),
            (MediaCodec::Opus, 111, Some(110))
        );
        let t = p.from_offerer.unwrap();
        assert_eq!((t.output, t.output_dtmf), (MediaCodec::Pcmu, Some(101)));
    }

    #[test]
    fn accept_keeps_a_rejected_codec_toward_the_offerer() {
        let offerer = [c(8, "PCMA", 8000), c(0, "PCMU", 8000)];
        let mut out = vec![8, 0];
        let added = offer_additions(&offerer, &mut out, &[], &["PCMA".into()], false);
        let p = answer_plan(&[c(0, "PCMU", 8000)], &[0], &offerer, &added).unwrap();
        // The offerer may send PCMA (accepted) or PCMU; the answerer gets PCMU.
        assert_eq!(p.formats(), [0, 8]);
        assert_eq!(p.from_offerer.unwrap().output, MediaCodec::Pcmu);
        assert_eq!(p.from_answerer, None, "PCMU goes to the offerer as it is");
    }

    #[test]
    fn masked_codec_is_transcoded_on_the_offerer_side() {
        // mask=[PCMU] transcode=[PCMA]: the offer carries PCMA alone.
        let offerer = [c(0, "PCMU", 8000)];
        let mut out = vec![];
        let added = offer_additions(&offerer, &mut out, &["PCMA".into()], &[], false);
        assert_eq!(out, [8]);
        let p = answer_plan(&[c(8, "PCMA", 8000)], &[8], &offerer, &added).unwrap();
        assert_eq!(p.formats(), [0]);
    }
}
