//! The storage trait ([`Store`]) and the meter transaction ([`MeterTx`])
//! every engine implements.

use async_trait::async_trait;

use crate::error::Result;
use crate::types::{
    Account, AuditRecord, Commit, LedgerEntry, Meter, ModuleCheckpoint, MoneyEntry, Session,
};

/// The store: everything the postal server keeps. Object-safe, so the server
/// holds an `Arc<dyn Store>` and does not care which engine is behind it.
///
/// Every method is one database transaction: it happens whole or not at all.
#[async_trait]
pub trait Store: Send + Sync {
    /// Which engine this is (`"sqlite"` or `"postgres"`), for logs.
    fn engine(&self) -> &'static str;

    /// True when every meter transaction excludes every other, whichever
    /// meters they lock (SQLite: the whole database is the lock), so that
    /// a caller gains nothing by running several at once and should
    /// rather put more work into each.
    fn one_meter_transaction_at_a_time(&self) -> bool {
        false
    }

    /// The schema version of the database (the newest applied migration).
    async fn schema_version(&self) -> Result<i64>;

    // ----- meters -----

    /// Stores a new meter. A device ID already stored is
    /// [`crate::StoreError::Duplicate`].
    async fn create_meter(&self, meter: &Meter) -> Result<()>;

    /// The meter with this device ID, if any (a plain read, no lock).
    async fn get_meter(&self, device_id: &str) -> Result<Option<Meter>>;

    /// The meters an account owns, by device ID.
    async fn meters_of_account(&self, login: &str) -> Result<Vec<Meter>>;

    /// Gives one meter that nobody owns and whose state is `state` to
    /// `owner` (the lowest device ID first), atomically: two servers asking
    /// at once never get the same meter. `None` when there is none.
    async fn reserve_meter(&self, owner: &str, state: &str, now: i64) -> Result<Option<Meter>>;

    /// How many meters are stored: all of them, or (with `free_in`) only
    /// those nobody owns in that state.
    async fn count_meters(&self, free_in: Option<&str>) -> Result<u64>;

    /// Opens a transaction and locks these meters' rows against every other
    /// transaction, in this process or any other, waiting for a lock held
    /// elsewhere (up to the engine's lock wait, then
    /// [`crate::StoreError::Busy`]). A device ID not stored is
    /// [`crate::StoreError::NotFound`]. The transaction holds the rows as
    /// locked and the whole module table.
    async fn lock_meters(&self, device_ids: &[String]) -> Result<Box<dyn MeterTx>>;

    /// As [`Store::lock_meters`], but fails at once with
    /// [`crate::StoreError::Busy`] if any of the rows is locked elsewhere.
    async fn try_lock_meters(&self, device_ids: &[String]) -> Result<Box<dyn MeterTx>>;

    // ----- module table -----

    /// A module's row of the module table, if it has one.
    async fn get_checkpoint(&self, module_id: &str) -> Result<Option<ModuleCheckpoint>>;

    /// The whole module table, by module ID.
    async fn all_checkpoints(&self) -> Result<Vec<ModuleCheckpoint>>;

    // ----- audit -----

    /// Appends audit entries made outside a meter transaction (module
    /// commands that touch no meter), in one transaction. An entry stored
    /// already with the same content is accepted again (a module hands its
    /// host entries it may have stored before a power loss); with a
    /// different content it is [`crate::StoreError::AuditConflict`].
    async fn append_audit(&self, entries: &[AuditRecord]) -> Result<()>;

    /// A module's audit entries with a sequence number at least `from_seq`,
    /// in sequence order.
    async fn audit_entries(&self, module_id: &str, from_seq: u64) -> Result<Vec<AuditRecord>>;

    // ----- ledger and money -----

    /// The indicia a meter issued, by piece counter.
    async fn ledger_of_meter(&self, device_id: &str) -> Result<Vec<LedgerEntry>>;

    /// The indicia issued for an account, by time, device ID and piece.
    async fn ledger_of_account(&self, login: &str) -> Result<Vec<LedgerEntry>>;

    /// A meter's downloads and refunds, in the order they were stored.
    async fn money_of_meter(&self, device_id: &str) -> Result<Vec<MoneyEntry>>;

    // ----- accounts -----

    /// Stores a new account. A login already stored is
    /// [`crate::StoreError::Duplicate`].
    async fn create_account(&self, account: &Account) -> Result<()>;

    /// The account with this login, if any.
    async fn get_account(&self, login: &str) -> Result<Option<Account>>;

    /// Counts a failed logon; when the count reaches `lock_after` the
    /// account is locked. Returns the account as it is now.
    async fn record_failed_logon(&self, login: &str, lock_after: u32) -> Result<Account>;

    /// Records a successful logon: the failed-logon count goes back to zero.
    async fn record_successful_logon(&self, login: &str) -> Result<()>;

    /// Locks or unlocks an account (an administrator's action); unlocking
    /// also clears the failed-logon count.
    async fn set_account_locked(&self, login: &str, locked: bool) -> Result<()>;

    /// Replaces an account's password hash.
    async fn set_password_hash(&self, login: &str, password_hash: &str) -> Result<()>;

    // ----- sessions -----

    /// Stores a new session (the account must exist).
    async fn create_session(&self, session: &Session) -> Result<()>;

    /// The session with this token hash, if any.
    async fn get_session(&self, token_hash: &[u8]) -> Result<Option<Session>>;

    /// The session with this token hash and its account, if both exist,
    /// read together (every authenticated request needs both).
    async fn get_session_account(&self, token_hash: &[u8]) -> Result<Option<(Session, Account)>>;

    /// Sets a session's last activity; false if there is no such session.
    async fn touch_session(&self, token_hash: &[u8], now: i64) -> Result<bool>;

    /// Deletes a session (logoff); false if there was none.
    async fn delete_session(&self, token_hash: &[u8]) -> Result<bool>;

    /// Deletes every session whose last activity is before `idle_before`;
    /// returns how many.
    async fn delete_idle_sessions(&self, idle_before: i64) -> Result<u64>;
}

/// An open transaction holding some meters' rows locked. Commit it with the
/// new rows, or roll it back; dropping it uncommitted rolls it back.
#[async_trait]
pub trait MeterTx: Send {
    /// The locked meters, by device ID.
    fn meters(&self) -> &[Meter];

    /// The module table as read inside the transaction, by module ID.
    fn checkpoints(&self) -> &[ModuleCheckpoint];

    /// Writes everything in `commit` and commits, as one database
    /// transaction; the locks are released. On any error the transaction is
    /// rolled back and nothing at all changed.
    async fn commit(self: Box<Self>, commit: Commit) -> Result<()>;

    /// Rolls back and releases the locks.
    async fn rollback(self: Box<Self>) -> Result<()>;
}
