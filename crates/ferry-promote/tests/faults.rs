//! Faults a real registry will not produce, injected by a proxy in front of a real one.

mod common;

use common::*;
use ferry_promote::Status;

const KIB: usize = 1024;

#[tokio::test]
async fn throttling_and_server_errors_are_retried_and_the_run_completes() {
    let src = RegistryServer::start().await.unwrap();
    let dst = RegistryServer::start().await.unwrap();
    let image = ImageSpec::two_arch("flaky", 64 * KIB, 8 * KIB).build();
    push(open(&format!("{}/staging", src.host())).as_ref(), &repo("app"), &image, &["v1"]).await.unwrap();

    let src_proxy = FaultProxy::start(&src.host()).await.unwrap();
    let dst_proxy = FaultProxy::start(&dst.host()).await.unwrap();
    let throttled = Fault::Status { status: 429, retry_after: Some("1".into()) };
    src_proxy.add_fault(FaultRule {
        method: Some("GET".into()),
        path_contains: "/blobs/sha256:".into(),
        times: 2,
        fault: throttled,
    });
    src_proxy.add_fault(FaultRule {
        method: Some("GET".into()),
        path_contains: "/manifests/".into(),
        times: 1,
        fault: Fault::Status { status: 503, retry_after: None },
    });
    dst_proxy.add_fault(FaultRule {
        method: Some("PUT".into()),
        path_contains: "/blobs/uploads/".into(),
        times: 2,
        fault: Fault::Status { status: 500, retry_after: None },
    });
    dst_proxy.add_fault(FaultRule {
        method: Some("HEAD".into()),
        path_contains: "/manifests/".into(),
        times: 1,
        fault: Fault::Reset,
    });

    let dir = tempfile::tempdir().unwrap();
    let yaml = manifest_yaml(
        &format!("{}/staging", src_proxy.host()),
        &[&format!("{}/prod", dst_proxy.host())],
        &[Entry { name: "app", digests: vec![(image.digest(), &["v1"])] }],
    );
    let started = std::time::Instant::now();
    let report = run(&load(&write_plain(dir.path(), &yaml)), true).await;
    assert!(report.is_success(), "{:#?}", report.edges);
    assert_eq!(count(&report, Status::Promoted), 1);
    // Retry-After: 1 was honoured (two throttled reads, at least one second waited).
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert!(src_proxy.blob_gets() > image.blobs.len(), "the throttled reads were retried");
    assert_byte_exact_via_skopeo(&dst.host(), "prod/app", "v1", &image);
}

#[tokio::test]
async fn a_blob_that_does_not_match_its_digest_is_never_pushed() {
    let src = RegistryServer::start().await.unwrap();
    let dst = RegistryServer::start().await.unwrap();
    let good = ImageSpec::single("good", 16 * KIB).build();
    let bad = ImageSpec::single("bad", 16 * KIB).build();
    let staging = open(&format!("{}/staging", src.host()));
    push(staging.as_ref(), &repo("good"), &good, &["v1"]).await.unwrap();
    push(staging.as_ref(), &repo("bad"), &bad, &["v1"]).await.unwrap();
    let corrupted = bad.blobs.iter().find(|b| !good.blobs.iter().any(|g| g.digest == b.digest)).unwrap();

    let proxy = FaultProxy::start(&src.host()).await.unwrap();
    proxy.add_fault(FaultRule {
        method: Some("GET".into()),
        path_contains: format!("/blobs/{}", corrupted.digest),
        times: usize::MAX,
        fault: Fault::CorruptBody,
    });
    let dir = tempfile::tempdir().unwrap();
    let yaml = manifest_yaml(
        &format!("{}/staging", proxy.host()),
        &[&format!("{}/prod", dst.host())],
        &[
            Entry { name: "good", digests: vec![(good.digest(), &["v1"])] },
            Entry { name: "bad", digests: vec![(bad.digest(), &["v1"])] },
        ],
    );
    let report = run(&load(&write_plain(dir.path(), &yaml)), true).await;
    assert!(!report.is_success());
    let failed: Vec<_> = report.edges.iter().filter(|e| e.status == Status::Failed).collect();
    assert_eq!(failed.len(), 1, "{:#?}", report.edges);
    let why = failed[0].error.as_deref().unwrap();
    assert!(why.contains("does not match its digest") && why.contains(corrupted.digest.as_str()), "{why}");
    let prod = open(&format!("{}/prod", dst.host()));
    assert!(!prod.has_blob(&repo("bad"), &corrupted.digest).await.unwrap(), "the corrupt blob reached the destination");
    assert_eq!(resolve(prod.as_ref(), "bad", "v1").await, None);
    assert_eq!(resolve(prod.as_ref(), "good", "v1").await.as_ref(), Some(good.digest()));
}
