//! `tern load setup`: the call setup rate of an ng relay.
//!
//! Sets up `--calls` calls one after the other over rtpengine's ng protocol
//! (UDP): `offer`, then `answer` once the offer's reply arrived, and
//! `delete` (after each call, after all of them, or never: `--delete`).
//! One request is outstanding at a time, so the rate is the inverse of the
//! relay's round trip plus the client's own work: this measures how fast a
//! proxy driving the relay one request at a time can set up calls.
//!
//! A *setup* is one offer plus its answer: its latency is from sending the
//! offer to receiving the answer's reply (ns, CLOCK_MONOTONIC), and the
//! setup rate is `calls / Σ setup latencies` (deletes are timed apart, so
//! `--delete each` and `--delete end` give comparable setup rates).
//! `--warmup` calls are set up first and not measured.
//!
//! The SDP of every call is a PCMU audio stream at the generator's
//! address (`--local-ip`, two sockets bound for it and never read): the
//! relay allocates its ports but no media flows.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::ng::{self, Ben, NgClient};
use crate::{sys, Error, Latency};

/// When `tern load setup` deletes its calls.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteWhen {
    /// Right after each call's answer: the relay holds one call at a time.
    Each,
    /// After all calls are set up: the relay holds `--calls` calls at the end.
    End,
    /// Never: the calls stay (until the relay's own timeout).
    Never,
}

/// `tern load setup`.
#[derive(clap::Args, Debug, Clone)]
pub struct SetupArgs {
    /// The relay's ng control socket (UDP).
    #[arg(long, default_value = "127.0.0.1:2223")]
    pub ng: SocketAddr,
    /// Calls to set up (measured).
    #[arg(long, default_value_t = 1000)]
    pub calls: usize,
    /// Calls set up (and deleted) before measuring, not counted.
    #[arg(long, default_value_t = 50)]
    pub warmup: usize,
    /// When to delete the calls.
    #[arg(long, value_enum, default_value_t = DeleteWhen::End)]
    pub delete: DeleteWhen,
    /// The relay's PID: report its CPU time per setup.
    #[arg(long)]
    pub relay_pid: Option<u32>,
    /// Pin the client to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Address the SDP advertises (two sockets are bound there).
    #[arg(long, default_value = "127.0.0.1")]
    pub local_ip: Ipv4Addr,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Label for the report (e.g. the relay's name).
    #[arg(long)]
    pub label: Option<String>,
}

/// What `tern load setup --json` prints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SetupReport {
    pub label: String,
    /// Measured calls (warm-up excluded).
    pub calls: usize,
    pub warmup: usize,
    /// `each`, `end` or `never`.
    pub delete: String,
    /// Calls per second: `calls / Σ setup latencies`.
    pub setups_per_s: f64,
    /// Offer sent to answer reply received, per call.
    pub setup_latency: Latency,
    /// Offer round trip alone.
    pub offer_latency: Latency,
    /// Answer round trip alone.
    pub answer_latency: Latency,
    /// Delete round trips (empty with `--delete never`).
    pub delete_latency: Latency,
    /// Deletes per second: `deletes / Σ delete latencies` (0 without).
    pub deletes_per_s: f64,
    /// Requests sent again because no reply came within 500 ms (each one
    /// adds at least 500 ms to its call's latency).
    pub retransmits: u64,
    /// Wall time from the first measured offer to the last reply, s
    /// (deletes included).
    pub wall_s: f64,
    /// Relay CPU time per measured setup (offer + answer), ns, with
    /// `--relay-pid`: all its threads over the setup loop, divided by
    /// `calls` (includes the deletes with `--delete each`).
    pub relay_cpu_ns_per_setup: Option<f64>,
    /// Client thread CPU time / wall time over the measured setups.
    pub client_cpu_util: f64,
}

/// Runs `tern load setup`; stops early (with an error) when `shutdown` is
/// set.
///
/// # Errors
/// No reply to a request after six tries 500 ms apart, a reply whose
/// `result` is not `ok`, an answer without SDP, a bad `--cpu`, or the
/// generator's sockets failing to bind.
pub fn run(a: &SetupArgs, shutdown: &AtomicBool) -> Result<SetupReport, Error> {
    if a.calls == 0 {
        return Err("--calls must be at least 1".into());
    }
    if let Some(c) = a.cpu {
        sys::pin_to(c).map_err(|e| format!("--cpu {c}: {e}"))?;
    }
    // Held for the run so that no one else gets the advertised ports.
    let socks = [
        UdpSocket::bind((a.local_ip, 0))?,
        UdpSocket::bind((a.local_ip, 0))?,
    ];
    let (caller, callee) = (socks[0].local_addr()?, socks[1].local_addr()?);
    let mut ng = NgClient::with_local(a.ng, Some(a.local_ip.into()))?;
    ng.ping()
        .map_err(|e| format!("{e} (is a relay serving ng on {}?)", a.ng))?;
    let pid = std::process::id();
    let id_of = |i: usize| format!("tern-setup-{pid}-{i}");

    for i in 0..a.warmup {
        check(shutdown)?;
        let id = format!("tern-setup-{pid}-w{i}");
        setup_call(&mut ng, &id, caller, callee, i as u64)?;
        delete(&mut ng, &id)?;
    }

    let mk = || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let (mut setup_h, mut offer_h, mut answer_h, mut delete_h) = (mk(), mk(), mk(), mk());
    let retrans0 = ng.retransmits();
    let me = sys::gettid();
    // Read once around the loop: reading /proc per call would slow the
    // client down by more than a relay's setup costs.
    let cpu = || a.relay_pid.and_then(|p| sys::process_cpu_ns(p).ok());
    let client0 = sys::thread_cpu_ns(pid, me).unwrap_or(0);
    let relay0 = cpu();
    let t0 = sys::now_ns();
    let mut setup_ns = 0u64;
    let mut delete_ns = 0u64;
    for i in 0..a.calls {
        check(shutdown)?;
        let id = id_of(i);
        let (offer, answer) = setup_call(&mut ng, &id, caller, callee, (a.warmup + i) as u64)?;
        setup_ns += offer + answer;
        offer_h.saturating_record(offer.max(1));
        answer_h.saturating_record(answer.max(1));
        setup_h.saturating_record((offer + answer).max(1));
        if a.delete == DeleteWhen::Each {
            let d = delete(&mut ng, &id)?;
            delete_ns += d;
            delete_h.saturating_record(d.max(1));
        }
    }
    let client1 = sys::thread_cpu_ns(pid, me).unwrap_or(0);
    let relay_setup_ns = match (relay0, cpu()) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x)),
        _ => None,
    };
    let setup_wall = sys::now_ns() - t0;
    if a.delete == DeleteWhen::End {
        for i in 0..a.calls {
            check(shutdown)?;
            let d = delete(&mut ng, &id_of(i))?;
            delete_ns += d;
            delete_h.saturating_record(d.max(1));
        }
    }
    let wall = sys::now_ns() - t0;
    let rate = |n: u64, ns: u64| {
        if ns == 0 || n == 0 {
            0.0
        } else {
            n as f64 * 1e9 / ns as f64
        }
    };
    let deletes = if a.delete == DeleteWhen::Never {
        0
    } else {
        a.calls as u64
    };
    Ok(SetupReport {
        label: a.label.clone().unwrap_or_else(|| format!("ng {}", a.ng)),
        calls: a.calls,
        warmup: a.warmup,
        delete: format!("{:?}", a.delete).to_lowercase(),
        setups_per_s: rate(a.calls as u64, setup_ns),
        setup_latency: Latency::of(&setup_h),
        offer_latency: Latency::of(&offer_h),
        answer_latency: Latency::of(&answer_h),
        delete_latency: Latency::of(&delete_h),
        deletes_per_s: rate(deletes, delete_ns),
        retransmits: ng.retransmits() - retrans0,
        wall_s: wall as f64 / 1e9,
        relay_cpu_ns_per_setup: relay_setup_ns.map(|ns| ns as f64 / a.calls as f64),
        client_cpu_util: client1.saturating_sub(client0) as f64 / setup_wall.max(1) as f64,
    })
}

fn check(shutdown: &AtomicBool) -> Result<(), Error> {
    if shutdown.load(Ordering::Relaxed) {
        return Err("interrupted".into());
    }
    Ok(())
}

/// The ng offer of call `id` from `caller` (session id `session`).
pub fn offer_msg(id: &str, caller: SocketAddr, session: u64) -> Ben {
    Ben::Dict(vec![
        ("command", Ben::s("offer")),
        ("call-id", Ben::s(id)),
        ("from-tag", Ben::s("caller")),
        ("replace", Ben::list(["origin", "session-connection"])),
        ("flags", Ben::list(["trust-address"])),
        ("sdp", Ben::s(ng::sdp(caller, session))),
    ])
}

/// The ng answer of call `id` from `callee`.
pub fn answer_msg(id: &str, callee: SocketAddr, session: u64) -> Ben {
    Ben::Dict(vec![
        ("command", Ben::s("answer")),
        ("call-id", Ben::s(id)),
        ("from-tag", Ben::s("caller")),
        ("to-tag", Ben::s("callee")),
        ("replace", Ben::list(["origin", "session-connection"])),
        ("flags", Ben::list(["trust-address"])),
        ("sdp", Ben::s(ng::sdp(callee, session))),
    ])
}

/// Offer then answer; returns their round trips (ns). The answer's reply
/// must carry SDP with a media address (the relay's ports for the caller).
fn setup_call(
    ng: &mut NgClient,
    id: &str,
    caller: SocketAddr,
    callee: SocketAddr,
    session: u64,
) -> Result<(u64, u64), Error> {
    let t0 = sys::now_ns();
    ng.cmd(&offer_msg(id, caller, session))
        .map_err(|e| format!("offer {id}: {e}"))?;
    let t1 = sys::now_ns();
    let reply = ng
        .cmd(&answer_msg(id, callee, session))
        .map_err(|e| format!("answer {id}: {e}"))?;
    let t2 = sys::now_ns();
    let sdp = ng::reply_sdp(&reply)?;
    ng::media_addr(&sdp).ok_or_else(|| format!("answer {id}: no media in {sdp:?}"))?;
    Ok((t1 - t0, t2 - t1))
}

/// Deletes call `id`; returns the round trip (ns).
fn delete(ng: &mut NgClient, id: &str) -> Result<u64, Error> {
    let t0 = sys::now_ns();
    ng.cmd(&Ben::Dict(vec![
        ("command", Ben::s("delete")),
        ("call-id", Ben::s(id)),
    ]))
    .map_err(|e| format!("delete {id}: {e}"))?;
    Ok(sys::now_ns() - t0)
}

/// Prints a report as a table.
pub fn print(r: &SetupReport) {
    println!(
        "{} ({} calls sequentially, {} warm-up, delete {}): {:.0} setups/s",
        r.label, r.calls, r.warmup, r.delete, r.setups_per_s
    );
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9}",
        "latency us", "p50", "p99", "p99.9", "max"
    );
    for (name, l) in [
        ("setup (o+a)", &r.setup_latency),
        ("offer", &r.offer_latency),
        ("answer", &r.answer_latency),
        ("delete", &r.delete_latency),
    ] {
        println!(
            "{:<16} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            name, l.p50_us, l.p99_us, l.p999_us, l.max_us
        );
    }
    println!(
        "deletes/s {:.0}; retransmits {}; relay cpu/setup {}; client cpu {:.0}%; wall {:.2} s",
        r.deletes_per_s,
        r.retransmits,
        r.relay_cpu_ns_per_setup
            .map_or("-".into(), |v| format!("{:.1} us", v / 1e3)),
        r.client_cpu_util * 100.0,
        r.wall_s
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_and_answer_carry_the_call_and_both_tags() {
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut out = Vec::new();
        offer_msg("c1", a, 7).encode(&mut out);
        let v: bt_bencode::Value = bt_bencode::from_slice(&out).unwrap();
        assert_eq!(v.get("command").and_then(|c| c.as_str()), Some("offer"));
        assert_eq!(v.get("call-id").and_then(|c| c.as_str()), Some("c1"));
        assert!(v.get("to-tag").is_none(), "an offer has no to-tag");
        let sdp = v.get("sdp").and_then(|s| s.as_str()).unwrap().to_string();
        assert_eq!(ng::media_addr(&sdp), Some(a));

        let mut out = Vec::new();
        answer_msg("c1", a, 7).encode(&mut out);
        let v: bt_bencode::Value = bt_bencode::from_slice(&out).unwrap();
        assert_eq!(v.get("command").and_then(|c| c.as_str()), Some("answer"));
        assert_eq!(v.get("to-tag").and_then(|c| c.as_str()), Some("callee"));
    }

    #[test]
    fn percentiles_in_microseconds() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for ns in 1..=1000u64 {
            h.record(ns * 1000).unwrap();
        }
        let l = Latency::of(&h);
        assert!((l.p50_us - 500.0).abs() <= 1.0, "{l:?}");
        assert!((l.p99_us - 990.0).abs() <= 1.0, "{l:?}");
        assert!((l.max_us - 1000.0).abs() <= 1.0, "{l:?}");
        assert_eq!(Latency::of(&mk_empty()).max_us, 0.0);
    }

    fn mk_empty() -> Histogram<u64> {
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap()
    }
}
