//! The access table: which command is allowed in which state for which role.
//!
//! This is data, not scattered `if`s. It is taken from the command lists of
//! seed 002 (the states of FIG. 6 and the text around it) and the roles x
//! services matrix of seed 001 (Table 2). The decision depends on the state
//! and the role alone; the validity of the input plays no part in it (seed
//! 002). A command is allowed when any rule for it names both the current
//! state and the session's role.
//!
//! Choices where the seeds leave room, recorded here so they are reviewable:
//! - Session commands (Close Session, Get Status) work in every state, so a
//!   secure session can carry Start Initialization and Error-state status.
//! - Any logged-on user may log off, in Error state too (seed 001 lists only
//!   operator roles, but a user who could log on must be able to leave, and
//!   a session cannot close while its user is logged on).
//! - In Error state, besides Get Status and the access control queries, the
//!   seed's "audit entry creation and session commands" stay open, and so do
//!   Zeroize and Reset (the way out of a fatal error).
//! - Run Self-Tests and Zeroize are not in the seeds' command lists; they
//!   implement seed 001's self-tests on demand and seed 003's zeroization.
//! - Set Clock and View Users are Administrative-state commands (the access
//!   control text of seed 002); View Users keeps Table 2's roles.
//! - Reset is for the Security Officer in any initialized state, for
//!   anyone at the module in Error state (the seed's "reboot or reset"), and
//!   for No-Role in Initializing: a start that failed before any account
//!   exists must be resettable, and an Initializing module holds no master
//!   key yet.
//! - The PSD commands run in Operational state only (the module's working
//!   state). Which PSD state each needs is the second table,
//!   `psd::PSD_RULES`, checked after this one.
//! - Initialize PSD and Retrieve PSD Public Key are for any role, No-Role
//!   included: seed 002's commands that prepare a PSD need no
//!   authentication, and retrieving a public key is a No-Role service (seed
//!   001). Uniqueness of device IDs ("once per PSD") is the store's job (a
//!   unique key); the module cannot see the database.
//! - Authorize PSD, Configure PSD, Authorize Customer and Download Postage
//!   Value are also open to every role, No-Role included, in Operational
//!   state: their authentication is per command, not by logon (seed 002,
//!   "Role Access may be accomplished by Command Authentication"). The
//!   Certificate Authority role is authenticated by the PSD certificate
//!   itself ("authenticated when the signature on the certificate provided
//!   with the command is authenticated by the CA certificate contained in
//!   the module"); the Provider role by the provider's signature on the
//!   message (the provider key of the crypto card); Configure PSD is
//!   "not authenticated", its answer is MAC'd under the key just received.
//! - Create Indicium is open to every role in Operational state for the
//!   same reason: the customer is authenticated per command by the
//!   request's HMAC under their key, which the package holds (seed 002,
//!   step 5: "this also authenticates the command into the user role"),
//!   not by a logon to the module.
//!   The same holds for the commands added with checkpoints, refunds,
//!   password reset and multi-user meters: Create Correction Indicium,
//!   Create Indicia (a batch), PSD User Command and PSD User Logon
//!   (authenticated by the user's MAC or password), Create Refund Indicium
//!   and Begin Password Reset (by the provider's signature), Complete
//!   Password Reset (answered under the new key), Retrieve PSD Status and
//!   Retrieve Checkpoint (read-only), and Auto-Recover Checkpoint (the
//!   server's recovery step; it can only accept one of the module's own
//!   older records).
//! - Translate Package is open to every role in Operational state too: the
//!   server re-seals every package after an MKS rollover, and translation
//!   can only re-seal a package that is already this deployment's, without
//!   changing it.
//! - Create Certificate Authority is the Security Officer's (a key that
//!   vouches for every meter, like the other key-management commands);
//!   Issue PSD Certificate is the Certificate Authority role's, logged on
//!   (seed 001's CA role), in Operational state. The CA key never leaves the
//!   module: it travels as a key token.
//! - Accept Checkpoint, the operator's step after a failed recovery, is the
//!   Security Officer's in Administrative state, like the other commands
//!   that change the module itself; it is always signed in the audit.
//!   The handlers check these authenticators; the table only says who may
//!   ask.
use crate::protocol::Request;
use crate::types::{ModuleState, Role};

/// Every command, without its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum CommandKind {
    CloseSession,
    GetStatus,
    StartInitialization,
    InitializeAccessControl,
    Logon,
    Logoff,
    QueryCurrentRole,
    QueryCurrentUser,
    ChangePassword,
    SetClock,
    BeginAdmin,
    EndAdmin,
    CreateUser,
    DeleteUser,
    ModifyUser,
    ViewUsers,
    GenerateMks,
    GenerateTransportKey,
    ExportTransportKey,
    CreateMksShares,
    ExportShare,
    AbortExport,
    StartImporting,
    ImportShare,
    CombineShares,
    ActivateMks,
    DeleteDormantMks,
    TranslateToken,
    CreateKeyToken,
    CheckKeyToken,
    InitializeCryptoCard,
    CreateAuditKey,
    ExportAuditKey,
    CreateAuditEntry,
    RunSelfTests,
    Zeroize,
    Reset,
    InitializePsd,
    RetrievePsdPublicKey,
    AuthorizePsd,
    ConfigurePsd,
    AuthorizeCustomer,
    DownloadPostageValue,
    CreateIndicium,
    CreateCorrectionIndicium,
    CreateIndicia,
    CreateRefundIndicium,
    BeginPasswordReset,
    CompletePasswordReset,
    RetrievePsdStatus,
    PsdUserCommand,
    PsdUserLogon,
    AutoRecoverCheckpoint,
    RetrieveCheckpoint,
    AcceptCheckpoint,
    TranslatePackage,
    CreateCertificateAuthority,
    IssuePsdCertificate,
}

/// How a command is audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    /// Not audited (status, queries, session key use).
    None,
    /// Audited; signed only when the periodic or boot rule says so.
    Entry,
    /// Audited and always signed (commands that affect the module itself).
    Signed,
}

/// Per-command attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The command.
    pub kind: CommandKind,
    /// Must arrive in an encrypted frame (it carries a secret).
    pub encrypted: bool,
    /// How it is audited.
    pub audit: Audit,
}

use ModuleState as S;
use Role as R;

const OPERATING: &[S] = &[
    S::Initializing,
    S::Operational,
    S::Administrative,
    S::ExportingShares,
    S::ImportingShares,
];
const OPERATING_AND_ERROR: &[S] = &[
    S::Initializing,
    S::Operational,
    S::Administrative,
    S::ExportingShares,
    S::ImportingShares,
    S::Error,
];
const NOT_ERROR: &[S] = &[
    S::Uninitialized,
    S::Initializing,
    S::Operational,
    S::Administrative,
    S::ExportingShares,
    S::ImportingShares,
];
const LOGGED_ON: &[R] = &[
    R::SecurityOfficer,
    R::KeyCustodian,
    R::Administrator,
    R::Auditor,
    R::Provider,
    R::CertificateAuthority,
    R::Customer,
    R::CustomerAdministrator,
];
const ANYONE: &[R] = &Role::ALL;

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The command.
    pub kind: CommandKind,
    /// States in which it may run.
    pub states: &'static [ModuleState],
    /// Roles that may run it.
    pub roles: &'static [Role],
}

const fn rule(kind: CommandKind, states: &'static [ModuleState], roles: &'static [Role]) -> Rule {
    Rule {
        kind,
        states,
        roles,
    }
}

use CommandKind as C;

/// The table.
pub const RULES: &[Rule] = &[
    rule(C::CloseSession, &ModuleState::ALL, ANYONE),
    rule(C::GetStatus, &ModuleState::ALL, ANYONE),
    rule(C::StartInitialization, &[S::Uninitialized], &[R::NoRole]),
    rule(C::InitializeAccessControl, &[S::Initializing], &[R::NoRole]),
    rule(C::Logon, OPERATING, &[R::NoRole]),
    rule(C::Logoff, OPERATING_AND_ERROR, LOGGED_ON),
    rule(C::QueryCurrentRole, OPERATING_AND_ERROR, ANYONE),
    rule(C::QueryCurrentUser, OPERATING_AND_ERROR, ANYONE),
    rule(
        C::ChangePassword,
        &[S::Operational],
        &[
            R::Administrator,
            R::Auditor,
            R::KeyCustodian,
            R::SecurityOfficer,
        ],
    ),
    rule(C::SetClock, &[S::Administrative], &[R::Administrator]),
    rule(C::BeginAdmin, &[S::Operational], &[R::SecurityOfficer]),
    rule(C::EndAdmin, &[S::Administrative], &[R::SecurityOfficer]),
    rule(C::CreateUser, &[S::Administrative], &[R::Administrator]),
    rule(C::DeleteUser, &[S::Administrative], &[R::Administrator]),
    rule(C::ModifyUser, &[S::Administrative], &[R::Administrator]),
    rule(
        C::ViewUsers,
        &[S::Administrative],
        &[R::Administrator, R::Auditor, R::SecurityOfficer],
    ),
    rule(
        C::GenerateMks,
        &[S::Initializing, S::Operational],
        &[R::SecurityOfficer],
    ),
    rule(
        C::GenerateTransportKey,
        &[S::Initializing],
        &[R::SecurityOfficer],
    ),
    rule(
        C::ExportTransportKey,
        &[S::Operational, S::ImportingShares],
        &[R::KeyCustodian, R::SecurityOfficer],
    ),
    rule(C::CreateMksShares, &[S::Operational], &[R::SecurityOfficer]),
    rule(C::ExportShare, &[S::ExportingShares], &[R::KeyCustodian]),
    rule(C::AbortExport, &[S::ExportingShares], &[R::SecurityOfficer]),
    rule(C::StartImporting, &[S::Operational], &[R::SecurityOfficer]),
    rule(C::ImportShare, &[S::ImportingShares], &[R::KeyCustodian]),
    rule(
        C::CombineShares,
        &[S::ImportingShares],
        &[R::SecurityOfficer],
    ),
    rule(C::ActivateMks, &[S::Operational], &[R::SecurityOfficer]),
    rule(
        C::DeleteDormantMks,
        &[S::Operational],
        &[R::SecurityOfficer],
    ),
    rule(C::TranslateToken, &[S::Operational], &[R::SecurityOfficer]),
    rule(C::CreateKeyToken, &[S::Operational], &[R::SecurityOfficer]),
    rule(C::CheckKeyToken, &[S::Operational], &[R::SecurityOfficer]),
    rule(
        C::InitializeCryptoCard,
        &[S::Operational],
        &[R::SecurityOfficer],
    ),
    rule(C::CreateAuditKey, &[S::Operational], &[R::SecurityOfficer]),
    rule(C::ExportAuditKey, &[S::Operational], &[R::Auditor]),
    rule(C::CreateAuditEntry, OPERATING_AND_ERROR, ANYONE),
    rule(C::RunSelfTests, NOT_ERROR, ANYONE),
    rule(C::Zeroize, OPERATING_AND_ERROR, &[R::SecurityOfficer]),
    rule(C::Reset, OPERATING_AND_ERROR, &[R::SecurityOfficer]),
    rule(C::Reset, &[S::Error], ANYONE),
    rule(C::Reset, &[S::Initializing], &[R::NoRole]),
    rule(C::InitializePsd, &[S::Operational], ANYONE),
    rule(C::RetrievePsdPublicKey, &[S::Operational], ANYONE),
    rule(C::AuthorizePsd, &[S::Operational], ANYONE),
    rule(C::ConfigurePsd, &[S::Operational], ANYONE),
    rule(C::AuthorizeCustomer, &[S::Operational], ANYONE),
    rule(C::DownloadPostageValue, &[S::Operational], ANYONE),
    rule(C::CreateIndicium, &[S::Operational], ANYONE),
    rule(C::CreateCorrectionIndicium, &[S::Operational], ANYONE),
    rule(C::CreateIndicia, &[S::Operational], ANYONE),
    rule(C::CreateRefundIndicium, &[S::Operational], ANYONE),
    rule(C::BeginPasswordReset, &[S::Operational], ANYONE),
    rule(C::CompletePasswordReset, &[S::Operational], ANYONE),
    rule(C::RetrievePsdStatus, &[S::Operational], ANYONE),
    rule(C::PsdUserCommand, &[S::Operational], ANYONE),
    rule(C::PsdUserLogon, &[S::Operational], ANYONE),
    rule(C::AutoRecoverCheckpoint, &[S::Operational], ANYONE),
    rule(C::RetrieveCheckpoint, &[S::Operational], ANYONE),
    rule(
        C::AcceptCheckpoint,
        &[S::Administrative],
        &[R::SecurityOfficer],
    ),
    rule(C::TranslatePackage, &[S::Operational], ANYONE),
    rule(
        C::CreateCertificateAuthority,
        &[S::Operational],
        &[R::SecurityOfficer],
    ),
    rule(
        C::IssuePsdCertificate,
        &[S::Operational],
        &[R::CertificateAuthority],
    ),
];

/// True when `kind` may run in `state` for `role`.
pub fn allowed(kind: CommandKind, state: ModuleState, role: Role) -> bool {
    RULES
        .iter()
        .any(|r| r.kind == kind && r.states.contains(&state) && r.roles.contains(&role))
}

impl CommandKind {
    /// Every command.
    pub const ALL: [CommandKind; 58] = [
        C::CloseSession,
        C::GetStatus,
        C::StartInitialization,
        C::InitializeAccessControl,
        C::Logon,
        C::Logoff,
        C::QueryCurrentRole,
        C::QueryCurrentUser,
        C::ChangePassword,
        C::SetClock,
        C::BeginAdmin,
        C::EndAdmin,
        C::CreateUser,
        C::DeleteUser,
        C::ModifyUser,
        C::ViewUsers,
        C::GenerateMks,
        C::GenerateTransportKey,
        C::ExportTransportKey,
        C::CreateMksShares,
        C::ExportShare,
        C::AbortExport,
        C::StartImporting,
        C::ImportShare,
        C::CombineShares,
        C::ActivateMks,
        C::DeleteDormantMks,
        C::TranslateToken,
        C::CreateKeyToken,
        C::CheckKeyToken,
        C::InitializeCryptoCard,
        C::CreateAuditKey,
        C::ExportAuditKey,
        C::CreateAuditEntry,
        C::RunSelfTests,
        C::Zeroize,
        C::Reset,
        C::InitializePsd,
        C::RetrievePsdPublicKey,
        C::AuthorizePsd,
        C::ConfigurePsd,
        C::AuthorizeCustomer,
        C::DownloadPostageValue,
        C::CreateIndicium,
        C::CreateCorrectionIndicium,
        C::CreateIndicia,
        C::CreateRefundIndicium,
        C::BeginPasswordReset,
        C::CompletePasswordReset,
        C::RetrievePsdStatus,
        C::PsdUserCommand,
        C::PsdUserLogon,
        C::AutoRecoverCheckpoint,
        C::RetrieveCheckpoint,
        C::AcceptCheckpoint,
        C::TranslatePackage,
        C::CreateCertificateAuthority,
        C::IssuePsdCertificate,
    ];

    /// The command's attributes.
    pub fn spec(self) -> Spec {
        let (encrypted, audit) = match self {
            C::CloseSession
            | C::GetStatus
            | C::QueryCurrentRole
            | C::QueryCurrentUser
            | C::RetrieveCheckpoint => (false, Audit::None),
            C::Logon | C::ChangePassword | C::CreateUser | C::InitializeAccessControl => {
                (true, Audit::Entry)
            }
            C::ModifyUser => (true, Audit::Entry),
            C::Logoff
            | C::DeleteUser
            | C::ViewUsers
            | C::ExportTransportKey
            | C::ExportAuditKey
            | C::CheckKeyToken
            | C::CreateKeyToken
            | C::TranslateToken
            | C::ImportShare
            | C::ExportShare
            | C::CreateAuditEntry
            | C::RunSelfTests
            | C::InitializePsd
            | C::RetrievePsdPublicKey
            | C::RetrievePsdStatus
            | C::AuthorizePsd
            | C::ConfigurePsd
            | C::AuthorizeCustomer
            | C::DownloadPostageValue
            | C::CreateIndicium
            | C::CreateCorrectionIndicium
            | C::CreateIndicia
            | C::CreateRefundIndicium
            | C::BeginPasswordReset
            | C::CompletePasswordReset
            | C::PsdUserCommand
            | C::PsdUserLogon
            | C::AutoRecoverCheckpoint
            | C::TranslatePackage
            | C::IssuePsdCertificate => (false, Audit::Entry),
            C::StartInitialization
            | C::SetClock
            | C::BeginAdmin
            | C::EndAdmin
            | C::GenerateMks
            | C::GenerateTransportKey
            | C::CreateMksShares
            | C::AbortExport
            | C::StartImporting
            | C::CombineShares
            | C::ActivateMks
            | C::DeleteDormantMks
            | C::InitializeCryptoCard
            | C::CreateAuditKey
            | C::Zeroize
            | C::Reset
            | C::AcceptCheckpoint
            | C::CreateCertificateAuthority => (false, Audit::Signed),
        };
        Spec {
            kind: self,
            encrypted,
            audit,
        }
    }

    /// The command's name in audit entries.
    pub fn name(self) -> &'static str {
        match self {
            C::CloseSession => "CloseSession",
            C::GetStatus => "GetStatus",
            C::StartInitialization => "StartInitialization",
            C::InitializeAccessControl => "InitializeAccessControl",
            C::Logon => "Logon",
            C::Logoff => "Logoff",
            C::QueryCurrentRole => "QueryCurrentRole",
            C::QueryCurrentUser => "QueryCurrentUser",
            C::ChangePassword => "ChangePassword",
            C::SetClock => "SetClock",
            C::BeginAdmin => "BeginAdmin",
            C::EndAdmin => "EndAdmin",
            C::CreateUser => "CreateUser",
            C::DeleteUser => "DeleteUser",
            C::ModifyUser => "ModifyUser",
            C::ViewUsers => "ViewUsers",
            C::GenerateMks => "GenerateMks",
            C::GenerateTransportKey => "GenerateTransportKey",
            C::ExportTransportKey => "ExportTransportKey",
            C::CreateMksShares => "CreateMksShares",
            C::ExportShare => "ExportShare",
            C::AbortExport => "AbortExport",
            C::StartImporting => "StartImporting",
            C::ImportShare => "ImportShare",
            C::CombineShares => "CombineShares",
            C::ActivateMks => "ActivateMks",
            C::DeleteDormantMks => "DeleteDormantMks",
            C::TranslateToken => "TranslateToken",
            C::CreateKeyToken => "CreateKeyToken",
            C::CheckKeyToken => "CheckKeyToken",
            C::InitializeCryptoCard => "InitializeCryptoCard",
            C::CreateAuditKey => postvault_audit::ROTATE_KEY_COMMAND,
            C::ExportAuditKey => "ExportAuditKey",
            C::CreateAuditEntry => "CreateAuditEntry",
            C::RunSelfTests => "RunSelfTests",
            C::Zeroize => "Zeroize",
            C::Reset => "Reset",
            C::InitializePsd => "InitializePsd",
            C::RetrievePsdPublicKey => "RetrievePsdPublicKey",
            C::AuthorizePsd => "AuthorizePsd",
            C::ConfigurePsd => "ConfigurePsd",
            C::AuthorizeCustomer => "AuthorizeCustomer",
            C::DownloadPostageValue => "DownloadPostageValue",
            C::CreateIndicium => "CreateIndicium",
            C::CreateCorrectionIndicium => "CreateCorrectionIndicium",
            C::CreateIndicia => "CreateIndicia",
            C::CreateRefundIndicium => "CreateRefundIndicium",
            C::BeginPasswordReset => "BeginPasswordReset",
            C::CompletePasswordReset => "CompletePasswordReset",
            C::RetrievePsdStatus => "RetrievePsdStatus",
            C::PsdUserCommand => "PsdUserCommand",
            C::PsdUserLogon => "PsdUserLogon",
            C::AutoRecoverCheckpoint => "AutoRecoverCheckpoint",
            C::RetrieveCheckpoint => "RetrieveCheckpoint",
            C::AcceptCheckpoint => "AcceptCheckpoint",
            C::TranslatePackage => "TranslatePackage",
            C::CreateCertificateAuthority => "CreateCertificateAuthority",
            C::IssuePsdCertificate => "IssuePsdCertificate",
        }
    }
}

impl Request {
    /// The command this request carries.
    pub fn kind(&self) -> CommandKind {
        match self {
            Request::CloseSession => C::CloseSession,
            Request::GetStatus => C::GetStatus,
            Request::StartInitialization { .. } => C::StartInitialization,
            Request::InitializeAccessControl { .. } => C::InitializeAccessControl,
            Request::Logon { .. } => C::Logon,
            Request::Logoff => C::Logoff,
            Request::QueryCurrentRole => C::QueryCurrentRole,
            Request::QueryCurrentUser => C::QueryCurrentUser,
            Request::ChangePassword { .. } => C::ChangePassword,
            Request::SetClock { .. } => C::SetClock,
            Request::BeginAdmin => C::BeginAdmin,
            Request::EndAdmin => C::EndAdmin,
            Request::CreateUser { .. } => C::CreateUser,
            Request::DeleteUser { .. } => C::DeleteUser,
            Request::ModifyUser { .. } => C::ModifyUser,
            Request::ViewUsers => C::ViewUsers,
            Request::GenerateMks => C::GenerateMks,
            Request::GenerateTransportKey => C::GenerateTransportKey,
            Request::ExportTransportKey => C::ExportTransportKey,
            Request::CreateMksShares { .. } => C::CreateMksShares,
            Request::ExportShare { .. } => C::ExportShare,
            Request::AbortExport => C::AbortExport,
            Request::StartImporting => C::StartImporting,
            Request::ImportShare { .. } => C::ImportShare,
            Request::CombineShares => C::CombineShares,
            Request::ActivateMks => C::ActivateMks,
            Request::DeleteDormantMks => C::DeleteDormantMks,
            Request::TranslateToken { .. } => C::TranslateToken,
            Request::CreateKeyToken { .. } => C::CreateKeyToken,
            Request::CheckKeyToken { .. } => C::CheckKeyToken,
            Request::InitializeCryptoCard { .. } => C::InitializeCryptoCard,
            Request::CreateAuditKey => C::CreateAuditKey,
            Request::ExportAuditKey => C::ExportAuditKey,
            Request::CreateAuditEntry { .. } => C::CreateAuditEntry,
            Request::RunSelfTests => C::RunSelfTests,
            Request::Zeroize => C::Zeroize,
            Request::Reset => C::Reset,
            Request::InitializePsd { .. } => C::InitializePsd,
            Request::RetrievePsdPublicKey { .. } => C::RetrievePsdPublicKey,
            Request::AuthorizePsd { .. } => C::AuthorizePsd,
            Request::ConfigurePsd { .. } => C::ConfigurePsd,
            Request::AuthorizeCustomer { .. } => C::AuthorizeCustomer,
            Request::DownloadPostageValue { .. } => C::DownloadPostageValue,
            Request::CreateIndicium { .. } => C::CreateIndicium,
            Request::CreateCorrectionIndicium { .. } => C::CreateCorrectionIndicium,
            Request::CreateIndicia { .. } => C::CreateIndicia,
            Request::CreateRefundIndicium { .. } => C::CreateRefundIndicium,
            Request::BeginPasswordReset { .. } => C::BeginPasswordReset,
            Request::CompletePasswordReset { .. } => C::CompletePasswordReset,
            Request::RetrievePsdStatus { .. } => C::RetrievePsdStatus,
            Request::PsdUserCommand { .. } => C::PsdUserCommand,
            Request::PsdUserLogon { .. } => C::PsdUserLogon,
            Request::AutoRecoverCheckpoint { .. } => C::AutoRecoverCheckpoint,
            Request::RetrieveCheckpoint => C::RetrieveCheckpoint,
            Request::AcceptCheckpoint { .. } => C::AcceptCheckpoint,
            Request::TranslatePackage { .. } => C::TranslatePackage,
            Request::CreateCertificateAuthority { .. } => C::CreateCertificateAuthority,
            Request::IssuePsdCertificate { .. } => C::IssuePsdCertificate,
        }
    }
}
