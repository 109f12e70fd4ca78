//! The contract between tern's two planes.
//!
//! - [`rtp`] and [`rtcp`]: zero-copy packet views (RFC 3550 §5.1, §6.4).
//! - [`table`]: the slot table in shared memory, `/dev/shm/tern-<instance>`,
//!   through which the signaling plane (or the ng control socket) programs
//!   relay slots that the dataplane workers forward.
//! - [`sdp`]: the line-preserving SDP reader and writer (RFC 8866) whose
//!   rewrite policies live in each plane; [`codec`]: the RFC 3551 static
//!   payload types.
//! - [`clock`]: wall-clock Unix time in ms.
//!
//! Neither plane depends on the other; both depend on this crate.

pub mod clock;
pub mod codec;
pub mod iface;
pub mod prompt;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod table;

/// The IP TOS byte (IPv6 traffic class) of every media packet the relay
/// sends: DSCP EF (46) with ECN 0, rtpengine's default `--tos=184`. The
/// dataplane sets it on each media socket at bind.
pub const MEDIA_TOS: u8 = 0xb8;
