//! postvault-seal: seals (encrypts and authenticates) the module's NVM file
//! at rest under a seal key held by a seal provider.
//!
//! Two providers exist:
//!
//! - **file** (`file:PATH`): a 32-byte AES-256 key in a file with mode 0600,
//!   for development and tests. AES-256-GCM runs in this process through
//!   postvault-crypto.
//! - **pkcs11** (`pkcs11:token=LABEL,pin-file=PATH[,key=LABEL][,module=PATH]`):
//!   an AES-256 key generated on a PKCS#11 token, non-extractable and
//!   sensitive, used with `CKM_AES_GCM`. The key never leaves the token.
//!
//! Both write the same self-describing layout (see [`mod@format`]): a 6-byte
//! header (magic `PVSL`, format version, provider kind), a 12-byte random
//! IV, the ciphertext and a 16-byte tag. The header is authenticated along
//! with the caller's associated data, so any change to the sealed bytes,
//! the associated data or the key gives [`SealError::Unseal`].
//!
//! ```no_run
//! use postvault_seal::{SealConfig, open_provider};
//!
//! let config = SealConfig::parse("file:/var/lib/postvault/seal.key")?;
//! let provider = open_provider(&config, true)?;
//! let sealed = provider.seal(b"postvault nvm v1", b"state")?;
//! let state = provider.unseal(b"postvault nvm v1", &sealed)?;
//! assert_eq!(state.expose_secret(), b"state");
//! # Ok::<(), postvault_seal::SealError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
mod file;
pub mod format;
mod pkcs11;

use std::fmt;

pub use config::{DEFAULT_KEY_LABEL, DEFAULT_PKCS11_MODULES, Pin, SealConfig};
pub use error::{SealError, UnsealReason};

/// Seals and unseals data under a key the provider holds.
///
/// Implementations are safe to share between threads; operations are
/// serialized internally where the underlying key store requires it.
pub trait SealProvider: Send + Sync {
    /// Human-readable description without secrets, e.g. `file /path/seal.key`
    /// or `pkcs11 token 'pv' key 'nvm-seal'`.
    fn describe(&self) -> String;

    /// Encrypts and authenticates `plaintext`, binding `aad`. The output is
    /// self-describing: magic, format version and provider kind, then IV,
    /// ciphertext and tag.
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError>;

    /// Reverses [`SealProvider::seal`]. Any change to the sealed bytes, a
    /// different `aad` or a different key gives [`SealError::Unseal`];
    /// malformed or truncated input is an error, never a panic.
    fn unseal(&self, aad: &[u8], sealed: &[u8])
    -> Result<postvault_crypto::SecretBytes, SealError>;
}

/// The kind of provider that sealed some data, as recorded in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// The key-file provider (`file:PATH`).
    File,
    /// The PKCS#11 provider (`pkcs11:...`).
    Pkcs11,
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderKind::File => "file",
            ProviderKind::Pkcs11 => "pkcs11",
        })
    }
}

/// Reads which kind of provider sealed `sealed`, from its header alone
/// (nothing is authenticated). Useful to tell an operator which seal
/// configuration a file needs.
pub fn sealed_by(sealed: &[u8]) -> Result<ProviderKind, UnsealReason> {
    format::parse_header(sealed)
}

/// Opens the provider `config` describes. With `create_key`, a missing key
/// is created (a new key file, or a new key on the token); without it, a
/// missing key is an error. An existing key is never replaced.
pub fn open_provider(
    config: &SealConfig,
    create_key: bool,
) -> Result<Box<dyn SealProvider>, SealError> {
    match config {
        SealConfig::File { key_path } => {
            Ok(Box::new(file::FileProvider::open(key_path, create_key)?))
        }
        SealConfig::Pkcs11 {
            module,
            token_label,
            pin,
            key_label,
        } => Ok(Box::new(pkcs11::Pkcs11Provider::open(
            module,
            token_label,
            pin,
            key_label,
            create_key,
        )?)),
    }
}
