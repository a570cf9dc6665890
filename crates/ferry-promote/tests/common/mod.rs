//! Shared set-up for promotion tests: real registries, manifests written as YAML files and read
//! back through `ferry-manifest`, exactly as the CLI does.

#![allow(dead_code, unused_imports)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ferry_manifest::PromotionManifest;
use ferry_oci::{Digest, Reference, RegistryAddress, RepoName};
use ferry_promote::{PromoteOptions, Registries, Report, Status};
use ferry_registry::remote::{RemoteClient, RemoteOptions};
use ferry_registry::Registry;

pub(crate) use ferry_testkit::fault_proxy::{Fault, FaultProxy, FaultRule};
pub(crate) use ferry_testkit::images::{push, repo, signature_for, signature_tag, Flavour, ImageSpec, TestImage};
pub(crate) use ferry_testkit::registry_server::RegistryServer;
pub(crate) use ferry_testkit::skopeo::{assert_pulled_byte_exact, pull_all, skopeo};

pub(crate) fn client() -> Arc<RemoteClient> {
    RemoteClient::new(RemoteOptions { retry_base_delay: Duration::from_millis(20), ..RemoteOptions::default() })
        .expect("client")
}

pub(crate) fn open(address: &str) -> Arc<dyn Registry> {
    ferry_registry::open(&address.parse().expect("address"), &client())
}

/// One image entry: name and (digest, tags) pairs.
pub(crate) struct Entry<'a> {
    pub name: &'a str,
    pub digests: Vec<(&'a Digest, &'a [&'a str])>,
}

/// The YAML of a plain manifest (registries + images).
pub(crate) fn manifest_yaml(source: &str, destinations: &[&str], images: &[Entry]) -> String {
    let mut y = String::from("registries:\n");
    y += &format!("- name: {source}\n  src: true\n  service-account: promoter@example.iam.gserviceaccount.com\n");
    for d in destinations {
        y += &format!("- name: {d}\n");
    }
    y += "images:\n";
    y += &images_yaml(images);
    y
}

pub(crate) fn images_yaml(images: &[Entry]) -> String {
    let mut y = String::new();
    for image in images {
        y += &format!("- name: {}\n  dmap:\n", image.name);
        for (digest, tags) in &image.digests {
            let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
            y += &format!("    \"{digest}\": [{}]\n", tags.join(", "));
        }
    }
    y
}

pub(crate) fn write_plain(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("promoter-manifest.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

pub(crate) fn load(path: &Path) -> Vec<PromotionManifest> {
    vec![ferry_manifest::load_plain(path).expect("valid manifest")]
}

pub(crate) async fn run(manifests: &[PromotionManifest], confirm: bool) -> Report {
    let client = client();
    let registries = Registries::open(manifests, |a| Ok::<_, ()>(ferry_registry::open(a, &client))).unwrap();
    let options = PromoteOptions { confirm, ..PromoteOptions::default() };
    ferry_promote::promote(manifests, &registries, &options, &ferry_report::Silent).await
}

pub(crate) fn count(report: &Report, status: Status) -> usize {
    report.edges.iter().filter(|e| e.status == status).count()
}

/// The digest `reference` resolves to in `registry` (`None` when absent).
pub(crate) async fn resolve(registry: &dyn Registry, repo_name: &str, reference: &str) -> Option<Digest> {
    let reference = match reference.parse::<Digest>() {
        Ok(d) => Reference::Digest(d),
        Err(_) => Reference::Tag(reference.parse().unwrap()),
    };
    registry.head_manifest(&repo(repo_name), &reference).await.unwrap().map(|h| h.digest)
}

pub(crate) fn address(s: &str) -> RegistryAddress {
    s.parse().unwrap()
}

pub(crate) fn repo_name(s: &str) -> RepoName {
    repo(s)
}

/// Read `image` at `reference` back through skopeo from a remote registry and check that the
/// manifest bytes, every child manifest and every blob are exactly the expected ones.
pub(crate) fn assert_byte_exact_via_skopeo(host: &str, repo_name: &str, reference: &str, image: &TestImage) {
    let sep = if reference.starts_with("sha256:") { "@" } else { ":" };
    let location = format!("docker://{host}/{repo_name}{sep}{reference}");
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &location]);
    assert_eq!(raw, image.top.bytes.as_ref(), "top manifest bytes of {location}");
    for child in &image.children {
        let child_location = format!("docker://{host}/{repo_name}@{}", child.digest);
        let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &child_location]);
        assert_eq!(raw, child.bytes.as_ref(), "child manifest bytes of {child_location}");
    }
    let dir = tempfile::tempdir().unwrap();
    pull_all(&location, &dir.path().join("out"));
    assert_pulled_byte_exact(&dir.path().join("out"), image);
}
