//! X25519 ephemeral key agreement (RFC 7748).
use crate::{CryptoError, SecretKey32};

/// An ephemeral X25519 private key; consumed by [`X25519Ephemeral::agree`].
pub struct X25519Ephemeral {
    // filled in by the implementation
}

impl X25519Ephemeral {
    /// Generates a fresh ephemeral key.
    pub fn generate() -> Result<Self, CryptoError> {
        todo!()
    }
    /// Our public key (32 bytes).
    pub fn public_key(&self) -> [u8; 32] {
        todo!()
    }
    /// Computes the shared secret with the peer's public key; rejects the all-zero output.
    pub fn agree(self, peer_public: &[u8]) -> Result<SecretKey32, CryptoError> {
        todo!()
    }
}
