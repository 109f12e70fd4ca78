//! One line-preserving SDP engine (RFC 8866, which obsoletes RFC 4566) for
//! both planes: a zero-copy reader and an edit-list writer, sans-IO.
//!
//! An SDP body is a list of `<type>=<value>` lines (RFC 8866 §5): a
//! session-level part, then one section per `m=` line (§5.14). The
//! [`Sdp`] reader borrows the body and splits it into [`Line`]s, each kept
//! verbatim with its own line end (CRLF or LF, §5: "a CRLF ... parsers
//! SHOULD be tolerant and also accept lines terminated with a single
//! newline"); nothing is parsed until asked. Field views parse one line's
//! value on demand: [`Connection`] (`c=`, §5.7), [`Origin`] (`o=`, §5.2),
//! [`MediaLine`] (`m=`, §5.14), [`Attribute`] (`a=`, §5.13), [`Rtcp`]
//! (`a=rtcp`, RFC 3605), [`RtpMap`] (`a=rtpmap`, §6.6) and [`Candidate`]
//! (`a=candidate`, RFC 8839 §5.1); secure media in [`Crypto`] (`a=crypto`,
//! RFC 4568), [`Fingerprint`] (RFC 8122), [`Setup`] (RFC 4145), ICE
//! credentials and options (RFC 8839 §5.4), `a=mid` and [`SecureMedia`].
//!
//! The [`Writer`] takes edits by line index (replace, remove, insert after)
//! and writes every other line byte for byte; with [`Newline::CrLf`] every
//! line end becomes CRLF, with [`Newline::Keep`] each keeps its own.
//!
//! What to rewrite is policy and stays with each plane
//! (`tern_signaling::sdp` for the B2BUA, `tern_ng::sdp`
//! for ng); this module only reads and writes lines.
//!
//! [`parse`] is the fuzz-friendly entry point: any bytes in, a document or
//! a [`ParseError`] out, never a panic.

use std::fmt;
use std::net::IpAddr;

mod fields;
mod secure;

pub use fields::{
    addr_type, connection_value, direction_name, field, is_ice_attribute, parse_direction,
    rtcp_value, Attribute, Candidate, Connection, FieldError, MediaLine, Origin, Rtcp, RtpMap,
    ICE_ATTRIBUTES,
};
pub use secure::{
    candidate_value, crypto_value, fingerprint_value, host_priority, is_ice_char, parse_ice_pwd,
    parse_ice_ufrag, parse_mid, Crypto, Fingerprint, IceOptions, Lifetime, Mki, SecureFieldError,
    SecureMedia, Setup, FINGERPRINT_HASHES, HOST_TYPE_PREFERENCE, MAX_CRYPTO, MAX_DIGEST,
    MAX_KEY_SALT,
};

/// How a line ended in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    /// `\r\n`, as RFC 8866 §5 asks.
    CrLf,
    /// A bare `\n`, which §5 says parsers should accept.
    Lf,
    /// The body's last line, ending in a `\r` with no `\n` after it (a
    /// body cut short); the `\r` is not part of the text.
    Cr,
    /// The body's last line, with no line end.
    None,
}

impl LineEnd {
    /// The bytes of this line end (`""` for [`LineEnd::None`]).
    pub fn as_str(self) -> &'static str {
        match self {
            LineEnd::CrLf => "\r\n",
            LineEnd::Lf => "\n",
            LineEnd::Cr => "\r",
            LineEnd::None => "",
        }
    }
}

/// One line of a body, borrowed: its text (without the line end) and how
/// it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    text: &'a str,
    end: LineEnd,
}

impl<'a> Line<'a> {
    /// The line without its line end (a `\r` before the `\n` is part of
    /// the line end; any other `\r` stays in the text).
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// How the line ended.
    pub fn end(&self) -> LineEnd {
        self.end
    }

    /// The type letter of a `<type>=<value>` line (RFC 8866 §5: one
    /// lower-case letter, then `=` with no white space); `None` for any
    /// other line.
    pub fn kind(&self) -> Option<u8> {
        match self.text.as_bytes() {
            [t, b'=', ..] if t.is_ascii_lowercase() => Some(*t),
            _ => None,
        }
    }

    /// Whether this is a `<kind>=` line.
    pub fn is(&self, kind: u8) -> bool {
        self.kind() == Some(kind)
    }

    /// The value after `<type>=`; `None` when [`Line::kind`] is `None`.
    pub fn value(&self) -> Option<&'a str> {
        self.kind().map(|_| &self.text[2..])
    }

    /// The line holds nothing but white space (or nothing).
    pub fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }

    /// The attribute of an `a=` line (RFC 8866 §5.13); `None` for other
    /// lines.
    pub fn attribute(&self) -> Option<Attribute<'a>> {
        if self.is(b'a') {
            self.value().map(Attribute::parse)
        } else {
            None
        }
    }
}

/// Why [`parse`] refused a body. Line numbers count from 1 and include
/// blank lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not UTF-8 text; the first bad byte is at `offset`.
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// No line other than blank ones.
    Empty,
    /// A line that is not `<type>=<value>` (RFC 8866 §5).
    Untyped {
        /// 1-based line number.
        line: usize,
    },
    /// The first line is not `v=` (RFC 8866 §5.1).
    NoVersion {
        /// 1-based line number of the first non-blank line.
        line: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotUtf8 { offset } => write!(f, "SDP is not UTF-8 (byte {offset})"),
            ParseError::Empty => write!(f, "SDP is empty"),
            ParseError::Untyped { line } => write!(f, "line {line} is not <type>=<value>"),
            ParseError::NoVersion { line } => write!(f, "line {line} is not v= (RFC 8866 §5.1)"),
        }
    }
}

impl std::error::Error for ParseError {}

/// A borrowed SDP body split into lines. Building one never fails and
/// never allocates more than the line index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp<'a> {
    lines: Vec<Line<'a>>,
    /// Index into `lines` of each `m=` line.
    media: Vec<usize>,
}

/// Reads `body` and checks it is SDP: UTF-8, every non-blank line
/// `<type>=<value>`, the first one `v=` (RFC 8866 §5). The fuzz entry
/// point: it never panics.
///
/// Errors: [`ParseError`].
pub fn parse(body: &[u8]) -> Result<Sdp<'_>, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| ParseError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let sdp = Sdp::read(text);
    sdp.check()?;
    Ok(sdp)
}

impl<'a> Sdp<'a> {
    /// Splits `text` at `\n` (a `\r` before it belongs to the line end).
    /// A final `\n` does not start another line; blank lines are kept.
    pub fn read(text: &'a str) -> Sdp<'a> {
        let mut lines = Vec::new();
        let mut media = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (raw, end, next) = match rest.find('\n') {
                Some(i) => match rest[..i].strip_suffix('\r') {
                    Some(t) => (t, LineEnd::CrLf, &rest[i + 1..]),
                    None => (&rest[..i], LineEnd::Lf, &rest[i + 1..]),
                },
                None => match rest.strip_suffix('\r') {
                    Some(t) => (t, LineEnd::Cr, ""),
                    None => (rest, LineEnd::None, ""),
                },
            };
            let line = Line { text: raw, end };
            if line.is(b'm') {
                media.push(lines.len());
            }
            lines.push(line);
            rest = next;
        }
        Sdp { lines, media }
    }

    /// Checks what [`parse`] checks beyond UTF-8.
    ///
    /// Errors: [`ParseError::Untyped`], [`ParseError::NoVersion`],
    /// [`ParseError::Empty`].
    pub fn check(&self) -> Result<(), ParseError> {
        let mut seen = false;
        for (i, l) in self.lines.iter().enumerate() {
            if l.is_blank() {
                continue;
            }
            if l.kind().is_none() {
                return Err(ParseError::Untyped { line: i + 1 });
            }
            if !seen && !l.is(b'v') {
                return Err(ParseError::NoVersion { line: i + 1 });
            }
            seen = true;
        }
        if seen {
            Ok(())
        } else {
            Err(ParseError::Empty)
        }
    }

    /// Every line, in order.
    pub fn lines(&self) -> &[Line<'a>] {
        &self.lines
    }

    /// The session-level part: the lines before the first `m=`.
    pub fn session(&self) -> Section<'_, 'a> {
        let end = self.media.first().copied().unwrap_or(self.lines.len());
        Section {
            lines: &self.lines[..end],
            start: 0,
        }
    }

    /// How many media sections (`m=` lines) there are.
    pub fn media_count(&self) -> usize {
        self.media.len()
    }

    /// Media section `i` (0-based): its `m=` line and the lines up to the
    /// next `m=`; `None` past the last.
    pub fn media(&self, i: usize) -> Option<Section<'_, 'a>> {
        let start = *self.media.get(i)?;
        let end = self.media.get(i + 1).copied().unwrap_or(self.lines.len());
        Some(Section {
            lines: &self.lines[start..end],
            start,
        })
    }

    /// The media sections, in order.
    pub fn media_sections(&self) -> impl Iterator<Item = Section<'_, 'a>> + '_ {
        (0..self.media.len()).filter_map(move |i| self.media(i))
    }

    /// A [`Writer`] over this body.
    pub fn writer(&self, newline: Newline) -> Writer<'_, 'a> {
        Writer::new(self, newline)
    }
}

/// The session part or one media section of an [`Sdp`]: a run of lines
/// and where it starts in [`Sdp::lines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section<'s, 'a> {
    lines: &'s [Line<'a>],
    start: usize,
}

impl<'s, 'a> Section<'s, 'a> {
    /// The section's lines (a media section's first is its `m=`).
    pub fn lines(&self) -> &'s [Line<'a>] {
        self.lines
    }

    /// Index in [`Sdp::lines`] of the section's first line.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Index in [`Sdp::lines`] one past the section's last line.
    pub fn end(&self) -> usize {
        self.start + self.lines.len()
    }

    /// The lines with their indices in [`Sdp::lines`].
    pub fn indexed(&self) -> impl Iterator<Item = (usize, &'s Line<'a>)> + 's {
        let start = self.start;
        self.lines
            .iter()
            .enumerate()
            .map(move |(i, l)| (start + i, l))
    }

    /// The `m=` line of a media section, read; `None` for the session part.
    ///
    /// Errors: those of [`MediaLine::parse`].
    pub fn media_line(&self) -> Option<Result<MediaLine<'a>, FieldError>> {
        let l = self.lines.first().filter(|l| l.is(b'm'))?;
        l.value().map(MediaLine::parse)
    }

    /// The section's attributes with their line indices.
    pub fn attributes(&self) -> impl Iterator<Item = (usize, Attribute<'a>)> + 's {
        self.indexed()
            .filter_map(|(i, l)| l.attribute().map(|a| (i, a)))
    }

    /// The value of the section's first `<kind>=` line, with its index.
    pub fn first(&self, kind: u8) -> Option<(usize, &'a str)> {
        self.indexed()
            .find(|(_, l)| l.is(kind))
            .and_then(|(i, l)| l.value().map(|v| (i, v)))
    }
}

/// Line ends on output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newline {
    /// Every line keeps its own line end; inserted lines, and a last line
    /// that had none but is followed by more, get the body's first line's
    /// (CRLF when it has none).
    Keep,
    /// Every line ends in CRLF (RFC 8866 §5).
    CrLf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Edit {
    Keep,
    Remove,
    Replace(String),
}

/// Edits of an [`Sdp`], by line index into [`Sdp::lines`], and the body
/// they give. Lines not edited are written byte for byte; of two edits to
/// one line the later wins; inserted lines come after their line's own
/// (replaced, removed or kept) text, in the order inserted. Indices past
/// the last line are ignored, except by [`Writer::insert_after`], which
/// appends there.
#[derive(Debug, Clone)]
pub struct Writer<'s, 'a> {
    sdp: &'s Sdp<'a>,
    edits: Vec<Edit>,
    /// Lines to write after line `i`; the last slot is after the end.
    after: Vec<Vec<String>>,
    newline: Newline,
}

impl<'s, 'a> Writer<'s, 'a> {
    /// A writer with no edits.
    pub fn new(sdp: &'s Sdp<'a>, newline: Newline) -> Writer<'s, 'a> {
        let n = sdp.lines.len();
        Writer {
            sdp,
            edits: vec![Edit::Keep; n],
            after: vec![Vec::new(); n + 1],
            newline,
        }
    }

    /// Writes `text` (a whole line without its line end, such as
    /// `c=IN IP4 192.0.2.1`) instead of line `i`.
    pub fn replace(&mut self, i: usize, text: impl Into<String>) {
        if let Some(e) = self.edits.get_mut(i) {
            *e = Edit::Replace(text.into());
        }
    }

    /// Leaves line `i` out.
    pub fn remove(&mut self, i: usize) {
        if let Some(e) = self.edits.get_mut(i) {
            *e = Edit::Remove;
        }
    }

    /// Whether line `i` is left out.
    pub fn is_removed(&self, i: usize) -> bool {
        self.edits.get(i) == Some(&Edit::Remove)
    }

    /// Writes `text` (a whole line without its line end) after line `i`,
    /// or at the end of the body when `i` is past the last line.
    pub fn insert_after(&mut self, i: usize, text: impl Into<String>) {
        let last = self.after.len() - 1;
        self.after[i.min(last)].push(text.into());
    }

    /// Adds `a=<name>` or `a=<name>:<value>` at the end of `section`.
    pub fn add_attribute(&mut self, section: &Section<'_, 'a>, name: &str, value: Option<&str>) {
        let a = Attribute { name, value };
        let at = if section.lines.is_empty() {
            usize::MAX
        } else {
            section.end() - 1
        };
        self.insert_after(at, format!("a={a}"));
    }

    /// Removes the attributes of `section` for which `drop` says so; how
    /// many.
    pub fn remove_attributes(
        &mut self,
        section: &Section<'_, 'a>,
        mut drop: impl FnMut(&Attribute<'a>) -> bool,
    ) -> usize {
        let mut n = 0;
        for (i, a) in section.attributes() {
            if drop(&a) {
                self.remove(i);
                n += 1;
            }
        }
        n
    }

    /// Makes line `i` `c=IN IP4 <ip>` (or `IP6`), RFC 8866 §5.7.
    pub fn set_connection(&mut self, i: usize, ip: IpAddr) {
        self.replace(i, format!("c={}", connection_value(ip)));
    }

    /// Makes the port of `m=` line `i` `port` (dropping any `/<number of
    /// ports>`), and its proto `proto` when given; the line's words are
    /// rejoined with single spaces. A line with fewer words keeps what it
    /// has. Not an `m=` line: no change.
    pub fn set_media(&mut self, i: usize, port: u16, proto: Option<&str>) {
        let Some(v) = self
            .sdp
            .lines
            .get(i)
            .filter(|l| l.is(b'm'))
            .and_then(Line::value)
        else {
            return;
        };
        let port = port.to_string();
        let mut w: Vec<&str> = v.split_ascii_whitespace().collect();
        if let Some(p) = w.get_mut(1) {
            *p = &port;
        }
        if let (Some(p), Some(new)) = (w.get_mut(2), proto) {
            *p = new;
        }
        self.replace(i, format!("m={}", w.join(" ")));
    }

    /// Bumps the session version of `o=` line `i` by `by` (wrapping) and,
    /// with `ip`, makes its address type and address `ip`'s (RFC 8866
    /// §5.2). Not a readable `o=` line: no change.
    pub fn set_origin(&mut self, i: usize, by: u64, ip: Option<IpAddr>) {
        let Some(o) = self
            .sdp
            .lines
            .get(i)
            .filter(|l| l.is(b'o'))
            .and_then(Line::value)
            .and_then(|v| Origin::parse(v).ok())
        else {
            return;
        };
        let version = o.bumped_version(by);
        let address = ip.map(|ip| ip.to_string());
        let new = Origin {
            username: o.username,
            session_id: o.session_id,
            version: &version,
            net_type: o.net_type,
            addr_type: match ip {
                Some(ip) => addr_type(ip),
                None => o.addr_type,
            },
            address: address.as_deref().unwrap_or(o.address),
            rest: o.rest,
        };
        let line = format!("o={new}");
        self.replace(i, line);
    }

    /// Makes the formats of `m=` line `i` `formats`, keeping its first
    /// three words (media, port, proto) as written, rejoined with single
    /// spaces. Whether it did: not when line `i` is not an `m=` line with
    /// at least three words.
    pub fn set_media_formats<S: AsRef<str>>(&mut self, i: usize, formats: &[S]) -> bool {
        let Some(v) = self
            .sdp
            .lines
            .get(i)
            .filter(|l| l.is(b'm'))
            .and_then(Line::value)
        else {
            return false;
        };
        let head: Vec<&str> = v.split_ascii_whitespace().take(3).collect();
        if head.len() < 3 {
            return false;
        }
        let mut line = format!("m={}", head.join(" "));
        for f in formats {
            line.push(' ');
            line.push_str(f.as_ref());
        }
        self.replace(i, line);
        true
    }

    /// Makes line `i` `a=rtcp:<port>` or `a=rtcp:<port> IN IP4 <ip>`
    /// (RFC 3605 §2.1).
    pub fn set_rtcp(&mut self, i: usize, port: u16, ip: Option<IpAddr>) {
        self.replace(i, format!("a=rtcp:{}", rtcp_value(port, ip)));
    }

    /// The edited body.
    pub fn finish(self) -> String {
        let lines = &self.sdp.lines;
        let default_end = match lines.first().map(Line::end) {
            Some(LineEnd::Lf) => "\n",
            _ => "\r\n",
        };
        let cap = lines.iter().map(|l| l.text.len() + 2).sum::<usize>() + 64;
        let mut out = String::with_capacity(cap);
        // A kept last line without a whole line end gets one only if
        // something follows it.
        let mut pending: Option<&str> = None;
        let mut push = |out: &mut String, text: &str, end: &str| {
            if let Some(p) = pending {
                out.push_str(p);
            }
            out.push_str(text);
            out.push_str(end);
            pending = match end {
                "" => Some(default_end),
                "\r" => Some("\n"),
                _ => None,
            };
        };
        let end_of = |l: &Line<'_>| match self.newline {
            Newline::CrLf => "\r\n",
            Newline::Keep => l.end.as_str(),
        };
        let inserted_end = match self.newline {
            Newline::CrLf => "\r\n",
            Newline::Keep => default_end,
        };
        for (i, l) in lines.iter().enumerate() {
            match &self.edits[i] {
                Edit::Keep => push(&mut out, l.text, end_of(l)),
                Edit::Remove => {}
                Edit::Replace(t) => push(&mut out, t, end_of(l)),
            }
            for t in &self.after[i] {
                push(&mut out, t, inserted_end);
            }
        }
        for t in &self.after[lines.len()] {
            push(&mut out, t, inserted_end);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Direction;

    /// A Cisco phone's INVITE body (LF, a trailing space kept).
    const CISCO: &str = "v=0\no=CiscoSystemsSIP-IPPhone-UserAgent 14474 8233 IN IP4 195.37.78.190\ns=SIP Call\nc=IN IP4 195.37.78.190\nt=0 0\nm=audio 18456 RTP/AVP 0 8 18 101\na=rtpmap:0 pcmu/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-11 \n";
    /// A Cirpack 183's body (CRLF).
    const CIRPACK: &str = "v=0\r\no=cp10 112047106116 112047106116 IN IP4 212.242.33.75\r\ns=SIP Call\r\nc=IN IP4 212.242.33.36\r\nt=0 0\r\nm=audio 40392 RTP/AVP 8 0\r\nb=AS:64\r\na=rtpmap:8 PCMA/8000/1\r\na=rtpmap:0 PCMU/8000/1\r\na=ptime:20\r\n";
    /// A browser's offer: ICE, DTLS, rtcp-mux, two sections.
    const WEBRTC: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=candidate:842163049 1 udp 1677729535 203.0.113.7 50011 typ srflx raddr 192.168.1.5 rport 50011 generation 0 network-cost 999\r\na=candidate:1 1 UDP 2130706431 192.168.1.5 50011 typ host\r\na=ice-ufrag:Oy4f\r\na=ice-pwd:8Ck6gKcwJ1PjX+lZXdyF3xiN\r\na=ice-options:trickle\r\na=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:126 telephone-event/8000\r\na=end-of-candidates\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn round_trips_byte_for_byte() {
        let mixed = "v=0\r\no=- 1 1 IN IP4 1.1.1.1\ns=-\r\n\r\n  \nt=0 0\nm=audio 4 RTP/AVP 0\r\na=x\r\r\nno-newline-at-end";
        for body in [
            CISCO, CIRPACK, WEBRTC, mixed, "", "\n", "v=0", "v=0\r", "\r",
        ] {
            let sdp = Sdp::read(body);
            assert_eq!(sdp.writer(Newline::Keep).finish(), body);
            let mut pieces: Vec<&str> = body.split('\n').collect();
            if pieces.last() == Some(&"") {
                pieces.pop();
            }
            let crlf: String = pieces
                .iter()
                .map(|p| p.strip_suffix('\r').unwrap_or(p).to_string() + "\r\n")
                .collect();
            assert_eq!(sdp.writer(Newline::CrLf).finish(), crlf, "{body:?}");
        }
        let lf = CIRPACK.replace("\r\n", "\n");
        assert_eq!(Sdp::read(&lf).writer(Newline::Keep).finish(), lf);
        assert_eq!(Sdp::read(&lf).writer(Newline::CrLf).finish(), CIRPACK);
    }

    #[test]
    fn reads_sessions_and_sections() {
        let sdp = parse(WEBRTC.as_bytes()).unwrap();
        assert_eq!(sdp.media_count(), 2);
        assert_eq!(sdp.session().lines().len(), 6);
        assert_eq!(sdp.session().first(b'o').map(|(i, _)| i), Some(1));
        let audio = sdp.media(0).unwrap();
        assert_eq!(audio.start(), 6);
        let m = audio.media_line().unwrap().unwrap();
        assert_eq!(
            (m.media, m.port, m.proto),
            ("audio", 9, "UDP/TLS/RTP/SAVPF")
        );
        assert_eq!(m.payload_types().collect::<Vec<_>>(), [111, 0, 8, 126]);
        let (_, c) = audio.first(b'c').unwrap();
        let c = Connection::parse(c).unwrap();
        assert_eq!((c.ip, c.addr_type_matches()), (ip("0.0.0.0"), true));
        let rtcp = audio
            .attributes()
            .find(|(_, a)| a.name == "rtcp")
            .and_then(|(_, a)| a.value)
            .map(Rtcp::parse)
            .unwrap()
            .unwrap();
        assert_eq!(rtcp.port, 9);
        assert_eq!(rtcp.connection().unwrap().unwrap().ip, ip("0.0.0.0"));
        let dir: Vec<_> = audio
            .attributes()
            .filter_map(|(_, a)| a.direction())
            .collect();
        assert_eq!(dir, [Direction::SendRecv]);
        let ice = audio.attributes().filter(|(_, a)| a.is_ice()).count();
        assert_eq!(ice, 6);
        let map = audio
            .attributes()
            .filter(|(_, a)| a.name == "rtpmap")
            .filter_map(|(_, a)| RtpMap::parse(a.value?).ok())
            .next()
            .unwrap();
        assert_eq!(
            map,
            RtpMap {
                pt: 111,
                encoding: "opus",
                clock_rate: Some(48000),
                params: Some("2"),
            }
        );
        assert_eq!(sdp.media(1).unwrap().lines().len(), 4);
        assert!(sdp.media(2).is_none());
        let o = Origin::parse(sdp.lines()[1].value().unwrap()).unwrap();
        assert_eq!(
            (o.session_id, o.version, o.address),
            ("4611731400430051336", "2", "127.0.0.1")
        );
    }

    #[test]
    fn ice_candidates_parsed() {
        let c = Candidate::parse("842163049 1 udp 1677729535 203.0.113.7 50011 typ srflx raddr 192.168.1.5 rport 50012 generation 0").unwrap();
        assert_eq!(c.foundation, "842163049");
        assert_eq!(
            (c.component, c.transport, c.priority),
            (1, "udp", 1_677_729_535)
        );
        assert_eq!((c.address, c.port, c.typ), ("203.0.113.7", 50011, "srflx"));
        assert_eq!(
            (c.related_address, c.related_port),
            (Some("192.168.1.5"), Some(50012))
        );
        let h = Candidate::parse("1 2 UDP 2130706431 abcd.local 9 typ host").unwrap();
        assert_eq!((h.component, h.address, h.typ), (2, "abcd.local", "host"));
        assert_eq!(h.related_address, None);
        assert_eq!(
            Candidate::parse("1 1 UDP"),
            Err(FieldError::Missing("priority"))
        );
        assert_eq!(
            Candidate::parse("1 0 UDP 1 a 9 typ host"),
            Err(FieldError::Invalid("component-id"))
        );
        assert_eq!(
            Candidate::parse("1 1 UDP 0 a 9 typ host"),
            Err(FieldError::Invalid("priority"))
        );
        assert_eq!(
            Candidate::parse("1 1 UDP 1 a 70000 typ host"),
            Err(FieldError::Invalid("port"))
        );
        assert_eq!(
            Candidate::parse("1 1 UDP 1 a 9 type host"),
            Err(FieldError::Invalid("typ"))
        );
        assert_eq!(
            Candidate::parse("1 1 UDP 1 a 9 typ"),
            Err(FieldError::Missing("cand-type"))
        );
        assert_eq!(
            Candidate::parse("1 1 UDP 1 a 9 typ relay raddr 1.2.3.4 rport x"),
            Err(FieldError::Invalid("rport"))
        );
    }

    #[test]
    fn rewrites_c_m_o_and_rtcp() {
        let sdp = parse(CIRPACK.as_bytes()).unwrap();
        let mut w = sdp.writer(Newline::Keep);
        w.set_origin(1, 1, Some(ip("2001:db8::9")));
        w.set_connection(3, ip("192.0.2.1"));
        w.set_media(5, 30000, None);
        let audio = sdp.media(0).unwrap();
        w.add_attribute(&audio, "rtcp", Some("30001"));
        w.add_attribute(&audio, "rtcp-mux", None);
        let out = w.finish();
        assert_eq!(
            out,
            CIRPACK
                .replace(
                    "112047106116 IN IP4 212.242.33.75",
                    "112047106117 IN IP6 2001:db8::9"
                )
                .replace("c=IN IP4 212.242.33.36", "c=IN IP4 192.0.2.1")
                .replace("m=audio 40392", "m=audio 30000")
                + "a=rtcp:30001\r\na=rtcp-mux\r\n"
        );

        let sdp = parse(WEBRTC.as_bytes()).unwrap();
        let mut w = sdp.writer(Newline::CrLf);
        w.set_media(6, 4000, Some("RTP/AVP"));
        w.set_rtcp(8, 4001, Some(ip("10.0.0.1")));
        w.set_origin(1, u64::MAX, None);
        for s in sdp.media_sections() {
            w.remove_attributes(&s, |a| a.is_ice());
        }
        let out = w.finish();
        assert!(out.contains("m=audio 4000 RTP/AVP 111 0 8 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:4001 IN IP4 10.0.0.1\r\na=fingerprint"));
        assert!(out.contains("o=- 4611731400430051336 1 IN IP4 127.0.0.1\r\n"));
        assert!(!out.contains("candidate") && !out.contains("ice-"), "{out}");
        assert!(out.contains("a=rtcp-mux\r\n") && out.ends_with("a=rtpmap:96 VP8/90000\r\n"));
        // Every untouched line is still there, in order.
        let kept: Vec<&str> = WEBRTC
            .lines()
            .filter(|l| {
                !l.contains("ice")
                    && !l.contains("candidate")
                    && !l.starts_with("o=")
                    && !l.starts_with("m=audio")
                    && !l.starts_with("a=rtcp:")
            })
            .collect();
        let got: Vec<&str> = out.lines().filter(|l| kept.contains(l)).collect();
        assert_eq!(got, kept);
    }

    #[test]
    fn edits_on_odd_lines_are_harmless() {
        let sdp = Sdp::read("v=0\nm=\nm=audio\no=short\nx");
        let mut w = sdp.writer(Newline::Keep);
        w.set_media(0, 1, None); // not m=: no change
        w.set_media(1, 1, Some("P")); // no words: kept as it is
        w.set_media(2, 7, None); // one word: kept
        w.set_origin(3, 1, None); // unreadable: kept
        assert!(!w.set_media_formats(2, &["0"]));
        assert!(!w.set_media_formats(0, &["0"]));
        w.replace(99, "ignored");
        w.remove(99);
        w.insert_after(99, "a=end");
        assert_eq!(w.finish(), "v=0\nm=\nm=audio\no=short\nx\na=end\n");
        let sdp = Sdp::read("v=0\nm=audio 5/2 RTP/AVP 0\n");
        let mut w = sdp.writer(Newline::Keep);
        assert!(w.set_media_formats(1, &["8", "0"]));
        assert_eq!(w.clone().finish(), "v=0\nm=audio 5/2 RTP/AVP 8 0\n");
        w.set_media(1, 9, None);
        w.remove(0);
        assert!(w.is_removed(0));
        assert_eq!(w.finish(), "m=audio 9 RTP/AVP 0\n");
        let cut = Sdp::read("v=0\r\na=x\r");
        assert_eq!(cut.lines()[1].text(), "a=x");
        assert_eq!(cut.lines()[1].end(), LineEnd::Cr);
        let mut w = cut.writer(Newline::Keep);
        w.insert_after(1, "a=y");
        assert_eq!(w.finish(), "v=0\r\na=x\r\na=y\r\n");
        let empty = Sdp::read("");
        let mut w = empty.writer(Newline::CrLf);
        w.add_attribute(&empty.session(), "x", None);
        assert_eq!(w.finish(), "a=x\r\n");
    }

    #[test]
    fn malformed_bodies_and_fields_give_clear_errors() {
        assert_eq!(
            parse(b"v=0\r\n\xff"),
            Err(ParseError::NotUtf8 { offset: 5 })
        );
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"\r\n \r\n"), Err(ParseError::Empty));
        assert_eq!(
            parse(b"\no=x\nv=0\n"),
            Err(ParseError::NoVersion { line: 2 })
        );
        assert_eq!(parse(b"v=0\nhello\n"), Err(ParseError::Untyped { line: 2 }));
        assert_eq!(parse(b"v=0\nV=1\n"), Err(ParseError::Untyped { line: 2 }));
        assert_eq!(
            parse(b"v=0\nm =audio\n"),
            Err(ParseError::Untyped { line: 2 })
        );
        assert_eq!(
            ParseError::Untyped { line: 2 }.to_string(),
            "line 2 is not <type>=<value>"
        );
        assert!(parse(b"\n\nv=0\n\nm=audio 1 RTP/AVP 0").is_ok());

        assert_eq!(
            Connection::parse("IN IP4"),
            Err(FieldError::Missing("connection-address"))
        );
        assert_eq!(Connection::parse(""), Err(FieldError::Missing("nettype")));
        assert_eq!(
            Connection::parse("XX IP4 1.2.3.4"),
            Err(FieldError::Invalid("nettype"))
        );
        assert_eq!(
            Connection::parse("IN IP4 host.example"),
            Err(FieldError::Invalid("connection-address"))
        );
        let c = Connection::parse("IN IP4 224.2.36.42/127").unwrap();
        assert_eq!(c.ip, ip("224.2.36.42"));
        assert!(!Connection::parse("IN IP4 ::1").unwrap().addr_type_matches());
        assert_eq!(MediaLine::parse("audio"), Err(FieldError::Missing("port")));
        assert_eq!(
            MediaLine::parse("audio 1"),
            Err(FieldError::Missing("proto"))
        );
        assert_eq!(
            MediaLine::parse("audio 70000 RTP/AVP 0"),
            Err(FieldError::Invalid("port"))
        );
        let m = MediaLine::parse("video 49170/2 RTP/AVP 31 x 300").unwrap();
        assert_eq!((m.port, m.port_count), (49170, Some("2")));
        assert_eq!(m.formats().collect::<Vec<_>>(), ["31", "x", "300"]);
        assert_eq!(m.payload_types().collect::<Vec<_>>(), [31]);
        assert_eq!(
            Origin::parse("- 1 1 IN IP4"),
            Err(FieldError::Missing("unicast-address"))
        );
        let o = Origin::parse("  a  1 x IN IP4 h extra  more ").unwrap();
        assert_eq!((o.version, o.rest), ("x", "extra  more"));
        assert_eq!(o.bumped_version(1), "x");
        assert_eq!(o.to_string(), "a 1 x IN IP4 h extra more");
        assert_eq!(Rtcp::parse(""), Err(FieldError::Missing("rtcp port")));
        assert_eq!(Rtcp::parse("x"), Err(FieldError::Invalid("rtcp port")));
        let r = Rtcp::parse("53020 IN IP6 bad").unwrap();
        assert_eq!(
            r.connection(),
            Some(Err(FieldError::Invalid("connection-address")))
        );
        assert_eq!(
            Rtcp::parse("5").unwrap(),
            Rtcp {
                port: 5,
                address: None
            }
        );
        assert_eq!(
            RtpMap::parse("200 x/1"),
            Err(FieldError::Invalid("payload type"))
        );
        assert_eq!(
            RtpMap::parse("96"),
            Err(FieldError::Missing("encoding name"))
        );
        assert_eq!(RtpMap::parse("96 opus").unwrap().clock_rate, None);
        assert_eq!(
            Attribute::parse("rtcp:5 IN"),
            Attribute {
                name: "rtcp",
                value: Some("5 IN")
            }
        );
        assert_eq!(
            Attribute::parse("sendonly").direction(),
            Some(Direction::SendOnly)
        );
        assert_eq!(Attribute::parse("sendonly:x").direction(), None);
        assert_eq!(FieldError::Invalid("port").to_string(), "bad port");
        assert_eq!(Attribute::parse("fmtp:101 0-16").payload_type(), Some(101));
        assert_eq!(Attribute::parse("rtcp-fb:* nack").payload_type(), None);
        assert_eq!(Attribute::parse("ptime:20").payload_type(), None);
        assert_eq!(field(" a  b ", 1), Some("b"));
        assert_eq!(
            MediaLine::formats_of("audio x RTP/AVP 0 8").collect::<Vec<_>>(),
            ["0", "8"]
        );
    }

    #[test]
    fn parse_never_panics() {
        // Every prefix of real bodies, and bytes from a small generator.
        for body in [CISCO, CIRPACK, WEBRTC] {
            for cut in 0..=body.len() {
                let _ = exercise(&body.as_bytes()[..cut]);
            }
        }
        let alphabet = b"vomcaspt= :/\r\n0123456789IN IP4 IP6 .-rtcp candidate typ \xff\xc3";
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let len = (x % 96) as usize;
            let mut b = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b.push(alphabet[(x as usize) % alphabet.len()]);
            }
            let _ = exercise(&b);
        }
    }

    /// Reads everything readable and rewrites everything rewritable.
    fn exercise(b: &[u8]) -> Option<String> {
        let sdp = parse(b).ok()?;
        let mut w = sdp.writer(Newline::Keep);
        for (i, l) in sdp.lines().iter().enumerate() {
            match (l.kind(), l.value()) {
                (Some(b'c'), Some(v)) => {
                    let _ = Connection::parse(v);
                    w.set_connection(i, ip("::1"));
                }
                (Some(b'o'), Some(v)) => {
                    let _ = Origin::parse(v);
                    w.set_origin(i, 1, Some(ip("1.2.3.4")));
                }
                (Some(b'm'), Some(v)) => {
                    let _ = MediaLine::parse(v).map(|m| m.payload_types().count());
                    w.set_media(i, 1, Some("RTP/AVP"));
                }
                _ => {}
            }
            if let Some(a) = l.attribute() {
                let v = a.value.unwrap_or("");
                let _ = (Rtcp::parse(v), RtpMap::parse(v), Candidate::parse(v));
            }
        }
        for s in sdp.media_sections() {
            let _ = s.media_line();
            w.remove_attributes(&s, |a| a.is_ice());
            w.add_attribute(&s, "rtcp-mux", None);
        }
        Some(w.finish())
    }
}
