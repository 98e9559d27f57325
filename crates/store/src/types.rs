//! The records the store holds. Packages, checkpoints and audit entries are
//! opaque here: the server serializes them (serde JSON of the module crate's
//! `SealedPackage`, `SignedCheckpoint`, `AuditEntry`) and the store keeps the
//! text byte for byte, indexing only the plain fields beside it.
//!
//! Times are Unix seconds passed in by the caller (the store never reads the
//! clock); amounts are integer mills.

/// A meter (a PSD): one row of the `meters` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meter {
    /// The device ID, as displayed; the primary key.
    pub device_id: String,
    /// The login of the account that owns the meter, if assigned.
    pub owner: Option<String>,
    /// The PSD state, as text (`"Leased"`, ...).
    pub state: String,
    /// The sealed PSD package, serialized (JSON).
    pub package: String,
    /// The PSD's certificate (DER), once loaded.
    pub certificate: Option<Vec<u8>>,
    /// When the row was last written, Unix seconds.
    pub updated: i64,
}

/// A module's newest checkpoint: one row of the module table
/// (`module_checkpoints`), which the server cross-checks against the module
/// before it hands the module any package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleCheckpoint {
    /// The module's ID (hex); the primary key.
    pub module_id: String,
    /// The MAC'd checkpoint record, serialized (JSON).
    pub checkpoint: String,
    /// The module's checkpoint counter at that transaction.
    pub seq: u64,
    /// Time of the transaction, Unix seconds.
    pub time: i64,
    /// Value of the transaction, mills.
    pub value_mills: u64,
}

/// One audit entry of a module, as the module's host stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// The module's ID (hex).
    pub module_id: String,
    /// The entry's sequence number in that module's chain.
    pub seq: u64,
    /// The entry as one JSON line (no trailing newline).
    pub line: String,
}

/// One issued indicium: a row of the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The meter that issued it.
    pub device_id: String,
    /// The meter's piece counter for it; unique per meter.
    pub piece: u64,
    /// The account that owned the meter when it was issued, if any (the
    /// key of the history by account).
    pub account: Option<String>,
    /// The user of the meter who asked for it.
    pub user_name: String,
    /// Postage, mills.
    pub postage_mills: u64,
    /// Ascending register after it, mills.
    pub ascending_mills: u64,
    /// Descending register after it, mills.
    pub descending_mills: u64,
    /// Mail category / rate code.
    pub category: String,
    /// The indicium as issued (113 bytes for version 1).
    pub indicium: Vec<u8>,
    /// When it was issued, Unix seconds.
    pub time: i64,
}

/// What a money movement was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MoneyKind {
    /// Value downloaded into the meter (the customer paid).
    Download,
    /// Value refunded out of the meter.
    Refund,
}

impl MoneyKind {
    /// The text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            MoneyKind::Download => "download",
            MoneyKind::Refund => "refund",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "download" => Some(MoneyKind::Download),
            "refund" => Some(MoneyKind::Refund),
            _ => None,
        }
    }
}

/// A value download or a refund: a row of the `money` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoneyEntry {
    /// The meter.
    pub device_id: String,
    /// Download or refund.
    pub kind: MoneyKind,
    /// The amount, mills (positive; the kind says which way it went).
    pub amount_mills: u64,
    /// The provider's sequence number for the message, if it had one;
    /// unique per meter and kind (a replayed message is refused).
    pub provider_seq: Option<u64>,
    /// When, Unix seconds.
    pub time: i64,
    /// The provider's or the customer's reference.
    pub reference: String,
}

/// An operator or customer account.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The login ID; the primary key.
    pub login: String,
    /// The Argon2id hash of the password, in PHC string form.
    pub password_hash: String,
    /// The role, as text.
    pub role: String,
    /// Failed logons since the last successful one.
    pub failed_logons: u32,
    /// Locked out (by failed logons or by an administrator).
    pub locked: bool,
    /// When it was created, Unix seconds.
    pub created: i64,
}

impl std::fmt::Debug for Account {
    // The hash is not a secret in the strict sense, but there is no reason
    // for it to reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("login", &self.login)
            .field("password_hash", &"<redacted>")
            .field("role", &self.role)
            .field("failed_logons", &self.failed_logons)
            .field("locked", &self.locked)
            .field("created", &self.created)
            .finish()
    }
}

/// A logged-on session. The store keeps a hash of the session token, never
/// the token itself, so a copy of the database logs nobody on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The hash of the token (SHA-256, 32 bytes, made by the caller).
    pub token_hash: Vec<u8>,
    /// The account's login.
    pub login: String,
    /// When it was created, Unix seconds.
    pub created: i64,
    /// Last activity, Unix seconds (for the inactivity expiry).
    pub last_active: i64,
}

/// What a meter transaction writes, all in one database transaction
/// ([`crate::MeterTx::commit`]). Several indicia of several meters go in one
/// `Commit`, so one fsync covers a whole group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commit {
    /// New rows for meters locked by this transaction (each replaces the
    /// row with its device ID, which must be among the locked ones).
    pub meters: Vec<Meter>,
    /// The module's new checkpoint and module-table row. The row is kept
    /// only if its `seq` is beyond the stored one, so a late commit of an
    /// older checkpoint never moves the table backwards.
    pub checkpoint: Option<ModuleCheckpoint>,
    /// The indicia issued.
    pub ledger: Vec<LedgerEntry>,
    /// Downloads and refunds.
    pub money: Vec<MoneyEntry>,
    /// The audit entries the module made for these commands.
    pub audit: Vec<AuditRecord>,
}
