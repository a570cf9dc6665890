//! One access-log line of `ferry serve` (docs/serve.md, "Access log"), read without copying what
//! it need not, and what its path names.

use std::borrow::Cow;

use serde::Deserialize;

/// The target of `ferry serve`'s access-log lines; other lines of the same stream are skipped.
pub const TARGET: &str = "ferry_serve::access";

/// The fields of one access-log line that a report uses (others, `peer` and `location`, are
/// ignored). Strings borrow from the line unless they hold a JSON escape.
#[derive(Debug, Deserialize)]
pub struct Line<'a> {
    /// `2026-11-28T04:47:22.123456Z`.
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    /// [`TARGET`] for an access-log line.
    #[serde(borrow, default)]
    pub target: Cow<'a, str>,
    /// The request and its answer.
    #[serde(borrow)]
    pub fields: Fields<'a>,
}

/// The `fields` object of an access-log line.
#[derive(Debug, Deserialize)]
pub struct Fields<'a> {
    /// `GET`, `HEAD`, ...
    #[serde(borrow, default)]
    pub method: Cow<'a, str>,
    /// The request path as received, query string included.
    #[serde(borrow, default)]
    pub path: Cow<'a, str>,
    /// The client's location label, `""` when it has none.
    #[serde(borrow, default)]
    pub label: Cow<'a, str>,
    /// The HTTP status answered.
    #[serde(default)]
    pub status: u16,
    /// `mirror`, `upstream`, `files`, ... (docs/request-handling.md, case 13).
    #[serde(borrow, default)]
    pub outcome: Cow<'a, str>,
    /// The mirror redirected to, `""` when none.
    #[serde(borrow, default)]
    pub mirror: Cow<'a, str>,
}

impl<'a> Line<'a> {
    /// Parses one line; `None` when it is not a JSON object of this shape.
    pub fn parse(text: &'a str) -> Option<Line<'a>> {
        serde_json::from_str(text).ok()
    }
}

/// What a request path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object<'a> {
    /// `/v2/<repository>/blobs/sha256:<hex>`.
    Blob {
        /// The repository.
        repository: &'a str,
        /// `sha256:<hex>`.
        digest: &'a str,
    },
    /// `/v2/<repository>/manifests/...`, `tags/list` or `referrers/...`: served by the registry.
    Registry {
        /// The repository.
        repository: &'a str,
    },
    /// A release file, `/release/v1.30.0/bin/linux/amd64/kubectl`.
    File {
        /// The path, without its query string.
        path: &'a str,
    },
    /// Anything else: `/v2/`, `/_ferry/...` (content Ferry serves itself, counted on the redirect
    /// that led there), malformed paths.
    Other,
}

impl<'a> Object<'a> {
    /// Classifies a request path as docs/request-handling.md does (cases 4-11), loosely: the log
    /// holds only paths Ferry already answered.
    pub fn of(path: &'a str) -> Object<'a> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        if path.starts_with("/_ferry") || !path.starts_with('/') {
            return Object::Other;
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return if path == "/v2" || path == "/" { Object::Other } else { Object::File { path } };
        };
        let mut parts = rest.rsplitn(3, '/');
        let (Some(last), Some(kind), Some(repository)) = (parts.next(), parts.next(), parts.next()) else {
            return Object::Other;
        };
        match kind {
            "blobs" if last.starts_with("sha256:") => Object::Blob { repository, digest: last },
            "manifests" | "referrers" => Object::Registry { repository },
            "tags" if last == "list" => Object::Registry { repository },
            _ => Object::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_line_as_ferry_serve_writes_it() {
        let text = r#"{"timestamp":"2026-11-28T04:47:22.123456Z","level":"INFO","target":"ferry_serve::access","fields":{"method":"GET","path":"/v2/app/blobs/sha256:ab","client":"3.128.0.5","peer":"10.0.0.7","label":"aws:us-east-2","status":307,"outcome":"mirror","mirror":"s3-us-east-2","location":"https://x/sha256:ab","reason":"exact match \"x\""}}"#;
        let line = Line::parse(text).unwrap();
        assert_eq!(line.target, TARGET);
        assert_eq!((line.fields.status, &*line.fields.outcome, &*line.fields.mirror), (307, "mirror", "s3-us-east-2"));
        assert_eq!(Object::of(&line.fields.path), Object::Blob { repository: "app", digest: "sha256:ab" });
        assert!(Line::parse("not json").is_none());
    }

    #[test]
    fn classifies_paths() {
        assert_eq!(Object::of("/v2/a/b/blobs/sha256:1?ns=x"), Object::Blob { repository: "a/b", digest: "sha256:1" });
        assert_eq!(Object::of("/v2/a/manifests/v1"), Object::Registry { repository: "a" });
        assert_eq!(Object::of("/v2/a/tags/list"), Object::Registry { repository: "a" });
        assert_eq!(Object::of("/release/v1/kubectl?x=1"), Object::File { path: "/release/v1/kubectl" });
        for other in ["/v2/", "/v2", "/_ferry/mirrors/m/blobs/sha256:1", "/v2/_catalog", "/"] {
            assert_eq!(Object::of(other), Object::Other, "{other}");
        }
    }
}
