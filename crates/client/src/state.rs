//! The client's state directory (`--state DIR`, `POSTVAULT_CLIENT_DIR`,
//! default `$HOME/.postvault/client`), mode 0700, every file 0600:
//!
//! - `client.json`: the server URL, how its certificate is trusted
//!   (fingerprint or CA file), the login and the current session token;
//! - `meters/DEVICE_ID.json`: one per registered meter: its device ID, the
//!   account and PSD user, licensing ZIP, the PSD and CA certificates, and
//!   the meter's HMAC key in a key file ([`postvault_crypto::keyfile`])
//!   sealed under the account password, purpose
//!   `postvault meter key DEVICE_ID`.
//!
//! Files are written whole (temporary file, fsync, rename), so a crash
//! leaves the old or the new file, never half of one.
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use postvault_crypto::keyfile;
use postvault_crypto::password::Argon2Params;
use postvault_crypto::rng::Rng;
use postvault_module::psd::DeviceId;
use serde::{Deserialize, Serialize};

use crate::customer::{HmacKey, hmac_key_from};
use crate::{ClientError, Result, Trust};

/// The environment variable naming the state directory.
pub const STATE_ENV: &str = "POSTVAULT_CLIENT_DIR";

/// The key file purpose of a meter's HMAC key.
pub fn meter_key_purpose(device: &DeviceId) -> String {
    format!("postvault meter key {device}")
}

/// `$HOME/.postvault/client`.
pub fn default_dir() -> Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".postvault/client")),
        _ => Err(ClientError::State(format!(
            "HOME is not set, so there is no default state directory: give --state DIR or set {STATE_ENV}"
        ))),
    }
}

/// `client.json`. Its `Debug` hides the token.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientConfig {
    /// The server, `https://HOST:PORT`.
    pub url: String,
    /// The pinned certificate fingerprint, when pinning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The CA file, when verifying against a CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The account.
    pub login: String,
    /// The current session's bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("fingerprint", &self.fingerprint)
            .field("ca_file", &self.ca_file)
            .field("login", &self.login)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientConfig {
    /// How the server's certificate is trusted.
    pub fn trust(&self) -> Result<Trust> {
        match (&self.fingerprint, &self.ca_file) {
            (Some(fp), None) => Ok(Trust::Fingerprint(fp.clone())),
            (None, Some(ca)) => Ok(Trust::CaFile(ca.clone())),
            _ => Err(ClientError::State(
                "client.json must name exactly one of fingerprint and ca_file: run `postvault client logon` with --fingerprint or --cacert".into(),
            )),
        }
    }
}

/// `meters/DEVICE_ID.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MeterFile {
    /// The device ID as the server names it (used in its URLs).
    pub device_id: String,
    /// The account that registered it.
    pub login: String,
    /// The PSD user ID.
    pub user_id: String,
    /// ZIP5 * 10000 + plus-4.
    pub licensing_zip: u32,
    /// The PSD certificate (PEM), as the registration answer gave it.
    pub certificate_pem: String,
    /// The CA certificate (PEM) from the deployment at registration.
    pub ca_certificate_pem: String,
    /// The HMAC key in a key file sealed under the account password.
    pub hmac_key: String,
}

impl MeterFile {
    /// The device ID, parsed.
    pub fn device(&self) -> Result<DeviceId> {
        crate::customer::parse_device(&self.device_id)
    }

    /// Opens the HMAC key with the account password.
    pub fn open_key(&self, password: &str) -> Result<HmacKey> {
        let device = self.device()?;
        let secret = keyfile::open(password.as_bytes(), &meter_key_purpose(&device), &self.hmac_key)
            .map_err(|e| {
                ClientError::State(format!(
                    "cannot open the key of meter {device}: {e}; give the password of account {} as it was when the meter was registered",
                    self.login
                ))
            })?;
        hmac_key_from(&secret)
    }

    /// Seals `key` under `password` into [`MeterFile::hmac_key`].
    pub fn seal_key(
        rng: &mut Rng,
        device: &DeviceId,
        key: &HmacKey,
        password: &str,
        params: Argon2Params,
    ) -> Result<String> {
        Ok(keyfile::seal(
            rng,
            password.as_bytes(),
            &meter_key_purpose(device),
            &key[..],
            params,
        )?)
    }
}

/// An opened state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> ClientError {
    ClientError::State(format!("cannot {what} {}: {e}", path.display()))
}

fn make_private_dir(path: &Path) -> Result<()> {
    if !path.exists() {
        fs::create_dir_all(path).map_err(|e| io("create the directory", path, e))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| io("set mode 0700 on", path, e))
}

impl StateDir {
    /// Opens (creating it with mode 0700 if needed) the state directory at
    /// `path`, or the default one.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let root = match path {
            Some(p) => p.to_path_buf(),
            None => default_dir()?,
        };
        make_private_dir(&root)?;
        make_private_dir(&root.join("meters"))?;
        Ok(Self { root })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn config_path(&self) -> PathBuf {
        self.root.join("client.json")
    }

    fn meter_path(&self, device: &DeviceId) -> PathBuf {
        self.root.join("meters").join(format!("{device}.json"))
    }

    /// `client.json`, if there is one.
    pub fn load_config(&self) -> Result<Option<ClientConfig>> {
        let path = self.config_path();
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                ClientError::State(format!(
                    "{} is not a client configuration ({e}); remove it and run `postvault client logon --url ...`",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path, e)),
        }
    }

    /// `client.json`, which must exist.
    pub fn config(&self) -> Result<ClientConfig> {
        self.load_config()?.ok_or_else(|| {
            ClientError::State(format!(
                "no client configuration in {}: run `postvault client signup` (new account) or `postvault client logon --url URL --fingerprint FP --login L` first",
                self.root.display()
            ))
        })
    }

    /// Writes `client.json` (0600).
    pub fn save_config(&self, config: &ClientConfig) -> Result<()> {
        let text = serde_json::to_string_pretty(config)
            .map_err(|e| ClientError::State(format!("cannot encode client.json: {e}")))?;
        write_private(&self.config_path(), text.as_bytes())
    }

    /// Writes `meters/DEVICE_ID.json` (0600).
    pub fn save_meter(&self, meter: &MeterFile) -> Result<()> {
        let device = meter.device()?;
        let text = serde_json::to_string_pretty(meter)
            .map_err(|e| ClientError::State(format!("cannot encode the meter file: {e}")))?;
        write_private(&self.meter_path(&device), text.as_bytes())
    }

    /// The meter file of `device`.
    pub fn load_meter(&self, device: &DeviceId) -> Result<MeterFile> {
        let path = self.meter_path(device);
        let text = fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ClientError::State(format!(
                    "meter {device} is not registered in {}: `postvault client register` registers a meter; `postvault client status` lists the account's",
                    self.root.display()
                ))
            } else {
                io("read", &path, e)
            }
        })?;
        serde_json::from_str(&text)
            .map_err(|e| ClientError::State(format!("{} is not a meter file: {e}", path.display())))
    }

    /// Every meter file of `login`, by device ID.
    pub fn meters(&self, login: &str) -> Result<Vec<MeterFile>> {
        let dir = self.root.join("meters");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io("list", &dir, e))? {
            let entry = entry.map_err(|e| io("list", &dir, e))?;
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let text = fs::read_to_string(&path).map_err(|e| io("read", &path, e))?;
            let meter: MeterFile = serde_json::from_str(&text).map_err(|e| {
                ClientError::State(format!("{} is not a meter file: {e}", path.display()))
            })?;
            if meter.login == login {
                out.push(meter);
            }
        }
        out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(out)
    }

    /// The meter `given`, or the account's only one when `given` is None.
    pub fn pick_meter(&self, login: &str, given: Option<&str>) -> Result<MeterFile> {
        if let Some(text) = given {
            let device = crate::customer::parse_device(text)?;
            return self.load_meter(&device);
        }
        let mut all = self.meters(login)?;
        match all.len() {
            1 => Ok(all.remove(0)),
            0 => Err(ClientError::Input(format!(
                "account {login} has no meter registered in {}: run `postvault client register --zip ZIP` first",
                self.root.display()
            ))),
            _ => Err(ClientError::Input(format!(
                "account {login} has {} meters ({}): say which with --meter DEVICE_ID",
                all.len(),
                all.iter()
                    .map(|m| m.device_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// Writes `path` whole with mode 0600: a temporary file beside it, fsync,
/// rename, fsync of the directory.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        io("write", path, e)
    })
}

#[cfg(test)]
mod tests {
    use postvault_crypto::Faults;
    use zeroize::Zeroizing;

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directory_and_files_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/b/state");
        let state = StateDir::open(Some(&root)).unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("meters")), 0o700);
        let config = ClientConfig {
            url: "https://127.0.0.1:8443".into(),
            fingerprint: Some("AB:CD".into()),
            ca_file: None,
            login: "alice".into(),
            token: Some("secret-token".into()),
        };
        state.save_config(&config).unwrap();
        assert_eq!(mode(&root.join("client.json")), 0o600);
        assert_eq!(state.config().unwrap(), config);
        assert!(!format!("{config:?}").contains("secret-token"));
        // A directory made too open is tightened on open.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        StateDir::open(Some(&root)).unwrap();
        assert_eq!(mode(&root), 0o700);
        // No stray temporary files.
        let names: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn missing_config_says_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(Some(tmp.path())).unwrap();
        assert!(state.load_config().unwrap().is_none());
        let e = state.config().unwrap_err();
        assert!(e.to_string().contains("postvault client signup"), "{e}");
    }

    #[test]
    fn trust_needs_exactly_one() {
        let mut c = ClientConfig {
            url: "https://x".into(),
            fingerprint: None,
            ca_file: None,
            login: "a".into(),
            token: None,
        };
        assert!(c.trust().is_err());
        c.ca_file = Some("/ca.pem".into());
        assert_eq!(c.trust().unwrap(), Trust::CaFile("/ca.pem".into()));
        c.fingerprint = Some("AB".into());
        assert!(c.trust().is_err());
    }

    #[test]
    fn meter_files_keep_the_key_sealed() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(Some(tmp.path())).unwrap();
        let mut rng = Rng::new(Faults::none());
        let device: DeviceId = "42-1-7".parse().unwrap();
        let key: HmacKey = Zeroizing::new([0x5a; 32]);
        let sealed =
            MeterFile::seal_key(&mut rng, &device, &key, "account pw", Argon2Params::TEST).unwrap();
        let meter = MeterFile {
            device_id: "0042-0001-00000007".into(),
            login: "alice".into(),
            user_id: "alice".into(),
            licensing_zip: 100_010_001,
            certificate_pem: "CERT".into(),
            ca_certificate_pem: "CA".into(),
            hmac_key: sealed,
        };
        state.save_meter(&meter).unwrap();
        let path = tmp.path().join("meters/0042-0001-00000007.json");
        assert_eq!(mode(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&hex::encode([0x5a; 32])));
        let back = state.load_meter(&device).unwrap();
        assert_eq!(back, meter);
        assert_eq!(*back.open_key("account pw").unwrap(), [0x5a; 32]);
        let e = back.open_key("wrong").unwrap_err();
        assert!(e.to_string().contains("wrong passphrase"), "{e}");
        // Picking: the only meter of the account, or by ID.
        assert_eq!(state.pick_meter("alice", None).unwrap(), meter);
        assert_eq!(state.pick_meter("alice", Some("42-1-7")).unwrap(), meter);
        assert!(state.pick_meter("bob", None).is_err());
        let e = state.pick_meter("alice", Some("42-1-8")).unwrap_err();
        assert!(e.to_string().contains("not registered"), "{e}");
        // A second meter makes --meter necessary.
        let mut second = meter.clone();
        second.device_id = "0042-0001-00000008".into();
        state.save_meter(&second).unwrap();
        let e = state.pick_meter("alice", None).unwrap_err();
        assert!(e.to_string().contains("--meter"), "{e}");
    }
}
