//! The module itself: boot, the session layer, the access gate, and the
//! commands that run behind it.
//!
//! Every command goes through one path (`Module::execute`): the access
//! table decides from state and role alone; then the command runs on the
//! in-memory NVM image; then its audit entry is made; then the NVM is
//! written atomically (holding the entry); then the entry goes to the audit
//! sink; only then does the reply leave. The sink syncs the entry before
//! the next NVM write replaces it ([`AuditSink::sync`]), so it is always
//! durable in one place or the other. A command that fails leaves the image
//! exactly as it was (a snapshot is restored), except where the seed wants
//! the failure itself remembered (a failed logon counts against the
//! account).
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postvault_audit::{AuditEntry, GENESIS_HASH};
use postvault_crypto::ecdsa::{self, EcdsaP256KeyPair};
use postvault_crypto::hpke::HpkeKeyPair;
use postvault_crypto::password::{self, Argon2Params};
use postvault_crypto::rng::Rng;
use postvault_crypto::selftest::{self, SelfTestReport};
use postvault_crypto::x25519::X25519Ephemeral;
use postvault_crypto::{Faults, SecretBytes, SecretKey32, hash, shamir};
use postvault_seal::SealProvider;
use serde::{Deserialize, Serialize};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256,
};
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

use crate::access::{self, UserRecord};
use crate::audit_sink::{AUDIT_LOG_FILE, AuditSink, FileAuditSink};
use crate::error::ModuleError;
use crate::keys::{KeyToken, KeyType, KeyUsage, Mks, key_check_value};
use crate::nvm::{AuditState, CrashPoint, CryptoCard, NvmError, NvmImage, NvmStore};
use crate::protocol::*;
use crate::psd::{
    self, DeviceId, HpkeSealed, IndiciumRequest, ProviderCommand, ProviderMessage, PsdCommandKind,
    PsdPackage, PsdState, PsdUser, SealedPackage,
};
use crate::session::{self, Direction, RequestFrame, ResponseFrame, SessionError, SessionKeys};
use crate::table::{self, Audit, CommandKind};
use crate::types::{Clock, ModuleState, Role};

use psd_users::CachedUserKey;

mod ca_commands;
mod checkpoints;
mod psd_commands;
mod psd_money;
mod psd_users;

/// Default: sign at least every this many audit entries.
pub const DEFAULT_SIGN_EVERY: u32 = 100;
/// Default maximum number of open sessions.
pub const DEFAULT_MAX_SESSIONS: usize = 64;
const LOCK_FILE: &str = "module.lock";
const SHARE_INFO: &[u8] = b"postvault mks share v1";

/// Deliberate audit failures, to exercise the seed's failure semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFault {
    /// Signing an entry fails (the chain stays intact: non-fatal Error).
    SignatureFails,
    /// The entry cannot be stored after the chain advanced (chain broken: fatal Error).
    ChainBroken,
}

/// How to open a module.
pub struct ModuleConfig {
    /// The module's directory (NVM, lock, audit log).
    pub dir: PathBuf,
    /// Seals the NVM at rest.
    pub seal: Box<dyn SealProvider>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Self-tests that must fail on purpose (empty in production).
    pub faults: Faults,
    /// Argon2id cost for operator passwords.
    pub argon2: Argon2Params,
    /// Where audit entries go; default: `audit.log` in `dir`.
    pub audit_sink: Option<Box<dyn AuditSink>>,
    /// Sign at least every this many entries.
    pub sign_every: u32,
    /// Maximum open sessions.
    pub max_sessions: usize,
    /// Simulated power loss (crash tests).
    pub crash_at: Option<CrashPoint>,
    /// Simulated audit failure (failure-path tests).
    pub audit_fault: Option<AuditFault>,
}

impl ModuleConfig {
    /// Defaults for a module in `dir`.
    pub fn new(dir: &Path, seal: Box<dyn SealProvider>, clock: Arc<dyn Clock>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            seal,
            clock,
            faults: Faults::none(),
            argon2: Argon2Params::DEFAULT,
            audit_sink: None,
            sign_every: DEFAULT_SIGN_EVERY,
            max_sessions: DEFAULT_MAX_SESSIONS,
            crash_at: None,
            audit_fault: None,
        }
    }
}

/// Why a module could not be opened at all (as opposed to opening in Error).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory could not be created or locked.
    #[error("module directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process holds the module.
    #[error(
        "module directory {0} is in use by another process (is `postvault module serve` running on it?); talk to that process with --socket instead"
    )]
    Locked(PathBuf),
}

struct LoggedOn {
    user_id: String,
    role: Role,
    last_activity: i64,
}

struct Session {
    keys: SessionKeys,
    next_counter: u64,
    user: Option<LoggedOn>,
}

#[derive(Clone)]
struct ExportJob {
    mks_id: [u8; 16],
    generation: u32,
    count: u8,
    threshold: u8,
    shares: Vec<shamir::Share>,
    exported_by: Vec<String>,
    transport_key: Option<[u8; 32]>,
    exportable: Option<bool>,
}

#[derive(Clone, Default)]
struct ImportJob {
    shares: Vec<shamir::Share>,
    imported_by: Vec<String>,
    header: Option<ShareHeader>,
}

/// The parts of a share header that all shares of one export agree on.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ShareHeader {
    mks_id: String,
    generation: u32,
    count: u8,
    threshold: u8,
    exportable: bool,
}

/// The plaintext inside an encrypted share.
#[derive(Serialize, Deserialize)]
struct SharePayload {
    header: ShareHeader,
    index: u8,
    value: Zeroizing<Vec<u8>>,
}

enum AfterAudit {
    Nothing,
    InstallAuditKey(Box<EcdsaP256KeyPair>),
    Zeroize,
    Reset,
}

/// Data for the audit entry of a command.
type AuditData = Vec<(&'static str, String)>;

struct Outcome {
    response: Response,
    data: AuditData,
    after: AfterAudit,
    force_sign: bool,
    /// Further audit entries of the same command, written before its own
    /// (reason, data): e.g. each discarded transaction of an Auto-Recover
    /// Checkpoint, each item of a batch.
    extra: Vec<(String, AuditData)>,
}

impl Outcome {
    fn new(response: Response) -> Self {
        Self {
            response,
            data: Vec::new(),
            after: AfterAudit::Nothing,
            force_sign: false,
            extra: Vec::new(),
        }
    }
    fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.data.push((key, value.into()));
        self
    }
}

/// One cryptographic module.
pub struct Module {
    dir: PathBuf,
    store: NvmStore,
    clock: Arc<dyn Clock>,
    faults: Faults,
    argon2: Argon2Params,
    sign_every: u32,
    max_sessions: usize,
    crash_at: Option<CrashPoint>,
    audit_fault: Option<AuditFault>,
    sink: Box<dyn AuditSink>,
    rng: Rng,
    nvm: NvmImage,
    nvm_readable: bool,
    current: ModuleState,
    error: Option<String>,
    sessions: HashMap<u64, Session>,
    boot_pending: bool,
    powered_off: bool,
    selftests: SelfTestReport,
    audit_key: Option<EcdsaP256KeyPair>,
    export: Option<ExportJob>,
    import: Option<ImportJob>,
    keep_on_error: bool,
    /// Indicium signing keys already unwrapped, by meter, with the token
    /// each came from (see `package_signing_key`); cleared with the keys
    /// that sealed them.
    signing_keys: HashMap<DeviceId, (KeyToken, Arc<EcdsaP256KeyPair>)>,
    /// Meter users' HMAC keys already opened and prepared, by meter, then
    /// user, with the KEK token and sealed key each came from (see
    /// `prepared_user_key`); cleared with `signing_keys`.
    user_keys: HashMap<DeviceId, Vec<CachedUserKey>>,
    /// The packages this module last sealed in Create Indicia, by device
    /// ID, with the exact sealed package it handed out (see
    /// `take_package`); cleared with `signing_keys` and by rollbacks.
    packages: HashMap<String, (SealedPackage, PsdPackage)>,
    /// While a command makes several entries: the next one joins the
    /// pending entries instead of replacing them.
    joining_pending: bool,
    _lock: File,
}

impl Module {
    /// Boots a module from its directory: self-tests, NVM, boot detection.
    /// A module that cannot work opens in Error and says why in its status.
    pub fn open(config: ModuleConfig) -> Result<Self, OpenError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| OpenError::Dir {
            path: dir.clone(),
            source,
        })?;
        let lock = File::create(dir.join(LOCK_FILE)).map_err(|source| OpenError::Dir {
            path: dir.clone(),
            source,
        })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(OpenError::Locked(dir)),
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(OpenError::Dir { path: dir, source });
            }
        }
        let sink: Box<dyn AuditSink> =
            match config.audit_sink {
                Some(s) => s,
                None => Box::new(FileAuditSink::open(&dir.join(AUDIT_LOG_FILE)).map_err(
                    |source| OpenError::Dir {
                        path: dir.clone(),
                        source,
                    },
                )?),
            };
        let selftests = selftest::run_power_up(&config.faults);
        let mut m = Module {
            store: NvmStore::new(&dir, config.seal),
            dir,
            clock: config.clock,
            rng: Rng::new(config.faults.clone()),
            faults: config.faults,
            argon2: config.argon2,
            sign_every: config.sign_every.max(1),
            max_sessions: config.max_sessions.max(1),
            crash_at: config.crash_at,
            audit_fault: config.audit_fault,
            sink,
            nvm: NvmImage::empty(),
            nvm_readable: true,
            current: ModuleState::Uninitialized,
            error: None,
            sessions: HashMap::new(),
            boot_pending: true,
            powered_off: false,
            selftests,
            audit_key: None,
            export: None,
            import: None,
            keep_on_error: false,
            signing_keys: HashMap::new(),
            user_keys: HashMap::new(),
            packages: HashMap::new(),
            joining_pending: false,
            _lock: lock,
        };
        m.boot();
        Ok(m)
    }

    /// Boot detection (seed 002): decide Current State from Persistent State.
    fn boot(&mut self) {
        match self.store.load() {
            Ok(None) => {
                self.current = ModuleState::Uninitialized;
            }
            Ok(Some(image)) => {
                self.nvm = image;
                self.audit_key = match self.nvm.audit.as_ref() {
                    // Zeroized: the chain position is kept, the key is gone.
                    Some(a) if a.signing_key.is_empty() => None,
                    Some(a) => match EcdsaP256KeyPair::from_pkcs8(&SecretBytes::from_vec(
                        a.signing_key.to_vec(),
                    )) {
                        Ok(k) => Some(k),
                        Err(_) => {
                            self.fail_fatal("the audit signing key in NVM is unusable");
                            return;
                        }
                    },
                    None => None,
                };
                self.redeliver_pending_entry();
                match self.nvm.persistent_state {
                    ModuleState::Error => {
                        self.current = ModuleState::Error;
                        self.error = Some(
                            self.nvm
                                .error
                                .clone()
                                .unwrap_or_else(|| "fatal error recorded in NVM".into()),
                        );
                    }
                    ModuleState::Initializing => {
                        self.fail_fatal("the module restarted during initialization; reset it and initialize again");
                    }
                    ModuleState::ImportingShares if self.nvm.mks_active.is_none() => {
                        self.fail_fatal("the module restarted while importing its first MKS; reset it and start again");
                    }
                    ModuleState::ExportingShares => {
                        self.current = ModuleState::Error;
                        self.error = Some("the module restarted during a share export; the export is lost (non-fatal)".into());
                    }
                    ModuleState::Uninitialized => self.current = ModuleState::Uninitialized,
                    _ => {
                        self.current = ModuleState::Operational;
                        if self.nvm.persistent_state != ModuleState::Operational {
                            self.nvm.persistent_state = ModuleState::Operational;
                            if let Err(e) = self.store.store(&self.nvm, None) {
                                self.current = ModuleState::Error;
                                self.error = Some(format!("could not record the boot state: {e}"));
                            }
                        }
                    }
                }
            }
            Err(e) => {
                self.nvm_readable = false;
                self.current = ModuleState::Error;
                self.error = Some(e.to_string());
            }
        }
        if let Some(t) = self.selftests.first_failure() {
            self.current = ModuleState::Error;
            self.error = Some(format!("power-up self-test {t} failed"));
        }
    }

    /// Hands the last audit entry to the sink again if the sink does not have
    /// it: the NVM committed it, but power may have failed before the host
    /// stored it.
    fn redeliver_pending_entry(&mut self) {
        let lines = self
            .nvm
            .audit
            .as_ref()
            .map(|a| a.pending.clone())
            .unwrap_or_default();
        if lines.is_empty() {
            return;
        }
        let mut entries = Vec::with_capacity(lines.len());
        for line in &lines {
            let Ok(entry) = AuditEntry::from_json_line(line) else {
                self.fail_fatal(
                    "a pending audit entry in NVM is malformed; the audit chain is broken",
                );
                return;
            };
            entries.push(entry);
        }
        let stored = self.sink.last_hash().and_then(|last| {
            // The host holds a prefix of the pending entries (or none):
            // hand over what follows the last one it has.
            let from = entries
                .iter()
                .rposition(|e| last == Some(e.hash()))
                .map_or(0, |i| i + 1);
            self.sink.append_all(&entries[from..])
        });
        if let Err(e) = stored {
            self.fail_soft(&format!(
                "audit entries {}..={} could not be handed to the audit log: {e}",
                entries[0].seq,
                entries[entries.len() - 1].seq
            ));
        }
    }

    /// Fatal error: Current and Persistent State both Error (survives restarts).
    fn fail_fatal(&mut self, why: &str) {
        self.current = ModuleState::Error;
        self.error = Some(why.to_string());
        if self.nvm_readable {
            self.nvm.persistent_state = ModuleState::Error;
            self.nvm.error = Some(why.to_string());
            let _ = self.store.store(&self.nvm, None);
        }
    }

    /// Non-fatal error: Current State Error only (a restart clears it).
    fn fail_soft(&mut self, why: &str) {
        self.current = ModuleState::Error;
        self.error = Some(why.to_string());
    }

    /// Current State.
    pub fn current_state(&self) -> ModuleState {
        self.current
    }

    /// Persistent State.
    pub fn persistent_state(&self) -> ModuleState {
        self.nvm.persistent_state
    }

    /// Why the module is in Error.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Arms (or disarms) the simulated power loss of [`ModuleConfig::crash_at`]
    /// on a running module (crash tests: every command writes the NVM, Logon
    /// included, so the crash is armed after logging on, right before the
    /// command under test).
    pub fn set_crash_at(&mut self, point: Option<CrashPoint>) {
        self.crash_at = point;
    }

    /// The module directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Module ID (hex), once initialized.
    pub fn module_id(&self) -> Option<String> {
        (self.nvm.audit.is_some()).then(|| hex::encode(self.nvm.module_id))
    }

    fn now(&self) -> i64 {
        self.clock.now() + self.nvm.clock_offset
    }

    /// Handles one frame from a host and returns the answer frame. Never panics on bad input.
    pub fn handle(&mut self, frame: &[u8]) -> Vec<u8> {
        session::encode(&self.handle_frame(frame))
    }

    fn handle_frame(&mut self, frame: &[u8]) -> ResponseFrame {
        if self.powered_off {
            return ResponseFrame::Refused(
                "module is powered off (simulated crash); restart it".into(),
            );
        }
        let frame: RequestFrame = match session::decode(frame) {
            Ok(f) => f,
            Err(e) => return ResponseFrame::Refused(e.to_string()),
        };
        match frame {
            RequestFrame::Open { client_public } => match self.open_session(&client_public) {
                Ok(f) => f,
                Err(e) => ResponseFrame::Refused(e.to_string()),
            },
            RequestFrame::Sealed(sealed) => {
                let sid = sealed.session_id;
                let counter = sealed.counter;
                let encrypted = sealed.encrypted;
                let plain = {
                    let Some(s) = self.sessions.get_mut(&sid) else {
                        return ResponseFrame::Refused(SessionError::UnknownSession.to_string());
                    };
                    match s
                        .keys
                        .open_owned(Direction::Request, s.next_counter, sealed)
                    {
                        Ok(p) => {
                            s.next_counter += 1;
                            p
                        }
                        Err(e) => return ResponseFrame::Refused(e.to_string()),
                    }
                };
                let (reply, close) = match Request::decode(plain.expose_secret()) {
                    Ok(req) => {
                        let reply = self.execute(sid, &req, encrypted);
                        let close = req == Request::CloseSession && reply.result.is_ok();
                        (reply, close)
                    }
                    Err(e) => (
                        Reply {
                            result: Err(e),
                            audit: None,
                        },
                        false,
                    ),
                };
                let encoded = Zeroizing::new(reply.encode());
                let out = match self.sessions.get(&sid) {
                    Some(s) => {
                        match s
                            .keys
                            .seal_owned(Direction::Response, counter, encrypted, encoded)
                        {
                            Ok(f) => ResponseFrame::Sealed(f),
                            Err(e) => ResponseFrame::Refused(e.to_string()),
                        }
                    }
                    None => ResponseFrame::Refused(SessionError::UnknownSession.to_string()),
                };
                if close {
                    // Dropping the session zeroizes its master keys.
                    self.sessions.remove(&sid);
                }
                out
            }
        }
    }

    fn open_session(&mut self, client_public: &[u8; 32]) -> Result<ResponseFrame, SessionError> {
        if self.sessions.len() >= self.max_sessions {
            // Make room by closing sessions nobody is logged on to.
            let idle: Vec<u64> = self
                .sessions
                .iter()
                .filter(|(_, s)| s.user.is_none())
                .map(|(k, _)| *k)
                .collect();
            match idle.first() {
                Some(k) => {
                    self.sessions.remove(k);
                }
                None => return Err(SessionError::Busy),
            }
        }
        let eph = X25519Ephemeral::generate().map_err(|_| SessionError::KeyAgreement)?;
        let module_public = eph.public_key();
        let shared = eph
            .agree(client_public)
            .map_err(|_| SessionError::KeyAgreement)?;
        let session_id = loop {
            let id = u64::from_be_bytes(self.rng.array::<8>().map_err(|e| {
                // A failed continuous RNG test stops the module (seed 001 self-tests).
                self.fail_soft(&format!("random generator failed: {e}"));
                SessionError::KeyAgreement
            })?);
            if !self.sessions.contains_key(&id) {
                break id;
            }
        };
        let keys = SessionKeys::derive(&shared, client_public, &module_public, session_id);
        let confirm = keys.confirm();
        self.sessions.insert(
            session_id,
            Session {
                keys,
                next_counter: 0,
                user: None,
            },
        );
        Ok(ResponseFrame::Opened {
            session_id,
            module_public,
            confirm,
        })
    }

    /// Drops a session whose connection went away, logging its user off.
    pub fn drop_session(&mut self, session_id: u64) {
        if let Some(s) = self.sessions.remove(&session_id)
            && let Some(u) = s.user
        {
            let _ = self.audit_side_event(
                CommandKind::Logoff,
                Some((&u.user_id, u.role)),
                "disconnected",
                vec![],
            );
        }
    }

    /// Runs one decoded command for a session.
    fn execute(&mut self, sid: u64, req: &Request, encrypted: bool) -> Reply {
        let kind = req.kind();
        let spec = kind.spec();
        let now = self.now();
        // Idle logoff (logon time-out of the account).
        let timed_out = self
            .sessions
            .get(&sid)
            .and_then(|s| s.user.as_ref())
            .and_then(|u| {
                let limit = self
                    .nvm
                    .users
                    .iter()
                    .find(|r| r.user_id == u.user_id)
                    .map(|r| r.logon_timeout_secs)
                    .unwrap_or(0);
                (now - u.last_activity > i64::from(limit)).then(|| (u.user_id.clone(), u.role))
            });
        if let Some((uid, role)) = timed_out {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.user = None;
            }
            let _ =
                self.audit_side_event(CommandKind::Logoff, Some((&uid, role)), "timeout", vec![]);
        }
        let user = self
            .sessions
            .get(&sid)
            .and_then(|s| s.user.as_ref())
            .map(|u| (u.user_id.clone(), u.role));
        let role = user.as_ref().map(|u| u.1).unwrap_or(Role::NoRole);
        let state = self.current;

        if !table::allowed(kind, state, role) {
            let err = if state == ModuleState::Error && kind != CommandKind::GetStatus {
                ModuleError::InError(self.error.clone().unwrap_or_default())
            } else {
                ModuleError::Denied {
                    command: kind.name().into(),
                    state,
                    role,
                }
            };
            let audit = if spec.audit != Audit::None && state != ModuleState::Error {
                self.audit_refusal(kind, &user, &err, vec![])
            } else {
                None
            };
            return Reply {
                result: Err(err),
                audit,
            };
        }
        if spec.encrypted && !encrypted {
            let err = ModuleError::EncryptionRequired(kind.name().into());
            return Reply {
                result: Err(err),
                audit: None,
            };
        }
        if let Some(s) = self.sessions.get_mut(&sid)
            && let Some(u) = s.user.as_mut()
        {
            u.last_activity = now;
        }

        // Snapshot so that a failed command changes nothing.
        let snapshot = (
            self.nvm.clone(),
            self.current,
            self.export.clone(),
            self.import.clone(),
        );
        self.keep_on_error = false;
        let result = self.dispatch(sid, req, &user);

        if self.powered_off {
            return Reply {
                result: Err(ModuleError::Storage("simulated power loss".into())),
                audit: None,
            };
        }
        match result {
            Err(err) => {
                if !self.keep_on_error {
                    (self.nvm, self.current, self.export, self.import) = snapshot;
                }
                if let ModuleError::SelfTest(test) = &err {
                    // A failed pairwise or continuous test stops the module,
                    // whichever command tripped it.
                    self.fail_soft(&format!("self-test {test} failed"));
                }
                let data = match req {
                    Request::Logon { user_id, .. } => vec![("user", user_id.clone())],
                    _ => vec![],
                };
                let audit = if spec.audit != Audit::None {
                    self.audit_refusal(kind, &user, &err, data)
                } else {
                    None
                };
                if self.keep_on_error && audit.is_none() {
                    // The failure itself must be remembered (e.g. a failed logon count).
                    if let Err(e) = self.persist() {
                        return Reply {
                            result: Err(e),
                            audit: None,
                        };
                    }
                }
                Reply {
                    result: Err(err),
                    audit,
                }
            }
            Ok(outcome) => self.finish(kind, spec.audit, &user, outcome, snapshot),
        }
    }

    /// Audits, persists and releases a successful command.
    fn finish(
        &mut self,
        kind: CommandKind,
        audit: Audit,
        user: &Option<(String, Role)>,
        outcome: Outcome,
        snapshot: (NvmImage, ModuleState, Option<ExportJob>, Option<ImportJob>),
    ) -> Reply {
        let Outcome {
            response,
            data,
            after,
            force_sign,
            extra,
        } = outcome;
        let mut entry = None;
        let mut entries = Vec::new();
        if audit != Audit::None && self.audit_key.is_some() {
            // The command's entries go to `pending` together (the first
            // replaces the previous command's, the rest join it).
            self.joining_pending = false;
            for (reason, data) in extra {
                match self.make_entry(
                    kind,
                    user.as_ref().map(|(u, r)| (u.as_str(), *r)),
                    &reason,
                    data,
                    false,
                ) {
                    Ok((e, _)) => entries.push(e),
                    Err(e) => self.fail_soft(&e),
                }
                self.joining_pending = true;
            }
            let sign = audit == Audit::Signed || force_sign;
            match self.make_entry(
                kind,
                user.as_ref().map(|(u, r)| (u.as_str(), *r)),
                "ok",
                data,
                sign,
            ) {
                // An entry whose signature failed is still returned (incomplete,
                // seed 002); make_entry has already sent the module to Error.
                Ok((e, _)) => entry = Some(e),
                Err(e) => self.fail_soft(&e),
            }
            self.joining_pending = false;
            entries.extend(entry.clone());
        }
        // The lines the sink will write are this command's pending entries.
        // Zeroize and Reset erase the NVM image before the sink runs, so
        // for them the lines are copied now; otherwise they are read from
        // the image when written (a batch's run to hundreds of kilobytes).
        let erased_lines: Option<Vec<String>> = match after {
            AfterAudit::Zeroize | AfterAudit::Reset if !entries.is_empty() => Some(
                self.nvm
                    .audit
                    .as_ref()
                    .map(|a| a.pending.clone())
                    .unwrap_or_default(),
            ),
            _ => None,
        };
        match after {
            AfterAudit::Nothing => {}
            AfterAudit::InstallAuditKey(k) => {
                if let Some(a) = self.nvm.audit.as_mut() {
                    a.signing_key = Zeroizing::new(k.to_pkcs8().expose_secret().to_vec());
                }
                self.audit_key = Some(*k);
            }
            AfterAudit::Zeroize => self.zeroize_all(),
            AfterAudit::Reset => self.erase_all(),
        }
        if audit == Audit::None {
            // Status and queries change nothing in NVM: nothing to write, so
            // they answer even when the NVM cannot be written (seed 002: Get
            // Status works in Error state, e.g. with an unreadable NVM).
            return Reply {
                result: Ok(response),
                audit: None,
            };
        }
        if self.crash_at == Some(CrashPoint::BeforeWrite) {
            self.powered_off = true;
            return Reply {
                result: Err(ModuleError::Storage("simulated power loss".into())),
                audit: None,
            };
        }
        if let Err(e) = self.persist() {
            (self.nvm, _, self.export, self.import) = snapshot;
            self.fail_soft(&e.to_string());
            return Reply {
                result: Err(e),
                audit: None,
            };
        }
        if self.crash_at == Some(CrashPoint::AfterRename) {
            self.powered_off = true;
            return Reply {
                result: Err(ModuleError::Storage("simulated power loss".into())),
                audit: None,
            };
        }
        if let Some(e) = entry.as_ref() {
            let stored = if self.audit_fault == Some(AuditFault::ChainBroken) {
                Err(std::io::Error::other("injected audit storage failure"))
            } else {
                let lines: &[String] = match &erased_lines {
                    Some(lines) => lines,
                    None => self.nvm.audit.as_ref().map_or(&[], |a| &a.pending),
                };
                self.sink.append_lines(&entries, lines)
            };
            if let Err(err) = stored {
                // The chain advanced in NVM but the entry is lost: the audit is broken for good.
                self.fail_fatal(&format!(
                    "audit entry {} could not be stored ({err}); the audit chain is broken",
                    e.seq
                ));
                return Reply {
                    result: Err(ModuleError::Storage(
                        "the audit entry could not be stored; the module is in Error".into(),
                    )),
                    audit: entry,
                };
            }
        }
        Reply {
            result: Ok(response),
            audit: entry,
        }
    }

    fn persist(&mut self) -> Result<(), ModuleError> {
        if !self.nvm_readable {
            return Err(ModuleError::Storage(
                "the NVM is unreadable; only Reset can replace it".into(),
            ));
        }
        // The NVM about to be written no longer holds the last command's
        // audit entries: the sink must hold them durably first.
        if let Err(e) = self.sink.sync() {
            return Err(ModuleError::Storage(format!(
                "the audit log could not be synced ({e}); the last command's entries are still in the NVM and a restart hands them over again"
            )));
        }
        match self.store.store(&self.nvm, self.crash_at) {
            Ok(()) => Ok(()),
            Err(NvmError::Crash(_)) => {
                self.powered_off = true;
                Err(ModuleError::Storage("simulated power loss".into()))
            }
            Err(e) => Err(ModuleError::Storage(e.to_string())),
        }
    }

    /// Makes the next audit entry and advances the chain in the in-memory NVM.
    ///
    /// When signing fails the entry is still made (unsigned: the chain stays
    /// intact), the module goes to Error (non-fatal), and the reason is
    /// returned beside the entry. The entry is also kept in NVM as the
    /// pending entry, so a power loss between the NVM write and the host's
    /// storage cannot lose it: boot hands it to the sink again.
    fn make_entry(
        &mut self,
        kind: CommandKind,
        user: Option<(&str, Role)>,
        reason: &str,
        data: AuditData,
        force_sign: bool,
    ) -> Result<(AuditEntry, Option<String>), String> {
        let time = self.now();
        let mut module_id = [0u8; 32];
        hex::encode_to_slice(self.nvm.module_id, &mut module_id).expect("32 hex digits");
        let module_id = std::str::from_utf8(&module_id)
            .expect("hex digits are ASCII")
            .to_string();
        let current_state = self.current.as_str().to_string();
        let persistent_state = self.nvm.persistent_state.as_str().to_string();
        let audit = self.nvm.audit.as_mut().ok_or("no audit chain")?;
        let mut entry = AuditEntry {
            seq: audit.next_seq,
            prev_hash: audit.last_hash,
            module_id,
            command: kind.name().to_string(),
            user_id: user.map(|u| u.0.to_string()),
            role: user.map(|u| u.1.as_str().to_string()),
            current_state,
            persistent_state,
            time,
            reason: reason.to_string(),
            data: std::collections::BTreeMap::new(),
            signature: None,
        };
        // One insert at a time: for a handful of fields this is cheaper
        // than collecting (which sorts a vector first); a repeated key
        // keeps its last value either way.
        for (k, v) in data {
            entry.data.insert(k.to_string(), v);
        }
        let sign = force_sign
            || self.boot_pending
            || audit.since_signed + 1 >= audit.sign_every
            || entry.seq == 0;
        let mut sign_error = None;
        if sign {
            let key = self.audit_key.as_ref().ok_or("no audit key")?;
            let res = if self.audit_fault == Some(AuditFault::SignatureFails) {
                Err("injected signature failure".to_string())
            } else {
                entry.sign(key).map_err(|e| e.to_string())
            };
            if let Err(e) = res {
                sign_error = Some(format!(
                    "audit entry {} could not be signed: {e}",
                    entry.seq
                ));
            }
        }
        if let Some(e) = &sign_error {
            // The chain is intact (the hash links), but the entry is incomplete: non-fatal Error.
            entry.current_state = ModuleState::Error.as_str().into();
            self.current = ModuleState::Error;
            self.error = Some(e.clone());
        }
        let audit = self.nvm.audit.as_mut().ok_or("no audit chain")?;
        audit.next_seq += 1;
        audit.last_hash = entry.hash();
        audit.since_signed = if entry.signature.is_some() {
            0
        } else {
            audit.since_signed + 1
        };
        let line = entry.to_json_line();
        if self.joining_pending {
            audit.pending.push(line);
        } else {
            audit.pending = vec![line];
        }
        if entry.signature.is_some() {
            self.boot_pending = false;
        }
        Ok((entry, sign_error))
    }

    /// Audits a refused command (the refusal itself is a sensitive event).
    fn audit_refusal(
        &mut self,
        kind: CommandKind,
        user: &Option<(String, Role)>,
        err: &ModuleError,
        data: AuditData,
    ) -> Option<AuditEntry> {
        self.audit_key.as_ref()?;
        if !self.nvm_readable {
            return None;
        }
        let mut data = data;
        data.push(("error", err.to_string()));
        self.audit_side_event(
            kind,
            user.as_ref().map(|(u, r)| (u.as_str(), *r)),
            err.reason_code(),
            data,
        )
    }

    /// Writes an audit entry outside the normal command path (refusals, idle logoffs).
    fn audit_side_event(
        &mut self,
        kind: CommandKind,
        user: Option<(&str, Role)>,
        reason: &str,
        data: AuditData,
    ) -> Option<AuditEntry> {
        self.audit_key.as_ref()?;
        let (entry, _) = self.make_entry(kind, user, reason, data, false).ok()?;
        if self.persist().is_err() {
            self.fail_soft("could not persist the audit chain");
            return None;
        }
        if self.sink.append(&entry).is_err() {
            self.fail_fatal(&format!(
                "audit entry {} could not be stored; the audit chain is broken",
                entry.seq
            ));
        }
        Some(entry)
    }

    /// Current first, then actions, then Persistent (written with the NVM).
    fn enter(&mut self, state: ModuleState) -> Result<(), ModuleError> {
        self.current = state;
        if self.crash_at == Some(CrashPoint::AfterCurrentState) {
            self.powered_off = true;
            return Err(ModuleError::Storage("simulated power loss".into()));
        }
        Ok(())
    }

    fn commit_state(&mut self, state: ModuleState) {
        self.nvm.persistent_state = state;
    }

    fn transition(&mut self, state: ModuleState) -> Result<(), ModuleError> {
        self.enter(state)?;
        self.commit_state(state);
        Ok(())
    }

    fn user_record(&mut self, user_id: &str) -> Option<&mut UserRecord> {
        self.nvm.users.iter_mut().find(|u| u.user_id == user_id)
    }

    fn active_mks(&self) -> Result<&Mks, ModuleError> {
        self.nvm
            .mks_active
            .as_ref()
            .ok_or_else(|| ModuleError::KeyState("this module has no active MKS".into()))
    }

    fn status(&self, sid: u64) -> Status {
        let session = self.sessions.get(&sid);
        let user = session.and_then(|s| s.user.as_ref());
        Status {
            module_id: self.module_id(),
            current_state: self.current,
            persistent_state: self.nvm.persistent_state,
            error: self.error.clone(),
            session_id: sid,
            sessions_open: self.sessions.len(),
            user_id: user.map(|u| u.user_id.clone()),
            role: user.map(|u| u.role).unwrap_or(Role::NoRole),
            keys: KeyStatus {
                active_mks: self.nvm.mks_active.as_ref().map(Mks::info),
                dormant_mks: self.nvm.mks_dormant.as_ref().map(Mks::info),
                audit_key: self.audit_key.is_some(),
                transport_key: self.nvm.transport_key.is_some(),
                crypto_card: self.nvm.crypto_card.is_some(),
            },
            time: self.now(),
            audit_next_seq: self.nvm.audit.as_ref().map(|a| a.next_seq).unwrap_or(0),
            self_tests: self
                .selftests
                .results
                .iter()
                .map(|r| (r.test.to_string(), r.failure.is_none()))
                .collect(),
        }
    }

    /// Drops the keys the module keeps unwrapped between commands (the
    /// indicium signing keys and the meter users' HMAC keys): with
    /// Zeroize, Reset and every MKS change.
    fn forget_unwrapped_keys(&mut self) {
        self.signing_keys.clear();
        self.user_keys.clear();
        self.packages.clear();
    }

    fn zeroize_all(&mut self) {
        self.forget_unwrapped_keys();
        // Dropping the values zeroizes them (Zeroizing / aws-lc key types).
        self.nvm.mks_active = None;
        self.nvm.mks_dormant = None;
        self.nvm.transport_key = None;
        self.nvm.crypto_card = None;
        self.nvm.users.clear();
        if let Some(a) = self.nvm.audit.as_mut() {
            a.signing_key = Zeroizing::new(Vec::new());
        }
        self.audit_key = None;
        self.export = None;
        self.import = None;
        for s in self.sessions.values_mut() {
            s.user = None;
        }
        self.current = ModuleState::Error;
        self.nvm.persistent_state = ModuleState::Error;
        let why = "zeroized: all keys destroyed; reset the module to use it again".to_string();
        self.nvm.error = Some(why.clone());
        self.error = Some(why);
    }

    fn erase_all(&mut self) {
        self.forget_unwrapped_keys();
        self.nvm = NvmImage::empty();
        self.nvm_readable = true;
        self.audit_key = None;
        self.export = None;
        self.import = None;
        self.error = None;
        for s in self.sessions.values_mut() {
            s.user = None;
        }
        self.current = ModuleState::Uninitialized;
    }

    fn dispatch(
        &mut self,
        sid: u64,
        req: &Request,
        user: &Option<(String, Role)>,
    ) -> Result<Outcome, ModuleError> {
        let now = self.now();
        let me = user.as_ref().map(|u| u.0.clone()).unwrap_or_default();
        match req {
            Request::CloseSession => {
                if user.is_some() {
                    return Err(ModuleError::UserLoggedOn);
                }
                Ok(Outcome::new(Response::Done))
            }
            Request::GetStatus => Ok(Outcome::new(Response::Status(Box::new(self.status(sid))))),
            Request::QueryCurrentRole => Ok(Outcome::new(Response::Role(
                user.as_ref().map(|u| u.1).unwrap_or(Role::NoRole),
            ))),
            Request::QueryCurrentUser => Ok(Outcome::new(Response::User(
                user.as_ref().map(|u| u.0.clone()),
            ))),
            Request::StartInitialization { time } => self.cmd_start_initialization(*time),
            Request::InitializeAccessControl { users } => self.cmd_init_access(users, now),
            Request::Logon { user_id, password } => self.cmd_logon(sid, user_id, password, now),
            Request::Logoff => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.user = None;
                }
                Ok(Outcome::new(Response::Done))
            }
            Request::ChangePassword { old, new } => {
                let (rng, argon2) = (&mut self.rng, self.argon2);
                let rec = self
                    .nvm
                    .users
                    .iter_mut()
                    .find(|u| u.user_id == me)
                    .ok_or(ModuleError::LogonFailed)?;
                if !password::verify_password(&rec.password_hash, old.expose_secret().as_bytes())? {
                    return Err(ModuleError::PasswordRejected(
                        "the current password is wrong".into(),
                    ));
                }
                access::set_password(rng, argon2, rec, new, now)?;
                Ok(Outcome::new(Response::Done))
            }
            Request::SetClock { time } => {
                if *time <= 0 {
                    return Err(ModuleError::Invalid(
                        "time must be a positive Unix time".into(),
                    ));
                }
                let old = now;
                self.nvm.clock_offset = *time - self.clock.now();
                Ok(Outcome::new(Response::Done)
                    .with("old_time", old.to_string())
                    .with("new_time", time.to_string()))
            }
            Request::BeginAdmin => {
                self.transition(ModuleState::Administrative)?;
                Ok(Outcome::new(Response::Done))
            }
            Request::EndAdmin => {
                self.transition(ModuleState::Operational)?;
                Ok(Outcome::new(Response::Done))
            }
            Request::CreateUser { user } => {
                if self.nvm.users.iter().any(|u| u.user_id == user.user_id) {
                    return Err(ModuleError::Invalid(format!(
                        "user {} already exists",
                        user.user_id
                    )));
                }
                let rec = access::new_record(&mut self.rng, self.argon2, user, now)?;
                self.nvm.users.push(rec);
                Ok(Outcome::new(Response::Done)
                    .with("user", user.user_id.clone())
                    .with("role", user.role.as_str()))
            }
            Request::DeleteUser { user_id } => self.cmd_delete_user(user_id, &me),
            Request::ModifyUser {
                user_id,
                settings,
                new_password,
                unlock,
            } => {
                let (rng, argon2) = (&mut self.rng, self.argon2);
                let rec = self
                    .nvm
                    .users
                    .iter_mut()
                    .find(|u| &u.user_id == user_id)
                    .ok_or_else(|| ModuleError::Invalid(format!("no user {user_id}")))?;
                access::apply_settings(rec, settings)?;
                if let Some(pw) = new_password {
                    access::set_password(rng, argon2, rec, pw, now)?;
                }
                if *unlock {
                    rec.failures = 0;
                }
                let mut o = Outcome::new(Response::Done).with("user", user_id.clone());
                if new_password.is_some() {
                    o = o.with("password", "reset");
                }
                if *unlock {
                    o = o.with("unlock", "true");
                }
                Ok(o)
            }
            Request::ViewUsers => Ok(Outcome::new(Response::Users(
                self.nvm.users.iter().map(UserRecord::view).collect(),
            ))),
            Request::GenerateMks => self.cmd_generate_mks(),
            Request::GenerateTransportKey => {
                if self.nvm.transport_key.is_some() || self.nvm.mks_active.is_some() {
                    return Err(ModuleError::KeyState(
                        "this module already has a transport key or an MKS".into(),
                    ));
                }
                self.enter(ModuleState::ImportingShares)?;
                let kp = HpkeKeyPair::generate(&mut self.rng, &self.faults).inspect_err(|_| {
                    self.keep_on_error = true;
                    self.fail_soft("transport key pairwise consistency test failed");
                })?;
                self.nvm.transport_key = Some(Zeroizing::new(*kp.secret().expose_secret()));
                self.import = Some(ImportJob::default());
                self.commit_state(ModuleState::ImportingShares);
                let public = kp.public_key();
                Ok(Outcome::new(Response::TransportKey(public.to_vec()))
                    .with("transport_key", hex::encode(public)))
            }
            Request::ExportTransportKey => {
                let secret = self.nvm.transport_key.as_ref().ok_or_else(|| {
                    ModuleError::KeyState("this module has no transport key (only a clone generates one, in Initializing)".into())
                })?;
                let kp = HpkeKeyPair::from_secret(&SecretKey32::from_bytes(**secret))?;
                Ok(Outcome::new(Response::TransportKey(
                    kp.public_key().to_vec(),
                )))
            }
            Request::CreateMksShares {
                count,
                threshold,
                slot,
            } => self.cmd_create_shares(*count, *threshold, *slot),
            Request::ExportShare {
                transport_public_key,
                exportable,
            } => self.cmd_export_share(&me, transport_public_key, *exportable),
            Request::AbortExport => {
                self.enter(ModuleState::Operational)?;
                self.export = None;
                self.commit_state(ModuleState::Operational);
                Ok(Outcome::new(Response::Done))
            }
            Request::StartImporting => {
                if self.nvm.transport_key.is_none() {
                    return Err(ModuleError::KeyState(
                        "this module has no transport key; shares can only be imported by a module initialized as a clone".into(),
                    ));
                }
                if self.nvm.mks_dormant.is_some() {
                    return Err(ModuleError::KeyState(
                        "a dormant MKS exists: translate everything to the active MKS and delete the dormant one before another rollover".into(),
                    ));
                }
                self.transition(ModuleState::ImportingShares)?;
                self.import = Some(ImportJob::default());
                Ok(Outcome::new(Response::Done))
            }
            Request::ImportShare { share } => self.cmd_import_share(&me, share),
            Request::CombineShares => self.cmd_combine(),
            Request::ActivateMks => {
                self.forget_unwrapped_keys();
                let newer = match (&self.nvm.mks_active, &self.nvm.mks_dormant) {
                    (Some(a), Some(d)) => d.generation > a.generation,
                    _ => false,
                };
                if !newer {
                    return Err(ModuleError::KeyState(
                        "there is no newer dormant MKS to activate".into(),
                    ));
                }
                std::mem::swap(&mut self.nvm.mks_active, &mut self.nvm.mks_dormant);
                let info = self.active_mks()?.info();
                Ok(Outcome::new(Response::Mks(info.clone()))
                    .with("active_mks", info.id)
                    .with("generation", info.generation.to_string()))
            }
            Request::DeleteDormantMks => {
                self.forget_unwrapped_keys();
                let d = self
                    .nvm
                    .mks_dormant
                    .take()
                    .ok_or_else(|| ModuleError::KeyState("there is no dormant MKS".into()))?;
                Ok(Outcome::new(Response::Done).with("deleted_mks", hex::encode(d.id)))
            }
            Request::TranslateToken { token } => {
                let (old, new) = match (&self.nvm.mks_dormant, &self.nvm.mks_active) {
                    (Some(d), Some(a)) if d.generation < a.generation => (d, a),
                    _ => {
                        return Err(ModuleError::KeyState(
                            "translation needs a previous (dormant) MKS and a newer active one"
                                .into(),
                        ));
                    }
                };
                let key = old.unwrap(token, now)?;
                let t = new.wrap(
                    &mut self.rng,
                    token.key_type,
                    token.usage,
                    token.expires,
                    token.exportable,
                    &token.identity,
                    key.expose_secret(),
                )?;
                let check = self.token_check(&t, &key)?;
                Ok(Outcome::new(Response::Token { token: t, check })
                    .with("identity", token.identity.clone()))
            }
            Request::CreateKeyToken {
                key_type,
                usage,
                identity,
                exportable,
                expires,
            } => {
                if identity.is_empty() || identity.len() > 256 {
                    return Err(ModuleError::Invalid(
                        "identity must be 1 to 256 bytes".into(),
                    ));
                }
                let key = self.generate_key(*key_type)?;
                let mks =
                    self.nvm.mks_active.as_ref().ok_or_else(|| {
                        ModuleError::KeyState("this module has no active MKS".into())
                    })?;
                let t = mks.wrap(
                    &mut self.rng,
                    *key_type,
                    *usage,
                    *expires,
                    *exportable,
                    identity,
                    key.expose_secret(),
                )?;
                let check = self.token_check(&t, &key)?;
                Ok(Outcome::new(Response::Token {
                    token: t,
                    check: check.clone(),
                })
                .with("identity", identity.clone())
                .with("kcv", check.kcv))
            }
            Request::CheckKeyToken { token } => {
                let mks = [&self.nvm.mks_active, &self.nvm.mks_dormant]
                    .into_iter()
                    .flatten()
                    .find(|m| m.id == token.mks_id)
                    .ok_or_else(|| {
                        ModuleError::KeyState(format!(
                            "token is sealed under MKS {}, which this module does not hold",
                            hex::encode(token.mks_id)
                        ))
                    })?;
                let key = mks.unwrap(token, now)?;
                let check = self.token_check(token, &key)?;
                Ok(Outcome::new(Response::TokenCheck(check.clone()))
                    .with("identity", token.identity.clone())
                    .with("kcv", check.kcv))
            }
            Request::InitializeCryptoCard {
                keys,
                ca_certificate,
                provider_public_key,
            } => self.cmd_crypto_card(
                keys,
                ca_certificate.as_deref(),
                provider_public_key.as_deref(),
                now,
            ),
            Request::CreateAuditKey => {
                let k = EcdsaP256KeyPair::generate(&self.faults)?;
                let public = k.public_key();
                let mut o = Outcome::new(Response::AuditKey(public.to_vec()))
                    .with("new_audit_key", hex::encode(public));
                o.after = AfterAudit::InstallAuditKey(Box::new(k));
                Ok(o)
            }
            Request::ExportAuditKey => {
                let k = self
                    .audit_key
                    .as_ref()
                    .ok_or_else(|| ModuleError::KeyState("no audit key".into()))?;
                Ok(Outcome::new(Response::AuditKey(k.public_key().to_vec())))
            }
            Request::CreateAuditEntry { note, sign } => {
                if note.len() > 1024 {
                    return Err(ModuleError::Invalid(
                        "note must be at most 1024 bytes".into(),
                    ));
                }
                if self.audit_key.is_none() {
                    // Zeroized, or never initialized: "done" would claim an entry nobody wrote.
                    return Err(ModuleError::KeyState(
                        "there is no audit key (zeroized or not initialized): no entry can be written"
                            .into(),
                    ));
                }
                let mut o = Outcome::new(Response::Done).with("note", note.clone());
                o.force_sign = *sign;
                Ok(o)
            }
            Request::RunSelfTests => {
                let report = selftest::run_power_up(&self.faults);
                let list = report
                    .results
                    .iter()
                    .map(|r| (r.test.to_string(), r.failure.is_none()))
                    .collect();
                let failed = report.first_failure();
                self.selftests = report;
                if let Some(t) = failed {
                    self.keep_on_error = true;
                    self.fail_soft(&format!("self-test {t} failed"));
                    return Err(ModuleError::SelfTest(t.to_string()));
                }
                Ok(Outcome::new(Response::SelfTests(list)))
            }
            Request::Zeroize => {
                let mut o = Outcome::new(Response::Done);
                o.after = AfterAudit::Zeroize;
                Ok(o)
            }
            Request::Reset => {
                let mut o = Outcome::new(Response::Done);
                o.after = AfterAudit::Reset;
                Ok(o)
            }
            Request::InitializePsd { device } => self.cmd_initialize_psd(device),
            Request::RetrievePsdPublicKey {
                package,
                checkpoint,
            } => self.cmd_retrieve_psd_public_key(package, checkpoint.as_ref(), now),
            Request::AuthorizePsd {
                package,
                checkpoint,
                certificate_der,
            } => self.cmd_authorize_psd(package, checkpoint.as_ref(), certificate_der, now),
            Request::ConfigurePsd {
                package,
                checkpoint,
                secrets,
            } => self.cmd_configure_psd(package, checkpoint.as_ref(), secrets, now),
            Request::AuthorizeCustomer {
                package,
                checkpoint,
                message,
            } => self.cmd_authorize_customer(package, checkpoint.as_ref(), message, now),
            Request::DownloadPostageValue {
                package,
                checkpoint,
                message,
            } => self.cmd_download(package, checkpoint.as_ref(), message, now),
            Request::CreateIndicium {
                package,
                checkpoint,
                request,
            } => self.cmd_create_indicium(package, checkpoint.as_ref(), request, false, now),
            Request::CreateCorrectionIndicium {
                package,
                checkpoint,
                request,
            } => self.cmd_create_indicium(package, checkpoint.as_ref(), request, true, now),
            Request::CreateIndicia { checkpoint, items } => {
                self.cmd_create_indicia(checkpoint.as_ref(), items, now)
            }
            Request::CreateRefundIndicium {
                package,
                checkpoint,
                message,
            } => self.cmd_refund(package, checkpoint.as_ref(), message, now),
            Request::BeginPasswordReset {
                package,
                checkpoint,
                message,
            } => self.cmd_begin_password_reset(package, checkpoint.as_ref(), message, now),
            Request::CompletePasswordReset {
                package,
                checkpoint,
                secrets,
            } => self.cmd_complete_password_reset(package, checkpoint.as_ref(), secrets, now),
            Request::RetrievePsdStatus {
                package,
                checkpoint,
            } => self.cmd_retrieve_psd_status(package, checkpoint.as_ref()),
            Request::PsdUserCommand {
                package,
                checkpoint,
                request,
            } => self.cmd_psd_user(package, checkpoint.as_ref(), request, now),
            Request::PsdUserLogon {
                package,
                checkpoint,
                logon,
            } => self.cmd_psd_user_logon(package, checkpoint.as_ref(), logon, now),
            Request::TranslatePackage { package } => self.cmd_translate_package(package, now),
            Request::CreateCertificateAuthority { common_name, days } => {
                self.cmd_create_ca(common_name, *days, now)
            }
            Request::IssuePsdCertificate {
                ca_key,
                ca_certificate_der,
                package,
                serial,
                days,
            } => self.cmd_issue_psd_certificate(
                ca_key,
                ca_certificate_der,
                package,
                *serial,
                *days,
                now,
            ),
            Request::AutoRecoverCheckpoint { checkpoint } => self.cmd_auto_recover(checkpoint),
            Request::RetrieveCheckpoint => self.cmd_retrieve_checkpoint(),
            Request::AcceptCheckpoint { checkpoint } => {
                self.cmd_accept_checkpoint(checkpoint.as_ref())
            }
        }
    }

    fn cmd_start_initialization(&mut self, time: i64) -> Result<Outcome, ModuleError> {
        if time <= 0 {
            return Err(ModuleError::Invalid(
                "time must be a positive Unix time".into(),
            ));
        }
        let audit_key = EcdsaP256KeyPair::generate(&self.faults)?;
        let module_id = self.rng.array::<16>()?;
        self.enter(ModuleState::Initializing)?;
        // Erase everything, then build the new NVM.
        self.nvm = NvmImage::empty();
        self.nvm.module_id = module_id;
        self.nvm.clock_offset = time - self.clock.now();
        self.nvm.audit = Some(AuditState {
            next_seq: 0,
            last_hash: GENESIS_HASH,
            since_signed: 0,
            sign_every: self.sign_every,
            signing_key: Zeroizing::new(audit_key.to_pkcs8().expose_secret().to_vec()),
            pending: Vec::new(),
        });
        let public = audit_key.public_key();
        self.audit_key = Some(audit_key);
        self.export = None;
        self.import = None;
        self.commit_state(ModuleState::Initializing);
        Ok(Outcome::new(Response::AuditKey(public.to_vec()))
            .with("audit_key", hex::encode(public))
            .with("time", time.to_string()))
    }

    fn cmd_init_access(&mut self, users: &[NewUser], now: i64) -> Result<Outcome, ModuleError> {
        if !self.nvm.users.is_empty() {
            return Err(ModuleError::Invalid(
                "the access control database is already initialized".into(),
            ));
        }
        let count = |r: Role| users.iter().filter(|u| u.role == r).count();
        if count(Role::Administrator) != 1
            || count(Role::SecurityOfficer) != 1
            || count(Role::KeyCustodian) < 2
        {
            return Err(ModuleError::Invalid(
                "initialize access control with exactly one administrator, one security officer and at least two key custodians".into(),
            ));
        }
        if users.len() != 2 + count(Role::KeyCustodian) {
            return Err(ModuleError::Invalid(
                "other roles are created later by the Administrator, in Administrative state"
                    .into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for u in users {
            if !seen.insert(u.user_id.as_str()) {
                return Err(ModuleError::Invalid(format!(
                    "user ID {} appears twice",
                    u.user_id
                )));
            }
        }
        let mut records = Vec::with_capacity(users.len());
        for u in users {
            records.push(access::new_record(&mut self.rng, self.argon2, u, now)?);
        }
        self.nvm.users = records;
        let list = users
            .iter()
            .map(|u| format!("{}:{}", u.user_id, u.role))
            .collect::<Vec<_>>()
            .join(",");
        Ok(Outcome::new(Response::Done).with("users", list))
    }

    fn cmd_logon(
        &mut self,
        sid: u64,
        user_id: &str,
        pw: &Password,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        let argon2 = self.argon2;
        let Some(rec) = self.user_record(user_id) else {
            // Same work as a real check, so timing does not reveal which users exist.
            password::dummy_verify(pw.expose_secret().as_bytes(), argon2);
            return Err(ModuleError::LogonFailed);
        };
        if rec.failures >= rec.failure_limit {
            return Err(ModuleError::Locked(user_id.into()));
        }
        if rec.account_expires.is_some_and(|e| now >= e) {
            return Err(ModuleError::AccountExpired(user_id.into()));
        }
        if !password::verify_password(&rec.password_hash, pw.expose_secret().as_bytes())? {
            rec.failures += 1;
            let locked = rec.failures >= rec.failure_limit;
            self.keep_on_error = true;
            return Err(if locked {
                ModuleError::Locked(user_id.into())
            } else {
                ModuleError::LogonFailed
            });
        }
        if now >= rec.password_expires {
            return Err(ModuleError::PasswordExpired(user_id.into()));
        }
        rec.failures = 0;
        rec.last_logon = Some(now);
        let role = rec.role;
        let s = self
            .sessions
            .get_mut(&sid)
            .ok_or(ModuleError::Invalid("no session".into()))?;
        s.user = Some(LoggedOn {
            user_id: user_id.to_string(),
            role,
            last_activity: now,
        });
        Ok(Outcome::new(Response::Role(role))
            .with("user", user_id)
            .with("role", role.as_str()))
    }

    fn cmd_delete_user(&mut self, user_id: &str, me: &str) -> Result<Outcome, ModuleError> {
        if user_id == me {
            return Err(ModuleError::Invalid(
                "you cannot delete your own account".into(),
            ));
        }
        let pos = self
            .nvm
            .users
            .iter()
            .position(|u| u.user_id == user_id)
            .ok_or_else(|| ModuleError::Invalid(format!("no user {user_id}")))?;
        let role = self.nvm.users[pos].role;
        let remaining = self.nvm.users.iter().filter(|u| u.role == role).count() - 1;
        let minimum = match role {
            Role::Administrator | Role::SecurityOfficer => 1,
            Role::KeyCustodian => 2,
            _ => 0,
        };
        if remaining < minimum {
            return Err(ModuleError::Invalid(format!(
                "deleting {user_id} would leave fewer than {minimum} {role} account(s); create a replacement first"
            )));
        }
        self.nvm.users.remove(pos);
        for s in self.sessions.values_mut() {
            if s.user.as_ref().is_some_and(|u| u.user_id == user_id) {
                s.user = None;
            }
        }
        Ok(Outcome::new(Response::Done)
            .with("user", user_id)
            .with("role", role.as_str()))
    }

    fn cmd_generate_mks(&mut self) -> Result<Outcome, ModuleError> {
        match self.current {
            ModuleState::Initializing => {
                if self.nvm.mks_active.is_some() || self.nvm.transport_key.is_some() {
                    return Err(ModuleError::KeyState(
                        "this module already has an MKS or a transport key".into(),
                    ));
                }
                if self.nvm.users.is_empty() {
                    return Err(ModuleError::Invalid(
                        "initialize access control first".into(),
                    ));
                }
                self.enter(ModuleState::Operational)?;
                let mks = Mks::generate(&mut self.rng, 1)?;
                let info = mks.info();
                self.nvm.mks_active = Some(mks);
                self.commit_state(ModuleState::Operational);
                Ok(Outcome::new(Response::Mks(info.clone()))
                    .with("mks", info.id)
                    .with("generation", "1"))
            }
            _ => {
                if self.nvm.mks_dormant.is_some() {
                    return Err(ModuleError::KeyState(
                        "a dormant MKS exists: translate everything to the active MKS and delete the dormant one before another rollover".into(),
                    ));
                }
                let generation = self.active_mks()?.generation + 1;
                let mks = Mks::generate(&mut self.rng, generation)?;
                let info = mks.info();
                self.nvm.mks_dormant = Some(mks);
                Ok(Outcome::new(Response::Mks(info.clone()))
                    .with("mks", info.id)
                    .with("generation", generation.to_string()))
            }
        }
    }

    fn cmd_create_shares(
        &mut self,
        count: u8,
        threshold: u8,
        slot: MksSlot,
    ) -> Result<Outcome, ModuleError> {
        if count < 2 || threshold < 2 || threshold > count {
            return Err(ModuleError::Invalid(format!(
                "need 2 <= threshold <= count, got {threshold} of {count}"
            )));
        }
        let custodians = self
            .nvm
            .users
            .iter()
            .filter(|u| u.role == Role::KeyCustodian)
            .count();
        if usize::from(count) > custodians {
            return Err(ModuleError::Invalid(format!(
                "{count} shares need {count} key custodians (one share each), but only {custodians} exist; create more first"
            )));
        }
        let mks = match slot {
            MksSlot::Active => self.nvm.mks_active.as_ref(),
            MksSlot::Dormant => self.nvm.mks_dormant.as_ref(),
        }
        .ok_or_else(|| ModuleError::KeyState(format!("there is no {slot:?} MKS")))?;
        if !mks.exportable {
            return Err(ModuleError::KeyState(format!(
                "MKS {} is retained: it cannot be exported from this module",
                hex::encode(mks.id)
            )));
        }
        let (id, generation) = (mks.id, mks.generation);
        let secret = mks.share_secret();
        self.enter(ModuleState::ExportingShares)?;
        let shares = shamir::split(&mut self.rng, secret.expose_secret(), threshold, count)?;
        self.export = Some(ExportJob {
            mks_id: id,
            generation,
            count,
            threshold,
            shares,
            exported_by: Vec::new(),
            transport_key: None,
            exportable: None,
        });
        self.commit_state(ModuleState::ExportingShares);
        Ok(Outcome::new(Response::SharesCreated { count, threshold })
            .with("mks", hex::encode(id))
            .with("count", count.to_string())
            .with("threshold", threshold.to_string()))
    }

    fn share_aad(
        header: &ShareHeader,
        index: u8,
        transport_key_hash: &str,
        source: &str,
    ) -> Vec<u8> {
        postcard::to_stdvec(&(
            "postvault mks share",
            header,
            index,
            transport_key_hash,
            source,
        ))
        .expect("encoding into a Vec cannot fail")
    }

    fn cmd_export_share(
        &mut self,
        me: &str,
        transport_key: &[u8],
        exportable: bool,
    ) -> Result<Outcome, ModuleError> {
        let tk: [u8; 32] = transport_key.try_into().map_err(|_| {
            ModuleError::Invalid(format!(
                "a transport public key has 32 bytes, not {}",
                transport_key.len()
            ))
        })?;
        let source = hex::encode(self.nvm.module_id);
        let job = self
            .export
            .as_mut()
            .ok_or_else(|| ModuleError::KeyState("no share export in progress".into()))?;
        if job.exported_by.iter().any(|u| u == me) {
            return Err(ModuleError::Invalid(format!(
                "{me} has already exported a share; each key custodian takes one"
            )));
        }
        if job.transport_key.is_some_and(|k| k != tk) {
            return Err(ModuleError::Invalid(
                "all shares of one export go to the same destination transport key".into(),
            ));
        }
        if job.exportable.is_some_and(|e| e != exportable) {
            return Err(ModuleError::Invalid(
                "all shares of one export must agree on exportable / retained".into(),
            ));
        }
        let share = &job.shares[job.exported_by.len()];
        let header = ShareHeader {
            mks_id: hex::encode(job.mks_id),
            generation: job.generation,
            count: job.count,
            threshold: job.threshold,
            exportable,
        };
        let tk_hash = hex::encode(hash::sha256(&[&tk]));
        let payload = SharePayload {
            header: header.clone(),
            index: share.index,
            value: Zeroizing::new(share.value.expose_secret().to_vec()),
        };
        let plain = Zeroizing::new(
            postcard::to_stdvec(&payload).map_err(|e| ModuleError::Crypto(e.to_string()))?,
        );
        let aad = Self::share_aad(&header, share.index, &tk_hash, &source);
        let (enc, ciphertext) =
            postvault_crypto::hpke::seal(&mut self.rng, &tk, SHARE_INFO, &aad, &plain)?;
        let out = EncryptedShare {
            version: 1,
            mks_id: header.mks_id.clone(),
            generation: header.generation,
            index: share.index,
            count: header.count,
            threshold: header.threshold,
            exportable,
            transport_key_hash: tk_hash,
            source_module: source,
            enc,
            ciphertext,
        };
        job.exported_by.push(me.to_string());
        job.transport_key = Some(tk);
        job.exportable = Some(exportable);
        let remaining = job.count - job.exported_by.len() as u8;
        if remaining == 0 {
            self.enter(ModuleState::Operational)?;
            self.export = None;
            self.commit_state(ModuleState::Operational);
        }
        Ok(Outcome::new(Response::Share {
            share: out.clone(),
            remaining,
        })
        .with("mks", out.mks_id)
        .with("index", out.index.to_string())
        .with("exportable", exportable.to_string())
        .with("destination", out.transport_key_hash))
    }

    fn cmd_import_share(
        &mut self,
        me: &str,
        share: &EncryptedShare,
    ) -> Result<Outcome, ModuleError> {
        let secret = self
            .nvm
            .transport_key
            .as_ref()
            .ok_or_else(|| ModuleError::KeyState("this module has no transport key".into()))?;
        let kp = HpkeKeyPair::from_secret(&SecretKey32::from_bytes(**secret))?;
        let job = self.import.as_mut().ok_or_else(|| {
            ModuleError::KeyState(
                "no share import in progress; the Security Officer starts one".into(),
            )
        })?;
        let idx = share.index;
        if job.imported_by.iter().any(|u| u == me) {
            return Err(ModuleError::Invalid(format!(
                "{me} has already imported a share; each key custodian enters one"
            )));
        }
        if share.version != 1 {
            return Err(ModuleError::Rejected(format!(
                "share {idx}: unknown share format version {}",
                share.version
            )));
        }
        let my_tk_hash = hex::encode(hash::sha256(&[&kp.public_key()]));
        if share.transport_key_hash != my_tk_hash {
            return Err(ModuleError::Rejected(format!(
                "share {idx} from module {} was encrypted for another module's transport key (a foreign share)",
                share.source_module
            )));
        }
        let header = ShareHeader {
            mks_id: share.mks_id.clone(),
            generation: share.generation,
            count: share.count,
            threshold: share.threshold,
            exportable: share.exportable,
        };
        let aad = Self::share_aad(
            &header,
            idx,
            &share.transport_key_hash,
            &share.source_module,
        );
        let plain = kp.open(&share.enc, SHARE_INFO, &aad, &share.ciphertext).map_err(|_| {
            ModuleError::Rejected(format!("share {idx} from module {} failed authentication: it is corrupted or was altered", share.source_module))
        })?;
        let payload: SharePayload = postcard::from_bytes(plain.expose_secret())
            .map_err(|_| ModuleError::Rejected(format!("share {idx}: contents are malformed")))?;
        if payload.header != header || payload.index != idx {
            return Err(ModuleError::Rejected(format!(
                "share {idx}: header does not match its contents"
            )));
        }
        if let Some(h) = &job.header
            && *h != header
        {
            return Err(ModuleError::Rejected(format!(
                "share {idx} belongs to MKS {} (generation {}, {} of {}), but the shares imported so far belong to MKS {} (generation {}, {} of {})",
                header.mks_id,
                header.generation,
                header.threshold,
                header.count,
                h.mks_id,
                h.generation,
                h.threshold,
                h.count
            )));
        }
        if job.shares.iter().any(|s| s.index == idx) {
            return Err(ModuleError::Rejected(format!(
                "share {idx} has already been imported"
            )));
        }
        job.shares.push(shamir::Share {
            index: idx,
            value: SecretBytes::from_vec(payload.value.to_vec()),
        });
        job.imported_by.push(me.to_string());
        job.header = Some(header.clone());
        let held = job.shares.len() as u8;
        Ok(Outcome::new(Response::ShareImported {
            held,
            threshold: header.threshold,
        })
        .with("mks", header.mks_id)
        .with("index", idx.to_string())
        .with("held", held.to_string()))
    }

    fn cmd_combine(&mut self) -> Result<Outcome, ModuleError> {
        let job = self
            .import
            .as_ref()
            .ok_or_else(|| ModuleError::KeyState("no share import in progress".into()))?;
        let header = job
            .header
            .clone()
            .ok_or_else(|| ModuleError::Invalid("no shares have been imported yet".into()))?;
        let held = job.shares.len();
        if held < usize::from(header.threshold) {
            return Err(ModuleError::Invalid(format!(
                "only {held} of the {} shares needed have been imported",
                header.threshold
            )));
        }
        let expected: [u8; 16] = hex::decode(&header.mks_id)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| ModuleError::Rejected("share header has a malformed MKS ID".into()))?;
        let combined = shamir::combine(&job.shares).map_err(ModuleError::from);
        let mks = combined.and_then(|s| Mks::from_share_secret(&s, &expected, header.exportable));
        self.enter(ModuleState::Operational)?;
        self.import = None;
        let mks = match mks {
            Ok(m) => m,
            Err(e) => {
                // Seed 002: next state Operational if an MKS exists after completion, else Error.
                self.keep_on_error = true;
                if self.nvm.mks_active.is_some() {
                    self.commit_state(ModuleState::Operational);
                } else {
                    self.fail_fatal("combining the MKS shares failed and the module has no MKS; reset it and import again");
                }
                return Err(e);
            }
        };
        let info = mks.info();
        let active = self.nvm.mks_active.as_ref().map(|a| (a.id, a.generation));
        let refusal = match active {
            None => None,
            Some((id, _)) if id == mks.id => Some("this MKS is already the active one".to_string()),
            Some((_, g)) if mks.generation <= g => Some(format!(
                "the imported MKS has generation {}, not newer than the active generation {g}",
                mks.generation
            )),
            Some(_) => None,
        };
        if let Some(why) = refusal {
            self.keep_on_error = true;
            self.commit_state(ModuleState::Operational);
            return Err(ModuleError::KeyState(why));
        }
        if active.is_none() {
            self.nvm.mks_active = Some(mks);
        } else {
            self.nvm.mks_dormant = Some(mks);
        }
        self.commit_state(ModuleState::Operational);
        Ok(Outcome::new(Response::Mks(info.clone()))
            .with("mks", info.id)
            .with("generation", info.generation.to_string())
            .with("exportable", info.exportable.to_string()))
    }

    fn generate_key(&mut self, key_type: KeyType) -> Result<SecretBytes, ModuleError> {
        Ok(match key_type {
            KeyType::Aes256 | KeyType::HmacSha256 => {
                SecretBytes::from_vec(self.rng.array::<32>()?.to_vec())
            }
            KeyType::EcdsaP256 => EcdsaP256KeyPair::generate(&self.faults)?.to_pkcs8(),
            KeyType::HpkeX25519 => SecretBytes::from_vec(
                HpkeKeyPair::generate(&mut self.rng, &self.faults)?
                    .secret()
                    .expose_secret()
                    .to_vec(),
            ),
        })
    }

    fn public_of(key_type: KeyType, key: &SecretBytes) -> Result<Option<Vec<u8>>, ModuleError> {
        Ok(match key_type {
            KeyType::Aes256 | KeyType::HmacSha256 => None,
            KeyType::EcdsaP256 => Some(EcdsaP256KeyPair::from_pkcs8(key)?.public_key().to_vec()),
            KeyType::HpkeX25519 => Some(
                HpkeKeyPair::from_secret(&SecretKey32::from_slice(key.expose_secret())?)?
                    .public_key()
                    .to_vec(),
            ),
        })
    }

    fn token_check(&self, token: &KeyToken, key: &SecretBytes) -> Result<TokenCheck, ModuleError> {
        let public_key = Self::public_of(token.key_type, key)?;
        let kcv = match &public_key {
            Some(p) => key_check_value(p),
            None => key_check_value(key.expose_secret()),
        };
        Ok(TokenCheck {
            key_type: token.key_type,
            usage: token.usage,
            identity: token.identity.clone(),
            mks_generation: token.mks_generation,
            exportable: token.exportable,
            expires: token.expires,
            kcv,
            public_key,
        })
    }

    fn cmd_crypto_card(
        &mut self,
        keys: &CryptoCardKeys,
        ca: Option<&[u8]>,
        provider: Option<&[u8]>,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        if let Some(der) = ca {
            check_ca_certificate(der)?;
        }
        if let Some(p) = provider
            && let Err(e) = postvault_crypto::ecdsa::check_public_key(p)
        {
            return Err(ModuleError::Invalid(format!(
                "the provider public key must be an uncompressed P-256 point on the curve (65 bytes starting 04): {e}"
            )));
        }
        const SIGNING_ID: &str = "crypto-card/registration-signing";
        const DECRYPTION_ID: &str = "crypto-card/registration-decryption";
        let mks = self.active_mks()?.clone();
        let (signing, decryption, signing_token, decryption_token) = match keys {
            CryptoCardKeys::Generate => {
                let s = EcdsaP256KeyPair::generate(&self.faults)?;
                let d = HpkeKeyPair::generate(&mut self.rng, &self.faults)?;
                let st = mks.wrap(
                    &mut self.rng,
                    KeyType::EcdsaP256,
                    KeyUsage::RegistrationSigning,
                    None,
                    true,
                    SIGNING_ID,
                    s.to_pkcs8().expose_secret(),
                )?;
                let dt = mks.wrap(
                    &mut self.rng,
                    KeyType::HpkeX25519,
                    KeyUsage::RegistrationDecryption,
                    None,
                    true,
                    DECRYPTION_ID,
                    d.secret().expose_secret(),
                )?;
                (s, d, st, dt)
            }
            CryptoCardKeys::Load {
                signing,
                decryption,
            } => {
                let expect = |t: &KeyToken, ty: KeyType, usage: KeyUsage, id: &str| {
                    if t.key_type != ty || t.usage != usage || t.identity != id {
                        Err(ModuleError::Rejected(format!(
                            "token {:?} is not a {usage:?} key token",
                            t.identity
                        )))
                    } else {
                        Ok(())
                    }
                };
                expect(
                    signing,
                    KeyType::EcdsaP256,
                    KeyUsage::RegistrationSigning,
                    SIGNING_ID,
                )?;
                expect(
                    decryption,
                    KeyType::HpkeX25519,
                    KeyUsage::RegistrationDecryption,
                    DECRYPTION_ID,
                )?;
                let s = EcdsaP256KeyPair::from_pkcs8(&mks.unwrap(signing, now)?)?;
                let d = HpkeKeyPair::from_secret(&SecretKey32::from_slice(
                    mks.unwrap(decryption, now)?.expose_secret(),
                )?)?;
                (s, d, signing.clone(), decryption.clone())
            }
        };
        let out = CryptoCardOutput {
            signing_public_key: signing.public_key().to_vec(),
            decryption_public_key: decryption.public_key().to_vec(),
            signing_token,
            decryption_token,
        };
        self.nvm.crypto_card = Some(CryptoCard {
            signing_key: Zeroizing::new(signing.to_pkcs8().expose_secret().to_vec()),
            decryption_key: Zeroizing::new(*decryption.secret().expose_secret()),
            ca_certificate: ca.map(<[u8]>::to_vec),
            provider_public_key: provider.map(<[u8]>::to_vec),
        });
        Ok(Outcome::new(Response::CryptoCard(Box::new(out.clone())))
            .with(
                "mode",
                if matches!(keys, CryptoCardKeys::Generate) {
                    "generate"
                } else {
                    "load"
                },
            )
            .with(
                "registration_signing_key",
                hex::encode(&out.signing_public_key),
            )
            .with(
                "registration_encryption_key",
                hex::encode(&out.decryption_public_key),
            )
            .with(
                "ca_certificate",
                ca.map(|c| hex::encode(hash::sha256(&[c])))
                    .unwrap_or_else(|| "none".into()),
            ))
    }
}

/// Checks that `der` is an X.509 CA certificate.
fn check_ca_certificate(der: &[u8]) -> Result<(), ModuleError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
        ModuleError::Invalid(format!(
            "the CA certificate is not a DER X.509 certificate: {e}"
        ))
    })?;
    if !rest.is_empty() {
        return Err(ModuleError::Invalid(
            "the CA certificate has trailing bytes".into(),
        ));
    }
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(ModuleError::Invalid(
            "the certificate is not a CA certificate (basicConstraints cA is not set)".into(),
        ));
    }
    Ok(())
}
