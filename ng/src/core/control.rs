//! In-call media control: `block DTMF`/`unblock DTMF`, `block media`/
//! `unblock media` and `silence media`/`unsilence media`, with rtpengine
//! 10.5's semantics (`docs/ng_control_protocol.md`, "block DTMF and
//! unblock DTMF Messages"; `call_interfaces.c:media_block_match`).
//!
//! - A block is either **call-wide** (only `call-id`, or a `from-tag`
//!   without the `directional` flag) or **directional**: for one party,
//!   named by `from-tag` with `directional`, or by `address` (the media
//!   address its SDP advertised). What a party sends is blocked when the
//!   call or that party is.
//! - Unblocking the whole call leaves directional blocks in place unless
//!   `flags` has `all` (or `all=all`); unblocking a party clears that
//!   party's own block only.
//! - `label` selects a party in rtpengine; tern keeps no labels, so a
//!   `label` matches nobody and the command fails as rtpengine's does for
//!   an unknown label.
//!
//! The effect is three flags of each slot leg (`LegConfig::block_dtmf`,
//! `block_media`, `silence_media`) that the worker acts on; they are
//! stamped again on every offer and answer, so a fork or re-offer keeps
//! them.

use super::*;

/// Which control a command sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Control {
    /// RFC 4733 telephone-event packets.
    Dtmf,
    /// Every other RTP packet.
    Media,
    /// G.711 payloads replaced by silence.
    Silence,
}

/// What is blocked, for the whole call or one party.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Blocks {
    pub(super) dtmf: bool,
    pub(super) media: bool,
    pub(super) silence: bool,
}

impl Blocks {
    fn set(&mut self, c: Control, on: bool) {
        match c {
            Control::Dtmf => self.dtmf = on,
            Control::Media => self.media = on,
            Control::Silence => self.silence = on,
        }
    }

    fn or(self, o: Blocks) -> Blocks {
        Blocks {
            dtmf: self.dtmf || o.dtmf,
            media: self.media || o.media,
            silence: self.silence || o.silence,
        }
    }
}

/// A call's blocks: call-wide, and per party tag.
#[derive(Debug, Clone, Default)]
pub(super) struct CallBlocks {
    pub(super) call: Blocks,
    pub(super) parties: HashMap<String, Blocks>,
}

impl CallBlocks {
    /// What the party tagged `tag` (if known) may not send.
    fn of(&self, tag: Option<&str>) -> Blocks {
        let party = tag
            .and_then(|t| self.parties.get(t))
            .copied()
            .unwrap_or_default();
        self.call.or(party)
    }

    /// Writes the blocks of each leg's party into `cfg`.
    pub(super) fn stamp(&self, tags: &[Option<String>; 2], cfg: &mut SlotConfig) {
        for (leg, tag) in tags.iter().enumerate() {
            let b = self.of(tag.as_deref());
            let l = &mut cfg.legs[leg];
            l.block_dtmf = b.dtmf;
            l.block_media = b.media;
            l.silence_media = b.silence;
        }
    }
}

impl NgCore {
    /// `block`/`unblock` (`on`) of `what`: the call's or one party's
    /// blocks changed, and every slot of the call republished.
    ///
    /// Errors (rtpengine's texts): no `call-id`; an unknown call; a
    /// `directional` `from-tag` that is no party's; an `address` that
    /// does not parse or that no party advertised; any `label`.
    pub(super) fn media_control(
        &mut self,
        m: &Msg<'_>,
        what: Control,
        on: bool,
        warnings: &mut Warnings,
    ) -> Reply {
        let call_id = field(m.str("call-id"), "No call-id in message", "call-id")?;
        let flags = Flags::parse(m, warnings)?;
        let all = flags.all || field(m.opt_str("all"), "", "all")? == Some("all");
        let table = self.table.clone();
        let call = self
            .calls
            .get_mut(call_id)
            .ok_or(CommandError::Control("Unknown call-ID"))?;
        let party = if field(m.opt_str("label"), "", "label")?.is_some() {
            return Err(CommandError::Control(
                "No monologue matching the given label",
            ));
        } else if let Some(a) = field(m.opt_str("address"), "", "address")? {
            let ip: IpAddr = a
                .trim()
                .parse()
                .map_err(|_| CommandError::Control("Failed to parse network address"))?;
            Some(
                party_at(call, ip)
                    .ok_or(CommandError::Control("Failed to match address to any tag"))?,
            )
        } else {
            match field(m.opt_str("from-tag"), "", "from-tag")? {
                Some(tag) if flags.directional && !all => {
                    if !call.branches.iter().any(|b| b.leg_of(tag).is_some()) {
                        return Err(CommandError::Control(
                            "From-tag given, but no such tag exists",
                        ));
                    }
                    Some(tag.to_string())
                }
                _ => None,
            }
        };
        match &party {
            Some(tag) => call
                .blocks
                .parties
                .entry(tag.clone())
                .or_default()
                .set(what, on),
            None => {
                call.blocks.call.set(what, on);
                if !on && all {
                    for b in call.blocks.parties.values_mut() {
                        b.set(what, false);
                    }
                }
            }
        }
        info!(
            call_id,
            ?what,
            on,
            party = party.as_deref(),
            "ng: media control"
        );
        for branch in &mut call.branches {
            for ms in &mut branch.media {
                let Some(slot) = ms.slot else { continue };
                call.blocks.stamp(&branch.tags, &mut ms.cfg);
                table
                    .publish(slot, &ms.cfg)
                    .map_err(|e| CommandError::Table(e.to_string()))?;
            }
        }
        Ok(Dict::new())
    }
}

/// The tag of the party whose SDP advertised media address `ip`.
fn party_at(call: &Call, ip: IpAddr) -> Option<String> {
    call.branches.iter().find_map(|b| {
        b.media.iter().find_map(|ms| {
            (0..2).find_map(|leg| {
                let hit = ms.advertised[leg].is_some_and(|a| a.ip() == ip);
                b.tags[leg].clone().filter(|_| hit)
            })
        })
    })
}
