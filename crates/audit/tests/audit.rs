//! Integration tests of postvault-audit: canonical encoding, JSON lines, log
//! parsing and the auditor's chain verification, with real ECDSA P-256 keys.
//!
//! Chains are built unsigned, linked, and then signed: a signature is not part
//! of the hash, so signing never changes the chain.

use std::collections::BTreeMap;

use postvault_audit::{
    AuditEntry, AuditError, ChainAnchor, ChainStart, FailureKind, GENESIS_HASH, LogError,
    NEW_AUDIT_KEY_DATA, ROTATE_KEY_COMMAND, RotationProblem, VerifyFailure, parse_log, to_log_text,
    verify_chain, verify_chain_from,
};
use postvault_crypto::Faults;
use postvault_crypto::ecdsa::{EcdsaP256KeyPair, public_key_from_pem, public_key_to_pem};
use proptest::prelude::*;

const MODULE_ID: &str = "00112233445566778899aabbccddeeff";
const CHAIN_LEN: usize = 250;

fn key() -> EcdsaP256KeyPair {
    EcdsaP256KeyPair::generate(&Faults::none()).expect("key generation")
}

/// Entry `seq` of a test chain, unlinked (prev_hash is GENESIS_HASH).
fn entry(seq: u64) -> AuditEntry {
    let commands = ["Logon", "PrintIndicium", "Status", "Logoff"];
    let mut data = BTreeMap::new();
    if !seq.is_multiple_of(3) {
        data.insert("amount".to_string(), format!("{}", seq * 37));
        data.insert("zip".to_string(), "94107".to_string());
    }
    AuditEntry {
        seq,
        prev_hash: GENESIS_HASH,
        module_id: MODULE_ID.to_string(),
        command: commands[(seq % 4) as usize].to_string(),
        user_id: seq.is_multiple_of(2).then(|| format!("user{}", seq % 5)),
        role: seq.is_multiple_of(2).then(|| "operator".to_string()),
        current_state: "Ready".to_string(),
        persistent_state: "Initialized".to_string(),
        time: 1_700_000_000 + seq as i64 * 60,
        reason: if seq.is_multiple_of(7) {
            "denied"
        } else {
            "ok"
        }
        .to_string(),
        data,
        signature: None,
    }
}

/// Sets every prev_hash from the entry before it (call before signing).
fn relink(entries: &mut [AuditEntry]) {
    for i in 1..entries.len() {
        entries[i].prev_hash = entries[i - 1].hash();
    }
}

/// An unsigned, linked chain of `n` entries.
fn unsigned_chain(n: usize) -> Vec<AuditEntry> {
    let mut entries: Vec<AuditEntry> = (0..n as u64).map(entry).collect();
    relink(&mut entries);
    entries
}

/// Whether the standard chain signs entry `i` of `n`: the first, every 100th and the last.
fn standard_signed(i: usize, n: usize) -> bool {
    i.is_multiple_of(100) || i == n - 1
}

/// A 250-entry chain signed at 0, 100, 200 and 249.
fn signed_chain(key: &EcdsaP256KeyPair) -> Vec<AuditEntry> {
    let mut entries = unsigned_chain(CHAIN_LEN);
    for (i, e) in entries.iter_mut().enumerate() {
        if standard_signed(i, CHAIN_LEN) {
            e.sign(key).unwrap();
        }
    }
    entries
}

#[track_caller]
fn expect_failure(
    entries: &[AuditEntry],
    key: &[u8; 65],
    index: usize,
    kind: FailureKind,
) -> VerifyFailure {
    let failure = verify_chain(entries, key).expect_err("tampered chain must be rejected");
    assert_eq!(failure.index, index, "{failure}");
    assert_eq!(failure.kind, kind, "{failure}");
    assert_eq!(failure.seq, Some(entries[index].seq));
    failure
}

// ---------------------------------------------------------------- happy path

#[test]
fn real_chain_verifies_and_report_counts_are_right() {
    let k = key();
    let entries = signed_chain(&k);
    let report = verify_chain(&entries, &k.public_key()).unwrap();
    assert_eq!(report.entries, 250);
    assert_eq!(report.signed, 4);
    assert_eq!(report.first_seq, 0);
    assert_eq!(report.last_seq, 249);
    assert_eq!(report.last_hash, entries[249].hash());
    assert_eq!(report.last_signed_seq, Some(249));
    assert_eq!(report.unsigned_tail, 0);
    assert_eq!(report.key_rotations, 0);
    assert_eq!(report.module_id, MODULE_ID);
    assert_eq!(report.audit_key, k.public_key());
    let text = report.to_string();
    assert!(text.contains("250 entries"), "{text}");
    assert!(text.contains("4 signed"), "{text}");
    assert!(text.contains(&hex::encode(entries[249].hash())), "{text}");
}

#[test]
fn unsigned_tail_is_reported() {
    let k = key();
    let mut entries = unsigned_chain(30);
    entries[0].sign(&k).unwrap();
    entries[20].sign(&k).unwrap();
    let report = verify_chain(&entries, &k.public_key()).unwrap();
    assert_eq!(report.signed, 2);
    assert_eq!(report.last_signed_seq, Some(20));
    assert_eq!(report.unsigned_tail, 9);
    assert!(
        report.to_string().contains("last 9 entries are unsigned"),
        "{report}"
    );
}

#[test]
fn single_signed_genesis_entry_verifies() {
    let k = key();
    let mut entries = unsigned_chain(1);
    entries[0].sign(&k).unwrap();
    let report = verify_chain(&entries, &k.public_key()).unwrap();
    assert_eq!(
        (report.entries, report.signed, report.unsigned_tail),
        (1, 1, 0)
    );
}

#[test]
fn signing_does_not_change_the_hash_and_verify_signature_works() {
    let k = key();
    let other = key();
    let mut e = entry(5);
    let h = e.hash();
    assert!(!e.verify_signature(&k.public_key()), "unsigned entry");
    e.sign(&k).unwrap();
    assert_eq!(e.hash(), h);
    assert!(e.verify_signature(&k.public_key()));
    assert!(!e.verify_signature(&other.public_key()));
    assert!(!e.verify_signature(&[0u8; 3]), "garbage key");
    e.reason.push('!');
    assert!(!e.verify_signature(&k.public_key()));
}

#[test]
fn pem_audit_key_round_trip_verifies() {
    // An auditor receives the audit key as PEM.
    let k = key();
    let entries = signed_chain(&k);
    let pem = public_key_to_pem(&k.public_key());
    let audit_key = public_key_from_pem(&pem).unwrap();
    verify_chain(&entries, &audit_key).unwrap();
}

// ------------------------------------------------------- canonical encoding

#[test]
fn canonical_bytes_layout() {
    let mut e = entry(258);
    e.prev_hash = [0xab; 32];
    e.user_id = None;
    e.role = Some("r".into());
    e.data = BTreeMap::from([("b".into(), "2".into()), ("a".into(), "".into())]);
    e.time = -2;
    let b = e.canonical_bytes();
    let mut x = Vec::new();
    x.extend_from_slice(b"PVAUDIT1");
    x.extend_from_slice(&258u64.to_be_bytes());
    x.extend_from_slice(&[0xab; 32]);
    let s = |x: &mut Vec<u8>, v: &str| {
        x.extend_from_slice(&(v.len() as u32).to_be_bytes());
        x.extend_from_slice(v.as_bytes());
    };
    s(&mut x, MODULE_ID);
    s(&mut x, &e.command);
    x.push(0);
    x.push(1);
    s(&mut x, "r");
    s(&mut x, "Ready");
    s(&mut x, "Initialized");
    x.extend_from_slice(&(-2i64).to_be_bytes());
    s(&mut x, &e.reason);
    x.extend_from_slice(&2u32.to_be_bytes());
    s(&mut x, "a");
    s(&mut x, "");
    s(&mut x, "b");
    s(&mut x, "2");
    assert_eq!(b, x);
    // The signature is not covered.
    let k = key();
    let mut signed = e.clone();
    signed.sign(&k).unwrap();
    assert_eq!(signed.canonical_bytes(), b);
    assert_eq!(AuditEntry::from_canonical_bytes(&b).unwrap(), e);
}

#[test]
fn canonical_encoding_separates_fields() {
    // Moving bytes between adjacent strings changes the encoding.
    let mut a = entry(1);
    a.current_state = "ab".into();
    a.persistent_state = "c".into();
    let mut b = a.clone();
    b.current_state = "a".into();
    b.persistent_state = "bc".into();
    assert_ne!(a.canonical_bytes(), b.canonical_bytes());
    assert_ne!(a.hash(), b.hash());
    // Absent vs empty optional strings differ.
    let mut c = a.clone();
    c.user_id = None;
    let mut d = a.clone();
    d.user_id = Some(String::new());
    assert_ne!(c.canonical_bytes(), d.canonical_bytes());
    // A data key/value split differs.
    let mut e = a.clone();
    e.data = BTreeMap::from([("ab".into(), "c".into())]);
    let mut f = a.clone();
    f.data = BTreeMap::from([("a".into(), "bc".into())]);
    assert_ne!(e.canonical_bytes(), f.canonical_bytes());
}

#[test]
fn canonical_decoding_rejects_non_canonical_bytes() {
    let e = entry(4);
    let b = e.canonical_bytes();
    let mut trailing = b.clone();
    trailing.push(0);
    assert!(matches!(
        AuditEntry::from_canonical_bytes(&trailing),
        Err(AuditError::Canonical { .. })
    ));
    assert!(AuditEntry::from_canonical_bytes(&b[..b.len() - 1]).is_err());
    let mut magic = b.clone();
    magic[7] = b'2';
    assert!(AuditEntry::from_canonical_bytes(&magic).is_err());
    // Data keys out of order.
    let mut unordered = entry(1);
    unordered.data = BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]);
    let mut bytes = unordered.canonical_bytes();
    let n = bytes.len();
    // Last two pairs are [len a][a][len 1][1][len b][b][len 2][2], 10 bytes each.
    let (first, second) = (bytes[n - 20..n - 10].to_vec(), bytes[n - 10..].to_vec());
    bytes[n - 20..n - 10].copy_from_slice(&second);
    bytes[n - 10..].copy_from_slice(&first);
    assert!(AuditEntry::from_canonical_bytes(&bytes).is_err());
}

// ----------------------------------------------------------------- JSON

fn json_round_trip(e: &AuditEntry) {
    let line = e.to_json_line();
    assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
    assert_eq!(&AuditEntry::from_json_line(&line).unwrap(), e, "{line}");
}

#[test]
fn json_round_trip_of_every_field() {
    let k = key();
    let mut e = AuditEntry {
        seq: u64::MAX,
        prev_hash: [0x5a; 32],
        module_id: "mod\u{e9}\"\\".into(),
        command: "Cmd\nwith newline\r\t\u{0}".into(),
        user_id: Some("\u{2028}user \u{1f600}".into()),
        role: Some(String::new()),
        current_state: "cur".into(),
        persistent_state: "pers".into(),
        time: i64::MIN,
        reason: "ok".into(),
        data: BTreeMap::from([
            ("".into(), "".into()),
            ("k\"ey".into(), "v\u{7f}al\u{1}".into()),
        ]),
        signature: None,
    };
    json_round_trip(&e);
    assert!(!e.to_json_line().contains("signature"));
    e.sign(&k).unwrap();
    json_round_trip(&e);
    let line = e.to_json_line();
    assert!(line.contains(&hex::encode(e.signature.unwrap())));
    assert!(line.contains(&hex::encode([0x5a; 32])));
    // None options and empty data.
    e.user_id = None;
    e.role = None;
    e.data.clear();
    e.time = i64::MAX;
    e.seq = 0;
    e.signature = None;
    json_round_trip(&e);
    assert!(e.to_json_line().contains("\"data\":{}"));
    assert!(e.to_json_line().contains("\"user_id\":null"));
    e.signature = Some([0xff; 64]);
    json_round_trip(&e);
}

#[test]
fn json_rejects_malformed_entries() {
    let mut e = entry(2);
    e.signature = Some([1; 64]);
    let line = e.to_json_line();
    let bad = [
        line.replace("\"seq\":2", "\"seq\":-2"),
        line.replace("\"seq\":2", "\"seq\":2,\"extra\":1"),
        line.replace("\"seq\":2", "\"seq\":2,\"seq\":2"),
        line.replace(&hex::encode([1u8; 64]), &hex::encode([1u8; 63])),
        line.replace(&hex::encode(e.prev_hash), "00"),
        line.replace(&hex::encode(e.prev_hash), &"zz".repeat(32)),
        line.replace("\"amount\":\"74\"", "\"amount\":\"74\",\"amount\":\"75\""),
        line.replace("\"module_id\"", "\"module\""),
        line.replace("\"time\":1700000120", "\"time\":1.5"),
        line[..line.len() - 1].to_string(),
    ];
    for b in &bad {
        assert_ne!(b, &line);
        let err = AuditEntry::from_json_line(b).expect_err(b);
        assert!(matches!(err, AuditError::Json(_)), "{err}");
    }
    // An explicit null signature is an unsigned entry.
    let mut unsigned = e.clone();
    unsigned.signature = None;
    let plain = unsigned.to_json_line();
    let with_null = format!("{},\"signature\":null}}", &plain[..plain.len() - 1]);
    assert_eq!(AuditEntry::from_json_line(&with_null).unwrap(), unsigned);
}

// ------------------------------------------------------------- parse_log

#[test]
fn log_text_round_trip() {
    let k = key();
    let entries = signed_chain(&k);
    let text = to_log_text(&entries);
    assert_eq!(text.lines().count(), CHAIN_LEN);
    assert!(text.ends_with('\n'));
    assert_eq!(parse_log(&text).unwrap(), entries);
    // Trailing blank lines and CRLF endings are fine.
    let padded = format!("{text}\n  \n\n");
    assert_eq!(parse_log(&padded).unwrap(), entries);
    assert_eq!(parse_log(&text.replace('\n', "\r\n")).unwrap(), entries);
    assert_eq!(parse_log("").unwrap(), Vec::<AuditEntry>::new());
    assert_eq!(parse_log("\n\n").unwrap(), Vec::<AuditEntry>::new());
}

#[test]
fn parse_log_names_the_bad_line() {
    let entries = unsigned_chain(10);
    let mut lines: Vec<String> = entries.iter().map(AuditEntry::to_json_line).collect();
    lines[6] = lines[6].replacen("\"command\"", "\"comand\"", 1);
    let err = parse_log(&lines.join("\n")).unwrap_err();
    assert_eq!(err.line(), 7);
    assert!(matches!(err, LogError::Malformed { line: 7, .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("line 7, column "), "{msg}");
    assert!(msg.contains("comand"), "{msg}");
    assert!(!msg.contains("line 1 column"), "{msg}");

    lines[6] = "{not json".into();
    assert_eq!(parse_log(&lines.join("\n")).unwrap_err().line(), 7);

    // A blank line inside the log (not at the end) is an error.
    let text = format!("{}\n\n{}\n", lines[0], lines[1]);
    assert_eq!(
        parse_log(&text).unwrap_err(),
        LogError::BlankLine { line: 2 }
    );
    let text = format!("\n{}\n", lines[0]);
    assert_eq!(
        parse_log(&text).unwrap_err(),
        LogError::BlankLine { line: 1 }
    );
    let text = format!("{}\n   \t\n{}\n", lines[0], lines[1]);
    assert_eq!(
        parse_log(&text).unwrap_err().to_string(),
        "line 2: blank line before the last entry"
    );
}

// ------------------------------------------------------------- tampering

#[test]
fn altering_any_field_of_a_middle_unsigned_entry_breaks_the_chain_at_the_next() {
    let k = key();
    let pk = k.public_key();
    let entries = signed_chain(&k);
    let m = 152; // unsigned, has data, a user and a role
    type Tamper = fn(&mut AuditEntry);
    let tampers: Vec<(&str, Tamper)> = vec![
        ("data value", |e| {
            let v = e.data.get_mut("amount").unwrap();
            v.replace_range(0..1, "9");
        }),
        ("data key", |e| {
            let v = e.data.remove("zip").unwrap();
            e.data.insert("zap".into(), v);
        }),
        ("data added", |e| {
            e.data.insert("extra".into(), String::new());
        }),
        ("data removed", |e| {
            e.data.remove("zip");
        }),
        ("command", |e| e.command.replace_range(0..1, "Q")),
        ("time", |e| e.time ^= 1),
        ("user", |e| e.user_id = Some("user9".into())),
        ("user removed", |e| e.user_id = None),
        ("role", |e| e.role = Some("auditor".into())),
        ("current_state", |e| e.current_state.push('x')),
        ("persistent_state", |e| {
            e.persistent_state = "Zeroized".into()
        }),
        ("reason", |e| e.reason = "ok ".into()),
    ];
    for (what, tamper) in tampers {
        let mut t = entries.clone();
        tamper(&mut t[m]);
        assert_ne!(t[m], entries[m], "{what}");
        let f = expect_failure(&t, &pk, m + 1, FailureKind::BrokenHashChain);
        assert_eq!(
            f.to_string(),
            "entry 153 (seq 153): hash chain broken: prev_hash does not match the hash of entry 152",
            "{what}"
        );
    }
}

#[test]
fn altering_a_signed_entry_is_a_bad_signature_there() {
    let k = key();
    let pk = k.public_key();
    let entries = signed_chain(&k);
    for m in [0usize, 100, 249] {
        let mut t = entries.clone();
        t[m].data.insert("amount".into(), "1".into());
        let f = expect_failure(&t, &pk, m, FailureKind::BadSignature);
        assert!(
            f.to_string()
                .starts_with(&format!("entry {m} (seq {m}): signature")),
            "{f}"
        );
    }
}

#[test]
fn altering_seq_or_prev_hash_is_caught_at_that_entry() {
    let k = key();
    let pk = k.public_key();
    let entries = signed_chain(&k);
    let mut t = entries.clone();
    t[120].seq = 121;
    expect_failure(
        &t,
        &pk,
        120,
        FailureKind::SequenceGap {
            expected: 120,
            found: 121,
        },
    );
    let mut t = entries.clone();
    t[120].prev_hash[31] ^= 1;
    expect_failure(&t, &pk, 120, FailureKind::BrokenHashChain);
}

#[test]
fn rechaining_after_an_alteration_is_caught_at_the_next_signature() {
    // An attacker without the key alters entry 150 and recomputes every
    // prev_hash after it: the signature at 200 no longer verifies.
    let k = key();
    let pk = k.public_key();
    let mut t = signed_chain(&k);
    t[150].reason = "forged".into();
    relink(&mut t[150..]);
    expect_failure(&t, &pk, 200, FailureKind::BadSignature);
}

#[test]
fn deleted_swapped_and_duplicated_entries_are_sequence_gaps() {
    let k = key();
    let pk = k.public_key();
    let entries = signed_chain(&k);

    let mut deleted = entries.clone();
    deleted.remove(77);
    let f = expect_failure(
        &deleted,
        &pk,
        77,
        FailureKind::SequenceGap {
            expected: 77,
            found: 78,
        },
    );
    assert!(
        f.to_string()
            .starts_with("entry 77 (seq 78): sequence gap: expected seq 77, found 78"),
        "{f}"
    );

    let mut swapped = entries.clone();
    swapped.swap(77, 78);
    expect_failure(
        &swapped,
        &pk,
        77,
        FailureKind::SequenceGap {
            expected: 77,
            found: 78,
        },
    );

    let mut duplicated = entries.clone();
    duplicated.insert(78, entries[77].clone());
    expect_failure(
        &duplicated,
        &pk,
        78,
        FailureKind::SequenceGap {
            expected: 78,
            found: 77,
        },
    );

    // Deleting the last entry cannot be detected (documented); the report
    // shows the shortened log ends in an unsigned tail.
    let truncated = &entries[..CHAIN_LEN - 1];
    let report = verify_chain(truncated, &pk).unwrap();
    assert_eq!(report.unsigned_tail, 48);
}

#[test]
fn signature_tampering_and_wrong_keys_are_bad_signatures() {
    let k = key();
    let other = key();
    let pk = k.public_key();
    let entries = signed_chain(&k);

    for byte in [0usize, 31, 32, 63] {
        let mut t = entries.clone();
        t[100].signature.as_mut().unwrap()[byte] ^= 0x01;
        expect_failure(&t, &pk, 100, FailureKind::BadSignature);
    }

    let mut t = entries.clone();
    t[200].sign(&other).unwrap();
    expect_failure(&t, &pk, 200, FailureKind::BadSignature);

    // A signature added to an unsigned entry by someone else.
    let mut t = entries.clone();
    t[150].sign(&other).unwrap();
    expect_failure(&t, &pk, 150, FailureKind::BadSignature);

    // Verifying with the wrong audit key fails at the first entry.
    expect_failure(&entries, &other.public_key(), 0, FailureKind::BadSignature);

    // A chain signed throughout with another key.
    let forged = signed_chain(&other);
    expect_failure(&forged, &pk, 0, FailureKind::BadSignature);
}

#[test]
fn first_entry_rules() {
    let k = key();
    let pk = k.public_key();
    let entries = signed_chain(&k);

    let f = verify_chain(&[], &pk).unwrap_err();
    assert_eq!((f.index, f.seq, &f.kind), (0, None, &FailureKind::Empty));
    assert_eq!(f.to_string(), "the log is empty");

    // Truncating the first entry away.
    let f = expect_failure(&entries[1..], &pk, 0, FailureKind::FirstNotGenesis);
    assert!(
        f.to_string()
            .starts_with("entry 0 (seq 1): not a genesis entry"),
        "{f}"
    );
    // Starting at a signed mid-chain entry is still not genesis.
    expect_failure(&entries[100..], &pk, 0, FailureKind::FirstNotGenesis);

    // Genesis seq but a non-zero prev_hash.
    let mut t = entries.clone();
    t[0].prev_hash[0] = 1;
    expect_failure(&t, &pk, 0, FailureKind::FirstNotGenesis);

    // Unsigned genesis entry.
    let mut t = entries.clone();
    t[0].signature = None;
    expect_failure(&t, &pk, 0, FailureKind::FirstUnsigned);
}

#[test]
fn module_id_must_not_change() {
    let k = key();
    let pk = k.public_key();
    let entries = signed_chain(&k);

    // In one middle entry.
    let mut t = entries.clone();
    t[150].module_id = "ffeeddccbbaa99887766554433221100".into();
    let f = expect_failure(
        &t,
        &pk,
        150,
        FailureKind::ModuleIdChanged {
            expected: MODULE_ID.into(),
            found: "ffeeddccbbaa99887766554433221100".into(),
        },
    );
    assert!(f.to_string().contains("module ID changed"), "{f}");

    // Even when relinked and re-signed from there on with the right key, a
    // log may not switch modules.
    relink(&mut t[150..]);
    for i in [150, 200, 249] {
        t[i].sign(&k).unwrap();
    }
    assert!(matches!(
        verify_chain(&t, &pk).unwrap_err().kind,
        FailureKind::ModuleIdChanged { .. }
    ));

    // In every entry, without re-signing.
    let mut t = entries.clone();
    for e in &mut t {
        e.module_id = "other".into();
    }
    relink(&mut t);
    expect_failure(&t, &pk, 0, FailureKind::BadSignature);
}

// ---------------------------------------------------------- key rotation

/// A 120-entry chain with a rotation from `old` to `new` at entry 60; signs
/// 0 and 30 with `old`, and 90 and 119 with `new`. The rotation entry is left
/// unsigned.
fn rotation_chain(new: &EcdsaP256KeyPair) -> Vec<AuditEntry> {
    let mut entries = unsigned_chain(120);
    entries[60].command = ROTATE_KEY_COMMAND.into();
    entries[60]
        .data
        .insert(NEW_AUDIT_KEY_DATA.into(), hex::encode(new.public_key()));
    relink(&mut entries);
    entries
}

fn sign_rotation_chain(entries: &mut [AuditEntry], old: &EcdsaP256KeyPair, new: &EcdsaP256KeyPair) {
    for i in [0, 30] {
        entries[i].sign(old).unwrap();
    }
    for i in [90, 119] {
        entries[i].sign(new).unwrap();
    }
}

#[test]
fn key_rotation_happy_path() {
    let old = key();
    let new = key();
    let mut entries = rotation_chain(&new);
    sign_rotation_chain(&mut entries, &old, &new);
    entries[60].sign(&old).unwrap();
    let report = verify_chain(&entries, &old.public_key()).unwrap();
    assert_eq!(report.key_rotations, 1);
    assert_eq!(report.signed, 5);
    assert_eq!(report.audit_key, new.public_key());
    assert_eq!(report.unsigned_tail, 0);
    assert!(report.to_string().contains("1 key rotation;"), "{report}");

    // Two rotations, the second back to the first key, with an uppercase hex key.
    let third = key();
    let mut two = rotation_chain(&new);
    two[100].command = ROTATE_KEY_COMMAND.into();
    two[100].data.insert(
        NEW_AUDIT_KEY_DATA.into(),
        hex::encode_upper(third.public_key()),
    );
    relink(&mut two);
    sign_rotation_chain(&mut two, &old, &new);
    two[60].sign(&old).unwrap();
    two[100].sign(&new).unwrap();
    two[119].sign(&third).unwrap();
    let report = verify_chain(&two, &old.public_key()).unwrap();
    assert_eq!(report.key_rotations, 2);
    assert_eq!(report.audit_key, third.public_key());

    // After the rotation the old key no longer works.
    let mut stale = entries.clone();
    stale[90].sign(&old).unwrap();
    expect_failure(&stale, &old.public_key(), 90, FailureKind::BadSignature);
}

#[test]
fn bad_key_rotations_are_rejected() {
    let old = key();
    let new = key();
    let opk = old.public_key();
    let mut base = rotation_chain(&new);
    sign_rotation_chain(&mut base, &old, &new);

    // Unsigned rotation entry.
    let f = expect_failure(
        &base,
        &opk,
        60,
        FailureKind::BadKeyRotation(RotationProblem::Unsigned),
    );
    assert!(
        f.to_string()
            .starts_with("entry 60 (seq 60): bad audit key rotation"),
        "{f}"
    );

    // Signed by the new key (a self-introduced key).
    let mut t = base.clone();
    t[60].sign(&new).unwrap();
    expect_failure(
        &t,
        &opk,
        60,
        FailureKind::BadKeyRotation(RotationProblem::SignedByNewKey),
    );

    // Signed by some third key.
    let mut t = base.clone();
    t[60].sign(&key()).unwrap();
    expect_failure(
        &t,
        &opk,
        60,
        FailureKind::BadKeyRotation(RotationProblem::BadSignature),
    );

    // Missing or malformed new key (correctly signed by the old key).
    let variants: [(Option<String>, RotationProblem); 5] = [
        (None, RotationProblem::MissingNewKey),
        (Some("zz".into()), RotationProblem::MalformedNewKey),
        (
            Some(hex::encode(&new.public_key()[..64])),
            RotationProblem::MalformedNewKey,
        ),
        (
            Some(hex::encode([2u8; 65])),
            RotationProblem::MalformedNewKey,
        ),
        (
            Some(format!("{} ", hex::encode(new.public_key()))),
            RotationProblem::MalformedNewKey,
        ),
    ];
    for (value, problem) in variants {
        let mut t = rotation_chain(&new);
        match value {
            None => t[60].data.remove(NEW_AUDIT_KEY_DATA),
            Some(v) => t[60].data.insert(NEW_AUDIT_KEY_DATA.into(), v),
        };
        relink(&mut t);
        sign_rotation_chain(&mut t, &old, &new);
        t[60].sign(&old).unwrap();
        expect_failure(&t, &opk, 60, FailureKind::BadKeyRotation(problem));
    }

    // An unsigned genesis rotation is reported as an unsigned first entry.
    let mut t = unsigned_chain(3);
    t[0].command = ROTATE_KEY_COMMAND.into();
    relink(&mut t);
    expect_failure(&t, &opk, 0, FailureKind::FirstUnsigned);
}

// ------------------------------------------------------- mid-chain starts

#[test]
fn verifying_a_continuation_from_an_anchor() {
    let old = key();
    let new = key();
    let mut entries = rotation_chain(&new);
    sign_rotation_chain(&mut entries, &old, &new);
    entries[60].sign(&old).unwrap();

    let head = verify_chain(&entries[..75], &old.public_key()).unwrap();
    assert_eq!(head.anchor(), ChainAnchor::of(&entries[74]));
    let tail = verify_chain_from(
        &entries[75..],
        &head.audit_key,
        &ChainStart::After(head.anchor()),
    )
    .unwrap();
    assert_eq!(tail.first_seq, 75);
    assert_eq!(tail.last_seq, 119);
    assert_eq!(tail.entries, 45);
    assert_eq!(tail.signed, 2);

    // An anchor from elsewhere is rejected at the first entry.
    let mut wrong = head.anchor();
    wrong.hash[0] ^= 1;
    let f = verify_chain_from(&entries[75..], &new.public_key(), &ChainStart::After(wrong))
        .unwrap_err();
    assert_eq!((f.index, f.kind.clone()), (0, FailureKind::BrokenHashChain));
    assert!(f.to_string().contains("anchor"), "{f}");
    let f = verify_chain_from(
        &entries[76..],
        &new.public_key(),
        &ChainStart::After(head.anchor()),
    )
    .unwrap_err();
    assert_eq!(
        f.kind,
        FailureKind::SequenceGap {
            expected: 75,
            found: 76
        }
    );
    let mut other_module = head.anchor();
    other_module.module_id = "x".into();
    let f = verify_chain_from(
        &entries[75..],
        &new.public_key(),
        &ChainStart::After(other_module),
    )
    .unwrap_err();
    assert!(matches!(f.kind, FailureKind::ModuleIdChanged { .. }));
    let f = verify_chain_from(
        &entries[75..],
        &old.public_key(),
        &ChainStart::After(head.anchor()),
    )
    .unwrap_err();
    assert_eq!((f.index, f.kind), (15, FailureKind::BadSignature));

    // An anchor with no signed entries after it has an all-unsigned tail.
    let r = verify_chain_from(
        &entries[75..80],
        &new.public_key(),
        &ChainStart::After(head.anchor()),
    )
    .unwrap();
    assert_eq!((r.last_signed_seq, r.unsigned_tail), (None, 5));
}

#[test]
fn verifying_from_a_signed_checkpoint() {
    let k = key();
    let pk = k.public_key();
    let entries = signed_chain(&k);
    let r = verify_chain_from(&entries[100..], &pk, &ChainStart::SignedCheckpoint).unwrap();
    assert_eq!((r.first_seq, r.entries, r.signed), (100, 150, 3));
    let f = verify_chain_from(&entries[101..], &pk, &ChainStart::SignedCheckpoint).unwrap_err();
    assert_eq!((f.index, f.kind), (0, FailureKind::FirstUnsigned));
    let f = verify_chain_from(
        &entries[100..],
        &key().public_key(),
        &ChainStart::SignedCheckpoint,
    )
    .unwrap_err();
    assert_eq!((f.index, f.kind), (0, FailureKind::BadSignature));
}

#[test]
fn sequence_overflow_is_reported() {
    let k = key();
    let mut a = entry(u64::MAX);
    a.sign(&k).unwrap();
    let mut b = entry(0);
    b.prev_hash = a.hash();
    let f = verify_chain_from(&[a, b], &k.public_key(), &ChainStart::SignedCheckpoint).unwrap_err();
    assert_eq!((f.index, f.kind), (1, FailureKind::SequenceOverflow));
}

// -------------------------------------------------------------- proptest

/// Random content of one entry: command, user, role, states, time, reason, data.
type Content = (
    String,
    Option<String>,
    Option<String>,
    (String, String),
    i64,
    String,
    BTreeMap<String, String>,
);

fn content() -> impl Strategy<Value = Content> {
    (
        "[A-Za-z]{1,12}",
        proptest::option::of("\\PC{0,8}"),
        proptest::option::of("[a-z]{0,8}"),
        ("[A-Za-z]{0,10}", "[A-Za-z]{0,10}"),
        any::<i64>(),
        "\\PC{0,6}",
        proptest::collection::btree_map("\\PC{0,6}", "\\PC{0,12}", 0..4),
    )
}

/// (content, signed?, rotate?) per entry.
fn chain_spec() -> impl Strategy<Value = (String, Vec<(Content, bool, bool)>)> {
    (
        "[0-9a-f]{32}",
        proptest::collection::vec(
            (
                content(),
                proptest::bool::weighted(0.2),
                proptest::bool::weighted(0.05),
            ),
            1..60,
        ),
    )
}

struct Built {
    entries: Vec<AuditEntry>,
    keys: Vec<EcdsaP256KeyPair>,
    signed: usize,
    rotations: usize,
    final_key: usize,
}

/// Builds and signs a chain from a spec, with rotations cycling through 3 keys.
fn build(module_id: &str, spec: &[(Content, bool, bool)]) -> Built {
    let keys: Vec<EcdsaP256KeyPair> = (0..3).map(|_| key()).collect();
    let n = spec.len();
    let mut entries = Vec::with_capacity(n);
    let mut signer = Vec::with_capacity(n); // key index per entry, if signed
    let mut current = 0;
    let mut rotations = 0;
    for (i, (c, sign, rotate)) in spec.iter().enumerate() {
        let (command, user_id, role, (cur, pers), time, reason, data) = c.clone();
        let mut e = AuditEntry {
            seq: i as u64,
            prev_hash: GENESIS_HASH,
            module_id: module_id.to_string(),
            command,
            user_id,
            role,
            current_state: cur,
            persistent_state: pers,
            time,
            reason,
            data,
            signature: None,
        };
        let mut by = (*sign || i == 0 || i == n - 1).then_some(current);
        if *rotate {
            let next = (current + 1) % keys.len();
            e.command = ROTATE_KEY_COMMAND.into();
            e.data.insert(
                NEW_AUDIT_KEY_DATA.into(),
                hex::encode(keys[next].public_key()),
            );
            by = Some(current);
            current = next;
            rotations += 1;
        }
        entries.push(e);
        signer.push(by);
    }
    relink(&mut entries);
    for (e, by) in entries.iter_mut().zip(&signer) {
        if let Some(k) = by {
            e.sign(&keys[*k]).unwrap();
        }
    }
    // The last entry may be a rotation signed by the old key; the final key is `current` either way.
    Built {
        signed: signer.iter().filter(|s| s.is_some()).count(),
        entries,
        keys,
        rotations,
        final_key: current,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_chains_verify((module_id, spec) in chain_spec()) {
        let b = build(&module_id, &spec);
        let report = verify_chain(&b.entries, &b.keys[0].public_key())
            .map_err(|f| TestCaseError::fail(f.to_string()))?;
        prop_assert_eq!(report.entries, spec.len());
        prop_assert_eq!(report.signed, b.signed);
        prop_assert_eq!(report.key_rotations, b.rotations);
        prop_assert_eq!(report.last_seq, spec.len() as u64 - 1);
        prop_assert_eq!(report.last_signed_seq, Some(spec.len() as u64 - 1));
        prop_assert_eq!(report.unsigned_tail, 0);
        prop_assert_eq!(report.audit_key, b.keys[b.final_key].public_key());
        // Through the log text and back.
        let parsed = parse_log(&to_log_text(&b.entries)).unwrap();
        prop_assert_eq!(&parsed, &b.entries);
        // Canonical bytes decode back to the entry (without its signature).
        for e in &b.entries {
            let mut unsigned = e.clone();
            unsigned.signature = None;
            prop_assert_eq!(AuditEntry::from_canonical_bytes(&e.canonical_bytes()).unwrap(), unsigned);
        }
    }

    #[test]
    fn single_byte_mutations_are_never_accepted(
        (module_id, spec) in chain_spec(),
        which in any::<proptest::sample::Index>(),
        at in any::<proptest::sample::Index>(),
        // Mostly hex digits and printable ASCII, so many mutants still parse.
        byte in prop_oneof![
            4 => proptest::sample::select(b"0123456789abcdefABCDEF".to_vec()),
            4 => 0x20u8..0x7f,
            1 => any::<u8>(),
        ],
    ) {
        let b = build(&module_id, &spec);
        let audit_key = b.keys[0].public_key();
        let idx = which.index(b.entries.len());
        let lines: Vec<String> = b.entries.iter().map(AuditEntry::to_json_line).collect();
        let mut line = lines[idx].clone().into_bytes();
        let pos = at.index(line.len());
        prop_assume!(line[pos] != byte);
        line[pos] = byte;
        let Ok(line) = String::from_utf8(line) else {
            return Ok(()); // not even text: rejected before parsing
        };
        let mut mutated = lines.clone();
        mutated[idx] = line;
        let text = mutated.join("\n") + "\n";
        let Ok(parsed) = parse_log(&text) else {
            return Ok(()); // rejected by the parser
        };
        if parsed == b.entries {
            return Ok(()); // same values, different spelling (e.g. hex case)
        }
        prop_assert!(
            verify_chain(&parsed, &audit_key).is_err(),
            "mutated entry {} accepted: {}", idx, mutated[idx]
        );
    }
}
