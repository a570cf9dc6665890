//! Object names in object stores and folders, checked before anything touches a store.

use std::fmt;

/// A name relative to a store's base: `release/v1.30.0/bin/linux/amd64/kubectl`,
/// `sha256:<hex>`. Checked so that no name can climb out of its store or mean two different
/// objects on different backends: no absolute paths, no `.` or `..` segments, no empty segments
/// (`a//b`, trailing `/`), no backslashes (a separator on Windows), no control characters, at most
/// 1024 bytes (S3's limit).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName(String);

/// A name refused by [`ObjectName::parse`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid object name {name:?}: {problem}")]
pub struct ObjectNameError {
    /// The name as given.
    pub name: String,
    /// The first rule it breaks, for people (`"contains a backslash"`).
    pub problem: &'static str,
}

impl ObjectName {
    /// Checks `name` against the rules above.
    pub fn parse(name: &str) -> Result<ObjectName, ObjectNameError> {
        let fail = |problem| Err(ObjectNameError { name: name.to_string(), problem });
        if name.is_empty() {
            return fail("empty");
        }
        if name.len() > 1024 {
            return fail("longer than 1024 bytes");
        }
        if name.starts_with('/') {
            return fail("absolute (starts with /)");
        }
        if name.chars().any(char::is_control) {
            return fail("contains a control character");
        }
        if name.contains('\\') {
            return fail("contains a backslash");
        }
        for segment in name.split('/') {
            match segment {
                "" => return fail("has an empty path segment"),
                "." | ".." => return fail("has a . or .. segment"),
                _ => {}
            }
        }
        Ok(ObjectName(name.to_string()))
    }

    /// The name as given, relative to the store's base.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_release_paths_and_digests() {
        for good in ["kubectl", "release/v1.30.0/bin/linux/amd64/kubectl", "sha256:abc", "a/.hidden", "a/b..c"] {
            assert_eq!(ObjectName::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn refuses_names_that_climb_or_are_ambiguous() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a/", "a\\..\\b", "a\nb", "a\u{7f}"] {
            assert!(ObjectName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ObjectName::parse(&"a".repeat(1025)).is_err());
    }
}
