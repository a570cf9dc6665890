//! Case 3a of `docs/request-handling.md`: mirror content served by Ferry itself. A mirror whose
//! `blobs` or `files` is a local folder is redirected to `/_ferry/mirrors/<name>/blobs/<digest>`
//! or `/_ferry/mirrors/<name>/files/<path>` on Ferry, and those paths are answered here from the
//! folder: `sha256:<hex>` files for blobs (the layout `ferry mirror` writes), the release tree for
//! files.
//!
//! Only validated names reach the file system (a [`Digest`] or a [`FilePath`]: no `..`, no hidden
//! names, no percent-escapes), and the resolved path (symlinks followed) must still be inside the
//! folder, so nothing outside it is ever served.

use std::io::SeekFrom;
use std::path::Path;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use ferry_oci::Digest;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::config::check_mirror_name;
use crate::decision::Outcome;
use crate::request::{check_path_chars, FilePath, Reject, LOCAL_CONTENT};
use crate::snapshot::{resolve_in_folder, Snapshot};

/// What a request for local-folder content asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalContent {
    /// `/_ferry/mirrors/<mirror>/blobs/<digest>`.
    Blob {
        /// The mirror name from the path (a valid name, not yet known to be configured).
        mirror: String,
        /// The blob asked for.
        digest: Digest,
    },
    /// `/_ferry/mirrors/<mirror>/files/<path>`.
    File {
        /// The mirror name from the path (a valid name, not yet known to be configured).
        mirror: String,
        /// The file asked for, with its leading `/`.
        path: FilePath,
    },
}

/// Parses a path for which [`crate::request::is_reserved`] holds: malformed (case 2 characters, a bad digest, a
/// bad file path) is `400`, anything else that is not mirror content is `404`.
pub fn parse(path: &str) -> Result<LocalContent, Reject> {
    check_path_chars(path)?;
    let not_found = || Reject::NotFound("not mirror content served by Ferry".into());
    let rest = path.strip_prefix(LOCAL_CONTENT).ok_or_else(not_found)?;
    let (mirror, rest) = rest.split_once('/').ok_or_else(not_found)?;
    if check_mirror_name("", mirror).is_err() || mirror.starts_with('.') {
        return Err(not_found());
    }
    let (kind, object) = rest.split_once('/').ok_or_else(not_found)?;
    let mirror = mirror.to_string();
    match kind {
        "blobs" => {
            let digest = object.parse().map_err(|e: ferry_oci::DigestError| Reject::BadRequest(e.to_string()))?;
            Ok(LocalContent::Blob { mirror, digest })
        }
        "files" => {
            let path = FilePath::parse(&format!("/{object}")).map_err(Reject::BadRequest)?;
            Ok(LocalContent::File { mirror, path })
        }
        _ => Err(not_found()),
    }
}

/// Answers a `GET` or `HEAD`: `200` with the bytes (`206` for one satisfiable `Range`, `416` for
/// an unsatisfiable one), `404` when the mirror is not a local folder of that kind or the file is
/// not there. Returns the outcome and status for the log and metrics.
pub async fn answer(
    snapshot: &Snapshot,
    request: &LocalContent,
    headers: &HeaderMap,
) -> (Outcome, u16, Response<Body>) {
    let (mirror, relative, digest) = match request {
        LocalContent::Blob { mirror, digest } => (mirror, digest.as_str(), Some(digest)),
        LocalContent::File { mirror, path } => (mirror, path.relative(), None),
    };
    let dir = snapshot.mirrors.iter().find(|m| &m.name == mirror).and_then(|m| match request {
        LocalContent::Blob { .. } => m.local_blobs.as_deref(),
        LocalContent::File { .. } => m.local_files.as_deref(),
    });
    let found = match dir {
        Some(dir) => {
            let dir = dir.to_path_buf();
            let relative = relative.to_string();
            tokio::task::spawn_blocking(move || resolve_in_folder(&dir, &relative)).await.ok().flatten()
        }
        None => None,
    };
    let Some(path) = found else {
        return (Outcome::NotFound, 404, plain(StatusCode::NOT_FOUND, "not found\n"));
    };
    match open(&path, headers).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let outcome = if status == 416 { Outcome::BadRequest } else { Outcome::Served };
            let mut response = response;
            if let Some(d) = digest.and_then(|d| HeaderValue::from_str(d.as_str()).ok()) {
                response.headers_mut().insert("docker-content-digest", d);
            }
            (outcome, status, response)
        }
        Err(e) => {
            tracing::warn!(target: "ferry_serve", path = %path.display(), error = %e, "cannot read mirror file");
            (Outcome::NotFound, 404, plain(StatusCode::NOT_FOUND, "not found\n"))
        }
    }
}

async fn open(path: &Path, headers: &HeaderMap) -> std::io::Result<Response<Body>> {
    let mut file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|v| byte_range(v, len));
    let (status, start, count) = match range {
        None | Some(Range::Ignored) => (StatusCode::OK, 0, len),
        Some(Range::Unsatisfiable) => {
            let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            r.headers_mut().insert(header::CONTENT_RANGE, value(format!("bytes */{len}")));
            return Ok(r);
        }
        Some(Range::Bytes(start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
    };
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await?;
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file.take(count)));
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, value(count.to_string()));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(header::CONTENT_RANGE, value(format!("bytes {start}-{}/{len}", start + count - 1)));
    }
    Ok(r)
}

fn value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("digits, '-', '/' and '*' only")
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// A `Range` header, as far as it is honoured.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// Inclusive byte positions, within the file.
    Bytes(u64, u64),
    /// One well-formed range that starts past the end (or a zero-length suffix).
    Unsatisfiable,
    /// Anything else (several ranges, another unit, malformed): answered with the whole file, as
    /// RFC 9110 allows.
    Ignored,
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n`, one range only.
fn byte_range(header: &str, len: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return Range::Ignored };
    let Some((first, last)) = spec.trim().split_once('-') else { return Range::Ignored };
    let number = |s: &str| if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) { None } else { s.parse().ok() };
    match (first, last) {
        ("", suffix) => match number(suffix) {
            Some(0) => Range::Unsatisfiable,
            Some(_) if len == 0 => Range::Unsatisfiable,
            Some(n) => Range::Bytes(len.saturating_sub(n), len - 1),
            None => Range::Ignored,
        },
        (first, "") => match number(first) {
            Some(a) if a >= len => Range::Unsatisfiable,
            Some(a) => Range::Bytes(a, len - 1),
            None => Range::Ignored,
        },
        (first, last) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a > b => Range::Ignored,
            (Some(a), Some(_)) if a >= len => Range::Unsatisfiable,
            (Some(a), Some(b)) => Range::Bytes(a, b.min(len - 1)),
            _ => Range::Ignored,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::is_reserved;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_only_mirror_content() {
        assert!(is_reserved("/_ferry") && is_reserved("/_ferry/x") && !is_reserved("/_ferryx"));
        assert_eq!(
            parse(&format!("/_ferry/mirrors/local/blobs/{D}")).unwrap(),
            LocalContent::Blob { mirror: "local".into(), digest: D.parse().unwrap() }
        );
        assert_eq!(
            parse("/_ferry/mirrors/m.1/files/release/v1/kubectl").unwrap(),
            LocalContent::File { mirror: "m.1".into(), path: FilePath::parse("/release/v1/kubectl").unwrap() }
        );
        for (p, status) in [
            ("/_ferry", 404),
            ("/_ferry/", 404),
            ("/_ferry/other/x", 404),
            ("/_ferry/mirrors/local", 404),
            ("/_ferry/mirrors/local/blobs", 404),
            ("/_ferry/mirrors/local/manifests/x", 404),
            (&format!("/_ferry/mirrors/../blobs/{D}"), 404),
            (&format!("/_ferry/mirrors/a b/blobs/{D}"), 400),
            ("/_ferry/mirrors/local/blobs/sha256:abc", 400),
            (&format!("/_ferry/mirrors/local/blobs/{D}/x"), 400),
            ("/_ferry/mirrors/local/files/a/../b", 400),
            ("/_ferry/mirrors/local/files/%2e%2e/b", 400),
            ("/_ferry/mirrors/local/files/.hidden", 400),
            ("/_ferry/mirrors/local/files/a//b", 400),
            ("/_ferry/mirrors/local/files/", 400),
        ] {
            assert_eq!(parse(p).unwrap_err().status(), status, "{p}");
        }
    }

    #[test]
    fn ranges() {
        use Range::*;
        for (h, want) in [
            ("bytes=0-9", Bytes(0, 9)),
            ("bytes=5-", Bytes(5, 99)),
            ("bytes=-10", Bytes(90, 99)),
            ("bytes=-1000", Bytes(0, 99)),
            ("bytes=90-200", Bytes(90, 99)),
            ("bytes=100-", Unsatisfiable),
            ("bytes=100-120", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=0-1,5-6", Ignored),
            ("bytes=9-1", Ignored),
            ("items=0-1", Ignored),
            ("bytes=a-b", Ignored),
            ("bytes=+1-2", Ignored),
            ("bytes=99999999999999999999999-", Ignored),
        ] {
            assert_eq!(byte_range(h, 100), want, "{h}");
        }
        assert_eq!(byte_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(byte_range("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn resolve_stays_inside_the_folder() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(root.path().join(".")).unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/file"), "x").unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.join("leak")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.join("leakdir")).unwrap();
        std::os::unix::fs::symlink(dir.join("sub/file"), dir.join("inside")).unwrap();
        assert!(resolve_in_folder(&dir, "sub/file").is_some());
        assert!(resolve_in_folder(&dir, "inside").is_some(), "a symlink within the folder is fine");
        assert!(resolve_in_folder(&dir, "leak").is_none());
        assert!(resolve_in_folder(&dir, "leakdir/secret").is_none());
        assert!(resolve_in_folder(&dir, "sub").is_none(), "folders are not served");
        assert!(resolve_in_folder(&dir, "missing").is_none());
    }
}
