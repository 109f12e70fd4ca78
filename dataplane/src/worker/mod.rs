//! The io_uring worker: one thread, one ring, one provided-buffer ring,
//! the sockets of the worker's slots.
//!
//! One loop iteration ([`Worker::run`], in `ring.rs`):
//!
//! 1. reap every completion: received packets go down the packet path
//!    (`forward.rs`) and are either recycled (dropped) or sent, copy-free,
//!    out of the other leg's socket straight from the provided buffer (the
//!    buffer goes back to the ring when the send completes); send
//!    completions recycle their buffers; receive completions without
//!    `F_MORE` (or with `-ENOBUFS`) queue a re-arm;
//! 2. if the worker's doorbell moved, take the slots marked changed in the
//!    table's changed bitmap (not a pass over every slot) and bind,
//!    reconfigure or drain them (`slot.rs`);
//! 3. every [`TICK_MS`]: heartbeat and totals, bind retries, close timeouts;
//! 4. play out due jitter-buffered packets (`jitter_store.rs`), re-arm
//!    receives, publish recycled buffers, and make one `io_uring_enter`
//!    that submits everything and waits for completions with a timeout of
//!    [`WAIT_MS`] (so shutdown and doorbells are noticed), batching up to
//!    [`MIN_WAIT_US`] µs more when busy.
//!
//! Nothing on the packet path allocates, locks or makes a syscall: the
//! send slab, completion batch and re-arm list are preallocated.
//!
//! # Clock
//!
//! Each iteration reads the clock once (a vDSO read, not per packet): a
//! monotonic [`Instant`] and the Unix time with it. The packet path takes
//! only the instant; the Unix ms the slot table's counters and DTMF events
//! carry is derived from it. The packets of one batch share it, so RFC 3550
//! A.8 jitter carries an error of at most one iteration (tens of µs idle,
//! up to [`MIN_WAIT_US`] when busy).
//!
//! # Quality and jitter buffers
//!
//! Each accepted packet feeds its slot's [`SlotFeed`] (RFC 3550
//! statistics, DTMF detection, RTCP report blocks). Statistics are
//! published to the slot's worker-owned counter lines every [`TICK_MS`]
//! (with the E-model MOS), DTMF events as they complete.
//!
//! A leg whose configuration enables the jitter buffer gets its RTP through
//! a [`JitterBuffer`](crate::quality::jitter::JitterBuffer): the packet is
//! copied into a store preallocated for that leg when the buffer is
//! switched on (no allocation per packet), its provided buffer goes
//! straight back to the ring, and the worker plays buffered packets out at
//! their deadlines. The loop caps its wait at the earliest deadline among
//! its buffers, so no timer thread is needed.
//!
//! # Rooms
//!
//! - `ring.rs`: the loop, the wait, reaping and completions, re-arming;
//! - `user_data.rs`: what an SQE's user_data carries;
//! - `forward.rs`: one received datagram, stage by stage;
//! - `slot.rs`: a slot's life (bind, open, reconfigure, close, tick);
//! - `jitter_store.rs`: jitter buffers and their packet stores;
//! - `secure.rs`: SRTP contexts and the ICE-lite responder of a leg;
//! - `transcode.rs`: a leg's transcoder and the sending of its output;
//! - `media_play.rs`: ng `play media` (prompts played toward a peer).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, squeue, IoUring};
use socket2::Socket;
use tern_shared::rtp::RtpPacket;
use tern_shared::table::{SlotTable, WorkerRing};
use tracing::{debug, warn};

use crate::bufring::BufRing;
use crate::dtls::DtlsHandle;
use crate::inject::DtmfPlayer;
use crate::leg::Forwarder;
use crate::quality::feed::SlotFeed;
use crate::quality::jitter::PacketInfo;
use crate::sockets::{write_sockaddr, RawAddr};
use crate::RelayError;

use self::jitter_store::{JStore, LegJitter};
use self::secure::SlotSecure;
use self::transcode::LegTranscode;

mod forward;
mod jitter_store;
mod media_play;
mod record_tap;
mod ring;
mod secure;
mod slot;
mod transcode;
mod user_data;

/// Bytes per provided buffer: io_uring's 16-byte recvmsg header, the
/// 28-byte source address, and up to 2004 bytes of UDP payload.
pub const BUF_SIZE: u32 = 2048;
/// Provided buffers per worker (a power of two), well above a burst.
pub const BUF_ENTRIES: u16 = 8192;
/// Submission queue entries.
pub const SQ_ENTRIES: u32 = 4096;
/// Completion queue entries (receives and sends of a full buffer ring).
pub const CQ_ENTRIES: u32 = 16384;
/// Longest wait for completions, ms: bounds how late a doorbell or the
/// shutdown flag is noticed.
pub const WAIT_MS: u32 = 20;
/// Period of heartbeats, bind retries and close timeouts, ms.
pub const TICK_MS: u64 = 100;
/// Delay before retrying a failed bind of an active slot, ms.
pub const BIND_RETRY_MS: u64 = 1000;
/// Delay before retrying a failed bind of a free slot, ms: nothing waits
/// for it (the slot is not handed out meanwhile), so it is retried seldom.
pub const FREE_BIND_RETRY_MS: u64 = 5000;
/// First retry of a free slot's failed bind, ms, doubling up to
/// [`FREE_BIND_RETRY_MS`]: right after a restart the previous process's
/// sockets may still be held while the kernel tears its io_uring down, and
/// those ports come back within a few hundred ms.
pub const FREE_BIND_FIRST_RETRY_MS: u64 = 100;
/// Longest wait for a closing slot's receives to be cancelled, ms.
pub const CLOSE_TIMEOUT_MS: u64 = 2000;
/// Extra wait (µs) for a batch of completions when the worker is busy
/// (Linux 6.12+ `min_wait`); zero added latency when idle. A rate-adaptive
/// batch (the completions expected in 100 µs at the measured rate, 200 µs
/// cap) was measured against this and did not pay: CPU per packet level
/// within noise, p50 at 50k pps 1.2–1.7× (docs/BENCHMARKS.md).
pub const MIN_WAIT_US: u32 = 100;
/// The buffer group id of the provided-buffer ring.
const BGID: u16 = 0;

/// Period of loss intervals (RFC 3550 A.3 `fraction lost`), ms.
pub const LOSS_INTERVAL_MS: u64 = 5000;
/// How early a jitter-buffered packet may leave: packets due within this
/// are played together, so the loop wakes for playout at most about once
/// per this interval however many buffers it drives.
pub const PLAYOUT_SLACK: Duration = Duration::from_millis(1);
/// Jitter stores a worker can name: a store id is 16 bits of a send's
/// user_data. A leg asking for a buffer past this is forwarded straight
/// through (and counted) rather than let an id wrap onto a live store.
pub const MAX_JSTORES: usize = 1 << 16;

/// Fixed-file index of socket `sock` of the worker's slot `idx`, with
/// `per_slot` sockets per slot (four per interface).
#[inline]
fn fixed_index(idx: usize, sock: usize, per_slot: usize) -> u32 {
    (idx * per_slot + sock % per_slot) as u32
}

/// Socket index within a slot: `iface * 4 + leg * 2 + rtcp`, so that
/// `sock & 3` is the socket's place within its interface's four and
/// `sock >> 2` the interface.
#[inline]
fn sock_index(iface: usize, leg: usize, rtcp: bool) -> usize {
    iface << 2 | (leg & 1) << 1 | usize::from(rtcp)
}

/// The interface leg `leg` of `fwd`'s configuration is on, among `n`
/// (an index past the list reads as the first).
#[inline]
fn leg_iface(fwd: &Forwarder, leg: usize, n: usize) -> usize {
    let i = usize::from(fwd.config().legs[leg & 1].iface);
    if i < n {
        i
    } else {
        0
    }
}

/// Unix time in ms (vDSO clock read, no syscall): the one copy in `shared`.
use tern_shared::clock::unix_ms as now_ms;

/// A loop iteration's clock: one monotonic reading and the Unix time read
/// with it, so that an instant of the iteration converts to the Unix ms
/// the slot table's counters and DTMF events carry.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Monotonic time of the reading.
    at: Instant,
    /// Unix time of the reading, ms.
    unix_ms: u64,
}

impl Clock {
    /// Reads both clocks (vDSO, no syscall).
    fn read() -> Clock {
        let unix_ms = now_ms();
        Clock {
            at: Instant::now(),
            unix_ms,
        }
    }

    /// Unix ms at `t`: the reading's, plus the monotonic time since it (0
    /// for an earlier `t`). The packet path passes the reading's own
    /// instant, which converts without arithmetic.
    #[inline]
    fn unix_ms(&self, t: Instant) -> u64 {
        if t == self.at {
            return self.unix_ms;
        }
        let since = t.saturating_duration_since(self.at).as_millis();
        self.unix_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
}

/// Per-send storage the kernel reads: header, one iovec, destination.
#[repr(C)]
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: RawAddr,
}

impl SendSlot {
    fn zeroed() -> SendSlot {
        SendSlot {
            // SAFETY: all-zero is a valid msghdr and iovec.
            hdr: unsafe { std::mem::zeroed() },
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            addr: RawAddr::zeroed(),
        }
    }

    /// Points the header at `len` bytes from `data` for `dest`; `None` when
    /// the address does not fit the socket's family.
    fn fill(&mut self, data: *mut u8, len: usize, dest: SocketAddr, v6: bool) -> Option<()> {
        let namelen = write_sockaddr(dest, v6, &mut self.addr)?;
        self.iov = libc::iovec {
            iov_base: data.cast(),
            iov_len: len,
        };
        self.hdr.msg_name = std::ptr::addr_of_mut!(self.addr).cast();
        self.hdr.msg_namelen = namelen;
        self.hdr.msg_iov = std::ptr::addr_of_mut!(self.iov);
        self.hdr.msg_iovlen = 1;
        Some(())
    }
}

/// One bound UDP socket of a slot.
#[derive(Default)]
struct Sock {
    sock: Option<Socket>,
    fd: RawFd,
    v6: bool,
    /// A multishot receive is outstanding (its final CQE not yet seen).
    armed: bool,
    /// The drop-all filter is attached: nothing is queued (free slot, or
    /// the RTCP port of an rtcp-mux leg).
    filtered: bool,
    /// Queued on the re-arm list.
    queued: bool,
    /// Installed in the worker's fixed-file table at `slot * 4 + sock`:
    /// SQEs name it by that index (`IOSQE_FIXED_FILE`), sparing the
    /// kernel an `fget` per operation.
    fixed: bool,
}

impl Sock {
    fn close(&mut self) {
        *self = Sock {
            fd: -1,
            ..Sock::default()
        };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No receives. Free slots keep their four sockets bound and filtered
    /// (stamped bound in the table once all four are).
    Idle,
    /// Sockets bound (maybe some pending a bind retry), forwarding.
    Bound,
    /// Receives cancelled, waiting for their final completions.
    Closing,
}

/// The worker's private state of one slot.
struct SlotRt {
    phase: Phase,
    /// Bind generation, in receive user_data.
    gen: u16,
    /// The seqlock value of the configuration in `fwd`.
    seq: u32,
    fwd: Option<Forwarder>,
    /// Per interface `[leg0 rtp, leg0 rtcp, leg1 rtp, leg1 rtcp]`
    /// ([`sock_index`]): every port of the slot is bound on every
    /// interface; a leg reads only its own interface's.
    socks: Box<[Sock]>,
    bind_pending: bool,
    next_bind_ms: u64,
    /// The current wait between retries of a free slot's binds, ms.
    bind_backoff_ms: u64,
    closing_since_ms: u64,
    /// The close is for a release: move the slot to Free when done.
    drain: bool,
    /// Quality and DTMF of both legs.
    q: Box<SlotFeed>,
    /// The slot's Call-ID label, read when it was (re)configured, for logs
    /// (the table's is cleared at release).
    call_id: String,
    /// Jitter buffers of what is sent to leg 0's and leg 1's peer.
    jit: [Option<LegJitter>; 2],
    /// SRTP contexts and ICE-lite responders; `None` for a plain slot.
    sec: Option<Box<SlotSecure>>,
    /// ng `play DTMF` being played into what each leg's peer sends.
    play: [Option<Box<DtmfPlayer>>; 2],
    /// The id of the last play request taken per leg, so a request
    /// republished with later configurations is played once.
    played: [u32; 2],
    /// Transcoders of what each leg's peer sends (`transcode.rs`).
    xc: [Option<Box<LegTranscode>>; 2],
    /// ng `play media` on each leg (`media_play.rs`).
    plays: Option<Box<media_play::SlotPlays>>,
}

impl SlotRt {
    fn new(socks: usize) -> SlotRt {
        SlotRt {
            phase: Phase::Idle,
            gen: 0,
            seq: 0,
            fwd: None,
            socks: (0..socks)
                .map(|_| Sock {
                    fd: -1,
                    ..Sock::default()
                })
                .collect(),
            bind_pending: false,
            next_bind_ms: 0,
            bind_backoff_ms: 0,
            closing_since_ms: 0,
            drain: false,
            q: Box::new(SlotFeed::new()),
            call_id: String::new(),
            jit: [None, None],
            sec: None,
            play: [None, None],
            played: [0, 0],
            xc: [None, None],
            plays: None,
        }
    }
}

/// One worker: owns its ring, buffers and the sockets of its slots.
///
/// Field order is drop order: the ring goes first, so the kernel is done
/// with the buffers, send slab and receive header before they are freed.
pub struct Worker {
    ring: IoUring,
    bufs: BufRing,
    sends: Box<[SendSlot]>,
    recv_hdr: Box<libc::msghdr>,
    table: Arc<SlotTable>,
    index: u32,
    first: u32,
    slots: Vec<SlotRt>,
    /// Sockets to re-arm: (slot index, socket index, generation).
    rearm: Vec<(u32, u8, u16)>,
    /// Spare list swapped with `rearm` while re-arming.
    rearm_scratch: Vec<(u32, u8, u16)>,
    /// Completions copied out of the CQ, processed in batch.
    cqes: Vec<cqueue::Entry>,
    /// The local interfaces' addresses, by index ([`LegConfig::iface`](
    /// tern_shared::table::LegConfig::iface)): every slot's ports are
    /// bound on each.
    ifaces: Vec<IpAddr>,
    /// Sockets per slot: four per interface.
    per_slot: usize,
    min_wait: bool,
    /// A sparse fixed-file table of `slots * 4` entries is registered.
    fixed_files: bool,
    doorbell: u64,
    /// The futex wait on the doorbell ([`SlotTable::doorbell_futex`]):
    /// a control plane's change wakes the worker at once instead of at
    /// its next [`WAIT_MS`] timeout.
    bell_wait: BellWait,
    /// Take the changed bitmap even though the doorbell did not move.
    rescan: bool,
    /// Sync every slot once (at start).
    full_scan: bool,
    /// The start's full scan is running: active slots found now belong to
    /// a call from before a restart.
    attaching: bool,
    last_tick_ms: u64,
    forwarded: u64,
    dropped: u64,
    send_errors: u64,
    bind_failures: u64,
    /// The table's binding epoch when the worker started: the stamp of
    /// the free slots whose ports it holds.
    epoch: u64,
    /// Free slots with a port another socket holds, at the last tick.
    unbound: u64,
    /// ENOBUFS completions, re-arms and SQ overruns (published each tick).
    ring_ctr: WorkerRing,
    /// Jitter stores by id; `None` is a free id (listed in `jstore_free`).
    jstores: Vec<Option<JStore>>,
    jstore_free: Vec<u16>,
    /// Legs refused a jitter buffer for want of a store id.
    jitter_refused: u64,
    /// Slot indices with a jitter buffer on either leg.
    jit_slots: Vec<u32>,
    /// Slot indices with a `play media` playing on either leg.
    play_slots: Vec<u32>,
    /// The loop iteration's clock.
    clock: Clock,
    last_roll_ms: u64,
    /// Where STUN answers are written before they replace the request.
    scratch: Box<[u8; 1024]>,
    /// The DTLS task's channels; `None` when the dataplane runs without
    /// one (DTLS datagrams are then dropped and counted).
    dtls: Option<DtlsHandle>,
    /// The producer end of the worker's recording ring, when recording is
    /// configured (`record_tap.rs`).
    rec: Option<crate::record::RecordTap>,
}

fn build_ring() -> std::io::Result<IoUring> {
    let fast = IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_submit_all()
        .build(SQ_ENTRIES);
    match fast {
        Ok(r) => Ok(r),
        Err(e) => {
            warn!("io_uring with SINGLE_ISSUER|DEFER_TASKRUN failed ({e}); using a plain ring");
            IoUring::builder()
                .setup_cqsize(CQ_ENTRIES)
                .build(SQ_ENTRIES)
        }
    }
}

impl Worker {
    /// Sets up worker `index` on `table`: its ring, buffer ring and slot
    /// states. Call from the worker thread (the ring is single-issuer).
    /// The slots' ports are bound on each of the table's interfaces
    /// ([`SlotTable::interfaces`]) when it names any, else on `bind_ip`.
    ///
    /// Errors: [`RelayError::Setup`] when the ring or buffer ring cannot be
    /// created or registered, or the kernel lacks `IORING_FEAT_EXT_ARG`
    /// (Linux 5.11).
    pub fn new(index: u32, table: Arc<SlotTable>, bind_ip: IpAddr) -> Result<Worker, RelayError> {
        Worker::with_buffers(index, table, bind_ip, BUF_ENTRIES)
    }

    /// [`Worker::new`] with `buffers` provided buffers (a power of two up to
    /// 32768) instead of [`BUF_ENTRIES`]: for tests of buffer exhaustion
    /// (`-ENOBUFS`) and for tuning.
    pub fn with_buffers(
        index: u32,
        table: Arc<SlotTable>,
        bind_ip: IpAddr,
        buffers: u16,
    ) -> Result<Worker, RelayError> {
        let setup = |what: &'static str| {
            move |source| RelayError::Setup {
                worker: index as usize,
                what,
                source,
            }
        };
        let ring = build_ring().map_err(setup("io_uring"))?;
        if !ring.params().is_feature_ext_arg() {
            return Err(setup("io_uring")(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "kernel lacks IORING_FEAT_EXT_ARG (Linux 5.11+)",
            )));
        }
        let bufs = BufRing::new(buffers, BUF_SIZE, BGID).map_err(setup("buffer ring"))?;
        bufs.register(&ring.submitter())
            .map_err(setup("buffer ring registration"))?;
        let sends = (0..buffers)
            .map(|_| SendSlot::zeroed())
            .collect::<Vec<_>>()
            .into_boxed_slice();
        // SAFETY: all-zero is a valid msghdr.
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        let range = table.slots_of_worker(index);
        let n = range.len();
        let ifaces: Vec<IpAddr> = if table.interface_count() > 0 {
            table.interfaces().iter().map(|i| i.ip).collect()
        } else {
            vec![bind_ip]
        };
        let per_slot = ifaces.len() * 4;
        let min_wait = ring.params().is_feature_min_timeout();
        let epoch = table.epoch();
        // Every socket the worker can own gets a fixed-file index: a
        // failure (old kernel, RLIMIT_NOFILE below the table) only costs
        // the per-SQE fget, so it is not fatal.
        let fixed_files = match u32::try_from(n * per_slot)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
            .and_then(|nr| ring.submitter().register_files_sparse(nr.max(1)))
        {
            Ok(()) => true,
            Err(e) => {
                warn!(
                    worker = index,
                    "no registered files ({e}); using plain descriptors"
                );
                false
            }
        };
        Ok(Worker {
            ring,
            bufs,
            sends,
            recv_hdr,
            index,
            first: range.start,
            slots: (0..n).map(|_| SlotRt::new(per_slot)).collect(),
            rearm: Vec::with_capacity(n * per_slot + 16),
            rearm_scratch: Vec::with_capacity(n * per_slot + 16),
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            ifaces,
            per_slot,
            min_wait,
            fixed_files,
            doorbell: table.doorbell(index),
            bell_wait: BellWait::Idle,
            table,
            rescan: true,
            full_scan: true,
            attaching: false,
            last_tick_ms: 0,
            forwarded: 0,
            dropped: 0,
            send_errors: 0,
            bind_failures: 0,
            epoch,
            unbound: 0,
            ring_ctr: WorkerRing::default(),
            jstores: Vec::new(),
            jstore_free: Vec::new(),
            jitter_refused: 0,
            jit_slots: Vec::new(),
            play_slots: Vec::new(),
            clock: Clock::read(),
            last_roll_ms: 0,
            scratch: Box::new([0u8; 1024]),
            dtls: None,
            rec: None,
        })
    }

    /// Gives the worker its end of the DTLS task's channels.
    pub fn set_dtls(&mut self, h: DtlsHandle) {
        self.dtls = Some(h);
    }

    /// Gives the worker its recording ring's producer end.
    pub fn set_record(&mut self, t: crate::record::RecordTap) {
        self.rec = Some(t);
    }

    /// Worker index.
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// The state of the futex wait on the worker's doorbell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BellWait {
    /// Not queued: queued again after the next doorbell check.
    Idle,
    /// Queued with the doorbell value the worker last took.
    Armed,
    /// The kernel has no io_uring futex wait (before Linux 6.7): the
    /// worker notices changes at its [`WAIT_MS`] timeout.
    Off,
}

/// The RTP header fields the statistics and the jitter buffer need; `None`
/// when `pkt` is not a valid RTP packet.
#[inline]
fn rtp_info(pkt: &[u8]) -> Option<PacketInfo> {
    let p = RtpPacket::new_checked(pkt).ok()?;
    Some(PacketInfo {
        seq: p.sequence_number(),
        timestamp: p.timestamp(),
        ssrc: p.ssrc(),
        marker: p.marker(),
        payload_type: p.payload_type() & 0x7f,
        is_event: false,
    })
}

/// Queues an SQE, handing a full submission queue to the kernel first
/// (each time counted in `sq_full`). Returns false if it could not be
/// queued.
#[inline]
fn push_sqe(ring: &mut IoUring, e: &squeue::Entry, sq_full: &mut u64) -> bool {
    for _ in 0..4 {
        // SAFETY: every pointer in the worker's SQEs (msghdrs, iovecs,
        // buffers) lives in the worker until the ring is dropped, and a
        // send's storage is reused only after its completion.
        if unsafe { ring.submission().push(e) }.is_ok() {
            return true;
        }
        *sq_full += 1;
        if let Err(err) = ring.submit() {
            debug!("submit with a full SQ: {err}");
        }
    }
    false
}

/// Pins the calling thread to `cpu` (`sched_setaffinity`).
///
/// Errors: the syscall's (e.g. the CPU is outside the process's cpuset).
pub fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET checks nothing, so bound it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Online CPUs (at least 1).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// What a worker thread starts from.
pub(crate) struct Spawn {
    pub(crate) index: u32,
    pub(crate) table: Arc<SlotTable>,
    pub(crate) bind_ip: IpAddr,
    pub(crate) pin: bool,
    pub(crate) shutdown: Arc<AtomicBool>,
    pub(crate) abort: Arc<AtomicBool>,
    /// Where setup is reported.
    pub(crate) ready: std::sync::mpsc::Sender<Result<(), RelayError>>,
    /// The worker's end of the DTLS task's channels, if one runs.
    pub(crate) dtls: Option<DtlsHandle>,
    /// The worker's recording ring, if recording is configured.
    pub(crate) rec: Option<crate::record::RecordTap>,
}

/// Thread body of worker `index`: pins, sets up, reports setup through
/// `ready`, and runs until `shutdown` or `abort` is set.
pub(crate) fn thread_main(sp: Spawn) -> Result<(), RelayError> {
    let Spawn {
        index,
        table,
        bind_ip,
        pin,
        shutdown,
        abort,
        ready,
        dtls,
        rec,
    } = sp;
    if pin {
        let cpu = index as usize % online_cpus();
        if let Err(e) = pin_to_cpu(cpu) {
            warn!(worker = index, cpu, "could not pin worker: {e}");
        }
    }
    let worker = match Worker::new(index, table, bind_ip) {
        Ok(mut w) => {
            if let Some(d) = dtls {
                w.set_dtls(d);
            }
            if let Some(t) = rec {
                w.set_record(t);
            }
            // Bind every free slot's ports (and reattach active slots)
            // before reporting ready, so no slot is handed out unbound.
            w.attach();
            let _ = ready.send(Ok(()));
            w
        }
        Err(e) => {
            // `start` reports it (and stops the other workers).
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    drop(ready);
    worker.run(|| shutdown.load(Ordering::Relaxed) || abort.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_indices() {
        assert_eq!(sock_index(0, 1, true), 3);
        assert_eq!(sock_index(0, 0, false), 0);
        assert_eq!(fixed_index(2, sock_index(0, 1, false), 4), 10);
        // Interface 2 of three: the third group of four.
        assert_eq!(sock_index(2, 1, true), 11);
        assert_eq!(fixed_index(2, sock_index(2, 0, true), 12), 33);
    }

    #[test]
    fn clock_converts_instants_to_unix_ms() {
        let c = Clock {
            at: Instant::now(),
            unix_ms: 1_000,
        };
        assert_eq!(c.unix_ms(c.at), 1_000);
        assert_eq!(c.unix_ms(c.at + Duration::from_micros(2_500)), 1_002);
        if let Some(early) = c.at.checked_sub(Duration::from_millis(5)) {
            assert_eq!(c.unix_ms(early), 1_000);
        }
    }

    #[test]
    fn online_cpus_is_positive() {
        assert!(online_cpus() >= 1);
        assert!(pin_to_cpu(usize::MAX).is_err());
    }
}
