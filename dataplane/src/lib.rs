#![warn(missing_docs)]
//! tern's dataplane: thread-per-core io_uring workers that forward RTP and
//! RTCP between the two legs of relay slots.
//!
//! Slots are programmed through the shared-memory slot table
//! ([`tern_shared::table::SlotTable`]); each worker owns a contiguous block
//! of slots (`table.slots_of_worker(i)`), hence both legs of every call it
//! relays and a disjoint part of the port range, so a packet never crosses
//! cores.
//!
//! - [`worker`]: the io_uring loop (multishot receives from a provided
//!   buffer ring, batched copy-free sends, doorbell-driven slot programming).
//! - [`leg`]: the sans-IO per-packet decisions (learning policy, direction,
//!   validation, destination, SSRC rewriting).
//! - [`ssrc`]: SSRC/sequence/timestamp rewriting and RTCP SSRC mapping.
//! - [`bufring`], [`sockets`]: the provided-buffer ring, UDP sockets and
//!   socket addresses.
//! - [`host`]: what the host must give the relay (descriptors, a port
//!   range outside the kernel's ephemeral one).
//!
//! ```no_run
//! # use std::sync::{Arc, atomic::AtomicBool};
//! # use tern_shared::table::{SlotTable, TableParams};
//! let params = TableParams {
//!     port_lo: 20000,
//!     port_hi: 20999,
//!     workers: 2,
//!     media_ip: "127.0.0.1".parse().unwrap(),
//! };
//! let table = Arc::new(SlotTable::create_or_attach("default", params).unwrap());
//! let shutdown = Arc::new(AtomicBool::new(false));
//! let cfg = tern_dataplane::RelayConfig {
//!     workers: 2,
//!     bind_ip: "127.0.0.1".parse().unwrap(),
//!     pin: true,
//! };
//! let relay = tern_dataplane::start(cfg, table, shutdown.clone()).unwrap();
//! // ... program slots through the table; later:
//! shutdown.store(true, std::sync::atomic::Ordering::Relaxed);
//! relay.join().unwrap();
//! ```

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use tern_shared::table::SlotTable;

pub mod bufring;
pub mod dtls;
pub mod host;
pub mod inject;
pub mod leg;
pub mod media_play;
pub mod quality;
pub mod record;
pub mod sockets;
pub mod ssrc;
pub mod worker;

/// How to run the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayConfig {
    /// Worker threads; must equal the table's worker count
    /// ([`SlotTable::workers`]), since the table assigns slots to workers.
    pub workers: usize,
    /// Address the media sockets bind to (an IPv6 address binds dual-stack).
    pub bind_ip: IpAddr,
    /// Pin worker `i` to CPU `i % online CPUs` (`sched_setaffinity`); a
    /// failure to pin is logged, not fatal.
    pub pin: bool,
}

/// Errors from starting or running the relay.
#[derive(Debug)]
pub enum RelayError {
    /// The configuration does not fit the table (worker count).
    Config(String),
    /// A worker thread could not be spawned.
    Spawn(io::Error),
    /// Worker `worker` could not set up `what` (its io_uring, or its
    /// provided-buffer ring), e.g. io_uring disabled by
    /// `kernel.io_uring_disabled`, or `RLIMIT_MEMLOCK` too low.
    Setup {
        /// Worker index.
        worker: usize,
        /// The part that failed.
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// Worker `worker`'s `io_uring_enter` failed while running; the worker
    /// stopped.
    Ring {
        /// Worker index.
        worker: usize,
        /// The underlying error.
        source: io::Error,
    },
    /// A worker did not report its setup within 10 s.
    SetupTimeout,
    /// Worker thread `worker` panicked.
    Panicked(usize),
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::Config(s) => write!(f, "relay configuration: {s}"),
            RelayError::Spawn(e) => write!(f, "cannot spawn a relay worker thread: {e}"),
            RelayError::Setup {
                worker,
                what,
                source,
            } => write!(f, "relay worker {worker}: cannot set up {what}: {source}"),
            RelayError::Ring { worker, source } => {
                write!(f, "relay worker {worker}: io_uring failed: {source}")
            }
            RelayError::SetupTimeout => write!(f, "a relay worker did not start in time"),
            RelayError::Panicked(w) => write!(f, "relay worker {w} panicked"),
        }
    }
}

impl std::error::Error for RelayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RelayError::Spawn(e) => Some(e),
            RelayError::Setup { source, .. } | RelayError::Ring { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A running relay: its worker threads.
#[derive(Debug)]
pub struct Relay {
    handles: Vec<JoinHandle<Result<(), RelayError>>>,
    table: Arc<SlotTable>,
    /// Stopped after the workers (their handles are dropped first).
    _dtls: Option<dtls::DtlsTask>,
    /// The recording writer, stopped after the workers.
    _rec: Option<record::writer::Writer>,
}

/// How long [`start`] waits for each worker to set up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `cfg.workers` workers over `table` (created by the caller with
/// `SlotTable::create_or_attach`); worker `i` owns `table.slots_of_worker(i)`
/// and at once reattaches to its slots that are already active (same
/// ports, learned peers and SSRC state). Returns once every worker has its
/// ring set up. The workers run until `shutdown` is set; they notice within
/// [`worker::WAIT_MS`] ms and leave slot states alone, so a later relay on
/// the same table resumes the calls.
///
/// Errors: [`RelayError::Config`] (worker count zero or different from the
/// table's), [`RelayError::Spawn`], [`RelayError::Setup`],
/// [`RelayError::SetupTimeout`]; on error no worker is left running.
pub fn start(
    cfg: RelayConfig,
    table: Arc<SlotTable>,
    shutdown: Arc<AtomicBool>,
) -> Result<Relay, RelayError> {
    start_recording(cfg, table, shutdown, None)
}

/// [`start`], with call recording when `rec` names a directory: each
/// worker gets a recording ring ([`record::FrameRing`]) and one writer
/// thread ([`record::writer`]) drains them; `rec`'s tag lookup gives the
/// recordings' JSON the parties' tags. The writer stops after the workers.
///
/// Errors: those of [`start`]; [`RelayError::Config`] when the recording
/// directory cannot be created or the writer thread spawned.
pub fn start_recording(
    cfg: RelayConfig,
    table: Arc<SlotTable>,
    shutdown: Arc<AtomicBool>,
    rec: Option<(record::RecordConfig, Option<record::writer::TagLookup>)>,
) -> Result<Relay, RelayError> {
    if cfg.workers == 0 || cfg.workers != table.workers() as usize {
        return Err(RelayError::Config(format!(
            "{} workers requested but the slot table {} is laid out for {}",
            cfg.workers,
            table.path().display(),
            table.workers()
        )));
    }
    // A new binding epoch: stamps of an earlier dataplane are void, and
    // each worker stamps its free slots as it binds their ports.
    table.begin_epoch();
    let abort = Arc::new(AtomicBool::new(false));
    // Without a DTLS task the relay still carries plain and SDES calls;
    // DTLS records are then dropped and counted.
    let (dtls, mut dtls_handles) = match dtls::DtlsTask::start(&table, cfg.workers) {
        Ok((t, h)) => (Some(t), h.into_iter().map(Some).collect::<Vec<_>>()),
        Err(e) => {
            tracing::warn!("no DTLS-SRTP: {e}");
            (None, (0..cfg.workers).map(|_| None).collect())
        }
    };
    let mut taps: Vec<Option<record::RecordTap>> = (0..cfg.workers).map(|_| None).collect();
    let writer = match rec {
        None => None,
        Some((rc, tags)) => {
            let rings: Vec<Arc<record::FrameRing>> = (0..cfg.workers)
                .map(|_| Arc::new(record::FrameRing::new(rc.ring_frames)))
                .collect();
            for (t, r) in taps.iter_mut().zip(&rings) {
                *t = Some(record::RecordTap::new(r.clone()));
            }
            let w = record::writer::start(&rc, table.clone(), rings, tags).map_err(|e| {
                RelayError::Config(format!("recording directory {}: {e}", rc.dir.display()))
            })?;
            Some(w)
        }
    };
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(cfg.workers);
    let mut err = None;
    for (i, d) in dtls_handles.iter_mut().enumerate() {
        let sp = worker::Spawn {
            index: i as u32,
            table: table.clone(),
            bind_ip: cfg.bind_ip,
            pin: cfg.pin,
            shutdown: shutdown.clone(),
            abort: abort.clone(),
            ready: tx.clone(),
            dtls: d.take(),
            rec: taps.get_mut(i).and_then(Option::take),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("tern-dp-{i}"))
            .spawn(move || worker::thread_main(sp));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                err = Some(RelayError::Spawn(e));
                break;
            }
        }
    }
    drop(tx);
    if err.is_none() {
        for _ in 0..handles.len() {
            match rx.recv_timeout(SETUP_TIMEOUT) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    err = Some(e);
                    break;
                }
                Err(_) => {
                    err = Some(RelayError::SetupTimeout);
                    break;
                }
            }
        }
    }
    drop(dtls_handles);
    let relay = Relay {
        handles,
        table,
        _dtls: dtls,
        _rec: writer,
    };
    match err {
        None => Ok(relay),
        Some(e) => {
            abort.store(true, Ordering::Relaxed);
            let _ = relay.join();
            Err(e)
        }
    }
}

impl Relay {
    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.handles.len()
    }

    /// Waits for every worker to stop (after the shutdown flag is set, or a
    /// worker failed), returning the first worker's error, if any.
    ///
    /// Errors: [`RelayError::Ring`], [`RelayError::Panicked`].
    pub fn join(self) -> Result<(), RelayError> {
        let mut first = Ok(());
        let Relay {
            handles,
            table,
            _dtls,
            _rec,
        } = self;
        for (i, h) in handles.into_iter().enumerate() {
            let r = h.join().unwrap_or(Err(RelayError::Panicked(i)));
            if first.is_ok() {
                first = r;
            }
        }
        // The sockets are closed: no free slot may be handed out on the
        // workers' stamps any more.
        table.begin_epoch();
        drop(_dtls);
        if let Some(w) = _rec {
            w.stop();
        }
        first
    }
}
