//! The RFC 3261 §17 transaction layer, sans-IO, over an unreliable
//! transport (UDP), with RFC 6026's Accepted state.
//!
//! A [`Transaction`] is one of the four state machines of §17 (INVITE and
//! non-INVITE, client and server). It never parses nor builds messages: it
//! holds the bytes it may have to resend and is told what happened:
//!
//! ```text
//! handle(Input, now) ──> poll_output() -> Output (Transmit, ToTu, Timeout, Terminated)
//!                   └──> poll_timeout() -> next deadline; handle(Input::Timeout, now)
//! ```
//!
//! Matching messages to transactions (§17.1.3, §17.2.3) is the caller's
//! job; [`TxKey`] is the key it should use. Every `handle` call first fires
//! the timers due at `now`, so a late [`Input::Timeout`] changes nothing.
//!
//! The UAS's own 2xx retransmission (§13.3.1.4) belongs to the TU, not to
//! the INVITE server transaction (which ends in Accepted); [`Retransmit2xx`]
//! is that timer, sans-IO in the same shape.
//!
//! Timer values ([`Timers`], §17 table 4, unreliable transport):
//!
//! | timer | value | meaning |
//! |---|---|---|
//! | A | T1, doubling | INVITE retransmission |
//! | B | 64·T1 | INVITE client gives up |
//! | D | 32 s | INVITE client absorbs final-response retransmissions |
//! | E | T1, doubling to T2 (T2 once Proceeding) | non-INVITE retransmission |
//! | F | 64·T1 | non-INVITE client gives up |
//! | G | T1, doubling to T2 | INVITE server resends its non-2xx final |
//! | H | 64·T1 | INVITE server waits for the ACK |
//! | I | T4 | INVITE server absorbs ACK retransmissions |
//! | J | 64·T1 | non-INVITE server absorbs request retransmissions |
//! | K | T4 | non-INVITE client absorbs response retransmissions |
//! | L | 64·T1 | INVITE server in Accepted (RFC 6026) |
//! | M | 64·T1 | INVITE client in Accepted (RFC 6026) |

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::SipConfig;

/// The timer base values of RFC 3261 §17.1.1.1 and table 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate (default 500 ms): first retransmission interval.
    pub t1: Duration,
    /// Cap on the non-INVITE request and INVITE response retransmission
    /// interval (default 4 s).
    pub t2: Duration,
    /// Longest time a message stays in the network (default 5 s).
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// The T1/T2/T4 of a signaling configuration.
    pub fn from_config(cfg: &SipConfig) -> Timers {
        Timers {
            t1: cfg.t1,
            t2: cfg.t2,
            t4: cfg.t4,
        }
    }

    /// 64·T1: timers B, F, H, J, L and M.
    pub fn sixty_four_t1(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D over UDP: at least 32 s (§17.1.1.2), longer if 64·T1 is.
    pub fn d(&self) -> Duration {
        Duration::from_secs(32).max(self.sixty_four_t1())
    }
}

/// The four transaction kinds of §17.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// §17.1.1: we sent an INVITE.
    InviteClient,
    /// §17.1.2: we sent a request other than INVITE or ACK.
    NonInviteClient,
    /// §17.2.1: we received an INVITE.
    InviteServer,
    /// §17.2.2: we received a request other than INVITE or ACK.
    NonInviteServer,
}

/// Transaction states (§17 figures 5–8; Accepted from RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INVITE client, request sent, nothing heard yet.
    Calling,
    /// Non-INVITE client or server before any provisional response.
    Trying,
    /// A provisional response was received (client) or sent (server).
    Proceeding,
    /// A final response (non-2xx for INVITE) was received or sent;
    /// retransmissions are absorbed.
    Completed,
    /// INVITE server: the ACK of a non-2xx final arrived.
    Confirmed,
    /// INVITE, RFC 6026: a 2xx was received or sent; 2xx retransmissions
    /// (client) or INVITE retransmissions (server) are absorbed.
    Accepted,
    /// Done; the caller may drop the transaction.
    Terminated,
}

/// Named timers, for [`Transaction::timers`] and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the letters of §17; see the module table
pub enum Timer {
    A,
    B,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
}

/// What happened to a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Client: a response with this status code matched the transaction.
    /// For a 300–699 to an INVITE, `ack` is the ACK the transaction sends
    /// (§17.1.1.3, built by the caller from the request and response) and
    /// resends for each retransmission of that response; otherwise unused.
    Response {
        /// Status code, 100–699.
        code: u16,
        /// The ACK for a non-2xx final response to an INVITE.
        ack: Option<Vec<u8>>,
    },
    /// Server: the request was received again (a retransmission).
    Retransmission,
    /// INVITE server: an ACK matched the transaction (non-2xx final: same
    /// branch; after a 2xx the ACK is a new transaction, but RFC 6026 lets
    /// the Accepted state hand it to the TU).
    Ack,
    /// Server: the TU sends this response (status `code`, whole message).
    Send {
        /// Status code, 100–699.
        code: u16,
        /// The serialized response.
        bytes: Vec<u8>,
    },
    /// The transport could not send (§17.1.4, §17.2.4).
    TransportError,
    /// Nothing but time passed: fire the timers due.
    Timeout,
}

/// What the transaction asks of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes to the transaction's peer.
    Transmit(Vec<u8>),
    /// Client: pass the response with this code to the TU.
    Response(u16),
    /// INVITE server in Accepted: pass the ACK to the TU.
    Ack,
    /// Timer B or F (client: no final response), or H (INVITE server: no
    /// ACK) fired; the TU should act as on a 408 (§8.1.3.1) or give up.
    Timeout(Timer),
    /// The transport failed; the TU is told (§17.1.4).
    TransportError,
    /// The transaction ended and may be dropped.
    Terminated,
}

/// The key that matches messages to a transaction (§17.1.3, §17.2.3):
/// the top Via's branch, its sent-by (server side only), and the method,
/// with ACK matching the INVITE server transaction it acknowledges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    /// The `branch` parameter of the top Via (RFC 3261 magic cookie form).
    pub branch: String,
    /// `host[:port]` of the top Via; empty for client keys, since we chose
    /// the branch.
    pub sent_by: String,
    /// The method; `ACK` is stored as `INVITE`, and a server transaction
    /// for CANCEL is distinct from the INVITE one (§9.2).
    pub method: String,
}

impl TxKey {
    /// Key of a server transaction for a received request.
    pub fn server(branch: &str, sent_by: &str, method: &str) -> TxKey {
        let method = if method == "ACK" { "INVITE" } else { method };
        TxKey {
            branch: branch.to_string(),
            sent_by: sent_by.to_ascii_lowercase(),
            method: method.to_string(),
        }
    }

    /// Key of a client transaction: our branch and the CSeq method of the
    /// request (or of a response to it).
    pub fn client(branch: &str, cseq_method: &str) -> TxKey {
        TxKey {
            branch: branch.to_string(),
            sent_by: String::new(),
            method: cseq_method.to_string(),
        }
    }
}

/// One §17 transaction over an unreliable transport.
#[derive(Debug)]
pub struct Transaction {
    kind: Kind,
    state: State,
    timers: Timers,
    /// Client: the request; server: the last response sent.
    last: Vec<u8>,
    /// INVITE client: the ACK of a non-2xx final response.
    ack: Option<Vec<u8>>,
    /// The retransmission timer (A, E or G): when it fires, and the interval
    /// that led there (doubled, or capped, for the next one).
    retrans: Option<(Timer, Instant, Duration)>,
    /// The one other running timer (B, D, F, H, I, J, K, L or M).
    deadline: Option<(Timer, Instant)>,
    out: VecDeque<Output>,
}

impl Transaction {
    /// A client transaction that sends `request` now: INVITE (state Calling,
    /// timers A and B) or non-INVITE (Trying, E and F). The first
    /// [`Output::Transmit`] is queued.
    pub fn client(invite: bool, request: Vec<u8>, timers: Timers, now: Instant) -> Transaction {
        let (kind, state, rt, to) = if invite {
            (Kind::InviteClient, State::Calling, Timer::A, Timer::B)
        } else {
            (Kind::NonInviteClient, State::Trying, Timer::E, Timer::F)
        };
        let mut t = Transaction::new(kind, state, timers);
        t.out.push_back(Output::Transmit(request.clone()));
        t.last = request;
        t.retrans = Some((rt, now + timers.t1, timers.t1));
        t.deadline = Some((to, now + timers.sixty_four_t1()));
        t
    }

    /// A server transaction for a request just received and handed to the
    /// TU: INVITE (Proceeding; the TU should send 100 Trying within 200 ms,
    /// §17.2.1) or non-INVITE (Trying).
    pub fn server(invite: bool, timers: Timers) -> Transaction {
        if invite {
            Transaction::new(Kind::InviteServer, State::Proceeding, timers)
        } else {
            Transaction::new(Kind::NonInviteServer, State::Trying, timers)
        }
    }

    fn new(kind: Kind, state: State, timers: Timers) -> Transaction {
        Transaction {
            kind,
            state,
            timers,
            last: Vec::new(),
            ack: None,
            retrans: None,
            deadline: None,
            out: VecDeque::new(),
        }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The running timers and when each fires.
    pub fn timers(&self) -> Vec<(Timer, Instant)> {
        let mut v: Vec<_> = self.retrans.iter().map(|&(t, at, _)| (t, at)).collect();
        v.extend(self.deadline);
        v
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next [`Output::Transmit`], dropping other outputs before it (for
    /// owners that only need the bytes).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        while let Some(o) = self.out.pop_front() {
            if let Output::Transmit(b) = o {
                return Some(b);
            }
        }
        None
    }

    /// When [`Transaction::handle`] next has timer work; `None` once
    /// terminated.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let r = self.retrans.map(|(_, at, _)| at);
        let d = self.deadline.map(|(_, at)| at);
        match (r, d) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Applies `input` at `now`, after firing the timers due at `now`.
    pub fn handle(&mut self, input: Input, now: Instant) {
        self.fire_due(now);
        if self.state == State::Terminated {
            return;
        }
        match input {
            Input::Timeout => {}
            Input::TransportError => {
                self.out.push_back(Output::TransportError);
                self.terminate();
            }
            Input::Response { code, ack } => self.on_response(code, ack, now),
            Input::Retransmission => self.on_retransmission(),
            Input::Ack => self.on_ack(now),
            Input::Send { code, bytes } => self.on_send(code, bytes, now),
        }
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.retrans = None;
        self.deadline = None;
        self.out.push_back(Output::Terminated);
    }

    fn fire_due(&mut self, now: Instant) {
        // Each firing moves a timer strictly later or clears it.
        loop {
            let r = self.retrans.filter(|&(_, at, _)| at <= now);
            let d = self.deadline.filter(|&(_, at)| at <= now);
            match (r, d) {
                (Some((_, ra, _)), Some((_, da))) if da <= ra => self.fire_deadline(),
                (Some(_), _) => self.fire_retrans(),
                (None, Some(_)) => self.fire_deadline(),
                (None, None) => break,
            }
        }
    }

    fn fire_retrans(&mut self) {
        let Some((timer, at, interval)) = self.retrans else {
            return;
        };
        self.out.push_back(Output::Transmit(self.last.clone()));
        // A doubles without cap (§17.1.1.2); E and G are capped at T2.
        let next = match timer {
            Timer::A => interval * 2,
            _ => (interval * 2).min(self.timers.t2),
        };
        self.retrans = Some((timer, at + next, next));
    }

    fn fire_deadline(&mut self) {
        let Some((timer, _)) = self.deadline else {
            return;
        };
        if matches!(timer, Timer::B | Timer::F | Timer::H) {
            self.out.push_back(Output::Timeout(timer));
        }
        self.terminate();
    }

    fn on_response(&mut self, code: u16, ack: Option<Vec<u8>>, now: Instant) {
        let t = self.timers;
        match (self.kind, self.state) {
            (Kind::InviteClient, State::Calling | State::Proceeding) => {
                self.out.push_back(Output::Response(code));
                if code < 200 {
                    // §17.1.1.2: no more retransmissions once Proceeding;
                    // Timer B only guards Calling.
                    self.state = State::Proceeding;
                    self.retrans = None;
                    self.deadline = None;
                } else if code < 300 {
                    self.state = State::Accepted;
                    self.retrans = None;
                    self.deadline = Some((Timer::M, now + t.sixty_four_t1()));
                } else {
                    self.state = State::Completed;
                    self.retrans = None;
                    self.ack = ack;
                    if let Some(a) = &self.ack {
                        self.out.push_back(Output::Transmit(a.clone()));
                    }
                    self.deadline = Some((Timer::D, now + t.d()));
                }
            }
            // RFC 6026 §8.4: 2xx retransmissions go up (the TU ACKs them).
            (Kind::InviteClient, State::Accepted) if (200..300).contains(&code) => {
                self.out.push_back(Output::Response(code));
            }
            (Kind::InviteClient, State::Completed) if code >= 300 => {
                if let Some(a) = &self.ack {
                    self.out.push_back(Output::Transmit(a.clone()));
                }
            }
            (Kind::NonInviteClient, State::Trying | State::Proceeding) => {
                self.out.push_back(Output::Response(code));
                if code < 200 {
                    if self.state == State::Trying {
                        // §17.1.2.2: in Proceeding, E fires every T2.
                        self.state = State::Proceeding;
                        if let Some((tm, at, _)) = self.retrans {
                            self.retrans = Some((tm, at, t.t2));
                        }
                    }
                } else {
                    self.state = State::Completed;
                    self.retrans = None;
                    self.deadline = Some((Timer::K, now + t.t4));
                }
            }
            // Anything else is a retransmission to absorb.
            _ => {}
        }
    }

    fn on_retransmission(&mut self) {
        match (self.kind, self.state) {
            // §17.2.1: resend the last provisional (if any) or the final.
            (Kind::InviteServer | Kind::NonInviteServer, State::Proceeding | State::Completed)
                if !self.last.is_empty() =>
            {
                self.out.push_back(Output::Transmit(self.last.clone()));
            }
            // Trying (non-INVITE), Confirmed, Accepted: absorbed.
            _ => {}
        }
    }

    fn on_ack(&mut self, now: Instant) {
        match (self.kind, self.state) {
            (Kind::InviteServer, State::Completed) => {
                self.state = State::Confirmed;
                self.retrans = None;
                self.deadline = Some((Timer::I, now + self.timers.t4));
            }
            (Kind::InviteServer, State::Accepted) => self.out.push_back(Output::Ack),
            _ => {}
        }
    }

    fn on_send(&mut self, code: u16, bytes: Vec<u8>, now: Instant) {
        let t = self.timers;
        match (self.kind, self.state) {
            (Kind::InviteServer, State::Proceeding) => {
                self.out.push_back(Output::Transmit(bytes.clone()));
                self.last = bytes;
                if (200..300).contains(&code) {
                    // RFC 6026 §8.5: Accepted; the TU retransmits the 2xx.
                    self.state = State::Accepted;
                    self.deadline = Some((Timer::L, now + t.sixty_four_t1()));
                } else if code >= 300 {
                    self.state = State::Completed;
                    self.retrans = Some((Timer::G, now + t.t1, t.t1));
                    self.deadline = Some((Timer::H, now + t.sixty_four_t1()));
                }
            }
            // RFC 6026 §8.7: the TU's 2xx retransmissions pass through.
            (Kind::InviteServer, State::Accepted) if (200..300).contains(&code) => {
                self.out.push_back(Output::Transmit(bytes));
            }
            (Kind::NonInviteServer, State::Trying | State::Proceeding) => {
                self.out.push_back(Output::Transmit(bytes.clone()));
                self.last = bytes;
                if code < 200 {
                    self.state = State::Proceeding;
                } else {
                    self.state = State::Completed;
                    self.deadline = Some((Timer::J, now + t.sixty_four_t1()));
                }
            }
            // Responses after the final one are not sent (§17.2.2).
            _ => {}
        }
    }
}

/// The UAS core's retransmission of a 2xx to INVITE (RFC 3261 §13.3.1.4):
/// resent after T1, doubling up to T2, until the ACK; after 64·T1 without
/// one the UAS should end the dialog with a BYE.
#[derive(Debug)]
pub struct Retransmit2xx {
    bytes: Vec<u8>,
    next: Option<Instant>,
    interval: Duration,
    give_up: Instant,
    t2: Duration,
    out: VecDeque<Output>,
}

impl Retransmit2xx {
    /// Sends the 2xx `bytes` now and starts the timer.
    pub fn start(bytes: Vec<u8>, timers: Timers, now: Instant) -> Retransmit2xx {
        let mut out = VecDeque::new();
        out.push_back(Output::Transmit(bytes.clone()));
        Retransmit2xx {
            bytes,
            next: Some(now + timers.t1),
            interval: timers.t1,
            give_up: now + timers.sixty_four_t1(),
            t2: timers.t2,
            out,
        }
    }

    /// Whether it is still waiting for the ACK.
    pub fn running(&self) -> bool {
        self.next.is_some()
    }

    /// Applies [`Input::Ack`] (stops), [`Input::Retransmission`] (a
    /// retransmitted INVITE: resend now, §13.3.1.4) or [`Input::Timeout`],
    /// after firing what is due at `now`. Other inputs are ignored.
    pub fn handle(&mut self, input: Input, now: Instant) {
        while let Some(at) = self.next.filter(|&at| at <= now) {
            if at >= self.give_up {
                self.next = None;
                self.out.push_back(Output::Timeout(Timer::H));
                self.out.push_back(Output::Terminated);
                return;
            }
            self.out.push_back(Output::Transmit(self.bytes.clone()));
            self.interval = (self.interval * 2).min(self.t2);
            self.next = Some((at + self.interval).min(self.give_up));
        }
        if self.next.is_none() {
            return;
        }
        match input {
            Input::Ack => {
                self.next = None;
                self.out.push_back(Output::Terminated);
            }
            Input::Retransmission => self.out.push_back(Output::Transmit(self.bytes.clone())),
            _ => {}
        }
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When it next has timer work; `None` once stopped.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn drain(t: &mut Transaction) -> Vec<Output> {
        std::iter::from_fn(|| t.poll_output()).collect()
    }

    /// Runs the transaction's timers from `t0` until `until` (offsets in
    /// ms), returning the offsets of each Transmit and the other outputs.
    fn run(t: &mut Transaction, t0: Instant, until: u64) -> (Vec<u64>, Vec<(u64, Output)>) {
        let mut tx = Vec::new();
        let mut other = Vec::new();
        while let Some(at) = t.poll_timeout() {
            if at > t0 + MS * until as u32 {
                break;
            }
            t.handle(Input::Timeout, at);
            let off = (at - t0).as_millis() as u64;
            for o in drain(t) {
                match o {
                    Output::Transmit(_) => tx.push(off),
                    o => other.push((off, o)),
                }
            }
        }
        (tx, other)
    }

    fn req() -> Vec<u8> {
        b"REQ".to_vec()
    }

    #[test]
    fn timer_values_follow_t1_t2_t4() {
        let t = Timers::default();
        assert_eq!(t.sixty_four_t1(), Duration::from_secs(32));
        assert_eq!(t.d(), Duration::from_secs(32));
        let slow = Timers {
            t1: Duration::from_secs(1),
            t2: Duration::from_secs(8),
            t4: Duration::from_secs(10),
        };
        assert_eq!(slow.sixty_four_t1(), Duration::from_secs(64));
        assert_eq!(slow.d(), Duration::from_secs(64));
        let cfg = SipConfig::default();
        assert_eq!(Timers::from_config(&cfg), t);
    }

    #[test]
    fn invite_client_timer_a_doubles_and_b_fires_at_64_t1() {
        let t0 = Instant::now();
        let mut t = Transaction::client(true, req(), Timers::default(), t0);
        assert_eq!(t.state(), State::Calling);
        assert_eq!(t.poll_transmit(), Some(req()));
        assert_eq!(
            t.timers(),
            vec![(Timer::A, t0 + MS * 500), (Timer::B, t0 + MS * 32000)]
        );
        let (tx, other) = run(&mut t, t0, 60_000);
        // A: 0.5, 1, 2, 4, 8, 16 s intervals (no T2 cap for INVITE).
        assert_eq!(tx, [500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(
            other,
            [
                (32000, Output::Timeout(Timer::B)),
                (32000, Output::Terminated)
            ]
        );
        assert_eq!(t.state(), State::Terminated);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn invite_client_timers_scale_with_t1() {
        let t0 = Instant::now();
        let timers = Timers {
            t1: Duration::from_millis(100),
            ..Timers::default()
        };
        let mut t = Transaction::client(true, req(), timers, t0);
        t.poll_transmit();
        let (tx, other) = run(&mut t, t0, 60_000);
        assert_eq!(tx, [100, 300, 700, 1500, 3100, 6300]);
        assert_eq!(other[0], (6400, Output::Timeout(Timer::B)));
    }

    #[test]
    fn invite_client_provisional_stops_a_and_b() {
        let t0 = Instant::now();
        let mut t = Transaction::client(true, req(), Timers::default(), t0);
        drain(&mut t);
        t.handle(
            Input::Response {
                code: 180,
                ack: None,
            },
            t0 + MS * 700,
        );
        // Timer A fired once, at 500 ms.
        assert_eq!(
            drain(&mut t),
            [Output::Transmit(req()), Output::Response(180)]
        );
        assert_eq!(t.state(), State::Proceeding);
        assert_eq!(t.poll_timeout(), None);
        t.handle(
            Input::Response {
                code: 183,
                ack: None,
            },
            t0 + MS * 900,
        );
        assert_eq!(drain(&mut t), [Output::Response(183)]);
    }

    #[test]
    fn invite_client_non_2xx_acks_and_timer_d_is_32s() {
        let t0 = Instant::now();
        let mut t = Transaction::client(true, req(), Timers::default(), t0);
        drain(&mut t);
        let at = t0 + MS * 400;
        let ack = Some(b"ACK".to_vec());
        t.handle(
            Input::Response {
                code: 486,
                ack: ack.clone(),
            },
            at,
        );
        assert_eq!(
            drain(&mut t),
            [Output::Response(486), Output::Transmit(b"ACK".to_vec())]
        );
        assert_eq!(t.state(), State::Completed);
        assert_eq!(t.timers(), vec![(Timer::D, at + Duration::from_secs(32))]);
        // A retransmitted 486 is absorbed and ACKed again.
        t.handle(
            Input::Response {
                code: 486,
                ack: None,
            },
            at + MS * 500,
        );
        assert_eq!(drain(&mut t), [Output::Transmit(b"ACK".to_vec())]);
        t.handle(Input::Timeout, at + Duration::from_secs(32) - MS);
        assert_eq!(t.state(), State::Completed);
        t.handle(Input::Timeout, at + Duration::from_secs(32));
        assert_eq!(drain(&mut t), [Output::Terminated]);
    }

    #[test]
    fn invite_client_2xx_goes_to_accepted_with_timer_m() {
        let t0 = Instant::now();
        let mut t = Transaction::client(true, req(), Timers::default(), t0);
        drain(&mut t);
        let at = t0 + MS * 300;
        t.handle(
            Input::Response {
                code: 200,
                ack: None,
            },
            at,
        );
        assert_eq!(drain(&mut t), [Output::Response(200)]);
        assert_eq!(t.state(), State::Accepted);
        assert_eq!(t.timers(), vec![(Timer::M, at + MS * 32000)]);
        // RFC 6026: 2xx retransmissions still reach the TU.
        t.handle(
            Input::Response {
                code: 200,
                ack: None,
            },
            at + MS * 500,
        );
        assert_eq!(drain(&mut t), [Output::Response(200)]);
        t.handle(Input::Timeout, at + MS * 32000);
        assert_eq!(drain(&mut t), [Output::Terminated]);
    }

    #[test]
    fn non_invite_client_timer_e_doubles_up_to_t2_and_f_at_64_t1() {
        let t0 = Instant::now();
        let mut t = Transaction::client(false, req(), Timers::default(), t0);
        assert_eq!(t.state(), State::Trying);
        drain(&mut t);
        assert_eq!(
            t.timers(),
            vec![(Timer::E, t0 + MS * 500), (Timer::F, t0 + MS * 32000)]
        );
        let (tx, other) = run(&mut t, t0, 60_000);
        // Intervals 0.5, 1, 2, 4, 4, 4, ... s.
        assert_eq!(
            tx,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(
            other,
            [
                (32000, Output::Timeout(Timer::F)),
                (32000, Output::Terminated)
            ]
        );
    }

    #[test]
    fn non_invite_client_proceeding_resends_every_t2_then_k_is_t4() {
        let t0 = Instant::now();
        let mut t = Transaction::client(false, req(), Timers::default(), t0);
        drain(&mut t);
        t.handle(
            Input::Response {
                code: 100,
                ack: None,
            },
            t0 + MS * 100,
        );
        assert_eq!(drain(&mut t), [Output::Response(100)]);
        assert_eq!(t.state(), State::Proceeding);
        let (tx, _) = run(&mut t, t0, 9000);
        assert_eq!(tx, [500, 4500, 8500]);
        let at = t0 + MS * 9000;
        t.handle(
            Input::Response {
                code: 200,
                ack: None,
            },
            at,
        );
        assert_eq!(drain(&mut t), [Output::Response(200)]);
        assert_eq!(t.timers(), vec![(Timer::K, at + Duration::from_secs(5))]);
        t.handle(
            Input::Response {
                code: 200,
                ack: None,
            },
            at + MS,
        );
        assert!(drain(&mut t).is_empty(), "retransmission absorbed");
        t.handle(Input::Timeout, at + Duration::from_secs(5));
        assert_eq!(drain(&mut t), [Output::Terminated]);
    }

    #[test]
    fn invite_server_absorbs_and_resends_provisional() {
        let t0 = Instant::now();
        let mut t = Transaction::server(true, Timers::default());
        assert_eq!(t.state(), State::Proceeding);
        t.handle(Input::Retransmission, t0);
        assert!(drain(&mut t).is_empty(), "nothing sent yet");
        t.handle(
            Input::Send {
                code: 100,
                bytes: b"100".to_vec(),
            },
            t0,
        );
        assert_eq!(drain(&mut t), [Output::Transmit(b"100".to_vec())]);
        t.handle(Input::Retransmission, t0 + MS * 500);
        assert_eq!(drain(&mut t), [Output::Transmit(b"100".to_vec())]);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn invite_server_non_2xx_timer_g_doubles_to_t2_and_h_at_64_t1() {
        let t0 = Instant::now();
        let mut t = Transaction::server(true, Timers::default());
        t.handle(
            Input::Send {
                code: 486,
                bytes: b"486".to_vec(),
            },
            t0,
        );
        assert_eq!(drain(&mut t), [Output::Transmit(b"486".to_vec())]);
        assert_eq!(t.state(), State::Completed);
        assert_eq!(
            t.timers(),
            vec![(Timer::G, t0 + MS * 500), (Timer::H, t0 + MS * 32000)]
        );
        let (tx, other) = run(&mut t, t0, 60_000);
        assert_eq!(
            tx,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(
            other,
            [
                (32000, Output::Timeout(Timer::H)),
                (32000, Output::Terminated)
            ]
        );
    }

    #[test]
    fn invite_server_ack_confirms_and_timer_i_is_t4() {
        let t0 = Instant::now();
        let mut t = Transaction::server(true, Timers::default());
        t.handle(
            Input::Send {
                code: 404,
                bytes: b"404".to_vec(),
            },
            t0,
        );
        drain(&mut t);
        // A retransmitted INVITE gets the final response again.
        t.handle(Input::Retransmission, t0 + MS * 200);
        assert_eq!(drain(&mut t), [Output::Transmit(b"404".to_vec())]);
        let at = t0 + MS * 700;
        t.handle(Input::Ack, at);
        // G fired at 500 ms before the ACK.
        assert_eq!(drain(&mut t), [Output::Transmit(b"404".to_vec())]);
        assert_eq!(t.state(), State::Confirmed);
        assert_eq!(t.timers(), vec![(Timer::I, at + Duration::from_secs(5))]);
        t.handle(Input::Ack, at + MS);
        t.handle(Input::Retransmission, at + MS);
        assert!(drain(&mut t).is_empty(), "absorbed in Confirmed");
        t.handle(Input::Timeout, at + Duration::from_secs(5));
        assert_eq!(drain(&mut t), [Output::Terminated]);
    }

    #[test]
    fn invite_server_2xx_accepted_with_timer_l() {
        let t0 = Instant::now();
        let mut t = Transaction::server(true, Timers::default());
        t.handle(
            Input::Send {
                code: 180,
                bytes: b"180".to_vec(),
            },
            t0,
        );
        t.handle(
            Input::Send {
                code: 200,
                bytes: b"200".to_vec(),
            },
            t0 + MS,
        );
        assert_eq!(
            drain(&mut t),
            [
                Output::Transmit(b"180".to_vec()),
                Output::Transmit(b"200".to_vec())
            ]
        );
        assert_eq!(t.state(), State::Accepted);
        assert_eq!(t.timers(), vec![(Timer::L, t0 + MS * 32001)]);
        // INVITE retransmissions are absorbed; the TU's 2xx resends pass.
        t.handle(Input::Retransmission, t0 + MS * 400);
        assert!(drain(&mut t).is_empty());
        t.handle(
            Input::Send {
                code: 200,
                bytes: b"200".to_vec(),
            },
            t0 + MS * 501,
        );
        assert_eq!(drain(&mut t), [Output::Transmit(b"200".to_vec())]);
        t.handle(Input::Ack, t0 + MS * 600);
        assert_eq!(drain(&mut t), [Output::Ack]);
        t.handle(Input::Timeout, t0 + MS * 32001);
        assert_eq!(drain(&mut t), [Output::Terminated]);
    }

    #[test]
    fn non_invite_server_timer_j_absorbs_retransmissions() {
        let t0 = Instant::now();
        let mut t = Transaction::server(false, Timers::default());
        assert_eq!(t.state(), State::Trying);
        t.handle(Input::Retransmission, t0);
        assert!(drain(&mut t).is_empty(), "Trying absorbs");
        t.handle(
            Input::Send {
                code: 200,
                bytes: b"200".to_vec(),
            },
            t0 + MS * 10,
        );
        assert_eq!(drain(&mut t), [Output::Transmit(b"200".to_vec())]);
        assert_eq!(t.state(), State::Completed);
        assert_eq!(t.timers(), vec![(Timer::J, t0 + MS * 32010)]);
        t.handle(Input::Retransmission, t0 + MS * 600);
        assert_eq!(drain(&mut t), [Output::Transmit(b"200".to_vec())]);
        // Later responses from the TU are not sent.
        t.handle(
            Input::Send {
                code: 500,
                bytes: b"500".to_vec(),
            },
            t0 + MS * 700,
        );
        assert!(drain(&mut t).is_empty());
        t.handle(Input::Timeout, t0 + MS * 32010);
        assert_eq!(drain(&mut t), [Output::Terminated]);
        t.handle(Input::Retransmission, t0 + MS * 32011);
        assert!(drain(&mut t).is_empty());
    }

    #[test]
    fn transport_error_terminates() {
        let t0 = Instant::now();
        let mut t = Transaction::client(false, req(), Timers::default(), t0);
        drain(&mut t);
        t.handle(Input::TransportError, t0);
        assert_eq!(drain(&mut t), [Output::TransportError, Output::Terminated]);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn late_timeout_catches_up_in_order() {
        // One handle call long after: every retransmission due is emitted,
        // then B.
        let t0 = Instant::now();
        let mut t = Transaction::client(true, req(), Timers::default(), t0);
        drain(&mut t);
        t.handle(Input::Timeout, t0 + Duration::from_secs(40));
        let out = drain(&mut t);
        let n = out
            .iter()
            .filter(|o| matches!(o, Output::Transmit(_)))
            .count();
        assert_eq!(n, 6);
        assert_eq!(out[6..], [Output::Timeout(Timer::B), Output::Terminated]);
    }

    #[test]
    fn tx_keys_match_ack_to_invite() {
        assert_eq!(
            TxKey::server("z9hG4bK1", "Host:5060", "ACK"),
            TxKey::server("z9hG4bK1", "host:5060", "INVITE")
        );
        assert_ne!(
            TxKey::server("z9hG4bK1", "h", "CANCEL"),
            TxKey::server("z9hG4bK1", "h", "INVITE")
        );
        assert_ne!(
            TxKey::client("z9hG4bK1", "BYE"),
            TxKey::client("z9hG4bK1", "INVITE")
        );
    }

    fn drain2(r: &mut Retransmit2xx) -> Vec<Output> {
        std::iter::from_fn(|| r.poll_output()).collect()
    }

    #[test]
    fn retransmit_2xx_doubles_to_t2_until_ack() {
        let t0 = Instant::now();
        let mut r = Retransmit2xx::start(b"200".to_vec(), Timers::default(), t0);
        assert_eq!(drain2(&mut r), [Output::Transmit(b"200".to_vec())]);
        let mut sent = Vec::new();
        while let Some(at) = r.poll_timeout() {
            if at > t0 + Duration::from_secs(12) {
                break;
            }
            r.handle(Input::Timeout, at);
            for o in drain2(&mut r) {
                assert_eq!(o, Output::Transmit(b"200".to_vec()));
                sent.push((at - t0).as_millis());
            }
        }
        assert_eq!(sent, [500, 1500, 3500, 7500, 11500]);
        // A retransmitted INVITE gets the 2xx at once.
        r.handle(Input::Retransmission, t0 + Duration::from_secs(12));
        assert_eq!(drain2(&mut r), [Output::Transmit(b"200".to_vec())]);
        r.handle(Input::Ack, t0 + Duration::from_secs(13));
        assert_eq!(drain2(&mut r), [Output::Terminated]);
        assert!(!r.running());
        assert_eq!(r.poll_timeout(), None);
        r.handle(Input::Timeout, t0 + Duration::from_secs(100));
        assert!(drain2(&mut r).is_empty());
    }

    #[test]
    fn retransmit_2xx_gives_up_at_64_t1() {
        let t0 = Instant::now();
        let mut r = Retransmit2xx::start(b"200".to_vec(), Timers::default(), t0);
        drain2(&mut r);
        let mut n = 0;
        let mut end = None;
        while let Some(at) = r.poll_timeout() {
            r.handle(Input::Timeout, at);
            for o in drain2(&mut r) {
                match o {
                    Output::Transmit(_) => n += 1,
                    Output::Timeout(_) => end = Some(at - t0),
                    _ => {}
                }
            }
        }
        // 0.5, 1.5, 3.5, 7.5, then every 4 s to 31.5: 10 resends.
        assert_eq!(n, 10);
        assert_eq!(end, Some(Duration::from_secs(32)));
    }
}
