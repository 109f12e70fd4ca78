//! [`SipCore`]'s trunk entry points: DNS queries out and answers in
//! (RFC 3263, `crate::trunk_dns`), the trunk side's timers
//! (registrations, probes; `crate::trunk_plane`) and the responses to
//! its requests. Kept out of `core.rs`, beside what they drive.

use std::time::Instant;

use crate::core::SipCore;
use crate::msg::Msg;
use crate::trunk_health::Ctx;

impl SipCore {
    /// The next gateway name to resolve (RFC 3263, `crate::trunk_dns`)
    /// for the resolver the server runs; answers come back through
    /// [`SipCore::dns_answer`].
    pub fn poll_dns(&mut self, now: Instant) -> Option<crate::trunk_dns::DnsQuery> {
        self.trunks.poll_dns(now)
    }

    /// A resolver's answer to a [`SipCore::poll_dns`] query: kept for
    /// its TTL; calls through the trunk use it from now on.
    pub fn dns_answer(&mut self, answer: crate::trunk_dns::DnsAnswer, now: Instant) {
        self.trunks.dns_answer(answer, now);
    }

    /// Each trunk's registration and gateway health at `now` (observers).
    pub fn trunk_status(&self, now: Instant) -> Vec<crate::trunk_plane::TrunkStatus> {
        self.trunks
            .status(&self.cfg.trunks, &self.b2bua.gateways, now)
    }

    /// Runs the trunk side's timers (registrations, probes) at `now`.
    pub(crate) fn trunk_timeout(&mut self, now: Instant) {
        let mut ctx = crate::trunk_health::Ctx {
            out: &mut self.out,
            rng: &mut self.rng,
            local: self.local,
            cfg: &self.cfg,
        };
        if std::mem::take(&mut self.unregister_due) {
            self.trunks.drain(&mut ctx, now);
        }
        self.trunks
            .on_timeout(&self.cfg.trunks, &mut self.b2bua.gateways, &mut ctx, now);
    }

    /// Whether a drain must still wait: un-REGISTERs due or unanswered.
    pub(crate) fn unregistering(&self) -> bool {
        self.unregister_due || self.trunks.unregistering()
    }

    /// The earliest instant the trunk side has work.
    pub(crate) fn trunk_deadline(&self) -> Option<Instant> {
        self.trunks.poll_timeout(&self.b2bua.gateways)
    }

    /// A response to a probe or REGISTER of ours: taken (`true`).
    pub(crate) fn trunk_response(&mut self, resp: &Msg, now: Instant) -> bool {
        let mut ctx = Ctx {
            out: &mut self.out,
            rng: &mut self.rng,
            local: self.local,
            cfg: &self.cfg,
        };
        self.trunks
            .on_response(resp, &mut self.b2bua.gateways, &mut ctx, now)
    }
}
