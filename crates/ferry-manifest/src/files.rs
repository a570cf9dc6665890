//! kpromo's file promotion manifests (`kpromo run files`), read into validated types.
//!
//! Two inputs, as kpromo reads them (see `docs/files.md`):
//! - a manifests directory ([`load_files_dir`]): `filestores/<project>/filepromoter-manifest.yaml`
//!   holds the stores and `manifests/<project>/` the files, merged from every YAML file in it;
//! - a pair ([`load_files`]): one filestores file and one files manifest or directory of them.
//!
//! Every check happens here, before any store is touched: exactly one source and at least one
//! destination, each file name a safe [`ObjectName`] (no absolute paths, `..`, empty segments or
//! control characters), each sha256 64 hex digits. Every error names the file and line.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ferry_oci::Digest;
use ferry_oci::ObjectName;
use serde::Deserialize;

use crate::error::{ManifestError, ManifestErrors};
use crate::lines::{Document, List};
use crate::schema::{null_as_default, yaml11_bool, Checked};
use crate::{load, sorted_entries};

const FILESTORES_FILE: &str = "filepromoter-manifest.yaml";

/// One project: every file is promoted from `source` to each of `destinations`.
#[derive(Debug, Clone)]
pub struct FileManifest {
    /// The filestores file.
    pub filestores_path: PathBuf,
    /// The one store with `src: true`: files are read from it, never written to it.
    pub source: Filestore,
    /// In file order; at least one.
    pub destinations: Vec<Filestore>,
    /// In the order read (files sorted by path, entries in file order); at least one.
    pub files: Vec<FileEntry>,
}

/// One `filestores` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filestore {
    /// A store URL or local path with an optional prefix, exactly as written (`gs://bucket/dir/`).
    pub base: String,
    /// kpromo impersonates this account on GCP; Ferry takes credentials from each cloud's
    /// standard environment instead, so it is kept only for messages.
    pub service_account: Option<String>,
    /// The 1-based line of this entry in the filestores file.
    pub line: usize,
}

/// One `files` entry: `name` (relative to each store's base) must hold exactly the bytes whose
/// sha256 is `sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The file's name relative to each store's base.
    pub name: ObjectName,
    /// The digest the file's bytes must have: the entry's 64 hex digits, lower-cased, as `sha256:<hex>`.
    pub sha256: Digest,
    /// The files manifest this entry is in, and its 1-based line there.
    pub path: PathBuf,
    /// The 1-based line of this entry in `path`.
    pub line: usize,
}

impl FileEntry {
    /// `path:line`, for reports.
    pub fn origin(&self) -> String {
        format!("{}:{}", self.path.display(), self.line)
    }
}

/// Reads a kpromo file-promotion manifests directory: one manifest per directory
/// `DIR/filestores/<project>/` (sorted by name), which must hold `filepromoter-manifest.yaml`,
/// with its files from the YAML files under `DIR/manifests/<project>/`. Every error of every
/// project is reported, not only the first.
pub fn load_files_dir(dir: &Path) -> Result<Vec<FileManifest>, ManifestErrors> {
    let filestores_dir = dir.join("filestores");
    let mut errors = Vec::new();
    let mut projects = Vec::new();
    for entry in sorted_entries(&filestores_dir)? {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => projects.push(entry.file_name()),
            Ok(_) => {}
            Err(e) => errors.push(ManifestError::file(&path, format!("cannot read: {e}"))),
        }
    }
    if projects.is_empty() && errors.is_empty() {
        errors.push(ManifestError::file(
            &filestores_dir,
            format!("no projects: expected filestores/<project>/{FILESTORES_FILE}"),
        ));
    }
    let manifests = projects
        .iter()
        .filter_map(|project| {
            let filestores = filestores_dir.join(project).join(FILESTORES_FILE);
            load_project(&filestores, &dir.join("manifests").join(project), &mut errors)
        })
        .collect();
    ManifestErrors::check(errors)?;
    Ok(manifests)
}

/// Reads one filestores file and the files manifest at `files`: a file, or a directory whose
/// YAML files (`*.yaml`, `*.yml`, recursively, in path order) are merged. Every error of every
/// file is reported, not only the first.
pub fn load_files(filestores: &Path, files: &Path) -> Result<FileManifest, ManifestErrors> {
    let mut errors = Vec::new();
    let manifest = load_project(filestores, files, &mut errors);
    ManifestErrors::check(errors)?;
    Ok(manifest.expect("a manifest when there is no error"))
}

/// [`load_files`], adding the errors to `errors`; `None` if there were any.
fn load_project(filestores: &Path, files: &Path, errors: &mut Vec<ManifestError>) -> Option<FileManifest> {
    let before = errors.len();
    let stores = load::<FilesDoc>(filestores, errors).and_then(|(parsed, text)| {
        let document = Document::parse(&text);
        if !parsed.files.is_empty() {
            errors.push(ManifestError::at(
                filestores,
                document.entry_lines(List::Key("files")).first().copied(),
                "files must not be listed with the filestores: put them in the files manifests",
            ));
        }
        filestores_of(filestores, &document, parsed.filestores, errors)
    });

    let files_before = errors.len();
    let paths = match fs::metadata(files) {
        Ok(m) if m.is_dir() => {
            let mut found = Vec::new();
            find_yaml(files, &mut found, errors);
            found
        }
        Ok(_) => vec![files.to_path_buf()],
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            errors.push(ManifestError::file(
                files,
                format!("missing: {} needs its files listed here", filestores.display()),
            ));
            Vec::new()
        }
        Err(e) => {
            errors.push(ManifestError::file(files, format!("cannot read: {e}")));
            Vec::new()
        }
    };
    let mut listed = 0;
    let mut entries: Vec<FileEntry> = Vec::new();
    let mut seen: HashMap<ObjectName, usize> = HashMap::new();
    for path in paths {
        let Some((parsed, text)) = load::<FilesDoc>(&path, errors) else { continue };
        listed += parsed.files.len();
        let document = Document::parse(&text);
        if !parsed.filestores.is_empty() {
            errors.push(ManifestError::at(
                &path,
                document.entry_lines(List::Key("filestores")).first().copied(),
                format!("filestores must not be listed with the files: put them in {FILESTORES_FILE}"),
            ));
        }
        let nodes = document.list(List::Key("files"));
        for (i, raw) in parsed.files.into_iter().enumerate() {
            // Where yaml-rust2 stopped short of a node (see `Document`), the enclosing line stands in.
            let node = nodes.get(i);
            let line = node.map_or(1, |n| document.line(n));
            let line_of = |key: &str| node.and_then(|n| n.get(key)).map_or(line, |n| document.line(n));
            let name = raw.name.value.map_err(|e| {
                errors.push(ManifestError::at(&path, Some(line_of("name")), format!("files[{i}].name: {e}")))
            });
            let sha256 = raw.sha256.value.map_err(|e| {
                errors.push(ManifestError::at(&path, Some(line_of("sha256")), format!("files[{i}].sha256: {e}")))
            });
            let (Ok(Name(name)), Ok(Sha256(sha256))) = (name, sha256) else { continue };
            let entry = FileEntry { name, sha256, path: path.clone(), line };
            match seen.get(&entry.name).map(|&j| &entries[j]) {
                // The same file listed twice (say in two release manifests) is one file.
                Some(first) if first.sha256 == entry.sha256 => continue,
                Some(first) => {
                    errors.push(ManifestError::at(
                        &path,
                        Some(line),
                        format!(
                            "file {} is listed with sha256 {} here and {} at {}",
                            entry.name,
                            entry.sha256.hex(),
                            first.sha256.hex(),
                            first.origin()
                        ),
                    ));
                    continue;
                }
                None => {}
            }
            seen.insert(entry.name.clone(), entries.len());
            entries.push(entry);
        }
    }
    if listed == 0 && errors.len() == files_before {
        // kpromo refuses this too: an empty project is far more likely a wrong path than intent.
        errors.push(ManifestError::file(files, "no files: list at least one under `files:`"));
    }
    let (source, destinations) = stores?;
    (errors.len() == before).then(|| FileManifest {
        filestores_path: filestores.to_path_buf(),
        source,
        destinations,
        files: entries,
    })
}

/// Collects the YAML files under `dir`, recursively, in path order. Other files (`OWNERS`,
/// `README.md`) are skipped: kpromo parses them too but, reading YAML leniently, finds nothing in
/// them. Symlinked directories are not followed.
fn find_yaml(dir: &Path, found: &mut Vec<PathBuf>, errors: &mut Vec<ManifestError>) {
    let entries = match sorted_entries(dir) {
        Ok(entries) => entries,
        Err(e) => return errors.push(e),
    };
    for entry in entries {
        let path = entry.path();
        match entry.file_type() {
            Err(e) => errors.push(ManifestError::file(&path, format!("cannot read: {e}"))),
            Ok(t) if t.is_dir() => find_yaml(&path, found, errors),
            Ok(_) if path.extension().is_some_and(|e| e == "yaml" || e == "yml") => found.push(path),
            Ok(_) => {}
        }
    }
}

/// Splits `filestores:` into the source and the destinations: exactly one `src: true`, at least
/// one other, every base set, and no base twice. `None` (with the reasons added to `errors`) if
/// it cannot.
fn filestores_of(
    path: &Path,
    document: &Document,
    entries: Vec<FilestoreDoc>,
    errors: &mut Vec<ManifestError>,
) -> Option<(Filestore, Vec<Filestore>)> {
    let lines = document.entry_lines(List::Key("filestores"));
    let before = errors.len();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut source: Option<Filestore> = None;
    // A store without a base could have been the source or the one destination, and a second
    // source or a repeated store the intended destination: nothing is said about a missing one
    // then.
    let (mut source_unclear, mut destination_unclear) = (false, false);
    let mut destinations = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(1);
        let mut fail = |message: String| errors.push(ManifestError::at(path, Some(line), message));
        if entry.base.trim().is_empty() {
            fail("filestore has no base: set `base:` to a store URL or path".into());
            if entry.src {
                source_unclear = true;
            } else {
                destination_unclear = true;
            }
            continue;
        }
        // `gs://b/dir` and `gs://b/dir/` are the same place.
        let key = entry.base.trim_end_matches('/').to_string();
        if let Some(first) = seen.get(&key) {
            fail(format!("filestore {} is listed twice (line {first})", entry.base));
            destination_unclear = true;
            continue;
        }
        seen.insert(key, line);
        let store = Filestore { base: entry.base, service_account: entry.service_account, line };
        if !entry.src {
            destinations.push(store);
        } else if let Some(first) = &source {
            fail(format!(
                "second source filestore {}: only one may have `src: true`, and {} (line {}) already does",
                store.base, first.base, first.line
            ));
            destination_unclear = true;
        } else {
            source = Some(store);
        }
    }
    match &source {
        None if !source_unclear => errors.push(ManifestError::at(
            path,
            lines.first().copied(),
            "no source filestore: exactly one filestore must have `src: true`",
        )),
        Some(source) if destinations.is_empty() && !destination_unclear => errors.push(ManifestError::at(
            path,
            Some(source.line),
            format!("no destination filestore: {} is the source; list at least one without `src: true`", source.base),
        )),
        _ => {}
    }
    let source = source?;
    (errors.len() == before).then_some((source, destinations))
}

/// Either file kpromo reads: a filestores manifest or a files manifest (each must leave the
/// other's list out). Unknown fields are refused, so a misspelt `sha256` cannot go unnoticed.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FilesDoc {
    #[serde(default, deserialize_with = "null_as_default")]
    filestores: Vec<FilestoreDoc>,
    #[serde(default, deserialize_with = "null_as_default")]
    files: Vec<FileDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilestoreDoc {
    #[serde(default)]
    base: String,
    #[serde(default, deserialize_with = "yaml11_bool")]
    src: bool,
    #[serde(rename = "service-account", default)]
    service_account: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    name: Checked<Name>,
    sha256: Checked<Sha256>,
}

/// A file name, checked as an [`ObjectName`] while deserializing so the error has its own line.
struct Name(ObjectName);

impl FromStr for Name {
    type Err = ferry_oci::ObjectNameError;
    fn from_str(s: &str) -> Result<Name, Self::Err> {
        ObjectName::parse(s).map(Name)
    }
}

/// A sha256 as kpromo takes it: 64 hex digits. Upper case is accepted (kpromo's `hex.DecodeString`
/// does) and read as the same hash in lower case.
struct Sha256(Digest);

impl FromStr for Sha256 {
    type Err = String;
    fn from_str(s: &str) -> Result<Sha256, String> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            let shown: String = s.chars().take(80).collect();
            return Err(format!("invalid sha256 {shown:?}: expected 64 hex digits"));
        }
        let digest = format!("sha256:{}", s.to_ascii_lowercase()).parse().map_err(|e: ferry_oci::DigestError| e.0)?;
        Ok(Sha256(digest))
    }
}
