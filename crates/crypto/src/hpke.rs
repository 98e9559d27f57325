//! HPKE (RFC 9180) base mode, single shot: DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, AES-256-GCM. Used for MKS shares sent to a transport key and
//! for customer secrets sent to the registration key.
use crate::{rng::Rng, CryptoError, Faults, SecretBytes, SecretKey32};

/// An HPKE recipient key pair (X25519).
pub struct HpkeKeyPair {
    // filled in by the implementation
}

impl HpkeKeyPair {
    /// Generates a key pair from `rng` and runs the pairwise consistency test
    /// (seal to the public key, open with the private key). Fails with
    /// `SelfTest(HpkePairwise)` when it fails or `faults` names it.
    pub fn generate(rng: &mut Rng, faults: &Faults) -> Result<Self, CryptoError> {
        todo!()
    }
    /// Rebuilds a key pair from its 32-byte private key.
    pub fn from_secret(secret: &SecretKey32) -> Result<Self, CryptoError> {
        todo!()
    }
    /// The 32-byte private key, for sealing into NVM or a key token.
    pub fn secret(&self) -> SecretKey32 {
        todo!()
    }
    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        todo!()
    }
    /// Opens a message sealed to this key. Fails with `Decrypt` on any mismatch.
    pub fn open(&self, enc: &[u8], info: &[u8], aad: &[u8], ciphertext: &[u8]) -> Result<SecretBytes, CryptoError> {
        todo!()
    }
}

impl std::fmt::Debug for HpkeKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HpkeKeyPair(<redacted>)")
    }
}

/// Seals `plaintext` to `recipient_public`; returns (encapsulated key, ciphertext).
pub fn seal(rng: &mut Rng, recipient_public: &[u8], info: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    todo!()
}
