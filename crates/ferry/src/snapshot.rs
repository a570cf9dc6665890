//! `ferry snapshot`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use ferry_oci::{RegistryAddress, RepoName};

use crate::shared_args::RegistryFlags;

/// How `ferry snapshot` prints the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SnapshotOutput {
    /// The `images.yaml` of a thin manifest directory.
    Yaml,
    /// The same list as JSON.
    Json,
}

#[derive(ClapArgs)]
pub(crate) struct Args {
    /// The registry to read: `host[:port][/prefix]` or `oci:DIR`, as in a promoter manifest.
    #[arg(value_name = "REGISTRY")]
    registry: String,

    /// Only these repositories (relative to the prefix), instead of every one in the catalog.
    #[arg(long, value_name = "NAME", num_args = 1..)]
    repos: Vec<String>,

    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = SnapshotOutput::Yaml)]
    output: SnapshotOutput,

    /// Registry requests in flight at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    concurrency: usize,

    #[command(flatten)]
    registry_flags: RegistryFlags,
}

pub(crate) async fn run(args: Args) -> Result<ExitCode> {
    let address: RegistryAddress = args.registry.parse()?;
    let repos = args
        .repos
        .iter()
        .map(|name| name.parse::<RepoName>().with_context(|| format!("--repos {name}")))
        .collect::<Result<Vec<_>>>()?;
    let client = args.registry_flags.client()?;
    let registry = ferry_registry::open(&address, &client);
    let named = (!repos.is_empty()).then_some(repos.as_slice());
    let snapshot = match ferry_registry::snapshot::snapshot(registry.as_ref(), named, args.concurrency).await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    match args.output {
        SnapshotOutput::Yaml => print!("{}", snapshot.to_yaml()),
        SnapshotOutput::Json => println!("{}", serde_json::to_string_pretty(&snapshot.to_json())?),
    }
    Ok(ExitCode::SUCCESS)
}
