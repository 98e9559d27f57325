//! Checking a PSD certificate against the CA certificate, and an indicium
//! against both: the chain a verifier must establish before trusting
//! [`Indicium::verify_with_certificate`].
//!
//! The CA certificate is the trust anchor (given by the verifier, not taken
//! from the label), so its own signature is not checked; it must be a CA
//! certificate, valid at the time of the check. The PSD certificate must be
//! signed by the CA's key with ECDSA P-256 / SHA-256, name the CA as its
//! issuer, be valid at the time of the check, and not be a CA itself. The
//! checks mirror the module's own before it accepts a PSD certificate.

use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::{ChainError, Indicium};

/// What a PSD certificate that passed [`check_psd_certificate`] says about
/// itself (for display; nothing here is trusted beyond the checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsdCertificate {
    /// The certificate's subject, e.g. `O=postvault, CN=0042-0001-00000017`.
    pub subject: String,
    /// The certificate's issuer (the CA certificate's subject).
    pub issuer: String,
    /// The certificate's serial number, hex.
    pub serial: String,
    /// Start of the validity period, Unix seconds.
    pub not_before: i64,
    /// End of the validity period, Unix seconds.
    pub not_after: i64,
}

/// Checks that `psd_der` (a DER X.509 certificate) was issued by the CA of
/// `ca_der` (DER) and that both are valid at `at` (Unix seconds), in order:
///
/// 1. the CA certificate parses, is a CA (basicConstraints cA set; if it has
///    keyUsage, keyCertSign is among it), has a P-256 key, and is valid at
///    `at`;
/// 2. the PSD certificate parses, with nothing after it;
/// 3. it is signed with ecdsa-with-SHA256, and the signature verifies over
///    its to-be-signed part with the CA's key;
/// 4. its issuer is the CA certificate's subject (byte for byte);
/// 5. it is valid at `at` (not before <= `at` < not after);
/// 6. it is not a CA certificate.
///
/// The error names the first check that failed.
pub fn check_psd_certificate(
    psd_der: &[u8],
    ca_der: &[u8],
    at: i64,
) -> Result<PsdCertificate, ChainError> {
    let (_, ca) =
        X509Certificate::from_der(ca_der).map_err(|e| ChainError::CaCertificate(e.to_string()))?;
    check_ca(&ca, at)?;
    let ca_key = p256_key(ca.public_key()).map_err(ChainError::CaKey)?;

    let (rest, cert) =
        X509Certificate::from_der(psd_der).map_err(|e| ChainError::Certificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ChainError::Certificate(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    for alg in [&cert.signature_algorithm, &cert.tbs_certificate.signature] {
        if alg.algorithm != OID_SIG_ECDSA_WITH_SHA256 {
            return Err(ChainError::Algorithm(alg.algorithm.to_id_string()));
        }
    }
    if !postvault_crypto::ecdsa::verify_der(
        ca_key,
        cert.tbs_certificate.as_ref(),
        &cert.signature_value.data,
    ) {
        return Err(ChainError::Signature);
    }
    if cert.issuer().as_raw() != ca.subject().as_raw() {
        return Err(ChainError::Issuer {
            issuer: cert.issuer().to_string(),
            ca: ca.subject().to_string(),
        });
    }
    let (not_before, not_after) = (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );
    if at < not_before {
        return Err(ChainError::NotYetValid { at, not_before });
    }
    if at >= not_after {
        return Err(ChainError::Expired { at, not_after });
    }
    if cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca)
    {
        return Err(ChainError::PsdIsCa);
    }
    Ok(PsdCertificate {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before,
        not_after,
    })
}

/// The CA certificate may issue certificates and is valid at `at`.
fn check_ca(ca: &X509Certificate<'_>, at: i64) -> Result<(), ChainError> {
    let not_ca = |reason: &str| ChainError::NotCa {
        subject: ca.subject().to_string(),
        reason: reason.to_owned(),
    };
    match ca.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(Some(_)) => return Err(not_ca("its basicConstraints say cA is false")),
        Ok(None) => return Err(not_ca("it has no basicConstraints extension")),
        Err(e) => return Err(not_ca(&format!("its basicConstraints are invalid: {e}"))),
    }
    match ca.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => {
            return Err(not_ca("its keyUsage does not include keyCertSign"));
        }
        Ok(_) => {}
        Err(e) => return Err(not_ca(&format!("its keyUsage is invalid: {e}"))),
    }
    let (not_before, not_after) = (
        ca.validity().not_before.timestamp(),
        ca.validity().not_after.timestamp(),
    );
    if at < not_before || at >= not_after {
        return Err(ChainError::CaValidity {
            at,
            not_before,
            not_after,
        });
    }
    Ok(())
}

/// The key as a SEC1 uncompressed P-256 point, or why it is not one.
fn p256_key<'a>(spki: &'a SubjectPublicKeyInfo<'_>) -> Result<&'a [u8], String> {
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY
        || curve.as_ref() != Some(&OID_EC_P256)
    {
        return Err(format!(
            "the key algorithm is {} with parameters {}; id-ecPublicKey with prime256v1 is required",
            spki.algorithm.algorithm,
            curve.map_or_else(|| "(none)".to_owned(), |c| c.to_id_string())
        ));
    }
    let key: &[u8] = &spki.subject_public_key.data;
    if key.len() != postvault_crypto::ecdsa::PUBLIC_KEY_LEN || key[0] != 0x04 {
        return Err(format!(
            "the point is {} bytes; an uncompressed P-256 point is 65 bytes starting 0x04",
            key.len()
        ));
    }
    Ok(key)
}

impl Indicium {
    /// Verifies this indicium completely, as a verifier holding only the CA
    /// certificate must: [`check_psd_certificate`] (the PSD certificate
    /// `psd_der` was issued by the CA of `ca_der`, both valid at `at`, Unix
    /// seconds), then [`Indicium::verify_with_certificate`] (the
    /// certificate's serial and subject name this indicium's certificate
    /// serial and device, and its key verifies the signature).
    ///
    /// Returns what the PSD certificate says, for display.
    pub fn verify_with_chain(
        &self,
        psd_der: &[u8],
        ca_der: &[u8],
        at: i64,
    ) -> Result<PsdCertificate, ChainError> {
        let info = check_psd_certificate(psd_der, ca_der, at)?;
        self.verify_with_certificate(psd_der)?;
        Ok(info)
    }
}
