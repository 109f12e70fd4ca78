//! [`Tu`]: the narrow interface through which the core lends the
//! transaction user (the B2BUA) what it needs for one event: the
//! configuration, our address, the media relay, the outgoing queue, the
//! timers and retransmissions, and the counters. The TU never sees the
//! core itself (registrar, digest state, sockets).

use std::net::SocketAddr;
use std::time::Instant;

use rand::rngs::StdRng;

use crate::build::OutMsg;
use crate::config::SipConfig;
use crate::msg::Msg;
use crate::outbox::{self, Outbox};
use crate::relay::MediaRelay;
use crate::retransmit::{Retransmitter, RtKey, TimerEv, TimerKey};
use crate::stats::CoreStats;
use crate::transaction::Timers;

/// What the core lends its transaction user for the handling of one
/// message or timer. Borrowed from disjoint fields of the core.
pub(crate) struct Tu<'a> {
    /// The signaling configuration (timers T1/T2/T4 and C, User-Agent,
    /// jitter settings).
    pub(crate) cfg: &'a SipConfig,
    /// Our address for Via and Contact.
    pub(crate) local: SocketAddr,
    /// Where media is anchored.
    pub(crate) relay: &'a mut dyn MediaRelay,
    /// What goes out.
    pub(crate) out: &'a mut Outbox,
    /// Timers and retransmissions.
    pub(crate) rt: &'a mut Retransmitter,
    /// Counters.
    pub(crate) stats: &'a mut CoreStats,
    /// The core's RNG (tags, branches, Call-IDs, SSRCs): seeded by whoever
    /// built the core, so tests are deterministic.
    pub(crate) rng: &'a mut StdRng,
}

impl Tu<'_> {
    /// Sends a message once.
    pub(crate) fn send(&mut self, dest: SocketAddr, bytes: Vec<u8>) {
        self.out.send(dest, bytes);
    }

    /// Sends a message and retransmits it under `key`; see
    /// [`Retransmitter::start`] for `cap`.
    pub(crate) fn send_retrans(
        &mut self,
        key: RtKey,
        dest: SocketAddr,
        bytes: Vec<u8>,
        cap: bool,
        now: Instant,
    ) {
        let timers = Timers::from_config(self.cfg);
        self.rt.start(key, dest, bytes, cap, timers, now, self.out);
    }

    /// Stops a retransmission; returns whether one was running.
    pub(crate) fn stop_retrans(&mut self, key: RtKey) -> bool {
        self.rt.stop(key)
    }

    /// Whether a retransmission is running.
    pub(crate) fn retransmitting(&self, key: RtKey) -> bool {
        self.rt.running(key)
    }

    /// Queues timer `ev` at `at`.
    pub(crate) fn schedule(&mut self, at: Instant, ev: TimerEv) -> TimerKey {
        self.rt.schedule(at, ev)
    }

    /// A response to `req` with our Server header.
    pub(crate) fn response(
        &self,
        req: &Msg,
        code: u16,
        to_tag: Option<&str>,
        src: SocketAddr,
    ) -> OutMsg {
        outbox::response(&self.cfg.user_agent, req, code, to_tag, src)
    }

    /// Sends a stateless response to `req` (see [`Outbox::reply`]).
    pub(crate) fn reply(
        &mut self,
        req: &Msg,
        code: u16,
        src: SocketAddr,
        f: impl FnOnce(OutMsg) -> OutMsg,
    ) {
        self.out.reply(&self.cfg.user_agent, req, code, src, f);
    }
}
