//! The ng control socket: rtpengine's control protocol, so that stock
//! Kamailio (`rtpengine` module) and OpenSIPS, or rtpengine's own
//! `rtpengine-ng-client`, can drive tern as a drop-in rtpengine.
//!
//! # Wire format
//!
//! `<cookie> <bencode dictionary>` over UDP (one message per datagram) and
//! over TCP (messages back to back; the end of the dictionary ends the
//! message). The reply is `<cookie> <bencode dictionary>` with the same
//! cookie. Commands: `ping`, `offer`, `answer`, `delete`, `query`, `list`,
//! `statistics` (see [`core`] for what each does and [`NgCore`] for the
//! retransmission cache and the media timeout).
//!
//! # Keys and flags
//!
//! `docs/NG.md` is the compatibility table: one row per rtpengine 10.5
//! command, key, flag and value, each supported, partial (how) or not
//! supported. Every key tern reads is accepted under each spelling
//! rtpengine accepts (`keys.rs`); `rtpp-flags` is expanded into the same
//! keys first (`rtpp.rs`). What tern does not implement is never dropped
//! silently: it is named in the reply's one `warning` and counted. Among
//! what works: interfaces (`direction`, `from-interface`/`to-interface`,
//! `address family`, `media address`), `replace`, `rtcp-mux`, `ICE`
//! (ICE-lite), `DTLS`, `SDES`, `transport-protocol`, `codec` (strip, offer,
//! except, mask; no transcoding), forks (`to-tag`, `via-branch`, partial
//! `delete`), `supports: [load limit]` with `--max-sessions`, the learning
//! flags (`trust-address`, `strict-source`, `media-handover`, …).
//! `tests/ng_diff.rs` and `tests/ng_codec_diff.rs` compare tern's SDP with
//! a live rtpengine's for the same commands.
//!
//! SSRC rewriting is off by default, as in rtpengine. The flag
//! `SSRC-rewrite` in an `offer` or `answer` switches it on for the leg that
//! receives the SDP of that reply (the answerer for an offer, the offerer
//! for an answer): that party then sees one stable SSRC, with sequence
//! numbers and timestamps continuing across source changes. It stays on for
//! the rest of the call.
//!
//! Unknown keys and flags never fail a message. Malformed messages (bad bencode, wrong types, missing keys,
//! bad SDP, `answer` for an unknown call) get `result: error` with an
//! `error-reason`, and the socket keeps serving.
//!
//! # Access
//!
//! The socket binds to loopback by default (`127.0.0.1:2223`). Sources
//! other than loopback are served only when listed ([`Acl`], `--ng-allow`);
//! datagrams from others are dropped without a reply and TCP connections
//! from others closed, both counted in [`NgStats::dropped_unauthorized`].
//!
//! # Threads
//!
//! One UDP thread (which also runs [`NgCore::poll_timeouts`] about once a
//! second) and one TCP acceptor with a thread per connection (at most
//! [`NgConfig::max_tcp_connections`], each with a bounded buffer). They
//! share one [`NgCore`] behind a mutex and program the slot table only; the
//! relay workers and their sockets are never touched.
//!
//! # Rooms
//!
//! - [`bencode`]: the wire format (zero-copy scan, decode, encode);
//! - [`core`]: the sans-IO engine ([`NgCore`]: commands, calls, timeouts);
//! - [`flags`]: the flags and keys of a message, parsed;
//! - [`codec`]: the `codec` operations (strip, mask, offer, except) over
//!   a payload list;
//! - [`cache`]: the reply cache for retransmitted cookies;
//! - [`sdp`]: the ng policy over `tern_shared::sdp` (what is rewritten);
//! - [`error`]: [`CommandError`], rtpengine's `error-reason` texts;
//! - [`acl`]: who may talk to the socket;
//! - [`server`]: the UDP and TCP sockets and their threads.

#![warn(missing_docs)]

pub mod acl;
pub mod bencode;
pub mod cache;
pub mod codec;
pub mod core;
pub mod error;
pub mod flags;
pub(crate) mod keys;
pub mod payload;
pub(crate) mod rtpp;
pub mod sdp;
pub mod server;
pub mod transcode;

pub use acl::{Acl, Cidr};
pub use core::{CoreConfig, NgCore, NgStats};
pub use error::CommandError;
pub use server::*;
