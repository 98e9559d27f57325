//! postvault-client: the postal server's HTTPS API from the customer's and
//! the provider's side.
//!
//! - [`Client`] talks to one server over HTTPS, trusting either exactly the
//!   certificate with a given SHA-256 fingerprint ([`Trust::Fingerprint`],
//!   the server's self-signed certificate) or a CA file
//!   ([`Trust::CaFile`]); one async method per route of the API (`api.md`),
//!   typed requests and responses in [`api`].
//! - [`customer`] does the customer-side cryptography with the module
//!   crate's own functions: the HMAC key, the sealed registration secrets,
//!   the Configure PSD MAC check, the Create Indicium request MAC and the
//!   check of the answer (response MAC, challenge, the indicium's fields
//!   and signature); and parses ZIP codes, dollar amounts, dates and mail
//!   classes.
//! - [`state`] is the client's state directory (server, login, session
//!   token, and each meter's HMAC key sealed under the account password).
//!
//! No key bytes are handled here except through `postvault-crypto` and
//! `postvault-module` functions; the HMAC key lives in `Zeroizing` buffers.
#![forbid(unsafe_code)]

pub mod api;
pub mod customer;
pub mod input;
pub mod state;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::*;
pub use crate::tls::{fingerprint_of, normalize_fingerprint};

/// How long one request may take before it is abandoned.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Which server certificate to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Exactly the end-entity certificate whose SHA-256 fingerprint this is
    /// (`AA:BB:...`, as `postvault serve` and `openssl x509 -fingerprint
    /// -sha256` print it; case and colons are not significant). The
    /// handshake signature is still verified with that certificate's key.
    Fingerprint(String),
    /// Normal WebPKI verification (chain, name, validity) against the root
    /// certificate(s) in this PEM file.
    CaFile(PathBuf),
}

/// Everything a client call can fail with. Messages carry no secrets.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is not an `https://` URL.
    #[error("invalid server URL {0:?}: give the https://HOST:PORT that `postvault serve` printed")]
    Url(String),
    /// The trust setting is unusable (malformed fingerprint, unreadable or
    /// empty CA file).
    #[error("{0}")]
    Trust(String),
    /// The server could not be reached or the connection failed (including
    /// a certificate that is not the pinned one); the text has the causes.
    #[error("cannot talk to {url}: {message}")]
    Transport {
        /// The request URL.
        url: String,
        /// The error and its causes.
        message: String,
    },
    /// The server answered with an error status: its HTTP status and its
    /// `error` message.
    #[error("the server refused ({status}): {message}")]
    Api {
        /// HTTP status code.
        status: u16,
        /// The server's `error` message (or the body's start when it sent none).
        message: String,
    },
    /// The server's answer is not what the API specifies.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// A bearer-authenticated call was made without a session token.
    #[error("not logged on: run `postvault client logon` first")]
    NotLoggedOn,
    /// A customer-side check of the server's answer failed (wrong MAC,
    /// challenge, indicium field or signature): the answer must not be used.
    #[error("the server's answer failed a check: {0}")]
    Check(String),
    /// User input that cannot be used (ZIP code, amount, date, class, CSV).
    #[error("{0}")]
    Input(String),
    /// A cryptographic operation failed.
    #[error(transparent)]
    Crypto(#[from] postvault_crypto::CryptoError),
    /// The state directory could not be read or written.
    #[error("{0}")]
    State(String),
}

impl ClientError {
    /// The HTTP status of an [`ClientError::Api`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Shorthand.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// An HTTPS client of one postal server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the server at `url` (`https://HOST:PORT`, a trailing `/`
    /// is dropped) trusting its certificate as `trust` says.
    pub fn new(url: &str, trust: Trust) -> Result<Self> {
        let base = url.trim().trim_end_matches('/').to_string();
        match base.strip_prefix("https://") {
            Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => {}
            _ => return Err(ClientError::Url(url.to_string())),
        }
        let config = tls::client_config(&trust)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| ClientError::Trust(format!("cannot set up the HTTPS client: {e}")))?;
        Ok(Self {
            http,
            base,
            token: None,
        })
    }

    /// Uses `token` as the bearer token of later calls.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets or clears the bearer token.
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        auth: bool,
    ) -> Result<T> {
        let text = self.call_raw(method, path, body, auth).await?;
        serde_json::from_str(&text)
            .map_err(|e| ClientError::Protocol(format!("{path}: {e} in {}", excerpt(&text))))
    }

    async fn call_raw<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        auth: bool,
    ) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if auth {
            let token = self.token.as_deref().ok_or(ClientError::NotLoggedOn)?;
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| transport(&url, &e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| transport(&url, &e))?;
        if status.is_success() {
            return Ok(text);
        }
        Err(api_error(status, &text))
    }

    // --- accounts and sessions ---

    /// `POST /v1/accounts`: signs up a customer account.
    pub async fn sign_up(&self, login: &str, password: &str) -> Result<Account> {
        let body = Credentials { login, password };
        self.call(Method::POST, "/v1/accounts", Some(&body), false)
            .await
    }

    /// `POST /v1/sessions`: logs on; the token is NOT stored in `self`
    /// (use [`Client::with_token`]).
    pub async fn logon(&self, login: &str, password: &str) -> Result<Session> {
        let body = Credentials { login, password };
        self.call(Method::POST, "/v1/sessions", Some(&body), false)
            .await
    }

    /// `DELETE /v1/sessions/current`: logs off.
    pub async fn logoff(&self) -> Result<()> {
        self.call_raw::<()>(Method::DELETE, "/v1/sessions/current", None, true)
            .await
            .map(drop)
    }

    /// `GET /v1/me`.
    pub async fn me(&self) -> Result<Me> {
        self.call::<(), _>(Method::GET, "/v1/me", None, true).await
    }

    // --- public ---

    /// `GET /v1/deployment`: the registration key, CA certificate, provider key, limits.
    pub async fn deployment(&self) -> Result<Deployment> {
        self.call::<(), _>(Method::GET, "/v1/deployment", None, false)
            .await
    }

    /// `GET /v1/certificates/{device_id}`: a PSD certificate.
    pub async fn certificate(&self, device_id: &str) -> Result<CertificateView> {
        let path = format!("/v1/certificates/{}", seg(device_id));
        self.call::<(), _>(Method::GET, &path, None, false).await
    }

    // --- customer ---

    /// `POST /v1/meters`: reserves a certified meter for the account.
    pub async fn reserve_meter(&self) -> Result<ReservedMeter> {
        self.call(
            Method::POST,
            "/v1/meters",
            Some(&serde_json::json!({})),
            true,
        )
        .await
    }

    /// `POST /v1/meters/{id}/registration`: Configure PSD with the sealed
    /// secrets. Check the answer with [`customer::check_configure_mac`].
    pub async fn register_meter(
        &self,
        device_id: &str,
        request: &RegistrationRequest,
    ) -> Result<Registration> {
        let path = format!("/v1/meters/{}/registration", seg(device_id));
        self.call(Method::POST, &path, Some(request), true).await
    }

    /// `GET /v1/meters`: the account's meters.
    pub async fn meters(&self) -> Result<Vec<MeterView>> {
        let list: MeterList = self
            .call::<(), _>(Method::GET, "/v1/meters", None, true)
            .await?;
        Ok(list.meters)
    }

    /// `GET /v1/meters/{id}`: one meter (registers, current challenge, certificate).
    pub async fn meter(&self, device_id: &str) -> Result<MeterView> {
        let path = format!("/v1/meters/{}", seg(device_id));
        self.call::<(), _>(Method::GET, &path, None, true).await
    }

    /// `POST /v1/meters/{id}/purchases`: buys postage (the server's provider signs a Download).
    pub async fn purchase(&self, device_id: &str, amount_mills: u64) -> Result<Purchase> {
        let path = format!("/v1/meters/{}/purchases", seg(device_id));
        let body = PurchaseRequest { amount_mills };
        self.call(Method::POST, &path, Some(&body), true).await
    }

    /// `POST /v1/meters/{id}/indicia`: prints one indicium. Check the answer
    /// with [`customer::check_print_answer`] before using it.
    pub async fn print(&self, device_id: &str, request: &PrintRequest) -> Result<PrintAnswer> {
        let path = format!("/v1/meters/{}/indicia", seg(device_id));
        self.call(Method::POST, &path, Some(request), true).await
    }

    /// `POST /v1/meters/{id}/corrections`: a correction indicium (category `CORR`).
    pub async fn correct(&self, device_id: &str, request: &PrintRequest) -> Result<PrintAnswer> {
        let path = format!("/v1/meters/{}/corrections", seg(device_id));
        self.call(Method::POST, &path, Some(request), true).await
    }

    /// `POST /v1/meters/{id}/refund`: refunds the remaining postage and withdraws the meter.
    pub async fn refund(&self, device_id: &str) -> Result<RefundAnswer> {
        let path = format!("/v1/meters/{}/refund", seg(device_id));
        self.call(Method::POST, &path, Some(&serde_json::json!({})), true)
            .await
    }

    /// `GET /v1/meters/{id}/indicia`: the meter's indicia, by piece.
    pub async fn indicia(&self, device_id: &str) -> Result<Vec<IndiciumRecord>> {
        let path = format!("/v1/meters/{}/indicia", seg(device_id));
        let list: IndiciumList = self.call::<(), _>(Method::GET, &path, None, true).await?;
        Ok(list.indicia)
    }

    /// `GET /v1/meters/{id}/money`: downloads and refunds.
    pub async fn money(&self, device_id: &str) -> Result<Vec<MoneyRecord>> {
        let path = format!("/v1/meters/{}/money", seg(device_id));
        let list: MoneyList = self.call::<(), _>(Method::GET, &path, None, true).await?;
        Ok(list.money)
    }

    // --- provider ---

    /// `GET /v1/provider/meters/{id}`: next sequence number and control total.
    pub async fn provider_meter(&self, device_id: &str) -> Result<ProviderMeterView> {
        let path = format!("/v1/provider/meters/{}", seg(device_id));
        self.call::<(), _>(Method::GET, &path, None, true).await
    }

    /// `POST /v1/provider/messages`: a signed provider message.
    pub async fn provider_message(
        &self,
        message: &postvault_module::psd::ProviderMessage,
    ) -> Result<ProviderAnswer> {
        let body = ProviderMessageRequest { message };
        self.call(Method::POST, "/v1/provider/messages", Some(&body), true)
            .await
    }

    // --- operator ---

    /// `POST /v1/staff/accounts`: as an operator, makes a `provider` or
    /// `operator` account.
    pub async fn staff_account(&self, login: &str, password: &str, role: &str) -> Result<Account> {
        let body = StaffAccount {
            login,
            password,
            role,
        };
        self.call(Method::POST, "/v1/staff/accounts", Some(&body), true)
            .await
    }
}

/// A path segment: device IDs are digits and `-`; anything else is
/// percent-encoded so it cannot change the path.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn excerpt(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    format!("{t:?}")
}

/// A transport error with its causes (reqwest's own text omits them, and
/// the cause is what says "not the pinned certificate").
fn transport(url: &str, e: &reqwest::Error) -> ClientError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    ClientError::Transport {
        url: url.to_string(),
        message,
    }
}

fn api_error(status: StatusCode, text: &str) -> ClientError {
    let message = serde_json::from_str::<ErrorBody>(text)
        .map(|b| b.error)
        .unwrap_or_else(|_| {
            if text.trim().is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_string()
            } else {
                text.chars().take(200).collect()
            }
        });
    ClientError::Api {
        status: status.as_u16(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let fp = Trust::Fingerprint(["AB"; 32].join(":"));
        assert!(Client::new("http://127.0.0.1:1", fp.clone()).is_err());
        assert!(Client::new("https://", fp.clone()).is_err());
        let c = Client::new("https://127.0.0.1:8443/", fp).unwrap();
        assert_eq!(c.url(), "https://127.0.0.1:8443");
    }

    #[test]
    fn path_segments_cannot_escape() {
        assert_eq!(seg("0042-0001-00000017"), "0042-0001-00000017");
        assert_eq!(seg("../x"), "..%2Fx");
        assert_eq!(seg("a?b"), "a%3Fb");
    }

    #[test]
    fn api_errors_carry_status_and_message() {
        let e = api_error(StatusCode::CONFLICT, r#"{"error":"no provider key"}"#);
        assert_eq!(e.status(), Some(409));
        assert_eq!(e.to_string(), "the server refused (409): no provider key");
        let e = api_error(StatusCode::BAD_GATEWAY, "");
        assert!(e.to_string().contains("Bad Gateway"));
    }

    #[tokio::test]
    async fn bearer_calls_need_a_token() {
        let c = Client::new(
            "https://127.0.0.1:9",
            Trust::Fingerprint(["AB"; 32].join(":")),
        )
        .unwrap();
        assert!(matches!(c.me().await, Err(ClientError::NotLoggedOn)));
    }

    #[tokio::test]
    async fn unreachable_server_is_a_transport_error() {
        let c = Client::new(
            "https://127.0.0.1:9",
            Trust::Fingerprint(["AB"; 32].join(":")),
        )
        .unwrap();
        let e = c.deployment().await.unwrap_err();
        assert!(matches!(e, ClientError::Transport { .. }), "{e}");
    }
}
