//! Session timers (RFC 4028) through the B2BUA.
//!
//! tern passes session timers end to end: the `Session-Expires`,
//! `Min-SE` (never below [`crate::SipConfig::min_se`]) and
//! `Supported: timer` of a caller's INVITE, re-INVITE or UPDATE go into
//! the request relayed to the other leg, and the 2xx that comes back is
//! relayed with its `Session-Expires` (and `Require: timer` when the
//! refresher is the request's sender, the UAC, §9). Since the header
//! travels end to end, `refresher=uac` keeps meaning the sender of the
//! request on both legs, and one refresh refreshes both legs: the
//! interval is kept once per call.
//!
//! - A request whose `Session-Expires` is below our `Min-SE` gets 422
//!   with `Min-SE` in the core, before it reaches a call; a 422 from the
//!   callee is relayed with its `Min-SE`.
//! - When the callee's 2xx has no `Session-Expires` (it does not do
//!   timers) but the caller asked for one and supports timers, tern acts
//!   as the proxy of §8.1 does: the 2xx to the caller gets the caller's
//!   interval with `refresher=uac` and `Require: timer`.
//! - Any successful re-INVITE or UPDATE, from either side, refreshes the
//!   session (§10) with the interval of its 2xx; one whose 2xx carries no
//!   `Session-Expires` ends the session timer.
//! - tern never refreshes itself and adds no timer to a call that asked
//!   for none. When the interval passes without a refresh (at the
//!   expiration itself, see [`crate::session_timer::expiry_secs`]), tern
//!   sends BYE to both legs, frees the slot and counts it in
//!   `CoreStats::session_timer_expired`.

use std::time::{Duration, Instant};

use tracing::info;

use super::call::{Call, CallState, Session};
use super::dialog::Side;
use super::media::release_slot;
use super::send::send_bye;
use super::B2bua;
use crate::build::OutMsg;
use crate::msg::Msg;
use crate::retransmit::{RtKey, TimerEv};
use crate::session_timer::{
    expiry_secs, lists_timer, parse_min_se, parse_session_expires, Refresher, SessionExpires,
};
use crate::tu::Tu;

/// Whether the sender of `req` supports session timers (`timer` in its
/// `Supported` or `Require`).
fn supports_timer(req: &Msg) -> bool {
    lists_timer(req.headers("Supported")) || lists_timer(req.headers("Require"))
}

/// `out`, the request relayed from `req` into the other leg, with the
/// session-timer headers of `req`: `Supported: timer` when its sender
/// supports them, and its `Session-Expires` with a `Min-SE` of at least
/// ours.
pub(super) fn relay_request_headers(tu: &Tu<'_>, req: &Msg, mut out: OutMsg) -> OutMsg {
    if supports_timer(req) {
        out = out.header("Supported", "timer");
    }
    if let Some(se) = req
        .header("Session-Expires")
        .and_then(parse_session_expires)
    {
        let min = req
            .header("Min-SE")
            .and_then(parse_min_se)
            .unwrap_or(0)
            .max(tu.cfg.min_se);
        out = out
            .header("Session-Expires", se.to_header())
            .header("Min-SE", min.to_string());
    }
    out
}

/// The session interval that the 2xx `resp` to the relayed `req` sets,
/// as relayed back to the sender of `req` (RFC 4028 §7.2, §9): the
/// 2xx's own `Session-Expires` (its refresher, else the one `req` asked
/// for, else `uas`); without one, when `req` asked for an interval and
/// its sender supports timers, that interval with `refresher=uac` (§8.1);
/// else none. An interval of 0 is none.
pub(super) fn negotiate(req: &Msg, resp: &Msg) -> Option<SessionExpires> {
    let asked = req
        .header("Session-Expires")
        .and_then(parse_session_expires);
    let got = resp
        .header("Session-Expires")
        .and_then(parse_session_expires);
    let se = match (got, asked) {
        (Some(mut se), _) => {
            if se.refresher.is_none() {
                se.refresher = Some(asked.and_then(|a| a.refresher).unwrap_or(Refresher::Uas));
            }
            Some(se)
        }
        (None, Some(a)) if supports_timer(req) => Some(SessionExpires {
            delta: a.delta,
            refresher: Some(Refresher::Uac),
        }),
        _ => None,
    };
    se.filter(|s| s.delta > 0)
}

/// Sets (or, with `None`, clears) the call's session interval from now.
pub(super) fn arm(tu: &mut Tu<'_>, call: &mut Call, se: Option<SessionExpires>, now: Instant) {
    call.session = se.map(|se| {
        let expires = now + Duration::from_secs(expiry_secs(se.delta));
        tu.schedule(expires, TimerEv::SessionExpiry(call.id));
        Session { se, expires }
    });
}

impl B2bua {
    /// The session timer `at` of call `id` fired: unless a refresh moved
    /// it, the call ends (BYE to both legs, slot freed).
    pub(crate) fn on_session_expiry(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        at: Instant,
        now: Instant,
    ) {
        self.with_call(id, |b2b, call| {
            if call.session.map(|s| s.expires) != Some(at) || call.state != CallState::Confirmed
            {
                return;
            }
            tu.stats.session_timer_expired += 1;
            info!(call_id = %call.call_id(), slot = ?call.slot, interval = call.session.map(|s| s.se.delta), "session interval passed without a refresh (RFC 4028): ending the call");
            call.session = None;
            for k in [RtKey::ReInvite(id), RtKey::ReFinal(id), RtKey::Update(id)] {
                tu.stop_retrans(k);
            }
            send_bye(tu, call, Side::Caller, now);
            send_bye(tu, call, Side::Callee, now);
            release_slot(tu, call);
            call.state = CallState::Terminating;
            let linger = now + tu.cfg.t1 * 66;
            b2b.set_linger(tu, call, linger);
        });
    }
}
