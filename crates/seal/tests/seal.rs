//! Tests of postvault-seal: the key-file provider, specification parsing,
//! and the PKCS#11 provider against a real SoftHSM2.
//!
//! SoftHSM reads its configuration (`SOFTHSM2_CONF`) once, at
//! `C_Initialize`, and environment variables are process-global. So each
//! PKCS#11 case runs in a child process of this test binary, started with
//! its own `SOFTHSM2_CONF` pointing at a fresh token directory: the cases
//! are isolated from each other and from the developer's own tokens, and
//! nothing here changes this process's environment. The PKCS#11 cases never
//! skip: without SoftHSM2 they fail and say how to install it.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use postvault_seal::format::{HEADER_LEN, IV_LEN, MIN_SEALED_LEN, TAG_LEN};
use postvault_seal::{
    DEFAULT_KEY_LABEL, DEFAULT_PKCS11_MODULES, ProviderKind, SealConfig, SealError, SealProvider,
    UnsealReason, open_provider, sealed_by,
};

const AAD: &[u8] = b"postvault nvm v1";

fn file_provider(dir: &Path, name: &str, create: bool) -> Result<Box<dyn SealProvider>, SealError> {
    let config = SealConfig::File {
        key_path: dir.join(name),
    };
    open_provider(&config, create)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[track_caller]
fn assert_unseal(result: Result<postvault_crypto::SecretBytes, SealError>, want: UnsealReason) {
    match result {
        Err(SealError::Unseal { reason, .. }) => assert_eq!(reason, want),
        Err(other) => panic!("expected Unseal({want:?}), got {other:?}"),
        Ok(_) => panic!("expected Unseal({want:?}), but unsealing succeeded"),
    }
}

/// Checks that changing any single region of `sealed` makes it fail to unseal.
fn check_tamper(provider: &dyn SealProvider, sealed: &[u8]) {
    let flip = |i: usize| {
        let mut t = sealed.to_vec();
        t[i] ^= 0x01;
        provider.unseal(AAD, &t)
    };
    // Header: magic, version, provider kind.
    for i in 0..4 {
        assert_unseal(flip(i), UnsealReason::BadMagic);
    }
    assert_unseal(flip(4), UnsealReason::UnsupportedVersion(sealed[4] ^ 1));
    // Kind 1 (file) becomes 0, kind 2 (pkcs11) becomes 3: both unknown.
    assert_unseal(flip(5), UnsealReason::UnknownProvider(sealed[5] ^ 1));
    // IV, ciphertext body, tag.
    assert_unseal(flip(HEADER_LEN), UnsealReason::Authentication);
    assert_unseal(flip(HEADER_LEN + IV_LEN - 1), UnsealReason::Authentication);
    assert_unseal(flip(HEADER_LEN + IV_LEN), UnsealReason::Authentication);
    assert_unseal(
        flip(sealed.len() - TAG_LEN - 1),
        UnsealReason::Authentication,
    );
    assert_unseal(flip(sealed.len() - TAG_LEN), UnsealReason::Authentication);
    assert_unseal(flip(sealed.len() - 1), UnsealReason::Authentication);
    // Appended bytes.
    let mut longer = sealed.to_vec();
    longer.push(0);
    assert_unseal(provider.unseal(AAD, &longer), UnsealReason::Authentication);
    // Every truncation is an error, never a panic.
    for len in 0..sealed.len() {
        let result = provider.unseal(AAD, &sealed[..len]);
        let want = if len < MIN_SEALED_LEN {
            UnsealReason::TooShort
        } else {
            UnsealReason::Authentication
        };
        assert_unseal(result, want);
    }
    // Wrong associated data, empty associated data.
    assert_unseal(
        provider.unseal(b"postvault nvm v2", sealed),
        UnsealReason::Authentication,
    );
    assert_unseal(provider.unseal(b"", sealed), UnsealReason::Authentication);
    // The untouched blob still unseals afterwards.
    provider
        .unseal(AAD, sealed)
        .expect("untouched sealed data must still unseal");
}

// ---------------------------------------------------------------- file provider

#[test]
fn file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = file_provider(dir.path(), "seal.key", true).unwrap();
    assert_eq!(
        p.describe(),
        format!("file {}", dir.path().join("seal.key").display())
    );
    for plaintext in [&b""[..], b"x", b"the NVM state", &vec![0xA5; 100_000]] {
        let sealed = p.seal(AAD, plaintext).unwrap();
        assert_eq!(sealed.len(), MIN_SEALED_LEN + plaintext.len());
        assert_eq!(&sealed[..4], b"PVSL");
        assert_eq!(sealed_by(&sealed), Ok(ProviderKind::File));
        if plaintext.len() >= 16 {
            assert!(
                !sealed.windows(16).any(|w| w == &plaintext[..16]),
                "plaintext visible in sealed output"
            );
        }
        assert_eq!(p.unseal(AAD, &sealed).unwrap().expose_secret(), plaintext);
    }
    // Fresh IV every time.
    assert_ne!(p.seal(AAD, b"same").unwrap(), p.seal(AAD, b"same").unwrap());
}

#[test]
fn file_tamper_truncation_and_wrong_aad_fail_to_unseal() {
    let dir = tempfile::tempdir().unwrap();
    let p = file_provider(dir.path(), "seal.key", true).unwrap();
    let sealed = p.seal(AAD, b"postage register values").unwrap();
    check_tamper(p.as_ref(), &sealed);
    let empty = p.seal(AAD, b"").unwrap();
    check_tamper(p.as_ref(), &empty);
}

#[test]
fn file_another_key_fails_to_unseal() {
    let dir = tempfile::tempdir().unwrap();
    let a = file_provider(dir.path(), "a.key", true).unwrap();
    let b = file_provider(dir.path(), "b.key", true).unwrap();
    let sealed = a.seal(AAD, b"secret").unwrap();
    let err = b.unseal(AAD, &sealed).unwrap_err();
    assert!(matches!(
        err,
        SealError::Unseal {
            reason: UnsealReason::Authentication,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("b.key") && msg.contains("authentication failed"),
        "{msg}"
    );
}

#[test]
fn file_key_created_0600_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seal.key");
    let first = file_provider(dir.path(), "seal.key", true).unwrap();
    assert_eq!(mode(&path), 0o600);
    let key = fs::read(&path).unwrap();
    assert_eq!(key.len(), 32);
    let sealed = first.seal(AAD, b"kept across restarts").unwrap();
    drop(first);

    // Reopened without create_key, and with it: same key, file untouched.
    for create in [false, true] {
        let again = file_provider(dir.path(), "seal.key", create).unwrap();
        assert_eq!(
            again.unseal(AAD, &sealed).unwrap().expose_secret(),
            b"kept across restarts"
        );
        assert_eq!(fs::read(&path).unwrap(), key);
    }
}

#[test]
fn file_missing_key_without_create_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = file_provider(dir.path(), "seal.key", false).err().unwrap();
    assert!(matches!(err, SealError::KeyFileMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("seal.key") && msg.contains("restore"), "{msg}");
    assert!(!dir.path().join("seal.key").exists());

    let err = file_provider(&dir.path().join("no-such-dir"), "seal.key", true)
        .err()
        .unwrap();
    assert!(matches!(err, SealError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("directory exists"), "{err}");
}

#[test]
fn file_bad_permissions_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seal.key");
    drop(file_provider(dir.path(), "seal.key", true).unwrap());
    for bad in [0o640, 0o604, 0o660, 0o644, 0o610] {
        fs::set_permissions(&path, fs::Permissions::from_mode(bad)).unwrap();
        let err = file_provider(dir.path(), "seal.key", true).err().unwrap();
        assert!(
            matches!(err, SealError::KeyFilePermissions { mode, .. } if mode == bad),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    file_provider(dir.path(), "seal.key", false).unwrap();
}

#[test]
fn file_wrong_length_or_not_a_file_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seal.key");
    let hex_key = "ab".repeat(32);
    for content in [&b""[..], &[7u8; 31][..], &[7u8; 33][..], hex_key.as_bytes()] {
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = file_provider(dir.path(), "seal.key", true).err().unwrap();
        assert!(
            matches!(err, SealError::KeyFileLength { len, .. } if len == content.len() as u64),
            "{err:?}"
        );
        assert!(err.to_string().contains("expected exactly 32"), "{err}");
        // Never replaced by create_key.
        assert_eq!(fs::read(&path).unwrap(), content);
    }
    let sub = dir.path().join("dir.key");
    fs::create_dir(&sub).unwrap();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
    let err = file_provider(dir.path(), "dir.key", true).err().unwrap();
    assert!(
        matches!(err, SealError::KeyFileNotRegular { .. }),
        "{err:?}"
    );
}

#[test]
fn file_provider_shared_between_threads() {
    let dir = tempfile::tempdir().unwrap();
    let p = file_provider(dir.path(), "seal.key", true).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let p = &p;
            s.spawn(move || {
                for i in 0..50u8 {
                    let sealed = p.seal(AAD, &[t, i]).unwrap();
                    assert_eq!(p.unseal(AAD, &sealed).unwrap().expose_secret(), &[t, i]);
                }
            });
        }
    });
}

#[test]
fn sealed_by_reads_the_header() {
    assert_eq!(sealed_by(b""), Err(UnsealReason::TooShort));
    let mut blob = vec![0u8; MIN_SEALED_LEN];
    assert_eq!(sealed_by(&blob), Err(UnsealReason::BadMagic));
    blob[..4].copy_from_slice(b"PVSL");
    blob[4] = 1;
    blob[5] = 2;
    assert_eq!(sealed_by(&blob), Ok(ProviderKind::Pkcs11));
    blob[5] = 9;
    assert_eq!(sealed_by(&blob), Err(UnsealReason::UnknownProvider(9)));
    blob[4] = 2;
    assert_eq!(sealed_by(&blob), Err(UnsealReason::UnsupportedVersion(2)));
}

// ---------------------------------------------------------------- parsing

#[track_caller]
fn parse_err(spec: &str) -> String {
    match SealConfig::parse(spec) {
        Ok(c) => panic!("{spec:?} parsed as {c:?}"),
        Err(e @ (SealError::InvalidSpec { .. } | SealError::Pin { .. })) => e.to_string(),
        Err(e) => panic!("{spec:?}: unexpected error kind {e:?}"),
    }
}

#[test]
fn parse_file_spec() {
    match SealConfig::parse("file:/var/lib/postvault/seal.key").unwrap() {
        SealConfig::File { key_path } => {
            assert_eq!(key_path, PathBuf::from("/var/lib/postvault/seal.key"))
        }
        other => panic!("{other:?}"),
    }
    match "file:relative/seal.key".parse::<SealConfig>().unwrap() {
        SealConfig::File { key_path } => assert_eq!(key_path, PathBuf::from("relative/seal.key")),
        other => panic!("{other:?}"),
    }
    assert!(parse_err("file:").contains("needs the key file path"));
    for bad in ["", "file", "/var/lib/postvault/seal.key"] {
        let msg = parse_err(bad);
        assert!(msg.contains("expected \"file:PATH\" or \"pkcs11:"), "{msg}");
    }
    assert!(parse_err("tpm:whatever").contains("unknown provider 'tpm'"));
}

#[test]
fn parse_pkcs11_spec() {
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    fs::write(&pin_file, "12 34-secret\r\n\n").unwrap();
    let module = dir.path().join("libfake.so");
    let spec = format!(
        "pkcs11:module={},token=postvault,pin-file={},key=nvm-seal",
        module.display(),
        pin_file.display()
    );
    match SealConfig::parse(&spec).unwrap() {
        ref config @ SealConfig::Pkcs11 {
            ref module,
            ref token_label,
            ref pin,
            ref key_label,
        } => {
            assert_eq!(module, &dir.path().join("libfake.so"));
            assert_eq!(token_label, "postvault");
            assert_eq!(pin.expose_secret(), "12 34-secret");
            assert_eq!(key_label, "nvm-seal");
            let debug = format!("{config:?}");
            assert!(!debug.contains("secret"), "PIN in Debug output: {debug}");
            assert!(debug.contains("<redacted>"), "{debug}");
        }
        other => panic!("{other:?}"),
    }

    // Defaults: key label, and module when one of the default paths exists.
    let spec = format!("pkcs11:token=t,pin-file={}", pin_file.display());
    match DEFAULT_PKCS11_MODULES
        .iter()
        .find(|m| Path::new(m).exists())
    {
        Some(default) => match SealConfig::parse(&spec).unwrap() {
            SealConfig::Pkcs11 {
                module, key_label, ..
            } => {
                assert_eq!(module, PathBuf::from(default));
                assert_eq!(key_label, DEFAULT_KEY_LABEL);
            }
            other => panic!("{other:?}"),
        },
        None => assert!(parse_err(&spec).contains("install softhsm2 or pass module=PATH")),
    }
}

#[test]
fn parse_pkcs11_spec_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    fs::write(&pin_file, "1234\n").unwrap();
    let pf = pin_file.display();
    let m = "module=/x/lib.so";

    let cases: Vec<(String, &str)> = vec![
        ("pkcs11:".into(), "needs at least token="),
        (format!("pkcs11:{m},pin-file={pf}"), "missing token=LABEL"),
        (
            format!("pkcs11:{m},token=t"),
            "missing pin-file=PATH or pin-env=VAR",
        ),
        (
            format!("pkcs11:{m},token=t,pin-file={pf},pin-env=X"),
            "not both",
        ),
        (
            format!("pkcs11:{m},token=t,token=u,pin-file={pf}"),
            "token= is given twice",
        ),
        (
            format!("pkcs11:{m},token=,pin-file={pf}"),
            "token= is empty",
        ),
        (
            format!("pkcs11:{m},token=t,pin-file={pf},colour=blue"),
            "unknown pkcs11 item 'colour'",
        ),
        (
            format!("pkcs11:{m},token=t,pin-file={pf},justtext"),
            "item 4 is not NAME=VALUE",
        ),
        (
            format!("pkcs11:{m},token={},pin-file={pf}", "x".repeat(33)),
            "at most 32",
        ),
        (
            format!(
                "pkcs11:{m},token=t,pin-file={}/missing",
                dir.path().display()
            ),
            "cannot read pin-file",
        ),
        (
            format!("pkcs11:{m},token=t,pin-env=POSTVAULT_SEAL_TEST_SURELY_UNSET"),
            "is not set",
        ),
    ];
    for (spec, want) in cases {
        let msg = parse_err(&spec);
        assert!(msg.contains(want), "{spec:?}: {msg:?} lacks {want:?}");
    }

    let empty = dir.path().join("empty-pin");
    fs::write(&empty, "\n").unwrap();
    let msg = parse_err(&format!("pkcs11:{m},token=t,pin-file={}", empty.display()));
    assert!(msg.contains("is empty"), "{msg}");

    // An inline PIN is refused, and never echoed.
    for spec in [
        "pkcs11:token=t,pin=987654",
        "pkcs11:token=t,so-pin=987654",
        "pkcs11:token=t,987654",
    ] {
        let msg = parse_err(spec);
        assert!(!msg.contains("987654"), "PIN echoed in {msg:?}");
    }
    assert!(parse_err("pkcs11:token=t,pin=987654").contains("pin-file=PATH"));
}

#[test]
fn missing_pkcs11_module_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    fs::write(&pin_file, "1234").unwrap();
    let config = SealConfig::parse(&format!(
        "pkcs11:module={}/nope.so,token=t,pin-file={}",
        dir.path().display(),
        pin_file.display()
    ))
    .unwrap();
    let err = open_provider(&config, true).err().unwrap();
    assert!(matches!(err, SealError::Pkcs11Module { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("nope.so") && msg.contains("softhsm2"), "{msg}");
}

// ---------------------------------------------------------------- PKCS#11 (SoftHSM2)

/// Names the child process runs; set only in children.
const CASE_VAR: &str = "POSTVAULT_SEAL_SOFTHSM_CASE";
/// The user PIN handed to children through their environment, for pin-env=.
const PIN_VAR: &str = "POSTVAULT_SEAL_TEST_PIN";
const USER_PIN: &str = "user-pin-4711";
const SO_PIN: &str = "so-pin-0815";

/// The SoftHSM2 library; fails the test when it is not installed.
fn softhsm_module() -> PathBuf {
    DEFAULT_PKCS11_MODULES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "SoftHSM2 not found at {}: install softhsm2 (run scripts/test.sh)",
                DEFAULT_PKCS11_MODULES.join(" or ")
            )
        })
}

/// A SoftHSM2 token directory private to this child process.
struct Hsm {
    module: PathBuf,
    dir: PathBuf,
    ctx: Pkcs11,
}

impl Hsm {
    fn new() -> Self {
        let conf =
            PathBuf::from(std::env::var("SOFTHSM2_CONF").expect("SOFTHSM2_CONF set by the parent"));
        let module = softhsm_module();
        let ctx = Pkcs11::new(&module).expect("load SoftHSM2");
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .expect("C_Initialize SoftHSM2");
        let dir = conf.parent().unwrap().to_owned();
        fs::write(dir.join("pin"), format!("{USER_PIN}\n")).unwrap();
        fs::write(dir.join("wrong-pin"), "not-the-pin\n").unwrap();
        Hsm { module, dir, ctx }
    }

    /// Initializes a new token with the user and SO PINs above.
    fn init_token(&self, label: &str) {
        let slot = self
            .ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| !self.ctx.get_token_info(*s).unwrap().token_initialized())
            .expect("SoftHSM always offers a free slot");
        let so_pin = AuthPin::new(SO_PIN.into());
        self.ctx.init_token(slot, &so_pin, label).unwrap();
        let session = self.ctx.open_rw_session(slot).unwrap();
        session.login(UserType::So, Some(&so_pin)).unwrap();
        session.init_pin(&AuthPin::new(USER_PIN.into())).unwrap();
        session.logout().unwrap();
    }

    fn config(&self, token: &str, key: &str, pin_file: &str) -> SealConfig {
        SealConfig::parse(&format!(
            "pkcs11:module={},token={token},pin-file={},key={key}",
            self.module.display(),
            self.dir.join(pin_file).display()
        ))
        .unwrap()
    }

    fn open(
        &self,
        token: &str,
        key: &str,
        create: bool,
    ) -> Result<Box<dyn SealProvider>, SealError> {
        open_provider(&self.config(token, key, "pin"), create)
    }
}

/// Runs `body` in a child process of this test binary with its own
/// SoftHSM2 configuration and token directory. `name` must be the calling
/// test's function name.
fn in_softhsm(name: &str, body: fn(&Hsm)) {
    if std::env::var(CASE_VAR).as_deref() == Ok(name) {
        body(&Hsm::new());
        return;
    }
    let module = softhsm_module();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(CASE_VAR, name)
        .env(PIN_VAR, USER_PIN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "SoftHSM2 case {name} (module {}) failed in its child process ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        module.display(),
        out.status
    );
}

#[test]
fn pkcs11_round_trip_and_key_persistence() {
    in_softhsm("pkcs11_round_trip_and_key_persistence", |hsm| {
        hsm.init_token("pv");
        // No key yet: refused without create_key.
        let err = hsm.open("pv", "nvm-seal", false).err().unwrap();
        assert!(matches!(err, SealError::KeyNotFound { .. }), "{err:?}");
        assert!(
            err.to_string().contains("'nvm-seal' on token 'pv'"),
            "{err}"
        );

        let first = hsm.open("pv", "nvm-seal", true).unwrap();
        assert_eq!(first.describe(), "pkcs11 token 'pv' key 'nvm-seal'");
        let mut sealed = Vec::new();
        for plaintext in [&b""[..], b"x", b"the NVM state", &vec![0x5A; 100_000]] {
            let s = first.seal(AAD, plaintext).unwrap();
            assert_eq!(s.len(), MIN_SEALED_LEN + plaintext.len());
            assert_eq!(sealed_by(&s), Ok(ProviderKind::Pkcs11));
            assert_eq!(first.unseal(AAD, &s).unwrap().expose_secret(), plaintext);
            sealed.push((plaintext.to_vec(), s));
        }
        assert_ne!(
            first.seal(AAD, b"same").unwrap(),
            first.seal(AAD, b"same").unwrap()
        );

        // A second provider alive at the same time (the token answers
        // CKR_USER_ALREADY_LOGGED_IN) finds the same key.
        let second = hsm.open("pv", "nvm-seal", false).unwrap();
        let s = second.seal(AAD, b"from the second").unwrap();
        assert_eq!(
            first.unseal(AAD, &s).unwrap().expose_secret(),
            b"from the second"
        );
        drop(first);
        drop(second);

        // After every session closed: a fresh provider, PIN from the environment.
        let config = SealConfig::parse(&format!(
            "pkcs11:module={},token=pv,pin-env={PIN_VAR},key=nvm-seal",
            hsm.module.display()
        ))
        .unwrap();
        let fresh = open_provider(&config, true).unwrap();
        for (plaintext, s) in &sealed {
            assert_eq!(
                fresh.unseal(AAD, s).unwrap().expose_secret(),
                plaintext.as_slice()
            );
        }
        // Still exactly one key with that label on the token.
        drop(fresh);
        let session = hsm.ctx.open_ro_session(find_slot(hsm, "pv")).unwrap();
        session
            .login(UserType::User, Some(&AuthPin::new(USER_PIN.into())))
            .unwrap();
        let keys = session
            .find_objects(&[Attribute::Label(b"nvm-seal".to_vec())])
            .unwrap();
        assert_eq!(keys.len(), 1);

        // Shared between threads.
        let p = hsm.open("pv", "nvm-seal", false).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let p = &p;
                s.spawn(move || {
                    for i in 0..25u8 {
                        let sealed = p.seal(AAD, &[t, i]).unwrap();
                        assert_eq!(p.unseal(AAD, &sealed).unwrap().expose_secret(), &[t, i]);
                    }
                });
            }
        });
    });
}

#[test]
fn pkcs11_tamper_wrong_aad_and_other_key_fail_to_unseal() {
    in_softhsm(
        "pkcs11_tamper_wrong_aad_and_other_key_fail_to_unseal",
        |hsm| {
            hsm.init_token("pv");
            let p = hsm.open("pv", DEFAULT_KEY_LABEL, true).unwrap();
            let sealed = p.seal(AAD, b"postage register values").unwrap();
            check_tamper(p.as_ref(), &sealed);
            let empty = p.seal(AAD, b"").unwrap();
            check_tamper(p.as_ref(), &empty);

            // Another key on the same token.
            let other = hsm.open("pv", "other-key", true).unwrap();
            assert_unseal(other.unseal(AAD, &sealed), UnsealReason::Authentication);

            // The same key label on another token is another key.
            hsm.init_token("pv2");
            let elsewhere = hsm.open("pv2", DEFAULT_KEY_LABEL, true).unwrap();
            assert_unseal(elsewhere.unseal(AAD, &sealed), UnsealReason::Authentication);

            // Sealed by the file provider: refused as the wrong kind, and vice versa.
            let file = file_provider(&hsm.dir, "seal.key", true).unwrap();
            let by_file = file.seal(AAD, b"x").unwrap();
            let err = p.unseal(AAD, &by_file).unwrap_err();
            assert!(
                err.to_string().contains("sealed by a file seal provider"),
                "{err}"
            );
            assert_unseal(
                p.unseal(AAD, &by_file),
                UnsealReason::WrongProvider {
                    sealed_by: ProviderKind::File,
                },
            );
            assert_unseal(
                file.unseal(AAD, &sealed),
                UnsealReason::WrongProvider {
                    sealed_by: ProviderKind::Pkcs11,
                },
            );
            // The provider still works after all those failures.
            assert_eq!(
                p.unseal(AAD, &sealed).unwrap().expose_secret(),
                b"postage register values"
            );
        },
    );
}

#[test]
fn pkcs11_wrong_pin_is_a_clear_error() {
    in_softhsm("pkcs11_wrong_pin_is_a_clear_error", |hsm| {
        hsm.init_token("pv");
        let err = open_provider(&hsm.config("pv", "k", "wrong-pin"), true)
            .err()
            .unwrap();
        assert!(
            matches!(err, SealError::PinIncorrect { ref token } if token == "pv"),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("token 'pv' rejected the user PIN"), "{msg}");
        assert!(
            !msg.contains("not-the-pin") && !msg.contains(USER_PIN),
            "PIN in {msg}"
        );
        assert!(!format!("{err:?}").contains("not-the-pin"));
        // No key was created by the failed attempt; the right PIN still works.
        assert!(matches!(
            hsm.open("pv", "k", false).err().unwrap(),
            SealError::KeyNotFound { .. }
        ));
        hsm.open("pv", "k", true).unwrap();
    });
}

#[test]
fn pkcs11_missing_token_is_a_clear_error() {
    in_softhsm("pkcs11_missing_token_is_a_clear_error", |hsm| {
        let err = hsm.open("absent", "k", true).err().unwrap();
        assert!(matches!(err, SealError::TokenNotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("token 'absent' not found in")
                && msg.contains("softhsm2-util --init-token --free --label absent")
                && msg.contains("no initialized tokens"),
            "{msg}"
        );
        hsm.init_token("present");
        let msg = hsm.open("absent", "k", true).err().unwrap().to_string();
        assert!(msg.contains("tokens there: 'present'"), "{msg}");
    });
}

#[test]
fn pkcs11_key_is_sensitive_and_not_extractable() {
    in_softhsm("pkcs11_key_is_sensitive_and_not_extractable", |hsm| {
        hsm.init_token("pv");
        drop(hsm.open("pv", "nvm-seal", true).unwrap());

        let session = hsm.ctx.open_rw_session(find_slot(hsm, "pv")).unwrap();
        session
            .login(UserType::User, Some(&AuthPin::new(USER_PIN.into())))
            .unwrap();
        let keys = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(b"nvm-seal".to_vec()),
            ])
            .unwrap();
        assert_eq!(keys.len(), 1);
        let attrs = session
            .get_attributes(
                keys[0],
                &[
                    AttributeType::KeyType,
                    AttributeType::ValueLen,
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                    AttributeType::Derive,
                    AttributeType::Wrap,
                ],
            )
            .unwrap();
        for want in [
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32u64.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::AlwaysSensitive(true),
            Attribute::NeverExtractable(true),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Derive(false),
            Attribute::Wrap(false),
        ] {
            assert!(attrs.contains(&want), "{want:?} missing from {attrs:?}");
        }
        // The value itself cannot be read.
        match session.get_attributes(keys[0], &[AttributeType::Value]) {
            Ok(values) => assert!(
                !values.iter().any(|a| matches!(a, Attribute::Value(_))),
                "key value readable: {} attributes",
                values.len()
            ),
            Err(e) => assert!(
                matches!(
                    e,
                    CkError::Pkcs11(RvError::AttributeSensitive, Function::GetAttributeValue)
                ),
                "{e:?}"
            ),
        }

        // An extractable key under the seal label is refused.
        session
            .generate_key(
                &cryptoki::mechanism::Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32u64.into()),
                    Attribute::Label(b"leaky".to_vec()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(false),
                    Attribute::Extractable(true),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ],
            )
            .unwrap();
        drop(session);
        let err = hsm.open("pv", "leaky", true).err().unwrap();
        assert!(matches!(err, SealError::KeyUnsuitable { .. }), "{err:?}");
        assert!(err.to_string().contains("could leave the token"), "{err}");
    });
}

fn find_slot(hsm: &Hsm, label: &str) -> cryptoki::slot::Slot {
    hsm.ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| hsm.ctx.get_token_info(*s).unwrap().label() == label)
        .unwrap()
}
