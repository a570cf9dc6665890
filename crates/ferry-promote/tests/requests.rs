//! What a promotion asks of the destination registry, request by request: the budget that
//! `bench/scale.sh` measures at scale, pinned here on a small tree so that a change that costs a
//! request per edge shows. Real CNCF distribution registries behind a counting proxy.

mod common;

use std::collections::BTreeSet;

use common::*;
use ferry_promote::{Action, Status};

/// Requests the proxy saw, as `METHOD kind` (kind: manifests, tags/list, blobs, upload, mount).
fn kinds(proxy: &FaultProxy) -> Vec<String> {
    let mut kinds: Vec<String> = proxy
        .requests()
        .into_iter()
        .map(|(method, path)| {
            let kind = if path.contains("mount=") {
                "mount"
            } else if path.contains("/blobs/uploads/") {
                "upload"
            } else if path.contains("/blobs/") {
                "blobs"
            } else if path.contains("/tags/list") {
                "tags/list"
            } else if path.contains("/manifests/") {
                "manifests"
            } else {
                "other"
            };
            format!("{method} {kind}")
        })
        .collect();
    kinds.sort();
    kinds
}

fn times(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

/// Two images to one host under two prefixes: four new repositories. Each blob is uploaded once
/// for the host and mounted everywhere else; each repository is read with two requests; each
/// edge costs its manifest pushes and nothing to verify (distribution names the digest it
/// stored). The re-run asks one question per edge; a new tag for a promoted digest is one push.
#[tokio::test]
async fn first_run_no_op_and_added_tag_cost_what_they_must() {
    let src = RegistryServer::start().await.unwrap();
    let dst = RegistryServer::start().await.unwrap();
    let (a, b) =
        (ImageSpec::two_arch("budget-a", 2048, 1024).build(), ImageSpec::two_arch("budget-b", 2048, 1024).build());
    let staging = open(&format!("{}/staging", src.host()));
    push(staging.as_ref(), &repo("a"), &a, &["v1"]).await.unwrap();
    push(staging.as_ref(), &repo("b"), &b, &["v1"]).await.unwrap();
    let proxy = FaultProxy::start(&dst.host()).await.unwrap();
    let prefixes = [format!("{}/prod1", proxy.host()), format!("{}/prod2", proxy.host())];
    let dir = tempfile::tempdir().unwrap();
    let write = |a_tags: &'static [&'static str]| {
        let yaml = manifest_yaml(
            &format!("{}/staging", src.host()),
            &[&prefixes[0], &prefixes[1]],
            &[
                Entry { name: "a", digests: vec![(a.digest(), a_tags)] },
                Entry { name: "b", digests: vec![(b.digest(), &["v1"])] },
            ],
        );
        load(&write_plain(dir.path(), &yaml))
    };

    let report = run(&write(&["v1"]), true).await;
    assert!(report.is_success(), "{:#?}", report.edges);
    assert_eq!(count(&report, Status::Promoted), 4);
    let seen = kinds(&proxy);
    let unique: BTreeSet<_> = a.blobs.iter().chain(&b.blobs).map(|blob| &blob.digest).collect();
    let per_repository = a.blobs.len() * 2 + b.blobs.len() * 2;
    assert_eq!(times(&seen, "POST upload"), unique.len(), "one upload per blob for the host: {seen:?}");
    assert_eq!(times(&seen, "PUT upload"), unique.len(), "{seen:?}");
    assert_eq!(times(&seen, "POST mount"), per_repository - unique.len(), "mounted everywhere else: {seen:?}");
    assert_eq!(times(&seen, "HEAD blobs"), 0, "new repositories are not asked for small blobs: {seen:?}");
    assert_eq!(times(&seen, "HEAD manifests"), 4, "one tag asked per new repository, none read back: {seen:?}");
    assert_eq!(times(&seen, "GET tags/list"), 4, "{seen:?}");
    assert_eq!(times(&seen, "PUT manifests"), 4 * 3, "two children and the tagged index per edge: {seen:?}");
    assert_eq!(seen.len(), 2 * unique.len() + (per_repository - unique.len()) + 4 + 4 + 12, "{seen:?}");

    proxy.reset_counts();
    let rerun = run(&write(&["v1"]), true).await;
    assert_eq!(count(&rerun, Status::Skipped), 4, "{:#?}", rerun.edges);
    assert_eq!(kinds(&proxy), vec!["HEAD manifests"; 4], "one question per edge");

    proxy.reset_counts();
    let tagged = run(&write(&["v1", "stable"]), true).await;
    assert!(tagged.is_success(), "{:#?}", tagged.edges);
    let added: Vec<_> = tagged.edges.iter().filter(|e| e.planned.action == Action::AddTag).collect();
    assert_eq!(added.len(), 2, "{:#?}", tagged.edges);
    let seen = kinds(&proxy);
    assert_eq!(times(&seen, "PUT manifests"), 2, "the tag pushed, nothing else: {seen:?}");
    assert!(seen.iter().all(|k| !k.contains("upload") && !k.contains("mount")), "{seen:?}");
}

/// A registry that accepts a manifest without naming the digest it stored gets each promoted
/// reference read back; one that names another digest fails the edge, and the rest lands.
#[tokio::test]
async fn unconfirmed_pushes_are_read_back_and_a_lying_answer_fails_the_edge() {
    let src = RegistryServer::start().await.unwrap();
    let dst = RegistryServer::start().await.unwrap();
    let image = ImageSpec::two_arch("unconfirmed", 2048, 1024).build();
    let staging = open(&format!("{}/staging", src.host()));
    push(staging.as_ref(), &repo("app"), &image, &["v1"]).await.unwrap();
    push(staging.as_ref(), &repo("lied"), &image, &["v1"]).await.unwrap();
    let proxy = FaultProxy::start(&dst.host()).await.unwrap();
    let header = |path: &str, value: Option<String>| FaultRule {
        method: Some("PUT".into()),
        path_contains: path.into(),
        times: usize::MAX,
        fault: Fault::Header { name: "docker-content-digest".into(), value },
    };
    proxy.add_fault(header("/prod/app/manifests/", None));
    let other = ferry_oci::Digest::of(b"not the manifest");
    proxy.add_fault(header("/prod/lied/manifests/v1", Some(other.to_string())));
    let dir = tempfile::tempdir().unwrap();
    let yaml = manifest_yaml(
        &format!("{}/staging", src.host()),
        &[&format!("{}/prod", proxy.host())],
        &[
            Entry { name: "app", digests: vec![(image.digest(), &["v1"])] },
            Entry { name: "lied", digests: vec![(image.digest(), &["v1"])] },
        ],
    );
    let report = run(&load(&write_plain(dir.path(), &yaml)), true).await;

    let app = report.edges.iter().find(|e| e.planned.edge.image.as_str() == "app").unwrap();
    assert_eq!(app.status, Status::Promoted, "{app:#?}");
    assert_eq!(proxy.count("HEAD", "/prod/app/manifests/v1"), 2, "asked when planning, then read back");
    let lied = report.edges.iter().find(|e| e.planned.edge.image.as_str() == "lied").unwrap();
    assert_eq!(lied.status, Status::Failed, "{lied:#?}");
    let error = lied.error.as_deref().unwrap_or_default();
    assert!(error.contains(&other.to_string()) && error.contains("lied"), "{error}");
}
