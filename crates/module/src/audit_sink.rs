//! Where the host keeps audit entries: the module hands every entry to its
//! sink before the reply leaves (seed 002: storage of entries is the host's
//! job). One file holds one chain: a module that is reset and initialized
//! again starts a new file, and the previous chain is kept as `audit.log.N`.
//!
//! Nothing is handed out before its audit entry is durable: a command's
//! entries are in the NVM, written and synced before the reply, until the
//! next NVM write replaces them; and before that write the module calls
//! [`AuditSink::sync`], which returns once the sink holds them durably.
//! So [`FileAuditSink`] writes each command's lines into the file at once
//! (readers see them immediately) and leaves the `fdatasync` to a thread of
//! its own, which runs it while the module works on the next command.
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postvault_audit::AuditEntry;

use crate::worker::Worker;

/// File name of the audit log inside the module directory.
pub const AUDIT_LOG_FILE: &str = "audit.log";

/// Receives every audit entry, in order.
pub trait AuditSink: Send {
    /// Stores one entry; it is durable once [`Self::sync`] returns.
    fn append(&mut self, entry: &AuditEntry) -> std::io::Result<()>;
    /// Stores entries, in order (one sync for all where the sink can: group
    /// commit); they are durable once [`Self::sync`] returns.
    fn append_all(&mut self, entries: &[AuditEntry]) -> std::io::Result<()> {
        entries.iter().try_for_each(|e| self.append(e))
    }
    /// [`Self::append_all`] with each entry's JSON line already made
    /// (`lines[i]` is `entries[i].to_json_line()`), so a sink that writes
    /// lines need not encode them again.
    fn append_lines(&mut self, entries: &[AuditEntry], lines: &[String]) -> std::io::Result<()> {
        let _ = lines;
        self.append_all(entries)
    }
    /// Hash of the newest entry held, if any (boot uses it to hand over an
    /// entry that a power loss kept from the host).
    fn last_hash(&mut self) -> std::io::Result<Option<[u8; 32]>>;
    /// Returns once every entry stored so far is durable. The module calls
    /// it before every NVM write (which replaces the NVM's copy of the
    /// previous command's entries); an error stops that write. Sinks that
    /// store durably in `append` need not do anything.
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends entries as JSON lines to a file; syncs them on a thread of its
/// own, collected by [`AuditSink::sync`] (and when dropped).
pub struct FileAuditSink {
    path: PathBuf,
    file: Arc<File>,
    /// Runs the log's `fdatasync`s while the module goes on.
    syncer: Worker,
}

impl FileAuditSink {
    /// Opens (creating if needed) the log at `path` for appending.
    ///
    /// What a power loss left after the intact part (a torn last line, or
    /// a block of zeros where the last append did not reach the disk) is
    /// cut off, with every line after it: those entries were in the last
    /// append, which the NVM still holds, and the module hands them over
    /// again.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        if let Some(keep) = whole_lines_end(&mut file)? {
            file.set_len(keep)?;
            file.sync_data()?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(file),
            syncer: Worker::start("postvault-audit-sync")?,
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How far back [`whole_lines_end`] reads at a time.
const TAIL_CHUNK: u64 = 64 * 1024;

/// How much of the log's end [`whole_lines_end`] searches for a hole: more
/// than one command ever appends at once (a batch of 1,024 pieces writes
/// about 0.5 MB), since only the last append can be unsynced.
const HOLE_SCAN: u64 = 4 * 1024 * 1024;

/// Where the log's intact part ends, when something follows it that a
/// power loss left: a torn last line (no final newline), or a hole. A hole
/// is a block of the last append that never reached the disk while the
/// file's length did, read back as zeros; a NUL byte appears in no line
/// (JSON escapes control characters), so the log is cut at the start of
/// the line holding the first one in its last [`HOLE_SCAN`] bytes, lines
/// after it included. Everything cut was in the last append, whose entries
/// the NVM still holds: boot hands them over again. `None` when the log is
/// empty or intact. Reads only the end of the log.
fn whole_lines_end(f: &mut File) -> std::io::Result<Option<u64>> {
    let len = f.metadata()?.len();
    let start = len.saturating_sub(HOLE_SCAN);
    let mut window = vec![0u8; (len - start) as usize];
    f.seek(SeekFrom::Start(start))?;
    f.read_exact(&mut window)?;
    let hole = window.iter().position(|&b| b == 0);
    let intact = &window[..hole.unwrap_or(window.len())];
    if hole.is_none() && intact.last().is_none_or(|&b| b == b'\n') {
        return Ok(None);
    }
    if let Some(i) = intact.iter().rposition(|&b| b == b'\n') {
        return Ok(Some(start + i as u64 + 1));
    }
    // No newline in the window before the damage: look further back, a
    // chunk at a time.
    let mut end = start;
    let mut chunk = Vec::new();
    while end > 0 {
        let from = end.saturating_sub(TAIL_CHUNK);
        chunk.resize((end - from) as usize, 0);
        f.seek(SeekFrom::Start(from))?;
        f.read_exact(&mut chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(from + i as u64 + 1));
        }
        end = from;
    }
    Ok(Some(0))
}

impl FileAuditSink {
    /// A new chain (after Start Initialization, e.g. following a Reset)
    /// starts a new file; the old chain is kept beside it as `audit.log.N`.
    fn rotate_if_new_chain(&mut self, entry: &AuditEntry) -> std::io::Result<()> {
        if entry.seq != 0 || self.file.metadata()?.len() == 0 {
            return Ok(());
        }
        // The old chain is whole and durable before it is put aside.
        self.syncer.wait()?;
        let mut n = 1u32;
        let rotated = loop {
            let candidate = self.path.with_extension(format!("log.{n}"));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        std::fs::rename(&self.path, &rotated)?;
        self.file = Arc::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        Ok(())
    }

    /// Writes `text` at the end of the log and asks for its sync.
    fn write(&mut self, text: &[u8]) -> std::io::Result<()> {
        (&*self.file).write_all(text)?;
        let file = Arc::clone(&self.file);
        self.syncer.submit(Box::new(move || file.sync_data()))
    }
}

impl AuditSink for FileAuditSink {
    fn sync(&mut self) -> std::io::Result<()> {
        self.syncer.wait()
    }

    fn last_hash(&mut self) -> std::io::Result<Option<[u8; 32]>> {
        // Only the tail is read: an entry line is far shorter than 64 KiB.
        let mut f = File::open(&self.path)?;
        let len = f.metadata()?.len();
        let start = len.saturating_sub(64 * 1024);
        f.seek(SeekFrom::Start(start))?;
        let mut tail = String::new();
        f.read_to_string(&mut tail)?;
        let Some(line) = tail.lines().rev().find(|l| !l.trim().is_empty()) else {
            return Ok(None);
        };
        match AuditEntry::from_json_line(line) {
            Ok(e) => Ok(Some(e.hash())),
            // A torn last line (power loss mid-write) does not hold the entry.
            Err(_) => Ok(None),
        }
    }

    fn append(&mut self, entry: &AuditEntry) -> std::io::Result<()> {
        self.rotate_if_new_chain(entry)?;
        let mut line = entry.to_json_line();
        line.push('\n');
        self.write(line.as_bytes())
    }

    fn append_all(&mut self, entries: &[AuditEntry]) -> std::io::Result<()> {
        let lines: Vec<String> = entries.iter().map(AuditEntry::to_json_line).collect();
        self.append_lines(entries, &lines)
    }

    fn append_lines(&mut self, entries: &[AuditEntry], lines: &[String]) -> std::io::Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if lines.len() != entries.len() {
            return Err(std::io::Error::other(
                "audit lines do not match the entries",
            ));
        }
        self.rotate_if_new_chain(first)?;
        let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        self.write(text.as_bytes())
    }
}

/// Keeps entries in memory (for hosts that store them elsewhere, and tests).
#[derive(Default)]
pub struct MemoryAuditSink(pub std::sync::Arc<std::sync::Mutex<Vec<AuditEntry>>>);

impl AuditSink for MemoryAuditSink {
    fn last_hash(&mut self) -> std::io::Result<Option<[u8; 32]>> {
        let v = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("audit sink lock poisoned"))?;
        Ok(v.last().map(AuditEntry::hash))
    }

    fn append(&mut self, entry: &AuditEntry) -> std::io::Result<()> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("audit sink lock poisoned"))?
            .push(entry.clone());
        Ok(())
    }
}

/// Entries captured from one module, `(seq, json line)`, oldest first.
pub type Captured = std::sync::Arc<std::sync::Mutex<Vec<(u64, String)>>>;

/// Takes everything captured so far.
pub fn drain(captured: &Captured) -> Vec<(u64, String)> {
    match captured.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        // A poisoned buffer still holds whole entries: take them.
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    }
}

/// A [`FileAuditSink`] that also captures what it stored: every entry goes
/// to the module's own `audit.log` first (synced like any [`FileAuditSink`]
/// line, the NVM holding it meanwhile), and only once that write succeeded
/// also into an in-memory buffer, from which the host takes
/// `(seq, json line)` pairs to store elsewhere (the postal server keeps
/// them in its database). The module pool uses it for in-process members,
/// and `postvault module serve` to send each command's entries back with
/// its answer.
pub struct CaptureSink {
    file: FileAuditSink,
    captured: Captured,
}

impl CaptureSink {
    /// Wraps `file`; stored entries are pushed to `captured`.
    pub fn new(file: FileAuditSink, captured: Captured) -> Self {
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

    fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> AuditEntry {
        AuditEntry {
            seq,
            prev_hash: [0; 32],
            module_id: "m".into(),
            command: "c".into(),
            user_id: None,
            role: None,
            current_state: "Operational".into(),
            persistent_state: "Operational".into(),
            time: 1,
            reason: "ok".into(),
            data: Default::default(),
            signature: None,
        }
    }

    /// A new log in a temporary directory (kept alive by the caller).
    fn new_log() -> (tempfile::TempDir, PathBuf, FileAuditSink) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_LOG_FILE);
        let sink = FileAuditSink::open(&path).unwrap();
        (dir, path, sink)
    }

    #[test]
    fn a_new_chain_starts_a_new_file_and_keeps_the_old_one() {
        let (_dir, path, mut sink) = new_log();
        for seq in 0..3 {
            sink.append(&entry(seq)).unwrap();
        }
        sink.append(&entry(0)).unwrap();
        let current = postvault_audit::parse_log(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(current.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0]);
        let old = postvault_audit::parse_log(
            &std::fs::read_to_string(path.with_extension("log.1")).unwrap(),
        )
        .unwrap();
        assert_eq!(old.len(), 3);
    }

    #[test]
    fn appended_lines_are_in_the_file_before_the_sync_and_sync_waits_for_it() {
        let (_dir, path, mut sink) = new_log();
        sink.append_all(&[entry(0), entry(1)]).unwrap();
        sink.append(&entry(2)).unwrap();
        // Readers (the auditor's verify, boot's last_hash) see them at once.
        let log = postvault_audit::parse_log(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(sink.syncer.in_flight, 2, "one sync asked for per append");
        sink.sync().unwrap();
        assert_eq!(sink.syncer.in_flight, 0, "sync collected every answer");
        assert_eq!(sink.last_hash().unwrap(), Some(entry(2).hash()));
    }

    #[test]
    fn a_torn_line_longer_than_a_read_is_cut_back_to_the_last_whole_one() {
        let (_dir, path, mut sink) = new_log();
        sink.append(&entry(0)).unwrap();
        drop(sink);
        let whole = std::fs::metadata(&path).unwrap().len();
        // A torn tail of two and a half chunks, without a newline.
        let mut text = std::fs::read(&path).unwrap();
        text.extend(std::iter::repeat_n(b'x', (TAIL_CHUNK * 5 / 2) as usize));
        std::fs::write(&path, &text).unwrap();
        let mut sink = FileAuditSink::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        assert_eq!(sink.last_hash().unwrap(), Some(entry(0).hash()));
        drop(sink);
        // Nothing whole at all: the log is emptied.
        std::fs::write(&path, vec![b'y'; (TAIL_CHUNK + 5) as usize]).unwrap();
        drop(FileAuditSink::open(&path).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        // A whole log is left as it is.
        std::fs::write(&path, b"a\nb\n").unwrap();
        drop(FileAuditSink::open(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"a\nb\n");
    }

    /// A hole (zeros where a block of the last append never reached the
    /// disk) is cut with every line after it, wherever it starts in the
    /// line; intact lines before it stay.
    #[test]
    fn a_hole_of_zeros_is_cut_with_the_lines_after_it() {
        let (_dir, path, mut sink) = new_log();
        for seq in 0..6 {
            sink.append(&entry(seq)).unwrap();
        }
        drop(sink);
        let whole = std::fs::read(&path).unwrap();
        let starts: Vec<usize> = std::iter::once(0)
            .chain(
                whole
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        // Zeros from the middle of line 3 into line 4, over the first byte
        // of line 3, and over the newline that ends line 4; the lines after
        // them are whole, as if their blocks had reached the disk.
        for (from, to) in [
            (starts[3] + 10, starts[4] + 20),
            (starts[3], starts[3] + 1),
            (starts[5] - 1, starts[5]),
        ] {
            let mut damaged = whole.clone();
            damaged[from..to].fill(0);
            std::fs::write(&path, &damaged).unwrap();
            let mut sink = FileAuditSink::open(&path).unwrap();
            let kept = std::fs::read(&path).unwrap();
            let cut = if from >= starts[4] {
                starts[4]
            } else {
                starts[3]
            };
            assert_eq!(kept, whole[..cut], "zeros at {from}..{to}");
            let last = if cut == starts[4] { 3 } else { 2 };
            assert_eq!(sink.last_hash().unwrap(), Some(entry(last).hash()));
            // The entries cut go on after the last intact one.
            sink.append_all(&(last + 1..6).map(entry).collect::<Vec<_>>())
                .unwrap();
            drop(sink);
            assert_eq!(std::fs::read(&path).unwrap(), whole);
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_and_last_hash_sees_the_last_whole_entry() {
        let (_dir, path, mut sink) = new_log();
        sink.append(&entry(0)).unwrap();
        sink.append(&entry(1)).unwrap();
        assert_eq!(sink.last_hash().unwrap(), Some(entry(1).hash()));
        drop(sink);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"seq\":2,\"prev_h");
        std::fs::write(&path, &text).unwrap();
        let mut sink = FileAuditSink::open(&path).unwrap();
        assert_eq!(sink.last_hash().unwrap(), Some(entry(1).hash()));
        sink.append(&entry(2)).unwrap();
        let log = postvault_audit::parse_log(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
    }
}
