//! The PSD lifecycle up to value download (seed 002): Authorize PSD (the
//! Certificate Authority, authenticated by the PSD certificate), Configure
//! PSD (customer secrets HPKE-sealed to the registration key, answer MAC'd
//! under the customer's key), Authorize Customer and Download Postage Value
//! (provider-signed). Every refusal has its own test, and each refusal is
//! checked to change nothing but to add its own audit entry.
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use postvault_crypto::Faults;
use postvault_crypto::ecdsa::{EcdsaP256KeyPair, public_key_to_pem};
use postvault_crypto::hpke::HpkeKeyPair;
use postvault_crypto::rng::Rng;
use postvault_module::checkpoint::SignedCheckpoint;
use postvault_module::error::ModuleError;
use postvault_module::nvm::NvmStore;
use postvault_module::protocol::{CryptoCardKeys, CryptoCardOutput};
use postvault_module::psd::{
    self, CustomerSecrets, DeviceId, HpkeSealed, ProviderBody, ProviderCommand, ProviderMessage,
    PsdState, SealedPackage,
};
use postvault_module::{Module, ModuleClient, Request, Response};
use postvault_seal::{SealConfig, open_provider};
use zeroize::Zeroizing;

use crate::common::*;

pub(crate) const DEVICE: DeviceId = DeviceId {
    vendor: 42,
    model: 1,
    serial: 17,
};
pub(crate) const OTHER_DEVICE: DeviceId = DeviceId {
    vendor: 42,
    model: 1,
    serial: 18,
};
pub(crate) const HMAC_KEY: [u8; 32] = [0x5a; 32];
pub(crate) const USER: &str = "alice";
pub(crate) const PASSWORD: &str = "alice-correct-horse-battery";
pub(crate) const ZIP: u32 = 100_010_001;

/// Runs /usr/bin/openssl in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run /usr/bin/openssl (install openssl: run scripts/test.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` in `dir` (`{name}.key`, `{name}.pem`); returns its DER.
fn make_ca(dir: &Path, name: &str) -> Vec<u8> {
    let (key, pem, der) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("{name}.der"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-subj",
            &format!("/CN=postvault test CA {name}"),
            "-days",
            "365",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(dir, &["x509", "-in", &pem, "-outform", "DER", "-out", &der]);
    std::fs::read(dir.join(der)).unwrap()
}

/// A PSD certificate for `public_key` naming `cn`, issued by CA `ca` (see
/// [`make_ca`]) with serial `serial` (hex), valid `days` from now; DER.
pub(crate) fn make_psd_cert(
    dir: &Path,
    ca: &str,
    public_key: &[u8],
    cn: &str,
    serial: &str,
    days: u32,
) -> Vec<u8> {
    make_psd_cert_with(dir, ca, public_key, &format!("/CN={cn}"), serial, days, &[])
}

/// Like [`make_psd_cert`], with the whole subject (`/CN=a/O=b`) and more
/// `openssl x509` arguments (e.g. `-extfile FILE`, `-sha384`).
fn make_psd_cert_with(
    dir: &Path,
    ca: &str,
    public_key: &[u8],
    subject: &str,
    serial: &str,
    days: u32,
    extra: &[&str],
) -> Vec<u8> {
    let public_key: [u8; 65] = public_key.try_into().unwrap();
    let name: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = format!(
        "psd-{ca}-{name}-{serial}-{}",
        hex::encode(&public_key[1..9])
    );
    let pub_pem = format!("{stem}.pub.pem");
    let der = format!("{stem}.der");
    std::fs::write(dir.join(&pub_pem), public_key_to_pem(&public_key)).unwrap();
    let (ca_pem, ca_key, serial, days) = (
        format!("{ca}.pem"),
        format!("{ca}.key"),
        format!("0x{serial}"),
        days.to_string(),
    );
    let mut args = vec![
        "x509",
        "-new",
        "-force_pubkey",
        &pub_pem,
        "-subj",
        subject,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-set_serial",
        &serial,
        "-days",
        &days,
        "-outform",
        "DER",
        "-out",
        &der,
    ];
    args.extend(extra);
    openssl(dir, &args);
    std::fs::read(dir.join(der)).unwrap()
}

/// (not_before, not_after) of a certificate, Unix seconds.
pub(crate) fn validity(der: &[u8]) -> (i64, i64) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    )
}

pub(crate) fn rng() -> Rng {
    Rng::new(Faults::default())
}

/// A master module with a crypto card (CA certificate and provider key) and
/// one raw PSD package.
pub(crate) struct Meter {
    pub(crate) f: Fixture,
    pub(crate) _m: Arc<Mutex<Module>>,
    pub(crate) c: ModuleClient,
    pub(crate) pki: tempfile::TempDir,
    pub(crate) provider: EcdsaP256KeyPair,
    pub(crate) registration: Vec<u8>,
    pub(crate) package: SealedPackage,
    pub(crate) public_key: Vec<u8>,
    pub(crate) seq: u64,
    /// The database's copy of the module's newest checkpoint.
    pub(crate) checkpoint: Option<SignedCheckpoint>,
}

impl Meter {
    pub(crate) fn new() -> Self {
        Self::with_ca(true)
    }

    pub(crate) fn with_ca(load_ca: bool) -> Self {
        Self::with_card(load_ca, true)
    }

    /// A module whose crypto card holds the test CA's certificate and the
    /// provider's public key, or not, as told.
    pub(crate) fn with_card(load_ca: bool, load_provider: bool) -> Self {
        let f = Fixture::new();
        let m = f.open();
        let mut c = client(&m);
        master(&mut c);
        let pki = tempfile::tempdir().unwrap();
        let ca = make_ca(pki.path(), "ca");
        let provider = EcdsaP256KeyPair::generate(&Faults::default()).unwrap();
        let card: CryptoCardOutput = match as_user(&mut c, "so", |c| {
            ok(
                c,
                Request::InitializeCryptoCard {
                    keys: CryptoCardKeys::Generate,
                    ca_certificate: load_ca.then_some(ca),
                    provider_public_key: load_provider.then(|| provider.public_key().to_vec()),
                },
            )
        }) {
            Response::CryptoCard(out) => *out,
            other => panic!("unexpected {other:?}"),
        };
        let (package, public_key) = match ok(&mut c, Request::InitializePsd { device: DEVICE }) {
            Response::PsdInitialized {
                package,
                public_key,
                ..
            } => (package, public_key),
            other => panic!("unexpected {other:?}"),
        };
        Self {
            f,
            _m: m,
            c,
            pki,
            provider,
            registration: card.decryption_public_key,
            package,
            public_key,
            seq: 0,
            checkpoint: None,
        }
    }

    /// A certificate for this PSD's key, issued by the test CA.
    pub(crate) fn good_cert(&self) -> Vec<u8> {
        make_psd_cert(
            self.pki.path(),
            "ca",
            &self.public_key,
            &DEVICE.to_string(),
            "0102030405",
            30,
        )
    }

    /// Sets the module's clock to `t`.
    pub(crate) fn set_time(&mut self, t: i64) {
        let now = status(&mut self.c).time;
        self.f.clock.advance(t - now);
        assert_eq!(status(&mut self.c).time, t);
    }

    /// Sets the module time inside `cert`'s validity.
    pub(crate) fn time_for(&mut self, cert: &[u8]) {
        self.set_time(validity(cert).0 + 60);
    }

    pub(crate) fn updated(&mut self, req: Request, state: PsdState) {
        match ok(&mut self.c, req) {
            Response::PsdUpdated {
                package,
                state: s,
                checkpoint,
            } => {
                assert_eq!(s, state);
                self.checkpoint = Some(checkpoint);
                assert_eq!(self.retrieve_state(&package), state);
                self.package = package;
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    pub(crate) fn retrieve_state(&mut self, package: &SealedPackage) -> PsdState {
        match ok(
            &mut self.c,
            Request::RetrievePsdPublicKey {
                package: package.clone(),
                checkpoint: self.checkpoint.clone(),
            },
        ) {
            Response::PsdPublicKey(p) => p.state,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Raw -> unleased with a good certificate.
    pub(crate) fn authorize_psd(&mut self) {
        let cert = self.good_cert();
        self.time_for(&cert);
        let req = Request::AuthorizePsd {
            package: self.package.clone(),
            checkpoint: self.checkpoint.clone(),
            certificate_der: cert,
        };
        self.updated(req, PsdState::Unleased);
    }

    pub(crate) fn secrets_for(
        &self,
        device: DeviceId,
        recipient: &[u8],
        password: &str,
    ) -> HpkeSealed {
        psd::seal_customer_secrets(
            &mut rng(),
            recipient,
            &device,
            &CustomerSecrets {
                user_id: USER.into(),
                hmac_key: Zeroizing::new(HMAC_KEY),
                password: Zeroizing::new(password.into()),
            },
        )
        .unwrap()
    }

    pub(crate) fn configure_request(&self, secrets: HpkeSealed) -> Request {
        Request::ConfigurePsd {
            package: self.package.clone(),
            checkpoint: self.checkpoint.clone(),
            secrets,
        }
    }

    /// Unleased -> assigned; checks the module's MAC.
    pub(crate) fn configure(&mut self) {
        let secrets = self.secrets_for(DEVICE, &self.registration.clone(), PASSWORD);
        let req = self.configure_request(secrets);
        match ok(&mut self.c, req) {
            Response::PsdConfigured {
                package,
                challenge,
                mac,
                checkpoint,
            } => {
                self.checkpoint = Some(checkpoint);
                assert_eq!(
                    mac,
                    psd::configure_mac(&HMAC_KEY, &DEVICE, USER, &challenge),
                    "the module proves it received the customer's key"
                );
                assert_ne!(mac, psd::configure_mac(&[0; 32], &DEVICE, USER, &challenge));
                assert_eq!(self.retrieve_state(&package), PsdState::Assigned);
                self.package = package;
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The next provider message, signed by the provider key.
    pub(crate) fn signed(&mut self, command: ProviderCommand) -> ProviderMessage {
        self.seq += 1;
        let body = ProviderBody {
            device_id: DEVICE.to_string(),
            sequence: self.seq,
            command,
        };
        let signature = self.provider.sign(&body.signing_bytes()).unwrap();
        ProviderMessage { body, signature }
    }

    pub(crate) fn authorize_customer_request(&mut self, max_descending_mills: u64) -> Request {
        let message = self.signed(ProviderCommand::AuthorizeCustomer {
            licensing_zip: ZIP,
            max_descending_mills,
        });
        Request::AuthorizeCustomer {
            package: self.package.clone(),
            checkpoint: self.checkpoint.clone(),
            message,
        }
    }

    /// Assigned -> leased, max DR $500.00.
    pub(crate) fn authorize_customer(&mut self) {
        let req = self.authorize_customer_request(psd::MAX_DESCENDING_CAP);
        self.updated(req, PsdState::Leased);
    }

    pub(crate) fn download_request(
        &mut self,
        amount_mills: u64,
        control_total_mills: u64,
    ) -> Request {
        let message = self.signed(ProviderCommand::Download {
            amount_mills,
            control_total_mills,
        });
        Request::DownloadPostageValue {
            package: self.package.clone(),
            checkpoint: self.checkpoint.clone(),
            message,
        }
    }

    pub(crate) fn download(&mut self, amount: u64, control_total: u64) {
        let req = self.download_request(amount, control_total);
        self.updated(req, PsdState::Leased);
    }

    /// A leased meter.
    pub(crate) fn leased() -> Self {
        let mut m = Self::new();
        m.authorize_psd();
        m.configure();
        m.authorize_customer();
        m
    }

    /// The NVM image without its audit chain state (which every audited
    /// command, refusals included, advances).
    pub(crate) fn nvm_without_audit(&self) -> Vec<u8> {
        nvm_without_audit_of(&self.f)
    }

    /// Sends a request that must be refused; checks that it changed nothing
    /// but the refusal's own audit entry, and returns the error.
    #[track_caller]
    pub(crate) fn refused(&mut self, req: Request) -> ModuleError {
        let nvm = self.nvm_without_audit();
        let log_len = audit_log(&self.f).len();
        let kind = req.kind();
        let e = run_err(&mut self.c, req);
        let log = audit_log(&self.f);
        assert_eq!(log.len(), log_len + 1, "one audit entry for the refusal");
        let entry = log.last().unwrap();
        assert_eq!(entry.command, kind.name());
        assert_eq!(entry.reason, e.reason_code());
        assert_eq!(self.nvm_without_audit(), nvm, "the refusal changed the NVM");
        e
    }
}

#[track_caller]
pub(crate) fn assert_rejected(e: &ModuleError, needle: &str) {
    assert!(
        matches!(e, ModuleError::Rejected(m) if m.contains(needle)),
        "expected Rejected({needle:?}), got {e:?}"
    );
}

#[track_caller]
pub(crate) fn assert_invalid(e: &ModuleError, needle: &str) {
    assert!(
        matches!(e, ModuleError::Invalid(m) if m.contains(needle)),
        "expected Invalid({needle:?}), got {e:?}"
    );
}

#[test]
fn a_psd_goes_from_raw_to_leased_and_takes_two_downloads() {
    let mut m = Meter::new();
    assert_eq!(m.retrieve_state(&m.package.clone()), PsdState::Raw);
    m.authorize_psd();
    // The certificate serial's low 32 bits are in the package.
    match ok(
        &mut m.c,
        Request::RetrievePsdPublicKey {
            package: m.package.clone(),
            checkpoint: m.checkpoint.clone(),
        },
    ) {
        Response::PsdPublicKey(p) => assert_eq!(p.certificate_serial, Some(0x0203_0405)),
        other => panic!("unexpected {other:?}"),
    }
    m.configure();
    m.authorize_customer();
    m.download(200_000, 0);
    m.download(100_000, 200_000);
    assert_eq!(m.retrieve_state(&m.package.clone()), PsdState::Leased);

    // Each step is audited with what changed, and no secret is in the log.
    let log = audit_log(&m.f);
    let find = |cmd: &str| -> Vec<&postvault_audit::AuditEntry> {
        log.iter()
            .filter(|e| e.command == cmd && e.reason == "ok")
            .collect()
    };
    let a = find("AuthorizePsd");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].data["device"], DEVICE.to_string());
    assert_eq!(a[0].data["certificate_serial"], 0x0203_0405u32.to_string());
    assert_eq!(a[0].data["state"], "unleased");
    let cfg = find("ConfigurePsd");
    assert_eq!(cfg[0].data["user"], USER);
    assert_eq!(cfg[0].data["state"], "assigned");
    let ac = find("AuthorizeCustomer");
    assert_eq!(ac[0].data["licensing_zip"], "100010001");
    assert_eq!(ac[0].data["max_descending_mills"], "500000");
    assert_eq!(ac[0].data["state"], "leased");
    let d = find("DownloadPostageValue");
    assert_eq!(d.len(), 2);
    assert_eq!(d[1].data["amount_mills"], "100000");
    assert_eq!(d[1].data["descending_mills"], "300000");
    assert_eq!(d[1].data["control_total_mills"], "300000");
    assert_eq!(d[1].data["sequence"], "3");
    let all: String = log.iter().map(|e| e.to_json_line()).collect();
    assert!(!all.contains(PASSWORD));
    assert!(!all.contains(&hex::encode(HMAC_KEY)));
    assert!(!all.contains("argon2"));
}

#[test]
fn authorize_psd_refuses_a_certificate_from_another_ca() {
    let mut m = Meter::new();
    make_ca(m.pki.path(), "other");
    let cert = make_psd_cert(
        m.pki.path(),
        "other",
        &m.public_key,
        &DEVICE.to_string(),
        "05",
        30,
    );
    m.time_for(&cert);
    let req = Request::AuthorizePsd {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        certificate_der: cert,
    };
    assert_rejected(&m.refused(req), "does not verify with the CA certificate");
    m.authorize_psd();
}

#[test]
fn authorize_psd_refuses_a_certificate_for_another_key() {
    let mut m = Meter::new();
    let other = EcdsaP256KeyPair::generate(&Faults::default()).unwrap();
    let cert = make_psd_cert(
        m.pki.path(),
        "ca",
        &other.public_key(),
        &DEVICE.to_string(),
        "06",
        30,
    );
    m.time_for(&cert);
    let req = Request::AuthorizePsd {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        certificate_der: cert,
    };
    assert_rejected(&m.refused(req), "certifies another key");
    m.authorize_psd();
}

#[test]
fn authorize_psd_refuses_a_certificate_naming_another_device() {
    let mut m = Meter::new();
    let cert = make_psd_cert(
        m.pki.path(),
        "ca",
        &m.public_key,
        &OTHER_DEVICE.to_string(),
        "07",
        30,
    );
    m.time_for(&cert);
    let req = Request::AuthorizePsd {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        certificate_der: cert,
    };
    assert_rejected(&m.refused(req), "names device");
    m.authorize_psd();
}

#[test]
fn authorize_psd_refuses_a_ca_certificate() {
    let mut m = Meter::new();
    std::fs::write(
        m.pki.path().join("ca-flag.ext"),
        "basicConstraints=critical,CA:TRUE\n",
    )
    .unwrap();
    let cert = make_psd_cert_with(
        m.pki.path(),
        "ca",
        &m.public_key,
        &format!("/CN={DEVICE}"),
        "08",
        30,
        &["-extfile", "ca-flag.ext"],
    );
    m.time_for(&cert);
    let req = Request::AuthorizePsd {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        certificate_der: cert,
    };
    assert_invalid(&m.refused(req), "is a CA certificate");
    m.authorize_psd();
}

#[test]
fn authorize_psd_refuses_a_subject_with_two_common_names() {
    let mut m = Meter::new();
    let cert = make_psd_cert_with(
        m.pki.path(),
        "ca",
        &m.public_key,
        &format!("/CN={DEVICE}/CN={OTHER_DEVICE}"),
        "09",
        30,
        &[],
    );
    m.time_for(&cert);
    let req = Request::AuthorizePsd {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        certificate_der: cert,
    };
    assert_invalid(&m.refused(req), "exactly one CN");
    m.authorize_psd();
}

#[test]
fn authorize_psd_refuses_a_certificate_signed_with_another_digest() {
    let mut m = Meter::new();
    // The right CA key, but ecdsa-with-SHA384: only ecdsa-with-SHA256 is accepted.
    let cert = make_psd_cert_with(
        m.pki.path(),
        "ca",
        &m.public_key,
        &format!("/CN={DEVICE}"),
        "0a",
        30,
        &["-sha384"],
    );
    m.time_for(&cert);
    let req = Request::AuthorizePsd {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        certificate_der: cert,
    };
    assert_invalid(&m.refused(req), "not signed with ecdsa-with-SHA256");
    m.authorize_psd();
}

#[test]
fn authorize_psd_refuses_an_expired_certificate() {
    let mut m = Meter::new();
    let cert = m.good_cert();
    let (_, not_after) = validity(&cert);
    m.set_time(not_after);
    let req = Request::AuthorizePsd {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        certificate_der: cert,
    };
    assert_rejected(&m.refused(req), "has expired");
}

#[test]
fn authorize_psd_refuses_a_certificate_not_yet_valid() {
    let mut m = Meter::new();
    let cert = m.good_cert();
    let (not_before, _) = validity(&cert);
    m.set_time(not_before - 1);
    let req = Request::AuthorizePsd {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        certificate_der: cert,
    };
    assert_rejected(&m.refused(req), "not valid yet");
}

#[test]
fn authorize_psd_runs_once() {
    let mut m = Meter::new();
    m.authorize_psd();
    let req = Request::AuthorizePsd {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        certificate_der: m.good_cert(),
    };
    let e = m.refused(req);
    assert!(
        matches!(
            e,
            ModuleError::PsdDenied {
                state: PsdState::Unleased,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn authorize_psd_needs_a_ca_certificate_in_the_crypto_card() {
    let mut m = Meter::with_ca(false);
    let cert = m.good_cert();
    m.time_for(&cert);
    let req = Request::AuthorizePsd {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        certificate_der: cert,
    };
    let e = m.refused(req);
    assert!(
        matches!(&e, ModuleError::KeyState(s) if s.contains("--ca-cert")),
        "{e:?}"
    );
}

#[test]
fn authorize_psd_refuses_garbage() {
    let mut m = Meter::new();
    let req = Request::AuthorizePsd {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        certificate_der: vec![0x30, 0x03, 1, 2, 3],
    };
    assert_invalid(&m.refused(req), "not a DER X.509 certificate");
}

#[test]
fn configure_psd_refuses_secrets_sealed_to_another_key() {
    let mut m = Meter::new();
    m.authorize_psd();
    let other = HpkeKeyPair::generate(&mut rng(), &Faults::default()).unwrap();
    let secrets = m.secrets_for(DEVICE, &other.public_key(), PASSWORD);
    let req = m.configure_request(secrets);
    assert_rejected(
        &m.refused(req),
        "sealed secrets do not open with this deployment's registration key",
    );
    m.configure();
}

#[test]
fn configure_psd_refuses_secrets_sealed_for_another_device() {
    let mut m = Meter::new();
    m.authorize_psd();
    let secrets = m.secrets_for(OTHER_DEVICE, &m.registration.clone(), PASSWORD);
    let req = m.configure_request(secrets);
    assert_rejected(&m.refused(req), "sealed secrets do not open");
    m.configure();
}

#[test]
fn configure_psd_refuses_a_weak_password() {
    let mut m = Meter::new();
    m.authorize_psd();
    let secrets = m.secrets_for(DEVICE, &m.registration.clone(), "short");
    let req = m.configure_request(secrets);
    let e = m.refused(req);
    assert!(matches!(e, ModuleError::PasswordRejected(_)), "{e:?}");
    m.configure();
}

#[test]
fn customer_secrets_never_show_in_debug() {
    let s = CustomerSecrets {
        user_id: USER.into(),
        hmac_key: Zeroizing::new(HMAC_KEY),
        password: Zeroizing::new(PASSWORD.into()),
    };
    let text = format!("{s:?}");
    assert!(text.contains(USER));
    assert!(!text.contains(PASSWORD));
    assert!(!text.contains("90"), "{text}");
}

/// An assigned meter (for the Authorize Customer refusals).
pub(crate) fn assigned() -> Meter {
    let mut m = Meter::new();
    m.authorize_psd();
    m.configure();
    m
}

#[test]
fn provider_messages_need_a_provider_key_in_the_crypto_card() {
    let mut m = Meter::with_card(true, false);
    m.authorize_psd();
    m.configure();
    let req = m.authorize_customer_request(psd::MAX_DESCENDING_CAP);
    let e = m.refused(req);
    assert!(
        matches!(&e, ModuleError::KeyState(s) if s.contains("no provider public key")),
        "{e:?}"
    );
    assert_eq!(m.retrieve_state(&m.package.clone()), PsdState::Assigned);
}

#[test]
fn authorize_customer_refuses_a_bad_signature() {
    let mut m = assigned();
    let mut req = m.authorize_customer_request(psd::MAX_DESCENDING_CAP);
    if let Request::AuthorizeCustomer { message, .. } = &mut req {
        message.signature[10] ^= 1;
    }
    assert_rejected(&m.refused(req), "provider signature");
    m.authorize_customer();
}

#[test]
fn authorize_customer_refuses_a_message_signed_by_another_key() {
    let mut m = assigned();
    let mut req = m.authorize_customer_request(psd::MAX_DESCENDING_CAP);
    let other = EcdsaP256KeyPair::generate(&Faults::default()).unwrap();
    if let Request::AuthorizeCustomer { message, .. } = &mut req {
        message.signature = other.sign(&message.body.signing_bytes()).unwrap();
    }
    assert_rejected(&m.refused(req), "provider signature");
}

#[test]
fn authorize_customer_refuses_another_devices_message() {
    let mut m = assigned();
    m.seq += 1;
    let body = ProviderBody {
        device_id: OTHER_DEVICE.to_string(),
        sequence: m.seq,
        command: ProviderCommand::AuthorizeCustomer {
            licensing_zip: ZIP,
            max_descending_mills: 1_000,
        },
    };
    let signature = m.provider.sign(&body.signing_bytes()).unwrap();
    let req = Request::AuthorizeCustomer {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        message: ProviderMessage { body, signature },
    };
    assert_rejected(&m.refused(req), "is for device");
    m.authorize_customer();
}

#[test]
fn authorize_customer_refuses_a_replayed_sequence() {
    let mut m = assigned();
    // Sequence 0 is not above the package's last (0).
    let body = ProviderBody {
        device_id: DEVICE.to_string(),
        sequence: 0,
        command: ProviderCommand::AuthorizeCustomer {
            licensing_zip: ZIP,
            max_descending_mills: 1_000,
        },
    };
    let signature = m.provider.sign(&body.signing_bytes()).unwrap();
    let req = Request::AuthorizeCustomer {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        message: ProviderMessage { body, signature },
    };
    assert_rejected(&m.refused(req), "replayed provider message");
    m.authorize_customer();
}

#[test]
fn authorize_customer_refuses_a_maximum_over_the_cap() {
    let mut m = assigned();
    let req = m.authorize_customer_request(psd::MAX_DESCENDING_CAP + 1);
    assert_invalid(&m.refused(req), "maximum descending register");
    let req = m.authorize_customer_request(0);
    assert_invalid(&m.refused(req), "maximum descending register");
    m.authorize_customer();
}

#[test]
fn authorize_customer_refuses_a_bad_licensing_zip() {
    let mut m = assigned();
    for zip in [0, 9_999, 1_000_000_000] {
        let message = m.signed(ProviderCommand::AuthorizeCustomer {
            licensing_zip: zip,
            max_descending_mills: 1_000,
        });
        let req = Request::AuthorizeCustomer {
            package: m.package.clone(),
            checkpoint: m.checkpoint.clone(),
            message,
        };
        assert_invalid(&m.refused(req), "licensing ZIP");
    }
    m.authorize_customer();
}

#[test]
fn authorize_customer_refuses_a_download_message() {
    let mut m = assigned();
    let message = m.signed(ProviderCommand::Download {
        amount_mills: 1,
        control_total_mills: 0,
    });
    let req = Request::AuthorizeCustomer {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        message,
    };
    assert_invalid(&m.refused(req), "not an Authorize Customer command");
}

#[test]
fn download_refuses_a_wrong_control_total() {
    let mut m = Meter::leased();
    m.download(1_000, 0);
    let req = m.download_request(1_000, 0);
    assert_rejected(
        &m.refused(req),
        "control total mismatch: the provider's books say 0 mills, the meter says 1000 mills",
    );
    m.download(1_000, 1_000);
}

#[test]
fn download_refuses_zero() {
    let mut m = Meter::leased();
    let req = m.download_request(0, 0);
    assert_invalid(&m.refused(req), "more than 0 mills");
}

#[test]
fn download_refuses_going_over_the_maximum_descending_register() {
    let mut m = Meter::leased();
    let req = m.download_request(psd::MAX_DESCENDING_CAP + 1, 0);
    assert_invalid(&m.refused(req), "over its maximum of 500000 mills");
    m.download(400_000, 0);
    let req = m.download_request(100_001, 400_000);
    assert_invalid(&m.refused(req), "over its maximum of 500000 mills");
    let req = m.download_request(u64::MAX, 400_000);
    assert_invalid(&m.refused(req), "over its maximum");
    m.download(100_000, 400_000);
}

#[test]
fn download_refuses_a_replay_of_the_same_signed_message() {
    let mut m = Meter::leased();
    let req = m.download_request(5_000, 0);
    m.updated(req.clone(), PsdState::Leased);
    let Request::DownloadPostageValue { message, .. } = req else {
        unreachable!()
    };
    let replay = Request::DownloadPostageValue {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        message,
    };
    assert_rejected(&m.refused(replay), "replayed provider message");
}

#[test]
fn download_before_authorize_customer_is_refused_by_the_psd_state() {
    let mut m = assigned();
    let req = m.download_request(1_000, 0);
    let e = m.refused(req);
    assert!(
        matches!(
            e,
            ModuleError::PsdDenied {
                state: PsdState::Assigned,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn provider_signing_bytes_are_domain_separated() {
    let body = ProviderBody {
        device_id: DEVICE.to_string(),
        sequence: 1,
        command: ProviderCommand::Refund { date: 20_261_123 },
    };
    let bytes = body.signing_bytes();
    assert!(bytes.starts_with(psd::PROVIDER_SIGNING_PREFIX));
    assert_eq!(
        &bytes[psd::PROVIDER_SIGNING_PREFIX.len()..],
        postcard::to_stdvec(&body).unwrap().as_slice()
    );
}

/// A leased package of [`DEVICE`] with these registers, built directly
/// (its key tokens are placeholders, never opened).
fn leased_package(ascending: u64, descending: u64) -> psd::PsdPackage {
    use postvault_module::keys::{KeyToken, KeyType, KeyUsage};
    let token = |key_type, usage| KeyToken {
        version: 1,
        key_type,
        usage,
        expires: None,
        exportable: false,
        mks_generation: 1,
        mks_id: [0; 16],
        identity: DEVICE.identity(),
        sealed: vec![0; 60],
    };
    psd::PsdPackage {
        version: psd::PACKAGE_VERSION,
        device: DEVICE,
        state: PsdState::Leased,
        ascending,
        descending,
        control_total: ascending + descending,
        max_descending: psd::DEFAULT_MAX_DESCENDING_MILLS,
        certificate_serial: None,
        licensing_zip: Some(ZIP),
        signing_key: token(KeyType::EcdsaP256, KeyUsage::IndiciumSigning),
        kek: token(KeyType::Aes256, KeyUsage::KeyEncrypting),
        users: Vec::new(),
        last_transaction: None,
        last_challenge: None,
        key_expiry: None,
        piece_count: 0,
        last_provider_sequence: 0,
        reset_user: None,
        stamp: None,
    }
}

#[test]
fn a_broken_register_invariant_is_an_internal_error() {
    let mut p = leased_package(1_000, 2_000);
    assert_eq!(p.check_registers(), Ok(()));
    p.descending += 1;
    assert!(matches!(p.check_registers(), Err(ModuleError::Internal(_))));
    p.ascending = u64::MAX;
    assert!(matches!(p.check_registers(), Err(ModuleError::Internal(_))));
}

/// Download Postage Value's amount checks, on packages no test could fund
/// through the module (an AR near 2^40 mills): the command runs exactly
/// [`psd::PsdPackage::registers_after_download`].
#[test]
fn downloads_keep_dr_under_its_maximum_and_ar_under_its_limit() {
    let p = leased_package(1_000, 2_000);
    assert_eq!(p.registers_after_download(498_000), Ok((500_000, 501_000)));
    assert_invalid(
        &p.registers_after_download(0).unwrap_err(),
        "more than 0 mills",
    );
    assert_invalid(
        &p.registers_after_download(498_001).unwrap_err(),
        "from 2000 over its maximum of 500000 mills",
    );
    assert_invalid(
        &p.registers_after_download(u64::MAX).unwrap_err(),
        "over its maximum",
    );

    // A meter that has printed almost 2^40 mills in its life: AR may reach
    // AR_LIMIT - 1 and no further, whatever the DR maximum says.
    let p = leased_package(psd::AR_LIMIT - 500, 0);
    assert_eq!(
        p.registers_after_download(499),
        Ok((499, psd::AR_LIMIT - 1))
    );
    assert_invalid(
        &p.registers_after_download(500).unwrap_err(),
        &format!("reach its limit of {} mills", psd::AR_LIMIT),
    );
    let p = leased_package(psd::AR_LIMIT - 500, 200);
    assert_eq!(
        p.registers_after_download(299),
        Ok((499, psd::AR_LIMIT - 1))
    );
    assert_invalid(
        &p.registers_after_download(300).unwrap_err(),
        "reach its limit",
    );
}

/// The NVM image of the module in `f` without its audit chain state (which
/// every audited command, refusals included, advances).
pub(crate) fn nvm_without_audit_of(f: &Fixture) -> Vec<u8> {
    let seal = open_provider(
        &SealConfig::File {
            key_path: f.path().join("seal.key"),
        },
        false,
    )
    .unwrap();
    let mut image = NvmStore::new(&f.path().join("module"), seal)
        .load()
        .unwrap()
        .expect("an NVM");
    image.audit = None;
    postcard::to_stdvec(&image).unwrap()
}
