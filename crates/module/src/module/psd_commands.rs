//! The PSD (meter) commands of the module (seed 002: PSD packages, the
//! PSD lifecycle, create indicium). They run behind the same access gate and
//! command path as every other command (`Module::execute`); this file only
//! holds their handlers, which `dispatch` calls.
use postvault_crypto::aead::NONCE_LEN;
use postvault_crypto::hash::HmacSha256Key;

use super::*;
use crate::checkpoint::{SignedCheckpoint, TransactionType};

/// How many unwrapped indicium keys a module keeps (the meters it serves
/// most); the cache is emptied when full.
const SIGNING_KEY_CACHE: usize = 4096;

impl Module {
    /// Initialize PSD (seed 002): a new package in raw state.
    pub(super) fn cmd_initialize_psd(&mut self, device: &DeviceId) -> Result<Outcome, ModuleError> {
        if let Some(why) = &self.nvm.psd_inhibited {
            return Err(ModuleError::Inhibited(why.clone()));
        }
        device.validate()?;
        let identity = device.identity();
        let signing = EcdsaP256KeyPair::generate(&self.faults)?;
        let public_key = signing.public_key().to_vec();
        let kek = self.generate_key(KeyType::Aes256)?;
        let mks = self
            .nvm
            .mks_active
            .as_ref()
            .ok_or_else(|| ModuleError::KeyState("this module has no active MKS".into()))?;
        let signing_key = mks.wrap(
            &mut self.rng,
            KeyType::EcdsaP256,
            KeyUsage::IndiciumSigning,
            None,
            false,
            &identity,
            signing.to_pkcs8().expose_secret(),
        )?;
        let kek = mks.wrap(
            &mut self.rng,
            KeyType::Aes256,
            KeyUsage::KeyEncrypting,
            None,
            false,
            &identity,
            kek.expose_secret(),
        )?;
        let package = PsdPackage {
            version: psd::PACKAGE_VERSION,
            device: *device,
            state: PsdState::Raw,
            ascending: 0,
            descending: 0,
            control_total: 0,
            max_descending: psd::DEFAULT_MAX_DESCENDING_MILLS,
            certificate_serial: None,
            licensing_zip: None,
            signing_key,
            kek,
            users: Vec::new(),
            last_transaction: None,
            last_challenge: None,
            key_expiry: None,
            piece_count: 0,
            last_provider_sequence: 0,
            reset_user: None,
            stamp: None,
        };
        let sealed = package.seal(mks, &mut self.rng)?;
        let device_id = device.to_string();
        let kcv = key_check_value(&public_key);
        Ok(Outcome::new(Response::PsdInitialized {
            package: sealed,
            public_key,
            device_id: device_id.clone(),
        })
        .with("device", device_id)
        .with("public_key_kcv", kcv))
    }

    /// Translate Package (after an MKS rollover): opens a package sealed
    /// under the previous MKS, re-wraps its key tokens and seals it under the
    /// active MKS. Nothing else in it changes (no checkpoint: it is not a
    /// PSD transaction).
    pub(super) fn cmd_translate_package(
        &mut self,
        sealed: &SealedPackage,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        let (old, new) = match (&self.nvm.mks_dormant, &self.nvm.mks_active) {
            (Some(d), Some(a)) if d.generation < a.generation => (d, a),
            _ => {
                return Err(ModuleError::KeyState(
                    "translation needs a previous (dormant) MKS and a newer active one".into(),
                ));
            }
        };
        if sealed.mks_id == new.id && sealed.mks_generation == new.generation {
            return Err(ModuleError::Invalid(format!(
                "the package for {} is already sealed under the active MKS (generation {})",
                sealed.device_id, new.generation
            )));
        }
        let mut package = PsdPackage::open(sealed, Some(old), None)?;
        for token in [&mut package.signing_key, &mut package.kek] {
            let key = old.unwrap(token, now)?;
            *token = new.wrap(
                &mut self.rng,
                token.key_type,
                token.usage,
                token.expires,
                token.exportable,
                &token.identity,
                key.expose_secret(),
            )?;
        }
        let out = package.seal(new, &mut self.rng)?;
        Ok(Outcome::new(Response::PsdTranslated { package: out })
            .with("device", package.device.to_string())
            .with("from_generation", old.generation.to_string())
            .with("to_generation", new.generation.to_string()))
    }

    /// Opens a sealed package for `kind`: authentic, under the active MKS,
    /// and in a PSD state `psd::PSD_RULES` allows for `kind`.
    ///
    /// First of all (seed 002: "within dispatch"), the database's
    /// checkpoint must be this module's newest, and afterwards the package
    /// must not be one this module has since replaced (`check_stamp`).
    pub(super) fn open_package(
        &self,
        kind: PsdCommandKind,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
    ) -> Result<PsdPackage, ModuleError> {
        self.check_checkpoint(checkpoint)?;
        let package = PsdPackage::open(
            sealed,
            self.nvm.mks_active.as_ref(),
            self.nvm.mks_dormant.as_ref(),
        )?;
        psd::check_psd_allowed(kind, package.state)?;
        self.check_stamp(&package)?;
        Ok(package)
    }

    /// Retrieve PSD Public Key (seed 001: a No-Role service).
    pub(super) fn cmd_retrieve_psd_public_key(
        &mut self,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        let package =
            self.open_package(PsdCommandKind::RetrievePsdPublicKey, sealed, checkpoint)?;
        let public_key = self.package_public_key(&package, now)?.to_vec();
        let device_id = package.device.to_string();
        Ok(Outcome::new(Response::PsdPublicKey(PsdPublicKey {
            device_id: device_id.clone(),
            state: package.state,
            public_key,
            certificate_serial: package.certificate_serial,
        }))
        .with("device", device_id))
    }

    /// The package's indicium public key, from its signing key token.
    pub(super) fn package_public_key(
        &mut self,
        package: &PsdPackage,
        now: i64,
    ) -> Result<[u8; ecdsa::PUBLIC_KEY_LEN], ModuleError> {
        Ok(self.package_signing_key(package, now)?.public_key())
    }

    /// The package's indicium key pair, from its signing key token.
    ///
    /// Unwrapping a token and loading the P-256 key costs more than the
    /// signature itself, so the module keeps the keys it has loaded, by
    /// meter, with the whole token it came from (header, MKS, identity and
    /// sealed bytes: a key is served only for an identical token), for
    /// the meters it serves; the cache lives only in the module's memory,
    /// is bounded, and is dropped with Zeroize, Reset and MKS changes. A
    /// token is only reached through a package that opened under the
    /// active MKS, so a cached key is never used for a package the module
    /// would refuse.
    pub(super) fn package_signing_key(
        &mut self,
        package: &PsdPackage,
        now: i64,
    ) -> Result<Arc<EcdsaP256KeyPair>, ModuleError> {
        let token = &package.signing_key;
        if token.key_type != KeyType::EcdsaP256
            || token.usage != KeyUsage::IndiciumSigning
            || !package.device.is_identity(&token.identity)
        {
            return Err(ModuleError::Rejected(format!(
                "PSD package for {} holds a signing key token that is not its indicium key",
                package.device
            )));
        }
        if token.expires.is_some_and(|t| now >= t) {
            // Let unwrap report the expiry; never serve it from the cache.
            self.active_mks()?.unwrap(token, now)?;
        }
        if let Some((cached, key)) = self.signing_keys.get(&package.device)
            && cached == token
        {
            return Ok(key.clone());
        }
        let key = self.active_mks()?.unwrap(token, now)?;
        let pair = Arc::new(EcdsaP256KeyPair::from_pkcs8(&key)?);
        if !self.signing_keys.contains_key(&package.device)
            && self.signing_keys.len() >= SIGNING_KEY_CACHE
        {
            self.signing_keys.clear();
        }
        self.signing_keys
            .insert(package.device, (token.clone(), pair.clone()));
        Ok(pair)
    }

    /// The package's key-encrypting key (EDEK_psd), from its token.
    pub(super) fn package_kek(
        &self,
        package: &PsdPackage,
        now: i64,
    ) -> Result<SecretKey32, ModuleError> {
        let key = self.active_mks()?.unwrap(self.kek_token(package)?, now)?;
        Ok(SecretKey32::from_slice(key.expose_secret())?)
    }

    /// The package's KEK token, refused unless it is an AES-256
    /// key-encrypting key of this meter.
    pub(super) fn kek_token<'a>(
        &self,
        package: &'a PsdPackage,
    ) -> Result<&'a KeyToken, ModuleError> {
        let token = &package.kek;
        if token.key_type != KeyType::Aes256
            || token.usage != KeyUsage::KeyEncrypting
            || !package.device.is_identity(&token.identity)
        {
            return Err(ModuleError::Rejected(format!(
                "PSD package for {} holds a KEK token that is not its own",
                package.device
            )));
        }
        Ok(token)
    }

    /// Seals an updated package under the active MKS (the register
    /// invariant is checked first).
    pub(super) fn seal_package(
        &mut self,
        package: &PsdPackage,
    ) -> Result<SealedPackage, ModuleError> {
        let mks = self
            .nvm
            .mks_active
            .as_ref()
            .ok_or_else(|| ModuleError::KeyState("this module has no active MKS".into()))?;
        package.seal(mks, &mut self.rng)
    }

    /// [`Self::seal_package`] with a nonce just drawn from the module's
    /// generator ([`IssuedPiece::nonce`]).
    pub(super) fn seal_package_with_nonce(
        &self,
        package: &PsdPackage,
        nonce: [u8; NONCE_LEN],
    ) -> Result<SealedPackage, ModuleError> {
        package.seal_with_random_nonce(self.active_mks()?, nonce)
    }

    /// Authorize PSD (seed 002; the Certificate Authority role, authenticated
    /// by the certificate): the PSD certificate must be signed by the CA
    /// certificate in the crypto card, be valid now, and name the package's
    /// public key and device ID. Raw -> unleased.
    pub(super) fn cmd_authorize_psd(
        &mut self,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
        certificate_der: &[u8],
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        let mut package = self.open_package(PsdCommandKind::AuthorizePsd, sealed, checkpoint)?;
        let ca_der = self
            .nvm
            .crypto_card
            .as_ref()
            .and_then(|c| c.ca_certificate.clone())
            .ok_or_else(|| {
                ModuleError::KeyState(
                    "this module holds no CA certificate; run Initialize Crypto-Card with --ca-cert"
                        .into(),
                )
            })?;
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).map_err(|_| {
            ModuleError::KeyState("the CA certificate in the crypto card does not parse".into())
        })?;
        let (rest, cert) = x509_parser::parse_x509_certificate(certificate_der).map_err(|e| {
            ModuleError::Invalid(format!(
                "the PSD certificate is not a DER X.509 certificate: {e}"
            ))
        })?;
        if !rest.is_empty() {
            return Err(ModuleError::Invalid(
                "the PSD certificate has trailing bytes".into(),
            ));
        }
        // 1. Signed by the CA (ECDSA P-256 with SHA-256 only).
        if cert.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256
            || cert.tbs_certificate.signature.algorithm != OID_SIG_ECDSA_WITH_SHA256
        {
            return Err(ModuleError::Invalid(
                "the PSD certificate is not signed with ecdsa-with-SHA256 (the only algorithm accepted)"
                    .into(),
            ));
        }
        let ca_key = p256_key(ca.public_key(), "the CA certificate's")?;
        if !ecdsa::verify_der(
            ca_key,
            cert.tbs_certificate.as_ref(),
            &cert.signature_value.data,
        ) {
            return Err(ModuleError::Rejected(
                "the PSD certificate's signature does not verify with the CA certificate's key (issued by another CA, or altered)"
                    .into(),
            ));
        }
        // 2. Issued by the CA.
        if cert.issuer().as_raw() != ca.subject().as_raw() {
            return Err(ModuleError::Rejected(format!(
                "the PSD certificate's issuer ({}) is not the CA certificate's subject ({})",
                cert.issuer(),
                ca.subject()
            )));
        }
        // 3. Valid now (module time).
        let (not_before, not_after) = (
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        );
        if now < not_before {
            return Err(ModuleError::Rejected(format!(
                "the PSD certificate is not valid yet: not before {not_before}, module time {now} (Unix seconds)"
            )));
        }
        if now >= not_after {
            return Err(ModuleError::Rejected(format!(
                "the PSD certificate has expired: not after {not_after}, module time {now} (Unix seconds)"
            )));
        }
        if cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca)
        {
            return Err(ModuleError::Invalid(
                "the PSD certificate is a CA certificate (basicConstraints cA is set)".into(),
            ));
        }
        // 4. It certifies this package's indicium key.
        let cert_key = p256_key(cert.public_key(), "the PSD certificate's")?;
        let psd_key = self.package_public_key(&package, now)?;
        if cert_key != psd_key.as_slice() {
            return Err(ModuleError::Rejected(format!(
                "the PSD certificate certifies another key, not the indicium key of {}",
                package.device
            )));
        }
        // 5. It names this device.
        let mut cns = cert.subject().iter_common_name();
        let cn = match (cns.next(), cns.next()) {
            (Some(cn), None) => cn.as_str().map_err(|_| {
                ModuleError::Invalid("the PSD certificate's subject CN is not a string".into())
            })?,
            _ => {
                return Err(ModuleError::Invalid(
                    "the PSD certificate's subject must have exactly one CN, the device ID".into(),
                ));
            }
        };
        if cn.parse::<DeviceId>().ok() != Some(package.device) {
            return Err(ModuleError::Rejected(format!(
                "the PSD certificate names device {cn:?}, but the package is {}",
                package.device
            )));
        }
        let raw = cert.raw_serial();
        let mut low = [0u8; 4];
        let take = raw.len().min(4);
        low[4 - take..].copy_from_slice(&raw[raw.len() - take..]);
        let serial = u32::from_be_bytes(low);
        package.certificate_serial = Some(serial);
        // The indicium key is good as long as its certificate.
        package.key_expiry = Some(not_after);
        package.state = PsdState::Unleased;
        let (out, checkpoint) =
            self.commit_package(&mut package, TransactionType::AuthorizePsd, 0, now)?;
        Ok(Outcome::new(Response::PsdUpdated {
            package: out,
            checkpoint,
            state: package.state,
        })
        .with("device", package.device.to_string())
        .with("certificate_serial", serial.to_string())
        .with(
            "certificate_sha256",
            hex::encode(hash::sha256(&[certificate_der])),
        )
        .with("state", package.state.to_string()))
    }

    /// Configure PSD (seed 002): assigns the customer; their secrets arrive
    /// HPKE-sealed to the registration key; the answer is MAC'd under the
    /// customer's new key. Unleased -> assigned.
    pub(super) fn cmd_configure_psd(
        &mut self,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
        secrets: &HpkeSealed,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        let mut package = self.open_package(PsdCommandKind::ConfigurePsd, sealed, checkpoint)?;
        let device_id = package.device.to_string();
        let customer = self.open_customer_secrets(&package, secrets)?;
        let (hmac_key_sealed, password_hash) =
            self.new_user_secret(&package, &customer, &[], now)?;
        let challenge: [u8; 16] = self.rng.array()?;
        let mac = psd::configure_mac(
            &customer.hmac_key,
            &package.device,
            &customer.user_id,
            &challenge,
        );
        package.users = vec![PsdUser {
            user_id: customer.user_id.clone(),
            role: Role::CustomerAdministrator,
            hmac_key_sealed,
            password_hash: password_hash.clone(),
            privileges: psd::Privileges::ALL,
            account_expires: None,
            password_expires: Some(now + psd::DEFAULT_PASSWORD_PERIOD_SECS),
            password_period_secs: psd::DEFAULT_PASSWORD_PERIOD_SECS,
            failures: 0,
            failure_limit: psd::DEFAULT_USER_FAILURE_LIMIT,
            max_total_postage_mills: None,
            total_postage_mills: 0,
            password_history: vec![password_hash],
        }];
        package.last_challenge = Some(challenge);
        package.state = PsdState::Assigned;
        let (out, checkpoint) =
            self.commit_package(&mut package, TransactionType::ConfigurePsd, 0, now)?;
        Ok(Outcome::new(Response::PsdConfigured {
            package: out,
            checkpoint,
            challenge,
            mac,
        })
        .with("device", device_id)
        .with("user", customer.user_id.clone())
        .with("state", package.state.to_string()))
    }

    /// Opens a package for a provider-signed command and authenticates the
    /// message: the provider's signature (crypto card key), the meter, and
    /// a sequence number above the last one applied (no replay).
    pub(super) fn open_provider_command(
        &self,
        kind: PsdCommandKind,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
        message: &ProviderMessage,
    ) -> Result<PsdPackage, ModuleError> {
        let package = self.open_package(kind, sealed, checkpoint)?;
        let provider = self
            .nvm
            .crypto_card
            .as_ref()
            .and_then(|c| c.provider_public_key.as_deref())
            .ok_or_else(|| {
                ModuleError::KeyState(
                    "this module holds no provider public key; run Initialize Crypto-Card with the provider key"
                        .into(),
                )
            })?;
        if !ecdsa::verify(provider, &message.body.signing_bytes(), &message.signature) {
            return Err(ModuleError::Rejected(
                "the provider signature on the message does not verify".into(),
            ));
        }
        let device_id = package.device.to_string();
        if message.body.device_id != device_id {
            return Err(ModuleError::Rejected(format!(
                "the provider message is for device {:?}, but the package is {device_id}",
                message.body.device_id
            )));
        }
        if message.body.sequence <= package.last_provider_sequence {
            return Err(ModuleError::Rejected(format!(
                "replayed provider message: sequence {} is not above the last one applied to {device_id} ({})",
                message.body.sequence, package.last_provider_sequence
            )));
        }
        Ok(package)
    }

    /// Authorize Customer (seed 002; provider-signed): licensing ZIP and
    /// maximum descending register. Assigned -> leased.
    pub(super) fn cmd_authorize_customer(
        &mut self,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
        message: &ProviderMessage,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        let mut package = self.open_provider_command(
            PsdCommandKind::AuthorizeCustomer,
            sealed,
            checkpoint,
            message,
        )?;
        let ProviderCommand::AuthorizeCustomer {
            licensing_zip,
            max_descending_mills,
        } = message.body.command
        else {
            return Err(ModuleError::Invalid(
                "the provider message is not an Authorize Customer command".into(),
            ));
        };
        let zip = postvault_indicium::Zip4::from_u32(licensing_zip).ok();
        if zip.is_none_or(|z| z.zip5() == 0) {
            return Err(ModuleError::Invalid(format!(
                "licensing ZIP {licensing_zip} is not ZIP5 * 10000 + plus-4 with a ZIP5 of 00001 to 99999"
            )));
        }
        if max_descending_mills == 0 || max_descending_mills > psd::MAX_DESCENDING_CAP {
            return Err(ModuleError::Invalid(format!(
                "maximum descending register {max_descending_mills} mills is outside 1 to {} mills",
                psd::MAX_DESCENDING_CAP
            )));
        }
        package.licensing_zip = Some(licensing_zip);
        package.max_descending = max_descending_mills;
        package.last_provider_sequence = message.body.sequence;
        package.state = PsdState::Leased;
        let (out, checkpoint) =
            self.commit_package(&mut package, TransactionType::AuthorizeCustomer, 0, now)?;
        Ok(Outcome::new(Response::PsdUpdated {
            package: out,
            checkpoint,
            state: package.state,
        })
        .with("device", package.device.to_string())
        .with("licensing_zip", format!("{licensing_zip:09}"))
        .with("max_descending_mills", max_descending_mills.to_string())
        .with("sequence", message.body.sequence.to_string())
        .with("state", package.state.to_string()))
    }

    /// Download Postage Value (seed 002, its steps 1 to 9; provider-signed).
    pub(super) fn cmd_download(
        &mut self,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
        message: &ProviderMessage,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        let mut package = self.open_provider_command(
            PsdCommandKind::DownloadPostageValue,
            sealed,
            checkpoint,
            message,
        )?;
        let ProviderCommand::Download {
            amount_mills,
            control_total_mills,
        } = message.body.command
        else {
            return Err(ModuleError::Invalid(
                "the provider message is not a Download Postage Value command".into(),
            ));
        };
        package.check_registers()?;
        let meter_total = package.control_total;
        if control_total_mills != meter_total {
            return Err(ModuleError::Rejected(format!(
                "control total mismatch: the provider's books say {control_total_mills} mills, the meter says {meter_total} mills"
            )));
        }
        let (descending, control_total) = package.registers_after_download(amount_mills)?;
        package.descending = descending;
        package.control_total = control_total;
        package.last_provider_sequence = message.body.sequence;
        let (out, checkpoint) =
            self.commit_package(&mut package, TransactionType::Download, amount_mills, now)?;
        Ok(Outcome::new(Response::PsdUpdated {
            package: out,
            checkpoint,
            state: package.state,
        })
        .with("device", package.device.to_string())
        .with("amount_mills", amount_mills.to_string())
        .with("descending_mills", descending.to_string())
        .with("control_total_mills", control_total.to_string())
        .with("sequence", message.body.sequence.to_string()))
    }

    /// Create Indicium and Create Correction Indicium (seed 002, its steps
    /// 1 to 12). The checks run in the seed's order, each with its own
    /// error, and a refusal changes nothing: package authentic and leased,
    /// meter number, user, client challenge, client MAC under that user's
    /// key, postage within the module's limits (and the piece's other fields
    /// valid), DR sufficient. Then DR -= value and AR += value, piece
    /// counter + 1, the version-1 indicium is signed, and the answer carries
    /// the old challenge and a new one, MAC'd with the user's key; the
    /// package and the checkpoint are updated.
    pub(super) fn cmd_create_indicium(
        &mut self,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
        req: &IndiciumRequest,
        correction: bool,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        let kind = if correction {
            PsdCommandKind::CreateCorrectionIndicium
        } else {
            PsdCommandKind::CreateIndicium
        };
        // Steps 1 and 2: the package is authentic and leased.
        let mut package = self.open_package(kind, sealed, checkpoint)?;
        let draw = self.rng.array()?;
        let issued = self.issue_indicium(&mut package, req, correction, draw, now)?;
        // Step 11: the package and the checkpoint.
        let transaction = if correction {
            TransactionType::CorrectionIndicium
        } else {
            TransactionType::Indicium
        };
        let (out, checkpoint) =
            self.commit_package(&mut package, transaction, req.postage_mills, now)?;
        // Step 12: the audit entry (written by the caller).
        let mut o = Outcome::new(Response::IndiciumCreated {
            package: out,
            checkpoint,
            indicium: issued.indicium,
            old_challenge: issued.old_challenge,
            new_challenge: issued.new_challenge,
            mac: issued.mac,
        });
        o.data = issued.audit;
        Ok(o)
    }

    /// Steps 3 to 10 of Create Indicium on an opened package: the checks in
    /// the seed's order, then the registers, the signed indicium and the
    /// MAC'd answer. The caller seals the package (step 11). On error the
    /// package may be half-changed: callers drop it. `draw` is fresh output
    /// of the module's generator: the new challenge, then the nonce of
    /// [`IssuedPiece::nonce`].
    pub(super) fn issue_indicium(
        &mut self,
        package: &mut PsdPackage,
        req: &IndiciumRequest,
        correction: bool,
        draw: [u8; PIECE_DRAW],
        now: i64,
    ) -> Result<IssuedPiece, ModuleError> {
        use postvault_indicium::{Indicium, MailCategory, MailingDate, Zip4};
        let device_id = package.device.to_string();
        // Steps 3 to 5: meter number, user, challenge, the MAC under the
        // user's key.
        let (user_index, hmac_key, old_challenge) = self.authenticate_user(
            package,
            "indicium request",
            &req.device_id,
            &req.user_id,
            &req.challenge,
            &req.mac_bytes(),
            &req.mac,
            now,
        )?;
        // The indicium key must not have expired (its certificate's end).
        if let Some(t) = package.key_expiry
            && now >= t
        {
            return Err(ModuleError::Rejected(format!(
                "the indicium key of {device_id} expired at {t} (Unix seconds; its certificate's end); the meter needs a new key and certificate"
            )));
        }
        let user = &package.users[user_index];
        // The user may print (multi-user meters, FIG. 8).
        check_user_usable(user, now)?;
        if !user.privileges.create_indicia {
            return Err(ModuleError::Rejected(format!(
                "user {:?} of meter {device_id} does not hold the create-indicia privilege",
                user.user_id
            )));
        }
        // Step 6: the value within the module's limits; the piece's fields.
        let postage = req.postage_mills;
        // The user's own limit on total postage (reported in its place below).
        let user_total = user
            .total_postage_mills
            .checked_add(postage)
            .filter(|t| user.max_total_postage_mills.is_none_or(|max| *t <= max))
            .ok_or_else(|| {
                ModuleError::Rejected(format!(
                    "user {:?} may print at most {} mills in total and has printed {} mills; the piece needs {postage} mills",
                    user.user_id,
                    user.max_total_postage_mills.unwrap_or(u64::MAX),
                    user.total_postage_mills
                ))
            });
        if !(psd::MIN_POSTAGE_MILLS..=psd::MAX_POSTAGE_MILLS).contains(&postage) {
            return Err(ModuleError::Invalid(format!(
                "postage {postage} mills is outside the module's limits of {} to {} mills",
                psd::MIN_POSTAGE_MILLS,
                psd::MAX_POSTAGE_MILLS
            )));
        }
        let date = MailingDate::from_u32(req.date)
            .map_err(|e| ModuleError::Invalid(format!("date of mailing {}: {e}", req.date)))?;
        let origin = Zip4::from_u32(req.origin_zip).map_err(|e| {
            ModuleError::Invalid(format!("originating ZIP+4 {}: {e}", req.origin_zip))
        })?;
        let destination = Zip4::from_u32(req.destination_zip).map_err(|e| {
            ModuleError::Invalid(format!("destination ZIP+4 {}: {e}", req.destination_zip))
        })?;
        let category = MailCategory::from_bytes(req.category)
            .map_err(|e| ModuleError::Invalid(format!("mail category: {e}")))?;
        if correction && category != MailCategory::CORRECTION {
            return Err(ModuleError::Invalid(format!(
                "a correction indicium must have mail category {}, not {category}",
                MailCategory::CORRECTION
            )));
        }
        if !correction && (category == MailCategory::CORRECTION || category == MailCategory::REFUND)
        {
            return Err(ModuleError::Invalid(format!(
                "mail category {category} is for correction and refund indicia, not Create Indicium"
            )));
        }
        let licensing_zip = package.licensing_zip.ok_or_else(|| {
            ModuleError::Internal(format!("leased PSD {device_id} has no licensing ZIP"))
        })?;
        if origin.zip5() != licensing_zip / 10_000 {
            return Err(ModuleError::Invalid(format!(
                "originating ZIP {} is not the meter's licensing ZIP {:05}",
                origin.zip5(),
                licensing_zip / 10_000
            )));
        }
        // The user's own limit on total postage.
        let user_total = user_total?;
        // Step 7: the DR is sufficient.
        package.check_registers()?;
        if package.descending < postage {
            return Err(ModuleError::Rejected(format!(
                "insufficient postage: DR is {} mills, the piece needs {postage} mills",
                package.descending
            )));
        }
        let certificate_serial = package.certificate_serial.ok_or_else(|| {
            ModuleError::Internal(format!("leased PSD {device_id} has no certificate serial"))
        })?;
        // Step 8: the registers.
        package.descending -= postage;
        package.ascending = package.control_total - package.descending;
        package.piece_count = package.piece_count.checked_add(1).ok_or_else(|| {
            ModuleError::Internal(format!("PSD {device_id}: piece counter overflow"))
        })?;
        package.check_registers()?;
        package.users[user_index].total_postage_mills = user_total;
        let descending_register = u32::try_from(package.descending).map_err(|_| {
            ModuleError::Internal(format!(
                "PSD {device_id}: DR {} mills does not fit the indicium",
                package.descending
            ))
        })?;
        // Step 9: the indicium, signed with the PSD's key.
        let mut indicium = Indicium {
            certificate_serial,
            device: package.device.into(),
            ascending_register: package.ascending,
            postage: postage as u32,
            date,
            origin,
            software_id: psd::SOFTWARE_ID,
            destination,
            piece_counter: package.piece_count,
            descending_register,
            category,
            signature: [0; postvault_indicium::SIGNATURE_LEN],
        };
        let bytes = self.sign_indicium(package, &mut indicium, now)?;
        // Step 10: the answer, with a new challenge, MAC'd with the user's
        // key. The caller's draw from the generator gives the challenge and
        // the nonce the updated package is sealed with (step 11).
        let (challenge, nonce) = draw.split_at(16);
        let new_challenge: [u8; 16] = challenge.try_into().expect("16 bytes");
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("12 bytes");
        let mac =
            psd::indicium_response_mac_with(&hmac_key, &bytes, &old_challenge, &new_challenge);
        package.last_challenge = Some(new_challenge);
        Ok(IssuedPiece {
            indicium: bytes,
            old_challenge,
            new_challenge,
            mac,
            nonce,
            audit: vec![
                ("device", device_id),
                ("user", req.user_id.clone()),
                ("postage_mills", postage.to_string()),
                ("ascending_mills", package.ascending.to_string()),
                ("descending_mills", package.descending.to_string()),
                ("piece", package.piece_count.to_string()),
                ("category", category.to_string()),
            ],
        })
    }

    /// Signs `indicium` with the package's indicium key and returns its 113
    /// bytes (create indicium step 9; the refund indicium too).
    pub(super) fn sign_indicium(
        &mut self,
        package: &PsdPackage,
        indicium: &mut postvault_indicium::Indicium,
        now: i64,
    ) -> Result<Vec<u8>, ModuleError> {
        let device = package.device;
        let payload = indicium
            .payload()
            .map_err(|e| ModuleError::Internal(format!("PSD {device}: indicium: {e}")))?;
        indicium.signature = self.package_signing_key(package, now)?.sign(&payload)?;
        Ok(indicium
            .to_bytes()
            .map_err(|e| ModuleError::Internal(format!("PSD {device}: indicium: {e}")))?
            .to_vec())
    }

    /// Authenticates a meter user's MAC'd request (seed 002, FIG. 5 and
    /// create indicium steps 3 to 5): the request names this meter and a
    /// user of it, carries the package's last challenge, and its MAC
    /// verifies under that user's key. Returns the user's index, key
    /// (prepared, see [`Self::prepared_user_key`]) and the challenge
    /// consumed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn authenticate_user(
        &mut self,
        package: &PsdPackage,
        what: &str,
        device_id: &str,
        user_id: &str,
        challenge: &[u8; 16],
        mac_bytes: &[u8],
        mac: &[u8; 32],
        now: i64,
    ) -> Result<(usize, Arc<HmacSha256Key>, [u8; 16]), ModuleError> {
        let device = package.device.text();
        if device_id != &*device {
            return Err(ModuleError::Rejected(format!(
                "the {what} is for device {device_id:?}, but the package is {device}"
            )));
        }
        let index = package
            .users
            .iter()
            .position(|u| u.user_id == user_id)
            .ok_or_else(|| {
                ModuleError::Rejected(format!("user {user_id:?} is not a user of meter {device}"))
            })?;
        let old_challenge = match package.last_challenge {
            Some(c) if hash::ct_eq(&c, challenge) => c,
            _ => {
                return Err(ModuleError::Rejected(
                    "stale or replayed request: challenge does not match".into(),
                ));
            }
        };
        let key = self.prepared_user_key(package, &package.users[index], now)?;
        if !key.verify(&[mac_bytes], mac) {
            return Err(ModuleError::Rejected("request MAC does not verify".into()));
        }
        Ok((index, key, old_challenge))
    }
}

/// Random bytes one piece takes: its new challenge (16) and the nonce its
/// package is sealed with.
pub(super) const PIECE_DRAW: usize = 16 + NONCE_LEN;

/// What [`Module::issue_indicium`] produced.
pub(super) struct IssuedPiece {
    /// The signed indicium.
    pub indicium: Vec<u8>,
    /// The request's challenge.
    pub old_challenge: [u8; 16],
    /// The next challenge.
    pub new_challenge: [u8; 16],
    /// The answer's MAC.
    pub mac: [u8; 32],
    /// Fresh random bytes to seal the updated package with
    /// ([`Module::seal_package_with_nonce`]).
    pub nonce: [u8; NONCE_LEN],
    /// The audit entry's data.
    pub audit: AuditData,
}

/// Refuses a meter user who is locked out or whose account has expired.
pub(super) fn check_user_usable(user: &PsdUser, now: i64) -> Result<(), ModuleError> {
    if user.locked() {
        return Err(ModuleError::Rejected(format!(
            "user {:?} is locked after {} failed password checks; a customer administrator must unlock them",
            user.user_id, user.failures
        )));
    }
    if user.account_expires.is_some_and(|t| now >= t) {
        return Err(ModuleError::Rejected(format!(
            "the account of user {:?} has expired; a customer administrator must extend it",
            user.user_id
        )));
    }
    Ok(())
}

/// The uncompressed point of an ECDSA P-256 SubjectPublicKeyInfo.
pub(super) fn p256_key<'a>(
    spki: &'a SubjectPublicKeyInfo<'_>,
    whose: &str,
) -> Result<&'a [u8], ModuleError> {
    let is_p256 = spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            == Some(OID_EC_P256);
    let key: &[u8] = &spki.subject_public_key.data;
    if !is_p256 || key.len() != ecdsa::PUBLIC_KEY_LEN || key[0] != 0x04 {
        return Err(ModuleError::Invalid(format!(
            "{whose} public key is not an uncompressed ECDSA P-256 key"
        )));
    }
    Ok(key)
}
