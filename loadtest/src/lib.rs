//! Load generators: `tern load rtp`, `tern load setup` and `tern load sip`
//! ([`sip`]: SIP calls per second through a B2BUA, as caller and callee).
//!
//! `tern load rtp` sets up `--calls` calls on any relay that speaks
//! rtpengine's ng protocol (`--ng ADDR`, offer + answer with
//! `trust-address`), sends RTP through each call from its caller side and
//! receives it on its callee side, then deletes the calls. It measures the
//! forwarded rate, loss, reordering, duplicates, latency percentiles (the
//! send time is in the payload) and, with `--relay-pid`, the relay's CPU
//! time per forwarded packet. `--floor` measures a built-in minimal
//! forwarder ([`floor`]) instead of a relay.
//!
//! # Sockets
//!
//! `--sockets K` sockets per side (4 by default): call `i` sends from
//! sender socket `i % K` and is received on receiver socket `i % K`. The
//! relay still sees one 5-tuple per call, since every call has its own
//! relay ports. Each socket sends with `sendmmsg` and receives with
//! `recvmmsg`, 64 datagrams at a time, from one thread (pin it with
//! `--cpu`).
//!
//! # Payload
//!
//! RTP, PT 0, `--payload` bytes (160 by default) of which the first 16 are
//! `"TRN" trial(u8) call(u32) send_ns(u64)`, so a receiver can attribute a
//! packet to its call even when the relay rewrites the SSRC, and ignore
//! late packets of an earlier `--find-max` trial. With 24 bytes or more,
//! `nominal_ns(u64)` follows: when the packet was generated, i.e. when it
//! would have left without injected impairments.
//!
//! # Impairments
//!
//! `--loss PCT`, `--reorder PCT` and `--jitter-ms N` impair the streams at
//! the sender ([`impair`], seeded by `--seed`): dropped packets are never
//! sent (reported as `injected_drops`, not as loss), a reordered packet
//! leaves right after the next packet of its stream, and jitter delays each
//! send by a uniform `[0, N]` ms. Sequence numbers and RTP timestamps stay
//! nominal. The receiver reports packets out of order (`reordered`) and the
//! delay of each packet beyond its nominal send time (`nominal_delay`).
//! `--jitter-buffer` asks the relay to de-jitter the calls (ng flag
//! `jitter-buffer`, with `jitter-buffer-target`/`jitter-buffer-max`).

pub mod floor;
pub mod impair;
pub mod mem;
pub mod ng;
pub mod seq;
pub mod setup;
pub mod sip;
pub mod sys;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::impair::{ImpairConfig, Impairer};
use crate::ng::{Ben, NgClient};
use crate::seq::SeqStats;
use crate::sys::{RxBatch, TxBatch};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `tern load ...`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum LoadCmd {
    /// RTP through a relay set up over ng (or through the built-in floor).
    Rtp(RtpArgs),
    /// Sequential ng offer + answer (+ delete): the relay's setup rate.
    Setup(setup::SetupArgs),
    /// SIP calls at a fixed rate through a B2BUA, as both caller and
    /// callee: setup latency, failures, the SUT's CPU per call.
    Sip(sip::SipArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct RtpArgs {
    /// The relay's ng control socket (UDP).
    #[arg(long, default_value = "127.0.0.1:2223")]
    pub ng: SocketAddr,
    /// Concurrent calls; each sends one RTP stream through the relay.
    #[arg(long, default_value_t = 100)]
    pub calls: usize,
    /// Total packets per second over all calls [default: calls × 1000/ptime].
    #[arg(long)]
    pub pps: Option<f64>,
    /// Packet interval per stream in ms, when --pps is not given.
    #[arg(long, default_value_t = 20.0)]
    pub ptime: f64,
    /// RTP payload bytes (at least 16).
    #[arg(long, default_value_t = 160)]
    pub payload: usize,
    /// Seconds of sending (per trial with --find-max).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// The relay's PID: report its CPU time per forwarded packet.
    #[arg(long)]
    pub relay_pid: Option<u32>,
    /// Search the highest rate with loss under --max-loss.
    #[arg(long)]
    pub find_max: bool,
    /// Loss ratio --find-max accepts.
    #[arg(long, default_value_t = 0.001)]
    pub max_loss: f64,
    /// p99 latency (ms) --find-max accepts: above it the relay is queueing,
    /// not keeping up, even if short trials lose nothing.
    #[arg(long, default_value_t = 20.0)]
    pub max_p99_ms: f64,
    /// Pin the generator to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Measure the built-in minimal forwarder instead of an ng relay.
    #[arg(long)]
    pub floor: bool,
    /// Pin the floor's forwarder thread to this CPU.
    #[arg(long)]
    pub floor_cpu: Option<usize>,
    /// Address the generator's sockets bind to (and its SDP advertises).
    #[arg(long, default_value = "127.0.0.1")]
    pub local_ip: Ipv4Addr,
    /// Sockets per side.
    #[arg(long, default_value_t = 4)]
    pub sockets: usize,
    /// Ask the relay to rewrite the SSRC toward the receiving side (the
    /// ng flag `SSRC-rewrite` in the offer).
    #[arg(long)]
    pub ssrc_rewrite: bool,
    /// Seconds to wait for stragglers after sending stops.
    #[arg(long, default_value_t = 0.3)]
    pub grace: f64,
    /// Label for the report (e.g. the relay's name).
    #[arg(long)]
    pub label: Option<String>,
    /// Drop this percentage of packets at the sender (seeded, random).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Swap this percentage of packets with the next packet of their
    /// stream (seeded, random).
    #[arg(long, default_value_t = 0.0)]
    pub reorder: f64,
    /// Delay each send by a uniform [0, N] ms; RTP timestamps stay nominal.
    #[arg(long, default_value_t = 0.0)]
    pub jitter_ms: f64,
    /// Seed of the impairments' RNG (trial k uses seed + k).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Ask the relay for a jitter buffer on each call (ng flag
    /// `jitter-buffer`).
    #[arg(long)]
    pub jitter_buffer: bool,
    /// The jitter buffer's target delay, ms (ng `jitter-buffer-target`).
    #[arg(long)]
    pub jitter_buffer_target: Option<u32>,
    /// The jitter buffer's maximum delay, ms (ng `jitter-buffer-max`).
    #[arg(long)]
    pub jitter_buffer_max: Option<u32>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds, in microseconds; all 0
    /// for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1e3;
        Latency {
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: h.max() as f64 / 1e3,
        }
    }
}

/// One measured run at one target rate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub label: String,
    pub calls: usize,
    pub target_pps: f64,
    pub duration_s: f64,
    pub sent: u64,
    /// Packets the generator could not hand to the kernel.
    pub send_errors: u64,
    /// Packets received once (duplicates not counted).
    pub received: u64,
    pub lost: u64,
    pub loss_ratio: f64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Packets that were not the generator's (or of an earlier trial).
    pub foreign: u64,
    pub send_pps: f64,
    pub forwarded_pps: f64,
    pub latency: Latency,
    /// Streams that received packets.
    pub streams_received: usize,
    /// Streams whose received SSRC differed from the one sent.
    pub streams_ssrc_rewritten: usize,
    /// Relay (or floor thread) CPU time per forwarded packet.
    pub relay_cpu_ns_per_pkt: Option<f64>,
    /// Relay CPU time / wall time over the run (1.0 = one CPU busy).
    pub relay_cpu_util: Option<f64>,
    /// Generator thread CPU time / wall time (near 1.0: it may be the limit).
    pub gen_cpu_util: f64,
    /// The generator sent less than 97 % of the target rate: it, not the
    /// relay, was the limit of this run.
    #[serde(default)]
    pub generator_limited: bool,
    /// Packets dropped on purpose (`--loss`): never sent, so counted in
    /// neither `sent` nor `lost`.
    #[serde(default)]
    pub injected_drops: u64,
    /// Packets sent after the next packet of their stream (`--reorder`).
    #[serde(default)]
    pub injected_reorders: u64,
    /// Arrival time minus nominal send time (when the packet was generated,
    /// before injected delay or reordering), us: relay latency plus
    /// injected delay plus any buffering in the relay. Zero when the
    /// payload is under 24 bytes.
    #[serde(default)]
    pub nominal_delay: Latency,
}

/// What `tern load rtp --json` prints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Output {
    pub runs: Vec<Report>,
    /// With --find-max: the highest forwarded rate whose loss and p99
    /// latency were acceptable.
    pub max_pps: Option<f64>,
    /// With --find-max: what ended the search: `relay` (loss or latency),
    /// `generator` (it could not send faster) or `limit` (rate cap).
    #[serde(default)]
    pub max_limited_by: Option<String>,
    /// With --relay-pid: the relay's memory before the calls were set up.
    #[serde(default)]
    pub relay_mem_idle: Option<mem::MemSnapshot>,
    /// With --relay-pid: the relay's memory with every call set up and
    /// primed (each delivered a packet), before the first trial.
    #[serde(default)]
    pub relay_mem_loaded: Option<mem::MemSnapshot>,
}

impl Output {
    pub fn from_json(s: &str) -> Result<Output, serde_json::Error> {
        serde_json::from_str(s)
    }
}

/// Runs `tern load ...`; stops early when `shutdown` is set.
pub fn run(cmd: LoadCmd, shutdown: Arc<AtomicBool>) -> Result<(), Error> {
    match cmd {
        LoadCmd::Rtp(a) => {
            let out = rtp(&a, &shutdown)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_table(&out);
            }
            Ok(())
        }
        LoadCmd::Setup(a) => {
            let r = setup::run(&a, &shutdown)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                setup::print(&r);
            }
            Ok(())
        }
        LoadCmd::Sip(a) if a.find_max => {
            let s = sip::find_max(&a, &shutdown)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                sip::print_search(&s);
            }
            Ok(())
        }
        LoadCmd::Sip(a) => {
            let r = sip::run(&a, &shutdown)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                sip::print(&r);
            }
            Ok(())
        }
    }
}

struct Call {
    dest: libc::sockaddr_in,
    sock: usize,
    ssrc: u32,
    seq: u16,
    /// RTP timestamp at the generator's clock origin ([`Gen::origin_ns`]):
    /// a packet's timestamp follows its nominal send time at 8 kHz, so
    /// that a relay's jitter buffer sees a sender whose clock keeps time.
    ts: u32,
    stats: SeqStats,
    rewritten: bool,
}

/// Deletes the calls it set up when dropped.
struct NgCalls {
    ng: NgClient,
    ids: Vec<String>,
}

impl Drop for NgCalls {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.ids) {
            let del = Ben::Dict(vec![("command", Ben::s("delete")), ("call-id", Ben::s(id))]);
            if let Err(e) = self.ng.cmd(&del) {
                eprintln!("tern load: delete: {e}");
                if e.to_string().ends_with("no reply") {
                    break; // the relay is gone: do not wait on every call
                }
            }
        }
    }
}

/// The generator: sockets, calls and the floor, if any.
struct Gen {
    /// CLOCK_MONOTONIC ns at which every call's timestamp is `Call::ts`.
    origin_ns: u64,
    tx: Vec<UdpSocket>,
    rx: Vec<UdpSocket>,
    calls: Vec<Call>,
    floor: Option<floor::Floor>,
    _ng: Option<NgCalls>,
}

fn bind_socks(ip: Ipv4Addr, n: usize) -> io::Result<Vec<UdpSocket>> {
    (0..n)
        .map(|_| {
            let s = UdpSocket::bind((ip, 0))?;
            sys::set_bufs(&s, 8 << 20);
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect()
}

fn setup(a: &RtpArgs, shutdown: &AtomicBool) -> Result<Gen, Error> {
    let k = a.sockets.max(1);
    let tx = bind_socks(a.local_ip, k)?;
    let rx = bind_socks(a.local_ip, if a.floor { 1 } else { k })?;
    let pid = std::process::id();
    let mk_call = |i: usize, dest: SocketAddr| -> Result<Call, Error> {
        Ok(Call {
            dest: sys::sockaddr_v4(sys::v4(dest)?),
            sock: i % k,
            ssrc: 0x5E00_0000 ^ (pid << 12) ^ i as u32,
            seq: (i as u16).wrapping_mul(7919),
            ts: (i as u32).wrapping_mul(104_729),
            stats: SeqStats::new(),
            rewritten: false,
        })
    };
    if a.floor {
        let to = sys::v4(rx[0].local_addr()?)?;
        let f = floor::Floor::start(SocketAddr::new(IpAddr::V4(a.local_ip), 0), to, a.floor_cpu)?;
        let calls = (0..a.calls)
            .map(|i| mk_call(i, f.addr))
            .collect::<Result<_, _>>()?;
        return Ok(Gen {
            origin_ns: sys::now_ns(),
            tx,
            rx,
            calls,
            floor: Some(f),
            _ng: None,
        });
    }
    let mut ng = NgCalls {
        ng: NgClient::with_local(a.ng, Some(IpAddr::V4(a.local_ip)))?,
        ids: Vec::with_capacity(a.calls),
    };
    ng.ng
        .ping()
        .map_err(|e| format!("{e} (is a relay serving ng on {}?)", a.ng))?;
    let mut calls = Vec::with_capacity(a.calls);
    let mut offer_flags = vec!["trust-address"];
    if a.ssrc_rewrite {
        offer_flags.push("SSRC-rewrite");
    }
    if a.jitter_buffer {
        offer_flags.push("jitter-buffer");
    }
    for i in 0..a.calls {
        if shutdown.load(Ordering::Relaxed) {
            return Err("interrupted".into());
        }
        let id = format!("tern-load-{pid}-{i}");
        let from = tx[i % k].local_addr()?;
        let to = rx[i % k].local_addr()?;
        let mut offer = vec![
            ("command", Ben::s("offer")),
            ("call-id", Ben::s(&id)),
            ("from-tag", Ben::s("caller")),
            ("replace", Ben::list(["origin", "session-connection"])),
            ("flags", Ben::list(offer_flags.iter().copied())),
            ("sdp", Ben::s(ng::sdp(from, i as u64))),
        ];
        if let Some(t) = a.jitter_buffer_target {
            offer.push(("jitter-buffer-target", Ben::Int(i64::from(t))));
        }
        if let Some(m) = a.jitter_buffer_max {
            offer.push(("jitter-buffer-max", Ben::Int(i64::from(m))));
        }
        let offer = Ben::Dict(offer);
        ng.ng.cmd(&offer).map_err(|e| format!("offer {i}: {e}"))?;
        ng.ids.push(id.clone());
        let answer = Ben::Dict(vec![
            ("command", Ben::s("answer")),
            ("call-id", Ben::s(&id)),
            ("from-tag", Ben::s("caller")),
            ("to-tag", Ben::s("callee")),
            ("replace", Ben::list(["origin", "session-connection"])),
            ("flags", Ben::list(["trust-address"])),
            ("sdp", Ben::s(ng::sdp(to, i as u64))),
        ]);
        let reply = ng.ng.cmd(&answer).map_err(|e| format!("answer {i}: {e}"))?;
        // The answer's SDP goes to the caller: where the caller sends.
        let sdp = ng::reply_sdp(&reply)?;
        let dest =
            ng::media_addr(&sdp).ok_or_else(|| format!("answer {i}: no media in {sdp:?}"))?;
        let dest = if dest.ip().is_unspecified() {
            SocketAddr::new(a.ng.ip(), dest.port())
        } else {
            dest
        };
        calls.push(mk_call(i, dest)?);
    }
    Ok(Gen {
        origin_ns: sys::now_ns(),
        tx,
        rx,
        calls,
        floor: None,
        _ng: Some(ng),
    })
}

const MAGIC: &[u8; 3] = b"TRN";

fn relay_cpu(a: &RtpArgs, g: &Gen) -> Option<u64> {
    if let Some(f) = &g.floor {
        return f.cpu_ns();
    }
    a.relay_pid.and_then(|p| sys::process_cpu_ns(p).ok())
}

fn poll_rx(rx: &[UdpSocket], timeout_ns: u64) {
    let fds: Vec<i32> = rx.iter().map(|s| s.as_raw_fd()).collect();
    sys::wait_readable(&fds, timeout_ns);
}

/// The RTP timestamp (8 kHz) of call `c` at `ns` (CLOCK_MONOTONIC).
fn ts_at(c: &Call, origin_ns: u64, ns: u64) -> u32 {
    let ticks = u128::from(ns.saturating_sub(origin_ns)) * 8000 / 1_000_000_000;
    c.ts.wrapping_add(ticks as u32)
}

/// Writes the next packet of call `idx` into `buf` (`buf.len()` bytes, at
/// least 28): RTP header, then the payload described in the crate
/// documentation, with send time `now` and nominal send time `nominal`
/// (ns), the latter also giving the RTP timestamp.
fn fill(buf: &mut [u8], c: &Call, origin_ns: u64, id: u8, idx: u32, now: u64, nominal: u64) {
    buf[0] = 0x80;
    buf[1] = 0;
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

/// Sends the packets of the delay line due now; returns (sent, errors).
fn send_due(imp: &mut Impairer, g: &Gen, txb: &mut [TxBatch]) -> (u64, u64) {
    let (mut sent, mut errors) = (0u64, 0u64);
    let now = sys::now_ns();
    while let Some((call, bytes)) = imp.pop_due(now) {
        let c = &g.calls[call];
        let b = &mut txb[c.sock];
        let buf = b.next_buf();
        buf[..bytes.len()].copy_from_slice(&bytes);
        // The real send time, for the relay-latency histogram.
        buf[20..28].copy_from_slice(&now.to_be_bytes());
        b.commit(bytes.len(), &c.dest);
        if b.is_full() {
            let k = b.flush(&g.tx[c.sock]);
            sent += k as u64;
            errors += (sys::BATCH - k) as u64;
        }
    }
    (sent, errors)
}

/// One trial at `pps` packets per second in total.
fn trial(a: &RtpArgs, g: &mut Gen, pps: f64, id: u8, shutdown: &AtomicBool) -> Report {
    let n = g.calls.len();
    for c in &mut g.calls {
        c.stats = SeqStats::new();
        c.rewritten = false;
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
    let mut txb: Vec<TxBatch> = (0..g.tx.len()).map(|_| TxBatch::new()).collect();
    let mut rxb = RxBatch::new();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut nominal = hist.clone();
    let pkt_len = 12 + a.payload.max(16);
    let (mut sent, mut send_errors, mut foreign) = (0u64, 0u64, 0u64);
    let mut received = 0u64;
    let me = sys::gettid();
    let gen0 = sys::thread_cpu_ns(std::process::id(), me).unwrap_or(0);
    let cpu0 = relay_cpu(a, g);
    let dur_ns = (a.duration * 1e9) as u64;
    let t0 = sys::now_ns();
    let end = t0 + dur_ns;
    let mut scheduled = 0u64;
    let mut cursor = 0usize;
    let ns_per_pkt = 1e9 / pps;

    let mut drain = |g: &mut Gen,
                     hist: &mut Histogram<u64>,
                     nominal: &mut Histogram<u64>,
                     received: &mut u64,
                     foreign: &mut u64| {
        let mut got = 0;
        for s in 0..g.rx.len() {
            let fd = g.rx[s].as_raw_fd();
            for _ in 0..16 {
                let k = rxb.recv(fd, libc::MSG_DONTWAIT).unwrap_or(0);
                if k == 0 {
                    break;
                }
                let now = sys::now_ns();
                got += k;
                for i in 0..k {
                    let p = rxb.get(i);
                    if p.len() < 28 || &p[12..15] != MAGIC || p[15] != id {
                        *foreign += 1;
                        continue;
                    }
                    let call = u32::from_be_bytes(p[16..20].try_into().unwrap()) as usize;
                    let Some(c) = g.calls.get_mut(call) else {
                        *foreign += 1;
                        continue;
                    };
                    let sent_ns = u64::from_be_bytes(p[20..28].try_into().unwrap());
                    let seq = u16::from_be_bytes([p[2], p[3]]);
                    let ssrc = u32::from_be_bytes(p[8..12].try_into().unwrap());
                    let dups = c.stats.duplicates;
                    c.stats.on_packet(seq);
                    if c.stats.duplicates == dups {
                        *received += 1;
                    }
                    c.rewritten |= ssrc != c.ssrc;
                    hist.saturating_record(now.saturating_sub(sent_ns).max(1));
                    if let Some(b) = p.get(28..NOMINAL_END) {
                        let nom = u64::from_be_bytes(b.try_into().unwrap());
                        nominal.saturating_record(now.saturating_sub(nom).max(1));
                    }
                }
                if k < sys::BATCH {
                    break;
                }
            }
        }
        got
    };

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
            let c = &mut g.calls[cursor];
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
                let b = &mut txb[c.sock];
                let buf = &mut b.next_buf()[..pkt_len];
                fill(buf, c, origin, id, idx, sys::now_ns(), sched);
                let dest = c.dest;
                let s = c.sock;
                b.commit(pkt_len, &dest);
                if b.is_full() {
                    let k = b.flush(&g.tx[s]);
                    sent += k as u64;
                    send_errors += (sys::BATCH - k) as u64;
                }
            }
            c.seq = c.seq.wrapping_add(1);
        }
        let (k, e) = send_due(&mut imp, g, &mut txb);
        sent += k;
        send_errors += e;
        for (s, b) in txb.iter_mut().enumerate() {
            let q = b.len;
            let k = b.flush(&g.tx[s]);
            sent += k as u64;
            send_errors += (q - k) as u64;
        }
        let got = drain(g, &mut hist, &mut nominal, &mut received, &mut foreign);
        if !did_send && got == 0 {
            let mut next = t0 + ((scheduled + 1) as f64 * ns_per_pkt) as u64;
            if let Some(d) = imp.next_due() {
                next = next.min(d);
            }
            let wait = next.saturating_sub(sys::now_ns()).min(1_000_000);
            if wait > 2_000 {
                poll_rx(&g.rx, wait);
            }
        }
    }
    let send_end = sys::now_ns();
    // What the delay line still holds leaves on its schedule.
    imp.release_held();
    while !imp.is_empty() && !shutdown.load(Ordering::Relaxed) {
        let (k, e) = send_due(&mut imp, g, &mut txb);
        sent += k;
        send_errors += e;
        for (s, b) in txb.iter_mut().enumerate() {
            let q = b.len;
            let k = b.flush(&g.tx[s]);
            sent += k as u64;
            send_errors += (q - k) as u64;
        }
        if drain(g, &mut hist, &mut nominal, &mut received, &mut foreign) == 0 {
            let next = imp.next_due().unwrap_or(0);
            let wait = next.saturating_sub(sys::now_ns()).min(1_000_000);
            if wait > 2_000 {
                poll_rx(&g.rx, wait);
            }
        }
    }
    let grace_end = sys::now_ns() + (a.grace * 1e9) as u64;
    while received < sent && sys::now_ns() < grace_end {
        if drain(g, &mut hist, &mut nominal, &mut received, &mut foreign) == 0 {
            poll_rx(&g.rx, 1_000_000);
        }
    }
    let wall = (sys::now_ns() - t0) as f64;
    let cpu1 = relay_cpu(a, g);
    let gen1 = sys::thread_cpu_ns(std::process::id(), me).unwrap_or(0);
    let send_s = (send_end - t0) as f64 / 1e9;
    let lost = sent.saturating_sub(received);
    let relay_ns = match (cpu0, cpu1) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64),
        _ => None,
    };
    Report {
        label: a.label.clone().unwrap_or_else(|| {
            if a.floor {
                "floor".into()
            } else {
                format!("ng {}", a.ng)
            }
        }),
        calls: n,
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
        duplicates: g.calls.iter().map(|c| c.stats.duplicates).sum(),
        reordered: g.calls.iter().map(|c| c.stats.reordered).sum(),
        foreign,
        send_pps: sent as f64 / send_s,
        forwarded_pps: received as f64 / send_s,
        latency: Latency::of(&hist),
        streams_received: g.calls.iter().filter(|c| c.stats.received > 0).count(),
        streams_ssrc_rewritten: g.calls.iter().filter(|c| c.rewritten).count(),
        relay_cpu_ns_per_pkt: relay_ns
            .filter(|_| received > 0)
            .map(|ns| ns / received as f64),
        relay_cpu_util: relay_ns.map(|ns| ns / wall),
        gen_cpu_util: gen1.saturating_sub(gen0) as f64 / wall,
        generator_limited: ((sent + imp.dropped) as f64) < 0.97 * pps * send_s,
        injected_drops: imp.dropped,
        injected_reorders: imp.reordered,
        nominal_delay: Latency::of(&nominal),
    }
}

/// Sends one packet (trial 0, not measured) on every call that has not
/// yet delivered one, every 20 ms, until all have: a relay may answer ng
/// before its sockets are bound, and a learning relay learns here.
fn prime(g: &mut Gen, shutdown: &AtomicBool) -> Result<(), Error> {
    let mut seen = vec![false; g.calls.len()];
    let mut left = seen.len();
    let mut txb = TxBatch::new();
    let mut rxb = RxBatch::new();
    let deadline = sys::now_ns() + 5_000_000_000;
    let origin = g.origin_ns;
    while left > 0 && !shutdown.load(Ordering::Relaxed) {
        if sys::now_ns() > deadline {
            return Err(format!(
                "{left} of {} calls delivered nothing within 5 s (relay down, or not forwarding?)",
                seen.len()
            )
            .into());
        }
        for s in 0..g.tx.len() {
            for (i, c) in g.calls.iter_mut().enumerate() {
                if c.sock != s || seen[i] {
                    continue;
                }
                let buf = txb.next_buf();
                buf[..12].fill(0);
                buf[0] = 0x80;
                buf[2..4].copy_from_slice(&c.seq.to_be_bytes());
                buf[4..8].copy_from_slice(&ts_at(c, origin, sys::now_ns()).to_be_bytes());
                buf[8..12].copy_from_slice(&c.ssrc.to_be_bytes());
                buf[12..15].copy_from_slice(MAGIC);
                buf[15] = 0;
                buf[16..20].copy_from_slice(&(i as u32).to_be_bytes());
                c.seq = c.seq.wrapping_add(1);
                let d = c.dest;
                txb.commit(28, &d);
                if txb.is_full() {
                    txb.flush(&g.tx[s]);
                }
            }
            txb.flush(&g.tx[s]);
        }
        let until = sys::now_ns() + 20_000_000;
        while sys::now_ns() < until {
            for r in &g.rx {
                while let Ok(k @ 1..) = rxb.recv(r.as_raw_fd(), libc::MSG_DONTWAIT) {
                    for j in 0..k {
                        let p = rxb.get(j);
                        if p.len() >= 20 && &p[12..15] == MAGIC {
                            let i = u32::from_be_bytes(p[16..20].try_into().unwrap()) as usize;
                            if i < seen.len() && !seen[i] {
                                seen[i] = true;
                                left -= 1;
                            }
                        }
                    }
                }
            }
            poll_rx(&g.rx, 2_000_000);
        }
    }
    // Priming packets a relay still holds (in a jitter buffer) arrive
    // now rather than in the first trial: wait for 100 ms of quiet (2 s
    // at most).
    let stop = sys::now_ns() + 2_000_000_000;
    let mut last = sys::now_ns();
    while sys::now_ns() < stop && sys::now_ns() - last < 100_000_000 {
        for r in &g.rx {
            while let Ok(1..) = rxb.recv(r.as_raw_fd(), libc::MSG_DONTWAIT) {
                last = sys::now_ns();
            }
        }
        poll_rx(&g.rx, 2_000_000);
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
    let base = a.pps.unwrap_or(a.calls as f64 * 1000.0 / a.ptime);
    if base.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err("the rate must be positive".into());
    }
    let mem_idle = a.relay_pid.and_then(mem::MemSnapshot::read);
    let mut g = setup(a, shutdown)?;
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

fn print_table(out: &Output) {
    println!(
        "{:<22} {:>6} {:>10} {:>10} {:>10} {:>8} {:>5} {:>5} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>6}",
        "relay", "calls", "target", "sent/s", "fwd/s", "loss%", "dup", "reord", "p50us", "p99us",
        "p99.9us", "maxus", "cpu ns/pk", "relay%", "gen%"
    );
    for r in &out.runs {
        println!(
            "{:<22} {:>6} {:>10.0} {:>10.0} {:>10.0} {:>8.4} {:>5} {:>5} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9} {:>6} {:>6.0}",
            r.label,
            r.calls,
            r.target_pps,
            r.send_pps,
            r.forwarded_pps,
            r.loss_ratio * 100.0,
            r.duplicates,
            r.reordered,
            r.latency.p50_us,
            r.latency.p99_us,
            r.latency.p999_us,
            r.latency.max_us,
            r.relay_cpu_ns_per_pkt.map_or("-".into(), |v| format!("{v:.0}")),
            r.relay_cpu_util.map_or("-".into(), |v| format!("{:.0}", v * 100.0)),
            r.gen_cpu_util * 100.0,
        );
    }
    for r in &out.runs {
        if r.injected_drops + r.injected_reorders > 0 || r.nominal_delay.max_us > 0.0 {
            println!(
                "{}: injected drops {}, reorders {}; delay beyond nominal send: p50 {:.1} us, p99 {:.1} us, max {:.1} us",
                r.label,
                r.injected_drops,
                r.injected_reorders,
                r.nominal_delay.p50_us,
                r.nominal_delay.p99_us,
                r.nominal_delay.max_us,
            );
        }
    }
    if let (Some(m0), Some(m1)) = (&out.relay_mem_idle, &out.relay_mem_loaded) {
        let calls = out.runs.first().map_or(1, |r| r.calls.max(1)) as f64;
        println!(
            "relay memory: VmRSS {} -> {} kB ({:.0} B/call; anon {} -> {} kB, shmem {} -> {} kB), fds {} -> {}, socket slabs {} -> {} kB ({:.0} B/call)",
            m0.vm_rss_kb,
            m1.vm_rss_kb,
            (m1.vm_rss_kb as f64 - m0.vm_rss_kb as f64) * 1024.0 / calls,
            m0.rss_anon_kb,
            m1.rss_anon_kb,
            m0.rss_shmem_kb,
            m1.rss_shmem_kb,
            m0.fds,
            m1.fds,
            m0.slab_bytes() / 1024,
            m1.slab_bytes() / 1024,
            (m1.slab_bytes() as f64 - m0.slab_bytes() as f64) / calls,
        );
    }
    if let Some(m) = out.max_pps {
        println!(
            "max rate with acceptable loss and latency: {m:.0} pps (limited by {})",
            out.max_limited_by.as_deref().unwrap_or("?")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_follow_the_nominal_schedule_at_8_khz() {
        let c = Call {
            dest: sys::sockaddr_v4("127.0.0.1:9".parse().unwrap()),
            sock: 0,
            ssrc: 1,
            seq: 0,
            ts: u32::MAX - 100,
            stats: SeqStats::new(),
            rewritten: false,
        };
        let origin = 1_000_000_000;
        assert_eq!(ts_at(&c, origin, origin), u32::MAX - 100);
        // 20 ms later: 160 ticks, across the 32-bit wrap.
        assert_eq!(ts_at(&c, origin, origin + 20_000_000), 59);
        // Before the origin (cannot happen) reads as the origin.
        assert_eq!(ts_at(&c, origin, 0), u32::MAX - 100);
        let mut buf = [0u8; 40];
        fill(&mut buf, &c, origin, 3, 7, 5, origin + 1_000_000_000);
        assert_eq!(&buf[4..8], &7899u32.to_be_bytes(), "1 s = 8000 ticks");
        assert_eq!(&buf[20..28], &5u64.to_be_bytes(), "send time");
        assert_eq!(&buf[28..36], &(origin + 1_000_000_000).to_be_bytes());
        assert_eq!((buf[15], &buf[16..20]), (3, &7u32.to_be_bytes()[..]));
    }
}
