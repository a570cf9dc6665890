//! Promotion of what changed (`ferry promote ... --since REV`): the working tree's manifests
//! reduced to what a change adds, so that the promotion engines run unchanged on a small set and
//! read only what the change touched. The additions are exactly those of [`diff_images`] and
//! [`diff_files`] (what `ferry validate --base REV` prints).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::path::Path;

use ferry_manifest::{FileManifest, ManifestErrors, PromotionManifest};
use ferry_oci::{Digest, RepoName, Tag};

use crate::{
    base_tree, check_file_sources, check_image_sources, diff_files, diff_images, load_policy, relocate_files,
    relocate_images, Finding, GitError, Policy,
};

/// Why the additions since a revision cannot be promoted.
#[derive(Debug)]
pub enum SinceError {
    /// The revision cannot be read (no git, not a repository, no such commit).
    Git(GitError),
    /// The manifests or the policy, at the revision or in the working tree, do not load; each
    /// error names its file and line (bad input).
    Invalid(Vec<Finding>),
    /// The change does what a promoted tree may not (a tag move, a removal, a changed file, a
    /// source the policy does not allow): the same findings `ferry validate --base` refuses.
    Refused(Vec<Finding>),
}

impl fmt::Display for SinceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let findings = match self {
            SinceError::Git(e) => return write!(f, "{e}"),
            SinceError::Invalid(findings) | SinceError::Refused(findings) => findings,
        };
        for (i, finding) in findings.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{finding}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SinceError {}

impl From<GitError> for SinceError {
    fn from(e: GitError) -> Self {
        SinceError::Git(e)
    }
}

/// A manifest's project: the directory name its file is in.
fn project(path: &Path) -> OsString {
    path.parent().and_then(Path::file_name).unwrap_or_default().to_os_string()
}

/// The manifests of `dir` at `rev` (their paths moved onto the working tree's; empty when `dir`
/// did not exist then), with the policy that applies: the one at `rev` when `dir` existed then
/// (a change cannot loosen its own policy), the working tree's otherwise, as `ferry validate`.
fn base<M>(
    dir: &Path,
    rev: &str,
    load: impl Fn(&Path) -> Result<Vec<M>, ManifestErrors>,
    relocate: impl Fn(&mut [M], &Path, &Path),
) -> Result<(Vec<M>, Policy), SinceError> {
    let tree = base_tree(dir, rev)?;
    let Some(base_dir) = &tree.dir else {
        let policy = load_policy(dir).map_err(|e| SinceError::Invalid(vec![e]))?;
        return Ok((Vec::new(), policy.unwrap_or_default()));
    };
    let rewrite = |p: &Path| p.strip_prefix(base_dir).map_or_else(|_| p.to_path_buf(), |rest| dir.join(rest));
    let mut invalid = Vec::new();
    let policy = load_policy(base_dir)
        .map_err(|e| invalid.push(Finding { path: rewrite(&e.path), message: format!("at {rev}: {}", e.message), ..e }))
        .ok()
        .flatten();
    let manifests = load(base_dir)
        .map_err(|errors| {
            invalid.extend(errors.into_iter().map(|e| Finding {
                path: rewrite(&e.path),
                line: e.line,
                message: format!("at {rev}: {}", e.message),
            }))
        })
        .ok();
    match manifests {
        Some(mut manifests) if invalid.is_empty() => {
            relocate(&mut manifests, base_dir, dir);
            Ok((manifests, policy.unwrap_or_default()))
        }
        _ => Err(SinceError::Invalid(invalid)),
    }
}

/// `head` (the thin directory `dir` as loaded from the working tree) reduced to what it adds
/// since git revision `rev` of the repository holding `dir`: see [`added_images`].
pub fn images_since(dir: &Path, rev: &str, head: &[PromotionManifest]) -> Result<Vec<PromotionManifest>, SinceError> {
    let (base, policy) = base(dir, rev, ferry_manifest::load_thin_dir, relocate_images)?;
    added_images(&base, head, &policy).map_err(SinceError::Refused)
}

/// `head` (the file-promotion directory `dir` as loaded from the working tree) reduced to what it
/// adds since git revision `rev`: see [`added_files`].
pub fn files_since(dir: &Path, rev: &str, head: &[FileManifest]) -> Result<Vec<FileManifest>, SinceError> {
    let (base, policy) = base(dir, rev, ferry_manifest::load_files_dir, relocate_files)?;
    added_files(&base, head, &policy).map_err(SinceError::Refused)
}

/// The `head` image manifests reduced to what they add to `base` (matched by project, `base`
/// [`relocate_images`]d): an added project whole; every image of a project to its added
/// destinations; to its other destinations only the added digests (with all their tags) and the
/// added tags of digests already there. Promoting the result makes exactly the edges of
/// [`diff_images`]. A project may come out as two manifests (its added destinations, its other
/// ones); one that adds nothing is left out. Refused, with the findings `ferry validate --base`
/// prints, when the change does what the policy does not allow.
pub fn added_images(
    base: &[PromotionManifest],
    head: &[PromotionManifest],
    policy: &Policy,
) -> Result<Vec<PromotionManifest>, Vec<Finding>> {
    let mut findings = check_image_sources(head, policy);
    findings.extend(diff_images(base, head, policy).findings);
    if !findings.is_empty() {
        return Err(findings);
    }
    let base_by_project: BTreeMap<OsString, &PromotionManifest> = base.iter().map(|m| (project(&m.path), m)).collect();
    let mut reduced = Vec::new();
    for h in head {
        let Some(b) = base_by_project.get(&project(&h.path)) else {
            reduced.push(h.clone());
            continue;
        };
        let (new, kept): (Vec<_>, Vec<_>) = h.destinations.iter().cloned().partition(|d| !b.destinations.contains(d));
        if !new.is_empty() {
            reduced.push(PromotionManifest { destinations: new, ..h.clone() });
        }
        // Each digest of the base with the union of its tags, by image.
        let mut old: BTreeMap<(&RepoName, &Digest), BTreeSet<&Tag>> = BTreeMap::new();
        for image in &b.images {
            for (digest, tags) in &image.digests {
                old.entry((&image.name, digest)).or_default().extend(&tags.tags);
            }
        }
        let mut images = Vec::new();
        for image in &h.images {
            let mut digests = BTreeMap::new();
            for (digest, tags) in &image.digests {
                match old.get(&(&image.name, digest)) {
                    None => {
                        digests.insert(digest.clone(), tags.clone());
                    }
                    Some(old_tags) => {
                        let added: Vec<Tag> = tags.tags.iter().filter(|t| !old_tags.contains(t)).cloned().collect();
                        if !added.is_empty() {
                            digests.insert(digest.clone(), ferry_manifest::DigestTags { tags: added, ..tags.clone() });
                        }
                    }
                }
            }
            if !digests.is_empty() {
                images.push(ferry_manifest::Image { digests, ..image.clone() });
            }
        }
        if !kept.is_empty() && !images.is_empty() {
            reduced.push(PromotionManifest { destinations: kept, images, warnings: Vec::new(), ..h.clone() });
        }
    }
    Ok(reduced)
}

/// The `head` file manifests reduced to what they add to `base` (matched by project, `base`
/// [`relocate_files`]d): an added project whole; every file of a project to its added
/// destinations; the added files to its other destinations. Promoting the result makes exactly
/// the edges of [`diff_files`]. A project may come out as two manifests; one that adds nothing
/// is left out. Refused, with the findings `ferry validate --base` prints, when the change does
/// what the policy does not allow (a changed sha256, a removal...).
pub fn added_files(
    base: &[FileManifest],
    head: &[FileManifest],
    policy: &Policy,
) -> Result<Vec<FileManifest>, Vec<Finding>> {
    let mut findings = check_file_sources(head, policy);
    findings.extend(diff_files(base, head, policy).findings);
    if !findings.is_empty() {
        return Err(findings);
    }
    let key = |s: &str| s.trim_end_matches('/').to_string();
    let base_by_project: BTreeMap<OsString, &FileManifest> =
        base.iter().map(|m| (project(&m.filestores_path), m)).collect();
    let mut reduced = Vec::new();
    for h in head {
        let Some(b) = base_by_project.get(&project(&h.filestores_path)) else {
            reduced.push(h.clone());
            continue;
        };
        let old_stores: BTreeSet<String> = b.destinations.iter().map(|d| key(&d.base)).collect();
        let (kept, new): (Vec<_>, Vec<_>) =
            h.destinations.iter().cloned().partition(|d| old_stores.contains(&key(&d.base)));
        if !new.is_empty() {
            reduced.push(FileManifest { destinations: new, ..h.clone() });
        }
        let old_files: BTreeSet<_> = b.files.iter().map(|f| &f.name).collect();
        let files: Vec<_> = h.files.iter().filter(|f| !old_files.contains(&f.name)).cloned().collect();
        if !kept.is_empty() && !files.is_empty() {
            reduced.push(FileManifest { destinations: kept, files, ..h.clone() });
        }
    }
    Ok(reduced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_trees::{files_tree, thin};

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    /// Every edge of `manifests` promoted whole, as `diff_images` against nothing computes them.
    fn all_edges(manifests: &[PromotionManifest]) -> Vec<String> {
        diff_images(&[], manifests, &Policy::default()).edges.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_reduced_images_make_exactly_the_added_edges() {
        let base = format!(
            "- name: app\n  dmap:\n    \"{A}\": [v1]\n    \"{B}\": []\n- name: old\n  dmap:\n    \"{A}\": [v1]\n"
        );
        let head = format!(
            "- name: app\n  dmap:\n    \"{A}\": [v1, stable]\n    \"{B}\": []\n    \"{C}\": [v3]\n- name: old\n  dmap:\n    \"{A}\": [v1]\n- name: new\n  dmap:\n    \"{B}\": []\n"
        );
        let (base_dir, mut b) = thin(&[("p", &["prod.example"], &base)]);
        let (head_dir, h) = thin(&[("p", &["prod.example", "eu.example"], &head), ("q", &["q.example"], &base)]);
        relocate_images(&mut b, base_dir.path(), head_dir.path());
        let review = diff_images(&b, &h, &Policy::default());
        let reduced = added_images(&b, &h, &Policy::default()).unwrap();
        let expected: Vec<String> = review.edges.iter().map(ToString::to_string).collect();
        assert_eq!(all_edges(&reduced), expected);
        assert!(expected.contains(&format!("staging.example/p/app@{A} -> prod.example/app:stable")));
        assert!(!expected.contains(&format!("staging.example/p/app@{A} -> prod.example/app:v1")));
        // Nothing added: nothing to promote.
        assert!(added_images(&h, &h, &Policy::default()).unwrap().is_empty());
    }

    #[test]
    fn a_tag_move_refuses_everything() {
        let base = format!("- name: app\n  dmap:\n    \"{A}\": [v1]\n");
        let head = format!(
            "- name: app\n  dmap:\n    \"{A}\": []\n    \"{B}\": [v1]\n- name: new\n  dmap:\n    \"{C}\": []\n"
        );
        let (base_dir, mut b) = thin(&[("p", &["prod.example"], &base)]);
        let (head_dir, h) = thin(&[("p", &["prod.example"], &head)]);
        relocate_images(&mut b, base_dir.path(), head_dir.path());
        let findings = added_images(&b, &h, &Policy::default()).unwrap_err();
        assert!(findings.iter().any(|f| f.message.contains("moved") && f.line == Some(4)), "{findings:?}");
    }

    #[test]
    fn the_reduced_files_make_exactly_the_added_edges() {
        let load = files_tree;
        let one = format!("files:\n- name: a\n  sha256: {}\n", "a".repeat(64));
        let two = format!("{one}- name: b\n  sha256: {}\n", "b".repeat(64));
        let stores = "filestores:\n- base: gs://s/\n  src: true\n- base: gs://d1\n";
        let (base_dir, mut base) = load(stores, &one);
        let (head_dir, head) = load(&format!("{stores}- base: gs://d2/x/\n"), &two);
        relocate_files(&mut base, base_dir.path(), head_dir.path());
        let reduced = added_files(&base, &head, &Policy::default()).unwrap();
        let edges: Vec<String> =
            diff_files(&[], &reduced, &Policy::default()).edges.iter().map(ToString::to_string).collect();
        assert_eq!(edges, ["gs://s/a -> gs://d2/x/a", "gs://s/b -> gs://d1/b", "gs://s/b -> gs://d2/x/b"]);

        let changed = format!("files:\n- name: a\n  sha256: {}\n", "c".repeat(64));
        let (changed_dir, changed) = load(stores, &changed);
        let _ = changed_dir;
        let findings = added_files(&base, &changed, &Policy::default()).unwrap_err();
        assert!(findings[0].message.contains("sha256 changed"), "{findings:?}");
    }
}
