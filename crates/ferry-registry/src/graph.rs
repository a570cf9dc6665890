//! An image's manifest graph: the manifest at a digest and, for an index, every manifest under
//! it, each verified against its digest as read, with the config and layer blobs they reference.
//! Promotion copies graphs; mirroring reads them for their blobs.

use std::collections::HashMap;

use ferry_oci::{Descriptor, Digest, ManifestRefs, Reference, RepoName};

use crate::{Manifest, Registry};

/// A manifest and everything under it, read and verified from the source.
#[derive(Debug)]
pub struct Graph {
    /// Manifests in push order: children before the index that lists them; the top one last.
    pub manifests: Vec<Manifest>,
    /// Config and layer descriptors of every manifest in the graph, each digest once.
    pub blobs: Vec<Descriptor>,
}

/// Read `digest` and, when `whole`, every manifest and blob descriptor under it (all platforms of
/// an index), verifying each manifest's bytes against its digest.
pub async fn fetch_graph(
    registry: &dyn Registry,
    repo: &RepoName,
    digest: &Digest,
    whole: bool,
) -> Result<Graph, String> {
    let mut manifests = Vec::new();
    let mut blobs: Vec<Descriptor> = Vec::new();
    // Depth-first with an explicit stack; a node is emitted after its children (post-order).
    let mut stack: Vec<(Digest, bool)> = vec![(digest.clone(), false)];
    let mut fetched: HashMap<Digest, Manifest> = HashMap::new();
    while let Some((d, children_done)) = stack.pop() {
        if children_done {
            manifests.push(fetched.remove(&d).expect("fetched before its children"));
            continue;
        }
        if fetched.contains_key(&d) || manifests.iter().any(|m| m.digest == d) {
            continue;
        }
        let manifest = match registry.get_manifest(repo, &Reference::Digest(d.clone())).await {
            Ok(Some(m)) if Digest::of(&m.bytes) == d => m,
            Ok(Some(_)) => return Err(format!("source manifest {repo}@{d} does not match its digest")),
            Ok(None) => return Err(format!("source is incomplete: {}/{repo}@{d} is missing", registry.name())),
            Err(e) => return Err(format!("cannot read source manifest: {e}")),
        };
        let refs = ManifestRefs::parse(&d, &manifest.bytes, Some(&manifest.media_type)).map_err(|e| e.to_string())?;
        stack.push((d.clone(), true));
        fetched.insert(d, manifest);
        if whole {
            for blob in refs.blobs {
                if !blobs.iter().any(|b| b.digest == blob.digest) {
                    blobs.push(blob);
                }
            }
            stack.extend(refs.manifests.into_iter().map(|c| (c.digest, false)));
        }
    }
    Ok(Graph { manifests, blobs })
}
