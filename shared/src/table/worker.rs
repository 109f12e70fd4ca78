//! The dataplane side: what only the owning worker writes (counters,
//! stamps, heartbeats, totals) and how it takes changes.

use std::sync::atomic::{fence, Ordering};

use std::net::SocketAddr;

use super::layout::*;
use super::types::*;

impl SlotTable {
    /// Worker side: the configuration published at seqlock value `seq` is
    /// in force on slot `id` (receives armed).
    pub fn set_applied(&self, id: u32, seq: u32) {
        if let Ok(s) = self.slot(id) {
            s.ctl.applied_seq.store(seq, Ordering::Release);
        }
    }

    /// Dataplane side: starts a new binding epoch and returns it. Called
    /// when the workers start (their stamps follow) and when they stop, so
    /// a slot is never handed out on the word of a dataplane that is gone.
    pub fn begin_epoch(&self) -> u64 {
        self.header().epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Worker side: every port of free slot `id` is bound in `epoch`
    /// (`0` clears the stamp: a port was lost).
    pub fn set_bound(&self, id: u32, epoch: u64) {
        if let Ok(s) = self.slot(id) {
            s.ctl.bound_epoch.store(epoch, Ordering::Release);
        }
    }

    /// Worker side: how many of worker `w`'s free slots have a port that
    /// could not be bound, now.
    pub fn set_worker_unbound(&self, w: u32, n: u64) {
        self.worker(w).unbound.store(n, Ordering::Relaxed);
    }

    /// Worker side: Draining → Free once the slot's sockets are closed.
    /// The slot's final counters are added to its worker's retired totals
    /// and then reset, under the worker's retire seqlock, so
    /// [`SlotTable::worker_totals`] never sees them twice or not at all.
    ///
    /// Errors: [`TableError::NoSuchSlot`]; [`TableError::WrongState`] if
    /// the slot is not Draining (nothing is changed then).
    pub fn finish_drain(&self, id: u32) -> Result<(), TableError> {
        let s = self.slot(id)?;
        if self.state(id) != SlotState::Draining {
            return Err(TableError::WrongState {
                slot: id,
                state: self.state(id),
            });
        }
        let r = &self.worker(self.worker_of(id)).retired.words;
        let seq = r[ret::SEQ].load(Ordering::Relaxed);
        r[ret::SEQ].store(seq.wrapping_add(1) | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for c in &s.counters {
            for (k, v) in c.snapshot().counters().into_iter().enumerate() {
                let w = &r[ret::FIRST + k];
                w.store(w.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
            }
            c.reset();
        }
        // The next call on this slot must never find this call's keys.
        for words in s.dtls_keys.iter() {
            for w in words.iter() {
                w.store(0, Ordering::Relaxed);
            }
        }
        let res = self.cas_state(id, SlotState::Draining, SlotState::Free);
        r[ret::SEQ].store((seq | 1).wrapping_add(1), Ordering::Release);
        res
    }

    /// Counters of `leg` of slot `id`; write them only from the owning worker.
    pub fn counters(&self, id: u32, leg: usize) -> Result<&LegCounters, TableError> {
        Ok(&self.slot(id)?.counters[leg & 1])
    }

    /// Worker side: marks slot `id` changed without moving the doorbell,
    /// for a worker that must look at one of its own slots again (one it
    /// just freed, which a programmer may already have taken).
    pub fn mark_changed(&self, id: u32) {
        if let Some(w) = self.changed(id as usize / 64) {
            w.fetch_or(1 << (id % 64), Ordering::Release);
        }
    }

    /// Worker side: takes (returns and clears) the changed bits of slots
    /// `64 * k ..= 64 * k + 63` that are set in `mask` (bit `i` is slot
    /// `64 * k + i`), leaving the other bits for the worker that owns
    /// them. 0 for a word past the bitmap.
    pub fn take_changed(&self, k: usize, mask: u64) -> u64 {
        self.changed(k)
            .map_or(0, |w| w.fetch_and(!mask, Ordering::AcqRel) & mask)
    }

    /// Worker side: publishes liveness (Unix ms) and totals.
    pub fn worker_tick(&self, w: u32, now_ms: u64, forwarded: u64, dropped: u64) {
        let ws = self.worker(w);
        ws.heartbeat_ms.store(now_ms, Ordering::Relaxed);
        ws.forwarded.store(forwarded, Ordering::Relaxed);
        ws.dropped.store(dropped, Ordering::Relaxed);
    }

    /// Worker side: legs refused a jitter buffer so far (a total).
    pub fn set_worker_jitter_refused(&self, w: u32, n: u64) {
        self.worker(w).retired.words[ret::JITTER_REFUSED].store(n, Ordering::Relaxed);
    }

    /// Worker side: recording frames dropped for a full recording ring
    /// so far (a total).
    pub fn set_worker_record_dropped(&self, w: u32, n: u64) {
        self.worker(w).retired.words[ret::RECORD_DROPPED].store(n, Ordering::Relaxed);
    }

    /// Recording writer side: recordings of worker `w`'s slots that a
    /// write error (disk full) stopped so far (a total). The writer thread
    /// is this word's only writer.
    pub fn set_worker_record_failed(&self, w: u32, n: u64) {
        self.worker(w).retired.words[ret::RECORD_FAILED].store(n, Ordering::Relaxed);
    }

    /// Worker side: publishes its ring counters (totals): receive
    /// completions with `-ENOBUFS`, multishot re-arms and submission-queue
    /// overruns.
    pub fn set_worker_ring(&self, w: u32, ring: WorkerRing) {
        let ws = self.worker(w);
        ws.enobufs.store(ring.enobufs, Ordering::Relaxed);
        ws.rearms.store(ring.rearms, Ordering::Relaxed);
        ws.sq_full.store(ring.sq_full, Ordering::Relaxed);
    }

    /// Worker side: the number of sends that failed so far (a total).
    pub fn set_worker_send_errors(&self, w: u32, n: u64) {
        self.worker(w).retired.words[ret::SEND_ERRORS].store(n, Ordering::Relaxed);
    }
}

impl LegCounters {
    /// Adds `n` to counter `i`. Single-writer: a plain load and store, no
    /// locked read-modify-write on the packet path.
    #[inline]
    pub(super) fn add(&self, i: usize, n: u64) {
        let c = &self.words[i];
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    #[inline]
    pub(super) fn set(&self, i: usize, v: u64) {
        self.words[i].store(v, Ordering::Relaxed)
    }

    /// Counts one accepted RTP packet of `bytes` bytes at Unix time `now_ms`.
    #[inline]
    pub fn count_rx(&self, bytes: usize, now_ms: u64) {
        self.add(ctr::RX_PACKETS, 1);
        self.add(ctr::RX_BYTES, bytes as u64);
        self.set(ctr::LAST_RX_MS, now_ms);
    }

    /// Counts one accepted RTCP packet at Unix time `now_ms`.
    #[inline]
    pub fn count_rtcp_rx(&self, now_ms: u64) {
        self.add(ctr::RTCP_RX, 1);
        self.set(ctr::LAST_RX_MS, now_ms);
    }

    /// Counts one packet of `bytes` bytes sent to this leg's peer.
    #[inline]
    pub fn count_tx(&self, bytes: usize) {
        self.add(ctr::TX_PACKETS, 1);
        self.add(ctr::TX_BYTES, bytes as u64);
    }

    /// Counts a packet dropped for `reason`.
    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        let i = match reason {
            DropReason::Source => ctr::DROP_SOURCE,
            DropReason::Direction => ctr::DROP_DIRECTION,
            DropReason::Malformed => ctr::DROP_MALFORMED,
            DropReason::NoPeer => ctr::DROP_NO_PEER,
            DropReason::JitterLate => ctr::DROP_JITTER_LATE,
            DropReason::JitterOverflow => ctr::DROP_JITTER_OVERFLOW,
            DropReason::SrtpAuth => ctr::DROP_SRTP_AUTH,
            DropReason::SrtpReplay => ctr::DROP_SRTP_REPLAY,
            DropReason::SrtpMalformed => ctr::DROP_SRTP_MALFORMED,
            DropReason::Stun => ctr::DROP_STUN,
            DropReason::Dtls => ctr::DROP_DTLS,
            DropReason::Demux => ctr::DROP_DEMUX,
            DropReason::NoConsent => ctr::DROP_NO_CONSENT,
            DropReason::Transcode => ctr::DROP_TRANSCODE,
        };
        self.add(i, 1);
    }

    /// Records the learned RTP or RTCP source address (worker only).
    pub fn set_learned(&self, rtcp: bool, addr: Option<SocketAddr>) {
        let b = if rtcp {
            ctr::LEARNED_RTCP_IP0
        } else {
            ctr::LEARNED_IP0
        };
        let w = encode_addr(addr);
        for (k, v) in w.iter().enumerate() {
            self.set(b + k, *v);
        }
    }

    /// Stores the SSRC mapping state (worker only).
    #[inline]
    pub fn set_ssrc_state(&self, s: [u64; 3]) {
        self.set(ctr::SSRC_STATE0, s[0]);
        self.set(ctr::SSRC_STATE1, s[1]);
        self.set(ctr::SSRC_STATE2, s[2]);
    }

    /// Zeroes everything (worker only, when a slot is freed).
    pub fn reset(&self) {
        for w in self.words.iter().chain(self.dtmf.iter()) {
            w.store(0, Ordering::Relaxed);
        }
    }

    /// Publishes the leg's receiver statistics (worker only), under the
    /// quality seqlock so that [`LegCounters::quality`] never mixes two
    /// publications.
    pub fn set_quality(&self, q: &LegQuality) {
        let seq = self.get(ctr::Q_SEQ);
        self.set(ctr::Q_SEQ, seq.wrapping_add(1) | 1);
        fence(Ordering::Release);
        self.set(ctr::Q_EXPECTED, q.expected);
        self.set(ctr::Q_LOST, q.lost as u64);
        self.set(ctr::Q_DUPLICATES, q.duplicates);
        self.set(ctr::Q_REORDERED, q.reordered);
        self.set(ctr::Q_JITTER, q.jitter_ms.to_bits());
        self.set(ctr::Q_RTT, q.rtt_ms.unwrap_or(0.0).to_bits());
        self.set(
            ctr::Q_PEER_JITTER,
            q.peer_jitter_ms.unwrap_or(0.0).to_bits(),
        );
        self.set(ctr::Q_MOS, q.mos.unwrap_or(0.0).to_bits());
        let valid = u64::from(q.rtt_ms.is_some())
            | u64::from(q.peer_fraction_lost.is_some()) << 1
            | u64::from(q.peer_jitter_ms.is_some()) << 2
            | u64::from(q.mos.is_some()) << 3;
        self.set(
            ctr::Q_MISC,
            u64::from(q.fraction_lost)
                | u64::from(q.peer_fraction_lost.unwrap_or(0)) << 8
                | valid << 16
                | u64::from(q.clock_rate) << 32,
        );
        self.words[ctr::Q_SEQ].store((seq | 1).wrapping_add(1), Ordering::Release);
    }

    /// Records the SSRC the published statistics describe (worker only).
    pub fn set_ssrc_in(&self, ssrc: Option<u32>) {
        self.set(ctr::Q_SSRC, ssrc.map_or(0, |s| u64::from(s) | 1 << 32));
    }

    /// Appends a DTMF event to the leg's ring, overwriting the oldest of
    /// the last [`DTMF_RING`] (worker only). Events other than DTMF keys
    /// (code > 15) are not kept.
    pub fn push_dtmf(&self, e: &DtmfEvent) {
        if e.event > 15 {
            return;
        }
        let head = self.get(ctr::DTMF_HEAD) >> 1;
        self.set(ctr::DTMF_HEAD, head << 1 | 1);
        fence(Ordering::Release);
        let mut base = self.get(ctr::DTMF_BASE_MS);
        if head == 0 || base == 0 || e.at_ms < base || e.at_ms - base > u64::from(u32::MAX) {
            // Offsets are u32 ms: a new base is only needed after 49 days,
            // and then the older events' times are approximate.
            base = e.at_ms;
            self.set(ctr::DTMF_BASE_MS, base);
        }
        let k = (head % DTMF_RING as u64) as usize;
        let ow = &self.dtmf[DTMF_RING + k / 2];
        let off = (e.at_ms - base) & 0xffff_ffff;
        let shift = (k % 2) * 32;
        let old = ow.load(Ordering::Relaxed) & !(0xffff_ffff << shift);
        ow.store(old | off << shift, Ordering::Relaxed);
        let word = u64::from(e.rtp_timestamp)
            | u64::from(e.duration.min(0xf_ffff)) << 32
            | u64::from(e.event & 0xf) << 52
            | (0x80 | head & 0x7f) << 56;
        self.dtmf[k].store(word, Ordering::Relaxed);
        self.words[ctr::DTMF_HEAD].store((head + 1) << 1, Ordering::Release);
    }
}
