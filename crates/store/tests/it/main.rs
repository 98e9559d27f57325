//! The store's test suite: every test runs against both engines, SQLite (a
//! file in a temporary directory) and PostgreSQL (a throwaway cluster this
//! binary starts itself, see `pg_cluster`). One test body per behaviour in
//! `suite`, instantiated once per engine by `both!`, so the engines cannot
//! drift apart.

mod db;
mod pg_cluster;
mod sqlite_wal;
mod suite;

/// Instantiates each named test of `suite` once per engine, as
/// `sqlite::NAME` and `postgres::NAME`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    crate::suite::$name(crate::db::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    crate::suite::$name(crate::db::Backend::Postgres).await
                }
            )*
        }
    };
}

both!(
    migrations_are_idempotent,
    newer_schema_is_refused,
    open_store_parses_urls,
    meters_round_trip,
    reserving_meters,
    concurrent_reservations_get_different_meters,
    duplicate_device_id_is_refused,
    accounts_round_trip,
    duplicate_login_is_refused,
    failed_logons_lock_the_account,
    sessions_round_trip,
    commit_writes_everything,
    checkpoint_never_moves_backwards,
    duplicate_piece_in_batch_rolls_back_everything,
    duplicate_piece_against_stored_rolls_back,
    conflicting_audit_entry_rolls_back_commit,
    commit_refuses_unlocked_meter,
    amounts_beyond_i64_are_refused,
    lock_is_exclusive_across_handles,
    other_meters_and_rollback,
    dropped_tx_rolls_back,
    locking_a_missing_meter_fails_and_holds_nothing,
    provider_sequence_is_unique,
    audit_entries_read_back_in_order,
    data_survives_reopening,
    large_group_commit,
    concurrent_lockers_serialize,
    writers_on_one_handle_take_turns,
);
