//! rtpengine 10.5's `codec` manipulation without transcoding: `strip`,
//! `mask`, `offer`, `except` and `single-codec` over the payload list of
//! one `m=` line. Sans-IO: pure functions over [`Codec`] lists, following
//! `daemon/codec.c` of mr10.5.9.1 (`codec_store_strip`,
//! `codec_store_offer`, `codec_store_check_empty`, `codec_tracker_update`,
//! `codec_store_populate`, `codec_store_answer`) as called by
//! `daemon/call.c:codecs_offer_answer`.
//!
//! # The offer
//!
//! The list sent to the answerer is the offer's, then:
//! 1. `strip` and `mask` remove each codec they name (`all` removes every
//!    codec except those named in `except`);
//! 2. `offer` re-adds, in its order, stripped codecs of the original list
//!    (before the first remaining supplemental codec, else at the end);
//! 3. an empty list is replaced by the original one (rtpengine's "Usage
//!    error: List of codecs empty");
//! 4. supplemental codecs (`telephone-event`, `CN`) of a clock rate that
//!    was touched (a codec of that rate stripped or re-added; any rate once
//!    a supplemental codec itself was) and has no other codec left are
//!    removed. Where rtpengine would add a supplemental codec for a touched
//!    rate that lacks one (it generates it by transcoding), tern cannot:
//!    [`OfferCodecs::not_synthesised`] says which.
//!
//! `mask` differs from `strip` only on the offerer's side: rtpengine keeps
//! a masked codec among those it accepts from the offerer, to transcode it
//! into what the answerer took. Without transcoding nothing can be done
//! with it, so tern's outgoing SDP and answer are those of rtpengine and
//! media of a masked codec is never offered to the answerer.
//!
//! # The answer
//!
//! The answer's codecs not in the list that was offered to the answerer
//! are dropped (unless that leaves none); `strip`, `offer` and `except` then
//! work as on the offer; `single-codec` keeps the first codec that is not
//! supplemental. A supplemental codec of a clock rate touched in the offer
//! or the answer stays only beside a kept codec of its rate.
//!
//! Codec names match case-insensitively the encoding (`opus`), the
//! encoding with clock rate and, when not mono, channels (`opus/48000/2`,
//! `PCMU/8000`), or the full form (`PCMU/8000/1`). `all` (exactly so) is
//! the keyword. Payload type numbers are not names in rtpengine 10.5, so
//! `strip=[0]` strips nothing.

use std::collections::BTreeSet;

pub use crate::payload::Codec;

/// The `codec` operations of one message (the dictionary and the
/// `codec-*` flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodecFlags {
    /// Codecs to remove (`all`: every one not in `except`).
    pub strip: Vec<String>,
    /// Stripped codecs to put back, in this order.
    pub offer: Vec<String>,
    /// Codecs `strip=all` and `mask=all` keep.
    pub except: Vec<String>,
    /// Offer only (rtpengine ignores it in an answer).
    pub mask: Vec<String>,
    /// Answer only: keep the first codec (and supplemental ones).
    pub single_codec: bool,
    /// Offer only: codecs to add for transcoding (`crate::transcode`).
    pub transcode: Vec<String>,
    /// Offer only: offerer codecs accepted toward it even when the
    /// answerer rejects them, then transcoded.
    pub accept: Vec<String>,
    /// `always transcode` (rtpengine: `accept=all`).
    pub always_transcode: bool,
}

impl CodecFlags {
    /// Whether any operation is asked for.
    pub fn is_empty(&self) -> bool {
        self.strip.is_empty()
            && self.offer.is_empty()
            && self.except.is_empty()
            && self.mask.is_empty()
            && !self.single_codec
            && self.transcode.is_empty()
            && self.accept.is_empty()
            && !self.always_transcode
    }
}

/// Clock rates whose codecs an operation changed (rtpengine's
/// `codec_tracker`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// A supplemental codec was changed: every rate counts as touched.
    pub all: bool,
    /// The clock rates touched.
    pub rates: BTreeSet<u32>,
}

impl Touched {
    fn touch(&mut self, c: &Codec) {
        if c.is_supplemental() {
            self.all = true;
        } else {
            self.rates.insert(c.clock_rate);
        }
    }

    /// Whether clock rate `rate` was touched.
    pub fn has(&self, rate: u32) -> bool {
        self.all || self.rates.contains(&rate)
    }
}

/// A codec list being edited, with rtpengine's insertion point for
/// re-added codecs (`supp_link`: the first supplemental codec added, moved
/// to the next codec when it is removed).
#[derive(Debug, Clone, Default)]
struct Store {
    list: Vec<Codec>,
    supp_link: Option<u8>,
    touched: Touched,
}

impl Store {
    fn populate(codecs: &[Codec]) -> Store {
        let mut s = Store::default();
        for c in codecs {
            s.push(c.clone(), None);
        }
        s
    }

    fn has_pt(&self, pt: u8) -> bool {
        self.list.iter().any(|c| c.pt == pt)
    }

    fn has_name(&self, name: &str) -> bool {
        self.list.iter().any(|c| c.is_named(name))
    }

    /// Inserts before the codec `before` (the end when `None`).
    fn push(&mut self, c: Codec, before: Option<u8>) {
        let at = before
            .and_then(|pt| self.list.iter().position(|x| x.pt == pt))
            .unwrap_or(self.list.len());
        if self.supp_link.is_none() && c.is_supplemental() {
            self.supp_link = Some(c.pt);
        }
        self.list.insert(at, c);
    }

    fn remove_at(&mut self, i: usize) -> Codec {
        let c = self.list.remove(i);
        if self.supp_link == Some(c.pt) {
            self.supp_link = self.list.get(i).map(|n| n.pt);
        }
        c
    }

    /// `codec_store_strip`.
    fn strip(&mut self, names: &[String], except: &[String]) {
        for name in names {
            if name == "all" || name == "full" {
                let mut i = 0;
                while i < self.list.len() {
                    if except.iter().any(|e| self.list[i].is_named(e)) {
                        i += 1;
                    } else {
                        let c = self.remove_at(i);
                        self.touched.touch(&c);
                    }
                }
                continue;
            }
            while let Some(i) = self.list.iter().position(|c| c.is_named(name)) {
                let c = self.remove_at(i);
                self.touched.touch(&c);
            }
        }
    }

    /// `codec_store_offer`: re-adds codecs of `orig` named in `names`
    /// that are not in the list.
    fn offer(&mut self, names: &[String], orig: &[Codec]) {
        for name in names {
            if self.has_name(name) {
                continue;
            }
            for c in orig.iter().filter(|c| c.is_named(name)) {
                if self.has_pt(c.pt) {
                    continue;
                }
                self.touched.touch(c);
                let before = self.supp_link;
                self.push(c.clone(), before);
            }
        }
    }

    /// `codec_store_check_empty`: an empty list becomes `orig` again (with
    /// nothing touched).
    fn check_empty(&mut self, orig: &[Codec]) {
        if self.list.is_empty() {
            *self = Store::populate(orig);
        }
    }

    /// `codec_store_track`: marks the codecs `names` name as touched.
    fn track(&mut self, names: &[String]) {
        for name in names {
            if name == "all" || name == "full" {
                self.touched.all = true;
                continue;
            }
            let named: Vec<Codec> = self
                .list
                .iter()
                .filter(|c| c.is_named(name))
                .cloned()
                .collect();
            for c in &named {
                self.touched.touch(c);
            }
        }
    }

    /// `codec_tracker_update`: removes supplemental codecs of a touched
    /// clock rate that has no other codec left; returns the
    /// (encoding, rate) pairs rtpengine would add by transcoding.
    fn tracker_update(&mut self) -> Vec<(String, u32)> {
        let main: BTreeSet<u32> = self
            .list
            .iter()
            .filter(|c| !c.is_supplemental())
            .map(|c| c.clock_rate)
            .collect();
        let mut encodings: Vec<String> = Vec::new();
        for c in self.list.iter().filter(|c| c.is_supplemental()) {
            if !encodings
                .iter()
                .any(|e| e.eq_ignore_ascii_case(&c.encoding))
            {
                encodings.push(c.encoding.clone());
            }
        }
        let mut missing = Vec::new();
        for enc in &encodings {
            let same = |c: &Codec| c.is_supplemental() && c.encoding.eq_ignore_ascii_case(enc);
            let rates: BTreeSet<u32> = self
                .list
                .iter()
                .filter(|c| same(c))
                .map(|c| c.clock_rate)
                .collect();
            for &r in &main {
                if !rates.contains(&r) && self.touched.has(r) {
                    missing.push((enc.clone(), r));
                }
            }
            let mut i = 0;
            while i < self.list.len() {
                let c = &self.list[i];
                if same(c) && !main.contains(&c.clock_rate) && self.touched.has(c.clock_rate) {
                    self.remove_at(i);
                } else {
                    i += 1;
                }
            }
        }
        missing
    }

    fn pts(&self) -> Vec<u8> {
        self.list.iter().map(|c| c.pt).collect()
    }
}

/// What [`offer`] decided for one media section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferCodecs {
    /// The payload types offered to the answerer, in order.
    pub offered: Vec<u8>,
    /// The codecs the offerer's side keeps (`mask` does not remove them),
    /// for the answer.
    pub offerer: Vec<Codec>,
    /// What the offer touched on the offerer's side (for the answer).
    pub offerer_touched: Touched,
    /// Supplemental codecs (encoding, clock rate) rtpengine would add for
    /// transcoding and tern does not.
    pub not_synthesised: Vec<(String, u32)>,
    /// What was added for transcoding, and the `accept` names.
    pub added: crate::transcode::Added,
}

/// The offer direction (`codecs_offer_answer`, offer branch) over the
/// offer's `codecs`.
pub fn offer(codecs: &[Codec], f: &CodecFlags) -> OfferCodecs {
    // The offerer's side: strip, offer, check_empty, then the mask is only
    // tracked.
    let mut offerer = Store::populate(codecs);
    offerer.strip(&f.strip, &f.except);
    offerer.offer(&f.offer, codecs);
    offerer.check_empty(codecs);
    offerer.track(&f.mask);
    // The answerer's side: what goes out.
    let mut out = Store::populate(codecs);
    out.strip(&f.strip, &f.except);
    out.strip(&f.mask, &f.except);
    out.offer(&f.offer, codecs);
    // Before check_empty: `mask=all transcode=X` offers X alone.
    let mut pts = out.pts();
    let added = crate::transcode::offer_additions(
        codecs,
        &mut pts,
        &f.transcode,
        &f.accept,
        f.always_transcode,
    );
    if !added.codecs.is_empty() {
        let extra = added.codecs.iter().map(|(c, _)| c).chain(&added.events);
        let all: Vec<Codec> = codecs.iter().chain(extra).cloned().collect();
        out.list = pts
            .iter()
            .filter_map(|pt| all.iter().find(|c| c.pt == *pt).cloned())
            .collect();
        for (c, _) in &added.codecs {
            out.touched.touch(c);
        }
    }
    out.check_empty(codecs);
    let not_synthesised = out.tracker_update();
    OfferCodecs {
        offered: out.pts(),
        offerer: offerer.list,
        offerer_touched: offerer.touched,
        not_synthesised,
        added,
    }
}

/// The answer direction: the payload types of the answer's `codecs` that
/// go to the offerer, given what the offer decided (`None`: no offer
/// seen for this section, nothing is filtered) and the answer's flags
/// (`mask` is ignored, as rtpengine does).
pub fn answer(codecs: &[Codec], offered: Option<&OfferCodecs>, f: &CodecFlags) -> Vec<u8> {
    let empty = OfferCodecs::default();
    let o = offered.unwrap_or(&empty);
    // codec_store_populate(answer_only): stray answer codecs are dropped.
    let mut src = Store::default();
    for c in codecs {
        if offered.is_none() || o.offered.contains(&c.pt) {
            src.push(c.clone(), None);
        }
    }
    src.strip(&f.strip, &f.except);
    src.offer(&f.offer, codecs);
    src.check_empty(codecs);
    // codec_store_answer.
    let touched = |rate: u32| src.touched.has(rate) || o.offerer_touched.has(rate);
    let supp_at = |list: &[Codec], enc: &str, rate: u32| {
        list.iter()
            .find(|c| c.encoding.eq_ignore_ascii_case(enc) && c.clock_rate == rate)
            .map(|c| c.pt)
    };
    let mut out: Vec<u8> = Vec::new();
    let mut later: Vec<u8> = Vec::new();
    let mut kept = 0;
    for c in &src.list {
        if c.is_supplemental() {
            if !touched(c.clock_rate) && !out.contains(&c.pt) {
                out.push(c.pt);
            }
            continue;
        }
        if f.single_codec && kept >= 1 {
            continue;
        }
        if !out.contains(&c.pt) {
            out.push(c.pt);
            kept += 1;
        }
        // The codec's handler carries the supplemental codecs of its rate
        // that both sides have (CN first, then telephone-event).
        for enc in ["CN", "telephone-event"] {
            let theirs = supp_at(&src.list, enc, c.clock_rate);
            let offerer_has = offered.is_none() || supp_at(&o.offerer, enc, c.clock_rate).is_some();
            if let (Some(pt), true) = (theirs, offerer_has) {
                later.push(pt);
            }
        }
    }
    for pt in later {
        if !out.contains(&pt) {
            out.push(pt);
        }
    }
    if out.is_empty() {
        // rtpengine would write an m= line without formats.
        return src.pts();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PCMU, PCMA, G722, opus, telephone-event/8000.
    fn sdp_codecs() -> Vec<Codec> {
        vec![
            Codec::new(0, "PCMU", 8000, 1),
            Codec::new(8, "PCMA", 8000, 1),
            Codec::new(9, "G722", 8000, 1),
            Codec::new(111, "opus", 48000, 2),
            Codec::new(101, "telephone-event", 8000, 1),
        ]
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn off(f: CodecFlags) -> Vec<u8> {
        offer(&sdp_codecs(), &f).offered
    }

    fn strip(v: &[&str]) -> CodecFlags {
        CodecFlags {
            strip: s(v),
            ..Default::default()
        }
    }

    #[test]
    fn names() {
        let opus = Codec::new(111, "opus", 48000, 2);
        for n in ["opus", "OPUS", "opus/48000/2", "Opus/48000/2"] {
            assert!(opus.is_named(n), "{n}");
        }
        for n in ["opus/48000", "opus/48000/1", "111", "", "all"] {
            assert!(!opus.is_named(n), "{n}");
        }
        let pcmu = Codec::new(0, "PCMU", 8000, 1);
        for n in ["pcmu", "PCMU/8000", "pcmu/8000/1"] {
            assert!(pcmu.is_named(n), "{n}");
        }
        assert!(!pcmu.is_named("PCMU/8000/2") && !pcmu.is_named("0"));
        assert!(!Codec::new(98, "", 0, 1).is_named(""));
        assert!(Codec::new(13, "cn", 8000, 1).is_supplemental());
        assert!(!opus.is_supplemental());
    }

    #[test]
    fn no_flags_change_nothing() {
        assert_eq!(off(CodecFlags::default()), [0, 8, 9, 111, 101]);
        let o = offer(&sdp_codecs(), &CodecFlags::default());
        assert_eq!(
            answer(&sdp_codecs(), Some(&o), &CodecFlags::default()),
            [0, 8, 9, 111, 101]
        );
    }

    #[test]
    fn strip_by_name() {
        assert_eq!(off(strip(&["PCMU"])), [8, 9, 111, 101]);
        assert_eq!(off(strip(&["pcmu", "OPUS"])), [8, 9, 101]);
        assert_eq!(off(strip(&["opus/48000/2"])), [0, 8, 9, 101]);
        // Mono form of a stereo codec: not the same codec.
        assert_eq!(off(strip(&["opus/48000"])), [0, 8, 9, 111, 101]);
        assert_eq!(off(strip(&["PCMU/8000/1"])), [8, 9, 111, 101]);
        assert_eq!(off(strip(&["telephone-event"])), [0, 8, 9, 111]);
        // Numbers and unknown names strip nothing; `ALL` is a name.
        assert_eq!(off(strip(&["0", "G729", "ALL"])), [0, 8, 9, 111, 101]);
    }

    #[test]
    fn strip_all_alone_restores_the_list() {
        assert_eq!(off(strip(&["all"])), [0, 8, 9, 111, 101]);
        assert_eq!(
            off(strip(&["PCMU", "PCMA", "G722", "opus", "telephone-event"])),
            [0, 8, 9, 111, 101]
        );
    }

    #[test]
    fn strip_all_offer_reorders() {
        let f = |o: &[&str]| CodecFlags {
            strip: s(&["all"]),
            offer: s(o),
            ..Default::default()
        };
        assert_eq!(off(f(&["PCMA"])), [8]);
        assert_eq!(off(f(&["opus", "PCMA", "G722"])), [111, 8, 9]);
        // Only codecs of the original SDP: G729 is not added.
        assert_eq!(off(f(&["G729", "PCMU"])), [0]);
        // README example: strip=all, offer=telephone-event keeps it.
        assert_eq!(off(f(&["PCMU", "telephone-event"])), [0, 101]);
    }

    #[test]
    fn offer_without_strip_is_a_no_op_and_readds_before_supplemental() {
        let f = CodecFlags {
            offer: s(&["G729", "PCMA"]),
            ..Default::default()
        };
        assert_eq!(off(f), [0, 8, 9, 111, 101]);
        let f = CodecFlags {
            strip: s(&["PCMU"]),
            offer: s(&["PCMU"]),
            ..Default::default()
        };
        assert_eq!(off(f), [8, 9, 111, 0, 101]);
    }

    #[test]
    fn except_and_the_tracker() {
        let f = |e: &[&str]| CodecFlags {
            strip: s(&["all"]),
            except: s(e),
            ..Default::default()
        };
        assert_eq!(off(f(&["opus"])), [111]);
        // telephone-event/8000 goes with the 8000 Hz codecs.
        assert_eq!(off(f(&["opus", "telephone-event"])), [111]);
        assert_eq!(off(f(&["PCMU", "telephone-event"])), [0, 101]);
        assert_eq!(off(strip(&["PCMU", "PCMA", "G722"])), [111]);
        assert_eq!(off(strip(&["opus"])), [0, 8, 9, 101]);
        // rtpengine would add telephone-event/48000 by transcoding.
        let o = offer(
            &sdp_codecs(),
            &CodecFlags {
                strip: s(&["all"]),
                except: s(&["telephone-event"]),
                offer: s(&["opus"]),
                ..Default::default()
            },
        );
        assert_eq!(o.offered, [111]);
        assert_eq!(o.not_synthesised, [("telephone-event".to_string(), 48000)]);
        // An untouched rate keeps its supplemental codec even without a
        // codec (it was so in the SDP).
        let lone = vec![
            Codec::new(111, "opus", 48000, 2),
            Codec::new(101, "telephone-event", 8000, 1),
        ];
        assert_eq!(offer(&lone, &CodecFlags::default()).offered, [111, 101]);
    }

    #[test]
    fn mask_strips_outgoing_but_keeps_the_offerer_side() {
        let f = CodecFlags {
            mask: s(&["PCMA"]),
            ..Default::default()
        };
        let o = offer(&sdp_codecs(), &f);
        assert_eq!(o.offered, [0, 9, 111, 101]);
        assert!(o.offerer.iter().any(|c| c.pt == 8));
        let f = CodecFlags {
            mask: s(&["all"]),
            except: s(&["G722"]),
            ..Default::default()
        };
        assert_eq!(off(f), [9]);
    }

    fn ans(offer_f: CodecFlags, answer_pts: &[u8], answer_f: CodecFlags) -> Vec<u8> {
        let o = offer(&sdp_codecs(), &offer_f);
        let a: Vec<Codec> = sdp_codecs()
            .into_iter()
            .filter(|c| answer_pts.contains(&c.pt))
            .collect();
        let mut a2 = Vec::new();
        for pt in answer_pts {
            if let Some(c) = a.iter().find(|c| c.pt == *pt) {
                a2.push(c.clone());
            }
        }
        answer(&a2, Some(&o), &answer_f)
    }

    #[test]
    fn answers() {
        let none = CodecFlags::default;
        assert_eq!(ans(strip(&["PCMU"]), &[8, 9, 101], none()), [8, 9, 101]);
        // A codec that was not offered to the answerer is dropped.
        assert_eq!(ans(strip(&["PCMU"]), &[0, 8, 101], none()), [8, 101]);
        // ... unless nothing would be left.
        assert_eq!(ans(strip(&["PCMU"]), &[0], none()), [0]);
        // Masked: the answer is the answerer's.
        let mask = CodecFlags {
            mask: s(&["PCMA"]),
            ..Default::default()
        };
        assert_eq!(ans(mask.clone(), &[0, 9, 101], none()), [0, 9, 101]);
        // mask in an answer is ignored.
        assert_eq!(ans(none(), &[0, 8, 101], mask), [0, 8, 101]);
        // strip in the answer.
        assert_eq!(ans(none(), &[0, 8, 101], strip(&["PCMA"])), [0, 101]);
        let all_pcma = CodecFlags {
            strip: s(&["all"]),
            offer: s(&["PCMA"]),
            ..Default::default()
        };
        assert_eq!(ans(none(), &[0, 8, 101], all_pcma), [8]);
        assert_eq!(ans(none(), &[0, 111, 101], strip(&["PCMU"])), [111]);
        // Everything stripped: the answer stays.
        assert_eq!(
            ans(
                none(),
                &[0, 8, 101],
                strip(&["PCMU", "PCMA", "telephone-event"])
            ),
            [0, 8, 101]
        );
        // Only a supplemental codec would be left: rtpengine writes no
        // formats, tern keeps what the answer had after the strip.
        assert_eq!(ans(none(), &[0, 8, 101], strip(&["PCMU", "PCMA"])), [101]);
        // A rate the offer touched needs a codec of its own in the answer.
        assert_eq!(ans(strip(&["PCMU"]), &[111, 101], none()), [111]);
        assert_eq!(ans(none(), &[111, 101], none()), [111, 101]);
    }

    #[test]
    fn single_codec() {
        let one = CodecFlags {
            single_codec: true,
            ..Default::default()
        };
        let none = CodecFlags::default;
        assert_eq!(ans(none(), &[0, 8, 9, 101], one.clone()), [0, 101]);
        assert_eq!(ans(none(), &[111, 0, 101], one.clone()), [111, 101]);
        assert_eq!(ans(none(), &[0], one.clone()), [0]);
        // Not on the offer.
        assert_eq!(off(one), [0, 8, 9, 111, 101]);
    }

    #[test]
    fn answer_without_offer_state_keeps_everything() {
        assert_eq!(
            answer(&sdp_codecs(), None, &CodecFlags::default()),
            [0, 8, 9, 111, 101]
        );
    }
}
