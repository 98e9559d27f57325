//! Argon2id password hashing (PHC string format).
use argon2::password_hash::{self, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::{CryptoError, SecretKey32, rng::Rng};

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
    pub const DEFAULT: Self = Self {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };
    /// Cheap parameters for tests only (still Argon2id, still salted).
    pub const TEST: Self = Self {
        m_kib: 64,
        t: 1,
        p: 1,
    };
}

/// Salt length in bytes.
const SALT_LEN: usize = 16;
/// Upper bounds on the costs [`verify_password`] accepts from a stored hash,
/// so a corrupted or hostile PHC string cannot make it allocate without limit
/// (2 GiB) or spin for hours. Far above anything this crate writes.
const MAX_M_KIB: u32 = 2 * 1024 * 1024;
const MAX_T: u32 = 64;
const MAX_P: u32 = 64;
/// The salt [`dummy_verify`] uses; any fixed value does.
const DUMMY_SALT: [u8; SALT_LEN] = *b"postvault-dummy!";

/// Hashes `password` with a random 16-byte salt from `rng`; returns a PHC string.
pub fn hash_password(
    rng: &mut Rng,
    password: &[u8],
    params: Argon2Params,
) -> Result<String, CryptoError> {
    let salt: [u8; SALT_LEN] = rng.array()?;
    hash_with_salt(password, &salt, params)
}

/// Checks `password` against a PHC string in constant time. A malformed hash is an error.
///
/// Only Argon2id hashes are accepted; the cost parameters come from the string.
pub fn verify_password(phc: &str, password: &[u8]) -> Result<bool, CryptoError> {
    let hash = PasswordHash::new(phc).map_err(|_| CryptoError::Password("malformed PHC string"))?;
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return Err(CryptoError::Password("not an Argon2id hash"));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(CryptoError::Password("PHC string lacks salt or hash"));
    }
    if hash.version.is_some_and(|v| v != u32::from(Version::V0x13)) {
        return Err(CryptoError::Password("unsupported Argon2 version"));
    }
    let params = Params::try_from(&hash)
        .map_err(|_| CryptoError::Password("malformed Argon2id parameters"))?;
    if params.m_cost() > MAX_M_KIB || params.t_cost() > MAX_T || params.p_cost() > MAX_P {
        return Err(CryptoError::Password(
            "Argon2id cost parameters out of range",
        ));
    }
    // The output comparison inside is constant time (password_hash::Output).
    match Argon2::default().verify_password(password, &hash) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::Password) => Ok(false),
        Err(_) => Err(CryptoError::Password("malformed Argon2id parameters")),
    }
}

/// Burns the same time as a real check, for unknown users (timing must not reveal who exists).
pub fn dummy_verify(password: &[u8], params: Argon2Params) {
    // Errors (only possible for invalid params) are ignored: there is nothing to report.
    let _ = hash_with_salt(password, &DUMMY_SALT, params);
}

/// Derives a 256-bit key from `password` and `salt` with Argon2id (the raw
/// hash, no PHC string): the key of a passphrase-protected file
/// ([`crate::keyfile`]). Refuses costs above the limits [`verify_password`]
/// applies, so a hostile file cannot make it allocate without limit.
pub(crate) fn derive_key(
    password: &[u8],
    salt: &[u8],
    params: Argon2Params,
) -> Result<SecretKey32, CryptoError> {
    if params.m_kib > MAX_M_KIB || params.t > MAX_T || params.p > MAX_P {
        return Err(CryptoError::Password(
            "Argon2id cost parameters out of range",
        ));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    argon2id(params)?
        .hash_password_into(password, salt, &mut key[..])
        .map_err(|_| CryptoError::Password("key derivation failed"))?;
    Ok(SecretKey32::from_bytes(*key))
}

fn argon2id(params: Argon2Params) -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(params.m_kib, params.t, params.p, None)
        .map_err(|_| CryptoError::Password("invalid Argon2id parameters"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_with_salt(
    password: &[u8],
    salt: &[u8; SALT_LEN],
    params: Argon2Params,
) -> Result<String, CryptoError> {
    let salt =
        SaltString::encode_b64(salt).map_err(|_| CryptoError::Password("salt encoding failed"))?;
    let hash = argon2id(params)?
        .hash_password(password, &salt)
        .map_err(|_| CryptoError::Password("hashing failed"))?;
    Ok(hash.to_string())
}

/// RFC 9106 §5.3 Argon2id test vector (with secret and associated data).
pub(crate) fn known_answer_test() -> Result<(), String> {
    let expected = hex::decode("0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659")
        .map_err(|e| e.to_string())?;
    let password = [0x01u8; 32];
    let salt = [0x02u8; 16];
    let secret = [0x03u8; 8];
    let ad = argon2::AssociatedData::new(&[0x04u8; 12]).map_err(|e| e.to_string())?;
    let params = argon2::ParamsBuilder::new()
        .m_cost(32)
        .t_cost(3)
        .p_cost(4)
        .output_len(32)
        .data(ad)
        .build()
        .map_err(|e| e.to_string())?;
    let ctx = Argon2::new_with_secret(&secret, Algorithm::Argon2id, Version::V0x13, params)
        .map_err(|e| e.to_string())?;
    let mut tag = Zeroizing::new([0u8; 32]);
    ctx.hash_password_into(&password, &salt, &mut tag[..])
        .map_err(|e| e.to_string())?;
    if tag[..] != expected[..] {
        return Err("tag does not match RFC 9106 §5.3".into());
    }
    Ok(())
}
