use std::io;
use std::path::PathBuf;

/// Why a [`Locator`](crate::Locator) could not be built. Every variant names the file (or the
/// `cidrs` entry) to fix, so a failed reload can be logged as is.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// serde_json's message ends with the line and column.
    #[error("{}: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("locations.cidrs: {cidr:?}: {message}")]
    Cidr { cidr: String, message: String },
    #[error("{}: not a readable MaxMind DB: {source}", path.display())]
    Country { path: PathBuf, source: maxminddb::MaxMindDbError },
}
