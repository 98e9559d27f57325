//! The module's NVM at rest: sealed, never used when damaged or foreign,
//! never silently reset, restorable from a backup with its seal key, and
//! sealable under a PKCS#11 token (SoftHSM2).
//!
//! SoftHSM reads `SOFTHSM2_CONF` once per process, so each PKCS#11 case runs
//! in a child process of this test binary with its own configuration and
//! token directory (as in crates/seal/tests/seal.rs). These cases never skip:
//! without SoftHSM2 they fail and say how to install it.
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use postvault_module::nvm::NVM_FILE;
use postvault_module::{Module, ModuleConfig, ModuleError, ModuleState, Request};
use postvault_seal::{DEFAULT_PKCS11_MODULES, Pin, ProviderKind, SealConfig, open_provider};

use crate::common::*;

fn nvm_path(f: &Fixture) -> PathBuf {
    f.path().join("module").join(NVM_FILE)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_nvm_file_is_sealed() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    create_other_roles(&mut c);
    let bytes = nvm_bytes(&f);
    assert_eq!(postvault_seal::sealed_by(&bytes), Ok(ProviderKind::File));
    for needle in [
        "kc1",
        "admin",
        "auditor",
        "customer",
        "$argon2id$",
        "Operational",
    ] {
        assert!(
            !contains(&bytes, needle.as_bytes()),
            "{needle} readable in the NVM file"
        );
    }
    let module_id = hex::decode(status(&mut c).module_id.unwrap()).unwrap();
    assert!(!contains(&bytes, &module_id));
}

/// Opens `f`'s module with its NVM file replaced by `bad` and checks that it
/// is in Error naming the NVM, refuses work, and leaves the file as it was.
fn check_refused(f: &Fixture, what: &str, bad: &[u8]) {
    std::fs::write(nvm_path(f), bad).unwrap();
    let m = f.open();
    assert_eq!(
        m.lock().unwrap().current_state(),
        ModuleState::Error,
        "{what}"
    );
    let mut c = client(&m);
    let s = status(&mut c);
    assert_eq!(s.current_state, ModuleState::Error, "{what}");
    let error = s.error.unwrap_or_default();
    assert!(error.contains("NVM"), "{what}: {error}");
    assert_eq!(s.module_id, None);
    // Nothing works on it, and nothing writes over it.
    assert!(
        matches!(
            run_err(&mut c, Request::StartInitialization { time: T0 }),
            ModuleError::InError(e) if e.contains("NVM")
        ),
        "{what}"
    );
    assert!(c.logon("so", &pw("so")).is_err());
    let _ = c.run(&Request::CreateAuditEntry {
        note: "x".into(),
        sign: false,
    });
    drop(c);
    drop(m);
    assert_eq!(
        std::fs::read(nvm_path(f)).unwrap(),
        bad,
        "{what}: file modified"
    );
}

#[test]
fn a_damaged_or_foreign_nvm_is_refused_never_reset() {
    let f = Fixture::new();
    let module_id = {
        let m = f.open();
        let mut c = client(&m);
        master(&mut c);
        status(&mut c).module_id
    };
    let good = nvm_bytes(&f);
    let len = good.len();
    let log_len = audit_log(&f).len();

    for pos in [0, 3, 4, 5, 6, 17, 18, len / 2, len - 17, len - 16, len - 1] {
        for bit in [0x01u8, 0x80] {
            let mut bad = good.clone();
            bad[pos] ^= bit;
            check_refused(&f, &format!("byte {pos} ^ {bit:#x}"), &bad);
        }
    }
    for cut in [0, 1, len / 2, len - 1] {
        check_refused(&f, &format!("truncated to {cut}"), &good[..cut]);
    }
    let mut longer = good.clone();
    longer.push(0);
    check_refused(&f, "one byte appended", &longer);
    // Another module's NVM (another seal key), swapped in.
    let other = Fixture::new();
    {
        let m = other.open();
        master(&mut client(&m));
    }
    check_refused(&f, "another module's NVM", &nvm_bytes(&other));
    // The same seal key but not an NVM (sealed with other associated data).
    let seal = open_provider(
        &SealConfig::File {
            key_path: f.path().join("seal.key"),
        },
        false,
    )
    .unwrap();
    let not_nvm = seal.seal(b"something else", b"hello").unwrap();
    check_refused(&f, "another blob under the same key", &not_nvm);
    assert_eq!(
        audit_log(&f).len(),
        log_len,
        "no audit entry from a refused NVM"
    );

    // The original file, put back, is the module as it was.
    std::fs::write(nvm_path(&f), &good).unwrap();
    {
        let m = f.open();
        let mut c = client(&m);
        let s = status(&mut c);
        assert_eq!(s.current_state, ModuleState::Operational);
        assert_eq!(s.module_id, module_id);
        as_user(&mut c, "so", |_| ());
    }
    // From a damaged NVM, Reset starts over.
    let mut bad = good.clone();
    bad[len / 2] ^= 1;
    std::fs::write(nvm_path(&f), &bad).unwrap();
    let m = f.open();
    let mut c = client(&m);
    assert_eq!(status(&mut c).current_state, ModuleState::Error);
    ok(&mut c, Request::Reset);
    assert_eq!(status(&mut c).current_state, ModuleState::Uninitialized);
    assert_ne!(std::fs::read(nvm_path(&f)).unwrap(), bad);
    master(&mut c);
    let s = status(&mut c);
    assert_eq!(s.current_state, ModuleState::Operational);
    assert_ne!(s.module_id, module_id);
}

#[test]
fn a_backup_with_its_seal_key_restores_the_module() {
    let f = Fixture::new();
    let before = {
        let m = f.open();
        let mut c = client(&m);
        master(&mut c);
        create_other_roles(&mut c);
        status(&mut c)
    };
    // Copy nvm.sealed and seal.key only, into a new place.
    let restored = Fixture::new();
    std::fs::create_dir_all(restored.path().join("module")).unwrap();
    std::fs::copy(f.path().join("seal.key"), restored.path().join("seal.key")).unwrap();
    std::fs::copy(nvm_path(&f), nvm_path(&restored)).unwrap();
    let m = restored.open();
    let mut c = client(&m);
    let s = status(&mut c);
    assert_eq!(s.current_state, ModuleState::Operational);
    assert_eq!(s.module_id, before.module_id);
    assert_eq!(s.keys, before.keys);
    assert_eq!(s.audit_next_seq, before.audit_next_seq);
    // Operators and keys work; the audit chain continues where it was.
    assert_eq!(
        c.logon("auditor", &pw("auditor")).unwrap(),
        postvault_module::Role::Auditor
    );
    c.logoff().unwrap();
    let original = audit_log(&f);
    let after = audit_log(&restored);
    // This host's (empty) log lacks the last entry the NVM made: boot hands
    // it over again; the logon follows it.
    assert_eq!(&after[0], original.last().unwrap());
    assert_eq!(after[1].seq, before.audit_next_seq);
    assert_eq!(after[1].command, "Logon");
    let key: [u8; 65] = hex::decode(&original[0].data["audit_key"])
        .unwrap()
        .try_into()
        .unwrap();
    let joined: Vec<_> = original
        .into_iter()
        .chain(after.into_iter().skip(1))
        .collect();
    postvault_audit::verify_chain(&joined, &key).unwrap();
}

// ---------------------------------------------------------------- PKCS#11 (SoftHSM2)

/// Names the case a child process runs; set only in children.
const CASE_VAR: &str = "POSTVAULT_MODULE_SOFTHSM_CASE";
const USER_PIN: &str = "module-user-pin-4711";
const SO_PIN: &str = "module-so-pin-0815";

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

/// Initializes a token with `softhsm2-util` (under this process's SOFTHSM2_CONF).
fn init_token(label: &str) {
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            USER_PIN,
            "--so-pin",
            SO_PIN,
        ])
        .output()
        .unwrap_or_else(|e| panic!("softhsm2-util: {e}: install softhsm2 (run scripts/test.sh)"));
    assert!(
        out.status.success(),
        "softhsm2-util --init-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pkcs11_seal(token: &str, key: &str) -> SealConfig {
    SealConfig::Pkcs11 {
        module: softhsm_module(),
        token_label: token.into(),
        pin: Pin::new(USER_PIN.into()),
        key_label: key.into(),
    }
}

/// Opens the module of fixture `f` (its directory, clock and audit sink)
/// with the given seal instead of the fixture's key file.
fn open_sealed(f: &Fixture, seal: &SealConfig, create_key: bool) -> Arc<Mutex<Module>> {
    Arc::new(Mutex::new(open_module(|| {
        let mut config = ModuleConfig::new(
            &f.path().join("module"),
            open_provider(seal, create_key).expect("open the seal provider"),
            f.clock.clone(),
        );
        config.argon2 = postvault_crypto::password::Argon2Params::TEST;
        config.audit_sink = Some(Box::new(postvault_module::audit_sink::MemoryAuditSink(
            f.log.clone(),
        )));
        config
    })))
}

/// Runs `body` in a child process of this test binary with its own SoftHSM2
/// configuration and token directory. `name` is the calling test's name.
fn in_softhsm(name: &str, body: fn()) {
    if std::env::var(CASE_VAR).as_deref() == Ok(name) {
        body();
        return;
    }
    let module = softhsm_module();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let test = format!("nvm::{name}");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(CASE_VAR, name)
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
fn pkcs11_sealed_module_initializes_and_survives_a_reboot() {
    in_softhsm(
        "pkcs11_sealed_module_initializes_and_survives_a_reboot",
        || {
            init_token("pv-module");
            let seal = pkcs11_seal("pv-module", "nvm-seal");
            let f = Fixture::new();
            let before = {
                let m = open_sealed(&f, &seal, true);
                let mut c = client(&m);
                master(&mut c);
                create_other_roles(&mut c);
                status(&mut c)
            };
            assert_eq!(before.current_state, ModuleState::Operational);
            let bytes = nvm_bytes(&f);
            assert_eq!(postvault_seal::sealed_by(&bytes), Ok(ProviderKind::Pkcs11));
            assert!(!contains(&bytes, b"kc1"));
            assert!(!f.path().join("seal.key").exists(), "no key file is used");

            // Reboot: a new provider (key found on the token, not created) opens it.
            let m = open_sealed(&f, &seal, false);
            let mut c = client(&m);
            let s = status(&mut c);
            assert_eq!(
                (s.current_state, s.persistent_state),
                (ModuleState::Operational, ModuleState::Operational)
            );
            assert_eq!(s.module_id, before.module_id);
            assert_eq!(s.keys, before.keys);
            as_user(&mut c, "auditor", |_| ());
            drop(c);
            drop(m);

            // The same file does not open under another key on the token, nor
            // under a key file; and opening does not touch it.
            let bytes = nvm_bytes(&f);
            let other_key = pkcs11_seal("pv-module", "other-key");
            let key_file = SealConfig::File {
                key_path: f.path().join("seal.key"),
            };
            for (what, other) in [("another token key", &other_key), ("a key file", &key_file)] {
                let m = open_sealed(&f, other, true);
                let s = status(&mut client(&m));
                assert_eq!(s.current_state, ModuleState::Error, "{what}");
                assert!(s.error.unwrap_or_default().contains("NVM"), "{what}");
                drop(m);
                assert_eq!(nvm_bytes(&f), bytes, "{what}");
            }
        },
    );
}

#[test]
fn pkcs11_provider_does_not_open_a_file_sealed_nvm() {
    in_softhsm("pkcs11_provider_does_not_open_a_file_sealed_nvm", || {
        init_token("pv-module");
        let f = Fixture::new();
        let module_id = {
            let m = f.open();
            let mut c = client(&m);
            master(&mut c);
            status(&mut c).module_id
        };
        let bytes = nvm_bytes(&f);
        assert_eq!(postvault_seal::sealed_by(&bytes), Ok(ProviderKind::File));
        let seal = pkcs11_seal("pv-module", "nvm-seal");
        {
            let m = open_sealed(&f, &seal, true);
            let mut c = client(&m);
            let s = status(&mut c);
            assert_eq!(s.current_state, ModuleState::Error);
            assert!(s.error.unwrap_or_default().contains("NVM"));
            assert!(c.logon("so", &pw("so")).is_err());
        }
        assert_eq!(nvm_bytes(&f), bytes, "the file-sealed NVM was modified");
        // With its own key file it still opens.
        let m = f.open();
        let s = status(&mut client(&m));
        assert_eq!(
            (s.current_state, s.module_id),
            (ModuleState::Operational, module_id)
        );
    });
}

/// `f`'s module's seal provider (its seal key file).
fn file_seal(f: &Fixture) -> Box<dyn postvault_seal::SealProvider> {
    open_provider(
        &SealConfig::File {
            key_path: f.path().join("seal.key"),
        },
        false,
    )
    .unwrap()
}

/// An `NvmStore` on `f`'s module directory with its seal key, as the module
/// opens it.
fn store_of(f: &Fixture) -> postvault_module::nvm::NvmStore {
    postvault_module::nvm::NvmStore::new(&f.path().join("module"), file_seal(f))
}

/// A module initialized in a new fixture (master ceremony), then closed.
fn initialized() -> Fixture {
    let f = Fixture::new();
    let m = f.open();
    master(&mut client(&m));
    f
}

fn inode(path: &std::path::Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

/// The steady-state write (same keys as the last one) writes over the
/// temporary file left by the previous write and swaps it with the NVM
/// file, and a slightly shorter image keeps the file's length; a write
/// with other keys leaves no earlier image behind.
#[test]
fn steady_writes_reuse_the_temporary_file_and_other_keys_or_accounts_leave_nothing() {
    let f = initialized();
    let nvm = nvm_path(&f);
    let tmp = f.path().join("module").join("nvm.sealed.tmp");
    let store = store_of(&f);
    let mut image = store.load().unwrap().expect("an initialized module's NVM");
    let mark = |image: &mut postvault_module::nvm::NvmImage, line: &str| {
        image
            .audit
            .get_or_insert_with(|| panic!("no audit chain"))
            .pending = vec![line.into()];
    };

    mark(&mut image, &"a".repeat(3000));
    store.store(&image, None).unwrap();
    mark(&mut image, &"b".repeat(2990));
    store.store(&image, None).unwrap();
    let (nvm_ino, tmp_ino) = (inode(&nvm), inode(&tmp));
    let previous = std::fs::read(&nvm).unwrap();
    mark(&mut image, &"c".repeat(2980));
    store.store(&image, None).unwrap();
    assert_eq!(
        (inode(&nvm), inode(&tmp)),
        (tmp_ino, nvm_ino),
        "the temporary file was written over and swapped with the NVM file"
    );
    let left = std::fs::read(&tmp).unwrap();
    assert_eq!(
        left.len(),
        previous.len(),
        "the previous image's file stays behind"
    );
    assert!(
        left[..4096].iter().all(|&b| b == 0) && left[4096..] == previous[4096..],
        "its head is overwritten, the rest is the previous image"
    );
    assert_eq!(
        std::fs::metadata(&nvm).unwrap().len(),
        previous.len() as u64,
        "a slightly shorter image keeps the file's length"
    );
    let read = store_of(&f).load().unwrap().unwrap();
    assert_eq!(read.audit.unwrap().pending, vec!["c".repeat(2980)]);

    // Other keys: the audit signing key replaced.
    let audit = image.audit.as_mut().unwrap();
    let mut other = audit.signing_key.to_vec();
    other[40] ^= 1;
    audit.signing_key = zeroize::Zeroizing::new(other);
    store.store(&image, None).unwrap();
    assert!(
        !tmp.exists(),
        "a write with other keys must not leave the previous image beside it"
    );
    let read = store_of(&f).load().unwrap().unwrap();
    assert_eq!(
        read.audit.as_ref().unwrap().signing_key,
        image.audit.as_ref().unwrap().signing_key
    );

    // Other accounts: an operator's password hash changed.
    store.store(&image, None).unwrap();
    store.store(&image, None).unwrap();
    assert!(tmp.exists(), "steady writes again leave the previous image");
    let user = image.users.last_mut().expect("the operators");
    user.password_hash.push('x');
    store.store(&image, None).unwrap();
    assert!(
        !tmp.exists(),
        "a write with another password hash must not leave the previous image beside it"
    );
}

/// The sealed plaintext is the image then zeros; anything else after the
/// image is refused (a well-sealed file whose padding is not zeros was not
/// written by a module). An image without padding (older modules) reads.
#[test]
fn padding_after_the_image_must_be_zeros() {
    let f = initialized();
    let image = store_of(&f).load().unwrap().unwrap();
    let seal = file_seal(&f);
    let plain = postcard::to_allocvec(&image).unwrap();
    let write = |tail: &[u8]| {
        let mut p = plain.clone();
        p.extend_from_slice(tail);
        std::fs::write(
            nvm_path(&f),
            seal.seal(b"postvault module NVM v1", &p).unwrap(),
        )
        .unwrap();
        store_of(&f).load()
    };
    assert!(
        write(&[]).unwrap().is_some(),
        "an image without padding reads"
    );
    assert!(write(&[0; 100]).unwrap().is_some(), "zero padding reads");
    let err = write(&[0, 0, 7, 0])
        .err()
        .expect("non-zero padding is refused");
    assert!(
        matches!(err, postvault_module::nvm::NvmError::Decode(_)),
        "{err}"
    );
}

/// The image a steady write leaves in the temporary file is no rollback:
/// moved over the NVM file, it is refused like any damaged NVM.
#[test]
fn the_previous_image_left_beside_the_nvm_does_not_unseal() {
    let f = initialized();
    {
        let m = f.open();
        let mut c = client(&m);
        // Two commands with the same keys and accounts: the second swaps.
        c.logon("so", &pw("so")).unwrap();
        for note in ["one", "two"] {
            ok(
                &mut c,
                Request::CreateAuditEntry {
                    note: note.into(),
                    sign: false,
                },
            );
        }
    }
    let tmp = f.path().join("module").join("nvm.sealed.tmp");
    let left = std::fs::read(&tmp).expect("steady writes leave the previous image's file");
    check_refused(&f, "the previous image moved back", &left);
}

/// A steady write does not wait for its directory sync, so a power loss can
/// leave the NVM file's name on the image before the last one and the last
/// one under the temporary name. Boot takes the temporary file only when
/// it is a later write of the same NVM (same keys and accounts, further
/// along the audit chain), renames it into place, and otherwise leaves it
/// alone; a damaged NVM file is an error whatever the temporary file holds.
#[test]
fn a_later_image_left_in_the_temporary_file_is_taken_at_boot() {
    let f = initialized();
    let nvm = nvm_path(&f);
    let tmp = f.path().join("module").join("nvm.sealed.tmp");
    let store = store_of(&f);
    let mut image = store.load().unwrap().expect("an initialized module's NVM");
    let seq = |i: &postvault_module::nvm::NvmImage| i.audit.as_ref().unwrap().next_seq;
    let first = seq(&image);
    let old = std::fs::read(&nvm).unwrap();
    image.audit.as_mut().unwrap().next_seq = first + 1;
    store.store(&image, None).unwrap();
    drop(store);
    let new = std::fs::read(&nvm).unwrap();

    // The names as a power loss before the directory sync leaves them.
    std::fs::write(&nvm, &old).unwrap();
    std::fs::write(&tmp, &new).unwrap();
    let read = store_of(&f).load().unwrap().unwrap();
    assert_eq!(seq(&read), first + 1, "boot takes the later image");
    assert_eq!(
        std::fs::read(&nvm).unwrap(),
        new,
        "and renames it into place"
    );
    assert!(!tmp.exists());

    // An earlier image in the temporary file (the usual leftover): ignored.
    std::fs::write(&tmp, &old).unwrap();
    assert_eq!(seq(&store_of(&f).load().unwrap().unwrap()), first + 1);
    assert_eq!(std::fs::read(&tmp).unwrap(), old, "left alone");

    // A later image with other keys (a write that had not renamed yet):
    // ignored, so a crash before such a write's rename keeps the old NVM.
    let other_dir = tempfile::tempdir().unwrap();
    let other = postvault_module::nvm::NvmStore::new(other_dir.path(), file_seal(&f));
    let mut rekeyed = image.clone();
    let audit = rekeyed.audit.as_mut().unwrap();
    audit.next_seq = first + 5;
    let mut key = audit.signing_key.to_vec();
    key[40] ^= 1;
    audit.signing_key = zeroize::Zeroizing::new(key);
    other.store(&rekeyed, None).unwrap();
    let rekeyed_bytes = std::fs::read(other_dir.path().join(NVM_FILE)).unwrap();
    std::fs::write(&tmp, &rekeyed_bytes).unwrap();
    assert_eq!(seq(&store_of(&f).load().unwrap().unwrap()), first + 1);
    assert_eq!(std::fs::read(&tmp).unwrap(), rekeyed_bytes, "left alone");

    // Another module's later image: ignored.
    let mut foreign = image.clone();
    foreign.module_id[0] ^= 1;
    foreign.audit.as_mut().unwrap().next_seq = first + 5;
    other.store(&foreign, None).unwrap();
    std::fs::copy(other_dir.path().join(NVM_FILE), &tmp).unwrap();
    assert_eq!(seq(&store_of(&f).load().unwrap().unwrap()), first + 1);

    // The NVM file damaged, a later image beside it: still an error.
    std::fs::write(&tmp, &new).unwrap();
    let mut damaged = new.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    std::fs::write(&nvm, &damaged).unwrap();
    assert!(matches!(
        store_of(&f).load(),
        Err(postvault_module::nvm::NvmError::Unseal(_))
    ));
}
