//! What a registry holds, in the `images.yaml` form of a thin manifest (`ferry snapshot`).
//!
//! Each repository's tags are read (`tags/list`), each tag resolved to its digest (a HEAD), and
//! the digests grouped with their tags. Cosign tags (`sha256-<hex>.sig`, `.att`, `.sbom`) and the
//! referrers fallback tag (`sha256-<hex>`) are left out, since Ferry promotes them with their
//! image; the digest they are about is listed (with no tags) when the repository holds it, so an
//! image signed but promoted by digest only is not lost. A child manifest of a listed index is
//! not listed on its own unless a tag of its own names it (as kpromo's `--minimal-snapshot`).
//! The result is sorted (repositories, digests, tags), so the same registry state always gives
//! the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use ferry_oci::{media_types, Digest, ManifestRefs, Reference, RepoName, Tag};
use futures::{StreamExt, TryStreamExt};

use crate::{Registry, RegistryError, Result};

/// One repository of a snapshot: every digest found, with its tags (sorted; empty for a digest
/// reached only through its signatures).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotImage {
    /// The repository, relative to the registry's prefix.
    pub name: RepoName,
    /// Digest → tags, as an `images.yaml` `dmap`.
    pub dmap: BTreeMap<Digest, Vec<Tag>>,
}

/// A registry's images, in the `images.yaml` form: repositories sorted by name, those holding no
/// image left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The repositories, sorted by name.
    pub images: Vec<SnapshotImage>,
}

/// The digest a cosign tag (`sha256-<hex>.sig`/`.att`/`.sbom`) or a referrers fallback tag
/// (`sha256-<hex>`) is about; `None` for any other tag.
pub fn artefact_subject(tag: &Tag) -> Option<Digest> {
    let rest = tag.as_str().strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_at_checked(64)?;
    if !matches!(suffix, "" | ".sig" | ".att" | ".sbom") {
        return None;
    }
    format!("sha256:{hex}").parse().ok()
}

/// Reads what `registry` holds: the repositories `repos`, or every one its catalog lists when
/// `None`. At most `concurrency` requests are in flight at once. Only reads.
pub async fn snapshot(registry: &dyn Registry, repos: Option<&[RepoName]>, concurrency: usize) -> Result<Snapshot> {
    let repos: Vec<RepoName> = match repos {
        Some(named) => named.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect(),
        None => registry.list_repositories().await?,
    };
    let mut images = Vec::new();
    for name in repos {
        let dmap = repository(registry, &name, concurrency.max(1)).await?;
        if !dmap.is_empty() {
            images.push(SnapshotImage { name, dmap });
        }
    }
    Ok(Snapshot { images })
}

/// One repository's digests and their tags.
async fn repository(
    registry: &dyn Registry,
    repo: &RepoName,
    concurrency: usize,
) -> Result<BTreeMap<Digest, Vec<Tag>>> {
    let tags = registry.list_tags(repo).await?;
    let (artefacts, plain): (Vec<Tag>, Vec<Tag>) = tags.into_iter().partition(|t| artefact_subject(t).is_some());

    // digest → (media type, tags)
    let mut found: BTreeMap<Digest, (String, Vec<Tag>)> = BTreeMap::new();
    let heads: Vec<_> = futures::stream::iter(plain)
        .map(|tag| async move {
            let head = registry.head_manifest(repo, &Reference::Tag(tag.clone())).await?;
            Ok::<_, RegistryError>((tag, head))
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    for (tag, head) in heads {
        // A tag removed between the listing and the HEAD is simply not there any more.
        if let Some(head) = head {
            found.entry(head.digest).or_insert_with(|| (head.media_type, Vec::new())).1.push(tag);
        }
    }

    let subjects: BTreeSet<Digest> =
        artefacts.iter().filter_map(artefact_subject).filter(|d| !found.contains_key(d)).collect();
    let heads: Vec<_> = futures::stream::iter(subjects)
        .map(|digest| async move { registry.head_manifest(repo, &Reference::Digest(digest)).await })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    for head in heads.into_iter().flatten() {
        found.entry(head.digest).or_insert_with(|| (head.media_type, Vec::new()));
    }

    let indexes: Vec<Digest> =
        found.iter().filter(|(_, (media_type, _))| media_types::is_index(media_type)).map(|(d, _)| d.clone()).collect();
    let children: Vec<Vec<Digest>> = futures::stream::iter(indexes)
        .map(|digest| async move {
            let Some(manifest) = registry.get_manifest(repo, &Reference::Digest(digest.clone())).await? else {
                return Ok(Vec::new());
            };
            let refs = ManifestRefs::parse(&digest, &manifest.bytes, Some(&manifest.media_type)).map_err(|e| {
                RegistryError::Invalid { registry: registry.name().to_string(), message: format!("{repo}: {e}") }
            })?;
            Ok::<_, RegistryError>(refs.manifests.into_iter().map(|d| d.digest).collect())
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    for child in children.into_iter().flatten() {
        if found.get(&child).is_some_and(|(_, tags)| tags.is_empty()) {
            found.remove(&child);
        }
    }

    Ok(found
        .into_iter()
        .map(|(digest, (_, mut tags))| {
            tags.sort();
            tags.dedup();
            (digest, tags)
        })
        .collect())
}

impl Snapshot {
    /// The `images.yaml` text: one `- name:` entry per repository, one `"digest": ["tag", ...]`
    /// line per digest. Names, digests and tags need no escaping (their grammars allow none of
    /// YAML's special characters), and are quoted all the same.
    pub fn to_yaml(&self) -> String {
        if self.images.is_empty() {
            return "[]\n".to_string();
        }
        let mut out = String::new();
        for image in &self.images {
            out.push_str(&format!("- name: {}\n  dmap:\n", image.name));
            for (digest, tags) in &image.dmap {
                let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
                out.push_str(&format!("    \"{digest}\": [{}]\n", tags.join(", ")));
            }
        }
        out
    }

    /// The same as JSON (which YAML readers also read): `[{"name": ..., "dmap": {digest: [tags]}}]`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.images
                .iter()
                .map(|image| {
                    let dmap: serde_json::Map<String, serde_json::Value> = image
                        .dmap
                        .iter()
                        .map(|(digest, tags)| {
                            (digest.to_string(), tags.iter().map(|t| serde_json::Value::from(t.as_str())).collect())
                        })
                        .collect();
                    serde_json::json!({"name": image.name.as_str(), "dmap": dmap})
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artefact_tags() {
        let hex = "a".repeat(64);
        for (tag, is) in [
            (format!("sha256-{hex}.sig"), true),
            (format!("sha256-{hex}.att"), true),
            (format!("sha256-{hex}.sbom"), true),
            (format!("sha256-{hex}"), true),
            (format!("sha256-{hex}.other"), false),
            ("sha256-abc.sig".to_string(), false),
            ("v1.0".to_string(), false),
        ] {
            let tag: Tag = tag.parse().unwrap();
            assert_eq!(artefact_subject(&tag).is_some(), is, "{tag}");
        }
    }

    #[test]
    fn yaml_form() {
        let d: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let snap = Snapshot {
            images: vec![SnapshotImage {
                name: "team/app".parse().unwrap(),
                dmap: BTreeMap::from([(d.clone(), vec!["latest".parse().unwrap(), "v1".parse().unwrap()])]),
            }],
        };
        assert_eq!(snap.to_yaml(), format!("- name: team/app\n  dmap:\n    \"{d}\": [\"latest\", \"v1\"]\n"));
        assert_eq!(Snapshot::default().to_yaml(), "[]\n");
    }
}
