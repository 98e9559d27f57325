//! Reaching a module: a daemon behind a socket or the module directory opened
//! in this process; one secure session per invocation, with an optional
//! operator logged on for its duration. Also the wall clock, which only the
//! binary reads.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use postvault_crypto::Faults;
use postvault_module::audit_sink::{AUDIT_LOG_FILE, CaptureSink, Captured, FileAuditSink};
use postvault_module::nvm::NVM_FILE;
use postvault_module::protocol::Status;
use postvault_module::{
    ClientError, Clock, Module, ModuleClient, ModuleConfig, ModuleState, Request, Response, Role,
};
use postvault_seal::{SealConfig, open_provider};

use crate::cli::{ConnArgs, OperatorArgs};
use crate::{secrets, usage};

/// The host's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    // The one place postvault reads the wall clock; every other crate takes a `Clock`.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// Options for opening a module directory in this process.
#[derive(Default)]
pub struct LocalOptions {
    /// Seal specification; default `file:DIR/seal.key`.
    pub seal: Option<String>,
    /// Self-tests to fail on purpose.
    pub faults: Option<Faults>,
    /// Sign at least every this many audit entries.
    pub sign_every: Option<u32>,
    /// Also capture every stored audit entry here (a daemon sends them back
    /// with each answer).
    pub audit_capture: Option<Captured>,
}

/// Opens the module in `dir` (creating the directory and, for a new module,
/// the seal key). Fails clearly when another process holds the directory.
pub fn open_local(dir: &Path, opts: LocalOptions) -> Result<Module> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the module directory {}", dir.display()))?;
    let spec = opts
        .seal
        .unwrap_or_else(|| format!("file:{}", dir.join("seal.key").display()));
    let seal_config = SealConfig::parse(&spec).context("bad --seal")?;
    // A seal key is created only for a module that has no NVM yet: for an
    // existing one, a missing key is a mistake to report, not to paper over.
    let create_key = !dir.join(NVM_FILE).exists();
    let seal = open_provider(&seal_config, create_key).context("cannot open the seal provider")?;
    let mut config = ModuleConfig::new(dir, seal, Arc::new(SystemClock));
    if let Some(f) = opts.faults {
        config.faults = f;
    }
    if let Some(n) = opts.sign_every {
        config.sign_every = n;
    }
    if let Some(captured) = opts.audit_capture {
        let log = dir.join(AUDIT_LOG_FILE);
        let file = FileAuditSink::open(&log)
            .with_context(|| format!("cannot open the audit log {}", log.display()))?;
        config.audit_sink = Some(Box::new(CaptureSink::new(file, captured)));
    }
    Ok(Module::open(config)?)
}

/// Where the module is.
enum Target {
    Socket(PathBuf),
    Dir(PathBuf),
}

/// Checks the connection options: exactly one of --socket / --dir, and --seal only with --dir.
fn target(conn: &ConnArgs) -> Result<Target> {
    match (&conn.socket, &conn.dir) {
        (Some(_), Some(_)) => usage!(
            "give either --socket or --dir, not both (check the POSTVAULT_MODULE_SOCKET and POSTVAULT_MODULE_DIR environment variables)"
        ),
        (None, None) => usage!(
            "say which module: --socket PATH (a daemon started by `postvault module serve`) or --dir DIR (open the module directory in this process)"
        ),
        (Some(s), None) => {
            if conn.seal.is_some() {
                usage!(
                    "--seal applies only with --dir; a daemon uses the seal it was started with"
                );
            }
            Ok(Target::Socket(s.clone()))
        }
        (None, Some(d)) => Ok(Target::Dir(d.clone())),
    }
}

/// True when --socket or --dir was given.
pub fn given(conn: &ConnArgs) -> bool {
    conn.socket.is_some() || conn.dir.is_some()
}

/// A secure session with a module, and whether an operator is logged on.
pub struct Conn {
    client: ModuleClient,
    socket: Option<PathBuf>,
    verbose: bool,
    // Keeps an in-process module (and its directory lock) alive for the session.
    _local: Option<Arc<Mutex<Module>>>,
}

impl Conn {
    /// Connects to the module and opens a secure session. With --dir the
    /// directory must exist unless `may_create` (only `module init` makes
    /// a new module): a mistyped path is an error, not a new, empty module.
    pub fn open(conn: &ConnArgs, verbose: bool, may_create: bool) -> Result<Self> {
        match target(conn)? {
            Target::Dir(dir) if !may_create && !dir.is_dir() => bail!(
                "there is no module directory {}: check --dir (or POSTVAULT_MODULE_DIR); a new module is made with `postvault module init --dir DIR ...`",
                dir.display()
            ),
            Target::Socket(path) => {
                let client = ModuleClient::socket(&path)?;
                Ok(Self {
                    client,
                    socket: Some(path),
                    verbose,
                    _local: None,
                })
            }
            Target::Dir(dir) => {
                let module = open_local(
                    &dir,
                    LocalOptions {
                        seal: conn.seal.clone(),
                        ..LocalOptions::default()
                    },
                )?;
                let module = Arc::new(Mutex::new(module));
                let client = ModuleClient::local(Arc::clone(&module))?;
                Ok(Self {
                    client,
                    socket: None,
                    verbose,
                    _local: Some(module),
                })
            }
        }
    }

    /// Sends a command. A module error becomes `Err` (its text is the
    /// module's own); with -v, the audit entry it produced is reported on stderr.
    pub fn call(&mut self, req: &Request) -> Result<Response> {
        let reply = self.client.call(req).map_err(|e| self.transport_error(e))?;
        if self.verbose
            && let Some(entry) = &reply.audit
        {
            eprintln!(
                "audit: seq {} {} {}{}",
                entry.seq,
                entry.command,
                entry.reason,
                if entry.signature.is_some() {
                    " (signed)"
                } else {
                    ""
                }
            );
        }
        Ok(reply.result?)
    }

    fn transport_error(&self, e: ClientError) -> anyhow::Error {
        match (&e, &self.socket) {
            (ClientError::Io(_) | ClientError::Protocol(_), Some(s)) => {
                anyhow::Error::new(e).context(format!(
                    "lost the module daemon at {}; check that `postvault module serve` is still running",
                    s.display()
                ))
            }
            _ => e.into(),
        }
    }

    /// Logs `op` on (reading or prompting the password); returns the role.
    pub fn logon(&mut self, op: &OperatorArgs) -> Result<Role> {
        let password = secrets::logon_password(&op.as_user, op.password_file.as_deref())?;
        self.logon_with(&op.as_user, password)
    }

    /// Logs `user` on with `password`; returns the role.
    pub fn logon_with(&mut self, user: &str, password: postvault_module::Password) -> Result<Role> {
        match self.call(&Request::Logon {
            user_id: user.to_string(),
            password,
        })? {
            Response::Role(r) => Ok(r),
            other => Err(unexpected("Logon", &other)),
        }
    }

    /// Get Status.
    pub fn status(&mut self) -> Result<Status> {
        match self.call(&Request::GetStatus)? {
            Response::Status(s) => Ok(*s),
            other => Err(unexpected("GetStatus", &other)),
        }
    }

    /// Logs off whoever is still logged on (commands such as Reset log
    /// everyone off themselves) and closes the session.
    pub fn finish(mut self) -> Result<()> {
        let status = self.status()?;
        if self._local.is_some()
            && matches!(
                status.current_state,
                ModuleState::Administrative
                    | ModuleState::ExportingShares
                    | ModuleState::ImportingShares
            )
        {
            eprintln!(
                "warning: the module is in {} state, which does not survive a restart, and with --dir the module restarts at every invocation; run multi-step ceremonies against a daemon (`postvault module serve`, then --socket)",
                status.current_state
            );
        }
        if status.user_id.is_some() {
            self.call(&Request::Logoff)?;
        }
        self.call(&Request::CloseSession)?;
        Ok(())
    }
}

/// An answer of the wrong kind (a module bug, or a version mismatch).
pub fn unexpected(command: &str, r: &Response) -> anyhow::Error {
    anyhow!("unexpected answer from the module to {command}: {r:?}")
}

/// Connects, logs `op` on when given, runs `f`, then logs off and closes the
/// session (also after a failure, so no logon lingers in a daemon).
pub fn with_module<T>(
    conn: &ConnArgs,
    op: Option<&OperatorArgs>,
    verbose: bool,
    f: impl FnOnce(&mut Conn) -> Result<T>,
) -> Result<T> {
    with_module_in(conn, op, verbose, false, f)
}

/// [`with_module`] for `module init`: a --dir that does not exist yet is
/// made.
pub fn with_new_module<T>(
    conn: &ConnArgs,
    verbose: bool,
    f: impl FnOnce(&mut Conn) -> Result<T>,
) -> Result<T> {
    with_module_in(conn, None, verbose, true, f)
}

fn with_module_in<T>(
    conn: &ConnArgs,
    op: Option<&OperatorArgs>,
    verbose: bool,
    may_create: bool,
    f: impl FnOnce(&mut Conn) -> Result<T>,
) -> Result<T> {
    let mut c = Conn::open(conn, verbose, may_create)?;
    let result = match op {
        Some(op) => c.logon(op).and_then(|_| f(&mut c)),
        None => f(&mut c),
    };
    match result {
        Ok(v) => {
            c.finish()?;
            Ok(v)
        }
        Err(e) => {
            // The command's error is what matters; cleanup is best effort.
            let _ = c.finish();
            Err(e)
        }
    }
}
