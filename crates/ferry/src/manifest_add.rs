//! `ferry manifest add`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use ferry_oci::{Digest, Reference, RepoName, Tag};

use crate::shared_args::RegistryFlags;

#[derive(ClapArgs)]
pub(crate) struct Args {
    /// The thin manifest directory (holding manifests/ and images/).
    #[arg(long, value_name = "DIR")]
    thin_manifest_dir: PathBuf,

    /// The project: DIR/manifests/P/promoter-manifest.yaml names its staging registry, and
    /// DIR/images/P/images.yaml is edited.
    #[arg(long, value_name = "P")]
    project: String,

    /// The image (repository name under the registries' prefixes).
    #[arg(long, value_name = "NAME")]
    image: String,

    /// A tag to resolve in the staging registry and add. Repeatable.
    #[arg(long = "tag", value_name = "TAG", required = true)]
    tags: Vec<String>,

    #[command(flatten)]
    registry_flags: RegistryFlags,
}

pub(crate) async fn run(args: Args) -> Result<ExitCode> {
    let image: RepoName = args.image.parse().with_context(|| format!("--image {}", args.image))?;
    let tags =
        args.tags.iter().map(|t| t.parse::<Tag>().with_context(|| format!("--tag {t}"))).collect::<Result<Vec<_>>>()?;
    let manifests = ferry_manifest::load_thin_dir(&args.thin_manifest_dir)?;
    let project = std::ffi::OsStr::new(&args.project);
    let Some(manifest) = manifests.iter().find(|m| m.path.parent().and_then(|p| p.file_name()) == Some(project)) else {
        eprintln!(
            "error: no project {} in {} (no manifests/{}/promoter-manifest.yaml)",
            args.project,
            args.thin_manifest_dir.display(),
            args.project
        );
        return Ok(ExitCode::from(2));
    };

    // Resolve every tag first: nothing is written unless all resolve.
    let client = args.registry_flags.client()?;
    let registry = ferry_registry::open(&manifest.source, &client);
    let mut resolved: Vec<(Digest, Vec<Tag>)> = Vec::new();
    let mut unknown = false;
    for tag in &tags {
        match registry.head_manifest(&image, &Reference::Tag(tag.clone())).await {
            Ok(Some(head)) => match resolved.iter_mut().find(|(d, _)| *d == head.digest) {
                Some((_, group)) => group.push(tag.clone()),
                None => resolved.push((head.digest, vec![tag.clone()])),
            },
            Ok(None) => {
                eprintln!("error: {}/{image}:{tag} does not exist in the staging registry", manifest.source);
                unknown = true;
            }
            Err(e) => {
                eprintln!("error: {}/{image}:{tag}: {e}", manifest.source);
                return Ok(ExitCode::from(1));
            }
        }
    }
    if unknown {
        return Ok(ExitCode::from(2));
    }

    let path = &manifest.images_path;
    let original = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut text = original.clone();
    for (digest, group) in &resolved {
        match ferry_manifest::add_image_tags(&text, &image, digest, group) {
            Ok(new) => text = new,
            Err(e) => {
                eprintln!("error: {}:{}: {e}", path.display(), e.line());
                return Ok(ExitCode::from(1));
            }
        }
    }
    let shown = |group: &[Tag]| group.iter().map(Tag::as_str).collect::<Vec<_>>().join(", ");
    if text == original {
        for (digest, group) in &resolved {
            println!("{image}@{digest} [{}]: already there", shown(group));
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Written whole through a temporary file, then checked to load; put back if it does not.
    let temporary = path.with_extension("yaml.ferry-add");
    std::fs::write(&temporary, &text).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))?;
    if let Err(errors) = ferry_manifest::load_thin_dir(&args.thin_manifest_dir) {
        std::fs::write(path, &original).with_context(|| format!("restoring {}", path.display()))?;
        errors.iter().for_each(|error| eprintln!("error: {error}"));
        eprintln!("error: the edited {} did not validate; it was left as it was", path.display());
        return Ok(ExitCode::from(1));
    }
    for (digest, group) in &resolved {
        println!("{image}@{digest} [{}]: added to {}", shown(group), path.display());
    }
    Ok(ExitCode::SUCCESS)
}
