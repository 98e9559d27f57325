-- postvault store, PostgreSQL schema version 1.
-- Times are Unix seconds; amounts are integer mills; packages, checkpoints
-- and audit entries are the serialized (JSON) values, kept byte for byte
-- (TEXT, not JSONB, which would rewrite them).

-- Operator and customer accounts. password_hash is an Argon2id PHC string.
CREATE TABLE accounts (
    login          TEXT    NOT NULL PRIMARY KEY,
    password_hash  TEXT    NOT NULL,
    role           TEXT    NOT NULL,
    failed_logons  BIGINT  NOT NULL DEFAULT 0 CHECK (failed_logons >= 0),
    locked         BOOLEAN NOT NULL DEFAULT FALSE,
    created        BIGINT  NOT NULL
);

-- Logged-on sessions, keyed by a hash of the token (never the token).
CREATE TABLE sessions (
    token_hash   BYTEA  NOT NULL PRIMARY KEY,
    login        TEXT   NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
    created      BIGINT NOT NULL,
    last_active  BIGINT NOT NULL
);
CREATE INDEX sessions_last_active ON sessions (last_active);

-- One row per PSD: its sealed package and the plain fields the server needs.
CREATE TABLE meters (
    device_id    TEXT   NOT NULL PRIMARY KEY,
    owner        TEXT   REFERENCES accounts (login),
    state        TEXT   NOT NULL,
    package      TEXT   NOT NULL,
    certificate  BYTEA,
    updated      BIGINT NOT NULL
);
CREATE INDEX meters_owner ON meters (owner);

-- The module table of the seed: each module's newest MAC'd checkpoint.
CREATE TABLE module_checkpoints (
    module_id    TEXT   NOT NULL PRIMARY KEY,
    checkpoint   TEXT   NOT NULL,
    seq          BIGINT NOT NULL CHECK (seq >= 0),
    time         BIGINT NOT NULL,
    value_mills  BIGINT NOT NULL CHECK (value_mills >= 0)
);

-- The audit file server: every module's entries, one JSON line each.
CREATE TABLE audit_entries (
    module_id  TEXT   NOT NULL,
    seq        BIGINT NOT NULL CHECK (seq >= 0),
    line       TEXT   NOT NULL,
    PRIMARY KEY (module_id, seq)
);

-- One row per issued indicium.
CREATE TABLE ledger (
    device_id         TEXT   NOT NULL REFERENCES meters (device_id),
    piece             BIGINT NOT NULL CHECK (piece >= 0),
    account           TEXT,
    user_name         TEXT   NOT NULL,
    postage_mills     BIGINT NOT NULL CHECK (postage_mills >= 0),
    ascending_mills   BIGINT NOT NULL CHECK (ascending_mills >= 0),
    descending_mills  BIGINT NOT NULL CHECK (descending_mills >= 0),
    category          TEXT   NOT NULL,
    indicium          BYTEA  NOT NULL,
    time              BIGINT NOT NULL,
    PRIMARY KEY (device_id, piece)
);
CREATE INDEX ledger_account ON ledger (account, time);

-- Value downloads and refunds.
CREATE TABLE money (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id     TEXT   NOT NULL REFERENCES meters (device_id),
    kind          TEXT   NOT NULL CHECK (kind IN ('download', 'refund')),
    amount_mills  BIGINT NOT NULL CHECK (amount_mills >= 0),
    provider_seq  BIGINT CHECK (provider_seq >= 0),
    time          BIGINT NOT NULL,
    reference     TEXT   NOT NULL,
    UNIQUE (device_id, kind, provider_seq)
);
