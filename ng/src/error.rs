//! Why a command failed: each variant's `Display` is the `error-reason`
//! rtpengine 10.5 sends for the same failure (its `call_interfaces.c`
//! texts where it has one), so a Kamailio or OpenSIPS log reads the same
//! with either relay.

use std::fmt;

use crate::bencode::FieldError;

/// A command answered `result: error`; `to_string()` is its
/// `error-reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// A required key is absent; carries rtpengine's text for it, e.g.
    /// `No call-id in message`.
    Missing(&'static str),
    /// A key holds the wrong bencode type (`Invalid type of key 'KEY'`).
    WrongType(String),
    /// The message is not one bencode dictionary (truncated, trailing
    /// bytes, too deep, not a dictionary).
    Bencode(&'static str),
    /// `command` names nothing this relay does.
    UnknownCommand,
    /// `answer` or `query` for a call-id the relay does not hold.
    UnknownCallId,
    /// `delete` (with `fatal`) for a call-id or tags the relay does not hold.
    CallNotFound,
    /// `answer` whose from-tag is neither party's.
    UnknownFromTag,
    /// `offer` past the most calls held at once.
    SessionLimit,
    /// No free relay slot with bound ports is left.
    OutOfPorts,
    /// The slot table refused an operation (a state race or a bug).
    Table(String),
    /// The SDP body does not parse.
    Sdp(String),
    /// `list` with a negative `limit`.
    InvalidLimit,
    /// `direction`, `from-interface`, `to-interface` or `interface` names
    /// no interface of the relay (rtpengine's log text; rtpengine itself
    /// goes on with its default interface).
    UnknownInterface(String),
    /// A media-control command (`block DTMF` and the like) named no call
    /// or no party; rtpengine's `media_block_match` text.
    Control(&'static str),
    /// `play media` could not start: rtpengine's text, then tern's reason
    /// (the file is missing or not a WAV tern plays).
    Media(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Missing(text) => f.write_str(text),
            CommandError::WrongType(key) => write!(f, "Invalid type of key '{key}'"),
            CommandError::Bencode(why) => f.write_str(why),
            CommandError::UnknownCommand => f.write_str("Unrecognized command"),
            CommandError::UnknownCallId => f.write_str("Unknown call-id"),
            CommandError::CallNotFound => f.write_str("Call-ID not found or tags didn't match"),
            CommandError::UnknownFromTag => {
                f.write_str("Invalid dialogue association (unknown from-tag)")
            }
            CommandError::SessionLimit => f.write_str("Parallel session limit reached"),
            CommandError::OutOfPorts => f.write_str("Ran out of ports (no free relay slot)"),
            CommandError::Table(e) => write!(f, "Slot table: {e}"),
            CommandError::Sdp(e) => f.write_str(e),
            CommandError::InvalidLimit => f.write_str("invalid limit, must be >= 0"),
            CommandError::UnknownInterface(n) => write!(f, "Interface '{n}' not found"),
            CommandError::Control(text) => f.write_str(text),
            CommandError::Media(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for CommandError {}

/// A field of the message: `missing` is the error when a required key is
/// absent (unused for optional reads, which never report it).
pub(crate) fn field<T>(
    r: Result<T, FieldError>,
    missing: &'static str,
    key: &str,
) -> Result<T, CommandError> {
    r.map_err(|e| match e {
        FieldError::Missing => CommandError::Missing(missing),
        FieldError::WrongType => CommandError::WrongType(key.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_rtpengines() {
        assert_eq!(
            CommandError::Missing("No call-id in message").to_string(),
            "No call-id in message"
        );
        assert_eq!(
            CommandError::WrongType("sdp".into()).to_string(),
            "Invalid type of key 'sdp'"
        );
        assert!(CommandError::OutOfPorts
            .to_string()
            .starts_with("Ran out of ports"));
        assert_eq!(
            field::<u8>(Err(FieldError::WrongType), "", "flags"),
            Err(CommandError::WrongType("flags".into()))
        );
        assert_eq!(
            field::<u8>(Err(FieldError::Missing), "No SDP body in message", "sdp"),
            Err(CommandError::Missing("No SDP body in message"))
        );
    }
}
