//! One received datagram: decided by the slot's [`Forwarder`](crate::leg::Forwarder),
//! observed, maybe jitter-buffered, and sent copy-free out of the other
//! leg's socket.

use std::time::Instant;

use io_uring::types::RecvMsgOut;
use io_uring::{opcode, types};
use tern_shared::table::DropReason;
use tracing::info;

use super::jitter_store::{buffer_packet, Buffered};
use super::user_data;
use super::{fixed_index, push_sqe, rtp_info, sock_index, Worker};
use crate::leg::{PacketKind, Verdict};
use crate::sockets::read_sockaddr;

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
        let leg = sock >> 1;
        let id = self.first + idx as u32;
        let at_ms = self.clock.unix_ms(now);
        let (Ok(c_in), Ok(c_out)) = (
            self.table.counters(id, leg),
            self.table.counters(id, leg ^ 1),
        ) else {
            return false;
        };
        let buf = self.bufs.buf_mut(bid, len);
        let parsed = RecvMsgOut::parse(buf, &self.recv_hdr).ok().and_then(|out| {
            if out.is_payload_truncated() || out.is_name_data_truncated() {
                return None;
            }
            let src = read_sockaddr(out.name_data())?;
            let off = out.payload_data().as_ptr() as usize - buf.as_ptr() as usize;
            Some((src, off, out.payload_data().len()))
        });
        let Some((src, off, plen)) = parsed else {
            c_in.count_drop(DropReason::Malformed);
            self.dropped += 1;
            return false;
        };
        let slot = &mut self.slots[idx];
        let Some(fwd) = slot.fwd.as_mut() else {
            return false;
        };
        let kind = if sock & 1 == 1 {
            PacketKind::Rtcp
        } else if fwd.config().legs[leg].rtcp_mux {
            PacketKind::Mux
        } else {
            PacketKind::Rtp
        };
        let pkt = &mut buf[off..off + plen];
        // The header as the peer sent it, before any SSRC rewriting.
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
            if let Some(rw) = fwd.leg(leg ^ 1).rewriter {
                c_out.set_ssrc_state(rw.to_state());
            }
        }
        let o = leg ^ 1;
        match out.verdict {
            Verdict::Forward { .. } | Verdict::Drop(DropReason::NoPeer) => {
                let forwarded = matches!(out.verdict, Verdict::Forward { .. });
                let q = &mut slot.q;
                if out.rtcp {
                    q.on_rtcp(leg, pkt, forwarded, now);
                } else if let Some(h) = hdr {
                    let lcfg = &fwd.config().legs[leg];
                    if q.on_rtp(leg, &h, pkt, lcfg, now, at_ms) {
                        while let Some(ev) = q.poll_dtmf(leg) {
                            c_in.push_dtmf(&ev);
                            info!(
                                worker = self.index,
                                slot = id,
                                call_id = %slot.call_id,
                                leg,
                                digit = %ev.digit,
                                duration = ev.duration,
                                rtp_timestamp = ev.rtp_timestamp,
                                "DTMF"
                            );
                        }
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
        let out_k = sock_index(o, rtcp && !fwd.config().legs[o].rtcp_mux);
        let out_sock = &slot.socks[out_k];
        let (fd, v6, fixed) = (out_sock.fd, out_sock.v6, out_sock.fixed);
        let s = &mut self.sends[usize::from(bid)];
        let filled = if fd >= 0 {
            s.fill(pkt.as_mut_ptr(), plen, dest, v6)
        } else {
            None
        };
        if filled.is_none() {
            c_in.count_drop(DropReason::NoPeer);
            self.dropped += 1;
            return false;
        }
        let hdr = std::ptr::addr_of!(s.hdr);
        let sqe = if fixed {
            opcode::SendMsg::new(types::Fixed(fixed_index(idx, out_k)), hdr).build()
        } else {
            opcode::SendMsg::new(types::Fd(fd), hdr).build()
        }
        .user_data(user_data::send_ud(bid));
        if !push_sqe(&mut self.ring, &sqe, &mut self.ring_ctr.sq_full) {
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
