//! Release-file paths: what a files manifest, an inventory and a download request name, with one
//! set of rules wherever a path becomes a URL or a file name.

use std::fmt;

/// Longest release-file path (and request path) accepted.
pub const MAX_PATH: usize = 2048;

/// A release-file path: `/` followed by one or more segments of `[A-Za-z0-9._~+@=,-]`, none empty
/// and none starting with `.` (so no `.`, `..` or hidden names), at most [`MAX_PATH`] bytes.
/// Percent-escapes are refused outright, so `%2e%2e` can never decode into `..` further along.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilePath(String);

impl FilePath {
    /// Checks `text` against the rules above; the error says which rule it breaks.
    pub fn parse(text: &str) -> Result<FilePath, String> {
        if text.len() > MAX_PATH {
            return Err(format!("path longer than {MAX_PATH} bytes"));
        }
        let rest = text.strip_prefix('/').ok_or("path must start with '/'")?;
        for segment in rest.split('/') {
            if segment.is_empty() {
                return Err("empty path segment ('//' or trailing '/')".into());
            }
            if segment.starts_with('.') {
                return Err(format!("path segment {segment:?} starts with '.'"));
            }
            if let Some(c) = segment.chars().find(|&c| !is_path_char(c)) {
                return Err(format!("character {c:?} not allowed in a path (allowed: A-Z a-z 0-9 . _ ~ + @ = , -)"));
            }
        }
        Ok(FilePath(text.to_string()))
    }

    /// With the leading `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Without the leading `/` (what a `{path}` template receives).
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }

    /// The extension after the last `.` of the last segment, if any.
    pub fn extension(&self) -> Option<&str> {
        let last = self.0.rsplit('/').next().unwrap_or("");
        last.rsplit_once('.').map(|(_, ext)| ext)
    }
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The characters a path segment may hold.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '+' | '@' | '=' | ',' | '-')
}

impl From<FilePath> for String {
    fn from(path: FilePath) -> String {
        path.0
    }
}
