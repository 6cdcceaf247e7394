//! sweep: fine-tune GPT-2-family models over hyperparameter grids and report them like the paper.
//!
//! Data flow: sweep file (`config`) -> expanded trials (`plan`) -> ledger (`store`) ->
//! executors (`exec`) -> trainer (`data` -> `model` -> `train`) -> `store` -> `report` / `query` /
//! `generate`. docs/ARCHITECTURE.md has the layers: which module may import which.

pub mod artifacts;
pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod exec;
pub mod fused;
pub mod generate;
#[cfg(feature = "tch")]
pub mod libtorch;
pub mod locations;
pub mod model;
pub mod plan;
pub mod query;
pub mod report;
pub mod search;
pub mod serve;
pub mod signals;
pub mod stats;
pub mod store;
pub mod tensorboard;
pub mod tokenizer;
pub mod train;
pub mod trial;
pub mod util;
