//! `postvault bench module`: how fast one module makes indicia on one thread,
//! next to the raw ECDSA P-256 signing rate of the same crypto library,
//! measured in the same run (the baseline BENCHMARKS.md asks for).
//!
//! The set-up is the real thing, in process: a master module in a temporary
//! directory (file seal key), its crypto card holding a CA certificate and
//! a provider key, and N meters taken through Initialize PSD, Authorize PSD
//! (with a certificate from the module's own certificate authority: Create
//! Certificate Authority, then Issue PSD Certificate as the CA role), Configure PSD,
//! Authorize Customer and a download to the $500.00 maximum. The measured
//! loop sends Create Indicia batches of MAC'd requests through the secure
//! session, following each meter's challenge chain and the module's
//! checkpoint. Only the module calls are timed: building the requests,
//! checking the answers and refilling meters happen with the clock stopped.
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use postvault_crypto::Faults;
use postvault_crypto::ecdsa::EcdsaP256KeyPair;
use postvault_crypto::password::Argon2Params;
use postvault_crypto::rng::Rng;
use postvault_indicium::Indicium;
use postvault_module::checkpoint::SignedCheckpoint;
use postvault_module::keys::KeyToken;
use postvault_module::protocol::{AccountSettings, CryptoCardKeys, NewUser};
use postvault_module::psd::{
    self, CustomerSecrets, DeviceId, IndiciumItem, IndiciumRequest, ProviderBody, ProviderCommand,
    ProviderMessage, SealedPackage,
};
use postvault_module::{
    Clock, Module, ModuleClient, ModuleConfig, Password, Request, Response, Role,
};
use postvault_seal::{SealConfig, open_provider};
use zeroize::Zeroizing;

use crate::cli::{BenchCommand, BenchModuleArgs};
use crate::conn::{SystemClock, unexpected};
use crate::{outln, usage};

/// The meters' vendor ID and model number (serial numbers count from 1).
const VENDOR: u16 = 42;
const MODEL: u16 = 1;
/// The licensing ZIP+4 of every meter, and the pieces' origin (10001-0001).
const LICENSING_ZIP: u32 = 100_010_001;
/// Where the pieces go (20500-0001).
const DESTINATION_ZIP: u32 = 205_000_001;
/// The one user of each meter.
const METER_USER: &str = "bench";
/// First class.
const CATEGORY: [u8; 4] = *b"FC  ";
/// Every how many indicia one's signature is verified (the first batch's
/// are all verified); MACs, registers and piece counters are checked for all.
const VERIFY_EVERY: u64 = 16;
/// Signatures per clock reading in the ECDSA baseline.
const SIGN_CHUNK: u32 = 64;
/// The most items the module takes in one Create Indicia batch.
const MAX_BATCH: usize = 1024;

/// Runs one `postvault bench` command.
pub fn run(cmd: BenchCommand) -> Result<ExitCode> {
    match cmd {
        BenchCommand::Module(a) => module(&a),
    }
}

/// `postvault bench module`.
fn module(a: &BenchModuleArgs) -> Result<ExitCode> {
    let meters = a.meters as usize;
    let batch = a.batch.map_or(meters.min(MAX_BATCH), |b| b as usize);
    if batch > meters {
        usage!(
            "--batch {batch} is more than --meters {meters}: a meter appears at most once per batch (its next piece needs the challenge the batch returns); lower --batch or raise --meters"
        );
    }
    let target = Duration::from_secs_f64(a.seconds);

    let started = Instant::now();
    let mut bench = Bench::set_up(meters)?;
    outln!(
        "set up in {:.1} s: master module {} in {} (deleted afterwards), crypto card with a CA certificate and a provider key, {meters} meters leased and funded to {} mills each (operator and meter passwords use cheap Argon2id parameters; the bench is not about them)",
        started.elapsed().as_secs_f64(),
        bench.module_id,
        bench.dir.path().display(),
        psd::MAX_DESCENDING_CAP,
    );

    let m = bench.measure(batch, a.postage, target)?;
    let module_rate = m.issued as f64 / m.timed.as_secs_f64();
    outln!(
        "module: {module_rate:.0} indicia/s (batch {batch}, {meters} meters), {:.1} µs/indicium; {} indicia of {} mills in {} batches, {:.2} s in Create Indicia ({:.2} s wall), {} refills, {} signatures and every MAC checked",
        1e6 / module_rate,
        m.issued,
        a.postage,
        m.batches,
        m.timed.as_secs_f64(),
        m.wall.as_secs_f64(),
        m.refills,
        m.verified,
    );
    bench.finish()?;

    let (signatures, elapsed) = sign_baseline(target)?;
    let sign_rate = signatures as f64 / elapsed.as_secs_f64();
    outln!(
        "ecdsa p-256 sign (aws-lc-rs, 1 thread): {sign_rate:.0}/s, {:.1} µs/signature; {signatures} signatures of {} bytes in {:.2} s",
        1e6 / sign_rate,
        postvault_indicium::PAYLOAD_LEN,
        elapsed.as_secs_f64(),
    );
    outln!("ratio={:.3}", module_rate / sign_rate);
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
fn progress(len: u64, what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{msg:>16} [{bar:40}] {pos}/{len} {elapsed}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len)
        .with_style(style)
        .with_message(what.to_string())
}

/// What the measured loop counted.
struct Measured {
    /// Indicia issued (every item of every batch: a refusal stops the bench).
    issued: u64,
    batches: u64,
    /// Time spent inside the module calls.
    timed: Duration,
    /// Wall time of the whole loop, checks and refills included.
    wall: Duration,
    refills: u64,
    /// Indicium signatures verified.
    verified: u64,
}

/// One meter as the host (its database row and its customer) sees it.
struct Meter {
    device: DeviceId,
    device_id: String,
    /// The customer's HMAC key (the meter user's).
    hmac_key: Zeroizing<[u8; 32]>,
    package: SealedPackage,
    /// The module's last challenge to this meter.
    challenge: [u8; 16],
    /// The indicium verification key.
    public_key: Vec<u8>,
    certificate: Vec<u8>,
    /// Registers and piece count as the host expects them.
    descending: u64,
    ascending: u64,
    pieces: u64,
    /// Value downloaded so far (the provider's control total).
    control_total: u64,
    /// The provider's last message sequence number to this meter.
    sequence: u64,
}

/// A module with its meters, in a temporary directory.
struct Bench {
    // Field order is drop order: the module closes before its directory goes.
    client: ModuleClient,
    _module: Arc<Mutex<Module>>,
    dir: tempfile::TempDir,
    module_id: String,
    provider: EcdsaP256KeyPair,
    /// The module's newest checkpoint, as the database holds it.
    checkpoint: Option<SignedCheckpoint>,
    meters: Vec<Meter>,
    rng: Rng,
    /// The date of mailing, YYYYMMDD.
    date: u32,
}

/// A password nobody needs to know: 32 random hex digits.
fn throwaway_password(rng: &mut Rng) -> Result<String> {
    Ok(hex::encode(rng.array::<16>()?))
}

impl Bench {
    /// Creates and initializes the module and `count` funded meters.
    fn set_up(count: usize) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("postvault-bench-")
            .tempdir()
            .context("cannot create a temporary directory for the module (set TMPDIR to a writable directory)")?;
        let seal = open_provider(
            &SealConfig::File {
                key_path: dir.path().join("seal.key"),
            },
            true,
        )
        .context("cannot create the module's seal key")?;
        let mut config = ModuleConfig::new(&dir.path().join("module"), seal, Arc::new(SystemClock));
        config.argon2 = Argon2Params::TEST;
        let module = Arc::new(Mutex::new(Module::open(config)?));
        let mut client = ModuleClient::local(Arc::clone(&module))?;
        let mut rng = Rng::new(Faults::none());
        let now = SystemClock.now();

        // The master ceremony: operators, MKS, CA, crypto card.
        let so_password = Password::new(throwaway_password(&mut rng)?);
        let admin_password = Password::new(throwaway_password(&mut rng)?);
        let mut users = Vec::new();
        for (id, role) in [
            ("admin", Role::Administrator),
            ("so", Role::SecurityOfficer),
            ("kc1", Role::KeyCustodian),
            ("kc2", Role::KeyCustodian),
        ] {
            let password = match role {
                Role::SecurityOfficer => so_password.clone(),
                Role::Administrator => admin_password.clone(),
                _ => Password::new(throwaway_password(&mut rng)?),
            };
            users.push(NewUser {
                user_id: id.into(),
                role,
                password,
                settings: AccountSettings::default(),
            });
        }
        client.run(&Request::StartInitialization { time: now })?;
        client.run(&Request::InitializeAccessControl { users })?;
        client.logon("so", &so_password)?;
        client.run(&Request::GenerateMks)?;
        // The CA lives in the module: its key is a key token.
        let (ca_key, ca_certificate) = match client.run(&Request::CreateCertificateAuthority {
            common_name: "postvault bench CA".into(),
            days: 2,
        })? {
            Response::CertificateAuthority {
                key,
                certificate_der,
            } => (key, certificate_der),
            other => return Err(unexpected("CreateCertificateAuthority", &other)),
        };
        let provider = EcdsaP256KeyPair::generate(&Faults::none())?;
        let registration = match client.run(&Request::InitializeCryptoCard {
            keys: CryptoCardKeys::Generate,
            ca_certificate: Some(ca_certificate.clone()),
            provider_public_key: Some(provider.public_key().to_vec()),
        })? {
            Response::CryptoCard(out) => out.decryption_public_key,
            other => return Err(unexpected("InitializeCryptoCard", &other)),
        };
        // A Certificate Authority operator, who certifies the meters.
        let ca_password = Password::new(throwaway_password(&mut rng)?);
        client.run(&Request::BeginAdmin)?;
        client.logoff()?;
        client.logon("admin", &admin_password)?;
        client.run(&Request::CreateUser {
            user: NewUser {
                user_id: "ca".into(),
                role: Role::CertificateAuthority,
                password: ca_password.clone(),
                settings: AccountSettings::default(),
            },
        })?;
        client.logoff()?;
        client.logon("so", &so_password)?;
        client.run(&Request::EndAdmin)?;
        client.logoff()?;
        client.logon("ca", &ca_password)?;
        let ca = (ca_key, ca_certificate);
        let module_id = match client.run(&Request::GetStatus)? {
            Response::Status(s) => s.module_id.unwrap_or_default(),
            other => return Err(unexpected("GetStatus", &other)),
        };

        let mut bench = Self {
            client,
            _module: module,
            dir,
            module_id,
            provider,
            checkpoint: None,
            meters: Vec::with_capacity(count),
            rng,
            date: yyyymmdd(now),
        };
        let bar = progress(count as u64, "meters set up");
        for i in 0..count {
            let serial = u32::try_from(i + 1).context("too many meters")?;
            bench
                .add_meter(&ca, &registration, serial)
                .with_context(|| format!("setting up meter {serial}"))?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(bench)
    }

    /// Initialize PSD, Authorize PSD, Configure PSD, Authorize Customer and
    /// a download to the maximum DR; the meter joins `self.meters`.
    fn add_meter(
        &mut self,
        ca: &(KeyToken, Vec<u8>),
        registration: &[u8],
        serial: u32,
    ) -> Result<()> {
        let device = DeviceId {
            vendor: VENDOR,
            model: MODEL,
            serial,
        };
        let (package, public_key) = match self.client.run(&Request::InitializePsd { device })? {
            Response::PsdInitialized {
                package,
                public_key,
                ..
            } => (package, public_key),
            other => return Err(unexpected("InitializePsd", &other)),
        };
        let certificate = match self.client.run(&Request::IssuePsdCertificate {
            ca_key: ca.0.clone(),
            ca_certificate_der: ca.1.clone(),
            package: package.clone(),
            serial: 0x1000 + u64::from(serial),
            days: 1,
        })? {
            Response::PsdCertificate { certificate_der } => certificate_der,
            other => return Err(unexpected("IssuePsdCertificate", &other)),
        };
        let hmac_key = Zeroizing::new(self.rng.array::<32>()?);
        let i = self.meters.len();
        self.meters.push(Meter {
            device,
            device_id: device.to_string(),
            hmac_key,
            package,
            challenge: [0; 16],
            public_key,
            certificate: certificate.clone(),
            descending: 0,
            ascending: 0,
            pieces: 0,
            control_total: 0,
            sequence: 0,
        });
        let req = Request::AuthorizePsd {
            package: self.meters[i].package.clone(),
            checkpoint: self.checkpoint.clone(),
            certificate_der: certificate,
        };
        self.updated(i, &req, "AuthorizePsd")?;

        let password = Zeroizing::new(throwaway_password(&mut self.rng)?);
        let secrets = psd::seal_customer_secrets(
            &mut self.rng,
            registration,
            &device,
            &CustomerSecrets {
                user_id: METER_USER.into(),
                hmac_key: self.meters[i].hmac_key.clone(),
                password,
            },
        )?;
        let req = Request::ConfigurePsd {
            package: self.meters[i].package.clone(),
            checkpoint: self.checkpoint.clone(),
            secrets,
        };
        match self.client.run(&req)? {
            Response::PsdConfigured {
                package,
                checkpoint,
                challenge,
                mac,
            } => {
                let m = &mut self.meters[i];
                if mac != psd::configure_mac(&m.hmac_key, &device, METER_USER, &challenge) {
                    bail!("the module's Configure PSD answer for {device} does not verify");
                }
                m.package = package;
                m.challenge = challenge;
                self.checkpoint = Some(checkpoint);
            }
            other => return Err(unexpected("ConfigurePsd", &other)),
        }

        let message = signed(
            &self.provider,
            &mut self.meters[i],
            ProviderCommand::AuthorizeCustomer {
                licensing_zip: LICENSING_ZIP,
                max_descending_mills: psd::MAX_DESCENDING_CAP,
            },
        )?;
        let req = Request::AuthorizeCustomer {
            package: self.meters[i].package.clone(),
            checkpoint: self.checkpoint.clone(),
            message,
        };
        self.updated(i, &req, "AuthorizeCustomer")?;
        self.refill(i)
    }

    /// Runs a command for meter `i` answered by PSD Updated; keeps the
    /// package and the checkpoint.
    fn updated(&mut self, i: usize, req: &Request, name: &str) -> Result<()> {
        let m = &mut self.meters[i];
        match self
            .client
            .run(req)
            .with_context(|| format!("{name} for meter {}", m.device_id))?
        {
            Response::PsdUpdated {
                package,
                checkpoint,
                ..
            } => {
                m.package = package;
                self.checkpoint = Some(checkpoint);
                Ok(())
            }
            other => Err(unexpected(name, &other)),
        }
    }

    /// Downloads value until meter `i`'s DR is the maximum.
    fn refill(&mut self, i: usize) -> Result<()> {
        let m = &mut self.meters[i];
        let amount = psd::MAX_DESCENDING_CAP - m.descending;
        let message = signed(
            &self.provider,
            m,
            ProviderCommand::Download {
                amount_mills: amount,
                control_total_mills: m.control_total,
            },
        )?;
        let req = Request::DownloadPostageValue {
            package: m.package.clone(),
            checkpoint: self.checkpoint.clone(),
            message,
        };
        self.updated(i, &req, "DownloadPostageValue")?;
        let m = &mut self.meters[i];
        m.descending += amount;
        m.control_total += amount;
        Ok(())
    }

    /// Sends Create Indicia batches of `batch` meters, `postage` mills a
    /// piece, until `target` has been spent inside the module calls.
    fn measure(&mut self, batch: usize, postage: u64, target: Duration) -> Result<Measured> {
        let count = self.meters.len();
        let mut out = Measured {
            issued: 0,
            batches: 0,
            timed: Duration::ZERO,
            wall: Duration::ZERO,
            refills: 0,
            verified: 0,
        };
        let bar = progress(
            u64::try_from(target.as_millis()).unwrap_or(u64::MAX),
            "module ms",
        );
        let wall = Instant::now();
        let mut next = 0;
        while out.timed < target {
            let chosen: Vec<usize> = (0..batch).map(|j| (next + j) % count).collect();
            next = (next + batch) % count;
            let mut items = Vec::with_capacity(batch);
            for &i in &chosen {
                if self.meters[i].descending < postage {
                    self.refill(i)?;
                    out.refills += 1;
                }
                let m = &self.meters[i];
                let mut request = IndiciumRequest {
                    device_id: m.device_id.clone(),
                    user_id: METER_USER.into(),
                    challenge: m.challenge,
                    postage_mills: postage,
                    date: self.date,
                    origin_zip: LICENSING_ZIP,
                    destination_zip: DESTINATION_ZIP,
                    category: CATEGORY,
                    mac: [0; 32],
                };
                request.mac = psd::indicium_request_mac(&m.hmac_key, &request);
                items.push(IndiciumItem {
                    package: m.package.clone(),
                    request,
                });
            }
            let req = Request::CreateIndicia {
                checkpoint: self.checkpoint.clone(),
                items,
            };

            let t = Instant::now();
            let reply = self.client.run(&req);
            out.timed += t.elapsed();

            let (results, checkpoint) = match reply.context("Create Indicia")? {
                Response::IndiciaCreated {
                    results,
                    checkpoint,
                } => (results, checkpoint),
                other => return Err(unexpected("CreateIndicia", &other)),
            };
            if results.len() != chosen.len() {
                bail!(
                    "the module answered {} results to a batch of {}",
                    results.len(),
                    chosen.len()
                );
            }
            let first_batch = out.batches == 0;
            for (&i, result) in chosen.iter().zip(results) {
                let m = &mut self.meters[i];
                let issued = result.map_err(|e| {
                    anyhow!(
                        "the module refused the piece of meter {}: {e}; the bench sends only valid pieces, so this is a bug in the module or the bench: report it with this message and the command line",
                        m.device_id
                    )
                })?;
                let verify = first_batch || out.issued.is_multiple_of(VERIFY_EVERY);
                check_issued(m, &issued, postage, verify)?;
                m.package = issued.package;
                m.challenge = issued.new_challenge;
                out.issued += 1;
                out.verified += u64::from(verify);
            }
            self.checkpoint = Some(checkpoint.ok_or_else(|| {
                anyhow!("the module issued a batch of indicia but returned no checkpoint")
            })?);
            out.batches += 1;
            bar.set_position(u64::try_from(out.timed.as_millis()).unwrap_or(u64::MAX));
        }
        out.wall = wall.elapsed();
        bar.finish_and_clear();
        Ok(out)
    }

    /// Closes the session; the module and its directory go with `self`.
    fn finish(self) -> Result<()> {
        let Bench { mut client, .. } = self;
        client.logoff()?;
        client.close()?;
        Ok(())
    }
}

/// The next provider message to `m`, signed with the provider's key.
fn signed(
    provider: &EcdsaP256KeyPair,
    m: &mut Meter,
    command: ProviderCommand,
) -> Result<ProviderMessage> {
    m.sequence += 1;
    let body = ProviderBody {
        device_id: m.device_id.clone(),
        sequence: m.sequence,
        command,
    };
    let signature = provider.sign(&body.signing_bytes())?;
    Ok(ProviderMessage { body, signature })
}

/// Checks one issued indicium against what the host expects: the answer's
/// MAC under the user's key, the challenge chain, the registers and piece
/// count; and, when `verify`, the signature (with the bare key and with the
/// certificate). Updates the expected registers.
fn check_issued(
    m: &mut Meter,
    issued: &psd::IssuedIndicium,
    postage: u64,
    verify: bool,
) -> Result<()> {
    let mac = psd::indicium_response_mac(
        &m.hmac_key,
        &issued.indicium,
        &issued.old_challenge,
        &issued.new_challenge,
    );
    if mac != issued.mac || issued.old_challenge != m.challenge {
        bail!(
            "the module's answer for meter {} does not verify under the user's key or names another challenge",
            m.device_id
        );
    }
    let indicium = Indicium::from_bytes(&issued.indicium)
        .with_context(|| format!("the indicium of meter {}", m.device_id))?;
    m.descending -= postage;
    m.ascending += postage;
    m.pieces += 1;
    if indicium.device != m.device.into()
        || u64::from(indicium.postage) != postage
        || u64::from(indicium.descending_register) != m.descending
        || indicium.ascending_register != m.ascending
        || indicium.piece_counter != m.pieces
    {
        bail!(
            "meter {}: the indicium says {}, expected AR {} DR {} piece {}",
            m.device_id,
            indicium.summary(),
            m.ascending,
            m.descending,
            m.pieces
        );
    }
    if verify
        && (!indicium.verify(&m.public_key)
            || indicium.verify_with_certificate(&m.certificate).is_err())
    {
        bail!(
            "the indicium of meter {} does not verify with its key and certificate",
            m.device_id
        );
    }
    Ok(())
}

/// Signs a 49-byte message (an indicium payload's size) with one key on
/// this thread for `target`; returns the signatures made and the time taken.
fn sign_baseline(target: Duration) -> Result<(u64, Duration)> {
    let key = EcdsaP256KeyPair::generate(&Faults::none())?;
    let mut message = [0u8; postvault_indicium::PAYLOAD_LEN];
    let bar = progress(
        u64::try_from(target.as_millis()).unwrap_or(u64::MAX),
        "ecdsa ms",
    );
    let mut signatures = 0u64;
    let mut elapsed = Duration::ZERO;
    while elapsed < target {
        let t = Instant::now();
        for _ in 0..SIGN_CHUNK {
            message[0] = message[0].wrapping_add(1);
            std::hint::black_box(key.sign(std::hint::black_box(&message))?);
        }
        elapsed += t.elapsed();
        signatures += u64::from(SIGN_CHUNK);
        bar.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    }
    bar.finish_and_clear();
    Ok((signatures, elapsed))
}

/// The UTC date of a Unix time, as the integer YYYYMMDD.
fn yyyymmdd(unix: i64) -> u32 {
    postvault_indicium::MailingDate::from_unix(unix).map_or(0, |d| d.as_u32())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(yyyymmdd(0), 19_700_101);
        assert_eq!(yyyymmdd(951_782_400), 20_000_229);
        assert_eq!(yyyymmdd(1_795_478_400), 20_261_124);
        assert_eq!(yyyymmdd(1_795_478_399), 20_261_123);
    }
}
