//! Call recording control: `start recording`, `stop recording`, `pause
//! recording`, and the offer/answer key `record call` (`record-call`),
//! with rtpengine 10.5's semantics (`docs/ng_control_protocol.md`,
//! "start recording Message" and the following; `call_start_recording_ng`):
//!
//! - recording is call-wide: a `from-tag` is accepted and changes nothing
//!   (rtpengine records every party of the call);
//! - `start recording` on a paused recording resumes it (same files); on a
//!   stopped or never-started one it starts a new recording (a new
//!   `record_id`, so the writer opens new files);
//! - `pause recording` keeps the files open and writes nothing; `stop
//!   recording` closes them;
//! - `record call` with `yes`/`on` in an offer or answer starts recording
//!   (a no-op if it is on), `no`/`off` stops it.
//!
//! The effect is each slot leg's `LegMedia::record`, `record_paused` and
//! `record_id`, stamped with the media control on every publish.

use super::*;

/// The parties' tags of the calls being recorded, by Call-ID, shared
/// with the recording writer (its JSON's `from_tag`/`to_tag`): the table
/// carries no tags. Filled when recording starts, emptied at stop and
/// when the call ends. Not on the packet path (a lock per command).
#[derive(Debug, Clone, Default)]
pub struct RecordTags(pub Arc<std::sync::Mutex<HashMap<String, [Option<String>; 2]>>>);

impl PartialEq for RecordTags {
    fn eq(&self, o: &RecordTags) -> bool {
        Arc::ptr_eq(&self.0, &o.0)
    }
}
impl Eq for RecordTags {}

impl RecordTags {
    /// The tags of `call_id`, if it is recorded.
    pub fn get(&self, call_id: &str) -> [Option<String>; 2] {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(call_id).cloned())
            .unwrap_or_default()
    }

    pub(super) fn set(&self, call_id: &str, tags: Option<[Option<String>; 2]>) {
        if let Ok(mut m) = self.0.lock() {
            match tags {
                Some(t) => {
                    m.insert(call_id.to_string(), t);
                }
                None => {
                    m.remove(call_id);
                }
            }
        }
    }
}

impl NgCore {
    /// Keeps the shared tags of `call_id` in step with its recording.
    pub(super) fn note_record_tags(&self, call_id: &str) {
        let Some(rt) = &self.cfg.record_tags else {
            return;
        };
        let tags = self
            .calls
            .get(call_id)
            .filter(|c| c.blocks.record.on)
            .and_then(|c| c.branches.first().map(|b| b.tags.clone()));
        rt.set(call_id, tags);
    }
}

/// What a recording command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecordOp {
    Start,
    Stop,
    Pause,
}

/// The `record call` key of an offer or answer: `Some(true)` for
/// `yes`/`on`, `Some(false)` for `no`/`off`, `None` when absent; another
/// value is warned and ignored.
pub(super) fn record_call_key(m: &Msg<'_>, warnings: &mut Warnings) -> Option<bool> {
    let v = m.opt_str("record-call").ok().flatten()?;
    match v.to_ascii_lowercase().as_str() {
        "yes" | "on" => Some(true),
        "no" | "off" => Some(false),
        other => {
            warnings.push(format!("record-call value '{other}' not understood"));
            None
        }
    }
}

impl NgCore {
    /// `start recording` / `stop recording` / `pause recording`.
    ///
    /// Errors (rtpengine's texts): no `call-id`; an unknown call.
    pub(super) fn recording(
        &mut self,
        m: &Msg<'_>,
        op: RecordOp,
        warnings: &mut Warnings,
    ) -> Reply {
        let call_id = field(m.str("call-id"), "No call-id in message", "call-id")?;
        // `metadata` and `output-destination` are not known keys: the
        // dispatcher has named them in the warning already.
        let _ = warnings;
        let table = self.table.clone();
        let call = self
            .calls
            .get_mut(call_id)
            .ok_or(CommandError::Control("Unknown call-ID"))?;
        match op {
            RecordOp::Start => call.blocks.record.start(),
            RecordOp::Stop => call.blocks.record.stop(),
            RecordOp::Pause => call.blocks.record.pause(),
        }
        info!(call_id, ?op, id = call.blocks.record.id, "ng: recording");
        super::control::republish(call, &table)?;
        self.note_record_tags(call_id);
        Ok(Dict::new())
    }
}

#[cfg(test)]
mod tests {
    use super::super::control::CallRecord;
    use super::*;

    #[test]
    fn start_pause_resume_stop() {
        let mut r = CallRecord::default();
        r.pause();
        assert!(!r.on && !r.paused);
        r.start();
        let id = r.id;
        assert!(r.on && id != 0);
        r.pause();
        assert!(r.paused);
        r.start();
        assert_eq!((r.on, r.paused, r.id), (true, false, id));
        r.stop();
        r.start();
        assert_ne!(r.id, id);
        let mut cfg = SlotConfig::default();
        r.stamp(&mut cfg);
        assert!(cfg
            .legs
            .iter()
            .all(|l| l.media.record && l.media.record_id == r.id));
    }
}
