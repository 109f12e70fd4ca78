//! Media-quality cores, sans-IO: the jitter buffer ([`jitter`]), RFC 4733
//! DTMF detection ([`dtmf`]), the E-model MOS estimate ([`mos`]), RFC
//! 3550 receiver statistics ([`stats`]), and the per-packet feed of a
//! slot's statistics and DTMF detectors ([`feed`]). The worker feeds them
//! packets and its own clock.

pub mod dtmf;
pub mod feed;
pub mod jitter;
pub mod mos;
pub mod stats;
