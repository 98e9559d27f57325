//! postvault-indicium: the version-1 postvault indicium, the 113-byte record
//! printed (as a Data Matrix symbol) on every piece of mail.
//!
//! The layout is normative (`reference/indicium.md`): all integers unsigned
//! big-endian, money in mills (a tenth of a cent).
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 1 | indicium version, `0x01` |
//! | 1 | 1 | algorithm ID, `0x01` = ECDSA P-256 with SHA-256, signature r‖s |
//! | 2 | 4 | certificate serial number (low 32 bits of the PSD certificate's serial) |
//! | 6 | 2 | vendor ID |
//! | 8 | 2 | PSD model number |
//! | 10 | 4 | PSD serial number |
//! | 14 | 5 | ascending register, mills, after this piece |
//! | 19 | 3 | postage value, mills |
//! | 22 | 4 | date of mailing, the integer YYYYMMDD |
//! | 26 | 4 | originating ZIP+4, ZIP5 * 10000 + plus-4 |
//! | 30 | 2 | software ID |
//! | 32 | 4 | destination ZIP+4, 0 when not addressed |
//! | 36 | 5 | piece counter, this piece included |
//! | 41 | 4 | descending register, mills, after this piece |
//! | 45 | 4 | mail category, ASCII, left-justified, space-padded |
//! | 49 | 64 | signature over bytes 0..49 |
//!
//! This crate does no I/O and holds no secrets. The cryptographic module
//! builds an [`Indicium`] with a zero signature, signs [`Indicium::payload`]
//! with the PSD's indicium key and stores the result in
//! [`Indicium::signature`]. Anyone can then [`Indicium::from_bytes`] a scan
//! and check it with [`Indicium::verify`] (a bare public key) or
//! [`Indicium::verify_with_certificate`] (the PSD's X.509 certificate), or
//! completely, certificate chain included, with [`Indicium::verify_with_chain`]
//! (the PSD's certificate and the CA certificate).
#![forbid(unsafe_code)]

mod certificate;
mod chain;
mod error;
mod types;

pub use chain::{PsdCertificate, check_psd_certificate};
pub use error::{ChainError, IndiciumError, VerifyError};
pub use types::{DeviceId, DeviceIdText, MailCategory, MailingDate, Zip4};

/// Length of an encoded version-1 indicium.
pub const INDICIUM_LEN: usize = 113;
/// Length of the signed part (bytes 0..49).
pub const PAYLOAD_LEN: usize = 49;
/// Length of the signature (r‖s).
pub const SIGNATURE_LEN: usize = INDICIUM_LEN - PAYLOAD_LEN;
/// The indicium version this crate encodes and decodes.
pub const VERSION_1: u8 = 0x01;
/// Algorithm ID for ECDSA P-256 with SHA-256, signature r‖s (32 + 32 bytes).
pub const ALG_ECDSA_P256_SHA256: u8 = 0x01;

/// The largest ascending register or piece counter (5 bytes): 2^40 - 1.
const MAX_40: u64 = (1 << 40) - 1;
/// The largest postage value (3 bytes): 2^24 - 1 mills.
const MAX_24: u64 = (1 << 24) - 1;

/// Byte offsets of the fields (reference table, column "offset").
mod offset {
    pub const VERSION: usize = 0;
    pub const ALGORITHM: usize = 1;
    pub const CERTIFICATE_SERIAL: usize = 2;
    pub const VENDOR: usize = 6;
    pub const MODEL: usize = 8;
    pub const SERIAL: usize = 10;
    pub const ASCENDING_REGISTER: usize = 14;
    pub const POSTAGE: usize = 19;
    pub const DATE: usize = 22;
    pub const ORIGIN: usize = 26;
    pub const SOFTWARE_ID: usize = 30;
    pub const DESTINATION: usize = 32;
    pub const PIECE_COUNTER: usize = 36;
    pub const DESCENDING_REGISTER: usize = 41;
    pub const CATEGORY: usize = 45;
    pub const SIGNATURE: usize = 49;
}

/// A decoded version-1 indicium (algorithm: ECDSA P-256 with SHA-256).
///
/// The version and algorithm bytes are implied. The integer fields are public
/// and unchecked until encoding: [`Indicium::payload`] and
/// [`Indicium::to_bytes`] reject a value too large for its field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Indicium {
    /// Low 32 bits of the serial number of the PSD's X.509 certificate.
    pub certificate_serial: u32,
    /// The PSD that created the indicium.
    pub device: DeviceId,
    /// Ascending register in mills, after this piece; below 2^40.
    pub ascending_register: u64,
    /// Postage value in mills; below 2^24.
    pub postage: u32,
    /// Date of mailing.
    pub date: MailingDate,
    /// Originating ZIP+4.
    pub origin: Zip4,
    /// Software ID.
    pub software_id: u16,
    /// Destination ZIP+4; [`Zip4::NONE`] when the piece is not addressed.
    pub destination: Zip4,
    /// Indicia created by this PSD, this one included; below 2^40.
    pub piece_counter: u64,
    /// Descending register in mills, after this piece.
    pub descending_register: u32,
    /// Mail (rate) category.
    pub category: MailCategory,
    /// ECDSA P-256 signature r‖s over [`Indicium::payload`].
    pub signature: [u8; SIGNATURE_LEN],
}

/// Writes the low `len` bytes of `value` big-endian at `buf[at..at + len]`.
fn put(buf: &mut [u8], at: usize, len: usize, value: u64) {
    buf[at..at + len].copy_from_slice(&value.to_be_bytes()[8 - len..]);
}

/// Reads `len` bytes big-endian from `buf[at..at + len]`.
fn get(buf: &[u8], at: usize, len: usize) -> u64 {
    buf[at..at + len]
        .iter()
        .fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// `value` if it is at most `max`, else an error naming `field`.
fn in_range(field: &'static str, value: u64, max: u64) -> Result<u64, IndiciumError> {
    if value > max {
        return Err(IndiciumError::OutOfRange { field, value, max });
    }
    Ok(value)
}

impl Indicium {
    /// The signed part: bytes 0..49 (version 1, algorithm 1, then fields 3 to
    /// 15). Fails, naming the field, when the ascending register or piece
    /// counter is 2^40 or more, or the postage 2^24 or more.
    pub fn payload(&self) -> Result<[u8; PAYLOAD_LEN], IndiciumError> {
        use offset::*;
        let ascending = in_range("ascending_register", self.ascending_register, MAX_40)?;
        let postage = in_range("postage", u64::from(self.postage), MAX_24)?;
        let pieces = in_range("piece_counter", self.piece_counter, MAX_40)?;

        let mut p = [0u8; PAYLOAD_LEN];
        p[VERSION] = VERSION_1;
        p[ALGORITHM] = ALG_ECDSA_P256_SHA256;
        put(
            &mut p,
            CERTIFICATE_SERIAL,
            4,
            self.certificate_serial.into(),
        );
        put(&mut p, VENDOR, 2, self.device.vendor.into());
        put(&mut p, MODEL, 2, self.device.model.into());
        put(&mut p, SERIAL, 4, self.device.serial.into());
        put(&mut p, ASCENDING_REGISTER, 5, ascending);
        put(&mut p, POSTAGE, 3, postage);
        put(&mut p, DATE, 4, self.date.as_u32().into());
        put(&mut p, ORIGIN, 4, self.origin.as_u32().into());
        put(&mut p, SOFTWARE_ID, 2, self.software_id.into());
        put(&mut p, DESTINATION, 4, self.destination.as_u32().into());
        put(&mut p, PIECE_COUNTER, 5, pieces);
        put(
            &mut p,
            DESCENDING_REGISTER,
            4,
            self.descending_register.into(),
        );
        p[CATEGORY..CATEGORY + 4].copy_from_slice(&self.category.as_bytes());
        Ok(p)
    }

    /// The full 113 bytes: [`Indicium::payload`] followed by the signature.
    pub fn to_bytes(&self) -> Result<[u8; INDICIUM_LEN], IndiciumError> {
        let mut out = [0u8; INDICIUM_LEN];
        out[..PAYLOAD_LEN].copy_from_slice(&self.payload()?);
        out[offset::SIGNATURE..].copy_from_slice(&self.signature);
        Ok(out)
    }

    /// Decodes exactly 113 bytes. Rejects any other length, a version or
    /// algorithm other than 1, a date that is not a real calendar date, a
    /// ZIP+4 whose ZIP5 part is above 99999, and a category that is not 1 to
    /// 4 characters of `A-Z`, `0-9` followed by space padding. The signature
    /// is not checked here; see [`Indicium::verify`].
    ///
    /// Every accepted byte string re-encodes to itself.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IndiciumError> {
        use offset::*;
        if bytes.len() != INDICIUM_LEN {
            return Err(IndiciumError::Length {
                expected: INDICIUM_LEN,
                actual: bytes.len(),
            });
        }
        if bytes[VERSION] != VERSION_1 {
            return Err(IndiciumError::Version {
                found: bytes[VERSION],
            });
        }
        if bytes[ALGORITHM] != ALG_ECDSA_P256_SHA256 {
            return Err(IndiciumError::Algorithm {
                found: bytes[ALGORITHM],
            });
        }
        // Each `get` reads at most as many bytes as the target type holds.
        let date = MailingDate::from_u32(get(bytes, DATE, 4) as u32)?;
        let origin =
            Zip4::from_u32(get(bytes, ORIGIN, 4) as u32).map_err(|e| e.for_field("origin"))?;
        let destination = Zip4::from_u32(get(bytes, DESTINATION, 4) as u32)
            .map_err(|e| e.for_field("destination"))?;
        let mut category = [0u8; 4];
        category.copy_from_slice(&bytes[CATEGORY..CATEGORY + 4]);
        let category = MailCategory::from_bytes(category)?;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&bytes[SIGNATURE..]);
        Ok(Self {
            certificate_serial: get(bytes, CERTIFICATE_SERIAL, 4) as u32,
            device: DeviceId {
                vendor: get(bytes, VENDOR, 2) as u16,
                model: get(bytes, MODEL, 2) as u16,
                serial: get(bytes, SERIAL, 4) as u32,
            },
            ascending_register: get(bytes, ASCENDING_REGISTER, 5),
            postage: get(bytes, POSTAGE, 3) as u32,
            date,
            origin,
            software_id: get(bytes, SOFTWARE_ID, 2) as u16,
            destination,
            piece_counter: get(bytes, PIECE_COUNTER, 5),
            descending_register: get(bytes, DESCENDING_REGISTER, 4) as u32,
            category,
            signature,
        })
    }

    /// True when [`Indicium::signature`] is a valid ECDSA P-256 / SHA-256
    /// signature over [`Indicium::payload`] under `public_key` (SEC1
    /// uncompressed, 65 bytes). False for any other key encoding and for an
    /// indicium whose fields cannot be encoded.
    pub fn verify(&self, public_key: &[u8]) -> bool {
        match self.payload() {
            Ok(payload) => postvault_crypto::ecdsa::verify(public_key, &payload, &self.signature),
            Err(_) => false,
        }
    }

    /// One human-readable line: postage in dollars (mills, so three
    /// decimals), date of mailing, origin ZIP, device ID, piece counter and
    /// category, e.g.
    /// `$0.730 postage, mailed 2026-11-23 from ZIP 12345-6789, device 0042-0001-00000017, piece 17, category FC`.
    pub fn summary(&self) -> String {
        format!(
            "${}.{:03} postage, mailed {} from ZIP {}, device {}, piece {}, category {}",
            self.postage / 1000,
            self.postage % 1000,
            self.date,
            self.origin,
            self.device,
            self.piece_counter,
            self.category
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Indicium {
        Indicium {
            certificate_serial: 0x0102_0304,
            device: DeviceId {
                vendor: 42,
                model: 1,
                serial: 17,
            },
            ascending_register: 1_234_567,
            postage: 730,
            date: MailingDate::new(2026, 11, 23).unwrap(),
            origin: Zip4::new(12345, 6789).unwrap(),
            software_id: 7,
            destination: Zip4::NONE,
            piece_counter: 17,
            descending_register: 98_765,
            category: MailCategory::FIRST_CLASS,
            signature: [0xab; SIGNATURE_LEN],
        }
    }

    #[test]
    fn offsets_tile_the_record() {
        use offset::*;
        let fields = [
            (VERSION, 1),
            (ALGORITHM, 1),
            (CERTIFICATE_SERIAL, 4),
            (VENDOR, 2),
            (MODEL, 2),
            (SERIAL, 4),
            (ASCENDING_REGISTER, 5),
            (POSTAGE, 3),
            (DATE, 4),
            (ORIGIN, 4),
            (SOFTWARE_ID, 2),
            (DESTINATION, 4),
            (PIECE_COUNTER, 5),
            (DESCENDING_REGISTER, 4),
            (CATEGORY, 4),
            (SIGNATURE, SIGNATURE_LEN),
        ];
        let mut next = 0;
        for (at, len) in fields {
            assert_eq!(at, next);
            next += len;
        }
        assert_eq!(next, INDICIUM_LEN);
        assert_eq!(CATEGORY + 4, PAYLOAD_LEN);
    }

    #[test]
    fn put_and_get_are_inverse() {
        let mut b = [0u8; 8];
        put(&mut b, 1, 5, 0x01_2345_6789);
        assert_eq!(b, [0, 0x01, 0x23, 0x45, 0x67, 0x89, 0, 0]);
        assert_eq!(get(&b, 1, 5), 0x01_2345_6789);
    }

    #[test]
    fn limits_are_inclusive_maxima() {
        let mut i = sample();
        i.ascending_register = MAX_40;
        i.piece_counter = MAX_40;
        i.postage = MAX_24 as u32;
        i.descending_register = u32::MAX;
        let back = Indicium::from_bytes(&i.to_bytes().unwrap()).unwrap();
        assert_eq!(back, i);
    }

    #[test]
    fn summary_line() {
        let mut i = sample();
        assert_eq!(
            i.summary(),
            "$0.730 postage, mailed 2026-11-23 from ZIP 12345-6789, device 0042-0001-00000017, piece 17, category FC"
        );
        i.postage = 12_345;
        i.origin = Zip4::new(501, 0).unwrap();
        i.category = MailCategory::PRIORITY;
        assert!(i.summary().starts_with("$12.345 postage"));
        assert!(i.summary().contains("from ZIP 00501,"));
        assert!(i.summary().ends_with("category PM"));
    }

    #[test]
    fn decoding_names_the_bad_zip_field() {
        let good = sample().to_bytes().unwrap();
        let mut b = good;
        b[offset::ORIGIN..offset::ORIGIN + 4].copy_from_slice(&1_000_000_000u32.to_be_bytes());
        let e = Indicium::from_bytes(&b).unwrap_err();
        assert!(
            matches!(
                e,
                IndiciumError::Zip {
                    field: "origin",
                    ..
                }
            ),
            "{e}"
        );
        let mut b = good;
        b[offset::DESTINATION..offset::DESTINATION + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let e = Indicium::from_bytes(&b).unwrap_err();
        assert!(
            matches!(
                e,
                IndiciumError::Zip {
                    field: "destination",
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("destination \"4294967295\""),
            "{e}"
        );
    }

    #[test]
    fn decoding_rejects_version_and_algorithm() {
        let good = sample().to_bytes().unwrap();
        let mut b = good;
        b[0] = 2;
        assert_eq!(
            Indicium::from_bytes(&b).unwrap_err(),
            IndiciumError::Version { found: 2 }
        );
        let mut b = good;
        b[1] = 0;
        let e = Indicium::from_bytes(&b).unwrap_err();
        assert_eq!(e, IndiciumError::Algorithm { found: 0 });
        assert!(e.to_string().contains("0x00"));
    }
}
