//! Verifying an indicium against its PSD's X.509 certificate.
//!
//! The certificate binds the PSD's indicium key to its device ID (subject
//! common name) and is identified in the indicium by the low 32 bits of its
//! serial number. This module checks those bindings and the signature; it
//! does not check who issued the certificate (its signature, chain and
//! validity period), which the caller must establish against the CA
//! certificate before trusting the result: [`Indicium::verify_with_chain`]
//! does both.

use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{DeviceId, Indicium, VerifyError};

/// Length of a SEC1 uncompressed P-256 point.
const P256_POINT_LEN: usize = 65;

impl Indicium {
    /// Verifies this indicium with its PSD's certificate (DER X.509), checking
    /// in order that:
    ///
    /// 1. the bytes are exactly one X.509 certificate;
    /// 2. the low 32 bits of its serial number equal
    ///    [`Indicium::certificate_serial`];
    /// 3. its subject has exactly one common name, and that name is the
    ///    device ID (`0042-0001-00000017`; leading zeros optional): the same
    ///    rule as the module's Authorize PSD, so no certificate a PSD could
    ///    sign under is refused and no other name is taken;
    /// 4. its public key is an ECDSA P-256 key (id-ecPublicKey, prime256v1)
    ///    with an uncompressed point;
    /// 5. [`Indicium::signature`] verifies over [`Indicium::payload`] with
    ///    that key.
    ///
    /// The error says which check failed. The certificate's own signature,
    /// issuer and validity period are not checked here: the caller must have
    /// validated the certificate against the CA.
    pub fn verify_with_certificate(&self, certificate_der: &[u8]) -> Result<(), VerifyError> {
        let (rest, cert) = X509Certificate::from_der(certificate_der)
            .map_err(|e| VerifyError::Certificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(VerifyError::Certificate(format!(
                "{} trailing bytes after the certificate",
                rest.len()
            )));
        }

        let serial = low_32_bits(cert.raw_serial());
        if serial != self.certificate_serial {
            return Err(VerifyError::SerialMismatch {
                certificate: serial,
                indicium: self.certificate_serial,
            });
        }

        check_subject(&cert, &self.device)?;
        let public_key = p256_point(&cert)?;

        let payload = self.payload()?;
        if !postvault_crypto::ecdsa::verify(&public_key, &payload, &self.signature) {
            return Err(VerifyError::Signature);
        }
        Ok(())
    }
}

/// The low 32 bits of a DER INTEGER's content octets (big-endian two's
/// complement), i.e. its last 4 bytes, left-padded with zeros.
fn low_32_bits(raw_serial: &[u8]) -> u32 {
    let tail = &raw_serial[raw_serial.len().saturating_sub(4)..];
    tail.iter().fold(0, |acc, &b| (acc << 8) | u32::from(b))
}

/// The subject has exactly one common name and it names `device`.
fn check_subject(cert: &X509Certificate<'_>, device_id: &DeviceId) -> Result<(), VerifyError> {
    let device = device_id.to_string();
    let mismatch = |reason: String| VerifyError::DeviceMismatch {
        device: device.clone(),
        reason,
    };
    let names: Vec<_> = cert.subject().iter_common_name().collect();
    let [name] = names.as_slice() else {
        return Err(mismatch(format!(
            "the subject {:?} has {} common names; exactly one is required",
            cert.subject().to_string(),
            names.len()
        )));
    };
    let cn = name
        .as_str()
        .map_err(|e| mismatch(format!("the subject common name is not a string: {e}")))?;
    if !names_device(cn, device_id) {
        return Err(mismatch(format!("the subject common name is {cn:?}")));
    }
    Ok(())
}

/// True when `cn` is exactly a device ID and that ID is `device`.
fn names_device(cn: &str, device: &DeviceId) -> bool {
    cn.parse::<DeviceId>().is_ok_and(|d| d == *device)
}

/// The certificate's public key as a SEC1 uncompressed P-256 point.
fn p256_point(cert: &X509Certificate<'_>) -> Result<[u8; P256_POINT_LEN], VerifyError> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return Err(VerifyError::PublicKey(format!(
            "the key algorithm is {}, not id-ecPublicKey (1.2.840.10045.2.1)",
            spki.algorithm.algorithm
        )));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if curve.as_ref() != Some(&OID_EC_P256) {
        return Err(VerifyError::PublicKey(match curve {
            Some(oid) => format!("the curve is {oid}, not prime256v1 (1.2.840.10045.3.1.7)"),
            None => "the key parameters do not name a curve (prime256v1 required)".into(),
        }));
    }
    let point = &spki.subject_public_key;
    if point.unused_bits != 0 || point.data.len() != P256_POINT_LEN || point.data[0] != 0x04 {
        return Err(VerifyError::PublicKey(format!(
            "the point is {} bytes starting 0x{:02x}; an uncompressed P-256 point is 65 bytes starting 0x04",
            point.data.len(),
            point.data.first().copied().unwrap_or(0)
        )));
    }
    let mut out = [0u8; P256_POINT_LEN];
    out.copy_from_slice(&point.data);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_low_bits() {
        assert_eq!(low_32_bits(&[]), 0);
        assert_eq!(low_32_bits(&[0x05]), 5);
        assert_eq!(low_32_bits(&[0x00, 0x80, 0x00, 0x00, 0x01]), 0x8000_0001);
        assert_eq!(
            low_32_bits(&[0x7f, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66]),
            0x3344_5566
        );
    }

    #[test]
    fn device_in_common_name() {
        let d: DeviceId = "0042-0001-00000017".parse().unwrap();
        assert!(names_device("0042-0001-00000017", &d));
        // Leading zeros are optional, as everywhere a device ID is read.
        assert!(names_device("42-1-17", &d));
        // Anything around the ID, or another ID, is not this device.
        assert!(!names_device("PSD 0042-0001-00000017", &d));
        assert!(!names_device("0042-0001-00000017 (postvault)", &d));
        assert!(!names_device(" 0042-0001-00000017", &d));
        assert!(!names_device("10042-0001-00000017", &d));
        assert!(!names_device("0042-0001-000000170", &d));
        assert!(!names_device("0042-0001-00000017-2", &d));
        assert!(!names_device("0042-0001-00000018", &d));
        assert!(!names_device("10042-0001-00000017 0042-0001-00000017", &d));
        assert!(!names_device("", &d));
    }
}
