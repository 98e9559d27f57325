//! SQLite only: how far the WAL grows before a commit copies it back into
//! the database. The print path pays for every checkpoint, so the store
//! checkpoints every `WAL_AUTOCHECKPOINT_PAGES` pages instead of SQLite's
//! 1000; the WAL must still stay bounded, and nothing may be lost.

use postvault_store::{Commit, WAL_AUTOCHECKPOINT_PAGES};

use crate::db::{Backend, Db, meter};

/// Meters rewritten by each commit, and the size of each package: one
/// commit writes about a megabyte of pages.
const METERS: usize = 64;
const PACKAGE_BYTES: usize = 16 * 1024;

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::test]
async fn the_wal_grows_to_the_checkpoint_size_and_no_further() {
    let db = Db::new(Backend::Sqlite).await;
    let store = db.open().await;
    let path = db.sqlite_path().expect("a SQLite database").to_path_buf();
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    let page = db.raw_i64("PRAGMA page_size").await as u64;
    let frame = page + 24;
    let ids: Vec<String> = (0..METERS).map(|i| format!("PV-{i}")).collect();
    for id in &ids {
        store.create_meter(&meter(id, None)).await.unwrap();
    }
    let per_commit_pages = (METERS * PACKAGE_BYTES) as u64 / page;
    // Enough commits for one and a half checkpoint intervals.
    let commits = (WAL_AUTOCHECKPOINT_PAGES as u64 * 3 / 2).div_ceil(per_commit_pages);
    let mut before_first_checkpoint = 0;
    let mut largest = 0;
    let mut last = Vec::new();
    for round in 0..commits {
        let tx = store.lock_meters(&ids).await.unwrap();
        last = ids
            .iter()
            .map(|id| {
                let mut m = meter(id, None);
                // 16 bytes repeated, different each round, so every page changes.
                m.package = format!("{round:08}{id:>8}").repeat(PACKAGE_BYTES / 16);
                m
            })
            .collect();
        tx.commit(Commit {
            meters: last.clone(),
            checkpoint: None,
            ledger: Vec::new(),
            money: Vec::new(),
            audit: Vec::new(),
        })
        .await
        .unwrap();
        let len = file_len(&wal);
        largest = largest.max(len);
        if (round + 1) * per_commit_pages < WAL_AUTOCHECKPOINT_PAGES as u64 * 9 / 10 {
            before_first_checkpoint = len;
        }
    }
    // SQLite's default would have copied the WAL back at 1000 pages, so it
    // would never have grown past about 1000 pages and one commit.
    assert!(
        before_first_checkpoint > frame * (WAL_AUTOCHECKPOINT_PAGES as u64 * 3 / 4),
        "the WAL was checkpointed early: {before_first_checkpoint} bytes before reaching {WAL_AUTOCHECKPOINT_PAGES} pages"
    );
    // Checkpointed at the interval, and then reused from its start.
    let bound = frame * (WAL_AUTOCHECKPOINT_PAGES as u64 + 2 * per_commit_pages);
    assert!(
        largest <= bound,
        "the WAL grew to {largest} bytes, beyond the checkpoint interval ({bound})"
    );
    assert!(
        file_len(&path) >= (METERS * PACKAGE_BYTES) as u64,
        "the packages never reached the database file: no checkpoint ran"
    );
    // Nothing lost: every meter reads back as last committed.
    for m in &last {
        assert_eq!(
            store.get_meter(&m.device_id).await.unwrap().as_ref(),
            Some(m)
        );
    }
}
