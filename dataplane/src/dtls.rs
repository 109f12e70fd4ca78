//! The DTLS task: one thread that runs every DTLS-SRTP handshake (RFC
//! 5763/5764) of the dataplane, so a slow or hostile handshake never stalls
//! forwarding.
//!
//! Workers hand it what they see over one bounded channel ([`ToTask`]): a
//! leg to start (its role and the peer's fingerprint), a leg to stop, and
//! each DTLS datagram (first byte 20–63, RFC 7983) a leg received. A full
//! channel drops the datagram (counted as `dtls`), which DTLS's own
//! retransmissions (RFC 6347 §4.2.4) recover from. The task answers each
//! worker on its own channel ([`FromTask`]): datagrams to send to the
//! leg's peer, and the SRTP keys a finished handshake exported; the worker
//! owns the sockets, so it sends them.
//!
//! The relay's certificate (ECDSA P-256) is made when the task starts; its
//! SHA-256 fingerprint is published in the slot table for the control
//! planes' `a=fingerprint`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_secure::dtls::{Certificate, Endpoint, Fingerprint, HashAlg, Role, State};
use tern_secure::srtp::Suite;
use tern_shared::table::{DropReason, DtlsParams, DtlsRole, SlotTable, SrtpKeying};
use tracing::{debug, info, warn};

/// Datagrams and commands the channel to the task holds before it drops
/// datagrams.
pub const QUEUE: usize = 4096;
/// Most DTLS datagrams one leg may have queued into a handshake before it
/// completes or fails (a flood from one peer cannot grow memory).
pub const MAX_PENDING_OUT: usize = 64;
/// Longest a handshake may take before the leg is given up, s.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A leg, as the task keys its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LegKey {
    /// The worker that owns the slot (answers go back to it).
    pub worker: u32,
    /// The slot id in the table.
    pub slot: u32,
    /// 0 (A) or 1 (B).
    pub leg: usize,
    /// The leg's component: 0 RTP (or both, with rtcp-mux), 1 RTCP. Each
    /// component on its own port is its own DTLS association (RFC 5764
    /// §4.1), keyed separately.
    pub component: u8,
    /// The worker's generation of the slot, so a reused slot's answers
    /// are never taken for the old call's.
    pub gen: u16,
}

/// What workers send the task. Fields: the leg, its DTLS parameters
/// (role and the peer's fingerprint), a received datagram.
#[allow(missing_docs)]
pub enum ToTask {
    /// Start (or restart, with a new fingerprint or role) the leg's
    /// handshake.
    Start { key: LegKey, params: DtlsParams },
    /// The leg's slot closed.
    Stop { key: LegKey },
    /// A DTLS datagram the leg received.
    Datagram { key: LegKey, bytes: Vec<u8> },
}

/// What the task sends a worker back. Fields: the leg, a datagram to
/// send, and the exported keying (`rx` unprotects what the peer sends,
/// `tx` protects what the relay sends).
#[allow(missing_docs)]
pub enum FromTask {
    /// Send `bytes` to the leg's peer.
    Transmit { key: LegKey, bytes: Vec<u8> },
    /// The handshake finished: (unprotect, protect) keying.
    Keys {
        key: LegKey,
        rx: SrtpKeying,
        tx: SrtpKeying,
    },
}

/// A worker's end of the task's channels.
pub struct DtlsHandle {
    to_task: SyncSender<ToTask>,
    from_task: Receiver<FromTask>,
}

impl DtlsHandle {
    /// Queues a DTLS datagram of `leg`; `Some(DropReason::Dtls)` when the
    /// queue is full (or the task is gone) and the datagram was dropped.
    pub fn submit(&self, key: LegKey, bytes: &[u8]) -> Option<DropReason> {
        let msg = ToTask::Datagram {
            key,
            bytes: bytes.to_vec(),
        };
        match self.to_task.try_send(msg) {
            Ok(()) => None,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                Some(DropReason::Dtls)
            }
        }
    }

    /// Queues a command (start or stop); false when it could not be
    /// queued.
    pub fn command(&self, msg: ToTask) -> bool {
        self.to_task.try_send(msg).is_ok()
    }

    /// The task's next answer for this worker, if one waits.
    pub fn poll(&self) -> Option<FromTask> {
        self.from_task.try_recv().ok()
    }
}

/// The running task.
#[derive(Debug)]
pub struct DtlsTask {
    thread: Option<std::thread::JoinHandle<()>>,
    /// Ends the task's loop (within its 500 ms wait), whether or not the
    /// workers, which hold senders, are still running.
    quit: Arc<AtomicBool>,
}

impl DtlsTask {
    /// Makes the certificate, publishes its fingerprint in `table`, and
    /// starts the task for `workers` workers; their handles, by index.
    ///
    /// Errors: the certificate could not be made, or the thread spawned.
    pub fn start(
        table: &Arc<SlotTable>,
        workers: usize,
    ) -> Result<(DtlsTask, Vec<DtlsHandle>), String> {
        let cert = Certificate::generate().map_err(|e| format!("DTLS certificate: {e}"))?;
        let fp = cert.fingerprint();
        let digest: [u8; 32] = fp
            .digest
            .as_slice()
            .try_into()
            .map_err(|_| "DTLS certificate fingerprint is not SHA-256".to_string())?;
        table.set_dtls_fingerprint(&digest);
        info!(fingerprint = %fp, "DTLS certificate made");
        let (to_task, inbox) = mpsc::sync_channel(QUEUE);
        let mut outs = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel();
            outs.push(tx);
            handles.push(DtlsHandle {
                to_task: to_task.clone(),
                from_task: rx,
            });
        }
        drop(to_task);
        let quit = Arc::new(AtomicBool::new(false));
        let q = quit.clone();
        let thread = std::thread::Builder::new()
            .name("tern-dtls".into())
            .spawn(move || run(cert, inbox, outs, &q))
            .map_err(|e| format!("DTLS task: {e}"))?;
        Ok((
            DtlsTask {
                thread: Some(thread),
                quit,
            },
            handles,
        ))
    }
}

impl Drop for DtlsTask {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Leg {
    ep: Endpoint,
    started: Instant,
    /// When the endpoint's retransmission timer fires.
    timer: Option<Instant>,
    /// Whether the peer sent anything (or we started it, as the client).
    heard: bool,
}

fn hash_alg(h: u8) -> Option<HashAlg> {
    match h {
        1 => Some(HashAlg::Sha1),
        2 => Some(HashAlg::Sha224),
        3 => Some(HashAlg::Sha256),
        4 => Some(HashAlg::Sha384),
        5 => Some(HashAlg::Sha512),
        _ => None,
    }
}

fn run(
    cert: Certificate,
    inbox: Receiver<ToTask>,
    outs: Vec<mpsc::Sender<FromTask>>,
    quit: &AtomicBool,
) {
    let mut legs: HashMap<LegKey, Leg> = HashMap::new();
    while !quit.load(Ordering::Relaxed) {
        let wait = legs
            .values()
            .filter_map(|l| l.timer)
            .min()
            .map_or(Duration::from_millis(500), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .min(Duration::from_millis(500));
        match inbox.recv_timeout(wait) {
            Ok(msg) => handle(&cert, &mut legs, &outs, msg),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        legs.retain(|key, l| {
            if l.timer.is_some_and(|t| t <= now) {
                if let Err(e) = l.ep.handle_timeout() {
                    debug!(slot = key.slot, leg = key.leg, "DTLS timeout: {e}");
                }
                flush(key, l, &outs);
            }
            let done = matches!(l.ep.state(), State::Connected);
            let failed = matches!(l.ep.state(), State::Failed | State::Closed);
            if !done && now.duration_since(l.started) > HANDSHAKE_TIMEOUT {
                if l.heard {
                    warn!(
                        slot = key.slot,
                        leg = key.leg,
                        component = key.component,
                        "DTLS handshake timed out"
                    );
                } else {
                    // A passive RTCP component whose peer keys RTCP from
                    // the RTP association (or muxes after all).
                    debug!(
                        slot = key.slot,
                        leg = key.leg,
                        component = key.component,
                        "no DTLS from the peer"
                    );
                }
                return false;
            }
            // A connected endpoint stays, so a peer's retransmitted last
            // flight is still answered.
            !failed
        });
    }
}

fn handle(
    cert: &Certificate,
    legs: &mut HashMap<LegKey, Leg>,
    outs: &[mpsc::Sender<FromTask>],
    msg: ToTask,
) {
    match msg {
        ToTask::Start { key, params } => {
            let Some(alg) = hash_alg(params.hash) else {
                warn!(
                    slot = key.slot,
                    leg = key.leg,
                    "DTLS: unknown fingerprint hash"
                );
                return;
            };
            let fp = Fingerprint {
                algorithm: alg,
                digest: params.digest().to_vec(),
            };
            let role = match params.role {
                DtlsRole::Active => Role::Active,
                DtlsRole::Passive => Role::Passive,
            };
            legs.retain(|k, _| {
                !(k.worker == key.worker
                    && k.slot == key.slot
                    && k.leg == key.leg
                    && k.component == key.component)
            });
            match Endpoint::new(cert, role, fp) {
                Ok(ep) => {
                    debug!(
                        slot = key.slot,
                        leg = key.leg,
                        component = key.component,
                        ?role,
                        "DTLS handshake started"
                    );
                    let mut l = Leg {
                        ep,
                        started: Instant::now(),
                        timer: None,
                        heard: role == Role::Active,
                    };
                    flush(&key, &mut l, outs);
                    legs.insert(key, l);
                }
                Err(e) => warn!(slot = key.slot, leg = key.leg, "DTLS endpoint: {e}"),
            }
        }
        // Every component of the leg.
        ToTask::Stop { key } => {
            legs.retain(|k, _| !(k.worker == key.worker && k.slot == key.slot && k.leg == key.leg));
        }
        ToTask::Datagram { key, bytes } => {
            let Some(l) = legs.get_mut(&key) else {
                return;
            };
            l.heard = true;
            if let Err(e) = l.ep.handle_datagram(&bytes) {
                debug!(slot = key.slot, leg = key.leg, "DTLS datagram refused: {e}");
            }
            flush(&key, l, outs);
        }
    }
}

/// Sends what `l` has to transmit, its keys once connected, and re-arms
/// its timer.
fn flush(key: &LegKey, l: &mut Leg, outs: &[mpsc::Sender<FromTask>]) {
    let Some(out) = outs.get(key.worker as usize) else {
        return;
    };
    let mut n = 0;
    while let Some(bytes) = l.ep.poll_transmit() {
        n += 1;
        if n > MAX_PENDING_OUT {
            break;
        }
        let _ = out.send(FromTask::Transmit { key: *key, bytes });
    }
    if let Some(k) = l.ep.take_keying() {
        let keys = Suite::from_dtls_profile(k.profile).and_then(|s| {
            let join = |a: &[u8], b: &[u8]| {
                let mut v = a.to_vec();
                v.extend_from_slice(b);
                SrtpKeying::new(s.as_u8(), &v)
            };
            Some((
                join(&k.remote_key, &k.remote_salt)?,
                join(&k.local_key, &k.local_salt)?,
            ))
        });
        match keys {
            Some((rx, tx)) => {
                info!(
                    slot = key.slot,
                    leg = key.leg,
                    profile = k.profile,
                    "DTLS-SRTP keys"
                );
                let _ = out.send(FromTask::Keys { key: *key, rx, tx });
            }
            None => warn!(
                slot = key.slot,
                leg = key.leg,
                profile = k.profile,
                "DTLS-SRTP profile unusable"
            ),
        }
    }
    l.timer = l.ep.timeout().map(|d| Instant::now() + d);
}
