//! `ferry promote images`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{ArgGroup, Args as ClapArgs};
use ferry_promote::{PromoteOptions, Registries, Status};
use ferry_registry::remote::{RemoteClient, RemoteOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Output;

#[derive(ClapArgs)]
#[command(group(ArgGroup::new("manifests").required(true).args(["thin_manifest_dir", "manifest"])))]
pub struct Args {
    /// A kpromo thin-manifest directory: manifests/<project>/promoter-manifest.yaml with
    /// images/<project>/images.yaml beside it (see docs/manifests.md).
    #[arg(long, value_name = "DIR")]
    thin_manifest_dir: Option<PathBuf>,

    /// One manifest file holding both `registries:` and `images:`.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,

    /// Write to the destination registries. Without it Ferry only prints the plan.
    #[arg(long)]
    confirm: bool,

    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    /// Allow plain HTTP to this registry host (host[:port]); loopback hosts always use it.
    /// Repeatable.
    #[arg(long, value_name = "HOST")]
    plain_http: Vec<String>,

    /// Blob transfers and planning requests in flight at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    concurrency: usize,

    /// Requests in flight at once to any one registry host.
    #[arg(long, default_value_t = 32, value_name = "N")]
    max_requests_per_host: usize,

    /// Requests per second to any one registry host (default: no limit).
    #[arg(long, value_name = "RATE")]
    max_rps_per_host: Option<f64>,

    /// Retries of a request that met throttling (429), a server error (5xx) or a network error.
    #[arg(long, default_value_t = 5, value_name = "N")]
    retries: usize,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let manifests = match (&args.thin_manifest_dir, &args.manifest) {
        (Some(dir), _) => ferry_manifest::load_thin_dir(dir)?,
        (None, Some(file)) => vec![ferry_manifest::load_plain(file)?],
        (None, None) => unreachable!("clap requires one of them"),
    };
    let client = RemoteClient::new(RemoteOptions {
        plain_http_hosts: args.plain_http.clone(),
        max_concurrent_requests: args.max_requests_per_host,
        max_requests_per_second: args.max_rps_per_host,
        retries: args.retries,
        ..RemoteOptions::default()
    })?;
    let registries =
        Registries::open(&manifests, |address| Ok::<_, anyhow::Error>(ferry_registry::open(address, &client)))?;
    let options = PromoteOptions { confirm: args.confirm, concurrency: args.concurrency.max(1), ..Default::default() };

    let progress = if args.output == Output::Text && std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
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
    let report = ferry_promote::promote(&manifests, &registries, &options, &progress).await;

    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => {
            for edge in &report.edges {
                if edge.status != Status::Skipped {
                    println!("{edge}");
                }
            }
            println!("{}", report.summary);
        }
    }
    Ok(if report.is_success() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
