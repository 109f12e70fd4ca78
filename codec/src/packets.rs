//! [`OutPackets`]: a caller-owned, fixed-capacity list of RTP packets the
//! [`crate::transcode::Transcoder`] writes into, so the hot path does not
//! allocate per packet.

use tern_shared::rtp::HEADER_LEN;

/// Up to `packets` RTP packets in one contiguous buffer of `bytes` bytes,
/// both fixed at construction. Writing past either bound fails (the
/// transcoder reports [`crate::transcode::TranscodeError::OutputFull`])
/// rather than growing.
#[derive(Debug, Clone)]
pub struct OutPackets {
    buf: Vec<u8>,
    ends: Vec<usize>,
    cap_bytes: usize,
    cap_packets: usize,
}

/// The RTP header fields of one output packet (RFC 3550 §5.1): V = 2,
/// no padding, extension or CSRCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// M bit.
    pub marker: bool,
    /// PT, 0..=127.
    pub pt: u8,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp, in the output codec's RTP clock.
    pub ts: u32,
    /// SSRC.
    pub ssrc: u32,
}

impl OutPackets {
    /// Room for `packets` packets of `bytes` bytes in all (headers
    /// included). 8 packets of 1500 bytes cover any one input packet.
    pub fn with_capacity(packets: usize, bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(packets),
            cap_bytes: bytes,
            cap_packets: packets,
        }
    }

    /// Forgets the packets (keeps the memory).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no packet is held.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Packet `i` (header and payload), oldest first.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.buf.get(start..end)
    }

    /// The packets, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Appends a packet with header `h` whose payload `write` produces in
    /// at most `max_payload` bytes (it returns the length it wrote, or an
    /// error). Returns `None` when the packet would not fit; `Some(r)`
    /// with `write`'s result otherwise (on `Err` nothing is appended).
    pub(crate) fn push<E>(
        &mut self,
        h: Header,
        max_payload: usize,
        write: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Option<Result<(), E>> {
        let start = self.buf.len();
        if self.ends.len() >= self.cap_packets || start + HEADER_LEN + max_payload > self.cap_bytes
        {
            return None;
        }
        self.buf.resize(start + HEADER_LEN + max_payload, 0);
        let p = &mut self.buf[start..];
        p[0] = 0x80;
        p[1] = (u8::from(h.marker) << 7) | (h.pt & 0x7F);
        p[2..4].copy_from_slice(&h.seq.to_be_bytes());
        p[4..8].copy_from_slice(&h.ts.to_be_bytes());
        p[8..12].copy_from_slice(&h.ssrc.to_be_bytes());
        match write(&mut p[HEADER_LEN..]) {
            Ok(n) => {
                let end = start + HEADER_LEN + n.min(max_payload);
                self.buf.truncate(end);
                self.ends.push(end);
                Some(Ok(()))
            }
            Err(e) => {
                self.buf.truncate(start);
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_laid_end_to_end_and_bounded() {
        let mut o = OutPackets::with_capacity(2, 40);
        let h = Header {
            marker: true,
            pt: 8,
            seq: 7,
            ts: 160,
            ssrc: 0xdead_beef,
        };
        assert_eq!(
            o.push::<()>(h, 4, |b| {
                b[..3].copy_from_slice(&[1, 2, 3]);
                Ok(3)
            }),
            Some(Ok(()))
        );
        assert_eq!(
            o.get(0).unwrap(),
            &[0x80, 0x88, 0, 7, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]
        );
        // Too big for the bytes left (40 - 15 = 25 < 12 + 20).
        assert!(o.push::<()>(h, 20, |_| Ok(0)).is_none());
        assert_eq!(o.push(h, 4, |_| Err("x")), Some(Err("x")));
        assert_eq!(o.len(), 1);
        assert!(o.push::<()>(h, 4, |_| Ok(4)).is_some());
        // Packet count bound.
        assert!(o.push::<()>(h, 0, |_| Ok(0)).is_none());
        assert_eq!(o.iter().count(), 2);
        o.clear();
        assert!(o.is_empty());
        assert!(o.get(0).is_none());
    }
}
