//! AES-256-GCM. Sealed format for [`seal`]: 12-byte random nonce || ciphertext || 16-byte tag.
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::{Zeroize, Zeroizing};

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
    seal_prefixed(&aes_key(key)?, nonce, aad, plaintext)
}

/// nonce || ct || tag in one buffer of the exact size: the plaintext is
/// copied once, and no reallocation leaves a stray copy of it behind.
fn seal_prefixed(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::new();
    seal_prefixed_into(key, nonce, aad, plaintext, &mut out)?;
    Ok(out)
}

/// [`seal`] appending nonce || ct || tag to `out`, after whatever it
/// already holds (a header, say), instead of returning a new vector: the
/// plaintext is copied once, into room reserved beforehand, so no
/// reallocation leaves a stray copy of it behind. On failure `out` is as
/// it was.
pub fn seal_append(
    rng: &mut Rng,
    key: &SecretKey32,
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let nonce: [u8; NONCE_LEN] = rng.array()?;
    seal_prefixed_into(&aes_key(key)?, nonce, aad, plaintext, out)
}

fn seal_prefixed_into(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let start = out.len();
    out.reserve_exact(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    seal_tail(key, nonce, aad, out, start + NONCE_LEN, start)
}

/// Encrypts `buf[at..]` where it lies and appends the tag. On failure the
/// bytes from `keep` on (which still hold plaintext) are wiped and cut off.
fn seal_tail(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut Vec<u8>,
    at: usize,
    keep: usize,
) -> Result<(), CryptoError> {
    match key.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf[at..],
    ) {
        Ok(tag) => {
            buf.extend_from_slice(tag.as_ref());
            Ok(())
        }
        Err(_) => {
            buf[keep..].zeroize();
            buf.truncate(keep);
            Err(CryptoError::BadKey("AES-256-GCM encryption failed"))
        }
    }
}

/// Opens the output of [`seal`]. Fails with `Decrypt` on any change to key, aad or data.
pub fn open(key: &SecretKey32, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
    open_prefixed(&aes_key(key)?, aad, sealed)
}

/// Opens nonce || ct || tag.
fn open_prefixed(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Decrypt);
    }
    let (nonce, ct_and_tag) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Decrypt)?;
    open_in(key, nonce, aad, ct_and_tag)
}

/// Encrypts with a caller-chosen nonce (only for keys used once, e.g. per-message session keys); output is ct || tag.
pub fn seal_with_nonce(
    key: &SecretKey32,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    seal_in_place_with_nonce(key, nonce, aad, &mut buf)?;
    Ok(buf)
}

/// [`seal_with_nonce`] where the plaintext lies: `buf` is encrypted in place
/// and then the tag appended, so no copy of the plaintext is left behind
/// (a reallocation for the tag moves ciphertext only). On failure `buf` is
/// wiped.
pub fn seal_in_place_with_nonce(
    key: &SecretKey32,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    match aes_key(key) {
        Ok(key) => seal_tail(&key, nonce, aad, buf, 0, 0),
        Err(e) => {
            buf.zeroize();
            Err(e)
        }
    }
}

/// Opens the output of [`seal_with_nonce`].
pub fn open_with_nonce(
    key: &SecretKey32,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    ct_and_tag: &[u8],
) -> Result<SecretBytes, CryptoError> {
    open_in(&aes_key(key)?, nonce, aad, ct_and_tag)
}

/// [`open_with_nonce`] taking the sealed bytes by value: they are decrypted
/// where they lie instead of copied first.
pub fn open_owned_with_nonce(
    key: &SecretKey32,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    ct_and_tag: Vec<u8>,
) -> Result<SecretBytes, CryptoError> {
    open_vec(&aes_key(key)?, nonce, aad, Zeroizing::new(ct_and_tag))
}

fn open_in(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    ct_and_tag: &[u8],
) -> Result<SecretBytes, CryptoError> {
    if ct_and_tag.len() < TAG_LEN {
        return Err(CryptoError::Decrypt);
    }
    open_vec(key, nonce, aad, Zeroizing::new(ct_and_tag.to_vec()))
}

/// Decrypts `buf` in place. Whatever happens, the working buffer is wiped
/// unless it is handed out.
fn open_vec(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    mut buf: Zeroizing<Vec<u8>>,
) -> Result<SecretBytes, CryptoError> {
    if buf.len() < TAG_LEN {
        return Err(CryptoError::Decrypt);
    }
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

/// An AES-256-GCM key with its key schedule already computed, for a key
/// that seals and opens many messages (e.g. a master key sealing records):
/// building the schedule costs about as much as sealing a short message.
/// The sealed format is that of [`seal`] and [`open`], interchangeably.
///
/// The schedule lives inside aws-lc, which wipes it when the key is
/// dropped; the raw key is not kept. Never printed.
pub struct AeadKey(LessSafeKey);

impl AeadKey {
    /// Computes the key schedule of `key`.
    pub fn new(key: &SecretKey32) -> Result<Self, CryptoError> {
        Ok(Self(aes_key(key)?))
    }

    /// Like [`seal`]: a fresh random nonce from `rng`; nonce || ct || tag.
    pub fn seal(
        &self,
        rng: &mut Rng,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce: [u8; NONCE_LEN] = rng.array()?;
        seal_prefixed(&self.0, nonce, aad, plaintext)
    }

    /// Seals where the plaintext lies: `buf` holds a fresh 12-byte nonce
    /// (never used before with this key) followed by the plaintext, and
    /// becomes the [`seal`] format (nonce || ct || tag). The caller writes
    /// the plaintext straight into the buffer, so it is never copied; give
    /// the buffer room for the tag so appending it moves no plaintext. On
    /// failure `buf` is wiped and emptied.
    pub fn seal_nonce_prefixed(&self, aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let Some(nonce) = buf.first_chunk::<NONCE_LEN>().copied() else {
            buf.zeroize();
            return Err(CryptoError::BadKey(
                "AES-256-GCM: the buffer holds no nonce",
            ));
        };
        seal_tail(&self.0, nonce, aad, buf, NONCE_LEN, 0)
    }

    /// Like [`open`].
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        open_prefixed(&self.0, aad, sealed)
    }
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey(<redacted>)")
    }
}

fn aes_key(key: &SecretKey32) -> Result<LessSafeKey, CryptoError> {
    let unbound = UnboundKey::new(&AES_256_GCM, key.expose_secret())
        .map_err(|_| CryptoError::BadKey("AES-256-GCM key rejected"))?;
    Ok(LessSafeKey::new(unbound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Faults;

    #[test]
    fn aead_key_and_functions_are_interchangeable() {
        let mut rng = Rng::new(Faults::none());
        let key = rng.key32().unwrap();
        let cached = AeadKey::new(&key).unwrap();
        let a = seal(&mut rng, &key, b"aad", b"hello").unwrap();
        let b = cached.seal(&mut rng, b"aad", b"hello").unwrap();
        assert_eq!(a.len(), NONCE_LEN + 5 + TAG_LEN);
        assert_eq!(b.len(), a.len());
        assert_eq!(cached.open(b"aad", &a).unwrap().expose_secret(), b"hello");
        assert_eq!(open(&key, b"aad", &b).unwrap().expose_secret(), b"hello");
        // The same nonce gives the same bytes either way.
        let nonce = [7u8; NONCE_LEN];
        let mut c = nonce.to_vec();
        c.extend_from_slice(b"hello");
        cached.seal_nonce_prefixed(b"aad", &mut c).unwrap();
        let mut d = nonce.to_vec();
        d.extend_from_slice(&seal_with_nonce(&key, nonce, b"aad", b"hello").unwrap());
        assert_eq!(c, d);
    }

    #[test]
    fn aead_key_refuses_changes() {
        let mut rng = Rng::new(Faults::none());
        let key = AeadKey::new(&rng.key32().unwrap()).unwrap();
        let mut sealed = key.seal(&mut rng, b"aad", b"hello").unwrap();
        assert!(key.open(b"other", &sealed).is_err());
        assert!(
            key.open(b"aad", &sealed[..NONCE_LEN + TAG_LEN - 1])
                .is_err()
        );
        sealed[NONCE_LEN] ^= 1;
        assert_eq!(key.open(b"aad", &sealed).unwrap_err(), CryptoError::Decrypt);
    }
}
