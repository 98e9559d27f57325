//! Random numbers from the operating system (through aws-lc-rs), with a
//! continuous health test: every 32-byte block drawn is compared with the
//! previous one and a repeat fails the generator (FIPS 140 style CRNGT).
use crate::{CryptoError, Faults, SecretKey32, TestName};

/// A random generator owned by one module. Not `Clone`: the continuous test
/// needs one history per consumer.
pub struct Rng {
    faults: Faults,
    last: Option<[u8; 32]>,
}

impl Rng {
    /// A generator whose health test fails on purpose when `faults` names `rng-continuous`.
    pub fn new(faults: Faults) -> Self {
        todo!()
    }
    /// Fills `buf` with random bytes, running the continuous test on every block.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        todo!()
    }
    /// N random bytes.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], CryptoError> {
        todo!()
    }
    /// A fresh random 256-bit key.
    pub fn key32(&mut self) -> Result<SecretKey32, CryptoError> {
        todo!()
    }
}
