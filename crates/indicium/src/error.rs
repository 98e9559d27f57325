//! Errors of the indicium codec and of certificate-based verification.
//!
//! Every message says what is wrong: the field, the offending value and the
//! limit or rule it breaks. Nothing here is secret.

/// Why an indicium (or one of its fields) could not be built, encoded or decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IndiciumError {
    /// The byte string is not exactly [`crate::INDICIUM_LEN`] bytes long.
    #[error("an indicium must be exactly {expected} bytes long, got {actual} bytes")]
    Length {
        /// The required length (113).
        expected: usize,
        /// The length that was given.
        actual: usize,
    },
    /// Byte 0 holds a version this library does not know.
    #[error("unknown indicium version 0x{found:02x} at byte 0; only version 1 (0x01) is supported")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// Byte 1 holds an algorithm ID this library does not know.
    #[error(
        "unknown algorithm ID 0x{found:02x} at byte 1; only 0x01 (ECDSA P-256 with SHA-256) is supported"
    )]
    Algorithm {
        /// The algorithm byte found.
        found: u8,
    },
    /// An integer field is larger than its encoding (or its definition) allows.
    #[error("{field} is {value}, above the maximum {max}")]
    OutOfRange {
        /// The field, by its Rust name (e.g. `ascending_register`, `zip5`).
        field: &'static str,
        /// The value given.
        value: u64,
        /// The largest allowed value.
        max: u64,
    },
    /// A date is not a real calendar date in YYYYMMDD form.
    #[error("{field} {value} is not a valid calendar date (YYYYMMDD): {reason}")]
    Date {
        /// The field (`date` for the date of mailing).
        field: &'static str,
        /// The value given, as written (e.g. `20260230`).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A ZIP+4 value or text is malformed or out of range.
    #[error("{field} {value:?} is not a valid ZIP+4: {reason}")]
    Zip {
        /// The field (`origin`, `destination`, or `zip` when parsed on its own).
        field: &'static str,
        /// The value given, as text.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A mail category is not 1 to 4 characters of `A-Z`, `0-9` (space-padded when encoded).
    #[error("{field} {value} is not a valid mail category: {reason}")]
    Category {
        /// The field (`category`).
        field: &'static str,
        /// The value given, quoted and escaped.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A device ID text is not `vendor-model-serial` in decimal.
    #[error("device ID {value:?} is malformed: {reason}")]
    DeviceId {
        /// The text given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl IndiciumError {
    /// The same error, attributed to `field` (for the errors that carry a field
    /// name set by a type's own constructor).
    pub(crate) fn for_field(self, name: &'static str) -> Self {
        match self {
            Self::Date { value, reason, .. } => Self::Date {
                field: name,
                value,
                reason,
            },
            Self::Zip { value, reason, .. } => Self::Zip {
                field: name,
                value,
                reason,
            },
            Self::Category { value, reason, .. } => Self::Category {
                field: name,
                value,
                reason,
            },
            other => other,
        }
    }
}

/// Which check of [`crate::Indicium::verify_with_certificate`] failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The bytes are not one DER X.509 certificate.
    #[error("the PSD certificate is not a DER X.509 certificate: {0}")]
    Certificate(String),
    /// The certificate's serial number does not match field 3 of the indicium.
    #[error(
        "certificate serial mismatch: the certificate's serial ends in 0x{certificate:08x} ({certificate}), the indicium names certificate serial 0x{indicium:08x} ({indicium})"
    )]
    SerialMismatch {
        /// The low 32 bits of the certificate's serial number.
        certificate: u32,
        /// The certificate serial number in the indicium.
        indicium: u32,
    },
    /// The certificate's subject common name does not name the indicium's device.
    #[error("the certificate subject does not name device {device}: {reason}")]
    DeviceMismatch {
        /// The indicium's device ID (`vendor-model-serial`).
        device: String,
        /// What the subject holds instead.
        reason: String,
    },
    /// The certificate's key is not an uncompressed P-256 public key.
    #[error("the certificate public key is not an uncompressed ECDSA P-256 key: {0}")]
    PublicKey(String),
    /// The indicium's fields cannot be encoded, so there is no payload to verify.
    #[error("the indicium cannot be encoded: {0}")]
    Encoding(#[from] IndiciumError),
    /// The signature does not verify over the payload with the certificate's key.
    #[error(
        "the indicium signature does not verify over the 49-byte payload with the certificate's public key"
    )]
    Signature,
}

/// Which check of [`crate::check_psd_certificate`] or
/// [`crate::Indicium::verify_with_chain`] failed. Times are Unix seconds.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ChainError {
    /// The CA certificate is not one DER X.509 certificate.
    #[error("the CA certificate is not a DER X.509 certificate: {0}")]
    CaCertificate(String),
    /// The CA certificate is not marked as a CA (basicConstraints cA), or may
    /// not sign certificates (keyUsage without keyCertSign).
    #[error("the CA certificate ({subject}) is not a CA certificate: {reason}")]
    NotCa {
        /// The CA certificate's subject.
        subject: String,
        /// What is missing.
        reason: String,
    },
    /// The CA certificate's key is not an uncompressed ECDSA P-256 key.
    #[error("the CA certificate's public key is not an uncompressed ECDSA P-256 key: {0}")]
    CaKey(String),
    /// The CA certificate is outside its validity period.
    #[error("the CA certificate is not valid at {at}: valid from {not_before} to {not_after}")]
    CaValidity {
        /// The time of the check.
        at: i64,
        /// Start of the CA certificate's validity.
        not_before: i64,
        /// End of the CA certificate's validity.
        not_after: i64,
    },
    /// The PSD certificate is not one DER X.509 certificate.
    #[error("the PSD certificate is not a DER X.509 certificate: {0}")]
    Certificate(String),
    /// The PSD certificate is signed with another algorithm than
    /// ecdsa-with-SHA256, the only one accepted.
    #[error(
        "the PSD certificate is signed with {0}, not ecdsa-with-SHA256 (1.2.840.10045.4.3.2), the only algorithm accepted"
    )]
    Algorithm(String),
    /// The CA's signature on the PSD certificate does not verify: the PSD
    /// certificate was issued by another CA, or altered.
    #[error(
        "the PSD certificate's signature does not verify with the CA certificate's key (it was issued by another CA, or altered)"
    )]
    Signature,
    /// The PSD certificate's issuer is not the CA certificate's subject.
    #[error("the PSD certificate's issuer ({issuer}) is not the CA certificate's subject ({ca})")]
    Issuer {
        /// The PSD certificate's issuer.
        issuer: String,
        /// The CA certificate's subject.
        ca: String,
    },
    /// The PSD certificate is not valid yet at the time of the check.
    #[error("the PSD certificate is not valid yet: valid from {not_before}, checked at {at}")]
    NotYetValid {
        /// The time of the check.
        at: i64,
        /// Start of the PSD certificate's validity.
        not_before: i64,
    },
    /// The PSD certificate has expired at the time of the check.
    #[error("the PSD certificate has expired: valid until {not_after}, checked at {at}")]
    Expired {
        /// The time of the check.
        at: i64,
        /// End of the PSD certificate's validity.
        not_after: i64,
    },
    /// The PSD certificate is itself a CA certificate, which no PSD has.
    #[error("the PSD certificate is a CA certificate (basicConstraints cA is set); a PSD's is not")]
    PsdIsCa,
    /// The certificate is a good one from the CA, but it does not bind the
    /// indicium: serial, device or signature (see [`VerifyError`]).
    #[error(transparent)]
    Indicium(#[from] VerifyError),
}
