//! A small SIP user agent for tests, over UDP, TLS (rustls), WS and WSS
//! (tungstenite): send a request, read messages, answer a digest
//! challenge (RFC 7616 with qop=auth, MD5).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

pub trait Rw: Read + Write + Send {}
impl<T: Read + Write + Send> Rw for T {}

/// One connection of the test UA.
pub enum Link {
    Udp(UdpSocket, SocketAddr),
    Tls(Box<dyn Rw>, Vec<u8>),
    Ws(Box<WebSocket<Box<dyn Rw>>>),
}

/// A rustls client trusting exactly `cert_der`, for server name `localhost`.
pub fn tls_connect(addr: SocketAddr, cert_der: &[u8]) -> std::io::Result<Box<dyn Rw>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(cert_der.to_vec()))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    tcp.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // Drive the handshake now, so failures show here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(Box::new(s))
}

impl Link {
    pub fn udp(server: SocketAddr) -> Link {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Link::Udp(s, server)
    }

    pub fn tls(server: SocketAddr, cert_der: &[u8]) -> std::io::Result<Link> {
        Ok(Link::Tls(tls_connect(server, cert_der)?, Vec::new()))
    }

    /// A WebSocket (subprotocol `sip`) over `stream` (TCP or TLS).
    pub fn ws_over(stream: Box<dyn Rw>, url: &str) -> Result<Link, String> {
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
        let (ws, resp) = tungstenite::client(req, stream).map_err(|e| e.to_string())?;
        if resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.as_bytes())
            != Some(b"sip")
        {
            return Err("no sip subprotocol in the answer".into());
        }
        Ok(Link::Ws(Box::new(ws)))
    }

    pub fn ws(server: SocketAddr) -> Result<Link, String> {
        let tcp = TcpStream::connect_timeout(&server, Duration::from_secs(3))
            .map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Link::ws_over(Box::new(tcp), &format!("ws://{server}/"))
    }

    pub fn wss(server: SocketAddr, cert_der: &[u8]) -> Result<Link, String> {
        let tls = tls_connect(server, cert_der).map_err(|e| e.to_string())?;
        Link::ws_over(tls, "wss://localhost/")
    }

    /// The Via transport token and a sent-by host for this link.
    pub fn via(&self) -> (&'static str, String) {
        match self {
            Link::Udp(s, _) => ("UDP", s.local_addr().unwrap().to_string()),
            Link::Tls(..) => ("TLS", "client.invalid".into()),
            Link::Ws(_) => ("WS", "client.invalid".into()),
        }
    }

    pub fn send(&mut self, msg: &str) {
        match self {
            Link::Udp(s, to) => {
                s.send_to(msg.as_bytes(), *to).unwrap();
            }
            Link::Tls(s, _) => {
                s.write_all(msg.as_bytes()).unwrap();
                s.flush().unwrap();
            }
            Link::Ws(ws) => ws.send(Message::Text(msg.to_string())).unwrap(),
        }
    }

    /// The next message within `limit`; `None` on timeout or close.
    pub fn recv(&mut self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self {
                Link::Udp(s, _) => {
                    let mut buf = [0u8; 65536];
                    if let Ok((n, _)) = s.recv_from(&mut buf) {
                        return Some(String::from_utf8_lossy(&buf[..n]).to_string());
                    }
                }
                Link::Tls(s, buf) => {
                    if let Some(m) = frame(buf) {
                        return Some(m);
                    }
                    let mut chunk = [0u8; 8192];
                    match s.read(&mut chunk) {
                        Ok(0) => return None,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => return None,
                    }
                }
                Link::Ws(ws) => match ws.read() {
                    Ok(Message::Text(t)) => return Some(t),
                    Ok(Message::Binary(b)) => return Some(String::from_utf8_lossy(&b).to_string()),
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return None,
                },
            }
        }
        None
    }

    /// Reads until a final response (≥ 200) to CSeq method `method`.
    pub fn final_response(&mut self, method: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let m = self.recv(deadline.saturating_duration_since(Instant::now()))?;
            if status(&m).is_some_and(|c| c >= 200) && cseq_method(&m) == method {
                return Some(m);
            }
        }
        None
    }
}

/// One Content-Length-framed message from the front of `buf`.
fn frame(buf: &mut Vec<u8>) -> Option<String> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let len = header(&head, "Content-Length")
        .or_else(|| header(&head, "l"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if buf.len() < end + len {
        return None;
    }
    let m = String::from_utf8_lossy(&buf[..end + len]).to_string();
    buf.drain(..end + len);
    Some(m)
}

/// The status code of a response.
pub fn status(m: &str) -> Option<u16> {
    m.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// The first value of header `name` (case-insensitive).
pub fn header(m: &str, name: &str) -> Option<String> {
    m.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
}

/// The method of the CSeq header.
pub fn cseq_method(m: &str) -> String {
    header(m, "CSeq")
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_default()
}

/// The body of a message.
pub fn body(m: &str) -> &str {
    m.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn param(v: &str, name: &str) -> Option<String> {
    let i = v.find(&format!("{name}="))? + name.len() + 1;
    let rest = &v[i..];
    if let Some(r) = rest.strip_prefix('"') {
        r.split('"').next().map(str::to_string)
    } else {
        rest.split([',', ' ']).next().map(str::to_string)
    }
}

/// The Authorization (401) or Proxy-Authorization (407) header answering
/// the challenge in `resp` for `method` `uri` (MD5, qop=auth).
pub fn authorize(resp: &str, method: &str, uri: &str, user: &str, pass: &str) -> String {
    let (hname, chal) = match status(resp) {
        Some(407) => ("Proxy-Authorization", header(resp, "Proxy-Authenticate")),
        _ => ("Authorization", header(resp, "WWW-Authenticate")),
    };
    let chal = chal.expect("a challenge");
    let realm = param(&chal, "realm").unwrap_or_default();
    let nonce = param(&chal, "nonce").unwrap_or_default();
    let md5 = tern_signaling::digest::md5_hex;
    let ha1 = md5(&format!("{user}:{realm}:{pass}"));
    let ha2 = md5(&format!("{method}:{uri}"));
    let (nc, cnonce) = ("00000001", "0a4f113b");
    let response = md5(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "{hname}: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
    )
}

/// A request from `user` on `link` (Via, From, To, Call-ID, CSeq,
/// Contact), with `extra` headers and `body`.
#[allow(clippy::too_many_arguments)]
pub fn request(
    link: &Link,
    method: &str,
    uri: &str,
    user: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    extra: &str,
    body: &str,
) -> String {
    let (t, host) = link.via();
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    let branch = format!("z9hG4bK{call_id}{cseq}{method}");
    let contact = if extra.contains("Contact:") {
        String::new()
    } else {
        format!(
            "Contact: <sip:{user}@{host};transport={}>\r\n",
            t.to_ascii_lowercase()
        )
    };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{t} {host};branch={branch};rport\r\nFrom: <sip:{user}@127.0.0.1>;tag={user}tag\r\nTo: <sip:{to}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{contact}Max-Forwards: 70\r\n{extra}{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// REGISTERs `user` on `link` with digest, contact as `request` makes it
/// (or `contact` when given); returns the final status.
pub fn register_digest(
    link: &mut Link,
    registrar: &str,
    user: &str,
    pass: &str,
    contact: Option<&str>,
) -> Option<u16> {
    let call_id = format!("reg-{user}-{}", std::process::id());
    let uri = format!("sip:{registrar}");
    let extra = match contact {
        Some(c) => format!("Expires: 600\r\nContact: <{c}>\r\n"),
        None => "Expires: 600\r\n".to_string(),
    };
    let r = request(link, "REGISTER", &uri, user, user, &call_id, 1, &extra, "");
    link.send(&r);
    let resp = link.final_response("REGISTER", Duration::from_secs(5))?;
    if status(&resp) != Some(401) {
        return status(&resp);
    }
    let auth = authorize(&resp, "REGISTER", &uri, user, pass);
    let r = request(
        link,
        "REGISTER",
        &uri,
        user,
        user,
        &call_id,
        2,
        &format!("{extra}{auth}\r\n"),
        "",
    );
    link.send(&r);
    status(&link.final_response("REGISTER", Duration::from_secs(5))?)
}
