//! The checks of `ferry validate --online`: what the change would promote, read from its sources
//! (never written): each digest's manifest graph is in the source registry and verifies, an index
//! holds the policy's `required_platforms`, the image is within `max_image_bytes`; each file is in
//! the source store and its bytes hash to its sha256. Every refusal is a [`Finding`] at the line
//! of the digest or file in the manifest.

use std::collections::BTreeSet;
use std::sync::Arc;

use ferry_manifest::{FileManifest, PromotionManifest};
use ferry_oci::{Digest, RegistryAddress, RepoName};
use ferry_registry::Registry;
use ferry_store::Store;
use futures::stream::{self, StreamExt};

use crate::{Finding, Policy};

/// Sources read at once.
const IN_FLIGHT: usize = 16;

/// One digest to read from its source.
struct ImageTarget {
    registry: Arc<dyn Registry>,
    name: RepoName,
    digest: Digest,
    path: std::path::PathBuf,
    line: usize,
}

/// Reads every digest of `manifests` (each once, at its first line) from the manifest's source,
/// opened with `open`, and checks it against `policy`: the whole graph is there and verifies;
/// when `required_platforms` is set the digest is an index holding each of them; its size (every
/// manifest of the graph plus every distinct blob, over all platforms) is at most
/// `max_image_bytes`. The findings, in manifest order.
pub async fn check_images_online(
    manifests: &[PromotionManifest],
    policy: &Policy,
    open: impl Fn(&RegistryAddress) -> Arc<dyn Registry>,
) -> Vec<Finding> {
    let mut seen = BTreeSet::new();
    let mut targets = Vec::new();
    for manifest in manifests {
        let registry = open(&manifest.source);
        for image in &manifest.images {
            for (digest, tags) in &image.digests {
                if seen.insert((manifest.source.to_string(), image.name.clone(), digest.clone())) {
                    targets.push(ImageTarget {
                        registry: registry.clone(),
                        name: image.name.clone(),
                        digest: digest.clone(),
                        path: manifest.images_path.clone(),
                        line: tags.line,
                    });
                }
            }
        }
    }
    let results: Vec<Vec<Finding>> =
        stream::iter(targets.iter().map(|t| check_image(t, policy))).buffered(IN_FLIGHT).collect().await;
    results.into_iter().flatten().collect()
}

async fn check_image(target: &ImageTarget, policy: &Policy) -> Vec<Finding> {
    let at = |message: String| Finding { path: target.path.clone(), line: Some(target.line), message };
    let what = format!("{}/{}@{}", target.registry.name(), target.name, target.digest);
    let graph = match ferry_registry::graph::fetch_graph(&*target.registry, &target.name, &target.digest, true).await {
        Ok(graph) => graph,
        Err(e) => return vec![at(format!("{what}: {e}"))],
    };
    let mut findings = Vec::new();
    if !policy.required_platforms.is_empty() {
        let top = graph.manifests.last().expect("a graph holds its top manifest");
        match index_platforms(&top.bytes) {
            None => findings.push(at(format!(
                "{what} is a single-platform image; the policy requires an index of {}",
                platform_list(policy)
            ))),
            Some(held) => {
                let missing: Vec<&str> = policy
                    .required_platforms
                    .iter()
                    .map(|p| p.as_str())
                    .filter(|required| !held.iter().any(|h| platform_matches(required, h)))
                    .collect();
                if !missing.is_empty() {
                    findings.push(at(format!(
                        "{what} lacks platform {} required by the policy (it holds {})",
                        missing.join(", "),
                        if held.is_empty() { "none".to_string() } else { held.join(", ") }
                    )));
                }
            }
        }
    }
    if let Some(max) = policy.max_image_bytes {
        let size: u64 = graph.blobs.iter().map(|b| b.size).sum::<u64>()
            + graph.manifests.iter().map(|m| m.bytes.len() as u64).sum::<u64>();
        if size > max {
            findings.push(at(format!("{what} is {size} bytes, more than the policy's max_image_bytes {max}")));
        }
    }
    findings
}

fn platform_list(policy: &Policy) -> String {
    policy.required_platforms.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
}

/// The platforms (`os/arch[/variant]`) an index lists, or `None` when the bytes are not an index
/// (no `manifests` list).
fn index_platforms(bytes: &[u8]) -> Option<Vec<String>> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let entries = value.get("manifests")?.as_array()?;
    let field = |p: &serde_json::Value, k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    Some(
        entries
            .iter()
            .filter_map(|e| e.get("platform"))
            .map(|p| {
                let mut s = format!("{}/{}", field(p, "os"), field(p, "architecture"));
                let variant = field(p, "variant");
                if !variant.is_empty() {
                    s = format!("{s}/{variant}");
                }
                s
            })
            .collect(),
    )
}

/// Whether `held` satisfies `required`: the same os and architecture, and the same variant when
/// `required` names one.
fn platform_matches(required: &str, held: &str) -> bool {
    let r: Vec<&str> = required.split('/').collect();
    let h: Vec<&str> = held.split('/').collect();
    h.len() >= 2 && r[..2] == h[..2] && (r.len() < 3 || h.get(2) == r.get(2))
}

/// Reads every file of `manifests` (each once per source store, at its first line) from the
/// manifest's source store, opened with `open`, hashing it while reading: refused when the store
/// cannot be opened, the file is absent or unreadable, or its bytes do not hash to its sha256.
/// The findings, in manifest order.
pub async fn check_files_online<E: std::fmt::Display>(
    manifests: &[FileManifest],
    open: impl Fn(&str) -> Result<Store, E>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut targets = Vec::new();
    let mut seen = BTreeSet::new();
    for manifest in manifests {
        let store = match open(&manifest.source.base) {
            Ok(store) => Arc::new(store),
            Err(e) => {
                findings.push(Finding {
                    path: manifest.filestores_path.clone(),
                    line: Some(manifest.source.line),
                    message: format!("cannot open the source store {}: {e}", manifest.source.base),
                });
                continue;
            }
        };
        for file in &manifest.files {
            if seen.insert((manifest.source.base.clone(), file.name.to_string())) {
                targets.push((store.clone(), file));
            }
        }
    }
    let results: Vec<Option<Finding>> = stream::iter(targets.iter().map(|(store, file)| async move {
        let at = |message: String| Some(Finding { path: file.path.clone(), line: Some(file.line), message });
        let what = format!("file {} in {}", file.name, store.url());
        match store.head(&file.name).await {
            Ok(Some(_)) => {}
            Ok(None) => return at(format!("{what} is missing")),
            Err(e) => return at(format!("{what} cannot be read: {e}")),
        }
        match ferry_store::verify_object(store, &file.name, &file.sha256, |_| {}).await {
            Ok((_, Ok(()))) => None,
            Ok((bytes, Err(actual))) => {
                at(format!("{what}: its {bytes} bytes hash to {actual}, not the manifest's {}", file.sha256))
            }
            Err(e) => at(format!("{what} cannot be read: {e}")),
        }
    }))
    .buffered(IN_FLIGHT)
    .collect()
    .await;
    findings.extend(results.into_iter().flatten());
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_match_by_os_arch_and_variant_when_required() {
        assert!(platform_matches("linux/arm64", "linux/arm64/v8"));
        assert!(platform_matches("linux/arm/v7", "linux/arm/v7"));
        assert!(!platform_matches("linux/arm/v7", "linux/arm/v6"));
        assert!(!platform_matches("linux/amd64", "linux/arm64"));
        assert!(!platform_matches("linux/amd64", "unknown"));
    }

    #[test]
    fn index_platforms_are_read_and_a_plain_manifest_has_none() {
        let index = br#"{"manifests":[{"platform":{"os":"linux","architecture":"arm","variant":"v7"}},{}]}"#;
        assert_eq!(index_platforms(index), Some(vec!["linux/arm/v7".to_string()]));
        assert_eq!(index_platforms(br#"{"config":{},"layers":[]}"#), None);
    }
}
