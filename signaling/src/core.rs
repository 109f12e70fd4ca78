//! The sans-IO signaling core: datagrams and a clock go in, datagrams and
//! deadlines come out. Only the server (`crate::server`) owns a socket and reads the
//! clock; tests drive [`SipCore`] on a virtual clock.
//!
//! ```text
//! handle_message(bytes, src, now) ──┐
//! handle_timeout(now) ──────────────┼─> poll_output()  -> Transmit
//! connection_closed(conn, now) ─────┘   poll_timeout() -> next deadline
//! ```
//!
//! [`Source`] and [`Transmit`] carry the transport: UDP or a TCP
//! connection; [`crate::transport::Links`] picks it for each destination (responses on the
//! request's connection, RFC 3261 §18.2.2).
//!
//! The core is the registrar, the digest authenticator and the router of
//! new calls; calls themselves belong to the [`B2bua`], which the core
//! drives through `Tu`: for each message or timer it lends the B2BUA
//! the configuration, the relay, the `Outbox` and the
//! `Retransmitter` (the retransmission engine: RFC 3261 §17 state
//! machines and the §13.3.1.4 2xx timer, one per message). Matching
//! responses to retransmitted messages is the B2BUA's job (by Call-ID and
//! CSeq), which stops them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tracing::{debug, info, warn};

use crate::b2bua::{B2bua, Side, Target};
use crate::build::{response_salvaged, OutMsg};
use crate::config::SipConfig;
use crate::digest::{self, NonceSource};
use crate::method::Method;
use crate::msg::{self, Msg, ParseError};
use crate::outbox::{self, Outbox};
use crate::registrar::{self, ExpiryPolicy, LocationService, MemoryLocation, RegisterResult};
use crate::relay::MediaRelay;
use crate::retransmit::{Retransmitter, TimerEv};
use crate::transport::{ConnId, Source, Transmit, TransportStats};
use crate::tu::Tu;

pub use crate::method::ALLOW;
pub use crate::stats::CoreStats;

/// The signaling core: registrar, digest auth and B2BUA, sans-IO.
pub struct SipCore {
    pub(crate) cfg: SipConfig,
    /// Our address for Via and Contact.
    pub(crate) local: SocketAddr,
    pub(crate) ha1: HashMap<String, digest::Ha1>,
    pub(crate) nonces: NonceSource,
    /// Every random choice of the core and its TU comes from here.
    pub(crate) rng: StdRng,
    pub(crate) loc: Box<dyn LocationService>,
    pub(crate) relay: Box<dyn MediaRelay>,
    /// What goes out, and the transport of each destination.
    pub(crate) out: Outbox,
    /// While draining for shutdown: `Retry-After` seconds of the 503 that
    /// new INVITEs get.
    draining: Option<u32>,
    /// The transport's counters, as last handed in.
    transport_stats: TransportStats,
    /// Timers and retransmissions.
    rt: Retransmitter,
    /// The calls.
    pub(crate) b2bua: B2bua,
    pub(crate) stats: CoreStats,
    next_purge: Instant,
    /// Trunk registrations, gateway names and probes (`crate::trunk_plane`).
    pub(crate) trunks: crate::trunk_plane::TrunkPlane,
    /// A drain began: registered trunks un-REGISTER at the next timeout.
    pub(crate) unregister_due: bool,
}

impl std::fmt::Debug for SipCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipCore")
            .field("local", &self.local)
            .field("calls", &self.b2bua.calls())
            .field("stats", &self.stats)
            .finish()
    }
}

impl SipCore {
    /// A core serving `config`, anchoring media on `relay`, reachable at
    /// `local` (the bound socket address; a wildcard IP is replaced by
    /// `config.advertise` or the relay's media IP). `now` starts the clock
    /// of nonces and timers. HA1 values are computed here from the users'
    /// passwords; the passwords are not kept.
    pub fn new(
        config: &SipConfig,
        relay: Box<dyn MediaRelay>,
        local: SocketAddr,
        now: Instant,
    ) -> SipCore {
        SipCore::with_rng(config, relay, local, now, StdRng::from_entropy())
    }

    /// [`SipCore::new`] drawing every random value (digest secret and nonce
    /// salts, tags, branches, Call-IDs, SSRCs) from `rng`, as quinn takes
    /// `rng_seed`: `StdRng::seed_from_u64(n)` makes a run repeatable.
    pub fn with_rng(
        config: &SipConfig,
        relay: Box<dyn MediaRelay>,
        local: SocketAddr,
        now: Instant,
        mut rng: StdRng,
    ) -> SipCore {
        let mut local = local;
        if local.ip().is_unspecified() {
            local.set_ip(config.advertise.unwrap_or_else(|| relay.media_ip()));
        }
        let ha1 = config
            .users
            .iter()
            .map(|u| (u.name.clone(), u.ha1(&config.realm)))
            .collect();
        let mut cfg = config.clone();
        // Only the HA1 map is kept; release the users table too.
        cfg.users = Vec::new();
        SipCore {
            nonces: NonceSource::with_rng(now, cfg.nonce_ttl, cfg.nonce_capacity, &mut rng),
            rng,
            cfg,
            local,
            ha1,
            loc: Box::new(MemoryLocation::with_epoch(now)),
            relay,
            out: Outbox::new(),
            draining: None,
            transport_stats: TransportStats::default(),
            rt: Retransmitter::new(),
            b2bua: B2bua::new(),
            stats: CoreStats::default(),
            next_purge: now + Duration::from_secs(30),
            trunks: crate::trunk_plane::TrunkPlane::new(&config.trunks, now),
            unregister_due: false,
        }
    }

    /// Replaces the location service (default: in memory).
    pub fn with_location(mut self, loc: Box<dyn LocationService>) -> SipCore {
        self.loc = loc;
        self
    }

    /// The address in our Via and Contact headers.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Counters.
    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    /// Calls that still hold state (including finished ones lingering to
    /// absorb retransmissions).
    pub fn calls(&self) -> usize {
        self.b2bua.calls()
    }

    /// Calls holding a relay slot.
    pub fn active_calls(&self) -> usize {
        self.b2bua.active_calls()
    }

    /// The calls (e.g. for listings).
    pub fn b2bua(&self) -> &B2bua {
        &self.b2bua
    }

    /// The B2BUA and the transaction-user interface lent to it, borrowed
    /// from disjoint fields.
    pub(crate) fn tu(&mut self) -> (&mut B2bua, Tu<'_>) {
        (
            &mut self.b2bua,
            Tu {
                cfg: &self.cfg,
                local: self.local,
                relay: &mut *self.relay,
                out: &mut self.out,
                rt: &mut self.rt,
                stats: &mut self.stats,
                rng: &mut self.rng,
            },
        )
    }

    /// Hands every retransmission that ran out of time to the B2BUA.
    fn run_expired(&mut self, now: Instant) {
        while let Some(k) = self.rt.take_expired() {
            let (b2bua, mut tu) = self.tu();
            b2bua.on_retrans_timeout(&mut tu, k, now);
        }
    }

    /// The location service (registrations), e.g. for listings.
    pub fn location(&self) -> &dyn LocationService {
        self.loc.as_ref()
    }

    /// Next message to send: destination and bytes, whatever the
    /// transport (for UDP-only drivers and tests; see
    /// [`SipCore::poll_output`]).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop().map(|t| (t.dest, t.bytes))
    }

    /// Next message to send, with its transport: UDP, the TCP connection a
    /// request came in on (its responses, RFC 3261 §18.2.2), or
    /// `Tcp(ConnId::ANY)` for a request to a TCP contact or one larger
    /// than [`crate::transport::MAX_UDP_REQUEST`] bytes (any connection to
    /// the destination, or a new one, §18.1.1).
    pub fn poll_output(&mut self) -> Option<Transmit> {
        self.out.pop()
    }

    /// Stops accepting calls (`Some(retry_after)`, seconds) or accepts
    /// them again (`None`). While draining, a new INVITE (no To tag, no
    /// known Call-ID) is answered 503 with `Retry-After`; requests within
    /// existing dialogs (BYE, re-INVITE, ACK) and other methods are served.
    pub fn set_draining(&mut self, retry_after: Option<u32>) {
        // Registered trunks un-REGISTER at the next timeout (core_trunk.rs).
        self.unregister_due =
            retry_after.is_some() && self.draining.is_none() && self.trunks.registering();
        self.draining = retry_after;
    }

    /// Whether no call needs the process any more: none holds a relay
    /// slot (in setup or up) and no BYE or CANCEL of ours still awaits its
    /// response (final responses waiting out timer I are not waited for).
    pub fn drained(&self) -> bool {
        self.active_calls() == 0 && !self.rt.ending_calls() && !self.unregistering()
    }

    /// Keeps a copy of the transport's counters (the server hands them in
    /// every loop), so observers of the core see them.
    pub fn set_transport_stats(&mut self, stats: TransportStats) {
        self.transport_stats = stats;
    }

    /// The transport a message to `addr` would take now (its live
    /// connection, a TCP target, or UDP).
    pub fn transport_to(&self, addr: SocketAddr) -> crate::transport::Transport {
        self.out.links.route(addr)
    }

    /// The transport's counters as last handed in (zero without a server).
    pub fn transport_stats(&self) -> TransportStats {
        self.transport_stats
    }

    /// The transport closed TCP connection `conn` (peer gone, idle, or
    /// framing lost). Its peer is then reached over a new connection.
    pub fn connection_closed(&mut self, conn: ConnId, now: Instant) {
        self.out.links.closed(conn, now);
    }

    /// The transport could not reach `dest` (an outgoing TCP connect was
    /// refused or timed out): our requests in flight to it end now, as if
    /// their Timer B/F had fired (RFC 3261 §17.1.1.2, §17.1.2.2; an
    /// INVITE's caller gets 408) — unless `dest` was tried over TCP only
    /// because a request was too large for UDP (§18.1.1): then they are
    /// resent over UDP at their next timer.
    pub fn transport_failed(&mut self, dest: SocketAddr, now: Instant) {
        use crate::trunk_health::Failure;
        self.b2bua.gateways.failed(dest, Failure::Transport, now);
        if self.out.links.tcp_failed(dest, now) {
            // TCP only for a large request's sake (§18.1.1): retry over
            // UDP. The transactions keep running; their next timer A/E
            // resends over UDP, as will later large requests for a while.
            debug!(%dest, "TCP for a large request failed: UDP instead");
            return;
        }
        for k in self.rt.requests_to(dest) {
            if self.rt.stop(k) {
                debug!(%dest, key = ?k, "transport error: transaction ends");
                let (b2bua, mut tu) = self.tu();
                b2bua.on_retrans_timeout(&mut tu, k, now);
            }
        }
    }

    /// A stream message that could not be framed (RFC 3261 §18.3: no or a
    /// bad Content-Length): `head` is its header section. A request is
    /// answered 400 on the same connection (the transport then closes it);
    /// anything else is dropped. Counted in [`CoreStats::unframed`].
    pub fn handle_unframed(&mut self, head: &[u8], src: Source, why: &str, now: Instant) {
        let _ = now;
        self.stats.unframed += 1;
        self.out.links.begin(src);
        match msg::parse(head) {
            Ok(m) if m.method().is_some() => {
                debug!(src = %src.addr, %why, "unframed stream request answered 400");
                self.reply(&m, 400, src.addr, |r| r);
            }
            Err(ParseError::BadRequest { salvage, .. }) => {
                if let Some(r) = response_salvaged(&salvage, 400) {
                    let r = r.header("Server", self.cfg.user_agent.clone());
                    self.out.send(src.addr, r.to_bytes());
                }
            }
            _ => debug!(src = %src.addr, %why, "unframed stream message dropped"),
        }
        self.out.links.end();
    }

    /// The earliest instant at which [`SipCore::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.rt.next_deadline();
        let t = t.map_or(self.next_purge, |t| t.min(self.next_purge));
        Some(self.trunk_deadline().map_or(t, |u| u.min(t)))
    }

    /// Handles one received UDP datagram from `src` at `now`.
    pub fn handle_datagram(&mut self, data: &[u8], src: SocketAddr, now: Instant) {
        self.handle_message(data, Source::udp(src), now);
    }

    /// Handles one received message at `now`: a UDP datagram, or one
    /// message framed from a TCP stream (`crate::tcp::Framer`). What it
    /// causes to be sent back to `src.addr` goes on `src.transport`.
    pub fn handle_message(&mut self, data: &[u8], source: Source, now: Instant) {
        self.out.links.begin(source);
        self.handle_parsed(data, source, now);
        self.run_expired(now);
        self.out.links.end();
    }

    /// Answers a request over its source's rate limit 503 with
    /// `Retry-After` (streams; see [`crate::guard`]); an ACK, a response
    /// or an unparsable message gets nothing.
    pub fn refuse_overloaded(&mut self, data: &[u8], source: Source, retry_after: u32) {
        let Ok(req) = msg::parse(data) else { return };
        if req.method().is_none() || req.request_method() == Some(Method::Ack) {
            return;
        }
        self.out.links.begin(source);
        self.reply(&req, 503, source.addr, |r| {
            r.header("Retry-After", retry_after.to_string())
        });
        self.out.links.end();
    }

    fn handle_parsed(&mut self, data: &[u8], source: Source, now: Instant) {
        let src = source.addr;
        self.stats.datagrams += 1;
        match msg::parse(data) {
            Ok(m) => {
                if m.request_method() == Some(Method::Register) {
                    let before = self.stats.registrations;
                    let contacts = m.contacts();
                    self.on_request(m, src, now);
                    if self.stats.registrations > before {
                        self.note_tcp_contacts(&contacts, src, now);
                        if source.transport.is_flow() {
                            let life = Duration::from_secs(u64::from(self.cfg.max_expires));
                            self.out.links.add_flow(src, source.transport, now + life);
                        }
                    }
                } else if m.method().is_some() {
                    self.on_request(m, src, now);
                } else {
                    self.on_response(m, src, now);
                }
            }
            Err(ParseError::KeepAlive) => {}
            Err(ParseError::BadRequest {
                status,
                detail,
                salvage,
            }) => match response_salvaged(&salvage, status) {
                Some(r) => {
                    self.stats.malformed_requests += 1;
                    debug!(%src, status, %detail, "malformed request answered");
                    let r = r.header("Server", self.cfg.user_agent.clone());
                    self.out.send(src, r.to_bytes());
                }
                None => {
                    self.stats.dropped_requests += 1;
                    debug!(%src, %detail, "malformed request without Via dropped");
                }
            },
            Err(ParseError::Drop { detail }) => {
                self.stats.malformed_responses += 1;
                debug!(%src, %detail, "malformed message dropped");
            }
        }
    }

    /// Remembers the targets of Contacts registered with `;transport=tcp`
    /// (RFC 3261 §19.1.1), so requests to them go over TCP, for as long as
    /// a registration can last.
    fn note_tcp_contacts(&mut self, contacts: &[msg::NameAddr], src: SocketAddr, now: Instant) {
        for c in contacts {
            let tcp = c.uri.split(';').skip(1).any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("transport")
                        && v.trim().eq_ignore_ascii_case("tcp")
                })
            });
            if tcp {
                let target = registrar::route_target(&c.uri, src);
                let life = Duration::from_secs(u64::from(self.cfg.max_expires));
                self.out.links.add_target(target, now + life);
            }
        }
    }

    /// Runs every timer due at `now` (retransmissions, timeouts, purges).
    pub fn handle_timeout(&mut self, now: Instant) {
        // Bounded: each step pops one timer; new ones are strictly later.
        for _ in 0..100_000 {
            let Some((key, ev)) = self.rt.pop_due(now) else {
                break;
            };
            match ev {
                TimerEv::Retrans(k) => {
                    self.rt.fire(k, key, now, &mut self.out);
                    self.run_expired(now);
                }
                TimerEv::TimerC(id) => {
                    let (b2bua, mut tu) = self.tu();
                    b2bua.on_timer_c(&mut tu, id, key.0, now);
                }
                TimerEv::Linger(id) => {
                    let (b2bua, mut tu) = self.tu();
                    b2bua.on_linger(&mut tu, id, key.0);
                }
                TimerEv::SessionExpiry(id) => {
                    let (b2bua, mut tu) = self.tu();
                    b2bua.on_session_expiry(&mut tu, id, key.0, now);
                }
                TimerEv::TransferBye(id) => {
                    let (b2bua, mut tu) = self.tu();
                    b2bua.on_transfer_bye_due(&mut tu, id, key.0, now);
                }
            }
        }
        self.trunk_timeout(now);
        if now >= self.next_purge {
            let n = self.loc.purge(now);
            if n > 0 {
                debug!(expired = n, "registrations purged");
            }
            self.out.links.purge(now);
            self.next_purge = now + Duration::from_secs(30);
        }
    }

    /// RFC 5630 §4.1 / RFC 3261 §26.2.2: a request for a `sips:`
    /// Request-URI must arrive over TLS or WSS; else it is answered 416
    /// with a Warning and `false` returned.
    fn sips_ok(&mut self, req: &Msg, src: SocketAddr) -> bool {
        if req.uri_scheme().as_deref() != Some("sips") {
            return true;
        }
        let secure = self
            .out
            .links
            .current()
            .is_some_and(|s| s.addr == src && s.transport.is_secure());
        if !secure {
            debug!(call_id = %req.call_id, %src, "sips: request over a plain transport");
            self.reply(req, 416, src, |r| {
                r.header("Warning", "399 tern \"sips: needs TLS or WSS\"")
            });
        }
        secure
    }

    /// Builds a response to `req` with our Server header.
    pub(crate) fn response(
        &self,
        req: &Msg,
        code: u16,
        to_tag: Option<&str>,
        src: SocketAddr,
    ) -> OutMsg {
        outbox::response(&self.cfg.user_agent, req, code, to_tag, src)
    }

    /// Sends a stateless response (To tag derived from the request, so a
    /// retransmitted request gets the same tag).
    pub(crate) fn reply(
        &mut self,
        req: &Msg,
        code: u16,
        src: SocketAddr,
        f: impl FnOnce(OutMsg) -> OutMsg,
    ) {
        self.out.reply(&self.cfg.user_agent, req, code, src, f);
    }

    fn on_request(&mut self, req: Msg, src: SocketAddr, now: Instant) {
        let method = req.request_method().unwrap_or(Method::Other(String::new()));
        let dialog = self.b2bua.dialog_of(&req);
        if !matches!(method, Method::Ack | Method::Cancel) {
            // §8.2.2.3: we support no extension that a request may require.
            let unsupported: Vec<String> = req
                .headers("Require")
                .chain(req.headers("Proxy-Require"))
                .flat_map(|v| v.split(','))
                .map(|t| t.trim().to_string())
                // RFC 4028 session timers, RFC 3262 100rel and RFC 3891
                // Replaces are supported.
                .filter(|t| {
                    !t.is_empty()
                        && !t.eq_ignore_ascii_case("timer")
                        && !t.eq_ignore_ascii_case(crate::rel100::TAG_100REL)
                        && !t.eq_ignore_ascii_case("replaces")
                })
                .collect();
            if !unsupported.is_empty() {
                debug!(call_id = %req.call_id, ?unsupported, "420 Bad Extension");
                self.reply(&req, 420, src, |r| {
                    r.header("Unsupported", unsupported.join(", "))
                });
                return;
            }
        }
        if matches!(method, Method::Invite | Method::Update) && !self.session_interval_ok(&req, src)
        {
            return;
        }
        if dialog.is_none() && self.b2bua.holds_transfer_dialog(&req.call_id) {
            let (b2bua, mut tu) = self.tu();
            b2bua.on_transfer_request(&mut tu, &req, src, now);
            return;
        }
        match method {
            Method::Register => self.on_register(&req, src, now),
            Method::Options => self.reply(&req, 200, src, |r| {
                r.header("Allow", ALLOW).header("Accept", "application/sdp")
            }),
            Method::Invite
                if dialog.is_none() && req.to.tag().is_none() && self.draining.is_some() =>
            {
                self.stats.drain_refused += 1;
                let secs = self.draining.unwrap_or_default().to_string();
                info!(call_id = %req.call_id, %src, "draining: new INVITE refused with 503");
                self.reply(&req, 503, src, |r| r.header("Retry-After", secs));
            }
            Method::Invite => {
                let (b2bua, mut tu) = self.tu();
                if let Some(req) = b2bua.on_invite(&mut tu, req, src, dialog, now) {
                    if req.header("Replaces").is_some() {
                        self.on_replacing_invite(req, src, now); // refer_route.rs
                    } else {
                        self.route_invite(req, src, now);
                    }
                }
            }
            Method::Ack => match dialog {
                Some((id, side)) => {
                    let (b2bua, mut tu) = self.tu();
                    b2bua.on_ack(&mut tu, id, side, &req);
                }
                None => debug!(call_id = %req.call_id, "ACK without dialog dropped"),
            },
            Method::Bye => match dialog {
                Some((id, side)) => {
                    let (b2bua, mut tu) = self.tu();
                    b2bua.on_bye(&mut tu, id, side, &req, src, now);
                }
                None => self.reply(&req, 481, src, |r| r),
            },
            Method::Cancel => match dialog {
                Some((id, Side::Caller)) => {
                    let (b2bua, mut tu) = self.tu();
                    b2bua.on_cancel(&mut tu, id, &req, src, now);
                }
                _ => self.reply(&req, 481, src, |r| r),
            },
            Method::Update => match dialog {
                Some((id, side)) if req.to.tag().is_some() => {
                    let (b2bua, mut tu) = self.tu();
                    b2bua.on_update(&mut tu, id, side, req, src, now);
                }
                _ => self.reply(&req, 481, src, |r| r),
            },
            Method::Info => match dialog {
                Some((id, side)) if req.to.tag().is_some() => {
                    let (b2bua, mut tu) = self.tu();
                    b2bua.on_info(&mut tu, id, side, req, src, now);
                }
                _ => self.reply(&req, 481, src, |r| r),
            },
            Method::Prack => match dialog {
                Some((id, side)) if req.to.tag().is_some() => {
                    let (b2bua, mut tu) = self.tu();
                    b2bua.on_prack(&mut tu, id, side, &req, src, now);
                }
                _ => self.reply(&req, 481, src, |r| r),
            },
            Method::Refer => match dialog {
                // `refer_route.rs`: the target, then `b2bua/transfer.rs`.
                Some((id, side)) if req.to.tag().is_some() => {
                    self.on_refer(id, side, req, src, now)
                }
                _ => self.reply(&req, 481, src, |r| r),
            },
            // NOTIFY, SUBSCRIBE, MESSAGE, PUBLISH and extensions: not
            // implemented.
            _ => {
                if req.to.tag().is_some() && dialog.is_none() {
                    self.reply(&req, 481, src, |r| r);
                } else {
                    self.reply(&req, 501, src, |r| r.header("Allow", ALLOW));
                }
            }
        }
    }

    /// RFC 4028 §4, §5: an INVITE or UPDATE whose `Session-Expires` is
    /// below our `Min-SE` ([`SipConfig::min_se`], or the request's own
    /// `Min-SE` when larger) gets 422 with our `Min-SE`; a malformed
    /// one gets 400. Returns whether the request may go on.
    fn session_interval_ok(&mut self, req: &Msg, src: SocketAddr) -> bool {
        let Some(v) = req.header("Session-Expires") else {
            return true;
        };
        let Some(se) = crate::session_timer::parse_session_expires(v) else {
            self.stats.malformed_requests += 1;
            self.reply(req, 400, src, |r| {
                r.header("Warning", "399 tern \"malformed Session-Expires\"")
            });
            return false;
        };
        if se.delta < self.cfg.min_se {
            self.stats.session_interval_too_small += 1;
            debug!(call_id = %req.call_id, se = se.delta, min_se = self.cfg.min_se, "422 Session Interval Too Small");
            let min = self.cfg.min_se.to_string();
            self.reply(req, 422, src, |r| r.header("Min-SE", min));
            return false;
        }
        true
    }

    /// Routes a new call's INVITE (RFC 3261 §16 steps in a B2BUA's UAS):
    /// the Request-URI scheme (416), authentication (407), Max-Forwards
    /// (483), 100 Trying, then only to a registered local user (404 for a
    /// foreign domain or an unknown user); the [`B2bua`] takes it from
    /// there. A number that is no local user and matches a `[[routes]]`
    /// entry goes to its trunk (`crate::trunk`).
    fn route_invite(&mut self, req: Msg, src: SocketAddr, now: Instant) {
        if !matches!(req.uri_scheme().as_deref(), Some("sip" | "sips")) {
            self.reply(&req, 416, src, |r| r);
            return;
        }
        if !self.sips_ok(&req, src) {
            return;
        }
        // Trunks and routes (crate::trunk): a number that is no local
        // user may go out through a route, but only for an authenticated
        // local user or a trusted trunk source (no toll fraud). A trusted
        // source needs no challenge.
        let trusted = crate::trunk::trusted_source(&self.cfg.trunks, src.ip()).is_some();
        let route = self.route_of(&req, now);
        if !trusted
            && self
                .authenticate_with(&req, src, true, route.is_some(), now)
                .is_none()
        {
            return;
        }
        let mf = req.max_forwards().unwrap_or(70);
        if mf == 0 {
            self.reply(&req, 483, src, |r| r);
            return;
        }
        // 100 Trying at once (§16.2 / §17.2.1), no To tag.
        let trying = self.response(&req, 100, None, src).to_bytes();
        self.out.send(src, trying);

        // tern routes only to its own registered users: it has no route
        // to other domains, so even an authenticated caller's INVITE for
        // one must not reach a local user who happens to share the name.
        let local_ip = self.local.ip();
        let local = req
            .uri_text()
            .and_then(msg::uri_host_port)
            .is_some_and(|(h, _)| self.cfg.is_local_host(&h, local_ip));
        if !local {
            info!(call_id = %req.call_id, uri = req.uri_text().unwrap_or(""), "INVITE for a foreign domain: no route");
            self.reply(&req, 404, src, |r| {
                r.header("Warning", "399 tern \"no route to that domain\"")
            });
            return;
        }
        if let Some(leg) = route {
            let Some(&gw) = leg.gateways.first() else {
                info!(call_id = %req.call_id, trunk = %leg.trunk, "trunk has no gateway resolved yet");
                self.reply(&req, 503, src, |r| {
                    r.header("Warning", "399 tern \"no trunk gateway resolved yet\"")
                });
                return;
            };
            info!(call_id = %req.call_id, trunk = %leg.trunk, number = %leg.user, %gw, trusted, "INVITE routed to a trunk");
            let target = Target {
                uri: leg.uri(gw),
                dest: gw,
                webrtc: false,
            };
            let call_id = req.call_id.clone();
            let (b2bua, mut tu) = self.tu();
            b2bua.new_call(&mut tu, req, src, target, false, mf, now);
            b2bua.attach_trunk(&call_id, leg);
            return;
        }
        let user = req.uri_user().unwrap_or_default();
        let sips = req.uri_scheme().as_deref() == Some("sips");
        let mut bindings = self.loc.lookup_user(&user, now);
        // Several contacts ring in parallel (b2bua/fork.rs); the reachable
        // ones first, so an unreachable first contact does not fail the call.
        let links = &self.out.links;
        let unusable = |b: &crate::registrar::Binding| {
            (sips && !b.transport.is_secure()) || links.flow_down(b.target)
        };
        bindings.sort_by_key(|b| unusable(b));
        let forks: Vec<Target> = bindings
            .iter()
            .skip(1)
            .filter(|b| !unusable(b))
            .map(|b| Target {
                uri: b.contact.clone(),
                dest: b.target,
                webrtc: b.transport.is_websocket(),
            })
            .collect();
        let mut bindings = bindings.into_iter();
        let Some(binding) = bindings.next() else {
            info!(call_id = %req.call_id, %user, "INVITE for an unknown or unregistered user");
            self.reply(&req, 404, src, |r| r);
            return;
        };
        if req.uri_scheme().as_deref() == Some("sips") && !binding.transport.is_secure() {
            // RFC 5630 §4.1: a sips: request goes over TLS hop by hop; a
            // callee registered over a plain transport cannot take it.
            info!(call_id = %req.call_id, %user, via = binding.transport.name(), "sips: INVITE for a user not registered over TLS/WSS");
            self.reply(&req, 480, src, |r| {
                r.header(
                    "Warning",
                    "399 tern \"the callee has no secure connection for sips:\"",
                )
            });
            return;
        }
        if self.out.links.flow_down(binding.target) {
            // Registered over TLS/WS/WSS, and that connection is gone: the
            // UA cannot be reached until it connects and registers again.
            info!(call_id = %req.call_id, %user, via = binding.transport.name(), "INVITE for a user whose connection is gone");
            self.stats.flow_down += 1;
            self.reply(&req, 480, src, |r| {
                r.header("Warning", "399 tern \"the callee's connection is gone\"")
            });
            return;
        }
        // A party over WS/WSS is a browser: its leg is WebRTC (its SDP
        // decides when it has one, RFC 7118 §5 / RFC 8829).
        let target = Target {
            uri: binding.contact,
            dest: binding.target,
            webrtc: binding.transport.is_websocket(),
        };
        let caller_webrtc = self
            .out
            .links
            .current()
            .is_some_and(|s| s.addr == src && s.transport.is_websocket());
        let call_id = req.call_id.clone();
        let (b2bua, mut tu) = self.tu();
        b2bua.new_call(&mut tu, req, src, target, caller_webrtc, mf, now);
        if !forks.is_empty() {
            b2bua.add_forks(&mut tu, &call_id, forks, mf, now);
        }
    }

    /// A REGISTER (RFC 3261 §10.3): the Request-URI must name one of our
    /// domains (step 1; we do not forward REGISTERs: 404), the request is
    /// authenticated (step 3), the user may register only their own AOR
    /// (step 4: 403), the To must name one of our domains (step 5: 404),
    /// then [`registrar::register`] applies steps 6-8.
    fn on_register(&mut self, req: &Msg, src: SocketAddr, now: Instant) {
        if !matches!(req.uri_scheme().as_deref(), Some("sip" | "sips")) {
            self.reply(req, 416, src, |r| r);
            return;
        }
        if !self.sips_ok(req, src) {
            return;
        }
        let local_ip = self.local.ip();
        let ours = |cfg: &SipConfig, uri: &str| {
            msg::uri_host_port(uri).is_some_and(|(h, _)| cfg.is_local_host(&h, local_ip))
        };
        if !req.uri_text().is_some_and(|u| ours(&self.cfg, u)) {
            debug!(call_id = %req.call_id, uri = req.uri_text().unwrap_or(""), "REGISTER for a foreign domain");
            self.reply(req, 404, src, |r| {
                r.header("Warning", "399 tern \"not a domain of this registrar\"")
            });
            return;
        }
        let Some(user) = self.authenticate(req, src, false, now) else {
            return;
        };
        if !ours(&self.cfg, &req.to.uri) {
            debug!(call_id = %req.call_id, to = %req.to.uri, "REGISTER of a foreign AOR");
            self.reply(req, 404, src, |r| {
                r.header("Warning", "399 tern \"not a domain of this registrar\"")
            });
            return;
        }
        if !user.is_empty() {
            // One may register only one's own AOR.
            if registrar::aor_of(req).map(|(_, u)| u) != Some(user.clone()) {
                self.stats.auth_failures += 1;
                warn!(call_id = %req.call_id, %user, to = %req.to.uri, "REGISTER for another user refused");
                self.reply(req, 403, src, |r| r);
                return;
            }
        }
        let policy = ExpiryPolicy {
            default: self.cfg.default_expires,
            min: self.cfg.min_expires,
            max: self.cfg.max_expires,
        };
        let source = self
            .out
            .links
            .current()
            .filter(|s| s.addr == src)
            .unwrap_or(Source::udp(src));
        match registrar::register_over(self.loc.as_mut(), req, source, now, policy) {
            RegisterResult::Ok(bindings) => {
                self.stats.registrations += 1;
                info!(call_id = %req.call_id, aor = %req.to.uri, %src, bindings = bindings.len(), "registered");
                self.reply(req, 200, src, |mut r| {
                    for (c, e) in &bindings {
                        r.push("Contact", format!("<{c}>;expires={e}"));
                    }
                    r
                });
            }
            RegisterResult::TooBrief(min) => {
                self.reply(req, 423, src, |r| r.header("Min-Expires", min.to_string()));
            }
            RegisterResult::Fail(code, why) => {
                debug!(call_id = %req.call_id, code, %why, "REGISTER refused");
                self.reply(req, code, src, |r| r);
            }
        }
    }

    fn on_response(&mut self, resp: Msg, src: SocketAddr, now: Instant) {
        if self.trunk_response(&resp, now) {
            return;
        }
        let (b2bua, mut tu) = self.tu();
        b2bua.on_response(&mut tu, &resp, src, now);
    }
}
