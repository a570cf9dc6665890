//! Test images built in memory: real tar layers (OCI: uncompressed; Docker: gzip), configs,
//! per-architecture manifests and multi-arch indexes, deterministic from a seed so that two images
//! built with the same base seed share that layer byte-for-byte.

use std::io::Write;

use anyhow::Result;
use bytes::Bytes;
use ferry_oci::{media_types, Digest, Reference, RepoName, Tag};
use ferry_registry::{BlobData, Manifest, Registry};
use serde_json::json;

/// Which family of media types an image uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// OCI manifests and indexes, uncompressed tar layers.
    Oci,
    /// Docker schema 2 manifests and manifest lists, gzip layers.
    Docker,
}

/// A blob with its digest.
#[derive(Clone, Debug)]
pub struct Blob {
    /// The sha256 of `bytes`.
    pub digest: Digest,
    /// The media type its descriptors give it.
    pub media_type: String,
    /// The contents.
    pub bytes: Bytes,
}

impl Blob {
    fn new(media_type: &str, bytes: Bytes) -> Blob {
        Blob { digest: Digest::of(&bytes), media_type: media_type.to_string(), bytes }
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// An image: its top manifest (an index, or a single manifest), child manifests and blobs.
#[derive(Clone, Debug)]
pub struct TestImage {
    /// The manifest the image is pulled by: the index of a multi-arch image, else the one
    /// manifest.
    pub top: Manifest,
    /// Child manifests of an index, in order (empty for a single-arch image).
    pub children: Vec<Manifest>,
    /// Every config and layer blob, deduplicated.
    pub blobs: Vec<Blob>,
}

impl TestImage {
    /// The image's digest: that of its top manifest.
    pub fn digest(&self) -> &Digest {
        &self.top.digest
    }

    /// Bytes of all blobs.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.bytes.len() as u64).sum()
    }
}

/// Deterministic pseudo-random bytes (splitmix64): same seed, same bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A tar archive holding one file of `size` pseudo-random bytes; returns (layer blob, diff id).
fn layer(flavour: Flavour, seed: u64, size: usize) -> (Blob, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, format!("data-{seed}"), &random_bytes(seed, size)[..]).expect("in-memory tar");
    let tar = tar.into_inner().expect("in-memory tar");
    let diff_id = Digest::of(&tar);
    let blob = match flavour {
        Flavour::Oci => Blob::new("application/vnd.oci.image.layer.v1.tar", tar.into()),
        Flavour::Docker => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).expect("in-memory gzip");
            Blob::new("application/vnd.docker.image.rootfs.diff.tar.gzip", gz.finish().expect("gzip").into())
        }
    };
    (blob, diff_id)
}

/// What to build. Layers are (seed, size); equal seeds give equal layers across images.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// OCI or Docker media types.
    pub flavour: Flavour,
    /// Architectures (`amd64`, `arm64`, ...), one manifest each; more than one makes an index.
    pub archs: Vec<&'static str>,
    /// Per-architecture layers: the seed is mixed with the architecture so that each arch gets
    /// its own bytes, but two images with the same seeds share them.
    pub layers: Vec<(u64, usize)>,
    /// Distinguishes images that have the same layers (goes into the config).
    pub label: String,
}

impl ImageSpec {
    /// A two-arch OCI image: a shared base layer (seed 1) and an own layer (seed from `label`).
    pub fn two_arch(label: &str, base_size: usize, own_size: usize) -> ImageSpec {
        let own_seed = label.bytes().fold(1469598103934665603u64, |h, b| (h ^ b as u64).wrapping_mul(1099511628211));
        ImageSpec {
            flavour: Flavour::Oci,
            archs: vec!["amd64", "arm64"],
            layers: vec![(1, base_size), (own_seed, own_size)],
            label: label.to_string(),
        }
    }

    /// A single-arch (`amd64`) OCI image, no index: the [`ImageSpec::two_arch`] layers, both of
    /// `size` bytes.
    pub fn single(label: &str, size: usize) -> ImageSpec {
        ImageSpec { archs: vec!["amd64"], ..ImageSpec::two_arch(label, size, size) }
    }

    /// The same spec with `flavour`'s media types.
    pub fn flavour(mut self, flavour: Flavour) -> ImageSpec {
        self.flavour = flavour;
        self
    }

    /// Builds the image's blobs and manifests in memory; the same spec always gives the same
    /// bytes.
    pub fn build(&self) -> TestImage {
        let (manifest_type, index_type, config_type) = match self.flavour {
            Flavour::Oci => {
                (media_types::OCI_MANIFEST, media_types::OCI_INDEX, "application/vnd.oci.image.config.v1+json")
            }
            Flavour::Docker => (
                media_types::DOCKER_MANIFEST,
                media_types::DOCKER_MANIFEST_LIST,
                "application/vnd.docker.container.image.v1+json",
            ),
        };
        let mut blobs: Vec<Blob> = Vec::new();
        let mut children = Vec::new();
        for (i, arch) in self.archs.iter().enumerate() {
            let layers: Vec<(Blob, Digest)> = self
                .layers
                .iter()
                .map(|&(seed, size)| layer(self.flavour, seed.wrapping_mul(31).wrapping_add(i as u64), size))
                .collect();
            let config = Blob::new(
                config_type,
                serde_json::to_vec(&json!({
                    "architecture": arch, "os": "linux",
                    "config": {"Labels": {"ferry.test": self.label}},
                    "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.1).collect::<Vec<_>>()},
                }))
                .unwrap()
                .into(),
            );
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": config.descriptor(),
                "layers": layers.iter().map(|l| l.0.descriptor()).collect::<Vec<_>>(),
            });
            children.push(Manifest::new(manifest_type, serde_json::to_vec(&manifest).unwrap()));
            for blob in std::iter::once(config).chain(layers.into_iter().map(|l| l.0)) {
                if !blobs.iter().any(|b| b.digest == blob.digest) {
                    blobs.push(blob);
                }
            }
        }
        if children.len() == 1 {
            return TestImage { top: children.pop().unwrap(), children, blobs };
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": children.iter().zip(&self.archs).map(|(m, arch)| json!({
                "mediaType": m.media_type, "digest": m.digest, "size": m.bytes.len(),
                "platform": {"architecture": arch, "os": "linux"},
            })).collect::<Vec<_>>(),
        });
        TestImage { top: Manifest::new(index_type, serde_json::to_vec_pretty(&index).unwrap()), children, blobs }
    }
}

/// A cosign-style signature image for `subject`: a small OCI manifest with one layer, to be
/// tagged `sha256-<hex>.sig`.
pub fn signature_for(subject: &Digest) -> TestImage {
    let payload = Blob::new(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        serde_json::to_vec(&json!({"critical": {"image": {"docker-manifest-digest": subject}}})).unwrap().into(),
    );
    let config = Blob::new("application/vnd.oci.image.config.v1+json", Bytes::from_static(b"{}"));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [payload.descriptor()],
    });
    TestImage {
        top: Manifest::new(media_types::OCI_MANIFEST, serde_json::to_vec(&manifest).unwrap()),
        children: vec![],
        blobs: vec![config, payload],
    }
}

/// The tag cosign gives the signature of `subject`.
pub fn signature_tag(subject: &Digest) -> Tag {
    format!("{}.sig", subject.tag_prefix()).parse().unwrap()
}

/// Push `image` into `repo` with `tags` (by digest only when `tags` is empty): blobs, then child
/// manifests, then the top manifest.
pub async fn push(registry: &dyn Registry, repo: &RepoName, image: &TestImage, tags: &[&str]) -> Result<()> {
    for blob in &image.blobs {
        if !registry.has_blob(repo, &blob.digest).await? {
            registry.put_blob(repo, &blob.digest, &BlobData::Memory(blob.bytes.clone())).await?;
        }
    }
    for child in &image.children {
        registry.put_manifest(repo, &Reference::Digest(child.digest.clone()), child).await?;
    }
    if tags.is_empty() {
        registry.put_manifest(repo, &Reference::Digest(image.top.digest.clone()), &image.top).await?;
    }
    for tag in tags {
        registry.put_manifest(repo, &Reference::Tag(tag.parse()?), &image.top).await?;
    }
    Ok(())
}

/// Parse a repository name in tests.
pub fn repo(name: &str) -> RepoName {
    name.parse().expect("valid test repository name")
}
