//! PSD commands that move value besides Create Indicium: Create Refund
//! Indicium (seed 002: withdrawal), Create Indicia (a batch of Create
//! Indicium with one NVM write, one audit sync and one checkpoint: group
//! commit), and Retrieve PSD Status.
use super::psd_commands::PIECE_DRAW;
use super::*;
use crate::checkpoint::{SignedCheckpoint, TransactionType};
use crate::psd::{IndiciumItem, IssuedIndicium};

/// The most items one Create Indicia batch may carry.
pub const MAX_BATCH_ITEMS: usize = 1024;

/// The most packages kept between Create Indicia batches (as many as the
/// signing keys kept).
const PACKAGE_CACHE: usize = 4096;

impl Module {
    /// Create Refund Indicium (seed 002; provider-signed, leased or password
    /// reset): the same checks as an indicium with the provider in place of
    /// the customer; an indicium of category `RFND` for the whole remaining
    /// DR, AR += DR, DR = 0, and the package is withdrawn for good.
    pub(super) fn cmd_refund(
        &mut self,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
        message: &ProviderMessage,
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        use postvault_indicium::{Indicium, MailCategory, MailingDate, Zip4};
        let mut package = self.open_provider_command(
            PsdCommandKind::CreateRefundIndicium,
            sealed,
            checkpoint,
            message,
        )?;
        let ProviderCommand::Refund { date } = message.body.command else {
            return Err(ModuleError::Invalid(
                "the provider message is not a Create Refund Indicium command".into(),
            ));
        };
        let device_id = package.device.to_string();
        let date = MailingDate::from_u32(date)
            .map_err(|e| ModuleError::Invalid(format!("date of the refund {date}: {e}")))?;
        package.check_registers()?;
        let refund = package.descending;
        let licensing_zip = package.licensing_zip.ok_or_else(|| {
            ModuleError::Internal(format!("leased PSD {device_id} has no licensing ZIP"))
        })?;
        let origin = Zip4::from_u32(licensing_zip)
            .map_err(|e| ModuleError::Internal(format!("PSD {device_id}: licensing ZIP: {e}")))?;
        let certificate_serial = package.certificate_serial.ok_or_else(|| {
            ModuleError::Internal(format!("leased PSD {device_id} has no certificate serial"))
        })?;
        let postage = u32::try_from(refund).map_err(|_| {
            ModuleError::Internal(format!("PSD {device_id}: DR {refund} does not fit"))
        })?;
        package.descending = 0;
        package.ascending = package.control_total;
        package.piece_count = package.piece_count.checked_add(1).ok_or_else(|| {
            ModuleError::Internal(format!("PSD {device_id}: piece counter overflow"))
        })?;
        package.check_registers()?;
        let mut indicium = Indicium {
            certificate_serial,
            device: package.device.into(),
            ascending_register: package.ascending,
            postage,
            date,
            origin,
            software_id: psd::SOFTWARE_ID,
            destination: Zip4::from_u32(0)
                .map_err(|e| ModuleError::Internal(format!("destination: {e}")))?,
            piece_counter: package.piece_count,
            descending_register: 0,
            category: MailCategory::REFUND,
            signature: [0; postvault_indicium::SIGNATURE_LEN],
        };
        let bytes = self.sign_indicium(&package, &mut indicium, now)?;
        package.state = PsdState::Withdrawn;
        package.reset_user = None;
        package.last_provider_sequence = message.body.sequence;
        let (out, checkpoint) =
            self.commit_package(&mut package, TransactionType::RefundIndicium, refund, now)?;
        Ok(Outcome::new(Response::RefundIndiciumCreated {
            package: out,
            checkpoint,
            indicium: bytes,
            refunded_mills: refund,
        })
        .with("device", device_id)
        .with("refunded_mills", refund.to_string())
        .with("ascending_mills", package.ascending.to_string())
        .with("piece", package.piece_count.to_string())
        .with("sequence", message.body.sequence.to_string())
        .with("state", package.state.to_string()))
    }

    /// Retrieve PSD Status: the registers and state; changes nothing but
    /// its audit entry (issue 3: every PSD command is audited).
    pub(super) fn cmd_retrieve_psd_status(
        &self,
        sealed: &SealedPackage,
        checkpoint: Option<&SignedCheckpoint>,
    ) -> Result<Outcome, ModuleError> {
        let package = self.open_package(PsdCommandKind::RetrievePsdStatus, sealed, checkpoint)?;
        let status = package.status();
        let device_id = status.device_id.clone();
        let state = status.state.to_string();
        Ok(Outcome::new(Response::PsdStatus(status))
            .with("device", device_id)
            .with("state", state))
    }

    /// Create Indicia: Create Indicium for each item, with one checkpoint,
    /// one NVM write and one audit sync for the whole batch. Each item is
    /// checked and refused on its own (a refused item changes nothing and
    /// gets its own audit entry); a meter may appear once per batch (its
    /// next request needs the challenge this one returns).
    pub(super) fn cmd_create_indicia(
        &mut self,
        checkpoint: Option<&SignedCheckpoint>,
        items: &[IndiciumItem],
        now: i64,
    ) -> Result<Outcome, ModuleError> {
        if items.is_empty() || items.len() > MAX_BATCH_ITEMS {
            return Err(ModuleError::Invalid(format!(
                "a Create Indicia batch carries 1 to {MAX_BATCH_ITEMS} items, not {}",
                items.len()
            )));
        }
        self.check_checkpoint(checkpoint)?;
        let stamp = self.next_stamp();
        let mut results = Vec::with_capacity(items.len());
        let mut extra = Vec::with_capacity(items.len());
        let mut seen: std::collections::HashSet<&str> =
            std::collections::HashSet::with_capacity(items.len());
        let mut digest = Vec::with_capacity(items.len() * 32);
        let mut total: u64 = 0;
        let mut last = None;
        let mut devices = Vec::new();
        // Every piece's challenge and nonce in one draw from the generator.
        let mut draws = vec![0u8; items.len() * PIECE_DRAW];
        self.rng.fill(&mut draws)?;
        for (item, draw) in items.iter().zip(draws.chunks_exact(PIECE_DRAW)) {
            let draw: [u8; PIECE_DRAW] = draw.try_into().expect("chunks of PIECE_DRAW bytes");
            let result = if seen.insert(&item.package.device_id) {
                self.batch_item(item, stamp, draw, now)
            } else {
                Err(ModuleError::Invalid(format!(
                    "meter {} appears twice in one batch; send its next piece with the challenge this batch returns",
                    item.package.device_id
                )))
            };
            match result {
                Ok((issued, audit, registers, device)) => {
                    total = total
                        .checked_add(item.request.postage_mills)
                        .ok_or_else(|| ModuleError::Internal("batch total overflow".into()))?;
                    digest.extend_from_slice(&crate::checkpoint::package_digest(&issued.package));
                    last = Some((&item.package.device_id, registers));
                    devices.push(device);
                    extra.push(("ok".to_string(), audit));
                    results.push(Ok(issued));
                }
                // A failing self-test stops the module whatever the item.
                Err(e @ ModuleError::SelfTest(_)) => return Err(e),
                Err(e) => {
                    extra.push((
                        e.reason_code().to_string(),
                        vec![
                            ("device", item.package.device_id.clone()),
                            ("user", item.request.user_id.clone()),
                            ("error", e.to_string()),
                        ],
                    ));
                    results.push(Err(e));
                }
            }
        }
        let issued = results.iter().filter(|r| r.is_ok()).count();
        for device in devices {
            self.note_meter(device, stamp.seq);
        }
        let checkpoint = match last {
            None => None,
            Some((device, registers)) => {
                let device_id = if issued == 1 {
                    device.clone()
                } else {
                    format!("batch of {issued} meters")
                };
                Some(self.record_checkpoint(
                    stamp,
                    device_id,
                    TransactionType::IndiciumBatch,
                    total,
                    registers,
                    hash::sha256(&[&digest]),
                    now,
                )?)
            }
        };
        let mut out = Outcome::new(Response::IndiciaCreated {
            results,
            checkpoint,
        })
        .with("items", items.len().to_string())
        .with("issued", issued.to_string())
        .with("refused", (items.len() - issued).to_string())
        .with("total_mills", total.to_string());
        out.extra = extra;
        Ok(out)
    }

    /// One batch item: open, check and issue; the package is sealed with the
    /// batch's stamp. Nothing in the module changes if it fails.
    fn batch_item(
        &mut self,
        item: &IndiciumItem,
        stamp: psd::PackageStamp,
        draw: [u8; PIECE_DRAW],
        now: i64,
    ) -> Result<(IssuedIndicium, AuditData, (u64, u64), DeviceId), ModuleError> {
        let mut package = self.take_package(&item.package)?;
        psd::check_psd_allowed(PsdCommandKind::CreateIndicium, package.state)?;
        self.check_stamp(&package)?;
        let piece = self.issue_indicium(&mut package, &item.request, false, draw, now)?;
        package.stamp = Some(stamp);
        package.last_transaction = Some(now);
        let sealed = self.seal_package_with_nonce(&package, piece.nonce)?;
        let registers = (package.ascending, package.descending);
        let device = package.device;
        self.keep_package(&sealed, package);
        Ok((
            IssuedIndicium {
                package: sealed,
                indicium: piece.indicium,
                old_challenge: piece.old_challenge,
                new_challenge: piece.new_challenge,
                mac: piece.mac,
            },
            piece.audit,
            registers,
            device,
        ))
    }

    /// The package `sealed` holds: the one this module kept when it sealed
    /// exactly these bytes (so they need not be opened again), else opened
    /// and authenticated under the MKS. Either way the copy kept is gone:
    /// a package is used once, by the command that takes it.
    fn take_package(&mut self, sealed: &SealedPackage) -> Result<PsdPackage, ModuleError> {
        if let Some((kept, package)) = self.packages.remove(&sealed.device_id)
            && kept == *sealed
        {
            return Ok(package);
        }
        PsdPackage::open(
            sealed,
            self.nvm.mks_active.as_ref(),
            self.nvm.mks_dormant.as_ref(),
        )
    }

    /// Keeps `package`, just sealed as `sealed`, for [`Self::take_package`].
    fn keep_package(&mut self, sealed: &SealedPackage, package: PsdPackage) {
        if !self.packages.contains_key(&sealed.device_id) && self.packages.len() >= PACKAGE_CACHE {
            self.packages.clear();
        }
        self.packages
            .insert(sealed.device_id.clone(), (sealed.clone(), package));
    }
}
