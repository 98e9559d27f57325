//! postvault-crypto: the one crate that touches raw key material.
//!
//! Everything cryptographic in postvault goes through this crate: random
//! numbers (with a continuous health test), SHA-256, HMAC-SHA-256,
//! HKDF-SHA-256, AES-256-GCM, ECDSA P-256, X25519, HPKE (RFC 9180,
//! DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM), Argon2id and
//! Shamir secret sharing over GF(2^8). The primitives come from maintained
//! libraries (aws-lc-rs, hpke, argon2, vsss-rs); this crate only wraps them in
//! types that zeroize on drop and never print their contents, and runs the
//! power-up known-answer tests and pairwise consistency tests.
//!
//! Secret types have no `Serialize` and a `Debug` that prints nothing secret;
//! reading the bytes of one is always an explicit `expose_secret()` call.
#![forbid(unsafe_code)]

pub mod aead;
pub mod ecdsa;
pub mod hash;
pub mod hpke;
pub mod keyfile;
pub mod password;
pub mod rng;
pub mod secret;
pub mod selftest;
pub mod shamir;
pub mod x25519;

pub use secret::{SecretBytes, SecretKey32};
pub use selftest::{Faults, TestName};

/// Everything that can go wrong in a cryptographic operation.
///
/// Messages never contain secret material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// The operating system's random generator failed.
    #[error("the random generator failed")]
    Rng,
    /// A health or self-test failed; the name says which one.
    #[error("self-test {0} failed")]
    SelfTest(TestName),
    /// Key bytes had the wrong length or format.
    #[error("malformed key: {0}")]
    BadKey(&'static str),
    /// Authenticated decryption failed: wrong key, wrong associated data, or tampered data.
    #[error("authenticated decryption failed (wrong key or tampered data)")]
    Decrypt,
    /// Signing failed inside the library.
    #[error("signing failed")]
    Sign,
    /// HPKE setup or encryption failed.
    #[error("HPKE operation failed")]
    Hpke,
    /// Password hashing failed or a stored hash is malformed.
    #[error("password hashing failed: {0}")]
    Password(&'static str),
    /// Secret sharing parameters or shares were invalid.
    #[error("secret sharing failed: {0}")]
    Shamir(&'static str),
    /// A PEM or DER encoding could not be parsed.
    #[error("malformed encoding: {0}")]
    Encoding(&'static str),
    /// A passphrase-protected key file could not be opened: wrong
    /// passphrase, altered or truncated file, or a file for another purpose.
    #[error("key file: {0}")]
    KeyFile(String),
}
