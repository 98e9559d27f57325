//! On SQLite the printers run on a thread of their own ("postvault-printer",
//! see `printer.rs`). A server that stops must not leave it behind: a
//! process that starts and stops servers (the tests, an embedding host)
//! would otherwise gather one idle thread, with its modules and store
//! handles, per start. One test in its own binary, so that no other
//! server's threads are counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postvault_module::ManualClock;
use postvault_server::{Server, ServerConfig};

/// Threads of this process whose name starts with "postvault-print"
/// (Linux keeps 15 bytes of a thread's name).
fn printer_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("postvault-print"))
        .count()
}

/// Waits up to five seconds for the count to become `want`.
async fn wait_for(want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = printer_threads();
        if n == want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_printer_thread_ends_with_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(printer_threads(), 0);
    for start in 0..2 {
        let mut cfg = ServerConfig::new(tmp.path()).unwrap();
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        let server = Server::start(cfg, Arc::new(ManualClock::new(1_800_000_000)))
            .await
            .unwrap();
        // A new thread names itself once it runs, so this too may wait.
        assert_eq!(
            wait_for(1).await,
            1,
            "start {start}: one printer thread while the server runs"
        );
        server.shutdown().await.unwrap();
        assert_eq!(
            wait_for(0).await,
            0,
            "start {start}: the printer thread outlived the server"
        );
    }
}
