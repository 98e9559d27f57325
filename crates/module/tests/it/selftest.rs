//! Self-tests and zeroization: a failed power-up test stops the module and
//! says which; pairwise and continuous test failures stop the operation that
//! hit them; Zeroize destroys every key until Reset.
use postvault_crypto::{Faults, TestName};
use postvault_module::keys::{KeyToken, KeyType, KeyUsage};
use postvault_module::protocol::{
    AccountSettings, CryptoCardKeys, EncryptedShare, MksSlot, Status,
};
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

/// A request of each kind with harmless arguments.
fn request(kind: CommandKind) -> Request {
    let token = KeyToken {
        version: 1,
        key_type: KeyType::Aes256,
        usage: KeyUsage::General,
        expires: None,
        exportable: true,
        mks_generation: 1,
        mks_id: [0; 16],
        identity: "x".into(),
        sealed: vec![0; 60],
    };
    use CommandKind as C;
    use postvault_module::psd::{ProviderBody, ProviderCommand, ProviderMessage};
    let package = || postvault_module::psd::SealedPackage {
        version: 1,
        device_id: "0042-0001-00000017".into(),
        mks_id: [0; 16],
        mks_generation: 1,
        sealed: vec![0; 60],
    };
    let message = |command| ProviderMessage {
        body: ProviderBody {
            device_id: "0042-0001-00000017".into(),
            sequence: 1,
            command,
        },
        signature: [0; 64],
    };
    match kind {
        C::CloseSession => Request::CloseSession,
        C::GetStatus => Request::GetStatus,
        C::StartInitialization => Request::StartInitialization { time: T0 },
        C::InitializeAccessControl => Request::InitializeAccessControl { users: vec![] },
        C::Logon => Request::Logon {
            user_id: "so".into(),
            password: pw("so"),
        },
        C::Logoff => Request::Logoff,
        C::QueryCurrentRole => Request::QueryCurrentRole,
        C::QueryCurrentUser => Request::QueryCurrentUser,
        C::ChangePassword => Request::ChangePassword {
            old: pw("so"),
            new: pw("so-new"),
        },
        C::SetClock => Request::SetClock { time: T0 },
        C::BeginAdmin => Request::BeginAdmin,
        C::EndAdmin => Request::EndAdmin,
        C::CreateUser => Request::CreateUser {
            user: new_user("x", postvault_module::Role::Auditor),
        },
        C::DeleteUser => Request::DeleteUser {
            user_id: "kc5".into(),
        },
        C::ModifyUser => Request::ModifyUser {
            user_id: "kc5".into(),
            settings: AccountSettings::default(),
            new_password: None,
            unlock: true,
        },
        C::ViewUsers => Request::ViewUsers,
        C::GenerateMks => Request::GenerateMks,
        C::GenerateTransportKey => Request::GenerateTransportKey,
        C::ExportTransportKey => Request::ExportTransportKey,
        C::CreateMksShares => Request::CreateMksShares {
            count: 2,
            threshold: 2,
            slot: MksSlot::Active,
        },
        C::ExportShare => Request::ExportShare {
            transport_public_key: vec![0; 32],
            exportable: true,
        },
        C::AbortExport => Request::AbortExport,
        C::StartImporting => Request::StartImporting,
        C::ImportShare => Request::ImportShare {
            share: EncryptedShare {
                version: 1,
                mks_id: "00".repeat(16),
                generation: 1,
                index: 1,
                count: 2,
                threshold: 2,
                exportable: true,
                transport_key_hash: "00".repeat(32),
                source_module: "00".repeat(16),
                enc: vec![0; 32],
                ciphertext: vec![0; 64],
            },
        },
        C::CombineShares => Request::CombineShares,
        C::ActivateMks => Request::ActivateMks,
        C::DeleteDormantMks => Request::DeleteDormantMks,
        C::TranslateToken => Request::TranslateToken {
            token: token.clone(),
        },
        C::CreateKeyToken => Request::CreateKeyToken {
            key_type: KeyType::Aes256,
            usage: KeyUsage::General,
            identity: "x".into(),
            exportable: true,
            expires: None,
        },
        C::CheckKeyToken => Request::CheckKeyToken { token },
        C::InitializeCryptoCard => Request::InitializeCryptoCard {
            keys: CryptoCardKeys::Generate,
            ca_certificate: None,
            provider_public_key: None,
        },
        C::CreateAuditKey => Request::CreateAuditKey,
        C::ExportAuditKey => Request::ExportAuditKey,
        C::CreateAuditEntry => Request::CreateAuditEntry {
            note: "after zeroize".into(),
            sign: false,
        },
        C::RunSelfTests => Request::RunSelfTests,
        C::Zeroize => Request::Zeroize,
        C::Reset => Request::Reset,
        C::InitializePsd => Request::InitializePsd {
            device: postvault_module::psd::DeviceId {
                vendor: 42,
                model: 1,
                serial: 17,
            },
        },
        C::RetrievePsdPublicKey => Request::RetrievePsdPublicKey { package: package() },
        C::AuthorizePsd => Request::AuthorizePsd {
            package: package(),
            certificate_der: vec![0x30, 0],
        },
        C::ConfigurePsd => Request::ConfigurePsd {
            package: package(),
            secrets: postvault_module::psd::HpkeSealed {
                enc: vec![0; 32],
                ciphertext: vec![0; 48],
            },
        },
        C::AuthorizeCustomer => Request::AuthorizeCustomer {
            package: package(),
            message: message(ProviderCommand::AuthorizeCustomer {
                licensing_zip: 100_010_001,
                max_descending_mills: 1,
            }),
        },
        C::DownloadPostageValue => Request::DownloadPostageValue {
            package: package(),
            message: message(ProviderCommand::Download {
                amount_mills: 1,
                control_total_mills: 0,
            }),
        },
        C::CreateIndicium => Request::CreateIndicium {
            package: package(),
            request: postvault_module::psd::IndiciumRequest {
                device_id: "0042-0001-00000017".into(),
                user_id: "nobody".into(),
                challenge: [0; 16],
                postage_mills: 1,
                date: 20_261_123,
                origin_zip: 100_010_001,
                destination_zip: 0,
                category: *b"FC  ",
                mac: [0; 32],
            },
        },
    }
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
            let result = c.run(&request(kind));
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
