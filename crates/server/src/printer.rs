//! Group commit for prints: requests from many connections are queued,
//! and each printer task takes what has queued up (at most one piece per
//! meter, up to [`MAX_BATCH`]) into one Create Indicia command and one
//! store commit, so one fsync covers the whole group (issue 4, item 1).
//!
//! On a store where meter transactions exclude each other whatever their
//! meters (SQLite), the printers take turns for the whole of a batch,
//! from gathering it to its commit: a printer that gathered a batch and
//! then waited for the store's lock would only have split the queue into
//! smaller batches (less work per fsync and per module command) without
//! printing any sooner. The modules are still used in turn (the pool
//! hands out its idle members in order).
//!
//! A piece is answered only after its batch is committed. A meter's second
//! piece in the queue waits for the next batch: it needs the challenge the
//! first one returns (the client cannot have it yet, so it will normally be
//! refused as a replay, which is what a client racing itself should get).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use postvault_module::psd::{IndiciumItem, IndiciumRequest, SealedPackage};
use postvault_module::{Request, Response};
use postvault_store::LedgerEntry;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::api::ApiError;
use crate::postal::{Job, Postal, refusal, unexpected};

/// The most pieces in one batch.
pub(crate) const MAX_BATCH: usize = 256;

/// Where the print path's time went, summed over the batches this server
/// committed since it started (a piece refused by the module is not
/// counted; a batch with none printed is not either). `postvault bench`
/// prints it for its embedded server; take two and [`PrintStats::since`]
/// for an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrintStats {
    /// Batches committed.
    pub batches: u64,
    /// Pieces printed in them.
    pub pieces: u64,
    /// Taking a module and the meters' rows (the store's lock included)
    /// and reading them.
    pub lock_and_read: Duration,
    /// The batch's work on the blocking pool: the module's Create Indicia
    /// command (with its NVM and audit log writes) and the rows to commit.
    pub module: Duration,
    /// Committing the batch to the store.
    pub commit: Duration,
}

impl PrintStats {
    /// What happened after `earlier` (a snapshot of the same server).
    pub fn since(&self, earlier: &PrintStats) -> PrintStats {
        PrintStats {
            batches: self.batches.saturating_sub(earlier.batches),
            pieces: self.pieces.saturating_sub(earlier.pieces),
            lock_and_read: self.lock_and_read.saturating_sub(earlier.lock_and_read),
            module: self.module.saturating_sub(earlier.module),
            commit: self.commit.saturating_sub(earlier.commit),
        }
    }
}

/// The running sums behind [`PrintStats`] (microseconds).
#[derive(Debug, Default)]
pub(crate) struct PrintTimes {
    batches: AtomicU64,
    pieces: AtomicU64,
    lock_us: AtomicU64,
    module_us: AtomicU64,
    commit_us: AtomicU64,
}

impl PrintTimes {
    /// Adds one committed batch.
    pub(crate) fn add(&self, pieces: u64, lock: Duration, module: Duration, commit: Duration) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.pieces.fetch_add(pieces, Ordering::Relaxed);
        self.lock_us.fetch_add(us(lock), Ordering::Relaxed);
        self.module_us.fetch_add(us(module), Ordering::Relaxed);
        self.commit_us.fetch_add(us(commit), Ordering::Relaxed);
    }

    /// The sums so far.
    pub(crate) fn snapshot(&self) -> PrintStats {
        let d = |a: &AtomicU64| Duration::from_micros(a.load(Ordering::Relaxed));
        PrintStats {
            batches: self.batches.load(Ordering::Relaxed),
            pieces: self.pieces.load(Ordering::Relaxed),
            lock_and_read: d(&self.lock_us),
            module: d(&self.module_us),
            commit: d(&self.commit_us),
        }
    }
}

/// One queued print.
pub(crate) struct PrintJob {
    pub(crate) request: IndiciumRequest,
    pub(crate) reply: oneshot::Sender<Result<Printed, ApiError>>,
}

/// A printed piece, as the API returns it.
#[derive(Debug, Clone)]
pub(crate) struct Printed {
    pub(crate) piece: u64,
    pub(crate) indicium: Vec<u8>,
    pub(crate) old_challenge: [u8; 16],
    pub(crate) new_challenge: [u8; 16],
    pub(crate) mac: [u8; 32],
    pub(crate) ascending_mills: u64,
    pub(crate) descending_mills: u64,
}

/// Records a piece the module issued for `request` in the meter job: the
/// meter's new package and the ledger row (with the registers the signed
/// indicium carries). Returns what the API answers.
pub(crate) fn record_piece(
    job: &mut Job,
    request: &IndiciumRequest,
    package: &SealedPackage,
    indicium: Vec<u8>,
    old_challenge: [u8; 16],
    new_challenge: [u8; 16],
    mac: [u8; 32],
) -> Result<Printed, ApiError> {
    let parsed = postvault_indicium::Indicium::from_bytes(&indicium)
        .map_err(|e| ApiError::internal("the module's indicium", e))?;
    job.set_package(&request.device_id, package, "Leased")?;
    let owner = job.meter(&request.device_id)?.owner.clone();
    let now = job.now();
    job.ledger(LedgerEntry {
        device_id: request.device_id.clone(),
        piece: parsed.piece_counter,
        account: owner,
        user_name: request.user_id.clone(),
        postage_mills: request.postage_mills,
        ascending_mills: parsed.ascending_register,
        descending_mills: u64::from(parsed.descending_register),
        category: String::from_utf8_lossy(&request.category)
            .trim_end()
            .to_string(),
        indicium: indicium.clone(),
        time: now,
    });
    Ok(Printed {
        piece: parsed.piece_counter,
        indicium,
        old_challenge,
        new_challenge,
        mac,
        ascending_mills: parsed.ascending_register,
        descending_mills: u64::from(parsed.descending_register),
    })
}

/// Starts `workers` printer tasks; returns the queue they take from, where
/// at most `queue` print requests wait (the API answers 503 beyond it).
///
/// Where meter transactions take turns (SQLite), the printers run on a
/// thread of their own ("postvault-printer", a single-threaded runtime),
/// not among the connections' tasks: a batch goes from the async side to
/// the blocking pool and back three times (lock and read, module command,
/// commit), and on the shared workers each return waited behind the
/// connections' TLS and HTTP work while the whole print path stood still
/// (lock and read took 1.2 ms a batch there, 0.4 ms on its own thread;
/// BENCHMARKS.md, 2026-12-05 fifth session). Where batches run side by side
/// (PostgreSQL) they stay on the shared runtime. The thread ends when the
/// queue closes, i.e. when the server's state is dropped.
pub(crate) fn start(
    postal: Arc<Postal>,
    workers: usize,
    queue: usize,
) -> std::io::Result<mpsc::Sender<PrintJob>> {
    let (tx, rx) = mpsc::channel(queue.max(1));
    let rx = Arc::new(Mutex::new(rx));
    let serial = postal.store.one_meter_transaction_at_a_time();
    let turn = serial.then(|| Arc::new(Mutex::new(())));
    let printers = (0..workers.max(1))
        .map(|_| printer(postal.clone(), rx.clone(), turn.clone()))
        .collect::<Vec<_>>();
    if !serial {
        for p in printers {
            tokio::spawn(p);
        }
        return Ok(tx);
    }
    // The runtime is built on the new thread, which says whether that
    // worked: a runtime must not be dropped on an async thread, as it
    // would be here if the thread could not be started.
    let (started_tx, started) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("postvault-printer".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => {
                    let _ = started_tx.send(Ok(()));
                    r
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let tasks: Vec<_> = printers.into_iter().map(tokio::spawn).collect();
                for t in tasks {
                    let _ = t.await;
                }
            });
        })?;
    // A short wait at start-up, for the thread to build its runtime.
    started
        .recv()
        .map_err(|_| std::io::Error::other("the printer thread ended at once"))??;
    Ok(tx)
}

/// One printer task: takes a batch, prints it, answers, repeats; ends
/// when the queue closes.
async fn printer(
    postal: Arc<Postal>,
    rx: Arc<Mutex<mpsc::Receiver<PrintJob>>>,
    turn: Option<Arc<Mutex<()>>>,
) {
    let mut deferred: VecDeque<PrintJob> = VecDeque::new();
    loop {
        let _turn = match &turn {
            Some(t) => Some(t.clone().lock_owned().await),
            None => None,
        };
        let mut batch: Vec<PrintJob> = Vec::new();
        let mut meters = HashSet::new();
        let mut later = VecDeque::new();
        while let Some(job) = deferred.pop_front() {
            if batch.len() < MAX_BATCH && meters.insert(job.request.device_id.clone()) {
                batch.push(job);
            } else {
                later.push_back(job);
            }
        }
        deferred = later;
        {
            let mut rx = rx.lock().await;
            if batch.is_empty() {
                match rx.recv().await {
                    Some(job) => {
                        meters.insert(job.request.device_id.clone());
                        batch.push(job);
                    }
                    None => return,
                }
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => {
                        if meters.insert(job.request.device_id.clone()) {
                            batch.push(job);
                        } else {
                            deferred.push_back(job);
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        print_batch(&postal, batch).await;
    }
}

/// Prints one batch (distinct meters) and answers every piece.
async fn print_batch(postal: &Postal, batch: Vec<PrintJob>) {
    let (requests, replies): (Vec<IndiciumRequest>, Vec<_>) =
        batch.into_iter().map(|j| (j.request, j.reply)).unzip();
    let ids: Vec<String> = requests.iter().map(|r| r.device_id.clone()).collect();
    let result = postal
        .meter_job_timed(&ids, Some(&postal.print_times), move |job| {
            let mut items = Vec::with_capacity(requests.len());
            for r in &requests {
                items.push(IndiciumItem {
                    package: job.package(&r.device_id)?,
                    request: r.clone(),
                });
            }
            let results = match job.call("Create Indicia", |checkpoint| Request::CreateIndicia {
                checkpoint,
                items: items.clone(),
            })? {
                Response::IndiciaCreated { results, .. } => results,
                other => return Err(unexpected("CreateIndicia", &other)),
            };
            if results.len() != requests.len() {
                return Err(ApiError::internal(
                    "Create Indicia",
                    format!("{} results for {} pieces", results.len(), requests.len()),
                ));
            }
            let mut out = Vec::with_capacity(results.len());
            for (r, result) in requests.iter().zip(results) {
                match result {
                    Ok(issued) => out.push(Ok(record_piece(
                        job,
                        r,
                        &issued.package,
                        issued.indicium,
                        issued.old_challenge,
                        issued.new_challenge,
                        issued.mac,
                    )?)),
                    Err(e) => out.push(Err(refusal("Create Indicia", e))),
                }
            }
            Ok(out)
        })
        .await;
    match result {
        Ok(results) => {
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
