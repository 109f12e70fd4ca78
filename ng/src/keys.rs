//! Which ng dictionary keys tern reads, under every spelling rtpengine
//! 10.5 accepts (its `call_ng_main_flags` matches exact strings, so
//! `call id` and `call-ID` are aliases of `call-id` but `Call-Id` is
//! not), and the reply's `warning`: every key, flag and list value tern
//! does not implement is named there, never dropped silently.

use std::fmt::Write as _;

/// The keys tern implements: canonical name first, then rtpengine's other
/// spellings of it. [`crate::bencode::Msg::get`] finds a key under any of
/// them; any key of a message not listed is warned.
pub(crate) const KNOWN_KEYS: &[&[&str]] = &[
    &["command"],
    &["call-id", "call-ID", "call id", "call ID"],
    &["from-tag"],
    &["to-tag"],
    &["via-branch", "via branch"],
    &["sdp", "SDP"],
    &["received-from", "received from"],
    &["flags"],
    &["replace"],
    &["rtcp-mux", "RTCP-mux"],
    &["ICE", "ice"],
    &["DTLS", "dtls"],
    &[
        "DTLS-fingerprint",
        "DTLS fingerprint",
        "dtls fingerprint",
        "dtls-fingerprint",
    ],
    &["SDES", "sdes"],
    &["transport-protocol", "transport protocol"],
    &["direction"],
    &["from-interface", "from interface"],
    &["to-interface", "to interface"],
    &["interface"],
    &["address-family", "address family"],
    &["media-address", "media address"],
    &["supports"],
    &["codec"],
    &["TOS", "tos"],
    &["delete-delay", "delete delay"],
    &["limit"],
    // Media control (core/control.rs).
    &["address"],
    &["all"],
    &["code", "digit"],
    &["duration"],
    &["volume"],
    &["pause"],
    &["file"],
    &["blob"],
    &["db-id"],
    &["repeat-times"],
    // Recording (core/record.rs).
    &["record-call", "record call"],
    // tern's own.
    &["jitter-buffer-target"],
    &["jitter-buffer-max"],
    // Expanded into the message before anything else reads it.
    &["rtpp-flags", "rtpp_flags"],
];

/// The spellings of `key` (its row of [`KNOWN_KEYS`]), or just `key`.
pub(crate) fn spellings(key: &str) -> &[&str] {
    KNOWN_KEYS
        .iter()
        .find(|row| row.contains(&key))
        .copied()
        .unwrap_or_default()
}

/// Whether `key` (as sent) is a spelling of a key tern implements.
pub(crate) fn is_known(key: &str) -> bool {
    KNOWN_KEYS.iter().any(|row| row.contains(&key))
}

/// The warnings of one command. Unsupported names are grouped by kind
/// (`unsupported ng keys: a, b; unsupported flags: c`); other notes
/// (a value out of range, a fallback taken) follow, `; `-joined.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Warnings {
    /// (group, names): `ng keys`, `flags`, `replace`, `rtcp-mux`, `SDES`.
    groups: Vec<(&'static str, Vec<String>)>,
    notes: Vec<String>,
}

impl Warnings {
    /// A free-form note.
    pub(crate) fn push(&mut self, note: String) {
        self.notes.push(note);
    }

    /// Whether `note` was pushed already.
    pub(crate) fn contains(&self, note: &str) -> bool {
        self.notes.iter().any(|n| n == note)
    }

    /// An unsupported name of `group` (each name once).
    pub(crate) fn unsupported(&mut self, group: &'static str, name: &str) {
        let i = match self.groups.iter().position(|(g, _)| *g == group) {
            Some(i) => i,
            None => {
                self.groups.push((group, Vec::new()));
                self.groups.len() - 1
            }
        };
        let names = &mut self.groups[i].1;
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }

    /// An unsupported dictionary key.
    pub(crate) fn key(&mut self, name: &str) {
        self.unsupported("ng keys", name);
    }

    /// An unsupported flag.
    pub(crate) fn flag(&mut self, name: &str) {
        self.unsupported("flags", name);
    }

    /// How many unsupported names were warned.
    pub(crate) fn unsupported_count(&self) -> usize {
        self.groups.iter().map(|(_, n)| n.len()).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.notes.is_empty()
    }

    /// The reply's `warning` text.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for (group, names) in &self.groups {
            if !out.is_empty() {
                out.push_str("; ");
            }
            let _ = write!(out, "unsupported {group}: {}", names.join(", "));
        }
        for n in &self.notes {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(n);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_and_render() {
        assert_eq!(spellings("call ID"), KNOWN_KEYS[1]);
        assert_eq!(spellings("nope"), &[] as &[&str]);
        assert!(is_known("transport protocol") && !is_known("Call-Id"));
        let mut w = Warnings::default();
        assert!(w.is_empty());
        w.push("note".into());
        w.key("record call");
        w.flag("loop-protect");
        w.key("label");
        w.key("label");
        assert_eq!(w.unsupported_count(), 3);
        assert_eq!(
            w.render(),
            "unsupported ng keys: record call, label; unsupported flags: loop-protect; note"
        );
    }
}
