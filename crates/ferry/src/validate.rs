//! `ferry validate`: the presubmit check of a change to the manifests (see docs/review.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args as ClapArgs, ValueEnum};
use ferry_manifest::{FileManifest, ManifestErrors, ManifestWarning, PromotionManifest};
use ferry_review::{Finding, Policy, Review};

use crate::shared_args::RegistryFlags;

#[derive(ClapArgs)]
pub(crate) struct Args {
    /// A kpromo thin-manifest directory (manifests/<project>/promoter-manifest.yaml and
    /// images/<project>/images.yaml).
    #[arg(long, value_name = "DIR", required_unless_present = "manifests", conflicts_with = "manifests")]
    thin_manifest_dir: Option<PathBuf>,

    /// A kpromo file-promotion manifests directory (filestores/<project>/ and manifests/<project>/).
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,

    /// Compare with the manifests at this git revision of the repository holding DIR (read with
    /// git, no checkout): refuse tag moves, removals and changed files, and print what the change
    /// adds.
    #[arg(long, value_name = "REV")]
    base: Option<String>,

    /// Also read the sources, never writing: every digest or file the change adds (every one,
    /// without --base) is there and verifies, and images meet the policy's `required_platforms`
    /// and `max_image_bytes`.
    #[arg(long)]
    online: bool,

    #[command(flatten)]
    registry: RegistryFlags,

    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
}

/// How `ferry validate` prints its findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// `error: FILE:LINE: message` per finding, then what the change adds.
    Text,
    /// One JSON document.
    Json,
    /// GitHub Actions workflow commands (`::error file=F,line=L::message`), paths relative to the
    /// repository root, then what the change adds.
    Github,
}

/// Both kinds of manifests, loaded.
enum Loaded {
    Images(Vec<PromotionManifest>),
    Files(Vec<FileManifest>),
}

impl Loaded {
    fn load(dir: &Path, images: bool) -> Result<Loaded, ManifestErrors> {
        Ok(if images {
            Loaded::Images(ferry_manifest::load_thin_dir(dir)?)
        } else {
            Loaded::Files(ferry_manifest::load_files_dir(dir)?)
        })
    }

    fn warnings(&self) -> Vec<ManifestWarning> {
        match self {
            Loaded::Images(m) => m.iter().flat_map(|m| m.warnings.iter().cloned()).collect(),
            Loaded::Files(_) => Vec::new(),
        }
    }
}

fn to_findings(errors: ManifestErrors, rewrite: impl Fn(&Path) -> PathBuf, prefix: &str) -> Vec<Finding> {
    errors
        .into_iter()
        .map(|e| Finding { path: rewrite(&e.path), line: e.line, message: format!("{prefix}{}", e.message) })
        .collect()
}

pub(crate) async fn run(args: Args) -> Result<ExitCode> {
    let (dir, images) = match (&args.thin_manifest_dir, &args.manifests) {
        (Some(dir), _) => (dir.clone(), true),
        (None, Some(dir)) => (dir.clone(), false),
        (None, None) => unreachable!("clap requires one of them"),
    };
    let mut invalid = Vec::new();
    let head = Loaded::load(&dir, images).map_err(|e| invalid.extend(to_findings(e, Path::to_path_buf, ""))).ok();
    let head_policy = ferry_review::load_policy(&dir).map_err(|e| invalid.push(e)).ok().flatten();

    // The manifests at --base, their paths moved onto the working tree's, and the policy then.
    let mut base = None;
    let mut policy = head_policy.unwrap_or_default();
    let tree = match &args.base {
        Some(rev) => Some((rev, ferry_review::base_tree(&dir, rev)?)),
        None => None,
    };
    if let Some((rev, tree)) = &tree {
        match &tree.dir {
            None => base = Some(None),
            Some(base_dir) => {
                let rewrite =
                    |p: &Path| p.strip_prefix(base_dir).map_or_else(|_| p.to_path_buf(), |rest| dir.join(rest));
                match ferry_review::load_policy(base_dir) {
                    Ok(p) => policy = p.unwrap_or_default(),
                    Err(e) => invalid.push(Finding {
                        path: rewrite(&e.path),
                        message: format!("at {rev}: {}", e.message),
                        ..e
                    }),
                }
                match Loaded::load(base_dir, images) {
                    Ok(mut loaded) => {
                        match &mut loaded {
                            Loaded::Images(m) => ferry_review::relocate_images(m, base_dir, &dir),
                            Loaded::Files(m) => ferry_review::relocate_files(m, base_dir, &dir),
                        }
                        base = Some(Some(loaded));
                    }
                    Err(e) => invalid.extend(to_findings(e, rewrite, &format!("at {rev}: "))),
                }
            }
        }
    }

    let report = Report::new(&dir, args.output);
    let warnings = head.as_ref().map(Loaded::warnings).unwrap_or_default();
    let Some(head) = head.filter(|_| invalid.is_empty()) else {
        report.print(&invalid, &warnings, None, "invalid");
        return Ok(ExitCode::from(2));
    };
    let mut review = compare(&head, base.as_ref().map(Option::as_ref), &policy);
    if args.online && review.findings.is_empty() {
        review.findings = online(&args.registry, &head, base.as_ref().map(Option::as_ref), &policy).await?;
    }
    let status = if review.findings.is_empty() { "ok" } else { "refused" };
    report.print(&review.findings, &warnings, args.base.is_some().then_some(&review), status);
    Ok(if review.findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The policy's offline rules on `head`, and its comparison with `base` when there is one
/// (`Some(None)`: the directory did not exist at the base revision).
fn compare(head: &Loaded, base: Option<Option<&Loaded>>, policy: &Policy) -> Review {
    let mut review = match (head, base) {
        (_, None) => Review::default(),
        (Loaded::Images(h), Some(Some(Loaded::Images(b)))) => ferry_review::diff_images(b, h, policy),
        (Loaded::Files(h), Some(Some(Loaded::Files(b)))) => ferry_review::diff_files(b, h, policy),
        (Loaded::Images(h), Some(_)) => ferry_review::diff_images(&[], h, policy),
        (Loaded::Files(h), Some(_)) => ferry_review::diff_files(&[], h, policy),
    };
    let mut sources = match head {
        Loaded::Images(h) => ferry_review::check_image_sources(h, policy),
        Loaded::Files(h) => ferry_review::check_file_sources(h, policy),
    };
    sources.append(&mut review.findings);
    review.findings = sources;
    review
}

/// `ferry validate --online`: what the change promotes (all of `head` without a base) read from
/// its sources and checked against `policy`.
async fn online(
    registry: &RegistryFlags,
    head: &Loaded,
    base: Option<Option<&Loaded>>,
    policy: &Policy,
) -> Result<Vec<Finding>> {
    // The offline checks passed, so the additions are not refused; should they be, say so.
    let refused = |findings: Vec<Finding>| {
        anyhow::anyhow!("{}", findings.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    };
    Ok(match (head, base) {
        (Loaded::Images(h), base) => {
            let base = match base {
                Some(Some(Loaded::Images(b))) => Some(b.as_slice()),
                Some(_) => Some(&[][..]),
                None => None,
            };
            let targets = match base {
                Some(b) => ferry_review::added_images(b, h, policy).map_err(refused)?,
                None => h.clone(),
            };
            let client = registry.client()?;
            ferry_review::check_images_online(&targets, policy, |address| ferry_registry::open(address, &client)).await
        }
        (Loaded::Files(h), base) => {
            let base = match base {
                Some(Some(Loaded::Files(b))) => Some(b.as_slice()),
                Some(_) => Some(&[][..]),
                None => None,
            };
            let targets = match base {
                Some(b) => ferry_review::added_files(b, h, policy).map_err(refused)?,
                None => h.clone(),
            };
            ferry_review::check_files_online(&targets, ferry_store::Store::open).await
        }
    })
}

/// Prints in one format, with paths relative to the repository root for GitHub.
struct Report {
    format: Format,
    /// The repository root (canonical), when DIR is in one.
    root: Option<PathBuf>,
}

impl Report {
    fn new(dir: &Path, format: Format) -> Report {
        let root = (format == Format::Github)
            .then(|| ferry_review::repository_root(dir).ok().and_then(|r| r.canonicalize().ok()))
            .flatten();
        Report { format, root }
    }

    /// `path` relative to the repository root, for GitHub; as given otherwise.
    fn shown(&self, path: &Path) -> String {
        let Some(root) = &self.root else { return path.display().to_string() };
        // A deleted file cannot be canonicalized: its directory can.
        let absolute = path.canonicalize().ok().or_else(|| {
            let parent = path.parent()?;
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            Some(parent.canonicalize().ok()?.join(path.file_name()?))
        });
        match absolute.as_deref().and_then(|a| a.strip_prefix(root).ok()) {
            Some(rel) => rel.display().to_string(),
            None => path.display().to_string(),
        }
    }

    fn print(&self, findings: &[Finding], warnings: &[ManifestWarning], review: Option<&Review>, status: &str) {
        if self.format == Format::Json {
            let document = serde_json::json!({
                "status": status,
                "errors": findings,
                "warnings": warnings,
                "added": review.map(|r| &r.added),
                "edges": review.map(|r| &r.edges),
            });
            println!("{}", serde_json::to_string_pretty(&document).expect("JSON of plain data"));
            return;
        }
        for w in warnings {
            match self.format {
                Format::Github => println!("{}", github("warning", &self.shown(&w.path), w.line, &w.message)),
                _ => eprintln!("warning: {w}"),
            }
        }
        for f in findings {
            match self.format {
                Format::Github => println!("{}", github("error", &self.shown(&f.path), f.line, &f.message)),
                _ => println!("error: {f}"),
            }
        }
        if let Some(review) = review {
            for a in &review.added {
                let at = a.line.map(|l| format!(":{l}")).unwrap_or_default();
                println!("add {} {} ({}{at})", a.kind, a.name, self.shown(&a.path));
            }
            for edge in &review.edges {
                println!("edge {edge}");
            }
        }
        let count = |kind: &str| review.map_or(0, |r| r.added.iter().filter(|a| a.kind == kind).count());
        let summary = match (status, review) {
            ("invalid", _) => format!("invalid: {} errors in the manifests", findings.len()),
            ("refused", _) => format!("refused: {} findings", findings.len()),
            (_, None) => "ok: the manifests are valid (no --base, so no change was compared)".to_string(),
            (_, Some(r)) => format!(
                "ok: the change adds {} images, {} digests, {} tags, {} destinations, {} files: {} edges to promote",
                count("image"),
                count("digest"),
                count("tag"),
                count("destination"),
                count("file"),
                r.edges.len()
            ),
        };
        println!("{summary}");
    }
}

/// A GitHub Actions workflow command `::KIND file=F,line=L::message`.
fn github(kind: &str, file: &str, line: Option<usize>, message: &str) -> String {
    let line = line.map(|l| format!(",line={l}")).unwrap_or_default();
    format!("::{kind} file={}{line}::{}", escape_property(file), escape_data(message))
}

/// GitHub's escaping of a workflow command's message.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// GitHub's escaping of a workflow command's property value.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_commands_are_escaped() {
        assert_eq!(
            github("error", "a,b:c.yaml", Some(3), "100% bad\r\nnext"),
            "::error file=a%2Cb%3Ac.yaml,line=3::100%25 bad%0D%0Anext"
        );
        assert_eq!(github("error", "f", None, "m"), "::error file=f::m");
    }
}
