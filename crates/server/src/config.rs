//! The server's configuration: an optional TOML file ([`ConfigFile`], unknown
//! keys refused), command-line flags that override it ([`Overrides`]), and
//! the validated result ([`ServerConfig`]) that is passed to
//! [`crate::Server::start`].
//!
//! ```toml
//! data = "/var/lib/postvault"          # the data directory
//! listen = "0.0.0.0:8443"
//! store = "postgres://pv@db/postvault" # default sqlite://DATA/postvault.sqlite
//! session_idle_timeout_secs = 900      # 15 minutes without activity
//! failed_logon_limit = 5               # failed logons before the account locks
//! max_body_bytes = 65536
//! tls_cert = "/etc/postvault/cert.pem" # both or neither; default: self-signed
//! tls_key = "/etc/postvault/key.pem"   #   in DATA/tls/
//! modules = 2                          # in-process modules (default: one per CPU)
//! async_workers = 1                    # threads serving HTTPS (default: one
//!                                      #   per CPU, on SQLite one but one)
//! print_queue = 4096                   # print requests that may wait for a
//!                                      #   batch; beyond it the answer is 503
//! # module_sockets = ["/run/postvault/m0.sock", "/run/postvault/m1.sock"]
//! #   instead of in-process modules: module daemons, one per socket
//! #   (`postvault module serve --dir D --socket S`), set up on first start
//! modules_dir = "/var/lib/postvault/modules" # default DATA/modules; servers
//! module_first = 0                     #   sharing it use disjoint ranges
//! meter_stock = 8                      # certified meters MeterGen keeps ready
//! cross_check_threshold = 0            # modules that may disagree with the
//!                                      #   module table at start
//! provider_public_key = "/etc/postvault/provider.pem"
//!     # the provider's key (PEM); without it, the first start makes a
//!     # development provider key in DATA/provider/ and signs purchases itself
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Result, ServerError};

/// The default listening address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "postvault-data";
/// Seconds without activity after which a session expires (15 minutes, as
/// PostalOne! does).
pub const DEFAULT_SESSION_IDLE_TIMEOUT_SECS: u64 = 900;
/// Failed logons in a row that lock an account.
pub const DEFAULT_FAILED_LOGON_LIMIT: u32 = 5;
/// The largest request body accepted (64 KiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// The most in-process modules the default (one per CPU) picks.
pub const DEFAULT_MAX_MODULES: usize = 8;
/// Certified meters MeterGen keeps ready by default.
pub const DEFAULT_METER_STOCK: u64 = 4;
/// How many print requests may wait for a batch by default (16 full
/// batches); beyond it the API answers 503 rather than let clients wait
/// ever longer.
pub const DEFAULT_PRINT_QUEUE: usize = 4096;

/// The default number of async worker threads (the threads that serve
/// HTTPS: TLS, HTTP, JSON) for a machine with `cpus` CPUs and the store
/// engine `store_engine` ([`ServerConfig::store_engine`]): on SQLite one per
/// CPU but one, at least one; on PostgreSQL one per CPU.
///
/// On SQLite the CPU left over is for the print path's blocking work, the
/// module commands and the store's commits, which run on other threads one
/// batch at a time (the database is the meter lock) while every print
/// waits for it; with as many async workers as CPUs, the workers preempt
/// it and every batch takes longer. On PostgreSQL batches run side by side
/// and the store's client runs on the async workers, which then need every
/// CPU. Measured on two CPUs (BENCHMARKS.md, 2026-12-05, fourth session):
/// `postvault bench` (SQLite) 17 % more indicia per second with one worker
/// than with two; a server on PostgreSQL 9 % fewer.
pub fn default_async_workers(cpus: usize, store_engine: &str) -> usize {
    if store_engine == "sqlite" {
        cpus.saturating_sub(1).max(1)
    } else {
        cpus.max(1)
    }
}

/// [`default_async_workers`] for this machine.
pub fn default_async_workers_here(store_engine: &str) -> usize {
    default_async_workers(
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        store_engine,
    )
}

/// The configuration file as written. Every key is optional; an unknown key
/// is an error (a misspelt setting must not be silently ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The data directory.
    pub data: Option<PathBuf>,
    /// The address to listen on (`IP:PORT`; port 0 picks a free one).
    pub listen: Option<String>,
    /// The store URL (`sqlite://PATH` or `postgres://...`).
    pub store: Option<String>,
    /// Seconds without activity after which a session expires.
    pub session_idle_timeout_secs: Option<u64>,
    /// Failed logons in a row that lock an account.
    pub failed_logon_limit: Option<u32>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: Option<usize>,
    /// A PEM certificate chain for TLS (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// How many modules run in process (1 to 64; default one per CPU).
    pub modules: Option<usize>,
    /// How many async worker threads serve HTTPS (1 to 256; default
    /// [`default_async_workers`]).
    pub async_workers: Option<usize>,
    /// How many print requests may wait for a batch (1 to 1048576; default
    /// [`DEFAULT_PRINT_QUEUE`]); beyond it a print is answered 503.
    pub print_queue: Option<usize>,
    /// Module daemons to use instead of in-process modules, one Unix socket
    /// each (`postvault module serve --dir D --socket S`).
    pub module_sockets: Option<Vec<PathBuf>>,
    /// The module pool's directory (default DATA/modules). Several servers
    /// may share one, each with its own range of members.
    pub modules_dir: Option<PathBuf>,
    /// The first member of the pool directory this server uses (default
    /// 0): it uses members `module_first` to `module_first + modules - 1`.
    pub module_first: Option<usize>,
    /// How many certified meters MeterGen keeps ready for new customers.
    pub meter_stock: Option<u64>,
    /// How many modules may disagree with the database's module table at
    /// start (after rolling back modules that were ahead) before the server
    /// refuses to start (default 0).
    pub cross_check_threshold: Option<usize>,
    /// The provider's public key (PEM). Without it the server makes and
    /// uses a development provider key in DATA/provider/.
    pub provider_public_key: Option<PathBuf>,
}

impl ConfigFile {
    /// Reads and parses a configuration file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(ServerError::io(path))?;
        Self::parse(&text).map_err(|e| match e {
            ServerError::Config(m) => ServerError::Config(format!("{}: {m}", path.display())),
            e => e,
        })
    }

    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| ServerError::Config(e.message().to_string()))
    }
}

/// Settings given on the command line; each one given wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data DIR`.
    pub data: Option<PathBuf>,
    /// `--listen ADDR`.
    pub listen: Option<String>,
    /// `--store URL`.
    pub store: Option<String>,
    /// `--module-socket PATH`, repeated (replaces `module_sockets` when
    /// not empty).
    pub module_sockets: Vec<PathBuf>,
}

/// Paths of a configured TLS certificate chain and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// The PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

/// The validated configuration the server runs with.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The data directory (created if missing): the self-signed TLS
    /// certificate, the first operator's credentials and the default SQLite
    /// database live here.
    pub data_dir: PathBuf,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The store URL. It may hold a password: it is never printed.
    pub store_url: String,
    /// Seconds without activity after which a session expires.
    pub session_idle_timeout_secs: u64,
    /// Failed logons in a row that lock an account.
    pub failed_logon_limit: u32,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// A configured certificate; `None` means the self-signed one in
    /// `DATA/tls/`.
    pub tls: Option<TlsFiles>,
    /// Pool members: in-process modules, or as many as `module_sockets`.
    pub modules: usize,
    /// Async worker threads for the runtime the server runs on (the caller
    /// builds the runtime: `postvault serve` uses this).
    pub async_workers: usize,
    /// Print requests that may wait for a batch.
    pub print_queue: usize,
    /// Module daemons' sockets; empty for in-process modules.
    pub module_sockets: Vec<PathBuf>,
    /// The module pool's directory.
    pub modules_dir: PathBuf,
    /// This server's first member of the pool directory.
    pub module_first: usize,
    /// Certified meters kept ready.
    pub meter_stock: u64,
    /// Modules allowed to disagree with the module table at start.
    pub cross_check_threshold: usize,
    /// The provider's public key file, if the provider is not this server.
    pub provider_public_key: Option<PathBuf>,
}

impl std::fmt::Debug for ServerConfig {
    // The store URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("store_url", &"<redacted>")
            .field("session_idle_timeout_secs", &self.session_idle_timeout_secs)
            .field("failed_logon_limit", &self.failed_logon_limit)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("tls", &self.tls)
            .field("modules", &self.modules)
            .field("async_workers", &self.async_workers)
            .field("print_queue", &self.print_queue)
            .field("module_sockets", &self.module_sockets)
            .field("modules_dir", &self.modules_dir)
            .field("module_first", &self.module_first)
            .field("meter_stock", &self.meter_stock)
            .field("cross_check_threshold", &self.cross_check_threshold)
            .field("provider_public_key", &self.provider_public_key)
            .finish()
    }
}

impl ServerConfig {
    /// The defaults for a data directory. Fails only if the directory's
    /// path is not UTF-8 (the default store URL is built from it).
    pub fn new(data_dir: impl Into<PathBuf>) -> Result<Self> {
        Self::build(
            ConfigFile::default(),
            Overrides {
                data: Some(data_dir.into()),
                ..Overrides::default()
            },
        )
    }

    /// Combines a file (or none) with command-line overrides and checks the
    /// result.
    pub fn build(file: ConfigFile, flags: Overrides) -> Result<Self> {
        let data_dir = flags
            .data
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let listen_text = flags
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ServerError::Config(format!(
                "listen address {listen_text:?} is not IP:PORT (for example 127.0.0.1:8443, or port 0 for any free port)"
            ))
        })?;
        let store_url = match flags.store.or(file.store) {
            Some(url) => url,
            None => {
                let path = data_dir.join("postvault.sqlite");
                let path = path.to_str().ok_or_else(|| {
                    ServerError::Config(
                        "the data directory's path is not UTF-8: give --store sqlite://PATH".into(),
                    )
                })?;
                format!("sqlite://{path}")
            }
        };
        if !(store_url.starts_with("sqlite://")
            || store_url.starts_with("postgres://")
            || store_url.starts_with("postgresql://"))
        {
            return Err(ServerError::Config(
                "store must be sqlite://PATH or postgres://... (the value is not repeated: it may hold a password)".into(),
            ));
        }
        let session_idle_timeout_secs = file
            .session_idle_timeout_secs
            .unwrap_or(DEFAULT_SESSION_IDLE_TIMEOUT_SECS);
        if !(1..=86_400).contains(&session_idle_timeout_secs) {
            return Err(ServerError::Config(format!(
                "session_idle_timeout_secs = {session_idle_timeout_secs}: must be 1 to 86400 (a day)"
            )));
        }
        let failed_logon_limit = file
            .failed_logon_limit
            .unwrap_or(DEFAULT_FAILED_LOGON_LIMIT);
        if !(1..=100).contains(&failed_logon_limit) {
            return Err(ServerError::Config(format!(
                "failed_logon_limit = {failed_logon_limit}: must be 1 to 100"
            )));
        }
        let max_body_bytes = file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(ServerError::Config(format!(
                "max_body_bytes = {max_body_bytes}: must be 1024 to 67108864 (64 MiB)"
            )));
        }
        let tls = match (file.tls_cert, file.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ServerError::Config(
                    "tls_cert and tls_key go together: give both, or neither for a self-signed certificate in DATA/tls/".into(),
                ));
            }
        };
        let module_sockets = if flags.module_sockets.is_empty() {
            file.module_sockets.unwrap_or_default()
        } else {
            flags.module_sockets
        };
        if let Some(n) = file.modules
            && !module_sockets.is_empty()
            && n != module_sockets.len()
        {
            return Err(ServerError::Config(format!(
                "modules = {n} but module_sockets names {} daemons: leave modules out (one member per socket)",
                module_sockets.len()
            )));
        }
        for (i, s) in module_sockets.iter().enumerate() {
            if module_sockets[..i].contains(s) {
                return Err(ServerError::Config(format!(
                    "module_sockets names {} twice: each member needs its own daemon",
                    s.display()
                )));
            }
        }
        let modules = if module_sockets.is_empty() {
            file.modules.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, |n| n.get().min(DEFAULT_MAX_MODULES))
            })
        } else {
            module_sockets.len()
        };
        if !(1..=64).contains(&modules) {
            return Err(ServerError::Config(format!(
                "modules = {modules}: must be 1 to 64"
            )));
        }
        let async_workers = file
            .async_workers
            .unwrap_or_else(|| default_async_workers_here(engine_of(&store_url)));
        if !(1..=256).contains(&async_workers) {
            return Err(ServerError::Config(format!(
                "async_workers = {async_workers}: must be 1 to 256"
            )));
        }
        let print_queue = file.print_queue.unwrap_or(DEFAULT_PRINT_QUEUE);
        if !(1..=1 << 20).contains(&print_queue) {
            return Err(ServerError::Config(format!(
                "print_queue = {print_queue}: must be 1 to 1048576"
            )));
        }
        let meter_stock = file.meter_stock.unwrap_or(DEFAULT_METER_STOCK);
        if !(1..=10_000).contains(&meter_stock) {
            return Err(ServerError::Config(format!(
                "meter_stock = {meter_stock}: must be 1 to 10000"
            )));
        }
        let modules_dir = file.modules_dir.unwrap_or_else(|| data_dir.join("modules"));
        Ok(Self {
            data_dir,
            listen,
            store_url,
            session_idle_timeout_secs,
            failed_logon_limit,
            max_body_bytes,
            tls,
            modules,
            async_workers,
            print_queue,
            module_sockets,
            modules_dir,
            module_first: file.module_first.unwrap_or(0),
            meter_stock,
            cross_check_threshold: file.cross_check_threshold.unwrap_or(0),
            provider_public_key: file.provider_public_key,
        })
    }

    /// The store engine the URL names (`"sqlite"` or `"postgres"`).
    pub fn store_engine(&self) -> &'static str {
        engine_of(&self.store_url)
    }
}

/// The engine a store URL (already checked) names.
fn engine_of(store_url: &str) -> &'static str {
    if store_url.starts_with("sqlite://") {
        "sqlite"
    } else {
        "postgres"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = ServerConfig::new("/srv/pv").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.store_url, "sqlite:///srv/pv/postvault.sqlite");
        assert_eq!(c.session_idle_timeout_secs, 900);
        assert_eq!(c.failed_logon_limit, 5);
        assert_eq!(c.tls, None);
        assert_eq!(c.async_workers, default_async_workers_here("sqlite"));
        assert_eq!(c.print_queue, DEFAULT_PRINT_QUEUE);
    }

    #[test]
    fn async_workers_follow_the_cpus_and_the_store_engine() {
        assert_eq!(default_async_workers(0, "sqlite"), 1);
        assert_eq!(default_async_workers(1, "sqlite"), 1);
        assert_eq!(default_async_workers(2, "sqlite"), 1);
        assert_eq!(default_async_workers(16, "sqlite"), 15);
        assert_eq!(default_async_workers(0, "postgres"), 1);
        assert_eq!(default_async_workers(2, "postgres"), 2);
        assert_eq!(default_async_workers(16, "postgres"), 16);
        let file = ConfigFile::parse("store = \"postgres://pv@db/pv\"\n").unwrap();
        let c = ServerConfig::build(file, Overrides::default()).unwrap();
        assert_eq!(c.async_workers, default_async_workers_here("postgres"));
        let file = ConfigFile::parse("async_workers = 3\n").unwrap();
        let c = ServerConfig::build(file, Overrides::default()).unwrap();
        assert_eq!(c.async_workers, 3);
    }

    #[test]
    fn flags_override_the_file() {
        let file = ConfigFile::parse(
            "data = \"/a\"\nlisten = \"127.0.0.1:1\"\nstore = \"sqlite:///x\"\nsession_idle_timeout_secs = 60\n",
        )
        .unwrap();
        let c = ServerConfig::build(
            file,
            Overrides {
                data: Some("/b".into()),
                listen: Some("127.0.0.1:0".into()),
                store: None,
                module_sockets: Vec::new(),
            },
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/b"));
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.store_url, "sqlite:///x");
        assert_eq!(c.session_idle_timeout_secs, 60);
    }

    #[test]
    fn module_sockets_make_the_members() {
        let file =
            ConfigFile::parse("module_sockets = [\"/run/a.sock\", \"/run/b.sock\"]\n").unwrap();
        let c = ServerConfig::build(file, Overrides::default()).unwrap();
        assert_eq!(c.modules, 2);
        assert_eq!(
            c.module_sockets,
            vec![PathBuf::from("/run/a.sock"), PathBuf::from("/run/b.sock")]
        );
        // The command line replaces the file's list.
        let file =
            ConfigFile::parse("module_sockets = [\"/run/a.sock\", \"/run/b.sock\"]\n").unwrap();
        let c = ServerConfig::build(
            file,
            Overrides {
                module_sockets: vec!["/run/c.sock".into()],
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.modules, 1);
        assert_eq!(c.module_sockets, vec![PathBuf::from("/run/c.sock")]);
        // A count that disagrees, or a socket named twice, is refused.
        let file = ConfigFile::parse("modules = 3\nmodule_sockets = [\"/run/a.sock\"]\n").unwrap();
        let e = ServerConfig::build(file, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("modules = 3"), "{e}");
        let file =
            ConfigFile::parse("module_sockets = [\"/run/a.sock\", \"/run/a.sock\"]\n").unwrap();
        let e = ServerConfig::build(file, Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let e = ConfigFile::parse("session_timeout = 5\n").unwrap_err();
        assert!(e.to_string().contains("session_timeout"), "{e}");
        for text in [
            "session_idle_timeout_secs = 0",
            "failed_logon_limit = 0",
            "max_body_bytes = 10",
            "listen = \"localhost\"",
            "store = \"mysql://x\"",
            "tls_cert = \"/c.pem\"",
            "async_workers = 0",
            "async_workers = 257",
            "print_queue = 0",
            "print_queue = 1048577",
        ] {
            let file = ConfigFile::parse(text).unwrap();
            assert!(
                ServerConfig::build(file, Overrides::default()).is_err(),
                "{text}"
            );
        }
    }
}
