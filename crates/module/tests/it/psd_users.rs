//! Multi-user meters (seed 002, FIG. 8): one PSD, many users, each with
//! their own HMAC key and password. The Customer Administrator adds,
//! deletes, modifies and lists users and grants privileges through MAC'd
//! user requests (the answer MAC'd under the requester's key, on the
//! package's challenge chain); each user has their own account expiry,
//! password expiry, failure count (PSD User Logon, with lock-out) and
//! maximum total postage; every indicium is attributable to its user.
//! Every refusal is checked to change nothing but to add its own audit
//! entry, and the meter goes on afterwards.
use postvault_indicium::Indicium;
use postvault_module::error::ModuleError;
use postvault_module::psd::{
    self, CustomerSecrets, HpkeSealed, IndiciumRequest, Privileges, PsdStatus, PsdUserSettings,
    PsdUserView, UserAnswer, UserLogon, UserOperation, UserRequest,
};
use postvault_module::{Request, Response, Role};
use zeroize::Zeroizing;

use crate::common::*;
use crate::psd_checkpoint::{auto_recover, db, restore};
use crate::psd_indicium::{Client, DATE, DESTINATION};
use crate::psd_lifecycle::{
    DEVICE, HMAC_KEY, OTHER_DEVICE, PASSWORD, USER, ZIP, assert_invalid, assert_rejected, rng,
};

/// A meter user as their client knows them: ID, HMAC key, password.
#[derive(Clone, Copy)]
struct Person {
    id: &'static str,
    key: [u8; 32],
    password: &'static str,
}

/// The meter's first user, its Customer Administrator (every privilege).
const ADMIN: Person = Person {
    id: USER,
    key: HMAC_KEY,
    password: PASSWORD,
};

/// A clerk the administrator adds.
const BOB: Person = Person {
    id: "bob",
    key: [0x6b; 32],
    password: "bob-staple-battery-horse",
};

/// Another user.
const CAROL: Person = Person {
    id: "carol",
    key: [0x7c; 32],
    password: "carol-lamp-correct-staple",
};

/// The module's current time.
fn now(cl: &mut Client) -> i64 {
    status(&mut cl.m.c).time
}

/// `p`'s secrets as their client sends them: HPKE-sealed to the
/// registration key, bound to the meter.
fn secrets_of(cl: &Client, p: &Person) -> HpkeSealed {
    psd::seal_customer_secrets(
        &mut rng(),
        &cl.m.registration,
        &DEVICE,
        &CustomerSecrets {
            user_id: p.id.into(),
            hmac_key: Zeroizing::new(p.key),
            password: Zeroizing::new(p.password.into()),
        },
    )
    .unwrap()
}

/// `who`'s request, on the current challenge, MAC'd under their key.
fn user_request(cl: &Client, who: &Person, operation: UserOperation) -> UserRequest {
    let mut req = UserRequest {
        device_id: DEVICE.to_string(),
        user_id: who.id.into(),
        challenge: cl.challenge,
        operation,
        mac: [0; 32],
    };
    req.mac = psd::user_request_mac(&who.key, &req);
    req
}

fn send_user(cl: &Client, request: UserRequest) -> Request {
    Request::PsdUserCommand {
        package: cl.m.package.clone(),
        checkpoint: cl.m.checkpoint.clone(),
        request,
    }
}

/// Sends a user request that must succeed; checks that the answer names
/// our challenge, gives a new one and is MAC'd under `key` (the
/// requester's); stores the package, checkpoint and challenge.
#[track_caller]
fn answer(cl: &mut Client, key: &[u8; 32], request: UserRequest) -> UserAnswer {
    answer_and_mac(cl, key, request).0
}

/// [`answer`], also returning the answer's MAC.
#[track_caller]
fn answer_and_mac(cl: &mut Client, key: &[u8; 32], request: UserRequest) -> (UserAnswer, [u8; 32]) {
    let req = send_user(cl, request);
    match ok(&mut cl.m.c, req) {
        Response::PsdUserAnswer {
            package,
            checkpoint,
            answer,
            old_challenge,
            new_challenge,
            mac,
        } => {
            cl.m.checkpoint = Some(checkpoint);
            assert_eq!(
                old_challenge, cl.challenge,
                "the answer names our challenge"
            );
            assert_ne!(new_challenge, old_challenge, "the chain moves on");
            assert_eq!(
                mac,
                psd::user_response_mac(key, &answer, &old_challenge, &new_challenge),
                "the answer is MAC'd under the requester's key"
            );
            assert_ne!(
                mac,
                psd::user_response_mac(&[0; 32], &answer, &old_challenge, &new_challenge)
            );
            cl.m.package = package;
            cl.challenge = new_challenge;
            (answer, mac)
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// `who`'s request that must succeed (see [`answer`]).
#[track_caller]
fn user_ok(cl: &mut Client, who: &Person, operation: UserOperation) -> UserAnswer {
    let request = user_request(cl, who, operation);
    answer(cl, &who.key, request)
}

/// `who`'s request that must be refused, changing nothing.
#[track_caller]
fn user_refused(cl: &mut Client, who: &Person, operation: UserOperation) -> ModuleError {
    let request = user_request(cl, who, operation);
    let req = send_user(cl, request);
    cl.m.refused(req)
}

fn add_op(cl: &Client, p: &Person, role: Role, privileges: Privileges) -> UserOperation {
    add_with(cl, p, role, privileges, PsdUserSettings::default())
}

fn add_with(
    cl: &Client,
    p: &Person,
    role: Role,
    privileges: Privileges,
    settings: PsdUserSettings,
) -> UserOperation {
    UserOperation::AddUser {
        secrets: secrets_of(cl, p),
        role,
        privileges,
        settings,
    }
}

/// The administrator adds `p` as a Customer.
#[track_caller]
fn add(cl: &mut Client, p: &Person, privileges: Privileges, settings: PsdUserSettings) {
    let op = add_with(cl, p, Role::Customer, privileges, settings);
    assert_eq!(user_ok(cl, &ADMIN, op), UserAnswer::Done);
}

fn modify(user: &Person) -> UserOperation {
    UserOperation::ModifyUser {
        user_id: user.id.into(),
        privileges: None,
        settings: PsdUserSettings::default(),
        unlock: false,
        new_secrets: None,
    }
}

fn set_privileges(user: &Person, p: Privileges) -> UserOperation {
    UserOperation::ModifyUser {
        user_id: user.id.into(),
        privileges: Some(p),
        settings: PsdUserSettings::default(),
        unlock: false,
        new_secrets: None,
    }
}

fn set_settings(user: &Person, settings: PsdUserSettings) -> UserOperation {
    UserOperation::ModifyUser {
        user_id: user.id.into(),
        privileges: None,
        settings,
        unlock: false,
        new_secrets: None,
    }
}

fn unlock(user: &Person) -> UserOperation {
    UserOperation::ModifyUser {
        user_id: user.id.into(),
        privileges: None,
        settings: PsdUserSettings::default(),
        unlock: true,
        new_secrets: None,
    }
}

/// Modify User giving `user_id` the secrets of `new`.
fn new_secrets(cl: &Client, user_id: &str, new: &Person) -> UserOperation {
    UserOperation::ModifyUser {
        user_id: user_id.into(),
        privileges: None,
        settings: PsdUserSettings::default(),
        unlock: false,
        new_secrets: Some(secrets_of(cl, new)),
    }
}

/// List Users by `who`.
#[track_caller]
fn list(cl: &mut Client, who: &Person) -> Vec<PsdUserView> {
    match user_ok(cl, who, UserOperation::ListUsers) {
        UserAnswer::Users(v) => v,
        other => panic!("unexpected {other:?}"),
    }
}

#[track_caller]
fn view<'a>(users: &'a [PsdUserView], id: &str) -> &'a PsdUserView {
    users
        .iter()
        .find(|u| u.user_id == id)
        .unwrap_or_else(|| panic!("{id} is not listed in {users:?}"))
}

/// A first-class piece from the licensing ZIP by `who`, MAC'd under their
/// key, on the current challenge.
fn print_request(cl: &Client, who: &Person, postage_mills: u64) -> IndiciumRequest {
    let mut req = IndiciumRequest {
        device_id: DEVICE.to_string(),
        user_id: who.id.into(),
        challenge: cl.challenge,
        postage_mills,
        date: DATE,
        origin_zip: ZIP,
        destination_zip: DESTINATION,
        category: *b"FC  ",
        mac: [0; 32],
    };
    req.mac = psd::indicium_request_mac(&who.key, &req);
    req
}

/// `who` prints a piece; checks the answer's MAC under their key and the
/// signature; stores the package, checkpoint and challenge.
#[track_caller]
fn print(cl: &mut Client, who: &Person, postage_mills: u64) -> Indicium {
    let req = cl.send(print_request(cl, who, postage_mills));
    match ok(&mut cl.m.c, req) {
        Response::IndiciumCreated {
            package,
            checkpoint,
            indicium,
            old_challenge,
            new_challenge,
            mac,
        } => {
            cl.m.checkpoint = Some(checkpoint);
            assert_eq!(old_challenge, cl.challenge);
            assert_eq!(
                mac,
                psd::indicium_response_mac(&who.key, &indicium, &old_challenge, &new_challenge),
                "the indicium is MAC'd under the printing user's key"
            );
            cl.m.package = package;
            cl.challenge = new_challenge;
            let i = Indicium::from_bytes(&indicium).expect("the indicium decodes");
            assert_eq!(u64::from(i.postage), postage_mills);
            assert!(i.verify(&cl.m.public_key), "verifies with the PSD key");
            i
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[track_caller]
fn print_refused(cl: &mut Client, who: &Person, postage_mills: u64) -> ModuleError {
    let req = print_request(cl, who, postage_mills);
    cl.refused(req)
}

/// `logon` sealed to the registration key for this meter.
fn sealed_logon(cl: &Client, user_id: &str, password: &str, challenge: [u8; 16]) -> HpkeSealed {
    psd::seal_user_logon(
        &mut rng(),
        &cl.m.registration,
        &DEVICE,
        &UserLogon {
            user_id: user_id.into(),
            password: Zeroizing::new(password.into()),
            challenge,
        },
    )
    .unwrap()
}

fn send_logon(cl: &Client, logon: HpkeSealed) -> Request {
    Request::PsdUserLogon {
        package: cl.m.package.clone(),
        checkpoint: cl.m.checkpoint.clone(),
        logon,
    }
}

/// PSD User Logon on the current challenge: `Ok` when accepted, else the
/// reason. Either way the package (with the failure count) and the new
/// challenge are stored.
#[track_caller]
fn logon(cl: &mut Client, user_id: &str, password: &str) -> Result<(), String> {
    let req = send_logon(cl, sealed_logon(cl, user_id, password, cl.challenge));
    match ok(&mut cl.m.c, req) {
        Response::PsdLogon {
            package,
            checkpoint,
            accepted,
            challenge,
            reason,
        } => {
            cl.m.checkpoint = Some(checkpoint);
            assert_ne!(challenge, cl.challenge, "a logon moves the chain on");
            cl.m.package = package;
            cl.challenge = challenge;
            assert_eq!(accepted, reason.is_none(), "{reason:?}");
            match reason {
                None => Ok(()),
                Some(r) => Err(r),
            }
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The successful audit entries of `command`.
fn entries(cl: &Client, command: &str) -> Vec<postvault_audit::AuditEntry> {
    audit_log(&cl.m.f)
        .into_iter()
        .filter(|e| e.command == command && e.reason == "ok")
        .collect()
}

/// A funded meter whose administrator has added BOB as a clerk.
fn with_clerk() -> Client {
    let mut cl = Client::funded(100_000);
    add(&mut cl, &BOB, Privileges::PRINT, PsdUserSettings::default());
    cl
}

#[test]
fn an_administrator_adds_a_clerk_who_prints_under_their_own_key() {
    let mut cl = Client::funded(100_000);
    let added_at = now(&mut cl);
    let settings = PsdUserSettings {
        account_expires: Some(added_at + 1_000_000),
        password_period_secs: Some(3_600),
        failure_limit: Some(3),
        max_total_postage_mills: Some(50_000),
    };
    let op = add_with(&cl, &BOB, Role::Customer, Privileges::PRINT, settings);
    let request = user_request(&cl, &ADMIN, op);
    // The answer is MAC'd under the administrator's key (checked in
    // `answer_and_mac`), not the new user's.
    let old = cl.challenge;
    let (done, mac) = answer_and_mac(&mut cl, &ADMIN.key, request);
    assert_eq!(done, UserAnswer::Done);
    assert_ne!(
        mac,
        psd::user_response_mac(&BOB.key, &done, &old, &cl.challenge)
    );

    // The clerk prints with their own key; the administrator's key does
    // not speak for them.
    let mut forged = print_request(&cl, &BOB, 700);
    forged.mac = psd::indicium_request_mac(&ADMIN.key, &forged);
    assert_rejected(&cl.refused(forged), "request MAC does not verify");
    let i = print(&mut cl, &BOB, 700);
    assert_eq!((i.ascending_register, i.piece_counter), (700, 1));
    let j = print(&mut cl, &ADMIN, 300);
    assert_eq!((j.ascending_register, j.piece_counter), (1_000, 2));

    // Every indicium is attributable to its user.
    let made = entries(&cl, "CreateIndicium");
    assert_eq!(made.len(), 2);
    assert_eq!(made[0].data["user"], BOB.id);
    assert_eq!(made[0].data["postage_mills"], "700");
    assert_eq!(made[1].data["user"], ADMIN.id);
    let added = entries(&cl, "PsdUserCommand");
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].data["user"], ADMIN.id);
    assert_eq!(added[0].data["operation"], "add-user");
    assert_eq!(added[0].data["target"], BOB.id);
    assert_eq!(
        added[0].data["privileges"],
        "create-indicia,retrieve-status,retrieve-public-key"
    );

    // List Users shows both, with roles, privileges and limits.
    let users = match user_ok(&mut cl, &ADMIN, UserOperation::ListUsers) {
        UserAnswer::Users(v) => v,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(users.len(), 2);
    let a = view(&users, ADMIN.id);
    assert_eq!(a.role, Role::CustomerAdministrator);
    assert_eq!(a.privileges, Privileges::ALL);
    assert_eq!(a.failure_limit, psd::DEFAULT_USER_FAILURE_LIMIT);
    assert_eq!(
        (a.max_total_postage_mills, a.total_postage_mills),
        (None, 300)
    );
    assert_eq!(a.account_expires, None);
    assert!(a.password_expires.is_some());
    let b = view(&users, BOB.id);
    assert_eq!(b.role, Role::Customer);
    assert_eq!(b.privileges, Privileges::PRINT);
    assert_eq!(b.account_expires, Some(added_at + 1_000_000));
    assert_eq!(b.password_expires, Some(added_at + 3_600));
    assert_eq!((b.failures, b.failure_limit, b.locked), (0, 3, false));
    assert_eq!(
        (b.max_total_postage_mills, b.total_postage_mills),
        (Some(50_000), 700)
    );

    // ... and no secret material.
    let listed = UserAnswer::Users(users);
    let shown = format!("{listed:?}{}", serde_json::to_string(&listed).unwrap());
    assert!(shown.contains(BOB.id));
    // (A PHC hash starts "$argon2id$".)
    for secret in [
        "argon2".to_string(),
        BOB.password.to_string(),
        PASSWORD.to_string(),
        hex::encode(BOB.key),
        hex::encode(HMAC_KEY),
    ] {
        assert!(!shown.contains(&secret), "{secret} in {shown}");
    }
    let log: String = audit_log(&cl.m.f)
        .iter()
        .map(|e| e.to_json_line())
        .collect();
    assert!(!log.contains("argon2"));
    assert!(!log.contains(BOB.password));
    assert!(!log.contains(&hex::encode(BOB.key)));
}

#[test]
fn a_user_without_administer_users_cannot_administer_users() {
    let mut cl = with_clerk();
    let ops = [
        add_op(&cl, &CAROL, Role::Customer, Privileges::PRINT),
        UserOperation::DeleteUser {
            user_id: ADMIN.id.into(),
        },
        set_privileges(&BOB, Privileges::ALL),
        unlock(&ADMIN),
        set_settings(
            &BOB,
            PsdUserSettings {
                max_total_postage_mills: Some(0),
                ..Default::default()
            },
        ),
        UserOperation::ListUsers,
    ];
    for op in ops {
        assert_rejected(
            &user_refused(&mut cl, &BOB, op),
            "user \"bob\" of meter 0042-0001-00000017 does not hold the administer-users privilege",
        );
    }
    // Nothing changed: the administrator still sees two users, BOB a clerk.
    let users = list(&mut cl, &ADMIN);
    assert_eq!(users.len(), 2);
    assert_eq!(view(&users, BOB.id).privileges, Privileges::PRINT);
}

#[test]
fn a_user_without_create_indicia_cannot_print() {
    let mut cl = Client::funded(100_000);
    let viewer = Privileges {
        create_indicia: false,
        ..Privileges::PRINT
    };
    add(&mut cl, &BOB, viewer, PsdUserSettings::default());
    assert_rejected(
        &print_refused(&mut cl, &BOB, 500),
        "user \"bob\" of meter 0042-0001-00000017 does not hold the create-indicia privilege",
    );
    // The status they may read.
    assert!(matches!(
        user_ok(&mut cl, &BOB, UserOperation::RetrieveStatus),
        UserAnswer::Status(_)
    ));
    print(&mut cl, &ADMIN, 500);
}

#[test]
fn revoking_create_indicia_stops_the_next_print_and_granting_it_back_restores_it() {
    let mut cl = with_clerk();
    print(&mut cl, &BOB, 500);
    let revoked = Privileges {
        create_indicia: false,
        ..Privileges::PRINT
    };
    user_ok(&mut cl, &ADMIN, set_privileges(&BOB, revoked));
    assert_rejected(
        &print_refused(&mut cl, &BOB, 500),
        "does not hold the create-indicia privilege",
    );
    assert_eq!(view(&list(&mut cl, &ADMIN), BOB.id).privileges, revoked);
    user_ok(&mut cl, &ADMIN, set_privileges(&BOB, Privileges::PRINT));
    let i = print(&mut cl, &BOB, 500);
    assert_eq!((i.ascending_register, i.piece_counter), (1_000, 2));
    let modified = entries(&cl, "PsdUserCommand");
    let revoke = modified
        .iter()
        .find(|e| {
            e.data.get("privileges").map(String::as_str)
                == Some("retrieve-status,retrieve-public-key")
        })
        .expect("the revocation is audited");
    assert_eq!(revoke.data["operation"], "modify-user");
    assert_eq!(revoke.data["target"], BOB.id);
    assert_eq!(revoke.data["user"], ADMIN.id);
}

#[test]
fn a_deleted_user_is_no_longer_a_user() {
    let mut cl = with_clerk();
    print(&mut cl, &BOB, 500);
    let op = UserOperation::DeleteUser {
        user_id: BOB.id.into(),
    };
    assert_eq!(user_ok(&mut cl, &ADMIN, op), UserAnswer::Done);
    assert_rejected(
        &print_refused(&mut cl, &BOB, 500),
        "user \"bob\" is not a user of meter 0042-0001-00000017",
    );
    assert_rejected(
        &user_refused(&mut cl, &BOB, UserOperation::RetrieveStatus),
        "user \"bob\" is not a user of meter",
    );
    let again = UserOperation::DeleteUser {
        user_id: BOB.id.into(),
    };
    assert_invalid(
        &user_refused(&mut cl, &ADMIN, again),
        "user \"bob\" is not a user of meter",
    );
    let users = list(&mut cl, &ADMIN);
    assert_eq!(
        users.iter().map(|u| u.user_id.as_str()).collect::<Vec<_>>(),
        [ADMIN.id]
    );
    let deleted = entries(&cl, "PsdUserCommand");
    assert!(deleted.iter().any(|e| e.data["operation"] == "delete-user"
        && e.data["target"] == BOB.id
        && e.data["user"] == ADMIN.id));
    // The meter goes on without them.
    print(&mut cl, &ADMIN, 500);
}

#[test]
fn a_user_cannot_delete_themself() {
    let mut cl = Client::funded(100_000);
    let op = UserOperation::DeleteUser {
        user_id: ADMIN.id.into(),
    };
    assert_invalid(
        &user_refused(&mut cl, &ADMIN, op),
        "a user cannot delete themself",
    );
    // Not even when another administrator remains.
    let op = add_op(&cl, &CAROL, Role::CustomerAdministrator, Privileges::ALL);
    user_ok(&mut cl, &ADMIN, op);
    let op = UserOperation::DeleteUser {
        user_id: CAROL.id.into(),
    };
    assert_invalid(
        &user_refused(&mut cl, &CAROL, op),
        "a user cannot delete themself",
    );
    assert_eq!(list(&mut cl, &CAROL).len(), 2);
}

#[test]
fn the_last_user_holding_administer_users_keeps_it() {
    let mut cl = with_clerk();
    for p in [Privileges::PRINT, Privileges::NONE] {
        assert_invalid(
            &user_refused(&mut cl, &ADMIN, set_privileges(&ADMIN, p)),
            "meter 0042-0001-00000017 would have no user left who can administer users",
        );
    }
    let op = UserOperation::DeleteUser {
        user_id: ADMIN.id.into(),
    };
    assert_invalid(&user_refused(&mut cl, &ADMIN, op), "cannot delete themself");

    // With a second administrator, the first may step down ...
    let op = add_op(&cl, &CAROL, Role::CustomerAdministrator, Privileges::ALL);
    user_ok(&mut cl, &ADMIN, op);
    user_ok(&mut cl, &ADMIN, set_privileges(&ADMIN, Privileges::PRINT));
    // ... and then the second is the last one.
    assert_invalid(
        &user_refused(&mut cl, &CAROL, set_privileges(&CAROL, Privileges::PRINT)),
        "would have no user left who can administer users",
    );
    let op = UserOperation::DeleteUser {
        user_id: CAROL.id.into(),
    };
    assert_invalid(&user_refused(&mut cl, &CAROL, op), "cannot delete themself");
    let op = UserOperation::DeleteUser {
        user_id: CAROL.id.into(),
    };
    assert_rejected(
        &user_refused(&mut cl, &ADMIN, op),
        "does not hold the administer-users privilege",
    );
    let users = list(&mut cl, &CAROL);
    assert_eq!(view(&users, ADMIN.id).privileges, Privileges::PRINT);
    assert_eq!(view(&users, CAROL.id).privileges, Privileges::ALL);
}

#[test]
fn adding_a_user_id_the_meter_already_has_is_invalid() {
    let mut cl = with_clerk();
    let other_bob = Person {
        key: [0x01; 32],
        password: "another-bob-password",
        ..BOB
    };
    for p in [BOB, other_bob] {
        let op = add_op(&cl, &p, Role::Customer, Privileges::PRINT);
        assert_invalid(
            &user_refused(&mut cl, &ADMIN, op),
            "meter 0042-0001-00000017 already has a user \"bob\"",
        );
    }
    let alice_again = Person {
        key: [0x02; 32],
        password: "alice-other-long-password",
        ..ADMIN
    };
    let op = add_op(
        &cl,
        &alice_again,
        Role::CustomerAdministrator,
        Privileges::ALL,
    );
    assert_invalid(
        &user_refused(&mut cl, &ADMIN, op),
        "already has a user \"alice\"",
    );
    // The first BOB's key is still the one that prints.
    print(&mut cl, &BOB, 500);
    assert_eq!(list(&mut cl, &ADMIN).len(), 2);
}

#[test]
fn a_meter_user_is_a_customer_or_a_customer_administrator() {
    let mut cl = Client::funded(100_000);
    for role in Role::ALL {
        if matches!(role, Role::Customer | Role::CustomerAdministrator) {
            continue;
        }
        let op = add_op(&cl, &BOB, role, Privileges::PRINT);
        assert_invalid(
            &user_refused(&mut cl, &ADMIN, op),
            &format!("a meter user is a customer or a customer administrator, not {role}"),
        );
    }
    let op = add_op(&cl, &BOB, Role::CustomerAdministrator, Privileges::PRINT);
    user_ok(&mut cl, &ADMIN, op);
    assert_eq!(
        view(&list(&mut cl, &ADMIN), BOB.id).role,
        Role::CustomerAdministrator
    );
}

#[test]
fn add_user_refuses_bad_secrets_and_settings() {
    let mut cl = Client::funded(100_000);
    let weak = Person {
        password: "short",
        ..BOB
    };
    let op = add_op(&cl, &weak, Role::Customer, Privileges::PRINT);
    let e = user_refused(&mut cl, &ADMIN, op);
    assert!(matches!(e, ModuleError::PasswordRejected(_)), "{e:?}");
    let bad_id = Person {
        id: "bob smith",
        ..BOB
    };
    let op = add_op(&cl, &bad_id, Role::Customer, Privileges::PRINT);
    assert_invalid(&user_refused(&mut cl, &ADMIN, op), "user ID \"bob smith\"");
    // Secrets sealed for another meter do not open here.
    let sealed = psd::seal_customer_secrets(
        &mut rng(),
        &cl.m.registration,
        &OTHER_DEVICE,
        &CustomerSecrets {
            user_id: BOB.id.into(),
            hmac_key: Zeroizing::new(BOB.key),
            password: Zeroizing::new(BOB.password.into()),
        },
    )
    .unwrap();
    let op = UserOperation::AddUser {
        secrets: sealed,
        role: Role::Customer,
        privileges: Privileges::PRINT,
        settings: PsdUserSettings::default(),
    };
    assert_rejected(&user_refused(&mut cl, &ADMIN, op), "do not open");
    for (settings, needle) in [
        (
            PsdUserSettings {
                failure_limit: Some(0),
                ..Default::default()
            },
            "a failure limit of 0",
        ),
        (
            PsdUserSettings {
                password_period_secs: Some(-1),
                ..Default::default()
            },
            "cannot be negative",
        ),
        (
            PsdUserSettings {
                account_expires: Some(-1),
                ..Default::default()
            },
            "cannot be negative",
        ),
    ] {
        let op = add_with(&cl, &BOB, Role::Customer, Privileges::PRINT, settings);
        assert_invalid(&user_refused(&mut cl, &ADMIN, op), needle);
    }
    add(&mut cl, &BOB, Privileges::PRINT, PsdUserSettings::default());
    print(&mut cl, &BOB, 500);
}

#[test]
fn a_user_prints_no_more_than_their_maximum_total_postage() {
    let mut cl = Client::funded(100_000);
    let limit = PsdUserSettings {
        max_total_postage_mills: Some(1_000),
        ..Default::default()
    };
    add(&mut cl, &BOB, Privileges::PRINT, limit);
    print(&mut cl, &BOB, 600);
    assert_rejected(
        &print_refused(&mut cl, &BOB, 500),
        "user \"bob\" may print at most 1000 mills in total and has printed 600 mills; the piece needs 500 mills",
    );
    let i = print(&mut cl, &BOB, 400);
    assert_eq!((i.ascending_register, i.piece_counter), (1_000, 2));
    assert_rejected(
        &print_refused(&mut cl, &BOB, 1),
        "may print at most 1000 mills in total and has printed 1000 mills",
    );
    // The limit is BOB's, not the meter's.
    print(&mut cl, &ADMIN, 5_000);
    let b = view(&list(&mut cl, &ADMIN), BOB.id).clone();
    assert_eq!(
        (b.max_total_postage_mills, b.total_postage_mills),
        (Some(1_000), 1_000)
    );
    // The administrator raises it, then clears it (Some(0)).
    let raise = PsdUserSettings {
        max_total_postage_mills: Some(1_500),
        ..Default::default()
    };
    user_ok(&mut cl, &ADMIN, set_settings(&BOB, raise));
    assert_rejected(
        &print_refused(&mut cl, &BOB, 501),
        "may print at most 1500 mills",
    );
    print(&mut cl, &BOB, 500);
    let clear = PsdUserSettings {
        max_total_postage_mills: Some(0),
        ..Default::default()
    };
    user_ok(&mut cl, &ADMIN, set_settings(&BOB, clear));
    print(&mut cl, &BOB, 10_000);
    let b = view(&list(&mut cl, &ADMIN), BOB.id).clone();
    assert_eq!(
        (b.max_total_postage_mills, b.total_postage_mills),
        (None, 11_500)
    );
}

#[test]
fn an_expired_account_is_refused_until_the_administrator_extends_it() {
    let mut cl = Client::funded(100_000);
    let expires = now(&mut cl) + 3_600;
    let settings = PsdUserSettings {
        account_expires: Some(expires),
        ..Default::default()
    };
    add(&mut cl, &BOB, Privileges::PRINT, settings);
    cl.m.set_time(expires - 1);
    print(&mut cl, &BOB, 500);
    cl.m.set_time(expires);
    assert_rejected(
        &print_refused(&mut cl, &BOB, 500),
        "the account of user \"bob\" has expired; a customer administrator must extend it",
    );
    assert_rejected(
        &user_refused(&mut cl, &BOB, UserOperation::RetrieveStatus),
        "has expired",
    );
    let why = logon(&mut cl, BOB.id, BOB.password).unwrap_err();
    assert!(why.contains("has expired"), "{why}");
    // Other users are not affected.
    print(&mut cl, &ADMIN, 500);
    assert_eq!(
        view(&list(&mut cl, &ADMIN), BOB.id).account_expires,
        Some(expires)
    );
    let clear = PsdUserSettings {
        account_expires: Some(0),
        ..Default::default()
    };
    user_ok(&mut cl, &ADMIN, set_settings(&BOB, clear));
    assert_eq!(view(&list(&mut cl, &ADMIN), BOB.id).account_expires, None);
    logon(&mut cl, BOB.id, BOB.password).unwrap();
    let i = print(&mut cl, &BOB, 500);
    assert_eq!(i.piece_counter, 3);
}

#[test]
fn logon_accepts_the_right_password_and_counts_a_wrong_one() {
    let mut cl = with_clerk();
    logon(&mut cl, BOB.id, BOB.password).unwrap();
    assert_eq!(view(&list(&mut cl, &ADMIN), BOB.id).failures, 0);

    let before = cl.m.package.clone();
    let why = logon(&mut cl, BOB.id, "not-bobs-password-at-all").unwrap_err();
    assert_eq!(why, "unknown user or wrong password");
    assert_eq!(view(&list(&mut cl, &ADMIN), BOB.id).failures, 1);
    // The count is in the package the logon returned: the one before is
    // stale now.
    let stale = Request::PsdUserLogon {
        package: before,
        checkpoint: cl.m.checkpoint.clone(),
        logon: sealed_logon(&cl, BOB.id, BOB.password, cl.challenge),
    };
    let e = cl.m.refused(stale);
    assert!(
        matches!(&e, ModuleError::StalePackage(m) if m.contains("produced by this module")),
        "{e:?}"
    );
    let b = view(&list(&mut cl, &ADMIN), BOB.id).clone();
    assert_eq!((b.failures, b.locked), (1, false));
    // The failure is audited, without the password.
    let logons = entries(&cl, "PsdUserLogon");
    let failed = logons.last().unwrap();
    assert_eq!(failed.data["user"], BOB.id);
    assert_eq!(failed.data["accepted"], "false");
    assert_eq!(failed.data["failures"], "1");
    let log: String = audit_log(&cl.m.f)
        .iter()
        .map(|e| e.to_json_line())
        .collect();
    assert!(!log.contains("not-bobs-password-at-all"));
    assert!(!log.contains(BOB.password));

    // The right password clears the count; the chain goes on.
    logon(&mut cl, BOB.id, BOB.password).unwrap();
    assert_eq!(view(&list(&mut cl, &ADMIN), BOB.id).failures, 0);
    print(&mut cl, &BOB, 500);
    // An unknown user gets the answer a wrong password gets: the logon
    // does not tell who exists.
    let why = logon(&mut cl, "mallory", BOB.password).unwrap_err();
    assert_eq!(why, "unknown user or wrong password");
}

#[test]
fn a_user_locked_by_failed_logons_is_refused_until_unlocked() {
    let mut cl = Client::funded(100_000);
    let settings = PsdUserSettings {
        failure_limit: Some(2),
        ..Default::default()
    };
    add(&mut cl, &BOB, Privileges::PRINT, settings);
    let why = logon(&mut cl, BOB.id, "wrong-password-one").unwrap_err();
    assert_eq!(why, "unknown user or wrong password");
    assert!(!view(&list(&mut cl, &ADMIN), BOB.id).locked);
    let why = logon(&mut cl, BOB.id, "wrong-password-two").unwrap_err();
    assert_eq!(why, "unknown user or wrong password");
    assert!(
        view(&list(&mut cl, &ADMIN), BOB.id).locked,
        "locked after 2 failures"
    );
    let b = view(&list(&mut cl, &ADMIN), BOB.id).clone();
    assert_eq!((b.failures, b.failure_limit, b.locked), (2, 2, true));

    // Locked: no MAC'd request, not even the right password.
    assert_rejected(
        &print_refused(&mut cl, &BOB, 500),
        "user \"bob\" is locked after 2 failed password checks",
    );
    assert_rejected(
        &user_refused(&mut cl, &BOB, UserOperation::RetrieveStatus),
        "is locked",
    );
    let why = logon(&mut cl, BOB.id, BOB.password).unwrap_err();
    assert!(why.contains("is locked"), "{why}");
    assert_eq!(view(&list(&mut cl, &ADMIN), BOB.id).failures, 2);
    // The others are not.
    print(&mut cl, &ADMIN, 500);

    user_ok(&mut cl, &ADMIN, unlock(&BOB));
    let b = view(&list(&mut cl, &ADMIN), BOB.id).clone();
    assert_eq!((b.failures, b.locked), (0, false));
    logon(&mut cl, BOB.id, BOB.password).unwrap();
    let i = print(&mut cl, &BOB, 500);
    assert_eq!(i.piece_counter, 2);
    assert!(
        entries(&cl, "PsdUserCommand")
            .iter()
            .any(|e| e.data.get("unlock").map(String::as_str) == Some("yes")
                && e.data["target"] == BOB.id)
    );
}

#[test]
fn an_expired_password_is_not_accepted_at_logon() {
    let mut cl = Client::funded(100_000);
    let settings = PsdUserSettings {
        password_period_secs: Some(3_600),
        ..Default::default()
    };
    let t = now(&mut cl);
    add(&mut cl, &BOB, Privileges::PRINT, settings);
    assert_eq!(
        view(&list(&mut cl, &ADMIN), BOB.id).password_expires,
        Some(t + 3_600)
    );
    cl.m.set_time(t + 3_599);
    logon(&mut cl, BOB.id, BOB.password).unwrap();
    cl.m.set_time(t + 3_600);
    let why = logon(&mut cl, BOB.id, BOB.password).unwrap_err();
    assert!(
        why.contains("the password of user \"bob\" has expired"),
        "{why}"
    );
    // Not a failure: the password was right.
    assert_eq!(view(&list(&mut cl, &ADMIN), BOB.id).failures, 0);
    // BOB sets a new password; it is accepted, and runs for another period.
    let renewed = Person {
        key: [0x6c; 32],
        password: "bob-renewed-long-password",
        ..BOB
    };
    let op = new_secrets(&cl, BOB.id, &renewed);
    user_ok(&mut cl, &BOB, op);
    logon(&mut cl, BOB.id, renewed.password).unwrap();
    assert_eq!(
        view(&list(&mut cl, &ADMIN), BOB.id).password_expires,
        Some(t + 3_600 + 3_600)
    );
}

#[test]
fn a_logon_sealed_on_an_old_challenge_is_refused() {
    let mut cl = with_clerk();
    let old = sealed_logon(&cl, BOB.id, BOB.password, cl.challenge);
    print(&mut cl, &ADMIN, 500);
    let req = send_logon(&cl, old);
    assert_rejected(
        &cl.m.refused(req),
        "stale or replayed logon: challenge does not match",
    );
    // A captured logon cannot be replayed.
    let captured = sealed_logon(&cl, BOB.id, BOB.password, cl.challenge);
    let req = send_logon(&cl, captured.clone());
    match ok(&mut cl.m.c, req) {
        Response::PsdLogon {
            package,
            checkpoint,
            accepted,
            challenge,
            ..
        } => {
            assert!(accepted);
            cl.m.package = package;
            cl.m.checkpoint = Some(checkpoint);
            cl.challenge = challenge;
        }
        other => panic!("unexpected {other:?}"),
    }
    let req = send_logon(&cl, captured);
    assert_rejected(&cl.m.refused(req), "stale or replayed logon");
    // A logon sealed for another meter does not open.
    let other = psd::seal_user_logon(
        &mut rng(),
        &cl.m.registration,
        &OTHER_DEVICE,
        &UserLogon {
            user_id: BOB.id.into(),
            password: Zeroizing::new(BOB.password.into()),
            challenge: cl.challenge,
        },
    )
    .unwrap();
    let req = send_logon(&cl, other);
    assert_rejected(&cl.m.refused(req), "do not open");
    logon(&mut cl, BOB.id, BOB.password).unwrap();
}

/// BOB's next key and password.
const RENEWED_BOB: Person = Person {
    key: [0x6d; 32],
    password: "bob-brand-new-passphrase",
    ..BOB
};

#[test]
fn a_user_changes_their_own_key_and_password() {
    let mut cl = with_clerk();
    // The module keeps the user keys it has opened: BOB's is warm after
    // his first piece, and his change still takes effect at once.
    print(&mut cl, &BOB, 500);
    // The answer is MAC'd under the key that authenticated the request.
    let op = new_secrets(&cl, BOB.id, &RENEWED_BOB);
    assert_eq!(user_ok(&mut cl, &BOB, op), UserAnswer::Done);
    assert_rejected(
        &print_refused(&mut cl, &BOB, 500),
        "request MAC does not verify",
    );
    assert_rejected(
        &user_refused(&mut cl, &BOB, UserOperation::RetrieveStatus),
        "request MAC does not verify",
    );
    print(&mut cl, &RENEWED_BOB, 500);
    assert_rejected(
        &print_refused(&mut cl, &BOB, 500),
        "request MAC does not verify",
    );
    user_ok(&mut cl, &RENEWED_BOB, UserOperation::RetrieveStatus);
    let why = logon(&mut cl, BOB.id, BOB.password).unwrap_err();
    assert!(why.contains("wrong password"), "{why}");
    logon(&mut cl, BOB.id, RENEWED_BOB.password).unwrap();
    assert!(entries(&cl, "PsdUserCommand").iter().any(|e| {
        e.data.get("new_secrets").map(String::as_str) == Some("yes")
            && e.data["user"] == BOB.id
            && e.data["target"] == BOB.id
    }));

    // A recent password is not taken again (with whatever key).
    let back = Person {
        key: [0x6e; 32],
        ..BOB
    };
    let op = new_secrets(&cl, BOB.id, &back);
    let e = user_refused(&mut cl, &RENEWED_BOB, op);
    assert!(
        matches!(&e, ModuleError::PasswordRejected(m) if m.contains("used this password recently")),
        "{e:?}"
    );
    // New secrets must name the user they are for.
    let op = new_secrets(&cl, BOB.id, &CAROL);
    assert_invalid(
        &user_refused(&mut cl, &RENEWED_BOB, op),
        "the new secrets are for user \"carol\", not \"bob\"",
    );
    print(&mut cl, &RENEWED_BOB, 500);
}

#[test]
fn a_key_the_administrator_gives_replaces_the_one_the_module_keeps_at_once() {
    let mut cl = with_clerk();
    print(&mut cl, &BOB, 500);
    print(&mut cl, &ADMIN, 500);
    // The administrator gives BOB another key (BOB's and the
    // administrator's warm).
    let third = Person {
        key: [0x6f; 32],
        password: "bob-third-passphrase-ever",
        ..BOB
    };
    let op = new_secrets(&cl, BOB.id, &third);
    assert_eq!(user_ok(&mut cl, &ADMIN, op), UserAnswer::Done);
    assert_rejected(
        &print_refused(&mut cl, &BOB, 500),
        "request MAC does not verify",
    );
    print(&mut cl, &third, 500);
    // The administrator's own key is unaffected.
    user_ok(&mut cl, &ADMIN, UserOperation::RetrieveStatus);
    print(&mut cl, &ADMIN, 500);
}

#[test]
fn a_wrong_mac_is_refused_with_the_users_key_warm() {
    let mut cl = with_clerk();
    print(&mut cl, &BOB, 500);
    let good = print_request(&cl, &BOB, 500);
    let mut req = good.clone();
    req.mac[0] ^= 0x80;
    assert_rejected(&cl.refused(req), "request MAC does not verify");
    let mut req = good.clone();
    req.postage_mills = 5_000;
    assert_rejected(&cl.refused(req), "request MAC does not verify");
    // MAC'd under another user's (also warm) key.
    let mut req = good.clone();
    req.mac = psd::indicium_request_mac(&ADMIN.key, &req);
    assert_rejected(&cl.refused(req), "request MAC does not verify");
    let mut req = user_request(&cl, &BOB, UserOperation::RetrieveStatus);
    req.mac[31] ^= 1;
    assert_rejected(
        &cl.m.refused(send_user(&cl, req)),
        "request MAC does not verify",
    );
    print(&mut cl, &BOB, 500);
}

#[test]
fn an_older_package_holding_the_old_user_key_is_not_served_the_newer_one() {
    let mut cl = with_clerk();
    print(&mut cl, &BOB, 500);
    let before = db(&cl);
    let op = new_secrets(&cl, BOB.id, &RENEWED_BOB);
    assert_eq!(user_ok(&mut cl, &BOB, op), UserAnswer::Done);
    // The module now keeps BOB's renewed key.
    print(&mut cl, &RENEWED_BOB, 500);
    // The database is rolled back over both transactions and the module
    // recovers to it: the package it passes holds BOB's old key.
    restore(&mut cl, &before);
    assert_eq!(auto_recover(&mut cl.m.c, &before.checkpoint), 2);
    assert_rejected(
        &print_refused(&mut cl, &RENEWED_BOB, 500),
        "request MAC does not verify",
    );
    assert_rejected(
        &user_refused(&mut cl, &RENEWED_BOB, UserOperation::RetrieveStatus),
        "request MAC does not verify",
    );
    print(&mut cl, &BOB, 500);
    user_ok(&mut cl, &BOB, UserOperation::RetrieveStatus);
}

#[test]
fn changing_another_users_secrets_needs_reset_password() {
    let mut cl = with_clerk();
    let hijack = Person {
        key: [0x99; 32],
        password: "bob-owns-alice-now-ok",
        ..ADMIN
    };
    let op = new_secrets(&cl, ADMIN.id, &hijack);
    assert_rejected(
        &user_refused(&mut cl, &BOB, op),
        "user \"bob\" of meter 0042-0001-00000017 does not hold the reset-password privilege",
    );
    // Administering users is not enough either.
    let admin_only = Privileges {
        reset_password: false,
        ..Privileges::ALL
    };
    let op = add_op(&cl, &CAROL, Role::CustomerAdministrator, admin_only);
    user_ok(&mut cl, &ADMIN, op);
    let reset = Person {
        key: [0x6f; 32],
        password: "bob-reset-by-admin-pw",
        ..BOB
    };
    let op = new_secrets(&cl, BOB.id, &reset);
    assert_rejected(
        &user_refused(&mut cl, &CAROL, op),
        "does not hold the reset-password privilege",
    );
    print(&mut cl, &ADMIN, 500);
    print(&mut cl, &BOB, 500);

    // The administrator, who holds reset-password, replaces BOB's secrets.
    let op = new_secrets(&cl, BOB.id, &reset);
    user_ok(&mut cl, &ADMIN, op);
    assert_rejected(
        &print_refused(&mut cl, &BOB, 500),
        "request MAC does not verify",
    );
    print(&mut cl, &reset, 500);
    logon(&mut cl, BOB.id, reset.password).unwrap();
}

#[test]
fn reset_password_cannot_take_over_a_stronger_account() {
    let mut cl = with_clerk();
    // CAROL may reset passwords and print, nothing else.
    let resetter = Privileges {
        reset_password: true,
        ..Privileges::PRINT
    };
    let op = add_op(&cl, &CAROL, Role::Customer, resetter);
    user_ok(&mut cl, &ADMIN, op);
    // She may not replace the administrator's secrets (she would become them).
    let hijack = Person {
        key: [0x98; 32],
        password: "carol-owns-alice-now",
        ..ADMIN
    };
    let op = new_secrets(&cl, ADMIN.id, &hijack);
    assert_rejected(
        &user_refused(&mut cl, &CAROL, op),
        "may not reset the secrets of \"alice\"",
    );
    print(&mut cl, &ADMIN, 500);
    // She may reset BOB, whose privileges are within hers.
    let reset = Person {
        key: [0x97; 32],
        password: "bob-reset-by-carol-ok",
        ..BOB
    };
    let op = new_secrets(&cl, BOB.id, &reset);
    user_ok(&mut cl, &CAROL, op);
    print(&mut cl, &reset, 500);
}

#[test]
fn a_replayed_user_request_is_refused() {
    let mut cl = with_clerk();
    let req = user_request(&cl, &ADMIN, UserOperation::ListUsers);
    answer(&mut cl, &ADMIN.key, req.clone());
    assert_rejected(
        &cl.m.refused(send_user(&cl, req)),
        "stale or replayed request: challenge does not match",
    );
    // A made-up challenge, correctly MAC'd, is refused too.
    let mut req = user_request(&cl, &ADMIN, UserOperation::ListUsers);
    req.challenge = [0; 16];
    req.mac = psd::user_request_mac(&ADMIN.key, &req);
    assert_rejected(
        &cl.m.refused(send_user(&cl, req)),
        "challenge does not match",
    );
    list(&mut cl, &ADMIN);
}

#[test]
fn an_altered_user_request_is_refused() {
    let mut cl = with_clerk();
    // The administrator MACs "add CAROL as a clerk"; someone changes it.
    let good = user_request(
        &cl,
        &ADMIN,
        add_op(&cl, &CAROL, Role::Customer, Privileges::PRINT),
    );
    let mut req = good.clone();
    if let UserOperation::AddUser { privileges, .. } = &mut req.operation {
        *privileges = Privileges::ALL;
    }
    assert_rejected(
        &cl.m.refused(send_user(&cl, req)),
        "request MAC does not verify",
    );
    let mut req = good.clone();
    req.operation = UserOperation::DeleteUser {
        user_id: BOB.id.into(),
    };
    assert_rejected(
        &cl.m.refused(send_user(&cl, req)),
        "request MAC does not verify",
    );
    let mut req = good.clone();
    req.mac[31] ^= 1;
    assert_rejected(
        &cl.m.refused(send_user(&cl, req)),
        "request MAC does not verify",
    );
    // BOB cannot pass his request off as the administrator's, nor the
    // other way round.
    let mut req = user_request(&cl, &BOB, UserOperation::ListUsers);
    req.user_id = ADMIN.id.into();
    assert_rejected(
        &cl.m.refused(send_user(&cl, req)),
        "request MAC does not verify",
    );
    let mut req = user_request(&cl, &ADMIN, UserOperation::ListUsers);
    req.user_id = BOB.id.into();
    assert_rejected(
        &cl.m.refused(send_user(&cl, req)),
        "request MAC does not verify",
    );
    // For another meter.
    let mut req = user_request(&cl, &ADMIN, UserOperation::ListUsers);
    req.device_id = OTHER_DEVICE.to_string();
    req.mac = psd::user_request_mac(&ADMIN.key, &req);
    assert_rejected(
        &cl.m.refused(send_user(&cl, req)),
        "the user request is for device \"0042-0001-00000018\"",
    );
    // The unaltered request still goes through, and only BOB is there.
    assert_eq!(answer(&mut cl, &ADMIN.key, good), UserAnswer::Done);
    let users = list(&mut cl, &ADMIN);
    assert_eq!(users.len(), 3);
    assert_eq!(view(&users, CAROL.id).privileges, Privileges::PRINT);
}

#[test]
fn status_and_public_key_through_a_user_request_need_their_privileges() {
    let mut cl = with_clerk();
    add(
        &mut cl,
        &CAROL,
        Privileges::NONE,
        PsdUserSettings::default(),
    );
    assert_rejected(
        &user_refused(&mut cl, &CAROL, UserOperation::RetrieveStatus),
        "user \"carol\" of meter 0042-0001-00000017 does not hold the retrieve-status privilege",
    );
    assert_rejected(
        &user_refused(&mut cl, &CAROL, UserOperation::RetrievePublicKey),
        "does not hold the retrieve-public-key privilege",
    );
    print(&mut cl, &BOB, 700);
    let status: PsdStatus = match user_ok(&mut cl, &BOB, UserOperation::RetrieveStatus) {
        UserAnswer::Status(s) => s,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(status.device_id, DEVICE.to_string());
    assert_eq!(status.state, psd::PsdState::Leased);
    assert_eq!(
        (
            status.ascending_mills,
            status.descending_mills,
            status.control_total_mills
        ),
        (700, 99_300, 100_000)
    );
    assert_eq!((status.piece_count, status.users), (1, 3));
    assert_eq!(status.licensing_zip, Some(ZIP));
    match user_ok(&mut cl, &BOB, UserOperation::RetrievePublicKey) {
        UserAnswer::PublicKey(k) => assert_eq!(k, cl.m.public_key),
        other => panic!("unexpected {other:?}"),
    }
    // Granted the privileges, CAROL may read them too.
    let readers = Privileges {
        retrieve_status: true,
        retrieve_public_key: true,
        ..Privileges::NONE
    };
    user_ok(&mut cl, &ADMIN, set_privileges(&CAROL, readers));
    match user_ok(&mut cl, &CAROL, UserOperation::RetrievePublicKey) {
        UserAnswer::PublicKey(k) => assert_eq!(k, cl.m.public_key),
        other => panic!("unexpected {other:?}"),
    }
    let ops: Vec<_> = entries(&cl, "PsdUserCommand")
        .iter()
        .map(|e| e.data["operation"].clone())
        .collect();
    assert!(ops.contains(&"retrieve-status".to_string()), "{ops:?}");
    assert!(ops.contains(&"retrieve-public-key".to_string()), "{ops:?}");
}

#[test]
fn the_status_a_user_retrieves_names_the_challenge_the_next_request_must_carry() {
    // `PsdStatus::challenge`: "the module's last challenge (... the next
    // MAC'd request must carry it)".
    let mut cl = with_clerk();
    let status = match user_ok(&mut cl, &BOB, UserOperation::RetrieveStatus) {
        UserAnswer::Status(s) => s,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        status.challenge,
        Some(cl.challenge),
        "the status names the challenge the next request must carry"
    );
}

#[test]
fn modify_user_that_changes_nothing_is_invalid() {
    let mut cl = with_clerk();
    assert_invalid(
        &user_refused(&mut cl, &ADMIN, modify(&BOB)),
        "Modify User changes nothing",
    );
    assert_invalid(
        &user_refused(&mut cl, &ADMIN, modify(&CAROL)),
        "user \"carol\" is not a user of meter",
    );
    user_ok(&mut cl, &ADMIN, unlock(&BOB));
}

#[test]
fn a_password_change_is_no_oracle_for_other_users_passwords() {
    // PSD User Logon counts wrong passwords and locks the user at their
    // limit. Changing one's own password needs no privilege, so it must not
    // let BOB test guesses of ALICE's password without counting: choosing
    // ALICE's current password must go as choosing a fresh one does.
    let mut cl = with_clerk();
    let guess = Person {
        key: [0x62; 32],
        password: PASSWORD,
        ..BOB
    };
    let op = new_secrets(&cl, BOB.id, &guess);
    let request = user_request(&cl, &BOB, op);
    let req = send_user(&cl, request);
    if let Err(e) = cl.m.c.run(&req) {
        panic!(
            "BOB's change to ALICE's current password was refused, which confirms BOB's \
             guess of it without a failed logon counted against ALICE: {e}"
        );
    }
}

#[test]
fn a_meter_has_at_most_100_users() {
    let mut cl = Client::funded(100_000);
    let seal = |cl: &Client, id: &str| {
        psd::seal_customer_secrets(
            &mut rng(),
            &cl.m.registration,
            &DEVICE,
            &CustomerSecrets {
                user_id: id.into(),
                hmac_key: Zeroizing::new([0x33; 32]),
                password: Zeroizing::new(format!("{id}-long-enough-password")),
            },
        )
        .unwrap()
    };
    for i in 2..=100 {
        let op = UserOperation::AddUser {
            secrets: seal(&cl, &format!("user{i}")),
            role: Role::Customer,
            privileges: Privileges::NONE,
            settings: PsdUserSettings::default(),
        };
        assert_eq!(user_ok(&mut cl, &ADMIN, op), UserAnswer::Done);
    }
    assert_eq!(list(&mut cl, &ADMIN).len(), 100);
    let op = UserOperation::AddUser {
        secrets: seal(&cl, "user101"),
        role: Role::Customer,
        privileges: Privileges::NONE,
        settings: PsdUserSettings::default(),
    };
    assert_invalid(
        &user_refused(&mut cl, &ADMIN, op),
        "meter 0042-0001-00000017 already has 100 users, the most it may have",
    );
    // Deleting one makes room again, and the full meter still prints.
    let op = UserOperation::DeleteUser {
        user_id: "user100".into(),
    };
    user_ok(&mut cl, &ADMIN, op);
    let op = UserOperation::AddUser {
        secrets: seal(&cl, "user101"),
        role: Role::Customer,
        privileges: Privileges::NONE,
        settings: PsdUserSettings::default(),
    };
    user_ok(&mut cl, &ADMIN, op);
    print(&mut cl, &ADMIN, 500);
}
