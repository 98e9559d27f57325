//! Crash-at-every-step tests of the state transitions, and the boot rules.
//!
//! Seed 002: a state transition updates Current State, performs its actions,
//! and finally updates Persistent State (in NVM); "if the module is rebooted
//! during this sequence, the old state is retained in Persistent State", and
//! at boot the Persistent State decides the new Current State (boot
//! detection, [`seed_boot`]).
//!
//! For every state-changing command and every [`CrashPoint`] the module is
//! brought into the command's pre-state, the simulated power loss is armed
//! right before the command (after logging on: every command writes the NVM,
//! Logon included), the command is sent, the module is dropped and the
//! directory is booted again. [`ROWS`] is the expected outcome, written out.
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use postvault_crypto::{Faults, TestName};
use postvault_module::error::ModuleError;
use postvault_module::nvm::{CrashPoint, NVM_FILE, NvmImage};
use postvault_module::protocol::MksSlot;
use postvault_module::{ClientError, Module, ModuleClient, ModuleState, Request, Response, Role};
use postvault_seal::{SealConfig, open_provider};

use crate::common::*;

use ModuleState::{
    Administrative as A, Error as E, ExportingShares as X, ImportingShares as M, Initializing as I,
    Operational as O, Uninitialized as U,
};

const NVM_TMP: &str = "nvm.sealed.tmp";

/// The state-changing commands, each from one pre-state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Start Initialization on a new module (no NVM file yet).
    StartInitializationFresh,
    /// Start Initialization on a module that was Reset (NVM holds Uninitialized).
    StartInitializationAfterReset,
    /// Generate MKS in Initializing (master).
    GenerateMks,
    /// Generate Transport Key in Initializing (clone).
    GenerateTransportKey,
    BeginAdmin,
    EndAdmin,
    /// Create MKS Shares, 2 of 2.
    CreateMksShares,
    /// The second of two Export Share commands (the export completes).
    LastExportShare,
    /// Abort Export after one of two shares went out.
    AbortExport,
    /// Start Importing on an Operational clone (replacement MKS).
    StartImporting,
    /// Combine Shares on a new clone (its first MKS).
    CombineSharesFirstMks,
    /// Combine Shares on an Operational clone (a newer MKS, which becomes dormant).
    CombineSharesReplacementMks,
    /// Zeroize by the Security Officer in Operational.
    Zeroize,
    /// Reset by the Security Officer in Operational.
    ResetOperational,
    /// Reset by nobody in (fatal) Error, after a Zeroize and a reboot.
    ResetInError,
}

/// One state-changing command and what a crash does to it.
struct Row {
    step: Step,
    /// Current State when the command is sent.
    pre: ModuleState,
    /// Persistent State on disk before the command (`None`: no NVM file).
    old: Option<ModuleState>,
    /// Persistent State the command writes.
    new: ModuleState,
    /// The module has an active MKS on disk before / after the command.
    mks: (bool, bool),
    /// (Current, Persistent) after a reboot with `old` on disk.
    boot_old: (ModuleState, ModuleState),
    /// (Current, Persistent) after a reboot with `new` on disk.
    boot_new: (ModuleState, ModuleState),
}

const fn row(
    step: Step,
    pre: ModuleState,
    old: Option<ModuleState>,
    new: ModuleState,
    mks: (bool, bool),
    boot_old: (ModuleState, ModuleState),
    boot_new: (ModuleState, ModuleState),
) -> Row {
    Row {
        step,
        pre,
        old,
        new,
        mks,
        boot_old,
        boot_new,
    }
}

/// The expected outcomes. A crash before the rename of the NVM file
/// (AfterCurrentState, BeforeWrite, AfterTempWrite) leaves `old` on disk and
/// the reboot gives `boot_old`; a crash after it (AfterRename) leaves `new`
/// and gives `boot_new`. Exception: Zeroize and Reset change Current State
/// together with their actions, after the audit entry (the entry is signed
/// with the key Zeroize destroys), so AfterCurrentState is never reached for
/// them and the command completes ([`crash_point_reached`]).
#[rustfmt::skip]
const ROWS: &[Row] = &[
    //   step                                  pre old      new  mks            boot_old  boot_new
    row(Step::StartInitializationFresh,        U, None,    I, (false, false), (U, U), (E, E)),
    row(Step::StartInitializationAfterReset,   U, Some(U), I, (false, false), (U, U), (E, E)),
    row(Step::GenerateMks,                     I, Some(I), O, (false, true),  (E, E), (O, O)),
    row(Step::GenerateTransportKey,            I, Some(I), M, (false, false), (E, E), (E, E)),
    row(Step::BeginAdmin,                      O, Some(O), A, (true, true),   (O, O), (O, O)),
    row(Step::EndAdmin,                        A, Some(A), O, (true, true),   (O, O), (O, O)),
    row(Step::CreateMksShares,                 O, Some(O), X, (true, true),   (O, O), (E, X)),
    row(Step::LastExportShare,                 X, Some(X), O, (true, true),   (E, X), (O, O)),
    row(Step::AbortExport,                     X, Some(X), O, (true, true),   (E, X), (O, O)),
    row(Step::StartImporting,                  O, Some(O), M, (true, true),   (O, O), (O, O)),
    row(Step::CombineSharesFirstMks,           M, Some(M), O, (false, true),  (E, E), (O, O)),
    row(Step::CombineSharesReplacementMks,     M, Some(M), O, (true, true),   (O, O), (O, O)),
    row(Step::Zeroize,                         O, Some(O), E, (true, false),  (O, O), (E, E)),
    row(Step::ResetOperational,                O, Some(O), U, (true, false),  (O, O), (U, U)),
    row(Step::ResetInError,                    E, Some(E), U, (false, false), (E, E), (U, U)),
];

const POINTS: [CrashPoint; 4] = [
    CrashPoint::AfterCurrentState,
    CrashPoint::BeforeWrite,
    CrashPoint::AfterTempWrite,
    CrashPoint::AfterRename,
];

/// Boot detection as seed 002 states it: (Current, Persistent) after a boot
/// with Persistent State `disk` (`None`: no NVM yet) and an active MKS or not.
fn seed_boot(disk: Option<ModuleState>, active_mks: bool) -> (ModuleState, ModuleState) {
    match disk {
        None | Some(U) => (U, U),
        // "If it is Error: a fatal error has occurred, and Current State is set to Error."
        Some(E) => (E, E),
        // "If it is Initializing: Persistent and Current State are set to Error."
        Some(I) => (E, E),
        // "If it is Importing Shares, and if there is no active MKS, Persistent
        // and Current State are set to Error"; with one, both Operational.
        Some(M) if !active_mks => (E, E),
        // "If it is Exporting Shares: Current State is set to Error, as this is
        // a non-fatal error." (Persistent State is not modified.)
        Some(X) => (E, X),
        // "Else: both Current State and Persistent State are set to Operational."
        Some(_) => (O, O),
    }
}

/// Whether the simulated power loss at `point` strikes during `step`.
fn crash_point_reached(step: Step, point: CrashPoint) -> bool {
    !(point == CrashPoint::AfterCurrentState
        && matches!(
            step,
            Step::Zeroize | Step::ResetOperational | Step::ResetInError
        ))
}

#[test]
fn the_expected_boot_outcomes_follow_the_seed_boot_rules() {
    for r in ROWS {
        assert_eq!(
            r.boot_old,
            seed_boot(r.old, r.mks.0),
            "{:?}: boot_old",
            r.step
        );
        assert_eq!(
            r.boot_new,
            seed_boot(Some(r.new), r.mks.1),
            "{:?}: boot_new",
            r.step
        );
    }
}

/// Modules the pre-states are reached from (built once, copied per case).
struct Templates {
    /// A master, Operational, with every role's account.
    master: Fixture,
    /// A clone holding the master's MKS (generation 1), Operational.
    clone: Fixture,
    /// The clone's transport public key.
    clone_transport_key: Vec<u8>,
}

fn templates() -> Templates {
    let (master, clone) = master_and_clone();
    let clone_transport_key = {
        let m = clone.open();
        let mut c = client(&m);
        match as_user(&mut c, "so", |c| ok(c, Request::ExportTransportKey)) {
            Response::TransportKey(k) => k,
            other => panic!("unexpected {other:?}"),
        }
    };
    Templates {
        master,
        clone,
        clone_transport_key,
    }
}

/// A module in a step's pre-state, the client that sends the command (its
/// user logged on), and the command.
struct Case {
    f: Fixture,
    m: Arc<Mutex<Module>>,
    c: ModuleClient,
    req: Request,
}

fn logged_on(m: &Arc<Mutex<Module>>, user: Option<&str>) -> ModuleClient {
    let mut c = client(m);
    if let Some(u) = user {
        c.logon(u, &pw(u))
            .unwrap_or_else(|e| panic!("logon {u}: {e}"));
    }
    c
}

fn prepare(t: &Templates, step: Step) -> Case {
    let (f, user, req) = match step {
        Step::StartInitializationFresh => (
            Fixture::new(),
            None,
            Request::StartInitialization { time: T0 },
        ),
        Step::StartInitializationAfterReset => {
            let f = copy_fixture(&t.master);
            {
                let m = f.open();
                let mut c = logged_on(&m, Some("so"));
                ok(&mut c, Request::Reset);
            }
            (f, None, Request::StartInitialization { time: T0 })
        }
        Step::GenerateMks | Step::GenerateTransportKey => {
            // Initializing does not survive a reboot: prepare and crash in one instance.
            let f = Fixture::new();
            let m = f.open();
            initialize(&mut client(&m));
            let c = logged_on(&m, Some("so"));
            let req = if step == Step::GenerateMks {
                Request::GenerateMks
            } else {
                Request::GenerateTransportKey
            };
            return Case { f, m, c, req };
        }
        Step::BeginAdmin => (copy_fixture(&t.master), Some("so"), Request::BeginAdmin),
        Step::EndAdmin => {
            let f = copy_fixture(&t.master);
            let m = f.open();
            let mut c = logged_on(&m, Some("so"));
            ok(&mut c, Request::BeginAdmin);
            return Case {
                f,
                m,
                c,
                req: Request::EndAdmin,
            };
        }
        Step::CreateMksShares => (
            copy_fixture(&t.master),
            Some("so"),
            Request::CreateMksShares {
                count: 2,
                threshold: 2,
                slot: MksSlot::Active,
            },
        ),
        Step::LastExportShare | Step::AbortExport => {
            let f = copy_fixture(&t.master);
            let m = f.open();
            let mut side = client(&m);
            as_user(&mut side, "so", |c| {
                ok(
                    c,
                    Request::CreateMksShares {
                        count: 2,
                        threshold: 2,
                        slot: MksSlot::Active,
                    },
                )
            });
            let export = Request::ExportShare {
                transport_public_key: t.clone_transport_key.clone(),
                exportable: true,
            };
            as_user(&mut side, "kc1", |c| ok(c, export.clone()));
            let (user, req) = if step == Step::LastExportShare {
                ("kc2", export)
            } else {
                ("so", Request::AbortExport)
            };
            let c = logged_on(&m, Some(user));
            return Case { f, m, c, req };
        }
        Step::StartImporting => (copy_fixture(&t.clone), Some("so"), Request::StartImporting),
        Step::CombineSharesFirstMks => {
            let master = copy_fixture(&t.master);
            let f = Fixture::new();
            let m = f.open();
            let mut side = client(&m);
            initialize(&mut side);
            let tk = generate_transport_key(&mut side);
            let shares = {
                let mm = master.open();
                export_shares(&mut client(&mm), &tk, 2, 2, MksSlot::Active)
            };
            import_shares(&mut side, &shares);
            let c = logged_on(&m, Some("so"));
            return Case {
                f,
                m,
                c,
                req: Request::CombineShares,
            };
        }
        Step::CombineSharesReplacementMks => {
            let master = copy_fixture(&t.master);
            let shares = {
                let mm = master.open();
                let mut mc = client(&mm);
                as_user(&mut mc, "so", |c| ok(c, Request::GenerateMks));
                export_shares(&mut mc, &t.clone_transport_key, 2, 2, MksSlot::Dormant)
            };
            let f = copy_fixture(&t.clone);
            let m = f.open();
            let mut side = client(&m);
            as_user(&mut side, "so", |c| ok(c, Request::StartImporting));
            import_shares(&mut side, &shares);
            let c = logged_on(&m, Some("so"));
            return Case {
                f,
                m,
                c,
                req: Request::CombineShares,
            };
        }
        Step::Zeroize => (copy_fixture(&t.master), Some("so"), Request::Zeroize),
        Step::ResetOperational => (copy_fixture(&t.master), Some("so"), Request::Reset),
        Step::ResetInError => {
            let f = copy_fixture(&t.master);
            {
                let m = f.open();
                let mut c = logged_on(&m, Some("so"));
                ok(&mut c, Request::Zeroize);
            }
            (f, None, Request::Reset)
        }
    };
    let m = f.open();
    let c = logged_on(&m, user);
    Case { f, m, c, req }
}

fn nvm_path(f: &Fixture) -> PathBuf {
    f.path().join("module").join(NVM_FILE)
}

/// `image` as a steady write leaves it in the temporary file: its first
/// 4 KiB zeroed, so that it no longer unseals.
fn scrubbed(image: &[u8]) -> Vec<u8> {
    let mut v = image.to_vec();
    let head = v.len().min(4096);
    v[..head].fill(0);
    v
}

/// Reads the NVM file as a second party would (no boot logic, nothing
/// changed on disk): it must unseal (never half-written).
fn disk(f: &Fixture) -> Option<NvmImage> {
    let bytes = std::fs::read(nvm_path(f)).ok()?;
    Some(unseal(f, &bytes).unwrap_or_else(|| panic!("the NVM must always unseal and decode")))
}

/// `bytes` unsealed with `f`'s seal key and decoded as an NVM image.
fn unseal(f: &Fixture, bytes: &[u8]) -> Option<NvmImage> {
    let seal = open_provider(
        &SealConfig::File {
            key_path: f.path().join("seal.key"),
        },
        false,
    )
    .unwrap();
    let plain = seal.unseal(b"postvault module NVM v1", bytes).ok()?;
    let (image, _padding): (NvmImage, &[u8]) =
        postcard::take_from_bytes(plain.expose_secret()).ok()?;
    Some(image)
}

/// Whether `later` is a later write of the NVM `earlier`: same module,
/// same keys and operator accounts, further along the audit chain. Boot
/// takes such an image from the temporary file (the rename of a steady
/// write may not have reached the disk).
fn later_write_of(earlier: &NvmImage, later: &NvmImage) -> bool {
    let keys = |i: &NvmImage| {
        postcard::to_allocvec(&(
            &i.users,
            &i.mks_active,
            &i.mks_dormant,
            &i.transport_key,
            &i.crypto_card,
            i.audit.as_ref().map(|a| &a.signing_key),
        ))
        .unwrap()
    };
    let seq = |i: &NvmImage| i.audit.as_ref().map(|a| a.next_seq);
    earlier.module_id == later.module_id
        && keys(earlier) == keys(later)
        && matches!((seq(earlier), seq(later)), (Some(a), Some(b)) if b > a)
}

/// What the NVM holds, without the random parts (keys, IDs).
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    persistent_state: ModuleState,
    users: usize,
    active_mks: Option<u32>,
    dormant_mks: Option<u32>,
    transport_key: bool,
    audit_chain: Option<u64>,
    audit_key: bool,
    error: bool,
}

fn summary(image: &NvmImage) -> Summary {
    Summary {
        persistent_state: image.persistent_state,
        users: image.users.len(),
        active_mks: image.mks_active.as_ref().map(|k| k.generation),
        dormant_mks: image.mks_dormant.as_ref().map(|k| k.generation),
        transport_key: image.transport_key.is_some(),
        audit_chain: image.audit.as_ref().map(|a| a.next_seq),
        audit_key: image
            .audit
            .as_ref()
            .is_some_and(|a| !a.signing_key.is_empty()),
        error: image.error.is_some(),
    }
}

/// The NVM a step leaves when nothing goes wrong.
fn reference(t: &Templates, step: Step) -> Summary {
    let Case { f, m, mut c, req } = prepare(t, step);
    c.run(&req)
        .unwrap_or_else(|e| panic!("{step:?} without a crash: {e}"));
    drop((c, m));
    summary(&disk(&f).expect("an NVM after the command"))
}

fn run_case(t: &Templates, r: &Row, point: CrashPoint, want: &Summary) {
    let step = r.step;
    let Case { f, m, mut c, req } = prepare(t, step);
    assert_eq!(m.lock().unwrap().current_state(), r.pre, "pre-state");
    assert_eq!(
        disk(&f).map(|i| i.persistent_state),
        r.old,
        "Persistent State before"
    );
    let pre_status = status(&mut c);
    let pre_bytes = std::fs::read(nvm_path(&f)).ok();
    let pre_summary = disk(&f).as_ref().map(summary);
    let tmp = f.path().join("module").join(NVM_TMP);
    let pre_tmp = std::fs::read(&tmp).ok();
    let pre_log = f.log.lock().unwrap().clone();

    m.lock().unwrap().set_crash_at(Some(point));
    let reply = c
        .call(&req)
        .expect("the module answers the crashing command");
    let crashed = crash_point_reached(step, point);
    if crashed {
        match &reply.result {
            Err(ModuleError::Storage(why)) if why.contains("simulated power loss") => {}
            other => panic!("the crashing command must fail with the power loss: {other:?}"),
        }
        assert!(
            reply.audit.is_none(),
            "no audit entry leaves a crashed module"
        );
        assert!(
            matches!(c.call(&Request::GetStatus), Err(ClientError::Refused(_))),
            "a powered-off module refuses further frames"
        );
        assert!(
            matches!(ModuleClient::local(m.clone()), Err(ClientError::Refused(_))),
            "a powered-off module refuses new sessions"
        );
        assert_eq!(
            f.log.lock().unwrap().len(),
            pre_log.len(),
            "no audit entry reached the host"
        );
    } else {
        assert!(reply.result.is_ok(), "{:?}", reply.result);
    }
    drop((c, m));

    // On disk, before the reboot.
    let before_rename = crashed && point != CrashPoint::AfterRename;
    let image = disk(&f);
    let tmp_now = std::fs::read(&tmp).ok();
    // A crash after the temporary file is synced leaves the new image
    // there, and boot takes it when it is a later write of the same NVM
    // (a power loss can lose a steady write's rename the same way).
    let new_at_boot = !before_rename
        || (point == CrashPoint::AfterTempWrite
            && matches!(
                (&image, tmp_now.as_deref().and_then(|t| unseal(&f, t))),
                (Some(old), Some(new)) if later_write_of(old, &new)
            ));
    if before_rename {
        assert_eq!(
            std::fs::read(nvm_path(&f)).ok(),
            pre_bytes,
            "a crash before the rename leaves the NVM file untouched"
        );
        assert_eq!(image.as_ref().map(|i| i.persistent_state), r.old);
        if point == CrashPoint::AfterTempWrite {
            assert!(
                tmp_now.is_some() && tmp_now != pre_tmp && tmp_now != pre_bytes,
                "a crash after the temporary write leaves the new image in the temporary file"
            );
        } else {
            // (The last command's write may still have been overwriting
            // the head of the image it left there, in the background.)
            assert!(
                tmp_now == pre_tmp || tmp_now == pre_tmp.as_deref().map(scrubbed),
                "a crash before the temporary write leaves the temporary file as it was"
            );
        }
    } else {
        let image = image.as_ref().expect("the new NVM");
        assert_eq!(image.persistent_state, r.new);
        assert_eq!(
            &summary(image),
            want,
            "the NVM holds exactly the completed command"
        );
        // The temporary file is gone, or (written over in place and swapped
        // with the NVM file) holds the NVM as it was before the command,
        // which must not hold a key the new one lacks.
        if let Some(left) = &tmp_now {
            assert_eq!(
                Some(scrubbed(pre_bytes.as_deref().unwrap_or_default())),
                Some(left.clone()),
                "the temporary file holds the previous NVM, its head overwritten"
            );
            let keys = |s: &Summary| (s.active_mks, s.dormant_mks, s.transport_key, s.audit_key);
            assert_eq!(
                pre_summary.as_ref().map(keys),
                Some(keys(want)),
                "the previous NVM stays beside the new one only when their keys are the same"
            );
        }
    }

    // The reboot.
    let (boot_current, boot_persistent) = if new_at_boot { r.boot_new } else { r.boot_old };
    let m = f.open();
    let mut c = client(&m);
    let s = status(&mut c);
    assert_eq!(
        (s.current_state, s.persistent_state),
        (boot_current, boot_persistent),
        "after the reboot (error: {:?})",
        s.error
    );
    if boot_current == E {
        assert!(s.error.is_some());
    }
    // What boot wrote agrees with what it reports.
    assert_eq!(
        disk(&f).map_or(U, |i| i.persistent_state),
        boot_persistent,
        "Persistent State on disk after the reboot"
    );
    if !new_at_boot {
        // Nothing of the interrupted command is visible.
        assert_eq!(s.keys, pre_status.keys, "keys after the reboot");
        assert_eq!(s.module_id, pre_status.module_id);
    }

    // The audit chain as the host holds it.
    let new_chain = matches!(
        step,
        Step::StartInitializationFresh | Step::StartInitializationAfterReset
    );
    if s.keys.audit_key && s.current_state != U {
        let reply = c
            .call(&Request::CreateAuditEntry {
                note: "after reboot".into(),
                sign: false,
            })
            .unwrap();
        let entry = reply.audit.expect("the entry after the reboot");
        assert!(
            entry.signature.is_some(),
            "the first entry after a reboot is signed (seed 002)"
        );
        let last = if new_chain { None } else { pre_log.last() };
        let next = last.map_or(0, |e| e.seq + 1);
        if !new_at_boot {
            assert_eq!(
                entry.seq, next,
                "the chain continues where the host's log ends"
            );
            if let Some(l) = last {
                assert_eq!(entry.prev_hash, l.hash());
            }
        } else {
            // The command's entry was committed with the NVM but the power
            // failed before it reached the host: boot handed it over, so the
            // host's log has no hole and the chain continues after it.
            let log = f.log.lock().unwrap().clone();
            let committed = log
                .iter()
                .rev()
                .find(|e| e.seq == next)
                .expect("the committed entry was handed to the host at boot");
            if let Some(l) = last {
                assert_eq!(committed.prev_hash, l.hash());
            }
            assert_eq!(
                entry.seq,
                next + 1,
                "the chain continues after the recovered entry"
            );
            assert_eq!(entry.prev_hash, committed.hash());
        }
    }
}

#[test]
fn crash_at_every_step_of_every_state_transition() {
    let started = std::time::Instant::now();
    let t = templates();
    let references: Vec<Summary> = ROWS.iter().map(|r| reference(&t, r.step)).collect();
    let setup = started.elapsed();
    let jobs: Vec<(usize, CrashPoint)> = (0..ROWS.len())
        .flat_map(|i| POINTS.into_iter().map(move |p| (i, p)))
        .collect();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        // The cases wait on fsync more than on the CPU.
        for _ in 0..4 {
            s.spawn(|| {
                while let Some(&(i, point)) = jobs.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let r = &ROWS[i];
                    let res =
                        catch_unwind(AssertUnwindSafe(|| run_case(&t, r, point, &references[i])));
                    if let Err(p) = res {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{:?} at {point:?}: {msg}", r.step));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n")
    );
    eprintln!(
        "crash tests: {} cases; setup {setup:?}, total {:?}",
        jobs.len(),
        started.elapsed()
    );
}

// ---- The boot rules, directly ----

fn reboot(f: &Fixture) -> (Arc<Mutex<Module>>, ModuleClient, ModuleState, ModuleState) {
    let m = f.open();
    let mut c = client(&m);
    let s = status(&mut c);
    (m, c, s.current_state, s.persistent_state)
}

fn in_error(r: Result<Response, ClientError>) -> bool {
    matches!(r, Err(ClientError::Module(ModuleError::InError(_))))
}

#[test]
fn persistent_initializing_is_a_fatal_error_that_only_reset_clears() {
    // A crash after Start Initialization's rename, before Initialize Access Control.
    let f = Fixture::new();
    {
        let m = f.open_with(&Opts {
            crash_at: Some(CrashPoint::AfterRename),
            ..Opts::default()
        });
        let mut c = client(&m);
        assert!(c.run(&Request::StartInitialization { time: T0 }).is_err());
    }
    assert_eq!(disk(&f).unwrap().persistent_state, I);
    let (_m, mut c, cur, per) = reboot(&f);
    assert_eq!((cur, per), (E, E));
    assert!(status(&mut c).error.unwrap().contains("initialization"));
    assert_eq!(
        disk(&f).unwrap().persistent_state,
        E,
        "fatal: written to NVM"
    );
    drop((_m, c));
    // It survives another reboot; nothing but Reset works.
    let (m, mut c, cur, per) = reboot(&f);
    assert_eq!((cur, per), (E, E));
    assert!(in_error(c.run(&Request::StartInitialization { time: T0 })));
    assert!(in_error(c.run(&Request::Logon {
        user_id: "so".into(),
        password: pw("so"),
    })));
    ok(&mut c, Request::Reset);
    assert_eq!(status(&mut c).current_state, U);
    drop((m, c));
    let (_m, mut c, cur, per) = reboot(&f);
    assert_eq!((cur, per), (U, U));
    // And it initializes again from scratch.
    initialize(&mut c);
    assert_eq!(status(&mut c).current_state, I);
}

#[test]
fn a_clean_reboot_in_initializing_is_fatal_too() {
    let f = Fixture::new();
    {
        let m = f.open();
        initialize(&mut client(&m));
    }
    let (_m, _c, cur, per) = reboot(&f);
    assert_eq!((cur, per), (E, E));
}

#[test]
fn exporting_shares_at_boot_is_a_non_fatal_error_that_recurs_until_reset() {
    let f = Fixture::new();
    {
        let m = f.open();
        let mut c = client(&m);
        master(&mut c);
        as_user(&mut c, "so", |c| {
            ok(
                c,
                Request::CreateMksShares {
                    count: 3,
                    threshold: 2,
                    slot: MksSlot::Active,
                },
            )
        });
    }
    for _ in 0..2 {
        let (_m, mut c, cur, per) = reboot(&f);
        assert_eq!((cur, per), (E, X), "non-fatal: Persistent State stays");
        let s = status(&mut c);
        assert!(s.error.unwrap().contains("non-fatal"));
        assert!(s.keys.active_mks.is_some(), "the MKS is still there");
        assert!(in_error(c.run(&Request::AbortExport)));
        assert!(in_error(c.run(&Request::Logon {
            user_id: "so".into(),
            password: pw("so"),
        })));
        assert_eq!(disk(&f).unwrap().persistent_state, X);
    }
    let (m, mut c, _, _) = reboot(&f);
    ok(&mut c, Request::Reset);
    drop((m, c));
    let (_m, c2, cur, per) = reboot(&f);
    assert_eq!((cur, per), (U, U));
    drop(c2);
}

#[test]
fn importing_shares_at_boot_depends_on_an_active_mks() {
    // With an active MKS (a replacement import): Operational, and so recorded.
    let (_master, clone) = master_and_clone();
    {
        let m = clone.open();
        let mut c = client(&m);
        as_user(&mut c, "so", |c| ok(c, Request::StartImporting));
        assert_eq!(status(&mut c).persistent_state, M);
    }
    let (_m, _c, cur, per) = reboot(&clone);
    assert_eq!((cur, per), (O, O));
    assert_eq!(disk(&clone).unwrap().persistent_state, O);

    // Without one (the first import of a clone): fatal.
    let f = Fixture::new();
    {
        let m = f.open();
        let mut c = client(&m);
        initialize(&mut c);
        generate_transport_key(&mut c);
        assert_eq!(status(&mut c).persistent_state, M);
    }
    let (_m, _c, cur, per) = reboot(&f);
    assert_eq!((cur, per), (E, E));
    assert_eq!(disk(&f).unwrap().persistent_state, E);
}

#[test]
fn administrative_at_boot_is_operational() {
    let f = Fixture::new();
    {
        let m = f.open();
        let mut c = client(&m);
        master(&mut c);
        as_user(&mut c, "so", |c| ok(c, Request::BeginAdmin));
    }
    assert_eq!(disk(&f).unwrap().persistent_state, A);
    let (_m, _c, cur, per) = reboot(&f);
    assert_eq!((cur, per), (O, O));
    assert_eq!(disk(&f).unwrap().persistent_state, O);
}

#[test]
fn a_non_fatal_error_clears_on_reboot_and_a_fatal_one_does_not() {
    let f = Fixture::new();
    {
        let m = f.open();
        master(&mut client(&m));
    }
    // A failing power-up self-test: Current State only.
    {
        let m = f.open_with(&Opts {
            faults: Some(Faults::of(&[TestName::Sha256])),
            ..Opts::default()
        });
        let mut c = client(&m);
        let s = status(&mut c);
        assert_eq!((s.current_state, s.persistent_state), (E, O));
    }
    let (m, mut c, cur, per) = reboot(&f);
    assert_eq!((cur, per), (O, O));
    // Zeroize: fatal, survives reboots until Reset.
    c.logon("so", &pw("so")).unwrap();
    ok(&mut c, Request::Zeroize);
    drop((m, c));
    let (m, mut c, cur, per) = reboot(&f);
    assert_eq!((cur, per), (E, E));
    assert!(!status(&mut c).keys.audit_key);
    assert_eq!(
        c.run(&Request::QueryCurrentRole).unwrap(),
        Response::Role(Role::NoRole)
    );
    ok(&mut c, Request::Reset);
    drop((m, c));
    let (_m, _c, cur, per) = reboot(&f);
    assert_eq!((cur, per), (U, U));
}

#[test]
fn an_unreadable_nvm_boots_to_error_and_get_status_still_answers() {
    let f = Fixture::new();
    {
        let m = f.open();
        master(&mut client(&m));
    }
    let path = nvm_path(&f);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let m = f.open();
    let mut c = client(&m);
    // Seed 002: in Error state every command but Get Status returns an error;
    // Get Status itself answers, and says why.
    let s = status(&mut c);
    assert_eq!(s.current_state, E);
    assert!(s.error.unwrap().contains("does not unseal"));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the module never repairs the file"
    );
    // Reset replaces it.
    ok(&mut c, Request::Reset);
    drop((m, c));
    let (_m, _c, cur, per) = reboot(&f);
    assert_eq!((cur, per), (U, U));
}
