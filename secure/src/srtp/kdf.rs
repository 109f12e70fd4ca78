//! Session key derivation: the AES-CM PRF of RFC 3711 §4.3 with a key
//! derivation rate of 0, so each key is derived once per master key
//! (§4.3.1: `r = 0`, `key_id = label || 0^48`).
//!
//! For the AEAD suites RFC 7714 §12 keeps the same PRF; their 96-bit
//! master salt is extended to the PRF's 112 bits with two zero octets at
//! the end, as libsrtp does.

use aes::{Aes128, Aes256};
use ctr::cipher::{KeyIvInit, StreamCipher};
use ctr::Ctr128BE;

use super::{SrtpError, Suite};

/// SRTP encryption key label (RFC 3711 §4.3.1); auth is +1, salt +2.
pub(crate) const LABEL_SRTP: u8 = 0x00;
/// SRTCP encryption key label (RFC 3711 §4.3.2); auth is +1, salt +2.
pub(crate) const LABEL_SRTCP: u8 = 0x03;

/// The session keys of one of SRTP or SRTCP under one master key. Only the
/// first `Suite::key_len`/`Suite::salt_len` octets of `key`/`salt` are
/// used; `auth` (160 bits, RFC 3711 §4.2.1 `n_a`) is unused by the AEAD
/// suites.
#[derive(Clone)]
pub(crate) struct SessionKeys {
    pub key: [u8; 32],
    pub auth: [u8; 20],
    pub salt: [u8; 14],
}

/// `PRF_n(k_master, x)` for `x = (label || 0^48) XOR k_s` (RFC 3711
/// §4.3.1, §4.3.3): AES-CM keystream from IV `x * 2^16`, into `out`.
///
/// `master_key` is 16 or 32 octets, `master_salt` 14 octets (the AEAD
/// suites' 12 padded with zeros). Errors with [`SrtpError::BadKey`] on
/// any other key length.
pub(crate) fn prf(
    master_key: &[u8],
    master_salt: &[u8; 14],
    label: u8,
    out: &mut [u8],
) -> Result<(), SrtpError> {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(master_salt);
    // key_id = label || r (48 bits) is right-aligned in the 112-bit salt.
    iv[7] ^= label;
    out.fill(0);
    match master_key.len() {
        16 => Ctr128BE::<Aes128>::new_from_slices(master_key, &iv)
            .map_err(|_| SrtpError::BadKey)?
            .apply_keystream(out),
        32 => Ctr128BE::<Aes256>::new_from_slices(master_key, &iv)
            .map_err(|_| SrtpError::BadKey)?
            .apply_keystream(out),
        _ => return Err(SrtpError::BadKey),
    }
    Ok(())
}

/// Derives the encryption key, authentication key and salt for SRTP
/// (`label_base` [`LABEL_SRTP`]) or SRTCP ([`LABEL_SRTCP`]).
///
/// Errors with [`SrtpError::BadKey`] unless `master_key` is
/// `suite.key_len()` and `master_salt` `suite.salt_len()` octets.
pub(crate) fn derive(
    suite: Suite,
    master_key: &[u8],
    master_salt: &[u8],
    label_base: u8,
) -> Result<SessionKeys, SrtpError> {
    if master_key.len() != suite.key_len() || master_salt.len() != suite.salt_len() {
        return Err(SrtpError::BadKey);
    }
    let mut salt14 = [0u8; 14];
    salt14[..master_salt.len()].copy_from_slice(master_salt);
    let mut keys = SessionKeys {
        key: [0; 32],
        auth: [0; 20],
        salt: [0; 14],
    };
    let (kl, sl) = (suite.key_len(), suite.salt_len());
    prf(master_key, &salt14, label_base, &mut keys.key[..kl])?;
    if !suite.is_aead() {
        prf(master_key, &salt14, label_base + 1, &mut keys.auth)?;
    }
    prf(master_key, &salt14, label_base + 2, &mut keys.salt[..sl])?;
    Ok(keys)
}
