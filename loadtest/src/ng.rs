//! A minimal rtpengine ng client over UDP: `<cookie> <bencode dict>`,
//! retransmitted with the same cookie on timeout.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use bt_bencode::Value;

/// One bencode value to send (encoding is small enough to do here; replies
/// are decoded with `bt_bencode`).
#[derive(Debug, Clone)]
pub enum Ben {
    Str(String),
    Int(i64),
    List(Vec<Ben>),
    /// Keys are sorted on encoding, as bencode requires.
    Dict(Vec<(&'static str, Ben)>),
}

impl Ben {
    pub fn s(v: impl Into<String>) -> Ben {
        Ben::Str(v.into())
    }

    pub fn list<'a>(v: impl IntoIterator<Item = &'a str>) -> Ben {
        Ben::List(v.into_iter().map(Ben::s).collect())
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Ben::Str(s) => {
                out.extend(s.len().to_string().as_bytes());
                out.push(b':');
                out.extend(s.as_bytes());
            }
            Ben::Int(n) => {
                out.push(b'i');
                out.extend(n.to_string().as_bytes());
                out.push(b'e');
            }
            Ben::List(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.encode(out));
                out.push(b'e');
            }
            Ben::Dict(d) => {
                let mut d: Vec<_> = d.iter().collect();
                d.sort_by_key(|(k, _)| *k);
                out.push(b'd');
                for (k, v) in d {
                    Ben::s(*k).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// An ng control connection (UDP).
pub struct NgClient {
    sock: UdpSocket,
    to: SocketAddr,
    n: u64,
    retransmits: u64,
    buf: Vec<u8>,
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

impl NgClient {
    pub fn new(to: SocketAddr) -> io::Result<NgClient> {
        NgClient::with_local(to, None)
    }

    /// A client whose socket binds to `local` (an ephemeral port) when
    /// both `local` and the relay are loopback addresses, else to the
    /// wildcard address. A relay whose port range lies inside the
    /// ephemeral range cannot bind its `127.0.0.1` ports while this
    /// client holds the same port on the wildcard address; with
    /// `local = 127.0.0.2` they never collide.
    pub fn with_local(to: SocketAddr, local: Option<IpAddr>) -> io::Result<NgClient> {
        let bind: SocketAddr = match local {
            Some(ip) if ip.is_loopback() && to.ip().is_loopback() => SocketAddr::new(ip, 0),
            _ if to.is_ipv4() => "0.0.0.0:0".parse().unwrap(),
            _ => "[::]:0".parse().unwrap(),
        };
        let sock = UdpSocket::bind(bind)?;
        sock.set_read_timeout(Some(Duration::from_millis(500)))?;
        Ok(NgClient {
            sock,
            to,
            n: 0,
            retransmits: 0,
            buf: vec![0; 65536],
        })
    }

    /// Sends `msg` and returns the reply dictionary; `result` must be `ok`.
    pub fn cmd(&mut self, msg: &Ben) -> Result<Value, Error> {
        self.n += 1;
        let cookie = format!("tl{}_{} ", std::process::id(), self.n);
        let mut out = cookie.as_bytes().to_vec();
        msg.encode(&mut out);
        for try_ in 0..6 {
            if try_ > 0 {
                self.retransmits += 1;
            }
            self.sock.send_to(&out, self.to)?;
            loop {
                match self.sock.recv_from(&mut self.buf) {
                    Ok((n, _)) => {
                        let Some(body) = self.buf[..n].strip_prefix(cookie.as_bytes()) else {
                            continue; // a late reply to an earlier retransmission
                        };
                        let v: Value = bt_bencode::from_slice(body)
                            .map_err(|e| format!("ng reply: bad bencode: {e}"))?;
                        let result = v.get("result").and_then(|r| r.as_str()).unwrap_or("");
                        if result != "ok" && result != "pong" {
                            let why = v
                                .get("error-reason")
                                .and_then(|r| r.as_str())
                                .unwrap_or("(no error-reason)");
                            return Err(format!("ng {}: {result}: {why}", self.to).into());
                        }
                        return Ok(v);
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::TimedOut =>
                    {
                        break
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(format!("ng {}: no reply", self.to).into())
    }

    /// Requests sent again (same cookie) because no reply came in 500 ms.
    pub fn retransmits(&self) -> u64 {
        self.retransmits
    }

    pub fn ping(&mut self) -> Result<(), Error> {
        self.cmd(&Ben::Dict(vec![("command", Ben::s("ping"))]))?;
        Ok(())
    }
}

/// An SDP offer/answer body for one audio stream on `addr`.
pub fn sdp(addr: SocketAddr, session: u64) -> String {
    sdp_with(addr, session, "RTP/AVP", &[])
}

/// [`sdp`] with media protocol `proto` (e.g. `RTP/SAVP`) and an
/// `a=crypto:` line for each value of `crypto`.
pub fn sdp_with(addr: SocketAddr, session: u64, proto: &str, crypto: &[&str]) -> String {
    sdp_codec(addr, session, proto, crypto, 0, "PCMU/8000")
}

/// [`sdp_with`] offering payload type `pt` with `a=rtpmap` value `map`
/// (e.g. 8, `PCMA/8000`; 111, `opus/48000/2`) in place of PCMU.
pub fn sdp_codec(
    addr: SocketAddr,
    session: u64,
    proto: &str,
    crypto: &[&str],
    pt: u8,
    map: &str,
) -> String {
    let (fam, ip) = match addr.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    let mut s = format!(
        "v=0\r\no=- {session} 1 IN {fam} {ip}\r\ns=tern-load\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {} {proto} {pt}\r\na=rtpmap:{pt} {map}\r\na=ptime:20\r\na=sendrecv\r\n",
        addr.port()
    );
    for c in crypto {
        s.push_str("a=crypto:");
        s.push_str(c);
        s.push_str("\r\n");
    }
    s
}

/// The transport protocol of the first `m=` line of `sdp` (`RTP/AVP`,
/// `RTP/SAVP`, ...).
pub fn media_proto(sdp: &str) -> Option<&str> {
    sdp.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("m="))
        .and_then(|m| m.split_whitespace().nth(2))
}

/// The values of the `a=crypto:` lines of `sdp`, in order.
pub fn crypto_values(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=crypto:"))
}

/// The media address of the first `m=audio` line of `sdp` (its `c=` line,
/// media-level first, else session-level).
pub fn media_addr(sdp: &str) -> Option<SocketAddr> {
    let mut session_c = None;
    let mut media_c = None;
    let mut port = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if port.is_some() {
                break;
            }
            port = m.split_whitespace().nth(1)?.parse::<u16>().ok();
        } else if let Some(c) = line.strip_prefix("c=") {
            let ip: IpAddr = c.split_whitespace().nth(2)?.parse().ok()?;
            if port.is_some() {
                media_c = Some(ip);
            } else {
                session_c = Some(ip);
            }
        }
    }
    Some(SocketAddr::new(media_c.or(session_c)?, port?))
}

/// The `sdp` string of a reply.
pub fn reply_sdp(v: &Value) -> Result<String, Error> {
    v.get("sdp")
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .ok_or_else(|| "ng reply without sdp".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_sorted() {
        let mut out = Vec::new();
        Ben::Dict(vec![
            ("sdp", Ben::s("x")),
            ("command", Ben::s("offer")),
            ("flags", Ben::list(["trust-address"])),
            ("jitter-buffer-max", Ben::Int(-120)),
        ])
        .encode(&mut out);
        assert_eq!(
            out,
            b"d7:command5:offer5:flagsl13:trust-addresse17:jitter-buffer-maxi-120e3:sdp1:xe"
                .to_vec()
        );
        let v: Value = bt_bencode::from_slice(&out).unwrap();
        assert_eq!(v.get("command").unwrap().as_str(), Some("offer"));
    }

    #[test]
    fn finds_media_address() {
        let s = sdp("127.0.0.1:4000".parse().unwrap(), 1);
        assert_eq!(media_addr(&s), Some("127.0.0.1:4000".parse().unwrap()));
        let s = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 30000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\nm=video 9 RTP/AVP 96\r\n";
        assert_eq!(media_addr(s), Some("10.0.0.2:30000".parse().unwrap()));
    }

    #[test]
    fn srtp_sdp_round_trips() {
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(media_proto(&sdp(a, 1)), Some("RTP/AVP"));
        assert_eq!(crypto_values(&sdp(a, 1)).count(), 0);
        let s = sdp_with(a, 1, "RTP/SAVP", &["1 AES_CM_128_HMAC_SHA1_80 inline:QUJD"]);
        assert_eq!(media_proto(&s), Some("RTP/SAVP"));
        assert_eq!(
            crypto_values(&s).collect::<Vec<_>>(),
            ["1 AES_CM_128_HMAC_SHA1_80 inline:QUJD"]
        );
        assert_eq!(media_addr(&s), Some(a));
    }
}
