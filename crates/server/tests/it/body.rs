//! Bodies the server cannot use: malformed JSON, unknown fields, missing
//! fields, wrong types, the wrong content type and bodies over
//! `max_body_bytes`. Each is refused before anything runs, with a message
//! saying what was wrong; the meter it named (or the account it would
//! have made) is unchanged.

use serde_json::json;
use tokio::sync::OnceCell;

use crate::common::{Fixture, assert_refused, run, start};

static FX: OnceCell<Fixture> = OnceCell::const_new();

async fn fx() -> &'static Fixture {
    FX.get_or_init(|| start(900)).await
}

#[test]
fn malformed_json_is_400() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let path = format!("/v1/meters/{}/purchases", m.id);
        for body in [
            r#"{"amount_mills": 5"#,
            "{amount_mills: 5}",
            "",
            "[1,",
            "\u{0}",
        ] {
            let a = fx
                .raw(
                    "POST",
                    &path,
                    Some(&c.token),
                    Some("application/json"),
                    body,
                )
                .await;
            assert_refused(&a, 400, &["malformed JSON"]);
        }
        assert_eq!(fx.snapshot(&c, &m.id).await, before);

        // A sign-up in broken JSON makes no account.
        let a = fx
            .raw(
                "POST",
                "/v1/accounts",
                None,
                Some("application/json"),
                r#"{"login": "broken1", "password": "a long enough password""#,
            )
            .await;
        assert_refused(&a, 400, &["malformed JSON", "line 1"]);
        assert!(fx.store.get_account("broken1").await.unwrap().is_none());
    });
}

#[test]
fn unknown_fields_are_422() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let path = format!("/v1/meters/{}/purchases", m.id);
        let a = fx
            .json(
                "POST",
                &path,
                Some(&c.token),
                &json!({"amount_mills": 1000, "currency": "USD"}),
            )
            .await;
        assert_refused(&a, 422, &["unknown field `currency`", "/openapi.json"]);
        let a = fx
            .json(
                "POST",
                &format!("/v1/meters/{}/refund", m.id),
                Some(&c.token),
                &json!({"now": true}),
            )
            .await;
        assert_refused(&a, 422, &["unknown field `now`"]);
        let a = fx
            .json(
                "POST",
                "/v1/accounts",
                None,
                &json!({"login": "extra1", "password": "a long enough password", "role": "operator"}),
            )
            .await;
        assert_refused(&a, 422, &["unknown field `role`"]);
        assert!(fx.store.get_account("extra1").await.unwrap().is_none());
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
    });
}

#[test]
fn missing_fields_are_422() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let a = fx
            .json(
                "POST",
                &format!("/v1/meters/{}/purchases", m.id),
                Some(&c.token),
                &json!({}),
            )
            .await;
        assert_refused(&a, 422, &["missing field `amount_mills`"]);
        // A print request without its MAC.
        let a = fx
            .json(
                "POST",
                &format!("/v1/meters/{}/indicia", m.id),
                Some(&c.token),
                &json!({"user_id": "alice", "challenge": hex::encode(m.challenge),
                        "postage_mills": 680, "date": 20270115, "origin_zip": 100010001,
                        "category": "FC"}),
            )
            .await;
        assert_refused(&a, 422, &["missing field `mac`"]);
        let a = fx
            .json("POST", "/v1/sessions", None, &json!({"login": c.login}))
            .await;
        assert_refused(&a, 422, &["missing field `password`"]);
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
    });
}

#[test]
fn wrong_types_are_422() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let path = format!("/v1/meters/{}/purchases", m.id);
        for (body, needle) in [
            (json!({"amount_mills": "1000"}), "invalid type: string"),
            (json!({"amount_mills": null}), "invalid type: null"),
        ] {
            let a = fx.json("POST", &path, Some(&c.token), &body).await;
            assert_refused(&a, 422, &[needle, "expected"]);
        }
        // The body is an object, not the fields in an array (which serde
        // would take in order) or anything else.
        for body in [json!([1000]), json!("1000"), json!(1000), json!(null)] {
            let a = fx.json("POST", &path, Some(&c.token), &body).await;
            assert_refused(&a, 422, &["the body must be a JSON object"]);
        }
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
    });
}

#[test]
fn wrong_content_type_is_415() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let path = format!("/v1/meters/{}/purchases", m.id);
        let body = r#"{"amount_mills": 1000}"#;
        for ct in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let a = fx.raw("POST", &path, Some(&c.token), ct, body).await;
            assert_refused(&a, 415, &["Content-Type: application/json"]);
        }
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
    });
}

#[test]
fn oversized_body_is_413() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let limit = postvault_server::DEFAULT_MAX_BODY_BYTES;
        let pad = "x".repeat(limit + 1);
        // Valid JSON, but over the limit (the pad field would be refused
        // too; the size is checked first).
        let body = format!(r#"{{"amount_mills": 1000, "pad": "{pad}"}}"#);
        let a = fx
            .raw(
                "POST",
                &format!("/v1/meters/{}/purchases", m.id),
                Some(&c.token),
                Some("application/json"),
                body.clone(),
            )
            .await;
        assert_refused(
            &a,
            413,
            &[&format!(
                "request body too large: the limit is {limit} bytes"
            )],
        );
        // The same on a public route.
        let body = format!(r#"{{"login": "big1", "password": "{pad}"}}"#);
        let a = fx
            .raw("POST", "/v1/accounts", None, Some("application/json"), body)
            .await;
        assert_refused(&a, 413, &["request body too large"]);
        assert!(fx.store.get_account("big1").await.unwrap().is_none());
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
    });
}

#[test]
fn unknown_routes_and_methods_are_json_404_and_405() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let a = fx.raw("GET", "/v1/nothing", Some(&c.token), None, "").await;
        assert_refused(&a, 404, &["no such route", "/openapi.json"]);
        let a = fx
            .json("PUT", "/v1/meters", Some(&c.token), &json!({}))
            .await;
        assert_refused(&a, 405, &["does not take that method", "/openapi.json"]);
        let a = fx.raw("DELETE", "/v1/accounts", None, None, "").await;
        assert_refused(&a, 405, &["does not take that method"]);
        assert!(c.client.meters().await.unwrap().is_empty());
    });
}
