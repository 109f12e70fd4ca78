//! The ng sockets: one UDP thread (which also runs the timeouts) and one
//! TCP acceptor with a thread per connection, sharing one [`NgCore`]
//! behind a mutex. Only this file owns sockets and clocks; the protocol is
//! [`crate::core`]'s, a sans-IO core.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tern_shared::table::SlotTable;
use tracing::{debug, info, warn};

use crate::acl::{Acl, Cidr};
use crate::bencode;
use crate::core::{self, CoreConfig, NgCore, NgStats};

/// The default control address, as rtpengine's usual `listen-ng`.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2223);

/// How often the UDP thread wakes up to check the shutdown flag and run the
/// timeouts.
const TICK: Duration = Duration::from_millis(100);

/// The value of `--ng`: an address, a bare port (on 127.0.0.1), or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NgListen(pub Option<SocketAddr>);

impl FromStr for NgListen {
    type Err = String;

    /// Parses `ADDR:PORT`, `PORT` or `off`.
    fn from_str(s: &str) -> Result<NgListen, String> {
        let s = s.trim();
        if matches!(s, "off" | "none" | "no") {
            return Ok(NgListen(None));
        }
        if let Ok(port) = s.parse::<u16>() {
            return Ok(NgListen(Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port,
            ))));
        }
        s.parse::<SocketAddr>()
            .map(|a| NgListen(Some(a)))
            .map_err(|e| format!("{s:?}: {e}; expected ADDR:PORT, PORT or off"))
    }
}

/// How to run the control server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NgConfig {
    /// UDP address; TCP listens on the same address and port. Port 0 picks
    /// a free one (see [`NgServer::udp_addr`]).
    pub listen: SocketAddr,
    /// Also serve TCP.
    pub tcp: bool,
    /// Most TCP connections at once; more are closed at once.
    pub max_tcp_connections: usize,
    /// A TCP connection idle this long is closed.
    pub tcp_idle: Duration,
    /// The protocol core's settings (timeout, cache, access list).
    pub core: CoreConfig,
}

impl Default for NgConfig {
    /// [`DEFAULT_LISTEN`], TCP on, 64 connections idle at most 5 minutes,
    /// [`CoreConfig::default`].
    fn default() -> Self {
        NgConfig {
            listen: DEFAULT_LISTEN,
            tcp: true,
            max_tcp_connections: 64,
            tcp_idle: Duration::from_secs(300),
            core: CoreConfig::default(),
        }
    }
}

impl NgConfig {
    /// The defaults with `listen`, the extra allowed sources `allow` and a
    /// media timeout of `timeout_s` seconds (0: none).
    pub fn new(listen: SocketAddr, allow: Vec<Cidr>, timeout_s: u64) -> NgConfig {
        let mut c = NgConfig {
            listen,
            ..Default::default()
        };
        c.core.acl = Acl::new(allow);
        c.core.timeout_ms = timeout_s.saturating_mul(1000);
        c
    }
}

/// Errors from [`start`].
#[derive(Debug)]
pub enum NgError {
    /// The socket could not be bound (address in use, not local, ...).
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// `"udp"` or `"tcp"`.
        proto: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// A server thread could not be spawned, or a socket option set.
    Io(io::Error),
}

impl fmt::Display for NgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NgError::Bind {
                addr,
                proto,
                source,
            } => {
                write!(f, "ng control socket: cannot bind {proto}:{addr}: {source}")
            }
            NgError::Io(e) => write!(f, "ng control socket: {e}"),
        }
    }
}

impl std::error::Error for NgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NgError::Bind { source, .. } => Some(source),
            NgError::Io(e) => Some(e),
        }
    }
}

/// A running control server.
#[derive(Debug)]
pub struct NgServer {
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    core: Arc<Mutex<NgCore>>,
    handles: Vec<JoinHandle<()>>,
}

/// Unix time, ms (0 before 1970): [`tern_shared::clock::unix_ms`].
pub use tern_shared::clock::unix_ms;

fn lock(core: &Mutex<NgCore>) -> MutexGuard<'_, NgCore> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the control server on `cfg.listen` (UDP, and TCP on the same
/// port when `cfg.tcp`), programming `table`. Runs until `shutdown` is set
/// (noticed within 100 ms); then [`NgServer::join`] waits for the threads
/// and releases the slots of the calls still held.
///
/// Errors: [`NgError::Bind`] (e.g. the port is taken), [`NgError::Io`].
pub fn start(
    cfg: NgConfig,
    table: Arc<SlotTable>,
    shutdown: Arc<AtomicBool>,
) -> Result<NgServer, NgError> {
    let udp = UdpSocket::bind(cfg.listen).map_err(|source| NgError::Bind {
        addr: cfg.listen,
        proto: "udp",
        source,
    })?;
    udp.set_read_timeout(Some(TICK)).map_err(NgError::Io)?;
    let udp_addr = udp.local_addr().map_err(NgError::Io)?;
    let tcp = if cfg.tcp {
        let at = SocketAddr::new(cfg.listen.ip(), udp_addr.port());
        let l = TcpListener::bind(at).map_err(|source| NgError::Bind {
            addr: at,
            proto: "tcp",
            source,
        })?;
        l.set_nonblocking(true).map_err(NgError::Io)?;
        Some(l)
    } else {
        None
    };
    let tcp_addr = match &tcp {
        Some(l) => Some(l.local_addr().map_err(NgError::Io)?),
        None => None,
    };
    if !cfg.listen.ip().is_loopback() && cfg.core.acl.blocks().is_empty() {
        warn!(
            "ng control socket bound to {} but no --ng-allow given: only loopback sources are served",
            cfg.listen
        );
    }
    let core = Arc::new(Mutex::new(NgCore::new(table, cfg.core.clone(), unix_ms())));
    let mut handles = Vec::new();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(f)
            .map_err(NgError::Io)
    };
    {
        let (core, shutdown) = (core.clone(), shutdown.clone());
        handles.push(spawn(
            "tern-ng-udp",
            Box::new(move || udp_loop(udp, core, shutdown)),
        )?);
    }
    if let Some(l) = tcp {
        let (core, sd) = (core.clone(), shutdown.clone());
        let max = cfg.max_tcp_connections;
        let idle = cfg.tcp_idle;
        match spawn(
            "tern-ng-tcp",
            Box::new(move || tcp_accept_loop(l, core, sd, max, idle)),
        ) {
            Ok(h) => handles.push(h),
            Err(e) => {
                shutdown.store(true, Ordering::Relaxed);
                for h in handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
    }
    info!(udp = %udp_addr, tcp = ?tcp_addr, "ng control socket listening");
    Ok(NgServer {
        udp_addr,
        tcp_addr,
        core,
        handles,
    })
}

impl NgServer {
    /// The UDP address served.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The TCP address served, if TCP is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The control plane's counters.
    pub fn stats(&self) -> NgStats {
        lock(&self.core).stats()
    }

    /// Waits for the server threads to stop (after the shutdown flag is
    /// set), then ends every call still held and releases its slots.
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
        lock(&self.core).release_all(unix_ms());
    }
}

/// How long the UDP thread keeps polling without blocking after a reply.
/// A client that sets calls up one at a time sends its next message (the
/// answer after the offer) within tens of µs of reading a reply; catching
/// it here spares the kernel's sleep and wake-up of the thread, which was
/// about half of the per-setup time (docs/BENCHMARKS.md). Bounded so an
/// idle relay burns at most this much CPU per request served.
const SPIN: Duration = Duration::from_micros(40);

/// One non-blocking receive (`MSG_DONTWAIT`), leaving the socket itself
/// blocking with its read timeout. `Ok(None)`: nothing queued.
fn try_recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
    let s = socket2::SockRef::from(sock);
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and the
    // kernel only writes initialised bytes into the buffer.
    let un = unsafe {
        std::slice::from_raw_parts_mut(
            buf.as_mut_ptr().cast::<std::mem::MaybeUninit<u8>>(),
            buf.len(),
        )
    };
    match s.recv_from_with_flags(un, libc::MSG_DONTWAIT) {
        Ok((n, from)) => match from.as_socket() {
            Some(a) => Ok(Some((n, a))),
            None => Ok(None),
        },
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

fn udp_loop(sock: UdpSocket, core: Arc<Mutex<NgCore>>, shutdown: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 65_536];
    let mut last_poll = Instant::now();
    // Set after a request was served: the next receive spins first.
    let mut spin = false;
    while !shutdown.load(Ordering::Relaxed) {
        let mut got = None;
        if spin {
            spin = false;
            let until = Instant::now() + SPIN;
            loop {
                match try_recv(&sock, &mut buf) {
                    Ok(Some(r)) => {
                        got = Some(Ok(r));
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        got = Some(Err(e));
                        break;
                    }
                }
                if Instant::now() >= until {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let got = match got {
            Some(r) => r,
            None => sock.recv_from(&mut buf),
        };
        match got {
            Ok((n, src)) => {
                let reply = lock(&core).handle(&buf[..n], src, unix_ms());
                if let Some(r) = reply {
                    if let Err(e) = sock.send_to(&r, src) {
                        debug!(%src, "ng: reply of {} bytes not sent: {e}", r.len());
                    }
                }
                spin = true;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                // ICMP errors from earlier replies surface here; keep serving.
                debug!("ng: udp receive: {e}");
            }
        }
        if last_poll.elapsed() >= Duration::from_millis(1000) {
            last_poll = Instant::now();
            lock(&core).poll_timeouts(unix_ms());
        }
    }
}

/// Waits up to [`TICK`] for `listener` to have a connection to accept, so
/// the acceptor sleeps in the kernel instead of polling, yet still sees the
/// shutdown flag within a tick.
fn wait_readable(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1; EINTR or errors just end the wait.
    unsafe {
        libc::poll(&mut p, 1, TICK.as_millis() as libc::c_int);
    }
}

fn tcp_accept_loop(
    listener: TcpListener,
    core: Arc<Mutex<NgCore>>,
    shutdown: Arc<AtomicBool>,
    max: usize,
    idle: Duration,
) {
    let live = Arc::new(AtomicUsize::new(0));
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !shutdown.load(Ordering::Relaxed) {
        conns.retain(|h| !h.is_finished());
        match listener.accept() {
            Ok((stream, src)) => {
                if !lock(&core).acl().permits(src.ip()) {
                    lock(&core).count_unauthorized();
                    debug!(%src, "ng: tcp connection from a source not allowed closed");
                    continue;
                }
                if live.load(Ordering::Relaxed) >= max {
                    warn!(%src, "ng: too many tcp connections ({max}); closing");
                    continue;
                }
                live.fetch_add(1, Ordering::Relaxed);
                let (core, sd, live2) = (core.clone(), shutdown.clone(), live.clone());
                let spawned = std::thread::Builder::new()
                    .name("tern-ng-conn".into())
                    .spawn(move || {
                        tcp_conn(stream, src, &core, &sd, idle);
                        live2.fetch_sub(1, Ordering::Relaxed);
                    });
                match spawned {
                    Ok(h) => conns.push(h),
                    Err(e) => {
                        live.fetch_sub(1, Ordering::Relaxed);
                        warn!("ng: cannot spawn a tcp connection thread: {e}");
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_readable(&listener),
            Err(e) => {
                debug!("ng: tcp accept: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    for h in conns {
        let _ = h.join();
    }
}

/// Longest buffered TCP input: one message and its cookie.
const MAX_TCP_BUF: usize = core::MAX_MESSAGE + core::MAX_COOKIE + 2;

/// What the front of a TCP buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// A complete message of this many bytes (after `skip` bytes of white
    /// space).
    Message { skip: usize, len: usize },
    /// More bytes are needed.
    More,
    /// The stream cannot be framed any more: answer what there is, close.
    Broken,
}

/// Splits the next message off a TCP buffer: white space, a cookie, one
/// space, one bencode dictionary.
fn next_frame(buf: &[u8]) -> Frame {
    let skip = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let rest = &buf[skip..];
    if rest.is_empty() {
        return Frame::More;
    }
    let Some(sp) = rest
        .iter()
        .take(core::MAX_COOKIE + 1)
        .position(|&b| b == b' ')
    else {
        return if rest.len() > core::MAX_COOKIE {
            Frame::Broken
        } else {
            Frame::More
        };
    };
    if sp == 0 {
        return Frame::Broken;
    }
    match bencode::scan(&rest[sp + 1..], core::MAX_MESSAGE) {
        bencode::Scan::Complete(n) => Frame::Message {
            skip,
            len: sp + 1 + n,
        },
        bencode::Scan::Incomplete => Frame::More,
        bencode::Scan::Invalid(_) => Frame::Broken,
    }
}

fn tcp_conn(
    mut stream: TcpStream,
    src: SocketAddr,
    core: &Mutex<NgCore>,
    shutdown: &AtomicBool,
    idle: Duration,
) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(TICK)).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    let mut last = Instant::now();
    while !shutdown.load(Ordering::Relaxed) && last.elapsed() < idle {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                last = Instant::now();
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        loop {
            match next_frame(&buf) {
                Frame::Message { skip, len } => {
                    let reply = lock(core).handle(&buf[skip..skip + len], src, unix_ms());
                    buf.drain(..skip + len);
                    if let Some(r) = reply {
                        if stream.write_all(&r).is_err() {
                            return;
                        }
                    }
                }
                Frame::More if buf.len() <= MAX_TCP_BUF => break,
                Frame::More | Frame::Broken => {
                    // Answer (with an error) what cannot be framed, close.
                    let end = buf.len().min(MAX_TCP_BUF);
                    if let Some(r) = lock(core).handle(&buf[..end], src, unix_ms()) {
                        let _ = stream.write_all(&r);
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_recv_does_not_block_and_keeps_the_socket_blocking() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 64];
        let t = Instant::now();
        assert!(try_recv(&a, &mut buf).unwrap().is_none());
        assert!(t.elapsed() < Duration::from_millis(40));
        b.send_to(b"abc d7:command4:pinge", a.local_addr().unwrap())
            .unwrap();
        let mut got = None;
        for _ in 0..100 {
            got = try_recv(&a, &mut buf).unwrap();
            if got.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let (n, from) = got.expect("datagram queued on loopback");
        assert_eq!(&buf[..n], b"abc d7:command4:pinge");
        assert_eq!(from, b.local_addr().unwrap());
        // The socket itself still blocks (up to its read timeout).
        let t = Instant::now();
        assert!(a.recv_from(&mut buf).is_err());
        assert!(t.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn frames_tcp_messages() {
        assert_eq!(next_frame(b""), Frame::More);
        assert_eq!(next_frame(b"\r\n"), Frame::More);
        assert_eq!(next_frame(b"abc"), Frame::More);
        assert_eq!(next_frame(b"abc d7:command"), Frame::More);
        let m = b"\nabc d7:command4:pingeX";
        assert_eq!(next_frame(m), Frame::Message { skip: 1, len: 21 });
        assert_eq!(next_frame(b"abc xyz"), Frame::Broken);
        assert_eq!(next_frame(b" "), Frame::More);
        assert_eq!(next_frame(&[b'a'; 300]), Frame::Broken);
    }

    #[test]
    fn parses_listen() {
        assert_eq!("off".parse::<NgListen>(), Ok(NgListen(None)));
        assert_eq!(
            "2224".parse::<NgListen>(),
            Ok(NgListen(Some("127.0.0.1:2224".parse().unwrap())))
        );
        assert_eq!(
            "[::1]:5".parse::<NgListen>(),
            Ok(NgListen(Some("[::1]:5".parse().unwrap())))
        );
        assert!("nope".parse::<NgListen>().is_err());
    }
}
