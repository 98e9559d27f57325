//! A fresh database per test, on either engine, and record fixtures.

use std::path::PathBuf;
use std::sync::Arc;

use postvault_store::{
    Account, AuditRecord, LedgerEntry, Meter, ModuleCheckpoint, MoneyEntry, MoneyKind, PgStore,
    Session, SqliteStore, Store,
};
use tempfile::TempDir;

/// Which engine a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

enum Target {
    Sqlite { _dir: TempDir, path: PathBuf },
    Postgres { url: String },
}

/// One empty database for one test.
pub struct Db {
    target: Target,
}

impl Db {
    pub async fn new(backend: Backend) -> Db {
        let target = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                // A subdirectory that does not exist yet: open creates it.
                let path = dir.path().join("data").join("postvault.db");
                Target::Sqlite { _dir: dir, path }
            }
            Backend::Postgres => Target::Postgres {
                url: crate::pg_cluster::cluster().create_database().await,
            },
        };
        Db { target }
    }

    /// A new, independent handle on the database (its own connections).
    pub async fn open(&self) -> Arc<dyn Store> {
        self.try_open().await.expect("open the store")
    }

    pub async fn try_open(&self) -> postvault_store::Result<Arc<dyn Store>> {
        Ok(match &self.target {
            Target::Sqlite { path, .. } => Arc::new(SqliteStore::open(path)?),
            Target::Postgres { url } => Arc::new(PgStore::connect(url).await?),
        })
    }

    /// The store URL for `open_store`.
    pub fn url(&self) -> String {
        match &self.target {
            Target::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Target::Postgres { url } => url.clone(),
        }
    }

    /// The database file, on SQLite.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match &self.target {
            Target::Sqlite { path, .. } => Some(path),
            Target::Postgres { .. } => None,
        }
    }

    /// Runs SQL behind the store's back.
    pub async fn raw_exec(&self, sql: &str) {
        match &self.target {
            Target::Sqlite { path, .. } => {
                let c = rusqlite::Connection::open(path).expect("open raw");
                c.execute_batch(sql).expect("raw SQL");
            }
            Target::Postgres { url } => {
                let c = crate::pg_cluster::raw_client(url).await;
                c.batch_execute(sql).await.expect("raw SQL");
            }
        }
    }

    /// One integer from SQL run behind the store's back.
    pub async fn raw_i64(&self, sql: &str) -> i64 {
        match &self.target {
            Target::Sqlite { path, .. } => {
                let c = rusqlite::Connection::open(path).expect("open raw");
                c.query_row(sql, [], |r| r.get(0)).expect("raw SQL")
            }
            Target::Postgres { url } => {
                let c = crate::pg_cluster::raw_client(url).await;
                c.query_one(sql, &[]).await.expect("raw SQL").get(0)
            }
        }
    }
}

pub fn meter(device_id: &str, owner: Option<&str>) -> Meter {
    Meter {
        device_id: device_id.into(),
        owner: owner.map(Into::into),
        state: "Leased".into(),
        package: format!(r#"{{"device_id":"{device_id}","v":0}}"#),
        certificate: Some(vec![0x30, 0x82, 0x01, 0x00]),
        updated: 1_700_000_000,
    }
}

pub fn account(login: &str) -> Account {
    Account {
        login: login.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        role: "customer".into(),
        failed_logons: 0,
        locked: false,
        created: 1_700_000_000,
    }
}

pub fn session(token_byte: u8, login: &str, last_active: i64) -> Session {
    Session {
        token_hash: vec![token_byte; 32],
        login: login.into(),
        created: last_active,
        last_active,
    }
}

pub fn ledger(device_id: &str, piece: u64, account: Option<&str>, time: i64) -> LedgerEntry {
    LedgerEntry {
        device_id: device_id.into(),
        piece,
        account: account.map(Into::into),
        user_name: "clerk".into(),
        postage_mills: 730,
        ascending_mills: 730 * piece,
        descending_mills: 100_000 - 730 * piece,
        category: "FCM".into(),
        indicium: vec![piece as u8; 113],
        time,
    }
}

pub fn download(device_id: &str, amount: u64, seq: u64) -> MoneyEntry {
    MoneyEntry {
        device_id: device_id.into(),
        kind: MoneyKind::Download,
        amount_mills: amount,
        provider_seq: Some(seq),
        time: 1_700_000_100,
        reference: format!("order-{seq}"),
    }
}

pub fn checkpoint(module_id: &str, seq: u64) -> ModuleCheckpoint {
    ModuleCheckpoint {
        module_id: module_id.into(),
        checkpoint: format!(r#"{{"checkpoint":{{"seq":{seq}}},"mac":"00"}}"#),
        seq,
        time: 1_700_000_000 + seq as i64,
        value_mills: 730,
    }
}

pub fn audit(module_id: &str, seq: u64) -> AuditRecord {
    AuditRecord {
        module_id: module_id.into(),
        seq,
        line: format!(r#"{{"seq":{seq},"module":"{module_id}"}}"#),
    }
}
