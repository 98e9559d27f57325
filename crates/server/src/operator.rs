//! The first operator: on a fresh data directory the server creates the
//! account `operator` (role `operator`) with a random password and writes
//! the login and password to `DATA/operator-credentials.txt` (mode 0600).
//! The password is never printed or logged; the server says where the file
//! is. Later starts leave the file and the account alone.

use std::path::{Path, PathBuf};

use postvault_crypto::password::{self, Argon2Params};
use postvault_crypto::rng::Rng;
use postvault_module::Clock;
use postvault_store::{Account, Store, StoreError};
use zeroize::Zeroizing;

use crate::error::{Result, ServerError};

/// The first operator's login.
pub const OPERATOR_LOGIN: &str = "operator";
/// The credentials file's name in the data directory.
pub const CREDENTIALS_FILE: &str = "operator-credentials.txt";

/// Where the first operator's credentials are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorCredentials {
    /// Created on this start: the file holds the login and password.
    Created(PathBuf),
    /// Created on an earlier start; the file is still there.
    InFile(PathBuf),
    /// The account exists but its credentials file is gone (deleted after
    /// use, or another server sharing the store made the account).
    AccountExists,
}

impl std::fmt::Display for OperatorCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OperatorCredentials::Created(p) | OperatorCredentials::InFile(p) => write!(
                f,
                "first operator credentials (login {OPERATOR_LOGIN:?}) are in {} (readable only by this user): log on with them at POST /v1/sessions, then keep the file safe or delete it",
                p.display()
            ),
            OperatorCredentials::AccountExists => write!(
                f,
                "the operator account {OPERATOR_LOGIN:?} exists already (its credentials file is not in the data directory)"
            ),
        }
    }
}

/// Makes the first operator if there is none yet.
pub(crate) async fn ensure_operator(
    store: &dyn Store,
    data_dir: &Path,
    rng: &std::sync::Mutex<Rng>,
    clock: &dyn Clock,
    params: Argon2Params,
) -> Result<OperatorCredentials> {
    let path = data_dir.join(CREDENTIALS_FILE);
    if store.get_account(OPERATOR_LOGIN).await?.is_some() {
        return Ok(if path.exists() {
            OperatorCredentials::InFile(path)
        } else {
            OperatorCredentials::AccountExists
        });
    }
    let (password, hash) = {
        let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
        let password = Zeroizing::new(hex::encode(rng.array::<16>()?));
        let hash = password::hash_password(&mut rng, password.as_bytes(), params)?;
        (password, hash)
    };
    let account = Account {
        login: OPERATOR_LOGIN.into(),
        password_hash: hash,
        role: "operator".into(),
        failed_logons: 0,
        locked: false,
        created: clock.now(),
    };
    // The file first, under a temporary name: an account whose password
    // nobody was told would be useless. A stale file from a failed start is
    // replaced.
    let tmp = data_dir.join(format!("{CREDENTIALS_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let text = Zeroizing::new(format!(
        "# The first postvault operator. Log on with POST /v1/sessions.\nlogin: {OPERATOR_LOGIN}\npassword: {}\n",
        &*password
    ));
    crate::tls::write_new(&tmp, text.as_bytes(), 0o600)?;
    match store.create_account(&account).await {
        Ok(()) => {}
        // Another server sharing the store was quicker.
        Err(StoreError::Duplicate { .. }) => {
            let _ = std::fs::remove_file(&tmp);
            return Ok(OperatorCredentials::AccountExists);
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    }
    std::fs::rename(&tmp, &path).map_err(ServerError::io(&path))?;
    Ok(OperatorCredentials::Created(path))
}
