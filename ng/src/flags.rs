//! The flags and keys of one `offer`, `answer` or `delete`, parsed from
//! the message (rtpengine's `flags`, `replace`, `rtcp-mux`, `ICE`,
//! `transport-protocol`, `supports`, `TOS`, jitter-buffer keys,
//! `received-from`). Unknown flags and values are not errors: they are
//! named in the reply's `warning` ([`Warnings`]).

use std::net::IpAddr;

use tern_shared::table::{JitterSettings, Learning};

use crate::bencode::{Msg, Value};
use crate::codec::CodecFlags;
use crate::error::{field, CommandError};
use crate::keys::Warnings;
use crate::sdp::RtcpAttr;

/// rtcp-mux flags of an offer (rtpengine's `rtcp-mux` list).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MuxFlags {
    pub(crate) offer: bool,
    pub(crate) accept: bool,
    pub(crate) demux: bool,
    pub(crate) require: bool,
    pub(crate) reject: bool,
}

/// `ICE=` (rtpengine): what the relay does with ICE toward the recipient
/// of the SDP. The sender's own ICE is always taken: its leg does ICE-lite
/// when its SDP has ICE, whatever the flag, and an answer to an ICE
/// offerer carries the relay's credentials unless it says `remove`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum IceMode {
    /// ICE-lite toward the recipient when the sender did ICE.
    #[default]
    Default,
    /// ICE-lite toward the recipient always.
    Force,
    /// Never: ICE lines are removed.
    Remove,
    /// As `default` (rtpengine: offer ICE only if the sender did).
    Optional,
}

/// `DTLS=` (rtpengine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum DtlsMode {
    /// `a=setup:actpass` when offering, `active` when answering actpass.
    #[default]
    Default,
    /// The relay takes the passive role (DTLS server).
    Passive,
    /// The relay takes the active role (DTLS client).
    Active,
    /// rtpengine's `off`: no DTLS offered to the recipient where it would
    /// choose between DTLS and SDES. A DTLS-SRTP sender is still answered
    /// with DTLS (as rtpengine does): the flag never touches the sender's
    /// leg.
    Off,
}

/// SDES restrictions (`SDES-off`, `SDES-no-<suite>`, `SDES-only-<suite>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SdesFlags {
    pub(crate) off: bool,
    pub(crate) no: Vec<String>,
    pub(crate) only: Vec<String>,
}

impl SdesFlags {
    /// Whether suite `name` may be offered or accepted.
    pub(crate) fn allows(&self, name: &str) -> bool {
        !self.off
            && !self.no.iter().any(|n| n == name)
            && (self.only.is_empty() || self.only.iter().any(|n| n == name))
    }

    fn take(&mut self, v: &str) -> bool {
        if matches!(v, "off" | "no" | "disabled" | "disable") {
            self.off = true;
        } else if let Some(s) = v.strip_prefix("no-") {
            self.no.push(s.to_string());
        } else if let Some(s) = v.strip_prefix("only-") {
            self.only.push(s.to_string());
        } else {
            return false;
        }
        true
    }
}

/// The flags of one offer/answer/delete message.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flags {
    pub(crate) trust_address: bool,
    pub(crate) strict_source: bool,
    pub(crate) media_handover: bool,
    pub(crate) ssrc_rewrite: bool,
    pub(crate) replace_origin: bool,
    pub(crate) replace_session_conn: bool,
    pub(crate) mux: MuxFlags,
    pub(crate) transport: Option<String>,
    pub(crate) rtcp_attr: RtcpAttr,
    pub(crate) received_from: Option<IpAddr>,
    pub(crate) fatal: bool,
    /// Media control: a `from-tag` selects that party (rtpengine's
    /// `directional`; `rtpp-flags` `from-tag=X` sets it too).
    pub(crate) directional: bool,
    /// Media control: unblocking the call unblocks every party too.
    pub(crate) all: bool,
    /// `jitter-buffer` (on) or `no-jitter-buffer` (off); `None`: neither.
    pub(crate) jitter: Option<bool>,
    /// `jitter-buffer-adaptive`: size the delay from measured jitter.
    pub(crate) jitter_adaptive: bool,
    /// `jitter-buffer-target` and `jitter-buffer-max`, ms.
    pub(crate) jitter_target_ms: Option<u16>,
    pub(crate) jitter_max_ms: Option<u16>,
    pub(crate) ice: IceMode,
    pub(crate) dtls: DtlsMode,
    pub(crate) sdes: SdesFlags,
    /// `generate-mid`: add `a=mid` to sections that lack one.
    pub(crate) generate_mid: bool,
    /// `supports` names `load limit`: past the session limit an offer is
    /// answered `result: load limit` instead of an error.
    pub(crate) supports_load_limit: bool,
    /// `TOS`: the TOS byte asked for this call's media.
    pub(crate) tos: Option<u8>,
    /// The `codec` dictionary and the `codec-*` flags.
    pub(crate) codec: CodecFlags,
    /// Interface names of the sender's and the recipient's side
    /// (`direction`, or `from-interface`/`to-interface`).
    pub(crate) direction: [Option<String>; 2],
    /// `address family`: the family of the SDP going out (true: IP4).
    pub(crate) address_family: Option<bool>,
    /// `media address`: the sender's media address, over its SDP's and
    /// `received-from`.
    pub(crate) media_address: Option<IpAddr>,
    /// `interface` (rtpengine's publish/subscribe): checked, not used.
    pub(crate) interface: Option<String>,
}

/// rtpengine compares flags with spaces turned into hyphens.
fn hyphenate(s: &str) -> String {
    s.trim().replace(' ', "-")
}

/// A `codec-<op>-<codec>` flag (rtpengine's prefix forms of the `codec`
/// dictionary, and `transcode-<codec>`); whether it was one.
fn codec_flag(c: &mut CodecFlags, s: &str) -> bool {
    const OPS: [&str; 9] = [
        "codec-strip-",
        "codec-offer-",
        "codec-except-",
        "codec-mask-",
        "codec-consume-",
        "codec-set-",
        "codec-transcode-",
        "transcode-",
        "codec-accept-",
    ];
    for prefix in OPS {
        let Some(name) = s.strip_prefix(prefix) else {
            continue;
        };
        let list = match prefix {
            "codec-strip-" => &mut c.strip,
            "codec-offer-" => &mut c.offer,
            "codec-except-" => &mut c.except,
            // `consume` is `mask` that also engages transcoding, which
            // tern decides at the answer anyway.
            "codec-mask-" | "codec-consume-" => &mut c.mask,
            "codec-transcode-" | "transcode-" => &mut c.transcode,
            "codec-accept-" => &mut c.accept,
            // `set` only tunes transcoders (bitrate, encoder options): no
            // effect on the SDP in rtpengine either.
            _ => return true,
        };
        list.push(name.to_string());
        return true;
    }
    false
}

/// The `codec` dictionary (rtpengine's `call_ng_codec_flags`). A value
/// that is not a dictionary, or an operation whose value is not a list of
/// strings, is ignored with a warning (rtpengine ignores it silently).
fn codec_dict(m: &Msg<'_>, c: &mut CodecFlags, warnings: &mut Warnings) {
    let Some(v) = m.get("codec") else {
        return;
    };
    let Value::Dict(d) = v else {
        warnings.push("'codec' is not a dictionary: ignored".into());
        return;
    };
    let d = Msg(d);
    for key in d.0.keys() {
        let Ok(k) = std::str::from_utf8(key.as_slice()) else {
            continue;
        };
        let list = match k {
            "strip" => &mut c.strip,
            "offer" => &mut c.offer,
            "except" => &mut c.except,
            "mask" => &mut c.mask,
            // As `codec-set-`: transcoders only.
            "set" => continue,
            "transcode" => &mut c.transcode,
            "accept" => &mut c.accept,
            "consume" => &mut c.mask,
            other => {
                warnings.push(format!("Unknown 'codec' operation '{other}' ignored"));
                continue;
            }
        };
        match d.str_list(k) {
            Ok(items) => list.extend(items.iter().map(|s| s.trim().to_string())),
            Err(_) => warnings.push(format!("'codec' '{k}' is not a list of strings: ignored")),
        }
    }
}

impl Flags {
    pub(crate) fn parse(m: &Msg<'_>, warnings: &mut Warnings) -> Result<Flags, CommandError> {
        let mut f = Flags::default();
        let list = |key: &str| field(m.str_list(key), "", key);
        // Before `flags`, as in a message's (sorted) key order.
        codec_dict(m, &mut f.codec, warnings);
        for raw in list("flags")? {
            match hyphenate(raw).as_str() {
                "trust-address" => f.trust_address = true,
                "SIP-source-address" | "sip-source-address" => f.trust_address = false,
                "strict-source" => f.strict_source = true,
                "media-handover" => f.media_handover = true,
                "SSRC-rewrite" => f.ssrc_rewrite = true,
                "replace-origin" => f.replace_origin = true,
                "replace-session-connection" => f.replace_session_conn = true,
                "no-rtcp-attribute" | "no-RTCP-attribute" => f.rtcp_attr = RtcpAttr::Remove,
                "full-rtcp-attribute" | "full-RTCP-attribute" => f.rtcp_attr = RtcpAttr::Full,
                "rtcp-mux-offer" => f.mux.offer = true,
                "rtcp-mux-accept" => f.mux.accept = true,
                "rtcp-mux-demux" => f.mux.demux = true,
                "rtcp-mux-require" => f.mux.require = true,
                "rtcp-mux-reject" => f.mux.reject = true,
                "fatal" => f.fatal = true,
                "directional" => f.directional = true,
                // rtpengine routes audio through its transcoder for play
                // DTMF; tern plays events without it.
                "inject-DTMF" | "inject-dtmf" => {}
                "all" => f.all = true,
                "jitter-buffer" => f.jitter = Some(true),
                "no-jitter-buffer" => f.jitter = Some(false),
                "jitter-buffer-adaptive" => f.jitter_adaptive = true,
                "generate-mid" => f.generate_mid = true,
                // rtpengine's alias for a browser recipient.
                "WebRTC" => {
                    f.transport = Some("UDP/TLS/RTP/SAVPF".into());
                    f.ice = IceMode::Force;
                    f.mux.offer = true;
                    f.mux.require = true;
                    f.generate_mid = true;
                }
                s if s.starts_with("SDES-") && f.sdes.take(&s["SDES-".len()..]) => {}
                "single-codec" => f.codec.single_codec = true,
                "always-transcode" => f.codec.always_transcode = true,
                s if codec_flag(&mut f.codec, s) => {}
                // What this relay always does: symmetric RTP (media goes
                // back to where the peer's comes from); a re-offer keeps
                // the slot's ports; there is no Redis to update.
                "symmetric" | "port-latching" | "no-redis-update" => {}
                other => warnings.flag(other),
            }
        }
        for raw in list("replace")? {
            match hyphenate(raw).as_str() {
                "origin" => f.replace_origin = true,
                "session-connection" => f.replace_session_conn = true,
                other => warnings.unsupported("replace", other),
            }
        }
        for raw in list("rtcp-mux")? {
            match hyphenate(raw).as_str() {
                "offer" => f.mux.offer = true,
                "accept" => f.mux.accept = true,
                "demux" => f.mux.demux = true,
                "require" => f.mux.require = true,
                "reject" => f.mux.reject = true,
                other => warnings.unsupported("rtcp-mux", other),
            }
        }
        // Interface names: the sender's side, then the recipient's
        // (`core/iface.rs` checks them against the relay's interfaces).
        for (i, name) in list("direction")?.into_iter().take(2).enumerate() {
            f.direction[i] = Some(name.trim().to_string());
        }
        for (i, key) in ["from-interface", "to-interface"].into_iter().enumerate() {
            if let Some(n) = field(m.opt_str(key), "", key)? {
                f.direction[i] = Some(n.trim().to_string());
            }
        }
        f.interface = field(m.opt_str("interface"), "", "interface")?.map(|s| s.trim().to_string());
        match field(m.opt_str("address-family"), "", "address family")? {
            None => {}
            Some(v) if v.eq_ignore_ascii_case("IP4") => f.address_family = Some(true),
            Some(v) if v.eq_ignore_ascii_case("IP6") => f.address_family = Some(false),
            Some(other) => warnings.push(format!("address family '{other}' unknown, ignored")),
        }
        if let Some(a) = field(m.opt_str("media-address"), "", "media address")? {
            match a.trim().parse::<IpAddr>() {
                Ok(ip) if !ip.is_unspecified() => f.media_address = Some(ip),
                _ => warnings.push(format!("media address '{a}' ignored")),
            }
        }
        match field(m.opt_str("ICE"), "", "ICE")? {
            None => {}
            Some("default") => f.ice = IceMode::Default,
            Some("force") => f.ice = IceMode::Force,
            Some("remove") => f.ice = IceMode::Remove,
            Some("optional") => f.ice = IceMode::Optional,
            Some(other) => warnings.push(format!("ICE '{other}' not supported: ICE as default")),
        }
        match field(m.opt_str("DTLS"), "", "DTLS")? {
            None => {}
            Some("passive") => f.dtls = DtlsMode::Passive,
            Some("active") => f.dtls = DtlsMode::Active,
            Some("off" | "no" | "disable" | "disabled") => f.dtls = DtlsMode::Off,
            Some(other) => warnings.push(format!("DTLS '{other}' not supported: DTLS as default")),
        }
        match field(m.opt_str("DTLS-fingerprint"), "", "DTLS-fingerprint")? {
            None | Some("sha-256") => {}
            Some(other) => warnings.push(format!(
                "DTLS-fingerprint '{other}' not supported: sha-256 is used"
            )),
        }
        for raw in list("SDES")? {
            let v = hyphenate(raw);
            if !f.sdes.take(&v) {
                warnings.unsupported("SDES", &v);
            }
        }
        // rtpengine compares the protocol case-insensitively.
        const PROTOS: [&str; 6] = [
            "RTP/AVP",
            "RTP/AVPF",
            "RTP/SAVP",
            "RTP/SAVPF",
            "UDP/TLS/RTP/SAVP",
            "UDP/TLS/RTP/SAVPF",
        ];
        match field(m.opt_str("transport-protocol"), "", "transport-protocol")? {
            None => {}
            Some(p) => match PROTOS.iter().find(|q| q.eq_ignore_ascii_case(p)) {
                Some(q) => f.transport = Some(q.to_string()),
                None => warnings.push(format!(
                    "transport protocol '{p}' not supported: protocol left as offered"
                )),
            },
        }
        for raw in list("supports")? {
            match raw.trim() {
                "load limit" => f.supports_load_limit = true,
                other => warnings.unsupported("supports", other),
            }
        }
        match field(m.opt_int("TOS"), "", "TOS")? {
            None => {}
            Some(v @ 0..=255) => f.tos = Some(v as u8),
            // rtpengine: 256 (its "unset") or more leaves it as it is.
            Some(v) if v > 255 => {}
            Some(v) => warnings.push(format!("TOS {v} out of range 0..=255, ignored")),
        }
        for (key, out) in [
            ("jitter-buffer-target", &mut f.jitter_target_ms),
            ("jitter-buffer-max", &mut f.jitter_max_ms),
        ] {
            match field(m.opt_int(key), "", key)? {
                None => {}
                Some(v @ 1..=5000) => *out = Some(v as u16),
                Some(v) => warnings.push(format!("{key} {v} ms out of range 1..=5000, ignored")),
            }
        }
        let rf = list("received-from")?;
        if let Some(a) = rf.get(1) {
            match a.trim().parse::<IpAddr>() {
                Ok(ip) => f.received_from = Some(ip),
                Err(_) => warnings.push(format!("received-from address '{a}' ignored")),
            }
        }
        Ok(f)
    }

    /// The jitter-buffer settings this message asks for, if it says
    /// anything: the flags, else the delay keys alone (which switch it on).
    pub(crate) fn jitter(&self, default: JitterSettings) -> Option<JitterSettings> {
        let keys = self.jitter_target_ms.is_some() || self.jitter_max_ms.is_some();
        let on = self
            .jitter
            .or((keys || self.jitter_adaptive).then_some(true))?;
        let max_ms = self.jitter_max_ms.unwrap_or(default.max_ms);
        Some(JitterSettings {
            enabled: on,
            target_ms: self
                .jitter_target_ms
                .unwrap_or(default.target_ms)
                .min(max_ms),
            max_ms,
            adaptive: self.jitter_adaptive || default.adaptive,
        })
    }

    pub(crate) fn learning(&self) -> Learning {
        if self.strict_source {
            Learning::Strict
        } else if self.media_handover {
            Learning::LearnAlways
        } else {
            Learning::LearnOnce
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::{bstr, str_list, Dict};

    fn parse(d: Dict) -> (Flags, Warnings) {
        let Value::Dict(map) = d.into_value() else {
            unreachable!()
        };
        let mut w = Warnings::default();
        let f = Flags::parse(&Msg(&map), &mut w).unwrap();
        (f, w)
    }

    #[test]
    fn codec_dictionary_and_prefix_flags() {
        let codec = Dict::new()
            .with("strip", str_list(["all"]))
            .with("offer", str_list(["PCMA", "opus"]))
            .with("except", str_list(["G722"]))
            .with("mask", str_list(["PCMU"]))
            .with("set", str_list(["opus/48000/2/32000"]))
            .with("transcode", str_list(["G729"]))
            .with("frobnicate", str_list(["x"]));
        let flags = str_list([
            "codec-strip-PCMU",
            "codec-offer-G722",
            "codec-except-opus",
            "codec-mask-PCMA",
            "codec-set-opus/48000/2",
            "codec-transcode-AMR",
            "transcode-G729",
            "codec-accept-PCMU",
            "single-codec",
            "always-transcode",
        ]);
        let (f, w) = parse(
            Dict::new()
                .with("codec", codec.into_value())
                .with("flags", flags),
        );
        let c = &f.codec;
        assert_eq!(c.strip, ["all", "PCMU"]);
        assert_eq!(c.offer, ["PCMA", "opus", "G722"]);
        assert_eq!(c.except, ["G722", "opus"]);
        assert_eq!(c.mask, ["PCMU", "PCMA"]);
        assert_eq!(c.transcode, ["G729", "AMR", "G729"]);
        assert_eq!(c.accept, ["PCMU"]);
        assert!(c.single_codec && c.always_transcode);
        let joined = w.render();
        assert!(!joined.contains("unsupported flags"), "{joined}");
        assert!(
            joined.contains("Unknown 'codec' operation 'frobnicate'"),
            "{joined}"
        );
        // set has no SDP effect and is not warned about.
        assert!(!joined.contains("set"), "{joined}");
        let (_, w) = parse(Dict::new().with("codec", bstr("strip")));
        assert_eq!(w.render(), "'codec' is not a dictionary: ignored");
    }
}
