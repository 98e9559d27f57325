//! A full print queue: the server answers 503 "busy printing" at once,
//! and the print that was turned away changed nothing (issue 4, item 1's
//! group commit: requests wait in a bounded queue for their batch).
//!
//! The queue fills for real: the test holds SQLite's write lock through a
//! second connection on the server's database file, so the one printer
//! (one module) takes the first print and waits for the lock, the next
//! prints wait in the queue (two places here, `print_queue = 2`), and the
//! one after them finds it full. Once the lock is given back, every
//! queued print is printed, and the turned-away one prints when sent
//! again with the same challenge.

use std::time::Duration;

use postvault_client::ClientError;
use postvault_client::api::{PrintAnswer, PrintRequest};
use postvault_client::customer;
use tokio::sync::OnceCell;

use crate::common::{Customer, Fixture, Meter, piece, run, start_with};

static FX: OnceCell<Fixture> = OnceCell::const_new();

async fn fx() -> &'static Fixture {
    FX.get_or_init(|| start_with(900, |c| c.print_queue = 2))
        .await
}

/// Sends a print; `Err((status, message))` when refused.
async fn send(c: &Customer, m: &Meter, req: &PrintRequest) -> Result<PrintAnswer, (u16, String)> {
    c.client.print(&m.id, req).await.map_err(|e| match e {
        ClientError::Api { status, message } => (status, message),
        other => panic!("not an API refusal: {other:?}"),
    })
}

#[test]
fn a_full_print_queue_answers_503_and_changes_nothing() {
    run(async {
        let fx = fx().await;
        let c = fx.customer().await;
        let mut meters = Vec::new();
        for _ in 0..4 {
            meters.push(fx.funded(&c, 10_000).await);
        }
        let pieces: Vec<_> = meters.iter().map(|m| m.request(&piece(700))).collect();
        let reqs: Vec<_> = pieces.iter().map(customer::print_request).collect();
        let mut before = Vec::new();
        for m in &meters[1..] {
            before.push(fx.snapshot(&c, &m.id).await);
        }

        let db = rusqlite::Connection::open(fx.data.join("postvault.sqlite")).unwrap();
        db.execute_batch("BEGIN IMMEDIATE").unwrap();
        let refused = tokio::sync::Notify::new();
        // Sends print `i`; a refusal is signalled at once, since the prints
        // that were queued wait for the lock this test holds.
        let send_signalling = |i: usize| {
            let (c, m, r, refused) = (&c, &meters[i], &reqs[i], &refused);
            async move {
                let answer = send(c, m, r).await;
                if answer.is_err() {
                    refused.notify_one();
                }
                answer
            }
        };
        let (first, (second, third, fourth, waited)) = tokio::join!(
            // Taken by the printer, which then waits for the write lock.
            send(&c, &meters[0], &reqs[0]),
            async {
                // Time for the printer to take it (a task wake-up: far
                // less, even on a loaded machine).
                tokio::time::sleep(Duration::from_secs(2)).await;
                // Three prints for two places in the queue, in any order.
                tokio::join!(
                    send_signalling(1),
                    send_signalling(2),
                    send_signalling(3),
                    async {
                        let waited =
                            tokio::time::timeout(Duration::from_secs(10), refused.notified()).await;
                        // Only now is the lock given back.
                        db.execute_batch("ROLLBACK").unwrap();
                        waited
                    }
                )
            }
        );
        assert!(
            waited.is_ok(),
            "no print was refused within 10 s: a full queue made a print wait instead of a 503"
        );
        let first = first.unwrap_or_else(|e| panic!("the printer's print refused: {e:?}"));
        customer::check_print_answer(&meters[0].key, &pieces[0], &first, &meters[0].cert_der)
            .unwrap();
        let mut turned_away = Vec::new();
        for (i, answer) in [(1, second), (2, third), (3, fourth)] {
            match answer {
                Ok(a) => {
                    // Queued, and printed once the lock was free.
                    customer::check_print_answer(
                        &meters[i].key,
                        &pieces[i],
                        &a,
                        &meters[i].cert_der,
                    )
                    .unwrap();
                    assert_eq!(a.descending_mills, 9_300);
                }
                Err((status, message)) => {
                    assert_eq!(status, 503, "{message}");
                    assert!(message.contains("busy printing"), "{message}");
                    assert!(message.contains("try again"), "{message}");
                    assert_eq!(
                        fx.snapshot(&c, &meters[i].id).await,
                        before[i - 1],
                        "the print turned away changed the meter"
                    );
                    turned_away.push(i);
                }
            }
        }
        assert_eq!(
            turned_away.len(),
            1,
            "refused: {turned_away:?} (two places in the queue)"
        );
        // The same request again, now that there is room: it prints.
        let i = turned_away[0];
        let answer = send(&c, &meters[i], &reqs[i]).await.unwrap();
        customer::check_print_answer(&meters[i].key, &pieces[i], &answer, &meters[i].cert_der)
            .unwrap();
        assert_eq!(answer.descending_mills, 9_300);
        assert_eq!(
            fx.store.ledger_of_meter(&meters[i].id).await.unwrap().len(),
            1
        );
    })
}
