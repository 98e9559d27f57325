//! The web server's TLS: rustls with the aws-lc-rs provider, TLS 1.3 and
//! 1.2 only, ALPN `h2` and `http/1.1`.
//!
//! With no certificate configured, the first start makes a self-signed one
//! (ECDSA P-256, for `localhost` and `127.0.0.1`) in `DATA/tls/cert.pem`
//! with its key in `DATA/tls/key.pem` (mode 0600), and later starts reuse
//! them, so the fingerprint clients pinned stays the same. This key is the
//! web server's own transport key, not a meter or module key: it is made and
//! used by rcgen and rustls (both on aws-lc-rs) here, the one exception to
//! "only postvault-crypto touches key bytes", and it never protects postage.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ServerConfig;
use crate::error::{Result, ServerError};

/// A ready TLS configuration and the SHA-256 fingerprint of its leaf
/// certificate.
pub(crate) struct Tls {
    pub(crate) config: Arc<rustls::ServerConfig>,
    pub(crate) fingerprint: String,
}

/// The default certificate and key paths in a data directory.
pub(crate) fn default_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Loads the configured certificate, or the self-signed one of the data
/// directory (making it on first start).
pub(crate) fn load_or_create(config: &ServerConfig) -> Result<Tls> {
    let (cert, key) = match &config.tls {
        Some(files) => (files.cert.clone(), files.key.clone()),
        None => {
            let (cert, key) = default_paths(&config.data_dir);
            match (cert.exists(), key.exists()) {
                (true, true) => {}
                (false, false) => create_self_signed(&cert, &key)?,
                _ => {
                    return Err(ServerError::Tls(format!(
                        "{} has only one of cert.pem and key.pem: restore the other, or delete both to make a new certificate (clients that pinned the old one must then pin the new one)",
                        cert.parent().unwrap_or(Path::new(".")).display()
                    )));
                }
            }
            (cert, key)
        }
    };
    load(&cert, &key)
}

fn create_self_signed(cert_path: &Path, key_path: &Path) -> Result<()> {
    let dir = cert_path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(ServerError::io(dir))?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| ServerError::Tls(format!("making the key: {e}")))?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| ServerError::Tls(format!("certificate names: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "postvault server (self-signed)");
    let cert = params
        .self_signed(&key)
        .map_err(|e| ServerError::Tls(format!("signing the certificate: {e}")))?;
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    // The key first: a certificate without its key is the state to avoid.
    write_new(key_path, key_pem.as_bytes(), 0o600)?;
    write_new(cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// Writes a file that must not exist yet, with `mode`, and syncs it.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(ServerError::io(path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(ServerError::io(path))
}

fn load(cert_path: &Path, key_path: &Path) -> Result<Tls> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<std::result::Result<_, _>>())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert_path.display())))?;
    let Some(leaf) = certs.first() else {
        return Err(ServerError::Tls(format!(
            "{}: no certificate in it",
            cert_path.display()
        )));
    };
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ServerError::Tls(format!(
                "{} and {}: {e}",
                cert_path.display(),
                key_path.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        fingerprint,
    })
}

/// The SHA-256 fingerprint of a DER certificate as `openssl x509
/// -fingerprint -sha256` prints it: upper-case hex pairs joined by colons.
pub fn fingerprint(der: &[u8]) -> String {
    postvault_crypto::hash::sha256(&[der])
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
