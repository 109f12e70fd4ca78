//! `offer` and `answer`: which leg sent the SDP, a slot per relayed media
//! section (reserved from the table's bound free slots), its legs
//! programmed, and the SDP going to the other side rewritten.

use super::iface::Want;
use super::*;

impl NgCore {
    pub(super) fn offer_answer(
        &mut self,
        m: &Msg<'_>,
        now_ms: u64,
        op: Op,
        warnings: &mut Warnings,
    ) -> Reply {
        let sdp_text = field(m.str("sdp"), "No SDP body in message", "sdp")?;
        let call_id = field(m.str("call-id"), "No call-id in message", "call-id")?;
        if call_id.is_empty() {
            return Err(CommandError::Missing("No call-id in message"));
        }
        let from_tag = field(m.str("from-tag"), "No from-tag in message", "from-tag")?;
        let to_tag = field(m.opt_str("to-tag"), "", "to-tag")?.filter(|t| !t.is_empty());
        if op == Op::Answer && to_tag.is_none() {
            return Err(CommandError::Missing("No to-tag in message"));
        }
        let flags = Flags::parse(m, warnings)?;
        if let Some(t) = flags.tos.filter(|&t| t != tern_shared::MEDIA_TOS) {
            warnings.push(format!(
                "TOS {t} not applied: media is sent with TOS {}",
                tern_shared::MEDIA_TOS
            ));
        }
        let ifaces = self.ifaces();
        for name in flags.direction.iter().chain([&flags.interface]).flatten() {
            ifaces.check(name)?;
        }
        if flags.interface.is_some() {
            // rtpengine's publish/subscribe key: named as unsupported here.
            warnings.key("interface");
        }
        let sdp = Sdp::parse(sdp_text).map_err(|e| CommandError::Sdp(e.to_string()))?;
        match op {
            Op::Offer => self.stats.offers += 1,
            Op::Answer => self.stats.answers += 1,
        }

        let created = !self.calls.contains_key(call_id);
        if created {
            if op == Op::Answer {
                return Err(CommandError::UnknownCallId);
            }
            if self.calls.len() >= self.cfg.max_calls {
                self.stats.calls_rejected += 1;
                self.stats.load_limited += 1;
                warn!(
                    call_id,
                    max = self.cfg.max_calls,
                    "ng: parallel session limit reached"
                );
                if !flags.supports_load_limit {
                    return Err(CommandError::SessionLimit);
                }
                // rtpengine's control_ng.c: not an error, the client may
                // try another relay.
                return Ok(Dict::new()
                    .with("result", bstr("load limit"))
                    .with("message", bstr(CommandError::SessionLimit.to_string())));
            }
        }
        let via = field(m.opt_str("via-branch"), "", "via-branch")?.filter(|v| !v.is_empty());
        let table = self.table.clone();
        let call = self
            .calls
            .entry(call_id.to_string())
            .or_insert_with(|| Call::new(from_tag, via, now_ms));
        // Which branch, and which of its legs sent this SDP.
        let (pick, sender) = match op {
            Op::Offer => call.pick_offer(from_tag, to_tag, via),
            Op::Answer => {
                let to = to_tag.unwrap_or_default();
                call.pick_answer(from_tag, to, via)
                    .ok_or(CommandError::UnknownFromTag)?
            }
        };
        let receiver = sender ^ 1;
        let bi = call.open(pick, from_tag, to_tag, via, sender);
        let opened = !matches!(pick, Pick::Existing(_));
        let forked = matches!(pick, Pick::Fork(_));
        if opened {
            info!(
                call_id,
                to_tag,
                via_branch = via,
                branch = bi,
                "ng: new branch"
            );
        }
        match record::record_call_key(m, warnings) {
            Some(true) if !call.blocks.record.on => call.blocks.record.start(),
            Some(false) => call.blocks.record.stop(),
            _ => {}
        }
        let blocks = call.blocks.clone();
        let branch = &mut call.branches[bi];
        let tags = branch.tags.clone();

        let media_ip = ifaces.sdp_ip(0);
        let mut outs: Vec<Option<MediaOut>> = Vec::with_capacity(sdp.media().len());
        let mut rejected_mids: Vec<Option<String>> = Vec::with_capacity(sdp.media().len());
        let mut fresh: Vec<u32> = Vec::new();
        let mut failure = None;
        for (i, info) in sdp.media().iter().enumerate() {
            if branch.media.len() <= i {
                branch.media.push(MediaState::default());
            }
            let ms = &mut branch.media[i];
            // An answer's rejected section still names the offer's mid.
            rejected_mids.push(match op {
                Op::Answer => ms.plan[receiver].mid.clone(),
                Op::Offer => None,
            });
            if info.port == 0 {
                if let Some(s) = ms.slot.take() {
                    release_slot(&table, s, call_id);
                }
                outs.push(None);
                continue;
            }
            let slot = match ms.slot {
                Some(s) => s,
                None => match table.reserve_from(Owner::Ng, self.rng.gen()) {
                    Ok(s) => {
                        fresh.push(s);
                        table.set_call_id(s, call_id);
                        ms.slot = Some(s);
                        if forked {
                            // The offerer's leg as its offer left it.
                            ms.cfg.tag = tern_shared::table::call_tag(call_id);
                        } else {
                            ms.cfg = SlotConfig {
                                tag: tern_shared::table::call_tag(call_id),
                                ..Default::default()
                            };
                            for leg in &mut ms.cfg.legs {
                                leg.jitter = self.cfg.jitter;
                            }
                        }
                        debug!(call_id, slot = s, "ng: slot reserved");
                        s
                    }
                    Err(e) => {
                        failure = Some(match e {
                            TableError::Full => CommandError::OutOfPorts,
                            e => CommandError::Table(e.to_string()),
                        });
                        break;
                    }
                },
            };
            let out = program_media(ms, info, &flags, op, sender, &mut self.rng);
            if let Some(j) = flags.jitter(self.cfg.jitter) {
                for leg in &mut ms.cfg.legs {
                    leg.jitter = j;
                }
            }
            // Each leg's interface; the recipient's says the address.
            let sender_v4 = ms.cfg.legs[sender].peer.map(|a| a.ip().is_ipv4());
            let current = |ms: &MediaState, leg: usize| {
                ms.iface_chosen[leg].then_some(ms.cfg.legs[leg].iface)
            };
            let chosen = ifaces
                .choose(
                    Want {
                        name: flags.direction[0].as_deref(),
                        family: sender_v4,
                        prefer: None,
                        current: current(ms, sender),
                    },
                    warnings,
                )
                .and_then(|si| {
                    // The sender's family is only a preference for a fresh
                    // recipient: a name without it still wins.
                    let want = Want {
                        name: flags.direction[1].as_deref(),
                        family: flags.address_family,
                        prefer: sender_v4.filter(|_| !ms.iface_chosen[receiver]),
                        current: current(ms, receiver),
                    };
                    ifaces.choose(want, warnings).map(|ri| (si, ri))
                });
            let (si, ri) = match chosen {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            ms.cfg.legs[sender].iface = si;
            ms.cfg.legs[receiver].iface = ri;
            ms.iface_chosen = [true, true];
            let out_ip = ifaces.sdp_ip(ri);
            let ports = table.ports(slot, receiver);
            let offered = match secure::negotiate(
                ms,
                info,
                &flags,
                op,
                sender,
                &mut self.rng,
                table.dtls_fingerprint(),
                out_ip,
                ports,
                out.mux,
                i,
            ) {
                Ok(o) => o,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let (formats, codec_attrs) = match info.codecs.as_deref() {
                Some(c) => codec_formats(ms, c, &flags, op, sender, warnings),
                None => (None, None),
            };
            blocks.stamp(&tags, &mut ms.cfg);
            if let Err(e) = table.publish(slot, &ms.cfg) {
                failure = Some(CommandError::Table(e.to_string()));
                break;
            }
            outs.push(Some(MediaOut {
                port: ports.rtp,
                rtcp_port: if out.rtcp_on_rtp {
                    ports.rtp
                } else {
                    ports.rtcp
                },
                mux: out.mux,
                attrs: offered.attrs,
                proto: offered.proto,
                ice_lite: offered.ice_lite,
                formats,
                codec_attrs,
                ip: Some(out_ip),
            }));
        }
        if let Some(reason) = failure {
            // Give back what this message took; a call it created goes too.
            for ms in &mut branch.media {
                if ms.slot.is_some_and(|s| fresh.contains(&s)) {
                    ms.slot = None;
                }
            }
            for s in fresh {
                release_slot(&table, s, call_id);
            }
            if opened {
                call.remove_branch(bi);
            }
            if created {
                self.calls.remove(call_id);
                self.stats.calls_rejected += 1;
            }
            return Err(reason);
        }
        if op == Op::Offer && branch.media.len() > sdp.media().len() {
            for ms in branch.media.drain(sdp.media().len()..) {
                if let Some(s) = ms.slot {
                    release_slot(&table, s, call_id);
                }
            }
        }
        branch.delete_at_ms = None;
        call.active = bi;
        call.last_signal_ms = now_ms;
        call.delete_at_ms = None;
        if created {
            self.stats.calls_created += 1;
            let slots = call.slots();
            info!(call_id, slot = ?slots, "ng: call created");
        }
        // The session part says the first relayed section's address.
        let media_ip = outs.iter().flatten().find_map(|o| o.ip).unwrap_or(media_ip);
        let body = sdp.rewrite(&Rewrite {
            media_ip,
            media: outs,
            replace_origin: flags.replace_origin,
            replace_session_conn: flags.replace_session_conn,
            transport: flags.transport.clone(),
            rtcp_attr: flags.rtcp_attr,
            rejected_mids,
        });
        Ok(Dict::new().with("sdp", bstr(body)))
    }
}

/// The `codec` operations over the payload list `codecs` of a relayed
/// section, sent by leg `sender`: the `m=` formats of the SDP going out,
/// when they change, and the codec lines it gets ([`CodecAttrs`]). An
/// offer's decision is kept in `ms` for its answer; the answer's
/// programs both legs' codecs and transcoding (`crate::transcode`).
fn codec_formats(
    ms: &mut MediaState,
    codecs: &[Codec],
    flags: &Flags,
    op: Op,
    sender: usize,
    warnings: &mut crate::keys::Warnings,
) -> (Option<Vec<u8>>, Option<CodecAttrs>) {
    let receiver = sender ^ 1;
    let mut attrs = None;
    let pts = match op {
        Op::Offer => {
            for name in &flags.codec.transcode {
                if transcode::parse_name(name).is_none() {
                    let w = format!("codec {name} cannot be transcoded by tern: not added");
                    if !warnings.contains(&w) {
                        warnings.push(w);
                    }
                }
            }
            let o = codec::offer(codecs, &flags.codec);
            for (enc, rate) in &o.not_synthesised {
                let w =
                    format!("codec {enc}/{rate} not added: rtpengine would add it by transcoding");
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
            let a = &o.added;
            let lines: Vec<String> = a
                .codecs
                .iter()
                .map(|(c, _)| c)
                .chain(&a.events)
                .flat_map(transcode::rtpmap_lines)
                .collect();
            if !lines.is_empty() {
                attrs = Some(CodecAttrs {
                    lines,
                    replace: false,
                });
            }
            // What the offerer may send; the answer decides transcoding.
            ms.cfg.legs[sender].media.codecs = transcode::leg_codecs(&o.offerer);
            for leg in &mut ms.cfg.legs {
                leg.media.transcode = None;
            }
            let pts = o.offered.clone();
            ms.codecs = Some(o);
            pts
        }
        Op::Answer => {
            let kept = codec::answer(codecs, ms.codecs.as_ref(), &flags.codec);
            let plan = ms
                .codecs
                .as_ref()
                .and_then(|o| transcode::answer_plan(codecs, &kept, &o.offerer, &o.added));
            match plan {
                Some(p) => {
                    let [a, b] = &mut ms.cfg.legs;
                    let (offerer, answerer) = if sender == 1 { (a, b) } else { (b, a) };
                    p.program(&mut offerer.media, &mut answerer.media);
                    debug!(
                        from_offerer = ?p.from_offerer.map(|t| t.output),
                        from_answerer = ?p.from_answerer.map(|t| t.output),
                        "ng: transcoding"
                    );
                    attrs = Some(CodecAttrs {
                        lines: p.lines(),
                        replace: true,
                    });
                    p.formats()
                }
                None => {
                    let answered: Vec<Codec> = kept
                        .iter()
                        .filter_map(|pt| codecs.iter().find(|c| c.pt == *pt).cloned())
                        .collect();
                    ms.cfg.legs[sender].media.codecs = transcode::leg_codecs(&answered);
                    ms.cfg.legs[receiver].media.codecs = transcode::leg_codecs(&answered);
                    for leg in &mut ms.cfg.legs {
                        leg.media.transcode = None;
                    }
                    kept
                }
            }
        }
    };
    let same = pts.len() == codecs.len() && pts.iter().zip(codecs).all(|(p, c)| *p == c.pt);
    ((!same || attrs.is_some()).then_some(pts), attrs)
}

/// What [`program_media`] decided about the SDP going out.
struct MediaDecision {
    mux: bool,
    rtcp_on_rtp: bool,
}

/// Programs the leg `sender` of `ms` from its SDP `info`, and the rtcp-mux
/// state of both legs; says what the SDP going to the other side carries.
fn program_media(
    ms: &mut MediaState,
    info: &MediaInfo,
    flags: &Flags,
    op: Op,
    sender: usize,
    rng: &mut StdRng,
) -> MediaDecision {
    let receiver = sender ^ 1;
    let sdp_ip = info.conn.filter(|ip| !ip.is_unspecified());
    // `media address` overrides both the SDP's and `received-from`.
    let ip = match (
        flags.media_address,
        flags.trust_address,
        flags.received_from,
    ) {
        (Some(m), _, _) => Some(m),
        (None, false, Some(r)) if sdp_ip.is_some() => Some(r),
        _ => sdp_ip,
    };
    ms.kind = info.kind.clone();
    ms.proto = secure::out_transport(flags, &info.proto);
    ms.advertised[sender] = sdp_ip.map(|a| SocketAddr::new(a, info.port));
    let leg = &mut ms.cfg.legs[sender];
    leg.peer = ip.map(|a| SocketAddr::new(a, info.port));
    leg.peer_rtcp = match (info.rtcp, ip) {
        (Some((port, addr)), Some(ip)) if !info.rtcp_mux => {
            let a = if flags.trust_address {
                addr.unwrap_or(ip)
            } else {
                ip
            };
            Some(SocketAddr::new(a, port))
        }
        _ => None,
    };
    leg.learning = flags.learning();
    leg.direction = info.direction.reversed();
    leg.dtmf_pt = info.dtmf_pt;
    leg.clock_rate = info.clock_rate;
    if flags.ssrc_rewrite {
        let out = &mut ms.cfg.legs[receiver];
        out.rewrite_ssrc = true;
        if out.out_ssrc == 0 {
            out.out_ssrc = loop {
                let v: u32 = rng.gen();
                if v != 0 {
                    break v;
                }
            };
        }
    }
    match op {
        Op::Offer => {
            let f = flags.mux;
            ms.mux_offered_by = info.rtcp_mux && !f.reject;
            ms.mux_offered_to = (info.rtcp_mux && !f.demux) || f.offer || f.require;
            ms.mux_flags = f;
            let was = ms.cfg.legs[sender].rtcp_mux;
            ms.cfg.legs[sender].rtcp_mux =
                ms.mux_offered_by && (was || f.accept || f.demux || f.require);
            if f.require {
                ms.cfg.legs[receiver].rtcp_mux = true;
            }
            MediaDecision {
                mux: ms.mux_offered_to,
                rtcp_on_rtp: f.require,
            }
        }
        Op::Answer => {
            // `require` pretends the SDP's recipient took rtcp-mux
            // (rtpengine): the offer's is about the answerer, the
            // answer's about the offerer.
            let (of, af) = (ms.mux_flags, flags.mux);
            let answered = (info.rtcp_mux && ms.mux_offered_to) || of.require;
            ms.cfg.legs[sender].rtcp_mux = answered;
            let offerer_mux = ms.mux_offered_by
                && (answered || of.accept || af.accept || of.demux || af.demux || af.require);
            ms.cfg.legs[receiver].rtcp_mux = offerer_mux;
            MediaDecision {
                mux: offerer_mux,
                rtcp_on_rtp: offerer_mux,
            }
        }
    }
}
