//! Shared fixtures for the module tests: a module in a temporary directory
//! with a file seal key, a manual clock, cheap Argon2 parameters, and helpers
//! to drive it into each state.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use postvault_crypto::password::Argon2Params;
use postvault_module::audit_sink::MemoryAuditSink;
use postvault_module::module::AuditFault;
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
        Arc::new(Mutex::new(Module::open(self.config(opts)).unwrap()))
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
