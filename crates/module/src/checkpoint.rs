//! Checkpoints (seed 002, "the checkpoint concept"; issue 3 item 4).
//!
//! Each module keeps, in its NVM, records of the [`CHECKPOINTS_KEPT`] most
//! recent transactions that modified a PSD package: the meter, the
//! transaction type and amount, the registers after it, the module's serial
//! number, the time, and the module's running totals of value reset
//! (downloaded), printed and refunded. The newest record also goes to the
//! database with the package, MAC'd ([`SignedCheckpoint`]) under a key
//! derived from the MKS's MAK (the seed's MK_chkpt).
//!
//! Every PSD command that takes a package also takes the database's copy of
//! this module's newest checkpoint and refuses to run unless it equals the
//! module's own ([`crate::error::ModuleError::CheckpointMismatch`]): a
//! database that was switched to a stale copy ("lost records") is caught
//! before a register moves. Auto-Recover Checkpoint accepts a controlled
//! rollback to one of the two older records and audits the discarded
//! transactions; when none matches, the module stops processing PSD packages
//! ([`crate::error::ModuleError::Inhibited`]) until a Security Officer
//! accepts the database's state (Accept Checkpoint, the seed's "operator
//! intervention, using the disaster recovery process").
//!
//! Every package a module produces carries a stamp (the module and its
//! checkpoint number). The module remembers, for the
//! [`RECENT_METERS_KEPT`] meters it served most recently, the number of its
//! newest transaction on each, and the numbers a recovered rollback
//! discarded: a package it stamped earlier for one of those meters, or
//! with a discarded number, is refused as stale even when the database's
//! checkpoint is current. Each record also carries the SHA-256 of the
//! package(s) the transaction produced, for auditors.
use serde::{Deserialize, Serialize};

use postvault_crypto::{SecretKey32, aead, hash};

use crate::keys::Mks;

/// How many checkpoint records a module keeps (the newest and two older).
pub const CHECKPOINTS_KEPT: usize = 3;

/// How many meters a module remembers its newest transaction on (stale
/// packages of these are refused; beyond them only the database rollback
/// check of the checkpoints and the audit log protect).
pub const RECENT_METERS_KEPT: usize = 4096;

/// Current [`Checkpoint`] format version.
pub const CHECKPOINT_VERSION: u8 = 1;

/// Domain separation of the checkpoint MAC key (HKDF info).
const CHECKPOINT_KEY_INFO: &[u8] = b"postvault checkpoint mac key v1";

/// Domain separation of the checkpoint MAC input.
const CHECKPOINT_MAC_LABEL: &[u8] = b"postvault checkpoint v1";

/// The module's running totals (seed 002: "module total amount reset /
/// printed / refunded"), mills.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleTotals {
    /// Value downloaded into meters by this module (meter "resets").
    pub reset_mills: u64,
    /// Value printed as indicia (including correction indicia).
    pub printed_mills: u64,
    /// Value refunded (refund indicia).
    pub refunded_mills: u64,
}

/// What kind of transaction a checkpoint records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransactionType {
    /// Authorize PSD (certificate loaded).
    AuthorizePsd,
    /// Configure PSD (customer assigned).
    ConfigurePsd,
    /// Authorize Customer (licence).
    AuthorizeCustomer,
    /// Download Postage Value.
    Download,
    /// Create Indicium.
    Indicium,
    /// Create Correction Indicium.
    CorrectionIndicium,
    /// Create Indicia: a batch of indicia on several meters, one record.
    IndiciumBatch,
    /// Create Refund Indicium (withdrawal).
    RefundIndicium,
    /// Begin or complete a password reset.
    PasswordReset,
    /// A change to the meter's users (multi-user meters, user logons).
    Users,
}

impl std::fmt::Display for TransactionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransactionType::AuthorizePsd => "authorize-psd",
            TransactionType::ConfigurePsd => "configure-psd",
            TransactionType::AuthorizeCustomer => "authorize-customer",
            TransactionType::Download => "download",
            TransactionType::Indicium => "indicium",
            TransactionType::CorrectionIndicium => "correction-indicium",
            TransactionType::IndiciumBatch => "indicium-batch",
            TransactionType::RefundIndicium => "refund-indicium",
            TransactionType::PasswordReset => "password-reset",
            TransactionType::Users => "users",
        })
    }
}

/// One checkpoint record (seed 002's list, plus a per-module sequence
/// number and the digest of the package the transaction produced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version ([`CHECKPOINT_VERSION`]).
    pub version: u8,
    /// The module's serial number (its module ID).
    #[serde(with = "crate::serde_hex::array16")]
    pub module_id: [u8; 16],
    /// This module's checkpoint counter: 1 for its first PSD transaction.
    pub seq: u64,
    /// The meter, as displayed.
    pub device_id: String,
    /// The transaction type.
    pub transaction: TransactionType,
    /// The transaction amount, mills (0 for transactions that move no value).
    pub amount_mills: u64,
    /// The meter's ascending register after the transaction, mills.
    pub ascending_mills: u64,
    /// The meter's descending register after the transaction, mills.
    pub descending_mills: u64,
    /// Module time of the transaction, Unix seconds (replay detection).
    pub time: i64,
    /// The module's totals after the transaction.
    pub totals: ModuleTotals,
    /// The digest of the sealed package the transaction produced
    /// ([`package_digest`]); for a batch, the SHA-256 of its packages'
    /// digests in item order.
    #[serde(with = "crate::serde_hex::array32")]
    pub package_digest: [u8; 32],
}

/// A checkpoint as the database holds it: the record and its MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// The record.
    pub checkpoint: Checkpoint,
    /// HMAC-SHA-256 under the MKS's checkpoint key.
    #[serde(with = "crate::serde_hex::array32")]
    pub mac: [u8; 32],
}

impl Checkpoint {
    fn mac_bytes(&self) -> Vec<u8> {
        let mut out = CHECKPOINT_MAC_LABEL.to_vec();
        out.extend_from_slice(
            &postcard::to_stdvec(self).expect("encoding a checkpoint into a Vec cannot fail"),
        );
        out
    }

    /// MACs the record under `mks`'s checkpoint key.
    pub fn sign(&self, mks: &Mks) -> SignedCheckpoint {
        SignedCheckpoint {
            checkpoint: self.clone(),
            mac: hash::hmac_sha256(&checkpoint_key(mks), &[&self.mac_bytes()]),
        }
    }
}

impl SignedCheckpoint {
    /// True when the MAC verifies under `mks`'s checkpoint key.
    pub fn verifies(&self, mks: &Mks) -> bool {
        hash::hmac_sha256_verify(
            &checkpoint_key(mks),
            &[&self.checkpoint.mac_bytes()],
            &self.mac,
        )
    }
}

/// MK_chkpt: HKDF-SHA-256 of the MKS's MAK.
fn checkpoint_key(mks: &Mks) -> SecretKey32 {
    let mak = mks.mak();
    hash::hkdf_sha256(&mks.id, mak.expose_secret(), &[CHECKPOINT_KEY_INFO])
}

/// The digest of a sealed package recorded in checkpoints: SHA-256 of its
/// header (device ID, MKS ID and generation), its length, and its
/// AES-256-GCM nonce and tag, not of the whole ciphertext.
///
/// The nonce and tag identify the package as firmly as the ciphertext
/// does: under the MKS's key (which only modules hold), the tag
/// authenticates the ciphertext and the device ID (the associated data)
/// for that nonce, so bytes that differ from what a module sealed either
/// change the tag or fail to open in any module. Hashing 28 bytes instead
/// of the whole package keeps the digest off the per-piece cost of Create
/// Indicia. Version 2 (checkpoints written before hashed everything with
/// the label `postvault package digest v1`; nothing compares digests
/// across the change).
pub fn package_digest(package: &crate::psd::SealedPackage) -> [u8; 32] {
    let sealed = &package.sealed;
    let nonce = &sealed[..sealed.len().min(aead::NONCE_LEN)];
    let tag = &sealed[sealed.len().saturating_sub(aead::TAG_LEN)..];
    hash::sha256(&[
        b"postvault package digest v2",
        package.device_id.as_bytes(),
        &[0],
        &package.mks_id,
        &package.mks_generation.to_be_bytes(),
        &(sealed.len() as u64).to_be_bytes(),
        nonce,
        tag,
    ])
}

/// One row of the database's module table (seed 002): a module's serial
/// number and its last transaction's time and value, as the store recorded
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleTableRow {
    /// The module's ID (hex).
    pub module_id: String,
    /// Time of its last transaction, Unix seconds (the seed's date and
    /// time), or `None` when it has processed none.
    pub time: Option<i64>,
    /// Value of its last transaction, mills.
    pub value_mills: Option<u64>,
    /// Its checkpoint counter at that transaction.
    pub seq: Option<u64>,
}

impl ModuleTableRow {
    /// The row a checkpoint implies (what the store writes with it).
    pub fn from_checkpoint(module_id: &[u8; 16], cp: Option<&Checkpoint>) -> Self {
        Self {
            module_id: hex::encode(module_id),
            time: cp.map(|c| c.time),
            value_mills: cp.map(|c| c.amount_mills),
            seq: cp.map(|c| c.seq),
        }
    }
}

/// Why the module-table cross-check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossCheckError {
    /// More modules disagree with the database than the threshold allows:
    /// the database is probably a stale copy; no package may be loaded.
    #[error(
        "{failing} of {checked} modules disagree with the database's module table (threshold {threshold}): {details}; the database may have been rolled back, so no PSD package is loaded until an operator checks it"
    )]
    TooManyFailing {
        /// Modules whose last transaction differs from the table.
        failing: usize,
        /// Modules checked.
        checked: usize,
        /// The configured threshold (the largest number allowed to fail).
        threshold: usize,
        /// One line per failing module.
        details: String,
    },
}

/// The module-table cross-check of seed 002: before loading a new package,
/// the server compares each module's last transaction (its newest
/// checkpoint, `modules`: module ID and that checkpoint) with the database's
/// module table (`table`). A module whose record differs, or that the table
/// does not know, counts as failing; the check fails when more than
/// `threshold` modules fail. On success it returns the IDs of the failing
/// modules (at most `threshold`), which the caller should take out of
/// service or auto-recover.
pub fn cross_check(
    table: &[ModuleTableRow],
    modules: &[([u8; 16], Option<Checkpoint>)],
    threshold: usize,
) -> Result<Vec<String>, CrossCheckError> {
    let mut failing = Vec::new();
    for (id, cp) in modules {
        let expect = ModuleTableRow::from_checkpoint(id, cp.as_ref());
        let why = match table.iter().find(|r| r.module_id == expect.module_id) {
            None if cp.is_none() => None,
            None => Some("not in the module table".to_string()),
            Some(row) if *row == expect => None,
            Some(row) => Some(format!(
                "table says seq {:?} at {:?} for {:?} mills, module says seq {:?} at {:?} for {:?} mills",
                row.seq, row.time, row.value_mills, expect.seq, expect.time, expect.value_mills
            )),
        };
        if let Some(why) = why {
            failing.push((expect.module_id, why));
        }
    }
    if failing.len() > threshold {
        return Err(CrossCheckError::TooManyFailing {
            failing: failing.len(),
            checked: modules.len(),
            threshold,
            details: failing
                .iter()
                .map(|(id, why)| format!("module {id}: {why}"))
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok(failing.into_iter().map(|(id, _)| id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::psd::{PACKAGE_VERSION, SealedPackage};

    fn package() -> SealedPackage {
        SealedPackage {
            version: PACKAGE_VERSION,
            device_id: "0042-0001-00000007".into(),
            mks_id: [3; 16],
            mks_generation: 2,
            sealed: (0..200u8).collect(),
        }
    }

    /// A named change to a package.
    type Change = (&'static str, fn(&mut SealedPackage));

    #[test]
    fn the_package_digest_covers_header_length_nonce_and_tag() {
        let p = package();
        let d = package_digest(&p);
        assert_eq!(package_digest(&p.clone()), d);
        let changed: [Change; 7] = [
            ("device", |p| p.device_id.push('0')),
            ("MKS ID", |p| p.mks_id[15] ^= 1),
            ("MKS generation", |p| p.mks_generation += 1),
            ("first nonce byte", |p| p.sealed[0] ^= 1),
            ("last nonce byte", |p| p.sealed[11] ^= 1),
            ("first tag byte", |p| {
                let n = p.sealed.len();
                p.sealed[n - 16] ^= 1
            }),
            ("length", |p| {
                p.sealed.insert(100, 0);
            }),
        ];
        for (what, change) in changed {
            let mut q = p.clone();
            change(&mut q);
            assert_ne!(package_digest(&q), d, "{what} changed, digest did not");
        }
        // Too short to hold a nonce and a tag: still a digest, no panic.
        let mut short = p.clone();
        short.sealed.truncate(5);
        assert_ne!(package_digest(&short), d);
        short.sealed.clear();
        let _ = package_digest(&short);
    }
}
