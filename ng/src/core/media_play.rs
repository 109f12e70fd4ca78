//! `play media` and `stop media` (rtpengine 10.5's
//! `docs/ng_control_protocol.md`, "play media Message"): a WAV file
//! played to the selected party, in place of what the other party sends
//! it, then the other party's media again.
//!
//! - The party that hears the file is selected as for `play DTMF`
//!   (`from-tag`, `address`; every party with `all`), and `to-tag` is
//!   read as a `from-tag` would be.
//! - `file` is loaded here (tern-shared's `prompt`: mono 16-bit PCM at
//!   8, 16 or 48 kHz, at most 10 minutes) and published beside the slot
//!   table before the slots naming it; `blob` and `db-id` are refused.
//! - `repeat-times` (default 1) plays it that many times back to back.
//! - The reply's `duration` is the file's length, ms.
//!
//! The effect is each slot leg's [`MediaPlay`] (`LegMedia::play`) on the
//! leg facing the other party: the worker plays the prompt toward the
//! selected party's peer and drops what the other party sends meanwhile.

use std::path::Path;

use super::control::{control_args, control_call, party, republish, select};
use super::*;
use tern_shared::prompt;
use tern_shared::table::MediaPlay;

/// Most `repeat-times` taken (the table's field is 16 bits).
const MAX_REPEAT: i64 = u16::MAX as i64;

impl NgCore {
    /// The parties `m` selects as hearing media: every party with `all`,
    /// else `address` or `from-tag` (or `to-tag`).
    fn media_parties(m: &Msg<'_>, call: &Call, all: bool) -> Result<Vec<String>, CommandError> {
        if all {
            let mut t: Vec<String> = call
                .branches
                .iter()
                .flat_map(|b| b.tags.iter().flatten().cloned())
                .collect();
            t.sort();
            t.dedup();
            return Ok(t);
        }
        if let Some(t) = select(m, call)? {
            return Ok(vec![t]);
        }
        let tag = match field(m.opt_str("from-tag"), "", "from-tag")? {
            Some(t) => Some(t),
            None => field(m.opt_str("to-tag"), "", "to-tag")?,
        };
        match tag {
            Some(t) => Ok(vec![party(call, t)?]),
            None => Err(CommandError::Control("No participant party specified")),
        }
    }

    /// `play media`: see the module documentation.
    ///
    /// Errors: those of the party selection (rtpengine's texts); no
    /// `file` (`blob`, `db-id`: not supported); a file that is missing or
    /// no WAV tern plays ([`CommandError::Media`] with the reason); a
    /// party whose media names no codec tern encodes.
    pub(super) fn play_media(&mut self, m: &Msg<'_>, warnings: &mut Warnings) -> Reply {
        let (call_id, _, all) = control_args(m, warnings)?;
        if m.get("duration").is_some() {
            warnings.key("duration");
        }
        let table = self.table.clone();
        let call = control_call(&mut self.calls, call_id)?;
        let parties = Self::media_parties(m, call, all)?;
        let file = match field(m.opt_str("file"), "", "file")? {
            Some(f) => f,
            None if m.get("blob").is_some() || m.get("db-id").is_some() => {
                return Err(CommandError::Media(
                    "Failed to start media playback from blob: not supported, use 'file'".into(),
                ))
            }
            None => return Err(CommandError::Missing("No media file specified")),
        };
        let repeat = field(m.opt_int("repeat-times"), "", "repeat-times")?
            .unwrap_or(1)
            .clamp(1, MAX_REPEAT) as u16;
        // Each hearing party needs a leg opposite it with a codec.
        let can = |tag: &str| {
            call.branches.iter().any(|b| {
                b.leg_of(tag).is_some_and(|l| {
                    b.media.iter().any(|ms| {
                        let c = &ms.cfg.legs;
                        c[l ^ 1].media.codecs.iter().any(Option::is_some)
                            || c[l].media.codecs.iter().any(Option::is_some)
                    })
                })
            })
        };
        if !parties.iter().all(|t| can(t)) {
            return Err(CommandError::Media(
                "Failed to start media playback from file: the party's media has no codec tern encodes (PCMU, PCMA, G722, opus)".into(),
            ));
        }
        let (id, duration_ms) =
            prompt::load_and_publish(table.path(), Path::new(file)).map_err(|e| {
                CommandError::Media(format!("Failed to start media playback from file: {e}"))
            })?;
        for tag in &parties {
            call.blocks.media_play_seq = call.blocks.media_play_seq.wrapping_add(1).max(1);
            let p = MediaPlay {
                id: call.blocks.media_play_seq,
                repeat,
                file: id,
            };
            call.blocks.media_plays.insert(tag.clone(), p);
        }
        info!(
            call_id,
            file,
            repeat,
            duration_ms,
            parties = parties.len(),
            "ng: play media"
        );
        republish(call, &table)?;
        Ok(Dict::new().with("duration", uint(duration_ms)))
    }

    /// `stop media`: ends the play to the selected parties at once (none
    /// playing is no error, as in rtpengine).
    pub(super) fn stop_media(&mut self, m: &Msg<'_>, warnings: &mut Warnings) -> Reply {
        let (call_id, _, all) = control_args(m, warnings)?;
        let table = self.table.clone();
        let call = control_call(&mut self.calls, call_id)?;
        let parties = Self::media_parties(m, call, all)?;
        for tag in &parties {
            call.blocks.media_plays.remove(tag);
        }
        info!(call_id, parties = parties.len(), "ng: stop media");
        republish(call, &table)?;
        Ok(Dict::new())
    }
}
