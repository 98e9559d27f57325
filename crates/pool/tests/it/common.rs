//! Shared fixtures: a pool configuration in a temporary directory, the
//! provider key, and small helpers around calls.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use postvault_crypto::Faults;
use postvault_crypto::ecdsa::EcdsaP256KeyPair;
use postvault_crypto::password::Argon2Params;
use postvault_module::checkpoint::SignedCheckpoint;
use postvault_module::protocol::Status;
use postvault_module::{ManualClock, Request, Response};
use postvault_pool::{Called, Checkout, PoolConfig};

pub const T0: i64 = 1_790_000_000;

/// The provider's public key (the key pair itself is not needed here).
pub fn provider_key() -> Vec<u8> {
    EcdsaP256KeyPair::generate(&Faults::none())
        .unwrap()
        .public_key()
        .to_vec()
}

/// A configuration for `modules` members in `dir`.
pub fn config(dir: &Path, modules: usize) -> PoolConfig {
    let mut c = PoolConfig::new(dir, Arc::new(ManualClock::new(T0)), provider_key());
    c.modules = modules;
    c.argon2 = Argon2Params::TEST;
    c
}

/// Every audit entry a test saw, per module ID, in the order seen.
#[derive(Default)]
pub struct Seen(pub HashMap<String, Vec<(u64, String)>>);

impl Seen {
    pub fn add(&mut self, module_id: &str, audit: &[(u64, String)]) {
        self.0
            .entry(module_id.to_string())
            .or_default()
            .extend(audit.iter().cloned());
    }

    pub fn add_startup(&mut self, entries: Vec<(String, u64, String)>) {
        for (id, seq, line) in entries {
            self.0.entry(id).or_default().push((seq, line));
        }
    }
}

/// Runs `req` on `c`, which must succeed; records its audit entries.
#[track_caller]
pub fn call(c: &mut Checkout, seen: &mut Seen, req: &Request) -> Response {
    let id = c.module_id().to_string();
    match c.call(req) {
        Ok(Called { response, audit }) => {
            seen.add(&id, &audit);
            response
        }
        Err(e) => panic!("{:?} on {id}: {e}", req.kind()),
    }
}

pub fn status(c: &mut Checkout, seen: &mut Seen) -> Status {
    match call(c, seen, &Request::GetStatus) {
        Response::Status(s) => *s,
        other => panic!("{other:?}"),
    }
}

/// Each module's newest checkpoint, as the database would hold it.
pub type Checkpoints = HashMap<String, SignedCheckpoint>;

/// Logs the member's Security Officer on (password from operators.json)
/// and zeroizes the module: it goes to Error.
pub fn zeroize(pool_dir: &Path, m: &mut Checkout) {
    let ops: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pool_dir.join("operators.json")).unwrap())
            .unwrap();
    let record = ops["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["index"] == m.index())
        .unwrap();
    let password = record["passwords"]["so"].as_str().unwrap();
    m.call(&Request::Logon {
        user_id: "so".into(),
        password: postvault_module::Password::new(password),
    })
    .unwrap();
    m.call(&Request::Zeroize).unwrap();
}
