//! The typed command/response protocol between a host and the module.
//!
//! Requests and responses are encoded with postcard and travel inside the
//! secure session frames of [`crate::session`]. Decoding is total: any byte
//! string either decodes to a [`Request`] or yields an error, never a panic
//! (there is a fuzz target for it).
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::checkpoint::SignedCheckpoint;
use crate::error::ModuleError;
use crate::keys::{KeyToken, KeyType, KeyUsage};
use crate::psd::{
    DeviceId, HpkeSealed, IndiciumItem, IndiciumRequest, IssuedIndicium, ProviderMessage, PsdState,
    PsdStatus, SealedPackage, UserAnswer, UserRequest,
};
use crate::types::{ModuleState, Role};
use postvault_audit::AuditEntry;

/// A password crossing the session. Zeroized on drop, redacted in `Debug`;
/// only ever sent inside an encrypted session frame.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Self(Zeroizing::new(s.into()))
    }
    /// The password text.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// An account to create (Initialize Access Control, Create User).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewUser {
    /// User ID: 1 to 64 characters from `[A-Za-z0-9._@-]`.
    pub user_id: String,
    /// The user's one role (not `NoRole`).
    pub role: Role,
    /// Initial password (at least 12 characters).
    pub password: Password,
    /// Settings; `None` fields take the defaults.
    pub settings: AccountSettings,
}

/// Per-account limits. `None` means "keep" on modify and "default" on create.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountSettings {
    /// Consecutive failed logons before the account locks (default 5).
    pub failure_limit: Option<u32>,
    /// Idle seconds after which a logged-on user is logged off (default 900).
    pub logon_timeout_secs: Option<u32>,
    /// Account expiry, Unix seconds (default: never; `Some(0)` on modify clears it).
    pub account_expires: Option<i64>,
    /// Seconds a new password stays valid (default 90 days).
    pub password_period_secs: Option<u32>,
}

/// Which MKS a command acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MksSlot {
    /// The active MKS.
    Active,
    /// The dormant MKS (the next one before activation, the previous one after).
    Dormant,
}

/// How Initialize Crypto-Card obtains the registration keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum CryptoCardKeys {
    /// Generate new registration keys (first module of a deployment).
    Generate,
    /// Load registration keys from tokens made by another module under the same MKS.
    Load {
        /// Token of the registration signing key (ECDSA P-256).
        signing: KeyToken,
        /// Token of the registration decryption key (HPKE X25519).
        decryption: KeyToken,
    },
}

/// A command to the module.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Request {
    /// Ends the session (fails while a user is logged on).
    CloseSession,
    /// Module status; needs no logon.
    GetStatus,
    /// Erases all NVM, sets the clock, creates the audit key and the first audit entry.
    StartInitialization {
        /// Module time to set, Unix seconds.
        time: i64,
    },
    /// Creates the first accounts: one Administrator, one Security Officer, two or more Key Custodians.
    InitializeAccessControl {
        /// The accounts.
        users: Vec<NewUser>,
    },
    /// Logs a user on to this session.
    Logon {
        /// User ID.
        user_id: String,
        /// Password.
        password: Password,
    },
    /// Logs the session's user off.
    Logoff,
    /// The logged-on user's role.
    QueryCurrentRole,
    /// The logged-on user's ID.
    QueryCurrentUser,
    /// Changes the logged-on user's own password.
    ChangePassword {
        /// Current password.
        old: Password,
        /// New password (not one of the recent ones).
        new: Password,
    },
    /// Sets the module clock.
    SetClock {
        /// Module time, Unix seconds.
        time: i64,
    },
    /// Operational -> Administrative.
    BeginAdmin,
    /// Administrative -> Operational.
    EndAdmin,
    /// Creates an account.
    CreateUser {
        /// The account.
        user: NewUser,
    },
    /// Deletes an account.
    DeleteUser {
        /// User ID.
        user_id: String,
    },
    /// Changes an account's settings, resets its password or unlocks it.
    ModifyUser {
        /// User ID.
        user_id: String,
        /// New settings (`None` keeps).
        settings: AccountSettings,
        /// A new password set by the Administrator (the user should change it).
        new_password: Option<Password>,
        /// Clears the failure count.
        unlock: bool,
    },
    /// Lists accounts (never password hashes).
    ViewUsers,
    /// Generates a Master Key Set (master module).
    GenerateMks,
    /// Generates the transport key pair (clone module); Initializing -> Importing Shares.
    GenerateTransportKey,
    /// The transport public key, to give to the master.
    ExportTransportKey,
    /// Prepares `count` shares with threshold `threshold`; Operational -> Exporting Shares.
    CreateMksShares {
        /// Number of shares n (>= 2), one per key custodian.
        count: u8,
        /// Shares needed to recombine, t (2 <= t <= n).
        threshold: u8,
        /// Which MKS to share.
        slot: MksSlot,
    },
    /// Exports the next share, HPKE-encrypted to the destination module's transport key.
    ExportShare {
        /// The destination's transport public key (32 bytes).
        transport_public_key: Vec<u8>,
        /// Whether the destination may export this MKS in turn.
        exportable: bool,
    },
    /// Abandons a share export; Exporting Shares -> Operational.
    AbortExport,
    /// Operational -> Importing Shares (to load a replacement MKS).
    StartImporting,
    /// Enters one encrypted share.
    ImportShare {
        /// The share as exported.
        share: EncryptedShare,
    },
    /// Combines the imported shares into an MKS.
    CombineShares,
    /// Makes the dormant (newer) MKS active; the active one becomes dormant.
    ActivateMks,
    /// Deletes the dormant MKS.
    DeleteDormantMks,
    /// Re-wraps a token from the dormant (previous) MKS to the active one.
    TranslateToken {
        /// The token under the previous MKS.
        token: KeyToken,
    },
    /// Generates a key inside the module and returns it as a key token.
    CreateKeyToken {
        /// Kind of key.
        key_type: KeyType,
        /// What it is for.
        usage: KeyUsage,
        /// The identity of the record the token belongs to (bound as associated data).
        identity: String,
        /// Whether the key may be exported to another module.
        exportable: bool,
        /// Expiry, Unix seconds.
        expires: Option<i64>,
    },
    /// Opens a token and reports its header and key check value (never the key).
    CheckKeyToken {
        /// The token.
        token: KeyToken,
    },
    /// Creates or loads the shared keys the PSD commands need.
    InitializeCryptoCard {
        /// Generate or load the registration keys.
        keys: CryptoCardKeys,
        /// The CA certificate (DER) that PSD certificates must chain to.
        ca_certificate: Option<Vec<u8>>,
        /// The provider's ECDSA P-256 public key (65 bytes, uncompressed).
        provider_public_key: Option<Vec<u8>>,
    },
    /// Replaces the audit signing key (the announcing entry is signed by the old key).
    CreateAuditKey,
    /// The audit verification key (Auditor only).
    ExportAuditKey,
    /// Writes an audit entry for a host event; `sign` forces a signature.
    CreateAuditEntry {
        /// What happened (free text, no secrets).
        note: String,
        /// Force a signature on this entry.
        sign: bool,
    },
    /// Runs the power-up self-tests again.
    RunSelfTests,
    /// Creates a PSD package (raw state): device ID, zero registers, the
    /// indicium key pair and the package KEK. Once per PSD: the store keeps
    /// device IDs unique.
    InitializePsd {
        /// The PSD's device ID (vendor and serial not 0).
        device: DeviceId,
    },
    /// Opens a PSD package and reports its device ID, state, public key and certificate serial.
    RetrievePsdPublicKey {
        /// The sealed package.
        package: SealedPackage,
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
    },
    /// Authorize PSD (Certificate Authority role, authenticated by the
    /// certificate): loads the PSD's X.509 certificate, which must be signed
    /// by the module's CA certificate and name the package's key and device
    /// ID. Raw -> unleased.
    AuthorizePsd {
        /// The sealed package.
        package: SealedPackage,
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
        /// The PSD certificate, DER.
        #[serde(with = "crate::serde_hex::vec")]
        certificate_der: Vec<u8>,
    },
    /// Configure PSD: assigns the customer, whose secrets arrive HPKE-sealed
    /// to the registration encryption key. Unleased -> assigned.
    ConfigurePsd {
        /// The sealed package.
        package: SealedPackage,
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
        /// `psd::CustomerSecrets`, sealed with `psd::seal_customer_secrets`.
        secrets: HpkeSealed,
    },
    /// Authorize Customer (provider-signed): licensing ZIP and maximum
    /// descending register. Assigned -> leased.
    AuthorizeCustomer {
        /// The sealed package.
        package: SealedPackage,
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
        /// The signed provider message (`ProviderCommand::AuthorizeCustomer`).
        message: ProviderMessage,
    },
    /// Download Postage Value (provider-signed): adds value to the DR.
    DownloadPostageValue {
        /// The sealed package.
        package: SealedPackage,
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
        /// The signed provider message (`ProviderCommand::Download`).
        message: ProviderMessage,
    },
    /// Create Indicium (seed 002, its steps 1 to 12; the user is
    /// authenticated by the request's MAC under their key): checks the
    /// request, takes the postage from the DR, signs a version-1 indicium and
    /// answers with a new challenge, MAC'd under the user's key.
    CreateIndicium {
        /// The sealed package (leased).
        package: SealedPackage,
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
        /// The customer's MAC'd request.
        request: IndiciumRequest,
    },
    /// Create Correction Indicium: Create Indicium's checks and effects for
    /// a piece whose mail category must be `CORR` (the request MACs it).
    CreateCorrectionIndicium {
        /// The sealed package (leased).
        package: SealedPackage,
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
        /// The customer's MAC'd request (category `CORR`).
        request: IndiciumRequest,
    },
    /// Create Indicium for many meters in one command: one NVM write, one
    /// audit sync and one checkpoint for the batch (group commit). Each
    /// item succeeds or fails on its own; a failed item changes nothing.
    CreateIndicia {
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
        /// The items.
        items: Vec<IndiciumItem>,
    },
    /// Create Refund Indicium (provider-signed; leased or password reset):
    /// an indicium for the remaining DR, AR += DR, DR = 0, withdrawn.
    CreateRefundIndicium {
        /// The sealed package.
        package: SealedPackage,
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
        /// The signed provider message (`ProviderCommand::Refund`).
        message: ProviderMessage,
    },
    /// Begin Password Reset (provider-signed): leased -> password reset.
    BeginPasswordReset {
        /// The sealed package.
        package: SealedPackage,
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
        /// The signed provider message (`ProviderCommand::BeginPasswordReset`).
        message: ProviderMessage,
    },
    /// Complete Password Reset: the user named at Begin Password Reset
    /// sends new secrets (HPKE-sealed like Configure PSD's); the answer is
    /// MAC'd under the new key. Password reset -> leased.
    CompletePasswordReset {
        /// The sealed package.
        package: SealedPackage,
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
        /// `psd::CustomerSecrets`, sealed with `psd::seal_customer_secrets`.
        secrets: HpkeSealed,
    },
    /// Retrieve PSD Status: registers and state (changes nothing but the
    /// audit log, where it has its entry).
    RetrievePsdStatus {
        /// The sealed package.
        package: SealedPackage,
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
    },
    /// A meter user's MAC'd request (multi-user meters: user
    /// administration, status, public key).
    PsdUserCommand {
        /// The sealed package.
        package: SealedPackage,
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
        /// The MAC'd request.
        request: UserRequest,
    },
    /// PSD User Logon: checks a meter user's password (HPKE-sealed
    /// `psd::UserLogon`), counting failures in the package.
    PsdUserLogon {
        /// The sealed package.
        package: SealedPackage,
        /// The database's copy of this module's newest checkpoint (`None`
        /// only while the module holds none).
        checkpoint: Option<SignedCheckpoint>,
        /// `psd::UserLogon`, sealed with `psd::seal_user_logon`.
        logon: HpkeSealed,
    },
    /// Create Certificate Authority (Security Officer): a new CA key inside
    /// the module, returned as a key token, and its self-signed CA
    /// certificate. Load the certificate into the crypto card
    /// (Initialize Crypto-Card) so that Authorize PSD accepts what it signs.
    CreateCertificateAuthority {
        /// The CA certificate's subject common name.
        common_name: String,
        /// Days of validity from now (module time).
        days: u32,
    },
    /// Issue PSD Certificate (Certificate Authority role): an X.509
    /// certificate for a raw package's indicium key, subject CN = its device
    /// ID, signed with the CA key token (MeterGen, seed 002).
    IssuePsdCertificate {
        /// The CA key (`KeyUsage::CertificateSigning`).
        ca_key: KeyToken,
        /// The CA certificate (DER), whose subject becomes the issuer.
        #[serde(with = "crate::serde_hex::vec")]
        ca_certificate_der: Vec<u8>,
        /// The raw package.
        package: SealedPackage,
        /// Certificate serial number (1 to 2^63 - 1); the indicium carries
        /// its low 32 bits, which must not be 0.
        serial: u64,
        /// Days of validity from now (module time).
        days: u32,
    },
    /// Translate Package: re-seals a package (and the key tokens inside it)
    /// from the previous MKS under the active one, after a rollover. The
    /// package's content does not change.
    TranslatePackage {
        /// The package, sealed under the previous (dormant) MKS.
        package: SealedPackage,
    },
    /// Auto-Recover Checkpoint: accepts the database's checkpoint when it is
    /// one of the module's two older ones, auditing the discarded
    /// transactions; otherwise PSD processing stops until Accept Checkpoint.
    AutoRecoverCheckpoint {
        /// The database's copy of this module's checkpoint.
        checkpoint: SignedCheckpoint,
    },
    /// The module's newest checkpoint, MAC'd (for the module-table
    /// cross-check and the store).
    RetrieveCheckpoint,
    /// Accept Checkpoint (Security Officer, Administrative): after disaster
    /// recovery, makes the database's checkpoint (or none) the module's and
    /// lifts the inhibition.
    AcceptCheckpoint {
        /// The checkpoint to accept; `None` clears the module's records.
        checkpoint: Option<SignedCheckpoint>,
    },
    /// Destroys every key; the module is unusable until Reset.
    Zeroize,
    /// Erases everything and returns to Uninitialized.
    Reset,
}

/// An MKS share encrypted to one module's transport key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EncryptedShare {
    /// Format version (1).
    pub version: u8,
    /// ID of the MKS this share belongs to (hex of 16 bytes).
    pub mks_id: String,
    /// Generation of that MKS.
    pub generation: u32,
    /// Share number (x coordinate), 1..=n.
    pub index: u8,
    /// Total shares n.
    pub count: u8,
    /// Threshold t.
    pub threshold: u8,
    /// Whether the destination may export the MKS in turn.
    pub exportable: bool,
    /// SHA-256 of the destination transport public key (hex).
    pub transport_key_hash: String,
    /// ID of the exporting module (hex).
    pub source_module: String,
    /// HPKE encapsulated key.
    #[serde(with = "crate::serde_hex::vec")]
    pub enc: Vec<u8>,
    /// HPKE ciphertext of the share.
    #[serde(with = "crate::serde_hex::vec")]
    pub ciphertext: Vec<u8>,
}

/// What a module says about one MKS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MksInfo {
    /// MKS ID (hex).
    pub id: String,
    /// Generation number.
    pub generation: u32,
    /// Whether it may be exported.
    pub exportable: bool,
}

/// Key status, part of Get Status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyStatus {
    /// The active MKS.
    pub active_mks: Option<MksInfo>,
    /// The dormant MKS.
    pub dormant_mks: Option<MksInfo>,
    /// An audit signing key is present.
    pub audit_key: bool,
    /// A transport key pair is present.
    pub transport_key: bool,
    /// Crypto-card keys are loaded.
    pub crypto_card: bool,
}

/// The answer to Get Status (seed 001 "Show Status").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// Module ID (hex), once initialized.
    pub module_id: Option<String>,
    /// Current state.
    pub current_state: ModuleState,
    /// Persistent state.
    pub persistent_state: ModuleState,
    /// Why the module is in Error, if it is.
    pub error: Option<String>,
    /// This session's ID.
    pub session_id: u64,
    /// Number of open sessions.
    pub sessions_open: usize,
    /// User logged on to this session.
    pub user_id: Option<String>,
    /// That user's role (`NoRole` when nobody).
    pub role: Role,
    /// Key status.
    pub keys: KeyStatus,
    /// Module time, Unix seconds.
    pub time: i64,
    /// Sequence number the next audit entry will get.
    pub audit_next_seq: u64,
    /// Power-up self-test results: (name, passed).
    pub self_tests: Vec<(String, bool)>,
}

/// An account as View Users shows it: never the password hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserView {
    /// User ID.
    pub user_id: String,
    /// Role.
    pub role: Role,
    /// Consecutive failed logons.
    pub failures: u32,
    /// Failure limit.
    pub failure_limit: u32,
    /// Locked out.
    pub locked: bool,
    /// Idle logoff, seconds.
    pub logon_timeout_secs: u32,
    /// Account expiry.
    pub account_expires: Option<i64>,
    /// Password expiry.
    pub password_expires: i64,
    /// Password period, seconds.
    pub password_period_secs: u32,
    /// Last successful logon.
    pub last_logon: Option<i64>,
}

/// What Check Key Token reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenCheck {
    /// Kind of key.
    pub key_type: KeyType,
    /// Usage.
    pub usage: KeyUsage,
    /// Record identity.
    pub identity: String,
    /// Generation of the MKS that sealed it.
    pub mks_generation: u32,
    /// Exportable flag.
    pub exportable: bool,
    /// Expiry.
    pub expires: Option<i64>,
    /// Key check value: 8 bytes (hex) that identify the key without revealing it.
    pub kcv: String,
    /// Public key for asymmetric keys.
    pub public_key: Option<Vec<u8>>,
}

/// Output of Initialize Crypto-Card.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CryptoCardOutput {
    /// Token of the registration signing key (for clone modules).
    pub signing_token: KeyToken,
    /// Token of the registration decryption key (for clone modules).
    pub decryption_token: KeyToken,
    /// Registration signing public key (65 bytes; embedded in client software).
    pub signing_public_key: Vec<u8>,
    /// Registration encryption public key (32 bytes; clients HPKE-encrypt their secrets to it).
    pub decryption_public_key: Vec<u8>,
}

/// What Retrieve PSD Public Key reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PsdPublicKey {
    /// Device ID, as displayed.
    pub device_id: String,
    /// The package's PSD state.
    pub state: PsdState,
    /// The indicium verification key (65 bytes, uncompressed P-256).
    pub public_key: Vec<u8>,
    /// Serial number of the PSD certificate, once loaded.
    pub certificate_serial: Option<u32>,
}

/// A successful command's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Response {
    /// Done; nothing to return.
    Done,
    /// Get Status.
    Status(Box<Status>),
    /// Query Current Role.
    Role(Role),
    /// Query Current User.
    User(Option<String>),
    /// View Users.
    Users(Vec<UserView>),
    /// Generate MKS.
    Mks(MksInfo),
    /// Generate / Export Transport Key: the public key (32 bytes).
    TransportKey(Vec<u8>),
    /// Create MKS Shares: the share count and threshold.
    SharesCreated {
        /// n.
        count: u8,
        /// t.
        threshold: u8,
    },
    /// Export Share.
    Share {
        /// The encrypted share.
        share: EncryptedShare,
        /// Shares still to export; 0 means the export is complete.
        remaining: u8,
    },
    /// Import Share: how many are held now.
    ShareImported {
        /// Shares imported so far.
        held: u8,
        /// Threshold.
        threshold: u8,
    },
    /// A key token (Create Key Token, Translate Token).
    Token {
        /// The token.
        token: KeyToken,
        /// Its check (public parts only).
        check: TokenCheck,
    },
    /// Check Key Token.
    TokenCheck(TokenCheck),
    /// Initialize Crypto-Card.
    CryptoCard(Box<CryptoCardOutput>),
    /// Export Audit Key / Create Audit Key: the verification key (65 bytes).
    AuditKey(Vec<u8>),
    /// Run Self-Tests: (name, passed).
    SelfTests(Vec<(String, bool)>),
    /// Initialize PSD: the new package and what certification needs.
    PsdInitialized {
        /// The sealed package (for the store).
        package: SealedPackage,
        /// The indicium verification key (65 bytes, uncompressed P-256).
        public_key: Vec<u8>,
        /// Device ID, as displayed.
        device_id: String,
    },
    /// Retrieve PSD Public Key.
    PsdPublicKey(PsdPublicKey),
    /// A PSD command that changed the package (Authorize PSD, Authorize
    /// Customer, Download Postage Value): the updated package, to store in
    /// place of the old one.
    PsdUpdated {
        /// The updated sealed package.
        package: SealedPackage,
        /// This module's new checkpoint, MAC'd, for the database.
        checkpoint: SignedCheckpoint,
        /// Its PSD state now.
        state: PsdState,
    },
    /// Configure PSD: the updated package and the module's answer to the
    /// client, MAC'd under the customer's new key (`psd::configure_mac`).
    PsdConfigured {
        /// The updated sealed package.
        package: SealedPackage,
        /// This module's new checkpoint, MAC'd, for the database.
        checkpoint: SignedCheckpoint,
        /// The module's first challenge to the client.
        challenge: [u8; 16],
        /// HMAC-SHA-256 under the customer's key (`psd::configure_mac`).
        mac: [u8; 32],
    },
    /// Create Indicium: the updated package and the module's answer to the
    /// client, MAC'd under the user's key (`psd::indicium_response_mac`).
    IndiciumCreated {
        /// The updated sealed package.
        package: SealedPackage,
        /// This module's new checkpoint, MAC'd, for the database.
        checkpoint: SignedCheckpoint,
        /// The signed version-1 indicium (113 bytes).
        #[serde(with = "crate::serde_hex::vec")]
        indicium: Vec<u8>,
        /// The challenge the request carried.
        old_challenge: [u8; 16],
        /// The challenge the next request must carry.
        new_challenge: [u8; 16],
        /// HMAC-SHA-256 under the user's key (`psd::indicium_response_mac`).
        mac: [u8; 32],
    },
    /// Create Refund Indicium: the refund indicium and the withdrawn package.
    RefundIndiciumCreated {
        /// The updated sealed package (withdrawn).
        package: SealedPackage,
        /// This module's new checkpoint, MAC'd, for the database.
        checkpoint: SignedCheckpoint,
        /// The signed version-1 refund indicium (category `RFND`, 113 bytes).
        #[serde(with = "crate::serde_hex::vec")]
        indicium: Vec<u8>,
        /// The value refunded (the DR before), mills.
        refunded_mills: u64,
    },
    /// Create Indicia: one result per item, in order, and the batch's
    /// checkpoint (`None` when no item succeeded).
    IndiciaCreated {
        /// Per item: the indicium or why it was refused.
        results: Vec<Result<IssuedIndicium, ModuleError>>,
        /// This module's new checkpoint, MAC'd, for the database.
        checkpoint: Option<SignedCheckpoint>,
    },
    /// Retrieve PSD Status.
    PsdStatus(PsdStatus),
    /// Create Certificate Authority: the CA key token and certificate.
    CertificateAuthority {
        /// The CA key, sealed under the MKS.
        key: KeyToken,
        /// The self-signed CA certificate, DER.
        #[serde(with = "crate::serde_hex::vec")]
        certificate_der: Vec<u8>,
    },
    /// Issue PSD Certificate: the PSD certificate, DER.
    PsdCertificate {
        /// The certificate, DER.
        #[serde(with = "crate::serde_hex::vec")]
        certificate_der: Vec<u8>,
    },
    /// Translate Package: the package under the active MKS.
    PsdTranslated {
        /// The package, sealed under the active MKS.
        package: SealedPackage,
    },
    /// A meter user's request: the answer, MAC'd under their key.
    PsdUserAnswer {
        /// The updated sealed package (new challenge).
        package: SealedPackage,
        /// This module's new checkpoint, MAC'd, for the database.
        checkpoint: SignedCheckpoint,
        /// The answer.
        answer: UserAnswer,
        /// The challenge the request carried.
        old_challenge: [u8; 16],
        /// The challenge the next request must carry.
        new_challenge: [u8; 16],
        /// `psd::user_response_mac` under the user's key.
        mac: [u8; 32],
    },
    /// PSD User Logon: the verdict and the package with the failure count.
    PsdLogon {
        /// The updated sealed package.
        package: SealedPackage,
        /// This module's new checkpoint, MAC'd, for the database.
        checkpoint: SignedCheckpoint,
        /// True when the password was right and the account usable.
        accepted: bool,
        /// The package's new challenge (a logon moves the chain on, so it
        /// cannot be replayed).
        challenge: [u8; 16],
        /// Why not, when not.
        reason: Option<String>,
    },
    /// Auto-Recover Checkpoint: how many transactions were discarded, and
    /// the checkpoint now newest.
    CheckpointRecovered {
        /// Transactions discarded (0 when the checkpoint was already newest).
        discarded: u32,
        /// The module's newest checkpoint now.
        checkpoint: SignedCheckpoint,
    },
    /// Retrieve Checkpoint.
    Checkpoint(Option<SignedCheckpoint>),
}

/// A reply: the result and, for sensitive commands, the audit entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reply {
    /// The result.
    pub result: Result<Response, ModuleError>,
    /// The audit entry this command produced.
    #[serde(with = "audit_as_json")]
    pub audit: Option<AuditEntry>,
}

mod audit_as_json {
    //! Audit entries cross the wire as their JSON line: the audit crate's
    //! canonical text form (it omits absent fields, which a positional
    //! encoding such as postcard cannot express).
    use postvault_audit::AuditEntry;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<AuditEntry>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(AuditEntry::to_json_line).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AuditEntry>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|line| AuditEntry::from_json_line(&line).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl Request {
    /// Decodes a request; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, ModuleError> {
        postcard::from_bytes(bytes)
            .map_err(|e| ModuleError::Malformed(format!("request does not decode: {e}")))
    }
    /// Encodes a request.
    pub fn encode(&self) -> Vec<u8> {
        crate::to_vec_exact(self)
    }
}

impl Reply {
    /// Decodes a reply; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, ModuleError> {
        postcard::from_bytes(bytes)
            .map_err(|e| ModuleError::Malformed(format!("reply does not decode: {e}")))
    }
    /// Encodes a reply.
    pub fn encode(&self) -> Vec<u8> {
        crate::to_vec_exact(self)
    }
}
