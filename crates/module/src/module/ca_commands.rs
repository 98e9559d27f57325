//! The certificate authority inside the module (seed 002: the CA certifies
//! each PSD's indicium key; MeterGen pre-certifies meters). The CA key is an
//! ECDSA P-256 key generated here and kept only as a key token
//! (`KeyUsage::CertificateSigning`); certificates are built with rcgen and
//! signed through [`TokenSigner`], so the key is used only inside the
//! module, by `postvault-crypto`.
use super::*;

/// The CA key as rcgen's signer: rcgen builds the certificate, the module's
/// key signs it (DER ECDSA signature, as X.509 wants).
struct TokenSigner<'a> {
    key: &'a EcdsaP256KeyPair,
    public: [u8; ecdsa::PUBLIC_KEY_LEN],
}

impl rcgen::PublicKeyData for TokenSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for TokenSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.key
            .sign_der(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// A public key (uncompressed P-256 point) to certify.
struct P256Public<'a>(&'a [u8]);

impl rcgen::PublicKeyData for P256Public<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// The most days a certificate made here may be valid (10 years).
pub const MAX_CERTIFICATE_DAYS: u32 = 3653;

/// How far a PSD certificate's start is put before the issuing module's
/// time, for modules whose clocks differ slightly.
const NOT_BEFORE_SLACK_SECS: i64 = 300;

/// The rcgen parameters of the CA certificate named `cn`, valid from
/// `not_before` for `days`. Issuing rebuilds the same parameters from the
/// certificate, so the issuer name of every PSD certificate is the CA's
/// subject byte for byte (checked after signing).
fn ca_params(
    cn: &str,
    not_before: i64,
    days: u32,
) -> Result<rcgen::CertificateParams, ModuleError> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[1]));
    (params.not_before, params.not_after) = validity(not_before, days)?;
    Ok(params)
}

/// Not before and not after as rcgen wants them.
fn validity(
    not_before: i64,
    days: u32,
) -> Result<(time::OffsetDateTime, time::OffsetDateTime), ModuleError> {
    if days == 0 || days > MAX_CERTIFICATE_DAYS {
        return Err(ModuleError::Invalid(format!(
            "a certificate is valid for 1 to {MAX_CERTIFICATE_DAYS} days, not {days}"
        )));
    }
    let at = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .map_err(|_| ModuleError::Invalid(format!("time {t} is out of range")))
    };
    Ok((at(not_before)?, at(not_before + i64::from(days) * 86_400)?))
}

fn rcgen_error(e: rcgen::Error) -> ModuleError {
    ModuleError::Internal(format!("building the certificate failed: {e}"))
}

impl Module {
    /// Create Certificate Authority: a CA key (token) and its self-signed
    /// certificate.
    pub(super) fn cmd_create_ca(
        &mut self,
        common_name: &str,
        days: u32,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        let cn = common_name.trim();
        if cn.is_empty() || cn.len() > 64 || cn.chars().any(char::is_control) {
            return Err(ModuleError::Invalid(
                "the CA name must be 1 to 64 printable characters".into(),
            ));
        }
        let key = EcdsaP256KeyPair::generate(&self.faults)?;
        let params = ca_params(cn, now, days)?;
        let signer = TokenSigner {
            key: &key,
            public: key.public_key(),
        };
        let der = params
            .self_signed(&signer)
            .map_err(rcgen_error)?
            .der()
            .to_vec();
        let mks = self
            .nvm
            .mks_active
            .as_ref()
            .ok_or_else(|| ModuleError::KeyState("this module has no active MKS".into()))?;
        let token = mks.wrap(
            &mut self.rng,
            KeyType::EcdsaP256,
            KeyUsage::CertificateSigning,
            None,
            true,
            &format!("ca/{cn}"),
            key.to_pkcs8().expose_secret(),
        )?;
        Ok(Outcome::new(Response::CertificateAuthority {
            key: token,
            certificate_der: der.clone(),
        })
        .with("common_name", cn.to_string())
        .with("days", days.to_string())
        .with("public_key_kcv", key_check_value(&key.public_key()))
        .with("certificate_sha256", hex::encode(hash::sha256(&[&der]))))
    }

    /// Issue PSD Certificate: certifies a raw package's indicium key with
    /// the CA key token, subject CN = the device ID.
    pub(super) fn cmd_issue_psd_certificate(
        &mut self,
        ca_key: &KeyToken,
        ca_certificate_der: &[u8],
        sealed: &SealedPackage,
        serial: u64,
        days: u32,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        if ca_key.key_type != KeyType::EcdsaP256 || ca_key.usage != KeyUsage::CertificateSigning {
            return Err(ModuleError::Rejected(
                "the CA key token is not a certificate-signing key".into(),
            ));
        }
        if serial == 0 || serial > i64::MAX as u64 || serial as u32 == 0 {
            return Err(ModuleError::Invalid(format!(
                "certificate serial {serial} must be 1 to 2^63 - 1 with non-zero low 32 bits (the indicium carries them)"
            )));
        }
        let (rest, ca) = x509_parser::parse_x509_certificate(ca_certificate_der).map_err(|e| {
            ModuleError::Invalid(format!(
                "the CA certificate is not a DER X.509 certificate: {e}"
            ))
        })?;
        if !rest.is_empty() {
            return Err(ModuleError::Invalid(
                "the CA certificate has trailing bytes".into(),
            ));
        }
        let cn = ca
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .ok_or_else(|| ModuleError::Invalid("the CA certificate's subject has no CN".into()))?
            .to_string();
        let key = EcdsaP256KeyPair::from_pkcs8(&self.active_mks()?.unwrap(ca_key, now)?)?;
        if super::psd_commands::p256_key(ca.public_key(), "the CA certificate's").ok()
            != Some(key.public_key().as_slice())
        {
            return Err(ModuleError::Rejected(
                "the CA key token does not belong to the CA certificate".into(),
            ));
        }
        let ca_not_after = ca.validity().not_after.timestamp();
        if now >= ca_not_after {
            return Err(ModuleError::Rejected(format!(
                "the CA certificate expired at {ca_not_after} (Unix seconds); create a new CA"
            )));
        }
        let package = PsdPackage::open(
            sealed,
            self.nvm.mks_active.as_ref(),
            self.nvm.mks_dormant.as_ref(),
        )?;
        if package.state != PsdState::Raw {
            return Err(ModuleError::Invalid(format!(
                "PSD {} is {}, not raw: it is certified already",
                package.device, package.state
            )));
        }
        let public = self.package_public_key(&package, now)?;
        let device = package.device.to_string();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, device.clone());
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial.to_be_bytes()));
        // Back-dated a little: the module that loads it (Authorize PSD)
        // may be another one whose clock is a moment behind this one's.
        let (not_before, not_after) = validity(now, days)?;
        params.not_before = not_before - time::Duration::seconds(NOT_BEFORE_SLACK_SECS);
        params.not_after = not_after;
        // The PSD certificate must not outlive its CA.
        params.not_after = params.not_after.min(
            time::OffsetDateTime::from_unix_timestamp(ca_not_after)
                .map_err(|_| ModuleError::Internal("CA validity out of range".into()))?,
        );
        let issuer_params = ca_params(&cn, ca.validity().not_before.timestamp(), 1)?;
        let signer = TokenSigner {
            key: &key,
            public: key.public_key(),
        };
        let issuer = rcgen::Issuer::from_params(&issuer_params, &signer);
        let der = params
            .signed_by(&P256Public(&public), &issuer)
            .map_err(rcgen_error)?
            .der()
            .to_vec();
        // The issuer name must be the CA's subject, byte for byte (a CA made
        // elsewhere may encode its name differently).
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| ModuleError::Internal("the new certificate does not parse".into()))?;
        if cert.issuer().as_raw() != ca.subject().as_raw() {
            return Err(ModuleError::Invalid(
                "the CA certificate's subject is not one this module writes (a CA made elsewhere); use a CA from Create Certificate Authority".into(),
            ));
        }
        Ok(Outcome::new(Response::PsdCertificate {
            certificate_der: der.clone(),
        })
        .with("device", device)
        .with("serial", serial.to_string())
        .with("ca", cn)
        .with("certificate_sha256", hex::encode(hash::sha256(&[&der]))))
    }
}
