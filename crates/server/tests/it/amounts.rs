//! Amounts out of range: negative, zero and huge purchases and postage,
//! a purchase that would take the descending register over its $500.00
//! maximum. Each is a 422 saying the allowed range; registers, ledger and
//! money rows stay as they were.

use postvault_client::customer;
use serde_json::json;
use tokio::sync::OnceCell;

use crate::common::{Fixture, assert_api, assert_refused, piece, run, start};

static FX: OnceCell<Fixture> = OnceCell::const_new();

async fn fx() -> &'static Fixture {
    FX.get_or_init(|| start(900)).await
}

#[test]
fn negative_zero_and_huge_purchases_are_422() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let path = format!("/v1/meters/{}/purchases", m.id);
        let send = |body: String| {
            fx.raw(
                "POST",
                &path,
                Some(&c.token),
                Some("application/json"),
                body,
            )
        };
        // Not a u64 at all: the JSON does not fit.
        for (amount, needle) in [
            ("-1", "invalid value: integer `-1`"),
            ("-500000", "invalid value: integer `-500000`"),
            ("1.5", "invalid type: floating point"),
            ("18446744073709551616", "expected u64"),
            ("1e30", "invalid type: floating point"),
        ] {
            let a = send(format!(r#"{{"amount_mills": {amount}}}"#)).await;
            assert_refused(&a, 422, &[needle]);
        }
        // A u64, but outside 1 to $500.00.
        for amount in [0, 500_001, u64::MAX] {
            assert_api(
                c.client.purchase(&m.id, amount).await,
                422,
                &["amount_mills must be 1 to 500000", "$500.00"],
            );
        }
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
    });
}

#[test]
fn purchase_beyond_the_maximum_dr_is_422() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 400_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        // 400.000 + 100.001 > 500.000: the module refuses.
        assert_api(
            c.client.purchase(&m.id, 100_001).await,
            422,
            &[
                "would take the descending register from 400000",
                "maximum of 500000 mills",
            ],
        );
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
        // Up to the maximum is fine.
        let p = c.client.purchase(&m.id, 100_000).await.unwrap();
        assert_eq!(p.descending_mills, 500_000);
        let before = fx.snapshot(&c, &m.id).await;
        assert_api(
            c.client.purchase(&m.id, 1).await,
            422,
            &["maximum of 500000 mills"],
        );
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
    });
}

#[test]
fn negative_zero_and_huge_postage_is_422() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let mut m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let path = format!("/v1/meters/{}/indicia", m.id);
        // Not a u64.
        let good = customer::print_request(&m.request(&piece(680)));
        for (postage, needle) in [
            (json!(-680), "invalid value: integer `-680`"),
            (json!(6.8), "invalid type: floating point"),
            (json!("680"), "invalid type: string"),
        ] {
            let mut body = serde_json::to_value(&good).unwrap();
            body["postage_mills"] = postage;
            let a = fx.json("POST", &path, Some(&c.token), &body).await;
            assert_refused(&a, 422, &[needle]);
        }
        // A u64 outside 1 to 99999, MACed as the client would.
        for postage in [0, 100_000, u64::MAX] {
            let req = m.request(&piece(postage));
            assert_api(
                c.client.print(&m.id, &customer::print_request(&req)).await,
                422,
                &["postage_mills must be 1 to 99999"],
            );
        }
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
        // The meter still prints with the same challenge.
        m.print(&c, 680).await;
    });
}
