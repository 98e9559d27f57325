//! The canonical binary encoding of an audit entry, version 1.
//!
//! The hash of an entry (the next entry's `prev_hash`) is SHA-256 over these
//! bytes, and an entry's ECDSA P-256 signature (SHA-256 inside, `r || s`) is
//! over the same bytes. Every field of [`AuditEntry`] except `signature` is
//! encoded, in this order:
//!
//! | # | field              | encoding                                          |
//! |---|--------------------|---------------------------------------------------|
//! | 1 | magic              | the 8 ASCII bytes `PVAUDIT1`                      |
//! | 2 | `seq`              | u64, big-endian (8 bytes)                         |
//! | 3 | `prev_hash`        | 32 raw bytes                                      |
//! | 4 | `module_id`        | *string*                                          |
//! | 5 | `command`          | *string*                                          |
//! | 6 | `user_id`          | *optional string*                                 |
//! | 7 | `role`             | *optional string*                                 |
//! | 8 | `current_state`    | *string*                                          |
//! | 9 | `persistent_state` | *string*                                          |
//! |10 | `time`             | i64, big-endian two's complement (8 bytes)        |
//! |11 | `reason`           | *string*                                          |
//! |12 | `data`             | u32 big-endian entry count, then for each entry in ascending key order: key as *string*, value as *string* |
//!
//! * A *string* is its length in bytes as a u32 big-endian, then its UTF-8
//!   bytes exactly as stored (no Unicode normalization, no terminator).
//! * An *optional string* is one byte `0x00` when absent, or one byte `0x01`
//!   followed by the *string* when present.
//! * "Ascending key order" is byte-wise lexicographic order of the UTF-8 keys
//!   (the order of Rust's `BTreeMap<String, _>`); keys are unique.
//!
//! Nothing follows the last `data` value. Every field is either fixed-length
//! or length-prefixed, so the encoding is unambiguous: two different entries
//! never have the same bytes ([`AuditEntry::from_canonical_bytes`] decodes
//! them back and rejects anything that is not exactly one encoding).
//!
//! The same magic doubles as domain separation: no other postvault signature
//! is over a message starting with `PVAUDIT1`.
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use postvault_audit::{AuditEntry, GENESIS_HASH};
//!
//! let entry = AuditEntry {
//!     seq: 1,
//!     prev_hash: GENESIS_HASH,
//!     module_id: "m".into(),
//!     command: "Logon".into(),
//!     user_id: Some("u".into()),
//!     role: None,
//!     current_state: "S".into(),
//!     persistent_state: "P".into(),
//!     time: -1,
//!     reason: "ok".into(),
//!     data: BTreeMap::from([("k".to_string(), "v".to_string())]),
//!     signature: None,
//! };
//! let mut expected = Vec::new();
//! expected.extend_from_slice(b"PVAUDIT1");
//! expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]); // seq
//! expected.extend_from_slice(&[0; 32]); // prev_hash
//! expected.extend_from_slice(b"\0\0\0\x01m"); // module_id
//! expected.extend_from_slice(b"\0\0\0\x05Logon"); // command
//! expected.extend_from_slice(b"\x01\0\0\0\x01u"); // user_id: present
//! expected.extend_from_slice(b"\x00"); // role: absent
//! expected.extend_from_slice(b"\0\0\0\x01S"); // current_state
//! expected.extend_from_slice(b"\0\0\0\x01P"); // persistent_state
//! expected.extend_from_slice(&[0xff; 8]); // time = -1
//! expected.extend_from_slice(b"\0\0\0\x02ok"); // reason
//! expected.extend_from_slice(b"\0\0\0\x01"); // one data entry
//! expected.extend_from_slice(b"\0\0\0\x01k\0\0\0\x01v"); // "k" => "v"
//! assert_eq!(entry.canonical_bytes(), expected);
//! ```

use std::collections::BTreeMap;

use crate::{AuditEntry, AuditError};

/// The 8 ASCII bytes that start every canonical encoding (format version 1).
pub const CANONICAL_MAGIC: &[u8; 8] = b"PVAUDIT1";

/// Encodes `entry` as specified in the module documentation.
pub(crate) fn encode(entry: &AuditEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        8 + 8
            + 32
            + 8
            + 4 * 8
            + entry.module_id.len()
            + entry.command.len()
            + entry.current_state.len()
            + entry.persistent_state.len()
            + entry.reason.len()
            + entry.user_id.as_ref().map_or(1, |s| 5 + s.len())
            + entry.role.as_ref().map_or(1, |s| 5 + s.len())
            + entry
                .data
                .iter()
                .map(|(k, v)| 8 + k.len() + v.len())
                .sum::<usize>(),
    );
    out.extend_from_slice(CANONICAL_MAGIC);
    out.extend_from_slice(&entry.seq.to_be_bytes());
    out.extend_from_slice(&entry.prev_hash);
    put_str(&mut out, &entry.module_id);
    put_str(&mut out, &entry.command);
    put_opt_str(&mut out, entry.user_id.as_deref());
    put_opt_str(&mut out, entry.role.as_deref());
    put_str(&mut out, &entry.current_state);
    put_str(&mut out, &entry.persistent_state);
    out.extend_from_slice(&entry.time.to_be_bytes());
    put_str(&mut out, &entry.reason);
    put_len(&mut out, entry.data.len());
    for (key, value) in &entry.data {
        put_str(&mut out, key);
        put_str(&mut out, value);
    }
    out
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("audit entry field longer than u32::MAX");
    out.extend_from_slice(&len.to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// Decodes exactly one canonical encoding; the entry comes back unsigned.
pub(crate) fn decode(bytes: &[u8]) -> Result<AuditEntry, AuditError> {
    let mut r = Reader { rest: bytes };
    if r.take(8, "magic")? != CANONICAL_MAGIC {
        return Err(canon("magic", "not PVAUDIT1"));
    }
    let seq = u64::from_be_bytes(r.array("seq")?);
    let prev_hash = r.array("prev_hash")?;
    let module_id = r.string("module_id")?;
    let command = r.string("command")?;
    let user_id = r.opt_string("user_id")?;
    let role = r.opt_string("role")?;
    let current_state = r.string("current_state")?;
    let persistent_state = r.string("persistent_state")?;
    let time = i64::from_be_bytes(r.array("time")?);
    let reason = r.string("reason")?;
    let count = u32::from_be_bytes(r.array("data count")?);
    let mut data = BTreeMap::new();
    let mut last_key: Option<String> = None;
    for _ in 0..count {
        let key = r.string("data key")?;
        let value = r.string("data value")?;
        if last_key.as_ref().is_some_and(|last| *last >= key) {
            return Err(canon("data key", "keys not in strictly ascending order"));
        }
        last_key = Some(key.clone());
        data.insert(key, value);
    }
    if !r.rest.is_empty() {
        return Err(canon("data", "trailing bytes after the last field"));
    }
    Ok(AuditEntry {
        seq,
        prev_hash,
        module_id,
        command,
        user_id,
        role,
        current_state,
        persistent_state,
        time,
        reason,
        data,
        signature: None,
    })
}

fn canon(field: &'static str, problem: &'static str) -> AuditError {
    AuditError::Canonical { field, problem }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], AuditError> {
        if self.rest.len() < n {
            return Err(canon(what, "truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], AuditError> {
        let bytes = self.take(N, what)?;
        Ok(bytes.try_into().expect("take returned N bytes"))
    }

    fn string(&mut self, what: &'static str) -> Result<String, AuditError> {
        let len = u32::from_be_bytes(self.array(what)?);
        let len = usize::try_from(len).map_err(|_| canon(what, "length does not fit in memory"))?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| canon(what, "not UTF-8"))
    }

    fn opt_string(&mut self, what: &'static str) -> Result<Option<String>, AuditError> {
        match self.take(1, what)?[0] {
            0 => Ok(None),
            1 => Ok(Some(self.string(what)?)),
            _ => Err(canon(what, "presence byte is neither 0 nor 1")),
        }
    }
}
