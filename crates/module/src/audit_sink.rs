//! Where the host keeps audit entries: the module hands every entry to its
//! sink before the reply leaves, so nothing is handed out before its audit
//! entry is durable (seed 002: storage of entries is the host's job).
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use postvault_audit::AuditEntry;

/// File name of the audit log inside the module directory.
pub const AUDIT_LOG_FILE: &str = "audit.log";

/// Receives every audit entry, in order.
pub trait AuditSink: Send {
    /// Stores one entry durably.
    fn append(&mut self, entry: &AuditEntry) -> std::io::Result<()>;
}

/// Appends entries as JSON lines to a file and syncs each one.
pub struct FileAuditSink {
    path: PathBuf,
    file: File,
}

impl FileAuditSink {
    /// Opens (creating if needed) the log at `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditSink for FileAuditSink {
    fn append(&mut self, entry: &AuditEntry) -> std::io::Result<()> {
        let mut line = entry.to_json_line();
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()
    }
}

/// Keeps entries in memory (for hosts that store them elsewhere, and tests).
#[derive(Default)]
pub struct MemoryAuditSink(pub std::sync::Arc<std::sync::Mutex<Vec<AuditEntry>>>);

impl AuditSink for MemoryAuditSink {
    fn append(&mut self, entry: &AuditEntry) -> std::io::Result<()> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("audit sink lock poisoned"))?
            .push(entry.clone());
        Ok(())
    }
}
