//! tern's SIP signaling plane: a registrar with digest authentication and a
//! B2BUA that anchors media in relay slots.
//!
//! - [`config`]: [`Config`] (the TOML file, parsed once: [`SipConfig`] and
//!   [`TransportConfig`]; unknown keys are errors) and `[[users]]`.
//! - [`relay`]: the [`MediaRelay`] trait and [`ShmRelay`] over the
//!   shared-memory slot table.
//! - [`server`]: the `mio` transport, UDP and TCP on one port, and [`run`];
//!   [`tcp`]: the sans-IO stream framer; [`transport`]: [`Source`],
//!   [`Transmit`] and the destination → transport table.
//! - [`guard`]: the per-source rate limit and `allow`/`deny` lists the
//!   transport applies before the core (floods, abuse).
//! - Sans-IO cores: [`normalize`] (the pass in front of rsip), [`msg`]
//!   (parsing, checks), [`build`] (building), [`method`] ([`Method`]),
//!   [`digest`] (RFC 2617), [`registrar`] (RFC 3261 §10), [`refer`]
//!   (transfer headers: Refer-To, Replaces, Event, Subscription-State), [`sdp`]
//!   (offer/answer rewrite), [`sdp_webrtc`] (WebRTC legs' SDP), [`b2bua`] ([`b2bua::B2bua`]: the calls) and
//!   [`core`] ([`SipCore`]: datagrams and time in, datagrams out; it
//!   drives the B2BUA through a narrow transaction-user interface),
//!   [`trunk`] (`[[trunks]]`, `[[routes]]`) with the trunk side the core
//!   drives (`trunk_plane`: [`trunk_register`], RFC 3261 §10.2 client;
//!   `trunk_health`, gateways down and OPTIONS probes; [`trunk_dns`],
//!   RFC 3263 answers and SRV order; [`dns`], the resolver thread the
//!   server runs), and
//!   [`transaction`] (RFC 3261 §17 state machines with RFC 6026) under the
//!   core's retransmission engine.
//!
//! Wiring: build a [`SipConfig`] (`Config::from_toml(listen, text)?.sip` or
//! by hand with users from [`load_users_toml`]), a relay
//! (`ShmRelay::new(table)` for the same-process table of `tern up`, or
//! `ShmRelay::open(name)` for `tern sip --relay shm:NAME`), and call [`run`]
//! on a thread with a shutdown flag. To announce readiness only once the
//! sockets are bound (UDP and TCP on one port), use [`Server::bind`],
//! [`Server::local_addr`], then [`Server::serve`]; before serving,
//! [`Server::with_transport`] sets the TCP bounds and drain time
//! ([`Config::from_toml`] reads them from `[sip]`) and
//! [`Server::with_drain`] a flag that drains (SIGTERM in `tern up`/`tern
//! sip`: new INVITEs get 503, calls up finish, then `serve` returns).
//!
//! Test peers: `tests/sipp/uas_register.xml` (+ `uas_answer.xml` as the
//! out-of-call scenario) registers a SIPp UAS and answers tern's INVITEs;
//! `tests/sipp/uac_auth.xml` is a UAC that answers a 407 challenge.

#![warn(missing_docs)]

use std::fmt;
use std::net::SocketAddr;

pub mod b2bua;
pub mod build;
pub mod config;
mod conns;
pub mod core;
mod core_auth;
mod core_trunk;
pub mod digest;
pub mod dns;
pub mod guard;
mod icmp;
pub mod method;
pub mod msg;
pub mod normalize;
mod outbox;
pub mod refer;
mod refer_route;
pub mod registrar;
pub mod rel100;
pub mod relay;
mod retransmit;
pub mod sdp;
pub mod sdp_transcode;
pub mod sdp_webrtc;
pub mod server;
pub mod session_timer;
pub mod snapshot;
mod stats;
pub mod stream;
pub mod tcp;
pub mod tls;
pub mod transaction;
pub mod transport;
pub mod trunk;
pub mod trunk_dns;
mod trunk_health;
mod trunk_plane;
pub mod trunk_register;
mod tu;

pub use crate::config::{
    load_users_toml, Config, ConfigError, Credential, SipConfig, TransportConfig, User,
};
pub use crate::core::SipCore;
pub use crate::method::Method;
pub use crate::relay::{MediaRelay, RelayError, ShmRelay};
pub use crate::server::{run, Server, TransportStats};
pub use crate::snapshot::{SharedSnapshot, SipSnapshot};
pub use crate::stats::CoreStats;
pub use crate::transport::{ConnId, Source, Transmit, Transport};
pub use crate::trunk_plane::TrunkStatus;

/// Errors that stop the signaling plane.
#[derive(Debug)]
pub enum SipError {
    /// The configuration was refused (see [`SipConfig::validate`]).
    Config(ConfigError),
    /// The listen address could not be bound.
    Bind(SocketAddr, std::io::Error),
    /// Polling the socket failed.
    Io(std::io::Error),
    /// The TLS identity of the TLS/WSS listeners could not be set up.
    Tls(crate::tls::TlsError),
}

impl fmt::Display for SipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SipError::Config(e) => write!(f, "{e}"),
            SipError::Bind(a, e) => write!(f, "cannot bind SIP on {a}: {e}"),
            SipError::Io(e) => write!(f, "SIP transport: {e}"),
            SipError::Tls(e) => write!(f, "SIP over TLS: {e}"),
        }
    }
}

impl std::error::Error for SipError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SipError::Config(e) => Some(e),
            SipError::Bind(_, e) | SipError::Io(e) => Some(e),
            SipError::Tls(e) => Some(e),
        }
    }
}

impl From<ConfigError> for SipError {
    fn from(e: ConfigError) -> Self {
        SipError::Config(e)
    }
}

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod fork_tests;
#[cfg(test)]
mod prack_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod transfer_tests;
#[cfg(test)]
mod transport_tests;
#[cfg(test)]
mod trunk_plane_tests;
#[cfg(test)]
mod trunk_tests;
#[cfg(test)]
mod webrtc_tests;
