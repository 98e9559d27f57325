//! Who may call: wrong passwords, unknown logins, no token, a token that
//! is not one, a session idle beyond the timeout (the server's
//! `ManualClock` moved past it), and a customer calling the provider's
//! routes. Each is a 401 or 403 with a message saying what to do, and
//! the meter the request named is unchanged.

use postvault_module::psd::ProviderCommand;
use serde_json::json;
use tokio::sync::OnceCell;

use crate::common::{Fixture, PASSWORD, assert_api, assert_refused, run, sign, start};

static FX: OnceCell<Fixture> = OnceCell::const_new();

async fn fx() -> &'static Fixture {
    FX.get_or_init(|| start(900)).await
}

/// Its own server: its clock is moved.
static EXPIRY: OnceCell<Fixture> = OnceCell::const_new();

const IDLE: u64 = 60;

#[test]
fn wrong_password_is_401() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let client = fx.client();
        assert_api(
            client.logon(&c.login, "not the password at all").await,
            401,
            &["wrong login or password"],
        );
        // An unknown login gets the same answer.
        assert_api(
            client.logon("nobody-here", PASSWORD).await,
            401,
            &["wrong login or password"],
        );
        // The one thing a wrong password changes is the failure count
        // (lock-out after five); the account is not locked.
        let account = fx.store.get_account(&c.login).await.unwrap().unwrap();
        assert_eq!(account.failed_logons, 1);
        assert!(!account.locked);
        assert!(fx.store.get_account("nobody-here").await.unwrap().is_none());
        // The right password still works, and resets the count.
        client.logon(&c.login, PASSWORD).await.unwrap();
        let account = fx.store.get_account(&c.login).await.unwrap().unwrap();
        assert_eq!(account.failed_logons, 0);
    });
}

#[test]
fn no_token_is_401() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let id = &m.id;
        let routes = [
            ("GET", "/v1/me".to_string(), None),
            ("DELETE", "/v1/sessions/current".to_string(), None),
            ("POST", "/v1/meters".to_string(), Some(json!({}))),
            ("GET", "/v1/meters".to_string(), None),
            ("GET", format!("/v1/meters/{id}"), None),
            (
                "POST",
                format!("/v1/meters/{id}/purchases"),
                Some(json!({"amount_mills": 1000})),
            ),
            ("POST", format!("/v1/meters/{id}/refund"), Some(json!({}))),
            ("GET", format!("/v1/meters/{id}/indicia"), None),
            ("GET", format!("/v1/meters/{id}/money"), None),
            ("GET", format!("/v1/provider/meters/{id}"), None),
        ];
        for (method, path, body) in &routes {
            let body = body.clone().unwrap_or(json!({}));
            let a = fx.json(method, path, None, &body).await;
            assert_refused(&a, 401, &["not logged on", "Authorization: Bearer TOKEN"]);
            // Not a bearer token, or not a token at all.
            for header in ["Basic YWxpY2U6cGFzc3dvcmQ=", "Bearer", "Bearer nothex"] {
                let r = fx
                    .raw
                    .request(
                        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                        format!("{}{path}", fx.base),
                    )
                    .header("authorization", header)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 401, "{method} {path} {header}");
                assert_eq!(r.headers()["www-authenticate"], "Bearer");
                let v: serde_json::Value = r.json().await.unwrap();
                assert!(
                    v["error"].as_str().unwrap().contains("not logged on"),
                    "{v}"
                );
            }
            // A well-formed token nobody was given.
            let a = fx.json(method, path, Some(&"ab".repeat(32)), &body).await;
            assert_refused(&a, 401, &["session token is unknown or logged off"]);
        }
        // No meter was reserved (by nobody) and the customer's are as they were.
        assert_eq!(fx.store.meters_of_account(&c.login).await.unwrap().len(), 1);
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
    });
}

#[test]
fn expired_session_is_401() {
    run(async {
        let fx = EXPIRY.get_or_init(|| start(IDLE)).await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        fx.clock.advance(IDLE as i64 + 1);
        assert_api(
            c.client.purchase(&m.id, 1000).await,
            401,
            &["session expired, log on again"],
        );
        // Deleted: it stays refused, as unknown now.
        assert_api(
            c.client.purchase(&m.id, 1000).await,
            401,
            &["not logged on"],
        );
        // Log on again to look: nothing was bought.
        let session = c.client.logon(&c.login, PASSWORD).await.unwrap();
        let again = crate::common::Customer {
            login: c.login.clone(),
            client: c.client.clone().with_token(session.token.clone()),
            token: session.token,
        };
        assert_eq!(fx.snapshot(&again, &m.id).await, before);
        assert_eq!(again.client.money(&m.id).await.unwrap().len(), 1);
    });
}

/// Sessions are kept in the server's memory for up to a second
/// (`sessions::FRESH_FOR`): a logoff and a lock-out in this server still
/// take effect on the very next request, and a session deleted in the
/// store by someone else (another server process) within that second.
#[test]
fn logoff_lock_out_and_a_session_deleted_elsewhere_take_effect() {
    run(async {
        let fx = fx().await;
        // Logoff: the copy the server just used is not served again.
        let c = fx.customer().await;
        assert_eq!(c.client.me().await.unwrap().login, c.login);
        c.client.logoff().await.unwrap();
        assert_api(c.client.me().await, 401, &["not logged on"]);

        // Lock-out by failed logons: the open session is refused at once.
        let c = fx.customer().await;
        assert_eq!(c.client.me().await.unwrap().login, c.login);
        let other = fx.client();
        for _ in 0..5 {
            assert!(
                other
                    .logon(&c.login, "not the password at all")
                    .await
                    .is_err()
            );
        }
        assert!(
            fx.store
                .get_account(&c.login)
                .await
                .unwrap()
                .unwrap()
                .locked
        );
        assert_api(c.client.me().await, 423, &["locked"]);

        // Deleted in the store behind this server's back.
        let c = fx.customer().await;
        assert_eq!(c.client.me().await.unwrap().login, c.login);
        let token = hex::decode(&c.token).unwrap();
        let hash = postvault_crypto::hash::sha256(&[&token]);
        assert!(fx.store.delete_session(&hash).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        assert_api(c.client.me().await, 401, &["not logged on"]);
    });
}

#[test]
fn customer_on_provider_routes_is_403() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        assert_api(
            c.client.provider_meter(&m.id).await,
            403,
            &["only a provider or operator account may do this"],
        );
        // Even a message the provider really signed.
        let key = fx.provider_key();
        let message = sign(
            &key,
            &m.id,
            3,
            ProviderCommand::Download {
                amount_mills: 1000,
                control_total_mills: 10_000,
            },
        );
        assert_api(
            c.client.provider_message(&message).await,
            403,
            &["only a provider or operator account may do this"],
        );
        // Whatever the body: the role is checked first.
        for body in [json!({}), json!({"message": 1}), json!([])] {
            let a = fx
                .json("POST", "/v1/provider/messages", Some(&c.token), &body)
                .await;
            assert_refused(
                &a,
                403,
                &["only a provider or operator account may do this"],
            );
        }
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
        // The operator may, with that very message (so the 403 was the role).
        let op = fx.operator().await;
        let answer = op.client.provider_message(&message).await.unwrap();
        assert_eq!(answer.descending_mills, 11_000);
    });
}
