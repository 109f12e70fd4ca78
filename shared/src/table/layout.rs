//! The `#[repr(C)]` byte layout of the table file: the only place it is
//! defined, and the only place [`LAYOUT_VERSION`] changes. Everything here
//! is reached through atomics; the accessors cast the mapping.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64};

use std::fmt;
use std::path::PathBuf;

use memmap2::MmapRaw;

use super::secure::{LegSecurity, DTLS_KEY_WORDS, SEC_WORDS};
use super::types::*;

/// `b"TERNSLOT"` as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"TERNSLOT");
/// Bumped whenever the byte layout below changes; a mismatch refuses to map.
pub const LAYOUT_VERSION: u32 = 9;

// ---------------------------------------------------------------------------
// Raw layout

#[repr(C, align(64))]
pub(super) struct Header {
    pub(super) magic: AtomicU64,
    pub(super) version: AtomicU32,
    pub(super) capacity: AtomicU32,
    pub(super) workers: AtomicU32,
    /// `port_lo | port_hi << 16`.
    pub(super) ports: AtomicU32,
    /// Advertised media address: 16 bytes (IPv4-mapped for IPv4) + family.
    pub(super) media_ip: [AtomicU64; 2],
    pub(super) media_family: AtomicU32,
    pub(super) dataplane_pid: AtomicU32,
    pub(super) created_ms: AtomicU64,
    /// Binding epoch: bumped by the dataplane when its workers start and
    /// again when they stop, so only the stamps of a running dataplane
    /// are valid. 0: no dataplane ever started on this table.
    pub(super) epoch: AtomicU64,
    /// Free slots [`SlotTable::reserve_for`] passed over because their
    /// ports were not bound, in total.
    pub(super) port_misses: AtomicU64,
    /// Slots nobody claimed after a restart, released by the media
    /// timeout ([`SlotTable::count_reclaimed`]), in total.
    pub(super) reclaimed: AtomicU64,
    /// The SHA-256 fingerprint of the dataplane's DTLS certificate (RFC
    /// 8122 §5), for the control planes' `a=fingerprint`; `fingerprint_set`
    /// is 1 once written. Written before the workers start.
    pub(super) fingerprint: [AtomicU64; 4],
    pub(super) fingerprint_set: AtomicU64,
    /// Interfaces in `ifaces` (0: none named; the one interface is
    /// `media_ip`).
    pub(super) iface_count: AtomicU64,
    /// The local interfaces legs name by index ([`LegConfig::iface`]).
    pub(super) ifaces: [IfaceWords; MAX_INTERFACES],
}

/// One [`LocalInterface`]: bind address, advertised address (16 bytes
/// each, IPv4-mapped for IPv4), then `ip family | advertised family << 8`.
#[repr(C)]
pub(super) struct IfaceWords {
    pub(super) ip: [AtomicU64; 2],
    pub(super) advertised: [AtomicU64; 2],
    pub(super) families: AtomicU64,
}

/// Per-worker words, each worker on its own cache line.
#[repr(C, align(64))]
pub(super) struct WorkerShared {
    /// Bumped by a programmer after each change to one of the worker's slots.
    pub(super) doorbell: AtomicU64,
    /// Unix ms of the worker's last loop tick; 0 if no worker runs.
    pub(super) heartbeat_ms: AtomicU64,
    /// RTP/RTCP packets the worker forwarded, in total.
    pub(super) forwarded: AtomicU64,
    /// Packets the worker dropped, in total.
    pub(super) dropped: AtomicU64,
    /// Receive completions that ended with `-ENOBUFS` (provided-buffer
    /// ring empty), in total; in what was the line's padding, so the
    /// layout is unchanged.
    pub(super) enobufs: AtomicU64,
    /// Multishot receives re-armed after their final completion, in total.
    pub(super) rearms: AtomicU64,
    /// SQEs that found the submission queue full (handed to the kernel
    /// early, or dropped after retries), in total.
    pub(super) sq_full: AtomicU64,
    /// Free slots of this worker whose ports could not all be bound
    /// (another socket on the host holds one), now.
    pub(super) unbound: AtomicU64,
    /// Written only by the worker (the slots it freed, its send errors).
    pub(super) retired: Retired,
}

/// Indices into [`Retired::words`].
pub(super) mod ret {
    /// `retire_seq`: odd while a slot's counters move into the totals.
    pub const SEQ: usize = 0;
    /// Then the [`super::LegStats`] counters, in `LegStats::COUNTERS` order.
    pub const FIRST: usize = 1;
    /// Recording frames the worker's recording ring had no room for
    /// (the packets were forwarded all the same).
    pub const RECORD_DROPPED: usize = 20;
    /// Recordings of the worker's slots stopped by a write error (disk
    /// full); written by the recording writer thread, its only writer.
    pub const RECORD_FAILED: usize = 21;
    /// Legs refused a jitter buffer (forwarded straight through).
    pub const JITTER_REFUSED: usize = 22;
    /// Sends that failed (not attributable to a slot).
    pub const SEND_ERRORS: usize = 23;
    pub const COUNT: usize = 24;
}

/// The final counters of the slots a worker freed, summed; three cache lines.
#[repr(C, align(64))]
pub(super) struct Retired {
    pub(super) words: [AtomicU64; ret::COUNT],
}

pub(super) const LEG_CFG_WORDS: usize = 8;

#[repr(C, align(64))]
pub(super) struct SlotControl {
    pub(super) state: AtomicU32,
    pub(super) seq: AtomicU32,
    /// Bumped at each reserve, so a stale handle can be recognized.
    pub(super) generation: AtomicU64,
    pub(super) tag: AtomicU64,
    /// Seqlock of the label (odd while being written).
    pub(super) label_seq: AtomicU32,
    /// Bytes of the label in use (0..=LABEL_BYTES).
    pub(super) label_len: AtomicU32,
    /// The header's epoch at which the owning worker last had every port
    /// of the slot bound (and receives off) while it was free; a free
    /// slot is handed out only when this equals the current epoch.
    pub(super) bound_epoch: AtomicU64,
    /// Who reserved the slot ([`Owner`]), so a restarted control plane
    /// reclaims only its own slots.
    pub(super) owner: AtomicU32,
    /// The configuration seqlock value the owning worker last applied
    /// (its sockets are reading from then on).
    pub(super) applied_seq: AtomicU32,
}

/// Counter indices inside [`LegCounters`].
pub(super) mod ctr {
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
    /// SRTP stream state of what the peer sends, two words
    /// ([`LegCounters::srtp_state`]).
    pub const SRTP_RX0: usize = 34;
    /// SRTP stream state of what the relay sends, two words.
    pub const SRTP_TX0: usize = 36;
    pub const DROP_SRTP_AUTH: usize = 38;
    pub const DROP_SRTP_REPLAY: usize = 39;
    pub const DROP_SRTP_MALFORMED: usize = 40;
    pub const DROP_STUN: usize = 41;
    pub const DROP_DTLS: usize = 42;
    pub const DROP_DEMUX: usize = 43;
    pub const DROP_NO_CONSENT: usize = 44;
    pub const DROP_TRANSCODE: usize = 45;
    pub const COUNT: usize = 48;
}

/// Ring words: one per event, then the `at_ms` offsets two per word.
pub(super) const DTMF_WORDS: usize = DTMF_RING + DTMF_RING / 2;

/// One leg's counters, quality statistics, DTMF ring and worker-private
/// persisted state, written only by the owning worker. Nine cache lines:
/// six of counters, three of the DTMF ring.
#[repr(C, align(64))]
pub struct LegCounters {
    pub(super) words: [AtomicU64; ctr::COUNT],
    /// Event `i` lives in word `i % DTMF_RING`:
    /// `rtp_timestamp | duration << 32 (20 bits) | event << 52 (4 bits) |
    /// tag << 56`, tag = `0x80 | i & 0x7f`; its `at_ms - base` (u32) in
    /// half `i % 2` of word `DTMF_RING + (i % DTMF_RING) / 2`.
    pub(super) dtmf: [AtomicU64; DTMF_WORDS],
}

#[repr(C, align(64))]
pub(super) struct Slot {
    pub(super) ctl: SlotControl,
    pub(super) cfg: [[AtomicU64; LEG_CFG_WORDS]; 2],
    /// Per leg, the programmed [`LegSecurity`] (`super::secure`'s
    /// words), under the configuration seqlock.
    pub(super) sec: [[AtomicU64; SEC_WORDS]; 2],
    /// Per leg, the keys its DTLS handshake exported (worker only).
    pub(super) dtls_keys: [[AtomicU64; DTLS_KEY_WORDS]; 2],
    /// Per leg, the programmed [`super::LegMedia`] (`super::media`'s
    /// words), under the configuration seqlock.
    pub(super) media: [[AtomicU64; super::media::MEDIA_WORDS]; 2],
    /// The Call-ID label, bytes in little-endian word order.
    pub(super) label: [AtomicU64; LABEL_BYTES / 8],
    pub(super) counters: [LegCounters; 2],
}

/// Bytes of shared memory per slot (control, configuration and counters).
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

pub(super) const HEADER_BYTES: usize = std::mem::size_of::<Header>();
pub(super) const WORKERS_OFFSET: usize = HEADER_BYTES;
pub(super) const SLOTS_OFFSET: usize =
    WORKERS_OFFSET + MAX_WORKERS * std::mem::size_of::<WorkerShared>();

pub(super) fn file_len(capacity: u32) -> usize {
    changed_offset(capacity) + changed_words(capacity) * 8
}

/// Where the changed bitmap starts: right after the slots (64-aligned,
/// since a slot is a whole number of lines).
pub(super) fn changed_offset(capacity: u32) -> usize {
    SLOTS_OFFSET + capacity as usize * SLOT_BYTES
}

/// Words of the changed bitmap: one bit per slot.
pub(super) fn changed_words(capacity: u32) -> usize {
    (capacity as usize).div_ceil(64)
}

/// Whether the dataplane that created the table file at `path` still
/// runs: its PID is the header's `dataplane_pid`, alive when `/proc/PID`
/// exists. Reads only the header's bytes up to that field, which every
/// layout version so far keeps in place. An unreadable header counts as
/// alive, so nothing is removed on doubt.
pub(super) fn dataplane_alive(path: &std::path::Path) -> bool {
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

pub(super) fn ip_words(ip: IpAddr) -> ([u64; 2], u8) {
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

pub(super) fn words_ip(w: [u64; 2], fam: u8) -> IpAddr {
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
pub(super) fn encode_addr(a: Option<SocketAddr>) -> [u64; 3] {
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

pub(super) fn decode_addr(w: [u64; 3]) -> Option<SocketAddr> {
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
    /// enabled 18, `0x80 | dtmf_pt` 19..27, jitter adaptive 27, block DTMF
    /// 28, block media 29, silence media 30), `[3..6]`
    /// peer_rtcp (meta word's bits 32.. carry `out_ssrc`), `[6]` payload
    /// types 0..=63, `[7]` payload types 96..=127 in bits 32.. and the
    /// jitter delays in bits 0..32. The local interface index is in bits
    /// 25..32 of `[5]` (layout 8).
    pub(super) fn encode(&self) -> [u64; LEG_CFG_WORDS] {
        let p = encode_addr(self.peer);
        let r = encode_addr(self.peer_rtcp);
        let flags = u64::from(self.learning as u8)
            | u64::from(self.direction as u8) << 8
            | u64::from(self.rewrite_ssrc) << 16
            | u64::from(self.rtcp_mux) << 17
            | u64::from(self.jitter.enabled) << 18
            | self.dtmf_pt.map_or(0, |pt| u64::from(0x80 | pt & 0x7f)) << 19
            | u64::from(self.jitter.adaptive) << 27
            | u64::from(self.block_dtmf) << 28
            | u64::from(self.block_media) << 29
            | u64::from(self.silence_media) << 30;
        let jit = u64::from(self.jitter.target_ms) | u64::from(self.jitter.max_ms) << 16;
        [
            p[0],
            p[1],
            p[2] | flags << 32 | u64::from(clock_khz(self.clock_rate)) << 25,
            r[0],
            r[1],
            r[2] | u64::from(self.iface & 0x7f) << 25 | u64::from(self.out_ssrc) << 32,
            self.payload_types as u64,
            jit_pack(jit, self.payload_types),
        ]
    }

    pub(super) fn decode(w: &[u64; LEG_CFG_WORDS]) -> LegConfig {
        let flags = w[2] >> 32;
        let (pt_hi, jit) = jit_unpack(w[7]);
        LegConfig {
            secure: LegSecurity::default(),
            peer: decode_addr([w[0], w[1], w[2] & 0x01ff_ffff]),
            peer_rtcp: decode_addr([w[3], w[4], w[5] & 0x01ff_ffff]),
            iface: (w[5] >> 25 & 0x7f) as u8,
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
            play: None,
            media: super::LegMedia::default(),
            block_dtmf: flags >> 28 & 1 == 1,
            block_media: flags >> 29 & 1 == 1,
            silence_media: flags >> 30 & 1 == 1,
            clock_rate: match (w[2] >> 25 & 0x7f) as u32 {
                44 => 44_100,
                k => k * 1000,
            },
        }
    }
}

/// A clock rate in kHz for the 7 bits of the configuration word.
pub(super) fn clock_khz(hz: u32) -> u8 {
    if hz == 44_100 {
        44
    } else {
        (hz / 1000).min(127) as u8
    }
}

// Payload types 0..=127 need 128 bits, but dynamic types live in 96..=127 and
// static ones in 0..=34, so bits 64..=95 (types 64..=95, unassigned per RFC
// 3551 §6) carry the jitter settings instead.
pub(super) fn jit_pack(jit: u64, pt: u128) -> u64 {
    let hi = (pt >> 64) as u64;
    (hi & 0xffff_ffff_0000_0000) | (jit & 0xffff_ffff)
}

pub(super) fn jit_unpack(w: u64) -> (u64, u64) {
    (w & 0xffff_ffff_0000_0000, w & 0xffff_ffff)
}

impl SlotTable {
    pub(super) fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a Header and outlives &self.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    pub(super) fn worker(&self, w: u32) -> &WorkerShared {
        debug_assert!((w as usize) < MAX_WORKERS);
        // SAFETY: WORKERS_OFFSET + MAX_WORKERS entries lie inside the mapping.
        unsafe {
            &*(self.map.as_ptr().add(WORKERS_OFFSET) as *const WorkerShared)
                .add(w as usize % MAX_WORKERS)
        }
    }

    pub(super) fn slot(&self, id: u32) -> Result<&Slot, TableError> {
        if id >= self.capacity {
            return Err(TableError::NoSuchSlot(id));
        }
        // SAFETY: id < capacity, and the mapping holds capacity slots.
        Ok(unsafe { &*(self.map.as_ptr().add(SLOTS_OFFSET) as *const Slot).add(id as usize) })
    }

    /// Word `k` of the changed bitmap (`k < changed_words(capacity)`).
    pub(super) fn changed(&self, k: usize) -> Option<&AtomicU64> {
        if k >= changed_words(self.capacity) {
            return None;
        }
        // SAFETY: the mapping holds file_len(capacity) bytes (checked at
        // open), the bitmap's words are 8-aligned, and k is in range.
        Some(unsafe {
            &*(self.map.as_ptr().add(changed_offset(self.capacity)) as *const AtomicU64).add(k)
        })
    }
}

/// The mapped table. Cheap to share between threads (`&SlotTable` is `Sync`).
pub struct SlotTable {
    pub(super) map: MmapRaw,
    pub(super) path: PathBuf,
    pub(super) capacity: u32,
    pub(super) workers: u32,
    pub(super) port_lo: u16,
}

// SAFETY: every byte of the mapping is accessed only through atomics.
unsafe impl Send for SlotTable {}
unsafe impl Sync for SlotTable {}

impl fmt::Debug for SlotTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotTable")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("workers", &self.workers)
            .finish()
    }
}
