//! An immutable, fully validated view of the configuration and inventories. A reload builds a
//! whole new [`Snapshot`] and swaps it in (see [`crate::AppState::reload`]); a request
//! always sees one consistent snapshot.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;

use crate::blocking::off_runtime;
use crate::config::{
    check_mirror_name, is_local_folder, parse_local_folder, parse_public_url, parse_serves, parse_trusted_proxies,
    Config, ConfigError, FilesBase, RegistryBase, Template,
};
use crate::decision::{Holding, Object};
use crate::glob::Pattern;
use crate::inventory::{self, Inventory, InventoryError};
use crate::remote_inventory::{self, RemoteInventories};

/// The validated `upstream` section.
#[derive(Debug)]
pub struct Upstream {
    /// Where blobs, manifests and tags lists go when no mirror answers.
    pub registry: RegistryBase,
    /// Where signature tags and referrers go; `None`: to `registry`.
    pub signatures: Option<RegistryBase>,
    /// The origin of release files; `None`: file paths are `404`.
    pub files: Option<FilesBase>,
}

/// One validated mirror.
#[derive(Debug)]
pub struct Mirror {
    /// Its unique name.
    pub name: String,
    /// Where its blobs are (for a local folder, Ferry's own `/_ferry/mirrors/` URL); `None`: it
    /// serves no blobs.
    pub blobs: Option<Template>,
    /// The same for release files.
    pub files: Option<Template>,
    /// Which clients it serves (never empty).
    pub serves: Vec<Pattern>,
    /// Share of objects among equally specific mirrors (at least 1).
    pub weight: u32,
    /// The source as configured, if any.
    pub inventory_source: Option<String>,
    /// When present, the mirror is trusted for exactly what it lists (no probe).
    pub inventory: Option<Arc<Inventory>>,
    /// The folder Ferry serves this mirror's blobs from itself (canonical), if `blobs` is local.
    pub local_blobs: Option<PathBuf>,
    /// The same for `files`.
    pub local_files: Option<PathBuf>,
    /// Whether every redirect to this mirror is proxied (`mirrors[].proxy`).
    pub proxy: bool,
}

impl Mirror {
    /// The local folder holding this kind of object, if Ferry serves it itself.
    pub fn local_dir(&self, object: Object<'_>) -> Option<&Path> {
        match object {
            Object::Blob(_) => self.local_blobs.as_deref(),
            Object::File(_) => self.local_files.as_deref(),
        }
    }

    /// Whether a remote template (not a local folder) serves blobs or files: such a mirror is
    /// health-probed, and presence-probed when it has no inventory.
    pub fn is_remote(&self) -> bool {
        (self.blobs.is_some() && self.local_blobs.is_none()) || (self.files.is_some() && self.local_files.is_none())
    }

    /// For a local-folder mirror (of this kind of object): whether the file is in the folder,
    /// a `stat` (symlinks resolving outside the folder count as absent). `None` for a remote one.
    pub fn local_holds(&self, object: Object<'_>) -> Option<Holding> {
        let dir = self.local_dir(object)?;
        let held = match object {
            Object::Blob(d) => resolve_in_folder(dir, d.as_str()),
            Object::File(p) => resolve_in_folder(dir, p.relative()),
        };
        Some(if held.is_some() { Holding::Yes } else { Holding::No })
    }
}

/// Everything a request is routed with: validated configuration, inventories and locator.
pub struct Snapshot {
    /// Socket address to listen on (only the first snapshot's counts).
    pub listen: SocketAddr,
    /// See [`Config::max_connections`]; like `listen`, only the first snapshot's counts.
    pub max_connections: usize,
    /// See [`Config::shutdown_grace`]; only the first snapshot's counts.
    pub shutdown_grace: std::time::Duration,
    /// The per-client rate limit (`limits`), if any.
    pub limits: Option<Limits>,
    /// `tls`: the certificate and key files; only the first snapshot's decides HTTPS or not.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Where requests no mirror answers go.
    pub upstream: Upstream,
    /// The mirrors, in configuration order.
    pub mirrors: Vec<Mirror>,
    /// Maps a client address to its location label.
    pub locator: ferry_locate::Locator,
    /// Files whose change should trigger a reload (config + local inventories).
    pub watched: Vec<PathBuf>,
    /// Remote inventory sources, refreshed periodically (see [`crate::remote_inventory`]).
    pub remote_sources: Vec<String>,
    /// Remote `locations` files (range files, the country database), refreshed the same way.
    pub remote_files: Vec<String>,
    /// Whether any mirror without an inventory is remote (so presence probes may be needed);
    /// when none is, the prober is never consulted on the request path.
    pub probes_presence: bool,
    /// The clients whose redirects are proxied (`proxy`); `None` when there are none.
    pub proxy: Option<ClientMatch>,
    /// Whether any request may be proxied (`proxy` or a mirror's `proxy: true`): when not, the
    /// redirect path never looks further (one `bool`).
    pub proxies: bool,
    /// See [`Config::proxy_max_streams`]; only the first snapshot's counts.
    pub proxy_max_streams: usize,
    /// Mirror copies of blobs taken out of use after they streamed wrong bytes (kept across
    /// reloads: [`crate::AppState`] hands the set on to the next snapshot).
    pub withdrawn: Arc<Withdrawn>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("listen", &self.listen)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("upstream", &self.upstream)
            .field("mirrors", &self.mirrors)
            .finish_non_exhaustive()
    }
}

/// Any error building a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A mirror's inventory cannot be read, fetched or parsed.
    #[error("{field}: {source}")]
    Inventory {
        /// The field naming the inventory (`mirrors[1].inventory`).
        field: String,
        /// What went wrong with it.
        source: inventory::InventoryError,
    },
    /// The `locations` files cannot be loaded.
    #[error("locations: {0}")]
    Locations(#[from] ferry_locate::LocateError),
}

impl Snapshot {
    /// The size the inventories record for `object`: the chosen mirror's (`mirror`, an index
    /// into [`Snapshot::mirrors`]) first, else the first mirror's that records one (for a
    /// redirect to the upstream). `None` when no inventory records it.
    pub fn object_size(&self, object: Object<'_>, mirror: Option<usize>) -> Option<u64> {
        let size = |m: &Mirror| {
            let inventory = m.inventory.as_deref()?;
            match object {
                Object::Blob(d) => inventory.blob_size(d),
                Object::File(p) => inventory.file_size(p),
            }
        };
        mirror.and_then(|i| self.mirrors.get(i)).and_then(size).or_else(|| self.mirrors.iter().find_map(size))
    }

    /// Validates `config` and loads every inventory. Relative inventory paths resolve against
    /// `base_dir` (the configuration file's folder), and so do the `locations` files, from which
    /// the locator is built. Remote inventories (`http(s)://`, object stores) are taken from
    /// `fetched` (see [`Snapshot::load_fetching`]); one missing there is an error.
    pub fn from_config_with(
        config: Config,
        base_dir: &Path,
        fetched: &HashMap<String, Arc<Inventory>>,
        files: &HashMap<String, Arc<Vec<u8>>>,
    ) -> Result<Snapshot, SnapshotError> {
        let limits = config.limits.as_ref().map(Limits::from_config).transpose()?;
        warn_plain_http_behind_https(&config);
        let tls = config.tls.as_ref().map(|t| crate::tls::TlsFiles {
            cert: crate::tls::resolve(base_dir, &t.cert),
            key: crate::tls::resolve(base_dir, &t.key),
        });
        let proxy = match config.proxy.is_empty() {
            true => None,
            false => Some(ClientMatch::parse("proxy", &config.proxy)?),
        };
        if config.proxy_max_streams == 0 {
            return Err(ConfigError::new("proxy_max_streams", "must be at least 1").into());
        }
        if !(config.shutdown_grace.is_finite() && (0.0..=3600.0).contains(&config.shutdown_grace)) {
            return Err(ConfigError::new("shutdown_grace", "must be a number of seconds from 0 to 3600").into());
        }
        if config.max_connections == 0 {
            return Err(ConfigError::new("max_connections", "must be at least 1").into());
        }
        let trusted_proxies = parse_trusted_proxies(&config.trusted_proxies)?;
        let public_url = config.public_url.as_deref().map(parse_public_url).transpose()?.unwrap_or_default();
        let upstream = Upstream {
            registry: RegistryBase::parse("upstream.registry", &config.upstream.registry)?,
            signatures: config
                .upstream
                .signatures
                .as_deref()
                .map(|s| RegistryBase::parse("upstream.signatures", s))
                .transpose()?,
            files: config.upstream.files.as_deref().map(|s| FilesBase::parse("upstream.files", s)).transpose()?,
        };
        let mut names = HashSet::new();
        let mut mirrors = Vec::with_capacity(config.mirrors.len());
        let mut watched = Vec::new();
        let mut remote_sources = Vec::new();
        for (i, m) in config.mirrors.into_iter().enumerate() {
            let field = format!("mirrors[{i}]");
            check_mirror_name(&format!("{field}.name"), &m.name)?;
            if !names.insert(m.name.clone()) {
                return Err(
                    ConfigError::new(format!("{field}.name"), format!("duplicate mirror name {:?}", m.name)).into()
                );
            }
            // A URL template, or a local folder that Ferry serves itself under
            // /_ferry/mirrors/<name>/<kind>/ (the redirect goes there).
            let target = |kind: &str, text: Option<&str>, placeholder: &str| -> Result<_, ConfigError> {
                let kind_field = format!("{field}.{kind}");
                Ok(match text {
                    None => (None, None),
                    Some(t) if is_local_folder(t) => {
                        if m.name.starts_with('.') {
                            return Err(ConfigError::new(
                                format!("{field}.name"),
                                "a local-folder mirror's name is part of its URL path: it must not start with '.'",
                            ));
                        }
                        let dir = parse_local_folder(&kind_field, t, base_dir)?;
                        let path = format!("{}{}/{kind}/", crate::request::LOCAL_CONTENT, m.name);
                        (Some(Template::local_content(&public_url, path)), Some(dir))
                    }
                    Some(t) => (Some(Template::parse(&kind_field, t, placeholder)?), None),
                })
            };
            let (blobs, local_blobs) = target("blobs", m.blobs.as_deref(), "{digest}")?;
            let (files, local_files) = target("files", m.files.as_deref(), "{path}")?;
            if blobs.is_none() && files.is_none() {
                return Err(ConfigError::new(field, "a mirror needs `blobs`, `files` or both").into());
            }
            let serves = parse_serves(&field, &m.serves)?;
            if m.weight == 0 {
                return Err(ConfigError::new(format!("{field}.weight"), "must be at least 1").into());
            }
            let inventory = match &m.inventory {
                None => None,
                Some(source) => {
                    let ifield = format!("{field}.inventory");
                    let wrap = |source| SnapshotError::Inventory { field: ifield.clone(), source };
                    if remote_inventory::is_remote(source) {
                        remote_sources.push(source.clone());
                        Some(fetched.get(source).cloned().ok_or_else(|| {
                            wrap(InventoryError::Source { file: source.clone(), message: "not fetched".into() })
                        })?)
                    } else {
                        watched.push(inventory::resolve(source, base_dir).map_err(wrap)?);
                        Some(Arc::new(Inventory::load(source, base_dir).map_err(wrap)?))
                    }
                }
            };
            mirrors.push(Mirror {
                name: m.name,
                blobs,
                files,
                serves,
                weight: m.weight,
                inventory_source: m.inventory,
                inventory,
                local_blobs,
                local_files,
                proxy: m.proxy,
            });
        }
        let mut locations = config.locations;
        let mut remote_files = Vec::new();
        for path in locations
            .aws
            .iter_mut()
            .chain(&mut locations.gcp)
            .chain(&mut locations.azure)
            .chain(&mut locations.countries)
        {
            let text = path.to_string_lossy();
            if remote_inventory::is_remote(&text) {
                remote_files.push(text.into_owned());
                continue;
            }
            *path = base_dir.join(&*path);
            watched.push(path.clone());
        }
        // Remote range files were fetched by the caller; the others are read here.
        let read = |path: &Path| -> std::io::Result<Vec<u8>> {
            let key = path.to_string_lossy();
            match files.get(key.as_ref()) {
                Some(bytes) => Ok(bytes.to_vec()),
                None if remote_inventory::is_remote(&key) => Err(std::io::Error::other("not fetched")),
                None => std::fs::read(path),
            }
        };
        let locator = ferry_locate::Locator::load_with(&locations, &read)?;
        let probes_presence = mirrors.iter().any(|m| m.inventory.is_none() && m.is_remote());
        let proxies = proxy.is_some() || mirrors.iter().any(|m| m.proxy);
        Ok(Snapshot {
            listen: config.listen,
            max_connections: config.max_connections,
            shutdown_grace: std::time::Duration::from_secs_f64(config.shutdown_grace),
            limits,
            tls,
            trusted_proxies,
            upstream,
            mirrors,
            locator,
            watched,
            remote_sources,
            remote_files,
            probes_presence,
            proxy,
            proxies,
            proxy_max_streams: config.proxy_max_streams,
            withdrawn: Arc::default(),
        })
    }

    /// [`Snapshot::from_config_with`] for a configuration without remote inventories.
    pub fn from_config(config: Config, base_dir: &Path) -> Result<Snapshot, SnapshotError> {
        Snapshot::from_config_with(config, base_dir, &HashMap::new(), &HashMap::new())
    }

    /// Reads, validates and loads `path` and the local inventories it names (a remote one is an
    /// error: see [`Snapshot::load_fetching`]).
    pub fn load(path: &Path) -> Result<Snapshot, SnapshotError> {
        Snapshot::build(path, Config::from_file(path)?, &HashMap::new(), &HashMap::new())
    }

    /// [`Snapshot::load`], with remote inventories taken from `remote` (fetched there first if
    /// it does not have them yet).
    /// Files are read and parsed on a blocking thread (`blocking::off_runtime`).
    pub async fn load_fetching(path: &Path, remote: &RemoteInventories) -> Result<Snapshot, SnapshotError> {
        let config = {
            let path = path.to_path_buf();
            off_runtime(move || Config::from_file(&path)).await?
        };
        let mut fetched = HashMap::new();
        for (i, m) in config.mirrors.iter().enumerate() {
            if let Some(source) = m.inventory.as_deref().filter(|s| remote_inventory::is_remote(s)) {
                let field = format!("mirrors[{i}].inventory");
                let inventory =
                    remote.get(source).await.map_err(|source| SnapshotError::Inventory { field, source })?;
                fetched.insert(source.to_string(), inventory);
            }
        }
        let mut files = HashMap::new();
        let locations = &config.locations;
        let sources = locations.aws.iter().chain(&locations.gcp).chain(&locations.azure).chain(&locations.countries);
        for source in sources.map(|p| p.to_string_lossy().into_owned()).filter(|s| remote_inventory::is_remote(s)) {
            let bytes = remote
                .get_file(&source)
                .await
                .map_err(|e| SnapshotError::Inventory { field: "locations".into(), source: e })?;
            files.insert(source, bytes);
        }
        let path = path.to_path_buf();
        off_runtime(move || Snapshot::build(&path, config, &fetched, &files)).await
    }

    fn build(
        path: &Path,
        config: Config,
        fetched: &HashMap<String, Arc<Inventory>>,
        files: &HashMap<String, Arc<Vec<u8>>>,
    ) -> Result<Snapshot, SnapshotError> {
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut snapshot = Snapshot::from_config_with(config, &base_dir, fetched, files)?;
        snapshot.watched.insert(0, path.to_path_buf());
        Ok(snapshot)
    }

    /// Whether `ip` is one of the `trusted_proxies`.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// `dir/relative`, if it is a regular file whose real path (symlinks resolved) is inside `dir`
/// (itself canonical). `relative` is a validated digest or file path.
pub fn resolve_in_folder(dir: &Path, relative: &str) -> Option<PathBuf> {
    let path = std::fs::canonicalize(dir.join(relative)).ok()?;
    (path.starts_with(dir) && path.is_file()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<Snapshot, SnapshotError> {
        Snapshot::from_config(Config::from_yaml(text, "t").unwrap(), Path::new("/nonexistent"))
    }

    #[test]
    fn full_example_builds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inv.txt"), "/bin/x\n").unwrap();
        let text = r#"
listen: 127.0.0.1:9000
trusted_proxies: ["10.0.0.0/8"]
upstream:
  registry: https://us-central1-docker.pkg.dev/my-project/images
  files: https://downloads.example.org/
  signatures: https://sigs.example.org/sigs
locations: {cidrs: {"198.51.100.0/24": "isp:example"}}
mirrors:
  - name: s3-us-east-2
    blobs: https://bucket.s3.us-east-2.amazonaws.com/containers/images/{digest}
    files: https://bucket.s3.us-east-2.amazonaws.com/binaries/{path}
    serves: ["aws:us-east-2", "aws:us-east-1"]
    inventory: inv.txt
    weight: 2
  - name: everywhere
    blobs: https://cdn.example.org/{digest}
    serves: ["*"]
"#;
        std::fs::write(dir.path().join("ferry.yaml"), text).unwrap();
        let s = Snapshot::load(&dir.path().join("ferry.yaml")).unwrap();
        assert_eq!(s.mirrors.len(), 2);
        assert_eq!(s.mirrors[0].weight, 2);
        assert_eq!(s.mirrors[0].inventory.as_ref().unwrap().file_count(), 1);
        assert_eq!(s.watched.len(), 2);
        assert!(s.is_trusted_proxy("10.1.2.3".parse().unwrap()));
        assert!(s.is_trusted_proxy("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!s.is_trusted_proxy("11.1.2.3".parse().unwrap()));
    }

    #[test]
    fn errors_name_the_field() {
        let base = "upstream: {registry: https://r}\n";
        let cases = [
            ("upstream: {registry: 'ftp://r'}", "upstream.registry"),
            ("upstream: {registry: https://r, files: /x}", "upstream.files"),
            ("upstream: {registry: https://r, signatures: 'https://s/UP'}", "upstream.signatures"),
            (&format!("{base}mirrors: [{{name: a, serves: ['*']}}]"), "mirrors[0]"),
            (&format!("{base}mirrors: [{{name: a, blobs: 'https://m/x', serves: ['*']}}]"), "mirrors[0].blobs"),
            (&format!("{base}mirrors: [{{name: a, files: 'https://m/{{digest}}', serves: ['*']}}]"), "mirrors[0].files"),
            (&format!("{base}mirrors: [{{name: a, blobs: 'https://m/{{digest}}'}}]"), "mirrors[0].serves"),
            (&format!("{base}mirrors: [{{name: a, blobs: 'https://m/{{digest}}', serves: ['a b']}}]"), "mirrors[0].serves[0]"),
            (&format!("{base}mirrors: [{{name: a, blobs: 'https://m/{{digest}}', serves: ['*'], weight: 0}}]"), "mirrors[0].weight"),
            (
                &format!("{base}mirrors: [{{name: a, blobs: 'https://m/{{digest}}', serves: ['*']}}, {{name: a, blobs: 'https://m/{{digest}}', serves: ['*']}}]"),
                "mirrors[1].name",
            ),
            (&format!("{base}trusted_proxies: [x]"), "trusted_proxies[0]"),
        ];
        for (text, field) in cases {
            match yaml(text) {
                Err(SnapshotError::Config(e)) => assert_eq!(e.field, field, "{text}: {e}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let e = yaml(&format!(
            "{base}mirrors: [{{name: a, blobs: 'https://m/{{digest}}', serves: ['*'], inventory: nope.txt}}]"
        ))
        .unwrap_err();
        assert!(e.to_string().starts_with("mirrors[0].inventory: nope.txt: cannot read"), "{e}");
    }
}

/// `limits`, checked: the rate and who is exempt from it.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Each client's rate.
    pub rate: crate::limit::Rate,
    exempt: ClientMatch,
}

impl Limits {
    fn from_config(config: &crate::config::LimitsConfig) -> Result<Limits, ConfigError> {
        let per_client = &config.per_client;
        if per_client.requests_per_minute == 0 {
            return Err(ConfigError::new("limits.per_client.requests_per_minute", "must be at least 1"));
        }
        if per_client.burst == 0 {
            return Err(ConfigError::new("limits.per_client.burst", "must be at least 1"));
        }
        let exempt = ClientMatch::parse("limits.exempt", &config.exempt)?;
        let rate = crate::limit::Rate::new(per_client.requests_per_minute, per_client.burst);
        Ok(Limits { rate, exempt })
    }

    /// Whether `client` (at location `label`) is never limited.
    pub fn exempts(&self, client: std::net::IpAddr, label: Option<&str>) -> bool {
        // A client without a label is exempt by address only.
        self.exempt.nets.iter().any(|net| net.contains(&client))
            || (label.is_some() && self.exempt.matches(client, label))
    }
}

/// A list of clients as `limits.exempt` and `proxy` write it: CIDR ranges or addresses, and
/// location labels or label globs.
#[derive(Debug, Clone, Default)]
pub struct ClientMatch {
    nets: Vec<IpNet>,
    labels: Vec<Pattern>,
}

impl ClientMatch {
    /// Parses `entries`; an error names `field[i]`.
    fn parse(field: &str, entries: &[String]) -> Result<ClientMatch, ConfigError> {
        let (mut nets, mut labels) = (Vec::new(), Vec::new());
        for (i, entry) in entries.iter().enumerate() {
            let field = || format!("{field}[{i}]");
            if let Ok(net) = entry.parse::<IpNet>() {
                nets.push(net);
            } else if let Ok(ip) = entry.parse::<std::net::IpAddr>() {
                nets.push(IpNet::from(ip));
            } else if entry.contains('/') || entry.parse::<std::net::Ipv6Addr>().is_ok() {
                return Err(ConfigError::new(field(), format!("{entry:?} is not a valid CIDR range")));
            } else {
                labels.push(Pattern::parse(entry).map_err(|e| ConfigError::new(field(), e))?);
            }
        }
        Ok(ClientMatch { nets, labels })
    }

    /// Whether `client` (at location `label`) is on the list (`*` matches every client, with a
    /// label or without, as in `serves`).
    pub fn matches(&self, client: std::net::IpAddr, label: Option<&str>) -> bool {
        self.nets.iter().any(|net| net.contains(&client)) || self.labels.iter().any(|p| p.matches(label))
    }
}

/// Mirror copies of blobs that streamed bytes not matching their digest (proxy mode), taken out
/// of the routing: the router skips such a mirror for that digest. At most [`Withdrawn::MAX`]
/// are kept (more are logged but not remembered). While the set is empty (the usual case), the
/// router learns that from one relaxed load.
#[derive(Debug, Default)]
pub struct Withdrawn {
    any: std::sync::atomic::AtomicBool,
    /// Digest -> the mirrors whose copy is withdrawn (looked up by `&str`, without allocating).
    set: std::sync::RwLock<HashMap<String, Vec<String>>>,
}

impl Withdrawn {
    /// The most digests remembered.
    pub const MAX: usize = 100_000;

    /// Takes `mirror`'s copy of `digest` out of use; `false` when the set is full.
    pub fn withdraw(&self, mirror: &str, digest: &str) -> bool {
        let mut set = self.set.write().expect("withdrawn lock");
        if set.len() >= Self::MAX {
            return false;
        }
        let mirrors = set.entry(digest.to_string()).or_default();
        if !mirrors.iter().any(|m| m == mirror) {
            mirrors.push(mirror.to_string());
        }
        self.any.store(true, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// Whether `mirror`'s copy of `digest` is out of use.
    #[inline]
    pub fn contains(&self, mirror: &str, digest: &str) -> bool {
        self.any.load(std::sync::atomic::Ordering::Relaxed)
            && self.set.read().expect("withdrawn lock").get(digest).is_some_and(|m| m.iter().any(|m| m == mirror))
    }
}

/// With an `https` `public_url`, clients sent on to a plain `http` upstream or mirror leave
/// HTTPS behind (and some refuse to follow): said once, at load.
fn warn_plain_http_behind_https(config: &Config) {
    if !config.public_url.as_deref().is_some_and(|u| u.starts_with("https://")) {
        return;
    }
    let upstream = &config.upstream;
    let mut plain: Vec<String> = [
        ("upstream.registry", Some(&upstream.registry)),
        ("upstream.files", upstream.files.as_ref()),
        ("upstream.signatures", upstream.signatures.as_ref()),
    ]
    .into_iter()
    .filter_map(|(field, url)| url.filter(|u| u.starts_with("http://")).map(|_| field.to_string()))
    .collect();
    for (i, mirror) in config.mirrors.iter().enumerate() {
        for (kind, template) in [("blobs", &mirror.blobs), ("files", &mirror.files)] {
            if template.as_deref().is_some_and(|t| t.starts_with("http://")) {
                plain.push(format!("mirrors[{i}].{kind}"));
            }
        }
    }
    if !plain.is_empty() {
        tracing::warn!(
            target: "ferry_serve",
            fields = %plain.join(", "),
            "public_url is https but these send clients to plain http"
        );
    }
}
