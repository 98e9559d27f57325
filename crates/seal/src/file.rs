//! The key-file seal provider: a 32-byte AES-256 key in a file with mode
//! 0600, for development and tests. Sealing is AES-256-GCM through
//! postvault-crypto.
//!
//! The key file holds exactly 32 raw bytes. It is created with `create_new`
//! (never overwriting an existing key) and mode 0600, and is refused when it
//! has the wrong length or any group/other permission bit.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use postvault_crypto::rng::Rng;
use postvault_crypto::{CryptoError, Faults, SecretBytes, SecretKey32, aead};
use zeroize::Zeroizing;

use crate::format::{self, HEADER_LEN};
use crate::{ProviderKind, SealError, SealProvider, UnsealReason};

/// Length of the raw key in the key file.
const KEY_LEN: usize = 32;

/// Seals under a key read from (or created in) a file.
pub(crate) struct FileProvider {
    path: PathBuf,
    key: SecretKey32,
    rng: Mutex<Rng>,
}

impl FileProvider {
    /// Loads the key at `path`; creates it first when missing and `create_key`.
    pub(crate) fn open(path: &Path, create_key: bool) -> Result<Self, SealError> {
        let mut rng = Rng::new(Faults::none());
        let key = match OpenOptions::new().read(true).open(path) {
            Ok(file) => load(path, file)?,
            Err(e) if e.kind() == ErrorKind::NotFound && create_key => create(path, &mut rng)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(SealError::KeyFileMissing {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(SealError::Io {
                    action: format!(
                        "cannot open seal key file {} (check that this user may read it)",
                        path.display()
                    ),
                    source,
                });
            }
        };
        Ok(Self {
            path: path.to_owned(),
            key,
            rng: Mutex::new(rng),
        })
    }
}

/// Reads and checks an existing key file.
fn load(path: &Path, mut file: File) -> Result<SecretKey32, SealError> {
    let meta = file.metadata().map_err(|source| SealError::Io {
        action: format!("cannot inspect seal key file {}", path.display()),
        source,
    })?;
    if !meta.is_file() {
        return Err(SealError::KeyFileNotRegular {
            path: path.to_owned(),
        });
    }
    check_permissions(path, &meta)?;
    if meta.len() != KEY_LEN as u64 {
        return Err(SealError::KeyFileLength {
            path: path.to_owned(),
            len: meta.len(),
        });
    }
    // Read one byte more than needed so a file that grew since the stat is caught.
    let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
    (&mut file)
        .take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| SealError::Io {
            action: format!("cannot read seal key file {}", path.display()),
            source,
        })?;
    SecretKey32::from_slice(&bytes).map_err(|_| SealError::KeyFileLength {
        path: path.to_owned(),
        len: bytes.len() as u64,
    })
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &std::fs::Metadata) -> Result<(), SealError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SealError::KeyFilePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), SealError> {
    Ok(())
}

/// Creates a new key file with a fresh random key; if another process
/// created it first, loads that one instead.
fn create(path: &Path, rng: &mut Rng) -> Result<SecretKey32, SealError> {
    let key = rng.key32().map_err(|source| SealError::Crypto { source })?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let file = File::open(path).map_err(|source| SealError::Io {
                action: format!("cannot open seal key file {}", path.display()),
                source,
            })?;
            return load(path, file);
        }
        Err(source) => {
            return Err(SealError::Io {
                action: format!(
                    "cannot create seal key file {} (check that its directory exists and this user may write to it)",
                    path.display()
                ),
                source,
            });
        }
    };
    let written = file
        .write_all(key.expose_secret())
        .and_then(|()| file.sync_all())
        .and_then(|()| sync_parent(path));
    if let Err(source) = written {
        drop(file);
        // Leave no partial key behind; nothing has been sealed with it yet.
        let _ = std::fs::remove_file(path);
        return Err(SealError::Io {
            action: format!(
                "cannot write seal key file {} (check free space, then retry)",
                path.display()
            ),
            source,
        });
    }
    Ok(key)
}

/// Makes the new directory entry durable before anything is sealed under the key.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl SealProvider for FileProvider {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let header = format::header(ProviderKind::File);
        let full_aad = format::full_aad(&header, aad);
        // Header, then nonce || ciphertext || tag sealed straight after it
        // (the NVM runs to hundreds of kilobytes: one copy, not two).
        let mut out =
            Vec::with_capacity(HEADER_LEN + aead::NONCE_LEN + plaintext.len() + aead::TAG_LEN);
        out.extend_from_slice(&header);
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        aead::seal_append(&mut rng, &self.key, &full_aad, plaintext, &mut out)
            .map_err(|source| SealError::Crypto { source })?;
        Ok(out)
    }

    fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, SealError> {
        let (header, body) = format::split(sealed, ProviderKind::File, &self.describe())?;
        let full_aad = format::full_aad(header, aad);
        aead::open(&self.key, &full_aad, body).map_err(|e| match e {
            CryptoError::Decrypt => SealError::Unseal {
                provider: self.describe(),
                reason: UnsealReason::Authentication,
            },
            source => SealError::Crypto { source },
        })
    }
}
