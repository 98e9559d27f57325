//! `postvault module ...`: serving, status, self-tests, initialization,
//! operators, the clock, audit export and the destructive commands. Key
//! management (MKS, tokens, crypto-card) is in [`crate::keys`].
use std::collections::HashSet;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use postvault_crypto::ecdsa::public_key_to_pem;
use postvault_crypto::selftest;
use postvault_module::access::{check_password_strength, check_user_id};
use postvault_module::audit_sink::{AUDIT_LOG_FILE, Captured};
use postvault_module::protocol::{AccountSettings, NewUser};
use postvault_module::{Clock, ModuleError, ModuleState, Request, Response, Role, daemon};

use crate::cli::{
    AdminAction, ConnArgs, InitArgs, ModuleCommand, OperatorArgs, ServeArgs, SettingsArgs,
    UserCommand,
};
use crate::conn::{
    self, Conn, LocalOptions, SystemClock, unexpected, with_module, with_new_module,
};
use crate::output::{self, rfc3339};
use crate::{keys, out, outln, secrets, usage};

/// Runs one `postvault module` command.
pub fn run(cmd: ModuleCommand, verbose: bool) -> Result<ExitCode> {
    use ModuleCommand as M;
    match cmd {
        M::Serve(a) => serve(a),
        M::Status { conn, op, json } => {
            let s = with_module(&conn, op.get().as_ref(), verbose, Conn::status)?;
            if json {
                outln!("{}", serde_json::to_string(&s)?);
            } else {
                out!("{}", output::status_text(&s));
            }
            ok()
        }
        M::Selftest { conn, fail } => self_tests(&conn, fail, verbose),
        M::Init(a) => init(a, verbose),
        M::Admin { action, conn, op } => {
            let (req, msg) = match action {
                AdminAction::Begin => (Request::BeginAdmin, "module is in Administrative state"),
                AdminAction::End => (Request::EndAdmin, "module is back in Operational state"),
            };
            done(&conn, &op, verbose, &req, msg)
        }
        M::User(u) => users(u, verbose),
        M::Logon { conn, op } => {
            let role = with_module(&conn, None, verbose, |c| c.logon(&op))?;
            outln!("logon ok: {} is {role}", op.as_user);
            ok()
        }
        M::Whoami { conn, op } => {
            let (user, role) = with_module(&conn, Some(&op), verbose, |c| {
                let user = match c.call(&Request::QueryCurrentUser)? {
                    Response::User(u) => u,
                    other => return Err(unexpected("QueryCurrentUser", &other)),
                };
                let role = match c.call(&Request::QueryCurrentRole)? {
                    Response::Role(r) => r,
                    other => return Err(unexpected("QueryCurrentRole", &other)),
                };
                Ok((user, role))
            })?;
            outln!("{} ({role})", user.as_deref().unwrap_or("nobody"));
            ok()
        }
        M::Passwd {
            conn,
            op,
            new_password_file,
        } => {
            let old = secrets::logon_password(&op.as_user, op.password_file.as_deref())?;
            let new = secrets::new_password(
                &op.as_user,
                new_password_file.as_deref(),
                "--new-password-file FILE",
            )?;
            with_module(&conn, None, verbose, |c| {
                c.logon_with(&op.as_user, old.clone())?;
                expect_done(c, &Request::ChangePassword { old, new }, "ChangePassword")
            })?;
            outln!("password of {} changed", op.as_user);
            ok()
        }
        M::Clock { conn, op, time } => done(
            &conn,
            &op,
            verbose,
            &Request::SetClock { time },
            &format!("module clock set to {} ({time})", rfc3339(time)),
        ),
        M::Mks(m) => keys::mks(m, verbose),
        M::Token(t) => keys::token(t, verbose),
        M::CryptoCard(a) => keys::crypto_card(a, verbose),
        M::AuditKey { conn, op, out } => {
            let key = with_module(&conn, Some(&op), verbose, |c| {
                match c.call(&Request::ExportAuditKey)? {
                    Response::AuditKey(k) => Ok(k),
                    other => Err(unexpected("ExportAuditKey", &other)),
                }
            })?;
            let key: [u8; 65] = key.try_into().map_err(|k: Vec<u8>| {
                anyhow::anyhow!(
                    "the module returned a {}-byte audit key, expected 65",
                    k.len()
                )
            })?;
            output::write_public(&out, &public_key_to_pem(&key))?;
            outln!("audit verification key written to {}", out.display());
            ok()
        }
        M::AuditLog { dir, out } => audit_log(&dir, &out),
        M::AuditEntry {
            conn,
            op,
            note,
            sign,
        } => {
            with_module(&conn, op.get().as_ref(), verbose, |c| {
                expect_done(
                    c,
                    &Request::CreateAuditEntry { note, sign },
                    "CreateAuditEntry",
                )
            })?;
            outln!("audit entry written");
            ok()
        }
        M::Zeroize { conn, op, yes } => {
            confirm(yes)?;
            done(
                &conn,
                &op,
                verbose,
                &Request::Zeroize,
                "module zeroized: every key is destroyed; reset it (postvault module reset --yes) to use it again",
            )
        }
        M::Reset { conn, op, yes } => {
            confirm(yes)?;
            with_module(&conn, op.get().as_ref(), verbose, |c| {
                expect_done(c, &Request::Reset, "Reset")
            })?;
            outln!("module reset: it is Uninitialized (initialize it with postvault module init)");
            ok()
        }
    }
}

fn ok() -> Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}

fn confirm(yes: bool) -> Result<()> {
    if !yes {
        bail!("this destroys all keys in the module; add --yes");
    }
    Ok(())
}

/// Sends a command that answers `Done`.
pub fn expect_done(c: &mut Conn, req: &Request, name: &str) -> Result<()> {
    match c.call(req)? {
        Response::Done => Ok(()),
        other => Err(unexpected(name, &other)),
    }
}

/// Logs on, runs one command that answers `Done`, prints `msg`.
pub fn done(
    conn: &ConnArgs,
    op: &OperatorArgs,
    verbose: bool,
    req: &Request,
    msg: &str,
) -> Result<ExitCode> {
    with_module(conn, Some(op), verbose, |c| {
        expect_done(c, req, req.kind().name())
    })?;
    outln!("{msg}");
    ok()
}

fn serve(a: ServeArgs) -> Result<ExitCode> {
    let captured = Captured::default();
    let module = conn::open_local(
        &a.dir,
        LocalOptions {
            seal: a.seal,
            faults: a.fail_selftest,
            sign_every: a.sign_every,
            audit_capture: Some(Arc::clone(&captured)),
        },
    )?;
    let id = module.module_id().unwrap_or_else(|| "uninitialized".into());
    let state = module.current_state();
    if let Some(why) = module.error() {
        eprintln!("warning: the module is in Error state: {why}");
    }
    let socket = a.socket.clone();
    daemon::serve(module, &a.socket, Some(captured), move || {
        outln!("module {id} state {state} serving on {}", socket.display());
        let _ = std::io::stdout().flush();
    })
    .with_context(|| format!("cannot serve the module on {}", a.socket.display()))?;
    ok()
}

fn print_tests<'a>(tests: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> bool {
    let mut all = true;
    for (name, failure) in tests {
        match failure {
            None => outln!("{name} ok"),
            Some("") => {
                all = false;
                outln!("{name} FAILED");
            }
            Some(why) => {
                all = false;
                outln!("{name} FAILED ({why})");
            }
        }
    }
    all
}

fn self_tests(
    conn: &ConnArgs,
    fail: Option<postvault_crypto::Faults>,
    verbose: bool,
) -> Result<ExitCode> {
    let passed = if conn::given(conn) {
        if fail.is_some() {
            usage!(
                "--fail only applies to the in-process self-tests (without --socket/--dir); to see a module fail them, start its daemon with `postvault module serve --fail-selftest NAME`"
            );
        }
        let list = with_module(conn, None, verbose, |c| {
            match c.call(&Request::RunSelfTests) {
                Ok(Response::SelfTests(list)) => Ok(list),
                Ok(other) => Err(unexpected("RunSelfTests", &other)),
                // The module is now in Error; its status holds the full list.
                Err(e)
                    if matches!(
                        e.downcast_ref::<ModuleError>(),
                        Some(ModuleError::SelfTest(_))
                    ) =>
                {
                    Ok(c.status()?.self_tests)
                }
                Err(e) => Err(e),
            }
        })?;
        print_tests(list.iter().map(|(n, ok)| (n.as_str(), (!ok).then_some(""))))
    } else {
        let report = selftest::run_power_up(&fail.unwrap_or_default());
        print_tests(
            report
                .results
                .iter()
                .map(|r| (r.test.as_str(), r.failure.as_deref())),
        )
    };
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn init(a: InitArgs, verbose: bool) -> Result<ExitCode> {
    if a.kc.len() < 2 {
        usage!("give at least two key custodians (--kc ID[=PWFILE] twice or more)");
    }
    if a.clone && a.conn.dir.is_some() {
        usage!(
            "a clone receives its MKS shares over several invocations, but with --dir the module restarts at each one, which it treats as a failed import; start a daemon (`postvault module serve --dir DIR --socket PATH`) and use --socket"
        );
    }
    let specs = [
        (&a.admin, Role::Administrator),
        (&a.so, Role::SecurityOfficer),
    ]
    .into_iter()
    .chain(a.kc.iter().map(|k| (k, Role::KeyCustodian)));
    // Check everything the module would refuse before it starts initializing:
    // a refusal half-way leaves a module that must be reset.
    let mut seen = HashSet::new();
    let mut users = Vec::new();
    for (spec, role) in specs {
        check_user_id(&spec.id)?;
        if !seen.insert(spec.id.clone()) {
            usage!(
                "user ID {} is given twice; every account needs its own",
                spec.id
            );
        }
        let password = secrets::new_password(
            &spec.id,
            spec.password_file.as_deref(),
            &format!("{}=PWFILE", spec.id),
        )?;
        check_password_strength(&password)
            .with_context(|| format!("the password of {}", spec.id))?;
        users.push(NewUser {
            user_id: spec.id.clone(),
            role,
            password,
            settings: AccountSettings::default(),
        });
    }
    let so_password = users[1].password.clone();
    let time = a.time.unwrap_or_else(|| SystemClock.now());

    let (status, transport_key) = with_new_module(&a.conn, verbose, |c| {
        let before = c.status()?;
        if before.current_state != ModuleState::Uninitialized {
            bail!(
                "the module is already initialized (state {}); to start over, the Security Officer runs `postvault module reset --yes`",
                before.current_state
            );
        }
        c.call(&Request::StartInitialization { time })?;
        let rest = (|| {
            expect_done(
                c,
                &Request::InitializeAccessControl { users },
                "InitializeAccessControl",
            )?;
            c.logon_with(&a.so.id, so_password)?;
            let transport_key = if a.master {
                match c.call(&Request::GenerateMks)? {
                    Response::Mks(_) => None,
                    other => return Err(unexpected("GenerateMks", &other)),
                }
            } else {
                match c.call(&Request::GenerateTransportKey)? {
                    Response::TransportKey(k) => Some(k),
                    other => return Err(unexpected("GenerateTransportKey", &other)),
                }
            };
            Ok((c.status()?, transport_key))
        })();
        if rest.is_err() {
            eprintln!(
                "note: initialization stopped half-way; the module must be reset before it is initialized again (a module restarted in this state opens in Error, and then anyone may run `postvault module reset --yes`)"
            );
        }
        rest
    })?;
    let id = status.module_id.unwrap_or_default();
    match transport_key {
        None => {
            outln!("module {id} initialized as master");
            if let Some(m) = status.keys.active_mks {
                outln!("active MKS {} generation {}", m.id, m.generation);
            }
        }
        Some(k) => {
            let hex_key = hex::encode(&k);
            outln!(
                "module {id} initialized as clone (state {}); key custodians import MKS shares next",
                status.current_state
            );
            outln!("transport key {hex_key}");
            if let Some(out) = &a.transport_key_out {
                output::write_public(out, &format!("{hex_key}\n"))?;
                outln!("transport key written to {}", out.display());
            }
        }
    }
    ok()
}

fn settings(s: &SettingsArgs) -> AccountSettings {
    AccountSettings {
        failure_limit: s.failure_limit,
        logon_timeout_secs: s.logon_timeout,
        account_expires: s.expires,
        password_period_secs: s.password_period,
    }
}

fn users(cmd: UserCommand, verbose: bool) -> Result<ExitCode> {
    match cmd {
        UserCommand::Create {
            conn,
            op,
            user,
            role,
            new_password_file,
            settings: s,
        } => {
            let password = secrets::new_password(
                &user,
                new_password_file.as_deref(),
                "--new-password-file FILE",
            )?;
            let req = Request::CreateUser {
                user: NewUser {
                    user_id: user.clone(),
                    role,
                    password,
                    settings: settings(&s),
                },
            };
            with_module(&conn, Some(&op), verbose, |c| {
                expect_done(c, &req, "CreateUser")
            })?;
            outln!("created user {user} ({role})");
            ok()
        }
        UserCommand::Delete { conn, op, user } => done(
            &conn,
            &op,
            verbose,
            &Request::DeleteUser {
                user_id: user.clone(),
            },
            &format!("deleted user {user}"),
        ),
        UserCommand::Modify {
            conn,
            op,
            user,
            settings: s,
            new_password_file,
            unlock,
        } => {
            let settings = settings(&s);
            if settings == AccountSettings::default() && new_password_file.is_none() && !unlock {
                usage!("nothing to change: give a setting, --new-password-file FILE or --unlock");
            }
            let new_password = new_password_file
                .as_deref()
                .map(secrets::from_file)
                .transpose()?;
            let req = Request::ModifyUser {
                user_id: user.clone(),
                settings,
                new_password,
                unlock,
            };
            done(&conn, &op, verbose, &req, &format!("modified user {user}"))
        }
        UserCommand::List { conn, op, json } => {
            let list = with_module(&conn, Some(&op), verbose, |c| {
                match c.call(&Request::ViewUsers)? {
                    Response::Users(u) => Ok(u),
                    other => Err(unexpected("ViewUsers", &other)),
                }
            })?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                out!("{}", output::users_table(&list));
            }
            ok()
        }
    }
}

/// Copies DIR/audit.log up to its last complete line (a daemon may be
/// appending to it right now). Takes no module lock.
fn audit_log(dir: &std::path::Path, out: &std::path::Path) -> Result<ExitCode> {
    let path = dir.join(AUDIT_LOG_FILE);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read the audit log {}; is {} a module directory?",
            path.display(),
            dir.display()
        )
    })?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let bytes = &bytes[..complete];
    std::fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
    let entries = bytes.iter().filter(|&&b| b == b'\n').count();
    outln!(
        "copied {entries} audit entries from {} to {}",
        path.display(),
        out.display()
    );
    ok()
}
