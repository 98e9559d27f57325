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
//! A log file is JSON lines, one entry per line, oldest first.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The all-zero hash that the first entry of a chain points back to.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

/// The command name of an entry that introduces a new audit signing key; its
/// `data["new_audit_key"]` is the new key (hex, uncompressed P-256) and it is
/// signed by the old key. Entries after it are verified with the new key.
pub const ROTATE_KEY_COMMAND: &str = "CreateAuditKey";

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
    /// Command data (never secrets).
    pub data: BTreeMap<String, String>,
    /// ECDSA P-256 signature (r || s) over the canonical bytes, hex; present on signed entries.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_opt_sig")]
    pub signature: Option<[u8; 64]>,
}

mod hex_array {
    //! Serde helper: a 32-byte array as lowercase hex.
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        v.try_into().map_err(|_| serde::de::Error::custom("expected 32 bytes of hex"))
    }
}

mod hex_opt_sig {
    //! Serde helper: an optional 64-byte signature as lowercase hex.
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<[u8; 64]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(sig) => s.serialize_str(&hex::encode(sig)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 64]>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => {
                let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
                let arr: [u8; 64] = v.try_into().map_err(|_| serde::de::Error::custom("expected 64 bytes of hex"))?;
                Ok(Some(arr))
            }
        }
    }
}
