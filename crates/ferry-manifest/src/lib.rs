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

mod error;
mod files;
mod lines;
mod schema;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ferry_oci::{Digest, RegistryAddress, RepoName, Tag};
use serde::de::DeserializeOwned;

pub use error::ManifestError;
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
    pub source: RegistryAddress,
    /// In file order.
    pub destinations: Vec<RegistryAddress>,
    /// In file order.
    pub images: Vec<Image>,
}

/// One `images` entry: repository `name` under every registry, and the digests to promote there.
#[derive(Debug, Clone)]
pub struct Image {
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
/// (sorted by path), with its images from `DIR/images/<project>/images.yaml`.
pub fn load_thin_dir(dir: &Path) -> Result<Vec<PromotionManifest>, ManifestError> {
    let manifests_dir = dir.join("manifests");
    match fs::metadata(&manifests_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(ManifestError::file(&manifests_dir, "not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ManifestError::file(
                &manifests_dir,
                format!("missing: a thin manifest directory holds manifests/<project>/{MANIFEST_FILE}"),
            ))
        }
        Err(e) => return Err(ManifestError::file(&manifests_dir, format!("cannot read: {e}"))),
    }
    let mut found = Vec::new();
    find_manifests(&manifests_dir, 0, &mut found)?;
    if found.is_empty() {
        // kpromo refuses this too: an empty directory is far more likely a wrong path than intent.
        return Err(ManifestError::file(
            &manifests_dir,
            format!("no manifests: expected manifests/<project>/{MANIFEST_FILE}"),
        ));
    }
    found.iter().map(|path| load_project(dir, path)).collect()
}

/// Reads a plain manifest, with both `registries:` and `images:`.
pub fn load_plain(file: &Path) -> Result<PromotionManifest, ManifestError> {
    let text = read(file)?;
    let plain: PlainFile = parse(file, &text)?;
    let (source, destinations) = registries(file, &text, plain.registries)?;
    let images = images(&text, List::Key("images"), plain.images);
    // kpromo's plain-manifest validation requires a non-empty dmap (it does not check images.yaml).
    if let Some(image) = images.iter().find(|i| i.digests.is_empty()) {
        return Err(ManifestError::at(
            file,
            Some(image.line),
            format!("image {}: dmap must list at least one digest", image.name),
        ));
    }
    Ok(PromotionManifest { path: file.to_path_buf(), images_path: file.to_path_buf(), source, destinations, images })
}

/// Collects the `promoter-manifest.yaml` files under `dir` (`depth` levels below `manifests`),
/// refusing any that is not exactly one level down, as kpromo does.
fn find_manifests(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let unreadable = |e: io::Error| ManifestError::file(dir, format!("cannot read directory: {e}"));
    let mut entries = fs::read_dir(dir).map_err(unreadable)?.collect::<Result<Vec<_>, _>>().map_err(unreadable)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        // Not following symlinked directories, like kpromo's filepath.Walk: no loops, no escapes.
        let file_type = entry.file_type().map_err(|e| ManifestError::file(&path, format!("cannot read: {e}")))?;
        if file_type.is_dir() {
            find_manifests(&path, depth + 1, found)?;
        } else if entry.file_name() == MANIFEST_FILE {
            if depth != 1 {
                return Err(ManifestError::file(
                    &path,
                    format!("misplaced: a thin manifest must be at manifests/<project>/{MANIFEST_FILE}"),
                ));
            }
            found.push(path);
        }
    }
    Ok(())
}

fn load_project(dir: &Path, manifest: &Path) -> Result<PromotionManifest, ManifestError> {
    let project = manifest.parent().and_then(Path::file_name).unwrap_or_default();
    let images_path = dir.join("images").join(project).join(IMAGES_FILE);
    match fs::metadata(&images_path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(ManifestError::file(&images_path, "not a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ManifestError::file(
                &images_path,
                format!("missing: {} needs its images listed here", manifest.display()),
            ))
        }
        Err(e) => return Err(ManifestError::file(&images_path, format!("cannot read: {e}"))),
    }

    let text = read(manifest)?;
    let thin: ThinFile = parse(manifest, &text)?;
    let (source, destinations) = registries(manifest, &text, thin.registries)?;

    let images_text = read(&images_path)?;
    let entries: Vec<ImageEntry> = parse(&images_path, &images_text)?;
    let images = images(&images_text, List::Root, entries);
    Ok(PromotionManifest { path: manifest.to_path_buf(), images_path, source, destinations, images })
}

fn read(path: &Path) -> Result<String, ManifestError> {
    fs::read_to_string(path).map_err(|e| ManifestError::file(path, format!("cannot read: {e}")))
}

/// Deserializes `text`; an empty document (or one of only comments) is `T::default()`.
fn parse<T: DeserializeOwned + Default>(path: &Path, text: &str) -> Result<T, ManifestError> {
    serde_yaml_ng::from_str::<Option<T>>(text).map(Option::unwrap_or_default).map_err(|e| ManifestError::yaml(path, &e))
}

/// Splits `registries:` into the source and the destinations: exactly one `src: true`, at least
/// one other, and no registry twice.
fn registries(
    path: &Path,
    text: &str,
    entries: Vec<RegistryEntry>,
) -> Result<(RegistryAddress, Vec<RegistryAddress>), ManifestError> {
    let lines = Document::parse(text).entry_lines(List::Key("registries"));
    let line = |i: usize| lines.get(i).copied();
    let see_line = |i: usize| line(i).map(|l| format!(" (line {l})")).unwrap_or_default();
    let mut seen = HashMap::new();
    let mut source: Option<(RegistryAddress, usize)> = None;
    let mut destinations = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let name = entry.name.0;
        if let Some(&first) = seen.get(&name) {
            return Err(ManifestError::at(
                path,
                line(i),
                format!("registry {name} is listed twice{}", see_line(first)),
            ));
        }
        seen.insert(name.clone(), i);
        if !entry.src {
            destinations.push(name);
        } else if let Some((first, j)) = &source {
            return Err(ManifestError::at(
                path,
                line(i),
                format!(
                    "second source registry {name}: only one registry may have `src: true`, and {first}{} already does",
                    see_line(*j)
                ),
            ));
        } else {
            source = Some((name, i));
        }
    }
    let Some((source, i)) = source else {
        return Err(ManifestError::at(path, line(0), "no source registry: exactly one registry must have `src: true`"));
    };
    if destinations.is_empty() {
        return Err(ManifestError::at(
            path,
            line(i),
            format!("no destination registry: {source} is the source; list at least one registry without `src: true`"),
        ));
    }
    Ok((source, destinations))
}

fn images(text: &str, list: List, entries: Vec<ImageEntry>) -> Vec<Image> {
    let document = Document::parse(text);
    let nodes = document.list(list);
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            // Where yaml-rust2 stopped short of a node (see `Document`), the enclosing line stands in.
            let node = nodes.get(i);
            let line = node.map_or(1, |n| document.line(n));
            let digest_lines: HashMap<&str, usize> = node
                .and_then(|n| n.get("dmap"))
                .map_or(&[][..], |dmap| dmap.pairs())
                .iter()
                .filter_map(|(key, _)| Some((key.scalar()?, document.line(key))))
                .collect();
            let digests = entry
                .dmap
                .0
                .into_iter()
                .map(|(digest, tags)| {
                    let line = digest_lines.get(digest.as_str()).copied().unwrap_or(line);
                    (digest, DigestTags { tags, line })
                })
                .collect();
            Image { name: entry.name.0, digests, line }
        })
        .collect()
}
