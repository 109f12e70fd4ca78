//! The call model: a call (one `call-id`) holds **branches**, one per
//! dialogue between the offerer and one answerer (a fork), each with its
//! own slots; the parties (rtpengine's monologues) are the branches' tags.
//!
//! - Leg 0 of every slot of a branch faces the branch's offerer (the
//!   `from-tag` of the first offer), leg 1 its answerer (a `to-tag`, or
//!   nobody yet). A branch may also carry the `via-branch` of the offer
//!   that created it.
//! - The first offer creates branch 0; its leg-1 ports go to the callee(s)
//!   in the offer's SDP.
//! - An offer with a `via-branch` no branch carries yet (a forking proxy
//!   sending one offer per fork, as Kamailio does with `via-branch=`)
//!   opens a new branch with fresh slots, so each fork is given its own
//!   ports (rtpengine: a new "other side" monologue per via-branch). The
//!   first via-branch seen just labels branch 0.
//! - An answer whose `to-tag` no branch has, when every branch of the
//!   offerer already has an answerer, forks: a new branch is cloned from
//!   the offerer's current branch (its offer state: the offerer's peer,
//!   rtcp-mux, keys offered) on fresh slots. The SDP back to the offerer
//!   then carries the new branch's leg-0 ports, a new port for the same
//!   offerer, as rtpengine 10.5 gives the offerer a new port set on each
//!   such answer.
//! - `delete` with a `to-tag` (or a `via-branch`) releases only the
//!   branches of that party; the call ends with its last branch. With only
//!   a `from-tag` naming the offerer, or only the `call-id`, everything
//!   goes.
//!
//! Nothing frees a losing fork by itself (rtpengine neither): it lives
//! until a `delete` names it, or the whole call ends (delete, timeout).

use std::net::SocketAddr;

use tern_shared::table::SlotConfig;

use crate::flags::MuxFlags;

use super::secure;

/// One relayed media section of a branch.
#[derive(Debug, Clone, Default)]
pub(super) struct MediaState {
    pub(super) slot: Option<u32>,
    pub(super) cfg: SlotConfig,
    pub(super) kind: String,
    pub(super) proto: String,
    /// Address and port each leg's SDP advertised.
    pub(super) advertised: [Option<SocketAddr>; 2],
    /// The last offer's SDP had `a=rtcp-mux`.
    pub(super) mux_offered_by: bool,
    /// We offered `a=rtcp-mux` to the answerer.
    pub(super) mux_offered_to: bool,
    pub(super) mux_flags: MuxFlags,
    /// What the relay told (or will tell) each leg about secure media.
    pub(super) plan: [secure::LegPlan; 2],
    /// What the last offer's `codec` operations decided (for its answer).
    pub(super) codecs: Option<crate::codec::OfferCodecs>,
    /// Each leg's interface (`cfg.legs[i].iface`) has been chosen.
    pub(super) iface_chosen: [bool; 2],
}

impl MediaState {
    /// This section's offer state for a new fork answering `answerer`
    /// (a leg): everything but the slot and what the answerer's leg had.
    fn fork(&self, answerer: usize) -> MediaState {
        let mut m = self.clone();
        m.slot = None;
        m.advertised[answerer] = None;
        let jitter = m.cfg.legs[answerer].jitter;
        m.cfg.legs[answerer] = Default::default();
        m.cfg.legs[answerer].jitter = jitter;
        m
    }
}

/// One dialogue of a call: the offerer and one answerer, with a slot per
/// relayed media section.
#[derive(Debug, Clone, Default)]
pub(super) struct Branch {
    /// Tag of leg 0 (the offerer) and of leg 1, when known.
    pub(super) tags: [Option<String>; 2],
    /// The `via-branch` of the offer that opened it, when one was given.
    pub(super) via: Option<String>,
    pub(super) media: Vec<MediaState>,
    /// When a `delete` with a delay removes this branch alone.
    pub(super) delete_at_ms: Option<u64>,
}

impl Branch {
    /// The leg tagged `tag`, if any.
    pub(super) fn leg_of(&self, tag: &str) -> Option<usize> {
        self.tags.iter().position(|t| t.as_deref() == Some(tag))
    }

    pub(super) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.media.iter().filter_map(|m| m.slot)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Call {
    /// Never empty while the call is held.
    pub(super) branches: Vec<Branch>,
    /// The branch last offered or answered: the offerer's current dialogue.
    pub(super) active: usize,
    pub(super) created_ms: u64,
    pub(super) last_signal_ms: u64,
    pub(super) delete_at_ms: Option<u64>,
    /// ng media control (`block DTMF` and the like).
    pub(super) blocks: super::control::CallBlocks,
}

/// Which branch an offer or answer works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pick {
    /// An existing branch.
    Existing(usize),
    /// A new branch with no media yet (an offer opening a fork).
    Open,
    /// A new branch cloned from this one's offer state (an answer from a
    /// new to-tag).
    Fork(usize),
}

/// What a `delete` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Doomed {
    All,
    /// These branches (indexes, ascending).
    Branches(Vec<usize>),
    /// Nothing matches the tags.
    NotFound,
}

impl Call {
    pub(super) fn new(from_tag: &str, via: Option<&str>, now_ms: u64) -> Call {
        Call {
            branches: vec![Branch {
                tags: [Some(from_tag.to_string()), None],
                via: via.map(str::to_string),
                ..Branch::default()
            }],
            active: 0,
            created_ms: now_ms,
            last_signal_ms: now_ms,
            delete_at_ms: None,
            blocks: Default::default(),
        }
    }

    /// Every slot of every branch.
    pub(super) fn slots(&self) -> Vec<u32> {
        self.branches.iter().flat_map(Branch::slots).collect()
    }

    /// Branches where `tag` is a party, the active one first.
    fn with_tag<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = usize> + 'a {
        let first = Some(self.active).filter(|&i| {
            self.branches
                .get(i)
                .is_some_and(|b| b.leg_of(tag).is_some())
        });
        first.into_iter().chain(
            (0..self.branches.len())
                .filter(move |&i| i != self.active && self.branches[i].leg_of(tag).is_some()),
        )
    }

    fn find_pair(&self, a: &str, b: &str) -> Option<usize> {
        self.with_tag(a)
            .find(|&i| self.branches[i].leg_of(b).is_some())
    }

    fn find_via(&self, via: &str) -> Option<usize> {
        self.branches
            .iter()
            .position(|b| b.via.as_deref() == Some(via))
    }

    /// The branch and sending leg of an offer from `from` (to `to`, on
    /// `via`), after rtpengine's `call_get_monologue_new`: a known pair is
    /// that dialogue; a new via-branch labels an unlabelled branch of the
    /// offerer or opens a new one; an unknown to-tag when the offerer's
    /// answerer is tagged already opens one too. Tags the branch.
    pub(super) fn pick_offer(
        &mut self,
        from: &str,
        to: Option<&str>,
        via: Option<&str>,
    ) -> (Pick, usize) {
        if let Some(i) = to.and_then(|t| self.find_pair(from, t)) {
            let sender = self.branches[i].leg_of(from).unwrap_or(0);
            return (Pick::Existing(i), sender);
        }
        let Some(cur) = self.with_tag(from).next() else {
            // An offerer the call does not know: it takes over the active
            // branch's leg 0 (as before forking).
            let b = &mut self.branches[self.active];
            b.tags[0] = Some(from.to_string());
            if let Some(t) = to {
                b.tags[1] = Some(t.to_string());
            }
            return (Pick::Existing(self.active), 0);
        };
        let mut pick = cur;
        if let Some(v) = via {
            if let Some(i) = self.find_via(v) {
                pick = i;
            } else {
                let unlabelled = self
                    .with_tag(from)
                    .find(|&i| self.branches[i].via.is_none());
                let Some(i) = unlabelled else {
                    return (Pick::Open, 0);
                };
                self.branches[i].via = Some(v.to_string());
                pick = i;
            }
        }
        let sender = self.branches[pick].leg_of(from).unwrap_or(0);
        let b = &mut self.branches[pick];
        if let Some(t) = to {
            match &b.tags[sender ^ 1] {
                None => b.tags[sender ^ 1] = Some(t.to_string()),
                Some(o) if o != t => return (Pick::Open, 0),
                Some(_) => {}
            }
        }
        (Pick::Existing(pick), sender)
    }

    /// The branch and sending leg of an answer from `to` to the offerer
    /// `from` (on `via`), after rtpengine's `call_get_dialogue`: a known
    /// pair is that dialogue; else the via-branch's branch, else the
    /// offerer's branch with no answerer yet, is tagged `to`; else the
    /// answer forks. `None`: `from` is no party of the call.
    pub(super) fn pick_answer(
        &mut self,
        from: &str,
        to: &str,
        via: Option<&str>,
    ) -> Option<(Pick, usize)> {
        if let Some(i) = self.find_pair(from, to) {
            let sender = self.branches[i].leg_of(to)?;
            return Some((Pick::Existing(i), sender));
        }
        let cur = self.with_tag(from).next()?;
        let by_via = via
            .and_then(|v| self.find_via(v))
            .filter(|&i| self.branches[i].leg_of(from).is_some());
        let open = || {
            self.with_tag(from).find(|&i| {
                let b = &self.branches[i];
                b.leg_of(from).is_some_and(|l| b.tags[l ^ 1].is_none())
            })
        };
        match by_via.or_else(open) {
            Some(i) => {
                let b = &mut self.branches[i];
                let sender = b.leg_of(from)? ^ 1;
                b.tags[sender] = Some(to.to_string());
                Some((Pick::Existing(i), sender))
            }
            None => {
                let sender = self.branches[cur].leg_of(from)? ^ 1;
                Some((Pick::Fork(cur), sender))
            }
        }
    }

    /// Adds the branch `pick` asks for (tagged `from` on leg 0, or cloned
    /// from its template with `to` on the answering leg `sender`); returns
    /// its index.
    pub(super) fn open(
        &mut self,
        pick: Pick,
        from: &str,
        to: Option<&str>,
        via: Option<&str>,
        sender: usize,
    ) -> usize {
        let b = match pick {
            Pick::Existing(i) => return i,
            Pick::Open => Branch {
                tags: [Some(from.to_string()), to.map(str::to_string)],
                via: via.map(str::to_string),
                ..Branch::default()
            },
            Pick::Fork(t) => {
                let tpl = &self.branches[t];
                let mut tags = tpl.tags.clone();
                tags[sender] = to.map(str::to_string);
                Branch {
                    tags,
                    via: via.map(str::to_string),
                    media: tpl.media.iter().map(|m| m.fork(sender)).collect(),
                    delete_at_ms: None,
                }
            }
        };
        self.branches.push(b);
        self.branches.len() - 1
    }

    /// What a `delete` with these tags removes, after rtpengine's
    /// `call_delete_branch`: the party named by the to-tag (else the
    /// via-branch, else the from-tag) goes with every branch it is in.
    pub(super) fn doomed(&self, from: Option<&str>, to: Option<&str>, via: Option<&str>) -> Doomed {
        let Some(from) = from else {
            return Doomed::All;
        };
        let via_match = || via.and_then(|v| self.find_via(v));
        if to.is_none() {
            if let Some(i) = via_match() {
                return self.without(vec![i]);
            }
        }
        let tag = to.unwrap_or(from);
        let hit: Vec<usize> = (0..self.branches.len())
            .filter(|&i| self.branches[i].leg_of(tag).is_some())
            .collect();
        if !hit.is_empty() {
            // The offerer is in every branch: all of them go.
            return self.without(hit);
        }
        if let Some(i) = via_match() {
            return self.without(vec![i]);
        }
        // Last resort (rtpengine): a to-tag never answered, on a call
        // whose offerer still waits for its answerer: the offerer goes.
        if to.is_some()
            && self.with_tag(from).any(|i| {
                let b = &self.branches[i];
                b.leg_of(from).is_some_and(|l| b.tags[l ^ 1].is_none())
            })
        {
            return Doomed::All;
        }
        Doomed::NotFound
    }

    fn without(&self, hit: Vec<usize>) -> Doomed {
        if hit.len() >= self.branches.len() {
            Doomed::All
        } else {
            Doomed::Branches(hit)
        }
    }

    /// Removes branch `i` (keeping `active` on the same branch, or the
    /// last one if it was `i`); returns it.
    pub(super) fn remove_branch(&mut self, i: usize) -> Branch {
        let b = self.branches.remove(i);
        if self.active > i || self.active >= self.branches.len() {
            self.active = self.active.saturating_sub(1);
        }
        b
    }
}
