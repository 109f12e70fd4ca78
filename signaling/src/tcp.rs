//! Sans-IO framing of SIP over a byte stream (RFC 3261 §18.3): bytes of
//! one TCP connection go in ([`Framer::push`]), whole messages come out
//! ([`Framer::next_frame`]).
//!
//! - A message is its header section up to the first empty line, then
//!   exactly Content-Length (`Content-Length` or compact `l`) body bytes.
//!   Over a stream the header is mandatory: without it the message cannot
//!   be delimited ([`FrameError::NoContentLength`]: answer 400, close).
//! - Several messages in one read (pipelining) come out one by one; a
//!   message split across reads waits for the rest.
//! - CRLFCRLF between messages is an RFC 5626 §3.5.1 keep-alive "ping",
//!   answered with a CRLF "pong" ([`Frame::Ping`]); a lone CRLF (a pong,
//!   or a leading empty line, RFC 3261 §7.5) is skipped without answer,
//!   so two peers never ping-pong forever.
//! - Memory is bounded by `max` bytes: a header section that does not end
//!   within `max` bytes, or a Content-Length that would make the message
//!   longer than `max`, is [`FrameError::TooLong`] (close, count). The
//!   buffer never holds more than `max` bytes plus one read.

use std::fmt;

/// Default bound of one message on a stream, bytes (64 KiB).
pub const DEFAULT_MAX_MESSAGE: usize = 65_536;

/// One unit read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole SIP message: header section, empty line, body.
    Message(Vec<u8>),
    /// A CRLFCRLF keep-alive: answer with [`PONG`].
    Ping,
}

/// The answer to a [`Frame::Ping`] (RFC 5626 §3.5.1): one CRLF.
pub const PONG: &[u8] = b"\r\n";

/// Why the stream cannot go on. After any of these the connection is
/// closed: framing is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The message would exceed the bound (`limit` bytes): header section
    /// without end, or `declared` Content-Length too large.
    TooLong {
        /// The bound, bytes.
        limit: usize,
    },
    /// The header section has no Content-Length; `head` is the header
    /// section (start line to empty line), to address a 400.
    NoContentLength {
        /// Header section bytes, including the empty line.
        head: Vec<u8>,
    },
    /// Content-Length is not a non-negative integer, or appears twice with
    /// different values; `head` as above.
    BadContentLength {
        /// Header section bytes, including the empty line.
        head: Vec<u8>,
        /// The offending value(s).
        value: String,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong { limit } => write!(f, "message longer than {limit} bytes"),
            FrameError::NoContentLength { .. } => write!(f, "no Content-Length on a stream"),
            FrameError::BadContentLength { value, .. } => {
                write!(f, "bad Content-Length {value:?}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// The framer of one connection (see the module docs).
#[derive(Debug, Clone)]
pub struct Framer {
    /// Received bytes; those before `start` are consumed (kept until a
    /// push compacts, so pipelined messages are not shifted one by one).
    buf: Vec<u8>,
    start: usize,
    max: usize,
    /// Bytes of `buf` already searched for the end of the header section.
    scanned: usize,
}

impl Framer {
    /// A framer bounding messages to `max` bytes (at least 1 KiB).
    pub fn new(max: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            start: 0,
            max: max.max(1024),
            scanned: 0,
        }
    }

    /// Appends bytes read from the stream. Call [`Framer::next_frame`]
    /// until it returns `Ok(None)` after each push; reads of at most `max`
    /// bytes keep the buffer within 2·`max`.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes held and not yet framed (an incomplete message).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    ///
    /// Errors: [`FrameError`]; the connection must then be closed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        // Empty lines between messages: pings, pongs, leading CRLFs.
        loop {
            let b = &self.buf[self.start..];
            if b.starts_with(b"\r\n\r\n") {
                self.consume(4);
                return Ok(Some(Frame::Ping));
            }
            match b {
                [b'\r', b'\n', b'\r'] | [b'\r', b'\n'] | [b'\r'] => return Ok(None),
                [b'\r', b'\n', ..] => self.consume(2),
                [b'\n', ..] => self.consume(1),
                _ => break,
            }
        }
        if self.buffered() == 0 {
            return Ok(None);
        }
        let Some(head_len) = self.head_end() else {
            if self.buffered() > self.max {
                return Err(FrameError::TooLong { limit: self.max });
            }
            return Ok(None);
        };
        if head_len > self.max {
            return Err(FrameError::TooLong { limit: self.max });
        }
        let head = &self.buf[self.start..self.start + head_len];
        let body_len = match content_length(head) {
            Ok(Some(n)) => n,
            Ok(None) => {
                return Err(FrameError::NoContentLength {
                    head: head.to_vec(),
                })
            }
            Err(value) => {
                return Err(FrameError::BadContentLength {
                    head: head.to_vec(),
                    value,
                })
            }
        };
        let total = match usize::try_from(body_len)
            .ok()
            .and_then(|b| b.checked_add(head_len))
        {
            Some(t) if t <= self.max => t,
            _ => return Err(FrameError::TooLong { limit: self.max }),
        };
        if self.buffered() < total {
            return Ok(None);
        }
        let msg = self.buf[self.start..self.start + total].to_vec();
        self.consume(total);
        Ok(Some(Frame::Message(msg)))
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.scanned = 0;
    }

    /// Length of the header section including its empty line (CRLFCRLF,
    /// or LFLF for bare-LF senders), if it has arrived.
    fn head_end(&mut self) -> Option<usize> {
        // Resume a little before where the last search stopped, since the
        // end marker may straddle two reads.
        let from = self.scanned.saturating_sub(3);
        let b = &self.buf[self.start..];
        let mut i = from;
        while i + 1 < b.len() {
            if b[i] == b'\n' {
                if b[i + 1] == b'\n' {
                    return Some(i + 2);
                }
                if b[i + 1] == b'\r' && b.get(i + 2) == Some(&b'\n') {
                    return Some(i + 3);
                }
            }
            i += 1;
        }
        self.scanned = b.len();
        None
    }
}

/// The Content-Length of a header section: `Ok(None)` if absent,
/// `Err(value)` if not a non-negative integer or given twice differently.
/// Folded continuation lines are not looked at (a folded Content-Length
/// value is not a number and is refused).
pub fn content_length(head: &[u8]) -> Result<Option<u64>, String> {
    let text = String::from_utf8_lossy(head);
    let mut found: Option<u64> = None;
    for line in text.split('\n').skip(1) {
        let line = line.trim_end_matches('\r');
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let name = name.trim();
        if !(name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l")) {
            continue;
        }
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|c| c.is_ascii_digit()) {
            return Err(value.to_string());
        }
        // Too many digits for u64: certainly longer than any bound.
        let n = value.parse::<u64>().unwrap_or(u64::MAX);
        match found {
            Some(f) if f != n => return Err(format!("{f}, {n}")),
            _ => found = Some(n),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] =
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";

    fn with_body(body: &str) -> Vec<u8> {
        format!(
            "MESSAGE sip:x SIP/2.0\r\nl: {}\r\nVia: SIP/2.0/TCP h\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn frames(f: &mut Framer) -> Vec<Frame> {
        let mut v = Vec::new();
        for _ in 0..100 {
            match f.next_frame() {
                Ok(Some(x)) => v.push(x),
                Ok(None) => return v,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("framer did not stop");
    }

    #[test]
    fn pipelined_messages_come_out_one_by_one() {
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        let mut data = OPTIONS.to_vec();
        data.extend_from_slice(&with_body("hello"));
        data.extend_from_slice(OPTIONS);
        f.push(&data);
        assert_eq!(
            frames(&mut f),
            vec![
                Frame::Message(OPTIONS.to_vec()),
                Frame::Message(with_body("hello")),
                Frame::Message(OPTIONS.to_vec())
            ]
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn a_message_split_anywhere_waits_for_the_rest() {
        let msg = with_body("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n");
        for cut in 1..msg.len() {
            let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
            f.push(&msg[..cut]);
            assert_eq!(frames(&mut f), vec![], "cut at {cut}");
            f.push(&msg[cut..]);
            assert_eq!(frames(&mut f), vec![Frame::Message(msg.clone())]);
        }
        // Byte by byte.
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        let mut got = Vec::new();
        for b in &msg {
            f.push(&[*b]);
            got.extend(frames(&mut f));
        }
        assert_eq!(got, vec![Frame::Message(msg)]);
    }

    #[test]
    fn double_crlf_is_a_ping_and_single_crlf_is_skipped() {
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        f.push(b"\r\n\r\n");
        assert_eq!(frames(&mut f), vec![Frame::Ping]);
        // A pong (lone CRLF) before a message: skipped.
        f.push(b"\r\n");
        assert_eq!(frames(&mut f), vec![]);
        f.push(OPTIONS);
        assert_eq!(frames(&mut f), vec![Frame::Message(OPTIONS.to_vec())]);
        // Ping split across reads.
        f.push(b"\r\n\r");
        assert_eq!(frames(&mut f), vec![]);
        f.push(b"\n");
        assert_eq!(frames(&mut f), vec![Frame::Ping]);
        // Pings between pipelined messages.
        let mut data = b"\r\n\r\n".to_vec();
        data.extend_from_slice(OPTIONS);
        data.extend_from_slice(b"\r\n\r\n\r\n\r\n");
        f.push(&data);
        assert_eq!(
            frames(&mut f),
            vec![
                Frame::Ping,
                Frame::Message(OPTIONS.to_vec()),
                Frame::Ping,
                Frame::Ping
            ]
        );
    }

    #[test]
    fn over_long_messages_are_refused_without_growing() {
        // A header section that never ends.
        let mut f = Framer::new(4096);
        let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        f.push(b"OPTIONS sip:x SIP/2.0\r\n");
        let mut err = None;
        for _ in 0..1000 {
            f.push(line);
            match f.next_frame() {
                Ok(None) => {}
                Ok(Some(x)) => panic!("{x:?}"),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
            assert!(f.buffered() <= 4096 + line.len());
        }
        assert_eq!(err, Some(FrameError::TooLong { limit: 4096 }));
        // A Content-Length beyond the bound: refused before the body comes.
        let mut f = Framer::new(4096);
        f.push(b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 5000\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::TooLong { limit: 4096 }));
        let mut f = Framer::new(4096);
        f.push(b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::TooLong { limit: 4096 }));
        // Exactly at the bound is fine.
        let mut f = Framer::new(1024);
        let head = "MESSAGE sip:x SIP/2.0\r\nContent-Length: 000\r\n\r\n";
        let body = "b".repeat(1024 - head.len());
        assert_eq!(body.len().to_string().len(), 3);
        let msg = head.replace("000", &body.len().to_string()) + &body;
        assert_eq!(msg.len(), 1024);
        f.push(msg.as_bytes());
        assert_eq!(frames(&mut f), vec![Frame::Message(msg.into_bytes())]);
    }

    #[test]
    fn missing_or_bad_content_length_is_an_error_with_the_head() {
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        f.push(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n");
        match f.next_frame() {
            Err(FrameError::NoContentLength { head }) => {
                assert!(head.starts_with(b"OPTIONS") && head.ends_with(b"\r\n\r\n"))
            }
            x => panic!("{x:?}"),
        }
        for (bad, value) in [
            ("Content-Length: -1", "-1"),
            ("Content-Length: abc", "abc"),
            ("Content-Length:", ""),
            ("Content-Length: 1\r\nl: 2", "1, 2"),
        ] {
            let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
            f.push(format!("OPTIONS sip:x SIP/2.0\r\n{bad}\r\n\r\nxx").as_bytes());
            match f.next_frame() {
                Err(FrameError::BadContentLength { value: v, .. }) => assert_eq!(v, value),
                x => panic!("{bad}: {x:?}"),
            }
        }
        // The same value twice, and white space around the colon, are fine.
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        let m = b"OPTIONS sip:x SIP/2.0\r\nContent-Length : 2\r\nl:2\r\n\r\nxx";
        f.push(m);
        assert_eq!(frames(&mut f), vec![Frame::Message(m.to_vec())]);
    }

    #[test]
    fn bare_lf_messages_are_framed() {
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        let m = b"OPTIONS sip:x SIP/2.0\nContent-Length: 3\n\nabc";
        f.push(m);
        f.push(OPTIONS);
        assert_eq!(
            frames(&mut f),
            vec![Frame::Message(m.to_vec()), Frame::Message(OPTIONS.to_vec())]
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut f = Framer::new(2048);
            let len = (seed % 300) as usize;
            let mut data = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                data.push(b"\r\n:lContent-Length 0123456789ab"[(seed % 31) as usize]);
            }
            f.push(&data);
            for _ in 0..400 {
                match f.next_frame() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
