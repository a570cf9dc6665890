//! Strict, hand-written parsing of a request path (+ query) into what it asks for. Nothing that
//! fails here is ever redirected: the only strings that reach a `Location` are a configured base or
//! template plus the validated parts produced here ([`RepoName`], [`Digest`], [`Tag`], [`FilePath`],
//! [`SafeQuery`]).

use ferry_oci::{Digest, Reference, RepoName, Tag};
pub use ferry_oci::{FilePath, MAX_PATH};

/// Longest query string accepted (kept on every redirect to an upstream).
pub const MAX_QUERY: usize = 1024;

/// A query string that is safe to copy verbatim after `?` in a redirect: at most [`MAX_QUERY`]
/// bytes of unreserved, sub-delim and `%`/`:`/`/`/`?`/`@` characters (no `#`, space, quote, `\`,
/// control or non-ASCII character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeQuery(String);

impl SafeQuery {
    /// Checks a raw query string (without the `?`); the error says which rule it breaks.
    pub fn parse(text: &str) -> Result<SafeQuery, String> {
        if text.len() > MAX_QUERY {
            return Err(format!("query longer than {MAX_QUERY} bytes"));
        }
        if let Some(c) = text.chars().find(|&c| {
            !(c.is_ascii_alphanumeric()
                || matches!(c, '-' | '.' | '_' | '~' | '%' | '&' | '=' | '+' | ',' | ';' | ':' | '/' | '?' | '@' | '!'))
        }) {
            return Err(format!("character {c:?} not allowed in the query"));
        }
        Ok(SafeQuery(text.to_string()))
    }

    /// The query as received, without the `?`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `GET /v2/` (the API version check).
    ApiBase,
    /// `/v2/<name>/blobs/<digest>` (case 6).
    Blob {
        /// The repository name.
        name: RepoName,
        /// The blob's digest.
        digest: Digest,
    },
    /// `/v2/<name>/manifests/<reference>` (cases 7 and 8).
    Manifest {
        /// The repository name.
        name: RepoName,
        /// The tag or digest asked for.
        reference: Reference,
    },
    /// `/v2/<name>/tags/list` (case 7).
    TagsList {
        /// The repository name.
        name: RepoName,
    },
    /// `/v2/<name>/referrers/<digest>` (case 8).
    Referrers {
        /// The repository name.
        name: RepoName,
        /// The digest of the manifest whose referrers are asked for.
        digest: Digest,
    },
    /// Any other path: a release file (cases 9-11).
    File {
        /// The validated file path.
        path: FilePath,
    },
}

/// A parsed request: what it asks for and its query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRequest {
    /// What the request asks for.
    pub resource: Resource,
    /// Copied verbatim onto redirects to an upstream; never onto a mirror's (its template decides
    /// the whole URL).
    pub query: Option<SafeQuery>,
}

impl RouteRequest {
    /// A request for `resource` without a query string.
    pub fn new(resource: Resource) -> Self {
        RouteRequest { resource, query: None }
    }
}

/// Why a request was refused before routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// 400: malformed path, name, digest, reference or query.
    BadRequest(String),
    /// 404: well-formed but not something Ferry serves.
    NotFound(String),
}

impl Reject {
    /// The HTTP status of the refusal: 400 or 404.
    pub fn status(&self) -> u16 {
        match self {
            Reject::BadRequest(_) => 400,
            Reject::NotFound(_) => 404,
        }
    }

    /// Why the request was refused, for the access log and `/debug/route`.
    pub fn message(&self) -> &str {
        match self {
            Reject::BadRequest(m) | Reject::NotFound(m) => m,
        }
    }

    /// The same as [`Reject::message`], without copying it.
    pub fn into_message(self) -> String {
        match self {
            Reject::BadRequest(m) | Reject::NotFound(m) => m,
        }
    }
}

/// Case 2: the length and characters of a raw path.
pub fn check_path_chars(path: &str) -> Result<(), Reject> {
    if path.len() > MAX_PATH {
        return Err(Reject::BadRequest(format!("path longer than {MAX_PATH} bytes")));
    }
    // Printable ASCII but '\\' and '%'. Every request goes through here: every byte is tested,
    // with no early exit, so the compiler tests many at a time.
    let allowed = |b: u8| (0x21..0x7f).contains(&b) & (b != b'\\') & (b != b'%');
    if path.bytes().fold(true, |all, b| all & allowed(b)) {
        return Ok(());
    }
    let c = path.chars().find(|c| c.is_control() || !c.is_ascii() || matches!(c, '\\' | '%' | ' ')).unwrap_or(' ');
    Err(Reject::BadRequest(format!("character {c:?} not allowed in a path")))
}

/// Where local-folder mirrors live on Ferry; `/_ferry/` as a whole is reserved (never a release file).
pub const LOCAL_CONTENT: &str = "/_ferry/mirrors/";

/// Whether the path is under the reserved `/_ferry/` prefix.
pub fn is_reserved(path: &str) -> bool {
    path == "/_ferry" || path.starts_with("/_ferry/")
}

/// Parses the raw (still percent-encoded) path and query of a request.
pub fn parse_request(path: &str, query: Option<&str>) -> Result<RouteRequest, Reject> {
    let bad = |m: String| Reject::BadRequest(m);
    check_path_chars(path)?;
    if is_reserved(path) {
        return Err(Reject::NotFound("/_ferry/ is reserved for mirror content served by Ferry".into()));
    }
    if path == "/v2" || path == "/v2/" {
        return Ok(RouteRequest::new(Resource::ApiBase));
    }
    let query = match query {
        Some(q) if !q.is_empty() => Some(SafeQuery::parse(q).map_err(bad)?),
        _ => None,
    };
    if let Some(rest) = path.strip_prefix("/v2/") {
        if rest.is_empty() || rest.starts_with('/') || rest.ends_with('/') || has_double_slash(rest) {
            return Err(bad("empty path segment ('//' or trailing '/')".into()));
        }
        // From the right: the last segment, the endpoint word, and everything before is the name.
        let (before, last) = split_last_segment(rest);
        let (name, word) = before.map_or((None, ""), split_last_segment);
        let name = || -> Result<RepoName, Reject> {
            match name {
                Some(name) => name.parse::<RepoName>().map_err(|e| bad(e.to_string())),
                None => Err(Reject::NotFound("no repository name".into())),
            }
        };
        let digest = |s: &str| s.parse::<Digest>().map_err(|e| bad(e.to_string()));
        let resource = match (word, last) {
            ("tags", "list") => Resource::TagsList { name: name()? },
            ("blobs", _) => Resource::Blob { name: name()?, digest: digest(last)? },
            ("referrers", _) => Resource::Referrers { name: name()?, digest: digest(last)? },
            ("manifests", r) => {
                let name = name()?;
                let reference = if r.contains(':') {
                    Reference::Digest(digest(r)?)
                } else {
                    Reference::Tag(r.parse::<Tag>().map_err(|e| bad(e.to_string()))?)
                };
                Resource::Manifest { name, reference }
            }
            _ => return Err(Reject::NotFound("not a registry endpoint Ferry serves".into())),
        };
        return Ok(RouteRequest { resource, query });
    }
    if path == "/" {
        return Err(Reject::NotFound("no file named".into()));
    }
    let path = FilePath::parse(path).map_err(bad)?;
    Ok(RouteRequest { resource: Resource::File { path }, query })
}

/// Whether `s` has `//` anywhere (every pair tested, with no early exit, as above).
fn has_double_slash(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().zip(&b[1.min(b.len())..]).fold(false, |any, (&x, &y)| any | ((x == b'/') & (y == b'/')))
}

/// `("a/b", "c")` for `"a/b/c"`, `(None, "c")` for `"c"`.
fn split_last_segment(s: &str) -> (Option<&str>, &str) {
    match memchr::memrchr(b'/', s.as_bytes()) {
        Some(i) => (Some(&s[..i]), &s[i + 1..]),
        None => (None, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn registry_paths() {
        assert_eq!(parse_request("/v2/", None).unwrap().resource, Resource::ApiBase);
        let r = parse_request(&format!("/v2/team/app/blobs/{D}"), Some("x=1")).unwrap();
        assert!(matches!(&r.resource, Resource::Blob { name, .. } if name.as_str() == "team/app"));
        assert_eq!(r.query.unwrap().as_str(), "x=1");
        let r = parse_request("/v2/a/tags/list", Some("n=10&last=v1")).unwrap();
        assert!(matches!(&r.resource, Resource::TagsList { name } if name.as_str() == "a"));
        assert_eq!(r.query.unwrap().as_str(), "n=10&last=v1");
        let r = parse_request("/v2/a/manifests/v1.0", None).unwrap();
        assert!(matches!(&r.resource, Resource::Manifest { reference: Reference::Tag(_), .. }));
        let r = parse_request(&format!("/v2/a/manifests/{D}"), None).unwrap();
        assert!(matches!(&r.resource, Resource::Manifest { reference: Reference::Digest(_), .. }));
        // A repository may itself be called "blobs".
        let r = parse_request(&format!("/v2/x/blobs/blobs/{D}"), None).unwrap();
        assert!(matches!(&r.resource, Resource::Blob { name, .. } if name.as_str() == "x/blobs"));
    }

    #[test]
    fn registry_refusals() {
        for (p, status) in [
            ("/v2/a/blobs/sha256:zz", 400),
            ("/v2/A/blobs/sha256:zz", 400),
            (&format!("/v2/UPPER/blobs/{D}"), 400),
            (&format!("/v2/a//b/blobs/{D}"), 400),
            (&format!("/v2/../blobs/{D}"), 400),
            (&format!("/v2/%2e%2e/blobs/{D}"), 400),
            ("/v2/a/manifests/.bad", 400),
            ("/v2/a/blobs/uploads/abc", 404),
            ("/v2/_catalog", 404),
            (&format!("/v2/blobs/{D}"), 404),
        ] {
            assert_eq!(parse_request(p, None).unwrap_err().status(), status, "{p}");
        }
        assert_eq!(parse_request("/v2/a/tags/list", Some("a=<b>")).unwrap_err().status(), 400);
        assert_eq!(parse_request("/v2/a/tags/list", Some("a#b")).unwrap_err().status(), 400);
    }

    #[test]
    fn path_characters_every_byte_at_every_position() {
        for b in 0u8..=0xff {
            let allowed = (0x21..0x7f).contains(&b) && b != b'\\' && b != b'%';
            for pad in 0..17 {
                let mut path = vec![b'a'; 17];
                path[0] = b'/';
                path[pad.max(1)] = b;
                // Non-UTF-8 bytes cannot be in a &str: test them as part of a 2-byte character.
                let text = match std::str::from_utf8(&path) {
                    Ok(t) => t.to_string(),
                    Err(_) => path.iter().map(|&c| if c == b { 'é' } else { char::from(c) }).collect(),
                };
                assert_eq!(check_path_chars(&text).is_ok(), allowed && text.is_ascii(), "{b:#x} at {pad}");
            }
        }
    }

    #[test]
    fn file_paths() {
        let r = parse_request("/release/v1.30.0/bin/linux/amd64/kubectl.sha256", None).unwrap();
        let Resource::File { path } = r.resource else { panic!() };
        assert_eq!(path.relative(), "release/v1.30.0/bin/linux/amd64/kubectl.sha256");
        assert_eq!(path.extension(), Some("sha256"));
        for p in ["/a/../b", "/a/./b", "/a//b", "/a/", "/a\\b", "/%2e%2e/x", "/a/\u{7}", "/é", "/a b", "/.env", "a"] {
            assert_eq!(parse_request(p, None).unwrap_err().status(), 400, "{p:?}");
        }
        assert_eq!(parse_request("/", None).unwrap_err().status(), 404);
        assert_eq!(parse_request(&"/a".repeat(2000), None).unwrap_err().status(), 400);
    }
}
