//! SHA-256, HMAC-SHA-256 and HKDF-SHA-256.
use aws_lc_rs::{digest, hkdf, hmac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::SecretKey32;

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// HMAC-SHA-256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &SecretKey32, parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.expose_secret());
    let mut ctx = hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// Constant-time check of an HMAC-SHA-256 tag (any tag length other than 32 fails).
pub fn hmac_sha256_verify(key: &SecretKey32, parts: &[&[u8]], tag: &[u8]) -> bool {
    let expected = Zeroizing::new(hmac_sha256(key, parts));
    tag.len() == expected.len() && ct_eq(&expected[..], tag)
}

/// HKDF-SHA-256 (RFC 5869) extract-then-expand to one 32-byte key; `info` parts are concatenated.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> SecretKey32 {
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf_fill(salt, ikm, info, &mut out[..]);
    SecretKey32::from_bytes(*out)
}

/// HKDF-SHA-256 expanding to `len` bytes (len <= 255*32), for known-answer tests and wider outputs.
///
/// # Panics
///
/// When `len` exceeds 255*32 = 8160 bytes, the RFC 5869 limit.
pub fn hkdf_sha256_bytes(
    salt: &[u8],
    ikm: &[u8],
    info: &[&[u8]],
    len: usize,
) -> crate::SecretBytes {
    assert!(
        len <= HKDF_MAX_LEN,
        "HKDF-SHA-256 output is limited to 255*32 bytes"
    );
    let mut out = vec![0u8; len];
    hkdf_fill(salt, ikm, info, &mut out);
    crate::SecretBytes::from_vec(out)
}

/// Constant-time equality of two byte strings (false when lengths differ).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    // `subtle` returns false for different lengths (the length is not secret).
    a.ct_eq(b).into()
}

/// RFC 5869: L <= 255 * HashLen.
const HKDF_MAX_LEN: usize = 255 * 32;

/// Output length for aws-lc-rs's HKDF.
struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// Extract with `salt`, expand with the concatenated `info` into `out`.
fn hkdf_fill(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    // aws-lc-rs concatenates the info parts itself. The only possible error is
    // a length over 255*HashLen, which callers have already excluded.
    let okm = prk
        .expand(info, OkmLen(out.len()))
        .expect("HKDF output length is within 255*32");
    okm.fill(out).expect("HKDF output length is within 255*32");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn hkdf_32_is_prefix_of_longer_output() {
        let k = hkdf_sha256(b"salt", b"ikm", &[b"a", b"b"]);
        let long = hkdf_sha256_bytes(b"salt", b"ikm", &[b"ab"], 100);
        assert_eq!(&long.expose_secret()[..32], &k.expose_secret()[..]);
    }

    #[test]
    fn hkdf_zero_and_max_lengths() {
        assert!(hkdf_sha256_bytes(b"", b"ikm", &[], 0).is_empty());
        assert_eq!(
            hkdf_sha256_bytes(b"", b"ikm", &[], HKDF_MAX_LEN).len(),
            HKDF_MAX_LEN
        );
    }

    #[test]
    #[should_panic(expected = "255*32")]
    fn hkdf_too_long_panics() {
        let _ = hkdf_sha256_bytes(b"", b"ikm", &[], HKDF_MAX_LEN + 1);
    }
}
