//! Meters that are not the caller's to use: unknown device IDs and
//! another customer's meter on every meter route (answered alike, 404,
//! so a customer cannot probe which meters exist), a meter registered
//! twice, and registration secrets sealed for another device.

use postvault_client::api::RegistrationRequest;
use postvault_client::customer;
use postvault_crypto::Faults;
use postvault_crypto::rng::Rng;
use postvault_module::psd::HpkeSealed;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::common::{
    Customer, Fixture, LICENSING_ZIP, Meter, PSD_PASSWORD, USER_ID, assert_refused, piece, run,
    start,
};

static FX: OnceCell<Fixture> = OnceCell::const_new();

async fn fx() -> &'static Fixture {
    FX.get_or_init(|| start(900)).await
}

/// Every meter route of a customer, with a well-formed body (the print
/// and correction bodies MACed with `m`'s key, as its owner would).
fn meter_routes(id: &str, m: &Meter, registration: &Value) -> Vec<(&'static str, String, Value)> {
    let print = serde_json::to_value(customer::print_request(&m.request(&piece(680)))).unwrap();
    let mut correction = print.clone();
    correction["category"] = json!("CORR");
    vec![
        ("GET", format!("/v1/meters/{id}"), json!({})),
        (
            "POST",
            format!("/v1/meters/{id}/registration"),
            registration.clone(),
        ),
        (
            "POST",
            format!("/v1/meters/{id}/purchases"),
            json!({"amount_mills": 1000}),
        ),
        ("POST", format!("/v1/meters/{id}/indicia"), print),
        ("GET", format!("/v1/meters/{id}/indicia"), json!({})),
        ("POST", format!("/v1/meters/{id}/corrections"), correction),
        ("POST", format!("/v1/meters/{id}/refund"), json!({})),
        ("GET", format!("/v1/meters/{id}/money"), json!({})),
    ]
}

/// A registration body for `id`, sealed as a client would.
async fn registration_body(c: &Customer, id: &str) -> Value {
    let dep = c.client.deployment().await.unwrap();
    let device = customer::parse_device(id).unwrap_or_else(|_| "42-1-999999".parse().unwrap());
    let mut rng = Rng::new(Faults::none());
    let key = customer::new_hmac_key(&mut rng).unwrap();
    let secrets = customer::seal_registration(
        &mut rng,
        &dep.registration_public_key,
        &device,
        USER_ID,
        &key,
        PSD_PASSWORD,
    )
    .unwrap();
    serde_json::to_value(RegistrationRequest {
        user_id: USER_ID.into(),
        secrets,
        licensing_zip: LICENSING_ZIP,
    })
    .unwrap()
}

#[test]
fn unknown_meter_is_404_on_every_route() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        // Well-formed IDs are named in their stored form ("42-1-999999" is
        // "0042-0001-00999999"); malformed ones say why.
        for (id, needles, certificate) in [
            (
                "0042-0001-09999999",
                vec!["no meter \"0042-0001-09999999\" in this account"],
                "no certified meter \"0042-0001-09999999\"",
            ),
            (
                "42-1-999999",
                vec!["no meter \"0042-0001-00999999\" in this account"],
                "no certified meter \"0042-0001-00999999\"",
            ),
            (
                "nope",
                vec!["no meter \"nope\": not a device ID", "3 groups"],
                "no meter \"nope\": not a device ID",
            ),
            (
                "0",
                vec!["no meter \"0\": not a device ID"],
                "no meter \"0\": not a device ID",
            ),
        ] {
            let reg = registration_body(&c, id).await;
            for (method, path, body) in meter_routes(id, &m, &reg) {
                let a = fx.json(method, &path, Some(&c.token), &body).await;
                let mut all = needles.clone();
                all.push("GET /v1/meters");
                assert_refused(&a, 404, &all);
            }
            let a = fx
                .json("GET", &format!("/v1/certificates/{id}"), None, &json!({}))
                .await;
            assert_refused(&a, 404, &[certificate]);
        }
        assert_eq!(fx.snapshot(&c, &m.id).await, before);

        // The short form of an owned meter's ID names that meter.
        let d: postvault_indicium::DeviceId = m.id.parse().unwrap();
        let short = format!("{}-{}-{}", d.vendor, d.model, d.serial);
        assert_ne!(short, m.id);
        let a = fx
            .json(
                "GET",
                &format!("/v1/meters/{short}"),
                Some(&c.token),
                &json!({}),
            )
            .await;
        assert_eq!(a.0, 200, "{:?}", a.1);
        assert_eq!(a.1["device_id"], json!(m.id));
    });
}

#[test]
fn another_customers_meter_is_404_on_every_route() {
    run(async {
        let fx = fx().await;
        let owner = fx.customer().await;
        let mut m = fx.funded(&owner, 10_000).await;
        let other = fx.customer().await;
        let reserved = fx.reserved(&owner).await;
        let before = fx.snapshot(&owner, &m.id).await;
        let before_reserved = fx.snapshot(&owner, &reserved).await;
        // `other` even holds the owner's own MACed requests.
        for id in [&m.id, &reserved] {
            let reg = registration_body(&other, id).await;
            for (method, path, body) in meter_routes(id, &m, &reg) {
                let a = fx.json(method, &path, Some(&other.token), &body).await;
                assert_refused(&a, 404, &[&format!("no meter {id:?} in this account")]);
            }
        }
        assert!(other.client.meters().await.unwrap().is_empty());
        assert_eq!(fx.snapshot(&owner, &m.id).await, before);
        assert_eq!(fx.snapshot(&owner, &reserved).await, before_reserved);
        // The owner's challenge was not used up.
        m.print(&owner, 680).await;
        // With the owner's print behind it (the server now knows the
        // meter's owner without reading it), the other customer is still
        // refused everywhere, and nothing changes.
        let before = fx.snapshot(&owner, &m.id).await;
        let reg = registration_body(&other, &m.id).await;
        for (method, path, body) in meter_routes(&m.id, &m, &reg) {
            let a = fx.json(method, &path, Some(&other.token), &body).await;
            assert_refused(&a, 404, &[&format!("no meter {:?} in this account", m.id)]);
        }
        assert_eq!(fx.snapshot(&owner, &m.id).await, before);
        m.print(&owner, 680).await;
    });
}

#[test]
fn registering_twice_is_409() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let reg = registration_body(&c, &m.id).await;
        let a = fx
            .json(
                "POST",
                &format!("/v1/meters/{}/registration", m.id),
                Some(&c.token),
                &reg,
            )
            .await;
        assert_refused(
            &a,
            409,
            &["is Leased", "only a newly reserved meter can be registered"],
        );
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
    });
}

#[test]
fn registration_sealed_for_another_device_is_refused() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let id = fx.reserved(&c).await;
        let before = fx.snapshot(&c, &id).await;
        // Sealed for another meter: the module cannot open it for this one.
        let other = "42-1-999999";
        let reg = registration_body(&c, other).await;
        let path = format!("/v1/meters/{id}/registration");
        let a = fx.json("POST", &path, Some(&c.token), &reg).await;
        assert_refused(
            &a,
            409,
            &["the sealed secrets do not open with this deployment's registration key"],
        );
        // Not sealed at all: random bytes, or the wrong lengths.
        for secrets in [
            json!({"enc": "00".repeat(32), "ciphertext": "00".repeat(80)}),
            json!({"enc": "00".repeat(3), "ciphertext": "00".repeat(80)}),
            json!({"enc": "00".repeat(32), "ciphertext": ""}),
        ] {
            let mut body = reg.clone();
            body["secrets"] = secrets;
            let a = fx.json("POST", &path, Some(&c.token), &body).await;
            assert_refused(&a, 409, &["the sealed secrets do not open"]);
        }
        // Not hex: the JSON does not fit.
        let mut body = reg.clone();
        body["secrets"] = json!({"enc": "zz", "ciphertext": "00"});
        let a = fx.json("POST", &path, Some(&c.token), &body).await;
        assert_refused(&a, 422, &["the JSON does not fit this request"]);
        let after = fx.snapshot(&c, &id).await;
        assert_eq!(after, before);
        assert_eq!(after.row.unwrap().state, "Unleased");
        // The meter can still be registered with secrets sealed for it.
        let reg = registration_body(&c, &id).await;
        let a = fx.json("POST", &path, Some(&c.token), &reg).await;
        assert_eq!(a.0, 201, "{}", a.1);
        let _: HpkeSealed = serde_json::from_value(reg["secrets"].clone()).unwrap();
    });
}

#[test]
fn the_meter_list_shows_each_meter_as_it_reads_alone() {
    run(async {
        let fx = fx().await;
        let owner = fx.customer().await;
        let mut funded = fx.funded(&owner, 10_000).await;
        funded.print(&owner, 680).await;
        let registered = fx.registered(&owner).await;
        let reserved = fx.reserved(&owner).await;
        // 34 meters in all: the list is read in more than one meter job.
        let mut more = Vec::new();
        for _ in 0..31 {
            more.push(fx.reserved(&owner).await);
        }
        let other = fx.customer().await;
        let others = fx.funded(&other, 5_000).await;

        let list = owner.client.meters().await.unwrap();
        let mut ids: Vec<&str> = list.iter().map(|v| v.device_id.as_str()).collect();
        ids.sort_unstable();
        let mut want = vec![
            funded.id.as_str(),
            registered.id.as_str(),
            reserved.as_str(),
        ];
        want.extend(more.iter().map(String::as_str));
        want.sort_unstable();
        assert_eq!(want.len(), 34);
        assert_eq!(ids, want, "the owner's meters, and only those");
        for listed in &list {
            let alone = owner.client.meter(&listed.device_id).await.unwrap();
            assert_eq!(
                format!("{listed:?}"),
                format!("{alone:?}"),
                "meter {} differs between the list and its own page",
                listed.device_id
            );
        }
        let by_id = |id: &str| list.iter().find(|v| v.device_id == id).unwrap();
        let f = by_id(&funded.id);
        assert_eq!(
            (
                f.state.as_str(),
                f.ascending_mills,
                f.descending_mills,
                f.piece_count
            ),
            ("Leased", 680, 10_000 - 680, 1)
        );
        let r = by_id(&registered.id);
        assert_eq!((r.state.as_str(), r.descending_mills), ("Leased", 0));
        let v = by_id(&reserved);
        assert_eq!((v.state.as_str(), v.licensing_zip), ("Unleased", None));
        // The other customer sees only its own meter.
        let theirs = other.client.meters().await.unwrap();
        assert_eq!(theirs.len(), 1);
        assert_eq!(theirs[0].device_id, others.id);
        assert_eq!(theirs[0].descending_mills, 5_000);
    });
}
