//! Self-tests and zeroization: a failed power-up test stops the module and
//! says which; pairwise and continuous test failures stop the operation that
//! hit them; Zeroize destroys every key until Reset.
use postvault_crypto::{Faults, TestName};
use postvault_module::protocol::Status;
use postvault_module::table::CommandKind;
use postvault_module::{ClientError, ModuleClient, ModuleError, ModuleState, Request, Response};

use crate::common::*;

fn faults(t: TestName) -> Opts {
    Opts {
        faults: Some(Faults::of(&[t])),
        ..Opts::default()
    }
}

#[track_caller]
fn assert_names_failed_test(s: &Status, t: TestName) {
    assert_eq!(s.current_state, ModuleState::Error, "{t}");
    let error = s.error.as_deref().unwrap_or_default();
    assert!(error.contains(t.as_str()), "{t}: error {error:?}");
    assert_eq!(s.self_tests.len(), TestName::POWER_UP.len());
    for (name, passed) in &s.self_tests {
        assert_eq!(*passed, name != t.as_str(), "{t}: {name} reported {passed}");
    }
}

#[test]
fn each_failed_power_up_test_puts_the_module_in_error_and_is_named() {
    // An initialized module, to see that a self-test failure is not persisted.
    let master_fixture = Fixture::new();
    let module_id = {
        let m = master_fixture.open();
        let mut c = client(&m);
        master(&mut c);
        status(&mut c).module_id
    };
    for t in TestName::POWER_UP {
        // A new module.
        let f = Fixture::new();
        let m = f.open_with(&faults(t));
        assert_eq!(m.lock().unwrap().current_state(), ModuleState::Error);
        let mut c = client(&m);
        let s = status(&mut c);
        assert_names_failed_test(&s, t);
        assert!(matches!(
            run_err(&mut c, Request::StartInitialization { time: T0 }),
            ModuleError::InError(e) if e.contains(t.as_str())
        ));
        assert!(matches!(
            run_err(&mut c, Request::RunSelfTests),
            ModuleError::InError(_)
        ));
        assert!(audit_log(&f).is_empty());

        // The initialized module, rebooted with the fault.
        {
            let m = master_fixture.open_with(&faults(t));
            let mut c = client(&m);
            let s = status(&mut c);
            assert_names_failed_test(&s, t);
            assert_eq!(s.persistent_state, ModuleState::Operational);
            assert_eq!(s.module_id, module_id);
            assert!(matches!(
                c.logon("so", &pw("so")),
                Err(ClientError::Module(ModuleError::InError(_)))
            ));
        }
    }
    // Without the fault it is Operational again: nothing was lost.
    let m = master_fixture.open();
    let mut c = client(&m);
    let s = status(&mut c);
    assert_eq!(s.current_state, ModuleState::Operational);
    assert!(s.self_tests.iter().all(|(_, ok)| *ok));
    as_user(&mut c, "so", |c| {
        assert!(
            matches!(ok(c, Request::RunSelfTests), Response::SelfTests(r) if r.iter().all(|(_, p)| *p))
        )
    });
}

#[test]
fn an_ecdsa_pairwise_failure_stops_start_initialization_cleanly() {
    let f = Fixture::new();
    {
        let m = f.open_with(&faults(TestName::EcdsaPairwise));
        let mut c = client(&m);
        // Power-up tests pass: the pairwise test runs at key generation.
        assert_eq!(status(&mut c).current_state, ModuleState::Uninitialized);
        assert_eq!(
            run_err(&mut c, Request::StartInitialization { time: T0 }),
            ModuleError::SelfTest("ecdsa-p256-pairwise".into())
        );
        let s = status(&mut c);
        // The failed pairwise test stops the module (non-fatal Error) and says why.
        assert_eq!(s.current_state, ModuleState::Error);
        assert!(
            s.error
                .as_deref()
                .unwrap_or("")
                .contains("ecdsa-p256-pairwise"),
            "{:?}",
            s.error
        );
        assert_eq!(s.persistent_state, ModuleState::Uninitialized);
        assert_eq!(s.module_id, None);
        assert!(!s.keys.audit_key);
        assert_eq!(s.audit_next_seq, 0);
        assert!(audit_log(&f).is_empty());
        // No access control can be set up on the failed start.
        assert!(matches!(
            run_err(
                &mut c,
                Request::InitializeAccessControl {
                    users: vec![new_user("admin", postvault_module::Role::Administrator)]
                }
            ),
            ModuleError::Denied { .. } | ModuleError::InError(_)
        ));
    }
    // Not half-initialized: after a restart without the fault it is a new module.
    let m = f.open();
    let mut c = client(&m);
    let s = status(&mut c);
    assert_eq!(
        (s.current_state, s.persistent_state),
        (ModuleState::Uninitialized, ModuleState::Uninitialized)
    );
    master(&mut c);
    assert_eq!(status(&mut c).current_state, ModuleState::Operational);
    assert_eq!(audit_log(&f)[0].seq, 0);
}

#[test]
fn an_hpke_pairwise_failure_at_transport_key_generation_stops_the_module() {
    let f = Fixture::new();
    let m = f.open_with(&faults(TestName::HpkePairwise));
    let mut c = client(&m);
    initialize(&mut c);
    let e = as_user(&mut c, "so", |c| run_err(c, Request::GenerateTransportKey));
    assert_eq!(e, ModuleError::SelfTest("hpke-pairwise".into()));
    let s = status(&mut c);
    assert_eq!(s.current_state, ModuleState::Error);
    assert!(s.error.unwrap().contains("pairwise"));
    assert!(!s.keys.transport_key);
    let log = audit_log(&f);
    let failed = log
        .iter()
        .rfind(|e| e.command == "GenerateTransportKey")
        .expect("the failure is audited");
    assert_eq!(
        (failed.reason.as_str(), failed.current_state.as_str()),
        ("self-test", "Error")
    );
    assert!(matches!(
        c.logon("so", &pw("so")),
        Err(ClientError::Module(ModuleError::InError(_)))
    ));
}

#[test]
fn a_continuous_rng_failure_puts_the_module_in_error_at_first_use() {
    let f = Fixture::new();
    let m = f.open_with(&faults(TestName::RngContinuous));
    // The power-up tests pass; nothing has drawn randomness yet.
    assert_eq!(
        m.lock().unwrap().current_state(),
        ModuleState::Uninitialized
    );
    // Opening a session draws the session ID: the continuous test fails.
    match ModuleClient::local(m.clone()) {
        Err(ClientError::Refused(_)) => {}
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("a session opened with a failed random generator"),
    }
    {
        let module = m.lock().unwrap();
        assert_eq!(module.current_state(), ModuleState::Error);
        let error = module.error().unwrap_or_default();
        assert!(error.contains("rng-continuous"), "{error:?}");
        assert_eq!(module.persistent_state(), ModuleState::Uninitialized);
    }
    assert!(ModuleClient::local(m.clone()).is_err());
    assert!(audit_log(&f).is_empty());
    drop(m);
    // A restart with a healthy generator works.
    let m = f.open();
    assert_eq!(
        status(&mut client(&m)).current_state,
        ModuleState::Uninitialized
    );
}

fn assert_zeroized(s: &Status) {
    assert_eq!(
        (s.current_state, s.persistent_state),
        (ModuleState::Error, ModuleState::Error)
    );
    assert!(
        s.error.as_deref().unwrap_or_default().contains("zeroized"),
        "{:?}",
        s.error
    );
    assert_eq!(s.keys.active_mks, None);
    assert_eq!(s.keys.dormant_mks, None);
    assert!(!s.keys.audit_key);
    assert!(!s.keys.transport_key);
    assert!(!s.keys.crypto_card);
    assert_eq!(
        (s.user_id.as_deref(), s.role),
        (None, postvault_module::Role::NoRole)
    );
}

#[test]
fn zeroize_destroys_every_key_until_reset() {
    let (mf, _cf) = master_and_clone();
    let f = mf;
    let old_id;
    {
        let m = f.open();
        let mut c = client(&m);
        old_id = status(&mut c).module_id.unwrap();
        let mut other = client(&m);
        other.logon("kc1", &pw("kc1")).unwrap();
        c.logon("so", &pw("so")).unwrap();
        let reply = c.call(&Request::Zeroize).unwrap();
        assert_eq!(reply.result, Ok(Response::Done));
        let entry = reply.audit.expect("zeroization is audited");
        assert_eq!(entry.command, "Zeroize");
        assert!(entry.signature.is_some());
        let log = audit_log(&f);
        assert_eq!(log.last(), Some(&entry));
        let key: [u8; 65] = hex::decode(&log[0].data["audit_key"])
            .unwrap()
            .try_into()
            .unwrap();
        postvault_audit::verify_chain(&log, &key).expect("the log up to zeroization verifies");

        // Everyone is logged off and no key is left.
        assert_zeroized(&status(&mut c));
        assert_zeroized(&status(&mut other));
        let log_len = log.len();
        // Everything but status, the queries, Close Session and Reset is refused.
        for kind in CommandKind::ALL {
            if matches!(kind, CommandKind::CloseSession | CommandKind::Reset) {
                continue;
            }
            let result = c.run(&crate::matrix::harmless(kind));
            match kind {
                CommandKind::GetStatus => assert!(matches!(result, Ok(Response::Status(_)))),
                CommandKind::QueryCurrentRole => {
                    assert!(matches!(
                        result,
                        Ok(Response::Role(postvault_module::Role::NoRole))
                    ))
                }
                CommandKind::QueryCurrentUser => {
                    assert!(matches!(result, Ok(Response::User(None))))
                }
                _ => assert!(
                    matches!(result, Err(ClientError::Module(_))),
                    "{kind:?} after Zeroize: {result:?}"
                ),
            }
        }
        assert_eq!(audit_log(&f).len(), log_len);
        assert_zeroized(&status(&mut c));
    }
    // A reboot does not bring anything back.
    let m = f.open();
    let mut c = client(&m);
    assert_zeroized(&status(&mut c));
    assert!(matches!(
        c.logon("so", &pw("so")),
        Err(ClientError::Module(ModuleError::InError(_)))
    ));
    // Reset: Uninitialized, and the module can be initialized again as a new one.
    ok(&mut c, Request::Reset);
    let s = status(&mut c);
    assert_eq!(
        (s.current_state, s.persistent_state, s.module_id, s.error),
        (
            ModuleState::Uninitialized,
            ModuleState::Uninitialized,
            None,
            None
        )
    );
    let start = audit_log(&f).len();
    master(&mut c);
    let s = status(&mut c);
    assert_eq!(s.current_state, ModuleState::Operational);
    assert_ne!(s.module_id.as_deref(), Some(old_id.as_str()));
    // The new chain starts at genesis and verifies on its own.
    let log = audit_log(&f);
    let chain = &log[start..];
    assert_eq!(chain[0].seq, 0);
    let key: [u8; 65] = hex::decode(&chain[0].data["audit_key"])
        .unwrap()
        .try_into()
        .unwrap();
    postvault_audit::verify_chain(chain, &key).unwrap();
}
