//! Per-stream sequence accounting, sans-IO: duplicates and reordering by
//! RTP sequence number (extended to 64 bits across wraps), with a window
//! of the last [`WINDOW`] sequence numbers for duplicate detection.

/// How far behind the newest sequence number a duplicate is still
/// recognised. Older packets count as reordered (and received).
pub const WINDOW: u64 = 1024;

/// What one stream's receiver saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqStats {
    /// Highest extended sequence number seen; `None` before the first.
    highest: Option<u64>,
    /// Bit `s % WINDOW` set when `s` (within the window) was seen.
    seen: [u64; (WINDOW / 64) as usize],
    /// Every packet, duplicates included.
    pub received: u64,
    /// Packets whose sequence number was already seen.
    pub duplicates: u64,
    /// Packets older than the newest one seen before them (not duplicates).
    pub reordered: u64,
}

impl Default for SeqStats {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqStats {
    pub const fn new() -> Self {
        SeqStats {
            highest: None,
            seen: [0; (WINDOW / 64) as usize],
            received: 0,
            duplicates: 0,
            reordered: 0,
        }
    }

    /// Packets received once (duplicates not counted).
    pub fn unique(&self) -> u64 {
        self.received - self.duplicates
    }

    fn bit(&mut self, s: u64) -> (usize, u64) {
        let i = s % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// The extended sequence number of `seq` closest to `highest`.
    pub fn extend(highest: u64, seq: u16) -> u64 {
        let base = highest & !0xFFFF;
        let cands = [
            base.wrapping_sub(0x1_0000) | seq as u64,
            base | seq as u64,
            (base + 0x1_0000) | seq as u64,
        ];
        *cands
            .iter()
            .filter(|&&c| c <= highest + 0x8000 && c + 0x8000 >= highest)
            .min_by_key(|&&c| c.abs_diff(highest))
            .unwrap_or(&(base | seq as u64))
    }

    /// Accounts one received packet with sequence number `seq`.
    pub fn on_packet(&mut self, seq: u16) {
        self.received += 1;
        let Some(h) = self.highest else {
            // Leave room below the first packet for reordered ones.
            let s = 0x1_0000 | seq as u64;
            self.highest = Some(s);
            let (w, b) = self.bit(s);
            self.seen[w] |= b;
            return;
        };
        let s = Self::extend(h, seq);
        if s > h {
            let adv = s - h;
            if adv >= WINDOW {
                self.seen = [0; (WINDOW / 64) as usize];
            } else {
                for x in h + 1..s {
                    let (w, b) = self.bit(x);
                    self.seen[w] &= !b;
                }
            }
            let (w, b) = self.bit(s);
            self.seen[w] |= b;
            self.highest = Some(s);
        } else if h - s < WINDOW {
            let (w, b) = self.bit(s);
            if self.seen[w] & b != 0 {
                self.duplicates += 1;
            } else {
                self.seen[w] |= b;
                self.reordered += 1;
            }
        } else {
            self.reordered += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_across_wrap() {
        let mut s = SeqStats::new();
        for i in 0..70_000u32 {
            s.on_packet((65_000u32.wrapping_add(i) & 0xFFFF) as u16);
        }
        assert_eq!((s.received, s.duplicates, s.reordered), (70_000, 0, 0));
    }

    #[test]
    fn duplicates_and_reordering() {
        let mut s = SeqStats::new();
        for q in [1u16, 2, 4, 3, 3, 5, 5, 2, 6] {
            s.on_packet(q);
        }
        assert_eq!(s.received, 9);
        assert_eq!(s.duplicates, 3, "3, 5 and 2 again");
        assert_eq!(s.reordered, 1, "3 after 4");
        assert_eq!(s.unique(), 6);
    }

    #[test]
    fn reordered_across_wrap_and_gaps() {
        let mut s = SeqStats::new();
        for q in [65_534u16, 1, 65_535, 0, 2] {
            s.on_packet(q);
        }
        assert_eq!((s.duplicates, s.reordered, s.unique()), (0, 2, 5));
        // A big jump clears the window: no false duplicate afterwards.
        s.on_packet(2 + 3000);
        s.on_packet(2 + 3000 - 1024 + 1);
        assert_eq!((s.duplicates, s.reordered), (0, 3));
        s.on_packet(2 + 3000);
        assert_eq!(s.duplicates, 1);
    }

    #[test]
    fn extend_picks_nearest() {
        assert_eq!(SeqStats::extend(0x1_FFFF, 0), 0x2_0000);
        assert_eq!(SeqStats::extend(0x2_0000, 0xFFFF), 0x1_FFFF);
        assert_eq!(SeqStats::extend(0x1_0005, 3), 0x1_0003);
    }
}
