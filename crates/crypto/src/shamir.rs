//! Shamir secret sharing over GF(2^8) (vsss-rs). Shares carry their
//! 1-based x coordinate in `index`.
use crate::{rng::Rng, CryptoError, SecretBytes};

/// One share of a secret.
#[derive(Debug, Clone)]
pub struct Share {
    /// The share's x coordinate, 1..=255.
    pub index: u8,
    /// The share's y values, one byte per byte of the secret.
    pub value: SecretBytes,
}

/// Splits `secret` into `count` shares, any `threshold` of which recombine.
/// Requires 2 <= threshold <= count <= 255 and a non-empty secret.
pub fn split(rng: &mut Rng, secret: &[u8], threshold: u8, count: u8) -> Result<Vec<Share>, CryptoError> {
    todo!()
}

/// Recombines shares (at least two, distinct indices, equal lengths).
/// With fewer than the threshold the output is garbage, not an error: callers
/// check the result against a commitment.
pub fn combine(shares: &[Share]) -> Result<SecretBytes, CryptoError> {
    todo!()
}
