//! AES-256-GCM. Sealed format for [`seal`]: 12-byte random nonce || ciphertext || 16-byte tag.
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::{CryptoError, SecretBytes, SecretKey32, rng::Rng};

/// Nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// Tag length in bytes.
pub const TAG_LEN: usize = 16;

/// Encrypts with a fresh random nonce drawn from `rng`; output is nonce || ct || tag.
pub fn seal(
    rng: &mut Rng,
    key: &SecretKey32,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let nonce: [u8; NONCE_LEN] = rng.array()?;
    let ct_and_tag = seal_with_nonce(key, nonce, aad, plaintext)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct_and_tag.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct_and_tag);
    Ok(out)
}

/// Opens the output of [`seal`]. Fails with `Decrypt` on any change to key, aad or data.
pub fn open(key: &SecretKey32, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Decrypt);
    }
    let (nonce, ct_and_tag) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Decrypt)?;
    open_with_nonce(key, nonce, aad, ct_and_tag)
}

/// Encrypts with a caller-chosen nonce (only for keys used once, e.g. per-message session keys); output is ct || tag.
pub fn seal_with_nonce(
    key: &SecretKey32,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = aes_key(key)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    buf.extend_from_slice(plaintext);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut *buf,
    )
    .map_err(|_| CryptoError::BadKey("AES-256-GCM encryption failed"))?;
    Ok(std::mem::take(&mut *buf))
}

/// Opens the output of [`seal_with_nonce`].
pub fn open_with_nonce(
    key: &SecretKey32,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    ct_and_tag: &[u8],
) -> Result<SecretBytes, CryptoError> {
    if ct_and_tag.len() < TAG_LEN {
        return Err(CryptoError::Decrypt);
    }
    let key = aes_key(key)?;
    // Whatever happens, the working buffer is wiped unless it is handed out.
    let mut buf = Zeroizing::new(ct_and_tag.to_vec());
    let pt_len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf[..],
        )
        .map_err(|_| CryptoError::Decrypt)?
        .len();
    buf.truncate(pt_len);
    Ok(SecretBytes::from_vec(std::mem::take(&mut *buf)))
}

fn aes_key(key: &SecretKey32) -> Result<LessSafeKey, CryptoError> {
    let unbound = UnboundKey::new(&AES_256_GCM, key.expose_secret())
        .map_err(|_| CryptoError::BadKey("AES-256-GCM key rejected"))?;
    Ok(LessSafeKey::new(unbound))
}
