//! Random numbers from the operating system (through aws-lc-rs), with a
//! continuous health test: every 32-byte block drawn is compared with the
//! previous one and a repeat fails the generator (FIPS 140 style CRNGT).
//!
//! Implementation notes:
//! - The generator keeps the SHA-256 digest of the previous block, not the
//!   block itself, so the last key handed out does not linger inside the `Rng`.
//!   Equal digests mean equal blocks (collision resistance), so the test is the
//!   same comparison.
//! - The very first block a generator draws is used only to seed the
//!   comparison and is then discarded, as FIPS 140-2 §4.9.2 asks.
//! - A failure is sticky: once the continuous test has failed, every later
//!   draw fails too.
use std::convert::Infallible;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use hpke::rand_core::{TryCryptoRng, TryRng};
use zeroize::{Zeroize, Zeroizing};

use crate::{CryptoError, Faults, SecretKey32, TestName};

/// Size of one block of the continuous test.
const BLOCK: usize = 32;

/// A random generator owned by one module. Not `Clone`: the continuous test
/// needs one history per consumer.
pub struct Rng {
    faults: Faults,
    /// SHA-256 of the previous block drawn (see the module notes).
    last: Option<[u8; 32]>,
    /// Set once the continuous test has failed; the generator stays failed.
    failed: bool,
    /// Test hook: when set, the "OS" returns this block every time.
    #[cfg(test)]
    stuck: Option<[u8; BLOCK]>,
}

impl Rng {
    /// A generator whose health test fails on purpose when `faults` names `rng-continuous`.
    pub fn new(faults: Faults) -> Self {
        Self {
            faults,
            last: None,
            failed: false,
            #[cfg(test)]
            stuck: None,
        }
    }

    /// Fills `buf` with random bytes, running the continuous test on every block.
    ///
    /// On failure `buf` is zeroed, never left partly filled.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        let mut block = Zeroizing::new([0u8; BLOCK]);
        for chunk in buf.chunks_mut(BLOCK) {
            if let Err(e) = self.next_block(&mut block) {
                buf.zeroize();
                return Err(e);
            }
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }

    /// N random bytes.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], CryptoError> {
        let mut out = [0u8; N];
        self.fill(&mut out)?;
        Ok(out)
    }

    /// A fresh random 256-bit key.
    pub fn key32(&mut self) -> Result<SecretKey32, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        self.fill(&mut bytes[..])?;
        Ok(SecretKey32::from_bytes(*bytes))
    }

    /// Draws one block from the OS and runs the continuous test on it.
    fn next_block(&mut self, block: &mut [u8; BLOCK]) -> Result<(), CryptoError> {
        let fail = Err(CryptoError::SelfTest(TestName::RngContinuous));
        if self.failed || self.faults.injects(TestName::RngContinuous) {
            self.failed = true;
            return fail;
        }
        if self.last.is_none() {
            // Seed the comparison with a block that is never output.
            self.draw(block)?;
            self.last = Some(crate::hash::sha256(&[&block[..]]));
        }
        self.draw(block)?;
        let digest = crate::hash::sha256(&[&block[..]]);
        let repeated = self
            .last
            .is_some_and(|prev| crate::hash::ct_eq(&prev, &digest));
        self.last = Some(digest);
        if repeated {
            block.zeroize();
            self.failed = true;
            return fail;
        }
        Ok(())
    }

    fn draw(&self, block: &mut [u8; BLOCK]) -> Result<(), CryptoError> {
        #[cfg(test)]
        if let Some(stuck) = self.stuck {
            *block = stuck;
            return Ok(());
        }
        SystemRandom::new()
            .fill(block)
            .map_err(|_| CryptoError::Rng)
    }
}

impl Drop for Rng {
    fn drop(&mut self) {
        if let Some(last) = self.last.as_mut() {
            last.zeroize();
        }
    }
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rng")
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// Lets libraries that want a `rand_core` 0.10 `CryptoRng` (hpke, vsss-rs)
/// draw from an [`Rng`], so their randomness passes the continuous test too.
///
/// `rand_core`'s `CryptoRng` cannot fail, so a failure is recorded instead:
/// the bytes handed out after a failure are zeros, and the caller MUST call
/// [`RngAdapter::finish`] and discard everything it computed when that
/// returns an error.
pub(crate) struct RngAdapter<'a> {
    rng: &'a mut Rng,
    buf: Zeroizing<[u8; BLOCK]>,
    /// Bytes of `buf` already handed out (`BLOCK` = empty).
    used: usize,
    error: Option<CryptoError>,
}

impl<'a> RngAdapter<'a> {
    /// Wraps `rng`.
    pub(crate) fn new(rng: &'a mut Rng) -> Self {
        Self {
            rng,
            buf: Zeroizing::new([0u8; BLOCK]),
            used: BLOCK,
            error: None,
        }
    }

    /// The first error the wrapped generator reported, if any.
    pub(crate) fn finish(self) -> Result<(), CryptoError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl TryRng for RngAdapter<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        let mut filled = 0;
        while filled < dst.len() {
            if self.error.is_some() {
                dst[filled..].zeroize();
                return Ok(());
            }
            if self.used == BLOCK {
                if let Err(e) = self.rng.fill(&mut self.buf[..]) {
                    self.error = Some(e);
                    continue;
                }
                self.used = 0;
            }
            let n = (dst.len() - filled).min(BLOCK - self.used);
            dst[filled..filled + n].copy_from_slice(&self.buf[self.used..self.used + n]);
            // Bytes handed out are not kept.
            self.buf[self.used..self.used + n].zeroize();
            self.used += n;
            filled += n;
        }
        Ok(())
    }
}

impl TryCryptoRng for RngAdapter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_source_fails_the_continuous_test_and_stays_failed() {
        let mut rng = Rng::new(Faults::none());
        let first = rng.array::<32>().unwrap();
        // The OS now returns the same block over and over.
        rng.stuck = Some([0x5a; BLOCK]);
        let mut out = [0xffu8; 10];
        // First stuck block differs from the last real one: passes.
        assert!(rng.fill(&mut out).is_ok());
        assert_eq!(out, [0x5a; 10]);
        // Second stuck block repeats it: fails, and the output is zeroed.
        assert_eq!(
            rng.fill(&mut out),
            Err(CryptoError::SelfTest(TestName::RngContinuous))
        );
        assert_eq!(out, [0u8; 10]);
        // Sticky, even once the source recovers.
        rng.stuck = None;
        assert_eq!(
            rng.array::<1>(),
            Err(CryptoError::SelfTest(TestName::RngContinuous))
        );
        assert_ne!(first, [0u8; 32]);
    }

    #[test]
    fn first_block_only_seeds_the_test() {
        // A stuck source is caught even on the very first draw, because the
        // first block is only used for comparison.
        let mut rng = Rng::new(Faults::none());
        rng.stuck = Some([1; BLOCK]);
        assert_eq!(
            rng.array::<32>(),
            Err(CryptoError::SelfTest(TestName::RngContinuous))
        );
    }

    #[test]
    fn repeat_inside_one_fill_is_caught() {
        let mut rng = Rng::new(Faults::none());
        rng.last = Some(crate::hash::sha256(&[&[9u8; BLOCK][..]]));
        rng.stuck = Some([8; BLOCK]);
        let mut out = [0u8; 64];
        assert!(rng.fill(&mut out).is_err());
        assert_eq!(out, [0u8; 64]);
    }

    #[test]
    fn adapter_records_failure_and_hands_out_zeros() {
        let mut rng = Rng::new(Faults::of(&[TestName::RngContinuous]));
        let mut a = RngAdapter::new(&mut rng);
        let mut out = [0xffu8; 40];
        a.try_fill_bytes(&mut out).unwrap();
        assert_eq!(out, [0u8; 40]);
        assert_eq!(
            a.finish(),
            Err(CryptoError::SelfTest(TestName::RngContinuous))
        );
    }

    #[test]
    fn adapter_serves_small_requests_from_blocks() {
        let mut rng = Rng::new(Faults::none());
        let mut a = RngAdapter::new(&mut rng);
        let mut seen = Vec::new();
        for _ in 0..100 {
            let mut b = [0u8; 3];
            a.try_fill_bytes(&mut b).unwrap();
            seen.extend_from_slice(&b);
        }
        assert!(a.finish().is_ok());
        assert!(seen.iter().any(|&b| b != 0));
    }
}
