//! [`ServerError`], the error of starting and running the server. Errors of
//! single requests are not here: they become HTTP responses (see `api`).

use std::path::PathBuf;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration (file or flags) is invalid; the message says which
    /// setting and what is expected.
    #[error("configuration: {0}")]
    Config(String),
    /// A file or directory of the data directory (or a configured TLS file)
    /// could not be read, written or created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The listening socket could not be bound (address in use, no
    /// permission for the port).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be made, read or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The store could not be opened or failed while setting up.
    #[error("store: {0}")]
    Store(#[from] postvault_store::StoreError),
    /// A cryptographic operation failed (the RNG's health test, hashing).
    #[error("crypto: {0}")]
    Crypto(#[from] postvault_crypto::CryptoError),
    /// The module pool could not be set up or opened.
    #[error("modules: {0}")]
    Pool(#[from] postvault_pool::PoolError),
    /// Setting up the postal service failed (MeterGen's first meters, the
    /// printer thread).
    #[error("{0}")]
    Setup(String),
    /// A background task of the server panicked.
    #[error("a server task failed: {0}")]
    Task(String),
}

impl ServerError {
    /// An [`ServerError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ServerError::Io { path, source }
    }
}

/// Shorthand for results of the server's setup.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;
