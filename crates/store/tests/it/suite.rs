//! The behaviours users rely on, one function each, run against every
//! engine (see `both!` in `main.rs`).

use postvault_store::{Commit, MoneyKind, SCHEMA_VERSION, StoreError, open_store};

use crate::db::{Backend, Db, account, audit, checkpoint, download, ledger, meter, session};

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub async fn migrations_are_idempotent(b: Backend) {
    let db = Db::new(b).await;
    let s1 = db.open().await;
    assert_eq!(s1.schema_version().await.unwrap(), SCHEMA_VERSION);
    s1.create_account(&account("alice")).await.unwrap();
    // A second open (a second server, or a restart) applies nothing.
    let s2 = db.open().await;
    assert_eq!(s2.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(
        db.raw_i64("SELECT COUNT(*) FROM schema_migrations").await,
        SCHEMA_VERSION
    );
    assert!(s2.get_account("alice").await.unwrap().is_some());
}

pub async fn newer_schema_is_refused(b: Backend) {
    let db = Db::new(b).await;
    drop(db.open().await);
    db.raw_exec(&format!(
        "INSERT INTO schema_migrations (version) VALUES ({})",
        SCHEMA_VERSION + 1
    ))
    .await;
    match db.try_open().await {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert_eq!(supported, SCHEMA_VERSION);
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
    let e = open_store(&db.url()).await.err().expect("refused");
    assert!(e.to_string().contains("upgrade postvault"), "{e}");
}

pub async fn open_store_parses_urls(b: Backend) {
    let db = Db::new(b).await;
    let s = open_store(&db.url()).await.unwrap();
    let expected = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(s.engine(), expected);
    s.create_meter(&meter("PV-1", None)).await.unwrap();
    assert!(db.open().await.get_meter("PV-1").await.unwrap().is_some());
    for bad in ["mysql://x/y", "sqlite://", "", "/var/lib/pv.db"] {
        assert!(
            matches!(open_store(bad).await, Err(StoreError::Url(_))),
            "{bad:?} accepted"
        );
    }
}

pub async fn meters_round_trip(b: Backend) {
    let db = Db::new(b).await;
    let s = db.open().await;
    s.create_account(&account("alice")).await.unwrap();
    let m1 = meter("PV-2", Some("alice"));
    let m2 = meter("PV-1", Some("alice"));
    let mut m3 = meter("PV-3", None);
    m3.certificate = None;
    for m in [&m1, &m2, &m3] {
        s.create_meter(m).await.unwrap();
    }
    assert_eq!(s.get_meter("PV-2").await.unwrap(), Some(m1.clone()));
    assert_eq!(s.get_meter("PV-3").await.unwrap(), Some(m3));
    assert_eq!(s.get_meter("PV-9").await.unwrap(), None);
    assert_eq!(s.meters_of_account("alice").await.unwrap(), vec![m2, m1]);
    assert!(s.meters_of_account("bob").await.unwrap().is_empty());
}

pub async fn reserving_meters(b: Backend) {
    let db = Db::new(b).await;
    let s = db.open().await;
    s.create_account(&account("alice")).await.unwrap();
    let mut free = meter("PV-2", None);
    free.state = "Unleased".into();
    let mut first = meter("PV-1", None);
    first.state = "Unleased".into();
    s.create_meter(&free).await.unwrap();
    s.create_meter(&first).await.unwrap();
    // Owned, or free but in another state: never reserved.
    s.create_meter(&meter("PV-0", Some("alice"))).await.unwrap();
    s.create_meter(&meter("PV-00", None)).await.unwrap();
    assert_eq!(s.count_meters(None).await.unwrap(), 4);
    assert_eq!(s.count_meters(Some("Unleased")).await.unwrap(), 2);

    let got = s
        .reserve_meter("alice", "Unleased", 1_800_000_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.device_id, "PV-1");
    assert_eq!(got.owner.as_deref(), Some("alice"));
    assert_eq!(got.updated, 1_800_000_000);
    assert_eq!(got.package, first.package);
    assert_eq!(s.get_meter("PV-1").await.unwrap(), Some(got));
    let got = s
        .reserve_meter("alice", "Unleased", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.device_id, "PV-2");
    assert_eq!(s.reserve_meter("alice", "Unleased", 1).await.unwrap(), None);
    assert_eq!(s.count_meters(Some("Unleased")).await.unwrap(), 0);
    assert_eq!(s.meters_of_account("alice").await.unwrap().len(), 3);
    // An unknown owner is refused by the foreign key and takes nothing.
    let mut more = meter("PV-3", None);
    more.state = "Unleased".into();
    s.create_meter(&more).await.unwrap();
    assert!(s.reserve_meter("nobody", "Unleased", 1).await.is_err());
    assert_eq!(s.get_meter("PV-3").await.unwrap().unwrap().owner, None);
}

pub async fn concurrent_reservations_get_different_meters(b: Backend) {
    let db = Db::new(b).await;
    let s = db.open().await;
    s.create_account(&account("alice")).await.unwrap();
    for i in 0..12 {
        let mut m = meter(&format!("PV-{i:02}"), None);
        m.state = "Unleased".into();
        s.create_meter(&m).await.unwrap();
    }
    // Two handles (two servers) reserving at once.
    let other = db.open().await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let st = if i % 2 == 0 { s.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            st.reserve_meter("alice", "Unleased", 1).await.unwrap()
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        if let Some(m) = t.await.unwrap() {
            got.push(m.device_id);
        }
    }
    got.sort();
    let before = got.len();
    got.dedup();
    assert_eq!(got.len(), before, "a meter was reserved twice");
    assert_eq!(got.len(), 12);
}

pub async fn duplicate_device_id_is_refused(b: Backend) {
    let db = Db::new(b).await;
    let s = db.open().await;
    let first = meter("PV-1", None);
    s.create_meter(&first).await.unwrap();
    let mut second = meter("PV-1", None);
    second.package = "other".into();
    match s.create_meter(&second).await {
        Err(StoreError::Duplicate { what, detail }) => {
            assert_eq!(what, "device ID");
            assert_eq!(detail, "PV-1");
        }
        other => panic!("duplicate device ID: {other:?}"),
    }
    assert_eq!(s.get_meter("PV-1").await.unwrap(), Some(first));
    // A meter owned by an account that does not exist is refused too.
    assert!(
        s.create_meter(&meter("PV-2", Some("nobody")))
            .await
            .is_err()
    );
}

pub async fn accounts_round_trip(b: Backend) {
    let db = Db::new(b).await;
    let s = db.open().await;
    let a = account("alice");
    s.create_account(&a).await.unwrap();
    assert_eq!(s.get_account("alice").await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_account("bob").await.unwrap(), None);
    s.set_password_hash("alice", "$argon2id$new").await.unwrap();
    s.set_account_locked("alice", true).await.unwrap();
    let got = s.get_account("alice").await.unwrap().unwrap();
    assert_eq!(got.password_hash, "$argon2id$new");
    assert!(got.locked);
    s.set_account_locked("alice", false).await.unwrap();
    assert!(!s.get_account("alice").await.unwrap().unwrap().locked);
    assert!(matches!(
        s.set_password_hash("bob", "x").await,
        Err(StoreError::NotFound {
            what: "account",
            ..
        })
    ));
    // The hash never shows in Debug output.
    assert!(!format!("{got:?}").contains("argon2id"));
}

pub async fn duplicate_login_is_refused(b: Backend) {
    let db = Db::new(b).await;
    let s = db.open().await;
    s.create_account(&account("alice")).await.unwrap();
    let mut again = account("alice");
    again.role = "administrator".into();
    match s.create_account(&again).await {
        Err(StoreError::Duplicate { what: "login", .. }) => {}
        other => panic!("duplicate login: {other:?}"),
    }
    assert_eq!(
        s.get_account("alice").await.unwrap().unwrap().role,
        "customer"
    );
}

pub async fn failed_logons_lock_the_account(b: Backend) {
    let db = Db::new(b).await;
    let s = db.open().await;
    s.create_account(&account("alice")).await.unwrap();
    let a = s.record_failed_logon("alice", 3).await.unwrap();
    assert_eq!((a.failed_logons, a.locked), (1, false));
    s.record_successful_logon("alice").await.unwrap();
    assert_eq!(
        s.get_account("alice").await.unwrap().unwrap().failed_logons,
        0
    );
    for n in 1..=2 {
        let a = s.record_failed_logon("alice", 3).await.unwrap();
        assert_eq!((a.failed_logons, a.locked), (n, false));
    }
    let a = s.record_failed_logon("alice", 3).await.unwrap();
    assert_eq!((a.failed_logons, a.locked), (3, true));
    // A successful logon does not unlock; only an administrator does.
    s.record_successful_logon("alice").await.unwrap();
    assert!(s.get_account("alice").await.unwrap().unwrap().locked);
    s.set_account_locked("alice", false).await.unwrap();
    let a = s.get_account("alice").await.unwrap().unwrap();
    assert_eq!((a.failed_logons, a.locked), (0, false));
    assert!(matches!(
        s.record_failed_logon("bob", 3).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn sessions_round_trip(b: Backend) {
    let db = Db::new(b).await;
    let s = db.open().await;
    s.create_account(&account("alice")).await.unwrap();
    let old = session(1, "alice", 1000);
    let new = session(2, "alice", 2000);
    s.create_session(&old).await.unwrap();
    s.create_session(&new).await.unwrap();
    assert_eq!(s.get_session(&[1; 32]).await.unwrap(), Some(old.clone()));
    // Read with its account in one go.
    let (got, acct) = s.get_session_account(&[2; 32]).await.unwrap().unwrap();
    assert_eq!(got, new);
    assert_eq!(acct, s.get_account("alice").await.unwrap().unwrap());
    assert_eq!(s.get_session_account(&[9; 32]).await.unwrap(), None);
    assert!(matches!(
        s.create_session(&old).await,
        Err(StoreError::Duplicate { .. })
    ));
    // A session of an account that does not exist is refused.
    assert!(s.create_session(&session(3, "bob", 1000)).await.is_err());
    assert!(s.touch_session(&[1; 32], 1500).await.unwrap());
    assert!(!s.touch_session(&[9; 32], 1500).await.unwrap());
    assert_eq!(
        s.get_session(&[1; 32]).await.unwrap().unwrap().last_active,
        1500
    );
    // Idle since before 1600: only the first.
    assert_eq!(s.delete_idle_sessions(1600).await.unwrap(), 1);
    assert_eq!(s.get_session(&[1; 32]).await.unwrap(), None);
    assert!(s.delete_session(&[2; 32]).await.unwrap());
    assert!(!s.delete_session(&[2; 32]).await.unwrap());
    assert_eq!(s.get_session(&[2; 32]).await.unwrap(), None);
    assert_eq!(s.get_session_account(&[2; 32]).await.unwrap(), None);
}

/// Two meters of alice's and one module, for the commit tests.
async fn two_meters(db: &Db) -> std::sync::Arc<dyn postvault_store::Store> {
    let s = db.open().await;
    s.create_account(&account("alice")).await.unwrap();
    s.create_meter(&meter("PV-1", Some("alice"))).await.unwrap();
    s.create_meter(&meter("PV-2", Some("alice"))).await.unwrap();
    s
}

pub async fn commit_writes_everything(b: Backend) {
    let db = Db::new(b).await;
    let s = two_meters(&db).await;
    let tx = s
        .lock_meters(&ids(&["PV-2", "PV-1", "PV-2"]))
        .await
        .unwrap();
    let locked: Vec<&str> = tx.meters().iter().map(|m| m.device_id.as_str()).collect();
    assert_eq!(locked, ["PV-1", "PV-2"]);
    assert!(tx.checkpoints().is_empty());
    let mut p1 = tx.meters()[0].clone();
    p1.package = "package 1 after".into();
    p1.updated += 10;
    let mut p2 = tx.meters()[1].clone();
    p2.package = "package 2 after".into();
    p2.state = "Withdrawn".into();
    p2.certificate = None;
    let commit = Commit {
        meters: vec![p1.clone(), p2.clone()],
        checkpoint: Some(checkpoint("m1", 7)),
        ledger: vec![
            ledger("PV-1", 1, Some("alice"), 300),
            ledger("PV-1", 2, Some("alice"), 100),
            ledger("PV-2", 1, Some("alice"), 200),
        ],
        money: vec![download("PV-1", 100_000, 5), {
            let mut r = download("PV-2", 5_000, 1);
            r.kind = MoneyKind::Refund;
            r.provider_seq = None;
            r
        }],
        audit: vec![audit("m1", 1), audit("m1", 2)],
    };
    tx.commit(commit).await.unwrap();

    // Read back through another handle.
    let s2 = db.open().await;
    assert_eq!(s2.get_meter("PV-1").await.unwrap(), Some(p1));
    assert_eq!(s2.get_meter("PV-2").await.unwrap(), Some(p2));
    assert_eq!(
        s2.get_checkpoint("m1").await.unwrap(),
        Some(checkpoint("m1", 7))
    );
    assert_eq!(
        s2.all_checkpoints().await.unwrap(),
        vec![checkpoint("m1", 7)]
    );
    assert_eq!(s2.get_checkpoint("m2").await.unwrap(), None);
    assert_eq!(
        s2.ledger_of_meter("PV-1").await.unwrap(),
        vec![
            ledger("PV-1", 1, Some("alice"), 300),
            ledger("PV-1", 2, Some("alice"), 100)
        ]
    );
    let history: Vec<(String, u64)> = s2
        .ledger_of_account("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.device_id, l.piece))
        .collect();
    assert_eq!(
        history,
        [("PV-1".into(), 2), ("PV-2".into(), 1), ("PV-1".into(), 1)]
    );
    assert_eq!(
        s2.money_of_meter("PV-1").await.unwrap(),
        vec![download("PV-1", 100_000, 5)]
    );
    let refunds = s2.money_of_meter("PV-2").await.unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].kind, MoneyKind::Refund);
    assert_eq!(refunds[0].provider_seq, None);
    assert_eq!(
        s2.audit_entries("m1", 0).await.unwrap(),
        vec![audit("m1", 1), audit("m1", 2)]
    );

    // The next transaction sees the module table.
    let tx = s2.lock_meters(&ids(&["PV-1"])).await.unwrap();
    assert_eq!(tx.checkpoints(), [checkpoint("m1", 7)]);
    tx.rollback().await.unwrap();
}

pub async fn checkpoint_never_moves_backwards(b: Backend) {
    let db = Db::new(b).await;
    let s = two_meters(&db).await;
    for (seq, expected) in [(5, 5), (7, 7), (6, 7), (8, 8)] {
        let tx = s.lock_meters(&ids(&["PV-1"])).await.unwrap();
        tx.commit(Commit {
            checkpoint: Some(checkpoint("m1", seq)),
            ..Commit::default()
        })
        .await
        .unwrap();
        assert_eq!(
            s.get_checkpoint("m1").await.unwrap(),
            Some(checkpoint("m1", expected))
        );
    }
}

/// Everything a test commit touches, to compare before and after.
async fn snapshot(
    s: &dyn postvault_store::Store,
) -> (
    Vec<Option<postvault_store::Meter>>,
    Vec<postvault_store::ModuleCheckpoint>,
    Vec<postvault_store::LedgerEntry>,
    Vec<postvault_store::MoneyEntry>,
    Vec<postvault_store::AuditRecord>,
) {
    let mut meters = Vec::new();
    let mut ledger = Vec::new();
    let mut money = Vec::new();
    for id in ["PV-1", "PV-2"] {
        meters.push(s.get_meter(id).await.unwrap());
        ledger.extend(s.ledger_of_meter(id).await.unwrap());
        money.extend(s.money_of_meter(id).await.unwrap());
    }
    (
        meters,
        s.all_checkpoints().await.unwrap(),
        ledger,
        money,
        s.audit_entries("m1", 0).await.unwrap(),
    )
}

/// A commit that is good in every row, for the tests that spoil one.
fn good_commit(locked: &[postvault_store::Meter], seq: u64) -> Commit {
    let meters = locked
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m.package = format!("{} after {seq}", m.device_id);
            m
        })
        .collect();
    Commit {
        meters,
        checkpoint: Some(checkpoint("m1", seq)),
        ledger: vec![ledger("PV-1", seq, Some("alice"), 100)],
        money: vec![download("PV-2", 1000, seq)],
        audit: vec![audit("m1", seq)],
    }
}

/// Commits `bad` and expects it to fail with `check`, changing nothing;
/// then checks the meters are free again.
async fn expect_rolled_back(
    db: &Db,
    bad: impl FnOnce(&[postvault_store::Meter]) -> Commit,
    check: impl FnOnce(&StoreError) -> bool,
) {
    let s = db.open().await;
    let before = snapshot(&*s).await;
    let tx = s.lock_meters(&ids(&["PV-1", "PV-2"])).await.unwrap();
    let commit = bad(tx.meters());
    let e = tx.commit(commit).await.expect_err("the bad commit failed");
    assert!(check(&e), "unexpected error: {e:?}");
    assert_eq!(
        snapshot(&*s).await,
        before,
        "a failed commit changed something"
    );
    // The failed commit released its locks.
    let other = db.open().await;
    other
        .try_lock_meters(&ids(&["PV-1", "PV-2"]))
        .await
        .expect("free after a failed commit")
        .rollback()
        .await
        .unwrap();
}

async fn with_one_good_commit(db: &Db) {
    let s = two_meters(db).await;
    let tx = s.lock_meters(&ids(&["PV-1", "PV-2"])).await.unwrap();
    let c = good_commit(tx.meters(), 1);
    tx.commit(c).await.unwrap();
}

pub async fn duplicate_piece_in_batch_rolls_back_everything(b: Backend) {
    let db = Db::new(b).await;
    with_one_good_commit(&db).await;
    expect_rolled_back(
        &db,
        |m| {
            let mut c = good_commit(m, 2);
            // Rows written before the bad one must go too.
            c.ledger.push(ledger("PV-2", 9, None, 100));
            c.ledger.push(ledger("PV-2", 9, None, 101));
            c
        },
        |e| {
            matches!(
                e,
                StoreError::Duplicate {
                    what: "ledger piece",
                    ..
                }
            )
        },
    )
    .await;
}

pub async fn duplicate_piece_against_stored_rolls_back(b: Backend) {
    let db = Db::new(b).await;
    with_one_good_commit(&db).await;
    expect_rolled_back(
        &db,
        |m| {
            let mut c = good_commit(m, 2);
            c.ledger.push(ledger("PV-1", 1, Some("alice"), 100));
            c
        },
        |e| {
            matches!(
                e,
                StoreError::Duplicate {
                    what: "ledger piece",
                    ..
                }
            )
        },
    )
    .await;
}

pub async fn conflicting_audit_entry_rolls_back_commit(b: Backend) {
    let db = Db::new(b).await;
    with_one_good_commit(&db).await;
    expect_rolled_back(
        &db,
        |m| {
            let mut c = good_commit(m, 2);
            let mut forged = audit("m1", 1);
            forged.line = "a different entry 1".into();
            c.audit.push(forged);
            c
        },
        |e| matches!(e, StoreError::AuditConflict { seq: 1, .. }),
    )
    .await;
    // The same entry again is accepted (a module re-sending after a crash).
    let s = db.open().await;
    let tx = s.lock_meters(&ids(&["PV-1", "PV-2"])).await.unwrap();
    let mut c = good_commit(tx.meters(), 2);
    c.audit.insert(0, audit("m1", 1));
    tx.commit(c).await.unwrap();
    assert_eq!(s.audit_entries("m1", 0).await.unwrap().len(), 2);
}

pub async fn commit_refuses_unlocked_meter(b: Backend) {
    let db = Db::new(b).await;
    let s = two_meters(&db).await;
    s.create_meter(&meter("PV-3", None)).await.unwrap();
    expect_rolled_back(
        &db,
        |m| {
            let mut c = good_commit(m, 1);
            c.meters.push(meter("PV-3", None));
            c
        },
        |e| matches!(e, StoreError::Invalid(_)),
    )
    .await;
    expect_rolled_back(
        &db,
        |m| {
            let mut c = good_commit(m, 1);
            c.ledger.push(ledger("PV-3", 1, None, 100));
            c
        },
        |e| matches!(e, StoreError::Invalid(_)),
    )
    .await;
    expect_rolled_back(
        &db,
        |m| {
            let mut c = good_commit(m, 1);
            c.meters.push(c.meters[0].clone());
            c
        },
        |e| matches!(e, StoreError::Invalid(_)),
    )
    .await;
}

pub async fn amounts_beyond_i64_are_refused(b: Backend) {
    let db = Db::new(b).await;
    two_meters(&db).await;
    expect_rolled_back(
        &db,
        |m| {
            let mut c = good_commit(m, 1);
            c.money[0].amount_mills = u64::MAX;
            c
        },
        |e| matches!(e, StoreError::Invalid(_)),
    )
    .await;
    // The largest amount the database holds round-trips exactly.
    let s = db.open().await;
    let tx = s.lock_meters(&ids(&["PV-1", "PV-2"])).await.unwrap();
    let mut c = good_commit(tx.meters(), 1);
    c.money[0].amount_mills = i64::MAX as u64;
    tx.commit(c).await.unwrap();
    assert_eq!(
        s.money_of_meter("PV-2").await.unwrap()[0].amount_mills,
        i64::MAX as u64
    );
}

pub async fn lock_is_exclusive_across_handles(b: Backend) {
    let db = Db::new(b).await;
    two_meters(&db).await;
    // Two independent handles: two servers.
    let a = db.open().await;
    let other = db.open().await;
    let tx = a.lock_meters(&ids(&["PV-1"])).await.unwrap();
    assert!(matches!(
        other.try_lock_meters(&ids(&["PV-1"])).await.err(),
        Some(StoreError::Busy)
    ));
    assert!(matches!(
        other.try_lock_meters(&ids(&["PV-2", "PV-1"])).await.err(),
        Some(StoreError::Busy)
    ));
    // Readers are not blocked.
    assert_eq!(
        other.get_meter("PV-1").await.unwrap().unwrap().package,
        meter("PV-1", None).package
    );
    let mut m = tx.meters()[0].clone();
    m.package = "committed by a".into();
    tx.commit(Commit {
        meters: vec![m],
        ..Commit::default()
    })
    .await
    .unwrap();
    let tx2 = other.try_lock_meters(&ids(&["PV-1"])).await.unwrap();
    assert_eq!(tx2.meters()[0].package, "committed by a");
    // And now the first handle is the one kept out.
    assert!(matches!(
        a.try_lock_meters(&ids(&["PV-1"])).await.err(),
        Some(StoreError::Busy)
    ));
    tx2.rollback().await.unwrap();
    a.try_lock_meters(&ids(&["PV-1"]))
        .await
        .unwrap()
        .rollback()
        .await
        .unwrap();
}

pub async fn other_meters_and_rollback(b: Backend) {
    let db = Db::new(b).await;
    two_meters(&db).await;
    let a = db.open().await;
    let other = db.open().await;
    let tx = a.lock_meters(&ids(&["PV-1"])).await.unwrap();
    match b {
        Backend::Postgres => {
            // Row locks: another meter is free meanwhile, and its commit
            // goes through while PV-1 stays locked.
            let tx2 = other.try_lock_meters(&ids(&["PV-2"])).await.unwrap();
            let mut m = tx2.meters()[0].clone();
            m.package = "PV-2 by other".into();
            tx2.commit(Commit {
                meters: vec![m],
                ..Commit::default()
            })
            .await
            .unwrap();
            assert!(matches!(
                other.try_lock_meters(&ids(&["PV-1"])).await.err(),
                Some(StoreError::Busy)
            ));
        }
        Backend::Sqlite => {
            // The whole database is the lock: another meter waits too.
            assert!(matches!(
                other.try_lock_meters(&ids(&["PV-2"])).await.err(),
                Some(StoreError::Busy)
            ));
        }
    }
    // An explicit rollback releases the lock and changes nothing.
    tx.rollback().await.unwrap();
    let tx = other.try_lock_meters(&ids(&["PV-1"])).await.unwrap();
    assert_eq!(tx.meters()[0], meter("PV-1", Some("alice")));
    tx.rollback().await.unwrap();
}

pub async fn dropped_tx_rolls_back(b: Backend) {
    let db = Db::new(b).await;
    two_meters(&db).await;
    let a = db.open().await;
    let other = db.open().await;
    {
        let tx = a.lock_meters(&ids(&["PV-1"])).await.unwrap();
        assert!(matches!(
            other.try_lock_meters(&ids(&["PV-1"])).await.err(),
            Some(StoreError::Busy)
        ));
        drop(tx);
    }
    // lock_meters waits for the rollback of the dropped transaction (on
    // PostgreSQL it runs as a task), so no sleep is needed.
    let tx = other.lock_meters(&ids(&["PV-1"])).await.unwrap();
    assert_eq!(tx.meters()[0], meter("PV-1", Some("alice")));
    tx.rollback().await.unwrap();
    // The dropping handle still works.
    a.lock_meters(&ids(&["PV-1"]))
        .await
        .unwrap()
        .rollback()
        .await
        .unwrap();
}

pub async fn locking_a_missing_meter_fails_and_holds_nothing(b: Backend) {
    let db = Db::new(b).await;
    let s = two_meters(&db).await;
    match s.lock_meters(&ids(&["PV-1", "PV-9"])).await.err() {
        Some(StoreError::NotFound { what: "meter", key }) => assert_eq!(key, "PV-9"),
        other => panic!("missing meter: {other:?}"),
    }
    let other = db.open().await;
    other
        .try_lock_meters(&ids(&["PV-1"]))
        .await
        .expect("nothing left locked")
        .rollback()
        .await
        .unwrap();
}

pub async fn provider_sequence_is_unique(b: Backend) {
    let db = Db::new(b).await;
    with_one_good_commit(&db).await;
    expect_rolled_back(
        &db,
        |m| {
            let mut c = good_commit(m, 2);
            // Download sequence 1 of PV-2 is stored already: a replay.
            c.money.push(download("PV-2", 1000, 1));
            c
        },
        |e| {
            matches!(
                e,
                StoreError::Duplicate {
                    what: "provider sequence",
                    ..
                }
            )
        },
    )
    .await;
}

pub async fn audit_entries_read_back_in_order(b: Backend) {
    let db = Db::new(b).await;
    let s = db.open().await;
    s.append_audit(&[audit("m1", 3), audit("m1", 1), audit("m2", 1)])
        .await
        .unwrap();
    s.append_audit(&[audit("m1", 2), audit("m1", 10)])
        .await
        .unwrap();
    let seqs =
        |v: Vec<postvault_store::AuditRecord>| v.into_iter().map(|a| a.seq).collect::<Vec<_>>();
    assert_eq!(seqs(s.audit_entries("m1", 0).await.unwrap()), [1, 2, 3, 10]);
    assert_eq!(seqs(s.audit_entries("m1", 3).await.unwrap()), [3, 10]);
    assert_eq!(
        s.audit_entries("m2", 0).await.unwrap(),
        vec![audit("m2", 1)]
    );
    assert!(s.audit_entries("m1", u64::MAX).await.unwrap().is_empty());
    // Re-sending stored entries is fine; a different entry under a stored
    // number fails, and its whole batch is refused.
    s.append_audit(&[audit("m1", 1), audit("m1", 2)])
        .await
        .unwrap();
    let mut forged = audit("m1", 2);
    forged.line = "forged".into();
    assert!(matches!(
        s.append_audit(&[audit("m1", 11), forged]).await,
        Err(StoreError::AuditConflict { seq: 2, .. })
    ));
    assert_eq!(seqs(s.audit_entries("m1", 0).await.unwrap()), [1, 2, 3, 10]);
    assert_eq!(s.audit_entries("m1", 2).await.unwrap()[0], audit("m1", 2));
}

pub async fn data_survives_reopening(b: Backend) {
    let db = Db::new(b).await;
    {
        let s = two_meters(&db).await;
        s.create_session(&session(1, "alice", 1000)).await.unwrap();
        let tx = s.lock_meters(&ids(&["PV-1", "PV-2"])).await.unwrap();
        let c = good_commit(tx.meters(), 1);
        tx.commit(c).await.unwrap();
        // Every handle is dropped here: the SQLite file is closed.
    }
    let s = db.open().await;
    assert_eq!(s.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(
        s.get_meter("PV-1").await.unwrap().unwrap().package,
        "PV-1 after 1"
    );
    assert_eq!(s.ledger_of_meter("PV-1").await.unwrap().len(), 1);
    assert_eq!(s.money_of_meter("PV-2").await.unwrap().len(), 1);
    assert_eq!(
        s.audit_entries("m1", 0).await.unwrap(),
        vec![audit("m1", 1)]
    );
    assert_eq!(
        s.get_checkpoint("m1").await.unwrap(),
        Some(checkpoint("m1", 1))
    );
    assert!(s.get_session(&[1; 32]).await.unwrap().is_some());
    assert!(s.get_account("alice").await.unwrap().is_some());
}

pub async fn large_group_commit(b: Backend) {
    // One commit for a whole group: 20 meters, 400 indicia, 400 audit
    // entries, 20 downloads.
    let db = Db::new(b).await;
    let s = db.open().await;
    s.create_account(&account("alice")).await.unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("PV-{i:03}")).collect();
    for n in &names {
        s.create_meter(&meter(n, Some("alice"))).await.unwrap();
    }
    let tx = s.lock_meters(&names).await.unwrap();
    let mut c = Commit {
        meters: tx.meters().to_vec(),
        checkpoint: Some(checkpoint("m1", 400)),
        ..Commit::default()
    };
    for (i, n) in names.iter().enumerate() {
        c.meters[i].package = format!("{n} after the group");
        c.money.push(download(n, 100_000, 1));
        for piece in 1..=20 {
            c.ledger
                .push(ledger(n, piece, Some("alice"), 1000 + piece as i64));
        }
    }
    c.audit = (1..=400).map(|seq| audit("m1", seq)).collect();
    tx.commit(c).await.unwrap();
    assert_eq!(s.ledger_of_account("alice").await.unwrap().len(), 400);
    assert_eq!(s.audit_entries("m1", 0).await.unwrap().len(), 400);
    for n in &names {
        assert_eq!(
            s.get_meter(n).await.unwrap().unwrap().package,
            format!("{n} after the group")
        );
        assert_eq!(s.ledger_of_meter(n).await.unwrap().len(), 20);
        assert_eq!(s.money_of_meter(n).await.unwrap().len(), 1);
    }
}

pub async fn concurrent_lockers_serialize(b: Backend) {
    // Eight workers on two handles (two servers) each take the same meter
    // five times, read its counter from the package and write counter + 1
    // with a ledger row for that piece. Without the lock, updates would be
    // lost or pieces would collide; with it, every one of the 40 lands.
    let db = Db::new(b).await;
    let s = db.open().await;
    s.create_meter(&meter("PV-1", None)).await.unwrap();
    let handles = [db.open().await, db.open().await];
    let mut workers = Vec::new();
    for w in 0..8 {
        let store = handles[w % 2].clone();
        workers.push(tokio::spawn(async move {
            for _ in 0..5 {
                let tx = store.lock_meters(&ids(&["PV-1"])).await.unwrap();
                let mut m = tx.meters()[0].clone();
                let n: u64 = m
                    .package
                    .strip_prefix("count ")
                    .map_or(0, |c| c.parse().unwrap());
                m.package = format!("count {}", n + 1);
                tx.commit(Commit {
                    meters: vec![m],
                    ledger: vec![ledger("PV-1", n + 1, None, 100)],
                    ..Commit::default()
                })
                .await
                .unwrap();
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        s.get_meter("PV-1").await.unwrap().unwrap().package,
        "count 40"
    );
    let pieces: Vec<u64> = s
        .ledger_of_meter("PV-1")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.piece)
        .collect();
    assert_eq!(pieces, (1..=40).collect::<Vec<_>>());
}

pub async fn writers_on_one_handle_take_turns(b: Backend) {
    // One handle, as one server process uses it: while a meter transaction
    // is open, a no-wait lock is refused at once, and a waiting lock and a
    // session write queue behind it and go through after its commit, the
    // lock seeing what the commit wrote.
    let db = Db::new(b).await;
    let s = two_meters(&db).await;
    let tx = s.lock_meters(&ids(&["PV-1"])).await.unwrap();
    assert!(matches!(
        s.try_lock_meters(&ids(&["PV-1"])).await.err(),
        Some(StoreError::Busy)
    ));
    let waiting = {
        let s = s.clone();
        tokio::spawn(async move {
            let tx = s.lock_meters(&ids(&["PV-1"])).await.unwrap();
            let package = tx.meters()[0].package.clone();
            tx.rollback().await.unwrap();
            package
        })
    };
    let session = {
        let s = s.clone();
        tokio::spawn(async move { s.create_session(&session(7, "alice", 100)).await })
    };
    tokio::task::yield_now().await;
    let mut m = tx.meters()[0].clone();
    m.package = "committed first".into();
    tx.commit(Commit {
        meters: vec![m],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert_eq!(waiting.await.unwrap(), "committed first");
    session.await.unwrap().unwrap();
    assert_eq!(
        s.get_session(&[7; 32]).await.unwrap().unwrap().login,
        "alice"
    );
}
