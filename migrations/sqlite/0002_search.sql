-- Search sweeps append trials at the next position; the unique position decides between
-- concurrent appends (src/store/mod.rs, Store::append_trial).
CREATE UNIQUE INDEX IF NOT EXISTS sweep_trials_position ON sweep_trials(sweep_id, position);
