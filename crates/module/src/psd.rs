//! PSDs inside the module (seed 002, "PSD packages" and the PSD states;
//! issue 3).
//!
//! A module "becomes the user's PSD" when it is loaded with that user's PSD
//! package. The package is plaintext only inside the module: the database
//! sees a [`SealedPackage`], AES-256-GCM under the active MKS's MEK with the
//! meter's identity (its device ID), the MKS ID and the MKS generation bound
//! as associated data ([`Mks::seal_record`]). The package holds no plaintext
//! key: its keys are key tokens, sealed again inside the package.
//!
//! Which PSD command may run in which PSD state is one table,
//! [`PSD_RULES`], the PSD counterpart of [`crate::table::RULES`]. Money is
//! integer mills (1/1000 dollar), never floats.
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use postvault_crypto::hash::{self, HmacSha256Key};
use postvault_crypto::rng::Rng;
use postvault_crypto::{SecretKey32, hpke};

use crate::error::ModuleError;
use crate::keys::{KeyToken, Mks};
use crate::types::Role;

/// Current [`PsdPackage`] and [`SealedPackage`] format version.
pub const PACKAGE_VERSION: u8 = 1;

/// The record kind bound into a sealed package's associated data.
pub const PACKAGE_RECORD_KIND: &str = "psd package";

/// Default maximum descending register: $500.00 (issue 3), in mills.
pub const DEFAULT_MAX_DESCENDING_MILLS: u64 = 500_000;

/// The largest maximum descending register Authorize Customer accepts:
/// $500.00 (seed 002: "in one embodiment, $500"), in mills.
pub const MAX_DESCENDING_CAP: u64 = 500_000;

/// The ascending register must stay below this (the indicium's AR field is
/// 5 bytes, `reference/indicium.md`): 2^40 mills.
pub const AR_LIMIT: u64 = 1 << 40;

/// HPKE `info` of the customer secrets sent with Configure PSD.
pub const CUSTOMER_SECRETS_INFO: &[u8] = b"postvault customer secrets v1";

/// Domain separation of the Configure PSD response MAC.
pub const CONFIGURE_MAC_LABEL: &[u8] = b"postvault configure v1";

/// Domain separation of provider signatures.
pub const PROVIDER_SIGNING_PREFIX: &[u8] = b"postvault provider v1";

/// A PSD's device ID: IBI vendor ID, PSD model number, PSD serial number
/// (`reference/indicium.md`, fields 4 to 6), as it crosses the protocol.
///
/// Its human form is that of [`postvault_indicium::DeviceId`] (decimal,
/// zero-padded to 4-4-8 digits, e.g. `0042-0001-00000017`), the string PSD
/// certificates name; this type only adds the serde encoding the protocol needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceId {
    /// IBI vendor ID.
    pub vendor: u16,
    /// PSD model number.
    pub model: u16,
    /// PSD serial number.
    pub serial: u32,
}

impl From<DeviceId> for postvault_indicium::DeviceId {
    fn from(d: DeviceId) -> Self {
        Self {
            vendor: d.vendor,
            model: d.model,
            serial: d.serial,
        }
    }
}

impl From<postvault_indicium::DeviceId> for DeviceId {
    fn from(d: postvault_indicium::DeviceId) -> Self {
        Self {
            vendor: d.vendor,
            model: d.model,
            serial: d.serial,
        }
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

impl std::str::FromStr for DeviceId {
    type Err = ModuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<postvault_indicium::DeviceId>()
            .map(Self::from)
            .map_err(|e| ModuleError::Invalid(e.to_string()))
    }
}

impl DeviceId {
    /// Refuses device IDs that cannot name a real PSD (vendor 0 or serial 0).
    pub fn validate(&self) -> Result<(), ModuleError> {
        if self.vendor == 0 {
            return Err(ModuleError::Invalid(format!(
                "device ID {self}: vendor ID 0 is not a vendor"
            )));
        }
        if self.serial == 0 {
            return Err(ModuleError::Invalid(format!(
                "device ID {self}: serial number 0 is not a PSD"
            )));
        }
        Ok(())
    }

    /// The display form without a heap allocation (see
    /// [`postvault_indicium::DeviceId::text`]).
    pub fn text(&self) -> postvault_indicium::DeviceIdText {
        postvault_indicium::DeviceId::from(*self).text()
    }

    /// The identity of this PSD's key tokens and records: `psd/<device id>`.
    pub fn identity(&self) -> String {
        format!("psd/{self}")
    }

    /// True when `identity` is this PSD's [`Self::identity`].
    pub fn is_identity(&self, identity: &str) -> bool {
        identity.strip_prefix("psd/") == Some(&*self.text())
    }
}

/// The states of a PSD package (seed 002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PsdState {
    /// Initialized: device ID assigned, registers zero, keys generated.
    Raw,
    /// The PSD certificate was checked and its serial and end recorded
    /// (Authorize PSD; the store keeps the certificate itself).
    Unleased,
    /// Assigned to a customer, whose secrets are loaded (Configure PSD).
    Assigned,
    /// The customer's licence is entered (Authorize Customer); in use.
    Leased,
    /// Temporary: a lost password is being replaced.
    PasswordReset,
    /// Closed by a refund; no PSD command runs any more but the retrieves.
    Withdrawn,
}

impl PsdState {
    /// Every state.
    pub const ALL: [PsdState; 6] = [
        PsdState::Raw,
        PsdState::Unleased,
        PsdState::Assigned,
        PsdState::Leased,
        PsdState::PasswordReset,
        PsdState::Withdrawn,
    ];
}

impl std::fmt::Display for PsdState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PsdState::Raw => "raw",
            PsdState::Unleased => "unleased",
            PsdState::Assigned => "assigned",
            PsdState::Leased => "leased",
            PsdState::PasswordReset => "password reset",
            PsdState::Withdrawn => "withdrawn",
        })
    }
}

/// Every PSD command of issue 3, without its arguments. Not all are
/// implemented yet; the table is complete so that the rest only add
/// handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PsdCommandKind {
    /// Creates the package (no package exists before it).
    InitializePsd,
    /// Loads the PSD certificate: raw -> unleased.
    AuthorizePsd,
    /// Assigns the customer and loads their secrets: unleased -> assigned.
    ConfigurePsd,
    /// Licensing ZIP and maximum descending register: assigned -> leased.
    AuthorizeCustomer,
    /// Provider-signed value download.
    DownloadPostageValue,
    /// An indicium.
    CreateIndicium,
    /// A correction indicium (mail category `CORR`).
    CreateCorrectionIndicium,
    /// Refund of the remaining DR: leased / password reset -> withdrawn.
    CreateRefundIndicium,
    /// Starts replacing a lost password: leased -> password reset.
    BeginPasswordReset,
    /// Sets the new password: password reset -> leased.
    CompletePasswordReset,
    /// Registers, state, device ID.
    RetrievePsdStatus,
    /// The indicium public key and device ID.
    RetrievePsdPublicKey,
    /// Multi-user meter: add a user.
    AddPsdUser,
    /// Multi-user meter: delete a user.
    DeletePsdUser,
    /// Multi-user meter: modify a user (privileges, expiry, limits, unlock).
    ModifyPsdUser,
    /// Multi-user meter: list the users.
    ListPsdUsers,
    /// A meter user's password check (PSD User Logon).
    UserLogon,
}

impl PsdCommandKind {
    /// Every PSD command.
    pub const ALL: [PsdCommandKind; 17] = [
        PsdCommandKind::InitializePsd,
        PsdCommandKind::AuthorizePsd,
        PsdCommandKind::ConfigurePsd,
        PsdCommandKind::AuthorizeCustomer,
        PsdCommandKind::DownloadPostageValue,
        PsdCommandKind::CreateIndicium,
        PsdCommandKind::CreateCorrectionIndicium,
        PsdCommandKind::CreateRefundIndicium,
        PsdCommandKind::BeginPasswordReset,
        PsdCommandKind::CompletePasswordReset,
        PsdCommandKind::RetrievePsdStatus,
        PsdCommandKind::RetrievePsdPublicKey,
        PsdCommandKind::AddPsdUser,
        PsdCommandKind::DeletePsdUser,
        PsdCommandKind::ModifyPsdUser,
        PsdCommandKind::ListPsdUsers,
        PsdCommandKind::UserLogon,
    ];
}

use PsdCommandKind as P;
use PsdState as St;

const EVERY_STATE: &[PsdState] = &PsdState::ALL;

/// Which PSD command runs in which PSD state. Data, like
/// [`crate::table::RULES`]; the module's access table still decides the
/// module state and role first.
///
/// Sources, row by row (seed 002, "the following describes the PSD package
/// states"):
/// - InitializePsd: no row states. It creates the package, which starts
///   raw; there is no package (so no PSD state) before it.
/// - AuthorizePsd: raw ("the only command that can be executed while in the
///   raw state is the authorize PSD command").
/// - ConfigurePsd: unleased ("the only command ... in the unleased state is
///   the configure PSD command").
/// - AuthorizeCustomer: assigned ("the authorize customer command enters the
///   customer's originating zip code and places the PSD in the leased
///   state").
/// - DownloadPostageValue: leased and password reset (seed 002: "the PSD
///   package must be in the leased state or pwreset state" for a value
///   download).
/// - CreateIndicium, CreateCorrectionIndicium: leased ("once in the leased
///   state the PSD is ready for the customer to use").
/// - CreateRefundIndicium: leased and password reset ("entered from the
///   leased state or pwreset state by executing the create refund indicium
///   command").
/// - BeginPasswordReset: leased; CompletePasswordReset: password reset (the
///   temporary state "to allow a lost password to be replaced"; that it is
///   entered from and returns to leased is issue 3's "leased (<-> password
///   reset)").
/// - RetrievePsdStatus, RetrievePsdPublicKey: every state. Choice where the
///   seed's "only command" wording for raw and unleased is strict: these
///   read the package and change nothing, the raw PSD's public key is what
///   the provider needs for certification (seed 002: "the provider receives
///   the PSD public key and device ID"), and a withdrawn package must stay
///   readable to the server (seed 002: "remains in the database where it can
///   be accessed by the server").
/// - AddPsdUser, DeletePsdUser, ModifyPsdUser, ListPsdUsers, UserLogon:
///   leased (seed 002, FIG. 8: users of a meter in use; seed room).
/// - Withdrawn: nothing but the retrieves ("the Module will no longer
///   execute any PSD command when loaded with this PSD package").
pub const PSD_RULES: &[(PsdCommandKind, &[PsdState])] = &[
    (P::InitializePsd, &[]),
    (P::AuthorizePsd, &[St::Raw]),
    (P::ConfigurePsd, &[St::Unleased]),
    (P::AuthorizeCustomer, &[St::Assigned]),
    (P::DownloadPostageValue, &[St::Leased, St::PasswordReset]),
    (P::CreateIndicium, &[St::Leased]),
    (P::CreateCorrectionIndicium, &[St::Leased]),
    (P::CreateRefundIndicium, &[St::Leased, St::PasswordReset]),
    (P::BeginPasswordReset, &[St::Leased]),
    (P::CompletePasswordReset, &[St::PasswordReset]),
    (P::RetrievePsdStatus, EVERY_STATE),
    (P::RetrievePsdPublicKey, EVERY_STATE),
    (P::AddPsdUser, &[St::Leased]),
    (P::DeletePsdUser, &[St::Leased]),
    (P::ModifyPsdUser, &[St::Leased]),
    (P::ListPsdUsers, &[St::Leased]),
    (P::UserLogon, &[St::Leased]),
];

/// True when `kind` may run on a package in `state`.
pub fn psd_allowed(kind: PsdCommandKind, state: PsdState) -> bool {
    PSD_RULES
        .iter()
        .any(|(k, states)| *k == kind && states.contains(&state))
}

/// Refuses `kind` unless [`PSD_RULES`] allows it in `state`.
pub fn check_psd_allowed(kind: PsdCommandKind, state: PsdState) -> Result<(), ModuleError> {
    if psd_allowed(kind, state) {
        Ok(())
    } else {
        Err(ModuleError::PsdDenied {
            command: format!("{kind:?}"),
            state,
        })
    }
}

/// What a meter user may do (seed 002, FIG. 8; issue 3 item 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Privileges {
    /// Create indicia and correction indicia.
    pub create_indicia: bool,
    /// Reset other users' passwords (set new secrets for them).
    pub reset_password: bool,
    /// Retrieve the PSD status (registers) through a MAC'd request.
    pub retrieve_status: bool,
    /// Retrieve the PSD public key through a MAC'd request.
    pub retrieve_public_key: bool,
    /// Add, delete, modify and list the meter's users.
    pub administer_users: bool,
}

impl Privileges {
    /// Every privilege (the meter's first user, its Customer Administrator).
    pub const ALL: Privileges = Privileges {
        create_indicia: true,
        reset_password: true,
        retrieve_status: true,
        retrieve_public_key: true,
        administer_users: true,
    };
    /// A clerk: prints and reads the status and key, administers nothing.
    pub const PRINT: Privileges = Privileges {
        create_indicia: true,
        reset_password: false,
        retrieve_status: true,
        retrieve_public_key: true,
        administer_users: false,
    };
    /// Nothing at all.
    pub const NONE: Privileges = Privileges {
        create_indicia: false,
        reset_password: false,
        retrieve_status: false,
        retrieve_public_key: false,
        administer_users: false,
    };
}

/// Default consecutive failed password checks before a meter user locks.
pub const DEFAULT_USER_FAILURE_LIMIT: u32 = 5;

/// Default lifetime of a meter user's password: 90 days, seconds.
pub const DEFAULT_PASSWORD_PERIOD_SECS: i64 = 90 * 24 * 3600;

/// How many recent password hashes a user's repetition list keeps.
pub const PASSWORD_HISTORY_LEN: usize = 5;

/// One user of a PSD (the single customer, or each user of a multi-user
/// meter). Configure PSD makes the first, a Customer Administrator with
/// every privilege; the multi-user commands add more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsdUser {
    /// User ID within the meter.
    pub user_id: String,
    /// `Customer` or `CustomerAdministrator`.
    pub role: Role,
    /// The user's HMAC key, AES-256-GCM under the package's KEK.
    #[serde(with = "crate::serde_hex::vec")]
    pub hmac_key_sealed: Vec<u8>,
    /// Argon2id PHC string of the user's password.
    pub password_hash: String,
    /// What the user may do.
    pub privileges: Privileges,
    /// Account expiry, Unix seconds (`None`: never).
    pub account_expires: Option<i64>,
    /// Password expiry, Unix seconds (`None`: never).
    pub password_expires: Option<i64>,
    /// Lifetime of a new password, seconds (0: passwords do not expire).
    pub password_period_secs: i64,
    /// Consecutive failed password checks.
    pub failures: u32,
    /// Failed checks before the user is locked.
    pub failure_limit: u32,
    /// Most postage this user may print in total, mills (`None`: no limit).
    pub max_total_postage_mills: Option<u64>,
    /// Postage this user has printed in total, mills.
    pub total_postage_mills: u64,
    /// The user's recent password hashes, newest last (the seed's
    /// passphrase repetition list: a new password must not be one of them).
    pub password_history: Vec<String>,
}

impl PsdUser {
    /// True once the failure count reached the limit.
    pub fn locked(&self) -> bool {
        self.failures >= self.failure_limit
    }
}

/// Which module transaction last produced a package: the module and its
/// checkpoint number. A module refuses a package it stamped itself that is
/// older than its own newest transaction on the same meter (a stale
/// package), see `checkpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageStamp {
    /// The module's ID.
    pub module_id: [u8; 16],
    /// Its checkpoint sequence number for that transaction.
    pub seq: u64,
}

/// The plaintext PSD package (seed 002's item list; issue 3 item 1). It
/// exists only inside the module; outside it is a [`SealedPackage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsdPackage {
    /// Format version ([`PACKAGE_VERSION`]).
    pub version: u8,
    /// Device ID (vendor, model, serial).
    pub device: DeviceId,
    /// The PSD state.
    pub state: PsdState,
    /// Ascending register (total value ever printed), mills.
    pub ascending: u64,
    /// Descending register (value available), mills.
    pub descending: u64,
    /// Control total: AR + DR, mills (value ever downloaded).
    pub control_total: u64,
    /// Maximum descending register, mills.
    pub max_descending: u64,
    /// Serial number of the indicium key certificate (low 32 bits).
    pub certificate_serial: Option<u32>,
    /// Licensing ZIP code, after Authorize Customer.
    pub licensing_zip: Option<u32>,
    /// Key token of the indicium signing key (ECDSA P-256).
    pub signing_key: KeyToken,
    /// Key token of the package's key-encrypting key (EDEK_psd, AES-256).
    pub kek: KeyToken,
    /// The users' secrets.
    pub users: Vec<PsdUser>,
    /// Time of the last PSD transaction, Unix seconds.
    pub last_transaction: Option<i64>,
    /// The last challenge given to the client.
    pub last_challenge: Option<[u8; 16]>,
    /// Expiry of the indicium key, Unix seconds: the end of its
    /// certificate's validity (set by Authorize PSD). No indicium after it.
    pub key_expiry: Option<i64>,
    /// Pieces printed.
    pub piece_count: u64,
    /// Sequence number of the last provider message applied (replay
    /// protection: the next must be greater).
    pub last_provider_sequence: u64,
    /// The user whose password is being reset (password reset state).
    pub reset_user: Option<String>,
    /// The transaction that produced this package.
    pub stamp: Option<PackageStamp>,
}

/// A PSD package as the database holds it: a public header and the sealed
/// package. The header is bound into the seal, so editing it breaks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPackage {
    /// Format version ([`PACKAGE_VERSION`]).
    pub version: u8,
    /// The device ID, as displayed.
    pub device_id: String,
    /// ID of the sealing MKS.
    #[serde(with = "crate::serde_hex::array16")]
    pub mks_id: [u8; 16],
    /// Generation of the sealing MKS.
    pub mks_generation: u32,
    /// nonce || AES-256-GCM(postcard(package)) || tag.
    #[serde(with = "crate::serde_hex::vec")]
    pub sealed: Vec<u8>,
}

impl PsdPackage {
    /// Seals the package under `mks`, after checking the register
    /// invariant ([`Self::check_registers`]).
    pub fn seal(&self, mks: &Mks, rng: &mut Rng) -> Result<SealedPackage, ModuleError> {
        let nonce = rng.array()?;
        self.seal_with_random_nonce(mks, nonce)
    }

    /// [`Self::seal`] with a nonce the caller has just drawn from the
    /// module's generator (12 fresh random bytes, never reused), so that one
    /// draw serves a piece's challenge and its package's nonce.
    pub fn seal_with_random_nonce(
        &self,
        mks: &Mks,
        nonce: [u8; postvault_crypto::aead::NONCE_LEN],
    ) -> Result<SealedPackage, ModuleError> {
        self.check_registers()?;
        let device_id = self.device.text();
        // nonce || plaintext, encoded straight into a buffer of the final
        // size (room for the tag too) and sealed where it lies: the
        // plaintext is never copied, and wiped if encoding fails.
        let encode = |buf: &mut Vec<u8>| -> postcard::Result<()> {
            let len = postcard::experimental::serialized_size(self)?;
            buf.reserve_exact(nonce.len() + len + postvault_crypto::aead::TAG_LEN);
            buf.extend_from_slice(&nonce);
            buf.resize(nonce.len() + len, 0);
            postcard::to_slice(self, &mut buf[nonce.len()..])?;
            Ok(())
        };
        let mut sealed = Vec::new();
        if let Err(e) = encode(&mut sealed) {
            sealed.zeroize();
            return Err(ModuleError::Internal(format!(
                "package of {device_id} does not encode: {e}"
            )));
        }
        mks.seal_record_in_place(PACKAGE_RECORD_KIND, &device_id, &mut sealed)?;
        Ok(SealedPackage {
            version: PACKAGE_VERSION,
            device_id: device_id.to_string(),
            mks_id: mks.id,
            mks_generation: mks.generation,
            sealed,
        })
    }

    /// Opens a sealed package: it must be sealed under the `active` MKS.
    /// One sealed under the `dormant` (previous) MKS is refused with
    /// `KeyState` (translate it first); any other failure is `Rejected`.
    pub fn open(
        sealed: &SealedPackage,
        active: Option<&Mks>,
        dormant: Option<&Mks>,
    ) -> Result<PsdPackage, ModuleError> {
        let dev = &sealed.device_id;
        let rejected = |why: &str| {
            ModuleError::Rejected(format!(
                "PSD package for {dev} failed authentication ({why}); it was altered, belongs to another meter or was not sealed by this deployment"
            ))
        };
        if sealed.version != PACKAGE_VERSION {
            return Err(rejected(&format!(
                "unknown package version {}",
                sealed.version
            )));
        }
        let active =
            active.ok_or_else(|| ModuleError::KeyState("this module has no active MKS".into()))?;
        if sealed.mks_id != active.id || sealed.mks_generation != active.generation {
            if let Some(d) = dormant
                && d.id == sealed.mks_id
                && d.generation == sealed.mks_generation
            {
                return Err(ModuleError::KeyState(format!(
                    "PSD package for {dev} is sealed under the previous MKS (generation {}); translate it to the active MKS (generation {}) first",
                    d.generation, active.generation
                )));
            }
            return Err(rejected("sealed under an MKS this module does not hold"));
        }
        let plain = active
            .open_record(PACKAGE_RECORD_KIND, dev, &sealed.sealed)
            .map_err(|_| rejected("the seal does not verify"))?;
        let package: PsdPackage = postcard::from_bytes(plain.expose_secret())
            .map_err(|_| rejected("the contents do not decode"))?;
        if package.version != PACKAGE_VERSION || *package.device.text() != **dev {
            return Err(rejected("the contents do not match the header"));
        }
        Ok(package)
    }
}

impl PsdPackage {
    /// The package's status (Retrieve PSD Status).
    pub fn status(&self) -> PsdStatus {
        PsdStatus {
            device_id: self.device.to_string(),
            state: self.state,
            ascending_mills: self.ascending,
            descending_mills: self.descending,
            control_total_mills: self.control_total,
            max_descending_mills: self.max_descending,
            piece_count: self.piece_count,
            licensing_zip: self.licensing_zip,
            certificate_serial: self.certificate_serial,
            users: self.users.len() as u32,
            last_transaction: self.last_transaction,
            last_provider_sequence: self.last_provider_sequence,
            challenge: self.last_challenge,
        }
    }

    /// The descending register and control total after a download of
    /// `amount_mills` (Download Postage Value), or why it is refused: a
    /// download of 0, one that takes DR over the maximum set by Authorize
    /// Customer, or one that would let AR reach [`AR_LIMIT`] (every mill
    /// downloaded ends up in AR once printed, so the control total is what
    /// must stay below the limit). Changes nothing.
    pub fn registers_after_download(&self, amount_mills: u64) -> Result<(u64, u64), ModuleError> {
        if amount_mills == 0 {
            return Err(ModuleError::Invalid(
                "a download must be of more than 0 mills".into(),
            ));
        }
        let descending = self
            .descending
            .checked_add(amount_mills)
            .filter(|dr| *dr <= self.max_descending)
            .ok_or_else(|| {
                ModuleError::Invalid(format!(
                    "downloading {amount_mills} mills would take the descending register from {} over its maximum of {} mills",
                    self.descending, self.max_descending
                ))
            })?;
        let control_total = self
            .control_total
            .checked_add(amount_mills)
            .filter(|t| *t < AR_LIMIT)
            .ok_or_else(|| {
                ModuleError::Invalid(format!(
                    "downloading {amount_mills} mills would let the ascending register reach its limit of {AR_LIMIT} mills"
                ))
            })?;
        Ok((descending, control_total))
    }

    /// The register invariant: AR + DR equals the control total (no
    /// overflow). A violation is an internal error: the command that
    /// produced it is refused and nothing is stored.
    pub fn check_registers(&self) -> Result<(), ModuleError> {
        match self.ascending.checked_add(self.descending) {
            Some(sum) if sum == self.control_total => Ok(()),
            _ => Err(ModuleError::Internal(format!(
                "PSD {}: register invariant broken (AR {} + DR {} != control total {}); the command was refused",
                self.device, self.ascending, self.descending, self.control_total
            ))),
        }
    }
}

/// A message HPKE-sealed to one recipient (RFC 9180, base mode).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HpkeSealed {
    /// Encapsulated key (32 bytes).
    #[serde(with = "crate::serde_hex::vec")]
    pub enc: Vec<u8>,
    /// Ciphertext and tag.
    #[serde(with = "crate::serde_hex::vec")]
    pub ciphertext: Vec<u8>,
}

/// What the customer's client sends with Configure PSD, HPKE-sealed to the
/// deployment's registration encryption key (seed 002: "receives the
/// encrypted secrets from the customer"). Zeroized on drop, redacted in
/// `Debug`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CustomerSecrets {
    /// The customer's user ID within the meter.
    pub user_id: String,
    /// The HMAC key the client generated (it keeps a copy).
    pub hmac_key: Zeroizing<[u8; 32]>,
    /// The customer's password.
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for CustomerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerSecrets")
            .field("user_id", &self.user_id)
            .field("hmac_key", &"<redacted>")
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Client side of Configure PSD: seals `secrets` to the registration
/// encryption public key (32 bytes), bound to the meter's device ID.
pub fn seal_customer_secrets(
    rng: &mut Rng,
    registration_public_key: &[u8],
    device: &DeviceId,
    secrets: &CustomerSecrets,
) -> Result<HpkeSealed, ModuleError> {
    let plain = Zeroizing::new(
        postcard::to_stdvec(secrets).expect("encoding secrets into a Vec cannot fail"),
    );
    let (enc, ciphertext) = hpke::seal(
        rng,
        registration_public_key,
        CUSTOMER_SECRETS_INFO,
        device.to_string().as_bytes(),
        &plain,
    )?;
    Ok(HpkeSealed { enc, ciphertext })
}

/// The Configure PSD response MAC: HMAC-SHA-256 under the customer's key
/// over the label, the device ID, the user ID and the module's challenge
/// (each length-prefixed). The client recomputes it to check that the
/// module received its key correctly (seed 002).
pub fn configure_mac(
    hmac_key: &[u8; 32],
    device: &DeviceId,
    user_id: &str,
    challenge: &[u8; 16],
) -> [u8; 32] {
    let key = SecretKey32::from_bytes(*hmac_key);
    let device = device.to_string();
    let dlen = (device.len() as u32).to_be_bytes();
    let ulen = (user_id.len() as u32).to_be_bytes();
    hash::hmac_sha256(
        &key,
        &[
            CONFIGURE_MAC_LABEL,
            &dlen,
            device.as_bytes(),
            &ulen,
            user_id.as_bytes(),
            challenge,
        ],
    )
}

/// The associated data of a user's sealed HMAC key inside the package: the
/// meter and the user it belongs to.
pub fn user_key_aad(device: &DeviceId, user_id: &str) -> Vec<u8> {
    const LABEL: &[u8] = b"psd user key\0";
    let device = device.text();
    let mut aad = Vec::with_capacity(LABEL.len() + device.len() + 1 + user_id.len());
    aad.extend_from_slice(LABEL);
    aad.extend_from_slice(device.as_bytes());
    aad.push(0);
    aad.extend_from_slice(user_id.as_bytes());
    aad
}

/// A provider-role command (seed 002: "signed with the provider key"),
/// authenticated per command, not by logon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum ProviderCommand {
    /// Authorize Customer: licensing ZIP (ZIP5 * 10000 + plus-4) and the
    /// maximum descending register, mills.
    AuthorizeCustomer {
        /// ZIP5 * 10000 + plus-4 (e.g. 100010001 for 10001-0001).
        licensing_zip: u32,
        /// Maximum descending register, mills (1..=[`MAX_DESCENDING_CAP`]).
        max_descending_mills: u64,
    },
    /// Download Postage Value.
    Download {
        /// Value to add to the DR, mills.
        amount_mills: u64,
        /// The provider's control total before the download (must equal AR + DR).
        control_total_mills: u64,
    },
    /// Create Refund Indicium: an indicium for the whole remaining DR,
    /// then the meter is withdrawn.
    Refund {
        /// Date of the refund indicium, the integer YYYYMMDD.
        date: u32,
    },
    /// Begin Password Reset: the named user's password (and key) will be
    /// replaced by Complete Password Reset. Leased -> password reset.
    BeginPasswordReset {
        /// The user whose password was lost.
        user_id: String,
    },
}

/// The signed part of a provider message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProviderBody {
    /// The meter it is for, as displayed.
    pub device_id: String,
    /// Strictly increasing per meter (replay protection).
    pub sequence: u64,
    /// The command.
    pub command: ProviderCommand,
}

impl ProviderBody {
    /// The bytes the provider signs: [`PROVIDER_SIGNING_PREFIX`] || postcard(body).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = PROVIDER_SIGNING_PREFIX.to_vec();
        out.extend_from_slice(
            &postcard::to_stdvec(self).expect("encoding a body into a Vec cannot fail"),
        );
        out
    }
}

/// A provider message: the body and its ECDSA P-256 signature (r || s) by
/// the provider key whose public half is in the module's crypto card.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProviderMessage {
    /// What is signed.
    pub body: ProviderBody,
    /// ECDSA P-256 / SHA-256 over [`ProviderBody::signing_bytes`], r || s.
    #[serde(with = "crate::serde_hex::array64")]
    pub signature: [u8; 64],
}

/// The smallest postage value Create Indicium accepts, mills (seed 002,
/// step 6: "within the minimum and maximum limits enforced by the module").
pub const MIN_POSTAGE_MILLS: u64 = 1;

/// The largest postage value Create Indicium accepts: $99.999, in mills
/// (below 2^24, the indicium's 3-byte postage field).
pub const MAX_POSTAGE_MILLS: u64 = 99_999;

/// The software ID the module writes into every indicium (field 11).
pub const SOFTWARE_ID: u16 = 1;

/// Domain separation of the Create Indicium request MAC.
pub const INDICIUM_REQUEST_LABEL: &[u8] = b"postvault indicium request v1";

/// Domain separation of the Create Indicium response MAC.
pub const INDICIUM_RESPONSE_LABEL: &[u8] = b"postvault indicium response v1";

/// A customer's Create Indicium request (seed 002, FIG. 5 and the create
/// indicium steps): the piece to print, the module's last challenge, and an
/// HMAC-SHA-256 under the user's key ([`indicium_request_mac`]), which
/// authenticates the user per command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndiciumRequest {
    /// The meter, as displayed (must be the package's device ID).
    pub device_id: String,
    /// The user making the request (a user of the package).
    pub user_id: String,
    /// The module's last challenge (`PsdPackage::last_challenge`).
    pub challenge: [u8; 16],
    /// Postage value, mills ([`MIN_POSTAGE_MILLS`]..=[`MAX_POSTAGE_MILLS`]).
    pub postage_mills: u64,
    /// Date of mailing, the integer YYYYMMDD.
    pub date: u32,
    /// Originating ZIP+4 (ZIP5 * 10000 + plus-4); its ZIP5 must be the
    /// licensing ZIP's.
    pub origin_zip: u32,
    /// Destination ZIP+4, 0 when the piece is not addressed.
    pub destination_zip: u32,
    /// Mail category, ASCII, space-padded (not `CORR` or `RFND`).
    pub category: [u8; 4],
    /// HMAC-SHA-256 under the user's key over [`IndiciumRequest::mac_bytes`].
    pub mac: [u8; 32],
}

impl IndiciumRequest {
    /// The bytes the client MACs: [`INDICIUM_REQUEST_LABEL`] followed by the
    /// postcard encoding of every field but the MAC, in declaration order.
    pub fn mac_bytes(&self) -> Vec<u8> {
        let fields = (
            &self.device_id,
            &self.user_id,
            &self.challenge,
            self.postage_mills,
            self.date,
            self.origin_zip,
            self.destination_zip,
            &self.category,
        );
        // Label, two length-prefixed strings and at most 16 + 10 + 5 + 5 + 5 + 4
        // bytes of fixed fields: one allocation.
        let mut out = Vec::with_capacity(
            INDICIUM_REQUEST_LABEL.len() + self.device_id.len() + self.user_id.len() + 64,
        );
        out.extend_from_slice(INDICIUM_REQUEST_LABEL);
        postcard::to_extend(&fields, out).expect("encoding a request into a Vec cannot fail")
    }
}

/// Client side of Create Indicium: the request MAC under the user's HMAC
/// key (set it as [`IndiciumRequest::mac`]).
pub fn indicium_request_mac(hmac_key: &[u8; 32], req: &IndiciumRequest) -> [u8; 32] {
    let key = SecretKey32::from_bytes(*hmac_key);
    hash::hmac_sha256(&key, &[&req.mac_bytes()])
}

/// The Create Indicium response MAC: HMAC-SHA-256 under the user's key over
/// [`INDICIUM_RESPONSE_LABEL`] || indicium || old challenge || new
/// challenge. The client recomputes it to authenticate the module's answer
/// (seed 002, step 10).
pub fn indicium_response_mac(
    hmac_key: &[u8; 32],
    indicium: &[u8],
    old_challenge: &[u8; 16],
    new_challenge: &[u8; 16],
) -> [u8; 32] {
    let key = HmacSha256Key::new(&SecretKey32::from_bytes(*hmac_key));
    indicium_response_mac_with(&key, indicium, old_challenge, new_challenge)
}

/// [`indicium_response_mac`] with the key already prepared.
pub(crate) fn indicium_response_mac_with(
    key: &HmacSha256Key,
    indicium: &[u8],
    old_challenge: &[u8; 16],
    new_challenge: &[u8; 16],
) -> [u8; 32] {
    key.sign(&[
        INDICIUM_RESPONSE_LABEL,
        indicium,
        old_challenge,
        new_challenge,
    ])
}

/// Domain separation of the multi-user request MAC.
pub const USER_REQUEST_LABEL: &[u8] = b"postvault psd user request v1";

/// Domain separation of the multi-user response MAC.
pub const USER_RESPONSE_LABEL: &[u8] = b"postvault psd user response v1";

/// HPKE `info` of a password sent with PSD User Logon.
pub const USER_LOGON_INFO: &[u8] = b"postvault psd user logon v1";

/// A meter user's limits. On Add, `None` takes the default; on Modify,
/// `None` keeps the current value and `Some(0)` clears an expiry or a
/// postage limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsdUserSettings {
    /// Account expiry, Unix seconds (default never).
    pub account_expires: Option<i64>,
    /// Lifetime of a new password, seconds (default
    /// [`DEFAULT_PASSWORD_PERIOD_SECS`]).
    pub password_period_secs: Option<i64>,
    /// Failed password checks before the user locks (default
    /// [`DEFAULT_USER_FAILURE_LIMIT`]).
    pub failure_limit: Option<u32>,
    /// Most postage the user may print in total, mills (default no limit).
    pub max_total_postage_mills: Option<u64>,
}

/// What a meter user asks of the module, authenticated by the MAC under
/// their key (the same FIG. 5 chain as Create Indicium).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserOperation {
    /// Adds a user (privilege `administer_users`); their secrets arrive
    /// HPKE-sealed to the registration key like Configure PSD's.
    AddUser {
        /// `CustomerSecrets` of the new user (`seal_customer_secrets`).
        secrets: HpkeSealed,
        /// `Customer` or `CustomerAdministrator`.
        role: Role,
        /// The new user's privileges.
        privileges: Privileges,
        /// The new user's limits.
        settings: PsdUserSettings,
    },
    /// Deletes a user (privilege `administer_users`; not oneself, and never
    /// the last user holding `administer_users`).
    DeleteUser {
        /// The user to delete.
        user_id: String,
    },
    /// Changes a user (privilege `administer_users`; `new_secrets` needs
    /// `reset_password` instead, or is one's own password change).
    ModifyUser {
        /// The user to change.
        user_id: String,
        /// New privileges (`None` keeps).
        privileges: Option<Privileges>,
        /// New limits.
        settings: PsdUserSettings,
        /// Clears the failure count.
        unlock: bool,
        /// New `CustomerSecrets` (HMAC key and password) for the user.
        new_secrets: Option<HpkeSealed>,
    },
    /// Lists the users (privilege `administer_users`).
    ListUsers,
    /// The PSD status (privilege `retrieve_status`).
    RetrieveStatus,
    /// The PSD public key (privilege `retrieve_public_key`).
    RetrievePublicKey,
}

/// A MAC'd multi-user request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRequest {
    /// The meter, as displayed.
    pub device_id: String,
    /// The user making the request.
    pub user_id: String,
    /// The module's last challenge.
    pub challenge: [u8; 16],
    /// What is asked.
    pub operation: UserOperation,
    /// HMAC-SHA-256 under the user's key over [`UserRequest::mac_bytes`].
    pub mac: [u8; 32],
}

impl UserRequest {
    /// The bytes the client MACs: [`USER_REQUEST_LABEL`] || postcard of
    /// every field but the MAC.
    pub fn mac_bytes(&self) -> Vec<u8> {
        let fields = (
            &self.device_id,
            &self.user_id,
            &self.challenge,
            &self.operation,
        );
        let mut out = USER_REQUEST_LABEL.to_vec();
        out.extend_from_slice(
            &postcard::to_stdvec(&fields).expect("encoding a request into a Vec cannot fail"),
        );
        out
    }
}

/// Client side: the MAC of a [`UserRequest`] (set it as its `mac`).
pub fn user_request_mac(hmac_key: &[u8; 32], req: &UserRequest) -> [u8; 32] {
    let key = SecretKey32::from_bytes(*hmac_key);
    hash::hmac_sha256(&key, &[&req.mac_bytes()])
}

/// A meter user as List Users shows them (never a key or hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsdUserView {
    /// User ID.
    pub user_id: String,
    /// Role.
    pub role: Role,
    /// Privileges.
    pub privileges: Privileges,
    /// Account expiry.
    pub account_expires: Option<i64>,
    /// Password expiry.
    pub password_expires: Option<i64>,
    /// Consecutive failed password checks.
    pub failures: u32,
    /// Their limit.
    pub failure_limit: u32,
    /// Locked out.
    pub locked: bool,
    /// Total postage limit, mills.
    pub max_total_postage_mills: Option<u64>,
    /// Total postage printed, mills.
    pub total_postage_mills: u64,
}

/// Retrieve PSD Status: the registers and the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsdStatus {
    /// Device ID, as displayed.
    pub device_id: String,
    /// PSD state.
    pub state: PsdState,
    /// Ascending register, mills.
    pub ascending_mills: u64,
    /// Descending register, mills.
    pub descending_mills: u64,
    /// Control total (AR + DR), mills.
    pub control_total_mills: u64,
    /// Maximum descending register, mills.
    pub max_descending_mills: u64,
    /// Pieces printed.
    pub piece_count: u64,
    /// Licensing ZIP (ZIP5 * 10000 + plus-4).
    pub licensing_zip: Option<u32>,
    /// PSD certificate serial (low 32 bits).
    pub certificate_serial: Option<u32>,
    /// Number of users.
    pub users: u32,
    /// Time of the last transaction, Unix seconds.
    pub last_transaction: Option<i64>,
    /// The last provider sequence number applied.
    pub last_provider_sequence: u64,
    /// The module's last challenge (not secret: the next MAC'd request
    /// must carry it).
    pub challenge: Option<[u8; 16]>,
}

/// The module's answer to a [`UserRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserAnswer {
    /// Add User, Delete User, Modify User: done.
    Done,
    /// List Users.
    Users(Vec<PsdUserView>),
    /// Retrieve Status.
    Status(PsdStatus),
    /// Retrieve Public Key: the 65-byte uncompressed P-256 key.
    PublicKey(#[serde(with = "crate::serde_hex::vec")] Vec<u8>),
}

/// The MAC of the module's answer to a [`UserRequest`]: HMAC-SHA-256 under
/// the user's key over [`USER_RESPONSE_LABEL`] || postcard(answer) || old
/// challenge || new challenge.
pub fn user_response_mac(
    hmac_key: &[u8; 32],
    answer: &UserAnswer,
    old_challenge: &[u8; 16],
    new_challenge: &[u8; 16],
) -> [u8; 32] {
    let key = SecretKey32::from_bytes(*hmac_key);
    hash::hmac_sha256(
        &key,
        &[
            USER_RESPONSE_LABEL,
            &postcard::to_stdvec(answer).expect("encoding an answer into a Vec cannot fail"),
            old_challenge,
            new_challenge,
        ],
    )
}

/// What PSD User Logon carries, HPKE-sealed to the registration key with
/// the device ID as associated data: the user, the password and the
/// package's current challenge (so a captured logon cannot be replayed).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserLogon {
    /// The user.
    pub user_id: String,
    /// Their password.
    pub password: Zeroizing<String>,
    /// The package's last challenge.
    pub challenge: [u8; 16],
}

impl std::fmt::Debug for UserLogon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserLogon")
            .field("user_id", &self.user_id)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Client side of PSD User Logon: seals `logon` to the registration key,
/// bound to the meter.
pub fn seal_user_logon(
    rng: &mut Rng,
    registration_public_key: &[u8],
    device: &DeviceId,
    logon: &UserLogon,
) -> Result<HpkeSealed, ModuleError> {
    let plain = Zeroizing::new(
        postcard::to_stdvec(logon).expect("encoding a logon into a Vec cannot fail"),
    );
    let (enc, ciphertext) = hpke::seal(
        rng,
        registration_public_key,
        USER_LOGON_INFO,
        device.to_string().as_bytes(),
        &plain,
    )?;
    Ok(HpkeSealed { enc, ciphertext })
}

/// One item of a Create Indicia batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndiciumItem {
    /// The sealed package (leased).
    pub package: SealedPackage,
    /// The customer's MAC'd request.
    pub request: IndiciumRequest,
}

/// One indicium a batch issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedIndicium {
    /// The updated sealed package.
    pub package: SealedPackage,
    /// The signed version-1 indicium (113 bytes).
    #[serde(with = "crate::serde_hex::vec")]
    pub indicium: Vec<u8>,
    /// The challenge the request carried.
    pub old_challenge: [u8; 16],
    /// The challenge the next request must carry.
    pub new_challenge: [u8; 16],
    /// HMAC-SHA-256 under the user's key (`indicium_response_mac`).
    pub mac: [u8; 32],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_identity_and_user_key_aad_keep_their_forms() {
        let d = DeviceId {
            vendor: 42,
            model: 1,
            serial: 17,
        };
        assert_eq!(d.identity(), "psd/0042-0001-00000017");
        assert!(d.is_identity(&d.identity()));
        assert!(!d.is_identity("psd/0042-0001-0000001"));
        assert!(!d.is_identity("0042-0001-00000017"));
        assert_eq!(
            user_key_aad(&d, "bench"),
            format!("psd user key\0{d}\0bench").into_bytes()
        );
    }
}
