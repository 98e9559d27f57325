//! `postvault demo`: the README's first command. Run as a user would, on
//! SQLite and on a throwaway PostgreSQL; everything it leaves behind is
//! checked with independent tools where there are some (`openssl verify`
//! for the certificate chain, libdmtx's `dmtxread` for the label's symbol)
//! and with `postvault verify` and `postvault audit verify`.

#[allow(dead_code)]
#[path = "../../store/tests/it/pg_cluster.rs"]
mod pg_cluster;

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_postvault");

fn postvault(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("POSTVAULT_DATA")
        .env_remove("POSTVAULT_STORE")
        .output()
        .expect("run postvault")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs the demo into `out` and checks what it leaves.
fn demo_and_check(out: &Path, store: Option<&str>) {
    let out_s = out.to_str().unwrap();
    let mut args = vec!["demo", "--out", out_s];
    if let Some(url) = store {
        args.extend(["--store", url]);
    }
    let o = postvault(&args);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let last = t.lines().filter(|l| !l.is_empty()).rev().nth(1).unwrap();
    assert!(last.starts_with("demo ok: meter "), "{t}");
    if let Some(url) = store {
        assert!(!url.is_empty() && t.contains("on postgres"), "{t}");
    } else {
        assert!(t.contains("on sqlite"), "{t}");
    }

    // The indicium: 113 bytes, the same that an independent reader finds
    // in the label image.
    let bytes = std::fs::read(out.join("indicium.bin")).unwrap();
    assert_eq!(bytes.len(), 113);
    let dmtx = Command::new("dmtxread")
        .arg(out.join("label.png"))
        .output()
        .expect("dmtxread (dmtx-utils) must be installed: scripts/test.sh installs it");
    assert!(dmtx.status.success(), "{}", text(&dmtx));
    assert_eq!(
        dmtx.stdout, bytes,
        "dmtxread reads other bytes than indicium.bin"
    );
    let pdf = std::fs::read(out.join("label.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));

    // The chain, by OpenSSL.
    let ossl = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(out.join("ca-cert.pem"))
        .arg(out.join("psd-cert.pem"))
        .output()
        .expect("openssl");
    assert!(ossl.status.success(), "{}", text(&ossl));

    // The label, by postvault verify: VALID, exit 0; with another CA: not.
    let v = postvault(&[
        "verify",
        out.join("label.png").to_str().unwrap(),
        "--ca",
        out.join("ca-cert.pem").to_str().unwrap(),
        "--cert",
        out.join("psd-cert.pem").to_str().unwrap(),
    ]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).starts_with("VALID"), "{}", text(&v));
    let v = postvault(&[
        "verify",
        out.join("label.png").to_str().unwrap(),
        "--ca",
        out.join("psd-cert.pem").to_str().unwrap(),
        "--cert",
        out.join("psd-cert.pem").to_str().unwrap(),
    ]);
    assert!(!v.status.success(), "{}", text(&v));

    // One audit log and key per module, each verifying.
    let mut logs = 0;
    for entry in std::fs::read_dir(out.join("audit")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let Some(id) = name.strip_suffix(".log") else {
            continue;
        };
        let key = out.join("audit").join(format!("{id}-key.pem"));
        let a = postvault(&[
            "audit",
            "verify",
            "--log",
            path.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]);
        assert!(a.status.success(), "{}", text(&a));
        assert!(text(&a).starts_with("audit chain OK"), "{}", text(&a));
        logs += 1;
    }
    assert!(logs >= 1);

    // A second run into the same directory is refused and changes nothing.
    let o = postvault(&["demo", "--out", out_s]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not empty"), "{}", text(&o));
    assert_eq!(std::fs::read(out.join("indicium.bin")).unwrap(), bytes);
}

#[test]
fn demo_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    demo_and_check(&dir.path().join("out"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_on_postgres() {
    let url = pg_cluster::cluster().create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    tokio::task::spawn_blocking(move || demo_and_check(&out, Some(&url)))
        .await
        .unwrap();
}
