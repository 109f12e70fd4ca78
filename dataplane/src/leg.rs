//! Sans-IO forwarding decisions for one relay slot (two legs).
//!
//! A packet received on leg `L` from its peer is sent out of the other leg
//! `L'` to `L'`'s peer. [`Forwarder::on_packet`] decides, for one packet
//! already in memory, whether to forward it (and where) or to drop it (and
//! why); it rewrites the packet in place when SSRC rewriting is on. It does
//! no I/O and touches no shared memory: the worker applies the returned
//! [`Outcome`] to sockets and counters. That keeps every policy here unit
//! testable.
//!
//! Order of checks for a packet arriving on leg `L`:
//!
//! 1. source address, per leg `L`'s [`Learning`] policy
//!    ([`DropReason::Source`]);
//! 2. direction: leg `L` must accept from its peer and leg `L'` must send
//!    to its peer ([`DropReason::Direction`]);
//! 3. parsing: RTP header (RFC 3550 §5.1) and allowed payload types of leg
//!    `L`, or the RTCP compound packet (RFC 3550 §6.1)
//!    ([`DropReason::Malformed`]);
//! 4. destination: `L'`'s learned source (symmetric RTP), else its SDP
//!    address ([`DropReason::NoPeer`] when neither is known).

use std::net::{IpAddr, SocketAddr};

use tern_shared::rtp::RtpPacket;
use tern_shared::table::{DropReason, Learning, LegConfig, SlotConfig};

use crate::ssrc::{map_rtcp, SsrcRewriter};

/// Maps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to plain IPv4, so
/// that addresses seen on dual-stack sockets compare equal to SDP ones.
#[inline]
pub fn normalize(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

/// What a [`SourceFilter`] says about a packet's source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceVerdict {
    /// Accepted; nothing new was learned.
    Accept,
    /// Accepted, and the address was learned just now: persist it.
    Learned(SocketAddr),
    /// Not accepted by the policy (counted as [`DropReason::Source`]).
    Reject,
}

/// The source addresses one leg accepts for one kind of traffic (RTP, or
/// RTCP: each is learned separately).
///
/// The accepted source starts as the SDP address (`expected`); with none,
/// the first packet's source is learned whatever the policy. Then:
///
/// - [`Learning::LearnOnce`]: the first packet's source is learned, even if
///   it differs from the SDP (NAT); afterwards only it is accepted;
/// - [`Learning::Strict`]: only the SDP address is accepted;
/// - [`Learning::LearnAlways`]: every source is accepted and followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceFilter {
    expected: Option<SocketAddr>,
    learned: Option<SocketAddr>,
}

impl SourceFilter {
    /// A filter expecting `expected` (from SDP) that has already learned
    /// `learned` (restored from shared memory after a restart).
    pub fn new(expected: Option<SocketAddr>, learned: Option<SocketAddr>) -> SourceFilter {
        SourceFilter {
            expected: expected.map(normalize),
            learned: learned.map(normalize),
        }
    }

    /// The SDP address this filter started from.
    pub fn expected(&self) -> Option<SocketAddr> {
        self.expected
    }

    /// The address learned from packets, if any.
    pub fn learned(&self) -> Option<SocketAddr> {
        self.learned
    }

    /// Starts over from a new SDP address, forgetting what was learned.
    pub fn reset(&mut self, expected: Option<SocketAddr>) {
        self.expected = expected.map(normalize);
        self.learned = None;
    }

    /// Checks `src` (already [`normalize`]d) against `policy`, learning it
    /// when the policy allows.
    #[inline]
    pub fn check(&mut self, policy: Learning, src: SocketAddr) -> SourceVerdict {
        let once = |me: &mut SourceFilter| match me.learned {
            Some(a) if a == src => SourceVerdict::Accept,
            Some(_) => SourceVerdict::Reject,
            None => {
                me.learned = Some(src);
                SourceVerdict::Learned(src)
            }
        };
        match policy {
            Learning::LearnOnce => once(self),
            Learning::Strict => match self.expected {
                Some(e) if e == src => {
                    if self.learned == Some(src) {
                        SourceVerdict::Accept
                    } else {
                        self.learned = Some(src);
                        SourceVerdict::Learned(src)
                    }
                }
                Some(_) => SourceVerdict::Reject,
                None => once(self),
            },
            Learning::LearnAlways => {
                if self.learned == Some(src) {
                    SourceVerdict::Accept
                } else {
                    self.learned = Some(src);
                    SourceVerdict::Learned(src)
                }
            }
        }
    }
}

/// Per-leg state a restarted worker restores from the leg's shared-memory
/// counters, so a call resumes with the same peers and SSRC continuity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegRestore {
    /// Learned RTP source (`LegCounters::learned(false)`).
    pub learned_rtp: Option<SocketAddr>,
    /// Learned RTCP source (`LegCounters::learned(true)`).
    pub learned_rtcp: Option<SocketAddr>,
    /// SSRC mapping state of packets sent to this leg's peer
    /// (`LegCounters::ssrc_state()`); all zero means none.
    pub ssrc_state: [u64; 3],
}

/// Forwarding state of one leg.
#[derive(Debug, Clone, Copy)]
pub struct LegState {
    /// Accepted RTP sources of this leg's peer.
    pub rtp_src: SourceFilter,
    /// Accepted RTCP sources of this leg's peer.
    pub rtcp_src: SourceFilter,
    /// Rewriter of packets sent to this leg's peer (`rewrite_ssrc`).
    pub rewriter: Option<SsrcRewriter>,
}

/// The SDP address a leg's peer sends RTCP from and receives it on: the
/// configured `peer_rtcp`, else the RTP address (rtcp-mux) or its port + 1
/// (RFC 3550 §11).
pub fn sdp_rtcp_addr(cfg: &LegConfig) -> Option<SocketAddr> {
    if cfg.peer_rtcp.is_some() {
        return cfg.peer_rtcp;
    }
    let p = cfg.peer?;
    if cfg.rtcp_mux {
        Some(p)
    } else {
        Some(SocketAddr::new(p.ip(), p.port().wrapping_add(1)))
    }
}

impl LegState {
    fn new(cfg: &LegConfig, r: &LegRestore) -> LegState {
        LegState {
            rtp_src: SourceFilter::new(cfg.peer, r.learned_rtp),
            rtcp_src: SourceFilter::new(sdp_rtcp_addr(cfg), r.learned_rtcp),
            rewriter: cfg.rewrite_ssrc.then(|| {
                if r.ssrc_state == [0; 3] {
                    SsrcRewriter::new(cfg.out_ssrc)
                } else {
                    SsrcRewriter::from_state(cfg.out_ssrc, r.ssrc_state)
                }
            }),
        }
    }
}

/// Kind of traffic a packet is, by the port it arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// Arrived on the RTP port of a leg without rtcp-mux.
    Rtp,
    /// Arrived on the RTCP port.
    Rtcp,
    /// Arrived on the RTP port of a leg with rtcp-mux: RTCP if
    /// [`tern_shared::rtp::looks_like_rtcp`] (RFC 5761 §4), else RTP.
    Mux,
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (possibly rewritten) packet out of the other leg to `dest`;
    /// `rtcp` says whether it is RTCP (so it leaves from the other leg's
    /// RTCP socket, or its RTP socket with rtcp-mux).
    Forward {
        /// The other leg's peer address for this kind of traffic.
        dest: SocketAddr,
        /// Whether the packet is RTCP.
        rtcp: bool,
    },
    /// Drop it, counting `reason` on the receiving leg.
    Drop(DropReason),
}

/// The decision for one packet, plus state the worker must persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Forward or drop.
    pub verdict: Verdict,
    /// The packet was classified as RTCP (counts as `count_rtcp_rx`).
    pub rtcp: bool,
    /// A source address learned from this packet on the receiving leg (for
    /// RTP or RTCP as `rtcp` says): persist with `set_learned`.
    pub learned: Option<SocketAddr>,
    /// The rewriter toward the other leg changed state (an RTP packet was
    /// rewritten): persist the other leg's `ssrc_state`.
    pub ssrc_changed: bool,
}

impl Outcome {
    fn drop(reason: DropReason, rtcp: bool, learned: Option<SocketAddr>) -> Outcome {
        Outcome {
            verdict: Verdict::Drop(reason),
            rtcp,
            learned,
            ssrc_changed: false,
        }
    }
}

/// Which legs had their learned addresses reset by [`Forwarder::apply_config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConfigChange {
    /// Leg `i`'s RTP learning restarted from the new SDP address.
    pub reset_rtp: [bool; 2],
    /// Leg `i`'s RTCP learning restarted from the new SDP address.
    pub reset_rtcp: [bool; 2],
    /// Leg `i`'s rewriter was replaced or removed: persist its new state.
    pub ssrc_reset: [bool; 2],
}

/// Forwarding state of a slot: its configuration and both legs' state.
#[derive(Debug, Clone)]
pub struct Forwarder {
    cfg: SlotConfig,
    legs: [LegState; 2],
}

impl Forwarder {
    /// State for `cfg`, resuming from what each leg persisted (`restore`).
    pub fn new(cfg: SlotConfig, restore: [LegRestore; 2]) -> Forwarder {
        Forwarder {
            legs: [
                LegState::new(&cfg.legs[0], &restore[0]),
                LegState::new(&cfg.legs[1], &restore[1]),
            ],
            cfg,
        }
    }

    /// Latches leg `leg` to `addr`, the pair its ICE peer nominated (RFC
    /// 8445 §8.1.1) for the RTP component (`rtcp` false: media goes there,
    /// and with rtcp-mux RTCP too) or the RTCP component (component 2).
    pub fn latch(&mut self, leg: usize, addr: SocketAddr, rtcp: bool) {
        let l = leg & 1;
        let a = normalize(addr);
        let rtcp_filter = SourceFilter::new(sdp_rtcp_addr(&self.cfg.legs[l]), Some(a));
        if rtcp {
            self.legs[l].rtcp_src = rtcp_filter;
            return;
        }
        self.legs[l].rtp_src = SourceFilter::new(self.cfg.legs[l].peer, Some(a));
        if self.cfg.legs[l].rtcp_mux {
            self.legs[l].rtcp_src = rtcp_filter;
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &SlotConfig {
        &self.cfg
    }

    /// Leg `leg`'s state (0 or 1).
    pub fn leg(&self, leg: usize) -> &LegState {
        &self.legs[leg & 1]
    }

    /// Replaces the rewriter of packets sent to leg `leg`'s peer: a media
    /// play hands back the one its packets went through, so the peer's
    /// stream continues after them. Lasts until a configuration change
    /// of that leg's SSRC policy.
    pub fn set_rewriter(&mut self, leg: usize, rw: Option<SsrcRewriter>) {
        self.legs[leg & 1].rewriter = rw;
    }

    /// Takes a newly published configuration. A leg whose SDP peer changed
    /// restarts learning from the new address; a leg whose SSRC policy or
    /// `out_ssrc` changed gets a fresh rewriter (or none).
    pub fn apply_config(&mut self, new: SlotConfig) -> ConfigChange {
        let mut ch = ConfigChange::default();
        for i in 0..2 {
            let (old, cfg) = (self.cfg.legs[i], new.legs[i]);
            let st = &mut self.legs[i];
            if old.peer != cfg.peer {
                st.rtp_src.reset(cfg.peer);
                ch.reset_rtp[i] = true;
            }
            let (old_rtcp, new_rtcp) = (sdp_rtcp_addr(&old), sdp_rtcp_addr(&cfg));
            if old_rtcp != new_rtcp {
                st.rtcp_src.reset(new_rtcp);
                ch.reset_rtcp[i] = true;
            }
            let keep = cfg.rewrite_ssrc
                && old.rewrite_ssrc
                && old.out_ssrc == cfg.out_ssrc
                && st.rewriter.is_some();
            if !keep {
                let fresh = cfg.rewrite_ssrc.then(|| SsrcRewriter::new(cfg.out_ssrc));
                if fresh.is_some() || st.rewriter.is_some() {
                    ch.ssrc_reset[i] = true;
                }
                st.rewriter = fresh;
            }
        }
        self.cfg = new;
        ch
    }

    /// The address RTP for leg `leg`'s peer goes to: its learned RTP source
    /// (symmetric RTP), else its SDP address.
    pub fn rtp_dest(&self, leg: usize) -> Option<SocketAddr> {
        let l = leg & 1;
        self.legs[l].rtp_src.learned().or(self.cfg.legs[l].peer)
    }

    /// The address RTCP for leg `leg`'s peer goes to: its learned RTCP
    /// source, else the configured `peer_rtcp`, else (rtcp-mux) the RTP
    /// destination, else the SDP RTP port + 1.
    pub fn rtcp_dest(&self, leg: usize) -> Option<SocketAddr> {
        let l = leg & 1;
        let cfg = &self.cfg.legs[l];
        if let Some(a) = self.legs[l].rtcp_src.learned() {
            return Some(a);
        }
        if cfg.peer_rtcp.is_some() {
            return cfg.peer_rtcp;
        }
        if cfg.rtcp_mux {
            return self.rtp_dest(l);
        }
        sdp_rtcp_addr(cfg)
    }

    fn unlearn(&mut self, l: usize, rtcp: bool, saved: SourceFilter, r: DropReason) -> Outcome {
        if rtcp {
            self.legs[l].rtcp_src = saved;
        } else {
            self.legs[l].rtp_src = saved;
        }
        Outcome::drop(r, rtcp, None)
    }

    /// Decides what to do with `pkt` (the UDP payload), received on leg
    /// `from` (0 or 1) from `src` (any address form; it is [`normalize`]d).
    /// Rewrites `pkt` in place (RTP SSRC/sequence/timestamp, RTCP SSRCs)
    /// when the destination leg rewrites SSRCs. Never panics on any input.
    pub fn on_packet(
        &mut self,
        from: usize,
        src: SocketAddr,
        pkt: &mut [u8],
        kind: PacketKind,
    ) -> Outcome {
        let (l, o) = (from & 1, (from & 1) ^ 1);
        let src = normalize(src);
        let rtcp = match kind {
            PacketKind::Rtp => false,
            PacketKind::Rtcp => true,
            PacketKind::Mux => tern_shared::rtp::looks_like_rtcp(pkt),
        };
        let lcfg = self.cfg.legs[l];
        let ocfg = self.cfg.legs[o];
        // 1. Source.
        let filter = if rtcp {
            &mut self.legs[l].rtcp_src
        } else {
            &mut self.legs[l].rtp_src
        };
        // Nothing is learned from a packet dropped for its direction or its
        // contents: garbage must not lock a learn-once leg to its sender.
        let saved = *filter;
        let learned = match filter.check(lcfg.learning, src) {
            SourceVerdict::Accept => None,
            SourceVerdict::Learned(a) => Some(a),
            SourceVerdict::Reject => return Outcome::drop(DropReason::Source, rtcp, None),
        };
        // 2. Direction.
        if !lcfg.direction.accepts_from_peer() || !ocfg.direction.sends_to_peer() {
            return self.unlearn(l, rtcp, saved, DropReason::Direction);
        }
        // 3. Parse and rewrite.
        let mut ssrc_changed = false;
        if rtcp {
            let [a, b] = &self.legs;
            let (to_l, to_o) = if l == 0 { (a, b) } else { (b, a) };
            if map_rtcp(pkt, to_o.rewriter.as_ref(), to_l.rewriter.as_ref()).is_err() {
                return self.unlearn(l, rtcp, saved, DropReason::Malformed);
            }
        } else {
            let mut p = match RtpPacket::new_checked(&mut *pkt) {
                Ok(p) => p,
                Err(_) => return self.unlearn(l, rtcp, saved, DropReason::Malformed),
            };
            let pt = p.payload_type() & 0x7f;
            if lcfg.payload_types != 0 && lcfg.payload_types >> pt & 1 == 0 {
                return self.unlearn(l, rtcp, saved, DropReason::Malformed);
            }
            if let Some(rw) = self.legs[o].rewriter.as_mut() {
                rw.rewrite_rtp(&mut p);
                ssrc_changed = true;
            }
        }
        // 4. Destination.
        let dest = if rtcp {
            self.rtcp_dest(o)
        } else {
            self.rtp_dest(o)
        };
        match dest {
            Some(dest) => Outcome {
                verdict: Verdict::Forward { dest, rtcp },
                rtcp,
                learned,
                ssrc_changed,
            },
            None => Outcome {
                verdict: Verdict::Drop(DropReason::NoPeer),
                rtcp,
                learned,
                ssrc_changed,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_shared::table::Direction;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn rtp(seq: u16, ssrc: u32, pt: u8) -> Vec<u8> {
        let mut v = vec![0x80, pt, 0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 1, 2, 3, 4];
        v[2..4].copy_from_slice(&seq.to_be_bytes());
        v[8..12].copy_from_slice(&ssrc.to_be_bytes());
        v
    }

    /// An RTCP receiver report with no report blocks (RFC 3550 §6.4.2).
    fn rr(ssrc: u32) -> Vec<u8> {
        let mut v = vec![0x80, 201, 0, 1, 0, 0, 0, 0];
        v[4..8].copy_from_slice(&ssrc.to_be_bytes());
        v
    }

    fn cfg(learning: Learning) -> SlotConfig {
        let mut c = SlotConfig::default();
        c.legs[0].peer = Some(a("10.0.0.1:4000"));
        c.legs[1].peer = Some(a("10.0.0.2:5000"));
        c.legs[0].learning = learning;
        c.legs[1].learning = learning;
        c
    }

    #[test]
    fn learn_once_learns_first_then_locks() {
        let mut f = SourceFilter::new(Some(a("10.0.0.1:4000")), None);
        // NAT: the first source differs from the SDP one and is learned.
        assert_eq!(
            f.check(Learning::LearnOnce, a("1.2.3.4:999")),
            SourceVerdict::Learned(a("1.2.3.4:999"))
        );
        assert_eq!(
            f.check(Learning::LearnOnce, a("1.2.3.4:999")),
            SourceVerdict::Accept
        );
        // RTP bleed: a later source is refused, even the SDP one.
        assert_eq!(
            f.check(Learning::LearnOnce, a("10.0.0.1:4000")),
            SourceVerdict::Reject
        );
        f.reset(Some(a("10.0.0.9:4000")));
        assert_eq!(f.learned(), None);
        assert_eq!(
            f.check(Learning::LearnOnce, a("10.0.0.9:4000")),
            SourceVerdict::Learned(a("10.0.0.9:4000"))
        );
    }

    #[test]
    fn strict_accepts_only_sdp() {
        let mut f = SourceFilter::new(Some(a("10.0.0.1:4000")), None);
        assert_eq!(
            f.check(Learning::Strict, a("1.2.3.4:999")),
            SourceVerdict::Reject
        );
        assert!(matches!(
            f.check(Learning::Strict, a("10.0.0.1:4000")),
            SourceVerdict::Learned(_)
        ));
        assert_eq!(
            f.check(Learning::Strict, a("10.0.0.1:4000")),
            SourceVerdict::Accept
        );
        // Without an SDP address, strict learns the first source.
        let mut g = SourceFilter::new(None, None);
        assert!(matches!(
            g.check(Learning::Strict, a("1.2.3.4:5")),
            SourceVerdict::Learned(_)
        ));
        assert_eq!(
            g.check(Learning::Strict, a("1.2.3.4:6")),
            SourceVerdict::Reject
        );
    }

    #[test]
    fn learn_always_follows() {
        let mut f = SourceFilter::new(Some(a("10.0.0.1:4000")), None);
        for s in ["1.1.1.1:1", "1.1.1.1:1", "2.2.2.2:2"] {
            assert_ne!(f.check(Learning::LearnAlways, a(s)), SourceVerdict::Reject);
            assert_eq!(f.learned(), Some(a(s)));
        }
    }

    #[test]
    fn restored_learning_survives() {
        let mut f = SourceFilter::new(Some(a("10.0.0.1:4000")), Some(a("1.2.3.4:999")));
        assert_eq!(
            f.check(Learning::LearnOnce, a("1.2.3.4:999")),
            SourceVerdict::Accept
        );
        assert_eq!(
            f.check(Learning::LearnOnce, a("10.0.0.1:4000")),
            SourceVerdict::Reject
        );
    }

    #[test]
    fn v4_mapped_sources_compare_equal() {
        let mut f = SourceFilter::new(Some(a("10.0.0.1:4000")), None);
        assert!(matches!(
            f.check(Learning::Strict, normalize(a("[::ffff:10.0.0.1]:4000"))),
            SourceVerdict::Learned(_)
        ));
    }

    #[test]
    fn forwards_rtp_to_other_leg_and_learns() {
        let mut f = Forwarder::new(cfg(Learning::LearnOnce), Default::default());
        let mut p = rtp(1, 7, 0);
        let o = f.on_packet(0, a("10.0.0.1:4000"), &mut p, PacketKind::Rtp);
        assert_eq!(
            o.verdict,
            Verdict::Forward {
                dest: a("10.0.0.2:5000"),
                rtcp: false
            }
        );
        assert_eq!(o.learned, Some(a("10.0.0.1:4000")));
        assert!(!o.ssrc_changed);
        assert_eq!(p, rtp(1, 7, 0), "no rewriting configured");
        // Symmetric RTP: leg 1's peer behind NAT is learned and used.
        let mut p = rtp(1, 8, 0);
        let o = f.on_packet(1, a("9.9.9.9:7000"), &mut p, PacketKind::Rtp);
        assert_eq!(o.learned, Some(a("9.9.9.9:7000")));
        let mut p = rtp(2, 7, 0);
        let o = f.on_packet(0, a("10.0.0.1:4000"), &mut p, PacketKind::Rtp);
        assert_eq!(
            o.verdict,
            Verdict::Forward {
                dest: a("9.9.9.9:7000"),
                rtcp: false
            }
        );
        assert_eq!(o.learned, None);
        // A third party is refused on leg 0.
        let o = f.on_packet(0, a("6.6.6.6:1"), &mut rtp(3, 7, 0), PacketKind::Rtp);
        assert_eq!(o.verdict, Verdict::Drop(DropReason::Source));
    }

    #[test]
    fn direction_drops() {
        let mut c = cfg(Learning::LearnOnce);
        c.legs[0].direction = Direction::SendOnly; // relay only sends to A
        let mut f = Forwarder::new(c, Default::default());
        let o = f.on_packet(0, a("10.0.0.1:4000"), &mut rtp(1, 7, 0), PacketKind::Rtp);
        assert_eq!(o.verdict, Verdict::Drop(DropReason::Direction));
        // B -> A is fine: A's leg sends to its peer.
        let o = f.on_packet(1, a("10.0.0.2:5000"), &mut rtp(1, 8, 0), PacketKind::Rtp);
        assert!(matches!(o.verdict, Verdict::Forward { .. }));
        c.legs[0].direction = Direction::RecvOnly; // relay sends nothing to A
        f.apply_config(c);
        let o = f.on_packet(1, a("10.0.0.2:5000"), &mut rtp(2, 8, 0), PacketKind::Rtp);
        assert_eq!(o.verdict, Verdict::Drop(DropReason::Direction));
        c.legs[0].direction = Direction::Inactive;
        f.apply_config(c);
        for leg in 0..2 {
            let src = f.config().legs[leg].peer.unwrap();
            let o = f.on_packet(leg, src, &mut rtp(3, 8, 0), PacketKind::Rtp);
            assert_eq!(o.verdict, Verdict::Drop(DropReason::Direction));
        }
    }

    #[test]
    fn malformed_and_payload_types() {
        let mut c = cfg(Learning::LearnOnce);
        c.legs[0].payload_types = 1 << 0 | 1 << 101;
        let mut f = Forwarder::new(c, Default::default());
        let src = a("10.0.0.1:4000");
        for bad in [&[0x80u8, 0, 1][..], &[0x40; 20][..], &[][..]] {
            let mut b = bad.to_vec();
            let o = f.on_packet(0, src, &mut b, PacketKind::Rtp);
            assert_eq!(o.verdict, Verdict::Drop(DropReason::Malformed));
        }
        let o = f.on_packet(0, src, &mut rtp(1, 7, 8), PacketKind::Rtp);
        assert_eq!(o.verdict, Verdict::Drop(DropReason::Malformed));
        let o = f.on_packet(0, src, &mut rtp(1, 7, 101), PacketKind::Rtp);
        assert!(matches!(o.verdict, Verdict::Forward { .. }));
        let o = f.on_packet(0, src, &mut rtp(1, 7, 0x80 | 101), PacketKind::Rtp);
        assert!(matches!(o.verdict, Verdict::Forward { .. }), "marker bit");
    }

    #[test]
    fn rejected_contents_teach_nothing() {
        let mut f = Forwarder::new(cfg(Learning::LearnOnce), Default::default());
        // Garbage from an attacker first: dropped, and not learned...
        let o = f.on_packet(0, a("6.6.6.6:1"), &mut [0u8; 3], PacketKind::Rtp);
        assert_eq!(o.verdict, Verdict::Drop(DropReason::Malformed));
        assert_eq!((o.learned, f.leg(0).rtp_src.learned()), (None, None));
        // ...so the real peer's first valid packet is.
        let o = f.on_packet(0, a("10.0.0.1:4000"), &mut rtp(1, 7, 0), PacketKind::Rtp);
        assert_eq!(o.learned, Some(a("10.0.0.1:4000")));
    }

    #[test]
    fn no_peer_drops() {
        let mut c = cfg(Learning::LearnOnce);
        c.legs[1].peer = None;
        let mut f = Forwarder::new(c, Default::default());
        let o = f.on_packet(0, a("10.0.0.1:4000"), &mut rtp(1, 7, 0), PacketKind::Rtp);
        assert_eq!(o.verdict, Verdict::Drop(DropReason::NoPeer));
        // Once B sends, it is learned and A's media flows to it.
        let o = f.on_packet(1, a("10.0.0.2:5000"), &mut rtp(1, 8, 0), PacketKind::Rtp);
        assert_eq!(
            o.verdict,
            Verdict::Forward {
                dest: a("10.0.0.1:4000"),
                rtcp: false
            }
        );
        let o = f.on_packet(0, a("10.0.0.1:4000"), &mut rtp(2, 7, 0), PacketKind::Rtp);
        assert_eq!(
            o.verdict,
            Verdict::Forward {
                dest: a("10.0.0.2:5000"),
                rtcp: false
            }
        );
    }

    #[test]
    fn rtcp_destinations_and_separate_learning() {
        let mut c = cfg(Learning::LearnOnce);
        c.legs[1].peer_rtcp = Some(a("10.0.0.2:6001"));
        let mut f = Forwarder::new(c, Default::default());
        assert_eq!(f.rtcp_dest(0), Some(a("10.0.0.1:4001")));
        assert_eq!(f.rtcp_dest(1), Some(a("10.0.0.2:6001")));
        let o = f.on_packet(0, a("10.0.0.1:4001"), &mut rr(7), PacketKind::Rtcp);
        assert_eq!(
            o.verdict,
            Verdict::Forward {
                dest: a("10.0.0.2:6001"),
                rtcp: true
            }
        );
        assert!(o.rtcp);
        assert_eq!(o.learned, Some(a("10.0.0.1:4001")));
        // RTP learning is independent of RTCP learning.
        assert_eq!(f.leg(0).rtp_src.learned(), None);
        // rtcp-mux: RTCP recognised on the RTP port, sent to the RTP peer.
        c.legs[0].rtcp_mux = true;
        c.legs[1].rtcp_mux = true;
        c.legs[1].peer_rtcp = None;
        let mut f = Forwarder::new(c, Default::default());
        let o = f.on_packet(0, a("10.0.0.1:4000"), &mut rr(7), PacketKind::Mux);
        assert_eq!(
            o.verdict,
            Verdict::Forward {
                dest: a("10.0.0.2:5000"),
                rtcp: true
            }
        );
        let o = f.on_packet(0, a("10.0.0.1:4000"), &mut rtp(1, 7, 0), PacketKind::Mux);
        assert_eq!(
            o.verdict,
            Verdict::Forward {
                dest: a("10.0.0.2:5000"),
                rtcp: false
            }
        );
        let o = f.on_packet(
            0,
            a("10.0.0.1:4000"),
            &mut [0x80, 200, 0, 9],
            PacketKind::Mux,
        );
        assert_eq!(o.verdict, Verdict::Drop(DropReason::Malformed));
    }

    #[test]
    fn rewrites_toward_rewriting_leg_and_resets_on_change() {
        let mut c = cfg(Learning::LearnOnce);
        c.legs[1].rewrite_ssrc = true;
        c.legs[1].out_ssrc = 0xB0B0_B0B0;
        let mut f = Forwarder::new(c, Default::default());
        let mut p = rtp(10, 7, 0);
        let o = f.on_packet(0, a("10.0.0.1:4000"), &mut p, PacketKind::Rtp);
        assert!(o.ssrc_changed);
        assert_eq!(&p[8..12], &0xB0B0_B0B0u32.to_be_bytes());
        // Toward leg 0 nothing is rewritten.
        let mut p = rtp(10, 8, 0);
        let o = f.on_packet(1, a("10.0.0.2:5000"), &mut p, PacketKind::Rtp);
        assert!(!o.ssrc_changed);
        assert_eq!(&p[8..12], &8u32.to_be_bytes());
        // Same out_ssrc: rewriter kept; new out_ssrc: replaced; off: removed.
        assert_eq!(f.apply_config(c).ssrc_reset, [false, false]);
        c.legs[1].out_ssrc = 1;
        assert_eq!(f.apply_config(c).ssrc_reset, [false, true]);
        assert_eq!(f.leg(1).rewriter.map(|r| r.out_ssrc()), Some(1));
        c.legs[1].rewrite_ssrc = false;
        assert_eq!(f.apply_config(c).ssrc_reset, [false, true]);
        assert!(f.leg(1).rewriter.is_none());
    }

    /// RFC 4733 §2.1: telephone-event packets share the audio's SSRC,
    /// sequence space and timestamp clock, so the rewriter maps them with
    /// the same offsets: one outgoing SSRC, no sequence gap, event
    /// timestamps on the audio's outgoing timeline.
    #[test]
    fn telephone_events_follow_the_audio_mapping() {
        let mut c = cfg(Learning::LearnOnce);
        c.legs[1].rewrite_ssrc = true;
        c.legs[1].out_ssrc = 0xB0B0_B0B0;
        c.legs[0].dtmf_pt = Some(101);
        let mut f = Forwarder::new(c, Default::default());
        let src = a("10.0.0.1:4000");
        let mut out = Vec::new();
        // Audio 10..=12, an event 13..=15 (one timestamp, the audio's next),
        // audio again from 16.
        for (seq, pt, ts) in [
            (10u16, 0u8, 1600u32),
            (11, 0, 1760),
            (12, 0, 1920),
            (13, 101, 2080),
            (14, 101, 2080),
            (15, 101, 2080),
            (16, 0, 2560),
        ] {
            let mut p = rtp(seq, 7, pt);
            p[4..8].copy_from_slice(&ts.to_be_bytes());
            let o = f.on_packet(0, src, &mut p, PacketKind::Rtp);
            assert!(matches!(o.verdict, Verdict::Forward { .. }));
            let v = RtpPacket::new_checked(&p[..]).unwrap();
            out.push((
                v.ssrc(),
                v.sequence_number(),
                v.timestamp(),
                v.payload_type(),
            ));
        }
        assert!(out.iter().all(|o| o.0 == 0xB0B0_B0B0));
        for w in out.windows(2) {
            assert_eq!(w[1].1, w[0].1.wrapping_add(1), "no sequence gap");
        }
        let off = out[0].2.wrapping_sub(1600);
        for (i, ts) in [1600u32, 1760, 1920, 2080, 2080, 2080, 2560]
            .iter()
            .enumerate()
        {
            assert_eq!(out[i].2, ts.wrapping_add(off), "packet {i}: same offset");
        }
        assert_eq!(out[3].3, 101, "payload type kept");
    }

    #[test]
    fn new_sdp_peer_resets_learning() {
        let c = cfg(Learning::LearnOnce);
        let mut f = Forwarder::new(c, Default::default());
        f.on_packet(0, a("1.2.3.4:5"), &mut rtp(1, 7, 0), PacketKind::Rtp);
        assert_eq!(f.leg(0).rtp_src.learned(), Some(a("1.2.3.4:5")));
        let mut c2 = c;
        c2.legs[0].peer = Some(a("10.0.0.7:4000"));
        let ch = f.apply_config(c2);
        assert_eq!(ch.reset_rtp, [true, false]);
        assert_eq!(ch.reset_rtcp, [true, false]);
        assert_eq!(f.leg(0).rtp_src.learned(), None);
        assert_eq!(f.rtp_dest(0), Some(a("10.0.0.7:4000")));
    }

    #[test]
    fn restore_resumes_learned_peers() {
        let restore = [
            LegRestore {
                learned_rtp: Some(a("1.2.3.4:5")),
                ..Default::default()
            },
            LegRestore::default(),
        ];
        let mut f = Forwarder::new(cfg(Learning::LearnOnce), restore);
        assert_eq!(f.rtp_dest(0), Some(a("1.2.3.4:5")));
        let o = f.on_packet(0, a("10.0.0.1:4000"), &mut rtp(1, 7, 0), PacketKind::Rtp);
        assert_eq!(o.verdict, Verdict::Drop(DropReason::Source));
    }
}
