//! The auditor's offline check of an audit log.
//!
//! [`verify_chain`] walks a log from its genesis entry and stops at the first
//! entry that breaks a rule, returning a [`VerifyFailure`] that names it.
//! The rules, in the order they are checked for each entry:
//!
//! 1. The log is not empty ([`FailureKind::Empty`]).
//! 2. The first entry has `seq` 0 and `prev_hash` equal to [`GENESIS_HASH`]
//!    ([`FailureKind::FirstNotGenesis`]), and it is signed
//!    ([`FailureKind::FirstUnsigned`]): a module always signs its first entry.
//! 3. Every later entry has `seq` one more than the entry before
//!    ([`FailureKind::SequenceGap`]) and `prev_hash` equal to the
//!    [hash](AuditEntry::hash) of the entry before
//!    ([`FailureKind::BrokenHashChain`]).
//! 4. `module_id` is the same in every entry ([`FailureKind::ModuleIdChanged`]).
//! 5. An entry whose command is [`ROTATE_KEY_COMMAND`] is signed by the current
//!    audit key and carries `data["new_audit_key"]`, hex of a 65-byte
//!    uncompressed P-256 point ([`FailureKind::BadKeyRotation`]); entries after
//!    it are checked against the new key.
//! 6. Every other signature present verifies under the current audit key
//!    ([`FailureKind::BadSignature`]).
//!
//! Not checked: that `time` never goes backwards (module time can be reset),
//! and the meaning of commands, states and data.
//!
//! A successful check returns a [`VerifyReport`]. Its
//! [`unsigned_tail`](VerifyReport::unsigned_tail) counts the entries after the
//! last signature: they are protected only by the hash chain, so anyone able
//! to write the file could have rewritten or appended them, and no check can
//! tell whether entries were cut off the end of a log.
//!
//! [`verify_chain_from`] checks a log that does not start at genesis: either
//! the continuation of an already verified log ([`ChainStart::After`]) or a
//! log whose first entry is signed ([`ChainStart::SignedCheckpoint`]).

use std::fmt;

use postvault_crypto::ecdsa;

use crate::{AuditEntry, GENESIS_HASH, NEW_AUDIT_KEY_DATA, ROTATE_KEY_COMMAND};

/// Length of an uncompressed P-256 public key (`0x04 || x || y`).
const KEY_LEN: usize = 65;

/// The last entry of an already verified log, to check its continuation with
/// [`verify_chain_from`] and [`ChainStart::After`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainAnchor {
    /// The `seq` of the last verified entry.
    pub seq: u64,
    /// The [hash](AuditEntry::hash) of the last verified entry.
    pub hash: [u8; 32],
    /// The module ID of the verified log.
    pub module_id: String,
}

impl ChainAnchor {
    /// The anchor that `entry` provides for the entries after it.
    pub fn of(entry: &AuditEntry) -> Self {
        ChainAnchor {
            seq: entry.seq,
            hash: entry.hash(),
            module_id: entry.module_id.clone(),
        }
    }
}

/// Where a log being verified starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStart {
    /// At the module's first entry: `seq` 0, `prev_hash` [`GENESIS_HASH`],
    /// signed. This is what [`verify_chain`] uses.
    Genesis,
    /// Right after a trusted entry: the first entry must have `seq` =
    /// `anchor.seq + 1`, `prev_hash` = `anchor.hash` and the anchor's module
    /// ID. It need not be signed (the anchor vouches for what came before).
    After(ChainAnchor),
    /// Anywhere: the first entry's `seq` and `prev_hash` are taken as they
    /// are, but it must be signed by the given audit key (which must be the
    /// key current at that point of the chain).
    SignedCheckpoint,
}

/// Why a log failed verification. The entry concerned is in [`VerifyFailure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The log has no entries.
    Empty,
    /// The first entry is not a genesis entry: its `seq` is not 0 or its
    /// `prev_hash` is not all zeros (entries are missing from the start).
    FirstNotGenesis,
    /// The first entry is unsigned; a module always signs its first entry (and
    /// a [`ChainStart::SignedCheckpoint`] must be signed).
    FirstUnsigned,
    /// `seq` is not one more than the previous entry's (an entry was deleted,
    /// duplicated or reordered).
    SequenceGap {
        /// The `seq` the entry should have had.
        expected: u64,
        /// The `seq` it has.
        found: u64,
    },
    /// The previous entry has `seq` `u64::MAX`, so no entry can follow it.
    SequenceOverflow,
    /// `prev_hash` is not the hash of the previous entry (or of the anchor):
    /// the previous entry, or this entry's `prev_hash`, was altered.
    BrokenHashChain,
    /// `module_id` differs from the first entry's (or the anchor's).
    ModuleIdChanged {
        /// The module ID of the log.
        expected: String,
        /// The module ID of this entry.
        found: String,
    },
    /// A signature does not verify under the current audit key: the entry was
    /// altered after signing, or signed by another key.
    BadSignature,
    /// A key rotation entry ([`ROTATE_KEY_COMMAND`]) is not acceptable.
    BadKeyRotation(RotationProblem),
}

/// What is wrong with a key rotation entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationProblem {
    /// It is unsigned; it must be signed by the current audit key.
    Unsigned,
    /// It has no `data["new_audit_key"]`.
    MissingNewKey,
    /// `data["new_audit_key"]` is not hex of a 65-byte uncompressed point.
    MalformedNewKey,
    /// It is signed by the new key it introduces instead of the current key.
    SignedByNewKey,
    /// Its signature verifies under neither the current nor the new key.
    BadSignature,
}

impl fmt::Display for RotationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RotationProblem::Unsigned => {
                "it is unsigned (it must be signed by the current audit key)"
            }
            RotationProblem::MissingNewKey => "it has no data[\"new_audit_key\"]",
            RotationProblem::MalformedNewKey => {
                "data[\"new_audit_key\"] is not hex of a 65-byte uncompressed P-256 key"
            }
            RotationProblem::SignedByNewKey => {
                "it is signed by the new key it introduces, not by the current audit key"
            }
            RotationProblem::BadSignature => {
                "its signature does not verify under the current audit key"
            }
        })
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Empty => f.write_str("the log is empty"),
            FailureKind::FirstNotGenesis => f.write_str(
                "not a genesis entry (seq must be 0 and prev_hash all zeros): \
                 the start of the log is missing",
            ),
            FailureKind::FirstUnsigned => f.write_str("the first entry is not signed"),
            FailureKind::SequenceGap { expected, found } => write!(
                f,
                "sequence gap: expected seq {expected}, found {found} \
                 (entries deleted, duplicated or reordered)"
            ),
            FailureKind::SequenceOverflow => {
                f.write_str("the previous entry has the largest possible seq")
            }
            FailureKind::BrokenHashChain => f.write_str(
                "hash chain broken: prev_hash does not match the hash of the previous entry",
            ),
            FailureKind::ModuleIdChanged { expected, found } => {
                write!(f, "module ID changed from {expected:?} to {found:?}")
            }
            FailureKind::BadSignature => {
                f.write_str("signature does not verify under the current audit key")
            }
            FailureKind::BadKeyRotation(problem) => write!(f, "bad audit key rotation: {problem}"),
        }
    }
}

/// The first entry of a log that breaks a rule, and which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct VerifyFailure {
    /// 0-based index of the entry in the verified slice (its 1-based line in a
    /// log file is `index + 1`). 0 for [`FailureKind::Empty`].
    pub index: usize,
    /// The `seq` the entry claims; `None` for [`FailureKind::Empty`].
    pub seq: Option<u64>,
    /// What is wrong.
    pub kind: FailureKind,
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(seq) = self.seq else {
            return write!(f, "{}", self.kind);
        };
        write!(f, "entry {} (seq {seq}): ", self.index)?;
        match (&self.kind, self.index) {
            (FailureKind::BrokenHashChain, 0) => {
                f.write_str("hash chain broken: prev_hash does not match the anchor's hash")
            }
            (FailureKind::BrokenHashChain, i) => write!(
                f,
                "hash chain broken: prev_hash does not match the hash of entry {}",
                i - 1
            ),
            (kind, _) => write!(f, "{kind}"),
        }
    }
}

/// What a successful [`verify_chain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of entries verified.
    pub entries: usize,
    /// Number of signed entries (all signatures verified).
    pub signed: usize,
    /// The module ID shared by every entry.
    pub module_id: String,
    /// `seq` of the first entry (0 for a log from genesis).
    pub first_seq: u64,
    /// `seq` of the last entry.
    pub last_seq: u64,
    /// Hash of the last entry (what the next entry's `prev_hash` must be).
    pub last_hash: [u8; 32],
    /// `seq` of the last signed entry; `None` only when a log checked with
    /// [`ChainStart::After`] has no signature at all.
    pub last_signed_seq: Option<u64>,
    /// Entries after the last signed one. They are protected only by the
    /// hash chain: they could have been rewritten or appended by anyone able
    /// to write the log.
    pub unsigned_tail: usize,
    /// Number of audit key rotations passed.
    pub key_rotations: usize,
    /// The audit key current at the end of the log (the one given, unless a
    /// rotation replaced it). Entries appended later must be signed by it.
    pub audit_key: [u8; 65],
}

impl VerifyReport {
    /// The anchor for verifying the continuation of this log with
    /// [`verify_chain_from`]; pass [`Self::audit_key`] as its key.
    pub fn anchor(&self) -> ChainAnchor {
        ChainAnchor {
            seq: self.last_seq,
            hash: self.last_hash,
            module_id: self.module_id.clone(),
        }
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "audit chain OK: {} entries (seq {} to {}) of module {}, {} signed",
            self.entries, self.first_seq, self.last_seq, self.module_id, self.signed
        )?;
        match self.last_signed_seq {
            Some(seq) => write!(f, ", last signature at seq {seq}")?,
            None => f.write_str(", no signatures")?,
        }
        if self.unsigned_tail > 0 {
            write!(
                f,
                "; WARNING: the last {} entries are unsigned and protected only by the hash chain",
                self.unsigned_tail
            )?;
        } else {
            f.write_str("; no unsigned tail")?;
        }
        write!(
            f,
            "; {} key rotation{}; last hash {}",
            self.key_rotations,
            if self.key_rotations == 1 { "" } else { "s" },
            hex::encode(self.last_hash)
        )
    }
}

/// Verifies a whole log from its genesis entry with the module's audit key
/// (the key current at seq 0). See the [module documentation](self) for the
/// rules. Same as [`verify_chain_from`] with [`ChainStart::Genesis`].
pub fn verify_chain(
    entries: &[AuditEntry],
    audit_key: &[u8; 65],
) -> Result<VerifyReport, VerifyFailure> {
    verify_chain_from(entries, audit_key, &ChainStart::Genesis)
}

/// Verifies a log that starts as `start` says; `audit_key` is the key
/// current at its first entry. See the [module documentation](self).
pub fn verify_chain_from(
    entries: &[AuditEntry],
    audit_key: &[u8; 65],
    start: &ChainStart,
) -> Result<VerifyReport, VerifyFailure> {
    let Some(first) = entries.first() else {
        return Err(VerifyFailure {
            index: 0,
            seq: None,
            kind: FailureKind::Empty,
        });
    };
    let module_id = match start {
        ChainStart::After(anchor) => anchor.module_id.as_str(),
        ChainStart::Genesis | ChainStart::SignedCheckpoint => first.module_id.as_str(),
    };
    let mut key = *audit_key;
    // (seq, hash) of the previous entry, once there is one.
    let mut prev: Option<(u64, [u8; 32])> = match start {
        ChainStart::After(anchor) => Some((anchor.seq, anchor.hash)),
        ChainStart::Genesis | ChainStart::SignedCheckpoint => None,
    };
    let mut signed = 0;
    let mut last_signed: Option<(usize, u64)> = None;
    let mut key_rotations = 0;

    for (index, entry) in entries.iter().enumerate() {
        let fail = |kind| VerifyFailure {
            index,
            seq: Some(entry.seq),
            kind,
        };
        match prev {
            Some((prev_seq, prev_hash)) => {
                let expected = prev_seq
                    .checked_add(1)
                    .ok_or_else(|| fail(FailureKind::SequenceOverflow))?;
                if entry.seq != expected {
                    return Err(fail(FailureKind::SequenceGap {
                        expected,
                        found: entry.seq,
                    }));
                }
                if entry.prev_hash != prev_hash {
                    return Err(fail(FailureKind::BrokenHashChain));
                }
            }
            None => {
                if *start == ChainStart::Genesis
                    && (entry.seq != 0 || entry.prev_hash != GENESIS_HASH)
                {
                    return Err(fail(FailureKind::FirstNotGenesis));
                }
                if entry.signature.is_none() {
                    return Err(fail(FailureKind::FirstUnsigned));
                }
            }
        }
        if entry.module_id != module_id {
            return Err(fail(FailureKind::ModuleIdChanged {
                expected: module_id.to_string(),
                found: entry.module_id.clone(),
            }));
        }

        let bytes = entry.canonical_bytes();
        if entry.command == ROTATE_KEY_COMMAND {
            let Some(sig) = &entry.signature else {
                return Err(fail(FailureKind::BadKeyRotation(RotationProblem::Unsigned)));
            };
            let new_key = parse_new_key(entry).map_err(|p| fail(FailureKind::BadKeyRotation(p)))?;
            if !ecdsa::verify(&key, &bytes, sig) {
                let problem = if ecdsa::verify(&new_key, &bytes, sig) {
                    RotationProblem::SignedByNewKey
                } else {
                    RotationProblem::BadSignature
                };
                return Err(fail(FailureKind::BadKeyRotation(problem)));
            }
            key = new_key;
            key_rotations += 1;
        } else if entry
            .signature
            .is_some_and(|sig| !ecdsa::verify(&key, &bytes, &sig))
        {
            return Err(fail(FailureKind::BadSignature));
        }
        if entry.signature.is_some() {
            signed += 1;
            last_signed = Some((index, entry.seq));
        }
        prev = Some((entry.seq, postvault_crypto::hash::sha256(&[&bytes])));
    }

    let (last_seq, last_hash) = prev.expect("the log is not empty");
    Ok(VerifyReport {
        entries: entries.len(),
        signed,
        module_id: module_id.to_string(),
        first_seq: first.seq,
        last_seq,
        last_hash,
        last_signed_seq: last_signed.map(|(_, seq)| seq),
        unsigned_tail: match last_signed {
            Some((index, _)) => entries.len() - 1 - index,
            None => entries.len(),
        },
        key_rotations,
        audit_key: key,
    })
}

/// The new audit key of a rotation entry.
fn parse_new_key(entry: &AuditEntry) -> Result<[u8; KEY_LEN], RotationProblem> {
    let text = entry
        .data
        .get(NEW_AUDIT_KEY_DATA)
        .ok_or(RotationProblem::MissingNewKey)?;
    let bytes = hex::decode(text).map_err(|_| RotationProblem::MalformedNewKey)?;
    let key: [u8; KEY_LEN] = bytes
        .try_into()
        .map_err(|_| RotationProblem::MalformedNewKey)?;
    if key[0] != 0x04 {
        return Err(RotationProblem::MalformedNewKey);
    }
    Ok(key)
}
