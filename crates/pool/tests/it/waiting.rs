//! The async checkout waits for a member to come back.
use std::time::Duration;

use postvault_pool::Pool;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_waits_until_the_member_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::open(config(dir.path(), 1)).unwrap();
    let held = pool.checkout().await.unwrap();
    let id = held.module_id().to_string();
    assert!(pool.try_checkout().is_none());

    let p = pool.clone();
    let mut waiter =
        tokio::spawn(async move { p.checkout().await.map(|c| c.module_id().to_string()) });
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut waiter)
            .await
            .is_err(),
        "the second checkout did not wait"
    );

    // The member moves into a blocking task and back, then is dropped.
    let held = tokio::task::spawn_blocking(move || held).await.unwrap();
    drop(held);
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter was not served")
        .unwrap()
        .unwrap();
    assert_eq!(got, id);
    assert!(pool.try_checkout().is_some());
}

/// Checkouts one after another take the members in turn, so a server
/// that runs one meter transaction at a time (SQLite) still spreads its
/// prints over every module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_one_at_a_time_take_the_members_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::open(config(dir.path(), 3)).unwrap();
    let mut order = Vec::new();
    for _ in 0..6 {
        let co = pool.checkout().await.unwrap();
        order.push(co.index());
        drop(co);
    }
    assert_eq!(order[..3], order[3..], "{order:?}");
    let mut first = order[..3].to_vec();
    first.sort_unstable();
    assert_eq!(first, [0, 1, 2], "{order:?}");
}
