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
    /// The whole blocks of `buf` come from one request to the OS (one
    /// reseed check and prediction-resistance draw for all of them, rather
    /// than one per block); a tail shorter than a block is the start of one
    /// more block. On failure `buf` is zeroed, never left partly filled.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        let whole = buf.len() / BLOCK * BLOCK;
        let (blocks, tail) = buf.split_at_mut(whole);
        let mut result = Ok(());
        if !blocks.is_empty() {
            result = self.start().and_then(|()| self.draw(blocks));
            for block in blocks.chunks(BLOCK) {
                if result.is_err() {
                    break;
                }
                result = self.test(block);
            }
        }
        if result.is_ok() && !tail.is_empty() {
            let mut block = Zeroizing::new([0u8; BLOCK]);
            result = self.next_block(&mut block);
            if result.is_ok() {
                tail.copy_from_slice(&block[..tail.len()]);
            }
        }
        if result.is_err() {
            buf.zeroize();
        }
        result
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
        self.start()?;
        self.draw(&mut block[..])?;
        let tested = self.test(&block[..]);
        if tested.is_err() {
            block.zeroize();
        }
        tested
    }

    /// Refuses when the generator has failed (or a failure is injected);
    /// on a generator's first use, seeds the comparison with a block that is
    /// never output.
    fn start(&mut self) -> Result<(), CryptoError> {
        if self.failed || self.faults.injects(TestName::RngContinuous) {
            self.failed = true;
            return Err(CryptoError::SelfTest(TestName::RngContinuous));
        }
        if self.last.is_none() {
            let mut seed = Zeroizing::new([0u8; BLOCK]);
            self.draw(&mut seed[..])?;
            self.last = Some(crate::hash::sha256(&[&seed[..]]));
        }
        Ok(())
    }

    /// The continuous test on one block just drawn: it must differ from
    /// the block before it. A repeat fails the generator for good.
    fn test(&mut self, block: &[u8]) -> Result<(), CryptoError> {
        let digest = crate::hash::sha256(&[block]);
        let repeated = self
            .last
            .is_some_and(|prev| crate::hash::ct_eq(&prev, &digest));
        self.last = Some(digest);
        if repeated {
            self.failed = true;
            return Err(CryptoError::SelfTest(TestName::RngContinuous));
        }
        Ok(())
    }

    /// Fills `out` (whole blocks) from the OS.
    fn draw(&self, out: &mut [u8]) -> Result<(), CryptoError> {
        #[cfg(test)]
        if let Some(stuck) = self.stuck {
            for block in out.chunks_mut(BLOCK) {
                block.copy_from_slice(&stuck[..block.len()]);
            }
            return Ok(());
        }
        SystemRandom::new().fill(out).map_err(|_| CryptoError::Rng)
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
    fn one_fill_of_many_blocks_tests_each_and_the_tail() {
        let mut rng = Rng::new(Faults::none());
        // Whole blocks from one OS request, then a 4-byte tail: all distinct.
        let mut out = vec![0u8; 128 * BLOCK + 4];
        rng.fill(&mut out).unwrap();
        let mut blocks: Vec<&[u8]> = out[..128 * BLOCK].chunks(BLOCK).collect();
        blocks.sort();
        blocks.dedup();
        assert_eq!(blocks.len(), 128);
        assert_ne!(out[128 * BLOCK..], [0u8; 4]);
        // A stuck source repeats a block within one fill: the whole
        // buffer, tail included, is zeroed and the generator stays failed.
        rng.stuck = Some([3; BLOCK]);
        let mut out = vec![0xeeu8; 3 * BLOCK + 4];
        assert_eq!(
            rng.fill(&mut out),
            Err(CryptoError::SelfTest(TestName::RngContinuous))
        );
        assert!(out.iter().all(|&b| b == 0));
        rng.stuck = None;
        assert!(rng.array::<4>().is_err());
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
