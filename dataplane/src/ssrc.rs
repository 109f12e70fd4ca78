//! SSRC rewriting, sans-IO: the per-direction mapping of RTP SSRC,
//! sequence number and timestamp, and the matching RTCP SSRC mapping
//! (RFC 3550 §5.1, §6; design note "SSRC rewriting").
//!
//! Each output direction of a leg owns one [`SsrcRewriter`] carrying the SSRC
//! the receiving peer sees. Whatever sources feed it (re-INVITE, source
//! switch, hold/resume), the peer sees one stream: the same SSRC, and a
//! sequence number and timestamp that continue without a jump.

use tern_shared::rtcp::{map_ssrcs, RtcpError, SsrcField};
use tern_shared::rtp::RtpPacket;

/// Timestamp increment assumed across a source switch when none has been
/// observed yet: 160 ticks, 20 ms at 8 kHz (the usual G.711 packet).
const DEFAULT_TS_STEP: u32 = 160;

/// Bit of state word 2 telling that a packet was seen (the other fields are
/// meaningful); all-zero state is thus a fresh rewriter.
const SEEN: u64 = 1 << 32;

/// SSRC rewriting for the packets sent to one peer (one direction of a leg).
///
/// Output fields are a pure offset mapping of the input, all wrapping:
/// `out_seq = in_seq + seq_offset` (16 bits), `out_ts = in_ts + ts_offset`
/// (32 bits, clock-rate units), and the SSRC is always `out_ssrc`.
///
/// - The first packet sets the input SSRC with offsets 0: its sequence
///   number and timestamp go out unchanged.
/// - Within one input SSRC the offsets do not change, so reordered, late or
///   lost packets keep their relative order and spacing.
/// - When the input SSRC changes, new offsets make that packet go out with
///   `newest_out_seq + 1` and `newest_out_ts + step`, where "newest" is the
///   highest output sequence number sent so far and `step` is the last
///   timestamp increment observed between two consecutive sequence numbers
///   (increments of 0, backwards ones and marker-bit packets are not
///   learned, so video frames split over packets, talkspurt starts and
///   telephone events do not skew it), or 160 (20 ms at 8 kHz) when none
///   was observed. The marker bit is left as the source sent it.
/// - A switch back to an earlier SSRC is just another switch: its packets
///   continue after the newest output too, so output never jumps back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsrcRewriter {
    out_ssrc: u32,
    /// The input SSRC mapped now; `None` until the first packet.
    in_ssrc: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    /// Highest output sequence number sent (in 16-bit serial order).
    newest_seq: u16,
    /// Output timestamp of that packet.
    newest_ts: u32,
    /// Last learned timestamp increment per sequence number; 0 = unknown.
    ts_step: u32,
}

impl SsrcRewriter {
    /// A rewriter whose output carries `out_ssrc`, with no packet seen.
    pub const fn new(out_ssrc: u32) -> Self {
        SsrcRewriter {
            out_ssrc,
            in_ssrc: None,
            seq_offset: 0,
            ts_offset: 0,
            newest_seq: 0,
            newest_ts: 0,
            ts_step: 0,
        }
    }

    /// The SSRC the peer sees on every rewritten packet.
    pub const fn out_ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// The input SSRC currently mapped, if any packet was seen.
    pub const fn in_ssrc(&self) -> Option<u32> {
        self.in_ssrc
    }

    /// Rewrites SSRC, sequence number and timestamp in place (bytes 2..12
    /// of the RTP header, RFC 3550 §5.1); see [`SsrcRewriter`] for the
    /// mapping. The packet should have passed `RtpPacket::new_checked`; on
    /// a shorter buffer the missing fields read as 0 and are not written.
    pub fn rewrite_rtp<T: AsRef<[u8]> + AsMut<[u8]>>(&mut self, pkt: &mut RtpPacket<T>) {
        let ssrc = pkt.ssrc();
        let seq = pkt.sequence_number();
        let ts = pkt.timestamp();
        match self.in_ssrc {
            Some(current) if current == ssrc => {
                let out_seq = seq.wrapping_add(self.seq_offset);
                let out_ts = ts.wrapping_add(self.ts_offset);
                let ahead = out_seq.wrapping_sub(self.newest_seq);
                // Serial-number order (RFC 1982): only a newer packet moves
                // the reference for a future switch.
                if ahead != 0 && ahead < 0x8000 {
                    let step = out_ts.wrapping_sub(self.newest_ts);
                    if ahead == 1 && !pkt.marker() && step != 0 && step < 0x8000_0000 {
                        self.ts_step = step;
                    }
                    self.newest_seq = out_seq;
                    self.newest_ts = out_ts;
                }
            }
            Some(_) => {
                // Source switch: continue right after the newest output.
                let step = if self.ts_step == 0 {
                    DEFAULT_TS_STEP
                } else {
                    self.ts_step
                };
                let out_seq = self.newest_seq.wrapping_add(1);
                let out_ts = self.newest_ts.wrapping_add(step);
                self.seq_offset = out_seq.wrapping_sub(seq);
                self.ts_offset = out_ts.wrapping_sub(ts);
                self.in_ssrc = Some(ssrc);
                self.newest_seq = out_seq;
                self.newest_ts = out_ts;
            }
            None => {
                self.in_ssrc = Some(ssrc);
                self.seq_offset = 0;
                self.ts_offset = 0;
                self.newest_seq = seq;
                self.newest_ts = ts;
            }
        }
        pkt.set_ssrc(self.out_ssrc);
        pkt.set_sequence_number(seq.wrapping_add(self.seq_offset));
        pkt.set_timestamp(ts.wrapping_add(self.ts_offset));
    }

    /// Persistable state (3 words) so a restarted dataplane continues
    /// without a jump; `out_ssrc` is not in it (it comes from
    /// configuration). Layout, bit 0 = least significant:
    ///
    /// - word 0: in SSRC (bits 0..32), seq offset (32..48), newest output
    ///   seq (48..64);
    /// - word 1: ts offset (0..32), newest output ts (32..64);
    /// - word 2: learned ts step (0..32), "seen" flag (bit 32), rest 0.
    ///
    /// A fresh rewriter's state is all zero.
    pub const fn to_state(&self) -> [u64; 3] {
        let (in_ssrc, seen) = match self.in_ssrc {
            Some(s) => (s, SEEN),
            None => return [0; 3],
        };
        [
            in_ssrc as u64 | (self.seq_offset as u64) << 32 | (self.newest_seq as u64) << 48,
            self.ts_offset as u64 | (self.newest_ts as u64) << 32,
            self.ts_step as u64 | seen,
        ]
    }

    /// Rebuilds a rewriter from [`SsrcRewriter::to_state`]'s words. A
    /// state without the "seen" flag (all-zero included) gives
    /// `new(out_ssrc)`; reserved bits are ignored.
    pub const fn from_state(out_ssrc: u32, state: [u64; 3]) -> Self {
        if state[2] & SEEN == 0 {
            return Self::new(out_ssrc);
        }
        // Truncating casts pick the documented bit fields.
        SsrcRewriter {
            out_ssrc,
            in_ssrc: Some(state[0] as u32),
            seq_offset: (state[0] >> 32) as u16,
            newest_seq: (state[0] >> 48) as u16,
            ts_offset: state[1] as u32,
            newest_ts: (state[1] >> 32) as u32,
            ts_step: state[2] as u32,
        }
    }
}

/// Maps SSRCs of a compound RTCP packet travelling from peer X to peer Y, in place.
/// `toward_y` is the rewriter of packets sent to Y (maps X's media SSRC to what Y sees);
/// `toward_x` is the rewriter of packets sent to X (so report blocks and feedback that X wrote about the SSRC it saw — toward_x.out_ssrc — are mapped back to Y's real SSRC, toward_x.in_ssrc).
/// Either may be None meaning "no rewriting in that direction" (identity).
///
/// Fields (see `tern_shared::rtcp::map_ssrcs`, RFC 3550 §6.4–6.6, RFC 4585
/// §6.1):
///
/// - `Sender`, `SdesChunk`, `ByeSource`, `FeedbackSender` (X's own SSRCs)
///   equal to `toward_y.in_ssrc` become `toward_y.out_ssrc`;
/// - `ReportSource`, `FeedbackMedia` (what X reports on: Y's stream as X
///   saw it) equal to `toward_x.out_ssrc` become `toward_x.in_ssrc`, when
///   one is known.
///
/// Every other value passes through, e.g. X's SSRC before any RTP from X
/// was seen. The whole compound is validated first: on error (the
/// [`RtcpError`] of `map_ssrcs`) `buf` is unchanged.
pub fn map_rtcp(
    buf: &mut [u8],
    toward_y: Option<&SsrcRewriter>,
    toward_x: Option<&SsrcRewriter>,
) -> Result<(), RtcpError> {
    // (from, to) pairs; None where that direction has nothing to map.
    let own = toward_y.and_then(|r| r.in_ssrc().map(|i| (i, r.out_ssrc())));
    let about = toward_x.and_then(|r| r.in_ssrc().map(|i| (r.out_ssrc(), i)));
    map_ssrcs(buf, |field, v| {
        let pair = match field {
            SsrcField::Sender
            | SsrcField::SdesChunk
            | SsrcField::ByeSource
            | SsrcField::FeedbackSender => own,
            SsrcField::ReportSource | SsrcField::FeedbackMedia => about,
        };
        match pair {
            Some((from, to)) if from == v => to,
            _ => v,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 12-byte RTP header + 4 bytes payload.
    fn rtp(ssrc: u32, seq: u16, ts: u32, marker: bool) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = 0x80;
        b[1] = if marker { 0x80 } else { 0 };
        b[2..4].copy_from_slice(&seq.to_be_bytes());
        b[4..8].copy_from_slice(&ts.to_be_bytes());
        b[8..12].copy_from_slice(&ssrc.to_be_bytes());
        b
    }

    /// Runs one packet through `r`, returning (ssrc, seq, ts) out.
    fn send(r: &mut SsrcRewriter, ssrc: u32, seq: u16, ts: u32) -> (u32, u16, u32) {
        send_m(r, ssrc, seq, ts, false)
    }

    fn send_m(r: &mut SsrcRewriter, ssrc: u32, seq: u16, ts: u32, m: bool) -> (u32, u16, u32) {
        let mut buf = rtp(ssrc, seq, ts, m);
        let mut p = RtpPacket::new_checked(&mut buf[..]).unwrap();
        r.rewrite_rtp(&mut p);
        assert_eq!(p.payload(), &[0, 0, 0, 0]);
        assert_eq!(p.marker(), m);
        (p.ssrc(), p.sequence_number(), p.timestamp())
    }

    const OUT: u32 = 0x0a0b_0c0d;

    #[test]
    fn first_packet_keeps_seq_and_ts() {
        let mut r = SsrcRewriter::new(OUT);
        assert_eq!(r.in_ssrc(), None);
        assert_eq!(send(&mut r, 1, 1000, 5000), (OUT, 1000, 5000));
        assert_eq!(r.in_ssrc(), Some(1));
        assert_eq!(r.out_ssrc(), OUT);
        assert_eq!(send(&mut r, 1, 1001, 5160), (OUT, 1001, 5160));
    }

    #[test]
    fn ssrc_change_continues_without_jump() {
        let mut r = SsrcRewriter::new(OUT);
        for i in 0..5u16 {
            send(&mut r, 1, 100 + i, 1000 + 160 * u32::from(i));
        }
        // Newest out: seq 104, ts 1640; step 160.
        assert_eq!(send(&mut r, 2, 40000, 123_456_789), (OUT, 105, 1800));
        assert_eq!(r.in_ssrc(), Some(2));
        assert_eq!(send(&mut r, 2, 40001, 123_456_949), (OUT, 106, 1960));
        assert_eq!(send(&mut r, 2, 40002, 123_457_109), (OUT, 107, 2120));
    }

    #[test]
    fn ssrc_change_across_wrap() {
        let mut r = SsrcRewriter::new(OUT);
        // Input wraps in both seq and ts within source 1.
        send(&mut r, 1, 0xfffe, u32::MAX - 319);
        send(&mut r, 1, 0xffff, u32::MAX - 159);
        assert_eq!(send(&mut r, 1, 0, 0), (OUT, 0, 0));
        // Output wraps across the switch itself: newest out is
        // (0xffff, u32::MAX - 239) with step 240.
        let mut r = SsrcRewriter::new(OUT);
        send(&mut r, 1, 0xfffe, u32::MAX - 479);
        send(&mut r, 1, 0xffff, u32::MAX - 239);
        assert_eq!(send(&mut r, 2, 7, 99), (OUT, 0, 0));
        assert_eq!(send(&mut r, 2, 8, 339), (OUT, 1, 240));
    }

    #[test]
    fn unknown_step_falls_back_to_160() {
        let mut r = SsrcRewriter::new(OUT);
        send(&mut r, 1, 10, 10_000);
        assert_eq!(send(&mut r, 2, 500, 7), (OUT, 11, 10_160));
    }

    #[test]
    fn step_ignores_repeats_and_markers() {
        // Video: several packets per frame share a timestamp.
        let mut r = SsrcRewriter::new(OUT);
        send(&mut r, 1, 1, 90_000);
        send(&mut r, 1, 2, 90_000);
        send(&mut r, 1, 3, 93_000);
        send(&mut r, 1, 4, 93_000);
        assert_eq!(send(&mut r, 2, 77, 5), (OUT, 5, 96_000));
        // Audio: a talkspurt start after silence does not teach its gap.
        let mut r = SsrcRewriter::new(OUT);
        send(&mut r, 1, 1, 0);
        send(&mut r, 1, 2, 160);
        send_m(&mut r, 1, 3, 16_160, true);
        assert_eq!(send(&mut r, 2, 9, 9), (OUT, 4, 16_320));
    }

    #[test]
    fn reordered_packets_keep_relative_order() {
        let mut r = SsrcRewriter::new(OUT);
        send(&mut r, 1, 100, 1000);
        send(&mut r, 2, 500, 50_000); // out 101, 1160
        assert_eq!(send(&mut r, 2, 502, 50_320), (OUT, 103, 1480));
        // Late packet of the same source: mapped with the same offsets...
        assert_eq!(send(&mut r, 2, 501, 50_160), (OUT, 102, 1320));
        // ...and it does not move the reference for the next switch.
        assert_eq!(send(&mut r, 3, 0, 0), (OUT, 104, 1640));
    }

    #[test]
    fn switching_back_never_jumps_back() {
        let mut r = SsrcRewriter::new(OUT);
        send(&mut r, 1, 100, 1000);
        send(&mut r, 1, 101, 1160);
        send(&mut r, 2, 9, 9);
        assert_eq!(send(&mut r, 1, 102, 1320), (OUT, 103, 1480));
    }

    #[test]
    fn state_round_trips_mid_stream() {
        assert_eq!(SsrcRewriter::new(OUT).to_state(), [0; 3]);
        assert_eq!(
            SsrcRewriter::from_state(OUT, [0; 3]),
            SsrcRewriter::new(OUT)
        );

        let mut r = SsrcRewriter::new(OUT);
        send(&mut r, 0xffff_fff1, 0xfff0, 4_000_000_000);
        send(&mut r, 0xffff_fff1, 0xfff1, 4_000_000_480);
        send(&mut r, 0x1234_5678, 3, 3); // switch: offsets non-trivial
        send(&mut r, 0x1234_5678, 4, 483);
        let state = r.to_state();
        let mut restored = SsrcRewriter::from_state(OUT, state);
        assert_eq!(restored, r);
        assert_eq!(restored.in_ssrc(), Some(0x1234_5678));
        // Both continue identically, through another switch too.
        for (ssrc, seq, ts) in [(0x1234_5678, 5, 963), (9, 1, 1), (9, 2, 481)] {
            assert_eq!(
                send(&mut restored, ssrc, seq, ts),
                send(&mut r, ssrc, seq, ts)
            );
        }
        assert_eq!(send(&mut restored, 9, 3, 961), (OUT, 0xfff7, 4_000_003_360));
    }

    // --- RTCP ---------------------------------------------------------

    /// Y's side: X sends RTP with SSRC `X_REAL`, Y sees `X_OUT`; Y sends
    /// `Y_REAL`, X sees `Y_OUT`.
    const X_REAL: u32 = 0x1111_1111;
    const X_OUT: u32 = 0x2222_2222;
    const Y_REAL: u32 = 0x3333_3333;
    const Y_OUT: u32 = 0x4444_4444;
    const OTHER: u32 = 0x5555_5555;

    fn rewriters() -> (SsrcRewriter, SsrcRewriter) {
        let mut toward_y = SsrcRewriter::new(X_OUT);
        send(&mut toward_y, X_REAL, 1, 1);
        let mut toward_x = SsrcRewriter::new(Y_OUT);
        send(&mut toward_x, Y_REAL, 1, 1);
        (toward_y, toward_x)
    }

    fn word(buf: &[u8], off: usize) -> u32 {
        u32::from_be_bytes(buf[off..off + 4].try_into().unwrap())
    }

    fn packet(count: u8, pt: u8, words: &[u32]) -> Vec<u8> {
        let len = (words.len() as u16).to_be_bytes();
        let mut v = vec![0x80 | count, pt, len[0], len[1]];
        for w in words {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }

    /// A report block about `src`; the rest of the block is junk.
    fn block(src: u32) -> [u32; 6] {
        [src, 7, 7, 7, 7, 7]
    }

    #[test]
    fn rtcp_sr_and_rr_mapped() {
        let (ty, tx) = rewriters();
        let mut w = vec![X_REAL, 1, 2, 3, 4, 5];
        w.extend(block(Y_OUT));
        w.extend(block(OTHER));
        let mut buf = packet(2, 200, &w);
        let mut rr = vec![X_REAL];
        rr.extend(block(Y_OUT));
        buf.extend(packet(1, 201, &rr));
        map_rtcp(&mut buf, Some(&ty), Some(&tx)).unwrap();
        assert_eq!(word(&buf, 4), X_OUT); // SR sender
        assert_eq!(word(&buf, 28), Y_REAL); // report block mapped back
        assert_eq!(word(&buf, 52), OTHER); // unrelated: untouched
        assert_eq!(word(&buf, 8), 1); // sender info untouched
        assert_eq!(word(&buf, 80), X_OUT); // RR sender
        assert_eq!(word(&buf, 84), Y_REAL); // RR block
    }

    #[test]
    fn rtcp_sdes_and_bye_mapped() {
        let (ty, tx) = rewriters();
        // SDES: chunk X_REAL with CNAME "ab", chunk OTHER with no items.
        let mut buf = packet(2, 202, &[X_REAL, 0x0102_6162, 0, OTHER, 0]);
        let bye_at = buf.len();
        buf.extend(packet(2, 203, &[X_REAL, OTHER]));
        map_rtcp(&mut buf, Some(&ty), Some(&tx)).unwrap();
        assert_eq!(word(&buf, 4), X_OUT);
        assert_eq!(word(&buf, 8), 0x0102_6162);
        assert_eq!(word(&buf, 16), OTHER);
        assert_eq!(word(&buf, bye_at + 4), X_OUT);
        assert_eq!(word(&buf, bye_at + 8), OTHER);
    }

    #[test]
    fn rtcp_pli_and_nack_media_mapped_back() {
        let (ty, tx) = rewriters();
        let mut buf = packet(1, 206, &[X_REAL, Y_OUT]);
        buf.extend(packet(1, 205, &[X_REAL, Y_OUT, 0x0010_0000]));
        map_rtcp(&mut buf, Some(&ty), Some(&tx)).unwrap();
        assert_eq!(word(&buf, 4), X_OUT);
        assert_eq!(word(&buf, 8), Y_REAL);
        assert_eq!(word(&buf, 16), X_OUT);
        assert_eq!(word(&buf, 20), Y_REAL);
        assert_eq!(word(&buf, 24), 0x0010_0000);
    }

    #[test]
    fn rtcp_identity_without_rewriters_or_packets() {
        let orig = packet(1, 206, &[X_REAL, Y_OUT]);
        let mut buf = orig.clone();
        map_rtcp(&mut buf, None, None).unwrap();
        assert_eq!(buf, orig);
        // Rewriters that saw no RTP yet map nothing either.
        let (ny, nx) = (SsrcRewriter::new(X_OUT), SsrcRewriter::new(Y_OUT));
        map_rtcp(&mut buf, Some(&ny), Some(&nx)).unwrap();
        assert_eq!(buf, orig);
    }

    #[test]
    fn rtcp_error_leaves_buffer_unchanged() {
        let (ty, tx) = rewriters();
        let mut buf = packet(0, 201, &[X_REAL]);
        buf.extend(packet(1, 201, &[X_REAL])); // RC=1, block missing
        let orig = buf.clone();
        assert!(map_rtcp(&mut buf, Some(&ty), Some(&tx)).is_err());
        assert_eq!(buf, orig);
    }
}
