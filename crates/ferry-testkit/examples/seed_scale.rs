//! Fill a staging registry with many tiny two-arch images spread over many projects and write
//! the kpromo thin manifest directory that promotes them, the size of a large real project. Used
//! by `bench/scale.sh`.
//!
//! ```text
//! seed_scale SOURCE PROJECTS IMAGES DIGESTS OUT_DIR DEST...
//! ```
//! SOURCE and DEST are registry addresses as in a manifest (`host:port/prefix`). Project `pNN`
//! has its source at `SOURCE/pNN` and one destination `DEST/pNN` per DEST. The IMAGES images
//! (`imgNNN`) are dealt round-robin to the projects; each has DIGESTS digests tagged `v1.0.N`,
//! each a two-arch image of a few KiB (a 2 KiB base layer shared by all, a 1 KiB own layer).
//!
//! One more image, `extra` in project `p00`, is pushed to the source but not listed; its
//! `images.yaml` entry is printed on standard output, for the script to add later.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ferry_oci::RegistryAddress;
use ferry_registry::remote::{RemoteClient, RemoteOptions};
use ferry_testkit::images::{push, repo, ImageSpec, TestImage};
use futures::stream::{self, StreamExt, TryStreamExt};

/// One image of one project: its name and its digests, each with its tag.
struct Entry {
    project: usize,
    name: String,
    digests: Vec<(TestImage, String)>,
}

fn entry(project: usize, name: &str, digests: usize) -> Entry {
    let digests = (0..digests)
        .map(|n| {
            let image = ImageSpec::two_arch(&format!("p{project:02}/{name}/{n}"), 2048, 1024).build();
            (image, format!("v1.0.{n}"))
        })
        .collect();
    Entry { project, name: name.to_string(), digests }
}

fn yaml(entry: &Entry) -> String {
    let mut out = format!("- name: {}\n  dmap:\n", entry.name);
    for (image, tag) in &entry.digests {
        out += &format!("    \"{}\": [\"{tag}\"]\n", image.digest());
    }
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        bail!("usage: seed_scale SOURCE PROJECTS IMAGES DIGESTS OUT_DIR DEST...");
    }
    let source = &args[0];
    let projects: usize = args[1].parse().context("PROJECTS")?;
    let count: usize = args[2].parse().context("IMAGES")?;
    let digests: usize = args[3].parse().context("DIGESTS")?;
    let out = std::path::PathBuf::from(&args[4]);
    let destinations = &args[5..];
    if projects == 0 {
        bail!("PROJECTS must be at least 1");
    }

    let mut entries: Vec<Entry> = (0..count).map(|i| entry(i % projects, &format!("img{i:03}"), digests)).collect();
    let extra = entry(0, "extra", digests);

    let client = RemoteClient::new(RemoteOptions::default())?;
    let registries = (0..projects)
        .map(|p| {
            let address: RegistryAddress = format!("{source}/p{p:02}").parse()?;
            Ok(ferry_registry::open(&address, &client))
        })
        .collect::<Result<Vec<_>>>()?;
    entries.push(extra);
    let pushes: Vec<_> = entries
        .iter()
        .flat_map(|e| e.digests.iter().map(move |(image, tag)| (e.project, &e.name, image, tag)))
        .collect();
    stream::iter(pushes)
        .map(|(project, name, image, tag)| {
            let registry = Arc::clone(&registries[project]);
            async move { push(registry.as_ref(), &repo(name), image, &[tag.as_str()]).await }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await?;
    let extra = entries.pop().expect("the extra image");

    for p in 0..projects {
        let manifests = out.join(format!("manifests/p{p:02}"));
        let images_dir = out.join(format!("images/p{p:02}"));
        std::fs::create_dir_all(&manifests)?;
        std::fs::create_dir_all(&images_dir)?;
        let mut registries = format!("registries:\n- name: {source}/p{p:02}\n  src: true\n");
        for d in destinations {
            registries += &format!("- name: {d}/p{p:02}\n");
        }
        std::fs::write(manifests.join("promoter-manifest.yaml"), registries)?;
        let list: String = entries.iter().filter(|e| e.project == p).map(yaml).collect();
        std::fs::write(images_dir.join("images.yaml"), list)?;
    }
    let edges = count * digests * destinations.len();
    eprintln!(
        "seeded {projects} projects, {count} images, {} digests into {source} ({} destinations, {edges} edges); \
         manifests in {}",
        count * digests,
        destinations.len(),
        out.display()
    );
    print!("{}", yaml(&extra));
    Ok(())
}
