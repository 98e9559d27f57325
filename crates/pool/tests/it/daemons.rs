//! Members that are module daemons (`daemon::serve` on a Unix socket, each
//! in its own directory with its own seal key, as `postvault module serve`
//! runs it): the pool sets fresh daemons up with the same ceremony, every
//! audit entry they store comes back with the answers, a reopened pool
//! finds the same modules, and a daemon that cannot be reached or is in
//! Error is left out of service while the others serve.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use postvault_crypto::Faults;
use postvault_crypto::password::Argon2Params;
use postvault_crypto::selftest::TestName;
use postvault_module::audit_sink::{AUDIT_LOG_FILE, CaptureSink, Captured, FileAuditSink};
use postvault_module::psd::DeviceId;
use postvault_module::{ManualClock, Module, ModuleConfig, ModuleState, Request, Response};
use postvault_pool::{Pool, PoolConfig, PoolError};
use postvault_seal::{SealConfig, open_provider};

use crate::common::*;

/// Starts a module daemon for the module directory `dir` on `socket`, in
/// a thread that serves until the test process ends.
fn daemon(dir: &Path, socket: &Path, faults: Faults) {
    std::fs::create_dir_all(dir).unwrap();
    let seal = open_provider(
        &SealConfig::File {
            key_path: dir.join("seal.key"),
        },
        true,
    )
    .unwrap();
    let mut mc = ModuleConfig::new(dir, seal, Arc::new(ManualClock::new(T0)));
    mc.argon2 = Argon2Params::TEST;
    mc.faults = faults;
    let captured = Captured::default();
    let file = FileAuditSink::open(&dir.join(AUDIT_LOG_FILE)).unwrap();
    mc.audit_sink = Some(Box::new(CaptureSink::new(file, Arc::clone(&captured))));
    let module = Module::open(mc).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        postvault_module::daemon::serve(module, &socket, Some(captured), move || {
            tx.send(()).unwrap()
        })
        .expect("the daemon serves");
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the daemon is ready");
}

/// A pool configuration whose members are the daemons on `sockets`.
fn daemon_config(pool_dir: &Path, sockets: &[PathBuf]) -> PoolConfig {
    let mut c = config(pool_dir, sockets.len());
    c.sockets = sockets.to_vec();
    c
}

/// Every entry of each daemon's `audit.log` came back to the pool (the
/// test saw it, from a call or the startup backlog), in order.
fn assert_audit_matches(seen: &Seen, ids: &[String], dirs: &[PathBuf]) {
    for (id, dir) in ids.iter().zip(dirs) {
        let text = std::fs::read_to_string(dir.join(AUDIT_LOG_FILE)).unwrap();
        let file: Vec<&str> = text.lines().collect();
        let got: Vec<&str> = seen.0[id].iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(got, file, "module {id}");
        for (i, (seq, _)) in seen.0[id].iter().enumerate() {
            assert_eq!(*seq, i as u64, "module {id}");
        }
    }
}

#[test]
fn fresh_daemons_are_set_up_and_serve_with_their_audit_entries() {
    let work = tempfile::tempdir().unwrap();
    let pool_dir = work.path().join("pool");
    let dirs: Vec<PathBuf> = (0..2).map(|i| work.path().join(format!("d{i}"))).collect();
    let sockets: Vec<PathBuf> = (0..2)
        .map(|i| work.path().join(format!("m{i}.sock")))
        .collect();
    for (d, s) in dirs.iter().zip(&sockets) {
        daemon(d, s, Faults::none());
    }
    let mut seen = Seen::default();
    let ids: Vec<String> = {
        let pool = Pool::open(daemon_config(&pool_dir, &sockets)).unwrap();
        seen.add_startup(pool.take_startup_audit());
        assert_eq!(pool.in_service(), 2);
        let st = pool.status();
        for (s, socket) in st.iter().zip(&sockets) {
            assert!(s.in_service, "{s:?}");
            assert_eq!(s.socket.as_ref(), Some(socket));
        }
        // The pool directory holds the deployment, not the modules.
        assert!(pool_dir.join("deployment.json").exists());
        assert!(!pool_dir.join("m0").exists());
        assert!(!pool_dir.join("seal.key").exists());

        // Both daemons hold the same MKS and serve each other's packages.
        let mut a = pool.try_checkout().unwrap();
        let mut b = pool.try_checkout().unwrap();
        let (sa, sb) = (status(&mut a, &mut seen), status(&mut b, &mut seen));
        assert_eq!(sa.current_state, ModuleState::Operational);
        assert!(sa.keys.active_mks.is_some());
        assert_eq!(sa.keys.active_mks, sb.keys.active_mks);
        let device = DeviceId {
            vendor: 42,
            model: 1,
            serial: 9,
        };
        let package = match call(&mut a, &mut seen, &Request::InitializePsd { device }) {
            Response::PsdInitialized { package, .. } => package,
            other => panic!("{other:?}"),
        };
        let issued = b.issue_psd_certificate(&package, 0x1009, 30).unwrap();
        assert!(issued.audit.len() >= 3, "{:?}", issued.audit);
        seen.add(b.module_id(), &issued.audit);
        assert!(matches!(issued.response, Response::PsdCertificate { .. }));
        let ids = vec![a.module_id().to_string(), b.module_id().to_string()];
        assert_ne!(ids[0], ids[1]);
        ids
    };
    // Status calls are not audited; everything else came back.
    assert_audit_matches(&seen, &ids, &dirs);

    // Opened again: the same modules, nothing set up again.
    let before = std::fs::read(pool_dir.join("deployment.json")).unwrap();
    let pool = Pool::open(daemon_config(&pool_dir, &sockets)).unwrap();
    seen.add_startup(pool.take_startup_audit());
    assert_eq!(pool.in_service(), 2);
    let again: Vec<String> = pool
        .status()
        .into_iter()
        .map(|s| s.module_id.unwrap())
        .collect();
    assert_eq!(again, ids);
    assert_eq!(
        std::fs::read(pool_dir.join("deployment.json")).unwrap(),
        before
    );
    let mut m = pool.try_checkout().unwrap();
    let id = m.module_id().to_string();
    let called = m.call(&Request::InitializePsd {
        device: DeviceId {
            vendor: 42,
            model: 1,
            serial: 10,
        },
    });
    let called = called.unwrap();
    assert_eq!(called.audit.len(), 1, "{:?}", called.audit);
    seen.add(&id, &called.audit);
    drop(m);
    assert_audit_matches(&seen, &ids, &dirs);

    // The daemons swapped round are refused: their IDs are not the
    // recorded ones.
    let swapped = [sockets[1].clone(), sockets[0].clone()];
    drop(pool);
    let Err(e) = Pool::open(daemon_config(&pool_dir, &swapped)) else {
        panic!("a pool opened with its daemons swapped round");
    };
    assert!(
        matches!(&e, PoolError::NoModule(why) if why.contains("is not the")),
        "{e}"
    );
}

#[test]
fn unreachable_or_failed_daemons_are_out_of_service_and_a_missing_one_is_set_up_later() {
    let work = tempfile::tempdir().unwrap();
    let pool_dir = work.path().join("pool");
    let socket = |i: usize| work.path().join(format!("m{i}.sock"));
    let dir = |i: usize| work.path().join(format!("d{i}"));
    daemon(&dir(0), &socket(0), Faults::none());

    // Member 1 has no daemon yet: the ceremony sets up member 0 alone.
    let sockets = vec![socket(0), socket(1)];
    let ids = {
        let pool = Pool::open(daemon_config(&pool_dir, &sockets)).unwrap();
        assert_eq!(pool.in_service(), 1);
        let st = pool.status();
        let why = st[1].reason.clone().unwrap();
        assert!(why.contains("cannot reach its module daemon"), "{why}");
        assert!(why.contains("m1.sock"), "{why}");
        let mut m = pool.try_checkout().unwrap();
        let mut seen = Seen::default();
        assert_eq!(
            status(&mut m, &mut seen).current_state,
            ModuleState::Operational
        );
        st.into_iter().map(|s| s.module_id).collect::<Vec<_>>()
    };
    assert!(ids[0].is_some());

    // Its daemon started, the next open clones the MKS into it; a third
    // daemon that failed its self-tests stays out.
    daemon(&dir(1), &socket(1), Faults::none());
    daemon(&dir(2), &socket(2), Faults::of(&[TestName::Sha256]));
    let sockets = vec![socket(0), socket(1), socket(2)];
    let pool = Pool::open(daemon_config(&pool_dir, &sockets)).unwrap();
    let st = pool.status();
    assert!(st[0].in_service && st[1].in_service, "{st:?}");
    assert_eq!(st[0].module_id, ids[0]);
    let why = st[2].reason.clone().unwrap();
    assert!(why.contains("Error"), "{why}");
    let mut a = pool.try_checkout().unwrap();
    let mut b = pool.try_checkout().unwrap();
    let mut seen = Seen::default();
    assert_eq!(
        status(&mut a, &mut seen).keys.active_mks,
        status(&mut b, &mut seen).keys.active_mks
    );
    drop((a, b));

    // One socket per member, or the configuration is refused.
    let mut c = daemon_config(&pool_dir, &sockets);
    c.modules = 2;
    let Err(e) = Pool::open(c) else {
        panic!("a pool opened with 3 sockets for 2 members");
    };
    assert!(matches!(e, PoolError::Config(_)), "{e}");
    assert!(e.to_string().contains("one socket per member"), "{e}");
}

#[test]
fn a_daemon_whose_module_goes_to_error_is_taken_out_of_service() {
    let work = tempfile::tempdir().unwrap();
    let pool_dir = work.path().join("pool");
    let sockets: Vec<PathBuf> = (0..2)
        .map(|i| work.path().join(format!("m{i}.sock")))
        .collect();
    for (i, s) in sockets.iter().enumerate() {
        daemon(&work.path().join(format!("d{i}")), s, Faults::none());
    }
    let pool = Pool::open(daemon_config(&pool_dir, &sockets)).unwrap();
    let mut m = pool.try_checkout().unwrap();
    let gone = m.index();
    // The member's Security Officer zeroizes its module (a command that
    // succeeds and leaves the module in Error).
    zeroize(&pool_dir, &mut m);
    drop(m);
    assert_eq!(pool.in_service(), 1);
    let st = &pool.status()[gone];
    assert!(!st.in_service);
    assert!(st.reason.as_deref().unwrap().contains("Error"), "{st:?}");
    // The other daemon serves on.
    for _ in 0..3 {
        let mut m = pool.try_checkout().unwrap();
        assert_ne!(m.index(), gone);
        let mut seen = Seen::default();
        assert_eq!(
            status(&mut m, &mut seen).current_state,
            ModuleState::Operational
        );
    }
}
