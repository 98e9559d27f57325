//! Errors the module reports to its host. They cross the wire, so they are
//! plain data; none carries secret material.
use serde::{Deserialize, Serialize};

use crate::psd::PsdState;
use crate::types::{ModuleState, Role};

/// Why a command was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ModuleError {
    /// The command is not allowed in this state for this role (the access table said no).
    #[error("{command} is not allowed in state {state} for role {role}")]
    Denied {
        /// Command name.
        command: String,
        /// Current state.
        state: ModuleState,
        /// The session's role.
        role: Role,
    },
    /// The PSD command is not allowed in the package's PSD state (`psd::PSD_RULES` said no).
    #[error("{command} is not allowed for a PSD in state {state}")]
    PsdDenied {
        /// PSD command name.
        command: String,
        /// The package's PSD state.
        state: PsdState,
    },
    /// The command needs an encrypted frame because it carries a secret.
    #[error("{0} must be sent encrypted (it carries a secret)")]
    EncryptionRequired(String),
    /// The input was well-formed but not acceptable; the text says what to fix.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The bytes did not decode.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Logon failed (unknown user or wrong password; deliberately not saying which).
    #[error("logon failed: unknown user or wrong password")]
    LogonFailed,
    /// The account is locked after too many failed logons.
    #[error("account {0} is locked after too many failed logons; an Administrator must unlock it")]
    Locked(String),
    /// The account has expired.
    #[error("account {0} has expired; an Administrator must extend it")]
    AccountExpired(String),
    /// The password has expired.
    #[error("the password of {0} has expired; an Administrator must set a new one")]
    PasswordExpired(String),
    /// The new password was used recently or is too weak.
    #[error("password rejected: {0}")]
    PasswordRejected(String),
    /// A user is logged on where none may be (e.g. Close Session).
    #[error("a user is still logged on to this session; log off first")]
    UserLoggedOn,
    /// A key or key set needed by the command is missing or in the wrong slot.
    #[error("key state: {0}")]
    KeyState(String),
    /// A token, share or record failed authentication or does not belong here.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The module is in Error; the text says why.
    #[error("module is in Error state: {0}; reset it (postvault module reset) to start over")]
    InError(String),
    /// The NVM could not be written; the module went to Error.
    #[error("persistent storage failed: {0}")]
    Storage(String),
    /// A self-test failed; the module went to Error.
    #[error("self-test failed: {0}")]
    SelfTest(String),
    /// An internal cryptographic failure.
    #[error("cryptographic failure: {0}")]
    Crypto(String),
    /// The database's checkpoint is not this module's newest (a stale or
    /// switched database, or a stale package); the text says what to do.
    #[error("checkpoint mismatch: {0}")]
    CheckpointMismatch(String),
    /// PSD processing is inhibited after a failed checkpoint recovery.
    #[error(
        "PSD processing is inhibited: {0}; a Security Officer must check the database and run Accept Checkpoint (postvault module checkpoint accept)"
    )]
    Inhibited(String),
    /// An internal consistency check failed; the command was refused and nothing changed.
    #[error("internal error: {0}")]
    Internal(String),
    /// The package given is not the meter's newest as far as this module
    /// knows (older than the module's own later transaction on the meter,
    /// or from a transaction a recovered rollback discarded, or newer than
    /// the module's newest checkpoint), while the checkpoint given is the
    /// module's newest: the database returned an old copy of one meter.
    /// Auto-Recover Checkpoint does not apply; the text says what happened.
    #[error("stale package: {0}")]
    StalePackage(String),
}

impl From<postvault_crypto::CryptoError> for ModuleError {
    fn from(e: postvault_crypto::CryptoError) -> Self {
        match e {
            postvault_crypto::CryptoError::SelfTest(t) => ModuleError::SelfTest(t.to_string()),
            other => ModuleError::Crypto(other.to_string()),
        }
    }
}

impl ModuleError {
    /// The short reason code written into audit entries.
    pub fn reason_code(&self) -> &'static str {
        match self {
            ModuleError::Denied { .. } => "denied",
            ModuleError::PsdDenied { .. } => "psd-denied",
            ModuleError::EncryptionRequired(_) => "encryption-required",
            ModuleError::Invalid(_) => "invalid",
            ModuleError::Malformed(_) => "malformed",
            ModuleError::LogonFailed => "logon-failed",
            ModuleError::Locked(_) => "locked",
            ModuleError::AccountExpired(_) => "account-expired",
            ModuleError::PasswordExpired(_) => "password-expired",
            ModuleError::PasswordRejected(_) => "password-rejected",
            ModuleError::UserLoggedOn => "user-logged-on",
            ModuleError::KeyState(_) => "key-state",
            ModuleError::Rejected(_) => "rejected",
            ModuleError::InError(_) => "in-error",
            ModuleError::Storage(_) => "storage",
            ModuleError::SelfTest(_) => "self-test",
            ModuleError::Crypto(_) => "crypto",
            ModuleError::CheckpointMismatch(_) => "checkpoint-mismatch",
            ModuleError::Inhibited(_) => "inhibited",
            ModuleError::Internal(_) => "internal",
            ModuleError::StalePackage(_) => "stale-package",
        }
    }
}
