//! Checks shared by the engines: numbers between Rust's `u64` and SQL's
//! signed 64-bit integers, and the shape of a [`Commit`].

use std::collections::HashSet;

use crate::error::{Result, StoreError};
use crate::types::Commit;

/// A `u64` into a database `BIGINT`; beyond `i64::MAX` is refused.
pub(crate) fn to_db(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is beyond i64::MAX")))
}

/// A database `BIGINT` back into a `u64`; a negative value is corrupt.
pub(crate) fn from_db(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} is negative ({v})")))
}

/// A database `BIGINT` back into a `u32` (counters).
pub(crate) fn from_db_u32(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} is out of range ({v})")))
}

/// Checks, before anything is written, that a commit only touches meters
/// the transaction locked, names each meter once, and that its numbers fit.
pub(crate) fn check_commit(commit: &Commit, locked: &HashSet<String>) -> Result<()> {
    let mut seen = HashSet::new();
    for m in &commit.meters {
        if !locked.contains(&m.device_id) {
            return Err(StoreError::Invalid(format!(
                "meter {:?} is not locked by this transaction",
                m.device_id
            )));
        }
        if !seen.insert(m.device_id.as_str()) {
            return Err(StoreError::Invalid(format!(
                "meter {:?} appears twice in one commit",
                m.device_id
            )));
        }
    }
    for l in &commit.ledger {
        if !locked.contains(&l.device_id) {
            return Err(StoreError::Invalid(format!(
                "ledger row for meter {:?}, which this transaction did not lock",
                l.device_id
            )));
        }
        to_db(l.piece, "piece counter")?;
        to_db(l.postage_mills, "postage")?;
        to_db(l.ascending_mills, "ascending register")?;
        to_db(l.descending_mills, "descending register")?;
    }
    for m in &commit.money {
        if !locked.contains(&m.device_id) {
            return Err(StoreError::Invalid(format!(
                "money row for meter {:?}, which this transaction did not lock",
                m.device_id
            )));
        }
        to_db(m.amount_mills, "amount")?;
        if let Some(s) = m.provider_seq {
            to_db(s, "provider sequence")?;
        }
    }
    if let Some(cp) = &commit.checkpoint {
        to_db(cp.seq, "checkpoint sequence")?;
        to_db(cp.value_mills, "checkpoint value")?;
    }
    for a in &commit.audit {
        to_db(a.seq, "audit sequence")?;
    }
    Ok(())
}
