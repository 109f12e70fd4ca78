//! The retransmission engine: one timer queue for the whole core and one
//! retransmitted message per [`RtKey`], each driven by an RFC 3261 §17
//! [`Transaction`] (timers A/B, E/F, G/H) or by [`Retransmit2xx`]
//! (§13.3.1.4).
//!
//! Sans-IO like the rest: [`Retransmitter::start`] queues the first
//! transmission on an [`Outbox`], the core pops due timers with
//! [`Retransmitter::pop_due`] and hands [`TimerEv::Retrans`] back to
//! [`Retransmitter::fire`]; a message that ran out of time (timer B/F/H,
//! or the 2xx timer) is reported by [`Retransmitter::take_expired`] for
//! the transaction user. Matching responses to the messages is the
//! transaction user's job (by Call-ID and CSeq); it then calls
//! [`Retransmitter::stop`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::outbox::{response_code, Outbox};
use crate::transaction::{Input, Output, Retransmit2xx, Timers, Transaction};

/// Which message a retransmission timer resends. The `u64` is the call id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RtKey {
    /// Our final response to the caller's INVITE (2xx: §13.3.1.4; other:
    /// timer G/H), until the caller's ACK.
    CallerFinal(u64),
    /// Our INVITE to the callee (timers A/B), until any response.
    CalleeInvite(u64),
    /// A BYE we sent to the caller (timers E/F).
    ByeToCaller(u64),
    /// A BYE we sent to the callee (timers E/F).
    ByeToCallee(u64),
    /// A CANCEL we sent to the callee (timers E/F).
    Cancel(u64),
    /// A re-INVITE we relayed into the other dialog (timers A/B).
    ReInvite(u64),
    /// Our final response to a relayed re-INVITE, until its ACK.
    ReFinal(u64),
    /// An UPDATE we relayed into the other dialog (timers E/F).
    Update(u64),
    /// An INFO we relayed into the other dialog (timers E/F), by the CSeq
    /// number it has there: several may be outstanding (DTMF digits).
    Info(u64, u32),
    /// Our INVITE to fork `n` (> 0) of a forked call (timers A/B); fork
    /// 0's is [`RtKey::CalleeInvite`].
    ForkInvite(u64, u8),
    /// A CANCEL we sent to fork `n` of a forked call (timers E/F).
    ForkCancel(u64, u8),
    /// A BYE we sent to fork `n` after its late 2xx (timers E/F).
    ForkBye(u64, u8),
    /// Our reliable provisional to the caller (RFC 3262 §3: T1 doubling,
    /// no cap, given up after 64·T1), until its PRACK.
    Reliable(u64),
    /// Our PRACK to the callee (timers E/F), until its response.
    Prack(u64),
    /// Our latest NOTIFY (RFC 3515 §2.4.4) to a transfer's referrer
    /// (timers E/F).
    Notify(u64),
    /// Our INVITE to a transfer's target (timers A/B).
    TransferInvite(u64),
    /// A BYE to a transfer's referrer after the final NOTIFY, or a BYE or
    /// CANCEL to a target the call no longer needs (timers E/F).
    TransferEnd(u64),
    /// Our 2xx to an INVITE that replaced a dialog (RFC 3891), until its
    /// ACK (§13.3.1.4).
    ReplacesFinal(u64),
}

impl RtKey {
    /// Every key a call `id` may hold, to stop them all when it goes
    /// (the [`RtKey::Info`] ones aside: the call lists those).
    pub(crate) fn all_of(id: u64) -> [RtKey; 14] {
        [
            RtKey::CallerFinal(id),
            RtKey::CalleeInvite(id),
            RtKey::ByeToCaller(id),
            RtKey::ByeToCallee(id),
            RtKey::Cancel(id),
            RtKey::ReInvite(id),
            RtKey::ReFinal(id),
            RtKey::Update(id),
            RtKey::Reliable(id),
            RtKey::Prack(id),
            RtKey::Notify(id),
            RtKey::TransferInvite(id),
            RtKey::TransferEnd(id),
            RtKey::ReplacesFinal(id),
        ]
    }

    /// Whether this key resends a final response of ours (it waits for an
    /// ACK, not for a response).
    pub(crate) fn is_final_response(self) -> bool {
        matches!(
            self,
            RtKey::CallerFinal(_)
                | RtKey::ReFinal(_)
                | RtKey::Reliable(_)
                | RtKey::ReplacesFinal(_)
        )
    }
}

/// Timer events of the core's one timer queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerEv {
    /// The next step of a retransmission ([`Retransmitter::fire`]).
    Retrans(RtKey),
    /// Timer C of a call (no final response from the callee in time).
    TimerC(u64),
    /// A finished call's state may go (retransmissions absorbed until then).
    Linger(u64),
    /// The session interval (RFC 4028) of a call may have passed without
    /// a refresh.
    SessionExpiry(u64),
    /// A transfer's referrer, NOTIFYed of the outcome, gets our BYE
    /// unless it hung up first (RFC 5589 §6.1).
    TransferBye(u64),
}

/// A timer's key in the queue: when, and a sequence number that orders
/// timers due at the same instant and tells a stale one from its successor.
pub(crate) type TimerKey = (Instant, u64);

/// What drives one retransmitted message: a §17 state machine, or the
/// §13.3.1.4 2xx timer.
#[derive(Debug)]
enum Engine {
    Tx(Transaction),
    Ok2xx(Retransmit2xx),
}

impl Engine {
    fn handle(&mut self, input: Input, now: Instant) {
        match self {
            Engine::Tx(t) => t.handle(input, now),
            Engine::Ok2xx(r) => r.handle(input, now),
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        match self {
            Engine::Tx(t) => t.poll_output(),
            Engine::Ok2xx(r) => r.poll_output(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Engine::Tx(t) => t.poll_timeout(),
            Engine::Ok2xx(r) => r.poll_timeout(),
        }
    }
}

#[derive(Debug)]
struct Retrans {
    dest: SocketAddr,
    engine: Engine,
    timer: Option<TimerKey>,
    /// Transmissions so far: over a reliable transport only the first of
    /// a transaction goes out (RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1).
    sent: u32,
}

/// The timer queue and the running retransmissions.
#[derive(Debug, Default)]
pub(crate) struct Retransmitter {
    timers: BTreeMap<TimerKey, TimerEv>,
    seq: u64,
    retrans: HashMap<RtKey, Retrans>,
    /// Keys whose message ran out of time, oldest first.
    expired: VecDeque<RtKey>,
}

impl Retransmitter {
    /// No timers, nothing retransmitted.
    pub(crate) fn new() -> Retransmitter {
        Retransmitter::default()
    }

    /// Queues `ev` at `at`; returns its key.
    pub(crate) fn schedule(&mut self, at: Instant, ev: TimerEv) -> TimerKey {
        self.seq += 1;
        let key = (at, self.seq);
        self.timers.insert(key, ev);
        key
    }

    /// The earliest queued timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(t, _)| *t)
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TimerKey, TimerEv)> {
        let (&key, &ev) = self.timers.iter().next()?;
        if key.0 > now {
            return None;
        }
        self.timers.remove(&key);
        Some((key, ev))
    }

    /// Sends `bytes` to `dest` now (on `out`) and retransmits it over UDP
    /// until [`Retransmitter::stop`] or 64·T1, when the key is reported
    /// by [`Retransmitter::take_expired`]. `cap` says whether the interval
    /// is capped at T2: an INVITE (`false`) runs an INVITE client
    /// transaction (timers A/B, §17.1.1); a BYE, CANCEL or UPDATE a
    /// non-INVITE one (E/F, §17.1.2); a final response to an INVITE a
    /// server transaction's G/H (§17.2.1) or, for a 2xx,
    /// [`Retransmit2xx`] (§13.3.1.4). A message already running under
    /// `key` is replaced.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        &mut self,
        key: RtKey,
        dest: SocketAddr,
        bytes: Vec<u8>,
        cap: bool,
        timers: Timers,
        now: Instant,
        out: &mut Outbox,
    ) {
        self.stop(key);
        let engine = match (cap, response_code(&bytes)) {
            (false, _) => Engine::Tx(Transaction::client(true, bytes, timers, now)),
            (true, None) => Engine::Tx(Transaction::client(false, bytes, timers, now)),
            (true, Some(code)) if (200..300).contains(&code) => {
                Engine::Ok2xx(Retransmit2xx::start(bytes, timers, now))
            }
            (true, Some(code)) => {
                let mut t = Transaction::server(true, timers);
                t.handle(Input::Send { code, bytes }, now);
                Engine::Tx(t)
            }
        };
        self.retrans.insert(
            key,
            Retrans {
                dest,
                engine,
                timer: None,
                sent: 0,
            },
        );
        self.drive(key, out);
    }

    /// Sends what the engine of `key` queued, notes its timeout, and
    /// schedules its next timer.
    fn drive(&mut self, key: RtKey, out: &mut Outbox) {
        let Some(r) = self.retrans.get_mut(&key) else {
            return;
        };
        let mut timed_out = false;
        let mut ended = false;
        while let Some(o) = r.engine.poll_output() {
            match o {
                Output::Transmit(b) => {
                    let transport = out.links.route_message(r.dest, &b);
                    // §13.3.1.4: a 2xx is retransmitted whatever the
                    // transport; the transaction layer's resends only
                    // over UDP.
                    let resend = r.sent > 0 && !matches!(r.engine, Engine::Ok2xx(_));
                    if !(resend && transport.is_reliable()) {
                        r.sent += 1;
                        out.push(transport, r.dest, b);
                    }
                }
                Output::Timeout(_) => timed_out = true,
                Output::Terminated => ended = true,
                _ => {}
            }
        }
        if timed_out || ended {
            self.retrans.remove(&key);
            if timed_out {
                self.expired.push_back(key);
            }
            return;
        }
        if let Some(at) = r.engine.poll_timeout() {
            self.seq += 1;
            let tk = (at, self.seq);
            r.timer = Some(tk);
            self.timers.insert(tk, TimerEv::Retrans(key));
        }
    }

    /// Stops a retransmission; returns whether one was running.
    pub(crate) fn stop(&mut self, key: RtKey) -> bool {
        match self.retrans.remove(&key) {
            Some(r) => {
                if let Some(t) = r.timer {
                    self.timers.remove(&t);
                }
                true
            }
            None => false,
        }
    }

    /// Whether a retransmission is running.
    pub(crate) fn running(&self, key: RtKey) -> bool {
        self.retrans.contains_key(&key)
    }

    /// The retransmission timer `timer` of `key` fired (popped by
    /// [`Retransmitter::pop_due`]): a stale one is ignored.
    pub(crate) fn fire(&mut self, key: RtKey, timer: TimerKey, now: Instant, out: &mut Outbox) {
        let Some(r) = self.retrans.get_mut(&key) else {
            return;
        };
        if r.timer != Some(timer) {
            return;
        }
        r.timer = None;
        r.engine.handle(Input::Timeout, now);
        self.drive(key, out);
    }

    /// The next key whose message ran out of time (timer B, F or H, or
    /// the 2xx timer's 64·T1), oldest first.
    pub(crate) fn take_expired(&mut self) -> Option<RtKey> {
        self.expired.pop_front()
    }

    /// The running requests of ours to `dest` (final responses excluded).
    pub(crate) fn requests_to(&self, dest: SocketAddr) -> Vec<RtKey> {
        self.retrans
            .iter()
            .filter(|(k, r)| r.dest == dest && !k.is_final_response())
            .map(|(k, _)| *k)
            .collect()
    }

    /// Whether a BYE or CANCEL of ours still awaits its response.
    pub(crate) fn ending_calls(&self) -> bool {
        self.retrans.keys().any(|k| {
            matches!(
                k,
                RtKey::ByeToCaller(_)
                    | RtKey::ByeToCallee(_)
                    | RtKey::Cancel(_)
                    | RtKey::ForkCancel(..)
                    | RtKey::ForkBye(..)
                    | RtKey::TransferEnd(_)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const BYE: &[u8] = b"BYE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n";

    #[test]
    fn resends_until_stopped_and_reports_timeouts() {
        let t0 = Instant::now();
        let dest: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let (mut rt, mut out) = (Retransmitter::new(), Outbox::new());
        let key = RtKey::ByeToCallee(7);
        rt.start(
            key,
            dest,
            BYE.to_vec(),
            true,
            Timers::default(),
            t0,
            &mut out,
        );
        assert!(rt.running(key) && rt.ending_calls());
        assert_eq!(rt.requests_to(dest), vec![key]);
        assert!(out.pop().is_some_and(|t| t.dest == dest && t.bytes == BYE));
        // Timer E fires at T1: one resend.
        let due = rt.next_deadline().unwrap();
        assert_eq!(due, t0 + Duration::from_millis(500));
        assert!(rt.pop_due(due - Duration::from_millis(1)).is_none());
        let (tk, ev) = rt.pop_due(due).unwrap();
        assert_eq!(ev, TimerEv::Retrans(key));
        rt.fire(key, tk, due, &mut out);
        assert!(out.pop().is_some());
        assert!(rt.take_expired().is_none());
        // Run it out: timer F (64·T1) reports the key once.
        let mut now = due;
        while let Some((tk, TimerEv::Retrans(k))) = rt.pop_due(t0 + Duration::from_secs(40)) {
            now = tk.0;
            rt.fire(k, tk, now, &mut out);
        }
        assert!(now >= t0 + Duration::from_secs(32));
        assert_eq!(rt.take_expired(), Some(key));
        assert_eq!(rt.take_expired(), None);
        assert!(!rt.running(key));
        // Stopping one ends it silently, timer included.
        rt.start(
            key,
            dest,
            BYE.to_vec(),
            true,
            Timers::default(),
            t0,
            &mut out,
        );
        assert!(rt.stop(key) && !rt.stop(key));
        assert!(rt.next_deadline().is_none());
        assert!(!rt.ending_calls());
    }

    #[test]
    fn key_kinds() {
        assert!(RtKey::CallerFinal(1).is_final_response());
        assert!(RtKey::ReFinal(1).is_final_response());
        assert!(!RtKey::CalleeInvite(1).is_final_response());
        let all = RtKey::all_of(3);
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
    }
}
