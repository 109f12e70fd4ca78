//! RFC 4733 telephone-event (DTMF) detection, sans-IO: one
//! [`DtmfEvent`] per key press, from the RTP packets of the payload type
//! negotiated as `telephone-event`.
//!
//! # Payload (RFC 4733 §2.3)
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     event     |E|R| volume    |          duration             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! `event`: 8 bits (§3.2: 0–9, `*` 10, `#` 11, A–D 12–15); `E`: end of
//! event; `R`: reserved; `volume`: 6 bits, −dBm0; `duration`: 16 bits, in
//! RTP timestamp units since the event's RTP timestamp (its start,
//! §2.3.5). A payload may carry more than one such block (RFC 4733 §2.5.1.5
//! redundancy is not used for DTMF); only the first is read.
//!
//! # One event per key press
//!
//! Every packet of one event carries the same RTP timestamp, and the end
//! packet is sent three times (§2.5.1.4), so events are keyed by RTP
//! timestamp: an event is reported once, at its first end packet, and a
//! packet whose timestamp is not newer (modulo 2^32) than the last
//! reported event's is ignored, be it a repeat of that end or a late
//! repeat of an older one. A new SSRC starts afresh (its timestamps are
//! unrelated), reporting the old source's unended event first. When all of an
//! event's end packets are lost, it is reported when the next event (a
//! new timestamp) starts, or on [`DtmfDetector::flush`], with the longest
//! duration seen. Events other than 0–15 (flash, tones) are ignored.
//! Durations longer than 16 bits (§2.5.1.3 segments) are reported per
//! segment.

use std::fmt;

use tern_shared::table::{dtmf_digit, DtmfEvent};

/// The telephone-event block size, bytes.
pub const EVENT_LEN: usize = 4;

/// A telephone-event payload the detector cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfError {
    /// Shorter than [`EVENT_LEN`] bytes.
    Truncated {
        /// The payload length, bytes.
        len: usize,
    },
}

impl fmt::Display for DtmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtmfError::Truncated { len } => write!(
                f,
                "telephone-event payload of {len} bytes, shorter than {EVENT_LEN} (RFC 4733 §2.3)"
            ),
        }
    }
}

impl std::error::Error for DtmfError {}

/// Counters since the detector was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DtmfCounters {
    /// Key presses reported.
    pub events: u64,
    /// Of them, reported without an end packet (all three lost).
    pub ends_lost: u64,
    /// Malformed payloads ([`DtmfError`]).
    pub errors: u64,
    /// Packets of events other than DTMF 0–15.
    pub ignored: u64,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    ts: u32,
    event: u8,
    duration: u16,
}

/// Detects key presses in one stream's telephone-event packets.
#[derive(Debug, Default)]
pub struct DtmfDetector {
    /// The event in progress (not ended yet).
    current: Option<Current>,
    /// RTP timestamp of the last event reported: packets not newer are
    /// repeats or late.
    last_reported: Option<u32>,
    /// The SSRC the timestamps belong to.
    ssrc: Option<u32>,
    /// Reported events not yet taken with `poll`: at most two per packet
    /// (a lost end, and a one-packet event).
    pending: [Option<DtmfEvent>; 2],
    counters: DtmfCounters,
}

impl DtmfDetector {
    /// A detector with no event in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters since creation.
    pub fn counters(&self) -> DtmfCounters {
        self.counters
    }

    /// Feeds one telephone-event packet: its SSRC, RTP timestamp and
    /// payload (after the RTP header, extension and CSRCs), seen at `at_ms`
    /// (Unix time, ms, copied into the events it completes). Completed key
    /// presses are then taken with [`Self::poll`].
    ///
    /// Errors: [`DtmfError::Truncated`] (counted; the detector's state is
    /// unchanged).
    pub fn on_packet(
        &mut self,
        ssrc: u32,
        rtp_timestamp: u32,
        payload: &[u8],
        at_ms: u64,
    ) -> Result<(), DtmfError> {
        let Some(block) = payload.get(..EVENT_LEN) else {
            self.counters.errors += 1;
            return Err(DtmfError::Truncated { len: payload.len() });
        };
        let event = block[0];
        let end = block[1] & 0x80 != 0;
        let duration = u16::from_be_bytes([block[2], block[3]]);
        if dtmf_digit(event).is_none() {
            self.counters.ignored += 1;
            return Ok(());
        }
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.flush(at_ms);
                self.last_reported = None;
            }
            self.ssrc = Some(ssrc);
        }
        let newer = |than: u32| (rtp_timestamp.wrapping_sub(than) as i32) > 0;
        if self.last_reported.is_some_and(|last| !newer(last)) {
            return Ok(()); // a repeated end, or a late packet of it or older
        }
        match self.current {
            Some(c) if c.ts != rtp_timestamp && !newer(c.ts) => {
                // Older than the event in progress: a late straggler.
                return Ok(());
            }
            Some(c) if c.ts == rtp_timestamp => {
                let c = Current {
                    duration: c.duration.max(duration),
                    ..c
                };
                self.current = Some(c);
            }
            Some(c) => {
                // A new event while the previous one never ended.
                self.counters.ends_lost += 1;
                self.report(c, at_ms);
                self.current = Some(Current {
                    ts: rtp_timestamp,
                    event,
                    duration,
                });
            }
            None => {
                self.current = Some(Current {
                    ts: rtp_timestamp,
                    event,
                    duration,
                })
            }
        }
        if end {
            if let Some(c) = self.current.take() {
                self.report(c, at_ms);
            }
        }
        Ok(())
    }

    /// Reports the event in progress as if it had ended (the stream ended,
    /// or went quiet, with its end packets lost).
    pub fn flush(&mut self, at_ms: u64) {
        if let Some(c) = self.current.take() {
            self.counters.ends_lost += 1;
            self.report(c, at_ms);
        }
    }

    /// The next completed key press, oldest first.
    pub fn poll(&mut self) -> Option<DtmfEvent> {
        let e = self.pending[0].take();
        self.pending.swap(0, 1);
        e
    }

    fn report(&mut self, c: Current, at_ms: u64) {
        let Some(digit) = dtmf_digit(c.event) else {
            return;
        };
        self.last_reported = Some(c.ts);
        self.counters.events += 1;
        let ev = DtmfEvent {
            digit,
            event: c.event,
            duration: u32::from(c.duration),
            rtp_timestamp: c.ts,
            at_ms,
        };
        // Two slots suffice per packet; an unpolled older event is
        // overwritten rather than blocking detection.
        if self.pending[0].is_none() {
            self.pending[0] = Some(ev);
        } else {
            self.pending[1] = Some(ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSRC: u32 = 0x5eed_0001;

    fn pkt(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, u8::from(end) << 7 | volume, d[0], d[1]]
    }

    fn all(d: &mut DtmfDetector) -> Vec<DtmfEvent> {
        std::iter::from_fn(|| d.poll()).collect()
    }

    /// The telephone-event packets of SIPp's `dtmf_2833_1.pcap` (digit 1,
    /// timestamp 13280, the end sent three times), as `tshark -e
    /// rtp.timestamp -e rtp.payload` shows them.
    const SIPP_1: [(u32, [u8; 4]); 10] = [
        (13280, [0x01, 0x0a, 0x00, 0x00]),
        (13280, [0x01, 0x0a, 0x01, 0x40]),
        (13280, [0x01, 0x0a, 0x02, 0x80]),
        (13280, [0x01, 0x0a, 0x03, 0xc0]),
        (13280, [0x01, 0x0a, 0x05, 0x00]),
        (13280, [0x01, 0x0a, 0x06, 0x40]),
        (13280, [0x01, 0x0a, 0x07, 0x80]),
        (13280, [0x01, 0x8a, 0x08, 0xc0]),
        (13280, [0x01, 0x8a, 0x08, 0xc0]),
        (13280, [0x01, 0x8a, 0x08, 0xc0]),
    ];

    #[test]
    fn sipp_capture_yields_digit_1_once() {
        let mut d = DtmfDetector::new();
        let mut got = Vec::new();
        for (i, (ts, p)) in SIPP_1.iter().enumerate() {
            d.on_packet(SSRC, *ts, p, 1000 + i as u64).unwrap();
            got.extend(all(&mut d));
        }
        d.flush(5000);
        got.extend(all(&mut d));
        assert_eq!(
            got,
            vec![DtmfEvent {
                digit: '1',
                event: 1,
                duration: 0x08c0,
                rtp_timestamp: 13280,
                at_ms: 1007,
            }]
        );
        assert_eq!(d.counters().events, 1);
        assert_eq!(d.counters().ends_lost, 0);
    }

    /// The same capture read from the file itself when the sip-tester
    /// package is installed: pcap (Ethernet, IPv4, UDP, RTP PT 101).
    #[test]
    fn sipp_pcap_file_yields_digit_1_once() {
        let Ok(f) = std::fs::read("/usr/share/sip-tester/dtmf_2833_1.pcap") else {
            eprintln!("sip-tester not installed: skipped");
            return;
        };
        assert!(
            f.len() > 24 && f[..4] == [0xd4, 0xc3, 0xb2, 0xa1],
            "little-endian pcap"
        );
        let mut d = DtmfDetector::new();
        let mut off = 24;
        let mut packets = 0;
        while off + 16 <= f.len() {
            let incl = u32::from_le_bytes(f[off + 8..off + 12].try_into().unwrap()) as usize;
            let frame = &f[off + 16..off + 16 + incl];
            off += 16 + incl;
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            let rtp = &frame[14 + ihl + 8..];
            if rtp[1] & 0x7f != 101 {
                continue;
            }
            packets += 1;
            let ts = u32::from_be_bytes(rtp[4..8].try_into().unwrap());
            d.on_packet(SSRC, ts, &rtp[12..], 0).unwrap();
        }
        d.flush(0);
        let got = all(&mut d);
        assert_eq!(packets, 10);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].digit, got[0].duration), ('1', 2240));
    }

    #[test]
    fn lost_end_reported_when_the_next_event_starts() {
        let mut d = DtmfDetector::new();
        // '5' at ts 1000: start and one update, all three ends lost.
        d.on_packet(SSRC, 1000, &pkt(5, false, 10, 0), 1).unwrap();
        d.on_packet(SSRC, 1000, &pkt(5, false, 10, 320), 2).unwrap();
        assert_eq!(d.poll(), None);
        // '#' at ts 5000: its start reports '5'.
        d.on_packet(SSRC, 5000, &pkt(11, false, 10, 0), 3).unwrap();
        let e = d.poll().unwrap();
        assert_eq!((e.digit, e.duration, e.rtp_timestamp), ('5', 320, 1000));
        assert_eq!(d.poll(), None);
        for _ in 0..3 {
            d.on_packet(SSRC, 5000, &pkt(11, true, 10, 800), 4).unwrap();
        }
        let e = d.poll().unwrap();
        assert_eq!((e.digit, e.duration, e.rtp_timestamp), ('#', 800, 5000));
        assert_eq!(d.poll(), None);
        assert_eq!(d.counters().events, 2);
        assert_eq!(d.counters().ends_lost, 1);
    }

    #[test]
    fn one_packet_event_after_a_lost_end_gives_both() {
        let mut d = DtmfDetector::new();
        d.on_packet(SSRC, 100, &pkt(12, false, 0, 160), 1).unwrap();
        d.on_packet(SSRC, 900, &pkt(15, true, 0, 400), 2).unwrap();
        let got: Vec<char> = all(&mut d).iter().map(|e| e.digit).collect();
        assert_eq!(got, vec!['A', 'D']);
    }

    #[test]
    fn flush_reports_an_unended_event() {
        let mut d = DtmfDetector::new();
        d.on_packet(SSRC, 7, &pkt(10, false, 0, 480), 1).unwrap();
        d.flush(9);
        let e = d.poll().unwrap();
        assert_eq!((e.digit, e.at_ms), ('*', 9));
        d.flush(10);
        assert_eq!(d.poll(), None);
    }

    #[test]
    fn malformed_and_non_dtmf_payloads() {
        let mut d = DtmfDetector::new();
        assert_eq!(
            d.on_packet(SSRC, 1, &[1, 0x80, 0], 0),
            Err(DtmfError::Truncated { len: 3 })
        );
        assert_eq!(
            d.on_packet(SSRC, 1, &[], 0),
            Err(DtmfError::Truncated { len: 0 })
        );
        // Flash (16) is not a key.
        d.on_packet(SSRC, 2, &pkt(16, true, 0, 800), 0).unwrap();
        assert_eq!(d.poll(), None);
        let c = d.counters();
        assert_eq!((c.errors, c.ignored, c.events), (2, 1, 0));
    }

    /// Feeds `(ssrc, ts, payload)` packets, polling after each as the
    /// worker does; returns the digits reported.
    fn digits(d: &mut DtmfDetector, pkts: &[(u32, u32, [u8; 4])]) -> String {
        let mut got = String::new();
        for (k, (ssrc, ts, p)) in pkts.iter().enumerate() {
            d.on_packet(*ssrc, *ts, p, k as u64).unwrap();
            got.extend(all(d).iter().map(|e| e.digit));
        }
        got
    }

    /// Digits 4 then 7; a late repeat of 4's end arrives after 7 was
    /// reported. Keeping only the last timestamp reported 4 again.
    #[test]
    fn late_repeat_of_an_older_end_is_ignored() {
        let mut d = DtmfDetector::new();
        let got = digits(
            &mut d,
            &[
                (SSRC, 1000, pkt(4, true, 0, 800)),
                (SSRC, 3000, pkt(7, false, 0, 160)),
                (SSRC, 3000, pkt(7, true, 0, 800)),
                (SSRC, 1000, pkt(4, true, 0, 800)),
                (SSRC, 1000, pkt(4, false, 0, 320)),
            ],
        );
        d.flush(6);
        assert_eq!(got + &digits(&mut d, &[]), "47");
        assert_eq!(d.poll(), None);
        assert_eq!(d.counters().events, 2);
        // Across the 2^32 wrap, newer is modulo 2^32.
        let mut d = DtmfDetector::new();
        let got = digits(
            &mut d,
            &[
                (SSRC, u32::MAX - 100, pkt(1, true, 0, 800)),
                (SSRC, 60, pkt(2, true, 0, 800)),
                (SSRC, u32::MAX - 100, pkt(1, true, 0, 800)),
            ],
        );
        assert_eq!(got, "12");
    }

    /// A new SSRC may start its timestamps anywhere, even below the old
    /// source's last event: it is not taken for a late repeat.
    #[test]
    fn ssrc_change_resets_the_dedupe() {
        let mut d = DtmfDetector::new();
        let got = digits(
            &mut d,
            &[
                (SSRC, 90_000, pkt(9, true, 0, 800)),
                (SSRC, 95_000, pkt(8, false, 0, 160)),
                // New source: 8 (never ended) is reported, then the new key.
                (SSRC + 1, 500, pkt(5, true, 0, 800)),
                (SSRC + 1, 500, pkt(5, true, 0, 800)),
            ],
        );
        assert_eq!(got, "985");
        assert_eq!(d.counters().ends_lost, 1);
    }

    #[test]
    fn late_packet_of_a_reported_event_is_ignored() {
        let mut d = DtmfDetector::new();
        d.on_packet(SSRC, 50, &pkt(3, true, 0, 800), 0).unwrap();
        assert_eq!(d.poll().map(|e| e.digit), Some('3'));
        d.on_packet(SSRC, 50, &pkt(3, false, 0, 640), 0).unwrap();
        d.on_packet(SSRC, 50, &pkt(3, true, 0, 800), 0).unwrap();
        d.flush(0);
        assert_eq!(d.poll(), None);
        assert_eq!(d.counters().events, 1);
    }
}
