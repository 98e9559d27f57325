//! The PostgreSQL engine, for several servers sharing the work.
//!
//! Locking: a meter transaction locks its meters' rows with `SELECT ... FOR
//! UPDATE` in device-ID order (so two transactions over overlapping meters
//! cannot deadlock), waiting up to the lock wait (`lock_timeout`);
//! `try_lock_meters` adds `NOWAIT`. Meters not named stay free for other
//! servers. The module-table row is upserted inside the commit, which
//! serializes commits of one module on that row.
//!
//! Commits write each table with one statement over arrays (`UNNEST`), so a
//! group of many indicia costs a handful of round trips and one WAL flush.
//!
//! Connections come from a small pool of its own (a semaphore and a list of
//! idle clients). The connection is made without TLS: run PostgreSQL on the
//! same host or a private network, or through a Unix socket.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls, Row};

use crate::convert::{check_commit, from_db, from_db_u32, to_db};
use crate::error::{Result, StoreError};
use crate::migrate;
use crate::store::{MeterTx, Store};
use crate::types::{
    Account, AuditRecord, Commit, LedgerEntry, Meter, ModuleCheckpoint, MoneyEntry, MoneyKind,
    Session,
};

/// How long `lock_meters` waits for a row lock by default.
const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Connections per store by default.
const DEFAULT_POOL_SIZE: usize = 8;

/// A key for `pg_advisory_xact_lock` that serializes migrations between
/// servers starting at once ("postvault" in ASCII, truncated).
const MIGRATION_LOCK_KEY: i64 = 0x706f_7374_7661_756c;

/// The PostgreSQL store. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgStore {
    // The configuration may hold a password: print nothing of it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

struct Inner {
    config: Config,
    idle: Mutex<Vec<Client>>,
    slots: Arc<Semaphore>,
    lock_wait: Duration,
}

/// A client taken from the pool. It goes back on drop only when
/// `reusable` (not in the middle of a transaction) and still connected.
struct Pooled {
    client: Option<Client>,
    inner: Arc<Inner>,
    _slot: OwnedSemaphorePermit,
    reusable: bool,
}

impl Pooled {
    fn client(&self) -> Result<&Client> {
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::Task("pooled client already returned".into()))
    }

    /// The transaction on this client is over (committed or rolled back):
    /// it may go back to the pool.
    fn release(&mut self) {
        self.reusable = true;
    }

    fn client_mut(&mut self) -> Result<&mut Client> {
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Task("pooled client already returned".into()))
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && self.reusable
            && !c.is_closed()
            && let Ok(mut idle) = self.inner.idle.lock()
        {
            idle.push(c);
        }
        // Otherwise the client is dropped, which closes the connection; the
        // server then rolls back whatever it had open.
    }
}

impl Inner {
    async fn get(self: &Arc<Self>) -> Result<Pooled> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let idle = loop {
            let c = self.idle.lock().ok().and_then(|mut v| v.pop());
            match c {
                Some(c) if c.is_closed() => continue,
                other => break other,
            }
        };
        let client = match idle {
            Some(c) => c,
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                // The connection task ends when the client is dropped or the
                // server goes away; its error then shows on the client.
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
            }
        };
        Ok(Pooled {
            client: Some(client),
            inner: self.clone(),
            _slot: slot,
            reusable: true,
        })
    }
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL or a
    /// `key=value` string, as `tokio-postgres` takes them) and applies the
    /// migrations it lacks.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, DEFAULT_POOL_SIZE, DEFAULT_LOCK_WAIT).await
    }

    /// As [`PgStore::connect`], with the pool size and how long
    /// `lock_meters` waits for a row lock before [`StoreError::Busy`].
    pub async fn connect_with(url: &str, pool_size: usize, lock_wait: Duration) -> Result<Self> {
        // The parse error does not repeat the URL, which may hold a password.
        let config = Config::from_str(url)
            .map_err(|e| StoreError::Url(format!("not a PostgreSQL connection string: {e}")))?;
        let inner = Arc::new(Inner {
            config,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(pool_size.max(1))),
            lock_wait,
        });
        let store = PgStore { inner };
        let mut c = store.inner.get().await?;
        migrate_pg(c.client_mut()?).await?;
        Ok(store)
    }

    async fn lock(&self, device_ids: &[String], nowait: bool) -> Result<Box<dyn MeterTx>> {
        let mut ids: Vec<String> = device_ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut pooled = self.inner.get().await?;
        // Until COMMIT or ROLLBACK has gone through, this client must not go
        // back to the pool.
        pooled.reusable = false;
        let c = pooled.client()?;
        let wait_ms = self.inner.lock_wait.as_millis().max(1);
        // synchronous_commit is forced on whatever the server's default: a
        // commit reported done is an indicium handed out, so it must be on
        // disk (and on a synchronous standby, where one is configured).
        c.batch_execute(&format!(
            "BEGIN; SET LOCAL lock_timeout = {wait_ms}; SET LOCAL synchronous_commit = on"
        ))
        .await?;
        let read = async {
            let sql = format!(
                "SELECT {METER_COLS} FROM meters WHERE device_id = ANY($1)
                 ORDER BY device_id FOR UPDATE{}",
                if nowait { " NOWAIT" } else { "" }
            );
            let rows = c.query(&sql, &[&ids]).await?;
            let meters: Vec<Meter> = rows.iter().map(meter_from).collect::<Result<_>>()?;
            if let Some(missing) = ids
                .iter()
                .find(|id| !meters.iter().any(|m| &m.device_id == *id))
            {
                return Err(StoreError::NotFound {
                    what: "meter",
                    key: missing.clone(),
                });
            }
            let checkpoints = all_checkpoints(c).await?;
            Ok((meters, checkpoints))
        }
        .await;
        match read {
            Ok((meters, checkpoints)) => Ok(Box::new(PgMeterTx {
                pooled: Some(pooled),
                locked: ids.into_iter().collect(),
                meters,
                checkpoints,
            })),
            Err(e) => {
                if c.batch_execute("ROLLBACK").await.is_ok() {
                    pooled.release();
                }
                Err(e)
            }
        }
    }
}

async fn migrate_pg(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version BIGINT NOT NULL PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    if current > migrate::LATEST {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: migrate::LATEST,
        });
    }
    for m in migrate::POSTGRES.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&m.version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

const METER_COLS: &str = "device_id, owner, state, package, certificate, updated";
const CHECKPOINT_COLS: &str = "module_id, checkpoint, seq, time, value_mills";
const LEDGER_COLS: &str = "device_id, piece, account, user_name, postage_mills, ascending_mills, descending_mills, category, indicium, time";
const ACCOUNT_COLS: &str = "login, password_hash, role, failed_logons, locked, created";

fn meter_from(r: &Row) -> Result<Meter> {
    Ok(Meter {
        device_id: r.try_get(0)?,
        owner: r.try_get(1)?,
        state: r.try_get(2)?,
        package: r.try_get(3)?,
        certificate: r.try_get(4)?,
        updated: r.try_get(5)?,
    })
}

fn checkpoint_from(r: &Row) -> Result<ModuleCheckpoint> {
    Ok(ModuleCheckpoint {
        module_id: r.try_get(0)?,
        checkpoint: r.try_get(1)?,
        seq: from_db(r.try_get(2)?, "checkpoint sequence")?,
        time: r.try_get(3)?,
        value_mills: from_db(r.try_get(4)?, "checkpoint value")?,
    })
}

fn ledger_from(r: &Row) -> Result<LedgerEntry> {
    Ok(LedgerEntry {
        device_id: r.try_get(0)?,
        piece: from_db(r.try_get(1)?, "piece counter")?,
        account: r.try_get(2)?,
        user_name: r.try_get(3)?,
        postage_mills: from_db(r.try_get(4)?, "postage")?,
        ascending_mills: from_db(r.try_get(5)?, "ascending register")?,
        descending_mills: from_db(r.try_get(6)?, "descending register")?,
        category: r.try_get(7)?,
        indicium: r.try_get(8)?,
        time: r.try_get(9)?,
    })
}

fn account_from(r: &Row) -> Result<Account> {
    Ok(Account {
        login: r.try_get(0)?,
        password_hash: r.try_get(1)?,
        role: r.try_get(2)?,
        failed_logons: from_db_u32(r.try_get(3)?, "failed-logon count")?,
        locked: r.try_get(4)?,
        created: r.try_get(5)?,
    })
}

fn session_from(r: &Row) -> Result<Session> {
    Ok(Session {
        token_hash: r.try_get(0)?,
        login: r.try_get(1)?,
        created: r.try_get(2)?,
        last_active: r.try_get(3)?,
    })
}

/// The session with this token hash, on connection `c`.
async fn session_on(c: &Client, token_hash: &[u8]) -> Result<Option<Session>> {
    c.query_opt(
        "SELECT token_hash, login, created, last_active FROM sessions WHERE token_hash = $1",
        &[&token_hash],
    )
    .await?
    .as_ref()
    .map(session_from)
    .transpose()
}

async fn all_checkpoints(c: &Client) -> Result<Vec<ModuleCheckpoint>> {
    c.query(
        &format!("SELECT {CHECKPOINT_COLS} FROM module_checkpoints ORDER BY module_id"),
        &[],
    )
    .await?
    .iter()
    .map(checkpoint_from)
    .collect()
}

/// Inserts audit entries (one statement); entries stored already with the
/// same line are fine, a different line under the same key is a conflict.
async fn insert_audit<C: tokio_postgres::GenericClient>(
    c: &C,
    entries: &[AuditRecord],
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = entries.iter().map(|a| a.module_id.as_str()).collect();
    let seqs: Vec<i64> = entries
        .iter()
        .map(|a| to_db(a.seq, "audit sequence"))
        .collect::<Result<_>>()?;
    let lines: Vec<&str> = entries.iter().map(|a| a.line.as_str()).collect();
    c.execute(
        "INSERT INTO audit_entries (module_id, seq, line)
         SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[])
         ON CONFLICT (module_id, seq) DO NOTHING",
        &[&ids, &seqs, &lines],
    )
    .await?;
    let conflict = c
        .query_opt(
            "SELECT n.module_id, n.seq FROM audit_entries a
             JOIN UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[]) AS n (module_id, seq, line)
               ON a.module_id = n.module_id AND a.seq = n.seq
             WHERE a.line <> n.line LIMIT 1",
            &[&ids, &seqs, &lines],
        )
        .await?;
    if let Some(row) = conflict {
        return Err(StoreError::AuditConflict {
            module_id: row.try_get(0)?,
            seq: from_db(row.try_get(1)?, "audit sequence")?,
        });
    }
    Ok(())
}

async fn write_commit(c: &Client, commit: &Commit) -> Result<()> {
    if !commit.meters.is_empty() {
        let ids: Vec<&str> = commit.meters.iter().map(|m| m.device_id.as_str()).collect();
        let owners: Vec<Option<&str>> = commit.meters.iter().map(|m| m.owner.as_deref()).collect();
        let states: Vec<&str> = commit.meters.iter().map(|m| m.state.as_str()).collect();
        let packages: Vec<&str> = commit.meters.iter().map(|m| m.package.as_str()).collect();
        let certs: Vec<Option<&[u8]>> = commit
            .meters
            .iter()
            .map(|m| m.certificate.as_deref())
            .collect();
        let updated: Vec<i64> = commit.meters.iter().map(|m| m.updated).collect();
        c.execute(
            "UPDATE meters AS m SET owner = u.owner, state = u.state, package = u.package,
                 certificate = u.certificate, updated = u.updated
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BYTEA[], $6::BIGINT[])
                 AS u (device_id, owner, state, package, certificate, updated)
             WHERE m.device_id = u.device_id",
            &[&ids, &owners, &states, &packages, &certs, &updated],
        )
        .await?;
    }
    if let Some(cp) = &commit.checkpoint {
        c.execute(
            "INSERT INTO module_checkpoints (module_id, checkpoint, seq, time, value_mills)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (module_id) DO UPDATE SET
                 checkpoint = excluded.checkpoint, seq = excluded.seq,
                 time = excluded.time, value_mills = excluded.value_mills
             WHERE excluded.seq > module_checkpoints.seq",
            &[
                &cp.module_id,
                &cp.checkpoint,
                &to_db(cp.seq, "checkpoint sequence")?,
                &cp.time,
                &to_db(cp.value_mills, "checkpoint value")?,
            ],
        )
        .await?;
    }
    if !commit.ledger.is_empty() {
        let l = &commit.ledger;
        let ids: Vec<&str> = l.iter().map(|e| e.device_id.as_str()).collect();
        let pieces: Vec<i64> = l
            .iter()
            .map(|e| to_db(e.piece, "piece counter"))
            .collect::<Result<_>>()?;
        let accounts: Vec<Option<&str>> = l.iter().map(|e| e.account.as_deref()).collect();
        let users: Vec<&str> = l.iter().map(|e| e.user_name.as_str()).collect();
        let postage: Vec<i64> = l
            .iter()
            .map(|e| to_db(e.postage_mills, "postage"))
            .collect::<Result<_>>()?;
        let ar: Vec<i64> = l
            .iter()
            .map(|e| to_db(e.ascending_mills, "ascending register"))
            .collect::<Result<_>>()?;
        let dr: Vec<i64> = l
            .iter()
            .map(|e| to_db(e.descending_mills, "descending register"))
            .collect::<Result<_>>()?;
        let cats: Vec<&str> = l.iter().map(|e| e.category.as_str()).collect();
        let indicia: Vec<&[u8]> = l.iter().map(|e| e.indicium.as_slice()).collect();
        let times: Vec<i64> = l.iter().map(|e| e.time).collect();
        c.execute(
            &format!(
                "INSERT INTO ledger ({LEDGER_COLS})
                 SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[],
                     $5::BIGINT[], $6::BIGINT[], $7::BIGINT[], $8::TEXT[], $9::BYTEA[], $10::BIGINT[])"
            ),
            &[
                &ids, &pieces, &accounts, &users, &postage, &ar, &dr, &cats, &indicia, &times,
            ],
        )
        .await
        .map_err(|e| StoreError::from(e).duplicate_of("ledger piece", "device ID and piece counter"))?;
    }
    if !commit.money.is_empty() {
        let m = &commit.money;
        let ids: Vec<&str> = m.iter().map(|e| e.device_id.as_str()).collect();
        let kinds: Vec<&str> = m.iter().map(|e| e.kind.as_str()).collect();
        let amounts: Vec<i64> = m
            .iter()
            .map(|e| to_db(e.amount_mills, "amount"))
            .collect::<Result<_>>()?;
        let seqs: Vec<Option<i64>> = m
            .iter()
            .map(|e| {
                e.provider_seq
                    .map(|s| to_db(s, "provider sequence"))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        let times: Vec<i64> = m.iter().map(|e| e.time).collect();
        let refs: Vec<&str> = m.iter().map(|e| e.reference.as_str()).collect();
        // WITH ORDINALITY keeps the batch's order in the identity column.
        c.execute(
            "INSERT INTO money (device_id, kind, amount_mills, provider_seq, time, reference)
             SELECT device_id, kind, amount_mills, provider_seq, time, reference
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::TEXT[])
                 WITH ORDINALITY AS u (device_id, kind, amount_mills, provider_seq, time, reference, n)
             ORDER BY n",
            &[&ids, &kinds, &amounts, &seqs, &times, &refs],
        )
        .await
        .map_err(|e| StoreError::from(e).duplicate_of("provider sequence", "device ID, kind and provider sequence"))?;
    }
    insert_audit(c, &commit.audit).await
}

/// A PostgreSQL meter transaction: a pooled client inside `BEGIN`, holding
/// row locks.
struct PgMeterTx {
    /// `None` once committed or rolled back.
    pooled: Option<Pooled>,
    locked: HashSet<String>,
    meters: Vec<Meter>,
    checkpoints: Vec<ModuleCheckpoint>,
}

#[async_trait]
impl MeterTx for PgMeterTx {
    fn meters(&self) -> &[Meter] {
        &self.meters
    }

    fn checkpoints(&self) -> &[ModuleCheckpoint] {
        &self.checkpoints
    }

    async fn commit(mut self: Box<Self>, commit: Commit) -> Result<()> {
        let Some(mut pooled) = self.pooled.take() else {
            return Err(StoreError::Invalid("transaction already ended".into()));
        };
        // If this future is dropped half-way, `pooled` is dropped with
        // `reusable == false`: the connection closes and the server rolls
        // back.
        let c = pooled.client()?;
        let r = async {
            check_commit(&commit, &self.locked)?;
            write_commit(c, &commit).await?;
            c.batch_execute("COMMIT").await?;
            Ok(())
        }
        .await;
        match r {
            Ok(()) => {
                pooled.release();
                Ok(())
            }
            Err(e) => {
                if c.batch_execute("ROLLBACK").await.is_ok() {
                    pooled.release();
                }
                Err(e)
            }
        }
    }

    async fn rollback(mut self: Box<Self>) -> Result<()> {
        let Some(mut pooled) = self.pooled.take() else {
            return Ok(());
        };
        pooled.client()?.batch_execute("ROLLBACK").await?;
        pooled.release();
        Ok(())
    }
}

impl Drop for PgMeterTx {
    fn drop(&mut self) {
        let Some(mut pooled) = self.pooled.take() else {
            return;
        };
        // Dropped uncommitted: roll back on the runtime, then pool the
        // client. Without a runtime, dropping the client closes the
        // connection, and the server rolls back.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some(c) = pooled.client.as_ref()
                    && c.batch_execute("ROLLBACK").await.is_ok()
                {
                    pooled.release();
                }
            });
        }
    }
}

#[async_trait]
impl Store for PgStore {
    fn engine(&self) -> &'static str {
        "postgres"
    }

    async fn schema_version(&self) -> Result<i64> {
        let c = self.inner.get().await?;
        Ok(c.client()?
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .await?
            .try_get(0)?)
    }

    async fn create_meter(&self, m: &Meter) -> Result<()> {
        let c = self.inner.get().await?;
        c.client()?
            .execute(
                &format!("INSERT INTO meters ({METER_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"),
                &[
                    &m.device_id,
                    &m.owner,
                    &m.state,
                    &m.package,
                    &m.certificate,
                    &m.updated,
                ],
            )
            .await
            .map_err(|e| StoreError::from(e).duplicate_of("device ID", m.device_id.clone()))?;
        Ok(())
    }

    async fn get_meter(&self, device_id: &str) -> Result<Option<Meter>> {
        let c = self.inner.get().await?;
        c.client()?
            .query_opt(
                &format!("SELECT {METER_COLS} FROM meters WHERE device_id = $1"),
                &[&device_id],
            )
            .await?
            .as_ref()
            .map(meter_from)
            .transpose()
    }

    async fn meters_of_account(&self, login: &str) -> Result<Vec<Meter>> {
        let c = self.inner.get().await?;
        c.client()?
            .query(
                &format!("SELECT {METER_COLS} FROM meters WHERE owner = $1 ORDER BY device_id"),
                &[&login],
            )
            .await?
            .iter()
            .map(meter_from)
            .collect()
    }

    async fn reserve_meter(&self, owner: &str, state: &str, now: i64) -> Result<Option<Meter>> {
        let c = self.inner.get().await?;
        // SKIP LOCKED: two servers reserving at once take different rows
        // instead of waiting for each other.
        c.client()?
            .query_opt(
                &format!(
                    "UPDATE meters SET owner = $1, updated = $3
                     WHERE owner IS NULL AND device_id = (
                         SELECT device_id FROM meters WHERE owner IS NULL AND state = $2
                         ORDER BY device_id LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING {METER_COLS}"
                ),
                &[&owner, &state, &now],
            )
            .await?
            .as_ref()
            .map(meter_from)
            .transpose()
    }

    async fn count_meters(&self, free_in: Option<&str>) -> Result<u64> {
        let c = self.inner.get().await?;
        let row = match free_in {
            None => {
                c.client()?
                    .query_one("SELECT COUNT(*)::BIGINT FROM meters", &[])
                    .await?
            }
            Some(state) => {
                c.client()?
                    .query_one(
                        "SELECT COUNT(*)::BIGINT FROM meters WHERE owner IS NULL AND state = $1",
                        &[&state],
                    )
                    .await?
            }
        };
        let n: i64 = row.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn lock_meters(&self, device_ids: &[String]) -> Result<Box<dyn MeterTx>> {
        self.lock(device_ids, false).await
    }

    async fn try_lock_meters(&self, device_ids: &[String]) -> Result<Box<dyn MeterTx>> {
        self.lock(device_ids, true).await
    }

    async fn get_checkpoint(&self, module_id: &str) -> Result<Option<ModuleCheckpoint>> {
        let c = self.inner.get().await?;
        c.client()?
            .query_opt(
                &format!("SELECT {CHECKPOINT_COLS} FROM module_checkpoints WHERE module_id = $1"),
                &[&module_id],
            )
            .await?
            .as_ref()
            .map(checkpoint_from)
            .transpose()
    }

    async fn all_checkpoints(&self) -> Result<Vec<ModuleCheckpoint>> {
        let c = self.inner.get().await?;
        all_checkpoints(c.client()?).await
    }

    async fn append_audit(&self, entries: &[AuditRecord]) -> Result<()> {
        let mut c = self.inner.get().await?;
        let tx = c.client_mut()?.transaction().await?;
        insert_audit(&tx, entries).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_entries(&self, module_id: &str, from_seq: u64) -> Result<Vec<AuditRecord>> {
        let Ok(from) = i64::try_from(from_seq) else {
            return Ok(Vec::new());
        };
        let c = self.inner.get().await?;
        c.client()?
            .query(
                "SELECT module_id, seq, line FROM audit_entries
                 WHERE module_id = $1 AND seq >= $2 ORDER BY seq",
                &[&module_id, &from],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(AuditRecord {
                    module_id: r.try_get(0)?,
                    seq: from_db(r.try_get(1)?, "audit sequence")?,
                    line: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn ledger_of_meter(&self, device_id: &str) -> Result<Vec<LedgerEntry>> {
        let c = self.inner.get().await?;
        c.client()?
            .query(
                &format!("SELECT {LEDGER_COLS} FROM ledger WHERE device_id = $1 ORDER BY piece"),
                &[&device_id],
            )
            .await?
            .iter()
            .map(ledger_from)
            .collect()
    }

    async fn ledger_of_account(&self, login: &str) -> Result<Vec<LedgerEntry>> {
        let c = self.inner.get().await?;
        c.client()?
            .query(
                &format!(
                    "SELECT {LEDGER_COLS} FROM ledger WHERE account = $1
                     ORDER BY time, device_id, piece"
                ),
                &[&login],
            )
            .await?
            .iter()
            .map(ledger_from)
            .collect()
    }

    async fn money_of_meter(&self, device_id: &str) -> Result<Vec<MoneyEntry>> {
        let c = self.inner.get().await?;
        c.client()?
            .query(
                "SELECT device_id, kind, amount_mills, provider_seq, time, reference
                 FROM money WHERE device_id = $1 ORDER BY id",
                &[&device_id],
            )
            .await?
            .iter()
            .map(|r| {
                let kind: String = r.try_get(1)?;
                Ok(MoneyEntry {
                    device_id: r.try_get(0)?,
                    kind: MoneyKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("money kind {kind:?}")))?,
                    amount_mills: from_db(r.try_get(2)?, "amount")?,
                    provider_seq: r
                        .try_get::<_, Option<i64>>(3)?
                        .map(|s| from_db(s, "provider sequence"))
                        .transpose()?,
                    time: r.try_get(4)?,
                    reference: r.try_get(5)?,
                })
            })
            .collect()
    }

    async fn create_account(&self, a: &Account) -> Result<()> {
        let c = self.inner.get().await?;
        c.client()?
            .execute(
                &format!("INSERT INTO accounts ({ACCOUNT_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"),
                &[
                    &a.login,
                    &a.password_hash,
                    &a.role,
                    &i64::from(a.failed_logons),
                    &a.locked,
                    &a.created,
                ],
            )
            .await
            .map_err(|e| StoreError::from(e).duplicate_of("login", a.login.clone()))?;
        Ok(())
    }

    async fn get_account(&self, login: &str) -> Result<Option<Account>> {
        let c = self.inner.get().await?;
        c.client()?
            .query_opt(
                &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE login = $1"),
                &[&login],
            )
            .await?
            .as_ref()
            .map(account_from)
            .transpose()
    }

    async fn record_failed_logon(&self, login: &str, lock_after: u32) -> Result<Account> {
        let c = self.inner.get().await?;
        // One statement: the row lock of the UPDATE makes it atomic.
        let row = c
            .client()?
            .query_opt(
                &format!(
                    "UPDATE accounts SET failed_logons = failed_logons + 1,
                         locked = locked OR failed_logons + 1 >= $2
                     WHERE login = $1 RETURNING {ACCOUNT_COLS}"
                ),
                &[&login, &i64::from(lock_after)],
            )
            .await?;
        match row {
            Some(r) => account_from(&r),
            None => Err(StoreError::NotFound {
                what: "account",
                key: login.to_string(),
            }),
        }
    }

    async fn record_successful_logon(&self, login: &str) -> Result<()> {
        let c = self.inner.get().await?;
        let n = c
            .client()?
            .execute(
                "UPDATE accounts SET failed_logons = 0 WHERE login = $1",
                &[&login],
            )
            .await?;
        found(n, "account", login)
    }

    async fn set_account_locked(&self, login: &str, locked: bool) -> Result<()> {
        let c = self.inner.get().await?;
        let n = c
            .client()?
            .execute(
                "UPDATE accounts SET locked = $2,
                     failed_logons = CASE WHEN $2 THEN failed_logons ELSE 0 END
                 WHERE login = $1",
                &[&login, &locked],
            )
            .await?;
        found(n, "account", login)
    }

    async fn set_password_hash(&self, login: &str, password_hash: &str) -> Result<()> {
        let c = self.inner.get().await?;
        let n = c
            .client()?
            .execute(
                "UPDATE accounts SET password_hash = $2 WHERE login = $1",
                &[&login, &password_hash],
            )
            .await?;
        found(n, "account", login)
    }

    async fn create_session(&self, s: &Session) -> Result<()> {
        let c = self.inner.get().await?;
        c.client()?
            .execute(
                "INSERT INTO sessions (token_hash, login, created, last_active)
                 VALUES ($1, $2, $3, $4)",
                &[&s.token_hash, &s.login, &s.created, &s.last_active],
            )
            .await
            .map_err(|e| StoreError::from(e).duplicate_of("session", "token hash"))?;
        Ok(())
    }

    async fn get_session(&self, token_hash: &[u8]) -> Result<Option<Session>> {
        let c = self.inner.get().await?;
        session_on(c.client()?, token_hash).await
    }

    async fn get_session_account(&self, token_hash: &[u8]) -> Result<Option<(Session, Account)>> {
        let c = self.inner.get().await?;
        let client = c.client()?;
        let Some(session) = session_on(client, token_hash).await? else {
            return Ok(None);
        };
        let account = client
            .query_opt(
                &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE login = $1"),
                &[&session.login],
            )
            .await?
            .as_ref()
            .map(account_from)
            .transpose()?;
        Ok(account.map(|a| (session, a)))
    }

    async fn touch_session(&self, token_hash: &[u8], now: i64) -> Result<bool> {
        let c = self.inner.get().await?;
        Ok(c.client()?
            .execute(
                "UPDATE sessions SET last_active = $2 WHERE token_hash = $1",
                &[&token_hash, &now],
            )
            .await?
            > 0)
    }

    async fn delete_session(&self, token_hash: &[u8]) -> Result<bool> {
        let c = self.inner.get().await?;
        Ok(c.client()?
            .execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])
            .await?
            > 0)
    }

    async fn delete_idle_sessions(&self, idle_before: i64) -> Result<u64> {
        let c = self.inner.get().await?;
        Ok(c.client()?
            .execute(
                "DELETE FROM sessions WHERE last_active < $1",
                &[&idle_before],
            )
            .await?)
    }
}

/// `Ok` if an update touched a row, else [`StoreError::NotFound`].
fn found(n: u64, what: &'static str, key: &str) -> Result<()> {
    if n == 0 {
        Err(StoreError::NotFound {
            what,
            key: key.to_string(),
        })
    } else {
        Ok(())
    }
}
