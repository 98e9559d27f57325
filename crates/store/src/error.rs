//! [`StoreError`], the one error type of the store.

/// Why a store operation failed. A failed operation changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A meter is locked by another transaction (another server or handle),
    /// and the caller asked not to wait ([`crate::Store::try_lock_meters`]),
    /// or the wait ran out.
    #[error("the meter is locked by another transaction")]
    Busy,
    /// A record that must exist does not.
    #[error("{what} {key:?} not found")]
    NotFound {
        /// The kind of record (`"meter"`, `"account"`, ...).
        what: &'static str,
        /// Its key.
        key: String,
    },
    /// A record with the same unique key already exists (a device ID, a
    /// login, a ledger piece, a provider sequence).
    #[error("duplicate {what}: {detail}")]
    Duplicate {
        /// The kind of record.
        what: &'static str,
        /// The key or the database's constraint name.
        detail: String,
    },
    /// An audit entry with this module ID and sequence number is stored
    /// already, with a different content.
    #[error("audit entry {module_id}/{seq} is stored with a different content")]
    AuditConflict {
        /// The module ID.
        module_id: String,
        /// The sequence number.
        seq: u64,
    },
    /// The caller passed something the store cannot take (a number beyond
    /// the database's range, a meter it did not lock, an empty key).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The database holds a value this version cannot read back (a negative
    /// amount, an unknown money kind): it was changed outside postvault.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database was written by a newer postvault: its schema version is
    /// beyond the newest migration this build knows. Upgrade postvault.
    #[error(
        "the database schema is version {found}, newer than this build's {supported}: upgrade postvault"
    )]
    SchemaTooNew {
        /// The version in the database.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The store URL is not `sqlite://PATH` or `postgres://...`.
    #[error("bad store URL: {0}")]
    Url(String),
    /// An error from SQLite.
    #[error("SQLite: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// An error from PostgreSQL or the connection to it.
    #[error("PostgreSQL: {0}")]
    Postgres(#[source] tokio_postgres::Error),
    /// A file-system error (creating the data directory).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A blocking database task panicked or was cancelled.
    #[error("a database task failed: {0}")]
    Task(String),
}

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<rusqlite::Error> for StoreError {
    /// A busy database is [`StoreError::Busy`] and a unique-key violation
    /// [`StoreError::Duplicate`] (callers that know what was duplicated
    /// relabel it).
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        if let rusqlite::Error::SqliteFailure(f, msg) = &e {
            if f.code == rusqlite::ErrorCode::DatabaseBusy
                || f.code == rusqlite::ErrorCode::DatabaseLocked
            {
                return StoreError::Busy;
            }
            if f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
            {
                return StoreError::Duplicate {
                    what: "record",
                    detail: msg.clone().unwrap_or_default(),
                };
            }
        }
        StoreError::Sqlite(e)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    /// A lock not available (`NOWAIT`, `lock_timeout`) is
    /// [`StoreError::Busy`] and a unique-key violation
    /// [`StoreError::Duplicate`].
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        if let Some(db) = e.as_db_error() {
            if *db.code() == SqlState::LOCK_NOT_AVAILABLE {
                return StoreError::Busy;
            }
            if *db.code() == SqlState::UNIQUE_VIOLATION {
                return StoreError::Duplicate {
                    what: "record",
                    detail: db.constraint().unwrap_or(db.message()).to_string(),
                };
            }
        }
        StoreError::Postgres(e)
    }
}

impl StoreError {
    /// Relabels a [`StoreError::Duplicate`] with what was duplicated and
    /// its key; any other error is returned as it is.
    pub(crate) fn duplicate_of(self, what: &'static str, key: impl Into<String>) -> Self {
        match self {
            StoreError::Duplicate { .. } => StoreError::Duplicate {
                what,
                detail: key.into(),
            },
            e => e,
        }
    }
}
