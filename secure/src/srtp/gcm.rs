//! AES-GCM authenticated encryption for SRTP and SRTCP (RFC 7714):
//! `AEAD_AES_128_GCM` and `AEAD_AES_256_GCM`, 16-octet tag.
//!
//! The GHASH key and AES key schedule are computed once in [`Gcm::new`].

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit, Nonce, Tag};

use super::kdf::SessionKeys;
use super::SrtpError;

/// Authentication tag length of both AEAD suites (RFC 7714 §7).
pub(crate) const TAG_LEN: usize = 16;

// Inline, not boxed: it is built once and read on every packet.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Aead {
    A128(Aes128Gcm),
    A256(Aes256Gcm),
}

/// One of the SRTP or SRTCP halves of an AES-GCM crypto context.
#[derive(Clone)]
pub(crate) struct Gcm {
    aead: Aead,
    /// Session salt, 96 bits.
    salt: [u8; 12],
}

impl Gcm {
    /// From derived session keys; `key_len` is 16 or 32.
    pub fn new(keys: &SessionKeys, key_len: usize) -> Result<Gcm, SrtpError> {
        let aead = match key_len {
            16 => Aead::A128(
                Aes128Gcm::new_from_slice(&keys.key[..16]).map_err(|_| SrtpError::BadKey)?,
            ),
            32 => Aead::A256(
                Aes256Gcm::new_from_slice(&keys.key[..32]).map_err(|_| SrtpError::BadKey)?,
            ),
            _ => return Err(SrtpError::BadKey),
        };
        let mut salt = [0u8; 12];
        salt.copy_from_slice(&keys.salt[..12]);
        Ok(Gcm { aead, salt })
    }

    /// SRTP IV (RFC 7714 §8.1): `salt XOR (00 00 || SSRC || ROC || SEQ)`,
    /// 2 + 4 + 4 + 2 octets.
    pub fn rtp_iv(&self, ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
        let mut x = [0u8; 12];
        x[2..6].copy_from_slice(&ssrc.to_be_bytes());
        x[6..10].copy_from_slice(&roc.to_be_bytes());
        x[10..12].copy_from_slice(&seq.to_be_bytes());
        self.xor_salt(x)
    }

    /// SRTCP IV (RFC 7714 §9.1): `salt XOR (00 00 || SSRC || 00 00 || 0 ||
    /// SRTCP index)`, the index 31 bits.
    pub fn rtcp_iv(&self, ssrc: u32, index: u32) -> [u8; 12] {
        let mut x = [0u8; 12];
        x[2..6].copy_from_slice(&ssrc.to_be_bytes());
        x[8..12].copy_from_slice(&(index & 0x7fff_ffff).to_be_bytes());
        self.xor_salt(x)
    }

    fn xor_salt(&self, mut x: [u8; 12]) -> [u8; 12] {
        for (d, s) in x.iter_mut().zip(self.salt) {
            *d ^= s;
        }
        x
    }

    /// Encrypts `data` in place under `iv` with `aad` authenticated too;
    /// returns the tag. Errors ([`SrtpError::Malformed`]) only past GCM's
    /// length limits, which no UDP datagram reaches.
    pub fn seal(&self, iv: &[u8; 12], aad: &[u8], data: &mut [u8]) -> Result<[u8; 16], SrtpError> {
        let nonce = Nonce::from_slice(iv);
        let tag = match &self.aead {
            Aead::A128(c) => c.encrypt_in_place_detached(nonce, aad, data),
            Aead::A256(c) => c.encrypt_in_place_detached(nonce, aad, data),
        }
        .map_err(|_| SrtpError::Malformed)?;
        Ok(tag.into())
    }

    /// Verifies `tag` over `aad` and the ciphertext `data`, then decrypts
    /// `data` in place. [`SrtpError::AuthFailed`] (and `data` untouched)
    /// if the tag does not match.
    pub fn open(
        &self,
        iv: &[u8; 12],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8],
    ) -> Result<(), SrtpError> {
        if tag.len() != TAG_LEN {
            return Err(SrtpError::AuthFailed);
        }
        let nonce = Nonce::from_slice(iv);
        let tag = Tag::from_slice(tag);
        match &self.aead {
            Aead::A128(c) => c.decrypt_in_place_detached(nonce, aad, data, tag),
            Aead::A256(c) => c.decrypt_in_place_detached(nonce, aad, data, tag),
        }
        .map_err(|_| SrtpError::AuthFailed)
    }
}
