//! `tern`: one binary for both planes. This file only parses the command
//! line and wires the crates together; the work lives in `tern-dataplane`
//! and `tern-signaling`, which never depend on each other.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tern_shared::table::{SlotTable, TableParams};

#[derive(Parser)]
#[command(
    name = "tern",
    version,
    about = "Media relay with a SIP signaling plane"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run both planes in one process (the default).
    Up(UpArgs),
    /// Run the dataplane alone.
    Relay(RelayArgs),
    /// Run the signaling plane alone, programming a `tern relay` on this host.
    Sip(SipArgs),
    /// Load generators (`tern load rtp`): drive a relay and measure it.
    #[command(subcommand)]
    Load(tern_loadtest::LoadCmd),
    /// Ask a running tern (its HTTP API) about calls and DTMF events.
    Ctl(tern_observe::ctl::CtlArgs),
}

#[derive(Args, Clone)]
struct RelayArgs {
    /// Media port range LO-HI; each call takes four ports. Keep it out of
    /// the kernel's ephemeral range (net.ipv4.ip_local_port_range, usually
    /// 32768-60999), or reserve it there: tern warns at start otherwise.
    #[arg(long, default_value = "20000-29999", value_parser = parse_ports)]
    ports: (u16, u16),
    /// Worker threads, one per CPU by default.
    #[arg(long)]
    workers: Option<usize>,
    /// Instance name: the slot table lives in /dev/shm/tern-<instance>.
    #[arg(long, default_value = "default")]
    instance: String,
    /// Address media sockets bind to and SDP advertises (without
    /// --interface).
    #[arg(long, default_value = "127.0.0.1")]
    media_ip: IpAddr,
    /// A named media interface, rtpengine's syntax: NAME/IP[!ADVERTISED]
    /// (IP alone: named `default`). Repeatable, at most 16; one IPv4 and
    /// one IPv6 address per name. Every port of --ports is bound on each
    /// IP; ng's `direction` picks each leg's. Replaces --media-ip (and
    /// `[[media.interfaces]]` of the config file).
    #[arg(long = "interface", value_name = "NAME/IP[!ADV]")]
    interfaces: Vec<tern_shared::iface::InterfaceSpec>,
    /// Do not pin workers to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// rtpengine ng control socket, UDP and TCP: ADDR:PORT, PORT or `off`
    /// [default: 127.0.0.1:2223, skipped with a warning if taken].
    #[arg(long, value_name = "ADDR")]
    ng: Option<tern_ng::NgListen>,
    /// Also serve ng to sources in CIDR (repeatable); loopback always is.
    #[arg(long = "ng-allow", value_name = "CIDR")]
    ng_allow: Vec<tern_ng::Cidr>,
    /// Most ng calls held at once (rtpengine's --max-sessions): an offer
    /// for a new call past it is answered `load limit` (Kamailio and
    /// OpenSIPS then try the next relay of the set).
    #[arg(long, value_name = "N")]
    max_sessions: Option<usize>,
    /// Delete ng calls whose media stopped SECS seconds ago (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    timeout: u64,
    /// Jitter buffer on for ng calls whose offer says neither
    /// `jitter-buffer` nor `no-jitter-buffer` (60 ms target, 200 ms max),
    /// and under `tern up` for SIP calls too (see `[media]` in the config).
    #[arg(long)]
    jitter_buffer: bool,
    /// Record calls that ask for it (ng `start recording`, `record-call`)
    /// into DIR: `<call-id>.pcap`, `.wav` and `.json` per call, the
    /// Call-ID percent-encoded. Without it recording commands are
    /// accepted and nothing is written.
    #[arg(long, value_name = "DIR")]
    recording_dir: Option<std::path::PathBuf>,
    /// Jitter-buffer delays for ng calls from the config file's `[media]`
    /// (`tern up`); `None`: the ng defaults.
    #[arg(skip)]
    media_jitter: Option<tern_shared::table::JitterSettings>,
    /// HTTP API (/metrics, /health, /calls, /registrations): ADDR:PORT,
    /// PORT or `off` [default: 127.0.0.1:8080, skipped with a warning if
    /// taken].
    #[arg(long, value_name = "ADDR")]
    http: Option<tern_observe::HttpListen>,
}

#[derive(Args, Clone)]
struct SipOpts {
    /// SIP listen address (UDP and TCP, same port).
    #[arg(long, default_value = "127.0.0.1:5060")]
    sip: SocketAddr,
    /// TOML configuration file (`[[users]]` with `name` and `password` or `ha1`).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// On SIGTERM, refuse new calls (503) and let calls up finish for at
    /// most SECS seconds [default: `[sip] drain_secs`, else 30]. A second
    /// SIGTERM, or SIGINT, stops at once.
    #[arg(long, value_name = "SECS")]
    drain: Option<u64>,
}

#[derive(Args, Clone)]
struct UpArgs {
    #[command(flatten)]
    relay: RelayArgs,
    #[command(flatten)]
    sip: SipOpts,
}

#[derive(Args, Clone)]
struct SipArgs {
    #[command(flatten)]
    sip: SipOpts,
    /// The relay to program: `shm:NAME` for a `tern relay --instance NAME`.
    #[arg(long, default_value = "shm:default")]
    relay: String,
    /// HTTP API: ADDR:PORT, PORT or `off` [default: 127.0.0.1:8080,
    /// skipped with a warning if taken].
    #[arg(long, value_name = "ADDR")]
    http: Option<tern_observe::HttpListen>,
}

impl Default for UpArgs {
    fn default() -> Self {
        match Cli::try_parse_from(["tern", "up"]) {
            Ok(Cli {
                cmd: Some(Cmd::Up(a)),
            }) => a,
            _ => unreachable!("defaults of `tern up` parse"),
        }
    }
}

fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or("expected LO-HI, e.g. 20000-29999")?;
    let lo: u16 = lo.trim().parse().map_err(|e| format!("port {lo:?}: {e}"))?;
    let hi: u16 = hi.trim().parse().map_err(|e| format!("port {hi:?}: {e}"))?;
    if lo > hi || lo < 1024 {
        return Err(format!("bad port range {lo}-{hi}: need 1024 <= LO <= HI"));
    }
    Ok((lo, hi))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let shutdown = Arc::new(AtomicBool::new(false));
    let cmd = cli.cmd.unwrap_or(Cmd::Up(UpArgs::default()));
    if let Err(e) = install_signals(&shutdown, matches!(cmd, Cmd::Up(_) | Cmd::Sip(_))) {
        eprintln!("tern: cannot install signal handler: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cmd {
        Cmd::Up(a) => up(a, shutdown),
        Cmd::Relay(a) => relay(a, shutdown),
        Cmd::Sip(a) => sip(a, shutdown),
        Cmd::Load(c) => tern_loadtest::run(c, shutdown).map_err(|e| -> Error { e }),
        Cmd::Ctl(a) => tern_observe::ctl::run(&a, &mut std::io::stdout()).map_err(Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

/// Set by the first SIGTERM of `tern up`/`tern sip`: the SIP plane drains.
static DRAIN: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

fn drain_flag() -> Arc<AtomicBool> {
    DRAIN
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone()
}

/// SIGINT stops at once. With `drains` (a SIP plane runs), the first
/// SIGTERM sets [`drain_flag`] and a second one stops at once; otherwise
/// SIGTERM stops at once.
fn install_signals(shutdown: &Arc<AtomicBool>, drains: bool) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    signal_hook::flag::register(SIGINT, shutdown.clone())?;
    if !drains {
        signal_hook::flag::register(SIGTERM, shutdown.clone())?;
        return Ok(());
    }
    let (drain, stop) = (drain_flag(), shutdown.clone());
    // SAFETY: the handler only swaps and stores atomics (async-signal-safe).
    unsafe {
        signal_hook::low_level::register(SIGTERM, move || {
            if drain.swap(true, Ordering::SeqCst) {
                stop.store(true, Ordering::SeqCst);
            }
        })?;
    }
    Ok(())
}

fn open_table(a: &RelayArgs) -> Result<(Arc<SlotTable>, usize), Error> {
    let workers = a
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    tern_shared::iface::validate(&a.interfaces).map_err(|e| format!("--interface: {e}"))?;
    let params = TableParams {
        port_lo: a.ports.0,
        port_hi: a.ports.1,
        workers: workers as u32,
        media_ip: a.interfaces.first().map_or(a.media_ip, |i| i.sdp_ip()),
    };
    let per_slot = 4 * a.interfaces.len().max(1) as u64;
    tern_dataplane::host::raise_nofile(u64::from(params.capacity()) * per_slot + 256)?;
    if let Some(o) = tern_dataplane::host::ephemeral_overlap(a.ports) {
        eprintln!("tern: warning: {o}");
    }
    let table = SlotTable::create_or_attach(&a.instance, params)?;
    // Always written: a reattached table may name another list.
    let local: Vec<_> = a.interfaces.iter().map(|i| i.local()).collect();
    table.set_interfaces(&local)?;
    table.set_dataplane_pid(std::process::id());
    Ok((Arc::new(table), workers))
}

type NgServer = Option<tern_ng::NgServer>;

/// Starts the ng control socket on the table. The default address is
/// skipped with a warning when taken; an explicit `--ng` must bind.
fn start_ng(
    a: &RelayArgs,
    table: &Arc<SlotTable>,
    shutdown: &Arc<AtomicBool>,
    tags: Option<&tern_ng::core::record::RecordTags>,
) -> Result<NgServer, Error> {
    use tern_ng as control;
    let (addr, explicit) = match a.ng {
        Some(control::NgListen(None)) => return Ok(None),
        Some(control::NgListen(Some(addr))) => (addr, true),
        None => (control::DEFAULT_LISTEN, false),
    };
    let mut cfg = control::NgConfig::new(addr, a.ng_allow.clone(), a.timeout);
    cfg.core.interfaces = a.interfaces.iter().map(|i| i.name.clone()).collect();
    if let Some(j) = a.media_jitter {
        cfg.core.jitter = j;
    }
    cfg.core.jitter.enabled |= a.jitter_buffer;
    cfg.core.record_tags = tags.cloned();
    if let Some(n) = a.max_sessions {
        cfg.core.max_calls = n;
    }
    match control::start(cfg, table.clone(), shutdown.clone()) {
        Ok(ng) => {
            println!(
                "tern ng: listening on udp:{} tcp:{}",
                ng.udp_addr(),
                ng.tcp_addr().map_or("-".into(), |t| t.to_string())
            );
            Ok(Some(ng))
        }
        Err(e) if !explicit => {
            eprintln!("tern: {e}; running without the ng control socket (see --ng)");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

type HttpServer = Option<tern_observe::HttpServer>;

/// Starts the HTTP API (its own thread). The default address is skipped
/// with a warning when taken; an explicit `--http` must bind.
fn start_http(
    listen: Option<tern_observe::HttpListen>,
    table: &Arc<SlotTable>,
    sip: Option<tern_signaling::SharedSnapshot>,
    shutdown: &Arc<AtomicBool>,
) -> Result<HttpServer, Error> {
    let (addr, explicit) = match listen {
        Some(tern_observe::HttpListen(None)) => return Ok(None),
        Some(tern_observe::HttpListen(Some(addr))) => (addr, true),
        None => (tern_observe::DEFAULT_LISTEN, false),
    };
    match tern_observe::start(addr, table.clone(), sip, shutdown.clone()) {
        Ok(h) => {
            println!("tern http: listening on {}", h.local_addr());
            Ok(Some(h))
        }
        Err(e) if !explicit => {
            eprintln!("tern: {e}; running without the HTTP API (see --http)");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn start_relay(
    a: &RelayArgs,
    shutdown: &Arc<AtomicBool>,
) -> Result<(Arc<SlotTable>, tern_dataplane::Relay, NgServer), Error> {
    let (table, workers) = open_table(a)?;
    // ng knows the recorded calls' tags; the writer reads them for the
    // JSON.
    let tags = a
        .recording_dir
        .as_ref()
        .map(|_| tern_ng::core::record::RecordTags::default());
    let rec = a.recording_dir.as_ref().zip(tags.clone()).map(|(dir, t)| {
        let rc = tern_dataplane::record::RecordConfig {
            dir: dir.clone(),
            ring_frames: tern_dataplane::record::RING_FRAMES,
        };
        let lookup: tern_dataplane::record::writer::TagLookup = Arc::new(move |id: &str| t.get(id));
        (rc, Some(lookup))
    });
    let relay = tern_dataplane::start_recording(
        tern_dataplane::RelayConfig {
            workers,
            bind_ip: a.interfaces.first().map_or(a.media_ip, |i| i.ip),
            pin: !a.no_pin,
        },
        table.clone(),
        shutdown.clone(),
        rec,
    )?;
    if let Some(d) = &a.recording_dir {
        println!("tern relay: recording into {}", d.display());
    }
    let ng = start_ng(a, &table, shutdown, tags.as_ref())?;
    let media = if a.interfaces.is_empty() {
        a.media_ip.to_string()
    } else {
        let l: Vec<String> = a.interfaces.iter().map(|i| i.to_string()).collect();
        l.join(" ")
    };
    println!(
        "tern relay: {} workers, media {} ports {}-{}, {} slots in {}",
        workers,
        media,
        a.ports.0,
        a.ports.1,
        table.capacity(),
        table.path().display()
    );
    Ok((table, relay, ng))
}

/// The configuration file, read and parsed once (`[sip]`, `[media]`,
/// `[[users]]`; an unknown key is an error naming it and its line), with
/// `--drain` over `[sip] drain_secs`; the signaling part validated.
fn sip_config(o: &SipOpts) -> Result<tern_signaling::Config, Error> {
    let text = match &o.config {
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| format!("config {}: {e}", p.display()))?
        }
        None => String::new(),
    };
    let mut cfg = tern_signaling::Config::from_toml(o.sip, &text).map_err(|e| {
        format!(
            "config {}: {e}",
            o.config.as_deref().unwrap_or("<none>".as_ref()).display()
        )
    })?;
    cfg.sip.validate()?;
    if let Some(secs) = o.drain {
        cfg.transport.drain = std::time::Duration::from_secs(secs);
    }
    Ok(cfg)
}

fn up(mut a: UpArgs, shutdown: Arc<AtomicBool>) -> Result<(), Error> {
    // One jitter-buffer default for both kinds of calls: `[media]` in the
    // config file, switched on by it or by --jitter-buffer.
    let tern_signaling::Config {
        sip: mut sip_cfg,
        transport,
    } = sip_config(&a.sip)?;
    sip_cfg.jitter.enabled |= a.relay.jitter_buffer;
    if a.relay.recording_dir.is_none() {
        a.relay.recording_dir = sip_cfg.recording_dir.clone();
    }
    a.relay.media_jitter = Some(sip_cfg.jitter);
    if a.relay.interfaces.is_empty() {
        a.relay.interfaces = sip_cfg.interfaces.clone();
    }
    // Bind SIP before anything announces readiness, so no request is lost.
    let snapshot = tern_signaling::SipSnapshot::shared();
    let server = tern_signaling::Server::bind(sip_cfg)?
        .with_snapshot(snapshot.clone())
        .with_transport(transport)
        .with_drain(drain_flag());
    let (table, relay, ng) = start_relay(&a.relay, &shutdown)?;
    let http = start_http(a.relay.http, &table, Some(snapshot), &shutdown)?;
    println!(
        "tern sip: listening on udp:{0} tcp:{0}{1}",
        server.local_addr(),
        stream_listeners(&server)
    );
    let backend = Box::new(tern_signaling::relay::ShmRelay::new(table));
    let sip = server.serve(backend, shutdown.clone());
    shutdown.store(true, Ordering::Relaxed);
    if let Some(ng) = ng {
        ng.join();
    }
    relay.join()?;
    if let Some(h) = http {
        h.join();
    }
    sip?;
    Ok(())
}

/// ` tls:ADDR ws:ADDR wss:ADDR` for the configured stream listeners, and
/// the TLS certificate's fingerprint, for the ready line.
fn stream_listeners(server: &tern_signaling::Server) -> String {
    let mut out = String::new();
    for (kind, addr) in server.stream_listeners() {
        out.push_str(&format!(" {}:{addr}", kind.name()));
    }
    if let Some(id) = server.tls_identity() {
        let what = if id.self_signed { "self-signed " } else { "" };
        out.push_str(&format!(" ({what}certificate sha-256 {})", id.fingerprint));
    }
    out
}

fn relay(a: RelayArgs, shutdown: Arc<AtomicBool>) -> Result<(), Error> {
    let (table, relay, ng) = start_relay(&a, &shutdown)?;
    let http = start_http(a.http, &table, None, &shutdown)?;
    relay.join()?;
    if let Some(h) = http {
        h.join();
    }
    if let Some(ng) = ng {
        ng.join();
    }
    Ok(())
}

fn sip(a: SipArgs, shutdown: Arc<AtomicBool>) -> Result<(), Error> {
    let tern_signaling::Config {
        sip: cfg,
        transport,
    } = sip_config(&a.sip)?;
    let name = a
        .relay
        .strip_prefix("shm:")
        .ok_or_else(|| format!("--relay {:?}: expected shm:NAME", a.relay))?;
    let table = SlotTable::open(name).map_err(|e| {
        format!(
            "--relay {}: {e} (is `tern relay --instance {name}` running?)",
            a.relay
        )
    })?;
    let table = Arc::new(table);
    let snapshot = tern_signaling::SipSnapshot::shared();
    let server = tern_signaling::Server::bind(cfg)?
        .with_snapshot(snapshot.clone())
        .with_transport(transport)
        .with_drain(drain_flag());
    let http = start_http(a.http, &table, Some(snapshot), &shutdown)?;
    println!(
        "tern sip: listening on udp:{0} tcp:{0}{2}, relay {1}",
        server.local_addr(),
        table.path().display(),
        stream_listeners(&server)
    );
    let backend = Box::new(tern_signaling::relay::ShmRelay::new(table));
    let served = server.serve(backend, shutdown.clone());
    shutdown.store(true, Ordering::Relaxed);
    if let Some(h) = http {
        h.join();
    }
    served?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_args(args: &[&str]) -> Result<RelayArgs, clap::Error> {
        let argv = ["tern", "relay"].iter().chain(args).copied();
        match Cli::try_parse_from(argv)? {
            Cli {
                cmd: Some(Cmd::Relay(a)),
            } => Ok(a),
            _ => unreachable!("`tern relay` parses as Relay"),
        }
    }

    #[test]
    fn interface_options_parse_in_rtpengine_syntax() {
        let a = relay_args(&[
            "--interface",
            "priv/127.0.0.2",
            "--interface=pub/127.0.0.3!203.0.113.7",
            "--interface",
            "v6/::1",
        ])
        .unwrap();
        let got: Vec<String> = a.interfaces.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            got,
            ["priv/127.0.0.2", "pub/127.0.0.3!203.0.113.7", "v6/::1"]
        );
        assert!(relay_args(&[]).unwrap().interfaces.is_empty());
        for bad in [
            "pub/",
            "pub/1.2.3.4!",
            "pub/not-an-ip",
            "a b/1.2.3.4",
            "pub/0.0.0.0",
        ] {
            let e = relay_args(&["--interface", bad]).err();
            assert!(e.is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_bad_interface_list_is_refused_before_the_table() {
        let a = relay_args(&[
            "--interface",
            "pub/127.0.0.2",
            "--interface",
            "pub/127.0.0.3",
            "--instance",
            "never-created",
        ])
        .unwrap();
        let e = open_table(&a).unwrap_err().to_string();
        assert!(
            e.contains("--interface") && e.contains("round robin"),
            "{e}"
        );
        assert!(!tern_shared::table::table_path("never-created").exists());
    }
}
