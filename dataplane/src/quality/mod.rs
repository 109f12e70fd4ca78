//! Media-quality cores, sans-IO: the jitter buffer ([`jitter`]), RFC 4733
//! DTMF detection ([`dtmf`]), the E-model MOS estimate ([`mos`]) and RFC
//! 3550 receiver statistics ([`stats`]). The
//! worker feeds them packets and its own clock.

pub mod dtmf;
pub mod jitter;
pub mod mos;
pub mod stats;
