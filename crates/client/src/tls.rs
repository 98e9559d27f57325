//! The TLS side of [`crate::Trust`]: a rustls client configuration with the
//! aws-lc-rs provider that either pins the server's end-entity certificate
//! by its SHA-256 fingerprint or verifies it against a CA file.
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::{ClientError, Trust};

/// The fingerprint of a DER certificate as `AA:BB:...` (uppercase hex, colons).
pub fn fingerprint_of(der: &[u8]) -> String {
    postvault_crypto::hash::sha256(&[der])
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses a SHA-256 fingerprint in any usual spelling (`AA:BB:..`,
/// `aabb..`, with or without colons, spaces or a `sha256` prefix) and
/// returns it as `AA:BB:...`.
pub fn normalize_fingerprint(text: &str) -> Result<String, ClientError> {
    Ok(fingerprint_bytes(text)?
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

fn fingerprint_bytes(text: &str) -> Result<[u8; 32], ClientError> {
    let t = text.trim();
    let t = t
        .strip_prefix("sha256 Fingerprint=")
        .or_else(|| t.strip_prefix("SHA256 Fingerprint="))
        .or_else(|| t.strip_prefix("sha256:"))
        .unwrap_or(t);
    let hexdigits: String = t.chars().filter(|c| *c != ':' && *c != ' ').collect();
    hex::decode(hexdigits.to_ascii_lowercase())
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| {
            ClientError::Trust(format!(
                "{text:?} is not a SHA-256 certificate fingerprint: give the 32 bytes as hex \
                 (AA:BB:...), as `postvault serve` prints it"
            ))
        })
}

/// The rustls configuration for `trust`.
pub(crate) fn client_config(trust: &Trust) -> Result<ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Trust(format!("TLS setup failed: {e}")))?;
    match trust {
        Trust::Fingerprint(fp) => {
            let pinned = fingerprint_bytes(fp)?;
            Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned { pinned, provider }))
                .with_no_client_auth())
        }
        Trust::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                ClientError::Trust(format!(
                    "cannot read the CA file {}: {e}; give a PEM file of the CA certificate",
                    path.display()
                ))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    ClientError::Trust(format!(
                        "the CA file {} is not valid PEM: {e}",
                        path.display()
                    ))
                })?;
                roots.add(cert).map_err(|e| {
                    ClientError::Trust(format!(
                        "a certificate in {} cannot be a trust anchor: {e}",
                        path.display()
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(ClientError::Trust(format!(
                    "the CA file {} holds no certificate",
                    path.display()
                )));
            }
            Ok(builder.with_root_certificates(roots).with_no_client_auth())
        }
    }
}

/// Trusts exactly the end-entity certificate with this SHA-256
/// fingerprint; the handshake signature is still verified with its key.
#[derive(Debug)]
struct Pinned {
    pinned: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = postvault_crypto::hash::sha256(&[end_entity.as_ref()]);
        if postvault_crypto::hash::ct_eq(&got, &self.pinned) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate (sha256 {}) is not the pinned one; \
                 check --fingerprint against what `postvault serve` printed",
                fingerprint_of(end_entity.as_ref())
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_in_any_spelling() {
        let canon = ["AB"; 32].join(":");
        assert_eq!(normalize_fingerprint(&canon).unwrap(), canon);
        assert_eq!(normalize_fingerprint(&"ab".repeat(32)).unwrap(), canon);
        assert_eq!(
            normalize_fingerprint(&format!("sha256 Fingerprint={canon}\n")).unwrap(),
            canon
        );
        assert!(normalize_fingerprint("AB:CD").is_err());
        assert!(normalize_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn fingerprint_of_matches_sha256() {
        let fp = fingerprint_of(b"abc");
        assert!(fp.starts_with("BA:78:16:BF"), "{fp}");
    }

    #[test]
    fn missing_or_empty_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Trust::CaFile(dir.path().join("nope.pem"));
        assert!(client_config(&missing).is_err());
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = client_config(&Trust::CaFile(empty)).unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
    }
}
