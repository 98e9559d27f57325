//! The certificate authority inside the module (issue 4 item 5, seed 002's
//! CA and MeterGen): the Security Officer creates a CA whose key exists only
//! as a key token; the Certificate Authority role certifies raw PSDs with
//! it; `openssl verify` accepts the chain, and Authorize PSD accepts the
//! certificate. Refusals change nothing.
use std::path::Path;
use std::process::Command;

use postvault_module::error::ModuleError;
use postvault_module::keys::{KeyToken, KeyType, KeyUsage};
use postvault_module::protocol::{CryptoCardKeys, CryptoCardOutput};
use postvault_module::psd::{DeviceId, PsdState, SealedPackage};
use postvault_module::{ModuleClient, Request, Response};

use crate::common::*;

const DEVICE: DeviceId = DeviceId {
    vendor: 42,
    model: 1,
    serial: 77,
};

/// A module with a CA (made by the SO) loaded in its crypto card, and a
/// Certificate Authority user.
struct Ca {
    f: Fixture,
    _m: std::sync::Arc<std::sync::Mutex<postvault_module::Module>>,
    c: ModuleClient,
    key: KeyToken,
    cert: Vec<u8>,
}

fn with_ca() -> Ca {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    create_other_roles(&mut c);
    let (key, cert) = as_user(&mut c, "so", |c| {
        let (key, cert) = match ok(
            c,
            Request::CreateCertificateAuthority {
                common_name: "postvault test CA".into(),
                days: 365,
            },
        ) {
            Response::CertificateAuthority {
                key,
                certificate_der,
            } => (key, certificate_der),
            other => panic!("unexpected {other:?}"),
        };
        match ok(
            c,
            Request::InitializeCryptoCard {
                keys: CryptoCardKeys::Generate,
                ca_certificate: Some(cert.clone()),
                provider_public_key: None,
            },
        ) {
            Response::CryptoCard(out) => {
                let _: CryptoCardOutput = *out;
            }
            other => panic!("unexpected {other:?}"),
        }
        (key, cert)
    });
    assert_eq!(key.usage, KeyUsage::CertificateSigning);
    Ca {
        f,
        _m: m,
        c,
        key,
        cert,
    }
}

fn init(c: &mut ModuleClient, device: DeviceId) -> SealedPackage {
    match ok(c, Request::InitializePsd { device }) {
        Response::PsdInitialized { package, .. } => package,
        other => panic!("unexpected {other:?}"),
    }
}

fn issue(ca: &mut Ca, package: &SealedPackage, serial: u64) -> Result<Vec<u8>, ModuleError> {
    let req = Request::IssuePsdCertificate {
        ca_key: ca.key.clone(),
        ca_certificate_der: ca.cert.clone(),
        package: package.clone(),
        serial,
        days: 30,
    };
    ca.c.logon("ca", &pw("ca")).unwrap();
    let r = ca.c.run(&req);
    ca.c.logoff().unwrap();
    match r {
        Ok(Response::PsdCertificate { certificate_der }) => Ok(certificate_der),
        Ok(other) => panic!("unexpected {other:?}"),
        Err(postvault_module::ClientError::Module(e)) => Err(e),
        Err(e) => panic!("{e}"),
    }
}

fn pem(dir: &Path, name: &str, der: &[u8]) {
    std::fs::write(dir.join(format!("{name}.der")), der).unwrap();
    let out = Command::new("/usr/bin/openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(format!("{name}.der"))
        .args(["-out"])
        .arg(format!("{name}.pem"))
        .current_dir(dir)
        .output()
        .expect("run /usr/bin/openssl (install openssl: run scripts/test.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_module_ca_certifies_a_psd_and_openssl_and_authorize_psd_accept_it() {
    let mut ca = with_ca();
    let package = init(&mut ca.c, DEVICE);
    let cert = issue(&mut ca, &package, 0x0102_0304_0506).unwrap();
    // openssl checks the chain on its own.
    let dir = tempfile::tempdir().unwrap();
    pem(dir.path(), "ca", &ca.cert);
    pem(dir.path(), "psd", &cert);
    let out = Command::new("/usr/bin/openssl")
        .args(["verify", "-attime"])
        .arg((T0 + 60).to_string())
        .args(["-CAfile", "ca.pem", "psd.pem"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = Command::new("/usr/bin/openssl")
        .args(["x509", "-in", "psd.pem", "-noout", "-subject", "-serial"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("CN=0042-0001-00000077") || text.contains("CN = 0042-0001-00000077"),
        "{text}"
    );
    assert!(text.contains("serial=010203040506"), "{text}");
    // Authorize PSD accepts it: the serial's low 32 bits are recorded.
    let package = match ok(
        &mut ca.c,
        Request::AuthorizePsd {
            package,
            checkpoint: None,
            certificate_der: cert,
        },
    ) {
        Response::PsdUpdated { package, state, .. } => {
            assert_eq!(state, PsdState::Unleased);
            package
        }
        other => panic!("unexpected {other:?}"),
    };
    // A certified package cannot be certified again.
    let e = issue(&mut ca, &package, 9).unwrap_err();
    assert!(
        matches!(&e, ModuleError::Invalid(m) if m.contains("not raw")),
        "{e:?}"
    );
}

#[test]
fn issue_psd_certificate_refuses_bad_serials_days_and_keys() {
    let mut ca = with_ca();
    let package = init(&mut ca.c, DEVICE);
    let log = audit_log(&ca.f).len();
    for serial in [0, 1 << 32, u64::MAX] {
        let e = issue(&mut ca, &package, serial).unwrap_err();
        assert!(
            matches!(&e, ModuleError::Invalid(m) if m.contains("serial")),
            "{serial}: {e:?}"
        );
    }
    // Another CA's key with this CA's certificate.
    let other = as_user(&mut ca.c, "so", |c| {
        match ok(
            c,
            Request::CreateCertificateAuthority {
                common_name: "another CA".into(),
                days: 10,
            },
        ) {
            Response::CertificateAuthority { key, .. } => key,
            other => panic!("unexpected {other:?}"),
        }
    });
    let mine = std::mem::replace(&mut ca.key, other);
    let e = issue(&mut ca, &package, 5).unwrap_err();
    assert!(
        matches!(&e, ModuleError::Rejected(m) if m.contains("does not belong")),
        "{e:?}"
    );
    // A key token of another usage is no CA key.
    ca.key = KeyToken {
        usage: KeyUsage::General,
        ..mine.clone()
    };
    let e = issue(&mut ca, &package, 5).unwrap_err();
    assert!(
        matches!(&e, ModuleError::Rejected(m) if m.contains("not a certificate-signing key")),
        "{e:?}"
    );
    assert_eq!(mine.key_type, KeyType::EcdsaP256);
    ca.key = mine;
    // Bad validity.
    let req = Request::IssuePsdCertificate {
        ca_key: ca.key.clone(),
        ca_certificate_der: ca.cert.clone(),
        package: package.clone(),
        serial: 5,
        days: 0,
    };
    let e = as_user(&mut ca.c, "ca", |c| run_err(c, req));
    assert!(
        matches!(&e, ModuleError::Invalid(m) if m.contains("1 to 3653 days")),
        "{e:?}"
    );
    // Every refusal was audited; the good request still works.
    assert!(audit_log(&ca.f).len() > log);
    issue(&mut ca, &package, 5).unwrap();
}

#[test]
fn only_the_certificate_authority_role_issues() {
    let mut ca = with_ca();
    let package = init(&mut ca.c, DEVICE);
    let req = Request::IssuePsdCertificate {
        ca_key: ca.key.clone(),
        ca_certificate_der: ca.cert.clone(),
        package,
        serial: 5,
        days: 30,
    };
    for user in ["so", "provider", "customer"] {
        let e = as_user(&mut ca.c, user, |c| run_err(c, req.clone()));
        assert!(matches!(e, ModuleError::Denied { .. }), "{user}: {e:?}");
    }
    assert!(matches!(
        run_err(&mut ca.c, req),
        ModuleError::Denied { .. }
    ));
}
