//! The JSON API: the router, the handlers, and how every failure becomes a
//! `{"error": "..."}` response with the right 4xx (or a logged 5xx).
//!
//! Routes (the OpenAPI document at `/openapi.json` describes each):
//!
//! * `GET /healthz`, `GET /openapi.json`;
//! * `POST /v1/accounts`: sign-up (a customer account);
//! * `POST /v1/sessions`: logon, returns a bearer token;
//! * `DELETE /v1/sessions/current`: logoff;
//! * `GET /v1/me`: the logged-on account;
//! * `POST /v1/staff/accounts`: an operator makes a provider or operator
//!   account;
//! * the meter and provider routes of `meters_api`.
//!
//! Session tokens are 32 random bytes, sent as 64 hex digits; the store
//! keeps only the SHA-256 of the 32 bytes, so a copy of the database logs
//! nobody on. A session unused for longer than the idle timeout is expired
//! and deleted when it is next presented. A session read from the store is
//! used for up to a second without reading it again (`sessions`).

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Json, Router};
use postvault_crypto::password::{self, Argon2Params};
use postvault_crypto::rng::Rng;
use postvault_module::Clock;
use postvault_store::{Account, Session, Store, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// What the handlers share.
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: Mutex<Rng>,
    pub(crate) session_idle_timeout_secs: u64,
    pub(crate) failed_logon_limit: u32,
    pub(crate) max_body_bytes: usize,
    /// Argon2id costs for new hashes and for the dummy check.
    pub(crate) argon2: Argon2Params,
    /// Bounds the Argon2id computations running at once (each takes
    /// 19 MiB), so a flood of logons queues instead of exhausting memory.
    pub(crate) argon2_slots: tokio::sync::Semaphore,
    /// The modules, MeterGen and the provider.
    pub(crate) postal: Arc<crate::postal::Postal>,
    /// The printers' queue (group commit).
    pub(crate) printer: tokio::sync::mpsc::Sender<crate::printer::PrintJob>,
    /// Meters' owners already read (device ID -> login): a meter's owner
    /// is set once, when it is reserved, and never changes, so prints need
    /// not read the meter again to check it (see `meters_api::check_owner`).
    pub(crate) owners: Mutex<std::collections::HashMap<String, String>>,
    /// Sessions read from the store in the last second (see `sessions`).
    pub(crate) sessions: crate::sessions::SessionCache,
}

/// How many Argon2id computations may run at once.
pub(crate) fn argon2_slots() -> tokio::sync::Semaphore {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::sync::Semaphore::new(cpus * 2)
}

/// Runs Argon2id work on a blocking thread once a slot is free.
async fn argon2_work<T: Send + 'static>(
    st: &St,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _slot = st
        .argon2_slots
        .acquire()
        .await
        .map_err(|e| ApiError::internal("waiting for a hashing slot", e))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal("hashing task", e))
}

pub(crate) type St = Arc<AppState>;

/// Every route the router serves, as (method, path): the router is built
/// from this list only, and the OpenAPI test checks the document against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/accounts"),
    ("POST", "/v1/sessions"),
    ("DELETE", "/v1/sessions/current"),
    ("GET", "/v1/me"),
    ("GET", "/v1/deployment"),
    ("GET", "/v1/certificates/{device_id}"),
    ("POST", "/v1/meters"),
    ("GET", "/v1/meters"),
    ("GET", "/v1/meters/{device_id}"),
    ("POST", "/v1/meters/{device_id}/registration"),
    ("POST", "/v1/meters/{device_id}/purchases"),
    ("POST", "/v1/meters/{device_id}/indicia"),
    ("GET", "/v1/meters/{device_id}/indicia"),
    ("POST", "/v1/meters/{device_id}/corrections"),
    ("POST", "/v1/meters/{device_id}/refund"),
    ("GET", "/v1/meters/{device_id}/money"),
    ("GET", "/v1/provider/meters/{device_id}"),
    ("POST", "/v1/provider/messages"),
    ("POST", "/v1/staff/accounts"),
];

fn handler_for(method: &str, path: &str) -> MethodRouter<St> {
    use crate::meters_api as m;
    match (method, path) {
        ("GET", "/healthz") => get(healthz),
        ("GET", "/openapi.json") => get(openapi),
        ("POST", "/v1/accounts") => post(sign_up),
        ("POST", "/v1/sessions") => post(logon),
        ("DELETE", "/v1/sessions/current") => delete(logoff),
        ("GET", "/v1/me") => get(me),
        ("GET", "/v1/deployment") => get(m::deployment),
        ("GET", "/v1/certificates/{device_id}") => get(m::certificate),
        ("POST", "/v1/meters") => post(m::reserve),
        ("GET", "/v1/meters") => get(m::list_meters),
        ("GET", "/v1/meters/{device_id}") => get(m::get_meter),
        ("POST", "/v1/meters/{device_id}/registration") => post(m::register),
        ("POST", "/v1/meters/{device_id}/purchases") => post(m::purchase),
        ("POST", "/v1/meters/{device_id}/indicia") => post(m::print),
        ("GET", "/v1/meters/{device_id}/indicia") => get(m::history),
        ("POST", "/v1/meters/{device_id}/corrections") => post(m::correction),
        ("POST", "/v1/meters/{device_id}/refund") => post(m::refund),
        ("GET", "/v1/meters/{device_id}/money") => get(m::money),
        ("GET", "/v1/provider/meters/{device_id}") => get(m::provider_meter),
        ("POST", "/v1/provider/messages") => post(m::provider_message),
        ("POST", "/v1/staff/accounts") => post(staff_account),
        _ => unreachable!("ROUTES and handler_for disagree on {method} {path}"),
    }
}

/// The application: every route of [`ROUTES`], JSON fallbacks for unknown
/// paths and methods, and the body size limit.
pub(crate) fn router(state: St) -> Router {
    let mut router: Router<St> = Router::new();
    for (method, path) in ROUTES {
        router = router.route(path, handler_for(method, path));
    }
    let limit = state.max_body_bytes;
    router
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such route: /openapi.json lists the API",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method: /openapi.json lists the API",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

// ----- errors -----

/// A refused or failed request: a status and a message saying what to do.
/// Causes of server-side failures are logged, never sent.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: Cow<'static, str>,
}

const WRONG_CREDENTIALS: &str = "wrong login or password";
const LOCKED: &str =
    "this account is locked after too many failed logons: contact the vendor to have it unlocked";
const NO_TOKEN: &str = "not logged on: log on with POST /v1/sessions and send the token as `Authorization: Bearer TOKEN`";
const BAD_TOKEN: &str = "not logged on: the session token is unknown or logged off; log on again with POST /v1/sessions";
const EXPIRED: &str = "session expired, log on again";

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// A server-side failure: the cause goes to the log, the client gets a
    /// message without it.
    pub(crate) fn internal(what: &str, cause: impl std::fmt::Display) -> Self {
        eprintln!("postvault server error: {what}: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error: nothing was changed; the server log has the details",
        )
    }

    pub(crate) fn store(what: &str, e: StoreError) -> Self {
        match e {
            StoreError::Busy => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is busy: try again",
            ),
            e => Self::internal(what, e),
        }
    }

    /// The HTTP status.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The message sent to the client.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    fn unauthorized(message: &'static str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

// ----- the JSON body extractor -----

/// `Json<T>` whose refusals are [`ApiError`]s saying what was wrong.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T> FromRequest<St> for ApiJson<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &St) -> Result<Self, ApiError> {
        let limit = state.max_body_bytes;
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send a JSON body with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| json_rejection(e.into(), limit))?;
        // Every body is an object: serde would also fill a struct from an
        // array of its fields in order, which no client should rely on.
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|b| *b != b'{')
            && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok()
        {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the JSON does not fit this request: the body must be a JSON object (see /openapi.json)",
            ));
        }
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection, limit)),
        }
    }
}

/// `application/json` or `application/*+json` (parameters such as
/// `charset` allowed), as axum's `Json` accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or("").trim();
            let essence = essence.to_ascii_lowercase();
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        })
}

fn json_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    match rejection {
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("malformed JSON: {}", source_text(&e)),
        ),
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the JSON does not fit this request: {} (see /openapi.json)",
                source_text(&e)
            ),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send a JSON body with `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body too large: the limit is {limit} bytes"),
            )
        }
        other => ApiError::new(
            other.status(),
            format!("cannot read the request body: {}", other.body_text()),
        ),
    }
}

/// The innermost cause of an extractor error (serde's message with its
/// line and column, without axum's prefix).
fn source_text(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

// ----- the logged-on session -----

/// A request's session, checked: the token is known, not idle beyond the
/// timeout (then it is deleted), and the account exists and is not locked.
/// Using it counts as activity.
pub(crate) struct Authed {
    token_hash: [u8; 32],
    session: Session,
    pub(crate) account: Account,
}

impl FromRequestParts<St> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &St) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(NO_TOKEN));
        };
        // The scheme name is case-insensitive (RFC 9110, 11.1).
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| ApiError::unauthorized(NO_TOKEN))?;
        let bytes = Zeroizing::new(hex::decode(token).unwrap_or_default());
        if bytes.len() != 32 {
            return Err(ApiError::unauthorized(BAD_TOKEN));
        }
        let token_hash = postvault_crypto::hash::sha256(&[&bytes]);
        let now = st.clock.now();
        let idle =
            |s: &Session| now.saturating_sub(s.last_active) > st.session_idle_timeout_secs as i64;
        let (mut session, account, from_cache) = match st.sessions.get(&token_hash) {
            // A copy that looks idle is read again: another server on the
            // same store may have recorded activity since it was read.
            Some((session, account)) if !idle(&session) => (session, account, true),
            _ => {
                let (session, account) = read_session(st, &token_hash).await?;
                (session, account, false)
            }
        };
        if idle(&session) {
            st.sessions.forget(&token_hash);
            st.store
                .delete_session(&token_hash)
                .await
                .map_err(|e| ApiError::store("deleting an expired session", e))?;
            return Err(ApiError::unauthorized(EXPIRED));
        }
        if account.locked {
            st.sessions.forget(&token_hash);
            return Err(ApiError::new(StatusCode::LOCKED, LOCKED));
        }
        // Recording activity is a database write (an fsync): done at most
        // once per 1/15 of the idle timeout (a minute for 15 minutes), so
        // a busy client does not cost a write per request. A session
        // therefore expires between 14/15 of the timeout and the timeout
        // after its last request.
        if now.saturating_sub(session.last_active) >= touch_interval(st.session_idle_timeout_secs) {
            let active = now.max(session.last_active);
            st.store
                .touch_session(&token_hash, active)
                .await
                .map_err(|e| ApiError::store("touching a session", e))?;
            session.last_active = active;
            st.sessions.touched(&token_hash, active);
        }
        if !from_cache {
            st.sessions
                .put(token_hash, session.clone(), account.clone());
        }
        Ok(Self {
            token_hash,
            session,
            account,
        })
    }
}

/// The session and account for `token_hash` from the store; 401 when the
/// token is unknown (never issued, logged off or expired). The account's
/// password hash is left out: a session is authorized by its token, and
/// the hash is then neither handed to the handlers nor kept in the
/// session cache.
async fn read_session(st: &St, token_hash: &[u8; 32]) -> Result<(Session, Account), ApiError> {
    let (session, mut account) = st
        .store
        .get_session_account(token_hash)
        .await
        .map_err(|e| ApiError::store("reading a session", e))?
        .ok_or_else(|| ApiError::unauthorized(BAD_TOKEN))?;
    account.password_hash = String::new();
    Ok((session, account))
}

/// How often a session's last activity is written: 1/15 of the idle
/// timeout (60 s for the default 15 minutes), at least every second.
fn touch_interval(idle_timeout_secs: u64) -> i64 {
    i64::try_from(idle_timeout_secs / 15)
        .unwrap_or(i64::MAX)
        .max(1)
}

// ----- handlers -----

async fn healthz(State(st): State<St>) -> Result<Json<Value>, ApiError> {
    st.store
        .schema_version()
        .await
        .map_err(|e| ApiError::store("health check", e))?;
    Ok(Json(json!({ "status": "ok", "store": st.store.engine() })))
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

/// A sign-up or logon request. No `Debug`: it holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    login: String,
    password: Zeroizing<String>,
}

/// Login IDs: 3 to 64 characters of `A-Z a-z 0-9 . _ @ -`.
pub(crate) fn valid_login(login: &str) -> bool {
    (3..=64).contains(&login.len())
        && login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_BYTES: usize = 1024;

async fn sign_up(
    State(st): State<St>,
    ApiJson(req): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    create_account(&st, req.login, req.password, "customer").await
}

/// A provider or operator account, as an operator asks for it. No
/// `Debug`: it holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaffAccount {
    login: String,
    password: Zeroizing<String>,
    role: String,
}

/// The roles an operator may give a new account (customers sign up
/// themselves).
const STAFF_ROLES: [&str; 2] = ["provider", "operator"];

/// `POST /v1/staff/accounts`: an operator makes a provider account (the
/// provider's own logon for `POST /v1/provider/messages`) or another
/// operator's.
async fn staff_account(
    State(st): State<St>,
    auth: Authed,
    body: Result<ApiJson<StaffAccount>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // The role first: a non-operator learns nothing from how the body is read.
    if auth.account.role != "operator" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only an operator account may make provider and operator accounts",
        ));
    }
    let ApiJson(req) = body?;
    let Some(role) = STAFF_ROLES.iter().find(|r| **r == req.role) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "role must be \"provider\" or \"operator\", not {:?} (customers sign up at POST /v1/accounts)",
                req.role
            ),
        ));
    };
    let login = req.login.clone();
    let made = create_account(&st, req.login, req.password, role).await?;
    eprintln!(
        "postvault server: operator {} made the {role} account {login:?}",
        auth.account.login
    );
    Ok(made)
}

/// Checks a new account's login and password, hashes the password and
/// stores the account with `role`.
async fn create_account(
    st: &St,
    login: String,
    password: Zeroizing<String>,
    role: &str,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !valid_login(&login) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "login must be 3 to 64 characters of A-Z, a-z, 0-9, '.', '_', '@' and '-'",
        ));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "password must be at least 12 characters long",
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "password must be at most 1024 bytes long",
        ));
    }
    let hash = hash_password(st, password).await?;
    let account = Account {
        login,
        password_hash: hash,
        role: role.into(),
        failed_logons: 0,
        locked: false,
        created: st.clock.now(),
    };
    match st.store.create_account(&account).await {
        Ok(()) => {}
        Err(StoreError::Duplicate { .. }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("the login {:?} is taken: choose another", account.login),
            ));
        }
        Err(e) => return Err(ApiError::store("creating an account", e)),
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "login": account.login, "role": account.role })),
    ))
}

/// Hashes a new password on a blocking thread (Argon2id takes a while).
pub(crate) async fn hash_password(
    st: &St,
    password: Zeroizing<String>,
) -> Result<String, ApiError> {
    let shared = st.clone();
    argon2_work(st, move || {
        let mut rng = shared.rng.lock().unwrap_or_else(|p| p.into_inner());
        password::hash_password(&mut rng, password.as_bytes(), shared.argon2)
    })
    .await?
    .map_err(|e| ApiError::internal("hashing a password", e))
}

async fn logon(
    State(st): State<St>,
    ApiJson(req): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let account = st
        .store
        .get_account(&req.login)
        .await
        .map_err(|e| ApiError::store("reading an account", e))?;
    let Some(account) = account else {
        // The same work as a real check, so timing does not tell who exists.
        let params = st.argon2;
        let password = req.password;
        argon2_work(&st, move || {
            password::dummy_verify(password.as_bytes(), params)
        })
        .await?;
        return Err(ApiError::unauthorized(WRONG_CREDENTIALS));
    };
    let hash = account.password_hash.clone();
    let password = req.password;
    let ok = argon2_work(&st, move || {
        password::verify_password(&hash, password.as_bytes())
    })
    .await?
    .map_err(|e| ApiError::internal("checking a stored password hash", e))?;
    if account.locked {
        return Err(ApiError::new(StatusCode::LOCKED, LOCKED));
    }
    if !ok {
        let now = st
            .store
            .record_failed_logon(&account.login, st.failed_logon_limit)
            .await
            .map_err(|e| ApiError::store("counting a failed logon", e))?;
        if now.locked {
            st.sessions.forget_login(&now.login);
            eprintln!(
                "postvault server: account {:?} locked after {} failed logons",
                now.login, now.failed_logons
            );
            return Err(ApiError::new(StatusCode::LOCKED, LOCKED));
        }
        return Err(ApiError::unauthorized(WRONG_CREDENTIALS));
    }
    st.store
        .record_successful_logon(&account.login)
        .await
        .map_err(|e| ApiError::store("recording a logon", e))?;
    let token = {
        let mut rng = st.rng.lock().unwrap_or_else(|p| p.into_inner());
        Zeroizing::new(
            rng.array::<32>()
                .map_err(|e| ApiError::internal("making a session token", e))?,
        )
    };
    let now = st.clock.now();
    let session = Session {
        token_hash: postvault_crypto::hash::sha256(&[&token[..]]).to_vec(),
        login: account.login.clone(),
        created: now,
        last_active: now,
    };
    st.store
        .create_session(&session)
        .await
        .map_err(|e| ApiError::store("creating a session", e))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": hex::encode(&token[..]),
            "login": account.login,
            "role": account.role,
            "idle_timeout_secs": st.session_idle_timeout_secs,
        })),
    ))
}

async fn logoff(State(st): State<St>, auth: Authed) -> Result<StatusCode, ApiError> {
    st.sessions.forget(&auth.token_hash);
    st.store
        .delete_session(&auth.token_hash)
        .await
        .map_err(|e| ApiError::store("deleting a session", e))?;
    // Again: a request running alongside may have kept a copy it read
    // before the delete.
    st.sessions.forget(&auth.token_hash);
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(st): State<St>, auth: Authed) -> Json<Value> {
    Json(json!({
        "login": auth.account.login,
        "role": auth.account.role,
        "created": auth.account.created,
        "session": {
            "created": auth.session.created,
            "idle_timeout_secs": st.session_idle_timeout_secs,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use postvault_crypto::Faults;
    use postvault_module::ManualClock;
    use tower::ServiceExt as _;

    async fn app(dir: &std::path::Path) -> Router {
        router(app_state(dir).await)
    }

    async fn app_state(dir: &std::path::Path) -> St {
        let url = format!("sqlite://{}", dir.join("t.sqlite").display());
        let store = postvault_store::open_store(&url).await.unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_000_000));
        let provider =
            postvault_crypto::ecdsa::EcdsaP256KeyPair::generate(&Faults::none()).unwrap();
        let mut config = postvault_pool::PoolConfig::new(
            &dir.join("modules"),
            clock.clone(),
            provider.public_key().to_vec(),
        );
        config.modules = 1;
        config.argon2 = Argon2Params::TEST;
        let pool = tokio::task::spawn_blocking(move || postvault_pool::Pool::open(config))
            .await
            .unwrap()
            .unwrap();
        let postal = Arc::new(crate::postal::Postal {
            store: store.clone(),
            pool,
            clock: clock.clone(),
            provider: Some(Arc::new(provider)),
            vendor: crate::postal::VENDOR,
            model: crate::postal::MODEL,
            meter_stock: 1,
            metergen: tokio::sync::Mutex::new(()),
            closing: Default::default(),
            committed: Default::default(),
            print_times: Default::default(),
        });
        let printer =
            crate::printer::start(postal.clone(), 1, crate::config::DEFAULT_PRINT_QUEUE).unwrap();
        Arc::new(AppState {
            store,
            postal,
            printer,
            clock,
            rng: Mutex::new(Rng::new(Faults::none())),
            session_idle_timeout_secs: 900,
            failed_logon_limit: 5,
            max_body_bytes: 64 * 1024,
            argon2: Argon2Params::TEST,
            argon2_slots: argon2_slots(),
            owners: Default::default(),
            sessions: Default::default(),
        })
    }

    /// Sends a JSON request; returns the status and the JSON answer.
    async fn send(
        app: &Router,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The handlers and the session cache get the account without its
    /// password hash, whether the session was read from the store or
    /// from the cache.
    #[tokio::test]
    async fn sessions_carry_no_password_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let st = app_state(tmp.path()).await;
        let app = router(st.clone());
        let creds = json!({ "login": "hash-check", "password": "a long enough password" });
        let (status, _) = send(&app, "POST", "/v1/accounts", None, creds.clone()).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, session) = send(&app, "POST", "/v1/sessions", None, creds).await;
        assert_eq!(status, StatusCode::CREATED);
        let token = session["token"].as_str().unwrap();
        let hash = postvault_crypto::hash::sha256(&[&hex::decode(token).unwrap()]);
        let stored = st.store.get_account("hash-check").await.unwrap().unwrap();
        assert!(
            stored.password_hash.starts_with("$argon2id$"),
            "the store keeps the hash"
        );
        for _ in 0..2 {
            let (status, me) = send(&app, "GET", "/v1/me", Some(token), Value::Null).await;
            assert_eq!(
                (status, me["login"].as_str()),
                (StatusCode::OK, Some("hash-check"))
            );
            let (_, cached) = st.sessions.get(&hash).expect("the session is kept");
            assert_eq!(cached.login, "hash-check");
            assert!(
                cached.password_hash.is_empty(),
                "the cache must not keep the password hash"
            );
        }
    }

    /// The OpenAPI document describes exactly the routes the router is
    /// built from, and the router serves each of them (neither the
    /// unknown-route nor the wrong-method fallback answers).
    #[tokio::test]
    async fn openapi_matches_the_router() {
        let doc = crate::openapi::document();
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);

        let tmp = tempfile::tempdir().unwrap();
        let app = app(tmp.path()).await;
        for (method, path) in ROUTES {
            let req = axum::http::Request::builder()
                .method(*method)
                .uri(*path)
                .body(Body::empty())
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&body);
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED && !text.contains("no such route"),
                "{method} {path}: {status} {text}"
            );
        }
        // And the fallbacks answer in JSON.
        let req = axum::http::Request::builder()
            .uri("/nope")
            .body(Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn sessions_are_touched_at_a_fraction_of_the_timeout() {
        assert_eq!(touch_interval(900), 60);
        assert_eq!(touch_interval(1), 1);
        assert_eq!(touch_interval(30), 2);
    }

    #[test]
    fn logins() {
        for ok in ["abc", "a.b_c@d-e", &"x".repeat(64)] {
            assert!(valid_login(ok), "{ok}");
        }
        for bad in ["ab", "a b", "é12", &"x".repeat(65), "a/b", ""] {
            assert!(!valid_login(bad), "{bad}");
        }
    }
}
