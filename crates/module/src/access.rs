//! The access control database (seed 002, "Access Control"): one record per
//! user with role, Argon2id password hash, failure count and limit, logon
//! time-out, account and password expiry, password period and the recent
//! passwords that may not be reused.
use serde::{Deserialize, Serialize};

use postvault_crypto::password::{self, Argon2Params};
use postvault_crypto::rng::Rng;

use crate::error::ModuleError;
use crate::protocol::{AccountSettings, NewUser, Password, UserView};
use crate::types::Role;

/// Default consecutive failures before lock-out.
pub const DEFAULT_FAILURE_LIMIT: u32 = 5;
/// Default idle logoff.
pub const DEFAULT_LOGON_TIMEOUT: u32 = 15 * 60;
/// Default password period: 90 days.
pub const DEFAULT_PASSWORD_PERIOD: u32 = 90 * 24 * 3600;
/// How many previous passwords may not be reused.
pub const PASSWORD_HISTORY: usize = 5;
/// Minimum password length.
pub const MIN_PASSWORD_LEN: usize = 12;

/// One account.
#[derive(Clone, Serialize, Deserialize)]
pub struct UserRecord {
    /// User ID.
    pub user_id: String,
    /// Role.
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Consecutive failed logons.
    pub failures: u32,
    /// Limit before lock-out.
    pub failure_limit: u32,
    /// Idle logoff, seconds.
    pub logon_timeout_secs: u32,
    /// Account expiry.
    pub account_expires: Option<i64>,
    /// Password expiry.
    pub password_expires: i64,
    /// Password period.
    pub password_period_secs: u32,
    /// PHC strings of recent passwords (newest last), not to be reused.
    pub recent_passwords: Vec<String>,
    /// Last successful logon.
    pub last_logon: Option<i64>,
}

impl UserRecord {
    /// Public view (no hash).
    pub fn view(&self) -> UserView {
        UserView {
            user_id: self.user_id.clone(),
            role: self.role,
            failures: self.failures,
            failure_limit: self.failure_limit,
            locked: self.failures >= self.failure_limit,
            logon_timeout_secs: self.logon_timeout_secs,
            account_expires: self.account_expires,
            password_expires: self.password_expires,
            password_period_secs: self.password_period_secs,
            last_logon: self.last_logon,
        }
    }
}

/// Checks a user ID's syntax.
pub fn check_user_id(id: &str) -> Result<(), ModuleError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ModuleError::Invalid(format!(
            "user ID {id:?} must be 1 to 64 characters of letters, digits, '.', '_', '-', '@'"
        )))
    }
}

/// Checks a new password's strength.
pub fn check_password_strength(pw: &Password) -> Result<(), ModuleError> {
    if pw.expose_secret().chars().count() < MIN_PASSWORD_LEN {
        return Err(ModuleError::PasswordRejected(format!(
            "use at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

/// Builds a record for a new account.
pub fn new_record(
    rng: &mut Rng,
    params: Argon2Params,
    user: &NewUser,
    now: i64,
) -> Result<UserRecord, ModuleError> {
    check_user_id(&user.user_id)?;
    if user.role == Role::NoRole {
        return Err(ModuleError::Invalid(
            "an account needs a role other than no-role".into(),
        ));
    }
    check_password_strength(&user.password)?;
    let s = &user.settings;
    let failure_limit = s.failure_limit.unwrap_or(DEFAULT_FAILURE_LIMIT);
    if failure_limit == 0 {
        return Err(ModuleError::Invalid(
            "failure limit must be at least 1".into(),
        ));
    }
    let period = s.password_period_secs.unwrap_or(DEFAULT_PASSWORD_PERIOD);
    if period == 0 {
        return Err(ModuleError::Invalid(
            "password period must be at least 1 second".into(),
        ));
    }
    let hash = password::hash_password(rng, user.password.expose_secret().as_bytes(), params)?;
    Ok(UserRecord {
        user_id: user.user_id.clone(),
        role: user.role,
        password_hash: hash,
        failures: 0,
        failure_limit,
        logon_timeout_secs: s.logon_timeout_secs.unwrap_or(DEFAULT_LOGON_TIMEOUT).max(1),
        account_expires: s.account_expires.filter(|&t| t != 0),
        password_expires: now + i64::from(period),
        password_period_secs: period,
        recent_passwords: Vec::new(),
        last_logon: None,
    })
}

/// Applies settings to an existing record.
pub fn apply_settings(rec: &mut UserRecord, s: &AccountSettings) -> Result<(), ModuleError> {
    if let Some(l) = s.failure_limit {
        if l == 0 {
            return Err(ModuleError::Invalid(
                "failure limit must be at least 1".into(),
            ));
        }
        rec.failure_limit = l;
    }
    if let Some(t) = s.logon_timeout_secs {
        rec.logon_timeout_secs = t.max(1);
    }
    if let Some(e) = s.account_expires {
        rec.account_expires = (e != 0).then_some(e);
    }
    if let Some(p) = s.password_period_secs {
        if p == 0 {
            return Err(ModuleError::Invalid(
                "password period must be at least 1 second".into(),
            ));
        }
        rec.password_period_secs = p;
    }
    Ok(())
}

/// Sets a new password, refusing the current one and recent ones.
pub fn set_password(
    rng: &mut Rng,
    params: Argon2Params,
    rec: &mut UserRecord,
    new: &Password,
    now: i64,
) -> Result<(), ModuleError> {
    check_password_strength(new)?;
    let candidate = new.expose_secret().as_bytes();
    for old in std::iter::once(&rec.password_hash).chain(rec.recent_passwords.iter()) {
        if password::verify_password(old, candidate)? {
            return Err(ModuleError::PasswordRejected(format!(
                "this password was used recently; choose one not among the last {}",
                PASSWORD_HISTORY + 1
            )));
        }
    }
    let hash = password::hash_password(rng, candidate, params)?;
    let previous = std::mem::replace(&mut rec.password_hash, hash);
    rec.recent_passwords.push(previous);
    if rec.recent_passwords.len() > PASSWORD_HISTORY {
        rec.recent_passwords.remove(0);
    }
    rec.password_expires = now + i64::from(rec.password_period_secs);
    Ok(())
}
