//! WebRTC media in the B2BUA's SDP: reading a party's DTLS-SRTP and ICE
//! attributes, and shaping what tern sends each party, so that a browser
//! (JSEP, RFC 8829) and a plain SIP phone (RTP/AVP, RFC 3551) can talk
//! through one relay slot.
//!
//! - [`read`]: what a party's SDP says of WebRTC on its first audio
//!   `m=` line ([`WebrtcInfo`]): the profile, `a=fingerprint` (RFC 8122),
//!   `a=setup` (RFC 4145, RFC 8842), ICE credentials (RFC 8839 §5.4),
//!   `a=mid` (RFC 9143), and the body's `m=` line layout ([`MLine`]).
//! - [`relayout`]: a body cut or padded to the `m=` lines a party has
//!   negotiated: RFC 3264 §6 (an answer has the offer's `m=` lines, in
//!   order) and §8.1 (a later offer keeps them). Only the anchored audio
//!   stream carries media; every other line is rejected with port 0.
//! - [`to_webrtc`]: a body for a WebRTC party: `UDP/TLS/RTP/SAVPF`,
//!   `a=ice-lite` (RFC 8839 §5.3), tern's ICE credentials and one host
//!   candidate, the dataplane's fingerprint, `a=setup`, `a=rtcp-mux`
//!   (RFC 5761, RFC 8858), `a=mid` and `a=group:BUNDLE` (RFC 8843).
//! - [`to_plain`]: a body from a WebRTC party for a plain one: `RTP/AVP`,
//!   with every ICE, DTLS, BUNDLE and RTP-extension line removed.
//!
//! The relay terminates DTLS-SRTP and ICE-lite per leg, so nothing here
//! passes one party's secure-media attributes to the other.

use std::net::IpAddr;

use tern_shared::sdp::{
    candidate_value, connection_value, fingerprint_value, host_priority, Attribute, SecureMedia,
    Setup,
};

use crate::sdp::{is_ice, lines, writer, SdpError};

/// The WebRTC media profile (RFC 5764 §8, RFC 8829 §5.1.2).
pub const WEBRTC_PROFILE: &str = "UDP/TLS/RTP/SAVPF";

/// The plain RTP profile (RFC 3551).
pub const PLAIN_PROFILE: &str = "RTP/AVP";

/// The `a=fingerprint` hash function tern's certificate is given in.
const OUR_HASH: &str = "sha-256";

/// The RFC 8122 hash number the slot table stores for a hash function
/// name (`LegSecurity`'s `DtlsParams::hash`): 1 sha-1, 2 sha-224,
/// 3 sha-256, 4 sha-384, 5 sha-512; `None` for others (md5, md2).
pub fn hash_number(alg: &str) -> Option<u8> {
    ["sha-1", "sha-224", "sha-256", "sha-384", "sha-512"]
        .iter()
        .position(|h| h.eq_ignore_ascii_case(alg))
        .map(|i| i as u8 + 1)
}

/// One `m=` line of a body, as a party negotiated it: enough to write it
/// again rejected (RFC 3264 §6: port 0, the same media, proto and
/// formats) with its `a=mid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MLine {
    /// `audio`, `video`, `application`, …
    pub media: String,
    /// The transport protocol.
    pub proto: String,
    /// The format words, space-separated.
    pub formats: String,
    /// Its `a=mid` (RFC 9143 §5), if any.
    pub mid: Option<String>,
    /// Whether it is the first audio line: the one the slot anchors.
    pub anchored: bool,
}

/// What a party's SDP says about WebRTC media on its first audio `m=`
/// line (session-level attributes apply where the section has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebrtcInfo {
    /// The audio `m=` line's profile.
    pub proto: String,
    /// `a=fingerprint`: RFC 8122 hash number ([`hash_number`]) and
    /// digest; `None` when absent or unreadable.
    pub fingerprint: Option<(u8, Vec<u8>)>,
    /// An `a=fingerprint` line was there (readable or not).
    pub has_fingerprint: bool,
    /// `a=setup` (RFC 4145 §4).
    pub setup: Option<Setup>,
    /// `a=ice-ufrag` (RFC 8839 §5.4), when valid.
    pub ice_ufrag: Option<String>,
    /// `a=ice-pwd`, when valid.
    pub ice_pwd: Option<String>,
    /// The audio section's `a=mid`.
    pub mid: Option<String>,
    /// Every `m=` line of the body, in order.
    pub layout: Vec<MLine>,
}

impl WebrtcInfo {
    /// Whether the audio profile is DTLS-SRTP: `UDP/TLS/RTP/SAVP(F)`
    /// (RFC 5764 §8), or `RTP/SAVPF` with an `a=fingerprint` (as some
    /// WebRTC gateways write it).
    pub fn dtls_profile(&self) -> bool {
        self.proto.starts_with("UDP/TLS/RTP/SAVP")
            || (self.proto == "RTP/SAVPF" && self.has_fingerprint)
    }

    /// Whether the party is a WebRTC endpoint (DTLS-SRTP with a
    /// fingerprint the relay can pin, RFC 5763 §5; its ICE credentials
    /// are read when given).
    ///
    /// Errors: [`SdpError::Secure`] for a DTLS-SRTP profile without a
    /// usable `a=fingerprint`.
    pub fn is_webrtc(&self) -> Result<bool, SdpError> {
        match (self.dtls_profile(), &self.fingerprint) {
            (false, _) => Ok(false),
            (true, Some(_)) => Ok(true),
            (true, None) => Err(SdpError::Secure(
                "DTLS-SRTP without a usable sha-1/sha-2 a=fingerprint",
            )),
        }
    }
}

/// Reads the WebRTC attributes of `body`'s first audio stream and its
/// `m=` layout.
///
/// Errors: [`SdpError::NotSdp`], [`SdpError::NoAudio`] (also for an
/// unreadable audio `m=` line).
pub fn read(body: &[u8]) -> Result<WebrtcInfo, SdpError> {
    let (doc, _) = lines(body)?;
    let session = doc.session();
    let mut info = WebrtcInfo::default();
    let mut found = false;
    for s in doc.media_sections() {
        // parse_audio reports an unreadable audio m= line first.
        let Some(Ok(m)) = s.media_line() else {
            continue;
        };
        let sec = SecureMedia::read(&s, Some(&session));
        let anchored = !found && m.media == "audio";
        let mid = sec.mid.and_then(Result::ok).map(str::to_string);
        info.layout.push(MLine {
            media: m.media.to_string(),
            proto: m.proto.to_string(),
            formats: m.formats().collect::<Vec<_>>().join(" "),
            mid: mid.clone(),
            anchored,
        });
        if anchored {
            found = true;
            info.proto = m.proto.to_string();
            info.has_fingerprint = sec.fingerprint.is_some();
            info.fingerprint = sec
                .fingerprint
                .and_then(Result::ok)
                .and_then(|f| Some((hash_number(f.algorithm)?, f.digest().to_vec())));
            info.setup = sec.setup.and_then(Result::ok);
            info.ice_ufrag = sec.ice_ufrag.and_then(Result::ok).map(str::to_string);
            info.ice_pwd = sec.ice_pwd.and_then(Result::ok).map(str::to_string);
            info.mid = mid;
        }
    }
    if !found {
        return Err(SdpError::NoAudio);
    }
    Ok(info)
}

/// The `m=` layout of `body` (as [`read`] gives it); empty when the body
/// does not read.
pub fn layout_of(body: &[u8]) -> Vec<MLine> {
    read(body).map(|i| i.layout).unwrap_or_default()
}

/// `body` with the `m=` lines of `layout`, in its order: the session part
/// and the first audio section come from `body`, every other line of
/// `layout` is written rejected (`m=<media> 0 <proto> <formats>`,
/// RFC 3264 §6), with `c=` `ip` and, when `with_mid`, its `a=mid`.
/// `body`'s other sections are dropped. An empty `layout` keeps only the
/// audio section. Line ends become CRLF.
///
/// Errors: [`SdpError::NotSdp`], [`SdpError::NoAudio`].
pub fn relayout(
    body: &[u8],
    layout: &[MLine],
    ip: IpAddr,
    with_mid: bool,
) -> Result<Vec<u8>, SdpError> {
    let (doc, live) = lines(body)?;
    let keep = |i: usize| live.binary_search(&i).is_ok();
    let mut out = String::with_capacity(body.len() + 64 * layout.len());
    let push = |out: &mut String, t: &str| {
        out.push_str(t);
        out.push_str("\r\n");
    };
    for (i, l) in doc.session().indexed() {
        if keep(i) {
            push(&mut out, l.text());
        }
    }
    let audio = doc
        .media_sections()
        .find(|s| matches!(s.media_line(), Some(Ok(m)) if m.media == "audio"))
        .ok_or(SdpError::NoAudio)?;
    let write_audio = |out: &mut String| {
        for (i, l) in audio.indexed() {
            if keep(i) {
                push(out, l.text());
            }
        }
    };
    if !layout.iter().any(|m| m.anchored) {
        write_audio(&mut out);
    }
    for m in layout {
        if m.anchored {
            write_audio(&mut out);
            continue;
        }
        push(
            &mut out,
            &format!("m={} 0 {} {}", m.media, m.proto, m.formats),
        );
        push(&mut out, &format!("c={}", connection_value(ip)));
        if let (true, Some(mid)) = (with_mid, &m.mid) {
            push(&mut out, &format!("a=mid:{mid}"));
        }
    }
    Ok(out.into_bytes())
}

/// Attributes tern owns toward a WebRTC party (its own are written
/// instead) or that name the other party's RTP streams, which the relay
/// rewrites: DTLS (RFC 8122, 8842, 4145), SDES, BUNDLE, mid, rtcp(-mux),
/// and `a=ssrc`/`a=ssrc-group` (RFC 5576).
fn owned_toward_webrtc(name: &str) -> bool {
    is_ice(name)
        || matches!(
            name,
            "fingerprint"
                | "setup"
                | "tls-id"
                | "crypto"
                | "group"
                | "mid"
                | "rtcp"
                | "rtcp-mux"
                | "rtcp-mux-only"
                | "ssrc"
                | "ssrc-group"
        )
}

/// Attributes a plain RTP/AVP party is not told: ICE, DTLS, SDES,
/// BUNDLE and mid (RFC 8843, 9143), RTP header extensions (RFC 8285),
/// RTCP feedback (RFC 4585, meaningless under AVP) and reduced-size RTCP
/// (RFC 5506), source attributes (RFC 5576), msid (RFC 8830) and data
/// channel (RFC 8841) attributes.
fn webrtc_only(name: &str) -> bool {
    is_ice(name)
        || matches!(
            name,
            "fingerprint"
                | "setup"
                | "tls-id"
                | "crypto"
                | "identity"
                | "group"
                | "mid"
                | "extmap"
                | "extmap-allow-mixed"
                | "rtcp-fb"
                | "rtcp-rsize"
                | "rtcp-mux-only"
                | "ssrc"
                | "ssrc-group"
                | "msid"
                | "msid-semantic"
                | "sctp-port"
                | "sctpmap"
                | "max-message-size"
        )
}

/// What tern tells a WebRTC party in one SDP.
#[derive(Debug, Clone, Copy)]
pub struct LocalWebrtc<'a> {
    /// Our ICE-lite ufrag and password toward it (RFC 8839 §5.4).
    pub ice_ufrag: &'a str,
    /// See `ice_ufrag`.
    pub ice_pwd: &'a str,
    /// SHA-256 of the dataplane's DTLS certificate (RFC 8122 §5).
    pub fingerprint: &'a [u8; 32],
    /// Our `a=setup`: `actpass` offering, `active`/`passive` answering
    /// (RFC 8842 §5).
    pub setup: Setup,
    /// The audio section's `a=mid`: the offerer's, or `0` (RFC 8829
    /// §5.2.1) when we offer a new section.
    pub mid: &'a str,
    /// The relay leg's media address and RTP port: the one host
    /// candidate (rtcp-mux, so one component).
    pub ip: IpAddr,
    /// See `ip`.
    pub port: u16,
}

/// Makes `body` (rewritten to the relay leg, laid out by [`relayout`]) a
/// WebRTC body: the audio `m=` line gets `UDP/TLS/RTP/SAVPF`; the
/// session part gets `a=ice-lite` and `a=group:BUNDLE <mid>`; the audio
/// section gets `a=mid`, `a=ice-ufrag`, `a=ice-pwd`, `a=fingerprint`,
/// `a=setup`, `a=rtcp-mux`, one host `a=candidate` (priority per RFC 8445
/// §5.1.2.1) and `a=end-of-candidates` (RFC 8840). The attributes of
/// [`owned_toward_webrtc`] are removed first. A rejected audio stream
/// (port 0) gets only its `a=mid`. Other sections are left as they are
/// (rejected by [`relayout`]).
///
/// Errors: [`SdpError::NotSdp`], [`SdpError::NoAudio`].
pub fn to_webrtc(body: &[u8], local: &LocalWebrtc<'_>) -> Result<Vec<u8>, SdpError> {
    let (doc, live) = lines(body)?;
    let mut w = writer(&doc, &live);
    let session = doc.session();
    let audio = doc
        .media_sections()
        .find(|s| matches!(s.media_line(), Some(Ok(m)) if m.media == "audio"))
        .ok_or(SdpError::NoAudio)?;
    let port = match audio.media_line() {
        Some(Ok(m)) => m.port,
        _ => return Err(SdpError::NoAudio),
    };
    w.remove_attributes(&session, |a| owned_toward_webrtc(a.name.trim()));
    w.remove_attributes(&audio, |a| owned_toward_webrtc(a.name.trim()));
    if port != 0 {
        let at = session.end().saturating_sub(1);
        w.insert_after(at, "a=ice-lite");
        w.insert_after(at, format!("a=group:BUNDLE {}", local.mid));
    }
    w.set_media(audio.start(), port, Some(WEBRTC_PROFILE));
    let mut add = |name: &str, value: Option<&str>| {
        w.add_attribute(&audio, name, value);
    };
    add("mid", Some(local.mid));
    if port != 0 {
        add("ice-ufrag", Some(local.ice_ufrag));
        add("ice-pwd", Some(local.ice_pwd));
        add(
            "fingerprint",
            Some(&fingerprint_value(OUR_HASH, local.fingerprint)),
        );
        add("setup", Some(local.setup.as_str()));
        add("rtcp-mux", None);
        let prio = host_priority(1, 65535);
        let cand = candidate_value("1", 1, "UDP", prio, local.ip, local.port, "host");
        add("candidate", Some(&cand));
        add("end-of-candidates", None);
    }
    Ok(w.finish().into_bytes())
}

/// Makes `body`, which came from a WebRTC party, a plain body: the audio
/// `m=` line gets `RTP/AVP`, and every attribute of [`webrtc_only`] is
/// removed from every level; `a=rtcp-mux` too unless `keep_mux` (an
/// answer may carry it only if the offer did, RFC 5761 §5.1.1). Codecs
/// and their `a=rtpmap`/`a=fmtp` lines stay (an offer's were cut by
/// `restrict_offer`, an answer's by `answer_in_offer_order`).
///
/// Errors: [`SdpError::NotSdp`], [`SdpError::NoAudio`].
pub fn to_plain(body: &[u8], keep_mux: bool) -> Result<Vec<u8>, SdpError> {
    let (doc, live) = lines(body)?;
    let mut w = writer(&doc, &live);
    let drop = |a: &Attribute<'_>| {
        let n = a.name.trim();
        webrtc_only(n) || (!keep_mux && n == "rtcp-mux")
    };
    w.remove_attributes(&doc.session(), drop);
    let mut audio_seen = false;
    for s in doc.media_sections() {
        w.remove_attributes(&s, drop);
        if let Some(Ok(m)) = s.media_line() {
            if !audio_seen && m.media == "audio" {
                audio_seen = true;
                w.set_media(s.start(), m.port, Some(PLAIN_PROFILE));
            }
        }
    }
    if !audio_seen {
        return Err(SdpError::NoAudio);
    }
    Ok(w.finish().into_bytes())
}
