//! The sealed-data layout shared by every provider.
//!
//! ```text
//! magic "PVSL" (4) | version 1 (1) | provider kind (1) | IV (12) | ciphertext | GCM tag (16)
//! ```
//!
//! The 6-byte header is authenticated: the AES-256-GCM associated data is
//! `header || caller's aad`, so changing the version or the provider kind
//! is detected even where the header checks themselves would pass. The
//! header has a fixed length, so the concatenation is unambiguous.

use crate::{ProviderKind, SealError, UnsealReason};

/// First bytes of every sealed blob.
pub const SEAL_MAGIC: [u8; 4] = *b"PVSL";
/// The format version this build writes and reads.
pub const SEAL_FORMAT_VERSION: u8 = 1;
/// Length of magic, version and provider kind.
pub const HEADER_LEN: usize = 6;
/// AES-GCM IV length.
pub const IV_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// The smallest sealed blob: header, IV and tag around an empty plaintext.
pub const MIN_SEALED_LEN: usize = HEADER_LEN + IV_LEN + TAG_LEN;

const KIND_FILE: u8 = 1;
const KIND_PKCS11: u8 = 2;

impl ProviderKind {
    fn to_byte(self) -> u8 {
        match self {
            ProviderKind::File => KIND_FILE,
            ProviderKind::Pkcs11 => KIND_PKCS11,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            KIND_FILE => Some(ProviderKind::File),
            KIND_PKCS11 => Some(ProviderKind::Pkcs11),
            _ => None,
        }
    }
}

/// The header a provider of `kind` writes.
pub(crate) fn header(kind: ProviderKind) -> [u8; HEADER_LEN] {
    let m = SEAL_MAGIC;
    [m[0], m[1], m[2], m[3], SEAL_FORMAT_VERSION, kind.to_byte()]
}

/// The associated data given to AES-GCM: header then the caller's aad.
pub(crate) fn full_aad(header: &[u8; HEADER_LEN], aad: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + aad.len());
    v.extend_from_slice(header);
    v.extend_from_slice(aad);
    v
}

/// Checks the header of `sealed` and returns the provider kind it names.
pub(crate) fn parse_header(sealed: &[u8]) -> Result<ProviderKind, UnsealReason> {
    if sealed.len() < MIN_SEALED_LEN {
        return Err(UnsealReason::TooShort);
    }
    if sealed[..4] != SEAL_MAGIC {
        return Err(UnsealReason::BadMagic);
    }
    if sealed[4] != SEAL_FORMAT_VERSION {
        return Err(UnsealReason::UnsupportedVersion(sealed[4]));
    }
    ProviderKind::from_byte(sealed[5]).ok_or(UnsealReason::UnknownProvider(sealed[5]))
}

/// Checks that `sealed` was written by a provider of `kind` and splits it
/// into (header, IV || ciphertext || tag). `provider` names the unsealing
/// provider in the error.
pub(crate) fn split<'a>(
    sealed: &'a [u8],
    kind: ProviderKind,
    provider: &str,
) -> Result<(&'a [u8; HEADER_LEN], &'a [u8]), SealError> {
    let unseal = |reason| SealError::Unseal {
        provider: provider.to_owned(),
        reason,
    };
    let sealed_by = parse_header(sealed).map_err(unseal)?;
    if sealed_by != kind {
        return Err(unseal(UnsealReason::WrongProvider { sealed_by }));
    }
    let (head, body) = sealed.split_at(HEADER_LEN);
    let head: &[u8; HEADER_LEN] = head
        .try_into()
        .map_err(|_| unseal(UnsealReason::TooShort))?;
    Ok((head, body))
}
