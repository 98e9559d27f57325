//! Shared fixtures for the module tests: a module in a temporary directory
//! with a file seal key, a manual clock, cheap Argon2 parameters, and helpers
//! to drive it into each state.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postvault_crypto::password::Argon2Params;
use postvault_module::audit_sink::MemoryAuditSink;
use postvault_module::module::{AuditFault, OpenError};
use postvault_module::nvm::CrashPoint;
use postvault_module::protocol::{AccountSettings, NewUser};
use postvault_module::{
    ManualClock, Module, ModuleClient, ModuleConfig, Password, Request, Response, Role,
};
use postvault_seal::{SealConfig, open_provider};

pub const T0: i64 = 1_790_000_000;

pub fn pw(user: &str) -> Password {
    Password::new(format!("{user}-correct-horse"))
}

pub fn new_user(id: &str, role: Role) -> NewUser {
    NewUser {
        user_id: id.into(),
        role,
        password: pw(id),
        settings: AccountSettings::default(),
    }
}

/// Options for opening a test module.
#[derive(Default, Clone)]
pub struct Opts {
    pub faults: Option<postvault_crypto::Faults>,
    pub crash_at: Option<CrashPoint>,
    pub audit_fault: Option<AuditFault>,
    pub sign_every: Option<u32>,
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub log: Arc<Mutex<Vec<postvault_audit::AuditEntry>>>,
}

impl Fixture {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(T0)),
            log: Default::default(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self, opts: &Opts) -> ModuleConfig {
        let seal = open_provider(
            &SealConfig::File {
                key_path: self.path().join("seal.key"),
            },
            true,
        )
        .unwrap();
        let mut c = ModuleConfig::new(&self.path().join("module"), seal, self.clock.clone());
        c.argon2 = Argon2Params::TEST;
        c.audit_sink = Some(Box::new(MemoryAuditSink(self.log.clone())));
        if let Some(f) = &opts.faults {
            c.faults = f.clone();
        }
        c.crash_at = opts.crash_at;
        c.audit_fault = opts.audit_fault;
        if let Some(n) = opts.sign_every {
            c.sign_every = n;
        }
        c
    }

    pub fn open(&self) -> Arc<Mutex<Module>> {
        self.open_with(&Opts::default())
    }

    pub fn open_with(&self, opts: &Opts) -> Arc<Mutex<Module>> {
        Arc::new(Mutex::new(open_module(|| self.config(opts))))
    }
}

/// Opens a module, waiting out a directory lock that only a process being
/// spawned still holds. The lock is an `flock` on `module.lock`; when
/// another test of this binary spawns a program (openssl) just as a module
/// is dropped, the child holds a copy of the lock's file descriptor until
/// it runs `exec`, so reopening the same directory at once can find it
/// locked for that moment. Nothing else holds these directories; any other
/// error, or a lock that lasts 10 s, fails the test.
pub fn open_module(mut config: impl FnMut() -> ModuleConfig) -> Module {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Module::open(config()) {
            Ok(m) => return m,
            Err(OpenError::Locked(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("opening the module failed: {e}"),
        }
    }
}

pub fn client(m: &Arc<Mutex<Module>>) -> ModuleClient {
    ModuleClient::local(m.clone()).unwrap()
}

pub fn ok(c: &mut ModuleClient, req: Request) -> Response {
    match c.run(&req) {
        Ok(r) => r,
        Err(e) => panic!("{:?} failed: {e}", req.kind()),
    }
}

/// Start Initialization + Initialize Access Control (admin, so, kc1, kc2, kc3, kc4, kc5).
pub fn initialize(c: &mut ModuleClient) {
    ok(c, Request::StartInitialization { time: T0 });
    let users = vec![
        new_user("admin", Role::Administrator),
        new_user("so", Role::SecurityOfficer),
        new_user("kc1", Role::KeyCustodian),
        new_user("kc2", Role::KeyCustodian),
        new_user("kc3", Role::KeyCustodian),
        new_user("kc4", Role::KeyCustodian),
        new_user("kc5", Role::KeyCustodian),
    ];
    ok(c, Request::InitializeAccessControl { users });
}

pub fn as_user<T>(c: &mut ModuleClient, user: &str, f: impl FnOnce(&mut ModuleClient) -> T) -> T {
    c.logon(user, &pw(user))
        .unwrap_or_else(|e| panic!("logon {user}: {e}"));
    let out = f(c);
    c.logoff().unwrap();
    out
}

/// A master module: initialized, MKS generated, Operational.
pub fn master(c: &mut ModuleClient) {
    initialize(c);
    as_user(c, "so", |c| ok(c, Request::GenerateMks));
}

/// Creates the remaining role accounts (auditor, provider, ca, customer, cadmin) via Administrative state.
pub fn create_other_roles(c: &mut ModuleClient) {
    as_user(c, "so", |c| ok(c, Request::BeginAdmin));
    as_user(c, "admin", |c| {
        for (id, role) in [
            ("auditor", Role::Auditor),
            ("provider", Role::Provider),
            ("ca", Role::CertificateAuthority),
            ("customer", Role::Customer),
            ("cadmin", Role::CustomerAdministrator),
        ] {
            ok(
                c,
                Request::CreateUser {
                    user: new_user(id, role),
                },
            );
        }
    });
    as_user(c, "so", |c| ok(c, Request::EndAdmin));
}

pub fn status(c: &mut ModuleClient) -> postvault_module::protocol::Status {
    match ok(c, Request::GetStatus) {
        Response::Status(s) => *s,
        other => panic!("unexpected {other:?}"),
    }
}

/// The fixture user who logs on for `role` (`None` for `NoRole`). `admin`,
/// `so` and `kc1`..`kc5` exist after [`initialize`]; the others after
/// [`create_other_roles`].
pub fn user_for(role: Role) -> Option<&'static str> {
    match role {
        Role::SecurityOfficer => Some("so"),
        Role::KeyCustodian => Some("kc1"),
        Role::Administrator => Some("admin"),
        Role::Auditor => Some("auditor"),
        Role::Provider => Some("provider"),
        Role::CertificateAuthority => Some("ca"),
        Role::Customer => Some("customer"),
        Role::CustomerAdministrator => Some("cadmin"),
        Role::NoRole => None,
    }
}

/// Copies every file under `from` to `to` (directories recursively).
pub fn copy_dir_all(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir_all(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A new fixture holding a copy of `from`'s seal key and module directory
/// (its own clock at [`T0`] and its own, empty, audit log). Copy a module
/// only while no command runs on it (it writes its NVM atomically, so a
/// closed or idle module copies consistently).
pub fn copy_fixture(from: &Fixture) -> Fixture {
    let f = Fixture::new();
    copy_dir_all(from.path(), f.path());
    f
}

/// Clone: the Security Officer generates the transport key pair
/// (Initializing -> Importing Shares); returns the transport public key.
pub fn generate_transport_key(c: &mut ModuleClient) -> Vec<u8> {
    match as_user(c, "so", |c| ok(c, Request::GenerateTransportKey)) {
        Response::TransportKey(k) => k,
        other => panic!("unexpected {other:?}"),
    }
}

/// Master: the Security Officer creates `count` shares (threshold
/// `threshold`) of the MKS in `slot`, and key custodians `kc1`..`kc{count}`
/// export one each to `transport_key` (exportable). Returns the shares.
pub fn export_shares(
    c: &mut ModuleClient,
    transport_key: &[u8],
    count: u8,
    threshold: u8,
    slot: postvault_module::protocol::MksSlot,
) -> Vec<postvault_module::protocol::EncryptedShare> {
    as_user(c, "so", |c| {
        ok(
            c,
            Request::CreateMksShares {
                count,
                threshold,
                slot,
            },
        )
    });
    (1..=count)
        .map(|i| {
            let kc = format!("kc{i}");
            match as_user(c, &kc, |c| {
                ok(
                    c,
                    Request::ExportShare {
                        transport_public_key: transport_key.to_vec(),
                        exportable: true,
                    },
                )
            }) {
                Response::Share { share, .. } => share,
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect()
}

/// Clone in Importing Shares: key custodians `kc1`.. import one share each
/// (the Security Officer then combines them with [`combine_shares`]).
pub fn import_shares(c: &mut ModuleClient, shares: &[postvault_module::protocol::EncryptedShare]) {
    for (i, share) in shares.iter().enumerate() {
        let kc = format!("kc{}", i + 1);
        as_user(c, &kc, |c| {
            ok(
                c,
                Request::ImportShare {
                    share: share.clone(),
                },
            )
        });
    }
}

/// A master and a clone that holds the master's MKS: the clone is
/// Operational, with a transport key (so it can import again), and both have
/// every role's account (see [`user_for`]).
pub fn master_and_clone() -> (Fixture, Fixture) {
    let mf = Fixture::new();
    let cf = Fixture::new();
    {
        let (m, cl) = (mf.open(), cf.open());
        let (mut mc, mut cc) = (client(&m), client(&cl));
        master(&mut mc);
        create_other_roles(&mut mc);
        initialize(&mut cc);
        let tk = generate_transport_key(&mut cc);
        let shares = export_shares(
            &mut mc,
            &tk,
            2,
            2,
            postvault_module::protocol::MksSlot::Active,
        );
        import_shares(&mut cc, &shares);
        as_user(&mut cc, "so", |c| ok(c, Request::CombineShares));
        create_other_roles(&mut cc);
    }
    (mf, cf)
}

/// The module error of a command that must fail (panics on success or on a
/// session-level failure).
#[track_caller]
pub fn run_err(c: &mut ModuleClient, req: Request) -> postvault_module::ModuleError {
    match c.run(&req) {
        Err(postvault_module::ClientError::Module(e)) => e,
        Err(other) => panic!("{:?}: expected a module error, got {other}", req.kind()),
        Ok(r) => panic!("{:?} must fail, but answered {r:?}", req.kind()),
    }
}

/// A copy of the audit entries the fixture's sink has collected.
pub fn audit_log(f: &Fixture) -> Vec<postvault_audit::AuditEntry> {
    f.log.lock().unwrap().clone()
}

/// The sealed NVM file's bytes.
pub fn nvm_bytes(f: &Fixture) -> Vec<u8> {
    std::fs::read(
        f.path()
            .join("module")
            .join(postvault_module::nvm::NVM_FILE),
    )
    .unwrap()
}
