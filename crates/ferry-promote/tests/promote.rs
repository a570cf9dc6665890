//! `promote images` against real CNCF distribution registries (and `oci:` layouts), read back with
//! skopeo.

mod common;

use common::*;
use ferry_promote::Status;

const KIB: usize = 1024;

/// A source registry holding `images`, each pushed under `repo` `staging/<name>`.
async fn source_with(server: &RegistryServer, images: &[(&str, &TestImage, &[&str])]) {
    let registry = open(&format!("{}/staging", server.host()));
    for (name, image, tags) in images {
        push(registry.as_ref(), &repo(name), image, tags).await.unwrap();
    }
}

#[tokio::test]
async fn dry_run_plans_and_writes_nothing() {
    let src = RegistryServer::start().await.unwrap();
    let dst = RegistryServer::start().await.unwrap();
    let layout = tempfile::tempdir().unwrap();
    let image = ImageSpec::two_arch("dry", 64 * KIB, 8 * KIB).build();
    source_with(&src, &[("app", &image, &["v1"])]).await;

    let dir = tempfile::tempdir().unwrap();
    let layout_dest = format!("oci:{}", layout.path().join("prod").display());
    let yaml = manifest_yaml(
        &format!("{}/staging", src.host()),
        &[&format!("{}/prod", dst.host()), &layout_dest],
        &[Entry { name: "app", digests: vec![(image.digest(), &["v1", "latest"])] }],
    );
    let report = run(&load(&write_plain(dir.path(), &yaml)), false).await;

    assert_eq!(count(&report, Status::Planned), 4, "{:#?}", report.edges);
    assert!(report.summary.dry_run);
    assert_eq!(report.summary.bytes_written, 0);
    assert!(open(&format!("{}/prod", dst.host())).list_tags(&repo("app")).await.unwrap().is_empty());
    assert!(!layout.path().join("prod").exists(), "a dry run must not create the layout");
}

#[tokio::test]
async fn multi_arch_to_three_destinations_byte_exact_then_rerun_is_a_no_op() {
    let src = RegistryServer::start().await.unwrap();
    let dests = [
        RegistryServer::start().await.unwrap(),
        RegistryServer::start().await.unwrap(),
        RegistryServer::start().await.unwrap(),
    ];
    let oci = ImageSpec::two_arch("multi-oci", 256 * KIB, 32 * KIB).build();
    let docker = ImageSpec::two_arch("multi-docker", 256 * KIB, 32 * KIB).flavour(Flavour::Docker).build();
    source_with(&src, &[("team/oci", &oci, &["v1.0"]), ("docker", &docker, &["v2.0"])]).await;

    // Watch every request to the source and the destinations.
    let src_proxy = FaultProxy::start(&src.host()).await.unwrap();
    let proxies = [
        FaultProxy::start(&dests[0].host()).await.unwrap(),
        FaultProxy::start(&dests[1].host()).await.unwrap(),
        FaultProxy::start(&dests[2].host()).await.unwrap(),
    ];
    let dest_names: Vec<String> = proxies.iter().map(|p| format!("{}/prod", p.host())).collect();
    let dir = tempfile::tempdir().unwrap();
    let yaml = manifest_yaml(
        &format!("{}/staging", src_proxy.host()),
        &dest_names.iter().map(String::as_str).collect::<Vec<_>>(),
        &[
            Entry { name: "team/oci", digests: vec![(oci.digest(), &["v1.0", "stable"])] },
            Entry { name: "docker", digests: vec![(docker.digest(), &["v2.0"])] },
        ],
    );
    let manifests = load(&write_plain(dir.path(), &yaml));
    let report = run(&manifests, true).await;
    assert!(report.is_success(), "{:#?}", report.edges);
    assert_eq!(count(&report, Status::Promoted), 9);

    for dest in &dests {
        assert_byte_exact_via_skopeo(&dest.host(), "prod/team/oci", "v1.0", &oci);
        assert_byte_exact_via_skopeo(&dest.host(), "prod/team/oci", "stable", &oci);
        assert_byte_exact_via_skopeo(&dest.host(), "prod/docker", "v2.0", &docker);
    }

    // The re-run reads no blob and writes nothing anywhere.
    src_proxy.reset_counts();
    proxies.iter().for_each(FaultProxy::reset_counts);
    let rerun = run(&manifests, true).await;
    assert!(rerun.is_success());
    assert_eq!(count(&rerun, Status::Skipped), 9, "{:#?}", rerun.edges);
    assert_eq!(src_proxy.blob_gets(), 0, "source blobs read on a no-op run: {:?}", src_proxy.requests());
    for proxy in &proxies {
        let writes: Vec<_> = proxy.requests().into_iter().filter(|(m, _)| m != "GET" && m != "HEAD").collect();
        assert!(writes.is_empty(), "a no-op run wrote: {writes:?}");
        assert_eq!(proxy.blob_gets(), 0);
    }
    assert_eq!(rerun.summary.bytes_read, 0);
}

#[tokio::test]
async fn shared_layers_are_read_once_for_three_destinations() {
    let src = RegistryServer::start().await.unwrap();
    let dst = RegistryServer::start().await.unwrap();
    let layout = tempfile::tempdir().unwrap();
    let images: Vec<TestImage> =
        (0..5).map(|i| ImageSpec::two_arch(&format!("shared-{i}"), 128 * KIB, 16 * KIB).build()).collect();
    let names: Vec<String> = (0..5).map(|i| format!("img{i}")).collect();
    let registry = open(&format!("{}/staging", src.host()));
    for (name, image) in names.iter().zip(&images) {
        push(registry.as_ref(), &repo(name), image, &["v1"]).await.unwrap();
    }
    let mut unique: Vec<_> = images.iter().flat_map(|i| i.blobs.iter().map(|b| b.digest.clone())).collect();
    unique.sort();
    unique.dedup();

    let proxy = FaultProxy::start(&src.host()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Entry> = names
        .iter()
        .zip(&images)
        .map(|(n, i)| Entry { name: n.as_str(), digests: vec![(i.digest(), &["v1"][..])] })
        .collect();
    let yaml = manifest_yaml(
        &format!("{}/staging", proxy.host()),
        &[
            &format!("{}/prod-a", dst.host()),
            &format!("{}/prod-b", dst.host()),
            &format!("oci:{}", layout.path().display()),
        ],
        &entries,
    );
    let report = run(&load(&write_plain(dir.path(), &yaml)), true).await;
    assert!(report.is_success(), "{:#?}", report.edges);
    assert_eq!(proxy.blob_gets(), unique.len(), "each unique source blob is read exactly once");
    assert_eq!(report.summary.blobs_read as usize, unique.len());
    // Inside one registry the shared base layers are mounted, not uploaded again.
    assert!(report.summary.blobs_mounted > 0, "{:?}", report.summary);
}

#[tokio::test]
async fn tag_move_is_refused_while_other_edges_land() {
    let src = RegistryServer::start().await.unwrap();
    let dst = RegistryServer::start().await.unwrap();
    let old = ImageSpec::single("old", 16 * KIB).build();
    let new = ImageSpec::single("new", 16 * KIB).build();
    let other = ImageSpec::single("other", 16 * KIB).build();
    source_with(&src, &[("app", &new, &["v1"]), ("app", &other, &["v2"])]).await;
    let prod = open(&format!("{}/prod", dst.host()));
    push(prod.as_ref(), &repo("app"), &old, &["v1"]).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let yaml = manifest_yaml(
        &format!("{}/staging", src.host()),
        &[&format!("{}/prod", dst.host())],
        &[Entry { name: "app", digests: vec![(new.digest(), &["v1"]), (other.digest(), &["v2"])] }],
    );
    let report = run(&load(&write_plain(dir.path(), &yaml)), true).await;
    assert!(!report.is_success());
    let refused: Vec<_> = report.edges.iter().filter(|e| e.status == Status::Refused).collect();
    assert_eq!(refused.len(), 1, "{:#?}", report.edges);
    assert!(refused[0].planned.reason.as_deref().unwrap().contains("tag move"), "{}", refused[0]);
    assert!(refused[0].to_string().contains(":v1"), "the refusal names the tag: {}", refused[0]);
    assert_eq!(count(&report, Status::Promoted), 1);
    assert_eq!(resolve(prod.as_ref(), "app", "v1").await.as_ref(), Some(old.digest()), "the tag did not move");
    assert_eq!(resolve(prod.as_ref(), "app", "v2").await.as_ref(), Some(other.digest()));
}

#[tokio::test]
async fn lost_source_is_refused_while_other_edges_land() {
    let src = RegistryServer::start().await.unwrap();
    let dst = RegistryServer::start().await.unwrap();
    let present = ImageSpec::single("present", 16 * KIB).build();
    let lost = ImageSpec::single("lost", 16 * KIB).build();
    source_with(&src, &[("app", &present, &["v1"])]).await;

    let dir = tempfile::tempdir().unwrap();
    let yaml = manifest_yaml(
        &format!("{}/staging", src.host()),
        &[&format!("{}/prod", dst.host())],
        &[Entry { name: "app", digests: vec![(present.digest(), &["v1"]), (lost.digest(), &["v0"])] }],
    );
    let report = run(&load(&write_plain(dir.path(), &yaml)), true).await;
    assert!(!report.is_success());
    let refused: Vec<_> = report.edges.iter().filter(|e| e.status == Status::Refused).collect();
    assert_eq!(refused.len(), 1);
    assert!(refused[0].planned.reason.as_deref().unwrap().starts_with("lost"), "{}", refused[0]);
    assert_eq!(count(&report, Status::Promoted), 1);
    let prod = open(&format!("{}/prod", dst.host()));
    assert_eq!(resolve(prod.as_ref(), "app", "v1").await.as_ref(), Some(present.digest()));
    assert_eq!(resolve(prod.as_ref(), "app", "v0").await, None);
}

#[tokio::test]
async fn overlapping_manifests_refuse_the_disputed_tag_only() {
    let src = RegistryServer::start().await.unwrap();
    let dst = RegistryServer::start().await.unwrap();
    let a = ImageSpec::single("a", 16 * KIB).build();
    let b = ImageSpec::single("b", 16 * KIB).build();
    source_with(&src, &[("app", &a, &["a"]), ("app", &b, &["b"])]).await;

    // A thin manifest directory with two projects that both write prod/app:v1.
    let dir = tempfile::tempdir().unwrap();
    let registries = format!("registries:\n- name: {}/staging\n  src: true\n- name: {}/prod\n", src.host(), dst.host());
    for (project, image, tags) in [("one", &a, &["v1", "a-only"][..]), ("two", &b, &["v1"][..])] {
        let manifests = dir.path().join("manifests").join(project);
        let images = dir.path().join("images").join(project);
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(manifests.join("promoter-manifest.yaml"), &registries).unwrap();
        std::fs::write(
            images.join("images.yaml"),
            images_yaml(&[Entry { name: "app", digests: vec![(image.digest(), tags)] }]),
        )
        .unwrap();
    }
    let manifests = ferry_manifest::load_thin_dir(dir.path()).unwrap();
    let report = run(&manifests, true).await;
    let refused: Vec<_> = report.edges.iter().filter(|e| e.status == Status::Refused).collect();
    assert_eq!(refused.len(), 2, "{:#?}", report.edges);
    for edge in &refused {
        assert!(edge.planned.reason.as_deref().unwrap().contains("disagree on tag v1"), "{edge}");
    }
    let prod = open(&format!("{}/prod", dst.host()));
    assert_eq!(resolve(prod.as_ref(), "app", "v1").await, None);
    assert_eq!(resolve(prod.as_ref(), "app", "a-only").await.as_ref(), Some(a.digest()));
}

#[tokio::test]
async fn tagless_promotion_copies_by_digest_only() {
    let src = RegistryServer::start().await.unwrap();
    let dst = RegistryServer::start().await.unwrap();
    let image = ImageSpec::two_arch("tagless", 32 * KIB, 8 * KIB).build();
    source_with(&src, &[("app", &image, &[])]).await;

    let dir = tempfile::tempdir().unwrap();
    let yaml = manifest_yaml(
        &format!("{}/staging", src.host()),
        &[&format!("{}/prod", dst.host())],
        &[Entry { name: "app", digests: vec![(image.digest(), &[])] }],
    );
    let manifests = load(&write_plain(dir.path(), &yaml));
    let report = run(&manifests, true).await;
    assert!(report.is_success(), "{:#?}", report.edges);
    let prod = open(&format!("{}/prod", dst.host()));
    assert_eq!(resolve(prod.as_ref(), "app", image.digest().as_str()).await.as_ref(), Some(image.digest()));
    assert!(prod.list_tags(&repo("app")).await.unwrap().is_empty());
    assert_byte_exact_via_skopeo(&dst.host(), "prod/app", image.digest().as_str(), &image);
    assert_eq!(count(&run(&manifests, true).await, Status::Skipped), 1, "a tagless re-run is a no-op");
}

#[tokio::test]
async fn signatures_come_along() {
    let src = RegistryServer::start().await.unwrap();
    let dst = RegistryServer::start().await.unwrap();
    let image = ImageSpec::single("signed", 16 * KIB).build();
    let signature = signature_for(image.digest());
    let sig_tag = signature_tag(image.digest());
    source_with(&src, &[("app", &image, &["v1"]), ("app", &signature, &[sig_tag.as_str()])]).await;

    let dir = tempfile::tempdir().unwrap();
    let yaml = manifest_yaml(
        &format!("{}/staging", src.host()),
        &[&format!("{}/prod", dst.host())],
        &[Entry { name: "app", digests: vec![(image.digest(), &["v1"])] }],
    );
    let manifests = load(&write_plain(dir.path(), &yaml));
    let report = run(&manifests, true).await;
    assert!(report.is_success(), "{:#?}", report.edges);
    assert_eq!(count(&report, Status::Promoted), 2);
    let prod = open(&format!("{}/prod", dst.host()));
    assert_eq!(resolve(prod.as_ref(), "app", sig_tag.as_str()).await.as_ref(), Some(signature.digest()));
    assert_byte_exact_via_skopeo(&dst.host(), "prod/app", sig_tag.as_str(), &signature);
    assert_eq!(count(&run(&manifests, true).await, Status::Skipped), 2);
}

#[tokio::test]
async fn oci_layouts_as_source_and_destination() {
    let src_registry = RegistryServer::start().await.unwrap();
    let dst = RegistryServer::start().await.unwrap();
    let image = ImageSpec::two_arch("layout", 64 * KIB, 8 * KIB).build();
    source_with(&src_registry, &[("app", &image, &["v1"])]).await;

    // The source layout is written by skopeo, as a user would.
    let work = tempfile::tempdir().unwrap();
    let staging = work.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{}/staging/app:v1", src_registry.host()),
        &format!("oci:{}:v1", staging.join("app").display()),
    ]);
    let prod = work.path().join("prod");
    let yaml = manifest_yaml(
        &format!("oci:{}", staging.display()),
        &[&format!("oci:{}", prod.display()), &format!("{}/prod", dst.host())],
        &[Entry { name: "app", digests: vec![(image.digest(), &["v1"])] }],
    );
    let manifests = load(&write_plain(work.path(), &yaml));
    let report = run(&manifests, true).await;
    assert!(report.is_success(), "{:#?}", report.edges);
    assert_byte_exact_via_skopeo(&dst.host(), "prod/app", "v1", &image);

    // skopeo reads the destination layout back: same digest, all platforms.
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:v1", prod.join("app").display())]);
    assert_eq!(raw, image.top.bytes.as_ref());
    let out = work.path().join("out");
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        &format!("oci:{}:v1", prod.join("app").display()),
        &format!("dir:{}", out.display()),
    ]);
    for blob in &image.blobs {
        assert!(out.join(blob.digest.hex()).exists(), "{} read back from the layout", blob.digest);
    }
    assert_eq!(count(&run(&manifests, true).await, Status::Skipped), 2);
}
