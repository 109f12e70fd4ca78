//! The sans-IO signaling core: datagrams and a clock go in, datagrams and
//! deadlines come out. Only [`crate::server`] owns a socket and reads the
//! clock; tests drive [`SipCore`] on a virtual clock.
//!
//! ```text
//! handle_message(bytes, src, now) ──┐
//! handle_timeout(now) ──────────────┼─> poll_output()  -> Transmit
//! connection_closed(conn, now) ─────┘   poll_timeout() -> next deadline
//! ```
//!
//! [`Source`] and [`Transmit`] carry the transport: UDP or a TCP
//! connection; [`Links`] picks it for each destination (responses on the
//! request's connection, RFC 3261 §18.2.2).
//!
//! Retransmissions of what we send are driven by [`crate::transaction`]
//! state machines (timers A/B, E/F, G/H) and [`Retransmit2xx`]
//! (§13.3.1.4), one per [`RtKey`]; matching responses to them is still
//! done by the call logic (by Call-ID and CSeq), which stops them.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::b2bua::{Call, Side};
use crate::config::SipConfig;
use crate::digest::{self, NonceSource, Verdict};
use crate::msg::{self, response_salvaged, response_to, Msg, OutMsg, ParseError};
use crate::registrar::{self, ExpiryPolicy, LocationService, MemoryLocation, RegisterResult};
use crate::relay::MediaRelay;
use crate::transaction::{Input, Output, Retransmit2xx, Timers, Transaction};
use crate::transport::{
    response_dest, set_via_transport, ConnId, Links, Source, Transmit, Transport, TransportStats,
};

/// Methods we answer (the `Allow` header).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, UPDATE";

/// Counters of the core (monotonic, since creation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Datagrams handed in.
    pub datagrams: u64,
    /// Malformed requests (answered 400/501/505 when a Via was salvaged),
    /// and requests whose digest `uri` is not their Request-URI (400).
    pub malformed_requests: u64,
    /// Malformed requests that could not be answered (no Via): dropped.
    pub dropped_requests: u64,
    /// Malformed responses and unparsable datagrams: dropped.
    pub malformed_responses: u64,
    /// Responses that matched no call or transaction: dropped.
    pub stray_responses: u64,
    /// Successful REGISTER requests.
    pub registrations: u64,
    /// Authentication challenges sent (401/407).
    pub challenges: u64,
    /// Authentication failures answered 403.
    pub auth_failures: u64,
    /// Calls accepted (slot reserved, INVITE sent to the callee).
    pub calls: u64,
    /// Calls answered (200 relayed to the caller).
    pub calls_answered: u64,
    /// INVITEs refused for want of a relay slot (503).
    pub no_slot: u64,
    /// New INVITEs refused with 503 while draining for shutdown.
    pub drain_refused: u64,
    /// Messages that could not be framed on a stream (400, connection closed).
    pub unframed: u64,
}

/// Which message a retransmission timer resends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RtKey {
    /// Our final response to the caller's INVITE (2xx: §13.3.1.4; other:
    /// timer G/H), until the caller's ACK.
    AFinal(u64),
    /// Our INVITE to the callee (timers A/B), until any response.
    BInvite(u64),
    /// A BYE we sent toward one side (timers E/F).
    Bye(u64, Side),
    /// A CANCEL we sent to the callee (timers E/F).
    Cancel(u64),
    /// A re-INVITE we relayed into the other dialog (timers A/B).
    ReInvite(u64),
    /// Our final response to a relayed re-INVITE, until its ACK.
    ReFinal(u64),
    /// An UPDATE we relayed into the other dialog (timers E/F).
    Update(u64),
}

/// What drives one retransmitted message: a §17 state machine, or the
/// §13.3.1.4 2xx timer.
#[derive(Debug)]
enum Engine {
    Tx(Transaction),
    Ok2xx(Retransmit2xx),
}

impl Engine {
    fn handle(&mut self, input: Input, now: Instant) {
        match self {
            Engine::Tx(t) => t.handle(input, now),
            Engine::Ok2xx(r) => r.handle(input, now),
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        match self {
            Engine::Tx(t) => t.poll_output(),
            Engine::Ok2xx(r) => r.poll_output(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Engine::Tx(t) => t.poll_timeout(),
            Engine::Ok2xx(r) => r.poll_timeout(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Retrans {
    dest: SocketAddr,
    engine: Engine,
    timer: Option<(Instant, u64)>,
    /// Transmissions so far: over a reliable transport only the first of
    /// a transaction goes out (RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1).
    sent: u32,
}

/// Calls the call map is sized for at start (live plus lingering).
const CALLS_RESERVED: usize = 65_536;

/// Timer events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerEv {
    Retrans(RtKey),
    /// Timer C of a call (no final response from the callee in time).
    TimerC(u64),
    /// A finished call's state may go (retransmissions absorbed until then).
    Linger(u64),
}

/// The signaling core: registrar, digest auth and B2BUA, sans-IO.
pub struct SipCore {
    pub(crate) cfg: SipConfig,
    /// Our address for Via and Contact.
    pub(crate) local: SocketAddr,
    pub(crate) ha1: HashMap<String, digest::Ha1>,
    pub(crate) nonces: NonceSource,
    pub(crate) loc: Box<dyn LocationService>,
    pub(crate) relay: Box<dyn MediaRelay>,
    pub(crate) out: VecDeque<Transmit>,
    /// Destination → transport (UDP or a TCP connection).
    pub(crate) links: Links,
    /// While draining for shutdown: `Retry-After` seconds of the 503 that
    /// new INVITEs get.
    draining: Option<u32>,
    /// The transport's counters, as last handed in.
    transport_stats: TransportStats,
    timers: BTreeMap<(Instant, u64), TimerEv>,
    timer_seq: u64,
    retrans: HashMap<RtKey, Retrans>,
    /// Boxed: a call is large, and the map moves its values when it grows
    /// (tens of thousands of calls linger 64·T1 after they end at high call
    /// rates) and on every remove/insert around a message.
    pub(crate) calls: HashMap<u64, Box<Call>>,
    /// Calls not yet lingering (in progress or up), by id: what observers
    /// list and what holds relay slots, without a pass over the lingering
    /// ones.
    pub(crate) live: BTreeSet<u64>,
    /// Call-ID → (call, side). Both dialogs of a call are indexed.
    pub(crate) dialogs: HashMap<String, (u64, Side)>,
    pub(crate) next_call: u64,
    pub(crate) stats: CoreStats,
    next_purge: Instant,
}

impl std::fmt::Debug for SipCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipCore")
            .field("local", &self.local)
            .field("calls", &self.calls.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Random lowercase hex of `n` bytes.
pub(crate) fn rand_hex(n: usize) -> String {
    (0..n)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
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
            nonces: NonceSource::with_capacity(now, cfg.nonce_ttl, cfg.nonce_capacity),
            cfg,
            local,
            ha1,
            loc: Box::new(MemoryLocation::with_epoch(now)),
            relay,
            out: VecDeque::new(),
            links: Links::new(),
            draining: None,
            transport_stats: TransportStats::default(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            retrans: HashMap::new(),
            // Room for the calls lingering 64·T1 (32 s) at 2,000 calls/s,
            // so the maps do not grow (and stall the loop) under load:
            // about 6 MiB of buckets, faulted in only as they are used.
            calls: HashMap::with_capacity(CALLS_RESERVED),
            live: BTreeSet::new(),
            dialogs: HashMap::with_capacity(2 * CALLS_RESERVED),
            next_call: 1,
            stats: CoreStats::default(),
            next_purge: now + Duration::from_secs(30),
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
        self.calls.len()
    }

    /// Calls holding a relay slot.
    pub fn active_calls(&self) -> usize {
        // Lingering calls have released their slots.
        self.live
            .iter()
            .filter(|id| self.calls.get(id).is_some_and(|c| c.slot.is_some()))
            .count()
    }

    /// The location service (registrations), e.g. for listings.
    pub fn location(&self) -> &dyn LocationService {
        self.loc.as_ref()
    }

    /// Next message to send: destination and bytes, whatever the
    /// transport (for UDP-only drivers and tests; see
    /// [`SipCore::poll_output`]).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front().map(|t| (t.dest, t.bytes))
    }

    /// Next message to send, with its transport: UDP, the TCP connection a
    /// request came in on (its responses, RFC 3261 §18.2.2), or
    /// `Tcp(ConnId::ANY)` for a request to a TCP contact or one larger
    /// than [`crate::transport::MAX_UDP_REQUEST`] bytes (any connection to
    /// the destination, or a new one, §18.1.1).
    pub fn poll_output(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Stops accepting calls (`Some(retry_after)`, seconds) or accepts
    /// them again (`None`). While draining, a new INVITE (no To tag, no
    /// known Call-ID) is answered 503 with `Retry-After`; requests within
    /// existing dialogs (BYE, re-INVITE, ACK) and other methods are served.
    pub fn set_draining(&mut self, retry_after: Option<u32>) {
        self.draining = retry_after;
    }

    /// Whether no call needs the process any more: none holds a relay
    /// slot (in setup or up) and no BYE or CANCEL of ours still awaits its
    /// response (final responses waiting out timer I are not waited for).
    pub fn drained(&self) -> bool {
        self.active_calls() == 0
            && !self
                .retrans
                .keys()
                .any(|k| matches!(k, RtKey::Bye(..) | RtKey::Cancel(_)))
    }

    /// Keeps a copy of the transport's counters (the server hands them in
    /// every loop), so observers of the core see them.
    pub fn set_transport_stats(&mut self, stats: TransportStats) {
        self.transport_stats = stats;
    }

    /// The transport's counters as last handed in (zero without a server).
    pub fn transport_stats(&self) -> TransportStats {
        self.transport_stats
    }

    /// The transport closed TCP connection `conn` (peer gone, idle, or
    /// framing lost). Its peer is then reached over a new connection.
    pub fn connection_closed(&mut self, conn: ConnId, now: Instant) {
        self.links.closed(conn, now);
    }

    /// The transport could not reach `dest` (an outgoing TCP connect was
    /// refused or timed out): our requests in flight to it end now, as if
    /// their Timer B/F had fired (RFC 3261 §17.1.1.2, §17.1.2.2; an
    /// INVITE's caller gets 408) — unless `dest` was tried over TCP only
    /// because a request was too large for UDP (§18.1.1): then they are
    /// resent over UDP at their next timer.
    pub fn transport_failed(&mut self, dest: SocketAddr, now: Instant) {
        if self.links.tcp_failed(dest, now) {
            // TCP only for a large request's sake (§18.1.1): retry over
            // UDP. The transactions keep running; their next timer A/E
            // resends over UDP, as will later large requests for a while.
            debug!(%dest, "TCP for a large request failed: UDP instead");
            return;
        }
        let keys: Vec<RtKey> = self
            .retrans
            .iter()
            .filter(|(k, r)| r.dest == dest && !matches!(k, RtKey::AFinal(_) | RtKey::ReFinal(_)))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if self.stop_retrans(k) {
                debug!(%dest, key = ?k, "transport error: transaction ends");
                self.on_retrans_timeout(k, now);
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
        self.links.begin(src);
        match msg::parse(head) {
            Ok(m) if m.method().is_some() => {
                debug!(src = %src.addr, %why, "unframed stream request answered 400");
                self.reply(&m, 400, src.addr, |r| r);
            }
            Err(ParseError::BadRequest { salvage, .. }) => {
                if let Some(r) = response_salvaged(&salvage, 400) {
                    let r = r.header("Server", self.cfg.user_agent.clone());
                    self.send(src.addr, r.to_bytes());
                }
            }
            _ => debug!(src = %src.addr, %why, "unframed stream message dropped"),
        }
        self.links.end();
    }

    /// The earliest instant at which [`SipCore::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.timers.keys().next().map(|(t, _)| *t);
        Some(t.map_or(self.next_purge, |t| t.min(self.next_purge)))
    }

    /// Handles one received UDP datagram from `src` at `now`.
    pub fn handle_datagram(&mut self, data: &[u8], src: SocketAddr, now: Instant) {
        self.handle_message(data, Source::udp(src), now);
    }

    /// Handles one received message at `now`: a UDP datagram, or one
    /// message framed from a TCP stream ([`crate::tcp::Framer`]). What it
    /// causes to be sent back to `src.addr` goes on `src.transport`.
    pub fn handle_message(&mut self, data: &[u8], source: Source, now: Instant) {
        self.links.begin(source);
        self.handle_parsed(data, source, now);
        self.links.end();
    }

    fn handle_parsed(&mut self, data: &[u8], source: Source, now: Instant) {
        let src = source.addr;
        self.stats.datagrams += 1;
        match msg::parse(data) {
            Ok(m) => {
                if m.method() == Some("REGISTER") {
                    let before = self.stats.registrations;
                    let contacts = m.contacts();
                    self.on_request(m, src, now);
                    if self.stats.registrations > before {
                        self.note_tcp_contacts(&contacts, src, now);
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
                    self.send(src, r.to_bytes());
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
                self.links.add_target(target, now + life);
            }
        }
    }

    /// Runs every timer due at `now` (retransmissions, timeouts, purges).
    pub fn handle_timeout(&mut self, now: Instant) {
        // Bounded: each step pops one timer; new ones are strictly later.
        for _ in 0..100_000 {
            let Some((&key, &ev)) = self.timers.iter().next() else {
                break;
            };
            if key.0 > now {
                break;
            }
            self.timers.remove(&key);
            match ev {
                TimerEv::Retrans(k) => self.fire_retrans(k, key, now),
                TimerEv::TimerC(id) => self.on_timer_c(id, key.0, now),
                TimerEv::Linger(id) => self.on_linger(id, key.0),
            }
        }
        if now >= self.next_purge {
            let n = self.loc.purge(now);
            if n > 0 {
                debug!(expired = n, "registrations purged");
            }
            self.links.purge(now);
            self.next_purge = now + Duration::from_secs(30);
        }
    }

    pub(crate) fn schedule(&mut self, at: Instant, ev: TimerEv) -> (Instant, u64) {
        self.timer_seq += 1;
        let key = (at, self.timer_seq);
        self.timers.insert(key, ev);
        key
    }

    /// Sends `bytes` to `dest` now and retransmits it over UDP until
    /// [`SipCore::stop_retrans`] or 64*T1, when the call logic hears of the
    /// timeout. `cap` says whether the interval is capped at T2: an INVITE
    /// (`false`) runs an INVITE client transaction (timers A/B, §17.1.1);
    /// a BYE or CANCEL a non-INVITE one (E/F, §17.1.2); a final response
    /// to an INVITE a server transaction's G/H (§17.2.1) or, for a 2xx,
    /// [`Retransmit2xx`] (§13.3.1.4).
    pub(crate) fn send_retrans(
        &mut self,
        key: RtKey,
        dest: SocketAddr,
        bytes: Vec<u8>,
        cap: bool,
        now: Instant,
    ) {
        self.stop_retrans(key);
        let timers = Timers::from_config(&self.cfg);
        let engine = match (cap, response_code(&bytes)) {
            (false, _) => Engine::Tx(Transaction::client(true, bytes, timers, now)),
            (true, None) => Engine::Tx(Transaction::client(false, bytes, timers, now)),
            (true, Some(code)) if (200..300).contains(&code) => {
                Engine::Ok2xx(Retransmit2xx::start(bytes, timers, now))
            }
            (true, Some(code)) => {
                let mut t = Transaction::server(true, timers);
                t.handle(Input::Send { code, bytes }, now);
                Engine::Tx(t)
            }
        };
        self.retrans.insert(
            key,
            Retrans {
                dest,
                engine,
                timer: None,
                sent: 0,
            },
        );
        self.drive_retrans(key, now);
    }

    /// Sends what the engine of `key` queued, reports its timeout, and
    /// schedules its next timer.
    fn drive_retrans(&mut self, key: RtKey, now: Instant) {
        let Some(r) = self.retrans.get_mut(&key) else {
            return;
        };
        let mut timed_out = false;
        let mut ended = false;
        while let Some(o) = r.engine.poll_output() {
            match o {
                Output::Transmit(b) => {
                    let transport = self.links.route_message(r.dest, &b);
                    // §13.3.1.4: a 2xx is retransmitted whatever the
                    // transport; the transaction layer's resends only
                    // over UDP.
                    let resend = r.sent > 0 && !matches!(r.engine, Engine::Ok2xx(_));
                    if !(resend && transport.is_reliable()) {
                        r.sent += 1;
                        self.out.push_back(outgoing(transport, r.dest, b));
                    }
                }
                Output::Timeout(_) => timed_out = true,
                Output::Terminated => ended = true,
                _ => {}
            }
        }
        if timed_out || ended {
            self.retrans.remove(&key);
            if timed_out {
                self.on_retrans_timeout(key, now);
            }
            return;
        }
        if let Some(at) = r.engine.poll_timeout() {
            self.timer_seq += 1;
            let tk = (at, self.timer_seq);
            r.timer = Some(tk);
            self.timers.insert(tk, TimerEv::Retrans(key));
        }
    }

    /// Stops a retransmission; returns whether one was running.
    pub(crate) fn stop_retrans(&mut self, key: RtKey) -> bool {
        match self.retrans.remove(&key) {
            Some(r) => {
                if let Some(t) = r.timer {
                    self.timers.remove(&t);
                }
                true
            }
            None => false,
        }
    }

    /// Whether a retransmission is running.
    pub(crate) fn retransmitting(&self, key: RtKey) -> bool {
        self.retrans.contains_key(&key)
    }

    fn fire_retrans(&mut self, k: RtKey, timer: (Instant, u64), now: Instant) {
        let Some(r) = self.retrans.get_mut(&k) else {
            return;
        };
        if r.timer != Some(timer) {
            return;
        }
        r.timer = None;
        r.engine.handle(Input::Timeout, now);
        self.drive_retrans(k, now);
    }

    /// Sends a message once, on the transport [`Links`] picks for `dest`.
    pub(crate) fn send(&mut self, dest: SocketAddr, bytes: Vec<u8>) {
        let transport = self.links.route_message(dest, &bytes);
        self.out.push_back(outgoing(transport, dest, bytes));
    }

    /// Builds a response to `req` with our Server header.
    pub(crate) fn response(
        &self,
        req: &Msg,
        code: u16,
        to_tag: Option<&str>,
        src: SocketAddr,
    ) -> OutMsg {
        response_to(req, code, to_tag, src).header("Server", self.cfg.user_agent.clone())
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
        let tag = stateless_tag(req);
        let r = f(self.response(req, code, Some(&tag), src));
        self.send(src, r.to_bytes());
    }

    fn on_request(&mut self, req: Msg, src: SocketAddr, now: Instant) {
        let method = req.method().unwrap_or_default().to_string();
        let mut dialog = self.dialogs.get(&req.call_id).copied();
        if let Some((id, side)) = dialog {
            // In-dialog requests must carry the dialog's tags (§12.2.2);
            // a Call-ID alone is not enough to touch a call.
            if req.to.tag().is_some() && !self.dialog_matches(id, side, &req) {
                debug!(call_id = %req.call_id, method, "tags match no dialog");
                dialog = None;
            }
        }
        if method != "ACK" && method != "CANCEL" {
            // §8.2.2.3: we support no extension that a request may require.
            let unsupported: Vec<String> = req
                .headers("Require")
                .chain(req.headers("Proxy-Require"))
                .flat_map(|v| v.split(','))
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
            if !unsupported.is_empty() {
                debug!(call_id = %req.call_id, ?unsupported, "420 Bad Extension");
                self.reply(&req, 420, src, |r| {
                    r.header("Unsupported", unsupported.join(", "))
                });
                return;
            }
        }
        match method.as_str() {
            "REGISTER" => self.on_register(&req, src, now),
            "OPTIONS" => self.reply(&req, 200, src, |r| {
                r.header("Allow", ALLOW).header("Accept", "application/sdp")
            }),
            "INVITE" if dialog.is_none() && req.to.tag().is_none() && self.draining.is_some() => {
                self.stats.drain_refused += 1;
                let secs = self.draining.unwrap_or_default().to_string();
                info!(call_id = %req.call_id, %src, "draining: new INVITE refused with 503");
                self.reply(&req, 503, src, |r| r.header("Retry-After", secs));
            }
            "INVITE" => self.on_invite(req, src, dialog, now),
            "ACK" => match dialog {
                Some((id, side)) if self.is_reinvite_ack(id, side, &req) => {
                    self.on_reinvite_ack(id, &req)
                }
                Some((id, Side::A)) => self.on_a_ack(id, &req, now),
                Some((id, Side::B)) => debug!(call = id, "ACK from callee ignored"),
                None => debug!(call_id = %req.call_id, "ACK without dialog dropped"),
            },
            "BYE" => match dialog {
                Some((id, side)) => self.on_bye(id, side, &req, src, now),
                None => self.reply(&req, 481, src, |r| r),
            },
            "CANCEL" => match dialog {
                Some((id, Side::A)) => self.on_cancel(id, &req, src, now),
                _ => self.reply(&req, 481, src, |r| r),
            },
            "UPDATE" => match dialog {
                Some((id, side)) if req.to.tag().is_some() => {
                    self.on_update(id, side, req, src, now)
                }
                _ => self.reply(&req, 481, src, |r| r),
            },
            _ => {
                if req.to.tag().is_some() && dialog.is_none() {
                    self.reply(&req, 481, src, |r| r);
                } else {
                    self.reply(&req, 501, src, |r| r.header("Allow", ALLOW));
                }
            }
        }
    }

    /// Digest check for `req` (RFC 7616 with RFC 3261 §22). Returns the
    /// authenticated user (empty when the request needs no
    /// authentication), or `None` after queueing 401/407 (challenge, MD5
    /// then SHA-256; `stale=true` for an expired nonce or a replayed
    /// nonce-count), 403 (wrong credentials) or 400 (a digest `uri` that
    /// is not the Request-URI, RFC 2617 §3.2.2.5; counted in
    /// [`CoreStats::malformed_requests`]).
    ///
    /// Policy: with no users configured, nothing is authenticated except
    /// that an INVITE for a foreign domain gets 403 (tern is not an open
    /// relay). With users, REGISTER always needs authentication, an INVITE
    /// for a foreign domain always, and an INVITE for a local user as
    /// [`SipConfig::auth_invites`] says (default: yes). Local means the
    /// Request-URI host passes [`SipConfig::is_local_host`].
    pub(crate) fn authenticate(
        &mut self,
        req: &Msg,
        src: SocketAddr,
        proxy: bool,
        now: Instant,
    ) -> Option<String> {
        let method = req.method().unwrap_or_default();
        if method == "INVITE" {
            let local = req
                .uri_text()
                .and_then(msg::uri_host_port)
                .is_some_and(|(h, _)| self.cfg.is_local_host(&h, self.local.ip()));
            if local && !self.cfg.auth_invites.unwrap_or(!self.ha1.is_empty()) {
                return Some(String::new());
            }
            if self.ha1.is_empty() {
                self.stats.auth_failures += 1;
                warn!(call_id = %req.call_id, %src, uri = req.uri_text().unwrap_or(""), "INVITE for a foreign domain refused: not a relay");
                self.reply(req, 403, src, |r| {
                    r.header("Warning", "399 tern \"not a relay for this domain\"")
                });
                return None;
            }
        } else if self.ha1.is_empty() {
            return Some(String::new());
        }
        let (cred_hdr, chal_hdr, chal_code) = if proxy {
            ("Proxy-Authorization", "Proxy-Authenticate", 407)
        } else {
            ("Authorization", "WWW-Authenticate", 401)
        };
        let ha1 = &self.ha1;
        // A retransmission repeats branch, Call-ID and CSeq.
        let txn = format!(
            "{}|{}|{}",
            req.top_via().branch().unwrap_or(""),
            req.call_id,
            req.cseq.num
        );
        let request = digest::RequestLine {
            method,
            uri: req.uri_text().unwrap_or_default(),
            txn: &txn,
        };
        let verdict = digest::verify(
            req.headers(cred_hdr),
            request,
            &self.cfg.realm,
            &mut self.nonces,
            now,
            |u| ha1.get(u),
        );
        match verdict {
            Verdict::Ok(user) => Some(user),
            Verdict::Challenge | Verdict::Stale => {
                self.stats.challenges += 1;
                let stale = verdict == Verdict::Stale;
                let [md5, sha] = self.nonces.challenges(&self.cfg.realm, now, stale);
                debug!(call_id = %req.call_id, %src, method, stale, "digest challenge");
                self.reply(req, chal_code, src, |r| {
                    r.header(chal_hdr, md5).header(chal_hdr, sha)
                });
                None
            }
            Verdict::Forbidden => {
                self.stats.auth_failures += 1;
                warn!(call_id = %req.call_id, %src, method, "digest authentication failed");
                self.reply(req, 403, src, |r| r);
                None
            }
            Verdict::UriMismatch => {
                // Bad input, not a wrong password (RFC 2617 §3.2.2.5).
                self.stats.malformed_requests += 1;
                debug!(call_id = %req.call_id, %src, method, "digest uri is not the Request-URI");
                self.reply(req, 400, src, |r| {
                    r.header(
                        "Warning",
                        "399 tern \"digest uri does not match the Request-URI\"",
                    )
                });
                None
            }
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
        match registrar::register(self.loc.as_mut(), req, src, now, policy) {
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
        let Some((id, side)) = self.dialogs.get(&resp.call_id).copied() else {
            self.stats.stray_responses += 1;
            debug!(call_id = %resp.call_id, %src, "stray response dropped");
            return;
        };
        match (resp.cseq.method.as_str(), side) {
            ("INVITE", side) if self.is_reinvite_response(id, side, &resp) => {
                self.on_reinvite_response(id, &resp, now)
            }
            ("INVITE", Side::B) => self.on_b_invite_response(id, &resp, now),
            ("BYE", side) => self.on_bye_response(id, side, &resp, now),
            ("CANCEL", Side::B) => {
                self.stop_retrans(RtKey::Cancel(id));
            }
            ("UPDATE", side) => self.on_update_response(id, side, &resp),
            _ => {
                self.stats.stray_responses += 1;
            }
        }
    }
}

/// A [`Transmit`] to `dest` (for a response, where its request came
/// from); a request to go over TCP gets `TCP` in its top Via (ours), RFC
/// 3261 §18.1.1, and a response over UDP goes where its top Via says
/// ([`response_dest`], §18.2.2, RFC 3581 §4).
fn outgoing(transport: Transport, dest: SocketAddr, bytes: Vec<u8>) -> Transmit {
    let (dest, bytes) = match transport {
        Transport::Udp if response_code(&bytes).is_some() => (response_dest(&bytes, dest), bytes),
        Transport::Udp => (dest, bytes),
        Transport::Tcp(_) => (dest, set_via_transport(bytes, transport.via_token())),
    };
    Transmit {
        transport,
        dest,
        bytes,
    }
}

/// The status code of a serialized response; `None` for a request.
fn response_code(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"SIP/2.0 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

/// A To tag for stateless responses: stable for retransmissions of one
/// request (MD5 of Call-ID, From tag and branch).
fn stateless_tag(req: &Msg) -> String {
    let h = digest::md5_hex(&format!(
        "{}|{}|{}",
        req.call_id,
        req.from.tag().unwrap_or(""),
        req.top_via().branch().unwrap_or("")
    ));
    h[..16].to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn response_code_reads_status_lines_only() {
        use super::response_code;
        assert_eq!(response_code(b"SIP/2.0 486 Busy Here\r\n"), Some(486));
        assert_eq!(response_code(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(response_code(b"BYE sip:a SIP/2.0\r\n"), None);
        assert_eq!(response_code(b"SIP/2.0 4"), None);
    }
}
