//! What a leg needs to terminate secure media, as the slot table carries
//! it: SDES keying (RFC 4568) for each direction, ICE-lite credentials
//! (RFC 8445 §2.5), DTLS-SRTP parameters (RFC 5763), the keys a DTLS
//! handshake exported (written by the worker), and the SRTP stream state
//! (rollover counter, RFC 3711 §3.3.1) a restarted worker resumes from.
//!
//! All of it lives in the slot, so a `tern relay` killed mid-call comes
//! back decrypting and encrypting the same streams. Key material is never
//! printed: every type here has a hand-written `Debug` that shows lengths.

use std::fmt;

/// Bytes of the largest SRTP master key plus salt: AES-256 key (32) and
/// the 112-bit salt (14) of RFC 6188.
pub const MASTER_MAX: usize = 46;

/// The SRTP suites a leg may use, by the number a slot stores: (number,
/// RFC 4568 §6.2 / RFC 6188 / RFC 7714 §14.2 name, master key bytes,
/// master salt bytes), in the order tern offers them (rtpengine's).
pub const SRTP_SUITES: [(u8, &str, usize, usize); 5] = [
    (5, "AEAD_AES_256_GCM", 32, 12),
    (4, "AEAD_AES_128_GCM", 16, 12),
    (3, "AES_256_CM_HMAC_SHA1_80", 32, 14),
    (1, "AES_CM_128_HMAC_SHA1_80", 16, 14),
    (2, "AES_CM_128_HMAC_SHA1_32", 16, 14),
];

/// The suite number of an SDES suite name; `None` for one tern lacks.
pub fn srtp_suite_by_name(name: &str) -> Option<u8> {
    SRTP_SUITES.iter().find(|s| s.1 == name).map(|s| s.0)
}

/// The name and master key and salt lengths of suite number `n`.
pub fn srtp_suite(n: u8) -> Option<(&'static str, usize, usize)> {
    SRTP_SUITES
        .iter()
        .find(|s| s.0 == n)
        .map(|s| (s.1, s.2, s.3))
}

/// One direction's SRTP master key and salt (RFC 3711 §8.2), concatenated
/// as in `a=crypto`'s `inline:` (RFC 4568 §6.1) and the DTLS exporter's
/// halves (RFC 5764 §4.2).
///
/// `suite` is `tern_secure::srtp::Suite`'s number: 1 AES_CM_128_HMAC_SHA1_80,
/// 2 AES_CM_128_HMAC_SHA1_32, 3 AES_256_CM_HMAC_SHA1_80, 4 AEAD_AES_128_GCM,
/// 5 AEAD_AES_256_GCM. 0 is never stored (the direction is plain).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SrtpKeying {
    pub suite: u8,
    len: u8,
    material: [u8; MASTER_MAX],
}

impl SrtpKeying {
    /// Keying of `suite` from `key || salt`; `None` when it is longer
    /// than [`MASTER_MAX`] or `suite` is 0.
    pub fn new(suite: u8, key_salt: &[u8]) -> Option<SrtpKeying> {
        if suite == 0 || key_salt.len() > MASTER_MAX {
            return None;
        }
        let mut material = [0u8; MASTER_MAX];
        material[..key_salt.len()].copy_from_slice(key_salt);
        Some(SrtpKeying {
            suite,
            len: key_salt.len() as u8,
            material,
        })
    }

    /// The master key followed by the master salt.
    pub fn key_salt(&self) -> &[u8] {
        &self.material[..usize::from(self.len)]
    }

    /// Seven words: `suite | len << 8 | 1 << 63`, then the material in
    /// little-endian words. `[0; 7]` is none.
    pub(super) fn encode(k: Option<&SrtpKeying>) -> [u64; 7] {
        let mut w = [0u64; 7];
        if let Some(k) = k {
            w[0] = u64::from(k.suite) | u64::from(k.len) << 8 | 1 << 63;
            put_bytes(&mut w[1..], &k.material);
        }
        w
    }

    pub(super) fn decode(w: &[u64]) -> Option<SrtpKeying> {
        if w[0] >> 63 == 0 {
            return None;
        }
        let mut material = [0u8; MASTER_MAX];
        get_bytes(&w[1..7], &mut material);
        let len = ((w[0] >> 8) as u8).min(MASTER_MAX as u8);
        Some(SrtpKeying {
            suite: w[0] as u8,
            len,
            material,
        })
    }
}

impl fmt::Debug for SrtpKeying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SrtpKeying(suite {}, {} bytes)", self.suite, self.len)
    }
}

/// A short ICE token (ufrag or password, RFC 8839 §5.4), at most
/// [`IceToken::MAX`] bytes; tern makes 8-char ufrags and 24-char passwords.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct IceToken {
    len: u8,
    bytes: [u8; IceToken::MAX],
}

impl IceToken {
    /// Bytes a token may have in the table.
    pub const MAX: usize = 32;

    /// `None` when `s` is empty or longer than [`IceToken::MAX`].
    pub fn new(s: &str) -> Option<IceToken> {
        if s.is_empty() || s.len() > Self::MAX {
            return None;
        }
        let mut bytes = [0u8; Self::MAX];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(IceToken {
            len: s.len() as u8,
            bytes,
        })
    }

    /// The token; empty if the stored bytes are not UTF-8 (a corrupt
    /// table), so a check against it fails.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len).min(Self::MAX)]).unwrap_or("")
    }
}

impl fmt::Debug for IceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IceToken({} bytes)", self.len)
    }
}

/// ICE-lite on a leg: the relay answers connectivity checks signed with
/// its own password and latches to the nominated pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IceParams {
    pub local_ufrag: IceToken,
    pub local_pwd: IceToken,
    /// The peer's ufrag (`a=ice-ufrag` of its SDP); `None` when unknown or
    /// too long to store, in which case only the local half of USERNAME is
    /// checked.
    pub remote_ufrag: Option<IceToken>,
}

impl IceParams {
    /// New ICE-lite credentials, the peer's ufrag not yet known: an
    /// 8-char ufrag and a 24-char password of ice-chars (48 and 144
    /// random bits; RFC 8839 §5.4 asks at least 24 and 128). `rng` must
    /// be a CSPRNG: the password is what authenticates checks.
    pub fn fresh<R: rand::Rng + ?Sized>(rng: &mut R) -> IceParams {
        const CH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut token = |len: usize| {
            let s: String = (0..len)
                .map(|_| char::from(CH[rng.gen_range(0..CH.len())]))
                .collect();
            IceToken::new(&s).unwrap_or_default()
        };
        IceParams {
            local_ufrag: token(8),
            local_pwd: token(24),
            remote_ufrag: None,
        }
    }
}

/// The relay's DTLS role on a leg (RFC 8842 §5 / RFC 4145 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DtlsRole {
    /// `a=setup:active`: the relay is the DTLS client.
    Active = 1,
    /// `a=setup:passive`: the relay is the DTLS server.
    Passive = 2,
}

/// DTLS-SRTP on a leg (RFC 5763 §5): the role and the fingerprint the
/// peer's certificate must have. The keys come from the handshake.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DtlsParams {
    pub role: DtlsRole,
    /// RFC 8122 hash: 1 sha-1, 2 sha-224, 3 sha-256, 4 sha-384, 5 sha-512.
    pub hash: u8,
    len: u8,
    digest: [u8; 64],
}

impl DtlsParams {
    /// `None` when `digest` is longer than 64 bytes.
    pub fn new(role: DtlsRole, hash: u8, digest: &[u8]) -> Option<DtlsParams> {
        if digest.len() > 64 {
            return None;
        }
        let mut d = [0u8; 64];
        d[..digest.len()].copy_from_slice(digest);
        Some(DtlsParams {
            role,
            hash,
            len: digest.len() as u8,
            digest: d,
        })
    }

    /// The peer's certificate digest.
    pub fn digest(&self) -> &[u8] {
        &self.digest[..usize::from(self.len).min(64)]
    }
}

impl fmt::Debug for DtlsParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DtlsParams({:?}, hash {}, {} bytes)",
            self.role, self.hash, self.len
        )
    }
}

/// How a leg's media is protected. All `None`: plain RTP (RFC 3550).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegSecurity {
    /// SDES keying of what this leg's peer sends: the relay unprotects.
    pub rx: Option<SrtpKeying>,
    /// SDES keying of what the relay sends to this leg's peer.
    pub tx: Option<SrtpKeying>,
    pub ice: Option<IceParams>,
    /// DTLS-SRTP: when set, `rx`/`tx` are ignored and the handshake's
    /// keys ([`SlotTable::dtls_keying`]) are used.
    pub dtls: Option<DtlsParams>,
}

impl LegSecurity {
    /// Whether anything here needs the worker (else the leg is plain).
    pub fn is_plain(&self) -> bool {
        *self == LegSecurity::default()
    }
}

/// Words per leg of the programmed security block.
pub(super) const SEC_WORDS: usize = 40;
/// Words per leg of the worker-written DTLS keying block: a seqlock, then
/// two [`SrtpKeying`]s of seven words.
pub(super) const DTLS_KEY_WORDS: usize = 16;

/// `[0..7]` rx keying, `[7..14]` tx keying, `[14]` ICE meta
/// (`local ufrag len | local pwd len << 8 | remote ufrag len << 16 |
/// remote valid << 24 | ice << 25`), `[15..19]` local ufrag, `[19..23]`
/// local pwd, `[23..27]` remote ufrag, `[27]` DTLS meta (`role | hash << 8
/// | len << 16`, role 0 = none), `[28..36]` the digest; `[36..40]` are
/// the leg's play request (`super::play`), left zero here.
pub(super) fn encode(s: &LegSecurity) -> [u64; SEC_WORDS] {
    let mut w = [0u64; SEC_WORDS];
    w[0..7].copy_from_slice(&SrtpKeying::encode(s.rx.as_ref()));
    w[7..14].copy_from_slice(&SrtpKeying::encode(s.tx.as_ref()));
    if let Some(ice) = &s.ice {
        let r = ice.remote_ufrag.unwrap_or_default();
        w[14] = u64::from(ice.local_ufrag.len)
            | u64::from(ice.local_pwd.len) << 8
            | u64::from(r.len) << 16
            | u64::from(ice.remote_ufrag.is_some()) << 24
            | 1 << 25;
        put_bytes(&mut w[15..19], &ice.local_ufrag.bytes);
        put_bytes(&mut w[19..23], &ice.local_pwd.bytes);
        put_bytes(&mut w[23..27], &r.bytes);
    }
    if let Some(d) = &s.dtls {
        w[27] = u64::from(d.role as u8) | u64::from(d.hash) << 8 | u64::from(d.len) << 16;
        put_bytes(&mut w[28..36], &d.digest);
    }
    w
}

pub(super) fn decode(w: &[u64; SEC_WORDS]) -> LegSecurity {
    let token = |len: u64, words: &[u64]| {
        let mut bytes = [0u8; IceToken::MAX];
        get_bytes(words, &mut bytes);
        IceToken {
            len: (len as u8).min(IceToken::MAX as u8),
            bytes,
        }
    };
    let ice = (w[14] >> 25 & 1 == 1).then(|| IceParams {
        local_ufrag: token(w[14] & 0xff, &w[15..19]),
        local_pwd: token(w[14] >> 8 & 0xff, &w[19..23]),
        remote_ufrag: (w[14] >> 24 & 1 == 1).then(|| token(w[14] >> 16 & 0xff, &w[23..27])),
    });
    let role = match w[27] & 0xff {
        1 => Some(DtlsRole::Active),
        2 => Some(DtlsRole::Passive),
        _ => None,
    };
    let dtls = role.map(|role| {
        let mut digest = [0u8; 64];
        get_bytes(&w[28..36], &mut digest);
        DtlsParams {
            role,
            hash: (w[27] >> 8) as u8,
            len: ((w[27] >> 16) as u8).min(64),
            digest,
        }
    });
    LegSecurity {
        rx: SrtpKeying::decode(&w[0..7]),
        tx: SrtpKeying::decode(&w[7..14]),
        ice,
        dtls,
    }
}

pub(super) fn put_bytes(words: &mut [u64], bytes: &[u8]) {
    for (w, c) in words.iter_mut().zip(bytes.chunks(8)) {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        *w = u64::from_le_bytes(b);
    }
}

pub(super) fn get_bytes(words: &[u64], bytes: &mut [u8]) {
    for (w, c) in words.iter().zip(bytes.chunks_mut(8)) {
        let n = c.len();
        c.copy_from_slice(&w.to_le_bytes()[..n]);
    }
}

/// The SRTP state of one stream of a leg (RFC 3711 §3.2.1): its SSRC, the
/// rollover counter, the highest sequence number, and the SRTCP index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SrtpStreamState {
    pub ssrc: u32,
    pub roc: u32,
    pub seq: u16,
    /// The next SRTCP index to send (protect) or the highest received
    /// (unprotect), 31 bits.
    pub srtcp_index: u32,
}

/// Which of a leg's two SRTP contexts a stream state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpDirection {
    /// What the leg's peer sends (unprotect).
    Rx,
    /// What the relay sends to the leg's peer (protect).
    Tx,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ice_credentials_are_ice_chars_of_the_rfc_lengths() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = IceParams::fresh(&mut rng);
        let b = IceParams::fresh(&mut rng);
        for p in [a, b] {
            assert_eq!((p.local_ufrag.len, p.local_pwd.len), (8, 24));
            let ok = |t: &IceToken| {
                t.as_str()
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
            };
            assert!(ok(&p.local_ufrag) && ok(&p.local_pwd));
            assert_eq!(p.remote_ufrag, None);
        }
        assert_ne!(a, b, "each call draws anew");
    }

    #[test]
    fn security_round_trips_through_words() {
        let s = LegSecurity {
            rx: SrtpKeying::new(1, &[7u8; 30]),
            tx: SrtpKeying::new(3, &[9u8; 46]),
            ice: Some(IceParams {
                local_ufrag: IceToken::new("abcdEFGH").unwrap(),
                local_pwd: IceToken::new("0123456789abcdefghij+/xy").unwrap(),
                remote_ufrag: IceToken::new("peer"),
            }),
            dtls: DtlsParams::new(DtlsRole::Passive, 3, &[0xab; 32]),
        };
        let back = decode(&encode(&s));
        assert_eq!(back, s);
        assert_eq!(
            back.ice.unwrap().local_pwd.as_str(),
            "0123456789abcdefghij+/xy"
        );
        assert_eq!(back.tx.unwrap().key_salt(), &[9u8; 46][..]);
        assert_eq!(
            decode(&encode(&LegSecurity::default())),
            LegSecurity::default()
        );
        assert!(LegSecurity::default().is_plain());
        assert!(!s.is_plain());
    }

    #[test]
    fn limits_are_refused_not_truncated() {
        assert!(SrtpKeying::new(1, &[0u8; 47]).is_none());
        assert!(SrtpKeying::new(0, &[0u8; 30]).is_none());
        assert!(IceToken::new(&"x".repeat(33)).is_none());
        assert!(IceToken::new("").is_none());
        assert!(DtlsParams::new(DtlsRole::Active, 5, &[0u8; 65]).is_none());
    }

    #[test]
    fn debug_never_shows_key_material() {
        let k = SrtpKeying::new(1, &[0x5a; 30]).unwrap();
        let d = format!(
            "{k:?} {:?}",
            IceToken::new("secretpassword12345678").unwrap()
        );
        assert!(
            !d.contains("90") && !d.contains("5a") && !d.contains("secret"),
            "{d}"
        );
    }
}
