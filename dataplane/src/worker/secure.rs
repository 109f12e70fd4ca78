//! The secure stages of a slot's legs: SRTP/SRTCP unprotect and protect
//! (RFC 3711, 6188, 7714) and the ICE-lite responder (RFC 8445 §2.5, RFC
//! 7675 consent), built from the leg's [`LegSecurity`] when the slot is
//! (re)configured. A plain slot has none of this (`SlotRt::sec` is `None`)
//! and pays nothing for it.
//!
//! Keys come from SDES (programmed in the slot) or from a DTLS handshake
//! (exported into the slot by the worker, [`SlotTable::dtls_keying`]). The
//! SRTP stream state is persisted into the leg's counter words as packets
//! pass, so a restarted worker resumes with the same rollover counters.

use std::net::SocketAddr;
use std::time::Instant;

use tern_secure::ice::{Credentials, IceDrop, IceLite, Outcome};
use tern_secure::srtp::{Context, SrtpError, StreamState, Suite};
use tern_shared::table::{
    DropReason, DtlsParams, DtlsRole, IceParams, LegCounters, LegSecurity, SlotConfig, SlotTable,
    SrtpDirection, SrtpKeying, SrtpStreamState,
};

use crate::dtls::{FromTask, LegKey, ToTask};
use tracing::{debug, warn};

/// One leg's secure state.
#[derive(Default)]
pub(super) struct LegSecure {
    /// What was applied, so a re-offer that changes nothing keeps the
    /// contexts (and their rollover counters).
    applied: LegSecurity,
    /// Unprotects what the leg's peer sends.
    pub(super) rx: Option<Box<Context>>,
    /// Protects what the relay sends to the leg's peer.
    pub(super) tx: Option<Box<Context>>,
    /// SRTCP of the leg's RTCP component when that component (its own
    /// port, no rtcp-mux) ran a DTLS association of its own (RFC 5764
    /// §4.1): (unprotect, protect). Without one, SRTCP uses `rx`/`tx`.
    pub(super) rtcp: Option<(Box<Context>, Box<Context>)>,
    pub(super) ice: Option<IceLite>,
    /// The leg is DTLS-SRTP and its handshake has not given keys yet:
    /// media is dropped until it has.
    pub(super) awaiting_dtls: bool,
    /// An active (client) handshake on an ICE leg waits for the peer to
    /// nominate a pair: a ClientHello sent before goes to an address the
    /// peer may not read yet (a browser drops DTLS before ICE connects),
    /// and the handshake would then wait a whole retransmission (1 s).
    /// (the parameters, and whether the RTCP component has its own).
    pub(super) deferred: Option<(DtlsParams, bool)>,
}

impl LegSecure {
    /// Whether the leg is DTLS-SRTP (its DTLS records go to the task).
    pub(super) fn dtls_on(&self) -> bool {
        self.applied.dtls.is_some()
    }

    /// The context that unprotects what came in on the RTCP socket
    /// (`rtcp_sock`) or the RTP one.
    #[inline]
    pub(super) fn rx_for(&mut self, rtcp_sock: bool) -> Option<&mut Context> {
        match &mut self.rtcp {
            Some((rx, _)) if rtcp_sock => Some(rx),
            _ => self.rx.as_deref_mut(),
        }
    }

    /// The context that protects what goes out of the RTCP socket
    /// (`rtcp_sock`) or the RTP one.
    #[inline]
    pub(super) fn tx_for(&mut self, rtcp_sock: bool) -> Option<&mut Context> {
        match &mut self.rtcp {
            Some((_, tx)) if rtcp_sock => Some(tx),
            _ => self.tx.as_deref_mut(),
        }
    }
}

/// Both legs of a slot.
#[derive(Default)]
pub(super) struct SlotSecure {
    pub(super) legs: [LegSecure; 2],
}

/// Whether `sec` of either leg needs the secure stages.
pub(super) fn needed(sec: &[LegSecurity; 2]) -> bool {
    sec.iter().any(|s| !s.is_plain())
}

/// The SRTP keying a leg uses now: the DTLS handshake's when the leg is
/// DTLS-SRTP (none until it completes), else SDES's.
fn keying(
    table: &SlotTable,
    id: u32,
    leg: usize,
    sec: &LegSecurity,
) -> (Option<SrtpKeying>, Option<SrtpKeying>) {
    if sec.dtls.is_some() {
        match table.dtls_keying(id, leg) {
            Some((rx, tx)) => (Some(rx), Some(tx)),
            None => (None, None),
        }
    } else {
        (sec.rx, sec.tx)
    }
}

/// A context for `k`, resuming the persisted stream `resume`.
fn context(k: &SrtpKeying, resume: Option<SrtpStreamState>) -> Option<Box<Context>> {
    let suite = Suite::from_u8(k.suite)?;
    let (key, salt) = k
        .key_salt()
        .split_at(suite.key_len().min(k.key_salt().len()));
    match Context::new(suite, key, salt) {
        Ok(mut c) => {
            if let Some(s) = resume {
                c.restore(StreamState {
                    ssrc: s.ssrc,
                    roc: s.roc,
                    seq: s.seq,
                    srtcp_index: s.srtcp_index,
                });
            }
            Some(Box::new(c))
        }
        Err(e) => {
            warn!("SRTP context refused: {e}");
            None
        }
    }
}

/// Fills the peer's password, which a lite agent never uses.
const UNKNOWN_REMOTE_PWD: &str = "remote+password+unknown";

fn credentials(p: &IceParams) -> Option<(Credentials, Option<Credentials>)> {
    let local = Credentials::new(p.local_ufrag.as_str(), p.local_pwd.as_str()).ok()?;
    // A lite agent checks only the peer's ufrag; its password is not
    // needed (checks are signed with ours), so a placeholder fills it. It
    // must be valid ice-chars (RFC 8445 §5.3): with a '-' in it every
    // remote ufrag was refused, so checks naming any remote ufrag passed,
    // and a browser's ICE-restart checks (its new ufrag with our old one,
    // sent before our answer) nominated a pair the restart then voided.
    let remote = p
        .remote_ufrag
        .and_then(|u| Credentials::new(u.as_str(), UNKNOWN_REMOTE_PWD).ok());
    Some((local, remote))
}

impl SlotSecure {
    /// Brings leg `leg` in line with `sec`. `resume`: the slot was found
    /// active (a restarted worker), so the contexts continue from the
    /// persisted stream state; otherwise a changed key starts afresh.
    pub(super) fn apply(
        &mut self,
        table: &SlotTable,
        id: u32,
        leg: usize,
        sec: &LegSecurity,
        resume: bool,
    ) {
        let st = &mut self.legs[leg & 1];
        let Ok(c) = table.counters(id, leg) else {
            return;
        };
        let (old_rx, old_tx) = keying(table, id, leg, &st.applied);
        let (rx, tx) = keying(table, id, leg, sec);
        // A changed key re-keys (RFC 4568 §7.1.4: a new a=crypto); an
        // unchanged one keeps the context and its rollover counters.
        if resume || rx != old_rx || st.rx.is_none() != rx.is_none() {
            let resume_rx = if resume {
                c.srtp_state(SrtpDirection::Rx)
            } else {
                None
            };
            st.rx = rx.as_ref().and_then(|k| context(k, resume_rx));
        }
        if resume || tx != old_tx || st.tx.is_none() != tx.is_none() {
            let resume_tx = if resume {
                c.srtp_state(SrtpDirection::Tx)
            } else {
                None
            };
            st.tx = tx.as_ref().and_then(|k| context(k, resume_tx));
        }
        st.awaiting_dtls = sec.dtls.is_some() && st.rx.is_none();
        match (&sec.ice, &mut st.ice) {
            (None, ice) => *ice = None,
            (Some(p), ice) => {
                let changed = st.applied.ice.map(|o| o.local_ufrag) != Some(p.local_ufrag)
                    || st.applied.ice.map(|o| o.remote_ufrag) != Some(p.remote_ufrag);
                if let Some((local, remote)) = credentials(p) {
                    match ice {
                        Some(a) if changed => a.restart(local, remote),
                        Some(_) => {}
                        None => {
                            let mut a = IceLite::new(local);
                            a.set_remote(remote);
                            *ice = Some(a);
                        }
                    }
                } else {
                    warn!(slot = id, leg, "ICE credentials refused");
                    *ice = None;
                }
            }
        }
        if st.applied != *sec {
            debug!(slot = id, leg, ?sec, "secure leg applied");
        }
        st.applied = *sec;
    }

    /// The keys of leg `leg`'s DTLS handshake on `component` (0 RTP, 1
    /// RTCP) arrived: (unprotect, protect).
    pub(super) fn dtls_keys(
        &mut self,
        leg: usize,
        component: u8,
        rx: &SrtpKeying,
        tx: &SrtpKeying,
    ) {
        let st = &mut self.legs[leg & 1];
        if component == 1 {
            st.rtcp = context(rx, None).zip(context(tx, None));
            return;
        }
        st.rx = context(rx, None);
        st.tx = context(tx, None);
        st.awaiting_dtls = st.rx.is_none();
    }
}

/// Why SRTP refused a packet, as a drop reason.
pub(super) fn srtp_drop(e: SrtpError) -> DropReason {
    match e {
        SrtpError::AuthFailed => DropReason::SrtpAuth,
        SrtpError::Replayed | SrtpError::TooOld => DropReason::SrtpReplay,
        _ => DropReason::SrtpMalformed,
    }
}

/// Unprotects `buf[..len]` in place with `ctx`; the plain length, or the
/// reason to drop it. The stream's state is persisted into `c`.
#[inline]
pub(super) fn unprotect(
    ctx: &mut Context,
    buf: &mut [u8],
    len: usize,
    rtcp: bool,
    c: &LegCounters,
) -> Result<usize, DropReason> {
    let pkt = buf.get_mut(..len).ok_or(DropReason::SrtpMalformed)?;
    let n = if rtcp {
        ctx.unprotect_rtcp(pkt)
    } else {
        ctx.unprotect_rtp(pkt)
    }
    .map_err(srtp_drop)?;
    persist(ctx, pkt, rtcp, SrtpDirection::Rx, c);
    Ok(n)
}

/// Protects `buf[..len]` in place (the tag goes after it, so `buf` must
/// have room); the protected length, or the reason to drop it.
#[inline]
pub(super) fn protect(
    ctx: &mut Context,
    buf: &mut [u8],
    len: usize,
    rtcp: bool,
    c: &LegCounters,
) -> Result<usize, DropReason> {
    let n = if rtcp {
        ctx.protect_rtcp(buf, len)
    } else {
        ctx.protect_rtp(buf, len)
    }
    .map_err(srtp_drop)?;
    persist(ctx, buf, rtcp, SrtpDirection::Tx, c);
    Ok(n)
}

/// Writes the state of the stream `pkt` belongs to (its SSRC at bytes
/// 8..12 of RTP, 4..8 of RTCP) into the leg's counter words: two relaxed
/// stores on a line the worker already writes.
#[inline]
fn persist(ctx: &Context, pkt: &[u8], rtcp: bool, dir: SrtpDirection, c: &LegCounters) {
    let ssrc = |at: usize| {
        pkt.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let Some(ssrc) = (if rtcp { ssrc(4) } else { ssrc(8) }) else {
        return;
    };
    if let Some(s) = ctx.streams().find(|s| s.ssrc == ssrc) {
        c.set_srtp_state(
            dir,
            SrtpStreamState {
                ssrc: s.ssrc,
                roc: s.roc,
                seq: s.seq,
                srtcp_index: s.srtcp_index,
            },
        );
    }
}

/// The ICE-lite responder's verdict on a STUN datagram, as the worker acts
/// on it.
pub(super) enum StunAction {
    /// Send `len` bytes of the scratch buffer back to the source;
    /// `nominated`: latch the leg to it.
    Reply {
        len: usize,
        nominated: bool,
    },
    Drop,
}

/// Hands a STUN datagram from `src` to leg's responder.
pub(super) fn on_stun(
    ice: &mut IceLite,
    pkt: &[u8],
    src: SocketAddr,
    now: Instant,
    out: &mut [u8],
) -> StunAction {
    match ice.on_stun(pkt, src, now, out) {
        Outcome::Reply { len, nominated } => StunAction::Reply { len, nominated },
        // A signed error answer (487 role conflict, 420 unknown attribute).
        Outcome::Error { len, .. } => StunAction::Reply {
            len,
            nominated: false,
        },
        Outcome::Drop(d) => {
            if !matches!(d, IceDrop::NotRequest) {
                debug!(%src, reason = d.reason(), "STUN dropped");
            }
            StunAction::Drop
        }
    }
}

impl super::Worker {
    /// Brings slot `idx`'s secure state in line with `cfg` (after its
    /// forwarder took it). `resume`: the slot was found active at attach
    /// (a restarted worker): SRTP contexts continue from the persisted
    /// stream state, and DTLS keys already exported are used as they are.
    pub(super) fn sync_secure(&mut self, idx: usize, cfg: &SlotConfig, resume: bool) {
        let id = self.first + idx as u32;
        let sec_cfg = [cfg.legs[0].secure, cfg.legs[1].secure];
        let slot = &mut self.slots[idx];
        if !needed(&sec_cfg) {
            if slot.sec.take().is_some() {
                self.stop_dtls(idx);
            }
            return;
        }
        let sec = self.slots[idx].sec.get_or_insert_with(Box::default);
        let mut start = [None, None];
        let mut rtcp_too = [false; 2];
        let mut start_rtcp_only = [false; 2];
        for (leg, want) in sec_cfg.iter().enumerate() {
            let before = sec.legs[leg].applied.dtls;
            sec.apply(&self.table, id, leg, want, resume);
            let Some(p) = want.dtls else { continue };
            let have_keys = self.table.dtls_keying(id, leg).is_some();
            // A leg without rtcp-mux has a second association on its RTCP
            // port (RFC 5764 §4.1), not persisted: a restart runs it again.
            rtcp_too[leg] = !cfg.legs[leg].rtcp_mux;
            if resume {
                // A restarted worker with the keys keeps them, and only
                // waits (passive) for a peer that handshakes again.
                if !have_keys || p.role == DtlsRole::Passive {
                    start[leg] = Some(p);
                } else if rtcp_too[leg] {
                    start_rtcp_only[leg] = true;
                    start[leg] = Some(p);
                }
            } else if before != Some(p) {
                // A new fingerprint or role restarts the handshake (RFC
                // 5763 §6.7.1): the old keys are void.
                let st = &mut sec.legs[leg];
                st.rtcp = None;
                if have_keys {
                    let _ = self.table.set_dtls_keying(id, leg, None);
                    st.rx = None;
                    st.tx = None;
                    st.awaiting_dtls = true;
                }
                let unnominated = st.ice.as_ref().is_some_and(|i| i.nominated().is_none());
                if p.role == DtlsRole::Active && unnominated {
                    st.deferred = Some((p, rtcp_too[leg]));
                } else {
                    st.deferred = None;
                    start[leg] = Some(p);
                }
            }
        }
        let gen = self.slots[idx].gen;
        if let Some(d) = &self.dtls {
            for (leg, p) in start.iter().enumerate() {
                let Some(params) = *p else { continue };
                let first = if start_rtcp_only[leg] { 1 } else { 0 };
                let last = if rtcp_too[leg] { 1 } else { 0 };
                for component in first..=last {
                    let key = LegKey {
                        worker: self.index,
                        slot: id,
                        leg,
                        component,
                        gen,
                    };
                    if !d.command(ToTask::Start { key, params }) {
                        warn!(
                            slot = id,
                            leg, "DTLS task queue full: handshake not started"
                        );
                    }
                }
            }
        }
    }

    /// The peer nominated a pair on `leg` of slot `idx`: an active
    /// handshake deferred until then starts now.
    pub(super) fn start_deferred(&mut self, idx: usize, leg: usize) {
        let id = self.first + idx as u32;
        let slot = &mut self.slots[idx];
        let Some((params, rtcp)) = slot
            .sec
            .as_mut()
            .and_then(|s| s.legs[leg & 1].deferred.take())
        else {
            return;
        };
        let Some(d) = &self.dtls else { return };
        for component in 0..=u8::from(rtcp) {
            let key = LegKey {
                worker: self.index,
                slot: id,
                leg,
                component,
                gen: slot.gen,
            };
            if !d.command(ToTask::Start { key, params }) {
                warn!(
                    slot = id,
                    leg, "DTLS task queue full: handshake not started"
                );
            }
        }
    }

    /// Tells the DTLS task slot `idx` is gone.
    pub(super) fn stop_dtls(&mut self, idx: usize) {
        let id = self.first + idx as u32;
        let gen = self.slots[idx].gen;
        if let Some(d) = &self.dtls {
            for leg in 0..2 {
                let key = LegKey {
                    worker: self.index,
                    slot: id,
                    leg,
                    component: 0,
                    gen,
                };
                let _ = d.command(ToTask::Stop { key });
            }
        }
    }

    /// Acts on what the DTLS task answered (at most `max` answers): sends
    /// handshake datagrams to the leg's peer from the leg's RTP socket,
    /// and installs exported keys (also persisting them in the slot).
    pub(super) fn poll_dtls(&mut self, max: usize) {
        for _ in 0..max {
            let Some(msg) = self.dtls.as_ref().and_then(|d| d.poll()) else {
                return;
            };
            let key = match &msg {
                FromTask::Transmit { key, .. } | FromTask::Keys { key, .. } => *key,
            };
            let Some(idx) = key.slot.checked_sub(self.first).map(|i| i as usize) else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(idx) else {
                continue;
            };
            if slot.gen != key.gen || slot.fwd.is_none() {
                continue;
            }
            match msg {
                FromTask::Transmit { bytes, .. } => {
                    let rtcp = key.component == 1;
                    let dest = slot.fwd.as_ref().and_then(|f| {
                        if rtcp {
                            f.rtcp_dest(key.leg)
                        } else {
                            f.rtp_dest(key.leg)
                        }
                    });
                    let n = self.ifaces.len();
                    let iface = slot
                        .fwd
                        .as_ref()
                        .map_or(0, |f| super::leg_iface(f, key.leg, n));
                    let k = super::sock_index(iface, key.leg, rtcp);
                    let sock = slot.socks.get(k).and_then(|s| s.sock.as_ref());
                    if let (Some(dest), Some(sock)) = (dest, sock) {
                        // Off the packet path and rare: a plain sendto.
                        if let Err(e) = sock.send_to(&bytes, &dest.into()) {
                            debug!(slot = key.slot, leg = key.leg, "DTLS send: {e}");
                        }
                    }
                }
                FromTask::Keys { rx, tx, .. } => {
                    if key.component == 0 {
                        let _ = self
                            .table
                            .set_dtls_keying(key.slot, key.leg, Some((rx, tx)));
                    }
                    if let Some(sec) = slot.sec.as_mut() {
                        sec.dtls_keys(key.leg, key.component, &rx, &tx);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_shared::table::IceToken;

    #[test]
    fn the_remote_ufrag_is_kept_and_checked() {
        let p = IceParams {
            local_ufrag: IceToken::new("tErNuFrG").unwrap(),
            local_pwd: IceToken::new("relay+password/0123456789").unwrap(),
            remote_ufrag: IceToken::new("VRrQ"),
        };
        let (_, remote) = credentials(&p).unwrap();
        assert_eq!(
            remote.map(|r| r.ufrag().to_string()).as_deref(),
            Some("VRrQ")
        );
    }
}
