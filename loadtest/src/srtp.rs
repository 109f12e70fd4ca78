//! `--srtp`: SDES keys and the path check. The ng `SDES` flags that
//! leave one suite on offer, the relay's offered `a=crypto` key, SRTP
//! contexts from a key||salt, and [`Check`], which verifies that call 0's
//! first packets of each trial arrive as sent (A→B: authenticated under
//! the relay's key).

use tern_secure::srtp::{Context, Suite};
use tern_shared::sdp::Crypto;

use crate::ng::{self, Ben};
use crate::Error;

/// Packets of one stream checked per trial.
pub(crate) const CHECK_SAMPLES: usize = 10;

/// The path check of one stream of call 0: the first [`CHECK_SAMPLES`]
/// packets of each trial must arrive with the payload sent; A→B under
/// `--srtp` they must first authenticate and decrypt under the key the
/// relay offered the callee.
pub(crate) struct Check {
    dir: &'static str,
    /// The relay's offered key (and the tag of its `a=crypto` line).
    rx_srtp: Option<(Context, u32)>,
    /// (trial, sequence number, plain packet) sent, not yet received.
    pending: Vec<(u8, u16, Vec<u8>)>,
    taken: usize,
    pub(crate) verified: u32,
    failures: Vec<String>,
}

impl Check {
    pub(crate) fn new(dir: &'static str, rx_srtp: Option<(Context, u32)>) -> Box<Check> {
        Box::new(Check {
            dir,
            rx_srtp,
            pending: Vec::new(),
            taken: 0,
            verified: 0,
            failures: Vec::new(),
        })
    }

    pub(crate) fn reset(&mut self) {
        self.pending.clear();
        self.taken = 0;
        self.verified = 0;
        self.failures.clear();
    }

    /// Samples `plain` (sent in trial `id`) while fewer than
    /// [`CHECK_SAMPLES`] were taken in this trial.
    pub(crate) fn sample(&mut self, id: u8, plain: &[u8]) {
        if self.taken < CHECK_SAMPLES && plain.len() >= 12 {
            self.taken += 1;
            self.pending
                .push((id, u16::from_be_bytes([plain[2], plain[3]]), plain.to_vec()));
        }
    }

    /// Checks a received packet `p` against the samples of trial `id`.
    pub(crate) fn on_packet(&mut self, id: u8, p: &[u8]) {
        if p.len() < 12 {
            return;
        }
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let Some(at) = self
            .pending
            .iter()
            .position(|(t, s, _)| *t == id && *s == seq)
        else {
            return;
        };
        let (_, _, want) = self.pending.swap_remove(at);
        let mut got = p.to_vec();
        let plain_len = match &mut self.rx_srtp {
            Some((ctx, tag)) => match ctx.unprotect_rtp(&mut got) {
                Ok(n) => n,
                Err(e) => {
                    self.failures.push(format!(
                        "{} seq {seq}: does not authenticate under the key the relay offered (a=crypto:{tag}): {e}",
                        self.dir
                    ));
                    return;
                }
            },
            None => got.len(),
        };
        let got = &got[..plain_len];
        if got.len() != want.len() || got[12..] != want[12..] {
            self.failures.push(format!(
                "{} seq {seq}: {} bytes arrived, {} sent{}: not the payload sent",
                self.dir,
                got.len(),
                want.len(),
                if self.rx_srtp.is_none() && got.len() > want.len() {
                    " (still SRTP-protected?)"
                } else {
                    ""
                }
            ));
            return;
        }
        self.verified += 1;
    }

    /// What went wrong in this trial; `None` when all is well.
    pub(crate) fn verdict(&self) -> Option<String> {
        if !self.failures.is_empty() {
            return Some(self.failures.join("; "));
        }
        if self.taken > 0 && self.verified == 0 {
            return Some(format!(
                "{}: none of the {} sampled packets of call 0 arrived as sent",
                self.dir, self.taken
            ));
        }
        None
    }
}

/// A context for `suite` from a key||salt.
pub(crate) fn srtp_context(suite: Suite, key_salt: &[u8]) -> Result<Context, Error> {
    if key_salt.len() != suite.master_len() {
        return Err(format!(
            "{suite}: a {}-byte key||salt, not {}",
            key_salt.len(),
            suite.master_len()
        )
        .into());
    }
    let (key, salt) = key_salt.split_at(suite.key_len());
    Ok(Context::new(suite, key, salt).map_err(|e| format!("{suite}: {e}"))?)
}

/// Every SDES suite tern or rtpengine 10.5 offers.
const SDES_SUITES: [&str; 12] = [
    "AEAD_AES_256_GCM",
    "AEAD_AES_128_GCM",
    "AES_256_CM_HMAC_SHA1_80",
    "AES_256_CM_HMAC_SHA1_32",
    "AES_192_CM_HMAC_SHA1_80",
    "AES_192_CM_HMAC_SHA1_32",
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "F8_128_HMAC_SHA1_80",
    "F8_128_HMAC_SHA1_32",
    "NULL_HMAC_SHA1_80",
    "NULL_HMAC_SHA1_32",
];

/// The ng `SDES` list that leaves `suite` alone on offer: `only-<suite>`
/// (tern), and `no-<suite>` for every other (rtpengine 10.5 has no
/// `only-` and ignores it with a warning; tern honours both).
pub(crate) fn sdes_flags(suite: Suite) -> Ben {
    let mut l = vec![Ben::s(format!("only-{}", suite.name()))];
    l.extend(
        SDES_SUITES
            .iter()
            .filter(|&&n| n != suite.name())
            .map(|n| Ben::s(format!("no-{n}"))),
    );
    Ben::List(l)
}

/// The relay's SRTP offer toward the callee: the tag and key||salt of its
/// `a=crypto` line for `suite`.
pub(crate) fn offered_crypto(i: usize, sdp: &str, suite: Suite) -> Result<(u32, Vec<u8>), Error> {
    if ng::media_proto(sdp) != Some("RTP/SAVP") {
        return Err(format!(
            "offer {i}: the relay offered {:?} toward the callee, not RTP/SAVP: {sdp:?}",
            ng::media_proto(sdp)
        )
        .into());
    }
    for v in ng::crypto_values(sdp) {
        let c = Crypto::parse(v).map_err(|e| format!("offer {i}: a=crypto:{v}: {e:?}"))?;
        if c.suite == suite.name() {
            return Ok((c.tag, c.key_salt().to_vec()));
        }
    }
    Err(format!("offer {i}: the relay offered no a=crypto line of {suite}: {sdp:?}").into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp_run::MAGIC;

    fn plain_packet(seq: u16) -> Vec<u8> {
        let mut p = vec![0u8; 12 + 160];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&0x1234u32.to_be_bytes());
        p[12..15].copy_from_slice(MAGIC);
        p[40] = seq as u8;
        p
    }

    #[test]
    fn the_path_check_authenticates_and_compares_payloads() {
        let s = Suite::AesCm128HmacSha1_80;
        let relay_key = [7u8; 30];
        let other_key = [8u8; 30];
        let mut relay = srtp_context(s, &relay_key).unwrap();
        let mut impostor = srtp_context(s, &other_key).unwrap();
        let mut ch = Check::new("A→B", Some((srtp_context(s, &relay_key).unwrap(), 1)));
        for seq in 0..12u16 {
            ch.sample(1, &plain_packet(seq));
        }
        assert_eq!(ch.taken, CHECK_SAMPLES, "ten samples per trial");
        let protect = |ctx: &mut Context, seq: u16| {
            let mut b = plain_packet(seq);
            let n = b.len();
            b.resize(n + 10, 0);
            let n = ctx.protect_rtp(&mut b, n).unwrap();
            b.truncate(n);
            b
        };
        ch.on_packet(1, &protect(&mut relay, 0));
        assert_eq!((ch.verified, ch.verdict()), (1, None));
        ch.on_packet(1, &protect(&mut impostor, 1));
        assert!(ch.verdict().unwrap().contains("does not authenticate"));
        // Plain where SRTP is due does not authenticate either.
        ch.on_packet(1, &plain_packet(2));
        assert_eq!(ch.failures.len(), 2);
        // Unsampled packets and other trials are not looked at.
        ch.on_packet(1, &plain_packet(11));
        ch.on_packet(2, &plain_packet(3));
        assert_eq!(ch.failures.len(), 2);

        let mut back = Check::new("B→A", None);
        back.sample(1, &plain_packet(5));
        back.sample(1, &plain_packet(6));
        back.sample(1, &plain_packet(7));
        back.on_packet(1, &plain_packet(5));
        assert_eq!((back.verified, back.verdict()), (1, None));
        let mut wrong = plain_packet(6);
        wrong[40] ^= 1;
        back.on_packet(1, &wrong);
        assert!(back.verdict().unwrap().contains("not the payload sent"));
        // Still protected (10 bytes longer) is flagged as such.
        let mut p = plain_packet(7);
        p.extend([0u8; 10]);
        back.on_packet(1, &p);
        assert!(back.failures[1].contains("still SRTP-protected"));

        let mut none = Check::new("B→A", None);
        none.sample(1, &plain_packet(1));
        assert!(none.verdict().unwrap().contains("none of the 1 sampled"));
        none.reset();
        assert_eq!(none.verdict(), None);
    }
}
