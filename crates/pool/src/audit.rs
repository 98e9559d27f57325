//! The pool's audit sink: every entry goes durably to the module's own
//! `audit.log` first (the module's [`FileAuditSink`], as without a pool),
//! and only once that succeeded also into an in-memory buffer, from which
//! the member's caller takes `(seq, json line)` pairs to store elsewhere
//! (the server keeps them in its database).
use std::sync::{Arc, Mutex};

use postvault_audit::AuditEntry;
use postvault_module::audit_sink::{AuditSink, FileAuditSink};

/// Entries captured from one module, `(seq, json line)`, oldest first.
pub(crate) type Captured = Arc<Mutex<Vec<(u64, String)>>>;

/// A [`FileAuditSink`] that also captures what it stored.
pub(crate) struct CaptureSink {
    file: FileAuditSink,
    captured: Captured,
}

impl CaptureSink {
    /// Wraps `file`; stored entries are pushed to `captured`.
    pub(crate) fn new(file: FileAuditSink, captured: Captured) -> Self {
        Self { file, captured }
    }

    fn push(&self, entries: impl IntoIterator<Item = (u64, String)>) -> std::io::Result<()> {
        self.captured
            .lock()
            .map_err(|_| std::io::Error::other("audit capture lock poisoned"))?
            .extend(entries);
        Ok(())
    }
}

/// Takes everything captured so far.
pub(crate) fn drain(captured: &Captured) -> Vec<(u64, String)> {
    match captured.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        // A poisoned buffer still holds whole entries: take them.
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    }
}

impl AuditSink for CaptureSink {
    fn append(&mut self, entry: &AuditEntry) -> std::io::Result<()> {
        self.file.append(entry)?;
        self.push([(entry.seq, entry.to_json_line())])
    }

    fn append_all(&mut self, entries: &[AuditEntry]) -> std::io::Result<()> {
        let lines: Vec<String> = entries.iter().map(AuditEntry::to_json_line).collect();
        self.append_lines(entries, &lines)
    }

    fn append_lines(&mut self, entries: &[AuditEntry], lines: &[String]) -> std::io::Result<()> {
        self.file.append_lines(entries, lines)?;
        self.push(entries.iter().map(|e| e.seq).zip(lines.iter().cloned()))
    }

    fn last_hash(&mut self) -> std::io::Result<Option<[u8; 32]>> {
        self.file.last_hash()
    }
}
