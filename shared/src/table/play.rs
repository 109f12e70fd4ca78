//! An ng `play DTMF` request for one leg, carried under the slot's
//! configuration seqlock in the last four words of the leg's programmed
//! block (`Slot::sec[leg][36..40]`, always zero before this existed, so
//! a table of the same layout reads "no request").
//!
//! ```text
//! word 0: id (bits 0..32) | count (32..40) | volume (40..48) | valid (48)
//! word 1: events, 4 bits each, the first in bits 0..4 (16 at most)
//! word 2: duration ms (bits 0..16) | pause ms (16..32)
//! word 3: zero
//! ```

/// Words of the block a request takes.
pub(super) const PLAY_WORDS: usize = 4;
/// Where in the leg's programmed block ([`super::secure`]'s words).
pub(super) const PLAY_AT: usize = 36;

/// Most events one request plays.
pub const MAX_PLAY_EVENTS: usize = 16;

/// Events played into what a leg's peer sends, so the other leg's peer
/// receives them as RFC 4733 telephone-events (ng `play DTMF`). The
/// worker plays a request once per `id`: the same request published
/// again (any later offer or answer) is not played again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DtmfPlay {
    /// Request number, new for each `play DTMF`; never 0.
    pub id: u32,
    /// RFC 4733 §3.2 event codes (0–9, `*` 10, `#` 11, A–D 12–15),
    /// `count` of them.
    pub events: [u8; MAX_PLAY_EVENTS],
    pub count: u8,
    /// Each event's length, ms.
    pub duration_ms: u16,
    /// Gap between events, ms.
    pub pause_ms: u16,
    /// Power level, −dBm0 (RFC 4733 §2.3.4: 0–63).
    pub volume: u8,
}

impl DtmfPlay {
    /// The events to play, in order.
    pub fn events(&self) -> &[u8] {
        &self.events[..usize::from(self.count).min(MAX_PLAY_EVENTS)]
    }
}

pub(super) fn encode(p: &Option<DtmfPlay>, w: &mut [u64]) {
    let Some(p) = p else {
        w.iter_mut().for_each(|x| *x = 0);
        return;
    };
    let mut ev = 0u64;
    for (i, e) in p.events().iter().enumerate() {
        ev |= u64::from(e & 0xf) << (4 * i);
    }
    w[0] = u64::from(p.id)
        | u64::from(p.count.min(MAX_PLAY_EVENTS as u8)) << 32
        | u64::from(p.volume & 0x3f) << 40
        | 1 << 48;
    w[1] = ev;
    w[2] = u64::from(p.duration_ms) | u64::from(p.pause_ms) << 16;
    w[3] = 0;
}

pub(super) fn decode(w: &[u64]) -> Option<DtmfPlay> {
    if w[0] >> 48 & 1 == 0 {
        return None;
    }
    let count = ((w[0] >> 32) as u8).min(MAX_PLAY_EVENTS as u8);
    let mut events = [0u8; MAX_PLAY_EVENTS];
    for (i, e) in events.iter_mut().enumerate().take(usize::from(count)) {
        *e = (w[1] >> (4 * i) & 0xf) as u8;
    }
    Some(DtmfPlay {
        id: w[0] as u32,
        events,
        count,
        duration_ms: w[2] as u16,
        pause_ms: (w[2] >> 16) as u16,
        volume: (w[0] >> 40 & 0x3f) as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let mut events = [0u8; MAX_PLAY_EVENTS];
        events[..4].copy_from_slice(&[1, 11, 0, 15]);
        let req = DtmfPlay {
            id: 0xdead_beef,
            events,
            count: 4,
            duration_ms: 250,
            pause_ms: 60,
            volume: 10,
        };
        let p = Some(req);
        let mut w = [7u64; PLAY_WORDS];
        encode(&p, &mut w);
        assert_eq!(decode(&w), p);
        assert_eq!(req.events(), &[1, 11, 0, 15]);
        encode(&None, &mut w);
        assert_eq!(w, [0; PLAY_WORDS]);
        assert_eq!(decode(&w), None);
    }
}
