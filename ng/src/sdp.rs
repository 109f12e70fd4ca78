//! The ng commands' SDP policy (RFC 4566 / 8866) over the shared engine
//! ([`tern_shared::sdp`]), which keeps every line this module does not
//! rewrite byte for byte, so codecs, fmtp, crypto and everything else pass
//! through. What it rewrites:
//!
//! - `o=`: the session version is bumped (+1); with `replace-origin` the
//!   address becomes the relay's;
//! - `c=`: every media-level line, and the session-level one when a relayed
//!   media section relies on it (or with `replace-session-connection`),
//!   become the relay's address;
//! - `m=`: the port becomes the slot leg's RTP port, and the transport
//!   protocol may be replaced (`transport-protocol`);
//! - `a=rtcp:`: the slot leg's RTCP port (its RTP port with rtcp-mux);
//! - `a=rtcp-mux`: added or removed as negotiated;
//! - ICE attributes (`a=candidate`, `a=ice-ufrag`, …): removed, since
//!   candidates would route media around the relay (its own ICE-lite lines
//!   come in [`MediaOut::attrs`]);
//! - `a=group:BUNDLE`: removed when a section is relayed, since each
//!   relayed section has a port of its own (rtpengine's default: outgoing
//!   SDPs are never bundled); the sections' `a=mid` stay.
//!
//! Blank lines are dropped, and lines end in CRLF on output whatever they
//! ended in on input.

use std::net::IpAddr;

use tern_shared::codec;

use crate::codec::Codec;
use tern_shared::sdp::{self as engine, Connection, Line, Newline, Origin, Rtcp, RtpMap};
use tern_shared::table::{srtp_suite, srtp_suite_by_name, Direction};

/// Why an SDP body was refused; the text goes into `error-reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpError {
    /// Not SDP: no `v=` first, or a line that is not `<letter>=<value>`.
    Syntax(String),
    /// No `m=` line.
    NoMedia,
    /// An `m=` line, `c=` line or `a=rtcp:` attribute that cannot be read.
    BadLine(String),
    /// A relayed media section with no connection address at either level.
    NoConnection(usize),
}

impl std::fmt::Display for SdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdpError::Syntax(s) => write!(f, "Failed to parse SDP: {s}"),
            SdpError::NoMedia => write!(f, "SDP has no media (no m= line)"),
            SdpError::BadLine(s) => write!(f, "Failed to parse SDP: bad line {s:?}"),
            SdpError::NoConnection(i) => {
                write!(
                    f,
                    "Failed to parse SDP: media {} has no connection address",
                    i + 1
                )
            }
        }
    }
}

impl std::error::Error for SdpError {}

/// Longest SDP body accepted, bytes.
pub const MAX_SDP: usize = 60_000;
/// Most media sections accepted.
pub const MAX_MEDIA: usize = 16;

/// What one media section says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// `audio`, `video`, …
    pub kind: String,
    /// RTP port; 0 means the stream is rejected or disabled.
    pub port: u16,
    /// Transport protocol (`RTP/AVP`, …).
    pub proto: String,
    /// Connection address: the media-level `c=`, else the session-level.
    pub conn: Option<IpAddr>,
    /// `a=rtcp:` port and optional address.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    /// `a=rtcp-mux` present.
    pub rtcp_mux: bool,
    /// Direction attribute of the section, else of the session, else
    /// sendrecv.
    pub direction: Direction,
    /// ICE attributes present.
    pub ice: bool,
    /// Payload type mapped to `telephone-event` (RFC 4733) by an
    /// `a=rtpmap:`, if any of the section's formats is.
    pub dtmf_pt: Option<u8>,
    /// RTP clock rate (Hz) of the first format that is not
    /// `telephone-event`: from its `a=rtpmap:`, else the RFC 3551 §6 table
    /// for static types; 0 when unknown.
    pub clock_rate: u32,
    /// What the section says of secure media.
    pub sec: PeerSecurity,
    /// The payload types of an RTP section, in `m=` order, with their
    /// `a=rtpmap` (else RFC 3551) names; `None` when the protocol is not
    /// RTP or a format is not a payload type number.
    pub codecs: Option<Vec<Codec>>,
}

/// An SDES `a=crypto` line of a peer (RFC 4568 §9.1) whose suite tern has.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerCrypto {
    /// The line's tag (RFC 4568 §9.1), < 10^9.
    pub tag: u32,
    /// `tern_shared::table::SRTP_SUITES` number.
    pub suite: u8,
    /// The master key followed by the salt.
    pub key_salt: Vec<u8>,
}

impl std::fmt::Debug for PeerCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerCrypto(tag {}, suite {})", self.tag, self.suite)
    }
}

/// The secure-media attributes of one media section (session-level
/// fingerprint, setup and ICE credentials apply where the section has
/// none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSecurity {
    /// Usable `a=crypto` lines, in the peer's order of preference; lines
    /// of unknown suites, with a wrong key length or with session
    /// parameters tern does not do (UNENCRYPTED_*, KDR) are left out.
    pub crypto: Vec<PeerCrypto>,
    /// `a=fingerprint`: the RFC 8122 hash number (1 sha-1 … 5 sha-512) and
    /// the digest.
    pub fingerprint: Option<(u8, Vec<u8>)>,
    /// `a=setup` (RFC 4145 §4, RFC 8842).
    pub setup: Option<engine::Setup>,
    /// `a=ice-ufrag` and `a=ice-pwd` (RFC 8839 §5.4).
    pub ice_ufrag: Option<String>,
    /// The peer's ICE password (not needed by an ICE-lite relay).
    pub ice_pwd: Option<String>,
    /// `a=ice-lite`: the peer is a lite agent.
    pub ice_lite: bool,
    /// `a=mid` (RFC 9143).
    pub mid: Option<String>,
}

/// The RFC 8122 hash number a slot stores for `alg` (lower case).
pub fn hash_number(alg: &str) -> Option<u8> {
    match alg {
        "sha-1" => Some(1),
        "sha-224" => Some(2),
        "sha-256" => Some(3),
        "sha-384" => Some(4),
        "sha-512" => Some(5),
        _ => None,
    }
}

fn peer_security(sec: &engine::Section<'_, '_>, session: &engine::Section<'_, '_>) -> PeerSecurity {
    let m = engine::SecureMedia::read(sec, Some(session));
    let crypto = m
        .crypto
        .iter()
        .filter(|c| {
            !c.unencrypted_srtp()
                && !c.unencrypted_srtcp()
                && !c.unauthenticated_srtp()
                && matches!(c.kdr(), Ok(None) | Ok(Some(0)))
                && c.mki.is_none()
        })
        .filter_map(|c| {
            let n = srtp_suite_by_name(c.suite)?;
            let (_, k, s) = srtp_suite(n)?;
            (c.key_salt().len() == k + s).then(|| PeerCrypto {
                tag: c.tag,
                suite: n,
                key_salt: c.key_salt().to_vec(),
            })
        })
        .collect();
    PeerSecurity {
        crypto,
        fingerprint: m
            .fingerprint
            .and_then(Result::ok)
            .and_then(|f| Some((hash_number(f.algorithm)?, f.digest().to_vec()))),
        setup: m.setup.and_then(Result::ok),
        ice_ufrag: m.ice_ufrag.and_then(Result::ok).map(str::to_string),
        ice_pwd: m.ice_pwd.and_then(Result::ok).map(str::to_string),
        ice_lite: m.ice_lite,
        mid: m.mid.and_then(Result::ok).map(str::to_string),
    }
}

/// RTP clock rate of static payload type `pt` (RFC 3551 §6, from
/// [`codec::static_clock_rate`]) when a slot can store it (a multiple of
/// 1000 Hz, or 44100: `LegConfig::clock_rate` is kept in kHz), else 0. So
/// DVI4 at 11025 and 22050 Hz (16, 17) read as unknown; G722 (9) is 8000
/// by the RFC's own quirk, video types are 90000.
fn static_clock_rate(pt: u8) -> u32 {
    codec::static_clock_rate(pt)
        .filter(|r| r % 1000 == 0 || *r == 44_100)
        .unwrap_or(0)
}

/// A parsed SDP body: the engine's line view and what each media section
/// says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp<'a> {
    doc: engine::Sdp<'a>,
    infos: Vec<MediaInfo>,
}

/// How a relayed media section is rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOut {
    /// RTP port of the slot leg facing this SDP's recipient.
    pub port: u16,
    /// The port written into `a=rtcp:` (the leg's RTCP port, or its RTP
    /// port when RTCP is multiplexed).
    pub rtcp_port: u16,
    /// Whether the section carries `a=rtcp-mux`.
    pub mux: bool,
    /// Secure-media attribute lines (`a=crypto:…`, `a=fingerprint:…`,
    /// `a=setup:…`, ICE lines), added at the section's end in place of the
    /// peer's own, which are removed.
    pub attrs: Vec<String>,
    /// The `m=` protocol toward the recipient, when the relay changes it
    /// (else `Rewrite::transport`).
    pub proto: Option<String>,
    /// The relay is ICE-lite toward the recipient: `a=ice-lite` goes into
    /// the session part (RFC 8839 §5.3).
    pub ice_lite: bool,
    /// The `m=` formats when the codec operations changed them: payload
    /// types not listed lose their `a=rtpmap`, `a=fmtp` and `a=rtcp-fb`.
    pub formats: Option<Vec<u8>>,
    /// Codec lines the relay writes for transcoding (`a=rtpmap`,
    /// `a=fmtp`), after the `m=` line.
    pub codec_attrs: Option<CodecAttrs>,
    /// The section's address (its leg's interface); `None`:
    /// [`Rewrite::media_ip`]. A section without its own `c=` whose address
    /// is not the session's gets one.
    pub ip: Option<IpAddr>,
}

/// Codec lines of a section the relay writes (`crate::transcode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecAttrs {
    /// `a=rtpmap:`/`a=fmtp:` lines, without line ends.
    pub lines: Vec<String>,
    /// The section's own `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` lines go
    /// (the answer toward a transcoded offerer names the offerer's
    /// codecs, not the answerer's).
    pub replace: bool,
}

/// `a=rtcp:` handling, from the flags `no-rtcp-attribute` and
/// `full-rtcp-attribute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtcpAttr {
    /// Rewrite existing `a=rtcp:` lines to `a=rtcp:PORT`.
    #[default]
    Rewrite,
    /// Remove `a=rtcp:` lines.
    Remove,
    /// Write `a=rtcp:PORT IN IP4 ADDR` into every relayed section.
    Full,
}

/// The whole rewrite of one SDP body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The relay's media address.
    pub media_ip: IpAddr,
    /// Per media section: `Some` for a relayed one, `None` to leave it as it
    /// is (rejected, port 0).
    pub media: Vec<Option<MediaOut>>,
    /// `replace-origin`: the `o=` address becomes `media_ip`.
    pub replace_origin: bool,
    /// `replace-session-connection`: the session `c=` always becomes
    /// `media_ip`.
    pub replace_session_conn: bool,
    /// `transport-protocol`: the new protocol of relayed `m=` lines.
    pub transport: Option<String>,
    /// `a=rtcp:` handling.
    pub rtcp_attr: RtcpAttr,
    /// Per media section left as it is (`None` in `media`): an `a=mid` to
    /// add when it has none, so that an answer's rejected section still
    /// names the offer's (RFC 9143 §7.3.3; rtpengine does so too).
    pub rejected_mids: Vec<Option<String>>,
}

/// An attribute of secure media the relay replaces: SDES keys (RFC 4568),
/// the DTLS fingerprint and setup (RFC 8122, 4145), `a=ice-lite`.
fn is_secure_attr(name: &str) -> bool {
    matches!(
        name,
        "crypto" | "fingerprint" | "setup" | "ice-lite" | "tls-id"
    )
}

/// `a=group:BUNDLE …` (RFC 9143 §7.1).
fn is_bundle_group(a: &engine::Attribute<'_>) -> bool {
    a.name == "group"
        && a.value
            .and_then(|v| v.split_whitespace().next())
            .is_some_and(|s| s.eq_ignore_ascii_case("BUNDLE"))
}

/// An ICE attribute line (`a=candidate`, `a=ice-ufrag`, …, RFC 8839).
/// For a direction attribute (RFC 4566 §6), the direction it becomes in
/// an RFC 2543 hold (c=0.0.0.0): `sendrecv` → `sendonly`, `recvonly` →
/// `inactive`, the others unchanged. `None` for any other attribute.
fn direction_attr(name: &str) -> Option<&'static str> {
    match name {
        "sendrecv" | "sendonly" => Some("sendonly"),
        "recvonly" | "inactive" => Some("inactive"),
        _ => None,
    }
}

fn is_ice(l: &Line<'_>) -> bool {
    l.attribute().is_some_and(|a| a.is_ice())
}

/// `m=` line `l` with port `port`, protocol `proto` (when given) and the
/// formats `formats`.
fn media_line(l: &Line<'_>, port: u16, proto: Option<&str>, formats: &[u8]) -> String {
    let v = l.value().unwrap_or_default();
    let mut w = v.split_ascii_whitespace();
    let media = w.next().unwrap_or("audio");
    let _ = w.next();
    let proto = proto.or(w.next()).unwrap_or("RTP/AVP");
    let mut out = format!("m={media} {port} {proto}");
    for f in formats {
        out.push_str(&format!(" {f}"));
    }
    out
}

/// A `c=` value whose address type names its address's family.
fn parse_conn(v: &str) -> Option<IpAddr> {
    Connection::parse(v)
        .ok()
        .filter(Connection::addr_type_matches)
        .map(|c| c.ip)
}

/// The value of `a=rtcp:` (`PORT [IN IP4 ADDR]`), the address checked as
/// a `c=` value.
fn parse_rtcp(v: &str) -> Option<(u16, Option<IpAddr>)> {
    let r = Rtcp::parse(v).ok()?;
    match r.address {
        None => Some((r.port, None)),
        Some(a) => Some((r.port, Some(parse_conn(a)?))),
    }
}

/// The codec an `a=rtpmap:` value names (channels 1 unless given).
fn rtpmap_codec(v: &str) -> Option<Codec> {
    let r = RtpMap::parse(v).ok()?;
    let channels = r.params.and_then(|p| p.parse().ok()).unwrap_or(1);
    Some(Codec::new(
        r.pt,
        r.encoding,
        r.clock_rate.unwrap_or(0),
        channels,
    ))
}

/// The payload list of an RTP `m=` line (rtpengine's `proto_is_rtp`),
/// named by the section's rtpmaps, else by RFC 3551.
fn section_codecs(ml: &engine::MediaLine<'_>, maps: &[Codec]) -> Option<Vec<Codec>> {
    if !ml.proto.contains("RTP/") {
        return None;
    }
    let mut out = Vec::new();
    for f in ml.formats() {
        let pt: u8 = f.parse().ok().filter(|p| *p < 128)?;
        if out.iter().any(|c: &Codec| c.pt == pt) {
            continue;
        }
        let c = match (maps.iter().find(|m| m.pt == pt), codec::static_payload(pt)) {
            (Some(m), _) => m.clone(),
            (None, Some(s)) => Codec::new(pt, s.name, s.clock_rate, s.channels.unwrap_or(1).into()),
            (None, None) => Codec::new(pt, "", 0, 1),
        };
        out.push(c);
    }
    Some(out)
}

impl<'a> Sdp<'a> {
    /// Parses `text` (CRLF or LF line ends; blank lines are skipped).
    ///
    /// Errors: [`SdpError::Syntax`] (not SDP, too long, too many media),
    /// [`SdpError::NoMedia`], [`SdpError::BadLine`] (unreadable `m=`, `c=`,
    /// `o=` or `a=rtcp:`), [`SdpError::NoConnection`].
    pub fn parse(text: &'a str) -> Result<Sdp<'a>, SdpError> {
        if text.len() > MAX_SDP {
            return Err(SdpError::Syntax(format!("longer than {MAX_SDP} bytes")));
        }
        let doc = engine::Sdp::read(text);
        let mut seen = false;
        let mut sections = 0;
        for (n, l) in doc.lines().iter().enumerate() {
            if l.is_blank() {
                continue;
            }
            if l.kind().is_none() {
                return Err(SdpError::Syntax(format!(
                    "line {} is not <type>=<value>",
                    n + 1
                )));
            }
            if !seen && !l.is(b'v') {
                return Err(SdpError::Syntax("does not start with v=".into()));
            }
            seen = true;
            if l.is(b'm') {
                if sections >= MAX_MEDIA {
                    return Err(SdpError::Syntax(format!(
                        "more than {MAX_MEDIA} media sections"
                    )));
                }
                sections += 1;
            }
        }
        if !seen {
            return Err(SdpError::Syntax("empty".into()));
        }
        if sections == 0 {
            return Err(SdpError::NoMedia);
        }
        let bad = |l: &Line<'_>| SdpError::BadLine(l.text().to_string());
        let mut sess_conn = None;
        let mut sess_dir = None;
        for l in doc.session().lines() {
            match (l.kind(), l.value()) {
                (Some(b'c'), Some(v)) => sess_conn = Some(parse_conn(v).ok_or_else(|| bad(l))?),
                (Some(b'o'), Some(v)) => {
                    Origin::parse(v).map_err(|_| bad(l))?;
                }
                _ => {
                    if let Some(d) = l.attribute().and_then(|a| a.direction()) {
                        sess_dir = Some(d);
                    }
                }
            }
        }
        let mut infos = Vec::with_capacity(sections);
        for (i, sec) in doc.media_sections().enumerate() {
            let Some(m) = sec.lines().first() else {
                continue;
            };
            let ml = sec
                .media_line()
                .and_then(Result::ok)
                .ok_or_else(|| bad(m))?;
            let mut info = MediaInfo {
                kind: ml.media.to_string(),
                port: ml.port,
                proto: ml.proto.to_string(),
                conn: None,
                rtcp: None,
                rtcp_mux: false,
                direction: sess_dir.unwrap_or_default(),
                ice: false,
                dtmf_pt: None,
                clock_rate: 0,
                sec: peer_security(&sec, &doc.session()),
                codecs: None,
            };
            let mut rates: Vec<(u8, u32)> = Vec::new();
            let mut maps: Vec<Codec> = Vec::new();
            for l in sec.lines().iter().skip(1) {
                if let (Some(b'c'), Some(v)) = (l.kind(), l.value()) {
                    info.conn = Some(parse_conn(v).ok_or_else(|| bad(l))?);
                    continue;
                }
                let Some(a) = l.attribute() else {
                    continue;
                };
                match (a.name, a.value) {
                    ("rtcp", Some(v)) => info.rtcp = Some(parse_rtcp(v).ok_or_else(|| bad(l))?),
                    ("rtcp-mux", None) => info.rtcp_mux = true,
                    ("rtpmap", Some(v)) => {
                        if let Some(c) = rtpmap_codec(v) {
                            if maps.len() < 128 && !maps.iter().any(|m| m.pt == c.pt) {
                                maps.push(c);
                            }
                        }
                        let Some((pt, name, rate)) = RtpMap::parse(v)
                            .ok()
                            .and_then(|r| Some((r.pt, r.encoding, r.clock_rate?)))
                        else {
                            continue;
                        };
                        if name.eq_ignore_ascii_case("telephone-event") {
                            info.dtmf_pt = info.dtmf_pt.or(Some(pt));
                        } else if rates.len() < 128 {
                            rates.push((pt, rate));
                        }
                    }
                    _ => {
                        if let Some(d) = a.direction() {
                            info.direction = d;
                        } else if a.is_ice() {
                            info.ice = true;
                        }
                    }
                }
            }
            info.clock_rate = ml
                .formats()
                .filter_map(|p| p.parse::<u8>().ok())
                .find(|&pt| Some(pt) != info.dtmf_pt)
                .map_or(0, |pt| {
                    rates
                        .iter()
                        .find(|(p, _)| *p == pt)
                        .map_or_else(|| static_clock_rate(pt), |(_, r)| *r)
                });
            info.codecs = section_codecs(&ml, &maps);
            if info.conn.is_none() {
                info.conn = sess_conn;
            }
            if info.conn.is_none() && info.port != 0 {
                return Err(SdpError::NoConnection(i));
            }
            infos.push(info);
        }
        if doc.session().lines().iter().any(is_ice) {
            for i in &mut infos {
                i.ice = true;
            }
        }
        Ok(Sdp { doc, infos })
    }

    /// The media sections, in order.
    pub fn media(&self) -> &[MediaInfo] {
        &self.infos
    }

    /// The rewritten body (CRLF line ends). Sections past `rw.media` are
    /// left as they are.
    pub fn rewrite(&self, rw: &Rewrite) -> String {
        let doc = &self.doc;
        let mut w = doc.writer(Newline::CrLf);
        for (i, l) in doc.lines().iter().enumerate() {
            if l.is_blank() {
                w.remove(i);
            }
        }
        let relayed = |i: usize| rw.media.get(i).and_then(Option::as_ref);
        // The session c= must move when a relayed section relies on it.
        let sess_conn_used = doc
            .media_sections()
            .enumerate()
            .any(|(i, sec)| relayed(i).is_some() && !sec.lines().iter().any(|l| l.is(b'c')));
        // The relay terminates secure media: the peer's keys, fingerprint
        // and setup never travel on, and the relay's own go in their place.
        let any_relayed = rw.media.iter().any(Option::is_some);
        let is_zero = |ip: &IpAddr| ip.is_unspecified();
        let sess_zero = doc
            .session()
            .lines()
            .iter()
            .filter(|l| l.is(b'c'))
            .filter_map(|l| l.value().and_then(|v| Connection::parse(v).ok()))
            .any(|c| is_zero(&c.ip));
        for (i, l) in doc.session().indexed() {
            let replaced = l
                .attribute()
                .is_some_and(|a| is_secure_attr(a.name) || is_bundle_group(&a));
            if is_ice(l) || (any_relayed && replaced) {
                w.remove(i);
            } else if l.is(b'o') {
                w.set_origin(i, 1, rw.replace_origin.then_some(rw.media_ip));
            } else if l.is(b'c') && (sess_conn_used || rw.replace_session_conn) {
                // c=0.0.0.0 is an RFC 2543 hold: kept, as rtpengine does.
                if !sess_zero || rw.replace_session_conn {
                    w.set_connection(i, rw.media_ip);
                }
            }
        }
        if rw.media.iter().flatten().any(|m| m.ice_lite) {
            let last = doc.session().end().saturating_sub(1);
            w.insert_after(last, "a=ice-lite");
        }
        for (n, sec) in doc.media_sections().enumerate() {
            let Some(mo) = relayed(n) else {
                if self.infos.get(n).is_some_and(|m| m.port == 0) {
                    // A rejected section goes out bare, as rtpengine sends
                    // it: the m= line (and its c=), its mid if any.
                    for (i, l) in sec.indexed() {
                        let keep = l.attribute().is_some_and(|a| a.name == "mid");
                        if i != sec.start() && !l.is(b'c') && !keep {
                            w.remove(i);
                        }
                    }
                }
                let has_mid = sec
                    .lines()
                    .iter()
                    .any(|l| l.attribute().is_some_and(|a| a.name == "mid"));
                if let (Some(Some(mid)), false) = (rw.rejected_mids.get(n), has_mid) {
                    w.insert_after(sec.end().saturating_sub(1), format!("a=mid:{mid}"));
                }
                continue;
            };
            let mut has_mux = false;
            let mut has_rtcp = false;
            let mut has_dir = false;
            // An RFC 2543 hold (c=0.0.0.0) stays one, and says so in its
            // direction (rtpengine: sendrecv becomes sendonly).
            let zero_hold = self
                .infos
                .get(n)
                .and_then(|m| m.conn)
                .is_some_and(|ip| is_zero(&ip));
            let ip = mo.ip.unwrap_or(rw.media_ip);
            let full_rtcp = Some(ip);
            if ip != rw.media_ip && !sec.lines().iter().any(|l| l.is(b'c')) {
                let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
                w.insert_after(sec.start(), format!("c=IN {fam} {ip}"));
            }
            for (i, l) in sec.indexed() {
                if i == sec.start() {
                    let proto = mo.proto.as_deref().or(rw.transport.as_deref());
                    match &mo.formats {
                        Some(f) => w.replace(i, media_line(l, mo.port, proto, f)),
                        None => w.set_media(i, mo.port, proto),
                    }
                    if let Some(c) = &mo.codec_attrs {
                        for line in &c.lines {
                            w.insert_after(i, line.clone());
                        }
                    }
                    continue;
                }
                if l.is(b'c') {
                    if !zero_hold {
                        w.set_connection(i, ip);
                    }
                    continue;
                }
                let Some(a) = l.attribute() else {
                    continue;
                };
                if let Some(held) = direction_attr(a.name) {
                    has_dir = true;
                    if zero_hold && held != a.name {
                        w.replace(i, format!("a={held}"));
                    }
                    continue;
                }
                let replaced = mo.codec_attrs.as_ref().is_some_and(|c| c.replace);
                let dropped_pt = a.payload_type().is_some_and(|pt| {
                    replaced || mo.formats.as_ref().is_some_and(|f| !f.contains(&pt))
                });
                if a.is_ice() || is_secure_attr(a.name) || dropped_pt {
                    // The relay's own ICE and crypto lines replace these.
                    w.remove(i);
                } else if a.name == "rtcp" && a.value.is_some() {
                    has_rtcp = true;
                    match rw.rtcp_attr {
                        RtcpAttr::Remove => w.remove(i),
                        RtcpAttr::Rewrite => w.set_rtcp(i, mo.rtcp_port, None),
                        RtcpAttr::Full => w.set_rtcp(i, mo.rtcp_port, full_rtcp),
                    }
                } else if a.name == "rtcp-mux" && a.value.is_none() {
                    if mo.mux && !has_mux {
                        has_mux = true;
                    } else {
                        w.remove(i);
                    }
                }
            }
            let last = sec.end().saturating_sub(1);
            if !has_dir {
                // rtpengine states every relayed section's direction.
                w.insert_after(
                    last,
                    if zero_hold {
                        "a=sendonly"
                    } else {
                        "a=sendrecv"
                    },
                );
            }
            if !has_rtcp && rw.rtcp_attr != RtcpAttr::Remove {
                // As rtpengine: every relayed section names its RTCP port
                // (RFC 3605), unless `no-rtcp-attribute`.
                let addr = (rw.rtcp_attr == RtcpAttr::Full).then_some(ip);
                let line = format!("a=rtcp:{}", engine::rtcp_value(mo.rtcp_port, addr));
                w.insert_after(last, line);
            }
            if mo.mux && !has_mux {
                w.insert_after(last, "a=rtcp-mux");
            }
            for a in &mo.attrs {
                w.insert_after(last, a.clone());
            }
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 10.0.0.1\r\n\
s=-\r\n\
c=IN IP4 10.0.0.1\r\n\
t=0 0\r\n\
a=ice-ufrag:abcd\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtcp:49171\r\n\
a=candidate:1 1 UDP 2130706431 10.0.0.1 49170 typ host\r\n\
a=sendonly\r\n\
m=video 0 RTP/AVP 31\r\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reads_media() {
        let s = Sdp::parse(OFFER).unwrap();
        let m = s.media();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].kind, "audio");
        assert_eq!(m[0].port, 49170);
        assert_eq!(m[0].proto, "RTP/AVP");
        assert_eq!(m[0].conn, Some(ip("10.0.0.1")));
        assert_eq!(m[0].rtcp, Some((49171, None)));
        assert_eq!(m[0].direction, Direction::SendOnly);
        assert!(m[0].ice && !m[0].rtcp_mux);
        assert_eq!(m[1].port, 0);
        assert_eq!(m[1].direction, Direction::SendRecv);
        assert_eq!((m[0].dtmf_pt, m[0].clock_rate), (Some(101), 8000));
        assert_eq!((m[1].dtmf_pt, m[1].clock_rate), (None, 90_000));
    }

    #[test]
    fn reads_dtmf_type_and_clock_rate() {
        let opus = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 111 9 96\r\na=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:96 TELEPHONE-EVENT/48000\r\na=rtpmap:bad\r\na=rtpmap:200 x/1\r\n";
        let m = Sdp::parse(opus).unwrap().media()[0].clone();
        assert_eq!((m.dtmf_pt, m.clock_rate), (Some(96), 48_000));
        // Events listed first: the clock is the codec's; G722 is 8000.
        let g722 = opus.replace("111 9 96", "96 9");
        let m = Sdp::parse(&g722).unwrap().media()[0].clone();
        assert_eq!((m.dtmf_pt, m.clock_rate), (Some(96), 8000));
        let dyn_unknown = opus.replace("111 9 96", "98");
        let m = Sdp::parse(&dyn_unknown).unwrap().media()[0].clone();
        assert_eq!(m.clock_rate, 0);
    }

    #[test]
    fn rewrites_to_the_relay() {
        let lf = OFFER.replace("\r\n", "\n");
        let s = Sdp::parse(&lf).unwrap();
        let out = s.rewrite(&Rewrite {
            media_ip: ip("192.0.2.9"),
            media: vec![Some(MediaOut {
                port: 30002,
                rtcp_port: 30003,
                mux: false,
                attrs: Vec::new(),
                proto: None,
                ice_lite: false,
                formats: None,
                codec_attrs: None,
                ip: None,
            })],
            replace_origin: true,
            replace_session_conn: false,
            transport: Some("RTP/AVPF".into()),
            rtcp_attr: RtcpAttr::Rewrite,
            rejected_mids: Vec::new(),
        });
        assert_eq!(
            out,
            "v=0\r\n\
o=alice 2890844526 2890844527 IN IP4 192.0.2.9\r\n\
s=-\r\n\
c=IN IP4 192.0.2.9\r\n\
t=0 0\r\n\
m=audio 30002 RTP/AVPF 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtcp:30003\r\n\
a=sendonly\r\n\
m=video 0 RTP/AVP 31\r\n"
        );
        // The result parses and points at the relay.
        let back = Sdp::parse(&out).unwrap();
        assert_eq!(back.media()[0].conn, Some(ip("192.0.2.9")));
        assert!(!back.media()[0].ice);
    }

    #[test]
    fn media_level_connection_and_mux() {
        let text = "v=0\no=- 1 1 IN IP6 ::1\ns=x\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0\nc=IN IP6 2001:db8::5\na=rtcp-mux\n";
        let s = Sdp::parse(text).unwrap();
        assert_eq!(s.media()[0].conn, Some(ip("2001:db8::5")));
        assert!(s.media()[0].rtcp_mux);
        let rw = |mux, full| Rewrite {
            media_ip: ip("2001:db8::1"),
            media: vec![Some(MediaOut {
                port: 30000,
                rtcp_port: if mux { 30000 } else { 30001 },
                mux,
                attrs: Vec::new(),
                proto: None,
                ice_lite: false,
                formats: None,
                codec_attrs: None,
                ip: None,
            })],
            replace_origin: false,
            replace_session_conn: false,
            transport: None,
            rtcp_attr: if full {
                RtcpAttr::Full
            } else {
                RtcpAttr::Rewrite
            },
            rejected_mids: Vec::new(),
        };
        let out = s.rewrite(&rw(true, false));
        // Session c= untouched (the media has its own), media c= rewritten.
        assert!(out.contains("c=IN IP4 10.0.0.1\r\n"));
        assert!(out.contains("m=audio 30000 RTP/AVP 0\r\nc=IN IP6 2001:db8::1\r\na=rtcp-mux\r\n"));
        assert!(out.contains("o=- 1 2 IN IP6 ::1\r\n"));
        let out = s.rewrite(&rw(false, true));
        assert!(!out.contains("a=rtcp-mux"));
        assert!(out.contains("a=rtcp:30001 IN IP6 2001:db8::1\r\n"));
        // Mux added where the input had none.
        let s = Sdp::parse(
            "v=0\no=- 1 1 IN IP4 1.1.1.1\ns=x\nc=IN IP4 1.1.1.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
        )
        .unwrap();
        assert!(s.rewrite(&rw(true, false)).ends_with("a=rtcp-mux\r\n"));
    }

    #[test]
    fn codecs_and_format_rewrite() {
        let text = "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nc=IN IP4 1.1.1.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 8 111 101\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n\
a=rtcp-fb:111 transport-cc\r\na=rtcp-fb:* nack\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\na=ptime:20\r\nm=image 5000 udptl t38\r\n";
        let s = Sdp::parse(text).unwrap();
        let c = s.media()[0].codecs.clone().unwrap();
        assert_eq!(
            c,
            [
                Codec::new(0, "PCMU", 8000, 1),
                Codec::new(8, "PCMA", 8000, 1),
                Codec::new(111, "opus", 48000, 2),
                Codec::new(101, "telephone-event", 8000, 1),
            ]
        );
        assert_eq!(s.media()[1].codecs, None);
        let out = s.rewrite(&Rewrite {
            media_ip: ip("192.0.2.1"),
            media: vec![Some(MediaOut {
                port: 30000,
                rtcp_port: 30001,
                mux: false,
                attrs: Vec::new(),
                proto: None,
                ice_lite: false,
                formats: Some(vec![8, 0]),
                codec_attrs: None,
                ip: None,
            })],
            replace_origin: false,
            replace_session_conn: false,
            transport: None,
            rtcp_attr: RtcpAttr::Rewrite,
            rejected_mids: Vec::new(),
        });
        assert!(out.contains("m=audio 30000 RTP/AVP 8 0\r\na=rtcp-fb:* nack\r\na=ptime:20\r\n"));
        assert!(!out.contains("opus") && !out.contains("telephone-event") && !out.contains("fmtp"));
    }

    #[test]
    fn refuses_bad_sdp() {
        assert_eq!(
            Sdp::parse("v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nc=IN IP4 1.1.1.1\r\nt=0 0\r\n"),
            Err(SdpError::NoMedia)
        );
        assert!(matches!(Sdp::parse(""), Err(SdpError::Syntax(_))));
        assert!(matches!(
            Sdp::parse("hello world"),
            Err(SdpError::Syntax(_))
        ));
        assert!(matches!(Sdp::parse("o=x\nv=0\n"), Err(SdpError::Syntax(_))));
        let base = "v=0\no=- 1 1 IN IP4 1.1.1.1\ns=-\nt=0 0\n";
        assert!(matches!(
            Sdp::parse(&format!("{base}c=IN IP4 999.1.1.1\nm=audio 1 RTP/AVP 0\n")),
            Err(SdpError::BadLine(_))
        ));
        assert!(matches!(
            Sdp::parse(&format!(
                "{base}c=IN IP4 1.1.1.1\nm=audio 70000 RTP/AVP 0\n"
            )),
            Err(SdpError::BadLine(_))
        ));
        assert!(matches!(
            Sdp::parse(&format!("{base}c=IN IP4 1.1.1.1\nm=audio\n")),
            Err(SdpError::BadLine(_))
        ));
        assert!(matches!(
            Sdp::parse(&format!(
                "{base}c=IN IP4 1.1.1.1\nm=audio 4 RTP/AVP 0\na=rtcp:x\n"
            )),
            Err(SdpError::BadLine(_))
        ));
        assert_eq!(
            Sdp::parse(&format!("{base}m=audio 4 RTP/AVP 0\n")),
            Err(SdpError::NoConnection(0))
        );
        assert!(matches!(
            Sdp::parse("v=0\no=short\ns=-\nc=IN IP4 1.1.1.1\nm=audio 4 RTP/AVP 0\n"),
            Err(SdpError::BadLine(_))
        ));
        assert!(matches!(
            Sdp::parse(&format!(
                "{base}c=IN IP4 1.1.1.1\n{}",
                "m=audio 4 RTP/AVP 0\n".repeat(17)
            )),
            Err(SdpError::Syntax(_))
        ));
    }

    #[test]
    fn never_panics_on_fragments() {
        let text = OFFER;
        for cut in 0..text.len() {
            if let Ok(s) = Sdp::parse(&text[..cut]) {
                let _ = s.rewrite(&Rewrite {
                    media_ip: ip("127.0.0.1"),
                    media: vec![
                        None,
                        Some(MediaOut {
                            port: 1,
                            rtcp_port: 2,
                            mux: true,
                            attrs: Vec::new(),
                            proto: None,
                            ice_lite: false,
                            formats: None,
                            codec_attrs: None,
                            ip: None,
                        }),
                    ],
                    replace_origin: true,
                    replace_session_conn: true,
                    transport: None,
                    rtcp_attr: RtcpAttr::Full,
                    rejected_mids: vec![Some("m".into())],
                });
            }
        }
    }
}
