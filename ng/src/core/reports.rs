//! `delete`, `query`, `list` and `statistics`: what a call and the relay
//! did, under rtpengine's keys (`totals`, `tags`, `SSRC`, `MOS`, ...).

use super::call::Branch;
use super::*;

impl NgCore {
    /// rtpengine's `call_delete_branch`: with a `to-tag` (or, without
    /// one, a `via-branch`) only that party's branches go; with only a
    /// `from-tag` naming the offerer, or only the `call-id`, the call.
    pub(super) fn delete(&mut self, m: &Msg<'_>, now_ms: u64, warnings: &mut Warnings) -> Reply {
        let call_id = field(m.str("call-id"), "No call-id in message", "call-id")?;
        let from = field(m.opt_str("from-tag"), "", "from-tag")?.filter(|t| !t.is_empty());
        let to = field(m.opt_str("to-tag"), "", "to-tag")?.filter(|t| !t.is_empty());
        let via = field(m.opt_str("via-branch"), "", "via-branch")?.filter(|t| !t.is_empty());
        let flags = Flags::parse(m, warnings)?;
        let delay = field(m.opt_int("delete-delay"), "", "delete-delay")?
            .filter(|d| *d >= 0)
            .map_or(self.cfg.delete_delay_s, |d| d as u64);
        self.stats.deletes += 1;
        let doomed = self.calls.get(call_id).map(|c| c.doomed(from, to, via));
        let not_found = |warnings: &mut Warnings| {
            if flags.fatal {
                return Err(CommandError::CallNotFound);
            }
            warnings.push("Call-ID not found or tags didn't match".into());
            Ok(Dict::new())
        };
        let doomed = match doomed {
            None => {
                if self.reclaim_orphans_of(call_id) > 0 {
                    return Ok(Dict::new());
                }
                return not_found(warnings);
            }
            Some(Doomed::NotFound) => return not_found(warnings),
            Some(d) => d,
        };
        let out = self.call_stats(call_id, from, to);
        let at = now_ms.saturating_add(delay.saturating_mul(1000));
        let Some(call) = self.calls.get_mut(call_id) else {
            return Ok(out);
        };
        call.last_signal_ms = now_ms;
        match doomed {
            Doomed::Branches(hit) if delay > 0 => {
                for i in hit {
                    if let Some(b) = call.branches.get_mut(i) {
                        b.delete_at_ms = Some(b.delete_at_ms.map_or(at, |t| t.min(at)));
                    }
                }
            }
            Doomed::Branches(hit) => self.delete_branches(call_id, &hit, now_ms),
            _ if delay > 0 => {
                call.delete_at_ms = Some(call.delete_at_ms.map_or(at, |t| t.min(at)));
            }
            _ => self.end_call(call_id, now_ms, End::Deleted),
        }
        Ok(out)
    }

    /// With a `to-tag` (else a `from-tag`), only that party and those in
    /// dialogue with it (rtpengine's `ng_call_stats`).
    pub(super) fn query(&mut self, m: &Msg<'_>) -> Reply {
        let call_id = field(m.str("call-id"), "No call-id in message", "call-id")?;
        let from = field(m.opt_str("from-tag"), "", "from-tag")?.filter(|t| !t.is_empty());
        let to = field(m.opt_str("to-tag"), "", "to-tag")?.filter(|t| !t.is_empty());
        if !self.calls.contains_key(call_id) {
            return Err(CommandError::UnknownCallId);
        }
        Ok(self.call_stats(call_id, from, to))
    }

    pub(super) fn list(&mut self, m: &Msg<'_>) -> Reply {
        let limit = field(m.opt_int("limit"), "", "limit")?.unwrap_or(32);
        if limit < 0 {
            return Err(CommandError::InvalidLimit);
        }
        let mut ids: Vec<&str> = self.calls.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(Dict::new().with("calls", str_list(ids)))
    }

    pub(super) fn statistics(&mut self, now_ms: u64) -> Dict {
        self.sample_rates(now_ms);
        let (mut forwarded, mut dropped) = (0u64, 0u64);
        for w in 0..self.table.workers() {
            let (_, f, d) = self.table.worker_status(w);
            forwarded += f;
            dropped += d;
        }
        let n = self.calls.len() as u64;
        let avg_ms = self
            .total_call_ms
            .checked_div(self.ended_calls)
            .unwrap_or(0);
        let r = self.rate;
        let streams: u64 = self.calls.values().map(|c| c.slots().len() as u64).sum();
        // rtpengine 10.5's layout (statistics.c); tern forwards in user
        // space only, so the `_kernel` values are 0 and `_user` equals the
        // total.
        let cur = Dict::new()
            .with("sessionsown", uint(n))
            .with("sessionsforeign", uint(0))
            .with("sessionstotal", uint(n))
            .with("transcodedmedia", uint(0))
            .with("packetrate_user", uint(r.packet_rate))
            .with("byterate_user", uint(r.byte_rate))
            .with("errorrate_user", uint(r.error_rate))
            .with("packetrate_kernel", uint(0))
            .with("byterate_kernel", uint(0))
            .with("errorrate_kernel", uint(0))
            .with("packetrate", uint(r.packet_rate))
            .with("byterate", uint(r.byte_rate))
            .with("errorrate", uint(r.error_rate))
            .with("media_userspace", uint(streams))
            .with("media_kernel", uint(0))
            .with("media_mixed", uint(0));
        let bytes = self.relayed_bytes();
        let total_s = self.total_call_ms as f64 / 1000.0;
        let s = &self.stats;
        let tot = Dict::new()
            .with(
                "uptime",
                bstr(((now_ms.saturating_sub(self.started_ms)) / 1000).to_string()),
            )
            .with("managedsessions", uint(s.calls_created))
            .with("rejectedsessions", uint(s.calls_rejected))
            .with("timeoutsessions", uint(s.calls_timed_out))
            .with("silenttimeoutsessions", uint(0))
            .with("finaltimeoutsessions", uint(0))
            .with("offertimeoutsessions", uint(0))
            .with("regularterminatedsessions", uint(s.calls_deleted))
            .with("forcedterminatedsessions", uint(0))
            .with("relayedpackets_user", uint(forwarded))
            .with("relayedpacketerrors_user", uint(dropped))
            .with("relayedbytes_user", uint(bytes))
            .with("relayedpackets_kernel", uint(0))
            .with("relayedpacketerrors_kernel", uint(0))
            .with("relayedbytes_kernel", uint(0))
            .with("relayedpackets", uint(forwarded))
            .with("relayedpacketerrors", uint(dropped))
            .with("relayedbytes", uint(bytes))
            .with("zerowaystreams", uint(0))
            .with("onewaystreams", uint(0))
            .with(
                "avgcallduration",
                bstr(format!("{}.{:06}", avg_ms / 1000, (avg_ms % 1000) * 1000)),
            )
            .with("totalcallsduration", bstr(format!("{total_s:.6}")));
        let ctl = Dict::new()
            .with("offers", uint(s.offers))
            .with("answers", uint(s.answers))
            .with("deletes", uint(s.deletes))
            .with("received", uint(s.received))
            .with("replies", uint(s.replies))
            .with("retransmissions", uint(s.retransmissions))
            .with("errors", uint(s.errors))
            .with("droppedunauthorized", uint(s.dropped_unauthorized))
            .with("droppednocookie", uint(s.dropped_no_cookie))
            .with("loadlimited", uint(s.load_limited))
            .with("unsupported", uint(s.unsupported));
        let t = &self.table;
        let slots = Dict::new()
            .with("capacity", uint(u64::from(t.capacity())))
            .with("free", uint(u64::from(t.count(SlotState::Free))))
            .with("reserved", uint(u64::from(t.count(SlotState::Reserved))))
            .with("active", uint(u64::from(t.count(SlotState::Active))))
            .with("draining", uint(u64::from(t.count(SlotState::Draining))));
        let st = Dict::new()
            .with("currentstatistics", cur.into_value())
            .with("totalstatistics", tot.into_value())
            .with("controlstatistics", ctl.into_value())
            .with("slots", slots.into_value());
        Dict::new().with("statistics", st.into_value())
    }

    /// Bytes sent so far: by calls that ended and by those held.
    fn relayed_bytes(&self) -> u64 {
        let held: u64 = self
            .calls
            .values()
            .map(|c| call_tx_bytes(&self.table, c))
            .sum();
        self.ended_bytes + held
    }

    pub(super) fn sample_rates(&mut self, now_ms: u64) {
        let dt = now_ms.saturating_sub(self.rate.at_ms);
        if dt < 1000 {
            return;
        }
        let (mut f, mut d) = (0u64, 0u64);
        for w in 0..self.table.workers() {
            let (_, fw, dr) = self.table.worker_status(w);
            f += fw;
            d += dr;
        }
        let b = self.relayed_bytes();
        self.rate = RateSample {
            at_ms: now_ms,
            forwarded: f,
            dropped: d,
            bytes: b,
            packet_rate: f.saturating_sub(self.rate.forwarded).saturating_mul(1000) / dt,
            error_rate: d.saturating_sub(self.rate.dropped).saturating_mul(1000) / dt,
            byte_rate: b.saturating_sub(self.rate.bytes).saturating_mul(1000) / dt,
        };
    }

    /// rtpengine's call statistics: `created`, `created_us`,
    /// `last signal`, `SSRC`, `tags` → tag → `medias` → `streams` (RTP and
    /// RTCP, each with `local port`, `endpoint`, `advertised endpoint`,
    /// `last packet`, `flags`, `stats` {`packets`, `bytes`, `errors`}), and
    /// `totals` → `RTP`/`RTCP` → {`packets`, `bytes`, `errors`}.
    ///
    /// A stream's `stats` count what the relay accepted from that leg's
    /// peer; `errors` counts its packets dropped (source, direction,
    /// malformed, no peer). RTCP bytes are not counted (0).
    ///
    /// Quality, as rtpengine names it where it has a name: the top-level
    /// `SSRC` dictionary, keyed by each leg's ingress SSRC (decimal), holds
    /// `cumulative loss` and `average MOS` / `lowest MOS` / `highest MOS`
    /// (one sample each: `MOS` ×10, `round-trip time` µs, `jitter` ms,
    /// `packet loss` %, `samples`); an RTP stream's `ingress SSRCs` lists
    /// that SSRC with the stream's packets and bytes. tern's own keys: an
    /// RTP stream's `quality` dictionary (RFC 3550: `expected`, `lost`
    /// (signed), `fraction lost` (1/256), `jitter us`, `duplicates`,
    /// `reordered`, `clock rate` (Hz); from RTCP when known:
    /// `round-trip time us`, `peer fraction lost`, `peer jitter us`; and
    /// `MOS x100`), and a tag's `DTMF` list (`digit`, `event`, `duration`
    /// (RTP timestamp units), `RTP timestamp`, `at` (Unix ms)).
    pub(super) fn call_stats(&self, call_id: &str, from: Option<&str>, to: Option<&str>) -> Dict {
        let Some(call) = self.calls.get(call_id) else {
            return Dict::new();
        };
        let mut acc = StatsAcc::default();
        let mut tags = Dict::new();
        // Each party's (branch, leg)s, parties in order of appearance.
        let mut parties: Vec<(String, Vec<(usize, usize)>)> = Vec::new();
        for (bi, b) in call.branches.iter().enumerate() {
            for leg in 0..2 {
                let tag = b.tags[leg].clone().unwrap_or_default();
                match parties.iter_mut().find(|(t, _)| *t == tag) {
                    Some((_, v)) => v.push((bi, leg)),
                    None => parties.push((tag, vec![(bi, leg)])),
                }
            }
        }
        // A tag filter shows that party and those in dialogue with it.
        if let Some(want) = to.or(from) {
            let mut shown = vec![want.to_string()];
            for b in &call.branches {
                if let Some(l) = b.leg_of(want) {
                    shown.push(b.tags[l ^ 1].clone().unwrap_or_default());
                }
            }
            parties.retain(|(t, _)| shown.contains(t));
        }
        for (tag, parts) in &parties {
            let mut dtmf = Vec::new();
            let mut per_branch = Vec::new();
            for &(bi, leg) in parts {
                let b = &call.branches[bi];
                let medias = self.leg_medias(b, leg, &mut acc, &mut dtmf);
                per_branch.push((bi, b.tags[leg ^ 1].clone(), b.via.clone(), medias));
            }
            // The party's current dialogue: the active branch, else its last.
            let main = per_branch
                .iter()
                .position(|p| p.0 == call.active)
                .unwrap_or(per_branch.len().saturating_sub(1));
            let mut d = Dict::new()
                .with("tag", bstr(tag.clone()))
                .with("created", uint(call.created_ms / 1000));
            if let Some((_, other, via, medias)) = per_branch.get(main) {
                d.set("medias", Value::List(medias.clone()));
                if let Some(o) = other {
                    d.set("in dialogue with", bstr(o.clone()));
                }
                if let Some(v) = via.as_ref().filter(|_| per_branch.len() == 1) {
                    d.set("via-branch", bstr(v.clone()));
                }
            }
            d.set("DTMF", Value::List(dtmf));
            if per_branch.len() > 1 {
                // tern's own: an offerer with forks, each fork's media.
                let list = per_branch
                    .into_iter()
                    .map(|(_, other, via, medias)| {
                        let mut e =
                            Dict::new().with("in dialogue with", bstr(other.unwrap_or_default()));
                        if let Some(v) = via {
                            e.set("via-branch", bstr(v));
                        }
                        e.with("medias", Value::List(medias)).into_value()
                    })
                    .collect();
                d.set("branches", Value::List(list));
            }
            tags.set(tag, d.into_value());
        }
        let totals = |v: [u64; 3]| {
            Dict::new()
                .with("packets", uint(v[0]))
                .with("bytes", uint(v[1]))
                .with("errors", uint(v[2]))
                .into_value()
        };
        Dict::new()
            .with("created", uint(call.created_ms / 1000))
            .with("created_us", uint((call.created_ms % 1000) * 1000))
            .with("last signal", uint(call.last_signal_ms / 1000))
            .with("last packet", uint(acc.last_packet / 1000))
            .with("SSRC", acc.ssrcs.into_value())
            .with("tags", tags.into_value())
            .with(
                "totals",
                Dict::new()
                    .with("RTP", totals(acc.rtp))
                    .with("RTCP", totals(acc.rtcp))
                    .into_value(),
            )
    }

    /// The `medias` of leg `leg` of `branch` (see `call_stats`), adding
    /// to the totals and its DTMF events to `dtmf`.
    fn leg_medias(
        &self,
        branch: &Branch,
        leg: usize,
        acc: &mut StatsAcc,
        dtmf: &mut Vec<Value>,
    ) -> Vec<Value> {
        let t = &self.table;
        let mut medias = Vec::new();
        for (i, ms) in branch.media.iter().enumerate() {
            let Some(slot) = ms.slot else { continue };
            let cfg = &ms.cfg.legs[leg];
            let st = t.stats(slot, leg).unwrap_or_default();
            let q = t.quality(slot, leg);
            let ssrc_in = t.counters(slot, leg).ok().and_then(|c| c.ssrc_in());
            for e in t.dtmf_events(slot, leg) {
                dtmf.push(
                    Dict::new()
                        .with("digit", bstr(e.digit.to_string()))
                        .with("event", uint(u64::from(e.event)))
                        .with("duration", uint(u64::from(e.duration)))
                        .with("RTP timestamp", uint(u64::from(e.rtp_timestamp)))
                        .with("at", uint(e.at_ms))
                        .with("media", uint(i as u64 + 1))
                        .into_value(),
                );
            }
            if let (Some(ssrc), Some(_)) = (ssrc_in, q.mos) {
                acc.ssrcs.set(&ssrc.to_string(), rtpengine_ssrc_entry(&q));
            }
            let ports = t.ports(slot, leg);
            let errors = st.drops_total();
            acc.last_packet = acc.last_packet.max(st.last_rx_ms);
            acc.rtp[0] += st.rx_packets;
            acc.rtp[1] += st.rx_bytes;
            acc.rtp[2] += errors;
            acc.rtcp[0] += st.rtcp_rx_packets;
            let mut sflags = vec!["RTP"];
            if cfg.peer.is_some() {
                sflags.push("filled");
            }
            if st.learned.is_some() {
                sflags.push("confirmed");
            }
            match cfg.learning {
                Learning::Strict => sflags.push("strict source address"),
                Learning::LearnAlways => sflags.push("media handover"),
                Learning::LearnOnce => {}
            }
            let rtp_stream = Dict::new()
                .with("local port", uint(u64::from(ports.rtp)))
                .with("endpoint", endpoint(st.learned.or(cfg.peer)))
                .with("advertised endpoint", endpoint(ms.advertised[leg]))
                .with("last packet", uint(st.last_rx_ms / 1000))
                .with("flags", str_list(sflags))
                .with(
                    "stats",
                    Dict::new()
                        .with("packets", uint(st.rx_packets))
                        .with("bytes", uint(st.rx_bytes))
                        .with("errors", uint(errors))
                        .into_value(),
                )
                .with("sent", {
                    Dict::new()
                        .with("packets", uint(st.tx_packets))
                        .with("bytes", uint(st.tx_bytes))
                        .into_value()
                })
                .with(
                    "ingress SSRCs",
                    Value::List(
                        ssrc_in
                            .map(|s| {
                                Dict::new()
                                    .with("SSRC", uint(u64::from(s)))
                                    .with("packets", uint(st.rx_packets))
                                    .with("bytes", uint(st.rx_bytes))
                                    .into_value()
                            })
                            .into_iter()
                            .collect(),
                    ),
                )
                .with("quality", quality_dict(&q));
            let rtcp_peer = cfg.peer_rtcp.or_else(|| {
                cfg.peer.map(|p| {
                    if cfg.rtcp_mux {
                        p
                    } else {
                        SocketAddr::new(p.ip(), p.port().wrapping_add(1))
                    }
                })
            });
            let rtcp_stream = Dict::new()
                .with(
                    "local port",
                    uint(u64::from(if cfg.rtcp_mux { ports.rtp } else { ports.rtcp })),
                )
                .with("endpoint", endpoint(rtcp_peer))
                .with(
                    "advertised endpoint",
                    endpoint(
                        ms.advertised[leg]
                            .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1))),
                    ),
                )
                .with("last packet", uint(st.last_rx_ms / 1000))
                .with("flags", str_list(["RTCP"]))
                .with(
                    "stats",
                    Dict::new()
                        .with("packets", uint(st.rtcp_rx_packets))
                        .with("bytes", uint(0))
                        .with("errors", uint(0))
                        .into_value(),
                );
            let mut mflags = vec!["initialized"];
            if cfg.direction.sends_to_peer() {
                mflags.push("send");
            }
            if cfg.direction.accepts_from_peer() {
                mflags.push("recv");
            }
            if cfg.rtcp_mux {
                mflags.push("rtcp-mux");
            }
            // The suite, DTLS and ICE states, never a key.
            let (suite, dtls, ice) = secure::describe(ms, leg, &self.table);
            let proto = ms.plan[leg]
                .proto
                .clone()
                .unwrap_or_else(|| ms.proto.clone());
            let mut media = Dict::new()
                .with("index", uint(i as u64 + 1))
                .with("type", bstr(ms.kind.clone()))
                .with("protocol", bstr(proto))
                .with("DTLS", bstr(dtls))
                .with("ICE", bstr(ice));
            if let Some(s) = suite {
                media.set("crypto suite", bstr(s.to_string()));
            }
            let media = media
                .with("slot", uint(u64::from(slot)))
                .with(
                    "streams",
                    Value::List(vec![rtp_stream.into_value(), rtcp_stream.into_value()]),
                )
                .with("flags", str_list(mflags));
            medias.push(media.into_value());
        }
        medias
    }
}

/// What `call_stats` sums over the legs it shows.
#[derive(Default)]
struct StatsAcc {
    rtp: [u64; 3],
    rtcp: [u64; 3],
    ssrcs: Dict,
    last_packet: u64,
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn endpoint(a: Option<SocketAddr>) -> Value {
    let mut d = Dict::new();
    if let Some(a) = a {
        d.set("family", bstr(family(a.ip())))
            .set("address", bstr(a.ip().to_string()))
            .set("port", uint(u64::from(a.port())));
    }
    d.into_value()
}

/// Microseconds of `ms`, rounded, as a bencode integer.
fn us(ms: f64) -> Value {
    uint((ms * 1000.0).round().max(0.0) as u64)
}

/// tern's per-stream `quality` dictionary (see `call_stats`).
fn quality_dict(q: &LegQuality) -> Value {
    let mut d = Dict::new()
        .with("expected", uint(q.expected))
        .with("lost", int(q.lost))
        .with("fraction lost", uint(u64::from(q.fraction_lost)))
        .with("jitter us", us(q.jitter_ms))
        .with("duplicates", uint(q.duplicates))
        .with("reordered", uint(q.reordered))
        .with("clock rate", uint(u64::from(q.clock_rate)));
    if let Some(r) = q.rtt_ms {
        d.set("round-trip time us", us(r));
    }
    if let Some(f) = q.peer_fraction_lost {
        d.set("peer fraction lost", uint(u64::from(f)));
    }
    if let Some(j) = q.peer_jitter_ms {
        d.set("peer jitter us", us(j));
    }
    if let Some(m) = q.mos {
        d.set("MOS x100", uint((m * 100.0).round() as u64));
    }
    d.into_value()
}

/// One entry of rtpengine's `SSRC` dictionary from a leg's statistics:
/// `cumulative loss`, and `average`/`lowest`/`highest MOS` as one sample
/// (`MOS` ×10, `round-trip time` µs, `jitter` ms, `packet loss` %).
fn rtpengine_ssrc_entry(q: &LegQuality) -> Value {
    let loss_pct = (q.lost.max(0) as u64)
        .saturating_mul(100)
        .saturating_add(q.expected / 2)
        .checked_div(q.expected)
        .unwrap_or(0);
    let sample = || {
        Dict::new()
            .with("MOS", uint((q.mos.unwrap_or(0.0) * 10.0).round() as u64))
            .with("round-trip time", us(q.rtt_ms.unwrap_or(0.0)))
            .with("jitter", uint(q.jitter_ms.round().max(0.0) as u64))
            .with("packet loss", uint(loss_pct))
    };
    Dict::new()
        .with("cumulative loss", int(q.lost))
        .with(
            "average MOS",
            sample().with("samples", uint(1)).into_value(),
        )
        .with("lowest MOS", sample().into_value())
        .with("highest MOS", sample().into_value())
        .into_value()
}
