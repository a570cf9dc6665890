//! `ferry mirror`.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{ArgGroup, Args as ClapArgs};
use ferry_mirror::{Destination, Image, MirrorOptions};
use ferry_oci::RegistryAddress;
use ferry_registry::remote::{RemoteClient, RemoteOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Output;

#[derive(ClapArgs)]
#[command(group(ArgGroup::new("manifests").required(true).args(["thin_manifest_dir", "manifest"])))]
pub struct Args {
    /// A kpromo thin-manifest directory (as for `promote images`): its images are mirrored.
    #[arg(long, value_name = "DIR")]
    thin_manifest_dir: Option<PathBuf>,

    /// One manifest file holding both `registries:` and `images:`.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,

    /// The registry to read the images from: `host[:port]/prefix` or `oci:DIR`. Image NAME is
    /// read from `<from>/NAME` (the manifests' own registries are not used).
    #[arg(long, value_name = "REGISTRY")]
    from: RegistryAddress,

    /// A store to fill: `s3://bucket/prefix/`, `gs://bucket/prefix/`, `az://container/prefix/`,
    /// `file:///dir` or a local path. Blobs go to `<to>/sha256:<hex>`. Credentials come from the
    /// cloud's standard environment (AWS_*, GOOGLE_*, AZURE_*). Repeatable.
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

    /// Allow plain HTTP to this registry host (host[:port]); loopback hosts always use it.
    /// Repeatable.
    #[arg(long, value_name = "HOST")]
    plain_http: Vec<String>,

    /// Manifest reads, store HEADs, re-hashes and blob copies in flight at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    concurrency: usize,

    /// Requests in flight at once to any one registry host.
    #[arg(long, default_value_t = 32, value_name = "N")]
    max_requests_per_host: usize,

    /// Requests per second to any one registry host (default: no limit).
    #[arg(long, value_name = "RATE")]
    max_rps_per_host: Option<f64>,

    /// Retries of a registry request that met throttling (429, honouring Retry-After), a server
    /// error (5xx) or a network error. A blob whose bytes break off or do not verify is read
    /// again up to this many times too.
    #[arg(long, default_value_t = 5, value_name = "N")]
    retries: usize,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let manifests = match (&args.thin_manifest_dir, &args.manifest) {
        (Some(dir), _) => ferry_manifest::load_thin_dir(dir)?,
        (None, Some(file)) => vec![ferry_manifest::load_plain(file)?],
        (None, None) => unreachable!("clap requires one of them"),
    };
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
    let client = RemoteClient::new(RemoteOptions {
        plain_http_hosts: args.plain_http.clone(),
        max_concurrent_requests: args.max_requests_per_host,
        max_requests_per_second: args.max_rps_per_host,
        retries: args.retries,
        ..RemoteOptions::default()
    })?;
    let registry = ferry_registry::open(&args.from, &client);
    let options = MirrorOptions {
        confirm: args.confirm,
        verify: args.verify,
        concurrency: args.concurrency.max(1),
        read_attempts: args.retries + 1,
    };

    let progress = if args.output == Output::Text && std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {elapsed}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    } else {
        ProgressBar::hidden()
    };
    let report = ferry_mirror::mirror(registry, &images, &destinations, &options, &progress).await;

    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => println!("{report}"),
    }
    Ok(if report.is_success() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
