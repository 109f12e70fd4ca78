//! The programming side (ng core, B2BUA): reserve, publish, release, label.
//! No syscall: a seqlock write, then the owning worker's doorbell.

use std::sync::atomic::{fence, Ordering};

use super::layout::*;
use super::types::*;

impl SlotTable {
    pub(super) fn cas_state(
        &self,
        id: u32,
        from: SlotState,
        to: SlotState,
    ) -> Result<(), TableError> {
        let s = self.slot(id)?;
        s.ctl
            .state
            .compare_exchange(from as u32, to as u32, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(|v| TableError::WrongState {
                slot: id,
                state: SlotState::from_u32(v),
            })
    }

    /// [`SlotTable::reserve_for`] with [`Owner::Unspecified`].
    ///
    /// Errors: [`TableError::Full`].
    pub fn reserve(&self) -> Result<u32, TableError> {
        self.reserve_for(Owner::Unspecified)
    }

    /// Takes a free slot whose ports are bound, for `owner`, starting the
    /// search at a random index so that the ports handed out cannot be
    /// predicted. Free → Reserved by CAS.
    ///
    /// Once a dataplane has started on the table (epoch ≠ 0), a free slot
    /// is taken only if its worker stamped it bound in the current epoch:
    /// its four sockets are open, so the ports put into SDP are the
    /// relay's. A free slot that is not (another socket on the host holds
    /// one of its ports, or no dataplane runs now) is passed over and
    /// counted in [`SlotTable::port_misses`]. The search visits each slot
    /// at most once, so it is bounded by the capacity and fails only when
    /// no bound free slot exists. On a table no dataplane ever started
    /// (epoch 0: tools, tests) any free slot is taken.
    ///
    /// Errors: [`TableError::Full`].
    pub fn reserve_for(&self, owner: Owner) -> Result<u32, TableError> {
        self.reserve_from(owner, rand::random())
    }

    /// [`SlotTable::reserve_for`] with the search starting at slot `seed %
    /// capacity`: a sans-IO core passes a value from the RNG it was handed,
    /// so its tests are deterministic.
    ///
    /// Errors: [`TableError::Full`].
    pub fn reserve_from(&self, owner: Owner, seed: u32) -> Result<u32, TableError> {
        let epoch = self.epoch();
        let start = seed % self.capacity;
        let mut misses = 0u64;
        let mut found = Err(TableError::Full);
        for k in 0..self.capacity {
            let id = (start + k) % self.capacity;
            let Ok(s) = self.slot(id) else { continue };
            if s.ctl.state.load(Ordering::Acquire) != SlotState::Free as u32 {
                continue;
            }
            if epoch != 0 && s.ctl.bound_epoch.load(Ordering::Acquire) != epoch {
                misses += 1;
                continue;
            }
            if self
                .cas_state(id, SlotState::Free, SlotState::Reserved)
                .is_ok()
            {
                s.ctl.generation.fetch_add(1, Ordering::AcqRel);
                s.ctl.owner.store(owner as u32, Ordering::Release);
                write_label(s, "");
                found = Ok(id);
                break;
            }
        }
        if misses > 0 {
            self.header()
                .port_misses
                .fetch_add(misses, Ordering::Relaxed);
        }
        found
    }

    /// Counts `n` slots that no control plane claimed after a restart and
    /// that were released by the media timeout.
    pub fn count_reclaimed(&self, n: u64) {
        self.header().reclaimed.fetch_add(n, Ordering::Relaxed);
    }

    /// Publishes `cfg` for slot `id` under the seqlock, moves a Reserved slot
    /// to Active, and rings the owning worker's doorbell. No syscall.
    ///
    /// Errors: [`TableError::NoSuchSlot`]; [`TableError::WrongState`] if the
    /// slot is Free or Draining.
    pub fn publish(&self, id: u32, cfg: &SlotConfig) -> Result<(), TableError> {
        let s = self.slot(id)?;
        let st = self.state(id);
        if !matches!(st, SlotState::Reserved | SlotState::Active) {
            return Err(TableError::WrongState {
                slot: id,
                state: st,
            });
        }
        self.write_config(s, cfg);
        if st == SlotState::Reserved {
            self.cas_state(id, SlotState::Reserved, SlotState::Active)?;
        }
        self.ring(id);
        Ok(())
    }

    pub(super) fn write_config(&self, s: &Slot, cfg: &SlotConfig) {
        // Take the writer side: CAS even -> odd (bounded spin; writers of one
        // slot are one programmer, so contention is only a misuse).
        let mut seq = s.ctl.seq.load(Ordering::Relaxed);
        loop {
            if seq & 1 == 0 {
                match s.ctl.seq.compare_exchange_weak(
                    seq,
                    seq.wrapping_add(1),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(v) => seq = v,
                }
            } else {
                std::hint::spin_loop();
                seq = s.ctl.seq.load(Ordering::Relaxed);
            }
        }
        fence(Ordering::Release);
        for (leg, c) in cfg.legs.iter().enumerate() {
            for (k, w) in c.encode().iter().enumerate() {
                s.cfg[leg][k].store(*w, Ordering::Relaxed);
            }
            let mut words = super::secure::encode(&c.secure);
            super::play::encode(
                &c.play,
                &mut words[super::play::PLAY_AT..super::play::PLAY_AT + super::play::PLAY_WORDS],
            );
            for (k, w) in words.iter().enumerate() {
                s.sec[leg][k].store(*w, Ordering::Relaxed);
            }
            for (k, w) in super::media::encode(&c.media).iter().enumerate() {
                s.media[leg][k].store(*w, Ordering::Relaxed);
            }
        }
        s.ctl.tag.store(cfg.tag, Ordering::Relaxed);
        s.ctl.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Releases slot `id` (Reserved or Active → Draining) and rings its
    /// worker, which closes the sockets and frees the slot.
    ///
    /// Errors: [`TableError::WrongState`] if already Free or Draining.
    pub fn release(&self, id: u32) -> Result<(), TableError> {
        let st = self.state(id);
        match st {
            SlotState::Reserved | SlotState::Active => {
                self.cas_state(id, st, SlotState::Draining)?;
                if let Ok(s) = self.slot(id) {
                    write_label(s, "");
                }
            }
            _ => {
                return Err(TableError::WrongState {
                    slot: id,
                    state: st,
                })
            }
        }
        self.ring(id);
        Ok(())
    }

    /// Labels slot `id` with `call_id` (truncated to [`LABEL_BYTES`] at a
    /// character boundary), for logs and listings. Written by whoever
    /// publishes the slot; cleared when the slot is reserved or released.
    /// Writers of one slot are one programmer, as for [`SlotTable::publish`].
    /// A slot past capacity is ignored.
    pub fn set_call_id(&self, id: u32, call_id: &str) {
        if let Ok(s) = self.slot(id) {
            write_label(s, call_id);
        }
    }

    /// Marks slot `id` changed, then moves its worker's doorbell: a worker
    /// that sees the new doorbell value also sees the bit. A worker asleep
    /// on the doorbell (a futex wait on its low 32 bits,
    /// [`SlotTable::doorbell_futex`]) is woken, so the change is taken
    /// before the next packet, not at the worker's next timeout.
    pub(super) fn ring(&self, id: u32) {
        if let Some(w) = self.changed(id as usize / 64) {
            w.fetch_or(1 << (id % 64), Ordering::Release);
        }
        let bell = &self.worker(self.worker_of(id)).doorbell;
        bell.fetch_add(1, Ordering::Release);
        // SAFETY: FUTEX_WAKE only reads the address, a live u32 inside
        // the mapping (the doorbell's low half); not FUTEX_PRIVATE, since
        // the worker may be another process sharing the mapping.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                futex_word(bell),
                libc::FUTEX_WAKE,
                i32::MAX,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            );
        }
    }

    /// The address of worker `w`'s doorbell as a 32-bit futex word (its
    /// low half, which changes on every ring), for a futex wait
    /// (`FUTEX2_SIZE_U32`, shared). The pointer is valid while the table
    /// is mapped.
    pub fn doorbell_futex(&self, w: u32) -> *const u32 {
        futex_word(&self.worker(w).doorbell)
    }
}

/// The low 32 bits of `a` (the first four bytes on a little-endian
/// machine, the last four on a big-endian one).
fn futex_word(a: &std::sync::atomic::AtomicU64) -> *const u32 {
    let p = a.as_ptr() as *const u32;
    if cfg!(target_endian = "little") {
        p
    } else {
        p.wrapping_add(1)
    }
}

/// Writes the label of `s` under its seqlock.
fn write_label(s: &Slot, label: &str) {
    let mut n = label.len().min(LABEL_BYTES);
    while !label.is_char_boundary(n) {
        n -= 1;
    }
    let mut b = [0u8; LABEL_BYTES];
    b[..n].copy_from_slice(&label.as_bytes()[..n]);
    let seq = s.ctl.label_seq.fetch_add(1, Ordering::Acquire);
    fence(Ordering::Release);
    for (k, w) in s.label.iter().enumerate() {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[k * 8..k * 8 + 8]);
        w.store(u64::from_le_bytes(v), Ordering::Relaxed);
    }
    s.ctl.label_len.store(n as u32, Ordering::Relaxed);
    s.ctl
        .label_seq
        .store(seq.wrapping_add(2) & !1, Ordering::Release);
}
