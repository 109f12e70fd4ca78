//! Gateway health (issue 19): which trunk gateways are up, and OPTIONS
//! probes (RFC 3261 §11) to the ones that are down. Sans-IO: failures
//! and responses come in with a `now`, probes go out on the core's
//! `Outbox`, and [`Health::poll_timeout`] is merged into the core's.
//!
//! Policy:
//! - A gateway that did not answer an INVITE at all (Timer B), or whose
//!   transport failed (an outgoing TCP connect refused), is marked down
//!   at once: every call to it would wait 64·T1. One that answered 503
//!   [`DOWN_AFTER_503`] times in a row is marked down too (RFC 3263 §4.3
//!   lets a client skip a server that said 503). Any other final
//!   response, to an INVITE or to a probe, resets the count.
//! - Calls skip down gateways; when every gateway of a trunk is down,
//!   they are all tried anyway ([`Health::usable`]).
//! - A down gateway gets an OPTIONS every `probe_every` (the trunk's
//!   `probe_secs`, default 5 s), one at a time, each a non-INVITE client
//!   transaction (timers E/F). A final response other than 503 marks it
//!   up (§11: any final response shows the server is alive; 503 says it
//!   is not serving). No response (timer F) or 503 keeps it down.
//! - UDP ICMP unreachable is not seen (the socket is not connected): a
//!   gateway with nothing listening shows as Timer B.
//!
//! Gateways are tracked by address (a name's resolved targets each on
//! their own), once a call or probe has used them; unknown addresses are
//! up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;
use tracing::{debug, info, warn};

use crate::build::OutMsg;
use crate::config::SipConfig;
use crate::msg::Msg;
use crate::outbox::Outbox;
use crate::transaction::{Input, Output, Timers, Transaction};

/// 503 answers in a row after which a gateway is marked down.
pub const DOWN_AFTER_503: u32 = 2;

/// Call-ID prefix of our OPTIONS probes (how their responses are told
/// from calls' ones).
pub(crate) const PROBE_CALL_ID: &str = "tern-probe-";

/// What went wrong with a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No response at all (Timer B or F): down at once.
    Timeout,
    /// The transport could not reach it: down at once.
    Transport,
    /// It answered 503: down after [`DOWN_AFTER_503`] in a row.
    Unavailable,
}

/// What the trunk side lends to a sans-IO step that sends requests.
pub(crate) struct Ctx<'a> {
    /// What goes out.
    pub(crate) out: &'a mut Outbox,
    /// Branches, tags, Call-IDs.
    pub(crate) rng: &'a mut StdRng,
    /// Our address for Via and Contact.
    pub(crate) local: SocketAddr,
    /// Timers T1/T2/T4 and the User-Agent.
    pub(crate) cfg: &'a SipConfig,
}

impl Ctx<'_> {
    /// Random lowercase hex of `n` bytes.
    pub(crate) fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| format!("{:02x}", self.rng.gen::<u8>()))
            .collect()
    }

    /// Sends what transaction `tx` queued to `dest`; returns whether it
    /// timed out (timer F) or ended.
    pub(crate) fn drive(&mut self, tx: &mut Transaction, dest: SocketAddr) -> (bool, bool) {
        let (mut timed_out, mut ended) = (false, false);
        while let Some(o) = tx.poll_output() {
            match o {
                Output::Transmit(b) => self.out.send(dest, b),
                Output::Timeout(_) | Output::TransportError => timed_out = true,
                Output::Terminated => ended = true,
                _ => {}
            }
        }
        (timed_out, ended)
    }
}

#[derive(Debug)]
struct Probe {
    call_id: String,
    tx: Transaction,
}

#[derive(Debug)]
struct Gw {
    /// 503s in a row.
    fails: u32,
    down: bool,
    probe_every: Duration,
    /// When the next probe goes out (while down).
    next_probe: Instant,
    probe: Option<Probe>,
}

/// The health of every gateway seen, by address.
#[derive(Debug, Default)]
pub struct Health {
    gws: BTreeMap<SocketAddr, Gw>,
}

impl Health {
    /// Starts tracking `gw` (up), probed every `probe_every` once down;
    /// an address already tracked keeps its state.
    pub(crate) fn track(&mut self, gw: SocketAddr, probe_every: Duration, now: Instant) {
        self.gws.entry(gw).or_insert(Gw {
            fails: 0,
            down: false,
            probe_every,
            next_probe: now,
            probe: None,
        });
    }

    /// Whether `gw` is up (an untracked address is).
    pub fn is_up(&self, gw: SocketAddr) -> bool {
        self.gws.get(&gw).is_none_or(|g| !g.down)
    }

    /// `gws` without the down ones, in order; all of them when every one
    /// is down (a call is tried anyway).
    pub(crate) fn usable(&self, gws: Vec<SocketAddr>) -> Vec<SocketAddr> {
        let up: Vec<SocketAddr> = gws.iter().copied().filter(|g| self.is_up(*g)).collect();
        if up.is_empty() {
            gws
        } else {
            up
        }
    }

    /// `gw` failed (`why`) at `now`; returns whether it is now down.
    /// Untracked addresses are ignored.
    pub(crate) fn failed(&mut self, gw: SocketAddr, why: Failure, now: Instant) -> bool {
        let Some(g) = self.gws.get_mut(&gw) else {
            return false;
        };
        g.fails = g.fails.saturating_add(1);
        let down = match why {
            Failure::Timeout | Failure::Transport => true,
            Failure::Unavailable => g.fails >= DOWN_AFTER_503,
        };
        if down && !g.down {
            warn!(%gw, ?why, fails = g.fails, "trunk gateway marked down");
            g.down = true;
            g.next_probe = now + g.probe_every;
        }
        g.down
    }

    /// `gw` answered (a final response other than 503): it is up.
    pub(crate) fn alive(&mut self, gw: SocketAddr) {
        if let Some(g) = self.gws.get_mut(&gw) {
            g.fails = 0;
            if g.down {
                info!(%gw, "trunk gateway up again");
                g.down = false;
            }
        }
    }

    /// The earliest instant a probe is due or a probe's timer fires.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.gws
            .values()
            .filter_map(|g| match &g.probe {
                Some(p) => p.tx.poll_timeout(),
                None if g.down => Some(g.next_probe),
                None => None,
            })
            .min()
    }

    /// Fires the probes' timers due at `now` and sends the probes due.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        for (&addr, g) in self.gws.iter_mut() {
            if let Some(p) = g.probe.as_mut() {
                if p.tx.poll_timeout().is_some_and(|t| t <= now) {
                    p.tx.handle(Input::Timeout, now);
                }
                let (timed_out, ended) = ctx.drive(&mut p.tx, addr);
                if timed_out || ended {
                    debug!(gw = %addr, "OPTIONS probe unanswered: still down");
                    g.probe = None;
                }
                continue;
            }
            if g.down && g.next_probe <= now {
                g.next_probe = now + g.probe_every;
                let call_id = format!("{PROBE_CALL_ID}{}", ctx.hex(8));
                let req = probe_request(ctx, addr, &call_id);
                let mut tx = Transaction::client(false, req, Timers::from_config(ctx.cfg), now);
                ctx.drive(&mut tx, addr);
                debug!(gw = %addr, %call_id, "OPTIONS probe");
                g.probe = Some(Probe { call_id, tx });
            }
        }
    }

    /// A response whose Call-ID is a probe's: taken (returns `true`); a
    /// final one other than 503 marks its gateway up.
    pub(crate) fn on_response(&mut self, resp: &Msg, ctx: &mut Ctx<'_>, now: Instant) -> bool {
        if !resp.call_id.starts_with(PROBE_CALL_ID) {
            return false;
        }
        let code = resp.code().unwrap_or(0);
        let found = self
            .gws
            .iter_mut()
            .find(|(_, g)| g.probe.as_ref().is_some_and(|p| p.call_id == resp.call_id));
        let Some((&addr, g)) = found else {
            return true;
        };
        if let Some(p) = g.probe.as_mut() {
            p.tx.handle(Input::Response { code, ack: None }, now);
            ctx.drive(&mut p.tx, addr);
        }
        if code >= 200 {
            g.probe = None;
            if code != 503 {
                self.alive(addr);
            }
        }
        true
    }
}

/// An OPTIONS to `gw` (RFC 3261 §11.1).
fn probe_request(ctx: &mut Ctx<'_>, gw: SocketAddr, call_id: &str) -> Vec<u8> {
    let branch = format!("z9hG4bK{}", ctx.hex(8));
    let tag = ctx.hex(4);
    OutMsg::request(rsip::Method::Options, &format!("sip:{gw}"))
        .header(
            "Via",
            format!("SIP/2.0/UDP {};branch={branch};rport", ctx.local),
        )
        .header("Max-Forwards", "70")
        .header("From", format!("<sip:tern@{}>;tag={tag}", ctx.local))
        .header("To", format!("<sip:{gw}>"))
        .header("Call-ID", call_id.to_string())
        .header("CSeq", "1 OPTIONS")
        .header("Contact", format!("<sip:tern@{}>", ctx.local))
        .header("Accept", "application/sdp")
        .header("User-Agent", ctx.cfg.user_agent.clone())
        .to_bytes()
}
