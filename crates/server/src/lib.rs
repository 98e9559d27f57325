//! postvault-server: the postal server's HTTPS JSON API.
//!
//! [`Server::start`] opens the store, makes the data directory's TLS
//! certificate and first operator if this is a fresh start, binds the
//! listener and serves until [`RunningServer::shutdown`] (or
//! [`RunningServer::run_until_signal`], on ctrl-c or SIGTERM). It serves
//! HTTPS only (rustls, TLS 1.3 and 1.2, aws-lc-rs); a plaintext request on
//! the port fails the TLS handshake.
//!
//! What the API offers is in `api`, `meters_api` and in the OpenAPI
//! document at `/openapi.json`: sign-up, logon with Argon2id passwords and
//! lock-out after a number of failed logons, bearer-token sessions that
//! expire after an idle timeout (15 minutes by default), logoff; meters
//! (reserve, register, status, buy, print, correction, refund, history),
//! certificates and the provider's signed messages. Behind them: the
//! module pool (`postvault-pool`), meter transactions, MeterGen and the
//! group-commit printer (`postal`, `printer`); at start, the seed's
//! module-table cross-check.
//!
//! Time comes in through a [`Clock`]; this crate never reads the wall clock.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod config;
mod error;
mod meters_api;
mod openapi;
mod operator;
mod postal;
mod printer;
mod provider;
mod sessions;
mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use postvault_crypto::Faults;
use postvault_crypto::password::Argon2Params;
use postvault_crypto::rng::Rng;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use api::ROUTES;
pub use config::{
    ConfigFile, DEFAULT_DATA_DIR, DEFAULT_FAILED_LOGON_LIMIT, DEFAULT_LISTEN,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_PRINT_QUEUE, DEFAULT_SESSION_IDLE_TIMEOUT_SECS, Overrides,
    ServerConfig, TlsFiles, default_async_workers, default_async_workers_here,
};
pub use error::{Result, ServerError};
pub use operator::{CREDENTIALS_FILE, OPERATOR_LOGIN, OperatorCredentials};
pub use postvault_module::Clock;
pub use postvault_pool::MemberStatus;
pub use printer::PrintStats;
pub use provider::{PROVIDER_KEY_FILE, PROVIDER_PASSPHRASE_FILE};
pub use tls::fingerprint;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often sessions idle beyond the timeout are swept from the store.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The postal server.
pub struct Server;

impl Server {
    /// Starts the server: creates the data directory (mode 0700) if
    /// missing, opens the store (running its migrations), makes or loads
    /// the TLS certificate, makes the first operator on a fresh store, and
    /// binds the listener (port 0 picks a free port; see
    /// [`RunningServer::local_addr`]). Requests are served from then on.
    pub async fn start(config: ServerConfig, clock: Arc<dyn Clock>) -> Result<RunningServer> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .map_err(ServerError::io(&config.data_dir))?;
        let tls = tls::load_or_create(&config)?;
        let store = postvault_store::open_store(&config.store_url).await?;
        let rng = Mutex::new(Rng::new(Faults::none()));
        let argon2 = Argon2Params::DEFAULT;
        let operator =
            operator::ensure_operator(&*store, &config.data_dir, &rng, &*clock, argon2).await?;
        let provider = {
            let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
            provider::load(
                &config.data_dir,
                config.provider_public_key.as_deref(),
                &mut rng,
            )?
        };
        let pool_config = postvault_pool::PoolConfig {
            dir: config.modules_dir.clone(),
            modules: config.modules,
            first: config.module_first,
            argon2: Argon2Params::DEFAULT,
            clock: clock.clone(),
            provider_public_key: provider.public_key.clone(),
            faults: Vec::new(),
            sockets: config.module_sockets.clone(),
        };
        let pool = tokio::task::spawn_blocking(move || postvault_pool::Pool::open(pool_config))
            .await
            .map_err(|e| ServerError::Task(e.to_string()))??;
        if pool.deployment().provider_public_key != provider.public_key {
            return Err(ServerError::Config(
                "the modules hold another provider key than the one configured (provider_public_key, or the development key in DATA/provider/): configure the key the modules were set up with".into(),
            ));
        }
        let startup: Vec<postvault_store::AuditRecord> = pool
            .take_startup_audit()
            .into_iter()
            .map(|(module_id, seq, line)| postvault_store::AuditRecord {
                module_id,
                seq,
                line,
            })
            .collect();
        store.append_audit(&startup).await?;
        let postal = Arc::new(postal::Postal {
            store: store.clone(),
            pool: pool.clone(),
            clock: clock.clone(),
            provider: provider.pair.map(Arc::new),
            vendor: postal::VENDOR,
            model: postal::MODEL,
            meter_stock: config.meter_stock,
            metergen: tokio::sync::Mutex::new(()),
            closing: Default::default(),
            committed: Default::default(),
            print_times: Default::default(),
        });
        let notes = postal
            .cross_check(config.cross_check_threshold)
            .await
            .map_err(|e| {
                ServerError::Setup(format!("module-table cross-check: {}", e.message()))
            })?;
        for line in &notes {
            eprintln!("postvault server: {line}");
        }
        postal
            .fill_stock()
            .await
            .map_err(|e| ServerError::Setup(format!("MeterGen: {}", e.message())))?;
        let printer = printer::start(postal.clone(), pool.in_service(), config.print_queue)
            .map_err(|e| ServerError::Setup(format!("starting the printer thread: {e}")))?;
        let state = Arc::new(api::AppState {
            store,
            clock,
            rng,
            session_idle_timeout_secs: config.session_idle_timeout_secs,
            failed_logon_limit: config.failed_logon_limit,
            max_body_bytes: config.max_body_bytes,
            argon2,
            argon2_slots: api::argon2_slots(),
            postal,
            printer,
            owners: Default::default(),
            sessions: Default::default(),
        });
        let shutdown_postal = state.postal.clone();
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let sweeper = tokio::spawn(sweep_idle_sessions(state.clone(), stop_rx.clone()));
        let state_store = state.store.clone();
        let app = api::router(state);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
        let task = tokio::spawn(serve(listener, acceptor, app, stop_rx));
        Ok(RunningServer {
            local_addr,
            fingerprint: tls.fingerprint,
            operator,
            pool,
            notes,
            store: state_store,
            provider_key_created: provider.created,
            stop: stop_tx,
            task,
            sweeper,
            postal: shutdown_postal,
            all_modules: tokio::sync::Mutex::new(()),
        })
    }
}

/// A server that is serving.
pub struct RunningServer {
    local_addr: SocketAddr,
    fingerprint: String,
    operator: OperatorCredentials,
    pool: postvault_pool::Pool,
    notes: Vec<String>,
    store: Arc<dyn postvault_store::Store>,
    provider_key_created: Option<std::path::PathBuf>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    postal: Arc<postal::Postal>,
    /// One caller at a time may hold every module at once (two that each
    /// held some and waited for the rest would wait forever).
    all_modules: tokio::sync::Mutex<()>,
}

impl RunningServer {
    /// The address the listener is bound to (the real port when 0 was
    /// asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `https://ADDR`.
    pub fn url(&self) -> String {
        format!("https://{}", self.local_addr)
    }

    /// The SHA-256 fingerprint of the TLS certificate, as `openssl x509
    /// -fingerprint -sha256` prints it.
    pub fn certificate_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Where the first operator's credentials are.
    pub fn operator_credentials(&self) -> &OperatorCredentials {
        &self.operator
    }

    /// The modules of the pool, and which are in service.
    pub fn modules(&self) -> Vec<MemberStatus> {
        self.pool.status()
    }

    /// Where the print batches' time went since the server started.
    pub fn print_stats(&self) -> PrintStats {
        self.postal.print_times.snapshot()
    }

    /// Each in-service module's audit verification key, exported by the
    /// module's Auditor operator: (module ID, 65-byte ECDSA P-256 key). The
    /// audit entries of the exports are stored like every other. Waits for
    /// every module to be free; concurrent calls take turns.
    pub async fn export_audit_keys(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let _turn = self.all_modules.lock().await;
        let mut held = Vec::new();
        for _ in 0..self.pool.in_service() {
            held.push(self.pool.checkout().await?);
        }
        let (held, results) = tokio::task::spawn_blocking(move || {
            let mut held = held;
            let results: Vec<_> = held
                .iter_mut()
                .map(|co| (co.module_id().to_string(), co.export_audit_key()))
                .collect();
            (held, results)
        })
        .await
        .map_err(|e| ServerError::Task(e.to_string()))?;
        let mut keys = Vec::new();
        let mut records = Vec::new();
        for (module_id, result) in results {
            let called = result?;
            records.extend(called.audit.into_iter().map(|(seq, line)| {
                postvault_store::AuditRecord {
                    module_id: module_id.clone(),
                    seq,
                    line,
                }
            }));
            match called.response {
                postvault_module::Response::AuditKey(key) => keys.push((module_id, key)),
                _ => {
                    return Err(ServerError::Setup(format!(
                        "module {module_id} did not answer Export Audit Key with a key"
                    )));
                }
            }
        }
        // Modules back first: see the lock order in `postal`.
        drop(held);
        self.store.append_audit(&records).await?;
        Ok(keys)
    }

    /// What the start-up's module-table cross-check found (modules rolled
    /// back to the database's checkpoint, modules disagreeing within the
    /// threshold); empty when every module agreed.
    pub fn cross_check_notes(&self) -> &[String] {
        &self.notes
    }

    /// Where the development provider key was made, if this start made it.
    pub fn provider_key_created(&self) -> Option<&std::path::Path> {
        self.provider_key_created.as_deref()
    }

    /// Stops accepting connections, lets requests in flight finish (up to
    /// a grace period) and returns.
    ///
    /// Then MeterGen stops, and every module in service writes one more
    /// audit entry, signed, so that each module's log is signed to its end
    /// when the server stops cleanly (an auditor then finds no unsigned
    /// tail); those entries are stored like any other. A module that does
    /// not answer then (a daemon that died) is reported on standard error
    /// and does not fail the shutdown.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        let served = self.task.await;
        let swept = self.sweeper.await;
        served
            .and(swept)
            .map_err(|e| ServerError::Task(e.to_string()))?;
        let skipped = self
            .postal
            .sign_audit_logs("the postal server stopped")
            .await
            .map_err(|e| ServerError::Setup(format!("signing the audit logs: {}", e.message())))?;
        for line in skipped {
            eprintln!("postvault server: {line}");
        }
        Ok(())
    }

    /// Serves until ctrl-c or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> Result<()> {
        shutdown_signal().await;
        self.shutdown().await
    }
}

/// Waits for ctrl-c (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler ctrl-c still works.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// The accept loop: a TLS handshake per connection, then HTTP/1.1 or
/// HTTP/2 (ALPN). On stop, stops accepting and waits for connections to
/// finish their requests.
async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment
                    // rather than spin.
                    eprintln!("postvault server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                // A failed handshake (plain HTTP, an old TLS version, a
                // client that went away) is the client's problem.
                _ => return,
            };
            let service = TowerToHyperService::new(app);
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // With a timer, HTTP/1 gives a client 30 s to send its headers
            // (hyper's default), so idle half-open requests do not pile up.
            builder.http1().timer(TokioTimer::new());
            builder.http2().timer(TokioTimer::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            let _ = watcher.watch(conn.into_owned()).await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// Deletes sessions idle beyond the timeout every minute, so expired
/// sessions do not pile up in the store (a presented expired token is
/// refused and deleted anyway).
async fn sweep_idle_sessions(state: Arc<api::AppState>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = stop.changed() => return,
        }
        let before = state.clock.now() - state.session_idle_timeout_secs as i64;
        if let Err(e) = state.store.delete_idle_sessions(before).await {
            eprintln!("postvault server: sweeping idle sessions: {e}");
        }
    }
}
