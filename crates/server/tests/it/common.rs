//! The shared set-up of the bad-input tests: one runtime for the whole
//! binary (so a server started by one test keeps serving the others), a
//! server per topic ([`Fixture`], started on first use), customers and
//! meters at each stage (reserved, registered, funded), raw requests, the
//! "nothing changed" snapshot, and assertions on refusals.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use postvault_client::api::{PrintAnswer, RegistrationRequest};
use postvault_client::customer::{self, HmacKey, Piece};
use postvault_client::{Client, ClientError, Trust};
use postvault_crypto::Faults;
use postvault_crypto::ecdsa::EcdsaP256KeyPair;
use postvault_crypto::rng::Rng;
use postvault_module::ManualClock;
use postvault_module::psd::{
    DeviceId, IndiciumRequest, ProviderBody, ProviderCommand, ProviderMessage,
};
use postvault_server::{RunningServer, Server, ServerConfig};
use postvault_store::{LedgerEntry, MoneyEntry, Store};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::Value;

/// The servers' clock starts here: 2027-01-15.
pub const START: i64 = 1_800_000_000;
/// A mailing date on that day.
pub const DATE: u32 = 20_270_115;
/// Every meter's licensing ZIP (10001-0001), and the pieces' origin.
pub const LICENSING_ZIP: u32 = 100_010_001;
/// The pieces' destination (20500-0001).
pub const DEST_ZIP: u32 = 205_000_001;
/// Every meter's PSD user.
pub const USER_ID: &str = "alice";
/// That user's PSD password.
pub const PSD_PASSWORD: &str = "psd user password 1";
/// Every customer account's password.
pub const PASSWORD: &str = "a long enough password";

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// Runs a test body on the binary's one runtime (the servers' tasks live
/// on it, so they outlive the test that started them).
pub fn run<F: Future>(f: F) -> F::Output {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .build()
                .expect("a runtime")
        })
        .block_on(f)
}

/// A running server and what the tests need to talk to it.
pub struct Fixture {
    /// The server (kept so it serves until the process ends).
    pub server: RunningServer,
    /// Its clock.
    pub clock: Arc<ManualClock>,
    /// Its data directory.
    pub data: PathBuf,
    /// A second handle on its SQLite store.
    pub store: Arc<dyn Store>,
    /// A plain HTTPS client trusting the server's certificate.
    pub raw: reqwest::Client,
    /// `https://localhost:PORT` (the name in the certificate).
    pub base: String,
}

/// A fresh directory for a server's data under the target directory.
/// Servers shared by tests live until the process ends, so nothing
/// would delete a `TempDir`; directories of earlier runs (older than an
/// hour) are removed here instead.
fn data_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("server-it");
    std::fs::create_dir_all(&root).unwrap();
    let pid = std::process::id();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            // Another run's, and old enough not to be one running now.
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600);
            if old && !name.starts_with(&format!("{pid}-")) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = root.join(format!("{pid}-{}", N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts a server: one module, two meters in stock, the development
/// provider in the server, the given idle timeout.
pub async fn start(session_idle_timeout_secs: u64) -> Fixture {
    start_with(session_idle_timeout_secs, |_| {}).await
}

/// [`start`], with `tweak` applied to the configuration last.
pub async fn start_with(
    session_idle_timeout_secs: u64,
    tweak: impl FnOnce(&mut ServerConfig),
) -> Fixture {
    let data = data_dir();
    let mut config = ServerConfig::new(&data).unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.modules = 1;
    config.meter_stock = 2;
    config.session_idle_timeout_secs = session_idle_timeout_secs;
    tweak(&mut config);
    let store_url = config.store_url.clone();
    let clock = Arc::new(ManualClock::new(START));
    let server = Server::start(config, clock.clone()).await.unwrap();
    let store = postvault_store::open_store(&store_url).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(data.join("tls/cert.pem")).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let raw = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", server.local_addr().port());
    Fixture {
        server,
        clock,
        data,
        store,
        raw,
        base,
    }
}

impl Fixture {
    /// A typed client pinning the server's certificate.
    pub fn client(&self) -> Client {
        Client::new(
            &self.server.url(),
            Trust::Fingerprint(self.server.certificate_fingerprint().to_string()),
        )
        .unwrap()
    }

    /// Sends `body` as it is, with `content_type` (none: no header) and
    /// `token` as the bearer token; returns the status and the JSON answer.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .raw
            .request(method, format!("{}{path}", self.base))
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text:?}"))
        };
        (status, value)
    }

    /// A JSON request (`Content-Type: application/json`).
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        self.raw(
            method,
            path,
            token,
            Some("application/json"),
            body.to_string(),
        )
        .await
    }

    /// A new customer account, logged on.
    pub async fn customer(&self) -> Customer {
        static N: AtomicU32 = AtomicU32::new(0);
        let login = format!("cust{}", N.fetch_add(1, Ordering::SeqCst));
        let client = self.client();
        client.sign_up(&login, PASSWORD).await.unwrap();
        let session = client.logon(&login, PASSWORD).await.unwrap();
        Customer {
            login,
            client: client.with_token(session.token.clone()),
            token: session.token,
        }
    }

    /// The first operator, logged on (its password is in
    /// `DATA/operator-credentials.txt`).
    pub async fn operator(&self) -> Customer {
        let text =
            std::fs::read_to_string(self.data.join(postvault_server::CREDENTIALS_FILE)).unwrap();
        let password = text
            .lines()
            .find_map(|l| l.strip_prefix("password: "))
            .unwrap()
            .trim()
            .to_string();
        let client = self.client();
        let session = client
            .logon(postvault_server::OPERATOR_LOGIN, &password)
            .await
            .unwrap();
        assert_eq!(session.role, "operator");
        Customer {
            login: postvault_server::OPERATOR_LOGIN.into(),
            client: client.with_token(session.token.clone()),
            token: session.token,
        }
    }

    /// The development provider's key pair (from `DATA/provider/`).
    pub fn provider_key(&self) -> EcdsaP256KeyPair {
        let text =
            std::fs::read_to_string(self.data.join(postvault_server::PROVIDER_KEY_FILE)).unwrap();
        let pass =
            std::fs::read_to_string(self.data.join(postvault_server::PROVIDER_PASSPHRASE_FILE))
                .unwrap();
        EcdsaP256KeyPair::from_keyfile(pass.trim_end().as_bytes(), &text).unwrap()
    }

    /// A meter reserved for `c` (not registered).
    pub async fn reserved(&self, c: &Customer) -> String {
        c.client.reserve_meter().await.unwrap().device_id
    }

    /// A meter reserved and registered for `c` (Leased, DR 0).
    pub async fn registered(&self, c: &Customer) -> Meter {
        let id = self.reserved(c).await;
        let device = customer::parse_device(&id).unwrap();
        let dep = c.client.deployment().await.unwrap();
        let mut rng = Rng::new(Faults::none());
        let key = customer::new_hmac_key(&mut rng).unwrap();
        let secrets = customer::seal_registration(
            &mut rng,
            &dep.registration_public_key,
            &device,
            USER_ID,
            &key,
            PSD_PASSWORD,
        )
        .unwrap();
        let reg = c
            .client
            .register_meter(
                &id,
                &RegistrationRequest {
                    user_id: USER_ID.into(),
                    secrets,
                    licensing_zip: LICENSING_ZIP,
                },
            )
            .await
            .unwrap();
        assert_eq!(reg.state, "Leased");
        let challenge = customer::check_configure_mac(&key, &device, USER_ID, &reg).unwrap();
        Meter {
            id,
            device,
            key,
            challenge,
            cert_der: customer::certificate_der(&reg.certificate_pem).unwrap(),
        }
    }

    /// A registered meter of `c` with `mills` of postage bought.
    pub async fn funded(&self, c: &Customer, mills: u64) -> Meter {
        let m = self.registered(c).await;
        c.client.purchase(&m.id, mills).await.unwrap();
        m
    }

    /// What must not change when a request about `device_id` is refused:
    /// its registers and challenge as the owner `c` sees them, its stored
    /// row (package, state, owner), its ledger and money rows.
    pub async fn snapshot(&self, c: &Customer, device_id: &str) -> Snapshot {
        let path = format!("/v1/meters/{device_id}");
        let (status, view) = self.raw("GET", &path, Some(&c.token), None, "").await;
        Snapshot {
            view: (status == 200).then_some(view),
            row: self.store.get_meter(device_id).await.unwrap(),
            ledger: self.store.ledger_of_meter(device_id).await.unwrap(),
            money: self.store.money_of_meter(device_id).await.unwrap(),
        }
    }
}

/// A logged-on account and its typed client.
pub struct Customer {
    /// The login.
    pub login: String,
    /// The bearer token.
    pub token: String,
    /// The typed client, with the token.
    pub client: Client,
}

/// A registered meter and the customer-side secrets for it.
pub struct Meter {
    /// The device ID as the server shows it.
    pub id: String,
    /// The device ID.
    pub device: DeviceId,
    /// The PSD user's HMAC key.
    pub key: HmacKey,
    /// The challenge the next print must carry.
    pub challenge: [u8; 16],
    /// The PSD certificate.
    pub cert_der: Vec<u8>,
}

/// A first-class piece of `postage_mills` from the licensing ZIP.
pub fn piece(postage_mills: u64) -> Piece {
    Piece {
        postage_mills,
        date: DATE,
        origin_zip: LICENSING_ZIP,
        destination_zip: DEST_ZIP,
        category: *b"FC  ",
    }
}

impl Meter {
    /// The MACed request for `piece` with the current challenge.
    pub fn request(&self, piece: &Piece) -> IndiciumRequest {
        customer::indicium_request(&self.key, &self.device, USER_ID, self.challenge, piece)
    }

    /// Prints `postage_mills` and checks the answer; the next challenge is kept.
    pub async fn print(&mut self, c: &Customer, postage_mills: u64) -> PrintAnswer {
        let req = self.request(&piece(postage_mills));
        let answer = c
            .client
            .print(&self.id, &customer::print_request(&req))
            .await
            .unwrap();
        let checked = customer::check_print_answer(&self.key, &req, &answer, &self.cert_der)
            .expect("a good answer");
        self.challenge = checked.new_challenge;
        answer
    }
}

/// See [`Fixture::snapshot`].
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    /// `GET /v1/meters/{id}` as the owner sees it (None: not 200).
    pub view: Option<Value>,
    /// The store's row.
    pub row: Option<postvault_store::Meter>,
    /// The ledger rows.
    pub ledger: Vec<LedgerEntry>,
    /// The money rows.
    pub money: Vec<MoneyEntry>,
}

/// Asserts a raw answer is a refusal with `status` and an `error`
/// message containing each of `needles`.
#[track_caller]
pub fn assert_refused(answer: &(u16, Value), status: u16, needles: &[&str]) {
    let (s, body) = answer;
    assert_eq!(*s, status, "{body}");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {body}"));
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only `error`: {body}"
    );
    for n in needles {
        assert!(message.contains(n), "{message:?} lacks {n:?}");
    }
}

/// Asserts a typed client call was refused with `status` and a message
/// containing each of `needles`.
#[track_caller]
pub fn assert_api<T: std::fmt::Debug>(r: Result<T, ClientError>, status: u16, needles: &[&str]) {
    match r {
        Err(ClientError::Api { status: s, message }) => {
            assert_eq!(s, status, "{message}");
            for n in needles {
                assert!(message.contains(n), "{message:?} lacks {n:?}");
            }
        }
        other => panic!("expected a {status} refusal, got {other:?}"),
    }
}

/// A provider message signed with `key`.
pub fn sign(
    key: &EcdsaP256KeyPair,
    device_id: &str,
    sequence: u64,
    command: ProviderCommand,
) -> ProviderMessage {
    let body = ProviderBody {
        device_id: device_id.to_string(),
        sequence,
        command,
    };
    let signature = key.sign(&body.signing_bytes()).unwrap();
    ProviderMessage { body, signature }
}
