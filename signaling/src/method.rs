//! [`Method`]: the SIP request methods tern dispatches on (RFC 3261 §7.1
//! and the extensions that name one), parsed once from the request line
//! instead of string matches.

use std::fmt;

/// Methods we answer (the `Allow` header, RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, UPDATE, INFO, PRACK, REFER";

/// A SIP request method. Method names are case-sensitive (RFC 3261
/// §7.1): `invite` is an extension method, not INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// RFC 3261 §13: starts a session (or, in a dialog, changes it).
    Invite,
    /// RFC 3261 §13.2.2.4, §17.1.1.3: acknowledges a final response to INVITE.
    Ack,
    /// RFC 3261 §15: ends a session.
    Bye,
    /// RFC 3261 §9: cancels a pending INVITE.
    Cancel,
    /// RFC 3261 §10: binds an AOR to contacts.
    Register,
    /// RFC 3261 §11: asks for capabilities.
    Options,
    /// RFC 3311: a new offer without a re-INVITE.
    Update,
    /// RFC 6086: mid-dialog information.
    Info,
    /// RFC 3262: acknowledges a reliable provisional response.
    Prack,
    /// RFC 3515: asks the recipient to send a request (transfer).
    Refer,
    /// RFC 6665: a subscription's state.
    Notify,
    /// RFC 6665: asks for event notifications.
    Subscribe,
    /// RFC 3428: an instant message.
    Message,
    /// RFC 3903: publishes event state.
    Publish,
    /// Any other (extension) method, as written.
    Other(String),
}

impl Method {
    /// The method named by `token` (case-sensitive, RFC 3261 §7.1);
    /// anything unknown is [`Method::Other`]. Never fails.
    pub fn parse(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method's token as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Method {
    fn from(token: &str) -> Method {
        Method::parse(token)
    }
}

#[cfg(test)]
mod tests {
    use super::Method;

    #[test]
    fn known_methods_round_trip() {
        for m in [
            "INVITE",
            "ACK",
            "BYE",
            "CANCEL",
            "REGISTER",
            "OPTIONS",
            "UPDATE",
            "INFO",
            "PRACK",
            "REFER",
            "NOTIFY",
            "SUBSCRIBE",
            "MESSAGE",
            "PUBLISH",
        ] {
            let parsed = Method::parse(m);
            assert!(!matches!(parsed, Method::Other(_)), "{m}");
            assert_eq!(parsed.as_str(), m);
            assert_eq!(parsed.to_string(), m);
            assert_eq!(Method::parse(parsed.as_str()), parsed);
        }
    }

    #[test]
    fn unknown_and_lowercase_methods_are_other() {
        assert_eq!(Method::parse("FOO"), Method::Other("FOO".into()));
        assert_eq!(Method::parse("FOO").as_str(), "FOO");
        // Case-sensitive (RFC 3261 §7.1).
        assert_eq!(Method::parse("invite"), Method::Other("invite".into()));
        assert_eq!(Method::parse(""), Method::Other(String::new()));
        assert_eq!(Method::from("BYE"), Method::Bye);
    }
}
