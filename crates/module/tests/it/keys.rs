//! Key management end to end: cloning a master's MKS by n-of-m shares, the
//! share checks, key tokens and their binding, MKS rollover, and the
//! crypto-card keys shared between modules.
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use postvault_module::keys::{KeyToken, KeyType, KeyUsage};
use postvault_module::protocol::{
    CryptoCardKeys, CryptoCardOutput, EncryptedShare, MksInfo, MksSlot, TokenCheck,
};
use postvault_module::{Module, ModuleClient, ModuleError, ModuleState, Request, Response};

use crate::common::*;

/// One logged-on session per user on one module (users stay logged on, so a
/// ceremony does not pay a logon per command).
struct Ops {
    module: Arc<Mutex<Module>>,
    sessions: HashMap<String, ModuleClient>,
}

impl Ops {
    fn new(module: &Arc<Mutex<Module>>) -> Self {
        Self {
            module: module.clone(),
            sessions: HashMap::new(),
        }
    }

    fn session(&mut self, user: &str) -> &mut ModuleClient {
        let module = &self.module;
        self.sessions.entry(user.to_string()).or_insert_with(|| {
            let mut c = client(module);
            c.logon(user, &pw(user))
                .unwrap_or_else(|e| panic!("logon {user}: {e}"));
            c
        })
    }

    #[track_caller]
    fn run(&mut self, user: &str, req: Request) -> Response {
        ok(self.session(user), req)
    }

    #[track_caller]
    fn err(&mut self, user: &str, req: Request) -> ModuleError {
        run_err(self.session(user), req)
    }

    fn status(&mut self) -> postvault_module::protocol::Status {
        status(self.session("so"))
    }
}

/// A module with its fixture kept alive.
struct Node {
    f: Fixture,
    ops: Ops,
}

/// A master: initialized, MKS generation 1, Operational.
fn new_master() -> Node {
    let f = Fixture::new();
    let m = f.open();
    master(&mut client(&m));
    Node {
        ops: Ops::new(&m),
        f,
    }
}

/// A clone in Importing Shares, and its transport public key.
fn new_clone() -> (Node, Vec<u8>) {
    let f = Fixture::new();
    let m = f.open();
    initialize(&mut client(&m));
    let mut ops = Ops::new(&m);
    let Response::TransportKey(tk) = ops.run("so", Request::GenerateTransportKey) else {
        panic!("no transport key");
    };
    assert_eq!(tk.len(), 32);
    assert_eq!(ops.status().current_state, ModuleState::ImportingShares);
    (Node { f, ops }, tk)
}

fn active(n: &mut Node) -> MksInfo {
    n.ops.status().keys.active_mks.expect("an active MKS")
}

/// The Security Officer creates `count` shares (threshold `threshold`) of
/// `slot`; kc1..kc{count} export one each to `tk`.
fn export_to(
    n: &mut Node,
    tk: &[u8],
    count: u8,
    threshold: u8,
    slot: MksSlot,
    exportable: bool,
) -> Vec<EncryptedShare> {
    assert_eq!(
        n.ops.run(
            "so",
            Request::CreateMksShares {
                count,
                threshold,
                slot,
            }
        ),
        Response::SharesCreated { count, threshold }
    );
    assert_eq!(n.ops.status().current_state, ModuleState::ExportingShares);
    let shares: Vec<EncryptedShare> = (1..=count)
        .map(|i| {
            match n.ops.run(
                &format!("kc{i}"),
                Request::ExportShare {
                    transport_public_key: tk.to_vec(),
                    exportable,
                },
            ) {
                Response::Share { share, remaining } => {
                    assert_eq!(remaining, count - i);
                    assert_eq!(
                        (share.index, share.count, share.threshold),
                        (i, count, threshold)
                    );
                    share
                }
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect();
    let s = n.ops.status();
    assert_eq!(
        (s.current_state, s.persistent_state),
        (ModuleState::Operational, ModuleState::Operational)
    );
    shares
}

fn import(n: &mut Node, kc: &str, share: &EncryptedShare) -> Result<Response, ModuleError> {
    match n.ops.session(kc).run(&Request::ImportShare {
        share: share.clone(),
    }) {
        Ok(r) => Ok(r),
        Err(postvault_module::ClientError::Module(e)) => Err(e),
        Err(e) => panic!("import by {kc}: {e}"),
    }
}

#[track_caller]
fn rejected(e: ModuleError) -> String {
    match e {
        ModuleError::Rejected(why) => why,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

fn token(n: &mut Node, key_type: KeyType, identity: &str) -> (KeyToken, TokenCheck) {
    match n.ops.run(
        "so",
        Request::CreateKeyToken {
            key_type,
            usage: KeyUsage::General,
            identity: identity.into(),
            exportable: true,
            expires: None,
        },
    ) {
        Response::Token { token, check } => (token, check),
        other => panic!("unexpected {other:?}"),
    }
}

fn check(n: &mut Node, t: &KeyToken) -> Result<TokenCheck, ModuleError> {
    match n
        .ops
        .session("so")
        .run(&Request::CheckKeyToken { token: t.clone() })
    {
        Ok(Response::TokenCheck(c)) => Ok(c),
        Ok(other) => panic!("unexpected {other:?}"),
        Err(postvault_module::ClientError::Module(e)) => Err(e),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_clone_gets_the_masters_mks_from_three_of_five_shares() {
    let mut m = new_master();
    let (mut c, tk) = new_clone();
    let shares = export_to(&mut m, &tk, 5, 3, MksSlot::Active, true);
    let mks = active(&mut m);
    let indices: BTreeSet<u8> = shares.iter().map(|s| s.index).collect();
    assert_eq!(indices, (1..=5).collect());
    for s in &shares {
        assert_eq!((s.mks_id.as_str(), s.generation), (mks.id.as_str(), 1));
    }
    // Three distinct custodians enter shares 1, 3 and 5.
    for (k, (kc, i)) in [("kc1", 0), ("kc2", 2), ("kc3", 4)].into_iter().enumerate() {
        assert_eq!(
            import(&mut c, kc, &shares[i]).unwrap(),
            Response::ShareImported {
                held: k as u8 + 1,
                threshold: 3
            }
        );
    }
    let combined = match c.ops.run("so", Request::CombineShares) {
        Response::Mks(info) => info,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(combined, mks);
    let s = c.ops.status();
    assert_eq!(s.keys.active_mks, Some(mks));
    assert_eq!(
        (s.current_state, s.persistent_state),
        (ModuleState::Operational, ModuleState::Operational)
    );

    // A token made on the master opens on the clone with the same key, for every key type.
    for (i, ty) in [
        KeyType::Aes256,
        KeyType::HmacSha256,
        KeyType::EcdsaP256,
        KeyType::HpkeX25519,
    ]
    .into_iter()
    .enumerate()
    {
        let (t, on_master) = token(&mut m, ty, &format!("psd/{i}"));
        assert_eq!(check(&mut m, &t).unwrap(), on_master);
        let on_clone = check(&mut c, &t).unwrap();
        assert_eq!(on_clone, on_master);
        assert_eq!(on_clone.kcv.len(), 16);
    }
    // And the other way round.
    let (t, on_clone) = token(&mut c, KeyType::Aes256, "made-on-clone");
    assert_eq!(check(&mut m, &t).unwrap().kcv, on_clone.kcv);
    // The clone survives a restart with the MKS.
    drop(c.ops);
    let m2 = c.f.open();
    let s = status(&mut client(&m2));
    assert_eq!(s.current_state, ModuleState::Operational);
    assert_eq!(s.keys.active_mks.map(|k| k.id), Some(active(&mut m).id));
}

fn subsets(n: u8, k: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for mask in 0u32..(1 << n) {
        if mask.count_ones() as usize == k {
            out.push((1..=n).filter(|i| mask & (1 << (i - 1)) != 0).collect());
        }
    }
    out
}

/// For 2 <= t <= n <= 5: every t-subset of the shares combines on a fresh
/// clone, and every (t-1)-subset is refused by Combine Shares before it
/// combines. Each clone imports a (t-1)-subset, is refused, imports one more
/// share and combines; the plans cover every (t-1)-subset and every t-subset.
#[test]
fn any_threshold_subset_combines_and_fewer_are_refused() {
    let mut m = new_master();
    let mks = active(&mut m);
    let mut clones = 0;
    for n in 2u8..=5 {
        for t in 2u8..=n {
            let mut plans: Vec<(Vec<u8>, u8)> = Vec::new();
            let mut covered: BTreeSet<Vec<u8>> = BTreeSet::new();
            let with = |q: &[u8], x: u8| {
                let mut s = q.to_vec();
                s.push(x);
                s.sort();
                s
            };
            for q in subsets(n, usize::from(t - 1)) {
                let outside: Vec<u8> = (1..=n).filter(|x| !q.contains(x)).collect();
                let x = *outside
                    .iter()
                    .find(|&&x| !covered.contains(&with(&q, x)))
                    .unwrap_or(&outside[0]);
                covered.insert(with(&q, x));
                plans.push((q, x));
            }
            for s in subsets(n, usize::from(t)) {
                if !covered.contains(&s) {
                    let (last, first) = s.split_last().unwrap();
                    covered.insert(s.clone());
                    plans.push((first.to_vec(), *last));
                }
            }
            assert_eq!(covered.len(), subsets(n, usize::from(t)).len());
            for (prefix, last) in plans {
                clones += 1;
                let (mut c, tk) = new_clone();
                let shares = export_to(&mut m, &tk, n, t, MksSlot::Active, true);
                let mut kcs = (1..=n).map(|i| format!("kc{i}"));
                for i in &prefix {
                    import(&mut c, &kcs.next().unwrap(), &shares[usize::from(*i) - 1]).unwrap();
                }
                match c.ops.err("so", Request::CombineShares) {
                    ModuleError::Invalid(why) => assert!(
                        why.contains(&format!("only {} of the {t} shares", t - 1)),
                        "{n}/{t} {prefix:?}: {why}"
                    ),
                    other => panic!("{n}/{t} {prefix:?}: {other:?}"),
                }
                assert_eq!(c.ops.status().current_state, ModuleState::ImportingShares);
                import(&mut c, &kcs.next().unwrap(), &shares[usize::from(last) - 1]).unwrap();
                assert_eq!(
                    c.ops.run("so", Request::CombineShares),
                    Response::Mks(mks.clone()),
                    "{n}/{t}: {prefix:?} + {last}"
                );
            }
        }
    }
    assert_eq!(clones, 59);
}

#[test]
fn tampered_foreign_mixed_and_repeated_shares_are_rejected() {
    let mut m = new_master();
    let mut other_master = new_master();
    let (mut c, tk) = new_clone();
    let (_other_clone, other_tk) = new_clone();
    let shares = export_to(&mut m, &tk, 3, 2, MksSlot::Active, true);
    let foreign = export_to(&mut m, &other_tk, 3, 2, MksSlot::Active, true);
    let mixed = export_to(&mut other_master, &tk, 3, 2, MksSlot::Active, true);
    let (mks, other_mks) = (active(&mut m).id, active(&mut other_master).id);
    assert_ne!(mks, other_mks);

    // Altered ciphertext or encapsulated key: rejected, naming the share.
    let good = &shares[0];
    let mut altered: Vec<(&str, EncryptedShare)> = Vec::new();
    for pos in [0, good.ciphertext.len() / 2, good.ciphertext.len() - 1] {
        let mut s = good.clone();
        s.ciphertext[pos] ^= 1;
        altered.push(("ciphertext", s));
    }
    for pos in [0, good.enc.len() - 1] {
        let mut s = good.clone();
        s.enc[pos] ^= 1;
        altered.push(("enc", s));
    }
    let mut s = good.clone();
    s.ciphertext.pop();
    altered.push(("truncated ciphertext", s));
    // Altered header fields are bound as associated data.
    let mut s = good.clone();
    s.exportable = false;
    altered.push(("exportable", s));
    let mut s = good.clone();
    s.threshold = 3;
    altered.push(("threshold", s));
    let mut s = good.clone();
    s.count = 4;
    altered.push(("count", s));
    let mut s = good.clone();
    s.generation = 2;
    altered.push(("generation", s));
    let mut s = good.clone();
    s.mks_id = other_mks.clone();
    altered.push(("mks_id", s));
    let mut s = good.clone();
    s.source_module = "00".repeat(16);
    altered.push(("source_module", s));
    for (what, bad) in &altered {
        let why = rejected(import(&mut c, "kc1", bad).unwrap_err());
        assert!(why.contains("share 1"), "{what}: {why}");
    }
    // A relabelled index is rejected under the index it claims.
    let mut s = good.clone();
    s.index = 2;
    let why = rejected(import(&mut c, "kc1", &s).unwrap_err());
    assert!(why.contains("share 2"), "{why}");
    let mut s = good.clone();
    s.version = 2;
    assert!(rejected(import(&mut c, "kc1", &s).unwrap_err()).contains("version"));

    // A share encrypted for another module's transport key.
    let why = rejected(import(&mut c, "kc1", &foreign[0]).unwrap_err());
    assert!(why.contains("foreign"), "{why}");
    // Relabelled with our transport key hash, it still does not open.
    let mut s = foreign[0].clone();
    s.transport_key_hash = good.transport_key_hash.clone();
    let why = rejected(import(&mut c, "kc1", &s).unwrap_err());
    assert!(
        why.contains("share 1") && why.contains("authentication"),
        "{why}"
    );

    // Nothing above counted: kc1 enters the genuine share 1.
    assert_eq!(
        import(&mut c, "kc1", good).unwrap(),
        Response::ShareImported {
            held: 1,
            threshold: 2
        }
    );
    // A share of another MKS, even for our transport key: rejected, naming both.
    let why = rejected(import(&mut c, "kc2", &mixed[1]).unwrap_err());
    assert!(why.contains(&mks) && why.contains(&other_mks), "{why}");
    // The same index again, by another custodian.
    let why = rejected(import(&mut c, "kc2", good).unwrap_err());
    assert!(why.contains("share 1 has already been imported"), "{why}");
    // The same custodian again, with another share.
    match import(&mut c, "kc1", &shares[1]).unwrap_err() {
        ModuleError::Invalid(why) => assert!(why.contains("kc1 has already imported"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.ops.status().current_state, ModuleState::ImportingShares);
    // The genuine second share completes the set.
    assert_eq!(
        import(&mut c, "kc2", &shares[2]).unwrap(),
        Response::ShareImported {
            held: 2,
            threshold: 2
        }
    );
    assert!(matches!(
        c.ops.run("so", Request::CombineShares),
        Response::Mks(info) if info.id == mks
    ));
}

#[test]
fn export_rules_and_abort() {
    let mut m = new_master();
    let (_c1, tk1) = new_clone();
    let (_c2, tk2) = new_clone();
    let create = |count, threshold| Request::CreateMksShares {
        count,
        threshold,
        slot: MksSlot::Active,
    };
    let export = |tk: &[u8], exportable| Request::ExportShare {
        transport_public_key: tk.to_vec(),
        exportable,
    };
    // Impossible parameters are refused and leave the module Operational.
    for (n, t) in [(6, 2), (3, 1), (2, 3), (1, 1), (0, 0)] {
        assert!(
            matches!(m.ops.err("so", create(n, t)), ModuleError::Invalid(_)),
            "{t} of {n}"
        );
    }
    assert_eq!(m.ops.status().current_state, ModuleState::Operational);
    // No dormant MKS to share.
    assert!(matches!(
        m.ops.err(
            "so",
            Request::CreateMksShares {
                count: 2,
                threshold: 2,
                slot: MksSlot::Dormant
            }
        ),
        ModuleError::KeyState(_)
    ));

    m.ops.run("so", create(3, 2));
    assert!(matches!(
        m.ops.run("kc1", export(&tk1, true)),
        Response::Share { remaining: 2, .. }
    ));
    // The same custodian cannot take a second share.
    let e = m.ops.err("kc1", export(&tk1, true));
    assert!(
        matches!(&e, ModuleError::Invalid(w) if w.contains("already exported")),
        "{e:?}"
    );
    // All shares go to one destination, with one exportable flag.
    let e = m.ops.err("kc2", export(&tk2, true));
    assert!(
        matches!(&e, ModuleError::Invalid(w) if w.contains("same destination")),
        "{e:?}"
    );
    let e = m.ops.err("kc2", export(&tk1, false));
    assert!(
        matches!(&e, ModuleError::Invalid(w) if w.contains("exportable")),
        "{e:?}"
    );
    let e = m.ops.err("kc2", export(&tk1[..31], true));
    assert!(
        matches!(&e, ModuleError::Invalid(w) if w.contains("32 bytes")),
        "{e:?}"
    );
    // Only key custodians export; other commands wait.
    assert!(matches!(
        m.ops.err("so", export(&tk1, true)),
        ModuleError::Denied { .. }
    ));
    assert!(matches!(
        m.ops.err("so", Request::GenerateMks),
        ModuleError::Denied { .. }
    ));
    let s = m.ops.status();
    assert_eq!(
        (s.current_state, s.persistent_state),
        (ModuleState::ExportingShares, ModuleState::ExportingShares)
    );

    // Abort returns to Operational (current and persistent); the job is gone.
    assert_eq!(m.ops.run("so", Request::AbortExport), Response::Done);
    let s = m.ops.status();
    assert_eq!(
        (s.current_state, s.persistent_state),
        (ModuleState::Operational, ModuleState::Operational)
    );
    assert!(matches!(
        m.ops.err("kc2", export(&tk1, true)),
        ModuleError::Denied { .. }
    ));
    // A new export starts from scratch: kc1 may export again, to another destination.
    m.ops.run("so", create(2, 2));
    assert!(matches!(
        m.ops.run("kc1", export(&tk2, false)),
        Response::Share { remaining: 1, .. }
    ));
    m.ops.run("so", Request::AbortExport);
    assert_eq!(m.ops.status().current_state, ModuleState::Operational);
}

#[test]
fn a_retained_mks_cannot_be_exported_again_and_the_refusal_is_audited() {
    let mut m = new_master();
    let (mut c, tk) = new_clone();
    let shares = export_to(&mut m, &tk, 2, 2, MksSlot::Active, false);
    assert!(shares.iter().all(|s| !s.exportable));
    import(&mut c, "kc1", &shares[0]).unwrap();
    import(&mut c, "kc2", &shares[1]).unwrap();
    let info = match c.ops.run("so", Request::CombineShares) {
        Response::Mks(info) => info,
        other => panic!("unexpected {other:?}"),
    };
    assert!(!info.exportable);
    assert_eq!(info.id, active(&mut m).id);

    let reply = c
        .ops
        .session("so")
        .call(&Request::CreateMksShares {
            count: 2,
            threshold: 2,
            slot: MksSlot::Active,
        })
        .unwrap();
    match &reply.result {
        Err(ModuleError::KeyState(why)) => assert!(why.contains("retained"), "{why}"),
        other => panic!("a retained MKS must not be shared again: {other:?}"),
    }
    let entry = reply.audit.expect("the refusal is audited");
    assert_eq!(entry.command, "CreateMksShares");
    assert_eq!(entry.reason, "key-state");
    assert_eq!(entry.user_id.as_deref(), Some("so"));
    assert!(entry.data["error"].contains("retained"));
    assert_eq!(audit_log(&c.f).last(), Some(&entry));
    let s = c.ops.status();
    assert_eq!(
        (s.current_state, s.persistent_state),
        (ModuleState::Operational, ModuleState::Operational)
    );
}

#[test]
fn a_tampered_or_expired_token_never_opens() {
    let mut m = new_master();
    let now = status(m.ops.session("so")).time;
    let (t, original) = match m.ops.run(
        "so",
        Request::CreateKeyToken {
            key_type: KeyType::EcdsaP256,
            usage: KeyUsage::IndiciumSigning,
            identity: "psd/42".into(),
            exportable: false,
            expires: Some(now + 1000),
        },
    ) {
        Response::Token { token, check } => (token, check),
        other => panic!("unexpected {other:?}"),
    };
    assert!(original.public_key.is_some());
    let variants: Vec<(&str, KeyToken)> = vec![
        ("sealed[0]", {
            let mut x = t.clone();
            x.sealed[0] ^= 1;
            x
        }),
        ("sealed[mid]", {
            let mut x = t.clone();
            let mid = x.sealed.len() / 2;
            x.sealed[mid] ^= 1;
            x
        }),
        ("sealed[last]", {
            let mut x = t.clone();
            *x.sealed.last_mut().unwrap() ^= 1;
            x
        }),
        ("sealed truncated", {
            let mut x = t.clone();
            x.sealed.pop();
            x
        }),
        ("identity", {
            let mut x = t.clone();
            x.identity = "psd/43".into();
            x
        }),
        ("usage", {
            let mut x = t.clone();
            x.usage = KeyUsage::RegistrationSigning;
            x
        }),
        ("key_type", {
            let mut x = t.clone();
            x.key_type = KeyType::HpkeX25519;
            x
        }),
        ("exportable", {
            let mut x = t.clone();
            x.exportable = true;
            x
        }),
        ("expires later", {
            let mut x = t.clone();
            x.expires = Some(now + 1_000_000);
            x
        }),
        ("expires removed", {
            let mut x = t.clone();
            x.expires = None;
            x
        }),
        ("mks_generation", {
            let mut x = t.clone();
            x.mks_generation = 2;
            x
        }),
        ("mks_id", {
            let mut x = t.clone();
            x.mks_id[0] ^= 1;
            x
        }),
        ("version", {
            let mut x = t.clone();
            x.version = 2;
            x
        }),
    ];
    for (what, bad) in &variants {
        match check(&mut m, bad) {
            Err(ModuleError::Rejected(_) | ModuleError::KeyState(_)) => {}
            other => panic!("token with altered {what} must not open: {other:?}"),
        }
    }
    // The untouched token opens (no tampering attempt changed anything).
    assert_eq!(check(&mut m, &t).unwrap(), original);
    // Moved to JSON and back, it still opens.
    assert_eq!(KeyToken::from_json(&t.to_json()).unwrap(), t);

    // At its expiry it stops opening (the clock moves in steps shorter than
    // the logon time-out, so the Security Officer stays logged on).
    m.f.clock.advance(500);
    assert_eq!(check(&mut m, &t).unwrap(), original);
    m.f.clock.advance(499);
    assert_eq!(check(&mut m, &t).unwrap(), original);
    m.f.clock.advance(1);
    let why = rejected(check(&mut m, &t).unwrap_err());
    assert!(why.contains("expired"), "{why}");
}

#[test]
fn rollover_from_one_mks_generation_to_the_next() {
    let (mf, cf) = master_and_clone();
    let mut m = Node {
        ops: Ops::new(&mf.open()),
        f: mf,
    };
    let mut c = Node {
        ops: Ops::new(&cf.open()),
        f: cf,
    };
    let gen1 = active(&mut m);
    let (t1, c1) = token(&mut m, KeyType::HmacSha256, "record/1");
    assert_eq!(c1.mks_generation, 1);

    // Generate MKS in Operational makes a dormant generation 2; only one at a time.
    let gen2 = match m.ops.run("so", Request::GenerateMks) {
        Response::Mks(info) => info,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(gen2.generation, 2);
    let s = m.ops.status();
    assert_eq!(s.keys.active_mks.as_ref(), Some(&gen1));
    assert_eq!(s.keys.dormant_mks.as_ref(), Some(&gen2));
    assert!(matches!(
        m.ops.err("so", Request::GenerateMks),
        ModuleError::KeyState(w) if w.contains("dormant")
    ));
    // Nothing to translate into before activation.
    assert!(matches!(
        m.ops
            .err("so", Request::TranslateToken { token: t1.clone() }),
        ModuleError::KeyState(_)
    ));

    // The clone receives generation 2 by shares, as its dormant MKS.
    c.ops.run("so", Request::StartImporting);
    let Response::TransportKey(tk) = c.ops.run("so", Request::ExportTransportKey) else {
        panic!()
    };
    let shares = export_to(&mut m, &tk, 2, 2, MksSlot::Dormant, true);
    import(&mut c, "kc1", &shares[0]).unwrap();
    import(&mut c, "kc2", &shares[1]).unwrap();
    assert_eq!(
        c.ops.run("so", Request::CombineShares),
        Response::Mks(gen2.clone())
    );
    assert_eq!(c.ops.status().keys.dormant_mks.as_ref(), Some(&gen2));
    // No other import while a dormant MKS exists.
    assert!(matches!(
        c.ops.err("so", Request::StartImporting),
        ModuleError::KeyState(w) if w.contains("dormant")
    ));

    // Both activate generation 2; generation 1 becomes the dormant one.
    for n in [&mut m, &mut c] {
        assert_eq!(
            n.ops.run("so", Request::ActivateMks),
            Response::Mks(gen2.clone())
        );
        let s = n.ops.status();
        assert_eq!(s.keys.active_mks.as_ref(), Some(&gen2));
        assert_eq!(s.keys.dormant_mks.as_ref(), Some(&gen1));
        assert!(matches!(
            n.ops.err("so", Request::ActivateMks),
            ModuleError::KeyState(_)
        ));
    }
    // Translation keeps the key and re-seals it under generation 2.
    let (t2, c2) = match m
        .ops
        .run("so", Request::TranslateToken { token: t1.clone() })
    {
        Response::Token { token, check } => (token, check),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(c2.kcv, c1.kcv);
    assert_eq!(c2.mks_generation, 2);
    assert_eq!(hex::encode(t2.mks_id), gen2.id);
    assert_eq!(
        (t2.identity.as_str(), t2.usage),
        ("record/1", KeyUsage::General)
    );
    for n in [&mut m, &mut c] {
        assert_eq!(check(n, &t2).unwrap().kcv, c1.kcv);
        // The old token still opens while its MKS is dormant.
        assert_eq!(check(n, &t1).unwrap().kcv, c1.kcv);
    }
    // A token already under the active MKS is not translated again.
    assert!(matches!(
        m.ops
            .err("so", Request::TranslateToken { token: t2.clone() }),
        ModuleError::KeyState(_)
    ));
    // New tokens are generation 2.
    assert_eq!(
        token(&mut m, KeyType::Aes256, "record/2").1.mks_generation,
        2
    );

    // Deleting the dormant MKS retires generation 1 for good.
    for n in [&mut m, &mut c] {
        assert_eq!(n.ops.run("so", Request::DeleteDormantMks), Response::Done);
        assert_eq!(n.ops.status().keys.dormant_mks, None);
        assert!(matches!(check(n, &t1), Err(ModuleError::KeyState(_))));
        assert!(matches!(
            n.ops
                .err("so", Request::TranslateToken { token: t1.clone() }),
            ModuleError::KeyState(_)
        ));
        assert_eq!(check(n, &t2).unwrap().kcv, c1.kcv);
        assert!(matches!(
            n.ops.err("so", Request::DeleteDormantMks),
            ModuleError::KeyState(_)
        ));
    }
    // With the dormant MKS gone, the clone may import again.
    assert_eq!(c.ops.run("so", Request::StartImporting), Response::Done);
    assert_eq!(c.ops.status().current_state, ModuleState::ImportingShares);
}

/// Makes a CA certificate and a leaf certificate it signed (DER) with openssl.
fn certificates(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let openssl = |args: &[&str]| {
        let out = Command::new("/usr/bin/openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run /usr/bin/openssl (install openssl: run scripts/test.sh)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=postvault test CA",
                "-days",
                "30",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    openssl(&["x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der"]);
    openssl(
        &[
            &["req", "-new"][..],
            &ec,
            &[
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=psd 1",
            ],
        ]
        .concat(),
    );
    std::fs::write(dir.join("leaf.ext"), "basicConstraints=critical,CA:FALSE\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-days",
        "30",
        "-extfile",
        "leaf.ext",
        "-outform",
        "DER",
        "-out",
        "leaf.der",
    ]);
    (
        std::fs::read(dir.join("ca.der")).unwrap(),
        std::fs::read(dir.join("leaf.der")).unwrap(),
    )
}

#[test]
fn crypto_card_keys_generated_on_the_master_load_on_the_clone() {
    let (mf, cf) = master_and_clone();
    let certs = tempfile::tempdir().unwrap();
    let (ca, leaf) = certificates(certs.path());
    let mut m = Node {
        ops: Ops::new(&mf.open()),
        f: mf,
    };
    let mut c = Node {
        ops: Ops::new(&cf.open()),
        f: cf,
    };
    let provider = token(&mut m, KeyType::EcdsaP256, "provider")
        .1
        .public_key
        .unwrap();
    let card = |keys, ca: &[u8]| Request::InitializeCryptoCard {
        keys,
        ca_certificate: Some(ca.to_vec()),
        provider_public_key: Some(provider.clone()),
    };

    // A non-CA certificate, garbage, or trailing bytes are refused; nothing is loaded.
    for bad in [
        leaf.clone(),
        b"not a certificate".to_vec(),
        [&ca[..], &[0]].concat(),
    ] {
        match m.ops.err("so", card(CryptoCardKeys::Generate, &bad)) {
            ModuleError::Invalid(_) => {}
            other => panic!("{other:?}"),
        }
    }
    let e = m.ops.err("so", card(CryptoCardKeys::Generate, &leaf));
    assert!(
        matches!(&e, ModuleError::Invalid(w) if w.contains("not a CA")),
        "{e:?}"
    );
    // A provider key that is too short, or 65 bytes but off the curve.
    let mut off_curve = provider.clone();
    off_curve[64] ^= 1;
    for key in [vec![4; 33], off_curve] {
        let mut bad_provider = card(CryptoCardKeys::Generate, &ca);
        if let Request::InitializeCryptoCard {
            provider_public_key,
            ..
        } = &mut bad_provider
        {
            *provider_public_key = Some(key);
        }
        let e = m.ops.err("so", bad_provider);
        assert!(
            matches!(&e, ModuleError::Invalid(w) if w.contains("provider public key")),
            "{e:?}"
        );
    }
    assert!(!m.ops.status().keys.crypto_card);

    let out: CryptoCardOutput = match m.ops.run("so", card(CryptoCardKeys::Generate, &ca)) {
        Response::CryptoCard(out) => *out,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(out.signing_public_key.len(), 65);
    assert_eq!(out.decryption_public_key.len(), 32);
    assert!(m.ops.status().keys.crypto_card);

    // The clone refuses the leaf, wrong or tampered tokens, and loads the genuine ones.
    let load = |signing: &KeyToken, decryption: &KeyToken| CryptoCardKeys::Load {
        signing: signing.clone(),
        decryption: decryption.clone(),
    };
    assert!(matches!(
        c.ops.err(
            "so",
            card(load(&out.signing_token, &out.decryption_token), &leaf)
        ),
        ModuleError::Invalid(_)
    ));
    assert!(matches!(
        c.ops.err(
            "so",
            card(load(&out.decryption_token, &out.signing_token), &ca)
        ),
        ModuleError::Rejected(_)
    ));
    let mut tampered = out.signing_token.clone();
    tampered.sealed[5] ^= 1;
    assert!(matches!(
        c.ops
            .err("so", card(load(&tampered, &out.decryption_token), &ca)),
        ModuleError::Rejected(_)
    ));
    let (general, _) = token(
        &mut m,
        KeyType::EcdsaP256,
        "crypto-card/registration-signing",
    );
    assert!(matches!(
        c.ops
            .err("so", card(load(&general, &out.decryption_token), &ca)),
        ModuleError::Rejected(_)
    ));
    assert!(!c.ops.status().keys.crypto_card);
    let loaded = match c.ops.run(
        "so",
        card(load(&out.signing_token, &out.decryption_token), &ca),
    ) {
        Response::CryptoCard(o) => *o,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(loaded.signing_public_key, out.signing_public_key);
    assert_eq!(loaded.decryption_public_key, out.decryption_public_key);
    assert!(c.ops.status().keys.crypto_card);
    // The audit entries name the same keys and the CA certificate's hash.
    let entry = |f: &Fixture| {
        audit_log(f)
            .into_iter()
            .rev()
            .find(|e| e.command == "InitializeCryptoCard" && e.reason == "ok")
            .unwrap()
    };
    let (em, ec) = (entry(&m.f), entry(&c.f));
    assert_eq!(em.data["mode"], "generate");
    assert_eq!(ec.data["mode"], "load");
    for k in [
        "registration_signing_key",
        "registration_encryption_key",
        "ca_certificate",
    ] {
        assert_eq!(em.data[k], ec.data[k], "{k}");
    }
    assert!(em.signature.is_some() && ec.signature.is_some());
}
