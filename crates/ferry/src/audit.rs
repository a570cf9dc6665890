//! `ferry audit`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{ArgGroup, Args as ClapArgs};
use ferry_audit::AuditOptions;
use ferry_files::Stores;
use ferry_promote::Registries;
use ferry_store::{ObjectName, Store};

use crate::shared_args::{with_warnings, ImageManifests, RegistryFlags};
use crate::Output;

#[derive(ClapArgs)]
// Image manifests (--thin-manifest-dir, --manifest) or file manifests (--manifests): one of them.
#[command(mut_group("ImageManifests", |group| group.required(false)))]
#[command(group(ArgGroup::new("input").required(true).args(["thin_manifest_dir", "manifest", "manifests"])))]
pub(crate) struct Args {
    #[command(flatten)]
    images: ImageManifests,

    /// A kpromo file-promotion directory, as `ferry promote files --manifests` reads it: audit
    /// the destination stores of its projects instead of registries.
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,

    /// The inventory `ferry promote files --inventory` writes, relative to each destination
    /// store's base: never reported as a file no manifest lists. Repeatable.
    #[arg(long, value_name = "NAME", default_value = "inventory.txt")]
    inventory: Vec<String>,

    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    /// Report each promised digest present without a cosign signature by one of the keys: those
    /// of --key, else the policy's require_signatures keys (DIR/policy.yaml).
    #[arg(long)]
    require_signatures: bool,

    /// A public key (PEM) for --require-signatures; repeatable.
    #[arg(long, value_name = "FILE", requires = "require_signatures")]
    key: Vec<PathBuf>,

    /// Requests (and re-hashes) in flight at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    concurrency: usize,

    #[command(flatten)]
    registry: RegistryFlags,
}

pub(crate) async fn run(args: Args) -> Result<ExitCode> {
    let inventories = args
        .inventory
        .iter()
        .map(|name| ObjectName::parse(name).with_context(|| format!("--inventory {name}")))
        .collect::<Result<Vec<_>>>()?;
    let require_signatures = match (args.require_signatures, args.key.is_empty(), args.images.thin_manifest_dir()) {
        (false, _, _) => None,
        (true, false, _) => Some(crate::trust::verifier(&args.key)?),
        (true, true, Some(dir)) => Some(crate::trust::policy_verifier(dir)?.with_context(|| {
            format!(
                "--require-signatures: no --key, and {} requires none",
                dir.join(ferry_review::POLICY_FILE).display()
            )
        })?),
        (true, true, None) => {
            anyhow::bail!("--require-signatures needs --key FILE (or a thin-manifest directory with a policy)")
        }
    };
    let options = AuditOptions {
        concurrency: args.concurrency.max(1),
        inventories,
        require_signatures: require_signatures.map(std::sync::Arc::new),
    };

    let (report, warnings) = match &args.manifests {
        Some(dir) => {
            let manifests = ferry_manifest::load_files_dir(dir)?;
            let stores = Stores::open(&manifests, Store::open)?;
            (ferry_audit::files::audit(&manifests, &stores, &options).await, Vec::new())
        }
        None => {
            let manifests = args.images.load()?;
            let client = args.registry.client()?;
            let registries =
                Registries::open(&manifests, |address| Ok::<_, anyhow::Error>(ferry_registry::open(address, &client)))?;
            (ferry_audit::images::audit(&manifests, &registries, &options).await, manifests)
        }
    };

    match args.output {
        Output::Json => {
            println!("{}", serde_json::to_string_pretty(&with_warnings(serde_json::to_value(&report)?, &warnings)?)?)
        }
        Output::Text => {
            for finding in &report.findings {
                println!("{finding}");
            }
            println!("{}", report.totals);
        }
    }
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
