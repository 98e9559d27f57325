//! Shamir secret sharing over GF(2^8) (vsss-rs). Shares carry their
//! 1-based x coordinate in `index`.
//!
//! The field is GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1; the
//! polynomial coefficients come from our [`Rng`]. vsss-rs encodes a share as
//! `identifier || values`; here that is split into `index` and `value`.
use vsss_rs::Gf256;
use zeroize::{Zeroize, Zeroizing};

use crate::rng::RngAdapter;
use crate::{CryptoError, SecretBytes, rng::Rng};

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
pub fn split(
    rng: &mut Rng,
    secret: &[u8],
    threshold: u8,
    count: u8,
) -> Result<Vec<Share>, CryptoError> {
    if threshold < 2 {
        return Err(CryptoError::Shamir("threshold must be at least 2"));
    }
    if threshold > count {
        return Err(CryptoError::Shamir("threshold exceeds share count"));
    }
    if secret.is_empty() {
        return Err(CryptoError::Shamir("secret is empty"));
    }
    let mut adapter = RngAdapter::new(rng);
    let raw = Gf256::split_array(
        usize::from(threshold),
        usize::from(count),
        secret,
        &mut adapter,
    );
    let mut raw = Zeroizing::new(raw.map_err(|_| CryptoError::Shamir("split failed"))?);
    // If the generator failed, the coefficients were not random: discard the shares.
    adapter.finish()?;
    let mut shares = Vec::with_capacity(raw.len());
    for mut v in raw.drain(..) {
        if v.len() != secret.len() + 1 || v[0] == 0 {
            v.zeroize();
            return Err(CryptoError::Shamir("unexpected share encoding"));
        }
        let index = v.remove(0);
        shares.push(Share {
            index,
            value: SecretBytes::from_vec(v),
        });
    }
    Ok(shares)
}

/// Recombines shares (at least two, distinct indices, equal lengths).
/// With fewer than the threshold the output is garbage, not an error: callers
/// check the result against a commitment.
pub fn combine(shares: &[Share]) -> Result<SecretBytes, CryptoError> {
    if shares.len() < 2 {
        return Err(CryptoError::Shamir("need at least two shares"));
    }
    let len = shares[0].value.len();
    if len == 0 {
        return Err(CryptoError::Shamir("empty share"));
    }
    if shares.iter().any(|s| s.value.len() != len) {
        return Err(CryptoError::Shamir("shares have different lengths"));
    }
    for (i, s) in shares.iter().enumerate() {
        if s.index == 0 {
            return Err(CryptoError::Shamir("share index 0 is not allowed"));
        }
        if shares[..i].iter().any(|t| t.index == s.index) {
            return Err(CryptoError::Shamir("duplicate share index"));
        }
    }
    let raw: Zeroizing<Vec<Vec<u8>>> = Zeroizing::new(
        shares
            .iter()
            .map(|s| {
                let mut v = Vec::with_capacity(len + 1);
                v.push(s.index);
                v.extend_from_slice(s.value.expose_secret());
                v
            })
            .collect(),
    );
    let secret = Gf256::combine_array(&*raw).map_err(|_| CryptoError::Shamir("combine failed"))?;
    Ok(SecretBytes::from_vec(secret))
}

/// Known-answer test: fixed 3-of-5 shares of "postvault" (computed by hand for
/// f(x) = s + a1*x + a2*x^2 over GF(2^8) with the AES polynomial) recombine
/// from several 3-subsets, and a fresh 2-of-3 split recombines from every
/// 2-subset.
pub(crate) fn known_answer_test() -> Result<(), String> {
    const SECRET: &[u8] = b"postvault";
    const SHARES: [(u8, &str); 5] = [
        (1, "c417830c2cf7948dec"),
        (2, "f058340ce040f5d859"),
        (3, "4420c474bad61439c1"),
        (4, "8a303b92c97b11b036"),
        (5, "3e48cbea93edf051ae"),
    ];
    let fixed: Vec<Share> = SHARES
        .iter()
        .map(|&(index, h)| {
            Ok(Share {
                index,
                value: SecretBytes::from_vec(hex::decode(h).map_err(|e| e.to_string())?),
            })
        })
        .collect::<Result<_, String>>()?;
    for subset in [[0usize, 1, 2], [2, 3, 4], [0, 2, 4], [4, 1, 3]] {
        let picked: Vec<Share> = subset.iter().map(|&i| fixed[i].clone()).collect();
        let got = combine(&picked).map_err(|e| e.to_string())?;
        if got.expose_secret() != SECRET {
            return Err(format!("fixed shares {subset:?} did not recombine"));
        }
    }
    let two = combine(&fixed[..2]).map_err(|e| e.to_string())?;
    if two.expose_secret() == SECRET {
        return Err("two of the 3-of-5 shares recombined the secret".into());
    }

    let mut rng = Rng::new(crate::Faults::none());
    let shares = split(&mut rng, SECRET, 2, 3).map_err(|e| e.to_string())?;
    let indices: Vec<u8> = shares.iter().map(|s| s.index).collect();
    if indices != [1, 2, 3] {
        return Err(format!("unexpected share indices {indices:?}"));
    }
    for (a, b) in [(0, 1), (0, 2), (1, 2), (2, 0)] {
        let got = combine(&[shares[a].clone(), shares[b].clone()]).map_err(|e| e.to_string())?;
        if got.expose_secret() != SECRET {
            return Err(format!("2-of-3 shares {a},{b} did not recombine"));
        }
    }
    Ok(())
}
