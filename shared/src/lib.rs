//! The contract between tern's two planes.
//!
//! - [`rtp`] and [`rtcp`]: zero-copy packet views (RFC 3550 §5.1, §6.4).
//! - [`table`]: the slot table in shared memory, `/dev/shm/tern-<instance>`,
//!   through which the signaling plane (or the ng control socket) programs
//!   relay slots that the dataplane workers forward.
//!
//! Neither plane depends on the other; both depend on this crate.

pub mod rtcp;
pub mod rtp;
pub mod table;
