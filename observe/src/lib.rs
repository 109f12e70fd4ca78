//! tern's observability: an HTTP API over the shared-memory slot table and
//! the signaling plane's snapshot, and the `tern ctl` client of it.
//!
//! Endpoints (GET or HEAD; anything else is a counted 4xx):
//! - `/health`: 200 with `{"status":"ok",...}`, or 503 with
//!   `"status":"stalled"` when a worker's heartbeat is older than 2 s.
//! - `/metrics`: OpenMetrics text, see the `metrics` module for
//!   the families.
//! - `/calls`: `{calls, total, truncated}`: live slots (at most
//!   `?limit=`, default 1000) with per-leg packets, bytes, drops and
//!   quality (loss, jitter ms, MOS); `/calls/{call-id}` one call
//!   (percent-encoded Call-ID; a Call-ID longer than the slot label's 64
//!   bytes is matched by prefix and the slot's tag) as `{call_id, slots,
//!   dtmf}`: every slot of it and their RFC 4733 DTMF events, 404 if
//!   unknown.
//! - `/registrations`: JSON list of `{aor, contact, source, expires_s, transport}`,
//!   empty without the signaling plane (`tern relay`).
//!
//! The server is `tiny_http` answered by [`HTTP_THREADS`] threads of its
//! own ([`start`]), never a worker: it only reads the workers' counters.
//! Every connection has a [`WRITE_TIMEOUT`], so a client that stops
//! reading a large response holds one of those threads for at most that
//! long. Routing is sans-IO in [`Observer::handle`].

#![warn(missing_docs)]

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_shared::clock::unix_ms;
use tern_shared::table::SlotTable;
use tern_signaling::snapshot::SharedSnapshot;
use tracing::{debug, warn};

pub mod api;
pub mod ctl;
pub mod liveness;
mod metrics;
mod source;

pub use api::{Observer, Reply};
pub use source::{Dtmf, Quality};

/// Default listen address of the HTTP API.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// Threads answering HTTP requests: a few clients slow to read cannot
/// stall the API.
pub const HTTP_THREADS: usize = 4;
/// Longest a response write may block on a client that does not read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the HTTP API.
#[derive(Debug)]
pub enum ObserveError {
    /// The listen address could not be bound (reason as text: `tiny_http`
    /// boxes its errors).
    Bind(SocketAddr, String),
    /// The server thread could not be started.
    Spawn(std::io::Error),
}

impl fmt::Display for ObserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObserveError::Bind(a, e) => write!(f, "http: cannot listen on {a}: {e}"),
            ObserveError::Spawn(e) => write!(f, "http: cannot start the server thread: {e}"),
        }
    }
}

impl std::error::Error for ObserveError {}

/// `--http` value: `ADDR:PORT`, `PORT` (on 127.0.0.1) or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpListen(pub Option<SocketAddr>);

impl std::str::FromStr for HttpListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(HttpListen(None));
        }
        if let Ok(p) = s.parse::<u16>() {
            return Ok(HttpListen(Some(SocketAddr::new(DEFAULT_LISTEN.ip(), p))));
        }
        s.parse::<SocketAddr>()
            .map(|a| HttpListen(Some(a)))
            .map_err(|_| format!("expected ADDR:PORT, PORT or off, got {s:?}"))
    }
}

/// A running HTTP API.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// The bound address (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the server threads (they stop within 200 ms of shutdown,
    /// or once a blocked write times out).
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}

/// Binds `addr` and serves the API on [`HTTP_THREADS`] threads named
/// `tern-http` until `shutdown` is true (checked every 200 ms). `sip` is
/// the signaling plane's snapshot when it runs in this process.
///
/// Errors: [`ObserveError::Bind`], [`ObserveError::Spawn`].
pub fn start(
    addr: SocketAddr,
    table: Arc<SlotTable>,
    sip: Option<SharedSnapshot>,
    shutdown: Arc<AtomicBool>,
) -> Result<HttpServer, ObserveError> {
    let listener =
        listen(addr, WRITE_TIMEOUT, None).map_err(|e| ObserveError::Bind(addr, e.to_string()))?;
    start_on(listener, table, sip, shutdown)
}

/// A listening socket whose accepted connections inherit a send timeout of
/// `write_timeout` (Linux copies `SO_SNDTIMEO`, and `SO_SNDBUF` when
/// `send_buffer` sets it, from the listener to each accepted socket:
/// tiny_http gives no access to its connections).
fn listen(
    addr: SocketAddr,
    write_timeout: Duration,
    send_buffer: Option<usize>,
) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As std's TcpListener::bind: a restarted tern rebinds at once.
    s.set_reuse_address(true)?;
    s.set_write_timeout(Some(write_timeout))?;
    if let Some(n) = send_buffer {
        s.set_send_buffer_size(n)?;
    }
    s.bind(&addr.into())?;
    s.listen(128)?;
    Ok(s.into())
}

fn start_on(
    listener: std::net::TcpListener,
    table: Arc<SlotTable>,
    sip: Option<SharedSnapshot>,
    shutdown: Arc<AtomicBool>,
) -> Result<HttpServer, ObserveError> {
    let addr = listener.local_addr().map_err(ObserveError::Spawn)?;
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| ObserveError::Bind(addr, e.to_string()))?;
    let server = Arc::new(server);
    let obs = Arc::new(Mutex::new(Observer::new(table, sip.clone())));
    let next_tick = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(HTTP_THREADS);
    for _ in 0..HTTP_THREADS {
        let (server, obs, next_tick, shutdown, sip) = (
            server.clone(),
            obs.clone(),
            next_tick.clone(),
            shutdown.clone(),
            sip.clone(),
        );
        let h = std::thread::Builder::new()
            .name("tern-http".into())
            .spawn(move || serve(&server, &obs, sip.as_ref(), &next_tick, &shutdown));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                // The threads started see no shutdown: they serve on.
                if handles.is_empty() {
                    return Err(ObserveError::Spawn(e));
                }
                warn!(error = %e, threads = handles.len(), "http: fewer server threads");
                break;
            }
        }
    }
    Ok(HttpServer { addr, handles })
}

/// The signaling loop lists registrations only when asked (the listing
/// costs it about 1 µs per binding), so ask, then wait for its next
/// snapshot: at most 1 s (two snapshot periods), without holding the
/// observer, then the latest listing is served.
pub(crate) fn wait_for_registrations(sip: &SharedSnapshot) {
    let asked = tern_signaling::SipSnapshot::request_registrations(sip);
    for _ in 0..100 {
        let done = sip
            .lock()
            .map_or(true, |g| g.registrations_answered >= asked);
        if done {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One server thread: takes requests, answers them (the [`Observer`] is
/// locked only to build the reply, not while it is written).
fn serve(
    server: &tiny_http::Server,
    obs: &Mutex<Observer>,
    sip: Option<&SharedSnapshot>,
    next_tick: &AtomicU64,
    shutdown: &AtomicBool,
) {
    while !shutdown.load(Ordering::Relaxed) {
        let now = unix_ms();
        let due = next_tick.load(Ordering::Relaxed);
        if now >= due
            && next_tick
                .compare_exchange(due, now + 1000, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            obs.lock().unwrap_or_else(|e| e.into_inner()).tick(now);
        }
        let req = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                warn!(error = %e, "http: accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if req.url().split('?').next() == Some("/registrations") {
            if let Some(sip) = sip {
                wait_for_registrations(sip);
            }
        }
        let reply = obs.lock().unwrap_or_else(|e| e.into_inner()).handle(
            req.method().as_str(),
            req.url(),
            unix_ms(),
        );
        debug!(method = %req.method(), url = %req.url().get(..200).unwrap_or(req.url()), status = reply.status, "http");
        let ct = tiny_http::Header::from_bytes(&b"Content-Type"[..], reply.content_type.as_bytes());
        let mut resp = tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
        if let Ok(h) = ct {
            resp.add_header(h);
        }
        if let Err(e) = req.respond(resp) {
            // The client went away; nothing to do.
            debug!(error = %e, "http: respond");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use tern_shared::table::{SlotConfig, TableParams};

    /// Clients that ask for a large `/calls` and never read it: more of
    /// them than server threads. With one thread and no write timeout the
    /// API answered nothing else again.
    #[test]
    fn clients_that_do_not_read_cannot_stall_the_api() {
        let name = format!("t-h3-unit-stall-{}", std::process::id());
        let params = TableParams {
            port_lo: 24000,
            port_hi: 24799,
            workers: 1,
            media_ip: "127.0.0.1".parse().unwrap(),
        };
        let table = Arc::new(SlotTable::create_or_attach(&name, params).unwrap());
        let _ = table.unlink();
        for _ in 0..200 {
            let id = table.reserve().unwrap();
            table.publish(id, &SlotConfig::default()).unwrap();
            table.set_call_id(id, &format!("{id}-{}", "c".repeat(60)));
        }
        // Small send buffers (inherited by accepted sockets), so that a
        // response of ~100 KB blocks at once; a 1 s write timeout.
        let listener = listen(
            "127.0.0.1:0".parse().unwrap(),
            Duration::from_secs(1),
            Some(4096),
        )
        .unwrap();
        let shutdown = Arc::new(AtomicBool::new(false));
        let srv = start_on(listener, table, None, shutdown.clone()).unwrap();
        let addr = srv.local_addr();
        let mut stuck = Vec::new();
        for _ in 0..HTTP_THREADS + 2 {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_recv_buffer_size(2048).unwrap();
            s.connect(&addr.into()).unwrap();
            let mut s: std::net::TcpStream = s.into();
            s.write_all(b"GET /calls?limit=100000 HTTP/1.0\r\n\r\n")
                .unwrap();
            stuck.push(s);
        }
        std::thread::sleep(Duration::from_millis(300));
        let t0 = std::time::Instant::now();
        let (status, body) = ctl::get(&addr.to_string(), "/health").expect("/health answered");
        assert!(matches!(status, 200 | 503), "{status} {body}");
        assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
        // The stuck clients got at most part of a response.
        for mut s in stuck {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut buf = Vec::new();
            let _ = (&mut s).take(1 << 22).read_to_end(&mut buf);
        }
        shutdown.store(true, Ordering::Relaxed);
        srv.join();
    }
}
