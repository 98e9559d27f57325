//! Audit log files: JSON lines, one [`AuditEntry`] per line, oldest first.
//!
//! Each line is exactly what [`AuditEntry::to_json_line`] writes; lines end in
//! `\n` (a `\r\n` ending is also accepted when reading). Blank lines (empty or
//! only whitespace) are allowed only at the very end of a file, so a log
//! cannot hide a gap; one anywhere else is an error. Reading does not check
//! the chain; pass the entries to [`crate::verify_chain`] for that.

use crate::AuditEntry;

/// Everything that can go wrong reading a log file. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// A line is not a well-formed entry (bad JSON, a missing, unknown or
    /// repeated field, hex of the wrong length, ...).
    #[error("line {line}, column {column}: malformed audit entry: {message}")]
    Malformed {
        /// 1-based line number in the file.
        line: usize,
        /// 1-based column (in bytes) where the parser gave up, or 0 when unknown.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// A blank line before the last entry.
    #[error("line {line}: blank line before the last entry")]
    BlankLine {
        /// 1-based line number in the file.
        line: usize,
    },
}

impl LogError {
    /// The 1-based line number the error is about.
    pub fn line(&self) -> usize {
        match self {
            LogError::Malformed { line, .. } | LogError::BlankLine { line } => *line,
        }
    }
}

/// Parses a JSON-lines log. Trailing blank lines are ignored; an empty text
/// gives an empty list. The first malformed or misplaced blank line is
/// reported with its 1-based line number.
pub fn parse_log(text: &str) -> Result<Vec<AuditEntry>, LogError> {
    let lines: Vec<&str> = text.lines().collect();
    let used = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |last| last + 1);
    let mut entries = Vec::with_capacity(used);
    for (i, line) in lines[..used].iter().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() {
            return Err(LogError::BlankLine { line: number });
        }
        let entry = serde_json::from_str::<AuditEntry>(line).map_err(|e| LogError::Malformed {
            line: number,
            column: e.column(),
            message: strip_position(&e),
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Writes entries as a log: one [`AuditEntry::to_json_line`] per entry, each
/// followed by `\n`.
pub fn to_log_text(entries: &[AuditEntry]) -> String {
    let mut out = String::new();
    for entry in entries {
        out.push_str(&entry.to_json_line());
        out.push('\n');
    }
    out
}

/// serde_json appends " at line L column C" (always line 1 here, since a line
/// is parsed on its own); the log error reports the file's line instead.
fn strip_position(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match message.strip_suffix(&suffix) {
        Some(stripped) => stripped.to_string(),
        None => message,
    }
}
