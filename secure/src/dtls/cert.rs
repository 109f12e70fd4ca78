//! The relay's DTLS identity: a P-256 key and a self-signed certificate.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Name, X509};

use super::{DtlsError, Fingerprint, HashAlg};

/// Seconds the certificate is valid before its making (clock skew).
const BACKDATE_SECS: i64 = 24 * 60 * 60;
/// Seconds the certificate is valid after its making: 30 days.
const LIFETIME_SECS: i64 = 30 * 24 * 60 * 60;

/// The relay's DTLS identity, made once at start: an ECDSA P-256 key
/// (secp256r1, RFC 8422) and a self-signed X.509 v3 certificate signed
/// with ECDSA-SHA256 — random 127-bit positive serial, subject and issuer
/// `CN=tern`, valid from one day before its making for 30 days after —
/// with the SHA-256 fingerprint of its DER encoding for `a=fingerprint`.
///
/// Cloning is cheap (OpenSSL reference counts). `Debug` shows the
/// fingerprint, never the private key.
#[derive(Clone)]
pub struct Certificate {
    pub(super) x509: X509,
    pub(super) key: PKey<Private>,
    fingerprint: Fingerprint,
}

impl Certificate {
    /// Makes a fresh key and certificate.
    ///
    /// # Errors
    /// [`DtlsError::Setup`] with OpenSSL's text when key generation or
    /// signing fails.
    pub fn generate() -> Result<Certificate, DtlsError> {
        Self::build().map_err(|e| DtlsError::Setup(e.to_string()))
    }

    fn build() -> Result<Certificate, ErrorStack> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let key = PKey::from_ec_key(EcKey::generate(&group)?)?;

        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::COMMONNAME, "tern")?;
        let name = name.build();

        let mut serial = BigNum::new()?;
        // 127 random bits, top bit clear: a positive INTEGER of at most
        // 16 bytes (RFC 5280 §4.1.2.2 allows 20).
        serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
        let serial = Asn1Integer::from_bn(&serial)?;

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let not_before = Asn1Time::from_unix(now - BACKDATE_SECS)?;
        let not_after = Asn1Time::from_unix(now + LIFETIME_SECS)?;

        let mut b = X509::builder()?;
        b.set_version(2)?; // v3
        b.set_serial_number(&serial)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(&name)?;
        b.set_pubkey(&key)?;
        b.set_not_before(&not_before)?;
        b.set_not_after(&not_after)?;
        b.sign(&key, MessageDigest::sha256())?;
        let x509 = b.build();

        let fingerprint = Fingerprint::of_der(HashAlg::Sha256, &x509.to_der()?);
        Ok(Certificate {
            x509,
            key,
            fingerprint,
        })
    }

    /// The SHA-256 fingerprint of the certificate's DER (32 bytes), for
    /// `a=fingerprint:sha-256 …` (RFC 8122 §5).
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The certificate, DER-encoded.
    ///
    /// # Errors
    /// [`DtlsError::Setup`] when OpenSSL cannot encode it.
    pub fn to_der(&self) -> Result<Vec<u8>, DtlsError> {
        self.x509
            .to_der()
            .map_err(|e| DtlsError::Setup(e.to_string()))
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &format_args!("{}", self.fingerprint))
            .finish_non_exhaustive()
    }
}
