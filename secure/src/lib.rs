//! Sans-IO cores of secure media: what a relay leg needs to terminate
//! SRTP/SRTCP (RFC 3711, 6188, 7714), answer ICE-lite connectivity checks
//! (RFC 8445 §2.5, STUN per RFC 8489, consent per RFC 7675) and run a
//! DTLS-SRTP handshake (RFC 5763/5764). Nothing here owns a socket or a
//! clock: every call is handed the bytes, a `now` and, where needed, the
//! random bytes it uses (the DTLS endpoint alone runs on OpenSSL's own
//! retransmission clock).

pub mod dtls;
pub mod ice;
pub mod srtp;
pub mod stun;
