//! One received datagram, stage by stage (DESIGN.md "The packet path"):
//!
//! 1. demux by first byte (RFC 7983);
//! 2. unprotect (SRTP/SRTCP), for a secure leg;
//! 3. policy: learning, direction, payload types ([`Forwarder`]);
//! 4. observe: statistics and DTMF ([`SlotFeed`]);
//! 5. shape: the jitter buffer toward the other leg's peer;
//! 6. rewrite: SSRC, sequence number and timestamp continuity, RTCP
//!    mapping;
//! 7. protect, for the outgoing leg;
//! 8. send from the other leg's own socket, straight from the provided
//!    buffer.
//!
//! Stages not built yet are marked where they plug in; a stage a leg does
//! not use costs nothing (a plain slot has no secure state at all). Nothing here allocates or makes a syscall: the
//! send is an SQE, submitted with the loop's one `io_uring_enter`.

use std::net::SocketAddr;
use std::time::Instant;

use io_uring::types::RecvMsgOut;
use io_uring::{opcode, squeue, types};
use tern_shared::rtp::looks_like_rtcp;
use tern_shared::table::{DropReason, LegCounters};
use tracing::info;

use super::jitter_store::{buffer_packet, Buffered};
use super::secure::{self, StunAction};
use super::user_data;
use super::{
    fixed_index, leg_iface, push_sqe, rtp_info, sock_index, SendSlot, Sock, Worker, BUF_SIZE,
};
use crate::leg::{PacketKind, Verdict};
use crate::quality::feed::SlotFeed;
use crate::sockets::read_sockaddr;

/// What a datagram is, by its first byte (RFC 7983 §7, as updated by RFC
/// 9443 §3): the demux of a port that may carry STUN, DTLS and media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Demux {
    /// 0–3: STUN (RFC 8489): ICE connectivity checks, consent (RFC 7675).
    Stun,
    /// 20–63: DTLS (RFC 9147): the DTLS-SRTP handshake (RFC 5764).
    Dtls,
    /// 128–191: RTP or RTCP (RFC 3550 version 2); on an rtcp-mux port
    /// told apart by the second byte (RFC 5761 §4).
    Media,
    /// Anything else (ZRTP 16–19, TURN channels 64–79, unassigned), or an
    /// empty datagram.
    Other,
}

/// Replaces the payload of a PCMU (payload type 0) or PCMA (8) packet
/// by the codec's silence (µ-law 0xFF, A-law 0xD5: ITU-T G.711 codes for
/// zero); other payload types are left as they are.
#[inline]
fn silence_g711(pkt: &mut [u8]) {
    let Ok(mut p) = tern_shared::rtp::RtpPacket::new_checked(&mut pkt[..]) else {
        return;
    };
    let fill = match p.payload_type() & 0x7f {
        0 => 0xff,
        8 => 0xd5,
        _ => return,
    };
    p.payload_mut().fill(fill);
}

/// Asks `pl` about the audio packet `pkt` (already rewritten toward the
/// other leg) and, for an event, rewrites it in place into a
/// telephone-event packet of payload type `pt`: marker, timestamp, the
/// 4-byte payload after the header (padding dropped). The new length,
/// or `None` to forward it as it is.
#[inline]
fn play_into(pl: &mut crate::inject::DtmfPlayer, pkt: &mut [u8], pt: u8) -> Option<usize> {
    let p = tern_shared::rtp::RtpPacket::new_checked(&pkt[..]).ok()?;
    let (ts, hl) = (p.timestamp(), p.header_len());
    let crate::inject::Play::Event {
        marker,
        timestamp,
        payload,
    } = pl.on_audio(ts)
    else {
        return None;
    };
    let n = hl + payload.len();
    let out = pkt.get_mut(..n)?;
    out[0] &= !0x20; // no padding
    out[1] = u8::from(marker) << 7 | (pt & 0x7f);
    out[4..8].copy_from_slice(&timestamp.to_be_bytes());
    out[hl..].copy_from_slice(&payload);
    Some(n)
}

/// Whether `leg` of `slot` has an active DTLS handshake waiting for ICE
/// nomination.
#[inline]
fn ice_leg_deferred(slot: &super::SlotRt, leg: usize) -> bool {
    slot.sec
        .as_ref()
        .is_some_and(|s| s.legs[leg & 1].deferred.is_some())
}

/// Stage 1: the class of datagram `pkt` by its first byte (RFC 7983 §7).
#[inline]
pub(super) fn demux(pkt: &[u8]) -> Demux {
    match pkt.first() {
        Some(0..=3) => Demux::Stun,
        Some(20..=63) => Demux::Dtls,
        Some(128..=191) => Demux::Media,
        _ => Demux::Other,
    }
}

impl Worker {
    /// Handles one received datagram in buffer `bid` (`len` bytes of
    /// recvmsg output) on socket `sock` of slot `idx`. Returns true if the
    /// buffer now belongs to a send.
    ///
    /// `now` is the datagram's arrival time: its loop iteration's
    /// monotonic clock ([`super::Clock::at`]), for the statistics and the
    /// jitter buffer. The Unix ms that the slot table's counters and DTMF
    /// events carry is derived from it ([`super::Clock::unix_ms`]).
    #[inline]
    pub(super) fn forward(
        &mut self,
        idx: usize,
        sock: usize,
        bid: u16,
        len: usize,
        now: Instant,
    ) -> bool {
        let leg = (sock >> 1) & 1;
        let o = leg ^ 1;
        let id = self.first + idx as u32;
        let at_ms = self.clock.unix_ms(now);
        let (Ok(c_in), Ok(c_out)) = (self.table.counters(id, leg), self.table.counters(id, o))
        else {
            return false;
        };
        let buf = self.bufs.buf_mut(bid, len);
        let Some((src, off, mut plen)) = recvmsg_payload(buf, &self.recv_hdr) else {
            c_in.count_drop(DropReason::Malformed);
            self.dropped += 1;
            return false;
        };
        // The whole provided buffer: protecting appends a tag.
        let buf = self.bufs.buf_mut(bid, BUF_SIZE as usize);
        let slot = &mut self.slots[idx];
        let Some(fwd) = slot.fwd.as_mut() else {
            return false;
        };
        // What reached the leg's port on another interface than the leg's
        // (queued before that socket got its filter) is not the leg's.
        let n = self.ifaces.len();
        if sock >> 2 != leg_iface(fwd, leg, n) {
            c_in.count_drop(DropReason::Source);
            self.dropped += 1;
            return false;
        }

        // 1. Demux.
        let drop = match demux(&buf[off..off + plen]) {
            Demux::Media => None,
            Demux::Stun => {
                let ice = slot.sec.as_mut().and_then(|s| s.legs[leg].ice.as_mut());
                let Some(ice) = ice else {
                    c_in.count_drop(DropReason::Stun);
                    self.dropped += 1;
                    return false;
                };
                let out = &mut self.scratch[..];
                match secure::on_stun(ice, &buf[off..off + plen], src, now, out) {
                    StunAction::Reply { len, nominated } => {
                        let mut start_dtls = false;
                        if nominated {
                            let rtcp = sock & 1 == 1;
                            fwd.latch(leg, src, rtcp);
                            c_in.set_learned(rtcp, Some(src));
                            start_dtls = ice_leg_deferred(slot, leg);
                        }
                        // The answer goes back out of the socket the check
                        // came in on, from this same buffer.
                        buf[off..off + len].copy_from_slice(&out[..len]);
                        let sqe = send_sqe(
                            &mut self.sends[usize::from(bid)],
                            &slot.socks[sock],
                            fixed_index(idx, sock, self.per_slot),
                            &mut buf[off..off + len],
                            src,
                            user_data::send_ud(bid),
                        );
                        let queued = sqe.is_some_and(|e| {
                            push_sqe(&mut self.ring, &e, &mut self.ring_ctr.sq_full)
                        });
                        // After the answer: the peer's ICE is connected
                        // by the time our ClientHello arrives.
                        if start_dtls {
                            self.start_deferred(idx, leg);
                        }
                        return queued;
                    }
                    StunAction::Drop => Some(DropReason::Stun),
                }
            }
            // Handed to the DTLS task, never handshaken inline.
            Demux::Dtls => match (&self.dtls, &slot.sec) {
                (Some(d), Some(sec)) if sec.legs[leg].dtls_on() => {
                    let key = crate::dtls::LegKey {
                        worker: self.index,
                        slot: id,
                        leg,
                        component: (sock & 1) as u8,
                        gen: slot.gen,
                    };
                    d.submit(key, &buf[off..off + plen])
                }
                _ => Some(DropReason::Dtls),
            },
            Demux::Other => Some(DropReason::Demux),
        };
        if let Some(r) = drop {
            c_in.count_drop(r);
            self.dropped += 1;
            return false;
        }

        // 2. Unprotect (SRTP/SRTCP, RFC 3711/7714) on a secure leg; its
        //    replay check; nothing is learned from a packet refused here.
        if let Some(sec) = slot.sec.as_mut() {
            let st = &mut sec.legs[leg];
            let rtcp_in = sock & 1 == 1 || looks_like_rtcp(&buf[off..off + plen]);
            let awaiting = st.awaiting_dtls;
            let res = match st.rx_for(sock & 1 == 1) {
                Some(ctx) => secure::unprotect(ctx, &mut buf[off..], plen, rtcp_in, c_in),
                None if awaiting => Err(DropReason::Dtls),
                None => Ok(plen),
            };
            match res {
                Ok(n) => plen = n,
                Err(r) => {
                    c_in.count_drop(r);
                    self.dropped += 1;
                    return false;
                }
            }
        }
        let pkt = &mut buf[off..off + plen];

        // 3. Policy, in one pass with 6. rewrite: the packet is rewritten
        //    at arrival toward the other leg (so a jitter store holds it as
        //    it will leave), and the header observed is the one the peer
        //    sent, taken first.
        let kind = if sock & 1 == 1 {
            PacketKind::Rtcp
        } else if fwd.config().legs[leg].rtcp_mux {
            PacketKind::Mux
        } else {
            PacketKind::Rtp
        };
        let hdr = if kind == PacketKind::Rtcp {
            None
        } else {
            rtp_info(pkt)
        };
        let out = fwd.on_packet(leg, src, pkt, kind);
        if let Some(a) = out.learned {
            c_in.set_learned(out.rtcp, Some(a));
        }
        if out.ssrc_changed {
            if let Some(rw) = fwd.leg(o).rewriter {
                c_out.set_ssrc_state(rw.to_state());
            }
        }

        // 4. Observe what the policy accepted (a packet with no peer to go
        //    to was still received); the recording tap (record_tap.rs).
        match out.verdict {
            Verdict::Forward { .. } | Verdict::Drop(DropReason::NoPeer) => {
                if let Some(t) = self.rec.as_mut() {
                    let lc = &fwd.config().legs[leg];
                    if lc.media.record {
                        let (table, ifaces) = (&self.table, &self.ifaces[..]);
                        super::record_tap::tap_leg(
                            t, id, sock, leg, lc, out.rtcp, src, at_ms, pkt, table, ifaces,
                        );
                    }
                }
                let forwarded = matches!(out.verdict, Verdict::Forward { .. });
                if out.rtcp {
                    slot.q.on_rtcp(leg, pkt, forwarded, now);
                } else if let Some(h) = hdr {
                    let lcfg = &fwd.config().legs[leg];
                    if slot.q.on_rtp(leg, &h, pkt, lcfg, now, at_ms) {
                        report_dtmf(&mut slot.q, c_in, leg, self.index, id, &slot.call_id);
                    }
                }
            }
            Verdict::Drop(_) => {}
        }
        let (dest, rtcp) = match out.verdict {
            Verdict::Forward { dest, rtcp } => (dest, rtcp),
            Verdict::Drop(r) => {
                c_in.count_drop(r);
                self.dropped += 1;
                return false;
            }
        };

        // ng `play media`: while a prompt replaces this leg's peer's media
        // (media_play.rs), its packets stop here, observed.
        if !rtcp && super::media_play::consume(&mut slot.plays, leg, hdr.as_ref(), now) {
            c_in.count_rx(plen, at_ms);
            return false;
        }

        // ng `play DTMF`: while events play, the audio packets of this
        // leg's peer carry them instead (crate::inject), after they were
        // observed as what the peer sent.
        let mut played = false;
        let rx_len = plen;
        if !rtcp {
            if let (Some(pl), Some(h)) = (slot.play[leg].as_mut(), hdr) {
                let lc = &fwd.config().legs[leg];
                if Some(h.payload_type) != lc.dtmf_pt {
                    if let Some(n) = lc.dtmf_pt.and_then(|pt| play_into(pl, pkt, pt)) {
                        plen = n;
                        played = true;
                    }
                }
                if pl.done() {
                    slot.play[leg] = None;
                }
            }
        }
        let pkt = &mut buf[off..off + plen];

        // Media control (ng `block DTMF`, `block media`, `silence media`)
        // on what this leg's peer sends, after it was observed: a blocked
        // packet is not an error, so it is not counted as a drop.
        // Played events are the relay's own, not the peer's: no block or
        // silence applies to them (rtpengine 10.5 lets them through a
        // `block DTMF` of the same party too).
        if !rtcp && !played {
            let lc = &fwd.config().legs[leg];
            if lc.block_dtmf || lc.block_media || lc.silence_media {
                let pt = hdr.map(|h| h.payload_type);
                let dtmf = pt.is_some() && pt == lc.dtmf_pt;
                if (dtmf && lc.block_dtmf) || (!dtmf && lc.block_media) {
                    return false;
                }
                if !dtmf && lc.silence_media {
                    silence_g711(pkt);
                }
            }
        }

        // 5. Shape. Transcoding (transcode.rs) takes the packet whole: its
        //    output goes through the jitter buffer or out on its own.
        if !rtcp {
            if let Some(lx) = slot.xc[leg].as_deref_mut() {
                c_in.count_rx(rx_len, at_ms);
                match lx.push(pkt) {
                    Ok(0) => {}
                    Ok(_) => self.send_transcoded(idx, leg, now),
                    Err(r) => {
                        c_in.count_drop(r);
                        self.dropped += 1;
                    }
                }
                return false;
            }
        }
        //    The jitter buffer of what goes to the other leg's peer takes
        //    a copy of the RTP and plays it out later.
        if !rtcp {
            if let Some(lj) = slot.jit[o].as_mut() {
                match buffer_packet(&mut self.jstores, lj, pkt, now) {
                    Buffered::Held => {
                        c_in.count_rx(rx_len, at_ms);
                        return false;
                    }
                    Buffered::Refused(reason) => {
                        c_in.count_rx(rx_len, at_ms);
                        c_in.count_drop(reason);
                        self.dropped += 1;
                        return false;
                    }
                    Buffered::Bypass => {}
                }
            }
        }

        // 6. Rewrite: done in stage 3.

        // 7. Protect for a secure outgoing leg, after the rewrite (the
        //    SSRC the peer sees is the one authenticated); and no sending
        //    once the peer's ICE consent has expired (RFC 7675 §5.1).
        let mut slen = plen;
        if let Some(sec) = slot.sec.as_mut() {
            let st = &mut sec.legs[o];
            let res = if st.ice.as_ref().is_some_and(|i| !i.may_send(now)) {
                Err(DropReason::NoConsent)
            } else {
                let awaiting = st.awaiting_dtls;
                let rtcp_sock = rtcp && !fwd.config().legs[o].rtcp_mux;
                match st.tx_for(rtcp_sock) {
                    Some(ctx) => secure::protect(ctx, &mut buf[off..], plen, rtcp, c_out),
                    None if awaiting => Err(DropReason::Dtls),
                    None => Ok(plen),
                }
            };
            match res {
                Ok(n) => slen = n,
                Err(r) => {
                    c_in.count_drop(r);
                    self.dropped += 1;
                    return false;
                }
            }
        }
        let pkt = &mut buf[off..off + slen];

        // 8. Send out of the other leg's socket (its RTP one for RTCP with
        //    rtcp-mux).
        //    That leg's sockets are on its own interface.
        let out_k = sock_index(
            leg_iface(fwd, o, n),
            o,
            rtcp && !fwd.config().legs[o].rtcp_mux,
        );
        let sqe = send_sqe(
            &mut self.sends[usize::from(bid)],
            &slot.socks[out_k],
            fixed_index(idx, out_k, self.per_slot),
            pkt,
            dest,
            user_data::send_ud(bid),
        );
        let queued = sqe.is_some_and(|e| push_sqe(&mut self.ring, &e, &mut self.ring_ctr.sq_full));
        if !queued {
            c_in.count_drop(DropReason::NoPeer);
            self.dropped += 1;
            return false;
        }
        if rtcp {
            c_in.count_rtcp_rx(at_ms);
        } else {
            c_in.count_rx(plen, at_ms);
        }
        c_out.count_tx(slen);
        self.forwarded += 1;
        true
    }
}

/// The source address and the payload's offset and length in `buf`, the
/// output of a multishot recvmsg under header `hdr`; `None` when it was
/// truncated or its address is of no family a socket of ours receives.
#[inline]
fn recvmsg_payload(buf: &[u8], hdr: &libc::msghdr) -> Option<(SocketAddr, usize, usize)> {
    let out = RecvMsgOut::parse(buf, hdr).ok()?;
    if out.is_payload_truncated() || out.is_name_data_truncated() {
        return None;
    }
    let src = read_sockaddr(out.name_data())?;
    let off = out.payload_data().as_ptr() as usize - buf.as_ptr() as usize;
    Some((src, off, out.payload_data().len()))
}

/// The SendMsg SQE of `pkt` (sent from where it lies: its storage must
/// outlive the send) to `dest` out of `sock`, by its fixed-file index
/// `fixed_at` when it is installed, tagged `ud`; its header goes in `s`.
/// `None` when the socket is closed or `dest` does not fit its family.
#[inline]
fn send_sqe(
    s: &mut SendSlot,
    sock: &Sock,
    fixed_at: u32,
    pkt: &mut [u8],
    dest: SocketAddr,
    ud: u64,
) -> Option<squeue::Entry> {
    if sock.fd < 0 {
        return None;
    }
    s.fill(pkt.as_mut_ptr(), pkt.len(), dest, sock.v6)?;
    let hdr = std::ptr::addr_of!(s.hdr);
    let sqe = if sock.fixed {
        opcode::SendMsg::new(types::Fixed(fixed_at), hdr).build()
    } else {
        opcode::SendMsg::new(types::Fd(sock.fd), hdr).build()
    };
    Some(sqe.user_data(ud))
}

/// Writes the key presses `feed` completed on `leg` to the leg's counter
/// line (the slot table's DTMF ring) and the log.
fn report_dtmf(
    feed: &mut SlotFeed,
    c_in: &LegCounters,
    leg: usize,
    worker: u32,
    slot: u32,
    call_id: &str,
) {
    while let Some(ev) = feed.poll_dtmf(leg) {
        c_in.push_dtmf(&ev);
        info!(
            worker,
            slot,
            call_id = %call_id,
            leg,
            digit = %ev.digit,
            duration = ev.duration,
            rtp_timestamp = ev.rtp_timestamp,
            "DTMF"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_by_first_byte() {
        for (b, want) in [
            (0u8, Demux::Stun),
            (1, Demux::Stun),
            (3, Demux::Stun),
            (4, Demux::Other),
            (16, Demux::Other),
            (19, Demux::Other),
            (20, Demux::Dtls),
            (22, Demux::Dtls),
            (63, Demux::Dtls),
            (64, Demux::Other),
            (127, Demux::Other),
            (128, Demux::Media),
            (0x80 | 0x3f, Demux::Media),
            (191, Demux::Media),
            (192, Demux::Other),
            (255, Demux::Other),
        ] {
            assert_eq!(demux(&[b, 0, 0, 0]), want, "first byte {b}");
        }
        assert_eq!(demux(&[]), Demux::Other);
    }
}
