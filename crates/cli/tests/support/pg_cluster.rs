//! A throwaway PostgreSQL cluster for the server tests, copied from the
//! store's test harness (`crates/store/tests/it/pg_cluster.rs`) without its
//! per-test databases: the one test that needs it uses the `postgres`
//! database.
//!
//! Started once (the first test that needs it) in a temporary directory,
//! reached only through a Unix socket in that directory (no TCP port, so no
//! clash with anything), with `fsync=off` (a test cluster).
//!
//! The cluster is run by a small shell supervisor whose standard input is a
//! pipe from this process: when the test binary exits, however it exits, the
//! pipe closes, and the supervisor stops the server and deletes the
//! directory. initdb refuses to run as root; when the tests run as root (CI
//! does), the supervisor runs as `nobody` through `setpriv`.
//!
//! If no PostgreSQL binaries are found the tests fail (never skip), saying
//! to run `scripts/test.sh`, which installs them.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

pub struct Cluster {
    socket_dir: PathBuf,
    // Held until the process exits: closing it stops the cluster.
    _supervisor: Mutex<(Child, ChildStdin)>,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The cluster, started on first use. Panics (fails the test) if it cannot
/// be started.
pub fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(start) {
        Ok(c) => c,
        Err(msg) => panic!("{msg}"),
    }
}

impl Cluster {
    /// The URL of the cluster's `postgres` database (a Unix socket, trust
    /// authentication).
    pub fn url(&self) -> String {
        format!(
            "postgres:///postgres?host={}&user=postgres",
            self.socket_dir.display()
        )
    }
}

/// Where initdb and pg_ctl are: on PATH, else the newest
/// /usr/lib/postgresql/N/bin.
fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has_both(&d) {
                return Some(d);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

/// The supervisor: sets up and starts the cluster, says `ready`, then waits
/// for its standard input to close, stops the server and deletes the
/// directory (also on any failure, through the trap).
const SUPERVISOR: &str = r#"
set -eu
bin=$1
dir=$2
trap 'rm -rf "$dir"' EXIT
if ! "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1; then
  cat "$dir/initdb.log" >&2
  exit 1
fi
if ! "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 \
     -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=off -c max_connections=200" \
     start >"$dir/pg_ctl.log" 2>&1; then
  cat "$dir/pg_ctl.log" "$dir/server.log" >&2
  exit 1
fi
echo ready
exec >/dev/null 2>&1
cat >/dev/null || true
"$bin/pg_ctl" -D "$dir/data" -m fast -w stop || true
"#;

fn id_of(flag: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, "nobody"])
        .output()
        .map_err(|e| format!("running id {flag} nobody: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("no user nobody to run PostgreSQL as (id {flag} nobody failed)"))
}

fn start() -> Result<Cluster, String> {
    let bin = find_bin_dir().ok_or_else(|| {
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under \
         /usr/lib/postgresql/*/bin: run scripts/test.sh, which installs them \
         (Debian package postgresql)"
            .to_string()
    })?;
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    // As root the cluster runs as nobody, who must be able to reach the
    // directory: fall back to /tmp if TMPDIR is not world-searchable.
    let mut parent = std::env::temp_dir();
    if is_root
        && std::fs::metadata(&parent)
            .map(|m| m.mode() & 0o001 == 0)
            .unwrap_or(true)
    {
        parent = PathBuf::from("/tmp");
    }
    let dir = tempfile::Builder::new()
        .prefix("postvault-pg-")
        .tempdir_in(&parent)
        .map_err(|e| format!("temporary directory: {e}"))?
        // From here on the supervisor deletes it.
        .keep();
    let mut cmd = if is_root {
        let (uid, gid) = (id_of("-u")?, id_of("-g")?);
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg("--")
            .arg("sh");
        c
    } else {
        Command::new("sh")
    };
    cmd.arg("-c")
        .arg(SUPERVISOR)
        .arg("postvault-pg-supervisor")
        .arg(&bin)
        .arg(&dir)
        // The server must not inherit the tests' locale or a PGDATA.
        .env_remove("PGDATA")
        .env("LC_ALL", "C")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting the PostgreSQL supervisor: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("reading the supervisor: {e}"))?;
    if line.trim() != "ready" {
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        let _ = child.wait();
        return Err(format!(
            "the test PostgreSQL cluster did not start (binaries in {}):\n{err}",
            bin.display()
        ));
    }
    Ok(Cluster {
        socket_dir: dir,
        _supervisor: Mutex::new((child, stdin)),
    })
}
