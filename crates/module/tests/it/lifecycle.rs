//! Start-up, initialization, logon rules and the master/clone ceremony.
use crate::common::*;

use postvault_module::{ModuleState, Request};

#[test]
fn master_initializes_and_verifies_its_audit_log() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    assert_eq!(status(&mut c).current_state, ModuleState::Uninitialized);
    master(&mut c);
    let s = status(&mut c);
    assert_eq!(s.current_state, ModuleState::Operational);
    assert_eq!(s.persistent_state, ModuleState::Operational);
    assert!(s.keys.active_mks.is_some());
    assert!(s.keys.audit_key);
    let log = f.log.lock().unwrap().clone();
    assert!(log.len() >= 5, "{}", log.len());
    match as_user(&mut c, "so", |c| c.run(&Request::ExportAuditKey)) {
        Err(postvault_module::ClientError::Module(postvault_module::ModuleError::Denied {
            ..
        })) => {}
        other => panic!("security officer must not export the audit key: {other:?}"),
    };
    // The first entry's signature is under the key Start Initialization reported.
    let first = &log[0];
    assert_eq!(first.command, "StartInitialization");
    let audit_key: [u8; 65] = hex::decode(&first.data["audit_key"])
        .unwrap()
        .try_into()
        .unwrap();
    let report = postvault_audit::verify_chain(&log, &audit_key).expect("chain verifies");
    assert_eq!(report.entries, log.len());
}
