//! Secret containers: zeroized on drop, no `Serialize`, redacted `Debug`.
use zeroize::Zeroizing;

use crate::CryptoError;

/// A 256-bit symmetric key (AES-256-GCM, HMAC-SHA-256, HKDF output).
#[derive(Clone)]
pub struct SecretKey32(Zeroizing<[u8; 32]>);

impl SecretKey32 {
    /// Wraps 32 key bytes. The caller should zeroize its own copy.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }
    /// Wraps a slice that must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 32 {
            return Err(CryptoError::BadKey("expected 32 bytes"));
        }
        // Copy straight into the zeroizing container: no stray stack copy.
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(bytes);
        Ok(Self(key))
    }
    /// The raw key bytes. Every call site is a place a plaintext key is read.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey32(<redacted>)")
    }
}

/// A variable-length secret (decrypted plaintext, PKCS#8 private key, share).
#[derive(Clone, Default)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of a buffer holding secret data.
    pub fn from_vec(v: Vec<u8>) -> Self {
        Self(Zeroizing::new(v))
    }
    /// The raw bytes. Every call site is a place secret data is read.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}
