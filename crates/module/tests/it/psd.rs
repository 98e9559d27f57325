//! PSD packages: Initialize PSD, Retrieve PSD Public Key, the sealed
//! package's integrity, MKS binding, and the PSD state table.
use postvault_module::error::ModuleError;
use postvault_module::protocol::PsdPublicKey;
use postvault_module::psd::{
    DEFAULT_MAX_DESCENDING_MILLS, DeviceId, PSD_RULES, PsdCommandKind, PsdState, SealedPackage,
    psd_allowed,
};
use postvault_module::{ModuleClient, Request, Response};

use crate::common::*;
use crate::psd_lifecycle::nvm_without_audit_of;

const DEVICE: DeviceId = DeviceId {
    vendor: 42,
    model: 1,
    serial: 17,
};

fn init_psd(c: &mut ModuleClient, device: DeviceId) -> (SealedPackage, Vec<u8>) {
    match ok(c, Request::InitializePsd { device }) {
        Response::PsdInitialized {
            package,
            public_key,
            device_id,
        } => {
            assert_eq!(device_id, device.to_string());
            assert_eq!(package.device_id, device_id);
            assert_eq!(public_key.len(), 65);
            (package, public_key)
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn retrieve(c: &mut ModuleClient, package: &SealedPackage) -> Result<PsdPublicKey, ModuleError> {
    match c.run(&Request::RetrievePsdPublicKey {
        package: package.clone(),
        checkpoint: None,
    }) {
        Ok(Response::PsdPublicKey(p)) => Ok(p),
        Ok(other) => panic!("unexpected {other:?}"),
        Err(postvault_module::ClientError::Module(e)) => Err(e),
        Err(e) => panic!("no module reply: {e}"),
    }
}

#[test]
fn device_id_displays_as_vendor_model_serial() {
    assert_eq!(DEVICE.to_string(), "0042-0001-00000017");
    assert_eq!("0042-0001-00000017".parse::<DeviceId>().unwrap(), DEVICE);
    // The human form is the indicium crate's: decimal, leading zeros optional.
    assert_eq!("42-1-17".parse::<DeviceId>().unwrap(), DEVICE);
    assert!("0042-0001".parse::<DeviceId>().is_err());
    assert!("0042-0001-0000001x".parse::<DeviceId>().is_err());
    assert_eq!(DEFAULT_MAX_DESCENDING_MILLS, 500_000);
}

#[test]
fn initialize_psd_returns_a_package_that_retrieve_public_key_opens() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    // No logon needed (seed 002: preparing a PSD needs no authentication).
    let (package, public_key) = init_psd(&mut c, DEVICE);
    let got = retrieve(&mut c, &package).unwrap();
    assert_eq!(
        got,
        PsdPublicKey {
            device_id: "0042-0001-00000017".into(),
            state: PsdState::Raw,
            public_key: public_key.clone(),
            certificate_serial: None,
        }
    );
    // The JSON form (for the store) round-trips.
    let json = serde_json::to_string(&package).unwrap();
    assert!(json.contains(&hex::encode(package.mks_id)), "{json}");
    assert_eq!(
        serde_json::from_str::<SealedPackage>(&json).unwrap(),
        package
    );

    // Initialize PSD is audited with the device and the key's fingerprint.
    let log = audit_log(&f);
    let e = log
        .iter()
        .find(|e| e.command == "InitializePsd")
        .expect("an InitializePsd entry");
    assert_eq!(e.reason, "ok");
    assert_eq!(e.data["device"], "0042-0001-00000017");
    assert_eq!(
        e.data["public_key_kcv"],
        postvault_module::keys::key_check_value(&public_key)
    );
}

#[test]
fn packages_are_opaque_and_fresh_keys_each_time() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let (a, ka) = init_psd(&mut c, DEVICE);
    let (b, kb) = init_psd(&mut c, DEVICE);
    assert_ne!(a.sealed, b.sealed);
    assert_ne!(ka, kb, "every Initialize PSD generates a new key pair");
    // The public key does not appear in the sealed bytes.
    assert!(!a.sealed.windows(ka.len()).any(|w| w == ka.as_slice()));
}

#[test]
fn invalid_device_ids_are_refused_and_audited() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    for device in [
        DeviceId {
            vendor: 0,
            model: 1,
            serial: 1,
        },
        DeviceId {
            vendor: 1,
            model: 1,
            serial: 0,
        },
    ] {
        let reply = c.call(&Request::InitializePsd { device }).unwrap();
        assert!(
            matches!(reply.result, Err(ModuleError::Invalid(_))),
            "{reply:?}"
        );
        assert_eq!(reply.audit.unwrap().reason, "invalid");
    }
}

#[test]
fn a_tampered_package_is_refused_and_changes_nothing() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let (package, _) = init_psd(&mut c, DEVICE);
    let other = DeviceId {
        serial: 0x18,
        ..DEVICE
    };
    let (other_package, _) = init_psd(&mut c, other);
    let nvm = nvm_without_audit_of(&f);
    let log_len = audit_log(&f).len();

    let mut bad = Vec::new();
    for i in 0..package.sealed.len() {
        let mut p = package.clone();
        p.sealed[i] ^= 0x01;
        bad.push((format!("flipped byte {i}"), p));
    }
    let mut p = package.clone();
    p.device_id = other.to_string();
    bad.push(("header names another device".into(), p));
    let mut p = other_package.clone();
    p.device_id = DEVICE.to_string();
    bad.push(("another device's package under this header".into(), p));
    let mut p = package.clone();
    p.mks_id[0] ^= 1;
    bad.push(("changed MKS id".into(), p));
    let mut p = package.clone();
    p.mks_generation += 1;
    bad.push(("changed MKS generation".into(), p));
    let mut p = package.clone();
    p.version = 2;
    bad.push(("changed version".into(), p));
    let mut p = package.clone();
    p.sealed.truncate(10);
    bad.push(("truncated".into(), p));

    let refusals = bad.len();
    for (what, p) in bad {
        match retrieve(&mut c, &p) {
            Err(ModuleError::Rejected(msg)) => {
                assert!(msg.contains("PSD package for"), "{what}: {msg}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(
        nvm_without_audit_of(&f),
        nvm,
        "a refusal changed the NVM beyond its audit entry"
    );
    // Each refusal has its audit entry (issue 3: every command is audited).
    let log = audit_log(&f);
    assert_eq!(log.len(), log_len + refusals, "one entry per refusal");
    if let Some(e) = log[log_len..]
        .iter()
        .find(|e| e.command != "RetrievePsdPublicKey" || e.reason != "rejected")
    {
        panic!("not a Retrieve PSD Public Key refusal: {e:?}");
    }
    // The genuine package still opens.
    assert_eq!(retrieve(&mut c, &package).unwrap().state, PsdState::Raw);
}

#[test]
fn a_package_made_on_the_master_opens_on_a_clone() {
    let (mf, cf) = master_and_clone();
    let (m, cl) = (mf.open(), cf.open());
    let (mut mc, mut cc) = (client(&m), client(&cl));
    let (package, public_key) = init_psd(&mut mc, DEVICE);
    let got = retrieve(&mut cc, &package).unwrap();
    assert_eq!(got.public_key, public_key);
    assert_eq!(got.device_id, DEVICE.to_string());
    // And the other way round.
    let (package, public_key) = init_psd(&mut cc, DEVICE);
    assert_eq!(retrieve(&mut mc, &package).unwrap().public_key, public_key);
}

#[test]
fn a_package_of_another_deployment_is_refused() {
    let (f1, f2) = (Fixture::new(), Fixture::new());
    let (m1, m2) = (f1.open(), f2.open());
    let (mut c1, mut c2) = (client(&m1), client(&m2));
    master(&mut c1);
    master(&mut c2);
    let (package, _) = init_psd(&mut c1, DEVICE);
    assert!(matches!(
        retrieve(&mut c2, &package),
        Err(ModuleError::Rejected(_))
    ));
}

#[test]
fn a_package_under_the_previous_mks_is_refused_until_translated_then_works() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let (package, public_key) = init_psd(&mut c, DEVICE);
    // Rollover: a new MKS is generated (dormant) and activated; the old one is dormant now.
    as_user(&mut c, "so", |c| {
        ok(c, Request::GenerateMks);
        ok(c, Request::ActivateMks);
    });
    let nvm = nvm_without_audit_of(&f);
    let log_len = audit_log(&f).len();
    match retrieve(&mut c, &package) {
        Err(ModuleError::KeyState(msg)) => {
            assert!(msg.contains("previous MKS"), "{msg}");
            assert!(msg.contains("translate"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(nvm_without_audit_of(&f), nvm);
    let log = audit_log(&f);
    assert_eq!(log.len(), log_len + 1, "the refusal has its audit entry");
    assert_eq!(log[log_len].reason, "key-state");
    // Translate Package re-seals it under the new MKS: same PSD, same key.
    let before = match ok(
        &mut c,
        Request::TranslatePackage {
            package: package.clone(),
        },
    ) {
        Response::PsdTranslated { package: p } => p,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(before.mks_generation, 2);
    assert_eq!(before.device_id, package.device_id);
    let translated = retrieve(&mut c, &before).expect("the translated package opens");
    assert_eq!(translated.public_key, public_key);
    // Translating it again is refused: it is under the active MKS already.
    assert!(matches!(
        run_err(&mut c, Request::TranslatePackage { package: before.clone() }),
        ModuleError::Invalid(m) if m.contains("already sealed under the active MKS")
    ));
    // A package made now is under the new MKS and opens.
    let (fresh, _) = init_psd(&mut c, DEVICE);
    assert_eq!(fresh.mks_generation, 2);
    assert!(retrieve(&mut c, &fresh).is_ok());
    // Once the previous MKS is deleted, the old package is simply not ours.
    as_user(&mut c, "so", |c| ok(c, Request::DeleteDormantMks));
    assert!(matches!(
        retrieve(&mut c, &package),
        Err(ModuleError::Rejected(_))
    ));
    // The translated one still works.
    assert_eq!(retrieve(&mut c, &before).unwrap().public_key, public_key);
}

/// The PSD state table, written by hand from seed 002 (see `psd::PSD_RULES`
/// for the source of every row). Columns: Raw | Unleased | Assigned | Leased
/// | PasswordReset | Withdrawn; `x` allowed, `-` not.
const EXPECTED_PSD: &str = "
InitializePsd            | - | - | - | - | - | -
AuthorizePsd             | x | - | - | - | - | -
ConfigurePsd             | - | x | - | - | - | -
AuthorizeCustomer        | - | - | x | - | - | -
DownloadPostageValue     | - | - | - | x | x | -
CreateIndicium           | - | - | - | x | - | -
CreateCorrectionIndicium | - | - | - | x | - | -
CreateRefundIndicium     | - | - | - | x | x | -
BeginPasswordReset       | - | - | - | x | - | -
CompletePasswordReset    | - | - | - | - | x | -
RetrievePsdStatus        | x | x | x | x | x | x
RetrievePsdPublicKey     | x | x | x | x | x | x
AddPsdUser               | - | - | - | x | - | -
DeletePsdUser            | - | - | - | x | - | -
ModifyPsdUser            | - | - | - | x | - | -
ListPsdUsers             | - | - | - | x | - | -
UserLogon                | - | - | - | x | - | -
";

#[test]
fn psd_table_agrees_with_the_expected_grid() {
    let mut rows = 0;
    let mut differences = Vec::new();
    for line in EXPECTED_PSD
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 7, "{line:?}");
        let kind = PsdCommandKind::ALL
            .into_iter()
            .find(|k| format!("{k:?}") == cells[0])
            .unwrap_or_else(|| panic!("unknown PSD command {:?}", cells[0]));
        rows += 1;
        for (state, cell) in PsdState::ALL.into_iter().zip(&cells[1..]) {
            let want = match *cell {
                "x" => true,
                "-" => false,
                other => panic!("bad cell {other:?}"),
            };
            if psd_allowed(kind, state) != want {
                differences.push(format!("{kind:?} in {state}: expected {want}"));
            }
        }
    }
    assert_eq!(
        rows,
        PsdCommandKind::ALL.len(),
        "a row for every PSD command"
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    // Every command has exactly one rule.
    for kind in PsdCommandKind::ALL {
        assert_eq!(
            PSD_RULES.iter().filter(|(k, _)| *k == kind).count(),
            1,
            "{kind:?}"
        );
    }
    // Withdrawn: nothing but the retrieves (seed 002).
    let open: Vec<_> = PsdCommandKind::ALL
        .into_iter()
        .filter(|k| psd_allowed(*k, PsdState::Withdrawn))
        .collect();
    assert_eq!(
        open,
        [
            PsdCommandKind::RetrievePsdStatus,
            PsdCommandKind::RetrievePsdPublicKey
        ]
    );
}

#[test]
fn psd_commands_need_an_operational_module() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    initialize(&mut c);
    match c.run(&Request::InitializePsd { device: DEVICE }) {
        Err(postvault_module::ClientError::Module(ModuleError::Denied { .. })) => {}
        other => panic!("{other:?}"),
    }
}
