//! The UDP transport: a `mio` loop around [`SipCore`]. The only place that
//! owns a socket and reads the clock.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use tracing::{debug, info, warn};

use crate::config::SipConfig;
use crate::core::SipCore;
use crate::relay::MediaRelay;
use crate::SipError;

const SOCKET: Token = Token(0);
/// Longest wait in `poll`, so a shutdown request is noticed quickly.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Datagrams read per wakeup before timers and sends get their turn.
const READ_BUDGET: usize = 256;

/// Binds UDP on `config.listen` and serves SIP until `shutdown` becomes
/// true (checked at least every 100 ms): [`Server::bind`] then
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

/// A bound, not yet serving, SIP UDP transport. Binding first lets the
/// caller announce readiness (and learn the port when `listen` has port 0)
/// only once datagrams can no longer be lost.
#[derive(Debug)]
pub struct Server {
    config: SipConfig,
    sock: UdpSocket,
    bound: SocketAddr,
    snapshot: Option<crate::snapshot::SharedSnapshot>,
}

impl Server {
    /// Validates `config` and binds its UDP address.
    ///
    /// Errors: [`SipError::Config`], [`SipError::Bind`], [`SipError::Io`].
    pub fn bind(config: SipConfig) -> Result<Server, SipError> {
        config.validate().map_err(SipError::Config)?;
        let sock = UdpSocket::bind(config.listen).map_err(|e| SipError::Bind(config.listen, e))?;
        let bound = sock.local_addr().map_err(SipError::Io)?;
        Ok(Server {
            config,
            sock,
            bound,
            snapshot: None,
        })
    }

    /// Publishes a [`crate::snapshot::SipSnapshot`] into `shared` at most
    /// every 500 ms while serving, for observers (the HTTP API).
    pub fn with_snapshot(mut self, shared: crate::snapshot::SharedSnapshot) -> Server {
        self.snapshot = Some(shared);
        self
    }

    /// The bound address (the real port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.bound
    }

    /// Serves until `shutdown` is true (checked at least every 100 ms).
    ///
    /// Errors: [`SipError::Io`] if polling fails.
    pub fn serve(
        self,
        relay: Box<dyn MediaRelay>,
        shutdown: Arc<AtomicBool>,
    ) -> Result<(), SipError> {
        let Server {
            config,
            mut sock,
            bound,
            snapshot,
        } = self;
        let snap = snapshot.map(crate::snapshot::SnapshotPublisher::new);
        serve(config, &mut sock, bound, relay, shutdown, snap)
    }
}

fn serve(
    config: SipConfig,
    sock: &mut UdpSocket,
    bound: SocketAddr,
    relay: Box<dyn MediaRelay>,
    shutdown: Arc<AtomicBool>,
    mut snap: Option<crate::snapshot::SnapshotPublisher>,
) -> Result<(), SipError> {
    let mut poll = Poll::new().map_err(SipError::Io)?;
    poll.registry()
        .register(sock, SOCKET, Interest::READABLE | Interest::WRITABLE)
        .map_err(SipError::Io)?;
    let mut core = SipCore::new(&config, relay, bound, Instant::now());
    info!(
        listen = %bound,
        advertised = %core.local_addr(),
        realm = %config.realm,
        users = config.users.len(),
        "SIP signaling up (UDP)"
    );
    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; 65_536];
    let mut pending: VecDeque<(SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut more_to_read = false;
    while !shutdown.load(Ordering::Relaxed) {
        let now = Instant::now();
        let mut wait = MAX_WAIT;
        if let Some(t) = core.poll_timeout() {
            wait = wait.min(t.saturating_duration_since(now));
        }
        if more_to_read {
            wait = Duration::ZERO;
        }
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(SipError::Io(e));
        }
        // Edge-triggered: read until WouldBlock (or the budget runs out,
        // then come back without waiting).
        more_to_read = false;
        for i in 0..=READ_BUDGET {
            if i == READ_BUDGET {
                more_to_read = true;
                break;
            }
            match sock.recv_from(&mut buf) {
                Ok((n, src)) => core.handle_datagram(&buf[..n], src, Instant::now()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. ECONNREFUSED left by an ICMP error: not fatal.
                    debug!(error = %e, "recv_from");
                    continue;
                }
            }
        }
        core.handle_timeout(Instant::now());
        if let Some(p) = snap.as_mut() {
            p.tick(&core, Instant::now());
        }
        while let Some((dest, bytes)) = pending.pop_front().or_else(|| core.poll_transmit()) {
            match sock.send_to(&bytes, dest) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Wait for WRITABLE; keep the datagram.
                    pending.push_front((dest, bytes));
                    break;
                }
                Err(e) => warn!(%dest, error = %e, "send_to failed; datagram dropped"),
            }
        }
    }
    info!(calls = core.calls(), stats = ?core.stats(), "SIP signaling stopped");
    Ok(())
}
