//! The provider's key as the server sees it.
//!
//! In production the provider (seed 002: the party that takes the
//! customer's money and signs Authorize Customer, Download and Refund
//! messages) keeps its key elsewhere and runs `postvault provider ...`;
//! the server is given only its public key (`provider_public_key` in the
//! configuration) and passes the signed messages to the modules.
//!
//! For development and the demo, a server without `provider_public_key`
//! makes a provider key on its first start, in a passphrase-protected key
//! file `DATA/provider/provider.key` whose passphrase is in
//! `DATA/provider/passphrase.txt` (both mode 0600), and signs customers'
//! purchases and refunds itself. The key is loaded by the crypto crate,
//! which is the only one that sees its bytes.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use postvault_crypto::Faults;
use postvault_crypto::ecdsa::{EcdsaP256KeyPair, public_key_from_pem};
use postvault_crypto::password::Argon2Params;
use postvault_crypto::rng::Rng;
use zeroize::Zeroizing;

use crate::error::{Result, ServerError};

/// The development provider's key file, inside the data directory.
pub const PROVIDER_KEY_FILE: &str = "provider/provider.key";
/// Its passphrase.
pub const PROVIDER_PASSPHRASE_FILE: &str = "provider/passphrase.txt";

/// The provider key the server uses: the public key for the modules'
/// crypto card, and the key pair when this server is the development
/// provider.
pub(crate) struct ProviderKey {
    pub(crate) public_key: Vec<u8>,
    pub(crate) pair: Option<EcdsaP256KeyPair>,
    /// Where the development key is, when it was made now.
    pub(crate) created: Option<PathBuf>,
}

/// Loads the configured public key, or loads (making it on the first
/// start) the development provider key in `data_dir`.
pub(crate) fn load(
    data_dir: &Path,
    configured: Option<&Path>,
    rng: &mut Rng,
) -> Result<ProviderKey> {
    if let Some(path) = configured {
        let pem = std::fs::read_to_string(path).map_err(ServerError::io(path))?;
        let public_key = public_key_from_pem(&pem).map_err(|e| {
            ServerError::Config(format!(
                "provider_public_key {}: {e} (give the PEM that `postvault provider keygen` printed)",
                path.display()
            ))
        })?;
        return Ok(ProviderKey {
            public_key: public_key.to_vec(),
            pair: None,
            created: None,
        });
    }
    let key_path = data_dir.join(PROVIDER_KEY_FILE);
    let pass_path = data_dir.join(PROVIDER_PASSPHRASE_FILE);
    if key_path.exists() {
        let text = std::fs::read_to_string(&key_path).map_err(ServerError::io(&key_path))?;
        let pass = Zeroizing::new(
            std::fs::read_to_string(&pass_path).map_err(ServerError::io(&pass_path))?,
        );
        let pair =
            EcdsaP256KeyPair::from_keyfile(pass.trim_end().as_bytes(), &text).map_err(|e| {
                ServerError::Config(format!(
                    "the development provider key {}: {e}",
                    key_path.display()
                ))
            })?;
        return Ok(ProviderKey {
            public_key: pair.public_key().to_vec(),
            pair: Some(pair),
            created: None,
        });
    }
    let pair = EcdsaP256KeyPair::generate(&Faults::none())?;
    let pass = Zeroizing::new(hex::encode(rng.array::<24>()?));
    let text = pair.to_keyfile(rng, pass.as_bytes(), Argon2Params::DEFAULT)?;
    let dir = data_dir.join("provider");
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(ServerError::io(&dir))?;
    }
    write_private(&pass_path, format!("{}\n", pass.as_str()).as_bytes())?;
    write_private(&key_path, text.as_bytes())?;
    Ok(ProviderKey {
        public_key: pair.public_key().to_vec(),
        pair: Some(pair),
        created: Some(key_path),
    })
}

/// Writes a new file readable by its owner only, and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(ServerError::io(path))?;
    f.write_all(bytes).map_err(ServerError::io(path))?;
    f.sync_all().map_err(ServerError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_key_is_made_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng::new(Faults::none());
        let first = load(dir.path(), None, &mut rng).unwrap();
        assert!(first.created.is_some());
        let again = load(dir.path(), None, &mut rng).unwrap();
        assert!(again.created.is_none());
        assert_eq!(first.public_key, again.public_key);
        let msg = b"download";
        let sig = again.pair.unwrap().sign(msg).unwrap();
        assert!(postvault_crypto::ecdsa::verify(
            &first.public_key,
            msg,
            &sig
        ));
        use std::os::unix::fs::PermissionsExt as _;
        for f in [PROVIDER_KEY_FILE, PROVIDER_PASSPHRASE_FILE] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        // A wrong passphrase is a clear error, not a panic.
        std::fs::write(dir.path().join(PROVIDER_PASSPHRASE_FILE), "wrong\n").unwrap();
        let e = load(dir.path(), None, &mut rng).err().unwrap();
        assert!(e.to_string().contains("provider key"), "{e}");
    }
}
