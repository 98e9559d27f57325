//! A print whose store commit fails (issue 4, item 1: "if the commit fails
//! the client gets an error and nothing changed"). The failure is real: a
//! trigger put on the ledger table behind the server's back makes SQLite
//! abort the meter transaction's commit, after the module has already
//! signed the indicium and moved its checkpoint on.
//!
//! The client must get a 500 that says nothing changed, and no indicium;
//! the meter's registers, row, ledger and money rows must be as before.
//! Once the trigger is gone, the same request (the store still holds the
//! old challenge) must print: the module is brought back to the store's
//! checkpoint on the meter's next use, the registers add up to the control
//! total, and the module's audit log in the store stays one whole chain,
//! with an entry for each discarded transaction in it.

use postvault_audit::AuditEntry;
use postvault_client::customer;
use postvault_client::{ClientError, api::PrintRequest};
use tokio::sync::OnceCell;

use crate::common::{Customer, Fixture, Meter, piece, run, start};

static FX: OnceCell<Fixture> = OnceCell::const_new();

async fn fx() -> &'static Fixture {
    FX.get_or_init(|| start(900)).await
}

const REFUSE_LEDGER: &str = "CREATE TRIGGER refuse_ledger BEFORE INSERT ON ledger \
     BEGIN SELECT RAISE(ABORT, 'the test refuses ledger rows'); END;";

/// A second connection on the server's SQLite file, for the trigger.
fn database(fx: &Fixture) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(fx.data.join("postvault.sqlite")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
    db
}

async fn print_raw(c: &Customer, m: &Meter, req: &PrintRequest) -> Result<u64, ClientError> {
    c.client.print(&m.id, req).await.map(|a| a.descending_mills)
}

#[test]
fn a_failed_commit_changes_nothing_and_the_next_print_recovers() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let mut m = fx.funded(&c, 10_000).await;
        m.print(&c, 500).await;
        let before = fx.snapshot(&c, &m.id).await;
        assert_eq!(before.ledger.len(), 1);

        let db = database(fx);
        db.execute_batch(REFUSE_LEDGER).unwrap();
        let piece_req = m.request(&piece(700));
        let req = customer::print_request(&piece_req);
        match print_raw(&c, &m, &req).await {
            Err(ClientError::Api { status, message }) => {
                assert_eq!(status, 500, "{message}");
                assert!(message.contains("nothing was changed"), "{message}");
            }
            other => panic!("the print went through a failing commit: {other:?}"),
        }
        let after = fx.snapshot(&c, &m.id).await;
        assert_eq!(after, before, "a failed commit changed the meter");

        // Refused again while the ledger still refuses: no half-done
        // recovery is left behind either.
        assert!(print_raw(&c, &m, &req).await.is_err());
        assert_eq!(fx.snapshot(&c, &m.id).await, before);

        db.execute_batch("DROP TRIGGER refuse_ledger").unwrap();
        let answer = c.client.print(&m.id, &req).await.unwrap();
        let checked = customer::check_print_answer(&m.key, &piece_req, &answer, &m.cert_der)
            .expect("a good answer after the recovery");
        m.challenge = checked.new_challenge;
        assert_eq!(answer.descending_mills, 8_800);
        assert_eq!(answer.ascending_mills, 1_200);
        let now = fx.snapshot(&c, &m.id).await;
        assert_eq!(now.ledger.len(), 2);
        let view = now.view.unwrap();
        assert_eq!(view["descending_mills"], 8_800);
        assert_eq!(view["ascending_mills"], 1_200);
        // And the meter goes on from the new challenge.
        assert_eq!(m.print(&c, 300).await.descending_mills, 8_500);

        // The module's log in the store: every entry once, each linked to
        // the one before, signatures checked with the module's audit key.
        let keys = fx.server.export_audit_keys().await.unwrap();
        let [(module_id, key)] = keys.as_slice() else {
            panic!("one module expected, got {}", keys.len());
        };
        let records = fx.store.audit_entries(module_id, 0).await.unwrap();
        let entries: Vec<AuditEntry> = records
            .iter()
            .map(|r| AuditEntry::from_json_line(&r.line).unwrap())
            .collect();
        let key: [u8; 65] = key.as_slice().try_into().unwrap();
        postvault_audit::verify_chain(&entries, &key)
            .unwrap_or_else(|f| panic!("the store's audit log is broken: {f}"));
        // Each failed commit's piece (700 mills) was discarded by the
        // recovery at the next attempt: two of them.
        let discarded = entries
            .iter()
            .filter(|e| {
                e.command == "AutoRecoverCheckpoint"
                    && e.reason == "discarded"
                    && e.data.get("device") == Some(&m.id)
                    && e.data.get("amount_mills").map(String::as_str) == Some("700")
            })
            .count();
        assert_eq!(
            discarded,
            2,
            "the discarded transactions are not in the store's log: {:#?}",
            entries.iter().rev().take(16).collect::<Vec<_>>()
        );
    });
}
