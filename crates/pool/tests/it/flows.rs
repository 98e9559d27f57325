//! A two-member pool end to end: the same MKS on both, a package made by
//! one member served by the other, the audit entries each call returns,
//! and the pool opened again on the same directory.
use postvault_crypto::Faults;
use postvault_crypto::rng::Rng;
use postvault_module::ModuleState;
use postvault_module::psd::{self, CustomerSecrets, DeviceId, PsdState, SealedPackage};
use postvault_module::{Request, Response};
use postvault_pool::{Checkout, Pool, PoolError};
use zeroize::Zeroizing;

use crate::common::*;

const DEVICE: DeviceId = DeviceId {
    vendor: 42,
    model: 1,
    serial: 7,
};

/// Runs a package-changing command; keeps the member's new checkpoint.
#[track_caller]
fn updated(
    c: &mut Checkout,
    seen: &mut Seen,
    cps: &mut Checkpoints,
    req: &Request,
) -> (SealedPackage, PsdState) {
    match call(c, seen, req) {
        Response::PsdUpdated {
            package,
            checkpoint,
            state,
        } => {
            cps.insert(c.module_id().to_string(), checkpoint);
            (package, state)
        }
        other => panic!("{other:?}"),
    }
}

/// Asserts that every module's entries, as the test saw them (startup and
/// calls), are exactly its `audit.log`, with consecutive sequence numbers.
fn assert_audit_matches_logs(pool: &Pool, seen: &Seen) {
    for s in pool.status() {
        let id = s.module_id.unwrap();
        let text =
            std::fs::read_to_string(pool.dir().join(format!("m{}", s.index)).join("audit.log"))
                .unwrap();
        let file: Vec<String> = text.lines().map(str::to_string).collect();
        let got = &seen.0[&id];
        let lines: Vec<String> = got.iter().map(|(_, l)| l.clone()).collect();
        assert_eq!(lines, file, "module {id}");
        for (i, (seq, _)) in got.iter().enumerate() {
            assert_eq!(*seq, i as u64, "module {id}");
        }
    }
}

#[test]
fn two_members_share_one_mks_and_serve_each_others_packages() {
    let dir = tempfile::tempdir().unwrap();
    let pool_dir = dir.path().join("modules");
    let pool = Pool::open(config(&pool_dir, 2)).unwrap();
    let mut seen = Seen::default();
    seen.add_startup(pool.take_startup_audit());
    assert_eq!(pool.in_service(), 2);
    let st = pool.status();
    assert!(st.iter().all(|s| s.in_service && s.reason.is_none()));
    assert_ne!(st[0].module_id, st[1].module_id);

    // The files: the directory is private, the passwords file too.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&pool_dir), 0o700);
    assert_eq!(mode(&pool_dir.join("operators.json")), 0o600);
    let deployment = pool.deployment().clone();
    assert_eq!(deployment.registration_public_key.len(), 32);
    assert_eq!(deployment.registration_signing_public_key.len(), 65);
    assert_eq!(deployment.provider_public_key.len(), 65);
    assert!(!deployment.ca_certificate_der.is_empty());

    let mut a = pool.try_checkout().unwrap();
    let mut b = pool.try_checkout().unwrap();
    assert!(pool.try_checkout().is_none(), "both members are held");
    assert_ne!(a.module_id(), b.module_id());

    let (sa, sb) = (status(&mut a, &mut seen), status(&mut b, &mut seen));
    for s in [&sa, &sb] {
        assert_eq!(s.current_state, ModuleState::Operational);
        assert!(s.keys.crypto_card);
    }
    assert!(sa.keys.active_mks.is_some());
    assert_eq!(sa.keys.active_mks, sb.keys.active_mks);
    assert_eq!(sa.module_id.as_deref(), Some(a.module_id()));

    // A package made on A, certified on B, authorized on A, configured on B.
    let mut cps = Checkpoints::new();
    let package = match call(
        &mut a,
        &mut seen,
        &Request::InitializePsd { device: DEVICE },
    ) {
        Response::PsdInitialized { package, .. } => package,
        other => panic!("{other:?}"),
    };
    let issued = b.issue_psd_certificate(&package, 0x1007, 30).unwrap();
    seen.add(b.module_id(), &issued.audit);
    assert!(
        issued.audit.len() >= 3,
        "logon, issue, logoff: {:?}",
        issued.audit
    );
    let certificate_der = match issued.response {
        Response::PsdCertificate { certificate_der } => certificate_der,
        other => panic!("{other:?}"),
    };
    let authorize = Request::AuthorizePsd {
        package,
        checkpoint: cps.get(a.module_id()).cloned(),
        certificate_der,
    };
    let (package, state) = updated(&mut a, &mut seen, &mut cps, &authorize);
    assert_eq!(state, PsdState::Unleased);

    let hmac_key = Zeroizing::new([7u8; 32]);
    let secrets = psd::seal_customer_secrets(
        &mut Rng::new(Faults::none()),
        &deployment.registration_public_key,
        &DEVICE,
        &CustomerSecrets {
            user_id: "alice".into(),
            hmac_key: hmac_key.clone(),
            password: Zeroizing::new("alice-correct-horse".into()),
        },
    )
    .unwrap();
    let configure = Request::ConfigurePsd {
        package: package.clone(),
        checkpoint: cps.get(b.module_id()).cloned(),
        secrets,
    };
    let package = match b.call(&configure) {
        Ok(called) => {
            seen.add(b.module_id(), &called.audit);
            // Each call's entries are consecutive.
            for w in called.audit.windows(2) {
                assert_eq!(w[1].0, w[0].0 + 1);
            }
            assert!(!called.audit.is_empty());
            match called.response {
                Response::PsdConfigured {
                    package,
                    checkpoint,
                    challenge,
                    mac,
                } => {
                    assert_eq!(
                        mac,
                        psd::configure_mac(&hmac_key, &DEVICE, "alice", &challenge)
                    );
                    cps.insert(b.module_id().to_string(), checkpoint);
                    package
                }
                other => panic!("{other:?}"),
            }
        }
        Err(e) => panic!("ConfigurePsd on the other member: {e}"),
    };

    // A refusal keeps its own audit entries and stays recognisable: the
    // old package with a checkpoint that is not A's newest.
    let stale = Request::RetrievePsdStatus {
        package: package.clone(),
        checkpoint: None,
    };
    match a.call(&stale) {
        Err(PoolError::Refused { error, audit }) => {
            assert!(
                matches!(error, postvault_module::ModuleError::CheckpointMismatch(_)),
                "{error:?}"
            );
            seen.add(a.module_id(), &audit);
        }
        other => panic!("{other:?}"),
    }

    // B's checkpoint verifies on A (one MKS) but is not A's: refused, with
    // what to pass instead.
    let foreign = Request::RetrievePsdStatus {
        package: package.clone(),
        checkpoint: cps.get(b.module_id()).cloned(),
    };
    match a.call(&foreign) {
        Err(PoolError::Refused { error, audit }) => {
            assert!(
                matches!(&error, postvault_module::ModuleError::Rejected(m)
                    if m.contains(&format!("belongs to module {}", b.module_id()))
                        && m.contains("pass this module's checkpoint")),
                "{error:?}"
            );
            seen.add(a.module_id(), &audit);
        }
        other => panic!("{other:?}"),
    }

    // Both serve the configured package, each with its own checkpoint.
    for c in [&mut a, &mut b] {
        let req = Request::RetrievePsdStatus {
            package: package.clone(),
            checkpoint: cps.get(c.module_id()).cloned(),
        };
        match call(c, &mut seen, &req) {
            Response::PsdStatus(s) => assert_eq!(s.state, PsdState::Assigned),
            other => panic!("{other:?}"),
        }
    }
    let ids = [a.module_id().to_string(), b.module_id().to_string()];
    drop(a);
    drop(b);
    seen.add_startup(pool.take_startup_audit());
    assert_audit_matches_logs(&pool, &seen);
    drop(pool);

    // Opened again: same members, same MKS, the package still opens.
    let pool = Pool::open(config(&pool_dir, 2)).unwrap();
    seen.add_startup(pool.take_startup_audit());
    assert_eq!(pool.in_service(), 2);
    assert_eq!(pool.deployment(), &deployment);
    let mut again: Vec<String> = pool
        .status()
        .into_iter()
        .map(|s| s.module_id.unwrap())
        .collect();
    let mut before = ids.to_vec();
    again.sort();
    before.sort();
    assert_eq!(again, before);
    let mut a = pool.try_checkout().unwrap();
    let mut b = pool.try_checkout().unwrap();
    let (sa, sb) = (status(&mut a, &mut seen), status(&mut b, &mut seen));
    assert_eq!(sa.current_state, ModuleState::Operational);
    assert_eq!(sb.current_state, ModuleState::Operational);
    assert_eq!(sa.keys.active_mks, sb.keys.active_mks);
    for c in [&mut a, &mut b] {
        let req = Request::RetrievePsdStatus {
            package: package.clone(),
            checkpoint: cps.get(c.module_id()).cloned(),
        };
        match call(c, &mut seen, &req) {
            Response::PsdStatus(s) => assert_eq!(s.state, PsdState::Assigned),
            other => panic!("{other:?}"),
        }
    }
    drop((a, b));
    seen.add_startup(pool.take_startup_audit());
    assert_audit_matches_logs(&pool, &seen);
}

#[test]
fn an_unfinished_ceremony_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("m0")).unwrap();
    match Pool::open(config(dir.path(), 1)) {
        Err(e @ PoolError::Unfinished { .. }) => {
            assert!(e.to_string().contains("delete the directory"), "{e}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened"),
    }
}

#[test]
fn a_ceremony_that_fails_half_way_leaves_a_directory_open_refuses() {
    let dir = tempfile::tempdir().unwrap();
    // The clone passes its power-up tests but fails the HPKE pairwise test
    // at Generate Transport Key, after the master's ceremony finished.
    let mut c = config(dir.path(), 2);
    c.faults = vec![
        Faults::none(),
        Faults::of(&[postvault_crypto::selftest::TestName::HpkePairwise]),
    ];
    match Pool::open(c) {
        Err(e @ PoolError::Ceremony(_)) => {
            let text = e.to_string();
            assert!(
                text.contains("clone (member 1)") && text.contains("GenerateTransportKey"),
                "{text}"
            );
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened although a clone failed"),
    }
    assert!(!dir.path().join("deployment.json").exists());
    assert!(!dir.path().join("operators.json").exists());
    match Pool::open(config(dir.path(), 2)) {
        Err(e @ PoolError::Unfinished { .. }) => {
            assert!(e.to_string().contains("delete the directory"), "{e}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened an unfinished pool"),
    }
}

#[test]
fn an_operator_left_logged_on_is_logged_off_when_the_member_returns() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::open(config(dir.path(), 1)).unwrap();
    let ops: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("operators.json")).unwrap())
            .unwrap();
    let password = ops["modules"][0]["passwords"]["so"].as_str().unwrap();
    let mut seen = Seen::default();
    let mut m = pool.try_checkout().unwrap();
    m.call(&Request::Logon {
        user_id: "so".into(),
        password: postvault_module::Password::new(password),
    })
    .unwrap();
    assert_eq!(status(&mut m, &mut seen).user_id.as_deref(), Some("so"));
    drop(m);
    let mut m = pool.try_checkout().unwrap();
    let s = status(&mut m, &mut seen);
    assert_eq!(s.user_id, None);
    assert_eq!(s.role, postvault_module::Role::NoRole);
}

#[test]
fn the_auditor_exports_a_key_that_verifies_each_members_log() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::open(config(dir.path(), 2)).unwrap();
    let mut verified = 0;
    // Check out both members (each holds its own module).
    let mut held = vec![pool.try_checkout().unwrap(), pool.try_checkout().unwrap()];
    for m in &mut held {
        let called = m.export_audit_key().unwrap();
        let key: [u8; 65] = match called.response {
            Response::AuditKey(k) => k.try_into().unwrap(),
            other => panic!("{other:?}"),
        };
        let text =
            std::fs::read_to_string(dir.path().join(format!("m{}/audit.log", m.index()))).unwrap();
        let entries = postvault_audit::parse_log(&text).unwrap();
        let report = postvault_audit::verify_chain(&entries, &key).unwrap();
        assert_eq!(report.entries, entries.len());
        // Signed to its end: the export closes with a signed entry.
        assert_eq!(report.unsigned_tail, 0, "{report:?}");
        assert_eq!(
            called.audit.last().map(|(seq, _)| *seq),
            Some(report.last_seq)
        );
        verified += 1;
    }
    assert_eq!(verified, 2);
    // The wrong key fails.
    let called = held[0].export_audit_key().unwrap();
    let Response::AuditKey(k0) = called.response else {
        panic!()
    };
    let text = std::fs::read_to_string(dir.path().join(format!("m{}/audit.log", held[1].index())))
        .unwrap();
    let entries = postvault_audit::parse_log(&text).unwrap();
    assert!(postvault_audit::verify_chain(&entries, &k0.try_into().unwrap()).is_err());
}

#[test]
fn two_pools_share_one_directory_with_disjoint_ranges() {
    let dir = tempfile::tempdir().unwrap();
    // A fresh directory must start from m0.
    let mut late = config(dir.path(), 1);
    late.first = 1;
    let e = Pool::open(late).err().unwrap();
    assert!(e.to_string().contains("module_first = 0"), "{e}");
    assert!(!dir.path().join("deployment.json").exists());

    // Three members, then two pools (two servers) over m0-m1 and m2.
    drop(Pool::open(config(dir.path(), 3)).unwrap());
    let a = Pool::open(config(dir.path(), 2)).unwrap();
    let mut cb = config(dir.path(), 1);
    cb.first = 2;
    let b = Pool::open(cb).unwrap();
    assert_eq!(a.in_service(), 2);
    assert_eq!(b.in_service(), 1);
    assert_eq!(b.status()[0].index, 2);
    assert_eq!(a.deployment(), b.deployment());

    // A package made by a member of A opens on B's member (one MKS).
    let mut seen = Seen::default();
    let mut ma = a.try_checkout().unwrap();
    let package = match call(
        &mut ma,
        &mut seen,
        &Request::InitializePsd { device: DEVICE },
    ) {
        Response::PsdInitialized { package, .. } => package,
        other => panic!("{other:?}"),
    };
    let mut mb = b.try_checkout().unwrap();
    let issued = mb.issue_psd_certificate(&package, 0x2007, 30).unwrap();
    assert!(matches!(issued.response, Response::PsdCertificate { .. }));
    let (sa, sb) = (status(&mut ma, &mut seen), status(&mut mb, &mut seen));
    assert_eq!(sa.keys.active_mks, sb.keys.active_mks);

    // A third pool over m1-m2 finds both held by the others.
    let mut cc = config(dir.path(), 2);
    cc.first = 1;
    let e = Pool::open(cc).err().unwrap();
    assert!(e.to_string().contains("in use"), "{e}");
}

#[test]
fn audit_entries_given_back_are_taken_again_first() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::open(config(dir.path(), 1)).unwrap();
    let startup = pool.take_startup_audit();
    assert!(!startup.is_empty(), "the ceremony is audited");
    assert!(pool.take_startup_audit().is_empty());
    // A store that could not keep them gives them back; what is given
    // back comes out before what the pool held already.
    pool.return_audit(startup.clone());
    let later = ("other".to_string(), 99, "{}".to_string());
    pool.return_audit([later.clone()]);
    let again = pool.take_startup_audit();
    assert_eq!(again.len(), startup.len() + 1);
    assert_eq!(again[0], later);
    assert_eq!(&again[1..], &startup[..]);
}
