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
    HmacSha256Key::new(key).sign(parts)
}

/// Constant-time check of an HMAC-SHA-256 tag (any tag length other than 32 fails).
pub fn hmac_sha256_verify(key: &SecretKey32, parts: &[&[u8]], tag: &[u8]) -> bool {
    HmacSha256Key::new(key).verify(parts, tag)
}

/// An HMAC-SHA-256 key made ready once (the padded key already hashed
/// into aws-lc's inner and outer SHA-256 states), for a key that MACs
/// many messages: [`hmac_sha256`] and [`hmac_sha256_verify`] make one per
/// call and use it, so both take the same path.
///
/// Holds secret state (which stands in for the key): no `Clone`, no
/// `Serialize`, redacted `Debug`. The state lives in aws-lc-rs's
/// `hmac::Key`, an `HMAC_CTX` held by value, whose `Drop` calls aws-lc's
/// `HMAC_CTX_cleanup`, which `OPENSSL_cleanse`s the whole (flat) context
/// (checked in aws-lc-rs 1.19.0 `src/hmac.rs` and aws-lc-sys 0.47.0
/// `crypto/fipsmodule/hmac/hmac.c`); each MAC works on a copy of the
/// context (`hmac::Context::with_key` clones it) that is cleaned the same
/// way when it is dropped. As with any Rust value, copies a move leaves
/// behind are not cleaned.
pub struct HmacSha256Key(hmac::Key);

impl HmacSha256Key {
    /// Prepares `key` for HMAC-SHA-256.
    pub fn new(key: &SecretKey32) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, key.expose_secret()))
    }

    /// HMAC-SHA-256 over the concatenation of `parts`.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.0);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Constant-time check of a tag over the concatenation of `parts`
    /// (any tag length other than 32 fails).
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let expected = Zeroizing::new(self.sign(parts));
        tag.len() == expected.len() && ct_eq(&expected[..], tag)
    }
}

impl std::fmt::Debug for HmacSha256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacSha256Key(<redacted>)")
    }
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

    /// HMAC-SHA-256 by its definition (RFC 2104) over plain SHA-256, to
    /// check aws-lc's HMAC against.
    fn hmac_by_definition(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for (i, k) in key.iter().enumerate() {
            ipad[i] ^= k;
            opad[i] ^= k;
        }
        let inner = sha256(&[&ipad, msg]);
        sha256(&[&opad, &inner])
    }

    fn test_key() -> SecretKey32 {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        SecretKey32::from_bytes(k)
    }

    #[test]
    fn hmac_key_matches_a_known_answer_and_the_definition() {
        let key = test_key();
        let prepared = HmacSha256Key::new(&key);
        // Python's hmac.new(bytes(range(32)), b"postvault hmac test", sha256).
        let known = "3c8c52f97aff95e6c8a0892e0b31993017abfb3c99e915d984037c8ad63ceb67";
        let tag = prepared.sign(&[b"postvault", b" hmac", b" test"]);
        assert_eq!(hex::encode(tag), known);
        assert_eq!(
            hex::encode(prepared.sign(&[])),
            "d38b42096d80f45f826b44a9d5607de72496a415d3f4a1a8c88e3bb9da8dc1cb"
        );
        assert_eq!(
            tag,
            hmac_by_definition(key.expose_secret(), b"postvault hmac test")
        );
        // The free function takes the same path; the key is reusable.
        assert_eq!(hmac_sha256(&key, &[b"postvault hmac test"]), tag);
        assert_eq!(prepared.sign(&[b"postvault hmac ", b"test"]), tag);
        assert_ne!(prepared.sign(&[b"postvault hmac tesT"]), tag);
        let other = HmacSha256Key::new(&SecretKey32::from_bytes([7; 32]));
        assert_ne!(other.sign(&[b"postvault hmac test"]), tag);
    }

    #[test]
    fn hmac_verify_refuses_a_flipped_or_wrong_length_tag() {
        let key = test_key();
        let prepared = HmacSha256Key::new(&key);
        let parts: &[&[u8]] = &[b"a", b"message"];
        let tag = prepared.sign(parts);
        assert!(prepared.verify(parts, &tag));
        assert!(hmac_sha256_verify(&key, parts, &tag));
        for i in 0..tag.len() {
            let mut bad = tag;
            bad[i] ^= 0x01;
            assert!(!prepared.verify(parts, &bad), "byte {i} flipped");
            assert!(!hmac_sha256_verify(&key, parts, &bad));
        }
        assert!(!prepared.verify(parts, &tag[..31]));
        assert!(!prepared.verify(parts, &[tag.as_slice(), &[0]].concat()));
        assert!(!prepared.verify(parts, &[]));
        assert!(!hmac_sha256_verify(&key, parts, &tag[..16]));
        assert!(!prepared.verify(&[b"another message"], &tag));
        assert!(!HmacSha256Key::new(&SecretKey32::from_bytes([7; 32])).verify(parts, &tag));
    }

    #[test]
    fn hmac_key_debug_is_redacted() {
        let s = format!(
            "{:?}",
            HmacSha256Key::new(&SecretKey32::from_bytes([0xab; 32]))
        );
        assert_eq!(s, "HmacSha256Key(<redacted>)");
    }

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
