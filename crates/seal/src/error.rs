//! [`SealError`], everything that can go wrong while configuring a seal
//! provider, opening it, sealing or unsealing.
//!
//! Every message names the file, token or key involved and says what to do
//! next. No message ever contains a PIN, key material or plaintext: the
//! only values echoed back are paths, token and key labels, lengths and
//! library error codes.

use std::fmt;
use std::path::PathBuf;

use crate::ProviderKind;

/// Why sealed data could not be unsealed. Carried by [`SealError::Unseal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnsealReason {
    /// Shorter than the smallest possible sealed blob (header, IV and tag).
    TooShort,
    /// Does not start with the postvault seal magic: not sealed data at all,
    /// or its first bytes were overwritten.
    BadMagic,
    /// The format version byte is not one this build understands.
    UnsupportedVersion(u8),
    /// The provider-kind byte names no known provider.
    UnknownProvider(u8),
    /// Sealed by a different kind of provider than the one unsealing.
    WrongProvider {
        /// The kind named in the sealed header.
        sealed_by: ProviderKind,
    },
    /// Authenticated decryption failed: a different key, different
    /// associated data, or modified sealed bytes.
    Authentication,
}

impl fmt::Display for UnsealReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnsealReason::TooShort => f.write_str("the data is too short to be sealed data (truncated?)"),
            UnsealReason::BadMagic => f.write_str("the data is not postvault sealed data (bad magic)"),
            UnsealReason::UnsupportedVersion(v) => {
                write!(f, "seal format version {v} is not supported by this build")
            }
            UnsealReason::UnknownProvider(k) => write!(f, "unknown seal provider kind {k}"),
            UnsealReason::WrongProvider { sealed_by } => {
                write!(f, "the data was sealed by a {sealed_by} seal provider")
            }
            UnsealReason::Authentication => f.write_str(
                "authentication failed (a different seal key, different associated data, or the sealed data was modified)",
            ),
        }
    }
}

/// Everything that can go wrong in this crate. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The seal specification string could not be parsed. The specification
    /// itself is not echoed, since a mistyped one might contain a PIN.
    #[error(
        "invalid seal configuration: {reason}; expected \"file:PATH\" or \"pkcs11:token=LABEL,pin-file=PATH[,key=LABEL][,module=PATH]\" (pin-env=VAR may replace pin-file)"
    )]
    InvalidSpec {
        /// What is wrong with it.
        reason: String,
    },

    /// The PKCS#11 user PIN could not be read from its file or environment variable.
    #[error("cannot read the PKCS#11 PIN: {reason}")]
    Pin {
        /// What went wrong and what to do about it.
        reason: String,
    },

    /// The seal key file does not exist and creating it was not requested.
    #[error(
        "seal key file {} not found: if this is a new installation, initialize it (which creates the key); otherwise restore the key file from backup, since without it the sealed NVM cannot be read",
        path.display()
    )]
    KeyFileMissing {
        /// The configured key path.
        path: PathBuf,
    },

    /// The seal key file can be read or written by group or others.
    #[error(
        "seal key file {} has mode {mode:04o}, which lets group or others access it: run `chmod 600 {}` (and check who may have copied it)",
        path.display(),
        path.display()
    )]
    KeyFilePermissions {
        /// The key path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The seal key file does not hold exactly 32 bytes.
    #[error(
        "seal key file {} holds {len} bytes, expected exactly 32 raw bytes: it is damaged or not a postvault seal key; restore it from backup (if nothing was ever sealed with it, delete it and initialize again)",
        path.display()
    )]
    KeyFileLength {
        /// The key path.
        path: PathBuf,
        /// The length found.
        len: u64,
    },

    /// The seal key path exists but is not a regular file.
    #[error("seal key path {} is not a regular file: point file:PATH at the key file itself", path.display())]
    KeyFileNotRegular {
        /// The key path.
        path: PathBuf,
    },

    /// A file-system operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, naming the path and what to check.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The random generator or a cryptographic primitive failed. Nothing can
    /// be sealed until the module is restarted and passes its self-tests.
    #[error(
        "cryptographic failure in the seal provider: {source}; restart the module, and if it persists treat the module as faulty"
    )]
    Crypto {
        /// The underlying error.
        #[source]
        source: postvault_crypto::CryptoError,
    },

    /// The PKCS#11 module (shared library) could not be loaded or initialized.
    #[error(
        "cannot load PKCS#11 module {}: {reason}; check module=PATH (for SoftHSM install the softhsm2 package: /usr/lib/softhsm/libsofthsm2.so)",
        module.display()
    )]
    Pkcs11Module {
        /// The library path.
        module: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// No initialized token with the configured label.
    #[error(
        "token '{token}' not found in {} ({}): create it with softhsm2-util --init-token --free --label {token}, or fix token= in the seal configuration",
        module.display(),
        list_labels(available)
    )]
    TokenNotFound {
        /// The configured token label.
        token: String,
        /// The library searched.
        module: PathBuf,
        /// Labels of the initialized tokens that were found instead.
        available: Vec<String>,
    },

    /// More than one token carries the configured label.
    #[error("{count} tokens are labelled '{token}' in {}: relabel or remove all but one", module.display())]
    TokenAmbiguous {
        /// The configured token label.
        token: String,
        /// The library searched.
        module: PathBuf,
        /// How many tokens matched.
        count: usize,
    },

    /// The token rejected the user PIN.
    #[error(
        "token '{token}' rejected the user PIN: check the pin-file / pin-env value (the user PIN, not the SO PIN); repeated failures may lock the token"
    )]
    PinIncorrect {
        /// The token label.
        token: String,
    },

    /// The token's user PIN is locked after too many failures.
    #[error(
        "the user PIN of token '{token}' is locked: the token's security officer must set a new user PIN (C_InitPIN, e.g. pkcs11-tool --login --login-type so --init-pin)"
    )]
    PinLocked {
        /// The token label.
        token: String,
    },

    /// The token has no user PIN yet.
    #[error(
        "token '{token}' has no user PIN: have its security officer set one (C_InitPIN, e.g. pkcs11-tool --login --login-type so --init-pin)"
    )]
    PinNotInitialized {
        /// The token label.
        token: String,
    },

    /// The seal key is not on the token and creating it was not requested.
    #[error(
        "no secret key labelled '{key}' on token '{token}': if this is a new installation, initialize it (which creates the key); otherwise check key= and token= in the seal configuration"
    )]
    KeyNotFound {
        /// The token label.
        token: String,
        /// The key label.
        key: String,
    },

    /// Several secret keys on the token carry the seal key's label.
    #[error(
        "{count} secret keys labelled '{key}' on token '{token}': the seal key is ambiguous; find the one the NVM was sealed with and remove the others"
    )]
    KeyAmbiguous {
        /// The token label.
        token: String,
        /// The key label.
        key: String,
        /// How many keys matched.
        count: usize,
    },

    /// The key on the token is not usable as a seal key.
    #[error("key '{key}' on token '{token}' cannot be used as the seal key: {reason}")]
    KeyUnsuitable {
        /// The token label.
        token: String,
        /// The key label.
        key: String,
        /// Why, and what to do.
        reason: String,
    },

    /// Any other PKCS#11 failure.
    #[error(
        "PKCS#11 {operation} on token '{token}' failed: {detail}; check that the token is present and usable (for SoftHSM: softhsm2-util --show-slots)"
    )]
    Pkcs11 {
        /// The operation that failed.
        operation: &'static str,
        /// The token label.
        token: String,
        /// The library's error.
        detail: String,
    },

    /// The sealed data could not be unsealed: wrong key, wrong associated
    /// data, tampered or truncated data, or the wrong kind of provider.
    #[error(
        "cannot unseal with {provider}: {reason}; check that the seal configuration names the key this data was sealed with, otherwise restore the data from backup"
    )]
    Unseal {
        /// [`crate::SealProvider::describe`] of the provider that tried.
        provider: String,
        /// Why.
        reason: UnsealReason,
    },
}

fn list_labels(labels: &[String]) -> String {
    if labels.is_empty() {
        "no initialized tokens there".to_owned()
    } else {
        let quoted: Vec<String> = labels.iter().map(|l| format!("'{l}'")).collect();
        format!("tokens there: {}", quoted.join(", "))
    }
}
