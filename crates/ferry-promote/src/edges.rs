//! Manifests → edges. An edge is one thing to make true: "destination has image@digest (under tag)".

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ferry_manifest::PromotionManifest;
use ferry_oci::{Digest, RegistryAddress, RepoName, Tag};
use serde::Serialize;

/// Why an edge exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeKind {
    /// Listed in a manifest.
    Image,
    /// A cosign `sha256-<hex>.sig`/`.att`/`.sbom` tag (or the `sha256-<hex>` referrers fallback
    /// tag) of a promoted digest, found in the source.
    Signature,
    /// An OCI referrer of a promoted digest, found through the source's referrers API.
    Referrer,
}

/// Source image@digest → destination image under `tag` (or by digest only when `tag` is `None`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Edge {
    /// The repository, the same name under the source and the destination registry.
    pub image: RepoName,
    /// The manifest (or index) to promote, by digest.
    pub digest: Digest,
    /// The destination tag; `None` to promote by digest only.
    pub tag: Option<Tag>,
    /// The registry (with any path prefix) or `oci:DIR` layout the image is read from.
    pub source: RegistryAddress,
    /// The registry (with any path prefix) or `oci:DIR` layout the image is promoted to.
    pub destination: RegistryAddress,
    /// Why the edge exists.
    pub kind: EdgeKind,
    /// Where the manifest asked for this edge (`file:line` of the digest), or the edge it was
    /// derived from.
    pub origin: String,
}

impl Edge {
    /// `dest/image:tag` or `dest/image@digest`, as a user would write it.
    pub fn destination_ref(&self) -> String {
        match &self.tag {
            Some(tag) => format!("{}/{}:{tag}", self.destination, self.image),
            None => format!("{}/{}@{}", self.destination, self.image, self.digest),
        }
    }

    /// `source/image@digest`, as a user would write it.
    pub fn source_ref(&self) -> String {
        format!("{}/{}@{}", self.source, self.image, self.digest)
    }
}

/// Expand manifests into edges, deduplicated (the same edge from two manifests is one edge).
/// Returns the edges and, for each destination tag given two or more digests, the conflict
/// message to refuse all of that tag's edges with.
pub fn expand(manifests: &[PromotionManifest]) -> (Vec<Edge>, BTreeMap<usize, String>) {
    let mut edges = Vec::new();
    let mut seen = HashSet::new();
    for manifest in manifests {
        for image in &manifest.images {
            for (digest, listed) in &image.digests {
                // The digest's own line: an entry can list many.
                let origin = format!("{}:{}", manifest.images_path.display(), listed.line);
                let tags = &listed.tags;
                for destination in &manifest.destinations {
                    let tags: Vec<Option<Tag>> =
                        if tags.is_empty() { vec![None] } else { tags.iter().cloned().map(Some).collect() };
                    for tag in tags {
                        let edge = Edge {
                            image: image.name.clone(),
                            digest: digest.clone(),
                            tag,
                            source: manifest.source.clone(),
                            destination: destination.clone(),
                            kind: EdgeKind::Image,
                            origin: origin.clone(),
                        };
                        let key = (edge.image.clone(), edge.digest.clone(), edge.tag.clone(), edge.destination.clone());
                        if seen.insert(key) {
                            edges.push(edge);
                        }
                    }
                }
            }
        }
    }
    let conflicts = conflicts(&edges);
    (edges, conflicts)
}

/// Edges whose destination tag is asked to point at more than one digest, with the reason.
fn conflicts(edges: &[Edge]) -> BTreeMap<usize, String> {
    let mut by_tag: BTreeMap<(String, &Tag), BTreeSet<(&Digest, &str)>> = BTreeMap::new();
    for edge in edges {
        if let Some(tag) = &edge.tag {
            by_tag
                .entry((format!("{}/{}", edge.destination, edge.image), tag))
                .or_default()
                .insert((&edge.digest, edge.origin.as_str()));
        }
    }
    let mut refused = BTreeMap::new();
    for (i, edge) in edges.iter().enumerate() {
        let Some(tag) = &edge.tag else { continue };
        let claims = &by_tag[&(format!("{}/{}", edge.destination, edge.image), tag)];
        let digests: BTreeSet<&Digest> = claims.iter().map(|c| c.0).collect();
        if digests.len() > 1 {
            let list: Vec<String> = claims.iter().map(|(d, o)| format!("{d} ({o})")).collect();
            refused.insert(i, format!("manifests disagree on tag {tag}: {}", list.join(", ")));
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_edge_names_the_line_of_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.yaml");
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let yaml = format!(
            "registries:\n- name: gcr.io/a\n  src: true\n- name: gcr.io/b\nimages:\n- name: app\n  dmap:\n    \
             \"{}\": [v1]\n    # a comment\n    \"{}\":\n    - v2\n    - v3\n    \"{}\": []\n",
            digest('a'),
            digest('b'),
            digest('c')
        );
        std::fs::write(&path, yaml).unwrap();
        let manifests = [ferry_manifest::load_plain(&path).unwrap()];
        let (edges, conflicts) = expand(&manifests);
        assert!(conflicts.is_empty());
        let origins: Vec<(&str, Option<&str>, String)> =
            edges.iter().map(|e| (&e.digest.hex()[..1], e.tag.as_ref().map(Tag::as_str), e.origin.clone())).collect();
        let at = |line: usize| format!("{}:{line}", path.display());
        assert_eq!(
            origins,
            [("a", Some("v1"), at(8)), ("b", Some("v2"), at(10)), ("b", Some("v3"), at(10)), ("c", None, at(13))]
        );
    }

    #[test]
    fn an_image_listed_twice_merges_its_edges_and_keeps_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.yaml");
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let yaml = format!(
            "registries:\n- name: gcr.io/a\n  src: true\n- name: gcr.io/b\nimages:\n\
             - name: app\n  dmap:\n    \"{a}\": [v1]\n\
             - name: app\n  dmap:\n    \"{a}\": [v1]\n    \"{b}\": [v2, v1]\n",
            a = digest('a'),
            b = digest('b')
        );
        std::fs::write(&path, yaml).unwrap();
        let manifests = [ferry_manifest::load_plain(&path).unwrap()];
        assert_eq!(manifests[0].warnings.len(), 1);
        let (edges, conflicts) = expand(&manifests);
        let listed: Vec<(&str, &str, String)> = edges
            .iter()
            .map(|e| (&e.digest.hex()[..1], e.tag.as_ref().map_or("", Tag::as_str), e.origin.clone()))
            .collect();
        let at = |line: usize| format!("{}:{line}", path.display());
        // a:v1 twice is one edge; b gives v1 another digest, so both claims on v1 are refused.
        assert_eq!(listed, [("a", "v1", at(8)), ("b", "v2", at(12)), ("b", "v1", at(12))]);
        assert_eq!(conflicts.keys().copied().collect::<Vec<_>>(), [0, 2]);
    }
}
