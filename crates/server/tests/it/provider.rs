//! The provider's side, logged on as the first operator (its password is
//! in `DATA/operator-credentials.txt`) and signing with the development
//! provider key in `DATA/provider/`: a message with a bad signature, a
//! replayed or old sequence number, a wrong control total, a message for
//! no meter; and the customer's refund asked twice, and a print after
//! the refund. Each is a 4xx with the module's reason, and the meter is
//! unchanged.

use postvault_client::customer;
use postvault_crypto::Faults;
use postvault_crypto::ecdsa::EcdsaP256KeyPair;
use postvault_module::psd::ProviderCommand;
use serde_json::json;
use tokio::sync::OnceCell;

use crate::common::{DATE, Fixture, PASSWORD, assert_api, assert_refused, piece, run, sign, start};

static FX: OnceCell<Fixture> = OnceCell::const_new();

async fn fx() -> &'static Fixture {
    FX.get_or_init(|| start(900)).await
}

fn download(amount_mills: u64, control_total_mills: u64) -> ProviderCommand {
    ProviderCommand::Download {
        amount_mills,
        control_total_mills,
    }
}

#[test]
fn bad_signature_is_409() {
    run(async {
        let fx = fx().await;
        let op = fx.operator().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let next = op.client.provider_meter(&m.id).await.unwrap().next_sequence;
        // Signed by another key.
        let stranger = EcdsaP256KeyPair::generate(&Faults::none()).unwrap();
        let forged = sign(&stranger, &m.id, next, download(1000, 10_000));
        assert_api(
            op.client.provider_message(&forged).await,
            409,
            &["the provider signature on the message does not verify"],
        );
        // Signed by the provider, then the amount changed.
        let mut altered = sign(&fx.provider_key(), &m.id, next, download(1, 10_000));
        altered.body.command = download(400_000, 10_000);
        assert_api(
            op.client.provider_message(&altered).await,
            409,
            &["signature on the message does not verify"],
        );
        // Signed for one meter, sent for another.
        let other = fx.funded(&c, 10_000).await;
        let mut moved = sign(&fx.provider_key(), &other.id, next, download(1000, 10_000));
        moved.body.device_id = m.id.clone();
        assert_api(
            op.client.provider_message(&moved).await,
            409,
            &["signature on the message does not verify"],
        );
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
    });
}

#[test]
fn replayed_sequence_is_409() {
    run(async {
        let fx = fx().await;
        let op = fx.operator().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let key = fx.provider_key();
        let next = op.client.provider_meter(&m.id).await.unwrap().next_sequence;
        let message = sign(&key, &m.id, next, download(1000, 10_000));
        let answer = op.client.provider_message(&message).await.unwrap();
        assert_eq!(answer.control_total_mills, 11_000);
        let before = fx.snapshot(&c, &m.id).await;
        // The same message again.
        assert_api(
            op.client.provider_message(&message).await,
            409,
            &[&format!(
                "replayed provider message: sequence {next} is not above the last one applied"
            )],
        );
        // A fresh signature over an old sequence number.
        let old = sign(&key, &m.id, next - 1, download(1000, 11_000));
        assert_api(
            op.client.provider_message(&old).await,
            409,
            &["replayed provider message"],
        );
        let after = fx.snapshot(&c, &m.id).await;
        assert_eq!(after, before);
        assert_eq!(after.money.len(), 2);
    });
}

#[test]
fn wrong_control_total_is_409() {
    run(async {
        let fx = fx().await;
        let op = fx.operator().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let key = fx.provider_key();
        let next = op.client.provider_meter(&m.id).await.unwrap().next_sequence;
        for total in [0, 9_999, 10_001, u64::MAX] {
            let message = sign(&key, &m.id, next, download(1000, total));
            assert_api(
                op.client.provider_message(&message).await,
                409,
                &[&format!(
                    "control total mismatch: the provider's books say {total} mills, the meter says 10000 mills"
                )],
            );
        }
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
        // The sequence number was not used up.
        assert_eq!(
            op.client.provider_meter(&m.id).await.unwrap().next_sequence,
            next
        );
    });
}

#[test]
fn messages_for_no_meter_are_refused() {
    run(async {
        let fx = fx().await;
        let op = fx.operator().await;
        let key = fx.provider_key();
        let message = sign(&key, "0042-0001-09999999", 1, download(1000, 0));
        assert_api(
            op.client.provider_message(&message).await,
            404,
            &["no meter \"0042-0001-09999999\""],
        );
        assert_api(
            op.client.provider_meter("0042-0001-09999999").await,
            404,
            &["no meter"],
        );
        let message = sign(&key, "not a meter", 1, download(1000, 0));
        assert_api(
            op.client.provider_message(&message).await,
            422,
            &["\"not a meter\" is not a device ID"],
        );
        // A signature that is not 64 bytes of hex: the JSON does not fit.
        let mut body = json!({"message": message});
        body["message"]["signature"] = json!("00");
        let a = fx
            .json("POST", "/v1/provider/messages", Some(&op.token), &body)
            .await;
        assert_refused(&a, 422, &["the JSON does not fit this request"]);
        // No meter was made for it (MeterGen of other tests may make others).
        for id in ["0042-0001-09999999", "not a meter"] {
            assert!(fx.store.get_meter(id).await.unwrap().is_none());
        }
    });
}

#[test]
fn refund_twice_is_409() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let refund = c.client.refund(&m.id).await.unwrap();
        assert_eq!(refund.refunded_mills, 10_000);
        customer::check_refund_answer(&m.device, &refund, &m.cert_der).unwrap();
        let before = fx.snapshot(&c, &m.id).await;
        assert_api(c.client.refund(&m.id).await, 409, &["in state withdrawn"]);
        let after = fx.snapshot(&c, &m.id).await;
        assert_eq!(after, before);
        assert_eq!(after.money.len(), 2);
        // Nor may the provider refund it again, or download to it.
        let op = fx.operator().await;
        let view = op.client.provider_meter(&m.id).await.unwrap();
        assert_eq!(view.state, "Withdrawn");
        let key = fx.provider_key();
        let again = sign(
            &key,
            &m.id,
            view.next_sequence,
            ProviderCommand::Refund { date: DATE },
        );
        assert_api(
            op.client.provider_message(&again).await,
            409,
            &["in state withdrawn"],
        );
        let more = sign(&key, &m.id, view.next_sequence, download(1000, 10_000));
        assert_api(
            op.client.provider_message(&more).await,
            409,
            &["in state withdrawn"],
        );
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
    });
}

#[test]
fn print_after_refund_is_409() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let mut m = fx.funded(&c, 10_000).await;
        m.print(&c, 680).await;
        c.client.refund(&m.id).await.unwrap();
        let before = fx.snapshot(&c, &m.id).await;
        let req = customer::print_request(&m.request(&piece(680)));
        assert_api(
            c.client.print(&m.id, &req).await,
            409,
            &["in state withdrawn"],
        );
        let mut p = piece(680);
        p.category = *b"CORR";
        let req = customer::print_request(&m.request(&p));
        assert_api(
            c.client.correct(&m.id, &req).await,
            409,
            &["in state withdrawn"],
        );
        assert_api(
            c.client.purchase(&m.id, 1000).await,
            409,
            &["in state withdrawn"],
        );
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
    });
}

/// An operator makes a provider account; the provider logs on with its
/// own password and downloads into a meter. Only operators make such
/// accounts, only with the roles `provider` and `operator`, and a refused
/// request makes no account.
#[test]
fn operators_make_provider_accounts() {
    run(async {
        let fx = fx().await;
        let op = fx.operator().await;
        let made = op
            .client
            .staff_account("acme-provider", PASSWORD, "provider")
            .await
            .unwrap();
        assert_eq!(
            (made.login.as_str(), made.role.as_str()),
            ("acme-provider", "provider")
        );
        let provider = fx.client();
        let session = provider.logon("acme-provider", PASSWORD).await.unwrap();
        assert_eq!(session.role, "provider");
        let provider = provider.with_token(session.token.clone());
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let next = provider.provider_meter(&m.id).await.unwrap().next_sequence;
        let message = sign(&fx.provider_key(), &m.id, next, download(2_000, 10_000));
        let answer = provider.provider_message(&message).await.unwrap();
        assert_eq!(answer.control_total_mills, 12_000);

        // Neither a customer nor a provider may make accounts.
        for (who, token) in [("customer", &c.token), ("provider", &session.token)] {
            let body =
                json!({ "login": format!("by-{who}"), "password": PASSWORD, "role": "operator" });
            let a = fx
                .json("POST", "/v1/staff/accounts", Some(token), &body)
                .await;
            assert_refused(&a, 403, &["only an operator account"]);
            assert_api(
                fx.client().logon(&format!("by-{who}"), PASSWORD).await,
                401,
                &[],
            );
        }
        // Nobody logged on.
        let body = json!({ "login": "nobody-made", "password": PASSWORD, "role": "provider" });
        let a = fx.json("POST", "/v1/staff/accounts", None, &body).await;
        assert_eq!(a.0, 401, "{a:?}");

        // Bad requests from the operator.
        let cases = [
            (
                json!({ "login": "new-one", "password": PASSWORD, "role": "customer" }),
                422,
                "role must be \"provider\" or \"operator\"",
            ),
            (
                json!({ "login": "new-one", "password": PASSWORD, "role": "admin" }),
                422,
                "role must be",
            ),
            (
                json!({ "login": "new-one", "password": "short", "role": "provider" }),
                422,
                "at least 12 characters",
            ),
            (
                json!({ "login": "x", "password": PASSWORD, "role": "provider" }),
                422,
                "login must be 3 to 64 characters",
            ),
            (
                json!({ "login": "new-one", "password": PASSWORD }),
                422,
                "missing field `role`",
            ),
            (
                json!({ "login": "new-one", "password": PASSWORD, "role": "provider", "admin": true }),
                422,
                "unknown field `admin`",
            ),
            (
                json!({ "login": "acme-provider", "password": PASSWORD, "role": "operator" }),
                409,
                "the login \"acme-provider\" is taken",
            ),
        ];
        for (body, status, needle) in cases {
            let a = fx
                .json("POST", "/v1/staff/accounts", Some(&op.token), &body)
                .await;
            assert_refused(&a, status, &[needle]);
        }
        assert_api(fx.client().logon("new-one", PASSWORD).await, 401, &[]);
        // The taken login kept its role and password.
        let again = fx.client().logon("acme-provider", PASSWORD).await.unwrap();
        assert_eq!(again.role, "provider");
    });
}
