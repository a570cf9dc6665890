//! Fill a staging registry with deterministic two-arch test images and write the kpromo thin
//! manifest directory that promotes them. Used by `scripts/demo` and `bench/promote.sh`.
//!
//! ```text
//! seed SOURCE IMAGES BASE_KIB OWN_KIB OUT_DIR DEST...
//! ```
//! SOURCE and DEST are registry addresses as in a manifest (`host:port/prefix` or `oci:DIR`).
//! Each image `imgNNN` is tagged `v1`; all share the base layer (one per architecture).

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ferry_oci::RegistryAddress;
use ferry_registry::remote::{RemoteClient, RemoteOptions};
use ferry_testkit::images::{push, repo, ImageSpec};
use futures::stream::{self, StreamExt, TryStreamExt};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        bail!("usage: seed SOURCE IMAGES BASE_KIB OWN_KIB OUT_DIR DEST...");
    }
    let source: RegistryAddress = args[0].parse()?;
    let count: usize = args[1].parse().context("IMAGES")?;
    let base_kib: usize = args[2].parse().context("BASE_KIB")?;
    let own_kib: usize = args[3].parse().context("OWN_KIB")?;
    let out = std::path::PathBuf::from(&args[4]);
    let destinations: Vec<RegistryAddress> = args[5..].iter().map(|d| d.parse()).collect::<Result<_, _>>()?;

    let client = RemoteClient::new(RemoteOptions::default())?;
    let registry = ferry_registry::open(&source, &client);
    let images: Vec<(String, ferry_testkit::images::TestImage)> = (0..count)
        .map(|i| {
            let name = format!("img{i:03}");
            let image = ImageSpec::two_arch(&name, base_kib * 1024, own_kib * 1024).build();
            (name, image)
        })
        .collect();
    stream::iter(&images)
        .map(|(name, image)| {
            let registry = Arc::clone(&registry);
            async move { push(registry.as_ref(), &repo(name), image, &["v1"]).await }
        })
        .buffer_unordered(8)
        .try_collect::<()>()
        .await?;

    let manifests = out.join("manifests/demo");
    let images_dir = out.join("images/demo");
    std::fs::create_dir_all(&manifests)?;
    std::fs::create_dir_all(&images_dir)?;
    let mut registries = format!("registries:\n- name: {source}\n  src: true\n");
    for d in &destinations {
        registries += &format!("- name: {d}\n");
    }
    std::fs::write(manifests.join("promoter-manifest.yaml"), registries)?;
    let mut list = String::new();
    for (name, image) in &images {
        list += &format!("- name: {name}\n  dmap:\n    \"{}\": [\"v1\"]\n", image.digest());
    }
    std::fs::write(images_dir.join("images.yaml"), list)?;
    eprintln!("seeded {count} images into {source}; manifests in {}", out.display());
    Ok(())
}
