//! RFC 3263 for trunk gateways, the sans-IO half: what to look up, the
//! cache of answers by TTL, and the order in which a call tries the
//! targets (RFC 2782). The lookups themselves run off the core
//! (`crate::dns`, a resolver thread the server owns): the core hands out
//! [`DnsQuery`]s and takes [`DnsAnswer`]s back as events.
//!
//! - `name:port`: A/AAAA of `name` only (RFC 3263 §4.2).
//! - `name`: SRV `_sip._udp.name` (§4.2; NAPTR is skipped, as tern
//!   speaks UDP to gateways), each target's A/AAAA; no SRV: A/AAAA of
//!   `name` on port 5060.
//! - Order ([`order`]): by priority, lowest first; within a priority by
//!   RFC 2782's weighted random selection (the core's seeded RNG), every
//!   address of a target before the next target.
//! - Cache: an answer lives its TTL (clamped to [`MIN_TTL`]..[`MAX_TTL`])
//!   and is looked up again when it runs out; a failed lookup is retried
//!   after [`RETRY_AFTER`] and an older answer is kept meanwhile. A name
//!   never answered yet has no targets: calls skip it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;

/// Shortest time an answer is kept.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest time an answer is kept.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Wait after a failed lookup before the next.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// A name to resolve: `port` `Some` means A/AAAA only on that port,
/// `None` SRV first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsQuery {
    /// The host name (lowercase, no trailing dot).
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
}

/// One SRV target (or the single A/AAAA "target" of a name without SRV
/// or with an explicit port: priority and weight 0), with its resolved
/// addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    /// Lower is tried first (RFC 2782).
    pub priority: u16,
    /// Relative share within a priority (RFC 2782).
    pub weight: u16,
    /// The target's addresses with the port.
    pub addrs: Vec<SocketAddr>,
}

/// What a lookup found: targets and how long they may be kept, or why
/// nothing was found.
#[derive(Debug, Clone)]
pub struct DnsAnswer {
    /// What was asked.
    pub query: DnsQuery,
    /// Targets and the smallest TTL among the records used, or an error
    /// text (logs).
    pub result: Result<(Vec<SrvTarget>, Duration), String>,
}

/// The targets in the order a call tries them (RFC 2782): priorities
/// ascending; within one, repeatedly pick a target at random with
/// probability weight / (sum of the weights left), where zero-weight
/// targets get a small chance (they are placed first in the running sum,
/// as RFC 2782 says); each target's addresses in their order.
pub fn order(targets: &[SrvTarget], rng: &mut StdRng) -> Vec<SocketAddr> {
    let mut by_prio: BTreeMap<u16, Vec<&SrvTarget>> = BTreeMap::new();
    for t in targets {
        by_prio.entry(t.priority).or_default().push(t);
    }
    let mut out = Vec::new();
    for (_, mut left) in by_prio {
        // Zero-weight ones first (RFC 2782).
        left.sort_by_key(|t| t.weight != 0);
        while !left.is_empty() {
            let sum: u32 = left.iter().map(|t| u32::from(t.weight)).sum();
            let pick = rng.gen_range(0..=sum);
            let mut run = 0u32;
            let i = left
                .iter()
                .position(|t| {
                    run += u32::from(t.weight);
                    run >= pick
                })
                .unwrap_or(0);
            let t = left.remove(i);
            out.extend(t.addrs.iter().copied());
        }
    }
    out
}

#[derive(Debug)]
struct Entry {
    targets: Vec<SrvTarget>,
    /// When to look it up again.
    refresh: Instant,
    /// A query is out.
    asked: bool,
}

/// Answers by name, and which names need a lookup.
#[derive(Debug, Default)]
pub struct DnsCache {
    entries: BTreeMap<DnsQuery, Entry>,
}

impl DnsCache {
    /// Adds `q` to the names kept fresh (looked up at the next
    /// [`DnsCache::poll_query`]).
    pub fn want(&mut self, q: DnsQuery, now: Instant) {
        self.entries.entry(q).or_insert(Entry {
            targets: Vec::new(),
            refresh: now,
            asked: false,
        });
    }

    /// A name due for a lookup at `now` (marked as asked).
    pub fn poll_query(&mut self, now: Instant) -> Option<DnsQuery> {
        let (q, e) = self
            .entries
            .iter_mut()
            .find(|(_, e)| !e.asked && e.refresh <= now)?;
        e.asked = true;
        Some(q.clone())
    }

    /// The earliest instant a lookup falls due (names asked excluded).
    pub fn next_refresh(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| !e.asked)
            .map(|e| e.refresh)
            .min()
    }

    /// Takes an answer: kept for its TTL, or (error) the older targets
    /// kept and a retry after [`RETRY_AFTER`].
    pub fn answer(&mut self, a: DnsAnswer, now: Instant) {
        let Some(e) = self.entries.get_mut(&a.query) else {
            return;
        };
        e.asked = false;
        match a.result {
            Ok((targets, ttl)) if targets.iter().any(|t| !t.addrs.is_empty()) => {
                e.targets = targets;
                e.refresh = now + ttl.clamp(MIN_TTL, MAX_TTL);
            }
            _ => e.refresh = now + RETRY_AFTER,
        }
    }

    /// The targets of `q` known now (empty if never answered).
    pub fn targets(&self, q: &DnsQuery) -> &[SrvTarget] {
        self.entries.get(q).map_or(&[], |e| e.targets.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn t(priority: u16, weight: u16, port: u16) -> SrvTarget {
        SrvTarget {
            priority,
            weight,
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        }
    }

    #[test]
    fn priority_first_then_weights() {
        let mut rng = StdRng::seed_from_u64(7);
        let targets = [t(20, 100, 2), t(10, 0, 1)];
        for _ in 0..20 {
            let o = order(&targets, &mut rng);
            assert_eq!(o.iter().map(|a| a.port()).collect::<Vec<_>>(), [1, 2]);
        }
        // 90/10 within one priority: the heavy one first about 90% of
        // the time (bounded: 1,000 draws, > 80% and < 97%).
        let targets = [t(10, 10, 2), t(10, 90, 1)];
        let heavy = (0..1000)
            .filter(|_| order(&targets, &mut rng)[0].port() == 1)
            .count();
        assert!((800..970).contains(&heavy), "heavy first {heavy}/1000");
        // Both always present.
        assert_eq!(order(&targets, &mut rng).len(), 2);
    }

    #[test]
    fn cache_refreshes_by_ttl_and_keeps_old_answers_on_error() {
        let now = Instant::now();
        let q = DnsQuery {
            host: "carrier.test".into(),
            port: None,
        };
        let mut c = DnsCache::default();
        c.want(q.clone(), now);
        assert_eq!(c.poll_query(now), Some(q.clone()));
        assert_eq!(c.poll_query(now), None, "asked once");
        c.answer(
            DnsAnswer {
                query: q.clone(),
                result: Ok((vec![t(10, 1, 5090)], Duration::from_secs(30))),
            },
            now,
        );
        assert_eq!(c.targets(&q).len(), 1);
        assert_eq!(c.next_refresh(), Some(now + Duration::from_secs(30)));
        let later = now + Duration::from_secs(30);
        assert_eq!(c.poll_query(later), Some(q.clone()));
        c.answer(
            DnsAnswer {
                query: q.clone(),
                result: Err("timeout".into()),
            },
            later,
        );
        assert_eq!(c.targets(&q).len(), 1, "old answer kept");
        assert_eq!(c.next_refresh(), Some(later + RETRY_AFTER));
    }
}
