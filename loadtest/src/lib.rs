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
mod report;
mod rtp_run;
mod rtp_setup;
pub mod seq;
pub mod setup;
pub mod sip;
mod srtp;
pub mod sys;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use report::{Latency, Output, Report};
pub use rtp_run::rtp;

use report::print_table;

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
    /// Transcoding, implies --both-ways. `PCMA`: the caller offers PCMU
    /// with `codec: {transcode: [PCMA]}` and the callee answers PCMA
    /// (A sends PCMU, B sends PCMA). `OPUS`: the caller offers Opus with
    /// `transcode: [PCMU]` and the callee answers PCMU (A sends one
    /// encoded Opus frame of a tone in every packet, B sends PCMU).
    /// Transcoded packets carry no send time, so they are counted by the
    /// relay port they come from and checked by payload type, without
    /// latency.
    #[arg(long, value_name = "CODEC")]
    pub transcode: Option<String>,
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
