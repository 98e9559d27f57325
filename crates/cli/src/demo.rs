//! `postvault demo --out DIR [--store URL]`: the whole product once, end to
//! end, with development credentials.
//!
//! It starts an embedded postal server on a fresh data directory
//! (DIR/server: SQLite unless --store names another store, a module pool
//! set up by the automatic ceremony, its CA, a development provider key),
//! signs a customer up over HTTPS, registers a meter (the customer's HMAC
//! key and password sealed to the modules' registration key; the module's
//! MAC'd answer checked), buys $10.00 of postage, prints exactly one
//! first-class indicium (the challenge-chained, MAC'd request; the answer's
//! MAC and signature checked), verifies the label image as `postvault
//! verify` does, exports every module's audit key and verifies its audit
//! log, and leaves in DIR:
//!
//! * `label.png`, `label.pdf`: the 4x6 inch label;
//! * `indicium.bin`: the indicium's 113 bytes;
//! * `psd-cert.pem`, `ca-cert.pem`: the meter's and the CA's certificates;
//! * `audit/MODULE.log` and `audit/MODULE-key.pem` for every module: its
//!   audit log and audit verification key (`postvault audit verify`);
//! * `server/`: the server's data directory (it can be served again with
//!   `postvault serve --data DIR/server`).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use postvault_client::customer::{self, Piece};
use postvault_client::{Client, Trust};
use postvault_crypto::Faults;
use postvault_crypto::rng::Rng;
use postvault_indicium::{INDICIUM_LEN, Indicium};
use postvault_module::Clock;
use postvault_server::{ConfigFile, Overrides, Server, ServerConfig};

use crate::cli::DemoArgs;
use crate::conn::SystemClock;
use crate::outln;

/// The demo meter's licensing ZIP and the piece's origin: 10001-0001.
const ORIGIN_ZIP: u32 = 100_010_001;
/// Where the piece goes: 20500-0001.
const DESTINATION_ZIP: u32 = 205_000_001;
/// What the customer buys: $10.00.
const PURCHASE_MILLS: u64 = 10_000;
/// The piece's postage: $0.730 first class.
const POSTAGE_MILLS: u64 = 730;

/// Runs `postvault demo`.
pub fn run(a: DemoArgs) -> Result<ExitCode> {
    if a.out.exists()
        && std::fs::read_dir(&a.out)
            .with_context(|| format!("cannot read {}", a.out.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty: give a new or empty directory (the demo starts from a fresh store)",
            a.out.display()
        );
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(demo(&a.out, a.store.clone()))
}

fn step(n: u32, text: &str) {
    outln!("[{n}/8] {text}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

async fn demo(out: &Path, store: Option<String>) -> Result<ExitCode> {
    step(
        1,
        "starting an embedded postal server (module ceremony, CA, MeterGen)",
    );
    let data = out.join("server");
    let file = ConfigFile {
        meter_stock: Some(1),
        ..ConfigFile::default()
    };
    let config = ServerConfig::build(
        file,
        Overrides {
            data: Some(data.clone()),
            listen: Some("127.0.0.1:0".into()),
            store,
            module_sockets: Vec::new(),
        },
    )
    .map_err(|e| anyhow!("{e}"))?;
    let engine = config.store_engine();
    let server = Server::start(config, Arc::new(SystemClock))
        .await
        .with_context(|| format!("starting the server in {}", data.display()))?;
    let modules = server.modules();
    outln!(
        "      {} on {engine}, {} modules in service, certificate sha256 {}",
        server.url(),
        modules.iter().filter(|m| m.in_service).count(),
        server.certificate_fingerprint()
    );

    let result = customer_flow(out, &server).await;
    let keys = server.export_audit_keys().await;
    server.shutdown().await.context("stopping the server")?;
    let (device, piece) = result?;
    let keys = keys.context("exporting the modules' audit keys")?;

    step(8, "verifying every module's audit log with its audit key");
    let audit_dir = out.join("audit");
    std::fs::create_dir_all(&audit_dir)
        .with_context(|| format!("cannot create {}", audit_dir.display()))?;
    for m in &modules {
        let Some(id) = &m.module_id else { continue };
        let Some((_, key)) = keys.iter().find(|(k, _)| k == id) else {
            continue;
        };
        let key: [u8; 65] = key
            .as_slice()
            .try_into()
            .map_err(|_| anyhow!("module {id} exported an audit key of the wrong length"))?;
        let log_path = data.join(format!("modules/m{}/audit.log", m.index));
        let text = std::fs::read_to_string(&log_path)
            .with_context(|| format!("cannot read {}", log_path.display()))?;
        let entries = postvault_audit::parse_log(&text)
            .with_context(|| format!("the audit log {}", log_path.display()))?;
        let report = postvault_audit::verify_chain(&entries, &key)
            .map_err(|e| anyhow!("the audit log of module {id} does not verify: {e}"))?;
        if report.unsigned_tail > 0 {
            bail!(
                "the audit log of module {id} ends with {} unsigned entries (Export Audit Key should have closed it with a signed one)",
                report.unsigned_tail
            );
        }
        write(&audit_dir, &format!("{id}.log"), text.as_bytes())?;
        write(
            &audit_dir,
            &format!("{id}-key.pem"),
            postvault_crypto::ecdsa::public_key_to_pem(&key).as_bytes(),
        )?;
        outln!(
            "      module {id}: {} entries, {} signed, chain and signatures verified (audit/{id}.log, audit/{id}-key.pem)",
            report.entries,
            report.signed
        );
    }
    outln!();
    outln!(
        "demo ok: meter {device} printed piece {piece}; the label, its indicium and certificates are in {}",
        out.display()
    );
    outln!(
        "check it yourself: postvault verify {}/label.png --ca {}/ca-cert.pem --cert {}/psd-cert.pem",
        out.display(),
        out.display(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Steps 2 to 7 against the running server; returns the meter and piece.
async fn customer_flow(
    out: &Path,
    server: &postvault_server::RunningServer,
) -> Result<(String, u64)> {
    let api = |e: postvault_client::ClientError| anyhow!("{e}");
    let mut rng = Rng::new(Faults::none());
    let client = Client::new(
        &server.url(),
        Trust::Fingerprint(server.certificate_fingerprint().to_string()),
    )
    .map_err(api)?;

    step(2, "signing a customer up and logging on over HTTPS");
    let login = format!("demo-{}", hex::encode(rng.array::<4>()?));
    let password = hex::encode(rng.array::<16>()?);
    client.sign_up(&login, &password).await.map_err(api)?;
    let session = client.logon(&login, &password).await.map_err(api)?;
    let client = client.with_token(session.token);
    outln!("      customer {login}");

    step(
        3,
        "registering a meter (secrets sealed to the modules' registration key)",
    );
    let deployment = client.deployment().await.map_err(api)?;
    let reserved = client.reserve_meter().await.map_err(api)?;
    let device = customer::parse_device(&reserved.device_id)?;
    let hmac_key = customer::new_hmac_key(&mut rng)?;
    let sealed = customer::seal_registration(
        &mut rng,
        &deployment.registration_public_key,
        &device,
        &login,
        &hmac_key,
        &password,
    )?;
    let answer = client
        .register_meter(
            &reserved.device_id,
            &postvault_client::api::RegistrationRequest {
                user_id: login.clone(),
                secrets: sealed,
                licensing_zip: ORIGIN_ZIP,
            },
        )
        .await
        .map_err(api)?;
    customer::check_configure_mac(&hmac_key, &device, &login, &answer)
        .context("the module's registration answer failed its check")?;
    let psd_der = customer::certificate_der(&answer.certificate_pem)?;
    let ca_der = customer::certificate_der(&deployment.ca_certificate_pem)?;
    postvault_indicium::check_psd_certificate(&psd_der, &ca_der, SystemClock.now())
        .context("the meter's certificate does not chain to the deployment's CA")?;
    outln!(
        "      meter {} is {}; the module's MAC'd answer checks",
        answer.device_id,
        answer.state
    );

    step(
        4,
        "buying $10.00 of postage (signed by the development provider)",
    );
    let bought = client
        .purchase(&reserved.device_id, PURCHASE_MILLS)
        .await
        .map_err(api)?;
    outln!(
        "      descending register {} mills",
        bought.descending_mills
    );

    step(
        5,
        "printing one first-class indicium ($0.730, 10001-0001 to 20500-0001)",
    );
    let view = client.meter(&reserved.device_id).await.map_err(api)?;
    let challenge: [u8; 16] = view
        .challenge
        .as_deref()
        .and_then(|c| hex::decode(c).ok())
        .and_then(|c| c.try_into().ok())
        .ok_or_else(|| anyhow!("the meter has no challenge: it cannot print"))?;
    let piece = Piece {
        postage_mills: POSTAGE_MILLS,
        date: postvault_indicium::MailingDate::from_unix(SystemClock.now())
            .map_or(0, |d| d.as_u32()),
        origin_zip: ORIGIN_ZIP,
        destination_zip: DESTINATION_ZIP,
        category: *b"FC  ",
    };
    let request = customer::indicium_request(&hmac_key, &device, &login, challenge, &piece);
    let printed = client
        .print(&reserved.device_id, &customer::print_request(&request))
        .await
        .map_err(api)?;
    let checked = customer::check_print_answer(&hmac_key, &request, &printed, &psd_der)
        .context("the server's answer failed its check")?;
    outln!(
        "      piece {} signed by the module; answer MAC and signature check",
        printed.piece
    );

    step(
        6,
        "writing the label (PNG and 4x6 inch PDF), the indicium and certificates",
    );
    crate::client::write_label(&out.join("label.pdf"), &checked.bytes, &checked.indicium)?;
    write(out, "indicium.bin", &checked.bytes)?;
    write(out, "psd-cert.pem", answer.certificate_pem.as_bytes())?;
    write(out, "ca-cert.pem", deployment.ca_certificate_pem.as_bytes())?;

    step(
        7,
        "verifying the label image offline, as `postvault verify` does",
    );
    let png = std::fs::read(out.join("label.png")).context("reading label.png back")?;
    let decoded = postvault_label::decode_image(&png).context("decoding label.png")?;
    if decoded[..] != checked.bytes[..] || decoded.len() != INDICIUM_LEN {
        bail!("label.png does not decode to the indicium that was printed");
    }
    let indicium = Indicium::from_bytes(&decoded)?;
    indicium
        .verify_with_chain(&psd_der, &ca_der, SystemClock.now())
        .map_err(|e| anyhow!("the label does not verify: {e}"))?;
    outln!(
        "      VALID: {} from PSD {}",
        indicium.summary(),
        indicium.device
    );
    Ok((answer.device_id, printed.piece))
}
