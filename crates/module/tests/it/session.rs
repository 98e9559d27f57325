//! The secure session: key confirmation, MACs on every frame, counters
//! against replay and reordering, encryption of secrets, one user per
//! session, Close Session, and the daemon transport over a Unix socket.
use std::time::{Duration, Instant};

use postvault_module::session::{
    PendingOpen, RequestFrame, ResponseFrame, SealedFrame, SessionError, decode, encode,
};
use postvault_module::{
    ClientError, Module, ModuleClient, ModuleError, ModuleState, Request, Response, Role,
};

use crate::common::*;

/// The sealed frame inside encoded request bytes.
fn sealed(bytes: &[u8]) -> SealedFrame {
    match decode::<RequestFrame>(bytes).unwrap() {
        RequestFrame::Sealed(f) => f,
        other => panic!("not a sealed frame: {other:?}"),
    }
}

fn reseal(f: SealedFrame) -> Vec<u8> {
    encode(&RequestFrame::Sealed(f))
}

/// The refusal text of an answer that must be a session-level refusal.
#[track_caller]
fn refusal(answer: &[u8]) -> String {
    match decode::<ResponseFrame>(answer).unwrap() {
        ResponseFrame::Refused(why) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn note(text: &str) -> Request {
    Request::CreateAuditEntry {
        note: text.into(),
        sign: false,
    }
}

fn notes(f: &Fixture) -> Vec<String> {
    audit_log(f)
        .iter()
        .filter(|e| e.command == "CreateAuditEntry")
        .map(|e| e.data["note"].clone())
        .collect()
}

fn logon_req(user: &str) -> Request {
    Request::Logon {
        user_id: user.into(),
        password: pw(user),
    }
}

#[test]
fn open_session_confirms_that_both_ends_derived_the_same_keys() {
    let f = Fixture::new();
    let m = f.open();
    let open = |pending_frame: &RequestFrame| -> ResponseFrame {
        decode(&m.lock().unwrap().handle(&encode(pending_frame))).unwrap()
    };

    // A genuine answer finishes and yields a working session.
    let (pending, frame) = PendingOpen::start().unwrap();
    let answer = open(&frame);
    let ResponseFrame::Opened {
        session_id,
        module_public,
        confirm,
    } = answer.clone()
    else {
        panic!("expected Opened, got {answer:?}");
    };
    let session = pending
        .finish(&answer)
        .expect("genuine confirmation verifies");
    assert_eq!(session.session_id(), session_id);

    // An altered confirmation, module key or session ID is caught by the host.
    let tampered = [
        ResponseFrame::Opened {
            session_id,
            module_public,
            confirm: {
                let mut c = confirm;
                c[31] ^= 1;
                c
            },
        },
        ResponseFrame::Opened {
            session_id,
            module_public: {
                let mut p = module_public;
                p[0] ^= 1;
                p
            },
            confirm,
        },
        ResponseFrame::Opened {
            session_id: session_id ^ 1,
            module_public,
            confirm,
        },
    ];
    for bad in &tampered {
        let (pending, frame) = PendingOpen::start().unwrap();
        let _ = open(&frame);
        let err = pending.finish(bad).unwrap_err();
        assert!(
            matches!(err, SessionError::Confirm | SessionError::KeyAgreement),
            "{bad:?} accepted: {err:?}"
        );
    }
    // An answer meant for another host (another ephemeral key) does not confirm.
    let (other, _) = PendingOpen::start().unwrap();
    assert_eq!(other.finish(&answer).unwrap_err(), SessionError::Confirm);

    // The client opens and confirms on its own; status names its session.
    let mut c = client(&m);
    assert_eq!(status(&mut c).session_id, c.session_id());
}

#[test]
fn every_altered_request_frame_is_refused_and_changes_nothing() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let log_before = audit_log(&f).len();

    // An unencrypted and an encrypted request: each must survive only untouched.
    for (req, encrypted) in [(note("the genuine note"), false), (logon_req("kc1"), true)] {
        let (good, counter) = c.wrap_raw(&req, encrypted).unwrap();
        let frame = sealed(&good);
        assert_eq!(frame.encrypted, encrypted);
        let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
        let mut mutate =
            |name: &'static str, expect: &'static str, g: &dyn Fn(&mut SealedFrame)| {
                let mut f = frame.clone();
                g(&mut f);
                cases.push((name, reseal(f), expect));
            };
        if encrypted {
            // The GCM tag (the body's last 16 bytes) is the frame's MAC.
            assert_eq!(frame.mac, None);
            mutate("flipped first tag byte", "authentication failed", &|f| {
                let n = f.body.len();
                f.body[n - 16] ^= 1
            });
            mutate("an HMAC added", "authentication failed", &|f| {
                f.mac = Some([0; 32])
            });
        } else {
            mutate("flipped MAC byte", "authentication failed", &|f| {
                if let Some(m) = f.mac.as_mut() {
                    m[0] ^= 1
                }
            });
            mutate("flipped last MAC byte", "authentication failed", &|f| {
                if let Some(m) = f.mac.as_mut() {
                    m[31] ^= 0x80
                }
            });
            mutate("MAC removed", "authentication failed", &|f| f.mac = None);
        }
        mutate("flipped first body byte", "authentication failed", &|f| {
            f.body[0] ^= 1
        });
        mutate("flipped last body byte", "authentication failed", &|f| {
            *f.body.last_mut().unwrap() ^= 1
        });
        mutate("flipped counter", "out of order", &|f| f.counter ^= 1);
        mutate("truncated body", "authentication failed", &|f| {
            f.body.pop();
        });
        mutate("appended body byte", "authentication failed", &|f| {
            f.body.push(0)
        });
        mutate("flipped encryption flag", "authentication failed", &|f| {
            f.encrypted = !f.encrypted
        });
        mutate(
            "flipped encryption flag, MAC field to match",
            "authentication failed",
            &|f| {
                f.encrypted = !f.encrypted;
                f.mac = if f.encrypted { None } else { Some([0; 32]) };
            },
        );
        mutate("empty body", "authentication failed", &|f| f.body.clear());
        // Byte-level damage to the encoded frame.
        let mut appended = good.clone();
        appended.push(0);
        cases.push(("appended byte after the frame", appended, "does not decode"));
        cases.push((
            "frame cut short",
            good[..good.len() - 1].to_vec(),
            "does not decode",
        ));
        let nvm_before = nvm_bytes(&f);
        for (name, bad, expect) in &cases {
            let answer = c.exchange_raw(bad).unwrap();
            let why = refusal(&answer);
            assert!(why.contains(expect), "{name}: refused with {why:?}");
        }
        assert_eq!(audit_log(&f).len(), log_before + usize::from(encrypted));
        assert_eq!(nvm_bytes(&f), nvm_before);
        // The module still expects this counter: the untouched frame is accepted.
        let answer = c.exchange_raw(&good).unwrap();
        let reply = c.unwrap_raw(&answer, counter).unwrap();
        assert!(reply.result.is_ok(), "{:?}", reply.result);
    }
    // Both genuine requests ran exactly once, and the session goes on with the next counter.
    assert_eq!(notes(&f), vec!["the genuine note".to_string()]);
    assert_eq!(status(&mut c).user_id.as_deref(), Some("kc1"));
}

#[test]
fn replayed_and_reordered_frames_are_refused() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);

    // Replay: a frame that was accepted once is refused the second time.
    let (first, n) = c.wrap_raw(&note("first"), false).unwrap();
    let answer = c.exchange_raw(&first).unwrap();
    assert!(c.unwrap_raw(&answer, n).unwrap().result.is_ok());
    let why = refusal(&c.exchange_raw(&first).unwrap());
    assert!(
        why.contains(&format!("counter {n} out of order (expected {})", n + 1)),
        "{why}"
    );
    assert_eq!(notes(&f), vec!["first"]);

    // Reordering: frame n+1 before frame n is refused; in order, both run once.
    let (second, n2) = c.wrap_raw(&note("second"), false).unwrap();
    let (third, n3) = c.wrap_raw(&note("third"), false).unwrap();
    assert_eq!((n2 + 1, n3), (n + 2, n + 2));
    let why = refusal(&c.exchange_raw(&third).unwrap());
    assert!(why.contains("out of order"), "{why}");
    assert_eq!(notes(&f), vec!["first"]);
    let a2 = c.exchange_raw(&second).unwrap();
    assert!(c.unwrap_raw(&a2, n2).unwrap().result.is_ok());
    let a3 = c.exchange_raw(&third).unwrap();
    assert!(c.unwrap_raw(&a3, n3).unwrap().result.is_ok());
    assert_eq!(notes(&f), vec!["first", "second", "third"]);
    // Older frames stay dead.
    for old in [&first, &second, &third] {
        assert!(refusal(&c.exchange_raw(old).unwrap()).contains("out of order"));
    }
    assert_eq!(notes(&f), vec!["first", "second", "third"]);
    // A response is bound to its request's counter.
    let (fourth, n4) = c.wrap_raw(&note("fourth"), false).unwrap();
    let a4 = c.exchange_raw(&fourth).unwrap();
    assert!(matches!(
        c.unwrap_raw(&a4, n4 + 1),
        Err(ClientError::Session(SessionError::Counter { .. }))
    ));
    assert!(c.unwrap_raw(&a4, n4).unwrap().result.is_ok());
    assert_eq!(status(&mut c).current_state, ModuleState::Operational);
}

#[test]
fn frames_for_unknown_or_other_sessions_are_refused() {
    let f = Fixture::new();
    let m = f.open();
    let mut a = client(&m);
    let mut b = client(&m);
    master(&mut a);
    let log_len = audit_log(&f).len();

    let (frame, n) = a.wrap_raw(&note("from a"), false).unwrap();
    // A session ID nobody opened.
    let mut unknown = sealed(&frame);
    unknown.session_id = unknown.session_id.wrapping_add(1);
    if unknown.session_id == b.session_id() {
        unknown.session_id = unknown.session_id.wrapping_add(1);
    }
    let why = refusal(&a.exchange_raw(&reseal(unknown)).unwrap());
    assert!(why.contains("unknown or closed session"), "{why}");
    // A frame relabelled for session B (with the counter B expects): B's
    // keys do not verify it.
    let mut a2 = client(&m);
    let (first, _) = a2.wrap_raw(&note("from a2"), false).unwrap();
    let mut moved = sealed(&first);
    assert_eq!(moved.counter, 0);
    moved.session_id = b.session_id();
    let why = refusal(&a.exchange_raw(&reseal(moved)).unwrap());
    assert!(why.contains("authentication failed"), "{why}");
    // With A's counter it is out of order for B.
    let mut moved = sealed(&frame);
    moved.session_id = b.session_id();
    let why = refusal(&a.exchange_raw(&reseal(moved)).unwrap());
    assert!(why.contains("out of order"), "{why}");
    assert_eq!(audit_log(&f).len(), log_len);
    // Neither session was disturbed: B still expects counter 0, A counter n.
    assert_eq!(status(&mut b).current_state, ModuleState::Operational);
    let answer = a.exchange_raw(&frame).unwrap();
    assert!(a.unwrap_raw(&answer, n).unwrap().result.is_ok());
    assert_eq!(notes(&f), vec!["from a"]);
}

#[test]
fn an_altered_response_is_rejected_by_the_client() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let mut other = client(&m);

    for (req, encrypted) in [
        (Request::GetStatus, false),
        (note("answered"), false),
        (logon_req("kc2"), true),
    ] {
        let (frame, n) = c.wrap_raw(&req, encrypted).unwrap();
        let answer = c.exchange_raw(&frame).unwrap();
        let ResponseFrame::Sealed(resp) = decode::<ResponseFrame>(&answer).unwrap() else {
            panic!("expected a sealed answer");
        };
        assert_eq!(resp.encrypted, encrypted);
        // Every single-byte change of the answer in transit is caught.
        for i in 0..answer.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = answer.clone();
                bad[i] ^= bit;
                assert!(
                    c.unwrap_raw(&bad, n).is_err(),
                    "{:?}: answer byte {i} ^ {bit:#x} accepted",
                    req.kind()
                );
            }
        }
        let mut longer_body = resp.clone();
        longer_body.body.push(0);
        let mut shorter_body = resp.clone();
        shorter_body.body.pop();
        for bad in [longer_body, shorter_body] {
            assert!(matches!(
                c.unwrap_raw(&encode(&ResponseFrame::Sealed(bad)), n),
                Err(ClientError::Session(SessionError::BadMac))
            ));
        }
        assert!(c.unwrap_raw(&answer[..answer.len() - 1], n).is_err());
        let mut appended = answer.clone();
        appended.push(0);
        assert!(matches!(
            c.unwrap_raw(&appended, n),
            Err(ClientError::Session(SessionError::Malformed))
        ));
        // The answer is bound to this session: another session's client rejects it.
        assert!(other.unwrap_raw(&answer, n).is_err());
        // The untouched answer is accepted.
        let reply = c.unwrap_raw(&answer, n).unwrap();
        assert!(reply.result.is_ok(), "{:?}", reply.result);
    }
    assert_eq!(status(&mut c).user_id.as_deref(), Some("kc2"));
    assert_eq!(status(&mut other).user_id, None);
}

#[test]
fn logon_and_other_secrets_sent_unencrypted_are_refused_and_count_nothing() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let log_len = audit_log(&f).len();
    let nvm = nvm_bytes(&f);

    // Wrong passwords, more often than the failure limit, and the right one: all refused.
    for attempt in 0..7 {
        let password = if attempt == 6 {
            pw("kc1")
        } else {
            postvault_module::Password::new(format!("kc1-wrong-{attempt:08}"))
        };
        let reply = c
            .call_with(
                &Request::Logon {
                    user_id: "kc1".into(),
                    password,
                },
                false,
            )
            .unwrap();
        assert_eq!(
            reply.result,
            Err(ModuleError::EncryptionRequired("Logon".into()))
        );
        assert!(reply.audit.is_none());
    }
    assert_eq!(status(&mut c).user_id, None);
    // Nothing was counted or written: the NVM and the audit log are unchanged,
    // and the right password, encrypted, logs on at once.
    assert_eq!(audit_log(&f).len(), log_len);
    assert_eq!(nvm_bytes(&f), nvm);
    assert_eq!(c.logon("kc1", &pw("kc1")).unwrap(), Role::KeyCustodian);

    // Change Password in the clear is refused the same way, and changes nothing.
    let reply = c
        .call_with(
            &Request::ChangePassword {
                old: pw("kc1"),
                new: postvault_module::Password::new("kc1-brand-new-password"),
            },
            false,
        )
        .unwrap();
    assert_eq!(
        reply.result,
        Err(ModuleError::EncryptionRequired("ChangePassword".into()))
    );
    c.logoff().unwrap();
    assert_eq!(c.logon("kc1", &pw("kc1")).unwrap(), Role::KeyCustodian);
}

#[test]
fn there_is_no_sessionless_path_to_the_commands() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let log_len = audit_log(&f).len();
    let nvm = nvm_bytes(&f);
    // Bare requests, not inside a session frame.
    for req in [
        logon_req("so"),
        Request::GetStatus,
        Request::CloseSession,
        Request::GenerateMks,
        Request::Reset,
        Request::Zeroize,
    ] {
        let why = refusal(&m.lock().unwrap().handle(&req.encode()));
        assert!(why.contains("does not decode"), "{:?}: {why}", req.kind());
    }
    // A frame that claims a fresh session, with the counter it expects, but
    // carries no valid MAC (whoever lacks the session keys cannot make one).
    let mut fresh = client(&m);
    let forged = SealedFrame {
        session_id: fresh.session_id(),
        counter: 0,
        encrypted: false,
        body: logon_req("so").encode(),
        mac: Some([0; 32]),
    };
    let why = refusal(&m.lock().unwrap().handle(&reseal(forged)));
    assert!(why.contains("authentication failed"), "{why}");
    assert_eq!(status(&mut fresh).user_id, None);
    assert_eq!(audit_log(&f).len(), log_len);
    assert_eq!(nvm_bytes(&f), nvm);
    let s = status(&mut c);
    assert_eq!((s.user_id, s.role), (None, Role::NoRole));
}

#[test]
fn close_session_needs_a_logoff_and_forgets_the_session() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let mut watcher = client(&m);
    assert_eq!(status(&mut watcher).sessions_open, 2);

    c.logon("so", &pw("so")).unwrap();
    assert_eq!(
        run_err(&mut c, Request::CloseSession),
        ModuleError::UserLoggedOn
    );
    // Still open, still logged on.
    let s = status(&mut c);
    assert_eq!(s.user_id.as_deref(), Some("so"));
    assert_eq!(s.sessions_open, 2);

    c.logoff().unwrap();
    ok(&mut c, Request::CloseSession);
    assert_eq!(status(&mut watcher).sessions_open, 1);
    // The session ID is unknown now: whatever the client sends is refused.
    for req in [Request::GetStatus, logon_req("so")] {
        match c.run(&req) {
            Err(ClientError::Refused(why)) => {
                assert!(why.contains("unknown or closed session"), "{why}")
            }
            other => panic!("{:?} on a closed session: {other:?}", req.kind()),
        }
    }
    // ModuleClient::close does the same.
    let c2 = client(&m);
    assert_eq!(status(&mut watcher).sessions_open, 2);
    c2.close().unwrap();
    assert_eq!(status(&mut watcher).sessions_open, 1);
}

#[test]
fn sessions_are_independent_and_hold_one_user_each() {
    let f = Fixture::new();
    let m = f.open();
    let mut a = client(&m);
    let mut b = client(&m);
    master(&mut a);
    a.logon("so", &pw("so")).unwrap();

    // B sees nobody and has no rights.
    let s = status(&mut b);
    assert_eq!((s.user_id, s.role), (None, Role::NoRole));
    assert_eq!(
        ok(&mut b, Request::QueryCurrentRole),
        Response::Role(Role::NoRole)
    );
    assert!(matches!(
        run_err(&mut b, Request::BeginAdmin),
        ModuleError::Denied {
            role: Role::NoRole,
            ..
        }
    ));
    // One user per session: a second Logon on A is denied, the first user stays.
    assert!(matches!(
        a.logon("kc1", &pw("kc1")),
        Err(ClientError::Module(ModuleError::Denied {
            role: Role::SecurityOfficer,
            ..
        }))
    ));
    assert!(matches!(
        a.logon("so", &pw("so")),
        Err(ClientError::Module(ModuleError::Denied { .. }))
    ));
    assert_eq!(
        ok(&mut a, Request::QueryCurrentUser),
        Response::User(Some("so".into()))
    );
    // B logs on someone else; each session keeps its own user.
    assert_eq!(b.logon("kc1", &pw("kc1")).unwrap(), Role::KeyCustodian);
    assert_eq!(
        ok(&mut a, Request::QueryCurrentRole),
        Response::Role(Role::SecurityOfficer)
    );
    assert_eq!(
        ok(&mut b, Request::QueryCurrentRole),
        Response::Role(Role::KeyCustodian)
    );
    // The KC on B cannot use the SO's rights on A, and logging off B leaves A alone.
    assert!(matches!(
        run_err(&mut b, Request::BeginAdmin),
        ModuleError::Denied { .. }
    ));
    b.logoff().unwrap();
    assert_eq!(ok(&mut a, Request::BeginAdmin), Response::Done);
    assert_eq!(status(&mut b).role, Role::NoRole);
}

#[test]
fn the_password_never_appears_in_the_logon_frame() {
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    master(&mut c);
    let secret = pw("so");
    let needle = secret.expose_secret().as_bytes().to_vec();
    let contains = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle.as_slice());

    // Control: the same request in a MAC-only frame shows the password, so
    // the search works (this frame is never sent).
    let (clear, _) = c.wrap_raw(&logon_req("so"), false).unwrap();
    assert!(contains(&clear));
    // The encrypted frame (what ModuleClient::logon sends) hides it, and so
    // does the answer; a fresh session carries it, in counter order.
    let mut c2 = client(&m);
    let (frame, n) = c2.wrap_raw(&logon_req("so"), true).unwrap();
    assert!(
        !contains(&frame),
        "password visible in the encrypted Logon frame"
    );
    assert!(!contains(&sealed(&frame).body));
    let answer = c2.exchange_raw(&frame).unwrap();
    assert!(!contains(&answer));
    assert_eq!(
        c2.unwrap_raw(&answer, n).unwrap().result,
        Ok(Response::Role(Role::SecurityOfficer))
    );
    // Nor does the password reach the audit log.
    let log: String = audit_log(&f).iter().map(|e| e.to_json_line()).collect();
    assert!(!log.contains(secret.expose_secret()));
}

/// Serves a module on a Unix socket in a background thread (it serves until
/// the test process ends) and returns the socket path.
fn serve(f: &Fixture) -> std::path::PathBuf {
    let socket = f.path().join("module.sock");
    let module = Module::open(f.config(&Opts::default())).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let path = socket.clone();
    std::thread::spawn(move || {
        postvault_module::daemon::serve(module, &path, None, move || tx.send(()).unwrap())
            .expect("daemon serves");
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the daemon signals it is ready");
    socket
}

/// Polls `cond` for up to 10 seconds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn daemon_round_trip_over_a_unix_socket_and_logoff_on_disconnect() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let socket = serve(&f);
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut c = ModuleClient::socket(&socket).unwrap();
    assert_eq!(status(&mut c).current_state, ModuleState::Uninitialized);
    master(&mut c);
    assert_eq!(c.logon("so", &pw("so")).unwrap(), Role::SecurityOfficer);
    let s = status(&mut c);
    assert_eq!(s.user_id.as_deref(), Some("so"));
    assert_eq!(s.current_state, ModuleState::Operational);
    // A wrong password over the socket is refused like in-process.
    let mut other = ModuleClient::socket(&socket).unwrap();
    assert!(matches!(
        other.logon("kc1", &postvault_module::Password::new("not-the-password")),
        Err(ClientError::Module(ModuleError::LogonFailed))
    ));
    assert_eq!(status(&mut other).sessions_open, 2);

    // The host goes away without logging off.
    drop(c);
    eventually("the dropped connection's session is closed", || {
        status(&mut other).sessions_open == 1
    });
    let log = audit_log(&f);
    let last = log.last().unwrap();
    assert_eq!(
        (
            last.command.as_str(),
            last.reason.as_str(),
            last.user_id.as_deref(),
            last.role.as_deref()
        ),
        (
            "Logoff",
            "disconnected",
            Some("so"),
            Some("security-officer")
        )
    );
    // The audit log the daemon produced verifies.
    let key: [u8; 65] = hex::decode(&log[0].data["audit_key"])
        .unwrap()
        .try_into()
        .unwrap();
    postvault_audit::verify_chain(&log, &key).unwrap();
    // A second daemon on the same live socket is refused.
    let module2_dir = Fixture::new();
    let m2 = Module::open(module2_dir.config(&Opts::default())).unwrap();
    let err = postvault_module::daemon::serve(m2, &socket, None, || {}).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(status(&mut other).current_state, ModuleState::Operational);
}
