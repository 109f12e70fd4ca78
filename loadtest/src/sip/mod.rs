//! `tern load sip`: a SIP call-rate generator that is both ends of every
//! call.
//!
//! One thread (pin it with `--cpu`) owns two non-blocking UDP sockets: the
//! **caller** (UAC, `--port`, or an ephemeral port) and the **callee**
//! (UAS, `--port + 1`). The callee first REGISTERs `--user` at the SUT
//! (answering a 401 with digest credentials when `--password` is given),
//! so that the SUT routes `INVITE sip:USER@DOMAIN` to it. Then, for
//! `--duration` seconds, calls start on a fixed schedule (`--cps`, call `k`
//! at `k / cps` s, never in bursts; at most `--max-concurrent` in flight):
//!
//! ```text
//! caller              SUT (B2BUA)              callee
//!  INVITE (SDP) ─────▶          ─── INVITE ───▶
//!                     ◀── 200 (SDP answer) ───
//!  ◀──────── 200      ACK ──────▶  ─── ACK ───▶
//!  (--hold-ms)
//!  BYE ──────────────▶          ─── BYE ──────▶
//!  ◀──────── 200                ◀── 200 ──────
//! ```
//!
//! # What it measures
//!
//! - *setup latency*: the call's first INVITE sent to its 2xx received
//!   (ns, CLOCK_MONOTONIC, reported in µs; a 407 challenge round and any
//!   retransmission are inside it). "Received" is the kernel's arrival
//!   stamp (`SO_TIMESTAMPNS`, [`rx`]), so time the 2xx spent waiting for
//!   the generator to read it is not counted; that wait is reported apart
//!   (*rx wait*);
//! - *setup in SUT*: per call, the setup latency less the callee's
//!   turnaround (the B-leg INVITE's arrival to the callee's 2xx sent; the
//!   callee finds the call by the index in the From URI, which a B2BUA
//!   copies): what the SUT and the kernel took;
//! - *BYE latency*: BYE sent to its 2xx received, likewise;
//! - *start lag*: how late each call started against its schedule (a large
//!   lag means the generator, not the SUT, limited the rate);
//! - failures by reason, the SUT's CPU time per call (`--relay-pid`: every
//!   thread of that process, from `/proc/PID/task/*/schedstat`) and the
//!   generator thread's CPU use.
//!
//! # Protocol
//!
//! RFC 3261 over UDP: the INVITE is retransmitted on Timer A (T1 = 500 ms,
//! doubling, §17.1.1.2) until a provisional or final response arrives, a
//! BYE on Timer E (doubling up to T2 = 4 s, §17.1.2.2), the callee's 2xx
//! until its ACK (§13.3.1.4). A call that has no final response
//! `--timeout-ms` (default 32 s = Timer B) after its INVITE or BYE fails as
//! a timeout. Non-2xx finals are ACKed (§17.1.1.3). A 401/407 is answered
//! once per call with digest credentials (RFC 7616 `qop=auth`, MD5 unless
//! `--sha256`); the challenge's nonce is then reused for later INVITEs with
//! an increasing nonce-count, as a phone does, unless `--auth-each-call`.
//!
//! Messages from the SUT are read with a small header scanner
//! ([`msg::Msg`]); anything it cannot read, or that matches no call, is
//! counted (`unexpected`, `stray`), never trusted.

pub mod digest;
mod gen;
pub mod msg;
pub mod rx;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::gen::Gen;
use crate::{sys, Error, Latency};

/// RFC 3261 T1: the first retransmission interval, ns.
const T1: u64 = 500_000_000;
/// RFC 3261 T2: the longest non-INVITE retransmission interval, ns.
const T2: u64 = 4_000_000_000;
/// How long registration (and the probe before it) may take.
const REGISTER_LIMIT: Duration = Duration::from_secs(5);
/// Datagrams read from one socket per loop turn: the rest wait a turn, so
/// that neither socket nor the timers starve.
const RX_PER_TURN: usize = 256;
/// Timers fired per loop turn.
const TIMERS_PER_TURN: usize = 4096;
/// Longest sleep of the loop, so that shutdown is noticed.
const MAX_WAIT_NS: u64 = 50_000_000;

/// `tern load sip`.
#[derive(clap::Args, Debug, Clone)]
pub struct SipArgs {
    /// The SIP server under test (UDP), HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:5060")]
    pub sip: String,
    /// Calls started per second.
    #[arg(long, default_value_t = 100.0)]
    pub cps: f64,
    /// Seconds during which calls start (then in-flight calls finish).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// How long each call stays up between ACK and BYE, ms.
    #[arg(long, default_value_t = 0)]
    pub hold_ms: u64,
    /// Calls in flight at most; a call due when the cap is reached waits
    /// (and its start lag shows it).
    #[arg(long, default_value_t = 20_000)]
    pub max_concurrent: usize,
    /// A call fails when its INVITE or BYE has no final response after
    /// this many ms (RFC 3261 Timer B/F: 32 s).
    #[arg(long, default_value_t = 32_000)]
    pub timeout_ms: u64,
    /// The callee's AOR user: it registers `sip:USER@DOMAIN` and every call
    /// goes to it. Also the digest username.
    #[arg(long, default_value = "tern-load")]
    pub user: String,
    /// Digest password, for a SUT with users (401 on REGISTER, 407 on
    /// INVITE); without it a challenge fails the run or the call.
    #[arg(long)]
    pub password: Option<String>,
    /// Answer SHA-256 challenges rather than MD5 when both are offered.
    #[arg(long)]
    pub sha256: bool,
    /// Get a fresh challenge for every call instead of reusing the nonce.
    #[arg(long)]
    pub auth_each_call: bool,
    /// Host part of the URIs (the SUT's local domain) [default: the SUT's
    /// address].
    #[arg(long)]
    pub domain: Option<String>,
    /// Address the generator binds to (and its SDP and Contacts advertise).
    #[arg(long, default_value = "127.0.0.1")]
    pub local_ip: Ipv4Addr,
    /// The caller's UDP port; the callee takes PORT+1 [default: ephemeral
    /// ports].
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The SUT's PID: report its CPU time per call.
    #[arg(long)]
    pub relay_pid: Option<u32>,
    /// Pin the generator to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Label for the report (e.g. the SUT's name).
    #[arg(long)]
    pub label: Option<String>,
    /// Search the highest rate: from --cps up by 25 % per step of
    /// --duration s, until a step has a failed call, achieves under 95 %
    /// of its target, or its p99 setup in the SUT exceeds --max-p99-ms.
    #[arg(long)]
    pub find_max: bool,
    /// p99 setup latency in the SUT (ms) that --find-max accepts.
    #[arg(long, default_value_t = 50.0)]
    pub max_p99_ms: f64,
    /// The highest rate --find-max tries.
    #[arg(long, default_value_t = 20_000.0)]
    pub max_cps: f64,
}

/// What `tern load sip --json` prints: one run at one target rate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SipReport {
    pub label: String,
    pub target_cps: f64,
    /// Seconds during which calls started.
    pub duration_s: f64,
    pub hold_ms: u64,
    /// Calls started (first INVITE sent).
    pub attempted: u64,
    /// Calls whose INVITE got a 2xx.
    pub answered: u64,
    /// Calls whose INVITE and BYE both got a 2xx.
    pub completed: u64,
    /// Calls that did not complete: `attempted - completed`.
    pub failed: u64,
    /// Failed calls by reason: `invite_CODE` (a non-2xx final, after at
    /// most one authentication round), `invite_timeout`, `bye_CODE`,
    /// `bye_timeout`, `sut_bye` (the SUT hung up), `unfinished` (still in
    /// flight when the run ended: interrupted or past its time bound).
    pub failures: BTreeMap<String, u64>,
    /// Calls started per second of the start window (first to last start).
    pub offered_cps: f64,
    /// Completed calls per second of the same window.
    pub achieved_cps: f64,
    /// First INVITE sent to 2xx received, µs.
    pub setup_latency: Latency,
    /// BYE sent to 2xx received, µs.
    pub bye_latency: Latency,
    /// Per call, setup latency less the callee's turnaround: the time the
    /// SUT (and the kernel) held the call's INVITE and 2xx, µs.
    #[serde(default)]
    pub sut_setup_latency: Latency,
    /// The callee's INVITE arrival (kernel stamp) to its 2xx sent, µs:
    /// the generator's own share of the setup latency.
    #[serde(default)]
    pub callee_turnaround: Latency,
    /// How long received datagrams waited in the generator's sockets
    /// before it read them, µs (with `kernel_timestamps`): the part of a
    /// latency the generator's own scheduling would have added.
    #[serde(default)]
    pub rx_wait: Latency,
    /// Latencies end at the kernel's arrival time (`SO_TIMESTAMPNS`);
    /// without, at the generator's read.
    #[serde(default)]
    pub kernel_timestamps: bool,
    /// Actual start time minus scheduled start time, µs.
    pub start_lag: Latency,
    /// Calls that waited for the `--max-concurrent` cap.
    pub capped_starts: u64,
    pub max_in_flight: u64,
    /// Requests the caller sent again (Timer A, Timer E).
    pub retransmits: u64,
    /// 2xx the callee sent again before its ACK came.
    pub uas_retransmits: u64,
    /// 401/407 challenges answered during the calls.
    pub auth_challenges: u64,
    /// Provisional responses the caller received.
    pub provisional: u64,
    /// Datagrams that were not readable SIP, or requests the generator
    /// does not expect.
    pub unexpected: u64,
    /// Readable responses that match no call in progress (late
    /// retransmissions).
    pub stray: u64,
    /// Datagrams the kernel refused to send.
    pub send_errors: u64,
    /// SUT CPU time per completed call, ns (`--relay-pid`).
    pub relay_cpu_ns_per_call: Option<f64>,
    /// SUT CPU time / wall time over the calls (1.0 = one CPU busy).
    pub relay_cpu_util: Option<f64>,
    /// Generator thread CPU time / wall time (near 1.0: it may be the
    /// limit).
    pub gen_cpu_util: f64,
    /// The generator could not keep the schedule (without the concurrency
    /// cap: a p99 start lag over 20 ms, or under 97 % of the calls
    /// started; or its CPU over 90 %): the rate and latencies say more
    /// about it than about the SUT.
    pub generator_limited: bool,
    /// Seconds from the first call to the end of the last.
    pub wall_s: f64,
}

impl SipReport {
    pub fn from_json(s: &str) -> Result<SipReport, serde_json::Error> {
        serde_json::from_str(s)
    }
}

/// Runs `tern load sip` once at `--cps`; stops starting calls when
/// `shutdown` is set and gives those in flight 2 s to end.
///
/// # Errors
/// Bad arguments, sockets that cannot be bound, a bad `--cpu`, a SUT that
/// refuses or does not answer (OPTIONS probe and REGISTER, 5 s each), or a
/// REGISTER answered with a failure (or a challenge without
/// `--password`). Failed *calls* are not errors: they are in the report.
pub fn run(a: &SipArgs, shutdown: &AtomicBool) -> Result<SipReport, Error> {
    let mut g = prepare(a)?;
    let r = g.calls_loop(shutdown, a.cps, 0);
    finish(&mut g);
    Ok(r)
}

/// What `tern load sip --find-max --json` prints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SipSearch {
    /// Every step, in order; the last one failed unless the search ran
    /// out of steps.
    pub runs: Vec<SipReport>,
    /// The highest target rate whose step passed.
    pub max_cps: Option<f64>,
    /// What ended the search: `sut` (failed calls, a rate under 95 % of
    /// the target, or a p99 setup in the SUT over `--max-p99-ms`),
    /// `generator` (it could not keep the schedule), `limit`
    /// (`--max-cps` or 40 steps) or `interrupted`.
    pub limited_by: String,
}

/// `--find-max`: runs at `--cps`, then 25 % faster per step (each
/// `--duration` s, the same registration), until a step fails.
///
/// # Errors
/// As [`run`].
pub fn find_max(a: &SipArgs, shutdown: &AtomicBool) -> Result<SipSearch, Error> {
    let mut g = prepare(a)?;
    let mut out = SipSearch {
        limited_by: "limit".into(),
        ..SipSearch::default()
    };
    let mut cps = a.cps;
    let mut base = 0;
    // Bounded: 40 steps of 25 % span a factor of 7,500.
    for _ in 0..40 {
        if cps > a.max_cps {
            break;
        }
        let r = g.calls_loop(shutdown, cps, base);
        base += r.attempted;
        if shutdown.load(Ordering::Relaxed) {
            out.limited_by = "interrupted".into();
            out.runs.push(r);
            break;
        }
        let sut_ok = r.failed == 0
            && r.achieved_cps >= 0.95 * cps
            && r.sut_setup_latency.p99_us <= a.max_p99_ms * 1e3;
        if !a.json {
            eprintln!(
                "tern load sip: {cps:>8.0} calls/s: achieved {:.0}, failed {}, p99 setup {:.0} us (in SUT {:.0} us) -> {}",
                r.achieved_cps,
                r.failed,
                r.setup_latency.p99_us,
                r.sut_setup_latency.p99_us,
                if !sut_ok { "SUT limit" } else if r.generator_limited { "generator limit" } else { "ok" }
            );
        }
        let gen_limited = r.generator_limited;
        out.runs.push(r);
        if !sut_ok {
            out.limited_by = "sut".into();
            break;
        }
        if gen_limited {
            out.limited_by = "generator".into();
            break;
        }
        out.max_cps = Some(cps);
        cps *= 1.25;
        // Let the SUT settle (its BYE'd calls linger a moment).
        std::thread::sleep(Duration::from_millis(200));
    }
    finish(&mut g);
    Ok(out)
}

/// Checks the arguments, pins, binds, probes the SUT and registers.
fn prepare(a: &SipArgs) -> Result<Gen<'_>, Error> {
    if !(a.cps > 0.0 && a.cps.is_finite() && a.duration > 0.0 && a.duration.is_finite()) {
        return Err("--cps and --duration must be positive".into());
    }
    if a.max_concurrent == 0 || a.timeout_ms == 0 {
        return Err("--max-concurrent and --timeout-ms must be at least 1".into());
    }
    if a.port == u16::MAX {
        return Err("--port: PORT+1 must be a port too".into());
    }
    let sut = a
        .sip
        .to_socket_addrs()
        .map_err(|e| format!("--sip {}: {e}", a.sip))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("--sip {}: no IPv4 address", a.sip))?;
    if let Some(c) = a.cpu {
        sys::pin_to(c).map_err(|e| format!("--cpu {c}: {e}"))?;
    }
    let mut g = Gen::new(a, sut)?;
    g.probe()?;
    // Long enough for the whole run (40 steps with --find-max), at least
    // the usual hour.
    let steps = if a.find_max { 40.0 } else { 1.0 };
    let run_s = steps * (a.duration + (2 * a.timeout_ms + a.hold_ms) as f64 / 1e3) + 60.0;
    let expires = run_s.clamp(3600.0, f64::from(u32::MAX)) as u32;
    g.register(expires, REGISTER_LIMIT)
        .map_err(|e| format!("registering {}: {e}", a.user))?;
    Ok(g)
}

/// Removes the registration (best effort: leave no binding behind).
fn finish(g: &mut Gen) {
    if let Err(e) = g.register(0, Duration::from_secs(1)) {
        eprintln!("tern load sip: unregistering: {e}");
    }
}

/// Prints a `--find-max` search: each step, then the result.
pub fn print_search(s: &SipSearch) {
    for r in &s.runs {
        print(r);
        println!();
    }
    match s.max_cps {
        Some(m) => println!("max rate: {m:.0} calls/s (limited by {})", s.limited_by),
        None => println!("no step passed (limited by {})", s.limited_by),
    }
}

/// Prints a report as a table.
pub fn print(r: &SipReport) {
    println!(
        "{}: {:.0} calls/s for {} s (hold {} ms): attempted {}, answered {}, completed {}, failed {}",
        r.label, r.target_cps, r.duration_s, r.hold_ms, r.attempted, r.answered, r.completed, r.failed
    );
    println!(
        "offered {:.1} calls/s, achieved {:.1} calls/s; max in flight {}; wall {:.2} s",
        r.offered_cps, r.achieved_cps, r.max_in_flight, r.wall_s
    );
    println!(
        "{:<18} {:>9} {:>9} {:>9} {:>9}",
        "latency us", "p50", "p99", "p99.9", "max"
    );
    for (name, l) in [
        ("setup (INVITE-200)", &r.setup_latency),
        ("setup in SUT", &r.sut_setup_latency),
        ("callee turnaround", &r.callee_turnaround),
        ("BYE-200", &r.bye_latency),
        ("start lag", &r.start_lag),
        ("rx wait", &r.rx_wait),
    ] {
        println!(
            "{:<18} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            name, l.p50_us, l.p99_us, l.p999_us, l.max_us
        );
    }
    println!(
        "retransmits {} (callee {}); auth challenges {}; provisional {}; unexpected {}; stray {}; send errors {}",
        r.retransmits, r.uas_retransmits, r.auth_challenges, r.provisional, r.unexpected, r.stray, r.send_errors
    );
    println!(
        "SUT cpu/call {}; SUT cpu {}; generator cpu {:.0}%{}",
        r.relay_cpu_ns_per_call
            .map_or("-".into(), |v| format!("{:.1} us", v / 1e3)),
        r.relay_cpu_util
            .map_or("-".into(), |v| format!("{:.0}%", v * 100.0)),
        r.gen_cpu_util * 100.0,
        if r.generator_limited {
            " (generator-limited)"
        } else {
            ""
        }
    );
    if !r.failures.is_empty() {
        let f: Vec<String> = r.failures.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("failures: {}", f.join(", "));
    }
}
