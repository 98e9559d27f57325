//! AES-256-GCM. Sealed format for [`seal`]: 12-byte random nonce || ciphertext || 16-byte tag.
use crate::{rng::Rng, CryptoError, SecretBytes, SecretKey32};

/// Nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// Tag length in bytes.
pub const TAG_LEN: usize = 16;

/// Encrypts with a fresh random nonce drawn from `rng`; output is nonce || ct || tag.
pub fn seal(rng: &mut Rng, key: &SecretKey32, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    todo!()
}

/// Opens the output of [`seal`]. Fails with `Decrypt` on any change to key, aad or data.
pub fn open(key: &SecretKey32, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
    todo!()
}

/// Encrypts with a caller-chosen nonce (only for keys used once, e.g. per-message session keys); output is ct || tag.
pub fn seal_with_nonce(key: &SecretKey32, nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    todo!()
}

/// Opens the output of [`seal_with_nonce`].
pub fn open_with_nonce(key: &SecretKey32, nonce: [u8; NONCE_LEN], aad: &[u8], ct_and_tag: &[u8]) -> Result<SecretBytes, CryptoError> {
    todo!()
}
