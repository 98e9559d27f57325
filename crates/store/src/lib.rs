//! postvault-store: the postal server's database.
//!
//! One storage trait ([`Store`]) with two engines behind it:
//!
//! * [`SqliteStore`]: SQLite in a file of the data directory, the default
//!   (one process, nothing to install: SQLite is compiled in). WAL journal,
//!   `synchronous=FULL`.
//! * [`PgStore`]: PostgreSQL, when several servers share the work.
//!
//! [`open_store`] picks one from a URL (`sqlite://PATH` or
//! `postgres://...`).
//!
//! The store holds the PSD packages (`meters`), the module table
//! (`module_checkpoints`), the audit entries of every module
//! (`audit_entries`), accounts and sessions, the issued-indicium ledger
//! (`ledger`) and downloads and refunds (`money`). It treats packages,
//! checkpoints and audit entries as opaque serialized values: it does not
//! depend on the module crate and never sees a key.
//!
//! # The meter transaction
//!
//! One meter is processed by one server at a time. [`Store::lock_meters`]
//! opens a database transaction that holds the meters' rows locked against
//! every other transaction, in any process (PostgreSQL: `SELECT ... FOR
//! UPDATE` in device-ID order; SQLite: `BEGIN IMMEDIATE`, which takes the
//! database's single write lock, so the whole database is the lock).
//! [`MeterTx::commit`] then writes the new packages, the module's checkpoint,
//! the ledger and money rows and the audit entries in that one transaction:
//! an indicium is handed out only after all of it is committed, and if the
//! commit fails nothing changed. A [`Commit`] carries many indicia of many
//! meters, so the server commits in groups and one fsync covers a group.
//!
//! # Migrations
//!
//! Each engine has versioned SQL files (`src/migrations/ENGINE/NNNN_*.sql`),
//! applied at open inside one transaction and recorded in
//! `schema_migrations`. Opening an up-to-date database changes nothing; a
//! database whose schema is newer than this build is refused
//! ([`StoreError::SchemaTooNew`]).
//!
//! Amounts are integer mills (`u64` here, `BIGINT` in SQL); a value beyond
//! `i64::MAX` is refused as [`StoreError::Invalid`]. Times are Unix seconds
//! passed in by the caller.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod convert;
mod error;
mod migrate;
mod pg;
mod sqlite;
mod store;
mod types;

pub use error::{Result, StoreError};
pub use pg::PgStore;
pub use sqlite::{SqliteStore, WAL_AUTOCHECKPOINT_PAGES};
pub use store::{MeterTx, Store};
pub use types::{
    Account, AuditRecord, Commit, LedgerEntry, Meter, ModuleCheckpoint, MoneyEntry, MoneyKind,
    Session,
};

use std::sync::Arc;

/// The newest schema version this build knows (the same for every engine).
pub const SCHEMA_VERSION: i64 = migrate::LATEST;

/// Opens the store a URL names: `sqlite://PATH` (a file; the directory is
/// created if missing) or `postgres://...` / `postgresql://...` (anything
/// `tokio-postgres` accepts, connected without TLS), and brings its schema
/// up to date.
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError::Url("sqlite:// needs a file path".into()));
        }
        let path = std::path::PathBuf::from(path);
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else {
        Err(StoreError::Url(
            "expected sqlite://PATH or postgres://... (the URL itself is not repeated here, it may hold a password)"
                .into(),
        ))
    }
}
