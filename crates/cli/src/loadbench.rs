//! `postvault bench` (no subcommand, or `bench load`): a load generator for
//! the postal server, next to the raw ECDSA P-256 signing rate of all the
//! machine's cores measured in the same run.
//!
//! Without `--url` it starts a server in this process
//! (`postvault_server::Server::start` on a new temporary data directory with
//! SQLite, 127.0.0.1 port 0, the development provider key the server makes),
//! and stops it and deletes the directory afterwards. With `--url` it loads
//! that server.
//!
//! Set-up (not timed): an account (a fresh random one, or `--login`), and
//! per client one meter reserved, registered through the customer-side
//! crypto of `postvault_client::customer` (the Configure PSD MAC and the
//! certificate chain checked) and bought up to $500.00. Then every client,
//! a tokio task with its own HTTPS connection, loops until the deadline:
//! build and MAC a print request on the meter's challenge chain, POST it,
//! check the answer (MAC, old challenge, registers; the indicium's fields
//! and signature on the first piece and one in [`VERIFY_EVERY`]), record the
//! latency. The first refused or failing request stops every client.
//!
//! The report is `load: X indicia/s` (count over the wall time of the load
//! phase) with count, errors and p50/p99 latency, then the signing baseline
//! (one thread per available core, each signing 49-byte messages with its
//! own key), and last `ratio=R` = X / the summed signing rate.
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use postvault_client::api::{PrintAnswer, RegistrationRequest};
use postvault_client::customer::{self, HmacKey, Piece};
use postvault_client::{Client, Trust, normalize_fingerprint};
use postvault_crypto::Faults;
use postvault_crypto::ecdsa::EcdsaP256KeyPair;
use postvault_crypto::hash::ct_eq;
use postvault_crypto::rng::Rng;
use postvault_module::Clock as _;
use postvault_module::psd::{self, DeviceId, IndiciumRequest, MAX_DESCENDING_CAP};
use postvault_server::{PrintStats, Server, ServerConfig};

use crate::cli::BenchLoadArgs;
use crate::client::{account_password, logon_result, today_utc, trust_from_flags};
use crate::conn::SystemClock;
use crate::{outln, usage};

/// The licensing ZIP+4 of every meter, and the pieces' origin (10001-0001).
const LICENSING_ZIP: u32 = 100_010_001;
/// Where the pieces go (20500-0001).
const DESTINATION_ZIP: u32 = 205_000_001;
/// First class.
const CATEGORY: [u8; 4] = *b"FC  ";
/// Every how many pieces of a client one is checked in full (fields and
/// signature with the meter's certificate); every answer's MAC, challenge
/// and registers are checked.
const VERIFY_EVERY: u64 = 64;
/// The signing baseline's default length, in seconds.
const SIGN_SECONDS: f64 = 5.0;
/// Signatures per clock reading in the signing baseline.
const SIGN_CHUNK: u32 = 64;

/// Runs `postvault bench [load]`.
pub fn run(a: &BenchLoadArgs) -> Result<ExitCode> {
    if a.server.url.is_none() && (a.server.fingerprint.is_some() || a.server.cacert.is_some()) {
        usage!(
            "--fingerprint and --cacert apply only with --url; without --url the bench starts its own server"
        );
    }
    let target = Duration::from_secs_f64(a.seconds);
    let sign_target =
        Duration::from_secs_f64(a.sign_seconds.unwrap_or(a.seconds.min(SIGN_SECONDS)));
    // The embedded server runs on this runtime, with the load generator:
    // it gets the async workers `postvault serve` would on SQLite (one per
    // CPU but one, left to the print path's blocking work). Against
    // `--url`, the load generator has the machine to itself.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if a.server.url.is_none() {
        builder.worker_threads(postvault_server::default_async_workers_here("sqlite"));
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (load, embedded) = runtime.block_on(load_phase(a, target))?;
    // The embedded server's tasks go with the runtime, before its directory.
    drop(runtime);
    if let Some(dir) = embedded {
        let path = dir.path().display().to_string();
        dir.close()
            .with_context(|| format!("cannot delete the bench's data directory {path}"))?;
    }

    let rate = load.count as f64 / load.wall.as_secs_f64();
    outln!(
        "load: {rate:.0} indicia/s with {} clients over {:.2} s; count {}, errors {}; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} signatures verified, every MAC, challenge and register checked",
        a.clients,
        load.wall.as_secs_f64(),
        load.count,
        load.errors.len(),
        ms(percentile(&load.latencies, 50)),
        ms(percentile(&load.latencies, 99)),
        ms(load.latencies.last().copied().unwrap_or_default()),
        load.verified,
    );
    if let Some(s) = load.server.filter(|s| s.batches > 0) {
        let per_batch = |d: Duration| ms(d) / s.batches as f64;
        outln!(
            "server: {} print batches of {:.1} pieces on average, {} pieces; a batch took {:.2} ms to lock and read its meters, {:.2} ms in the module, {:.2} ms to commit",
            s.batches,
            s.pieces as f64 / s.batches as f64,
            s.pieces,
            per_batch(s.lock_and_read),
            per_batch(s.module),
            per_batch(s.commit),
        );
    }
    if let Some(first) = load.errors.into_iter().next() {
        return Err(first.context(
            "the bench stopped at the first refused or failing piece (the bench sends only valid pieces: this is a server, network or bench problem)",
        ));
    }
    if load.count == 0 {
        bail!("no piece was printed in {:.2} s", a.seconds);
    }

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (signatures, sign_rate) = sign_baseline(threads, sign_target)?;
    outln!(
        "ecdsa p-256 sign (aws-lc-rs, {threads} threads, one key each): {sign_rate:.0}/s, {:.1} µs/signature per core; {signatures} signatures of {} bytes in {:.2} s",
        threads as f64 * 1e6 / sign_rate,
        postvault_indicium::PAYLOAD_LEN,
        sign_target.as_secs_f64(),
    );
    outln!("ratio={:.3}", rate / sign_rate);
    Ok(ExitCode::SUCCESS)
}

/// What the load phase measured.
struct Load {
    /// Pieces printed and checked.
    count: u64,
    /// From the start signal to the last client's last answer.
    wall: Duration,
    /// Every print's latency, sorted.
    latencies: Vec<Duration>,
    /// Signatures verified.
    verified: u64,
    /// One error per client that stopped on one.
    errors: Vec<anyhow::Error>,
    /// The embedded server's print path during the load (not with --url).
    server: Option<PrintStats>,
}

/// Starts the embedded server (unless --url), sets up, runs the load, stops
/// the server. Returns the figures and the embedded server's directory.
async fn load_phase(
    a: &BenchLoadArgs,
    target: Duration,
) -> Result<(Load, Option<tempfile::TempDir>)> {
    let started = Instant::now();
    let (url, trust, embedded) = match &a.server.url {
        Some(url) => {
            let Some(trust) = trust_from_flags(&a.server)? else {
                usage!(
                    "--url needs --fingerprint FP (the certificate sha256 `postvault serve` printed) or --cacert PEM"
                );
            };
            (url.clone(), trust, None)
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("postvault-loadbench-")
                .tempdir()
                .context("cannot create a temporary data directory for the server (set TMPDIR to a writable directory)")?;
            let mut config = ServerConfig::new(dir.path().join("data"))
                .context("configuring the embedded server")?;
            config.listen = "127.0.0.1:0".parse().context("the listen address")?;
            let server = Server::start(config, Arc::new(SystemClock))
                .await
                .context("starting the embedded server")?;
            let trust =
                Trust::Fingerprint(normalize_fingerprint(server.certificate_fingerprint())?);
            outln!(
                "server: embedded {} ({} modules, SQLite in {}, deleted afterwards)",
                server.url(),
                server.modules().len(),
                dir.path().display()
            );
            (server.url(), trust, Some((server, dir)))
        }
    };

    let set_up = set_up(a, &url, &trust).await;
    let result = match set_up {
        Ok(clients) => {
            outln!(
                "set up in {:.1} s: account {}, {} meters registered and bought up to $500.00 each",
                started.elapsed().as_secs_f64(),
                clients.login,
                clients.meters.len()
            );
            let server = embedded.as_ref().map(|(server, _)| server);
            let before = server.map(|s| s.print_stats());
            let mut load = drive(clients.meters, a.postage, target).await;
            load.server = server
                .zip(before)
                .map(|(s, before)| s.print_stats().since(&before));
            Ok(load)
        }
        Err(e) => Err(e),
    };
    // Every client is gone (its connection with it) before the server stops.
    let dir = match embedded {
        Some((server, dir)) => {
            server
                .shutdown()
                .await
                .context("stopping the embedded server")?;
            Some(dir)
        }
        None => None,
    };
    Ok((result?, dir))
}

/// One client: a connection, its meter and its expectations.
struct Meter {
    client: Client,
    device: DeviceId,
    device_id: String,
    user_id: String,
    key: HmacKey,
    certificate_der: Vec<u8>,
    /// The challenge the next request carries.
    challenge: [u8; 16],
    /// The descending register as the client expects it.
    descending: u64,
}

/// The set-up's result.
struct Clients {
    login: String,
    meters: Vec<Meter>,
}

/// Logs on (signing up first unless --login) and sets up one meter per client.
async fn set_up(a: &BenchLoadArgs, url: &str, trust: &Trust) -> Result<Clients> {
    let client = Client::new(url, trust.clone())?;
    let (login, password) = match &a.login {
        Some(login) => (
            login.clone(),
            account_password(login, a.password_file.as_deref(), false)?
                .expose_secret()
                .to_string(),
        ),
        None => {
            let mut rng = Rng::new(Faults::none());
            let login = format!("bench-{}", hex::encode(rng.array::<6>()?));
            let password = hex::encode(rng.array::<16>()?);
            client
                .sign_up(&login, &password)
                .await
                .with_context(|| format!("signing up {login} on {url}"))?;
            (login, password)
        }
    };
    let session = logon_result(client.logon(&login, &password).await)
        .with_context(|| format!("logging on as {login} at {url}"))?;
    let token = session.token;
    let client = client.with_token(token.clone());
    let deployment = client
        .deployment()
        .await
        .context("reading the deployment")?;
    if !deployment.provider_in_server {
        bail!(
            "the server at {url} holds no provider key, so postage cannot be bought through it; load a server that has one (an embedded bench server does)"
        );
    }
    let ca_der = customer::certificate_der(&deployment.ca_certificate_pem)
        .context("the deployment's CA certificate")?;
    let registration_key = Arc::new(deployment.registration_public_key);
    let ca_der = Arc::new(ca_der);
    let password = Arc::new(password);

    let bar = progress(u64::from(a.clients) * 2, "meters set up");
    // One at a time: concurrent reservations can outrun the server's stock
    // (see `reserve`).
    let mut reserved = Vec::with_capacity(a.clients as usize);
    for _ in 0..a.clients {
        reserved.push(reserve(&client).await?);
        bar.inc(1);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for device_id in reserved {
        // Each client its own connection (pool), sharing the session.
        let c = Client::new(url, trust.clone())?.with_token(token.clone());
        let (user_id, key, ca, pw, bar) = (
            login.clone(),
            registration_key.clone(),
            ca_der.clone(),
            password.clone(),
            bar.clone(),
        );
        tasks.spawn(async move {
            let m = add_meter(c, device_id, user_id, &key, &ca, &pw).await;
            bar.inc(1);
            m
        });
    }
    let mut meters = Vec::with_capacity(a.clients as usize);
    while let Some(joined) = tasks.join_next().await {
        meters.push(joined.context("a set-up task failed")??);
    }
    bar.finish_and_clear();
    Ok(Clients { login, meters })
}

/// How often a reservation answered 503 (no certified meter ready) is retried.
const RESERVE_TRIES: u32 = 40;

/// Reserves a meter. The server answers 503 when its stock of certified
/// meters ran out and the meters it made on demand went to concurrent
/// reservations; that is retried after a pause.
async fn reserve(client: &Client) -> Result<String> {
    let mut tries = 0;
    loop {
        match client.reserve_meter().await {
            Ok(r) => return Ok(r.device_id),
            Err(e) if e.status() == Some(503) && tries + 1 < RESERVE_TRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                return Err(anyhow!(e).context(format!("reserving a meter ({} tries)", tries + 1)));
            }
        }
    }
}

/// Registers and funds the reserved meter `device_id` on `client`'s
/// connection.
async fn add_meter(
    client: Client,
    device_id: String,
    user_id: String,
    registration_key: &str,
    ca_der: &[u8],
    password: &str,
) -> Result<Meter> {
    let device = customer::parse_device(&device_id)
        .context("the server reserved a meter with a malformed device ID")?;
    let (key, secrets) = {
        let mut rng = Rng::new(Faults::none());
        let key = customer::new_hmac_key(&mut rng)?;
        let secrets = customer::seal_registration(
            &mut rng,
            registration_key,
            &device,
            &user_id,
            &key,
            password,
        )?;
        (key, secrets)
    };
    let answer = client
        .register_meter(
            &device_id,
            &RegistrationRequest {
                user_id: user_id.clone(),
                secrets,
                licensing_zip: LICENSING_ZIP,
            },
        )
        .await
        .with_context(|| format!("registering meter {device_id}"))?;
    let challenge = customer::check_configure_mac(&key, &device, &user_id, &answer)
        .with_context(|| format!("the registration answer for meter {device_id}"))?;
    let certificate_der = customer::certificate_der(&answer.certificate_pem)
        .with_context(|| format!("the certificate of meter {device_id}"))?;
    postvault_indicium::check_psd_certificate(&certificate_der, ca_der, SystemClock.now())
        .with_context(|| {
            format!(
                "the certificate of meter {device_id} does not check against the deployment's CA"
            )
        })?;
    let mut meter = Meter {
        client,
        device,
        device_id,
        user_id,
        key,
        certificate_der,
        challenge,
        descending: 0,
    };
    meter.refill().await?;
    Ok(meter)
}

impl Meter {
    /// Buys postage up to the $500.00 a meter holds.
    async fn refill(&mut self) -> Result<()> {
        let amount = MAX_DESCENDING_CAP - self.descending;
        let p = self
            .client
            .purchase(&self.device_id, amount)
            .await
            .with_context(|| format!("buying {amount} mills for meter {}", self.device_id))?;
        if p.descending_mills != self.descending + amount {
            bail!(
                "meter {}: after buying {amount} mills the server says the descending register is {}, expected {}",
                self.device_id,
                p.descending_mills,
                self.descending + amount
            );
        }
        self.descending = p.descending_mills;
        Ok(())
    }
}

/// What one client did.
#[derive(Default)]
struct ClientRun {
    latencies: Vec<Duration>,
    verified: u64,
    error: Option<anyhow::Error>,
}

/// Runs every client until `target` has passed (or one fails).
async fn drive(meters: Vec<Meter>, postage: u64, target: Duration) -> Load {
    let date = today_utc().unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let printed = Arc::new(AtomicU64::new(0));
    let bar = progress(
        u64::try_from(target.as_millis()).unwrap_or(u64::MAX),
        "load ms",
    );
    let start = Instant::now();
    let deadline = start + target;
    let mut tasks = tokio::task::JoinSet::new();
    for m in meters {
        let (stop, printed) = (stop.clone(), printed.clone());
        tasks.spawn(client_loop(m, postage, date, deadline, stop, printed));
    }
    let ticker = {
        let (bar, printed) = (bar.clone(), printed.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                bar.set_position(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
                bar.set_message(format!("{} indicia", printed.load(Ordering::Relaxed)));
            }
        })
    };
    let mut out = Load {
        count: 0,
        wall: Duration::ZERO,
        latencies: Vec::new(),
        verified: 0,
        errors: Vec::new(),
        server: None,
    };
    while let Some(joined) = tasks.join_next().await {
        let run = joined.unwrap_or_else(|e| ClientRun {
            error: Some(anyhow!("a client task failed: {e}")),
            ..ClientRun::default()
        });
        out.count += run.latencies.len() as u64;
        out.latencies.extend(run.latencies);
        out.verified += run.verified;
        if let Some(e) = run.error {
            out.errors.push(e);
        }
    }
    out.wall = start.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    out.latencies.sort_unstable();
    out
}

/// One client's loop: print, check, record, until the deadline or a stop.
async fn client_loop(
    mut m: Meter,
    postage: u64,
    date: u32,
    deadline: Instant,
    stop: Arc<AtomicBool>,
    printed: Arc<AtomicU64>,
) -> ClientRun {
    let mut run = ClientRun::default();
    let piece = Piece {
        postage_mills: postage,
        date,
        origin_zip: LICENSING_ZIP,
        destination_zip: DESTINATION_ZIP,
        category: CATEGORY,
    };
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match print_one(&mut m, &piece, run.latencies.len() as u64).await {
            Ok((latency, verified)) => {
                run.latencies.push(latency);
                run.verified += u64::from(verified);
                printed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                run.error = Some(e);
                break;
            }
        }
    }
    run
}

/// Prints piece `n` (0-based) of meter `m`; returns its latency and
/// whether its signature was verified.
async fn print_one(m: &mut Meter, piece: &Piece, n: u64) -> Result<(Duration, bool)> {
    if m.descending < piece.postage_mills {
        m.refill().await?;
    }
    let req = customer::indicium_request(&m.key, &m.device, &m.user_id, m.challenge, piece);
    let wire = customer::print_request(&req);
    let t = Instant::now();
    let answer = m.client.print(&m.device_id, &wire).await;
    let latency = t.elapsed();
    let answer = answer.with_context(|| {
        format!(
            "printing piece {} of meter {} (after {:.1} ms)",
            n + 1,
            m.device_id,
            latency.as_secs_f64() * 1e3
        )
    })?;
    let verify = n.is_multiple_of(VERIFY_EVERY);
    m.challenge = check_answer(m, &req, &answer, verify)
        .with_context(|| format!("the answer for piece {} of meter {}", n + 1, m.device_id))?;
    m.descending -= piece.postage_mills;
    Ok((latency, verify))
}

/// Checks a print answer: device, response MAC under the meter's key, old
/// challenge, the registers; with `full`, `customer::check_print_answer`
/// too (the indicium's fields and its signature with the certificate).
/// Returns the new challenge.
fn check_answer(
    m: &Meter,
    req: &IndiciumRequest,
    answer: &PrintAnswer,
    full: bool,
) -> Result<[u8; 16]> {
    if answer.device_id != m.device_id {
        bail!("the answer is for meter {}", answer.device_id);
    }
    let expected_descending = m.descending - req.postage_mills;
    if answer.descending_mills != expected_descending {
        bail!(
            "the descending register is {} mills, expected {expected_descending}",
            answer.descending_mills
        );
    }
    if full {
        let checked = customer::check_print_answer(&m.key, req, answer, &m.certificate_der)?;
        if u64::from(checked.indicium.descending_register) != expected_descending {
            bail!(
                "the indicium says {}, expected descending register {expected_descending}",
                checked.indicium.summary()
            );
        }
        return Ok(checked.new_challenge);
    }
    let indicium = hex::decode(&answer.indicium).context("the indicium is not hex")?;
    if indicium.len() != postvault_indicium::INDICIUM_LEN {
        bail!("the indicium is {} bytes", indicium.len());
    }
    let old: [u8; 16] = hex_array("old_challenge", &answer.old_challenge)?;
    let new: [u8; 16] = hex_array("new_challenge", &answer.new_challenge)?;
    let mac: [u8; 32] = hex_array("mac", &answer.mac)?;
    if !ct_eq(
        &psd::indicium_response_mac(&m.key, &indicium, &old, &new),
        &mac,
    ) {
        bail!("the response MAC is wrong: this indicium did not come from the meter with our key");
    }
    if !ct_eq(&old, &req.challenge) {
        bail!("the answer's old challenge is not the one the request carried");
    }
    Ok(new)
}

fn hex_array<const N: usize>(field: &str, text: &str) -> Result<[u8; N]> {
    hex::decode(text)
        .ok()
        .and_then(|v| <[u8; N]>::try_from(v).ok())
        .ok_or_else(|| anyhow!("{field} is not {N} bytes of hex"))
}

/// The nearest-rank percentile of sorted `v` (zero when empty).
fn percentile(v: &[Duration], p: usize) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = (v.len() * p).div_ceil(100).max(1);
    v[rank.min(v.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Signs 49-byte messages on `threads` threads, one key each, for about
/// `target`; returns the signatures made and the summed rate (per second).
fn sign_baseline(threads: usize, target: Duration) -> Result<(u64, f64)> {
    let total = AtomicU64::new(0);
    let bar = progress(
        u64::try_from(target.as_millis()).unwrap_or(u64::MAX),
        "ecdsa ms",
    );
    let results: Vec<Result<(u64, Duration)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let total = &total;
                s.spawn(move || -> Result<(u64, Duration)> {
                    let key = EcdsaP256KeyPair::generate(&Faults::none())?;
                    let mut message = [0u8; postvault_indicium::PAYLOAD_LEN];
                    let mut signatures = 0u64;
                    let t = Instant::now();
                    while t.elapsed() < target {
                        for _ in 0..SIGN_CHUNK {
                            message[0] = message[0].wrapping_add(1);
                            std::hint::black_box(key.sign(std::hint::black_box(&message))?);
                        }
                        signatures += u64::from(SIGN_CHUNK);
                        total.fetch_add(u64::from(SIGN_CHUNK), Ordering::Relaxed);
                    }
                    Ok((signatures, t.elapsed()))
                })
            })
            .collect();
        let started = Instant::now();
        while handles.iter().any(|h| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            bar.set_position(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a signing thread panicked")))
            })
            .collect()
    });
    bar.finish_and_clear();
    let mut signatures = 0;
    let mut rate = 0.0;
    for r in results {
        let (n, elapsed) = r.context("the signing baseline")?;
        signatures += n;
        rate += n as f64 / elapsed.as_secs_f64();
    }
    Ok((signatures, rate))
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
fn progress(len: u64, what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix:>14} [{bar:40}] {pos}/{len} {msg} {elapsed}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len)
        .with_style(style)
        .with_prefix(what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99), Duration::from_millis(99));
        assert_eq!(percentile(&v[..1], 99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }
}
