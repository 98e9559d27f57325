//! The module's persistent memory ("NVM"): one sealed file in the module's
//! directory, written atomically (temporary file, fsync, rename, fsync of the
//! directory) and sealed under the seal provider's key. A corrupted,
//! truncated or swapped file is refused, never repaired or reset.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use postvault_seal::SealProvider;

use crate::access::UserRecord;
use crate::keys::Mks;
use crate::types::ModuleState;

/// File name of the sealed NVM inside the module directory.
pub const NVM_FILE: &str = "nvm.sealed";
const NVM_TMP: &str = "nvm.sealed.tmp";
const NVM_AAD: &[u8] = b"postvault module NVM v1";
const NVM_VERSION: u32 = 2;

/// Where a simulated power loss strikes while the NVM is being written
/// (used by the crash tests; `None` in production).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After Current State changed, before any action.
    AfterCurrentState,
    /// After the actions, before the NVM write.
    BeforeWrite,
    /// After the temporary file is written and synced, before the rename.
    AfterTempWrite,
    /// After the rename (Persistent State updated), before the reply.
    AfterRename,
}

/// The audit chain's state, kept in NVM.
#[derive(Clone, Serialize, Deserialize)]
pub struct AuditState {
    /// Sequence number of the next entry.
    pub next_seq: u64,
    /// Hash of the last entry.
    pub last_hash: [u8; 32],
    /// Entries since the last signed one.
    pub since_signed: u32,
    /// Sign at least every this many entries.
    pub sign_every: u32,
    /// The audit signing key, PKCS#8.
    pub signing_key: Zeroizing<Vec<u8>>,
    /// The entries of the last command (JSON lines, in order; several when
    /// one command writes several, e.g. a batch); boot hands the host again
    /// those it lacks.
    pub pending: Vec<String>,
}

/// The shared keys loaded by Initialize Crypto-Card.
#[derive(Clone, Serialize, Deserialize)]
pub struct CryptoCard {
    /// Registration signing key, PKCS#8.
    pub signing_key: Zeroizing<Vec<u8>>,
    /// Registration decryption key (HPKE X25519 private key).
    pub decryption_key: Zeroizing<[u8; 32]>,
    /// CA certificate, DER.
    pub ca_certificate: Option<Vec<u8>>,
    /// Provider public key.
    pub provider_public_key: Option<Vec<u8>>,
}

/// Everything the module keeps across restarts.
#[derive(Clone, Serialize, Deserialize)]
pub struct NvmImage {
    /// Format version.
    pub version: u32,
    /// Persistent State.
    pub persistent_state: ModuleState,
    /// Module ID, set by Start Initialization.
    pub module_id: [u8; 16],
    /// Module clock offset from the host clock, seconds.
    pub clock_offset: i64,
    /// The access control database.
    pub users: Vec<UserRecord>,
    /// Audit chain state (absent before Start Initialization).
    pub audit: Option<AuditState>,
    /// Active MKS.
    pub mks_active: Option<Mks>,
    /// Dormant MKS.
    pub mks_dormant: Option<Mks>,
    /// Transport private key.
    pub transport_key: Option<Zeroizing<[u8; 32]>>,
    /// Crypto-card keys.
    pub crypto_card: Option<CryptoCard>,
    /// Why the module is in Error (persisted for fatal errors).
    pub error: Option<String>,
    /// The most recent PSD transactions' checkpoints, oldest first (at most
    /// `checkpoint::CHECKPOINTS_KEPT`).
    pub checkpoints: Vec<crate::checkpoint::Checkpoint>,
    /// The last checkpoint sequence number given out; never decreases (a
    /// recovered rollback does not reuse numbers).
    pub checkpoint_counter: u64,
    /// The newest checkpoint number at which this module changed each
    /// meter it served recently (at most `checkpoint::RECENT_METERS_KEPT`):
    /// a package it stamped earlier for one of these is stale.
    pub recent_meters: std::collections::BTreeMap<crate::psd::DeviceId, u64>,
    /// Checkpoint numbers (inclusive ranges) whose transactions a recovered
    /// rollback discarded: packages stamped with them are refused.
    pub discarded: Vec<(u64, u64)>,
    /// Why PSD processing is inhibited (a failed Auto-Recover Checkpoint),
    /// until a Security Officer runs Accept Checkpoint.
    pub psd_inhibited: Option<String>,
}

impl NvmImage {
    /// The empty NVM of an Uninitialized module.
    pub fn empty() -> Self {
        Self {
            version: NVM_VERSION,
            persistent_state: ModuleState::Uninitialized,
            module_id: [0; 16],
            clock_offset: 0,
            users: Vec::new(),
            audit: None,
            mks_active: None,
            mks_dormant: None,
            transport_key: None,
            crypto_card: None,
            error: None,
            checkpoints: Vec::new(),
            checkpoint_counter: 0,
            recent_meters: Default::default(),
            discarded: Vec::new(),
            psd_inhibited: None,
        }
    }
}

/// Why the NVM could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NvmError {
    /// File system error.
    #[error("NVM file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file did not unseal: corrupted, truncated, swapped, or another seal key.
    #[error(
        "NVM file {0} is corrupted, truncated or not this module's (it does not unseal); the module will not use it"
    )]
    Unseal(PathBuf),
    /// The plaintext did not decode.
    #[error("NVM file {0} unsealed but its contents are malformed")]
    Decode(PathBuf),
    /// Sealing failed.
    #[error("sealing the NVM failed: {0}")]
    Seal(String),
    /// A simulated crash (tests only).
    #[error("simulated power loss at {0:?}")]
    Crash(CrashPoint),
}

/// Reads and writes the sealed NVM file.
pub struct NvmStore {
    dir: PathBuf,
    seal: Box<dyn SealProvider>,
}

impl NvmStore {
    /// A store for the module directory `dir`.
    pub fn new(dir: &Path, seal: Box<dyn SealProvider>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            seal,
        }
    }

    /// The seal provider's description.
    pub fn describe_seal(&self) -> String {
        self.seal.describe()
    }

    fn path(&self) -> PathBuf {
        self.dir.join(NVM_FILE)
    }

    /// Loads the NVM; `Ok(None)` when there is none yet (a new module).
    pub fn load(&self) -> Result<Option<NvmImage>, NvmError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(NvmError::Io { path, source }),
        };
        let plain = self
            .seal
            .unseal(NVM_AAD, &bytes)
            .map_err(|_| NvmError::Unseal(path.clone()))?;
        let image: NvmImage = postcard::from_bytes(plain.expose_secret())
            .map_err(|_| NvmError::Decode(path.clone()))?;
        if image.version != NVM_VERSION {
            return Err(NvmError::Decode(path));
        }
        Ok(Some(image))
    }

    /// Writes the NVM atomically. `crash` simulates a power loss at a point of the write.
    pub fn store(&self, image: &NvmImage, crash: Option<CrashPoint>) -> Result<(), NvmError> {
        // Sized exactly: a growing buffer would leave stray copies of the
        // plaintext NVM (keys included) in freed memory, and copy it around.
        let plain = Zeroizing::new(
            crate::try_to_vec_exact(image).map_err(|e| NvmError::Seal(e.to_string()))?,
        );
        let sealed = self
            .seal
            .seal(NVM_AAD, &plain)
            .map_err(|e| NvmError::Seal(e.to_string()))?;
        let tmp = self.dir.join(NVM_TMP);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| NvmError::Io { path, source }
        };
        {
            let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&sealed).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        if crash == Some(CrashPoint::AfterTempWrite) {
            return Err(NvmError::Crash(CrashPoint::AfterTempWrite));
        }
        let path = self.path();
        fs::rename(&tmp, &path).map_err(io(&path))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }
}
