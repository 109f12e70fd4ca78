//! The transport loop's state ([`Loop`], run by `crate::server`) and its
//! stream connections:
//! accepting (TCP, TLS, WS, WSS) and connecting (TCP), reading through
//! each connection's [`StreamCodec`], writing, the bounds (connections in
//! all and per source, write buffer, idle time, handshake and pong time)
//! and closing, each refusal counted in [`crate::TransportStats`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Interest, Poll, Token};
use tracing::debug;

use crate::config::TransportConfig;
use crate::core::SipCore;
use crate::guard::{Admit, Guard};
use crate::stream::{Limits, StreamClose, StreamCodec, StreamEvent, StreamKind, PONG};
use crate::transport::{ConnId, Source, TransportStats};

/// Reads per connection per wakeup (of up to `max_message` bytes).
const READ_BUDGET: usize = 16;
/// Unsent bytes a connection may hold before it is closed as too slow a
/// reader, bytes (256 KiB: with the read bound, a connection holds at
/// most about 400 KiB).
const MAX_WRITE_BUFFER: usize = 256 << 10;
/// An outgoing TCP connect not complete after this is given up (64·T1 at
/// the default T1: the INVITE's Timer B would end it anyway).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(32);

/// `Retry-After` of the 503 that a stream request over its source's rate
/// gets ([`crate::guard`]), seconds.
const RETRY_AFTER_SECS: u32 = 1;

/// Tokens of the TLS, WS and WSS listeners: `LISTENER` + kind index.
/// Connection tokens start above them.
pub(crate) const FIRST_CONN_TOKEN: usize = 8;

/// The state of the transport loop (`crate::server` runs it): sockets,
/// stream connections and their bounds, counters.
pub(crate) struct Loop {
    pub(crate) poll: Poll,
    pub(crate) sock: UdpSocket,
    pub(crate) listener: TcpListener,
    /// The TLS, WS and WSS listeners.
    pub(crate) secure: Vec<(StreamKind, TcpListener)>,
    /// The server configuration of TLS and WSS connections.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) cfg: TransportConfig,
    pub(crate) conns: HashMap<ConnId, Conn>,
    pub(crate) by_peer: HashMap<SocketAddr, ConnId>,
    /// Open stream connections per remote IP.
    pub(crate) per_source: HashMap<IpAddr, usize>,
    pub(crate) next_conn: u64,
    pub(crate) pending: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Connections whose read budget ran out: read again without waiting
    /// (edge-triggered readiness will not fire again).
    pub(crate) readable: HashSet<ConnId>,
    pub(crate) stats: TransportStats,
    pub(crate) buf: Vec<u8>,
    /// When the next peer-caused warning may be logged.
    pub(crate) next_warn: Instant,
    /// The rate limit and address lists, applied before the core.
    pub(crate) guard: Guard,
    /// The resolver thread of trunk gateway names (`crate::dns`), if any.
    pub(crate) dns: Option<crate::dns::DnsWorker>,
}

/// A warning caused by a peer: logged at most once a second (the rest at
/// debug level), so a flood of bad connections cannot flood the log; the
/// counters count every one.
macro_rules! peer_warn {
    ($l:expr, $($t:tt)*) => {
        if $l.may_warn() {
            tracing::warn!($($t)*)
        } else {
            tracing::debug!($($t)*)
        }
    };
}
pub(crate) use peer_warn;

pub(crate) fn token_of(id: ConnId) -> Token {
    Token(id.0 as usize + FIRST_CONN_TOKEN - 1)
}

pub(crate) fn conn_of(t: Token) -> ConnId {
    ConnId((t.0 + 1 - FIRST_CONN_TOKEN) as u64)
}

/// One stream connection.
pub(crate) struct Conn {
    stream: TcpStream,
    pub(crate) peer: SocketAddr,
    codec: StreamCodec,
    /// Bytes not yet written, from `wpos`.
    wbuf: Vec<u8>,
    wpos: usize,
    last_active: Instant,
    /// An outgoing connect not yet complete.
    connecting: bool,
    /// Close once `wbuf` is written (framing lost; a 400 is on its way).
    close_after_flush: bool,
}

/// Why a connection is closed (for counters and the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    PeerClosed,
    Error,
    Idle,
    Oversize,
    Unframed,
    WriteOverflow,
    Shutdown,
    Tls,
    WsHandshake,
    WsProtocol,
    HandshakeTimeout,
    PongTimeout,
    Flood,
}

impl Loop {
    pub(crate) fn may_warn(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next_warn {
            return false;
        }
        self.next_warn = now + Duration::from_secs(1);
        true
    }

    fn limits(&self) -> Limits {
        Limits {
            max_message: self.cfg.max_message,
            ..Limits::default()
        }
    }

    /// Accepts what the listener of `kind` has waiting.
    pub(crate) fn accept(&mut self, kind: StreamKind) {
        // Bounded: the backlog is finite; at most 4096 per wakeup.
        for _ in 0..4096 {
            let r = match kind {
                StreamKind::Tcp => self.listener.accept(),
                k => match self.secure.iter().find(|(sk, _)| *sk == k) {
                    Some((_, l)) => l.accept(),
                    None => return,
                },
            };
            match r {
                Ok((stream, peer)) => {
                    if !self.guard.allowed(peer.ip()) {
                        self.stats.guard_denied += 1;
                        debug!(%peer, kind = kind.name(), "connection refused: source denied");
                        drop(stream);
                        continue;
                    }
                    if self.conns.len() >= self.cfg.max_connections {
                        self.stats.tcp_refused += 1;
                        peer_warn!(self, %peer, kind = kind.name(), max = self.cfg.max_connections, "connection refused: too many connections");
                        drop(stream);
                        continue;
                    }
                    let from_ip = self.per_source.get(&peer.ip()).copied().unwrap_or(0);
                    if from_ip >= self.cfg.max_per_source {
                        self.stats.source_refused += 1;
                        peer_warn!(self, %peer, kind = kind.name(), max = self.cfg.max_per_source, "connection refused: too many from this address");
                        drop(stream);
                        continue;
                    }
                    self.stats.tcp_accepted += 1;
                    self.stats.accepted_by_kind[kind.index()] += 1;
                    if let Some(id) = self.add_conn(stream, peer, kind, false) {
                        debug!(%peer, conn = id.0, kind = kind.name(), "connection accepted");
                        // Data may already be waiting.
                        self.readable.insert(id);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: try again on the next wakeup.
                    tracing::warn!(error = %e, kind = kind.name(), "accept failed");
                    return;
                }
            }
        }
    }

    fn add_conn(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        kind: StreamKind,
        connecting: bool,
    ) -> Option<ConnId> {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token_of(id),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(%peer, error = %e, "cannot register a connection");
            return None;
        }
        let _ = stream.set_nodelay(true);
        let now = Instant::now();
        let codec = StreamCodec::new(kind, self.tls.clone(), self.limits(), now);
        self.conns.insert(
            id,
            Conn {
                stream,
                peer,
                codec,
                wbuf: Vec::new(),
                wpos: 0,
                last_active: now,
                connecting,
                close_after_flush: false,
            },
        );
        *self.per_source.entry(peer.ip()).or_insert(0) += 1;
        self.stats.open_by_kind[kind.index()] += 1;
        self.by_peer.insert(peer, id);
        Some(id)
    }

    pub(crate) fn read_conn(&mut self, core: &mut SipCore, id: ConnId) {
        let chunk = self.cfg.max_message.min(self.buf.len());
        for i in 0..=READ_BUDGET {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.connecting || c.close_after_flush {
                return;
            }
            if i == READ_BUDGET {
                self.readable.insert(id);
                return;
            }
            let n = match c.stream.read(&mut self.buf[..chunk]) {
                Ok(0) => {
                    self.close(core, id, Why::PeerClosed);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(conn = id.0, error = %e, "stream read");
                    self.close(core, id, Why::Error);
                    return;
                }
            };
            let now = Instant::now();
            c.last_active = now;
            let r = c.codec.on_wire(&self.buf[..n], now);
            let (peer, kind) = (c.peer, c.codec.kind());
            // Bounded: each event was decoded from the bytes just read.
            loop {
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                match c.codec.poll_event() {
                    None => break,
                    Some(StreamEvent::Message(m)) => {
                        self.stats.tcp_messages += 1;
                        self.stats.messages_by_kind[kind.index()] += 1;
                        let src = Source::stream(kind.transport(id), peer);
                        let now = Instant::now();
                        let known = |id: &str| core.b2bua().has_call_id(id);
                        match self.guard.check(peer.ip(), &m, known, now) {
                            Admit::Pass => core.handle_message(&m, src, now),
                            Admit::Limited => {
                                self.stats.guard_rate_limited += 1;
                                core.refuse_overloaded(&m, src, RETRY_AFTER_SECS);
                            }
                            Admit::Denied => self.stats.guard_denied += 1,
                        }
                        // Answers go out now, in order with later pongs.
                        self.flush_core(core);
                    }
                    Some(StreamEvent::KeepAlive) => {
                        self.stats.tcp_keepalives += 1;
                        c.codec.send_raw(PONG);
                    }
                }
            }
            self.push_wire(core, id);
            if let Err(why) = r {
                self.on_codec_close(core, id, why);
                return;
            }
        }
    }

    /// The codec ended the connection: count, answer what must be
    /// answered (400 to an unframed request), and close once the last
    /// bytes (an alert, a close frame, an HTTP 400) are out.
    fn on_codec_close(&mut self, core: &mut SipCore, id: ConnId, why: StreamClose) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let (peer, kind) = (c.peer, c.codec.kind());
        let reason = match &why {
            StreamClose::PeerClosed => Why::PeerClosed,
            StreamClose::Tls(_) => Why::Tls,
            StreamClose::WsHandshake(_) => Why::WsHandshake,
            StreamClose::WsProtocol(_) => Why::WsProtocol,
            StreamClose::Oversize { .. } => Why::Oversize,
            StreamClose::Unframed { .. } => Why::Unframed,
            StreamClose::HandshakeTimeout => Why::HandshakeTimeout,
            StreamClose::PongTimeout => Why::PongTimeout,
            StreamClose::Flood => Why::Flood,
        };
        if reason != Why::PeerClosed {
            peer_warn!(self, %peer, kind = kind.name(), why = %why, "closing the connection");
        }
        if let StreamClose::Unframed { head, why } = why {
            let src = Source::stream(kind.transport(id), peer);
            core.handle_unframed(&head, src, &why, Instant::now());
            self.flush_core(core);
        }
        match self.conns.get_mut(&id) {
            Some(c) if reason != Why::PeerClosed => {
                c.close_after_flush = true;
                self.count(reason);
            }
            _ => {}
        }
        if reason == Why::PeerClosed {
            self.close_gracefully(id);
            self.close(core, id, Why::PeerClosed);
        } else {
            self.finish_close(core, id, reason);
        }
    }

    fn count(&mut self, why: Why) {
        let s = &mut self.stats;
        match why {
            Why::Idle => s.tcp_idle_closed += 1,
            Why::Oversize => s.tcp_oversize += 1,
            Why::Unframed => s.tcp_unframed += 1,
            Why::WriteOverflow => s.tcp_write_overflow += 1,
            Why::Tls => s.tls_failed += 1,
            Why::WsHandshake => s.ws_handshake_failed += 1,
            Why::WsProtocol => s.ws_protocol_errors += 1,
            Why::HandshakeTimeout => s.handshake_timeouts += 1,
            Why::PongTimeout => s.pong_timeouts += 1,
            Why::Flood => s.ws_floods += 1,
            Why::PeerClosed | Why::Error | Why::Shutdown => {}
        }
    }

    /// Opens a TCP connection to `dest` (RFC 3261 §18.1.1).
    pub(crate) fn connect(&mut self, dest: SocketAddr) -> Option<ConnId> {
        if self.conns.len() >= self.cfg.max_connections {
            self.stats.tcp_refused += 1;
            peer_warn!(self, %dest, "TCP connection not opened: too many connections");
            return None;
        }
        match TcpStream::connect(dest) {
            Ok(stream) => {
                self.stats.tcp_connected += 1;
                let id = self.add_conn(stream, dest, StreamKind::Tcp, true)?;
                debug!(%dest, conn = id.0, "TCP connecting");
                Some(id)
            }
            Err(e) => {
                peer_warn!(self, %dest, error = %e, "TCP connect failed");
                None
            }
        }
    }

    /// Sends one SIP message on the connection and writes what it can.
    pub(crate) fn queue(&mut self, core: &mut SipCore, id: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if !c.connecting && !c.codec.send(bytes) {
            // A TLS/WS handshake not done yet: nothing can go out.
            self.stats.tcp_send_failed += 1;
            debug!(peer = %c.peer, conn = id.0, "handshake not done; message dropped");
            return;
        }
        if c.connecting {
            // Plain TCP: the codec passes bytes through once connected.
            c.wbuf.extend_from_slice(bytes);
            return;
        }
        self.push_wire(core, id);
    }

    /// Moves the codec's output into the write buffer and writes.
    fn push_wire(&mut self, core: &mut SipCore, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let out = c.codec.take_wire();
        if out.is_empty() {
            return;
        }
        if c.wbuf.len() - c.wpos + out.len() > MAX_WRITE_BUFFER {
            let peer = c.peer;
            peer_warn!(self, %peer, "stream peer does not read; closing the connection");
            self.count(Why::WriteOverflow);
            self.close(core, id, Why::WriteOverflow);
            return;
        }
        c.wbuf.extend_from_slice(&out);
        if !c.connecting && !self.flush(id) {
            self.close(core, id, Why::Error);
        }
    }

    /// Writes until the buffer is empty or the socket is full; returns
    /// false on a write error (the caller closes).
    pub(crate) fn flush(&mut self, id: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&id) else {
            return true;
        };
        // Bounded: each successful write consumes bytes; 1024 rounds max.
        for _ in 0..1024 {
            if c.wpos >= c.wbuf.len() {
                c.wbuf.clear();
                c.wpos = 0;
                return true;
            }
            match c.stream.write(&c.wbuf[c.wpos..]) {
                Ok(0) => return false,
                Ok(n) => {
                    c.wpos += n;
                    c.last_active = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(peer = %c.peer, error = %e, "stream write");
                    return false;
                }
            }
        }
        if c.wpos > 0 {
            c.wbuf.drain(..c.wpos);
            c.wpos = 0;
        }
        true
    }

    pub(crate) fn on_writable(&mut self, core: &mut SipCore, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.connecting {
            match (c.stream.take_error(), c.stream.peer_addr()) {
                (Ok(None), Ok(_)) => {
                    c.connecting = false;
                    debug!(peer = %c.peer, conn = id.0, "TCP connected");
                    // Responses may already be waiting to be read.
                    self.readable.insert(id);
                }
                (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => return,
                (Ok(Some(e)), _) | (Err(e), _) | (_, Err(e)) => {
                    let peer = c.peer;
                    peer_warn!(self, %peer, error = %e, "TCP connect failed");
                    self.close(core, id, Why::Error);
                    return;
                }
            }
        }
        if !self.flush(id) {
            self.close(core, id, Why::Error);
            return;
        }
        self.finish_close(core, id, Why::Unframed);
    }

    /// Closes a connection marked close-after-flush once its output is out.
    fn finish_close(&mut self, core: &mut SipCore, id: ConnId, why: Why) {
        if !self.flush(id) {
            self.close(core, id, Why::Error);
            return;
        }
        if let Some(c) = self.conns.get(&id) {
            if c.close_after_flush && c.wpos >= c.wbuf.len() {
                self.close(core, id, why);
            }
        }
    }

    /// Once a second: idle connections and connects that take too long
    /// are closed; each codec's timers run (handshake time, WebSocket
    /// pings and pong time).
    pub(crate) fn sweep(&mut self, core: &mut SipCore, now: Instant) {
        let idle: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let quiet = now.saturating_duration_since(c.last_active);
                quiet > self.cfg.idle_timeout || (c.connecting && quiet > CONNECT_TIMEOUT)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.count(Why::Idle);
            self.close(core, id, Why::Idle);
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if c.connecting || c.close_after_flush {
                continue;
            }
            let r = c.codec.on_tick(now);
            self.push_wire(core, id);
            if let Err(why) = r {
                self.on_codec_close(core, id, why);
            }
        }
    }

    /// Starts a clean close (WebSocket close frame, TLS close_notify) and
    /// writes what is queued, best effort.
    pub(crate) fn close_gracefully(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            if !c.connecting && c.codec.established() {
                c.codec.close();
                let out = c.codec.take_wire();
                c.wbuf.extend_from_slice(&out);
            }
        }
        self.flush(id);
    }

    pub(crate) fn close(&mut self, core: &mut SipCore, id: ConnId, why: Why) {
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        if self.by_peer.get(&c.peer) == Some(&id) {
            self.by_peer.remove(&c.peer);
        }
        if let Some(n) = self.per_source.get_mut(&c.peer.ip()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&c.peer.ip());
            }
        }
        let k = c.codec.kind().index();
        self.stats.open_by_kind[k] = self.stats.open_by_kind[k].saturating_sub(1);
        self.readable.remove(&id);
        self.stats.tcp_closed += 1;
        debug!(peer = %c.peer, conn = id.0, kind = c.codec.kind().name(), ?why, "connection closed");
        core.connection_closed(id, Instant::now());
        if c.connecting {
            // Never connected: what was sent its way cannot arrive.
            core.transport_failed(c.peer, Instant::now());
        }
    }
}
