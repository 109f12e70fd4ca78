//! AES Counter Mode encryption (RFC 3711 §4.1.1, AES-256 per RFC 6188) and
//! HMAC-SHA1 authentication (§4.2.1) for the `AES_CM_*_HMAC_SHA1_*` suites.
//!
//! The AES key schedule and the keyed HMAC inner/outer states are computed
//! once in [`Cm::new`]; per packet they are copied (no allocation).

use aes::{Aes128, Aes256};
use ctr::cipher::{InnerIvInit, StreamCipher, StreamCipherCoreWrapper};
use ctr::flavors::Ctr128BE;
use ctr::CtrCore;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use aes::cipher::KeyInit;

use super::kdf::SessionKeys;
use super::SrtpError;

/// An expanded AES key of either size.
// Inline, not boxed: it is built once and read on every packet.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Aes {
    A128(Aes128),
    A256(Aes256),
}

/// One of the SRTP or SRTCP halves of an AES-CM/HMAC-SHA1 crypto context.
#[derive(Clone)]
pub(crate) struct Cm {
    aes: Aes,
    /// Session salt `k_s`, 112 bits.
    salt: [u8; 14],
    /// HMAC-SHA1 keyed with the 160-bit session auth key `k_a`.
    mac: Hmac<Sha1>,
    /// Octets of the HMAC output kept as the tag (10 or 4).
    tag_len: usize,
}

impl Cm {
    /// From derived session keys; `key_len` is 16 or 32.
    pub fn new(keys: &SessionKeys, key_len: usize, tag_len: usize) -> Result<Cm, SrtpError> {
        let aes = match key_len {
            16 => {
                Aes::A128(Aes128::new_from_slice(&keys.key[..16]).map_err(|_| SrtpError::BadKey)?)
            }
            32 => {
                Aes::A256(Aes256::new_from_slice(&keys.key[..32]).map_err(|_| SrtpError::BadKey)?)
            }
            _ => return Err(SrtpError::BadKey),
        };
        let mac = <Hmac<Sha1> as Mac>::new_from_slice(&keys.auth).map_err(|_| SrtpError::BadKey)?;
        Ok(Cm {
            aes,
            salt: keys.salt,
            mac,
            tag_len,
        })
    }

    /// XORs `data` with the AES-CM keystream for (`ssrc`, `index`): IV =
    /// `(k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)` (RFC 3711 §4.1.1),
    /// with `index` the 48-bit SRTP packet index or the 31-bit SRTCP index.
    /// Encryption and decryption are the same operation.
    pub fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (d, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *d ^= s;
        }
        for (d, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..8]) {
            *d ^= s;
        }
        // The block counter is the low 16 bits of the IV; a packet is far
        // below 2^16 blocks, so a 128-bit big-endian counter gives the
        // same keystream.
        match &self.aes {
            Aes::A128(k) => {
                let core = CtrCore::<Aes128, Ctr128BE>::inner_iv_init(k.clone(), &iv.into());
                StreamCipherCoreWrapper::from_core(core).apply_keystream(data);
            }
            Aes::A256(k) => {
                let core = CtrCore::<Aes256, Ctr128BE>::inner_iv_init(k.clone(), &iv.into());
                StreamCipherCoreWrapper::from_core(core).apply_keystream(data);
            }
        }
    }

    /// The full 20-octet HMAC-SHA1 of `data || trailer` (RFC 3711 §4.2.1;
    /// the trailer is the ROC for SRTP; SRTCP puts its E|index inside
    /// `data` and passes an empty trailer).
    fn mac(&self, data: &[u8], trailer: &[u8]) -> [u8; 20] {
        let mut m = self.mac.clone();
        m.update(data);
        m.update(trailer);
        m.finalize().into_bytes().into()
    }

    /// Writes the truncated tag of `data || trailer` into `out` (which
    /// must be `tag_len` octets).
    pub fn sign(&self, data: &[u8], trailer: &[u8], out: &mut [u8]) {
        let full = self.mac(data, trailer);
        out.copy_from_slice(&full[..self.tag_len]);
    }

    /// Whether `tag` is the truncated tag of `data || trailer`, compared in
    /// constant time.
    pub fn verify(&self, data: &[u8], trailer: &[u8], tag: &[u8]) -> bool {
        let full = self.mac(data, trailer);
        tag.len() == self.tag_len && bool::from(full[..self.tag_len].ct_eq(tag))
    }
}
