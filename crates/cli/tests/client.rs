//! End-to-end tests of `postvault client ...`: the real `postvault serve`
//! on port 0 in a temporary data directory, and the real binary as the
//! customer, with its state directory in another temporary directory. The
//! customer signs up, logs on, registers a meter, buys postage, prints a
//! label (checked: the PDF and PNG exist, the PNG decodes to the 113 bytes
//! the ledger shows, and `postvault verify` says VALID with the CA and PSD
//! certificates), prints in bulk and a correction, reads the history,
//! refunds the meter and logs off.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_postvault");

/// A running `postvault serve`; killed when dropped.
struct Server {
    child: Child,
    stdout: BufReader<ChildStdout>,
    url: String,
    fingerprint: String,
}

impl Server {
    fn start(data: &Path) -> Server {
        Self::start_with(data, None)
    }

    /// Starts `postvault serve --data DATA [--config CONFIG]`.
    fn start_with(data: &Path, config: Option<&Path>) -> Server {
        Self::start_args(data, config, &[])
    }

    /// Starts `postvault serve --data DATA [--config CONFIG] ARGS`.
    fn start_args(data: &Path, config: Option<&Path>, args: &[&std::ffi::OsStr]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").args(args);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let mut child = cmd
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("POSTVAULT_DATA")
            .env_remove("POSTVAULT_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start postvault serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let mut operator_line = String::new();
        stdout.read_line(&mut operator_line).unwrap();
        // postvault serving https://ADDR (certificate sha256 FP)
        let rest = first
            .trim()
            .strip_prefix("postvault serving ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        let (url, fp) = rest.split_once(" (certificate sha256 ").unwrap();
        Server {
            child,
            stdout,
            url: url.to_string(),
            fingerprint: fp.trim_end_matches(')').to_string(),
        }
    }
}

impl Server {
    /// The next line the server prints (after its first two).
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    /// SIGTERM, then waits for the server to exit; returns whether it
    /// exited cleanly.
    fn stop(mut self) -> bool {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not stop on SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The customer's side: a state directory and a password file.
struct Customer {
    state: PathBuf,
    password_file: PathBuf,
}

impl Customer {
    fn new(dir: &Path, password: &str) -> Customer {
        std::fs::create_dir_all(dir).unwrap();
        let password_file = dir.join("password");
        std::fs::write(&password_file, format!("{password}\n")).unwrap();
        Customer {
            state: dir.join("state"),
            password_file,
        }
    }

    /// Runs `postvault client ARGS --state S --password-file F`.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("client")
            .args(args)
            .arg("--state")
            .arg(&self.state)
            .arg("--password-file")
            .arg(&self.password_file)
            .env_remove("POSTVAULT_PASSWORD")
            .env_remove("POSTVAULT_CLIENT_DIR")
            .stdin(Stdio::null());
        cmd.output().expect("run postvault client")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "postvault client {args:?} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        stdout
    }

    /// Runs `postvault client VERB --url U --fingerprint F --login LOGIN`
    /// against `server` (sign-up or logon) and expects success.
    fn at(&self, verb: &str, server: &Server, login: &str) -> String {
        self.ok(&[
            verb,
            "--url",
            &server.url,
            "--fingerprint",
            &server.fingerprint,
            "--login",
            login,
        ])
    }

    /// Runs and expects failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "postvault client {args:?} succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// The meter file the client keeps.
fn meter_file(state: &Path, device: &str) -> serde_json::Value {
    let device: postvault_indicium::DeviceId = device.parse().unwrap();
    let text = std::fs::read_to_string(state.join(format!("meters/{device}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The indicium hex of `piece` in `postvault client history` output.
fn ledger_indicium(history: &str, piece: u64) -> Vec<u8> {
    let prefix = format!("piece {piece} ");
    let line = history
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no piece {piece} in the history:\n{history}"));
    let hex = line.rsplit("indicium ").next().unwrap().trim();
    hex::decode(hex).unwrap()
}

fn verify(label: &Path, ca: &Path, cert: &Path) -> Output {
    Command::new(BIN)
        .arg("verify")
        .arg(label)
        .arg("--ca")
        .arg(ca)
        .arg("--cert")
        .arg(cert)
        .output()
        .unwrap()
}

#[test]
fn customer_signs_up_registers_buys_prints_and_refunds() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let alice = Customer::new(work.path(), "alice password 1234");

    // A wrong fingerprint is refused before anything is sent.
    let wrong = ["00"; 32].join(":");
    let e = alice.fails(&[
        "signup",
        "--url",
        &server.url,
        "--fingerprint",
        &wrong,
        "--login",
        "alice",
    ]);
    assert!(e.contains("not the pinned one"), "{e}");

    let out = alice.ok(&[
        "signup",
        "--url",
        &server.url,
        "--fingerprint",
        &server.fingerprint,
        "--login",
        "alice",
    ]);
    assert!(out.contains("signed up alice"), "{out}");
    // A wrong password is told apart from an ended session.
    let mallory = Customer::new(&work.path().join("m"), "not alice's password");
    let e = mallory.fails(&[
        "logon",
        "--url",
        &server.url,
        "--fingerprint",
        &server.fingerprint,
        "--login",
        "alice",
    ]);
    assert!(e.contains("wrong login or password"), "{e}");
    let out = alice.ok(&["logon"]);
    assert!(out.contains("logged on as alice"), "{out}");

    // The state directory is private.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&alice.state), 0o700);
    assert_eq!(mode(&alice.state.join("client.json")), 0o600);

    // Register a meter.
    let out = alice.ok(&["register", "--zip", "10001-0001"]);
    let device = out
        .lines()
        .find_map(|l| l.strip_prefix("registered meter "))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no device ID in {out}"))
        .to_string();
    let meter = meter_file(&alice.state, &device);
    assert!(!meter["hmac_key"].as_str().unwrap().is_empty());
    let ca = work.path().join("ca.pem");
    let cert = work.path().join("cert.pem");
    std::fs::write(&ca, meter["ca_certificate_pem"].as_str().unwrap()).unwrap();
    std::fs::write(&cert, meter["certificate_pem"].as_str().unwrap()).unwrap();

    // Buy, then print one label (--meter left out: the account's only meter).
    let out = alice.ok(&["buy", "--amount", "50.00"]);
    assert!(out.contains("bought $50.000"), "{out}");
    let label = work.path().join("label.pdf");
    let out = alice.ok(&[
        "print",
        "--amount",
        "0.68",
        "--from-zip",
        "10001-0001",
        "--to-zip",
        "20500-0001",
        "--class",
        "first",
        "--out",
        label.to_str().unwrap(),
    ]);
    assert!(out.contains("printed piece 1"), "{out}");
    assert!(out.contains("descending $49.320"), "{out}");
    let pdf = std::fs::read(&label).unwrap();
    assert!(pdf.starts_with(b"%PDF"));
    let png_path = label.with_extension("png");
    let png = std::fs::read(&png_path).unwrap();
    let decoded = postvault_label::decode_image(&png).unwrap();

    // A label is never overwritten.
    let e = alice.fails(&[
        "print",
        "--amount",
        "0.68",
        "--from-zip",
        "10001",
        "--out",
        label.to_str().unwrap(),
    ]);
    assert!(e.contains("already exists"), "{e}");
    // Another ZIP5 than the licensing ZIP's is refused before sending.
    let e = alice.fails(&[
        "print",
        "--amount",
        "0.68",
        "--from-zip",
        "20001",
        "--out",
        work.path().join("x.pdf").to_str().unwrap(),
    ]);
    assert!(e.contains("licensing ZIP"), "{e}");

    // The ledger shows the same 113 bytes, and the label verifies.
    let history = alice.ok(&["history", "--meter", &device]);
    // Times are dates a person reads, not Unix seconds.
    let line = history
        .lines()
        .find(|l| l.trim().starts_with("piece 1 "))
        .unwrap();
    let year = time::OffsetDateTime::now_utc().year();
    assert!(
        line.contains(&format!("  {year}-")) && line.contains(" UTC "),
        "{line}"
    );
    let ledger = ledger_indicium(&history, 1);
    assert_eq!(ledger.len(), 113);
    assert_eq!(&decoded[..], &ledger[..]);
    let v = verify(&png_path, &ca, &cert);
    let vout = String::from_utf8_lossy(&v.stdout);
    assert!(v.status.success(), "{vout}");
    assert!(vout.starts_with("VALID"), "{vout}");
    // Without --cert, the PSD certificate comes from the server (pinned);
    // the verdict still rests on the local CA.
    let v = Command::new(BIN)
        .arg("verify")
        .arg(&png_path)
        .arg("--ca")
        .arg(&ca)
        .args(["--url", &server.url, "--fingerprint", &server.fingerprint])
        .output()
        .unwrap();
    let vout = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success(),
        "{vout}{}",
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(vout.starts_with("VALID"), "{vout}");
    let v = Command::new(BIN)
        .arg("verify")
        .arg(&png_path)
        .arg("--ca")
        .arg(&cert)
        .args(["--url", &server.url, "--fingerprint", &server.fingerprint])
        .output()
        .unwrap();
    assert!(!v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("NOT VALID"));

    // Bulk: a bad CSV is refused, naming the line, before anything is printed.
    let csv = work.path().join("bulk.csv");
    std::fs::write(
        &csv,
        "amount,from_zip,to_zip,class\n0.68,10001-0001,20500-0001,first\n0.50,10001,,nope-nope\n",
    )
    .unwrap();
    let labels = work.path().join("labels");
    let e = alice.fails(&[
        "bulk",
        "--csv",
        csv.to_str().unwrap(),
        "--out-dir",
        labels.to_str().unwrap(),
    ]);
    assert!(e.contains("line 3"), "{e}");
    assert!(!labels.join("000001.pdf").exists());
    std::fs::write(
        &csv,
        "amount,from_zip,to_zip,class\n0.68,10001-0001,20500-0001,first\n0.50,10001,,priority\n1.00,10001-0001,,\n",
    )
    .unwrap();
    let out = alice.ok(&[
        "bulk",
        "--meter",
        &device,
        "--csv",
        csv.to_str().unwrap(),
        "--out-dir",
        labels.to_str().unwrap(),
    ]);
    assert!(out.contains("printed 3 labels"), "{out}");
    for n in 1..=3 {
        assert!(labels.join(format!("{n:06}.pdf")).exists());
        let png = std::fs::read(labels.join(format!("{n:06}.png"))).unwrap();
        postvault_label::decode_image(&png).unwrap();
    }

    // A correction.
    let corr = work.path().join("corr.pdf");
    let out = alice.ok(&[
        "correct",
        "--amount",
        "0.10",
        "--from-zip",
        "10001-0001",
        "--out",
        corr.to_str().unwrap(),
    ]);
    assert!(out.contains("correction piece 5"), "{out}");

    // Status: 5 pieces, 50 - 0.68 - 0.68 - 0.50 - 1.00 - 0.10.
    let out = alice.ok(&["status", "--meter", &device]);
    assert!(out.contains("$47.040"), "{out}");
    assert!(out.contains("pieces               5"), "{out}");

    // Refund: without --yes nothing happens; then the meter cannot print.
    let out = alice.run(&["refund", "--meter", &device]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(
        e.contains(&format!("withdraws meter {device} for good")) && e.contains("--yes"),
        "{e}"
    );
    let out = alice.ok(&["status", "--meter", &device]);
    assert!(out.contains("$47.040") && out.contains("(Leased)"), "{out}");
    let out = alice.ok(&["refund", "--meter", &device, "--yes"]);
    assert!(out.contains("refunded $47.040"), "{out}");
    let e = alice.fails(&[
        "print",
        "--amount",
        "0.68",
        "--from-zip",
        "10001",
        "--out",
        work.path().join("after.pdf").to_str().unwrap(),
    ]);
    assert!(
        e.contains("refunded and withdrawn") && e.contains("postvault client register"),
        "{e}"
    );
    let history = alice.ok(&["history"]);
    assert!(history.contains("refund"), "{history}");

    // Log off: later commands need a logon.
    alice.ok(&["logoff"]);
    let e = alice.fails(&["status"]);
    assert!(e.contains("postvault client logon"), "{e}");
}

#[test]
fn client_refuses_bad_input_before_contacting_anyone() {
    let work = tempfile::tempdir().unwrap();
    let c = Customer::new(work.path(), "pw");
    let e = c.fails(&["buy", "--amount", "-5"]);
    assert!(e.contains("negative"), "{e}");
    let e = c.fails(&["register", "--zip", "1000"]);
    assert!(e.contains("not a ZIP code"), "{e}");
    let e = c.fails(&["status"]);
    assert!(e.contains("postvault client signup"), "{e}");
    let e = c.fails(&["signup", "--login", "x"]);
    assert!(e.contains("--url"), "{e}");
}

#[test]
fn provider_keygen_writes_a_private_key_file_once() {
    use std::os::unix::fs::PermissionsExt as _;
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("provider.key");
    let public = work.path().join("provider.pub.pem");
    let pass = work.path().join("passphrase");
    std::fs::write(&pass, "provider passphrase\n").unwrap();
    let run = || {
        Command::new(BIN)
            .args(["provider", "keygen", "--out"])
            .arg(&key)
            .arg("--passphrase-file")
            .arg(&pass)
            .arg("--public-out")
            .arg(&public)
            .env_remove("POSTVAULT_PASSPHRASE")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("-----BEGIN PUBLIC KEY-----"), "{stdout}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = std::fs::read_to_string(&public).unwrap();
    let point = postvault_crypto::ecdsa::public_key_from_pem(&pem).unwrap();
    // The key file opens with the passphrase and holds that key.
    let text = std::fs::read_to_string(&key).unwrap();
    let kp = postvault_crypto::ecdsa::EcdsaP256KeyPair::from_keyfile(b"provider passphrase", &text)
        .unwrap();
    assert_eq!(kp.public_key(), point);
    assert!(postvault_crypto::ecdsa::EcdsaP256KeyPair::from_keyfile(b"wrong", &text).is_err());
    // Never overwritten.
    let again = run();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
}

/// Copies the SQLite database (with its WAL) of a stopped server.
fn copy_db(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("postvault.sqlite") {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// Replaces a stopped server's database with a copy made earlier.
fn restore_db(snapshot: &Path, data: &Path) {
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("postvault.sqlite")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    copy_db(snapshot, data);
}

/// The seed's module-table cross-check at start: a database restored from
/// a copy one transaction old is met by rolling the module back to it
/// (Auto-Recover, audited) and printing goes on from there; a copy four
/// transactions old is more than the module can roll back, so the server
/// refuses to start and says why.
#[test]
fn a_database_rolled_back_is_recovered_or_refused_at_start() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = work.path().join("server.toml");
    std::fs::write(&config, "modules = 1\nmeter_stock = 1\n").unwrap();
    let alice = Customer::new(&work.path().join("alice"), "alice password 1234");
    let labels = std::cell::Cell::new(0);
    let print = |n: u32| {
        labels.set(labels.get() + 1);
        let out = alice.ok(&[
            "print",
            "--amount",
            "0.50",
            "--from-zip",
            "10001",
            "--out",
            work.path()
                .join(format!("label{}.pdf", labels.get()))
                .to_str()
                .unwrap(),
        ]);
        assert!(out.contains(&format!("printed piece {n} ")), "{out}");
    };

    let server = Server::start_with(&data, Some(&config));
    alice.at("signup", &server, "alice");
    alice.ok(&["register", "--zip", "10001-0001"]);
    alice.ok(&["buy", "--amount", "10.00"]);
    print(1);
    drop(server);
    let one_piece = work.path().join("snap1");
    copy_db(&data, &one_piece);

    // The URL changes with each start (port 0): log on again each time.
    let relogon = |s: &Server| {
        alice.at("logon", s, "alice");
    };
    let server = Server::start_with(&data, Some(&config));
    relogon(&server);
    print(2);
    print(3);
    drop(server);
    let three_pieces = work.path().join("snap3");
    copy_db(&data, &three_pieces);
    let server = Server::start_with(&data, Some(&config));
    relogon(&server);
    print(4);
    drop(server);

    // One transaction old: the module is rolled back; piece 4 is printed
    // again (the discarded one is in the module's audit log).
    restore_db(&three_pieces, &data);
    let server = Server::start_with(&data, Some(&config));
    relogon(&server);
    let status = alice.ok(&["status"]);
    assert!(status.contains("pieces               3"), "{status}");
    print(4);
    let status = alice.ok(&["status"]);
    assert!(status.contains("$8.000"), "{status}");
    drop(server);
    let log = std::fs::read_to_string(data.join("modules/m0/audit.log")).unwrap();
    assert!(
        log.contains("AutoRecoverCheckpoint"),
        "no Auto-Recover entry"
    );

    // Four transactions old: refused, with the reason, and nothing served.
    restore_db(&one_piece, &data);
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("POSTVAULT_DATA")
        .env_remove("POSTVAULT_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(!text.contains("postvault serving"), "{text}");
    assert!(text.contains("cross-check"), "{text}");
    assert!(text.contains("rolled back"), "{text}");
}

/// Customers registering at once when MeterGen's stock is smaller than
/// the crowd: each one gets a meter of its own (a customer who finds the
/// stock empty gets a meter made for them).
#[test]
fn concurrent_registrations_each_get_their_own_meter() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = work.path().join("server.toml");
    std::fs::write(&config, "meter_stock = 1\n").unwrap();
    let server = Server::start_with(&data, Some(&config));
    let devices: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..5)
            .map(|i| {
                let (url, fp, dir) = (&server.url, &server.fingerprint, work.path());
                scope.spawn(move || {
                    let c = Customer::new(&dir.join(format!("c{i}")), "a long password 1234");
                    c.ok(&[
                        "signup",
                        "--url",
                        url,
                        "--fingerprint",
                        fp,
                        "--login",
                        &format!("customer{i}"),
                    ]);
                    let out = c.ok(&["register", "--zip", "10001"]);
                    out.lines()
                        .find_map(|l| l.strip_prefix("registered meter "))
                        .and_then(|r| r.split_whitespace().next())
                        .unwrap()
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut unique = devices.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{devices:?}");
}

/// A running `postvault module serve`; killed (SIGKILL) when dropped.
struct Daemon {
    child: Child,
}

impl Daemon {
    /// Starts a module daemon for `dir` on `socket` and waits until it
    /// listens.
    fn start(dir: &Path, socket: &Path) -> Daemon {
        let mut child = Command::new(BIN)
            .args(["module", "serve", "--dir"])
            .arg(dir)
            .arg("--socket")
            .arg(socket)
            .env_remove("POSTVAULT_MODULE_DIR")
            .env_remove("POSTVAULT_MODULE_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start postvault module serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.contains("serving on"), "{first:?}");
        Daemon { child }
    }
}

/// The line `postvault serve` prints about its modules, with the default
/// number of async workers.
fn modules_line(serving: usize, members: usize) -> String {
    let workers = postvault_server::default_async_workers_here("sqlite");
    let s = if workers == 1 { "" } else { "s" };
    format!(
        "modules: {serving} of {members} in service; {workers} async worker thread{s} serving HTTPS"
    )
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn module_daemons_serve_the_server_and_one_that_dies_is_taken_out_of_service() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let socket = |i: usize| work.path().join(format!("m{i}.sock"));
    let dir = |i: usize| work.path().join(format!("module{i}"));
    let _d0 = Daemon::start(&dir(0), &socket(0));
    let d1 = Daemon::start(&dir(1), &socket(1));
    let (s0, s1) = (socket(0), socket(1));
    let args = [
        std::ffi::OsStr::new("--module-socket"),
        s0.as_os_str(),
        std::ffi::OsStr::new("--module-socket"),
        s1.as_os_str(),
    ];
    // The async workers as configured (the other starts use the default).
    let config = work.path().join("postvault.toml");
    std::fs::write(&config, "async_workers = 3\n").unwrap();
    let mut server = Server::start_args(&data, Some(&config), &args);
    assert_eq!(
        server.line(),
        "modules: 2 of 2 in service; 3 async worker threads serving HTTPS"
    );
    let m0 = server.line();
    assert!(
        m0.contains("m0.sock") && m0.ends_with(") in service"),
        "{m0}"
    );
    let m1 = server.line();
    assert!(
        m1.contains("m1.sock") && m1.ends_with(") in service"),
        "{m1}"
    );
    // The modules live with their daemons, not in the server's data.
    assert!(!data.join("modules/m0").exists());
    assert!(dir(0).join("audit.log").exists() && dir(1).join("audit.log").exists());

    let alice = Customer::new(&work.path().join("alice"), "alice password 1234");
    let labels = std::cell::Cell::new(0);
    // Prints one label; a print the dying daemon did not answer is
    // refused with 503 and tried again. Returns the failures seen.
    let print = |n: u32| -> u32 {
        let mut failures = 0;
        loop {
            labels.set(labels.get() + 1);
            let label = work.path().join(format!("label{}.pdf", labels.get()));
            let out = alice.run(&[
                "print",
                "--amount",
                "0.50",
                "--from-zip",
                "10001",
                "--out",
                label.to_str().unwrap(),
            ]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            if out.status.success() {
                assert!(stdout.contains(&format!("printed piece {n} ")), "{stdout}");
                return failures;
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("did not answer"), "{stderr}");
            failures += 1;
            assert!(failures < 2, "piece {n} failed twice: {stderr}");
        }
    };
    let relogon = |s: &Server| {
        alice.at("logon", s, "alice");
    };
    alice.at("signup", &server, "alice");
    let out = alice.ok(&["register", "--zip", "10001-0001"]);
    let device = out
        .lines()
        .find_map(|l| l.strip_prefix("registered meter "))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    alice.ok(&["buy", "--amount", "10.00"]);
    for n in 1..=4 {
        assert_eq!(print(n), 0);
    }
    // A label from the daemons verifies against the deployment's CA.
    let meter = meter_file(&alice.state, &device);
    let ca = work.path().join("ca.pem");
    let cert = work.path().join("cert.pem");
    std::fs::write(&ca, meter["ca_certificate_pem"].as_str().unwrap()).unwrap();
    std::fs::write(&cert, meter["certificate_pem"].as_str().unwrap()).unwrap();
    let v = verify(&work.path().join("label4.png"), &ca, &cert);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));

    // Daemon 1 dies: at most one print fails (503) and the server goes on
    // with daemon 0.
    drop(d1);
    let failures: u32 = (5..=8).map(print).sum();
    assert!(failures <= 1, "{failures} prints failed");
    let status = alice.ok(&["status"]);
    assert!(status.contains("pieces               8"), "{status}");
    assert!(status.contains("descending register  $6.000"), "{status}");
    // A clean stop with one daemon dead still succeeds, and the live
    // daemon's log ends with a signed entry.
    assert!(server.stop(), "postvault serve failed to stop cleanly");
    let text = std::fs::read_to_string(dir(0).join("audit.log")).unwrap();
    let last = postvault_audit::parse_log(&text).unwrap().pop().unwrap();
    assert!(last.signature.is_some(), "{last:?}");
    assert_eq!(last.command, "CreateAuditEntry", "{last:?}");

    // Restarted without daemon 1: it is reported out of service.
    let mut server = Server::start_args(&data, None, &args);
    assert_eq!(server.line(), modules_line(1, 2));
    let _ = server.line();
    let m1 = server.line();
    assert!(
        m1.contains("m1.sock") && m1.contains("out of service") && m1.contains("cannot reach"),
        "{m1}"
    );
    relogon(&server);
    assert_eq!(print(9), 0);
    drop(server);

    // Daemon 1 back: both serve again, the same modules as before.
    let _d1 = Daemon::start(&dir(1), &socket(1));
    let mut server = Server::start_args(&data, None, &args);
    assert_eq!(server.line(), modules_line(2, 2));
    assert_eq!(server.line(), m0);
    let again = server.line();
    assert!(again.ends_with(") in service"), "{again}");
    relogon(&server);
    for n in 10..=13 {
        assert_eq!(print(n), 0);
    }
    let status = alice.ok(&["status"]);
    assert!(status.contains("pieces               13"), "{status}");
    assert!(status.contains("descending register  $3.500"), "{status}");
    assert!(status.contains("control total        $10.000"), "{status}");
}
