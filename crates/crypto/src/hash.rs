//! SHA-256, HMAC-SHA-256 and HKDF-SHA-256.
use crate::SecretKey32;

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    todo!()
}

/// HMAC-SHA-256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &SecretKey32, parts: &[&[u8]]) -> [u8; 32] {
    todo!()
}

/// Constant-time check of an HMAC-SHA-256 tag (any tag length other than 32 fails).
pub fn hmac_sha256_verify(key: &SecretKey32, parts: &[&[u8]], tag: &[u8]) -> bool {
    todo!()
}

/// HKDF-SHA-256 (RFC 5869) extract-then-expand to one 32-byte key; `info` parts are concatenated.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> SecretKey32 {
    todo!()
}

/// HKDF-SHA-256 expanding to `len` bytes (len <= 255*32), for known-answer tests and wider outputs.
pub fn hkdf_sha256_bytes(salt: &[u8], ikm: &[u8], info: &[&[u8]], len: usize) -> crate::SecretBytes {
    todo!()
}

/// Constant-time equality of two byte strings (false when lengths differ).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    todo!()
}
