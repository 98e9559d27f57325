//! Create Indicium (seed 002, its steps 1 to 12, and FIG. 5's challenge
//! chain): a funded meter prints chained indicia that verify with the PSD's
//! key and certificate; every refusal (replay, altered request, wrong key,
//! unknown user, wrong meter, postage limits, insufficient DR, bad piece
//! fields, wrong PSD state, altered package) changes nothing but adds its
//! own audit entry, and the chain goes on afterwards.
use postvault_indicium::{Indicium, MailCategory};
use postvault_module::error::ModuleError;
use postvault_module::psd::{self, IndiciumRequest, PsdState};
use postvault_module::{Request, Response};

use crate::common::*;
use crate::psd_lifecycle::{
    DEVICE, HMAC_KEY, Meter, OTHER_DEVICE, PASSWORD, USER, ZIP, assert_invalid, assert_rejected,
    assigned,
};

/// The date of mailing of the test pieces.
pub(crate) const DATE: u32 = 20_261_123;
/// An addressed piece's destination (20500-0001).
pub(crate) const DESTINATION: u32 = 205_000_001;

/// A leased meter with the client's view: the PSD certificate and the
/// module's last challenge.
pub(crate) struct Client {
    pub(crate) m: Meter,
    pub(crate) cert: Vec<u8>,
    pub(crate) challenge: [u8; 16],
}

impl Client {
    /// Raw -> leased (keeping the certificate and the Configure PSD
    /// challenge), then a download of `amount` mills (none if 0).
    pub(crate) fn funded(amount: u64) -> Self {
        let mut m = Meter::new();
        let cert = m.good_cert();
        m.time_for(&cert);
        let req = Request::AuthorizePsd {
            package: m.package.clone(),
            checkpoint: m.checkpoint.clone(),
            certificate_der: cert.clone(),
        };
        m.updated(req, PsdState::Unleased);
        let secrets = m.secrets_for(DEVICE, &m.registration.clone(), PASSWORD);
        let req = m.configure_request(secrets);
        let challenge = match ok(&mut m.c, req) {
            Response::PsdConfigured {
                package,
                challenge,
                checkpoint,
                ..
            } => {
                m.checkpoint = Some(checkpoint);
                m.package = package;
                challenge
            }
            other => panic!("unexpected {other:?}"),
        };
        m.authorize_customer();
        if amount > 0 {
            m.download(amount, 0);
        }
        Self { m, cert, challenge }
    }

    /// A first-class, addressed piece from the licensing ZIP, MAC'd with
    /// the customer's key and carrying the current challenge.
    pub(crate) fn request(&self, postage_mills: u64) -> IndiciumRequest {
        let mut req = IndiciumRequest {
            device_id: DEVICE.to_string(),
            user_id: USER.into(),
            challenge: self.challenge,
            postage_mills,
            date: DATE,
            origin_zip: ZIP,
            destination_zip: DESTINATION,
            category: *b"FC  ",
            mac: [0; 32],
        };
        mac(&mut req);
        req
    }

    pub(crate) fn send(&self, request: IndiciumRequest) -> Request {
        Request::CreateIndicium {
            package: self.m.package.clone(),
            checkpoint: self.m.checkpoint.clone(),
            request,
        }
    }

    /// Creates an indicium; checks the response MAC and the challenge
    /// chain, stores the new package and challenge, returns the indicium.
    pub(crate) fn create(&mut self, request: IndiciumRequest) -> Indicium {
        let req = self.send(request);
        match ok(&mut self.m.c, req) {
            Response::IndiciumCreated {
                package,
                indicium,
                old_challenge,
                new_challenge,
                mac,
                checkpoint,
            } => {
                self.m.checkpoint = Some(checkpoint);
                assert_eq!(
                    old_challenge, self.challenge,
                    "the answer names our challenge"
                );
                assert_ne!(new_challenge, old_challenge);
                assert_eq!(
                    mac,
                    psd::indicium_response_mac(
                        &HMAC_KEY,
                        &indicium,
                        &old_challenge,
                        &new_challenge
                    ),
                    "the module's answer is MAC'd under the user's key"
                );
                assert_ne!(
                    mac,
                    psd::indicium_response_mac(&[0; 32], &indicium, &old_challenge, &new_challenge)
                );
                assert_eq!(indicium.len(), postvault_indicium::INDICIUM_LEN);
                self.m.package = package;
                self.challenge = new_challenge;
                Indicium::from_bytes(&indicium).expect("the indicium decodes")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Creates a `postage` piece and checks its registers and counter.
    pub(crate) fn create_checked(
        &mut self,
        postage: u64,
        ar: u64,
        dr: u32,
        piece: u64,
    ) -> Indicium {
        let i = self.create(self.request(postage));
        assert_eq!(u64::from(i.postage), postage);
        assert_eq!(i.ascending_register, ar);
        assert_eq!(i.descending_register, dr);
        assert_eq!(i.piece_counter, piece);
        assert!(i.verify(&self.m.public_key), "verifies with the PSD key");
        assert_eq!(i.verify_with_certificate(&self.cert), Ok(()));
        i
    }

    #[track_caller]
    pub(crate) fn refused(&mut self, request: IndiciumRequest) -> ModuleError {
        let req = self.send(request);
        self.m.refused(req)
    }
}

/// Sets `req.mac` under the customer's key.
pub(crate) fn mac(req: &mut IndiciumRequest) {
    req.mac = psd::indicium_request_mac(&HMAC_KEY, req);
}

#[test]
fn a_funded_meter_creates_chained_indicia_that_verify() {
    let mut cl = Client::funded(10_000);
    let first = cl.create_checked(730, 730, 9_270, 1);
    assert_eq!(first.certificate_serial, 0x0203_0405);
    assert_eq!(first.device, DEVICE.into());
    assert_eq!(first.date.as_u32(), DATE);
    assert_eq!(first.origin.as_u32(), ZIP);
    assert_eq!(first.destination.as_u32(), DESTINATION);
    assert_eq!(first.software_id, psd::SOFTWARE_ID);
    assert_eq!(first.category, MailCategory::FIRST_CLASS);
    cl.create_checked(1_000, 1_730, 8_270, 2);
    // An unaddressed priority piece, down to the last mill.
    let mut req = cl.request(8_270);
    req.destination_zip = 0;
    req.category = *b"PM  ";
    mac(&mut req);
    let last = cl.create(req);
    assert_eq!(
        (
            last.ascending_register,
            last.descending_register,
            last.piece_counter
        ),
        (10_000, 0, 3)
    );
    assert_eq!(last.category, MailCategory::PRIORITY);
    assert_eq!(last.verify_with_certificate(&cl.cert), Ok(()));

    // A signature over other fields does not verify.
    let mut forged = last.clone();
    forged.postage += 1;
    assert!(!forged.verify(&cl.m.public_key));
    assert!(forged.verify_with_certificate(&cl.cert).is_err());

    // The registers add up to the downloads: the provider's control total
    // (10 000 mills) is the meter's, and the next download is accepted.
    cl.m.download(5_000, 10_000);
    cl.create_checked(2_500, 12_500, 2_500, 4);

    // Each indicium is audited with the registers after it.
    let log = audit_log(&cl.m.f);
    let made: Vec<_> = log
        .iter()
        .filter(|e| e.command == "CreateIndicium" && e.reason == "ok")
        .collect();
    assert_eq!(made.len(), 4);
    assert_eq!(made[1].data["device"], DEVICE.to_string());
    assert_eq!(made[1].data["user"], USER);
    assert_eq!(made[1].data["postage_mills"], "1000");
    assert_eq!(made[1].data["ascending_mills"], "1730");
    assert_eq!(made[1].data["descending_mills"], "8270");
    assert_eq!(made[1].data["piece"], "2");
    let all: String = log.iter().map(|e| e.to_json_line()).collect();
    assert!(!all.contains(&hex::encode(HMAC_KEY)));
}

#[test]
fn a_replayed_request_is_refused() {
    let mut cl = Client::funded(10_000);
    let req = cl.request(500);
    cl.create(req.clone());
    assert_rejected(
        &cl.refused(req),
        "stale or replayed request: challenge does not match",
    );
    // A request with a made-up challenge, correctly MAC'd, is refused too.
    let mut req = cl.request(500);
    req.challenge = [0; 16];
    mac(&mut req);
    assert_rejected(&cl.refused(req), "challenge does not match");
    cl.create_checked(500, 1_000, 9_000, 2);
}

#[test]
fn an_altered_request_is_refused() {
    let mut cl = Client::funded(10_000);
    let mut req = cl.request(500);
    req.postage_mills = 5_000;
    assert_rejected(&cl.refused(req), "request MAC does not verify");
    let mut req = cl.request(500);
    req.mac[0] ^= 1;
    assert_rejected(&cl.refused(req), "request MAC does not verify");
    cl.create_checked(500, 500, 9_500, 1);
}

#[test]
fn a_request_under_another_key_is_refused() {
    let mut cl = Client::funded(10_000);
    let mut req = cl.request(500);
    req.mac = psd::indicium_request_mac(&[0x11; 32], &req);
    assert_rejected(&cl.refused(req), "request MAC does not verify");
    cl.create_checked(500, 500, 9_500, 1);
}

#[test]
fn an_unknown_user_is_refused() {
    let mut cl = Client::funded(10_000);
    let mut req = cl.request(500);
    req.user_id = "bob".into();
    mac(&mut req);
    assert_rejected(&cl.refused(req), "user \"bob\" is not a user of meter");
    cl.create_checked(500, 500, 9_500, 1);
}

#[test]
fn a_request_for_another_meter_is_refused() {
    let mut cl = Client::funded(10_000);
    let mut req = cl.request(500);
    req.device_id = OTHER_DEVICE.to_string();
    mac(&mut req);
    assert_rejected(&cl.refused(req), "the indicium request is for device");
    cl.create_checked(500, 500, 9_500, 1);
}

#[test]
fn postage_outside_the_module_limits_is_refused() {
    let mut cl = Client::funded(200_000);
    for postage in [0, psd::MAX_POSTAGE_MILLS + 1, 1 << 24, u64::MAX] {
        let req = cl.request(postage);
        assert_invalid(&cl.refused(req), "outside the module's limits");
    }
    cl.create_checked(psd::MAX_POSTAGE_MILLS, 99_999, 100_001, 1);
    cl.create_checked(psd::MIN_POSTAGE_MILLS, 100_000, 100_000, 2);
}

#[test]
fn insufficient_descending_register_is_refused() {
    let mut cl = Client::funded(1_000);
    let req = cl.request(1_001);
    assert_rejected(&cl.refused(req), "insufficient postage: DR is 1000 mills");
    cl.create_checked(1_000, 1_000, 0, 1);
    let req = cl.request(1);
    assert_rejected(&cl.refused(req), "insufficient postage: DR is 0 mills");
}

#[test]
fn an_unfunded_meter_prints_nothing() {
    let mut cl = Client::funded(0);
    let req = cl.request(1);
    assert_rejected(&cl.refused(req), "insufficient postage: DR is 0 mills");
}

#[test]
fn bad_piece_fields_are_refused() {
    let mut cl = Client::funded(10_000);
    let mut req = cl.request(500);
    req.date = 20_260_230;
    mac(&mut req);
    assert_invalid(&cl.refused(req), "date of mailing 20260230");

    // Another ZIP5 than the licensing ZIP's (the plus-4 may differ).
    let mut req = cl.request(500);
    req.origin_zip = 902_100_000;
    mac(&mut req);
    assert_invalid(&cl.refused(req), "not the meter's licensing ZIP 10001");

    let mut req = cl.request(500);
    req.destination_zip = u32::MAX;
    mac(&mut req);
    assert_invalid(&cl.refused(req), "destination ZIP+4");

    for category in [*b"CORR", *b"RFND"] {
        let mut req = cl.request(500);
        req.category = category;
        mac(&mut req);
        assert_invalid(&cl.refused(req), "for correction and refund indicia");
    }
    let mut req = cl.request(500);
    req.category = *b"fc  ";
    mac(&mut req);
    assert_invalid(&cl.refused(req), "mail category");

    let mut req = cl.request(500);
    req.origin_zip = ZIP / 10_000 * 10_000 + 9_999;
    mac(&mut req);
    let i = cl.create(req);
    assert_eq!(i.origin.plus4(), 9_999);
    assert_eq!((i.ascending_register, i.piece_counter), (500, 1));
}

#[test]
fn no_indicium_after_the_key_certificate_expires() {
    let mut cl = Client::funded(10_000);
    let (_, not_after) = crate::psd_lifecycle::validity(&cl.cert);
    cl.m.set_time(not_after - 1);
    cl.create_checked(500, 500, 9_500, 1);
    cl.m.set_time(not_after);
    let e = cl.refused(cl.request(500));
    assert_rejected(&e, "expired");
    assert_rejected(&e, "needs a new key and certificate");
}

#[test]
fn a_package_that_is_not_leased_is_refused() {
    let mut m = assigned();
    let request = IndiciumRequest {
        device_id: DEVICE.to_string(),
        user_id: USER.into(),
        challenge: [0; 16],
        postage_mills: 500,
        date: DATE,
        origin_zip: ZIP,
        destination_zip: 0,
        category: *b"FC  ",
        mac: [0; 32],
    };
    let req = Request::CreateIndicium {
        package: m.package.clone(),
        checkpoint: m.checkpoint.clone(),
        request,
    };
    let e = m.refused(req);
    assert!(
        matches!(
            e,
            ModuleError::PsdDenied {
                state: PsdState::Assigned,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_package_with_one_flipped_byte_is_refused() {
    let mut cl = Client::funded(10_000);
    let good = cl.m.package.clone();
    for at in [
        0,
        cl.m.package.sealed.len() / 2,
        cl.m.package.sealed.len() - 1,
    ] {
        cl.m.package.sealed[at] ^= 0x01;
        let req = cl.request(500);
        assert_rejected(&cl.refused(req), "failed authentication");
        cl.m.package = good.clone();
    }
    cl.create_checked(500, 500, 9_500, 1);
}

#[test]
fn request_mac_bytes_are_domain_separated_and_cover_every_field() {
    let cl_req = IndiciumRequest {
        device_id: DEVICE.to_string(),
        user_id: USER.into(),
        challenge: [7; 16],
        postage_mills: 730,
        date: DATE,
        origin_zip: ZIP,
        destination_zip: 0,
        category: *b"FC  ",
        mac: [0; 32],
    };
    let bytes = cl_req.mac_bytes();
    assert!(bytes.starts_with(psd::INDICIUM_REQUEST_LABEL));
    let mut with_mac = cl_req.clone();
    with_mac.mac = [9; 32];
    assert_eq!(with_mac.mac_bytes(), bytes, "the MAC is not MAC'd");
    let base = psd::indicium_request_mac(&HMAC_KEY, &cl_req);
    let changes: [fn(&mut IndiciumRequest); 8] = [
        |r| r.device_id.push('x'),
        |r| r.user_id.push('x'),
        |r| r.challenge[15] ^= 1,
        |r| r.postage_mills += 1,
        |r| r.date += 1,
        |r| r.origin_zip += 1,
        |r| r.destination_zip += 1,
        |r| r.category[3] = b'X',
    ];
    for change in changes {
        let mut r = cl_req.clone();
        change(&mut r);
        assert_ne!(psd::indicium_request_mac(&HMAC_KEY, &r), base);
    }
}
