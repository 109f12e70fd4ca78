//! A sans-IO RTP jitter buffer: packets go in with [`JitterBuffer::push`]
//! as they arrive, and come out in sequence order at their playout time
//! with [`JitterBuffer::poll`]; [`JitterBuffer::next_deadline`] says when
//! to poll next. The caller owns the clock (`now: Instant` is handed in),
//! so tests run on a virtual clock and the worker drives every buffer from
//! its own timer, with no thread per buffer.
//!
//! # Model
//!
//! - **Positions.** A packet is keyed by its extended sequence number
//!   (RFC 3550 A.1: the 16-bit sequence number extended across wraps to
//!   the value nearest the highest seen), held in a ring of `capacity`
//!   entries indexed by position modulo capacity. Positions keep increasing
//!   across resets (a new SSRC continues right after the old stream's
//!   highest position), so [`Playout::Lost::ext_seq`] is the extended
//!   sequence number of the current stream plus a constant per stream.
//! - **Playout time.** With `transit = arrival − timestamp / clock_rate`
//!   and `base` the smallest transit seen over the last 2–4 s (RFC 3550
//!   §6.4.1's transit, taken at its minimum so that the reference packet is
//!   the least delayed one), a packet with RTP timestamp `ts` is due at
//!   `ts / clock_rate + base + target`, that is at the reference packet's
//!   arrival + (ts − ref_ts) / clock_rate + target, and never later than its
//!   own arrival + `max_ms`. Packets leave in sequence order, so a packet's
//!   deadline is lowered to that of any later packet that is due earlier
//!   (deadlines only ever move earlier: the maximum delay always holds).
//! - **Talkspurts.** A new packet with the marker bit (RFC 3551 §4.1: the
//!   first packet after silence) resynchronizes: `base` becomes its transit,
//!   so a sender that restarts its timestamps at a talkspurt is played at
//!   arrival + target rather than at once or at the maximum delay.
//! - **Silence is not loss.** Loss is a gap in *sequence numbers*; a jump
//!   in timestamps with contiguous sequence numbers (DTX, comfort noise,
//!   RFC 3389) only moves the playout time.
//! - **Loss.** A missing position is reported once as [`Playout::Lost`]
//!   when the first packet after it is due, and skipped; a packet for it
//!   that arrives afterwards is [`PushOutcome::TooLate`].
//! - **Resets.** A new SSRC, a payload type with another clock rate, or a
//!   sequence jump past the ring (within RFC 3550's `MAX_DROPOUT`) starts a
//!   new stream: what is still buffered is due at once, and the new stream
//!   continues after it. A jump beyond `MAX_DROPOUT`, or further back than
//!   `MAX_MISORDER`, is held on probation (RFC 3550 A.1): the packet is
//!   refused, and the next packet in sequence after it confirms a restart.
//! - **Telephone events** ([`PacketInfo::is_event`]) keep their sequence
//!   position but take no part in timing: they would otherwise inflate the
//!   jitter and, due long before their arrival, pull every buffered packet
//!   ahead of them out at once.
//! - **Adaptive mode.** The target delay follows the measured interarrival
//!   jitter `J` (RFC 3550 A.8, computed here in nanoseconds):
//!   `target = clamp(3 × J, min_ms, max_ms)`. For a delay spread uniformly
//!   over `[0, N]`, `J ≈ N / 3`, so `3 × J` covers the whole spread.
//!
//! The buffer allocates once, in [`JitterBuffer::new`]; `push` and `poll`
//! never allocate. Items of type `T` (the worker's buffer ids) are returned
//! to the caller whenever they are not kept, so the caller can recycle
//! them.

use std::fmt;
use std::time::{Duration, Instant};

/// RFC 3550 A.1: the largest forward sequence jump taken as a gap rather
/// than a restart.
pub const MAX_DROPOUT: u64 = 3000;
/// RFC 3550 A.1: the largest backward jump taken as misordering rather
/// than a restart.
pub const MAX_MISORDER: u64 = 100;
/// The window over which the smallest transit is the playout base: the
/// base is the minimum over the current and the previous window.
const BASE_WINDOW: Duration = Duration::from_secs(2);
/// Adaptive mode: the target delay is this many times the RFC 3550 jitter.
pub const ADAPTIVE_FACTOR: u32 = 3;
/// A timestamp step larger than this (in seconds of the stream's clock)
/// between consecutive packets restarts the timing reference instead of
/// extending it: no sender jumps that far, and unbounded steps would
/// overflow the extended timestamp.
pub const MAX_TS_STEP_SECS: u32 = 60;
/// The largest ring the buffer accepts, in packets.
pub const MAX_CAPACITY: usize = 4096;

/// The RTP header fields the buffer needs (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketInfo {
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp, in units of the payload type's clock rate.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Marker bit: for audio, the first packet of a talkspurt.
    pub marker: bool,
    /// Payload type (7 bits), which selects the clock rate.
    pub payload_type: u8,
    /// An RFC 4733 telephone-event packet (the caller knows the
    /// negotiated type). Every packet of an event repeats the event's
    /// start timestamp (§2.3.5) and the first carries the marker bit
    /// (§2.5.1.1), so events say nothing about timing: they leave the
    /// playout base, the jitter and the adaptive target alone, and are
    /// due at arrival + target, never before the packet ahead of them.
    pub is_event: bool,
}

/// How a buffer plays out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Clock rate of dynamic payload types (96–127) and of types RFC 3551
    /// does not assign, Hz; static types use their RFC 3551 §6 rates
    /// unless changed with [`JitterBuffer::set_clock_rate`].
    pub clock_rate: u32,
    /// Target playout delay, ms (the starting point in adaptive mode).
    pub target_ms: u32,
    /// Adaptive mode's lower bound on the target delay, ms.
    pub min_ms: u32,
    /// Maximum delay, ms: no packet leaves later than its arrival + this.
    pub max_ms: u32,
    /// Size the target delay from the measured jitter, within
    /// `[min_ms, max_ms]`.
    pub adaptive: bool,
    /// Ring size, packets (2..=[`MAX_CAPACITY`]). It should hold `max_ms`
    /// of packets with room to spare: 64 holds 1.28 s of 20 ms packets.
    pub capacity: usize,
}

impl Default for JitterConfig {
    /// 8 kHz, target 60 ms within [20, 200] ms, fixed, 64 packets.
    fn default() -> Self {
        JitterConfig {
            clock_rate: 8000,
            target_ms: 60,
            min_ms: 20,
            max_ms: 200,
            adaptive: false,
            capacity: 64,
        }
    }
}

/// A configuration [`JitterBuffer::new`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterError {
    /// `capacity` outside 2..=[`MAX_CAPACITY`].
    Capacity(usize),
    /// A clock rate of 0 Hz.
    ClockRate,
    /// Delays not ordered `min_ms <= target_ms <= max_ms`, or `max_ms` 0.
    Delays {
        /// `min_ms`.
        min_ms: u32,
        /// `target_ms`.
        target_ms: u32,
        /// `max_ms`.
        max_ms: u32,
    },
}

impl fmt::Display for JitterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JitterError::Capacity(c) => {
                write!(
                    f,
                    "jitter buffer capacity {c} outside 2..={MAX_CAPACITY} packets"
                )
            }
            JitterError::ClockRate => write!(f, "jitter buffer clock rate of 0 Hz"),
            JitterError::Delays {
                min_ms,
                target_ms,
                max_ms,
            } => write!(
                f,
                "jitter buffer delays must satisfy 0 < max and min <= target <= max \
                 (min {min_ms} ms, target {target_ms} ms, max {max_ms} ms)"
            ),
        }
    }
}

impl std::error::Error for JitterError {}

/// What [`JitterBuffer::push`] did with a packet. Every variant but
/// `Accepted` hands the item back.
#[derive(Debug, PartialEq, Eq)]
pub enum PushOutcome<T> {
    /// Buffered; `poll` returns it at its playout time.
    Accepted,
    /// Already buffered or already played (counted in `duplicates`).
    Duplicate(T),
    /// Its position was already played or reported lost, or it is further
    /// behind than `MAX_MISORDER` (counted in `late`).
    TooLate(T),
    /// A forward jump beyond `MAX_DROPOUT`: refused until the next packet
    /// in sequence confirms a restart (RFC 3550 A.1; counted in
    /// `probation`).
    Probation(T),
    /// The stream restarted while the ring was full of the old one; the
    /// packet does not fit (counted in `overflows`).
    Overflow(T),
}

/// What [`JitterBuffer::poll`] returns, in sequence order.
#[derive(Debug, PartialEq, Eq)]
pub enum Playout<T> {
    /// The next packet, at (or after) its playout time.
    Packet(T),
    /// The packet at position `ext_seq` never came before the packet after
    /// it was due; it is skipped.
    Lost {
        /// The missing position (see the module documentation).
        ext_seq: u64,
    },
}

/// Event counters since the buffer was created, packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JitterCounters {
    /// Packets played out.
    pub played: u64,
    /// Positions skipped as lost (reported as [`Playout::Lost`], plus
    /// bursts longer than the ring, which reset instead).
    pub lost: u64,
    /// Packets refused as [`PushOutcome::TooLate`].
    pub late: u64,
    /// Packets refused as [`PushOutcome::Duplicate`].
    pub duplicates: u64,
    /// Talkspurt resynchronizations (marker bit).
    pub resyncs: u64,
    /// Stream resets (SSRC, clock rate, sequence jump or restart).
    pub resets: u64,
    /// Packets refused as [`PushOutcome::Probation`].
    pub probation: u64,
    /// Packets refused as [`PushOutcome::Overflow`].
    pub overflows: u64,
}

enum Entry<T> {
    Empty,
    /// The position that was played from this ring index, for duplicates.
    Played(u64),
    Full {
        pos: u64,
        deadline: Instant,
        item: T,
    },
}

/// The RFC 3551 §6 clock rate of static payload type `pt`, Hz; `None` for
/// dynamic or unassigned types. The table is [`tern_shared::codec`]'s; this
/// name stays for the worker.
pub use tern_shared::codec::static_clock_rate;

/// A jitter buffer over items `T` (whatever the caller keeps a packet in).
pub struct JitterBuffer<T> {
    cfg: JitterConfig,
    ring: Box<[Entry<T>]>,
    /// Clock rate per payload type, Hz.
    pt_clock: [u32; 128],
    /// No packet seen yet.
    fresh: bool,
    ssrc: u32,
    clock_rate: u32,
    /// Added to a sequence number (mod 2^16) before extension, so that a
    /// new stream continues after the old one's positions.
    seq_delta: u16,
    highest: u64,
    /// The next position to play out.
    next: u64,
    /// The current stream's first position.
    stream_first: u64,
    buffered: usize,
    /// RFC 3550 A.1 `bad_seq`: the sequence number that confirms a restart.
    bad_seq: Option<u16>,
    // Timing, in ns since `epoch`.
    epoch: Instant,
    last_ts: u32,
    last_ts_ext: i64,
    base_cur: i64,
    base_prev: i64,
    window_start: Instant,
    last_transit: Option<i64>,
    /// RFC 3550 A.8 jitter, ns.
    jitter_ns: f64,
    target: Duration,
    counters: JitterCounters,
}

impl<T> fmt::Debug for JitterBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JitterBuffer")
            .field("cfg", &self.cfg)
            .field("ssrc", &self.ssrc)
            .field("next", &self.next)
            .field("highest", &self.highest)
            .field("buffered", &self.buffered)
            .field("target", &self.target)
            .field("counters", &self.counters)
            .finish()
    }
}

fn ms(v: u32) -> Duration {
    Duration::from_millis(u64::from(v))
}

impl<T> JitterBuffer<T> {
    /// A buffer with `cfg.capacity` entries, allocated here once.
    ///
    /// Errors: [`JitterError::Capacity`], [`JitterError::ClockRate`],
    /// [`JitterError::Delays`].
    /// `now` starts its timing (the caller's clock: tests pass a virtual
    /// one).
    pub fn new(cfg: JitterConfig, now: Instant) -> Result<Self, JitterError> {
        if !(2..=MAX_CAPACITY).contains(&cfg.capacity) {
            return Err(JitterError::Capacity(cfg.capacity));
        }
        if cfg.clock_rate == 0 {
            return Err(JitterError::ClockRate);
        }
        let bounds_ok = cfg.max_ms > 0 && cfg.target_ms <= cfg.max_ms;
        if !bounds_ok || (cfg.adaptive && cfg.min_ms > cfg.target_ms) {
            return Err(JitterError::Delays {
                min_ms: cfg.min_ms,
                target_ms: cfg.target_ms,
                max_ms: cfg.max_ms,
            });
        }
        let mut pt_clock = [cfg.clock_rate; 128];
        for (pt, c) in pt_clock.iter_mut().enumerate() {
            if let Some(r) = static_clock_rate(pt as u8) {
                *c = r;
            }
        }
        Ok(JitterBuffer {
            cfg,
            ring: (0..cfg.capacity).map(|_| Entry::Empty).collect(),
            pt_clock,
            fresh: true,
            ssrc: 0,
            clock_rate: cfg.clock_rate,
            seq_delta: 0,
            highest: 0,
            next: 0,
            stream_first: 0,
            buffered: 0,
            bad_seq: None,
            epoch: now,
            last_ts: 0,
            last_ts_ext: 0,
            base_cur: 0,
            base_prev: 0,
            window_start: now,
            last_transit: None,
            jitter_ns: 0.0,
            target: ms(cfg.target_ms),
            counters: JitterCounters::default(),
        })
    }

    /// Sets the clock rate of payload type `pt` (0..=127), Hz, e.g. 48000
    /// for a dynamic opus type. A rate of 0 is ignored.
    pub fn set_clock_rate(&mut self, pt: u8, hz: u32) {
        if let Some(c) = self.pt_clock.get_mut(usize::from(pt)) {
            if hz > 0 {
                *c = hz;
            }
        }
    }

    /// The configuration.
    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    /// Counters since creation.
    pub fn counters(&self) -> JitterCounters {
        self.counters
    }

    /// Packets held now.
    pub fn len(&self) -> usize {
        self.buffered
    }

    /// No packet held.
    pub fn is_empty(&self) -> bool {
        self.buffered == 0
    }

    /// The current target delay (it moves in adaptive mode).
    pub fn target_delay(&self) -> Duration {
        self.target
    }

    /// The RFC 3550 A.8 interarrival jitter of the current stream.
    pub fn jitter(&self) -> Duration {
        Duration::from_nanos(self.jitter_ns as u64)
    }

    fn idx(&self, pos: u64) -> usize {
        (pos % self.ring.len() as u64) as usize
    }

    fn cap(&self) -> u64 {
        self.ring.len() as u64
    }

    /// RFC 3550 A.1 extension: the position with these low 16 bits nearest
    /// `highest`.
    fn extend(&self, seq: u16) -> u64 {
        let s = u64::from(seq.wrapping_add(self.seq_delta));
        let base = self.highest & !0xFFFF;
        let mut best = base | s;
        for c in [base.wrapping_sub(0x1_0000) | s, (base + 0x1_0000) | s] {
            if c.abs_diff(self.highest) < best.abs_diff(self.highest) {
                best = c;
            }
        }
        best
    }

    /// Starts a new stream whose first packet, `seq`, takes the position
    /// after everything seen; what is buffered is due at `now`.
    fn restart(&mut self, hdr: PacketInfo, now: Instant, timing: bool) -> u64 {
        let seq = hdr.seq;
        for e in self.ring.iter_mut() {
            if let Entry::Full { deadline, .. } = e {
                *deadline = (*deadline).min(now);
            }
        }
        let pos = if self.fresh {
            // Leave room below the first packet for earlier ones arriving
            // late.
            self.fresh = false;
            self.highest = 0x1_0000 | u64::from(seq);
            self.next = self.highest;
            self.seq_delta = 0;
            self.highest
        } else {
            self.counters.resets += 1;
            let pos = self.highest + 1;
            self.seq_delta = (pos as u16).wrapping_sub(seq);
            pos
        };
        self.stream_first = pos;
        self.bad_seq = None;
        if timing {
            self.restart_timing(hdr.timestamp, now);
            self.jitter_ns = 0.0;
            self.target = ms(self.cfg.target_ms);
        }
        pos
    }

    /// Takes timestamp `ts` arriving at `now` as the new timing reference:
    /// the playout base is learned afresh from here.
    fn restart_timing(&mut self, ts: u32, now: Instant) {
        self.epoch = now;
        self.last_ts = ts;
        self.last_ts_ext = 0;
        self.last_transit = None;
        self.window_start = now;
        self.base_cur = i64::MAX;
        self.base_prev = i64::MAX;
    }

    /// Buffers one packet that arrived at `now`: `hdr` from its RTP header,
    /// `item` whatever the caller keeps it in.
    pub fn push(&mut self, hdr: PacketInfo, item: T, now: Instant) -> PushOutcome<T> {
        let clock = self.pt_clock[usize::from(hdr.payload_type & 0x7F)];
        let new_stream = self.fresh || hdr.ssrc != self.ssrc || clock != self.clock_rate;
        let pos = if new_stream {
            self.ssrc = hdr.ssrc;
            self.clock_rate = clock;
            self.restart(hdr, now, true)
        } else {
            let pos = self.extend(hdr.seq);
            let d = pos as i64 - self.highest as i64;
            let cap = self.cap();
            if pos >= self.next.max(self.stream_first) && pos < self.next + cap {
                pos
            } else if pos < self.next.max(self.stream_first) {
                if d < -(MAX_MISORDER as i64) {
                    if self.bad_seq == Some(hdr.seq) {
                        self.restart(hdr, now, true)
                    } else {
                        self.bad_seq = Some(hdr.seq.wrapping_add(1));
                        self.counters.late += 1;
                        return PushOutcome::TooLate(item);
                    }
                } else if self.next == self.stream_first && self.highest - pos < cap {
                    // Nothing of this stream has left yet: an earlier
                    // packet overtaken on the way becomes the first.
                    for p in pos..self.stream_first {
                        let i = self.idx(p);
                        self.ring[i] = Entry::Empty;
                    }
                    self.next = pos;
                    self.stream_first = pos;
                    pos
                } else {
                    let i = self.idx(pos);
                    if matches!(self.ring[i], Entry::Played(p) if p == pos && p >= self.stream_first)
                    {
                        self.counters.duplicates += 1;
                        return PushOutcome::Duplicate(item);
                    }
                    // A late packet is what the adaptive target must learn
                    // from (an event's timestamp says nothing).
                    if !hdr.is_event {
                        self.observe(hdr, now, false);
                    }
                    self.counters.late += 1;
                    return PushOutcome::TooLate(item);
                }
            } else if d > MAX_DROPOUT as i64 {
                if self.bad_seq == Some(hdr.seq) {
                    self.restart(hdr, now, true)
                } else {
                    self.bad_seq = Some(hdr.seq.wrapping_add(1));
                    self.counters.probation += 1;
                    return PushOutcome::Probation(item);
                }
            } else {
                // A burst of loss longer than the ring: count it and go on
                // from here as a new stream.
                self.counters.lost += (pos - self.highest).saturating_sub(1);
                self.restart(hdr, now, false)
            }
        };
        if pos >= self.next + self.cap() {
            // The position is taken (and will be reported lost), so the
            // stream's next packets follow on from it.
            self.highest = self.highest.max(pos);
            self.counters.overflows += 1;
            return PushOutcome::Overflow(item);
        }
        let i = self.idx(pos);
        if let Entry::Full { pos: p, .. } = self.ring[i] {
            if p == pos {
                self.counters.duplicates += 1;
                return PushOutcome::Duplicate(item);
            }
        }
        let deadline = if hdr.is_event {
            self.event_due(pos, now)
        } else {
            let ts_ns = self.observe(hdr, now, !new_stream && pos > self.highest);
            self.due(ts_ns, now)
        };
        let deadline = self.keep_order(pos, deadline);
        self.ring[i] = Entry::Full {
            pos,
            deadline,
            item,
        };
        self.buffered += 1;
        self.highest = self.highest.max(pos);
        PushOutcome::Accepted
    }

    /// Updates the timing state (playout base, RFC 3550 jitter, adaptive
    /// target) with a packet of the current stream, kept or too late, and
    /// returns its timestamp in ns since `epoch`.
    fn observe(&mut self, hdr: PacketInfo, now: Instant, may_resync: bool) -> i64 {
        let step = i64::from(hdr.timestamp.wrapping_sub(self.last_ts) as i32);
        let clock = i64::from(self.clock_rate.max(1));
        if step.unsigned_abs() > u64::from(MAX_TS_STEP_SECS) * clock as u64 {
            // Not a timestamp this stream's clock could have reached: a
            // sender restart or garbage. Start the reference again rather
            // than let the extended timestamp run away.
            self.restart_timing(hdr.timestamp, now);
        }
        let ts_ext = self
            .last_ts_ext
            .saturating_add(i64::from(hdr.timestamp.wrapping_sub(self.last_ts) as i32));
        self.last_ts = hdr.timestamp;
        self.last_ts_ext = ts_ext;
        // Whole seconds and the remainder apart (a remainder below 2^32
        // times 10^9 fits), saturating for a stream older than centuries.
        let ts_ns = ts_ext
            .div_euclid(clock)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts_ext.rem_euclid(clock) * 1_000_000_000 / clock);
        let arrival_ns =
            i64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(i64::MAX);
        let transit = arrival_ns.saturating_sub(ts_ns);
        if hdr.marker && may_resync {
            self.counters.resyncs += 1;
            self.base_cur = transit;
            self.base_prev = transit;
            self.window_start = now;
            self.last_transit = None;
        } else if now.saturating_duration_since(self.window_start) >= BASE_WINDOW {
            self.base_prev = self.base_cur;
            self.base_cur = transit;
            self.window_start = now;
        } else {
            self.base_cur = self.base_cur.min(transit);
        }
        if let Some(prev) = self.last_transit {
            // RFC 3550 A.8: J += (|D| - J) / 16.
            let d = transit.saturating_sub(prev).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
            if self.cfg.adaptive {
                let t = Duration::from_nanos((self.jitter_ns * f64::from(ADAPTIVE_FACTOR)) as u64);
                self.target = t.clamp(ms(self.cfg.min_ms), ms(self.cfg.max_ms));
            }
        }
        self.last_transit = Some(transit);
        ts_ns
    }

    /// The playout time of a telephone event at position `pos` that arrived
    /// at `now`: arrival + target, but not before the held packet ahead of
    /// it (so nothing buffered is pulled forward), and never past
    /// arrival + `max_ms`.
    fn event_due(&self, pos: u64, now: Instant) -> Instant {
        let cap = now.checked_add(ms(self.cfg.max_ms)).unwrap_or(now);
        let mut due = now.checked_add(self.target).unwrap_or(cap);
        for p in (self.next..pos).rev() {
            if let Entry::Full {
                pos: q,
                deadline: d,
                ..
            } = &self.ring[self.idx(p)]
            {
                if *q == p {
                    due = due.max(*d);
                    break;
                }
            }
        }
        due.min(cap)
    }

    /// The playout time of a packet with timestamp `ts_ns` (from
    /// [`Self::observe`]) that arrived at `now`.
    fn due(&self, ts_ns: i64, now: Instant) -> Instant {
        let base = self.base_cur.min(self.base_prev);
        let due_ns = ts_ns
            .saturating_add(base)
            .saturating_add(self.target.as_nanos() as i64);
        let cap = now.checked_add(ms(self.cfg.max_ms)).unwrap_or(now);
        let due = if due_ns <= 0 {
            now
        } else {
            self.epoch
                .checked_add(Duration::from_nanos(due_ns as u64))
                .unwrap_or(cap)
        };
        due.clamp(now, cap)
    }

    /// Keeps deadlines non-decreasing in sequence order by lowering them:
    /// a packet due earlier than one before it pulls that one forward.
    fn keep_order(&mut self, pos: u64, mut deadline: Instant) -> Instant {
        for p in pos + 1..=self.highest {
            let i = self.idx(p);
            if let Entry::Full {
                pos: q,
                deadline: d,
                ..
            } = &self.ring[i]
            {
                if *q == p {
                    deadline = deadline.min(*d);
                    break;
                }
            }
        }
        for p in (self.next..pos).rev() {
            let i = self.idx(p);
            if let Entry::Full {
                pos: q,
                deadline: d,
                ..
            } = &mut self.ring[i]
            {
                if *q == p {
                    if *d <= deadline {
                        break;
                    }
                    *d = deadline;
                }
            }
        }
        deadline
    }

    /// The first held packet at or after `next`: its position and deadline.
    fn first_held(&self) -> Option<(u64, Instant)> {
        if self.buffered == 0 {
            return None;
        }
        (self.next..self.next + self.cap()).find_map(|p| match &self.ring[self.idx(p)] {
            Entry::Full { pos, deadline, .. } if *pos == p => Some((p, *deadline)),
            _ => None,
        })
    }

    /// The next packet or loss due at `now`, in sequence order; `None` when
    /// nothing is due yet (see [`Self::next_deadline`]).
    pub fn poll(&mut self, now: Instant) -> Option<Playout<T>> {
        self.poll_or_next(now).ok()
    }

    /// [`Self::poll`] and, when nothing is due, [`Self::next_deadline`] in
    /// one scan of the ring: `Ok` with the next packet or loss due at
    /// `now`, else `Err` with when one will be (`None`: nothing held).
    pub fn poll_or_next(&mut self, now: Instant) -> Result<Playout<T>, Option<Instant>> {
        let Some((p, deadline)) = self.first_held() else {
            return Err(None);
        };
        if deadline > now {
            return Err(Some(deadline));
        }
        let pos = self.next;
        let i = self.idx(pos);
        self.next += 1;
        if p == pos {
            let Entry::Full { item, .. } = std::mem::replace(&mut self.ring[i], Entry::Played(pos))
            else {
                return Err(None); // unreachable: first_held saw it
            };
            self.buffered -= 1;
            self.counters.played += 1;
            Ok(Playout::Packet(item))
        } else {
            self.ring[i] = Entry::Empty;
            self.counters.lost += 1;
            Ok(Playout::Lost { ext_seq: pos })
        }
    }

    /// When `poll` next has something to return; `None` when empty.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.first_held().map(|(_, d)| d)
    }

    /// Takes the next held packet in order whatever its deadline, skipping
    /// gaps without reporting them: for emptying a buffer that is switched
    /// off or whose call ends.
    pub fn drain_next(&mut self) -> Option<T> {
        let (p, _) = self.first_held()?;
        let i = self.idx(p);
        let Entry::Full { item, .. } = std::mem::replace(&mut self.ring[i], Entry::Played(p))
        else {
            return None;
        };
        self.next = p + 1;
        self.buffered -= 1;
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSRC: u32 = 0x1234_5678;

    fn hdr(seq: u16, ts: u32) -> PacketInfo {
        PacketInfo {
            seq,
            timestamp: ts,
            ssrc: SSRC,
            marker: false,
            payload_type: 0,
            is_event: false,
        }
    }

    fn fixed(target_ms: u32, max_ms: u32) -> JitterBuffer<u32> {
        JitterBuffer::new(
            JitterConfig {
                target_ms,
                max_ms,
                ..JitterConfig::default()
            },
            Instant::now(),
        )
        .unwrap()
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Polls every millisecond from `from` to `to` ms, returning
    /// (time ms, playout).
    fn run(
        jb: &mut JitterBuffer<u32>,
        t0: Instant,
        from: u64,
        to: u64,
    ) -> Vec<(u64, Playout<u32>)> {
        let mut out = Vec::new();
        for t in from..=to {
            while let Some(p) = jb.poll(at(t0, t)) {
                out.push((t, p));
                assert!(out.len() < 100_000);
            }
        }
        out
    }

    fn items(v: &[(u64, Playout<u32>)]) -> Vec<u32> {
        v.iter()
            .filter_map(|(_, p)| match p {
                Playout::Packet(x) => Some(*x),
                Playout::Lost { .. } => None,
            })
            .collect()
    }

    #[test]
    fn config_errors() {
        let bad = |c: JitterConfig| JitterBuffer::<u32>::new(c, Instant::now()).unwrap_err();
        let d = JitterConfig::default();
        assert_eq!(
            bad(JitterConfig { capacity: 1, ..d }),
            JitterError::Capacity(1)
        );
        assert_eq!(
            bad(JitterConfig { clock_rate: 0, ..d }),
            JitterError::ClockRate
        );
        assert!(matches!(
            bad(JitterConfig {
                target_ms: 300,
                ..d
            }),
            JitterError::Delays { .. }
        ));
    }

    /// Sends packet `s` (20 ms apart) at `20 s + delay(s)` ms, pushing in
    /// arrival order and polling every ms; returns (time ms, playout).
    fn simulate(
        jb: &mut JitterBuffer<u32>,
        t0: Instant,
        seqs: std::ops::Range<u32>,
        delay: impl Fn(u32) -> u64,
        first_seq: u16,
    ) -> Vec<(u64, Playout<u32>)> {
        let mut ev: Vec<(u64, u32)> = seqs.map(|s| (20 * u64::from(s) + delay(s), s)).collect();
        ev.sort();
        let mut out = Vec::new();
        let mut t = 0;
        for &(when, s) in &ev {
            out.extend(run(jb, t0, t, when));
            t = when + 1;
            let h = hdr(first_seq.wrapping_add(s as u16), 160 * s);
            assert_eq!(
                jb.push(h, s, at(t0, when)),
                PushOutcome::Accepted,
                "packet {s}"
            );
            out.extend(run(jb, t0, when, when));
        }
        out.extend(run(jb, t0, t, t + 1000));
        out
    }

    #[test]
    fn reordered_stream_comes_out_in_order() {
        let t0 = Instant::now();
        let mut jb = fixed(60, 200);
        // Every third packet is 30 ms late: it arrives after the next one.
        let delay = |s: u32| if s % 3 == 1 { 30 } else { 0 };
        let out = simulate(&mut jb, t0, 0..30, delay, 100);
        assert_eq!(items(&out), (0..30).collect::<Vec<_>>());
        // Each leaves at its timestamp + the target delay.
        for (t, p) in &out {
            if let Playout::Packet(s) = p {
                assert_eq!(*t, 20 * u64::from(*s) + 60, "packet {s}");
            }
        }
        assert_eq!(jb.counters().played, 30);
        assert_eq!(jb.counters().lost, 0);
    }

    #[test]
    fn earlier_packet_overtaken_at_the_start_is_kept() {
        let t0 = Instant::now();
        let mut jb = fixed(60, 200);
        assert_eq!(jb.push(hdr(11, 160), 1, at(t0, 0)), PushOutcome::Accepted);
        assert_eq!(jb.push(hdr(10, 0), 0, at(t0, 5)), PushOutcome::Accepted);
        let out = run(&mut jb, t0, 0, 200);
        assert_eq!(items(&out), vec![0, 1]);
    }

    #[test]
    fn sequence_wrap_at_65535() {
        let t0 = Instant::now();
        let mut jb = fixed(40, 200);
        // 65533 .. 65535, 0 .. 4, with 65535 and 0 swapped.
        let delay = |s: u32| if s == 2 { 25 } else { 0 };
        let out = simulate(&mut jb, t0, 0..8, delay, 65533);
        assert_eq!(items(&out), (0..8).collect::<Vec<_>>());
        assert_eq!(jb.counters().lost, 0);
        assert_eq!(jb.counters().resets, 0);
    }

    #[test]
    fn lost_packet_skipped_at_its_deadline() {
        let t0 = Instant::now();
        let mut jb = fixed(60, 200);
        for s in [0u16, 1, 3, 4] {
            jb.push(
                hdr(s, 160 * u32::from(s)),
                u32::from(s),
                at(t0, 20 * u64::from(s)),
            );
        }
        let out = run(&mut jb, t0, 0, 300);
        // 2 is reported lost once, when 3 is due (60 + 60 ms), then 3 plays.
        let lost: Vec<_> = out
            .iter()
            .filter(|(_, p)| matches!(p, Playout::Lost { .. }))
            .collect();
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].0, 120);
        assert_eq!(items(&out), vec![0, 1, 3, 4]);
        assert_eq!(jb.counters().lost, 1);
        // A packet for the skipped position is too late now.
        assert_eq!(
            jb.push(hdr(2, 320), 2, at(t0, 301)),
            PushOutcome::TooLate(2)
        );
        assert_eq!(jb.counters().late, 1);
        // And one already played is a duplicate.
        assert_eq!(
            jb.push(hdr(3, 480), 3, at(t0, 302)),
            PushOutcome::Duplicate(3)
        );
    }

    #[test]
    fn poll_or_next_is_poll_and_next_deadline_in_one() {
        let t0 = Instant::now();
        let mut jb = fixed(40, 200);
        assert_eq!(jb.poll_or_next(t0), Err(None));
        jb.push(hdr(10, 0), 0, t0);
        jb.push(hdr(12, 320), 2, at(t0, 40));
        assert_eq!(jb.poll_or_next(at(t0, 39)), Err(Some(at(t0, 40))));
        assert_eq!(jb.poll_or_next(at(t0, 40)), Ok(Playout::Packet(0)));
        assert_eq!(jb.poll_or_next(at(t0, 40)), Err(Some(at(t0, 80))));
        assert_eq!(
            jb.poll_or_next(at(t0, 80)),
            Ok(Playout::Lost {
                ext_seq: 0x1_0000 + 11
            })
        );
        assert_eq!(jb.poll_or_next(at(t0, 80)), Ok(Playout::Packet(2)));
        assert_eq!(jb.poll_or_next(at(t0, 80)), Err(None));
    }

    #[test]
    fn next_deadline_says_when_to_poll() {
        let t0 = Instant::now();
        let mut jb = fixed(60, 200);
        assert_eq!(jb.next_deadline(), None);
        jb.push(hdr(1, 0), 1, t0);
        assert_eq!(jb.next_deadline(), Some(at(t0, 60)));
        assert_eq!(jb.poll(at(t0, 59)), None);
        assert_eq!(jb.poll(at(t0, 60)), Some(Playout::Packet(1)));
        assert_eq!(jb.next_deadline(), None);
        assert!(jb.is_empty());
    }

    #[test]
    fn talkspurt_resyncs() {
        let t0 = Instant::now();
        let mut jb = fixed(60, 200);
        for s in 0..3u16 {
            jb.push(
                hdr(s, 160 * u32::from(s)),
                u32::from(s),
                at(t0, 20 * u64::from(s)),
            );
        }
        let mut out = run(&mut jb, t0, 0, 999);
        // After 1 s of silence the sender restarts its timestamps at 80
        // (a jump back the clock does not explain) and marks the
        // talkspurt: it plays at arrival + target, not at once.
        let mut h = hdr(3, 80);
        h.marker = true;
        jb.push(h, 3, at(t0, 1000));
        jb.push(hdr(4, 240), 4, at(t0, 1020));
        out.extend(run(&mut jb, t0, 1000, 1300));
        let t3 = out
            .iter()
            .find(|(_, p)| *p == Playout::Packet(3))
            .unwrap()
            .0;
        let t4 = out
            .iter()
            .find(|(_, p)| *p == Playout::Packet(4))
            .unwrap()
            .0;
        assert_eq!((t3, t4), (1060, 1080));
        assert_eq!(jb.counters().resyncs, 1);
        assert_eq!(jb.counters().lost, 0);

        // Without the marker the same jump is not resynchronized: the packet
        // is due at once or at the maximum delay, not at arrival + target.
        let mut jb = fixed(60, 200);
        for s in 0..3u16 {
            jb.push(
                hdr(s, 160 * u32::from(s)),
                u32::from(s),
                at(t0, 20 * u64::from(s)),
            );
        }
        run(&mut jb, t0, 0, 999);
        jb.push(hdr(3, 80), 3, at(t0, 1000));
        let d = jb.next_deadline().unwrap();
        assert_eq!(
            d,
            at(t0, 1000),
            "due at once: its timestamp says it is late"
        );
        assert_eq!(jb.counters().resyncs, 0);
    }

    #[test]
    fn ssrc_change_resets() {
        let t0 = Instant::now();
        let mut jb = fixed(60, 200);
        jb.push(hdr(500, 0), 0, t0);
        jb.push(hdr(501, 160), 1, at(t0, 20));
        // A new source with unrelated numbers: no loss for the jump, and the
        // old packets leave at once, before the new stream.
        let mut h = hdr(9, 777_777);
        h.ssrc = 0xBEEF;
        assert_eq!(jb.push(h, 10, at(t0, 30)), PushOutcome::Accepted);
        let mut h2 = hdr(10, 777_777 + 160);
        h2.ssrc = 0xBEEF;
        assert_eq!(jb.push(h2, 11, at(t0, 50)), PushOutcome::Accepted);
        let out = run(&mut jb, t0, 30, 300);
        assert_eq!(out[0], (30, Playout::Packet(0)));
        assert_eq!(out[1], (30, Playout::Packet(1)));
        assert_eq!(items(&out), vec![0, 1, 10, 11]);
        // The new stream's timing starts at its own first packet.
        assert_eq!(out[2].0, 90);
        assert_eq!(jb.counters().resets, 1);
        assert_eq!(jb.counters().lost, 0);
    }

    #[test]
    fn clock_rate_change_resets() {
        let t0 = Instant::now();
        let mut jb = fixed(60, 200);
        jb.set_clock_rate(111, 48000);
        jb.push(hdr(1, 0), 0, t0);
        let mut h = hdr(2, 960);
        h.payload_type = 111;
        jb.push(h, 1, at(t0, 20));
        assert_eq!(jb.counters().resets, 1);
        assert_eq!(items(&run(&mut jb, t0, 0, 200)), vec![0, 1]);
    }

    #[test]
    fn max_delay_is_respected() {
        // Adaptive, with a wild delay spread: the target climbs to the max,
        // yet nothing leaves later than arrival + max.
        let t0 = Instant::now();
        let mut jb: JitterBuffer<u32> = JitterBuffer::new(
            JitterConfig {
                target_ms: 20,
                min_ms: 10,
                max_ms: 100,
                adaptive: true,
                ..JitterConfig::default()
            },
            Instant::now(),
        )
        .unwrap();
        let mut arrival = std::collections::HashMap::new();
        let mut out = Vec::new();
        let mut events: Vec<(u64, u16)> = (0..200u16)
            .map(|s| {
                let delay = [0u64, 250, 30, 400, 5, 120][usize::from(s) % 6];
                (20 * u64::from(s) + delay, s)
            })
            .collect();
        events.sort();
        let mut t = 0;
        for (when, s) in events {
            out.extend(run(&mut jb, t0, t, when));
            t = when + 1;
            arrival.insert(u32::from(s), when);
            jb.push(hdr(s, 160 * u32::from(s)), u32::from(s), at(t0, when));
            out.extend(run(&mut jb, t0, when, when));
        }
        out.extend(run(&mut jb, t0, t, t + 500));
        let mut worst = 0;
        for (t, p) in &out {
            if let Playout::Packet(s) = p {
                let waited = t - arrival[s];
                assert!(waited <= 100, "packet {s} waited {waited} ms");
                worst = worst.max(waited);
            }
        }
        assert!(worst >= 90, "the buffer did hold packets: {worst}");
        assert_eq!(jb.target_delay(), Duration::from_millis(100));
        let played = items(&out);
        assert!(played.windows(2).all(|w| w[0] < w[1]), "in order");
    }

    #[test]
    fn dtx_gap_is_not_loss() {
        let t0 = Instant::now();
        let mut jb = fixed(60, 200);
        // 5 packets, 2 s of silence with contiguous sequence numbers (the
        // timestamp jumps by 16000), 5 more packets.
        let mut out = Vec::new();
        for s in 0..10u16 {
            let ms = 20 * u64::from(s) + if s >= 5 { 2000 } else { 0 };
            let ts = 160 * u32::from(s) + if s >= 5 { 16000 } else { 0 };
            assert_eq!(
                jb.push(hdr(s, ts), u32::from(s), at(t0, ms)),
                PushOutcome::Accepted
            );
            out.extend(run(&mut jb, t0, ms, ms + 19));
        }
        out.extend(run(&mut jb, t0, 2200, 2500));
        assert_eq!(items(&out), (0..10).collect::<Vec<_>>());
        assert_eq!(jb.counters().lost, 0);
        assert_eq!(jb.counters().resets, 0);
        // Played at timestamp + target after the gap too.
        let t5 = out
            .iter()
            .find(|(_, p)| *p == Playout::Packet(5))
            .unwrap()
            .0;
        assert_eq!(t5, 2100 + 60);
    }

    #[test]
    fn adaptive_target_grows_with_jitter_within_bounds() {
        let t0 = Instant::now();
        let cfg = JitterConfig {
            target_ms: 40,
            min_ms: 30,
            max_ms: 150,
            adaptive: true,
            ..JitterConfig::default()
        };
        // Steady arrivals: the target settles at the minimum.
        let mut jb: JitterBuffer<u32> = JitterBuffer::new(cfg, Instant::now()).unwrap();
        for s in 0..100u16 {
            jb.push(hdr(s, 160 * u32::from(s)), 0, at(t0, 20 * u64::from(s)));
            while jb.poll(at(t0, 20 * u64::from(s) + 200)).is_some() {}
        }
        assert_eq!(jb.target_delay(), Duration::from_millis(30));
        // Delay alternating 0 / 30 ms: J -> 30 ms, target 3 x J = 90 ms.
        let mut jb: JitterBuffer<u32> = JitterBuffer::new(cfg, Instant::now()).unwrap();
        for s in 0..200u16 {
            let d = if s % 2 == 0 { 0 } else { 30 };
            jb.push(hdr(s, 160 * u32::from(s)), 0, at(t0, 20 * u64::from(s) + d));
            while jb.poll(at(t0, 20 * u64::from(s) + 200)).is_some() {}
        }
        let t = jb.target_delay().as_millis();
        assert!((85..=90).contains(&t), "target {t} ms");
        assert!((jb.jitter().as_millis() as i64 - 30).abs() <= 1);
        // Huge jitter: capped at the maximum.
        let mut jb: JitterBuffer<u32> = JitterBuffer::new(cfg, Instant::now()).unwrap();
        for s in 0..200u16 {
            let d = if s % 2 == 0 { 0 } else { 300 };
            jb.push(hdr(s, 160 * u32::from(s)), 0, at(t0, 20 * u64::from(s) + d));
            while jb.poll(at(t0, 20 * u64::from(s) + 1000)).is_some() {}
        }
        assert_eq!(jb.target_delay(), Duration::from_millis(150));
    }

    /// A key press in the middle of audio: six event packets repeating the
    /// event's start timestamp (the first with the marker bit). Before
    /// events were told apart, the later ones were due long before they
    /// arrived and flushed the audio ahead of them, and inflated the jitter.
    #[test]
    fn telephone_events_take_no_part_in_timing() {
        for adaptive in [false, true] {
            let t0 = Instant::now();
            let mut jb: JitterBuffer<u32> = JitterBuffer::new(
                JitterConfig {
                    target_ms: 60,
                    min_ms: 60,
                    max_ms: 200,
                    adaptive,
                    ..JitterConfig::default()
                },
                Instant::now(),
            )
            .unwrap();
            let mut out = Vec::new();
            let mut t = 0;
            for s in 0..30u32 {
                let when = 20 * u64::from(s);
                out.extend(run(&mut jb, t0, t, when));
                t = when + 1;
                let event = (10..16).contains(&s);
                let h = PacketInfo {
                    is_event: event,
                    marker: s == 10,
                    payload_type: if event { 101 } else { 0 },
                    ..hdr(1000 + s as u16, if event { 1600 } else { 160 * s })
                };
                assert_eq!(jb.push(h, s, at(t0, when)), PushOutcome::Accepted);
                out.extend(run(&mut jb, t0, when, when));
            }
            out.extend(run(&mut jb, t0, t, t + 500));
            assert_eq!(items(&out), (0..30).collect::<Vec<_>>());
            for (at_ms, p) in &out {
                if let Playout::Packet(s) = p {
                    assert_eq!(
                        *at_ms,
                        20 * u64::from(*s) + 60,
                        "packet {s}, adaptive {adaptive}"
                    );
                }
            }
            assert_eq!(jb.jitter(), Duration::ZERO, "adaptive {adaptive}");
            assert_eq!(jb.target_delay(), Duration::from_millis(60));
            assert_eq!(
                jb.counters().resyncs,
                0,
                "an event's marker is no talkspurt"
            );
        }
    }

    /// Timestamps stepping by about 2^31 per packet (garbage, or a hostile
    /// sender) with contiguous sequence numbers: the extended timestamp
    /// grew by 2^31 a packet and overflowed i64 (a panic in debug builds)
    /// after some 34,000 packets. Each step past 60 s of clock restarts
    /// the timing reference, so every packet is played at arrival + target.
    #[test]
    fn huge_timestamp_steps_never_overflow() {
        let t0 = Instant::now();
        let mut jb = fixed(40, 200);
        let mut ts = 0u32;
        for k in 0..40_000u32 {
            let now = at(t0, 20 * u64::from(k));
            ts = ts.wrapping_add(if k % 3 == 0 { 0x8000_0000 } else { 0x7fff_ffff });
            let h = PacketInfo {
                marker: k % 7 == 0,
                ..hdr(k as u16, ts)
            };
            assert_eq!(jb.push(h, k, now), PushOutcome::Accepted, "packet {k}");
            let due = jb.next_deadline().expect("held");
            assert_eq!(due, at(t0, 20 * u64::from(k) + 40), "packet {k}");
            assert_eq!(jb.poll(due), Some(Playout::Packet(k)));
        }
        assert_eq!(jb.counters().played, 40_000);
        // A sane step after them is measured again.
        let mut jb = fixed(40, 200);
        jb.push(hdr(1, 0), 0, t0);
        jb.push(hdr(2, 0x7fff_0000), 1, at(t0, 20));
        jb.push(hdr(3, 0x7fff_0000 + 160), 2, at(t0, 40));
        assert_eq!(jb.poll(at(t0, 80)), Some(Playout::Packet(0)));
        assert_eq!(jb.poll(at(t0, 100)), Some(Playout::Packet(1)));
        assert_eq!(jb.next_deadline(), Some(at(t0, 80)));
    }

    #[test]
    fn restart_needs_confirmation() {
        let t0 = Instant::now();
        let mut jb = fixed(20, 100);
        jb.push(hdr(100, 0), 0, t0);
        assert!(matches!(jb.poll(at(t0, 20)), Some(Playout::Packet(0))));
        // A jump of 20000: held on probation, then confirmed by 20101.
        assert_eq!(
            jb.push(hdr(20100, 160), 1, at(t0, 20)),
            PushOutcome::Probation(1)
        );
        assert_eq!(
            jb.push(hdr(20101, 320), 2, at(t0, 40)),
            PushOutcome::Accepted
        );
        assert_eq!(jb.counters().resets, 1);
        assert_eq!(items(&run(&mut jb, t0, 40, 200)), vec![2]);
        // A duplicate of a held packet.
        jb.push(hdr(20102, 480), 3, at(t0, 201));
        assert_eq!(
            jb.push(hdr(20102, 480), 4, at(t0, 202)),
            PushOutcome::Duplicate(4)
        );
    }

    #[test]
    fn long_burst_of_loss_resets_and_counts() {
        let t0 = Instant::now();
        let mut jb: JitterBuffer<u32> = JitterBuffer::new(
            JitterConfig {
                capacity: 8,
                ..JitterConfig::default()
            },
            Instant::now(),
        )
        .unwrap();
        jb.push(hdr(0, 0), 0, t0);
        jb.push(hdr(20, 3200), 20, at(t0, 400));
        assert_eq!(jb.counters().lost, 19);
        assert_eq!(items(&run(&mut jb, t0, 0, 600)), vec![0, 20]);
    }

    #[test]
    fn new_stream_into_a_full_ring_overflows_then_recovers() {
        let t0 = Instant::now();
        let mut jb: JitterBuffer<u32> = JitterBuffer::new(
            JitterConfig {
                capacity: 4,
                ..JitterConfig::default()
            },
            Instant::now(),
        )
        .unwrap();
        for s in 0..4u16 {
            jb.push(hdr(s, 160 * u32::from(s)), u32::from(s), t0);
        }
        let mut h = hdr(1000, 0);
        h.ssrc = 99;
        assert_eq!(jb.push(h, 100, t0), PushOutcome::Overflow(100));
        assert_eq!(jb.counters().overflows, 1);
        // The old stream leaves at once; the new one resumes after the
        // refused packet, which is reported lost.
        let out = run(&mut jb, t0, 0, 0);
        assert_eq!(items(&out), vec![0, 1, 2, 3]);
        let mut h = hdr(1001, 160);
        h.ssrc = 99;
        assert_eq!(jb.push(h, 101, at(t0, 20)), PushOutcome::Accepted);
        let out = run(&mut jb, t0, 20, 200);
        assert_eq!(out.len(), 2);
        assert!(matches!(out[0].1, Playout::Lost { .. }));
        assert_eq!(out[1].1, Playout::Packet(101));
    }

    #[test]
    fn drain_returns_everything() {
        let t0 = Instant::now();
        let mut jb = fixed(60, 200);
        for s in [1u16, 2, 4] {
            jb.push(hdr(s, 160 * u32::from(s)), u32::from(s), t0);
        }
        let mut got = Vec::new();
        while let Some(x) = jb.drain_next() {
            got.push(x);
        }
        assert_eq!(got, vec![1, 2, 4]);
        assert!(jb.is_empty());
    }

    /// Timing, not asserted: the worker's per-iteration cost of looking at
    /// 1000 buffered legs of which none is due, the old way (`poll` then
    /// `next_deadline`: two ring scans per leg) and the new (a cached
    /// deadline compared). `cargo test --release -p tern-dataplane --lib
    /// -- --ignored playout_check_cost --nocapture`.
    #[test]
    #[ignore]
    fn playout_check_cost() {
        let t0 = Instant::now();
        let mut bufs: Vec<JitterBuffer<u32>> = (0..1000).map(|_| fixed(60, 200)).collect();
        for jb in &mut bufs {
            for s in 0..3u16 {
                // Position 1 lost: the first held is one slot in.
                if s != 1 {
                    jb.push(hdr(s, 160 * u32::from(s)), 0, at(t0, 20 * u64::from(s)));
                }
            }
        }
        let due: Vec<Option<Instant>> = bufs.iter().map(|b| b.next_deadline()).collect();
        let now = at(t0, 41);
        let rounds = 2000u32;
        let t = Instant::now();
        let mut n = 0usize;
        for _ in 0..rounds {
            for jb in &mut bufs {
                if jb.poll(now).is_none() && jb.next_deadline().is_some() {
                    n += 1;
                }
            }
        }
        let old = t.elapsed() / rounds;
        let t = Instant::now();
        for _ in 0..rounds {
            for (jb, d) in bufs.iter_mut().zip(&due) {
                if d.is_some_and(|d| d <= now) && jb.poll_or_next(now).is_ok() {
                    n += 1;
                }
            }
        }
        let new = t.elapsed() / rounds;
        eprintln!("1000 legs, none due: poll + next_deadline {old:?}, cached deadline {new:?} per loop ({n})");
    }
}
