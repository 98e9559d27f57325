//! The postal service behind the API: the module pool, meter transactions,
//! MeterGen and the development provider.
//!
//! # Meter transactions
//!
//! Everything that changes a meter runs as a [`Job`] through
//! [`Postal::meter_job`]: a module is checked out of the pool, then the
//! meters' rows are locked in the store (one meter is processed by one
//! server at a time, across processes; always in this order, as
//! MeterGen's module calls hold a module while they write), the job's
//! module commands run on a blocking thread with the packages from the
//! locked rows and that module's newest checkpoint from the module table,
//! and then the new packages, the
//! module's checkpoint row, the ledger and money rows and every audit entry
//! the commands made are committed in one store transaction. Only then is
//! the module given back and the answer sent: nothing is handed out before
//! it is durable. If the commit fails the client gets an error and the
//! database is unchanged; the module, which did move on, is rolled back to
//! the database's checkpoint by Auto-Recover Checkpoint the next time it is
//! used (the seed's controlled rollback, audited).
//!
//! A module's row of the module table only changes while that module is
//! checked out, and only by the process that holds the module; the job
//! reads the row after checking the module out, and takes the newer of it
//! and the checkpoint this process last committed for the module (a belt
//! to the braces of the lock order): that is the module's newest one
//! unless a commit failed.
//!
//! Lock order: a module first, then the store's meter locks; nothing waits
//! for a module while it holds store locks. Commands that touch no meter
//! (MeterGen, the cross-check, audit-key export) also give their modules
//! back before they write their audit entries to the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::http::StatusCode;
use postvault_crypto::ecdsa::EcdsaP256KeyPair;
use postvault_module::checkpoint::{ModuleTableRow, SignedCheckpoint};
use postvault_module::psd::{
    DeviceId, ProviderBody, ProviderCommand, ProviderMessage, PsdStatus, SealedPackage,
};
use postvault_module::{Clock, ModuleError, Request, Response};
use postvault_pool::{Checkout, Pool, PoolError};
use postvault_store::{
    AuditRecord, Commit, LedgerEntry, Meter, ModuleCheckpoint, MoneyEntry, Store, StoreError,
};

use crate::api::ApiError;

/// The PSD state of a certified meter waiting for a customer.
pub(crate) const STOCK_STATE: &str = "Unleased";
/// The vendor ID of the meters MeterGen makes.
pub(crate) const VENDOR: u16 = 42;
/// Their model number.
pub(crate) const MODEL: u16 = 1;
/// How long a PSD certificate from MeterGen is valid, days.
const CERTIFICATE_DAYS: u32 = 3 * 365;

/// The postal service: what the meter routes share.
pub(crate) struct Postal {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) pool: Pool,
    pub(crate) clock: Arc<dyn Clock>,
    /// The development provider's key, when this server holds one (then
    /// buying and refunds are signed here; otherwise only by the provider).
    pub(crate) provider: Option<Arc<EcdsaP256KeyPair>>,
    /// Vendor ID and model number of the meters MeterGen makes.
    pub(crate) vendor: u16,
    pub(crate) model: u16,
    /// How many certified meters MeterGen keeps ready.
    pub(crate) meter_stock: u64,
    /// One MeterGen run at a time in this process.
    pub(crate) metergen: tokio::sync::Mutex<()>,
    /// Set when the server stops: MeterGen makes no more meters.
    pub(crate) closing: std::sync::atomic::AtomicBool,
    /// Each module's checkpoint as this process last committed it to the
    /// module table (a module is used by one process only). See
    /// [`Postal::meter_job`].
    pub(crate) committed: std::sync::Mutex<std::collections::HashMap<String, SignedCheckpoint>>,
    /// Where the print batches' time went (see [`crate::PrintStats`]).
    pub(crate) print_times: crate::printer::PrintTimes,
}

/// A module refusal or failure as an API error: refusals are the client's
/// (4xx, with the module's message), the rest are logged 5xx.
pub(crate) fn module_error(what: &str, e: PoolError) -> ApiError {
    match e {
        PoolError::Refused { error, .. } => refusal(what, error),
        // A module that stopped answering (a daemon that died) is taken
        // out of service; nothing the call did was committed.
        e @ PoolError::Client { .. } => {
            eprintln!("postvault server: {what}: {e}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{what}: a cryptographic module did not answer; nothing was recorded; try again"
                ),
            )
        }
        e @ PoolError::NoModule(_) => {
            eprintln!("postvault server: {what}: {e}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{what}: no cryptographic module is in service; nothing was recorded; the server's operator must look at its modules"
                ),
            )
        }
        other => ApiError::internal(what, other),
    }
}

/// A module's refusal of one command as an API error.
pub(crate) fn refusal(what: &str, m: ModuleError) -> ApiError {
    match m {
        ModuleError::Invalid(_) | ModuleError::Malformed(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m.to_string())
        }
        ModuleError::PsdDenied { .. } | ModuleError::Rejected(_) | ModuleError::KeyState(_) => {
            ApiError::new(StatusCode::CONFLICT, m.to_string())
        }
        ModuleError::CheckpointMismatch(_) => {
            eprintln!("postvault server: {what}: {m}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the module's checkpoint does not match the database ({m}); nothing was changed; an operator must look at the module table"
                ),
            )
        }
        ModuleError::StalePackage(_) => {
            eprintln!("postvault server: {what}: {m}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the database holds an old copy of this meter ({m}); nothing was changed; an operator must look at the database (restored from a backup?)"
                ),
            )
        }
        other => ApiError::internal(what, other),
    }
}

/// The store's failure as an API error.
pub(crate) fn store_error(what: &str, e: StoreError) -> ApiError {
    ApiError::store(what, e)
}

/// The checkpoint a response carries, if any.
fn checkpoint_of(r: &Response) -> Option<&SignedCheckpoint> {
    match r {
        Response::PsdUpdated { checkpoint, .. }
        | Response::PsdConfigured { checkpoint, .. }
        | Response::IndiciumCreated { checkpoint, .. }
        | Response::RefundIndiciumCreated { checkpoint, .. }
        | Response::CheckpointRecovered { checkpoint, .. } => Some(checkpoint),
        Response::IndiciaCreated { checkpoint, .. } => checkpoint.as_ref(),
        _ => None,
    }
}

/// A module-table row for a checkpoint.
fn table_row(module_id: &str, cp: &SignedCheckpoint) -> Result<ModuleCheckpoint, ApiError> {
    Ok(ModuleCheckpoint {
        module_id: module_id.to_string(),
        checkpoint: serde_json::to_string(cp)
            .map_err(|e| ApiError::internal("encoding a checkpoint", e))?,
        seq: cp.checkpoint.seq,
        time: cp.checkpoint.time,
        value_mills: cp.checkpoint.amount_mills,
    })
}

/// The checkpoint a module-table row holds.
pub(crate) fn parse_checkpoint(row: &ModuleCheckpoint) -> Result<SignedCheckpoint, ApiError> {
    serde_json::from_str(&row.checkpoint).map_err(|e| {
        ApiError::internal(
            &format!("the module table's row for module {}", row.module_id),
            e,
        )
    })
}

/// A meter row's sealed package.
pub(crate) fn package_of(m: &Meter) -> Result<SealedPackage, ApiError> {
    serde_json::from_str(&m.package)
        .map_err(|e| ApiError::internal(&format!("the stored package of {}", m.device_id), e))
}

/// One meter transaction in progress (see the module docs): module calls
/// that follow the module's checkpoint, and what to commit.
pub(crate) struct Job {
    co: Checkout,
    /// The module's newest checkpoint as far as this job knows.
    checkpoint: Option<SignedCheckpoint>,
    /// The checkpoint to store (set when a command moved it).
    new_checkpoint: Option<SignedCheckpoint>,
    recovered: bool,
    audit: Vec<(u64, String)>,
    meters: BTreeMap<String, Meter>,
    changed: BTreeSet<String>,
    ledger: Vec<LedgerEntry>,
    money: Vec<MoneyEntry>,
    now: i64,
}

impl Job {
    /// Now, Unix seconds (the server's clock when the job started).
    pub(crate) fn now(&self) -> i64 {
        self.now
    }

    /// A locked meter's row as it is now.
    pub(crate) fn meter(&self, device_id: &str) -> Result<&Meter, ApiError> {
        self.meters.get(device_id).ok_or_else(|| {
            ApiError::internal(
                "a meter job",
                format!("{device_id} is not among the locked meters"),
            )
        })
    }

    /// A locked meter's sealed package as it is now.
    pub(crate) fn package(&self, device_id: &str) -> Result<SealedPackage, ApiError> {
        package_of(self.meter(device_id)?)
    }

    /// Runs one module command built by `make` from the module's current
    /// checkpoint. A checkpoint mismatch (the module moved on in a
    /// transaction whose commit failed) is met once with Auto-Recover
    /// Checkpoint to the database's record, then the command is retried.
    pub(crate) fn call(
        &mut self,
        what: &str,
        make: impl Fn(Option<SignedCheckpoint>) -> Request,
    ) -> Result<Response, ApiError> {
        let result = self.co.call(&make(self.checkpoint.clone()));
        match result {
            Ok(called) => {
                self.audit.extend(called.audit);
                if let Some(cp) = checkpoint_of(&called.response) {
                    self.checkpoint = Some(cp.clone());
                    self.new_checkpoint = Some(cp.clone());
                }
                Ok(called.response)
            }
            Err(PoolError::Refused {
                error: ModuleError::CheckpointMismatch(m),
                audit,
            }) if !self.recovered && self.checkpoint.is_some() => {
                self.audit.extend(audit);
                self.recovered = true;
                eprintln!(
                    "postvault server: module {} is ahead of the database ({m}); recovering to the database's checkpoint",
                    self.co.module_id()
                );
                let db = self.checkpoint.clone().expect("checked above");
                match self
                    .co
                    .call(&Request::AutoRecoverCheckpoint { checkpoint: db })
                {
                    Ok(called) => self.audit.extend(called.audit),
                    Err(e) => {
                        if let PoolError::Refused { audit, .. } = &e {
                            self.audit.extend(audit.iter().cloned());
                        }
                        return Err(module_error("Auto-Recover Checkpoint", e));
                    }
                }
                self.call(what, make)
            }
            Err(e) => {
                if let PoolError::Refused { audit, .. } = &e {
                    self.audit.extend(audit.iter().cloned());
                }
                Err(module_error(what, e))
            }
        }
    }

    /// Replaces a locked meter's package (and state) after a command.
    pub(crate) fn set_package(
        &mut self,
        device_id: &str,
        package: &SealedPackage,
        state: &str,
    ) -> Result<(), ApiError> {
        let now = self.now;
        let text = serde_json::to_string(package)
            .map_err(|e| ApiError::internal("encoding a package", e))?;
        let row = self.meters.get_mut(device_id).ok_or_else(|| {
            ApiError::internal(
                "a meter job",
                format!("{device_id} is not among the locked meters"),
            )
        })?;
        row.package = text;
        row.state = state.to_string();
        row.updated = now;
        self.changed.insert(device_id.to_string());
        Ok(())
    }

    /// Sets a locked meter's certificate.
    pub(crate) fn set_certificate(
        &mut self,
        device_id: &str,
        der: Vec<u8>,
    ) -> Result<(), ApiError> {
        if let Some(row) = self.meters.get_mut(device_id) {
            row.certificate = Some(der);
            self.changed.insert(device_id.to_string());
        }
        Ok(())
    }

    /// Sets a locked meter's owner (`None`: free).
    pub(crate) fn set_owner(&mut self, device_id: &str, owner: Option<&str>) {
        if let Some(row) = self.meters.get_mut(device_id) {
            row.owner = owner.map(str::to_string);
            self.changed.insert(device_id.to_string());
        }
    }

    /// Adds a ledger row.
    pub(crate) fn ledger(&mut self, entry: LedgerEntry) {
        self.ledger.push(entry);
    }

    /// Adds a money row.
    pub(crate) fn money(&mut self, entry: MoneyEntry) {
        self.money.push(entry);
    }

    /// Retrieve PSD Status of a locked meter.
    pub(crate) fn status(&mut self, device_id: &str) -> Result<PsdStatus, ApiError> {
        let package = self.package(device_id)?;
        match self.call("Retrieve PSD Status", |checkpoint| {
            Request::RetrievePsdStatus {
                package: package.clone(),
                checkpoint,
            }
        })? {
            Response::PsdStatus(s) => Ok(s),
            other => Err(unexpected("RetrievePsdStatus", &other)),
        }
    }

    /// What to commit, and the module to give back.
    fn finish(self) -> Result<(Commit, Checkout), ApiError> {
        let module_id = self.co.module_id().to_string();
        let checkpoint = match &self.new_checkpoint {
            Some(cp) => Some(table_row(&module_id, cp)?),
            None => None,
        };
        let meters = self
            .changed
            .iter()
            .filter_map(|id| self.meters.get(id).cloned())
            .collect();
        let audit = self
            .audit
            .into_iter()
            .map(|(seq, line)| AuditRecord {
                module_id: module_id.clone(),
                seq,
                line,
            })
            .collect();
        Ok((
            Commit {
                meters,
                checkpoint,
                ledger: self.ledger,
                money: self.money,
                audit,
            },
            self.co,
        ))
    }
}

/// The UTC date of a Unix time, as the integer YYYYMMDD.
pub(crate) fn yyyymmdd(unix: i64) -> u32 {
    postvault_indicium::MailingDate::from_unix(unix).map_or(0, |d| d.as_u32())
}

/// An answer the module should not have given.
pub(crate) fn unexpected(command: &str, got: &Response) -> ApiError {
    let name = format!("{got:?}");
    let name = name
        .split([' ', '(', '{'])
        .next()
        .unwrap_or("?")
        .to_string();
    ApiError::internal(command, format!("the module answered {name}"))
}

/// Audit entries the pool kept from calls that failed before the
/// module's answer arrived (they are in the module's own log already).
fn backlog(pool: &Pool) -> Vec<AuditRecord> {
    pool.take_startup_audit()
        .into_iter()
        .map(|(module_id, seq, line)| AuditRecord {
            module_id,
            seq,
            line,
        })
        .collect()
}

/// Audit entries that could not be stored go back to the pool, to be
/// stored with the next commit.
fn give_back(pool: &Pool, records: Vec<AuditRecord>) {
    pool.return_audit(records.into_iter().map(|a| (a.module_id, a.seq, a.line)));
}

fn commit_is_empty(c: &Commit) -> bool {
    c.meters.is_empty()
        && c.checkpoint.is_none()
        && c.ledger.is_empty()
        && c.money.is_empty()
        && c.audit.is_empty()
}

impl Postal {
    /// Runs `f` as one meter transaction over the meters `device_ids` (see
    /// the module docs). Whatever the job's commands changed is committed
    /// even when a later command of the job is refused (the module did
    /// move on); then the job's result is returned.
    pub(crate) async fn meter_job<T, F>(&self, device_ids: &[String], f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Job) -> Result<T, ApiError> + Send + 'static,
    {
        self.meter_job_timed(device_ids, None, f).await
    }

    /// [`Self::meter_job`], adding the stages' times to `times` when the
    /// job committed ledger rows (the printers' batches).
    pub(crate) async fn meter_job_timed<T, F>(
        &self,
        device_ids: &[String],
        times: Option<&crate::printer::PrintTimes>,
        f: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Job) -> Result<T, ApiError> + Send + 'static,
    {
        let started = std::time::Instant::now();
        // The module first, then the meters' rows: `module_call` holds a
        // module while it writes to the store, so taking them in the other
        // order deadlocks (on SQLite the whole database is the lock) until
        // the store's lock wait runs out.
        let co = self
            .pool
            .checkout()
            .await
            .map_err(|e| module_error("checking out a module", e))?;
        let tx = self
            .store
            .lock_meters(device_ids)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => {
                    ApiError::new(StatusCode::NOT_FOUND, format!("no such meter: {e}"))
                }
                e => store_error("locking meters", e),
            })?;
        let stored = match tx
            .checkpoints()
            .iter()
            .find(|row| row.module_id == co.module_id())
        {
            Some(row) => Some(parse_checkpoint(row)?),
            None => None,
        };
        // The row is read after the module was checked out, so the job
        // that used the module before has committed. Should that ever not
        // hold (the rows were once locked first, and on PostgreSQL the row
        // was then read before the previous job's commit), the newer of the
        // row and the checkpoint this process last committed for the module
        // is the database's: a module belongs to one process.
        let committed = self
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(co.module_id())
            .cloned();
        let checkpoint = match (stored, committed) {
            (Some(s), Some(c)) if c.checkpoint.seq > s.checkpoint.seq => Some(c),
            (None, Some(c)) => Some(c),
            (s, _) => s,
        };
        let job = Job {
            co,
            checkpoint,
            new_checkpoint: None,
            recovered: false,
            audit: Vec::new(),
            meters: tx
                .meters()
                .iter()
                .map(|m| (m.device_id.clone(), m.clone()))
                .collect(),
            changed: BTreeSet::new(),
            ledger: Vec::new(),
            money: Vec::new(),
            now: self.clock.now(),
        };
        let locked = std::time::Instant::now();
        let (job, result) = tokio::task::spawn_blocking(move || {
            let mut job = job;
            let r = f(&mut job);
            (job, r)
        })
        .await
        .map_err(|e| ApiError::internal("a module task", e))?;
        let worked = std::time::Instant::now();
        let new_checkpoint = job.new_checkpoint.clone();
        let (mut commit, co) = job.finish()?;
        let pieces = commit.ledger.len() as u64;
        commit.audit.extend(backlog(&self.pool));
        if commit_is_empty(&commit) {
            let _ = tx.rollback().await;
        } else {
            // Kept to be given back if the commit fails: the entries are
            // in the module's log and must reach the store's copy too.
            let audit = commit.audit.clone();
            if let Err(e) = tx.commit(commit).await {
                // The module moved on; its next use recovers (see Job::call).
                give_back(&self.pool, audit);
                drop(co);
                return Err(store_error("committing a meter transaction", e));
            }
            if let Some(times) = times.filter(|_| pieces > 0) {
                times.add(pieces, locked - started, worked - locked, worked.elapsed());
            }
        }
        if let Some(cp) = new_checkpoint {
            // Recorded before the module is given back, so the next job on
            // it starts from this checkpoint.
            self.committed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(co.module_id().to_string(), cp);
        }
        drop(co);
        result
    }

    /// Runs one command that touches no stored meter on a checked-out
    /// module (Initialize PSD, Issue PSD Certificate, ...), storing its
    /// audit entries.
    async fn module_call(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Checkout) -> Result<postvault_pool::Called, PoolError> + Send + 'static,
    ) -> Result<Response, ApiError> {
        let co = self
            .pool
            .checkout()
            .await
            .map_err(|e| module_error("checking out a module", e))?;
        let (co, result) = tokio::task::spawn_blocking(move || {
            let mut co = co;
            let r = f(&mut co);
            (co, r)
        })
        .await
        .map_err(|e| ApiError::internal("a module task", e))?;
        let (lines, response) = match result {
            Ok(called) => (called.audit, Ok(called.response)),
            Err(PoolError::Refused { error, audit }) => (audit, Err(refusal(what, error))),
            Err(e) => (Vec::new(), Err(module_error(what, e))),
        };
        let module_id = co.module_id().to_string();
        let mut records: Vec<AuditRecord> = lines
            .into_iter()
            .map(|(seq, line)| AuditRecord {
                module_id: module_id.clone(),
                seq,
                line,
            })
            .collect();
        records.extend(backlog(&self.pool));
        // The module goes back before the store is written: a meter job
        // may be waiting for this module (see the lock order above). The
        // entries are in the module's own log already.
        drop(co);
        self.store_audit(records).await?;
        response
    }

    /// The module-table cross-check of seed 002, at start (before any
    /// package is loaded): every in-service module's newest checkpoint is
    /// compared with its row of the database's module table. A module
    /// ahead of the database (its last transactions were never committed,
    /// e.g. the server was killed between the module's answer and the
    /// commit) is rolled back to the database's record by Auto-Recover
    /// Checkpoint, which audits every discarded transaction. If more than
    /// `threshold` modules still disagree, the database is probably a stale
    /// copy and the server must not start. Returns one line per module
    /// recovered or disagreeing.
    pub(crate) async fn cross_check(&self, threshold: usize) -> Result<Vec<String>, ApiError> {
        let held = self.hold_all_modules().await?;
        let table = self
            .store
            .all_checkpoints()
            .await
            .map_err(|e| store_error("reading the module table", e))?;
        let mut db = BTreeMap::new();
        for row in &table {
            db.insert(row.module_id.clone(), parse_checkpoint(row)?);
        }
        let (held, out) = tokio::task::spawn_blocking(move || {
            let mut held = held;
            let mut lines = Vec::new();
            let mut audit = Vec::new();
            let mut modules = Vec::new();
            for co in held.iter_mut() {
                let id = co.module_id().to_string();
                let mut newest = match co.call(&Request::RetrieveCheckpoint) {
                    Ok(called) => {
                        audit.push((id.clone(), called.audit));
                        match called.response {
                            Response::Checkpoint(cp) => cp,
                            other => return Err(unexpected("RetrieveCheckpoint", &other)),
                        }
                    }
                    Err(e) => return Err(module_error("Retrieve Checkpoint", e)),
                };
                let stored = db.get(&id);
                if newest.as_ref() != stored
                    && let Some(stored) = stored
                {
                    match co.call(&Request::AutoRecoverCheckpoint {
                        checkpoint: stored.clone(),
                    }) {
                        Ok(called) => {
                            audit.push((id.clone(), called.audit));
                            if let Response::CheckpointRecovered {
                                discarded,
                                checkpoint,
                            } = called.response
                            {
                                lines.push(format!(
                                    "module {id} was {discarded} transaction(s) ahead of the database: rolled back to checkpoint {} (audited)",
                                    checkpoint.checkpoint.seq
                                ));
                                newest = Some(checkpoint);
                            }
                        }
                        Err(PoolError::Refused { error, audit: a }) => {
                            audit.push((id.clone(), a));
                            lines.push(format!("module {id} disagrees with the database: {error}"));
                        }
                        Err(e) => return Err(module_error("Auto-Recover Checkpoint", e)),
                    }
                }
                let module_id: [u8; 16] = hex::decode(&id)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| ApiError::internal("cross-check", format!("module ID {id:?}")))?;
                modules.push((module_id, newest.map(|cp| cp.checkpoint)));
            }
            Ok((held, (lines, audit, modules)))
        })
        .await
        .map_err(|e| ApiError::internal("a module task", e))??;
        drop(held);
        let (mut lines, audit, modules) = out;
        let records: Vec<AuditRecord> = audit
            .into_iter()
            .flat_map(|(module_id, entries)| {
                entries.into_iter().map(move |(seq, line)| AuditRecord {
                    module_id: module_id.clone(),
                    seq,
                    line,
                })
            })
            .collect();
        self.store
            .append_audit(&records)
            .await
            .map_err(|e| store_error("storing audit entries", e))?;
        let rows: Vec<ModuleTableRow> = table
            .iter()
            .map(|r| ModuleTableRow {
                module_id: r.module_id.clone(),
                time: Some(r.time),
                value_mills: Some(r.value_mills),
                seq: Some(r.seq),
            })
            .collect();
        match postvault_module::checkpoint::cross_check(&rows, &modules, threshold) {
            Ok(failing) => {
                lines.extend(failing.iter().map(|id| {
                    format!("module {id} disagrees with the module table (within the threshold)")
                }));
                Ok(lines)
            }
            Err(e) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
            )),
        }
    }

    /// Stops MeterGen (waiting for a meter it is making), then has every
    /// module in service, all held at once, write a signed audit entry
    /// with `note`, and stores those entries: each module's log is then
    /// signed to its end. A module that does not answer (a dead daemon) is
    /// skipped: the returned lines say which.
    pub(crate) async fn sign_audit_logs(&self, note: &str) -> Result<Vec<String>, ApiError> {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _metergen = self.metergen.lock().await;
        let held = self.hold_all_modules().await?;
        let req = Request::CreateAuditEntry {
            note: note.to_string(),
            sign: true,
        };
        let (held, results) = tokio::task::spawn_blocking(move || {
            let mut held = held;
            let results: Vec<_> = held
                .iter_mut()
                .map(|co| (co.module_id().to_string(), co.call(&req)))
                .collect();
            (held, results)
        })
        .await
        .map_err(|e| ApiError::internal("a module task", e))?;
        let mut records = Vec::new();
        let mut failed = Vec::new();
        for (module_id, result) in results {
            match result {
                Ok(called) => {
                    records.extend(called.audit.into_iter().map(|(seq, line)| AuditRecord {
                        module_id: module_id.clone(),
                        seq,
                        line,
                    }))
                }
                Err(e) => {
                    if let PoolError::Refused { audit, .. } = &e {
                        records.extend(audit.iter().map(|(seq, line)| AuditRecord {
                            module_id: module_id.clone(),
                            seq: *seq,
                            line: line.clone(),
                        }));
                    }
                    failed.push(format!(
                        "module {module_id} did not write its signed closing audit entry: {e}"
                    ));
                }
            }
        }
        records.extend(backlog(&self.pool));
        // Modules back first: see the lock order above.
        drop(held);
        self.store_audit(records).await?;
        Ok(failed)
    }

    /// Checks out every module in service, waiting for each (for work that
    /// must see all of them at once).
    async fn hold_all_modules(&self) -> Result<Vec<Checkout>, ApiError> {
        let mut held = Vec::new();
        for _ in 0..self.pool.in_service() {
            held.push(
                self.pool
                    .checkout()
                    .await
                    .map_err(|e| module_error("checking out a module", e))?,
            );
        }
        Ok(held)
    }

    /// Stores audit entries taken from the modules; if the store fails,
    /// they go back to the pool to be stored with the next commit.
    async fn store_audit(&self, records: Vec<AuditRecord>) -> Result<(), ApiError> {
        if !records.is_empty()
            && let Err(e) = self.store.append_audit(&records).await
        {
            give_back(&self.pool, records);
            return Err(store_error("storing audit entries", e));
        }
        Ok(())
    }

    /// MeterGen: makes certified meters (Initialize PSD, Issue PSD
    /// Certificate by the module's CA, Authorize PSD) until `meter_stock`
    /// of them wait for customers. Returns how many it made.
    pub(crate) async fn fill_stock(&self) -> Result<u64, ApiError> {
        let _one = self.metergen.lock().await;
        let mut made = 0;
        loop {
            if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(made);
            }
            let free = self
                .store
                .count_meters(Some(STOCK_STATE))
                .await
                .map_err(|e| store_error("counting meters", e))?;
            if free >= self.meter_stock {
                return Ok(made);
            }
            self.make_meter(None).await?;
            made += 1;
        }
    }

    /// Makes one certified meter and stores it (see [`Postal::fill_stock`]),
    /// free or, with `owner`, already reserved for that account (so a
    /// customer who found the stock empty gets the meter made for them, not
    /// one another request may take first). Returns its device ID.
    pub(crate) async fn make_meter(&self, owner: Option<&str>) -> Result<String, ApiError> {
        // Serials count up from the number of meters stored; a serial
        // another server took meanwhile is skipped.
        let mut serial = self
            .store
            .count_meters(None)
            .await
            .map_err(|e| store_error("counting meters", e))?
            + 1;
        let (device, package) = loop {
            let device = DeviceId {
                vendor: self.vendor,
                model: self.model,
                serial: u32::try_from(serial).map_err(|_| {
                    ApiError::internal("MeterGen", "the meter serial numbers are exhausted")
                })?,
            };
            let id = device.to_string();
            if self
                .store
                .get_meter(&id)
                .await
                .map_err(|e| store_error("reading a meter", e))?
                .is_some()
            {
                serial += 1;
                continue;
            }
            let package = match self
                .module_call("Initialize PSD", move |co| {
                    co.call(&Request::InitializePsd { device })
                })
                .await?
            {
                Response::PsdInitialized { package, .. } => package,
                other => return Err(unexpected("InitializePsd", &other)),
            };
            let row = Meter {
                device_id: id.clone(),
                owner: None,
                state: "Raw".into(),
                package: serde_json::to_string(&package)
                    .map_err(|e| ApiError::internal("encoding a package", e))?,
                certificate: None,
                updated: self.clock.now(),
            };
            match self.store.create_meter(&row).await {
                Ok(()) => break (device, package),
                Err(StoreError::Duplicate { .. }) => serial += 1,
                Err(e) => return Err(store_error("storing a new meter", e)),
            }
        };
        let id = device.to_string();
        // The certificate's serial: the device serial in the low 32 bits
        // (the indicium's certificate serial), the vendor above it.
        let cert_serial = (u64::from(self.vendor) << 32) | u64::from(device.serial);
        let issue_package = package.clone();
        let certificate = match self
            .module_call("Issue PSD Certificate", move |co| {
                co.issue_psd_certificate(&issue_package, cert_serial, CERTIFICATE_DAYS)
            })
            .await?
        {
            Response::PsdCertificate { certificate_der } => certificate_der,
            other => return Err(unexpected("IssuePsdCertificate", &other)),
        };
        let job_id = id.clone();
        let owner = owner.map(str::to_string);
        self.meter_job(std::slice::from_ref(&id), move |job| {
            let package = job.package(&job_id)?;
            let cert = certificate.clone();
            match job.call("Authorize PSD", |checkpoint| Request::AuthorizePsd {
                package: package.clone(),
                checkpoint,
                certificate_der: cert.clone(),
            })? {
                Response::PsdUpdated { package, state, .. } => {
                    job.set_package(&job_id, &package, &format!("{state:?}"))?;
                    job.set_certificate(&job_id, certificate)?;
                    job.set_owner(&job_id, owner.as_deref());
                    Ok(())
                }
                other => Err(unexpected("AuthorizePsd", &other)),
            }
        })
        .await?;
        Ok(id)
    }

    /// A provider message for `device_id`, signed with the development
    /// provider's key; `None` when this server holds no provider key.
    pub(crate) fn sign_provider(
        &self,
        device_id: &str,
        sequence: u64,
        command: ProviderCommand,
    ) -> Result<Option<ProviderMessage>, ApiError> {
        let Some(key) = &self.provider else {
            return Ok(None);
        };
        let body = ProviderBody {
            device_id: device_id.to_string(),
            sequence,
            command,
        };
        let signature = key
            .sign(&body.signing_bytes())
            .map_err(|e| ApiError::internal("signing a provider message", e))?;
        Ok(Some(ProviderMessage { body, signature }))
    }
}

/// Runs a provider message on a locked meter inside a job: Authorize
/// Customer, Download Postage Value or Create Refund Indicium (Begin
/// Password Reset too). Records the money movement. Returns the response.
pub(crate) fn run_provider_message(
    job: &mut Job,
    message: ProviderMessage,
    reference: &str,
) -> Result<Response, ApiError> {
    let id = message.body.device_id.clone();
    let package = job.package(&id)?;
    let response = match &message.body.command {
        ProviderCommand::AuthorizeCustomer { .. } => {
            job.call("Authorize Customer", |checkpoint| {
                Request::AuthorizeCustomer {
                    package: package.clone(),
                    checkpoint,
                    message: message.clone(),
                }
            })?
        }
        ProviderCommand::Download { .. } => job.call("Download Postage Value", |checkpoint| {
            Request::DownloadPostageValue {
                package: package.clone(),
                checkpoint,
                message: message.clone(),
            }
        })?,
        ProviderCommand::Refund { .. } => job.call("Create Refund Indicium", |checkpoint| {
            Request::CreateRefundIndicium {
                package: package.clone(),
                checkpoint,
                message: message.clone(),
            }
        })?,
        ProviderCommand::BeginPasswordReset { .. } => {
            job.call("Begin Password Reset", |checkpoint| {
                Request::BeginPasswordReset {
                    package: package.clone(),
                    checkpoint,
                    message: message.clone(),
                }
            })?
        }
    };
    let now = job.now();
    match (&message.body.command, &response) {
        (
            ProviderCommand::Download { amount_mills, .. },
            Response::PsdUpdated { package, state, .. },
        ) => {
            job.set_package(&id, package, &format!("{state:?}"))?;
            job.money(MoneyEntry {
                device_id: id.clone(),
                kind: postvault_store::MoneyKind::Download,
                amount_mills: *amount_mills,
                provider_seq: Some(message.body.sequence),
                time: now,
                reference: reference.to_string(),
            });
        }
        (_, Response::PsdUpdated { package, state, .. }) => {
            job.set_package(&id, package, &format!("{state:?}"))?;
        }
        (
            ProviderCommand::Refund { .. },
            Response::RefundIndiciumCreated {
                package,
                indicium,
                refunded_mills,
                ..
            },
        ) => {
            job.set_package(&id, package, "Withdrawn")?;
            job.money(MoneyEntry {
                device_id: id.clone(),
                kind: postvault_store::MoneyKind::Refund,
                amount_mills: *refunded_mills,
                provider_seq: Some(message.body.sequence),
                time: now,
                reference: reference.to_string(),
            });
            let parsed = postvault_indicium::Indicium::from_bytes(indicium)
                .map_err(|e| ApiError::internal("the module's refund indicium", e))?;
            let owner = job.meter(&id)?.owner.clone();
            job.ledger(LedgerEntry {
                device_id: id.clone(),
                piece: parsed.piece_counter,
                account: owner,
                user_name: "provider".into(),
                postage_mills: u64::from(parsed.postage),
                ascending_mills: parsed.ascending_register,
                descending_mills: u64::from(parsed.descending_register),
                category: "RFND".into(),
                indicium: indicium.clone(),
                time: now,
            });
        }
        (_, other) => return Err(unexpected("a provider command", other)),
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_client_errors() {
        let e = refusal("x", ModuleError::Rejected("bad MAC".into()));
        assert_eq!(e.status(), StatusCode::CONFLICT);
        let e = refusal("x", ModuleError::Invalid("postage 0".into()));
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let e = refusal("x", ModuleError::CheckpointMismatch("stale".into()));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let e = refusal("x", ModuleError::StalePackage("older".into()));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            e.message().contains("old copy of this meter"),
            "{}",
            e.message()
        );
        let e = refusal("x", ModuleError::Storage("disk".into()));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
