//! The PSD commands that move value besides Create Indicium, and the
//! password reset (seed 002): Create Correction Indicium (a `CORR` piece on
//! the same challenge chain), Create Refund Indicium (provider-signed: the
//! remaining DR in a signed `RFND` indicium, then the meter is withdrawn
//! for good), Begin and Complete Password Reset (provider-signed begin; the
//! new key and password HPKE-sealed; the answer MAC'd under the new key),
//! Retrieve PSD Status (changes nothing), and Create Indicia (one batch over
//! several meters of one module: one checkpoint, one audit entry per item,
//! each item refused on its own). Every refusal is checked to change nothing
//! but to add its own audit entry.
use std::path::Path;

use postvault_indicium::{Indicium, MailCategory};
use postvault_module::checkpoint::{SignedCheckpoint, TransactionType};
use postvault_module::error::ModuleError;
use postvault_module::psd::{
    self, CustomerSecrets, DeviceId, HpkeSealed, IndiciumItem, IndiciumRequest, IssuedIndicium,
    ProviderBody, ProviderCommand, ProviderMessage, PsdState, PsdStatus, SealedPackage,
};
use postvault_module::{Request, Response};
use zeroize::Zeroizing;

use crate::common::*;
use crate::psd_indicium::{Client, DATE, DESTINATION, mac};
use crate::psd_lifecycle::{
    DEVICE, HMAC_KEY, Meter, OTHER_DEVICE, PASSWORD, USER, ZIP, assert_invalid, assert_rejected,
    make_psd_cert, rng,
};

/// The customer's HMAC key after a password reset.
const NEW_KEY: [u8; 32] = [0xc3; 32];
/// The customer's password after a password reset.
const NEW_PASSWORD: &str = "alice-new-staple-lantern-river";

#[track_caller]
fn assert_psd_denied(e: &ModuleError, command: &str, state: PsdState) {
    assert!(
        matches!(e, ModuleError::PsdDenied { command: c, state: s } if c == command && *s == state),
        "expected PsdDenied({command}, {state}), got {e:?}"
    );
}

/// Retrieve PSD Status of the meter's package.
fn psd_status(m: &mut Meter) -> PsdStatus {
    let package = m.package.clone();
    psd_status_of(m, &package)
}

/// Retrieve PSD Status of `package` (with the module's newest checkpoint).
fn psd_status_of(m: &mut Meter, package: &SealedPackage) -> PsdStatus {
    match ok(
        &mut m.c,
        Request::RetrievePsdStatus {
            package: package.clone(),
            checkpoint: m.checkpoint.clone(),
        },
    ) {
        Response::PsdStatus(s) => s,
        other => panic!("unexpected {other:?}"),
    }
}

/// A client request for a `postage` piece of `category`, MAC'd under `key`.
fn request_under(cl: &Client, key: &[u8; 32], postage: u64, category: [u8; 4]) -> IndiciumRequest {
    let mut req = cl.request(postage);
    req.category = category;
    req.mac = psd::indicium_request_mac(key, &req);
    req
}

/// A `CORR` piece, MAC'd under the customer's key.
fn correction(cl: &Client, postage: u64) -> IndiciumRequest {
    request_under(cl, &HMAC_KEY, postage, *b"CORR")
}

fn send_correction(cl: &Client, request: IndiciumRequest) -> Request {
    Request::CreateCorrectionIndicium {
        package: cl.m.package.clone(),
        checkpoint: cl.m.checkpoint.clone(),
        request,
    }
}

/// Sends Create Indicium or Create Correction Indicium; checks the answer's
/// MAC under `key` and the challenge chain; keeps the new package,
/// checkpoint and challenge; returns the indicium and the checkpoint.
fn issue(cl: &mut Client, req: Request, key: &[u8; 32]) -> (Indicium, SignedCheckpoint) {
    match ok(&mut cl.m.c, req) {
        Response::IndiciumCreated {
            package,
            checkpoint,
            indicium,
            old_challenge,
            new_challenge,
            mac,
        } => {
            assert_eq!(
                old_challenge, cl.challenge,
                "the answer names our challenge"
            );
            assert_ne!(new_challenge, old_challenge);
            assert_eq!(
                mac,
                psd::indicium_response_mac(key, &indicium, &old_challenge, &new_challenge),
                "the answer is MAC'd under the user's key"
            );
            cl.m.checkpoint = Some(checkpoint.clone());
            cl.m.package = package;
            cl.challenge = new_challenge;
            (
                Indicium::from_bytes(&indicium).expect("the indicium decodes"),
                checkpoint,
            )
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Create Correction Indicium under the customer's key.
fn correct(cl: &mut Client, postage: u64) -> (Indicium, SignedCheckpoint) {
    let req = send_correction(cl, correction(cl, postage));
    issue(cl, req, &HMAC_KEY)
}

fn refund_request(m: &mut Meter, date: u32) -> Request {
    let message = m.signed(ProviderCommand::Refund { date });
    Request::CreateRefundIndicium {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        message,
    }
}

/// What a refund returned.
struct Refund {
    indicium: Indicium,
    refunded_mills: u64,
    checkpoint: SignedCheckpoint,
}

/// Create Refund Indicium dated [`DATE`]; keeps the (withdrawn) package
/// and the checkpoint.
fn refund(m: &mut Meter) -> Refund {
    let req = refund_request(m, DATE);
    match ok(&mut m.c, req) {
        Response::RefundIndiciumCreated {
            package,
            checkpoint,
            indicium,
            refunded_mills,
        } => {
            assert_eq!(indicium.len(), postvault_indicium::INDICIUM_LEN);
            m.checkpoint = Some(checkpoint.clone());
            m.package = package;
            Refund {
                indicium: Indicium::from_bytes(&indicium).expect("the refund indicium decodes"),
                refunded_mills,
                checkpoint,
            }
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A provider message whose body the test writes itself.
fn provider_message(
    m: &Meter,
    device: DeviceId,
    sequence: u64,
    command: ProviderCommand,
) -> ProviderMessage {
    let body = ProviderBody {
        device_id: device.to_string(),
        sequence,
        command,
    };
    let signature = m.provider.sign(&body.signing_bytes()).unwrap();
    ProviderMessage { body, signature }
}

fn begin_reset_request(m: &mut Meter, user_id: &str) -> Request {
    let message = m.signed(ProviderCommand::BeginPasswordReset {
        user_id: user_id.into(),
    });
    Request::BeginPasswordReset {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        message,
    }
}

/// Leased -> password reset for [`USER`].
fn begin_reset(m: &mut Meter) {
    let req = begin_reset_request(m, USER);
    m.updated(req, PsdState::PasswordReset);
}

/// Customer secrets for [`DEVICE`], sealed to the registration key.
fn secrets(m: &Meter, user_id: &str, key: [u8; 32], password: &str) -> HpkeSealed {
    psd::seal_customer_secrets(
        &mut rng(),
        &m.registration,
        &DEVICE,
        &CustomerSecrets {
            user_id: user_id.into(),
            hmac_key: Zeroizing::new(key),
            password: Zeroizing::new(password.into()),
        },
    )
    .unwrap()
}

fn complete_request(m: &Meter, secrets: HpkeSealed) -> Request {
    Request::CompletePasswordReset {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        secrets,
    }
}

/// Complete Password Reset with [`NEW_KEY`] and [`NEW_PASSWORD`]: checks
/// the answer's MAC under the new key, keeps the new package, checkpoint
/// and challenge; returns the checkpoint.
fn complete_reset(cl: &mut Client) -> SignedCheckpoint {
    let req = complete_request(&cl.m, secrets(&cl.m, USER, NEW_KEY, NEW_PASSWORD));
    match ok(&mut cl.m.c, req) {
        Response::PsdConfigured {
            package,
            checkpoint,
            challenge,
            mac,
        } => {
            assert_eq!(
                mac,
                psd::configure_mac(&NEW_KEY, &DEVICE, USER, &challenge),
                "the module proves it holds the new key"
            );
            assert_ne!(
                mac,
                psd::configure_mac(&HMAC_KEY, &DEVICE, USER, &challenge)
            );
            assert_ne!(challenge, cl.challenge, "a new challenge");
            cl.m.checkpoint = Some(checkpoint.clone());
            assert_eq!(cl.m.retrieve_state(&package), PsdState::Leased);
            cl.m.package = package;
            cl.challenge = challenge;
            checkpoint
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The audit entries of `command` that succeeded.
fn ok_entries(m: &Meter, command: &str) -> Vec<postvault_audit::AuditEntry> {
    audit_log(&m.f)
        .into_iter()
        .filter(|e| e.command == command && e.reason == "ok")
        .collect()
}

// ---------------------------------------------------------------------------
// Create Correction Indicium

#[test]
fn a_correction_indicium_takes_its_postage_from_the_descending_register() {
    let mut cl = Client::funded(10_000);
    let (i, checkpoint) = correct(&mut cl, 150);
    assert_eq!(i.category, MailCategory::CORRECTION);
    assert_eq!(u64::from(i.postage), 150);
    assert_eq!(
        (i.ascending_register, i.descending_register, i.piece_counter),
        (150, 9_850, 1)
    );
    assert_eq!(i.device, DEVICE.into());
    assert_eq!(i.origin.as_u32(), ZIP);
    assert_eq!(i.destination.as_u32(), DESTINATION);
    assert_eq!(i.date.as_u32(), DATE);
    assert!(i.verify(&cl.m.public_key), "verifies with the PSD key");
    assert_eq!(i.verify_with_certificate(&cl.cert), Ok(()));
    let c = &checkpoint.checkpoint;
    assert_eq!(c.transaction, TransactionType::CorrectionIndicium);
    assert_eq!(c.amount_mills, 150);
    assert_eq!((c.ascending_mills, c.descending_mills), (150, 9_850));
    assert_eq!(c.totals.printed_mills, 150);
    let s = psd_status(&mut cl.m);
    assert_eq!((s.ascending_mills, s.descending_mills), (150, 9_850));
    assert_eq!(s.control_total_mills, 10_000);
    let made = ok_entries(&cl.m, "CreateCorrectionIndicium");
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].data["category"], "CORR");
    assert_eq!(made[0].data["postage_mills"], "150");
    assert_eq!(made[0].data["descending_mills"], "9850");
}

#[test]
fn create_correction_indicium_refuses_a_piece_that_is_not_corr() {
    let mut cl = Client::funded(10_000);
    let req = send_correction(&cl, cl.request(150));
    assert_invalid(
        &cl.m.refused(req),
        "a correction indicium must have mail category CORR, not FC",
    );
    let req = send_correction(&cl, request_under(&cl, &HMAC_KEY, 150, *b"RFND"));
    assert_invalid(
        &cl.m.refused(req),
        "a correction indicium must have mail category CORR, not RFND",
    );
    // Nothing was taken: the first piece still starts from the full DR.
    let (i, _) = correct(&mut cl, 150);
    assert_eq!((i.ascending_register, i.piece_counter), (150, 1));
}

#[test]
fn the_challenge_chain_runs_across_indicia_and_correction_indicia() {
    let mut cl = Client::funded(10_000);
    cl.create_checked(500, 500, 9_500, 1);
    let before = cl.challenge;
    let stale = correction(&cl, 100);
    let (i, _) = correct(&mut cl, 100);
    assert_eq!((i.ascending_register, i.piece_counter), (600, 2));
    assert_ne!(cl.challenge, before);
    // The correction's request cannot be replayed, on either command.
    let req = send_correction(&cl, stale.clone());
    assert_rejected(&cl.m.refused(req), "challenge does not match");
    let mut as_indicium = stale;
    as_indicium.category = *b"FC  ";
    mac(&mut as_indicium);
    assert_rejected(&cl.refused(as_indicium), "challenge does not match");
    // The next normal piece carries the correction's new challenge.
    cl.create_checked(700, 1_300, 8_700, 3);
    let (i, _) = correct(&mut cl, 200);
    assert_eq!(
        (i.ascending_register, i.descending_register, i.piece_counter),
        (1_500, 8_500, 4)
    );
}

// ---------------------------------------------------------------------------
// Create Refund Indicium

#[test]
fn a_refund_returns_the_remaining_value_in_a_signed_rfnd_indicium() {
    let mut cl = Client::funded(10_000);
    cl.create_checked(730, 730, 9_270, 1);
    let r = refund(&mut cl.m);
    assert_eq!(r.refunded_mills, 9_270);
    let i = &r.indicium;
    assert_eq!(i.category, MailCategory::REFUND);
    assert_eq!(u64::from(i.postage), 9_270, "the postage is the DR before");
    assert_eq!(i.ascending_register, 10_000, "AR is the control total");
    assert_eq!(i.descending_register, 0);
    assert_eq!(i.piece_counter, 2);
    assert_eq!(i.device, DEVICE.into());
    assert_eq!(i.date.as_u32(), DATE);
    assert_eq!(i.origin.as_u32(), ZIP);
    assert_eq!(i.destination.as_u32(), 0);
    assert_eq!(i.certificate_serial, 0x0203_0405);
    assert!(i.verify(&cl.m.public_key), "verifies with the PSD key");
    assert_eq!(i.verify_with_certificate(&cl.cert), Ok(()));
    let mut forged = i.clone();
    forged.postage += 1;
    assert!(forged.verify_with_certificate(&cl.cert).is_err());

    let c = &r.checkpoint.checkpoint;
    assert_eq!(c.transaction, TransactionType::RefundIndicium);
    assert_eq!(c.device_id, DEVICE.to_string());
    assert_eq!(c.amount_mills, 9_270);
    assert_eq!((c.ascending_mills, c.descending_mills), (10_000, 0));
    assert_eq!(c.totals.refunded_mills, 9_270);
    assert_eq!(c.totals.printed_mills, 730);

    let made = ok_entries(&cl.m, "CreateRefundIndicium");
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].data["refunded_mills"], "9270");
    assert_eq!(made[0].data["ascending_mills"], "10000");
    assert_eq!(made[0].data["state"], "withdrawn");
}

#[test]
fn a_refunded_meter_is_withdrawn_but_still_readable() {
    let mut cl = Client::funded(10_000);
    cl.create_checked(730, 730, 9_270, 1);
    refund(&mut cl.m);
    let s = psd_status(&mut cl.m);
    assert_eq!(s.state, PsdState::Withdrawn);
    assert_eq!(
        (
            s.ascending_mills,
            s.descending_mills,
            s.control_total_mills,
            s.piece_count
        ),
        (10_000, 0, 10_000, 2)
    );
    assert_eq!(s.last_provider_sequence, 3);
    match ok(
        &mut cl.m.c,
        Request::RetrievePsdPublicKey {
            package: cl.m.package.clone(),
            checkpoint: cl.m.checkpoint.clone(),
        },
    ) {
        Response::PsdPublicKey(p) => {
            assert_eq!(p.state, PsdState::Withdrawn);
            assert_eq!(p.public_key, cl.m.public_key);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_withdrawn_meter_refuses_every_other_psd_command() {
    let mut cl = Client::funded(10_000);
    refund(&mut cl.m);
    let w = PsdState::Withdrawn;
    let req = cl.m.download_request(1_000, 10_000);
    assert_psd_denied(&cl.m.refused(req), "DownloadPostageValue", w);
    let req = cl.request(500);
    assert_psd_denied(&cl.refused(req), "CreateIndicium", w);
    let req = send_correction(&cl, correction(&cl, 500));
    assert_psd_denied(&cl.m.refused(req), "CreateCorrectionIndicium", w);
    let req = refund_request(&mut cl.m, DATE);
    assert_psd_denied(&cl.m.refused(req), "CreateRefundIndicium", w);
    let req = begin_reset_request(&mut cl.m, USER);
    assert_psd_denied(&cl.m.refused(req), "BeginPasswordReset", w);
    let req = complete_request(&cl.m, secrets(&cl.m, USER, NEW_KEY, NEW_PASSWORD));
    assert_psd_denied(&cl.m.refused(req), "CompletePasswordReset", w);
    assert_eq!(cl.m.retrieve_state(&cl.m.package.clone()), w);
}

#[test]
fn refund_refuses_a_bad_provider_signature() {
    let mut cl = Client::funded(10_000);
    let mut req = refund_request(&mut cl.m, DATE);
    if let Request::CreateRefundIndicium { message, .. } = &mut req {
        message.signature[7] ^= 1;
    }
    assert_rejected(
        &cl.m.refused(req),
        "the provider signature on the message does not verify",
    );
    // A signed refund whose body was altered afterwards.
    let mut req = refund_request(&mut cl.m, DATE);
    if let Request::CreateRefundIndicium { message, .. } = &mut req {
        message.body.command = ProviderCommand::Refund { date: DATE + 1 };
    }
    assert_rejected(&cl.m.refused(req), "provider signature");
    assert_eq!(refund(&mut cl.m).refunded_mills, 10_000);
}

#[test]
fn refund_refuses_a_replayed_sequence() {
    let mut cl = Client::funded(10_000);
    // Sequence 2 was the download's.
    let message = provider_message(&cl.m, DEVICE, 2, ProviderCommand::Refund { date: DATE });
    let req = Request::CreateRefundIndicium {
        package: cl.m.package.clone(),
        checkpoint: cl.m.checkpoint.clone(),
        message,
    };
    assert_rejected(
        &cl.m.refused(req),
        "replayed provider message: sequence 2 is not above the last one applied",
    );
    assert_eq!(refund(&mut cl.m).refunded_mills, 10_000);
}

#[test]
fn refund_refuses_a_message_for_another_meter() {
    let mut cl = Client::funded(10_000);
    cl.m.seq += 1;
    let message = provider_message(
        &cl.m,
        OTHER_DEVICE,
        cl.m.seq,
        ProviderCommand::Refund { date: DATE },
    );
    let req = Request::CreateRefundIndicium {
        package: cl.m.package.clone(),
        checkpoint: cl.m.checkpoint.clone(),
        message,
    };
    assert_rejected(
        &cl.m.refused(req),
        &format!("the provider message is for device \"{OTHER_DEVICE}\""),
    );
    assert_eq!(refund(&mut cl.m).refunded_mills, 10_000);
}

#[test]
fn refund_refuses_a_download_message() {
    let mut cl = Client::funded(10_000);
    let message = cl.m.signed(ProviderCommand::Download {
        amount_mills: 1_000,
        control_total_mills: 10_000,
    });
    let req = Request::CreateRefundIndicium {
        package: cl.m.package.clone(),
        checkpoint: cl.m.checkpoint.clone(),
        message,
    };
    assert_invalid(
        &cl.m.refused(req),
        "the provider message is not a Create Refund Indicium command",
    );
    assert_eq!(cl.m.retrieve_state(&cl.m.package.clone()), PsdState::Leased);
    assert_eq!(refund(&mut cl.m).refunded_mills, 10_000);
}

#[test]
fn refund_refuses_a_bad_date() {
    let mut cl = Client::funded(10_000);
    for date in [20_260_230, 0, 20_261_301] {
        let req = refund_request(&mut cl.m, date);
        assert_invalid(&cl.m.refused(req), &format!("date of the refund {date}"));
    }
    assert_eq!(refund(&mut cl.m).refunded_mills, 10_000);
}

#[test]
fn a_refund_of_an_empty_meter_still_withdraws_it() {
    // Never funded.
    let mut cl = Client::funded(0);
    let r = refund(&mut cl.m);
    assert_eq!(r.refunded_mills, 0);
    assert_eq!(r.indicium.postage, 0);
    assert_eq!(r.indicium.category, MailCategory::REFUND);
    assert_eq!(r.indicium.verify_with_certificate(&cl.cert), Ok(()));
    assert_eq!(
        cl.m.retrieve_state(&cl.m.package.clone()),
        PsdState::Withdrawn
    );

    // Spent to the last mill.
    let mut cl = Client::funded(1_000);
    cl.create_checked(1_000, 1_000, 0, 1);
    let r = refund(&mut cl.m);
    assert_eq!(r.refunded_mills, 0);
    assert_eq!(
        (
            r.indicium.postage,
            r.indicium.ascending_register,
            r.indicium.descending_register,
            r.indicium.piece_counter
        ),
        (0, 1_000, 0, 2)
    );
    assert_eq!(
        cl.m.retrieve_state(&cl.m.package.clone()),
        PsdState::Withdrawn
    );
    let req = cl.m.download_request(1_000, 1_000);
    assert_psd_denied(
        &cl.m.refused(req),
        "DownloadPostageValue",
        PsdState::Withdrawn,
    );
}

#[test]
fn a_meter_in_password_reset_can_be_refunded() {
    let mut cl = Client::funded(10_000);
    cl.create_checked(500, 500, 9_500, 1);
    begin_reset(&mut cl.m);
    let r = refund(&mut cl.m);
    assert_eq!(r.refunded_mills, 9_500);
    assert_eq!(r.indicium.ascending_register, 10_000);
    assert_eq!(r.indicium.verify_with_certificate(&cl.cert), Ok(()));
    assert_eq!(
        cl.m.retrieve_state(&cl.m.package.clone()),
        PsdState::Withdrawn
    );
    // The reset cannot be completed on a withdrawn meter.
    let req = complete_request(&cl.m, secrets(&cl.m, USER, NEW_KEY, NEW_PASSWORD));
    assert_psd_denied(
        &cl.m.refused(req),
        "CompletePasswordReset",
        PsdState::Withdrawn,
    );
}

// ---------------------------------------------------------------------------
// Password reset

#[test]
fn begin_password_reset_stops_printing_but_not_downloads() {
    let mut cl = Client::funded(10_000);
    cl.create_checked(500, 500, 9_500, 1);
    begin_reset(&mut cl.m);
    let begun = ok_entries(&cl.m, "BeginPasswordReset");
    assert_eq!(begun.len(), 1);
    assert_eq!(begun[0].data["user"], USER);
    assert_eq!(begun[0].data["state"], "password reset");
    assert_eq!(begun[0].data["sequence"], "3");

    let reset = PsdState::PasswordReset;
    let req = cl.request(500);
    assert_psd_denied(&cl.refused(req), "CreateIndicium", reset);
    let req = send_correction(&cl, correction(&cl, 500));
    assert_psd_denied(&cl.m.refused(req), "CreateCorrectionIndicium", reset);
    let req = begin_reset_request(&mut cl.m, USER);
    assert_psd_denied(&cl.m.refused(req), "BeginPasswordReset", reset);

    // Seed 002: a download runs in the leased or password reset state.
    let req = cl.m.download_request(5_000, 10_000);
    cl.m.updated(req, reset);
    let s = psd_status(&mut cl.m);
    assert_eq!(s.state, reset);
    assert_eq!(
        (s.descending_mills, s.control_total_mills),
        (14_500, 15_000)
    );
}

#[test]
fn complete_password_reset_replaces_the_key_and_the_password() {
    let mut cl = Client::funded(10_000);
    cl.create_checked(500, 500, 9_500, 1);
    let before = cl.challenge;
    begin_reset(&mut cl.m);
    let checkpoint = complete_reset(&mut cl);
    assert_eq!(
        checkpoint.checkpoint.transaction,
        TransactionType::PasswordReset
    );

    // The old key no longer signs a request, even on the new challenge.
    let req = cl.request(500);
    assert_rejected(&cl.refused(req), "request MAC does not verify");
    // The challenge from before the reset is dead too.
    let mut req = request_under(&cl, &NEW_KEY, 500, *b"FC  ");
    req.challenge = before;
    req.mac = psd::indicium_request_mac(&NEW_KEY, &req);
    assert_rejected(&cl.refused(req), "challenge does not match");

    // The new key prints, and the module answers under it.
    let req = cl.send(request_under(&cl, &NEW_KEY, 500, *b"FC  "));
    let (i, _) = issue(&mut cl, req, &NEW_KEY);
    assert_eq!(
        (i.ascending_register, i.descending_register, i.piece_counter),
        (1_000, 9_000, 2)
    );
    assert_eq!(i.verify_with_certificate(&cl.cert), Ok(()));
    let req = send_correction(&cl, request_under(&cl, &NEW_KEY, 100, *b"CORR"));
    let (i, _) = issue(&mut cl, req, &NEW_KEY);
    assert_eq!((i.ascending_register, i.piece_counter), (1_100, 3));

    let done = ok_entries(&cl.m, "CompletePasswordReset");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].data["user"], USER);
    assert_eq!(done[0].data["state"], "leased");
    let all: String = audit_log(&cl.m.f)
        .iter()
        .map(|e| e.to_json_line())
        .collect();
    assert!(!all.contains(NEW_PASSWORD));
    assert!(!all.contains(&hex::encode(NEW_KEY)));
}

#[test]
fn complete_password_reset_refuses_a_recent_password() {
    let mut cl = Client::funded(10_000);
    begin_reset(&mut cl.m);
    let req = complete_request(&cl.m, secrets(&cl.m, USER, NEW_KEY, PASSWORD));
    let e = cl.m.refused(req);
    assert!(
        matches!(&e, ModuleError::PasswordRejected(m) if m.contains("used this password recently")),
        "{e:?}"
    );
    assert_eq!(
        cl.m.retrieve_state(&cl.m.package.clone()),
        PsdState::PasswordReset
    );
    complete_reset(&mut cl);
}

#[test]
fn complete_password_reset_refuses_secrets_for_another_user() {
    let mut cl = Client::funded(10_000);
    begin_reset(&mut cl.m);
    let req = complete_request(&cl.m, secrets(&cl.m, "bob", NEW_KEY, NEW_PASSWORD));
    assert_rejected(
        &cl.m.refused(req),
        "the password reset is for user \"alice\", not \"bob\"",
    );
    complete_reset(&mut cl);
}

#[test]
fn complete_password_reset_needs_a_begun_reset() {
    let mut cl = Client::funded(10_000);
    let req = complete_request(&cl.m, secrets(&cl.m, USER, NEW_KEY, NEW_PASSWORD));
    assert_psd_denied(
        &cl.m.refused(req),
        "CompletePasswordReset",
        PsdState::Leased,
    );
    // The old key still prints.
    cl.create_checked(500, 500, 9_500, 1);
}

#[test]
fn begin_password_reset_refuses_an_unknown_user() {
    let mut cl = Client::funded(10_000);
    let req = begin_reset_request(&mut cl.m, "bob");
    assert_invalid(
        &cl.m.refused(req),
        &format!("user \"bob\" is not a user of meter {DEVICE}"),
    );
    assert_eq!(cl.m.retrieve_state(&cl.m.package.clone()), PsdState::Leased);
    begin_reset(&mut cl.m);
}

#[test]
fn begin_password_reset_refuses_a_bad_provider_signature() {
    let mut cl = Client::funded(10_000);
    let mut req = begin_reset_request(&mut cl.m, USER);
    if let Request::BeginPasswordReset { message, .. } = &mut req {
        message.signature[3] ^= 1;
    }
    assert_rejected(&cl.m.refused(req), "provider signature");
    cl.create_checked(500, 500, 9_500, 1);
}

// ---------------------------------------------------------------------------
// Retrieve PSD Status

#[test]
fn retrieve_psd_status_reports_the_registers_and_the_current_challenge() {
    let mut cl = Client::funded(10_000);
    cl.create_checked(730, 730, 9_270, 1);
    correct(&mut cl, 70);
    let nvm = cl.m.nvm_without_audit();
    let log_len = audit_log(&cl.m.f).len();
    let s = psd_status(&mut cl.m);
    assert_eq!(s.device_id, DEVICE.to_string());
    assert_eq!(s.state, PsdState::Leased);
    assert_eq!((s.ascending_mills, s.descending_mills), (800, 9_200));
    assert_eq!(s.control_total_mills, 10_000);
    assert_eq!(s.max_descending_mills, psd::MAX_DESCENDING_CAP);
    assert_eq!(s.piece_count, 2);
    assert_eq!(s.licensing_zip, Some(ZIP));
    assert_eq!(s.certificate_serial, Some(0x0203_0405));
    assert_eq!(s.users, 1);
    assert_eq!(s.last_provider_sequence, 2);
    assert_eq!(
        s.challenge,
        Some(cl.challenge),
        "the client's current challenge"
    );
    assert!(s.last_transaction.is_some());
    // It changed nothing but the audit log, where it has its entry
    // naming the meter (issue 3: every command is audited).
    assert_eq!(cl.m.nvm_without_audit(), nvm);
    let log = audit_log(&cl.m.f);
    assert_eq!(log.len(), log_len + 1);
    let entry = &log[log_len];
    assert_eq!(
        (entry.command.as_str(), entry.reason.as_str()),
        ("RetrievePsdStatus", "ok")
    );
    assert_eq!(entry.data.get("device"), Some(&DEVICE.to_string()));
    assert_eq!(entry.data.get("state").map(String::as_str), Some("leased"));
    assert_eq!(psd_status(&mut cl.m), s);
    cl.create_checked(200, 1_000, 9_000, 3);
}

#[test]
fn retrieve_psd_status_reads_a_raw_package() {
    let mut m = Meter::new();
    let s = psd_status(&mut m);
    assert_eq!(s.device_id, DEVICE.to_string());
    assert_eq!(s.state, PsdState::Raw);
    assert_eq!(
        (
            s.ascending_mills,
            s.descending_mills,
            s.control_total_mills,
            s.piece_count
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(s.max_descending_mills, psd::DEFAULT_MAX_DESCENDING_MILLS);
    assert_eq!(
        (s.licensing_zip, s.certificate_serial, s.challenge),
        (None, None, None)
    );
    assert_eq!(s.users, 0);
}

// ---------------------------------------------------------------------------
// Create Indicia (batches over several meters of one module)

/// A PSD certificate for `public_key` naming `device`, issued by the
/// [`Meter`]'s test CA (`ca.pem`, `ca.key` in `dir`), valid 30 days; DER.
fn psd_cert(dir: &Path, public_key: &[u8], device: DeviceId) -> Vec<u8> {
    make_psd_cert(
        dir,
        "ca",
        public_key,
        &device.to_string(),
        &format!("{:x}", 0x1000 + device.serial),
        30,
    )
}

/// One meter of a [`Fleet`], as its database row and its client see it.
struct Member {
    device: DeviceId,
    /// This meter's customer key (each meter has its own).
    key: [u8; 32],
    package: SealedPackage,
    public_key: Vec<u8>,
    cert: Vec<u8>,
    /// The provider's last sequence number for this meter.
    seq: u64,
    challenge: [u8; 16],
}

/// One module (a [`Meter`]'s: its CA, provider key and registration key;
/// its own raw package for [`DEVICE`] is left alone) with several leased,
/// funded meters 0042-0001-00000018, -19, ...
struct Fleet {
    m: Meter,
    meters: Vec<Member>,
}

impl Fleet {
    fn funded(count: usize, amount: u64) -> Self {
        let mut m = Meter::new();
        let mut meters = Vec::new();
        for i in 0..count {
            let device = DeviceId {
                vendor: 42,
                model: 1,
                serial: 18 + i as u32,
            };
            let (package, public_key) = match ok(&mut m.c, Request::InitializePsd { device }) {
                Response::PsdInitialized {
                    package,
                    public_key,
                    ..
                } => (package, public_key),
                other => panic!("unexpected {other:?}"),
            };
            let cert = psd_cert(m.pki.path(), &public_key, device);
            meters.push(Member {
                device,
                key: [0x30 + i as u8; 32],
                package,
                public_key,
                cert,
                seq: 0,
                challenge: [0; 16],
            });
        }
        // The newest certificate is valid from the latest time.
        let newest = meters.last().unwrap().cert.clone();
        m.time_for(&newest);
        let mut fleet = Self { m, meters };
        for i in 0..count {
            fleet.lease(i);
            if amount > 0 {
                let message = fleet.signed(
                    i,
                    ProviderCommand::Download {
                        amount_mills: amount,
                        control_total_mills: 0,
                    },
                );
                let req = Request::DownloadPostageValue {
                    package: fleet.meters[i].package.clone(),
                    checkpoint: fleet.m.checkpoint.clone(),
                    message,
                };
                assert_eq!(fleet.updated(i, req), PsdState::Leased);
            }
        }
        fleet
    }

    /// Raw -> leased: Authorize PSD, Configure PSD (checking the answer's
    /// MAC under the meter's key), Authorize Customer.
    fn lease(&mut self, i: usize) {
        let req = Request::AuthorizePsd {
            package: self.meters[i].package.clone(),
            checkpoint: self.m.checkpoint.clone(),
            certificate_der: self.meters[i].cert.clone(),
        };
        assert_eq!(self.updated(i, req), PsdState::Unleased);
        let member = &self.meters[i];
        let secrets = psd::seal_customer_secrets(
            &mut rng(),
            &self.m.registration,
            &member.device,
            &CustomerSecrets {
                user_id: USER.into(),
                hmac_key: Zeroizing::new(member.key),
                password: Zeroizing::new(PASSWORD.into()),
            },
        )
        .unwrap();
        let req = Request::ConfigurePsd {
            package: member.package.clone(),
            checkpoint: self.m.checkpoint.clone(),
            secrets,
        };
        match ok(&mut self.m.c, req) {
            Response::PsdConfigured {
                package,
                checkpoint,
                challenge,
                mac,
            } => {
                let member = &mut self.meters[i];
                assert_eq!(
                    mac,
                    psd::configure_mac(&member.key, &member.device, USER, &challenge)
                );
                self.m.checkpoint = Some(checkpoint);
                member.package = package;
                member.challenge = challenge;
            }
            other => panic!("unexpected {other:?}"),
        }
        let message = self.signed(
            i,
            ProviderCommand::AuthorizeCustomer {
                licensing_zip: ZIP,
                max_descending_mills: psd::MAX_DESCENDING_CAP,
            },
        );
        let req = Request::AuthorizeCustomer {
            package: self.meters[i].package.clone(),
            checkpoint: self.m.checkpoint.clone(),
            message,
        };
        assert_eq!(self.updated(i, req), PsdState::Leased);
    }

    /// Meter `i`'s next provider message.
    fn signed(&mut self, i: usize, command: ProviderCommand) -> ProviderMessage {
        self.meters[i].seq += 1;
        let (device, seq) = (self.meters[i].device, self.meters[i].seq);
        provider_message(&self.m, device, seq, command)
    }

    /// Runs a command that answers PsdUpdated for meter `i`; keeps its
    /// package and the module's checkpoint.
    fn updated(&mut self, i: usize, req: Request) -> PsdState {
        match ok(&mut self.m.c, req) {
            Response::PsdUpdated {
                package,
                checkpoint,
                state,
            } => {
                self.m.checkpoint = Some(checkpoint);
                self.meters[i].package = package;
                state
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Meter `i`'s client request for a `postage` piece, on its challenge,
    /// MAC'd under its key.
    fn request(&self, i: usize, postage: u64) -> IndiciumRequest {
        let member = &self.meters[i];
        let mut req = IndiciumRequest {
            device_id: member.device.to_string(),
            user_id: USER.into(),
            challenge: member.challenge,
            postage_mills: postage,
            date: DATE,
            origin_zip: ZIP,
            destination_zip: DESTINATION,
            category: *b"FC  ",
            mac: [0; 32],
        };
        req.mac = psd::indicium_request_mac(&member.key, &req);
        req
    }

    fn item(&self, i: usize, postage: u64) -> IndiciumItem {
        IndiciumItem {
            package: self.meters[i].package.clone(),
            request: self.request(i, postage),
        }
    }

    /// Sends a batch; keeps the module's new checkpoint, if any.
    fn batch(
        &mut self,
        items: Vec<IndiciumItem>,
    ) -> (
        Vec<Result<IssuedIndicium, ModuleError>>,
        Option<SignedCheckpoint>,
    ) {
        let req = Request::CreateIndicia {
            checkpoint: self.m.checkpoint.clone(),
            items,
        };
        match ok(&mut self.m.c, req) {
            Response::IndiciaCreated {
                results,
                checkpoint,
            } => {
                if let Some(c) = &checkpoint {
                    self.m.checkpoint = Some(c.clone());
                }
                (results, checkpoint)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Takes meter `i`'s issued piece: checks the answer's MAC under the
    /// meter's key, the chain and the signature; keeps the new package and
    /// challenge; returns the indicium.
    fn accept(&mut self, i: usize, issued: &IssuedIndicium) -> Indicium {
        let member = &mut self.meters[i];
        assert_eq!(issued.old_challenge, member.challenge);
        assert_ne!(issued.new_challenge, issued.old_challenge);
        assert_eq!(
            issued.mac,
            psd::indicium_response_mac(
                &member.key,
                &issued.indicium,
                &issued.old_challenge,
                &issued.new_challenge
            ),
            "the piece for {} is MAC'd under its own user's key",
            member.device
        );
        let piece = Indicium::from_bytes(&issued.indicium).expect("the indicium decodes");
        assert_eq!(piece.device, member.device.into());
        assert!(piece.verify(&member.public_key));
        assert_eq!(piece.verify_with_certificate(&member.cert), Ok(()));
        assert_eq!(issued.package.device_id, member.device.to_string());
        member.package = issued.package.clone();
        member.challenge = issued.new_challenge;
        piece
    }

    /// Create Indicium for meter `i` alone.
    fn create(&mut self, i: usize, request: IndiciumRequest) -> Indicium {
        let req = Request::CreateIndicium {
            package: self.meters[i].package.clone(),
            checkpoint: self.m.checkpoint.clone(),
            request,
        };
        match ok(&mut self.m.c, req) {
            Response::IndiciumCreated {
                package,
                checkpoint,
                indicium,
                old_challenge,
                new_challenge,
                mac,
            } => {
                self.m.checkpoint = Some(checkpoint);
                self.accept(
                    i,
                    &IssuedIndicium {
                        package,
                        indicium,
                        old_challenge,
                        new_challenge,
                        mac,
                    },
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_batch_issues_one_indicium_per_meter_under_one_checkpoint() {
    let mut fleet = Fleet::funded(3, 10_000);
    let seq_before = fleet.m.checkpoint.as_ref().unwrap().checkpoint.seq;
    let printed_before = fleet
        .m
        .checkpoint
        .as_ref()
        .unwrap()
        .checkpoint
        .totals
        .printed_mills;
    let log_len = audit_log(&fleet.m.f).len();
    let items = vec![fleet.item(0, 500), fleet.item(1, 600), fleet.item(2, 700)];
    let (results, checkpoint) = fleet.batch(items);

    let checkpoint = checkpoint.expect("a checkpoint for the batch").checkpoint;
    assert_eq!(
        checkpoint.seq,
        seq_before + 1,
        "one checkpoint for the batch"
    );
    assert_eq!(checkpoint.transaction, TransactionType::IndiciumBatch);
    assert_eq!(checkpoint.amount_mills, 1_800);
    assert_eq!(checkpoint.device_id, "batch of 3 meters");
    assert_eq!(checkpoint.totals.printed_mills, printed_before + 1_800);

    assert_eq!(results.len(), 3);
    for (i, (result, postage)) in results.iter().zip([500u64, 600, 700]).enumerate() {
        let issued = result
            .as_ref()
            .unwrap_or_else(|e| panic!("item {i}: {e:?}"));
        let piece = fleet.accept(i, issued);
        assert_eq!(u64::from(piece.postage), postage);
        assert_eq!(
            (
                piece.ascending_register,
                piece.descending_register,
                piece.piece_counter
            ),
            (postage, 10_000 - postage as u32, 1)
        );
        assert_eq!(piece.category, MailCategory::FIRST_CLASS);
    }

    // One "ok" entry per item, then the batch's own.
    let log = audit_log(&fleet.m.f);
    let new = &log[log_len..];
    assert_eq!(new.len(), 4, "{new:#?}");
    assert!(
        new.iter()
            .all(|e| e.command == "CreateIndicia" && e.reason == "ok")
    );
    for (i, entry) in new[..3].iter().enumerate() {
        assert_eq!(entry.data["device"], fleet.meters[i].device.to_string());
        assert_eq!(entry.data["user"], USER);
        assert_eq!(entry.data["piece"], "1");
    }
    assert_eq!(new[1].data["postage_mills"], "600");
    assert_eq!(new[1].data["descending_mills"], "9400");
    assert_eq!(new[3].data["items"], "3");
    assert_eq!(new[3].data["issued"], "3");
    assert_eq!(new[3].data["refused"], "0");
    assert_eq!(new[3].data["total_mills"], "1800");

    // Each meter goes on from the batch's package and challenge.
    for i in 0..3 {
        let req = fleet.request(i, 100);
        let piece = fleet.create(i, req);
        assert_eq!(piece.piece_counter, 2);
    }
    let package = fleet.meters[1].package.clone();
    let s = psd_status_of(&mut fleet.m, &package);
    assert_eq!(
        (s.ascending_mills, s.descending_mills, s.piece_count),
        (700, 9_300, 2)
    );
}

#[test]
fn a_batch_item_with_a_bad_mac_is_refused_alone() {
    let mut fleet = Fleet::funded(3, 10_000);
    let log_len = audit_log(&fleet.m.f).len();
    let untouched = fleet.meters[1].package.clone();
    let mut bad = fleet.item(1, 600);
    bad.request.mac[0] ^= 1;
    let items = vec![fleet.item(0, 500), bad, fleet.item(2, 700)];
    let (results, checkpoint) = fleet.batch(items);

    assert_eq!(results.len(), 3);
    assert!(
        matches!(&results[1], Err(ModuleError::Rejected(m)) if m.contains("request MAC does not verify")),
        "{:?}",
        results[1]
    );
    let issued: Vec<IssuedIndicium> = [0, 2]
        .iter()
        .map(|&i| results[i].clone().expect("the other items are issued"))
        .collect();
    fleet.accept(0, &issued[0]);
    fleet.accept(2, &issued[1]);
    let checkpoint = checkpoint.expect("a checkpoint for the batch").checkpoint;
    assert_eq!(checkpoint.amount_mills, 1_200);
    assert_eq!(checkpoint.device_id, "batch of 2 meters");

    let log = audit_log(&fleet.m.f);
    let new = &log[log_len..];
    let reasons: Vec<&str> = new.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["ok", "rejected", "ok", "ok"]);
    assert_eq!(new[1].data["device"], fleet.meters[1].device.to_string());
    assert!(new[1].data["error"].contains("request MAC does not verify"));
    assert_eq!(new[3].data["issued"], "2");
    assert_eq!(new[3].data["refused"], "1");
    assert_eq!(new[3].data["total_mills"], "1200");

    // The refused meter's package is the one it had, and works with its old
    // challenge.
    assert_eq!(fleet.meters[1].package, untouched);
    let req = fleet.request(1, 600);
    let piece = fleet.create(1, req);
    assert_eq!(
        (
            piece.ascending_register,
            piece.descending_register,
            piece.piece_counter
        ),
        (600, 9_400, 1)
    );
}

#[test]
fn a_meter_may_appear_once_per_batch() {
    let mut fleet = Fleet::funded(2, 10_000);
    let first = fleet.item(0, 500);
    let again = fleet.item(0, 800);
    let (results, checkpoint) = fleet.batch(vec![first, fleet.item(1, 100), again]);
    assert!(
        matches!(&results[2], Err(ModuleError::Invalid(m)) if m.contains("appears twice in one batch")),
        "{:?}",
        results[2]
    );
    let issued = results[0].clone().unwrap();
    let piece = fleet.accept(0, &issued);
    assert_eq!((piece.ascending_register, piece.piece_counter), (500, 1));
    fleet.accept(1, results[1].as_ref().unwrap());
    assert_eq!(checkpoint.unwrap().checkpoint.amount_mills, 600);
    // Its next piece takes the challenge the batch returned.
    let req = fleet.request(0, 800);
    let piece = fleet.create(0, req);
    assert_eq!(
        (
            piece.ascending_register,
            piece.descending_register,
            piece.piece_counter
        ),
        (1_300, 8_700, 2)
    );
}

#[test]
fn an_empty_batch_is_refused() {
    let mut fleet = Fleet::funded(1, 10_000);
    let req = Request::CreateIndicia {
        checkpoint: fleet.m.checkpoint.clone(),
        items: Vec::new(),
    };
    assert_invalid(
        &fleet.m.refused(req),
        "a Create Indicia batch carries 1 to 1024 items, not 0",
    );
    let req = fleet.request(0, 100);
    assert_eq!(fleet.create(0, req).piece_counter, 1);
}

#[test]
fn a_batch_with_a_stale_checkpoint_is_refused_whole() {
    let mut fleet = Fleet::funded(2, 10_000);
    let stale = fleet.m.checkpoint.clone();
    let req = fleet.request(1, 100);
    fleet.create(1, req);
    let req = Request::CreateIndicia {
        checkpoint: stale,
        items: vec![fleet.item(0, 500), fleet.item(1, 600)],
    };
    let e = fleet.m.refused(req);
    assert!(
        matches!(&e, ModuleError::CheckpointMismatch(m) if m.contains("1 transaction(s) behind")),
        "{e:?}"
    );
    let (results, _) = fleet.batch(vec![fleet.item(0, 500), fleet.item(1, 600)]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

/// A package a batch replaced must be refused like one a single Create
/// Indicium replaced: otherwise the database can hand back the older copy
/// (more DR, the old challenge) and the same request prints again.
#[test]
fn a_package_from_before_a_batch_is_refused_as_stale() {
    let mut fleet = Fleet::funded(2, 10_000);
    // Control: after a single Create Indicium the old package is stale.
    let old = fleet.meters[1].package.clone();
    let request = fleet.request(1, 500);
    fleet.create(1, request.clone());
    let req = Request::CreateIndicium {
        package: old,
        checkpoint: fleet.m.checkpoint.clone(),
        request,
    };
    let e = fleet.m.refused(req);
    assert!(
        matches!(&e, ModuleError::StalePackage(m) if m.contains("produced by this module")),
        "{e:?}"
    );

    // The same after a batch over both meters.
    let old = fleet.meters[1].package.clone();
    let request = fleet.request(1, 500);
    let items = vec![
        fleet.item(0, 300),
        IndiciumItem {
            package: old.clone(),
            request: request.clone(),
        },
    ];
    let (results, _) = fleet.batch(items);
    let issued: Vec<IssuedIndicium> = results.into_iter().map(Result::unwrap).collect();
    fleet.accept(0, &issued[0]);
    let piece = fleet.accept(1, &issued[1]);
    assert_eq!((piece.descending_register, piece.piece_counter), (9_000, 2));
    let req = Request::CreateIndicium {
        package: old,
        checkpoint: fleet.m.checkpoint.clone(),
        request,
    };
    match fleet.m.c.run(&req) {
        Err(postvault_module::ClientError::Module(ModuleError::StalePackage(m))) => {
            assert!(m.contains("produced by this module"), "{m}");
        }
        Ok(Response::IndiciumCreated { indicium, .. }) => {
            let again = Indicium::from_bytes(&indicium).unwrap();
            panic!(
                "the package from before the batch was accepted: piece {} printed again with DR {} (the batch had left {})",
                again.piece_counter, again.descending_register, piece.descending_register
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}
