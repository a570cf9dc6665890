//! kpromo's image promotion manifests, read into validated types.
//!
//! Two layouts, as `kpromo cip` reads them (see `docs/manifests.md`):
//! - a thin directory ([`load_thin_dir`]): `manifests/<project>/promoter-manifest.yaml` holds the
//!   registries and `images/<project>/images.yaml` the images, so that the two can have different
//!   reviewers;
//! - a plain manifest ([`load_plain`]): `registries:` and `images:` in one file.
//!
//! File promotion manifests (`kpromo run files`) are read by [`load_files_dir`] and [`load_files`].
//!
//! Everything is checked here — digests, tags, names, registries, exactly one source — so the
//! planner only ever sees well-formed manifests, and every error names the file and line to fix.

mod edit;
mod error;
mod files;
mod lines;
mod schema;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ferry_oci::{Digest, RegistryAddress, RepoName, Tag};
use serde::de::DeserializeOwned;

pub use edit::{add_image_tags, EditError};
pub use error::{ManifestError, ManifestErrors, ManifestWarning};
pub use files::{load_files, load_files_dir, FileEntry, FileManifest, Filestore};
use lines::{Document, List};
use schema::{ImageEntry, PlainFile, RegistryEntry, ThinFile};

const MANIFEST_FILE: &str = "promoter-manifest.yaml";
const IMAGES_FILE: &str = "images.yaml";

/// One manifest: every image in `images` is promoted from `source` to each of `destinations`.
#[derive(Debug, Clone)]
pub struct PromotionManifest {
    /// The file the registries came from (`promoter-manifest.yaml`, or the plain manifest).
    pub path: PathBuf,
    /// The file the images came from (`images.yaml`, or the plain manifest), which
    /// [`Image::line`] refers to.
    pub images_path: PathBuf,
    /// The one registry with `src: true`: images are read from it, never written to it.
    pub source: RegistryAddress,
    /// In file order.
    pub destinations: Vec<RegistryAddress>,
    /// In file order. An image listed twice is here twice: expanding them into edges merges them.
    pub images: Vec<Image>,
    /// What was odd in either file but accepted, for the user to see (in line order).
    pub warnings: Vec<ManifestWarning>,
}

/// One `images` entry: repository `name` under every registry, and the digests to promote there.
#[derive(Debug, Clone)]
pub struct Image {
    /// The repository, relative to each registry's prefix.
    pub name: RepoName,
    /// Each digest with the tags to point at it.
    pub digests: BTreeMap<Digest, DigestTags>,
    /// The 1-based line of this entry in `images_path`.
    pub line: usize,
}

/// The tags one digest of an [`Image`] is to be promoted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestTags {
    /// No tags means promote by digest only.
    pub tags: Vec<Tag>,
    /// The 1-based line of the digest in `images_path`, so that a report can point at it in a
    /// long entry.
    pub line: usize,
}

/// Reads a thin manifest directory: one manifest per `DIR/manifests/<project>/promoter-manifest.yaml`
/// (sorted by path), with its images from `DIR/images/<project>/images.yaml`. Every error of
/// every project is reported, not only the first.
pub fn load_thin_dir(dir: &Path) -> Result<Vec<PromotionManifest>, ManifestErrors> {
    let manifests_dir = dir.join("manifests");
    match fs::metadata(&manifests_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(ManifestError::file(&manifests_dir, "not a directory").into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ManifestError::file(
                &manifests_dir,
                format!("missing: a thin manifest directory holds manifests/<project>/{MANIFEST_FILE}"),
            )
            .into())
        }
        Err(e) => return Err(ManifestError::file(&manifests_dir, format!("cannot read: {e}")).into()),
    }
    let mut errors = Vec::new();
    let mut found = Vec::new();
    find_manifests(&manifests_dir, 0, &mut found, &mut errors);
    if found.is_empty() && errors.is_empty() {
        // kpromo refuses this too: an empty directory is far more likely a wrong path than intent.
        errors.push(ManifestError::file(
            &manifests_dir,
            format!("no manifests: expected manifests/<project>/{MANIFEST_FILE}"),
        ));
    }
    let manifests = found.iter().filter_map(|path| load_project(dir, path, &mut errors)).collect();
    ManifestErrors::check(errors)?;
    Ok(manifests)
}

/// Reads a plain manifest, with both `registries:` and `images:`. Every error is reported, not
/// only the first.
pub fn load_plain(file: &Path) -> Result<PromotionManifest, ManifestErrors> {
    let mut errors = Vec::new();
    let manifest = load::<PlainFile>(file, &mut errors).and_then(|(plain, text)| {
        let mut warnings = Vec::new();
        let registries = registries(file, &text, plain.registries, &mut errors, &mut warnings);
        // kpromo's plain-manifest validation requires a non-empty dmap (it does not check images.yaml).
        let images = images(file, &text, List::Key("images"), plain.images, true, &mut errors, &mut warnings);
        let (source, destinations) = registries?;
        warnings.sort_by_key(|w| w.line);
        Some(PromotionManifest {
            path: file.to_path_buf(),
            images_path: file.to_path_buf(),
            source,
            destinations,
            images,
            warnings,
        })
    });
    ManifestErrors::check(errors)?;
    Ok(manifest.expect("a manifest when there is no error"))
}

/// Collects the `promoter-manifest.yaml` files under `dir` (`depth` levels below `manifests`),
/// refusing any that is not exactly one level down, as kpromo does.
fn find_manifests(dir: &Path, depth: usize, found: &mut Vec<PathBuf>, errors: &mut Vec<ManifestError>) {
    let entries = match sorted_entries(dir) {
        Ok(entries) => entries,
        Err(e) => return errors.push(e),
    };
    for entry in entries {
        let path = entry.path();
        // Not following symlinked directories, like kpromo's filepath.Walk: no loops, no escapes.
        match entry.file_type() {
            Err(e) => errors.push(ManifestError::file(&path, format!("cannot read: {e}"))),
            Ok(t) if t.is_dir() => find_manifests(&path, depth + 1, found, errors),
            Ok(_) if entry.file_name() != MANIFEST_FILE => {}
            Ok(_) if depth != 1 => errors.push(ManifestError::file(
                &path,
                format!("misplaced: a thin manifest must be at manifests/<project>/{MANIFEST_FILE}"),
            )),
            Ok(_) => found.push(path),
        }
    }
}

/// Reads one project of a thin directory; `None` if it has errors, which are added to `errors`.
fn load_project(dir: &Path, manifest: &Path, errors: &mut Vec<ManifestError>) -> Option<PromotionManifest> {
    let before = errors.len();
    let project = manifest.parent().and_then(Path::file_name).unwrap_or_default();
    let images_path = dir.join("images").join(project).join(IMAGES_FILE);
    let images_file = match fs::metadata(&images_path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(ManifestError::file(&images_path, "not a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ManifestError::file(
            &images_path,
            format!("missing: {} needs its images listed here", manifest.display()),
        )),
        Err(e) => Err(ManifestError::file(&images_path, format!("cannot read: {e}"))),
    };

    let mut warnings = Vec::new();
    let registries = load::<ThinFile>(manifest, errors)
        .and_then(|(thin, text)| registries(manifest, &text, thin.registries, errors, &mut warnings));
    let images = match images_file {
        Ok(()) => load::<Vec<ImageEntry>>(&images_path, errors)
            .map(|(entries, text)| images(&images_path, &text, List::Root, entries, false, errors, &mut warnings)),
        Err(e) => {
            errors.push(e);
            None
        }
    };

    let ((source, destinations), images) = (registries?, images?);
    (errors.len() == before).then(|| PromotionManifest {
        path: manifest.to_path_buf(),
        images_path,
        source,
        destinations,
        images,
        warnings,
    })
}

/// The directory's entries, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<fs::DirEntry>, ManifestError> {
    let unreadable = |e: io::Error| ManifestError::file(dir, format!("cannot read directory: {e}"));
    let mut entries = fs::read_dir(dir).map_err(unreadable)?.collect::<Result<Vec<_>, _>>().map_err(unreadable)?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Reads a YAML file, refusing one larger than `ferry_yaml::MAX_BYTES` without reading it whole.
fn read(path: &Path) -> Result<String, ManifestError> {
    ferry_yaml::read(path).map_err(|e| ManifestError::file(path, format!("cannot read: {e}")))
}

/// Deserializes `text`; an empty document (or one of only comments) is `T::default()`. Text
/// nested too deep is refused first, as serde_yaml_ng would take quadratic time on it.
fn parse<T: DeserializeOwned + Default>(path: &Path, text: &str) -> Result<T, ManifestError> {
    ferry_yaml::check(text).map_err(|e| ManifestError::at(path, e.line, e.message))?;
    serde_yaml_ng::from_str::<Option<T>>(text).map(Option::unwrap_or_default).map_err(|e| ManifestError::yaml(path, &e))
}

/// Reads and deserializes `path`, keeping its text for the lines of its nodes; `None` if it
/// cannot, the reason added to `errors`.
fn load<T: DeserializeOwned + Default>(path: &Path, errors: &mut Vec<ManifestError>) -> Option<(T, String)> {
    let loaded = read(path).and_then(|text| Ok((parse(path, &text)?, text)));
    loaded.map_err(|e| errors.push(e)).ok()
}

/// Splits `registries:` into the source and the destinations: exactly one `src: true` and at
/// least one other. A registry listed twice is one (with a warning, as kpromo accepts it), and
/// the source listed again without `src: true` is not a destination. `None` (with the reasons
/// added to `errors`) if it cannot.
fn registries(
    path: &Path,
    text: &str,
    entries: Vec<RegistryEntry>,
    errors: &mut Vec<ManifestError>,
    warnings: &mut Vec<ManifestWarning>,
) -> Option<(RegistryAddress, Vec<RegistryAddress>)> {
    let document = Document::parse(text);
    let nodes = document.list(List::Key("registries"));
    let line = |i: usize| nodes.get(i).map(|n| document.line(n));
    let see_line = |i: usize| line(i).map(|l| format!(" (line {l})")).unwrap_or_default();
    let (before, warned_before) = (errors.len(), warnings.len());
    // Each registry with its role and the index of its first entry.
    let mut seen: HashMap<(RegistryAddress, bool), usize> = HashMap::new();
    let mut source: Option<(RegistryAddress, usize)> = None;
    // A bad name hides whether its entry was the source or the one destination, and a second
    // source may be the intended destination: nothing is said about a missing one then.
    let (mut source_unclear, mut destination_unclear) = (false, false);
    let mut destinations = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let name = match entry.name.value {
            Ok(name) => name,
            Err(e) => {
                let at = nodes.get(i).and_then(|n| n.get("name")).map(|n| document.line(n)).or(line(i));
                errors.push(ManifestError::at(path, at, format!("registries[{i}].name: {e}")));
                if entry.src {
                    source_unclear = true;
                } else {
                    destination_unclear = true;
                }
                continue;
            }
        };
        match seen.entry((name.clone(), entry.src)) {
            Entry::Occupied(first) => {
                let message =
                    format!("registry {name} is listed twice{}; the entries are merged", see_line(*first.get()));
                warnings.push(ManifestWarning { path: path.to_path_buf(), line: line(i), message });
                continue;
            }
            Entry::Vacant(slot) => slot.insert(i),
        };
        if !entry.src {
            destinations.push((name, i));
        } else if let Some((first, j)) = &source {
            errors.push(ManifestError::at(
                path,
                line(i),
                format!(
                    "second source registry {name}: only one registry may have `src: true`, and {first}{} already does",
                    see_line(*j)
                ),
            ));
            destination_unclear = true;
        } else {
            source = Some((name, i));
        }
    }
    // kpromo would promote from the source into itself: never write to the source.
    if let Some((source, j)) = &source {
        destinations.retain(|(name, i)| {
            let message = format!(
                "registry {name} is the source{} and is listed again without `src: true`: it is not a destination",
                see_line(*j)
            );
            let is_source = name == source;
            if is_source {
                warnings.push(ManifestWarning { path: path.to_path_buf(), line: line(*i), message });
            }
            !is_source
        });
    }
    warnings[warned_before..].sort_by_key(|w| w.line);
    match source {
        None if !source_unclear => errors.push(ManifestError::at(
            path,
            line(0),
            "no source registry: exactly one registry must have `src: true`",
        )),
        Some((ref source, i)) if destinations.is_empty() && !destination_unclear => errors.push(ManifestError::at(
            path,
            line(i),
            format!("no destination registry: {source} is the source; list at least one registry without `src: true`"),
        )),
        _ => {}
    }
    let (source, _) = source?;
    (errors.len() == before).then(|| (source, destinations.into_iter().map(|(name, _)| name).collect()))
}

/// Reads the image entries of `list`, each with its line and those of its digests. Every bad
/// name, digest or tag is added to `errors` (its entry is then left out), as is an empty `dmap`
/// when `need_digests`. An image listed twice gets a warning: both entries are kept, and their
/// edges merge.
fn images(
    path: &Path,
    text: &str,
    list: List,
    entries: Vec<ImageEntry>,
    need_digests: bool,
    errors: &mut Vec<ManifestError>,
    warnings: &mut Vec<ManifestWarning>,
) -> Vec<Image> {
    let document = Document::parse(text);
    let nodes = document.list(list);
    let prefix = match list {
        List::Root => "",
        List::Key(key) => key,
    };
    let mut images = Vec::new();
    let mut first_lines: HashMap<RepoName, usize> = HashMap::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let before = errors.len();
        // Where yaml-rust2 stopped short of a node (see `Document`), the enclosing line stands in.
        let node = nodes.get(i);
        let line = node.map_or(1, |n| document.line(n));
        let line_of = |node: Option<&lines::Node>, fallback: usize| node.map_or(fallback, |n| document.line(n));
        let mut fail = |line: usize, message: String| errors.push(ManifestError::at(path, Some(line), message));
        let name = entry
            .name
            .value
            .map_err(|e| fail(line_of(node.and_then(|n| n.get("name")), line), format!("{prefix}[{i}].name: {e}")));
        if need_digests && entry.dmap.0.is_empty() {
            let shown = name.as_ref().map_or(entry.name.text.as_str(), |n| n.as_str());
            fail(line, format!("image {shown}: dmap must list at least one digest"));
        }
        let pairs = node.and_then(|n| n.get("dmap")).map_or(&[][..], |dmap| dmap.pairs());
        let mut digests: BTreeMap<Digest, DigestTags> = BTreeMap::new();
        for (k, (digest, tags)) in entry.dmap.0.into_iter().enumerate() {
            let (key, value) = match pairs.get(k) {
                Some((key, value)) => (Some(key), Some(value)),
                None => (None, None),
            };
            let digest_line = line_of(key, line);
            let tags: Vec<Tag> = tags
                .into_iter()
                .enumerate()
                .filter_map(|(j, tag)| {
                    let at = line_of(value.and_then(|v| v.items().get(j)), digest_line);
                    tag.value.map_err(|e| fail(at, format!("{prefix}[{i}].dmap.{}[{j}]: {e}", digest.text))).ok()
                })
                .collect();
            match digest.value {
                Err(e) => fail(digest_line, format!("{prefix}[{i}].dmap: {e}")),
                Ok(digest) => match digests.get(&digest) {
                    Some(first) => fail(
                        digest_line,
                        format!(
                            "{prefix}[{i}].dmap: digest {digest} is listed twice in this dmap (line {})",
                            first.line
                        ),
                    ),
                    None => {
                        digests.insert(digest, DigestTags { tags, line: digest_line });
                    }
                },
            }
        }
        if let (Ok(name), true) = (name, errors.len() == before) {
            if let Some(first) = first_lines.get(&name) {
                let message = format!("image {name} is listed twice (line {first}); the entries are merged");
                warnings.push(ManifestWarning { path: path.to_path_buf(), line: Some(line), message });
            } else {
                first_lines.insert(name.clone(), line);
            }
            images.push(Image { name, digests, line });
        }
    }
    images
}
