//! Checkpoints (seed 002, "the checkpoint concept"): every package-changing
//! PSD command leaves a MAC'd checkpoint (sequence, meter, transaction,
//! amount, registers, module totals) that the database stores with the
//! package and passes back with the next command. The tests simulate the
//! database: they keep the (package, checkpoint) pair after each transaction
//! and "roll the database back" by presenting an older pair. A rollback by
//! one or two transactions is caught and auto-recovered (each discarded
//! transaction audited); a rollback by three inhibits PSD processing, across
//! a restart, until a Security Officer runs Accept Checkpoint; the package
//! of a discarded transaction stays refused, also after another meter's
//! transaction on the same module. Altered, missing and foreign checkpoints
//! and stale packages are refused and change nothing; the module-table
//! cross-check (`checkpoint::cross_check`) is tested with real checkpoints
//! of several modules.

use postvault_audit::AuditEntry;
use postvault_module::checkpoint::{
    self, CHECKPOINT_VERSION, Checkpoint, CrossCheckError, ModuleTableRow, ModuleTotals,
    SignedCheckpoint, TransactionType, cross_check,
};
use postvault_module::error::ModuleError;
use postvault_module::psd::{
    DeviceId, HpkeSealed, IndiciumItem, ProviderCommand, PsdState, SealedPackage, UserOperation,
    UserRequest,
};
use postvault_module::{ClientError, ModuleClient, Request, Response};

use crate::common::*;
use crate::psd_indicium::{Client, DATE, mac};
use crate::psd_lifecycle::{
    DEVICE, Meter, OTHER_DEVICE, PASSWORD, USER, assert_rejected, make_psd_cert,
};

/// One row of the simulated database: the meter's package and this
/// module's checkpoint, stored together after a transaction, and the
/// client's challenge at that point.
#[derive(Clone)]
pub(crate) struct Db {
    pub(crate) package: SealedPackage,
    pub(crate) checkpoint: SignedCheckpoint,
    pub(crate) challenge: [u8; 16],
}

/// What the database stores after `cl`'s last transaction.
pub(crate) fn db(cl: &Client) -> Db {
    Db {
        package: cl.m.package.clone(),
        checkpoint: cl.m.checkpoint.clone().expect("a checkpoint"),
        challenge: cl.challenge,
    }
}

/// The database is switched to `row` (the client sees its package and
/// challenge, and passes its checkpoint).
pub(crate) fn restore(cl: &mut Client, row: &Db) {
    cl.m.package = row.package.clone();
    cl.m.checkpoint = Some(row.checkpoint.clone());
    cl.challenge = row.challenge;
}

/// Retrieve Checkpoint: the module's newest checkpoint.
fn newest(c: &mut ModuleClient) -> Option<SignedCheckpoint> {
    match ok(c, Request::RetrieveCheckpoint) {
        Response::Checkpoint(cp) => cp,
        other => panic!("unexpected {other:?}"),
    }
}

/// The module's ID, from Get Status.
fn module_id(c: &mut ModuleClient) -> [u8; 16] {
    let id = status(c).module_id.expect("an initialized module");
    hex::decode(id).unwrap().try_into().unwrap()
}

/// The control total (AR + DR) of the package a checkpoint recorded: what
/// the provider's books say when the database holds that package.
fn control_total(cp: &SignedCheckpoint) -> u64 {
    cp.checkpoint.ascending_mills + cp.checkpoint.descending_mills
}

/// The audit entries written since the log held `from` entries.
fn log_since(f: &Fixture, from: usize) -> Vec<AuditEntry> {
    audit_log(f)[from..].to_vec()
}

#[track_caller]
fn assert_mismatch(e: &ModuleError, needle: &str) {
    assert!(
        matches!(e, ModuleError::CheckpointMismatch(m) if m.contains(needle)),
        "expected CheckpointMismatch({needle:?}), got {e:?}"
    );
}

#[track_caller]
fn assert_stale(e: &ModuleError, needle: &str) {
    assert!(
        matches!(e, ModuleError::StalePackage(m) if m.contains(needle)),
        "expected StalePackage({needle:?}), got {e:?}"
    );
}

#[track_caller]
fn assert_inhibited(e: &ModuleError) {
    assert!(
        matches!(e, ModuleError::Inhibited(m) if m.contains("Auto-Recover Checkpoint failed")),
        "expected Inhibited(\"Auto-Recover Checkpoint failed ...\"), got {e:?}"
    );
    assert!(
        e.to_string()
            .contains("a Security Officer must check the database and run Accept Checkpoint"),
        "{e}"
    );
}

/// Auto-Recover Checkpoint with `cp`, which must succeed: the number of
/// transactions discarded, after checking that the answer names `cp`.
pub(crate) fn auto_recover(c: &mut ModuleClient, cp: &SignedCheckpoint) -> u32 {
    match ok(
        c,
        Request::AutoRecoverCheckpoint {
            checkpoint: cp.clone(),
        },
    ) {
        Response::CheckpointRecovered {
            discarded,
            checkpoint,
        } => {
            assert_eq!(&checkpoint, cp, "the database's checkpoint is now newest");
            discarded
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A funded meter with a history of four transactions the database kept:
/// rows[0] after a download of 10 000 mills (checkpoint 4), rows[1] after an
/// indicium of 1 000 (5), rows[2] after a download of 5 000 (6), rows[3]
/// after an indicium of 2 000 (7, the module's newest). The module keeps
/// checkpoints 5, 6 and 7.
fn history() -> (Client, Vec<Db>) {
    let mut cl = Client::funded(10_000);
    let mut rows = vec![db(&cl)];
    cl.m.f.clock.advance(60);
    cl.create(cl.request(1_000));
    rows.push(db(&cl));
    cl.m.f.clock.advance(60);
    cl.m.download(5_000, 10_000);
    rows.push(db(&cl));
    cl.m.f.clock.advance(60);
    cl.create(cl.request(2_000));
    rows.push(db(&cl));
    let seqs: Vec<u64> = rows.iter().map(|r| r.checkpoint.checkpoint.seq).collect();
    assert_eq!(seqs, [4, 5, 6, 7]);
    (cl, rows)
}

/// Every PSD command that takes a package, for `cl`'s current package and
/// checkpoint (arguments that would be valid or not: the checkpoint check
/// comes first).
fn every_psd_command(cl: &mut Client) -> Vec<Request> {
    let package = cl.m.package.clone();
    let checkpoint = cl.m.checkpoint.clone();
    let junk = HpkeSealed {
        enc: vec![0; 32],
        ciphertext: vec![0; 48],
    };
    vec![
        Request::RetrievePsdPublicKey {
            package: package.clone(),
            checkpoint: checkpoint.clone(),
        },
        Request::RetrievePsdStatus {
            package: package.clone(),
            checkpoint: checkpoint.clone(),
        },
        Request::AuthorizePsd {
            package: package.clone(),
            checkpoint: checkpoint.clone(),
            certificate_der: cl.cert.clone(),
        },
        Request::ConfigurePsd {
            package: package.clone(),
            checkpoint: checkpoint.clone(),
            secrets: junk.clone(),
        },
        Request::AuthorizeCustomer {
            package: package.clone(),
            checkpoint: checkpoint.clone(),
            message: cl.m.signed(ProviderCommand::AuthorizeCustomer {
                licensing_zip: 100_010_001,
                max_descending_mills: 1_000,
            }),
        },
        Request::DownloadPostageValue {
            package: package.clone(),
            checkpoint: checkpoint.clone(),
            message: cl.m.signed(ProviderCommand::Download {
                amount_mills: 1_000,
                control_total_mills: control_total(checkpoint.as_ref().unwrap()),
            }),
        },
        Request::CreateIndicium {
            package: package.clone(),
            checkpoint: checkpoint.clone(),
            request: cl.request(500),
        },
        Request::CreateCorrectionIndicium {
            package: package.clone(),
            checkpoint: checkpoint.clone(),
            request: correction_request(cl, 500),
        },
        Request::CreateIndicia {
            checkpoint: checkpoint.clone(),
            items: vec![IndiciumItem {
                package: package.clone(),
                request: cl.request(500),
            }],
        },
        Request::CreateRefundIndicium {
            package: package.clone(),
            checkpoint: checkpoint.clone(),
            message: cl.m.signed(ProviderCommand::Refund { date: DATE }),
        },
        Request::BeginPasswordReset {
            package: package.clone(),
            checkpoint: checkpoint.clone(),
            message: cl.m.signed(ProviderCommand::BeginPasswordReset {
                user_id: USER.into(),
            }),
        },
        Request::CompletePasswordReset {
            package: package.clone(),
            checkpoint: checkpoint.clone(),
            secrets: junk.clone(),
        },
        Request::PsdUserCommand {
            package: package.clone(),
            checkpoint: checkpoint.clone(),
            request: UserRequest {
                device_id: DEVICE.to_string(),
                user_id: USER.into(),
                challenge: cl.challenge,
                operation: UserOperation::ListUsers,
                mac: [0; 32],
            },
        },
        Request::PsdUserLogon {
            package,
            checkpoint,
            logon: junk,
        },
    ]
}

/// Sends every PSD command with `cl`'s package and checkpoint; each must be
/// refused as inhibited (and the audited ones must change nothing).
#[track_caller]
fn assert_every_psd_command_inhibited(cl: &mut Client) {
    for req in every_psd_command(cl) {
        let kind = req.kind();
        let e = match &req {
            // Read-only and not audited: `refused` expects an audit entry.
            Request::RetrievePsdPublicKey { .. } | Request::RetrievePsdStatus { .. } => {
                run_err(&mut cl.m.c, req)
            }
            _ => cl.m.refused(req),
        };
        assert!(matches!(e, ModuleError::Inhibited(_)), "{kind:?}: {e:?}");
        assert_inhibited(&e);
    }
}

/// A MAC'd correction-indicium request (mail category `CORR`).
fn correction_request(cl: &Client, postage: u64) -> postvault_module::psd::IndiciumRequest {
    let mut req = cl.request(postage);
    req.category = *b"CORR";
    mac(&mut req);
    req
}

/// The module closes (every handle dropped, so its lock file is released)
/// and opens again from its directory.
fn restart(cl: Client) -> Client {
    restart_with(cl, |_| {})
}

/// [`restart`], running `offline` on the module directory while the module
/// is closed.
fn restart_with(cl: Client, offline: impl FnOnce(&std::path::Path)) -> Client {
    let Client { m, cert, challenge } = cl;
    let Meter {
        f,
        _m,
        c,
        pki,
        provider,
        registration,
        package,
        public_key,
        seq,
        checkpoint,
    } = m;
    drop((c, _m));
    offline(&f.path().join("module"));
    let module = f.open();
    let c = client(&module);
    Client {
        m: Meter {
            f,
            _m: module,
            c,
            pki,
            provider,
            registration,
            package,
            public_key,
            seq,
            checkpoint,
        },
        cert,
        challenge,
    }
}

/// A PSD certificate for `public_key` naming `device`, issued by `m`'s test
/// CA (`ca.pem`, `ca.key` in `m.pki`, as psd_lifecycle makes them), DER.
fn certificate_for(m: &Meter, public_key: &[u8], device: DeviceId) -> Vec<u8> {
    make_psd_cert(
        m.pki.path(),
        "ca",
        public_key,
        &device.to_string(),
        "0a0b0c0d0e",
        30,
    )
}

/// Checks the checkpoint `got` that a transaction answered, against the
/// previous one, the expected (transaction, amount, AR, DR), the module time
/// and (when the answer has one package) the package's digest; and that
/// Retrieve Checkpoint now returns exactly it.
#[allow(clippy::too_many_arguments)]
#[track_caller]
fn check_checkpoint(
    c: &mut ModuleClient,
    module: &[u8; 16],
    prev: Option<&SignedCheckpoint>,
    got: &SignedCheckpoint,
    expect: (TransactionType, u64, u64, u64),
    time: i64,
    package: Option<&SealedPackage>,
) {
    let (transaction, amount, ascending, descending) = expect;
    let cp = &got.checkpoint;
    assert_eq!(cp.version, CHECKPOINT_VERSION);
    assert_eq!(
        cp.seq,
        prev.map_or(1, |p| p.checkpoint.seq + 1),
        "{transaction}: the sequence goes up by one"
    );
    assert_eq!(&cp.module_id, module, "{transaction}: names the module");
    assert_eq!(cp.device_id, DEVICE.to_string(), "{transaction}: the meter");
    assert_eq!(cp.transaction, transaction);
    assert_eq!(cp.amount_mills, amount, "{transaction}: amount");
    assert_eq!(
        (cp.ascending_mills, cp.descending_mills),
        (ascending, descending),
        "{transaction}: registers after it"
    );
    assert_eq!(cp.time, time, "{transaction}: module time");
    let mut totals = prev.map(|p| p.checkpoint.totals).unwrap_or_default();
    match transaction {
        TransactionType::Download => totals.reset_mills += amount,
        TransactionType::Indicium
        | TransactionType::CorrectionIndicium
        | TransactionType::IndiciumBatch => totals.printed_mills += amount,
        TransactionType::RefundIndicium => totals.refunded_mills += amount,
        _ => {}
    }
    assert_eq!(cp.totals, totals, "{transaction}: module totals");
    if let Some(p) = package {
        assert_eq!(
            cp.package_digest,
            checkpoint::package_digest(p),
            "{transaction}: digest of the package it produced"
        );
    }
    if let Some(p) = prev {
        assert_ne!(got.mac, p.mac);
    }
    assert_ne!(got.mac, [0; 32]);
    assert_eq!(
        newest(c).as_ref(),
        Some(got),
        "{transaction}: Retrieve Checkpoint returns exactly the last one"
    );
}

#[test]
fn every_package_changing_command_leaves_the_next_checkpoint_with_registers_and_totals() {
    let mut m = Meter::new();
    let id = module_id(&mut m.c);
    assert_eq!(newest(&mut m.c), None, "no transaction yet");
    let cert = m.good_cert();
    m.time_for(&cert);
    let mut prev: Option<SignedCheckpoint> = None;

    // Authorize PSD.
    m.f.clock.advance(60);
    let t = status(&mut m.c).time;
    let req = Request::AuthorizePsd {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        certificate_der: cert.clone(),
    };
    m.updated(req, PsdState::Unleased);
    let got = m.checkpoint.clone().unwrap();
    let e = (TransactionType::AuthorizePsd, 0, 0, 0);
    check_checkpoint(&mut m.c, &id, prev.as_ref(), &got, e, t, Some(&m.package));
    prev = Some(got);

    // Configure PSD (keeping the challenge for the indicia).
    m.f.clock.advance(60);
    let t = status(&mut m.c).time;
    let secrets = m.secrets_for(DEVICE, &m.registration.clone(), PASSWORD);
    let req = m.configure_request(secrets);
    let challenge = match ok(&mut m.c, req) {
        Response::PsdConfigured {
            package,
            challenge,
            checkpoint,
            ..
        } => {
            m.checkpoint = Some(checkpoint);
            m.package = package;
            challenge
        }
        other => panic!("unexpected {other:?}"),
    };
    let got = m.checkpoint.clone().unwrap();
    let e = (TransactionType::ConfigurePsd, 0, 0, 0);
    check_checkpoint(&mut m.c, &id, prev.as_ref(), &got, e, t, Some(&m.package));
    prev = Some(got);

    // Authorize Customer.
    m.f.clock.advance(60);
    let t = status(&mut m.c).time;
    m.authorize_customer();
    let got = m.checkpoint.clone().unwrap();
    let e = (TransactionType::AuthorizeCustomer, 0, 0, 0);
    check_checkpoint(&mut m.c, &id, prev.as_ref(), &got, e, t, Some(&m.package));
    prev = Some(got);

    // Download.
    m.f.clock.advance(60);
    let t = status(&mut m.c).time;
    m.download(10_000, 0);
    let got = m.checkpoint.clone().unwrap();
    let e = (TransactionType::Download, 10_000, 0, 10_000);
    check_checkpoint(&mut m.c, &id, prev.as_ref(), &got, e, t, Some(&m.package));
    prev = Some(got);

    let mut cl = Client { m, cert, challenge };

    // Create Indicium.
    cl.m.f.clock.advance(60);
    let t = status(&mut cl.m.c).time;
    cl.create(cl.request(730));
    let got = cl.m.checkpoint.clone().unwrap();
    let e = (TransactionType::Indicium, 730, 730, 9_270);
    check_checkpoint(
        &mut cl.m.c,
        &id,
        prev.as_ref(),
        &got,
        e,
        t,
        Some(&cl.m.package),
    );
    prev = Some(got);

    // Another download.
    cl.m.f.clock.advance(60);
    let t = status(&mut cl.m.c).time;
    cl.m.download(5_000, 10_000);
    let got = cl.m.checkpoint.clone().unwrap();
    let e = (TransactionType::Download, 5_000, 730, 14_270);
    check_checkpoint(
        &mut cl.m.c,
        &id,
        prev.as_ref(),
        &got,
        e,
        t,
        Some(&cl.m.package),
    );
    prev = Some(got);

    // Create Correction Indicium.
    cl.m.f.clock.advance(60);
    let t = status(&mut cl.m.c).time;
    let req = Request::CreateCorrectionIndicium {
        package: cl.m.package.clone(),
        checkpoint: cl.m.checkpoint.clone(),
        request: correction_request(&cl, 500),
    };
    match ok(&mut cl.m.c, req) {
        Response::IndiciumCreated {
            package,
            checkpoint,
            new_challenge,
            ..
        } => {
            cl.m.package = package;
            cl.m.checkpoint = Some(checkpoint);
            cl.challenge = new_challenge;
        }
        other => panic!("unexpected {other:?}"),
    }
    let got = cl.m.checkpoint.clone().unwrap();
    let e = (TransactionType::CorrectionIndicium, 500, 1_230, 13_770);
    check_checkpoint(
        &mut cl.m.c,
        &id,
        prev.as_ref(),
        &got,
        e,
        t,
        Some(&cl.m.package),
    );
    prev = Some(got);

    // Create Indicia: a batch of one piece is one checkpoint.
    cl.m.f.clock.advance(60);
    let t = status(&mut cl.m.c).time;
    let req = Request::CreateIndicia {
        checkpoint: cl.m.checkpoint.clone(),
        items: vec![IndiciumItem {
            package: cl.m.package.clone(),
            request: cl.request(400),
        }],
    };
    match ok(&mut cl.m.c, req) {
        Response::IndiciaCreated {
            mut results,
            checkpoint,
        } => {
            let issued = results.pop().unwrap().expect("the piece is issued");
            assert!(results.is_empty());
            cl.m.package = issued.package;
            cl.m.checkpoint = Some(checkpoint.expect("a checkpoint for the batch"));
            cl.challenge = issued.new_challenge;
        }
        other => panic!("unexpected {other:?}"),
    }
    let got = cl.m.checkpoint.clone().unwrap();
    let e = (TransactionType::IndiciumBatch, 400, 1_630, 13_370);
    // A batch's digest covers all its packages (not checked here).
    check_checkpoint(&mut cl.m.c, &id, prev.as_ref(), &got, e, t, None);
    prev = Some(got);

    // Create Refund Indicium: the whole DR.
    cl.m.f.clock.advance(60);
    let t = status(&mut cl.m.c).time;
    let req = Request::CreateRefundIndicium {
        package: cl.m.package.clone(),
        checkpoint: cl.m.checkpoint.clone(),
        message: cl.m.signed(ProviderCommand::Refund { date: DATE }),
    };
    match ok(&mut cl.m.c, req) {
        Response::RefundIndiciumCreated {
            package,
            checkpoint,
            refunded_mills,
            ..
        } => {
            assert_eq!(refunded_mills, 13_370);
            cl.m.package = package;
            cl.m.checkpoint = Some(checkpoint);
        }
        other => panic!("unexpected {other:?}"),
    }
    let got = cl.m.checkpoint.clone().unwrap();
    let e = (TransactionType::RefundIndicium, 13_370, 15_000, 0);
    check_checkpoint(
        &mut cl.m.c,
        &id,
        prev.as_ref(),
        &got,
        e,
        t,
        Some(&cl.m.package),
    );

    // The module's totals over the nine transactions.
    assert_eq!(got.checkpoint.seq, 9);
    assert_eq!(
        got.checkpoint.totals,
        ModuleTotals {
            reset_mills: 15_000,
            printed_mills: 730 + 500 + 400,
            refunded_mills: 13_370,
        }
    );
    // Reading the status with the newest checkpoint changes none of it.
    match ok(
        &mut cl.m.c,
        Request::RetrievePsdStatus {
            package: cl.m.package.clone(),
            checkpoint: cl.m.checkpoint.clone(),
        },
    ) {
        Response::PsdStatus(s) => {
            assert_eq!(s.state, PsdState::Withdrawn);
            assert_eq!((s.ascending_mills, s.descending_mills), (15_000, 0));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(newest(&mut cl.m.c), Some(got));
}

#[test]
fn a_database_rolled_back_by_one_transaction_is_refused_then_auto_recovered() {
    let (mut cl, rows) = history();
    let stale = rows[2].clone();
    restore(&mut cl, &stale);
    let req =
        cl.m.download_request(1_000, control_total(&stale.checkpoint));
    let e = cl.m.refused(req);
    assert_mismatch(&e, "1 transaction(s) behind the module's newest");
    assert_mismatch(&e, "run Auto-Recover Checkpoint");
    let req = cl.request(500);
    assert_mismatch(&cl.refused(req), "1 transaction(s) behind");

    let from = audit_log(&cl.m.f).len();
    assert_eq!(auto_recover(&mut cl.m.c, &stale.checkpoint), 1);
    let log = log_since(&cl.m.f, from);
    assert!(log.iter().all(|e| e.command == "AutoRecoverCheckpoint"));
    let discarded: Vec<_> = log.iter().filter(|e| e.reason == "discarded").collect();
    assert_eq!(discarded.len(), 1, "{log:?}");
    assert_eq!(discarded[0].data["checkpoint"], "7");
    assert_eq!(discarded[0].data["device"], DEVICE.to_string());
    assert_eq!(discarded[0].data["transaction"], "indicium");
    assert_eq!(discarded[0].data["amount_mills"], "2000");
    let done = log.last().unwrap();
    assert_eq!(done.reason, "ok");
    assert_eq!(done.data["discarded"], "1");
    assert_eq!(done.data["checkpoint"], "6");
    assert!(done.signature.is_some(), "a recovery is a signed entry");
    assert_eq!(newest(&mut cl.m.c), Some(stale.checkpoint.clone()));

    // The discarded transaction's package is refused now.
    cl.m.package = rows[3].package.clone();
    let req =
        cl.m.download_request(1_000, control_total(&rows[3].checkpoint));
    assert_stale(
        &cl.m.refused(req),
        "comes from this module's transaction 7, which a recovered rollback discarded",
    );

    // The database's state works again, from its registers.
    restore(&mut cl, &stale);
    cl.m.download(3_000, control_total(&stale.checkpoint));
    let cp = cl.m.checkpoint.clone().unwrap().checkpoint;
    assert_eq!(cp.seq, 8, "a discarded sequence number is not reused");
    assert_eq!(
        (cp.ascending_mills, cp.descending_mills),
        (1_000, 14_000 + 3_000)
    );
    assert_eq!(
        cp.totals,
        ModuleTotals {
            reset_mills: 10_000 + 5_000 + 3_000,
            printed_mills: 1_000,
            refunded_mills: 0,
        },
        "the discarded indicium is not in the totals"
    );
    let i = cl.create(cl.request(500));
    assert_eq!(
        (i.ascending_register, i.descending_register),
        (1_500, 16_500)
    );
    assert_eq!(i.piece_counter, 2, "the discarded piece is not counted");
}

#[test]
fn a_database_rolled_back_by_two_transactions_is_refused_then_auto_recovered() {
    let (mut cl, rows) = history();
    let stale = rows[1].clone();
    restore(&mut cl, &stale);
    let req =
        cl.m.download_request(1_000, control_total(&stale.checkpoint));
    assert_mismatch(&cl.m.refused(req), "2 transaction(s) behind");
    let req = cl.request(500);
    assert_mismatch(&cl.refused(req), "2 transaction(s) behind");

    let from = audit_log(&cl.m.f).len();
    assert_eq!(auto_recover(&mut cl.m.c, &stale.checkpoint), 2);
    let log = log_since(&cl.m.f, from);
    let discarded: Vec<_> = log.iter().filter(|e| e.reason == "discarded").collect();
    assert_eq!(discarded.len(), 2, "{log:?}");
    for (entry, (seq, transaction, amount)) in discarded
        .iter()
        .zip([("6", "download", "5000"), ("7", "indicium", "2000")])
    {
        assert_eq!(entry.command, "AutoRecoverCheckpoint");
        assert_eq!(entry.data["checkpoint"], seq);
        assert_eq!(entry.data["device"], DEVICE.to_string());
        assert_eq!(entry.data["transaction"], transaction);
        assert_eq!(entry.data["amount_mills"], amount);
    }
    assert_eq!(log.last().unwrap().data["discarded"], "2");
    assert_eq!(newest(&mut cl.m.c), Some(stale.checkpoint.clone()));

    // Both discarded packages are refused.
    for row in &rows[2..] {
        cl.m.package = row.package.clone();
        let req = cl.m.download_request(1_000, control_total(&row.checkpoint));
        assert_stale(&cl.m.refused(req), "which a recovered rollback discarded");
    }

    // The database's state works again: AR 1 000, DR 9 000.
    restore(&mut cl, &stale);
    let i = cl.create(cl.request(500));
    assert_eq!(
        (i.ascending_register, i.descending_register),
        (1_500, 8_500)
    );
    cl.m.download(2_000, 10_000);
    let cp = cl.m.checkpoint.clone().unwrap().checkpoint;
    assert_eq!(
        (cp.seq, cp.ascending_mills, cp.descending_mills),
        (9, 1_500, 10_500)
    );
    assert_eq!(
        cp.totals,
        ModuleTotals {
            reset_mills: 12_000,
            printed_mills: 1_500,
            refunded_mills: 0,
        }
    );
}

#[test]
fn a_database_rolled_back_by_three_transactions_inhibits_psd_work_until_accept_checkpoint() {
    let (mut cl, rows) = history();
    let stale = rows[0].clone();
    restore(&mut cl, &stale);
    let req =
        cl.m.download_request(1_000, control_total(&stale.checkpoint));
    let e = cl.m.refused(req);
    assert_mismatch(&e, "none of the module's 3 most recent");
    assert_mismatch(&e, "stale by more than the module can recover");

    // Auto-Recover cannot reach checkpoint 4: PSD work stops.
    let from = audit_log(&cl.m.f).len();
    let e = run_err(
        &mut cl.m.c,
        Request::AutoRecoverCheckpoint {
            checkpoint: stale.checkpoint.clone(),
        },
    );
    assert_inhibited(&e);
    assert!(
        matches!(&e, ModuleError::Inhibited(m) if m.contains("checkpoint 4 (download on")),
        "{e:?}"
    );
    let log = log_since(&cl.m.f, from);
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].command.as_str(), log[0].reason.as_str()),
        ("AutoRecoverCheckpoint", "inhibited")
    );
    // The module's records are untouched.
    assert_eq!(newest(&mut cl.m.c), Some(rows[3].checkpoint.clone()));

    // Even the module's true newest state is refused, by every PSD command.
    restore(&mut cl, &rows[3]);
    assert_every_psd_command_inhibited(&mut cl);
    let e = cl.m.refused(Request::AutoRecoverCheckpoint {
        checkpoint: rows[3].checkpoint.clone(),
    });
    assert_inhibited(&e);
    restore(&mut cl, &stale);
    assert_every_psd_command_inhibited(&mut cl);

    // The Security Officer accepts the database's state.
    let from = audit_log(&cl.m.f).len();
    as_user(&mut cl.m.c, "so", |c| {
        ok(c, Request::BeginAdmin);
        ok(
            c,
            Request::AcceptCheckpoint {
                checkpoint: Some(stale.checkpoint.clone()),
            },
        );
        ok(c, Request::EndAdmin);
    });
    let log = log_since(&cl.m.f, from);
    let accept = log
        .iter()
        .find(|e| e.command == "AcceptCheckpoint")
        .expect("Accept Checkpoint is audited");
    assert_eq!(accept.reason, "ok");
    assert_eq!(accept.data["checkpoint"], "4");
    assert_eq!(accept.data["device"], DEVICE.to_string());
    assert!(
        accept.data["was_inhibited"].contains("Auto-Recover Checkpoint failed"),
        "{accept:?}"
    );
    assert!(accept.signature.is_some());
    assert_eq!(newest(&mut cl.m.c), Some(stale.checkpoint.clone()));

    // The module's former newest package is refused now.
    cl.m.package = rows[3].package.clone();
    let req =
        cl.m.download_request(1_000, control_total(&rows[3].checkpoint));
    assert_stale(&cl.m.refused(req), "which a recovered rollback discarded");

    // The database's state works: AR 0, DR 10 000.
    restore(&mut cl, &stale);
    cl.create_checked(500, 500, 9_500, 1);
    cl.m.download(1_000, 10_000);
    let cp = cl.m.checkpoint.clone().unwrap().checkpoint;
    assert_eq!((cp.ascending_mills, cp.descending_mills), (500, 10_500));
    assert_eq!(
        cp.seq, 9,
        "sequence numbers go on from the module's counter"
    );
}

#[test]
fn the_inhibition_survives_a_module_restart() {
    let (mut cl, rows) = history();
    let e = run_err(
        &mut cl.m.c,
        Request::AutoRecoverCheckpoint {
            checkpoint: rows[0].checkpoint.clone(),
        },
    );
    assert_inhibited(&e);

    let mut cl = restart(cl);
    assert_eq!(newest(&mut cl.m.c), Some(rows[3].checkpoint.clone()));
    restore(&mut cl, &rows[3]);
    let req =
        cl.m.download_request(1_000, control_total(&rows[3].checkpoint));
    assert_inhibited(&cl.m.refused(req));
    let e = run_err(
        &mut cl.m.c,
        Request::RetrievePsdStatus {
            package: rows[3].package.clone(),
            checkpoint: Some(rows[3].checkpoint.clone()),
        },
    );
    assert_inhibited(&e);

    as_user(&mut cl.m.c, "so", |c| {
        ok(c, Request::BeginAdmin);
        ok(
            c,
            Request::AcceptCheckpoint {
                checkpoint: Some(rows[0].checkpoint.clone()),
            },
        );
        ok(c, Request::EndAdmin);
    });
    restore(&mut cl, &rows[0]);
    cl.create_checked(500, 500, 9_500, 1);
}

#[test]
fn auto_recover_with_the_newest_checkpoint_discards_nothing() {
    let (mut cl, rows) = history();
    let nvm = cl.m.nvm_without_audit();
    let from = audit_log(&cl.m.f).len();
    assert_eq!(auto_recover(&mut cl.m.c, &rows[3].checkpoint), 0);
    assert_eq!(cl.m.nvm_without_audit(), nvm, "nothing changed");
    let log = log_since(&cl.m.f, from);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].command, "AutoRecoverCheckpoint");
    assert_eq!(log[0].reason, "ok");
    assert_eq!(log[0].data["discarded"], "0");
    assert_eq!(newest(&mut cl.m.c), Some(rows[3].checkpoint.clone()));
    // The database's state goes on: AR 3 000, DR 12 000.
    cl.create_checked(500, 3_500, 11_500, 3);
}

/// Alters one byte of a checkpoint.
type Flip = fn(&mut SignedCheckpoint);

#[test]
fn a_checkpoint_with_one_flipped_byte_is_refused() {
    let (mut cl, rows) = history();
    let good = rows[3].checkpoint.clone();
    let flips: [(&str, Flip); 9] = [
        ("seq", |s| s.checkpoint.seq ^= 1),
        ("amount", |s| s.checkpoint.amount_mills ^= 1),
        ("device id", |s| {
            let mut b = std::mem::take(&mut s.checkpoint.device_id).into_bytes();
            *b.last_mut().unwrap() ^= 1;
            s.checkpoint.device_id = String::from_utf8(b).unwrap();
        }),
        ("descending", |s| s.checkpoint.descending_mills ^= 1),
        ("totals", |s| s.checkpoint.totals.printed_mills ^= 0x100),
        ("time", |s| s.checkpoint.time ^= 1),
        ("package digest", |s| s.checkpoint.package_digest[31] ^= 1),
        ("mac first byte", |s| s.mac[0] ^= 1),
        ("mac last byte", |s| s.mac[31] ^= 0x80),
    ];
    for (what, flip) in flips {
        let mut bad = good.clone();
        flip(&mut bad);
        assert_ne!(bad, good, "{what}");
        cl.m.checkpoint = Some(bad.clone());
        let req = cl.request(500);
        let e = cl.refused(req);
        assert!(matches!(e, ModuleError::Rejected(_)), "{what}: {e:?}");
        assert_rejected(&e, "checkpoint's MAC does not verify");
        // Auto-Recover refuses it too, without inhibiting anything.
        let e =
            cl.m.refused(Request::AutoRecoverCheckpoint { checkpoint: bad });
        assert_rejected(&e, "checkpoint's MAC does not verify");
    }
    cl.m.checkpoint = Some(good);

    // A package with one flipped byte is refused too.
    for at in [
        0,
        rows[3].package.sealed.len() / 2,
        rows[3].package.sealed.len() - 1,
    ] {
        cl.m.package.sealed[at] ^= 0x01;
        let req = cl.request(500);
        assert_rejected(&cl.refused(req), "failed authentication");
        cl.m.package = rows[3].package.clone();
    }
    cl.create_checked(500, 3_500, 11_500, 3);
}

#[test]
fn a_package_without_the_databases_checkpoint_is_refused() {
    let mut m = Meter::leased();
    let cp = m.checkpoint.take();
    let req = m.download_request(1_000, 0);
    let e = m.refused(req);
    assert_mismatch(&e, "no checkpoint was given, but module");
    assert_mismatch(
        &e,
        "pass the database's checkpoint for this module with the package",
    );
    m.checkpoint = cp;
    m.download(1_000, 0);
}

#[test]
fn a_stale_package_with_the_current_checkpoint_is_refused() {
    let mut m = Meter::leased();
    let leased = m.package.clone();
    m.download(1_000, 0);
    let old = m.package.clone();
    m.download(2_000, 1_000);
    let current = m.package.clone();
    assert_eq!(m.checkpoint.as_ref().unwrap().checkpoint.seq, 5);

    m.package = old;
    let req = m.download_request(500, 1_000);
    let e = m.refused(req);
    assert_stale(&e, "the package for 0042");
    assert_stale(
        &e,
        "produced by this module's transaction 4, but the module has since made transaction 5 on this meter",
    );
    let e = run_err(
        &mut m.c,
        Request::RetrievePsdStatus {
            package: m.package.clone(),
            checkpoint: m.checkpoint.clone(),
        },
    );
    assert_stale(&e, "since made transaction");
    m.package = leased;
    let req = m.download_request(500, 0);
    assert_stale(&m.refused(req), "since made transaction");

    m.package = current;
    m.download(500, 3_000);
}

#[test]
fn a_checkpoint_from_another_deployments_module_is_refused() {
    let mut a = Meter::leased();
    let mut b = Meter::leased();
    a.download(1_000, 0);
    b.download(1_000, 0);
    let own = a.checkpoint.clone();
    let foreign = b.checkpoint.clone().unwrap();
    // Same meter, same sequence, same amounts: only the deployment differs.
    assert_eq!(foreign.checkpoint.seq, own.as_ref().unwrap().checkpoint.seq);

    a.checkpoint = Some(foreign.clone());
    let req = a.download_request(1_000, 1_000);
    let e = a.refused(req);
    assert_rejected(&e, "checkpoint's MAC does not verify");
    assert_rejected(&e, "was not made by this deployment");
    let e = a.refused(Request::AutoRecoverCheckpoint {
        checkpoint: foreign,
    });
    assert_rejected(&e, "checkpoint's MAC does not verify");

    a.checkpoint = own;
    a.download(1_000, 1_000);
}

#[test]
fn the_module_table_cross_check_finds_modules_the_database_is_behind() {
    let mut a = Meter::leased();
    let mut b = Meter::leased();
    let mut c = Meter::new();
    let (ida, idb, idc) = (
        module_id(&mut a.c),
        module_id(&mut b.c),
        module_id(&mut c.c),
    );
    a.download(1_000, 0);
    let a_old = newest(&mut a.c).unwrap().checkpoint;
    a.download(2_000, 1_000);
    let b_old = newest(&mut b.c).unwrap().checkpoint;
    b.download(3_000, 0);
    let a_new = newest(&mut a.c).unwrap().checkpoint;
    let b_new = newest(&mut b.c).unwrap().checkpoint;
    assert_eq!(newest(&mut c.c), None, "c has made no transaction");
    let (hexa, hexb, hexc) = (hex::encode(ida), hex::encode(idb), hex::encode(idc));

    let row = |id: &[u8; 16], cp: Option<&Checkpoint>| ModuleTableRow::from_checkpoint(id, cp);
    let r = row(&ida, Some(&a_new));
    assert_eq!(
        r,
        ModuleTableRow {
            module_id: hexa.clone(),
            time: Some(a_new.time),
            value_mills: Some(2_000),
            seq: Some(5),
        }
    );
    let modules = vec![
        (ida, Some(a_new.clone())),
        (idb, Some(b_new.clone())),
        (idc, None),
    ];

    // The table the store wrote with each checkpoint agrees.
    let table = vec![
        row(&ida, Some(&a_new)),
        row(&idb, Some(&b_new)),
        row(&idc, None),
    ];
    assert_eq!(cross_check(&table, &modules, 0), Ok(vec![]));
    // A module without transactions need not be in the table.
    assert_eq!(cross_check(&table[..2], &modules, 0), Ok(vec![]));

    // One module's row from an older checkpoint.
    let stale_a = vec![
        row(&ida, Some(&a_old)),
        row(&idb, Some(&b_new)),
        row(&idc, None),
    ];
    let err = cross_check(&stale_a, &modules, 0).unwrap_err();
    let CrossCheckError::TooManyFailing {
        failing,
        checked,
        threshold,
        details,
    } = &err;
    assert_eq!((*failing, *checked, *threshold), (1, 3, 0));
    assert!(
        details.contains(&format!("module {hexa}: table says seq Some(4)")),
        "{details}"
    );
    assert!(details.contains("module says seq Some(5)"), "{details}");
    assert!(!details.contains(&hexb), "{details}");
    assert!(
        err.to_string()
            .contains("the database may have been rolled back, so no PSD package is loaded"),
        "{err}"
    );
    assert_eq!(cross_check(&stale_a, &modules, 1), Ok(vec![hexa.clone()]));

    // Two stale rows are more than a threshold of one.
    let stale_ab = vec![
        row(&ida, Some(&a_old)),
        row(&idb, Some(&b_old)),
        row(&idc, None),
    ];
    let err = cross_check(&stale_ab, &modules, 1).unwrap_err();
    assert!(
        matches!(
            &err,
            CrossCheckError::TooManyFailing {
                failing: 2,
                threshold: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        cross_check(&stale_ab, &modules, 2),
        Ok(vec![hexa.clone(), hexb.clone()])
    );

    // A module that has transactions but is missing from the table fails.
    let missing_b = vec![row(&ida, Some(&a_new))];
    let err = cross_check(&missing_b, &modules, 0).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("module {hexb}: not in the module table")),
        "{err}"
    );
    assert_eq!(cross_check(&missing_b, &modules, 1), Ok(vec![hexb.clone()]));

    // A table row claiming a transaction of a module that has none fails.
    let phantom = vec![
        row(&ida, Some(&a_new)),
        row(&idb, Some(&b_new)),
        ModuleTableRow {
            module_id: hexc.clone(),
            time: Some(T0),
            value_mills: Some(1_000),
            seq: Some(1),
        },
    ];
    let err = cross_check(&phantom, &modules, 0).unwrap_err();
    assert!(err.to_string().contains(&format!("module {hexc}")), "{err}");
    assert_eq!(cross_check(&phantom, &modules, 1), Ok(vec![hexc]));
}

#[test]
fn a_transaction_discarded_by_auto_recover_stays_discarded_after_another_meters_transaction() {
    let (mut cl, rows) = history();
    // A second meter served by the same module (raw: no checkpoint yet).
    let (other, other_key) = match ok(
        &mut cl.m.c,
        Request::InitializePsd {
            device: OTHER_DEVICE,
        },
    ) {
        Response::PsdInitialized {
            package,
            public_key,
            ..
        } => (package, public_key),
        other => panic!("unexpected {other:?}"),
    };

    // The database is rolled back by two: the download of 5 000 mills
    // (checkpoint 6) and the indicium after it (7) are discarded.
    assert_eq!(auto_recover(&mut cl.m.c, &rows[1].checkpoint), 2);
    restore(&mut cl, &rows[3]);
    cl.m.checkpoint = Some(rows[1].checkpoint.clone());
    let req = cl.request(500);
    assert_stale(&cl.refused(req), "which a recovered rollback discarded");

    // The other meter makes the module's next transaction (checkpoint 8).
    let cert = certificate_for(&cl.m, &other_key, OTHER_DEVICE);
    cl.m.f.clock.advance(3_600);
    let checkpoint8 = match ok(
        &mut cl.m.c,
        Request::AuthorizePsd {
            package: other,
            checkpoint: Some(rows[1].checkpoint.clone()),
            certificate_der: cert,
        },
    ) {
        Response::PsdUpdated {
            checkpoint, state, ..
        } => {
            assert_eq!(state, PsdState::Unleased);
            checkpoint
        }
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(checkpoint8.checkpoint.seq, 8);
    assert_eq!(checkpoint8.checkpoint.device_id, OTHER_DEVICE.to_string());

    // The package of discarded transaction 7 (AR 3 000, DR 12 000: it holds
    // the discarded download) must stay refused with the database's new
    // checkpoint; the database's package for the meter is rows[1]'s (AR
    // 1 000, DR 9 000).
    cl.m.checkpoint = Some(checkpoint8.clone());
    let nvm = cl.m.nvm_without_audit();
    let req = cl.send(cl.request(9_500));
    match cl.m.c.run(&req) {
        Ok(_) => panic!(
            "the package of transaction 7, discarded by Auto-Recover Checkpoint, was accepted \
             after another meter's transaction 8: it printed 9 500 mills, more than the \
             database's DR of 9 000 mills for this meter"
        ),
        Err(ClientError::Module(e)) => assert_stale(&e, "discarded"),
        Err(e) => panic!("no module reply: {e}"),
    }
    assert_eq!(cl.m.nvm_without_audit(), nvm, "the refusal changed the NVM");

    // The database's own package for the meter works.
    restore(&mut cl, &rows[1]);
    cl.m.checkpoint = Some(checkpoint8);
    cl.create_checked(500, 1_500, 8_500, 2);
}

#[test]
fn a_power_loss_after_a_batch_reached_nvm_loses_none_of_its_audit_entries() {
    let mut cl = Client::funded(10_000);
    let from = audit_log(&cl.m.f).len();
    let request = cl.request(700);
    let batch = Request::CreateIndicia {
        checkpoint: cl.m.checkpoint.clone(),
        items: vec![postvault_module::psd::IndiciumItem {
            package: cl.m.package.clone(),
            request,
        }],
    };
    // The NVM (with the batch's two entries pending) is written, then the
    // power fails before the host stored the entries.
    cl.m._m
        .lock()
        .unwrap()
        .set_crash_at(Some(postvault_module::nvm::CrashPoint::AfterRename));
    let e = run_err(&mut cl.m.c, batch);
    assert!(matches!(e, ModuleError::Storage(_)), "{e:?}");
    assert_eq!(
        audit_log(&cl.m.f).len(),
        from,
        "the host has none of them yet"
    );
    let cl = restart(cl);
    let log = audit_log(&cl.m.f);
    let new = &log[from..];
    assert_eq!(new.len(), 2, "boot handed over both: {new:?}");
    assert_eq!(new[0].reason, "ok");
    assert_eq!(new[0].data["postage_mills"], "700");
    assert_eq!(new[1].command, "CreateIndicia");
    assert_eq!(new[1].data["issued"], "1");
    assert_eq!(new[1].seq, new[0].seq + 1);
    assert_eq!(new[1].prev_hash, new[0].hash());
    assert_eq!(
        new[0].prev_hash,
        log[from - 1].hash(),
        "the chain has no hole"
    );
}

/// A Create Indicia batch of one piece of `postage` on `cl`'s package and
/// checkpoint: on success the client keeps the new package, checkpoint and
/// challenge; a refused piece changes nothing and gives its error.
fn batch_of_one(cl: &mut Client, postage: u64) -> Result<(), ModuleError> {
    let req = Request::CreateIndicia {
        checkpoint: cl.m.checkpoint.clone(),
        items: vec![IndiciumItem {
            package: cl.m.package.clone(),
            request: cl.request(postage),
        }],
    };
    match ok(&mut cl.m.c, req) {
        Response::IndiciaCreated {
            mut results,
            checkpoint,
        } => match results.pop().expect("one result") {
            Ok(issued) => {
                cl.m.package = issued.package;
                cl.m.checkpoint = Some(checkpoint.expect("a checkpoint for the piece"));
                cl.challenge = issued.new_challenge;
                Ok(())
            }
            Err(e) => {
                assert!(checkpoint.is_none(), "a refused piece moves no checkpoint");
                Err(e)
            }
        },
        other => panic!("unexpected {other:?}"),
    }
}

/// The module keeps the packages it sealed in Create Indicia so that the
/// next batch need not open them again; only the very bytes it handed out
/// get the kept copy. With the copy warm, a package with one flipped byte
/// is refused as altered, an older package as stale, and the package of a
/// transaction Auto-Recover discarded as discarded; the registers come out
/// as if nothing were kept.
#[test]
fn packages_kept_between_batches_serve_only_the_bytes_handed_out() {
    let mut cl = Client::funded(10_000);
    batch_of_one(&mut cl, 500).unwrap();
    // Served from the kept copy.
    batch_of_one(&mut cl, 600).unwrap();
    let row = db(&cl);

    // One flipped byte in the sealed package, with its genuine copy kept.
    let mut flipped = row.package.clone();
    let mid = flipped.sealed.len() / 2;
    flipped.sealed[mid] ^= 0x01;
    cl.m.package = flipped;
    let e = batch_of_one(&mut cl, 700).unwrap_err();
    assert_rejected(&e, "failed authentication");
    restore(&mut cl, &row);
    batch_of_one(&mut cl, 700).unwrap();
    let newer = db(&cl);

    // The older package, with the newer one kept and the current checkpoint.
    cl.m.package = row.package.clone();
    cl.challenge = row.challenge;
    let e = batch_of_one(&mut cl, 800).unwrap_err();
    assert_stale(&e, "since made transaction");
    restore(&mut cl, &newer);

    // A batch the database then loses: its package is kept by the module
    // until Auto-Recover discards the transaction.
    batch_of_one(&mut cl, 800).unwrap();
    let lost = db(&cl);
    assert_eq!(auto_recover(&mut cl.m.c, &newer.checkpoint), 1);
    restore(&mut cl, &lost);
    cl.m.checkpoint = Some(newer.checkpoint.clone());
    let e = batch_of_one(&mut cl, 900).unwrap_err();
    assert_stale(&e, "which a recovered rollback discarded");

    // The database's package goes on; the discarded 800 mills are nowhere.
    restore(&mut cl, &newer);
    batch_of_one(&mut cl, 900).unwrap();
    batch_of_one(&mut cl, 100).unwrap();
    let s = match ok(
        &mut cl.m.c,
        Request::RetrievePsdStatus {
            package: cl.m.package.clone(),
            checkpoint: cl.m.checkpoint.clone(),
        },
    ) {
        Response::PsdStatus(s) => s,
        other => panic!("unexpected {other:?}"),
    };
    let ar = 500 + 600 + 700 + 900 + 100;
    assert_eq!(
        (s.ascending_mills, s.descending_mills, s.piece_count),
        (ar, 10_000 - ar, 5)
    );
}

/// The other way round: the module's NVM put back to an older copy while
/// the database kept its newer checkpoint. The module refuses and says that
/// its own NVM is the stale side; Accept Checkpoint (in Administrative
/// state) with the database's checkpoint lets it go on.
#[test]
fn a_module_nvm_older_than_the_database_is_named_as_the_stale_side() {
    let mut cl = Client::funded(10_000);
    let nvm =
        cl.m.f
            .path()
            .join("module")
            .join(postvault_module::nvm::NVM_FILE);
    let old = std::fs::read(&nvm).unwrap();
    cl.m.f.clock.advance(60);
    cl.create(cl.request(1_000));
    let newest = cl.m.checkpoint.clone().unwrap().checkpoint.seq;
    let mut cl = restart_with(cl, |dir| {
        std::fs::write(dir.join(postvault_module::nvm::NVM_FILE), &old).unwrap();
    });
    let e = cl.refused(cl.request(500));
    assert_mismatch(
        &e,
        &format!("the database's checkpoint for this module is {newest}"),
    );
    assert_mismatch(&e, "the module's NVM is older than the database");
    assert_mismatch(&e, "run Accept Checkpoint");
    let cp = cl.m.checkpoint.clone();
    as_user(&mut cl.m.c, "so", |c| {
        ok(c, Request::BeginAdmin);
        ok(c, Request::AcceptCheckpoint { checkpoint: cp });
        ok(c, Request::EndAdmin);
    });
    cl.create(cl.request(500));
}
