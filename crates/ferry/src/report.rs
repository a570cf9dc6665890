//! `ferry report`: flags in, the report engine (`ferry-usage`) called, the report written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use ferry_usage::{html, input, render, Mirrors, Options, Prices};

/// How `ferry report` writes the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportOutput {
    /// A summary for a terminal.
    Text,
    /// Every table as one JSON document.
    Json,
    /// Every table as CSV, one long format: table,key,subkey,requests,bytes,cost_usd,counterfactual_usd.
    Csv,
    /// One self-contained HTML page with charts (no network needed to view it).
    Html,
}

#[derive(ClapArgs)]
pub(crate) struct Args {
    /// `ferry serve` access logs (JSON Lines, plain or gzip): files, globs (`'access-*.jsonl.gz'`)
    /// or `-` for standard input. Repeat for more.
    #[arg(long, value_name = "FILE", required = true, num_args = 1..)]
    logs: Vec<String>,

    /// Where sizes and mirrors come from: a `ferry serve` configuration (its mirrors, their
    /// `serves` and inventories: local files or object-store URLs), or `NAME=INVENTORY` for one
    /// mirror's inventory (a file or an `s3://`, `gs://`, `az://` URL). Repeat for more.
    #[arg(long, value_name = "CONFIG_OR_NAME=FILE", num_args = 1..)]
    inventories: Vec<String>,

    /// A price table (YAML) over the default one: see docs/report.md, "Prices".
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,

    /// Count only lines at or after this time (`2026-11-01` or `2026-11-01T00:00:00Z`).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,

    /// Count only lines before this time.
    #[arg(long, value_name = "TIME")]
    to: Option<String>,

    /// Rows in the top-N tables (repositories, missing objects).
    #[arg(long, default_value_t = 20, value_name = "N")]
    top: usize,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportOutput::Text)]
    output: ReportOutput,

    /// Write the report to this file instead of standard output.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,
}

fn time(flag: &str, value: &Option<String>) -> Result<Option<i64>> {
    value
        .as_deref()
        .map(|v| {
            ferry_usage::time::parse(v)
                .with_context(|| format!("--{flag} {v}: expected 2026-11-01 or 2026-11-01T00:00:00Z (UTC)"))
        })
        .transpose()
}

fn read_text(path: &Path) -> Result<String> {
    let size = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?.len();
    if size > ferry_store::Inventory::MAX_BYTES as u64 {
        bail!("{}: larger than the limit for an inventory", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))
}

fn local(source: &str, base: &Path) -> PathBuf {
    match source.strip_prefix("file://") {
        Some(path) => PathBuf::from(path),
        None => base.join(source),
    }
}

/// Whether an inventory source is a URL (`s3://`, `gs://`, `az://`, `http(s)://`) rather than a path.
fn remote(source: &str) -> bool {
    source.contains("://") && !source.starts_with("file://")
}

/// Reads the inventory at a URL: an object-store URL (`s3://bucket/dir/inventory.txt`, with the
/// store's standard credentials) or an `http(s)://` one, fetched as `ferry serve` fetches it.
async fn fetch(url: &str) -> Result<String> {
    let bytes = ferry_serve::remote_inventory::RemoteInventories::default()
        .get_file(url)
        .await
        .with_context(|| url.to_string())?;
    String::from_utf8(bytes.to_vec()).with_context(|| format!("{url}: not UTF-8 text"))
}

pub(crate) async fn run(args: Args) -> Result<ExitCode> {
    let options = Options { from: time("from", &args.from)?, to: time("to", &args.to)?, top: args.top };
    let mut mirrors = Mirrors::new();
    for source in &args.inventories {
        match source.split_once('=') {
            Some((name, file)) if remote(file) => mirrors.add_inventory(name, &fetch(file).await?, file)?,
            Some((name, file)) => {
                let path = local(file, Path::new("."));
                mirrors.add_inventory(name, &read_text(&path)?, &path.display().to_string())?;
            }
            None => {
                let path = Path::new(source);
                let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
                let text = read_text(path)?;
                // Object-store inventories first (asynchronously), then the configuration read
                // with them.
                let mut urls = Vec::new();
                Mirrors::from_config(&text, source, |inventory| {
                    if remote(inventory) {
                        urls.push(inventory.to_string());
                    }
                    Ok(String::new())
                })?;
                let mut fetched = std::collections::HashMap::new();
                for url in urls {
                    let text = fetch(&url).await?;
                    fetched.insert(url, text);
                }
                let from_config =
                    Mirrors::from_config(&text, source, |inventory| match fetched.get(inventory).cloned() {
                        Some(text) => Ok(text),
                        None => {
                            read_text(&local(inventory, &base)).map_err(|e| ferry_usage::Error::Input(format!("{e:#}")))
                        }
                    })?;
                for m in from_config.list.iter() {
                    if mirrors.list.iter().any(|x| x.name == m.name) {
                        bail!("mirror {} named twice in --inventories", m.name);
                    }
                }
                mirrors.merge(from_config);
            }
        }
    }
    let mut prices = Prices::default_table();
    if let Some(path) = &args.prices {
        let text = read_text(path)?;
        prices = prices.overridden_by(Prices::parse(&text, &path.display().to_string())?);
    }
    let mut files = Vec::new();
    for pattern in &args.logs {
        files.extend(input::expand(pattern)?);
    }
    // Reading and counting are synchronous and CPU-bound: off the async runtime.
    let report = tokio::task::spawn_blocking(move || -> Result<ferry_usage::Report> {
        Ok(input::count(&files, &mirrors, &options)?.finish(&prices))
    })
    .await??;
    let text = match args.output {
        ReportOutput::Text => render::text(&report),
        ReportOutput::Json => render::json(&report),
        ReportOutput::Csv => render::csv(&report),
        ReportOutput::Html => html::page(&report),
    };
    match &args.out {
        Some(path) => std::fs::write(path, text).with_context(|| path.display().to_string())?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
