//! The module's persistent memory ("NVM"): one sealed file in the module's
//! directory, written atomically (temporary file, fsync, rename, fsync of the
//! directory) and sealed under the seal provider's key. A corrupted,
//! truncated or swapped file is refused, never repaired or reset.
//!
//! The steady-state write (a Create Indicia batch, hundreds of times a
//! second) reuses the temporary file instead of making a new one: the image
//! is written over the old temporary file's blocks, synced with
//! `fdatasync`, and swapped with the NVM file by one atomic rename
//! (`RENAME_EXCHANGE`), so the temporary file then holds the previous image.
//! On this VM's disk that is about 0.3 ms a write instead of 0.47 (a new
//! file must have its blocks allocated and its inode written). To keep the
//! file's size, and so its metadata, unchanged from write to write, the
//! sealed plaintext is padded with zeros to a multiple of [`NVM_PAD`] bytes
//! (and reading checks that the padding is zeros).
//!
//! Such a write, when its image is further along the audit chain than the
//! one it swaps out (every audited command), does not wait for the
//! directory sync either: a thread of the store runs it while the module
//! answers and goes on, and the next write waits for it before it writes
//! over the temporary file. The new image is durable before the reply all
//! the same: it was synced in the file written over, whose name was
//! durable already. If power fails before the rename reaches the disk, the
//! NVM file's name still holds the image before it and the temporary
//! file's name the new one; [`NvmStore::load`] then finds the later image
//! of the same NVM under the temporary name (same keys and accounts,
//! further along the audit chain) and renames it into place. Any other
//! content of the temporary file is ignored, and the NVM file itself must
//! always be whole.
//!
//! The previous image left in the temporary file has its head overwritten
//! once the exchange is durable (by the same thread, after the directory
//! sync, when that is deferred), so it no longer unseals (moving it back is
//! no rollback). Even so it holds the same keys and operator accounts as
//! the current one, never more: a write whose keys or
//! accounts differ from the last one's (a new or deleted master key set, a
//! Zeroize, a Reset, new crypto-card keys, a changed password, a logon
//! counted) makes a new temporary file and renames it over the NVM, so the
//! older image is gone as before. Either way the rename goes by name, so
//! before it the write checks that the temporary file's name still holds
//! the file it wrote (an exchange would swap in even a directory).
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use postvault_seal::SealProvider;

use crate::access::UserRecord;
use crate::keys::Mks;
use crate::types::ModuleState;
use crate::worker::Worker;

/// File name of the sealed NVM inside the module directory.
pub const NVM_FILE: &str = "nvm.sealed";
const NVM_TMP: &str = "nvm.sealed.tmp";
const NVM_AAD: &[u8] = b"postvault module NVM v1";
const NVM_VERSION: u32 = 2;

/// The sealed plaintext is padded with zeros to a multiple of this many
/// bytes, so that images of slightly different lengths make files of the
/// same length (see the module documentation).
pub const NVM_PAD: usize = 16 * 1024;

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
    /// What the last write or read left behind (see [`WriteState`]).
    state: Mutex<WriteState>,
}

/// What [`NvmStore`] knows about the files between two writes.
#[derive(Default)]
struct WriteState {
    /// Fingerprint of the keys and accounts in the NVM file as last
    /// written or read ([`key_fingerprint`]); `None` when unknown (nothing read yet,
    /// or the last write failed).
    keys: Option<[u8; 32]>,
    /// The seal provider's overhead (sealed length minus plaintext length),
    /// learnt from the last seal.
    overhead: Option<usize>,
    /// The file system refused `RENAME_EXCHANGE`: always make a new
    /// temporary file.
    no_exchange: bool,
    /// The audit chain's next sequence number in the NVM file as last
    /// written or read (`None` when unknown, or when it has no chain).
    seq: Option<u64>,
    /// Runs a steady write's directory sync, and then the overwrite of the
    /// previous image's head, while the module goes on (started at the
    /// first such write; see [`NvmStore::store`]).
    background: Option<Worker>,
}

/// SHA-256 over the key material an image holds (master key sets,
/// transport key, crypto-card keys, audit signing key) and its operator
/// accounts (password hashes among them): two images with the same
/// fingerprint hold the same keys and accounts. The encoding is wiped after
/// use.
fn key_fingerprint(image: &NvmImage) -> Result<[u8; 32], NvmError> {
    let keys = (
        &image.users,
        &image.mks_active,
        &image.mks_dormant,
        &image.transport_key,
        &image.crypto_card,
        image.audit.as_ref().map(|a| &a.signing_key),
    );
    let bytes =
        Zeroizing::new(crate::try_to_vec_exact(&keys).map_err(|e| NvmError::Seal(e.to_string()))?);
    Ok(postvault_crypto::hash::sha256(&[&bytes]))
}

/// The plaintext length for an image of `needed` bytes: the next multiple
/// of [`NVM_PAD`], or `reuse` (the plaintext length the temporary file
/// already has room for) when that is at least as long and not more than
/// twice as long, so that a write does not change the file's length just
/// because the image shrank a little.
fn padded_len(needed: usize, reuse: Option<usize>) -> usize {
    let bucket = needed.div_ceil(NVM_PAD).max(1) * NVM_PAD;
    match reuse {
        Some(r) if r >= bucket && r <= 2 * bucket => r,
        _ => bucket,
    }
}

impl NvmStore {
    /// A store for the module directory `dir`.
    pub fn new(dir: &Path, seal: Box<dyn SealProvider>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            seal,
            state: Mutex::new(WriteState::default()),
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
    ///
    /// A steady write does not wait for its directory sync (see
    /// [`Self::store`]), so after a power loss the NVM file's name may
    /// still hold the image before the last one, and the temporary file
    /// the last one. When the temporary file unseals, holds the same keys
    /// and accounts, and is further along the audit chain, it is that last
    /// image: it is renamed over the NVM file (and the directory synced)
    /// and read. Anything else in the temporary file is left alone. The
    /// NVM file itself must always be whole: one that does not unseal or
    /// decode is an error, whatever the temporary file holds.
    pub fn load(&self) -> Result<Option<NvmImage>, NvmError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(NvmError::Io { path, source }),
        };
        let mut image = self.decode(&path, &bytes)?;
        let mut keys = key_fingerprint(&image)?;
        let tmp = self.dir.join(NVM_TMP);
        if let Some(newer) = self.newer_image_in(&tmp, &image, &keys) {
            fs::rename(&tmp, &path).map_err(|source| NvmError::Io {
                path: path.clone(),
                source,
            })?;
            image = newer;
            keys = key_fingerprint(&image)?;
        }
        // Whatever a process before this one left unsynced (a deferred
        // directory sync it did not live to see, the rename just made) is
        // durable before the first write goes over the temporary file.
        sync_dir(&self.dir).map_err(|source| NvmError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.keys = Some(keys);
        state.seq = image.audit.as_ref().map(|a| a.next_seq);
        Ok(Some(image))
    }

    /// Unseals and decodes the file `path` read as `bytes`.
    fn decode(&self, path: &Path, bytes: &[u8]) -> Result<NvmImage, NvmError> {
        let plain = self
            .seal
            .unseal(NVM_AAD, bytes)
            .map_err(|_| NvmError::Unseal(path.to_path_buf()))?;
        let (image, padding): (NvmImage, &[u8]) = postcard::take_from_bytes(plain.expose_secret())
            .map_err(|_| NvmError::Decode(path.to_path_buf()))?;
        if image.version != NVM_VERSION || padding.iter().any(|&b| b != 0) {
            return Err(NvmError::Decode(path.to_path_buf()));
        }
        Ok(image)
    }

    /// The image in `tmp` when it is a later write of `current`: it unseals
    /// and decodes, belongs to the same module, holds the keys and accounts
    /// fingerprinted `keys`, and its audit chain is further along.
    fn newer_image_in(&self, tmp: &Path, current: &NvmImage, keys: &[u8; 32]) -> Option<NvmImage> {
        let current_seq = current.audit.as_ref()?.next_seq;
        let bytes = fs::read(tmp).ok()?;
        let image = self.decode(tmp, &bytes).ok()?;
        let later = image.module_id == current.module_id
            && image.audit.as_ref()?.next_seq > current_seq
            && key_fingerprint(&image).ok()? == *keys;
        later.then_some(image)
    }

    /// Writes the NVM atomically. `crash` simulates a power loss at a point of the write.
    pub fn store(&self, image: &NvmImage, crash: Option<CrashPoint>) -> Result<(), NvmError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let keys = key_fingerprint(image)?;
        // Whatever happens below, the files are in a state this write did
        // not choose until it succeeds.
        let same_keys = state.keys.take() == Some(keys);
        let last_seq = state.seq.take();
        let tmp = self.dir.join(NVM_TMP);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| NvmError::Io { path, source }
        };
        // The last write's directory sync must be done before the temporary
        // file is written over: until then the file system may still have
        // the NVM file's name on the image before it.
        if let Some(worker) = state.background.as_mut() {
            worker.wait().map_err(|e| NvmError::Io {
                path: self.dir.clone(),
                source: std::io::Error::new(
                    e.kind(),
                    format!("the directory sync after the last NVM write failed: {e}"),
                ),
            })?;
        }
        // The temporary file to write over: only when it exists and holds
        // (at most) the keys this image holds.
        // With its length, which the image is padded to keep.
        let reuse = if same_keys && !state.no_exchange {
            match fs::OpenOptions::new().write(true).open(&tmp) {
                Ok(f) => {
                    let len = f.metadata().map_err(io(&tmp))?.len();
                    Some((f, len))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => return Err(NvmError::Io { path: tmp, source }),
            }
        } else {
            None
        };
        let room = reuse
            .as_ref()
            .zip(state.overhead)
            .and_then(|((_, len), overhead)| usize::try_from(*len).ok()?.checked_sub(overhead));
        // Sized exactly: a growing buffer would leave stray copies of the
        // plaintext NVM (keys included) in freed memory, and copy it around.
        let needed = postcard::experimental::serialized_size(image)
            .map_err(|e| NvmError::Seal(e.to_string()))?;
        let plain_len = padded_len(needed, room);
        let mut plain = Zeroizing::new(Vec::with_capacity(plain_len));
        postcard::to_io(image, &mut *plain).map_err(|e| NvmError::Seal(e.to_string()))?;
        plain.resize(plain_len, 0);
        let sealed = self
            .seal
            .seal(NVM_AAD, &plain)
            .map_err(|e| NvmError::Seal(e.to_string()))?;
        state.overhead = sealed.len().checked_sub(plain.len());
        drop(plain);
        let path = self.path();
        let reused = reuse.is_some();
        let written = match reuse {
            Some((f, len)) => {
                (&f).write_all(&sealed).map_err(io(&tmp))?;
                // Writing from the start made it at least this long.
                if len > sealed.len() as u64 {
                    f.set_len(sealed.len() as u64).map_err(io(&tmp))?;
                }
                f.sync_data().map_err(io(&tmp))?;
                f
            }
            None => {
                let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
                f.write_all(&sealed).map_err(io(&tmp))?;
                f.sync_all().map_err(io(&tmp))?;
                f
            }
        };
        if crash == Some(CrashPoint::AfterTempWrite) {
            return Err(NvmError::Crash(CrashPoint::AfterTempWrite));
        }
        // The rename goes by name: make sure the name is still the file just
        // written (the exchange would swap in even a directory put there).
        same_file(&written, &tmp).map_err(io(&tmp))?;
        drop(written);
        // With the same keys the previous image may stay behind in the
        // temporary file, to be written over next time; otherwise it goes.
        let swapped = same_keys
            && !state.no_exchange
            && match exchange(&tmp, &path) {
                Ok(()) => true,
                Err(e) if exchange_unsupported(&e) => {
                    state.no_exchange = true;
                    false
                }
                // No NVM file yet: nothing to exchange with.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(source) => return Err(NvmError::Io { path, source }),
            };
        if !swapped {
            fs::rename(&tmp, &path).map_err(io(&path))?;
        }
        let seq = image.audit.as_ref().map(|a| a.next_seq);
        // Once the exchange is durable, the previous image in the temporary
        // file is garbage. Its head is overwritten so that it no longer
        // unseals, and moving it back is no rollback (not synced: a power
        // loss may keep it, as an old copy would).
        let mut leftover = if swapped {
            Some(
                fs::OpenOptions::new()
                    .write(true)
                    .open(&tmp)
                    .map_err(io(&tmp))?,
            )
        } else {
            None
        };
        // A steady write whose image is further along the audit chain than
        // the one it swapped out need not wait for the directory sync: the
        // image is durable in the file written over (whose name was durable
        // already), and until the sync is done [`Self::load`] finds it under
        // either name. The next write waits for it.
        let further = matches!((seq, last_seq), (Some(seq), Some(last)) if seq > last);
        if swapped
            && reused
            && further
            && let Some(worker) = self.background(&mut state)
            && let Some(file) = leftover.take()
        {
            let dir = fs::File::open(&self.dir).map_err(io(&self.dir))?;
            let (dir_path, tmp_path) = (self.dir.clone(), tmp.clone());
            worker
                .submit(Box::new(move || {
                    dir.sync_all().map_err(|e| named(&dir_path, e))?;
                    scrub_head(&file).map_err(|e| named(&tmp_path, e))
                }))
                .map_err(io(&self.dir))?;
        } else {
            sync_dir(&self.dir).map_err(io(&self.dir))?;
            if let Some(file) = leftover {
                scrub_head(&file).map_err(io(&tmp))?;
            }
        }
        state.keys = Some(keys);
        state.seq = seq;
        Ok(())
    }

    /// The thread for deferred directory syncs, started on first use;
    /// `None` if it cannot be started (the write then syncs inline).
    fn background<'a>(&self, state: &'a mut WriteState) -> Option<&'a mut Worker> {
        if state.background.is_none() {
            state.background = Worker::start("postvault-nvm-sync").ok();
        }
        state.background.as_mut()
    }
}

/// How much of the previous image [`scrub_head`] overwrites: its header,
/// nonce and the start of its ciphertext.
const SCRUB_LEN: usize = 4096;

/// Overwrites the first [`SCRUB_LEN`] bytes of `f` with zeros.
fn scrub_head(f: &fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = usize::try_from(f.metadata()?.len()).unwrap_or(usize::MAX);
    f.write_all_at(&[0; SCRUB_LEN][..len.min(SCRUB_LEN)], 0)
}

/// Makes the directory's entries (a rename in it) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// `e`, saying which file it is about.
fn named(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Fails unless `path` names the open file `file` (same device and inode).
fn same_file(file: &fs::File, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (ours, named) = (file.metadata()?, fs::symlink_metadata(path)?);
    if ours.dev() == named.dev() && ours.ino() == named.ino() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            "the temporary file was replaced while the NVM was being written; \
             nothing in the module directory may be changed while the module runs",
        ))
    }
}

/// Swaps `tmp` and `path` atomically (`renameat2` with `RENAME_EXCHANGE`).
#[cfg(target_os = "linux")]
fn exchange(tmp: &Path, path: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, tmp, CWD, path, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

/// Without `RENAME_EXCHANGE` every write makes a new temporary file.
#[cfg(not(target_os = "linux"))]
fn exchange(_tmp: &Path, _path: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// The file system (or the kernel) cannot exchange two names atomically.
fn exchange_unsupported(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Unsupported
        || matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::INVAL.raw_os_error() || code == rustix::io::Errno::NOSYS.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_file_tells_a_replaced_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(NVM_TMP);
        let written = fs::File::create(&tmp).unwrap();
        same_file(&written, &tmp).unwrap();
        // Replaced by another file, then by a directory: refused.
        fs::remove_file(&tmp).unwrap();
        fs::write(&tmp, b"other").unwrap();
        let err = same_file(&written, &tmp).unwrap_err();
        assert!(err.to_string().contains("was replaced"), "{err}");
        fs::remove_file(&tmp).unwrap();
        fs::create_dir(&tmp).unwrap();
        assert!(same_file(&written, &tmp).is_err());
    }
}
