-- The sweep ledger (SQLite). Column meanings are documented in src/store/mod.rs and the README.
-- Timestamps are RFC 3339 UTC text; JSON columns hold serde_json text.

CREATE TABLE IF NOT EXISTS sweeps (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    title       TEXT,
    description TEXT,
    file        TEXT,
    profile     TEXT,
    kind        TEXT,
    spec_json   TEXT,
    created_at  TEXT,
    updated_at  TEXT
);

CREATE TABLE IF NOT EXISTS trials (
    id               INTEGER PRIMARY KEY,
    hash             TEXT NOT NULL UNIQUE,
    config_json      TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    exit_status      INTEGER,
    device           TEXT,
    worker           TEXT,
    created_at       TEXT,
    started_at       TEXT,
    finished_at      TEXT,
    heartbeat_at     TEXT,
    wall_seconds     REAL,
    train_seconds    REAL,
    tokens_per_s     REAL,
    peak_rss_bytes   INTEGER,
    train_loss       REAL,
    valid_loss       REAL,
    test_loss        REAL,
    train_ppl        REAL,
    valid_ppl        REAL,
    test_ppl         REAL,
    valid_loss_fixed REAL,
    artifact_dir     TEXT,
    env_json         TEXT
);
CREATE INDEX IF NOT EXISTS trials_state ON trials(state);

CREATE TABLE IF NOT EXISTS sweep_trials (
    sweep_id    INTEGER NOT NULL REFERENCES sweeps(id),
    trial_id    INTEGER NOT NULL REFERENCES trials(id),
    position    INTEGER NOT NULL,
    label_json  TEXT,
    is_baseline INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sweep_id, trial_id)
);
CREATE INDEX IF NOT EXISTS sweep_trials_trial ON sweep_trials(trial_id);

CREATE TABLE IF NOT EXISTS metrics (
    id           INTEGER PRIMARY KEY,
    trial_id     INTEGER NOT NULL REFERENCES trials(id),
    step         INTEGER NOT NULL,
    epoch        REAL,
    split        TEXT NOT NULL,
    loss         REAL,
    ppl          REAL,
    tokens_seen  INTEGER,
    lr           REAL,
    tokens_per_s REAL,
    created_at   TEXT,
    UNIQUE (trial_id, split, step)
);

CREATE TABLE IF NOT EXISTS samples (
    id           INTEGER PRIMARY KEY,
    trial_id     INTEGER NOT NULL REFERENCES trials(id),
    title        TEXT,
    reference    TEXT,
    text         TEXT,
    params_json  TEXT,
    seed         INTEGER,
    uses_acronym INTEGER,
    created_at   TEXT
);
CREATE INDEX IF NOT EXISTS samples_trial ON samples(trial_id);
