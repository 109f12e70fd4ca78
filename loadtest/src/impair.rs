//! Network impairments the generator injects at the sender, sans-IO and
//! reproducible (a seeded RNG): `--loss` drops packets before they are
//! sent, `--reorder` holds a packet back until the next packet of its
//! stream has gone, `--jitter-ms N` delays each packet by a uniform
//! `[0, N]` ms. RTP sequence numbers and timestamps stay nominal (as the
//! packet was generated); only the send time moves, so a receiver (or a
//! jitter buffer) sees exactly the network a real path would show it.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What to inject; probabilities are fractions (0..=1).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImpairConfig {
    /// Probability that a packet is dropped.
    pub loss: f64,
    /// Probability that a packet is swapped with the next one of its
    /// stream.
    pub reorder: f64,
    /// Largest added send delay, ns (uniform in `[0, jitter_ns]`).
    pub jitter_ns: u64,
    /// RNG seed: the same seed gives the same drops, swaps and delays.
    pub seed: u64,
}

struct Queued {
    due: u64,
    order: u64,
    call: usize,
    buf: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.order) == (o.due, o.order)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.due, self.order).cmp(&(o.due, o.order))
    }
}

/// The impairment state of one trial: the RNG, the delay line and one
/// held-back packet per stream.
pub struct Impairer {
    cfg: ImpairConfig,
    rng: StdRng,
    line: BinaryHeap<Reverse<Queued>>,
    held: Vec<Option<(u64, Vec<u8>)>>,
    order: u64,
    /// Packets dropped (`--loss`).
    pub dropped: u64,
    /// Packets held back behind the next one (`--reorder`).
    pub reordered: u64,
}

impl Impairer {
    /// For `calls` streams.
    pub fn new(cfg: ImpairConfig, calls: usize) -> Self {
        Impairer {
            cfg,
            rng: StdRng::seed_from_u64(cfg.seed),
            line: BinaryHeap::new(),
            held: (0..calls).map(|_| None).collect(),
            order: 0,
            dropped: 0,
            reordered: 0,
        }
    }

    /// Packets go through the delay line ([`Self::enqueue`]) rather than
    /// straight out.
    pub fn delays(&self) -> bool {
        self.cfg.reorder > 0.0 || self.cfg.jitter_ns > 0
    }

    /// Whether to drop the next packet generated (counted).
    pub fn drop_next(&mut self) -> bool {
        let d = self.cfg.loss > 0.0 && self.rng.gen::<f64>() < self.cfg.loss;
        self.dropped += u64::from(d);
        d
    }

    fn push(&mut self, due: u64, call: usize, buf: Vec<u8>) {
        self.order += 1;
        self.line.push(Reverse(Queued {
            due,
            order: self.order,
            call,
            buf,
        }));
    }

    /// Queues packet `buf` of stream `call`, generated at `now` (ns).
    pub fn enqueue(&mut self, call: usize, buf: Vec<u8>, now: u64) {
        let due = if self.cfg.jitter_ns > 0 {
            now + self.rng.gen_range(0..=self.cfg.jitter_ns)
        } else {
            now
        };
        if let Some((hdue, hbuf)) = self.held.get_mut(call).and_then(Option::take) {
            // The held packet leaves right after this one.
            self.push(due, call, buf);
            self.push(hdue.max(due), call, hbuf);
            return;
        }
        if self.cfg.reorder > 0.0 && self.rng.gen::<f64>() < self.cfg.reorder {
            if let Some(h) = self.held.get_mut(call) {
                self.reordered += 1;
                *h = Some((due, buf));
                return;
            }
        }
        self.push(due, call, buf);
    }

    /// Lets held packets go (sending stopped: no next packet will come).
    pub fn release_held(&mut self) {
        for call in 0..self.held.len() {
            if let Some((due, buf)) = self.held[call].take() {
                self.push(due, call, buf);
            }
        }
    }

    /// The next packet due at `now`: its stream and bytes.
    pub fn pop_due(&mut self, now: u64) -> Option<(usize, Vec<u8>)> {
        if self.line.peek()?.0.due > now {
            return None;
        }
        self.line.pop().map(|Reverse(q)| (q.call, q.buf))
    }

    /// When the next queued packet is due, ns.
    pub fn next_due(&self) -> Option<u64> {
        self.line.peek().map(|q| q.0.due)
    }

    /// Nothing queued or held.
    pub fn is_empty(&self) -> bool {
        self.line.is_empty() && self.held.iter().all(Option::is_none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(im: &mut Impairer, until: u64) -> Vec<(usize, u8)> {
        let mut v = Vec::new();
        while let Some((c, b)) = im.pop_due(until) {
            v.push((c, b[0]));
        }
        v
    }

    #[test]
    fn loss_is_seeded_and_near_its_rate() {
        let cfg = ImpairConfig {
            loss: 0.1,
            seed: 7,
            ..Default::default()
        };
        let run = || {
            let mut im = Impairer::new(cfg, 1);
            (0..10_000).map(|_| im.drop_next()).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run(), "same seed, same drops");
        let n = a.iter().filter(|d| **d).count();
        assert!((800..1200).contains(&n), "{n} of 10000 at 10 %");
    }

    #[test]
    fn reorder_swaps_with_the_next_packet_of_the_stream() {
        let mut im = Impairer::new(
            ImpairConfig {
                reorder: 1.0,
                seed: 1,
                ..Default::default()
            },
            2,
        );
        // Stream 0 sends 1, 2; stream 1 sends 10 between them: 1 waits for
        // 2, and 10 (held too, with no next packet) leaves at its own time.
        im.enqueue(0, vec![1], 0);
        im.enqueue(1, vec![10], 1);
        im.enqueue(0, vec![2], 2);
        im.release_held();
        assert_eq!(drain(&mut im, 10), vec![(1, 10), (0, 2), (0, 1)]);
        assert!(im.is_empty());
        assert_eq!(im.reordered, 2);
    }

    #[test]
    fn jitter_delays_within_bounds() {
        let mut im = Impairer::new(
            ImpairConfig {
                jitter_ns: 1000,
                seed: 3,
                ..Default::default()
            },
            1,
        );
        for i in 0..100u8 {
            im.enqueue(0, vec![i], 10_000 * u64::from(i));
        }
        let mut max_offset = 0;
        for i in 0..100u64 {
            if i > 0 {
                assert!(drain(&mut im, 10_000 * i - 1).is_empty(), "early: {i}");
            }
            max_offset = max_offset.max(im.next_due().unwrap() - 10_000 * i);
            assert_eq!(drain(&mut im, 10_000 * i + 1000), vec![(0, i as u8)]);
        }
        assert!((500..=1000).contains(&max_offset), "{max_offset}");
        assert!(im.is_empty());
    }
}
