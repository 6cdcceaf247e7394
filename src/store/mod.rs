//! The sweep ledger: sweeps, trials, metrics and samples behind one [`Store`] trait.
//!
//! # Contract (every implementation must pass [`contract::run_all`])
//!
//! * **Sweeps** are keyed by `name` (unique). [`Store::record_sweep`] inserts or updates the sweep
//!   row, inserts the trials it does not know yet (keyed by their identity `hash`; an existing
//!   trial keeps its state, results and metrics), and replaces the sweep's membership rows
//!   (`sweep_trials`) — all in one transaction: on error nothing is written.
//! * **Trials** move through states `pending -> running -> completed | failed | diverged |
//!   interrupted | pruned`. Only [`Store::claim_trial`] moves a trial to `running`; it is an atomic
//!   compare-and-set on the state (`pending`, `interrupted`, `failed` are claimable), so of two
//!   concurrent claims exactly one wins and a trial never runs twice at once. A claim increments
//!   `attempts`, sets `worker`, `device`, `started_at`, `heartbeat_at` and clears `error`.
//! * [`Store::heartbeat`] and [`Store::finish_trial`] only act while the trial is `running` *and*
//!   owned by the given worker; they return `false` otherwise (a stale worker cannot overwrite a
//!   newer attempt). `finish_trial` also serves to mark a dead worker's trial `interrupted` or
//!   `failed` (the caller passes the dead worker's id).
//! * [`Store::reset_trial`] (for `--force`) returns a non-running trial to `pending` and deletes
//!   its metrics and results; it refuses (returns `false`) while the trial is `running`.
//! * **Search sweeps** grow one trial at a time: [`Store::append_trial`] adds a trial at
//!   position `n` only while the sweep has exactly `n` trials (a compare-and-set on the count: of
//!   two concurrent appends at one position exactly one wins, so concurrent workers never exceed a
//!   budget), inserting the trial row if its hash is unknown; [`Store::record_sweep_row`] updates
//!   the sweep row and leaves its trials alone.
//! * **Metrics** are unique per `(trial, split, step)`: [`Store::insert_metrics`] writes a batch in
//!   one transaction and silently ignores rows already present (a resumed trial re-sends rows), and
//!   returns how many rows were new.
//! * **Samples** are append-only.
//! * Reads return rows in a stable order: sweeps by name, sweep trials by position, metrics by
//!   split then step, samples by id; a sweep's metrics and samples ([`Reader::sweep_metrics`],
//!   [`Reader::sweep_samples`]) by trial id first.
//! * [`Reader::sweep_curves`] is [`Reader::sweep_metrics`] thinned for drawing. A trial's series
//!   of one split, first step `f`, first interval `d`, last step `l`, counts as its grid rows
//!   `(l - f) / d + 1` (its rows, for a series logged at a fixed interval as the trainer writes
//!   them, its final step aside). One stride `s` per split, the smallest that keeps every series
//!   within `per_series` grid rows and the split within `per_split`; a series keeps its first row,
//!   its last, and each row at step `f + k * s * d` (every `s`-th row of a fixed-interval series;
//!   seeds and pruned prefixes keep the same steps). A split within both budgets comes back whole.
//! * Timestamps are RFC 3339 UTC text with millisecond precision (`2026-01-01T00:00:00.000Z`), which
//!   sorts lexicographically; JSON columns hold JSON text.
//! * Implementations are `Send + Sync`, safe to share between threads and between processes on
//!   the same database (SQLite: WAL, busy timeout, `BEGIN IMMEDIATE` for write transactions).
//! * Reading is its own trait, [`Reader`] (a supertrait of [`Store`]): reports, `sweep results`
//!   and `sweep export` open the ledger with [`open_read_only`] and `sweep query` with
//!   [`ReadOnlySql`]; neither creates, migrates or writes ([`read`]). [`synth`] fills ledgers with
//!   synthetic sweeps through the same API (test fixtures, `sweep bench-report`).
//!
//! The database URL is `sqlite://PATH`, `sqlite:PATH` or a bare file path (default
//! `results/sweep.db`, env `SWEEP_DB`, flag `--db`), parsed in [`url`]. PostgreSQL (`postgres://`)
//! is issue #7: it implements this trait with the same SQL (kept portable: `$N` placeholders,
//! `ON CONFLICT`, `RETURNING`) and runs the same contract suite.

pub mod contract;
pub mod postgres;
pub mod read;
pub mod sql;
pub mod sqlite;
pub mod synth;
pub mod url;

pub use read::{
    load_sweep, load_sweep_curves, load_sweep_finals, open_read_only, ReadOnlySql, SweepRecords,
};
pub use url::{is_postgres, redact, sqlite_file, LedgerUrl};

use anyhow::Result;
use serde_json::Value as Json;

/// Default ledger location, relative to the working directory.
pub const DEFAULT_DB: &str = "results/sweep.db";

/// Trial states as stored in `trials.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TrialState {
    #[default]
    Pending,
    Running,
    Completed,
    Failed,
    Diverged,
    Interrupted,
    /// Stopped early by a search sweep's pruner (it keeps its metrics and last checkpoint).
    Pruned,
}

impl TrialState {
    pub const ALL: [TrialState; 7] = [
        TrialState::Pending,
        TrialState::Running,
        TrialState::Completed,
        TrialState::Failed,
        TrialState::Diverged,
        TrialState::Interrupted,
        TrialState::Pruned,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Pending => "pending",
            TrialState::Running => "running",
            TrialState::Completed => "completed",
            TrialState::Failed => "failed",
            TrialState::Diverged => "diverged",
            TrialState::Interrupted => "interrupted",
            TrialState::Pruned => "pruned",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        TrialState::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown trial state `{s}` in the ledger"))
    }
    /// States `claim_trial` accepts.
    pub fn is_claimable(self) -> bool {
        matches!(
            self,
            TrialState::Pending | TrialState::Interrupted | TrialState::Failed
        )
    }
    /// Final states that a plain `sweep run` does not rerun.
    pub fn is_done(self) -> bool {
        matches!(
            self,
            TrialState::Completed | TrialState::Diverged | TrialState::Pruned
        )
    }
}

impl std::fmt::Display for TrialState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row of `sweeps`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepRecord {
    pub id: i64,
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub file: Option<String>,
    pub profile: Option<String>,
    pub kind: Option<String>,
    /// Resolved sweep: name, title, kind, file, profile, sets, `axes` [{name, values}],
    /// `references` (the paper's rows from `[[reference]]`).
    pub spec: Json,
    pub created_at: String,
    pub updated_at: String,
}

/// What `record_sweep` writes for the sweep itself.
#[derive(Debug, Clone)]
pub struct NewSweep {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub file: Option<String>,
    pub profile: Option<String>,
    pub kind: String,
    pub spec: Json,
}

/// One trial of a sweep, as `record_sweep` takes it.
#[derive(Debug, Clone)]
pub struct NewTrial {
    pub hash: String,
    /// The resolved `TrialConfig` (JSON).
    pub config: Json,
    /// Axis values that define the row, e.g. `{"block_size": 256}`.
    pub label: Json,
    pub is_baseline: bool,
}

/// What `record_sweep` did.
#[derive(Debug, Clone)]
pub struct RecordedSweep {
    pub sweep_id: i64,
    /// Trial ids in the order of the `NewTrial`s.
    pub trial_ids: Vec<i64>,
    /// How many trials were new to the ledger.
    pub created: usize,
}

/// A row of `trials`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrialRecord {
    pub id: i64,
    pub hash: String,
    pub config: Json,
    pub state: TrialState,
    pub attempts: i64,
    pub error: Option<String>,
    pub exit_status: Option<i64>,
    pub device: Option<String>,
    pub worker: Option<String>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub heartbeat_at: Option<String>,
    pub results: TrialResults,
    /// The trial's directory relative to the artifacts root (`trials/<hash12>`, see
    /// [`crate::artifacts`]); absolute in ledgers written before that rule.
    pub artifact_dir: Option<String>,
    /// Environment manifest: backend, device name, crate version, git commit + dirty flag, seed,
    /// data manifest hash, tokenizer id.
    pub env: Option<Json>,
}

impl TrialRecord {
    /// First 12 hex digits of the identity hash (the artifact directory name).
    pub fn short_hash(&self) -> &str {
        &self.hash[..self.hash.len().min(12)]
    }
}

/// Final numbers of a trial (all `None` until it completes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrialResults {
    pub wall_seconds: Option<f64>,
    pub train_seconds: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub peak_rss_bytes: Option<i64>,
    pub train_loss: Option<f64>,
    pub valid_loss: Option<f64>,
    pub test_loss: Option<f64>,
    pub train_ppl: Option<f64>,
    pub valid_ppl: Option<f64>,
    pub test_ppl: Option<f64>,
    pub valid_loss_fixed: Option<f64>,
}

impl TrialResults {
    /// A final number by its name (`valid_ppl`, `tokens_per_s`, ...; see `search::METRICS`).
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "wall_seconds" => self.wall_seconds,
            "train_seconds" => self.train_seconds,
            "tokens_per_s" => self.tokens_per_s,
            "train_loss" => self.train_loss,
            "valid_loss" => self.valid_loss,
            "test_loss" => self.test_loss,
            "train_ppl" => self.train_ppl,
            "valid_ppl" => self.valid_ppl,
            "test_ppl" => self.test_ppl,
            "valid_loss_fixed" => self.valid_loss_fixed,
            _ => None,
        }
    }
}

/// A trial with its membership in one sweep. Derefs to the trial (`st.state`, `st.config`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepTrial {
    pub sweep_id: i64,
    pub position: i64,
    /// Axis values that define the row, e.g. `{"block_size": 256}` (an object).
    pub label: Json,
    pub is_baseline: bool,
    pub trial: TrialRecord,
}

impl SweepTrial {
    /// The label's keys and values (empty when the label is not an object).
    pub fn label_map(&self) -> &serde_json::Map<String, Json> {
        static EMPTY: std::sync::LazyLock<serde_json::Map<String, Json>> =
            std::sync::LazyLock::new(serde_json::Map::new);
        self.label.as_object().unwrap_or(&EMPTY)
    }

    /// The label without `seed`: what the seed replicates of one row share.
    pub fn row_key(&self) -> serde_json::Map<String, Json> {
        self.label_map()
            .iter()
            .filter(|(k, _)| k.as_str() != "seed")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The seed the trial ran with (its config's `seed`), which pairs it with the baseline's
    /// replicate of the same seed.
    pub fn seed(&self) -> Option<i64> {
        self.config.get("seed").and_then(Json::as_i64)
    }
}

impl std::ops::Deref for SweepTrial {
    type Target = TrialRecord;
    fn deref(&self) -> &TrialRecord {
        &self.trial
    }
}

impl std::ops::DerefMut for SweepTrial {
    fn deref_mut(&mut self) -> &mut TrialRecord {
        &mut self.trial
    }
}

/// How a run of a trial ended, for `finish_trial`.
#[derive(Debug, Clone)]
pub enum Outcome {
    Completed {
        results: TrialResults,
        artifact_dir: Option<String>,
    },
    Diverged {
        error: String,
    },
    Interrupted {
        error: Option<String>,
    },
    Failed {
        error: String,
        exit_status: Option<i64>,
    },
    /// Stopped by a search sweep's pruner; `error` says why (rung, value, threshold).
    Pruned {
        error: String,
    },
}

impl Outcome {
    pub fn state(&self) -> TrialState {
        match self {
            Outcome::Completed { .. } => TrialState::Completed,
            Outcome::Diverged { .. } => TrialState::Diverged,
            Outcome::Interrupted { .. } => TrialState::Interrupted,
            Outcome::Failed { .. } => TrialState::Failed,
            Outcome::Pruned { .. } => TrialState::Pruned,
        }
    }
}

/// One metric row to write (mirrors `train::MetricRow`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewMetric {
    pub step: i64,
    pub epoch: f64,
    pub split: String,
    pub loss: f64,
    pub ppl: f64,
    pub tokens_seen: i64,
    pub lr: f64,
    pub tokens_per_s: f64,
}

/// A row of `metrics`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricRecord {
    pub trial_id: i64,
    pub step: i64,
    pub epoch: f64,
    pub split: String,
    pub loss: f64,
    pub ppl: f64,
    pub tokens_seen: i64,
    pub lr: f64,
    pub tokens_per_s: f64,
    pub created_at: String,
}

/// A generated sample to insert.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewSample {
    pub trial_id: i64,
    pub title: String,
    /// The held-out abstract, when generating from a held-out title.
    pub reference: Option<String>,
    pub text: String,
    /// Decoding parameters (top_p, temperature, max_tokens, ...).
    pub params: Json,
    pub seed: Option<i64>,
    pub uses_acronym: Option<bool>,
}

/// A row of `samples`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SampleRecord {
    pub id: i64,
    pub sample: NewSample,
    pub created_at: String,
}

impl std::ops::Deref for SampleRecord {
    type Target = NewSample;
    fn deref(&self) -> &NewSample {
        &self.sample
    }
}

/// Reading the ledger. See the module documentation for the contract.
pub trait Reader: Send + Sync {
    /// The URL the ledger was opened with.
    fn url(&self) -> &str;
    /// All sweeps, by name.
    fn sweeps(&self) -> Result<Vec<SweepRecord>>;
    fn sweep_by_name(&self, name: &str) -> Result<Option<SweepRecord>>;
    /// The trials of a sweep with their labels, by position.
    fn sweep_trials(&self, sweep_id: i64) -> Result<Vec<SweepTrial>>;
    fn trial(&self, id: i64) -> Result<Option<TrialRecord>>;
    fn trial_by_hash(&self, hash: &str) -> Result<Option<TrialRecord>>;
    /// All trials in a state (e.g. `running`, to find dead workers).
    fn trials_in_state(&self, state: TrialState) -> Result<Vec<TrialRecord>>;
    /// All metric rows of a trial, by split then step.
    fn metrics(&self, trial_id: i64) -> Result<Vec<MetricRecord>>;
    /// All metric rows of a sweep's trials, by trial id, split, step (one query, for reports).
    fn sweep_metrics(&self, sweep_id: i64) -> Result<Vec<MetricRecord>>;
    /// [`Reader::sweep_metrics`] thinned to a budget of rows (see the module documentation): what
    /// a report draws, read without decoding rows it could not show.
    fn sweep_curves(&self, sweep_id: i64, budget: CurveBudget) -> Result<Vec<MetricRecord>>;
    /// The metric rows of one split of a sweep's trials, by trial id then step (pruners).
    fn sweep_split_metrics(&self, sweep_id: i64, split: &str) -> Result<Vec<MetricRecord>>;
    /// The row with the highest step of one split, if any (progress display).
    fn last_metric(&self, trial_id: i64, split: &str) -> Result<Option<MetricRecord>>;
    fn samples(&self, trial_id: i64) -> Result<Vec<SampleRecord>>;
    /// All samples of a sweep's trials, by trial id then sample id.
    fn sweep_samples(&self, sweep_id: i64) -> Result<Vec<SampleRecord>>;
}

/// How many metric rows [`Reader::sweep_curves`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurveBudget {
    /// Rows of one trial's series of one split (its last row comes on top).
    pub per_series: usize,
    /// Rows of one split over all the sweep's trials.
    pub per_split: usize,
}

impl CurveBudget {
    /// The stride that keeps series of at most `longest` rows, `total` rows in all, within the
    /// budget: at least 1.
    pub fn stride(&self, longest: usize, total: usize) -> usize {
        let over = |n: usize, max: usize| n.div_ceil(max.max(1));
        over(longest, self.per_series)
            .max(over(total, self.per_split))
            .max(1)
    }
}

/// The ledger: [`Reader`] plus every write. See the module documentation for the contract.
pub trait Store: Reader {
    /// Insert/update a sweep, insert unknown trials, replace its membership; one transaction.
    fn record_sweep(&self, sweep: &NewSweep, trials: &[NewTrial]) -> Result<RecordedSweep>;
    /// Insert/update the sweep row only (a search sweep's trials are appended while it runs).
    fn record_sweep_row(&self, sweep: &NewSweep) -> Result<i64>;
    /// Append `trial` to a sweep at `position` iff it has exactly `position` trials and not this
    /// one; returns its id (`None`: another worker appended first, or it is a member already).
    fn append_trial(&self, sweep_id: i64, position: i64, trial: &NewTrial) -> Result<Option<i64>>;
    /// Atomically move a claimable trial to `running` for `worker`; `None` if it is not claimable.
    fn claim_trial(&self, id: i64, worker: &str, device: &str) -> Result<Option<TrialRecord>>;
    /// Refresh `heartbeat_at`; `false` if the trial is not running for this worker any more.
    fn heartbeat(&self, id: i64, worker: &str) -> Result<bool>;
    /// Store the environment manifest of a running trial.
    fn set_env(&self, id: i64, env: &Json) -> Result<()>;
    /// End a running attempt of `worker`; `false` if the trial is not running for this worker.
    fn finish_trial(&self, id: i64, worker: &str, outcome: &Outcome) -> Result<bool>;
    /// Back to `pending`, deleting metrics and results (`--force`); `false` while running.
    fn reset_trial(&self, id: i64) -> Result<bool>;
    /// Insert a batch in one transaction, ignoring duplicates; returns the number of new rows.
    fn insert_metrics(&self, trial_id: i64, rows: &[NewMetric]) -> Result<u64>;
    fn insert_sample(&self, sample: &NewSample) -> Result<i64>;
}

/// Open (creating and migrating if needed) the ledger at `url`.
pub fn open(url: &str) -> Result<Box<dyn Store>> {
    if is_postgres(url) {
        return Ok(Box::new(postgres::PostgresStore::open(url)?));
    }
    Ok(Box::new(sqlite::SqliteStore::open(url)?))
}

/// Opens the ledger at `url` if there is one: `None` for a SQLite file that does not exist (a
/// command that only reads, like `sweep plan`, must not create one); PostgreSQL is always opened.
pub fn open_existing(url: &str) -> Result<Option<Box<dyn Store>>> {
    match LedgerUrl::parse(url).sqlite_file() {
        Some(path) if !path.is_file() => Ok(None),
        _ => open(url).map(Some),
    }
}

/// Now as RFC 3339 UTC with milliseconds (sorts lexicographically).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
