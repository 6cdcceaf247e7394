-- The sweep ledger (PostgreSQL): the same tables and columns as migrations/sqlite, Postgres types. Column meanings are documented in src/store/mod.rs and the README.
-- Timestamps are RFC 3339 UTC text; JSON columns hold serde_json text.

CREATE TABLE IF NOT EXISTS sweeps (
    id          BIGSERIAL PRIMARY KEY,
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
    id               BIGSERIAL PRIMARY KEY,
    hash             TEXT NOT NULL UNIQUE,
    config_json      TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         BIGINT NOT NULL DEFAULT 0,
    error            TEXT,
    exit_status      BIGINT,
    device           TEXT,
    worker           TEXT,
    created_at       TEXT,
    started_at       TEXT,
    finished_at      TEXT,
    heartbeat_at     TEXT,
    wall_seconds     DOUBLE PRECISION,
    train_seconds    DOUBLE PRECISION,
    tokens_per_s     DOUBLE PRECISION,
    peak_rss_bytes   BIGINT,
    train_loss       DOUBLE PRECISION,
    valid_loss       DOUBLE PRECISION,
    test_loss        DOUBLE PRECISION,
    train_ppl        DOUBLE PRECISION,
    valid_ppl        DOUBLE PRECISION,
    test_ppl         DOUBLE PRECISION,
    valid_loss_fixed DOUBLE PRECISION,
    artifact_dir     TEXT,
    env_json         TEXT
);
CREATE INDEX IF NOT EXISTS trials_state ON trials(state);

CREATE TABLE IF NOT EXISTS sweep_trials (
    sweep_id    BIGINT NOT NULL REFERENCES sweeps(id),
    trial_id    BIGINT NOT NULL REFERENCES trials(id),
    position    BIGINT NOT NULL,
    label_json  TEXT,
    is_baseline BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (sweep_id, trial_id)
);
CREATE INDEX IF NOT EXISTS sweep_trials_trial ON sweep_trials(trial_id);

CREATE TABLE IF NOT EXISTS metrics (
    id           BIGSERIAL PRIMARY KEY,
    trial_id     BIGINT NOT NULL REFERENCES trials(id),
    step         BIGINT NOT NULL,
    epoch        DOUBLE PRECISION,
    split        TEXT NOT NULL,
    loss         DOUBLE PRECISION,
    ppl          DOUBLE PRECISION,
    tokens_seen  BIGINT,
    lr           DOUBLE PRECISION,
    tokens_per_s DOUBLE PRECISION,
    created_at   TEXT,
    UNIQUE (trial_id, split, step)
);

CREATE TABLE IF NOT EXISTS samples (
    id           BIGSERIAL PRIMARY KEY,
    trial_id     BIGINT NOT NULL REFERENCES trials(id),
    title        TEXT,
    reference    TEXT,
    text         TEXT,
    params_json  TEXT,
    seed         BIGINT,
    uses_acronym BIGINT,
    created_at   TEXT
);
CREATE INDEX IF NOT EXISTS samples_trial ON samples(trial_id);
