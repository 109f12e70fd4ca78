//! The generator's state and event loop: the caller's calls (UAC), the
//! callee's dialogs (UAS), their timers, and the registration before
//! them. See the [`super`] module for what it does and measures.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::digest::{Alg, Challenge};
use super::msg::{self, response, sdp, Msg};
use super::rx;
use super::{
    SipArgs, SipReport, MAX_WAIT_NS, REGISTER_LIMIT, RX_PER_TURN, T1, T2, TIMERS_PER_TURN,
};
use crate::{sys, Error, Latency};

/// Where a caller-side call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UacState {
    /// INVITE sent, retransmitting.
    Calling,
    /// A provisional response came: no more retransmissions.
    Proceeding,
    /// 2xx received and ACKed; BYE at `next_at`.
    Up,
    /// BYE sent.
    Byeing,
}

/// The From user of call `IDX` is `CALLERIDX`.
const CALLER: &str = "tern-load-c";

struct Uac {
    idx: u64,
    state: UacState,
    cseq: u32,
    /// The current INVITE's branch (its non-2xx final is ACKed on it).
    branch: String,
    /// The request the timer retransmits (INVITE or BYE).
    req: Vec<u8>,
    /// The ACK of the 2xx, repeated when the 2xx is.
    ack: Vec<u8>,
    /// The To of the 2xx (with the SUT's tag) and its Contact URI.
    to: String,
    target: String,
    auth_rounds: u8,
    invite_ns: u64,
    /// The callee's time on this call's INVITE: arrival to 2xx sent, ns.
    callee_ns: u64,
    bye_ns: u64,
    /// Retransmission (or BYE) time, and the interval that got there.
    next_at: u64,
    interval: u64,
    deadline: u64,
    timer_gen: u32,
}

struct Uas {
    ok: Vec<u8>,
    /// Where the INVITE came from: the 2xx goes back there.
    src: SocketAddr,
    acked: bool,
    next_at: u64,
    interval: u64,
    deadline: u64,
    timer_gen: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Uac(u64),
    Uas(String),
}

#[derive(Default)]
struct Counters {
    attempted: u64,
    answered: u64,
    completed: u64,
    failures: BTreeMap<String, u64>,
    retransmits: u64,
    uas_retransmits: u64,
    auth_challenges: u64,
    provisional: u64,
    unexpected: u64,
    stray: u64,
    send_errors: u64,
    capped: u64,
    max_in_flight: u64,
}

fn histogram() -> Histogram<u64> {
    // 1 ns .. 10 min, 3 significant digits: cannot fail with these bounds.
    Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).expect("histogram bounds")
}

pub(super) struct Gen<'a> {
    a: &'a SipArgs,
    sut: SocketAddr,
    caller: UdpSocket,
    callee: UdpSocket,
    /// `ip:port` of each socket, as Via and Contact spell it.
    caller_hp: String,
    callee_hp: String,
    /// Advertised (bound, never read) media ports: caller, callee.
    media: [u16; 2],
    _media_socks: [UdpSocket; 2],
    domain: String,
    /// Call-IDs are `IDX-SUFFIX`.
    suffix: String,
    calls: HashMap<u64, Uac>,
    uas: HashMap<String, Uas>,
    uas_tags: u64,
    timers: BinaryHeap<Reverse<(u64, Key, u32)>>,
    inv_auth: Option<Challenge>,
    c: Counters,
    setup_h: Histogram<u64>,
    bye_h: Histogram<u64>,
    /// Setup latency less the callee's turnaround, per call.
    sut_setup_h: Histogram<u64>,
    /// The callee's INVITE arrival to 2xx sent.
    callee_h: Histogram<u64>,
    /// Datagram arrival (kernel stamp) to the generator reading it.
    rx_wait_h: Histogram<u64>,
    /// Both sockets stamp arrivals (`SO_TIMESTAMPNS`).
    stamped: bool,
    lag_h: Histogram<u64>,
    rx: Vec<u8>,
}

fn bind(ip: Ipv4Addr, port: u16) -> Result<UdpSocket, Error> {
    let s = UdpSocket::bind((ip, port)).map_err(|e| format!("bind {ip}:{port}: {e}"))?;
    sys::set_bufs(&s, 4 << 20);
    s.set_nonblocking(true)?;
    Ok(s)
}

// The callee side (answering the SUT's INVITEs) lives in its own file.
mod callee;

impl<'a> Gen<'a> {
    pub(super) fn new(a: &'a SipArgs, sut: SocketAddr) -> Result<Gen<'a>, Error> {
        let caller = bind(a.local_ip, a.port)?;
        let callee = bind(a.local_ip, if a.port == 0 { 0 } else { a.port + 1 })?;
        let media = [bind(a.local_ip, 0)?, bind(a.local_ip, 0)?];
        let stamped = rx::enable_timestamps(&caller) && rx::enable_timestamps(&callee);
        let hp = |s: &UdpSocket| s.local_addr().map(|x| x.to_string());
        let suffix = format!(
            "{:x}{:08x}@tern-load",
            std::process::id(),
            rand::random::<u32>()
        );
        Ok(Gen {
            a,
            sut,
            caller_hp: hp(&caller)?,
            callee_hp: hp(&callee)?,
            caller,
            callee,
            media: [media[0].local_addr()?.port(), media[1].local_addr()?.port()],
            _media_socks: media,
            domain: a.domain.clone().unwrap_or_else(|| sut.ip().to_string()),
            suffix,
            calls: HashMap::new(),
            uas: HashMap::new(),
            uas_tags: 0,
            timers: BinaryHeap::new(),
            inv_auth: None,
            c: Counters::default(),
            setup_h: histogram(),
            bye_h: histogram(),
            sut_setup_h: histogram(),
            callee_h: histogram(),
            rx_wait_h: histogram(),
            stamped,
            lag_h: histogram(),
            rx: vec![0; 65_535],
        })
    }

    /// OPTIONS from a connected socket: on loopback a closed port answers
    /// with ICMP at once, which only a connected socket hears.
    pub(super) fn probe(&mut self) -> Result<(), Error> {
        let s = UdpSocket::bind((self.a.local_ip, 0))?;
        s.connect(self.sut)?;
        let me = s.local_addr()?;
        let req = format!(
            "OPTIONS sip:{dom} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKprobe{r:x};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{u}@{dom}>;tag=probe\r\nTo: <sip:{dom}>\r\n\
             Call-ID: probe-{sfx}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            dom = self.domain,
            r = rand::random::<u32>(),
            u = self.a.user,
            sfx = self.suffix,
        );
        let limit = std::time::Instant::now() + REGISTER_LIMIT;
        let mut wait = Duration::from_millis(500);
        let why = |e: io::Error| -> Error {
            if e.kind() == io::ErrorKind::ConnectionRefused {
                format!(
                    "{}: connection refused (is a SIP server listening there?)",
                    self.sut
                )
                .into()
            } else {
                format!("{}: {e}", self.sut).into()
            }
        };
        // Bounded: the deadline, with the wait doubling.
        while std::time::Instant::now() < limit {
            s.send(req.as_bytes()).map_err(why)?;
            s.set_read_timeout(Some(wait))?;
            match s.recv(&mut self.rx) {
                Ok(_) => return Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(why(e)),
            }
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        Err(format!(
            "{}: no answer to OPTIONS within {} s (is a SIP server running there?)",
            self.sut,
            REGISTER_LIMIT.as_secs()
        )
        .into())
    }

    /// REGISTERs (or with `expires` 0 removes) the callee's contact,
    /// answering up to two challenges, within `limit`.
    pub(super) fn register(&mut self, expires: u32, limit: Duration) -> Result<(), Error> {
        let a = self.a;
        let call_id = format!("reg-{}", self.suffix);
        let uri = format!("sip:{}", self.domain);
        let deadline = sys::now_ns() + limit.as_nanos() as u64;
        let mut auth: Option<String> = None;
        let mut cseq = if expires == 0 { 100 } else { 1 };
        // Bounded: at most three REGISTERs (two challenges answered).
        for _round in 0..3 {
            let branch = format!("z9hG4bKreg{cseq}x{:x}", rand::random::<u32>());
            let mut m = format!(
                "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {hp};branch={branch};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{u}@{dom}>;tag=reg\r\nTo: <sip:{u}@{dom}>\r\n\
                 Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
                 Contact: <sip:{u}@{hp}>\r\nExpires: {expires}\r\n",
                hp = self.callee_hp,
                u = a.user,
                dom = self.domain,
            );
            if let Some(v) = &auth {
                let _ = write!(m, "{v}\r\n");
            }
            m.push_str("Content-Length: 0\r\n\r\n");
            let (code, offered) = self.transact(m.as_bytes(), &call_id, cseq, deadline)?;
            match code {
                200..=299 => return Ok(()),
                401 | 407 => {
                    let pw = a.password.as_deref().ok_or_else(|| {
                        format!(
                            "{} challenged the REGISTER ({code}): pass --password",
                            self.sut
                        )
                    })?;
                    let mut c =
                        offered.ok_or_else(|| format!("{code} without a usable challenge"))?;
                    let name = if code == 401 {
                        "Authorization"
                    } else {
                        "Proxy-Authorization"
                    };
                    auth = Some(format!(
                        "{name}: {}",
                        c.answer(&a.user, pw, "REGISTER", &uri)
                    ));
                    cseq += 1;
                }
                code => {
                    return Err(format!("{} answered the REGISTER with {code}", self.sut).into())
                }
            }
        }
        Err("REGISTER still challenged after two answers (wrong --password?)".into())
    }

    /// Sends `req` from the callee socket until a final response with
    /// `call_id` and `cseq` arrives (Timer E retransmissions) or
    /// `deadline` (ns) passes; returns its code and the challenge it
    /// carries, if any. Other datagrams are counted and dropped.
    fn transact(
        &mut self,
        req: &[u8],
        call_id: &str,
        cseq: u32,
        deadline: u64,
    ) -> Result<(u16, Option<Challenge>), Error> {
        let mut interval = T1;
        let mut next = sys::now_ns();
        let mut proceeding = false;
        let prefer = if self.a.sha256 { Alg::Sha256 } else { Alg::Md5 };
        // Bounded by `deadline`.
        loop {
            let now = sys::now_ns();
            if now >= deadline {
                return Err(format!("no final response from {} in time", self.sut).into());
            }
            if now >= next {
                if !proceeding {
                    if let Err(e) = self.callee.send_to(req, self.sut) {
                        return Err(format!("send to {}: {e}", self.sut).into());
                    }
                }
                next = now + interval;
                interval = (interval * 2).min(T2);
            }
            wait(&[self.callee.as_raw_fd()], next.min(deadline) - now);
            // Bounded: one socket's queue per turn.
            for _ in 0..RX_PER_TURN {
                let n = match self.callee.recv_from(&mut self.rx) {
                    Ok((n, _)) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => break, // an ICMP error of an earlier send
                };
                let Some(m) = Msg::parse(&self.rx[..n]) else {
                    self.c.unexpected += 1;
                    continue;
                };
                let ours = m.call_id() == Some(call_id) && m.cseq() == Some((cseq, "REGISTER"));
                match m.code() {
                    Some(code) if ours && code < 200 => proceeding = true,
                    Some(code) if ours => {
                        let hdr = if code == 407 {
                            "proxy-authenticate"
                        } else {
                            "www-authenticate"
                        };
                        return Ok((code, Challenge::pick(m.headers_named(hdr), prefer)));
                    }
                    _ => self.c.stray += 1,
                }
            }
        }
    }

    /// `IDX` of a Call-ID `IDX-SUFFIX` of this run.
    fn idx_of(&self, call_id: &str) -> Option<u64> {
        let (i, rest) = call_id.split_once('-')?;
        (rest == self.suffix).then(|| i.parse().ok()).flatten()
    }

    fn send(&mut self, callee: bool, bytes: &[u8], to: SocketAddr) {
        let s = if callee { &self.callee } else { &self.caller };
        if s.send_to(bytes, to).is_err() {
            self.c.send_errors += 1;
        }
    }

    fn arm_uac(&mut self, idx: u64) {
        if let Some(c) = self.calls.get_mut(&idx) {
            c.timer_gen = c.timer_gen.wrapping_add(1);
            let at = c.next_at.min(c.deadline);
            if at != u64::MAX {
                self.timers.push(Reverse((at, Key::Uac(idx), c.timer_gen)));
            }
        }
    }

    fn fail(&mut self, idx: u64, why: String) {
        if self.calls.remove(&idx).is_some() {
            *self.c.failures.entry(why).or_default() += 1;
        }
    }

    fn via(&self, branch: &str) -> String {
        format!(
            "Via: SIP/2.0/UDP {};branch={branch};rport\r\n",
            self.caller_hp
        )
    }

    fn ruri(&self) -> String {
        format!("sip:{}@{}", self.a.user, self.domain)
    }

    fn from(&self, idx: u64) -> String {
        // The B2BUA copies the From URI into the callee's leg: the index
        // in it lets the callee tell which call it answers.
        format!("<sip:{CALLER}{idx}@{}>;tag=c{idx}", self.domain)
    }

    /// INVITE `cseq` of call `idx` on `branch`, with `auth` (a whole header
    /// line) when given; SDP: PCMU and telephone-event, as SIPp's `uac`
    /// plus RFC 4733 events.
    fn invite(&self, idx: u64, cseq: u32, branch: &str, auth: Option<&str>) -> Vec<u8> {
        let ip = self.a.local_ip;
        let sdp = sdp(ip, self.media[0], idx);
        let mut m = format!("INVITE {} SIP/2.0\r\n", self.ruri());
        m.push_str(&self.via(branch));
        let _ = write!(
            m,
            "Max-Forwards: 70\r\nFrom: {from}\r\nTo: <{to}>\r\nCall-ID: {idx}-{sfx}\r\n\
             CSeq: {cseq} INVITE\r\nContact: <sip:tern-load-caller@{hp}>\r\n",
            from = self.from(idx),
            to = self.ruri(),
            sfx = self.suffix,
            hp = self.caller_hp,
        );
        if let Some(a) = auth {
            let _ = write!(m, "{a}\r\n");
        }
        let _ = write!(
            m,
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        m.into_bytes()
    }

    /// An in-dialog request of call `idx` (ACK, BYE) toward `target`.
    fn in_dialog(
        &self,
        idx: u64,
        method: &str,
        cseq: u32,
        c: (&str, &str),
        branch: &str,
    ) -> Vec<u8> {
        let (target, to) = c;
        let mut m = format!("{method} {target} SIP/2.0\r\n");
        m.push_str(&self.via(branch));
        let _ = write!(
            m,
            "Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {idx}-{}\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            self.from(idx),
            to,
            self.suffix
        );
        m.into_bytes()
    }

    /// The credentials line for the next INVITE, from the challenge kept
    /// for reuse (`None` without one or a password).
    fn invite_auth(&mut self, challenge: Option<&mut Challenge>) -> Option<String> {
        let pw = self.a.password.as_deref()?;
        let ruri = self.ruri();
        let c = match challenge {
            Some(c) => c,
            None => self.inv_auth.as_mut()?,
        };
        Some(format!(
            "Proxy-Authorization: {}",
            c.answer(&self.a.user, pw, "INVITE", &ruri)
        ))
    }

    fn start_call(&mut self, idx: u64) {
        let auth = if self.a.auth_each_call {
            None
        } else {
            self.invite_auth(None)
        };
        let branch = format!("z9hG4bK{idx}x1");
        let req = self.invite(idx, 1, &branch, auth.as_deref());
        // The clock is read right at the send: calls started in one turn
        // leave one after the other.
        let now = sys::now_ns();
        self.send(false, &req, self.sut);
        self.c.attempted += 1;
        self.calls.insert(
            idx,
            Uac {
                idx,
                state: UacState::Calling,
                cseq: 1,
                branch,
                req,
                ack: Vec::new(),
                to: String::new(),
                target: self.ruri(),
                auth_rounds: 0,
                invite_ns: now,
                callee_ns: 0,
                bye_ns: 0,
                next_at: now + T1,
                interval: T1,
                deadline: now + self.a.timeout_ms * 1_000_000,
                timer_gen: 0,
            },
        );
        self.c.max_in_flight = self.c.max_in_flight.max(self.calls.len() as u64);
        self.arm_uac(idx);
    }

    /// One run at `cps` calls/s, call indices from `base` up: start on
    /// schedule, serve both sockets and the timers, until every call ended
    /// (or the time bound: the start window plus two timeouts and the
    /// hold). Counters and histograms start from zero.
    pub(super) fn calls_loop(&mut self, shutdown: &AtomicBool, cps: f64, base: u64) -> SipReport {
        let a = self.a;
        self.c = Counters::default();
        for h in [
            &mut self.setup_h,
            &mut self.bye_h,
            &mut self.sut_setup_h,
            &mut self.callee_h,
            &mut self.rx_wait_h,
            &mut self.lag_h,
        ] {
            h.reset();
        }
        let total = (cps * a.duration).round().max(1.0) as u64;
        let step = 1e9 / cps;
        let pid = std::process::id();
        let me = sys::gettid();
        let sut_cpu = || a.relay_pid.and_then(|p| sys::process_cpu_ns(p).ok());
        let gen0 = sys::thread_cpu_ns(pid, me).unwrap_or(0);
        let sut0 = sut_cpu();
        let t0 = sys::now_ns() + 1_000_000;
        let hard_end = t0
            + (a.duration * 1e9) as u64
            + 2 * a.timeout_ms * 1_000_000
            + a.hold_ms * 1_000_000
            + 1_000_000_000;
        let mut started = 0u64;
        let mut last_start = t0;
        let mut stop_at: Option<u64> = None;
        let fds = [self.caller.as_raw_fd(), self.callee.as_raw_fd()];
        // Bounded by `hard_end` (and 2 s after a shutdown).
        loop {
            let now = sys::now_ns();
            if stop_at.is_none() && shutdown.load(Ordering::Relaxed) {
                stop_at = Some(now);
            }
            let stopping = stop_at.is_some();
            // Start every call that is due (bounded by `total`).
            while !stopping && started < total {
                let due = t0 + (started as f64 * step) as u64;
                if now < due {
                    break;
                }
                if self.calls.len() >= a.max_concurrent {
                    self.c.capped += 1;
                    break;
                }
                self.lag_h.saturating_record((now - due).max(1));
                self.start_call(base + started);
                last_start = now;
                started += 1;
            }
            let all_started = stopping || started == total;
            if all_started && self.calls.is_empty() {
                break;
            }
            if now >= hard_end || stop_at.is_some_and(|s| now >= s + 2_000_000_000) {
                break;
            }
            // Sleep until the next start or timer, or a datagram.
            let mut until = now + MAX_WAIT_NS;
            if !all_started && self.calls.len() < a.max_concurrent {
                until = until.min(t0 + (started as f64 * step) as u64);
            }
            if let Some(Reverse((at, _, _))) = self.timers.peek() {
                until = until.min(*at);
            }
            if until > now {
                wait(&fds, until - now);
            }
            for callee in [false, true] {
                self.drain(callee);
            }
            self.fire_timers(sys::now_ns());
        }
        let end = sys::now_ns();
        let gen1 = sys::thread_cpu_ns(pid, me).unwrap_or(0);
        let sut = match (sut0, sut_cpu()) {
            (Some(x), Some(y)) => Some(y.saturating_sub(x)),
            _ => None,
        };
        for idx in self.calls.keys().copied().collect::<Vec<_>>() {
            self.fail(idx, "unfinished".into());
        }
        let c = &self.c;
        let failed = c.failures.values().sum::<u64>();
        let window = (last_start - t0) as f64 / 1e9 + 1.0 / cps;
        let wall = end.saturating_sub(t0).max(1);
        let lag = Latency::of(&self.lag_h);
        let gen_util = gen1.saturating_sub(gen0) as f64 / wall as f64;
        SipReport {
            label: a
                .label
                .clone()
                .unwrap_or_else(|| format!("sip {}", self.sut)),
            target_cps: cps,
            duration_s: a.duration,
            hold_ms: a.hold_ms,
            attempted: c.attempted,
            answered: c.answered,
            completed: c.completed,
            failed,
            failures: c.failures.clone(),
            offered_cps: c.attempted as f64 / window,
            achieved_cps: c.completed as f64 / window,
            setup_latency: Latency::of(&self.setup_h),
            bye_latency: Latency::of(&self.bye_h),
            sut_setup_latency: Latency::of(&self.sut_setup_h),
            callee_turnaround: Latency::of(&self.callee_h),
            rx_wait: Latency::of(&self.rx_wait_h),
            kernel_timestamps: self.stamped,
            generator_limited: gen_util > 0.9
                || (c.capped == 0
                    && (lag.p99_us > 20_000.0 || (c.attempted as f64) < 0.97 * total as f64)),
            start_lag: lag,
            capped_starts: c.capped,
            max_in_flight: c.max_in_flight,
            retransmits: c.retransmits,
            uas_retransmits: c.uas_retransmits,
            auth_challenges: c.auth_challenges,
            provisional: c.provisional,
            unexpected: c.unexpected,
            stray: c.stray,
            send_errors: c.send_errors,
            relay_cpu_ns_per_call: sut.map(|ns| ns as f64 / c.completed.max(1) as f64),
            relay_cpu_util: sut.map(|ns| ns as f64 / wall as f64),
            gen_cpu_util: gen_util,
            wall_s: wall as f64 / 1e9,
        }
    }

    /// Reads what waits on one socket (at most [`RX_PER_TURN`]).
    fn drain(&mut self, callee: bool) {
        for _ in 0..RX_PER_TURN {
            let s = if callee { &self.callee } else { &self.caller };
            let (n, src, stamp) = match rx::recv(s, &mut self.rx) {
                Ok((n, Some(src), stamp)) => (n, src, stamp),
                Ok(_) => {
                    self.c.unexpected += 1; // not IPv4: not the SUT
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // An ICMP error of an earlier send: the SUT went away.
                    self.c.send_errors += 1;
                    continue;
                }
            };
            let read = sys::now_ns();
            // The kernel's arrival time, on the monotonic clock: the
            // clocks' offset is read around it (a step of the real-time
            // clock between the two reads would skew one datagram).
            let now = match stamp {
                Some(real) => {
                    let off = rx::realtime_ns().saturating_sub(sys::now_ns());
                    real.saturating_sub(off).min(read)
                }
                None => read,
            };
            self.rx_wait_h.saturating_record((read - now).max(1));
            // The buffer is lent to the handler as an owned copy of the
            // datagram's length only: handlers also send.
            let data = std::mem::take(&mut self.rx);
            match Msg::parse(&data[..n]) {
                None => self.c.unexpected += 1,
                Some(m) if callee => self.on_callee(&m, src, now),
                Some(m) => self.on_caller(&m, src, now),
            }
            self.rx = data;
        }
    }

    /// A datagram on the caller socket: responses to our calls, or a
    /// request of the SUT inside one of them.
    fn on_caller(&mut self, m: &Msg, src: SocketAddr, now: u64) {
        let (Some(call_id), Some((num, method))) = (m.call_id(), m.cseq()) else {
            self.c.unexpected += 1;
            return;
        };
        let idx = self.idx_of(call_id);
        let Some(code) = m.code() else {
            // A request: the SUT hangs up (BYE), or something we do not do.
            let is_bye = m.method() == Some("BYE");
            let code = if is_bye && idx.is_some_and(|i| self.calls.contains_key(&i)) {
                200
            } else if is_bye {
                481
            } else {
                self.c.unexpected += 1;
                501
            };
            if let Some(r) = response(m, code, None, "", None) {
                self.send(false, &r, src);
            }
            if let (true, Some(i)) = (code == 200, idx) {
                self.fail(i, "sut_bye".into());
            }
            return;
        };
        let Some(c) = idx.and_then(|i| self.calls.get_mut(&i)) else {
            self.c.stray += 1;
            return;
        };
        let idx = c.idx;
        match method {
            "INVITE" if num == c.cseq => self.on_invite_response(idx, m, code, now),
            "BYE" if num == c.cseq + 1 && c.state == UacState::Byeing => {
                if code < 200 {
                    return;
                }
                if (200..300).contains(&code) {
                    self.bye_h
                        .saturating_record(now.saturating_sub(c.bye_ns).max(1));
                    self.c.completed += 1;
                    self.calls.remove(&idx);
                } else {
                    self.fail(idx, format!("bye_{code}"));
                }
            }
            _ => self.c.stray += 1,
        }
    }

    fn on_invite_response(&mut self, idx: u64, m: &Msg, code: u16, now: u64) {
        let Some(c) = self.calls.get_mut(&idx) else {
            return;
        };
        let early = matches!(c.state, UacState::Calling | UacState::Proceeding);
        if code < 200 {
            self.c.provisional += 1;
            if c.state == UacState::Calling {
                // §17.1.1.2: a provisional response stops Timer A.
                c.state = UacState::Proceeding;
                c.next_at = u64::MAX;
                self.arm_uac(idx);
            }
            return;
        }
        if (200..300).contains(&code) {
            if !early {
                // A retransmitted 2xx: our ACK was lost (§13.2.2.4).
                let ack = std::mem::take(&mut c.ack);
                self.send(false, &ack, self.sut);
                if let Some(c) = self.calls.get_mut(&idx) {
                    c.ack = ack;
                }
                return;
            }
            let Some(to) = m.header("to").filter(|t| msg::tag_of(t).is_some()) else {
                self.c.unexpected += 1;
                return; // no dialog without a To tag; Timer B decides
            };
            c.to = to.to_string();
            if let Some(t) = m.header("contact").and_then(msg::uri_of) {
                c.target = t.to_string();
            }
            let setup = now.saturating_sub(c.invite_ns).max(1);
            self.setup_h.saturating_record(setup);
            self.sut_setup_h
                .saturating_record(setup.saturating_sub(c.callee_ns).max(1));
            self.c.answered += 1;
            let (cseq, hold) = (c.cseq, self.a.hold_ms * 1_000_000);
            let ack = {
                let c = &self.calls[&idx];
                let branch = format!("z9hG4bK{idx}xa{cseq}");
                self.in_dialog(idx, "ACK", cseq, (&c.target, &c.to), &branch)
            };
            self.send(false, &ack, self.sut);
            if let Some(c) = self.calls.get_mut(&idx) {
                c.ack = ack;
                c.state = UacState::Up;
                c.next_at = now + hold;
                c.deadline = u64::MAX;
            }
            self.arm_uac(idx);
            return;
        }
        // A final failure: ACK it on the INVITE's branch (§17.1.1.3), also
        // when it is a retransmission.
        let (branch, cseq, rounds) = (c.branch.clone(), c.cseq, c.auth_rounds);
        let ack = {
            let mut a = format!("ACK {} SIP/2.0\r\n", self.ruri());
            a.push_str(&self.via(&branch));
            let _ = write!(
                a,
                "Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {idx}-{}\r\nCSeq: {} ACK\r\n\
                 Content-Length: 0\r\n\r\n",
                self.from(idx),
                m.header("to").unwrap_or(""),
                self.suffix,
                cseq
            );
            a.into_bytes()
        };
        self.send(false, &ack, self.sut);
        if !early {
            return;
        }
        if matches!(code, 401 | 407) && rounds < 2 && self.a.password.is_some() {
            let hdr = if code == 401 {
                "www-authenticate"
            } else {
                "proxy-authenticate"
            };
            let prefer = if self.a.sha256 { Alg::Sha256 } else { Alg::Md5 };
            if let Some(mut ch) = Challenge::pick(m.headers_named(hdr), prefer) {
                self.c.auth_challenges += 1;
                let line = self.invite_auth(Some(&mut ch)).unwrap_or_default();
                let line = if code == 401 {
                    line.replacen("Proxy-Authorization", "Authorization", 1)
                } else {
                    line
                };
                if !self.a.auth_each_call && code == 407 {
                    self.inv_auth = Some(ch);
                }
                let cseq = cseq + 1;
                let branch = format!("z9hG4bK{idx}x{cseq}");
                let req = self.invite(idx, cseq, &branch, Some(&line));
                self.send(false, &req, self.sut);
                if let Some(c) = self.calls.get_mut(&idx) {
                    c.auth_rounds += 1;
                    c.cseq = cseq;
                    c.branch = branch;
                    c.req = req;
                    c.state = UacState::Calling;
                    c.next_at = now + T1;
                    c.interval = T1;
                }
                self.arm_uac(idx);
                return;
            }
        }
        self.fail(idx, format!("invite_{code}"));
    }

    /// Fires the timers due at `now` (at most [`TIMERS_PER_TURN`]).
    fn fire_timers(&mut self, now: u64) {
        for _ in 0..TIMERS_PER_TURN {
            match self.timers.peek() {
                Some(Reverse((at, _, _))) if *at <= now => {}
                _ => return,
            }
            let Some(Reverse((_, key, gen))) = self.timers.pop() else {
                return;
            };
            match key {
                Key::Uac(idx) => self.uac_timer(idx, gen, now),
                Key::Uas(id) => self.uas_timer(id, gen, now),
            }
        }
    }

    fn uac_timer(&mut self, idx: u64, gen: u32, now: u64) {
        let Some(c) = self.calls.get_mut(&idx) else {
            return;
        };
        if c.timer_gen != gen {
            return; // superseded
        }
        if now >= c.deadline {
            let why = if c.state == UacState::Byeing {
                "bye_timeout"
            } else {
                "invite_timeout"
            };
            self.fail(idx, why.into());
            return;
        }
        if now < c.next_at {
            self.arm_uac(idx);
            return;
        }
        match c.state {
            UacState::Calling | UacState::Byeing => {
                // Timer A doubles without bound, Timer E up to T2.
                let cap = if c.state == UacState::Byeing {
                    T2
                } else {
                    u64::MAX
                };
                c.interval = c.interval.saturating_mul(2).min(cap);
                c.next_at = now + c.interval;
                let req = std::mem::take(&mut c.req);
                self.send(false, &req, self.sut);
                self.c.retransmits += 1;
                if let Some(c) = self.calls.get_mut(&idx) {
                    c.req = req;
                }
            }
            UacState::Proceeding => c.next_at = u64::MAX,
            UacState::Up => {
                let cseq = c.cseq + 1;
                let (target, to) = (c.target.clone(), c.to.clone());
                let bye =
                    self.in_dialog(idx, "BYE", cseq, (&target, &to), &format!("z9hG4bK{idx}xb"));
                let sent = sys::now_ns();
                self.send(false, &bye, self.sut);
                if let Some(c) = self.calls.get_mut(&idx) {
                    c.state = UacState::Byeing;
                    c.req = bye;
                    c.bye_ns = sent;
                    c.interval = T1;
                    c.next_at = now + T1;
                    c.deadline = now + self.a.timeout_ms * 1_000_000;
                }
            }
        }
        self.arm_uac(idx);
    }
}

/// Waits until one of `fds` is readable or `ns` pass (at most
/// `MAX_WAIT_NS`; ns resolution: a schedule of 1,000 calls/s needs better
/// than `poll`'s ms).
fn wait(fds: &[i32], ns: u64) {
    crate::sys::wait_readable(fds, ns.min(MAX_WAIT_NS));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SipArgs {
        SipArgs {
            sip: "127.0.0.1:9".into(),
            cps: 1.0,
            duration: 1.0,
            hold_ms: 60_000,
            max_concurrent: 10,
            timeout_ms: 1000,
            user: "bob".into(),
            password: None,
            sha256: false,
            auth_each_call: false,
            domain: None,
            local_ip: Ipv4Addr::LOCALHOST,
            port: 0,
            relay_pid: None,
            cpu: None,
            json: false,
            label: None,
            find_max: false,
            max_p99_ms: 50.0,
            max_cps: 20_000.0,
        }
    }

    /// Feeds `text` to the caller (or callee) side as if from the SUT.
    fn feed(g: &mut Gen, callee: bool, text: &str) {
        let sut = g.sut;
        match Msg::parse(text.as_bytes()) {
            None => g.c.unexpected += 1,
            Some(m) if callee => g.on_callee(&m, sut, sys::now_ns()),
            Some(m) => g.on_caller(&m, sut, sys::now_ns()),
        }
    }

    fn resp(code: u16, g: &Gen, idx: &str, cseq: &str, to_tag: &str, extra: &str) -> String {
        format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=c\r\n\
             To: <sip:bob@b>{to_tag}\r\nCall-ID: {idx}-{}\r\nCSeq: {cseq}\r\n{extra}\r\n",
            g.suffix
        )
    }

    #[test]
    fn odd_input_from_the_sut_is_counted_never_trusted() {
        let a = args();
        let mut g = Gen::new(&a, "127.0.0.1:9".parse().unwrap()).unwrap();
        g.start_call(0);
        g.start_call(1);
        g.start_call(2);
        // Unreadable, headerless, foreign, or for no call of ours.
        feed(&mut g, false, "SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n");
        feed(
            &mut g,
            false,
            "SIP/2.0 200 OK\r\nCall-ID: 0-other\r\nCSeq: 1 INVITE\r\n\r\n",
        );
        let big = resp(200, &g, "99999999999999999999", "1 INVITE", ";tag=t", "");
        feed(&mut g, false, &big);
        let r = resp(200, &g, "7", "1 INVITE", ";tag=t", "");
        feed(&mut g, false, &r);
        assert_eq!((g.c.unexpected, g.c.stray), (1, 3));
        // A 2xx without a To tag makes no dialog; with one it does, once.
        let r = resp(200, &g, "0", "1 INVITE", "", "");
        feed(&mut g, false, &r);
        assert_eq!((g.c.answered, g.c.unexpected), (0, 2));
        let ok = resp(
            200,
            &g,
            "0",
            "1 INVITE",
            ";tag=t",
            "Contact: <sip:b2b@127.0.0.1:9>\r\n",
        );
        feed(&mut g, false, &ok);
        feed(&mut g, false, &ok); // retransmitted: the ACK again
        assert_eq!(g.c.answered, 1);
        assert_eq!(g.calls[&0].state, UacState::Up);
        assert_eq!(g.calls[&0].target, "sip:b2b@127.0.0.1:9");
        // A BYE response before our BYE is stray.
        let r = resp(200, &g, "0", "2 BYE", ";tag=t", "");
        feed(&mut g, false, &r);
        assert_eq!(g.c.stray, 4);
        // Failures: a 486, and a 407 without a password.
        let r = resp(486, &g, "1", "1 INVITE", ";tag=t", "");
        feed(&mut g, false, &r);
        let r = resp(
            407,
            &g,
            "2",
            "1 INVITE",
            ";tag=t",
            "Proxy-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\n",
        );
        feed(&mut g, false, &r);
        assert_eq!(g.c.failures.get("invite_486"), Some(&1));
        assert_eq!(g.c.failures.get("invite_407"), Some(&1));
        // The SUT hangs up call 0.
        let bye = format!(
            "BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKb\r\nFrom: <sip:bob@b>;tag=t\r\n\
             To: <sip:a@b>;tag=c0\r\nCall-ID: 0-{}\r\nCSeq: 5 BYE\r\n\r\n",
            g.suffix
        );
        feed(&mut g, false, &bye);
        assert_eq!(g.c.failures.get("sut_bye"), Some(&1));
        assert!(g.calls.is_empty());

        // The callee: INVITEs it cannot answer, an ACK and a response for
        // nothing, a method it does not do.
        let before = g.c.unexpected;
        feed(
            &mut g,
            true,
            "INVITE sip:bob@x SIP/2.0\r\nCall-ID: b1\r\nCSeq: 1 INVITE\r\n\r\n",
        );
        feed(
            &mut g,
            true,
            "ACK sip:bob@x SIP/2.0\r\nCall-ID: b9\r\nCSeq: 1 ACK\r\n\r\n",
        );
        feed(
            &mut g,
            true,
            "SIP/2.0 200 OK\r\nCall-ID: reg\r\nCSeq: 1 REGISTER\r\n\r\n",
        );
        feed(
            &mut g,
            true,
            "INFO sip:bob@x SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKi\r\nFrom: <sip:a@b>;tag=1\r\n\
             To: <sip:bob@b>;tag=2\r\nCall-ID: b2\r\nCSeq: 1 INFO\r\n\r\n",
        );
        assert_eq!(g.c.unexpected, before + 2);
        assert!(g.uas.is_empty());
        // A good INVITE from an unknown caller is answered all the same.
        feed(
            &mut g,
            true,
            "INVITE sip:bob@x SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKv\r\n\
             From: <sip:nobody@b>;tag=1\r\nTo: <sip:bob@b>\r\nCall-ID: b3\r\nCSeq: 1 INVITE\r\n\r\n",
        );
        assert_eq!(g.uas.len(), 1);
    }
}
