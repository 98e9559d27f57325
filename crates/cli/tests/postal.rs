//! End-to-end tests of the postal service: the real `postvault serve`
//! binary on port 0 (its URL and certificate fingerprint read from its
//! first line of output, as `serve.rs` does), customers played by the
//! `postvault-client` library (async, pinning the printed fingerprint, doing
//! the customer-side cryptography and checking every answer: the Configure
//! PSD MAC, the print answer's MAC, challenge, fields and signature), and
//! the provider played by the `postvault provider ...` command.
//!
//! - `customer_flow_on_postgres`: sign up, reserve and register a meter
//!   (Configure PSD MAC checked), buy, print (answer checked), history,
//!   money, refund, on a throwaway PostgreSQL cluster.
//! - `two_servers_share_one_database_and_pool`: two server processes on
//!   one PostgreSQL database and one module pool directory (disjoint member
//!   ranges); many concurrent prints on one meter through both servers and
//!   on other meters; then the books: every 201 is in the ledger with the
//!   same bytes, pieces 1..n without gap or repeat, no indicium issued
//!   twice, AR + DR = control total = sum of downloads, AR = ledger postage.
//! - `kill_during_prints_then_restart`: SIGKILL while several clients
//!   print (SQLite), restart on the same data directory: every indicium a
//!   client received is in the ledger, the registers add up, and printing
//!   works again.
//! - `provider_is_a_separate_party`: a server that only knows the
//!   provider's public key (from `postvault provider keygen`); the operator
//!   makes the provider's account (`postvault provider add-account`, which
//!   a customer may not); the provider authorizes, downloads and refunds
//!   with the CLI; the customer's own purchase is refused with a 409 naming
//!   the provider.
//!
//! The PostgreSQL cluster is started by this binary (`pg_cluster.rs`,
//! shared with the store's tests); without PostgreSQL the tests fail, never
//! skip.

// The store's throwaway-cluster harness, shared rather than copied.
#[path = "../../store/tests/it/pg_cluster.rs"]
#[allow(dead_code)]
mod pg_cluster;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postvault_client::api::{IndiciumRecord, MeterView, RegistrationRequest};
use postvault_client::customer::{self, CheckedPiece, HmacKey, Piece};
use postvault_client::{Client, ClientError, Trust};
use postvault_crypto::Faults;
use postvault_crypto::rng::Rng;
use postvault_indicium::Indicium;
use postvault_module::psd::DeviceId;

const BIN: &str = env!("CARGO_BIN_EXE_postvault");
/// Every account's password.
const PW: &str = "correct horse battery staple";
/// The licensing and origin ZIP (10001-0001).
const ZIP: u32 = 100_010_001;
/// The destination ZIP (20500-0001).
const TO_ZIP: u32 = 205_000_001;

/// A running `postvault serve`; killed (SIGKILL) if dropped without
/// [`Server::stop`].
struct Server {
    child: Child,
    // Kept open so the server's later lines do not meet a closed pipe.
    _stdout: BufReader<ChildStdout>,
    url: String,
    fingerprint: String,
}

impl Server {
    /// Starts `postvault serve --data DATA --listen 127.0.0.1:0` with a
    /// configuration file holding `config` (written next to DATA) and, if
    /// given, `--store URL`.
    fn start(data: &Path, config: &str, store: Option<&str>) -> Server {
        let config_path = PathBuf::from(format!("{}.toml", data.display()));
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(&config_path);
        if let Some(url) = store {
            cmd.args(["--store", url]);
        }
        let mut child = cmd
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
        // postvault serving https://ADDR (certificate sha256 FP)
        let rest = first
            .trim()
            .strip_prefix("postvault serving ")
            .unwrap_or_else(|| {
                panic!("postvault serve did not start (its stderr is above); first line {first:?}")
            });
        let (url, fp) = rest.split_once(" (certificate sha256 ").unwrap();
        Server {
            child,
            _stdout: stdout,
            url: url.to_string(),
            fingerprint: fp.trim_end_matches(')').to_string(),
        }
    }

    /// A client of this server, pinning its certificate.
    fn client(&self) -> Client {
        Client::new(&self.url, Trust::Fingerprint(self.fingerprint.clone())).unwrap()
    }

    /// A client logged on as `login`.
    async fn logon(&self, login: &str, password: &str) -> Client {
        let c = self.client();
        let session = c
            .logon(login, password)
            .await
            .unwrap_or_else(|e| panic!("logon as {login}: {e}"));
        c.with_token(session.token)
    }

    /// SIGTERM, then waits for a clean exit.
    ///
    /// `postvault serve` installs its SIGTERM handler only when it starts
    /// waiting for the signal, after it has printed its URL: a SIGTERM
    /// sent before that kills it by the default action, and one sent while
    /// tokio registers its listener can be lost (the server then runs on).
    /// So this waits until the process catches SIGTERM (`SigCgt` in
    /// /proc/PID/status) and sends it again every two seconds until the
    /// process exits.
    fn stop(mut self) {
        let pid = self.child.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !catches_sigterm(pid) {
            assert!(
                Instant::now() < deadline,
                "the server never installed its SIGTERM handler"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut next_signal = Instant::now();
        loop {
            if Instant::now() >= next_signal {
                let status = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .unwrap();
                assert!(status.success());
                next_signal = Instant::now() + Duration::from_secs(2);
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "postvault serve exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether process `pid` has a handler for SIGTERM (signal 15: bit 14 of
/// the `SigCgt` mask).
fn catches_sigterm(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << 14) != 0)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The operator's password from DATA/operator-credentials.txt.
fn operator_password(data: &Path) -> String {
    let text = std::fs::read_to_string(data.join("operator-credentials.txt")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("a password line")
        .to_string()
}

/// Signs up `login` (a customer) and logs on.
async fn customer(server: &Server, login: &str) -> Client {
    let account = server.client().sign_up(login, PW).await.unwrap();
    assert_eq!(account.role, "customer");
    server.logon(login, PW).await
}

/// A registered meter as its customer knows it.
struct Meter {
    id: String,
    device: DeviceId,
    user: String,
    key: HmacKey,
    cert: Vec<u8>,
}

/// Reserves and registers a meter (the server answers `state`), checking
/// the Configure PSD MAC.
async fn register(c: &Client, state: &str) -> Meter {
    let deployment = c.deployment().await.unwrap();
    let reserved = c.reserve_meter().await.unwrap();
    assert_eq!(reserved.state, "Unleased");
    let device = customer::parse_device(&reserved.device_id).unwrap();
    let mut rng = Rng::new(Faults::none());
    let key = customer::new_hmac_key(&mut rng).unwrap();
    let user = "clerk".to_string();
    let secrets = customer::seal_registration(
        &mut rng,
        &deployment.registration_public_key,
        &device,
        &user,
        &key,
        "meter user password 1234",
    )
    .unwrap();
    let reg = c
        .register_meter(
            &reserved.device_id,
            &RegistrationRequest {
                user_id: user.clone(),
                secrets,
                licensing_zip: ZIP,
            },
        )
        .await
        .unwrap();
    assert_eq!(reg.state, state);
    customer::check_configure_mac(&key, &device, &user, &reg)
        .expect("the Configure PSD MAC is ours");
    // The check means something: another key fails it.
    let other = customer::new_hmac_key(&mut rng).unwrap();
    assert!(customer::check_configure_mac(&other, &device, &user, &reg).is_err());
    let cert = customer::certificate_der(&reg.certificate_pem).unwrap();
    Meter {
        id: reserved.device_id,
        device,
        user,
        key,
        cert,
    }
}

/// Today (UTC) as YYYYMMDD: the date of mailing, as the real server (on
/// the wall clock) and the client CLI would have it.
#[allow(clippy::disallowed_methods)]
fn today() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    postvault_indicium::MailingDate::from_unix(now as i64)
        .unwrap()
        .as_u32()
}

/// One print: the meter's current challenge from the server, the MACed
/// request, the answer checked (MAC, challenge, fields, signature). A 201
/// that fails a check panics; refusals come back as errors.
async fn print(c: &Client, m: &Meter, postage_mills: u64) -> Result<CheckedPiece, ClientError> {
    let view = c.meter(&m.id).await?;
    let challenge: [u8; 16] = hex::decode(view.challenge.expect("a leased meter's challenge"))
        .unwrap()
        .try_into()
        .unwrap();
    let piece = Piece {
        postage_mills,
        date: today(),
        origin_zip: ZIP,
        destination_zip: TO_ZIP,
        category: *b"FC  ",
    };
    let req = customer::indicium_request(&m.key, &m.device, &m.user, challenge, &piece);
    let answer = c.print(&m.id, &customer::print_request(&req)).await?;
    let checked = customer::check_print_answer(&m.key, &req, &answer, &m.cert)
        .unwrap_or_else(|e| panic!("a 201 print answer failed the customer's check: {e}"));
    assert_eq!(answer.piece, checked.indicium.piece_counter);
    assert_eq!(answer.ascending_mills, checked.indicium.ascending_register);
    assert_eq!(
        answer.descending_mills,
        u64::from(checked.indicium.descending_register)
    );
    Ok(checked)
}

/// [`print`], retried while the server answers 409 (another client used
/// the challenge first).
async fn print_retrying(c: &Client, m: &Meter, postage_mills: u64) -> CheckedPiece {
    for _ in 0..10_000 {
        match print(c, m, postage_mills).await {
            Ok(p) => return p,
            Err(e) if e.status() == Some(409) => continue,
            Err(e) => panic!("printing on {}: {e}", m.id),
        }
    }
    panic!("10000 prints on {} in a row were refused as stale", m.id)
}

/// What the clients were given: (piece, indicium bytes) per meter.
type Received = BTreeMap<String, Vec<(u64, Vec<u8>)>>;

/// The books of one meter: the ledger is pieces 1..n with no gap or
/// repeat, no indicium is in it twice, each decodes and verifies with the
/// meter's certificate and matches its row, the ascending register moves by
/// each piece's postage; every piece in `received` is in it with the same
/// bytes; AR + DR = control total = the sum of the downloads, and AR = the
/// ledger's postage. Returns the ledger and the meter's view.
async fn check_books(
    c: &Client,
    m: &Meter,
    received: &[(u64, Vec<u8>)],
) -> (Vec<IndiciumRecord>, MeterView) {
    let ledger = c.indicia(&m.id).await.unwrap();
    let mut seen = HashSet::new();
    let mut ascending = 0;
    for (i, row) in ledger.iter().enumerate() {
        assert_eq!(
            row.piece,
            i as u64 + 1,
            "meter {}: the ledger's pieces are not 1..n without gap or repeat: {:?}",
            m.id,
            ledger.iter().map(|r| r.piece).collect::<Vec<_>>()
        );
        let bytes = hex::decode(&row.indicium).unwrap();
        assert!(
            seen.insert(bytes.clone()),
            "meter {}: piece {} is in the ledger twice",
            m.id,
            row.piece
        );
        let ind = Indicium::from_bytes(&bytes).unwrap();
        ind.verify_with_certificate(&m.cert)
            .unwrap_or_else(|e| panic!("meter {} piece {}: {e}", m.id, row.piece));
        assert_eq!(ind.piece_counter, row.piece, "meter {}", m.id);
        assert_eq!(DeviceId::from(ind.device), m.device);
        assert_eq!(u64::from(ind.postage), row.postage_mills);
        // A refund indicium moves the rest of the descending register
        // into the ascending one, like a print of that value.
        ascending += row.postage_mills;
        assert_eq!(
            ind.ascending_register, ascending,
            "meter {} piece {}: the ascending register did not move by the postage (double spend?)",
            m.id, row.piece
        );
        assert_eq!(row.ascending_mills, ascending);
    }
    for (piece, bytes) in received {
        let row = ledger
            .iter()
            .find(|r| r.piece == *piece)
            .unwrap_or_else(|| {
                panic!(
                    "meter {}: piece {piece}, answered 201 to a client, is not in the ledger (lost indicium)",
                    m.id
                )
            });
        assert_eq!(
            hex::decode(&row.indicium).unwrap(),
            *bytes,
            "meter {}: piece {piece} in the ledger is not what the client got",
            m.id
        );
    }
    let view = c.meter(&m.id).await.unwrap();
    let money = c.money(&m.id).await.unwrap();
    let downloads: u64 = money
        .iter()
        .filter(|r| r.kind == "download")
        .map(|r| r.amount_mills)
        .sum();
    assert_eq!(
        view.ascending_mills + view.descending_mills,
        view.control_total_mills,
        "meter {}: AR + DR != control total",
        m.id
    );
    assert_eq!(
        view.control_total_mills, downloads,
        "meter {}: the control total is not the sum of the downloads",
        m.id
    );
    assert_eq!(
        view.ascending_mills, ascending,
        "meter {}: AR is not the ledger's postage",
        m.id
    );
    (ledger, view)
}

/// The whole customer flow on PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn customer_flow_on_postgres() {
    let url = pg_cluster::cluster().create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data, "modules = 1\nmeter_stock = 2\n", Some(&url));
    let c = server.client();
    let deployment = c.deployment().await.unwrap();
    assert!(deployment.provider_in_server);
    assert!(deployment.ca_certificate_pem.contains("BEGIN CERTIFICATE"));
    let alice = customer(&server, "alice").await;
    assert_eq!(alice.me().await.unwrap().login, "alice");

    let m = register(&alice, "Leased").await;
    // The certificate is public too.
    let cert = c.certificate(&m.id).await.unwrap();
    assert_eq!(
        customer::certificate_der(&cert.certificate_pem).unwrap(),
        m.cert
    );
    // Another customer cannot see or use it.
    let bob = customer(&server, "bob").await;
    let e = bob.meter(&m.id).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");

    // Buy $50.
    let bought = alice.purchase(&m.id, 50_000).await.unwrap();
    assert_eq!(
        (bought.descending_mills, bought.control_total_mills),
        (50_000, 50_000)
    );
    // Print three pieces, each answer checked.
    let mut received = Vec::new();
    for (i, postage) in [680u64, 1_000, 2_500].into_iter().enumerate() {
        let p = print(&alice, &m, postage).await.unwrap();
        assert_eq!(p.indicium.piece_counter, i as u64 + 1);
        received.push((p.indicium.piece_counter, p.bytes.to_vec()));
    }
    // A replayed request (the old challenge) is refused and changes nothing.
    let view = alice.meter(&m.id).await.unwrap();
    assert_eq!(view.piece_count, 3);
    assert_eq!(view.state, "Leased");
    let stale = customer::indicium_request(
        &m.key,
        &m.device,
        &m.user,
        [0; 16],
        &Piece {
            postage_mills: 680,
            date: today(),
            origin_zip: ZIP,
            destination_zip: TO_ZIP,
            category: *b"FC  ",
        },
    );
    let e = alice
        .print(&m.id, &customer::print_request(&stale))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");

    // History and money.
    let (ledger, view) = check_books(&alice, &m, &received).await;
    assert_eq!(ledger.len(), 3);
    assert_eq!(view.ascending_mills, 4_180);
    assert_eq!(view.descending_mills, 45_820);
    assert!(
        ledger
            .iter()
            .all(|r| r.category == "FC" && r.user_id == "clerk")
    );
    let money = alice.money(&m.id).await.unwrap();
    assert_eq!(money.len(), 1);
    assert_eq!(
        (money[0].kind.as_str(), money[0].amount_mills),
        ("download", 50_000)
    );

    // Refund: the rest comes back with a refund indicium.
    let refund = alice.refund(&m.id).await.unwrap();
    assert_eq!(refund.state, "Withdrawn");
    assert_eq!(refund.refunded_mills, 45_820);
    let (ind, bytes) = customer::check_refund_answer(&m.device, &refund, &m.cert).unwrap();
    let ledger = alice.indicia(&m.id).await.unwrap();
    let last = ledger.last().unwrap();
    assert_eq!(
        (last.piece, last.category.as_str(), last.postage_mills),
        (4, "RFND", 45_820)
    );
    assert_eq!(ind.piece_counter, 4);
    assert_eq!(hex::decode(&last.indicium).unwrap(), bytes.to_vec());
    let money = alice.money(&m.id).await.unwrap();
    let kinds: Vec<(&str, u64)> = money
        .iter()
        .map(|r| (r.kind.as_str(), r.amount_mills))
        .collect();
    assert_eq!(kinds, [("download", 50_000), ("refund", 45_820)]);
    let (_, view) = check_books(&alice, &m, &received).await;
    assert_eq!(view.state, "Withdrawn");
    assert_eq!((view.ascending_mills, view.descending_mills), (50_000, 0));
    // A withdrawn meter neither prints nor buys.
    let e = print(&alice, &m, 680).await.unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    let e = alice.purchase(&m.id, 1_000).await.unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    server.stop();
}

/// Two servers, one PostgreSQL database, one module pool directory.
#[tokio::test(flavor = "multi_thread")]
async fn two_servers_share_one_database_and_pool() {
    const TASKS: usize = 8;
    const PER_TASK: usize = 25;
    const OTHERS: usize = 3;
    const PER_OTHER: usize = 10;
    let url = pg_cluster::cluster().create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let modules = tmp.path().join("modules");
    let data_a = tmp.path().join("a");
    let data_b = tmp.path().join("b");
    let pool = format!("modules_dir = \"{}\"\nmeter_stock = 2\n", modules.display());

    // The first start runs the ceremony: m0..m3, one MKS.
    let first = Server::start(&data_a, &format!("{pool}modules = 4\n"), Some(&url));
    first.stop();
    for i in 0..4 {
        assert!(
            modules.join(format!("m{i}")).is_dir(),
            "the ceremony made m{i}"
        );
    }
    // A: m0, m1 and the development provider key the modules hold.
    let a = Server::start(
        &data_a,
        &format!("{pool}modules = 2\nmodule_first = 0\n"),
        Some(&url),
    );
    let deployment = a.client().deployment().await.unwrap();
    let pem = tmp.path().join("provider.pem");
    std::fs::write(&pem, &deployment.provider_public_key_pem).unwrap();
    // B: m2, m3; it knows only the provider's public key.
    let b = Server::start(
        &data_b,
        &format!(
            "{pool}modules = 2\nmodule_first = 2\nprovider_public_key = \"{}\"\n",
            pem.display()
        ),
        Some(&url),
    );
    let on_b = b.client().deployment().await.unwrap();
    assert!(!on_b.provider_in_server);
    assert_eq!(
        on_b.registration_public_key,
        deployment.registration_public_key
    );
    assert_eq!(on_b.ca_certificate_pem, deployment.ca_certificate_pem);

    let ca = customer(&a, "carol").await;
    let cb = b.logon("carol", PW).await;
    let shared = Arc::new(register(&ca, "Leased").await);
    ca.purchase(&shared.id, 400_000).await.unwrap();
    let mut others = Vec::new();
    for _ in 0..OTHERS {
        let m = register(&ca, "Leased").await;
        ca.purchase(&m.id, 100_000).await.unwrap();
        others.push(Arc::new(m));
    }
    // B cannot sign a purchase.
    let e = cb.purchase(&shared.id, 1_000).await.unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");

    let started = Instant::now();
    let received: Arc<Mutex<Received>> = Arc::default();
    let served = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        // Half the tasks print through A, half through B.
        let (c, n) = if t % 2 == 0 {
            (ca.clone(), served[0].clone())
        } else {
            (cb.clone(), served[1].clone())
        };
        let (m, received) = (shared.clone(), received.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..PER_TASK {
                let p = print_retrying(&c, &m, 680).await;
                n.fetch_add(1, Ordering::Relaxed);
                received
                    .lock()
                    .unwrap()
                    .entry(m.id.clone())
                    .or_default()
                    .push((p.indicium.piece_counter, p.bytes.to_vec()));
            }
        }));
    }
    for m in &others {
        let (clients, m, received) = ([ca.clone(), cb.clone()], m.clone(), received.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_OTHER {
                let p = print_retrying(&clients[i % 2], &m, 1_000).await;
                received
                    .lock()
                    .unwrap()
                    .entry(m.id.clone())
                    .or_default()
                    .push((p.indicium.piece_counter, p.bytes.to_vec()));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!(
        "two servers: {} prints in {:?} (A {} and B {} on the shared meter)",
        TASKS * PER_TASK + OTHERS * PER_OTHER,
        started.elapsed(),
        served[0].load(Ordering::Relaxed),
        served[1].load(Ordering::Relaxed)
    );
    assert!(
        served[0].load(Ordering::Relaxed) > 0 && served[1].load(Ordering::Relaxed) > 0,
        "both servers must have served prints on the shared meter"
    );

    let received = received.lock().unwrap().clone();
    for (m, n) in
        std::iter::once((&shared, TASKS * PER_TASK)).chain(others.iter().map(|m| (m, PER_OTHER)))
    {
        let got = &received[&m.id];
        assert_eq!(got.len(), n);
        let pieces: HashSet<u64> = got.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            pieces.len(),
            n,
            "meter {}: the same piece number was given to two clients (double spend)",
            m.id
        );
        let (ledger, view) = check_books(&ca, m, got).await;
        assert_eq!(
            ledger.len(),
            n,
            "meter {}: the ledger holds pieces nobody was given",
            m.id
        );
        assert_eq!(view.piece_count, n as u64);
        // B reads the same books.
        let on_b = cb.indicia(&m.id).await.unwrap();
        assert_eq!(
            on_b.iter().map(|r| &r.indicium).collect::<Vec<_>>(),
            ledger.iter().map(|r| &r.indicium).collect::<Vec<_>>()
        );
    }
    a.stop();
    b.stop();
}

/// SIGKILL while prints are in flight, then a restart on the same data.
#[tokio::test(flavor = "multi_thread")]
async fn kill_during_prints_then_restart() {
    const METERS: usize = 3;
    const CLIENTS_PER_METER: usize = 2;
    const KILL_AFTER: usize = 20;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = "modules = 2\nmeter_stock = 2\n";
    let server = Server::start(&data, config, None);
    let c = customer(&server, "dave").await;
    let mut meters = Vec::new();
    for _ in 0..METERS {
        let m = register(&c, "Leased").await;
        c.purchase(&m.id, 100_000).await.unwrap();
        meters.push(Arc::new(m));
    }

    let received: Arc<Mutex<Received>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for m in &meters {
        for _ in 0..CLIENTS_PER_METER {
            let (c, m, received, count, killed) = (
                c.clone(),
                m.clone(),
                received.clone(),
                count.clone(),
                killed.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    match print(&c, &m, 680).await {
                        Ok(p) => {
                            received
                                .lock()
                                .unwrap()
                                .entry(m.id.clone())
                                .or_default()
                                .push((p.indicium.piece_counter, p.bytes.to_vec()));
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.status() == Some(409) => {}
                        // The server is gone.
                        Err(_) if killed.load(Ordering::SeqCst) => return,
                        Err(e) => panic!("printing on {} before the kill: {e}", m.id),
                    }
                }
            }));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::Relaxed) < KILL_AFTER {
        assert!(Instant::now() < deadline, "the prints made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed.store(true, Ordering::SeqCst);
    drop(server); // SIGKILL
    for t in tasks {
        t.await.unwrap();
    }
    let received = received.lock().unwrap().clone();
    let total: usize = received.values().map(Vec::len).sum();
    eprintln!("killed after {total} prints were answered");

    let server = Server::start(&data, config, None);
    let c = server.logon("dave", PW).await;
    for m in &meters {
        let got = received.get(&m.id).cloned().unwrap_or_default();
        let (ledger, _) = check_books(&c, m, &got).await;
        // Printing works again, and the piece follows the ledger's last.
        let p = tokio::time::timeout(Duration::from_secs(30), print(&c, m, 1_000))
            .await
            .expect("a print after the restart hung")
            .unwrap_or_else(|e| panic!("printing on {} after the restart: {e}", m.id));
        assert_eq!(p.indicium.piece_counter, ledger.len() as u64 + 1);
        let mut got = got;
        got.push((p.indicium.piece_counter, p.bytes.to_vec()));
        check_books(&c, m, &got).await;
    }
    server.stop();
}

/// Runs `postvault provider ARGS`; returns stdout, asserting success.
fn provider(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("provider")
        .args(args)
        .env_remove("POSTVAULT_PASSWORD")
        .env_remove("POSTVAULT_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .expect("run postvault provider");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "postvault provider {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The provider keeps its key; the server has only the public key.
#[tokio::test(flavor = "multi_thread")]
async fn provider_is_a_separate_party() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("provider.key");
    let pass = tmp.path().join("passphrase");
    let public = tmp.path().join("provider.pem");
    std::fs::write(&pass, "the provider's passphrase\n").unwrap();
    let out = provider(&[
        "keygen",
        "--out",
        key.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
        "--public-out",
        public.to_str().unwrap(),
    ]);
    assert!(out.contains("BEGIN PUBLIC KEY"), "{out}");

    let data = tmp.path().join("data");
    let server = Server::start(
        &data,
        &format!(
            "modules = 1\nmeter_stock = 1\nprovider_public_key = \"{}\"\n",
            public.display()
        ),
        None,
    );
    assert!(
        !data.join("provider").exists(),
        "no development provider key is made when the provider's key is configured"
    );
    let deployment = server.client().deployment().await.unwrap();
    assert!(!deployment.provider_in_server);
    assert_eq!(
        deployment.provider_public_key_pem.trim(),
        std::fs::read_to_string(&public).unwrap().trim()
    );

    let erin = customer(&server, "erin").await;
    let m = register(&erin, "Assigned").await;
    // The customer cannot buy: the provider sells.
    let e = erin.purchase(&m.id, 10_000).await.unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    assert!(e.to_string().contains("provider"), "{e}");
    // Nor print before the provider authorizes and downloads.
    let view = erin.meter(&m.id).await.unwrap();
    assert_eq!(view.state, "Assigned");

    // The operator makes the provider's account; the provider logs on
    // with it.
    let op_pw = tmp.path().join("operator-password");
    std::fs::write(&op_pw, format!("{}\n", operator_password(&data))).unwrap();
    let provider_pw = tmp.path().join("provider-password");
    std::fs::write(&provider_pw, "the provider's own password\n").unwrap();
    let out = provider(&[
        "add-account",
        "--url",
        &server.url,
        "--fingerprint",
        &server.fingerprint,
        "--login",
        "operator",
        "--password-file",
        op_pw.to_str().unwrap(),
        "--new-login",
        "acme-provider",
        "--new-password-file",
        provider_pw.to_str().unwrap(),
    ]);
    assert!(
        out.contains("made the provider account acme-provider"),
        "{out}"
    );
    // A customer cannot make accounts, and is told why.
    let erin_pw = tmp.path().join("erin-password");
    std::fs::write(&erin_pw, format!("{PW}\n")).unwrap();
    let out = Command::new(BIN)
        .args([
            "provider",
            "add-account",
            "--url",
            &server.url,
            "--fingerprint",
        ])
        .args([&server.fingerprint, "--login", "erin", "--password-file"])
        .arg(&erin_pw)
        .args(["--new-login", "erins-provider", "--new-password-file"])
        .arg(&provider_pw)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("erin is not an operator account"),
        "{stderr}"
    );
    assert_eq!(
        server
            .client()
            .logon("erins-provider", "the provider's own password")
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );
    let conn = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--url",
            &server.url,
            "--fingerprint",
            &server.fingerprint,
            "--login",
            "acme-provider",
            "--password-file",
            provider_pw.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
            "--meter",
            &m.id,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |cmd: &str, extra: &[&str]| {
        let mut args = vec![cmd.to_string()];
        args.extend(conn(extra));
        provider(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = run("authorize", &["--zip", "10001-0001"]);
    assert!(out.contains("is Leased"), "{out}");
    assert_eq!(erin.meter(&m.id).await.unwrap().state, "Leased");
    let out = run("download", &["--amount", "20.00"]);
    assert!(out.contains("downloaded $20.000"), "{out}");

    let p = print(&erin, &m, 680).await.unwrap();
    assert_eq!(p.indicium.piece_counter, 1);
    check_books(&erin, &m, &[(1, p.bytes.to_vec())]).await;
    // The customer cannot refund either.
    let e = erin.refund(&m.id).await.unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    assert!(e.to_string().contains("provider"), "{e}");

    let out = run("refund", &[]);
    assert!(out.contains("refunded $19.320"), "{out}");
    let money = erin.money(&m.id).await.unwrap();
    let rows: Vec<(&str, u64)> = money
        .iter()
        .map(|r| (r.kind.as_str(), r.amount_mills))
        .collect();
    assert_eq!(rows, [("download", 20_000), ("refund", 19_320)]);
    assert!(
        money
            .iter()
            .all(|r| r.reference.to_string().contains("provider acme-provider")),
        "{money:?}"
    );
    let ledger = erin.indicia(&m.id).await.unwrap();
    assert_eq!(ledger.len(), 2);
    assert_eq!(
        (ledger[1].category.as_str(), ledger[1].postage_mills),
        ("RFND", 19_320)
    );
    customer::check_refund_indicium(&m.device, &ledger[1].indicium, 19_320, &m.cert).unwrap();
    let view = erin.meter(&m.id).await.unwrap();
    assert_eq!(
        (
            view.state.as_str(),
            view.ascending_mills,
            view.descending_mills
        ),
        ("Withdrawn", 20_000, 0)
    );
    check_books(&erin, &m, &[(1, p.bytes.to_vec())]).await;
    server.stop();
}
