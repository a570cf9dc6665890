//! Destination registries against what the image manifests promise.
//!
//! Per destination registry, in three rounds of requests (each round at most
//! [`AuditOptions::concurrency`] in flight):
//!
//! 1. **List.** The catalog (`list_repositories`: every repository under the prefix) and, per
//!    promised repository, its tags (`tags/list`).
//! 2. **Tags.** Each promised tag that is listed is resolved (HEAD): another digest is a
//!    `moved-tag`; a promised tag not listed is a `missing-tag` (no request). Each listed tag no
//!    manifest mentions is resolved too, to say what it points at (`unlisted-tag`); cosign
//!    (`sha256-<hex>.sig`, `.att`, `.sbom`) and referrers fallback (`sha256-<hex>`) tags of a
//!    promised digest are not: they were promoted with their image.
//! 3. **Digests.** Each promised digest that no tag resolved to is asked for (HEAD); absent is a
//!    `missing-image`.
//! 4. **Signatures** (with [`AuditOptions::require_signatures`]). Each promised digest found
//!    present must carry a cosign signature one of the keys verifies (`ferry_trust::find_signature`,
//!    as promotion checks its sources); else it is `unsigned`.
//!
//! A repository of the catalog that no manifest mentions (named in full, so destinations nested
//! under this one and sources are left to themselves) is an `unlisted-repository`; a registry
//! that offers no catalog gives one `cannot-list-repositories` and the rest goes on. A request
//! that fails is an `unreadable` finding for what it was about.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Instant;

use ferry_manifest::PromotionManifest;
use ferry_oci::{Digest, Reference, RegistryAddress, RepoName, Tag};
use ferry_promote::edges::expand;
use ferry_promote::Registries;
use ferry_registry::snapshot::artefact_subject;
use ferry_registry::{ManifestHead, RegistryError};
use futures::stream::{self, StreamExt};

use crate::{under_nested_root, AuditOptions, Finding, Kind, Report};

/// What the manifests promise in one destination repository.
#[derive(Debug, Default)]
struct Promised {
    /// Each promised tag, with every digest a manifest gives it and the `file:line` asking (more
    /// than one digest only when manifests disagree; the tag may then point at any of them).
    tags: BTreeMap<Tag, BTreeMap<Digest, String>>,
    /// Each promised digest, tagged or not, with the `file:line` that first asks for it.
    digests: BTreeMap<Digest, String>,
}

/// One destination registry and what it is promised.
#[derive(Debug)]
struct Destination {
    address: RegistryAddress,
    repos: BTreeMap<RepoName, Promised>,
}

/// A request of round 1.
enum Listing<'a> {
    Catalog(&'a str),
    Tags(&'a str, &'a RepoName),
}

/// Its answer.
enum Listed<'a> {
    Catalog(&'a str, Result<Vec<RepoName>, RegistryError>),
    Tags(&'a str, &'a RepoName, Result<Vec<Tag>, RegistryError>),
}

/// A tag to resolve in round 2: promised, or found but listed by no manifest.
struct TagCheck<'a> {
    destination: &'a str,
    repo: &'a RepoName,
    tag: Tag,
    promised: bool,
}

/// Audits every destination registry of `manifests` (opened in `registries`, as for promotion)
/// against what the manifests promise. Only reads.
pub async fn audit(manifests: &[PromotionManifest], registries: &Registries, options: &AuditOptions) -> Report {
    let started = Instant::now();
    let concurrency = options.concurrency.max(1);
    let (edges, _conflicts) = expand(manifests);

    let mut destinations: BTreeMap<String, Destination> = BTreeMap::new();
    for address in manifests.iter().flat_map(|m| &m.destinations) {
        destinations
            .entry(address.to_string())
            .or_insert_with(|| Destination { address: address.clone(), repos: BTreeMap::new() });
    }
    // Every repository a manifest mentions, named in full (`host/prefix/app`).
    let mut mentioned: HashSet<String> = HashSet::new();
    for edge in &edges {
        let name = edge.destination.to_string();
        mentioned.insert(format!("{name}/{}", edge.image));
        let Some(destination) = destinations.get_mut(&name) else { continue };
        let repo = destination.repos.entry(edge.image.clone()).or_default();
        repo.digests.entry(edge.digest.clone()).or_insert_with(|| edge.origin.clone());
        if let Some(tag) = &edge.tag {
            repo.tags.entry(tag.clone()).or_default().entry(edge.digest.clone()).or_insert_with(|| edge.origin.clone());
        }
    }
    let roots: Vec<String> = manifests
        .iter()
        .flat_map(|m| std::iter::once(&m.source).chain(&m.destinations))
        .map(|a| a.to_string())
        .collect();

    let mut findings = Vec::new();
    let checked = destinations.values().flat_map(|d| d.repos.values()).map(|r| r.tags.len() + r.digests.len()).sum();

    // Round 1: catalogs and tag lists.
    let listings = destinations
        .iter()
        .flat_map(|(name, d)| {
            std::iter::once(Listing::Catalog(name)).chain(d.repos.keys().map(move |repo| Listing::Tags(name, repo)))
        })
        .map(|listing| {
            let destinations = &destinations;
            async move {
                match listing {
                    Listing::Catalog(name) => {
                        let registry = registries.get(&destinations[name].address);
                        Listed::Catalog(name, registry.list_repositories().await)
                    }
                    Listing::Tags(name, repo) => {
                        let registry = registries.get(&destinations[name].address);
                        Listed::Tags(name, repo, registry.list_tags(repo).await)
                    }
                }
            }
        });
    let listed: Vec<Listed> = stream::iter(listings).buffer_unordered(concurrency).collect().await;

    let mut tag_checks = Vec::new();
    // Repositories whose tags could not be listed: their one finding says so.
    let mut unreadable: HashSet<(&str, &RepoName)> = HashSet::new();
    for listed in listed {
        let name = match &listed {
            Listed::Catalog(name, _) | Listed::Tags(name, _, _) => *name,
        };
        let finding = |kind, subject: String, expected: &str, found: String| Finding {
            kind,
            destination: name.to_string(),
            subject,
            expected: expected.to_string(),
            found,
            origin: None,
        };
        match listed {
            Listed::Catalog(_, Ok(repos)) => {
                for repo in repos {
                    let full = format!("{name}/{repo}");
                    if !mentioned.contains(&full) && !under_nested_root(&full, name, &roots) {
                        findings.push(finding(
                            Kind::UnlistedRepository,
                            full,
                            "absent (no manifest lists it)",
                            "a repository in the catalog".into(),
                        ));
                    }
                }
            }
            Listed::Catalog(_, Err(e)) => findings.push(finding(
                Kind::CannotListRepositories,
                name.to_string(),
                "a catalog to look for repositories no manifest lists",
                e.to_string(),
            )),
            Listed::Tags(_, repo, Ok(tags)) => {
                let promised = &destinations[name].repos[repo];
                let listed: BTreeSet<&Tag> = tags.iter().collect();
                for (tag, digests) in &promised.tags {
                    if listed.contains(tag) {
                        tag_checks.push(TagCheck { destination: name, repo, tag: tag.clone(), promised: true });
                    } else {
                        findings.push(Finding {
                            kind: Kind::MissingTag,
                            destination: name.to_string(),
                            subject: format!("{name}/{repo}:{tag}"),
                            expected: join_digests(digests),
                            found: "no such tag".into(),
                            origin: Some(join_origins(digests)),
                        });
                    }
                }
                for tag in tags {
                    let artefact_of_promised =
                        artefact_subject(&tag).is_some_and(|d| promised.digests.contains_key(&d));
                    if !promised.tags.contains_key(&tag) && !artefact_of_promised {
                        tag_checks.push(TagCheck { destination: name, repo, tag, promised: false });
                    }
                }
            }
            Listed::Tags(_, repo, Err(e)) => {
                unreadable.insert((name, repo));
                findings.push(finding(
                    Kind::Unreadable,
                    format!("{name}/{repo}"),
                    "the repository's tags",
                    e.to_string(),
                ))
            }
        }
    }

    // Round 2: the listed tags, resolved.
    let resolved: Vec<(TagCheck, Result<Option<ManifestHead>, RegistryError>)> = stream::iter(tag_checks)
        .map(|check| {
            let registry = registries.get(&destinations[check.destination].address);
            async move {
                let head = registry.head_manifest(check.repo, &Reference::Tag(check.tag.clone())).await;
                (check, head)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    // Digests seen present, per (destination, repository).
    let mut present: HashSet<(&str, &RepoName, Digest)> = HashSet::new();
    for (check, head) in resolved {
        let TagCheck { destination: name, repo, tag, promised } = check;
        let subject = format!("{name}/{repo}:{tag}");
        let claims = &destinations[name].repos[repo].tags;
        let mut finding = |kind, expected: String, found: String, origin: Option<String>| {
            findings.push(Finding {
                kind,
                destination: name.to_string(),
                subject: subject.clone(),
                expected,
                found,
                origin,
            })
        };
        match (head, promised) {
            (Ok(Some(head)), true) => {
                let digests = &claims[&tag];
                if !digests.contains_key(&head.digest) {
                    finding(
                        Kind::MovedTag,
                        join_digests(digests),
                        head.digest.to_string(),
                        Some(join_origins(digests)),
                    );
                }
                present.insert((name, repo, head.digest));
            }
            // Listed, then gone: removed meanwhile.
            (Ok(None), true) => {
                let digests = &claims[&tag];
                finding(Kind::MissingTag, join_digests(digests), "no such tag".into(), Some(join_origins(digests)))
            }
            (Ok(Some(head)), false) => {
                finding(Kind::UnlistedTag, "absent (no manifest lists it)".into(), head.digest.to_string(), None);
                present.insert((name, repo, head.digest));
            }
            (Ok(None), false) => {}
            (Err(e), true) => {
                let digests = &claims[&tag];
                finding(Kind::Unreadable, join_digests(digests), e.to_string(), Some(join_origins(digests)))
            }
            (Err(e), false) => {
                finding(Kind::UnlistedTag, "absent (no manifest lists it)".into(), format!("a tag ({e})"), None)
            }
        }
    }

    // Round 3: promised digests no tag resolved to.
    let digest_checks: Vec<(&str, &RepoName, &Digest, &String)> = destinations
        .iter()
        .flat_map(|(name, d)| d.repos.iter().map(move |(repo, promised)| (name.as_str(), repo, promised)))
        // A repository whose tags could not be listed has its finding already.
        .filter(|(name, repo, _)| !unreadable.contains(&(*name, *repo)))
        .flat_map(|(name, repo, promised)| {
            promised.digests.iter().map(move |(digest, origin)| (name, repo, digest, origin))
        })
        .filter(|(name, repo, digest, _)| !present.contains(&(*name, *repo, (*digest).clone())))
        .collect();
    let heads: Vec<_> = stream::iter(digest_checks)
        .map(|(name, repo, digest, origin)| {
            let registry = registries.get(&destinations[name].address);
            async move {
                let head = registry.head_manifest(repo, &Reference::Digest(digest.clone())).await;
                (name, repo, digest, origin, head)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for (name, repo, digest, origin, head) in heads {
        let found = match head {
            Ok(Some(_)) => {
                present.insert((name, repo, digest.clone()));
                continue;
            }
            Ok(None) => "absent".to_string(),
            Err(e) => {
                findings.push(Finding {
                    kind: Kind::Unreadable,
                    destination: name.to_string(),
                    subject: format!("{name}/{repo}@{digest}"),
                    expected: digest.to_string(),
                    found: e.to_string(),
                    origin: Some(origin.clone()),
                });
                continue;
            }
        };
        findings.push(Finding {
            kind: Kind::MissingImage,
            destination: name.to_string(),
            subject: format!("{name}/{repo}@{digest}"),
            expected: digest.to_string(),
            found,
            origin: Some(origin.clone()),
        });
    }

    // Round 4 (--require-signatures): each promised digest present carries a valid signature.
    if let Some(verifier) = &options.require_signatures {
        let promised_present: Vec<(&str, &RepoName, Digest, &String)> = present
            .iter()
            .filter_map(|(name, repo, digest)| {
                let origin = destinations[*name].repos.get(*repo)?.digests.get(digest)?;
                Some((*name, *repo, digest.clone(), origin))
            })
            .collect();
        let checks: Vec<_> = stream::iter(promised_present)
            .map(|(name, repo, digest, origin)| {
                let registry = registries.get(&destinations[name].address);
                async move {
                    let verdict = ferry_trust::find_signature(registry.as_ref(), repo, &digest, verifier).await;
                    (name, repo, digest, origin, verdict)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for (name, repo, digest, origin, verdict) in checks {
            if let Err(why) = verdict {
                let keys = verifier.key_names().collect::<Vec<_>>().join(", ");
                findings.push(Finding {
                    kind: Kind::Unsigned,
                    destination: name.to_string(),
                    subject: format!("{name}/{repo}@{digest}"),
                    expected: format!("a cosign signature by {keys}"),
                    found: why,
                    origin: Some(origin.clone()),
                });
            }
        }
    }

    Report::new(findings, destinations.len(), checked, started.elapsed())
}

/// The digests a tag is promised (one, unless manifests disagree).
fn join_digests(digests: &BTreeMap<Digest, String>) -> String {
    digests.keys().map(ToString::to_string).collect::<Vec<_>>().join(" or ")
}

/// Where a tag is promised.
fn join_origins(digests: &BTreeMap<Digest, String>) -> String {
    digests.values().cloned().collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", ")
}
