//! The observe stage of the packet path for one slot, sans-IO: what a
//! worker does with each accepted packet for quality and DTMF.
//!
//! - RTP updates the receiving leg's RFC 3550 statistics ([`RtpStats`]) at
//!   its payload type's clock rate ([`clock_rate_of`]); a packet of the
//!   leg's telephone-event type goes to its [`DtmfDetector`] instead of the
//!   jitter estimate (an event repeats one timestamp, RFC 4733 §2.3.5).
//! - RTCP feeds the receiving leg's report-block statistics (the peer's
//!   loss and jitter, RTT); an SR that is forwarded is remembered by the
//!   other leg, whose peer will echo it as LSR (RFC 3550 §6.4.1).
//! - [`SlotFeed::publish`] gives both legs' statistics in the slot table's
//!   shape, with the E-model MOS; the worker writes them to its counter
//!   lines.
//!
//! No allocation, no I/O, no clock read: the caller hands in its clock
//! (`now`, monotonic, for the statistics; `at_ms`, Unix ms, stamped into
//! DTMF events) and takes completed key presses with
//! [`SlotFeed::poll_dtmf`].

use std::time::Instant;

use tern_shared::rtp::RtpPacket;
use tern_shared::table::{DtmfEvent, LegConfig, LegQuality};

use crate::quality::dtmf::DtmfDetector;
use crate::quality::jitter::{static_clock_rate, PacketInfo};
use crate::quality::mos::mos_g711;
use crate::quality::stats::{RtpStats, DEFAULT_CLOCK_RATE};

/// The clock rate (Hz) of payload type `pt` sent by a leg configured as
/// `cfg`: RFC 3551 §6's for static types, else the leg's negotiated
/// codec's (`cfg.clock_rate`, [`DEFAULT_CLOCK_RATE`] when 0). The leg's
/// telephone-event type runs at the codec's rate (RFC 4733 §2.1).
pub fn clock_rate_of(pt: u8, cfg: &LegConfig) -> u32 {
    let leg = if cfg.clock_rate == 0 {
        DEFAULT_CLOCK_RATE
    } else {
        cfg.clock_rate
    };
    if Some(pt) == cfg.dtmf_pt {
        return leg;
    }
    static_clock_rate(pt).unwrap_or(leg)
}

/// One leg's statistics in the slot table's shape, as
/// [`SlotFeed::publish`] gives them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegReport {
    /// RFC 3550 statistics, with the E-model MOS once a packet was
    /// expected (`mos` is `None` before).
    pub quality: LegQuality,
    /// The SSRC being measured (the peer's, as received).
    pub ssrc: Option<u32>,
}

/// Receiver statistics and DTMF detection of one slot's two legs: leg `i`
/// is what leg `i`'s peer sends, as the relay receives it.
#[derive(Debug, Default)]
pub struct SlotFeed {
    stats: [RtpStats; 2],
    dtmf: [DtmfDetector; 2],
    /// Statistics changed since they were last published.
    dirty: bool,
}

impl SlotFeed {
    /// Nothing received on either leg.
    pub fn new() -> SlotFeed {
        SlotFeed::default()
    }

    /// Statistics that continue from `prev`, what a previous worker
    /// published for legs 0 and 1 (see [`RtpStats::resume`]); DTMF
    /// detection starts afresh.
    pub fn resume(prev: &[LegQuality; 2]) -> SlotFeed {
        SlotFeed {
            stats: [RtpStats::resume(&prev[0]), RtpStats::resume(&prev[1])],
            ..SlotFeed::default()
        }
    }

    /// Feeds an accepted RTP packet received on `leg` (0 or 1) at `now`:
    /// `hdr` is its header as the peer sent it (before any SSRC
    /// rewriting), `pkt` the whole packet (only its payload is read, for a
    /// telephone-event), `cfg` the leg's configuration (clock rate,
    /// telephone-event type), `at_ms` Unix time in ms for DTMF events.
    ///
    /// Returns true when it was a telephone-event packet: key presses it
    /// completed are then taken with [`Self::poll_dtmf`]. A malformed event
    /// is counted by the detector, not reported.
    #[inline]
    pub fn on_rtp(
        &mut self,
        leg: usize,
        hdr: &PacketInfo,
        pkt: &[u8],
        cfg: &LegConfig,
        now: Instant,
        at_ms: u64,
    ) -> bool {
        let l = leg & 1;
        self.dirty = true;
        let event = cfg.dtmf_pt == Some(hdr.payload_type);
        let rate = clock_rate_of(hdr.payload_type, cfg);
        self.stats[l].on_rtp(hdr.seq, hdr.timestamp, hdr.ssrc, rate, !event, now);
        if event {
            if let Ok(p) = RtpPacket::new_checked(pkt) {
                // Malformed events are counted by the detector.
                let _ = self.dtmf[l].on_packet(hdr.ssrc, hdr.timestamp, p.payload(), at_ms);
            }
        }
        event
    }

    /// Feeds an accepted compound RTCP packet `pkt` received on `leg` at
    /// `now`. `forwarded`: it is being sent on to the other leg's peer, so
    /// an SR in it is remembered there for RTT (RFC 3550 §6.4.1).
    #[inline]
    pub fn on_rtcp(&mut self, leg: usize, pkt: &[u8], forwarded: bool, now: Instant) {
        let l = leg & 1;
        self.dirty = true;
        let seen = self.stats[l].on_rtcp(pkt, now);
        if let (Some(m), true) = (seen.sr_ntp_middle, forwarded) {
            self.stats[l ^ 1].on_sr_forwarded(m, now);
        }
    }

    /// The next key press completed on `leg`, oldest first.
    #[inline]
    pub fn poll_dtmf(&mut self, leg: usize) -> Option<DtmfEvent> {
        self.dtmf[leg & 1].poll()
    }

    /// Reports `leg`'s key press in progress as ended at `at_ms` (Unix
    /// ms): the stream ended with its end packets lost. Take it with
    /// [`Self::poll_dtmf`].
    pub fn flush_dtmf(&mut self, leg: usize, at_ms: u64) {
        self.dtmf[leg & 1].flush(at_ms);
    }

    /// Statistics changed since the last [`Self::publish`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Leg `leg`'s statistics.
    pub fn stats(&self, leg: usize) -> &RtpStats {
        &self.stats[leg & 1]
    }

    /// Leg `leg`'s DTMF detector.
    pub fn dtmf(&self, leg: usize) -> &DtmfDetector {
        &self.dtmf[leg & 1]
    }

    /// Both legs' statistics with the E-model MOS (G.711, one-way delay
    /// half the RTT, RFC 3550 A.3 cumulative loss); `roll` first closes
    /// the loss interval (A.3 `fraction lost`). Clears [`Self::is_dirty`].
    pub fn publish(&mut self, roll: bool) -> [LegReport; 2] {
        self.dirty = false;
        std::array::from_fn(|leg| {
            let st = &mut self.stats[leg];
            if roll {
                st.roll_interval();
            }
            let mut v = st.quality();
            if v.expected > 0 {
                let loss = v.lost.max(0) as f64 / v.expected as f64;
                let one_way = v.rtt_ms.map_or(0.0, |r| r / 2.0);
                v.mos = Some(mos_g711(one_way, loss, v.jitter_ms));
            }
            LegReport {
                quality: v,
                ssrc: st.ssrc(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);
    const DTMF_PT: u8 = 101;

    fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0x80, pt];
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&ssrc.to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    fn info(pkt: &[u8]) -> PacketInfo {
        let p = RtpPacket::new_checked(pkt).unwrap();
        PacketInfo {
            seq: p.sequence_number(),
            timestamp: p.timestamp(),
            ssrc: p.ssrc(),
            marker: p.marker(),
            payload_type: p.payload_type() & 0x7f,
            is_event: false,
        }
    }

    fn cfg() -> LegConfig {
        LegConfig {
            dtmf_pt: Some(DTMF_PT),
            ..LegConfig::default()
        }
    }

    /// Feeds `pkt` to `leg` of `f` at `t0 + ms`.
    fn feed(f: &mut SlotFeed, leg: usize, pkt: &[u8], t0: Instant, ms: u64) -> bool {
        let t = t0 + Duration::from_millis(ms);
        f.on_rtp(leg, &info(pkt), pkt, &cfg(), t, 1_000_000 + ms)
    }

    #[test]
    fn clock_rates() {
        let mut c = LegConfig::default();
        assert_eq!(clock_rate_of(0, &c), 8000);
        assert_eq!(clock_rate_of(111, &c), DEFAULT_CLOCK_RATE);
        c.clock_rate = 48_000;
        c.dtmf_pt = Some(DTMF_PT);
        assert_eq!(clock_rate_of(111, &c), 48_000);
        assert_eq!(clock_rate_of(DTMF_PT, &c), 48_000);
        // Static types keep RFC 3551's rate whatever the codec.
        assert_eq!(clock_rate_of(8, &c), 8000);
        assert_eq!(clock_rate_of(34, &c), 90_000);
    }

    #[test]
    fn rtp_loss_and_publish() {
        let mut f = SlotFeed::new();
        assert!(!f.is_dirty());
        let t0 = Instant::now();
        // 20 ms PCMU, on time, seq 1000..1050 without 1020 and 1021.
        for seq in (1000u16..1050).filter(|s| !(1020..1022).contains(s)) {
            let k = u32::from(seq - 1000);
            let p = rtp(0, seq, k * 160, 0xabc, &[0; 160]);
            assert!(!feed(&mut f, 0, &p, t0, u64::from(k) * 20));
        }
        assert!(f.is_dirty());
        let [a, b] = f.publish(true);
        assert!(!f.is_dirty());
        // The first packet is not counted (A.1 probation): base 1001.
        assert_eq!((a.quality.expected, a.quality.lost), (49, 2));
        assert_eq!(a.ssrc, Some(0xabc));
        assert_eq!(a.quality.jitter_ms, 0.0, "on time: no jitter");
        // 2 of 49 lost in the closed interval: 256 * 2 / 49.
        assert_eq!(a.quality.fraction_lost, 10);
        let mos = a.quality.mos.unwrap();
        assert!(mos > 1.0 && mos < 4.41, "{mos}");
        // Nothing on the other leg: no MOS.
        assert_eq!((b.quality.expected, b.quality.mos, b.ssrc), (0, None, None));
    }

    #[test]
    fn arrival_jitter_is_measured_but_not_for_events() {
        let t0 = Instant::now();
        let mut f = SlotFeed::new();
        // Every other packet 10 ms late.
        for k in 0..50u16 {
            let p = rtp(0, k, u32::from(k) * 160, 1, &[0; 160]);
            feed(&mut f, 1, &p, t0, u64::from(k) * 20 + u64::from(k % 2) * 10);
        }
        let j = f.publish(false)[1].quality.jitter_ms;
        assert!(j > 5.0 && j < 11.0, "{j}");
        // A telephone event repeats its timestamp: no jitter sample.
        let mut f = SlotFeed::new();
        for k in 0..50u16 {
            let p = rtp(DTMF_PT, k, 8000, 1, &[1, 0, 0, 160]);
            assert!(feed(&mut f, 1, &p, t0, u64::from(k) * 20));
        }
        assert_eq!(f.publish(false)[1].quality.jitter_ms, 0.0);
    }

    #[test]
    fn dtmf_key_press_reported_once() {
        let t0 = Instant::now();
        let mut f = SlotFeed::new();
        let ev = |seq: u16, end: bool, dur: u16| {
            let d = dur.to_be_bytes();
            rtp(
                DTMF_PT,
                seq,
                16_000,
                7,
                &[5, if end { 0x8a } else { 0x0a }, d[0], d[1]],
            )
        };
        assert!(feed(&mut f, 0, &ev(1, false, 160), t0, 0));
        assert!(feed(&mut f, 0, &ev(2, false, 320), t0, 20));
        assert_eq!(f.poll_dtmf(0), None, "not ended yet");
        // The end is sent three times (RFC 4733 §2.5.1.4).
        for (seq, ms) in [(3, 40), (4, 45), (5, 50)] {
            assert!(feed(&mut f, 0, &ev(seq, true, 480), t0, ms));
        }
        let e = f.poll_dtmf(0).unwrap();
        assert_eq!(
            (e.digit, e.event, e.duration, e.rtp_timestamp, e.at_ms),
            ('5', 5, 480, 16_000, 1_000_040)
        );
        assert_eq!(f.poll_dtmf(0), None, "repeated ends are one press");
        assert_eq!(f.poll_dtmf(1), None, "the other leg saw nothing");
        // A malformed event payload is counted, not reported.
        assert!(feed(&mut f, 0, &rtp(DTMF_PT, 6, 24_000, 7, &[1]), t0, 60));
        assert_eq!(f.poll_dtmf(0), None);
        assert_eq!(f.dtmf(0).counters().errors, 1);
        // Audio is no event.
        assert!(!feed(&mut f, 0, &rtp(0, 7, 24_000, 7, &[0; 160]), t0, 80));
    }

    #[test]
    fn dtmf_flush_reports_an_unended_press() {
        let t0 = Instant::now();
        let mut f = SlotFeed::new();
        feed(
            &mut f,
            1,
            &rtp(DTMF_PT, 1, 800, 9, &[11, 0x0a, 0, 160]),
            t0,
            0,
        );
        feed(
            &mut f,
            1,
            &rtp(DTMF_PT, 2, 800, 9, &[11, 0x0a, 1, 64]),
            t0,
            20,
        );
        f.flush_dtmf(1, 42);
        let e = f.poll_dtmf(1).unwrap();
        assert_eq!((e.digit, e.duration, e.at_ms), ('#', 320, 42));
        assert_eq!(f.dtmf(1).counters().ends_lost, 1);
    }

    /// An SR: sender `ssrc`, NTP timestamp whose middle 32 bits are `mid`.
    fn sr(ssrc: u32, mid: u32) -> Vec<u8> {
        let mut b = vec![0x80, 200, 0, 6];
        b.extend_from_slice(&ssrc.to_be_bytes());
        let m = mid.to_be_bytes();
        b.extend_from_slice(&[0, 0, m[0], m[1], m[2], m[3], 0, 0]);
        b.extend_from_slice(&[0; 12]);
        b
    }

    /// An RR with one report block: fraction lost, jitter, LSR, DLSR.
    fn rr(fraction: u8, jitter: u32, lsr: u32, dlsr: u32) -> Vec<u8> {
        let mut b = vec![0x81, 201, 0, 7, 0, 0, 0, 2, 0, 0, 0, 1, fraction, 0, 0, 0];
        b.extend_from_slice(&[0; 4]);
        for w in [jitter, lsr, dlsr] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    #[test]
    fn rtcp_report_blocks_and_rtt() {
        let t0 = Instant::now();
        let mut f = SlotFeed::new();
        let mid = 0x1234_5678;
        // Leg 1's peer sends an SR, forwarded to leg 0's peer at t0...
        f.on_rtcp(1, &sr(2, mid), true, t0);
        assert!(f.is_dirty());
        // ...which echoes it 600 ms later, having held it 500 ms.
        f.on_rtcp(0, &rr(64, 80, mid, 32_768), false, t0 + MS * 600);
        let q = f.publish(false)[0].quality;
        assert_eq!(q.peer_fraction_lost, Some(64));
        assert_eq!(q.peer_jitter_ms, Some(10.0), "80 units at 8 kHz");
        let rtt = q.rtt_ms.unwrap();
        assert!((rtt - 100.0).abs() < 0.1, "{rtt}");
        // An SR that is not forwarded gives no RTT.
        let mut f = SlotFeed::new();
        f.on_rtcp(1, &sr(2, mid), false, t0);
        f.on_rtcp(0, &rr(0, 0, mid, 0), false, t0 + MS * 100);
        assert_eq!(f.publish(false)[0].quality.rtt_ms, None);
    }

    #[test]
    fn resume_carries_counts() {
        let prev = LegQuality {
            expected: 100,
            lost: 3,
            duplicates: 2,
            clock_rate: 8000,
            ..LegQuality::default()
        };
        let mut f = SlotFeed::resume(&[prev, LegQuality::default()]);
        let [a, b] = f.publish(false);
        assert_eq!(
            (a.quality.expected, a.quality.lost, a.quality.duplicates),
            (100, 3, 2)
        );
        assert_eq!(b.quality.expected, 0);
    }
}
