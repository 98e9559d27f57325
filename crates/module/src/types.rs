//! Small shared types: module states, roles, the module clock.
use serde::{Deserialize, Serialize};

/// The module's states (seed 002, FIG. 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModuleState {
    /// Fresh or reset: only Start Initialization is accepted.
    Uninitialized,
    /// One-time set-up: access control database, MKS or transport key.
    Initializing,
    /// Normal operation.
    Operational,
    /// Access control maintenance (entered by Begin Admin).
    Administrative,
    /// Key custodians export MKS shares (entered by Create MKS Shares).
    ExportingShares,
    /// Key custodians import MKS shares (entered by Generate Transport Key or Start Importing).
    ImportingShares,
    /// No cryptographic operation is possible.
    Error,
}

impl ModuleState {
    /// Every state, in FIG. 6 order.
    pub const ALL: [ModuleState; 7] = [
        ModuleState::Uninitialized,
        ModuleState::Initializing,
        ModuleState::Operational,
        ModuleState::Administrative,
        ModuleState::ExportingShares,
        ModuleState::ImportingShares,
        ModuleState::Error,
    ];
    /// Stable name used in audit entries and status output.
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleState::Uninitialized => "Uninitialized",
            ModuleState::Initializing => "Initializing",
            ModuleState::Operational => "Operational",
            ModuleState::Administrative => "Administrative",
            ModuleState::ExportingShares => "ExportingShares",
            ModuleState::ImportingShares => "ImportingShares",
            ModuleState::Error => "Error",
        }
    }
}

impl std::fmt::Display for ModuleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Operator roles (seeds 001 and 002). Every user has exactly one.
/// Serialized by the same names as [`Role::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Initiates key management: MKS generation, shares, activation.
    SecurityOfficer,
    /// Takes possession of encrypted MKS shares and enters them.
    KeyCustodian,
    /// Manages the access control database.
    Administrator,
    /// Manages audit logs and exports the audit verification key.
    Auditor,
    /// The vendor's e-commerce side: authorizes customers, downloads value.
    Provider,
    /// Loads PSD certificates.
    CertificateAuthority,
    /// A meter user.
    Customer,
    /// Administers the users of a multi-user meter.
    CustomerAdministrator,
    /// Unauthenticated: nobody is logged on.
    NoRole,
}

impl Role {
    /// Every role, `NoRole` last.
    pub const ALL: [Role; 9] = [
        Role::SecurityOfficer,
        Role::KeyCustodian,
        Role::Administrator,
        Role::Auditor,
        Role::Provider,
        Role::CertificateAuthority,
        Role::Customer,
        Role::CustomerAdministrator,
        Role::NoRole,
    ];
    /// Stable name used in audit entries, status output and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SecurityOfficer => "security-officer",
            Role::KeyCustodian => "key-custodian",
            Role::Administrator => "administrator",
            Role::Auditor => "auditor",
            Role::Provider => "provider",
            Role::CertificateAuthority => "certificate-authority",
            Role::Customer => "customer",
            Role::CustomerAdministrator => "customer-administrator",
            Role::NoRole => "no-role",
        }
    }
    /// Parses a stable name (also accepts the short forms so, kc, admin, ad, au, pr, ca, cu, cad).
    pub fn parse(s: &str) -> Option<Role> {
        let s = s.to_ascii_lowercase();
        let short = match s.as_str() {
            "so" => Some(Role::SecurityOfficer),
            "kc" => Some(Role::KeyCustodian),
            "ad" | "admin" => Some(Role::Administrator),
            "au" => Some(Role::Auditor),
            "pr" => Some(Role::Provider),
            "ca" => Some(Role::CertificateAuthority),
            "cu" => Some(Role::Customer),
            "cad" => Some(Role::CustomerAdministrator),
            _ => None,
        };
        short.or_else(|| Role::ALL.into_iter().find(|r| r.as_str() == s))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The source of time. The module adds its own offset (set by Set Clock) to it.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// A clock that tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock stopped at `t`.
    pub fn new(t: i64) -> Self {
        Self(std::sync::atomic::AtomicI64::new(t))
    }
    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
