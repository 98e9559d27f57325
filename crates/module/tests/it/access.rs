//! Access control as operators meet it: lock-out, expiry, password history
//! and strength, idle logoff, the initial accounts and the rules that keep
//! the module administrable.
use postvault_module::access::{DEFAULT_LOGON_TIMEOUT, DEFAULT_PASSWORD_PERIOD};
use postvault_module::protocol::{AccountSettings, UserView};
use postvault_module::{
    ClientError, ModuleClient, ModuleError, ModuleState, Password, Request, Response, Role,
};

use crate::common::*;

#[track_caller]
fn logon_err(c: &mut ModuleClient, user: &str, password: &Password) -> ModuleError {
    match c.logon(user, password) {
        Err(ClientError::Module(e)) => e,
        other => panic!("logon {user} must fail: {other:?}"),
    }
}

fn wrong(i: usize) -> Password {
    Password::new(format!("definitely-wrong-{i:04}"))
}

/// Runs `f` as the Administrator in Administrative state (the Security
/// Officer opens and closes it).
fn admin<T>(c: &mut ModuleClient, f: impl FnOnce(&mut ModuleClient) -> T) -> T {
    as_user(c, "so", |c| ok(c, Request::BeginAdmin));
    let out = as_user(c, "admin", f);
    as_user(c, "so", |c| ok(c, Request::EndAdmin));
    out
}

fn modify(user: &str, settings: AccountSettings, new_password: Option<Password>) -> Request {
    Request::ModifyUser {
        user_id: user.into(),
        settings,
        new_password,
        unlock: false,
    }
}

fn users(c: &mut ModuleClient) -> Vec<UserView> {
    match ok(c, Request::ViewUsers) {
        Response::Users(u) => u,
        other => panic!("unexpected {other:?}"),
    }
}

fn view(c: &mut ModuleClient, user: &str) -> UserView {
    admin(c, users)
        .into_iter()
        .find(|u| u.user_id == user)
        .unwrap()
}

#[test]
fn wrong_passwords_lock_the_account_across_reboots_until_unlocked() {
    let f = Fixture::new();
    {
        let m = f.open();
        let mut c = client(&m);
        master(&mut c);
        // A successful logon resets the count.
        for i in 0..4 {
            assert_eq!(
                logon_err(&mut c, "kc1", &wrong(i)),
                ModuleError::LogonFailed
            );
        }
        as_user(&mut c, "kc1", |_| ());
        for i in 0..2 {
            assert_eq!(
                logon_err(&mut c, "kc1", &wrong(i)),
                ModuleError::LogonFailed
            );
        }
        assert_eq!(view(&mut c, "kc1").failures, 2);
    }
    // The count survives a reboot: three more failures reach the limit of 5.
    let m = f.open();
    let mut c = client(&m);
    assert_eq!(
        logon_err(&mut c, "kc1", &wrong(10)),
        ModuleError::LogonFailed
    );
    assert_eq!(
        logon_err(&mut c, "kc1", &wrong(11)),
        ModuleError::LogonFailed
    );
    assert_eq!(
        logon_err(&mut c, "kc1", &wrong(12)),
        ModuleError::Locked("kc1".into())
    );
    // Locked: the right password is refused too, also after a reboot.
    assert_eq!(
        logon_err(&mut c, "kc1", &pw("kc1")),
        ModuleError::Locked("kc1".into())
    );
    drop(c);
    drop(m);
    let m = f.open();
    let mut c = client(&m);
    assert_eq!(
        logon_err(&mut c, "kc1", &pw("kc1")),
        ModuleError::Locked("kc1".into())
    );
    // Other accounts are unaffected.
    as_user(&mut c, "kc2", |_| ());
    let v = view(&mut c, "kc1");
    assert!(v.locked);
    assert_eq!((v.failures, v.failure_limit), (5, 5));
    // The Administrator unlocks; the right password works again and the count is reset.
    admin(&mut c, |c| {
        ok(
            c,
            Request::ModifyUser {
                user_id: "kc1".into(),
                settings: AccountSettings::default(),
                new_password: None,
                unlock: true,
            },
        )
    });
    assert_eq!(c.logon("kc1", &pw("kc1")).unwrap(), Role::KeyCustodian);
    c.logoff().unwrap();
    let v = view(&mut c, "kc1");
    assert_eq!((v.failures, v.locked), (0, false));
    assert!(v.last_logon.is_some());

    // A custom limit of 2.
    admin(&mut c, |c| {
        ok(
            c,
            modify(
                "kc3",
                AccountSettings {
                    failure_limit: Some(2),
                    ..AccountSettings::default()
                },
                None,
            ),
        )
    });
    assert_eq!(
        logon_err(&mut c, "kc3", &wrong(0)),
        ModuleError::LogonFailed
    );
    assert_eq!(
        logon_err(&mut c, "kc3", &wrong(1)),
        ModuleError::Locked("kc3".into())
    );
}

#[test]
fn an_expired_account_is_refused() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let expiry = |t| AccountSettings {
        account_expires: Some(t),
        ..AccountSettings::default()
    };
    admin(&mut c, |c| ok(c, modify("kc2", expiry(T0 + 100), None)));
    as_user(&mut c, "kc2", |_| ());
    f.clock.advance(100);
    assert_eq!(
        logon_err(&mut c, "kc2", &pw("kc2")),
        ModuleError::AccountExpired("kc2".into())
    );
    // An expired account is refused before any password check, so wrong
    // passwords count no failures against it.
    for i in 0..6 {
        assert_eq!(
            logon_err(&mut c, "kc2", &wrong(i)),
            ModuleError::AccountExpired("kc2".into())
        );
    }
    // Clearing the expiry (0) restores the account.
    admin(&mut c, |c| ok(c, modify("kc2", expiry(0), None)));
    as_user(&mut c, "kc2", |_| ());
    let v = view(&mut c, "kc2");
    assert_eq!((v.account_expires, v.failures), (None, 0));
    // Created with an expiry, too.
    admin(&mut c, |c| {
        let mut u = new_user("temp", Role::Auditor);
        u.settings.account_expires = Some(T0 + 200);
        ok(c, Request::CreateUser { user: u })
    });
    as_user(&mut c, "temp", |_| ());
    f.clock.advance(100);
    assert_eq!(
        logon_err(&mut c, "temp", &pw("temp")),
        ModuleError::AccountExpired("temp".into())
    );
}

#[test]
fn an_expired_password_is_refused_until_the_administrator_sets_a_new_one() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    // The default period is 90 days.
    let v = view(&mut c, "kc1");
    assert_eq!(v.password_period_secs, DEFAULT_PASSWORD_PERIOD);
    assert_eq!(v.password_expires, T0 + i64::from(DEFAULT_PASSWORD_PERIOD));

    // An account created with a 10-minute password period.
    admin(&mut c, |c| {
        let mut u = new_user("short", Role::Auditor);
        u.settings.password_period_secs = Some(600);
        ok(c, Request::CreateUser { user: u })
    });
    f.clock.advance(599);
    as_user(&mut c, "short", |_| ());
    f.clock.advance(1);
    assert_eq!(
        logon_err(&mut c, "short", &pw("short")),
        ModuleError::PasswordExpired("short".into())
    );
    // A wrong password is still just a failed logon (expiry is not revealed to guessers).
    assert_eq!(
        logon_err(&mut c, "short", &wrong(0)),
        ModuleError::LogonFailed
    );
    // A new password from the Administrator starts a new period.
    let fresh = Password::new("short-fresh-password");
    admin(&mut c, |c| {
        ok(
            c,
            modify("short", AccountSettings::default(), Some(fresh.clone())),
        )
    });
    assert_eq!(c.logon("short", &fresh).unwrap(), Role::Auditor);
    c.logoff().unwrap();
    assert_eq!(
        logon_err(&mut c, "short", &pw("short")),
        ModuleError::LogonFailed
    );

    // After the default 90 days every original password has expired.
    f.clock.advance(i64::from(DEFAULT_PASSWORD_PERIOD));
    for u in ["so", "admin", "kc1"] {
        assert_eq!(
            logon_err(&mut c, u, &pw(u)),
            ModuleError::PasswordExpired(u.into())
        );
    }
}

#[test]
fn change_password_refuses_the_current_and_last_five_passwords() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let p = |i: usize| Password::new(format!("kc1-password-number-{i}"));
    let change = |old: &Password, new: &Password| Request::ChangePassword {
        old: old.clone(),
        new: new.clone(),
    };
    let original = pw("kc1");
    c.logon("kc1", &original).unwrap();
    // The current password is not a new one.
    assert!(matches!(
        run_err(&mut c, change(&original, &original)),
        ModuleError::PasswordRejected(_)
    ));
    // A wrong current password is refused.
    assert!(matches!(
        run_err(&mut c, change(&wrong(0), &p(1))),
        ModuleError::PasswordRejected(w) if w.contains("current password is wrong")
    ));
    // Too short.
    let e = run_err(&mut c, change(&original, &Password::new("elevenchars")));
    assert!(
        matches!(&e, ModuleError::PasswordRejected(w) if w.contains("12")),
        "{e:?}"
    );
    // Five changes: original -> p1 -> ... -> p5.
    let mut current = original.clone();
    for i in 1..=5 {
        ok(&mut c, change(&current, &p(i)));
        current = p(i);
    }
    // Current (p5) and the last five (original, p1..p4) are refused.
    for old in [original.clone(), p(1), p(2), p(3), p(4), p(5)] {
        assert!(
            matches!(
                run_err(&mut c, change(&current, &old)),
                ModuleError::PasswordRejected(w) if w.contains("used recently")
            ),
            "{old:?} reused"
        );
    }
    // A new one is accepted and works at logon; the previous one no longer does.
    ok(&mut c, change(&current, &p(6)));
    c.logoff().unwrap();
    assert_eq!(logon_err(&mut c, "kc1", &p(5)), ModuleError::LogonFailed);
    assert_eq!(c.logon("kc1", &p(6)).unwrap(), Role::KeyCustodian);
    // The window is exactly five back: the original has dropped out of it now.
    ok(&mut c, change(&p(6), &original));
    c.logoff().unwrap();
    assert_eq!(c.logon("kc1", &original).unwrap(), Role::KeyCustodian);
    // The change starts a new password period.
    c.logoff().unwrap();
    assert_eq!(
        view(&mut c, "kc1").password_expires,
        T0 + i64::from(DEFAULT_PASSWORD_PERIOD)
    );
}

#[test]
fn weak_passwords_are_refused_everywhere() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    ok(&mut c, Request::StartInitialization { time: T0 });
    let mut users = vec![
        new_user("admin", Role::Administrator),
        new_user("so", Role::SecurityOfficer),
        new_user("kc1", Role::KeyCustodian),
        new_user("kc2", Role::KeyCustodian),
    ];
    users[3].password = Password::new("11-chars-pw");
    assert!(matches!(
        run_err(
            &mut c,
            Request::InitializeAccessControl {
                users: users.clone()
            }
        ),
        ModuleError::PasswordRejected(_)
    ));
    users[3].password = Password::new("12-chars-pw!");
    ok(&mut c, Request::InitializeAccessControl { users });
    as_user(&mut c, "so", |c| ok(c, Request::GenerateMks));
    admin(&mut c, |c| {
        let mut u = new_user("weak", Role::Auditor);
        u.password = Password::new("");
        assert!(matches!(
            run_err(c, Request::CreateUser { user: u.clone() }),
            ModuleError::PasswordRejected(_)
        ));
        u.password = Password::new("short");
        assert!(matches!(
            run_err(c, Request::CreateUser { user: u }),
            ModuleError::PasswordRejected(_)
        ));
        assert!(matches!(
            run_err(
                c,
                modify(
                    "kc1",
                    AccountSettings::default(),
                    Some(Password::new("tiny"))
                )
            ),
            ModuleError::PasswordRejected(_)
        ));
    });
    // kc1's password is unchanged by the refused reset; "weak" does not exist.
    as_user(&mut c, "kc1", |_| ());
    assert_eq!(
        logon_err(&mut c, "weak", &Password::new("short")),
        ModuleError::LogonFailed
    );
}

#[test]
fn view_users_never_shows_password_hashes() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    create_other_roles(&mut c);
    for viewer in ["admin", "so", "auditor"] {
        as_user(&mut c, "so", |c| ok(c, Request::BeginAdmin));
        let response = as_user(&mut c, viewer, |c| ok(c, Request::ViewUsers));
        as_user(&mut c, "so", |c| ok(c, Request::EndAdmin));
        let Response::Users(list) = &response else {
            panic!("unexpected {response:?}");
        };
        assert_eq!(list.len(), 12);
        let json = serde_json::to_string(&response).unwrap();
        assert!(json.contains("\"kc1\""));
        assert!(!json.contains("$argon2"), "a password hash is visible");
        assert!(!json.contains(pw("kc1").expose_secret()));
        // Nor in the postcard encoding that crosses the wire.
        let wire = postvault_module::Reply {
            result: Ok(response.clone()),
            audit: None,
        }
        .encode();
        assert!(!wire.windows(10).any(|w| w == b"$argon2id$"));
    }
}

#[test]
fn an_idle_user_is_logged_off_after_the_logon_timeout() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let timeout = i64::from(DEFAULT_LOGON_TIMEOUT);
    c.logon("kc1", &pw("kc1")).unwrap();
    // Activity keeps the logon alive.
    for _ in 0..3 {
        f.clock.advance(timeout - 1);
        assert_eq!(
            ok(&mut c, Request::QueryCurrentUser),
            Response::User(Some("kc1".into()))
        );
    }
    let entries = audit_log(&f).len();
    f.clock.advance(timeout + 1);
    // The next command runs as nobody.
    assert_eq!(
        ok(&mut c, Request::QueryCurrentRole),
        Response::Role(Role::NoRole)
    );
    assert_eq!(status(&mut c).user_id, None);
    assert!(matches!(
        run_err(&mut c, Request::Logoff),
        ModuleError::Denied {
            role: Role::NoRole,
            ..
        }
    ));
    let log = audit_log(&f);
    let logoff = &log[entries];
    assert_eq!(
        (
            logoff.command.as_str(),
            logoff.reason.as_str(),
            logoff.user_id.as_deref()
        ),
        ("Logoff", "timeout", Some("kc1"))
    );
    // A shorter per-account time-out.
    admin(&mut c, |c| {
        ok(
            c,
            modify(
                "kc2",
                AccountSettings {
                    logon_timeout_secs: Some(60),
                    ..AccountSettings::default()
                },
                None,
            ),
        )
    });
    c.logon("kc2", &pw("kc2")).unwrap();
    f.clock.advance(61);
    assert!(matches!(
        run_err(&mut c, Request::ExportTransportKey),
        ModuleError::Denied {
            role: Role::NoRole,
            ..
        }
    ));
}

#[test]
fn initialize_access_control_needs_the_right_accounts_once() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    ok(&mut c, Request::StartInitialization { time: T0 });
    let u = new_user;
    let ad = || u("admin", Role::Administrator);
    let so = || u("so", Role::SecurityOfficer);
    let kc = |i: u8| u(&format!("kc{i}"), Role::KeyCustodian);
    let refused = [
        ("no administrator", vec![so(), kc(1), kc(2)]),
        (
            "two administrators",
            vec![ad(), u("admin2", Role::Administrator), so(), kc(1), kc(2)],
        ),
        ("no security officer", vec![ad(), kc(1), kc(2)]),
        (
            "two security officers",
            vec![ad(), so(), u("so2", Role::SecurityOfficer), kc(1), kc(2)],
        ),
        ("one key custodian", vec![ad(), so(), kc(1)]),
        ("no key custodian", vec![ad(), so()]),
        (
            "another role",
            vec![ad(), so(), kc(1), kc(2), u("auditor", Role::Auditor)],
        ),
        (
            "a repeated user ID",
            vec![ad(), so(), kc(1), u("kc1", Role::KeyCustodian)],
        ),
        (
            "a bad user ID",
            vec![ad(), so(), kc(1), u("kc 2", Role::KeyCustodian)],
        ),
        ("nobody", vec![]),
    ];
    for (what, users) in refused {
        match run_err(&mut c, Request::InitializeAccessControl { users }) {
            ModuleError::Invalid(_) => {}
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(status(&mut c).current_state, ModuleState::Initializing);
    }
    // Nothing was created by the refusals.
    assert!(matches!(
        c.logon("admin", &pw("admin")),
        Err(ClientError::Module(ModuleError::LogonFailed))
    ));
    ok(
        &mut c,
        Request::InitializeAccessControl {
            users: vec![ad(), so(), kc(1), kc(2)],
        },
    );
    // Only once.
    let e = run_err(
        &mut c,
        Request::InitializeAccessControl {
            users: vec![ad(), so(), kc(3), kc(4)],
        },
    );
    assert!(
        matches!(&e, ModuleError::Invalid(w) if w.contains("already initialized")),
        "{e:?}"
    );
    assert!(matches!(
        c.logon("kc3", &pw("kc3")),
        Err(ClientError::Module(ModuleError::LogonFailed))
    ));
    as_user(&mut c, "so", |c| ok(c, Request::GenerateMks));
    assert_eq!(status(&mut c).current_state, ModuleState::Operational);
    // And never again in Operational.
    assert!(matches!(
        run_err(
            &mut c,
            Request::InitializeAccessControl {
                users: vec![ad(), so(), kc(1), kc(2)],
            }
        ),
        ModuleError::Denied { .. }
    ));
}

#[test]
fn delete_user_keeps_the_module_administrable() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let delete = |u: &str| Request::DeleteUser { user_id: u.into() };
    as_user(&mut c, "so", |c| ok(c, Request::BeginAdmin));
    // A key custodian logged on elsewhere.
    let mut kc3 = client(&m);
    kc3.logon("kc3", &pw("kc3")).unwrap();
    as_user(&mut c, "admin", |c| {
        // No self-deletion (which would also remove the last administrator).
        let e = run_err(c, delete("admin"));
        assert!(
            matches!(&e, ModuleError::Invalid(w) if w.contains("own account")),
            "{e:?}"
        );
        // The last security officer stays.
        let e = run_err(c, delete("so"));
        assert!(
            matches!(&e, ModuleError::Invalid(w) if w.contains("fewer than 1")),
            "{e:?}"
        );
        assert!(matches!(
            run_err(c, delete("nobody")),
            ModuleError::Invalid(_)
        ));
        // Key custodians down to two, not below.
        for u in ["kc5", "kc4", "kc3"] {
            ok(c, delete(u));
        }
        let e = run_err(c, delete("kc2"));
        assert!(
            matches!(&e, ModuleError::Invalid(w) if w.contains("fewer than 2")),
            "{e:?}"
        );
        assert_eq!(users(c).len(), 4);
        // With a second security officer and administrator, the first ones may go.
        ok(
            c,
            Request::CreateUser {
                user: new_user("so2", Role::SecurityOfficer),
            },
        );
        ok(
            c,
            Request::CreateUser {
                user: new_user("admin2", Role::Administrator),
            },
        );
        ok(c, delete("so"));
    });
    // The deleted key custodian was logged off at once and cannot log on again.
    assert_eq!(status(&mut kc3).user_id, None);
    assert_eq!(
        logon_err(&mut kc3, "kc3", &pw("kc3")),
        ModuleError::LogonFailed
    );
    as_user(&mut c, "admin2", |c| {
        ok(c, delete("admin"));
        // Now admin2 is the last administrator and cannot delete itself.
        assert!(matches!(
            run_err(c, delete("admin2")),
            ModuleError::Invalid(_)
        ));
        assert!(matches!(run_err(c, delete("so2")), ModuleError::Invalid(_)));
    });
    as_user(&mut c, "so2", |c| ok(c, Request::EndAdmin));
    assert_eq!(logon_err(&mut c, "so", &pw("so")), ModuleError::LogonFailed);
}

#[test]
fn an_unknown_user_gets_the_same_answer_as_a_wrong_password() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let unknown = logon_err(&mut c, "nobody", &pw("nobody"));
    let wrong_pw = logon_err(&mut c, "kc1", &wrong(0));
    assert_eq!(unknown, wrong_pw);
    assert_eq!(unknown, ModuleError::LogonFailed);
    assert_eq!(unknown.to_string(), wrong_pw.to_string());
    let log = audit_log(&f);
    let (a, b) = (&log[log.len() - 2], &log[log.len() - 1]);
    assert_eq!(
        (a.reason.as_str(), b.reason.as_str()),
        ("logon-failed", "logon-failed")
    );
    assert_eq!(a.data["error"], b.data["error"]);
    // Unknown users can be tried any number of times without locking anybody.
    for i in 0..6 {
        assert_eq!(
            logon_err(&mut c, "nobody", &wrong(i)),
            ModuleError::LogonFailed
        );
    }
    as_user(&mut c, "kc1", |_| ());
}
