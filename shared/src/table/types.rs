//! The values the table carries, as the planes see them: slot states and
//! owners, leg configuration, statistics snapshots, DTMF events, drop
//! reasons. Their packing into words is [`super::layout`]'s.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

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
    pub(super) fn from_u32(v: u32) -> SlotState {
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
    pub(super) fn from_u32(v: u32) -> Owner {
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
    pub(super) fn from_u8(v: u8) -> Direction {
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
    pub(super) fn from_u8(v: u8) -> Learning {
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
    /// SRTP, ICE-lite and DTLS-SRTP on this leg; default: plain RTP.
    pub secure: super::secure::LegSecurity,
    /// Media control (ng `block DTMF`, rtpengine's semantics): the
    /// telephone-event packets this leg's peer sends (payload type
    /// `dtmf_pt`) are not forwarded; the DTMF detector still sees them.
    pub block_dtmf: bool,
    /// ng `block media`: the other packets this leg's peer sends (RTP
    /// that is not telephone-event) are not forwarded; DTMF still is.
    pub block_media: bool,
    /// ng `silence media`: the payload of the G.711 packets this leg's
    /// peer sends (PCMU, payload type 0; PCMA, 8) is replaced by silence
    /// (0xFF; 0xD5, ITU-T G.711) before it is forwarded; other payload
    /// types pass unchanged.
    pub silence_media: bool,
    /// ng `play DTMF`: events played into what this leg's peer sends, so
    /// the other leg's peer receives them ([`super::DtmfPlay`]).
    pub play: Option<super::DtmfPlay>,
    /// The local interface the leg's sockets are on: an index into the
    /// table's interface list ([`super::SlotTable::interfaces`]), below
    /// [`MAX_INTERFACES`]; 0, the first (or only) one, by default. The
    /// leg receives on, and sends from, its ports on that interface's
    /// address; an index past the list reads as 0.
    pub iface: u8,
    /// Transcoding, recording and media playback of what this leg's peer
    /// sends ([`super::LegMedia`]); all off by default.
    pub media: super::LegMedia,
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
    /// Dropped: sRTP/SRTCP authentication tag did not verify (RFC 3711 §3.4), or the AEAD tag (RFC 7714).
    pub drop_srtp_auth: u64,
    /// Dropped: sRTP/SRTCP replay: an index already received or older than the replay window (RFC 3711 §3.3.2).
    pub drop_srtp_replay: u64,
    /// Dropped: too short or malformed for SRTP/SRTCP on a secure leg, or no room for the tag when protecting.
    pub drop_srtp_malformed: u64,
    /// Dropped: a STUN packet refused: malformed, not a Binding request, bad USERNAME or MESSAGE-INTEGRITY (RFC 8489 §14.5), or on a leg without ICE.
    pub drop_stun: u64,
    /// Dropped: a DTLS record on a leg without DTLS-SRTP, or refused because the DTLS task's queue was full.
    pub drop_dtls: u64,
    /// Dropped: first byte of no class this port carries (RFC 7983 §7: not STUN, DTLS or RTP/RTCP).
    pub drop_demux: u64,
    /// Dropped: not sent: the ICE peer's consent expired (RFC 7675 §5.1, 30 s without a check).
    pub drop_no_consent: u64,
    /// Dropped: refused by the leg's transcoder ([`DropReason::Transcode`]).
    pub drop_transcode: u64,
    /// The source address media was learned from, if any.
    pub learned: Option<SocketAddr>,
    /// Unix time (ms) of the last accepted packet; 0 if none.
    pub last_rx_ms: u64,
}

impl LegStats {
    /// The counters that add up across legs and slots, in a fixed order:
    /// rx packets, rx bytes, tx packets, tx bytes, RTCP rx packets, then
    /// the drops in [`DropReason::ALL`] order.
    pub(super) fn counters(&self) -> [u64; LEG_STAT_COUNTERS] {
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
            self.drop_srtp_auth,
            self.drop_srtp_replay,
            self.drop_srtp_malformed,
            self.drop_stun,
            self.drop_dtls,
            self.drop_demux,
            self.drop_no_consent,
            self.drop_transcode,
        ]
    }

    pub(super) fn from_counters(c: &[u64; LEG_STAT_COUNTERS]) -> LegStats {
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
            drop_srtp_auth: c[11],
            drop_srtp_replay: c[12],
            drop_srtp_malformed: c[13],
            drop_stun: c[14],
            drop_dtls: c[15],
            drop_demux: c[16],
            drop_no_consent: c[17],
            drop_transcode: c[18],
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
            DropReason::SrtpAuth => self.drop_srtp_auth,
            DropReason::SrtpReplay => self.drop_srtp_replay,
            DropReason::SrtpMalformed => self.drop_srtp_malformed,
            DropReason::Stun => self.drop_stun,
            DropReason::Dtls => self.drop_dtls,
            DropReason::Demux => self.drop_demux,
            DropReason::NoConsent => self.drop_no_consent,
            DropReason::Transcode => self.drop_transcode,
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
pub(super) const LEG_STAT_COUNTERS: usize = 19;

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
    /// Recording frames dropped because the worker's recording ring was
    /// full (forwarding went on).
    pub record_dropped: u64,
    /// Recordings of the worker's slots stopped by a write error.
    pub record_failed: u64,
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
    /// SRTP/SRTCP authentication tag did not verify (RFC 3711 §3.4), or the AEAD tag (RFC 7714).
    SrtpAuth,
    /// SRTP/SRTCP replay: an index already received or older than the replay window (RFC 3711 §3.3.2).
    SrtpReplay,
    /// Too short or malformed for SRTP/SRTCP on a secure leg, or no room for the tag when protecting.
    SrtpMalformed,
    /// A STUN packet refused: malformed, not a Binding request, bad USERNAME or MESSAGE-INTEGRITY (RFC 8489 §14.5), or on a leg without ICE.
    Stun,
    /// A DTLS record on a leg without DTLS-SRTP, or refused because the DTLS task's queue was full.
    Dtls,
    /// First byte of no class this port carries (RFC 7983 §7: not STUN, DTLS or RTP/RTCP).
    Demux,
    /// Not sent: the ICE peer's consent expired (RFC 7675 §5.1, 30 s without a check).
    NoConsent,
    /// Refused by the leg's transcoder: a payload type it was not given a
    /// codec for, a payload it could not decode, or no transcoder could
    /// be built for the leg's configuration.
    Transcode,
}

impl DropReason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [DropReason; 14] = [
        DropReason::Source,
        DropReason::Direction,
        DropReason::Malformed,
        DropReason::NoPeer,
        DropReason::JitterLate,
        DropReason::JitterOverflow,
        DropReason::SrtpAuth,
        DropReason::SrtpReplay,
        DropReason::SrtpMalformed,
        DropReason::Stun,
        DropReason::Dtls,
        DropReason::Demux,
        DropReason::NoConsent,
        DropReason::Transcode,
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
            DropReason::SrtpAuth => "srtp_auth",
            DropReason::SrtpReplay => "srtp_replay",
            DropReason::SrtpMalformed => "srtp_malformed",
            DropReason::Stun => "stun",
            DropReason::Dtls => "dtls",
            DropReason::Demux => "demux",
            DropReason::NoConsent => "no_consent",
            DropReason::Transcode => "transcode",
        }
    }
}

/// Upper bound on workers, fixing the size of the worker block.
pub const MAX_WORKERS: usize = 256;
/// Ports per slot: two legs, each with RTP and RTCP.
pub const PORTS_PER_SLOT: u32 = 4;
/// Most local interfaces (addresses) a table names: every one binds every
/// port of the range, so a slot holds `4 * interfaces` sockets.
pub const MAX_INTERFACES: usize = 16;

/// One local interface address of the relay, as the table header keeps
/// it: the address its sockets bind to and the one written into SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalInterface {
    /// Where the relay's ports are bound.
    pub ip: IpAddr,
    /// What SDP says for them (`ip` unless a NAT's public address is
    /// given).
    pub advertised: IpAddr,
}

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

/// Unused-address placeholder for configs built before the peer is known.
pub const UNSPECIFIED_V4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Longest Call-ID label kept per slot, bytes (longer ones are truncated
/// at a character boundary).
pub const LABEL_BYTES: usize = 64;

/// DTMF events kept per leg (the newest ones).
pub const DTMF_RING: usize = 16;
