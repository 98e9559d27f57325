//! End-to-end tests of the `postvault` binary: the in-process self-tests,
//! the full ceremony script (two daemons, share cloning, rollover, audit
//! export) with tampered logs afterwards, in-process module use and its lock,
//! and the refusals an operator meets first (wrong password, missing --yes,
//! missing or conflicting module options).
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use postvault_crypto::Faults;
use postvault_crypto::ecdsa::{EcdsaP256KeyPair, public_key_to_pem};

const BIN: &str = env!("CARGO_BIN_EXE_postvault");

/// The binary with a clean environment for module selection.
fn postvault() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("POSTVAULT_MODULE_SOCKET")
        .env_remove("POSTVAULT_MODULE_DIR")
        .stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> Output {
    postvault().args(args).output().expect("run postvault")
}

/// stdout and stderr together.
fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// A module directory initialized as a master through `--dir`, with
/// password files `<user>.pw` beside it.
struct Master {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dir: PathBuf,
}

impl Master {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for u in ["admin", "so", "kc1", "kc2"] {
            std::fs::write(root.join(format!("{u}.pw")), format!("{u}-correct-horse\n")).unwrap();
        }
        let dir = root.join("module");
        let m = Master {
            _tmp: tmp,
            root,
            dir,
        };
        let o = run(&[
            "module",
            "init",
            "--master",
            "--dir",
            s(&m.dir),
            "--admin",
            &m.user("admin"),
            "--so",
            &m.user("so"),
            "--kc",
            &m.user("kc1"),
            "--kc",
            &m.user("kc2"),
        ]);
        assert!(o.status.success(), "init failed: {}", text(&o));
        assert!(text(&o).contains("initialized as master"), "{}", text(&o));
        m
    }

    fn pw(&self, user: &str) -> String {
        s(&self.root.join(format!("{user}.pw"))).to_string()
    }

    fn user(&self, user: &str) -> String {
        format!("{user}={}", self.pw(user))
    }

    fn status(&self) -> Output {
        run(&["module", "status", "--dir", s(&self.dir)])
    }
}

#[test]
fn selftest_in_process_reports_each_algorithm() {
    let names = [
        "sha256",
        "hmac-sha256",
        "aes-256-gcm",
        "hkdf-sha256",
        "ecdsa-p256",
        "x25519",
        "hpke",
        "argon2id",
        "shamir",
        "rng",
    ];
    let o = run(&["module", "selftest"]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let expected: Vec<String> = names.iter().map(|n| format!("{n} ok")).collect();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);

    let o = run(&["module", "selftest", "--fail", "hpke"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert!(
        stdout.lines().any(|l| l.starts_with("hpke FAILED")),
        "{stdout}"
    );
    assert_eq!(stdout.lines().filter(|l| l.ends_with(" ok")).count(), 9);

    let o = run(&["module", "selftest", "--fail", "no-such-test"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no-such-test"), "{}", text(&o));
}

/// Replaces one digit of the `time` field in `line` by another digit.
fn corrupt_time(line: &str) -> String {
    let at = line.find("\"time\":").expect("entry has a time") + "\"time\":".len();
    let mut bytes = line.as_bytes().to_vec();
    let i = at + 2; // a digit in the middle of the number
    assert!(bytes[i].is_ascii_digit());
    bytes[i] = if bytes[i] == b'1' { b'2' } else { b'1' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn ceremony_script_succeeds_and_tampered_logs_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ceremony");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/ceremony.sh");
    let o = Command::new("bash")
        .arg(script)
        .arg(&out)
        .env("POSTVAULT", BIN)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    assert!(o.status.success(), "ceremony failed:\n{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ceremony ok"),
        "{}",
        text(&o)
    );
    for f in [
        "master-audit.log",
        "clone-audit.log",
        "master-audit-key.pem",
        "clone-audit-key.pem",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }

    let log = out.join("master-audit.log");
    let key = out.join("master-audit-key.pem");
    let verify = |log: &Path| run(&["audit", "verify", "--log", s(log), "--key", s(&key)]);
    assert!(verify(&log).status.success());

    // One changed digit in the middle entry: that entry's signature, or the
    // next entry's link to it, no longer holds.
    let original = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let mid = lines.len() / 2;
    let mut tampered: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    tampered[mid] = corrupt_time(lines[mid]);
    let bad = out.join("tampered.log");
    std::fs::write(&bad, tampered.join("\n") + "\n").unwrap();
    let o = verify(&bad);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("audit log FAILED"), "{t}");
    assert!(
        t.contains(&format!("entry {mid} (seq {mid})"))
            || t.contains(&format!("hash of entry {mid}\n")),
        "the output does not name entry {mid}: {t}"
    );

    // The first entry cut off.
    let truncated = out.join("truncated.log");
    std::fs::write(&truncated, lines[1..].join("\n") + "\n").unwrap();
    let o = verify(&truncated);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("entry 0 (seq 1)"), "{}", text(&o));

    // The clone's key does not verify the master's log.
    let o = run(&[
        "audit",
        "verify",
        "--log",
        s(&log),
        "--key",
        s(&out.join("clone-audit-key.pem")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn audit_verify_with_the_wrong_key_fails() {
    let m = Master::new();
    let log = m.root.join("copy.log");
    let o = run(&["module", "audit-log", "--dir", s(&m.dir), "--out", s(&log)]);
    assert!(o.status.success(), "{}", text(&o));
    let stranger = EcdsaP256KeyPair::generate(&Faults::none()).unwrap();
    let key = m.root.join("stranger.pem");
    std::fs::write(&key, public_key_to_pem(&stranger.public_key())).unwrap();
    let o = run(&["audit", "verify", "--log", s(&log), "--key", s(&key)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("audit log FAILED: entry 0 (seq 0)"),
        "{}",
        text(&o)
    );

    // Unreadable files fail with their path in the message.
    let missing = m.root.join("missing.pem");
    let o = run(&["audit", "verify", "--log", s(&log), "--key", s(&missing)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains(s(&missing)), "{}", text(&o));
}

/// A daemon serving `dir`, killed on drop.
struct Daemon(Child);

impl Daemon {
    fn start(dir: &Path, socket: &Path) -> Self {
        let mut child = postvault()
            .args(["module", "serve", "--dir", s(dir), "--socket", s(socket)])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start daemon");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("serving on"), "daemon said {line:?}");
        assert!(line.contains("state Operational"), "daemon said {line:?}");
        Daemon(child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn in_process_module_and_its_lock() {
    let m = Master::new();
    let o = m.status();
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("Operational"), "{t}");
    assert!(t.contains("generation 1"), "{t}");

    let o = run(&["module", "status", "--json", "--dir", s(&m.dir)]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    assert_eq!(v["current_state"], "Operational");

    let socket = m.root.join("m.sock");
    let _daemon = Daemon::start(&m.dir, &socket);
    let o = m.status();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("in use by another process"),
        "{}",
        text(&o)
    );
    let o = run(&["module", "status", "--socket", s(&socket)]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&[
        "module",
        "logon",
        "--socket",
        s(&socket),
        "--as",
        "so",
        "--password-file",
        &m.pw("so"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("security-officer"), "{}", text(&o));
}

#[test]
fn wrong_password_is_refused() {
    let m = Master::new();
    let wrong = m.root.join("wrong.pw");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let o = run(&[
        "module",
        "logon",
        "--dir",
        s(&m.dir),
        "--as",
        "so",
        "--password-file",
        s(&wrong),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("logon failed"), "{}", text(&o));

    // No password file and no terminal: say how to give one.
    let o = run(&["module", "logon", "--dir", s(&m.dir), "--as", "so"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--password-file"), "{}", text(&o));
}

#[test]
fn reset_needs_yes() {
    let m = Master::new();
    let o = run(&[
        "module",
        "reset",
        "--dir",
        s(&m.dir),
        "--as",
        "so",
        "--password-file",
        &m.pw("so"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("this destroys all keys in the module; add --yes"),
        "{}",
        text(&o)
    );
    assert!(text(&m.status()).contains("Operational"));

    let o = run(&[
        "module",
        "reset",
        "--yes",
        "--dir",
        s(&m.dir),
        "--as",
        "so",
        "--password-file",
        &m.pw("so"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&m.status()).contains("uninitialized"));
}

#[test]
fn module_options_are_checked() {
    let o = run(&["module", "status"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--socket"), "{}", text(&o));

    let o = run(&["module", "status", "--socket", "/x.sock", "--dir", "/x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // A --dir that does not exist is a mistake, not a new module: only
    // `module init` makes one.
    let tmp = tempfile::tempdir().unwrap();
    let typo = tmp.path().join("no-such-module");
    for cmd in [&["status"][..], &["whoami", "--as", "so"]] {
        let mut args = vec!["module"];
        args.extend(cmd);
        args.extend(["--dir", s(&typo)]);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{cmd:?}: {}", text(&o));
        assert!(
            text(&o).contains("there is no module directory")
                && text(&o).contains("postvault module init"),
            "{cmd:?}: {}",
            text(&o)
        );
        assert!(!typo.exists(), "{cmd:?} made {}", typo.display());
    }

    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("nobody.sock");
    let o = run(&["module", "status", "--socket", s(&socket)]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains(s(&socket)) && t.contains("postvault module serve"),
        "{t}"
    );
}
