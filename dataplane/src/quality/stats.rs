//! Sans-IO RFC 3550 receiver statistics of one leg: what that leg's peer
//! sends, as the relay receives it, plus what the peer reports back in RTCP.
//!
//! - Sequence validation and the extended sequence number with its 16-bit
//!   wrap (RFC 3550 A.1): a new source is on probation until
//!   [`MIN_SEQUENTIAL`] packets arrive in sequence; a jump of
//!   [`MAX_DROPOUT`] or more is taken as a restart only when the next
//!   packet follows it.
//! - Expected, cumulative lost and fraction lost (A.3).
//! - Interarrival jitter (A.8) in RTP timestamp units, reported in ms with
//!   the payload's clock rate.
//! - Duplicates (an extended sequence number seen again, within the last
//!   [`HISTORY`]) and reordered packets (older than the highest so far).
//! - From the peer's SR/RR report block: its fraction lost and jitter of
//!   what the relay sends it, and the round-trip time between relay and
//!   peer (§6.4.1: RTT = A − LSR − DLSR in 1/65536 s, where A is "now"
//!   on the clock of the SR's sender; a relay never sends SRs of its own,
//!   so it remembers when it forwarded each SR to the peer and measures
//!   from there: A − LSR = now − forwarded_at).
//!
//! Everything is a plain state machine over values and a `now: Instant`
//! handed in: no allocation, no I/O, no clock read. The worker calls
//! [`RtpStats::on_rtp`] per accepted packet (a few arithmetic operations)
//! and publishes [`RtpStats::quality`] now and then.

use std::time::{Duration, Instant};

use tern_shared::rtcp::{CompoundIter, PT_RR, PT_SR, REPORT_BLOCK_LEN};
use tern_shared::table::LegQuality;

/// Packets in sequence a new source needs before it counts (A.1).
pub const MIN_SEQUENTIAL: u32 = 2;
/// Largest forward jump still taken as loss rather than a restart (A.1).
pub const MAX_DROPOUT: u16 = 3000;
/// Largest backward step taken as reordering rather than a restart (A.1).
pub const MAX_MISORDER: u16 = 100;
/// Extended sequence numbers remembered for duplicate detection.
pub const HISTORY: u32 = 128;
/// Clock rate used when the payload's is unknown, Hz (PCMU, PCMA, G722 and
/// telephone-event are all 8000 per RFC 3551 §4.5.2 and RFC 4733).
pub const DEFAULT_CLOCK_RATE: u32 = 8000;
/// SRs forwarded to the peer that are remembered for RTT measurement.
const SR_HISTORY: usize = 4;

const SEQ_MOD: u32 = 1 << 16;

/// What [`RtpStats::on_rtp`] made of a packet's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// In sequence, or after a gap (lost packets before it). Also the
    /// packet that confirms a restart (the second in sequence after a jump
    /// of [`MAX_DROPOUT`] or more, A.1): counting starts again from it as a
    /// new run of the source, the earlier run's expected and lost carried
    /// over, and its jitter sample skipped.
    InOrder,
    /// Older than the highest received, not seen before.
    Reordered,
    /// Its extended sequence number was already received.
    Duplicate,
    /// A new source (or one after a restart) still on probation: not
    /// counted yet (A.1).
    Probation,
    /// A jump of [`MAX_DROPOUT`] or more not (yet) confirmed by the next
    /// packet: not counted (A.1).
    Jump,
}

/// What [`RtpStats::on_rtcp`] found in a compound packet from the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtcpSeen {
    /// The middle 32 bits of the NTP timestamp of an SR from the peer: the
    /// LSR the other leg's peer will echo. Hand it to the other leg's
    /// [`RtpStats::on_sr_forwarded`] when the packet is forwarded.
    pub sr_ntp_middle: Option<u32>,
    /// A report block was read.
    pub report: bool,
}

/// Receiver statistics of the RTP a leg's peer sends (one source at a time;
/// a new SSRC restarts the sequence state, the cumulative counts carry on).
#[derive(Debug, Clone)]
pub struct RtpStats {
    ssrc: Option<u32>,
    probation: u32,
    max_seq: u16,
    /// Sequence cycles, shifted: `cycles + max_seq` is the extended highest
    /// sequence number.
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Fraction lost of the last closed interval (1/256).
    last_fraction: u8,
    /// Bit `k`: extended sequence number `max_ext - k` was received.
    seen: u128,
    /// Totals of previous sources of this leg.
    carry_expected: u64,
    carry_lost: i64,
    duplicates: u64,
    reordered: u64,
    /// A.8: jitter estimate in timestamp units, and the last transit time.
    jitter: f64,
    transit: Option<f64>,
    clock_rate: u32,
    epoch: Option<Instant>,
    rtt_ms: Option<f64>,
    peer_fraction_lost: Option<u8>,
    peer_jitter: Option<u32>,
    /// SRs forwarded to this leg's peer: (NTP middle 32 bits, when).
    sr_sent: [(u32, Option<Instant>); SR_HISTORY],
    sr_next: usize,
}

impl Default for RtpStats {
    fn default() -> Self {
        RtpStats::new()
    }
}

/// RFC 3550 §6.4.1 round-trip time from a report block, in 1/65536 s:
/// `a − lsr − dlsr` with `a` the report's arrival time as the middle 32
/// bits of an NTP timestamp. `None` when `lsr` is 0 (no SR received by the
/// reporter yet) or the result is negative (clock skew, a stale block).
pub fn rtt_units(a: u32, lsr: u32, dlsr: u32) -> Option<u32> {
    if lsr == 0 {
        return None;
    }
    let r = a.wrapping_sub(lsr).wrapping_sub(dlsr);
    (r < 1 << 31).then_some(r)
}

/// A duration in 1/65536 s (the unit of LSR and DLSR), saturating.
fn units_of(d: Duration) -> u32 {
    let u = d.as_secs().saturating_mul(65536) + (u64::from(d.subsec_nanos()) << 16) / 1_000_000_000;
    u.min(u64::from(u32::MAX)) as u32
}

impl RtpStats {
    /// Statistics with nothing received.
    pub const fn new() -> RtpStats {
        RtpStats {
            ssrc: None,
            probation: 0,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: SEQ_MOD + 1,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            last_fraction: 0,
            seen: 0,
            carry_expected: 0,
            carry_lost: 0,
            duplicates: 0,
            reordered: 0,
            jitter: 0.0,
            transit: None,
            clock_rate: DEFAULT_CLOCK_RATE,
            epoch: None,
            rtt_ms: None,
            peer_fraction_lost: None,
            peer_jitter: None,
            sr_sent: [(0, None); SR_HISTORY],
            sr_next: 0,
        }
    }

    /// Statistics that continue from `q`, published by a previous worker
    /// (a restarted dataplane): the cumulative counts, the jitter estimate
    /// and the RTCP-derived values carry on; sequence state starts over
    /// (the next packets are a new run, as after a source restart).
    pub fn resume(q: &tern_shared::table::LegQuality) -> RtpStats {
        let mut s = RtpStats::new();
        s.carry_expected = q.expected;
        s.carry_lost = q.lost;
        s.duplicates = q.duplicates;
        s.reordered = q.reordered;
        if q.clock_rate > 0 {
            s.clock_rate = q.clock_rate;
        }
        if q.jitter_ms.is_finite() && q.jitter_ms > 0.0 {
            s.jitter = q.jitter_ms * f64::from(s.clock_rate) / 1000.0;
        }
        s.last_fraction = q.fraction_lost;
        s.rtt_ms = q.rtt_ms;
        s.peer_fraction_lost = q.peer_fraction_lost;
        s.peer_jitter = q
            .peer_jitter_ms
            .map(|j| (j * f64::from(s.clock_rate) / 1000.0).round() as u32);
        s
    }

    /// The SSRC being measured.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Extended highest sequence number received (A.1), if counting.
    pub fn extended_max(&self) -> Option<u32> {
        (self.ssrc.is_some() && self.received > 0)
            .then(|| self.cycles.wrapping_add(u32::from(self.max_seq)))
    }

    fn expected_now(&self) -> u64 {
        match self.extended_max() {
            Some(ext) => u64::from(ext.wrapping_sub(self.base_seq)) + 1,
            None => 0,
        }
    }

    /// A.1 `init_seq`.
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.seen = 1;
    }

    /// Starts over on a new source, keeping the totals so far.
    fn new_source(&mut self, ssrc: u32, seq: u16) {
        let expected = self.expected_now();
        self.carry_expected += expected;
        self.carry_lost += expected as i64 - self.received as i64;
        self.ssrc = Some(ssrc);
        self.init_seq(seq);
        // A.1: the first packet is not counted; `max_seq = seq - 1` makes
        // the next one "in sequence".
        self.max_seq = seq.wrapping_sub(1);
        self.probation = MIN_SEQUENTIAL;
        self.transit = None;
        self.seen = 0;
    }

    /// Accounts one RTP packet (sequence number `seq`, RTP timestamp `ts`,
    /// source `ssrc`) received at `now`. `clock_rate` is its payload
    /// type's (Hz, 0 = unknown: [`DEFAULT_CLOCK_RATE`]). `jitter_sample`
    /// false leaves the jitter estimate alone: telephone-event packets
    /// repeat one timestamp for a whole event, which is no network jitter.
    pub fn on_rtp(
        &mut self,
        seq: u16,
        ts: u32,
        ssrc: u32,
        clock_rate: u32,
        jitter_sample: bool,
        now: Instant,
    ) -> SeqVerdict {
        if self.ssrc != Some(ssrc) {
            self.new_source(ssrc, seq);
        }
        let v = self.update_seq(seq);
        if jitter_sample && !matches!(v, SeqVerdict::Duplicate | SeqVerdict::Jump) {
            self.update_jitter(ts, clock_rate, now);
        }
        v
    }

    /// A.1 `update_seq`, plus duplicate and reordering detection.
    fn update_seq(&mut self, seq: u16) -> SeqVerdict {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return SeqVerdict::InOrder;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqVerdict::Probation;
        }
        let verdict = if udelta == 0 {
            self.duplicates += 1;
            SeqVerdict::Duplicate
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(SEQ_MOD);
            }
            self.max_seq = seq;
            let d = u32::from(udelta);
            self.seen = if d >= HISTORY { 0 } else { self.seen << d };
            self.seen |= 1;
            SeqVerdict::InOrder
        } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets after a jump: the source restarted
                // (A.1). Count it as a new run of the same source.
                let expected = self.expected_now();
                self.carry_expected += expected;
                self.carry_lost += expected as i64 - self.received as i64;
                self.init_seq(seq);
                self.transit = None;
                SeqVerdict::InOrder
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
                return SeqVerdict::Jump;
            }
        } else {
            // Behind the highest by less than MAX_MISORDER.
            let back = u32::from(self.max_seq.wrapping_sub(seq));
            let ext_max = self.cycles.wrapping_add(u32::from(self.max_seq));
            if back > ext_max.wrapping_sub(self.base_seq) {
                // Before the first counted packet: late, not a duplicate.
                self.reordered += 1;
                return SeqVerdict::Reordered;
            }
            let bit = 1u128 << back;
            if back < HISTORY && self.seen & bit != 0 {
                self.duplicates += 1;
                SeqVerdict::Duplicate
            } else {
                if back < HISTORY {
                    self.seen |= bit;
                }
                self.reordered += 1;
                SeqVerdict::Reordered
            }
        };
        self.received += 1;
        verdict
    }

    /// A.8: `J += (|D(i-1, i)| − J) / 16`, D from transit times in
    /// timestamp units.
    fn update_jitter(&mut self, ts: u32, clock_rate: u32, now: Instant) {
        let rate = if clock_rate == 0 {
            DEFAULT_CLOCK_RATE
        } else {
            clock_rate
        };
        if rate != self.clock_rate {
            // Transit times in other units do not compare.
            self.clock_rate = rate;
            self.transit = None;
            self.jitter = 0.0;
        }
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = now.saturating_duration_since(epoch).as_secs_f64() * f64::from(rate);
        // Timestamps wrap at 2^32; transit is compared modulo it.
        let transit = arrival - f64::from(ts);
        if let Some(prev) = self.transit {
            let mut d = (transit - prev).abs();
            let wrap = 4_294_967_296.0;
            d %= wrap;
            if d > wrap / 2.0 {
                d = wrap - d;
            }
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// Closes the current loss interval (A.3): `fraction_lost` reports it
    /// until the next interval closes (an interval in which nothing was
    /// expected leaves it as it was). Call it every few seconds.
    pub fn roll_interval(&mut self) {
        if let Some(f) = self.interval_fraction() {
            self.last_fraction = f;
        }
        self.expected_prior = self.expected_now();
        self.received_prior = self.received;
    }

    /// A.3 fraction lost since the interval began; `None` if nothing was
    /// expected in it.
    fn interval_fraction(&self) -> Option<u8> {
        let expected = self.expected_now().saturating_sub(self.expected_prior);
        if expected == 0 {
            return None;
        }
        let received = self.received.saturating_sub(self.received_prior);
        let lost = expected as i64 - received as i64;
        Some(if lost <= 0 {
            0
        } else {
            ((lost as u64) << 8)
                .checked_div(expected)
                .unwrap_or(0)
                .min(255) as u8
        })
    }

    /// Records that an SR whose NTP timestamp's middle 32 bits are
    /// `ntp_middle` was forwarded to this leg's peer at `now`; a later
    /// report block from the peer echoing it as LSR gives the RTT.
    pub fn on_sr_forwarded(&mut self, ntp_middle: u32, now: Instant) {
        self.sr_sent[self.sr_next] = (ntp_middle, Some(now));
        self.sr_next = (self.sr_next + 1) % SR_HISTORY;
    }

    /// Reads a compound RTCP packet `buf` from this leg's peer at `now`:
    /// the first report block of its first SR or RR gives the peer's
    /// fraction lost and jitter (in the clock rate of the last RTP seen)
    /// and, when its LSR names an SR forwarded by [`Self::on_sr_forwarded`],
    /// the RTT. Malformed packets are ignored (the walk stops at the first
    /// error; what was read before stays).
    pub fn on_rtcp(&mut self, buf: &[u8], now: Instant) -> RtcpSeen {
        let mut seen = RtcpSeen::default();
        for p in CompoundIter::new(buf) {
            let Ok(p) = p else { break };
            let body = p.body();
            // Report blocks follow the sender SSRC, and in an SR the 20
            // bytes of sender info (NTP timestamp first).
            let blocks_at = match p.packet_type() {
                PT_SR => {
                    if body.len() >= 12 {
                        seen.sr_ntp_middle =
                            Some(u32::from_be_bytes([body[6], body[7], body[8], body[9]]));
                    }
                    24
                }
                PT_RR => 4,
                _ => continue,
            };
            if seen.report || p.count() == 0 {
                continue;
            }
            let Some(b) = body.get(blocks_at..blocks_at + REPORT_BLOCK_LEN) else {
                continue;
            };
            seen.report = true;
            let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            self.peer_fraction_lost = Some(b[4]);
            self.peer_jitter = Some(word(12));
            let (lsr, dlsr) = (word(16), word(20));
            let sent = self
                .sr_sent
                .iter()
                .find(|(m, at)| *m == lsr && at.is_some())
                .and_then(|(_, at)| *at);
            if let Some(at) = sent {
                let a = lsr.wrapping_add(units_of(now.saturating_duration_since(at)));
                if let Some(r) = rtt_units(a, lsr, dlsr) {
                    self.rtt_ms = Some(f64::from(r) * 1000.0 / 65536.0);
                }
            }
        }
        seen
    }

    /// The statistics in the slot table's shape (MOS left `None`: the
    /// caller fills it from its E-model).
    pub fn quality(&self) -> LegQuality {
        let expected = self.expected_now();
        let rate = f64::from(self.clock_rate.max(1));
        LegQuality {
            expected: self.carry_expected + expected,
            lost: self.carry_lost + (expected as i64 - self.received as i64),
            // Only a closed interval's (A.3): the running one's is a
            // ratio of small numbers early on (1 lost of 2 reads as 50%).
            fraction_lost: self.last_fraction,
            jitter_ms: self.jitter * 1000.0 / rate,
            duplicates: self.duplicates,
            reordered: self.reordered,
            rtt_ms: self.rtt_ms,
            peer_fraction_lost: self.peer_fraction_lost,
            peer_jitter_ms: self.peer_jitter.map(|j| f64::from(j) * 1000.0 / rate),
            mos: None,
            clock_rate: self.clock_rate,
        }
    }

    /// Packets counted (A.1 `received`, duplicates included), all sources.
    pub fn received(&self) -> u64 {
        let q = self.quality();
        (q.expected as i64 - q.lost).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds `seqs` as a 20 ms PCMU stream (160 timestamp units apart),
    /// arriving exactly on time.
    fn feed(s: &mut RtpStats, t0: Instant, seqs: impl IntoIterator<Item = u16>) {
        for seq in seqs {
            let k = u32::from(seq.wrapping_sub(1000));
            s.on_rtp(seq, k * 160, 7, 8000, true, t0 + MS * (k * 20));
        }
    }

    #[test]
    fn a1_probation_then_counting() {
        let mut s = RtpStats::new();
        let t = Instant::now();
        assert_eq!(s.on_rtp(10, 0, 1, 8000, true, t), SeqVerdict::Probation);
        assert_eq!(s.quality().expected, 0);
        assert_eq!(s.on_rtp(11, 160, 1, 8000, true, t), SeqVerdict::InOrder);
        assert_eq!(s.on_rtp(12, 320, 1, 8000, true, t), SeqVerdict::InOrder);
        // The first packet is not counted (A.1): base is 11.
        assert_eq!(s.extended_max(), Some(12));
        assert_eq!((s.quality().expected, s.quality().lost), (2, 0));
        // Out of sequence while on probation: probation restarts.
        let mut s = RtpStats::new();
        s.on_rtp(10, 0, 1, 8000, true, t);
        assert_eq!(s.on_rtp(20, 0, 1, 8000, true, t), SeqVerdict::Probation);
        assert_eq!(s.on_rtp(21, 0, 1, 8000, true, t), SeqVerdict::InOrder);
    }

    /// Every 10th packet missing: 1000 sent (seq 1000..2000), 100 lost,
    /// of which the ones after the first counted packet are expected.
    #[test]
    fn a3_loss_every_tenth() {
        let mut s = RtpStats::new();
        let t0 = Instant::now();
        feed(&mut s, t0, (1000u16..2000).filter(|q| q % 10 != 9));
        s.roll_interval();
        let q = s.quality();
        // Counted from 1001 (1000 is probation) to 1998: 998 expected,
        // 99 missing (1009, 1019, ..., 1989; 1999 is past the highest).
        assert_eq!(q.expected, 998);
        assert_eq!(q.lost, 99);
        // 99/998 of 256 = 25.39 → 25.
        assert_eq!(q.fraction_lost, 25);
        assert_eq!((q.duplicates, q.reordered), (0, 0));
        assert!(q.jitter_ms.abs() < 1e-9, "on-time stream: {}", q.jitter_ms);
    }

    #[test]
    fn a1_wrap_at_65535() {
        let mut s = RtpStats::new();
        let t0 = Instant::now();
        let seqs: Vec<u16> = (0..400u32).map(|k| (65_400 + k) as u16).collect();
        for (k, &seq) in seqs.iter().enumerate() {
            s.on_rtp(
                seq,
                k as u32 * 160,
                9,
                8000,
                true,
                t0 + MS * (k as u32 * 20),
            );
        }
        // Base 65401, highest 65400 + 399 = 65799 → extended 65536 + 263.
        assert_eq!(s.extended_max(), Some(65_536 + 263));
        let q = s.quality();
        assert_eq!((q.expected, q.lost), (399, 0));
    }

    #[test]
    fn duplicates_and_reordering() {
        let mut s = RtpStats::new();
        let t0 = Instant::now();
        feed(
            &mut s,
            t0,
            [1000, 1001, 1002, 1004, 1003, 1003, 1005, 1005, 1002],
        );
        let q = s.quality();
        // 1003 late once (reordered), then again (duplicate); 1005 twice;
        // 1002 again. Received counts duplicates (A.1), so lost goes below
        // zero: expected 5 (1001..=1005), received 8 (1000 is probation).
        assert_eq!(q.reordered, 1);
        assert_eq!(q.duplicates, 3);
        assert_eq!(q.expected, 5);
        assert_eq!(q.lost, 5 - 8);
    }

    #[test]
    fn large_jump_is_a_restart_only_when_confirmed() {
        let mut s = RtpStats::new();
        let t0 = Instant::now();
        feed(&mut s, t0, 1000..1010);
        assert_eq!(s.on_rtp(30_000, 0, 7, 8000, true, t0), SeqVerdict::Jump);
        assert_eq!(s.quality().expected, 9, "a lone jump is not counted");
        assert_eq!(
            s.on_rtp(30_001, 160, 7, 8000, true, t0),
            SeqVerdict::InOrder
        );
        s.on_rtp(30_002, 320, 7, 8000, true, t0);
        let q = s.quality();
        assert_eq!((q.expected, q.lost), (9 + 2, 0));
    }

    #[test]
    fn ssrc_change_keeps_totals() {
        let mut s = RtpStats::new();
        let t0 = Instant::now();
        feed(&mut s, t0, (1000u16..1020).filter(|q| *q != 1010));
        assert_eq!(s.quality().lost, 1);
        for k in 0..10u16 {
            s.on_rtp(500 + k, 0, 99, 8000, true, t0);
        }
        assert_eq!(s.ssrc(), Some(99));
        let q = s.quality();
        assert_eq!((q.expected, q.lost), (19 + 9, 1));
    }

    /// A.8 with a known pattern: packets alternately on time and 10 ms
    /// late. |D| is 80 timestamp units at every step after the first, so
    /// J converges to 80 units = 10 ms at 8 kHz:
    /// J_n = 80 (1 − (15/16)^(n−1)), n = packets with a predecessor.
    #[test]
    fn a8_jitter_known_value() {
        let mut s = RtpStats::new();
        let t0 = Instant::now();
        let n = 200u32;
        for k in 0..n {
            let late = if k % 2 == 1 { 10 } else { 0 };
            s.on_rtp(k as u16, k * 160, 3, 8000, true, t0 + MS * (k * 20 + late));
        }
        let expect_units = 80.0 * (1.0 - (15.0f64 / 16.0).powi(n as i32 - 1));
        let q = s.quality();
        assert!(
            (q.jitter_ms - expect_units / 8.0).abs() < 1e-6,
            "{} vs {}",
            q.jitter_ms,
            expect_units / 8.0
        );
        assert!((q.jitter_ms - 10.0).abs() < 0.01);
        assert_eq!(q.clock_rate, 8000);
        // Same pattern for opus at 48 kHz: 10 ms = 480 units, still 10 ms.
        let mut o = RtpStats::new();
        for k in 0..n {
            let late = if k % 2 == 1 { 10 } else { 0 };
            o.on_rtp(
                k as u16,
                k * 960,
                3,
                48_000,
                true,
                t0 + MS * (k * 20 + late),
            );
        }
        assert!((o.quality().jitter_ms - 10.0).abs() < 0.01);
        assert_eq!(o.quality().clock_rate, 48_000);
    }

    #[test]
    fn event_packets_leave_jitter_alone() {
        let mut s = RtpStats::new();
        let t0 = Instant::now();
        for k in 0..50u32 {
            // One timestamp for the whole event, as RFC 4733 sends it.
            s.on_rtp(k as u16, 4000, 3, 8000, false, t0 + MS * (k * 50));
        }
        assert_eq!(s.quality().jitter_ms, 0.0);
        assert_eq!(s.quality().expected, 49);
    }

    #[test]
    fn fraction_lost_per_interval() {
        let mut s = RtpStats::new();
        let t0 = Instant::now();
        // Interval 1: 1000..1100 with every 4th missing; interval 2: none.
        feed(&mut s, t0, (1000u16..1100).filter(|q| q % 4 != 3));
        // 1001..=1098 expected (98), 25 missing (1003..1099 step 4 less 1099).
        assert_eq!(s.quality().lost, 24);
        assert_eq!(s.quality().fraction_lost, 0, "no interval closed yet");
        s.roll_interval();
        assert_eq!(s.quality().fraction_lost, (24u64 * 256 / 98) as u8);
        assert_eq!(s.quality().fraction_lost, 62);
        feed(&mut s, t0, 1100u16..1200);
        assert_eq!(s.quality().fraction_lost, 62, "kept until the next closes");
        s.roll_interval();
        // 1099 lost of 101 expected (1099..=1199): 256 / 101 = 2.
        assert_eq!(s.quality().fraction_lost, 2);
        assert_eq!(s.quality().lost, 25, "1099 is lost now");
        s.roll_interval();
        assert_eq!(s.quality().fraction_lost, 2, "an empty interval keeps it");
    }

    #[test]
    fn fraction_lost_is_not_published_mid_interval() {
        let mut s = RtpStats::new();
        let t0 = Instant::now();
        feed(&mut s, t0, 1000u16..1050);
        s.roll_interval();
        assert_eq!(s.quality().fraction_lost, 0);
        // One lost and one received just after the interval closed: the
        // running interval reads 1 of 2 (50%), which must not show.
        feed(&mut s, t0, [1051u16]);
        assert_eq!(s.quality().lost, 1);
        assert_eq!(s.quality().fraction_lost, 0);
        feed(&mut s, t0, 1052u16..1100);
        s.roll_interval();
        // 1 lost of 50 expected (1050..=1099).
        assert_eq!(s.quality().fraction_lost, (256 / 50) as u8);
    }

    fn rr(lsr: u32, dlsr: u32, fraction: u8, jitter: u32) -> Vec<u8> {
        let mut v = vec![0x81, 201, 0, 7, 0, 0, 0, 1];
        v.extend_from_slice(&5u32.to_be_bytes()); // source
        v.push(fraction);
        v.extend_from_slice(&[0, 0, 3]); // cumulative lost
        v.extend_from_slice(&1234u32.to_be_bytes());
        v.extend_from_slice(&jitter.to_be_bytes());
        v.extend_from_slice(&lsr.to_be_bytes());
        v.extend_from_slice(&dlsr.to_be_bytes());
        v
    }

    /// RFC 3550 §6.4.1, figure 2: A = 0xb710:8000 (46864.500 s),
    /// LSR = 0xb705:2000 (46853.125 s), DLSR = 0x0005:4000 (5.250 s),
    /// RTT = 0x0006:2000 (6.125 s).
    #[test]
    fn rtt_rfc_example() {
        assert_eq!(
            rtt_units(0xb710_8000, 0xb705_2000, 0x0005_4000),
            Some(0x0006_2000)
        );
        assert_eq!(rtt_units(0xb710_8000, 0, 0x0005_4000), None);
        assert_eq!(rtt_units(0x0000_1000, 0x0000_2000, 0), None, "negative");
    }

    #[test]
    fn rtcp_report_block_gives_rtt_loss_and_jitter() {
        let mut s = RtpStats::new();
        let t0 = Instant::now();
        // The relay forwards an SR (NTP middle 0xb705_2000) at t0; the peer
        // answers 130 ms later having held it 30 ms (DLSR 0x0000_07ae ≈
        // 30.0 ms): RTT ≈ 100 ms.
        s.on_sr_forwarded(0xb705_2000, t0);
        let seen = s.on_rtcp(&rr(0xb705_2000, 1966, 64, 160), t0 + MS * 130);
        assert!(seen.report && seen.sr_ntp_middle.is_none());
        let q = s.quality();
        let rtt = q.rtt_ms.unwrap();
        assert!((rtt - 100.0).abs() < 0.1, "{rtt}");
        assert_eq!(q.peer_fraction_lost, Some(64));
        assert_eq!(q.peer_jitter_ms, Some(20.0));
        // An unknown LSR gives no RTT; garbage changes nothing.
        let mut u = RtpStats::new();
        u.on_rtcp(&rr(0x1234_5678, 0, 0, 0), t0);
        assert_eq!(u.quality().rtt_ms, None);
        assert_eq!(u.on_rtcp(&[0x81, 201, 0, 50], t0), RtcpSeen::default());
        assert_eq!(u.on_rtcp(&[], t0), RtcpSeen::default());
    }

    #[test]
    fn resume_continues_the_counts() {
        let mut s = RtpStats::new();
        let t0 = Instant::now();
        feed(&mut s, t0, (1000u16..1100).filter(|q| q % 10 != 9));
        let before = s.quality();
        let mut r = RtpStats::resume(&before);
        assert_eq!(r.quality(), before);
        // After the restart the stream goes on: 1100..1200, all there.
        feed(&mut r, t0, 1100u16..1200);
        let after = r.quality();
        // The probation packet (1100) is not counted; 1099 falls between
        // the runs and is not seen as lost.
        assert_eq!(after.expected, before.expected + 99);
        assert_eq!(after.lost, before.lost);
    }

    #[test]
    fn sr_ntp_middle_is_reported() {
        let mut sr = vec![0x80, 200, 0, 6, 0, 0, 0, 9];
        sr.extend_from_slice(&[0xaa, 0xbb, 0xb7, 0x05, 0x20, 0x00, 0xcc, 0xdd]);
        sr.extend_from_slice(&[0; 12]);
        let mut s = RtpStats::new();
        let seen = s.on_rtcp(&sr, Instant::now());
        assert_eq!(seen.sr_ntp_middle, Some(0xb705_2000));
        assert!(!seen.report);
    }
}
