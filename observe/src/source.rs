//! What the HTTP API reads from the shared-memory slot table, in the
//! API's own units. The one place that knows the table's quality contract
//! (`SlotTable::quality`, `call_id`, `dtmf_events`), so a change there is a
//! change here only.

use tern_shared::table::{LegStats, SlotState, SlotTable};

/// Receive-side quality of one leg (RFC 3550 §6.4.1 / A.3 / A.8), as the
/// owning worker computed it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quality {
    /// Packets expected from the extended sequence numbers seen.
    pub expected: u64,
    /// Cumulative packets lost (RFC 3550 A.3; negative with duplicates).
    pub lost: i64,
    /// Fraction lost in the last closed interval, 0.0..=1.0 (the RFC's 8-bit
    /// fixed point divided by 256).
    pub fraction_lost: f64,
    /// Interarrival jitter (RFC 3550 A.8), ms.
    pub jitter_ms: f64,
    /// Duplicate packets.
    pub duplicates: u64,
    /// Packets that arrived out of order.
    pub reordered: u64,
    /// Round-trip time from RTCP LSR/DLSR, ms.
    pub rtt_ms: Option<f64>,
    /// The peer's reported fraction lost (RTCP RR), 0.0..=1.0.
    pub peer_fraction_lost: Option<f64>,
    /// The peer's reported jitter (RTCP RR), ms.
    pub peer_jitter_ms: Option<f64>,
    /// Mean opinion score, 1.0..=4.5 (E-model, ITU-T G.107).
    pub mos: Option<f64>,
    /// RTP clock rate of the leg's media, Hz (0 if not known yet).
    pub clock_rate: u32,
}

/// One RFC 4733 telephone-event seen on a leg.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dtmf {
    /// The leg that received it (0: caller side, 1: callee side).
    pub leg: usize,
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: char,
    /// RFC 4733 §3.2 event code.
    pub event: u8,
    /// Duration in RTP timestamp units.
    pub duration: u32,
    /// Duration in ms (at the leg's clock rate, 8000 Hz if unknown).
    pub duration_ms: f64,
    /// RTP timestamp of the event.
    pub rtp_timestamp: u32,
    /// Unix time the event was taken as ended, ms: its first end packet, or
    /// with every end packet lost the next event's start or the end of the
    /// stream (see `tern_shared::table::DtmfEvent::at_ms`).
    pub at_ms: u64,
}

/// Read access to one relay's slot table, for the API.
pub(crate) struct Source<'a> {
    pub table: &'a SlotTable,
}

impl Source<'_> {
    /// Slots that are Reserved or Active (a call in progress).
    pub fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.table.capacity()).filter(|&id| {
            matches!(
                self.table.state(id),
                SlotState::Active | SlotState::Reserved
            )
        })
    }

    /// Counters of `leg` (0: caller side, 1: callee side) of `slot`: packets,
    /// bytes and drops by reason; all zero for a slot past capacity.
    pub fn stats(&self, slot: u32, leg: usize) -> LegStats {
        self.table.stats(slot, leg).unwrap_or_default()
    }

    /// The Call-ID label the programmer gave the slot.
    pub fn call_id(&self, slot: u32) -> Option<String> {
        self.table.call_id(slot).filter(|s| !s.is_empty())
    }

    /// `None` while the leg has received no RTP.
    pub fn quality(&self, slot: u32, leg: usize) -> Option<Quality> {
        let q = self.table.quality(slot, leg);
        if q.expected == 0 && q.clock_rate == 0 {
            return None;
        }
        Some(Quality {
            expected: q.expected,
            lost: q.lost,
            fraction_lost: f64::from(q.fraction_lost) / 256.0,
            jitter_ms: q.jitter_ms,
            duplicates: q.duplicates,
            reordered: q.reordered,
            rtt_ms: q.rtt_ms,
            peer_fraction_lost: q.peer_fraction_lost.map(|f| f64::from(f) / 256.0),
            peer_jitter_ms: q.peer_jitter_ms,
            mos: q.mos,
            clock_rate: q.clock_rate,
        })
    }

    /// DTMF events of both legs, oldest first.
    pub fn dtmf(&self, slot: u32) -> Vec<Dtmf> {
        let mut out = Vec::new();
        for leg in 0..2 {
            let rate = match self.table.quality(slot, leg).clock_rate {
                0 => 8000,
                r => r,
            };
            for e in self.table.dtmf_events(slot, leg) {
                out.push(Dtmf {
                    leg,
                    digit: e.digit,
                    event: e.event,
                    duration: e.duration,
                    duration_ms: f64::from(e.duration) * 1000.0 / f64::from(rate),
                    rtp_timestamp: e.rtp_timestamp,
                    at_ms: e.at_ms,
                });
            }
        }
        out.sort_by_key(|d| (d.at_ms, d.leg));
        out
    }
}
