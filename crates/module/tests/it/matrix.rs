//! The access matrix: every role x command x state, end to end.
//!
//! [`EXPECTED`] is the table written independently of `table::RULES`, from
//! the command lists of seed 002 (the states of FIG. 6 and the text after
//! it), Table 2 of seed 001 (roles x services) and the choices documented at
//! the top of `src/table.rs`; its doc comment gives the source of every row
//! and names the rows the seeds leave open.
//!
//! [`every_role_command_state_end_to_end`] brings a real module into each
//! state with a user of each role logged on (nobody for `NoRole`), sends
//! every command with harmless arguments on a fresh copy of that module and
//! checks the gate: allowed means the reply is not `Denied`/`InError` (it may
//! be another error: the gate passed and validation refused the input);
//! denied means exactly `Denied` for this command, state and role (`InError`
//! in Error state), audited whenever the module has an audit chain and is not
//! in Error. Combinations no module can be in are checked against the table
//! directly ([`UNREACHABLE`]), and the test counts that every one of the
//! 7 x 9 x 58 triples was checked one way or the other.
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use postvault_crypto::{Faults, TestName};
use postvault_module::checkpoint::{Checkpoint, ModuleTotals, SignedCheckpoint, TransactionType};
use postvault_module::error::ModuleError;
use postvault_module::keys::{KeyToken, KeyType, KeyUsage};
use postvault_module::module::AuditFault;
use postvault_module::nvm::NVM_FILE;
use postvault_module::protocol::{AccountSettings, CryptoCardKeys, EncryptedShare, MksSlot};
use postvault_module::psd::{
    DeviceId, HpkeSealed, IndiciumItem, IndiciumRequest, ProviderBody, ProviderCommand,
    ProviderMessage, SealedPackage, UserOperation, UserRequest,
};
use postvault_module::table::{self, Audit, CommandKind};
use postvault_module::{Module, ModuleClient, ModuleState, Password, Request, Role};

use crate::common::*;

/// Who may run each command in each state.
///
/// Columns: Uninitialized | Initializing | Operational | Administrative |
/// ExportingShares | ImportingShares | Error. Cells: `*` every role including
/// NoRole; `user` every role except NoRole (someone is logged on); `-`
/// nobody; otherwise role codes SO KC AD AU PR CA CU CAD NR (seed 001).
///
/// Sources, row by row:
/// - CloseSession, GetStatus: "all session management commands" and Get
///   Status are in every state's list; in Uninitialized and Error by the
///   choice documented in table.rs (session commands work in every state).
///   Request Status is every role's service (Table 2).
/// - StartInitialization: only in Uninitialized, no authentication (seed 002).
/// - InitializeAccessControl: Initializing; nobody can be logged on before
///   the database exists, so NoRole.
/// - Logon / Logoff / queries / audit entry creation: "available in all
///   states except uninitialized and error" (seed 002, FIG. 6 text); Logon is
///   No-Role's service, Logoff anyone logged on (table.rs choice). The Error
///   text allows "Get Status, Access Control Queries" and "audit entry
///   creation and session commands", so the queries and audit entry creation
///   stay open in Error; Logon does not. Logoff does (table.rs choice: a user
///   logged on when the module fell into Error must be able to leave and
///   close the session).
/// - ChangePassword: Operational list; AD AU KC SO (Table 2).
/// - SetClock: Administrative, AD (table.rs choice; Table 2 gives AD).
/// - BeginAdmin / EndAdmin: the Security Officer, Operational / Administrative.
/// - Create/Delete/ModifyUser: Administrative, AD ("require Administrator").
/// - ViewUsers: Administrative (table.rs choice), AD AU SO (Table 2).
/// - GenerateMks: Initializing and Operational lists, SO (Key Administration).
/// - GenerateTransportKey: Initializing list, SO ("The Security Officer ...
///   issues a command to generate a transport key pair").
/// - ExportTransportKey: Operational and Importing Shares lists; KC (Key
///   Exchange) and SO (Key Administration).
/// - CreateMksShares, StartImporting, CombineShares: SO (seed 002 text).
/// - ExportShare, ImportShare: KC, in Exporting / Importing Shares.
/// - AbortExport: Exporting Shares; the seed names no role: SO, who started
///   the export (seed room).
/// - ActivateMks, DeleteDormantMks, key-token use (Translate/Create/Check),
///   InitializeCryptoCard, CreateAuditKey: Operational list, SO (Key
///   Administration; "the security officer sends an initialize crypto-card
///   command"; Create Audit Key is SO in Table 2). Which role uses the MKS
///   for key tokens is seed room.
/// - ExportAuditKey: Operational list only ("Export of the Audit Verification
///   Key"; the Administrative list does not have it), Auditor only (seed 002:
///   "can only be executed by the Auditor role"; Table 2).
/// - RunSelfTests and Zeroize are not in the seeds' command lists at all
///   (extensions for FIPS 140 on-demand self-tests and zeroization): the
///   rows follow the implementation's choice (self-tests for anyone in every
///   state but Error; Zeroize for the SO in every initialized state and in
///   Error) and are listed in the test report as undocumented choices.
/// - Reset: SO in every initialized state, anyone in Error (table.rs choice;
///   seed 002: a fatal error is cleared by "a Reset command"), and No-Role in
///   Initializing (a start that failed before any account exists must be
///   resettable; an Initializing module holds no master key yet).
/// - InitializePsd, RetrievePsdPublicKey: Operational, the module's working
///   state; every role, No-Role included (seed 002: the commands that
///   prepare a PSD need no authentication; seed 001: retrieving a public key
///   is a No-Role service; table.rs records the choice). The PSD state each
///   PSD command needs is the second table (`psd::PSD_RULES`, tested in
///   `psd.rs`).
/// - AuthorizePsd, ConfigurePsd, AuthorizeCustomer, DownloadPostageValue:
///   Operational, every role: seed 002 authenticates them per command (the
///   CA by the certificate, the provider by its signature, Configure PSD
///   not at all), not by logon (table.rs records the choice); the handlers
///   check the authenticators (tested in `psd_lifecycle.rs`).
/// - CreateCorrectionIndicium, CreateIndicia, CreateRefundIndicium,
///   BeginPasswordReset, CompletePasswordReset, RetrievePsdStatus,
///   PsdUserCommand, PsdUserLogon, AutoRecoverCheckpoint, RetrieveCheckpoint:
///   Operational, every role, like the PSD commands above: each is
///   authenticated per command (user MAC or password, provider signature,
///   the new key's MAC) or reads and changes nothing (status, checkpoint), or
///   can only accept the module's own older record (auto-recover).
/// - TranslatePackage: Operational, every role (table.rs choice): the
///   server re-seals packages after a rollover; it can only re-seal a
///   package of this deployment, unchanged.
/// - CreateCertificateAuthority: Operational, Security Officer (a key that
///   vouches for every meter, like the other key-management commands;
///   table.rs choice). IssuePsdCertificate: Operational, the Certificate
///   Authority role (seed 001's CA role; MeterGen logs on as it).
/// - AcceptCheckpoint: the operator's disaster-recovery step (seed 002:
///   "operator intervention"); it changes the module itself, so like the
///   other such commands it is the Security Officer's, in Administrative.
/// - CreateIndicium: Operational, every role: the customer is authenticated
///   per command by the request's MAC under their key, held in the package
///   (seed 002, step 5), not by logon (tested in `psd_indicium.rs`).
pub const EXPECTED: &str = "
# command               | Uninit | Initializing | Operational | Administrative | Exporting | Importing | Error
CloseSession            | *      | *            | *           | *              | *         | *         | *
GetStatus               | *      | *            | *           | *              | *         | *         | *
StartInitialization     | NR     | -            | -           | -              | -         | -         | -
InitializeAccessControl | -      | NR           | -           | -              | -         | -         | -
Logon                   | -      | NR           | NR          | NR             | NR        | NR        | -
Logoff                  | -      | user         | user        | user           | user      | user      | user
QueryCurrentRole        | -      | *            | *           | *              | *         | *         | *
QueryCurrentUser        | -      | *            | *           | *              | *         | *         | *
ChangePassword          | -      | -            | AD AU KC SO | -              | -         | -         | -
SetClock                | -      | -            | -           | AD             | -         | -         | -
BeginAdmin              | -      | -            | SO          | -              | -         | -         | -
EndAdmin                | -      | -            | -           | SO             | -         | -         | -
CreateUser              | -      | -            | -           | AD             | -         | -         | -
DeleteUser              | -      | -            | -           | AD             | -         | -         | -
ModifyUser              | -      | -            | -           | AD             | -         | -         | -
ViewUsers               | -      | -            | -           | AD AU SO       | -         | -         | -
GenerateMks             | -      | SO           | SO          | -              | -         | -         | -
GenerateTransportKey    | -      | SO           | -           | -              | -         | -         | -
ExportTransportKey      | -      | -            | KC SO       | -              | -         | KC SO     | -
CreateMksShares         | -      | -            | SO          | -              | -         | -         | -
ExportShare             | -      | -            | -           | -              | KC        | -         | -
AbortExport             | -      | -            | -           | -              | SO        | -         | -
StartImporting          | -      | -            | SO          | -              | -         | -         | -
ImportShare             | -      | -            | -           | -              | -         | KC        | -
CombineShares           | -      | -            | -           | -              | -         | SO        | -
ActivateMks             | -      | -            | SO          | -              | -         | -         | -
DeleteDormantMks        | -      | -            | SO          | -              | -         | -         | -
TranslateToken          | -      | -            | SO          | -              | -         | -         | -
CreateKeyToken          | -      | -            | SO          | -              | -         | -         | -
CheckKeyToken           | -      | -            | SO          | -              | -         | -         | -
InitializeCryptoCard    | -      | -            | SO          | -              | -         | -         | -
CreateAuditKey          | -      | -            | SO          | -              | -         | -         | -
ExportAuditKey          | -      | -            | AU          | -              | -         | -         | -
CreateAuditEntry        | -      | *            | *           | *              | *         | *         | *
RunSelfTests            | *      | *            | *           | *              | *         | *         | -
Zeroize                 | -      | SO           | SO          | SO             | SO        | SO        | SO
Reset                   | -      | SO NR        | SO          | SO             | SO        | SO        | *
InitializePsd           | -      | -            | *           | -              | -         | -         | -
RetrievePsdPublicKey    | -      | -            | *           | -              | -         | -         | -
AuthorizePsd            | -      | -            | *           | -              | -         | -         | -
ConfigurePsd            | -      | -            | *           | -              | -         | -         | -
AuthorizeCustomer       | -      | -            | *           | -              | -         | -         | -
DownloadPostageValue    | -      | -            | *           | -              | -         | -         | -
CreateIndicium          | -      | -            | *           | -              | -         | -         | -
CreateCorrectionIndicium | -      | -            | *           | -              | -         | -         | -
CreateIndicia           | -      | -            | *           | -              | -         | -         | -
CreateRefundIndicium    | -      | -            | *           | -              | -         | -         | -
BeginPasswordReset      | -      | -            | *           | -              | -         | -         | -
CompletePasswordReset   | -      | -            | *           | -              | -         | -         | -
RetrievePsdStatus       | -      | -            | *           | -              | -         | -         | -
PsdUserCommand          | -      | -            | *           | -              | -         | -         | -
PsdUserLogon            | -      | -            | *           | -              | -         | -         | -
AutoRecoverCheckpoint   | -      | -            | *           | -              | -         | -         | -
RetrieveCheckpoint      | -      | -            | *           | -              | -         | -         | -
TranslatePackage        | -      | -            | *           | -              | -         | -         | -
CreateCertificateAuthority | -   | -            | SO          | -              | -         | -         | -
IssuePsdCertificate     | -      | -            | CA          | -              | -         | -         | -
AcceptCheckpoint        | -      | -            | -           | SO             | -         | -         | -
";

/// Combinations no module can be in, with the reason. They are checked
/// against the table directly (`table::allowed` against [`EXPECTED`]).
pub const UNREACHABLE: &[(ModuleState, &[Role], &str)] = &[
    (
        ModuleState::Uninitialized,
        &[
            Role::SecurityOfficer,
            Role::KeyCustodian,
            Role::Administrator,
            Role::Auditor,
            Role::Provider,
            Role::CertificateAuthority,
            Role::Customer,
            Role::CustomerAdministrator,
        ],
        "an Uninitialized module has no accounts (fresh, or Reset erased them and logged every session off)",
    ),
    (
        ModuleState::Initializing,
        &[
            Role::Auditor,
            Role::Provider,
            Role::CertificateAuthority,
            Role::Customer,
            Role::CustomerAdministrator,
        ],
        "Initialize Access Control creates only AD, SO and KC accounts; other roles are created in Administrative state, and Initializing is entered only from Uninitialized, where nobody is logged on",
    ),
];

const TOTAL: usize = 7 * 9 * 58;

fn role_code(code: &str) -> Role {
    match code {
        "SO" => Role::SecurityOfficer,
        "KC" => Role::KeyCustodian,
        "AD" => Role::Administrator,
        "AU" => Role::Auditor,
        "PR" => Role::Provider,
        "CA" => Role::CertificateAuthority,
        "CU" => Role::Customer,
        "CAD" => Role::CustomerAdministrator,
        "NR" => Role::NoRole,
        other => panic!("unknown role code {other:?} in EXPECTED"),
    }
}

/// The expected table as (command, state) -> allowed roles.
pub fn expected() -> BTreeMap<(String, usize), Vec<Role>> {
    let mut out = BTreeMap::new();
    let mut seen = HashSet::new();
    for line in EXPECTED.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(
            cells.len(),
            8,
            "EXPECTED row {line:?} must have 7 state columns"
        );
        let kind = CommandKind::ALL
            .into_iter()
            .find(|k| format!("{k:?}") == cells[0])
            .unwrap_or_else(|| panic!("unknown command {:?} in EXPECTED", cells[0]));
        assert!(seen.insert(kind), "{kind:?} appears twice in EXPECTED");
        for (i, cell) in cells[1..].iter().enumerate() {
            let roles: Vec<Role> = match *cell {
                "*" => Role::ALL.to_vec(),
                "user" => Role::ALL
                    .into_iter()
                    .filter(|r| *r != Role::NoRole)
                    .collect(),
                "-" => Vec::new(),
                list => list.split_whitespace().map(role_code).collect(),
            };
            out.insert((cells[0].to_string(), i), roles);
        }
    }
    assert_eq!(seen.len(), 58, "EXPECTED must have a row for every command");
    out
}

fn state_index(s: ModuleState) -> usize {
    ModuleState::ALL.iter().position(|x| *x == s).unwrap()
}

fn expect(
    grid: &BTreeMap<(String, usize), Vec<Role>>,
    kind: CommandKind,
    state: ModuleState,
    role: Role,
) -> bool {
    grid[&(format!("{kind:?}"), state_index(state))].contains(&role)
}

#[test]
fn table_agrees_with_the_expected_grid_on_every_triple() {
    let grid = expected();
    assert_eq!(CommandKind::ALL.len(), 58);
    let mut differences = Vec::new();
    let mut checked = 0;
    for state in ModuleState::ALL {
        for role in Role::ALL {
            for kind in CommandKind::ALL {
                checked += 1;
                let want = expect(&grid, kind, state, role);
                let got = table::allowed(kind, state, role);
                if want != got {
                    differences.push(format!(
                        "{kind:?} in {state} for {role}: expected {}, table says {}",
                        if want { "allowed" } else { "denied" },
                        if got { "allowed" } else { "denied" }
                    ));
                }
            }
        }
    }
    assert_eq!(checked, TOTAL);
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

#[test]
fn roles_outside_ad_so_kc_cannot_exist_in_initializing() {
    // The Initializing row of UNREACHABLE rests on this.
    let f = Fixture::new();
    let m = f.open();
    let mut c = client(&m);
    ok(&mut c, Request::StartInitialization { time: T0 });
    for role in [
        Role::Auditor,
        Role::Provider,
        Role::CertificateAuthority,
        Role::Customer,
        Role::CustomerAdministrator,
    ] {
        let users = vec![
            new_user("admin", Role::Administrator),
            new_user("so", Role::SecurityOfficer),
            new_user("kc1", Role::KeyCustodian),
            new_user("kc2", Role::KeyCustodian),
            new_user("other", role),
        ];
        match c.run(&Request::InitializeAccessControl { users }) {
            Err(postvault_module::ClientError::Module(ModuleError::Invalid(_))) => {}
            other => panic!("a {role} account in Initialize Access Control: {other:?}"),
        }
    }
    // Create User, the only other way to make an account, is denied here.
    initialize_users_only(&mut c);
    as_user(&mut c, "admin", |c| {
        match c.run(&Request::CreateUser {
            user: new_user("auditor", Role::Auditor),
        }) {
            Err(postvault_module::ClientError::Module(ModuleError::Denied { .. })) => {}
            other => panic!("Create User in Initializing: {other:?}"),
        }
    });
}

/// Initialize Access Control with the fixture accounts (Start Initialization done).
fn initialize_users_only(c: &mut ModuleClient) {
    let users = vec![
        new_user("admin", Role::Administrator),
        new_user("so", Role::SecurityOfficer),
        new_user("kc1", Role::KeyCustodian),
        new_user("kc2", Role::KeyCustodian),
    ];
    ok(c, Request::InitializeAccessControl { users });
}

fn bogus_token() -> KeyToken {
    KeyToken {
        version: 1,
        key_type: KeyType::Aes256,
        usage: KeyUsage::General,
        expires: None,
        exportable: false,
        mks_generation: 1,
        mks_id: [7; 16],
        identity: "matrix".into(),
        sealed: vec![0; 60],
    }
}

fn bogus_package() -> SealedPackage {
    SealedPackage {
        version: 1,
        device_id: "0042-0001-00000017".into(),
        mks_id: [7; 16],
        mks_generation: 1,
        sealed: vec![0; 60],
    }
}

fn bogus_checkpoint() -> SignedCheckpoint {
    SignedCheckpoint {
        checkpoint: Checkpoint {
            version: 1,
            module_id: [0; 16],
            seq: 1,
            device_id: "0042-0001-00000017".into(),
            transaction: TransactionType::Download,
            amount_mills: 1,
            ascending_mills: 0,
            descending_mills: 1,
            time: 1,
            totals: ModuleTotals::default(),
            package_digest: [0; 32],
        },
        mac: [0; 32],
    }
}

fn bogus_indicium_request() -> IndiciumRequest {
    IndiciumRequest {
        device_id: "0042-0001-00000017".into(),
        user_id: "nobody".into(),
        challenge: [0; 16],
        postage_mills: 1,
        date: 20_261_123,
        origin_zip: 100_010_001,
        destination_zip: 0,
        category: *b"FC  ",
        mac: [0; 32],
    }
}

fn bogus_message(command: ProviderCommand) -> ProviderMessage {
    ProviderMessage {
        body: ProviderBody {
            device_id: "0042-0001-00000017".into(),
            sequence: 1,
            command,
        },
        signature: [0; 64],
    }
}

fn bogus_share() -> EncryptedShare {
    EncryptedShare {
        version: 1,
        mks_id: "00".repeat(16),
        generation: 1,
        index: 1,
        count: 2,
        threshold: 2,
        exportable: false,
        transport_key_hash: "00".repeat(32),
        source_module: "00".repeat(16),
        enc: vec![0; 32],
        ciphertext: vec![0; 48],
    }
}

/// A request of `kind` with harmless arguments: where validation can refuse
/// it, it does (so an allowed command shows the gate passed without changing
/// much); commands without arguments run for real (every command runs on a
/// fresh copy of the module).
pub fn harmless(kind: CommandKind) -> Request {
    let req = match kind {
        CommandKind::CloseSession => Request::CloseSession,
        CommandKind::GetStatus => Request::GetStatus,
        CommandKind::StartInitialization => Request::StartInitialization { time: T0 },
        CommandKind::InitializeAccessControl => Request::InitializeAccessControl { users: vec![] },
        CommandKind::Logon => Request::Logon {
            user_id: "nobody".into(),
            password: Password::new("not-the-password"),
        },
        CommandKind::Logoff => Request::Logoff,
        CommandKind::QueryCurrentRole => Request::QueryCurrentRole,
        CommandKind::QueryCurrentUser => Request::QueryCurrentUser,
        CommandKind::ChangePassword => Request::ChangePassword {
            old: Password::new("not-the-password"),
            new: Password::new("a-new-password-for-the-matrix"),
        },
        CommandKind::SetClock => Request::SetClock { time: 0 },
        CommandKind::BeginAdmin => Request::BeginAdmin,
        CommandKind::EndAdmin => Request::EndAdmin,
        CommandKind::CreateUser => Request::CreateUser {
            user: new_user("matrix-user", Role::Customer),
        },
        CommandKind::DeleteUser => Request::DeleteUser {
            user_id: "nobody".into(),
        },
        CommandKind::ModifyUser => Request::ModifyUser {
            user_id: "nobody".into(),
            settings: AccountSettings::default(),
            new_password: None,
            unlock: false,
        },
        CommandKind::ViewUsers => Request::ViewUsers,
        CommandKind::GenerateMks => Request::GenerateMks,
        CommandKind::GenerateTransportKey => Request::GenerateTransportKey,
        CommandKind::ExportTransportKey => Request::ExportTransportKey,
        CommandKind::CreateMksShares => Request::CreateMksShares {
            count: 0,
            threshold: 0,
            slot: MksSlot::Active,
        },
        CommandKind::ExportShare => Request::ExportShare {
            transport_public_key: vec![1, 2, 3],
            exportable: false,
        },
        CommandKind::AbortExport => Request::AbortExport,
        CommandKind::StartImporting => Request::StartImporting,
        CommandKind::ImportShare => Request::ImportShare {
            share: bogus_share(),
        },
        CommandKind::CombineShares => Request::CombineShares,
        CommandKind::ActivateMks => Request::ActivateMks,
        CommandKind::DeleteDormantMks => Request::DeleteDormantMks,
        CommandKind::TranslateToken => Request::TranslateToken {
            token: bogus_token(),
        },
        CommandKind::CreateKeyToken => Request::CreateKeyToken {
            key_type: KeyType::Aes256,
            usage: KeyUsage::General,
            identity: String::new(),
            exportable: false,
            expires: None,
        },
        CommandKind::CheckKeyToken => Request::CheckKeyToken {
            token: bogus_token(),
        },
        CommandKind::InitializeCryptoCard => Request::InitializeCryptoCard {
            keys: CryptoCardKeys::Generate,
            ca_certificate: Some(vec![1, 2, 3]),
            provider_public_key: None,
        },
        CommandKind::CreateAuditKey => Request::CreateAuditKey,
        CommandKind::ExportAuditKey => Request::ExportAuditKey,
        CommandKind::CreateAuditEntry => Request::CreateAuditEntry {
            note: "matrix".into(),
            sign: false,
        },
        CommandKind::RunSelfTests => Request::RunSelfTests,
        CommandKind::Zeroize => Request::Zeroize,
        CommandKind::Reset => Request::Reset,
        CommandKind::InitializePsd => Request::InitializePsd {
            device: DeviceId {
                vendor: 42,
                model: 1,
                serial: 0,
            },
        },
        CommandKind::RetrievePsdPublicKey => Request::RetrievePsdPublicKey {
            checkpoint: None,
            package: bogus_package(),
        },
        CommandKind::AuthorizePsd => Request::AuthorizePsd {
            checkpoint: None,
            package: bogus_package(),
            certificate_der: vec![1, 2, 3],
        },
        CommandKind::ConfigurePsd => Request::ConfigurePsd {
            checkpoint: None,
            package: bogus_package(),
            secrets: HpkeSealed {
                enc: vec![0; 32],
                ciphertext: vec![0; 48],
            },
        },
        CommandKind::AuthorizeCustomer => Request::AuthorizeCustomer {
            checkpoint: None,
            package: bogus_package(),
            message: bogus_message(ProviderCommand::AuthorizeCustomer {
                licensing_zip: 100_010_001,
                max_descending_mills: 1,
            }),
        },
        CommandKind::DownloadPostageValue => Request::DownloadPostageValue {
            checkpoint: None,
            package: bogus_package(),
            message: bogus_message(ProviderCommand::Download {
                amount_mills: 1,
                control_total_mills: 0,
            }),
        },
        CommandKind::CreateIndicium => Request::CreateIndicium {
            checkpoint: None,
            package: bogus_package(),
            request: bogus_indicium_request(),
        },
        CommandKind::CreateCorrectionIndicium => Request::CreateCorrectionIndicium {
            checkpoint: None,
            package: bogus_package(),
            request: bogus_indicium_request(),
        },
        CommandKind::CreateIndicia => Request::CreateIndicia {
            checkpoint: None,
            items: vec![IndiciumItem {
                package: bogus_package(),
                request: bogus_indicium_request(),
            }],
        },
        CommandKind::CreateRefundIndicium => Request::CreateRefundIndicium {
            checkpoint: None,
            package: bogus_package(),
            message: bogus_message(ProviderCommand::Refund { date: 20_261_123 }),
        },
        CommandKind::BeginPasswordReset => Request::BeginPasswordReset {
            checkpoint: None,
            package: bogus_package(),
            message: bogus_message(ProviderCommand::BeginPasswordReset {
                user_id: "nobody".into(),
            }),
        },
        CommandKind::CompletePasswordReset => Request::CompletePasswordReset {
            checkpoint: None,
            package: bogus_package(),
            secrets: HpkeSealed {
                enc: vec![0; 32],
                ciphertext: vec![0; 48],
            },
        },
        CommandKind::RetrievePsdStatus => Request::RetrievePsdStatus {
            checkpoint: None,
            package: bogus_package(),
        },
        CommandKind::PsdUserCommand => Request::PsdUserCommand {
            checkpoint: None,
            package: bogus_package(),
            request: UserRequest {
                device_id: "0042-0001-00000017".into(),
                user_id: "nobody".into(),
                challenge: [0; 16],
                operation: UserOperation::ListUsers,
                mac: [0; 32],
            },
        },
        CommandKind::PsdUserLogon => Request::PsdUserLogon {
            checkpoint: None,
            package: bogus_package(),
            logon: HpkeSealed {
                enc: vec![0; 32],
                ciphertext: vec![0; 48],
            },
        },
        CommandKind::AutoRecoverCheckpoint => Request::AutoRecoverCheckpoint {
            checkpoint: bogus_checkpoint(),
        },
        CommandKind::RetrieveCheckpoint => Request::RetrieveCheckpoint,
        CommandKind::TranslatePackage => Request::TranslatePackage {
            package: bogus_package(),
        },
        CommandKind::CreateCertificateAuthority => Request::CreateCertificateAuthority {
            common_name: String::new(),
            days: 0,
        },
        CommandKind::IssuePsdCertificate => Request::IssuePsdCertificate {
            ca_key: bogus_token(),
            ca_certificate_der: vec![1, 2, 3],
            package: bogus_package(),
            serial: 0,
            days: 0,
        },
        CommandKind::AcceptCheckpoint => Request::AcceptCheckpoint {
            checkpoint: Some(bogus_checkpoint()),
        },
    };
    assert_eq!(req.kind(), kind);
    req
}

/// Modules the states are reached from (built once; copied per command).
struct Templates {
    /// A master, Operational, with every role's account.
    master: Fixture,
    /// A clone holding the master's MKS, Operational, with a transport key
    /// and every role's account.
    clone: Fixture,
}

/// How a state is reached; some states are reached more than one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// A new module.
    Fresh,
    /// Start Initialization + Initialize Access Control.
    Initialized,
    /// The master, reopened.
    Operational,
    /// The master; the SO (another session) begins admin.
    Admin,
    /// The master; the SO (another session) creates 3-of-5 shares.
    Exporting,
    /// The clone; the SO (another session) starts importing a replacement MKS.
    ImportingReplacement,
    /// A new clone: initialized, then the SO generates the transport key.
    ImportingFirst,
    /// The master opened with failing audit signatures: R logs on (the
    /// logon's entry cannot be signed: non-fatal Error, session kept); for
    /// NoRole an audit entry with a forced signature does the same.
    ErrorAfterLogon,
    /// The master, zeroized by the SO in another session (fatal Error).
    ErrorZeroized,
    /// The master opened with a failing power-up self-test (non-fatal Error at boot).
    ErrorAtBoot,
    /// The master with its NVM file damaged: it does not unseal (Error at boot).
    ErrorUnreadableNvm,
}

impl Route {
    fn state(self) -> ModuleState {
        match self {
            Route::Fresh => ModuleState::Uninitialized,
            Route::Initialized => ModuleState::Initializing,
            Route::Operational => ModuleState::Operational,
            Route::Admin => ModuleState::Administrative,
            Route::Exporting => ModuleState::ExportingShares,
            Route::ImportingReplacement | Route::ImportingFirst => ModuleState::ImportingShares,
            Route::ErrorAfterLogon
            | Route::ErrorZeroized
            | Route::ErrorAtBoot
            | Route::ErrorUnreadableNvm => ModuleState::Error,
        }
    }

    /// The roles this route can have logged on.
    fn roles(self) -> Vec<Role> {
        match self {
            Route::Fresh
            | Route::ErrorZeroized
            | Route::ErrorAtBoot
            | Route::ErrorUnreadableNvm => vec![Role::NoRole],
            Route::Initialized | Route::ImportingFirst => vec![
                Role::SecurityOfficer,
                Role::KeyCustodian,
                Role::Administrator,
                Role::NoRole,
            ],
            _ => Role::ALL.to_vec(),
        }
    }
}

const ROUTES: [Route; 11] = [
    Route::Fresh,
    Route::Initialized,
    Route::Operational,
    Route::Admin,
    Route::Exporting,
    Route::ImportingReplacement,
    Route::ImportingFirst,
    Route::ErrorAfterLogon,
    Route::ErrorZeroized,
    Route::ErrorAtBoot,
    Route::ErrorUnreadableNvm,
];

struct Reached {
    _fixture: Fixture,
    module: Arc<Mutex<Module>>,
    client: ModuleClient,
}

/// Brings a new module into `route`'s state with `role` logged on to the returned client.
fn reach(t: &Templates, route: Route, role: Role) -> Reached {
    let side = |m: &Arc<Mutex<Module>>, f: &dyn Fn(&mut ModuleClient)| {
        let mut c = client(m);
        f(&mut c);
    };
    let (fixture, opts) = match route {
        Route::Fresh | Route::Initialized | Route::ImportingFirst => {
            (Fixture::new(), Opts::default())
        }
        Route::ImportingReplacement => (copy_fixture(&t.clone), Opts::default()),
        Route::ErrorAfterLogon => (
            copy_fixture(&t.master),
            Opts {
                audit_fault: Some(AuditFault::SignatureFails),
                ..Opts::default()
            },
        ),
        Route::ErrorAtBoot => (
            copy_fixture(&t.master),
            Opts {
                faults: Some(Faults::of(&[TestName::Sha256])),
                ..Opts::default()
            },
        ),
        _ => (copy_fixture(&t.master), Opts::default()),
    };
    if route == Route::ErrorUnreadableNvm {
        let path = fixture.path().join("module").join(NVM_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, bytes).unwrap();
    }
    let module = fixture.open_with(&opts);
    match route {
        Route::Initialized => side(&module, &|c| initialize(c)),
        Route::ImportingFirst => side(&module, &|c| {
            initialize(c);
            generate_transport_key(c);
        }),
        Route::Admin => side(&module, &|c| {
            as_user(c, "so", |c| ok(c, Request::BeginAdmin));
        }),
        Route::Exporting => side(&module, &|c| {
            as_user(c, "so", |c| {
                ok(
                    c,
                    Request::CreateMksShares {
                        count: 5,
                        threshold: 3,
                        slot: MksSlot::Active,
                    },
                )
            });
        }),
        Route::ImportingReplacement => side(&module, &|c| {
            as_user(c, "so", |c| ok(c, Request::StartImporting));
        }),
        Route::ErrorZeroized => side(&module, &|c| {
            c.logon("so", &pw("so")).unwrap();
            ok(c, Request::Zeroize);
        }),
        _ => {}
    }
    let mut client = client(&module);
    if let Some(user) = user_for(role) {
        let got = client
            .logon(user, &pw(user))
            .unwrap_or_else(|e| panic!("{route:?}: logon {user}: {e}"));
        assert_eq!(got, role);
    } else if route == Route::ErrorAfterLogon {
        ok(
            &mut client,
            Request::CreateAuditEntry {
                note: "trigger".into(),
                sign: true,
            },
        );
    }
    let s = status(&mut client);
    assert_eq!(
        (s.current_state, s.role),
        (route.state(), role),
        "{route:?} for {role}: the module is not where the test wanted it ({:?})",
        s.error
    );
    Reached {
        _fixture: fixture,
        module,
        client,
    }
}

/// Sends `kind` in `route`'s state for `role`; returns a complaint when the reply is wrong.
fn check_one(
    t: &Templates,
    grid: &BTreeMap<(String, usize), Vec<Role>>,
    route: Route,
    role: Role,
    kind: CommandKind,
) -> Option<String> {
    let state = route.state();
    let mut r = reach(t, route, role);
    let want = expect(grid, kind, state, role);
    let reply = match r.client.call(&harmless(kind)) {
        Ok(reply) => reply,
        Err(e) => return Some(format!("{route:?}/{role}/{kind:?}: no reply: {e}")),
    };
    let verdict = if want { "allowed" } else { "denied" };
    let bad = |what: String| {
        Some(format!(
            "{route:?}/{role}/{kind:?} expected {verdict}: {what}"
        ))
    };
    match (&reply.result, want) {
        (Err(ModuleError::Denied { .. }) | Err(ModuleError::InError(_)), true) => {
            bad(format!("{:?}", reply.result))
        }
        (_, true) => None,
        (Err(ModuleError::InError(_)), false) if state == ModuleState::Error => {
            // Nothing is audited in Error state.
            reply
                .audit
                .as_ref()
                .and_then(|_| bad("a refusal in Error state was audited".into()))
        }
        (
            Err(ModuleError::Denied {
                command,
                state: s,
                role: ro,
            }),
            false,
        ) if state != ModuleState::Error => {
            if (command.as_str(), *s, *ro) != (kind.name(), state, role) {
                return bad(format!("wrong denial {:?}", reply.result));
            }
            // Refusals of audited commands are audited once there is an audit chain.
            let has_chain = r.module.lock().unwrap().module_id().is_some();
            let audited = kind.spec().audit != Audit::None && has_chain;
            match (&reply.audit, audited) {
                (Some(e), true) if e.reason == "denied" && e.command == kind.name() => None,
                (None, false) => None,
                (a, _) => bad(format!(
                    "refusal audit entry {a:?}, expected one: {audited}"
                )),
            }
        }
        _ => bad(format!("{:?}", reply.result)),
    }
}

#[test]
fn every_role_command_state_end_to_end() {
    let started = std::time::Instant::now();
    let grid = expected();
    let (master, clone) = master_and_clone();
    let t = Templates { master, clone };
    let setup = started.elapsed();

    let jobs: Vec<(Route, Role)> = ROUTES
        .into_iter()
        .flat_map(|route| route.roles().into_iter().map(move |r| (route, r)))
        .collect();
    let next = AtomicUsize::new(0);
    let checked = Mutex::new(HashSet::new());
    let failures = Mutex::new(Vec::new());
    let sends = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // The checks wait on fsync more than on the CPU.
        for _ in 0..4 {
            s.spawn(|| {
                while let Some(&(route, role)) = jobs.get(next.fetch_add(1, Ordering::SeqCst)) {
                    for kind in CommandKind::ALL {
                        sends.fetch_add(1, Ordering::SeqCst);
                        if let Some(f) = check_one(&t, &grid, route, role, kind) {
                            failures.lock().unwrap().push(f);
                        }
                        checked
                            .lock()
                            .unwrap()
                            .insert((state_index(route.state()), role, kind));
                    }
                }
            });
        }
    });
    let end_to_end = checked.into_inner().unwrap();

    // The combinations no module can be in: the table alone decides.
    let mut by_table = HashSet::new();
    for (state, roles, why) in UNREACHABLE {
        for role in *roles {
            for kind in CommandKind::ALL {
                let key = (state_index(*state), *role, kind);
                assert!(
                    !end_to_end.contains(&key),
                    "{state}/{role} is listed unreachable ({why}) but was reached"
                );
                assert_eq!(
                    table::allowed(kind, *state, *role),
                    expect(&grid, kind, *state, *role),
                    "{kind:?} in {state} for {role} (unreachable: {why})"
                );
                by_table.insert(key);
            }
        }
    }
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} wrong replies:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        end_to_end.len() + by_table.len(),
        TOTAL,
        "every (state, role, command) must be checked end to end or, if unreachable, against the table"
    );
    eprintln!(
        "access matrix: {} triples end to end ({} commands sent), {} unreachable checked against the table; setup {:?}, total {:?}",
        end_to_end.len(),
        sends.load(Ordering::SeqCst),
        by_table.len(),
        setup,
        started.elapsed()
    );
}
