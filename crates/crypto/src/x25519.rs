//! X25519 ephemeral key agreement (RFC 7748).
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, PrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::rand::SystemRandom;
use subtle::ConstantTimeEq;

use crate::{CryptoError, SecretKey32};

/// An ephemeral X25519 private key; consumed by [`X25519Ephemeral::agree`].
pub struct X25519Ephemeral {
    key: EphemeralPrivateKey,
    public: [u8; 32],
}

impl X25519Ephemeral {
    /// Generates a fresh ephemeral key.
    pub fn generate() -> Result<Self, CryptoError> {
        let key = EphemeralPrivateKey::generate(&X25519, &SystemRandom::new())
            .map_err(|_| CryptoError::Rng)?;
        let public = key
            .compute_public_key()
            .map_err(|_| CryptoError::BadKey("cannot compute X25519 public key"))?
            .as_ref()
            .try_into()
            .map_err(|_| CryptoError::BadKey("unexpected X25519 public key length"))?;
        Ok(Self { key, public })
    }

    /// Our public key (32 bytes).
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// Computes the shared secret with the peer's public key; rejects the all-zero output.
    pub fn agree(self, peer_public: &[u8]) -> Result<SecretKey32, CryptoError> {
        check_peer(peer_public)?;
        agreement::agree_ephemeral(
            self.key,
            UnparsedPublicKey::new(&X25519, peer_public),
            PEER_REJECTED,
            shared_key,
        )
    }
}

impl std::fmt::Debug for X25519Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("X25519Ephemeral(<redacted>)")
    }
}

const PEER_REJECTED: CryptoError = CryptoError::BadKey("X25519 peer public key rejected");

fn check_peer(peer_public: &[u8]) -> Result<(), CryptoError> {
    if peer_public.len() != 32 {
        return Err(CryptoError::BadKey("X25519 public key must be 32 bytes"));
    }
    Ok(())
}

/// The KDF step of both agreement paths: refuse the all-zero output (a
/// low-order peer point), otherwise wrap the raw shared secret.
fn shared_key(raw: &[u8]) -> Result<SecretKey32, CryptoError> {
    if bool::from(raw.ct_eq(&[0u8; 32])) {
        return Err(CryptoError::BadKey(
            "X25519 shared secret is all zero (low-order peer key)",
        ));
    }
    SecretKey32::from_slice(raw)
}

/// Public key of a fixed X25519 scalar (for the known-answer test only).
pub(crate) fn static_public_key(scalar: &[u8; 32]) -> Result<[u8; 32], CryptoError> {
    let key = PrivateKey::from_private_key(&X25519, scalar)
        .map_err(|_| CryptoError::BadKey("X25519 scalar rejected"))?;
    key.compute_public_key()
        .map_err(|_| CryptoError::BadKey("cannot compute X25519 public key"))?
        .as_ref()
        .try_into()
        .map_err(|_| CryptoError::BadKey("unexpected X25519 public key length"))
}

/// Agreement with a fixed X25519 scalar (for the known-answer test only);
/// same checks as [`X25519Ephemeral::agree`].
pub(crate) fn static_agree(
    scalar: &[u8; 32],
    peer_public: &[u8],
) -> Result<SecretKey32, CryptoError> {
    check_peer(peer_public)?;
    let key = PrivateKey::from_private_key(&X25519, scalar)
        .map_err(|_| CryptoError::BadKey("X25519 scalar rejected"))?;
    agreement::agree(
        &key,
        UnparsedPublicKey::new(&X25519, peer_public),
        PEER_REJECTED,
        shared_key,
    )
}
