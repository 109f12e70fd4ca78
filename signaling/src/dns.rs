//! The resolver thread behind RFC 3263 for trunk gateways: the IO half
//! of `crate::trunk_dns`. It owns a `hickory-resolver` (on a one-thread
//! tokio runtime of its own) and answers [`DnsQuery`]s from the server
//! loop with [`DnsAnswer`]s; the core never waits for it.
//!
//! - `port: Some(p)`: A/AAAA of the host, every address on `p`.
//! - `port: None`: SRV `_sip._udp.<host>` (RFC 3263 §4.2, RFC 2782), each
//!   target's A/AAAA on its port; no SRV record: A/AAAA on 5060.
//! - The TTL handed back is the smallest of the records used.
//! - Nameserver: `[sip] dns` when set (UDP and TCP to that `IP:port`),
//!   else the system's (`/etc/resolv.conf`).

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use tracing::{debug, warn};

use crate::trunk_dns::{DnsAnswer, DnsQuery, SrvTarget};

/// The two ends the server loop holds: queries go in, answers come out.
#[derive(Debug)]
pub struct DnsWorker {
    /// Queries to the resolver thread.
    pub queries: Sender<DnsQuery>,
    /// Its answers.
    pub answers: Receiver<DnsAnswer>,
}

/// Starts the resolver thread, asking `nameserver` (`None`: the
/// system's). Errors: the resolver or its runtime could not be built
/// (e.g. no readable resolv.conf), as text.
pub fn spawn(nameserver: Option<SocketAddr>) -> Result<DnsWorker, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("DNS runtime: {e}"))?;
    let resolver: TokioResolver = {
        let _guard = rt.enter();
        let builder = match nameserver {
            Some(ns) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = ns.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = ns.port();
                let server = NameServerConfig::new(ns.ip(), true, vec![udp, tcp]);
                let cfg = ResolverConfig::from_name_servers(vec![server]);
                Resolver::builder_with_config(cfg, TokioRuntimeProvider::default())
            }
            None => TokioResolver::builder_tokio().map_err(|e| format!("resolv.conf: {e}"))?,
        };
        let mut builder = builder;
        let opts = builder.options_mut();
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        // tern keeps its own cache by TTL (crate::trunk_dns).
        opts.cache_size = 0;
        // Names are absolute: no search-list suffixes.
        opts.ndots = 0;
        builder.build().map_err(|e| format!("DNS resolver: {e}"))?
    };
    let (qtx, qrx) = mpsc::channel::<DnsQuery>();
    let (atx, arx) = mpsc::channel::<DnsAnswer>();
    thread::Builder::new()
        .name("tern-dns".into())
        .spawn(move || {
            // Ends when the server drops its sender.
            while let Ok(q) = qrx.recv() {
                let result = rt.block_on(resolve(&resolver, &q));
                match &result {
                    Ok((t, ttl)) => {
                        debug!(host = %q.host, port = ?q.port, targets = t.len(), ttl_s = ttl.as_secs(), "gateway name resolved")
                    }
                    Err(e) => warn!(host = %q.host, port = ?q.port, error = %e, "gateway name not resolved"),
                }
                if atx.send(DnsAnswer { query: q, result }).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("DNS thread: {e}"))?;
    Ok(DnsWorker {
        queries: qtx,
        answers: arx,
    })
}

/// A/AAAA of `host`, each on `port`, and the smallest TTL.
async fn addrs(r: &TokioResolver, host: &str, port: u16) -> Result<(Vec<SocketAddr>, u32), String> {
    let fqdn = format!("{}.", host.trim_end_matches('.'));
    let l = r
        .lookup_ip(fqdn.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let ttl = l
        .as_lookup()
        .answers()
        .iter()
        .map(|a| a.ttl)
        .min()
        .unwrap_or(60);
    Ok((l.iter().map(|ip| SocketAddr::new(ip, port)).collect(), ttl))
}

/// RFC 3263 §4.2 for `q` (see the module docs).
async fn resolve(r: &TokioResolver, q: &DnsQuery) -> Result<(Vec<SrvTarget>, Duration), String> {
    let single = |(addrs, ttl): (Vec<SocketAddr>, u32)| {
        (
            vec![SrvTarget {
                priority: 0,
                weight: 0,
                addrs,
            }],
            Duration::from_secs(u64::from(ttl)),
        )
    };
    if let Some(port) = q.port {
        return addrs(r, &q.host, port).await.map(single);
    }
    let srv_name = format!("_sip._udp.{}.", q.host.trim_end_matches('.'));
    let srv = match r.srv_lookup(srv_name.as_str()).await {
        Ok(l) => l,
        Err(e) if e.is_no_records_found() => {
            return addrs(r, &q.host, 5060).await.map(single);
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut ttl = u32::MAX;
    let mut out = Vec::new();
    for rec in srv.answers() {
        let RData::SRV(s) = &rec.data else { continue };
        ttl = ttl.min(rec.ttl);
        let target = s.target.to_utf8();
        if target == "." {
            // RFC 2782: "." means the service is not offered here.
            continue;
        }
        match addrs(r, &target, s.port).await {
            Ok((a, t)) => {
                ttl = ttl.min(t);
                out.push(SrvTarget {
                    priority: s.priority,
                    weight: s.weight,
                    addrs: a,
                });
            }
            Err(e) => debug!(%target, error = %e, "SRV target not resolved"),
        }
    }
    if out.is_empty() {
        return Err(format!("{srv_name}: no SRV target resolved"));
    }
    Ok((out, Duration::from_secs(u64::from(ttl.min(86_400)))))
}
