//! The transport: a `mio` loop around [`SipCore`], with UDP and TCP on the
//! same port (RFC 3261 §18), and TLS, WebSocket and secure WebSocket
//! listeners when configured ([`SipConfig::tls`], `ws`, `wss`). The only
//! place that owns sockets and reads the clock.
//!
//! - UDP: one datagram, one message.
//! - Streams (`crate::conns`): accepted and outgoing TCP connections and
//!   accepted TLS/WS/WSS ones, each decoded by a
//!   [`crate::stream::StreamCodec`] bounded to
//!   [`TransportConfig::max_message`] bytes; at most
//!   [`TransportConfig::max_connections`] in all and
//!   [`TransportConfig::max_per_source`] per IP, closed after
//!   [`TransportConfig::idle_timeout`] without traffic. Responses go back
//!   on the connection of their request; requests to a TCP contact reuse a
//!   connection to it or open one; a TLS/WS/WSS peer is reached only over
//!   its own connection.
//! - Guard ([`crate::guard`], [`TransportConfig::guard`]): every UDP
//!   datagram and stream message passes the `allow`/`deny` lists and the
//!   per-source rate limit before the core; over the rate, UDP requests
//!   are dropped and stream requests answered 503.
//! - Drain ([`Server::with_drain`]): once the flag is set, new INVITEs get
//!   503 with `Retry-After`, calls in progress run to their end, and
//!   [`Server::serve`] returns when none is left or after
//!   [`TransportConfig::drain`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use tracing::{debug, info, warn};

use crate::config::SipConfig;
pub use crate::config::TransportConfig;
use crate::conns::{conn_of, peer_warn, Loop, FIRST_CONN_TOKEN};
use crate::core::SipCore;
use crate::guard::Admit;
use crate::relay::MediaRelay;
use crate::stream::StreamKind;
use crate::tls::TlsIdentity;
pub use crate::transport::TransportStats;
use crate::transport::{top_via_port, ConnId, Source};
use crate::SipError;

pub(crate) const UDP: Token = Token(0);
pub(crate) const LISTENER: Token = Token(1);

/// Longest wait in `poll`, so a shutdown request is noticed quickly.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Datagrams read per wakeup before timers and sends get their turn.
const READ_BUDGET: usize = 256;
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
    /// TLS, WS and WSS listeners that are configured, with their bound
    /// addresses.
    secure: Vec<(StreamKind, TcpListener, SocketAddr)>,
    tls: Option<TlsIdentity>,
    snapshot: Option<crate::snapshot::SharedSnapshot>,
    transport: TransportConfig,
    drain: Option<Arc<AtomicBool>>,
}

/// Receive and send buffer asked for the UDP socket, bytes.
const UDP_BUFFER_BYTES: usize = 4 << 20;

impl Server {
    /// Validates `config` and binds UDP and TCP on its address (with port
    /// 0 a port free for both is picked, up to 20 tries), then the TLS,
    /// WS and WSS listeners it names. TLS and WSS use the configured
    /// certificate, else a self-signed one made now, whose fingerprint is
    /// logged.
    ///
    /// Errors: [`SipError::Config`], [`SipError::Bind`], [`SipError::Io`],
    /// [`SipError::Tls`].
    pub fn bind(config: SipConfig) -> Result<Server, SipError> {
        let (sock, listener, bound) = bind_udp_tcp(&config)?;
        let tls = if config.tls.is_some() || config.wss.is_some() {
            let names = vec![config.listen.ip().to_string(), "localhost".to_string()];
            let id = TlsIdentity::load_or_generate(
                config.tls_cert.as_deref(),
                config.tls_key.as_deref(),
                &names,
            )
            .map_err(SipError::Tls)?;
            if id.self_signed {
                info!(fingerprint = %id.fingerprint, "no [sip] tls_cert: made a self-signed TLS certificate (sha-256)");
            } else {
                info!(fingerprint = %id.fingerprint, "TLS certificate loaded (sha-256)");
            }
            Some(id)
        } else {
            None
        };
        let mut secure = Vec::new();
        for (kind, addr) in [
            (StreamKind::Tls, config.tls),
            (StreamKind::Ws, config.ws),
            (StreamKind::Wss, config.wss),
        ] {
            let Some(addr) = addr else { continue };
            let l = TcpListener::bind(addr).map_err(|e| SipError::Bind(addr, e))?;
            let at = l.local_addr().map_err(SipError::Io)?;
            secure.push((kind, l, at));
        }
        Ok(Server {
            config,
            sock,
            listener,
            bound,
            secure,
            tls,
            snapshot: None,
            transport: TransportConfig::default(),
            drain: None,
        })
    }

    /// The bound TLS, WS and WSS listeners, in that order (those that are
    /// configured).
    pub fn stream_listeners(&self) -> Vec<(StreamKind, SocketAddr)> {
        self.secure.iter().map(|(k, _, a)| (*k, *a)).collect()
    }

    /// The TLS identity of the TLS and WSS listeners (`None` when neither
    /// is configured).
    pub fn tls_identity(&self) -> Option<&TlsIdentity> {
        self.tls.as_ref()
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
            mut secure,
            tls,
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
        for (kind, l, _) in secure.iter_mut() {
            poll.registry()
                .register(l, Token(LISTENER.0 + kind.index()), Interest::READABLE)
                .map_err(SipError::Io)?;
        }
        let listeners: Vec<String> = secure
            .iter()
            .map(|(k, _, a)| format!("{}:{a}", k.name()))
            .collect();
        info!(
            listen = %bound,
            advertised = %core.local_addr(),
            realm = %config.realm,
            users = config.users.len(),
            max_tcp = transport.max_connections,
            streams = %listeners.join(" "),
            "SIP signaling up (UDP and TCP)"
        );
        let guard = crate::guard::Guard::new(transport.guard.clone());
        // Gateway names (RFC 3263) are resolved on a thread of their own.
        let named = config
            .trunks
            .iter()
            .flat_map(|t| &t.gateways)
            .any(|g| matches!(g, crate::trunk::Gateway::Name { .. }));
        let dns = if named {
            match crate::dns::spawn(config.dns) {
                Ok(w) => Some(w),
                Err(e) => {
                    warn!(error = %e, "no DNS resolver: trunk gateway names stay unresolved");
                    None
                }
            }
        } else {
            None
        };
        let mut l = Loop {
            poll,
            sock,
            listener,
            secure: secure.into_iter().map(|(k, l, _)| (k, l)).collect(),
            tls: tls.map(|t| t.config),
            cfg: transport,
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            per_source: HashMap::new(),
            next_conn: 1,
            pending: VecDeque::new(),
            readable: HashSet::new(),
            stats: TransportStats::default(),
            buf: Vec::new(),
            next_warn: Instant::now(),
            guard,
            dns,
        };
        l.buf = vec![0u8; l.cfg.max_message.max(65_536)];
        let r = l.run(&mut core, &shutdown, drain.as_deref(), snap);
        info!(calls = core.calls(), stats = ?core.stats(), transport = ?l.stats, "SIP signaling stopped");
        r
    }
}

/// Validates `config` and binds UDP and TCP on one port (see
/// [`Server::bind`]).
fn bind_udp_tcp(config: &SipConfig) -> Result<(UdpSocket, TcpListener, SocketAddr), SipError> {
    config.validate().map_err(SipError::Config)?;
    let tries = if config.listen.port() == 0 { 20 } else { 1 };
    let mut last_err = None;
    for _ in 0..tries {
        let sock = UdpSocket::bind(config.listen).map_err(|e| SipError::Bind(config.listen, e))?;
        // Room for bursts while this thread is off the CPU: the
        // default (rmem_default, ~200 KiB) holds ~100 datagrams, a few
        // ms at 1,000 calls/s. Best effort: the kernel caps it at
        // net.core.rmem_max / wmem_max.
        let so = socket2::SockRef::from(&sock);
        let _ = so.set_recv_buffer_size(UDP_BUFFER_BYTES);
        let _ = so.set_send_buffer_size(UDP_BUFFER_BYTES);
        // ICMP errors to the error queue, read in `read_udp`.
        crate::icmp::enable(&sock, config.listen.is_ipv6());
        let bound = sock.local_addr().map_err(SipError::Io)?;
        match TcpListener::bind(bound) {
            Ok(listener) => return Ok((sock, listener, bound)),
            Err(e) => last_err = Some((bound, e)),
        }
    }
    let (addr, e) = last_err.unwrap_or((
        config.listen,
        io::Error::new(io::ErrorKind::AddrInUse, "no port free for UDP and TCP"),
    ));
    Err(SipError::Bind(addr, e))
}

impl Loop {
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
                    LISTENER => self.accept(StreamKind::Tcp),
                    t if t.0 < FIRST_CONN_TOKEN => {
                        if let Some(kind) = StreamKind::ALL.get(t.0 - LISTENER.0) {
                            self.accept(*kind);
                        }
                    }
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
            self.exchange_dns(core, now);
            core.handle_timeout(now);
            if now >= next_sweep {
                self.sweep(core, now);
                next_sweep = now + Duration::from_secs(1);
            }
            core.set_transport_stats(self.stats);
            if let Some(p) = snap.as_mut() {
                p.tick(core, now);
            }
            self.flush_core(core);
        }
        // Best effort: what is queued on streams goes out before we close.
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.close_gracefully(id);
            self.close(core, id, crate::conns::Why::Shutdown);
        }
        Ok(())
    }

    /// Reads UDP until WouldBlock or the budget; returns whether the
    /// budget ran out.
    fn read_udp(&mut self, core: &mut SipCore) -> bool {
        for _ in 0..READ_BUDGET {
            match self.sock.recv_from(&mut self.buf) {
                Ok((n, src)) => {
                    let now = Instant::now();
                    let data = &self.buf[..n];
                    let known = |id: &str| core.b2bua().has_call_id(id);
                    // Over the rate on UDP: dropped, not answered (an
                    // answer would amplify a flood; see crate::guard).
                    match self.guard.check(src.ip(), data, known, now) {
                        Admit::Pass => core.handle_message(data, Source::udp(src), now),
                        Admit::Limited => self.stats.guard_rate_limited += 1,
                        Admit::Denied => self.stats.guard_denied += 1,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // An ICMP error (ECONNREFUSED, EHOSTUNREACH): the
                    // queue names the destination, whose transactions
                    // fail now (RFC 3261 §18.4) rather than at Timer B.
                    debug!(error = %e, "recv_from");
                    let now = Instant::now();
                    for err in crate::icmp::take_errors(&self.sock) {
                        debug!(dest = %err.dest, errno = err.errno, "ICMP error");
                        self.stats.icmp_errors += 1;
                        core.transport_failed(err.dest, now);
                    }
                    continue;
                }
            }
        }
        true
    }

    /// Sends everything the core queued.
    pub(crate) fn flush_core(&mut self, core: &mut SipCore) {
        // Retry UDP datagrams that met a full socket buffer first.
        while let Some((dest, bytes)) = self.pending.pop_front() {
            if !self.send_udp(dest, bytes) {
                break;
            }
        }
        while let Some(t) = core.poll_output() {
            let Some(id) = t.transport.conn() else {
                if !self.pending.is_empty() {
                    self.push_pending(t.dest, t.bytes);
                } else {
                    self.send_udp(t.dest, t.bytes);
                }
                continue;
            };
            let mut dest = t.dest;
            let live = match self.conns.get(&id) {
                Some(c) if id != ConnId::ANY && c.peer == dest => Some(id),
                _ => self.by_peer.get(&dest).copied(),
            };
            let id = match live {
                Some(id) => Some(id),
                // A TLS/WS/WSS peer is reached over its own connection
                // only: browsers cannot be connected to (RFC 7118 §5).
                None if t.transport.is_flow() => None,
                None => {
                    // §18.2.2: a response whose connection is gone goes
                    // to the received IP and the sent-by port.
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
                    debug!(%dest, transport = t.transport.name(), "no connection; message dropped");
                    core.transport_failed(dest, Instant::now());
                }
            }
        }
    }

    /// Hands the core's DNS queries to the resolver thread and its
    /// answers to the core.
    fn exchange_dns(&mut self, core: &mut SipCore, now: Instant) {
        let Some(w) = self.dns.as_ref() else { return };
        while let Some(q) = core.poll_dns(now) {
            if w.queries.send(q).is_err() {
                warn!("DNS resolver thread gone");
                self.dns = None;
                return;
            }
        }
        while let Ok(a) = w.answers.try_recv() {
            core.dns_answer(a, now);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conns::token_of;

    #[test]
    fn tokens_round_trip() {
        for id in [1u64, 2, 1000] {
            let t = token_of(ConnId(id));
            assert!(t.0 >= FIRST_CONN_TOKEN);
            assert_eq!(conn_of(t), ConnId(id));
        }
        for k in StreamKind::ALL {
            assert!(LISTENER.0 + k.index() < FIRST_CONN_TOKEN);
        }
    }
}
