//! ECDSA P-256 with SHA-256; signatures are fixed-length r || s (64 bytes);
//! public keys are SEC1 uncompressed points (65 bytes).
//!
//! PEM public keys are SubjectPublicKeyInfo (RFC 5480) for id-ecPublicKey with
//! the named curve prime256v1 and an uncompressed point. For that one shape
//! the DER is a fixed 26-byte prefix followed by the 65-byte point, so it is
//! built and parsed by hand rather than with an ASN.1 library.
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair,
    KeyPair, ParsedPublicKey, UnparsedPublicKey,
};

use crate::{CryptoError, Faults, SecretBytes, TestName};

/// Length of an uncompressed P-256 public key.
pub const PUBLIC_KEY_LEN: usize = 65;
/// Length of an r || s signature.
pub const SIGNATURE_LEN: usize = 64;

/// DER prefix of a P-256 SubjectPublicKeyInfo with an uncompressed point:
/// SEQUENCE(89) { SEQUENCE(19) { OID 1.2.840.10045.2.1, OID 1.2.840.10045.3.1.7 }, BIT STRING(66) { 0 unused bits, ... } }.
const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PEM_END: &str = "-----END PUBLIC KEY-----";

/// The fixed message signed by the pairwise consistency test.
const PAIRWISE_MSG: &[u8] = b"postvault ECDSA P-256 pairwise consistency test";

/// An ECDSA P-256 private key. Zeroized on drop (inside aws-lc), never printed.
pub struct EcdsaP256KeyPair {
    key: EcdsaKeyPair,
    /// The same key as PKCS#8 v1 DER (zeroized on drop).
    pkcs8: SecretBytes,
}

impl EcdsaP256KeyPair {
    /// Generates a key pair and runs the pairwise consistency test (sign, then
    /// verify). Fails with `SelfTest(EcdsaPairwise)` when the test fails or `faults` names it.
    pub fn generate(faults: &Faults) -> Result<Self, CryptoError> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| CryptoError::Rng)?;
        let kp = Self::from_key(key)?;
        if !kp.pairwise_ok() || faults.injects(TestName::EcdsaPairwise) {
            return Err(CryptoError::SelfTest(TestName::EcdsaPairwise));
        }
        Ok(kp)
    }

    /// Loads a PKCS#8 v1 DER private key (as produced by [`Self::to_pkcs8`]).
    pub fn from_pkcs8(der: &SecretBytes) -> Result<Self, CryptoError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.expose_secret())
            .map_err(|_| CryptoError::BadKey("not a PKCS#8 P-256 private key"))?;
        Self::from_key(key)
    }

    /// The private key as PKCS#8 DER, for sealing into a key token or NVM.
    pub fn to_pkcs8(&self) -> SecretBytes {
        self.pkcs8.clone()
    }

    /// The public key, SEC1 uncompressed.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        // Checked in `from_key`: aws-lc-rs gives the uncompressed point.
        out.copy_from_slice(self.key.public_key().as_ref());
        out
    }

    /// Signs `msg` (SHA-256 inside) and returns r || s.
    pub fn sign(&self, msg: &[u8]) -> Result<[u8; SIGNATURE_LEN], CryptoError> {
        let sig = self
            .key
            .sign(&SystemRandom::new(), msg)
            .map_err(|_| CryptoError::Sign)?;
        sig.as_ref().try_into().map_err(|_| CryptoError::Sign)
    }

    /// Signs `msg` (SHA-256 inside) and returns the DER `Ecdsa-Sig-Value`
    /// (SEQUENCE of the two INTEGERs r and s), the form X.509 signatures
    /// take.
    pub fn sign_der(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let sig = self.sign(msg)?;
        Ok(fixed_to_der(&sig))
    }

    fn from_key(key: EcdsaKeyPair) -> Result<Self, CryptoError> {
        let public = key.public_key().as_ref();
        if public.len() != PUBLIC_KEY_LEN || public[0] != 0x04 {
            return Err(CryptoError::BadKey("unexpected P-256 public key encoding"));
        }
        let doc = key
            .to_pkcs8v1()
            .map_err(|_| CryptoError::BadKey("cannot encode PKCS#8"))?;
        // `doc` zeroizes itself on drop; our copy lives in a SecretBytes.
        let pkcs8 = SecretBytes::from_vec(doc.as_ref().to_vec());
        Ok(Self { key, pkcs8 })
    }

    /// Sign a fixed message and verify it with the public key.
    fn pairwise_ok(&self) -> bool {
        match self.sign(PAIRWISE_MSG) {
            Ok(sig) => verify(&self.public_key(), PAIRWISE_MSG, &sig),
            Err(_) => false,
        }
    }
}

impl std::fmt::Debug for EcdsaP256KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EcdsaP256KeyPair(<redacted>)")
    }
}

/// Verifies an r || s signature over `msg` with an uncompressed public key.
pub fn verify(public_key: &[u8], msg: &[u8], signature: &[u8]) -> bool {
    if public_key.len() != PUBLIC_KEY_LEN
        || public_key[0] != 0x04
        || signature.len() != SIGNATURE_LEN
    {
        return false;
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key)
        .verify(msg, signature)
        .is_ok()
}

/// Verifies an ASN.1 DER (`Ecdsa-Sig-Value`) ECDSA P-256 / SHA-256
/// signature over `msg` with an uncompressed public key: the form X.509
/// certificates carry (ecdsa-with-SHA256). Any other curve, hash or
/// encoding is refused.
pub fn verify_der(public_key: &[u8], msg: &[u8], der_signature: &[u8]) -> bool {
    if public_key.len() != PUBLIC_KEY_LEN || public_key[0] != 0x04 {
        return false;
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key)
        .verify(msg, der_signature)
        .is_ok()
}

/// r || s (32 bytes each) as a DER SEQUENCE of two positive INTEGERs.
fn fixed_to_der(sig: &[u8; SIGNATURE_LEN]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, x: &[u8]) {
        let start = x.iter().position(|&b| b != 0).unwrap_or(x.len() - 1);
        let x = &x[start..];
        let pad = x[0] & 0x80 != 0;
        out.push(0x02);
        out.push((x.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(x);
    }
    let mut body = Vec::with_capacity(2 * 35);
    integer(&mut body, &sig[..32]);
    integer(&mut body, &sig[32..]);
    let mut out = Vec::with_capacity(body.len() + 2);
    out.push(0x30);
    out.push(body.len() as u8);
    out.extend_from_slice(&body);
    out
}

/// The public key as a PEM "PUBLIC KEY" (SubjectPublicKeyInfo) document.
pub fn public_key_to_pem(public_key: &[u8; PUBLIC_KEY_LEN]) -> String {
    let mut der = Vec::with_capacity(SPKI_P256_PREFIX.len() + PUBLIC_KEY_LEN);
    der.extend_from_slice(&SPKI_P256_PREFIX);
    der.extend_from_slice(public_key);
    let b64 = base64::encode(&der);
    let mut pem = String::with_capacity(b64.len() + 80);
    pem.push_str(PEM_BEGIN);
    pem.push('\n');
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(PEM_END);
    pem.push('\n');
    pem
}

/// Parses a PEM "PUBLIC KEY" document holding a P-256 key into the uncompressed point.
///
/// Only the SubjectPublicKeyInfo for id-ecPublicKey / prime256v1 with an
/// uncompressed point is accepted (what [`public_key_to_pem`] and OpenSSL
/// write); the point must be on the curve. Text around the PEM block is ignored.
pub fn public_key_from_pem(pem: &str) -> Result<[u8; PUBLIC_KEY_LEN], CryptoError> {
    let start = pem
        .find(PEM_BEGIN)
        .ok_or(CryptoError::Encoding("no BEGIN PUBLIC KEY line"))?
        + PEM_BEGIN.len();
    let len = pem[start..]
        .find(PEM_END)
        .ok_or(CryptoError::Encoding("no END PUBLIC KEY line"))?;
    let body: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = base64::decode(&body).ok_or(CryptoError::Encoding("bad base64 in PEM"))?;
    if der.len() != SPKI_P256_PREFIX.len() + PUBLIC_KEY_LEN
        || der[..SPKI_P256_PREFIX.len()] != SPKI_P256_PREFIX
    {
        return Err(CryptoError::Encoding(
            "not a P-256 uncompressed SubjectPublicKeyInfo",
        ));
    }
    check_public_key(&der[SPKI_P256_PREFIX.len()..])
}

/// Checks that `point` is an uncompressed P-256 public key (65 bytes,
/// `0x04` first) whose point lies on the curve, and returns it.
pub fn check_public_key(point: &[u8]) -> Result<[u8; PUBLIC_KEY_LEN], CryptoError> {
    let point: [u8; PUBLIC_KEY_LEN] = point
        .try_into()
        .map_err(|_| CryptoError::BadKey("a P-256 public key is 65 bytes (uncompressed)"))?;
    if point[0] != 0x04 {
        return Err(CryptoError::BadKey("P-256 point is not uncompressed"));
    }
    ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .map_err(|_| CryptoError::BadKey("point is not on P-256"))?;
    Ok(point)
}

/// Standard base64 (RFC 4648 §4) with padding; only what PEM needs.
mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(data: &[u8]) -> String {
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn value(c: u8) -> Option<u32> {
        ALPHABET.iter().position(|&a| a == c).map(|v| v as u32)
    }

    /// Strict decoding: length a multiple of 4, padding only at the end, no
    /// stray bits in the last symbol.
    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(4) {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        let groups = bytes.len() / 4;
        for (g, quad) in bytes.chunks(4).enumerate() {
            let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
            if pad > 2 || (pad > 0 && g + 1 != groups) {
                return None;
            }
            let mut n = 0u32;
            for &c in &quad[..4 - pad] {
                n = (n << 6) | value(c)?;
            }
            n <<= 6 * pad as u32;
            let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            // Non-canonical encodings leave set bits in the dropped positions.
            if decoded[3 - pad..].iter().any(|&b| b != 0) {
                return None;
            }
            out.extend_from_slice(&decoded[..3 - pad]);
        }
        Some(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rfc4648_vectors() {
            let cases: [(&str, &str); 7] = [
                ("", ""),
                ("f", "Zg=="),
                ("fo", "Zm8="),
                ("foo", "Zm9v"),
                ("foob", "Zm9vYg=="),
                ("fooba", "Zm9vYmE="),
                ("foobar", "Zm9vYmFy"),
            ];
            for (plain, enc) in cases {
                assert_eq!(encode(plain.as_bytes()), enc);
                assert_eq!(decode(enc).unwrap(), plain.as_bytes());
            }
        }

        #[test]
        fn rejects_malformed() {
            for bad in [
                "Zg=", "Zg===", "Z===", "Zg==Zg==", "Zh==", "Zm9=", "Zm9v!A==", "====",
            ] {
                assert!(decode(bad).is_none(), "{bad}");
            }
        }

        #[test]
        fn all_byte_values_round_trip() {
            let data: Vec<u8> = (0..=255u8).collect();
            for n in 0..data.len() {
                assert_eq!(decode(&encode(&data[..n])).unwrap(), &data[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_der_accepts_the_asn1_form_of_a_signature_and_nothing_else() {
        let kp = EcdsaP256KeyPair::generate(&Faults::default()).unwrap();
        let msg = b"to be certified";
        let fixed = kp.sign(msg).unwrap();
        let der = fixed_to_der(&fixed);
        let public = kp.public_key();
        assert!(verify_der(&public, msg, &der));
        assert!(!verify_der(&public, b"to be certifiee", &der));
        // The fixed r || s form is not DER, and DER is not the fixed form.
        assert!(!verify_der(&public, msg, &fixed));
        assert!(!verify(&public, msg, &der));
        // Another key, or a malformed key, does not verify.
        let other = EcdsaP256KeyPair::generate(&Faults::default()).unwrap();
        assert!(!verify_der(&other.public_key(), msg, &der));
        assert!(!verify_der(&public[1..], msg, &der));
        let mut bad = der.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(!verify_der(&public, msg, &bad));
    }

    #[test]
    fn sign_der_makes_signatures_the_asn1_verifier_accepts() {
        let kp = EcdsaP256KeyPair::generate(&Faults::default()).unwrap();
        for i in 0..64u8 {
            let msg = [i; 7];
            let der = kp.sign_der(&msg).unwrap();
            assert!(
                verify_der(&kp.public_key(), &msg, &der),
                "{}",
                hex::encode(&der)
            );
        }
    }

    #[test]
    fn fixed_to_der_strips_leading_zeros_and_pads_high_bits() {
        let mut sig = [0u8; SIGNATURE_LEN];
        sig[31] = 1; // r = 1
        sig[32] = 0x80; // s has its high bit set: needs a 0x00 pad
        let der = fixed_to_der(&sig);
        let mut want = vec![0x30, 3 + 35, 0x02, 1, 1, 0x02, 33, 0];
        want.extend_from_slice(&sig[32..]);
        assert_eq!(der, want);
        // r = 0 still encodes as one zero byte.
        let der = fixed_to_der(&[0; SIGNATURE_LEN]);
        assert_eq!(der, vec![0x30, 6, 0x02, 1, 0, 0x02, 1, 0]);
    }
}
