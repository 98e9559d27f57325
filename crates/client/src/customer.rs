//! The customer's side of the PSD protocol, done with the module crate's
//! own functions (`postvault_module::psd`), so client and module compute
//! the same bytes:
//!
//! - registration: a fresh HMAC key ([`new_hmac_key`]), the secrets sealed
//!   to the deployment's registration key ([`seal_registration`]), and the
//!   Configure PSD MAC checked ([`check_configure_mac`]);
//! - printing: the MACed Create Indicium request ([`indicium_request`],
//!   [`print_request`]) and the checks of the answer
//!   ([`check_print_answer`]): response MAC, old challenge, then the
//!   indicium's fields and its signature with the meter's certificate.
//!
//! The HMAC key is only ever in `Zeroizing` buffers and is never printed.
use postvault_crypto::hash::ct_eq;
use postvault_crypto::rng::Rng;
use postvault_indicium::{INDICIUM_LEN, Indicium, MailCategory};
use postvault_module::psd::{self, CustomerSecrets, DeviceId, HpkeSealed, IndiciumRequest};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use zeroize::Zeroizing;

use crate::api::{PrintAnswer, PrintRequest, RefundAnswer, Registration};
use crate::input::category_text;
use crate::{ClientError, Result};

/// A customer's HMAC key.
pub type HmacKey = Zeroizing<[u8; 32]>;

fn check(message: impl Into<String>) -> ClientError {
    ClientError::Check(message.into())
}

fn hex_array<const N: usize>(field: &str, text: &str) -> Result<[u8; N]> {
    hex::decode(text)
        .ok()
        .and_then(|v| <[u8; N]>::try_from(v).ok())
        .ok_or_else(|| {
            ClientError::Protocol(format!(
                "{field} is not {N} bytes of hex: {:?}",
                text.chars().take(80).collect::<String>()
            ))
        })
}

/// Parses a device ID (`0042-0001-00000017`; leading zeros optional).
pub fn parse_device(text: &str) -> Result<DeviceId> {
    text.trim().parse::<DeviceId>().map_err(|e| {
        ClientError::Input(format!(
            "{text:?} is not a device ID ({e}); `postvault client status` lists your meters"
        ))
    })
}

/// A fresh HMAC key from the continuous-tested generator.
pub fn new_hmac_key(rng: &mut Rng) -> Result<HmacKey> {
    let mut key = Zeroizing::new([0u8; 32]);
    rng.fill(&mut key[..])?;
    Ok(key)
}

/// An HMAC key from the bytes a key file holds.
pub fn hmac_key_from(secret: &postvault_crypto::SecretBytes) -> Result<HmacKey> {
    let bytes = secret.expose_secret();
    if bytes.len() != 32 {
        return Err(ClientError::State(
            "the meter key file does not hold a 32-byte HMAC key".into(),
        ));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(bytes);
    Ok(key)
}

/// The registration secrets (user ID, HMAC key, password) sealed to the
/// deployment's registration key (`registration_public_key_hex`, 32 bytes
/// hex), bound to `device`: exactly `psd::seal_customer_secrets`.
pub fn seal_registration(
    rng: &mut Rng,
    registration_public_key_hex: &str,
    device: &DeviceId,
    user_id: &str,
    hmac_key: &HmacKey,
    password: &str,
) -> Result<HpkeSealed> {
    let public: [u8; 32] = hex_array("registration_public_key", registration_public_key_hex)?;
    let secrets = CustomerSecrets {
        user_id: user_id.to_string(),
        hmac_key: hmac_key.clone(),
        password: Zeroizing::new(password.to_string()),
    };
    psd::seal_customer_secrets(rng, &public, device, &secrets)
        .map_err(|e| ClientError::Check(format!("cannot seal the registration secrets: {e}")))
}

/// Checks the Configure PSD answer: it is for `device` and `user_id`, and
/// its MAC is `psd::configure_mac` under our key over its challenge (so the
/// module got our key). Returns the challenge, which the first print carries.
pub fn check_configure_mac(
    hmac_key: &HmacKey,
    device: &DeviceId,
    user_id: &str,
    answer: &Registration,
) -> Result<[u8; 16]> {
    let answered = parse_device(&answer.device_id)
        .map_err(|_| check(format!("the answer names device {:?}", answer.device_id)))?;
    if answered != *device {
        return Err(check(format!(
            "the answer is for meter {answered}, not {device}"
        )));
    }
    if answer.user_id != user_id {
        return Err(check(format!(
            "the answer is for user {:?}, not {user_id:?}",
            answer.user_id
        )));
    }
    let challenge: [u8; 16] = hex_array("challenge", &answer.challenge)?;
    let mac: [u8; 32] = hex_array("mac", &answer.mac)?;
    let expected = psd::configure_mac(hmac_key, device, user_id, &challenge);
    if !ct_eq(&expected, &mac) {
        return Err(check(
            "the Configure PSD MAC is wrong: the module did not receive this client's key; \
             do not use this meter, and tell the postage vendor",
        ));
    }
    Ok(challenge)
}

/// What to print on one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Postage, mills.
    pub postage_mills: u64,
    /// YYYYMMDD.
    pub date: u32,
    /// ZIP5 * 10000 + plus-4.
    pub origin_zip: u32,
    /// ZIP5 * 10000 + plus-4, 0 when not addressed.
    pub destination_zip: u32,
    /// 4 space-padded bytes (`CORR` for a correction).
    pub category: [u8; 4],
}

/// The Create Indicium request for `piece`, with its MAC
/// (`psd::indicium_request_mac`) set.
pub fn indicium_request(
    hmac_key: &HmacKey,
    device: &DeviceId,
    user_id: &str,
    challenge: [u8; 16],
    piece: &Piece,
) -> IndiciumRequest {
    let mut req = IndiciumRequest {
        device_id: device.to_string(),
        user_id: user_id.to_string(),
        challenge,
        postage_mills: piece.postage_mills,
        date: piece.date,
        origin_zip: piece.origin_zip,
        destination_zip: piece.destination_zip,
        category: piece.category,
        mac: [0; 32],
    };
    req.mac = psd::indicium_request_mac(hmac_key, &req);
    req
}

/// The wire form of a MACed request (hex fields, category unpadded).
pub fn print_request(req: &IndiciumRequest) -> PrintRequest {
    PrintRequest {
        user_id: req.user_id.clone(),
        challenge: hex::encode(req.challenge),
        postage_mills: req.postage_mills,
        date: req.date,
        origin_zip: req.origin_zip,
        destination_zip: req.destination_zip,
        category: category_text(&req.category),
        mac: hex::encode(req.mac),
    }
}

/// A print answer that passed every check.
#[derive(Debug, Clone)]
pub struct CheckedPiece {
    /// The indicium, decoded.
    pub indicium: Indicium,
    /// Its 113 bytes.
    pub bytes: [u8; INDICIUM_LEN],
    /// The challenge the next request must carry.
    pub new_challenge: [u8; 16],
}

/// A PEM certificate as DER.
pub fn certificate_der(pem: &str) -> Result<Vec<u8>> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.as_ref().to_vec())
        .map_err(|e| ClientError::Protocol(format!("the certificate is not PEM: {e}")))
}

/// Checks a print (or correction) answer against the request `req` that
/// was sent, in this order: the response MAC
/// (`psd::indicium_response_mac` under our key, so it came from the
/// module), the old challenge (it answers this request), then the indicium:
/// it decodes, its device, postage, date, ZIPs and category are the
/// request's, and its signature verifies with the meter's certificate
/// (`certificate_der`). Nothing of an answer that fails may be used.
pub fn check_print_answer(
    hmac_key: &HmacKey,
    req: &IndiciumRequest,
    answer: &PrintAnswer,
    certificate_der: &[u8],
) -> Result<CheckedPiece> {
    let bytes = hex::decode(&answer.indicium)
        .map_err(|_| ClientError::Protocol("indicium is not hex".into()))?;
    let old: [u8; 16] = hex_array("old_challenge", &answer.old_challenge)?;
    let new: [u8; 16] = hex_array("new_challenge", &answer.new_challenge)?;
    let mac: [u8; 32] = hex_array("mac", &answer.mac)?;
    let expected = psd::indicium_response_mac(hmac_key, &bytes, &old, &new);
    if !ct_eq(&expected, &mac) {
        return Err(check(
            "the response MAC is wrong: this indicium did not come from the meter with our key; do not use it",
        ));
    }
    if !ct_eq(&old, &req.challenge) {
        return Err(check(
            "the answer's old challenge is not the one this request carried: it answers another request",
        ));
    }
    let bytes: [u8; INDICIUM_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
        check(format!(
            "the indicium is {} bytes, not {INDICIUM_LEN}",
            b.len()
        ))
    })?;
    let indicium = Indicium::from_bytes(&bytes)
        .map_err(|e| check(format!("the indicium does not decode: {e}")))?;
    let device = parse_device(&req.device_id)?;
    if DeviceId::from(indicium.device) != device {
        return Err(check(format!(
            "the indicium names meter {}, not {device}",
            indicium.device
        )));
    }
    if u64::from(indicium.postage) != req.postage_mills {
        return Err(check(format!(
            "the indicium carries {} mills of postage, not the {} asked for",
            indicium.postage, req.postage_mills
        )));
    }
    if indicium.date.as_u32() != req.date
        || indicium.origin.as_u32() != req.origin_zip
        || indicium.destination.as_u32() != req.destination_zip
        || indicium.category.as_bytes() != req.category
    {
        return Err(check(format!(
            "the indicium's date, ZIPs or category differ from the request ({})",
            indicium.summary()
        )));
    }
    indicium
        .verify_with_certificate(certificate_der)
        .map_err(|e| check(format!("the indicium's signature does not verify: {e}")))?;
    Ok(CheckedPiece {
        indicium,
        bytes,
        new_challenge: new,
    })
}

/// Checks a refund answer's indicium: it decodes, names `device`, is a
/// refund (`RFND`) for the refunded amount, and verifies with the meter's
/// certificate.
pub fn check_refund_indicium(
    device: &DeviceId,
    indicium_hex: &str,
    refunded_mills: u64,
    certificate_der: &[u8],
) -> Result<(Indicium, [u8; INDICIUM_LEN])> {
    let bytes: [u8; INDICIUM_LEN] = hex::decode(indicium_hex)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            ClientError::Protocol("the refund indicium is not 113 bytes of hex".into())
        })?;
    let indicium = Indicium::from_bytes(&bytes)
        .map_err(|e| check(format!("the refund indicium does not decode: {e}")))?;
    if DeviceId::from(indicium.device) != *device {
        return Err(check(format!(
            "the refund indicium names meter {}, not {device}",
            indicium.device
        )));
    }
    if indicium.category != MailCategory::REFUND {
        return Err(check(format!(
            "the refund indicium's category is {}, not RFND",
            indicium.category
        )));
    }
    if u64::from(indicium.postage) != refunded_mills {
        return Err(check(format!(
            "the refund indicium carries {} mills, but the server says {refunded_mills} were refunded",
            indicium.postage
        )));
    }
    indicium
        .verify_with_certificate(certificate_der)
        .map_err(|e| {
            check(format!(
                "the refund indicium's signature does not verify: {e}"
            ))
        })?;
    Ok((indicium, bytes))
}

/// [`check_refund_indicium`] for a customer refund answer.
pub fn check_refund_answer(
    device: &DeviceId,
    answer: &RefundAnswer,
    certificate_der: &[u8],
) -> Result<(Indicium, [u8; INDICIUM_LEN])> {
    check_refund_indicium(
        device,
        &answer.indicium,
        answer.refunded_mills,
        certificate_der,
    )
}

#[cfg(test)]
mod tests {
    use postvault_crypto::Faults;

    use super::*;

    fn device() -> DeviceId {
        "42-1-7".parse().unwrap()
    }

    fn key() -> HmacKey {
        Zeroizing::new([7u8; 32])
    }

    fn piece() -> Piece {
        Piece {
            postage_mills: 680,
            date: 20_261_123,
            origin_zip: 100_010_001,
            destination_zip: 205_000_001,
            category: *b"FC  ",
        }
    }

    #[test]
    fn request_mac_is_the_modules() {
        let req = indicium_request(&key(), &device(), "alice", [3; 16], &piece());
        assert_eq!(req.device_id, "0042-0001-00000007");
        let mut unmaced = req.clone();
        unmaced.mac = [0; 32];
        assert_eq!(req.mac, psd::indicium_request_mac(&key(), &unmaced));
        // Every field is covered by the MAC.
        let mut other = unmaced.clone();
        other.postage_mills += 1;
        assert_ne!(psd::indicium_request_mac(&key(), &other), req.mac);
        let wire = print_request(&req);
        assert_eq!(wire.category, "FC");
        assert_eq!(wire.challenge, hex::encode([3u8; 16]));
        assert_eq!(wire.mac, hex::encode(req.mac));
        let json = serde_json::to_value(&wire).unwrap();
        assert_eq!(json["origin_zip"], 100_010_001);
        assert_eq!(json["user_id"], "alice");
    }

    #[test]
    fn fresh_keys_differ() {
        let mut rng = Rng::new(Faults::none());
        let a = new_hmac_key(&mut rng).unwrap();
        let b = new_hmac_key(&mut rng).unwrap();
        assert_ne!(*a, *b);
    }

    fn registration(mac: [u8; 32]) -> Registration {
        Registration {
            device_id: "0042-0001-00000007".into(),
            state: "Leased".into(),
            user_id: "alice".into(),
            challenge: hex::encode([9u8; 16]),
            mac: hex::encode(mac),
            certificate_pem: String::new(),
        }
    }

    #[test]
    fn configure_mac_checked() {
        let good = psd::configure_mac(&key(), &device(), "alice", &[9; 16]);
        let ch = check_configure_mac(&key(), &device(), "alice", &registration(good)).unwrap();
        assert_eq!(ch, [9; 16]);
        let mut bad = good;
        bad[0] ^= 1;
        let e = check_configure_mac(&key(), &device(), "alice", &registration(bad)).unwrap_err();
        assert!(e.to_string().contains("MAC is wrong"), "{e}");
        let e = check_configure_mac(&key(), &device(), "bob", &registration(good)).unwrap_err();
        assert!(e.to_string().contains("user"), "{e}");
        let other: DeviceId = "42-1-8".parse().unwrap();
        assert!(check_configure_mac(&key(), &other, "alice", &registration(good)).is_err());
    }

    #[test]
    fn sealed_secrets_open_with_the_registration_key() {
        let mut rng = Rng::new(Faults::none());
        let kp = postvault_crypto::hpke::HpkeKeyPair::generate(&mut rng, &Faults::none()).unwrap();
        let sealed = seal_registration(
            &mut rng,
            &hex::encode(kp.public_key()),
            &device(),
            "alice",
            &key(),
            "pw",
        )
        .unwrap();
        assert_eq!(sealed.enc.len(), 32);
        let json = serde_json::to_value(&sealed).unwrap();
        assert!(json["enc"].is_string() && json["ciphertext"].is_string());
        assert!(seal_registration(&mut rng, "abcd", &device(), "a", &key(), "pw").is_err());
    }

    /// A print answer as the module would make it, with a real signed
    /// indicium and a self-made certificate (rcgen is not a dependency, so
    /// only the checks before the signature are exercised with bad data).
    fn answer(req: &IndiciumRequest, indicium: &[u8], old: [u8; 16]) -> PrintAnswer {
        let new = [5u8; 16];
        PrintAnswer {
            device_id: req.device_id.clone(),
            piece: 1,
            indicium: hex::encode(indicium),
            old_challenge: hex::encode(old),
            new_challenge: hex::encode(new),
            mac: hex::encode(psd::indicium_response_mac(&key(), indicium, &old, &new)),
            ascending_mills: 680,
            descending_mills: 0,
        }
    }

    #[test]
    fn print_answer_checks_in_order() {
        let req = indicium_request(&key(), &device(), "alice", [3; 16], &piece());
        let fake = [0u8; INDICIUM_LEN];
        // Wrong MAC first.
        let mut a = answer(&req, &fake, [3; 16]);
        a.mac = hex::encode([0u8; 32]);
        let e = check_print_answer(&key(), &req, &a, b"").unwrap_err();
        assert!(e.to_string().contains("response MAC is wrong"), "{e}");
        // Another key's MAC.
        let other: HmacKey = Zeroizing::new([8u8; 32]);
        let e = check_print_answer(&other, &req, &answer(&req, &fake, [3; 16]), b"").unwrap_err();
        assert!(e.to_string().contains("response MAC is wrong"), "{e}");
        // Right MAC, wrong old challenge.
        let e = check_print_answer(&key(), &req, &answer(&req, &fake, [4; 16]), b"").unwrap_err();
        assert!(e.to_string().contains("old challenge"), "{e}");
        // Right MAC and challenge, bytes that are no indicium.
        let e = check_print_answer(&key(), &req, &answer(&req, &fake, [3; 16]), b"").unwrap_err();
        assert!(e.to_string().contains("does not decode"), "{e}");
        // Wrong length.
        let e =
            check_print_answer(&key(), &req, &answer(&req, &[1, 2, 3], [3; 16]), b"").unwrap_err();
        assert!(e.to_string().contains("3 bytes"), "{e}");
    }

    fn signed_indicium(postage: u32) -> [u8; INDICIUM_LEN] {
        use postvault_indicium::{MailingDate, Zip4};
        let key = postvault_crypto::ecdsa::EcdsaP256KeyPair::generate(&Faults::none()).unwrap();
        let mut ind = Indicium {
            certificate_serial: 1,
            device: device().into(),
            ascending_register: 680,
            postage,
            date: MailingDate::from_u32(20_261_123).unwrap(),
            origin: Zip4::from_u32(100_010_001).unwrap(),
            software_id: 1,
            destination: Zip4::from_u32(205_000_001).unwrap(),
            piece_counter: 1,
            descending_register: 0,
            category: MailCategory::FIRST_CLASS,
            signature: [0; 64],
        };
        ind.signature = key.sign(&ind.payload().unwrap()).unwrap();
        ind.to_bytes().unwrap()
    }

    #[test]
    fn print_answer_fields_must_match_the_request() {
        let req = indicium_request(&key(), &device(), "alice", [3; 16], &piece());
        // Postage differs.
        let e = check_print_answer(
            &key(),
            &req,
            &answer(&req, &signed_indicium(700), [3; 16]),
            b"",
        )
        .unwrap_err();
        assert!(e.to_string().contains("700 mills"), "{e}");
        // Everything matches, but the certificate is not one: the signature check fails.
        let e = check_print_answer(
            &key(),
            &req,
            &answer(&req, &signed_indicium(680), [3; 16]),
            b"junk",
        )
        .unwrap_err();
        assert!(e.to_string().contains("signature does not verify"), "{e}");
        // Another device asked.
        let mut other = req.clone();
        other.device_id = "0042-0001-00000008".into();
        other.mac = [0; 32];
        let e = check_print_answer(
            &key(),
            &other,
            &answer(&other, &signed_indicium(680), [3; 16]),
            b"",
        )
        .unwrap_err();
        assert!(e.to_string().contains("names meter"), "{e}");
    }
}
