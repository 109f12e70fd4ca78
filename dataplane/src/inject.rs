//! Playing RFC 4733 telephone-events into a stream (ng `play DTMF`),
//! sans-IO: the stream's own packets are the clock. While an event
//! plays, each audio packet of the stream is replaced by an event packet
//! of the same sequence number, so the receiver sees one stream with no
//! gap and no extra packet; between events and after the last, audio
//! passes.
//!
//! Per event (RFC 4733 §2.5.1): every packet carries the event's start
//! timestamp (the first replaced packet's); the first has the marker
//! bit; the duration grows with each packet (the packet's timestamp past
//! the start, plus one packet's worth) until it reaches the requested
//! length; then the end packet (E bit, the final duration) goes three
//! times (§2.5.1.4), and audio resumes after the pause. A stream that
//! stops (hold, silence suppression) holds the play where it is.

use tern_shared::table::DtmfPlay;

/// Packet length assumed until two audio packets have been seen, ms.
const DEFAULT_PTIME_MS: u32 = 20;
/// Times the end packet is sent (RFC 4733 §2.5.1.4).
const END_REPEATS: u8 = 3;

/// What to do with one audio packet of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Play {
    /// Forward it as it is.
    Pass,
    /// Replace its payload by the 4-byte event `payload` (RFC 4733 §2.3:
    /// event, `E | R | volume`, duration, 16 bits big-endian), its
    /// timestamp by `timestamp`, its marker bit by `marker`, and its
    /// payload type by the stream's telephone-event type.
    Event {
        /// Set on an event's first packet (RFC 4733 §2.5.1.1).
        marker: bool,
        /// The event's start, in the stream's timestamp units.
        timestamp: u32,
        /// The RFC 4733 payload.
        payload: [u8; 4],
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The next event starts with the next packet at or after `from`
    /// (none yet: at once).
    Wait {
        from: Option<u32>,
    },
    /// An event started at timestamp `start`; `end` is its final
    /// duration once reached, with the end packets still to send.
    Event {
        start: u32,
        end: Option<(u16, u8)>,
    },
    Done,
}

/// One `play DTMF` request being played into a stream.
#[derive(Debug, Clone)]
pub struct DtmfPlayer {
    req: DtmfPlay,
    /// Index of the event playing or next.
    next: usize,
    state: State,
    /// Timestamp units per ms (the stream's clock rate / 1000).
    per_ms: u32,
    last_ts: Option<u32>,
    /// Timestamp units of one packet, learned from the stream.
    step: u32,
}

impl DtmfPlayer {
    /// Plays `req` into a stream whose RTP clock is `clock_rate` Hz (0
    /// reads as 8000).
    pub fn new(req: DtmfPlay, clock_rate: u32) -> DtmfPlayer {
        let per_ms = if clock_rate == 0 {
            8
        } else {
            clock_rate / 1000
        }
        .max(1);
        DtmfPlayer {
            req,
            next: 0,
            state: if req.events().is_empty() {
                State::Done
            } else {
                State::Wait { from: None }
            },
            per_ms,
            last_ts: None,
            step: DEFAULT_PTIME_MS * per_ms,
        }
    }

    /// The request being played.
    pub fn request(&self) -> &DtmfPlay {
        &self.req
    }

    /// Whether every event has been played.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Timestamp units of one event, capped to the 16-bit duration field.
    fn length(&self) -> u32 {
        (u32::from(self.req.duration_ms) * self.per_ms).clamp(self.step, 0xffff)
    }

    /// The stream's next audio packet, whose output timestamp is `ts`.
    pub fn on_audio(&mut self, ts: u32) -> Play {
        if let Some(l) = self.last_ts {
            let d = ts.wrapping_sub(l);
            // Consecutive packets only (no gap, no reorder), ≤ 200 ms.
            if d > 0 && d <= 200 * self.per_ms {
                self.step = d;
            }
        }
        self.last_ts = Some(ts);
        let volume = self.req.volume & 0x3f;
        loop {
            match self.state {
                State::Done => return Play::Pass,
                State::Wait { from } => {
                    if from.is_some_and(|f| (ts.wrapping_sub(f) as i32) < 0) {
                        return Play::Pass;
                    }
                    self.state = State::Event {
                        start: ts,
                        end: None,
                    };
                    let event = self.req.events()[self.next];
                    return Play::Event {
                        marker: true,
                        timestamp: ts,
                        payload: payload(event, false, volume, self.step.min(0xffff) as u16),
                    };
                }
                State::Event { start, end } => {
                    let event = self.req.events()[self.next];
                    let (dur, left) = match end {
                        Some((d, 0)) => {
                            // Ended: the pause, then the next event.
                            self.next += 1;
                            let pause = u32::from(self.req.pause_ms) * self.per_ms;
                            self.state = if self.next >= self.req.events().len() {
                                State::Done
                            } else {
                                State::Wait {
                                    from: Some(start.wrapping_add(u32::from(d) + pause)),
                                }
                            };
                            continue;
                        }
                        Some((d, n)) => (d, n - 1),
                        None => {
                            let dur = ts.wrapping_sub(start).saturating_add(self.step);
                            if dur < self.length() {
                                return Play::Event {
                                    marker: false,
                                    timestamp: start,
                                    payload: payload(event, false, volume, dur as u16),
                                };
                            }
                            (dur.min(0xffff) as u16, END_REPEATS - 1)
                        }
                    };
                    self.state = State::Event {
                        start,
                        end: Some((dur, left)),
                    };
                    return Play::Event {
                        marker: false,
                        timestamp: start,
                        payload: payload(event, true, volume, dur),
                    };
                }
            }
        }
    }
}

/// RFC 4733 §2.3 payload: event, `E | R(0) | volume`, duration.
fn payload(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [event, u8::from(end) << 7 | volume, d[0], d[1]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_shared::table::MAX_PLAY_EVENTS;

    fn req(events: &[u8], duration_ms: u16, pause_ms: u16) -> DtmfPlay {
        let mut e = [0u8; MAX_PLAY_EVENTS];
        e[..events.len()].copy_from_slice(events);
        DtmfPlay {
            id: 1,
            events: e,
            count: events.len() as u8,
            duration_ms,
            pause_ms,
            volume: 10,
        }
    }

    /// Feeds 20 ms packets from `ts0`: each packet's verdict.
    fn run(p: &mut DtmfPlayer, ts0: u32, n: u32) -> Vec<Play> {
        (0..n)
            .map(|k| p.on_audio(ts0.wrapping_add(160 * k)))
            .collect()
    }

    #[test]
    fn one_digit_grows_ends_three_times_then_audio_passes() {
        let mut p = DtmfPlayer::new(req(&[5], 100, 0), 8000);
        let out = run(&mut p, 1000, 12);
        let ev = |m: bool, e: bool, d: u16| Play::Event {
            marker: m,
            timestamp: 1000,
            payload: payload(5, e, 10, d),
        };
        // 100 ms = 800 units: 160, 320, 480, 640, then 800 ends it.
        assert_eq!(
            out[..8],
            [
                ev(true, false, 160),
                ev(false, false, 320),
                ev(false, false, 480),
                ev(false, false, 640),
                ev(false, true, 800),
                ev(false, true, 800),
                ev(false, true, 800),
                Play::Pass,
            ]
        );
        assert!(p.done());
        assert!(out[8..].iter().all(|&x| x == Play::Pass));
    }

    #[test]
    fn digits_are_separated_by_the_pause_and_the_timestamp_wraps() {
        // Two 40 ms digits with a 60 ms pause, across the 32-bit wrap.
        let ts0 = u32::MAX - 500;
        let mut p = DtmfPlayer::new(req(&[1, 11], 40, 60), 8000);
        let out = run(&mut p, ts0, 16);
        let starts: Vec<(usize, u32, u8)> = out
            .iter()
            .enumerate()
            .filter_map(|(i, x)| match x {
                Play::Event {
                    marker: true,
                    timestamp,
                    payload,
                } => Some((i, *timestamp, payload[0])),
                _ => None,
            })
            .collect();
        // Digit 1 at packet 0: 160, 320 (end) ×3 → packets 0..4; the
        // pause runs from its start + 320 + 480 = 800 units, packet 5.
        assert_eq!(starts, [(0, ts0, 1), (5, ts0.wrapping_add(800), 11)]);
        assert_eq!(out[4], Play::Pass);
        assert!(p.done());
    }

    #[test]
    fn a_48_khz_stream_counts_in_its_own_units() {
        let mut p = DtmfPlayer::new(req(&[0], 60, 0), 48_000);
        let out: Vec<Play> = (0..6).map(|k| p.on_audio(960 * k)).collect();
        // 60 ms = 2880 units at 48 kHz: 960, 1920, then 2880 ends it.
        let durations: Vec<u16> = out
            .iter()
            .filter_map(|x| match x {
                Play::Event { payload, .. } => Some(u16::from_be_bytes([payload[2], payload[3]])),
                Play::Pass => None,
            })
            .collect();
        assert_eq!(durations, [960, 1920, 2880, 2880, 2880]);
    }

    #[test]
    fn an_empty_request_plays_nothing() {
        let mut p = DtmfPlayer::new(req(&[], 100, 0), 8000);
        assert!(p.done());
        assert_eq!(p.on_audio(0), Play::Pass);
    }
}
