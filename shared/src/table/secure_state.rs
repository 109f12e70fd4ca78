//! The slot table's accessors of secure-media state that the worker
//! writes and the planes read: the SRTP stream state persisted in a leg's
//! counter words, the keys a DTLS handshake exported, and the dataplane's
//! DTLS certificate fingerprint in the header. The values are
//! `super::secure`'s.

use std::sync::atomic::{fence, Ordering};

use super::layout::{ctr, LegCounters, SlotTable};
use super::secure::{get_bytes, put_bytes, SrtpDirection, SrtpKeying, SrtpStreamState};
use super::types::TableError;

impl LegCounters {
    /// Persists the main stream of one direction (worker only): two words,
    /// `ssrc | roc << 32` and `seq | srtcp_index << 16 | 1 << 63`.
    pub fn set_srtp_state(&self, dir: SrtpDirection, s: SrtpStreamState) {
        let at = Self::srtp_at(dir);
        self.set(at, u64::from(s.ssrc) | u64::from(s.roc) << 32);
        self.set(
            at + 1,
            u64::from(s.seq) | u64::from(s.srtcp_index & 0x7fff_ffff) << 16 | 1 << 63,
        );
    }

    /// The persisted stream of `dir`, if any (what a restarted worker
    /// resumes from).
    pub fn srtp_state(&self, dir: SrtpDirection) -> Option<SrtpStreamState> {
        let at = Self::srtp_at(dir);
        let (a, b) = (self.get(at), self.get(at + 1));
        (b >> 63 == 1).then_some(SrtpStreamState {
            ssrc: a as u32,
            roc: (a >> 32) as u32,
            seq: b as u16,
            srtcp_index: (b >> 16) as u32 & 0x7fff_ffff,
        })
    }

    fn srtp_at(dir: SrtpDirection) -> usize {
        match dir {
            SrtpDirection::Rx => ctr::SRTP_RX0,
            SrtpDirection::Tx => ctr::SRTP_TX0,
        }
    }
}

impl SlotTable {
    /// Publishes the SHA-256 digest of the dataplane's DTLS certificate
    /// (dataplane only, at start).
    pub fn set_dtls_fingerprint(&self, sha256: &[u8; 32]) {
        let h = self.header();
        let mut w = [0u64; 4];
        put_bytes(&mut w, sha256);
        for (a, v) in h.fingerprint.iter().zip(w) {
            a.store(v, Ordering::Relaxed);
        }
        h.fingerprint_set.store(1, Ordering::Release);
    }

    /// The SHA-256 digest of the running dataplane's DTLS certificate, for
    /// `a=fingerprint:sha-256`; `None` when no dataplane published one.
    pub fn dtls_fingerprint(&self) -> Option<[u8; 32]> {
        let h = self.header();
        if h.fingerprint_set.load(Ordering::Acquire) != 1 {
            return None;
        }
        let w: Vec<u64> = h
            .fingerprint
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        let mut d = [0u8; 32];
        get_bytes(&w, &mut d);
        Some(d)
    }

    /// Stores the keys a DTLS handshake on `leg` of slot `id` exported
    /// (worker only), under the block's own seqlock, so a restarted worker
    /// resumes the call without a new handshake. `None` clears them.
    pub fn set_dtls_keying(
        &self,
        id: u32,
        leg: usize,
        keys: Option<(SrtpKeying, SrtpKeying)>,
    ) -> Result<(), TableError> {
        let s = self.slot(id)?;
        let words = &s.dtls_keys[leg & 1];
        let seq = words[0].load(Ordering::Relaxed);
        words[0].store(seq.wrapping_add(1) | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let (rx, tx) = match &keys {
            Some((rx, tx)) => (SrtpKeying::encode(Some(rx)), SrtpKeying::encode(Some(tx))),
            None => ([0; 7], [0; 7]),
        };
        for (k, v) in rx.iter().chain(tx.iter()).enumerate() {
            words[1 + k].store(*v, Ordering::Relaxed);
        }
        words[0].store((seq | 1).wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// The DTLS-exported keys of `leg` of slot `id`: (unprotect, protect).
    pub fn dtls_keying(&self, id: u32, leg: usize) -> Option<(SrtpKeying, SrtpKeying)> {
        let s = self.slot(id).ok()?;
        let words = &s.dtls_keys[leg & 1];
        for _ in 0..1000 {
            let s1 = words[0].load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut w = [0u64; 14];
            for (k, v) in w.iter_mut().enumerate() {
                *v = words[1 + k].load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if words[0].load(Ordering::Relaxed) == s1 {
                return Some((
                    SrtpKeying::decode(&w[0..7])?,
                    SrtpKeying::decode(&w[7..14])?,
                ));
            }
        }
        None
    }
}
