use std::io;
use std::path::PathBuf;

/// Why a [`Locator`](crate::Locator) could not be built. Every variant names the file (or the
/// `cidrs` entry) to fix, so a failed reload can be logged as is.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// A configured file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file, as configured.
        path: PathBuf,
        /// Why reading it failed.
        source: io::Error,
    },
    /// A range file is not JSON of the provider's shape. serde_json's message ends with the line
    /// and column.
    #[error("{}: {source}", path.display())]
    Json {
        /// The range file, as configured.
        path: PathBuf,
        /// Where and why parsing stopped.
        source: serde_json::Error,
    },
    /// A file parsed but says something unusable: a bad prefix, a GCP entry with no prefix, a
    /// database with no country codes.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file, as configured.
        path: PathBuf,
        /// What is wrong in it, for people.
        message: String,
    },
    /// An entry of `locations.cidrs` whose prefix or label is not valid.
    #[error("locations.cidrs: {cidr:?}: {message}")]
    Cidr {
        /// The entry's key, the prefix as written.
        cidr: String,
        /// What is wrong with the prefix or its label.
        message: String,
    },
    /// The `countries` file is not a MaxMind DB the reader can walk.
    #[error("{}: not a readable MaxMind DB: {source}", path.display())]
    Country {
        /// The database file, as configured.
        path: PathBuf,
        /// The MaxMind reader's error.
        source: maxminddb::MaxMindDbError,
    },
}
