//! Smoke tests of `postvault bench module` (a tiny run: four meters, one
//! second, a postage high enough that meters run dry and are refilled) and
//! of the load generator `postvault bench` (four clients for two seconds
//! against its embedded server): each succeeds and ends with the `ratio=R`
//! line. No timing is asserted: the figures belong in BENCHMARKS.md, from a
//! release build.
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_postvault");

#[test]
fn bench_module_prints_the_ratio_last() {
    let out = Command::new(BIN)
        .args([
            "bench",
            "module",
            "--seconds",
            "1",
            "--meters",
            "4",
            "--postage",
            "99999",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run postvault");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {}: {stdout}{stderr}",
        out.status
    );
    assert!(
        stdout.contains("module: ") && stdout.contains(" indicia/s (batch 4, 4 meters)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ecdsa p-256 sign (aws-lc-rs, 1 thread): "),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    let ratio: f64 = last
        .strip_prefix("ratio=")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("last line {last:?} is not ratio=R:\n{stdout}"));
    assert!(ratio > 0.0 && ratio.is_finite(), "{last}");
}

#[test]
fn a_batch_larger_than_the_meters_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["bench", "module", "--meters", "2", "--batch", "3"])
        .stdin(Stdio::null())
        .output()
        .expect("run postvault");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lower --batch or raise --meters"),
        "{stderr}"
    );
}

/// The `ratio=R` last line's R, which must be a positive number.
fn last_ratio(stdout: &str) -> f64 {
    let last = stdout.lines().last().unwrap_or_default();
    let ratio: f64 = last
        .strip_prefix("ratio=")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("last line {last:?} is not ratio=R:\n{stdout}"));
    assert!(ratio > 0.0 && ratio.is_finite(), "{last}");
    ratio
}

#[test]
fn bench_load_against_its_own_server_prints_the_ratio_last() {
    let out = Command::new(BIN)
        .args(["bench", "--seconds", "2", "--clients", "4"])
        .stdin(Stdio::null())
        .output()
        .expect("run postvault");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {}: {stdout}{stderr}",
        out.status
    );
    let load = stdout
        .lines()
        .find(|l| l.starts_with("load: "))
        .unwrap_or_else(|| panic!("no load: line:\n{stdout}"));
    assert!(load.contains(" indicia/s with 4 clients"), "{load}");
    assert!(load.contains("errors 0;"), "{load}");
    assert!(load.contains("p50 ") && load.contains("p99 "), "{load}");
    let count: u64 = load
        .split("count ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {load}"));
    assert!(count > 0, "{load}");
    // The embedded server's own account of the same load: every piece the
    // clients got and checked was committed in one of its batches, and
    // nothing else was printed meanwhile.
    let server = stdout
        .lines()
        .find(|l| l.starts_with("server: ") && l.contains(" print batches of "))
        .unwrap_or_else(|| panic!("no server: line with the print batches:\n{stdout}"));
    // The number just before `marker`.
    let number = |marker: &str| -> f64 {
        server
            .split(marker)
            .next()
            .filter(|_| server.contains(marker))
            .and_then(|before| before.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number before {marker:?} in {server}"))
    };
    let batches = number(" print batches");
    let pieces = number(" pieces;");
    assert_eq!(pieces as u64, count, "{server}\n{load}");
    assert!(batches >= 1.0 && batches <= pieces, "{server}");
    for stage in [" ms to lock and read", " ms in the module", " ms to commit"] {
        let ms = number(stage);
        assert!(ms > 0.0 && ms.is_finite(), "{stage} in {server}");
    }
    assert!(stdout.contains("ecdsa p-256 sign (aws-lc-rs, "), "{stdout}");
    last_ratio(&stdout);
}
