//! Print requests the module must refuse: the same request twice (the
//! second is a replay), a request altered after it was MACed (postage
//! changed, MAC flipped), a request carrying an old challenge, and more
//! postage than the descending register holds. Each is a 409 with the
//! module's reason; registers, ledger and the challenge stay as they were.

use postvault_client::customer;
use tokio::sync::OnceCell;

use crate::common::{Fixture, assert_api, piece, run, start};

static FX: OnceCell<Fixture> = OnceCell::const_new();

async fn fx() -> &'static Fixture {
    FX.get_or_init(|| start(900)).await
}

#[test]
fn replayed_print_is_409() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let m = fx.funded(&c, 10_000).await;
        let req = customer::print_request(&m.request(&piece(680)));
        let first = c.client.print(&m.id, &req).await.unwrap();
        assert_eq!(first.descending_mills, 9_320);
        let before = fx.snapshot(&c, &m.id).await;
        assert_api(
            c.client.print(&m.id, &req).await,
            409,
            &["stale or replayed request: challenge does not match"],
        );
        let after = fx.snapshot(&c, &m.id).await;
        assert_eq!(after, before);
        assert_eq!(after.ledger.len(), 1);
        assert_eq!(after.view.unwrap()["descending_mills"], 9_320);
    });
}

#[test]
fn altered_print_is_409() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let mut m = fx.funded(&c, 10_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let good = customer::print_request(&m.request(&piece(680)));
        // Postage changed after the MAC.
        let mut cheap = good.clone();
        cheap.postage_mills = 1;
        assert_api(
            c.client.print(&m.id, &cheap).await,
            409,
            &["request MAC does not verify"],
        );
        // Destination changed after the MAC.
        let mut moved = good.clone();
        moved.destination_zip = 0;
        assert_api(
            c.client.print(&m.id, &moved).await,
            409,
            &["request MAC does not verify"],
        );
        // One bit of the MAC flipped.
        let mut mac = hex::decode(&good.mac).unwrap();
        mac[0] ^= 1;
        let mut flipped = good.clone();
        flipped.mac = hex::encode(mac);
        assert_api(
            c.client.print(&m.id, &flipped).await,
            409,
            &["request MAC does not verify"],
        );
        // Another user's name on the request.
        let mut who = good.clone();
        who.user_id = "mallory".into();
        assert_api(
            c.client.print(&m.id, &who).await,
            409,
            &["user \"mallory\" is not a user of meter"],
        );
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
        // The unaltered request still prints: the challenge was not used up.
        m.print(&c, 680).await;
    });
}

#[test]
fn stale_challenge_is_409() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let mut m = fx.funded(&c, 10_000).await;
        let stale = m.challenge;
        m.print(&c, 680).await;
        m.print(&c, 680).await;
        let before = fx.snapshot(&c, &m.id).await;
        // Correctly MACed, but over a challenge the module has moved past.
        let current = m.challenge;
        m.challenge = stale;
        let req = customer::print_request(&m.request(&piece(500)));
        m.challenge = current;
        assert_api(
            c.client.print(&m.id, &req).await,
            409,
            &["stale or replayed request: challenge does not match"],
        );
        // A made-up challenge too.
        m.challenge = [0; 16];
        let req = customer::print_request(&m.request(&piece(500)));
        m.challenge = current;
        assert_api(
            c.client.print(&m.id, &req).await,
            409,
            &["challenge does not match"],
        );
        let after = fx.snapshot(&c, &m.id).await;
        assert_eq!(after, before);
        assert_eq!(
            after.view.unwrap()["challenge"],
            hex::encode(current).as_str()
        );
    });
}

#[test]
fn more_postage_than_the_dr_holds_is_409() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let mut m = fx.funded(&c, 1_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let req = customer::print_request(&m.request(&piece(1_001)));
        assert_api(
            c.client.print(&m.id, &req).await,
            409,
            &["insufficient postage: DR is 1000 mills, the piece needs 1001 mills"],
        );
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
        // The whole DR is fine; then nothing is left.
        m.print(&c, 1_000).await;
        let before = fx.snapshot(&c, &m.id).await;
        let req = customer::print_request(&m.request(&piece(1)));
        assert_api(
            c.client.print(&m.id, &req).await,
            409,
            &["insufficient postage: DR is 0 mills"],
        );
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
        // A correction beyond the DR too.
        let mut p = piece(1);
        p.category = *b"CORR";
        let req = customer::print_request(&m.request(&p));
        assert_api(
            c.client.correct(&m.id, &req).await,
            409,
            &["insufficient postage"],
        );
        assert_eq!(fx.snapshot(&c, &m.id).await, before);
    });
}
