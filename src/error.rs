//! Errors shared by every layer: the bottom of the import graph, so that no module climbs up to
//! the command line to say "this is the user's mistake".

/// An error the user can fix (bad flag, key, file or service): the binary exits with status 2
/// for these and 1 for everything else.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
