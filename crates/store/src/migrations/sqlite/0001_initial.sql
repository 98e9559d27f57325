-- postvault store, SQLite schema version 1.
-- Times are Unix seconds; amounts are integer mills; packages, checkpoints
-- and audit entries are the serialized (JSON) values, kept byte for byte.

-- Operator and customer accounts. password_hash is an Argon2id PHC string.
CREATE TABLE accounts (
    login          TEXT    NOT NULL PRIMARY KEY,
    password_hash  TEXT    NOT NULL,
    role           TEXT    NOT NULL,
    failed_logons  INTEGER NOT NULL DEFAULT 0 CHECK (failed_logons >= 0),
    locked         INTEGER NOT NULL DEFAULT 0 CHECK (locked IN (0, 1)),
    created        INTEGER NOT NULL
) STRICT;

-- Logged-on sessions, keyed by a hash of the token (never the token).
CREATE TABLE sessions (
    token_hash   BLOB    NOT NULL PRIMARY KEY,
    login        TEXT    NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    created      INTEGER NOT NULL,
    last_active  INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_last_active ON sessions (last_active);

-- One row per PSD: its sealed package and the plain fields the server needs.
CREATE TABLE meters (
    device_id    TEXT    NOT NULL PRIMARY KEY,
    owner        TEXT    REFERENCES accounts (login),
    state        TEXT    NOT NULL,
    package      TEXT    NOT NULL,
    certificate  BLOB,
    updated      INTEGER NOT NULL
) STRICT;
CREATE INDEX meters_owner ON meters (owner);

-- The module table of the seed: each module's newest MAC'd checkpoint.
CREATE TABLE module_checkpoints (
    module_id    TEXT    NOT NULL PRIMARY KEY,
    checkpoint   TEXT    NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq >= 0),
    time         INTEGER NOT NULL,
    value_mills  INTEGER NOT NULL CHECK (value_mills >= 0)
) STRICT;

-- The audit file server: every module's entries, one JSON line each.
CREATE TABLE audit_entries (
    module_id  TEXT    NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 0),
    line       TEXT    NOT NULL,
    PRIMARY KEY (module_id, seq)
) STRICT, WITHOUT ROWID;

-- One row per issued indicium.
CREATE TABLE ledger (
    device_id         TEXT    NOT NULL REFERENCES meters (device_id),
    piece             INTEGER NOT NULL CHECK (piece >= 0),
    account           TEXT,
    user_name         TEXT    NOT NULL,
    postage_mills     INTEGER NOT NULL CHECK (postage_mills >= 0),
    ascending_mills   INTEGER NOT NULL CHECK (ascending_mills >= 0),
    descending_mills  INTEGER NOT NULL CHECK (descending_mills >= 0),
    category          TEXT    NOT NULL,
    indicium          BLOB    NOT NULL,
    time              INTEGER NOT NULL,
    PRIMARY KEY (device_id, piece)
) STRICT;
CREATE INDEX ledger_account ON ledger (account, time);

-- Value downloads and refunds.
CREATE TABLE money (
    id            INTEGER NOT NULL PRIMARY KEY,
    device_id     TEXT    NOT NULL REFERENCES meters (device_id),
    kind          TEXT    NOT NULL CHECK (kind IN ('download', 'refund')),
    amount_mills  INTEGER NOT NULL CHECK (amount_mills >= 0),
    provider_seq  INTEGER CHECK (provider_seq >= 0),
    time          INTEGER NOT NULL,
    reference     TEXT    NOT NULL,
    UNIQUE (device_id, kind, provider_seq)
) STRICT;
