//! `cargo bench -p postvault-module`: key tokens, audit entries and audit
//! verification per second, each printed next to a baseline of the raw
//! primitive measured in the same run (these machines are shared; absolute
//! numbers drift, ratios much less).
//!
//! One thread throughout. Each figure is the best of five rounds of about
//! half a second.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postvault_audit::{AuditEntry, GENESIS_HASH, verify_chain};
use postvault_crypto::ecdsa::{self, EcdsaP256KeyPair};
use postvault_crypto::password::Argon2Params;
use postvault_crypto::rng::Rng;
use postvault_crypto::{Faults, aead, hash};
use postvault_module::audit_sink::MemoryAuditSink;
use postvault_module::keys::{KeyType, KeyUsage, Mks};
use postvault_module::protocol::{AccountSettings, NewUser};
use postvault_module::{ManualClock, Module, ModuleClient, ModuleConfig, Password, Request, Role};
use postvault_seal::{SealConfig, open_provider};

/// Runs `f` repeatedly for about `budget`, five times; returns the best rate (ops/s).
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut best = 0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget {
            for _ in 0..16 {
                f();
            }
            n += 16;
        }
        best = best.max(n as f64 / start.elapsed().as_secs_f64());
    }
    best
}

fn line(name: &str, ops: f64, baseline_name: &str, baseline: f64) {
    println!(
        "{name:<44} {ops:>12.0} /s   baseline {baseline_name:<28} {baseline:>12.0} /s   ratio {:.3}",
        ops / baseline
    );
}

fn main() {
    let budget = Duration::from_millis(500);
    let mut rng = Rng::new(Faults::none());

    // Key token unwrap + wrap vs raw AES-256-GCM open + seal of the same key.
    let mks = Mks::generate(&mut rng, 1).unwrap();
    let key = [7u8; 32];
    let token = mks
        .wrap(
            &mut rng,
            KeyType::Aes256,
            KeyUsage::General,
            None,
            true,
            "bench/record-1",
            &key,
        )
        .unwrap();
    let raw_key = postvault_crypto::SecretKey32::from_bytes([9u8; 32]);
    let raw_sealed = aead::seal(&mut rng, &raw_key, b"bench/record-1", &key).unwrap();
    let baseline_aead = rate(budget, || {
        let k = aead::open(&raw_key, b"bench/record-1", &raw_sealed).unwrap();
        std::hint::black_box(
            aead::seal(&mut rng, &raw_key, b"bench/record-1", k.expose_secret()).unwrap(),
        );
    });
    let tokens = rate(budget, || {
        let k = mks.unwrap(&token, 0).unwrap();
        std::hint::black_box(
            mks.wrap(
                &mut rng,
                token.key_type,
                token.usage,
                None,
                true,
                &token.identity,
                k.expose_secret(),
            )
            .unwrap(),
        );
    });
    line(
        "key token unwrap+wrap",
        tokens,
        "AES-256-GCM open+seal",
        baseline_aead,
    );

    // Audit entry creation (hash-chained, signed every 100th) vs ECDSA P-256 signing.
    let audit_key = EcdsaP256KeyPair::generate(&Faults::none()).unwrap();
    let sign_rate = rate(budget, || {
        std::hint::black_box(
            audit_key
                .sign(b"baseline message of about an audit entry")
                .unwrap(),
        );
    });
    let mut prev = GENESIS_HASH;
    let mut seq = 0u64;
    let entry_rate = rate(budget, || {
        let mut e = sample_entry(seq, prev);
        if seq.is_multiple_of(100) {
            e.sign(&audit_key).unwrap();
        }
        prev = e.hash();
        seq += 1;
        std::hint::black_box(&e);
    });
    line(
        "audit entries made (sign every 100)",
        entry_rate,
        "ECDSA P-256 sign",
        sign_rate,
    );

    // Audit verification of a 20,000-entry chain vs ECDSA P-256 verification.
    let n = 20_000u64;
    let mut chain = Vec::with_capacity(n as usize);
    let mut prev = GENESIS_HASH;
    for seq in 0..n {
        let mut e = sample_entry(seq, prev);
        if seq.is_multiple_of(100) || seq == n - 1 {
            e.sign(&audit_key).unwrap();
        }
        prev = e.hash();
        chain.push(e);
    }
    let public = audit_key.public_key();
    let sig = audit_key.sign(b"m").unwrap();
    let verify_rate = rate(budget, || {
        std::hint::black_box(ecdsa::verify(&public, b"m", &sig));
    });
    let sha_rate = rate(budget, || {
        std::hint::black_box(hash::sha256(&[&[0u8; 200]]));
    });
    let mut best = 0f64;
    for _ in 0..3 {
        let start = Instant::now();
        verify_chain(&chain, &public).unwrap();
        best = best.max(n as f64 / start.elapsed().as_secs_f64());
    }
    line(
        "audit entries verified (signed every 100)",
        best,
        "ECDSA P-256 verify",
        verify_rate,
    );
    line(
        "audit entries verified (signed every 100)",
        best,
        "SHA-256 of 200 bytes",
        sha_rate,
    );

    // The full command path: CreateAuditEntry through the secure session, with
    // the NVM sealed and fsynced and the entry stored before the reply.
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_790_000_000));
    let seal = open_provider(
        &SealConfig::File {
            key_path: dir.path().join("seal.key"),
        },
        true,
    )
    .unwrap();
    let mut cfg = ModuleConfig::new(&dir.path().join("m"), seal, clock);
    cfg.argon2 = Argon2Params::TEST;
    cfg.audit_sink = Some(Box::new(MemoryAuditSink(Arc::new(Mutex::new(Vec::new())))));
    let module = Arc::new(Mutex::new(Module::open(cfg).unwrap()));
    let mut c = ModuleClient::local(module).unwrap();
    c.run(&Request::StartInitialization {
        time: 1_790_000_000,
    })
    .unwrap();
    let users = ["admin", "so", "kc1", "kc2"]
        .iter()
        .zip([
            Role::Administrator,
            Role::SecurityOfficer,
            Role::KeyCustodian,
            Role::KeyCustodian,
        ])
        .map(|(id, role)| NewUser {
            user_id: id.to_string(),
            role,
            password: Password::new("bench-password-1"),
            settings: AccountSettings::default(),
        })
        .collect();
    c.run(&Request::InitializeAccessControl { users }).unwrap();
    let fsync_rate = rate(Duration::from_millis(300), || {
        let f = std::fs::File::create(dir.path().join("fsync-probe")).unwrap();
        std::io::Write::write_all(&mut &f, &[0u8; 4096]).unwrap();
        f.sync_all().unwrap();
    });
    let cmd_rate = rate(Duration::from_millis(300), || {
        c.run(&Request::CreateAuditEntry {
            note: "bench".into(),
            sign: false,
        })
        .unwrap();
    });
    line(
        "CreateAuditEntry commands (durable)",
        cmd_rate,
        "write+fsync of a 4 KiB file",
        fsync_rate,
    );
}

fn sample_entry(seq: u64, prev_hash: [u8; 32]) -> AuditEntry {
    let mut data = BTreeMap::new();
    data.insert("user".to_string(), "kc1".to_string());
    data.insert(
        "mks".to_string(),
        "00112233445566778899aabbccddeeff".to_string(),
    );
    AuditEntry {
        seq,
        prev_hash,
        module_id: "a1b2c3d4e5f60718293a4b5c6d7e8f90".into(),
        command: "CheckKeyToken".into(),
        user_id: Some("so".into()),
        role: Some("security-officer".into()),
        current_state: "Operational".into(),
        persistent_state: "Operational".into(),
        time: 1_790_000_000 + seq as i64,
        reason: "ok".into(),
        data,
        signature: None,
    }
}
