//! The SQLite engine: one database file in the data directory.
//!
//! Journal mode WAL, `synchronous=FULL`: in WAL mode `NORMAL` would let a
//! power loss take back transactions already reported committed (they are
//! synced only at the next checkpoint), and a committed transaction here is
//! an indicium in a customer's hands, so every commit syncs the WAL. The
//! cost is one fsync per commit, and the server commits indicia in groups.
//! The WAL is copied back into the database every
//! [`WAL_AUTOCHECKPOINT_PAGES`] pages, not SQLite's default 1000.
//!
//! Locking: a meter transaction is `BEGIN IMMEDIATE` on a connection of its
//! own, which takes SQLite's single write lock (across processes: it is a
//! lock on the file). The whole database is the meter lock; readers go on
//! meanwhile (WAL). Other writers wait up to the lock wait (SQLite's busy
//! timeout), then get [`StoreError::Busy`]; `try_lock_meters` uses a busy
//! timeout of zero.
//!
//! Inside one process, writers first queue on an in-process gate (a fair,
//! first-come tokio mutex, waited on for at most the same lock wait), so
//! they take turns instead of meeting in SQLite's busy handler, which
//! polls with sleeps of up to 100 ms: with two printers committing back to
//! back, a waiter there could miss every gap for seconds (the load bench
//! saw every client stall for 0.7 and 1.2 s). The busy timeout stays for
//! writers in other processes.
//!
//! rusqlite is blocking: every call runs on tokio's blocking pool, with a
//! connection taken from a small pool of idle ones.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};

use crate::convert::{check_commit, from_db, from_db_u32, to_db};
use crate::error::{Result, StoreError};
use crate::migrate;
use crate::store::{MeterTx, Store};
use crate::types::{
    Account, AuditRecord, Commit, LedgerEntry, Meter, ModuleCheckpoint, MoneyEntry, MoneyKind,
    Session,
};

/// How long a writer waits for the write lock by default.
const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 8;

/// WAL pages after which a commit copies the WAL back into the database
/// (SQLite's `wal_autocheckpoint`; its default is 1000). A checkpoint runs
/// in the committing writer, on the print path, and copies each page once
/// however often it changed since the last one, then syncs the database:
/// ten times fewer checkpoints made the load bench about 18 % faster
/// (BENCHMARKS.md, 2026-12-05 fifth session). The WAL file grows to about
/// this many 4 KiB pages (40 MB) and is then reused from its start.
pub const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// The SQLite store. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    lock_wait: Duration,
    /// This process's writers queue here before taking SQLite's write lock.
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// A turn at writing (see the module docs), held until the write ended.
type WriterTurn = tokio::sync::OwnedMutexGuard<()>;

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.lock_wait)?;
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Invalid(format!(
                    "SQLite refused WAL mode (journal mode is {mode}); is the data directory on a network file system?"
                )));
            }
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};"
        ))?;
        Ok(conn)
    }

    fn get(&self) -> Result<Connection> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        match idle {
            Some(c) => Ok(c),
            None => self.connect(),
        }
    }

    /// Returns a connection to the pool, if it holds no open transaction.
    fn put(&self, conn: Connection) {
        if !conn.is_autocommit() {
            return;
        }
        if let Ok(mut v) = self.idle.lock()
            && v.len() < MAX_IDLE
        {
            v.push(conn);
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, creating its
    /// directory if missing, and applies the migrations it lacks. Blocking.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_lock_wait(path, DEFAULT_LOCK_WAIT)
    }

    /// As [`SqliteStore::open`], with how long `lock_meters` and the other
    /// writers wait for the write lock before [`StoreError::Busy`].
    pub fn open_with_lock_wait(path: &Path, lock_wait: Duration) -> Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            lock_wait,
            writer: Arc::new(tokio::sync::Mutex::new(())),
        });
        let mut conn = inner.connect()?;
        migrate_sqlite(&mut conn)?;
        inner.put(conn);
        Ok(SqliteStore { inner })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a pooled connection on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.run_holding(None, f).await
    }

    /// [`Self::run`], giving up `turn` (if any) once `f` is done.
    async fn run_holding<T, F>(&self, turn: Option<WriterTurn>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.get()?;
            let r = f(&mut conn);
            inner.put(conn);
            drop(turn);
            r
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Waits for this process's turn to write: at once or [`StoreError::Busy`]
    /// with `nowait`, else for at most the lock wait.
    async fn writer_turn(&self, nowait: bool) -> Result<WriterTurn> {
        let gate = self.inner.writer.clone();
        if nowait {
            return gate.try_lock_owned().map_err(|_| StoreError::Busy);
        }
        tokio::time::timeout(self.inner.lock_wait, gate.lock_owned())
            .await
            .map_err(|_| StoreError::Busy)
    }

    /// [`Self::run`] for a write: in this process's turn (module docs).
    async fn run_write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let turn = self.writer_turn(false).await?;
        self.run_holding(Some(turn), f).await
    }

    async fn lock(&self, device_ids: &[String], nowait: bool) -> Result<Box<dyn MeterTx>> {
        let mut ids: Vec<String> = device_ids.to_vec();
        ids.sort();
        ids.dedup();
        let turn = self.writer_turn(nowait).await?;
        let inner = self.inner.clone();
        let tx = tokio::task::spawn_blocking(move || lock_blocking(inner, turn, ids, nowait))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(Box::new(tx))
    }
}

fn migrate_sqlite(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER NOT NULL PRIMARY KEY,
             applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
         ) STRICT;",
    )?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    if current > migrate::LATEST {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: migrate::LATEST,
        });
    }
    for m in migrate::SQLITE.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES (?1)",
            [m.version],
        )?;
    }
    tx.commit()?;
    Ok(())
}

const METER_COLS: &str = "device_id, owner, state, package, certificate, updated";
const CHECKPOINT_COLS: &str = "module_id, checkpoint, seq, time, value_mills";
const LEDGER_COLS: &str = "device_id, piece, account, user_name, postage_mills, ascending_mills, descending_mills, category, indicium, time";
const ACCOUNT_COLS: &str = "login, password_hash, role, failed_logons, locked, created";

fn meter_row(r: &Row<'_>) -> rusqlite::Result<Meter> {
    Ok(Meter {
        device_id: r.get(0)?,
        owner: r.get(1)?,
        state: r.get(2)?,
        package: r.get(3)?,
        certificate: r.get(4)?,
        updated: r.get(5)?,
    })
}

fn checkpoint_row(r: &Row<'_>) -> rusqlite::Result<(String, String, i64, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn checkpoint_from(
    (module_id, checkpoint, seq, time, value): (String, String, i64, i64, i64),
) -> Result<ModuleCheckpoint> {
    Ok(ModuleCheckpoint {
        module_id,
        checkpoint,
        seq: from_db(seq, "checkpoint sequence")?,
        time,
        value_mills: from_db(value, "checkpoint value")?,
    })
}

type LedgerTuple = (
    String,
    i64,
    Option<String>,
    String,
    i64,
    i64,
    i64,
    String,
    Vec<u8>,
    i64,
);

fn ledger_row(r: &Row<'_>) -> rusqlite::Result<LedgerTuple> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn ledger_from(t: LedgerTuple) -> Result<LedgerEntry> {
    Ok(LedgerEntry {
        device_id: t.0,
        piece: from_db(t.1, "piece counter")?,
        account: t.2,
        user_name: t.3,
        postage_mills: from_db(t.4, "postage")?,
        ascending_mills: from_db(t.5, "ascending register")?,
        descending_mills: from_db(t.6, "descending register")?,
        category: t.7,
        indicium: t.8,
        time: t.9,
    })
}

fn account_row(r: &Row<'_>) -> rusqlite::Result<(String, String, String, i64, bool, i64)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn account_from(t: (String, String, String, i64, bool, i64)) -> Result<Account> {
    Ok(Account {
        login: t.0,
        password_hash: t.1,
        role: t.2,
        failed_logons: from_db_u32(t.3, "failed-logon count")?,
        locked: t.4,
        created: t.5,
    })
}

fn all_checkpoints(conn: &Connection) -> Result<Vec<ModuleCheckpoint>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {CHECKPOINT_COLS} FROM module_checkpoints ORDER BY module_id"
    ))?;
    let rows = st
        .query_map([], checkpoint_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(checkpoint_from).collect()
}

/// Inserts one audit entry; the same entry stored already is fine, a
/// different one under the same key is a conflict.
fn insert_audit(conn: &Connection, a: &AuditRecord) -> Result<()> {
    let seq = to_db(a.seq, "audit sequence")?;
    let n = conn
        .prepare_cached(
            "INSERT INTO audit_entries (module_id, seq, line) VALUES (?1, ?2, ?3)
             ON CONFLICT (module_id, seq) DO NOTHING",
        )?
        .execute(params![a.module_id, seq, a.line])?;
    if n == 0 {
        let stored: String = conn
            .prepare_cached("SELECT line FROM audit_entries WHERE module_id = ?1 AND seq = ?2")?
            .query_row(params![a.module_id, seq], |r| r.get(0))?;
        if stored != a.line {
            return Err(StoreError::AuditConflict {
                module_id: a.module_id.clone(),
                seq: a.seq,
            });
        }
    }
    Ok(())
}

fn lock_blocking(
    inner: Arc<Inner>,
    turn: WriterTurn,
    ids: Vec<String>,
    nowait: bool,
) -> Result<SqliteMeterTx> {
    let conn = inner.get()?;
    if nowait {
        conn.busy_timeout(Duration::ZERO)?;
    }
    let begun = conn.execute_batch("BEGIN IMMEDIATE");
    if nowait {
        conn.busy_timeout(inner.lock_wait)?;
    }
    if let Err(e) = begun {
        inner.put(conn);
        return Err(e.into());
    }
    let read = (|| -> Result<(Vec<Meter>, Vec<ModuleCheckpoint>)> {
        let mut meters = Vec::with_capacity(ids.len());
        {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {METER_COLS} FROM meters WHERE device_id = ?1"
            ))?;
            for id in &ids {
                match st.query_row([id], meter_row).optional()? {
                    Some(m) => meters.push(m),
                    None => {
                        return Err(StoreError::NotFound {
                            what: "meter",
                            key: id.clone(),
                        });
                    }
                }
            }
        }
        Ok((meters, all_checkpoints(&conn)?))
    })();
    match read {
        Ok((meters, checkpoints)) => Ok(SqliteMeterTx {
            inner,
            conn: Some(conn),
            locked: ids.into_iter().collect(),
            meters,
            checkpoints,
            turn: Some(turn),
        }),
        Err(e) => {
            // The read changed nothing; if even the rollback fails the
            // connection is dropped, which rolls back too.
            if conn.execute_batch("ROLLBACK").is_ok() {
                inner.put(conn);
            }
            Err(e)
        }
    }
}

/// The session with this token hash, on a blocking thread.
fn session_blocking(c: &Connection, token_hash: &[u8]) -> Result<Option<Session>> {
    Ok(c.prepare_cached(
        "SELECT token_hash, login, created, last_active FROM sessions WHERE token_hash = ?1",
    )?
    .query_row([token_hash], |r| {
        Ok(Session {
            token_hash: r.get(0)?,
            login: r.get(1)?,
            created: r.get(2)?,
            last_active: r.get(3)?,
        })
    })
    .optional()?)
}

fn write_commit(conn: &Connection, c: &Commit) -> Result<()> {
    {
        let mut st = conn.prepare_cached(
            "UPDATE meters SET owner = ?2, state = ?3, package = ?4, certificate = ?5, updated = ?6
             WHERE device_id = ?1",
        )?;
        for m in &c.meters {
            st.execute(params![
                m.device_id,
                m.owner,
                m.state,
                m.package,
                m.certificate,
                m.updated
            ])?;
        }
    }
    if let Some(cp) = &c.checkpoint {
        conn.prepare_cached(
            "INSERT INTO module_checkpoints (module_id, checkpoint, seq, time, value_mills)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (module_id) DO UPDATE SET
                 checkpoint = excluded.checkpoint, seq = excluded.seq,
                 time = excluded.time, value_mills = excluded.value_mills
             WHERE excluded.seq > module_checkpoints.seq",
        )?
        .execute(params![
            cp.module_id,
            cp.checkpoint,
            to_db(cp.seq, "checkpoint sequence")?,
            cp.time,
            to_db(cp.value_mills, "checkpoint value")?
        ])?;
    }
    {
        let mut st = conn.prepare_cached(&format!(
            "INSERT INTO ledger ({LEDGER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?;
        for l in &c.ledger {
            st.execute(params![
                l.device_id,
                to_db(l.piece, "piece counter")?,
                l.account,
                l.user_name,
                to_db(l.postage_mills, "postage")?,
                to_db(l.ascending_mills, "ascending register")?,
                to_db(l.descending_mills, "descending register")?,
                l.category,
                l.indicium,
                l.time
            ])
            .map_err(|e| {
                StoreError::from(e)
                    .duplicate_of("ledger piece", format!("{} #{}", l.device_id, l.piece))
            })?;
        }
    }
    {
        let mut st = conn.prepare_cached(
            "INSERT INTO money (device_id, kind, amount_mills, provider_seq, time, reference)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for m in &c.money {
            let seq = m
                .provider_seq
                .map(|s| to_db(s, "provider sequence"))
                .transpose()?;
            st.execute(params![
                m.device_id,
                m.kind.as_str(),
                to_db(m.amount_mills, "amount")?,
                seq,
                m.time,
                m.reference
            ])
            .map_err(|e| {
                StoreError::from(e).duplicate_of(
                    "provider sequence",
                    format!("{} {} #{:?}", m.device_id, m.kind.as_str(), m.provider_seq),
                )
            })?;
        }
    }
    for a in &c.audit {
        insert_audit(conn, a)?;
    }
    Ok(())
}

/// A SQLite meter transaction: a connection inside `BEGIN IMMEDIATE`.
struct SqliteMeterTx {
    inner: Arc<Inner>,
    /// `None` once committed or rolled back.
    conn: Option<Connection>,
    locked: HashSet<String>,
    meters: Vec<Meter>,
    checkpoints: Vec<ModuleCheckpoint>,
    /// This process's turn to write, given up when the transaction ended
    /// (declared last: dropped after `conn`).
    turn: Option<WriterTurn>,
}

/// Ends the transaction on `conn` with `ROLLBACK` and pools the connection
/// (or drops it, which rolls back too, if the rollback failed).
fn rollback_and_put(inner: &Inner, conn: Connection) -> Result<()> {
    let r = conn.execute_batch("ROLLBACK");
    inner.put(conn);
    r.map_err(StoreError::from)
}

#[async_trait]
impl MeterTx for SqliteMeterTx {
    fn meters(&self) -> &[Meter] {
        &self.meters
    }

    fn checkpoints(&self) -> &[ModuleCheckpoint] {
        &self.checkpoints
    }

    async fn commit(mut self: Box<Self>, commit: Commit) -> Result<()> {
        let Some(conn) = self.conn.take() else {
            return Err(StoreError::Invalid("transaction already ended".into()));
        };
        let inner = self.inner.clone();
        let locked = std::mem::take(&mut self.locked);
        let turn = self.turn.take();
        // The blocking task owns the connection and the turn: even if this
        // future is dropped, the task runs to COMMIT or ROLLBACK first.
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let r = check_commit(&commit, &locked)
                .and_then(|()| write_commit(&conn, &commit))
                .and_then(|()| conn.execute_batch("COMMIT").map_err(StoreError::from));
            match r {
                Ok(()) => {
                    inner.put(conn);
                    Ok(())
                }
                Err(e) => {
                    if !conn.is_autocommit() {
                        let _ = rollback_and_put(&inner, conn);
                    }
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn rollback(mut self: Box<Self>) -> Result<()> {
        let Some(conn) = self.conn.take() else {
            return Ok(());
        };
        let inner = self.inner.clone();
        let turn = self.turn.take();
        tokio::task::spawn_blocking(move || {
            let r = rollback_and_put(&inner, conn);
            drop(turn);
            r
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

impl Drop for SqliteMeterTx {
    fn drop(&mut self) {
        // Dropped uncommitted: roll back here. A rollback is quick (nothing
        // to sync), so doing it in place beats leaving the lock held.
        if let Some(conn) = self.conn.take() {
            let _ = rollback_and_put(&self.inner, conn);
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn engine(&self) -> &'static str {
        "sqlite"
    }

    fn one_meter_transaction_at_a_time(&self) -> bool {
        true
    }

    async fn schema_version(&self) -> Result<i64> {
        self.run(|c| {
            Ok(c.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn create_meter(&self, meter: &Meter) -> Result<()> {
        let m = meter.clone();
        self.run_write(move |c| {
            c.execute(
                &format!("INSERT INTO meters ({METER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    m.device_id,
                    m.owner,
                    m.state,
                    m.package,
                    m.certificate,
                    m.updated
                ],
            )
            .map_err(|e| StoreError::from(e).duplicate_of("device ID", m.device_id.clone()))?;
            Ok(())
        })
        .await
    }

    async fn get_meter(&self, device_id: &str) -> Result<Option<Meter>> {
        let id = device_id.to_string();
        self.run(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {METER_COLS} FROM meters WHERE device_id = ?1"
            ))?
            .query_row([id], meter_row)
            .optional()?)
        })
        .await
    }

    async fn meters_of_account(&self, login: &str) -> Result<Vec<Meter>> {
        let login = login.to_string();
        self.run(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {METER_COLS} FROM meters WHERE owner = ?1 ORDER BY device_id"
            ))?
            .query_map([login], meter_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn reserve_meter(&self, owner: &str, state: &str, now: i64) -> Result<Option<Meter>> {
        let (owner, state) = (owner.to_string(), state.to_string());
        // One statement, so SQLite runs it atomically under its write lock.
        self.run_write(move |c| {
            Ok(c.prepare_cached(&format!(
                "UPDATE meters SET owner = ?1, updated = ?3
                 WHERE owner IS NULL AND device_id = (
                     SELECT device_id FROM meters WHERE owner IS NULL AND state = ?2
                     ORDER BY device_id LIMIT 1)
                 RETURNING {METER_COLS}"
            ))?
            .query_row(params![owner, state, now], meter_row)
            .optional()?)
        })
        .await
    }

    async fn count_meters(&self, free_in: Option<&str>) -> Result<u64> {
        let state = free_in.map(str::to_string);
        self.run(move |c| {
            let n: i64 = match state {
                None => c.query_row("SELECT COUNT(*) FROM meters", [], |r| r.get(0))?,
                Some(s) => c.query_row(
                    "SELECT COUNT(*) FROM meters WHERE owner IS NULL AND state = ?1",
                    [s],
                    |r| r.get(0),
                )?,
            };
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn lock_meters(&self, device_ids: &[String]) -> Result<Box<dyn MeterTx>> {
        self.lock(device_ids, false).await
    }

    async fn try_lock_meters(&self, device_ids: &[String]) -> Result<Box<dyn MeterTx>> {
        self.lock(device_ids, true).await
    }

    async fn get_checkpoint(&self, module_id: &str) -> Result<Option<ModuleCheckpoint>> {
        let id = module_id.to_string();
        self.run(move |c| {
            c.prepare_cached(&format!(
                "SELECT {CHECKPOINT_COLS} FROM module_checkpoints WHERE module_id = ?1"
            ))?
            .query_row([id], checkpoint_row)
            .optional()?
            .map(checkpoint_from)
            .transpose()
        })
        .await
    }

    async fn all_checkpoints(&self) -> Result<Vec<ModuleCheckpoint>> {
        self.run(|c| all_checkpoints(c)).await
    }

    async fn append_audit(&self, entries: &[AuditRecord]) -> Result<()> {
        let entries = entries.to_vec();
        self.run_write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for a in &entries {
                insert_audit(&tx, a)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn audit_entries(&self, module_id: &str, from_seq: u64) -> Result<Vec<AuditRecord>> {
        let id = module_id.to_string();
        // Beyond i64::MAX there is nothing stored.
        let Ok(from) = i64::try_from(from_seq) else {
            return Ok(Vec::new());
        };
        self.run(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT module_id, seq, line FROM audit_entries
                     WHERE module_id = ?1 AND seq >= ?2 ORDER BY seq",
                )?
                .query_map(params![id, from], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get(2)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(module_id, seq, line)| {
                    Ok(AuditRecord {
                        module_id,
                        seq: from_db(seq, "audit sequence")?,
                        line,
                    })
                })
                .collect()
        })
        .await
    }

    async fn ledger_of_meter(&self, device_id: &str) -> Result<Vec<LedgerEntry>> {
        let id = device_id.to_string();
        self.run(move |c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {LEDGER_COLS} FROM ledger WHERE device_id = ?1 ORDER BY piece"
                ))?
                .query_map([id], ledger_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(ledger_from).collect()
        })
        .await
    }

    async fn ledger_of_account(&self, login: &str) -> Result<Vec<LedgerEntry>> {
        let login = login.to_string();
        self.run(move |c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {LEDGER_COLS} FROM ledger WHERE account = ?1
                     ORDER BY time, device_id, piece"
                ))?
                .query_map([login], ledger_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(ledger_from).collect()
        })
        .await
    }

    async fn money_of_meter(&self, device_id: &str) -> Result<Vec<MoneyEntry>> {
        let id = device_id.to_string();
        self.run(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT device_id, kind, amount_mills, provider_seq, time, reference
                     FROM money WHERE device_id = ?1 ORDER BY id",
                )?
                .query_map([id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(device_id, kind, amount, seq, time, reference)| {
                    Ok(MoneyEntry {
                        device_id,
                        kind: MoneyKind::parse(&kind)
                            .ok_or_else(|| StoreError::Corrupt(format!("money kind {kind:?}")))?,
                        amount_mills: from_db(amount, "amount")?,
                        provider_seq: seq.map(|s| from_db(s, "provider sequence")).transpose()?,
                        time,
                        reference,
                    })
                })
                .collect()
        })
        .await
    }

    async fn create_account(&self, account: &Account) -> Result<()> {
        let a = account.clone();
        self.run_write(move |c| {
            c.execute(
                &format!("INSERT INTO accounts ({ACCOUNT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    a.login,
                    a.password_hash,
                    a.role,
                    i64::from(a.failed_logons),
                    a.locked,
                    a.created
                ],
            )
            .map_err(|e| StoreError::from(e).duplicate_of("login", a.login.clone()))?;
            Ok(())
        })
        .await
    }

    async fn get_account(&self, login: &str) -> Result<Option<Account>> {
        let login = login.to_string();
        self.run(move |c| {
            c.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLS} FROM accounts WHERE login = ?1"
            ))?
            .query_row([login], account_row)
            .optional()?
            .map(account_from)
            .transpose()
        })
        .await
    }

    async fn record_failed_logon(&self, login: &str, lock_after: u32) -> Result<Account> {
        let login = login.to_string();
        self.run_write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row = tx
                .query_row(
                    &format!(
                        "UPDATE accounts SET failed_logons = failed_logons + 1,
                             locked = CASE WHEN failed_logons + 1 >= ?2 THEN 1 ELSE locked END
                         WHERE login = ?1 RETURNING {ACCOUNT_COLS}"
                    ),
                    params![login, i64::from(lock_after)],
                    account_row,
                )
                .optional()?;
            let Some(row) = row else {
                return Err(StoreError::NotFound {
                    what: "account",
                    key: login,
                });
            };
            tx.commit()?;
            account_from(row)
        })
        .await
    }

    async fn record_successful_logon(&self, login: &str) -> Result<()> {
        let login = login.to_string();
        self.run_write(move |c| {
            let n = c.execute(
                "UPDATE accounts SET failed_logons = 0 WHERE login = ?1",
                [&login],
            )?;
            found(n, "account", login)
        })
        .await
    }

    async fn set_account_locked(&self, login: &str, locked: bool) -> Result<()> {
        let login = login.to_string();
        self.run_write(move |c| {
            let n = c.execute(
                "UPDATE accounts SET locked = ?2,
                     failed_logons = CASE WHEN ?2 THEN failed_logons ELSE 0 END
                 WHERE login = ?1",
                params![login, locked],
            )?;
            found(n, "account", login)
        })
        .await
    }

    async fn set_password_hash(&self, login: &str, password_hash: &str) -> Result<()> {
        let login = login.to_string();
        let hash = password_hash.to_string();
        self.run_write(move |c| {
            let n = c.execute(
                "UPDATE accounts SET password_hash = ?2 WHERE login = ?1",
                params![login, hash],
            )?;
            found(n, "account", login)
        })
        .await
    }

    async fn create_session(&self, session: &Session) -> Result<()> {
        let s = session.clone();
        self.run_write(move |c| {
            c.execute(
                "INSERT INTO sessions (token_hash, login, created, last_active)
                 VALUES (?1, ?2, ?3, ?4)",
                params![s.token_hash, s.login, s.created, s.last_active],
            )
            .map_err(|e| StoreError::from(e).duplicate_of("session", "token hash"))?;
            Ok(())
        })
        .await
    }

    async fn get_session(&self, token_hash: &[u8]) -> Result<Option<Session>> {
        let h = token_hash.to_vec();
        self.run(move |c| session_blocking(c, &h)).await
    }

    async fn get_session_account(&self, token_hash: &[u8]) -> Result<Option<(Session, Account)>> {
        let h = token_hash.to_vec();
        // Both reads in one trip to the blocking pool, on one connection.
        self.run(move |c| {
            let Some(session) = session_blocking(c, &h)? else {
                return Ok(None);
            };
            let account = c
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLS} FROM accounts WHERE login = ?1"
                ))?
                .query_row([&session.login], account_row)
                .optional()?
                .map(account_from)
                .transpose()?;
            Ok(account.map(|a| (session, a)))
        })
        .await
    }

    async fn touch_session(&self, token_hash: &[u8], now: i64) -> Result<bool> {
        let h = token_hash.to_vec();
        self.run_write(move |c| {
            Ok(c.execute(
                "UPDATE sessions SET last_active = ?2 WHERE token_hash = ?1",
                params![h, now],
            )? > 0)
        })
        .await
    }

    async fn delete_session(&self, token_hash: &[u8]) -> Result<bool> {
        let h = token_hash.to_vec();
        self.run_write(move |c| {
            Ok(c.execute("DELETE FROM sessions WHERE token_hash = ?1", [h])? > 0)
        })
        .await
    }

    async fn delete_idle_sessions(&self, idle_before: i64) -> Result<u64> {
        self.run_write(move |c| {
            let n = c.execute("DELETE FROM sessions WHERE last_active < ?1", [idle_before])?;
            Ok(n as u64)
        })
        .await
    }
}

/// `Ok` if an update touched a row, else [`StoreError::NotFound`].
fn found(n: usize, what: &'static str, key: String) -> Result<()> {
    if n == 0 {
        Err(StoreError::NotFound { what, key })
    } else {
        Ok(())
    }
}
