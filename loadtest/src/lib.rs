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
use tern_secure::srtp::{Context, Suite};
use tern_shared::sdp::{crypto_value, Crypto};

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
    /// Total packets per second over all streams [default: streams ×
    /// 1000/ptime; a call has one stream, two with --both-ways or --srtp].
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
    /// Send both ways: each call also streams from its callee (B) side to
    /// its caller (A) side; half of --pps each way.
    #[arg(long)]
    pub both_ways: bool,
    /// RTP↔SRTP bridging with this SDES suite (e.g.
    /// AES_CM_128_HMAC_SHA1_80); implies --both-ways. The offer asks the
    /// relay for `transport-protocol: RTP/SAVP` with `SDES:
    /// ["only-SUITE", "no-OTHER"...]`; the callee answers RTP/SAVP with a key of its own.
    /// A sends plain RTP (the relay encrypts toward B); B sends SRTP under
    /// its key (the relay decrypts toward A). Call 0's first packets each
    /// way are checked: A→B must authenticate under the relay's offered
    /// key, B→A must arrive plain with the payload sent.
    #[arg(long, value_name = "SUITE")]
    pub srtp: Option<String>,
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
    /// Streams: calls, or twice as many sending both ways.
    #[serde(default)]
    pub streams: usize,
    /// With --srtp: the suite.
    #[serde(default)]
    pub srtp: Option<String>,
    /// Packets received once, caller to callee.
    #[serde(default)]
    pub received_a_to_b: u64,
    /// Packets received once, callee to caller (both ways only).
    #[serde(default)]
    pub received_b_to_a: u64,
    /// System-wide CPU time (user + system + irq + softirq over all CPUs,
    /// /proc/stat) per forwarded packet: relay, generator, kernel and
    /// whatever else runs.
    #[serde(default)]
    pub sys_cpu_ns_per_pkt: Option<f64>,
    /// System-wide busy CPU time / wall time (2.0 = two CPUs busy).
    #[serde(default)]
    pub sys_cpu_util: Option<f64>,
    /// Sampled packets of call 0 that arrived as sent (both ways only).
    #[serde(default)]
    pub checked_packets: u32,
    /// What the path check of call 0 found wrong; empty when all is well.
    #[serde(default)]
    pub check_failures: Vec<String>,
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

    /// The path check's failures over all runs, one line each.
    pub fn check_failures(&self) -> Vec<String> {
        self.runs
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                r.check_failures
                    .iter()
                    .map(move |f| format!("run {}: {f}", i + 1))
            })
            .collect()
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
            let bad = out.check_failures();
            if !bad.is_empty() {
                for f in &bad {
                    eprintln!("tern load: PATH CHECK FAILED: {f}");
                }
                return Err(format!(
                    "the path check failed ({} finding(s)): the figures measure a broken path",
                    bad.len()
                )
                .into());
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

/// One RTP stream of a call: A→B (caller to callee), or B→A with
/// `--both-ways`/`--srtp`.
struct Stream {
    dest: libc::sockaddr_in,
    /// The sending socket: an index into [`Gen::socks`].
    sock: usize,
    ssrc: u32,
    seq: u16,
    /// RTP timestamp at the generator's clock origin ([`Gen::origin_ns`]):
    /// a packet's timestamp follows its nominal send time at 8 kHz, so
    /// that a relay's jitter buffer sees a sender whose clock keeps time.
    ts: u32,
    stats: SeqStats,
    rewritten: bool,
    /// B→A: received on the caller's side.
    back: bool,
    /// Protects what the generator sends (B→A under `--srtp`: the
    /// callee's own key, given in its answer).
    tx_srtp: Option<Context>,
    /// A→B under `--srtp`: the packets arrive protected, their payload
    /// unreadable, so their send times are kept here by sequence number.
    ring: Option<Box<[Sent]>>,
    /// Call 0 with `--both-ways`/`--srtp`: the packets sampled for the
    /// path check.
    check: Option<Box<Check>>,
}

/// Send times kept per stream for packets that arrive protected.
const RING: usize = 256;

/// A packet in [`Stream::ring`].
#[derive(Clone, Copy, Default)]
struct Sent {
    seq: u16,
    id: u8,
    ns: u64,
    nominal: u64,
}

/// Packets of one stream checked per trial.
const CHECK_SAMPLES: usize = 10;

/// The path check of one stream of call 0: the first [`CHECK_SAMPLES`]
/// packets of each trial must arrive with the payload sent; A→B under
/// `--srtp` they must first authenticate and decrypt under the key the
/// relay offered the callee.
struct Check {
    dir: &'static str,
    /// The relay's offered key (and the tag of its `a=crypto` line).
    rx_srtp: Option<(Context, u32)>,
    /// (trial, sequence number, plain packet) sent, not yet received.
    pending: Vec<(u8, u16, Vec<u8>)>,
    taken: usize,
    verified: u32,
    failures: Vec<String>,
}

impl Check {
    fn new(dir: &'static str, rx_srtp: Option<(Context, u32)>) -> Box<Check> {
        Box::new(Check {
            dir,
            rx_srtp,
            pending: Vec::new(),
            taken: 0,
            verified: 0,
            failures: Vec::new(),
        })
    }

    fn reset(&mut self) {
        self.pending.clear();
        self.taken = 0;
        self.verified = 0;
        self.failures.clear();
    }

    /// Samples `plain` (sent in trial `id`) while fewer than
    /// [`CHECK_SAMPLES`] were taken in this trial.
    fn sample(&mut self, id: u8, plain: &[u8]) {
        if self.taken < CHECK_SAMPLES && plain.len() >= 12 {
            self.taken += 1;
            self.pending
                .push((id, u16::from_be_bytes([plain[2], plain[3]]), plain.to_vec()));
        }
    }

    /// Checks a received packet `p` against the samples of trial `id`.
    fn on_packet(&mut self, id: u8, p: &[u8]) {
        if p.len() < 12 {
            return;
        }
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let Some(at) = self
            .pending
            .iter()
            .position(|(t, s, _)| *t == id && *s == seq)
        else {
            return;
        };
        let (_, _, want) = self.pending.swap_remove(at);
        let mut got = p.to_vec();
        let plain_len = match &mut self.rx_srtp {
            Some((ctx, tag)) => match ctx.unprotect_rtp(&mut got) {
                Ok(n) => n,
                Err(e) => {
                    self.failures.push(format!(
                        "{} seq {seq}: does not authenticate under the key the relay offered (a=crypto:{tag}): {e}",
                        self.dir
                    ));
                    return;
                }
            },
            None => got.len(),
        };
        let got = &got[..plain_len];
        if got.len() != want.len() || got[12..] != want[12..] {
            self.failures.push(format!(
                "{} seq {seq}: {} bytes arrived, {} sent{}: not the payload sent",
                self.dir,
                got.len(),
                want.len(),
                if self.rx_srtp.is_none() && got.len() > want.len() {
                    " (still SRTP-protected?)"
                } else {
                    ""
                }
            ));
            return;
        }
        self.verified += 1;
    }

    /// What went wrong in this trial; `None` when all is well.
    fn verdict(&self) -> Option<String> {
        if !self.failures.is_empty() {
            return Some(self.failures.join("; "));
        }
        if self.taken > 0 && self.verified == 0 {
            return Some(format!(
                "{}: none of the {} sampled packets of call 0 arrived as sent",
                self.dir, self.taken
            ));
        }
        None
    }
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

/// The generator: sockets, streams and the floor, if any.
struct Gen {
    /// CLOCK_MONOTONIC ns at which every stream's timestamp is `Stream::ts`.
    origin_ns: u64,
    /// The caller (A) side's sockets, then the callee (B) side's.
    socks: Vec<UdpSocket>,
    /// The sockets that receive (indexes into `socks`): the callee's, and
    /// the caller's too when sending both ways.
    rx: Vec<usize>,
    rx_fds: Vec<i32>,
    /// With both ways, stream `2i` is call `i`'s A→B, `2i + 1` its B→A;
    /// else stream `i` is call `i`'s A→B.
    streams: Vec<Stream>,
    calls: usize,
    /// Stream `j`'s SSRC is `ssrc_base ^ j`.
    ssrc_base: u32,
    /// The first callee-side socket in `socks`.
    b0: usize,
    floor: Option<floor::Floor>,
    _ng: Option<NgCalls>,
}

impl Gen {
    /// The stream whose packets carry `ssrc`.
    fn by_ssrc(&mut self, ssrc: u32) -> Option<(usize, &mut Stream)> {
        let j = (ssrc ^ self.ssrc_base) as usize;
        self.streams
            .get_mut(j)
            .filter(|s| s.ssrc == ssrc)
            .map(|s| (j, s))
    }
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

/// The relay's address in an ng reply's SDP (its ng address when the SDP
/// says 0.0.0.0).
fn reply_media(a: &RtpArgs, what: &str, sdp: &str) -> Result<SocketAddr, Error> {
    let dest = ng::media_addr(sdp).ok_or_else(|| format!("{what}: no media in {sdp:?}"))?;
    Ok(if dest.ip().is_unspecified() {
        SocketAddr::new(a.ng.ip(), dest.port())
    } else {
        dest
    })
}

/// A context for `suite` from a key||salt.
fn srtp_context(suite: Suite, key_salt: &[u8]) -> Result<Context, Error> {
    if key_salt.len() != suite.master_len() {
        return Err(format!(
            "{suite}: a {}-byte key||salt, not {}",
            key_salt.len(),
            suite.master_len()
        )
        .into());
    }
    let (key, salt) = key_salt.split_at(suite.key_len());
    Ok(Context::new(suite, key, salt).map_err(|e| format!("{suite}: {e}"))?)
}

/// Every SDES suite tern or rtpengine 10.5 offers.
const SDES_SUITES: [&str; 12] = [
    "AEAD_AES_256_GCM",
    "AEAD_AES_128_GCM",
    "AES_256_CM_HMAC_SHA1_80",
    "AES_256_CM_HMAC_SHA1_32",
    "AES_192_CM_HMAC_SHA1_80",
    "AES_192_CM_HMAC_SHA1_32",
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "F8_128_HMAC_SHA1_80",
    "F8_128_HMAC_SHA1_32",
    "NULL_HMAC_SHA1_80",
    "NULL_HMAC_SHA1_32",
];

/// The ng `SDES` list that leaves `suite` alone on offer: `only-<suite>`
/// (tern), and `no-<suite>` for every other (rtpengine 10.5 has no
/// `only-` and ignores it with a warning; tern honours both).
fn sdes_flags(suite: Suite) -> Ben {
    let mut l = vec![Ben::s(format!("only-{}", suite.name()))];
    l.extend(
        SDES_SUITES
            .iter()
            .filter(|&&n| n != suite.name())
            .map(|n| Ben::s(format!("no-{n}"))),
    );
    Ben::List(l)
}

/// The relay's SRTP offer toward the callee: the tag and key||salt of its
/// `a=crypto` line for `suite`.
fn offered_crypto(i: usize, sdp: &str, suite: Suite) -> Result<(u32, Vec<u8>), Error> {
    if ng::media_proto(sdp) != Some("RTP/SAVP") {
        return Err(format!(
            "offer {i}: the relay offered {:?} toward the callee, not RTP/SAVP: {sdp:?}",
            ng::media_proto(sdp)
        )
        .into());
    }
    for v in ng::crypto_values(sdp) {
        let c = Crypto::parse(v).map_err(|e| format!("offer {i}: a=crypto:{v}: {e:?}"))?;
        if c.suite == suite.name() {
            return Ok((c.tag, c.key_salt().to_vec()));
        }
    }
    Err(format!("offer {i}: the relay offered no a=crypto line of {suite}: {sdp:?}").into())
}

fn setup(a: &RtpArgs, srtp: Option<Suite>, shutdown: &AtomicBool) -> Result<Gen, Error> {
    let both = a.both_ways || srtp.is_some();
    let k = a.sockets.max(1);
    let mut socks = bind_socks(a.local_ip, k)?;
    socks.extend(bind_socks(a.local_ip, if a.floor { 1 } else { k })?);
    let rx: Vec<usize> = if both {
        (0..socks.len()).collect()
    } else {
        (k..socks.len()).collect()
    };
    let rx_fds = rx.iter().map(|&s| socks[s].as_raw_fd()).collect();
    let pid = std::process::id();
    let ssrc_base = 0x5E00_0000 ^ (pid << 12);
    let mk = |j: usize, sock: usize, dest: SocketAddr, back: bool| -> Result<Stream, Error> {
        Ok(Stream {
            dest: sys::sockaddr_v4(sys::v4(dest)?),
            sock,
            ssrc: ssrc_base ^ j as u32,
            seq: (j as u16).wrapping_mul(7919),
            ts: (j as u32).wrapping_mul(104_729),
            stats: SeqStats::new(),
            rewritten: false,
            back,
            tx_srtp: None,
            ring: None,
            check: None,
        })
    };
    if a.floor {
        let to = sys::v4(socks[k].local_addr()?)?;
        let f = floor::Floor::start(SocketAddr::new(IpAddr::V4(a.local_ip), 0), to, a.floor_cpu)?;
        let streams = (0..a.calls)
            .map(|i| mk(i, i % k, f.addr, false))
            .collect::<Result<_, _>>()?;
        return Ok(Gen {
            origin_ns: sys::now_ns(),
            socks,
            rx,
            rx_fds,
            streams,
            calls: a.calls,
            ssrc_base,
            b0: k,
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
    let mut streams = Vec::with_capacity(a.calls * if both { 2 } else { 1 });
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
        let from = socks[i % k].local_addr()?;
        let to = socks[k + i % k].local_addr()?;
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
        if let Some(s) = srtp {
            offer.push(("transport-protocol", Ben::s("RTP/SAVP")));
            offer.push(("SDES", sdes_flags(s)));
        }
        let offer = Ben::Dict(offer);
        let reply = ng.ng.cmd(&offer).map_err(|e| format!("offer {i}: {e}"))?;
        ng.ids.push(id.clone());
        // The offer's SDP goes to the callee: where the callee sends.
        let offered = ng::reply_sdp(&reply)?;
        let back_dest = reply_media(a, &format!("offer {i}"), &offered)?;
        let mut answer_sdp = ng::sdp(to, i as u64);
        let mut tx_srtp = None;
        let mut rx_srtp = None;
        if let Some(s) = srtp {
            let (tag, relay_key) = offered_crypto(i, &offered, s)?;
            if i == 0 {
                rx_srtp = Some((srtp_context(s, &relay_key)?, tag));
            }
            let mine: Vec<u8> = (0..s.master_len()).map(|_| rand::random::<u8>()).collect();
            tx_srtp = Some(srtp_context(s, &mine)?);
            let line = crypto_value(tag, s.name(), &mine);
            answer_sdp = ng::sdp_with(to, i as u64, "RTP/SAVP", &[&line]);
        }
        let answer = Ben::Dict(vec![
            ("command", Ben::s("answer")),
            ("call-id", Ben::s(&id)),
            ("from-tag", Ben::s("caller")),
            ("to-tag", Ben::s("callee")),
            ("replace", Ben::list(["origin", "session-connection"])),
            ("flags", Ben::list(["trust-address"])),
            ("sdp", Ben::s(answer_sdp)),
        ]);
        let reply = ng.ng.cmd(&answer).map_err(|e| format!("answer {i}: {e}"))?;
        // The answer's SDP goes to the caller: where the caller sends.
        let sdp = ng::reply_sdp(&reply)?;
        if srtp.is_some()
            && (ng::media_proto(&sdp) != Some("RTP/AVP")
                || ng::crypto_values(&sdp).next().is_some())
        {
            return Err(format!(
                "answer {i}: the relay's answer toward the caller is not plain RTP/AVP: {sdp:?}"
            )
            .into());
        }
        let dest = reply_media(a, &format!("answer {i}"), &sdp)?;
        if !both {
            streams.push(mk(i, i % k, dest, false)?);
            continue;
        }
        let mut ab = mk(2 * i, i % k, dest, false)?;
        if srtp.is_some() {
            ab.ring = Some(vec![Sent::default(); RING].into_boxed_slice());
        }
        let mut ba = mk(2 * i + 1, k + i % k, back_dest, true)?;
        ba.tx_srtp = tx_srtp;
        if i == 0 {
            ab.check = Some(Check::new("A→B", rx_srtp));
            ba.check = Some(Check::new("B→A", None));
        }
        streams.push(ab);
        streams.push(ba);
    }
    Ok(Gen {
        origin_ns: sys::now_ns(),
        socks,
        rx,
        rx_fds,
        streams,
        calls: a.calls,
        ssrc_base,
        b0: k,
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

fn poll_rx(g: &Gen, timeout_ns: u64) {
    sys::wait_readable(&g.rx_fds, timeout_ns);
}

/// The RTP timestamp (8 kHz) of stream `c` at `ns` (CLOCK_MONOTONIC).
fn ts_at(c: &Stream, origin_ns: u64, ns: u64) -> u32 {
    let ticks = u128::from(ns.saturating_sub(origin_ns)) * 8000 / 1_000_000_000;
    c.ts.wrapping_add(ticks as u32)
}

/// Writes the next packet of stream `idx` into `buf` (`buf.len()` bytes,
/// at least 28): RTP header, then the payload described in the crate
/// documentation, with send time `now` and nominal send time `nominal`
/// (ns), the latter also giving the RTP timestamp.
fn fill(buf: &mut [u8], c: &Stream, origin_ns: u64, id: u8, idx: u32, now: u64, nominal: u64) {
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
fn on_rx(g: &mut Gen, rx: &mut Rx, p: &[u8], sock: usize, id: u8, now: u64) {
    let plain = p.len() >= 28 && &p[12..15] == MAGIC;
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
                on_rx(g, rx, rxb.get(i), s, id, now);
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
                buf[2..4].copy_from_slice(&c.seq.to_be_bytes());
                buf[4..8].copy_from_slice(&ts_at(c, origin, sys::now_ns()).to_be_bytes());
                buf[8..12].copy_from_slice(&c.ssrc.to_be_bytes());
                buf[12..15].copy_from_slice(MAGIC);
                buf[15] = 0;
                buf[16..20].copy_from_slice(&(i as u32).to_be_bytes());
                buf[20..28].fill(0);
                c.seq = c.seq.wrapping_add(1);
                let len = match &mut c.tx_srtp {
                    Some(ctx) => ctx
                        .protect_rtp(buf, 28)
                        .map_err(|e| format!("protect: {e}"))?,
                    None => 28,
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
    for r in &out.runs {
        if r.streams > r.calls || r.sys_cpu_ns_per_pkt.is_some() {
            println!(
                "{}: {} streams{}, received A→B {} B→A {}; system-wide CPU {} ns/pkt ({} CPUs busy); path check: {} packets of call 0 as sent{}",
                r.label,
                r.streams,
                r.srtp.as_deref().map_or(String::new(), |s| format!(" (SRTP {s} toward B)")),
                r.received_a_to_b,
                r.received_b_to_a,
                r.sys_cpu_ns_per_pkt.map_or("-".into(), |v| format!("{v:.0}")),
                r.sys_cpu_util.map_or("-".into(), |v| format!("{v:.2}")),
                r.checked_packets,
                if r.check_failures.is_empty() { String::new() } else { format!(", FAILED: {}", r.check_failures.join("; ")) },
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

    fn plain_packet(seq: u16) -> Vec<u8> {
        let mut p = vec![0u8; 12 + 160];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&0x1234u32.to_be_bytes());
        p[12..15].copy_from_slice(MAGIC);
        p[40] = seq as u8;
        p
    }

    #[test]
    fn the_path_check_authenticates_and_compares_payloads() {
        let s = Suite::AesCm128HmacSha1_80;
        let relay_key = [7u8; 30];
        let other_key = [8u8; 30];
        let mut relay = srtp_context(s, &relay_key).unwrap();
        let mut impostor = srtp_context(s, &other_key).unwrap();
        let mut ch = Check::new("A→B", Some((srtp_context(s, &relay_key).unwrap(), 1)));
        for seq in 0..12u16 {
            ch.sample(1, &plain_packet(seq));
        }
        assert_eq!(ch.taken, CHECK_SAMPLES, "ten samples per trial");
        let protect = |ctx: &mut Context, seq: u16| {
            let mut b = plain_packet(seq);
            let n = b.len();
            b.resize(n + 10, 0);
            let n = ctx.protect_rtp(&mut b, n).unwrap();
            b.truncate(n);
            b
        };
        ch.on_packet(1, &protect(&mut relay, 0));
        assert_eq!((ch.verified, ch.verdict()), (1, None));
        ch.on_packet(1, &protect(&mut impostor, 1));
        assert!(ch.verdict().unwrap().contains("does not authenticate"));
        // Plain where SRTP is due does not authenticate either.
        ch.on_packet(1, &plain_packet(2));
        assert_eq!(ch.failures.len(), 2);
        // Unsampled packets and other trials are not looked at.
        ch.on_packet(1, &plain_packet(11));
        ch.on_packet(2, &plain_packet(3));
        assert_eq!(ch.failures.len(), 2);

        let mut back = Check::new("B→A", None);
        back.sample(1, &plain_packet(5));
        back.sample(1, &plain_packet(6));
        back.sample(1, &plain_packet(7));
        back.on_packet(1, &plain_packet(5));
        assert_eq!((back.verified, back.verdict()), (1, None));
        let mut wrong = plain_packet(6);
        wrong[40] ^= 1;
        back.on_packet(1, &wrong);
        assert!(back.verdict().unwrap().contains("not the payload sent"));
        // Still protected (10 bytes longer) is flagged as such.
        let mut p = plain_packet(7);
        p.extend([0u8; 10]);
        back.on_packet(1, &p);
        assert!(back.failures[1].contains("still SRTP-protected"));

        let mut none = Check::new("B→A", None);
        none.sample(1, &plain_packet(1));
        assert!(none.verdict().unwrap().contains("none of the 1 sampled"));
        none.reset();
        assert_eq!(none.verdict(), None);
    }
}
