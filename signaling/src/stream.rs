//! The sans-IO codec of one stream connection: TCP, TLS, WS or WSS bytes
//! from the socket go in ([`StreamCodec::on_wire`]), SIP messages come
//! out ([`StreamCodec::poll_event`]); SIP messages go in
//! ([`StreamCodec::send`]), bytes for the socket come out
//! ([`StreamCodec::take_wire`]). The transport only moves bytes.
//!
//! Layers, outermost first:
//! - TLS (`Tls`, `Wss`): a rustls server connection over memory
//!   (RFC 3261 §26.3.1, RFC 7118 §5).
//! - WebSocket (`Ws`, `Wss`): tungstenite over an in-memory pipe; the
//!   opening handshake must ask for the `sip` subprotocol (RFC 7118 §4.1,
//!   else 400), and each WebSocket message is one SIP message (§5.1).
//!   Pings are answered; [`StreamCodec::on_tick`] sends our own pings
//!   when the peer is quiet and closes if no pong comes back.
//! - SIP framing (`Tcp`, `Tls`): [`Framer`] (Content-Length, RFC 3261
//!   §18.3) with CRLFCRLF keep-alives (RFC 5626 §3.5.1).
//!
//! Bounds, each a [`StreamClose`] the transport counts: the message size
//! (the framer's, and tungstenite's frame and message sizes), the opening
//! handshake's size and time ([`Limits::handshake_timeout`]), frames per
//! second on a WebSocket ([`Limits::max_ws_frames_per_sec`]), and pong
//! time.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection};
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::http::{HeaderValue, StatusCode};
use tungstenite::protocol::{Message, WebSocket, WebSocketConfig};

pub use crate::tcp::PONG;
use crate::tcp::{Frame, FrameError, Framer};

/// The kind of a stream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Plain TCP (RFC 3261 §18).
    Tcp,
    /// SIP over TLS (RFC 3261 §26.3.1).
    Tls,
    /// SIP over WebSocket (RFC 7118).
    Ws,
    /// SIP over secure WebSocket (RFC 7118 §5).
    Wss,
}

impl StreamKind {
    /// Whether the kind has a TLS layer.
    pub fn has_tls(self) -> bool {
        matches!(self, StreamKind::Tls | StreamKind::Wss)
    }

    /// Whether the kind has a WebSocket layer.
    pub fn has_ws(self) -> bool {
        matches!(self, StreamKind::Ws | StreamKind::Wss)
    }

    /// Every kind, in [`StreamKind::index`] order.
    pub const ALL: [StreamKind; 4] = [
        StreamKind::Tcp,
        StreamKind::Tls,
        StreamKind::Ws,
        StreamKind::Wss,
    ];

    /// 0 to 3, in [`StreamKind::ALL`] order (the per-kind counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The transport of a connection of this kind.
    pub fn transport(self, conn: crate::transport::ConnId) -> crate::transport::Transport {
        use crate::transport::Transport;
        match self {
            StreamKind::Tcp => Transport::Tcp(conn),
            StreamKind::Tls => Transport::Tls(conn),
            StreamKind::Ws => Transport::Ws(conn),
            StreamKind::Wss => Transport::Wss(conn),
        }
    }

    /// `tcp`, `tls`, `ws` or `wss`.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Tcp => "tcp",
            StreamKind::Tls => "tls",
            StreamKind::Ws => "ws",
            StreamKind::Wss => "wss",
        }
    }
}

/// Bounds of a stream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest SIP message, bytes (also the WebSocket message and frame
    /// bound).
    pub max_message: usize,
    /// TLS and WebSocket opening handshakes must finish within this.
    pub handshake_timeout: Duration,
    /// Longest WebSocket opening request (HTTP), bytes.
    pub max_ws_handshake: usize,
    /// A quiet WebSocket gets a ping after this; with no pong within as
    /// long again it is closed.
    pub ws_ping_every: Duration,
    /// More WebSocket frames than this in one second closes the
    /// connection (a flood; a browser sends a few per call).
    pub max_ws_frames_per_sec: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: crate::tcp::DEFAULT_MAX_MESSAGE,
            handshake_timeout: Duration::from_secs(10),
            max_ws_handshake: 16 << 10,
            ws_ping_every: Duration::from_secs(30),
            max_ws_frames_per_sec: 200,
        }
    }
}

/// What the codec hands up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// One whole SIP message.
    Message(Vec<u8>),
    /// A CRLFCRLF keep-alive on TCP or TLS (RFC 5626 §3.5.1): answer
    /// with [`StreamCodec::send_raw`] of [`PONG`], in order with the
    /// answers to the messages before it.
    KeepAlive,
}

/// Why a connection must close. After any of these, send what
/// [`StreamCodec::take_wire`] still holds (an alert, a close frame, a
/// 400) and close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamClose {
    /// The peer closed (TLS close_notify, WebSocket close frame).
    PeerClosed,
    /// The TLS layer failed (a garbage or refused handshake, a bad
    /// record): rustls's reason.
    Tls(String),
    /// The WebSocket opening handshake failed (not HTTP, no `sip`
    /// subprotocol, too long).
    WsHandshake(String),
    /// A WebSocket protocol error after the handshake (unmasked frame,
    /// bad opcode, bad UTF-8 in a text frame).
    WsProtocol(String),
    /// A message or frame over the bound (`limit` bytes).
    Oversize {
        /// The bound, bytes.
        limit: usize,
    },
    /// A stream message without a usable Content-Length: `head` is its
    /// header section (to answer 400), `why` the reason.
    Unframed {
        /// Header section bytes.
        head: Vec<u8>,
        /// What is wrong with it.
        why: String,
    },
    /// The TLS or WebSocket handshake took longer than the bound.
    HandshakeTimeout,
    /// Our WebSocket ping got no pong in time.
    PongTimeout,
    /// Too many WebSocket frames in one second.
    Flood,
}

impl fmt::Display for StreamClose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamClose::PeerClosed => write!(f, "closed by the peer"),
            StreamClose::Tls(e) => write!(f, "TLS: {e}"),
            StreamClose::WsHandshake(e) => write!(f, "WebSocket handshake: {e}"),
            StreamClose::WsProtocol(e) => write!(f, "WebSocket: {e}"),
            StreamClose::Oversize { limit } => write!(f, "message over {limit} bytes"),
            StreamClose::Unframed { why, .. } => write!(f, "{why}"),
            StreamClose::HandshakeTimeout => write!(f, "handshake not finished in time"),
            StreamClose::PongTimeout => write!(f, "no pong to our ping"),
            StreamClose::Flood => write!(f, "too many WebSocket frames per second"),
        }
    }
}

/// An in-memory duplex for tungstenite: `rx` is what the peer sent
/// (reads return `WouldBlock` when it is used up), `tx` collects what
/// tungstenite writes.
#[derive(Debug, Default)]
struct Pipe {
    rx: Vec<u8>,
    rpos: usize,
    tx: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = &self.rx[self.rpos..];
        if left.is_empty() {
            self.rx.clear();
            self.rpos = 0;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.rpos += n;
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The opening-handshake check: the client must offer the `sip`
/// subprotocol (RFC 7118 §4.1), which the answer then names.
struct SipSubprotocol;

impl Callback for SipSubprotocol {
    fn on_request(self, req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
        let offers_sip = req
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("sip"));
        if !offers_sip {
            let mut r = ErrorResponse::new(Some("the sip subprotocol is required".into()));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return Err(r);
        }
        resp.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
        Ok(resp)
    }
}

enum WsState {
    Handshake(Box<MidHandshake<ServerHandshake<Pipe, SipSubprotocol>>>),
    Open(Box<WebSocket<Pipe>>),
    /// Failed or closed: input is ignored.
    Done,
}

/// The codec of one connection (see the module docs).
pub struct StreamCodec {
    kind: StreamKind,
    limits: Limits,
    tls: Option<Box<ServerConnection>>,
    framer: Framer,
    ws: Option<WsState>,
    /// Plaintext bytes read from TLS (or the wire) not yet handed on.
    plain: Vec<u8>,
    /// Bytes for the socket.
    wire: Vec<u8>,
    events: VecDeque<StreamEvent>,
    opened: Instant,
    last_rx: Instant,
    ping_sent: Option<Instant>,
    handshake_bytes: usize,
    frames_window: (Instant, u32),
}

impl fmt::Debug for StreamCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamCodec")
            .field("kind", &self.kind)
            .field("established", &self.established())
            .finish()
    }
}

/// Plaintext read from TLS per call, bytes.
const TLS_READ_CHUNK: usize = 16 << 10;

impl StreamCodec {
    /// A codec for a new connection of `kind` at `now`; `tls` is the
    /// server configuration, needed for `Tls` and `Wss` (without it those
    /// fail at the first byte with [`StreamClose::Tls`]).
    pub fn new(
        kind: StreamKind,
        tls: Option<Arc<ServerConfig>>,
        limits: Limits,
        now: Instant,
    ) -> StreamCodec {
        let tls = if kind.has_tls() {
            tls.and_then(|c| ServerConnection::new(c).ok())
                .map(Box::new)
        } else {
            None
        };
        let ws = kind.has_ws().then(|| {
            let cfg = WebSocketConfig {
                max_message_size: Some(limits.max_message),
                max_frame_size: Some(limits.max_message),
                ..WebSocketConfig::default()
            };
            WsState::Handshake(Box::new(ServerHandshake::start(
                Pipe::default(),
                SipSubprotocol,
                Some(cfg),
            )))
        });
        StreamCodec {
            kind,
            limits,
            tls,
            framer: Framer::new(limits.max_message),
            ws,
            plain: Vec::new(),
            wire: Vec::new(),
            events: VecDeque::new(),
            opened: now,
            last_rx: now,
            ping_sent: None,
            handshake_bytes: 0,
            frames_window: (now, 0),
        }
    }

    /// The connection's kind.
    pub fn kind(&self) -> StreamKind {
        self.kind
    }

    /// Whether every handshake (TLS, WebSocket) is done: SIP may flow.
    pub fn established(&self) -> bool {
        let tls_ok = !self.kind.has_tls() || self.tls.as_ref().is_some_and(|t| !t.is_handshaking());
        let ws_ok = !self.kind.has_ws() || matches!(self.ws, Some(WsState::Open(_)));
        tls_ok && ws_ok
    }

    /// Takes bytes read from the socket at `now`. Whole messages are then
    /// queued for [`StreamCodec::poll_event`] (those before an error
    /// too), and answers (handshakes, pongs, alerts) for
    /// [`StreamCodec::take_wire`].
    ///
    /// Errors: a [`StreamClose`]; the connection must close.
    pub fn on_wire(&mut self, data: &[u8], now: Instant) -> Result<(), StreamClose> {
        self.last_rx = now;
        if !self.kind.has_tls() {
            // Plain bytes go straight to the framer or WebSocket: no copy.
            let r = if self.kind.has_ws() {
                self.ws_in(data, now)
            } else {
                self.sip_in(data)
            };
            self.flush_ws();
            return r;
        }
        let r = self.tls_in(data);
        self.tls_out();
        r?;
        if self.plain.is_empty() {
            return Ok(());
        }
        // Taken for the call, then given back cleared: its allocation is
        // reused by the next read.
        let mut plain = std::mem::take(&mut self.plain);
        let r = if self.kind.has_ws() {
            self.ws_in(&plain, now)
        } else {
            self.sip_in(&plain)
        };
        plain.clear();
        self.plain = plain;
        self.flush_ws();
        r
    }

    /// The next message read, if any.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// Sends one SIP message (a WebSocket text message when it is UTF-8,
    /// else binary). Before the handshakes are done it is dropped and
    /// `false` returned.
    pub fn send(&mut self, msg: &[u8]) -> bool {
        if !self.established() {
            return false;
        }
        if let Some(WsState::Open(ws)) = self.ws.as_mut() {
            let m = match std::str::from_utf8(msg) {
                Ok(s) => Message::Text(s.to_string()),
                Err(_) => Message::Binary(msg.to_vec()),
            };
            if ws.send(m).is_err() {
                return false;
            }
            self.flush_ws();
            return true;
        }
        self.write_plain(msg);
        true
    }

    /// Sends bytes as they are inside TLS (a [`PONG`] on TCP or TLS);
    /// `false` before the handshakes are done or on a WebSocket.
    pub fn send_raw(&mut self, bytes: &[u8]) -> bool {
        if !self.established() || self.kind.has_ws() {
            return false;
        }
        self.write_plain(bytes);
        true
    }

    /// Bytes to write to the socket, taken.
    pub fn take_wire(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.wire)
    }

    /// Timers at `now`: the handshake bound and WebSocket keep-alive.
    ///
    /// Errors: [`StreamClose::HandshakeTimeout`],
    /// [`StreamClose::PongTimeout`].
    pub fn on_tick(&mut self, now: Instant) -> Result<(), StreamClose> {
        if !self.established() {
            if now.saturating_duration_since(self.opened) >= self.limits.handshake_timeout {
                return Err(StreamClose::HandshakeTimeout);
            }
            return Ok(());
        }
        let every = self.limits.ws_ping_every;
        if let Some(WsState::Open(ws)) = self.ws.as_mut() {
            match self.ping_sent {
                Some(at) if now.saturating_duration_since(at) >= every => {
                    return Err(StreamClose::PongTimeout)
                }
                Some(_) => {}
                None if now.saturating_duration_since(self.last_rx) >= every => {
                    if ws.send(Message::Ping(b"tern".to_vec())).is_ok() {
                        self.ping_sent = Some(now);
                    }
                    self.flush_ws();
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Starts a clean close: a WebSocket close frame and a TLS
    /// close_notify go to [`StreamCodec::take_wire`].
    pub fn close(&mut self) {
        if let Some(WsState::Open(ws)) = self.ws.as_mut() {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
        self.flush_ws();
        if let Some(t) = self.tls.as_mut() {
            t.send_close_notify();
        }
        self.tls_out();
    }

    fn tls_in(&mut self, data: &[u8]) -> Result<(), StreamClose> {
        let Some(tls) = self.tls.as_mut() else {
            return Err(StreamClose::Tls("no TLS certificate configured".into()));
        };
        let mut rd = data;
        let mut buf = [0u8; TLS_READ_CHUNK];
        // Bounded: each round consumes input or ends.
        for _ in 0..=data.len() {
            if rd.is_empty() {
                break;
            }
            match tls.read_tls(&mut rd) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(StreamClose::Tls(e.to_string())),
            }
            if let Err(e) = tls.process_new_packets() {
                return Err(StreamClose::Tls(e.to_string()));
            }
            // Drain plaintext so rustls's buffer never fills.
            loop {
                match tls.reader().read(&mut buf) {
                    Ok(0) => return Err(StreamClose::PeerClosed),
                    Ok(n) => {
                        if self.plain.len() + n > 4 * self.limits.max_message {
                            return Err(StreamClose::Oversize {
                                limit: self.limits.max_message,
                            });
                        }
                        self.plain.extend_from_slice(&buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(StreamClose::Tls(e.to_string())),
                }
            }
        }
        Ok(())
    }

    /// Moves what TLS wants to send to the wire.
    fn tls_out(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            // Bounded: each round writes queued records.
            for _ in 0..1024 {
                if !tls.wants_write() {
                    break;
                }
                if tls.write_tls(&mut self.wire).is_err() {
                    break;
                }
            }
        }
    }

    /// Plaintext out: through TLS or straight to the wire.
    fn write_plain(&mut self, bytes: &[u8]) {
        match self.tls.as_mut() {
            Some(tls) => {
                let _ = tls.writer().write_all(bytes);
                self.tls_out();
            }
            None if self.kind.has_tls() => {}
            None => self.wire.extend_from_slice(bytes),
        }
    }

    /// Moves what tungstenite wrote into the pipe out as plaintext.
    fn flush_ws(&mut self) {
        let tx = match self.ws.as_mut() {
            Some(WsState::Open(ws)) => {
                let _ = ws.flush();
                std::mem::take(&mut ws.get_mut().tx)
            }
            Some(WsState::Handshake(mid)) => std::mem::take(&mut mid.get_mut().get_mut().tx),
            _ => return,
        };
        if !tx.is_empty() {
            self.write_plain(&tx);
        }
    }

    fn sip_in(&mut self, plain: &[u8]) -> Result<(), StreamClose> {
        self.framer.push(plain);
        // Bounded: each frame consumes buffered bytes.
        loop {
            match self.framer.next_frame() {
                Ok(None) => return Ok(()),
                Ok(Some(Frame::Message(m))) => self.events.push_back(StreamEvent::Message(m)),
                Ok(Some(Frame::Ping)) => self.events.push_back(StreamEvent::KeepAlive),
                Err(FrameError::TooLong { limit }) => return Err(StreamClose::Oversize { limit }),
                Err(
                    e @ (FrameError::NoContentLength { .. } | FrameError::BadContentLength { .. }),
                ) => {
                    let why = e.to_string();
                    let head = match e {
                        FrameError::NoContentLength { head }
                        | FrameError::BadContentLength { head, .. } => head,
                        FrameError::TooLong { .. } => Vec::new(),
                    };
                    return Err(StreamClose::Unframed { head, why });
                }
            }
        }
    }

    fn ws_in(&mut self, plain: &[u8], now: Instant) -> Result<(), StreamClose> {
        let state = self.ws.take().unwrap_or(WsState::Done);
        let state = match state {
            WsState::Handshake(mut mid) => {
                self.handshake_bytes += plain.len();
                if self.handshake_bytes > self.limits.max_ws_handshake {
                    self.ws = Some(WsState::Done);
                    return Err(StreamClose::WsHandshake("opening request too long".into()));
                }
                mid.get_mut().get_mut().rx.extend_from_slice(plain);
                match mid.handshake() {
                    Ok(ws) => WsState::Open(Box::new(ws)),
                    Err(HandshakeError::Interrupted(mid)) => WsState::Handshake(Box::new(mid)),
                    Err(HandshakeError::Failure(e)) => {
                        // tungstenite wrote its answer into the pipe it
                        // then dropped: answer again here.
                        let (status, body) = match &e {
                            tungstenite::Error::Http(r) => (
                                r.status(),
                                r.body().as_ref().map(|b| b.to_vec()).unwrap_or_default(),
                            ),
                            _ => (
                                StatusCode::BAD_REQUEST,
                                b"not a WebSocket opening request".to_vec(),
                            ),
                        };
                        let head = format!(
                            "HTTP/1.1 {} {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                            status.as_u16(),
                            status.canonical_reason().unwrap_or(""),
                            body.len()
                        );
                        self.write_plain(head.as_bytes());
                        self.write_plain(&body);
                        self.ws = Some(WsState::Done);
                        return Err(StreamClose::WsHandshake(e.to_string()));
                    }
                }
            }
            WsState::Open(mut ws) => {
                ws.get_mut().rx.extend_from_slice(plain);
                WsState::Open(ws)
            }
            WsState::Done => WsState::Done,
        };
        self.ws = Some(state);
        self.ws_read(now)
    }

    /// Reads every whole WebSocket message the pipe holds.
    fn ws_read(&mut self, now: Instant) -> Result<(), StreamClose> {
        let Some(WsState::Open(ws)) = self.ws.as_mut() else {
            return Ok(());
        };
        // Bounded: each message consumes piped bytes; the frame rate
        // bound ends a flood.
        loop {
            let m = match ws.read() {
                Ok(m) => m,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(())
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Err(StreamClose::PeerClosed)
                }
                Err(tungstenite::Error::Capacity(_)) => {
                    return Err(StreamClose::Oversize {
                        limit: self.limits.max_message,
                    })
                }
                Err(e) => return Err(StreamClose::WsProtocol(e.to_string())),
            };
            let (start, n) = &mut self.frames_window;
            if now.saturating_duration_since(*start) >= Duration::from_secs(1) {
                *start = now;
                *n = 0;
            }
            *n += 1;
            if *n > self.limits.max_ws_frames_per_sec {
                return Err(StreamClose::Flood);
            }
            self.ping_sent = None;
            let bytes = match m {
                Message::Text(s) => s.into_bytes(),
                Message::Binary(b) => b,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Close(_) => return Err(StreamClose::PeerClosed),
            };
            if bytes
                .iter()
                .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
            {
                // A CRLFCRLF keep-alive some clients send over WebSocket
                // (SIP.js): answered with CRLF; other blank ones ignored.
                if bytes.starts_with(b"\r\n\r\n") {
                    let _ = ws.send(Message::Text("\r\n".into()));
                }
                continue;
            }
            self.events.push_back(StreamEvent::Message(bytes));
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
