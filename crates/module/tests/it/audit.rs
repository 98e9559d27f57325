//! The audit trail as an auditor uses it: the collected log verifies with
//! the exported key, signatures where the seed wants them, the contents of
//! each entry, refusals and failed logons audited without secrets, key
//! rotation, and the module's reaction to audit failures.
use std::collections::HashSet;

use postvault_audit::{AuditEntry, FailureKind, verify_chain};
use postvault_module::module::AuditFault;
use postvault_module::table::{Audit, CommandKind};
use postvault_module::{ModuleClient, ModuleError, ModuleState, Password, Request, Response};

use crate::common::*;

fn note(text: &str, sign: bool) -> Request {
    Request::CreateAuditEntry {
        note: text.into(),
        sign,
    }
}

fn export_audit_key(c: &mut ModuleClient) -> [u8; 65] {
    match as_user(c, "auditor", |c| ok(c, Request::ExportAuditKey)) {
        Response::AuditKey(k) => k.try_into().expect("65-byte key"),
        other => panic!("unexpected {other:?}"),
    }
}

fn signed_commands() -> HashSet<&'static str> {
    CommandKind::ALL
        .into_iter()
        .filter(|k| k.spec().audit == Audit::Signed)
        .map(CommandKind::name)
        .collect()
}

fn find<'a>(log: &'a [AuditEntry], command: &str, user: Option<&str>) -> &'a AuditEntry {
    log.iter()
        .find(|e| e.command == command && e.user_id.as_deref() == user && e.reason == "ok")
        .unwrap_or_else(|| panic!("no {command} entry by {user:?}"))
}

#[test]
fn a_ceremony_log_verifies_with_the_exported_key_and_records_who_did_what() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    create_other_roles(&mut c);
    as_user(&mut c, "so", |c| {
        ok(
            c,
            Request::CreateKeyToken {
                key_type: postvault_module::keys::KeyType::Aes256,
                usage: postvault_module::keys::KeyUsage::General,
                identity: "psd/1".into(),
                exportable: true,
                expires: None,
            },
        );
        ok(c, Request::CreateAuditKey);
    });
    ok(&mut c, note("forced", true));
    ok(&mut c, note("ordinary", false));
    let key = export_audit_key(&mut c);
    let log = audit_log(&f);
    let module_id = status(&mut c).module_id.unwrap();

    // Entry 0 is Start Initialization, signed under the key it announces.
    let first = &log[0];
    assert_eq!(first.command, "StartInitialization");
    let first_key: [u8; 65] = hex::decode(&first.data["audit_key"])
        .unwrap()
        .try_into()
        .unwrap();
    assert!(first.verify_signature(&first_key));
    // The whole log verifies, following the rotation to the exported key.
    let report = verify_chain(&log, &first_key).expect("the log verifies");
    assert_eq!(report.entries, log.len());
    assert_eq!(report.key_rotations, 1);
    assert_eq!(report.audit_key, key);
    assert_eq!(report.module_id, module_id);
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
        assert_eq!(e.module_id, module_id);
    }

    // Every successful module-affecting command is signed.
    let signed = signed_commands();
    let mut seen = HashSet::new();
    for e in log.iter().filter(|e| e.reason == "ok") {
        if signed.contains(e.command.as_str()) {
            assert!(
                e.signature.is_some(),
                "{} (seq {}) unsigned",
                e.command,
                e.seq
            );
            seen.insert(e.command.clone());
        }
    }
    for cmd in [
        "StartInitialization",
        "GenerateMks",
        "BeginAdmin",
        "EndAdmin",
        "CreateAuditKey",
    ] {
        assert!(seen.contains(cmd), "{cmd} missing from the log");
    }
    // A forced entry is signed; an ordinary one (well before the periodic
    // signature) is not.
    let forced = log
        .iter()
        .find(|e| e.data.get("note").map(String::as_str) == Some("forced"));
    assert!(forced.unwrap().signature.is_some());
    let plain = log
        .iter()
        .find(|e| e.data.get("note").map(String::as_str) == Some("ordinary"));
    assert!(plain.unwrap().signature.is_none());

    // Each entry says who, in which role, in which states, and why. A Logon
    // is made by nobody yet; it names the user and role it logged on.
    let logon = log
        .iter()
        .rfind(|e| e.command == "Logon" && e.reason == "ok" && e.data["user"] == "so")
        .unwrap();
    assert_eq!(
        (logon.user_id.as_deref(), logon.role.as_deref()),
        (None, None)
    );
    assert_eq!(logon.data["role"], "security-officer");
    let logoff = find(&log, "Logoff", Some("so"));
    assert_eq!(logoff.role.as_deref(), Some("security-officer"));
    assert_eq!(
        (
            logon.current_state.as_str(),
            logon.persistent_state.as_str()
        ),
        ("Operational", "Operational")
    );
    let begin = find(&log, "BeginAdmin", Some("so"));
    assert_eq!(
        (
            begin.current_state.as_str(),
            begin.persistent_state.as_str()
        ),
        ("Administrative", "Administrative")
    );
    let create = find(&log, "CreateUser", Some("admin"));
    assert_eq!(create.role.as_deref(), Some("administrator"));
    assert_eq!(create.current_state, "Administrative");
    let init = find(&log, "InitializeAccessControl", None);
    assert_eq!(
        (init.current_state.as_str(), init.role.as_deref()),
        ("Initializing", None)
    );
    assert!(init.data["users"].contains("kc5:key-custodian"));
    let states: HashSet<&str> = ModuleState::ALL.iter().map(|s| s.as_str()).collect();
    for e in &log {
        assert_eq!(e.user_id.is_some(), e.role.is_some(), "seq {}", e.seq);
        assert!(states.contains(e.current_state.as_str()), "seq {}", e.seq);
        assert!(
            states.contains(e.persistent_state.as_str()),
            "seq {}",
            e.seq
        );
        assert!(!e.reason.is_empty());
        assert_eq!(e.time, T0);
    }

    // Tampering is caught: an edited entry, a removed entry, a reordered log.
    let mut edited = log.clone();
    edited[3].reason = "denied".into();
    let err = verify_chain(&edited, &first_key).unwrap_err();
    assert!(err.index == 3 || err.index == 4, "{err}");
    let mut removed = log.clone();
    removed.remove(5);
    assert!(matches!(
        verify_chain(&removed, &first_key).unwrap_err().kind,
        FailureKind::SequenceGap { .. }
    ));
    let mut resigned = log.clone();
    resigned[0].data.insert("audit_key".into(), "00".into());
    assert!(verify_chain(&resigned, &first_key).is_err());
    // And the exported (rotated) key alone does not vouch for the old entries.
    assert!(verify_chain(&log, &key).is_err());
}

#[test]
fn refusals_and_failed_logons_are_audited_without_any_password() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);

    // A denied command, by nobody and by a key custodian.
    let reply = c.call(&Request::GenerateMks).unwrap();
    assert!(matches!(reply.result, Err(ModuleError::Denied { .. })));
    let e = reply.audit.expect("a denied command is audited");
    assert_eq!(
        (e.command.as_str(), e.reason.as_str()),
        ("GenerateMks", "denied")
    );
    assert_eq!((e.user_id.as_deref(), e.role.as_deref()), (None, None));
    assert!(e.data["error"].contains("not allowed"), "{:?}", e.data);
    assert_eq!(audit_log(&f).last(), Some(&e));
    c.logon("kc1", &pw("kc1")).unwrap();
    let reply = c.call(&Request::BeginAdmin).unwrap();
    let e = reply.audit.expect("audited");
    assert_eq!(
        (
            e.command.as_str(),
            e.reason.as_str(),
            e.user_id.as_deref(),
            e.role.as_deref()
        ),
        ("BeginAdmin", "denied", Some("kc1"), Some("key-custodian"))
    );
    assert_eq!(e.current_state, "Operational");

    // Secret-bearing commands that succeed or fail.
    let new_kc1 = Password::new("kc1-second-password-!!");
    ok(
        &mut c,
        Request::ChangePassword {
            old: pw("kc1"),
            new: new_kc1.clone(),
        },
    );
    let too_short = Password::new("short-pw");
    assert!(matches!(
        run_err(
            &mut c,
            Request::ChangePassword {
                old: new_kc1.clone(),
                new: too_short.clone(),
            }
        ),
        ModuleError::PasswordRejected(_)
    ));
    c.logoff().unwrap();

    // Failed logons: a wrong password for a real user, and an unknown user.
    let wrong = Password::new("so-wrong-horse-battery");
    let unknown_pw = Password::new("mallory-secret-passphrase");
    for (user, password) in [("so", &wrong), ("mallory", &unknown_pw)] {
        let reply = c
            .call(&Request::Logon {
                user_id: user.into(),
                password: password.clone(),
            })
            .unwrap();
        assert_eq!(reply.result, Err(ModuleError::LogonFailed));
        let e = reply.audit.expect("a failed logon is audited");
        assert_eq!(
            (e.command.as_str(), e.reason.as_str(), e.user_id.as_deref()),
            ("Logon", "logon-failed", None)
        );
        assert_eq!(e.data["user"], user, "the attempted user ID is recorded");
    }

    // No password, old or new, right or wrong, appears anywhere in the log.
    let json: String = audit_log(&f)
        .iter()
        .map(|e| e.to_json_line() + "\n")
        .collect();
    let mut secrets: Vec<Password> = ["admin", "so", "kc1", "kc2", "kc3", "kc4", "kc5"]
        .iter()
        .map(|u| pw(u))
        .collect();
    secrets.extend([new_kc1, too_short, wrong, unknown_pw]);
    for s in &secrets {
        assert!(
            !json.contains(s.expose_secret()),
            "a password is in the audit log"
        );
    }
    assert!(!json.contains("$argon2id$"));
    assert!(json.contains("mallory"));
}

#[test]
fn with_sign_every_three_every_third_entry_is_signed() {
    let f = Fixture::new();
    let m = f.open_with(&Opts {
        sign_every: Some(3),
        ..Opts::default()
    });
    let mut c = client(&m);
    master(&mut c);
    let start = audit_log(&f).len();
    for i in 0..9 {
        ok(&mut c, note(&format!("n{i}"), false));
    }
    let log = audit_log(&f);
    let run: Vec<bool> = log[start..].iter().map(|e| e.signature.is_some()).collect();
    assert_eq!(run.len(), 9);
    let first = run
        .iter()
        .position(|&s| s)
        .expect("a signed entry in the run");
    assert!(first < 3, "{run:?}");
    for (i, &s) in run.iter().enumerate() {
        assert_eq!(s, i % 3 == first % 3, "entry {i} of the run: {run:?}");
    }
    // Over the whole log, never more than two unsigned entries in a row.
    let mut unsigned_run = 0;
    for e in &log {
        unsigned_run = if e.signature.is_some() {
            0
        } else {
            unsigned_run + 1
        };
        assert!(unsigned_run <= 2, "seq {}", e.seq);
    }
    let key: [u8; 65] = hex::decode(&log[0].data["audit_key"])
        .unwrap()
        .try_into()
        .unwrap();
    let report = verify_chain(&log, &key).unwrap();
    assert!(report.unsigned_tail <= 2);
}

#[test]
fn the_first_entry_after_a_reboot_is_signed() {
    let f = Fixture::new();
    {
        let m = f.open();
        let mut c = client(&m);
        master(&mut c);
        for i in 0..3 {
            ok(&mut c, note(&format!("before {i}"), false));
        }
    }
    let before = audit_log(&f);
    assert!(
        before[before.len() - 3..]
            .iter()
            .all(|e| e.signature.is_none())
    );

    let m = f.open();
    let mut c = client(&m);
    // Status is not audited.
    assert_eq!(status(&mut c).current_state, ModuleState::Operational);
    assert_eq!(audit_log(&f).len(), before.len());
    ok(&mut c, note("after reboot", false));
    ok(&mut c, note("and then", false));
    let log = audit_log(&f);
    let after = &log[before.len()..];
    assert!(
        after[0].signature.is_some(),
        "first entry after reboot unsigned"
    );
    assert!(after[1].signature.is_none());
    // One chain across the reboot.
    let key: [u8; 65] = hex::decode(&log[0].data["audit_key"])
        .unwrap()
        .try_into()
        .unwrap();
    let report = verify_chain(&log, &key).unwrap();
    assert_eq!(report.entries, log.len());
    assert_eq!(report.unsigned_tail, 1);

    // Same for a refusal as the first audited event after another reboot.
    drop(c);
    drop(m);
    let m = f.open();
    let mut c = client(&m);
    let reply = c.call(&Request::GenerateMks).unwrap();
    assert!(reply.audit.unwrap().signature.is_some());
}

#[test]
fn audit_key_rotation_is_followed_by_the_verifier() {
    let f = Fixture::new();
    let (k1, k2);
    {
        let m = f.open();
        let mut c = client(&m);
        master(&mut c);
        create_other_roles(&mut c);
        k1 = export_audit_key(&mut c);
        assert_eq!(hex::encode(k1), audit_log(&f)[0].data["audit_key"]);
        k2 = match as_user(&mut c, "so", |c| ok(c, Request::CreateAuditKey)) {
            Response::AuditKey(k) => <[u8; 65]>::try_from(k).unwrap(),
            other => panic!("unexpected {other:?}"),
        };
        assert_ne!(k1, k2);
        assert_eq!(export_audit_key(&mut c), k2);
        ok(&mut c, note("under the new key", true));
    }
    let log = audit_log(&f);
    let rotation = log
        .iter()
        .find(|e| e.command == "CreateAuditKey")
        .expect("rotation entry");
    assert_eq!(rotation.data["new_audit_key"], hex::encode(k2));
    assert!(
        rotation.verify_signature(&k1),
        "announced under the old key"
    );
    assert!(!rotation.verify_signature(&k2));
    let later = log.last().unwrap();
    assert!(later.verify_signature(&k2));
    assert!(!later.verify_signature(&k1));
    let report = verify_chain(&log, &k1).unwrap();
    assert_eq!((report.key_rotations, report.audit_key), (1, k2));

    // The new key survives a reboot.
    let m = f.open();
    let mut c = client(&m);
    ok(&mut c, note("after reboot", false));
    let log = audit_log(&f);
    assert!(log.last().unwrap().verify_signature(&k2));
    let report = verify_chain(&log, &k1).unwrap();
    assert_eq!(report.entries, log.len());
    assert_eq!(export_audit_key(&mut c), k2);
}

#[test]
fn a_failed_signature_sends_the_module_to_error_until_a_reboot() {
    let f = Fixture::new();
    {
        let m = f.open();
        master(&mut client(&m));
    }
    {
        let m = f.open_with(&Opts {
            audit_fault: Some(AuditFault::SignatureFails),
            ..Opts::default()
        });
        let mut c = client(&m);
        assert_eq!(status(&mut c).current_state, ModuleState::Operational);
        // The first entry after boot must be signed, and signing fails.
        let reply = c.call(&note("cannot be signed", false)).unwrap();
        assert!(
            reply.result.is_err() || reply.audit.is_some(),
            "reported done without an audit entry: {reply:?}"
        );
        let s = status(&mut c);
        assert_eq!(s.current_state, ModuleState::Error);
        assert_eq!(s.persistent_state, ModuleState::Operational);
        assert!(
            s.error
                .as_deref()
                .unwrap_or("")
                .contains("could not be signed"),
            "{:?}",
            s.error
        );
        // In Error, operators cannot log on.
        assert!(matches!(
            c.logon("so", &pw("so")),
            Err(postvault_module::ClientError::Module(ModuleError::InError(
                _
            )))
        ));
    }
    // A restart clears the non-fatal error; the audit chain is intact.
    let m = f.open();
    let mut c = client(&m);
    let s = status(&mut c);
    assert_eq!((s.current_state, s.error), (ModuleState::Operational, None));
    as_user(&mut c, "so", |c| ok(c, note("after recovery", false)));
    let log = audit_log(&f);
    // The entry made while signing failed is in the log, unsigned, recording the Error.
    let failed = log
        .iter()
        .find(|e| e.data.get("note").map(String::as_str) == Some("cannot be signed"))
        .expect("the entry whose signature failed is kept");
    assert!(failed.signature.is_none());
    assert_eq!(failed.current_state, "Error");
    let key: [u8; 65] = hex::decode(&log[0].data["audit_key"])
        .unwrap()
        .try_into()
        .unwrap();
    let report = verify_chain(&log, &key).expect("the audit chain survives a signature failure");
    assert_eq!(report.entries, log.len());
    let recovered = &log[log.len() - 2];
    assert_eq!(recovered.data["note"], "after recovery");
    assert_eq!(recovered.user_id.as_deref(), Some("so"));
    // The first entry after the reboot is signed again.
    assert!(log[log.len() - 3].signature.is_some());
}

#[test]
fn a_broken_chain_is_a_fatal_error_that_survives_reboot() {
    let f = Fixture::new();
    {
        let m = f.open();
        master(&mut client(&m));
    }
    let stored = audit_log(&f).len();
    {
        let m = f.open_with(&Opts {
            audit_fault: Some(AuditFault::ChainBroken),
            ..Opts::default()
        });
        let mut c = client(&m);
        let reply = c.call(&note("lost", false)).unwrap();
        assert!(
            matches!(reply.result, Err(ModuleError::Storage(_))),
            "{:?}",
            reply.result
        );
        let s = status(&mut c);
        assert_eq!(
            (s.current_state, s.persistent_state),
            (ModuleState::Error, ModuleState::Error)
        );
        assert!(s.error.unwrap().contains("audit chain is broken"));
        assert_eq!(
            audit_log(&f).len(),
            stored,
            "the entry never reached the sink"
        );
    }
    // A reboot does not clear it.
    let m = f.open();
    let mut c = client(&m);
    let s = status(&mut c);
    assert_eq!(
        (s.current_state, s.persistent_state),
        (ModuleState::Error, ModuleState::Error)
    );
    assert!(s.error.unwrap().contains("audit chain is broken"));
    assert!(matches!(
        c.logon("so", &pw("so")),
        Err(postvault_module::ClientError::Module(ModuleError::InError(
            _
        )))
    ));
    // Only Reset leaves it.
    ok(&mut c, Request::Reset);
    assert_eq!(status(&mut c).current_state, ModuleState::Uninitialized);
}

/// What [`WatchingSink`] saw, shared with the test.
#[derive(Default)]
struct Watched {
    entries: Vec<AuditEntry>,
    syncs: usize,
    /// NVM writes that replaced entries the sink had not synced yet.
    unsynced_replaced: usize,
    fail_sync: bool,
}

/// A sink that watches the module keep its promise: the NVM (which holds
/// the last command's entries) is never written again before the sink has
/// synced them.
struct WatchingSink {
    nvm: std::path::PathBuf,
    watched: std::sync::Arc<std::sync::Mutex<Watched>>,
    /// The NVM file as it was when entries arrived that are not synced yet.
    nvm_at_append: Option<Vec<u8>>,
}

impl postvault_module::audit_sink::AuditSink for WatchingSink {
    fn append(&mut self, entry: &AuditEntry) -> std::io::Result<()> {
        let now = std::fs::read(&self.nvm).ok();
        let mut w = self.watched.lock().unwrap();
        if self.nvm_at_append.is_some() && self.nvm_at_append != now {
            w.unsynced_replaced += 1;
        }
        w.entries.push(entry.clone());
        self.nvm_at_append = now;
        Ok(())
    }

    fn last_hash(&mut self) -> std::io::Result<Option<[u8; 32]>> {
        Ok(self
            .watched
            .lock()
            .unwrap()
            .entries
            .last()
            .map(AuditEntry::hash))
    }

    fn sync(&mut self) -> std::io::Result<()> {
        let mut w = self.watched.lock().unwrap();
        if w.fail_sync {
            return Err(std::io::Error::other("injected sync failure"));
        }
        if self.nvm_at_append.is_some() && self.nvm_at_append != std::fs::read(&self.nvm).ok() {
            w.unsynced_replaced += 1;
        }
        w.syncs += 1;
        self.nvm_at_append = None;
        Ok(())
    }
}

fn open_watched(
    f: &Fixture,
    watched: &std::sync::Arc<std::sync::Mutex<Watched>>,
) -> std::sync::Arc<std::sync::Mutex<postvault_module::Module>> {
    let nvm = f
        .path()
        .join("module")
        .join(postvault_module::nvm::NVM_FILE);
    std::sync::Arc::new(std::sync::Mutex::new(open_module(|| {
        let mut config = f.config(&Opts::default());
        config.audit_sink = Some(Box::new(WatchingSink {
            nvm: nvm.clone(),
            watched: watched.clone(),
            nvm_at_append: None,
        }));
        config
    })))
}

/// The sink syncs lazily (the file sink's `fdatasync` runs on a thread of
/// its own): the module asks it to sync before every NVM write, so each
/// entry is always durable in the NVM or in the sink.
#[test]
fn the_sink_syncs_before_every_nvm_write_replaces_its_entries() {
    let f = Fixture::new();
    let watched = std::sync::Arc::default();
    let m = open_watched(&f, &watched);
    let mut c = client(&m);
    master(&mut c);
    for i in 0..5 {
        as_user(&mut c, "so", |c| ok(c, note(&format!("n{i}"), false)));
    }
    let w = watched.lock().unwrap();
    assert_eq!(
        w.unsynced_replaced, 0,
        "the NVM replaced entries not yet synced"
    );
    let seqs: Vec<u64> = w.entries.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "every entry once, in order"
    );
    assert!(w.syncs >= 5, "{} syncs for {} entries", w.syncs, seqs.len());
}

/// When the sink cannot sync, the next command fails before it writes the
/// NVM (so the previous command's entries stay there), the module goes to
/// Error, and a reboot hands the entries over again.
#[test]
fn a_failed_sync_stops_the_next_nvm_write_and_a_reboot_recovers() {
    let f = Fixture::new();
    let watched: std::sync::Arc<std::sync::Mutex<Watched>> = std::sync::Arc::default();
    let m = open_watched(&f, &watched);
    let mut c = client(&m);
    master(&mut c);
    c.logon("so", &pw("so")).unwrap();
    ok(&mut c, note("kept", false));
    let nvm = std::fs::read(
        f.path()
            .join("module")
            .join(postvault_module::nvm::NVM_FILE),
    )
    .unwrap();
    let last = watched.lock().unwrap().entries.last().unwrap().clone();
    watched.lock().unwrap().fail_sync = true;
    let reply = c.call(&note("refused", false)).unwrap();
    match &reply.result {
        Err(ModuleError::Storage(why)) => assert!(why.contains("could not be synced"), "{why}"),
        other => panic!("a failed sync must fail the command: {other:?}"),
    }
    assert_eq!(
        std::fs::read(
            f.path()
                .join("module")
                .join(postvault_module::nvm::NVM_FILE)
        )
        .unwrap(),
        nvm,
        "the NVM was not written"
    );
    assert_eq!(status(&mut c).current_state, ModuleState::Error);
    drop((c, m));

    // A sink that lost the unsynced entry gets it again at boot.
    {
        let mut w = watched.lock().unwrap();
        w.fail_sync = false;
        let kept = w.entries.pop().unwrap();
        assert_eq!(kept.seq, last.seq);
    }
    let m = open_watched(&f, &watched);
    let mut c = client(&m);
    assert_eq!(status(&mut c).current_state, ModuleState::Operational);
    let w = watched.lock().unwrap();
    assert!(
        w.entries
            .iter()
            .any(|e| e.seq == last.seq && e.hash() == last.hash()),
        "the entry the failed sync did not cover was handed over again"
    );
}

/// A power loss can leave zeros where the last command's lines were (their
/// block never written, the file's length kept). At the next start the
/// module's own log is cut there, and the module hands those entries over
/// again from its NVM: the log is whole again, with no hole and no
/// damaged line.
#[test]
fn a_hole_a_power_loss_left_in_the_log_is_filled_again_at_boot() {
    let f = Fixture::new();
    // The module's own file sink (audit.log in its directory).
    let with_file_sink = || {
        let mut c = f.config(&Opts::default());
        c.audit_sink = None;
        c
    };
    let path = f
        .path()
        .join("module")
        .join(postvault_module::audit_sink::AUDIT_LOG_FILE);
    {
        let m = std::sync::Arc::new(std::sync::Mutex::new(open_module(with_file_sink)));
        let mut c = client(&m);
        master(&mut c);
        c.logon("so", &pw("so")).unwrap();
        ok(&mut c, note("one", false));
        ok(&mut c, note("two", false));
    }
    let whole = std::fs::read(&path).unwrap();
    let entries = postvault_audit::parse_log(std::str::from_utf8(&whole).unwrap()).unwrap();
    assert_eq!(entries.last().unwrap().data["note"], "two");
    let last_line = whole[..whole.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let mut damaged = whole.clone();
    damaged[last_line + 5..whole.len() - 10].fill(0);
    std::fs::write(&path, &damaged).unwrap();

    drop(open_module(with_file_sink));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        whole,
        "the damaged line is cut and written again from the NVM"
    );
}
