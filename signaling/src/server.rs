//! The transport: a `mio` loop around [`SipCore`], with UDP and TCP on the
//! same port (RFC 3261 §18). The only place that owns sockets and reads
//! the clock.
//!
//! - UDP: one datagram, one message.
//! - TCP: accepted and outgoing connections, each framed by a
//!   [`Framer`] (Content-Length, RFC 3261 §18.3) bounded to
//!   [`TransportConfig::max_message`] bytes; at most
//!   [`TransportConfig::max_connections`], closed after
//!   [`TransportConfig::idle_timeout`] without traffic. Responses go back
//!   on the connection of their request; requests to a TCP contact reuse a
//!   connection to it or open one.
//! - Drain ([`Server::with_drain`]): once the flag is set, new INVITEs get
//!   503 with `Retry-After`, calls in progress run to their end, and
//!   [`Server::serve`] returns when none is left or after
//!   [`TransportConfig::drain`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use tracing::{debug, info, warn};

use crate::config::SipConfig;
pub use crate::config::TransportConfig;
use crate::core::SipCore;
use crate::relay::MediaRelay;
use crate::tcp::{Frame, FrameError, Framer, PONG};
pub use crate::transport::TransportStats;
use crate::transport::{top_via_port, ConnId, Source, Transport};
use crate::SipError;

const UDP: Token = Token(0);
const LISTENER: Token = Token(1);
/// Longest wait in `poll`, so a shutdown request is noticed quickly.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Datagrams read per wakeup before timers and sends get their turn.
const READ_BUDGET: usize = 256;
/// Reads per TCP connection per wakeup (of up to `max_message` bytes).
const TCP_READ_BUDGET: usize = 16;
/// Unsent bytes a TCP connection may hold before it is closed as too
/// slow a reader, bytes (256 KiB: with the read bound, a connection holds
/// at most about 400 KiB).
const MAX_WRITE_BUFFER: usize = 256 << 10;
/// An outgoing TCP connect not complete after this is given up (64·T1 at
/// the default T1: the INVITE's Timer B would end it anyway).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(32);
/// How often a drain in progress is logged.
const DRAIN_LOG_EVERY: Duration = Duration::from_secs(5);
/// Bound of UDP datagrams waiting for the socket to become writable.
const MAX_UDP_PENDING: usize = 65_536;

/// Binds UDP and TCP on `config.listen` and serves SIP until `shutdown`
/// becomes true (checked at least every 100 ms): [`Server::bind`] then
/// [`Server::serve`]. Relay slots of calls still up at shutdown are left as
/// they are, so media keeps flowing across a restart of the signaling plane.
///
/// Errors: [`SipError::Config`] if [`SipConfig::validate`] refuses the
/// configuration, [`SipError::Bind`] if the address cannot be bound,
/// [`SipError::Io`] if polling fails.
pub fn run(
    config: SipConfig,
    relay: Box<dyn MediaRelay>,
    shutdown: Arc<AtomicBool>,
) -> Result<(), SipError> {
    Server::bind(config)?.serve(relay, shutdown)
}

/// A bound, not yet serving, SIP transport (UDP and TCP on one port).
/// Binding first lets the caller announce readiness (and learn the port
/// when `listen` has port 0) only once messages can no longer be lost.
#[derive(Debug)]
pub struct Server {
    config: SipConfig,
    sock: UdpSocket,
    listener: TcpListener,
    bound: SocketAddr,
    snapshot: Option<crate::snapshot::SharedSnapshot>,
    transport: TransportConfig,
    drain: Option<Arc<AtomicBool>>,
}

/// Receive and send buffer asked for the UDP socket, bytes.
const UDP_BUFFER_BYTES: usize = 4 << 20;

impl Server {
    /// Validates `config` and binds UDP and TCP on its address. With port
    /// 0 a port free for both is picked (up to 20 tries).
    ///
    /// Errors: [`SipError::Config`], [`SipError::Bind`], [`SipError::Io`].
    pub fn bind(config: SipConfig) -> Result<Server, SipError> {
        config.validate().map_err(SipError::Config)?;
        let tries = if config.listen.port() == 0 { 20 } else { 1 };
        let mut last_err = None;
        for _ in 0..tries {
            let sock =
                UdpSocket::bind(config.listen).map_err(|e| SipError::Bind(config.listen, e))?;
            // Room for bursts while this thread is off the CPU: the
            // default (rmem_default, ~200 KiB) holds ~100 datagrams, a few
            // ms at 1,000 calls/s. Best effort: the kernel caps it at
            // net.core.rmem_max / wmem_max.
            let so = socket2::SockRef::from(&sock);
            let _ = so.set_recv_buffer_size(UDP_BUFFER_BYTES);
            let _ = so.set_send_buffer_size(UDP_BUFFER_BYTES);
            let bound = sock.local_addr().map_err(SipError::Io)?;
            match TcpListener::bind(bound) {
                Ok(listener) => {
                    return Ok(Server {
                        config,
                        sock,
                        listener,
                        bound,
                        snapshot: None,
                        transport: TransportConfig::default(),
                        drain: None,
                    })
                }
                Err(e) => last_err = Some((bound, e)),
            }
        }
        let (addr, e) = last_err.unwrap_or((
            config.listen,
            io::Error::new(io::ErrorKind::AddrInUse, "no port free for UDP and TCP"),
        ));
        Err(SipError::Bind(addr, e))
    }

    /// Publishes a [`crate::snapshot::SipSnapshot`] into `shared` at most
    /// every 500 ms while serving, for observers (the HTTP API).
    pub fn with_snapshot(mut self, shared: crate::snapshot::SharedSnapshot) -> Server {
        self.snapshot = Some(shared);
        self
    }

    /// Uses `transport` for the TCP bounds and the drain time.
    pub fn with_transport(mut self, transport: TransportConfig) -> Server {
        self.transport = transport;
        self
    }

    /// Drains when `flag` becomes true (SIGTERM): new INVITEs get 503
    /// with `Retry-After`, calls up run to their end, and serving stops
    /// once no call holds a slot or after [`TransportConfig::drain`].
    /// `shutdown` still stops at once.
    pub fn with_drain(mut self, flag: Arc<AtomicBool>) -> Server {
        self.drain = Some(flag);
        self
    }

    /// The bound address (the real port when `listen` had port 0); UDP and
    /// TCP share it.
    pub fn local_addr(&self) -> SocketAddr {
        self.bound
    }

    /// Serves until `shutdown` is true (checked at least every 100 ms) or a
    /// drain ends.
    ///
    /// Errors: [`SipError::Io`] if polling fails.
    pub fn serve(
        self,
        relay: Box<dyn MediaRelay>,
        shutdown: Arc<AtomicBool>,
    ) -> Result<(), SipError> {
        let snap = self
            .snapshot
            .clone()
            .map(crate::snapshot::SnapshotPublisher::new);
        let poll = Poll::new().map_err(SipError::Io)?;
        let mut core = SipCore::new(&self.config, relay, self.bound, Instant::now());
        let Server {
            config,
            mut sock,
            mut listener,
            bound,
            transport,
            drain,
            ..
        } = self;
        poll.registry()
            .register(&mut sock, UDP, Interest::READABLE | Interest::WRITABLE)
            .map_err(SipError::Io)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(SipError::Io)?;
        info!(
            listen = %bound,
            advertised = %core.local_addr(),
            realm = %config.realm,
            users = config.users.len(),
            max_tcp = transport.max_connections,
            "SIP signaling up (UDP and TCP)"
        );
        let mut l = Loop {
            poll,
            sock,
            listener,
            cfg: transport,
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            next_conn: 1,
            pending: VecDeque::new(),
            readable: HashSet::new(),
            stats: TransportStats::default(),
            buf: Vec::new(),
            next_warn: Instant::now(),
        };
        l.buf = vec![0u8; l.cfg.max_message.max(65_536)];
        let r = l.run(&mut core, &shutdown, drain.as_deref(), snap);
        info!(calls = core.calls(), stats = ?core.stats(), transport = ?l.stats, "SIP signaling stopped");
        r
    }
}

/// One TCP connection.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    framer: Framer,
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
enum Why {
    PeerClosed,
    Error,
    Idle,
    Oversize,
    Unframed,
    WriteOverflow,
    Shutdown,
}

struct Loop {
    poll: Poll,
    sock: UdpSocket,
    listener: TcpListener,
    cfg: TransportConfig,
    conns: HashMap<ConnId, Conn>,
    by_peer: HashMap<SocketAddr, ConnId>,
    next_conn: u64,
    pending: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Connections whose read budget ran out: read again without waiting
    /// (edge-triggered readiness will not fire again).
    readable: HashSet<ConnId>,
    stats: TransportStats,
    buf: Vec<u8>,
    /// When the next peer-caused warning may be logged.
    next_warn: Instant,
}

/// A warning caused by a peer: logged at most once a second (the rest at
/// debug level), so a flood of bad connections cannot flood the log; the
/// counters count every one.
macro_rules! peer_warn {
    ($l:expr, $($t:tt)*) => {
        if $l.may_warn() {
            warn!($($t)*)
        } else {
            debug!($($t)*)
        }
    };
}

fn token_of(id: ConnId) -> Token {
    Token(id.0 as usize + 1)
}

fn conn_of(t: Token) -> ConnId {
    ConnId(t.0 as u64 - 1)
}

impl Loop {
    fn may_warn(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next_warn {
            return false;
        }
        self.next_warn = now + Duration::from_secs(1);
        true
    }

    fn run(
        &mut self,
        core: &mut SipCore,
        shutdown: &AtomicBool,
        drain: Option<&AtomicBool>,
        mut snap: Option<crate::snapshot::SnapshotPublisher>,
    ) -> Result<(), SipError> {
        let mut events = Events::with_capacity(256);
        let mut more_udp = false;
        let mut drain_until: Option<Instant> = None;
        let mut next_drain_log = Instant::now() + DRAIN_LOG_EVERY;
        let mut next_sweep = Instant::now() + Duration::from_secs(1);
        while !shutdown.load(Ordering::Relaxed) {
            let now = Instant::now();
            if drain_until.is_none() && drain.is_some_and(|d| d.load(Ordering::Relaxed)) {
                let secs = self.cfg.drain.as_secs().clamp(1, u64::from(u32::MAX)) as u32;
                core.set_draining(Some(secs));
                drain_until = Some(now + self.cfg.drain);
                info!(
                    calls = core.active_calls(),
                    drain_secs = self.cfg.drain.as_secs(),
                    "SIGTERM: draining; new calls get 503, calls up may finish"
                );
            }
            if let Some(until) = drain_until {
                if core.drained() {
                    info!("drained: no call left");
                    break;
                }
                if now >= until {
                    warn!(
                        calls = core.active_calls(),
                        "drain time over; stopping with calls up"
                    );
                    break;
                }
                if now >= next_drain_log {
                    info!(
                        calls = core.active_calls(),
                        left_secs = until.saturating_duration_since(now).as_secs(),
                        "draining"
                    );
                    next_drain_log = now + DRAIN_LOG_EVERY;
                }
            }
            let mut wait = MAX_WAIT;
            if let Some(t) = core.poll_timeout() {
                wait = wait.min(t.saturating_duration_since(now));
            }
            if more_udp || !self.readable.is_empty() {
                wait = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(SipError::Io(e));
            }
            let mut to_read: Vec<ConnId> = self.readable.drain().collect();
            let mut to_flush: Vec<ConnId> = Vec::new();
            for ev in events.iter() {
                match ev.token() {
                    UDP => {}
                    LISTENER => self.accept(),
                    t => {
                        let id = conn_of(t);
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            to_read.push(id);
                        }
                        if ev.is_writable() || ev.is_error() {
                            to_flush.push(id);
                        }
                    }
                }
            }
            more_udp = self.read_udp(core);
            for id in to_flush {
                self.on_writable(core, id);
            }
            for id in to_read {
                self.read_conn(core, id);
            }
            let now = Instant::now();
            core.handle_timeout(now);
            if now >= next_sweep {
                self.sweep_idle(core, now);
                next_sweep = now + Duration::from_secs(1);
            }
            core.set_transport_stats(self.stats);
            if let Some(p) = snap.as_mut() {
                p.tick(core, now);
            }
            self.flush_core(core);
        }
        // Best effort: what is queued on TCP goes out before we close.
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.flush(id);
            self.close(core, id, Why::Shutdown);
        }
        Ok(())
    }

    /// Reads UDP until WouldBlock or the budget; returns whether the
    /// budget ran out.
    fn read_udp(&mut self, core: &mut SipCore) -> bool {
        for _ in 0..READ_BUDGET {
            match self.sock.recv_from(&mut self.buf) {
                Ok((n, src)) => {
                    core.handle_message(&self.buf[..n], Source::udp(src), Instant::now())
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. ECONNREFUSED left by an ICMP error: not fatal.
                    debug!(error = %e, "recv_from");
                    continue;
                }
            }
        }
        true
    }

    fn accept(&mut self) {
        // Bounded: the backlog is finite; at most 4096 per wakeup.
        for _ in 0..4096 {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if self.conns.len() >= self.cfg.max_connections {
                        self.stats.tcp_refused += 1;
                        peer_warn!(self, %peer, max = self.cfg.max_connections, "TCP connection refused: too many connections");
                        drop(stream);
                        continue;
                    }
                    self.stats.tcp_accepted += 1;
                    if let Some(id) = self.add_conn(stream, peer, false) {
                        debug!(%peer, conn = id.0, "TCP connection accepted");
                        // Data may already be waiting.
                        self.readable.insert(id);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: try again on the next wakeup.
                    warn!(error = %e, "TCP accept failed");
                    return;
                }
            }
        }
    }

    fn add_conn(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        connecting: bool,
    ) -> Option<ConnId> {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token_of(id),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!(%peer, error = %e, "cannot register TCP connection");
            return None;
        }
        let _ = stream.set_nodelay(true);
        self.conns.insert(
            id,
            Conn {
                stream,
                peer,
                framer: Framer::new(self.cfg.max_message),
                wbuf: Vec::new(),
                wpos: 0,
                last_active: Instant::now(),
                connecting,
                close_after_flush: false,
            },
        );
        self.by_peer.insert(peer, id);
        Some(id)
    }

    fn read_conn(&mut self, core: &mut SipCore, id: ConnId) {
        let chunk = self.cfg.max_message.min(self.buf.len());
        for i in 0..=TCP_READ_BUDGET {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.connecting || c.close_after_flush {
                return;
            }
            if i == TCP_READ_BUDGET {
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
                    debug!(conn = id.0, error = %e, "TCP read");
                    self.close(core, id, Why::Error);
                    return;
                }
            };
            c.last_active = Instant::now();
            c.framer.push(&self.buf[..n]);
            let peer = c.peer;
            // Bounded: each frame consumes bytes of the buffer.
            loop {
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                match c.framer.next_frame() {
                    Ok(None) => break,
                    Ok(Some(Frame::Message(m))) => {
                        self.stats.tcp_messages += 1;
                        core.handle_message(&m, Source::tcp(id, peer), Instant::now());
                        // Answers go out now, in order with later pongs.
                        self.flush_core(core);
                    }
                    Ok(Some(Frame::Ping)) => {
                        self.stats.tcp_keepalives += 1;
                        self.queue(core, id, PONG);
                    }
                    Err(FrameError::TooLong { limit }) => {
                        peer_warn!(self, %peer, limit, "TCP message over the bound; closing the connection");
                        self.close(core, id, Why::Oversize);
                        return;
                    }
                    Err(
                        e @ (FrameError::NoContentLength { .. }
                        | FrameError::BadContentLength { .. }),
                    ) => {
                        let why = e.to_string();
                        let head = match e {
                            FrameError::NoContentLength { head }
                            | FrameError::BadContentLength { head, .. } => head,
                            FrameError::TooLong { .. } => Vec::new(),
                        };
                        peer_warn!(self, %peer, %why, "TCP framing lost; answering 400 and closing");
                        core.handle_unframed(&head, Source::tcp(id, peer), &why, Instant::now());
                        if let Some(c) = self.conns.get_mut(&id) {
                            c.close_after_flush = true;
                        }
                        self.flush_core(core);
                        self.finish_close(core, id);
                        return;
                    }
                }
            }
        }
    }

    /// Sends everything the core queued.
    fn flush_core(&mut self, core: &mut SipCore) {
        // Retry UDP datagrams that met a full socket buffer first.
        while let Some((dest, bytes)) = self.pending.pop_front() {
            if !self.send_udp(dest, bytes) {
                break;
            }
        }
        while let Some(t) = core.poll_output() {
            match t.transport {
                Transport::Udp => {
                    if !self.pending.is_empty() {
                        self.push_pending(t.dest, t.bytes);
                    } else {
                        self.send_udp(t.dest, t.bytes);
                    }
                }
                Transport::Tcp(id) => {
                    let mut dest = t.dest;
                    let live = match self.conns.get(&id) {
                        Some(c) if id != ConnId::ANY && c.peer == dest => Some(id),
                        _ => self.by_peer.get(&dest).copied(),
                    };
                    let id = match live {
                        Some(id) => Some(id),
                        None => {
                            // §18.2.2: a response whose connection is gone
                            // goes to the received IP and the sent-by port.
                            if t.bytes.starts_with(b"SIP/2.0 ") {
                                dest.set_port(top_via_port(&t.bytes).unwrap_or(5060));
                            }
                            match self.by_peer.get(&dest) {
                                Some(&id) => Some(id),
                                None => self.connect(dest),
                            }
                        }
                    };
                    match id {
                        Some(id) => self.queue(core, id, &t.bytes),
                        None => {
                            self.stats.tcp_send_failed += 1;
                            debug!(%dest, "no TCP connection; message dropped");
                            core.transport_failed(dest, Instant::now());
                        }
                    }
                }
            }
        }
    }

    /// Sends a datagram; returns false (and keeps it) on WouldBlock.
    fn send_udp(&mut self, dest: SocketAddr, bytes: Vec<u8>) -> bool {
        match self.sock.send_to(&bytes, dest) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Wait for WRITABLE; keep the datagram.
                self.pending.push_front((dest, bytes));
                false
            }
            Err(e) => {
                peer_warn!(self, %dest, error = %e, "send_to failed; datagram dropped");
                true
            }
        }
    }

    fn push_pending(&mut self, dest: SocketAddr, bytes: Vec<u8>) {
        if self.pending.len() < MAX_UDP_PENDING {
            self.pending.push_back((dest, bytes));
        } else {
            peer_warn!(self, %dest, "UDP send queue full; datagram dropped");
        }
    }

    /// Opens a connection to `dest` (RFC 3261 §18.1.1).
    fn connect(&mut self, dest: SocketAddr) -> Option<ConnId> {
        if self.conns.len() >= self.cfg.max_connections {
            self.stats.tcp_refused += 1;
            peer_warn!(self, %dest, "TCP connection not opened: too many connections");
            return None;
        }
        match TcpStream::connect(dest) {
            Ok(stream) => {
                self.stats.tcp_connected += 1;
                let id = self.add_conn(stream, dest, true)?;
                debug!(%dest, conn = id.0, "TCP connecting");
                Some(id)
            }
            Err(e) => {
                peer_warn!(self, %dest, error = %e, "TCP connect failed");
                None
            }
        }
    }

    /// Appends `bytes` to the connection's output and writes what it can.
    fn queue(&mut self, core: &mut SipCore, id: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.wbuf.len() - c.wpos + bytes.len() > MAX_WRITE_BUFFER {
            let peer = c.peer;
            peer_warn!(self, %peer, "TCP peer does not read; closing the connection");
            self.close(core, id, Why::WriteOverflow);
            return;
        }
        c.wbuf.extend_from_slice(bytes);
        if !c.connecting {
            self.flush(id);
        }
    }

    /// Writes until the buffer is empty or the socket is full; returns
    /// false on a write error (the caller closes).
    fn flush(&mut self, id: ConnId) -> bool {
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
                    debug!(peer = %c.peer, error = %e, "TCP write");
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

    fn on_writable(&mut self, core: &mut SipCore, id: ConnId) {
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
        self.finish_close(core, id);
    }

    /// Closes a connection marked close-after-flush once its output is out.
    fn finish_close(&mut self, core: &mut SipCore, id: ConnId) {
        if let Some(c) = self.conns.get(&id) {
            if c.close_after_flush && c.wpos >= c.wbuf.len() {
                self.close(core, id, Why::Unframed);
            }
        }
    }

    fn sweep_idle(&mut self, core: &mut SipCore, now: Instant) {
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
            self.close(core, id, Why::Idle);
        }
    }

    fn close(&mut self, core: &mut SipCore, id: ConnId, why: Why) {
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        if self.by_peer.get(&c.peer) == Some(&id) {
            self.by_peer.remove(&c.peer);
        }
        self.readable.remove(&id);
        self.stats.tcp_closed += 1;
        match why {
            Why::Idle => self.stats.tcp_idle_closed += 1,
            Why::Oversize => self.stats.tcp_oversize += 1,
            Why::Unframed => self.stats.tcp_unframed += 1,
            Why::WriteOverflow => self.stats.tcp_write_overflow += 1,
            Why::PeerClosed | Why::Error | Why::Shutdown => {}
        }
        debug!(peer = %c.peer, conn = id.0, ?why, "TCP connection closed");
        core.connection_closed(id, Instant::now());
        if c.connecting {
            // Never connected: what was sent its way cannot arrive.
            core.transport_failed(c.peer, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for id in [1u64, 2, 1000] {
            let t = token_of(ConnId(id));
            assert!(t != UDP && t != LISTENER);
            assert_eq!(conn_of(t), ConnId(id));
        }
    }
}
