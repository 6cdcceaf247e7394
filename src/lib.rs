//! sweep: fine-tune GPT-2-family models over hyperparameter grids and report them like the paper.
//!
//! Data flow: sweep file (`config`) -> expanded trials (`plan`) -> ledger (`store`) ->
//! `scheduler` -> trainer (`data` -> `model` -> `train`) -> `store` -> `report` / `generate`.

pub mod artifacts;
pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod fused;
pub mod generate;
pub mod model;
pub mod plan;
pub mod query;
pub mod report;
pub mod scheduler;
pub mod slurm;
pub mod store;
pub mod tokenizer;
pub mod train;
pub mod trial;
pub mod worker;
