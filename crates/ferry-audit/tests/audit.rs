//! The audit engines against `oci:` layouts and local folders (no server): every kind of finding,
//! named with its destination, subject, expectation and origin; a clean destination has none.

use std::path::Path;

use ferry_audit::{AuditOptions, Kind};
use ferry_files::Stores;
use ferry_promote::Registries;
use ferry_registry::layout::LayoutRegistry;
use ferry_registry::Registry;
use ferry_store::Store;
use ferry_testkit::images::{push, repo, signature_for, signature_tag, ImageSpec};

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn open_registries(manifests: &[ferry_manifest::PromotionManifest]) -> Registries {
    let client = ferry_registry::remote::RemoteClient::new(Default::default()).unwrap();
    Registries::open(manifests, |address| Ok::<_, std::convert::Infallible>(ferry_registry::open(address, &client)))
        .unwrap()
}

#[tokio::test]
async fn images_every_kind_of_finding_and_a_clean_destination() {
    let dir = tempfile::tempdir().unwrap();
    let prod = dir.path().join("prod");
    let clean = dir.path().join("clean");
    let layout = LayoutRegistry::new(&prod);
    let clean_layout = LayoutRegistry::new(&clean);

    let one = ImageSpec::two_arch("one", 1024, 128).build();
    let two = ImageSpec::single("two", 512).build();
    let hand = ImageSpec::single("hand", 256).build();
    let never = ImageSpec::single("never", 256).build();
    let by_digest = ImageSpec::single("by-digest", 300).build();

    // What was promoted: one as v1 (signed), two as v2, by_digest without a tag.
    for registry in [&layout as &dyn Registry, &clean_layout] {
        push(registry, &repo("app"), &one, &["v1"]).await.unwrap();
        push(registry, &repo("app"), &signature_for(one.digest()), &[signature_tag(one.digest()).as_str()])
            .await
            .unwrap();
        push(registry, &repo("app"), &two, &["v2"]).await.unwrap();
        push(registry, &repo("tools/cli"), &by_digest, &[]).await.unwrap();
    }
    // By hand, in prod only: v2 moved onto `hand`, an extra tag, a new repository.
    push(&layout, &repo("app"), &hand, &["v2", "debug"]).await.unwrap();
    push(&layout, &repo("pushed/by-hand"), &hand, &["latest"]).await.unwrap();

    let images = format!(
        "- name: app\n  dmap:\n    \"{}\": [\"v1\"]\n    \"{}\": [\"v2\"]\n    \"{}\": [\"v3\"]\n\
         - name: tools/cli\n  dmap:\n    \"{}\": []\n",
        one.digest(),
        two.digest(),
        never.digest(),
        by_digest.digest(),
    );
    let manifest = |dest: &Path, name: &str| {
        let path = dir.path().join(name);
        let yaml = format!(
            "registries:\n- name: oci:{}\n  src: true\n- name: oci:{}\nimages:\n{images}",
            dir.path().join("staging").display(),
            dest.display()
        );
        write(&path, yaml.as_bytes());
        ferry_manifest::load_plain(&path).unwrap()
    };

    let manifests = [manifest(&clean, "clean.yaml")];
    let report = ferry_audit::images::audit(&manifests, &open_registries(&manifests), &AuditOptions::default()).await;
    // Only `never` (never pushed anywhere) is missing: as an image and as its tag.
    let kinds: Vec<(Kind, String)> = report.findings.iter().map(|f| (f.kind, f.subject.clone())).collect();
    let dest = format!("oci:{}", clean.display());
    assert_eq!(
        kinds,
        [(Kind::MissingTag, format!("{dest}/app:v3")), (Kind::MissingImage, format!("{dest}/app@{}", never.digest()))]
    );
    let origin = format!("{}:", dir.path().join("clean.yaml").display());
    assert!(report.findings.iter().all(|f| f.origin.as_deref().is_some_and(|o| o.starts_with(&origin))), "{report:#?}");
    assert_eq!(report.totals.checked, 7);

    let manifests = [manifest(&prod, "prod.yaml")];
    let report = ferry_audit::images::audit(&manifests, &open_registries(&manifests), &AuditOptions::default()).await;
    let dest = format!("oci:{}", prod.display());
    let found: Vec<(Kind, String, String, String)> =
        report.findings.iter().map(|f| (f.kind, f.subject.clone(), f.expected.clone(), f.found.clone())).collect();
    let absent = "absent (no manifest lists it)".to_string();
    assert_eq!(
        found,
        [
            (Kind::UnlistedTag, format!("{dest}/app:debug"), absent.clone(), hand.digest().to_string()),
            (Kind::MovedTag, format!("{dest}/app:v2"), two.digest().to_string(), hand.digest().to_string()),
            (Kind::MissingTag, format!("{dest}/app:v3"), never.digest().to_string(), "no such tag".into()),
            (Kind::MissingImage, format!("{dest}/app@{}", never.digest()), never.digest().to_string(), "absent".into()),
            (Kind::UnlistedRepository, format!("{dest}/pushed/by-hand"), absent, "a repository in the catalog".into()),
        ]
    );
    assert!(report.findings.iter().all(|f| f.destination == dest));
    // Two's digest is still there (by digest), so it is no missing image.
    assert!(!report.findings.iter().any(|f| f.subject.contains(two.digest().as_str())));
    assert_eq!(report.totals.by_kind[&Kind::MovedTag], 1);
}

#[tokio::test]
async fn files_missing_changed_unlisted_and_the_inventory_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let prod = dir.path().join("prod");
    let files: [(&str, &[u8]); 3] = [("v1/a", b"alpha"), ("v1/b", b"bravo"), ("v1/c.sha256", b"charlie")];
    let mut yaml = String::from("files:\n");
    for (name, bytes) in files {
        write(&staging.join(name), bytes);
        write(&prod.join(name), bytes);
        yaml += &format!("- name: {name}\n  sha256: {}\n", ferry_oci::Digest::of(bytes).hex());
    }
    let m = dir.path().join("m");
    write(
        &m.join("filestores/p/filepromoter-manifest.yaml"),
        format!("filestores:\n- base: {}\n  src: true\n- base: {}/\n", staging.display(), prod.display()).as_bytes(),
    );
    write(&m.join("manifests/p/files.yaml"), yaml.as_bytes());
    write(&prod.join("inventory.txt"), b"/v1/a\n");

    let audit = || async {
        let manifests = ferry_manifest::load_files_dir(&m).unwrap();
        let stores = Stores::open(&manifests, Store::open).unwrap();
        ferry_audit::files::audit(&manifests, &stores, &AuditOptions::default()).await
    };
    let report = audit().await;
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!((report.totals.destinations, report.totals.checked), (1, 3));

    // Changed with the same size (only a re-hash tells), deleted, added.
    write(&prod.join("v1/b"), b"BRAVO");
    std::fs::remove_file(prod.join("v1/c.sha256")).unwrap();
    write(&prod.join("v1/extra"), b"by hand");
    let report = audit().await;
    let found: Vec<(Kind, String, String)> =
        report.findings.iter().map(|f| (f.kind, f.subject.clone(), f.found.clone())).collect();
    let at = |name: &str| format!("{}/{name}", prod.display());
    assert_eq!(
        found,
        [
            (Kind::ChangedFile, at("v1/b"), format!("{} (5 bytes, re-hashed)", ferry_oci::Digest::of(b"BRAVO"))),
            (Kind::MissingFile, at("v1/c.sha256"), "absent".into()),
            (Kind::UnlistedFile, at("v1/extra"), "a file of 7 bytes".into()),
        ]
    );
    let origin = format!("{}:", m.join("manifests/p/files.yaml").display());
    assert!(report.findings[0].origin.as_deref().unwrap().starts_with(&origin));
    assert_eq!(report.findings[0].expected, ferry_oci::Digest::of(b"bravo").to_string());
    assert_eq!(report.findings[2].origin, None);
}
