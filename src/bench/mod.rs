//! Benchmarks behind hidden subcommands, kept out of the library's main modules: each measures a
//! layer through its public API and prints numbers for bench/RESULTS.md.

pub mod ask;
pub mod checkpoint;
pub mod functions;
pub mod ledger;
pub mod replay;
pub mod report;
pub mod sampler;
pub mod serve;
