//! A module that cannot write its NVM (issue 4, item 4: "a module in Error
//! is taken out of the pool and reported"). A directory put where the
//! module writes its NVM's temporary file makes the write fail, even for
//! root; the module keeps its old state, goes to Error, and the pool takes
//! it out of service. The print that met the failure gets a 500 that says
//! nothing changed; with no module left, the next one gets a 503 that says
//! so. The meter is as it was throughout, and the pool's status names the
//! member and why.

use postvault_client::{ClientError, customer};
use tokio::sync::OnceCell;

use crate::common::{Fixture, piece, run, start};

static FX: OnceCell<Fixture> = OnceCell::const_new();

async fn fx() -> &'static Fixture {
    FX.get_or_init(|| start(900)).await
}

#[test]
fn a_module_that_cannot_write_its_nvm_is_taken_out_and_nothing_changes() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let mut m = fx.funded(&c, 10_000).await;
        m.print(&c, 500).await;
        let before = fx.snapshot(&c, &m.id).await;
        assert!(fx.server.modules().iter().all(|s| s.in_service));

        // MeterGen refills the stock of two in the background with the
        // same module; the blocker goes in once it is done, so that only
        // the print below meets it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while fx.store.count_meters(Some("Unleased")).await.unwrap() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "MeterGen never refilled its stock"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The fixture's one module lives in DATA/modules/m0.
        // (Steady writes leave the previous image there; it goes first.)
        let blocker = fx.data.join("modules/m0/nvm.sealed.tmp");
        match std::fs::remove_file(&blocker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{}: {e}", blocker.display()),
        }
        std::fs::create_dir(&blocker).unwrap();
        let req = customer::print_request(&m.request(&piece(700)));
        match c.client.print(&m.id, &req).await {
            Err(ClientError::Api { status, message }) => {
                assert_eq!(status, 500, "{message}");
                assert!(message.contains("nothing was changed"), "{message}");
            }
            other => panic!("a print went through a module that cannot persist: {other:?}"),
        }
        let status = fx.server.modules();
        assert_eq!(status.len(), 1);
        assert!(!status[0].in_service, "{status:?}");
        let reason = status[0].reason.as_deref().unwrap_or_default();
        assert!(reason.contains("Error"), "{reason}");

        match c.client.print(&m.id, &req).await {
            Err(ClientError::Api { status, message }) => {
                assert_eq!(status, 503, "{message}");
                assert!(
                    message.contains("no cryptographic module is in service"),
                    "{message}"
                );
                assert!(message.contains("nothing was recorded"), "{message}");
            }
            other => panic!("a print without a module in service: {other:?}"),
        }
        // Nothing changed: the row and ledger from the store; the registers
        // as the owner sees them (read from the row, no module needed).
        let after = fx.snapshot(&c, &m.id).await;
        assert_eq!(after.row, before.row);
        assert_eq!(after.ledger, before.ledger);
        assert_eq!(after.money, before.money);
        std::fs::remove_dir(&blocker).unwrap();
    });
}
