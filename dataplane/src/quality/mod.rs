//! Media-quality cores, sans-IO: the jitter buffer ([`jitter`]), RFC 4733
//! DTMF detection ([`dtmf`]) and the E-model MOS estimate ([`mos`]). The
//! worker feeds them packets and its own clock.

pub mod dtmf;
pub mod jitter;
pub mod mos;
