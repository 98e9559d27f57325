//! postvault-pool: the postal server's cryptographic modules, in process
//! or as module daemons.
//!
//! A [`Pool`] owns N modules (`crates/module`) that all hold the same Master
//! Key Set, so any of them can serve any meter (seed 002: modules are
//! stateless with respect to meters). By default the modules run in this
//! process (their directories under the pool directory); with
//! [`PoolConfig::sockets`] each member is a module daemon
//! (`postvault module serve --dir D --socket S`) in its own process, which
//! keeps the keys out of the server's memory: the pool only ever holds a
//! secure session with it. It is synchronous inside, like
//! [`ModuleClient`]; [`Pool::checkout`] is async so a tokio server can wait
//! for a free member and then hold it exclusively across an await (it moves
//! the [`Checkout`] into `tokio::task::spawn_blocking` and back).
//!
//! On disk, in the pool directory `DIR` (mode 0700):
//!
//! - `DIR/seal.key`: the file seal key every in-process member's NVM is
//!   sealed with (a daemon uses the seal it was started with);
//! - `DIR/m{i}/`: in-process member `i` (its sealed NVM and its
//!   `audit.log`; a daemon keeps these in its own directory);
//! - `DIR/deployment.json`: the deployment's public facts and key tokens,
//!   written last by the ceremony: its absence beside `DIR/m0` marks a
//!   ceremony that did not finish;
//! - `DIR/operators.json` (0600): every member's operators and their random
//!   passwords. **This is the development default**: the passwords sit in a
//!   file readable by the server's user; a production deployment runs the
//!   ceremony with people who keep their own.
//!
//! A fresh directory gets the whole ceremony automatically (see
//! [`Pool::open`]); an existing one is opened again with nothing
//! regenerated.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ceremony;
mod error;
pub mod files;

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use postvault_crypto::Faults;
use postvault_crypto::password::Argon2Params;
use postvault_crypto::rng::Rng;
use postvault_module::audit_sink::{AUDIT_LOG_FILE, CaptureSink, Captured, FileAuditSink, drain};
use postvault_module::keys::KeyToken;
use postvault_module::psd::SealedPackage;
use postvault_module::{
    ClientError, Clock, Module, ModuleClient, ModuleConfig, ModuleState, Password, Request,
    Response,
};
use postvault_seal::{SealConfig, open_provider};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use crate::error::PoolError;
use crate::files::{
    DEPLOYMENT_FILE, DeploymentFile, ModuleOperators, OPERATORS_FILE, OperatorsFile, SEAL_KEY_FILE,
    read_json, write_json_atomic,
};

/// How to open a pool.
pub struct PoolConfig {
    /// The pool directory (e.g. `DATA/modules`); created with mode 0700.
    pub dir: PathBuf,
    /// Number of members, at least 1.
    pub modules: usize,
    /// The first member's index: this pool opens members `first` to
    /// `first + modules - 1` of the directory. Several servers can share
    /// one pool directory (one MKS) with disjoint ranges; each member is
    /// locked by the process that opens it. A fresh directory needs
    /// `first` = 0.
    pub first: usize,
    /// Argon2id cost of the operators' passwords
    /// ([`Argon2Params::TEST`] in tests).
    pub argon2: Argon2Params,
    /// The modules' time source.
    pub clock: Arc<dyn Clock>,
    /// The provider's ECDSA P-256 public key (65 bytes, uncompressed),
    /// loaded into the crypto card of a fresh pool (an existing pool keeps
    /// the one it was set up with).
    pub provider_public_key: Vec<u8>,
    /// Self-test faults per member (index `i` for member `i`; missing
    /// entries mean none). Empty in production. In-process members only.
    pub faults: Vec<Faults>,
    /// Module daemons' sockets: when not empty, member `first + i` is the
    /// daemon at `sockets[i]` (started with `postvault module serve`), and
    /// `modules` must equal `sockets.len()`. A fresh daemon (its module
    /// Uninitialized) is set up by the pool's ceremony like an in-process
    /// member; the daemon's directory, seal and audit log are its own.
    /// A daemon belongs to one pool (one server): the server keeps each
    /// module's newest checkpoint. Empty: in-process members.
    pub sockets: Vec<PathBuf>,
}

impl PoolConfig {
    /// A configuration with the defaults: one member per available CPU,
    /// production Argon2id cost, no faults.
    pub fn new(dir: &Path, clock: Arc<dyn Clock>, provider_public_key: Vec<u8>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            modules: std::thread::available_parallelism().map_or(1, |n| n.get()),
            first: 0,
            argon2: Argon2Params::DEFAULT,
            clock,
            provider_public_key,
            faults: Vec::new(),
            sockets: Vec::new(),
        }
    }
}

/// The deployment's public facts, the same on every member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The registration encryption key (X25519 HPKE, 32 bytes: the crypto
    /// card's `decryption_public_key`): clients seal their secrets to it.
    pub registration_public_key: Vec<u8>,
    /// The registration signing key (ECDSA P-256, 65 bytes).
    pub registration_signing_public_key: Vec<u8>,
    /// The CA certificate (DER) PSD certificates chain to.
    pub ca_certificate_der: Vec<u8>,
    /// The provider's public key (ECDSA P-256, 65 bytes) the crypto card holds.
    pub provider_public_key: Vec<u8>,
}

/// One member as [`Pool::status`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member's index (directory `DIR/m{index}`).
    pub index: usize,
    /// Its module ID (hex, as `Status.module_id`), once initialized.
    pub module_id: Option<String>,
    /// Whether it serves requests.
    pub in_service: bool,
    /// Why it is out of service.
    pub reason: Option<String>,
    /// The daemon's socket, for a member that is a module daemon.
    pub socket: Option<PathBuf>,
}

/// What a call returned: the module's response and the audit entries the
/// call made on that module, in order, as `(seq, json line)`.
#[derive(Debug, Clone)]
pub struct Called {
    /// The module's response.
    pub response: Response,
    /// The audit entries, as stored in the member's `audit.log`.
    pub audit: Vec<(u64, String)>,
}

/// Where a member's module runs.
#[derive(Clone)]
enum Backend {
    /// In this process.
    Local(Arc<Mutex<Module>>),
    /// A module daemon behind this socket.
    Socket(PathBuf),
}

impl Backend {
    /// Opens a new secure session with the module.
    fn connect(&self) -> Result<ModuleClient, ClientError> {
        match self {
            Backend::Local(m) => ModuleClient::local(Arc::clone(m)),
            Backend::Socket(path) => ModuleClient::socket(path),
        }
    }
}

/// What a module says of itself: (state, why it is in Error, module ID).
type Probe = (ModuleState, Option<String>, Option<String>);

/// Asks a module for its state and ID: directly for an in-process one,
/// with Get Status over `client` for a daemon.
fn probe(backend: &Backend, client: Option<&mut ModuleClient>) -> Result<Probe, String> {
    match backend {
        Backend::Local(m) => {
            let g = lock(m);
            Ok((
                g.current_state(),
                g.error().map(str::to_string),
                g.module_id(),
            ))
        }
        Backend::Socket(_) => {
            let c = client.ok_or("no session with the module daemon")?;
            let st = ceremony::status(c).map_err(|e| e.to_string())?;
            Ok((st.current_state, st.error, st.module_id))
        }
    }
}

/// Moves the audit entries a daemon sent back with its answers into the
/// member's capture buffer (an in-process module's sink fills it directly).
fn pull_audit(client: Option<&mut ModuleClient>, captured: &Captured) {
    if let Some(c) = client {
        let entries = c.take_audit();
        if !entries.is_empty() {
            lock(captured).extend(entries);
        }
    }
}

/// One member: its module, a No-Role session with it, its audit capture.
struct Member {
    index: usize,
    module_id: String,
    backend: Backend,
    /// `None` after a session failure: the next call opens a new session.
    client: Option<ModuleClient>,
    captured: Captured,
    /// A call failed, or was one that may change the module's state, since
    /// the member was checked out: a daemon is asked for its state before
    /// the member goes back to the pool.
    suspect: bool,
}

impl Member {
    fn client(&mut self) -> Result<&mut ModuleClient, PoolError> {
        if self.client.is_none() {
            let c = self.backend.connect().map_err(|source| PoolError::Client {
                module_id: self.module_id.clone(),
                source,
            })?;
            self.client = Some(c);
        }
        self.client.as_mut().ok_or_else(|| PoolError::Client {
            module_id: self.module_id.clone(),
            source: ClientError::Protocol("no session".into()),
        })
    }

    /// Why the member must leave service, if it must: its module is in
    /// Error, or (a daemon) it cannot be reached.
    fn failed(&mut self) -> Option<String> {
        if matches!(self.backend, Backend::Socket(_)) && !self.suspect {
            return None;
        }
        self.suspect = false;
        let backend = self.backend.clone();
        let result = match &backend {
            Backend::Local(_) => probe(&backend, None),
            Backend::Socket(path) => match self.client() {
                Ok(c) => probe(&backend, Some(c)),
                Err(e) => Err(format!("module daemon {} unreachable: {e}", path.display())),
            },
        };
        pull_audit(self.client.as_mut(), &self.captured);
        match result {
            Ok((ModuleState::Error, why, _)) => Some(format!(
                "went to Error: {}",
                why.as_deref().unwrap_or("no reason given")
            )),
            Ok(_) => None,
            Err(why) => Some(why),
        }
    }
}

struct Inner {
    dir: PathBuf,
    deployment: Deployment,
    ca_key: KeyToken,
    /// Member index -> its Certificate Authority operator's password.
    ca_passwords: HashMap<usize, Password>,
    /// The Auditor's password of each member (for Export Audit Key).
    auditor_passwords: HashMap<usize, Password>,
    /// Free in-service members; a permit of `permits` stands for each.
    idle: Mutex<VecDeque<Member>>,
    permits: Arc<Semaphore>,
    status: Mutex<Vec<MemberStatus>>,
    /// Audit entries not returned with a call, as (module ID, seq, line).
    backlog: Mutex<Vec<(String, u64, String)>>,
    /// In-process modules out of service, kept open so nobody else opens
    /// their directory meanwhile.
    retired: Mutex<Vec<Arc<Mutex<Module>>>>,
}

/// Locks a mutex; a panic elsewhere never leaves the pool's own lists
/// half-changed (each change is one push or pop), so a poisoned lock is
/// taken as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The postal server's module pool. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

/// A member while the pool opens it.
struct Slot {
    index: usize,
    /// `None` when the module could not be opened at all.
    backend: Option<Backend>,
    /// Where it was to be found (for [`MemberStatus::socket`]).
    socket: Option<PathBuf>,
    client: Option<ModuleClient>,
    captured: Captured,
    module_id: Option<String>,
    /// Why it is out of service; `None` while it may serve.
    reason: Option<String>,
}

impl Slot {
    /// The module's state, error and ID; `None` when it cannot be asked
    /// (the reason says why).
    fn probe(&mut self) -> Option<Probe> {
        let backend = self.backend.as_ref()?;
        let result = probe(backend, self.client.as_mut());
        pull_audit(self.client.as_mut(), &self.captured);
        match result {
            Ok(p) => Some(p),
            Err(why) => {
                if self.reason.is_none() {
                    self.reason = Some(format!("cannot get its status: {why}"));
                }
                None
            }
        }
    }

    fn state(&mut self) -> Option<(ModuleState, Option<String>)> {
        self.probe().map(|(state, why, _)| (state, why))
    }

    fn current_id(&mut self) -> Option<String> {
        self.probe().and_then(|(_, _, id)| id)
    }

    fn client(&mut self) -> Result<&mut ModuleClient, PoolError> {
        let index = self.index;
        self.client.as_mut().ok_or_else(|| PoolError::Open {
            index,
            why: "no session with the module".into(),
        })
    }
}

impl Pool {
    /// Opens the pool in `config.dir`.
    ///
    /// A fresh directory (no `deployment.json`, no `m0`) gets the whole
    /// ceremony: the first healthy member becomes the master (Start
    /// Initialization; Initialize Access Control with `admin`, `so`, `kc1`,
    /// `kc2`; Generate MKS; Create Certificate Authority "postvault CA" for
    /// 3650 days; Initialize Crypto-Card with generated keys, the CA
    /// certificate and `provider_public_key`), every other healthy member is
    /// cloned from it by 2-of-2 MKS shares and loads the same crypto card,
    /// and every member gets a Certificate Authority operator `ca`. The
    /// passwords are random and go to `operators.json` (see the crate
    /// documentation: a development default); then `deployment.json` is
    /// written. A failure on the way leaves a directory that `open` refuses
    /// until it is deleted.
    ///
    /// An existing directory is opened again: same module IDs, same MKS,
    /// nothing regenerated. A member that opens in Error, or in a state or
    /// with an ID the pool does not expect, is left out of service and
    /// reported by [`Pool::status`]. A member with no module yet (more
    /// members asked than before, or one skipped at the ceremony) is cloned
    /// from an in-service member.
    ///
    /// Fails only if no member at all is usable (or the directory or its
    /// files are unusable).
    pub fn open(config: PoolConfig) -> Result<Pool, PoolError> {
        if config.modules == 0 {
            return Err(PoolError::Config("a pool needs at least one module".into()));
        }
        if !config.sockets.is_empty() && config.sockets.len() != config.modules {
            return Err(PoolError::Config(format!(
                "{} module daemon sockets given for {} members: give one socket per member",
                config.sockets.len(),
                config.modules
            )));
        }
        if config.provider_public_key.len() != 65 || config.provider_public_key[0] != 4 {
            return Err(PoolError::Config(
                "the provider public key must be an uncompressed P-256 point (65 bytes, 0x04 first)"
                    .into(),
            ));
        }
        let dir = config.dir.clone();
        let deployment_path = dir.join(DEPLOYMENT_FILE);
        let fresh = !deployment_path.exists();
        if fresh {
            if dir.join("m0").exists() {
                return Err(PoolError::Unfinished {
                    dir,
                    why: format!("m0 exists but {DEPLOYMENT_FILE} does not"),
                });
            }
            std::fs::create_dir_all(&dir).map_err(PoolError::io(&dir))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(PoolError::io(&dir))?;
        }
        if fresh && config.first != 0 {
            return Err(PoolError::Config(format!(
                "{} holds no pool yet: the first server on it must start with its members from m0 (module_first = 0)",
                dir.display()
            )));
        }
        let mut slots: Vec<Slot> = (config.first..config.first + config.modules)
            .map(|i| open_slot(&config, i))
            .collect::<Result<_, _>>()?;
        let mut rng = Rng::new(Faults::none());
        let now = config.clock.now();

        let (deployment, mut operators) = if fresh {
            let (d, o) = ceremony_fresh(&mut slots, &config, now, &mut rng)?;
            write_json_atomic(&dir, OPERATORS_FILE, &o)?;
            write_json_atomic(&dir, DEPLOYMENT_FILE, &d)?;
            (d, o)
        } else {
            let d: DeploymentFile = read_json(&deployment_path)?;
            let operators_path = dir.join(OPERATORS_FILE);
            if !operators_path.exists() {
                return Err(PoolError::Unfinished {
                    dir,
                    why: format!("{DEPLOYMENT_FILE} exists but {OPERATORS_FILE} does not"),
                });
            }
            let o: OperatorsFile = read_json(&operators_path)?;
            (d, o)
        };
        if !fresh {
            check_existing(&mut slots, &operators);
            if clone_missing(&mut slots, &mut operators, &deployment, now, &mut rng) {
                write_json_atomic(&dir, OPERATORS_FILE, &operators)?;
            }
        }
        check_same_mks(&mut slots);

        Self::assemble(dir, slots, deployment, &operators)
    }

    /// Builds the pool from the opened slots.
    fn assemble(
        dir: PathBuf,
        slots: Vec<Slot>,
        d: DeploymentFile,
        operators: &OperatorsFile,
    ) -> Result<Pool, PoolError> {
        let mut idle = VecDeque::new();
        let mut status = Vec::new();
        let mut backlog = Vec::new();
        let mut retired = Vec::new();
        let mut ca_passwords = HashMap::new();
        let mut auditor_passwords = HashMap::new();
        for mut s in slots {
            let module_id = if s.reason.is_none() {
                s.current_id().or(s.module_id.clone())
            } else {
                s.module_id.clone()
            };
            let id = module_id.clone().unwrap_or_default();
            pull_audit(s.client.as_mut(), &s.captured);
            backlog.extend(
                drain(&s.captured)
                    .into_iter()
                    .map(|(seq, line)| (id.clone(), seq, line)),
            );
            let ca = operators
                .get(s.index)
                .and_then(|o| o.password(ceremony::CA_USER).ok());
            if let Some(auditor) = operators
                .get(s.index)
                .and_then(|o| o.password(ceremony::AUDITOR_USER).ok())
            {
                auditor_passwords.insert(s.index, auditor);
            }
            if s.reason.is_none() && ca.is_none() {
                s.reason = Some(format!("{OPERATORS_FILE} has no CA operator for it"));
            }
            if let Some(why) = &s.reason {
                eprintln!("module pool: member {} is out of service: {why}", s.index);
            }
            status.push(MemberStatus {
                index: s.index,
                module_id: module_id.clone(),
                in_service: s.reason.is_none(),
                reason: s.reason.clone(),
                socket: s.socket.clone(),
            });
            match (s.reason, s.backend, ca) {
                (None, Some(backend), Some(ca)) => {
                    ca_passwords.insert(s.index, ca);
                    idle.push_back(Member {
                        index: s.index,
                        module_id: id,
                        backend,
                        client: s.client,
                        captured: s.captured,
                        suspect: false,
                    });
                }
                (_, Some(Backend::Local(module)), _) => retired.push(module),
                _ => {}
            }
        }
        if idle.is_empty() {
            return Err(PoolError::NoModule(reasons(&status)));
        }
        let permits = Arc::new(Semaphore::new(idle.len()));
        Ok(Pool {
            inner: Arc::new(Inner {
                dir,
                deployment: Deployment {
                    registration_public_key: d.registration_public_key,
                    registration_signing_public_key: d.registration_signing_public_key,
                    ca_certificate_der: d.ca_certificate_der,
                    provider_public_key: d.provider_public_key,
                },
                ca_key: d.ca_key,
                ca_passwords,
                auditor_passwords,
                idle: Mutex::new(idle),
                permits,
                status: Mutex::new(status),
                backlog: Mutex::new(backlog),
                retired: Mutex::new(retired),
            }),
        })
    }

    /// The deployment's public facts.
    pub fn deployment(&self) -> &Deployment {
        &self.inner.deployment
    }

    /// The pool directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Waits for a free in-service member and holds it exclusively.
    /// Waiters are served in the order they came (a fair semaphore), and
    /// members in turn. Fails only when no member is in service any more.
    pub async fn checkout(&self) -> Result<Checkout, PoolError> {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| self.no_module())?;
        self.take(permit).ok_or_else(|| self.no_module())
    }

    /// A free in-service member, if one is free now.
    pub fn try_checkout(&self) -> Option<Checkout> {
        let permit = Arc::clone(&self.inner.permits).try_acquire_owned().ok()?;
        self.take(permit)
    }

    fn take(&self, permit: OwnedSemaphorePermit) -> Option<Checkout> {
        // A permit stands for an idle member: members go back to `idle`
        // before their permit is released.
        let member = lock(&self.inner.idle).pop_front()?;
        Some(Checkout {
            member: Some(member),
            logged_on: false,
            permit: Some(permit),
            pool: Arc::clone(&self.inner),
        })
    }

    fn no_module(&self) -> PoolError {
        PoolError::NoModule(reasons(&self.status()))
    }

    /// Every member, in index order.
    pub fn status(&self) -> Vec<MemberStatus> {
        lock(&self.inner.status).clone()
    }

    /// How many members are in service.
    pub fn in_service(&self) -> usize {
        lock(&self.inner.status)
            .iter()
            .filter(|s| s.in_service)
            .count()
    }

    /// Takes the audit entries not returned with a [`Called`] or a
    /// [`PoolError::Refused`], as (module ID, seq, json line), oldest first
    /// per module: those made while the pool opened (the ceremony, cloning,
    /// entries a module handed over again at boot) and those of a call that
    /// failed before the module's answer arrived. They are in the members'
    /// `audit.log` files already; the server stores them beside the others.
    pub fn take_startup_audit(&self) -> Vec<(String, u64, String)> {
        std::mem::take(&mut *lock(&self.inner.backlog))
    }

    /// Gives back audit entries, as (module ID, seq, json line), that the
    /// caller took (from a call or [`Pool::take_startup_audit`]) but could
    /// not store: the next [`Pool::take_startup_audit`] returns them again,
    /// so the server's copy of each module's log has no gap.
    pub fn return_audit(&self, entries: impl IntoIterator<Item = (String, u64, String)>) {
        let mut backlog = lock(&self.inner.backlog);
        let mut back: Vec<_> = entries.into_iter().collect();
        back.append(&mut backlog);
        *backlog = back;
    }
}

/// "member i: why; ..." for every member out of service.
fn reasons(status: &[MemberStatus]) -> String {
    let out: Vec<String> = status
        .iter()
        .filter(|s| !s.in_service)
        .map(|s| {
            format!(
                "member {}: {}",
                s.index,
                s.reason.as_deref().unwrap_or("out of service")
            )
        })
        .collect();
    if out.is_empty() {
        "every member is out of service".into()
    } else {
        out.join("; ")
    }
}

/// Opens member `i`'s module (or connects to its daemon) and a session
/// with it; a member that cannot be opened gets a reason instead.
fn open_slot(config: &PoolConfig, i: usize) -> Result<Slot, PoolError> {
    let captured = Captured::default();
    let mut slot = Slot {
        index: i,
        backend: None,
        socket: None,
        client: None,
        captured: Arc::clone(&captured),
        module_id: None,
        reason: None,
    };
    if let Some(socket) = config.sockets.get(i - config.first) {
        let backend = Backend::Socket(socket.clone());
        slot.socket = Some(socket.clone());
        match backend.connect() {
            Ok(c) => slot.client = Some(c),
            Err(e) => slot.reason = Some(format!("cannot reach its module daemon: {e}")),
        }
        slot.backend = Some(backend);
        return Ok(check_error(slot));
    }
    let mdir = config.dir.join(format!("m{i}"));
    let key_path = config.dir.join(SEAL_KEY_FILE);
    let seal = open_provider(
        &SealConfig::File {
            key_path: key_path.clone(),
        },
        true,
    )
    .map_err(|e| PoolError::Seal {
        path: key_path,
        why: e.to_string(),
    })?;
    let opened = (|| {
        std::fs::create_dir_all(&mdir).map_err(|e| format!("{}: {e}", mdir.display()))?;
        std::fs::set_permissions(&mdir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", mdir.display()))?;
        let log = mdir.join(AUDIT_LOG_FILE);
        let file = FileAuditSink::open(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut mc = ModuleConfig::new(&mdir, seal, Arc::clone(&config.clock));
        mc.argon2 = config.argon2;
        mc.faults = config.faults.get(i).cloned().unwrap_or_default();
        mc.audit_sink = Some(Box::new(CaptureSink::new(file, captured)));
        Module::open(mc).map_err(|e| e.to_string())
    })();
    match opened {
        Ok(m) => {
            let backend = Backend::Local(Arc::new(Mutex::new(m)));
            match backend.connect() {
                Ok(c) => slot.client = Some(c),
                Err(e) => slot.reason = Some(format!("cannot open a session: {e}")),
            }
            slot.backend = Some(backend);
        }
        Err(why) => slot.reason = Some(format!("cannot open the module: {why}")),
    }
    Ok(check_error(slot))
}

/// Notes the module's ID, and takes it out of service if it is in Error.
fn check_error(mut slot: Slot) -> Slot {
    if slot.reason.is_some() {
        return slot;
    }
    if let Some((state, why, id)) = slot.probe() {
        slot.module_id = id;
        if state == ModuleState::Error {
            slot.reason = Some(format!(
                "in Error: {}",
                why.as_deref().unwrap_or("no reason given")
            ));
        }
    }
    slot
}

/// The ceremony on a fresh directory: the first healthy member is the
/// master, the other healthy ones are its clones. Members already out of
/// service (a failed self-test) are left uninitialized; a later open clones
/// them.
fn ceremony_fresh(
    slots: &mut [Slot],
    config: &PoolConfig,
    now: i64,
    rng: &mut Rng,
) -> Result<(DeploymentFile, OperatorsFile), PoolError> {
    let healthy: Vec<usize> = (0..slots.len())
        .filter(|&i| slots[i].reason.is_none())
        .collect();
    let Some((&master, clones)) = healthy.split_first() else {
        let status: Vec<MemberStatus> = slots
            .iter()
            .map(|s| MemberStatus {
                index: s.index,
                module_id: None,
                in_service: false,
                reason: s.reason.clone(),
                socket: s.socket.clone(),
            })
            .collect();
        return Err(PoolError::NoModule(reasons(&status)));
    };
    let out = ceremony::master(
        slots[master].client()?,
        now,
        &config.provider_public_key,
        rng,
    )
    .map_err(|e| PoolError::Ceremony(format!("master (member {master}): {e}")))?;
    let master_ops = ModuleOperators {
        index: slots[master].index,
        module_id: slot_id(&mut slots[master])?,
        passwords: out.passwords,
    };
    let deployment = out.deployment;
    let mut operators = OperatorsFile {
        modules: vec![master_ops.clone()],
    };
    for &c in clones {
        let passwords = clone_into(slots, master, &master_ops, c, &deployment, now, rng)
            .map_err(|e| PoolError::Ceremony(format!("clone (member {c}): {e}")))?;
        operators.modules.push(ModuleOperators {
            index: slots[c].index,
            module_id: slot_id(&mut slots[c])?,
            passwords,
        });
    }
    for s in slots.iter_mut() {
        if s.reason.is_none() {
            s.module_id = s.current_id();
        }
    }
    Ok((deployment, operators))
}

/// Member `s`'s module ID, once initialized.
fn slot_id(s: &mut Slot) -> Result<String, PoolError> {
    s.current_id()
        .ok_or_else(|| PoolError::Ceremony(format!("member {} has no module ID", s.index)))
}

/// Clones the MKS of `slots[source]` into `slots[target]`.
fn clone_into(
    slots: &mut [Slot],
    source: usize,
    source_ops: &ModuleOperators,
    target: usize,
    deployment: &DeploymentFile,
    now: i64,
    rng: &mut Rng,
) -> Result<std::collections::BTreeMap<String, zeroize::Zeroizing<String>>, PoolError> {
    // Two distinct slots, borrowed at once.
    let (a, b) = if source < target {
        let (l, r) = slots.split_at_mut(target);
        (&mut l[source], &mut r[0])
    } else {
        let (l, r) = slots.split_at_mut(source);
        (&mut r[0], &mut l[target])
    };
    ceremony::clone(a.client()?, source_ops, b.client()?, now, deployment, rng)
}

/// Reopening: every member must be the module `operators.json` names, and
/// Operational; an Uninitialized member that was never set up is left for
/// [`clone_missing`].
fn check_existing(slots: &mut [Slot], operators: &OperatorsFile) {
    for s in slots.iter_mut() {
        if s.reason.is_some() {
            continue;
        }
        let Some((state, _, id)) = s.probe() else {
            continue;
        };
        let record = operators.get(s.index);
        s.reason = match (state, record, &id) {
            (ModuleState::Uninitialized, None, _) => None,
            (ModuleState::Operational, Some(r), Some(id)) if &r.module_id == id => None,
            (ModuleState::Operational, Some(r), Some(id)) => Some(format!(
                "module ID {id} is not the {} recorded in {OPERATORS_FILE}",
                r.module_id
            )),
            (ModuleState::Operational, None, _) => Some(format!(
                "initialized, but not recorded in {OPERATORS_FILE} (not set up by this pool)"
            )),
            (state, _, _) => Some(format!(
                "in state {state}, expected Operational (delete DIR/m{} to have it set up again)",
                s.index
            )),
        };
    }
}

/// Clones an in-service member's MKS into every Uninitialized member.
/// Returns true when `operators` changed.
fn clone_missing(
    slots: &mut [Slot],
    operators: &mut OperatorsFile,
    deployment: &DeploymentFile,
    now: i64,
    rng: &mut Rng,
) -> bool {
    let mut changed = false;
    for target in 0..slots.len() {
        let missing = slots[target].reason.is_none()
            && matches!(slots[target].state(), Some((ModuleState::Uninitialized, _)));
        if !missing {
            continue;
        }
        let mut source = None;
        for (i, slot) in slots.iter_mut().enumerate() {
            if i != target
                && slot.reason.is_none()
                && operators.get(slot.index).is_some()
                && matches!(slot.state(), Some((ModuleState::Operational, _)))
            {
                source = Some(i);
                break;
            }
        }
        let Some(source) = source else {
            slots[target].reason =
                Some("not set up, and no in-service member to clone it from".into());
            continue;
        };
        let Some(source_ops) = operators.get(slots[source].index).cloned() else {
            continue;
        };
        match clone_into(slots, source, &source_ops, target, deployment, now, rng)
            .and_then(|p| Ok((p, slot_id(&mut slots[target])?)))
        {
            Ok((passwords, module_id)) => {
                slots[target].module_id = Some(module_id.clone());
                operators.modules.push(ModuleOperators {
                    index: slots[target].index,
                    module_id,
                    passwords,
                });
                changed = true;
            }
            Err(e) => {
                let again = match &slots[target].socket {
                    Some(s) => format!(
                        "reset the module of the daemon at {} to try again",
                        s.display()
                    ),
                    None => format!("delete DIR/m{} to try again", slots[target].index),
                };
                slots[target].reason = Some(format!(
                    "cloning it from member {} failed: {e} ({again})",
                    slots[source].index
                ));
            }
        }
    }
    changed
}

/// Takes out of service any member whose active MKS is not the first
/// in-service member's.
fn check_same_mks(slots: &mut [Slot]) {
    let mut first: Option<(usize, String)> = None;
    for s in slots.iter_mut() {
        if s.reason.is_some() {
            continue;
        }
        let mks = match s.client().and_then(ceremony::status) {
            Ok(st) => st
                .keys
                .active_mks
                .map(|m| format!("{} generation {}", m.id, m.generation)),
            Err(e) => {
                s.reason = Some(format!("Get Status failed: {e}"));
                continue;
            }
        };
        let Some(mks) = mks else {
            s.reason = Some("holds no active MKS".into());
            continue;
        };
        match &first {
            None => first = Some((s.index, mks)),
            Some((i, m)) if *m != mks => {
                s.reason = Some(format!("holds MKS {mks}, but member {i} holds {m}"));
            }
            Some(_) => {}
        }
    }
}

/// One member, held exclusively. Dropping it returns the member to the
/// pool, unless its module went to Error: then the member is taken out of
/// service, with the reason kept for [`Pool::status`] and a line on
/// standard error. It is `Send` and `'static`, so it can move into
/// `tokio::task::spawn_blocking` and back.
pub struct Checkout {
    member: Option<Member>,
    /// A Logon through [`Checkout::call`] succeeded and no Logoff followed:
    /// the member is logged off before it goes back, so the next holder
    /// finds a No-Role session.
    logged_on: bool,
    permit: Option<OwnedSemaphorePermit>,
    pool: Arc<Inner>,
}

impl Checkout {
    fn member(&mut self) -> Result<&mut Member, PoolError> {
        self.member
            .as_mut()
            .ok_or_else(|| PoolError::NoModule("the checkout holds no member".into()))
    }

    /// The member's module ID (hex, as `Status.module_id`).
    pub fn module_id(&self) -> &str {
        self.member.as_ref().map_or("", |m| m.module_id.as_str())
    }

    /// The member's index (directory `DIR/m{index}`).
    pub fn index(&self) -> usize {
        self.member.as_ref().map_or(usize::MAX, |m| m.index)
    }

    /// Runs one request in the member's No-Role session (the PSD commands
    /// are open to every role: each is authenticated on its own). A caller
    /// that logs an operator on with a `Logon` request is logged off when
    /// the checkout is dropped, if it did not log off itself. Returns
    /// the response and the audit entries the command made, in order, as
    /// `(seq, json line)`; a refusal comes back as [`PoolError::Refused`]
    /// with its audit entries.
    pub fn call(&mut self, req: &Request) -> Result<Called, PoolError> {
        let pool = Arc::clone(&self.pool);
        let m = self.member()?;
        let result = m.client()?.run(req);
        // A successful command can also leave the module in Error
        // (Zeroize): only the PSD commands of the print path cannot.
        if !matches!(
            req,
            Request::CreateIndicia { .. }
                | Request::CreateIndicium { .. }
                | Request::CreateCorrectionIndicium { .. }
                | Request::RetrievePsdStatus { .. }
                | Request::GetStatus
        ) {
            m.suspect = true;
        }
        let called = finish(&pool, m, result);
        match req {
            Request::Logon { .. } if called.is_ok() => self.logged_on = true,
            Request::Logoff if called.is_ok() => self.logged_on = false,
            _ => {}
        }
        called
    }

    /// Issue PSD Certificate: logs on as this member's Certificate
    /// Authority operator, runs `Request::IssuePsdCertificate` with the
    /// deployment's CA key and certificate, logs off. The audit entries of
    /// all three commands come back, in order.
    pub fn issue_psd_certificate(
        &mut self,
        package: &SealedPackage,
        serial: u64,
        days: u32,
    ) -> Result<Called, PoolError> {
        let pool = Arc::clone(&self.pool);
        let m = self.member()?;
        let password = pool.ca_passwords.get(&m.index).cloned().ok_or_else(|| {
            PoolError::Config(format!(
                "member {} has no Certificate Authority operator",
                m.index
            ))
        })?;
        let req = Request::IssuePsdCertificate {
            ca_key: pool.ca_key.clone(),
            ca_certificate_der: pool.deployment.ca_certificate_der.clone(),
            package: package.clone(),
            serial,
            days,
        };
        let client = m.client()?;
        let result = client.logon(ceremony::CA_USER, &password).and_then(|_| {
            let issued = client.run(&req);
            let off = client.logoff();
            let issued = issued?;
            off.map(|()| issued)
        });
        finish(&pool, m, result)
    }
}

impl Checkout {
    /// Export Audit Key: logs on as this member's Auditor, asks for the
    /// audit verification key (ECDSA P-256, 65 bytes), logs off, and has
    /// the module write one more entry, signed, so that the log an auditor
    /// checks with that key is signed to its end (no unsigned tail). The
    /// audit entries of the four commands come back with it.
    pub fn export_audit_key(&mut self) -> Result<Called, PoolError> {
        let pool = Arc::clone(&self.pool);
        let m = self.member()?;
        let password = pool
            .auditor_passwords
            .get(&m.index)
            .cloned()
            .ok_or_else(|| {
                PoolError::Config(format!(
                    "member {} has no Auditor operator (made by an older ceremony)",
                    m.index
                ))
            })?;
        let client = m.client()?;
        let result = client
            .logon(ceremony::AUDITOR_USER, &password)
            .and_then(|_| {
                let key = client.run(&Request::ExportAuditKey);
                let off = client.logoff();
                let key = key?;
                off?;
                client.run(&Request::CreateAuditEntry {
                    note:
                        "audit key exported; this entry is signed so that the log verifies to here"
                            .into(),
                    sign: true,
                })?;
                Ok(key)
            });
        finish(&pool, m, result)
    }
}

/// Turns a client result into the call's result, with the audit entries
/// the member captured meanwhile.
fn finish(
    pool: &Inner,
    m: &mut Member,
    result: Result<Response, ClientError>,
) -> Result<Called, PoolError> {
    pull_audit(m.client.as_mut(), &m.captured);
    let audit = drain(&m.captured);
    if result.is_err() {
        m.suspect = true;
    }
    match result {
        Ok(response) => Ok(Called { response, audit }),
        Err(ClientError::Module(error)) => Err(PoolError::Refused { error, audit }),
        Err(source) => {
            // No answer: the session may be out of step; open a new one
            // next time. The entries go to the backlog.
            m.client = None;
            lock(&pool.backlog).extend(
                audit
                    .into_iter()
                    .map(|(seq, line)| (m.module_id.clone(), seq, line)),
            );
            Err(PoolError::Client {
                module_id: m.module_id.clone(),
                source,
            })
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let Some(mut m) = self.member.take() else {
            return;
        };
        let permit = self.permit.take();
        if self.logged_on
            && let Some(c) = m.client.as_mut()
            && c.logoff().is_err()
        {
            // A new session starts with nobody logged on.
            pull_audit(m.client.as_mut(), &m.captured);
            m.client = None;
            m.suspect = true;
        }
        let error = m.failed();
        pull_audit(m.client.as_mut(), &m.captured);
        let left = drain(&m.captured);
        if !left.is_empty() {
            lock(&self.pool.backlog).extend(
                left.into_iter()
                    .map(|(seq, line)| (m.module_id.clone(), seq, line)),
            );
        }
        match error {
            None => {
                lock(&self.pool.idle).push_back(m);
                drop(permit);
            }
            Some(reason) => {
                eprintln!(
                    "module pool: member {} (module {}) is out of service: {reason}",
                    m.index, m.module_id
                );
                let left_in_service = {
                    let mut status = lock(&self.pool.status);
                    if let Some(s) = status.iter_mut().find(|s| s.index == m.index) {
                        s.in_service = false;
                        s.reason = Some(reason);
                    }
                    status.iter().filter(|s| s.in_service).count()
                };
                if let Backend::Local(module) = m.backend {
                    lock(&self.pool.retired).push(module);
                }
                if let Some(p) = permit {
                    p.forget();
                }
                if left_in_service == 0 {
                    // Nobody can serve: waiters get an error, not a hang.
                    self.pool.permits.close();
                }
            }
        }
    }
}
