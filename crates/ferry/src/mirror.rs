//! `ferry mirror`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use ferry_mirror::{Destination, Image, MirrorOptions};
use ferry_oci::RegistryAddress;

use crate::shared_args::{progress_bar, with_warnings, ImageManifests, RegistryFlags};
use crate::Output;

#[derive(ClapArgs)]
pub(crate) struct Args {
    #[command(flatten)]
    manifests: ImageManifests,

    /// The registry to read the images from: `host[:port]/prefix` or `oci:DIR`. Image NAME is
    /// read from `<from>/NAME` (the manifests' own registries are not used).
    #[arg(long, value_name = "REGISTRY")]
    from: RegistryAddress,

    /// A store to fill: `s3://bucket/prefix/`, `gs://bucket/prefix/`, `az://container/prefix/`,
    /// `file:///dir` or a local path. Blobs go to `<to>/sha256:<hex>`. Credentials come from the
    /// cloud's standard environment and files (AWS_*, ~/.aws, GOOGLE_*, gcloud's, AZURE_*), resolved
    /// before anything is read. Repeatable.
    #[arg(long, value_name = "STORE_URL", required = true)]
    to: Vec<String>,

    /// Where each store's inventory is written: a store URL or path naming the object, one per
    /// --to in the same order. Default: `<to>/inventory.txt`.
    #[arg(long, value_name = "URL")]
    inventory: Vec<String>,

    /// Check each store against its inventory instead of trusting it: list the store, read back
    /// and re-hash every blob, and print what is missing, corrupt or unlisted. With --confirm,
    /// copy the missing and corrupt blobs again and rewrite the inventory.
    #[arg(long)]
    verify: bool,

    /// Write blobs and inventories. Without it Ferry only prints what it would do.
    #[arg(long)]
    confirm: bool,

    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    /// Manifest reads, store HEADs, re-hashes and blob copies in flight at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    concurrency: usize,

    /// Blob contents held in memory for uploads to cloud stores, at most, in MiB, whatever
    /// --concurrency: a blob uploading to S3, GCS or Azure holds up to 24 MiB, so fewer big blobs
    /// are copied at once when they would not fit. Local folders hold none.
    #[arg(long, default_value_t = 96, value_name = "MIB")]
    memory: u64,

    #[command(flatten)]
    registry: RegistryFlags,
}

pub(crate) async fn run(args: Args) -> Result<ExitCode> {
    let manifests = args.manifests.load()?;
    let images: Vec<Image> = manifests
        .iter()
        .flat_map(|m| &m.images)
        .flat_map(|image| image.digests.keys().map(|digest| Image { name: image.name.clone(), digest: digest.clone() }))
        .collect();
    if !args.inventory.is_empty() && args.inventory.len() != args.to.len() {
        bail!(
            "--inventory given {} times for {} --to: give one per --to, in the same order",
            args.inventory.len(),
            args.to.len()
        );
    }
    let mut seen = BTreeSet::new();
    let mut destinations = Vec::with_capacity(args.to.len());
    for (i, to) in args.to.iter().enumerate() {
        if !seen.insert(to.trim_end_matches('/')) {
            bail!("--to {to} is given twice");
        }
        destinations.push(Destination::open(to, args.inventory.get(i).map(String::as_str), &[])?);
    }
    let client = args.registry.client()?;
    let registry = ferry_registry::open(&args.from, &client);
    let options = MirrorOptions {
        confirm: args.confirm,
        verify: args.verify,
        concurrency: args.concurrency.max(1),
        memory_budget: args.memory.max(1) << 20,
        read_attempts: args.registry.retries + 1,
    };

    let progress: std::sync::Arc<dyn ferry_report::Progress> = std::sync::Arc::new(progress_bar(args.output, Some(0)));
    let report = ferry_mirror::mirror(registry, &images, &destinations, &options, &progress).await;

    match args.output {
        Output::Json => {
            println!("{}", serde_json::to_string_pretty(&with_warnings(serde_json::to_value(&report)?, &manifests)?)?)
        }
        Output::Text => println!("{report}"),
    }
    Ok(if report.is_success() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
