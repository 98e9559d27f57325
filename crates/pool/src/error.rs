//! The pool's errors. A module's refusal ([`PoolError::Refused`]) stays
//! distinguishable from everything else, because the server answers it with
//! a 4xx and the module's message, and runs Auto-Recover on
//! [`ModuleError::CheckpointMismatch`]; the other variants are failures of
//! the host side (files, session, protocol) and map to 5xx.
use std::path::PathBuf;

use postvault_module::{ClientError, ModuleError};

/// Why a pool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The module executed the command and refused it. `audit` holds the
    /// entries the refusal made (a refused command is audited too), as
    /// `(seq, json line)`, in order, so the caller can store them.
    #[error("{error}")]
    Refused {
        /// The module's answer.
        error: ModuleError,
        /// The audit entries the command made.
        audit: Vec<(u64, String)>,
    },
    /// The call never produced a module answer (I/O, secure session,
    /// frame refused, undecodable answer).
    #[error("module {module_id}: {source}")]
    Client {
        /// The member's module ID (hex).
        module_id: String,
        /// The cause.
        source: ClientError,
    },
    /// The module answered with a response of the wrong kind.
    #[error("module {module_id}: unexpected answer to {command}: {answer}")]
    Unexpected {
        /// The member's module ID (hex).
        module_id: String,
        /// The command sent.
        command: &'static str,
        /// The answer, debug-printed (responses carry no secrets).
        answer: String,
    },
    /// A file or directory of the pool could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A pool file exists but does not parse.
    #[error("{}: {why}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The pool's directory holds an unfinished ceremony.
    #[error(
        "{}: the pool's set-up ceremony did not finish ({why}); delete the directory and start again",
        dir.display()
    )]
    Unfinished {
        /// The pool directory.
        dir: PathBuf,
        /// What is missing.
        why: String,
    },
    /// The seal key could not be created or opened.
    #[error("seal key {}: {why}", path.display())]
    Seal {
        /// The key file.
        path: PathBuf,
        /// The seal provider's message.
        why: String,
    },
    /// A module could not be opened at all (its directory is locked by
    /// another process, or cannot be created).
    #[error("module {index}: {why}")]
    Open {
        /// The member's index.
        index: usize,
        /// The cause.
        why: String,
    },
    /// The automatic ceremony failed (the message says at which step).
    #[error("pool ceremony: {0}")]
    Ceremony(String),
    /// The configuration cannot work (e.g. zero modules, a bad provider key).
    #[error("pool configuration: {0}")]
    Config(String),
    /// No member is in service: the pool cannot serve. The text lists why
    /// each member is out.
    #[error("no module of the pool is in service: {0}")]
    NoModule(String),
    /// A cryptographic primitive failed (the random generator for passwords).
    #[error("cryptographic failure: {0}")]
    Crypto(String),
}

impl PoolError {
    /// The module's refusal, when this is one.
    pub fn module_error(&self) -> Option<&ModuleError> {
        match self {
            PoolError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }

    /// True when the module refused because the database's checkpoint is
    /// not its newest (the server then runs Auto-Recover Checkpoint).
    pub fn is_checkpoint_mismatch(&self) -> bool {
        matches!(
            self.module_error(),
            Some(ModuleError::CheckpointMismatch(_))
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PoolError {
        let path = path.into();
        move |source| PoolError::Io { path, source }
    }
}

impl From<postvault_crypto::CryptoError> for PoolError {
    fn from(e: postvault_crypto::CryptoError) -> Self {
        PoolError::Crypto(e.to_string())
    }
}
