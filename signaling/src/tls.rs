//! The TLS identity of the SIP transport (SIP over TLS, RFC 3261 §26.3.1,
//! and secure WebSocket, RFC 7118 §5): a certificate chain and key read
//! from PEM files (`[sip] tls_cert`, `tls_key`), or a self-signed one made
//! at start (rcgen, ECDSA P-256) when none is configured, with its
//! SHA-256 fingerprint for the log.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};

/// Why no TLS identity could be set up.
#[derive(Debug)]
pub enum TlsError {
    /// A PEM file could not be read (`path`, the I/O error).
    Read(String, std::io::Error),
    /// A file holds no certificate / no private key, or a broken PEM
    /// block (`path`, what is wrong).
    Pem(String, String),
    /// rustls refused the pair (the key does not match the certificate,
    /// an unsupported key type), or rcgen could not make one.
    Identity(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read(p, e) => write!(f, "cannot read {p}: {e}"),
            TlsError::Pem(p, why) => write!(f, "{p}: {why}"),
            TlsError::Identity(why) => write!(f, "TLS identity refused: {why}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// A server identity: the rustls configuration shared by every TLS and
/// WSS connection, and the SHA-256 fingerprint of the leaf certificate.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The server configuration (TLS 1.2 and 1.3, no client auth).
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate's DER, as upper-case hex pairs
    /// joined by `:` (the `openssl x509 -fingerprint -sha256` form).
    pub fingerprint: String,
    /// The leaf certificate, DER (for clients that pin it, e.g. tests).
    pub cert_der: Vec<u8>,
    /// Whether it was made at start (no `tls_cert` configured).
    pub self_signed: bool,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("fingerprint", &self.fingerprint)
            .field("self_signed", &self.self_signed)
            .finish()
    }
}

impl TlsIdentity {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1).
    ///
    /// Errors: [`TlsError::Read`], [`TlsError::Pem`] (no certificate or
    /// key in the file), [`TlsError::Identity`] (rustls refuses the pair).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsIdentity, TlsError> {
        let name = |p: &Path| p.display().to_string();
        let cert_pem = std::fs::read(cert).map_err(|e| TlsError::Read(name(cert), e))?;
        let key_pem = std::fs::read(key).map_err(|e| TlsError::Read(name(key), e))?;
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Pem(name(cert), e.to_string()))?;
        if chain.is_empty() {
            return Err(TlsError::Pem(name(cert), "no CERTIFICATE block".into()));
        }
        let key_der = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|e| TlsError::Pem(name(key), e.to_string()))?
            .ok_or_else(|| TlsError::Pem(name(key), "no PRIVATE KEY block".into()))?;
        TlsIdentity::build(chain, key_der, false)
    }

    /// A self-signed certificate for `names` (DNS names or IP literals;
    /// `localhost` when empty), ECDSA P-256, valid from now for rcgen's
    /// default span.
    ///
    /// Errors: [`TlsError::Identity`].
    pub fn self_signed(names: &[String]) -> Result<TlsIdentity, TlsError> {
        let names = if names.is_empty() {
            vec!["localhost".to_string()]
        } else {
            names.to_vec()
        };
        let ck = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Identity(e.to_string()))?;
        let cert = CertificateDer::from(ck.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
        TlsIdentity::build(vec![cert], key, true)
    }

    /// The configured identity (`cert` and `key` both given), else a
    /// self-signed one for `names`.
    ///
    /// Errors: those of [`TlsIdentity::from_pem_files`] and
    /// [`TlsIdentity::self_signed`].
    pub fn load_or_generate(
        cert: Option<&Path>,
        key: Option<&Path>,
        names: &[String],
    ) -> Result<TlsIdentity, TlsError> {
        match (cert, key) {
            (Some(c), Some(k)) => TlsIdentity::from_pem_files(c, k),
            _ => TlsIdentity::self_signed(names),
        }
    }

    fn build(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        self_signed: bool,
    ) -> Result<TlsIdentity, TlsError> {
        let cert_der = chain.first().map(|c| c.to_vec()).unwrap_or_default();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Identity(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Identity(e.to_string()))?;
        Ok(TlsIdentity {
            config: Arc::new(config),
            fingerprint: fingerprint(&cert_der),
            cert_der,
            self_signed,
        })
    }
}

/// SHA-256 of `der` as upper-case hex pairs joined by `:`.
pub fn fingerprint(der: &[u8]) -> String {
    let d = Sha256::digest(der);
    let hex: Vec<String> = d.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_identity_has_a_sha256_fingerprint() {
        let id = TlsIdentity::self_signed(&["127.0.0.1".into()]).unwrap();
        assert!(id.self_signed);
        assert_eq!(id.fingerprint.len(), 32 * 3 - 1);
        assert_eq!(id.fingerprint, fingerprint(&id.cert_der));
        // A second one is a different key.
        let other = TlsIdentity::self_signed(&[]).unwrap();
        assert_ne!(other.fingerprint, id.fingerprint);
    }

    #[test]
    fn pem_files_round_trip_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("tern-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, ck.cert.pem()).unwrap();
        std::fs::write(&k, ck.key_pair.serialize_pem()).unwrap();
        let id = TlsIdentity::from_pem_files(&c, &k).unwrap();
        assert!(!id.self_signed);
        assert_eq!(id.cert_der, ck.cert.der().to_vec());
        // A key file with no key, a missing file.
        let e = TlsIdentity::from_pem_files(&c, &c).unwrap_err();
        assert!(
            matches!(e, TlsError::Pem(ref p, _) if p.ends_with("cert.pem")),
            "{e}"
        );
        let e = TlsIdentity::from_pem_files(&dir.join("nope.pem"), &k).unwrap_err();
        assert!(matches!(e, TlsError::Read(..)), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
