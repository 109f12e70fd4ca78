//! Sans-IO SRTP and SRTCP (RFC 3711) with the AES-CM/HMAC-SHA1 suites
//! (RFC 3711, RFC 6188 for AES-256) and the AES-GCM AEAD suites (RFC 7714).
//!
//! A [`Context`] is one direction of one leg under one master key: the
//! worker keeps an inbound one to [`Context::unprotect_rtp`] what the peer
//! sends and an outbound one to [`Context::protect_rtp`] what it forwards.
//! Everything works in place on the caller's buffer; nothing on the
//! per-packet path allocates. Per-SSRC state (ROC, highest sequence number,
//! replay windows, SRTCP index) lives in a fixed table of
//! [`MAX_STREAMS`] entries inside the context.
//!
//! Not supported: MKI (its length is always 0), key derivation rates other
//! than 0, AES-f8, NULL cipher/auth, and RFC 6904 header extension
//! encryption.

mod cm;
mod gcm;
mod kdf;
mod replay;
mod suite;
#[cfg(test)]
mod tests;

use std::fmt;

use cm::Cm;
use gcm::Gcm;
use replay::{estimate, Window};

pub use suite::{SrtpError, Suite};

/// Streams (SSRCs) one [`Context`] tracks; a new one beyond this replaces
/// the least recently used.
pub const MAX_STREAMS: usize = 8;

/// The persistent part of one SSRC's state, to save in the slot table and
/// give back to [`Context::restore`] after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamState {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// Rollover counter: how many times the 16-bit sequence number has
    /// wrapped (RFC 3711 §3.3.1), 32 bits.
    pub roc: u32,
    /// Highest sequence number sent or authenticated, `s_l`.
    pub seq: u16,
    /// SRTCP index, 31 bits: the next one to send (protect) or the highest
    /// received (unprotect).
    pub srtcp_index: u32,
}

/// The SRTP or SRTCP transform of one context.
#[derive(Clone)]
enum Transform {
    Cm(Cm),
    Gcm(Gcm),
}

impl Transform {
    fn new(suite: Suite, keys: &kdf::SessionKeys, tag_len: usize) -> Result<Transform, SrtpError> {
        Ok(if suite.is_aead() {
            Transform::Gcm(Gcm::new(keys, suite.key_len())?)
        } else {
            Transform::Cm(Cm::new(keys, suite.key_len(), tag_len)?)
        })
    }
}

/// One SSRC's entry in the context's stream table.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    used: bool,
    ssrc: u32,
    /// Context clock at the last use, for least-recently-used eviction.
    last_use: u64,
    /// Whether `rtp` holds anything (first packet sent or authenticated).
    rtp_seen: bool,
    /// `top` is `ROC << 16 | s_l`.
    rtp: Window,
    /// Whether `rtcp` holds anything; protect ignores it.
    rtcp_seen: bool,
    /// `top` is the highest SRTCP index received (unprotect) or the next
    /// to send (protect).
    rtcp: Window,
}

/// One direction of one leg under one master key: the SRTP and SRTCP
/// crypto contexts (RFC 3711 §3.2) and per-SSRC state of up to
/// [`MAX_STREAMS`] streams.
///
/// Session keys are derived once in [`Context::new`] (key derivation rate
/// 0); the AES key schedules and HMAC states are built there too.
#[derive(Clone)]
pub struct Context {
    suite: Suite,
    srtp: Transform,
    srtcp: Transform,
    slots: [Slot; MAX_STREAMS],
    clock: u64,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys.
        f.debug_struct("Context")
            .field("suite", &self.suite)
            .field("streams", &self.slots.iter().filter(|s| s.used).count())
            .finish()
    }
}

/// RTP fixed header length (RFC 3550 §5.1).
const RTP_HEADER: usize = 12;
/// RTCP header octets left in the clear: V/P/RC, PT, length, sender SSRC
/// (RFC 3711 §3.4).
const RTCP_HEADER: usize = 8;
/// The SRTCP E flag and 31-bit index (RFC 3711 §3.4).
const RTCP_TRAILER: usize = 4;
const E_FLAG: u32 = 0x8000_0000;
const INDEX_MASK: u32 = 0x7fff_ffff;

/// The parsed parts of an RTP header that SRTP needs.
struct RtpHeader {
    /// Octets up to the payload: 12 + 4·CC, plus 4 + 4·length with X set.
    len: usize,
    seq: u16,
    ssrc: u32,
}

/// Parses the RTP header at the start of `pkt` (which must exclude any
/// SRTP tag). [`SrtpError::Truncated`] under 12 octets,
/// [`SrtpError::Malformed`] if not version 2 or the CSRC list or header
/// extension overruns `pkt`.
fn rtp_header(pkt: &[u8]) -> Result<RtpHeader, SrtpError> {
    if pkt.len() < RTP_HEADER {
        return Err(SrtpError::Truncated);
    }
    if pkt[0] >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    let mut len = RTP_HEADER + 4 * (pkt[0] & 0x0f) as usize;
    if pkt[0] & 0x10 != 0 {
        // Extension header: 16-bit profile data, 16-bit length in words.
        let ext = pkt.get(len..len + 4).ok_or(SrtpError::Malformed)?;
        len += 4 + 4 * u16::from_be_bytes([ext[2], ext[3]]) as usize;
    }
    if len > pkt.len() {
        return Err(SrtpError::Malformed);
    }
    Ok(RtpHeader {
        len,
        seq: u16::from_be_bytes([pkt[2], pkt[3]]),
        ssrc: u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]),
    })
}

fn be32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_be_bytes(w)
}

impl Context {
    /// A context for `suite` under `master_key` (`suite.key_len()` octets)
    /// and `master_salt` (`suite.salt_len()` octets), deriving the SRTP and
    /// SRTCP session keys (RFC 3711 §4.3, RFC 7714 §12).
    ///
    /// Errors with [`SrtpError::BadKey`] on a wrong length.
    pub fn new(suite: Suite, master_key: &[u8], master_salt: &[u8]) -> Result<Context, SrtpError> {
        let rtp_keys = kdf::derive(suite, master_key, master_salt, kdf::LABEL_SRTP)?;
        let rtcp_keys = kdf::derive(suite, master_key, master_salt, kdf::LABEL_SRTCP)?;
        Context::from_session_keys(suite, &rtp_keys, &rtcp_keys)
    }

    fn from_session_keys(
        suite: Suite,
        rtp: &kdf::SessionKeys,
        rtcp: &kdf::SessionKeys,
    ) -> Result<Context, SrtpError> {
        Ok(Context {
            suite,
            srtp: Transform::new(suite, rtp, suite.rtp_tag_len())?,
            srtcp: Transform::new(suite, rtcp, suite.rtcp_tag_len())?,
            slots: [Slot::default(); MAX_STREAMS],
            clock: 0,
        })
    }

    /// The suite this context was made for.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    fn find(&self, ssrc: u32) -> Option<usize> {
        self.slots.iter().position(|s| s.used && s.ssrc == ssrc)
    }

    /// The slot of `ssrc`, taking a free one or the least recently used
    /// for a new SSRC; marks it used now.
    fn slot(&mut self, ssrc: u32) -> usize {
        self.clock += 1;
        let i = match self.find(ssrc) {
            Some(i) => i,
            None => {
                let mut victim = 0;
                for (i, s) in self.slots.iter().enumerate() {
                    if !s.used {
                        victim = i;
                        break;
                    }
                    if s.last_use < self.slots[victim].last_use {
                        victim = i;
                    }
                }
                self.slots[victim] = Slot {
                    used: true,
                    ssrc,
                    ..Slot::default()
                };
                victim
            }
        };
        self.slots[i].last_use = self.clock;
        i
    }

    /// Unprotects an SRTP packet in place (RFC 3711 §3.3, RFC 7714 §7).
    ///
    /// `pkt` is the whole packet: RTP header (with CSRCs and extension, in
    /// the clear), encrypted payload, then the tag
    /// ([`Suite::rtp_tag_len`] octets; no MKI). On success the payload is
    /// decrypted in place and the plain RTP length (`pkt.len()` less the
    /// tag) is returned.
    ///
    /// Order, per §3.3: estimate the index (a new SSRC starts at ROC 0 with
    /// this packet), check the replay window, authenticate, decrypt; only
    /// then are the ROC, `s_l` and window updated, and only then does a
    /// new SSRC take a stream slot (so forged packets evict nothing).
    ///
    /// Errors: [`SrtpError::Truncated`], [`SrtpError::Malformed`],
    /// [`SrtpError::Replayed`], [`SrtpError::TooOld`],
    /// [`SrtpError::AuthFailed`]. Nothing is decrypted before the tag
    /// checks out, so on any error `pkt` is as it was.
    pub fn unprotect_rtp(&mut self, pkt: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.suite.rtp_tag_len();
        if pkt.len() < RTP_HEADER + tag_len {
            return Err(SrtpError::Truncated);
        }
        let body_end = pkt.len() - tag_len;
        let h = rtp_header(&pkt[..body_end])?;
        let known = self.find(h.ssrc).filter(|&i| self.slots[i].rtp_seen);
        let index = match known {
            Some(i) => {
                let w = &self.slots[i].rtp;
                let index = estimate(w.top, h.seq).ok_or(SrtpError::TooOld)?;
                w.check(index)?;
                index
            }
            None => h.seq as u64,
        };
        let roc = (index >> 16) as u32;
        match &self.srtp {
            Transform::Cm(cm) => {
                let (data, tag) = pkt.split_at_mut(body_end);
                if !cm.verify(data, &roc.to_be_bytes(), tag) {
                    return Err(SrtpError::AuthFailed);
                }
                cm.apply_keystream(h.ssrc, index, &mut data[h.len..]);
            }
            Transform::Gcm(g) => {
                let iv = g.rtp_iv(h.ssrc, roc, h.seq);
                let (data, tag) = pkt.split_at_mut(body_end);
                let (aad, payload) = data.split_at_mut(h.len);
                g.open(&iv, aad, payload, tag)?;
            }
        }
        let i = self.slot(h.ssrc);
        let s = &mut self.slots[i];
        if s.rtp_seen {
            s.rtp.update(index);
        } else {
            s.rtp = Window::starting_at(index);
            s.rtp_seen = true;
        }
        Ok(body_end)
    }

    /// Protects an RTP packet in place (RFC 3711 §3.3, RFC 7714 §7).
    ///
    /// `buf[..len]` is the plain RTP packet; the payload is encrypted in
    /// place and the tag ([`Suite::rtp_tag_len`] octets) appended, and the
    /// SRTP length `len + tag` returned. A new SSRC starts at ROC 0; the
    /// ROC steps when the sequence number wraps from 65535 to 0 (and an
    /// older, reordered sequence number is sent under the ROC it belongs
    /// to, Appendix A).
    ///
    /// Errors: [`SrtpError::Truncated`] (also `len > buf.len()`),
    /// [`SrtpError::Malformed`], [`SrtpError::NoRoom`] if `buf` is shorter
    /// than `len + tag`, [`SrtpError::TooOld`] for a sequence number that
    /// would need ROC -1.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        if len > buf.len() {
            return Err(SrtpError::Truncated);
        }
        let h = rtp_header(&buf[..len])?;
        let tag_len = self.suite.rtp_tag_len();
        if buf.len() - len < tag_len {
            return Err(SrtpError::NoRoom);
        }
        let i = self.slot(h.ssrc);
        let s = &mut self.slots[i];
        let index = if s.rtp_seen {
            let index = estimate(s.rtp.top, h.seq).ok_or(SrtpError::TooOld)?;
            if index > s.rtp.top {
                s.rtp.top = index;
            }
            index
        } else {
            s.rtp = Window::starting_at(h.seq as u64);
            s.rtp_seen = true;
            h.seq as u64
        };
        let roc = (index >> 16) as u32;
        let (data, rest) = buf.split_at_mut(len);
        let tag = &mut rest[..tag_len];
        match &self.srtp {
            Transform::Cm(cm) => {
                cm.apply_keystream(h.ssrc, index, &mut data[h.len..]);
                cm.sign(data, &roc.to_be_bytes(), tag);
            }
            Transform::Gcm(g) => {
                let iv = g.rtp_iv(h.ssrc, roc, h.seq);
                let (aad, payload) = data.split_at_mut(h.len);
                tag.copy_from_slice(&g.seal(&iv, aad, payload)?);
            }
        }
        Ok(len + tag_len)
    }

    /// Unprotects an SRTCP packet in place (RFC 3711 §3.4, RFC 7714 §9).
    ///
    /// AES-CM layout: RTCP header (8 octets, clear) | encrypted rest of the
    /// compound packet | E (1 bit) + SRTCP index (31 bits) | tag (10
    /// octets), the tag over everything before it. AES-GCM layout: header
    /// (8) | ciphertext | tag (16) | E + index, the AAD being the header
    /// and E + index (with E = 0, the whole packet and E + index, nothing
    /// encrypted, §9.2). Returns the plain RTCP length; the replay window
    /// is over the SRTCP index, per sender SSRC.
    ///
    /// Errors: [`SrtpError::Truncated`], [`SrtpError::Malformed`] (not
    /// version 2), [`SrtpError::AuthFailed`], [`SrtpError::Replayed`],
    /// [`SrtpError::TooOld`]. Nothing is decrypted before the tag checks
    /// out (an unencrypted GCM packet's tag octets may be overwritten).
    pub fn unprotect_rtcp(&mut self, pkt: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.suite.rtcp_tag_len();
        if pkt.len() < RTCP_HEADER + RTCP_TRAILER + tag_len {
            return Err(SrtpError::Truncated);
        }
        if pkt[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        let plain_len = pkt.len() - RTCP_TRAILER - tag_len;
        let ssrc = be32(&pkt[4..8]);
        let trailer_at = match self.srtcp {
            Transform::Cm(_) => plain_len,
            Transform::Gcm(_) => pkt.len() - RTCP_TRAILER,
        };
        let word = be32(&pkt[trailer_at..]);
        let encrypted = word & E_FLAG != 0;
        let index = word & INDEX_MASK;
        let known = self.find(ssrc).filter(|&i| self.slots[i].rtcp_seen);
        if let Some(i) = known {
            self.slots[i].rtcp.check(index as u64)?;
        }
        match &self.srtcp {
            Transform::Cm(cm) => {
                let (data, tag) = pkt.split_at_mut(plain_len + RTCP_TRAILER);
                if !cm.verify(data, &[], tag) {
                    return Err(SrtpError::AuthFailed);
                }
                if encrypted {
                    cm.apply_keystream(ssrc, index as u64, &mut data[RTCP_HEADER..plain_len]);
                }
            }
            Transform::Gcm(g) => {
                let iv = g.rtcp_iv(ssrc, index);
                let trailer = word.to_be_bytes();
                if encrypted {
                    let mut aad = [0u8; RTCP_HEADER + RTCP_TRAILER];
                    aad[..RTCP_HEADER].copy_from_slice(&pkt[..RTCP_HEADER]);
                    aad[RTCP_HEADER..].copy_from_slice(&trailer);
                    let (data, rest) = pkt.split_at_mut(plain_len);
                    g.open(&iv, &aad, &mut data[RTCP_HEADER..], &rest[..tag_len])?;
                } else {
                    // AAD is the packet then E + index, which the tag sits
                    // between: move E + index over the tag's first octets.
                    let mut tag = [0u8; gcm::TAG_LEN];
                    tag.copy_from_slice(&pkt[plain_len..plain_len + tag_len]);
                    pkt[plain_len..plain_len + RTCP_TRAILER].copy_from_slice(&trailer);
                    g.open(&iv, &pkt[..plain_len + RTCP_TRAILER], &mut [], &tag)?;
                }
            }
        }
        let i = self.slot(ssrc);
        let s = &mut self.slots[i];
        if s.rtcp_seen {
            s.rtcp.update(index as u64);
        } else {
            s.rtcp = Window::starting_at(index as u64);
            s.rtcp_seen = true;
        }
        Ok(plain_len)
    }

    /// Protects an RTCP (compound) packet in place (RFC 3711 §3.4, RFC
    /// 7714 §9), always encrypted (E = 1).
    ///
    /// `buf[..len]` is the plain RTCP; the SRTCP trailer and tag are
    /// appended (layouts as in [`Context::unprotect_rtcp`]) and the new
    /// length `len + 4 + tag` returned. The SRTCP index starts at 0 for a
    /// new SSRC and increments per packet, modulo 2^31.
    ///
    /// Errors: [`SrtpError::Truncated`] (under 8 octets, or
    /// `len > buf.len()`), [`SrtpError::Malformed`] (not version 2),
    /// [`SrtpError::NoRoom`].
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        if len > buf.len() || len < RTCP_HEADER {
            return Err(SrtpError::Truncated);
        }
        if buf[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        let tag_len = self.suite.rtcp_tag_len();
        if buf.len() - len < RTCP_TRAILER + tag_len {
            return Err(SrtpError::NoRoom);
        }
        let ssrc = be32(&buf[4..8]);
        let i = self.slot(ssrc);
        let s = &mut self.slots[i];
        let index = (s.rtcp.top as u32) & INDEX_MASK;
        s.rtcp.top = ((index + 1) & INDEX_MASK) as u64;
        let trailer = (E_FLAG | index).to_be_bytes();
        match &self.srtcp {
            Transform::Cm(cm) => {
                cm.apply_keystream(ssrc, index as u64, &mut buf[RTCP_HEADER..len]);
                buf[len..len + RTCP_TRAILER].copy_from_slice(&trailer);
                let (data, rest) = buf.split_at_mut(len + RTCP_TRAILER);
                cm.sign(data, &[], &mut rest[..tag_len]);
            }
            Transform::Gcm(g) => {
                let iv = g.rtcp_iv(ssrc, index);
                let mut aad = [0u8; RTCP_HEADER + RTCP_TRAILER];
                aad[..RTCP_HEADER].copy_from_slice(&buf[..RTCP_HEADER]);
                aad[RTCP_HEADER..].copy_from_slice(&trailer);
                let tag = g.seal(&iv, &aad, &mut buf[RTCP_HEADER..len])?;
                buf[len..len + tag_len].copy_from_slice(&tag);
                buf[len + tag_len..len + tag_len + RTCP_TRAILER].copy_from_slice(&trailer);
            }
        }
        Ok(len + RTCP_TRAILER + tag_len)
    }

    /// The state of every tracked SSRC, for persisting.
    pub fn streams(&self) -> impl Iterator<Item = StreamState> + '_ {
        self.slots.iter().filter(|s| s.used).map(|s| StreamState {
            ssrc: s.ssrc,
            roc: (s.rtp.top >> 16) as u32,
            seq: s.rtp.top as u16,
            srtcp_index: (s.rtcp.top as u32) & INDEX_MASK,
        })
    }

    /// Puts back a stream saved by [`Context::streams`] (replacing this
    /// SSRC's state, or the least recently used stream's).
    ///
    /// On unprotect, every packet at or below the restored `roc`/`seq`
    /// (and SRTCP index) counts as already received, since which of them
    /// were is not saved; the next packets ahead of it are accepted, with
    /// the ROC carried on from `roc`.
    pub fn restore(&mut self, s: StreamState) {
        let i = self.slot(s.ssrc);
        let slot = &mut self.slots[i];
        slot.rtp = Window::restored(((s.roc as u64) << 16) | s.seq as u64);
        slot.rtp_seen = true;
        slot.rtcp = Window::restored((s.srtcp_index & INDEX_MASK) as u64);
        slot.rtcp_seen = true;
    }
}
