//! RFC 4733 DTMF detection (in progress).
