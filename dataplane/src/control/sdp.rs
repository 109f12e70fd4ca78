//! A small SDP reader and rewriter (RFC 4566 / 8866) for the ng commands.
//!
//! It keeps every line it does not rewrite byte for byte, so codecs, fmtp,
//! crypto and everything else pass through. What it rewrites:
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
//! - ICE attributes (`a=candidate`, `a=ice-ufrag`, …): removed, since the
//!   relay does not do ICE and candidates would route media around it.
//!
//! Lines end in CRLF on output whatever they ended in on input.

use std::fmt::Write as _;
use std::net::IpAddr;

use tern_shared::table::Direction;

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
}

/// RTP clock rate of static payload type `pt` (RFC 3551 §6, tables 4 and
/// 5); G722 (9) is 8000 by the RFC's own quirk, video types are 90000. 0
/// when not a static type with a rate a slot can store.
fn static_clock_rate(pt: u8) -> u32 {
    match pt {
        0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 => 8000,
        6 => 16_000,
        10 | 11 => 44_100,
        14 | 25 | 26 | 28 | 31..=34 => 90_000,
        _ => 0,
    }
}

/// Parses `a=rtpmap:` values (`PT NAME/RATE[/CHANNELS]`).
fn parse_rtpmap(v: &str) -> Option<(u8, &str, u32)> {
    let (pt, rest) = v.trim().split_once(' ')?;
    let pt: u8 = pt.parse().ok().filter(|p| *p < 128)?;
    let mut it = rest.trim().split('/');
    let name = it.next()?;
    let rate: u32 = it.next()?.parse().ok()?;
    Some((pt, name, rate))
}

/// A parsed SDP body: session-level lines and media sections, kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    session: Vec<String>,
    media: Vec<Vec<String>>,
    infos: Vec<MediaInfo>,
}

/// How a relayed media section is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaOut {
    /// RTP port of the slot leg facing this SDP's recipient.
    pub port: u16,
    /// The port written into `a=rtcp:` (the leg's RTCP port, or its RTP
    /// port when RTCP is multiplexed).
    pub rtcp_port: u16,
    /// Whether the section carries `a=rtcp-mux`.
    pub mux: bool,
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
}

const ICE_ATTRS: &[&str] = &[
    "candidate",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "ice-pacing",
    "remote-candidates",
    "end-of-candidates",
];

/// The attribute name of an `a=` line (`a=rtcp:5 IN …` → `rtcp`).
fn attr_name(line: &str) -> Option<&str> {
    let v = line.strip_prefix("a=")?;
    Some(v.split_once(':').map_or(v, |(n, _)| n))
}

fn is_ice(line: &str) -> bool {
    attr_name(line).is_some_and(|n| ICE_ATTRS.contains(&n))
}

fn direction_of(line: &str) -> Option<Direction> {
    match line {
        "a=sendrecv" => Some(Direction::SendRecv),
        "a=sendonly" => Some(Direction::SendOnly),
        "a=recvonly" => Some(Direction::RecvOnly),
        "a=inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

/// Parses `IN IP4 ADDR[/ttl…]`.
fn parse_conn(v: &str) -> Option<IpAddr> {
    let mut it = v.split_ascii_whitespace();
    let (nt, at, addr) = (it.next()?, it.next()?, it.next()?);
    if nt != "IN" {
        return None;
    }
    let addr = addr.split('/').next()?;
    let ip: IpAddr = addr.parse().ok()?;
    match (at, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Some(ip),
        _ => None,
    }
}

/// Parses the value of `a=rtcp:` (`PORT [IN IP4 ADDR]`).
fn parse_rtcp(v: &str) -> Option<(u16, Option<IpAddr>)> {
    let mut it = v.split_ascii_whitespace();
    let port: u16 = it.next()?.parse().ok()?;
    let rest: Vec<&str> = it.collect();
    if rest.is_empty() {
        return Some((port, None));
    }
    Some((port, Some(parse_conn(&rest.join(" "))?)))
}

fn conn_line(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("c=IN IP4 {a}"),
        IpAddr::V6(a) => format!("c=IN IP6 {a}"),
    }
}

fn addr_type(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

impl Sdp {
    /// Parses `text` (CRLF or LF line ends).
    ///
    /// Errors: [`SdpError::Syntax`] (not SDP, too long, too many media),
    /// [`SdpError::NoMedia`], [`SdpError::BadLine`] (unreadable `m=`, `c=`,
    /// `o=` or `a=rtcp:`), [`SdpError::NoConnection`].
    pub fn parse(text: &str) -> Result<Sdp, SdpError> {
        if text.len() > MAX_SDP {
            return Err(SdpError::Syntax(format!("longer than {MAX_SDP} bytes")));
        }
        let mut session = Vec::new();
        let mut media: Vec<Vec<String>> = Vec::new();
        for (n, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                continue;
            }
            let b = line.as_bytes();
            if b.len() < 2 || !b[0].is_ascii_lowercase() || b[1] != b'=' {
                return Err(SdpError::Syntax(format!(
                    "line {} is not <type>=<value>",
                    n + 1
                )));
            }
            if session.is_empty() && !line.starts_with("v=") {
                return Err(SdpError::Syntax("does not start with v=".into()));
            }
            if line.starts_with("m=") {
                if media.len() >= MAX_MEDIA {
                    return Err(SdpError::Syntax(format!(
                        "more than {MAX_MEDIA} media sections"
                    )));
                }
                media.push(vec![line.to_string()]);
            } else if let Some(m) = media.last_mut() {
                m.push(line.to_string());
            } else {
                session.push(line.to_string());
            }
        }
        if session.is_empty() {
            return Err(SdpError::Syntax("empty".into()));
        }
        if media.is_empty() {
            return Err(SdpError::NoMedia);
        }
        let mut sess_conn = None;
        let mut sess_dir = None;
        for l in &session {
            if let Some(v) = l.strip_prefix("c=") {
                sess_conn = Some(parse_conn(v).ok_or_else(|| SdpError::BadLine(l.clone()))?);
            } else if let Some(v) = l.strip_prefix("o=") {
                if v.split_ascii_whitespace().count() < 6 {
                    return Err(SdpError::BadLine(l.clone()));
                }
            } else if let Some(d) = direction_of(l) {
                sess_dir = Some(d);
            }
        }
        let mut infos = Vec::with_capacity(media.len());
        for (i, sec) in media.iter().enumerate() {
            let m = &sec[0];
            let mut f = m[2..].split_ascii_whitespace();
            let (kind, port, proto) = match (f.next(), f.next(), f.next()) {
                (Some(k), Some(p), Some(t)) => (k, p, t),
                _ => return Err(SdpError::BadLine(m.clone())),
            };
            let port: u16 = port
                .split('/')
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| SdpError::BadLine(m.clone()))?;
            let mut info = MediaInfo {
                kind: kind.to_string(),
                port,
                proto: proto.to_string(),
                conn: None,
                rtcp: None,
                rtcp_mux: false,
                direction: sess_dir.unwrap_or_default(),
                ice: false,
                dtmf_pt: None,
                clock_rate: 0,
            };
            let formats: Vec<u8> = f.filter_map(|p| p.parse().ok()).collect();
            let mut rates: Vec<(u8, u32)> = Vec::new();
            for l in &sec[1..] {
                if let Some(v) = l.strip_prefix("c=") {
                    info.conn = Some(parse_conn(v).ok_or_else(|| SdpError::BadLine(l.clone()))?);
                } else if let Some(v) = l.strip_prefix("a=rtcp:") {
                    info.rtcp = Some(parse_rtcp(v).ok_or_else(|| SdpError::BadLine(l.clone()))?);
                } else if l == "a=rtcp-mux" {
                    info.rtcp_mux = true;
                } else if let Some(d) = direction_of(l) {
                    info.direction = d;
                } else if is_ice(l) {
                    info.ice = true;
                } else if let Some((pt, name, rate)) =
                    l.strip_prefix("a=rtpmap:").and_then(parse_rtpmap)
                {
                    if name.eq_ignore_ascii_case("telephone-event") {
                        info.dtmf_pt = info.dtmf_pt.or(Some(pt));
                    } else if rates.len() < 128 {
                        rates.push((pt, rate));
                    }
                }
            }
            info.clock_rate =
                formats
                    .iter()
                    .find(|&&pt| Some(pt) != info.dtmf_pt)
                    .map_or(0, |&pt| {
                        rates
                            .iter()
                            .find(|(p, _)| *p == pt)
                            .map_or_else(|| static_clock_rate(pt), |(_, r)| *r)
                    });
            if info.conn.is_none() {
                info.conn = sess_conn;
            }
            if info.conn.is_none() && info.port != 0 {
                return Err(SdpError::NoConnection(i));
            }
            infos.push(info);
        }
        if session.iter().any(|l| is_ice(l)) {
            for i in &mut infos {
                i.ice = true;
            }
        }
        Ok(Sdp {
            session,
            media,
            infos,
        })
    }

    /// The media sections, in order.
    pub fn media(&self) -> &[MediaInfo] {
        &self.infos
    }

    /// The rewritten body (CRLF line ends). Sections past `rw.media` are
    /// left as they are.
    pub fn rewrite(&self, rw: &Rewrite) -> String {
        let mut out = String::with_capacity(self.session.len() * 40 + self.media.len() * 400);
        let relayed = |i: usize| rw.media.get(i).copied().flatten();
        // The session c= must move when a relayed section relies on it.
        let sess_conn_used = self
            .media
            .iter()
            .enumerate()
            .any(|(i, sec)| relayed(i).is_some() && !sec.iter().any(|l| l.starts_with("c=")));
        for l in &self.session {
            if is_ice(l) {
                continue;
            }
            if let Some(v) = l.strip_prefix("o=") {
                let mut f: Vec<String> = v.split_ascii_whitespace().map(String::from).collect();
                if let Some(ver) = f.get(2).and_then(|s| s.parse::<u64>().ok()) {
                    f[2] = ver.wrapping_add(1).to_string();
                }
                if rw.replace_origin && f.len() >= 6 {
                    f[4] = addr_type(rw.media_ip).to_string();
                    f[5] = rw.media_ip.to_string();
                }
                let _ = write!(out, "o={}\r\n", f.join(" "));
            } else if l.starts_with("c=") && (sess_conn_used || rw.replace_session_conn) {
                let _ = write!(out, "{}\r\n", conn_line(rw.media_ip));
            } else {
                let _ = write!(out, "{l}\r\n");
            }
        }
        for (i, sec) in self.media.iter().enumerate() {
            let Some(mo) = relayed(i) else {
                for l in sec {
                    let _ = write!(out, "{l}\r\n");
                }
                continue;
            };
            let mut has_mux = false;
            let mut has_rtcp = false;
            let rtcp_port = mo.rtcp_port;
            let full_rtcp = format!(
                "a=rtcp:{rtcp_port} IN {} {}",
                addr_type(rw.media_ip),
                rw.media_ip
            );
            for (k, l) in sec.iter().enumerate() {
                if k == 0 {
                    let f: Vec<&str> = l[2..].split_ascii_whitespace().collect();
                    let proto = rw
                        .transport
                        .as_deref()
                        .unwrap_or(f.get(2).copied().unwrap_or(""));
                    let _ = write!(
                        out,
                        "m={} {} {}",
                        f.first().copied().unwrap_or(""),
                        mo.port,
                        proto
                    );
                    for fmt in f.iter().skip(3) {
                        let _ = write!(out, " {fmt}");
                    }
                    out.push_str("\r\n");
                } else if is_ice(l) {
                    // The relay does not do ICE.
                } else if l.starts_with("c=") {
                    let _ = write!(out, "{}\r\n", conn_line(rw.media_ip));
                } else if l.starts_with("a=rtcp:") {
                    has_rtcp = true;
                    match rw.rtcp_attr {
                        RtcpAttr::Remove => {}
                        RtcpAttr::Rewrite => {
                            let _ = write!(out, "a=rtcp:{rtcp_port}\r\n");
                        }
                        RtcpAttr::Full => {
                            let _ = write!(out, "{full_rtcp}\r\n");
                        }
                    }
                } else if l == "a=rtcp-mux" {
                    if mo.mux && !has_mux {
                        has_mux = true;
                        out.push_str("a=rtcp-mux\r\n");
                    }
                } else {
                    let _ = write!(out, "{l}\r\n");
                }
            }
            if !has_rtcp && rw.rtcp_attr == RtcpAttr::Full {
                let _ = write!(out, "{full_rtcp}\r\n");
            }
            if mo.mux && !has_mux {
                out.push_str("a=rtcp-mux\r\n");
            }
        }
        out
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
        let s = Sdp::parse(&OFFER.replace("\r\n", "\n")).unwrap();
        let out = s.rewrite(&Rewrite {
            media_ip: ip("192.0.2.9"),
            media: vec![Some(MediaOut {
                port: 30002,
                rtcp_port: 30003,
                mux: false,
            })],
            replace_origin: true,
            replace_session_conn: false,
            transport: Some("RTP/AVPF".into()),
            rtcp_attr: RtcpAttr::Rewrite,
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
            })],
            replace_origin: false,
            replace_session_conn: false,
            transport: None,
            rtcp_attr: if full {
                RtcpAttr::Full
            } else {
                RtcpAttr::Rewrite
            },
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
                        }),
                    ],
                    replace_origin: true,
                    replace_session_conn: true,
                    transport: None,
                    rtcp_attr: RtcpAttr::Full,
                });
            }
        }
    }
}
