//! Registration to a trunk (RFC 3261 §10.2, the client side): a trunk
//! with `register = true` keeps a binding of `sip:<username>@<gateway>`
//! to our Contact at its first gateway that is up. Sans-IO: the core
//! hands in responses and `now`; requests go out on its `Outbox`;
//! [`Registration::poll_timeout`] is merged into the core's.
//!
//! - REGISTER with `Expires: register_expires`, one Call-ID per trunk and
//!   a CSeq that grows (§10.2.4); a 401/407 is answered once per attempt
//!   with the trunk's credentials (`crate::trunk::digest_answer`); a 423
//!   is retried at once with its Min-Expires (§10.2.8).
//! - The grant is our Contact's `expires` parameter in the 200, else its
//!   Expires header, else what we asked ([`granted_expires`]); the
//!   binding is refreshed at half the grant (at least 1 s later).
//! - A failure (another final response, timer F) is counted
//!   and retried after a backoff of [`RETRY_MIN`] doubling up to
//!   [`RETRY_MAX`]; a timeout also counts against the gateway's health.
//!   With no gateway known yet (names not resolved), it looks again
//!   after [`NO_GATEWAY_WAIT`].
//! - On drain (SIGTERM) a registered trunk sends `Expires: 0`
//!   (§10.2.2) and the drain waits up to [`UNREGISTER_WAIT`] for it.
//!
//! Responses are matched by Call-ID (`tern-reg-…`) and CSeq.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::build::OutMsg;
use crate::msg::{parse_delta, Msg, NameAddr};
use crate::transaction::{Input, Timers, Transaction};
use crate::trunk::digest_answer;
use crate::trunk_health::Ctx;

/// First retry after a failed registration.
pub const RETRY_MIN: Duration = Duration::from_secs(2);
/// Longest wait between retries.
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// How long a drain waits for the answers to our un-REGISTERs.
pub const UNREGISTER_WAIT: Duration = Duration::from_secs(2);
/// Wait before looking again for a gateway when none is known (a name
/// not resolved yet).
pub const NO_GATEWAY_WAIT: Duration = Duration::from_secs(1);
/// Call-ID prefix of our REGISTERs.
pub(crate) const REG_CALL_ID: &str = "tern-reg-";

/// The lifetime a registrar granted in its 2xx (RFC 3261 §10.2.4):
/// `contacts` are the response's Contact values, the `expires` parameter
/// of the one whose URI is `ours` (compared case-insensitively) wins,
/// then `expires_header` (the Expires value), then `None`. Values are
/// delta-seconds, saturated at 2^32-1; malformed ones count as absent.
pub fn granted_expires<'a>(
    contacts: impl IntoIterator<Item = &'a str>,
    expires_header: Option<&str>,
    ours: &str,
) -> Option<u32> {
    let by_contact = contacts
        .into_iter()
        .flat_map(|v| v.split(','))
        .filter_map(NameAddr::parse)
        .find(|c| c.uri.eq_ignore_ascii_case(ours))
        .and_then(|c| c.param("expires").and_then(parse_delta));
    by_contact.or_else(|| expires_header.and_then(parse_delta))
}

/// Where a REGISTER goes: the gateway's address and the registrar host
/// for the Request-URI and AOR (`ip:port` or the configured name).
pub(crate) type Registrar = (SocketAddr, String);

/// What a step did to a gateway, for the gateway health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GwNews {
    /// Nothing to tell.
    None,
    /// It answered (a final response other than 503).
    Alive(SocketAddr),
    /// No answer (timer F).
    Timeout(SocketAddr),
}

#[derive(Debug)]
struct Pending {
    tx: Transaction,
    to: Registrar,
    cseq: u32,
    expires: u32,
    auth_tried: bool,
}

/// One trunk's registration.
#[derive(Debug)]
pub struct Registration {
    /// The trunk's name.
    pub trunk: String,
    user: String,
    password: String,
    expires: u32,
    call_id: String,
    from_tag: String,
    cseq: u32,
    pending: Option<Pending>,
    /// When the next REGISTER goes (refresh or retry); `None` after an
    /// un-REGISTER.
    next: Option<Instant>,
    /// Until when the binding holds, and where.
    bound: Option<(Instant, Registrar)>,
    /// Failed attempts since start (monotonic).
    pub failures: u64,
    retries: u32,
    unregister_until: Option<Instant>,
}

impl Registration {
    /// A registration of `user` (with `password`) asking for `expires`
    /// seconds, first sent at `now`. `ids` gives the Call-ID and From tag
    /// their random part.
    pub(crate) fn new(
        trunk: &str,
        (user, password): (&str, &str),
        expires: u32,
        ctx: &mut Ctx<'_>,
        now: Instant,
    ) -> Registration {
        Registration {
            trunk: trunk.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            expires,
            call_id: format!("{REG_CALL_ID}{}", ctx.hex(10)),
            from_tag: ctx.hex(6),
            cseq: 0,
            pending: None,
            next: Some(now),
            bound: None,
            failures: 0,
            retries: 0,
            unregister_until: None,
        }
    }

    /// Whether the binding holds at `now`.
    pub fn registered(&self, now: Instant) -> bool {
        self.bound.as_ref().is_some_and(|(t, _)| *t > now)
    }

    /// Whether an un-REGISTER still awaits its answer (for at most
    /// [`UNREGISTER_WAIT`]).
    pub(crate) fn unregistering(&self) -> bool {
        self.unregister_until.is_some() && self.pending.is_some()
    }

    /// The earliest instant [`Registration::on_timeout`] has work.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.pending.as_ref().and_then(|p| p.tx.poll_timeout());
        let unreg = self.unregister_until.filter(|_| self.pending.is_some());
        [tx, self.next, unreg].into_iter().flatten().min()
    }

    /// Our Contact URI.
    fn contact(&self, ctx: &Ctx<'_>) -> String {
        format!("sip:{}@{}", self.user, ctx.local)
    }

    /// Fires the transaction's timers and, when due, sends the next
    /// REGISTER to `registrar()` (the first gateway up; `None`: none
    /// known yet, retried later).
    pub(crate) fn on_timeout(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        registrar: impl FnOnce() -> Option<Registrar>,
    ) -> GwNews {
        if self.unregister_until.is_some_and(|t| t <= now) && self.pending.take().is_some() {
            debug!(trunk = %self.trunk, "un-REGISTER unanswered: given up");
            return GwNews::None;
        }
        if let Some(p) = self.pending.as_mut() {
            if p.tx.poll_timeout().is_some_and(|t| t <= now) {
                p.tx.handle(Input::Timeout, now);
            }
            let dest = p.to.0;
            let (timed_out, ended) = ctx.drive(&mut p.tx, dest);
            if timed_out || ended {
                self.pending = None;
                if self.unregister_until.is_some() {
                    return GwNews::Timeout(dest);
                }
                warn!(trunk = %self.trunk, gw = %dest, "REGISTER unanswered");
                self.fail(now);
                return GwNews::Timeout(dest);
            }
            return GwNews::None;
        }
        if self.next.is_none_or(|t| t > now) {
            return GwNews::None;
        }
        // Refresh where we are bound; else the first gateway up.
        let to = match self.bound.as_ref().filter(|(t, _)| *t > now) {
            Some((_, r)) => Some(r.clone()),
            None => registrar(),
        };
        let Some(to) = to else {
            // A name not resolved yet: not a failure of the registrar.
            debug!(trunk = %self.trunk, "no gateway to register to yet");
            self.next = Some(now + NO_GATEWAY_WAIT);
            return GwNews::None;
        };
        self.send(ctx, to, self.expires, None, now);
        GwNews::None
    }

    /// Sends a REGISTER for `expires` seconds to `to`, with an
    /// Authorization header `auth` when answering a challenge.
    fn send(
        &mut self,
        ctx: &mut Ctx<'_>,
        to: Registrar,
        expires: u32,
        auth: Option<(&str, String)>,
        now: Instant,
    ) {
        self.cseq += 1;
        self.next = None;
        let branch = format!("z9hG4bK{}", ctx.hex(8));
        let aor = format!("sip:{}@{}", self.user, to.1);
        let mut m = OutMsg::request(rsip::Method::Register, &format!("sip:{}", to.1))
            .header(
                "Via",
                format!("SIP/2.0/UDP {};branch={branch};rport", ctx.local),
            )
            .header("Max-Forwards", "70")
            .header("From", format!("<{aor}>;tag={}", self.from_tag))
            .header("To", format!("<{aor}>"))
            .header("Call-ID", self.call_id.clone())
            .header("CSeq", format!("{} REGISTER", self.cseq))
            .header("Contact", format!("<{}>", self.contact(ctx)))
            .header("Expires", expires.to_string())
            .header("User-Agent", ctx.cfg.user_agent.clone());
        if let Some((h, v)) = auth.as_ref() {
            m = m.header(h, v.clone());
        }
        let auth_tried = auth.is_some();
        let mut tx = Transaction::client(false, m.to_bytes(), Timers::from_config(ctx.cfg), now);
        ctx.drive(&mut tx, to.0);
        debug!(trunk = %self.trunk, gw = %to.0, cseq = self.cseq, expires, auth_tried, "REGISTER");
        self.pending = Some(Pending {
            tx,
            to,
            cseq: self.cseq,
            expires,
            auth_tried,
        });
    }

    /// A failed attempt: counted, retried after the backoff.
    fn fail(&mut self, now: Instant) {
        self.failures += 1;
        self.bound = None;
        let wait = RETRY_MIN
            .saturating_mul(1u32 << self.retries.min(16))
            .min(RETRY_MAX);
        self.retries = self.retries.saturating_add(1);
        self.next = Some(now + wait);
    }

    /// Sends `Expires: 0` if bound (drain); the answer is awaited for up
    /// to [`UNREGISTER_WAIT`]. No refresh follows.
    pub(crate) fn unregister(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        self.next = None;
        let Some((until, to)) = self.bound.take() else {
            return;
        };
        if until <= now {
            return;
        }
        info!(trunk = %self.trunk, gw = %to.0, "un-REGISTER (drain)");
        self.unregister_until = Some(now + UNREGISTER_WAIT);
        self.send(ctx, to, 0, None, now);
    }

    /// A response; returns `None` if it is not ours (another Call-ID or
    /// a stale CSeq), else what it says of the gateway.
    pub(crate) fn on_response(
        &mut self,
        resp: &Msg,
        ctx: &mut Ctx<'_>,
        now: Instant,
    ) -> Option<GwNews> {
        if resp.call_id != self.call_id {
            return None;
        }
        let code = resp.code().unwrap_or(0);
        let p = self.pending.as_mut().filter(|p| p.cseq == resp.cseq.num)?;
        p.tx.handle(Input::Response { code, ack: None }, now);
        let dest = p.to.0;
        ctx.drive(&mut p.tx, dest);
        if code < 200 {
            return Some(GwNews::None);
        }
        let Some(p) = self.pending.take() else {
            return Some(GwNews::None);
        };
        let news = if code == 503 {
            GwNews::None
        } else {
            GwNews::Alive(dest)
        };
        if self.unregister_until.is_some() {
            info!(trunk = %self.trunk, code, "un-REGISTER answered");
            return Some(news);
        }
        match code {
            200..=299 => {
                let ours = self.contact(ctx);
                let granted =
                    granted_expires(resp.headers("Contact"), resp.header("Expires"), &ours)
                        .unwrap_or(p.expires);
                if granted == 0 {
                    warn!(trunk = %self.trunk, "registrar granted 0 s");
                    self.fail(now);
                    return Some(news);
                }
                let life = Duration::from_secs(u64::from(granted));
                info!(trunk = %self.trunk, gw = %dest, granted, "registered to the trunk");
                self.bound = Some((now + life, p.to));
                self.retries = 0;
                self.next = Some(now + (life / 2).max(Duration::from_secs(1)));
            }
            401 | 407 if !p.auth_tried => {
                let (chal_hdr, cred_hdr) = if code == 401 {
                    ("WWW-Authenticate", "Authorization")
                } else {
                    ("Proxy-Authenticate", "Proxy-Authorization")
                };
                let uri = format!("sip:{}", p.to.1);
                let cnonce = ctx.hex(8);
                let creds = (self.user.as_str(), self.password.as_str());
                let answer = resp
                    .headers(chal_hdr)
                    .find_map(|c| digest_answer(c, "REGISTER", creds, &uri, &cnonce));
                match answer {
                    Some(v) => self.send(ctx, p.to, p.expires, Some((cred_hdr, v)), now),
                    None => {
                        warn!(trunk = %self.trunk, code, "registrar challenge not answerable");
                        self.fail(now);
                    }
                }
            }
            423 => match resp.header("Min-Expires").and_then(parse_delta) {
                Some(min) if min > p.expires => {
                    self.expires = min;
                    self.send(ctx, p.to, min, None, now);
                }
                _ => self.fail(now),
            },
            _ => {
                warn!(trunk = %self.trunk, gw = %dest, code, "REGISTER refused");
                self.fail(now);
            }
        }
        Some(news)
    }
}
