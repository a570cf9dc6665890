use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A manifest that cannot be used, with the file (and, where one applies, the 1-based line) at
/// fault, so the message can be acted on without re-reading the manifest.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", .path.display(), LineSuffix(*.line))]
pub struct ManifestError {
    /// The file at fault (or the directory, when one is missing or empty).
    pub path: PathBuf,
    /// The 1-based line at fault; `None` when the problem is the whole file.
    pub line: Option<usize>,
    /// What is wrong, for people.
    pub message: String,
}

/// Something odd in a manifest that is accepted, as kpromo accepts it, but worth telling: where
/// it is and what was made of it (a destination listed twice is one destination).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{}{}: {message}", .path.display(), LineSuffix(*.line))]
pub struct ManifestWarning {
    /// The file the odd entry is in.
    pub path: PathBuf,
    /// The 1-based line of the entry; `None` when it could not be found in the text.
    pub line: Option<usize>,
    /// What is odd and what was made of it.
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

/// Every problem found in the manifests read (at least one), in the order of the files and, within
/// a file, of the lines: loading goes on after an error wherever it can, so that one run shows
/// all there is to fix.
#[derive(Debug)]
pub struct ManifestErrors(Vec<ManifestError>);

impl ManifestErrors {
    /// `Ok` when `errors` is empty. The errors are ordered by file (in the order first met) and
    /// by line within each file; those of one line stay in the order found.
    pub(crate) fn check(mut errors: Vec<ManifestError>) -> Result<(), ManifestErrors> {
        if errors.is_empty() {
            return Ok(());
        }
        let mut files: HashMap<PathBuf, usize> = HashMap::new();
        for error in &errors {
            let next = files.len();
            files.entry(error.path.clone()).or_insert(next);
        }
        errors.sort_by_key(|e| (files[&e.path], e.line));
        Err(ManifestErrors(errors))
    }

    /// The errors, in the order described above.
    pub fn iter(&self) -> std::slice::Iter<'_, ManifestError> {
        self.0.iter()
    }
}

/// One error a line.
impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}

impl From<ManifestError> for ManifestErrors {
    fn from(error: ManifestError) -> Self {
        ManifestErrors(vec![error])
    }
}

impl IntoIterator for ManifestErrors {
    type Item = ManifestError;
    type IntoIter = std::vec::IntoIter<ManifestError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ManifestErrors {
    type Item = &'a ManifestError;
    type IntoIter = std::slice::Iter<'a, ManifestError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
