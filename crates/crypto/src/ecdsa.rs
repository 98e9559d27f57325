//! ECDSA P-256 with SHA-256; signatures are fixed-length r || s (64 bytes);
//! public keys are SEC1 uncompressed points (65 bytes).
use crate::{CryptoError, Faults, SecretBytes};

/// Length of an uncompressed P-256 public key.
pub const PUBLIC_KEY_LEN: usize = 65;
/// Length of an r || s signature.
pub const SIGNATURE_LEN: usize = 64;

/// An ECDSA P-256 private key. Zeroized on drop (inside aws-lc), never printed.
pub struct EcdsaP256KeyPair {
    // filled in by the implementation
}

impl EcdsaP256KeyPair {
    /// Generates a key pair and runs the pairwise consistency test (sign, then
    /// verify). Fails with `SelfTest(EcdsaPairwise)` when the test fails or `faults` names it.
    pub fn generate(faults: &Faults) -> Result<Self, CryptoError> {
        todo!()
    }
    /// Loads a PKCS#8 v1 DER private key (as produced by [`Self::to_pkcs8`]).
    pub fn from_pkcs8(der: &SecretBytes) -> Result<Self, CryptoError> {
        todo!()
    }
    /// The private key as PKCS#8 DER, for sealing into a key token or NVM.
    pub fn to_pkcs8(&self) -> SecretBytes {
        todo!()
    }
    /// The public key, SEC1 uncompressed.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        todo!()
    }
    /// Signs `msg` (SHA-256 inside) and returns r || s.
    pub fn sign(&self, msg: &[u8]) -> Result<[u8; SIGNATURE_LEN], CryptoError> {
        todo!()
    }
}

impl std::fmt::Debug for EcdsaP256KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EcdsaP256KeyPair(<redacted>)")
    }
}

/// Verifies an r || s signature over `msg` with an uncompressed public key.
pub fn verify(public_key: &[u8], msg: &[u8], signature: &[u8]) -> bool {
    todo!()
}

/// The public key as a PEM "PUBLIC KEY" (SubjectPublicKeyInfo) document.
pub fn public_key_to_pem(public_key: &[u8; PUBLIC_KEY_LEN]) -> String {
    todo!()
}

/// Parses a PEM "PUBLIC KEY" document holding a P-256 key into the uncompressed point.
pub fn public_key_from_pem(pem: &str) -> Result<[u8; PUBLIC_KEY_LEN], CryptoError> {
    todo!()
}
