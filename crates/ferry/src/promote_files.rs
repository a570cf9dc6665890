//! `ferry promote files`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::shared_args::{progress_bar, AuditLogArgs};
use crate::Output;
use anyhow::{Context, Result};
use clap::{ArgGroup, Args as ClapArgs};
use ferry_files::{FilesOptions, Status, Stores};
use ferry_store::{ObjectName, Store};

#[derive(ClapArgs)]
#[command(group(ArgGroup::new("input").required(true).args(["manifests", "filestores"])))]
pub(crate) struct Args {
    /// A kpromo file-promotion directory: filestores/<project>/filepromoter-manifest.yaml (the
    /// source and destination stores) and manifests/<project>/*.yaml (the files and their
    /// sha256), one manifest per project (see docs/files.md).
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,

    /// One filestores file (`filestores:` with one `src: true`); give the files with --files.
    #[arg(long, value_name = "FILE", requires = "files")]
    filestores: Option<PathBuf>,

    /// A files manifest (`files:` of `{name, sha256}`), or a directory whose YAML files are
    /// merged.
    #[arg(long, value_name = "FILE_OR_DIR", requires = "filestores", conflicts_with = "manifests")]
    files: Option<PathBuf>,

    /// Promote only what the change since this git revision of the repository holding DIR adds
    /// (what `ferry validate --manifests DIR --base REV` prints); refuse, promoting nothing, when
    /// that change alters a file's sha256 or removes what was promoted.
    #[arg(long, value_name = "REV", requires = "manifests")]
    since: Option<String>,

    /// Write to the destination stores. Without it Ferry only reads the stores and prints what
    /// it would do.
    #[arg(long)]
    confirm: bool,

    /// Replace a destination file that holds other bytes (logged as a warning) instead of
    /// refusing it. Without it, files already published are never changed.
    #[arg(long)]
    allow_overwrite: bool,

    /// Also rewrite an inventory for `ferry serve` in every destination: one `/path` line per file
    /// it holds, at NAME relative to the destination's base (default: inventory.txt).
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "inventory.txt")]
    inventory: Option<String>,

    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    /// Files checked or copied at once (each copy streams to all its destinations together).
    #[arg(long, default_value_t = 8, value_name = "N")]
    concurrency: usize,

    /// File contents held in memory for uploads to cloud stores, at most, in MiB, whatever
    /// --concurrency: a file uploading to S3, GCS or Azure holds up to 24 MiB, so fewer big files
    /// are copied at once when they would not fit. Local folders hold none.
    #[arg(long, default_value_t = 96, value_name = "MIB")]
    memory: u64,

    #[command(flatten)]
    audit_log: AuditLogArgs,
}

pub(crate) async fn run(args: Args) -> Result<ExitCode> {
    let manifests = match (&args.manifests, &args.filestores, &args.files) {
        (Some(dir), _, _) => ferry_manifest::load_files_dir(dir)?,
        (None, Some(filestores), Some(files)) => vec![ferry_manifest::load_files(filestores, files)?],
        _ => unreachable!("clap requires --manifests, or --filestores with --files"),
    };
    // With --since, only what the change adds.
    let manifests = match (&args.since, &args.manifests) {
        (Some(rev), Some(dir)) => match ferry_review::files_since(dir, rev, &manifests) {
            Ok(reduced) => reduced,
            Err(e) => return Ok(crate::shared_args::since_refused(&e)),
        },
        _ => manifests,
    };
    let inventory = args.inventory.as_deref().map(ObjectName::parse).transpose().context("--inventory")?;
    for manifest in &manifests {
        for store in &manifest.destinations {
            if let Some(account) = &store.service_account {
                tracing::debug!(store = %store.base, account, "service-account is not used: credentials come from the environment");
            }
        }
    }
    let audit_log = args.audit_log.open(args.confirm)?;
    let stores = Stores::open(&manifests, Store::open)?;
    let options = FilesOptions {
        confirm: args.confirm,
        allow_overwrite: args.allow_overwrite,
        concurrency: args.concurrency.max(1),
        memory_budget: args.memory.max(1) << 20,
        inventory,
    };

    let progress: std::sync::Arc<dyn ferry_report::Progress> = std::sync::Arc::new(progress_bar(args.output, None));
    let report = ferry_files::promote(&manifests, &stores, &options, &progress).await;

    let exit_status = if report.is_success() { 0 } else { 1 };
    let mut json = serde_json::to_value(&report)?;
    let recorded = audit_log.record("promote files", args.manifests.as_deref(), exit_status, &json).await;
    recorded.add_to(&mut json);
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&json)?),
        Output::Text => {
            for target in report.files.iter().filter(|t| t.status != Status::Skipped) {
                println!("{target}");
            }
            for inventory in &report.inventories {
                println!("{inventory}");
            }
            println!("{}", report.summary);
            println!("{}", recorded.line());
        }
    }
    Ok(ExitCode::from(recorded.finish(exit_status)))
}
