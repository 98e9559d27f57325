//! The module's side of checkpoints (seed 002; see `crate::checkpoint`):
//! the check every PSD command makes before it touches a package, the
//! record every package-changing command leaves, Auto-Recover Checkpoint,
//! Retrieve Checkpoint and Accept Checkpoint.
use super::*;
use crate::checkpoint::{
    CHECKPOINT_VERSION, CHECKPOINTS_KEPT, Checkpoint, RECENT_METERS_KEPT, SignedCheckpoint,
    TransactionType,
};
use crate::psd::PackageStamp;

impl Module {
    /// Refuses PSD work while inhibited, and unless `given` (the
    /// database's copy) is this module's newest checkpoint, authentic.
    pub(super) fn check_checkpoint(
        &self,
        given: Option<&SignedCheckpoint>,
    ) -> Result<(), ModuleError> {
        if let Some(why) = &self.nvm.psd_inhibited {
            return Err(ModuleError::Inhibited(why.clone()));
        }
        let newest = self.nvm.checkpoints.last();
        match (given, newest) {
            (None, None) => Ok(()),
            (None, Some(n)) => Err(ModuleError::CheckpointMismatch(format!(
                "no checkpoint was given, but module {} has made transactions (newest checkpoint {}); pass the database's checkpoint for this module with the package",
                hex::encode(self.nvm.module_id),
                n.seq
            ))),
            (Some(g), _) => {
                self.verify_checkpoint(g)?;
                let g = &g.checkpoint;
                match newest {
                    Some(n) if n == g => Ok(()),
                    None => Err(ModuleError::CheckpointMismatch(format!(
                        "the database has checkpoint {} for this module, but the module holds none (it was reset or replaced); an operator must run Accept Checkpoint",
                        g.seq
                    ))),
                    Some(n) => {
                        let behind = self.nvm.checkpoints.iter().rev().position(|c| c == g);
                        let theirs = format!("{} ({} on {})", g.seq, g.transaction, g.device_id);
                        let ours = format!("{} ({} on {})", n.seq, n.transaction, n.device_id);
                        Err(ModuleError::CheckpointMismatch(match behind {
                            Some(k) => format!(
                                "the database's checkpoint for this module is {theirs}, {k} transaction(s) behind the module's newest, {ours}: the database was rolled back or switched to a stale copy; run Auto-Recover Checkpoint with the database's checkpoint"
                            ),
                            // Authentic (the MAC verified) and newer than
                            // anything the module remembers: the module's
                            // NVM is the stale side.
                            None if g.seq > n.seq => format!(
                                "the database's checkpoint for this module is {theirs}, newer than the module's newest, {ours}: the module's NVM is older than the database (restored from an old copy, or rolled back); a Security Officer must find out why, then run Accept Checkpoint (Begin Admin first) with the database's checkpoint"
                            ),
                            None => format!(
                                "the database's checkpoint for this module is {theirs}, which is none of the module's {} most recent (newest {ours}): the database is stale by more than the module can recover, or not this deployment's",
                                self.nvm.checkpoints.len()
                            ),
                        }))
                    }
                }
            }
        }
    }

    /// The MAC of a database checkpoint, under the active MKS (or the
    /// dormant one, across a rollover), and its module.
    fn verify_checkpoint(&self, given: &SignedCheckpoint) -> Result<(), ModuleError> {
        let ok = [self.nvm.mks_active.as_ref(), self.nvm.mks_dormant.as_ref()]
            .into_iter()
            .flatten()
            .any(|mks| given.verifies(mks));
        if !ok {
            return Err(ModuleError::Rejected(
                "the checkpoint's MAC does not verify: it was altered or was not made by this deployment".into(),
            ));
        }
        if given.checkpoint.module_id != self.nvm.module_id {
            return Err(ModuleError::Rejected(format!(
                "the checkpoint belongs to module {}, not to this module ({}); pass this module's checkpoint",
                hex::encode(given.checkpoint.module_id),
                hex::encode(self.nvm.module_id)
            )));
        }
        Ok(())
    }

    /// Refuses a package this module produced that is older than the
    /// module's own newer transaction on the same meter (a stale package),
    /// that comes from a transaction a recovered rollback discarded, or
    /// that is newer than the module's newest checkpoint.
    pub(super) fn check_stamp(&self, package: &PsdPackage) -> Result<(), ModuleError> {
        let Some(stamp) = package.stamp else {
            return Ok(());
        };
        if stamp.module_id != self.nvm.module_id {
            return Ok(());
        }
        let device = package.device;
        if self
            .nvm
            .discarded
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&stamp.seq))
        {
            return Err(ModuleError::StalePackage(format!(
                "the package for {device} comes from this module's transaction {}, which a recovered rollback discarded; use the database's package",
                stamp.seq
            )));
        }
        if let Some(newest) = self.nvm.checkpoints.last()
            && stamp.seq > newest.seq
        {
            return Err(ModuleError::StalePackage(format!(
                "the package for {device} comes from this module's transaction {}, which is newer than its newest checkpoint {}; use the database's package",
                stamp.seq, newest.seq
            )));
        }
        if let Some(later) = self.nvm.recent_meters.get(&device)
            && *later > stamp.seq
        {
            return Err(ModuleError::StalePackage(format!(
                "the package for {device} was produced by this module's transaction {}, but the module has since made transaction {later} on this meter; the database returned an old copy of the package",
                stamp.seq
            )));
        }
        Ok(())
    }

    /// Remembers that transaction `seq` changed `device` (bounded: the
    /// oldest quarter is forgotten when the table is full).
    pub(super) fn note_meter(&mut self, device: DeviceId, seq: u64) {
        let recent = &mut self.nvm.recent_meters;
        recent.insert(device, seq);
        if recent.len() > RECENT_METERS_KEPT {
            let mut seqs: Vec<u64> = recent.values().copied().collect();
            seqs.sort_unstable();
            let cut = seqs[seqs.len() - RECENT_METERS_KEPT * 3 / 4];
            recent.retain(|_, s| *s >= cut);
        }
    }

    /// Forgets transactions after `seq` (a recovered or accepted rollback):
    /// their numbers are discarded and the meters they touched forgotten.
    fn discard_after(&mut self, seq: u64) {
        // Packages kept from the discarded transactions go too (check_stamp
        // would refuse them anyway).
        self.packages.clear();
        let counter = self.nvm.checkpoint_counter;
        if seq < counter {
            self.nvm.discarded.push((seq + 1, counter));
        }
        self.nvm.recent_meters.retain(|_, s| *s <= seq);
    }

    /// The stamp the next checkpointed transaction gives its packages.
    pub(super) fn next_stamp(&self) -> PackageStamp {
        PackageStamp {
            module_id: self.nvm.module_id,
            seq: self.nvm.checkpoint_counter + 1,
        }
    }

    /// Records a checkpoint for the transaction stamped `stamp` (keeping the
    /// newest [`CHECKPOINTS_KEPT`]) and returns it MAC'd for the database.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_checkpoint(
        &mut self,
        stamp: PackageStamp,
        device_id: String,
        transaction: TransactionType,
        amount_mills: u64,
        registers: (u64, u64),
        package_digest: [u8; 32],
        now: i64,
    ) -> Result<SignedCheckpoint, ModuleError> {
        let mut totals = self
            .nvm
            .checkpoints
            .last()
            .map(|c| c.totals)
            .unwrap_or_default();
        let add = |t: u64| {
            t.checked_add(amount_mills).ok_or_else(|| {
                ModuleError::Internal("module totals overflow; the command was refused".into())
            })
        };
        match transaction {
            TransactionType::Download => totals.reset_mills = add(totals.reset_mills)?,
            TransactionType::Indicium
            | TransactionType::CorrectionIndicium
            | TransactionType::IndiciumBatch => totals.printed_mills = add(totals.printed_mills)?,
            TransactionType::RefundIndicium => totals.refunded_mills = add(totals.refunded_mills)?,
            _ => {}
        }
        let checkpoint = Checkpoint {
            version: CHECKPOINT_VERSION,
            module_id: self.nvm.module_id,
            seq: stamp.seq,
            device_id,
            transaction,
            amount_mills,
            ascending_mills: registers.0,
            descending_mills: registers.1,
            time: now,
            totals,
            package_digest,
        };
        let signed = checkpoint.sign(self.active_mks()?);
        self.nvm.checkpoint_counter = stamp.seq;
        self.nvm.checkpoints.push(checkpoint);
        let excess = self.nvm.checkpoints.len().saturating_sub(CHECKPOINTS_KEPT);
        self.nvm.checkpoints.drain(..excess);
        Ok(signed)
    }

    /// Seals `package` as the product of a new transaction and records its
    /// checkpoint: the common end of every package-changing PSD command.
    pub(super) fn commit_package(
        &mut self,
        package: &mut PsdPackage,
        transaction: TransactionType,
        amount_mills: u64,
        now: i64,
    ) -> Result<(SealedPackage, SignedCheckpoint), ModuleError> {
        let stamp = self.next_stamp();
        package.stamp = Some(stamp);
        package.last_transaction = Some(now);
        let sealed = self.seal_package(package)?;
        self.note_meter(package.device, stamp.seq);
        let checkpoint = self.record_checkpoint(
            stamp,
            package.device.to_string(),
            transaction,
            amount_mills,
            (package.ascending, package.descending),
            crate::checkpoint::package_digest(&sealed),
            now,
        )?;
        Ok((sealed, checkpoint))
    }

    /// Auto-Recover Checkpoint (seed 002): a controlled rollback to one of
    /// the two older checkpoints, auditing each discarded transaction. When
    /// none matches, PSD processing is inhibited until Accept Checkpoint.
    pub(super) fn cmd_auto_recover(
        &mut self,
        given: &SignedCheckpoint,
    ) -> Result<Outcome, ModuleError> {
        if let Some(why) = &self.nvm.psd_inhibited {
            return Err(ModuleError::Inhibited(why.clone()));
        }
        self.verify_checkpoint(given)?;
        let records = &self.nvm.checkpoints;
        let n = records.len();
        let found = records.iter().rposition(|c| *c == given.checkpoint);
        let keep = match found {
            Some(i) if i + 1 == n => {
                return Ok(Outcome::new(Response::CheckpointRecovered {
                    discarded: 0,
                    checkpoint: given.clone(),
                })
                .with("discarded", "0")
                .with("checkpoint", given.checkpoint.seq.to_string()));
            }
            Some(i) => i + 1,
            None => {
                let why = format!(
                    "Auto-Recover Checkpoint failed: the database's checkpoint {} ({} on {}) matches none of this module's {} most recent",
                    given.checkpoint.seq,
                    given.checkpoint.transaction,
                    given.checkpoint.device_id,
                    n
                );
                self.nvm.psd_inhibited = Some(why.clone());
                self.keep_on_error = true;
                return Err(ModuleError::Inhibited(why));
            }
        };
        let discarded: Vec<Checkpoint> = self.nvm.checkpoints.drain(keep..).collect();
        self.discard_after(given.checkpoint.seq);
        let mut out = Outcome::new(Response::CheckpointRecovered {
            discarded: discarded.len() as u32,
            checkpoint: given.clone(),
        })
        .with("discarded", discarded.len().to_string())
        .with("checkpoint", given.checkpoint.seq.to_string());
        out.force_sign = true;
        out.extra = discarded
            .iter()
            .map(|c| {
                (
                    "discarded".to_string(),
                    vec![
                        ("checkpoint", c.seq.to_string()),
                        ("device", c.device_id.clone()),
                        ("transaction", c.transaction.to_string()),
                        ("amount_mills", c.amount_mills.to_string()),
                        ("ascending_mills", c.ascending_mills.to_string()),
                        ("descending_mills", c.descending_mills.to_string()),
                        ("time", c.time.to_string()),
                    ],
                )
            })
            .collect();
        Ok(out)
    }

    /// Retrieve Checkpoint: the newest checkpoint, MAC'd.
    pub(super) fn cmd_retrieve_checkpoint(&self) -> Result<Outcome, ModuleError> {
        let signed = match self.nvm.checkpoints.last() {
            Some(c) => Some(c.sign(self.active_mks()?)),
            None => None,
        };
        Ok(Outcome::new(Response::Checkpoint(signed)))
    }

    /// Accept Checkpoint (Security Officer): the database's checkpoint
    /// becomes the module's only record and PSD processing resumes.
    pub(super) fn cmd_accept_checkpoint(
        &mut self,
        given: Option<&SignedCheckpoint>,
    ) -> Result<Outcome, ModuleError> {
        let before = self.nvm.psd_inhibited.take();
        let mut out = match given {
            Some(g) => {
                self.verify_checkpoint(g)?;
                let c = g.checkpoint.clone();
                self.discard_after(c.seq);
                self.nvm.checkpoint_counter = self.nvm.checkpoint_counter.max(c.seq);
                let out = Outcome::new(Response::Done)
                    .with("checkpoint", c.seq.to_string())
                    .with("device", c.device_id.clone());
                self.nvm.checkpoints = vec![c];
                out
            }
            None => {
                self.nvm.checkpoints.clear();
                self.nvm.recent_meters.clear();
                Outcome::new(Response::Done).with("checkpoint", "none")
            }
        };
        if let Some(why) = before {
            out = out.with("was_inhibited", why);
        }
        Ok(out)
    }
}
