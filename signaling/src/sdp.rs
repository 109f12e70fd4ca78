//! The slice of SDP (RFC 4566) a media-anchoring B2BUA needs: read where a
//! party receives audio, and rewrite a body so that it points at a relay
//! leg (RFC 3264 offer/answer, RFC 3605 `a=rtcp`, RFC 5761 `a=rtcp-mux`).
//!
//! Only the first `m=audio` section is anchored; other media sections keep
//! their lines but get port 0 (disabled), since a slot relays one stream.
//! ICE attributes (`a=candidate`, `a=ice-*`, `a=end-of-candidates`) are
//! removed because they name the party's addresses, not the relay's.
//!
//! Offer/answer (RFC 3264): [`restrict_offer`] cuts an offer to the codecs
//! in [`SUPPORTED_CODECS`] (PCMU, PCMA, G722, opus, telephone-event) and
//! [`answer_in_offer_order`] makes an answer the intersection with its
//! offer in the offerer's order, with its direction mirrored.
//!
//! Why not a typed SDP crate (ezk's `sdp-types`, `sdp-types`): they parse
//! into a model and serialize it back, which drops or reorders what the
//! model does not know, while a B2BUA must pass every line it does not
//! own through untouched. The line-preserving reader and writer are
//! [`tern_shared::sdp`], shared with the ng control plane; this module is
//! only the B2BUA's policy (what to read, what to rewrite). Empty lines
//! are dropped and every line ends in CRLF on output.

use std::net::{IpAddr, SocketAddr};

use tern_shared::codec;
use tern_shared::sdp::{
    self as engine, addr_type, direction_name, field, is_ice_attribute, parse_direction,
    Connection, Line, MediaLine, Newline, Origin, Rtcp, RtpMap,
};
use tern_shared::table::{Direction, LegPorts};

/// What a party's SDP says about its audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInfo {
    /// Where it receives RTP: `None` when the connection address is
    /// `0.0.0.0`/`::` (RFC 2543 hold) or the port is 0.
    pub rtp: Option<SocketAddr>,
    /// Where it receives RTCP when `a=rtcp` says so (RFC 3605).
    pub rtcp: Option<SocketAddr>,
    /// `a=rtcp-mux` present.
    pub rtcp_mux: bool,
    /// Direction attribute of the media (or session) level, from the
    /// party's point of view (`sendonly`: the party only sends).
    pub direction: Direction,
    /// Payload type numbers of the m= line (0..=127).
    pub payload_types: Vec<u8>,
    /// The `telephone-event` payload type (RFC 4733), if listed.
    pub dtmf_pt: Option<u8>,
    /// RTP clock rate of the first codec of the m= line, Hz (8000 for
    /// PCMU, PCMA and G722, 48000 for opus); 0 when unknown.
    pub clock_rate: u32,
}

impl AudioInfo {
    /// The payload types as a bit set (bit n = type n), as in
    /// `LegConfig::payload_types`.
    pub fn payload_mask(&self) -> u128 {
        self.payload_types
            .iter()
            .fold(0u128, |m, pt| m | 1u128 << (pt & 127))
    }
}

/// Why a body is not usable SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpError {
    /// Not text, or no `v=` line.
    NotSdp,
    /// No `m=audio` section.
    NoAudio,
    /// No connection address for the audio stream, or a bad one.
    BadConnection(String),
    /// A malformed `m=` line.
    BadMedia(String),
    /// The audio stream lists no codec we relay (an offer), or none that the
    /// offer listed (an answer): RFC 3264 §6 → 488 Not Acceptable Here.
    NoCommonCodec,
    /// Secure (WebRTC) media that cannot be terminated: DTLS-SRTP
    /// without a usable `a=fingerprint` (RFC 5763 §5), or no DTLS
    /// certificate in the dataplane (→ 488 with a Warning).
    Secure(&'static str),
}

impl std::fmt::Display for SdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdpError::NotSdp => write!(f, "body is not SDP"),
            SdpError::NoAudio => write!(f, "SDP has no audio stream"),
            SdpError::BadConnection(s) => write!(f, "bad SDP connection line {s:?}"),
            SdpError::BadMedia(s) => write!(f, "bad SDP media line {s:?}"),
            SdpError::NoCommonCodec => write!(f, "no common audio codec"),
            SdpError::Secure(s) => f.write_str(s),
        }
    }
}

/// The body's lines, read by the shared engine, and the indices of those
/// that are not empty (an empty line is skipped on reading and dropped on
/// writing).
pub(crate) fn lines(body: &[u8]) -> Result<(engine::Sdp<'_>, Vec<usize>), SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotSdp)?;
    let doc = engine::Sdp::read(text);
    let live: Vec<usize> = (0..doc.lines().len())
        .filter(|&i| !doc.lines()[i].text().is_empty())
        .collect();
    let first = live.first().map(|&i| doc.lines()[i]);
    if !first.is_some_and(|l| l.is(b'v')) {
        return Err(SdpError::NotSdp);
    }
    Ok((doc, live))
}

/// A writer of `doc` that drops the empty lines (those not in `live`) and
/// ends every line in CRLF.
pub(crate) fn writer<'s, 'a>(doc: &'s engine::Sdp<'a>, live: &[usize]) -> engine::Writer<'s, 'a> {
    let mut w = doc.writer(Newline::CrLf);
    for i in 0..doc.lines().len() {
        if live.binary_search(&i).is_err() {
            w.remove(i);
        }
    }
    w
}

fn parse_c(value: &str) -> Result<IpAddr, SdpError> {
    // c=IN IP4 192.0.2.1[/ttl[/n]]
    Connection::parse(value)
        .map(|c| c.ip)
        .map_err(|_| SdpError::BadConnection(value.to_string()))
}

/// An attribute's name and value, white space trimmed.
fn trimmed_attr<'a>(l: &Line<'a>) -> Option<(&'a str, Option<&'a str>)> {
    l.attribute()
        .map(|a| (a.name.trim(), a.value.map(str::trim)))
}

/// Reads the first audio stream of an SDP body.
///
/// Errors: [`SdpError`] when the body is not SDP, has no audio, or the
/// audio's connection address or m= line is malformed.
pub fn parse_audio(body: &[u8]) -> Result<AudioInfo, SdpError> {
    let (doc, live) = lines(body)?;
    let mut session_c: Option<IpAddr> = None;
    let mut session_dir: Option<Direction> = None;
    let mut in_audio = false;
    let mut seen_audio = false;
    let mut port: u16 = 0;
    let mut media_c: Option<IpAddr> = None;
    let mut media_dir: Option<Direction> = None;
    let mut rtcp: Option<(u16, Option<IpAddr>)> = None;
    let mut mux = false;
    let mut pts = Vec::new();
    for l in live.iter().map(|&i| &doc.lines()[i]) {
        let (Some(k), Some(v)) = (l.kind(), l.value()) else {
            continue;
        };
        match k {
            b'm' => {
                if seen_audio {
                    // Stop at the next media section after the audio one.
                    break;
                }
                if MediaLine::media_of(v) == Some("audio") {
                    let m = MediaLine::parse(v)
                        .map_err(|_| SdpError::BadMedia(l.text().to_string()))?;
                    port = m.port;
                    pts = m.payload_types().collect();
                    in_audio = true;
                    seen_audio = true;
                } else {
                    in_audio = false;
                }
            }
            b'c' if seen_audio && in_audio => media_c = Some(parse_c(v)?),
            b'c' if !seen_audio => session_c = Some(parse_c(v)?),
            b'a' => {
                let Some((name, val)) = trimmed_attr(l) else {
                    continue;
                };
                if let Some(d) = parse_direction(name) {
                    if in_audio {
                        media_dir = Some(d);
                    } else if !seen_audio {
                        session_dir = Some(d);
                    }
                } else if in_audio && name == "rtcp-mux" {
                    mux = true;
                } else if in_audio && name == "rtcp" {
                    // a=rtcp:port [IN IP4 addr] (RFC 3605)
                    if let Some(r) = val.and_then(|v| Rtcp::parse(v).ok()) {
                        // The address is unicast: one with a `/ttl` is not
                        // read (RFC 3605 §2.1).
                        let plain = r
                            .address
                            .and_then(|a| field(a, 2))
                            .is_some_and(|a| !a.contains('/'));
                        let addr = r
                            .connection()
                            .and_then(Result::ok)
                            .filter(|_| plain)
                            .map(|c| c.ip);
                        rtcp = Some((r.port, addr));
                    }
                }
            }
            _ => {}
        }
    }
    if !seen_audio {
        return Err(SdpError::NoAudio);
    }
    let ip = media_c
        .or(session_c)
        .ok_or_else(|| SdpError::BadConnection("none".into()))?;
    let rtp = (port != 0 && !ip.is_unspecified()).then(|| SocketAddr::new(ip, port));
    let rtcp = rtcp.and_then(|(p, a)| {
        let a = a.unwrap_or(ip);
        (p != 0 && !a.is_unspecified()).then(|| SocketAddr::new(a, p))
    });
    let fmts = audio_formats(body).unwrap_or_default();
    Ok(AudioInfo {
        rtp,
        rtcp,
        rtcp_mux: mux,
        direction: media_dir.or(session_dir).unwrap_or_default(),
        payload_types: pts,
        dtmf_pt: fmts.iter().find(|f| f.is_event()).map(|f| f.pt),
        clock_rate: fmts.iter().find(|f| !f.is_event()).map_or(0, |f| f.rate),
    })
}

/// The ICE attributes the B2BUA removes: RFC 8839's and any other
/// `ice-*` one, since they name the party's addresses, not the relay's.
pub(crate) fn is_ice(name: &str) -> bool {
    is_ice_attribute(name) || name.starts_with("ice-")
}

/// Rewrites an SDP body to point at a relay leg: every `c=` gets
/// `relay_ip`, the `o=` line gets `relay_ip` and its version plus
/// `version_bump`, the first audio `m=` line gets `ports.rtp`, its `a=rtcp`
/// gets `ports.rtcp` (and `relay_ip` if it named an address), other `m=`
/// lines get port 0, ICE attributes are dropped. Line ends become CRLF.
///
/// Errors: [`SdpError::NotSdp`] when the body is not SDP text.
pub fn rewrite(
    body: &[u8],
    relay_ip: IpAddr,
    ports: LegPorts,
    version_bump: u64,
) -> Result<Vec<u8>, SdpError> {
    let (doc, live) = lines(body)?;
    let mut w = writer(&doc, &live);
    let mut seen_audio = false;
    let mut in_audio = false;
    for &i in &live {
        let l = &doc.lines()[i];
        let (Some(k), Some(v)) = (l.kind(), l.value()) else {
            continue;
        };
        match k {
            b'o' => {
                // o=<username> <sess-id> <sess-version> <nettype> <addrtype> <addr>
                let Some(o) = Origin::parse(v).ok().filter(|o| o.rest.is_empty()) else {
                    continue;
                };
                let version = o.bumped_version(version_bump);
                let address = relay_ip.to_string();
                let new = Origin {
                    username: o.username,
                    session_id: o.session_id,
                    version: &version,
                    net_type: "IN",
                    addr_type: addr_type(relay_ip),
                    address: &address,
                    rest: "",
                };
                w.replace(i, format!("o={new}"));
            }
            b'c' => w.set_connection(i, relay_ip),
            b'm' => {
                if MediaLine::media_of(v) == Some("audio") && !seen_audio {
                    seen_audio = true;
                    in_audio = true;
                    w.set_media(i, ports.rtp, None);
                } else {
                    in_audio = false;
                    w.set_media(i, 0, None);
                }
            }
            b'a' => {
                let Some((name, _)) = l.attribute().map(|a| (a.name.trim(), a.value)) else {
                    continue;
                };
                if is_ice(name) {
                    w.remove(i);
                } else if in_audio && name == "rtcp" {
                    let has_addr = field(v, 3).is_some();
                    w.set_rtcp(i, ports.rtcp, has_addr.then_some(relay_ip));
                }
            }
            _ => {}
        }
    }
    Ok(w.finish().into_bytes())
}

/// Audio codecs tern anchors: encoding name (compared case-insensitively,
/// RFC 4566 §6) and RTP clock rate in Hz. `telephone-event` (RFC 4733) is
/// carried beside a codec but is not one: an offer with only DTMF events
/// has no common codec.
pub const SUPPORTED_CODECS: &[(&str, u32)] = &[
    ("PCMU", 8000),
    ("PCMA", 8000),
    ("G722", 8000),
    ("opus", 48000),
    ("telephone-event", 8000),
    ("telephone-event", 16000),
    ("telephone-event", 48000),
];

/// One format of an audio `m=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// RTP payload type, 0..=127.
    pub pt: u8,
    /// Encoding name from `a=rtpmap`, or from the RFC 3551 §6 static table
    /// (empty when neither names it).
    pub name: String,
    /// RTP clock rate in Hz (0 when unknown). G722 says 8000 although it
    /// samples at 16 kHz (RFC 3551 §4.5.2).
    pub rate: u32,
}

impl Format {
    fn same_codec(&self, other: &Format) -> bool {
        if self.pt < 96 && other.pt < 96 {
            return self.pt == other.pt;
        }
        !self.name.is_empty()
            && self.name.eq_ignore_ascii_case(&other.name)
            && self.rate == other.rate
    }

    fn supported(&self) -> bool {
        SUPPORTED_CODECS
            .iter()
            .any(|(n, r)| self.name.eq_ignore_ascii_case(n) && self.rate == *r)
    }

    fn is_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event")
    }
}

/// Static payload types the B2BUA names without an `a=rtpmap`: PCMU,
/// GSM, PCMA, G722 and G729. Names and rates come from the RFC 3551 table
/// ([`codec::STATIC_PAYLOADS`]); other static types stay unnamed (rate 0),
/// as the slot's clock rate would otherwise change for them.
const NAMED_STATIC: [u8; 5] = [0, 3, 8, 9, 18];

/// RFC 3551 §6 static audio payload types tern knows by number.
fn static_format(pt: u8) -> Option<(&'static str, u32)> {
    if !NAMED_STATIC.contains(&pt) {
        return None;
    }
    codec::static_payload(pt).map(|p| (p.name, p.clock_rate))
}

/// The formats of the first audio `m=` line, in its order, named by
/// `a=rtpmap` or the static table.
///
/// Errors: [`SdpError::NotSdp`], [`SdpError::NoAudio`].
pub fn audio_formats(body: &[u8]) -> Result<Vec<Format>, SdpError> {
    let (doc, live) = lines(body)?;
    let mut in_audio = false;
    let mut seen = false;
    let mut fmts: Vec<Format> = Vec::new();
    for l in live.iter().map(|&i| &doc.lines()[i]) {
        let (Some(k), Some(v)) = (l.kind(), l.value()) else {
            continue;
        };
        match k {
            b'm' => {
                if seen {
                    break;
                }
                in_audio = MediaLine::media_of(v) == Some("audio");
                if in_audio {
                    seen = true;
                    fmts = MediaLine::formats_of(v)
                        .filter_map(|f| f.parse::<u8>().ok())
                        .filter(|p| *p < 128)
                        .map(|pt| {
                            let (name, rate) = static_format(pt).unwrap_or(("", 0));
                            Format {
                                pt,
                                name: name.to_string(),
                                rate,
                            }
                        })
                        .collect();
                }
            }
            b'a' if in_audio => {
                // a=rtpmap:<pt> <name>/<rate>[/<channels>]
                let Some(map) = l
                    .attribute()
                    .filter(|a| a.name == "rtpmap")
                    .and_then(|a| RtpMap::parse(a.value?).ok())
                else {
                    continue;
                };
                if let Some(f) = fmts.iter_mut().find(|f| f.pt == map.pt) {
                    f.name = map.encoding.to_string();
                    f.rate = map.clock_rate.unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    if !seen {
        return Err(SdpError::NoAudio);
    }
    Ok(fmts)
}

/// Rewrites the first audio `m=` line to list `keep` (in that order) and
/// drops the `a=rtpmap`/`a=fmtp`/`a=rtcp-fb` lines of the payload types
/// left out. With `direction`, every session-level and audio-level
/// direction attribute is replaced by one at the end of the audio section.
/// Everything else (`a=ptime`, `a=rtcp-mux`, other sections) is carried
/// unchanged.
fn set_audio_formats(
    body: &[u8],
    keep: &[u8],
    direction: Option<Direction>,
) -> Result<Vec<u8>, SdpError> {
    let (doc, live) = lines(body)?;
    let mut w = writer(&doc, &live);
    let dir_line = direction.map(|d| format!("a={}", direction_name(d)));
    let pts: Vec<String> = keep.iter().map(u8::to_string).collect();
    let mut in_audio = false;
    let mut seen = false;
    let mut prev: Option<usize> = None;
    for &i in &live {
        let l = &doc.lines()[i];
        let attr = l.attribute();
        if (in_audio || !seen) && dir_line.is_some() && attr.and_then(|a| a.direction()).is_some() {
            w.remove(i);
        } else if let (Some(b'm'), Some(v)) = (l.kind(), l.value()) {
            if let (true, Some(d), Some(p)) = (in_audio, &dir_line, prev) {
                w.insert_after(p, d.clone());
            }
            in_audio = false;
            if !seen && MediaLine::media_of(v) == Some("audio") && w.set_media_formats(i, &pts) {
                seen = true;
                in_audio = true;
            }
        } else if in_audio
            && attr
                .and_then(|a| a.payload_type())
                .is_some_and(|pt| !keep.contains(&pt))
        {
            w.remove(i);
        }
        prev = Some(i);
    }
    if let (true, Some(d)) = (in_audio, dir_line) {
        w.insert_after(usize::MAX, d);
    }
    Ok(w.finish().into_bytes())
}

/// (sends, receives) of a direction, from its party's point of view.
fn dir_bits(d: Direction) -> (bool, bool) {
    match d {
        Direction::SendRecv => (true, true),
        Direction::SendOnly => (true, false),
        Direction::RecvOnly => (false, true),
        Direction::Inactive => (false, false),
    }
}

fn dir_from_bits(send: bool, recv: bool) -> Direction {
    match (send, recv) {
        (true, true) => Direction::SendRecv,
        (true, false) => Direction::SendOnly,
        (false, true) => Direction::RecvOnly,
        (false, false) => Direction::Inactive,
    }
}

/// The direction an answer may take for an offer's (RFC 3264 §6.1): the
/// answerer sends only if the offerer receives and receives only if the
/// offerer sends, so a `sendonly` offer is answered `recvonly` (or
/// `inactive`), `inactive` with `inactive`.
pub fn mirrored(offer: Direction, answer: Direction) -> Direction {
    let (os, or) = dir_bits(offer);
    let (a_s, a_r) = dir_bits(answer);
    dir_from_bits(a_s && or, a_r && os)
}

/// An offer cut down to the codecs tern anchors ([`SUPPORTED_CODECS`]),
/// in the offerer's order (RFC 3264 §5.1).
///
/// Errors: [`SdpError::NoCommonCodec`] when no audio codec other than
/// `telephone-event` is left (→ 488); those of [`audio_formats`].
pub fn restrict_offer(offer: &[u8]) -> Result<Vec<u8>, SdpError> {
    let fmts = audio_formats(offer)?;
    let keep: Vec<u8> = fmts
        .iter()
        .filter(|f| f.supported())
        .map(|f| f.pt)
        .collect();
    if !fmts.iter().any(|f| f.supported() && !f.is_event()) {
        return Err(SdpError::NoCommonCodec);
    }
    set_audio_formats(offer, &keep, None)
}

/// The answer restricted to the formats the offer listed, in the
/// offerer's order (RFC 3264 §6.1: the answer lists a subset of the
/// offer). Static types match by number, dynamic ones by encoding name and
/// clock rate; the answer's payload type numbers are kept. The answer's
/// direction is made the mirror of the offer's ([`mirrored`]) when it says
/// more than the offer allows (a `sendrecv` answer to a hold). A rejected
/// stream (port 0) is returned unchanged.
///
/// Errors: [`SdpError::NoCommonCodec`] when no audio codec other than
/// `telephone-event` is left; those of [`audio_formats`].
pub fn answer_in_offer_order(offer: &[u8], answer: &[u8]) -> Result<Vec<u8>, SdpError> {
    let offered = audio_formats(offer)?;
    let answered = audio_formats(answer)?;
    if answer_port_zero(answer) {
        return Ok(answer.to_vec());
    }
    let mut keep: Vec<&Format> = Vec::new();
    for o in &offered {
        if let Some(a) = answered.iter().find(|a| a.same_codec(o)) {
            if !keep.iter().any(|k| k.pt == a.pt) {
                keep.push(a);
            }
        }
    }
    if !keep.iter().any(|f| !f.is_event()) {
        return Err(SdpError::NoCommonCodec);
    }
    let pts: Vec<u8> = keep.iter().map(|f| f.pt).collect();
    let fix = match (parse_audio(offer), parse_audio(answer)) {
        (Ok(o), Ok(a)) => {
            let m = mirrored(o.direction, a.direction);
            (m != a.direction).then_some(m)
        }
        _ => None,
    };
    set_audio_formats(answer, &pts, fix)
}

fn answer_port_zero(body: &[u8]) -> bool {
    lines(body).is_ok_and(|(doc, live)| {
        live.iter()
            .filter_map(|&i| doc.lines()[i].value().filter(|_| doc.lines()[i].is(b'm')))
            .find(|v| MediaLine::media_of(v) == Some("audio") && field(v, 1).is_some())
            .and_then(|v| field(v, 1))
            .is_some_and(|p| p == "0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 host.example.com\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtcp:49175\r\na=sendonly\r\na=candidate:1 1 UDP 1 192.0.2.10 49170 typ host\r\nm=video 51372 RTP/AVP 31\r\nc=IN IP4 192.0.2.11\r\n";

    #[test]
    fn parse_offer() {
        let a = parse_audio(OFFER.as_bytes()).unwrap();
        assert_eq!(a.rtp, Some("192.0.2.10:49170".parse().unwrap()));
        assert_eq!(a.rtcp, Some("192.0.2.10:49175".parse().unwrap()));
        assert_eq!(a.direction, Direction::SendOnly);
        assert_eq!(a.payload_types, [0, 8, 101]);
        assert_eq!(a.payload_mask(), 1 | 1 << 8 | 1 << 101);
        assert_eq!((a.clock_rate, a.dtmf_pt), (8000, None));
        assert!(!a.rtcp_mux);
    }

    #[test]
    fn media_level_connection_and_session_direction() {
        let s = "v=0\no=- 1 1 IN IP6 ::1\ns=-\nt=0 0\na=inactive\nm=audio 4000 RTP/AVP 0\nc=IN IP6 2001:db8::1\na=rtcp-mux\n";
        let a = parse_audio(s.as_bytes()).unwrap();
        assert_eq!(a.rtp, Some("[2001:db8::1]:4000".parse().unwrap()));
        assert_eq!(a.direction, Direction::Inactive);
        assert!(a.rtcp_mux);
        let hold = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(parse_audio(hold.as_bytes()).unwrap().rtp, None);
    }

    #[test]
    fn parse_errors() {
        assert_eq!(parse_audio(b"hello"), Err(SdpError::NotSdp));
        assert_eq!(parse_audio(&[0xff, 0xfe]), Err(SdpError::NotSdp));
        assert_eq!(
            parse_audio(b"v=0\r\nm=video 1 RTP/AVP 31\r\n"),
            Err(SdpError::NoAudio)
        );
        assert!(parse_audio(b"v=0\r\nm=audio 1 RTP/AVP 0\r\n").is_err());
        assert!(parse_audio(b"v=0\r\nc=IN IP4 x\r\nm=audio 1 RTP/AVP 0\r\n").is_err());
        assert!(parse_audio(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio\r\n").is_err());
        assert!(parse_audio(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 99999 RTP/AVP 0\r\n").is_err());
    }

    #[test]
    fn rewrite_points_at_relay() {
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let out = rewrite(
            OFFER.as_bytes(),
            ip,
            LegPorts {
                rtp: 30002,
                rtcp: 30003,
            },
            1,
        )
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("o=alice 2890844526 2890844527 IN IP4 203.0.113.5\r\n"),
            "{out}"
        );
        assert!(out.contains("c=IN IP4 203.0.113.5\r\n"));
        assert!(!out.contains("192.0.2"), "{out}");
        assert!(out.contains("m=audio 30002 RTP/AVP 0 8 101\r\n"));
        assert!(out.contains("a=rtcp:30003\r\n"));
        assert!(out.contains("m=video 0 RTP/AVP 31\r\n"));
        assert!(out.contains("a=sendonly\r\n"));
        assert!(!out.contains("candidate"));
        let a = parse_audio(out.as_bytes()).unwrap();
        assert_eq!(a.rtp, Some(SocketAddr::new(ip, 30002)));
        assert_eq!(a.rtcp, Some(SocketAddr::new(ip, 30003)));
    }

    const OFFER5: &str = "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 96 9 18 0 8 101\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtpmap:9 G722/8000\r\na=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=rtcp-mux\r\n";

    fn pts(body: &[u8]) -> Vec<u8> {
        audio_formats(body).unwrap().iter().map(|f| f.pt).collect()
    }

    #[test]
    fn formats_named_by_rtpmap_and_static_table() {
        let f = audio_formats(OFFER5.as_bytes()).unwrap();
        assert_eq!(f.len(), 6);
        assert_eq!((f[0].name.as_str(), f[0].rate), ("opus", 48000));
        let a = parse_audio(OFFER5.as_bytes()).unwrap();
        assert_eq!((a.clock_rate, a.dtmf_pt), (48000, Some(101)));
        let s = audio_formats(b"v=0\r\nm=audio 1 RTP/AVP 0 8 9\r\n").unwrap();
        let names: Vec<&str> = s.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["PCMU", "PCMA", "G722"]);
    }

    #[test]
    fn offer_keeps_supported_codecs_in_offerer_order() {
        let out = restrict_offer(OFFER5.as_bytes()).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(pts(&out), [96, 9, 0, 8, 101]);
        assert!(!text.contains("G729") && !text.contains("annexb"), "{text}");
        assert!(text.contains("a=fmtp:96 useinbandfec=1\r\n"));
        assert!(text.contains("a=fmtp:101 0-16\r\n"));
        assert!(text.contains("a=ptime:20\r\n") && text.contains("a=rtcp-mux\r\n"));
        let g729 = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(
            restrict_offer(g729.as_bytes()),
            Err(SdpError::NoCommonCodec)
        );
        // A dynamic type named like a supported codec at another rate is not it.
        let odd = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 97\r\na=rtpmap:97 opus/8000\r\n";
        assert_eq!(restrict_offer(odd.as_bytes()), Err(SdpError::NoCommonCodec));
    }

    #[test]
    fn answer_is_intersection_in_offerer_order() {
        let offer = restrict_offer(OFFER5.as_bytes()).unwrap();
        // The answerer prefers PCMA, adds a codec never offered, names opus
        // with another dynamic number.
        let ans = "v=0\r\no=b 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 8 3 0 111 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:3 GSM/8000\r\na=rtpmap:111 OPUS/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\n";
        let out = answer_in_offer_order(&offer, ans.as_bytes()).unwrap();
        assert_eq!(pts(&out), [111, 0, 8, 101]);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("GSM"));
        assert!(text.contains("a=ptime:30\r\n"));
        let none = "v=0\r\nc=IN IP4 10.0.0.2\r\nm=audio 5000 RTP/AVP 3 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(
            answer_in_offer_order(&offer, none.as_bytes()),
            Err(SdpError::NoCommonCodec)
        );
        // A sendrecv answer to a hold offer is cut down to recvonly.
        let hold = String::from_utf8(offer.clone()).unwrap() + "a=sendonly\r\n";
        let ans = "v=0\r\nc=IN IP4 10.0.0.2\r\na=sendrecv\r\nm=audio 5000 RTP/AVP 0\r\na=sendrecv\r\na=ptime:20\r\nm=video 0 RTP/AVP 31\r\n";
        let out = answer_in_offer_order(hold.as_bytes(), ans.as_bytes()).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            parse_audio(&out).unwrap().direction,
            Direction::RecvOnly,
            "{text}"
        );
        assert!(!text.contains("sendrecv"), "{text}");
        assert!(
            text.contains("a=ptime:20\r\na=recvonly\r\nm=video"),
            "{text}"
        );
        assert_eq!(
            mirrored(Direction::Inactive, Direction::SendRecv),
            Direction::Inactive
        );
        assert_eq!(
            mirrored(Direction::RecvOnly, Direction::SendRecv),
            Direction::SendOnly
        );
        assert_eq!(
            mirrored(Direction::SendRecv, Direction::SendOnly),
            Direction::SendOnly
        );
        let rejected = "v=0\r\nc=IN IP4 10.0.0.2\r\nm=audio 0 RTP/AVP 3\r\n";
        assert_eq!(
            answer_in_offer_order(&offer, rejected.as_bytes()).unwrap(),
            rejected.as_bytes()
        );
    }
}
