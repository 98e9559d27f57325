//! The versioned migrations of each engine. Version N is the N-th entry;
//! a migration is never edited once released, only followed by a new one.

/// One migration: its version and its SQL.
pub(crate) struct Migration {
    /// The version it brings the schema to.
    pub version: i64,
    /// The SQL, run as one batch inside the migration transaction.
    pub sql: &'static str,
}

/// SQLite's migrations, oldest first.
pub(crate) const SQLITE: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("migrations/sqlite/0001_initial.sql"),
}];

/// PostgreSQL's migrations, oldest first.
pub(crate) const POSTGRES: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("migrations/postgres/0001_initial.sql"),
}];

/// The newest version (both engines move together).
pub(crate) const LATEST: i64 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_dense_and_agree() {
        for list in [SQLITE, POSTGRES] {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1);
            }
            assert_eq!(list.last().map(|m| m.version), Some(LATEST));
        }
    }
}
