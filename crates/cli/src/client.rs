//! `postvault client ...`: the customer's command line over
//! `postvault-client`. Every command opens the state directory, talks to
//! the saved server with the saved session, and prints plain results; the
//! checks of the server's answers are `postvault_client::customer`'s, and
//! an answer that fails one is refused loudly and never written out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use postvault_client::api::{MeterView, PrintAnswer};
use postvault_client::customer::{self, CheckedPiece, HmacKey, Piece};
use postvault_client::input::{
    self, format_mills, format_zip, parse_class, parse_date, parse_dollars, parse_zip,
};
use postvault_client::state::{ClientConfig, MeterFile, StateDir};
use postvault_client::{Client, ClientError, Trust, normalize_fingerprint};
use postvault_crypto::Faults;
use postvault_crypto::password::Argon2Params;
use postvault_crypto::rng::Rng;
use postvault_indicium::{INDICIUM_LEN, Indicium};
use postvault_module::Clock as _;
use postvault_module::Password;
use postvault_module::psd::DeviceId;

use crate::cli::{ClientCommand, ClientStateArgs, PieceArgs, ServerTrustArgs};
use crate::conn::SystemClock;
use crate::{outln, secrets, usage};

/// The environment variable a password may come from.
pub const PASSWORD_ENV: &str = "POSTVAULT_PASSWORD";

pub fn run(cmd: ClientCommand) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cmd {
            ClientCommand::Signup {
                state,
                server,
                login,
            } => signup(&state, &server, &login).await,
            ClientCommand::Logon {
                state,
                server,
                login,
            } => logon(&state, &server, login.as_deref()).await,
            ClientCommand::Logoff { state } => logoff(&state).await,
            ClientCommand::Register { state, zip, user } => {
                register(&state, &zip, user.as_deref()).await
            }
            ClientCommand::Buy {
                state,
                meter,
                amount,
            } => buy(&state, meter.as_deref(), &amount).await,
            ClientCommand::Status { state, meter } => status(&state, meter.as_deref()).await,
            ClientCommand::Print {
                state,
                piece,
                class,
            } => print(&state, &piece, Kind::Print(class)).await,
            ClientCommand::Correct { state, piece } => {
                print(&state, &piece, Kind::Correction).await
            }
            ClientCommand::Refund {
                state,
                meter,
                out,
                yes,
            } => refund(&state, meter.as_deref(), out.as_deref(), yes).await,
            ClientCommand::History { state, meter } => history(&state, meter.as_deref()).await,
            ClientCommand::Bulk {
                state,
                meter,
                csv,
                out_dir,
                date,
            } => bulk(&state, meter.as_deref(), &csv, &out_dir, date.as_deref()).await,
        }
    })
}

// --- passwords, dates, connections ---

/// The account password: --password-file, else POSTVAULT_PASSWORD, else a
/// prompt (twice for a new one).
pub fn account_password(login: &str, file: Option<&Path>, new: bool) -> Result<Password> {
    if let Some(f) = file {
        return secrets::from_file(f);
    }
    if let Ok(pw) = std::env::var(PASSWORD_ENV)
        && !pw.is_empty()
    {
        return Ok(Password::new(pw));
    }
    if new {
        secrets::new_password(login, None, "--password-file FILE (or POSTVAULT_PASSWORD)")
    } else {
        secrets::logon_password(login, None)
    }
}

/// Today's date (UTC) as YYYYMMDD.
pub fn today_utc() -> Result<u32> {
    let now = time::OffsetDateTime::from_unix_timestamp(SystemClock.now())
        .context("the system clock is out of range")?;
    let d = now.date();
    Ok(d.year() as u32 * 10_000 + u32::from(u8::from(d.month())) * 100 + u32::from(d.day()))
}

/// `--date` or today.
pub fn date_or_today(date: Option<&str>) -> Result<u32> {
    match date {
        Some(d) => Ok(parse_date(d)?),
        None => today_utc(),
    }
}

fn ymd(date: u32) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date / 10_000,
        date / 100 % 100,
        date % 100
    )
}

/// The trust the flags give, if any.
pub fn trust_from_flags(server: &ServerTrustArgs) -> Result<Option<Trust>> {
    Ok(match (&server.fingerprint, &server.cacert) {
        (Some(fp), None) => Some(Trust::Fingerprint(normalize_fingerprint(fp)?)),
        (None, Some(ca)) => Some(Trust::CaFile(
            std::path::absolute(ca)
                .with_context(|| format!("cannot resolve the CA file path {}", ca.display()))?,
        )),
        (None, None) => None,
        (Some(_), Some(_)) => usage!("give either --fingerprint or --cacert, not both"),
    })
}

fn config_with_trust(url: String, trust: Trust, login: String) -> ClientConfig {
    let (fingerprint, ca_file) = match trust {
        Trust::Fingerprint(fp) => (Some(fp), None),
        Trust::CaFile(ca) => (None, Some(ca)),
    };
    ClientConfig {
        url,
        fingerprint,
        ca_file,
        login,
        token: None,
    }
}

/// An API result, with what to do next for the usual refusals.
fn api<T>(r: std::result::Result<T, ClientError>) -> Result<T> {
    r.map_err(|e| {
        let no_route = matches!(&e, ClientError::Api { status: 404, message } if message.contains("no such route"));
        let withdrawn = matches!(&e, ClientError::Api { status: 409, message } if message.contains("in state withdrawn"));
        let hint = match e.status() {
            Some(409) if withdrawn => Some(
                "this meter was refunded and withdrawn: it does nothing more; `postvault client register --zip ZIP` gets a new one",
            ),
            Some(404) if no_route => Some(
                "this server does not offer that API route: it may run an older postvault than this client",
            ),
            Some(401) => Some(
                "your session has ended or is not valid: run `postvault client logon`",
            ),
            Some(403) => Some("this account may not do that"),
            Some(404) => Some(
                "no such meter for this account: `postvault client status` lists your meters",
            ),
            _ => None,
        };
        match hint {
            Some(h) => anyhow!(e).context(h),
            None => anyhow!(e),
        }
    })
}

/// A logon's result, with what to do about a refusal.
pub fn logon_result<T>(r: std::result::Result<T, ClientError>) -> Result<T> {
    r.map_err(|e| match e.status() {
        Some(401) => anyhow!(e)
            .context("wrong login or password (the account locks after repeated failures)"),
        Some(423) => anyhow!(e).context(
            "the account is locked after failed logons: ask the postal operator to unlock it",
        ),
        _ => anyhow!(e),
    })
}

/// The state directory, its configuration, and a client with the saved session.
struct Session {
    state: StateDir,
    config: ClientConfig,
    client: Client,
}

fn open_session(args: &ClientStateArgs) -> Result<Session> {
    let state = StateDir::open(args.state.as_deref())?;
    let config = state.config()?;
    let mut client = Client::new(&config.url, config.trust()?)?;
    client.set_token(config.token.clone());
    Ok(Session {
        state,
        config,
        client,
    })
}

impl Session {
    fn require_token(&self) -> Result<()> {
        if self.config.token.is_none() {
            bail!(
                "not logged on as {}: run `postvault client logon` first",
                self.config.login
            );
        }
        Ok(())
    }

    /// Logs on again with `password` and saves the new token.
    async fn relogon(&mut self, password: &Password) -> Result<()> {
        let s = api(self
            .client
            .logon(&self.config.login, password.expose_secret())
            .await)
        .with_context(|| format!("logging on as {}", self.config.login))?;
        self.config.token = Some(s.token.clone());
        self.client.set_token(Some(s.token));
        self.state.save_config(&self.config)?;
        Ok(())
    }

    /// GET the meter; when the session has ended and the password is at
    /// hand, log on again once and retry (a 401 changed nothing).
    async fn meter(&mut self, device_id: &str, password: Option<&Password>) -> Result<MeterView> {
        let first = self.client.meter(device_id).await;
        if let (Err(ClientError::Api { status: 401, .. } | ClientError::NotLoggedOn), Some(pw)) =
            (&first, password)
        {
            self.relogon(pw).await?;
            return api(self.client.meter(device_id).await);
        }
        api(first)
    }

    /// The device ID for a command: the meter file's when there is one,
    /// else the one given.
    fn device_id(&self, given: Option<&str>) -> Result<String> {
        match given {
            Some(g) => {
                let device = customer::parse_device(g)?;
                Ok(match self.state.load_meter(&device) {
                    Ok(m) => m.device_id,
                    Err(_) => g.trim().to_string(),
                })
            }
            None => Ok(self.state.pick_meter(&self.config.login, None)?.device_id),
        }
    }
}

// --- accounts ---

async fn signup(args: &ClientStateArgs, server: &ServerTrustArgs, login: &str) -> Result<ExitCode> {
    let Some(url) = &server.url else {
        usage!("signup needs --url (the https://HOST:PORT that `postvault serve` printed)");
    };
    let Some(trust) = trust_from_flags(server)? else {
        usage!(
            "signup needs --fingerprint FP (the certificate sha256 `postvault serve` printed) or --cacert PEM"
        );
    };
    let state = StateDir::open(args.state.as_deref())?;
    let client = Client::new(url, trust.clone())?;
    let password = account_password(login, args.password_file.as_deref(), true)?;
    let account = api(client.sign_up(login, password.expose_secret()).await)
        .with_context(|| format!("signing up {login} on {}", client.url()))?;
    let mut config = config_with_trust(client.url().to_string(), trust, account.login.clone());
    state.save_config(&config)?;
    let session = logon_result(client.logon(login, password.expose_secret()).await)
        .with_context(|| format!("logging on as {login}"))?;
    config.token = Some(session.token.clone());
    state.save_config(&config)?;
    outln!(
        "signed up {} ({}) on {}; logged on (the session ends after {} idle seconds)",
        account.login,
        account.role,
        client.url(),
        session.idle_timeout_secs
    );
    outln!("next: postvault client register --zip ZIP");
    Ok(ExitCode::SUCCESS)
}

async fn logon(
    args: &ClientStateArgs,
    server: &ServerTrustArgs,
    login: Option<&str>,
) -> Result<ExitCode> {
    let state = StateDir::open(args.state.as_deref())?;
    let saved = state.load_config()?;
    let flags_trust = trust_from_flags(server)?;
    let url = match (&server.url, &saved) {
        (Some(u), _) => u.trim().trim_end_matches('/').to_string(),
        (None, Some(c)) => c.url.clone(),
        (None, None) => usage!(
            "no saved server in {}: give --url URL and --fingerprint FP (or --cacert PEM) and --login LOGIN",
            state.path().display()
        ),
    };
    let trust = match (flags_trust, &saved) {
        (Some(t), _) => t,
        (None, Some(c)) if c.url == url => c.trust()?,
        _ => usage!("give --fingerprint FP or --cacert PEM for {url}"),
    };
    let login = match (login, &saved) {
        (Some(l), _) => l.to_string(),
        (None, Some(c)) => c.login.clone(),
        (None, None) => usage!("give --login LOGIN"),
    };
    let client = Client::new(&url, trust.clone())?;
    let password = account_password(&login, args.password_file.as_deref(), false)?;
    let session = logon_result(client.logon(&login, password.expose_secret()).await)
        .with_context(|| format!("logging on as {login} at {url}"))?;
    let mut config = config_with_trust(client.url().to_string(), trust, login.clone());
    config.token = Some(session.token);
    state.save_config(&config)?;
    outln!(
        "logged on as {} ({}) at {}; the session ends after {} idle seconds",
        session.login,
        session.role,
        client.url(),
        session.idle_timeout_secs
    );
    Ok(ExitCode::SUCCESS)
}

async fn logoff(args: &ClientStateArgs) -> Result<ExitCode> {
    let mut s = open_session(args)?;
    if s.config.token.is_some() {
        match s.client.logoff().await {
            Ok(()) | Err(ClientError::Api { status: 401, .. }) => {}
            Err(e) => return Err(anyhow!(e).context("logging off")),
        }
    }
    s.config.token = None;
    s.state.save_config(&s.config)?;
    outln!("logged off {}", s.config.login);
    Ok(ExitCode::SUCCESS)
}

// --- meters ---

async fn register(args: &ClientStateArgs, zip: &str, user: Option<&str>) -> Result<ExitCode> {
    let licensing_zip = parse_zip(zip)?;
    let mut s = open_session(args)?;
    let user_id = user.unwrap_or(&s.config.login).to_string();
    let password = account_password(&s.config.login, args.password_file.as_deref(), false)?;
    // A fresh session: checks the password before it is sealed anywhere.
    s.relogon(&password).await?;
    let deployment = api(s.client.deployment().await).context("reading the deployment")?;
    let reserved = api(s.client.reserve_meter().await).context("reserving a meter")?;
    let device = customer::parse_device(&reserved.device_id)
        .context("the server reserved a meter with a malformed device ID")?;
    let mut rng = Rng::new(Faults::none());
    let hmac_key = customer::new_hmac_key(&mut rng)?;
    let sealed = customer::seal_registration(
        &mut rng,
        &deployment.registration_public_key,
        &device,
        &user_id,
        &hmac_key,
        password.expose_secret(),
    )?;
    let request = postvault_client::api::RegistrationRequest {
        user_id: user_id.clone(),
        secrets: sealed,
        licensing_zip,
    };
    let answer = api(s.client.register_meter(&reserved.device_id, &request).await)
        .with_context(|| format!("registering meter {device}"))?;
    if let Err(e) = customer::check_configure_mac(&hmac_key, &device, &user_id, &answer) {
        eprintln!("REFUSED: meter {device}: {e}");
        bail!("registration of meter {device} failed its check; nothing was saved");
    }
    // The PSD certificate must chain to the deployment's CA.
    let psd_der = customer::certificate_der(&answer.certificate_pem)?;
    let ca_der = customer::certificate_der(&deployment.ca_certificate_pem)?;
    if let Err(e) = postvault_indicium::check_psd_certificate(&psd_der, &ca_der, SystemClock.now())
    {
        eprintln!(
            "REFUSED: meter {device}: its certificate does not check against the deployment's CA: {e}"
        );
        bail!("registration of meter {device} failed its check; nothing was saved");
    }
    let meter = MeterFile {
        device_id: answer.device_id.clone(),
        login: s.config.login.clone(),
        user_id: user_id.clone(),
        licensing_zip,
        certificate_pem: answer.certificate_pem.clone(),
        ca_certificate_pem: deployment.ca_certificate_pem.clone(),
        hmac_key: MeterFile::seal_key(
            &mut rng,
            &device,
            &hmac_key,
            password.expose_secret(),
            Argon2Params::DEFAULT,
        )?,
    };
    s.state.save_meter(&meter)?;
    outln!(
        "registered meter {} ({}) for user {user_id}, licensing ZIP {}",
        answer.device_id,
        answer.state,
        format_zip(licensing_zip)
    );
    if answer.state == "Assigned" {
        outln!(
            "the server has no provider key: a provider must run `postvault provider authorize --meter {} --zip {}` before postage can be bought",
            answer.device_id,
            format_zip(licensing_zip)
        );
    } else {
        outln!(
            "next: postvault client buy --meter {} --amount 50.00",
            answer.device_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn buy(args: &ClientStateArgs, meter: Option<&str>, amount: &str) -> Result<ExitCode> {
    let amount_mills = parse_dollars(amount)?;
    let s = open_session(args)?;
    s.require_token()?;
    let device_id = s.device_id(meter)?;
    let p = api(s.client.purchase(&device_id, amount_mills).await).with_context(|| {
        format!(
            "buying {} for meter {device_id}",
            format_mills(amount_mills)
        )
    })?;
    outln!(
        "bought {} for meter {}: descending register {}, control total {}",
        format_mills(p.amount_mills),
        p.device_id,
        format_mills(p.descending_mills),
        format_mills(p.control_total_mills)
    );
    Ok(ExitCode::SUCCESS)
}

fn show_meter(m: &MeterView) {
    outln!("meter {} ({})", m.device_id, m.state);
    outln!(
        "  descending register  {} (left; at most {})",
        format_mills(m.descending_mills),
        format_mills(m.max_descending_mills)
    );
    outln!(
        "  ascending register   {} (used)",
        format_mills(m.ascending_mills)
    );
    outln!(
        "  control total        {}",
        format_mills(m.control_total_mills)
    );
    outln!("  pieces               {}", m.piece_count);
    if let Some(z) = m.licensing_zip {
        outln!("  licensing ZIP        {}", format_zip(z));
    }
}

async fn status(args: &ClientStateArgs, meter: Option<&str>) -> Result<ExitCode> {
    let s = open_session(args)?;
    s.require_token()?;
    match meter {
        Some(m) => {
            let device_id = s.device_id(Some(m))?;
            show_meter(&api(s.client.meter(&device_id).await)?);
        }
        None => {
            let all = api(s.client.meters().await)?;
            if all.is_empty() {
                outln!(
                    "account {} has no meters: `postvault client register --zip ZIP` gets one",
                    s.config.login
                );
            }
            for m in &all {
                show_meter(m);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

// --- printing ---

enum Kind {
    Print(String),
    Correction,
}

/// The two label files for `pdf`: itself and the PNG beside it.
fn label_paths(pdf: &Path) -> (PathBuf, PathBuf) {
    (pdf.to_path_buf(), pdf.with_extension("png"))
}

fn refuse_existing(pdf: &Path) -> Result<()> {
    let (pdf, png) = label_paths(pdf);
    for p in [pdf, png] {
        if p.exists() {
            bail!(
                "{} already exists: labels are postage, so none is overwritten; choose another --out or move it away",
                p.display()
            );
        }
    }
    Ok(())
}

/// Writes the label of `bytes` as PDF at `pdf` and PNG beside it.
pub fn write_label(pdf: &Path, bytes: &[u8; INDICIUM_LEN], indicium: &Indicium) -> Result<PathBuf> {
    let (pdf, png) = label_paths(pdf);
    let text = postvault_label::LabelText::from_indicium(indicium);
    let pdf_bytes = postvault_label::render_pdf(bytes, &text).context("rendering the PDF label")?;
    let png_bytes =
        postvault_label::render_png(bytes, &text, 300).context("rendering the PNG label")?;
    std::fs::write(&pdf, pdf_bytes).with_context(|| format!("cannot write {}", pdf.display()))?;
    std::fs::write(&png, png_bytes).with_context(|| format!("cannot write {}", png.display()))?;
    Ok(png)
}

/// Checks that the origin ZIP is in the meter's licensing ZIP5.
fn check_origin(meter: &MeterFile, origin_zip: u32, what: &str) -> Result<()> {
    if origin_zip / 10_000 != meter.licensing_zip / 10_000 {
        bail!(
            "{what} {} is not in the meter's licensing ZIP {}: meter {} prints only from ZIP {:05}",
            format_zip(origin_zip),
            format_zip(meter.licensing_zip),
            meter.device_id,
            meter.licensing_zip / 10_000
        );
    }
    Ok(())
}

/// What a print needs: the meter, its key, its certificate, a session.
struct Printer {
    session: Session,
    meter: MeterFile,
    device: DeviceId,
    key: HmacKey,
    cert_der: Vec<u8>,
    password: Password,
}

impl Printer {
    fn open(args: &ClientStateArgs, meter: Option<&str>) -> Result<Printer> {
        let session = open_session(args)?;
        let meter = session.state.pick_meter(&session.config.login, meter)?;
        let device = meter.device()?;
        let password =
            account_password(&session.config.login, args.password_file.as_deref(), false)?;
        let key = meter.open_key(password.expose_secret())?;
        let cert_der = customer::certificate_der(&meter.certificate_pem)
            .context("the meter file's certificate")?;
        Ok(Printer {
            session,
            meter,
            device,
            key,
            cert_der,
            password,
        })
    }

    /// The meter's current challenge.
    async fn challenge(&mut self) -> Result<[u8; 16]> {
        let id = self.meter.device_id.clone();
        let view = self.session.meter(&id, Some(&self.password)).await?;
        let Some(ch) = view.challenge else {
            bail!(
                "meter {} ({}) has no challenge: it cannot print in this state; `postvault client status --meter {}` shows it",
                view.device_id,
                view.state,
                view.device_id
            );
        };
        hex::decode(&ch)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| anyhow!("the server sent a malformed challenge {ch:?}"))
    }

    /// Sends one MACed request and checks the answer.
    async fn print_one(
        &self,
        challenge: [u8; 16],
        piece: &Piece,
        correction: bool,
    ) -> Result<(PrintAnswer, CheckedPiece)> {
        let req = customer::indicium_request(
            &self.key,
            &self.device,
            &self.meter.user_id,
            challenge,
            piece,
        );
        let wire = customer::print_request(&req);
        let id = &self.meter.device_id;
        let answer = if correction {
            self.session.client.correct(id, &wire).await
        } else {
            self.session.client.print(id, &wire).await
        };
        let answer = api(answer)?;
        match customer::check_print_answer(&self.key, &req, &answer, &self.cert_der) {
            Ok(checked) => Ok((answer, checked)),
            Err(e) => {
                eprintln!(
                    "REFUSED: the answer for piece {} of meter {id} failed its check: {e}",
                    answer.piece
                );
                bail!(
                    "no label was written: the server's answer failed its check; tell the postage vendor"
                )
            }
        }
    }
}

async fn print(args: &ClientStateArgs, p: &PieceArgs, kind: Kind) -> Result<ExitCode> {
    let postage_mills = parse_dollars(&p.amount)?;
    let origin_zip = parse_zip(&p.from_zip)?;
    let destination_zip = match &p.to_zip {
        Some(z) => parse_zip(z)?,
        None => 0,
    };
    let (category, correction) = match &kind {
        Kind::Print(class) => (parse_class(class)?, false),
        Kind::Correction => (*b"CORR", true),
    };
    let date = date_or_today(p.date.as_deref())?;
    refuse_existing(&p.out)?;
    let mut printer = Printer::open(args, p.meter.as_deref())?;
    check_origin(&printer.meter, origin_zip, "--from-zip")?;
    let piece = Piece {
        postage_mills,
        date,
        origin_zip,
        destination_zip,
        category,
    };
    let challenge = printer.challenge().await?;
    let (answer, checked) = printer.print_one(challenge, &piece, correction).await?;
    let png = write_label(&p.out, &checked.bytes, &checked.indicium).with_context(|| {
        format!(
            "piece {} was printed but its label could not be written; its indicium is {} (`postvault client history` shows it too)",
            answer.piece,
            hex::encode(checked.bytes)
        )
    })?;
    outln!(
        "{} piece {} of meter {}: {} {} mailed {} from {}{}",
        if correction { "correction" } else { "printed" },
        answer.piece,
        answer.device_id,
        format_mills(postage_mills),
        input::category_text(&category),
        ymd(date),
        format_zip(origin_zip),
        if destination_zip == 0 {
            String::new()
        } else {
            format!(" to {}", format_zip(destination_zip))
        }
    );
    outln!("label: {} and {}", p.out.display(), png.display());
    outln!(
        "registers: ascending {}, descending {}",
        format_mills(answer.ascending_mills),
        format_mills(answer.descending_mills)
    );
    Ok(ExitCode::SUCCESS)
}

async fn refund(
    args: &ClientStateArgs,
    meter: Option<&str>,
    out: Option<&Path>,
    yes: bool,
) -> Result<ExitCode> {
    if let Some(o) = out {
        refuse_existing(o)?;
    }
    let s = open_session(args)?;
    s.require_token()?;
    let meter = s.state.pick_meter(&s.config.login, meter)?;
    if !yes {
        usage!(
            "a refund withdraws meter {} for good: it prints nothing afterwards; to go ahead, run again with --yes",
            meter.device_id
        );
    }
    let device = meter.device()?;
    let cert_der = customer::certificate_der(&meter.certificate_pem)?;
    let answer = api(s.client.refund(&meter.device_id).await)
        .with_context(|| format!("refunding meter {}", meter.device_id))?;
    let (indicium, bytes) = match customer::check_refund_answer(&device, &answer, &cert_der) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("REFUSED: the refund answer for meter {device} failed its check: {e}");
            bail!(
                "the refund indicium is not valid: tell the postage vendor (the server says {} was refunded)",
                format_mills(answer.refunded_mills)
            );
        }
    };
    outln!(
        "refunded {} from meter {}; it is now {}",
        format_mills(answer.refunded_mills),
        answer.device_id,
        answer.state
    );
    outln!(
        "refund indicium (piece {}): {}",
        indicium.piece_counter,
        hex::encode(bytes)
    );
    if let Some(o) = out {
        let png = write_label(o, &bytes, &indicium)?;
        outln!("label: {} and {}", o.display(), png.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A history field for people: Unix seconds as a UTC date and time, text
/// as it is, `-` for nothing.
fn time_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        serde_json::Value::Number(n) => n
            .as_i64()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .map_or_else(|| n.to_string(), utc_text),
        other => other.to_string(),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
fn utc_text(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

async fn history(args: &ClientStateArgs, meter: Option<&str>) -> Result<ExitCode> {
    let s = open_session(args)?;
    s.require_token()?;
    let device_id = s.device_id(meter)?;
    let indicia = api(s.client.indicia(&device_id).await)?;
    let money = api(s.client.money(&device_id).await)?;
    outln!("meter {device_id}");
    outln!("money ({}):", money.len());
    for m in &money {
        outln!(
            "  {}  {:<8}  {}  {}",
            time_text(&m.time),
            m.kind,
            format_mills(m.amount_mills),
            time_text(&m.reference)
        );
    }
    outln!("pieces ({}):", indicia.len());
    for i in &indicia {
        outln!(
            "  piece {}  {}  {:<4}  user {}  {}  ascending {}  descending {}  indicium {}",
            i.piece,
            format_mills(i.postage_mills),
            i.category.trim(),
            i.user_id,
            time_text(&i.time),
            format_mills(i.ascending_mills),
            format_mills(i.descending_mills),
            i.indicium
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn bulk(
    args: &ClientStateArgs,
    meter: Option<&str>,
    csv: &Path,
    out_dir: &Path,
    date: Option<&str>,
) -> Result<ExitCode> {
    let text = std::fs::read_to_string(csv)
        .with_context(|| format!("cannot read the CSV file {}", csv.display()))?;
    let rows = input::parse_bulk_csv(&text).with_context(|| {
        format!(
            "the CSV file {} is not valid; nothing was printed",
            csv.display()
        )
    })?;
    let date = date_or_today(date)?;
    let mut printer = Printer::open(args, meter)?;
    for row in &rows {
        check_origin(
            &printer.meter,
            row.origin_zip,
            &format!("line {}: from_zip", row.line),
        )
        .context("nothing was printed")?;
    }
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create the directory {}", out_dir.display()))?;
    let pdf_of = |n: usize| out_dir.join(format!("{n:06}.pdf"));
    for n in 1..=rows.len() {
        refuse_existing(&pdf_of(n)).context("nothing was printed")?;
    }
    let mut challenge = printer.challenge().await?;
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} labels {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut total = 0u64;
    let mut pieces: Vec<u64> = Vec::new();
    let mut last: Option<PrintAnswer> = None;
    for (k, row) in rows.iter().enumerate() {
        let n = k + 1;
        let piece = Piece {
            postage_mills: row.postage_mills,
            date,
            origin_zip: row.origin_zip,
            destination_zip: row.destination_zip,
            category: row.category,
        };
        let (answer, checked) = match printer.print_one(challenge, &piece, false).await {
            Ok(x) => x,
            Err(e) => {
                bar.abandon();
                outln!(
                    "stopped at row {n} (line {}): {} printed, {} not printed",
                    row.line,
                    n - 1,
                    rows.len() - (n - 1)
                );
                return Err(e.context(format!("row {n} (line {}) was refused", row.line)));
            }
        };
        write_label(&pdf_of(n), &checked.bytes, &checked.indicium).with_context(|| {
            format!(
                "row {n}: piece {} was printed but its label could not be written; its indicium is {}",
                answer.piece,
                hex::encode(checked.bytes)
            )
        })?;
        challenge = checked.new_challenge;
        total += row.postage_mills;
        pieces.push(answer.piece);
        last = Some(answer);
        bar.inc(1);
    }
    bar.finish_and_clear();
    outln!(
        "printed {} labels in {} (pieces {} to {}), postage {}",
        rows.len(),
        out_dir.display(),
        pieces.first().copied().unwrap_or_default(),
        pieces.last().copied().unwrap_or_default(),
        format_mills(total)
    );
    if let Some(a) = last {
        outln!(
            "registers: ascending {}, descending {}",
            format_mills(a.ascending_mills),
            format_mills(a.descending_mills)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_is_a_date() {
        let d = today_utc().unwrap();
        assert!(postvault_indicium::MailingDate::from_u32(d).is_ok());
        assert!(d > 20_240_000);
    }

    #[test]
    fn dates_print_back() {
        assert_eq!(ymd(20_261_123), "2026-11-23");
        assert_eq!(date_or_today(Some("2026-01-02")).unwrap(), 20_260_102);
    }

    #[test]
    fn label_paths_share_the_stem() {
        let (pdf, png) = label_paths(Path::new("/x/label.pdf"));
        assert_eq!(pdf, Path::new("/x/label.pdf"));
        assert_eq!(png, Path::new("/x/label.png"));
    }
}
