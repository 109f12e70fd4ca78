//! The ring loop: reap every completion, decide, queue every send, then
//! one `submit_and_wait` (DESIGN.md "Dataplane"); and the re-arming of
//! multishot receives.

use std::time::Instant;

use io_uring::{cqueue, opcode, squeue, types};
use tracing::{debug, info};

use super::user_data::{self, Kind};
use super::{
    fixed_index, push_sqe, BellWait, Clock, Phase, Worker, CQ_ENTRIES, MIN_WAIT_US, TICK_MS,
    WAIT_MS,
};
use crate::RelayError;

/// Completions per iteration from which the worker counts as busy.
const BUSY_COMPLETIONS: usize = 16;
/// Completions a busy worker waits for (up to [`MIN_WAIT_US`]).
const BATCH_WANT: usize = 32;

impl Worker {
    /// Runs until `stop` returns true (checked at least every [`WAIT_MS`]),
    /// then cancels its receives, closes its sockets and returns, leaving
    /// slot states untouched so a restarted relay resumes the calls.
    ///
    /// Errors: [`RelayError::Ring`] when `io_uring_enter` fails for a
    /// reason other than a timeout or an interruption.
    pub fn run(mut self, stop: impl Fn() -> bool) -> Result<(), RelayError> {
        info!(
            worker = self.index,
            slots = self.slots.len(),
            "dataplane worker started"
        );
        let mut busy = false;
        let result = loop {
            if stop() {
                break Ok(());
            }
            // One clock reading per iteration: packets take its instant,
            // slot lifecycle and ticks its Unix ms.
            self.clock = Clock::read();
            let now = self.clock.unix_ms;
            // Configuration first, then packets: a datagram that woke the
            // worker right after a control plane published (an ng answer,
            // a block) is handled under the new configuration, not the
            // one from before it (which lost the first packet after an
            // answer, or let one through a block).
            let bell = self.table.doorbell(self.index);
            if bell != self.doorbell || self.rescan {
                self.doorbell = bell;
                self.rescan = false;
                self.scan_changed(now);
                if std::mem::take(&mut self.full_scan) {
                    self.attaching = true;
                    self.scan(now);
                    self.attaching = false;
                }
            }
            self.arm_bell();
            let n = self.reap(self.clock.at);
            if now.wrapping_sub(self.last_tick_ms) >= TICK_MS {
                self.tick(now);
            }
            if self.dtls.is_some() {
                self.poll_dtls(64);
            }
            let deadline = match (self.play_jitter(), self.play_media()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.flush_rearm();
            self.bufs.publish();
            if let Err(e) = self.wait(busy, deadline) {
                break Err(e);
            }
            busy = n >= BUSY_COMPLETIONS;
        };
        self.shutdown();
        info!(
            worker = self.index,
            forwarded = self.forwarded,
            dropped = self.dropped,
            "dataplane worker stopped"
        );
        result
    }

    /// One `io_uring_enter`: submits every queued SQE and waits for at least
    /// one completion, [`WAIT_MS`], or until `deadline` (the next jitter
    /// buffer playout), whichever comes first.
    fn wait(&mut self, busy: bool, deadline: Option<Instant>) -> Result<(), RelayError> {
        let mut wait_ns = WAIT_MS * 1_000_000;
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            wait_ns = wait_ns.min(left.as_nanos().min(u128::from(u32::MAX)) as u32);
        }
        let ts = types::Timespec::new().nsec(wait_ns);
        let mut args = types::SubmitArgs::new().timespec(&ts);
        let mut want = 1;
        if busy && self.min_wait && wait_ns >= MIN_WAIT_US * 1000 {
            args = args.min_wait_usec(MIN_WAIT_US);
            want = BATCH_WANT;
        }
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
                _ => Err(RelayError::Ring {
                    worker: self.index as usize,
                    source: e,
                }),
            },
        }
    }

    #[inline]
    pub(super) fn push(&mut self, e: &squeue::Entry) -> bool {
        push_sqe(&mut self.ring, e, &mut self.ring_ctr.sq_full)
    }

    /// Reaps every completion, received packets taken as arrived at `now`
    /// (the iteration's [`Clock::at`]); returns how many.
    pub(super) fn reap(&mut self, now: Instant) -> usize {
        let mut total = 0;
        loop {
            let mut batch = std::mem::take(&mut self.cqes);
            batch.clear();
            {
                let cq = self.ring.completion();
                batch.extend(cq.take(CQ_ENTRIES as usize));
            }
            let n = batch.len();
            for cqe in &batch {
                self.complete(cqe.user_data(), cqe.result(), cqe.flags(), now);
            }
            self.cqes = batch;
            total += n;
            if n < CQ_ENTRIES as usize {
                return total;
            }
        }
    }

    #[inline]
    fn complete(&mut self, ud: u64, res: i32, flags: u32, now: Instant) {
        match user_data::kind(ud) {
            Kind::Send => {
                let bid = user_data::send_bid(ud);
                self.bufs.recycle(bid);
                if res < 0 {
                    self.send_errors += 1;
                    self.dropped += 1;
                    if self.send_errors.is_power_of_two() {
                        debug!(
                            worker = self.index,
                            errors = self.send_errors,
                            "send failed: {}",
                            std::io::Error::from_raw_os_error(-res)
                        );
                    }
                }
            }
            Kind::Recv => self.complete_recv(ud, res, flags, now),
            Kind::JSend => {
                if res < 0 {
                    self.send_errors += 1;
                    self.dropped += 1;
                }
                let (store, entry) = user_data::jsend_parts(ud);
                self.jstore_done(store, entry);
            }
            Kind::Cancel => {} // their targets report themselves
            Kind::Doorbell => {
                // Woken (0), or the value had moved on (-EAGAIN): the loop
                // takes the change and queues the wait again.
                self.bell_wait = match res {
                    0 => BellWait::Idle,
                    r if r == -libc::EAGAIN || r == -libc::ECANCELED || r == -libc::EINTR => {
                        BellWait::Idle
                    }
                    r => {
                        debug!(
                            worker = self.index,
                            "no io_uring futex wait ({}): doorbell polled every {WAIT_MS} ms",
                            std::io::Error::from_raw_os_error(-r)
                        );
                        BellWait::Off
                    }
                };
            }
        }
    }

    /// Queues the futex wait on the doorbell, for the value just taken.
    fn arm_bell(&mut self) {
        if self.bell_wait != BellWait::Idle {
            return;
        }
        // FUTEX2_SIZE_U32, shared (no FUTEX2_PRIVATE): the programmer may
        // be another process.
        const FUTEX2_SIZE_U32: u32 = 0x02;
        let e = opcode::FutexWait::new(
            self.table.doorbell_futex(self.index),
            u64::from(self.doorbell as u32),
            u64::from(u32::MAX),
            FUTEX2_SIZE_U32,
        )
        .build()
        .user_data(user_data::DOORBELL_UD);
        if self.push(&e) {
            self.bell_wait = BellWait::Armed;
        }
    }

    #[inline]
    fn complete_recv(&mut self, ud: u64, res: i32, flags: u32, now: Instant) {
        let (idx, sock, gen) = user_data::recv_parts(ud);
        let bid = cqueue::buffer_select(flags).filter(|&b| self.bufs.take(b));
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            return;
        };
        let live = slot.gen == gen && slot.phase != Phase::Idle;
        if live && !cqueue::more(flags) && sock < slot.socks.len() {
            slot.socks[sock].armed = false;
            match slot.phase {
                Phase::Bound => {
                    // A filtered socket (another interface's, or an
                    // rtcp-mux leg's RTCP port) is not read: not re-armed.
                    let s = &slot.socks[sock];
                    if !s.queued && s.fd >= 0 && !s.filtered {
                        slot.socks[sock].queued = true;
                        self.ring_ctr.rearms += 1;
                        self.rearm.push((idx, sock as u8, gen));
                    }
                }
                Phase::Closing => self.maybe_finish_close(idx as usize),
                Phase::Idle => {}
            }
        }
        if res == -libc::ENOBUFS {
            self.ring_ctr.enobufs += 1;
        } else if res < 0 && res != -libc::ECANCELED {
            debug!(
                worker = self.index,
                "receive failed: {}",
                std::io::Error::from_raw_os_error(-res)
            );
        }
        let Some(bid) = bid else { return };
        let forwarding = self
            .slots
            .get(idx as usize)
            .is_some_and(|s| s.gen == gen && s.phase == Phase::Bound);
        if res < 0 || !forwarding || !self.forward(idx as usize, sock, bid, res as usize, now) {
            self.bufs.recycle(bid);
        }
    }

    /// Re-arms queued receives while the buffer ring has buffers (an armed
    /// receive with none would fail at once with `-ENOBUFS`).
    fn flush_rearm(&mut self) {
        if self.rearm.is_empty() || self.bufs.available() == 0 {
            return;
        }
        // Swap in the (empty, preallocated) scratch list: `arm` may queue
        // again on `self.rearm`.
        let mut list = std::mem::take(&mut self.rearm_scratch);
        std::mem::swap(&mut list, &mut self.rearm);
        for &(idx, sock, gen) in &list {
            self.arm(idx as usize, usize::from(sock), gen);
        }
        list.clear();
        self.rearm_scratch = list;
    }

    /// Arms the multishot receive of socket `sock` of slot `idx` if it is
    /// still bound in generation `gen`.
    fn arm(&mut self, idx: usize, sock: usize, gen: u16) {
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        let Some(s) = slot.socks.get_mut(sock) else {
            return;
        };
        s.queued = false;
        if slot.gen != gen || slot.phase != Phase::Bound || s.fd < 0 || s.armed {
            return;
        }
        let (hdr, bgid) = (&*self.recv_hdr, self.bufs.bgid());
        let sqe = if s.fixed {
            let k = fixed_index(idx, sock, self.per_slot);
            opcode::RecvMsgMulti::new(types::Fixed(k), hdr, bgid).build()
        } else {
            opcode::RecvMsgMulti::new(types::Fd(s.fd), hdr, bgid).build()
        }
        .user_data(user_data::recv_ud(idx as u32, sock, gen));
        s.armed = true;
        if !self.push(&sqe) {
            // Try again at the next iteration.
            if let Some(slot) = self.slots.get_mut(idx) {
                slot.socks[sock].armed = false;
                slot.socks[sock].queued = true;
            }
            self.rearm.push((idx as u32, sock as u8, gen));
        }
    }
}
