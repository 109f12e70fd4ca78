//! The HTTP API's routing and JSON, sans-IO: a method, a URL and the Unix
//! time in, a [`Reply`] out. The transport (`tiny_http`) lives in
//! `lib.rs`; everything here is testable without a socket.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tern_shared::table::{label_matches, SlotState, SlotTable};
use tern_signaling::snapshot::{SharedSnapshot, SipSnapshot};

use crate::liveness::{heartbeat_age, is_alive};
use crate::metrics::{self, Scrape};
use crate::source::{Dtmf, Quality, Source};

/// Longest request target served, bytes; longer ones get 414.
pub const MAX_URL: usize = 2048;
/// A worker whose heartbeat is older than this (ms) counts as stalled; kept
/// here for callers of `api::STALE_MS`, defined in [`crate::liveness`].
pub use crate::liveness::STALE_MS;
/// Calls listed by `/calls` without `?limit=`.
pub const DEFAULT_CALLS_LIMIT: usize = 1000;
/// The largest `?limit=` honoured (a bigger one is cut to this).
pub const MAX_CALLS_LIMIT: usize = 100_000;
/// Window over which calls per second are measured, ms.
pub const CPS_WINDOW_MS: u64 = 10_000;

/// An HTTP response: status, `Content-Type` and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Value of the `Content-Type` header.
    pub content_type: &'static str,
    /// The body (UTF-8).
    pub body: String,
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
/// prometheus-client writes OpenMetrics text (which Prometheus scrapes).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Reply {
    fn json<T: Serialize>(status: u16, v: &T) -> Reply {
        // Compact: `/calls` of thousands of slots is several times smaller
        // than pretty-printed.
        match serde_json::to_string(v) {
            Ok(body) => Reply {
                status,
                content_type: JSON,
                body: body + "\n",
            },
            Err(e) => Reply::error(500, &format!("JSON encoding: {e}")),
        }
    }

    fn error(status: u16, msg: &str) -> Reply {
        Reply::json_raw(status, serde_json::json!({ "error": msg }))
    }

    fn json_raw(status: u16, v: serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: JSON,
            body: format!("{v}\n"),
        }
    }
}

/// Calls started per second over a sliding window of samples of a
/// monotonic total.
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    /// (Unix ms, total), oldest first, spanning at most [`CPS_WINDOW_MS`].
    samples: std::collections::VecDeque<(u64, u64)>,
}

impl RateWindow {
    /// Records the monotonic `total` (calls started) at Unix time `now_ms`
    /// (ms): at most one sample a second is kept (closer ones, and a clock
    /// stepped back, are ignored), and samples older than
    /// [`CPS_WINDOW_MS`] are dropped.
    pub fn sample(&mut self, now_ms: u64, total: u64) {
        if let Some(&(t, _)) = self.samples.back() {
            // One sample a second is plenty; a clock step back is ignored.
            if now_ms < t + 1000 {
                return;
            }
        }
        self.samples.push_back((now_ms, total));
        while let Some(&(t, _)) = self.samples.front() {
            if now_ms.saturating_sub(t) > CPS_WINDOW_MS {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// Per second, over the window; 0 with fewer than two samples.
    pub fn rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, n0)), Some(&(t1, n1))) if t1 > t0 => {
                n1.saturating_sub(n0) as f64 * 1000.0 / (t1 - t0) as f64
            }
            _ => 0.0,
        }
    }
}

/// The API's state: what it reads and what it counts itself.
pub struct Observer {
    pub(crate) table: Arc<SlotTable>,
    pub(crate) sip: Option<SharedSnapshot>,
    /// Responses served, by status code.
    pub(crate) responses: BTreeMap<u16, u64>,
    pub(crate) cps: RateWindow,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("table", &self.table)
            .field("sip", &self.sip.is_some())
            .field("responses", &self.responses)
            .finish()
    }
}

#[derive(Serialize)]
struct WorkerHealth {
    worker: u32,
    alive: bool,
    /// ms since the last heartbeat; null if the worker never ticked.
    heartbeat_age_ms: Option<u64>,
    forwarded: u64,
    dropped: u64,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    workers: Vec<WorkerHealth>,
    slots_active: u32,
    slots_capacity: u32,
    /// ms since the signaling snapshot was taken; absent without SIP.
    #[serde(skip_serializing_if = "Option::is_none")]
    sip_snapshot_age_ms: Option<u64>,
}

/// One leg of a call in `/calls` (leg 0 faces the caller, 1 the callee).
#[derive(Serialize)]
struct LegJson {
    leg: usize,
    local_rtp_port: u16,
    /// The peer media address (learned or signaled), if known.
    peer: Option<String>,
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    rtcp_rx_packets: u64,
    drops: DropsJson,
    /// Receive quality; null until RTP arrived.
    quality: Option<QualityJson>,
    /// The SIP transport of the leg's party (`udp`, `tcp`, `tls`, `ws`,
    /// `wss`), for B2BUA calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    transport: Option<&'static str>,
    /// The media profile the leg's party speaks (`RTP/AVP`,
    /// `UDP/TLS/RTP/SAVPF`, ...), for B2BUA calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'static str>,
    /// ICE on the leg: `off`, or `lite` with `waiting`/`nominated`
    /// (RFC 8445 §2.5: the relay is ICE-lite).
    ice: &'static str,
    /// DTLS on the leg: `off`, `handshaking` or `connected` (SRTP keys
    /// exported, RFC 5764 §4.2).
    dtls: &'static str,
}

#[derive(Serialize)]
struct DropsJson {
    source: u64,
    direction: u64,
    malformed: u64,
    no_peer: u64,
    jitter_late: u64,
    jitter_overflow: u64,
    srtp_auth: u64,
    srtp_replay: u64,
    srtp_malformed: u64,
    stun: u64,
    dtls: u64,
    demux: u64,
    no_consent: u64,
    transcode: u64,
}

#[derive(Serialize)]
struct QualityJson {
    expected: u64,
    lost: i64,
    /// 0.0..=1.0.
    fraction_lost: f64,
    jitter_ms: f64,
    duplicates: u64,
    reordered: u64,
    rtt_ms: Option<f64>,
    peer_fraction_lost: Option<f64>,
    peer_jitter_ms: Option<f64>,
    mos: Option<f64>,
    clock_rate: u32,
}

impl From<Quality> for QualityJson {
    fn from(q: Quality) -> QualityJson {
        QualityJson {
            expected: q.expected,
            lost: q.lost,
            fraction_lost: q.fraction_lost,
            jitter_ms: q.jitter_ms,
            duplicates: q.duplicates,
            reordered: q.reordered,
            rtt_ms: q.rtt_ms,
            peer_fraction_lost: q.peer_fraction_lost,
            peer_jitter_ms: q.peer_jitter_ms,
            mos: q.mos,
            clock_rate: q.clock_rate,
        }
    }
}

#[derive(Serialize)]
struct DtmfJson {
    /// The slot (media stream) it was seen on.
    slot: u32,
    leg: usize,
    digit: String,
    event: u8,
    /// RTP timestamp units.
    duration: u32,
    duration_ms: f64,
    rtp_timestamp: u32,
    /// Unix ms the event was taken as ended (its first end packet; with
    /// all end packets lost, the next event's start or the stream's end).
    at_ms: u64,
}

impl DtmfJson {
    fn new(slot: u32, d: Dtmf) -> DtmfJson {
        DtmfJson {
            slot,
            leg: d.leg,
            digit: d.digit.to_string(),
            event: d.event,
            duration: d.duration,
            duration_ms: d.duration_ms,
            rtp_timestamp: d.rtp_timestamp,
            at_ms: d.at_ms,
        }
    }
}

/// One call (one relay slot) in `/calls` and `/calls/{call-id}`.
#[derive(Serialize)]
struct CallJson {
    slot: u32,
    /// The caller's Call-ID; null if the slot has no label (e.g. a slot
    /// being set up).
    call_id: Option<String>,
    /// The slot's state: `reserved` or `active`.
    state: &'static str,
    /// The B2BUA's call state, when the signaling plane runs here.
    #[serde(skip_serializing_if = "Option::is_none")]
    sip_state: Option<&'static str>,
    worker: u32,
    legs: Vec<LegJson>,
}

/// `/calls`: at most `limit` live calls (slots), in slot order; `total`
/// counts them all, `truncated` says some were left out.
#[derive(Serialize)]
struct CallsJson {
    calls: Vec<CallJson>,
    total: usize,
    truncated: bool,
}

/// `/calls/{call-id}`: every slot of the call (one per media stream an ng
/// offer asked for, or the B2BUA's one) and their DTMF events, oldest
/// first.
#[derive(Serialize)]
struct OneCallJson {
    call_id: String,
    slots: Vec<CallJson>,
    dtmf: Vec<DtmfJson>,
}

#[derive(Serialize)]
struct RegistrationJson {
    aor: String,
    contact: String,
    source: String,
    expires_s: u32,
    transport: &'static str,
}

impl Observer {
    /// An observer of `table`, and of the signaling plane's snapshot when
    /// it runs in this process.
    pub fn new(table: Arc<SlotTable>, sip: Option<SharedSnapshot>) -> Observer {
        Observer {
            table,
            sip,
            responses: BTreeMap::new(),
            cps: RateWindow::default(),
        }
    }

    /// The slot-table reader in the API's units (see [`Source`]).
    pub(crate) fn source(&self) -> Source<'_> {
        Source { table: &self.table }
    }

    /// A copy of the signaling snapshot (cloned so the lock is brief).
    pub(crate) fn sip_snapshot(&self) -> Option<SipSnapshot> {
        self.sip
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// The monotonic count behind calls per second: INVITEs that started a
    /// call when SIP runs here, else slot reservations (ng offers).
    pub(crate) fn calls_started(&self, sip: Option<&SipSnapshot>) -> u64 {
        match sip {
            Some(s) => s.calls_total,
            None => self.slots_reserved(),
        }
    }

    /// Slot reservations since the table was created (sum of generations).
    pub(crate) fn slots_reserved(&self) -> u64 {
        (0..self.table.capacity())
            .map(|id| self.table.generation(id))
            .sum()
    }

    /// What `/metrics` encodes, read now.
    fn scrape(&self) -> Scrape<'_> {
        let sip = self.sip_snapshot();
        let slots_reserved = self.slots_reserved();
        let calls_started = sip.as_ref().map_or(slots_reserved, |s| s.calls_total);
        Scrape {
            table: &self.table,
            slots_reserved,
            calls_started,
            sip,
            cps: self.cps.rate(),
            responses: &self.responses,
        }
    }

    /// Samples the calls-per-second window; call about once a second.
    pub fn tick(&mut self, now_ms: u64) {
        let sip = self.sip_snapshot();
        let n = self.calls_started(sip.as_ref());
        self.cps.sample(now_ms, n);
    }

    /// Serves one request. Never panics on request input: unknown paths
    /// get 404, methods other than GET/HEAD 405, targets over [`MAX_URL`]
    /// bytes 414, undecodable Call-IDs 400. Every response is counted by
    /// status in `tern_http_responses_total`.
    pub fn handle(&mut self, method: &str, url: &str, now_ms: u64) -> Reply {
        let r = self.route(method, url, now_ms);
        *self.responses.entry(r.status).or_default() += 1;
        r
    }

    fn route(&mut self, method: &str, url: &str, now_ms: u64) -> Reply {
        if url.len() > MAX_URL {
            return Reply::error(414, "request target too long");
        }
        if method != "GET" && method != "HEAD" {
            return Reply::error(405, "only GET and HEAD are served");
        }
        let path = url.split(['?', '#']).next().unwrap_or("");
        match path {
            "/health" => self.health(now_ms),
            "/metrics" => {
                self.tick(now_ms);
                match metrics::encode(&self.scrape(), now_ms) {
                    Ok(body) => Reply {
                        status: 200,
                        content_type: OPENMETRICS,
                        body,
                    },
                    Err(e) => Reply::error(500, &format!("metrics encoding: {e}")),
                }
            }
            "/calls" | "/calls/" => {
                let limit = match calls_limit(url) {
                    Ok(l) => l,
                    Err(e) => return Reply::error(400, &e),
                };
                let (calls, total) = self.calls(None, limit);
                let truncated = calls.len() < total;
                Reply::json(
                    200,
                    &CallsJson {
                        calls,
                        total,
                        truncated,
                    },
                )
            }
            "/registrations" => self.registrations(),
            "/" => Reply {
                status: 200,
                content_type: TEXT,
                body: "tern: /health /metrics /calls /calls/{call-id} /registrations\n".into(),
            },
            p => match p.strip_prefix("/calls/") {
                Some(raw) => {
                    let Ok(id) = percent_encoding::percent_decode_str(raw).decode_utf8() else {
                        return Reply::error(400, "Call-ID is not valid UTF-8");
                    };
                    let (slots, _) = self.calls(Some(&id), MAX_CALLS_LIMIT);
                    if slots.is_empty() {
                        return Reply::error(404, &format!("no call with Call-ID {id:?}"));
                    }
                    let src = self.source();
                    let mut dtmf: Vec<DtmfJson> = slots
                        .iter()
                        .flat_map(|c| {
                            src.dtmf(c.slot)
                                .into_iter()
                                .map(|d| DtmfJson::new(c.slot, d))
                        })
                        .collect();
                    dtmf.sort_by_key(|d| (d.at_ms, d.slot, d.leg));
                    let one = OneCallJson {
                        call_id: slots[0].call_id.clone().unwrap_or_else(|| id.to_string()),
                        slots,
                        dtmf,
                    };
                    Reply::json(200, &one)
                }
                None => Reply::error(404, "no such resource"),
            },
        }
    }

    fn health(&self, now_ms: u64) -> Reply {
        let t = &self.table;
        let workers: Vec<WorkerHealth> = (0..t.workers())
            .map(|w| {
                let (hb, forwarded, dropped) = t.worker_status(w);
                WorkerHealth {
                    worker: w,
                    alive: is_alive(hb, now_ms),
                    heartbeat_age_ms: heartbeat_age(hb, now_ms),
                    forwarded,
                    dropped,
                }
            })
            .collect();
        let ok = workers.iter().all(|w| w.alive);
        let h = Health {
            status: if ok { "ok" } else { "stalled" },
            workers,
            slots_active: t.count(SlotState::Active),
            slots_capacity: t.capacity(),
            sip_snapshot_age_ms: self
                .sip_snapshot()
                .map(|s| now_ms.saturating_sub(s.taken_at_ms)),
        };
        Reply::json(if ok { 200 } else { 503 }, &h)
    }

    /// The latest listing; `tern_observe::wait_for_registrations` asked for a
    /// fresh one before the observer was locked.
    fn registrations(&self) -> Reply {
        let regs: Vec<RegistrationJson> = self
            .sip_snapshot()
            .map(|s| {
                s.registrations
                    .iter()
                    .map(|r| RegistrationJson {
                        aor: r.aor.clone(),
                        contact: r.contact.clone(),
                        source: r.source.to_string(),
                        expires_s: r.expires_s,
                        transport: r.transport,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Reply::json(200, &regs)
    }

    /// Live slots as calls; with `only`, those whose Call-ID matches: the
    /// slot's label (which holds the first [`LABEL_BYTES`] bytes of a longer
    /// Call-ID, told apart by the slot's tag) or either dialog's Call-ID in
    /// the SIP snapshot.
    ///
    /// [`LABEL_BYTES`]: tern_shared::table::LABEL_BYTES
    /// At most `limit` of them are built; the second value counts them all.
    fn calls(&self, only: Option<&str>, limit: usize) -> (Vec<CallJson>, usize) {
        let src = self.source();
        let sip = self.sip_snapshot();
        let mut out = Vec::new();
        let mut total = 0;
        for slot in src.live_slots() {
            let sip_call = sip
                .as_ref()
                .and_then(|s| s.calls.iter().find(|c| c.slot == Some(slot)));
            // The snapshot's Call-ID is whole; the slot's label may be cut.
            let call_id = sip_call
                .map(|c| c.call_id.clone())
                .filter(|s| !s.is_empty())
                .or_else(|| src.call_id(slot));
            let cfg = self.table.read_config(slot).ok().map(|(c, _)| c);
            if let Some(want) = only {
                let label_hit = src
                    .call_id(slot)
                    .is_some_and(|l| label_matches(&l, cfg.as_ref().map_or(0, |c| c.tag), want));
                let hit = label_hit
                    || call_id.as_deref() == Some(want)
                    || sip_call.is_some_and(|c| c.call_id == want || c.callee_call_id == want);
                if !hit {
                    continue;
                }
            }
            let state = match self.table.state(slot) {
                SlotState::Reserved => "reserved",
                SlotState::Active => "active",
                // Freed between the scan and now.
                _ => continue,
            };
            total += 1;
            if out.len() >= limit {
                continue;
            }
            let legs = (0..2)
                .map(|leg| {
                    let s = src.stats(slot, leg);
                    let signaled = cfg.as_ref().and_then(|c| c.legs[leg].peer);
                    let sec = cfg.as_ref().map(|c| c.legs[leg].secure);
                    let ice = match sec.and_then(|x| x.ice) {
                        None => "off",
                        Some(_) if s.learned.is_some() => "lite, nominated",
                        Some(_) => "lite, waiting",
                    };
                    let dtls = match sec.and_then(|x| x.dtls) {
                        None => "off",
                        Some(_) if self.table.dtls_keying(slot, leg).is_some() => "connected",
                        Some(_) => "handshaking",
                    };
                    let sip_leg = sip_call.map(|c| c.legs[leg]);
                    LegJson {
                        leg,
                        local_rtp_port: self.table.ports(slot, leg).rtp,
                        peer: s.learned.or(signaled).map(|a| a.to_string()),
                        rx_packets: s.rx_packets,
                        rx_bytes: s.rx_bytes,
                        tx_packets: s.tx_packets,
                        tx_bytes: s.tx_bytes,
                        rtcp_rx_packets: s.rtcp_rx_packets,
                        drops: DropsJson {
                            source: s.drop_source,
                            direction: s.drop_direction,
                            malformed: s.drop_malformed,
                            no_peer: s.drop_no_peer,
                            jitter_late: s.drop_jitter_late,
                            jitter_overflow: s.drop_jitter_overflow,
                            srtp_auth: s.drop_srtp_auth,
                            srtp_replay: s.drop_srtp_replay,
                            srtp_malformed: s.drop_srtp_malformed,
                            stun: s.drop_stun,
                            dtls: s.drop_dtls,
                            demux: s.drop_demux,
                            no_consent: s.drop_no_consent,
                            transcode: s.drop_transcode,
                        },
                        quality: src.quality(slot, leg).map(QualityJson::from),
                        transport: sip_leg.map(|l| l.transport),
                        profile: sip_leg.map(|l| l.profile),
                        ice,
                        dtls,
                    }
                })
                .collect();
            out.push(CallJson {
                slot,
                call_id,
                state,
                sip_state: sip_call.map(|c| c.state),
                worker: self.table.worker_of(slot),
                legs,
            });
        }
        (out, total)
    }
}

/// The `limit` query parameter of a `/calls` target: [`DEFAULT_CALLS_LIMIT`]
/// when absent, at most [`MAX_CALLS_LIMIT`].
///
/// Errors: a `limit` that is not a decimal number (as text for a 400).
fn calls_limit(url: &str) -> Result<usize, String> {
    let query = url
        .split_once('?')
        .map_or("", |(_, q)| q.split('#').next().unwrap_or(""));
    let mut limit = DEFAULT_CALLS_LIMIT;
    for kv in query.split('&') {
        if let Some(v) = kv.strip_prefix("limit=") {
            limit = v.parse::<usize>().map_err(|_| {
                format!(
                    "limit must be a number of calls, got {:?}",
                    v.get(..40).unwrap_or(v)
                )
            })?;
        }
    }
    Ok(limit.min(MAX_CALLS_LIMIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_measures_over_ten_seconds() {
        let mut w = RateWindow::default();
        assert_eq!(w.rate(), 0.0);
        for s in 0..=20u64 {
            w.sample(1_000_000 + s * 1000, s * 5);
        }
        assert!((w.rate() - 5.0).abs() < 1e-9, "{}", w.rate());
        // Samples closer than a second apart are skipped.
        w.sample(1_020_500, 1000);
        assert!((w.rate() - 5.0).abs() < 1e-9);
        assert!(w.samples.len() <= 11);
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;
    use tern_shared::table::{SlotConfig, TableParams};

    fn table(tag: &str) -> Arc<SlotTable> {
        let name = format!("t-h3-unit-{tag}-{}", std::process::id());
        let params = TableParams {
            port_lo: 26900,
            port_hi: 26999,
            workers: 2,
            media_ip: "127.0.0.1".parse().unwrap(),
        };
        let t = SlotTable::create_or_attach(&name, params).unwrap();
        let _ = t.unlink();
        Arc::new(t)
    }

    fn body_json(r: &Reply) -> serde_json::Value {
        assert_eq!(r.content_type, JSON, "{r:?}");
        serde_json::from_str(&r.body).unwrap()
    }

    #[test]
    fn health_follows_worker_heartbeats() {
        let t = table("health");
        let mut o = Observer::new(t.clone(), None);
        let now = 1_000_000_000;
        let r = o.handle("GET", "/health", now);
        assert_eq!(r.status, 503, "no worker ever ticked: {}", r.body);
        t.worker_tick(0, now - 100, 5, 1);
        t.worker_tick(1, now - 50, 0, 0);
        let r = o.handle("GET", "/health", now);
        assert_eq!(r.status, 200, "{}", r.body);
        let v = body_json(&r);
        assert_eq!(v["status"], "ok");
        assert_eq!(v["workers"][0]["forwarded"], 5);
        // Worker 1 stalls.
        let r = o.handle("GET", "/health", now + STALE_MS + 100);
        assert_eq!(r.status, 503);
        assert_eq!(body_json(&r)["workers"][1]["alive"], false);
    }

    #[test]
    fn bad_requests_get_4xx_and_are_counted() {
        let mut o = Observer::new(table("bad"), None);
        assert_eq!(o.handle("GET", "/nope", 0).status, 404);
        assert_eq!(o.handle("POST", "/calls", 0).status, 405);
        assert_eq!(o.handle("DELETE", "/calls/x", 0).status, 405);
        let long = format!("/calls/{}", "a".repeat(MAX_URL));
        assert_eq!(o.handle("GET", &long, 0).status, 414);
        assert_eq!(o.handle("GET", "/calls/%FF%FE", 0).status, 400);
        assert_eq!(o.handle("GET", "/calls/unknown", 0).status, 404);
        assert_eq!(o.handle("GET", "", 0).status, 404);
        assert_eq!(o.responses.get(&404), Some(&3));
        let m = o.handle("GET", "/metrics", 0);
        assert_eq!(m.status, 200);
        assert!(
            m.body.contains("tern_http_responses_total{code=\"405\"} 2"),
            "{}",
            m.body
        );
    }

    #[test]
    fn odd_targets_never_panic() {
        let mut o = Observer::new(table("odd"), None);
        for url in [
            "/calls/%",
            "/calls/%z",
            "/calls/%F0%9F",
            "//",
            "/calls/../health",
            "/calls//x",
            "*",
            "/metrics?x=1#y",
            "/health?",
            "/calls/\u{1F600}",
            "/calls/a%00b",
            "?",
            "#",
        ] {
            let r = o.handle("GET", url, 0);
            assert!(matches!(r.status, 200 | 400 | 404 | 503), "{url}: {r:?}");
        }
        assert_eq!(o.handle("GET", "/metrics?x=1#y", 0).status, 200);
        assert_eq!(o.handle("get", "/metrics", 0).status, 405);
    }

    #[test]
    fn calls_list_and_one_call() {
        let t = table("calls");
        let mut o = Observer::new(t.clone(), None);
        assert_eq!(
            body_json(&o.handle("GET", "/calls", 0)),
            serde_json::json!({"calls": [], "total": 0, "truncated": false})
        );
        let id = t.reserve().unwrap();
        t.publish(id, &SlotConfig::default()).unwrap();
        t.set_call_id(id, "abc/1@host");
        let v = body_json(&o.handle("GET", "/calls", 0))["calls"].clone();
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(v[0]["slot"], id);
        assert_eq!(v[0]["call_id"], "abc/1@host");
        assert_eq!(v[0]["state"], "active");
        assert_eq!(v[0]["legs"].as_array().map(Vec::len), Some(2));
        assert_eq!(v[0]["legs"][1]["local_rtp_port"], t.ports(id, 1).rtp);
        assert!(v[0].get("dtmf").is_none());
        let r = o.handle("GET", "/calls/abc%2F1%40host", 0);
        assert_eq!(r.status, 200, "{}", r.body);
        let c = body_json(&r);
        assert_eq!(c["call_id"], "abc/1@host");
        assert_eq!(c["slots"][0]["slot"], id);
        assert_eq!(c["dtmf"], serde_json::json!([]));
        // Slot gauges and the reservation counter.
        let m = o.handle("GET", "/metrics", 0).body;
        assert!(m.contains("tern_slots{state=\"active\"} 1"), "{m}");
        assert!(m.contains("tern_slots_reserved_total 1"), "{m}");
        assert!(m.ends_with("# EOF\n"));
        t.release(id).unwrap();
        assert_eq!(o.handle("GET", "/calls/abc%2F1%40host", 0).status, 404);
        // No signaling plane here: no registrations.
        // (The long Call-ID cases are in `long_call_ids_and_every_slot`.)
        assert_eq!(
            body_json(&o.handle("GET", "/registrations", 0)),
            serde_json::json!([])
        );
    }

    /// An ng-only relay labels slots with the first 64 bytes of the
    /// Call-ID: a longer Call-ID is still found (by prefix and the slot's
    /// tag), another with the same first 64 bytes is not, and a call with
    /// two slots (two media streams) shows both.
    #[test]
    fn long_call_ids_and_every_slot() {
        use tern_shared::table::{call_tag, DtmfEvent, LABEL_BYTES};
        let t = table("long");
        let mut o = Observer::new(t.clone(), None);
        let long = format!("{}@host", "k".repeat(90));
        let twin = format!("{}@other", "k".repeat(90));
        let mut ids = Vec::new();
        for _ in 0..2 {
            let id = t.reserve().unwrap();
            let cfg = SlotConfig {
                tag: call_tag(&long),
                ..Default::default()
            };
            t.publish(id, &cfg).unwrap();
            t.set_call_id(id, &long);
            ids.push(id);
        }
        assert_eq!(t.call_id(ids[0]).map(|l| l.len()), Some(LABEL_BYTES));
        let ev = |digit: char, at_ms: u64| DtmfEvent {
            digit,
            event: digit.to_digit(10).unwrap() as u8,
            duration: 800,
            rtp_timestamp: 1,
            at_ms,
        };
        t.counters(ids[1], 0).unwrap().push_dtmf(&ev('5', 2000));
        t.counters(ids[0], 1).unwrap().push_dtmf(&ev('3', 1000));
        let r = o.handle("GET", &format!("/calls/{long}"), 0);
        assert_eq!(r.status, 200, "{}", r.body);
        let c = body_json(&r);
        let mut slots: Vec<u64> = c["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["slot"].as_u64().unwrap())
            .collect();
        slots.sort_unstable();
        let mut want: Vec<u64> = ids.iter().map(|&i| u64::from(i)).collect();
        want.sort_unstable();
        assert_eq!(slots, want, "both slots of the call");
        let digits: Vec<&str> = c["dtmf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["digit"].as_str().unwrap())
            .collect();
        assert_eq!(digits, ["3", "5"], "events of both slots, oldest first");
        assert_eq!(c["dtmf"][1]["slot"], ids[1]);
        assert_eq!(o.handle("GET", &format!("/calls/{twin}"), 0).status, 404);
        assert_eq!(
            o.handle("GET", &format!("/calls/{}", &long[..LABEL_BYTES - 1]), 0)
                .status,
            404
        );
    }

    /// `/calls` is compact JSON, capped by `?limit=` (default 1000) with
    /// `total` and `truncated` saying what was left out.
    #[test]
    fn calls_are_compact_and_capped() {
        let t = table("cap");
        let mut o = Observer::new(t.clone(), None);
        for k in 0..5 {
            let id = t.reserve().unwrap();
            t.publish(id, &SlotConfig::default()).unwrap();
            t.set_call_id(id, &format!("c{k}"));
        }
        let r = o.handle("GET", "/calls", 0);
        assert!(!r.body.contains("\n "), "compact: {}", r.body);
        let v = body_json(&r);
        assert_eq!(v["calls"].as_array().map(Vec::len), Some(5));
        assert_eq!(
            (v["total"].as_u64(), v["truncated"].as_bool()),
            (Some(5), Some(false))
        );
        let v = body_json(&o.handle("GET", "/calls?limit=2", 0));
        assert_eq!(v["calls"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            (v["total"].as_u64(), v["truncated"].as_bool()),
            (Some(5), Some(true))
        );
        let v = body_json(&o.handle("GET", "/calls?x=1&limit=0#f", 0));
        assert_eq!(v["calls"], serde_json::json!([]));
        assert_eq!(v["truncated"], true);
        assert_eq!(o.handle("GET", "/calls?limit=many", 0).status, 400);
        assert_eq!(calls_limit("/calls"), Ok(DEFAULT_CALLS_LIMIT));
        assert_eq!(calls_limit("/calls?limit=99999999999"), Ok(MAX_CALLS_LIMIT));
    }

    #[test]
    fn trunk_registration_and_gateway_health_are_in_metrics() {
        let snap = tern_signaling::snapshot::SipSnapshot::shared();
        {
            let mut g = snap.lock().unwrap();
            g.trunks = vec![tern_signaling::TrunkStatus {
                name: "carrier".into(),
                registered: Some(true),
                register_failures: 3,
                gateways: vec![
                    ("127.0.0.1:5090".parse().unwrap(), false),
                    ("127.0.0.1:5091".parse().unwrap(), true),
                ],
            }];
        }
        let mut o = Observer::new(table("trunks"), Some(snap));
        let m = o.handle("GET", "/metrics", 0).body;
        for line in [
            "tern_sip_trunk_registered{trunk=\"carrier\"} 1",
            "tern_sip_trunk_register_failures_total{trunk=\"carrier\"} 3",
            "tern_sip_gateway_up{trunk=\"carrier\",gateway=\"127.0.0.1:5090\"} 0",
            "tern_sip_gateway_up{trunk=\"carrier\",gateway=\"127.0.0.1:5091\"} 1",
        ] {
            assert!(m.contains(line), "{line} missing:\n{m}");
        }
    }
}
