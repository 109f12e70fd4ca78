//! Transport addressing for the sans-IO core: where a message came from
//! ([`Source`]), where one goes ([`Transmit`]), and the table ([`Links`])
//! that picks UDP or a TCP connection for a destination address.
//!
//! The core's call logic speaks in socket addresses only; [`Links`] maps
//! each destination back to a transport (RFC 3261 §18):
//!
//! 1. the source of the message being handled: a response goes back on the
//!    transport (and TCP connection) its request came in on (§18.2.2);
//! 2. an address that has sent us something over a live TCP connection:
//!    that connection (reused for in-dialog requests, e.g. a BYE);
//! 3. an address registered with a `;transport=tcp` Contact (or whose
//!    connection closed recently): TCP, over any connection the transport
//!    holds to it or a new one ([`ConnId::ANY`]);
//! 4. anything else: UDP, as before TCP existed — except a request larger
//!    than [`MAX_UDP_REQUEST`], which goes over TCP (a new connection,
//!    §18.1.1) unless a TCP attempt for such a request to that address
//!    failed lately ([`Links::tcp_failed`]): then UDP after all.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A TCP connection, numbered by the transport. `0` is [`ConnId::ANY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// In a [`Transmit`]: any open connection to the destination, or a new
    /// one (RFC 3261 §18.1.1). Never the id of a real connection.
    pub const ANY: ConnId = ConnId(0);
}

/// The transport a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A UDP datagram on the listening socket.
    Udp,
    /// A TCP connection (stream framed by Content-Length, RFC 3261 §18.3).
    Tcp(ConnId),
    /// A TLS connection (RFC 3261 §26.3.1; framed as TCP).
    Tls(ConnId),
    /// A WebSocket connection, subprotocol `sip` (RFC 7118): one SIP
    /// message per WebSocket message.
    Ws(ConnId),
    /// A WebSocket connection over TLS (RFC 7118 §5).
    Wss(ConnId),
}

impl Transport {
    /// Whether the transport is reliable (no retransmissions by the
    /// transaction layer, RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The connection, for every transport but UDP.
    pub fn conn(self) -> Option<ConnId> {
        match self {
            Transport::Udp => None,
            Transport::Tcp(c) | Transport::Tls(c) | Transport::Ws(c) | Transport::Wss(c) => Some(c),
        }
    }

    /// The same kind of transport on connection `conn` (UDP stays UDP).
    pub fn on(self, conn: ConnId) -> Transport {
        match self {
            Transport::Udp => Transport::Udp,
            Transport::Tcp(_) => Transport::Tcp(conn),
            Transport::Tls(_) => Transport::Tls(conn),
            Transport::Ws(_) => Transport::Ws(conn),
            Transport::Wss(_) => Transport::Wss(conn),
        }
    }

    /// Whether a peer on this transport is reached only over the
    /// connection it opened (TLS, WS, WSS: browsers and TLS phones cannot
    /// be connected to; RFC 7118 §5, RFC 5626 §3): when that connection
    /// is gone, requests for it get 480.
    pub fn is_flow(self) -> bool {
        matches!(
            self,
            Transport::Tls(_) | Transport::Ws(_) | Transport::Wss(_)
        )
    }

    /// Whether the transport is encrypted (TLS, WSS): what a `sips:`
    /// URI asks for (RFC 5630 §4.1).
    pub fn is_secure(self) -> bool {
        matches!(self, Transport::Tls(_) | Transport::Wss(_))
    }

    /// Whether the peer speaks SIP over WebSocket (a browser: RFC 7118).
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws(_) | Transport::Wss(_))
    }

    /// The Via transport token: `UDP`, `TCP`, `TLS` (RFC 3261 §20.42),
    /// `WS` or `WSS` (RFC 7118 §5.2).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp(_) => "TCP",
            Transport::Tls(_) => "TLS",
            Transport::Ws(_) => "WS",
            Transport::Wss(_) => "WSS",
        }
    }

    /// The lower-case name used in listings and metrics: `udp`, `tcp`,
    /// `tls`, `ws`, `wss`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp(_) => "tcp",
            Transport::Tls(_) => "tls",
            Transport::Ws(_) => "ws",
            Transport::Wss(_) => "wss",
        }
    }
}

/// Where a received message came from: the transport and the peer's
/// address (for TCP, the connection's remote address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// UDP, or the TCP connection the message was read from.
    pub transport: Transport,
    /// The peer's IP and port.
    pub addr: SocketAddr,
}

impl Source {
    /// A UDP datagram from `addr`.
    pub fn udp(addr: SocketAddr) -> Source {
        Source {
            transport: Transport::Udp,
            addr,
        }
    }

    /// A message read from TCP connection `conn` whose peer is `addr`.
    pub fn tcp(conn: ConnId, addr: SocketAddr) -> Source {
        Source {
            transport: Transport::Tcp(conn),
            addr,
        }
    }

    /// A message read from a stream connection (`transport` carries its
    /// kind and id) whose peer is `addr`.
    pub fn stream(transport: Transport, addr: SocketAddr) -> Source {
        Source { transport, addr }
    }
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// UDP, a TCP connection, or `Tcp(ConnId::ANY)`: any connection to
    /// `dest`, opened if there is none.
    pub transport: Transport,
    /// The peer's IP and port.
    pub dest: SocketAddr,
    /// The whole message (start line, headers, body).
    pub bytes: Vec<u8>,
}

/// Counters of the transport (monotonic, since serving began, but the
/// `open_*` gauges), kept by `crate::server` and copied into the core
/// ([`crate::SipCore::transport_stats`]) for observers. The `tcp_*`
/// counters count every stream connection (TCP, TLS, WS, WSS); the
/// arrays split them by kind, indexed by
/// [`crate::stream::StreamKind::index`] (tcp, tls, ws, wss).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Stream connections accepted.
    pub tcp_accepted: u64,
    /// TCP connections we opened (requests to TCP contacts).
    pub tcp_connected: u64,
    /// Connections refused or not opened: the connection bound was
    /// reached.
    pub tcp_refused: u64,
    /// Connections closed, for any reason.
    pub tcp_closed: u64,
    /// Closed for idleness.
    pub tcp_idle_closed: u64,
    /// Closed because a message (or WebSocket frame) exceeded the bound.
    pub tcp_oversize: u64,
    /// Closed because a message had no or a bad Content-Length (400 sent).
    pub tcp_unframed: u64,
    /// Closed because the peer did not read what we sent.
    pub tcp_write_overflow: u64,
    /// Messages framed from streams.
    pub tcp_messages: u64,
    /// CRLFCRLF keep-alives answered.
    pub tcp_keepalives: u64,
    /// Messages dropped for want of a connection (connect failed, bound,
    /// a TLS/WS peer whose connection is gone, handshake not done).
    pub tcp_send_failed: u64,
    /// ICMP errors read from the UDP socket's error queue (port or host
    /// unreachable): each failed the transactions to its destination.
    pub icmp_errors: u64,
    /// Accepted connections by kind.
    pub accepted_by_kind: [u64; 4],
    /// Connections open now by kind (a gauge).
    pub open_by_kind: [u64; 4],
    /// Messages received by kind.
    pub messages_by_kind: [u64; 4],
    /// Refused: the per-source bound ([`crate::TransportConfig::max_per_source`]).
    pub source_refused: u64,
    /// Closed: the TLS handshake or a record failed (garbage, a plain
    /// request on a TLS port).
    pub tls_failed: u64,
    /// Closed: the WebSocket opening handshake failed (not HTTP, no `sip`
    /// subprotocol, too long).
    pub ws_handshake_failed: u64,
    /// Closed: a WebSocket protocol error after the handshake.
    pub ws_protocol_errors: u64,
    /// Closed: a TLS or WebSocket handshake did not finish in time (a
    /// half-open connection).
    pub handshake_timeouts: u64,
    /// Closed: no pong to our WebSocket ping.
    pub pong_timeouts: u64,
    /// Closed: too many WebSocket frames per second.
    pub ws_floods: u64,
    /// Requests over their source's rate ([`crate::guard`]): dropped
    /// (UDP) or answered 503 (streams).
    pub guard_rate_limited: u64,
    /// Messages and connections from sources refused by `[sip] allow` /
    /// `deny`: dropped.
    pub guard_denied: u64,
}

/// Most TCP-reachable addresses remembered (registered TCP contacts and
/// recently closed peers); beyond it new ones are not remembered (they
/// are reached over UDP), so memory stays bounded whatever peers send.
pub const MAX_TCP_TARGETS: usize = 200_000;

/// How long the peer of a closed TCP connection is still reached over TCP
/// (a new connection) rather than UDP: 64·T1 at the default T1, the life
/// of a transaction.
pub const CLOSED_PEER_TTL: Duration = Duration::from_secs(32);

/// A request larger than this, in bytes, that would go over UDP goes over
/// TCP instead (RFC 3261 §18.1.1: the path MTU is unknown).
pub const MAX_UDP_REQUEST: usize = 1300;

/// How long an address whose TCP connect failed for a large request is
/// sent large requests over UDP (RFC 3261 §18.1.1 fallback) before TCP is
/// tried again.
pub const TCP_FALLBACK_TTL: Duration = Duration::from_secs(300);

/// The destination → transport table (see the module docs). Sans-IO:
/// fed by the core with what it receives and by the transport with
/// connection closes.
#[derive(Debug, Default)]
pub struct Links {
    /// The message being handled, whose responses follow its transport.
    current: Option<Source>,
    /// Remote address → live stream connection that carried a message
    /// (its transport names the kind and the connection).
    peers: HashMap<SocketAddr, Transport>,
    /// Addresses registered over a flow (TLS, WS, WSS) → that transport
    /// (with [`ConnId::ANY`]), until the instant given: reached only over
    /// a live connection of theirs ([`Links::flow_down`]).
    flows: HashMap<SocketAddr, (Transport, Instant)>,
    /// Connection → its remote address, to forget it on close.
    conns: HashMap<ConnId, SocketAddr>,
    /// Addresses to reach over TCP, until the instant given.
    targets: HashMap<SocketAddr, Instant>,
    /// Addresses sent a large request over TCP since the last purge, and
    /// in the purge period before: a failed connect to them falls back to
    /// UDP rather than ending the transaction.
    sized: HashSet<SocketAddr>,
    sized_old: HashSet<SocketAddr>,
    /// Addresses whose TCP connect for a large request failed: large
    /// requests go to them over UDP until the instant given.
    udp_only: HashMap<SocketAddr, Instant>,
}

impl Links {
    /// An empty table: everything goes over UDP.
    pub fn new() -> Links {
        Links::default()
    }

    /// Notes that a message from `src` is being handled (until
    /// [`Links::end`]); a TCP source's connection becomes the way to reach
    /// its address.
    pub fn begin(&mut self, src: Source) {
        self.current = Some(src);
        if let Some(conn) = src.transport.conn() {
            if conn != ConnId::ANY {
                if let Some(old) = self.peers.insert(src.addr, src.transport) {
                    match old.conn() {
                        Some(o) if o != conn => {
                            self.conns.remove(&o);
                        }
                        _ => {}
                    }
                }
                self.conns.insert(conn, src.addr);
            }
        }
    }

    /// The message of [`Links::begin`] is handled.
    pub fn end(&mut self) {
        self.current = None;
    }

    /// Connection `conn` closed: its peer is reached over a new TCP
    /// connection for [`CLOSED_PEER_TTL`].
    pub fn closed(&mut self, conn: ConnId, now: Instant) {
        if let Some(addr) = self.conns.remove(&conn) {
            if let Some(t) = self.peers.get(&addr).copied() {
                if t.conn() == Some(conn) {
                    self.peers.remove(&addr);
                    // A flow's peer cannot be connected to: it stays in
                    // `flows` (if registered) and is down until it calls
                    // back; a TCP peer gets a new connection.
                    if !t.is_flow() {
                        self.add_target(addr, now + CLOSED_PEER_TTL);
                    }
                }
            }
        }
    }

    /// Reaches `addr` over TCP until `until` (a Contact registered with
    /// `;transport=tcp`). Ignored beyond [`MAX_TCP_TARGETS`] entries.
    pub fn add_target(&mut self, addr: SocketAddr, until: Instant) {
        if self.targets.len() >= MAX_TCP_TARGETS && !self.targets.contains_key(&addr) {
            return;
        }
        let e = self.targets.entry(addr).or_insert(until);
        *e = (*e).max(until);
    }

    /// `addr` registered over flow transport `t` (TLS, WS, WSS): until
    /// `until` it is reached only over a live connection of its own, and
    /// is [`Links::flow_down`] without one. Ignored for other transports
    /// and beyond [`MAX_TCP_TARGETS`] entries.
    pub fn add_flow(&mut self, addr: SocketAddr, t: Transport, until: Instant) {
        if !t.is_flow() || (self.flows.len() >= MAX_TCP_TARGETS && !self.flows.contains_key(&addr))
        {
            return;
        }
        let e = self.flows.entry(addr).or_insert((t.on(ConnId::ANY), until));
        *e = (t.on(ConnId::ANY), e.1.max(until));
    }

    /// Whether `addr` registered over a flow whose connection is gone:
    /// a request for it cannot be delivered (→ 480, RFC 5626 §5.3).
    pub fn flow_down(&self, addr: SocketAddr) -> bool {
        self.flows.contains_key(&addr) && !self.peers.contains_key(&addr)
    }

    /// Forgets TCP targets (and UDP fallbacks) whose time ran out;
    /// returns how many TCP targets went. Large-request destinations are
    /// remembered for one to two purge periods (the core purges every
    /// 30 s, about the 32 s a connect may take).
    pub fn purge(&mut self, now: Instant) -> usize {
        let before = self.targets.len();
        self.targets.retain(|_, until| *until > now);
        self.flows.retain(|_, (_, until)| *until > now);
        self.udp_only.retain(|_, until| *until > now);
        self.sized_old = std::mem::take(&mut self.sized);
        before - self.targets.len()
    }

    /// The transport for `bytes` (a whole message) to `dest`:
    /// [`Links::route`], but a request larger than [`MAX_UDP_REQUEST`]
    /// that would go over UDP goes over TCP (`Tcp(ConnId::ANY)`, RFC 3261
    /// §18.1.1), unless TCP failed `dest` lately. Responses follow their
    /// request whatever their size (§18.2.1).
    pub fn route_message(&mut self, dest: SocketAddr, bytes: &[u8]) -> Transport {
        let t = self.route(dest);
        let request = !bytes.starts_with(b"SIP/2.0 ");
        if t != Transport::Udp
            || !request
            || bytes.len() <= MAX_UDP_REQUEST
            || self.udp_only.contains_key(&dest)
        {
            return t;
        }
        // Bounded like the targets; beyond it, large requests stay on UDP.
        if self.sized.len() >= MAX_TCP_TARGETS && !self.sized.contains(&dest) {
            return t;
        }
        self.sized.insert(dest);
        Transport::Tcp(ConnId::ANY)
    }

    /// The transport could not reach `dest` over TCP. Returns `true` when
    /// `dest` was sent TCP only for a request's size: it then gets large
    /// requests over UDP until `now` + [`TCP_FALLBACK_TTL`], and the
    /// caller should retry over UDP rather than give up (§18.1.1).
    pub fn tcp_failed(&mut self, dest: SocketAddr, now: Instant) -> bool {
        let sized = self.sized.remove(&dest) | self.sized_old.remove(&dest);
        if !sized || self.targets.contains_key(&dest) || self.peers.contains_key(&dest) {
            return false;
        }
        if self.udp_only.len() < MAX_TCP_TARGETS || self.udp_only.contains_key(&dest) {
            self.udp_only.insert(dest, now + TCP_FALLBACK_TTL);
        }
        true
    }

    /// The transport for a message to `dest` (see the module docs).
    /// Expired targets count until [`Links::purge`] removes them.
    pub fn route(&self, dest: SocketAddr) -> Transport {
        if let Some(cur) = self.current {
            if cur.addr == dest {
                return cur.transport;
            }
        }
        if let Some(&t) = self.peers.get(&dest) {
            return t;
        }
        if let Some(&(t, _)) = self.flows.get(&dest) {
            return t;
        }
        if self.targets.contains_key(&dest) {
            Transport::Tcp(ConnId::ANY)
        } else {
            Transport::Udp
        }
    }

    /// The message being handled (between [`Links::begin`] and
    /// [`Links::end`]).
    pub fn current(&self) -> Option<Source> {
        self.current
    }

    /// Live stream connections known to the table.
    pub fn tcp_peers(&self) -> usize {
        self.peers.len()
    }
}

/// `bytes` with the transport of its top Via set to `token` (`TCP`,
/// `TLS`, `WS`, `WSS`) when it is a request whose first Via says
/// `SIP/2.0/UDP` (ours: the core builds requests with a UDP Via).
/// Responses and other messages are returned unchanged: a response's Via
/// is the requester's.
pub fn set_via_transport(bytes: Vec<u8>, token: &str) -> Vec<u8> {
    if bytes.starts_with(b"SIP/2.0 ") || token.is_empty() || token.len() > 3 {
        return bytes;
    }
    let Some(head_end) = find(&bytes, b"\r\n\r\n") else {
        return bytes;
    };
    let mut at = 0;
    while let Some(eol) = find(&bytes[at..head_end], b"\r\n") {
        let line = at + eol + 2;
        let rest = &bytes[line..head_end];
        let name_len = rest.iter().position(|&b| b == b':').unwrap_or(0);
        let name = String::from_utf8_lossy(&rest[..name_len]);
        let name = name.trim();
        if name.eq_ignore_ascii_case("via") || name == "v" {
            let value_start = line + name_len + 1;
            let value = &bytes[value_start..head_end];
            let skip = value
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .unwrap_or(0);
            let p = value_start + skip;
            if bytes.len() >= p + 11 && bytes[p..p + 11].eq_ignore_ascii_case(b"SIP/2.0/UDP") {
                let mut out = Vec::with_capacity(bytes.len() + 1);
                out.extend_from_slice(&bytes[..p + 8]);
                out.extend_from_slice(token.as_bytes());
                out.extend_from_slice(&bytes[p + 11..]);
                return out;
            }
            return bytes;
        }
        at = line;
    }
    bytes
}

/// The top Via of a message (`None`: no Via, or malformed).
fn top_via(bytes: &[u8]) -> Option<crate::msg::Via> {
    let head_end = find(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let value = head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("via") || name == "v").then_some(value)
    })?;
    crate::msg::Via::parse(value.split(',').next()?.trim())
}

/// The sent-by port of the top Via of a message (`None`: no Via, no
/// port, or malformed). Where a response goes when the connection its
/// request came on is gone: the `received` IP and this port (RFC 3261
/// §18.2.2), 5060 when absent.
pub fn top_via_port(bytes: &[u8]) -> Option<u16> {
    top_via(bytes)?.port
}

/// Where a response sent over UDP goes (RFC 3261 §18.2.2 with RFC 3581
/// §4), read from its top Via (as `crate::msg::response_to` wrote it)
/// and `src`, the address its request came from:
///
/// 1. `rport` (the client asked for it, RFC 3581): `src`, IP and port;
/// 2. `received`, or a sent-by host that is `src`'s IP: `src`'s IP at the
///    sent-by port, 5060 when absent;
/// 3. anything else (no Via, a malformed one, a salvaged response to a
///    malformed request whose sent-by we have not vouched for): `src`.
///
/// The IP is always `src`'s: `received` is the source IP, and `maddr` is
/// not honoured (§18.2.2 sends to it), since it would let any datagram
/// aim tern's responses at a third party, a reflection attack on a server
/// exposed to the internet; the multicast case it serves does not arise
/// for a registrar and B2BUA.
pub fn response_dest(bytes: &[u8], src: SocketAddr) -> SocketAddr {
    let Some(via) = top_via(bytes) else {
        return src;
    };
    let port = via.port.unwrap_or(5060);
    if via.param("rport").is_some() {
        return src;
    }
    let host_is_src = via.host.parse::<std::net::IpAddr>().ok() == Some(src.ip());
    if via.param("received").is_some() || host_is_src {
        SocketAddr::new(src.ip(), port)
    } else {
        src
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn routes_follow_source_then_connections_then_targets() {
        let t0 = Instant::now();
        let mut l = Links::new();
        let x = a("10.0.0.1:5060");
        assert_eq!(l.route(x), Transport::Udp);
        l.begin(Source::tcp(ConnId(7), x));
        assert_eq!(l.route(x), Transport::Tcp(ConnId(7)));
        l.end();
        // Still reached on its connection after the message.
        assert_eq!(l.route(x), Transport::Tcp(ConnId(7)));
        // A UDP message from another address: its response goes over UDP.
        let y = a("10.0.0.2:5060");
        l.begin(Source::udp(y));
        assert_eq!(l.route(y), Transport::Udp);
        assert_eq!(l.route(x), Transport::Tcp(ConnId(7)));
        l.end();
        // Closing: a new connection for a while, then UDP.
        l.closed(ConnId(7), t0);
        assert_eq!(l.route(x), Transport::Tcp(ConnId::ANY));
        assert_eq!(l.tcp_peers(), 0);
        let later = t0 + CLOSED_PEER_TTL + Duration::from_secs(1);
        assert_eq!(l.purge(t0), 0);
        assert_eq!(l.purge(later), 1);
        assert_eq!(l.route(x), Transport::Udp);
        // Registered TCP contact.
        l.add_target(y, t0 + Duration::from_secs(60));
        assert_eq!(l.route(y), Transport::Tcp(ConnId::ANY));
    }

    #[test]
    fn a_reused_address_moves_to_the_new_connection() {
        let t0 = Instant::now();
        let mut l = Links::new();
        let x = a("10.0.0.1:40000");
        l.begin(Source::tcp(ConnId(1), x));
        l.begin(Source::tcp(ConnId(2), x));
        l.end();
        // Closing the old connection does not forget the new one.
        l.closed(ConnId(1), t0);
        assert_eq!(l.route(x), Transport::Tcp(ConnId(2)));
    }

    #[test]
    fn large_requests_go_over_tcp_until_tcp_fails() {
        let t0 = Instant::now();
        let mut l = Links::new();
        let x = a("10.0.0.1:5060");
        let big = {
            let mut m = b"INVITE sip:x SIP/2.0\r\n".to_vec();
            m.resize(MAX_UDP_REQUEST + 1, b'a');
            m
        };
        let small = &big[..MAX_UDP_REQUEST];
        let mut big_resp = b"SIP/2.0 200 OK\r\n".to_vec();
        big_resp.resize(4000, b'a');
        assert_eq!(l.route_message(x, small), Transport::Udp);
        assert_eq!(l.route_message(x, &big_resp), Transport::Udp);
        assert_eq!(l.route_message(x, &big), Transport::Tcp(ConnId::ANY));
        // Another address's failure, or a TCP contact's, is no fallback.
        assert!(!l.tcp_failed(a("10.0.0.2:5060"), t0));
        // The connect fails: UDP for large requests, for a while.
        assert!(l.tcp_failed(x, t0));
        assert!(!l.tcp_failed(x, t0), "once");
        assert_eq!(l.route_message(x, &big), Transport::Udp);
        l.purge(t0 + TCP_FALLBACK_TTL + Duration::from_secs(1));
        assert_eq!(l.route_message(x, &big), Transport::Tcp(ConnId::ANY));
        // Remembered across one purge, not two.
        l.purge(t0);
        assert!(l.tcp_failed(x, t0));
        let y = a("10.0.0.3:5060");
        assert_eq!(l.route_message(y, &big), Transport::Tcp(ConnId::ANY));
        l.purge(t0);
        l.purge(t0);
        assert!(!l.tcp_failed(y, t0));
        // An address with a live connection uses it, whatever the size.
        l.begin(Source::tcp(ConnId(4), y));
        l.end();
        assert_eq!(l.route_message(y, &big), Transport::Tcp(ConnId(4)));
    }

    #[test]
    fn targets_are_bounded() {
        let t0 = Instant::now();
        let mut l = Links::new();
        for i in 0..MAX_TCP_TARGETS + 10 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i as u32);
            l.add_target(SocketAddr::new(ip.into(), 5060), t0 + CLOSED_PEER_TTL);
        }
        assert_eq!(l.targets.len(), MAX_TCP_TARGETS);
    }

    #[test]
    fn top_via_port_reads_the_first_via() {
        let r = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK1;received=1.2.3.4\r\nVia: SIP/2.0/TCP h:9\r\n\r\n";
        assert_eq!(top_via_port(r), Some(5070));
        assert_eq!(
            top_via_port(b"SIP/2.0 200 OK\r\nv: SIP/2.0/TCP [2001:db8::1]:5071\r\n\r\n"),
            Some(5071)
        );
        assert_eq!(
            top_via_port(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h\r\n\r\n"),
            None
        );
        assert_eq!(top_via_port(b"SIP/2.0 200 OK\r\nVia: junk\r\n\r\n"), None);
        assert_eq!(top_via_port(b""), None);
    }

    #[test]
    fn udp_responses_follow_the_top_via() {
        let src = a("192.0.2.1:40000");
        let resp =
            |via: &str| format!("SIP/2.0 200 OK\r\nVia: {via}\r\nVia: SIP/2.0/UDP h:9\r\n\r\n");
        let d = |via: &str| response_dest(resp(via).as_bytes(), src);
        // rport: the source, whatever sent-by and received say.
        assert_eq!(
            d("SIP/2.0/UDP 10.0.0.1:5070;rport=40000;received=192.0.2.1"),
            src
        );
        assert_eq!(d("SIP/2.0/UDP 10.0.0.1:5070;rport;received=192.0.2.1"), src);
        // No rport: the source IP at the sent-by port, or 5060.
        assert_eq!(
            d("SIP/2.0/UDP 10.0.0.1:5070;received=192.0.2.1"),
            a("192.0.2.1:5070")
        );
        assert_eq!(
            d("SIP/2.0/UDP phone.example;received=192.0.2.1"),
            a("192.0.2.1:5060")
        );
        assert_eq!(
            d("SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bK1"),
            a("192.0.2.1:5080")
        );
        // A received naming another IP does not move the IP.
        assert_eq!(
            d("SIP/2.0/UDP 10.0.0.1:5070;received=198.51.100.9"),
            a("192.0.2.1:5070")
        );
        // maddr is not honoured (reflection): as without it.
        assert_eq!(
            d("SIP/2.0/UDP 10.0.0.1:5070;maddr=239.1.1.1;rport=1;received=192.0.2.1"),
            src
        );
        assert_eq!(
            d("SIP/2.0/UDP h;maddr=[2001:db8::7];received=192.0.2.1"),
            a("192.0.2.1:5060")
        );
        // Salvaged (no received, foreign host) or unreadable: the source.
        assert_eq!(d("SIP/2.0/UDP 198.51.100.9:5070"), src);
        assert_eq!(d("junk"), src);
        assert_eq!(response_dest(b"SIP/2.0 200 OK\r\n\r\n", src), src);
        assert_eq!(response_dest(b"", src), src);
        let v6 = a("[2001:db8::1]:40000");
        let r = resp("SIP/2.0/UDP [2001:db8::1]:5072;branch=z9hG4bK1");
        assert_eq!(response_dest(r.as_bytes(), v6), a("[2001:db8::1]:5072"));
    }

    #[test]
    fn via_transport_is_rewritten_in_requests_only() {
        let req = b"INVITE sip:b@x SIP/2.0\r\nFrom: <sip:a@x>\r\nVia:  SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP 5.6.7.8\r\n\r\nbody SIP/2.0/UDP".to_vec();
        let out = String::from_utf8(set_via_transport(req, "TCP")).unwrap();
        assert!(out.contains("Via:  SIP/2.0/TCP 1.2.3.4:5060;branch=z9hG4bK1\r\n"));
        assert!(
            out.contains("Via: SIP/2.0/UDP 5.6.7.8\r\n"),
            "only the top Via"
        );
        assert!(out.ends_with("body SIP/2.0/UDP"), "the body is untouched");
        let compact = b"BYE sip:b@x SIP/2.0\r\nv: SIP/2.0/UDP h\r\n\r\n".to_vec();
        let out = String::from_utf8(set_via_transport(compact, "TCP")).unwrap();
        assert!(out.contains("v: SIP/2.0/TCP h"));
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n".to_vec();
        assert_eq!(set_via_transport(resp.clone(), "TCP"), resp);
        // Garbage and truncated input come back unchanged, without panics.
        for g in [
            &b""[..],
            b"X",
            b"A b SIP/2.0\r\nVia:",
            b"A b c\r\nVia: SIP/2.0/U\r\n\r\n",
        ] {
            assert_eq!(set_via_transport(g.to_vec(), "TCP"), g.to_vec());
        }
    }
}
