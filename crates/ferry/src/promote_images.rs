//! `ferry promote images`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;
use ferry_promote::{PromoteOptions, Registries, Status};

use crate::shared_args::{progress_bar, with_warnings, AuditLogArgs, ImageManifests, RegistryFlags};
use crate::Output;

#[derive(ClapArgs)]
pub(crate) struct Args {
    #[command(flatten)]
    manifests: ImageManifests,

    /// Promote only what the change since this git revision of the repository holding the
    /// thin-manifest directory adds (what `ferry validate --base REV` prints); refuse, promoting
    /// nothing, when that change moves a tag or removes what was promoted.
    #[arg(long, value_name = "REV", requires = "thin_manifest_dir")]
    since: Option<String>,

    /// Write to the destination registries. Without it Ferry only prints the plan.
    #[arg(long)]
    confirm: bool,

    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    /// Blob transfers and planning requests in flight at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    concurrency: usize,

    #[command(flatten)]
    registry: RegistryFlags,

    #[command(flatten)]
    audit_log: AuditLogArgs,

    /// Sign each promoted digest with this cosign key (a PEM file — PKCS#8, SEC1 or cosign's
    /// encrypted key, whose password is read from COSIGN_PASSWORD — or env://VAR for the PEM in
    /// a variable) and add the signature to its sha256-<hex>.sig image at every destination,
    /// next to the signatures already there. See docs/trust.md.
    #[arg(long, value_name = "FILE|env://VAR", requires = "confirm")]
    sign_key: Option<String>,

    /// The registry name signed as each image's docker-reference (NAME/IMAGE), e.g. the
    /// project's public front door; default: the image's first destination.
    #[arg(long, value_name = "NAME", requires = "sign_key")]
    sign_identity: Option<String>,

    /// Annotations signed into each signature's payload, k=v,k=v.
    #[arg(long, value_name = "K=V,...", requires = "sign_key", value_delimiter = ',')]
    sign_annotations: Vec<String>,
}

pub(crate) async fn run(args: Args) -> Result<ExitCode> {
    let manifests = args.manifests.load()?;
    // With --since, only what the change adds.
    let reduced = match (&args.since, args.manifests.thin_manifest_dir()) {
        (Some(rev), Some(dir)) => match ferry_review::images_since(dir, rev, &manifests) {
            Ok(reduced) => Some(reduced),
            Err(e) => return Ok(crate::shared_args::since_refused(&e)),
        },
        _ => None,
    };
    let planned = reduced.as_deref().unwrap_or(&manifests);
    let audit_log = args.audit_log.open(args.confirm)?;
    let client = args.registry.client()?;
    let registries =
        Registries::open(planned, |address| Ok::<_, anyhow::Error>(ferry_registry::open(address, &client)))?;
    let trust = crate::trust::promotion_trust(
        args.manifests.thin_manifest_dir(),
        args.sign_key.as_deref(),
        args.sign_identity.clone(),
        &args.sign_annotations,
    )?;
    let options =
        PromoteOptions { confirm: args.confirm, concurrency: args.concurrency.max(1), trust, ..Default::default() };

    let progress = progress_bar(args.output, None);
    let report = ferry_promote::promote(planned, &registries, &options, &progress).await;

    let exit_status = if report.is_success() { 0 } else { 1 };
    let mut json = with_warnings(serde_json::to_value(&report)?, &manifests)?;
    let recorded = audit_log.record("promote images", args.manifests.thin_manifest_dir(), exit_status, &json).await;
    recorded.add_to(&mut json);
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&json)?),
        Output::Text => {
            for edge in &report.edges {
                if edge.status != Status::Skipped {
                    println!("{edge}");
                }
            }
            println!("{}", report.summary);
            println!("{}", recorded.line());
        }
    }
    Ok(ExitCode::from(recorded.finish(exit_status)))
}
