//! The automatic ceremony, in process: the master's set-up and the cloning
//! of its MKS into the other members by 2-of-2 key custodian shares (what
//! `examples/ceremony.sh` does with daemons, and `postvault bench` with one
//! module).
//!
//! Every member gets the same operators: `admin` (Administrator), `so`
//! (Security Officer), `kc1` and `kc2` (Key Custodians) and `ca`
//! (Certificate Authority, which issues PSD certificates), each with a
//! random password.
use std::collections::BTreeMap;

use postvault_crypto::rng::Rng;
use postvault_module::protocol::{
    AccountSettings, CryptoCardKeys, CryptoCardOutput, MksSlot, NewUser, Status,
};
use postvault_module::{ModuleClient, Password, Request, Response, Role};
use zeroize::Zeroizing;

use crate::PoolError;
use crate::files::{DeploymentFile, ModuleOperators};

/// The CA certificate's subject common name.
const CA_COMMON_NAME: &str = "postvault CA";
/// The CA certificate's validity, days.
const CA_DAYS: u32 = 3650;
/// The operator accounts of every member, and their roles.
const OPERATORS: [(&str, Role); 4] = [
    ("admin", Role::Administrator),
    ("so", Role::SecurityOfficer),
    ("kc1", Role::KeyCustodian),
    ("kc2", Role::KeyCustodian),
];
/// The Auditor, who exports the audit verification key.
pub(crate) const AUDITOR_USER: &str = "auditor";
/// The key custodians that carry the shares.
const CUSTODIANS: [&str; 2] = ["kc1", "kc2"];
/// The Certificate Authority operator.
pub(crate) const CA_USER: &str = "ca";

/// What the master's ceremony produced.
pub(crate) struct Master {
    /// User ID -> password.
    pub passwords: BTreeMap<String, Zeroizing<String>>,
    /// The deployment facts and tokens.
    pub deployment: DeploymentFile,
}

/// Runs `req` as one ceremony step; any failure names the step.
fn step(c: &mut ModuleClient, req: &Request) -> Result<Response, PoolError> {
    c.run(req)
        .map_err(|e| PoolError::Ceremony(format!("{}: {e}", req.kind().name())))
}

/// Runs `f` with `user` logged on, and logs off whatever `f` returned.
fn as_user<T>(
    c: &mut ModuleClient,
    user: &str,
    password: &Password,
    f: impl FnOnce(&mut ModuleClient) -> Result<T, PoolError>,
) -> Result<T, PoolError> {
    c.logon(user, password)
        .map_err(|e| PoolError::Ceremony(format!("logon of {user}: {e}")))?;
    let out = f(c);
    let off = c
        .logoff()
        .map_err(|e| PoolError::Ceremony(format!("logoff of {user}: {e}")));
    let out = out?;
    off?;
    Ok(out)
}

/// A random password: 32 hex digits (128 bits).
fn random_password(rng: &mut Rng) -> Result<Zeroizing<String>, PoolError> {
    Ok(Zeroizing::new(hex::encode(rng.array::<16>()?)))
}

/// New passwords for the operators and the CA operator.
fn new_passwords(rng: &mut Rng) -> Result<BTreeMap<String, Zeroizing<String>>, PoolError> {
    let mut out = BTreeMap::new();
    for (user, _) in OPERATORS {
        out.insert(user.to_string(), random_password(rng)?);
    }
    out.insert(CA_USER.to_string(), random_password(rng)?);
    out.insert(AUDITOR_USER.to_string(), random_password(rng)?);
    Ok(out)
}

fn password(passwords: &BTreeMap<String, Zeroizing<String>>, user: &str) -> Password {
    Password::new(passwords.get(user).map_or("", |p| p.as_str()))
}

/// Start Initialization and Initialize Access Control with the operators.
fn initialize(
    c: &mut ModuleClient,
    now: i64,
    passwords: &BTreeMap<String, Zeroizing<String>>,
) -> Result<(), PoolError> {
    step(c, &Request::StartInitialization { time: now })?;
    let users = OPERATORS
        .iter()
        .map(|(user, role)| NewUser {
            user_id: (*user).into(),
            role: *role,
            password: password(passwords, user),
            settings: AccountSettings::default(),
        })
        .collect();
    step(c, &Request::InitializeAccessControl { users })?;
    Ok(())
}

/// Creates the Certificate Authority operator and the Auditor: the Security Officer opens
/// Administrative state, the Administrator creates the account, the
/// Security Officer closes it. The Security Officer is logged on on entry
/// and logged off on return.
fn create_ca_operator(
    c: &mut ModuleClient,
    passwords: &BTreeMap<String, Zeroizing<String>>,
) -> Result<(), PoolError> {
    step(c, &Request::BeginAdmin)?;
    c.logoff()
        .map_err(|e| PoolError::Ceremony(format!("logoff of so: {e}")))?;
    as_user(c, "admin", &password(passwords, "admin"), |c| {
        for (user, role) in [
            (CA_USER, Role::CertificateAuthority),
            (AUDITOR_USER, Role::Auditor),
        ] {
            step(
                c,
                &Request::CreateUser {
                    user: NewUser {
                        user_id: user.into(),
                        role,
                        password: password(passwords, user),
                        settings: AccountSettings::default(),
                    },
                },
            )?;
        }
        Ok(())
    })?;
    as_user(c, "so", &password(passwords, "so"), |c| {
        step(c, &Request::EndAdmin).map(|_| ())
    })
}

/// The master's ceremony on an Uninitialized module: operators, MKS, CA,
/// crypto card (generated registration keys), CA operator.
pub(crate) fn master(
    c: &mut ModuleClient,
    now: i64,
    provider_public_key: &[u8],
    rng: &mut Rng,
) -> Result<Master, PoolError> {
    let passwords = new_passwords(rng)?;
    initialize(c, now, &passwords)?;
    let so = password(&passwords, "so");
    c.logon("so", &so)
        .map_err(|e| PoolError::Ceremony(format!("logon of so: {e}")))?;
    let deployment = (|| {
        step(c, &Request::GenerateMks)?;
        let (ca_key, ca_certificate_der) = match step(
            c,
            &Request::CreateCertificateAuthority {
                common_name: CA_COMMON_NAME.into(),
                days: CA_DAYS,
            },
        )? {
            Response::CertificateAuthority {
                key,
                certificate_der,
            } => (key, certificate_der),
            other => return Err(unexpected("CreateCertificateAuthority", &other)),
        };
        let card = crypto_card(
            c,
            CryptoCardKeys::Generate,
            &ca_certificate_der,
            provider_public_key,
        )?;
        Ok(DeploymentFile {
            version: 1,
            registration_public_key: card.decryption_public_key,
            registration_signing_public_key: card.signing_public_key,
            ca_certificate_der,
            provider_public_key: provider_public_key.to_vec(),
            ca_key,
            signing_token: card.signing_token,
            decryption_token: card.decryption_token,
        })
    })()?;
    create_ca_operator(c, &passwords)?;
    Ok(Master {
        passwords,
        deployment,
    })
}

/// Initialize Crypto-Card (the Security Officer is logged on).
fn crypto_card(
    c: &mut ModuleClient,
    keys: CryptoCardKeys,
    ca_certificate_der: &[u8],
    provider_public_key: &[u8],
) -> Result<CryptoCardOutput, PoolError> {
    match step(
        c,
        &Request::InitializeCryptoCard {
            keys,
            ca_certificate: Some(ca_certificate_der.to_vec()),
            provider_public_key: Some(provider_public_key.to_vec()),
        },
    )? {
        Response::CryptoCard(out) => Ok(*out),
        other => Err(unexpected("InitializeCryptoCard", &other)),
    }
}

/// Clones the MKS of `source` (an Operational member, whose operators are
/// `source_ops`) into the Uninitialized module behind `dst`: the clone
/// generates a transport key, the source's Security Officer creates two
/// shares (threshold 2), its key custodians export one each to the
/// transport key, the clone's custodians import them and its Security
/// Officer combines them, then loads the crypto card from the deployment's
/// tokens. Shares are exportable, so any member can seed a later one.
/// Returns the clone's operators' passwords.
pub(crate) fn clone(
    source: &mut ModuleClient,
    source_ops: &ModuleOperators,
    dst: &mut ModuleClient,
    now: i64,
    deployment: &DeploymentFile,
    rng: &mut Rng,
) -> Result<BTreeMap<String, Zeroizing<String>>, PoolError> {
    let passwords = new_passwords(rng)?;
    initialize(dst, now, &passwords)?;
    let transport_key = as_user(dst, "so", &password(&passwords, "so"), |c| {
        match step(c, &Request::GenerateTransportKey)? {
            Response::TransportKey(k) => Ok(k),
            other => Err(unexpected("GenerateTransportKey", &other)),
        }
    })?;

    let source_so = source_ops.password("so")?;
    let count = u8::try_from(CUSTODIANS.len()).unwrap_or(u8::MAX);
    as_user(source, "so", &source_so, |c| {
        step(
            c,
            &Request::CreateMksShares {
                count,
                threshold: count,
                slot: MksSlot::Active,
            },
        )
        .map(|_| ())
    })?;
    let exported = (|| {
        let mut shares = Vec::with_capacity(CUSTODIANS.len());
        for kc in CUSTODIANS {
            let share = as_user(source, kc, &source_ops.password(kc)?, |c| {
                match step(
                    c,
                    &Request::ExportShare {
                        transport_public_key: transport_key.clone(),
                        exportable: true,
                    },
                )? {
                    Response::Share { share, .. } => Ok(share),
                    other => Err(unexpected("ExportShare", &other)),
                }
            })?;
            shares.push(share);
        }
        Ok(shares)
    })();
    let shares = match exported {
        Ok(s) => s,
        Err(e) => {
            // Put the source back in service: Exporting Shares -> Operational.
            let _ = as_user(source, "so", &source_so, |c| {
                step(c, &Request::AbortExport).map(|_| ())
            });
            return Err(e);
        }
    };

    for (kc, share) in CUSTODIANS.iter().zip(shares) {
        as_user(dst, kc, &password(&passwords, kc), |c| {
            step(c, &Request::ImportShare { share }).map(|_| ())
        })?;
    }
    dst.logon("so", &password(&passwords, "so"))
        .map_err(|e| PoolError::Ceremony(format!("logon of so: {e}")))?;
    (|| {
        step(dst, &Request::CombineShares)?;
        crypto_card(
            dst,
            CryptoCardKeys::Load {
                signing: deployment.signing_token.clone(),
                decryption: deployment.decryption_token.clone(),
            },
            &deployment.ca_certificate_der,
            &deployment.provider_public_key,
        )
        .map(|_| ())
    })()?;
    create_ca_operator(dst, &passwords)?;

    let (a, b) = (status(source)?, status(dst)?);
    match (&a.keys.active_mks, &b.keys.active_mks) {
        (Some(x), Some(y)) if x.id == y.id && x.generation == y.generation => Ok(passwords),
        _ => Err(PoolError::Ceremony(format!(
            "after cloning, the source holds MKS {:?} and the clone {:?}",
            a.keys.active_mks, b.keys.active_mks
        ))),
    }
}

/// Get Status.
pub(crate) fn status(c: &mut ModuleClient) -> Result<Status, PoolError> {
    match step(c, &Request::GetStatus)? {
        Response::Status(s) => Ok(*s),
        other => Err(unexpected("GetStatus", &other)),
    }
}

fn unexpected(command: &str, answer: &Response) -> PoolError {
    PoolError::Ceremony(format!("unexpected answer to {command}: {answer:?}"))
}
