//! The pool's two files and how they are written.
//!
//! - `deployment.json`: the public deployment facts, the CA key token and
//!   the crypto-card key tokens (ciphertext under the MKS: they open only
//!   inside a module holding it), so a new member can be set up later. Its
//!   presence marks a finished ceremony.
//! - `operators.json` (mode 0600): each member's operator accounts and
//!   their random passwords. This is the development default: a production
//!   deployment has its operators choose and keep their own passwords.
//!
//! Both are written atomically: a temporary file (0600) is written and
//! synced, renamed over the old one, and the directory is synced.
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use postvault_module::keys::KeyToken;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::PoolError;

/// File name of the deployment facts.
pub const DEPLOYMENT_FILE: &str = "deployment.json";
/// File name of the operators' passwords.
pub const OPERATORS_FILE: &str = "operators.json";
/// File name of the seal key shared by every member.
pub const SEAL_KEY_FILE: &str = "seal.key";

/// What `deployment.json` holds.
#[derive(Serialize, Deserialize)]
pub(crate) struct DeploymentFile {
    /// Format version (1).
    pub version: u32,
    /// HPKE X25519 registration encryption key (32 bytes).
    #[serde(with = "postvault_module::serde_hex::vec")]
    pub registration_public_key: Vec<u8>,
    /// Registration signing key (ECDSA P-256, 65 bytes).
    #[serde(with = "postvault_module::serde_hex::vec")]
    pub registration_signing_public_key: Vec<u8>,
    /// The CA certificate, DER.
    #[serde(with = "postvault_module::serde_hex::vec")]
    pub ca_certificate_der: Vec<u8>,
    /// The provider's ECDSA P-256 public key (65 bytes).
    #[serde(with = "postvault_module::serde_hex::vec")]
    pub provider_public_key: Vec<u8>,
    /// The CA key, a token under the MKS.
    pub ca_key: KeyToken,
    /// The registration signing key, a token under the MKS.
    pub signing_token: KeyToken,
    /// The registration decryption key, a token under the MKS.
    pub decryption_token: KeyToken,
}

/// What `operators.json` holds.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct OperatorsFile {
    /// One record per set-up member.
    pub modules: Vec<ModuleOperators>,
}

/// One member's operators.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct ModuleOperators {
    /// The member's index (directory `m{index}`).
    pub index: usize,
    /// The module ID (hex) it got at its initialization.
    pub module_id: String,
    /// User ID -> password.
    pub passwords: BTreeMap<String, Zeroizing<String>>,
}

impl OperatorsFile {
    /// The record of member `index`.
    pub(crate) fn get(&self, index: usize) -> Option<&ModuleOperators> {
        self.modules.iter().find(|m| m.index == index)
    }
}

impl ModuleOperators {
    /// The password of `user`.
    pub(crate) fn password(&self, user: &str) -> Result<postvault_module::Password, PoolError> {
        self.passwords
            .get(user)
            .map(|p| postvault_module::Password::new(p.as_str()))
            .ok_or_else(|| {
                PoolError::Ceremony(format!(
                    "{OPERATORS_FILE} has no password for {user} of module {}",
                    self.module_id
                ))
            })
    }
}

/// Reads a JSON file.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, PoolError> {
    let text = std::fs::read_to_string(path).map_err(PoolError::io(path))?;
    serde_json::from_str(&text).map_err(|e| PoolError::Corrupt {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// Writes `value` as JSON to `dir/name` atomically, mode 0600.
pub(crate) fn write_json_atomic<T: Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
) -> Result<(), PoolError> {
    let path = dir.join(name);
    let text =
        Zeroizing::new(
            serde_json::to_string_pretty(value).map_err(|e| PoolError::Corrupt {
                path: path.clone(),
                why: e.to_string(),
            })?,
        );
    let tmp: PathBuf = dir.join(format!(".{name}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(PoolError::io(&tmp))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(PoolError::io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(PoolError::io(&path))?;
    sync_dir(dir)
}

/// Syncs a directory, so a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PoolError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(PoolError::io(dir))
}
