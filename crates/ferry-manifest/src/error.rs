use std::fmt;
use std::path::{Path, PathBuf};

/// A manifest that cannot be used, with the file (and, where one applies, the 1-based line) at
/// fault, so the message can be acted on without re-reading the manifest.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", .path.display(), LineSuffix(*.line))]
pub struct ManifestError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

struct LineSuffix(Option<usize>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ":{line}"),
            None => Ok(()),
        }
    }
}

impl ManifestError {
    pub(crate) fn at(path: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        ManifestError { path: path.to_path_buf(), line, message: message.into() }
    }

    pub(crate) fn file(path: &Path, message: impl Into<String>) -> Self {
        Self::at(path, None, message)
    }

    /// A serde_yaml_ng error, its position moved from the end of the message to the front.
    pub(crate) fn yaml(path: &Path, err: &serde_yaml_ng::Error) -> Self {
        let mut message = err.to_string();
        let location = err.location();
        if let Some(loc) = &location {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(i) = message.find(&suffix) {
                message.replace_range(i..i + suffix.len(), "");
            }
        }
        // The path of an entry of a root list is written `.[0]`; `[0]` reads better.
        if message.starts_with(".[") {
            message.remove(0);
        }
        Self::at(path, location.map(|l| l.line()), message)
    }
}
