//! A slot's life on its worker: free slots' ports bound ahead behind a
//! drop-all filter ("bound before answered": a slot is handed out only
//! once its ports are stamped bound), opened and reconfigured as the table
//! says, closed by cancelling its receives and, once every receive has
//! ended, filtered and freed; and the tick (heartbeat, publishing, bind
//! retries, close timeouts).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{opcode, types};
use tern_shared::table::SlotState;
use tracing::{debug, warn};

use super::user_data;
use super::{
    fixed_index, leg_iface, now_ms, Clock, Phase, Sock, Worker, BIND_RETRY_MS, CLOSE_TIMEOUT_MS,
    FREE_BIND_FIRST_RETRY_MS, FREE_BIND_RETRY_MS, LOSS_INTERVAL_MS,
};
use crate::inject::DtmfPlayer;
use crate::leg::{Forwarder, LegRestore};
use crate::quality::feed::SlotFeed;
use crate::sockets::{bind_udp, discard_queued, drop_all, pass_all};

/// Most datagrams discarded from one socket when its slot is freed (what
/// arrived between the receive's cancellation and the filter).
const DISCARD_MAX: usize = 4096;

/// Longest time [`Worker::attach`] retries free slots' failed binds, ms.
const ATTACH_RETRY_MS: u64 = 500;

impl Worker {
    /// Takes every slot of the worker as the table has it: binds the free
    /// slots' ports (stamping them bound) and reattaches active ones. Done
    /// once, before the worker reports ready; [`Worker::run`] does it
    /// itself when this was not called.
    ///
    /// Right after a restart the previous process's sockets can still hold
    /// ports while the kernel tears down its io_uring, so free slots whose
    /// binds failed are retried here for up to [`ATTACH_RETRY_MS`] before
    /// the worker reports ready (then by the tick's backoff).
    pub fn attach(&mut self) {
        if !std::mem::take(&mut self.full_scan) {
            return;
        }
        self.attaching = true;
        self.scan(now_ms());
        self.attaching = false;
        for _ in 0..ATTACH_RETRY_MS / 50 {
            let pending: Vec<usize> = (0..self.slots.len())
                .filter(|&i| {
                    self.slots[i].phase == Phase::Idle
                        && self.slots[i].bind_pending
                        && self.table.state(self.first + i as u32) == SlotState::Free
                })
                .collect();
            if pending.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            let now = now_ms();
            for i in pending {
                self.prebind(i, now);
            }
        }
    }

    /// Compares every slot of the worker with the table.
    /// Every slot: at start, when slots may be active from before a restart.
    pub(super) fn scan(&mut self, now: u64) {
        for idx in 0..self.slots.len() {
            self.sync_slot(idx, now);
        }
    }

    /// The slots marked changed since the last call: one atomic per 64
    /// slots, then only the changed ones, so a doorbell's cost does not
    /// grow with the worker's slot count.
    pub(super) fn scan_changed(&mut self, now: u64) {
        let first = self.first as usize;
        let end = first + self.slots.len();
        if end == first {
            return;
        }
        for k in first / 64..=(end - 1) / 64 {
            let lo = (k * 64).max(first) - k * 64;
            let hi = (k * 64 + 64).min(end) - k * 64;
            let mut bits = self.table.take_changed(k, bit_range(lo, hi));
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.sync_slot(k * 64 + b - first, now);
            }
        }
    }

    fn sync_slot(&mut self, idx: usize, now: u64) {
        let id = self.first + idx as u32;
        let state = self.table.state(id);
        let phase = self.slots[idx].phase;
        match (state, phase) {
            (SlotState::Free, Phase::Idle) if !self.slots[idx].bind_pending => {
                self.prebind(idx, now)
            }
            (SlotState::Active, Phase::Idle) => self.open_slot(idx, now),
            (SlotState::Active, Phase::Bound)
                if self.table.config_seq(id) != self.slots[idx].seq =>
            {
                self.reconfigure(idx, now)
            }
            (SlotState::Draining, Phase::Idle) => {
                if let Err(e) = self.table.finish_drain(id) {
                    debug!(
                        worker = self.index,
                        slot = id,
                        call_id = %self.slots[idx].call_id,
                        "finish_drain: {e}"
                    );
                }
            }
            (SlotState::Draining, Phase::Bound) => self.begin_close(idx, true, now),
            (SlotState::Free | SlotState::Reserved, Phase::Bound) => {
                self.begin_close(idx, false, now)
            }
            (SlotState::Draining, Phase::Closing) => self.slots[idx].drain = true,
            _ => {}
        }
    }

    /// Active slot seen for the first time (or after a restart): take its
    /// configuration, restore learned peers and SSRC state from its
    /// counters, bind its sockets and arm them.
    fn open_slot(&mut self, idx: usize, now: u64) {
        let id = self.first + idx as u32;
        let Ok((cfg, seq)) = self.table.read_config(id) else {
            return;
        };
        let mut restore = [LegRestore::default(); 2];
        for (leg, r) in restore.iter_mut().enumerate() {
            if let Ok(c) = self.table.counters(id, leg) {
                *r = LegRestore {
                    learned_rtp: c.learned(false),
                    learned_rtcp: c.learned(true),
                    ssrc_state: c.ssrc_state(),
                };
            }
        }
        let slot = &mut self.slots[idx];
        slot.fwd = Some(Forwarder::new(cfg, restore));
        slot.seq = seq;
        slot.phase = Phase::Bound;
        slot.gen = slot.gen.wrapping_add(1);
        slot.drain = false;
        slot.sec = None;
        // Found active at attach: a restarted worker resumes its streams.
        let resume = self.attaching;
        self.sync_secure(idx, &cfg, resume);
        // A restarted worker does not play again what was requested
        // before it started.
        self.slots[idx].play = [None, None];
        self.slots[idx].played = [0, 0];
        self.sync_play(idx, &cfg, resume);
        let slot = &mut self.slots[idx];
        // A fresh slot's counters are zero; a restarted worker's carry on.
        *slot.q = SlotFeed::resume(&[self.table.quality(id, 0), self.table.quality(id, 1)]);
        slot.call_id = self.table.call_id(id).unwrap_or_default();
        debug!(
            worker = self.index,
            slot = id,
            call_id = %slot.call_id,
            "slot active"
        );
        self.sync_transcode(idx, Some(&cfg));
        self.sync_jitter(idx, false);
        self.sync_media_play(idx, Some(&cfg), resume);
        self.bind_missing(idx, now);
        self.table.set_applied(id, seq);
    }

    /// Queues the events of `cfg`'s play requests not taken yet (a
    /// request's `id` counts every event asked for on the leg, so the
    /// new ones are the last `id - taken` of its list, however many
    /// requests were coalesced into one configuration). `resume`: only
    /// takes note of them. A leg without a telephone-event payload type
    /// cannot carry events: they are dropped.
    fn sync_play(&mut self, idx: usize, cfg: &tern_shared::table::SlotConfig, resume: bool) {
        let slot = &mut self.slots[idx];
        for (leg, l) in cfg.legs.iter().enumerate() {
            let Some(req) = l.play else { continue };
            let new = req.id.wrapping_sub(slot.played[leg]);
            if new == 0 || new as i32 <= 0 {
                continue;
            }
            slot.played[leg] = req.id;
            if resume {
                continue;
            }
            if l.dtmf_pt.is_none() {
                warn!(
                    worker = self.index,
                    call_id = %slot.call_id,
                    leg,
                    "play DTMF: the leg has no telephone-event payload type"
                );
                continue;
            }
            let player =
                slot.play[leg].get_or_insert_with(|| Box::new(DtmfPlayer::new(l.clock_rate)));
            let n = player.push(&req, new as usize);
            debug!(call_id = %slot.call_id, leg, id = req.id, queued = n, "play DTMF");
        }
    }

    /// A new configuration for a bound slot.
    fn reconfigure(&mut self, idx: usize, now: u64) {
        let id = self.first + idx as u32;
        let Ok((cfg, seq)) = self.table.read_config(id) else {
            return;
        };
        let slot = &mut self.slots[idx];
        slot.seq = seq;
        if let Some(c) = self.table.call_id(id) {
            slot.call_id = c;
        }
        let Some(fwd) = slot.fwd.as_mut() else {
            return;
        };
        let ch = fwd.apply_config(cfg);
        self.sync_secure(idx, &cfg, false);
        self.sync_play(idx, &cfg, false);
        let slot = &mut self.slots[idx];
        let Some(fwd) = slot.fwd.as_mut() else {
            return;
        };
        for leg in 0..2 {
            let Ok(c) = self.table.counters(id, leg) else {
                continue;
            };
            if ch.reset_rtp[leg] {
                c.set_learned(false, None);
            }
            if ch.reset_rtcp[leg] {
                c.set_learned(true, None);
            }
            if ch.ssrc_reset[leg] {
                c.set_ssrc_state(fwd.leg(leg).rewriter.map_or([0; 3], |r| r.to_state()));
            }
        }
        self.sync_transcode(idx, Some(&cfg));
        self.sync_jitter(idx, false);
        self.sync_media_play(idx, Some(&cfg), false);
        // rtcp-mux may have been switched off: read the RTCP ports.
        self.bind_missing(idx, now);
        self.table.set_applied(id, seq);
    }

    /// Binds the sockets free slot `idx` lacks (its four ports on every
    /// interface), each with the drop-all filter, and stamps the slot
    /// bound in the table once all are,
    /// so it may be handed out. A port another socket holds is retried
    /// after [`FREE_BIND_FIRST_RETRY_MS`], doubling up to
    /// [`FREE_BIND_RETRY_MS`]; until then the slot is passed over.
    fn prebind(&mut self, idx: usize, now: u64) {
        let id = self.first + idx as u32;
        let mut failed = 0;
        for k in 0..self.per_slot {
            if self.slots[idx].socks[k].fd >= 0 {
                continue;
            }
            if let Err(e) = self.bind_sock(idx, k, true) {
                failed += 1;
                debug!(worker = self.index, slot = id, "bind (free slot): {e}");
            }
        }
        let slot = &mut self.slots[idx];
        slot.bind_pending = failed > 0;
        slot.bind_backoff_ms = if failed == 0 {
            0
        } else {
            (slot.bind_backoff_ms * 2).clamp(FREE_BIND_FIRST_RETRY_MS, FREE_BIND_RETRY_MS)
        };
        slot.next_bind_ms = now + slot.bind_backoff_ms;
        if failed == 0 {
            self.table.set_bound(id, self.epoch);
        }
    }

    /// The address socket `k` of slot `idx` binds: its interface's
    /// address and its port from the table.
    fn sock_addr(&self, idx: usize, k: usize) -> SocketAddr {
        let id = self.first + idx as u32;
        let ports = self.table.ports(id, (k >> 1) & 1);
        let port = if k & 1 == 1 { ports.rtcp } else { ports.rtp };
        let ip = self.ifaces.get(k >> 2).copied().unwrap_or(self.ifaces[0]);
        SocketAddr::new(ip, port)
    }

    /// Binds socket `k` of slot `idx` ([`Worker::sock_addr`]), filtered
    /// or not, and installs it in the fixed-file table.
    fn bind_sock(&mut self, idx: usize, k: usize, filtered: bool) -> std::io::Result<()> {
        let at = self.sock_addr(idx, k);
        let sock = bind_udp(at.ip(), at.port(), filtered).inspect_err(|_| {
            self.bind_failures += 1;
        })?;
        let fd = sock.as_raw_fd();
        let fixed = self.fixed_files
            && self
                .ring
                .submitter()
                .register_files_update(fixed_index(idx, k, self.per_slot), &[fd])
                .is_ok();
        self.slots[idx].socks[k] = Sock {
            sock: Some(sock),
            fd,
            v6: at.is_ipv6(),
            armed: false,
            queued: false,
            filtered,
            fixed,
        };
        Ok(())
    }

    /// Makes every socket the slot's configuration reads ready: bound (a
    /// free slot's are already), unfiltered, and queued for arming. The
    /// RTCP socket of an rtcp-mux leg, and every socket of a leg on
    /// another interface than the leg's, stays bound and gets the filter
    /// (a receive still armed on it from before waits, reading nothing).
    fn bind_missing(&mut self, idx: usize, now: u64) {
        let id = self.first + idx as u32;
        let Some(fwd) = self.slots[idx].fwd.as_ref() else {
            return;
        };
        let mux = [fwd.config().legs[0].rtcp_mux, fwd.config().legs[1].rtcp_mux];
        let n = self.ifaces.len();
        let on = [leg_iface(fwd, 0, n), leg_iface(fwd, 1, n)];
        let mut failed = false;
        for k in 0..self.per_slot {
            let leg = (k >> 1) & 1;
            let read = k >> 2 == on[leg] && !(k & 1 == 1 && mux[leg]);
            if self.slots[idx].socks[k].fd < 0 {
                if let Err(e) = self.bind_sock(idx, k, !read) {
                    failed = true;
                    if !self.slots[idx].bind_pending {
                        warn!(
                            worker = self.index,
                            slot = id,
                            call_id = %self.slots[idx].call_id,
                            "bind {}: {e}; retrying every {BIND_RETRY_MS} ms",
                            self.sock_addr(idx, k)
                        );
                    }
                    continue;
                }
            }
            let slot = &mut self.slots[idx];
            let s = &mut slot.socks[k];
            if read && s.filtered {
                if let Some(sock) = s.sock.as_ref() {
                    match pass_all(sock) {
                        Ok(()) => s.filtered = false,
                        Err(e) => warn!(worker = self.index, slot = id, "detach filter: {e}"),
                    }
                }
            } else if !read && !s.filtered {
                if let Some(sock) = s.sock.as_ref() {
                    match drop_all(sock) {
                        Ok(()) => s.filtered = true,
                        Err(e) => warn!(worker = self.index, slot = id, "attach filter: {e}"),
                    }
                }
            }
            if read && !s.filtered && !s.armed && !s.queued {
                s.queued = true;
                self.rearm.push((idx as u32, k as u8, slot.gen));
            }
        }
        let slot = &mut self.slots[idx];
        slot.bind_pending = failed;
        slot.next_bind_ms = now + BIND_RETRY_MS;
    }

    /// Starts closing a slot: cancels its armed receives. Sockets are closed
    /// (and a drained slot freed) once every receive reported its end.
    fn begin_close(&mut self, idx: usize, drain: bool, now: u64) {
        // Last statistics and any key press whose end packets were lost.
        let id = self.first + idx as u32;
        for leg in 0..2 {
            let q = &mut self.slots[idx].q;
            q.flush_dtmf(leg, now);
            while let Some(ev) = q.poll_dtmf(leg) {
                if let Ok(c) = self.table.counters(id, leg) {
                    c.push_dtmf(&ev);
                }
            }
        }
        if self.slots[idx].q.is_dirty() {
            self.publish_quality(idx, false);
        }
        self.sync_jitter(idx, true);
        self.sync_transcode(idx, None);
        self.sync_media_play(idx, None, false);
        let slot = &mut self.slots[idx];
        slot.phase = Phase::Closing;
        slot.drain = drain;
        slot.closing_since_ms = now;
        slot.bind_pending = false;
        let gen = slot.gen;
        for k in 0..self.per_slot {
            if self.slots[idx].socks[k].armed {
                let sqe = opcode::AsyncCancel::new(user_data::recv_ud(idx as u32, k, gen))
                    .build()
                    .user_data(user_data::CANCEL_UD);
                if !self.push(&sqe) {
                    warn!(worker = self.index, "could not queue a cancel");
                }
            }
        }
        self.maybe_finish_close(idx);
    }

    /// Finishes closing a slot once none of its sockets has a receive
    /// outstanding: the sockets stay bound (the slot is free for the next
    /// call at once), get the drop-all filter, and lose whatever the
    /// previous call left queued. Frees the slot in the table if it was
    /// released, stamped bound when all four sockets are.
    pub(super) fn maybe_finish_close(&mut self, idx: usize) {
        let slot = &self.slots[idx];
        if slot.phase != Phase::Closing || slot.socks.iter().any(|s| s.armed) {
            return;
        }
        let id = self.first + idx as u32;
        let mut left = 0;
        for k in &mut self.slots[idx].socks {
            let Some(sock) = k.sock.as_ref() else {
                continue;
            };
            if !k.filtered {
                match drop_all(sock) {
                    Ok(()) => k.filtered = true,
                    Err(e) => warn!(worker = self.index, slot = id, "attach filter: {e}"),
                }
            }
            left += discard_queued(sock, DISCARD_MAX);
        }
        if left > 0 {
            debug!(
                worker = self.index,
                slot = id,
                left,
                "datagrams of the ended call discarded"
            );
        }
        if self.slots[idx].sec.take().is_some() {
            self.stop_dtls(idx);
        }
        let slot = &mut self.slots[idx];
        let all_bound = slot.socks.iter().all(|k| k.fd >= 0 && k.filtered);
        slot.fwd = None;
        slot.phase = Phase::Idle;
        slot.bind_pending = false;
        slot.gen = slot.gen.wrapping_add(1);
        let drain = std::mem::take(&mut slot.drain);
        let call_id = std::mem::take(&mut slot.call_id);
        // Stamp before the slot is free, so a programmer never finds it free
        // and unstamped (a miss) while its ports are in fact ready.
        self.table
            .set_bound(id, if all_bound { self.epoch } else { 0 });
        if drain {
            match self.table.finish_drain(id) {
                Ok(()) => debug!(worker = self.index, slot = id, %call_id, "slot drained"),
                Err(e) => debug!(worker = self.index, slot = id, %call_id, "finish_drain: {e}"),
            }
        }
        // The slot may have been reused meanwhile: look at it again.
        self.table.mark_changed(id);
        self.rescan = true;
    }

    /// Publishes slot `idx`'s statistics (with the E-model MOS) to its
    /// counter lines; `roll` also closes the loss interval.
    fn publish_quality(&mut self, idx: usize, roll: bool) {
        let id = self.first + idx as u32;
        let reports = self.slots[idx].q.publish(roll);
        for (leg, r) in reports.iter().enumerate() {
            let Ok(c) = self.table.counters(id, leg) else {
                continue;
            };
            c.set_quality(&r.quality);
            c.set_ssrc_in(r.ssrc);
        }
    }

    /// Heartbeat, bind retries and close timeouts.
    pub(super) fn tick(&mut self, now: u64) {
        self.last_tick_ms = now;
        self.table
            .set_worker_send_errors(self.index, self.send_errors);
        self.table.set_worker_ring(self.index, self.ring_ctr);
        self.publish_record();
        self.table
            .worker_tick(self.index, now, self.forwarded, self.dropped);
        let roll = now.wrapping_sub(self.last_roll_ms) >= LOSS_INTERVAL_MS;
        if roll {
            self.last_roll_ms = now;
        }
        let mut unbound = 0;
        for idx in 0..self.slots.len() {
            if self.slots[idx].phase == Phase::Bound && (self.slots[idx].q.is_dirty() || roll) {
                self.publish_quality(idx, roll);
            }
            let s = &mut self.slots[idx];
            match s.phase {
                Phase::Bound if s.bind_pending && now >= s.next_bind_ms => {
                    self.bind_missing(idx, now)
                }
                Phase::Idle if s.bind_pending => {
                    if now >= s.next_bind_ms
                        && self.table.state(self.first + idx as u32) == SlotState::Free
                    {
                        self.prebind(idx, now);
                    }
                    unbound += u64::from(self.slots[idx].bind_pending);
                }
                Phase::Closing if now.wrapping_sub(s.closing_since_ms) > CLOSE_TIMEOUT_MS => {
                    warn!(
                        worker = self.index,
                        slot = self.first + idx as u32,
                        call_id = %s.call_id,
                        "receives not cancelled in time; closing anyway"
                    );
                    for k in &mut s.socks {
                        k.armed = false;
                    }
                    self.maybe_finish_close(idx);
                }
                _ => {}
            }
        }
        if unbound != self.unbound {
            if unbound > self.unbound {
                warn!(
                    worker = self.index,
                    unbound,
                    "free slots with a port another socket holds are not handed out \
                     (retried, backing off to every {FREE_BIND_RETRY_MS} ms); keep --ports out of \
                     net.ipv4.ip_local_port_range or list it in ip_local_reserved_ports"
                );
            }
            self.unbound = unbound;
            self.table.set_worker_unbound(self.index, unbound);
        }
    }

    /// Cancels every receive and waits (bounded) for them to end, without
    /// touching slot states in the table.
    pub(super) fn shutdown(&mut self) {
        let now = now_ms();
        for idx in 0..self.slots.len() {
            if self.slots[idx].phase == Phase::Bound {
                // Odd: never a published seqlock value, so the slot reads
                // as not applied until a worker takes it again.
                self.table.set_applied(self.first + idx as u32, u32::MAX);
                self.begin_close(idx, false, now);
            }
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while self
            .slots
            .iter()
            .any(|s| s.phase == Phase::Closing && s.socks.iter().any(|k| k.armed))
            && Instant::now() < deadline
        {
            self.bufs.publish();
            let ts = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.clock = Clock::read();
            self.reap(self.clock.at);
        }
        if self.fixed_files {
            // Drops the table's references, so the ports are free as soon
            // as the descriptors below are closed.
            let _ = self.ring.submitter().unregister_files();
            self.fixed_files = false;
        }
        for s in &mut self.slots {
            for k in &mut s.socks {
                k.close();
            }
            s.phase = Phase::Idle;
        }
    }
}

/// Bits `lo..hi` of a word set (`lo < hi <= 64`).
fn bit_range(lo: usize, hi: usize) -> u64 {
    let below_hi = if hi >= 64 { u64::MAX } else { (1u64 << hi) - 1 };
    below_hi & !((1u64 << lo) - 1)
}
