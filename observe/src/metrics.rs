//! `/metrics`: OpenMetrics text (which Prometheus scrapes) encoded by
//! `prometheus-client` from a registry built afresh at each scrape out of
//! the slot table and the signaling snapshot. Nothing is kept between
//! scrapes except the HTTP response counts and the calls-per-second window,
//! so the workers pay nothing for metrics.
//!
//! Families (labels in braces):
//! - `tern_worker_up{worker}` 1/0 (heartbeat within 2 s),
//!   `tern_worker_forwarded_packets_total{worker}`,
//!   `tern_worker_dropped_packets_total{worker}`: the workers' own totals.
//! - `tern_worker_{rx,tx}_{packets,bytes}_total{worker}`,
//!   `tern_worker_rtcp_rx_packets_total{worker}`,
//!   `tern_worker_drops_total{worker,reason}` (reason: see
//!   `DropReason::name`, plus `send_error`): counters, the worker's
//!   retired totals (slots it freed) plus its slots not yet freed
//!   (`SlotTable::worker_totals`), so they never go back when a call ends.
//!   The drops of all reasons add up to
//!   `tern_worker_dropped_packets_total` (and tx packets to
//!   `tern_worker_forwarded_packets_total`) while the dataplane runs; those
//!   two are the worker process's own and restart from 0 with it, while
//!   these continue from the shared table.
//!   `tern_worker_jitter_buffers_refused_total{worker}`: legs forwarded
//!   without the jitter buffer they asked for (store ids exhausted).
//!   `tern_worker_ring_enobufs_total{worker}`,
//!   `tern_worker_ring_rearms_total{worker}`,
//!   `tern_worker_ring_sq_full_total{worker}`: the worker's io_uring
//!   counters (`SlotTable::worker_ring`): receives that found the
//!   provided-buffer ring empty, multishot re-arms, full submission queue.
//! - `tern_slots{state}`, `tern_slots_capacity`,
//!   `tern_slots_reserved_total`; `tern_slots_unbound` (free slots held
//!   back because another socket holds one of their ports),
//!   `tern_slots_port_misses_total` (reservations that passed over such a
//!   slot), `tern_slots_reclaimed_total` (orphans of a killed control
//!   plane released by the media timeout).
//! - `tern_registrations`, `tern_calls_active`, `tern_calls_total`,
//!   `tern_calls_per_second` (over the last 10 s), `tern_sip_*_total` (`tern_sip_rate_limited_total`,
//!   `tern_sip_denied_total`: the guard).
//! - `tern_sip_trunk_registered{trunk}` 1/0, `tern_sip_trunk_register_failures_total{trunk}`,
//!   `tern_sip_gateway_up{trunk,gateway}` 1/0 (down: probed with OPTIONS).
//! - Histograms over the live legs that received RTP:
//!   `tern_leg_loss_fraction` (0..1), `tern_leg_jitter_ms`, `tern_leg_mos`.
//! - `tern_http_responses_total{code}`.

use prometheus_client::encoding::text::encode as encode_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tern_shared::table::{DropReason, SlotState};

use std::collections::BTreeMap;

use tern_shared::table::SlotTable;
use tern_signaling::snapshot::SipSnapshot;

use crate::liveness::is_alive;
use crate::source::Source;

/// What one scrape reads, gathered by the API so that this module needs
/// nothing of it.
pub(crate) struct Scrape<'a> {
    /// The slot table.
    pub table: &'a SlotTable,
    /// Slot reservations since the table was created.
    pub slots_reserved: u64,
    /// The monotonic count behind calls per second.
    pub calls_started: u64,
    /// The signaling snapshot, when SIP runs in this process.
    pub sip: Option<SipSnapshot>,
    /// Calls per second over the last 10 s.
    pub cps: f64,
    /// HTTP responses served so far, by status code.
    pub responses: &'a BTreeMap<u16, u64>,
}

type Labels = Vec<(&'static str, String)>;

/// Loss fraction buckets: the E-model degrades sharply past a few percent.
const LOSS_BUCKETS: [f64; 9] = [0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];
/// Jitter buckets, ms: a 20 ms packet interval is the scale.
const JITTER_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0, 500.0];
/// MOS buckets: 4.3+ is toll quality, below 3.6 users complain.
const MOS_BUCKETS: [f64; 9] = [1.0, 2.0, 2.5, 3.0, 3.5, 3.6, 4.0, 4.3, 4.5];

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    reg.register(name, help, g);
}

fn gauge_f(reg: &mut Registry, name: &str, help: &str, v: f64) {
    let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    g.set(v);
    reg.register(name, help, g);
}

/// `tern_sip_trunk_registered{trunk}` (trunks with `register = true`),
/// `tern_sip_trunk_register_failures_total{trunk}` and
/// `tern_sip_gateway_up{trunk,gateway}`.
fn trunk_families(reg: &mut Registry, trunks: &[tern_signaling::TrunkStatus]) {
    let registered: Family<Labels, Gauge> = Family::default();
    let failures: Family<Labels, Counter> = Family::default();
    let up: Family<Labels, Gauge> = Family::default();
    for t in trunks {
        let tl: Labels = vec![("trunk", t.name.clone())];
        if let Some(r) = t.registered {
            registered.get_or_create(&tl).set(i64::from(r));
            failures.get_or_create(&tl).inc_by(t.register_failures);
        }
        for (gw, is_up) in &t.gateways {
            let l: Labels = vec![("trunk", t.name.clone()), ("gateway", gw.to_string())];
            up.get_or_create(&l).set(i64::from(*is_up));
        }
    }
    reg.register(
        "tern_sip_trunk_registered",
        "1 while the trunk's registration holds (RFC 3261 §10.2)",
        registered,
    );
    reg.register(
        "tern_sip_trunk_register_failures",
        "Failed REGISTER attempts to the trunk",
        failures,
    );
    reg.register(
        "tern_sip_gateway_up",
        "1 if the trunk gateway is up, 0 while marked down and probed with OPTIONS",
        up,
    );
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Encodes every family for a scrape at Unix time `now_ms`.
///
/// Errors: only a formatting error from the encoder.
pub(crate) fn encode(obs: &Scrape<'_>, now_ms: u64) -> Result<String, std::fmt::Error> {
    let t = obs.table;
    let src = Source { table: t };
    let mut reg = Registry::default();

    let up: Family<Labels, Gauge> = Family::default();
    let fwd: Family<Labels, Counter> = Family::default();
    let dropped: Family<Labels, Counter> = Family::default();
    let rx_p: Family<Labels, Counter> = Family::default();
    let tx_p: Family<Labels, Counter> = Family::default();
    let rx_b: Family<Labels, Counter> = Family::default();
    let tx_b: Family<Labels, Counter> = Family::default();
    let rtcp: Family<Labels, Counter> = Family::default();
    let drops: Family<Labels, Counter> = Family::default();
    let jrefused: Family<Labels, Counter> = Family::default();
    let rec_dropped: Family<Labels, Counter> = Family::default();
    let rec_failed: Family<Labels, Counter> = Family::default();
    let r_enobufs: Family<Labels, Counter> = Family::default();
    let r_rearms: Family<Labels, Counter> = Family::default();
    let r_sqfull: Family<Labels, Counter> = Family::default();
    let loss = Histogram::new(LOSS_BUCKETS);
    let jitter = Histogram::new(JITTER_BUCKETS);
    let mos = Histogram::new(MOS_BUCKETS);

    for w in 0..t.workers() {
        let wl: Labels = vec![("worker", w.to_string())];
        let (hb, f, d) = t.worker_status(w);
        let alive = is_alive(hb, now_ms);
        up.get_or_create(&wl).set(i64::from(alive));
        fwd.get_or_create(&wl).inc_by(f);
        dropped.get_or_create(&wl).inc_by(d);
        let tot = t.worker_totals(w);
        jrefused.get_or_create(&wl).inc_by(tot.jitter_refused);
        rec_dropped.get_or_create(&wl).inc_by(tot.record_dropped);
        rec_failed.get_or_create(&wl).inc_by(tot.record_failed);
        let ring = t.worker_ring(w);
        r_enobufs.get_or_create(&wl).inc_by(ring.enobufs);
        r_rearms.get_or_create(&wl).inc_by(ring.rearms);
        r_sqfull.get_or_create(&wl).inc_by(ring.sq_full);
        let s = &tot.legs;
        for (fam, v) in [&rx_p, &tx_p, &rx_b, &tx_b, &rtcp].into_iter().zip([
            s.rx_packets,
            s.tx_packets,
            s.rx_bytes,
            s.tx_bytes,
            s.rtcp_rx_packets,
        ]) {
            fam.get_or_create(&wl).inc_by(v);
        }
        let by_reason = DropReason::ALL
            .iter()
            .map(|r| (r.name(), s.drops(*r)))
            .chain([("send_error", tot.send_errors)]);
        for (reason, v) in by_reason {
            let l: Labels = vec![("worker", w.to_string()), ("reason", reason.into())];
            drops.get_or_create(&l).inc_by(v);
        }
        for slot in t.slots_of_worker(w) {
            if !matches!(t.state(slot), SlotState::Active | SlotState::Reserved) {
                continue;
            }
            for leg in 0..2 {
                if let Some(q) = src.quality(slot, leg) {
                    if q.expected > 0 {
                        loss.observe(q.fraction_lost);
                        jitter.observe(q.jitter_ms);
                    }
                    if let Some(m) = q.mos {
                        mos.observe(m);
                    }
                }
            }
        }
    }
    reg.register(
        "tern_worker_up",
        "1 if the worker's heartbeat is fresh (2 s)",
        up,
    );
    reg.register(
        "tern_worker_forwarded_packets",
        "RTP/RTCP packets the worker forwarded since it started",
        fwd,
    );
    reg.register(
        "tern_worker_dropped_packets",
        "Packets the worker dropped since it started",
        dropped,
    );
    reg.register(
        "tern_worker_rx_packets",
        "RTP packets received on the worker's slots, freed ones included",
        rx_p,
    );
    reg.register(
        "tern_worker_tx_packets",
        "RTP/RTCP packets sent on the worker's slots, freed ones included",
        tx_p,
    );
    reg.register(
        "tern_worker_rx_bytes",
        "RTP bytes received on the worker's slots, freed ones included",
        rx_b,
    );
    reg.register(
        "tern_worker_tx_bytes",
        "RTP/RTCP bytes sent on the worker's slots, freed ones included",
        tx_b,
    );
    reg.register(
        "tern_worker_rtcp_rx_packets",
        "RTCP packets received on the worker's slots, freed ones included",
        rtcp,
    );
    reg.register(
        "tern_worker_drops",
        "Packets the worker dropped, by reason (they add up to tern_worker_dropped_packets_total)",
        drops,
    );

    reg.register(
        "tern_worker_jitter_buffers_refused",
        "Legs whose jitter buffer could not start (store ids exhausted); forwarded unbuffered",
        jrefused,
    );
    reg.register(
        "tern_record_dropped",
        "Recording frames dropped because the worker's recording ring was full (the packets were forwarded)",
        rec_dropped,
    );
    reg.register(
        "tern_record_failed",
        "Recordings stopped by a write error (disk full); their calls went on",
        rec_failed,
    );
    reg.register(
        "tern_worker_ring_enobufs",
        "Receive completions that found the provided-buffer ring empty (-ENOBUFS)",
        r_enobufs,
    );
    reg.register(
        "tern_worker_ring_rearms",
        "Multishot receives armed again after their final completion",
        r_rearms,
    );
    reg.register(
        "tern_worker_ring_sq_full",
        "SQEs that found the worker's submission queue full",
        r_sqfull,
    );

    let slots: Family<Labels, Gauge> = Family::default();
    for (name, st) in [
        ("free", SlotState::Free),
        ("reserved", SlotState::Reserved),
        ("active", SlotState::Active),
        ("draining", SlotState::Draining),
    ] {
        slots
            .get_or_create(&vec![("state", name.to_string())])
            .set(i64::from(t.count(st)));
    }
    reg.register("tern_slots", "Relay slots by state", slots);
    gauge(
        &mut reg,
        "tern_slots_capacity",
        "Relay slots (calls) the port range holds",
        i64::from(t.capacity()),
    );
    counter(
        &mut reg,
        "tern_slots_reserved",
        "Slot reservations since the table was created",
        obs.slots_reserved,
    );
    let unbound: u64 = (0..t.workers()).map(|w| t.worker_unbound(w)).sum();
    gauge(
        &mut reg,
        "tern_slots_unbound",
        "Free slots not handed out because another socket on the host holds one of their ports",
        clamp_i64(unbound),
    );
    counter(
        &mut reg,
        "tern_slots_port_misses",
        "Free slots a reservation passed over because their ports were not bound",
        t.port_misses(),
    );
    counter(
        &mut reg,
        "tern_slots_reclaimed",
        "Slots no control plane claimed after a restart, released by the media timeout or a delete",
        t.reclaimed(),
    );

    let sip = &obs.sip;
    gauge(
        &mut reg,
        "tern_registrations",
        "Live registration bindings (0 without the signaling plane)",
        sip.as_ref().map_or(0, |s| clamp_i64(s.registration_count)),
    );
    let active = match sip {
        Some(s) => s.calls_active,
        None => u64::from(t.count(SlotState::Active)),
    };
    gauge(
        &mut reg,
        "tern_calls_active",
        "Calls holding a relay slot",
        clamp_i64(active),
    );
    counter(
        &mut reg,
        "tern_calls",
        "Calls started (SIP INVITEs here, else slot reservations)",
        obs.calls_started,
    );
    gauge_f(
        &mut reg,
        "tern_calls_per_second",
        "Calls started per second over the last 10 s",
        obs.cps,
    );
    if let Some(s) = sip {
        let st = &s.stats;
        for (name, help, v) in [
            ("tern_sip_datagrams", "SIP datagrams received", st.datagrams),
            (
                "tern_sip_malformed_requests",
                "Malformed SIP requests",
                st.malformed_requests,
            ),
            (
                "tern_sip_registrations",
                "Successful REGISTERs",
                st.registrations,
            ),
            (
                "tern_sip_auth_failures",
                "Failed digest authentications",
                st.auth_failures,
            ),
            (
                "tern_sip_calls_answered",
                "Calls answered",
                st.calls_answered,
            ),
            (
                "tern_sip_no_slot",
                "INVITEs refused for want of a relay slot",
                st.no_slot,
            ),
        ] {
            counter(&mut reg, name, help, v);
        }
        let t = &s.transport;
        let open: Family<Labels, Gauge> = Family::default();
        let accepted: Family<Labels, Counter> = Family::default();
        let messages: Family<Labels, Counter> = Family::default();
        for (i, name) in ["tcp", "tls", "ws", "wss"].into_iter().enumerate() {
            let l = vec![("transport", name.to_string())];
            open.get_or_create(&l).set(clamp_i64(t.open_by_kind[i]));
            accepted.get_or_create(&l).inc_by(t.accepted_by_kind[i]);
            messages.get_or_create(&l).inc_by(t.messages_by_kind[i]);
        }
        reg.register(
            "tern_sip_connections",
            "SIP stream connections open now, by transport",
            open,
        );
        reg.register(
            "tern_sip_connections_accepted",
            "SIP stream connections accepted, by transport",
            accepted,
        );
        reg.register(
            "tern_sip_stream_messages",
            "SIP messages received on streams, by transport",
            messages,
        );
        let closed: Family<Labels, Counter> = Family::default();
        for (reason, v) in [
            ("too_many", t.tcp_refused),
            ("per_source", t.source_refused),
            ("idle", t.tcp_idle_closed),
            ("oversize", t.tcp_oversize),
            ("unframed", t.tcp_unframed),
            ("slow_reader", t.tcp_write_overflow),
            ("tls", t.tls_failed),
            ("ws_handshake", t.ws_handshake_failed),
            ("ws_protocol", t.ws_protocol_errors),
            ("handshake_timeout", t.handshake_timeouts),
            ("pong_timeout", t.pong_timeouts),
            ("ws_flood", t.ws_floods),
        ] {
            closed
                .get_or_create(&vec![("reason", reason.to_string())])
                .inc_by(v);
        }
        reg.register(
            "tern_sip_connections_refused",
            "SIP stream connections refused or closed by tern, by reason",
            closed,
        );
        counter(
            &mut reg,
            "tern_sip_flow_down",
            "INVITEs for a user whose TLS/WS connection is gone (480)",
            s.stats.flow_down,
        );
        counter(
            &mut reg,
            "tern_sip_rate_limited",
            "SIP requests over their source's rate limit: dropped (UDP) or answered 503 (streams)",
            t.guard_rate_limited,
        );
        counter(
            &mut reg,
            "tern_sip_denied",
            "SIP messages and connections from sources refused by [sip] allow/deny",
            t.guard_denied,
        );
        counter(
            &mut reg,
            "tern_sip_icmp_errors",
            "ICMP errors (port or host unreachable) for SIP sent over UDP: the transactions to that destination failed at once",
            t.icmp_errors,
        );
        counter(
            &mut reg,
            "tern_sip_session_timer_expired",
            "Calls ended by tern because their session interval passed without a refresh (RFC 4028)",
            s.stats.session_timer_expired,
        );
        counter(
            &mut reg,
            "tern_sip_info_relayed",
            "INFO requests relayed into the other dialog of a call (RFC 6086)",
            s.stats.info_relayed,
        );
        counter(
            &mut reg,
            "tern_sip_prack_sent",
            "PRACKs sent to callees for their reliable provisional responses (RFC 3262)",
            s.stats.prack_sent,
        );
        counter(
            &mut reg,
            "tern_sip_reliable_provisionals",
            "Provisional responses sent reliably to callers, with RSeq, until PRACK (RFC 3262)",
            s.stats.reliable_provisionals,
        );
        counter(
            &mut reg,
            "tern_sip_reliable_abandoned",
            "Reliable provisionals never PRACKed by the caller within 64*T1: call refused with 500 (RFC 3262)",
            s.stats.reliable_abandoned,
        );
        trunk_families(&mut reg, &s.trunks);
        counter(
            &mut reg,
            "tern_sip_transfers",
            "Call transfers started: REFERs accepted (RFC 3515) and INVITEs with Replaces (RFC 3891)",
            s.stats.transfers,
        );
        counter(
            &mut reg,
            "tern_sip_transfers_failed",
            "Call transfers whose target refused or did not answer",
            s.stats.transfers_failed,
        );
    }

    reg.register(
        "tern_leg_loss_fraction",
        "Fraction of RTP packets lost per live leg (RFC 3550 A.3)",
        loss,
    );
    reg.register(
        "tern_leg_jitter_ms",
        "Interarrival jitter per live leg, ms (RFC 3550 A.8)",
        jitter,
    );
    reg.register(
        "tern_leg_mos",
        "Mean opinion score per live leg (E-model, ITU-T G.107)",
        mos,
    );

    let http: Family<Labels, Counter> = Family::default();
    for (code, n) in obs.responses {
        http.get_or_create(&vec![("code", code.to_string())])
            .inc_by(*n);
    }
    reg.register(
        "tern_http_responses",
        "HTTP API responses by status code",
        http,
    );

    let mut out = String::new();
    encode_text(&mut out, &reg)?;
    Ok(out)
}
