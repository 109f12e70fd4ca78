//! `rtpp-flags` / `rtpp_flags`: all of a message's options as one string
//! of Kamailio-style tokens (Kamailio 5.7+ and OpenSIPS send it;
//! rtpengine 12.4+ parses it in `daemon/control_ng_flags_parser.c`,
//! `parse_rtpp_flags`). 10.5 has no such key; tern follows the 12.x
//! parser and expands the string into the same dictionary keys the
//! dictionary form uses, before anything reads the message:
//!
//! - tokens are separated by spaces; `key=value` splits on the first `=`;
//! - `received-from=ADDR` → `received-from: [IP4|IP6, ADDR]`;
//! - `RTP`, `AVP`, `SRTP`, `AVPF`, `DTLS` and the full names (`RTP/AVP`,
//!   ..., `UDP/TLS/RTP/SAVPF`) combine into one `transport-protocol`;
//! - `internal`, `external` and each `direction=X` go into `direction`;
//! - `delete-delay=N` → an integer;
//! - `from-tag=X` → `from-tag: X` and the flag `directional`;
//! - `transcode`/`codec-transcode`, `codec-strip`, `codec-offer`,
//!   `codec-mask`, `codec-set`, `codec-accept`, `codec-except` (`-X` or
//!   `=X`) would go into rtpengine's `codec` dictionary; tern does not
//!   transcode or filter codecs, so each is warned as an unsupported flag;
//! - any other bare token is appended to `flags`, any other `key=value`
//!   sets `key` to the string `value` (appended where the key is a list:
//!   `SDES`, `replace`, `rtcp-mux`, `supports`, `flags`, `direction`).
//!
//! Unknown tokens are therefore warned exactly like unknown flags or keys
//! of the dictionary form.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bt_bencode::{ByteString, Value};

use crate::bencode::{bstr, int, str_list};
use crate::error::CommandError;
use crate::keys::{spellings, Warnings};

type DictMap = BTreeMap<ByteString, Value>;

/// rtpengine's transport table, indexed by its bit set (`SRTP` = 1,
/// `AVPF` = 2, `DTLS` = 4).
const TRANSPORTS: [Option<&str>; 8] = [
    Some("RTP/AVP"),
    Some("RTP/SAVP"),
    Some("RTP/AVPF"),
    Some("RTP/SAVPF"),
    Some("UDP/TLS/RTP/SAVP"),
    None,
    Some("UDP/TLS/RTP/SAVPF"),
    None,
];

/// Prefixes of the codec tokens (rtpengine's `parse_codecs`).
const CODEC_TOKENS: [&str; 8] = [
    "transcode",
    "codec-transcode",
    "codec-strip",
    "codec-offer",
    "codec-mask",
    "codec-set",
    "codec-accept",
    "codec-except",
];

/// Keys whose value is a list: a token appends to it.
const LIST_KEYS: [&str; 6] = [
    "flags",
    "replace",
    "rtcp-mux",
    "SDES",
    "supports",
    "direction",
];

/// `name=v` (non-empty `v`) or `name-v` (rtpengine's
/// `str_key_val_prefix`): the value.
fn key_val_prefix<'a>(key: &'a str, val: Option<&'a str>, name: &str) -> Option<&'a str> {
    if key == name {
        return val.filter(|v| !v.is_empty());
    }
    key.strip_prefix(name)?
        .strip_prefix('-')
        .filter(|v| !v.is_empty())
}

/// The dictionary key already holding `key` under one of its spellings,
/// else `key` itself.
fn existing_key(d: &DictMap, key: &str) -> ByteString {
    let names = spellings(key);
    names
        .iter()
        .find(|k| d.contains_key(k.as_bytes()))
        .copied()
        .map_or_else(
            || ByteString::from(key.as_bytes().to_vec()),
            |k| ByteString::from(k.as_bytes().to_vec()),
        )
}

/// Appends string `v` to list key `key` of `d` (a string there becomes a
/// list of two).
fn append(d: &mut DictMap, key: &str, v: &str) {
    let k = existing_key(d, key);
    match d.remove(&k) {
        Some(Value::List(mut l)) => {
            l.push(bstr(v));
            d.insert(k, Value::List(l));
        }
        Some(s @ Value::ByteStr(_)) => {
            d.insert(k, Value::List(vec![s, bstr(v)]));
        }
        _ => {
            d.insert(k, str_list([v]));
        }
    }
}

/// Sets key `key` of `d` to `v`, replacing any spelling of it.
fn set(d: &mut DictMap, key: &str, v: Value) {
    let k = existing_key(d, key);
    d.insert(k, v);
}

/// Replaces the `rtpp-flags` (or `rtpp_flags`) string of `d`, if any, by
/// the keys it stands for (see the module documentation).
///
/// Errors: the key holds something other than a UTF-8 string.
pub(crate) fn expand(d: &mut DictMap, warnings: &mut Warnings) -> Result<(), CommandError> {
    let mut text = None;
    for name in ["rtpp-flags", "rtpp_flags"] {
        match d.remove(name.as_bytes()) {
            None => {}
            Some(Value::ByteStr(b)) => match String::from_utf8(b.into_vec()) {
                Ok(s) => text = Some(s),
                Err(_) => return Err(CommandError::WrongType(name.into())),
            },
            Some(_) => return Err(CommandError::WrongType(name.into())),
        }
    }
    let Some(text) = text else {
        return Ok(());
    };
    let mut transport = 0u32;
    let mut direction: Vec<String> = Vec::new();
    for token in text.split(' ').filter(|t| !t.is_empty()) {
        let (key, val) = match token.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (token, None),
        };
        if let Some(addr) = key_val_prefix(key, val, "received-from") {
            let family = match addr.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => "IP4",
                _ => "IP6",
            };
            set(d, "received-from", str_list([family, addr]));
            continue;
        }
        if CODEC_TOKENS
            .iter()
            .any(|c| key_val_prefix(key, val, c).is_some())
        {
            warnings.flag(token);
            continue;
        }
        match (key, val) {
            ("RTP", None) => transport = (transport | 0x100) & !0x001,
            ("AVP", None) => transport = (transport | 0x100) & !0x002,
            ("SRTP", None) => transport |= 0x101,
            ("AVPF", None) => transport |= 0x102,
            ("DTLS", None) => transport |= 0x104,
            ("RTP/AVP", None) => transport = 0x100,
            ("RTP/SAVP", None) => transport = 0x101,
            ("RTP/AVPF", None) => transport = 0x102,
            ("RTP/SAVPF", None) => transport = 0x103,
            ("UDP/TLS/RTP/SAVP", None) => transport = 0x104,
            ("UDP/TLS/RTP/SAVPF", None) => transport = 0x106,
            ("internal" | "external", _) => direction.push(key.to_string()),
            ("direction", Some(v)) => direction.push(v.to_string()),
            // As 12.x: naming the party also makes a media-control
            // command directional.
            ("from-tag", Some(v)) => {
                set(d, "from-tag", bstr(v));
                append(d, "flags", "directional");
            }
            ("delete-delay", Some(v)) => {
                // rtpengine's atoi: a non-number is 0.
                let n: i64 = v.trim().parse().unwrap_or(0);
                set(d, "delete-delay", int(n));
            }
            (flag, None) => append(d, "flags", flag),
            (k, Some(v))
                if LIST_KEYS
                    .iter()
                    .any(|l| spellings(l).contains(&k) || *l == k) =>
            {
                append(d, k, v)
            }
            (k, Some(v)) => set(d, k, bstr(v)),
        }
    }
    if transport != 0 {
        if let Some(Some(p)) = TRANSPORTS.get((transport & 7) as usize) {
            set(d, "transport-protocol", bstr(*p));
        }
    }
    if !direction.is_empty() {
        set(d, "direction", str_list(&direction));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::Msg;

    fn run(s: &str) -> (DictMap, Warnings) {
        let mut d = DictMap::new();
        d.insert(ByteString::from(b"rtpp-flags".to_vec()), bstr(s));
        let mut w = Warnings::default();
        expand(&mut d, &mut w).unwrap();
        (d, w)
    }

    fn s<'a>(d: &'a DictMap, k: &str) -> Option<&'a str> {
        Msg(d).opt_str(k).unwrap()
    }

    fn l<'a>(d: &'a DictMap, k: &str) -> Vec<&'a str> {
        Msg(d).str_list(k).unwrap()
    }

    #[test]
    fn bare_tokens_are_flags() {
        let (d, w) = run("  trust-address   replace-origin SDES-off ");
        assert_eq!(
            l(&d, "flags"),
            ["trust-address", "replace-origin", "SDES-off"]
        );
        assert!(w.is_empty());
        assert!(!d.contains_key(b"rtpp-flags".as_slice()));
    }

    #[test]
    fn key_value_sets_the_key() {
        let (d, _) = run("ICE=remove DTLS=passive call-id=x=y");
        assert_eq!(s(&d, "ICE"), Some("remove"));
        assert_eq!(s(&d, "DTLS"), Some("passive"));
        // Split on the first '='.
        assert_eq!(s(&d, "call-id"), Some("x=y"));
    }

    #[test]
    fn list_keys_append() {
        let mut d = DictMap::new();
        d.insert(ByteString::from(b"SDES".to_vec()), str_list(["no-X"]));
        d.insert(
            ByteString::from(b"rtpp_flags".to_vec()),
            bstr("SDES=off replace=origin"),
        );
        expand(&mut d, &mut Warnings::default()).unwrap();
        assert_eq!(l(&d, "SDES"), ["no-X", "off"]);
        assert_eq!(l(&d, "replace"), ["origin"]);
    }

    #[test]
    fn received_from_gets_a_family() {
        let (d, _) = run("received-from=10.0.0.9");
        assert_eq!(l(&d, "received-from"), ["IP4", "10.0.0.9"]);
        let (d, _) = run("received-from-2001:db8::1");
        assert_eq!(l(&d, "received-from"), ["IP6", "2001:db8::1"]);
    }

    #[test]
    fn transport_tokens_combine() {
        for (flags, proto) in [
            ("RTP/AVP", Some("RTP/AVP")),
            ("RTP/SAVPF", Some("RTP/SAVPF")),
            ("UDP/TLS/RTP/SAVPF", Some("UDP/TLS/RTP/SAVPF")),
            ("RTP", Some("RTP/AVP")),
            ("SRTP AVPF", Some("RTP/SAVPF")),
            ("DTLS", Some("UDP/TLS/RTP/SAVP")),
            ("DTLS AVPF", Some("UDP/TLS/RTP/SAVPF")),
            ("SRTP RTP", Some("RTP/AVP")),
            ("DTLS SRTP", None),
        ] {
            let (d, _) = run(flags);
            assert_eq!(s(&d, "transport-protocol"), proto, "{flags}");
        }
    }

    #[test]
    fn direction_collects() {
        let (d, _) = run("internal direction=pub external");
        assert_eq!(l(&d, "direction"), ["internal", "pub", "external"]);
    }

    #[test]
    fn delete_delay_is_an_integer() {
        let (d, _) = run("delete-delay=7");
        assert_eq!(Msg(&d).opt_int("delete-delay"), Ok(Some(7)));
        let (d, _) = run("delete-delay=x");
        assert_eq!(Msg(&d).opt_int("delete-delay"), Ok(Some(0)));
    }

    #[test]
    fn from_tag_is_a_key() {
        let (d, _) = run("from-tag=abc");
        assert_eq!(s(&d, "from-tag"), Some("abc"));
        assert_eq!(l(&d, "flags"), ["directional"]);
    }

    #[test]
    fn codec_tokens_are_warned() {
        let (d, w) = run("codec-strip-PCMA transcode=G722 codec-mask-all");
        assert!(l(&d, "flags").is_empty());
        assert_eq!(
            w.render(),
            "unsupported flags: codec-strip-PCMA, transcode=G722, codec-mask-all"
        );
    }

    #[test]
    fn not_a_string_is_a_type_error() {
        let mut d = DictMap::new();
        d.insert(ByteString::from(b"rtpp-flags".to_vec()), int(3));
        assert_eq!(
            expand(&mut d, &mut Warnings::default()),
            Err(CommandError::WrongType("rtpp-flags".into()))
        );
    }
}
