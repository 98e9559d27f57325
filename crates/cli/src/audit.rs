//! `postvault audit ...`: the auditor's offline check of a module's audit log.
use std::process::ExitCode;

use anyhow::{Context, Result};
use postvault_audit::{parse_log, verify_chain};
use postvault_crypto::ecdsa::public_key_from_pem;

use crate::cli::AuditCommand;
use crate::outln;
use crate::output::read_text;

/// Runs one `postvault audit` command.
pub fn run(cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { log, key } => {
            let key = public_key_from_pem(&read_text(&key)?).with_context(|| {
                format!(
                    "{} is not an audit verification key (a P-256 public key in PEM, from `postvault module audit-key`)",
                    key.display()
                )
            })?;
            let entries = parse_log(&read_text(&log)?)
                .with_context(|| format!("cannot parse the audit log {}", log.display()))?;
            match verify_chain(&entries, &key) {
                Ok(report) => {
                    outln!("{report}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(failure) => {
                    outln!("audit log FAILED: {failure}");
                    if failure.seq.is_some() {
                        outln!("(line {} of {})", failure.index + 1, log.display());
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
