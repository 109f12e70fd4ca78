//! The reading side (observers, the ng core's reports, a worker reading its
//! configuration): consistent snapshots of what the others write.

use std::sync::atomic::{fence, Ordering};

use std::net::SocketAddr;

use super::layout::*;
use super::types::*;

impl SlotTable {
    /// State of slot `id` (Free if out of range).
    pub fn state(&self, id: u32) -> SlotState {
        self.slot(id)
            .map(|s| SlotState::from_u32(s.ctl.state.load(Ordering::Acquire)))
            .unwrap_or(SlotState::Free)
    }

    /// Generation of slot `id`: bumped at each reserve.
    pub fn generation(&self, id: u32) -> u64 {
        self.slot(id)
            .map(|s| s.ctl.generation.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    /// Number of slots in `state`.
    pub fn count(&self, state: SlotState) -> u32 {
        (0..self.capacity)
            .filter(|&i| self.state(i) == state)
            .count() as u32
    }

    /// Whether slot `id` is active and its worker applied its latest
    /// configuration: packets sent to its ports from now on are relayed.
    pub fn is_applied(&self, id: u32) -> bool {
        self.state(id) == SlotState::Active
            && self.slot(id).is_ok_and(|s| {
                s.ctl.applied_seq.load(Ordering::Acquire) == s.ctl.seq.load(Ordering::Acquire)
            })
    }

    /// Who reserved slot `id` ([`Owner::Unspecified`] if out of range).
    pub fn owner(&self, id: u32) -> Owner {
        self.slot(id)
            .map(|s| Owner::from_u32(s.ctl.owner.load(Ordering::Acquire)))
            .unwrap_or_default()
    }

    /// The binding epoch: 0 until a dataplane starts on the table.
    pub fn epoch(&self) -> u64 {
        self.header().epoch.load(Ordering::Acquire)
    }

    /// Whether slot `id`'s ports are bound by the running dataplane.
    pub fn is_bound(&self, id: u32) -> bool {
        let e = self.epoch();
        e != 0
            && self
                .slot(id)
                .is_ok_and(|s| s.ctl.bound_epoch.load(Ordering::Acquire) == e)
    }

    /// Free slots passed over by [`SlotTable::reserve_for`] because their
    /// ports were not bound, in total.
    pub fn port_misses(&self) -> u64 {
        self.header().port_misses.load(Ordering::Relaxed)
    }

    /// Slots reclaimed after a restart ([`SlotTable::count_reclaimed`]),
    /// in total.
    pub fn reclaimed(&self) -> u64 {
        self.header().reclaimed.load(Ordering::Relaxed)
    }

    /// Free slots of worker `w` with a port that could not be bound.
    pub fn worker_unbound(&self, w: u32) -> u64 {
        self.worker(w).unbound.load(Ordering::Relaxed)
    }

    /// Reads slot `id`'s configuration consistently (seqlock read; retries
    /// while a writer is active). Returns the configuration and the seqlock
    /// value it was read at, which changes with every publish.
    pub fn read_config(&self, id: u32) -> Result<(SlotConfig, u32), TableError> {
        let s = self.slot(id)?;
        loop {
            let s1 = s.ctl.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut w = [[0u64; LEG_CFG_WORDS]; 2];
            for (leg, words) in w.iter_mut().enumerate() {
                for (k, v) in words.iter_mut().enumerate() {
                    *v = s.cfg[leg][k].load(Ordering::Relaxed);
                }
            }
            let mut sec = [[0u64; super::secure::SEC_WORDS]; 2];
            for (leg, words) in sec.iter_mut().enumerate() {
                for (k, v) in words.iter_mut().enumerate() {
                    *v = s.sec[leg][k].load(Ordering::Relaxed);
                }
            }
            let mut media = [[0u64; super::media::MEDIA_WORDS]; 2];
            for (leg, words) in media.iter_mut().enumerate() {
                for (k, v) in words.iter_mut().enumerate() {
                    *v = s.media[leg][k].load(Ordering::Relaxed);
                }
            }
            let tag = s.ctl.tag.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if s.ctl.seq.load(Ordering::Relaxed) == s1 {
                let mut legs = [LegConfig::decode(&w[0]), LegConfig::decode(&w[1])];
                for (l, m) in legs.iter_mut().zip(media.iter()) {
                    l.media = super::media::decode(m);
                }
                for (l, words) in legs.iter_mut().zip(sec.iter()) {
                    l.secure = super::secure::decode(words);
                    l.play = super::play::decode(
                        &words
                            [super::play::PLAY_AT..super::play::PLAY_AT + super::play::PLAY_WORDS],
                    );
                }
                let cfg = SlotConfig { legs, tag };
                return Ok((cfg, s1));
            }
        }
    }

    /// The seqlock value of slot `id` (cheap change detection for workers).
    pub fn config_seq(&self, id: u32) -> u32 {
        self.slot(id)
            .map(|s| s.ctl.seq.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    /// Snapshot of `leg`'s counters of slot `id`.
    pub fn stats(&self, id: u32, leg: usize) -> Result<LegStats, TableError> {
        Ok(self.counters(id, leg)?.snapshot())
    }

    /// RFC 3550 receiver statistics of `leg` (0 or 1) of slot `id`, as last
    /// published by its worker; all zero for a slot past capacity.
    pub fn quality(&self, id: u32, leg: usize) -> LegQuality {
        self.counters(id, leg)
            .map(LegCounters::quality)
            .unwrap_or_default()
    }

    /// The last (up to [`DTMF_RING`]) DTMF events received from `leg`'s
    /// peer on slot `id`, oldest first; empty for a slot past capacity.
    pub fn dtmf_events(&self, id: u32, leg: usize) -> Vec<DtmfEvent> {
        self.counters(id, leg)
            .map(LegCounters::dtmf_events)
            .unwrap_or_default()
    }

    /// The Call-ID label of slot `id`; `None` when unset or out of range.
    pub fn call_id(&self, id: u32) -> Option<String> {
        let s = self.slot(id).ok()?;
        // Bounded: a writer holds the label seqlock for a few stores only.
        for _ in 0..10_000 {
            let s1 = s.ctl.label_seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let len = (s.ctl.label_len.load(Ordering::Relaxed) as usize).min(LABEL_BYTES);
            let mut b = [0u8; LABEL_BYTES];
            for (k, w) in s.label.iter().enumerate() {
                b[k * 8..k * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            fence(Ordering::Acquire);
            if s.ctl.label_seq.load(Ordering::Relaxed) != s1 {
                continue;
            }
            if len == 0 {
                return None;
            }
            return Some(String::from_utf8_lossy(&b[..len]).into_owned());
        }
        None
    }

    /// Worker `w`'s doorbell: it changes after any change to its slots.
    pub fn doorbell(&self, w: u32) -> u64 {
        self.worker(w).doorbell.load(Ordering::Acquire)
    }

    /// Worker `w`'s ring counters as of its last tick.
    pub fn worker_ring(&self, w: u32) -> WorkerRing {
        let ws = self.worker(w);
        WorkerRing {
            enobufs: ws.enobufs.load(Ordering::Relaxed),
            rearms: ws.rearms.load(Ordering::Relaxed),
            sq_full: ws.sq_full.load(Ordering::Relaxed),
        }
    }

    /// Worker `w`'s cumulative counters: the retired totals of the slots it
    /// freed plus the counters of its slots not yet freed (reserved, active
    /// or draining), read consistently with the worker's retire seqlock
    /// (bounded retries; after them the last read is returned).
    pub fn worker_totals(&self, w: u32) -> WorkerTotals {
        let r = &self.worker(w).retired.words;
        let mut out = WorkerTotals::default();
        for _ in 0..1000 {
            let s1 = r[ret::SEQ].load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut acc = [0u64; LEG_STAT_COUNTERS];
            for (k, a) in acc.iter_mut().enumerate() {
                *a = r[ret::FIRST + k].load(Ordering::Relaxed);
            }
            for id in self.slots_of_worker(w) {
                if self.state(id) == SlotState::Free {
                    continue;
                }
                let Ok(s) = self.slot(id) else { continue };
                for c in &s.counters {
                    for (a, v) in acc.iter_mut().zip(c.snapshot().counters()) {
                        *a = a.wrapping_add(v);
                    }
                }
            }
            out = WorkerTotals {
                legs: LegStats::from_counters(&acc),
                send_errors: r[ret::SEND_ERRORS].load(Ordering::Relaxed),
                jitter_refused: r[ret::JITTER_REFUSED].load(Ordering::Relaxed),
                record_dropped: r[ret::RECORD_DROPPED].load(Ordering::Relaxed),
                record_failed: r[ret::RECORD_FAILED].load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            if r[ret::SEQ].load(Ordering::Relaxed) == s1 {
                break;
            }
        }
        out
    }

    /// Worker `w`'s last heartbeat (Unix ms, 0 if none) and totals
    /// (forwarded, dropped packets).
    pub fn worker_status(&self, w: u32) -> (u64, u64, u64) {
        let ws = self.worker(w);
        (
            ws.heartbeat_ms.load(Ordering::Relaxed),
            ws.forwarded.load(Ordering::Relaxed),
            ws.dropped.load(Ordering::Relaxed),
        )
    }
}

impl LegCounters {
    #[inline]
    pub(super) fn get(&self, i: usize) -> u64 {
        self.words[i].load(Ordering::Relaxed)
    }

    /// The learned RTP (`rtcp == false`) or RTCP source address.
    pub fn learned(&self, rtcp: bool) -> Option<SocketAddr> {
        let b = if rtcp {
            ctr::LEARNED_RTCP_IP0
        } else {
            ctr::LEARNED_IP0
        };
        decode_addr([self.get(b), self.get(b + 1), self.get(b + 2)])
    }

    /// Three words of worker-private state (the SSRC mapping) kept here so a
    /// restarted dataplane continues sequence and timestamp without a jump.
    pub fn ssrc_state(&self) -> [u64; 3] {
        [
            self.get(ctr::SSRC_STATE0),
            self.get(ctr::SSRC_STATE1),
            self.get(ctr::SSRC_STATE2),
        ]
    }

    /// The SSRC the published statistics describe (the source the leg's
    /// peer sends with), if any packet was counted.
    pub fn ssrc_in(&self) -> Option<u32> {
        let w = self.get(ctr::Q_SSRC);
        (w >> 32 & 1 == 1).then_some(w as u32)
    }

    /// The leg's receiver statistics as last published: one publication
    /// whole, or all zero when [`LegCounters::try_quality`] found none.
    pub fn quality(&self) -> LegQuality {
        self.try_quality().unwrap_or_default()
    }

    /// A consistent read of the statistics under their seqlock, or `None`
    /// when none could be had within a bounded number of tries (a writer
    /// publishing back to back): never a torn one. Callers retry on their
    /// next tick; [`LegCounters::quality`] reads such a miss as all zero.
    pub fn try_quality(&self) -> Option<LegQuality> {
        for k in 0..100_000u32 {
            let s1 = self.words[ctr::Q_SEQ].load(Ordering::Acquire);
            if s1 & 1 == 1 {
                if k % 1000 == 999 {
                    std::thread::yield_now();
                }
                std::hint::spin_loop();
                continue;
            }
            let q = self.quality_words();
            fence(Ordering::Acquire);
            if self.get(ctr::Q_SEQ) == s1 {
                return Some(q);
            }
        }
        None
    }

    pub(super) fn quality_words(&self) -> LegQuality {
        let misc = self.get(ctr::Q_MISC);
        let valid = misc >> 16;
        let f = |i: usize| f64::from_bits(self.get(i));
        LegQuality {
            expected: self.get(ctr::Q_EXPECTED),
            lost: self.get(ctr::Q_LOST) as i64,
            fraction_lost: misc as u8,
            jitter_ms: f(ctr::Q_JITTER),
            duplicates: self.get(ctr::Q_DUPLICATES),
            reordered: self.get(ctr::Q_REORDERED),
            rtt_ms: (valid & 1 != 0).then(|| f(ctr::Q_RTT)),
            peer_fraction_lost: (valid & 2 != 0).then_some((misc >> 8) as u8),
            peer_jitter_ms: (valid & 4 != 0).then(|| f(ctr::Q_PEER_JITTER)),
            mos: (valid & 8 != 0).then(|| f(ctr::Q_MOS)),
            clock_rate: (misc >> 32) as u32,
        }
    }

    /// The DTMF events in the ring, oldest first (at most [`DTMF_RING`]).
    /// An event being overwritten while read is left out.
    pub fn dtmf_events(&self) -> Vec<DtmfEvent> {
        let h1 = self.words[ctr::DTMF_HEAD].load(Ordering::Acquire);
        let head = h1 >> 1;
        let base = self.get(ctr::DTMF_BASE_MS);
        let first = head.saturating_sub(DTMF_RING as u64);
        let mut out = Vec::with_capacity((head - first) as usize);
        for i in first..head {
            let k = (i % DTMF_RING as u64) as usize;
            let w = self.dtmf[k].load(Ordering::Relaxed);
            let off = self.dtmf[DTMF_RING + k / 2].load(Ordering::Relaxed) >> ((k % 2) * 32);
            if w >> 56 != 0x80 | i & 0x7f {
                continue;
            }
            let event = (w >> 52 & 0xf) as u8;
            out.push((
                i,
                DtmfEvent {
                    digit: dtmf_digit(event).unwrap_or('?'),
                    event,
                    duration: (w >> 32 & 0xf_ffff) as u32,
                    rtp_timestamp: w as u32,
                    at_ms: base + (off & 0xffff_ffff),
                },
            ));
        }
        fence(Ordering::Acquire);
        let h2 = self.get(ctr::DTMF_HEAD);
        // Untouched meanwhile: all valid. Otherwise events `head..=h2 >> 1`
        // may have been (or be being) written over entries `i - DTMF_RING`.
        let keep_from = if h1 == h2 && h1 & 1 == 0 {
            0
        } else {
            (h2 >> 1) + 1
        };
        out.into_iter()
            .filter(|(i, _)| i + DTMF_RING as u64 >= keep_from)
            .map(|(_, e)| e)
            .collect()
    }

    /// A snapshot of the counters.
    pub fn snapshot(&self) -> LegStats {
        LegStats {
            rx_packets: self.get(ctr::RX_PACKETS),
            rx_bytes: self.get(ctr::RX_BYTES),
            tx_packets: self.get(ctr::TX_PACKETS),
            tx_bytes: self.get(ctr::TX_BYTES),
            rtcp_rx_packets: self.get(ctr::RTCP_RX),
            drop_source: self.get(ctr::DROP_SOURCE),
            drop_direction: self.get(ctr::DROP_DIRECTION),
            drop_malformed: self.get(ctr::DROP_MALFORMED),
            drop_no_peer: self.get(ctr::DROP_NO_PEER),
            drop_jitter_late: self.get(ctr::DROP_JITTER_LATE),
            drop_jitter_overflow: self.get(ctr::DROP_JITTER_OVERFLOW),
            drop_srtp_auth: self.get(ctr::DROP_SRTP_AUTH),
            drop_srtp_replay: self.get(ctr::DROP_SRTP_REPLAY),
            drop_srtp_malformed: self.get(ctr::DROP_SRTP_MALFORMED),
            drop_stun: self.get(ctr::DROP_STUN),
            drop_dtls: self.get(ctr::DROP_DTLS),
            drop_demux: self.get(ctr::DROP_DEMUX),
            drop_no_consent: self.get(ctr::DROP_NO_CONSENT),
            drop_transcode: self.get(ctr::DROP_TRANSCODE),
            learned: self.learned(false),
            last_rx_ms: self.get(ctr::LAST_RX_MS),
        }
    }
}
