//! `tern load rtp`'s run loop: [`rtp`] checks the arguments, sets up,
//! primes every stream ([`prime`]), runs one trial or a `--find-max`
//! search ([`trial`]: packets written, impaired, sent in batches, received
//! and accounted) and tears down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tern_secure::srtp::Suite;

use crate::impair::{ImpairConfig, Impairer};
use crate::report::{Latency, Output, Report};
use crate::rtp_setup::{setup, Gen, Sent, Stream, RING};
use crate::seq::SeqStats;
use crate::sys::{self, RxBatch, TxBatch};
use crate::{mem, Error, RtpArgs};

pub(crate) const MAGIC: &[u8; 3] = b"TRN";

fn relay_cpu(a: &RtpArgs, g: &Gen) -> Option<u64> {
    if let Some(f) = &g.floor {
        return f.cpu_ns();
    }
    a.relay_pid.and_then(|p| sys::process_cpu_ns(p).ok())
}

fn poll_rx(g: &Gen, timeout_ns: u64) {
    sys::wait_readable(&g.rx_fds, timeout_ns);
}

/// The RTP timestamp (8 kHz; 48 kHz for an Opus stream) of stream `c`
/// at `ns` (CLOCK_MONOTONIC).
fn ts_at(c: &Stream, origin_ns: u64, ns: u64) -> u32 {
    let hz: u128 = if c.opus.is_some() { 48_000 } else { 8000 };
    let ticks = u128::from(ns.saturating_sub(origin_ns)) * hz / 1_000_000_000;
    c.ts.wrapping_add(ticks as u32)
}

/// Writes the next packet of stream `idx` into `buf` (`buf.len()` bytes,
/// at least 28): RTP header, then the payload described in the crate
/// documentation, with send time `now` and nominal send time `nominal`
/// (ns), the latter also giving the RTP timestamp.
fn fill(buf: &mut [u8], c: &Stream, origin_ns: u64, id: u8, idx: u32, now: u64, nominal: u64) {
    buf[0] = 0x80;
    buf[1] = c.pt;
    buf[2..4].copy_from_slice(&c.seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts_at(c, origin_ns, nominal).to_be_bytes());
    buf[8..12].copy_from_slice(&c.ssrc.to_be_bytes());
    buf[12..15].copy_from_slice(MAGIC);
    buf[15] = id;
    buf[16..20].copy_from_slice(&idx.to_be_bytes());
    buf[20..28].copy_from_slice(&now.to_be_bytes());
    if buf.len() >= NOMINAL_END {
        buf[28..NOMINAL_END].copy_from_slice(&nominal.to_be_bytes());
    }
}

/// End of the nominal send time in the packet.
const NOMINAL_END: usize = 36;

fn be_u64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_be_bytes(w)
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Makes the plain packet `buf[..len]` of stream `c` (trial `id`) ready
/// to leave: remembers its send time where the receiver cannot read it,
/// samples it for the path check, protects it where the stream is SRTP.
/// Returns its length on the wire; `None` when it cannot be protected.
fn finish(c: &mut Stream, id: u8, buf: &mut [u8], len: usize) -> Option<usize> {
    if let Some(frame) = &c.opus {
        // An Opus stream (`--transcode OPUS`) carries a real frame: the
        // relay decodes it.
        let end = 12 + frame.len();
        buf.get_mut(12..end)?.copy_from_slice(frame);
        return Some(end);
    }
    if let Some(ring) = &mut c.ring {
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        ring[seq as usize % RING] = Sent {
            seq,
            id,
            ns: be_u64(&buf[20..28]),
            nominal: if len >= NOMINAL_END {
                be_u64(&buf[28..NOMINAL_END])
            } else {
                0
            },
        };
    }
    if let Some(ch) = &mut c.check {
        ch.sample(id, &buf[..len]);
    }
    match &mut c.tx_srtp {
        Some(ctx) => ctx.protect_rtp(buf, len).ok(),
        None => Some(len),
    }
}

/// Sends the packets of the delay line due now; returns (sent, errors).
fn send_due(imp: &mut Impairer, g: &mut Gen, txb: &mut [TxBatch], id: u8) -> (u64, u64) {
    let (mut sent, mut errors) = (0u64, 0u64);
    let now = sys::now_ns();
    while let Some((j, bytes)) = imp.pop_due(now) {
        let c = &mut g.streams[j];
        let b = &mut txb[c.sock];
        let buf = b.next_buf();
        buf[..bytes.len()].copy_from_slice(&bytes);
        // The real send time, for the relay-latency histogram.
        buf[20..28].copy_from_slice(&now.to_be_bytes());
        let Some(len) = finish(c, id, buf, bytes.len()) else {
            errors += 1;
            continue;
        };
        b.commit(len, &c.dest);
        if b.is_full() {
            let k = b.flush(&g.socks[c.sock]);
            sent += k as u64;
            errors += (sys::BATCH - k) as u64;
        }
    }
    (sent, errors)
}

/// What the receiver has counted in one trial.
struct Rx {
    hist: Histogram<u64>,
    nominal: Histogram<u64>,
    received: u64,
    /// Received once, by direction: A→B, B→A.
    by_dir: [u64; 2],
    foreign: u64,
}

/// Accounts one received datagram `p` of trial `id` on socket `sock`.
fn on_rx(g: &mut Gen, rx: &mut Rx, p: &[u8], sock: usize, src: u16, id: u8, now: u64) {
    let plain = p.len() >= 28 && &p[12..15] == MAGIC;
    if !plain && p.len() >= 12 {
        if let Some(j) = g.by_src(src) {
            // Transcoded: re-encoded by the relay, with its own SSRC and
            // sequence numbers; counted, no latency (no send time in it).
            let Some(c) = g.streams.get_mut(j) else {
                rx.foreign += 1;
                return;
            };
            // What the receiver answered or offered: PCMA toward B, PCMU
            // toward A; anything else is not what it accepts.
            let want = c.rx_pt;
            if p[1] & 0x7f != want {
                rx.foreign += 1;
                return;
            }
            let dups = c.stats.duplicates;
            c.stats.on_packet(u16::from_be_bytes([p[2], p[3]]));
            if c.stats.duplicates == dups {
                rx.received += 1;
                rx.by_dir[usize::from(c.back)] += 1;
            }
            return;
        }
    }
    let (j, sent_ns, nominal) = if plain {
        if p[15] != id {
            rx.foreign += 1;
            return;
        }
        let nominal = p.get(28..NOMINAL_END).map(be_u64);
        (be_u32(&p[16..20]) as usize, be_u64(&p[20..28]), nominal)
    } else {
        // SRTP toward the callee: the stream by SSRC, the send time from
        // its ring.
        let found = (p.len() >= 12 && sock >= g.b0)
            .then(|| g.by_ssrc(be_u32(&p[8..12])))
            .flatten();
        let Some((j, c)) = found else {
            rx.foreign += 1;
            return;
        };
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let Some(s) = c.ring.as_ref().map(|r| r[seq as usize % RING]) else {
            rx.foreign += 1;
            return;
        };
        if s.seq != seq || s.id != id {
            rx.foreign += 1;
            return;
        }
        (j, s.ns, (s.nominal > 0).then_some(s.nominal))
    };
    let Some(c) = g.streams.get_mut(j) else {
        rx.foreign += 1;
        return;
    };
    let seq = u16::from_be_bytes([p[2], p[3]]);
    let ssrc = be_u32(&p[8..12]);
    let dups = c.stats.duplicates;
    c.stats.on_packet(seq);
    if c.stats.duplicates == dups {
        rx.received += 1;
        rx.by_dir[usize::from(c.back)] += 1;
    }
    c.rewritten |= ssrc != c.ssrc;
    if let Some(ch) = &mut c.check {
        ch.on_packet(id, p);
    }
    rx.hist
        .saturating_record(now.saturating_sub(sent_ns).max(1));
    if let Some(nom) = nominal {
        rx.nominal.saturating_record(now.saturating_sub(nom).max(1));
    }
}

/// Reads what the receiving sockets hold; returns how many datagrams.
fn drain(g: &mut Gen, rxb: &mut RxBatch, rx: &mut Rx, id: u8) -> usize {
    let mut got = 0;
    for r in 0..g.rx.len() {
        let s = g.rx[r];
        let fd = g.rx_fds[r];
        for _ in 0..16 {
            let k = rxb.recv(fd, libc::MSG_DONTWAIT).unwrap_or(0);
            if k == 0 {
                break;
            }
            let now = sys::now_ns();
            got += k;
            for i in 0..k {
                on_rx(g, rx, rxb.get(i), s, rxb.src_port(i), id, now);
            }
            if k < sys::BATCH {
                break;
            }
        }
    }
    got
}

/// Flushes every socket's batch; returns (sent, errors).
fn flush_all(g: &Gen, txb: &mut [TxBatch]) -> (u64, u64) {
    let (mut sent, mut errors) = (0u64, 0u64);
    for (s, b) in txb.iter_mut().enumerate() {
        let q = b.len;
        let k = b.flush(&g.socks[s]);
        sent += k as u64;
        errors += (q - k) as u64;
    }
    (sent, errors)
}

/// One trial at `pps` packets per second in total.
fn trial(a: &RtpArgs, g: &mut Gen, pps: f64, id: u8, shutdown: &AtomicBool) -> Report {
    let n = g.streams.len();
    for c in &mut g.streams {
        c.stats = SeqStats::new();
        c.rewritten = false;
        if let Some(ch) = &mut c.check {
            ch.reset();
        }
    }
    let mut imp = Impairer::new(
        ImpairConfig {
            loss: a.loss / 100.0,
            reorder: a.reorder / 100.0,
            jitter_ns: (a.jitter_ms * 1e6) as u64,
            seed: a.seed.wrapping_add(u64::from(id)),
        },
        n,
    );
    let mut txb: Vec<TxBatch> = (0..g.socks.len()).map(|_| TxBatch::new()).collect();
    let mut rxb = RxBatch::new();
    let hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut rx = Rx {
        nominal: hist.clone(),
        hist,
        received: 0,
        by_dir: [0; 2],
        foreign: 0,
    };
    let pkt_len = 12 + a.payload.max(16);
    let (mut sent, mut send_errors) = (0u64, 0u64);
    let me = sys::gettid();
    let gen0 = sys::thread_cpu_ns(std::process::id(), me).unwrap_or(0);
    let cpu0 = relay_cpu(a, g);
    let sys0 = sys::system_busy_ns();
    let dur_ns = (a.duration * 1e9) as u64;
    let t0 = sys::now_ns();
    let end = t0 + dur_ns;
    let mut scheduled = 0u64;
    let mut cursor = 0usize;
    let ns_per_pkt = 1e9 / pps;

    loop {
        let now = sys::now_ns();
        if now >= end || shutdown.load(Ordering::Relaxed) {
            break;
        }
        let due = ((now - t0) as f64 / ns_per_pkt) as u64;
        let mut budget = due.saturating_sub(scheduled).min(4 * sys::BATCH as u64);
        let did_send = budget > 0;
        let origin = g.origin_ns;
        while budget > 0 {
            let idx = cursor as u32;
            // When this packet is due on the nominal schedule.
            let sched = t0 + (scheduled as f64 * ns_per_pkt) as u64;
            let c = &mut g.streams[cursor];
            cursor += 1;
            if cursor == n {
                cursor = 0;
            }
            scheduled += 1;
            budget -= 1;
            let dropped = imp.drop_next();
            if !dropped && imp.delays() {
                let mut bytes = vec![0u8; pkt_len];
                fill(&mut bytes, c, origin, id, idx, sys::now_ns(), sched);
                imp.enqueue(idx as usize, bytes, sys::now_ns());
            } else if !dropped {
                let s = c.sock;
                let b = &mut txb[s];
                let buf = b.next_buf();
                fill(
                    &mut buf[..pkt_len],
                    c,
                    origin,
                    id,
                    idx,
                    sys::now_ns(),
                    sched,
                );
                match finish(c, id, buf, pkt_len) {
                    Some(len) => {
                        let dest = c.dest;
                        b.commit(len, &dest);
                        if b.is_full() {
                            let k = b.flush(&g.socks[s]);
                            sent += k as u64;
                            send_errors += (sys::BATCH - k) as u64;
                        }
                    }
                    None => send_errors += 1,
                }
            }
            c.seq = c.seq.wrapping_add(1);
        }
        let (k, e) = send_due(&mut imp, g, &mut txb, id);
        sent += k;
        send_errors += e;
        let (k, e) = flush_all(g, &mut txb);
        sent += k;
        send_errors += e;
        let got = drain(g, &mut rxb, &mut rx, id);
        if !did_send && got == 0 {
            let mut next = t0 + ((scheduled + 1) as f64 * ns_per_pkt) as u64;
            if let Some(d) = imp.next_due() {
                next = next.min(d);
            }
            let wait = next.saturating_sub(sys::now_ns()).min(1_000_000);
            if wait > 2_000 {
                poll_rx(g, wait);
            }
        }
    }
    let send_end = sys::now_ns();
    // What the delay line still holds leaves on its schedule.
    imp.release_held();
    while !imp.is_empty() && !shutdown.load(Ordering::Relaxed) {
        let (k, e) = send_due(&mut imp, g, &mut txb, id);
        sent += k;
        send_errors += e;
        let (k, e) = flush_all(g, &mut txb);
        sent += k;
        send_errors += e;
        if drain(g, &mut rxb, &mut rx, id) == 0 {
            let next = imp.next_due().unwrap_or(0);
            let wait = next.saturating_sub(sys::now_ns()).min(1_000_000);
            if wait > 2_000 {
                poll_rx(g, wait);
            }
        }
    }
    let grace_end = sys::now_ns() + (a.grace * 1e9) as u64;
    while rx.received < sent && sys::now_ns() < grace_end {
        if drain(g, &mut rxb, &mut rx, id) == 0 {
            poll_rx(g, 1_000_000);
        }
    }
    let wall = (sys::now_ns() - t0) as f64;
    let cpu1 = relay_cpu(a, g);
    let sys1 = sys::system_busy_ns();
    let gen1 = sys::thread_cpu_ns(std::process::id(), me).unwrap_or(0);
    let send_s = (send_end - t0) as f64 / 1e9;
    let received = rx.received;
    let lost = sent.saturating_sub(received);
    let relay_ns = match (cpu0, cpu1) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64),
        _ => None,
    };
    let sys_ns = match (sys0, sys1) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64),
        _ => None,
    };
    let per_pkt = |ns: Option<f64>| ns.filter(|_| received > 0).map(|ns| ns / received as f64);
    let check_failures: Vec<String> = g
        .streams
        .iter()
        .filter_map(|c| c.check.as_ref().and_then(|ch| ch.verdict()))
        .collect();
    let checked = g
        .streams
        .iter()
        .filter_map(|c| c.check.as_ref().map(|ch| ch.verified))
        .sum();
    let streams = &g.streams;
    Report {
        label: a.label.clone().unwrap_or_else(|| {
            if a.floor {
                "floor".into()
            } else {
                format!("ng {}", a.ng)
            }
        }),
        calls: g.calls,
        target_pps: pps,
        duration_s: send_s,
        sent,
        send_errors,
        received,
        lost,
        loss_ratio: if sent == 0 {
            0.0
        } else {
            lost as f64 / sent as f64
        },
        duplicates: streams.iter().map(|c| c.stats.duplicates).sum(),
        reordered: streams.iter().map(|c| c.stats.reordered).sum(),
        foreign: rx.foreign,
        send_pps: sent as f64 / send_s,
        forwarded_pps: received as f64 / send_s,
        latency: Latency::of(&rx.hist),
        streams_received: streams.iter().filter(|c| c.stats.received > 0).count(),
        streams_ssrc_rewritten: streams.iter().filter(|c| c.rewritten).count(),
        relay_cpu_ns_per_pkt: per_pkt(relay_ns),
        relay_cpu_util: relay_ns.map(|ns| ns / wall),
        gen_cpu_util: gen1.saturating_sub(gen0) as f64 / wall,
        generator_limited: ((sent + imp.dropped) as f64) < 0.97 * pps * send_s,
        injected_drops: imp.dropped,
        injected_reorders: imp.reordered,
        nominal_delay: Latency::of(&rx.nominal),
        streams: n,
        srtp: a.srtp.clone(),
        received_a_to_b: rx.by_dir[0],
        received_b_to_a: rx.by_dir[1],
        sys_cpu_ns_per_pkt: per_pkt(sys_ns),
        sys_cpu_util: sys_ns.map(|ns| ns / wall),
        checked_packets: checked,
        check_failures,
    }
}

/// Sends one packet (trial 0, not measured) on every stream that has not
/// yet delivered one, every 20 ms, until all have: a relay may answer ng
/// before its sockets are bound, and a learning relay learns here.
fn prime(g: &mut Gen, shutdown: &AtomicBool) -> Result<(), Error> {
    let mut seen = vec![false; g.streams.len()];
    let mut left = seen.len();
    let mut txb = TxBatch::new();
    let mut rxb = RxBatch::new();
    let deadline = sys::now_ns() + 5_000_000_000;
    let origin = g.origin_ns;
    while left > 0 && !shutdown.load(Ordering::Relaxed) {
        if sys::now_ns() > deadline {
            let back = (0..seen.len())
                .filter(|&j| !seen[j] && g.streams[j].back)
                .count();
            return Err(format!(
                "{left} of {} streams delivered nothing within 5 s ({back} of them B→A; relay down, or not forwarding?)",
                seen.len()
            )
            .into());
        }
        for s in 0..g.socks.len() {
            for (i, c) in g.streams.iter_mut().enumerate() {
                if c.sock != s || seen[i] {
                    continue;
                }
                let buf = txb.next_buf();
                buf[..12].fill(0);
                buf[0] = 0x80;
                buf[1] = c.pt;
                buf[2..4].copy_from_slice(&c.seq.to_be_bytes());
                buf[4..8].copy_from_slice(&ts_at(c, origin, sys::now_ns()).to_be_bytes());
                buf[8..12].copy_from_slice(&c.ssrc.to_be_bytes());
                buf[12..15].copy_from_slice(MAGIC);
                buf[15] = 0;
                buf[16..20].copy_from_slice(&(i as u32).to_be_bytes());
                buf[20..28].fill(0);
                c.seq = c.seq.wrapping_add(1);
                let len = match (&mut c.tx_srtp, &c.opus) {
                    (Some(ctx), _) => ctx
                        .protect_rtp(buf, 28)
                        .map_err(|e| format!("protect: {e}"))?,
                    (None, Some(frame)) => {
                        buf[12..12 + frame.len()].copy_from_slice(frame);
                        12 + frame.len()
                    }
                    (None, None) => 28,
                };
                let d = c.dest;
                txb.commit(len, &d);
                if txb.is_full() {
                    txb.flush(&g.socks[s]);
                }
            }
            txb.flush(&g.socks[s]);
        }
        let until = sys::now_ns() + 20_000_000;
        while sys::now_ns() < until {
            for r in 0..g.rx.len() {
                let (sock, fd) = (g.rx[r], g.rx_fds[r]);
                while let Ok(k @ 1..) = rxb.recv(fd, libc::MSG_DONTWAIT) {
                    for j in 0..k {
                        let p = rxb.get(j);
                        let i = if p.len() >= 20 && &p[12..15] == MAGIC {
                            Some(be_u32(&p[16..20]) as usize)
                        } else if let Some(j) = g.by_src(rxb.src_port(j)) {
                            Some(j)
                        } else if p.len() >= 12 && sock >= g.b0 {
                            g.by_ssrc(be_u32(&p[8..12])).map(|(j, _)| j)
                        } else {
                            None
                        };
                        if let Some(i) = i.filter(|&i| i < seen.len() && !seen[i]) {
                            seen[i] = true;
                            left -= 1;
                        }
                    }
                }
            }
            poll_rx(g, 2_000_000);
        }
    }
    // Priming packets a relay still holds (in a jitter buffer) arrive
    // now rather than in the first trial: wait for 100 ms of quiet (2 s
    // at most).
    let stop = sys::now_ns() + 2_000_000_000;
    let mut last = sys::now_ns();
    while sys::now_ns() < stop && sys::now_ns() - last < 100_000_000 {
        for &fd in &g.rx_fds {
            while let Ok(1..) = rxb.recv(fd, libc::MSG_DONTWAIT) {
                last = sys::now_ns();
            }
        }
        poll_rx(g, 2_000_000);
    }
    Ok(())
}
/// Sets up, measures (one rate, or a search with `find_max`), tears down.
pub fn rtp(a: &RtpArgs, shutdown: &AtomicBool) -> Result<Output, Error> {
    if a.calls == 0 {
        return Err("--calls must be at least 1".into());
    }
    if a.payload < 16 || a.payload > 1400 {
        return Err("--payload must be 16..=1400 bytes".into());
    }
    for (name, v) in [("--loss", a.loss), ("--reorder", a.reorder)] {
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("{name} must be a percentage, 0..=100").into());
        }
    }
    if !(0.0..=10_000.0).contains(&a.jitter_ms) {
        return Err("--jitter-ms must be 0..=10000".into());
    }
    if let Some(c) = a.cpu {
        sys::pin_to(c).map_err(|e| format!("--cpu {c}: {e}"))?;
    }
    let srtp = match &a.srtp {
        Some(name) => Some(Suite::from_name(name).ok_or_else(|| {
            format!(
                "--srtp {name}: not a suite (one of {})",
                Suite::ALL.map(Suite::name).join(", ")
            )
        })?),
        None => None,
    };
    let both = a.both_ways || srtp.is_some();
    if both && a.floor {
        return Err("--floor forwards one way only: not with --both-ways or --srtp".into());
    }
    if srtp.is_some() && a.ssrc_rewrite {
        return Err(
            "--srtp finds protected packets' streams by SSRC: not with --ssrc-rewrite".into(),
        );
    }
    let streams = a.calls * if both { 2 } else { 1 };
    let base = a.pps.unwrap_or(streams as f64 * 1000.0 / a.ptime);
    if base.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err("the rate must be positive".into());
    }
    let mem_idle = a.relay_pid.and_then(mem::MemSnapshot::read);
    let mut g = setup(a, srtp, shutdown)?;
    prime(&mut g, shutdown)?;
    let mut out = Output {
        relay_mem_idle: mem_idle,
        relay_mem_loaded: a.relay_pid.and_then(mem::MemSnapshot::read),
        ..Output::default()
    };
    let mut id = 0u8;
    let acceptable = |r: &Report| {
        r.sent > 0 && r.loss_ratio < a.max_loss && r.latency.p99_us < a.max_p99_ms * 1e3
    };
    let mut run = |g: &mut Gen, pps: f64, out: &mut Output| -> Report {
        id = id.wrapping_add(1);
        let r = trial(a, g, pps, id, shutdown);
        if a.find_max && !a.json {
            eprintln!(
                "tern load: {:>10.0} pps target: sent {:>10.0} forwarded {:>10.0} pps, loss {:.4}%, p99 {:.0} us -> {}",
                pps,
                r.send_pps,
                r.forwarded_pps,
                r.loss_ratio * 100.0,
                r.latency.p99_us,
                if r.generator_limited {
                    "generator-limited"
                } else if acceptable(&r) {
                    "ok"
                } else {
                    "relay overloaded"
                }
            );
        }
        out.runs.push(r.clone());
        // Let queues drain between trials.
        std::thread::sleep(Duration::from_millis(200));
        r
    };
    if !a.find_max {
        run(&mut g, base, &mut out);
    } else {
        // Ramp up by 25 % from the nominal rate and stop at the first
        // failure: some relays (rtpengine) keep discarding for a while
        // after an overload, so nothing after one is trusted.
        let mut r = base;
        let mut best: Option<f64> = None;
        let mut why = "limit";
        for step in 0..40 {
            if shutdown.load(Ordering::Relaxed) {
                break;
            }
            let rep = run(&mut g, r, &mut out);
            if !acceptable(&rep) {
                why = "relay";
                break;
            }
            best = Some(best.map_or(rep.forwarded_pps, |b: f64| b.max(rep.forwarded_pps)));
            if rep.generator_limited {
                why = "generator";
                break;
            }
            r = if step == 0 {
                (r * 1.25).max(25_000.0)
            } else {
                r * 1.25
            };
        }
        out.max_pps = best;
        out.max_limited_by = Some(why.into());
    }
    if let Some(f) = g.floor.take() {
        f.stop();
    }
    drop(g); // deletes the calls
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_follow_the_nominal_schedule_at_8_khz() {
        let c = Stream {
            dest: sys::sockaddr_v4("127.0.0.1:9".parse().unwrap()),
            sock: 0,
            ssrc: 1,
            seq: 0,
            ts: u32::MAX - 100,
            stats: SeqStats::new(),
            rewritten: false,
            back: false,
            tx_srtp: None,
            ring: None,
            check: None,
            pt: 8,
            rx_pt: 0,
            opus: None,
        };
        let origin = 1_000_000_000;
        assert_eq!(ts_at(&c, origin, origin), u32::MAX - 100);
        // 20 ms later: 160 ticks, across the 32-bit wrap.
        assert_eq!(ts_at(&c, origin, origin + 20_000_000), 59);
        // Before the origin (cannot happen) reads as the origin.
        assert_eq!(ts_at(&c, origin, 0), u32::MAX - 100);
        let mut buf = [0u8; 40];
        fill(&mut buf, &c, origin, 3, 7, 5, origin + 1_000_000_000);
        assert_eq!(buf[1], 8, "the stream's payload type");
        assert_eq!(&buf[4..8], &7899u32.to_be_bytes(), "1 s = 8000 ticks");
        assert_eq!(&buf[20..28], &5u64.to_be_bytes(), "send time");
        assert_eq!(&buf[28..36], &(origin + 1_000_000_000).to_be_bytes());
        assert_eq!((buf[15], &buf[16..20]), (3, &7u32.to_be_bytes()[..]));
    }
}
