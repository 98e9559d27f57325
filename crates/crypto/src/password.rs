//! Argon2id password hashing (PHC string format).
use crate::{rng::Rng, CryptoError};

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Argon2Params {
    /// OWASP's recommended minimum: 19 MiB, 2 iterations, 1 lane.
    pub const DEFAULT: Self = Self { m_kib: 19 * 1024, t: 2, p: 1 };
    /// Cheap parameters for tests only (still Argon2id, still salted).
    pub const TEST: Self = Self { m_kib: 64, t: 1, p: 1 };
}

/// Hashes `password` with a random 16-byte salt from `rng`; returns a PHC string.
pub fn hash_password(rng: &mut Rng, password: &[u8], params: Argon2Params) -> Result<String, CryptoError> {
    todo!()
}

/// Checks `password` against a PHC string in constant time. A malformed hash is an error.
pub fn verify_password(phc: &str, password: &[u8]) -> Result<bool, CryptoError> {
    todo!()
}

/// Burns the same time as a real check, for unknown users (timing must not reveal who exists).
pub fn dummy_verify(password: &[u8], params: Argon2Params) {
    todo!()
}
