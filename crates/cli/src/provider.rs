//! `postvault provider ...`: the provider key (a passphrase-protected key
//! file), the provider's account (`add-account`, run by an operator) and
//! the signed provider messages (Authorize Customer, Download, Refund).
//! Each message command logs on with a provider or operator account, reads
//! the meter's next sequence number and control total, signs
//! `ProviderBody::signing_bytes` with the provider key, sends it, and logs
//! off.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use postvault_client::input::{format_mills, format_zip, parse_dollars, parse_zip};
use postvault_client::{Client, ClientError, customer};
use postvault_crypto::Faults;
use postvault_crypto::ecdsa::{self, EcdsaP256KeyPair};
use postvault_crypto::password::Argon2Params;
use postvault_crypto::rng::Rng;
use postvault_module::Password;
use postvault_module::psd::{ProviderBody, ProviderCommand as Command, ProviderMessage};

use crate::cli::{ProviderCommand, ProviderConnArgs, ServerTrustArgs, StaffRole};
use crate::client::{account_password, date_or_today, logon_result, trust_from_flags};
use crate::{outln, secrets, usage};

/// The environment variable a key file passphrase may come from.
pub const PASSPHRASE_ENV: &str = "POSTVAULT_PASSPHRASE";

pub fn run(cmd: ProviderCommand) -> Result<ExitCode> {
    if let ProviderCommand::Keygen {
        out,
        passphrase_file,
        public_out,
    } = &cmd
    {
        return keygen(out, passphrase_file.as_deref(), public_out.as_deref());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cmd {
            ProviderCommand::Keygen { .. } => unreachable!("handled above"),
            ProviderCommand::Authorize {
                conn,
                meter,
                zip,
                max,
            } => {
                let licensing_zip = parse_zip(&zip)?;
                let max_descending_mills = parse_dollars(&max)?;
                send(
                    &conn,
                    &meter,
                    |_| Command::AuthorizeCustomer {
                        licensing_zip,
                        max_descending_mills,
                    },
                    &format!(
                        "authorized meter {meter} for licensing ZIP {}, at most {}",
                        format_zip(licensing_zip),
                        format_mills(max_descending_mills)
                    ),
                )
                .await
            }
            ProviderCommand::Download {
                conn,
                meter,
                amount,
            } => {
                let amount_mills = parse_dollars(&amount)?;
                send(
                    &conn,
                    &meter,
                    |control_total_mills| Command::Download {
                        amount_mills,
                        control_total_mills,
                    },
                    &format!(
                        "downloaded {} into meter {meter}",
                        format_mills(amount_mills)
                    ),
                )
                .await
            }
            ProviderCommand::AddAccount {
                server,
                login,
                password_file,
                new_login,
                new_password_file,
                role,
            } => {
                add_account(
                    &server,
                    &login,
                    password_file.as_deref(),
                    &new_login,
                    new_password_file.as_deref(),
                    role,
                )
                .await
            }
            ProviderCommand::Refund { conn, meter, date } => {
                let date = date_or_today(date.as_deref())?;
                send(
                    &conn,
                    &meter,
                    |_| Command::Refund { date },
                    &format!("refunded meter {meter}"),
                )
                .await
            }
        }
    })
}

/// A key file passphrase: file, else POSTVAULT_PASSPHRASE, else a prompt.
fn passphrase(file: Option<&Path>, new: bool) -> Result<Password> {
    if let Some(f) = file {
        return secrets::from_file(f);
    }
    if let Ok(p) = std::env::var(PASSPHRASE_ENV)
        && !p.is_empty()
    {
        return Ok(Password::new(p));
    }
    if new {
        secrets::new_password(
            "the provider key file",
            None,
            "--passphrase-file FILE (or POSTVAULT_PASSPHRASE)",
        )
    } else {
        secrets::logon_password("the provider key file", None)
    }
}

fn keygen(
    out: &Path,
    passphrase_file: Option<&Path>,
    public_out: Option<&Path>,
) -> Result<ExitCode> {
    if out.exists() {
        bail!(
            "{} already exists: a key file is never overwritten; choose another --out",
            out.display()
        );
    }
    let pass = passphrase(passphrase_file, true)?;
    let key = EcdsaP256KeyPair::generate(&Faults::none()).context("generating the provider key")?;
    let mut rng = Rng::new(Faults::none());
    let text = key
        .to_keyfile(
            &mut rng,
            pass.expose_secret().as_bytes(),
            Argon2Params::DEFAULT,
        )
        .context("sealing the provider key")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create the key file {}", out.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write the key file {}", out.display()))?;
    let pem = ecdsa::public_key_to_pem(&key.public_key());
    if let Some(p) = public_out {
        std::fs::write(p, &pem).with_context(|| format!("cannot write {}", p.display()))?;
    }
    outln!("provider key written to {} (mode 0600)", out.display());
    if let Some(p) = public_out {
        outln!("public key written to {}", p.display());
    }
    outln!("{}", pem.trim_end());
    Ok(ExitCode::SUCCESS)
}

/// Logs on, builds the message from the meter's provider view, signs,
/// sends, prints what happened, logs off.
async fn send(
    conn: &ProviderConnArgs,
    meter: &str,
    command: impl FnOnce(u64) -> Command,
    done: &str,
) -> Result<ExitCode> {
    let device = customer::parse_device(meter)?;
    // The key first: a wrong passphrase should not cost a logon.
    let key_text = std::fs::read_to_string(&conn.key)
        .with_context(|| format!("cannot read the provider key file {}", conn.key.display()))?;
    let pass = passphrase(conn.passphrase_file.as_deref(), false)?;
    let key = EcdsaP256KeyPair::from_keyfile(pass.expose_secret().as_bytes(), &key_text)
        .with_context(|| format!("cannot open the provider key file {}", conn.key.display()))?;
    let client = connect(&conn.server)?;
    let password = account_password(&conn.login, conn.password_file.as_deref(), false)?;
    let session = client.logon(&conn.login, password.expose_secret()).await;
    let session = logon_result(session).with_context(|| format!("logging on as {}", conn.login))?;
    let client = client.with_token(session.token);
    let result = signed(&client, meter, &device.to_string(), &key, command).await;
    // Best effort: the session expires anyway.
    let _ = client.logoff().await;
    let answer = result?;
    outln!("{done}");
    outln!(
        "meter {} is {}: ascending {}, descending {}, control total {}",
        answer.device_id,
        answer.state,
        format_mills(answer.ascending_mills),
        format_mills(answer.descending_mills),
        format_mills(answer.control_total_mills)
    );
    if let Some(r) = answer.refunded_mills {
        outln!("refunded {}", format_mills(r));
    }
    if let Some(i) = &answer.indicium {
        outln!("refund indicium: {i}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `postvault provider add-account`.
async fn add_account(
    server: &ServerTrustArgs,
    login: &str,
    password_file: Option<&Path>,
    new_login: &str,
    new_password_file: Option<&Path>,
    role: StaffRole,
) -> Result<ExitCode> {
    let client = connect(server)?;
    // Both passwords before the first request: a prompt is not left
    // waiting with a session open.
    let password = account_password(login, password_file, false)?;
    let new_password =
        secrets::new_password(new_login, new_password_file, "--new-password-file FILE")?;
    let session = client.logon(login, password.expose_secret()).await;
    let session = logon_result(session).with_context(|| format!("logging on as {login}"))?;
    let client = client.with_token(session.token);
    let made = client
        .staff_account(new_login, new_password.expose_secret(), role.as_str())
        .await;
    // Best effort: the session expires anyway.
    let _ = client.logoff().await;
    let made = made.map_err(|e| match e.status() {
        Some(403) => anyhow!(e).context(format!(
            "{login} is not an operator account: log on with an operator (the first one's password is in the server's DATA/operator-credentials.txt)"
        )),
        _ => anyhow!(e),
    })?;
    outln!("made the {} account {}", made.role, made.login);
    Ok(ExitCode::SUCCESS)
}

/// A client for the server named by `server`, or a usage error.
fn connect(server: &ServerTrustArgs) -> Result<Client> {
    let Some(url) = &server.url else {
        usage!("give --url (the https://HOST:PORT that `postvault serve` printed)");
    };
    let Some(trust) = trust_from_flags(server)? else {
        usage!("give --fingerprint FP (as `postvault serve` printed it) or --cacert PEM");
    };
    Ok(Client::new(url, trust)?)
}

async fn signed(
    client: &Client,
    meter: &str,
    device_display: &str,
    key: &EcdsaP256KeyPair,
    command: impl FnOnce(u64) -> Command,
) -> Result<postvault_client::api::ProviderAnswer> {
    let view = client
        .provider_meter(meter)
        .await
        .map_err(provider_error)
        .with_context(|| format!("reading meter {meter}"))?;
    let body = ProviderBody {
        device_id: device_display.to_string(),
        sequence: view.next_sequence,
        command: command(view.control_total_mills),
    };
    let message = sign(key, body)?;
    client
        .provider_message(&message)
        .await
        .map_err(provider_error)
        .with_context(|| format!("sending the provider message for meter {meter}"))
}

/// Signs `body.signing_bytes()` (r || s).
pub fn sign(key: &EcdsaP256KeyPair, body: ProviderBody) -> Result<ProviderMessage> {
    let signature = key
        .sign(&body.signing_bytes())
        .context("signing the provider message")?;
    Ok(ProviderMessage { body, signature })
}

fn provider_error(e: ClientError) -> anyhow::Error {
    match e.status() {
        Some(403) => anyhow!(e).context("this account is not a provider or operator account"),
        Some(404) => anyhow!(e).context("no such meter"),
        _ => anyhow!(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_message_verifies_over_the_signing_bytes() {
        let key = EcdsaP256KeyPair::generate(&Faults::none()).unwrap();
        let body = ProviderBody {
            device_id: "0042-0001-00000007".into(),
            sequence: 3,
            command: Command::Download {
                amount_mills: 50_000,
                control_total_mills: 0,
            },
        };
        let m = sign(&key, body.clone()).unwrap();
        assert!(ecdsa::verify(
            &key.public_key(),
            &body.signing_bytes(),
            &m.signature
        ));
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["body"]["sequence"], 3);
        assert!(json["signature"].is_string());
    }
}
