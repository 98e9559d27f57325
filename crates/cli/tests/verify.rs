//! End-to-end tests of `postvault verify`: a real indicium signed with a
//! P-256 key, an openssl-made CA and PSD certificate for that key, and the
//! label rendered to PNG by postvault-label; then the verdicts for the
//! label, a tampered indicium, a certificate from another CA, a certificate
//! for another key, an image with no symbol, and usage errors.
use std::path::Path;
use std::process::{Command, Output, Stdio};

use postvault_crypto::Faults;
use postvault_crypto::ecdsa::{EcdsaP256KeyPair, public_key_to_pem};
use postvault_indicium::{DeviceId, Indicium, MailCategory, MailingDate, Zip4};
use postvault_label::{LabelText, render_pdf, render_png};

const BIN: &str = env!("CARGO_BIN_EXE_postvault");

fn postvault(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run postvault")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stdout and stderr together.
fn text(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Runs `/usr/bin/openssl` in `dir`; fails the test with its stderr if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run /usr/bin/openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed P-256 CA `name.pem` with key `name.key`.
fn make_ca(dir: &Path, name: &str) {
    let key = format!("{name}.key");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &key,
            "-subj",
            &format!("/O=postvault test/CN={name}"),
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// Has the CA `ca` certify `public_key` for device 0042-0001-00000017 with
/// serial 0x0123456789ABCDEF; writes and returns the path of `out` (PEM).
/// The request is signed by a throwaway key; -force_pubkey puts ours in.
fn certify(dir: &Path, ca: &str, public_key: &[u8; 65], out: &str) -> String {
    std::fs::write(
        dir.join(format!("{out}.pub.pem")),
        public_key_to_pem(public_key),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{out}.throwaway.key"),
            "-subj",
            "/O=postvault/CN=0042-0001-00000017",
            "-out",
            &format!("{out}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{out}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-force_pubkey",
            &format!("{out}.pub.pem"),
            "-set_serial",
            "0x0123456789ABCDEF",
            "-days",
            "30",
            "-out",
            out,
        ],
    );
    s(&dir.join(out)).to_owned()
}

/// The indicium of the tests, signed with `key`.
fn signed_indicium(key: &EcdsaP256KeyPair) -> Indicium {
    let mut ind = Indicium {
        certificate_serial: 0x89AB_CDEF,
        device: DeviceId {
            vendor: 42,
            model: 1,
            serial: 17,
        },
        ascending_register: 1_234_567,
        postage: 730,
        date: MailingDate::new(2026, 11, 23).unwrap(),
        origin: Zip4::new(12345, 6789).unwrap(),
        software_id: 7,
        destination: Zip4::new(98765, 4321).unwrap(),
        piece_counter: 17,
        descending_register: 98_765,
        category: MailCategory::FIRST_CLASS,
        signature: [0; 64],
    };
    ind.signature = key.sign(&ind.payload().unwrap()).unwrap();
    ind
}

/// A CA, a PSD key certified by it, a signed indicium and its label.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    key: EcdsaP256KeyPair,
    bytes: [u8; 113],
    ca: String,
    cert: String,
    label: String,
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        make_ca(&dir, "ca");
        let key = EcdsaP256KeyPair::generate(&Faults::none()).unwrap();
        let cert = certify(&dir, "ca", &key.public_key(), "psd.pem");
        let ind = signed_indicium(&key);
        let bytes = ind.to_bytes().unwrap();
        let label = dir.join("label.png");
        std::fs::write(
            &label,
            render_png(&bytes, &LabelText::from_indicium(&ind), 203).unwrap(),
        )
        .unwrap();
        Setup {
            ca: s(&dir.join("ca.pem")).to_owned(),
            label: s(&label).to_owned(),
            _tmp: tmp,
            dir,
            key,
            bytes,
            cert,
        }
    }

    fn verify(&self, input: &[&str], ca: &str, cert: &str) -> Output {
        let mut args = vec!["verify"];
        args.extend_from_slice(input);
        args.extend(["--ca", ca, "--cert", cert]);
        postvault(&args)
    }
}

fn assert_not_valid(o: &Output, reason: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    let out = stdout(o);
    assert!(out.starts_with("NOT VALID: "), "{out}");
    assert!(out.contains(reason), "expected {reason:?} in:\n{out}");
    assert!(out.contains("what to do: "), "{out}");
}

#[test]
fn a_genuine_label_is_valid_from_png_pdf_raster_hex_and_bytes() {
    let t = Setup::new();
    let o = t.verify(&[&t.label], &t.ca, &t.cert);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("VALID: this indicium was signed by PSD 0042-0001-00000017"),
        "{out}"
    );
    for field in [
        "0042-0001-00000017",
        "$0.73 (730 mills)",
        "2026-11-23",
        "12345-6789",
        "98765-4321",
        "piece                17",
        "$1234.567",
        "$98.765",
        "FC",
        "0x89abcdef",
        "CN=0042-0001-00000017",
    ] {
        assert!(out.contains(field), "{field:?} in:\n{out}");
    }

    // The same indicium as hex and as a raw file.
    let hex = t
        .bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let o = t.verify(&["--hex", &hex], &t.ca, &t.cert);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stdout(&o).starts_with("VALID: "));
    let raw = t.dir.join("indicium.bin");
    std::fs::write(&raw, t.bytes).unwrap();
    let o = t.verify(&["--bytes", s(&raw)], &t.ca, &t.cert);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // A DER CA certificate works as well as PEM.
    let der = t.dir.join("ca.der");
    openssl(
        &t.dir,
        &["x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der"],
    );
    let o = t.verify(&[&t.label], s(&der), &t.cert);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // The PDF label, printed (rasterised) and scanned back as a JPEG.
    let ind = Indicium::from_bytes(&t.bytes).unwrap();
    let pdf = t.dir.join("label.pdf");
    std::fs::write(
        &pdf,
        render_pdf(&t.bytes, &LabelText::from_indicium(&ind)).unwrap(),
    )
    .unwrap();
    let raster = t.dir.join("scan");
    let ppm = Command::new("pdftoppm")
        .args([
            "-r",
            "200",
            "-gray",
            "-jpeg",
            "-singlefile",
            s(&pdf),
            s(&raster),
        ])
        .status()
        .expect(
            "pdftoppm (Debian poppler-utils) is needed: run scripts/test.sh, which installs it",
        );
    assert!(ppm.success());
    let o = t.verify(&[s(&raster.with_extension("jpg"))], &t.ca, &t.cert);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_tampered_indicium_is_not_valid() {
    let t = Setup::new();
    // Flip one bit of the postage (byte 21) and of the signature (byte 60).
    for at in [21, 60] {
        let mut bytes = t.bytes;
        bytes[at] ^= 0x01;
        let hex = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let o = t.verify(&["--hex", &hex], &t.ca, &t.cert);
        assert_not_valid(&o, "signature does not verify");
        assert!(stdout(&o).contains("altered or forged"), "{}", stdout(&o));
        assert!(
            stdout(&o).contains("none of it can be trusted"),
            "{}",
            stdout(&o)
        );
    }
    // A byte that makes it no indicium at all (version 2).
    let mut bytes = t.bytes;
    bytes[0] = 2;
    let o = t.verify(&["--hex", &hex_of(&bytes)], &t.ca, &t.cert);
    assert_not_valid(&o, "does not hold a postvault indicium");
    // The wrong length.
    let o = t.verify(&["--hex", &hex_of(&t.bytes[..112])], &t.ca, &t.cert);
    assert_not_valid(&o, "exactly 113 bytes");
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_certificate_from_another_ca_is_not_valid() {
    let t = Setup::new();
    make_ca(&t.dir, "other");
    // The right key, certified by another CA.
    let cert = certify(&t.dir, "other", &t.key.public_key(), "other-psd.pem");
    let o = t.verify(&[&t.label], &t.ca, &cert);
    assert_not_valid(&o, "does not verify with the CA certificate's key");
    assert!(
        stdout(&o).contains("not issued by this CA"),
        "{}",
        stdout(&o)
    );
    // It is valid for the other CA.
    let other_ca = s(&t.dir.join("other.pem")).to_owned();
    let o = t.verify(&[&t.label], &other_ca, &cert);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_certificate_for_another_key_is_not_valid() {
    let t = Setup::new();
    let other = EcdsaP256KeyPair::generate(&Faults::none()).unwrap();
    let cert = certify(&t.dir, "ca", &other.public_key(), "other-key.pem");
    let o = t.verify(&[&t.label], &t.ca, &cert);
    assert_not_valid(&o, "signature does not verify");
}

#[test]
fn an_expired_certificate_is_not_valid() {
    let t = Setup::new();
    // The certificate is valid for 30 days from its issue; check a year on.
    let pem = std::fs::read(&t.cert).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let issued = pem.parse_x509().unwrap().validity().not_before.timestamp();
    let in_a_year = (issued + 365 * 86_400).to_string();
    let o = postvault(&[
        "verify", &t.label, "--ca", &t.ca, "--cert", &t.cert, "--at", &in_a_year,
    ]);
    assert_not_valid(&o, "has expired");
}

#[test]
fn images_without_a_symbol_are_not_valid() {
    let t = Setup::new();
    let blank = t.dir.join("blank.png");
    image::GrayImage::from_pixel(400, 300, image::Luma([255]))
        .save(&blank)
        .unwrap();
    let o = t.verify(&[s(&blank)], &t.ca, &t.cert);
    assert_not_valid(&o, "no Data Matrix symbol was found");
    assert!(
        stdout(&o).contains("scan or photograph the label again"),
        "{}",
        stdout(&o)
    );

    let junk = t.dir.join("junk.png");
    std::fs::write(&junk, b"this is not an image").unwrap();
    let o = t.verify(&[s(&junk)], &t.ca, &t.cert);
    assert_not_valid(&o, "not a readable PNG or JPEG image");
}

#[test]
fn usage_and_file_errors() {
    let t = Setup::new();
    // No input, two inputs, no --ca: usage errors (2).
    for args in [
        vec!["verify", "--ca", &t.ca, "--cert", &t.cert],
        vec![
            "verify", &t.label, "--hex", "00", "--ca", &t.ca, "--cert", &t.cert,
        ],
        vec!["verify", &t.label, "--cert", &t.cert],
        vec!["verify", "--hex", "xyz", "--ca", &t.ca, "--cert", &t.cert],
    ] {
        let o = postvault(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    // --help says where the certificate comes from without --cert.
    let o = postvault(&["verify", "--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("fetched from it"), "{}", stdout(&o));
    // Neither --cert nor --url: a usage error saying what to give.
    let o = postvault(&["verify", &t.label, "--ca", &t.ca]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--cert PSD.pem, or the postal server with --url"),
        "{}",
        text(&o)
    );
    // --url without a way to trust the server: a usage error.
    let o = postvault(&[
        "verify",
        &t.label,
        "--ca",
        &t.ca,
        "--url",
        "https://127.0.0.1:9",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--fingerprint"), "{}", text(&o));
    // A missing certificate file: an error (1), naming the file.
    let o = t.verify(&[&t.label], &t.ca, "/nonexistent/psd.pem");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("/nonexistent/psd.pem"), "{}", text(&o));
    // A CA file that is not a certificate.
    let o = t.verify(
        &[&t.label],
        &t.cert.replace("psd.pem", "psd.pem.pub.pem"),
        &t.cert,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("CERTIFICATE is expected"), "{}", text(&o));
}
