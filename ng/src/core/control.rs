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
use tern_shared::table::{DtmfPlay, MediaPlay, MAX_PLAY_EVENTS};

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

/// A call's blocks: call-wide, and per party tag; and the events each
/// party had played (`play DTMF`).
#[derive(Debug, Clone, Default)]
pub(super) struct CallBlocks {
    pub(super) call: Blocks,
    pub(super) parties: HashMap<String, Blocks>,
    pub(super) plays: HashMap<String, DtmfPlay>,
    /// `play media` toward each party (by the tag of the party that
    /// hears it).
    pub(super) media_plays: HashMap<String, MediaPlay>,
    /// The last `play media` request number of the call.
    pub(super) media_play_seq: u32,
    /// Recording (core/record.rs): call-wide.
    pub(super) record: CallRecord,
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
            l.play = tag.as_deref().and_then(|t| self.plays.get(t)).copied();
            // A play on this leg replaces what its peer sends: the other
            // leg's party hears it.
            l.media.play = tags[leg ^ 1]
                .as_deref()
                .and_then(|t| self.media_plays.get(t))
                .copied();
        }
        self.record.stamp(cfg);
    }
}

/// `play DTMF` defaults and bounds (rtpengine's `call_play_dtmf_ng`), ms
/// and −dBm0.
const DTMF_DURATION: (i64, i64, i64) = (250, 100, 5000);
const DTMF_PAUSE: (i64, i64, i64) = (100, 100, 5000);
const DTMF_VOLUME: i64 = 8;

/// The RFC 4733 §3.2 event of a `code`: an integer 0–15, or one of
/// `0`–`9`, `*`, `#`, `A`–`D` (either case).
fn dtmf_code(m: &Msg<'_>) -> Result<u8, CommandError> {
    let key = if m.get("code").is_some() {
        "code"
    } else {
        "digit"
    };
    let out_of_range = CommandError::Control("Out of range 'code' specified");
    if let Ok(Some(n)) = m.opt_int(key) {
        if matches!(m.get(key), Some(Value::Int(_))) {
            return u8::try_from(n)
                .ok()
                .filter(|&c| c <= 15)
                .ok_or(out_of_range);
        }
    }
    let s = field(m.str(key), "No DTMF code specified", key)?;
    let mut chars = s.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else {
        return Err(out_of_range);
    };
    match c.to_ascii_uppercase() {
        d @ '0'..='9' => Ok(d as u8 - b'0'),
        '*' => Ok(10),
        '#' => Ok(11),
        l @ 'A'..='D' => Ok(l as u8 - b'A' + 12),
        _ => Err(out_of_range),
    }
}

/// `key` clamped to `(default, min, max)`; 0 or absent is the default.
fn bounded(m: &Msg<'_>, key: &str, (def, lo, hi): (i64, i64, i64)) -> Result<u16, CommandError> {
    let v = field(m.opt_int(key), "", key)?
        .filter(|&v| v != 0)
        .unwrap_or(def);
    Ok(v.clamp(lo, hi) as u16)
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
        let (call_id, flags, all) = control_args(m, warnings)?;
        let table = self.table.clone();
        let call = control_call(&mut self.calls, call_id)?;
        let party = match select(m, call)? {
            Some(t) => Some(t),
            None => match field(m.opt_str("from-tag"), "", "from-tag")? {
                Some(tag) if flags.directional && !all => Some(party(call, tag)?),
                _ => None,
            },
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
        republish(call, &table)?;
        Ok(Dict::new())
    }
}

impl NgCore {
    /// `play DTMF`: one event (`code`) played into what the selected
    /// party sends (`from-tag`, `address`; every party with `all`), so
    /// the other side receives it as RFC 4733; queued behind the
    /// party's earlier ones.
    ///
    /// Errors (rtpengine's texts): those of [`NgCore::media_control`]'s
    /// selection; no party selected; a `code` out of range; a party
    /// whose media has no telephone-event payload type.
    pub(super) fn play_dtmf(&mut self, m: &Msg<'_>, warnings: &mut Warnings) -> Reply {
        let (call_id, _, all) = control_args(m, warnings)?;
        let table = self.table.clone();
        let call = control_call(&mut self.calls, call_id)?;
        let parties: Vec<String> = if all {
            let mut t: Vec<String> = call
                .branches
                .iter()
                .flat_map(|b| b.tags.iter().flatten().cloned())
                .collect();
            t.sort();
            t.dedup();
            t
        } else {
            match select(m, call)? {
                Some(t) => vec![t],
                None => {
                    if let Some(tag) = field(m.opt_str("from-tag"), "", "from-tag")? {
                        vec![party(call, tag)?]
                    } else {
                        return Err(CommandError::Control("No participant party specified"));
                    }
                }
            }
        };
        let event = dtmf_code(m)?;
        let duration_ms = bounded(m, "duration", DTMF_DURATION)?;
        let pause_ms = bounded(m, "pause", DTMF_PAUSE)?;
        let volume = field(m.opt_int("volume"), "", "volume")?
            .map_or(DTMF_VOLUME, |v| v.abs())
            .min(63) as u8;
        // Every party must have a leg that carries events.
        let can = |tag: &str| {
            call.branches.iter().any(|b| {
                b.leg_of(tag)
                    .is_some_and(|l| b.media.iter().any(|ms| ms.cfg.legs[l].dtmf_pt.is_some()))
            })
        };
        if !parties.iter().all(|t| can(t)) {
            return Err(CommandError::Control(
                "Monologue has no media capable of DTMF injection",
            ));
        }
        for tag in &parties {
            let p = call.blocks.plays.entry(tag.clone()).or_default();
            // The last MAX_PLAY_EVENTS events, the newest last; `id`
            // counts them all (the worker takes the new ones by it).
            let n = usize::from(p.count);
            if n == MAX_PLAY_EVENTS {
                p.events.copy_within(1.., 0);
                p.events[n - 1] = event;
            } else {
                p.events[n] = event;
                p.count += 1;
            }
            p.id = p.id.wrapping_add(1).max(1);
            p.duration_ms = duration_ms;
            p.pause_ms = pause_ms;
            p.volume = volume;
        }
        info!(
            call_id,
            event,
            duration_ms,
            parties = parties.len(),
            "ng: play DTMF"
        );
        republish(call, &table)?;
        Ok(Dict::new())
    }
}

/// Stamps the call's media control on every slot of every branch and
/// publishes them.
/// What every media-control command opens with (rtpengine's
/// `call_ng_flags` and call lookup): its Call-ID, its flags and whether
/// it is for `all` parties (the flag, or `all: all`).
///
/// Errors: no `call-id`; the flags' errors.
pub(super) fn control_args<'m>(
    m: &Msg<'m>,
    warnings: &mut Warnings,
) -> Result<(&'m str, Flags, bool), CommandError> {
    let call_id = field(m.str("call-id"), "No call-id in message", "call-id")?;
    let flags = Flags::parse(m, warnings)?;
    let all = flags.all || field(m.opt_str("all"), "", "all")? == Some("all");
    Ok((call_id, flags, all))
}

/// The call `call_id` names; rtpengine's "Unknown call-ID" otherwise.
pub(super) fn control_call<'c>(
    calls: &'c mut HashMap<String, Call>,
    call_id: &str,
) -> Result<&'c mut Call, CommandError> {
    calls
        .get_mut(call_id)
        .ok_or(CommandError::Control("Unknown call-ID"))
}

pub(super) fn republish(call: &mut Call, table: &SlotTable) -> Result<(), CommandError> {
    for branch in &mut call.branches {
        for ms in &mut branch.media {
            let Some(slot) = ms.slot else { continue };
            call.blocks.stamp(&branch.tags, &mut ms.cfg);
            table
                .publish(slot, &ms.cfg)
                .map_err(|e| CommandError::Table(e.to_string()))?;
        }
    }
    Ok(())
}

/// `tag`, if it is a party of the call (rtpengine's error otherwise).
pub(super) fn party(call: &Call, tag: &str) -> Result<String, CommandError> {
    if call.branches.iter().any(|b| b.leg_of(tag).is_some()) {
        Ok(tag.to_string())
    } else {
        Err(CommandError::Control(
            "From-tag given, but no such tag exists",
        ))
    }
}

/// The party named by `label` (none: an error) or `address`, if either
/// is given.
pub(super) fn select(m: &Msg<'_>, call: &Call) -> Result<Option<String>, CommandError> {
    if field(m.opt_str("label"), "", "label")?.is_some() {
        return Err(CommandError::Control(
            "No monologue matching the given label",
        ));
    }
    let Some(a) = field(m.opt_str("address"), "", "address")? else {
        return Ok(None);
    };
    let ip: IpAddr = a
        .trim()
        .parse()
        .map_err(|_| CommandError::Control("Failed to parse network address"))?;
    party_at(call, ip)
        .map(Some)
        .ok_or(CommandError::Control("Failed to match address to any tag"))
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

/// A call's recording state (ng `start`/`stop`/`pause recording`,
/// `record.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct CallRecord {
    pub(super) on: bool,
    pub(super) paused: bool,
    /// The recording's number (0: never started).
    pub(super) id: u32,
}

/// Recording numbers of this process: never 0, so a leg that was never
/// recorded (id 0) is told apart.
static NEXT_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

impl CallRecord {
    /// Starts, or resumes a paused recording.
    pub(super) fn start(&mut self) {
        if !self.on {
            self.id = NEXT_ID
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .max(1);
        }
        self.on = true;
        self.paused = false;
    }

    pub(super) fn stop(&mut self) {
        self.on = false;
        self.paused = false;
    }

    pub(super) fn pause(&mut self) {
        self.paused = self.on;
    }

    /// Writes the state into both legs of `cfg`.
    pub(super) fn stamp(&self, cfg: &mut SlotConfig) {
        for l in &mut cfg.legs {
            l.media.record = self.on;
            l.media.record_paused = self.paused;
            l.media.record_id = self.id;
        }
    }
}
