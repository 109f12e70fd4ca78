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
//! not use costs nothing. Nothing here allocates or makes a syscall: the
//! send is an SQE, submitted with the loop's one `io_uring_enter`.

use std::net::SocketAddr;
use std::time::Instant;

use io_uring::types::RecvMsgOut;
use io_uring::{opcode, squeue, types};
use tern_shared::table::{DropReason, LegCounters};
use tracing::info;

use super::jitter_store::{buffer_packet, Buffered};
use super::user_data;
use super::{fixed_index, push_sqe, rtp_info, sock_index, SendSlot, Sock, Worker};
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
        let (leg, o) = (sock >> 1, (sock >> 1) ^ 1);
        let id = self.first + idx as u32;
        let at_ms = self.clock.unix_ms(now);
        let (Ok(c_in), Ok(c_out)) = (self.table.counters(id, leg), self.table.counters(id, o))
        else {
            return false;
        };
        let buf = self.bufs.buf_mut(bid, len);
        let Some((src, off, plen)) = recvmsg_payload(buf, &self.recv_hdr) else {
            c_in.count_drop(DropReason::Malformed);
            self.dropped += 1;
            return false;
        };
        let slot = &mut self.slots[idx];
        let Some(fwd) = slot.fwd.as_mut() else {
            return false;
        };
        let pkt = &mut buf[off..off + plen];

        // 1. Demux.
        match demux(pkt) {
            Demux::Media => {}
            // STUN (the ICE-lite responder) and DTLS (handed to the
            // worker's DTLS task, never handshaken inline) plug in here.
            // Until then they are, like anything not RTP/RTCP, malformed.
            Demux::Stun | Demux::Dtls | Demux::Other => {
                c_in.count_drop(DropReason::Malformed);
                self.dropped += 1;
                return false;
            }
        }

        // 2. Unprotect: SRTP/SRTCP (RFC 3711/7714) and its replay check
        //    plug in here for a secure leg; plain legs skip it.

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
        //    to was still received). The recording tap plugs in here.
        match out.verdict {
            Verdict::Forward { .. } | Verdict::Drop(DropReason::NoPeer) => {
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

        // 5. Shape: the jitter buffer of what goes to the other leg's peer
        //    takes a copy of the RTP and plays it out later. Transcoding,
        //    injection and blocking plug in here.
        if !rtcp {
            if let Some(lj) = slot.jit[o].as_mut() {
                match buffer_packet(&mut self.jstores, lj, pkt, now) {
                    Buffered::Held => {
                        c_in.count_rx(plen, at_ms);
                        return false;
                    }
                    Buffered::Refused(reason) => {
                        c_in.count_rx(plen, at_ms);
                        c_in.count_drop(reason);
                        self.dropped += 1;
                        return false;
                    }
                    Buffered::Bypass => {}
                }
            }
        }

        // 6. Rewrite: done in stage 3.

        // 7. Protect: SRTP/SRTCP for a secure outgoing leg plugs in here.

        // 8. Send out of the other leg's socket (its RTP one for RTCP with
        //    rtcp-mux).
        let out_k = sock_index(o, rtcp && !fwd.config().legs[o].rtcp_mux);
        let sqe = send_sqe(
            &mut self.sends[usize::from(bid)],
            &slot.socks[out_k],
            fixed_index(idx, out_k),
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
        c_out.count_tx(plen);
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
