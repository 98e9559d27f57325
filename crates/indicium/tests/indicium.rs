//! Integration tests of the version-1 indicium: a hand-computed byte vector,
//! property-based round trips and decoding fuzz, range errors, signing with a
//! real ECDSA P-256 key, and verification against an X.509 certificate and
//! signature produced independently by the `openssl` command-line tool.

use std::path::Path;
use std::process::Command;

use postvault_crypto::Faults;
use postvault_crypto::ecdsa::EcdsaP256KeyPair;
use postvault_indicium::{
    ALG_ECDSA_P256_SHA256, DeviceId, INDICIUM_LEN, Indicium, IndiciumError, MailCategory,
    MailingDate, PAYLOAD_LEN, VERSION_1, VerifyError, Zip4,
};
use proptest::prelude::*;

/// The indicium of the fixed vector below.
fn vector_indicium() -> Indicium {
    let mut signature = [0u8; 64];
    for (i, b) in signature.iter_mut().enumerate() {
        *b = i as u8;
    }
    Indicium {
        certificate_serial: 0x0A0B_0C0D,
        device: DeviceId {
            vendor: 42,
            model: 7,
            serial: 123_456,
        },
        ascending_register: 1_234_567_890,
        postage: 730,
        date: MailingDate::new(2026, 11, 23).unwrap(),
        origin: "12345-6789".parse().unwrap(),
        software_id: 515,
        destination: Zip4::new(98765, 4321).unwrap(),
        piece_counter: (1 << 32) + 17,
        descending_register: 98_765_000,
        category: MailCategory::PRIORITY,
        signature,
    }
}

/// The expected 113 bytes, written by hand from the reference table, one
/// field per line (offset, field: value).
fn vector_hex() -> String {
    [
        "01",                               // 0   version 1
        "01",                               // 1   algorithm 1, ECDSA P-256 / SHA-256
        "0a0b0c0d",                         // 2   certificate serial 0x0A0B0C0D
        "002a",                             // 6   vendor ID 42
        "0007",                             // 8   PSD model 7
        "0001e240",                         // 10  PSD serial 123456
        "00499602d2",                       // 14  ascending register 1234567890 mills (5 bytes)
        "0002da",                           // 19  postage 730 mills (3 bytes)
        "01352903",                         // 22  date 20261123
        "075bcd15",                         // 26  origin 12345-6789 = 123456789
        "0203",                             // 30  software ID 515
        "3ade68b1",                         // 32  destination 98765-4321 = 987654321
        "0100000011",                       // 36  piece counter 2^32 + 17 (5 bytes)
        "05e308c8",                         // 41  descending register 98765000 mills
        "504d2020",                         // 45  category "PM  "
        "000102030405060708090a0b0c0d0e0f", // 49  signature, bytes 0x00..0x3f
        "101112131415161718191a1b1c1d1e1f",
        "202122232425262728292a2b2c2d2e2f",
        "303132333435363738393a3b3c3d3e3f",
    ]
    .concat()
}

#[test]
fn fixed_vector_encodes_to_hand_computed_bytes() {
    let expected = hex::decode(vector_hex()).unwrap();
    assert_eq!(expected.len(), INDICIUM_LEN);
    let ind = vector_indicium();
    let bytes = ind.to_bytes().unwrap();
    assert_eq!(hex::encode(bytes), vector_hex());
    assert_eq!(ind.payload().unwrap()[..], expected[..PAYLOAD_LEN]);
    assert_eq!(bytes[0], VERSION_1);
    assert_eq!(bytes[1], ALG_ECDSA_P256_SHA256);
    assert_eq!(Indicium::from_bytes(&expected).unwrap(), ind);
    assert_eq!(
        ind.summary(),
        "$0.730 postage, mailed 2026-11-23 from ZIP 12345-6789, device 0042-0007-00123456, piece 4294967313, category PM"
    );
}

/// Any valid indicium: every field in range, any signature bytes.
fn any_indicium() -> impl Strategy<Value = Indicium> {
    let date = (1u16..=9999, 1u8..=12, 1u8..=31)
        .prop_filter_map("not a calendar date", |(y, m, d)| {
            MailingDate::new(y, m, d).ok()
        });
    let zip = (0u32..=99_999, 0u16..=9_999).prop_map(|(z, p)| Zip4::new(z, p).unwrap());
    let category = "[A-Z0-9]{1,4}".prop_map(|s| s.parse::<MailCategory>().unwrap());
    let device =
        (any::<u16>(), any::<u16>(), any::<u32>()).prop_map(|(vendor, model, serial)| DeviceId {
            vendor,
            model,
            serial,
        });
    let signature = proptest::collection::vec(any::<u8>(), 64)
        .prop_map(|v| <[u8; 64]>::try_from(v.as_slice()).unwrap());
    (
        (
            any::<u32>(),
            device,
            0u64..1 << 40,
            0u32..1 << 24,
            date,
            zip.clone(),
        ),
        (
            any::<u16>(),
            zip,
            0u64..1 << 40,
            any::<u32>(),
            category,
            signature,
        ),
    )
        .prop_map(
            |(
                (certificate_serial, device, ascending_register, postage, date, origin),
                (software_id, destination, piece_counter, descending_register, category, signature),
            )| Indicium {
                certificate_serial,
                device,
                ascending_register,
                postage,
                date,
                origin,
                software_id,
                destination,
                piece_counter,
                descending_register,
                category,
                signature,
            },
        )
}

/// Decoding must not panic; what it accepts must re-encode to the same
/// bytes; a wrong length must be the length error stating 113.
fn check_decode(bytes: &[u8]) {
    match Indicium::from_bytes(bytes) {
        Ok(ind) => {
            assert_eq!(bytes.len(), INDICIUM_LEN);
            assert_eq!(&ind.to_bytes().unwrap()[..], bytes);
        }
        Err(e) if bytes.len() != INDICIUM_LEN => {
            assert_eq!(
                e,
                IndiciumError::Length {
                    expected: 113,
                    actual: bytes.len()
                }
            );
            assert!(e.to_string().contains("exactly 113 bytes"), "{e}");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_trip(ind in any_indicium()) {
        let bytes = ind.to_bytes().unwrap();
        prop_assert_eq!(&bytes[..PAYLOAD_LEN], &ind.payload().unwrap()[..]);
        prop_assert_eq!(&bytes[PAYLOAD_LEN..], &ind.signature[..]);
        prop_assert_eq!(Indicium::from_bytes(&bytes).unwrap(), ind);
    }

    #[test]
    fn decode_random_113_bytes(bytes in proptest::collection::vec(any::<u8>(), INDICIUM_LEN)) {
        check_decode(&bytes);
    }

    #[test]
    fn decode_random_113_bytes_with_valid_header(
        mut bytes in proptest::collection::vec(any::<u8>(), INDICIUM_LEN)
    ) {
        // Get past the version and algorithm checks to reach the field checks.
        bytes[0] = VERSION_1;
        bytes[1] = ALG_ECDSA_P256_SHA256;
        check_decode(&bytes);
    }

    #[test]
    fn decode_mutated_valid_indicium(
        ind in any_indicium(),
        edits in proptest::collection::vec((0..INDICIUM_LEN, any::<u8>()), 1..4),
    ) {
        let mut bytes = ind.to_bytes().unwrap();
        for (at, b) in edits {
            bytes[at] = b;
        }
        check_decode(&bytes);
    }

    #[test]
    fn decode_random_lengths(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_decode(&bytes);
    }
}

/// `result` is an `OutOfRange` error for `field` whose message names the field and value.
fn assert_out_of_range(result: Result<[u8; PAYLOAD_LEN], IndiciumError>, field: &str, value: u64) {
    let e = result.unwrap_err();
    match &e {
        IndiciumError::OutOfRange {
            field: f, value: v, ..
        } => {
            assert_eq!((*f, *v), (field, value));
        }
        other => panic!("expected OutOfRange for {field}, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(field) && msg.contains(&value.to_string()),
        "{msg}"
    );
}

#[test]
fn out_of_range_fields_are_named() {
    let base = vector_indicium();

    for ar in [1u64 << 40, u64::MAX] {
        let ind = Indicium {
            ascending_register: ar,
            ..base.clone()
        };
        assert_out_of_range(ind.payload(), "ascending_register", ar);
        assert!(ind.to_bytes().is_err());
        assert!(!ind.verify(&[4u8; 65]));
    }
    let ind = Indicium {
        postage: 1 << 24,
        ..base.clone()
    };
    assert_out_of_range(ind.payload(), "postage", 1 << 24);
    let msg = ind.payload().unwrap_err().to_string();
    assert!(msg.contains("16777215"), "the limit is stated: {msg}");
    let ind = Indicium {
        postage: u32::MAX,
        ..base.clone()
    };
    assert_out_of_range(ind.payload(), "postage", u64::from(u32::MAX));
    for pc in [1u64 << 40, u64::MAX] {
        let ind = Indicium {
            piece_counter: pc,
            ..base.clone()
        };
        assert_out_of_range(ind.payload(), "piece_counter", pc);
    }

    // An impossible date, built directly and decoded from bytes.
    let e = MailingDate::from_u32(20_260_230).unwrap_err();
    assert!(matches!(e, IndiciumError::Date { field: "date", .. }));
    assert!(e.to_string().contains("20260230"), "{e}");
    assert!(
        MailingDate::new(2026, 2, 30)
            .unwrap_err()
            .to_string()
            .contains("date")
    );
    let mut bytes = base.to_bytes().unwrap();
    bytes[22..26].copy_from_slice(&20_260_230u32.to_be_bytes());
    let e = Indicium::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(e, IndiciumError::Date { field: "date", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("20260230"), "{e}");

    // Bad categories, as text and as encoded bytes.
    for bad in ["fc", "", "TOOLONG"] {
        let e = bad.parse::<MailCategory>().unwrap_err();
        assert!(
            matches!(
                e,
                IndiciumError::Category {
                    field: "category",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().starts_with("category "), "{e}");
    }
    for bad in [*b"fc  ", *b"    ", *b"F C ", [0xff, b'C', b' ', b' ']] {
        let mut bytes = base.to_bytes().unwrap();
        bytes[45..49].copy_from_slice(&bad);
        let e = Indicium::from_bytes(&bytes).unwrap_err();
        assert!(
            matches!(
                e,
                IndiciumError::Category {
                    field: "category",
                    ..
                }
            ),
            "{e}"
        );
    }

    // ZIPs: the constructor's limits, and an impossible encoded value.
    assert!(
        Zip4::new(100_000, 0)
            .unwrap_err()
            .to_string()
            .contains("zip5")
    );
    assert!(
        Zip4::new(12_345, 10_000)
            .unwrap_err()
            .to_string()
            .contains("plus4")
    );
    let mut bytes = base.to_bytes().unwrap();
    bytes[26..30].copy_from_slice(&1_000_000_000u32.to_be_bytes());
    let e = Indicium::from_bytes(&bytes).unwrap_err();
    assert!(e.to_string().starts_with("origin "), "{e}");
}

#[test]
fn wrong_length_states_113() {
    for len in [0, 1, 49, 89, 112, 114, 226] {
        let e = Indicium::from_bytes(&vec![1u8; len]).unwrap_err();
        assert_eq!(
            e,
            IndiciumError::Length {
                expected: 113,
                actual: len
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("113") && msg.contains(&len.to_string()),
            "{msg}"
        );
    }
}

/// `ind` with its signature made by `key` over its payload.
fn signed(mut ind: Indicium, key: &EcdsaP256KeyPair) -> Indicium {
    ind.signature = key.sign(&ind.payload().unwrap()).unwrap();
    ind
}

#[test]
fn sign_and_verify_every_byte_matters() {
    let key = EcdsaP256KeyPair::generate(&Faults::none()).unwrap();
    let other = EcdsaP256KeyPair::generate(&Faults::none()).unwrap();
    let ind = signed(vector_indicium(), &key);
    assert!(ind.verify(&key.public_key()));
    assert!(!ind.verify(&other.public_key()));
    assert!(!ind.verify(&key.public_key()[..64]));
    assert!(!ind.verify(&[]));

    let bytes = ind.to_bytes().unwrap();
    let decoded = Indicium::from_bytes(&bytes).unwrap();
    assert!(decoded.verify(&key.public_key()));

    for at in 0..INDICIUM_LEN {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut tampered = bytes;
            tampered[at] ^= mask;
            if let Ok(t) = Indicium::from_bytes(&tampered) {
                assert!(
                    !t.verify(&key.public_key()),
                    "byte {at} xor 0x{mask:02x} still verifies"
                );
            }
        }
    }
}

// ---- verification against an openssl-made certificate and signature ----

/// Runs `/usr/bin/openssl` in `dir` and fails the test with its stderr if it fails.
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

/// Reads one DER INTEGER at `der[at..]`; returns it left-padded to 32 bytes
/// and the offset after it.
fn der_integer_32(der: &[u8], at: usize) -> ([u8; 32], usize) {
    assert_eq!(der[at], 0x02, "INTEGER tag");
    let len = usize::from(der[at + 1]);
    assert!(len < 0x80, "short-form length");
    let mut value = &der[at + 2..at + 2 + len];
    // Drop the sign byte(s) DER adds before a high bit.
    while value.len() > 32 && value[0] == 0 {
        value = &value[1..];
    }
    assert!(value.len() <= 32, "integer longer than 32 bytes");
    let mut out = [0u8; 32];
    out[32 - value.len()..].copy_from_slice(value);
    (out, at + 2 + len)
}

/// Converts a DER ECDSA-Sig-Value, SEQUENCE { INTEGER r, INTEGER s }, to r || s.
fn der_signature_to_raw(der: &[u8]) -> [u8; 64] {
    assert_eq!(der[0], 0x30, "SEQUENCE tag");
    assert!(der[1] < 0x80, "short-form length");
    assert_eq!(usize::from(der[1]) + 2, der.len(), "SEQUENCE length");
    let (r, next) = der_integer_32(der, 2);
    let (s, end) = der_integer_32(der, next);
    assert_eq!(end, der.len(), "trailing bytes");
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&r);
    out[32..].copy_from_slice(&s);
    out
}

/// Generates a P-256 key `name.key` and a CA-signed DER certificate `name.der`.
fn issue(dir: &Path, name: &str, curve: &str, subject: &str, serial: &str) -> Vec<u8> {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let der = format!("{name}.der");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
            "-out",
            &key,
        ],
    );
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-subj", subject, "-out", &csr],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "30",
            "-outform",
            "DER",
            "-out",
            &der,
        ],
    );
    std::fs::read(dir.join(der)).unwrap()
}

/// Signs `msg` with `name.key` using `openssl dgst -sha256 -sign`; returns r || s.
fn openssl_sign(dir: &Path, name: &str, msg: &[u8]) -> [u8; 64] {
    std::fs::write(dir.join("msg.bin"), msg).unwrap();
    openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-sign",
            &format!("{name}.key"),
            "-out",
            "sig.der",
            "msg.bin",
        ],
    );
    der_signature_to_raw(&std::fs::read(dir.join("sig.der")).unwrap())
}

#[test]
fn verify_with_openssl_certificate_and_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The CA.
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ca.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/O=postvault test/CN=postvault test CA",
            "-days",
            "30",
            "-set_serial",
            "1",
            "-out",
            "ca.pem",
        ],
    );

    // The PSD: a serial wider than 32 bits (low 32 bits 0x89ABCDEF, high bit
    // set) and the device ID in the subject CN.
    let device = DeviceId {
        vendor: 42,
        model: 1,
        serial: 17,
    };
    assert_eq!(device.to_string(), "0042-0001-00000017");
    let cert = issue(
        dir,
        "psd",
        "P-256",
        "/O=postvault/CN=0042-0001-00000017",
        "0x0123456789ABCDEF",
    );

    let mut ind = Indicium {
        certificate_serial: 0x89AB_CDEF,
        device,
        ..vector_indicium()
    };
    ind.signature = openssl_sign(dir, "psd", &ind.payload().unwrap());

    // The independent signature verifies, from the struct and from a decoded scan.
    assert_eq!(ind.verify_with_certificate(&cert), Ok(()));
    let bytes = ind.to_bytes().unwrap();
    assert_eq!(
        Indicium::from_bytes(&bytes)
            .unwrap()
            .verify_with_certificate(&cert),
        Ok(())
    );

    // Wrong certificate serial.
    let wrong = Indicium {
        certificate_serial: 0x0123_4567,
        ..ind.clone()
    };
    let e = wrong.verify_with_certificate(&cert).unwrap_err();
    assert_eq!(
        e,
        VerifyError::SerialMismatch {
            certificate: 0x89AB_CDEF,
            indicium: 0x0123_4567
        }
    );
    assert!(e.to_string().contains("serial"), "{e}");

    // Device ID mismatch (the certificate names another PSD).
    let wrong = Indicium {
        device: DeviceId {
            serial: 18,
            ..device
        },
        ..ind.clone()
    };
    let e = wrong.verify_with_certificate(&cert).unwrap_err();
    assert!(matches!(e, VerifyError::DeviceMismatch { .. }), "{e}");
    assert!(e.to_string().contains("0042-0001-00000018"), "{e}");

    // A tampered byte in the payload or in the signature.
    for at in [19, 25, 45, 49, 112] {
        let mut tampered = bytes;
        tampered[at] ^= 0x01;
        let t = Indicium::from_bytes(&tampered).unwrap();
        assert_eq!(
            t.verify_with_certificate(&cert),
            Err(VerifyError::Signature),
            "byte {at}"
        );
    }

    // A certificate whose CN has the device ID only inside a longer ID.
    let longer = issue(
        dir,
        "longer",
        "P-256",
        "/CN=10042-0001-000000170",
        "0x89ABCDEF",
    );
    let e = ind.verify_with_certificate(&longer).unwrap_err();
    assert!(matches!(e, VerifyError::DeviceMismatch { .. }), "{e}");

    // A CN that names the device among other words is refused, even with
    // a signature its key made: no module authorizes a PSD under it
    // (Authorize PSD takes a CN that is exactly the device ID).
    let worded = issue(
        dir,
        "worded",
        "P-256",
        "/CN=PSD 0042-0001-00000017",
        "0x89ABCDEF",
    );
    let mut reworded = ind.clone();
    reworded.signature = openssl_sign(dir, "worded", &ind.payload().unwrap());
    let e = reworded.verify_with_certificate(&worded).unwrap_err();
    assert!(matches!(e, VerifyError::DeviceMismatch { .. }), "{e}");
    assert!(e.to_string().contains("PSD 0042-0001-00000017"), "{e}");
    // A CN that is the device ID with its leading zeros left out is the
    // device: with that certificate's key, the indicium verifies.
    let plain = issue(dir, "plain", "P-256", "/CN=42-1-17", "0x89ABCDEF");
    let mut replain = ind.clone();
    replain.signature = openssl_sign(dir, "plain", &ind.payload().unwrap());
    assert_eq!(replain.verify_with_certificate(&plain), Ok(()));

    // A P-384 key is not accepted.
    let p384 = issue(dir, "p384", "P-384", "/CN=0042-0001-00000017", "0x89ABCDEF");
    let e = ind.verify_with_certificate(&p384).unwrap_err();
    assert!(matches!(e, VerifyError::PublicKey(_)), "{e}");

    // Not a certificate, or a certificate with trailing bytes.
    assert!(matches!(
        ind.verify_with_certificate(b"not a certificate"),
        Err(VerifyError::Certificate(_))
    ));
    let mut trailing = cert.clone();
    trailing.push(0);
    assert!(matches!(
        ind.verify_with_certificate(&trailing),
        Err(VerifyError::Certificate(_))
    ));

    // Fields out of range: reported as an encoding error, not a panic.
    let bad = Indicium {
        postage: 1 << 24,
        ..ind.clone()
    };
    assert!(matches!(
        bad.verify_with_certificate(&cert),
        Err(VerifyError::Encoding(IndiciumError::OutOfRange {
            field: "postage",
            ..
        }))
    ));
}

#[test]
fn der_signature_parsing() {
    // r with a sign byte (33 bytes), s short (1 byte).
    let mut der = vec![0x30, 0x26, 0x02, 0x21, 0x00];
    der.extend_from_slice(&[0x80; 32]);
    der.extend_from_slice(&[0x02, 0x01, 0x05]);
    let raw = der_signature_to_raw(&der);
    assert_eq!(&raw[..32], &[0x80; 32]);
    assert_eq!(&raw[32..63], &[0; 31]);
    assert_eq!(raw[63], 5);
}

// ---- the certificate chain: PSD certificate against the CA certificate ----

/// A self-signed P-256 CA `name.pem` / `name.key` (reusing `name.key` when it
/// exists) with the given extensions; returns its DER.
fn make_ca(dir: &Path, name: &str, subject: &str, extensions: &[&str]) -> Vec<u8> {
    let key = format!("{name}.key");
    if !dir.join(&key).exists() {
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
    }
    let pem = format!("{name}.pem");
    let mut args = vec![
        "req",
        "-x509",
        "-new",
        "-key",
        &key,
        "-subj",
        subject,
        "-days",
        "3650",
        "-set_serial",
        "1",
        "-out",
        &pem,
    ];
    for e in extensions {
        args.extend(["-addext", e]);
    }
    openssl(dir, &args);
    pem_to_der(dir, &pem)
}

fn pem_to_der(dir: &Path, pem: &str) -> Vec<u8> {
    let der = format!("{pem}.der");
    openssl(dir, &["x509", "-in", pem, "-outform", "DER", "-out", &der]);
    std::fs::read(dir.join(der)).unwrap()
}

/// Issues a certificate for the existing key `key_name.key` by the CA
/// `ca.pem`/`ca.key` for `days` days, with extensions from `extfile` if
/// given; returns its DER.
fn issue_by(
    dir: &Path,
    key_name: &str,
    ca: &str,
    subject: &str,
    days: &str,
    extfile: Option<&str>,
) -> Vec<u8> {
    let csr = format!("{key_name}.csr");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{key_name}.key"),
            "-subj",
            subject,
            "-out",
            &csr,
        ],
    );
    let out = format!("{key_name}-by-{ca}.der");
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-set_serial",
        "0x0123456789ABCDEF",
        "-days",
        days,
        "-outform",
        "DER",
        "-out",
        &out,
    ];
    if let Some(f) = extfile {
        args.extend(["-extfile", f]);
    }
    openssl(dir, &args);
    std::fs::read(dir.join(out)).unwrap()
}

#[test]
fn verify_with_chain_against_openssl_ca() {
    use postvault_indicium::{ChainError, check_psd_certificate};

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca_exts = [
        "basicConstraints=critical,CA:TRUE",
        "keyUsage=critical,keyCertSign,cRLSign",
    ];
    let ca = make_ca(
        dir,
        "ca",
        "/O=postvault test/CN=postvault test CA",
        &ca_exts,
    );
    // PSD certificates are issued a moment later, so that a time between the
    // CA's start and the PSD's exists.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "psd.key",
        ],
    );
    let subject = "/O=postvault/CN=0042-0001-00000017";
    let psd = issue_by(dir, "psd", "ca", subject, "30", None);

    let mut ind = Indicium {
        certificate_serial: 0x89AB_CDEF,
        device: DeviceId {
            vendor: 42,
            model: 1,
            serial: 17,
        },
        ..vector_indicium()
    };
    ind.signature = openssl_sign(dir, "psd", &ind.payload().unwrap());

    // A good chain: the certificate's own dates bound the checks below.
    let info = check_psd_certificate(&psd, &ca, now_from(&psd)).unwrap();
    assert_eq!(info.serial, "01:23:45:67:89:ab:cd:ef");
    assert!(info.subject.contains("CN=0042-0001-00000017"), "{info:?}");
    assert!(info.issuer.contains("postvault test CA"), "{info:?}");
    assert_eq!(info.not_after - info.not_before, 30 * 86_400);
    let at = info.not_before + 60;
    assert_eq!(ind.verify_with_chain(&psd, &ca, at), Ok(info.clone()));

    // Validity: before the PSD's start (the CA is already valid), at its end.
    assert_eq!(
        ind.verify_with_chain(&psd, &ca, info.not_before - 1),
        Err(ChainError::NotYetValid {
            at: info.not_before - 1,
            not_before: info.not_before
        })
    );
    let e = ind
        .verify_with_chain(&psd, &ca, info.not_after)
        .unwrap_err();
    assert_eq!(
        e,
        ChainError::Expired {
            at: info.not_after,
            not_after: info.not_after
        }
    );
    assert!(e.to_string().contains("expired"), "{e}");
    // ... and the CA's own validity (10 years).
    assert!(matches!(
        ind.verify_with_chain(&psd, &ca, info.not_before + 3651 * 86_400),
        Err(ChainError::CaValidity { .. })
    ));

    // The indicium's own checks come after the chain's.
    let mut tampered = ind.clone();
    tampered.postage += 1;
    assert_eq!(
        tampered.verify_with_chain(&psd, &ca, at),
        Err(ChainError::Indicium(VerifyError::Signature))
    );
    let other_serial = Indicium {
        certificate_serial: 1,
        ..ind.clone()
    };
    assert!(matches!(
        other_serial.verify_with_chain(&psd, &ca, at),
        Err(ChainError::Indicium(VerifyError::SerialMismatch { .. }))
    ));

    // Another CA (same subject, another key): its signature does not verify.
    let other_ca = make_ca(
        dir,
        "other",
        "/O=postvault test/CN=postvault test CA",
        &ca_exts,
    );
    let e = ind.verify_with_chain(&psd, &other_ca, at).unwrap_err();
    assert_eq!(e, ChainError::Signature);
    assert!(e.to_string().contains("another CA"), "{e}");
    let by_other = issue_by(dir, "psd", "other", subject, "30", None);
    assert_eq!(
        ind.verify_with_chain(&by_other, &ca, at),
        Err(ChainError::Signature)
    );
    assert_eq!(
        ind.verify_with_chain(&by_other, &other_ca, at).map(|_| ()),
        Ok(())
    );

    // The CA's key under another name: the signature verifies, the issuer does not match.
    std::fs::copy(dir.join("ca.key"), dir.join("renamed.key")).unwrap();
    let renamed = make_ca(dir, "renamed", "/CN=some other CA", &ca_exts);
    assert!(matches!(
        ind.verify_with_chain(&psd, &renamed, at),
        Err(ChainError::Issuer { .. })
    ));

    // A trust anchor that is not a CA certificate.
    std::fs::copy(dir.join("ca.key"), dir.join("leaf.key")).unwrap();
    let leaf = make_ca(
        dir,
        "leaf",
        "/O=postvault test/CN=postvault test CA",
        &["basicConstraints=critical,CA:FALSE"],
    );
    assert!(matches!(
        ind.verify_with_chain(&psd, &leaf, at),
        Err(ChainError::NotCa { .. })
    ));
    std::fs::copy(dir.join("ca.key"), dir.join("nosign.key")).unwrap();
    let nosign = make_ca(
        dir,
        "nosign",
        "/O=postvault test/CN=postvault test CA",
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,digitalSignature",
        ],
    );
    let e = ind.verify_with_chain(&psd, &nosign, at).unwrap_err();
    assert!(matches!(e, ChainError::NotCa { .. }), "{e}");
    assert!(e.to_string().contains("keyCertSign"), "{e}");

    // A PSD certificate that claims to be a CA.
    std::fs::write(
        dir.join("ca-ext.cnf"),
        "basicConstraints=critical,CA:TRUE\n",
    )
    .unwrap();
    let psd_ca = issue_by(dir, "psd", "ca", subject, "30", Some("ca-ext.cnf"));
    assert_eq!(
        ind.verify_with_chain(&psd_ca, &ca, at),
        Err(ChainError::PsdIsCa)
    );

    // A CA with a P-384 key.
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            "big.key",
        ],
    );
    let big = make_ca(dir, "big", "/CN=P-384 CA", &ca_exts);
    assert!(matches!(
        ind.verify_with_chain(&psd, &big, at),
        Err(ChainError::CaKey(_))
    ));

    // Not certificates; an altered PSD certificate.
    assert!(matches!(
        ind.verify_with_chain(b"junk", &ca, at),
        Err(ChainError::Certificate(_))
    ));
    assert!(matches!(
        ind.verify_with_chain(&psd, b"junk", at),
        Err(ChainError::CaCertificate(_))
    ));
    let mut trailing = psd.clone();
    trailing.push(0);
    assert!(matches!(
        ind.verify_with_chain(&trailing, &ca, at),
        Err(ChainError::Certificate(_))
    ));
    // Flip a byte of the subject's CN inside the signed part.
    let at_cn = psd
        .windows(18)
        .position(|w| w == b"0042-0001-00000017")
        .unwrap();
    let mut altered = psd.clone();
    altered[at_cn + 17] = b'8';
    assert_eq!(
        ind.verify_with_chain(&altered, &ca, at),
        Err(ChainError::Signature)
    );
}

/// A time inside `der`'s validity: its not-before, read with x509-parser.
fn now_from(der: &[u8]) -> i64 {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.validity().not_before.timestamp() + 1
}
