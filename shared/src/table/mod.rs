//! The slot table: relay slots in shared memory, `/dev/shm/tern-<instance>`.
//!
//! One file, created by the dataplane and mapped by whoever programs it (the
//! signaling plane in the same or another process, the ng control socket).
//! Every field another process may touch is an atomic, so no plain read ever
//! races a write from another process.
//!
//! # File layout (all little-endian host order, 64-byte aligned blocks)
//!
//! ```text
//! offset 0                      Header          (768 bytes: fields, then the interface list)
//! offset 768                    WorkerShared[MAX_WORKERS] (256 bytes each)
//! offset 768 + 256*MAX_WORKERS  Slot[capacity]  (size_of::<Slot>() each)
//! then                          changed bitmap  (ceil(capacity / 64) u64 words)
//! ```
//!
//! The changed bitmap has bit `id % 64` of word `id / 64` set by whoever
//! changes slot `id` (before the owning worker's doorbell moves), and
//! cleared by the worker as it takes the change, so a doorbell costs the
//! worker the slots that changed, not a pass over all of its slots.
//!
//! A slot ([`SLOT_BYTES`] = 2432 bytes) is one control line, two legs of
//! eight configuration words, per leg five lines of security (SDES keys,
//! ICE credentials, the DTLS peer fingerprint) and two of DTLS-exported
//! keys, one of media services (transcoding, recording, playback), one line
//! of label (the Call-ID), and per leg
//! nine worker-owned lines: six of counters (traffic, drops, learned
//! addresses, SSRC state, RFC 3550 quality and its seqlock) and three of the
//! DTMF event ring.
//!
//! # Ports
//!
//! Slot `i` owns four consecutive ports starting at `port_lo + 4*i`:
//! leg A RTP (even), leg A RTCP, leg B RTP, leg B RTCP. With rtcp-mux, RTCP
//! rides on the RTP port and the odd port stays bound but unread.
//!
//! A slot's ports are bound before it is handed out: the owning worker
//! binds the four sockets of each free slot (a drop-all socket filter keeps
//! them from queueing anything) and stamps the slot with the header's
//! binding epoch. [`SlotTable::reserve_for`] takes only stamped slots, so
//! an answer never names a port another socket on the host holds; a port
//! that is taken makes the search move on, counted in
//! [`SlotTable::port_misses`].
//! Workers own contiguous blocks of slots, hence disjoint parts of the port
//! range, and both legs of a call live on the same worker.
//!
//! # Ownership
//!
//! - `state` (free / reserved / active / draining) changes only by CAS.
//! - Configuration is published under a per-slot seqlock (`seq` odd while
//!   writing). A writer takes the lock by CAS from even to odd, so two
//!   programmers can never interleave; readers retry while it is odd or moved.
//! - Per-leg counters are written only by the worker that owns the slot.
//!   When it frees a slot it adds the slot's final counters to its own
//!   retired totals (three worker-owned lines of `WorkerShared`, under a
//!   seqlock), so totals over retired plus live slots never go back
//!   ([`SlotTable::worker_totals`]).
//! - A released slot goes to `draining`; its owning worker cancels the
//!   slot's receives, filters and empties its sockets, and only then moves
//!   it to `free`, so no packet of the previous call reaches the next one.

mod file;
mod layout;
mod media;
mod observe;
mod play;
mod program;
mod secure;
mod secure_state;
pub mod testing;
mod types;
mod worker;

pub use layout::{LegCounters, SlotTable, LAYOUT_VERSION, MAGIC, SLOT_BYTES};
pub use media::{LegMedia, MediaCodec, MediaPlay, Transcode, MAX_LEG_CODECS};
pub use play::{DtmfPlay, MAX_PLAY_EVENTS};
pub use secure::{
    srtp_suite, srtp_suite_by_name, DtlsParams, DtlsRole, IceParams, IceToken, LegSecurity,
    SrtpDirection, SrtpKeying, SrtpStreamState, MASTER_MAX, SRTP_SUITES,
};
pub use types::*;

#[cfg(test)]
mod tests;
