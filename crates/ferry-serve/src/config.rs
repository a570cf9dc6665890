//! `ferry serve` configuration: the YAML types (what the operator writes) and their validation into
//! the checked pieces a [`crate::Snapshot`] is built from. Every error names the field it is about,
//! e.g. `mirrors[1].blobs: ...`. The fields are documented in `docs/serve.md`.

use std::net::SocketAddr;
use std::path::Path;

use ferry_oci::RepoName;
use ipnet::IpNet;
use serde::Deserialize;

use crate::glob::Pattern;

/// The whole `ferry.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Socket address to listen on (default `0.0.0.0:8080`). Read at start only.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Connections open at once; past it, new ones wait in the listen queue. Read at start only.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a stopping server (SIGTERM, SIGINT) gives requests in flight to finish, with
    /// `/readyz` answering 503 (default 10). Read at start only.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: f64,
    /// IP addresses or CIDR ranges of reverse proxies whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Base of the redirects to content Ferry serves itself (local-folder mirrors); without it
    /// those redirects are relative (`/_ferry/...`).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Where every request no mirror answers is redirected.
    pub upstream: UpstreamConfig,
    /// Where clients are: range files, the operator's prefixes, a country database (`ferry-locate`).
    #[serde(default)]
    pub locations: ferry_locate::LocationsConfig,
    /// The mirrors, in any order (order gives no priority).
    #[serde(default)]
    pub mirrors: Vec<MirrorConfig>,
    /// Limits on what one client may ask; none by default.
    #[serde(default)]
    pub limits: Option<LimitsConfig>,
    /// HTTPS instead of plain HTTP: the certificate chain and key (PEM). Read at start; the
    /// files themselves are reloaded when they change.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Clients whose redirects Ferry streams itself instead (proxy mode, for networks that can
    /// reach only Ferry's hostname): CIDR ranges or addresses, and location labels or label globs
    /// (`aws:*`), as `serves` writes them. Empty (the default): no client is proxied for this.
    #[serde(default)]
    pub proxy: Vec<String>,
    /// Streams Ferry proxies at once; past it, `503` with `Retry-After` (default 256). Read at
    /// start only.
    #[serde(default = "default_proxy_max_streams")]
    pub proxy_max_streams: usize,
}

fn default_proxy_max_streams() -> usize {
    256
}

/// `tls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (PEM), relative to this file's folder or absolute.
    pub cert: std::path::PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

/// `limits`: the per-client rate limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests one client address (IPv4, or IPv6 /64) may make.
    pub per_client: PerClientConfig,
    /// Clients never limited: CIDR ranges or addresses, and location labels or label globs
    /// (`aws:*`), as `serves` writes them.
    #[serde(default)]
    pub exempt: Vec<String>,
}

/// `limits.per_client`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerClientConfig {
    /// The sustained rate, ≥ 1.
    pub requests_per_minute: u64,
    /// How many requests may come at once before the rate applies, ≥ 1.
    pub burst: u64,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

fn default_max_connections() -> usize {
    4096
}

fn default_shutdown_grace() -> f64 {
    10.0
}

/// `upstream`: the origins everything falls back to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The registry URL, with an optional repository prefix path.
    pub registry: String,
    /// Base URL of release files; without it every file path is `404`.
    #[serde(default)]
    pub files: Option<String>,
    /// Registry for cosign signature tags and referrers; `None`: `registry` serves them.
    #[serde(default)]
    pub signatures: Option<String>,
}

/// One entry of `mirrors`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// Unique name, 1-64 characters of `[A-Za-z0-9._-]`; shown in logs, metrics and `/debug/route`.
    pub name: String,
    /// URL template with `{digest}`, or a local folder of `sha256:<hex>` files.
    #[serde(default)]
    pub blobs: Option<String>,
    /// URL template with `{path}`, or a local folder holding the release tree.
    #[serde(default)]
    pub files: Option<String>,
    /// Location labels, globs or `*`: which clients the mirror serves (must not be empty).
    #[serde(default)]
    pub serves: Vec<String>,
    /// Source of the list of what the mirror holds (path or URL); `None`: presence is probed.
    #[serde(default)]
    pub inventory: Option<String>,
    /// Share of objects among equally specific mirrors (at least 1; default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Every redirect to this mirror is proxied: Ferry streams its bytes to the client.
    #[serde(default)]
    pub proxy: bool,
}

fn default_weight() -> u32 {
    1
}

/// A configuration problem, naming the field (`upstream.registry`, `mirrors[2].serves[0]`, ...).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The field at fault (`mirrors[1].blobs`), or the file (`ferry.yaml:7`) when the YAML itself is refused.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { field: field.into(), message: message.into() }
    }
}

impl Config {
    /// Parses YAML text. `origin` (usually the file name) prefixes syntax errors. Text too large or
    /// nested too deep is refused first (`origin:LINE: ...`, see `ferry_yaml`).
    pub fn from_yaml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        ferry_yaml::check(text).map_err(|e| {
            let at = e.line.map_or_else(|| origin.to_string(), |line| format!("{origin}:{line}"));
            ConfigError::new(at, e.message)
        })?;
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::new(origin, e.to_string()))
    }

    /// Reads and parses a file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = ferry_yaml::read(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))?;
        Config::from_yaml(&text, &path.display().to_string())
    }
}

/// A URL template with exactly one placeholder, split around it. Rendering only ever appends
/// validated text after a fixed, configured scheme + host + path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    prefix: String,
    suffix: String,
}

impl Template {
    /// `placeholder` is `{digest}` or `{path}`. The template must be an absolute http(s) URL without
    /// user info, contain the placeholder exactly once, and the placeholder must come after the
    /// host (in the path or query), so no request can change where a redirect points.
    pub fn parse(field: &str, text: &str, placeholder: &str) -> Result<Template, ConfigError> {
        let count = text.matches(placeholder).count();
        if count != 1 {
            return Err(ConfigError::new(field, format!("must contain {placeholder} exactly once (found {count})")));
        }
        let (prefix, suffix) = text.split_once(placeholder).expect("counted");
        if prefix.contains('{') || prefix.contains('}') || suffix.contains('{') || suffix.contains('}') {
            return Err(ConfigError::new(field, format!("unknown placeholder; only {placeholder} is allowed")));
        }
        if suffix.contains('#') {
            return Err(ConfigError::new(field, "must not contain a fragment ('#')"));
        }
        let sample = format!("{prefix}x{suffix}");
        absolute_http_url(field, &sample)?;
        let authority_end =
            prefix.find("://").map(|i| i + 3).and_then(|start| prefix[start..].find(['/', '?']).map(|i| start + i));
        if authority_end.is_none() {
            return Err(ConfigError::new(
                field,
                format!("{placeholder} must come after the host, in the path (e.g. https://host/dir/{placeholder})"),
            ));
        }
        Ok(Template { prefix: prefix.to_string(), suffix: suffix.to_string() })
    }

    /// The URL with `value` in place of the placeholder. `value` must already be validated
    /// (a [`ferry_oci::Digest`] or a [`crate::FilePath`] without its leading `/`).
    pub fn render(&self, value: &str) -> String {
        let mut url = String::with_capacity(self.prefix.len() + value.len() + self.suffix.len());
        url.push_str(&self.prefix);
        url.push_str(value);
        url.push_str(&self.suffix);
        url
    }

    /// A template for content Ferry serves itself: `base` is a validated `public_url` (or empty,
    /// for a relative redirect), `path` starts with `/_ferry/`.
    pub fn local_content(base: &str, path: String) -> Template {
        Template { prefix: format!("{base}{path}"), suffix: String::new() }
    }

    /// `scheme://host[:port]` of the template, for logs and tests.
    pub fn origin(&self) -> String {
        url::Url::parse(&self.render("x")).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
    }
}

fn absolute_http_url(field: &str, text: &str) -> Result<url::Url, ConfigError> {
    let url =
        url::Url::parse(text).map_err(|e| ConfigError::new(field, format!("not an absolute URL ({e}): {text:?}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ConfigError::new(field, format!("scheme must be http or https, not {:?}", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(field, "URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(field, "URL must not contain user info (credentials)"));
    }
    if url.fragment().is_some() {
        return Err(ConfigError::new(field, "URL must not contain a fragment"));
    }
    // Also keeps every Location JSON-safe, so the access log writes it without escaping.
    if text.chars().any(|c| c.is_control() || c == ' ' || c == '\\' || c == '"') {
        return Err(ConfigError::new(field, "URL contains spaces, quotes, control characters or backslashes"));
    }
    Ok(url)
}

/// An upstream registry: `scheme://host[:port]` plus an optional repository prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryBase {
    /// `https://host[:port]`, no trailing slash.
    pub origin: String,
    /// Repository prefix from the URL path (`my-project/images`), if any.
    pub prefix: Option<RepoName>,
}

impl RegistryBase {
    /// Parses `upstream.registry` or `upstream.signatures`: an absolute http(s) URL without user
    /// info, query or fragment; a leading `v2/` in its path is dropped. Errors name `field`.
    pub fn parse(field: &str, text: &str) -> Result<RegistryBase, ConfigError> {
        let url = absolute_http_url(field, text)?;
        if url.query().is_some() {
            return Err(ConfigError::new(field, "URL must not contain a query"));
        }
        let path = url.path().trim_matches('/');
        let prefix = if path.is_empty() {
            None
        } else {
            let path = path.strip_prefix("v2/").unwrap_or(path);
            Some(path.parse::<RepoName>().map_err(|e| ConfigError::new(field, format!("repository prefix: {e}")))?)
        };
        Ok(RegistryBase { origin: url.origin().ascii_serialization(), prefix })
    }

    /// `origin/v2/[prefix/]name/blobs/digest`, built in one allocation (every upstream blob
    /// redirect).
    pub fn blob_url(&self, name: &RepoName, digest: &ferry_oci::Digest) -> String {
        let prefix = self.prefix.as_ref().map_or("", |p| p.as_str());
        let mut url = String::with_capacity(self.origin.len() + prefix.len() + name.as_str().len() + 90);
        url.push_str(&self.origin);
        url.push_str("/v2/");
        if !prefix.is_empty() {
            url.push_str(prefix);
            url.push('/');
        }
        url.push_str(name.as_str());
        url.push_str("/blobs/");
        url.push_str(digest.as_str());
        url
    }

    /// `origin/v2/[prefix/]name/rest`. `rest` is built by the router from validated parts.
    pub fn url(&self, name: &RepoName, rest: &str) -> String {
        match &self.prefix {
            Some(p) => format!("{}/v2/{}/{}/{}", self.origin, p, name, rest),
            None => format!("{}/v2/{}/{}", self.origin, name, rest),
        }
    }
}

/// The origin of release files: an absolute http(s) base URL; a file `/a/b` goes to `base/a/b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesBase {
    base: String,
}

impl FilesBase {
    /// Parses `upstream.files`: an absolute http(s) URL without user info, query or fragment; a
    /// trailing `/` is dropped. Errors name `field`.
    pub fn parse(field: &str, text: &str) -> Result<FilesBase, ConfigError> {
        let url = absolute_http_url(field, text)?;
        if url.query().is_some() {
            return Err(ConfigError::new(field, "URL must not contain a query"));
        }
        Ok(FilesBase { base: url.as_str().trim_end_matches('/').to_string() })
    }

    /// `path` is a validated [`crate::FilePath`] (starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// `public_url`: an absolute http(s) URL, optionally with a path (Ferry behind a proxy under a
/// prefix); no query, fragment or user info. Returned without a trailing `/`.
pub fn parse_public_url(text: &str) -> Result<String, ConfigError> {
    let url = absolute_http_url("public_url", text)?;
    if url.query().is_some() {
        return Err(ConfigError::new("public_url", "URL must not contain a query"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Whether a mirror's `blobs`/`files` value names a local folder (`file://...`, or no scheme at
/// all) rather than a URL template.
pub fn is_local_folder(text: &str) -> bool {
    text.starts_with("file://") || !text.contains("://")
}

/// A local-folder mirror's `blobs`/`files`: a `file://` URL or a path (relative ones against
/// `base_dir`, the configuration file's folder) naming an existing folder. Returned canonical
/// (symlinks resolved), so served paths can be checked to stay inside it.
pub fn parse_local_folder(field: &str, text: &str, base_dir: &Path) -> Result<std::path::PathBuf, ConfigError> {
    if text.contains('{') || text.contains('}') {
        return Err(ConfigError::new(
            field,
            "a local folder takes no placeholder: Ferry serves sha256:<hex> files (blobs) or paths (files) from it",
        ));
    }
    let path = if text.starts_with("file://") {
        url::Url::parse(text)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| ConfigError::new(field, format!("not an absolute file:// URL: {text:?}")))?
    } else {
        base_dir.join(text)
    };
    let canonical =
        std::fs::canonicalize(&path).map_err(|e| ConfigError::new(field, format!("folder {}: {e}", path.display())))?;
    if !canonical.is_dir() {
        return Err(ConfigError::new(field, format!("{} is not a folder", path.display())));
    }
    Ok(canonical)
}

/// Validated `trusted_proxies`.
pub fn parse_trusted_proxies(entries: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let field = format!("trusted_proxies[{i}]");
            if let Ok(net) = e.parse::<IpNet>() {
                Ok(net)
            } else if let Ok(ip) = e.parse::<std::net::IpAddr>() {
                Ok(IpNet::from(ip))
            } else {
                Err(ConfigError::new(field, format!("not an IP address or CIDR range: {e:?}")))
            }
        })
        .collect()
}

/// Validated `serves` list.
pub fn parse_serves(mirror_field: &str, entries: &[String]) -> Result<Vec<Pattern>, ConfigError> {
    if entries.is_empty() {
        return Err(ConfigError::new(
            format!("{mirror_field}.serves"),
            "must list at least one location label or glob (use \"*\" for everyone)",
        ));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| Pattern::parse(e).map_err(|m| ConfigError::new(format!("{mirror_field}.serves[{i}]"), m)))
        .collect()
}

/// A mirror name is used in metrics labels and logs: `[A-Za-z0-9._-]`, 1-64 characters.
pub fn check_mirror_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > 64
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(ConfigError::new(field, format!("must be 1-64 characters of [A-Za-z0-9._-], got {name:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_accepts_path_placeholder() {
        let t = Template::parse("f", "https://b.s3.amazonaws.com/containers/images/{digest}", "{digest}").unwrap();
        assert_eq!(t.render("sha256:ab"), "https://b.s3.amazonaws.com/containers/images/sha256:ab");
        assert_eq!(t.origin(), "https://b.s3.amazonaws.com");
        let t = Template::parse("f", "http://h:81/get?d={digest}&x=1", "{digest}").unwrap();
        assert_eq!(t.render("v"), "http://h:81/get?d=v&x=1");
    }

    #[test]
    fn template_refusals_name_the_field() {
        let cases = [
            ("https://h/{digest}/{digest}", "exactly once"),
            ("https://h/x", "exactly once"),
            ("https://{digest}.h/x", "after the host"),
            ("https://h{digest}/x", "after the host"),
            ("ftp://h/{digest}", "scheme"),
            ("/relative/{digest}", "absolute"),
            ("https://u:p@h/{digest}", "user info"),
            ("https://h/{digest}#f", "fragment"),
            ("https://h/{path}/{digest}", "unknown placeholder"),
            ("https://h/a b/{digest}", "spaces"),
        ];
        for (text, want) in cases {
            let err = Template::parse("mirrors[0].blobs", text, "{digest}").unwrap_err();
            assert_eq!(err.field, "mirrors[0].blobs", "{text}");
            assert!(err.message.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn registry_base_splits_prefix() {
        let b =
            RegistryBase::parse("upstream.registry", "https://us-central1-docker.pkg.dev/my-project/images").unwrap();
        assert_eq!(b.origin, "https://us-central1-docker.pkg.dev");
        assert_eq!(b.prefix.as_ref().unwrap().as_str(), "my-project/images");
        let name: RepoName = "pause".parse().unwrap();
        assert_eq!(
            b.url(&name, "tags/list"),
            "https://us-central1-docker.pkg.dev/v2/my-project/images/pause/tags/list"
        );
        let b = RegistryBase::parse("upstream.registry", "http://127.0.0.1:5000/").unwrap();
        assert_eq!(b.url(&name, "tags/list"), "http://127.0.0.1:5000/v2/pause/tags/list");
        let e = RegistryBase::parse("upstream.registry", "https://h/Bad_Prefix").unwrap_err();
        assert_eq!(e.field, "upstream.registry");
        assert!(RegistryBase::parse("upstream.registry", "https://h/x?y=1").is_err());
    }

    #[test]
    fn files_base() {
        let f = FilesBase::parse("upstream.files", "https://downloads.example.org/").unwrap();
        assert_eq!(f.url("/a/b"), "https://downloads.example.org/a/b");
        let f = FilesBase::parse("upstream.files", "https://h/release").unwrap();
        assert_eq!(f.url("/a"), "https://h/release/a");
    }

    #[test]
    fn trusted_proxies_and_names() {
        let nets = parse_trusted_proxies(&["10.0.0.0/8".into(), "::1".into(), "192.168.1.1".into()]).unwrap();
        assert_eq!(nets.len(), 3);
        let e = parse_trusted_proxies(&["10.0.0.0/8".into(), "nope".into()]).unwrap_err();
        assert_eq!(e.field, "trusted_proxies[1]");
        assert!(check_mirror_name("mirrors[0].name", "s3-us-east-2").is_ok());
        assert!(check_mirror_name("mirrors[0].name", "a b").is_err());
        assert_eq!(parse_serves("mirrors[3]", &[]).unwrap_err().field, "mirrors[3].serves");
        assert_eq!(parse_serves("mirrors[3]", &["ok".into(), "a b".into()]).unwrap_err().field, "mirrors[3].serves[1]");
    }

    #[test]
    fn yaml_unknown_field_refused() {
        let e = Config::from_yaml("upstream: {registry: https://h}\nlisen: 1\n", "ferry.yaml").unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
        let c =
            Config::from_yaml("upstream: {registry: https://h}\nlocations: {cidrs: {\"10.0.0.0/8\": \"x\"}}\n", "f")
                .unwrap();
        assert_eq!(c.locations.cidrs.len(), 1);
        let e = Config::from_yaml("upstream: {registry: https://h}\nlocations: {anything: [1, 2]}\n", "f").unwrap_err();
        assert!(e.to_string().contains("anything"), "{e}");
    }

    #[test]
    fn deeply_nested_yaml_is_refused_before_parsing() {
        let n = 100_000;
        for deep in ["[".repeat(n) + &"]".repeat(n), "{a: ".repeat(n) + "x" + &"}".repeat(n)] {
            let text = format!("upstream: {{registry: https://h}}\nmirrors: {deep}\n");
            let e = Config::from_yaml(&text, "ferry.yaml").unwrap_err();
            assert_eq!(e.field, "ferry.yaml:2");
            assert!(e.message.contains("nested deeper than 64 levels"), "{e}");
        }
    }
}
