//! What `tern load rtp` reports: the figures of one trial ([`Report`],
//! with its [`Latency`] percentiles), the output of a whole run
//! ([`Output`], `--json`) and the table printed without `--json`.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::mem;

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

pub(crate) fn print_table(out: &Output) {
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
