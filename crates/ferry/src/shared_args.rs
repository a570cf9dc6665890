//! Flags and terminal output shared by several subcommands, so each flag means the same thing
//! everywhere.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
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
