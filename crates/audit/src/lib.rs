//! postvault-audit: the hash-chained, periodically signed audit log of a
//! cryptographic module (seed 002, "Audit support", FIG. 7).
//!
//! An [`AuditEntry`] carries a sequence number, the SHA-256 hash of the
//! previous entry, the module ID, the command, the user and role, the current
//! and persistent module state, the time, a reason code, command data and an
//! optional ECDSA P-256 signature. The hash of an entry is SHA-256 over its
//! canonical encoding ([`AuditEntry::canonical_bytes`]), which covers every
//! field except the signature; a signature is over the same bytes, so one
//! signature vouches for the entry and, through the hashes, every entry before it.
//!
//! A log file is JSON lines, one entry per line, oldest first
//! ([`AuditEntry::to_json_line`], [`parse_log`]).
//!
//! # Modules
//!
//! * [`canonical`] specifies the binary encoding that is hashed and signed,
//!   in enough detail to re-implement it.
//! * [`log`] reads and writes JSON-lines log files.
//! * [`verify`] is the auditor's offline check of a whole log
//!   ([`verify_chain`]): sequence numbers, the hash chain, the module ID,
//!   every signature and every key rotation.
//!
//! # What the chain does and does not prove
//!
//! A signed entry proves, through the hash chain, every entry before it.
//! Entries after the last signature (the *unsigned tail*, reported by
//! [`VerifyReport::unsigned_tail`]) are protected only by the hash chain: anyone
//! can append or rewrite unsigned entries after the last signature, and anyone
//! can cut a log short. Only a later signed entry, or a known-good
//! [`ChainAnchor`], pins them down.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod canonical;
pub mod log;
pub mod verify;

use std::collections::BTreeMap;

use postvault_crypto::CryptoError;
use postvault_crypto::ecdsa::{self, EcdsaP256KeyPair};
use serde::{Deserialize, Serialize};

pub use canonical::CANONICAL_MAGIC;
pub use log::{LogError, parse_log, to_log_text};
pub use verify::{
    ChainAnchor, ChainStart, FailureKind, RotationProblem, VerifyFailure, VerifyReport,
    verify_chain, verify_chain_from,
};

/// The `data` key of a [`ROTATE_KEY_COMMAND`] entry that holds the new audit
/// key: lowercase or uppercase hex of a 65-byte uncompressed P-256 point.
pub const NEW_AUDIT_KEY_DATA: &str = "new_audit_key";

/// The all-zero hash that the first entry of a chain points back to.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

/// The command name of an entry that introduces a new audit signing key; its
/// `data["new_audit_key"]` is the new key (hex, uncompressed P-256) and it is
/// signed by the old key. Entries after it are verified with the new key.
pub const ROTATE_KEY_COMMAND: &str = "CreateAuditKey";

/// Room in a JSON line for the field names, punctuation, hashes, states,
/// user, numbers and signature of an entry ([`AuditEntry::to_json_line`]).
const JSON_LINE_OVERHEAD: usize = 512;

/// One entry of a module's audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Sequence number; the first entry of a module is 0, then +1 each entry.
    pub seq: u64,
    /// SHA-256 of the previous entry's canonical bytes ([`GENESIS_HASH`] for seq 0).
    #[serde(with = "hex_array")]
    pub prev_hash: [u8; 32],
    /// The module's ID (16 random bytes chosen at Start Initialization), hex.
    pub module_id: String,
    /// The command that produced the entry (e.g. `Logon`).
    pub command: String,
    /// The logged-on user, if any.
    pub user_id: Option<String>,
    /// The logged-on user's role, if any.
    pub role: Option<String>,
    /// The module's current state after the command.
    pub current_state: String,
    /// The module's persistent state after the command.
    pub persistent_state: String,
    /// Module time, seconds since the Unix epoch.
    pub time: i64,
    /// Reason code: `ok`, or why the command was refused or failed.
    pub reason: String,
    /// Command data (never secrets). A JSON object with a repeated key is
    /// rejected, so every reader sees the same data.
    #[serde(deserialize_with = "unique_map::deserialize")]
    pub data: BTreeMap<String, String>,
    /// ECDSA P-256 signature (r || s) over the canonical bytes, hex; present on signed entries.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_opt_sig")]
    pub signature: Option<[u8; 64]>,
}

mod hex_array {
    //! Serde helper: a 32-byte array as lowercase hex.
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        // On the stack: one entry per piece is written, each with a hash.
        let mut buf = [0u8; 64];
        hex::encode_to_slice(v, &mut buf).expect("64 hex digits for 32 bytes");
        s.serialize_str(std::str::from_utf8(&buf).expect("hex digits are ASCII"))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes of hex"))
    }
}

mod hex_opt_sig {
    //! Serde helper: an optional 64-byte signature as lowercase hex.
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<[u8; 64]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(sig) => s.serialize_some(&hex::encode(sig)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 64]>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => {
                let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
                let arr: [u8; 64] = v
                    .try_into()
                    .map_err(|_| serde::de::Error::custom("expected 64 bytes of hex"))?;
                Ok(Some(arr))
            }
        }
    }
}

mod unique_map {
    //! Serde helper: a string-to-string map that rejects repeated keys (JSON
    //! parsers disagree on which of two repeated keys wins).
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::Deserializer;
    use serde::de::{Error, MapAccess, Visitor};

    struct UniqueMap;

    impl<'de> Visitor<'de> for UniqueMap {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of strings to strings without repeated keys")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut map = BTreeMap::new();
            while let Some((key, value)) = access.next_entry::<String, String>()? {
                if map.contains_key(&key) {
                    return Err(A::Error::custom(format_args!("repeated data key {key:?}")));
                }
                map.insert(key, value);
            }
            Ok(map)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        d.deserialize_map(UniqueMap)
    }
}

/// Everything that can go wrong with a single entry.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A JSON line is not a well-formed entry: bad JSON, a missing, unknown or
    /// repeated field, a repeated data key, or hex of the wrong length.
    #[error("malformed audit entry: {0}")]
    Json(#[from] serde_json::Error),
    /// Canonical bytes could not be decoded.
    #[error("malformed canonical entry encoding: {field}: {problem}")]
    Canonical {
        /// The field being decoded (e.g. `command`, `data key`).
        field: &'static str,
        /// What was wrong (e.g. `truncated`, `not UTF-8`).
        problem: &'static str,
    },
    /// The signing key failed to sign.
    #[error("signing the audit entry failed: {0}")]
    Sign(#[from] CryptoError),
}

impl AuditEntry {
    /// The canonical encoding of every field except `signature`, as specified
    /// in [`canonical`]. This is what [`Self::hash`] hashes and [`Self::sign`] signs.
    ///
    /// # Panics
    ///
    /// If a string is longer than `u32::MAX` bytes or `data` has more than
    /// `u32::MAX` entries; such an entry has no encoding.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical::encode(self)
    }

    /// Decodes canonical bytes (the inverse of [`Self::canonical_bytes`]); the
    /// result has no signature. Trailing bytes, bad UTF-8, or `data` keys out
    /// of order or repeated are errors, so each entry has exactly one encoding.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, AuditError> {
        canonical::decode(bytes)
    }

    /// SHA-256 of [`Self::canonical_bytes`]; the next entry's `prev_hash`.
    pub fn hash(&self) -> [u8; 32] {
        postvault_crypto::hash::sha256(&[&self.canonical_bytes()])
    }

    /// Signs the canonical bytes with ECDSA P-256 and stores the signature,
    /// replacing any earlier one. The hash does not change: the signature is
    /// not part of the canonical bytes.
    pub fn sign(&mut self, key: &EcdsaP256KeyPair) -> Result<(), AuditError> {
        self.signature = Some(key.sign(&self.canonical_bytes())?);
        Ok(())
    }

    /// True when the entry carries a signature and it verifies over the
    /// canonical bytes with `public_key` (SEC1 uncompressed P-256); false for
    /// an unsigned entry.
    pub fn verify_signature(&self, public_key: &[u8]) -> bool {
        match &self.signature {
            Some(sig) => ecdsa::verify(public_key, &self.canonical_bytes(), sig),
            None => false,
        }
    }

    /// The entry as one line of compact JSON, without a trailing newline.
    /// Fields appear in declaration order, `data` in key order, hashes and the
    /// signature as lowercase hex; `signature` is left out when absent.
    /// Control characters in strings are escaped, so the line never contains
    /// a newline.
    pub fn to_json_line(&self) -> String {
        // Serializing a struct of strings, integers and a string-keyed map to a
        // String cannot fail.
        // Sized for the usual entry (hex hashes, a handful of data fields)
        // so the line is not reallocated several times as it grows.
        let mut out = Vec::with_capacity(
            JSON_LINE_OVERHEAD
                + self.module_id.len()
                + self.command.len()
                + self.reason.len()
                + self
                    .data
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 6)
                    .sum::<usize>(),
        );
        serde_json::to_writer(&mut out, self).expect("an audit entry always serializes to JSON");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// Parses one JSON line as written by [`Self::to_json_line`]. Unknown or
    /// repeated fields and repeated `data` keys are rejected; `"signature":
    /// null` is read as unsigned.
    pub fn from_json_line(line: &str) -> Result<Self, AuditError> {
        Ok(serde_json::from_str(line)?)
    }
}
