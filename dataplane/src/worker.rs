//! The io_uring worker loop: one thread, one ring, one provided-buffer
//! ring, the sockets of the worker's slots.
//!
//! One loop iteration:
//!
//! 1. reap every completion: received packets are decided by the slot's
//!    [`Forwarder`] and either recycled (dropped) or sent, copy-free, out of
//!    the other leg's socket straight from the provided buffer (the buffer
//!    goes back to the ring when the send completes); send completions
//!    recycle their buffers; receive completions without `F_MORE` (or with
//!    `-ENOBUFS`) queue a re-arm;
//! 2. if the worker's doorbell moved, take the slots marked changed in the
//!    table's changed bitmap (not a pass over every slot) and bind,
//!    reconfigure or drain them;
//! 3. every [`TICK_MS`]: heartbeat and totals, bind retries, close timeouts;
//! 4. re-arm receives, publish recycled buffers, and make one
//!    `io_uring_enter` that submits everything and waits for completions
//!    with a timeout of [`WAIT_MS`] (so shutdown and doorbells are noticed),
//!    batching up to [`MIN_WAIT_US`] µs more when busy.
//!
//! Nothing on the packet path allocates, locks or makes a syscall: the
//! send slab, completion batch and re-arm list are preallocated.
//!
//! # Quality and jitter buffers
//!
//! Each accepted RTP packet updates its leg's RFC 3550 statistics
//! ([`RtpStats`]) and, for the leg's telephone-event payload type, its
//! [`DtmfDetector`]; accepted RTCP feeds the report-block statistics (RTT,
//! the peer's loss and jitter). Statistics are published to the slot's
//! worker-owned counter lines every [`TICK_MS`] (with the E-model MOS),
//! DTMF events as they complete. A packet's arrival time is its loop
//! iteration's clock (one vDSO read per iteration, not per packet), so the
//! packets of one batch share it: the A.8 jitter carries an error of at
//! most one iteration (tens of µs idle, up to [`MIN_WAIT_US`] when busy).
//!
//! A leg whose configuration enables the jitter buffer gets its RTP through
//! a [`JitterBuffer`]: the packet is copied into a store preallocated for
//! that leg when the buffer is switched on (no allocation per packet), its
//! provided buffer goes straight back to the ring, and the worker plays
//! buffered packets out at their deadlines. The loop caps its wait at the
//! earliest deadline among its buffers, so no timer thread is needed.
//!
//! # user_data
//!
//! Bits 62..64 hold the kind. A receive carries the slot's index within the
//! worker (bits 0..32), the leg (bit 32), RTCP socket (bit 33) and the
//! slot's bind generation (bits 34..50), so a completion of a socket that
//! has since been closed is recognised and ignored. A send carries the
//! buffer id, which also indexes the send slab (one send per buffer). A
//! send from a jitter store carries the store id (bits 16..32) and the
//! entry (bits 0..16).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::RecvMsgOut;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use socket2::Socket;
use tern_shared::rtp::RtpPacket;
use tern_shared::table::{DropReason, JitterSettings, SlotState, SlotTable, WorkerRing};
use tracing::{debug, info, warn};

use crate::bufring::BufRing;
use crate::leg::{Forwarder, LegRestore, PacketKind, Verdict};
use crate::quality::feed::SlotFeed;
use crate::quality::jitter::{
    JitterBuffer, JitterConfig, PacketInfo, Playout, PushOutcome, MAX_CAPACITY,
};
use crate::quality::stats::DEFAULT_CLOCK_RATE;
use crate::sockets::{
    bind_udp, discard_queued, drop_all, pass_all, read_sockaddr, write_sockaddr, RawAddr,
};
use crate::RelayError;

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
/// Most datagrams discarded from one socket when its slot is freed (what
/// arrived between the receive's cancellation and the filter).
const DISCARD_MAX: usize = 4096;
/// Longest wait for a closing slot's receives to be cancelled, ms.
pub const CLOSE_TIMEOUT_MS: u64 = 2000;
/// Extra wait (µs) for a batch of completions when the worker is busy
/// (Linux 6.12+ `min_wait`); zero added latency when idle. A rate-adaptive
/// batch (the completions expected in 100 µs at the measured rate, 200 µs
/// cap) was measured against this and did not pay: CPU per packet level
/// within noise, p50 at 50k pps 1.2–1.7× (docs/BENCHMARKS.md).
pub const MIN_WAIT_US: u32 = 100;
/// Completions per iteration from which the worker counts as busy.
const BUSY_COMPLETIONS: usize = 16;
/// Completions a busy worker waits for (up to [`MIN_WAIT_US`]).
const BATCH_WANT: usize = 32;
/// The buffer group id of the provided-buffer ring.
const BGID: u16 = 0;

const KIND_SHIFT: u32 = 62;
const K_RECV: u64 = 0;
const K_SEND: u64 = 1;
const K_CANCEL: u64 = 2;
const K_JSEND: u64 = 3;

/// Period of loss intervals (RFC 3550 A.3 `fraction lost`), ms.
pub const LOSS_INTERVAL_MS: u64 = 5000;
/// Bytes per jitter-store entry for audio: G.711 at 40 ms (332 bytes) and
/// opus at its highest rates fit; a longer packet skips the buffer (it is
/// sent at once and its position is played out as lost). Keeps a buffered
/// leg's store near 45 KiB.
const JSTORE_ENTRY_AUDIO: usize = 512;
/// Bytes per jitter-store entry for video (90 kHz clock): the largest UDP
/// payload a provided buffer can carry.
const JSTORE_ENTRY_VIDEO: usize = BUF_SIZE as usize;
/// How early a jitter-buffered packet may leave: packets due within this
/// are played together, so the loop wakes for playout at most about once
/// per this interval however many buffers it drives.
pub const PLAYOUT_SLACK: Duration = Duration::from_millis(1);
/// Store entries beyond the buffer's ring, for packets being sent.
const JSTORE_SPARE: usize = 32;
/// Jitter stores a worker can name: a store id is 16 bits of a send's
/// user_data. A leg asking for a buffer past this is forwarded straight
/// through (and counted) rather than let an id wrap onto a live store.
pub const MAX_JSTORES: usize = 1 << 16;

#[inline]
fn jsend_ud(store: u16, entry: u16) -> u64 {
    K_JSEND << KIND_SHIFT | u64::from(store) << 16 | u64::from(entry)
}
#[inline]
fn recv_ud(idx: u32, sock: usize, gen: u16) -> u64 {
    K_RECV << KIND_SHIFT | u64::from(idx) | (sock as u64 & 3) << 32 | u64::from(gen) << 34
}

#[inline]
fn send_ud(bid: u16) -> u64 {
    K_SEND << KIND_SHIFT | u64::from(bid)
}

/// Fixed-file index of socket `sock` of the worker's slot `idx`.
#[inline]
fn fixed_index(idx: usize, sock: usize) -> u32 {
    (idx * 4 + (sock & 3)) as u32
}

/// Socket index within a slot: `leg * 2 + rtcp`.
#[inline]
fn sock_index(leg: usize, rtcp: bool) -> usize {
    (leg & 1) << 1 | usize::from(rtcp)
}

/// Unix time in ms (vDSO clock read, no syscall).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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

/// Packet copies held by one leg's jitter buffer, and the send storage of
/// their playout. Allocated when the buffer is switched on; it outlives
/// the buffer while sends from it are in flight.
struct JStore {
    data: Box<[u8]>,
    /// Bytes per entry.
    entry: usize,
    lens: Box<[u16]>,
    free: Vec<u16>,
    sends: Box<[SendSlot]>,
    inflight: u32,
    /// The buffer it served is gone: drop it when `inflight` reaches 0.
    retired: bool,
}

impl JStore {
    fn new(entries: usize, entry: usize) -> JStore {
        JStore {
            data: vec![0u8; entries * entry].into_boxed_slice(),
            entry,
            lens: vec![0u16; entries].into_boxed_slice(),
            free: (0..entries as u16).rev().collect(),
            sends: (0..entries).map(|_| SendSlot::zeroed()).collect(),
            inflight: 0,
            retired: false,
        }
    }

    fn entry_mut(&mut self, e: u16) -> &mut [u8] {
        let at = usize::from(e) * self.entry;
        &mut self.data[at..at + self.entry]
    }
}

/// A leg's jitter buffer (for what is sent to that leg's peer).
struct LegJitter {
    jb: JitterBuffer<u16>,
    /// Index into the worker's stores.
    store: u16,
    settings: JitterSettings,
    /// Clock rate and telephone-event type of the source leg it was made
    /// for.
    source: (u32, Option<u8>),
    /// The buffer's next deadline as last seen (after a poll or a push):
    /// the loop polls only buffers that are due. Pushes only ever bring
    /// the first held packet's deadline forward, to the pushed one's.
    due: Option<Instant>,
}

/// The worker's private state of one slot.
struct SlotRt {
    phase: Phase,
    /// Bind generation, in receive user_data.
    gen: u16,
    /// The seqlock value of the configuration in `fwd`.
    seq: u32,
    fwd: Option<Forwarder>,
    /// `[leg0 rtp, leg0 rtcp, leg1 rtp, leg1 rtcp]`.
    socks: [Sock; 4],
    bind_pending: bool,
    next_bind_ms: u64,
    closing_since_ms: u64,
    /// The close is for a release: move the slot to Free when done.
    drain: bool,
    /// Quality and DTMF of both legs (boxed: kept off the slot scan).
    q: Box<SlotFeed>,
    /// The slot's Call-ID label, read when it was (re)configured, for logs
    /// (the table's is cleared at release).
    call_id: String,
    /// Jitter buffers of what is sent to leg 0's and leg 1's peer.
    jit: [Option<LegJitter>; 2],
}

impl SlotRt {
    fn new() -> SlotRt {
        SlotRt {
            phase: Phase::Idle,
            gen: 0,
            seq: 0,
            fwd: None,
            socks: std::array::from_fn(|_| Sock {
                fd: -1,
                ..Sock::default()
            }),
            bind_pending: false,
            next_bind_ms: 0,
            closing_since_ms: 0,
            drain: false,
            q: Box::new(SlotFeed::new()),
            call_id: String::new(),
            jit: [None, None],
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
    bind_ip: IpAddr,
    min_wait: bool,
    /// A sparse fixed-file table of `slots * 4` entries is registered.
    fixed_files: bool,
    doorbell: u64,
    /// Take the changed bitmap even though the doorbell did not move.
    rescan: bool,
    /// Sync every slot once (at start).
    full_scan: bool,
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
    /// The loop iteration's monotonic clock.
    inow: Instant,
    last_roll_ms: u64,
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
        let min_wait = ring.params().is_feature_min_timeout();
        let epoch = table.epoch();
        // Every socket the worker can own gets a fixed-file index: a
        // failure (old kernel, RLIMIT_NOFILE below the table) only costs
        // the per-SQE fget, so it is not fatal.
        let fixed_files = match u32::try_from(n * 4)
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
            slots: (0..n).map(|_| SlotRt::new()).collect(),
            rearm: Vec::with_capacity(n * 4 + 16),
            rearm_scratch: Vec::with_capacity(n * 4 + 16),
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            bind_ip,
            min_wait,
            fixed_files,
            doorbell: table.doorbell(index),
            table,
            rescan: true,
            full_scan: true,
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
            inow: Instant::now(),
            last_roll_ms: 0,
        })
    }

    /// Runs until `stop` returns true (checked at least every [`WAIT_MS`]),
    /// then cancels its receives, closes its sockets and returns, leaving
    /// slot states untouched so a restarted relay resumes the calls.
    ///
    /// Errors: [`RelayError::Ring`] when `io_uring_enter` fails for a
    /// reason other than a timeout or an interruption.
    pub fn run(mut self, stop: impl Fn() -> bool) -> Result<(), RelayError> {
        info!(
            worker = self.index,
            slots = self.slots.len(),
            "dataplane worker started"
        );
        let mut busy = false;
        let result = loop {
            if stop() {
                break Ok(());
            }
            let now = now_ms();
            self.inow = Instant::now();
            let n = self.reap(now);
            let bell = self.table.doorbell(self.index);
            if bell != self.doorbell || self.rescan {
                self.doorbell = bell;
                self.rescan = false;
                self.scan_changed(now);
                if std::mem::take(&mut self.full_scan) {
                    self.scan(now);
                }
            }
            if now.wrapping_sub(self.last_tick_ms) >= TICK_MS {
                self.tick(now);
            }
            let deadline = self.play_jitter();
            self.flush_rearm();
            self.bufs.publish();
            if let Err(e) = self.wait(busy, deadline) {
                break Err(e);
            }
            busy = n >= BUSY_COMPLETIONS;
        };
        self.shutdown();
        info!(
            worker = self.index,
            forwarded = self.forwarded,
            dropped = self.dropped,
            "dataplane worker stopped"
        );
        result
    }

    /// One `io_uring_enter`: submits every queued SQE and waits for at least
    /// one completion, [`WAIT_MS`], or until `deadline` (the next jitter
    /// buffer playout), whichever comes first.
    fn wait(&mut self, busy: bool, deadline: Option<Instant>) -> Result<(), RelayError> {
        let mut wait_ns = WAIT_MS * 1_000_000;
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            wait_ns = wait_ns.min(left.as_nanos().min(u128::from(u32::MAX)) as u32);
        }
        let ts = types::Timespec::new().nsec(wait_ns);
        let mut args = types::SubmitArgs::new().timespec(&ts);
        let mut want = 1;
        if busy && self.min_wait && wait_ns >= MIN_WAIT_US * 1000 {
            args = args.min_wait_usec(MIN_WAIT_US);
            want = BATCH_WANT;
        }
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
                _ => Err(RelayError::Ring {
                    worker: self.index as usize,
                    source: e,
                }),
            },
        }
    }

    #[inline]
    fn push(&mut self, e: &squeue::Entry) -> bool {
        push_sqe(&mut self.ring, e, &mut self.ring_ctr.sq_full)
    }

    /// Reaps every completion; returns how many.
    fn reap(&mut self, now: u64) -> usize {
        let mut total = 0;
        loop {
            let mut batch = std::mem::take(&mut self.cqes);
            batch.clear();
            {
                let cq = self.ring.completion();
                batch.extend(cq.take(CQ_ENTRIES as usize));
            }
            let n = batch.len();
            for cqe in &batch {
                self.complete(cqe.user_data(), cqe.result(), cqe.flags(), now);
            }
            self.cqes = batch;
            total += n;
            if n < CQ_ENTRIES as usize {
                return total;
            }
        }
    }

    #[inline]
    fn complete(&mut self, ud: u64, res: i32, flags: u32, now: u64) {
        match ud >> KIND_SHIFT {
            K_SEND => {
                let bid = ud as u16;
                self.bufs.recycle(bid);
                if res < 0 {
                    self.send_errors += 1;
                    self.dropped += 1;
                    if self.send_errors.is_power_of_two() {
                        debug!(
                            worker = self.index,
                            errors = self.send_errors,
                            "send failed: {}",
                            std::io::Error::from_raw_os_error(-res)
                        );
                    }
                }
            }
            K_RECV => self.complete_recv(ud, res, flags, now),
            K_JSEND => {
                if res < 0 {
                    self.send_errors += 1;
                    self.dropped += 1;
                }
                self.jstore_done((ud >> 16) as u16, ud as u16);
            }
            _ => {} // cancel requests: their targets report themselves
        }
    }

    #[inline]
    fn complete_recv(&mut self, ud: u64, res: i32, flags: u32, now: u64) {
        let idx = ud as u32;
        let sock = (ud >> 32 & 3) as usize;
        let gen = (ud >> 34) as u16;
        let bid = cqueue::buffer_select(flags).filter(|&b| self.bufs.take(b));
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            return;
        };
        let live = slot.gen == gen && slot.phase != Phase::Idle;
        if live && !cqueue::more(flags) {
            slot.socks[sock].armed = false;
            match slot.phase {
                Phase::Bound => {
                    if !slot.socks[sock].queued && slot.socks[sock].fd >= 0 {
                        slot.socks[sock].queued = true;
                        self.ring_ctr.rearms += 1;
                        self.rearm.push((idx, sock as u8, gen));
                    }
                }
                Phase::Closing => self.maybe_finish_close(idx as usize),
                Phase::Idle => {}
            }
        }
        if res == -libc::ENOBUFS {
            self.ring_ctr.enobufs += 1;
        } else if res < 0 && res != -libc::ECANCELED {
            debug!(
                worker = self.index,
                "receive failed: {}",
                std::io::Error::from_raw_os_error(-res)
            );
        }
        let Some(bid) = bid else { return };
        let forwarding = self
            .slots
            .get(idx as usize)
            .is_some_and(|s| s.gen == gen && s.phase == Phase::Bound);
        if res < 0 || !forwarding || !self.forward(idx as usize, sock, bid, res as usize, now) {
            self.bufs.recycle(bid);
        }
    }

    /// Handles one received datagram in buffer `bid` (`len` bytes of
    /// recvmsg output) on socket `sock` of slot `idx`. Returns true if the
    /// buffer now belongs to a send.
    #[inline]
    fn forward(&mut self, idx: usize, sock: usize, bid: u16, len: usize, now: u64) -> bool {
        let leg = sock >> 1;
        let id = self.first + idx as u32;
        let (Ok(c_in), Ok(c_out)) = (
            self.table.counters(id, leg),
            self.table.counters(id, leg ^ 1),
        ) else {
            return false;
        };
        let buf = self.bufs.buf_mut(bid, len);
        let parsed = RecvMsgOut::parse(buf, &self.recv_hdr).ok().and_then(|out| {
            if out.is_payload_truncated() || out.is_name_data_truncated() {
                return None;
            }
            let src = read_sockaddr(out.name_data())?;
            let off = out.payload_data().as_ptr() as usize - buf.as_ptr() as usize;
            Some((src, off, out.payload_data().len()))
        });
        let Some((src, off, plen)) = parsed else {
            c_in.count_drop(DropReason::Malformed);
            self.dropped += 1;
            return false;
        };
        let slot = &mut self.slots[idx];
        let Some(fwd) = slot.fwd.as_mut() else {
            return false;
        };
        let kind = if sock & 1 == 1 {
            PacketKind::Rtcp
        } else if fwd.config().legs[leg].rtcp_mux {
            PacketKind::Mux
        } else {
            PacketKind::Rtp
        };
        let pkt = &mut buf[off..off + plen];
        // The header as the peer sent it, before any SSRC rewriting.
        let hdr = if kind == PacketKind::Rtcp {
            None
        } else {
            rtp_info(pkt)
        };
        let out = fwd.on_packet(leg, src, pkt, kind);
        if let Some(a) = out.learned {
            c_in.set_learned(out.rtcp, Some(a));
        }
        if out.ssrc_changed {
            if let Some(rw) = fwd.leg(leg ^ 1).rewriter {
                c_out.set_ssrc_state(rw.to_state());
            }
        }
        let o = leg ^ 1;
        let inow = self.inow;
        match out.verdict {
            Verdict::Forward { .. } | Verdict::Drop(DropReason::NoPeer) => {
                let forwarded = matches!(out.verdict, Verdict::Forward { .. });
                let q = &mut slot.q;
                if out.rtcp {
                    q.on_rtcp(leg, pkt, forwarded, inow);
                } else if let Some(h) = hdr {
                    let lcfg = &fwd.config().legs[leg];
                    if q.on_rtp(leg, &h, pkt, lcfg, inow, now) {
                        while let Some(ev) = q.poll_dtmf(leg) {
                            c_in.push_dtmf(&ev);
                            info!(
                                worker = self.index,
                                slot = id,
                                call_id = %slot.call_id,
                                leg,
                                digit = %ev.digit,
                                duration = ev.duration,
                                rtp_timestamp = ev.rtp_timestamp,
                                "DTMF"
                            );
                        }
                    }
                }
            }
            Verdict::Drop(_) => {}
        }
        let (dest, rtcp) = match out.verdict {
            Verdict::Forward { dest, rtcp } => (dest, rtcp),
            Verdict::Drop(r) => {
                c_in.count_drop(r);
                self.dropped += 1;
                return false;
            }
        };
        if !rtcp {
            if let Some(lj) = slot.jit[o].as_mut() {
                match buffer_packet(&mut self.jstores, lj, pkt, inow) {
                    Buffered::Held => {
                        c_in.count_rx(plen, now);
                        return false;
                    }
                    Buffered::Refused(reason) => {
                        c_in.count_rx(plen, now);
                        c_in.count_drop(reason);
                        self.dropped += 1;
                        return false;
                    }
                    Buffered::Bypass => {}
                }
            }
        }
        let out_k = sock_index(o, rtcp && !fwd.config().legs[o].rtcp_mux);
        let out_sock = &slot.socks[out_k];
        let (fd, v6, fixed) = (out_sock.fd, out_sock.v6, out_sock.fixed);
        let s = &mut self.sends[usize::from(bid)];
        let filled = if fd >= 0 {
            s.fill(pkt.as_mut_ptr(), plen, dest, v6)
        } else {
            None
        };
        if filled.is_none() {
            c_in.count_drop(DropReason::NoPeer);
            self.dropped += 1;
            return false;
        }
        let hdr = std::ptr::addr_of!(s.hdr);
        let sqe = if fixed {
            opcode::SendMsg::new(types::Fixed(fixed_index(idx, out_k)), hdr).build()
        } else {
            opcode::SendMsg::new(types::Fd(fd), hdr).build()
        }
        .user_data(send_ud(bid));
        if !push_sqe(&mut self.ring, &sqe, &mut self.ring_ctr.sq_full) {
            c_in.count_drop(DropReason::NoPeer);
            self.dropped += 1;
            return false;
        }
        if rtcp {
            c_in.count_rtcp_rx(now);
        } else {
            c_in.count_rx(plen, now);
        }
        c_out.count_tx(plen);
        self.forwarded += 1;
        true
    }

    /// Returns entry `entry` of jitter store `store` after its send
    /// completed; frees a retired store with nothing left in flight.
    fn jstore_done(&mut self, store: u16, entry: u16) {
        let Some(Some(st)) = self.jstores.get_mut(usize::from(store)) else {
            return;
        };
        st.inflight = st.inflight.saturating_sub(1);
        if usize::from(entry) < st.lens.len() {
            st.free.push(entry);
        }
        if st.retired && st.inflight == 0 {
            self.jstores[usize::from(store)] = None;
            self.jstore_free.push(store);
        }
    }

    /// Plays out every jitter-buffered packet that is due; returns the
    /// earliest deadline still pending. A buffer not due is not touched
    /// (its deadline is cached in [`LegJitter::due`]).
    fn play_jitter(&mut self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let inow = self.inow + PLAYOUT_SLACK;
        for k in 0..self.jit_slots.len() {
            let idx = self.jit_slots[k] as usize;
            for leg in 0..2 {
                while let Some(lj) = self.slots[idx].jit[leg].as_mut() {
                    if lj.due.is_none_or(|d| d > inow) {
                        if let Some(d) = lj.due {
                            earliest = Some(earliest.map_or(d, |x| x.min(d)));
                        }
                        break;
                    }
                    match lj.jb.poll_or_next(inow) {
                        Ok(Playout::Packet(e)) => {
                            let store = lj.store;
                            self.send_stored(idx, leg, store, e);
                        }
                        Ok(Playout::Lost { .. }) => {}
                        Err(next) => lj.due = next,
                    }
                }
            }
        }
        earliest
    }

    /// Sends entry `entry` of store `store` to leg `leg`'s peer of slot
    /// `idx` (its RTP socket and destination now), or frees the entry.
    fn send_stored(&mut self, idx: usize, leg: usize, store: u16, entry: u16) {
        let id = self.first + idx as u32;
        let slot = &self.slots[idx];
        let dest = slot.fwd.as_ref().and_then(|f| f.rtp_dest(leg));
        let sock = &slot.socks[sock_index(leg, false)];
        let (fd, v6, fixed) = (sock.fd, sock.v6, sock.fixed);
        let Some(Some(st)) = self.jstores.get_mut(usize::from(store)) else {
            return;
        };
        let e = usize::from(entry);
        let len = usize::from(st.lens[e]);
        let data = st.data[e * st.entry..].as_mut_ptr();
        let ok = match dest {
            Some(dest) if fd >= 0 => st.sends[e].fill(data, len, dest, v6).is_some(),
            _ => false,
        };
        let pushed = ok && {
            let hdr = std::ptr::addr_of!(st.sends[e].hdr);
            let sqe = if fixed {
                let k = fixed_index(idx, sock_index(leg, false));
                opcode::SendMsg::new(types::Fixed(k), hdr).build()
            } else {
                opcode::SendMsg::new(types::Fd(fd), hdr).build()
            }
            .user_data(jsend_ud(store, entry));
            push_sqe(&mut self.ring, &sqe, &mut self.ring_ctr.sq_full)
        };
        if pushed {
            st.inflight += 1;
            if let Ok(c) = self.table.counters(id, leg) {
                c.count_tx(len);
            }
            self.forwarded += 1;
        } else {
            st.free.push(entry);
            // Counted where it arrived, like every drop of the slot.
            if let Ok(c) = self.table.counters(id, leg ^ 1) {
                c.count_drop(DropReason::NoPeer);
            }
            self.dropped += 1;
        }
    }

    /// Brings slot `idx`'s jitter buffers in line with its configuration:
    /// creates those switched on (with a store), and empties and retires
    /// those switched off (`close`: all of them). What a buffer still
    /// holds is sent at once unless the slot is closing.
    fn sync_jitter(&mut self, idx: usize, close: bool) {
        let id = self.first + idx as u32;
        for leg in 0..2 {
            let (want, source) = match self.slots[idx].fwd.as_ref() {
                Some(f) if !close => {
                    let c = f.config();
                    let src = &c.legs[leg ^ 1];
                    let j = c.legs[leg].jitter;
                    (j.enabled.then_some(j), (src.clock_rate, src.dtmf_pt))
                }
                _ => (None, (0, None)),
            };
            let keep = match (&self.slots[idx].jit[leg], want) {
                (Some(lj), Some(w)) => lj.settings == w && lj.source == source,
                (None, None) => true,
                _ => false,
            };
            if keep {
                continue;
            }
            if let Some(mut lj) = self.slots[idx].jit[leg].take() {
                while let Some(e) = lj.jb.drain_next() {
                    if close {
                        if let Some(Some(st)) = self.jstores.get_mut(usize::from(lj.store)) {
                            st.free.push(e);
                        }
                    } else {
                        self.send_stored(idx, leg, lj.store, e);
                    }
                }
                self.retire_store(lj.store);
            }
            if let Some(w) = want {
                match new_leg_jitter(w, source) {
                    Ok((jb, entries)) => {
                        let size = if source.0 >= 90_000 {
                            JSTORE_ENTRY_VIDEO
                        } else {
                            JSTORE_ENTRY_AUDIO
                        };
                        let st = JStore::new(entries, size);
                        let Some(store) =
                            alloc_store(&mut self.jstores, &mut self.jstore_free, st, MAX_JSTORES)
                        else {
                            self.jitter_refused += 1;
                            self.table
                                .set_worker_jitter_refused(self.index, self.jitter_refused);
                            warn!(
                                worker = self.index,
                                slot = id,
                                call_id = %self.slots[idx].call_id,
                                leg,
                                "jitter buffer not started: all {MAX_JSTORES} store ids in use; forwarding straight through"
                            );
                            continue;
                        };
                        self.slots[idx].jit[leg] = Some(LegJitter {
                            jb,
                            store,
                            settings: w,
                            source,
                            due: None,
                        });
                        debug!(
                            worker = self.index,
                            slot = id,
                            call_id = %self.slots[idx].call_id,
                            leg,
                            target_ms = w.target_ms,
                            max_ms = w.max_ms,
                            "jitter buffer on"
                        );
                    }
                    Err(e) => warn!(
                        worker = self.index,
                        slot = id,
                        call_id = %self.slots[idx].call_id,
                        leg,
                        "jitter buffer not started: {e}"
                    ),
                }
            }
        }
        let any = self.slots[idx].jit.iter().any(Option::is_some);
        let listed = self.jit_slots.iter().position(|&i| i as usize == idx);
        match (any, listed) {
            (true, None) => self.jit_slots.push(idx as u32),
            (false, Some(p)) => {
                self.jit_slots.swap_remove(p);
            }
            _ => {}
        }
    }

    fn retire_store(&mut self, store: u16) {
        let Some(slot) = self.jstores.get_mut(usize::from(store)) else {
            return;
        };
        match slot {
            Some(st) if st.inflight > 0 => st.retired = true,
            Some(_) => {
                *slot = None;
                self.jstore_free.push(store);
            }
            None => {}
        }
    }

    /// Publishes slot `idx`'s statistics (with the E-model MOS) to its
    /// counter lines; `roll` also closes the loss interval.
    fn publish_quality(&mut self, idx: usize, roll: bool) {
        let id = self.first + idx as u32;
        let reports = self.slots[idx].q.publish(roll);
        for (leg, r) in reports.iter().enumerate() {
            let Ok(c) = self.table.counters(id, leg) else {
                continue;
            };
            c.set_quality(&r.quality);
            c.set_ssrc_in(r.ssrc);
        }
    }

    /// Re-arms queued receives while the buffer ring has buffers (an armed
    /// receive with none would fail at once with `-ENOBUFS`).
    fn flush_rearm(&mut self) {
        if self.rearm.is_empty() || self.bufs.available() == 0 {
            return;
        }
        // Swap in the (empty, preallocated) scratch list: `arm` may queue
        // again on `self.rearm`.
        let mut list = std::mem::take(&mut self.rearm_scratch);
        std::mem::swap(&mut list, &mut self.rearm);
        for &(idx, sock, gen) in &list {
            self.arm(idx as usize, usize::from(sock), gen);
        }
        list.clear();
        self.rearm_scratch = list;
    }

    /// Arms the multishot receive of socket `sock` of slot `idx` if it is
    /// still bound in generation `gen`.
    fn arm(&mut self, idx: usize, sock: usize, gen: u16) {
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let s = &mut slot.socks[sock];
        s.queued = false;
        if slot.gen != gen || slot.phase != Phase::Bound || s.fd < 0 || s.armed {
            return;
        }
        let (hdr, bgid) = (&*self.recv_hdr, self.bufs.bgid());
        let sqe = if s.fixed {
            opcode::RecvMsgMulti::new(types::Fixed(fixed_index(idx, sock)), hdr, bgid).build()
        } else {
            opcode::RecvMsgMulti::new(types::Fd(s.fd), hdr, bgid).build()
        }
        .user_data(recv_ud(idx as u32, sock, gen));
        s.armed = true;
        if !self.push(&sqe) {
            // Try again at the next iteration.
            if let Some(slot) = self.slots.get_mut(idx) {
                slot.socks[sock].armed = false;
                slot.socks[sock].queued = true;
            }
            self.rearm.push((idx as u32, sock as u8, gen));
        }
    }

    /// Takes every slot of the worker as the table has it: binds the free
    /// slots' ports (stamping them bound) and reattaches active ones. Done
    /// once, before the worker reports ready; [`Worker::run`] does it
    /// itself when this was not called.
    pub fn attach(&mut self) {
        if std::mem::take(&mut self.full_scan) {
            self.scan(now_ms());
        }
    }

    /// Compares every slot of the worker with the table.
    /// Every slot: at start, when slots may be active from before a restart.
    fn scan(&mut self, now: u64) {
        for idx in 0..self.slots.len() {
            self.sync_slot(idx, now);
        }
    }

    /// The slots marked changed since the last call: one atomic per 64
    /// slots, then only the changed ones, so a doorbell's cost does not
    /// grow with the worker's slot count.
    fn scan_changed(&mut self, now: u64) {
        let first = self.first as usize;
        let end = first + self.slots.len();
        if end == first {
            return;
        }
        for k in first / 64..=(end - 1) / 64 {
            let lo = (k * 64).max(first) - k * 64;
            let hi = (k * 64 + 64).min(end) - k * 64;
            let mut bits = self.table.take_changed(k, bit_range(lo, hi));
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.sync_slot(k * 64 + b - first, now);
            }
        }
    }

    fn sync_slot(&mut self, idx: usize, now: u64) {
        let id = self.first + idx as u32;
        let state = self.table.state(id);
        let phase = self.slots[idx].phase;
        match (state, phase) {
            (SlotState::Free, Phase::Idle) if !self.slots[idx].bind_pending => {
                self.prebind(idx, now)
            }
            (SlotState::Active, Phase::Idle) => self.open_slot(idx, now),
            (SlotState::Active, Phase::Bound)
                if self.table.config_seq(id) != self.slots[idx].seq =>
            {
                self.reconfigure(idx, now)
            }
            (SlotState::Draining, Phase::Idle) => {
                if let Err(e) = self.table.finish_drain(id) {
                    debug!(
                        worker = self.index,
                        slot = id,
                        call_id = %self.slots[idx].call_id,
                        "finish_drain: {e}"
                    );
                }
            }
            (SlotState::Draining, Phase::Bound) => self.begin_close(idx, true, now),
            (SlotState::Free | SlotState::Reserved, Phase::Bound) => {
                self.begin_close(idx, false, now)
            }
            (SlotState::Draining, Phase::Closing) => self.slots[idx].drain = true,
            _ => {}
        }
    }

    /// Active slot seen for the first time (or after a restart): take its
    /// configuration, restore learned peers and SSRC state from its
    /// counters, bind its sockets and arm them.
    fn open_slot(&mut self, idx: usize, now: u64) {
        let id = self.first + idx as u32;
        let Ok((cfg, seq)) = self.table.read_config(id) else {
            return;
        };
        let mut restore = [LegRestore::default(); 2];
        for (leg, r) in restore.iter_mut().enumerate() {
            if let Ok(c) = self.table.counters(id, leg) {
                *r = LegRestore {
                    learned_rtp: c.learned(false),
                    learned_rtcp: c.learned(true),
                    ssrc_state: c.ssrc_state(),
                };
            }
        }
        let slot = &mut self.slots[idx];
        slot.fwd = Some(Forwarder::new(cfg, restore));
        slot.seq = seq;
        slot.phase = Phase::Bound;
        slot.gen = slot.gen.wrapping_add(1);
        slot.drain = false;
        // A fresh slot's counters are zero; a restarted worker's carry on.
        *slot.q = SlotFeed::resume(&[self.table.quality(id, 0), self.table.quality(id, 1)]);
        slot.call_id = self.table.call_id(id).unwrap_or_default();
        debug!(
            worker = self.index,
            slot = id,
            call_id = %slot.call_id,
            "slot active"
        );
        self.sync_jitter(idx, false);
        self.bind_missing(idx, now);
        self.table.set_applied(id, seq);
    }

    /// A new configuration for a bound slot.
    fn reconfigure(&mut self, idx: usize, now: u64) {
        let id = self.first + idx as u32;
        let Ok((cfg, seq)) = self.table.read_config(id) else {
            return;
        };
        let slot = &mut self.slots[idx];
        slot.seq = seq;
        if let Some(c) = self.table.call_id(id) {
            slot.call_id = c;
        }
        let Some(fwd) = slot.fwd.as_mut() else {
            return;
        };
        let ch = fwd.apply_config(cfg);
        for leg in 0..2 {
            let Ok(c) = self.table.counters(id, leg) else {
                continue;
            };
            if ch.reset_rtp[leg] {
                c.set_learned(false, None);
            }
            if ch.reset_rtcp[leg] {
                c.set_learned(true, None);
            }
            if ch.ssrc_reset[leg] {
                c.set_ssrc_state(fwd.leg(leg).rewriter.map_or([0; 3], |r| r.to_state()));
            }
        }
        self.sync_jitter(idx, false);
        // rtcp-mux may have been switched off: read the RTCP ports.
        self.bind_missing(idx, now);
        self.table.set_applied(id, seq);
    }

    /// Binds the sockets free slot `idx` lacks, each with the drop-all
    /// filter, and stamps the slot bound in the table once all four are,
    /// so it may be handed out. A port another socket holds is retried
    /// every [`FREE_BIND_RETRY_MS`]; until then the slot is passed over.
    fn prebind(&mut self, idx: usize, now: u64) {
        let id = self.first + idx as u32;
        let mut failed = 0;
        for k in 0..4 {
            if self.slots[idx].socks[k].fd >= 0 {
                continue;
            }
            if let Err(e) = self.bind_sock(idx, k, true) {
                failed += 1;
                debug!(worker = self.index, slot = id, "bind (free slot): {e}");
            }
        }
        let slot = &mut self.slots[idx];
        slot.bind_pending = failed > 0;
        slot.next_bind_ms = now + FREE_BIND_RETRY_MS;
        if failed == 0 {
            self.table.set_bound(id, self.epoch);
        }
    }

    /// Binds socket `k` of slot `idx` (port from the table), filtered or
    /// not, and installs it in the fixed-file table.
    fn bind_sock(&mut self, idx: usize, k: usize, filtered: bool) -> std::io::Result<()> {
        let id = self.first + idx as u32;
        let ports = self.table.ports(id, k / 2);
        let port = if k % 2 == 1 { ports.rtcp } else { ports.rtp };
        let sock = bind_udp(self.bind_ip, port, filtered).inspect_err(|_| {
            self.bind_failures += 1;
        })?;
        let fd = sock.as_raw_fd();
        let fixed = self.fixed_files
            && self
                .ring
                .submitter()
                .register_files_update(fixed_index(idx, k), &[fd])
                .is_ok();
        self.slots[idx].socks[k] = Sock {
            sock: Some(sock),
            fd,
            v6: self.bind_ip.is_ipv6(),
            armed: false,
            queued: false,
            filtered,
            fixed,
        };
        Ok(())
    }

    /// Makes every socket the slot's configuration reads ready: bound (a
    /// free slot's are already), unfiltered, and queued for arming. The
    /// RTCP socket of an rtcp-mux leg stays bound and filtered.
    fn bind_missing(&mut self, idx: usize, now: u64) {
        let id = self.first + idx as u32;
        let Some(fwd) = self.slots[idx].fwd.as_ref() else {
            return;
        };
        let mux = [fwd.config().legs[0].rtcp_mux, fwd.config().legs[1].rtcp_mux];
        let mut failed = false;
        for k in 0..4 {
            let read = !(k % 2 == 1 && mux[k / 2]);
            if self.slots[idx].socks[k].fd < 0 {
                if let Err(e) = self.bind_sock(idx, k, !read) {
                    failed = true;
                    if !self.slots[idx].bind_pending {
                        let ports = self.table.ports(id, k / 2);
                        let port = if k % 2 == 1 { ports.rtcp } else { ports.rtp };
                        warn!(
                            worker = self.index,
                            slot = id,
                            call_id = %self.slots[idx].call_id,
                            "bind {}: {e}; retrying every {BIND_RETRY_MS} ms",
                            SocketAddr::new(self.bind_ip, port)
                        );
                    }
                    continue;
                }
            }
            let slot = &mut self.slots[idx];
            let s = &mut slot.socks[k];
            if read && s.filtered {
                if let Some(sock) = s.sock.as_ref() {
                    match pass_all(sock) {
                        Ok(()) => s.filtered = false,
                        Err(e) => warn!(worker = self.index, slot = id, "detach filter: {e}"),
                    }
                }
            }
            if read && !s.filtered && !s.armed && !s.queued {
                s.queued = true;
                self.rearm.push((idx as u32, k as u8, slot.gen));
            }
        }
        let slot = &mut self.slots[idx];
        slot.bind_pending = failed;
        slot.next_bind_ms = now + BIND_RETRY_MS;
    }

    /// Starts closing a slot: cancels its armed receives. Sockets are closed
    /// (and a drained slot freed) once every receive reported its end.
    fn begin_close(&mut self, idx: usize, drain: bool, now: u64) {
        // Last statistics and any key press whose end packets were lost.
        let id = self.first + idx as u32;
        for leg in 0..2 {
            let q = &mut self.slots[idx].q;
            q.flush_dtmf(leg, now);
            while let Some(ev) = q.poll_dtmf(leg) {
                if let Ok(c) = self.table.counters(id, leg) {
                    c.push_dtmf(&ev);
                }
            }
        }
        if self.slots[idx].q.is_dirty() {
            self.publish_quality(idx, false);
        }
        self.sync_jitter(idx, true);
        let slot = &mut self.slots[idx];
        slot.phase = Phase::Closing;
        slot.drain = drain;
        slot.closing_since_ms = now;
        slot.bind_pending = false;
        let gen = slot.gen;
        let armed: [bool; 4] = std::array::from_fn(|k| slot.socks[k].armed);
        for (k, a) in armed.into_iter().enumerate() {
            if a {
                let sqe = opcode::AsyncCancel::new(recv_ud(idx as u32, k, gen))
                    .build()
                    .user_data(K_CANCEL << KIND_SHIFT);
                if !self.push(&sqe) {
                    warn!(worker = self.index, "could not queue a cancel");
                }
            }
        }
        self.maybe_finish_close(idx);
    }

    /// Finishes closing a slot once none of its sockets has a receive
    /// outstanding: the sockets stay bound (the slot is free for the next
    /// call at once), get the drop-all filter, and lose whatever the
    /// previous call left queued. Frees the slot in the table if it was
    /// released, stamped bound when all four sockets are.
    fn maybe_finish_close(&mut self, idx: usize) {
        let slot = &self.slots[idx];
        if slot.phase != Phase::Closing || slot.socks.iter().any(|s| s.armed) {
            return;
        }
        let id = self.first + idx as u32;
        let mut left = 0;
        for k in &mut self.slots[idx].socks {
            let Some(sock) = k.sock.as_ref() else {
                continue;
            };
            if !k.filtered {
                match drop_all(sock) {
                    Ok(()) => k.filtered = true,
                    Err(e) => warn!(worker = self.index, slot = id, "attach filter: {e}"),
                }
            }
            left += discard_queued(sock, DISCARD_MAX);
        }
        if left > 0 {
            debug!(
                worker = self.index,
                slot = id,
                left,
                "datagrams of the ended call discarded"
            );
        }
        let slot = &mut self.slots[idx];
        let all_bound = slot.socks.iter().all(|k| k.fd >= 0 && k.filtered);
        slot.fwd = None;
        slot.phase = Phase::Idle;
        slot.bind_pending = false;
        slot.gen = slot.gen.wrapping_add(1);
        let drain = std::mem::take(&mut slot.drain);
        let call_id = std::mem::take(&mut slot.call_id);
        // Stamp before the slot is free, so a programmer never finds it free
        // and unstamped (a miss) while its ports are in fact ready.
        self.table
            .set_bound(id, if all_bound { self.epoch } else { 0 });
        if drain {
            match self.table.finish_drain(id) {
                Ok(()) => debug!(worker = self.index, slot = id, %call_id, "slot drained"),
                Err(e) => debug!(worker = self.index, slot = id, %call_id, "finish_drain: {e}"),
            }
        }
        // The slot may have been reused meanwhile: look at it again.
        self.table.mark_changed(id);
        self.rescan = true;
    }

    /// Heartbeat, bind retries and close timeouts.
    fn tick(&mut self, now: u64) {
        self.last_tick_ms = now;
        self.table
            .set_worker_send_errors(self.index, self.send_errors);
        self.table.set_worker_ring(self.index, self.ring_ctr);
        self.table
            .worker_tick(self.index, now, self.forwarded, self.dropped);
        let roll = now.wrapping_sub(self.last_roll_ms) >= LOSS_INTERVAL_MS;
        if roll {
            self.last_roll_ms = now;
        }
        let mut unbound = 0;
        for idx in 0..self.slots.len() {
            if self.slots[idx].phase == Phase::Bound && (self.slots[idx].q.is_dirty() || roll) {
                self.publish_quality(idx, roll);
            }
            let s = &mut self.slots[idx];
            match s.phase {
                Phase::Bound if s.bind_pending && now >= s.next_bind_ms => {
                    self.bind_missing(idx, now)
                }
                Phase::Idle if s.bind_pending => {
                    if now >= s.next_bind_ms
                        && self.table.state(self.first + idx as u32) == SlotState::Free
                    {
                        self.prebind(idx, now);
                    }
                    unbound += u64::from(self.slots[idx].bind_pending);
                }
                Phase::Closing if now.wrapping_sub(s.closing_since_ms) > CLOSE_TIMEOUT_MS => {
                    warn!(
                        worker = self.index,
                        slot = self.first + idx as u32,
                        call_id = %s.call_id,
                        "receives not cancelled in time; closing anyway"
                    );
                    for k in &mut s.socks {
                        k.armed = false;
                    }
                    self.maybe_finish_close(idx);
                }
                _ => {}
            }
        }
        if unbound != self.unbound {
            if unbound > self.unbound {
                warn!(
                    worker = self.index,
                    unbound,
                    "free slots with a port another socket holds are not handed out \
                     (retried every {FREE_BIND_RETRY_MS} ms); keep --ports out of \
                     net.ipv4.ip_local_port_range or list it in ip_local_reserved_ports"
                );
            }
            self.unbound = unbound;
            self.table.set_worker_unbound(self.index, unbound);
        }
    }

    /// Cancels every receive and waits (bounded) for them to end, without
    /// touching slot states in the table.
    fn shutdown(&mut self) {
        let now = now_ms();
        for idx in 0..self.slots.len() {
            if self.slots[idx].phase == Phase::Bound {
                // Odd: never a published seqlock value, so the slot reads
                // as not applied until a worker takes it again.
                self.table.set_applied(self.first + idx as u32, u32::MAX);
                self.begin_close(idx, false, now);
            }
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while self
            .slots
            .iter()
            .any(|s| s.phase == Phase::Closing && s.socks.iter().any(|k| k.armed))
            && Instant::now() < deadline
        {
            self.bufs.publish();
            let ts = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let now = now_ms();
            self.reap(now);
        }
        if self.fixed_files {
            // Drops the table's references, so the ports are free as soon
            // as the descriptors below are closed.
            let _ = self.ring.submitter().unregister_files();
            self.fixed_files = false;
        }
        for s in &mut self.slots {
            for k in &mut s.socks {
                k.close();
            }
            s.phase = Phase::Idle;
        }
    }

    /// Worker index.
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// Bits `lo..hi` of a word set (`lo < hi <= 64`).
fn bit_range(lo: usize, hi: usize) -> u64 {
    let below_hi = if hi >= 64 { u64::MAX } else { (1u64 << hi) - 1 };
    below_hi & !((1u64 << lo) - 1)
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

/// Puts `st` under a free store id (a retired one first); `None` when all
/// `limit` ids (at most [`MAX_JSTORES`]) are taken, so an id never wraps
/// onto a live store.
fn alloc_store(
    stores: &mut Vec<Option<JStore>>,
    free: &mut Vec<u16>,
    st: JStore,
    limit: usize,
) -> Option<u16> {
    if let Some(i) = free.pop() {
        stores[usize::from(i)] = Some(st);
        return Some(i);
    }
    let id = u16::try_from(stores.len()).ok()?;
    if stores.len() >= limit.min(MAX_JSTORES) {
        return None;
    }
    stores.push(Some(st));
    Some(id)
}

/// What became of a packet offered to a jitter buffer.
enum Buffered {
    /// Copied into the store and held for playout.
    Held,
    /// Refused by the buffer: [`DropReason::JitterLate`] (late or
    /// duplicate) or [`DropReason::JitterOverflow`] (no room, or on
    /// probation).
    Refused(DropReason),
    /// Not buffered (no free store entry, or too long): send it now.
    Bypass,
}

/// Copies `pkt` (as it will be sent) into `lj`'s store and pushes it into
/// its buffer.
#[inline]
fn buffer_packet(
    stores: &mut [Option<JStore>],
    lj: &mut LegJitter,
    pkt: &[u8],
    now: Instant,
) -> Buffered {
    let Some(Some(st)) = stores.get_mut(usize::from(lj.store)) else {
        return Buffered::Bypass;
    };
    let Some(mut info) = rtp_info(pkt) else {
        return Buffered::Bypass;
    };
    info.is_event = lj.source.1 == Some(info.payload_type);
    if pkt.len() > st.entry {
        return Buffered::Bypass;
    }
    let Some(e) = st.free.pop() else {
        return Buffered::Bypass;
    };
    st.entry_mut(e)[..pkt.len()].copy_from_slice(pkt);
    st.lens[usize::from(e)] = pkt.len() as u16;
    match lj.jb.push(info, e, now) {
        PushOutcome::Accepted => {
            lj.due = lj.jb.next_deadline();
            Buffered::Held
        }
        PushOutcome::Duplicate(e) | PushOutcome::TooLate(e) => {
            st.free.push(e);
            Buffered::Refused(DropReason::JitterLate)
        }
        PushOutcome::Probation(e) | PushOutcome::Overflow(e) => {
            st.free.push(e);
            Buffered::Refused(DropReason::JitterOverflow)
        }
    }
}

/// A jitter buffer for `w` over packets from a leg whose codec clock rate
/// and telephone-event type are `source`, and the store entries it needs.
fn new_leg_jitter(
    w: JitterSettings,
    source: (u32, Option<u8>),
) -> Result<(JitterBuffer<u16>, usize), crate::quality::jitter::JitterError> {
    let max_ms = u32::from(w.max_ms.max(1));
    let target_ms = u32::from(w.target_ms).min(max_ms);
    // Room for max_ms of 10 ms packets, twice over.
    let capacity = (max_ms as usize / 5 + 16).clamp(32, MAX_CAPACITY.min(1024));
    let clock = if source.0 == 0 {
        DEFAULT_CLOCK_RATE
    } else {
        source.0
    };
    let mut jb = JitterBuffer::new(JitterConfig {
        clock_rate: clock,
        target_ms,
        min_ms: target_ms.min(20),
        max_ms,
        adaptive: w.adaptive,
        capacity,
    })?;
    if let Some(pt) = source.1 {
        jb.set_clock_rate(pt, clock);
    }
    Ok((jb, capacity + JSTORE_SPARE))
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

/// Thread body of worker `index`: pins, sets up, reports setup through
/// `ready`, and runs until `shutdown` or `abort` is set.
pub(crate) fn thread_main(
    index: u32,
    table: Arc<SlotTable>,
    bind_ip: IpAddr,
    pin: bool,
    shutdown: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<Result<(), RelayError>>,
) -> Result<(), RelayError> {
    if pin {
        let cpu = index as usize % online_cpus();
        if let Err(e) = pin_to_cpu(cpu) {
            warn!(worker = index, cpu, "could not pin worker: {e}");
        }
    }
    let worker = match Worker::new(index, table, bind_ip) {
        Ok(mut w) => {
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
    fn user_data_round_trips() {
        let ud = recv_ud(123_456, 3, 0xbeef);
        assert_eq!(ud >> KIND_SHIFT, K_RECV);
        assert_eq!(ud as u32, 123_456);
        assert_eq!(ud >> 32 & 3, 3);
        assert_eq!((ud >> 34) as u16, 0xbeef);
        let s = send_ud(4095);
        assert_eq!(s >> KIND_SHIFT, K_SEND);
        assert_eq!(s as u16, 4095);
        assert_eq!(sock_index(1, true), 3);
        assert_eq!(sock_index(0, false), 0);
    }

    #[test]
    fn store_ids_run_out_instead_of_wrapping() {
        let (mut stores, mut free) = (Vec::new(), Vec::new());
        let st = || JStore::new(2, 16);
        let ids: Vec<_> = (0..3)
            .map(|_| alloc_store(&mut stores, &mut free, st(), 3))
            .collect();
        assert_eq!(ids, [Some(0), Some(1), Some(2)]);
        assert_eq!(alloc_store(&mut stores, &mut free, st(), 3), None);
        // A retired id is handed out again.
        stores[1] = None;
        free.push(1);
        assert_eq!(alloc_store(&mut stores, &mut free, st(), 3), Some(1));
        assert_eq!(alloc_store(&mut stores, &mut free, st(), 3), None);
        // The real limit: ids are 16 bits, so 65536 of them and no more.
        let mut stores: Vec<Option<JStore>> = (0..MAX_JSTORES).map(|_| None).collect();
        assert_eq!(
            alloc_store(&mut stores, &mut Vec::new(), st(), usize::MAX),
            None
        );
        stores.pop();
        assert_eq!(
            alloc_store(&mut stores, &mut Vec::new(), st(), usize::MAX),
            Some(u16::MAX)
        );
    }

    #[test]
    fn online_cpus_is_positive() {
        assert!(online_cpus() >= 1);
        assert!(pin_to_cpu(usize::MAX).is_err());
    }
}
