//! `ferry`: the command line. Parses flags and calls the library crates; no logic of its own.

mod audit;
mod manifest_add;
mod manifest_files;
mod mirror;
mod promote_files;
mod promote_images;
mod report;
mod shared_args;
mod snapshot;
mod trust;
mod validate;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Ferry promotes release artifacts from staging to every production registry, exactly and only
/// once, and never moves a tag.
#[derive(Parser)]
#[command(name = "ferry", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Promote artifacts described by kpromo manifests.
    #[command(subcommand)]
    Promote(Promote),
    /// Copy the config and layer blobs of the manifests' images from a registry into object
    /// stores (S3, GCS, Azure, local folders) at `<store>/sha256:<hex>`, and write each store's
    /// inventory for `ferry serve`. See docs/mirror.md.
    ///
    /// Each blob is read from the registry once and streamed to every store that lacks it; what
    /// a store's inventory lists is trusted, anything else is asked about with a HEAD. Without
    /// --confirm this is a dry run. --verify checks the stores against their inventories by
    /// re-hashing every blob, and with --confirm repairs them.
    ///
    /// Exit status: 0 when every blob is in every store (and, with --verify, nothing differs or
    /// all was repaired), 1 when anything failed or differs, 2 for bad input.
    Mirror(mirror::Args),
    /// Write manifests from what stores and registries hold.
    #[command(subcommand)]
    Manifest(Manifest),
    /// Print what a registry (host[:port][/prefix] or oci:DIR) holds as a thin manifest's
    /// images.yaml: every repository of its catalog (or --repos), each digest with its tags,
    /// sorted. Cosign signature tags are left out, and an index's child manifests are not listed
    /// on their own. Only reads. See docs/snapshot.md.
    ///
    /// Exit status: 0 when printed, 1 when a registry failed, 2 for bad input.
    Snapshot(snapshot::Args),
    /// Check the manifests as a presubmit would, offline: every schema and consistency error of
    /// every file, and the policy (DIR/policy.yaml). With --base REV, also compare with the
    /// manifests at that git revision: refuse a moved tag, a removed digest, tag, image,
    /// destination or file (unless the policy allows removals) and a changed sha256, and print
    /// what the change adds with the edges a postsubmit will promote. See docs/review.md.
    ///
    /// Exit status: 0 when the change is allowed, 1 when it is refused, 2 for bad input (a
    /// manifest or policy error, a bad revision, DIR outside a git repository).
    Validate(validate::Args),
    /// Check an image's cosign signatures as `cosign verify --key` does: the sha256-<hex>.sig
    /// image (and cosign signatures listed as OCI referrers) must hold a signature that one of
    /// the keys verifies, over a payload naming the image's digest. Any registry or oci: layout;
    /// only reads. See docs/trust.md.
    ///
    /// Exit status: 0 when verified, 1 when not (or the image is missing), 2 for bad input.
    Verify(verify::Args),
    /// Check that production still matches the manifests: read every destination (never
    /// write) and report what bypassed the promoter. Images (--thin-manifest-dir or --manifest):
    /// promised tags or digests missing, tags moved to another digest, tags and repositories no
    /// manifest mentions. Files (--manifests): listed files missing or holding other bytes, files
    /// no manifest lists. See docs/audit.md.
    ///
    /// Exit status: 0 when production matches, 1 on any finding, 2 for bad input.
    Audit(audit::Args),
    /// How much the mirrors save, from data already at hand: `ferry serve`'s access logs (JSON
    /// Lines, plain or gzip, files or `-`), the mirrors' inventories (object sizes; a `ferry
    /// serve` configuration names them and says which mirror serves which location) and a price
    /// table (a default ships with Ferry; --prices overrides it). Reports requests and bytes by
    /// outcome, mirror, location, provider and repository; cost as served against every byte
    /// from the upstream, and the savings; and what to fix next: objects that went to the
    /// upstream because the mirror that should have served them lacks them, mirrors that were
    /// down, busy locations without a mirror of their own. Text, JSON, CSV, or one
    /// self-contained HTML page with charts. Reads the logs once, in bounded memory. See
    /// docs/report.md.
    ///
    /// Exit status: 0 when the report is written, 2 for bad input (a flag, a configuration, an
    /// inventory, a price table, an unreadable log).
    Report(report::Args),
    /// Run the redirector: answer the registry API (/v2/...) and release-file downloads by
    /// redirecting each one to the nearest healthy mirror that holds the bytes, else to the
    /// upstream. See docs/serve.md for the configuration and docs/request-handling.md for exactly
    /// how each request is answered.
    #[command(after_long_help = SERVE_HELP)]
    Serve {
        /// The configuration file (YAML). Reloaded when it or an inventory changes; a bad new
        /// version is refused and the old one keeps serving.
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
    },
}

/// `ferry serve --help`, after the options.
const SERVE_HELP: &str = "\
A small configuration:

  listen: 0.0.0.0:8080
  upstream: {registry: https://registry.example/my-project}
  locations: {aws: [/etc/ferry/aws-ip-ranges.json]}
  mirrors:
    - name: s3-us-east-2
      blobs: https://bucket.s3.us-east-2.amazonaws.com/images/{digest}
      serves: [\"aws:us-east-2\"]
      inventory: s3://bucket/images/inventory.txt

Optional: tls: {cert: FILE, key: FILE} (HTTPS, HTTP/2; renewed files are picked up),
limits: {per_client: {requests_per_minute: N, burst: M}, exempt: [CIDR or label]} (429 past it),
shutdown_grace: SECONDS (default 10). Range files and inventories may be URLs.

Besides the redirects it answers GET /healthz (liveness), GET /readyz (readiness: 503 once
stopping), GET /metrics (Prometheus) and GET /debug/route?ip=ADDR&digest=sha256:... (or
&path=/file), which explains one decision as JSON. Logs are JSON lines on standard output, one per
request; FERRY_LOG sets the level (default info; FERRY_LOG=warn turns the access log off). On
SIGTERM or SIGINT it stops accepting, answers what is in flight (up to shutdown_grace), and exits 0.";

#[derive(Subcommand)]
enum Promote {
    /// Copy container images (with their signatures) from the source registry to every
    /// destination registry named by kpromo promoter manifests.
    ///
    /// Without --confirm this is a dry run: it reads the registries, prints what it would do for
    /// each image, tag and destination, and writes nothing.
    ///
    /// Exit status: 0 when everything is promoted or already there, 1 when any edge was refused
    /// or failed (the others are still promoted), 2 for bad input.
    Images(promote_images::Args),
    /// Copy release files (binaries, tarballs) from the source store to every destination store
    /// named by kpromo file-promotion manifests, verified against each file's sha256.
    ///
    /// Stores are S3, Google Cloud Storage, Azure Blob or local folders, by URL; credentials come
    /// from each cloud's standard environment. Each source file is read once and streamed to
    /// every destination that lacks it; a write is committed only when the whole file matched
    /// its sha256. A destination holding other bytes is refused, never overwritten (unless
    /// --allow-overwrite). Nothing is ever deleted. See docs/files.md.
    ///
    /// Without --confirm this is a dry run: it reads the stores, prints each copy it would make,
    /// and writes nothing.
    ///
    /// Exit status: 0 when every file is promoted or already there, 1 when any was refused or
    /// failed (the others are still promoted), 2 for bad input (a manifest error names the file
    /// and line).
    Files(promote_files::Args),
}

#[derive(Subcommand)]
enum Manifest {
    /// Print a files manifest (kpromo's `files:` list, as `ferry promote files` reads it) of
    /// every file in a staging store under --prefix, sorted by name, each file's sha256 hashed
    /// while it is read once. See docs/files.md, "Writing a files manifest".
    ///
    /// A name `ferry promote files` would refuse refuses the whole run, every such name listed,
    /// so what is printed is always a valid manifest.
    ///
    /// Exit status: 0 when printed, 1 when the store could not be listed or a file read, 2 for
    /// bad input (a bad store URL, a bad name, no file under the prefix).
    Files(manifest_files::Args),
    /// Resolve each --tag of --image in the project's staging registry (the `src: true`
    /// registry of DIR/manifests/P/promoter-manifest.yaml) to a digest, and add it to
    /// DIR/images/P/images.yaml, keeping the file's order, comments and style. Adding what is
    /// already there changes nothing. See docs/review.md, "Adding an image".
    ///
    /// Exit status: 0 when added or already there, 1 when a tag is already bound to another
    /// digest in the file (or the registry failed), 2 for bad input (an unknown project or tag).
    Add(manifest_add::Args),
}

/// How results are printed on standard output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One line per planned, refused or failed edge, then a summary.
    Text,
    /// The whole plan and result as one JSON document.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        |default: &str| tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG").unwrap_or_else(|_| default.into());
    match cli.command {
        // A server logs structured JSON (one access-log line per request) to stdout.
        Command::Serve { .. } => tracing_subscriber::fmt().json().with_env_filter(filter("info")).init(),
        _ => tracing_subscriber::fmt().with_env_filter(filter("warn")).with_writer(std::io::stderr).init(),
    }
    let runtime = tokio::runtime::Runtime::new().expect("start the async runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Promote(Promote::Images(args)) => promote_images::run(args).await,
            Command::Promote(Promote::Files(args)) => promote_files::run(args).await,
            Command::Mirror(args) => mirror::run(args).await,
            Command::Manifest(Manifest::Files(args)) => manifest_files::run(args).await,
            Command::Manifest(Manifest::Add(args)) => manifest_add::run(args).await,
            Command::Snapshot(args) => snapshot::run(args).await,
            Command::Validate(args) => validate::run(args).await,
            Command::Verify(args) => verify::run(args).await,
            Command::Audit(args) => audit::run(args).await,
            Command::Report(args) => report::run(args).await,
            Command::Serve { config } => ferry_serve::serve(config).await.map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            match e.downcast_ref::<ferry_manifest::ManifestErrors>() {
                // Every manifest error on a line of its own, each naming its file and line.
                Some(errors) => errors.iter().for_each(|error| eprintln!("error: {error}")),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(2)
        }
    }
}
