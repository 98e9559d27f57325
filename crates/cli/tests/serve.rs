//! End-to-end tests of `postvault serve`: the real binary on port 0 in a
//! temporary data directory, talked to over real HTTPS with a client that
//! trusts exactly the server's self-signed certificate (the one in
//! DATA/tls/cert.pem, whose fingerprint must match the one printed). The
//! whole API scenario runs once on the default SQLite store and once on a
//! throwaway PostgreSQL cluster this binary starts itself (see
//! `support/pg_cluster.rs`; it fails, never skips, without PostgreSQL).
//!
//! Nothing sleeps: session expiry is tested by writing an old last-activity
//! time into the store behind the server's back.

// The store's throwaway-cluster harness, shared rather than copied.
#[path = "../../store/tests/it/pg_cluster.rs"]
#[allow(dead_code)]
mod pg_cluster;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_postvault");

/// A running `postvault serve`; killed if dropped without [`Proc::stop`].
struct Proc {
    child: Child,
    // Kept open so the server's last line does not meet a closed pipe.
    _stdout: BufReader<ChildStdout>,
    url: String,
    fingerprint: String,
    operator_line: String,
}

impl Proc {
    fn start(data: &Path, extra: &[&str]) -> Proc {
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
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
        Proc {
            child,
            _stdout: stdout,
            url: url.to_string(),
            fingerprint: fp.trim_end_matches(')').to_string(),
            operator_line: operator_line.trim().to_string(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
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

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Trusts exactly one certificate (byte for byte) and checks the
/// handshake signature with it.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An HTTPS client pinning DATA/tls/cert.pem, limited to `versions`.
fn client(data: &Path, versions: &[&'static rustls::SupportedProtocolVersion]) -> reqwest::Client {
    let cert = CertificateDer::from_pem_file(data.join("tls/cert.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { cert, provider }))
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn default_client(data: &Path) -> reqwest::Client {
    client(data, &[&rustls::version::TLS13, &rustls::version::TLS12])
}

/// The fingerprint of DATA/tls/cert.pem, computed here.
fn cert_fingerprint(data: &Path) -> String {
    let cert = CertificateDer::from_pem_file(data.join("tls/cert.pem")).unwrap();
    postvault_crypto::hash::sha256(&[cert.as_ref()])
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Sends a request and returns the status and the JSON body (Null if none).
async fn call(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = c.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("HTTPS request");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
    };
    (status, body)
}

/// Sends a raw body with a content type.
async fn raw(
    c: &reqwest::Client,
    url: String,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let resp = c
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("HTTPS request");
    let status = resp.status();
    (status, resp.json().await.expect("a JSON error body"))
}

fn error_text(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"))
}

fn creds(login: &str, password: &str) -> Option<Value> {
    Some(json!({ "login": login, "password": password }))
}

/// A logon that must succeed; returns the token.
async fn logon(c: &reqwest::Client, p: &Proc, login: &str, password: &str) -> String {
    let (s, b) = call(
        c,
        reqwest::Method::POST,
        p.url("/v1/sessions"),
        None,
        creds(login, password),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let token = b["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    token
}

const PW: &str = "correct horse battery staple";

/// The whole API scenario, then a restart on the same data directory.
async fn scenario(store: Option<String>) {
    use reqwest::Method as M;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // A short lock-out limit and a one-minute idle timeout; the expiry is
    // made by an old last-activity time, not by waiting.
    let config = tmp.path().join("server.toml");
    std::fs::write(
        &config,
        "session_idle_timeout_secs = 60\nfailed_logon_limit = 3\n",
    )
    .unwrap();
    let mut args = vec!["--config".to_string(), config.display().to_string()];
    if let Some(url) = &store {
        args.extend(["--store".to_string(), url.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let engine = if store.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let store_url =
        store.unwrap_or_else(|| format!("sqlite://{}", data.join("postvault.sqlite").display()));

    let p = Proc::start(&data, &args);
    assert!(p.url.starts_with("https://127.0.0.1:"), "{}", p.url);
    // The server runs without transparent huge pages (main.rs says why).
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string(format!("/proc/{}/status", p.child.id())).unwrap();
        assert!(
            status.lines().any(|l| l == "THP_enabled:\t0"),
            "transparent huge pages are on in the server: {status}"
        );
    }
    assert_eq!(
        p.fingerprint,
        cert_fingerprint(&data),
        "printed fingerprint"
    );
    // The same as openssl computes it, so operators can check it there.
    let openssl = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(data.join("tls/cert.pem"))
        .output()
        .expect("openssl (scripts/test.sh installs it)");
    let openssl = String::from_utf8_lossy(&openssl.stdout);
    assert!(
        openssl.trim().ends_with(&format!("={}", p.fingerprint)),
        "{openssl}"
    );
    let creds_file = data.join("operator-credentials.txt");
    assert!(
        p.operator_line.contains(&creds_file.display().to_string()),
        "{}",
        p.operator_line
    );
    let creds_text = std::fs::read_to_string(&creds_file).unwrap();
    let op_password = creds_text
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_string();
    assert!(
        !p.operator_line.contains(&op_password),
        "the password must not be printed"
    );
    use std::os::unix::fs::PermissionsExt as _;
    for f in [creds_file.clone(), data.join("tls/key.pem")] {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }

    let c = default_client(&data);

    // healthz and the OpenAPI document.
    let (s, b) = call(&c, M::GET, p.url("/healthz"), None, None).await;
    assert_eq!(
        (s, b),
        (StatusCode::OK, json!({"status": "ok", "store": engine}))
    );
    let (s, doc) = call(&c, M::GET, p.url("/openapi.json"), None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path) in postvault_server::ROUTES {
        assert!(
            doc["paths"][path][method.to_lowercase()].is_object(),
            "{method} {path} missing from /openapi.json"
        );
    }

    // Sign-up, duplicate, bad input.
    let (s, b) = call(&c, M::POST, p.url("/v1/accounts"), None, creds("alice", PW)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b, json!({"login": "alice", "role": "customer"}));
    let (s, b) = call(
        &c,
        M::POST,
        p.url("/v1/accounts"),
        None,
        creds("alice", "another password 123"),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(error_text(&b).contains("taken"), "{b}");
    let (s, b) = call(
        &c,
        M::POST,
        p.url("/v1/accounts"),
        None,
        creds("bob", "short"),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_text(&b).contains("at least 12"), "{b}");
    let (s, b) = call(&c, M::POST, p.url("/v1/accounts"), None, creds("b b", PW)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_text(&b).contains("login must be"), "{b}");
    let (s, b) = call(
        &c,
        M::POST,
        p.url("/v1/accounts"),
        None,
        Some(json!({"login": "carol", "password": PW, "role": "operator"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(error_text(&b).contains("unknown field `role`"), "{b}");
    let (s, b) = raw(
        &c,
        p.url("/v1/accounts"),
        "application/json",
        b"{\"login\": \"carol\",".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_text(&b).starts_with("malformed JSON"), "{b}");
    let (s, b) = raw(&c, p.url("/v1/accounts"), "text/plain", b"{}".to_vec()).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(error_text(&b).contains("application/json"), "{b}");
    let big = format!(
        "{{\"login\": \"carol\", \"password\": \"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let (s, b) = raw(
        &c,
        p.url("/v1/accounts"),
        "application/json",
        big.into_bytes(),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_text(&b).contains("too large"), "{b}");
    // None of those made an account.
    for login in ["bob", "carol"] {
        let (s, _) = call(&c, M::POST, p.url("/v1/sessions"), None, creds(login, PW)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{login}");
    }

    // Logon and /v1/me, on TLS 1.3 and TLS 1.2 alike.
    let token = logon(&c, &p, "alice", PW).await;
    for versions in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let c = client(&data, &[versions]);
        let (s, b) = call(&c, M::GET, p.url("/v1/me"), Some(&token), None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["login"], "alice");
        assert_eq!(b["role"], "customer");
        assert_eq!(b["session"]["idle_timeout_secs"], 60);
    }
    // The first operator logs on with the password from the file.
    let op_token = logon(&c, &p, "operator", &op_password).await;
    let (s, b) = call(&c, M::GET, p.url("/v1/me"), Some(&op_token), None).await;
    assert_eq!((s, &b["role"]), (StatusCode::OK, &json!("operator")));

    // Missing, garbage and unknown tokens.
    let (s, b) = call(&c, M::GET, p.url("/v1/me"), None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(error_text(&b).contains("log on"), "{b}");
    for garbage in ["nonsense", &"0".repeat(64), &"zz".repeat(32)] {
        let (s, b) = call(&c, M::GET, p.url("/v1/me"), Some(garbage), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{garbage}");
        assert!(error_text(&b).contains("not logged on"), "{b}");
    }

    // Wrong password and unknown login: the same 401 and message.
    let (s1, b1) = call(
        &c,
        M::POST,
        p.url("/v1/sessions"),
        None,
        creds("alice", "wrong password!!"),
    )
    .await;
    let (s2, b2) = call(
        &c,
        M::POST,
        p.url("/v1/sessions"),
        None,
        creds("nobody-here", "wrong password!!"),
    )
    .await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!((s1, &b1), (s2, &b2));
    assert_eq!(error_text(&b1), "wrong login or password");
    // A successful logon resets the count: two more failures do not lock.
    let _ = logon(&c, &p, "alice", PW).await;

    // Lock-out: dave fails 3 times (the configured limit) and is locked.
    let (s, _) = call(&c, M::POST, p.url("/v1/accounts"), None, creds("dave", PW)).await;
    assert_eq!(s, StatusCode::CREATED);
    let dave_token = logon(&c, &p, "dave", PW).await;
    for _ in 0..2 {
        let (s, _) = call(
            &c,
            M::POST,
            p.url("/v1/sessions"),
            None,
            creds("dave", "wrong password!!"),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, b) = call(
        &c,
        M::POST,
        p.url("/v1/sessions"),
        None,
        creds("dave", "wrong password!!"),
    )
    .await;
    assert_eq!(s, StatusCode::LOCKED, "{b}");
    assert!(error_text(&b).contains("contact the vendor"), "{b}");
    let (s, b) = call(&c, M::POST, p.url("/v1/sessions"), None, creds("dave", PW)).await;
    assert_eq!(
        s,
        StatusCode::LOCKED,
        "the right password is refused too: {b}"
    );
    // ...and his open session stops working.
    let (s, _) = call(&c, M::GET, p.url("/v1/me"), Some(&dave_token), None).await;
    assert_eq!(s, StatusCode::LOCKED);

    // Logoff: the token is useless afterwards.
    let t2 = logon(&c, &p, "alice", PW).await;
    let (s, b) = call(
        &c,
        M::DELETE,
        p.url("/v1/sessions/current"),
        Some(&t2),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, b) = call(&c, M::GET, p.url("/v1/me"), Some(&t2), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(error_text(&b).contains("not logged on"), "{b}");
    let (s, _) = call(
        &c,
        M::DELETE,
        p.url("/v1/sessions/current"),
        Some(&t2),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The other session is untouched.
    let (s, _) = call(&c, M::GET, p.url("/v1/me"), Some(&token), None).await;
    assert_eq!(s, StatusCode::OK);

    // Expiry: make the session's last activity 61 s old (the timeout is
    // 60 s) through the store, behind the server's back.
    let (_, me) = call(&c, M::GET, p.url("/v1/me"), Some(&token), None).await;
    let created = me["session"]["created"].as_i64().unwrap();
    let hash = postvault_crypto::hash::sha256(&[&hex::decode(&token).unwrap()]);
    let db = postvault_store::open_store(&store_url).await.unwrap();
    let session = db
        .get_session(&hash)
        .await
        .unwrap()
        .expect("the session is stored by hash");
    assert_eq!(session.login, "alice");
    // Just inside the timeout still works (and touches the session)...
    // The server runs on the wall clock; so does this test's idea of now.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(db.touch_session(&hash, now - 55).await.unwrap());
    // The server uses a session it read for up to a second before reading
    // it again (`sessions::FRESH_FOR`): wait that out after each change
    // made behind its back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _) = call(&c, M::GET, p.url("/v1/me"), Some(&token), None).await;
    assert_eq!(s, StatusCode::OK);
    // (the request was activity: the session's clock started again)
    let touched = db.get_session(&hash).await.unwrap().unwrap();
    assert!(touched.last_active >= now, "{touched:?}");
    // ...beyond it the session has expired.
    assert!(db.touch_session(&hash, created - 3600).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, b) = call(&c, M::GET, p.url("/v1/me"), Some(&token), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(error_text(&b), "session expired, log on again");
    assert!(
        db.get_session(&hash).await.unwrap().is_none(),
        "an expired session is deleted"
    );
    drop(db);

    // Unknown routes and methods get JSON errors too.
    let (s, b) = call(&c, M::GET, p.url("/v1/nothing"), None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error_text(&b).contains("openapi.json"), "{b}");
    let (s, b) = call(&c, M::PUT, p.url("/v1/me"), None, None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(error_text(&b).contains("openapi.json"), "{b}");

    // No plaintext API on the port.
    // A plain HTTP request gets no HTTP answer: the server expects a TLS
    // handshake, fails it, and closes the connection (at most a TLS alert).
    let addr = p.url.strip_prefix("https://").unwrap().to_string();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Write as _};
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
        answer
    })
    .await
    .unwrap();
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP must not be served: {answer:?}"
    );
    assert!(answer.len() < 16, "at most a TLS alert: {answer:?}");

    // Restart on the same data directory.
    let fingerprint = p.fingerprint.clone();
    p.stop();
    let p = Proc::start(&data, &args);
    assert_eq!(
        p.fingerprint, fingerprint,
        "the same certificate after a restart"
    );
    assert_eq!(
        std::fs::read_to_string(&creds_file).unwrap(),
        creds_text,
        "credentials unchanged"
    );
    assert!(
        p.operator_line.contains(&creds_file.display().to_string()),
        "{}",
        p.operator_line
    );
    let c = default_client(&data);
    let t = logon(&c, &p, "alice", PW).await;
    let (s, _) = call(&c, M::GET, p.url("/v1/me"), Some(&t), None).await;
    assert_eq!(s, StatusCode::OK);
    let _ = logon(&c, &p, "operator", &op_password).await;
    let (s, _) = call(&c, M::POST, p.url("/v1/sessions"), None, creds("dave", PW)).await;
    assert_eq!(s, StatusCode::LOCKED, "still locked after the restart");
    p.stop();

    // A clean stop leaves every module's audit log signed to its end.
    let mut logs = 0;
    for member in std::fs::read_dir(data.join("modules")).unwrap() {
        let log = member.unwrap().path().join("audit.log");
        if !log.exists() {
            continue;
        }
        let entries = postvault_audit::parse_log(&std::fs::read_to_string(&log).unwrap()).unwrap();
        let last = entries.last().unwrap();
        assert!(last.signature.is_some(), "{}: {last:?}", log.display());
        assert_eq!(last.command, "CreateAuditEntry", "{last:?}");
        logs += 1;
    }
    assert!(logs >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_on_sqlite() {
    scenario(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_on_postgres() {
    let url = pg_cluster::cluster().create_database().await;
    scenario(Some(url)).await;
}

fn serve_output(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("serve")
        .args(args)
        .env_remove("POSTVAULT_DATA")
        .env_remove("POSTVAULT_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn bad_configuration_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data: PathBuf = tmp.path().join("data");
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, "session_timeout = 5\n").unwrap();
    let d = data.to_str().unwrap();
    let c = config.to_str().unwrap();
    for (args, expect) in [
        (vec!["--data", d, "--config", c], "session_timeout"),
        (vec!["--data", d, "--listen", "localhost"], "IP:PORT"),
        (
            vec!["--data", d, "--store", "mysql://x"],
            "sqlite://PATH or postgres://",
        ),
    ] {
        let out = serve_output(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert!(!data.exists(), "a refused configuration creates nothing");
}

#[test]
fn help_names_every_option() {
    let out = serve_output(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--data",
        "--listen",
        "--store",
        "--config",
        "session_idle_timeout_secs",
        "failed_logon_limit",
        "operator-credentials.txt",
        "fingerprint",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
}
