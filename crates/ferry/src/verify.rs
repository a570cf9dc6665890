//! `ferry verify`: check an image's cosign signatures as a user would, over any registry or
//! `oci:` layout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use ferry_oci::{Digest, Reference, RegistryAddress, RepoName};

use crate::shared_args::RegistryFlags;

#[derive(ClapArgs)]
pub(crate) struct Args {
    /// The image: HOST[:PORT]/REPO:TAG or HOST[:PORT]/REPO@sha256:HEX; for a directory of OCI
    /// layouts, oci:DIR/REPO:TAG (DIR/REPO holding the layout).
    #[arg(value_name = "REF")]
    reference: String,

    /// A public key (PEM) the signature must verify with; give several to accept any of them.
    #[arg(long, value_name = "FILE", required = true, num_args = 1..)]
    key: Vec<PathBuf>,

    /// Also require an SLSA provenance v1 attestation (the sha256-<hex>.att image) signed by one
    /// of the keys, as `cosign verify-attestation --type slsaprovenance1` does; print where the
    /// image was promoted from.
    #[arg(long)]
    attestation: bool,

    #[command(flatten)]
    registry: RegistryFlags,
}

pub(crate) async fn run(args: Args) -> Result<ExitCode> {
    let (address, repo, reference) = parse_reference(&args.reference)?;
    let verifier = crate::trust::verifier(&args.key)?;
    let client = args.registry.client()?;
    let registry = ferry_registry::open(&address, &client);
    let digest: Digest = match reference {
        Reference::Digest(digest) => digest,
        Reference::Tag(tag) => match registry.head_manifest(&repo, &Reference::Tag(tag.clone())).await? {
            Some(head) => head.digest,
            None => {
                eprintln!("error: {} has no tag {tag}", registry.name());
                return Ok(ExitCode::from(1));
            }
        },
    };
    let image = format!("{}/{repo}@{digest}", registry.name());
    match ferry_trust::find_signature(registry.as_ref(), &repo, &digest, &verifier).await {
        Ok(verified) => {
            println!("verified: {image} is signed by {} (docker-reference {})", verified.key, verified.docker_reference)
        }
        Err(why) => {
            println!("NOT VERIFIED: {image}: {why}");
            return Ok(ExitCode::from(1));
        }
    }
    if args.attestation {
        match ferry_trust::find_attestation(registry.as_ref(), &repo, &digest, &verifier).await {
            Ok(verified) => {
                let parameters = &verified.predicate["buildDefinition"]["externalParameters"];
                let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
                let manifest = &parameters["manifest"];
                println!(
                    "verified: provenance of {image} by {}: promoted from {} as listed at {}:{}",
                    verified.key,
                    text(&parameters["source"]["reference"]),
                    text(&manifest["path"]),
                    manifest["line"].as_u64().map_or("?".to_string(), |l| l.to_string()),
                );
            }
            Err(why) => {
                println!("NOT VERIFIED: {image}: {why}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `HOST/REPO:TAG`, `HOST/REPO@DIGEST` or `oci:DIR/REPO:TAG` → registry, repository, reference.
fn parse_reference(text: &str) -> Result<(RegistryAddress, RepoName, Reference)> {
    let bad = || format!("{text:?} is not an image reference like registry.example/app:v1 or oci:DIR/app@sha256:...");
    let (name, reference) = match text.rsplit_once('@') {
        Some((name, digest)) => (name, Reference::Digest(digest.parse().with_context(bad)?)),
        None => {
            // A ':' after the last '/' starts the tag (one before it is a port).
            let slash = text.rfind('/').with_context(bad)?;
            let (name, tag) =
                text[slash..].split_once(':').map(|(n, t)| (&text[..slash + n.len()], t)).with_context(bad)?;
            (name, Reference::Tag(tag.parse().with_context(bad)?))
        }
    };
    if let Some(path) = name.strip_prefix("oci:") {
        // The first split into a directory and a repository name that holds a layout (each split
        // names the same layout directory; the shortest directory keeps the longest name).
        let segments: Vec<&str> = path.split('/').collect();
        for split in 1..segments.len() {
            let (dir, repo) = (segments[..split].join("/"), segments[split..].join("/"));
            let Ok(repo) = repo.parse::<RepoName>() else { continue };
            if !dir.is_empty() && std::path::Path::new(&dir).join(repo.as_str()).join("oci-layout").is_file() {
                let address: RegistryAddress = format!("oci:{dir}").parse().with_context(bad)?;
                return Ok((address, repo, reference));
            }
        }
        bail!("{text:?}: no OCI layout found under any directory of {path:?}");
    }
    let (host, repo) = name.split_once('/').with_context(bad)?;
    let address: RegistryAddress = host.parse().with_context(bad)?;
    Ok((address, repo.parse().with_context(bad)?, reference))
}
