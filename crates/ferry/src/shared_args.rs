//! Flags and terminal output shared by several subcommands, so each flag means the same thing
//! everywhere.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use ferry_manifest::PromotionManifest;
use ferry_registry::remote::{RemoteClient, RemoteOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Output;

/// Which image manifests to read (`promote images`, `mirror`).
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct ImageManifests {
    /// A kpromo thin-manifest directory: manifests/<project>/promoter-manifest.yaml with
    /// images/<project>/images.yaml beside it (see docs/manifests.md).
    #[arg(long, value_name = "DIR")]
    thin_manifest_dir: Option<PathBuf>,

    /// One manifest file holding both `registries:` and `images:`.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
}

impl ImageManifests {
    /// Reads the manifests, and prints what was odd in them but accepted on standard error, one
    /// `warning: FILE:LINE: message` a line.
    pub(crate) fn load(&self) -> Result<Vec<PromotionManifest>> {
        let manifests = match (&self.thin_manifest_dir, &self.manifest) {
            (Some(dir), _) => ferry_manifest::load_thin_dir(dir)?,
            (None, Some(file)) => vec![ferry_manifest::load_plain(file)?],
            (None, None) => unreachable!("clap requires one of them"),
        };
        for warning in manifests.iter().flat_map(|m| &m.warnings) {
            eprintln!("warning: {warning}");
        }
        Ok(manifests)
    }

    /// The thin-manifest directory, when the manifests come from one.
    pub(crate) fn thin_manifest_dir(&self) -> Option<&std::path::Path> {
        self.thin_manifest_dir.as_deref()
    }
}

/// A JSON report with the manifests' warnings added as `"warnings"`: `[{"path", "line", "message"}]`.
pub(crate) fn with_warnings(
    mut report: serde_json::Value,
    manifests: &[PromotionManifest],
) -> Result<serde_json::Value> {
    let warnings: Vec<_> = manifests.iter().flat_map(|m| &m.warnings).collect();
    if let Some(fields) = report.as_object_mut() {
        fields.insert("warnings".into(), serde_json::to_value(warnings)?);
    }
    Ok(report)
}

/// How Ferry talks to registries over HTTP.
#[derive(Args)]
pub(crate) struct RegistryFlags {
    /// Allow plain HTTP to this registry host (host[:port]); loopback hosts always use it.
    /// Repeatable.
    #[arg(long, value_name = "HOST")]
    plain_http: Vec<String>,

    /// Requests in flight at once to any one registry host.
    #[arg(long, default_value_t = 32, value_name = "N")]
    max_requests_per_host: usize,

    /// Requests per second to any one registry host (default: no limit).
    #[arg(long, value_name = "RATE")]
    max_rps_per_host: Option<f64>,

    /// Retries of a registry request that met throttling (429, honouring Retry-After), a server
    /// error (5xx) or a network error. `ferry mirror` also reads a blob again up to this many
    /// times when its bytes break off or do not verify.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retries: usize,
}

impl RegistryFlags {
    pub(crate) fn client(&self) -> Result<std::sync::Arc<RemoteClient>> {
        Ok(RemoteClient::new(RemoteOptions {
            plain_http_hosts: self.plain_http.clone(),
            max_concurrent_requests: self.max_requests_per_host,
            max_requests_per_second: self.max_rps_per_host,
            retries: self.retries,
            ..RemoteOptions::default()
        })?)
    }
}

/// A bytes progress bar on standard error when text goes to a terminal; hidden otherwise, so
/// JSON output and logs stay clean.
pub(crate) fn progress_bar(output: Output, length: Option<u64>) -> Bar {
    if output != Output::Text || !std::io::stderr().is_terminal() {
        return Bar(ProgressBar::hidden());
    }
    let bar = ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {elapsed}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    Bar(bar)
}

/// The engines' progress ([`ferry_report::Progress`]) drawn as an indicatif bar.
#[derive(Clone)]
pub(crate) struct Bar(pub ProgressBar);

impl ferry_report::Progress for Bar {
    fn phase(&self, what: &str) {
        self.0.set_message(what.to_string());
    }

    fn total(&self, bytes: u64) {
        self.0.set_position(0);
        self.0.set_length(bytes);
    }

    fn grow(&self, bytes: u64) {
        self.0.inc_length(bytes);
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// Prints why `--since REV` cannot start (each finding as `error: FILE:LINE: message`) and gives
/// the exit status: 1 when the change is refused, 2 when the manifests at REV or the revision
/// itself cannot be read.
pub(crate) fn since_refused(error: &ferry_review::SinceError) -> std::process::ExitCode {
    use ferry_review::SinceError;
    match error {
        SinceError::Git(e) => eprintln!("error: --since: {e}"),
        SinceError::Invalid(findings) | SinceError::Refused(findings) => {
            findings.iter().for_each(|f| eprintln!("error: {f}"))
        }
    }
    match error {
        SinceError::Refused(findings) => {
            eprintln!(
                "refused: {} findings in the change since the --since revision; nothing promoted",
                findings.len()
            );
            std::process::ExitCode::from(1)
        }
        _ => std::process::ExitCode::from(2),
    }
}

/// `--audit-log`: a record of each confirmed run (`promote images`, `promote files`).
#[derive(Args)]
pub(crate) struct AuditLogArgs {
    /// Record each confirmed run as one new JSON object in STORE_URL (a folder, s3://, gs://,
    /// az://): who ran it, the manifests' git revision, the command line, every edge and its
    /// result. Never overwrites a record. See docs/audit.md.
    #[arg(long, value_name = "STORE_URL")]
    audit_log: Option<String>,
}

/// Where a run's record goes, opened before the run so that a store without credentials stops
/// it before anything is written anywhere.
pub(crate) struct AuditLog {
    store: Option<ferry_store::Store>,
    confirm: bool,
    started: std::time::SystemTime,
}

impl AuditLogArgs {
    /// Opens the store (resolving its credentials) when the run is confirmed and one was named.
    pub(crate) fn open(&self, confirm: bool) -> Result<AuditLog> {
        let store = match (&self.audit_log, confirm) {
            (Some(url), true) => Some(ferry_store::Store::open(url).context("--audit-log")?),
            _ => None,
        };
        Ok(AuditLog { store, confirm, started: std::time::SystemTime::now() })
    }
}

impl AuditLog {
    /// Writes the run's record (a dry run or a run without --audit-log writes none).
    pub(crate) async fn record(
        &self,
        command: &str,
        manifests_dir: Option<&std::path::Path>,
        exit_status: u8,
        report: &serde_json::Value,
    ) -> Recorded {
        let Some(store) = &self.store else {
            return Recorded::Not(if self.confirm { "no --audit-log" } else { "dry run" });
        };
        let manifests = manifests_dir.and_then(|dir| {
            let revision = ferry_review::revision(dir)?;
            Some(ferry_record::ManifestsRevision {
                path: dir.display().to_string(),
                commit: revision.commit,
                dirty: revision.dirty,
            })
        });
        let arguments: Vec<String> = std::env::args().skip(1).collect();
        let record =
            ferry_record::RunRecord::new(command, &arguments, self.started, manifests, exit_status, report.clone());
        match record.write(store).await {
            Ok(url) => Recorded::Written(url),
            Err(e) => Recorded::Failed(format!("cannot write the run record (--audit-log): {e}")),
        }
    }
}

/// What became of a run's record.
pub(crate) enum Recorded {
    /// None was to be written, for this reason.
    Not(&'static str),
    /// Written at this URL.
    Written(String),
    /// Writing it failed: the run's work is done but unrecorded, which must not pass silently.
    Failed(String),
}

impl Recorded {
    /// Adds `"audit_log"` (the record's URL or null) and, when writing failed,
    /// `"audit_log_error"` to a JSON report.
    pub(crate) fn add_to(&self, report: &mut serde_json::Value) {
        report["audit_log"] = match self {
            Recorded::Written(url) => url.as_str().into(),
            _ => serde_json::Value::Null,
        };
        if let Recorded::Failed(why) = self {
            report["audit_log_error"] = why.as_str().into();
        }
    }

    /// The summary's line.
    pub(crate) fn line(&self) -> String {
        match self {
            Recorded::Not(why) => format!("audit log: none ({why})"),
            Recorded::Written(url) => format!("audit log: {url}"),
            Recorded::Failed(why) => format!("audit log: NOT WRITTEN: {why}"),
        }
    }

    /// The command's exit status from the run's: a record that failed is printed as an error on
    /// standard error and makes a successful run fail (1).
    pub(crate) fn finish(&self, run: u8) -> u8 {
        match self {
            Recorded::Failed(why) => {
                eprintln!("error: {why}");
                run.max(1)
            }
            _ => run,
        }
    }
}
