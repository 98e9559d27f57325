//! `postvault serve`: reads the configuration (file, then flags), starts
//! the postal server with the system clock, prints its URL, certificate
//! fingerprint and where the first operator's credentials are, and serves
//! until ctrl-c or SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use postvault_server::{ConfigFile, Overrides, Server, ServerConfig, ServerError};

use crate::cli::ServerArgs;
use crate::conn::SystemClock;
use crate::{outln, usage};

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => match ConfigFile::read(path) {
            Ok(f) => f,
            Err(ServerError::Config(m)) => usage!("{m}"),
            Err(e) => return Err(e).context("reading the configuration file"),
        },
        None => ConfigFile::default(),
    };
    let overrides = Overrides {
        data: args.data,
        listen: args.listen,
        store: args.store,
        module_sockets: args.module_sockets,
    };
    let config = match ServerConfig::build(file, overrides) {
        Ok(c) => c,
        Err(e) => usage!("{e}"),
    };
    // Async workers: by default on SQLite one per CPU but one, which is
    // left to the print path's module and store work; on PostgreSQL one
    // per CPU (see `default_async_workers`).
    let async_workers = config.async_workers;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(async_workers)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        // The signal handlers go in before the server starts and says where
        // it is: a SIGTERM sent as soon as the URL is printed must stop it
        // gracefully, not kill it or be lost.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("installing the SIGINT handler")?;
        let data_dir = config.data_dir.clone();
        let server = Server::start(config, Arc::new(SystemClock))
            .await
            .with_context(|| format!("starting the server on {}", data_dir.display()))?;
        outln!(
            "postvault serving {} (certificate sha256 {})",
            server.url(),
            server.certificate_fingerprint()
        );
        outln!("{}", server.operator_credentials());
        let modules = server.modules();
        let serving = modules.iter().filter(|m| m.in_service).count();
        outln!(
            "modules: {serving} of {} in service; {async_workers} async worker thread{} serving HTTPS",
            modules.len(),
            if async_workers == 1 { "" } else { "s" }
        );
        for m in &modules {
            let place = match &m.socket {
                Some(s) => format!("daemon {}", s.display()),
                None => format!("m{}", m.index),
            };
            let id = m.module_id.as_deref().unwrap_or("not initialized");
            if m.in_service {
                if m.socket.is_some() {
                    outln!("  module {id} ({place}) in service");
                }
            } else {
                outln!(
                    "  module {id} ({place}) out of service: {}",
                    m.reason.as_deref().unwrap_or("unknown")
                );
            }
        }
        for line in server.cross_check_notes() {
            outln!("module-table cross-check: {line}");
        }
        if let Some(path) = server.provider_key_created() {
            outln!(
                "made a development provider key in {} (this server signs customers' purchases and refunds with it; for production set provider_public_key in the configuration)",
                path.display()
            );
        }
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
        server
            .shutdown()
            .await
            .context("shutting the server down")?;
        outln!("postvault server stopped");
        Ok(ExitCode::SUCCESS)
    })
}
