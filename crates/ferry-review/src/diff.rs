//! Two versions of the manifests compared: what the change may not do, and what it adds.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use ferry_manifest::{FileManifest, PromotionManifest};
use ferry_oci::{Digest, RepoName, Tag};

use crate::{Added, Edge, Finding, Policy, Review};

/// An image's entries merged (an image may be listed twice): each digest with its tags and line.
struct Merged {
    line: usize,
    digests: BTreeMap<Digest, (BTreeSet<Tag>, usize)>,
}

/// A project's images by name, in first-listed order kept apart for reporting.
fn merged(manifest: &PromotionManifest) -> (Vec<RepoName>, BTreeMap<RepoName, Merged>) {
    let mut order = Vec::new();
    let mut images: BTreeMap<RepoName, Merged> = BTreeMap::new();
    for image in &manifest.images {
        let entry = images.entry(image.name.clone()).or_insert_with(|| {
            order.push(image.name.clone());
            Merged { line: image.line, digests: BTreeMap::new() }
        });
        for (digest, tags) in &image.digests {
            let (set, _) = entry.digests.entry(digest.clone()).or_insert_with(|| (BTreeSet::new(), tags.line));
            set.extend(tags.tags.iter().cloned());
        }
    }
    (order, images)
}

/// A manifest's project: the directory name its file is in.
fn project(path: &Path) -> OsString {
    path.parent().and_then(Path::file_name).unwrap_or_default().to_os_string()
}

/// Moves every path of `manifests` from under `from` to the same place under `to`, so that what
/// was read from a revision names the files of the working tree.
pub fn relocate_images(manifests: &mut [PromotionManifest], from: &Path, to: &Path) {
    for m in manifests {
        m.path = relocate(&m.path, from, to);
        m.images_path = relocate(&m.images_path, from, to);
    }
}

/// [`relocate_images`] for file manifests.
pub fn relocate_files(manifests: &mut [FileManifest], from: &Path, to: &Path) {
    for m in manifests {
        m.filestores_path = relocate(&m.filestores_path, from, to);
        for file in &mut m.files {
            file.path = relocate(&file.path, from, to);
        }
    }
}

fn relocate(path: &Path, from: &Path, to: &Path) -> PathBuf {
    path.strip_prefix(from).map_or_else(|_| path.to_path_buf(), |rest| to.join(rest))
}

/// The edges that promote `digest` of `name` (with `tags`, or by digest alone) to `destinations`.
fn image_edges(
    m: &PromotionManifest,
    name: &RepoName,
    digest: &Digest,
    tags: &[&Tag],
    destinations: &[&ferry_oci::RegistryAddress],
    edges: &mut Vec<Edge>,
) {
    let from = format!("{}/{name}@{digest}", m.source);
    for dst in destinations {
        if tags.is_empty() {
            edges.push(Edge { from: from.clone(), to: format!("{dst}/{name}@{digest}") });
        }
        for tag in tags {
            edges.push(Edge { from: from.clone(), to: format!("{dst}/{name}:{tag}") });
        }
    }
}

/// Compares image manifests at a base revision with the working tree's (matched by project) into
/// refusals and additions. `base` should have been [`relocate_images`]d so its paths name the
/// working tree.
pub fn diff_images(base: &[PromotionManifest], head: &[PromotionManifest], policy: &Policy) -> Review {
    let mut review = Review::default();
    let mut refuse = |path: &Path, line: Option<usize>, message: String| {
        review.findings.push(Finding { path: path.to_path_buf(), line, message })
    };
    let mut added = Vec::new();
    let mut edges = Vec::new();
    let base_by_project: BTreeMap<OsString, &PromotionManifest> = base.iter().map(|m| (project(&m.path), m)).collect();
    let head_projects: BTreeSet<OsString> = head.iter().map(|m| project(&m.path)).collect();

    for (name, b) in &base_by_project {
        if !head_projects.contains(name) && !policy.allow_removals {
            refuse(
                &b.path,
                None,
                format!("project {} removed (it promotes {} images)", name.to_string_lossy(), b.images.len()),
            );
        }
    }

    for h in head {
        let b = base_by_project.get(&project(&h.path)).copied();
        let (order, images) = merged(h);
        let base_images = b.map(merged).map(|(_, images)| images).unwrap_or_default();
        let old_destinations: Vec<_> = b.map(|b| b.destinations.iter().collect()).unwrap_or_default();
        let kept: Vec<_> = h.destinations.iter().filter(|d| b.is_none() || old_destinations.contains(d)).collect();
        let new: Vec<_> = h.destinations.iter().filter(|d| !kept.contains(d)).collect();
        if let Some(b) = b {
            for d in &b.destinations {
                if !h.destinations.contains(d) && !policy.allow_removals {
                    refuse(&h.path, None, format!("destination {d} removed"));
                }
            }
            for d in &new {
                added.push(Added { kind: "destination", name: d.to_string(), path: h.path.clone(), line: None });
            }
            // Every image goes to a new destination.
            for (name, image) in &images {
                for (digest, (tags, _)) in &image.digests {
                    image_edges(h, name, digest, &tags.iter().collect::<Vec<_>>(), &new, &mut edges);
                }
            }
        }
        let path = &h.images_path;
        for (name, old) in &base_images {
            let Some(image) = images.get(name) else {
                if !policy.allow_removals {
                    refuse(path, None, format!("image {name} removed (it was at line {})", old.line));
                }
                continue;
            };
            for (digest, (old_tags, _)) in &old.digests {
                let now = image.digests.get(digest);
                if now.is_none() && !policy.allow_removals {
                    refuse(path, Some(image.line), format!("digest {digest} removed from image {name}"));
                }
                for tag in old_tags {
                    let moved_to = image.digests.iter().find(|(d, (tags, _))| *d != digest && tags.contains(tag));
                    match (moved_to, now) {
                        (Some((to, (_, line))), _) => refuse(
                            path,
                            Some(*line),
                            format!("tag {name}:{tag} moved from {digest} to {to}: a promoted tag never moves"),
                        ),
                        (None, Some((tags, line))) if !tags.contains(tag) && !policy.allow_removals => {
                            refuse(path, Some(*line), format!("tag {name}:{tag} removed from {digest}"))
                        }
                        _ => {}
                    }
                }
            }
        }
        for name in &order {
            let image = &images[name];
            let old = base_images.get(name);
            if old.is_none() {
                added.push(Added { kind: "image", name: name.to_string(), path: path.clone(), line: Some(image.line) });
            }
            for (digest, (tags, line)) in &image.digests {
                let old_tags = old.and_then(|o| o.digests.get(digest)).map(|(t, _)| t);
                let new_tags: Vec<&Tag> = tags.iter().filter(|t| old_tags.is_none_or(|o| !o.contains(*t))).collect();
                if old_tags.is_none() {
                    let what = format!("{name}@{digest}");
                    added.push(Added { kind: "digest", name: what, path: path.clone(), line: Some(*line) });
                    image_edges(h, name, digest, &tags.iter().collect::<Vec<_>>(), &kept, &mut edges);
                } else if !new_tags.is_empty() {
                    image_edges(h, name, digest, &new_tags, &kept, &mut edges);
                }
                for tag in new_tags {
                    added.push(Added {
                        kind: "tag",
                        name: format!("{name}:{tag}"),
                        path: path.clone(),
                        line: Some(*line),
                    });
                }
            }
        }
    }
    review.findings.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    edges.sort();
    edges.dedup();
    review.added = added;
    review.edges = edges;
    review
}

/// A store and a file name joined as one location.
fn file_at(base: &str, name: &impl std::fmt::Display) -> String {
    format!("{}/{name}", base.trim_end_matches('/'))
}

/// Compares file manifests at a base revision with the working tree's (matched by project) into
/// refusals and additions. `base` should have been [`relocate_files`]d.
pub fn diff_files(base: &[FileManifest], head: &[FileManifest], policy: &Policy) -> Review {
    let mut review = Review::default();
    let mut refuse = |path: &Path, line: Option<usize>, message: String| {
        review.findings.push(Finding { path: path.to_path_buf(), line, message })
    };
    let mut added = Vec::new();
    let mut edges = Vec::new();
    let key = |s: &str| s.trim_end_matches('/').to_string();
    let base_by_project: BTreeMap<OsString, &FileManifest> =
        base.iter().map(|m| (project(&m.filestores_path), m)).collect();
    let head_projects: BTreeSet<OsString> = head.iter().map(|m| project(&m.filestores_path)).collect();
    for (name, b) in &base_by_project {
        if !head_projects.contains(name) && !policy.allow_removals {
            refuse(
                &b.filestores_path,
                None,
                format!("project {} removed ({} files)", name.to_string_lossy(), b.files.len()),
            );
        }
    }
    for h in head {
        let b = base_by_project.get(&project(&h.filestores_path)).copied();
        let old_stores: BTreeSet<String> =
            b.map(|b| b.destinations.iter().map(|d| key(&d.base)).collect()).unwrap_or_default();
        let (kept, new): (Vec<_>, Vec<_>) =
            h.destinations.iter().partition(|d| b.is_none() || old_stores.contains(&key(&d.base)));
        let old_files: BTreeMap<_, _> = b.map(|b| b.files.iter().map(|f| (&f.name, f)).collect()).unwrap_or_default();
        if let Some(b) = b {
            let now: BTreeSet<String> = h.destinations.iter().map(|d| key(&d.base)).collect();
            for d in &b.destinations {
                if !now.contains(&key(&d.base)) && !policy.allow_removals {
                    refuse(
                        &h.filestores_path,
                        None,
                        format!("destination {} removed (it was at line {})", d.base, d.line),
                    );
                }
            }
            for d in &new {
                added.push(Added {
                    kind: "destination",
                    name: d.base.clone(),
                    path: h.filestores_path.clone(),
                    line: Some(d.line),
                });
                for f in &h.files {
                    edges.push(Edge { from: file_at(&h.source.base, &f.name), to: file_at(&d.base, &f.name) });
                }
            }
            let names: BTreeSet<_> = h.files.iter().map(|f| &f.name).collect();
            for f in &b.files {
                if !names.contains(&f.name) && !policy.allow_removals {
                    refuse(&f.path, None, format!("file {} removed (it was at line {})", f.name, f.line));
                }
            }
        }
        for f in &h.files {
            match old_files.get(&f.name) {
                Some(old) if old.sha256 != f.sha256 => refuse(
                    &f.path,
                    Some(f.line),
                    format!(
                        "file {}: sha256 changed from {} to {}: a promoted file never changes",
                        f.name,
                        old.sha256.hex(),
                        f.sha256.hex()
                    ),
                ),
                Some(_) => {}
                None => {
                    added.push(Added {
                        kind: "file",
                        name: f.name.to_string(),
                        path: f.path.clone(),
                        line: Some(f.line),
                    });
                    for d in &kept {
                        edges.push(Edge { from: file_at(&h.source.base, &f.name), to: file_at(&d.base, &f.name) });
                    }
                }
            }
        }
    }
    review.findings.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    edges.sort();
    edges.dedup();
    review.added = added;
    review.edges = edges;
    review
}

/// The line of `needle` in the file at `path` (its first), for a finding about a value the
/// loader keeps no line for.
fn line_of(path: &Path, needle: &str) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// Each image manifest whose source the policy's `allowed_sources` does not list.
pub fn check_image_sources(manifests: &[PromotionManifest], policy: &Policy) -> Vec<Finding> {
    manifests
        .iter()
        .filter(|m| !policy.allows_source(&m.source.to_string()))
        .map(|m| {
            let source = m.source.to_string();
            Finding {
                path: m.path.clone(),
                line: line_of(&m.path, &source),
                message: format!("source {source} is not one of the policy's allowed_sources"),
            }
        })
        .collect()
}

/// Each file manifest whose source store the policy's `allowed_sources` does not list.
pub fn check_file_sources(manifests: &[FileManifest], policy: &Policy) -> Vec<Finding> {
    manifests
        .iter()
        .filter(|m| !policy.allows_source(&m.source.base))
        .map(|m| Finding {
            path: m.filestores_path.clone(),
            line: Some(m.source.line),
            message: format!("source {} is not one of the policy's allowed_sources", m.source.base),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_trees::{files_tree, thin};

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn diff(base: &[(&str, &[&str], &str)], head: &[(&str, &[&str], &str)], policy: &Policy) -> Review {
        let (base_dir, mut base) = thin(base);
        let (head_dir, head) = thin(head);
        relocate_images(&mut base, base_dir.path(), head_dir.path());
        let mut review = diff_images(&base, &head, policy);
        for f in &mut review.findings {
            f.path = f.path.strip_prefix(head_dir.path()).unwrap().to_path_buf();
        }
        review
    }

    fn edges(review: &Review) -> Vec<String> {
        review.edges.iter().map(ToString::to_string).collect()
    }

    fn image(digests: &str) -> String {
        format!("- name: app\n  dmap:\n{digests}")
    }

    #[test]
    fn an_added_tag_promotes_only_that_tag() {
        let base = image(&format!("    \"{A}\": [v1]\n"));
        let head = image(&format!("    \"{A}\": [v1, stable]\n"));
        let review = diff(&[("p", &["prod.example"], &base)], &[("p", &["prod.example"], &head)], &Policy::default());
        assert!(review.findings.is_empty(), "{:?}", review.findings);
        assert_eq!(edges(&review), [format!("staging.example/p/app@{A} -> prod.example/app:stable")]);
        assert_eq!(review.added.len(), 1);
        assert_eq!(review.added[0].name, "app:stable");
    }

    #[test]
    fn a_new_destination_gets_every_image_and_a_new_project_everything() {
        let images = image(&format!("    \"{A}\": [v1]\n    \"{B}\": []\n"));
        let review = diff(
            &[("p", &["prod.example"], &images)],
            &[("p", &["prod.example", "eu.example"], &images), ("q", &["prod.example"], &images)],
            &Policy::default(),
        );
        assert!(review.findings.is_empty(), "{:?}", review.findings);
        assert_eq!(
            edges(&review),
            [
                format!("staging.example/p/app@{A} -> eu.example/app:v1"),
                format!("staging.example/p/app@{A} -> prod.example/app:v1"),
                format!("staging.example/p/app@{B} -> eu.example/app@{B}"),
                format!("staging.example/p/app@{B} -> prod.example/app@{B}"),
            ]
        );
        let kinds: Vec<_> = review.added.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, ["destination", "image", "digest", "tag", "digest"]);
    }

    #[test]
    fn removals_are_refused_unless_the_policy_allows_them_but_a_tag_move_always_is() {
        let base = image(&format!("    \"{A}\": [v1]\n    \"{B}\": [v2]\n"));
        let head = image(&format!("    \"{A}\": [v1, v2]\n"));
        let review = diff(
            &[("p", &["prod.example", "eu.example"], &base), ("q", &["prod.example"], &base)],
            &[("p", &["prod.example"], &head)],
            &Policy::default(),
        );
        let messages: Vec<_> = review.findings.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "images/p/images.yaml:1: digest sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb removed from image app"
                    .to_string(),
                format!("images/p/images.yaml:3: tag app:v2 moved from {B} to {A}: a promoted tag never moves"),
                "manifests/p/promoter-manifest.yaml: destination eu.example removed".to_string(),
                "manifests/q/promoter-manifest.yaml: project q removed (it promotes 1 images)".to_string(),
            ]
        );
        let allow = Policy { allow_removals: true, ..Default::default() };
        let review = diff(
            &[("p", &["prod.example", "eu.example"], &base), ("q", &["prod.example"], &base)],
            &[("p", &["prod.example"], &head)],
            &allow,
        );
        assert_eq!(review.findings.len(), 1, "{:?}", review.findings);
        assert!(review.findings[0].message.contains("moved"));
    }

    #[test]
    fn an_image_listed_twice_is_one_image() {
        let base = image(&format!("    \"{A}\": [v1]\n"));
        let head = format!("{base}{}", image(&format!("    \"{B}\": [v2]\n")));
        let review = diff(&[("p", &["prod.example"], &base)], &[("p", &["prod.example"], &head)], &Policy::default());
        assert!(review.findings.is_empty(), "{:?}", review.findings);
        assert_eq!(edges(&review), [format!("staging.example/p/app@{B} -> prod.example/app:v2")]);
    }

    #[test]
    fn files_a_new_destination_gets_every_file_and_an_added_file_every_destination() {
        let load = files_tree;
        let one = format!("files:\n- name: a\n  sha256: {}\n", "a".repeat(64));
        let two = format!("{one}- name: b\n  sha256: {}\n", "b".repeat(64));
        let stores = "filestores:\n- base: gs://s/\n  src: true\n- base: gs://d1\n";
        let (base_dir, mut base) = load(stores, &one);
        let (head_dir, head) = load(&format!("{stores}- base: gs://d2/x/\n"), &two);
        relocate_files(&mut base, base_dir.path(), head_dir.path());
        let review = diff_files(&base, &head, &Policy::default());
        assert!(review.findings.is_empty(), "{:?}", review.findings);
        assert_eq!(edges(&review), ["gs://s/a -> gs://d2/x/a", "gs://s/b -> gs://d1/b", "gs://s/b -> gs://d2/x/b"]);
    }
}
