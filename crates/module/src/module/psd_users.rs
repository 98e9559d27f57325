//! Meter users (seed 002, FIG. 8, the multi-user PSD; issue 3 item 5):
//! the MAC'd user requests (add, delete, modify, list users; status and
//! public key by privilege), PSD User Logon (password checks with a failure
//! count and lock-out, account and password expiry), and the password
//! reset state (seed 002: "a temporary state to allow a lost password to
//! be replaced").
use postvault_crypto::hash::HmacSha256Key;

use super::psd_commands::check_user_usable;
use super::*;
use crate::checkpoint::{SignedCheckpoint, TransactionType};
use crate::psd::{
    CustomerSecrets, PsdUserSettings, PsdUserView, UserAnswer, UserLogon, UserOperation,
    UserRequest,
};

/// The most users one meter may have.
pub const MAX_PSD_USERS: usize = 100;

/// What a failed PSD User Logon says, whether the user exists or not.
const WRONG_PASSWORD: &str = "unknown user or wrong password";

/// How many meters' prepared user HMAC keys a module keeps (the meters it
/// serves most, each with the users it served); the cache is emptied when
/// full, like the indicium key cache.
const USER_KEY_CACHE: usize = 4096;

/// A meter user's HMAC key the module has opened and prepared, with what
/// it was opened from: the package's whole KEK token and the user's whole
/// sealed key (see [`Module::prepared_user_key`]).
pub(super) struct CachedUserKey {
    user_id: String,
    kek: KeyToken,
    sealed: Vec<u8>,
    key: Arc<HmacSha256Key>,
}

impl Module {
    /// Opens customer secrets HPKE-sealed to the registration key for this
    /// meter, and checks the user ID and password strength.
    pub(super) fn open_customer_secrets(
        &self,
        package: &PsdPackage,
        secrets: &HpkeSealed,
    ) -> Result<CustomerSecrets, ModuleError> {
        let plain = self.open_registration_sealed(package, psd::CUSTOMER_SECRETS_INFO, secrets)?;
        let customer: CustomerSecrets = postcard::from_bytes(plain.expose_secret())
            .map_err(|_| ModuleError::Invalid("the customer secrets do not decode".into()))?;
        access::check_user_id(&customer.user_id)?;
        access::check_password_strength(&Password::new(customer.password.as_str()))?;
        Ok(customer)
    }

    /// Opens a message HPKE-sealed to the deployment's registration key with
    /// the meter's device ID as associated data.
    fn open_registration_sealed(
        &self,
        package: &PsdPackage,
        info: &[u8],
        sealed: &HpkeSealed,
    ) -> Result<SecretBytes, ModuleError> {
        let card = self.nvm.crypto_card.as_ref().ok_or_else(|| {
            ModuleError::KeyState(
                "this module has no crypto card; run Initialize Crypto-Card first".into(),
            )
        })?;
        let registration =
            HpkeKeyPair::from_secret(&SecretKey32::from_bytes(*card.decryption_key))?;
        let device_id = package.device.to_string();
        registration
            .open(&sealed.enc, info, device_id.as_bytes(), &sealed.ciphertext)
            .map_err(|_| {
                ModuleError::Rejected(format!(
                    "the sealed secrets do not open with this deployment's registration key (sealed to another key, for another meter than {device_id}, or altered)"
                ))
            })
    }

    /// A user's new secret as the package keeps it: the HMAC key sealed
    /// under the package KEK, and the Argon2id hash of the password, which
    /// must not be in `history`, that user's own repetition list (never
    /// another user's: that would tell one user another's password).
    pub(super) fn new_user_secret(
        &mut self,
        package: &PsdPackage,
        customer: &CustomerSecrets,
        history: &[String],
        now: i64,
    ) -> Result<(Vec<u8>, String), ModuleError> {
        for old in history {
            if password::verify_password(old, customer.password.as_bytes()).unwrap_or(false) {
                return Err(ModuleError::PasswordRejected(format!(
                    "user {:?} used this password recently on meter {}; choose another",
                    customer.user_id, package.device
                )));
            }
        }
        let password_hash =
            password::hash_password(&mut self.rng, customer.password.as_bytes(), self.argon2)?;
        let kek = self.package_kek(package, now)?;
        let hmac_key_sealed = postvault_crypto::aead::seal(
            &mut self.rng,
            &kek,
            &psd::user_key_aad(&package.device, &customer.user_id),
            customer.hmac_key.as_slice(),
        )?;
        Ok((hmac_key_sealed, password_hash))
    }

    /// The HMAC key of `user`, from the package.
    pub(super) fn user_hmac_key(
        &self,
        package: &PsdPackage,
        user: &PsdUser,
        now: i64,
    ) -> Result<SecretKey32, ModuleError> {
        let kek = self.package_kek(package, now)?;
        let key = postvault_crypto::aead::open(
            &kek,
            &psd::user_key_aad(&package.device, &user.user_id),
            &user.hmac_key_sealed,
        )
        .map_err(|_| {
            ModuleError::Rejected(format!(
                "the HMAC key of user {:?} in the package for {} does not open",
                user.user_id, package.device
            ))
        })?;
        Ok(SecretKey32::from_slice(key.expose_secret())?)
    }

    /// The HMAC key of `user`, prepared for HMAC-SHA-256.
    ///
    /// Opening the key (the KEK token under the MKS, then the sealed key
    /// under the KEK, both AES-GCM) and preparing it cost more than the
    /// MACs of a request, so the module keeps the keys it has prepared, by
    /// meter and user, with the package's whole KEK token and the user's
    /// whole sealed key they came from: a key is served only when both are
    /// identical (so not after the user's key changed, nor for an older
    /// package that holds another key). The rules are those of the
    /// indicium key cache ([`Module::package_signing_key`]): module memory
    /// only, bounded, dropped with Zeroize, Reset and MKS changes, and an
    /// expired KEK token is never served from it.
    pub(super) fn prepared_user_key(
        &mut self,
        package: &PsdPackage,
        user: &PsdUser,
        now: i64,
    ) -> Result<Arc<HmacSha256Key>, ModuleError> {
        let token = self.kek_token(package)?;
        if token.expires.is_some_and(|t| now >= t) {
            // Let unwrap report the expiry; never serve it from the cache.
            self.active_mks()?.unwrap(token, now)?;
        }
        // By meter, then the meter's few users in a list: a lookup needs
        // no owned copy of the user ID.
        if let Some(cached) = self
            .user_keys
            .get(&package.device)
            .and_then(|users| users.iter().find(|c| c.user_id == user.user_id))
            && cached.kek == *token
            && cached.sealed == user.hmac_key_sealed
        {
            return Ok(cached.key.clone());
        }
        let key = Arc::new(HmacSha256Key::new(&self.user_hmac_key(package, user, now)?));
        if !self.user_keys.contains_key(&package.device) && self.user_keys.len() >= USER_KEY_CACHE {
            self.user_keys.clear();
        }
        let fresh = CachedUserKey {
            user_id: user.user_id.clone(),
            kek: token.clone(),
            sealed: user.hmac_key_sealed.clone(),
            key: key.clone(),
        };
        let users = self.user_keys.entry(package.device).or_default();
        match users.iter_mut().find(|c| c.user_id == user.user_id) {
            Some(slot) => *slot = fresh,
            None => users.push(fresh),
        }
        Ok(key)
    }

    /// A meter user's MAC'd request (FIG. 8's new services, and status and
    /// public key by privilege). Checks in the order of Create Indicium:
    /// package, state, meter, user, challenge, MAC, the user usable, the
    /// privilege; then the operation; the answer is MAC'd under the
    /// requester's key with a new challenge.
    pub(super) fn cmd_psd_user(
        &mut self,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
        req: &UserRequest,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        let kind = match &req.operation {
            UserOperation::AddUser { .. } => PsdCommandKind::AddPsdUser,
            UserOperation::DeleteUser { .. } => PsdCommandKind::DeletePsdUser,
            UserOperation::ModifyUser { .. } => PsdCommandKind::ModifyPsdUser,
            UserOperation::ListUsers => PsdCommandKind::ListPsdUsers,
            UserOperation::RetrieveStatus => PsdCommandKind::RetrievePsdStatus,
            UserOperation::RetrievePublicKey => PsdCommandKind::RetrievePsdPublicKey,
        };
        let mut package = self.open_package(kind, sealed, checkpoint)?;
        let device_id = package.device.to_string();
        let (me, key, old_challenge) = self.authenticate_user(
            &package,
            "user request",
            &req.device_id,
            &req.user_id,
            &req.challenge,
            &req.mac_bytes(),
            &req.mac,
            now,
        )?;
        let me = package.users[me].clone();
        check_user_usable(&me, now)?;
        let need = |held: bool, what: &str| {
            if held {
                Ok(())
            } else {
                Err(ModuleError::Rejected(format!(
                    "user {:?} of meter {device_id} does not hold the {what} privilege",
                    me.user_id
                )))
            }
        };
        let mut data: AuditData = vec![("device", device_id.clone()), ("user", me.user_id.clone())];
        // The next challenge, drawn first so that a status answer names it.
        let new_challenge: [u8; 16] = self.rng.array()?;
        let answer = match &req.operation {
            UserOperation::AddUser {
                secrets,
                role,
                privileges,
                settings,
            } => {
                need(me.privileges.administer_users, "administer-users")?;
                if !matches!(role, Role::Customer | Role::CustomerAdministrator) {
                    return Err(ModuleError::Invalid(format!(
                        "a meter user is a customer or a customer administrator, not {role}"
                    )));
                }
                if package.users.len() >= MAX_PSD_USERS {
                    return Err(ModuleError::Invalid(format!(
                        "meter {device_id} already has {MAX_PSD_USERS} users, the most it may have"
                    )));
                }
                let customer = self.open_customer_secrets(&package, secrets)?;
                if package.users.iter().any(|u| u.user_id == customer.user_id) {
                    return Err(ModuleError::Invalid(format!(
                        "meter {device_id} already has a user {:?}",
                        customer.user_id
                    )));
                }
                check_settings(settings)?;
                let (hmac_key_sealed, password_hash) =
                    self.new_user_secret(&package, &customer, &[], now)?;
                let period = settings
                    .password_period_secs
                    .unwrap_or(psd::DEFAULT_PASSWORD_PERIOD_SECS);
                package.users.push(PsdUser {
                    user_id: customer.user_id.clone(),
                    role: *role,
                    hmac_key_sealed,
                    password_hash: password_hash.clone(),
                    privileges: *privileges,
                    account_expires: settings.account_expires.filter(|t| *t != 0),
                    password_expires: (period > 0).then_some(now + period),
                    password_period_secs: period,
                    failures: 0,
                    failure_limit: settings
                        .failure_limit
                        .unwrap_or(psd::DEFAULT_USER_FAILURE_LIMIT),
                    max_total_postage_mills: settings.max_total_postage_mills.filter(|m| *m != 0),
                    total_postage_mills: 0,
                    password_history: vec![password_hash],
                });
                data.push(("operation", "add-user".into()));
                data.push(("target", customer.user_id.clone()));
                data.push(("role", role.to_string()));
                data.push(("privileges", privileges_text(privileges)));
                UserAnswer::Done
            }
            UserOperation::DeleteUser { user_id } => {
                need(me.privileges.administer_users, "administer-users")?;
                if *user_id == me.user_id {
                    return Err(ModuleError::Invalid(
                        "a user cannot delete themself; another administrator must".into(),
                    ));
                }
                let i = user_index(&package, user_id)?;
                package.users.remove(i);
                check_an_administrator_remains(&package, now)?;
                data.push(("operation", "delete-user".into()));
                data.push(("target", user_id.clone()));
                UserAnswer::Done
            }
            UserOperation::ModifyUser {
                user_id,
                privileges,
                settings,
                unlock,
                new_secrets,
            } => {
                let i = user_index(&package, user_id)?;
                let administers =
                    privileges.is_some() || *settings != PsdUserSettings::default() || *unlock;
                if administers {
                    need(me.privileges.administer_users, "administer-users")?;
                }
                if new_secrets.is_some() && *user_id != me.user_id {
                    need(me.privileges.reset_password, "reset-password")?;
                    let target = &package.users[i];
                    if !privileges_within(&target.privileges, &me.privileges)
                        || (target.role == Role::CustomerAdministrator
                            && me.role != Role::CustomerAdministrator)
                    {
                        return Err(ModuleError::Rejected(format!(
                            "user {:?} may not reset the secrets of {user_id:?}, who holds a role or privileges {:?} does not (that would take over a stronger account)",
                            me.user_id, me.user_id
                        )));
                    }
                }
                if !administers && new_secrets.is_none() {
                    return Err(ModuleError::Invalid(
                        "Modify User changes nothing: give privileges, settings, unlock or new secrets"
                            .into(),
                    ));
                }
                check_settings(settings)?;
                if let Some(secrets) = new_secrets {
                    let customer = self.open_customer_secrets(&package, secrets)?;
                    if customer.user_id != *user_id {
                        return Err(ModuleError::Invalid(format!(
                            "the new secrets are for user {:?}, not {user_id:?}",
                            customer.user_id
                        )));
                    }
                    let history = package.users[i].password_history.clone();
                    let (hmac_key_sealed, password_hash) =
                        self.new_user_secret(&package, &customer, &history, now)?;
                    let u = &mut package.users[i];
                    u.hmac_key_sealed = hmac_key_sealed;
                    u.password_hash = password_hash.clone();
                    u.password_expires =
                        (u.password_period_secs > 0).then_some(now + u.password_period_secs);
                    u.failures = 0;
                    remember_password(u, password_hash);
                    data.push(("new_secrets", "yes".into()));
                }
                let u = &mut package.users[i];
                if let Some(p) = privileges {
                    u.privileges = *p;
                    data.push(("privileges", privileges_text(p)));
                }
                apply_settings(u, settings, now);
                if *unlock {
                    u.failures = 0;
                    data.push(("unlock", "yes".into()));
                }
                check_an_administrator_remains(&package, now)?;
                data.push(("operation", "modify-user".into()));
                data.push(("target", user_id.clone()));
                UserAnswer::Done
            }
            UserOperation::ListUsers => {
                need(me.privileges.administer_users, "administer-users")?;
                data.push(("operation", "list-users".into()));
                UserAnswer::Users(package.users.iter().map(view).collect())
            }
            UserOperation::RetrieveStatus => {
                need(me.privileges.retrieve_status, "retrieve-status")?;
                data.push(("operation", "retrieve-status".into()));
                UserAnswer::Status(psd::PsdStatus {
                    challenge: Some(new_challenge),
                    last_transaction: Some(now),
                    ..package.status()
                })
            }
            UserOperation::RetrievePublicKey => {
                need(me.privileges.retrieve_public_key, "retrieve-public-key")?;
                data.push(("operation", "retrieve-public-key".into()));
                UserAnswer::PublicKey(self.package_public_key(&package, now)?.to_vec())
            }
        };
        let mac = key.sign(&[
            psd::USER_RESPONSE_LABEL,
            &postcard::to_stdvec(&answer).expect("encoding an answer into a Vec cannot fail"),
            &old_challenge,
            &new_challenge,
        ]);
        package.last_challenge = Some(new_challenge);
        let (out, checkpoint) =
            self.commit_package(&mut package, TransactionType::Users, 0, now)?;
        let mut o = Outcome::new(Response::PsdUserAnswer {
            package: out,
            checkpoint,
            answer,
            old_challenge,
            new_challenge,
            mac,
        });
        o.data = data;
        Ok(o)
    }

    /// PSD User Logon: checks a meter user's password. A wrong password
    /// counts against the user (locked at their limit); a right one clears
    /// the count. Locked users, expired accounts and expired passwords are
    /// not accepted. The verdict is an answer, not a refusal: the package
    /// comes back with the count and a new challenge (so the sealed logon
    /// cannot be replayed).
    pub(super) fn cmd_psd_user_logon(
        &mut self,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
        logon: &HpkeSealed,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        let mut package = self.open_package(PsdCommandKind::UserLogon, sealed, checkpoint)?;
        let device_id = package.device.to_string();
        let plain = self.open_registration_sealed(&package, psd::USER_LOGON_INFO, logon)?;
        let logon: UserLogon = postcard::from_bytes(plain.expose_secret())
            .map_err(|_| ModuleError::Invalid("the sealed logon does not decode".into()))?;
        match package.last_challenge {
            Some(c) if hash::ct_eq(&c, &logon.challenge) => {}
            _ => {
                return Err(ModuleError::Rejected(
                    "stale or replayed logon: challenge does not match".into(),
                ));
            }
        }
        let Some(i) = package
            .users
            .iter()
            .position(|u| u.user_id == logon.user_id)
        else {
            // Answered like a wrong password: the answer does not tell
            // whether the user exists.
            let challenge: [u8; 16] = self.rng.array()?;
            package.last_challenge = Some(challenge);
            let (out, checkpoint) =
                self.commit_package(&mut package, TransactionType::Users, 0, now)?;
            return Ok(Outcome::new(Response::PsdLogon {
                package: out,
                checkpoint,
                accepted: false,
                challenge,
                reason: Some(WRONG_PASSWORD.into()),
            })
            .with("device", device_id)
            .with("user", logon.user_id.clone())
            .with("accepted", "false")
            .with("reason", "unknown user"));
        };
        let user = &mut package.users[i];
        let reason = if user.locked() {
            Some(format!(
                "user {:?} is locked after {} failed password checks; a customer administrator must unlock them",
                user.user_id, user.failures
            ))
        } else if user.account_expires.is_some_and(|t| now >= t) {
            Some(format!(
                "the account of user {:?} has expired; a customer administrator must extend it",
                user.user_id
            ))
        } else if !password::verify_password(&user.password_hash, logon.password.as_bytes())? {
            user.failures += 1;
            Some(WRONG_PASSWORD.into())
        } else {
            user.failures = 0;
            user.password_expires.filter(|t| now >= *t).map(|_| {
                format!(
                    "the password of user {:?} has expired; set a new one (Modify User with new secrets)",
                    user.user_id
                )
            })
        };
        let failures = user.failures;
        let user_id = user.user_id.clone();
        let challenge: [u8; 16] = self.rng.array()?;
        package.last_challenge = Some(challenge);
        let (out, checkpoint) =
            self.commit_package(&mut package, TransactionType::Users, 0, now)?;
        let accepted = reason.is_none();
        let mut o = Outcome::new(Response::PsdLogon {
            package: out,
            checkpoint,
            accepted,
            challenge,
            reason: reason.clone(),
        })
        .with("device", device_id)
        .with("user", user_id)
        .with("accepted", accepted.to_string())
        .with("failures", failures.to_string());
        if let Some(r) = reason {
            o = o.with("reason", r);
        }
        Ok(o)
    }

    /// Begin Password Reset (provider-signed: the vendor has checked the
    /// customer's identity out of band): leased -> password reset, naming
    /// the user whose password is replaced.
    pub(super) fn cmd_begin_password_reset(
        &mut self,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
        message: &ProviderMessage,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        let mut package = self.open_provider_command(
            PsdCommandKind::BeginPasswordReset,
            sealed,
            checkpoint,
            message,
        )?;
        let ProviderCommand::BeginPasswordReset { user_id } = &message.body.command else {
            return Err(ModuleError::Invalid(
                "the provider message is not a Begin Password Reset command".into(),
            ));
        };
        user_index(&package, user_id)?;
        package.reset_user = Some(user_id.clone());
        package.state = PsdState::PasswordReset;
        package.last_provider_sequence = message.body.sequence;
        let (out, checkpoint) =
            self.commit_package(&mut package, TransactionType::PasswordReset, 0, now)?;
        Ok(Outcome::new(Response::PsdUpdated {
            package: out,
            checkpoint,
            state: package.state,
        })
        .with("device", package.device.to_string())
        .with("user", user_id.clone())
        .with("sequence", message.body.sequence.to_string())
        .with("state", package.state.to_string()))
    }

    /// Complete Password Reset: the user named at Begin Password Reset sends
    /// a new HMAC key and password (HPKE-sealed like Configure PSD's; the
    /// password not one of the recent ones); the answer is MAC'd under the
    /// new key. Password reset -> leased.
    pub(super) fn cmd_complete_password_reset(
        &mut self,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
        secrets: &HpkeSealed,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        let mut package =
            self.open_package(PsdCommandKind::CompletePasswordReset, sealed, checkpoint)?;
        let customer = self.open_customer_secrets(&package, secrets)?;
        let reset_user = package.reset_user.clone().ok_or_else(|| {
            ModuleError::Internal(format!(
                "PSD {} is in password reset without a user to reset",
                package.device
            ))
        })?;
        if customer.user_id != reset_user {
            return Err(ModuleError::Rejected(format!(
                "the password reset is for user {reset_user:?}, not {:?}",
                customer.user_id
            )));
        }
        let i = user_index(&package, &reset_user)?;
        let history = package.users[i].password_history.clone();
        let (hmac_key_sealed, password_hash) =
            self.new_user_secret(&package, &customer, &history, now)?;
        let u = &mut package.users[i];
        u.hmac_key_sealed = hmac_key_sealed;
        u.password_hash = password_hash.clone();
        u.password_expires = (u.password_period_secs > 0).then_some(now + u.password_period_secs);
        u.failures = 0;
        remember_password(u, password_hash);
        let challenge: [u8; 16] = self.rng.array()?;
        let mac = psd::configure_mac(
            &customer.hmac_key,
            &package.device,
            &customer.user_id,
            &challenge,
        );
        package.last_challenge = Some(challenge);
        package.reset_user = None;
        package.state = PsdState::Leased;
        let (out, checkpoint) =
            self.commit_package(&mut package, TransactionType::PasswordReset, 0, now)?;
        Ok(Outcome::new(Response::PsdConfigured {
            package: out,
            checkpoint,
            challenge,
            mac,
        })
        .with("device", package.device.to_string())
        .with("user", reset_user)
        .with("state", package.state.to_string()))
    }
}

/// The index of `user_id` among the package's users.
fn user_index(package: &PsdPackage, user_id: &str) -> Result<usize, ModuleError> {
    package
        .users
        .iter()
        .position(|u| u.user_id == user_id)
        .ok_or_else(|| {
            ModuleError::Invalid(format!(
                "user {user_id:?} is not a user of meter {}",
                package.device
            ))
        })
}

/// Keeps the user's newest password hashes (no reuse).
fn remember_password(user: &mut PsdUser, hash: String) {
    user.password_history.push(hash);
    let excess = user
        .password_history
        .len()
        .saturating_sub(psd::PASSWORD_HISTORY_LEN);
    user.password_history.drain(..excess);
}

/// True when every privilege in `a` is also in `b`.
fn privileges_within(a: &psd::Privileges, b: &psd::Privileges) -> bool {
    (!a.create_indicia || b.create_indicia)
        && (!a.reset_password || b.reset_password)
        && (!a.retrieve_status || b.retrieve_status)
        && (!a.retrieve_public_key || b.retrieve_public_key)
        && (!a.administer_users || b.administer_users)
}

/// A meter must keep at least one user who can administer users and whose
/// account has not expired (a locked one can still be recovered by the
/// provider's password reset).
fn check_an_administrator_remains(package: &PsdPackage, now: i64) -> Result<(), ModuleError> {
    if package
        .users
        .iter()
        .any(|u| u.privileges.administer_users && u.account_expires.is_none_or(|t| now < t))
    {
        Ok(())
    } else {
        Err(ModuleError::Invalid(format!(
            "meter {} would have no user left who can administer users",
            package.device
        )))
    }
}

/// Refuses settings that cannot be meant.
fn check_settings(s: &PsdUserSettings) -> Result<(), ModuleError> {
    if s.failure_limit == Some(0) {
        return Err(ModuleError::Invalid(
            "a failure limit of 0 would lock the user at once; use 1 or more".into(),
        ));
    }
    if s.password_period_secs.is_some_and(|p| p < 0) || s.account_expires.is_some_and(|t| t < 0) {
        return Err(ModuleError::Invalid(
            "password period and account expiry cannot be negative".into(),
        ));
    }
    Ok(())
}

/// Applies Modify User settings (`None` keeps; `Some(0)` clears an expiry
/// or a postage limit; a new password period applies from now).
fn apply_settings(u: &mut PsdUser, s: &PsdUserSettings, now: i64) {
    if let Some(t) = s.account_expires {
        u.account_expires = (t != 0).then_some(t);
    }
    if let Some(p) = s.password_period_secs {
        u.password_period_secs = p;
        u.password_expires = (p > 0).then_some(now + p);
    }
    if let Some(l) = s.failure_limit {
        u.failure_limit = l;
    }
    if let Some(m) = s.max_total_postage_mills {
        u.max_total_postage_mills = (m != 0).then_some(m);
    }
}

/// A user as List Users shows them.
fn view(u: &PsdUser) -> PsdUserView {
    PsdUserView {
        user_id: u.user_id.clone(),
        role: u.role,
        privileges: u.privileges,
        account_expires: u.account_expires,
        password_expires: u.password_expires,
        failures: u.failures,
        failure_limit: u.failure_limit,
        locked: u.locked(),
        max_total_postage_mills: u.max_total_postage_mills,
        total_postage_mills: u.total_postage_mills,
    }
}

/// Privileges in an audit entry.
fn privileges_text(p: &psd::Privileges) -> String {
    let mut v = Vec::new();
    if p.create_indicia {
        v.push("create-indicia");
    }
    if p.reset_password {
        v.push("reset-password");
    }
    if p.retrieve_status {
        v.push("retrieve-status");
    }
    if p.retrieve_public_key {
        v.push("retrieve-public-key");
    }
    if p.administer_users {
        v.push("administer-users");
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}
