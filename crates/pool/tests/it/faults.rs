//! Members that fail their power-up self-tests are left out of service;
//! the others serve; a pool where none can serve refuses to open. A member
//! missing from a pool (skipped at the ceremony, or asked for on a later
//! open) is cloned from one in service.
use postvault_crypto::Faults;
use postvault_crypto::selftest::TestName;
use postvault_module::{ModuleState, Request};
use postvault_pool::{Pool, PoolError};

use crate::common::*;

#[test]
fn a_member_failing_its_self_test_is_out_of_service_and_the_others_serve() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = {
        let pool = Pool::open(config(dir.path(), 2)).unwrap();
        pool.status()
            .into_iter()
            .map(|s| s.module_id.unwrap())
            .collect()
    };

    let mut c = config(dir.path(), 2);
    c.faults = vec![Faults::none(), Faults::of(&[TestName::Sha256])];
    let pool = Pool::open(c).unwrap();
    assert_eq!(pool.in_service(), 1);
    let st = pool.status();
    assert!(st[0].in_service);
    assert!(!st[1].in_service);
    let reason = st[1].reason.clone().unwrap();
    assert!(reason.contains("self-test"), "{reason}");
    assert_eq!(st[1].module_id.as_deref(), Some(ids[1].as_str()));
    let mut seen = Seen::default();
    let mut m = pool.try_checkout().unwrap();
    assert_eq!(m.module_id(), ids[0]);
    assert!(pool.try_checkout().is_none());
    assert_eq!(
        status(&mut m, &mut seen).current_state,
        ModuleState::Operational
    );
    drop(m);
    drop(pool);

    let mut c = config(dir.path(), 2);
    c.faults = vec![
        Faults::of(&[TestName::Sha256]),
        Faults::of(&[TestName::Hpke]),
    ];
    match Pool::open(c) {
        Err(e @ PoolError::NoModule(_)) => {
            let text = e.to_string();
            assert!(
                text.contains("member 0") && text.contains("member 1"),
                "{text}"
            );
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a pool with no healthy member opened"),
    }

    // Healthy again: both serve, same IDs.
    let pool = Pool::open(config(dir.path(), 2)).unwrap();
    assert_eq!(pool.in_service(), 2);
    let again: Vec<String> = pool
        .status()
        .into_iter()
        .map(|s| s.module_id.unwrap())
        .collect();
    assert_eq!(again, ids);
}

#[test]
fn a_fresh_pool_with_a_failing_member_sets_it_up_later_and_a_pool_can_grow() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 2);
    c.faults = vec![Faults::none(), Faults::of(&[TestName::EcdsaP256])];
    let first = {
        let pool = Pool::open(c).unwrap();
        assert_eq!(pool.in_service(), 1);
        let st = pool.status();
        assert!(st[1].reason.as_deref().unwrap().contains("self-test"));
        st[0].module_id.clone().unwrap()
    };

    // Opened without the fault, and with a third member: both are cloned.
    let pool = Pool::open(config(dir.path(), 3)).unwrap();
    assert_eq!(pool.in_service(), 3, "{:?}", pool.status());
    assert_eq!(pool.status()[0].module_id.as_deref(), Some(first.as_str()));
    let startup = pool.take_startup_audit();
    assert!(startup.iter().any(|(_, _, l)| l.contains("CombineShares")));
    let mut seen = Seen::default();
    let mut mks = Vec::new();
    let mut held = Vec::new();
    while let Some(mut m) = pool.try_checkout() {
        let s = status(&mut m, &mut seen);
        assert!(s.keys.crypto_card);
        mks.push(s.keys.active_mks.unwrap());
        held.push(m);
    }
    assert_eq!(mks.len(), 3);
    assert!(mks.iter().all(|m| *m == mks[0]));
    // Every member issues certificates (the CA operator exists on clones).
    for m in &mut held {
        let pkg = match m
            .call(&Request::InitializePsd {
                device: postvault_module::psd::DeviceId {
                    vendor: 42,
                    model: 1,
                    serial: 100 + m.index() as u32,
                },
            })
            .unwrap()
            .response
        {
            postvault_module::Response::PsdInitialized { package, .. } => package,
            other => panic!("{other:?}"),
        };
        m.issue_psd_certificate(&pkg, 0x2000 + m.index() as u64, 30)
            .unwrap();
    }
    drop(held);
    drop(pool);

    // And once more, nothing new is set up.
    let pool = Pool::open(config(dir.path(), 3)).unwrap();
    assert_eq!(pool.in_service(), 3);
    assert!(
        !pool
            .take_startup_audit()
            .iter()
            .any(|(_, _, l)| l.contains("CombineShares"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_goes_to_error_is_taken_out_of_service() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::open(config(dir.path(), 2)).unwrap();
    let mut m = pool.checkout().await.unwrap();
    let gone = m.index();
    zeroize(pool.dir(), &mut m);
    drop(m);
    assert_eq!(pool.in_service(), 1);
    let st = &pool.status()[gone];
    assert!(!st.in_service);
    assert!(st.reason.as_deref().unwrap().contains("zeroized"), "{st:?}");

    // The other one still serves, again and again.
    for _ in 0..3 {
        let m = pool.checkout().await.unwrap();
        assert_ne!(m.index(), gone);
    }

    // When the last one goes, waiting is an error, not a hang.
    let mut m = pool.checkout().await.unwrap();
    zeroize(pool.dir(), &mut m);
    drop(m);
    assert_eq!(pool.in_service(), 0);
    assert!(pool.try_checkout().is_none());
    match pool.checkout().await {
        Err(PoolError::NoModule(why)) => assert!(why.contains("zeroized"), "{why}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("checked out a zeroized member"),
    }
    drop(pool);
    assert!(matches!(
        Pool::open(config(dir.path(), 2)),
        Err(PoolError::NoModule(_))
    ));
}
