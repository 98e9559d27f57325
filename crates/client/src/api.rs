//! The request and response bodies of the API (`api.md`), as the server
//! sends them. Byte fields stay lowercase hex strings here; the checks in
//! [`crate::customer`] decode them. Responses accept unknown fields, so a
//! newer server that adds some still works.
use serde::{Deserialize, Serialize};

/// `{"error": "..."}`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: String,
}

/// Sign-up and logon body.
#[derive(Serialize)]
pub(crate) struct Credentials<'a> {
    pub(crate) login: &'a str,
    pub(crate) password: &'a str,
}

/// `POST /v1/staff/accounts` body.
#[derive(Serialize)]
pub(crate) struct StaffAccount<'a> {
    pub(crate) login: &'a str,
    pub(crate) password: &'a str,
    pub(crate) role: &'a str,
}

/// `POST /v1/accounts` and `POST /v1/staff/accounts` answer.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Account {
    /// The login.
    pub login: String,
    /// `customer`, `provider` or `operator`.
    pub role: String,
}

/// `POST /v1/sessions` answer. Its `Debug` hides the token.
#[derive(Clone, Deserialize)]
pub struct Session {
    /// The bearer token.
    pub token: String,
    /// The login.
    pub login: String,
    /// The account's role.
    pub role: String,
    /// Seconds without activity after which the session ends.
    pub idle_timeout_secs: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("token", &"<redacted>")
            .field("login", &self.login)
            .field("role", &self.role)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .finish()
    }
}

/// `GET /v1/me` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Me {
    /// The login.
    pub login: String,
    /// The account's role.
    pub role: String,
    /// When the account was made (as the server sends it).
    #[serde(default)]
    pub created: serde_json::Value,
    /// The current session (as the server sends it).
    #[serde(default)]
    pub session: serde_json::Value,
}

/// `GET /v1/deployment` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Deployment {
    /// Hex of the 32-byte X25519 key clients seal registration secrets to.
    pub registration_public_key: String,
    /// The CA certificate (PEM) that issues PSD certificates.
    pub ca_certificate_pem: String,
    /// The provider's public key (PEM).
    pub provider_public_key_pem: String,
    /// True when the server's own development provider signs purchases and refunds.
    pub provider_in_server: bool,
    /// Smallest postage per piece, mills.
    pub min_postage_mills: u64,
    /// Largest postage per piece, mills.
    pub max_postage_mills: u64,
}

/// `GET /v1/certificates/{id}` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct CertificateView {
    /// The device ID.
    pub device_id: String,
    /// The PSD certificate (PEM).
    pub certificate_pem: String,
}

/// `POST /v1/meters` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct ReservedMeter {
    /// The device ID reserved for the account.
    pub device_id: String,
    /// Its state (`Unleased`).
    pub state: String,
}

/// `POST /v1/meters/{id}/registration` body.
#[derive(Debug, Clone, Serialize)]
pub struct RegistrationRequest {
    /// The PSD user ID.
    pub user_id: String,
    /// `psd::seal_customer_secrets` output.
    pub secrets: postvault_module::psd::HpkeSealed,
    /// ZIP5 * 10000 + plus-4.
    pub licensing_zip: u32,
}

/// `POST /v1/meters/{id}/registration` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Registration {
    /// The device ID.
    pub device_id: String,
    /// `Leased`, or `Assigned` when the server has no provider key.
    pub state: String,
    /// The PSD user ID.
    pub user_id: String,
    /// Hex(16): the module's challenge, MACed in `mac` and used by the first print.
    pub challenge: String,
    /// Hex(32): `psd::configure_mac`.
    pub mac: String,
    /// The PSD certificate (PEM).
    pub certificate_pem: String,
}

#[derive(Deserialize)]
pub(crate) struct MeterList {
    pub(crate) meters: Vec<MeterView>,
}

/// `GET /v1/meters/{id}` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct MeterView {
    /// The device ID.
    pub device_id: String,
    /// The PSD state.
    pub state: String,
    /// Ascending register (postage used), mills.
    pub ascending_mills: u64,
    /// Descending register (postage left), mills.
    pub descending_mills: u64,
    /// Sum of all downloads, mills.
    pub control_total_mills: u64,
    /// The most the descending register may hold, mills.
    pub max_descending_mills: u64,
    /// Pieces printed.
    pub piece_count: u64,
    /// ZIP5 * 10000 + plus-4, once registered.
    pub licensing_zip: Option<u32>,
    /// Hex(16): the challenge the next print must carry.
    pub challenge: Option<String>,
    /// The PSD certificate (PEM).
    pub certificate_pem: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct PurchaseRequest {
    pub(crate) amount_mills: u64,
}

/// `POST /v1/meters/{id}/purchases` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Purchase {
    /// The device ID.
    pub device_id: String,
    /// The amount bought, mills.
    pub amount_mills: u64,
    /// Descending register after, mills.
    pub descending_mills: u64,
    /// Control total after, mills.
    pub control_total_mills: u64,
}

/// `POST /v1/meters/{id}/indicia` and `/corrections` body: the wire form of
/// a MACed `psd::IndiciumRequest` (see [`crate::customer::print_request`]).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PrintRequest {
    /// The PSD user ID.
    pub user_id: String,
    /// Hex(16).
    pub challenge: String,
    /// Postage, mills.
    pub postage_mills: u64,
    /// YYYYMMDD.
    pub date: u32,
    /// ZIP5 * 10000 + plus-4.
    pub origin_zip: u32,
    /// ZIP5 * 10000 + plus-4, 0 when not addressed.
    pub destination_zip: u32,
    /// 1 to 4 characters (not padded).
    pub category: String,
    /// Hex(32): `psd::indicium_request_mac`.
    pub mac: String,
}

/// `POST /v1/meters/{id}/indicia` and `/corrections` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct PrintAnswer {
    /// The device ID.
    pub device_id: String,
    /// The piece number.
    pub piece: u64,
    /// Hex(113): the indicium.
    pub indicium: String,
    /// Hex(16): the challenge the request carried.
    pub old_challenge: String,
    /// Hex(16): the challenge of the next request.
    pub new_challenge: String,
    /// Hex(32): `psd::indicium_response_mac`.
    pub mac: String,
    /// Ascending register after, mills.
    pub ascending_mills: u64,
    /// Descending register after, mills.
    pub descending_mills: u64,
}

/// `POST /v1/meters/{id}/refund` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct RefundAnswer {
    /// The device ID.
    pub device_id: String,
    /// Hex(113): the refund indicium.
    pub indicium: String,
    /// The value refunded, mills.
    pub refunded_mills: u64,
    /// `Withdrawn`.
    pub state: String,
}

#[derive(Deserialize)]
pub(crate) struct IndiciumList {
    pub(crate) indicia: Vec<IndiciumRecord>,
}

/// One entry of `GET /v1/meters/{id}/indicia`.
#[derive(Debug, Clone, Deserialize)]
pub struct IndiciumRecord {
    /// The piece number.
    pub piece: u64,
    /// Postage, mills.
    pub postage_mills: u64,
    /// The mail category.
    pub category: String,
    /// The PSD user who printed it.
    pub user_id: String,
    /// When (as the server sends it).
    pub time: serde_json::Value,
    /// Ascending register after, mills.
    pub ascending_mills: u64,
    /// Descending register after, mills.
    pub descending_mills: u64,
    /// Hex(113).
    pub indicium: String,
}

#[derive(Deserialize)]
pub(crate) struct MoneyList {
    pub(crate) money: Vec<MoneyRecord>,
}

/// One entry of `GET /v1/meters/{id}/money`.
#[derive(Debug, Clone, Deserialize)]
pub struct MoneyRecord {
    /// `download` or `refund`.
    pub kind: String,
    /// Amount, mills.
    pub amount_mills: u64,
    /// When (as the server sends it).
    pub time: serde_json::Value,
    /// The server's reference (as it sends it).
    #[serde(default)]
    pub reference: serde_json::Value,
}

/// `GET /v1/provider/meters/{id}` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMeterView {
    /// The device ID.
    pub device_id: String,
    /// The account that holds the meter.
    #[serde(default)]
    pub owner: Option<String>,
    /// The PSD state.
    pub state: String,
    /// The sequence number the next provider message must carry.
    pub next_sequence: u64,
    /// Sum of all downloads, mills.
    pub control_total_mills: u64,
    /// Descending register, mills.
    pub descending_mills: u64,
    /// Ascending register, mills.
    pub ascending_mills: u64,
}

#[derive(Serialize)]
pub(crate) struct ProviderMessageRequest<'a> {
    pub(crate) message: &'a postvault_module::psd::ProviderMessage,
}

/// `POST /v1/provider/messages` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderAnswer {
    /// The device ID.
    pub device_id: String,
    /// The PSD state after.
    pub state: String,
    /// Ascending register after, mills.
    pub ascending_mills: u64,
    /// Descending register after, mills.
    pub descending_mills: u64,
    /// Control total after, mills.
    pub control_total_mills: u64,
    /// Hex(113): the refund indicium (refund only).
    #[serde(default)]
    pub indicium: Option<String>,
    /// The value refunded, mills (refund only).
    #[serde(default)]
    pub refunded_mills: Option<u64>,
}
