//! The slot table: relay slots in shared memory, `/dev/shm/tern-<instance>`.
//!
//! One file, created by the dataplane and mapped by whoever programs it (the
//! signaling plane in the same or another process, the ng control socket).
//! Every field another process may touch is an atomic, so no plain read ever
//! races a write from another process.
//!
//! # File layout (all little-endian host order, 64-byte aligned blocks)
//!
//! ```text
//! offset 0                      Header          (128 bytes)
//! offset 128                    WorkerShared[MAX_WORKERS] (192 bytes each)
//! offset 128 + 192*MAX_WORKERS  Slot[capacity]  (size_of::<Slot>() each)
//! then                          changed bitmap  (ceil(capacity / 64) u64 words)
//! ```
//!
//! The changed bitmap has bit `id % 64` of word `id / 64` set by whoever
//! changes slot `id` (before the owning worker's doorbell moves), and
//! cleared by the worker as it takes the change, so a doorbell costs the
//! worker the slots that changed, not a pass over all of its slots.
//!
//! A slot ([`SLOT_BYTES`] = 1280 bytes) is one control line, two legs of
//! eight configuration words, one line of label (the Call-ID), and per leg
//! eight worker-owned lines: five of counters (traffic, drops, learned
//! addresses, SSRC state, RFC 3550 quality and its seqlock) and three of the
//! DTMF event ring.
//!
//! # Ports
//!
//! Slot `i` owns four consecutive ports starting at `port_lo + 4*i`:
//! leg A RTP (even), leg A RTCP, leg B RTP, leg B RTCP. With rtcp-mux, RTCP
//! rides on the RTP port and the odd port stays bound but unread.
//!
//! A slot's ports are bound before it is handed out: the owning worker
//! binds the four sockets of each free slot (a drop-all socket filter keeps
//! them from queueing anything) and stamps the slot with the header's
//! binding epoch. [`SlotTable::reserve_for`] takes only stamped slots, so
//! an answer never names a port another socket on the host holds; a port
//! that is taken makes the search move on, counted in
//! [`SlotTable::port_misses`].
//! Workers own contiguous blocks of slots, hence disjoint parts of the port
//! range, and both legs of a call live on the same worker.
//!
//! # Ownership
//!
//! - `state` (free / reserved / active / draining) changes only by CAS.
//! - Configuration is published under a per-slot seqlock (`seq` odd while
//!   writing). A writer takes the lock by CAS from even to odd, so two
//!   programmers can never interleave; readers retry while it is odd or moved.
//! - Per-leg counters are written only by the worker that owns the slot.
//!   When it frees a slot it adds the slot's final counters to its own
//!   retired totals (two worker-owned lines of `WorkerShared`, under a
//!   seqlock), so totals over retired plus live slots never go back
//!   ([`SlotTable::worker_totals`]).
//! - A released slot goes to `draining`; its owning worker cancels the
//!   slot's receives, filters and empties its sockets, and only then moves
//!   it to `free`, so no packet of the previous call reaches the next one.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use memmap2::MmapRaw;

/// `b"TERNSLOT"` as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"TERNSLOT");
/// Bumped whenever the byte layout below changes; a mismatch refuses to map.
pub const LAYOUT_VERSION: u32 = 6;
/// Upper bound on workers, fixing the size of the worker block.
pub const MAX_WORKERS: usize = 256;
/// Ports per slot: two legs, each with RTP and RTCP.
pub const PORTS_PER_SLOT: u32 = 4;

/// Errors from creating, mapping or programming the table.
#[derive(Debug)]
pub enum TableError {
    /// The shared-memory file could not be created, opened or mapped.
    Io(PathBuf, io::Error),
    /// The file exists but is not a tern slot table (bad magic or too short).
    NotATable(PathBuf),
    /// The file was written by a different layout version of tern.
    VersionMismatch {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// The existing table has active slots and different parameters.
    InUseWithOtherLayout(PathBuf),
    /// Parameters make no sense (empty port range, zero workers, ...).
    BadParams(String),
    /// No free slot is left.
    Full,
    /// The slot id is past capacity.
    NoSuchSlot(u32),
    /// The slot is not in a state that allows the operation.
    WrongState { slot: u32, state: SlotState },
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::Io(p, e) => write!(f, "slot table {}: {e}", p.display()),
            TableError::NotATable(p) => write!(f, "{} is not a tern slot table", p.display()),
            TableError::VersionMismatch { path, found, expected } => write!(
                f,
                "slot table {} has layout version {found}, this tern speaks {expected}; stop the other tern or pick another --instance",
                path.display()
            ),
            TableError::InUseWithOtherLayout(p) => write!(
                f,
                "slot table {} is in use with other ports or workers and has active slots",
                p.display()
            ),
            TableError::BadParams(s) => write!(f, "bad slot table parameters: {s}"),
            TableError::Full => write!(f, "no free relay slot"),
            TableError::NoSuchSlot(s) => write!(f, "no slot {s}"),
            TableError::WrongState { slot, state } => write!(f, "slot {slot} is {state:?}"),
        }
    }
}

impl std::error::Error for TableError {}

/// Life cycle of a slot; changed only by compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SlotState {
    /// Nobody holds it. Its worker keeps its ports bound, with a filter
    /// that drops whatever arrives, and stamps it bound
    /// ([`SlotTable::is_bound`]) once all four are.
    Free = 0,
    /// A programmer took it and is writing its first configuration.
    Reserved = 1,
    /// Configured; its worker binds and forwards.
    Active = 2,
    /// Released; its worker will close its sockets and free it.
    Draining = 3,
}

impl SlotState {
    fn from_u32(v: u32) -> SlotState {
        match v {
            1 => SlotState::Reserved,
            2 => SlotState::Active,
            3 => SlotState::Draining,
            _ => SlotState::Free,
        }
    }
}

/// Which control plane reserved a slot; stored in the slot, so that a
/// restarted control plane can tell its own orphaned slots from those of
/// another plane programming the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum Owner {
    /// Not said (tools and tests).
    #[default]
    Unspecified = 0,
    /// The ng control socket (`tern relay`, `tern up`).
    Ng = 1,
    /// The SIP B2BUA (`tern up`, `tern sip`).
    Sip = 2,
}

impl Owner {
    fn from_u32(v: u32) -> Owner {
        match v {
            1 => Owner::Ng,
            2 => Owner::Sip,
            _ => Owner::Unspecified,
        }
    }
}

/// Media direction of a leg, from the relay's side of that leg, as in the
/// SDP the relay sends to the leg's peer (RFC 3264 §5.1, §6.1).
///
/// `SendOnly`/`Inactive`: the relay drops (and counts) what the peer sends.
/// `RecvOnly`/`Inactive`: the relay sends nothing to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Direction {
    #[default]
    SendRecv = 0,
    SendOnly = 1,
    RecvOnly = 2,
    Inactive = 3,
}

impl Direction {
    fn from_u8(v: u8) -> Direction {
        match v {
            1 => Direction::SendOnly,
            2 => Direction::RecvOnly,
            3 => Direction::Inactive,
            _ => Direction::SendRecv,
        }
    }
    /// Whether packets arriving from this leg's peer are accepted.
    pub fn accepts_from_peer(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
    /// Whether packets may be sent to this leg's peer.
    pub fn sends_to_peer(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
    /// The SDP attribute name (RFC 3264 §5.1).
    pub fn as_sdp(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    /// The direction the other side sees: `sendonly` becomes `recvonly`.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

/// How a leg's accepted source address may move away from the SDP's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Learning {
    /// Learn the source of the first accepted packet, then never again: NAT
    /// works and the media cannot be hijacked later ("RTP bleed").
    #[default]
    LearnOnce = 0,
    /// Accept only the address from the SDP.
    Strict = 1,
    /// Follow the most recent source (trusted networks only).
    LearnAlways = 2,
}

impl Learning {
    fn from_u8(v: u8) -> Learning {
        match v {
            1 => Learning::Strict,
            2 => Learning::LearnAlways,
            _ => Learning::LearnOnce,
        }
    }
}

/// Jitter-buffer settings of a leg: packets sent to this leg's peer are
/// played out through a jitter buffer when `enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JitterSettings {
    /// Buffer the packets sent to this leg's peer.
    pub enabled: bool,
    /// Target playout delay, ms.
    pub target_ms: u16,
    /// Maximum playout delay, ms.
    pub max_ms: u16,
    /// Size the delay from the measured jitter (within 20 ms or the
    /// target, whichever is lower, and `max_ms`), starting at `target_ms`.
    pub adaptive: bool,
}

/// Configuration of one leg, as programmed by signaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegConfig {
    /// Where the peer said (in SDP) it receives RTP; `None` until known.
    pub peer: Option<SocketAddr>,
    /// Where the peer receives RTCP; `None` means RTP port + 1 (or the RTP
    /// port with rtcp-mux).
    pub peer_rtcp: Option<SocketAddr>,
    pub learning: Learning,
    pub direction: Direction,
    /// Rewrite the SSRC of packets sent to this leg's peer to `out_ssrc`.
    pub rewrite_ssrc: bool,
    /// The SSRC this leg's peer sees when `rewrite_ssrc` is set.
    pub out_ssrc: u32,
    /// RTCP multiplexed on the RTP port (RFC 5761).
    pub rtcp_mux: bool,
    /// Bit `n` set: payload type `n` is allowed. All zero: any is allowed.
    pub payload_types: u128,
    pub jitter: JitterSettings,
    /// Payload type negotiated as `telephone-event` (RFC 4733) for what
    /// this leg's peer sends (`a=rtpmap:N telephone-event/8000`); `None`
    /// when unknown. Packets of this type are fed to the DTMF detector.
    pub dtmf_pt: Option<u8>,
    /// RTP clock rate of the leg's audio codec, Hz (8000 for PCMU, PCMA,
    /// G722 per RFC 3551, 48000 for opus); 0 when unknown, read as 8000.
    /// Stored in kHz (1..=127), so it must be a multiple of 1000 or 44100.
    pub clock_rate: u32,
}

/// The two legs of a slot. Leg 0 ("A") faces the caller / offerer, leg 1
/// ("B") the callee / answerer. A packet received on one leg's socket is
/// sent out of the other leg's socket to that leg's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotConfig {
    pub legs: [LegConfig; 2],
    /// Opaque tag (e.g. a hash of the Call-ID) for logs and listings.
    pub tag: u64,
}

/// Local ports of one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegPorts {
    pub rtp: u16,
    pub rtcp: u16,
}

/// Snapshot of one leg's counters (each a relaxed load; together they are
/// approximately, not exactly, simultaneous).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegStats {
    /// RTP packets accepted from this leg's peer, and their bytes (UDP payload).
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// RTP and RTCP packets sent to this leg's peer, and their bytes.
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// RTCP packets accepted from this leg's peer.
    pub rtcp_rx_packets: u64,
    /// Dropped: source address not accepted by the learning policy.
    pub drop_source: u64,
    /// Dropped: direction forbids it (received while sendonly/inactive).
    pub drop_direction: u64,
    /// Dropped: not a valid RTP/RTCP packet, or payload type not allowed.
    pub drop_malformed: u64,
    /// Dropped: the other leg has no peer address yet.
    pub drop_no_peer: u64,
    /// Dropped by the jitter buffer of the other leg: too late (its
    /// position was already played or reported lost) or a duplicate.
    pub drop_jitter_late: u64,
    /// Dropped by the jitter buffer of the other leg: no room (a new stream
    /// into a full ring) or a sequence jump on probation (RFC 3550 A.1).
    pub drop_jitter_overflow: u64,
    /// The source address media was learned from, if any.
    pub learned: Option<SocketAddr>,
    /// Unix time (ms) of the last accepted packet; 0 if none.
    pub last_rx_ms: u64,
}

impl LegStats {
    /// The counters that add up across legs and slots, in a fixed order:
    /// rx packets, rx bytes, tx packets, tx bytes, RTCP rx packets, then
    /// the drops in [`DropReason::ALL`] order.
    fn counters(&self) -> [u64; LEG_STAT_COUNTERS] {
        [
            self.rx_packets,
            self.rx_bytes,
            self.tx_packets,
            self.tx_bytes,
            self.rtcp_rx_packets,
            self.drop_source,
            self.drop_direction,
            self.drop_malformed,
            self.drop_no_peer,
            self.drop_jitter_late,
            self.drop_jitter_overflow,
        ]
    }

    fn from_counters(c: &[u64; LEG_STAT_COUNTERS]) -> LegStats {
        LegStats {
            rx_packets: c[0],
            rx_bytes: c[1],
            tx_packets: c[2],
            tx_bytes: c[3],
            rtcp_rx_packets: c[4],
            drop_source: c[5],
            drop_direction: c[6],
            drop_malformed: c[7],
            drop_no_peer: c[8],
            drop_jitter_late: c[9],
            drop_jitter_overflow: c[10],
            learned: None,
            last_rx_ms: 0,
        }
    }

    /// Packets dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Source => self.drop_source,
            DropReason::Direction => self.drop_direction,
            DropReason::Malformed => self.drop_malformed,
            DropReason::NoPeer => self.drop_no_peer,
            DropReason::JitterLate => self.drop_jitter_late,
            DropReason::JitterOverflow => self.drop_jitter_overflow,
        }
    }

    /// Packets dropped, all reasons.
    pub fn drops_total(&self) -> u64 {
        DropReason::ALL
            .iter()
            .fold(0u64, |a, r| a.wrapping_add(self.drops(*r)))
    }
}

/// Counters of [`LegStats`] that sum across legs (see `LegStats::counters`).
const LEG_STAT_COUNTERS: usize = 11;

/// A worker's cumulative counters: those of the slots it has freed plus
/// those of its slots not yet freed, so every field only grows (a
/// restarted worker on the same table continues them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerTotals {
    /// Sums over both legs of the slots (`learned` and `last_rx_ms` unset).
    pub legs: LegStats,
    /// Sends the kernel failed (packets, not attributed to a slot).
    pub send_errors: u64,
    /// Legs whose jitter buffer the worker could not start (all its store
    /// ids in use): their packets are forwarded straight through.
    pub jitter_refused: u64,
}

impl WorkerTotals {
    /// Packets dropped, all reasons (slot drops and send errors): equals
    /// the worker's `dropped` total of [`SlotTable::worker_status`] once
    /// it has ticked.
    pub fn drops_total(&self) -> u64 {
        self.legs.drops_total().wrapping_add(self.send_errors)
    }
}

/// A worker's io_uring counters (totals since the worker started, in
/// completions or SQEs), published every tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerRing {
    /// Receive completions that ended with `-ENOBUFS`: the provided-buffer
    /// ring was empty, so the multishot receive stopped and was re-armed.
    pub enobufs: u64,
    /// Multishot receives armed again after their final completion
    /// (`-ENOBUFS`, or the kernel ending one without `F_MORE`).
    pub rearms: u64,
    /// SQEs that found the submission queue full.
    pub sq_full: u64,
}

/// RFC 3550 receiver statistics of what one leg's peer sends, plus what
/// that peer reports about what it receives (RTCP SR/RR report blocks).
/// Written by the owning worker; a snapshot is a set of relaxed loads.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LegQuality {
    /// Packets expected: extended highest sequence number − base + 1
    /// (RFC 3550 A.3); 0 before the first packet.
    pub expected: u64,
    /// Cumulative packets lost: expected − received (RFC 3550 A.3); may be
    /// negative when duplicates arrive.
    pub lost: i64,
    /// Fraction lost over the last closed reporting interval (the worker
    /// closes one every 5 s), in 1/256 units (RFC 3550 A.3, as in an RR's
    /// `fraction lost`); 0 until the first interval closes.
    pub fraction_lost: u8,
    /// Interarrival jitter (RFC 3550 A.8), converted from RTP timestamp
    /// units to ms with `clock_rate`.
    pub jitter_ms: f64,
    /// Packets whose extended sequence number was already received.
    pub duplicates: u64,
    /// Packets that arrived after one with a higher sequence number.
    pub reordered: u64,
    /// Round-trip time from the peer's RR/SR report block (RFC 3550
    /// §6.4.1: A − LSR − DLSR), ms; `None` until a report with LSR ≠ 0.
    pub rtt_ms: Option<f64>,
    /// The peer's reported fraction lost (1/256 units) of what the relay
    /// sends it.
    pub peer_fraction_lost: Option<u8>,
    /// The peer's reported interarrival jitter, ms.
    pub peer_jitter_ms: Option<f64>,
    /// Estimated MOS (ITU-T G.107 E-model, simplified for G.711), 1..=4.5.
    pub mos: Option<f64>,
    /// RTP clock rate the jitter was converted with, Hz.
    pub clock_rate: u32,
}

/// One DTMF key press (RFC 4733 telephone-event), recorded once when its
/// end was seen, however often the end packet was repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DtmfEvent {
    /// The key: `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: char,
    /// RFC 4733 §3.2 event code (0..=15 for DTMF).
    pub event: u8,
    /// Duration, RTP timestamp units (kept to 20 bits).
    pub duration: u32,
    /// RTP timestamp of the event (its start, RFC 4733 §2.3.5).
    pub rtp_timestamp: u32,
    /// Unix time (ms) the event was taken as ended: when its first end
    /// packet arrived, or, when all its end packets were lost, when the
    /// next event started or the stream ended (the slot closed), so a lost
    /// end makes `at_ms` late by up to that much.
    pub at_ms: u64,
}

/// The slot tag of a call: FNV-1a (64-bit) of its Call-ID bytes. Stable
/// across builds and processes, so a reader of the table can tell a
/// Call-ID longer than [`LABEL_BYTES`] (whose label is cut) from another
/// with the same first bytes.
pub fn call_tag(call_id: &str) -> u64 {
    call_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether a slot labelled `label` with tag `tag` belongs to the call
/// `call_id`: the label is the whole Call-ID, or the Call-ID was cut to
/// fit [`LABEL_BYTES`] (at a character boundary, so at most 3 bytes
/// short), starts with the label and has the slot's [`call_tag`].
pub fn label_matches(label: &str, tag: u64, call_id: &str) -> bool {
    label == call_id
        || (label.len() + 4 > LABEL_BYTES
            && call_id.len() > label.len()
            && call_id.starts_with(label)
            && call_tag(call_id) == tag)
}

/// The key of RFC 4733 §3.2 DTMF event `event`: 0-9, `*` (10), `#` (11),
/// `A`-`D` (12-15); `None` for other events.
pub fn dtmf_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Raw layout

#[repr(C, align(64))]
struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    capacity: AtomicU32,
    workers: AtomicU32,
    /// `port_lo | port_hi << 16`.
    ports: AtomicU32,
    /// Advertised media address: 16 bytes (IPv4-mapped for IPv4) + family.
    media_ip: [AtomicU64; 2],
    media_family: AtomicU32,
    dataplane_pid: AtomicU32,
    created_ms: AtomicU64,
    /// Binding epoch: bumped by the dataplane when its workers start and
    /// again when they stop, so only the stamps of a running dataplane
    /// are valid. 0: no dataplane ever started on this table.
    epoch: AtomicU64,
    /// Free slots [`SlotTable::reserve_for`] passed over because their
    /// ports were not bound, in total.
    port_misses: AtomicU64,
    /// Slots nobody claimed after a restart, released by the media
    /// timeout ([`SlotTable::count_reclaimed`]), in total.
    reclaimed: AtomicU64,
}

/// Per-worker words, each worker on its own cache line.
#[repr(C, align(64))]
struct WorkerShared {
    /// Bumped by a programmer after each change to one of the worker's slots.
    doorbell: AtomicU64,
    /// Unix ms of the worker's last loop tick; 0 if no worker runs.
    heartbeat_ms: AtomicU64,
    /// RTP/RTCP packets the worker forwarded, in total.
    forwarded: AtomicU64,
    /// Packets the worker dropped, in total.
    dropped: AtomicU64,
    /// Receive completions that ended with `-ENOBUFS` (provided-buffer
    /// ring empty), in total; in what was the line's padding, so the
    /// layout is unchanged.
    enobufs: AtomicU64,
    /// Multishot receives re-armed after their final completion, in total.
    rearms: AtomicU64,
    /// SQEs that found the submission queue full (handed to the kernel
    /// early, or dropped after retries), in total.
    sq_full: AtomicU64,
    /// Free slots of this worker whose ports could not all be bound
    /// (another socket on the host holds one), now.
    unbound: AtomicU64,
    /// Written only by the worker (the slots it freed, its send errors).
    retired: Retired,
}

/// Indices into [`Retired::words`].
mod ret {
    /// `retire_seq`: odd while a slot's counters move into the totals.
    pub const SEQ: usize = 0;
    /// Then the [`super::LegStats`] counters, in `LegStats::COUNTERS` order.
    pub const FIRST: usize = 1;
    /// Legs refused a jitter buffer (forwarded straight through).
    pub const JITTER_REFUSED: usize = 14;
    /// Sends that failed (not attributable to a slot).
    pub const SEND_ERRORS: usize = 15;
    pub const COUNT: usize = 16;
}

/// The final counters of the slots a worker freed, summed; two cache lines.
#[repr(C, align(64))]
struct Retired {
    words: [AtomicU64; ret::COUNT],
}

const LEG_CFG_WORDS: usize = 8;

#[repr(C, align(64))]
struct SlotControl {
    state: AtomicU32,
    seq: AtomicU32,
    /// Bumped at each reserve, so a stale handle can be recognized.
    generation: AtomicU64,
    tag: AtomicU64,
    /// Seqlock of the label (odd while being written).
    label_seq: AtomicU32,
    /// Bytes of the label in use (0..=LABEL_BYTES).
    label_len: AtomicU32,
    /// The header's epoch at which the owning worker last had every port
    /// of the slot bound (and receives off) while it was free; a free
    /// slot is handed out only when this equals the current epoch.
    bound_epoch: AtomicU64,
    /// Who reserved the slot ([`Owner`]), so a restarted control plane
    /// reclaims only its own slots.
    owner: AtomicU32,
    /// The configuration seqlock value the owning worker last applied
    /// (its sockets are reading from then on).
    applied_seq: AtomicU32,
}

/// Longest Call-ID label kept per slot, bytes (longer ones are truncated
/// at a character boundary).
pub const LABEL_BYTES: usize = 64;

/// Counter indices inside [`LegCounters`].
mod ctr {
    pub const RX_PACKETS: usize = 0;
    pub const RX_BYTES: usize = 1;
    pub const TX_PACKETS: usize = 2;
    pub const TX_BYTES: usize = 3;
    pub const RTCP_RX: usize = 4;
    pub const DROP_SOURCE: usize = 5;
    pub const DROP_DIRECTION: usize = 6;
    pub const DROP_MALFORMED: usize = 7;
    pub const DROP_NO_PEER: usize = 8;
    /// Three words each: ip hi, ip lo, `port | family << 16 | valid << 24`.
    pub const LEARNED_IP0: usize = 9;
    pub const LEARNED_RTCP_IP0: usize = 12;
    pub const LAST_RX_MS: usize = 15;
    pub const SSRC_STATE0: usize = 16;
    pub const SSRC_STATE1: usize = 17;
    pub const SSRC_STATE2: usize = 18;
    // RFC 3550 receiver statistics (see `LegQuality`).
    pub const Q_EXPECTED: usize = 19;
    pub const Q_LOST: usize = 20;
    pub const Q_DUPLICATES: usize = 21;
    pub const Q_REORDERED: usize = 22;
    /// f64 bits, ms.
    pub const Q_JITTER: usize = 23;
    pub const Q_RTT: usize = 24;
    pub const Q_PEER_JITTER: usize = 25;
    pub const Q_MOS: usize = 26;
    /// `fraction_lost | peer_fraction_lost << 8 | valid bits << 16 |
    /// clock_rate << 32`; valid bits: rtt 0, peer loss 1, peer jitter 2,
    /// MOS 3.
    pub const Q_MISC: usize = 27;
    /// `events ever pushed << 1 | writing` (the ring's head, a seqlock).
    pub const DTMF_HEAD: usize = 28;
    /// Unix ms the ring's `at_ms` offsets count from.
    pub const DTMF_BASE_MS: usize = 29;
    /// `ssrc | valid << 32`: the SSRC the quality words describe.
    pub const Q_SSRC: usize = 30;
    pub const DROP_JITTER_LATE: usize = 31;
    pub const DROP_JITTER_OVERFLOW: usize = 32;
    /// Seqlock of the quality words `Q_EXPECTED..=Q_MISC` (odd while the
    /// worker writes them).
    pub const Q_SEQ: usize = 33;
    pub const COUNT: usize = 40;
}

/// DTMF events kept per leg (the newest ones).
pub const DTMF_RING: usize = 16;
/// Ring words: one per event, then the `at_ms` offsets two per word.
const DTMF_WORDS: usize = DTMF_RING + DTMF_RING / 2;

/// One leg's counters, quality statistics, DTMF ring and worker-private
/// persisted state, written only by the owning worker. Eight cache lines:
/// five of counters, three of the DTMF ring.
#[repr(C, align(64))]
pub struct LegCounters {
    words: [AtomicU64; ctr::COUNT],
    /// Event `i` lives in word `i % DTMF_RING`:
    /// `rtp_timestamp | duration << 32 (20 bits) | event << 52 (4 bits) |
    /// tag << 56`, tag = `0x80 | i & 0x7f`; its `at_ms - base` (u32) in
    /// half `i % 2` of word `DTMF_RING + (i % DTMF_RING) / 2`.
    dtmf: [AtomicU64; DTMF_WORDS],
}

#[repr(C, align(64))]
struct Slot {
    ctl: SlotControl,
    cfg: [[AtomicU64; LEG_CFG_WORDS]; 2],
    /// The Call-ID label, bytes in little-endian word order.
    label: [AtomicU64; LABEL_BYTES / 8],
    counters: [LegCounters; 2],
}

/// Bytes of shared memory per slot (control, configuration and counters).
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

const HEADER_BYTES: usize = std::mem::size_of::<Header>();
const WORKERS_OFFSET: usize = HEADER_BYTES;
const SLOTS_OFFSET: usize = WORKERS_OFFSET + MAX_WORKERS * std::mem::size_of::<WorkerShared>();

fn file_len(capacity: u32) -> usize {
    changed_offset(capacity) + changed_words(capacity) * 8
}

/// Where the changed bitmap starts: right after the slots (64-aligned,
/// since a slot is a whole number of lines).
fn changed_offset(capacity: u32) -> usize {
    SLOTS_OFFSET + capacity as usize * SLOT_BYTES
}

/// Words of the changed bitmap: one bit per slot.
fn changed_words(capacity: u32) -> usize {
    (capacity as usize).div_ceil(64)
}

/// Whether the dataplane that created the table file at `path` still
/// runs: its PID is the header's `dataplane_pid`, alive when `/proc/PID`
/// exists. Reads only the header's bytes up to that field, which every
/// layout version so far keeps in place. An unreadable header counts as
/// alive, so nothing is removed on doubt.
fn dataplane_alive(path: &std::path::Path) -> bool {
    use std::io::Read;
    const AT: usize = std::mem::offset_of!(Header, dataplane_pid);
    let mut head = [0u8; AT + 4];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    if read.is_err() {
        return true;
    }
    let pid = u32::from_ne_bytes([head[AT], head[AT + 1], head[AT + 2], head[AT + 3]]);
    pid != 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Parameters a dataplane creates its table with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableParams {
    /// Inclusive port range; slots take four ports each from `port_lo`.
    pub port_lo: u16,
    pub port_hi: u16,
    /// Worker count (1..=MAX_WORKERS).
    pub workers: u32,
    /// The address written into SDP for the relay's ports.
    pub media_ip: IpAddr,
}

impl TableParams {
    /// Slots that fit in the port range (at least one is required).
    pub fn capacity(&self) -> u32 {
        if self.port_hi < self.port_lo {
            return 0;
        }
        (u32::from(self.port_hi) - u32::from(self.port_lo) + 1) / PORTS_PER_SLOT
    }
}

/// The mapped table. Cheap to share between threads (`&SlotTable` is `Sync`).
pub struct SlotTable {
    map: MmapRaw,
    path: PathBuf,
    capacity: u32,
    workers: u32,
    port_lo: u16,
}

// SAFETY: every byte of the mapping is accessed only through atomics.
unsafe impl Send for SlotTable {}
unsafe impl Sync for SlotTable {}

/// The file a table for `instance` lives in.
pub fn table_path(instance: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/tern-{instance}"))
}

/// Whether the instance name is safe to put in a path.
pub fn valid_instance(instance: &str) -> bool {
    !instance.is_empty()
        && instance.len() <= 64
        && instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !instance.starts_with('.')
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ip_words(ip: IpAddr) -> ([u64; 2], u8) {
    let (b, fam) = match ip {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 4u8),
        IpAddr::V6(v6) => (v6.octets(), 6u8),
    };
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&b[..8]);
    lo.copy_from_slice(&b[8..]);
    ([u64::from_le_bytes(hi), u64::from_le_bytes(lo)], fam)
}

fn words_ip(w: [u64; 2], fam: u8) -> IpAddr {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&w[0].to_le_bytes());
    b[8..].copy_from_slice(&w[1].to_le_bytes());
    let v6 = Ipv6Addr::from(b);
    if fam == 4 {
        v6.to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6))
    } else {
        IpAddr::V6(v6)
    }
}

/// Encodes an optional socket address as three words: ip hi, ip lo, meta
/// (`port | family << 16 | valid << 24`).
fn encode_addr(a: Option<SocketAddr>) -> [u64; 3] {
    match a {
        None => [0, 0, 0],
        Some(a) => {
            let (w, fam) = ip_words(a.ip());
            [
                w[0],
                w[1],
                u64::from(a.port()) | u64::from(fam) << 16 | 1 << 24,
            ]
        }
    }
}

fn decode_addr(w: [u64; 3]) -> Option<SocketAddr> {
    if w[2] >> 24 & 1 == 0 {
        return None;
    }
    let fam = (w[2] >> 16) as u8;
    Some(SocketAddr::new(words_ip([w[0], w[1]], fam), w[2] as u16))
}

impl LegConfig {
    /// Packs into the 8 configuration words: `[0..3]` peer (meta word's
    /// bits 25..32 carry the clock rate in kHz, bits 32.. the flags:
    /// learning 0..8, direction 8..16, rewrite_ssrc 16, rtcp_mux 17, jitter
    /// enabled 18, `0x80 | dtmf_pt` 19..27, jitter adaptive 27), `[3..6]`
    /// peer_rtcp (meta word's bits 32.. carry `out_ssrc`), `[6]` payload
    /// types 0..=63, `[7]` payload types 96..=127 in bits 32.. and the
    /// jitter delays in bits 0..32.
    fn encode(&self) -> [u64; LEG_CFG_WORDS] {
        let p = encode_addr(self.peer);
        let r = encode_addr(self.peer_rtcp);
        let flags = u64::from(self.learning as u8)
            | u64::from(self.direction as u8) << 8
            | u64::from(self.rewrite_ssrc) << 16
            | u64::from(self.rtcp_mux) << 17
            | u64::from(self.jitter.enabled) << 18
            | self.dtmf_pt.map_or(0, |pt| u64::from(0x80 | pt & 0x7f)) << 19
            | u64::from(self.jitter.adaptive) << 27;
        let jit = u64::from(self.jitter.target_ms) | u64::from(self.jitter.max_ms) << 16;
        [
            p[0],
            p[1],
            p[2] | flags << 32 | u64::from(clock_khz(self.clock_rate)) << 25,
            r[0],
            r[1],
            r[2] | u64::from(self.out_ssrc) << 32,
            self.payload_types as u64,
            jit_pack(jit, self.payload_types),
        ]
    }

    fn decode(w: &[u64; LEG_CFG_WORDS]) -> LegConfig {
        let flags = w[2] >> 32;
        let (pt_hi, jit) = jit_unpack(w[7]);
        LegConfig {
            peer: decode_addr([w[0], w[1], w[2] & 0x01ff_ffff]),
            peer_rtcp: decode_addr([w[3], w[4], w[5] & 0xffff_ffff]),
            learning: Learning::from_u8(flags as u8),
            direction: Direction::from_u8((flags >> 8) as u8),
            rewrite_ssrc: flags >> 16 & 1 == 1,
            rtcp_mux: flags >> 17 & 1 == 1,
            out_ssrc: (w[5] >> 32) as u32,
            payload_types: u128::from(w[6]) | u128::from(pt_hi) << 64,
            jitter: JitterSettings {
                enabled: flags >> 18 & 1 == 1,
                target_ms: jit as u16,
                max_ms: (jit >> 16) as u16,
                adaptive: flags >> 27 & 1 == 1,
            },
            dtmf_pt: (flags >> 19 & 0x80 != 0).then_some((flags >> 19 & 0x7f) as u8),
            clock_rate: match (w[2] >> 25 & 0x7f) as u32 {
                44 => 44_100,
                k => k * 1000,
            },
        }
    }
}

/// A clock rate in kHz for the 7 bits of the configuration word.
fn clock_khz(hz: u32) -> u8 {
    if hz == 44_100 {
        44
    } else {
        (hz / 1000).min(127) as u8
    }
}

// Payload types 0..=127 need 128 bits, but dynamic types live in 96..=127 and
// static ones in 0..=34, so bits 64..=95 (types 64..=95, unassigned per RFC
// 3551 §6) carry the jitter settings instead.
fn jit_pack(jit: u64, pt: u128) -> u64 {
    let hi = (pt >> 64) as u64;
    (hi & 0xffff_ffff_0000_0000) | (jit & 0xffff_ffff)
}

fn jit_unpack(w: u64) -> (u64, u64) {
    (w & 0xffff_ffff_0000_0000, w & 0xffff_ffff)
}

impl LegCounters {
    /// Adds `n` to counter `i`. Single-writer: a plain load and store, no
    /// locked read-modify-write on the packet path.
    #[inline]
    fn add(&self, i: usize, n: u64) {
        let c = &self.words[i];
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
    #[inline]
    fn get(&self, i: usize) -> u64 {
        self.words[i].load(Ordering::Relaxed)
    }
    #[inline]
    fn set(&self, i: usize, v: u64) {
        self.words[i].store(v, Ordering::Relaxed)
    }

    /// Counts one accepted RTP packet of `bytes` bytes at Unix time `now_ms`.
    #[inline]
    pub fn count_rx(&self, bytes: usize, now_ms: u64) {
        self.add(ctr::RX_PACKETS, 1);
        self.add(ctr::RX_BYTES, bytes as u64);
        self.set(ctr::LAST_RX_MS, now_ms);
    }
    /// Counts one accepted RTCP packet at Unix time `now_ms`.
    #[inline]
    pub fn count_rtcp_rx(&self, now_ms: u64) {
        self.add(ctr::RTCP_RX, 1);
        self.set(ctr::LAST_RX_MS, now_ms);
    }
    /// Counts one packet of `bytes` bytes sent to this leg's peer.
    #[inline]
    pub fn count_tx(&self, bytes: usize) {
        self.add(ctr::TX_PACKETS, 1);
        self.add(ctr::TX_BYTES, bytes as u64);
    }
    /// Counts a packet dropped for `reason`.
    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        let i = match reason {
            DropReason::Source => ctr::DROP_SOURCE,
            DropReason::Direction => ctr::DROP_DIRECTION,
            DropReason::Malformed => ctr::DROP_MALFORMED,
            DropReason::NoPeer => ctr::DROP_NO_PEER,
            DropReason::JitterLate => ctr::DROP_JITTER_LATE,
            DropReason::JitterOverflow => ctr::DROP_JITTER_OVERFLOW,
        };
        self.add(i, 1);
    }
    /// The learned RTP (`rtcp == false`) or RTCP source address.
    pub fn learned(&self, rtcp: bool) -> Option<SocketAddr> {
        let b = if rtcp {
            ctr::LEARNED_RTCP_IP0
        } else {
            ctr::LEARNED_IP0
        };
        decode_addr([self.get(b), self.get(b + 1), self.get(b + 2)])
    }
    /// Records the learned RTP or RTCP source address (worker only).
    pub fn set_learned(&self, rtcp: bool, addr: Option<SocketAddr>) {
        let b = if rtcp {
            ctr::LEARNED_RTCP_IP0
        } else {
            ctr::LEARNED_IP0
        };
        let w = encode_addr(addr);
        for (k, v) in w.iter().enumerate() {
            self.set(b + k, *v);
        }
    }
    /// Three words of worker-private state (the SSRC mapping) kept here so a
    /// restarted dataplane continues sequence and timestamp without a jump.
    pub fn ssrc_state(&self) -> [u64; 3] {
        [
            self.get(ctr::SSRC_STATE0),
            self.get(ctr::SSRC_STATE1),
            self.get(ctr::SSRC_STATE2),
        ]
    }
    /// Stores the SSRC mapping state (worker only).
    #[inline]
    pub fn set_ssrc_state(&self, s: [u64; 3]) {
        self.set(ctr::SSRC_STATE0, s[0]);
        self.set(ctr::SSRC_STATE1, s[1]);
        self.set(ctr::SSRC_STATE2, s[2]);
    }
    /// Zeroes everything (worker only, when a slot is freed).
    pub fn reset(&self) {
        for w in self.words.iter().chain(self.dtmf.iter()) {
            w.store(0, Ordering::Relaxed);
        }
    }

    /// Publishes the leg's receiver statistics (worker only), under the
    /// quality seqlock so that [`LegCounters::quality`] never mixes two
    /// publications.
    pub fn set_quality(&self, q: &LegQuality) {
        let seq = self.get(ctr::Q_SEQ);
        self.set(ctr::Q_SEQ, seq.wrapping_add(1) | 1);
        fence(Ordering::Release);
        self.set(ctr::Q_EXPECTED, q.expected);
        self.set(ctr::Q_LOST, q.lost as u64);
        self.set(ctr::Q_DUPLICATES, q.duplicates);
        self.set(ctr::Q_REORDERED, q.reordered);
        self.set(ctr::Q_JITTER, q.jitter_ms.to_bits());
        self.set(ctr::Q_RTT, q.rtt_ms.unwrap_or(0.0).to_bits());
        self.set(
            ctr::Q_PEER_JITTER,
            q.peer_jitter_ms.unwrap_or(0.0).to_bits(),
        );
        self.set(ctr::Q_MOS, q.mos.unwrap_or(0.0).to_bits());
        let valid = u64::from(q.rtt_ms.is_some())
            | u64::from(q.peer_fraction_lost.is_some()) << 1
            | u64::from(q.peer_jitter_ms.is_some()) << 2
            | u64::from(q.mos.is_some()) << 3;
        self.set(
            ctr::Q_MISC,
            u64::from(q.fraction_lost)
                | u64::from(q.peer_fraction_lost.unwrap_or(0)) << 8
                | valid << 16
                | u64::from(q.clock_rate) << 32,
        );
        self.words[ctr::Q_SEQ].store((seq | 1).wrapping_add(1), Ordering::Release);
    }

    /// Records the SSRC the published statistics describe (worker only).
    pub fn set_ssrc_in(&self, ssrc: Option<u32>) {
        self.set(ctr::Q_SSRC, ssrc.map_or(0, |s| u64::from(s) | 1 << 32));
    }

    /// The SSRC the published statistics describe (the source the leg's
    /// peer sends with), if any packet was counted.
    pub fn ssrc_in(&self) -> Option<u32> {
        let w = self.get(ctr::Q_SSRC);
        (w >> 32 & 1 == 1).then_some(w as u32)
    }

    /// The leg's receiver statistics as last published: one publication
    /// whole (seqlock read; bounded retries while the worker writes, after
    /// which the last read is returned).
    pub fn quality(&self) -> LegQuality {
        let mut q = self.quality_words();
        for k in 0..100_000u32 {
            let s1 = self.words[ctr::Q_SEQ].load(Ordering::Acquire);
            if s1 & 1 == 1 {
                if k % 1000 == 999 {
                    std::thread::yield_now();
                }
                std::hint::spin_loop();
                continue;
            }
            q = self.quality_words();
            fence(Ordering::Acquire);
            if self.get(ctr::Q_SEQ) == s1 {
                break;
            }
        }
        q
    }

    fn quality_words(&self) -> LegQuality {
        let misc = self.get(ctr::Q_MISC);
        let valid = misc >> 16;
        let f = |i: usize| f64::from_bits(self.get(i));
        LegQuality {
            expected: self.get(ctr::Q_EXPECTED),
            lost: self.get(ctr::Q_LOST) as i64,
            fraction_lost: misc as u8,
            jitter_ms: f(ctr::Q_JITTER),
            duplicates: self.get(ctr::Q_DUPLICATES),
            reordered: self.get(ctr::Q_REORDERED),
            rtt_ms: (valid & 1 != 0).then(|| f(ctr::Q_RTT)),
            peer_fraction_lost: (valid & 2 != 0).then_some((misc >> 8) as u8),
            peer_jitter_ms: (valid & 4 != 0).then(|| f(ctr::Q_PEER_JITTER)),
            mos: (valid & 8 != 0).then(|| f(ctr::Q_MOS)),
            clock_rate: (misc >> 32) as u32,
        }
    }

    /// Appends a DTMF event to the leg's ring, overwriting the oldest of
    /// the last [`DTMF_RING`] (worker only). Events other than DTMF keys
    /// (code > 15) are not kept.
    pub fn push_dtmf(&self, e: &DtmfEvent) {
        if e.event > 15 {
            return;
        }
        let head = self.get(ctr::DTMF_HEAD) >> 1;
        self.set(ctr::DTMF_HEAD, head << 1 | 1);
        fence(Ordering::Release);
        let mut base = self.get(ctr::DTMF_BASE_MS);
        if head == 0 || base == 0 || e.at_ms < base || e.at_ms - base > u64::from(u32::MAX) {
            // Offsets are u32 ms: a new base is only needed after 49 days,
            // and then the older events' times are approximate.
            base = e.at_ms;
            self.set(ctr::DTMF_BASE_MS, base);
        }
        let k = (head % DTMF_RING as u64) as usize;
        let ow = &self.dtmf[DTMF_RING + k / 2];
        let off = (e.at_ms - base) & 0xffff_ffff;
        let shift = (k % 2) * 32;
        let old = ow.load(Ordering::Relaxed) & !(0xffff_ffff << shift);
        ow.store(old | off << shift, Ordering::Relaxed);
        let word = u64::from(e.rtp_timestamp)
            | u64::from(e.duration.min(0xf_ffff)) << 32
            | u64::from(e.event & 0xf) << 52
            | (0x80 | head & 0x7f) << 56;
        self.dtmf[k].store(word, Ordering::Relaxed);
        self.words[ctr::DTMF_HEAD].store((head + 1) << 1, Ordering::Release);
    }

    /// The DTMF events in the ring, oldest first (at most [`DTMF_RING`]).
    /// An event being overwritten while read is left out.
    pub fn dtmf_events(&self) -> Vec<DtmfEvent> {
        let h1 = self.words[ctr::DTMF_HEAD].load(Ordering::Acquire);
        let head = h1 >> 1;
        let base = self.get(ctr::DTMF_BASE_MS);
        let first = head.saturating_sub(DTMF_RING as u64);
        let mut out = Vec::with_capacity((head - first) as usize);
        for i in first..head {
            let k = (i % DTMF_RING as u64) as usize;
            let w = self.dtmf[k].load(Ordering::Relaxed);
            let off = self.dtmf[DTMF_RING + k / 2].load(Ordering::Relaxed) >> ((k % 2) * 32);
            if w >> 56 != 0x80 | i & 0x7f {
                continue;
            }
            let event = (w >> 52 & 0xf) as u8;
            out.push((
                i,
                DtmfEvent {
                    digit: dtmf_digit(event).unwrap_or('?'),
                    event,
                    duration: (w >> 32 & 0xf_ffff) as u32,
                    rtp_timestamp: w as u32,
                    at_ms: base + (off & 0xffff_ffff),
                },
            ));
        }
        fence(Ordering::Acquire);
        let h2 = self.get(ctr::DTMF_HEAD);
        // Untouched meanwhile: all valid. Otherwise events `head..=h2 >> 1`
        // may have been (or be being) written over entries `i - DTMF_RING`.
        let keep_from = if h1 == h2 && h1 & 1 == 0 {
            0
        } else {
            (h2 >> 1) + 1
        };
        out.into_iter()
            .filter(|(i, _)| i + DTMF_RING as u64 >= keep_from)
            .map(|(_, e)| e)
            .collect()
    }
    /// A snapshot of the counters.
    pub fn snapshot(&self) -> LegStats {
        LegStats {
            rx_packets: self.get(ctr::RX_PACKETS),
            rx_bytes: self.get(ctr::RX_BYTES),
            tx_packets: self.get(ctr::TX_PACKETS),
            tx_bytes: self.get(ctr::TX_BYTES),
            rtcp_rx_packets: self.get(ctr::RTCP_RX),
            drop_source: self.get(ctr::DROP_SOURCE),
            drop_direction: self.get(ctr::DROP_DIRECTION),
            drop_malformed: self.get(ctr::DROP_MALFORMED),
            drop_no_peer: self.get(ctr::DROP_NO_PEER),
            drop_jitter_late: self.get(ctr::DROP_JITTER_LATE),
            drop_jitter_overflow: self.get(ctr::DROP_JITTER_OVERFLOW),
            learned: self.learned(false),
            last_rx_ms: self.get(ctr::LAST_RX_MS),
        }
    }
}

/// Writes the label of `s` under its seqlock.
fn write_label(s: &Slot, label: &str) {
    let mut n = label.len().min(LABEL_BYTES);
    while !label.is_char_boundary(n) {
        n -= 1;
    }
    let mut b = [0u8; LABEL_BYTES];
    b[..n].copy_from_slice(&label.as_bytes()[..n]);
    let seq = s.ctl.label_seq.fetch_add(1, Ordering::Acquire);
    fence(Ordering::Release);
    for (k, w) in s.label.iter().enumerate() {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[k * 8..k * 8 + 8]);
        w.store(u64::from_le_bytes(v), Ordering::Relaxed);
    }
    s.ctl.label_len.store(n as u32, Ordering::Relaxed);
    s.ctl
        .label_seq
        .store(seq.wrapping_add(2) & !1, Ordering::Release);
}

/// Why a worker dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The source address is not the leg's accepted peer.
    Source,
    /// The leg's direction forbids the packet.
    Direction,
    /// Not a valid RTP/RTCP packet, or a payload type not allowed.
    Malformed,
    /// The other leg has no peer address to send to yet.
    NoPeer,
    /// Refused by the jitter buffer of the leg it was for: its position
    /// was already played or reported lost, or it is a duplicate.
    JitterLate,
    /// Refused by the jitter buffer of the leg it was for: a new stream
    /// into a full ring, or a sequence jump held on probation (RFC 3550
    /// A.1).
    JitterOverflow,
}

impl DropReason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [DropReason; 6] = [
        DropReason::Source,
        DropReason::Direction,
        DropReason::Malformed,
        DropReason::NoPeer,
        DropReason::JitterLate,
        DropReason::JitterOverflow,
    ];

    /// The `reason` label value in `/metrics` and the key in `/calls`.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Source => "source",
            DropReason::Direction => "direction",
            DropReason::Malformed => "malformed",
            DropReason::NoPeer => "no_peer",
            DropReason::JitterLate => "jitter_late",
            DropReason::JitterOverflow => "jitter_overflow",
        }
    }
}

impl SlotTable {
    /// Creates the table for `instance`, or reattaches to an existing one of
    /// the same layout version and parameters without touching its slots.
    /// An existing table with other parameters is recreated only if it has no
    /// active slots.
    ///
    /// Errors: [`TableError::Io`], [`TableError::VersionMismatch`],
    /// [`TableError::InUseWithOtherLayout`], [`TableError::BadParams`].
    pub fn create_or_attach(instance: &str, params: TableParams) -> Result<SlotTable, TableError> {
        if !valid_instance(instance) {
            return Err(TableError::BadParams(format!(
                "instance name {instance:?}: use letters, digits, '-', '_' or '.'"
            )));
        }
        let capacity = params.capacity();
        if capacity == 0 {
            return Err(TableError::BadParams(format!(
                "port range {}-{} holds no slot (each needs {PORTS_PER_SLOT} ports)",
                params.port_lo, params.port_hi
            )));
        }
        if params.workers == 0 || params.workers as usize > MAX_WORKERS {
            return Err(TableError::BadParams(format!(
                "{} workers (1..={MAX_WORKERS})",
                params.workers
            )));
        }
        if params.workers > capacity {
            return Err(TableError::BadParams(format!(
                "{} workers but only {capacity} slots in the port range",
                params.workers
            )));
        }
        let path = table_path(instance);
        match SlotTable::open_path(path.clone()) {
            Ok(t) => {
                if t.capacity == capacity
                    && t.workers == params.workers
                    && t.port_lo == params.port_lo
                {
                    t.set_media_ip(params.media_ip);
                    return Ok(t);
                }
                if t.count(SlotState::Active) + t.count(SlotState::Reserved) > 0 {
                    return Err(TableError::InUseWithOtherLayout(path));
                }
                drop(t);
                let _ = std::fs::remove_file(&path);
            }
            Err(TableError::Io(_, e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(TableError::NotATable(_)) => {
                let _ = std::fs::remove_file(&path);
            }
            // Left by an older (or newer) tern that is gone: nothing can
            // resume from another layout, so start afresh.
            Err(TableError::VersionMismatch { .. }) if !dataplane_alive(&path) => {
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => return Err(e),
        }
        SlotTable::create_new(path, params, capacity)
    }

    fn create_new(
        path: PathBuf,
        params: TableParams,
        capacity: u32,
    ) -> Result<SlotTable, TableError> {
        let io = |e| TableError::Io(path.clone(), e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io)?;
        file.set_len(file_len(capacity) as u64).map_err(io)?;
        let map = MmapRaw::map_raw(&file).map_err(io)?;
        let t = SlotTable {
            map,
            path: path.clone(),
            capacity,
            workers: params.workers,
            port_lo: params.port_lo,
        };
        let h = t.header();
        h.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.capacity.store(capacity, Ordering::Relaxed);
        h.workers.store(params.workers, Ordering::Relaxed);
        h.ports.store(
            u32::from(params.port_lo) | u32::from(params.port_hi) << 16,
            Ordering::Relaxed,
        );
        h.created_ms.store(now_ms(), Ordering::Relaxed);
        t.set_media_ip(params.media_ip);
        // Magic last: a reader that sees it sees a complete header.
        h.magic.store(MAGIC, Ordering::Release);
        Ok(t)
    }

    /// Maps the existing table of `instance` (the side that programs slots).
    ///
    /// Errors: [`TableError::Io`] (e.g. no relay has created it),
    /// [`TableError::NotATable`], [`TableError::VersionMismatch`].
    pub fn open(instance: &str) -> Result<SlotTable, TableError> {
        if !valid_instance(instance) {
            return Err(TableError::BadParams(format!("instance name {instance:?}")));
        }
        SlotTable::open_path(table_path(instance))
    }

    fn open_path(path: PathBuf) -> Result<SlotTable, TableError> {
        let io = |e| TableError::Io(path.clone(), e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len() as usize;
        if len < SLOTS_OFFSET {
            return Err(TableError::NotATable(path));
        }
        let map = MmapRaw::map_raw(&file).map_err(io)?;
        // SAFETY: the mapping is at least SLOTS_OFFSET long, page-aligned.
        let h = unsafe { &*(map.as_ptr() as *const Header) };
        if h.magic.load(Ordering::Acquire) != MAGIC {
            return Err(TableError::NotATable(path));
        }
        let version = h.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(TableError::VersionMismatch {
                path,
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let capacity = h.capacity.load(Ordering::Relaxed);
        let workers = h.workers.load(Ordering::Relaxed);
        let port_lo = h.ports.load(Ordering::Relaxed) as u16;
        if len < file_len(capacity) || workers == 0 || workers as usize > MAX_WORKERS {
            return Err(TableError::NotATable(path));
        }
        Ok(SlotTable {
            map,
            path,
            capacity,
            workers,
            port_lo,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a Header and outlives &self.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    fn worker(&self, w: u32) -> &WorkerShared {
        debug_assert!((w as usize) < MAX_WORKERS);
        // SAFETY: WORKERS_OFFSET + MAX_WORKERS entries lie inside the mapping.
        unsafe {
            &*(self.map.as_ptr().add(WORKERS_OFFSET) as *const WorkerShared)
                .add(w as usize % MAX_WORKERS)
        }
    }

    fn slot(&self, id: u32) -> Result<&Slot, TableError> {
        if id >= self.capacity {
            return Err(TableError::NoSuchSlot(id));
        }
        // SAFETY: id < capacity, and the mapping holds capacity slots.
        Ok(unsafe { &*(self.map.as_ptr().add(SLOTS_OFFSET) as *const Slot).add(id as usize) })
    }

    /// Path of the shared-memory file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
    /// Number of slots.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
    /// Number of workers the table is laid out for.
    pub fn workers(&self) -> u32 {
        self.workers
    }
    /// Inclusive port range.
    pub fn port_range(&self) -> (u16, u16) {
        let p = self.header().ports.load(Ordering::Relaxed);
        (p as u16, (p >> 16) as u16)
    }
    /// The address the relay advertises in SDP.
    pub fn media_ip(&self) -> IpAddr {
        let h = self.header();
        let w = [
            h.media_ip[0].load(Ordering::Relaxed),
            h.media_ip[1].load(Ordering::Relaxed),
        ];
        words_ip(w, h.media_family.load(Ordering::Relaxed) as u8)
    }
    /// Sets the advertised media address.
    pub fn set_media_ip(&self, ip: IpAddr) {
        let h = self.header();
        let (w, fam) = ip_words(ip);
        h.media_ip[0].store(w[0], Ordering::Relaxed);
        h.media_ip[1].store(w[1], Ordering::Relaxed);
        h.media_family.store(u32::from(fam), Ordering::Relaxed);
    }
    /// Records the dataplane's process id.
    pub fn set_dataplane_pid(&self, pid: u32) {
        self.header().dataplane_pid.store(pid, Ordering::Relaxed);
    }
    /// The dataplane's process id, 0 if unknown.
    pub fn dataplane_pid(&self) -> u32 {
        self.header().dataplane_pid.load(Ordering::Relaxed)
    }

    /// Local ports of `leg` (0 or 1) of slot `id`.
    pub fn ports(&self, id: u32, leg: usize) -> LegPorts {
        let base = u32::from(self.port_lo) + id * PORTS_PER_SLOT + (leg as u32 & 1) * 2;
        LegPorts {
            rtp: base as u16,
            rtcp: (base + 1) as u16,
        }
    }

    /// The slot whose leg RTP or RTCP port is `port`, with the leg index.
    pub fn slot_of_port(&self, port: u16) -> Option<(u32, usize)> {
        let off = u32::from(port).checked_sub(u32::from(self.port_lo))?;
        let id = off / PORTS_PER_SLOT;
        (id < self.capacity).then_some((id, (off % PORTS_PER_SLOT / 2) as usize))
    }

    /// The worker that owns slot `id` (contiguous blocks of slots).
    pub fn worker_of(&self, id: u32) -> u32 {
        ((u64::from(id) * u64::from(self.workers)) / u64::from(self.capacity)) as u32
    }

    /// The slots owned by worker `w`.
    pub fn slots_of_worker(&self, w: u32) -> std::ops::Range<u32> {
        let start = |w: u32| {
            // Smallest id with worker_of(id) >= w.
            ((u64::from(w) * u64::from(self.capacity)).div_ceil(u64::from(self.workers))) as u32
        };
        start(w).min(self.capacity)..start(w + 1).min(self.capacity)
    }

    /// State of slot `id` (Free if out of range).
    pub fn state(&self, id: u32) -> SlotState {
        self.slot(id)
            .map(|s| SlotState::from_u32(s.ctl.state.load(Ordering::Acquire)))
            .unwrap_or(SlotState::Free)
    }

    /// Generation of slot `id`: bumped at each reserve.
    pub fn generation(&self, id: u32) -> u64 {
        self.slot(id)
            .map(|s| s.ctl.generation.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    /// Number of slots in `state`.
    pub fn count(&self, state: SlotState) -> u32 {
        (0..self.capacity)
            .filter(|&i| self.state(i) == state)
            .count() as u32
    }

    fn cas_state(&self, id: u32, from: SlotState, to: SlotState) -> Result<(), TableError> {
        let s = self.slot(id)?;
        s.ctl
            .state
            .compare_exchange(from as u32, to as u32, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(|v| TableError::WrongState {
                slot: id,
                state: SlotState::from_u32(v),
            })
    }

    /// [`SlotTable::reserve_for`] with [`Owner::Unspecified`].
    ///
    /// Errors: [`TableError::Full`].
    pub fn reserve(&self) -> Result<u32, TableError> {
        self.reserve_for(Owner::Unspecified)
    }

    /// Takes a free slot whose ports are bound, for `owner`, starting the
    /// search at a random index so that the ports handed out cannot be
    /// predicted. Free → Reserved by CAS.
    ///
    /// Once a dataplane has started on the table (epoch ≠ 0), a free slot
    /// is taken only if its worker stamped it bound in the current epoch:
    /// its four sockets are open, so the ports put into SDP are the
    /// relay's. A free slot that is not (another socket on the host holds
    /// one of its ports, or no dataplane runs now) is passed over and
    /// counted in [`SlotTable::port_misses`]. The search visits each slot
    /// at most once, so it is bounded by the capacity and fails only when
    /// no bound free slot exists. On a table no dataplane ever started
    /// (epoch 0: tools, tests) any free slot is taken.
    ///
    /// Errors: [`TableError::Full`].
    pub fn reserve_for(&self, owner: Owner) -> Result<u32, TableError> {
        let epoch = self.epoch();
        let start = rand::random::<u32>() % self.capacity;
        let mut misses = 0u64;
        let mut found = Err(TableError::Full);
        for k in 0..self.capacity {
            let id = (start + k) % self.capacity;
            let Ok(s) = self.slot(id) else { continue };
            if s.ctl.state.load(Ordering::Acquire) != SlotState::Free as u32 {
                continue;
            }
            if epoch != 0 && s.ctl.bound_epoch.load(Ordering::Acquire) != epoch {
                misses += 1;
                continue;
            }
            if self
                .cas_state(id, SlotState::Free, SlotState::Reserved)
                .is_ok()
            {
                s.ctl.generation.fetch_add(1, Ordering::AcqRel);
                s.ctl.owner.store(owner as u32, Ordering::Release);
                write_label(s, "");
                found = Ok(id);
                break;
            }
        }
        if misses > 0 {
            self.header()
                .port_misses
                .fetch_add(misses, Ordering::Relaxed);
        }
        found
    }

    /// Worker side: the configuration published at seqlock value `seq` is
    /// in force on slot `id` (receives armed).
    pub fn set_applied(&self, id: u32, seq: u32) {
        if let Ok(s) = self.slot(id) {
            s.ctl.applied_seq.store(seq, Ordering::Release);
        }
    }

    /// Whether slot `id` is active and its worker applied its latest
    /// configuration: packets sent to its ports from now on are relayed.
    pub fn is_applied(&self, id: u32) -> bool {
        self.state(id) == SlotState::Active
            && self.slot(id).is_ok_and(|s| {
                s.ctl.applied_seq.load(Ordering::Acquire) == s.ctl.seq.load(Ordering::Acquire)
            })
    }

    /// Who reserved slot `id` ([`Owner::Unspecified`] if out of range).
    pub fn owner(&self, id: u32) -> Owner {
        self.slot(id)
            .map(|s| Owner::from_u32(s.ctl.owner.load(Ordering::Acquire)))
            .unwrap_or_default()
    }

    /// The binding epoch: 0 until a dataplane starts on the table.
    pub fn epoch(&self) -> u64 {
        self.header().epoch.load(Ordering::Acquire)
    }

    /// Dataplane side: starts a new binding epoch and returns it. Called
    /// when the workers start (their stamps follow) and when they stop, so
    /// a slot is never handed out on the word of a dataplane that is gone.
    pub fn begin_epoch(&self) -> u64 {
        self.header().epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Worker side: every port of free slot `id` is bound in `epoch`
    /// (`0` clears the stamp: a port was lost).
    pub fn set_bound(&self, id: u32, epoch: u64) {
        if let Ok(s) = self.slot(id) {
            s.ctl.bound_epoch.store(epoch, Ordering::Release);
        }
    }

    /// Whether slot `id`'s ports are bound by the running dataplane.
    pub fn is_bound(&self, id: u32) -> bool {
        let e = self.epoch();
        e != 0
            && self
                .slot(id)
                .is_ok_and(|s| s.ctl.bound_epoch.load(Ordering::Acquire) == e)
    }

    /// Free slots passed over by [`SlotTable::reserve_for`] because their
    /// ports were not bound, in total.
    pub fn port_misses(&self) -> u64 {
        self.header().port_misses.load(Ordering::Relaxed)
    }

    /// Counts `n` slots that no control plane claimed after a restart and
    /// that were released by the media timeout.
    pub fn count_reclaimed(&self, n: u64) {
        self.header().reclaimed.fetch_add(n, Ordering::Relaxed);
    }

    /// Slots reclaimed after a restart ([`SlotTable::count_reclaimed`]),
    /// in total.
    pub fn reclaimed(&self) -> u64 {
        self.header().reclaimed.load(Ordering::Relaxed)
    }

    /// Worker side: how many of worker `w`'s free slots have a port that
    /// could not be bound, now.
    pub fn set_worker_unbound(&self, w: u32, n: u64) {
        self.worker(w).unbound.store(n, Ordering::Relaxed);
    }

    /// Free slots of worker `w` with a port that could not be bound.
    pub fn worker_unbound(&self, w: u32) -> u64 {
        self.worker(w).unbound.load(Ordering::Relaxed)
    }

    /// Publishes `cfg` for slot `id` under the seqlock, moves a Reserved slot
    /// to Active, and rings the owning worker's doorbell. No syscall.
    ///
    /// Errors: [`TableError::NoSuchSlot`]; [`TableError::WrongState`] if the
    /// slot is Free or Draining.
    pub fn publish(&self, id: u32, cfg: &SlotConfig) -> Result<(), TableError> {
        let s = self.slot(id)?;
        let st = self.state(id);
        if !matches!(st, SlotState::Reserved | SlotState::Active) {
            return Err(TableError::WrongState {
                slot: id,
                state: st,
            });
        }
        self.write_config(s, cfg);
        if st == SlotState::Reserved {
            self.cas_state(id, SlotState::Reserved, SlotState::Active)?;
        }
        self.ring(id);
        Ok(())
    }

    fn write_config(&self, s: &Slot, cfg: &SlotConfig) {
        // Take the writer side: CAS even -> odd (bounded spin; writers of one
        // slot are one programmer, so contention is only a misuse).
        let mut seq = s.ctl.seq.load(Ordering::Relaxed);
        loop {
            if seq & 1 == 0 {
                match s.ctl.seq.compare_exchange_weak(
                    seq,
                    seq.wrapping_add(1),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(v) => seq = v,
                }
            } else {
                std::hint::spin_loop();
                seq = s.ctl.seq.load(Ordering::Relaxed);
            }
        }
        fence(Ordering::Release);
        for (leg, c) in cfg.legs.iter().enumerate() {
            for (k, w) in c.encode().iter().enumerate() {
                s.cfg[leg][k].store(*w, Ordering::Relaxed);
            }
        }
        s.ctl.tag.store(cfg.tag, Ordering::Relaxed);
        s.ctl.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Reads slot `id`'s configuration consistently (seqlock read; retries
    /// while a writer is active). Returns the configuration and the seqlock
    /// value it was read at, which changes with every publish.
    pub fn read_config(&self, id: u32) -> Result<(SlotConfig, u32), TableError> {
        let s = self.slot(id)?;
        loop {
            let s1 = s.ctl.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut w = [[0u64; LEG_CFG_WORDS]; 2];
            for (leg, words) in w.iter_mut().enumerate() {
                for (k, v) in words.iter_mut().enumerate() {
                    *v = s.cfg[leg][k].load(Ordering::Relaxed);
                }
            }
            let tag = s.ctl.tag.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if s.ctl.seq.load(Ordering::Relaxed) == s1 {
                let cfg = SlotConfig {
                    legs: [LegConfig::decode(&w[0]), LegConfig::decode(&w[1])],
                    tag,
                };
                return Ok((cfg, s1));
            }
        }
    }

    /// The seqlock value of slot `id` (cheap change detection for workers).
    pub fn config_seq(&self, id: u32) -> u32 {
        self.slot(id)
            .map(|s| s.ctl.seq.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    /// Releases slot `id` (Reserved or Active → Draining) and rings its
    /// worker, which closes the sockets and frees the slot.
    ///
    /// Errors: [`TableError::WrongState`] if already Free or Draining.
    pub fn release(&self, id: u32) -> Result<(), TableError> {
        let st = self.state(id);
        match st {
            SlotState::Reserved | SlotState::Active => {
                self.cas_state(id, st, SlotState::Draining)?;
                if let Ok(s) = self.slot(id) {
                    write_label(s, "");
                }
            }
            _ => {
                return Err(TableError::WrongState {
                    slot: id,
                    state: st,
                })
            }
        }
        self.ring(id);
        Ok(())
    }

    /// Worker side: Draining → Free once the slot's sockets are closed.
    /// The slot's final counters are added to its worker's retired totals
    /// and then reset, under the worker's retire seqlock, so
    /// [`SlotTable::worker_totals`] never sees them twice or not at all.
    ///
    /// Errors: [`TableError::NoSuchSlot`]; [`TableError::WrongState`] if
    /// the slot is not Draining (nothing is changed then).
    pub fn finish_drain(&self, id: u32) -> Result<(), TableError> {
        let s = self.slot(id)?;
        if self.state(id) != SlotState::Draining {
            return Err(TableError::WrongState {
                slot: id,
                state: self.state(id),
            });
        }
        let r = &self.worker(self.worker_of(id)).retired.words;
        let seq = r[ret::SEQ].load(Ordering::Relaxed);
        r[ret::SEQ].store(seq.wrapping_add(1) | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for c in &s.counters {
            for (k, v) in c.snapshot().counters().into_iter().enumerate() {
                let w = &r[ret::FIRST + k];
                w.store(w.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
            }
            c.reset();
        }
        let res = self.cas_state(id, SlotState::Draining, SlotState::Free);
        r[ret::SEQ].store((seq | 1).wrapping_add(1), Ordering::Release);
        res
    }

    /// Counters of `leg` of slot `id`; write them only from the owning worker.
    pub fn counters(&self, id: u32, leg: usize) -> Result<&LegCounters, TableError> {
        Ok(&self.slot(id)?.counters[leg & 1])
    }

    /// Snapshot of `leg`'s counters of slot `id`.
    pub fn stats(&self, id: u32, leg: usize) -> Result<LegStats, TableError> {
        Ok(self.counters(id, leg)?.snapshot())
    }

    /// RFC 3550 receiver statistics of `leg` (0 or 1) of slot `id`, as last
    /// published by its worker; all zero for a slot past capacity.
    pub fn quality(&self, id: u32, leg: usize) -> LegQuality {
        self.counters(id, leg)
            .map(LegCounters::quality)
            .unwrap_or_default()
    }

    /// The last (up to [`DTMF_RING`]) DTMF events received from `leg`'s
    /// peer on slot `id`, oldest first; empty for a slot past capacity.
    pub fn dtmf_events(&self, id: u32, leg: usize) -> Vec<DtmfEvent> {
        self.counters(id, leg)
            .map(LegCounters::dtmf_events)
            .unwrap_or_default()
    }

    /// Labels slot `id` with `call_id` (truncated to [`LABEL_BYTES`] at a
    /// character boundary), for logs and listings. Written by whoever
    /// publishes the slot; cleared when the slot is reserved or released.
    /// Writers of one slot are one programmer, as for [`SlotTable::publish`].
    /// A slot past capacity is ignored.
    pub fn set_call_id(&self, id: u32, call_id: &str) {
        if let Ok(s) = self.slot(id) {
            write_label(s, call_id);
        }
    }

    /// The Call-ID label of slot `id`; `None` when unset or out of range.
    pub fn call_id(&self, id: u32) -> Option<String> {
        let s = self.slot(id).ok()?;
        // Bounded: a writer holds the label seqlock for a few stores only.
        for _ in 0..10_000 {
            let s1 = s.ctl.label_seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let len = (s.ctl.label_len.load(Ordering::Relaxed) as usize).min(LABEL_BYTES);
            let mut b = [0u8; LABEL_BYTES];
            for (k, w) in s.label.iter().enumerate() {
                b[k * 8..k * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            fence(Ordering::Acquire);
            if s.ctl.label_seq.load(Ordering::Relaxed) != s1 {
                continue;
            }
            if len == 0 {
                return None;
            }
            return Some(String::from_utf8_lossy(&b[..len]).into_owned());
        }
        None
    }

    /// Word `k` of the changed bitmap (`k < changed_words(capacity)`).
    fn changed(&self, k: usize) -> Option<&AtomicU64> {
        if k >= changed_words(self.capacity) {
            return None;
        }
        // SAFETY: the mapping holds file_len(capacity) bytes (checked at
        // open), the bitmap's words are 8-aligned, and k is in range.
        Some(unsafe {
            &*(self.map.as_ptr().add(changed_offset(self.capacity)) as *const AtomicU64).add(k)
        })
    }

    /// Marks slot `id` changed, then moves its worker's doorbell: a worker
    /// that sees the new doorbell value also sees the bit.
    fn ring(&self, id: u32) {
        if let Some(w) = self.changed(id as usize / 64) {
            w.fetch_or(1 << (id % 64), Ordering::Release);
        }
        self.worker(self.worker_of(id))
            .doorbell
            .fetch_add(1, Ordering::Release);
    }

    /// Worker side: marks slot `id` changed without moving the doorbell,
    /// for a worker that must look at one of its own slots again (one it
    /// just freed, which a programmer may already have taken).
    pub fn mark_changed(&self, id: u32) {
        if let Some(w) = self.changed(id as usize / 64) {
            w.fetch_or(1 << (id % 64), Ordering::Release);
        }
    }

    /// Worker side: takes (returns and clears) the changed bits of slots
    /// `64 * k ..= 64 * k + 63` that are set in `mask` (bit `i` is slot
    /// `64 * k + i`), leaving the other bits for the worker that owns
    /// them. 0 for a word past the bitmap.
    pub fn take_changed(&self, k: usize, mask: u64) -> u64 {
        self.changed(k)
            .map_or(0, |w| w.fetch_and(!mask, Ordering::AcqRel) & mask)
    }

    /// Worker `w`'s doorbell: it changes after any change to its slots.
    pub fn doorbell(&self, w: u32) -> u64 {
        self.worker(w).doorbell.load(Ordering::Acquire)
    }

    /// Worker side: publishes liveness (Unix ms) and totals.
    pub fn worker_tick(&self, w: u32, now_ms: u64, forwarded: u64, dropped: u64) {
        let ws = self.worker(w);
        ws.heartbeat_ms.store(now_ms, Ordering::Relaxed);
        ws.forwarded.store(forwarded, Ordering::Relaxed);
        ws.dropped.store(dropped, Ordering::Relaxed);
    }

    /// Worker side: legs refused a jitter buffer so far (a total).
    pub fn set_worker_jitter_refused(&self, w: u32, n: u64) {
        self.worker(w).retired.words[ret::JITTER_REFUSED].store(n, Ordering::Relaxed);
    }

    /// Worker side: publishes its ring counters (totals): receive
    /// completions with `-ENOBUFS`, multishot re-arms and submission-queue
    /// overruns.
    pub fn set_worker_ring(&self, w: u32, ring: WorkerRing) {
        let ws = self.worker(w);
        ws.enobufs.store(ring.enobufs, Ordering::Relaxed);
        ws.rearms.store(ring.rearms, Ordering::Relaxed);
        ws.sq_full.store(ring.sq_full, Ordering::Relaxed);
    }

    /// Worker `w`'s ring counters as of its last tick.
    pub fn worker_ring(&self, w: u32) -> WorkerRing {
        let ws = self.worker(w);
        WorkerRing {
            enobufs: ws.enobufs.load(Ordering::Relaxed),
            rearms: ws.rearms.load(Ordering::Relaxed),
            sq_full: ws.sq_full.load(Ordering::Relaxed),
        }
    }

    /// Worker side: the number of sends that failed so far (a total).
    pub fn set_worker_send_errors(&self, w: u32, n: u64) {
        self.worker(w).retired.words[ret::SEND_ERRORS].store(n, Ordering::Relaxed);
    }

    /// Worker `w`'s cumulative counters: the retired totals of the slots it
    /// freed plus the counters of its slots not yet freed (reserved, active
    /// or draining), read consistently with the worker's retire seqlock
    /// (bounded retries; after them the last read is returned).
    pub fn worker_totals(&self, w: u32) -> WorkerTotals {
        let r = &self.worker(w).retired.words;
        let mut out = WorkerTotals::default();
        for _ in 0..1000 {
            let s1 = r[ret::SEQ].load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut acc = [0u64; LEG_STAT_COUNTERS];
            for (k, a) in acc.iter_mut().enumerate() {
                *a = r[ret::FIRST + k].load(Ordering::Relaxed);
            }
            for id in self.slots_of_worker(w) {
                if self.state(id) == SlotState::Free {
                    continue;
                }
                let Ok(s) = self.slot(id) else { continue };
                for c in &s.counters {
                    for (a, v) in acc.iter_mut().zip(c.snapshot().counters()) {
                        *a = a.wrapping_add(v);
                    }
                }
            }
            out = WorkerTotals {
                legs: LegStats::from_counters(&acc),
                send_errors: r[ret::SEND_ERRORS].load(Ordering::Relaxed),
                jitter_refused: r[ret::JITTER_REFUSED].load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            if r[ret::SEQ].load(Ordering::Relaxed) == s1 {
                break;
            }
        }
        out
    }

    /// Worker `w`'s last heartbeat (Unix ms, 0 if none) and totals
    /// (forwarded, dropped packets).
    pub fn worker_status(&self, w: u32) -> (u64, u64, u64) {
        let ws = self.worker(w);
        (
            ws.heartbeat_ms.load(Ordering::Relaxed),
            ws.forwarded.load(Ordering::Relaxed),
            ws.dropped.load(Ordering::Relaxed),
        )
    }

    /// Removes the shared-memory file (the mapping stays valid until drop).
    pub fn unlink(&self) -> io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

impl fmt::Debug for SlotTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotTable")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("workers", &self.workers)
            .finish()
    }
}

/// Unused-address placeholder for configs built before the peer is known.
pub const UNSPECIFIED_V4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn params(lo: u16, hi: u16, workers: u32) -> TableParams {
        TableParams {
            port_lo: lo,
            port_hi: hi,
            workers,
            media_ip: "127.0.0.1".parse().unwrap(),
        }
    }

    fn inst(name: &str) -> String {
        format!("test-{name}-{}", std::process::id())
    }

    #[test]
    fn layout_is_cache_line_sized() {
        assert_eq!(std::mem::size_of::<Header>() % 64, 0);
        assert_eq!(std::mem::size_of::<WorkerShared>(), 192);
        assert_eq!(std::mem::size_of::<SlotControl>(), 64);
        assert_eq!(std::mem::size_of::<LegCounters>(), 512);
        assert_eq!(SLOT_BYTES, 1280, "docs/ARCHITECTURE.md quotes this");
    }

    #[test]
    fn call_id_label_set_truncated_and_cleared() {
        let name = inst("label");
        let t = SlotTable::create_or_attach(&name, params(43000, 43007, 1)).unwrap();
        let id = t.reserve().unwrap();
        assert_eq!(t.call_id(id), None);
        t.set_call_id(id, "a84b4c76e66710@pc33.atlanta.com");
        assert_eq!(
            t.call_id(id).as_deref(),
            Some("a84b4c76e66710@pc33.atlanta.com")
        );
        // 70 bytes with a two-byte character across the 64-byte limit.
        let long = format!("{}é{}", "x".repeat(63), "y".repeat(5));
        t.set_call_id(id, &long);
        assert_eq!(t.call_id(id), Some("x".repeat(63)));
        t.set_call_id(id + 100, "ignored");
        assert_eq!(t.call_id(id + 100), None);
        t.publish(id, &SlotConfig::default()).unwrap();
        t.set_call_id(id, "c1");
        t.release(id).unwrap();
        assert_eq!(t.call_id(id), None);
        t.unlink().unwrap();
    }

    #[test]
    fn quality_round_trips_and_resets() {
        let name = inst("quality");
        let t = SlotTable::create_or_attach(&name, params(43100, 43107, 1)).unwrap();
        let id = t.reserve().unwrap();
        assert_eq!(t.quality(id, 0), LegQuality::default());
        let q = LegQuality {
            expected: 1000,
            lost: -3,
            fraction_lost: 25,
            jitter_ms: 12.625,
            duplicates: 4,
            reordered: 7,
            rtt_ms: Some(0.0),
            peer_fraction_lost: Some(0),
            peer_jitter_ms: None,
            mos: Some(4.2),
            clock_rate: 48_000,
        };
        t.counters(id, 1).unwrap().set_quality(&q);
        assert_eq!(t.quality(id, 1), q);
        assert_eq!(t.counters(id, 1).unwrap().ssrc_in(), None);
        t.counters(id, 1).unwrap().set_ssrc_in(Some(0));
        assert_eq!(t.counters(id, 1).unwrap().ssrc_in(), Some(0));
        assert_eq!(t.quality(id, 0), LegQuality::default());
        t.publish(id, &SlotConfig::default()).unwrap();
        t.release(id).unwrap();
        t.finish_drain(id).unwrap();
        assert_eq!(t.quality(id, 1), LegQuality::default());
        assert_eq!(t.quality(9999, 0), LegQuality::default());
        t.unlink().unwrap();
    }

    /// A worker keeps publishing statistics whose every field derives from
    /// one counter; a reader must never see a mix of two publications.
    #[test]
    fn quality_reader_never_sees_torn_statistics() {
        let name = inst("qtorn");
        let t = Arc::new(SlotTable::create_or_attach(&name, params(43400, 43403, 1)).unwrap());
        let id = t.reserve().unwrap();
        let make = |n: u64| LegQuality {
            expected: n,
            lost: n as i64,
            fraction_lost: n as u8,
            jitter_ms: n as f64,
            duplicates: n,
            reordered: n,
            rtt_ms: Some(n as f64),
            peer_fraction_lost: Some(n as u8),
            peer_jitter_ms: Some(n as f64),
            mos: Some(n as f64),
            clock_rate: n as u32,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = t.counters(id, 0).unwrap();
                let mut n = 1u64;
                while !stop.load(Ordering::Relaxed) && n < 5_000_000 {
                    c.set_quality(&make(n));
                    n += 1;
                    // A worker publishes every 100 ms, not back to back:
                    // leave readers a window.
                    for _ in 0..50 {
                        std::hint::spin_loop();
                    }
                }
                n
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        let mut reads = 0u64;
        while std::time::Instant::now() < deadline && reads < 5_000_000 {
            let q = t.quality(id, 0);
            if q.expected != 0 {
                assert_eq!(q, make(q.expected), "torn read");
            }
            reads += 1;
        }
        stop.store(true, Ordering::Relaxed);
        assert!(writer.join().unwrap() > 1 && reads > 1);
        t.unlink().unwrap();
    }

    #[test]
    fn dtmf_ring_keeps_the_last_sixteen() {
        let name = inst("dtmf");
        let t = SlotTable::create_or_attach(&name, params(43200, 43207, 1)).unwrap();
        let id = t.reserve().unwrap();
        let c = t.counters(id, 0).unwrap();
        assert!(t.dtmf_events(id, 0).is_empty());
        let ev = |n: u32| DtmfEvent {
            digit: dtmf_digit((n % 16) as u8).unwrap(),
            event: (n % 16) as u8,
            duration: 800 + n,
            rtp_timestamp: 0xffff_0000 + n * 160,
            at_ms: 1_700_000_000_000 + u64::from(n) * 250,
        };
        c.push_dtmf(&ev(0));
        c.push_dtmf(&DtmfEvent {
            event: 16,
            ..ev(99)
        }); // flash: not a key
        assert_eq!(t.dtmf_events(id, 0), vec![ev(0)]);
        for n in 1..40 {
            c.push_dtmf(&ev(n));
        }
        let got = t.dtmf_events(id, 0);
        assert_eq!(got, (24..40).map(ev).collect::<Vec<_>>());
        assert_eq!(got[7].digit, 'D');
        assert_eq!(got[2].digit, '*');
        assert!(t.dtmf_events(id, 1).is_empty());
        c.reset();
        assert!(t.dtmf_events(id, 0).is_empty());
        t.unlink().unwrap();
    }

    #[test]
    fn worker_totals_keep_a_freed_slots_counters() {
        let name = inst("totals");
        let t = SlotTable::create_or_attach(&name, params(43300, 43315, 2)).unwrap();
        let id = t.reserve().unwrap();
        let w = t.worker_of(id);
        t.publish(id, &SlotConfig::default()).unwrap();
        let c = t.counters(id, 0).unwrap();
        c.count_rx(100, 1);
        c.count_rx(50, 2);
        c.count_drop(DropReason::Source);
        c.count_drop(DropReason::JitterOverflow);
        t.counters(id, 1)
            .unwrap()
            .count_drop(DropReason::JitterLate);
        t.counters(id, 1).unwrap().count_tx(150);
        t.set_worker_send_errors(w, 3);
        let live = t.worker_totals(w);
        assert_eq!(live.legs.rx_packets, 2);
        assert_eq!(live.legs.rx_bytes, 150);
        assert_eq!(live.legs.tx_bytes, 150);
        assert_eq!(live.legs.drop_source, 1);
        assert_eq!(live.legs.drops(DropReason::JitterLate), 1);
        assert_eq!(live.legs.drop_jitter_overflow, 1);
        assert_eq!(live.drops_total(), 6);
        // Draining: still counted once; freed: the counters are gone from
        // the slot but not from the totals.
        t.release(id).unwrap();
        assert_eq!(t.worker_totals(w), live);
        t.finish_drain(id).unwrap();
        assert_eq!(t.stats(id, 0).unwrap().rx_packets, 0);
        assert_eq!(t.worker_totals(w), live);
        assert!(
            t.finish_drain(id).is_err(),
            "a free slot is not retired twice"
        );
        assert_eq!(t.worker_totals(w), live);
        // The next call on the slot adds to them.
        let id2 = t.reserve().unwrap();
        t.counters(id2, 1).unwrap().count_rx(10, 3);
        let w2 = t.worker_of(id2);
        let other = t.worker_totals(w2);
        if w2 == w {
            assert_eq!(other.legs.rx_packets, 3);
        } else {
            assert_eq!(other.legs.rx_packets, 1);
            assert_eq!(t.worker_totals(w), live);
        }
        t.unlink().unwrap();
    }

    #[test]
    fn dtmf_digits() {
        let s: String = (0..16).filter_map(dtmf_digit).collect();
        assert_eq!(s, "0123456789*#ABCD");
        assert_eq!(dtmf_digit(16), None);
    }

    #[test]
    fn leg_config_round_trips() {
        let c = LegConfig {
            peer: Some("10.1.2.3:4000".parse().unwrap()),
            peer_rtcp: Some("[2001:db8::1]:4001".parse().unwrap()),
            learning: Learning::Strict,
            direction: Direction::SendOnly,
            rewrite_ssrc: true,
            out_ssrc: 0xdead_beef,
            rtcp_mux: true,
            payload_types: 1 << 0 | 1 << 8 | 1 << 101 | 1 << 127,
            jitter: JitterSettings {
                enabled: true,
                target_ms: 60,
                max_ms: 200,
                adaptive: true,
            },
            dtmf_pt: Some(101),
            clock_rate: 48_000,
        };
        assert_eq!(LegConfig::decode(&c.encode()), c);
        for (pt, hz) in [(Some(0), 8000), (Some(127), 44_100), (None, 127_000)] {
            let d = LegConfig {
                dtmf_pt: pt,
                clock_rate: hz,
                ..c
            };
            assert_eq!(LegConfig::decode(&d.encode()), d);
        }
        assert_eq!(
            LegConfig::decode(&LegConfig::default().encode()),
            LegConfig::default()
        );
    }

    #[test]
    fn changes_are_marked_per_slot_and_taken_per_worker() {
        // 150 slots over 2 workers: 0..75 and 75..150, sharing word 1.
        let name = inst("changed");
        let t = SlotTable::create_or_attach(&name, params(40000, 40599, 2)).unwrap();
        assert_eq!(t.capacity(), 150);
        assert_eq!(t.slots_of_worker(1), 75..150);
        let cfg = SlotConfig::default();
        let mut ids = Vec::new();
        while ids.len() < 150 {
            ids.push(t.reserve().unwrap());
        }
        for id in [3, 70, 80, 149] {
            t.publish(id, &cfg).unwrap();
        }
        t.release(74).unwrap();
        // Worker 1 takes its bits of the shared word, not worker 0's.
        let w1_mask = !((1u64 << (75 - 64)) - 1);
        assert_eq!(t.take_changed(1, w1_mask), 1 << (80 - 64));
        assert_eq!(t.take_changed(2, u64::MAX), 1 << (149 - 128));
        assert_eq!(t.take_changed(0, u64::MAX), 1 << 3);
        assert_eq!(t.take_changed(1, !w1_mask), 1 << (70 - 64) | 1 << (74 - 64));
        // Taken once; a word past the bitmap is empty.
        assert_eq!(t.take_changed(1, u64::MAX), 0);
        assert_eq!(t.take_changed(3, u64::MAX), 0);
        t.mark_changed(5);
        assert_eq!(t.take_changed(0, u64::MAX), 1 << 5);
        t.unlink().unwrap();
    }

    #[test]
    fn reserve_publish_release_cycle() {
        let name = inst("cycle");
        let t = SlotTable::create_or_attach(&name, params(40000, 40015, 2)).unwrap();
        assert_eq!(t.capacity(), 4);
        assert_eq!(t.worker_of(0), 0);
        assert_eq!(t.worker_of(3), 1);
        assert_eq!(t.slots_of_worker(0), 0..2);
        assert_eq!(t.slots_of_worker(1), 2..4);
        let ids: Vec<u32> = (0..4).map(|_| t.reserve().unwrap()).collect();
        assert!(matches!(t.reserve(), Err(TableError::Full)));
        let id = ids[0];
        let bell = t.doorbell(t.worker_of(id));
        let mut cfg = SlotConfig::default();
        cfg.legs[0].peer = Some("127.0.0.1:5000".parse().unwrap());
        t.publish(id, &cfg).unwrap();
        assert_eq!(t.state(id), SlotState::Active);
        assert_ne!(t.doorbell(t.worker_of(id)), bell);
        assert_eq!(t.read_config(id).unwrap().0, cfg);
        t.release(id).unwrap();
        assert!(t.release(id).is_err());
        assert!(t.publish(id, &cfg).is_err());
        t.finish_drain(id).unwrap();
        assert_eq!(t.state(id), SlotState::Free);
        assert_eq!(
            t.ports(1, 1),
            LegPorts {
                rtp: 40006,
                rtcp: 40007
            }
        );
        assert_eq!(t.slot_of_port(40007), Some((1, 1)));
        assert_eq!(t.slot_of_port(40016), None);
        t.unlink().unwrap();
    }

    #[test]
    fn reattach_keeps_active_slots_and_refuses_other_versions() {
        let name = inst("reattach");
        let t = SlotTable::create_or_attach(&name, params(41000, 41099, 1)).unwrap();
        let id = t.reserve().unwrap();
        t.publish(
            id,
            &SlotConfig {
                tag: 7,
                ..Default::default()
            },
        )
        .unwrap();
        t.counters(id, 1).unwrap().count_rx(100, 1);
        drop(t);
        let t = SlotTable::create_or_attach(&name, params(41000, 41099, 1)).unwrap();
        assert_eq!(t.state(id), SlotState::Active);
        assert_eq!(t.read_config(id).unwrap().0.tag, 7);
        assert_eq!(t.stats(id, 1).unwrap().rx_bytes, 100);
        // Other parameters while a slot is active: refused.
        assert!(matches!(
            SlotTable::create_or_attach(&name, params(41000, 41199, 1)),
            Err(TableError::InUseWithOtherLayout(_))
        ));
        t.header()
            .version
            .store(LAYOUT_VERSION + 1, Ordering::Relaxed);
        assert!(matches!(
            SlotTable::open(&name),
            Err(TableError::VersionMismatch { .. })
        ));
        // Another layout whose dataplane runs (this process): refused.
        t.set_dataplane_pid(std::process::id());
        assert!(matches!(
            SlotTable::create_or_attach(&name, params(41000, 41099, 1)),
            Err(TableError::VersionMismatch { .. })
        ));
        // Whose dataplane is gone (no PID recorded): replaced.
        t.set_dataplane_pid(0);
        drop(t);
        let t = SlotTable::create_or_attach(&name, params(41000, 41099, 1)).unwrap();
        assert_eq!(t.state(id), SlotState::Free);
        t.unlink().unwrap();
    }

    #[test]
    fn open_refuses_garbage() {
        let name = inst("garbage");
        std::fs::write(table_path(&name), vec![0u8; SLOTS_OFFSET + 10]).unwrap();
        assert!(matches!(
            SlotTable::open(&name),
            Err(TableError::NotATable(_))
        ));
        std::fs::remove_file(table_path(&name)).unwrap();
        assert!(matches!(SlotTable::open(&name), Err(TableError::Io(..))));
        assert!(SlotTable::open("../etc").is_err());
    }

    /// A writer keeps publishing configs whose every field derives from one
    /// counter; readers must never see a mix of two configs.
    #[test]
    fn seqlock_reader_never_sees_torn_slot() {
        let name = inst("seqlock");
        let t = Arc::new(SlotTable::create_or_attach(&name, params(42000, 42003, 1)).unwrap());
        let id = t.reserve().unwrap();
        let make = |n: u32| {
            let mut c = SlotConfig {
                tag: u64::from(n),
                ..Default::default()
            };
            for (leg, l) in c.legs.iter_mut().enumerate() {
                l.peer = Some(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::from(n)),
                    (n as u16).wrapping_add(leg as u16),
                ));
                l.out_ssrc = n;
                l.payload_types = u128::from(n) | u128::from(n) << 96;
                l.jitter.target_ms = n as u16;
                l.direction = Direction::from_u8((n % 4) as u8);
            }
            c
        };
        t.publish(id, &make(0)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 1u32;
                while !stop.load(Ordering::Relaxed) && n < 2_000_000 {
                    t.publish(id, &make(n)).unwrap();
                    n += 1;
                }
                n
            })
        };
        let mut reads = 0u64;
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(700);
        while std::time::Instant::now() < deadline && reads < 5_000_000 {
            let (c, _) = t.read_config(id).unwrap();
            let n = c.tag as u32;
            assert_eq!(c, make(n), "torn read at {n}");
            reads += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let written = writer.join().unwrap();
        assert!(written > 1 && reads > 1);
        t.unlink().unwrap();
    }

    #[test]
    fn reserve_takes_only_bound_slots_once_a_dataplane_started() {
        let name = inst("bound");
        let t = SlotTable::create_or_attach(&name, params(46000, 46015, 1)).unwrap();
        assert_eq!(t.capacity(), 4);
        // No dataplane yet: any free slot, no miss.
        let a = t.reserve_for(Owner::Ng).unwrap();
        assert_eq!(t.owner(a), Owner::Ng);
        t.release(a).unwrap();
        t.finish_drain(a).unwrap();
        assert_eq!(t.port_misses(), 0);

        let e = t.begin_epoch();
        assert_eq!(t.epoch(), e);
        // Nothing stamped: every free slot is a miss, and the answer is Full.
        assert!(matches!(t.reserve(), Err(TableError::Full)));
        assert_eq!(t.port_misses(), 4);
        // Only slot 2 is bound: it is the one handed out, every time.
        t.set_bound(2, e);
        assert!(t.is_bound(2) && !t.is_bound(1));
        let id = t.reserve_for(Owner::Sip).unwrap();
        assert_eq!((id, t.owner(id)), (2, Owner::Sip));
        // The search met 0..=3 unbound slots before slot 2.
        let m = t.port_misses();
        assert!((4..=7).contains(&m), "{m}");
        assert!(matches!(t.reserve(), Err(TableError::Full)));
        assert_eq!(t.port_misses(), m + 3);
        t.release(id).unwrap();
        t.finish_drain(id).unwrap();
        assert_eq!(t.reserve().unwrap(), 2);
        t.release(2).unwrap();
        t.finish_drain(2).unwrap();
        // A new epoch (the dataplane stopped or restarted) voids the stamps.
        t.begin_epoch();
        assert!(!t.is_bound(2));
        assert!(matches!(t.reserve(), Err(TableError::Full)));
        // Reclaim counter.
        t.count_reclaimed(3);
        assert_eq!(t.reclaimed(), 3);
        t.set_worker_unbound(0, 2);
        assert_eq!(t.worker_unbound(0), 2);
        t.unlink().unwrap();
    }
}
