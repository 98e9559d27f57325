//! `postvault verify`: anyone's offline check of a postage label. Reads the
//! indicium from a label image (or hex, or a raw file), checks the PSD
//! certificate against the CA certificate and the indicium's signature with
//! the PSD certificate, and prints a verdict a person can act on.
//!
//! Exit codes: 0 when the indicium is valid, 1 when it is not (or cannot be
//! read, or a certificate file cannot be read), 2 on a usage error.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use postvault_indicium::{ChainError, INDICIUM_LEN, Indicium, PsdCertificate, VerifyError, Zip4};
use postvault_label::{LabelError, LabelText, decode_image};
use postvault_module::Clock as _;

use crate::cli::{ServerTrustArgs, VerifyArgs};
use crate::conn::SystemClock;
use crate::output::rfc3339;
use crate::{outln, usage};

/// Where the indicium came from, for messages.
enum Source {
    Image(PathBuf),
    Hex(String),
    Bytes(PathBuf),
}

/// Runs `postvault verify`.
pub fn run(a: VerifyArgs) -> Result<ExitCode> {
    let source = match (a.image, a.hex, a.bytes) {
        (Some(p), None, None) => Source::Image(p),
        (None, Some(h), None) => Source::Hex(h),
        (None, None, Some(p)) => Source::Bytes(p),
        _ => usage!("give exactly one of IMAGE, --hex HEX or --bytes FILE"),
    };
    if a.cert.is_none() && a.server.url.is_none() {
        usage!(
            "give the PSD's certificate with --cert PSD.pem, or the postal server with --url URL (and --fingerprint FP or --cacert PEM) to fetch it from"
        );
    }
    // Usage and file errors first, so that a verdict is only ever about the label.
    let raw = match &source {
        Source::Hex(hex) => {
            let hex: String = hex.split_whitespace().collect();
            match hex::decode(&hex) {
                Ok(b) => Raw::Bytes(b),
                Err(e) => usage!(
                    "--hex is not hexadecimal ({e}); give the indicium's {} bytes as {} hex digits",
                    INDICIUM_LEN,
                    2 * INDICIUM_LEN
                ),
            }
        }
        Source::Image(p) => Raw::Image(read(p, "label image")?),
        Source::Bytes(p) => Raw::Bytes(read(p, "indicium file")?),
    };
    let ca = read_certificate(&a.ca, "CA certificate (--ca)")?;
    let local_cert = match &a.cert {
        Some(path) => Some(read_certificate(path, "PSD certificate (--cert)")?),
        None => None,
    };
    let at = a.at.unwrap_or_else(|| SystemClock.now());

    let bytes = match raw {
        Raw::Image(image) => match decode_image(&image) {
            Ok(b) => b.to_vec(),
            Err(e) => return Ok(unreadable(&source, &e.to_string(), image_hint(&e))),
        },
        Raw::Bytes(b) => b,
    };
    let indicium = match Indicium::from_bytes(&bytes) {
        Ok(i) => i,
        Err(e) => {
            return Ok(unreadable(
                &source,
                &format!("it does not hold a postvault indicium: {e}"),
                "this is not a postvault label, or it was damaged or altered: treat its postage as unpaid",
            ));
        }
    };

    let cert = match local_cert {
        Some(c) => c,
        None => fetch_certificate(&a.server, &indicium.device.to_string())?,
    };
    match indicium.verify_with_chain(&cert, &ca, at) {
        Ok(info) => {
            outln!(
                "VALID: this indicium was signed by PSD {}, whose certificate was issued by the CA.",
                indicium.device
            );
            outln!();
            print_fields(&indicium, Some(&info));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            outln!("NOT VALID: {e}");
            outln!("what to do: {}", failure_hint(&e, &indicium));
            outln!();
            outln!("The indicium reads as follows, but none of it can be trusted:");
            print_fields(&indicium, None);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The PSD certificate of `device` from the postal server (public route
/// `GET /v1/certificates/DEVICE`). The server is not trusted for the
/// verdict: the certificate is checked against --ca like a local one.
fn fetch_certificate(server: &ServerTrustArgs, device: &str) -> Result<Vec<u8>> {
    let Some(url) = &server.url else {
        usage!("give --cert PSD.pem, or --url (with --fingerprint or --cacert) to fetch it");
    };
    let Some(trust) = crate::client::trust_from_flags(server)? else {
        usage!("--url needs --fingerprint FP or --cacert PEM to know the server's certificate");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let view = runtime.block_on(async {
        let client = postvault_client::Client::new(url, trust)?;
        client.certificate(device).await
    });
    let view =
        view.map_err(|e| anyhow!("cannot fetch the certificate of PSD {device} from {url}: {e}"))?;
    postvault_client::customer::certificate_der(&view.certificate_pem)
        .with_context(|| format!("the certificate {url} sent for PSD {device}"))
}

/// The input, read but not yet decoded.
enum Raw {
    Image(Vec<u8>),
    Bytes(Vec<u8>),
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// Reads a certificate as DER, decoding PEM when the file is PEM.
fn read_certificate(path: &Path, what: &str) -> Result<Vec<u8>> {
    let bytes = read(path, what)?;
    if !bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Ok(bytes);
    }
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).map_err(|e| {
        anyhow!(
            "the {what} {} is not a PEM certificate: {e}",
            path.display()
        )
    })?;
    if pem.label != "CERTIFICATE" {
        bail!(
            "the {what} {} holds a PEM {:?} block; a CERTIFICATE is expected",
            path.display(),
            pem.label
        );
    }
    Ok(pem.contents)
}

/// The verdict for an input that holds no readable indicium.
fn unreadable(source: &Source, reason: &str, hint: &str) -> ExitCode {
    let from = match source {
        Source::Image(p) => format!("the image {}", p.display()),
        Source::Hex(_) => "the --hex input".into(),
        Source::Bytes(p) => format!("the file {}", p.display()),
    };
    outln!("NOT VALID: no indicium could be read from {from}: {reason}");
    outln!("what to do: {hint}");
    ExitCode::FAILURE
}

fn image_hint(e: &LabelError) -> &'static str {
    match e {
        LabelError::NoSymbol => {
            "scan or photograph the label again: the whole square symbol in the picture, flat, sharp and well lit, with a white margin around it"
        }
        LabelError::NotAnImage(_) | LabelError::TooLarge { .. } => {
            "give a PNG or JPEG scan or photo of the label (or the indicium itself with --hex or --bytes)"
        }
        _ => {
            "this is not a postvault label, or the wrong symbol was scanned: treat its postage as unpaid"
        }
    }
}

fn failure_hint(e: &ChainError, indicium: &Indicium) -> String {
    use ChainError as C;
    match e {
        C::CaCertificate(_) | C::NotCa { .. } | C::CaKey(_) | C::CaValidity { .. } => {
            "--ca must be the postvault CA certificate, valid today; get the current one from the postal operator".into()
        }
        C::Certificate(_) | C::Algorithm(_) | C::PsdIsCa => format!(
            "--cert must be the X.509 certificate of PSD {}, as issued by the postvault CA",
            indicium.device
        ),
        C::Signature | C::Issuer { .. } => format!(
            "the PSD certificate was not issued by this CA (or was altered): check that --ca is the postvault CA certificate and --cert the certificate of PSD {}; if both are right, treat the postage as unpaid",
            indicium.device
        ),
        C::NotYetValid { .. } | C::Expired { .. } => {
            "the PSD certificate was not valid at the time of the check, so it cannot vouch for this indicium: treat the postage as unpaid, or check again with --at UNIX for the time the label was made".into()
        }
        C::Indicium(VerifyError::SerialMismatch { indicium: serial, .. }) => format!(
            "--cert is not the certificate this indicium names: use the certificate of PSD {} whose serial number ends in 0x{serial:08x}",
            indicium.device
        ),
        C::Indicium(VerifyError::DeviceMismatch { .. }) => format!(
            "--cert belongs to another device: use the certificate of PSD {}",
            indicium.device
        ),
        C::Indicium(VerifyError::Signature) => {
            "the indicium was altered or forged (or signed with another key than its certificate's): treat the postage as unpaid".into()
        }
        C::Indicium(_) => format!(
            "--cert must be the ECDSA P-256 certificate of PSD {}; if it is, treat the postage as unpaid",
            indicium.device
        ),
    }
}

/// Mills as dollars with all three decimals.
fn mills(m: u64) -> String {
    format!("${}.{:03}", m / 1000, m % 1000)
}

fn zip(z: Zip4) -> String {
    if z == Zip4::NONE {
        "none (not addressed)".into()
    } else {
        z.to_string()
    }
}

/// The indicium's fields, and the certificate's when it was verified.
fn print_fields(i: &Indicium, cert: Option<&PsdCertificate>) {
    let text = LabelText::from_indicium(i);
    let line = |name: &str, value: String| outln!("  {name:<21}{value}");
    line("device", i.device.to_string());
    line("postage", format!("{} ({} mills)", text.amount, i.postage));
    line("mailing date", text.date);
    line("origin ZIP", text.origin);
    line("destination ZIP", zip(i.destination));
    line("piece", i.piece_counter.to_string());
    line("ascending register", mills(i.ascending_register));
    line(
        "descending register",
        mills(u64::from(i.descending_register)),
    );
    line("category", text.category);
    line("software ID", i.software_id.to_string());
    line(
        "certificate serial",
        format!("0x{:08x} (low 32 bits)", i.certificate_serial),
    );
    if let Some(c) = cert {
        line("certificate", c.subject.clone());
        line("issued by", c.issuer.clone());
        line(
            "valid",
            format!("{} to {}", rfc3339(c.not_before), rfc3339(c.not_after)),
        );
    }
}
