//! Call recording (issue 14 part 3): the recording tap of stage 4
//! ("Observe", after SRTP unprotect) and the writer thread behind it.
//!
//! - The tap ([`RecordTap`]) copies each packet a recorded leg's peer
//!   sent, as the relay accepted it (decrypted), into a preallocated
//!   [`Frame`] of its worker's bounded single-producer ring
//!   ([`FrameRing`]). A full ring drops the frame and counts it
//!   (`tern_record_dropped_total`); the packet is forwarded all the same.
//! - One writer thread ([`writer::start`]) drains every worker's ring and
//!   writes, per recording, in the recording directory:
//!   - `<call-id>.pcap`: the RTP and RTCP of both legs (pcap, LINKTYPE_RAW,
//!     synthetic IPv4/IPv6 + UDP headers from the peer to the relay port,
//!     timestamps = arrival), see [`pcap`];
//!   - `<call-id>.wav`: 16-bit stereo at [`wav::WAV_RATE`] Hz, left = leg
//!     0 (caller), right = leg 1 (callee), decoded, placed on a timeline
//!     by arrival time and RTP timestamp so gaps are silence, see [`wav`];
//!   - `<call-id>.json`: Call-ID, tags, start/stop Unix times, codecs,
//!     SSRCs and packet counts per leg, written at stop.
//! - A write error (disk full) stops that recording (counted in
//!   `tern_record_failed_total` and logged); the call goes on.
//!
//! File names are the Call-ID percent-encoded ([`file_stem`]), so no
//! Call-ID can name a path outside the directory.

use std::cell::UnsafeCell;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub mod pcap;
pub mod wav;
pub mod writer;

/// Bytes of a packet a frame keeps; longer packets are cut (audio RTP is
/// far shorter).
pub const FRAME_BYTES: usize = 1200;

/// Frames per worker ring (a power of two): about 80 ms of 500 recorded
/// calls at 50 packets/s per leg, far above what the writer lets queue.
pub const RING_FRAMES: usize = 4096;

/// One recorded packet, as the tap hands it to the writer.
#[derive(Clone)]
pub struct Frame {
    /// Slot id in the table.
    pub slot: u32,
    /// Leg whose peer sent it: 0 caller, 1 callee.
    pub leg: u8,
    /// Came in on the RTCP port, or is RTCP on an rtcp-mux port.
    pub rtcp: bool,
    /// The leg's `record_id` when it was taken.
    pub record_id: u32,
    /// Arrival, Unix µs.
    pub at_us: u64,
    /// The peer's address (the datagram's source).
    pub src: SocketAddr,
    /// The relay's address it arrived at.
    pub dst: SocketAddr,
    /// Bytes of `data` used.
    pub len: u16,
    /// The packet, decrypted.
    pub data: [u8; FRAME_BYTES],
}

impl Default for Frame {
    fn default() -> Frame {
        let any = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0);
        Frame {
            slot: 0,
            leg: 0,
            rtcp: false,
            record_id: 0,
            at_us: 0,
            src: any,
            dst: any,
            len: 0,
            data: [0; FRAME_BYTES],
        }
    }
}

impl Frame {
    /// The packet bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..usize::from(self.len).min(FRAME_BYTES)]
    }
}

/// A bounded single-producer single-consumer ring of preallocated frames:
/// the worker fills, the writer thread drains. Nothing allocates after
/// [`FrameRing::new`].
pub struct FrameRing {
    frames: Box<[UnsafeCell<Frame>]>,
    /// Next frame the consumer reads (only the consumer stores it).
    head: AtomicUsize,
    /// Next frame the producer writes (only the producer stores it).
    tail: AtomicUsize,
}

// SAFETY: a frame is written only by the one producer while it lies
// outside [head, tail), and read only by the one consumer while inside;
// the Release/Acquire pairs on head and tail order those accesses.
unsafe impl Sync for FrameRing {}
// SAFETY: as above; the frames are plain data.
unsafe impl Send for FrameRing {}

impl FrameRing {
    /// A ring of `n` frames (rounded up to a power of two, at least 2).
    pub fn new(n: usize) -> FrameRing {
        let n = n.max(2).next_power_of_two();
        FrameRing {
            frames: (0..n).map(|_| UnsafeCell::new(Frame::default())).collect(),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    /// Producer: fills the next free frame with `fill`; false (and `fill`
    /// not called) when the ring is full. Only one thread may push.
    #[inline]
    pub fn push(&self, fill: impl FnOnce(&mut Frame)) -> bool {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) >= self.frames.len() {
            return false;
        }
        let cell = &self.frames[tail & (self.frames.len() - 1)];
        // SAFETY: the frame at `tail` is outside [head, tail): the
        // consumer does not read it until the Release store below.
        fill(unsafe { &mut *cell.get() });
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        true
    }

    /// Consumer: hands each queued frame to `f`, at most `max`; returns
    /// how many. Only one thread may pop.
    pub fn pop(&self, max: usize, mut f: impl FnMut(&Frame)) -> usize {
        let mut head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let mut n = 0;
        while head != tail && n < max {
            let cell = &self.frames[head & (self.frames.len() - 1)];
            // SAFETY: the frame at `head` is inside [head, tail): the
            // producer does not write it until `head` moves past it.
            f(unsafe { &*cell.get() });
            head = head.wrapping_add(1);
            self.head.store(head, Ordering::Release);
            n += 1;
        }
        n
    }
}

/// A worker's end of its recording ring, and its drop count.
pub struct RecordTap {
    ring: Arc<FrameRing>,
    /// Frames dropped for a full ring so far.
    pub dropped: u64,
}

impl RecordTap {
    /// The producer end of `ring`.
    pub fn new(ring: Arc<FrameRing>) -> RecordTap {
        RecordTap { ring, dropped: 0 }
    }

    /// Copies `pkt` (cut to [`FRAME_BYTES`]) into a frame; counts a drop
    /// and returns false when the ring is full. Never blocks.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn tap(
        &mut self,
        slot: u32,
        leg: usize,
        rtcp: bool,
        record_id: u32,
        at_us: u64,
        src: SocketAddr,
        dst: SocketAddr,
        pkt: &[u8],
    ) -> bool {
        let ok = self.ring.push(|f| {
            let n = pkt.len().min(FRAME_BYTES);
            f.slot = slot;
            f.leg = (leg & 1) as u8;
            f.rtcp = rtcp;
            f.record_id = record_id;
            f.at_us = at_us;
            f.src = src;
            f.dst = dst;
            f.len = n as u16;
            f.data[..n].copy_from_slice(&pkt[..n]);
        });
        if !ok {
            self.dropped += 1;
        }
        ok
    }
}

/// Where and how recordings are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConfig {
    /// The recording directory (`--recording-dir`, `[media]
    /// recording_dir`); created if missing.
    pub dir: std::path::PathBuf,
    /// Frames per worker ring.
    pub ring_frames: usize,
}

/// The file stem of a recording of `call_id`: every byte outside RFC 3986
/// unreserved (`A-Z a-z 0-9 - . _ ~`) as `%XX` (upper-case hex), so the
/// name has no `/`. A Call-ID of dots alone (`.`, `..`) has its dots
/// encoded too, and an empty one is `_`, so the stem never names the
/// directory or its parent.
pub fn file_stem(call_id: &str) -> String {
    if call_id.is_empty() {
        return "_".into();
    }
    let all_dots = call_id.bytes().all(|b| b == b'.');
    let mut s = String::with_capacity(call_id.len());
    for b in call_id.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'~')
            || (b == b'.' && !all_dots);
        if keep {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_cannot_escape() {
        assert_eq!(file_stem("abc-1.x_y~"), "abc-1.x_y~");
        assert_eq!(file_stem("a/b@c d"), "a%2Fb%40c%20d");
        assert_eq!(file_stem("../x"), "..%2Fx");
        assert_eq!(file_stem(".."), "%2E%2E");
        assert_eq!(file_stem("."), "%2E");
        assert_eq!(file_stem(""), "_");
        assert_eq!(file_stem("é"), "%C3%A9");
    }

    #[test]
    fn ring_is_bounded_and_ordered() {
        let r = Arc::new(FrameRing::new(4));
        let mut tap = RecordTap::new(r.clone());
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for i in 0..6u8 {
            tap.tap(u32::from(i), 0, false, 1, 0, a, a, &[i; 3]);
        }
        assert_eq!(tap.dropped, 2);
        let mut seen = vec![];
        assert_eq!(r.pop(2, |f| seen.push(f.slot)), 2);
        assert!(tap.tap(9, 1, false, 1, 0, a, a, &[0u8; 5000]));
        assert_eq!(r.pop(100, |f| seen.push(f.slot)), 3);
        assert_eq!(seen, vec![0, 1, 2, 3, 9]);
        assert_eq!(r.pop(100, |_| {}), 0);
    }
}
