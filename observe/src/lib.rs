//! tern's observability: an HTTP API over the shared-memory slot table and
//! the signaling plane's snapshot, and the `tern ctl` client of it.
//!
//! Endpoints (GET or HEAD; anything else is a counted 4xx):
//! - `/health`: 200 with `{"status":"ok",...}`, or 503 with
//!   `"status":"stalled"` when a worker's heartbeat is older than 2 s.
//! - `/metrics`: OpenMetrics text, see [`metrics`](crate::metrics) for
//!   the families.
//! - `/calls`: JSON list of live slots with per-leg packets, bytes, drops
//!   and quality (loss, jitter ms, MOS); `/calls/{call-id}` one call
//!   (percent-encoded Call-ID; a Call-ID longer than the slot label's 64
//!   bytes is matched by prefix and the slot's tag) as `{call_id, slots,
//!   dtmf}`: every slot of it and their RFC 4733 DTMF events, 404 if
//!   unknown.
//! - `/registrations`: JSON list of `{aor, contact, source, expires_s}`,
//!   empty without the signaling plane (`tern relay`).
//!
//! The server is `tiny_http` driven by one thread of its own ([`start`]),
//! never a worker: it only reads the workers' counters. Routing is sans-IO
//! in [`Observer::handle`].

#![warn(missing_docs)]

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tern_shared::table::SlotTable;
use tern_signaling::snapshot::SharedSnapshot;
use tracing::{debug, warn};

pub mod api;
pub mod ctl;
mod metrics;
mod source;

pub use api::{Observer, Reply};
pub use source::{Dtmf, Quality};

/// Default listen address of the HTTP API.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

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
    handle: std::thread::JoinHandle<()>,
}

impl HttpServer {
    /// The bound address (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the server thread (it stops within 200 ms of shutdown).
    pub fn join(self) {
        let _ = self.handle.join();
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Binds `addr` and serves the API on a thread named `tern-http` until
/// `shutdown` is true (checked every 200 ms). `sip` is the signaling
/// plane's snapshot when it runs in this process.
///
/// Errors: [`ObserveError::Bind`], [`ObserveError::Spawn`].
pub fn start(
    addr: SocketAddr,
    table: Arc<SlotTable>,
    sip: Option<SharedSnapshot>,
    shutdown: Arc<AtomicBool>,
) -> Result<HttpServer, ObserveError> {
    let server =
        tiny_http::Server::http(addr).map_err(|e| ObserveError::Bind(addr, e.to_string()))?;
    let bound = server.server_addr().to_ip().unwrap_or(addr);
    let mut obs = Observer::new(table, sip);
    let handle = std::thread::Builder::new()
        .name("tern-http".into())
        .spawn(move || serve(server, &mut obs, &shutdown))
        .map_err(ObserveError::Spawn)?;
    Ok(HttpServer {
        addr: bound,
        handle,
    })
}

fn serve(server: tiny_http::Server, obs: &mut Observer, shutdown: &AtomicBool) {
    let mut next_tick = 0u64;
    while !shutdown.load(Ordering::Relaxed) {
        let now = unix_ms();
        if now >= next_tick {
            obs.tick(now);
            next_tick = now + 1000;
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
        let reply = obs.handle(req.method().as_str(), req.url(), unix_ms());
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
