//! The slice of SDP (RFC 4566) a media-anchoring B2BUA needs: read where a
//! party receives audio, and rewrite a body so that it points at a relay
//! leg (RFC 3264 offer/answer, RFC 3605 `a=rtcp`, RFC 5761 `a=rtcp-mux`).
//!
//! Only the first `m=audio` section is anchored; other media sections keep
//! their lines but get port 0 (disabled), since a slot relays one stream.
//! ICE attributes (`a=candidate`, `a=ice-*`, `a=end-of-candidates`) are
//! removed because they name the party's addresses, not the relay's.

use std::net::{IpAddr, SocketAddr};

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
}

impl std::fmt::Display for SdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdpError::NotSdp => write!(f, "body is not SDP"),
            SdpError::NoAudio => write!(f, "SDP has no audio stream"),
            SdpError::BadConnection(s) => write!(f, "bad SDP connection line {s:?}"),
            SdpError::BadMedia(s) => write!(f, "bad SDP media line {s:?}"),
        }
    }
}

fn lines(body: &[u8]) -> Result<Vec<&str>, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotSdp)?;
    let ls: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect();
    if !ls.first().is_some_and(|l| l.starts_with("v=")) {
        return Err(SdpError::NotSdp);
    }
    Ok(ls)
}

fn parse_c(value: &str) -> Result<IpAddr, SdpError> {
    // c=IN IP4 192.0.2.1[/ttl[/n]]
    let mut w = value.split_whitespace();
    let (net, _ty, addr) = (w.next(), w.next(), w.next());
    if net != Some("IN") {
        return Err(SdpError::BadConnection(value.to_string()));
    }
    let addr = addr.ok_or_else(|| SdpError::BadConnection(value.to_string()))?;
    let addr = addr.split('/').next().unwrap_or(addr);
    addr.parse()
        .map_err(|_| SdpError::BadConnection(value.to_string()))
}

fn parse_direction(attr: &str) -> Option<Direction> {
    match attr {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

/// Reads the first audio stream of an SDP body.
///
/// Errors: [`SdpError`] when the body is not SDP, has no audio, or the
/// audio's connection address or m= line is malformed.
pub fn parse_audio(body: &[u8]) -> Result<AudioInfo, SdpError> {
    let ls = lines(body)?;
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
    for l in ls {
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        match k.trim() {
            "m" => {
                if seen_audio {
                    // Stop at the next media section after the audio one.
                    break;
                }
                let mut w = v.split_whitespace();
                if w.next() == Some("audio") {
                    let p = w.next().ok_or_else(|| SdpError::BadMedia(l.to_string()))?;
                    let p = p.split('/').next().unwrap_or(p);
                    port = p.parse().map_err(|_| SdpError::BadMedia(l.to_string()))?;
                    let _proto = w.next().ok_or_else(|| SdpError::BadMedia(l.to_string()))?;
                    pts = w
                        .filter_map(|f| f.parse::<u8>().ok())
                        .filter(|p| *p < 128)
                        .collect();
                    in_audio = true;
                    seen_audio = true;
                } else {
                    in_audio = false;
                }
            }
            "c" if seen_audio && in_audio => media_c = Some(parse_c(v)?),
            "c" if !seen_audio => session_c = Some(parse_c(v)?),
            "a" => {
                let (name, val) = match v.split_once(':') {
                    Some((n, val)) => (n.trim(), Some(val.trim())),
                    None => (v.trim(), None),
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
                    // a=rtcp:port [IN IP4 addr]
                    if let Some(val) = val {
                        let mut w = val.split_whitespace();
                        if let Some(Ok(p)) = w.next().map(str::parse::<u16>) {
                            let addr = match (w.next(), w.next(), w.next()) {
                                (Some("IN"), Some(_), Some(a)) => a.parse().ok(),
                                _ => None,
                            };
                            rtcp = Some((p, addr));
                        }
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
    Ok(AudioInfo {
        rtp,
        rtcp,
        rtcp_mux: mux,
        direction: media_dir.or(session_dir).unwrap_or_default(),
        payload_types: pts,
    })
}

fn ip_kind(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
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
    let ls = lines(body)?;
    let kind = ip_kind(relay_ip);
    let mut out = String::with_capacity(body.len() + 64);
    let mut seen_audio = false;
    let mut in_audio = false;
    for l in ls {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        let line = match k {
            "o" => {
                // o=<username> <sess-id> <sess-version> <nettype> <addrtype> <addr>
                let w: Vec<&str> = v.split_whitespace().collect();
                if w.len() == 6 {
                    let ver = w[2]
                        .parse::<u64>()
                        .map(|n| n.wrapping_add(version_bump).to_string())
                        .unwrap_or_else(|_| w[2].to_string());
                    format!("o={} {} {ver} IN {kind} {relay_ip}", w[0], w[1])
                } else {
                    l.to_string()
                }
            }
            "c" => format!("c=IN {kind} {relay_ip}"),
            "m" => {
                let mut w: Vec<String> = v.split_whitespace().map(str::to_string).collect();
                if w.first().map(String::as_str) == Some("audio") && !seen_audio {
                    seen_audio = true;
                    in_audio = true;
                    if w.len() > 1 {
                        w[1] = ports.rtp.to_string();
                    }
                } else {
                    in_audio = false;
                    if w.len() > 1 {
                        w[1] = "0".into();
                    }
                }
                format!("m={}", w.join(" "))
            }
            "a" => {
                let name = v.split(':').next().unwrap_or(v).trim();
                if name == "candidate"
                    || name.starts_with("ice-")
                    || name == "end-of-candidates"
                    || name == "remote-candidates"
                {
                    continue;
                }
                if in_audio && name == "rtcp" {
                    let has_addr = v.split_whitespace().count() >= 4;
                    if has_addr {
                        format!("a=rtcp:{} IN {kind} {relay_ip}", ports.rtcp)
                    } else {
                        format!("a=rtcp:{}", ports.rtcp)
                    }
                } else {
                    l.to_string()
                }
            }
            _ => l.to_string(),
        };
        out.push_str(&line);
        out.push_str("\r\n");
    }
    Ok(out.into_bytes())
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
}
