//! The server library in-process: [`Server::start`] on port 0 with a clock
//! the test moves by hand (session expiry without sleeping), configured
//! TLS files, and refusals at start. The real binary is tested end to end in
//! `crates/cli/tests/serve.rs`.

use std::path::Path;
use std::sync::Arc;

use postvault_module::ManualClock;
use postvault_server::{OperatorCredentials, Server, ServerConfig, ServerError, TlsFiles};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::{Value, json};

fn config(data: &Path) -> ServerConfig {
    let mut c = ServerConfig::new(data).unwrap();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c
}

/// A client that trusts only `cert_pem` as its root.
fn client(cert_pem: &Path) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert_pem).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

async fn post(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = c.post(url).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn me(c: &reqwest::Client, url: String, token: &str) -> (u16, Value) {
    let r = c.get(url).bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_expire_after_the_idle_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.session_idle_timeout_secs = 10;
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let server = Server::start(cfg, clock.clone()).await.unwrap();
    assert!(matches!(
        server.operator_credentials(),
        OperatorCredentials::Created(_)
    ));
    // The name in the certificate is localhost (and 127.0.0.1).
    let base = format!("https://localhost:{}", server.local_addr().port());
    let c = client(&tmp.path().join("tls/cert.pem"));
    let creds = json!({"login": "erin", "password": "a long enough password"});
    assert_eq!(
        post(&c, format!("{base}/v1/accounts"), creds.clone())
            .await
            .0,
        201
    );
    let (s, b) = post(&c, format!("{base}/v1/sessions"), creds).await;
    assert_eq!(s, 201, "{b}");
    let token = b["token"].as_str().unwrap().to_string();

    // The scheme name is case-insensitive.
    let r = c
        .get(format!("{base}/v1/me"))
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Each use is activity: 10 s idle is still fine, three times over.
    for _ in 0..3 {
        clock.advance(10);
        assert_eq!(me(&c, format!("{base}/v1/me"), &token).await.0, 200);
    }
    // 11 s idle is too long.
    clock.advance(11);
    let (s, b) = me(&c, format!("{base}/v1/me"), &token).await;
    assert_eq!(
        (s, b),
        (401, json!({"error": "session expired, log on again"}))
    );
    // The expired session was deleted: it stays refused, now as unknown.
    let (s, b) = me(&c, format!("{base}/v1/me"), &token).await;
    assert_eq!(s, 401);
    assert!(
        b["error"].as_str().unwrap().contains("not logged on"),
        "{b}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_tls_files_are_used() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let a = Server::start(config(&first), clock.clone()).await.unwrap();
    let fp = a.certificate_fingerprint().to_string();
    a.shutdown().await.unwrap();

    let second = tmp.path().join("second");
    let mut cfg = config(&second);
    cfg.tls = Some(TlsFiles {
        cert: first.join("tls/cert.pem"),
        key: first.join("tls/key.pem"),
    });
    let b = Server::start(cfg, clock).await.unwrap();
    assert_eq!(b.certificate_fingerprint(), fp);
    assert!(
        !second.join("tls").exists(),
        "no self-signed certificate made"
    );
    let c = client(&first.join("tls/cert.pem"));
    let r = c
        .get(format!(
            "https://localhost:{}/healthz",
            b.local_addr().port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_without_its_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let a = Server::start(config(tmp.path()), clock.clone())
        .await
        .unwrap();
    a.shutdown().await.unwrap();
    std::fs::remove_file(tmp.path().join("tls/key.pem")).unwrap();
    let err = Server::start(config(tmp.path()), clock)
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, ServerError::Tls(_)), "{err}");
    assert!(err.to_string().contains("delete both"), "{err}");
}
