//! The meter routes of the API: the deployment's public facts and PSD
//! certificates, reserving and registering a meter, status, buying
//! postage, printing (through the group-commit printer), corrections,
//! refunds, history, and the provider's signed messages. The JSON shapes
//! are in the OpenAPI document (`openapi.rs`).
//!
//! Every route that names a meter checks first that the meter exists and
//! belongs to the logged-on account (the provider routes: that the account
//! is a provider or operator); a meter of another account is answered like
//! an unknown one.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use postvault_module::psd::{
    DeviceId, HpkeSealed, IndiciumRequest, MAX_DESCENDING_CAP, MAX_POSTAGE_MILLS,
    MIN_POSTAGE_MILLS, ProviderCommand, ProviderMessage, PsdStatus,
};
use postvault_module::{Request, Response};
use postvault_store::Meter;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::api::{ApiError, ApiJson, Authed, St};
use crate::postal::{STOCK_STATE, run_provider_message, unexpected};
use crate::printer::PrintJob;

const NO_PROVIDER: &str = "this server holds no provider key: postage is bought from the provider, who sends the signed download (`postvault provider download`)";

/// PEM of a DER certificate.
pub(crate) fn certificate_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn not_found(device_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no meter {device_id:?} in this account: GET /v1/meters lists yours"),
    )
}

/// A device ID from the URL path, in its stored form
/// (`0042-0001-00000017`; `42-1-17` names the same meter). One that does
/// not parse is a 404 that says why.
pub(crate) struct DevicePath(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for DevicePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        match text.parse::<postvault_indicium::DeviceId>() {
            Ok(id) => Ok(DevicePath(id.to_string())),
            Err(e) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no meter {text:?}: not a device ID ({e}); GET /v1/meters lists yours"),
            )),
        }
    }
}

/// The most owners `check_owner` remembers before it starts afresh.
const OWNERS_KEPT: usize = 1 << 16;

/// Refuses, as [`own_meter`] does, a meter that `auth`'s account does not
/// own; for a meter it has seen before it answers from memory (a meter's
/// owner is set once, when it is reserved, and never changes), so a busy
/// customer's prints do not read the meter's row each time.
async fn check_owner(st: &St, auth: &Authed, device_id: &str) -> Result<(), ApiError> {
    let login = auth.account.login.as_str();
    let known = st
        .owners
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(device_id)
        .map(|owner| owner == login);
    match known {
        Some(true) => return Ok(()),
        Some(false) => return Err(not_found(device_id)),
        None => {}
    }
    own_meter(st, auth, device_id).await?;
    let mut owners = st.owners.lock().unwrap_or_else(|p| p.into_inner());
    if owners.len() >= OWNERS_KEPT {
        owners.clear();
    }
    owners.insert(device_id.to_string(), login.to_string());
    Ok(())
}

/// The meter, if it exists and `auth`'s account owns it.
async fn own_meter(st: &St, auth: &Authed, device_id: &str) -> Result<Meter, ApiError> {
    let m = st
        .store
        .get_meter(device_id)
        .await
        .map_err(|e| ApiError::store("reading a meter", e))?
        .ok_or_else(|| not_found(device_id))?;
    if m.owner.as_deref() != Some(auth.account.login.as_str()) {
        return Err(not_found(device_id));
    }
    Ok(m)
}

fn hex_array<const N: usize>(field: &str, text: &str) -> Result<[u8; N], ApiError> {
    let bytes = hex::decode(text).ok().filter(|b| b.len() == N);
    bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field} must be {} hex digits", 2 * N),
        )
    })
}

fn check_zip(field: &str, zip: u32, zero_allowed: bool) -> Result<(), ApiError> {
    if (zip == 0 && zero_allowed) || (10_000..=999_999_999).contains(&zip) && zip / 10_000 > 0 {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{field} = {zip} is not a ZIP+4: send ZIP5 * 10000 + plus-4 (10001-0001 is 100010001){}",
                if zero_allowed { ", or 0 for none" } else { "" }
            ),
        ))
    }
}

fn view(m: &Meter, s: &PsdStatus) -> Value {
    json!({
        "device_id": m.device_id,
        "state": format!("{:?}", s.state),
        "ascending_mills": s.ascending_mills,
        "descending_mills": s.descending_mills,
        "control_total_mills": s.control_total_mills,
        "max_descending_mills": s.max_descending_mills,
        "piece_count": s.piece_count,
        "licensing_zip": s.licensing_zip,
        "challenge": s.challenge.map(hex::encode),
        "certificate_pem": m.certificate.as_deref().map(certificate_pem),
    })
}

/// Retrieve PSD Status of a stored meter (through a meter job, so the
/// module sees the newest package and its own checkpoint).
async fn status_of(st: &St, device_id: &str) -> Result<PsdStatus, ApiError> {
    let id = device_id.to_string();
    st.postal
        .meter_job(&[device_id.to_string()], move |job| job.status(&id))
        .await
}

// ----- public -----

pub(crate) async fn deployment(State(st): State<St>) -> Json<Value> {
    let d = st.postal.pool.deployment();
    let provider_pem = postvault_crypto::ecdsa::public_key_to_pem(
        &d.provider_public_key
            .as_slice()
            .try_into()
            .unwrap_or([0; postvault_crypto::ecdsa::PUBLIC_KEY_LEN]),
    );
    Json(json!({
        "registration_public_key": hex::encode(&d.registration_public_key),
        "ca_certificate_pem": certificate_pem(&d.ca_certificate_der),
        "provider_public_key_pem": provider_pem,
        "provider_in_server": st.postal.provider.is_some(),
        "min_postage_mills": MIN_POSTAGE_MILLS,
        "max_postage_mills": MAX_POSTAGE_MILLS,
    }))
}

pub(crate) async fn certificate(
    State(st): State<St>,
    DevicePath(device_id): DevicePath,
) -> Result<Json<Value>, ApiError> {
    let m = st
        .store
        .get_meter(&device_id)
        .await
        .map_err(|e| ApiError::store("reading a meter", e))?;
    match m.and_then(|m| m.certificate) {
        Some(der) => Ok(Json(json!({
            "device_id": device_id,
            "certificate_pem": certificate_pem(&der),
        }))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no certified meter {device_id:?}"),
        )),
    }
}

// ----- customer -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}

pub(crate) async fn reserve(
    State(st): State<St>,
    auth: Authed,
    ApiJson(Empty {}): ApiJson<Empty>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = st.clock.now();
    let mut got = st
        .store
        .reserve_meter(&auth.account.login, STOCK_STATE, now)
        .await
        .map_err(|e| ApiError::store("reserving a meter", e))?;
    if got.is_none() {
        // The stock ran out: make one for this customer now.
        let id = st.postal.make_meter(Some(&auth.account.login)).await?;
        got = st
            .store
            .get_meter(&id)
            .await
            .map_err(|e| ApiError::store("reading a meter", e))?;
    }
    let m = got.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no certified meter is ready: try again in a few seconds",
        )
    })?;
    // Top the stock up for the next customer, in the background.
    let postal = st.postal.clone();
    tokio::spawn(async move {
        if let Err(e) = postal.fill_stock().await {
            eprintln!("postvault server: MeterGen: {}", e.message());
        }
    });
    Ok((
        StatusCode::CREATED,
        Json(json!({ "device_id": m.device_id, "state": m.state })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Registration {
    user_id: String,
    secrets: HpkeSealed,
    licensing_zip: u32,
}

pub(crate) async fn register(
    State(st): State<St>,
    auth: Authed,
    DevicePath(device_id): DevicePath,
    ApiJson(req): ApiJson<Registration>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let m = own_meter(&st, &auth, &device_id).await?;
    check_zip("licensing_zip", req.licensing_zip, false)?;
    if !(1..=64).contains(&req.user_id.len()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "user_id must be 1 to 64 characters",
        ));
    }
    if m.state != STOCK_STATE {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "meter {device_id} is {}: only a newly reserved meter can be registered",
                m.state
            ),
        ));
    }
    let postal = st.postal.clone();
    let id = device_id.clone();
    let user_id = req.user_id.clone();
    let (state, challenge, mac) = st
        .postal
        .meter_job(std::slice::from_ref(&device_id), move |job| {
            let package = job.package(&id)?;
            let secrets = req.secrets;
            let (challenge, mac) =
                match job.call("Configure PSD", |checkpoint| Request::ConfigurePsd {
                    package: package.clone(),
                    checkpoint,
                    secrets: secrets.clone(),
                })? {
                    Response::PsdConfigured {
                        package,
                        challenge,
                        mac,
                        ..
                    } => {
                        job.set_package(&id, &package, "Assigned")?;
                        (challenge, mac)
                    }
                    other => return Err(unexpected("ConfigurePsd", &other)),
                };
            let status = job.status(&id)?;
            let message = postal.sign_provider(
                &id,
                status.last_provider_sequence + 1,
                ProviderCommand::AuthorizeCustomer {
                    licensing_zip: req.licensing_zip,
                    max_descending_mills: MAX_DESCENDING_CAP,
                },
            )?;
            let mut state = "Assigned".to_string();
            if let Some(message) = message
                && let Response::PsdUpdated { state: s, .. } =
                    run_provider_message(job, message, "registration")?
            {
                state = format!("{s:?}");
            }
            Ok((state, challenge, mac))
        })
        .await?;
    let m = st
        .store
        .get_meter(&device_id)
        .await
        .map_err(|e| ApiError::store("reading a meter", e))?
        .ok_or_else(|| not_found(&device_id))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "device_id": device_id,
            "state": state,
            "user_id": user_id,
            "challenge": hex::encode(challenge),
            "mac": hex::encode(mac),
            "certificate_pem": m.certificate.as_deref().map(certificate_pem),
        })),
    ))
}

/// The most meters one job of `GET /v1/meters` reads (each costs a module
/// command with its NVM write).
const STATUS_JOB: usize = 32;

pub(crate) async fn list_meters(
    State(st): State<St>,
    auth: Authed,
) -> Result<Json<Value>, ApiError> {
    let meters = st
        .store
        .meters_of_account(&auth.account.login)
        .await
        .map_err(|e| ApiError::store("listing meters", e))?;
    // Meter jobs of up to STATUS_JOB meters: each job's rows are locked and
    // its status entries committed once, not once per meter, and no job
    // holds the store's lock for long (on SQLite it is the whole database).
    let mut statuses = Vec::with_capacity(meters.len());
    for chunk in meters.chunks(STATUS_JOB) {
        let ids: Vec<String> = chunk.iter().map(|m| m.device_id.clone()).collect();
        let wanted = ids.clone();
        let part = st
            .postal
            .meter_job(&ids, move |job| {
                wanted
                    .iter()
                    .map(|id| job.status(id))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        statuses.extend(part);
    }
    let out: Vec<Value> = meters
        .iter()
        .zip(&statuses)
        .map(|(m, s)| view(m, s))
        .collect();
    Ok(Json(json!({ "meters": out })))
}

pub(crate) async fn get_meter(
    State(st): State<St>,
    auth: Authed,
    DevicePath(device_id): DevicePath,
) -> Result<Json<Value>, ApiError> {
    let m = own_meter(&st, &auth, &device_id).await?;
    let s = status_of(&st, &device_id).await?;
    Ok(Json(view(&m, &s)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Purchase {
    amount_mills: u64,
}

pub(crate) async fn purchase(
    State(st): State<St>,
    auth: Authed,
    DevicePath(device_id): DevicePath,
    ApiJson(req): ApiJson<Purchase>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    own_meter(&st, &auth, &device_id).await?;
    if req.amount_mills == 0 || req.amount_mills > MAX_DESCENDING_CAP {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "amount_mills must be 1 to {MAX_DESCENDING_CAP} (a meter holds at most $500.00)"
            ),
        ));
    }
    if st.postal.provider.is_none() {
        return Err(ApiError::new(StatusCode::CONFLICT, NO_PROVIDER));
    }
    let postal = st.postal.clone();
    let id = device_id.clone();
    let login = auth.account.login.clone();
    let (descending, control) = st
        .postal
        .meter_job(std::slice::from_ref(&device_id), move |job| {
            let status = job.status(&id)?;
            let message = postal
                .sign_provider(
                    &id,
                    status.last_provider_sequence + 1,
                    ProviderCommand::Download {
                        amount_mills: req.amount_mills,
                        control_total_mills: status.control_total_mills,
                    },
                )?
                .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, NO_PROVIDER))?;
            run_provider_message(job, message, &format!("purchase by {login}"))?;
            Ok((
                status.descending_mills + req.amount_mills,
                status.control_total_mills + req.amount_mills,
            ))
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "device_id": device_id,
            "amount_mills": req.amount_mills,
            "descending_mills": descending,
            "control_total_mills": control,
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrintBody {
    user_id: String,
    challenge: String,
    postage_mills: u64,
    date: u32,
    origin_zip: u32,
    #[serde(default)]
    destination_zip: u32,
    category: String,
    mac: String,
}

impl PrintBody {
    fn request(self, device_id: &str) -> Result<IndiciumRequest, ApiError> {
        check_zip("origin_zip", self.origin_zip, false)?;
        check_zip("destination_zip", self.destination_zip, true)?;
        if !(MIN_POSTAGE_MILLS..=MAX_POSTAGE_MILLS).contains(&self.postage_mills) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "postage_mills must be {MIN_POSTAGE_MILLS} to {MAX_POSTAGE_MILLS} (at most $99.999 a piece)"
                ),
            ));
        }
        let (y, md) = (self.date / 10_000, self.date % 10_000);
        if !(2000..=2099).contains(&y)
            || !(1..=12).contains(&(md / 100))
            || !(1..=31).contains(&(md % 100))
        {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("date = {}: send the date of mailing as YYYYMMDD", self.date),
            ));
        }
        let cat = self.category.as_bytes();
        if cat.is_empty() || cat.len() > 4 || !cat.iter().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "category must be 1 to 4 printable ASCII characters (FC for first class)",
            ));
        }
        let mut category = [b' '; 4];
        category[..cat.len()].copy_from_slice(cat);
        Ok(IndiciumRequest {
            device_id: device_id.to_string(),
            user_id: self.user_id,
            challenge: hex_array::<16>("challenge", &self.challenge)?,
            postage_mills: self.postage_mills,
            date: self.date,
            origin_zip: self.origin_zip,
            destination_zip: self.destination_zip,
            category,
            mac: hex_array::<32>("mac", &self.mac)?,
        })
    }
}

fn printed_json(device_id: &str, p: &crate::printer::Printed) -> Value {
    json!({
        "device_id": device_id,
        "piece": p.piece,
        "indicium": hex::encode(&p.indicium),
        "old_challenge": hex::encode(p.old_challenge),
        "new_challenge": hex::encode(p.new_challenge),
        "mac": hex::encode(p.mac),
        "ascending_mills": p.ascending_mills,
        "descending_mills": p.descending_mills,
    })
}

pub(crate) async fn print(
    State(st): State<St>,
    auth: Authed,
    DevicePath(device_id): DevicePath,
    ApiJson(body): ApiJson<PrintBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_owner(&st, &auth, &device_id).await?;
    let request = body.request(&device_id)?;
    if &request.category == b"CORR" || &request.category == b"RFND" {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "category CORR is for POST /v1/meters/{id}/corrections and RFND for refunds",
        ));
    }
    let (reply, answer) = oneshot::channel();
    st.printer
        .try_send(PrintJob { request, reply })
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is busy printing: try again in a moment",
            )
        })?;
    let printed = answer
        .await
        .map_err(|e| ApiError::internal("waiting for the printer", e))??;
    Ok((
        StatusCode::CREATED,
        Json(printed_json(&device_id, &printed)),
    ))
}

pub(crate) async fn correction(
    State(st): State<St>,
    auth: Authed,
    DevicePath(device_id): DevicePath,
    ApiJson(body): ApiJson<PrintBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_owner(&st, &auth, &device_id).await?;
    let request = body.request(&device_id)?;
    if &request.category != b"CORR" {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a correction's category must be CORR (and the MAC must cover it)",
        ));
    }
    let id = device_id.clone();
    let printed = st
        .postal
        .meter_job(std::slice::from_ref(&device_id), move |job| {
            let package = job.package(&id)?;
            match job.call("Create Correction Indicium", |checkpoint| {
                Request::CreateCorrectionIndicium {
                    package: package.clone(),
                    checkpoint,
                    request: request.clone(),
                }
            })? {
                Response::IndiciumCreated {
                    package,
                    indicium,
                    old_challenge,
                    new_challenge,
                    mac,
                    ..
                } => crate::printer::record_piece(
                    job,
                    &request,
                    &package,
                    indicium,
                    old_challenge,
                    new_challenge,
                    mac,
                ),
                other => Err(unexpected("CreateCorrectionIndicium", &other)),
            }
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(printed_json(&device_id, &printed)),
    ))
}

pub(crate) async fn refund(
    State(st): State<St>,
    auth: Authed,
    DevicePath(device_id): DevicePath,
    ApiJson(Empty {}): ApiJson<Empty>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    own_meter(&st, &auth, &device_id).await?;
    if st.postal.provider.is_none() {
        return Err(ApiError::new(StatusCode::CONFLICT, NO_PROVIDER));
    }
    let postal = st.postal.clone();
    let id = device_id.clone();
    let login = auth.account.login.clone();
    let date = crate::postal::yyyymmdd(st.clock.now());
    let response = st
        .postal
        .meter_job(std::slice::from_ref(&device_id), move |job| {
            let status = job.status(&id)?;
            let message = postal
                .sign_provider(
                    &id,
                    status.last_provider_sequence + 1,
                    ProviderCommand::Refund { date },
                )?
                .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, NO_PROVIDER))?;
            run_provider_message(job, message, &format!("refund asked by {login}"))
        })
        .await?;
    match response {
        Response::RefundIndiciumCreated {
            indicium,
            refunded_mills,
            ..
        } => Ok((
            StatusCode::CREATED,
            Json(json!({
                "device_id": device_id,
                "indicium": hex::encode(indicium),
                "refunded_mills": refunded_mills,
                "state": "Withdrawn",
            })),
        )),
        other => Err(unexpected("CreateRefundIndicium", &other)),
    }
}

pub(crate) async fn history(
    State(st): State<St>,
    auth: Authed,
    DevicePath(device_id): DevicePath,
) -> Result<Json<Value>, ApiError> {
    own_meter(&st, &auth, &device_id).await?;
    let ledger = st
        .store
        .ledger_of_meter(&device_id)
        .await
        .map_err(|e| ApiError::store("reading the ledger", e))?;
    let rows: Vec<Value> = ledger
        .iter()
        .map(|l| {
            json!({
                "piece": l.piece,
                "postage_mills": l.postage_mills,
                "category": l.category,
                "user_id": l.user_name,
                "time": l.time,
                "ascending_mills": l.ascending_mills,
                "descending_mills": l.descending_mills,
                "indicium": hex::encode(&l.indicium),
            })
        })
        .collect();
    Ok(Json(json!({ "indicia": rows })))
}

pub(crate) async fn money(
    State(st): State<St>,
    auth: Authed,
    DevicePath(device_id): DevicePath,
) -> Result<Json<Value>, ApiError> {
    own_meter(&st, &auth, &device_id).await?;
    let rows = st
        .store
        .money_of_meter(&device_id)
        .await
        .map_err(|e| ApiError::store("reading money rows", e))?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|m| {
            json!({
                "kind": m.kind.as_str(),
                "amount_mills": m.amount_mills,
                "time": m.time,
                "reference": m.reference,
            })
        })
        .collect();
    Ok(Json(json!({ "money": rows })))
}

// ----- provider -----

fn provider_only(auth: &Authed) -> Result<(), ApiError> {
    if matches!(auth.account.role.as_str(), "provider" | "operator") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only a provider or operator account may do this",
        ))
    }
}

async fn any_meter(st: &St, device_id: &str) -> Result<Meter, ApiError> {
    st.store
        .get_meter(device_id)
        .await
        .map_err(|e| ApiError::store("reading a meter", e))?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no meter {device_id:?}")))
}

pub(crate) async fn provider_meter(
    State(st): State<St>,
    auth: Authed,
    DevicePath(device_id): DevicePath,
) -> Result<Json<Value>, ApiError> {
    provider_only(&auth)?;
    let m = any_meter(&st, &device_id).await?;
    let s = status_of(&st, &device_id).await?;
    Ok(Json(json!({
        "device_id": device_id,
        "owner": m.owner,
        "state": format!("{:?}", s.state),
        "next_sequence": s.last_provider_sequence + 1,
        "control_total_mills": s.control_total_mills,
        "descending_mills": s.descending_mills,
        "ascending_mills": s.ascending_mills,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProviderPost {
    message: ProviderMessage,
}

pub(crate) async fn provider_message(
    State(st): State<St>,
    auth: Authed,
    body: Result<ApiJson<ProviderPost>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // The role first: a customer learns nothing from how the body is read.
    provider_only(&auth)?;
    let ApiJson(req) = body?;
    let device_id = req.message.body.device_id.clone();
    if device_id.parse::<DeviceId>().is_err() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{device_id:?} is not a device ID"),
        ));
    }
    any_meter(&st, &device_id).await?;
    let id = device_id.clone();
    let login = auth.account.login.clone();
    let (response, status) = st
        .postal
        .meter_job(std::slice::from_ref(&device_id), move |job| {
            let r = run_provider_message(job, req.message, &format!("provider {login}"))?;
            let s = job.status(&id)?;
            Ok((r, s))
        })
        .await?;
    let (indicium, refunded) = match &response {
        Response::RefundIndiciumCreated {
            indicium,
            refunded_mills,
            ..
        } => (Some(hex::encode(indicium)), Some(*refunded_mills)),
        _ => (None, None),
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "device_id": device_id,
            "state": format!("{:?}", status.state),
            "ascending_mills": status.ascending_mills,
            "descending_mills": status.descending_mills,
            "control_total_mills": status.control_total_mills,
            "indicium": indicium,
            "refunded_mills": refunded,
        })),
    ))
}
