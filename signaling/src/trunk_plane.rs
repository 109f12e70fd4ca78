//! The core's trunk side beyond routing (`crate::trunk`): gateway names
//! resolved by RFC 3263 (`crate::trunk_dns`), registrations
//! (`crate::trunk_register`) and, with the health the B2BUA keeps
//! (`crate::trunk_health`), the gateways a call tries and the probes of
//! the down ones. Sans-IO: the core drives it from its timers and its
//! responses, and hands DNS queries out and answers in.

use std::net::SocketAddr;
use std::time::Instant;

use rand::rngs::StdRng;

use crate::msg::Msg;
use crate::trunk::{Gateway, Trunk};
use crate::trunk_dns::{order, DnsAnswer, DnsCache, DnsQuery};
use crate::trunk_health::{Ctx, Failure, Health};
use crate::trunk_register::{GwNews, Registrar, Registration};

/// One trunk as observers see it (`/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkStatus {
    /// The trunk's name.
    pub name: String,
    /// `None`: the trunk does not register; else whether the binding
    /// holds now.
    pub registered: Option<bool>,
    /// Failed registration attempts since start.
    pub register_failures: u64,
    /// Every gateway address known (static or resolved) and whether it
    /// is up.
    pub gateways: Vec<(SocketAddr, bool)>,
}

/// DNS names, registrations, and the glue to the gateway health.
#[derive(Debug, Default)]
pub(crate) struct TrunkPlane {
    dns: DnsCache,
    /// By trunk index; `None` until started (or when not registering).
    regs: Vec<Option<Registration>>,
}

/// The query that resolves `g`, if it is a name.
fn query_of(g: &Gateway) -> Option<DnsQuery> {
    match g {
        Gateway::Addr(_) => None,
        Gateway::Name { host, port } => Some(DnsQuery {
            host: host.clone(),
            port: *port,
        }),
    }
}

impl TrunkPlane {
    /// Every name gateway of `trunks` is wanted from DNS at `now`.
    pub(crate) fn new(trunks: &[Trunk], now: Instant) -> TrunkPlane {
        let mut p = TrunkPlane::default();
        for q in trunks.iter().flat_map(|t| &t.gateways).filter_map(query_of) {
            p.dns.want(q, now);
        }
        p.regs = trunks.iter().map(|_| None).collect();
        p
    }

    /// `trunk`'s gateways in the order a call tries them, each with its
    /// registrar host (`ip:port` or the configured name): names expand
    /// to their resolved targets ([`order`]); a name not resolved yet
    /// adds nothing.
    fn expand(&self, trunk: &Trunk, rng: &mut StdRng) -> Vec<(SocketAddr, String)> {
        let mut out: Vec<(SocketAddr, String)> = Vec::new();
        for g in &trunk.gateways {
            let addrs = match query_of(g) {
                None => match g {
                    Gateway::Addr(a) => vec![*a],
                    Gateway::Name { .. } => Vec::new(),
                },
                Some(q) => order(self.dns.targets(&q), rng),
            };
            for a in addrs {
                if !out.iter().any(|(o, _)| *o == a) {
                    out.push((a, g.host()));
                }
            }
        }
        out
    }

    /// The gateways a call through `trunk` tries, in order: resolved,
    /// tracked by `health` from now on, the down ones left out unless all
    /// are down. Empty when no name is resolved yet.
    pub(crate) fn gateways_for(
        &self,
        trunk: &Trunk,
        health: &mut Health,
        rng: &mut StdRng,
        now: Instant,
    ) -> Vec<SocketAddr> {
        let all: Vec<SocketAddr> = self
            .expand(trunk, rng)
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        for a in &all {
            health.track(*a, trunk.probe_every, now);
        }
        health.usable(all)
    }

    /// The next DNS lookup due at `now`, for the resolver.
    pub(crate) fn poll_dns(&mut self, now: Instant) -> Option<DnsQuery> {
        self.dns.poll_query(now)
    }

    /// A DNS answer from the resolver.
    pub(crate) fn dns_answer(&mut self, a: DnsAnswer, now: Instant) {
        self.dns.answer(a, now);
    }

    /// The earliest instant with work: a registration, a probe or a DNS
    /// refresh.
    pub(crate) fn poll_timeout(&self, health: &Health) -> Option<Instant> {
        let regs = self.regs.iter().flatten().filter_map(|r| r.poll_timeout());
        regs.chain(health.poll_timeout())
            .chain(self.dns.next_refresh())
            .min()
    }

    /// Starts the registrations not started yet, runs the timers of
    /// registrations and probes due at `now`.
    pub(crate) fn on_timeout(
        &mut self,
        trunks: &[Trunk],
        health: &mut Health,
        ctx: &mut Ctx<'_>,
        now: Instant,
    ) {
        health.on_timeout(ctx, now);
        for (i, t) in trunks.iter().enumerate() {
            let (Some(expires), Some((user, pass))) = (t.register, t.credentials.as_ref()) else {
                continue;
            };
            if self.regs.len() <= i {
                self.regs.resize_with(i + 1, || None);
            }
            if self.regs[i].is_none() {
                self.regs[i] = Some(Registration::new(&t.name, (user, pass), expires, ctx, now));
            }
            let due = self.regs[i]
                .as_ref()
                .and_then(Registration::poll_timeout)
                .is_some_and(|t| t <= now);
            if !due {
                continue;
            }
            let first_up = |plane: &TrunkPlane, health: &mut Health, rng: &mut StdRng| {
                let all = plane.expand(t, rng);
                for (a, _) in &all {
                    health.track(*a, t.probe_every, now);
                }
                let up = all.iter().find(|(a, _)| health.is_up(*a)).cloned();
                up.or_else(|| all.first().cloned())
            };
            let target: Option<Registrar> = first_up(self, health, ctx.rng);
            if let Some(r) = self.regs[i].as_mut() {
                let news = r.on_timeout(ctx, now, || target);
                apply(health, news, now);
            }
        }
    }

    /// A response to one of our requests (probe or REGISTER): taken
    /// (`true`) or not ours.
    pub(crate) fn on_response(
        &mut self,
        resp: &Msg,
        health: &mut Health,
        ctx: &mut Ctx<'_>,
        now: Instant,
    ) -> bool {
        if health.on_response(resp, ctx, now) {
            return true;
        }
        for r in self.regs.iter_mut().flatten() {
            if let Some(news) = r.on_response(resp, ctx, now) {
                apply(health, news, now);
                return true;
            }
        }
        false
    }

    /// Drain: every registered trunk sends `Expires: 0`.
    pub(crate) fn drain(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        for r in self.regs.iter_mut().flatten() {
            r.unregister(ctx, now);
        }
    }

    /// Whether some trunk registers (started or not).
    pub(crate) fn registering(&self) -> bool {
        self.regs.iter().any(Option::is_some)
    }

    /// Whether an un-REGISTER still awaits its answer.
    pub(crate) fn unregistering(&self) -> bool {
        self.regs.iter().flatten().any(Registration::unregistering)
    }

    /// Each trunk's registration and gateways (every address known,
    /// sorted).
    pub(crate) fn status(
        &self,
        trunks: &[Trunk],
        health: &Health,
        now: Instant,
    ) -> Vec<TrunkStatus> {
        trunks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let reg = self.regs.get(i).and_then(Option::as_ref);
                let mut gateways: Vec<(SocketAddr, bool)> = t
                    .gateways
                    .iter()
                    .flat_map(|g| match (g, query_of(g)) {
                        (Gateway::Addr(a), _) => vec![*a],
                        (_, Some(q)) => self
                            .dns
                            .targets(&q)
                            .iter()
                            .flat_map(|t| t.addrs.clone())
                            .collect(),
                        _ => Vec::new(),
                    })
                    .map(|a| (a, health.is_up(a)))
                    .collect();
                gateways.sort();
                gateways.dedup();
                TrunkStatus {
                    name: t.name.clone(),
                    registered: t.register.map(|_| reg.is_some_and(|r| r.registered(now))),
                    register_failures: reg.map_or(0, |r| r.failures),
                    gateways,
                }
            })
            .collect()
    }
}

/// Tells the health what a registration step learned of a gateway.
fn apply(health: &mut Health, news: GwNews, now: Instant) {
    match news {
        GwNews::None => {}
        GwNews::Alive(a) => health.alive(a),
        GwNews::Timeout(a) => {
            health.failed(a, Failure::Timeout, now);
        }
    }
}
