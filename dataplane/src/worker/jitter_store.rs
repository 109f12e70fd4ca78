//! Jitter buffers and their packet stores: a leg's buffer holds copies
//! of packets (the provided buffer goes straight back to the ring) in a
//! store allocated when the buffer is switched on, so buffering allocates
//! nothing per packet; the loop plays them out at their deadlines.

use std::time::Instant;

use io_uring::{opcode, types};
use tern_shared::table::{DropReason, JitterSettings};
use tracing::{debug, warn};

use super::secure;
use super::user_data;
use super::{
    fixed_index, leg_iface, push_sqe, rtp_info, sock_index, SendSlot, Worker, BUF_SIZE,
    MAX_JSTORES, PLAYOUT_SLACK,
};
use crate::quality::jitter::{
    JitterBuffer, JitterConfig, JitterError, Playout, PushOutcome, MAX_CAPACITY,
};
use crate::quality::stats::DEFAULT_CLOCK_RATE;

/// Bytes per jitter-store entry for audio: G.711 at 40 ms (332 bytes) and
/// opus at its highest rates fit; a longer packet skips the buffer (it is
/// sent at once and its position is played out as lost). Keeps a buffered
/// leg's store near 45 KiB.
const JSTORE_ENTRY_AUDIO: usize = 512;
/// Bytes per jitter-store entry for video (90 kHz clock): the largest UDP
/// payload a provided buffer can carry.
const JSTORE_ENTRY_VIDEO: usize = BUF_SIZE as usize;
/// Store entries beyond the buffer's ring, for packets being sent.
const JSTORE_SPARE: usize = 32;

/// Packet copies held by one leg's jitter buffer, and the send storage of
/// their playout. Allocated when the buffer is switched on; it outlives
/// the buffer while sends from it are in flight.
pub(super) struct JStore {
    data: Box<[u8]>,
    /// Bytes per entry.
    entry: usize,
    lens: Box<[u16]>,
    free: Vec<u16>,
    sends: Box<[SendSlot]>,
    inflight: u32,
    /// The buffer it served is gone: drop it when `inflight` reaches 0.
    retired: bool,
}

impl JStore {
    pub(super) fn new(entries: usize, entry: usize) -> JStore {
        JStore {
            data: vec![0u8; entries * entry].into_boxed_slice(),
            entry,
            lens: vec![0u16; entries].into_boxed_slice(),
            free: (0..entries as u16).rev().collect(),
            sends: (0..entries).map(|_| SendSlot::zeroed()).collect(),
            inflight: 0,
            retired: false,
        }
    }

    /// Copies `pkt` into a free entry, to be sent by
    /// [`Worker::send_stored`]; `None` when it is longer than an entry or
    /// none is free.
    pub(super) fn take_entry(&mut self, pkt: &[u8]) -> Option<u16> {
        if pkt.len() > self.entry {
            return None;
        }
        let e = self.free.pop()?;
        self.entry_mut(e)[..pkt.len()].copy_from_slice(pkt);
        self.lens[usize::from(e)] = pkt.len() as u16;
        Some(e)
    }

    fn entry_mut(&mut self, e: u16) -> &mut [u8] {
        let at = usize::from(e) * self.entry;
        &mut self.data[at..at + self.entry]
    }
}

/// A leg's jitter buffer (for what is sent to that leg's peer).
pub(super) struct LegJitter {
    jb: JitterBuffer<u16>,
    /// Index into the worker's stores.
    store: u16,
    settings: JitterSettings,
    /// Clock rate and telephone-event type of the source leg it was made
    /// for.
    source: (u32, Option<u8>),
    /// The buffer's next deadline as last seen (after a poll or a push):
    /// the loop polls only buffers that are due. Pushes only ever bring
    /// the first held packet's deadline forward, to the pushed one's.
    due: Option<Instant>,
}

/// Puts `st` under a free store id (a retired one first); `None` when all
/// `limit` ids (at most [`MAX_JSTORES`]) are taken, so an id never wraps
/// onto a live store.
pub(super) fn alloc_store(
    stores: &mut Vec<Option<JStore>>,
    free: &mut Vec<u16>,
    st: JStore,
    limit: usize,
) -> Option<u16> {
    if let Some(i) = free.pop() {
        stores[usize::from(i)] = Some(st);
        return Some(i);
    }
    let id = u16::try_from(stores.len()).ok()?;
    if stores.len() >= limit.min(MAX_JSTORES) {
        return None;
    }
    stores.push(Some(st));
    Some(id)
}

/// What became of a packet offered to a jitter buffer.
pub(super) enum Buffered {
    /// Copied into the store and held for playout.
    Held,
    /// Refused by the buffer: [`DropReason::JitterLate`] (late or
    /// duplicate) or [`DropReason::JitterOverflow`] (no room, or on
    /// probation).
    Refused(DropReason),
    /// Not buffered (no free store entry, or too long): send it now.
    Bypass,
}

/// Copies `pkt` (as it will be sent) into `lj`'s store and pushes it into
/// its buffer.
#[inline]
pub(super) fn buffer_packet(
    stores: &mut [Option<JStore>],
    lj: &mut LegJitter,
    pkt: &[u8],
    now: Instant,
) -> Buffered {
    let Some(Some(st)) = stores.get_mut(usize::from(lj.store)) else {
        return Buffered::Bypass;
    };
    let Some(mut info) = rtp_info(pkt) else {
        return Buffered::Bypass;
    };
    info.is_event = lj.source.1 == Some(info.payload_type);
    if pkt.len() > st.entry {
        return Buffered::Bypass;
    }
    let Some(e) = st.free.pop() else {
        return Buffered::Bypass;
    };
    st.entry_mut(e)[..pkt.len()].copy_from_slice(pkt);
    st.lens[usize::from(e)] = pkt.len() as u16;
    match lj.jb.push(info, e, now) {
        PushOutcome::Accepted => {
            lj.due = lj.jb.next_deadline();
            Buffered::Held
        }
        PushOutcome::Duplicate(e) | PushOutcome::TooLate(e) => {
            st.free.push(e);
            Buffered::Refused(DropReason::JitterLate)
        }
        PushOutcome::Probation(e) | PushOutcome::Overflow(e) => {
            st.free.push(e);
            Buffered::Refused(DropReason::JitterOverflow)
        }
    }
}

/// A jitter buffer for `w` over packets from a leg whose codec clock rate
/// and telephone-event type are `source`, and the store entries it needs.
fn new_leg_jitter(
    w: JitterSettings,
    source: (u32, Option<u8>),
    now: Instant,
) -> Result<(JitterBuffer<u16>, usize), JitterError> {
    let max_ms = u32::from(w.max_ms.max(1));
    let target_ms = u32::from(w.target_ms).min(max_ms);
    // Room for max_ms of 10 ms packets, twice over.
    let capacity = (max_ms as usize / 5 + 16).clamp(32, MAX_CAPACITY.min(1024));
    let clock = if source.0 == 0 {
        DEFAULT_CLOCK_RATE
    } else {
        source.0
    };
    let mut jb = JitterBuffer::new(
        JitterConfig {
            clock_rate: clock,
            target_ms,
            min_ms: target_ms.min(20),
            max_ms,
            adaptive: w.adaptive,
            capacity,
        },
        now,
    )?;
    if let Some(pt) = source.1 {
        jb.set_clock_rate(pt, clock);
    }
    Ok((jb, capacity + JSTORE_SPARE))
}

impl Worker {
    /// Returns entry `entry` of jitter store `store` after its send
    /// completed; frees a retired store with nothing left in flight.
    pub(super) fn jstore_done(&mut self, store: u16, entry: u16) {
        let Some(Some(st)) = self.jstores.get_mut(usize::from(store)) else {
            return;
        };
        st.inflight = st.inflight.saturating_sub(1);
        if usize::from(entry) < st.lens.len() {
            st.free.push(entry);
        }
        if st.retired && st.inflight == 0 {
            self.jstores[usize::from(store)] = None;
            self.jstore_free.push(store);
        }
    }

    /// Plays out every jitter-buffered packet that is due; returns the
    /// earliest deadline still pending. A buffer not due is not touched
    /// (its deadline is cached in [`LegJitter::due`]).
    pub(super) fn play_jitter(&mut self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let inow = self.clock.at + PLAYOUT_SLACK;
        for k in 0..self.jit_slots.len() {
            let idx = self.jit_slots[k] as usize;
            for leg in 0..2 {
                while let Some(lj) = self.slots[idx].jit[leg].as_mut() {
                    if lj.due.is_none_or(|d| d > inow) {
                        if let Some(d) = lj.due {
                            earliest = Some(earliest.map_or(d, |x| x.min(d)));
                        }
                        break;
                    }
                    match lj.jb.poll_or_next(inow) {
                        Ok(Playout::Packet(e)) => {
                            let store = lj.store;
                            self.send_stored(idx, leg, store, e);
                        }
                        Ok(Playout::Lost { .. }) => {}
                        Err(next) => lj.due = next,
                    }
                }
            }
        }
        earliest
    }

    /// Sends entry `entry` of store `store` to leg `leg`'s peer of slot
    /// `idx` (its RTP socket and destination now), or frees the entry.
    pub(super) fn send_stored(&mut self, idx: usize, leg: usize, store: u16, entry: u16) {
        let id = self.first + idx as u32;
        let slot = &mut self.slots[idx];
        let dest = slot.fwd.as_ref().and_then(|f| f.rtp_dest(leg));
        let n = self.ifaces.len();
        let k = sock_index(
            slot.fwd.as_ref().map_or(0, |f| leg_iface(f, leg, n)),
            leg,
            false,
        );
        let sock = &slot.socks[k];
        let (fd, v6, fixed) = (sock.fd, sock.v6, sock.fixed);
        let Some(Some(st)) = self.jstores.get_mut(usize::from(store)) else {
            return;
        };
        let e = usize::from(entry);
        let mut len = usize::from(st.lens[e]);
        // Protected as it leaves (after the rewrite, as in forward.rs).
        if let Some(sec) = slot.sec.as_deref_mut() {
            let cap = st.entry;
            let res = match sec.legs[leg].tx.as_deref_mut() {
                Some(ctx) => match self.table.counters(id, leg) {
                    Ok(c) => {
                        secure::protect(ctx, &mut st.data[e * cap..(e + 1) * cap], len, false, c)
                    }
                    Err(_) => Err(DropReason::SrtpMalformed),
                },
                None => Ok(len),
            };
            match res {
                Ok(n) => len = n,
                Err(r) => {
                    st.free.push(entry);
                    if let Ok(c) = self.table.counters(id, leg ^ 1) {
                        c.count_drop(r);
                    }
                    self.dropped += 1;
                    return;
                }
            }
        }
        let data = st.data[e * st.entry..].as_mut_ptr();
        let ok = match dest {
            Some(dest) if fd >= 0 => st.sends[e].fill(data, len, dest, v6).is_some(),
            _ => false,
        };
        let pushed = ok && {
            let hdr = std::ptr::addr_of!(st.sends[e].hdr);
            let sqe = if fixed {
                opcode::SendMsg::new(types::Fixed(fixed_index(idx, k, self.per_slot)), hdr).build()
            } else {
                opcode::SendMsg::new(types::Fd(fd), hdr).build()
            }
            .user_data(user_data::jsend_ud(store, entry));
            push_sqe(&mut self.ring, &sqe, &mut self.ring_ctr.sq_full)
        };
        if pushed {
            st.inflight += 1;
            if let Ok(c) = self.table.counters(id, leg) {
                c.count_tx(len);
            }
            self.forwarded += 1;
        } else {
            st.free.push(entry);
            // Counted where it arrived, like every drop of the slot.
            if let Ok(c) = self.table.counters(id, leg ^ 1) {
                c.count_drop(DropReason::NoPeer);
            }
            self.dropped += 1;
        }
    }

    /// Brings slot `idx`'s jitter buffers in line with its configuration:
    /// creates those switched on (with a store), and empties and retires
    /// those switched off (`close`: all of them). What a buffer still
    /// holds is sent at once unless the slot is closing.
    pub(super) fn sync_jitter(&mut self, idx: usize, close: bool) {
        let id = self.first + idx as u32;
        for leg in 0..2 {
            let (want, source) = match self.slots[idx].fwd.as_ref() {
                Some(f) if !close => {
                    let c = f.config();
                    let src = &c.legs[leg ^ 1];
                    let j = c.legs[leg].jitter;
                    // A transcoded source is buffered as it leaves the
                    // transcoder: in the output codec's clock and
                    // telephone-event type.
                    let source = match src.media.transcode {
                        Some(t) => (t.output.rtp_clock(), t.output_dtmf),
                        None => (src.clock_rate, src.dtmf_pt),
                    };
                    (j.enabled.then_some(j), source)
                }
                _ => (None, (0, None)),
            };
            let keep = match (&self.slots[idx].jit[leg], want) {
                (Some(lj), Some(w)) => lj.settings == w && lj.source == source,
                (None, None) => true,
                _ => false,
            };
            if keep {
                continue;
            }
            if let Some(mut lj) = self.slots[idx].jit[leg].take() {
                while let Some(e) = lj.jb.drain_next() {
                    if close {
                        if let Some(Some(st)) = self.jstores.get_mut(usize::from(lj.store)) {
                            st.free.push(e);
                        }
                    } else {
                        self.send_stored(idx, leg, lj.store, e);
                    }
                }
                self.retire_store(lj.store);
            }
            if let Some(w) = want {
                match new_leg_jitter(w, source, self.clock.at) {
                    Ok((jb, entries)) => {
                        let size = if source.0 >= 90_000 {
                            JSTORE_ENTRY_VIDEO
                        } else {
                            JSTORE_ENTRY_AUDIO
                        };
                        let st = JStore::new(entries, size);
                        let Some(store) =
                            alloc_store(&mut self.jstores, &mut self.jstore_free, st, MAX_JSTORES)
                        else {
                            self.jitter_refused += 1;
                            self.table
                                .set_worker_jitter_refused(self.index, self.jitter_refused);
                            warn!(
                                worker = self.index,
                                slot = id,
                                call_id = %self.slots[idx].call_id,
                                leg,
                                "jitter buffer not started: all {MAX_JSTORES} store ids in use; forwarding straight through"
                            );
                            continue;
                        };
                        self.slots[idx].jit[leg] = Some(LegJitter {
                            jb,
                            store,
                            settings: w,
                            source,
                            due: None,
                        });
                        debug!(
                            worker = self.index,
                            slot = id,
                            call_id = %self.slots[idx].call_id,
                            leg,
                            target_ms = w.target_ms,
                            max_ms = w.max_ms,
                            "jitter buffer on"
                        );
                    }
                    Err(e) => warn!(
                        worker = self.index,
                        slot = id,
                        call_id = %self.slots[idx].call_id,
                        leg,
                        "jitter buffer not started: {e}"
                    ),
                }
            }
        }
        let any = self.slots[idx].jit.iter().any(Option::is_some);
        let listed = self.jit_slots.iter().position(|&i| i as usize == idx);
        match (any, listed) {
            (true, None) => self.jit_slots.push(idx as u32),
            (false, Some(p)) => {
                self.jit_slots.swap_remove(p);
            }
            _ => {}
        }
    }

    pub(super) fn retire_store(&mut self, store: u16) {
        let Some(slot) = self.jstores.get_mut(usize::from(store)) else {
            return;
        };
        match slot {
            Some(st) if st.inflight > 0 => st.retired = true,
            Some(_) => {
                *slot = None;
                self.jstore_free.push(store);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_ids_run_out_instead_of_wrapping() {
        let (mut stores, mut free) = (Vec::new(), Vec::new());
        let st = || JStore::new(2, 16);
        let ids: Vec<_> = (0..3)
            .map(|_| alloc_store(&mut stores, &mut free, st(), 3))
            .collect();
        assert_eq!(ids, [Some(0), Some(1), Some(2)]);
        assert_eq!(alloc_store(&mut stores, &mut free, st(), 3), None);
        // A retired id is handed out again.
        stores[1] = None;
        free.push(1);
        assert_eq!(alloc_store(&mut stores, &mut free, st(), 3), Some(1));
        assert_eq!(alloc_store(&mut stores, &mut free, st(), 3), None);
        // The real limit: ids are 16 bits, so 65536 of them and no more.
        let mut stores: Vec<Option<JStore>> = (0..MAX_JSTORES).map(|_| None).collect();
        assert_eq!(
            alloc_store(&mut stores, &mut Vec::new(), st(), usize::MAX),
            None
        );
        stores.pop();
        assert_eq!(
            alloc_store(&mut stores, &mut Vec::new(), st(), usize::MAX),
            Some(u16::MAX)
        );
    }
}
