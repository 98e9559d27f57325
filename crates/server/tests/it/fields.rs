//! Fields of the right type with values that cannot be used: ZIP codes
//! (origin, destination, licensing), dates, mail categories, and hex that
//! is not hex or not the right length. Each request is MACed as a client
//! would, so only the bad field is wrong; each refusal is a 4xx naming
//! the field, and the meter (challenge included) is unchanged: it then
//! prints with the same challenge.

use postvault_client::api::RegistrationRequest;
use postvault_client::customer::{self, Piece};
use postvault_crypto::Faults;
use postvault_crypto::rng::Rng;
use serde_json::json;
use tokio::sync::OnceCell;

use crate::common::{
    Customer, Fixture, Meter, PSD_PASSWORD, USER_ID, assert_api, assert_refused, piece, run, start,
};

static FX: OnceCell<Fixture> = OnceCell::const_new();

async fn fx() -> &'static Fixture {
    FX.get_or_init(|| start(900)).await
}

/// Prints `p` (MACed) and expects a refusal.
async fn refused_print(c: &Customer, m: &Meter, p: Piece, status: u16, needles: &[&str]) {
    let req = m.request(&p);
    assert_api(
        c.client.print(&m.id, &customer::print_request(&req)).await,
        status,
        needles,
    );
}

#[test]
fn bad_zips_are_422() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let mut m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        for zip in [0, 1, 9_999, 1_000_000_000, u32::MAX] {
            let p = Piece {
                origin_zip: zip,
                ..piece(680)
            };
            refused_print(
                &c,
                &m,
                p,
                422,
                &[&format!("origin_zip = {zip} is not a ZIP+4")],
            )
            .await;
        }
        for zip in [1, 9_999, 1_000_000_000] {
            let p = Piece {
                destination_zip: zip,
                ..piece(680)
            };
            refused_print(
                &c,
                &m,
                p,
                422,
                &[
                    &format!("destination_zip = {zip} is not a ZIP+4"),
                    "or 0 for none",
                ],
            )
            .await;
        }
        // A good ZIP, but not the meter's licensing ZIP: the module refuses.
        let p = Piece {
            origin_zip: 205_000_001,
            ..piece(680)
        };
        refused_print(
            &c,
            &m,
            p,
            422,
            &["originating ZIP 20500 is not the meter's licensing ZIP 10001"],
        )
        .await;
        // Negative ZIPs do not fit the JSON.
        let mut body =
            serde_json::to_value(customer::print_request(&m.request(&piece(680)))).unwrap();
        body["origin_zip"] = json!(-100010001);
        let a = fx
            .json(
                "POST",
                &format!("/v1/meters/{}/indicia", m.id),
                Some(&c.token),
                &body,
            )
            .await;
        assert_refused(&a, 422, &["invalid value: integer `-100010001`", "u32"]);
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
        m.print(&c, 680).await;

        // Licensing ZIPs at registration: the reserved meter stays unregistered.
        let id = fx.reserved(&c).await;
        let before = fx.snapshot(&c, &id).await;
        let device = customer::parse_device(&id).unwrap();
        let dep = c.client.deployment().await.unwrap();
        let mut rng = Rng::new(Faults::none());
        let key = customer::new_hmac_key(&mut rng).unwrap();
        for zip in [0, 42, 9_999, 1_000_000_000] {
            let secrets = customer::seal_registration(
                &mut rng,
                &dep.registration_public_key,
                &device,
                USER_ID,
                &key,
                PSD_PASSWORD,
            )
            .unwrap();
            let r = c
                .client
                .register_meter(
                    &id,
                    &RegistrationRequest {
                        user_id: USER_ID.into(),
                        secrets,
                        licensing_zip: zip,
                    },
                )
                .await;
            assert_api(r, 422, &[&format!("licensing_zip = {zip} is not a ZIP+4")]);
        }
        let after = fx.snapshot(&c, &id).await;
        assert_eq!(after, before);
        assert_eq!(after.row.unwrap().state, "Unleased");
    });
}

#[test]
fn bad_dates_are_422() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let mut m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        for date in [
            0, 2027, 20_270_000, 20_271_301, 20_270_132, 19_991_231, 21_000_101, 270_115,
        ] {
            let p = Piece { date, ..piece(680) };
            refused_print(&c, &m, p, 422, &[&format!("date = {date}"), "YYYYMMDD"]).await;
        }
        // Day 1 to 31 of a month, but not a day of that month: the module.
        for date in [20_270_231, 20_270_431, 20_270_229] {
            let p = Piece { date, ..piece(680) };
            refused_print(&c, &m, p, 422, &[&format!("date of mailing {date}")]).await;
        }
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
        m.print(&c, 680).await;
    });
}

#[test]
fn bad_categories_are_422() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let mut m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let path = format!("/v1/meters/{}/indicia", m.id);
        let good = customer::print_request(&m.request(&piece(680)));
        for cat in ["", "FIRST", "F C", "FC\n", "é", "\u{7f}"] {
            let mut body = serde_json::to_value(&good).unwrap();
            body["category"] = json!(cat);
            let a = fx.json("POST", &path, Some(&c.token), &body).await;
            assert_refused(
                &a,
                422,
                &["category must be 1 to 4 printable ASCII characters"],
            );
        }
        // Correction and refund categories are not for printing.
        for cat in [*b"CORR", *b"RFND"] {
            let p = Piece {
                category: cat,
                ..piece(680)
            };
            refused_print(
                &c,
                &m,
                p,
                422,
                &["category CORR is for POST /v1/meters/{id}/corrections"],
            )
            .await;
        }
        // And a correction must be CORR.
        let req = m.request(&piece(680));
        assert_api(
            c.client
                .correct(&m.id, &customer::print_request(&req))
                .await,
            422,
            &["a correction's category must be CORR"],
        );
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
        m.print(&c, 680).await;
    });
}

#[test]
fn bad_hex_is_422() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let mut m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let good = customer::print_request(&m.request(&piece(680)));
        let challenge = good.challenge.clone();
        let mac = good.mac.clone();
        for route in ["indicia", "corrections"] {
            let path = format!("/v1/meters/{}/{route}", m.id);
            let mut good = serde_json::to_value(&good).unwrap();
            if route == "corrections" {
                good["category"] = json!("CORR");
            }
            for bad in [
                "zz".repeat(16),
                challenge[..30].to_string(),
                format!("{challenge}00"),
                String::new(),
                format!("0x{}", &challenge[2..]),
            ] {
                let mut body = good.clone();
                body["challenge"] = json!(bad);
                let a = fx.json("POST", &path, Some(&c.token), &body).await;
                assert_refused(&a, 422, &["challenge must be 32 hex digits"]);
            }
            for bad in [
                "g".repeat(64),
                mac[..62].to_string(),
                format!("{mac}0"),
                String::new(),
            ] {
                let mut body = good.clone();
                body["mac"] = json!(bad);
                let a = fx.json("POST", &path, Some(&c.token), &body).await;
                assert_refused(&a, 422, &["mac must be 64 hex digits"]);
            }
        }
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
        m.print(&c, 680).await;
    });
}
