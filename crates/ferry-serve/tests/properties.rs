//! Properties of `ferry serve`'s parsers: request targets, `X-Forwarded-For`, the configuration
//! and inventories. Whatever is accepted prints back to what it came from, and nothing panics
//! (the fuzz targets `request_target`, `forwarded_for`, `serve_config` and `inventory` in fuzz/
//! explore the same ground for longer).

use std::net::IpAddr;
use std::path::Path;

use ferry_oci::{Digest, Reference};
use ferry_serve::{parse_request, Config, Inventory, Resource, Snapshot};
use proptest::prelude::*;

fn repo_name() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9]{1,4}([._-][a-z0-9]{1,4})?", 1..4).prop_map(|c| c.join("/"))
}

/// A request target as a client might send it: mostly well-formed registry or file paths, with
/// characters that must be refused mixed in.
fn target() -> impl Strategy<Value = String> {
    let segment = "[a-zA-Z0-9._~%\\\\:@ -]{0,8}";
    let word = prop::sample::select(vec!["blobs", "manifests", "tags", "referrers", "list", "_ferry", "v2", ".."]);
    let part =
        prop_oneof![segment.prop_map(String::from), word.prop_map(String::from), Just(Digest::of(b"x").to_string())];
    (prop::bool::ANY, prop::collection::vec(part, 0..6), prop::option::of("[a-z0-9=&%#<> ]{0,10}")).prop_map(
        |(v2, parts, query)| {
            let path = format!("{}/{}", if v2 { "/v2" } else { "" }, parts.join("/"));
            match query {
                Some(q) => format!("{path}?{q}"),
                None => path,
            }
        },
    )
}

/// The path `resource` was parsed from.
fn printed(resource: &Resource, path: &str) -> String {
    match resource {
        Resource::ApiBase => path.to_string(),
        Resource::Blob { name, digest } => format!("/v2/{name}/blobs/{digest}"),
        Resource::Manifest { name, reference } => format!("/v2/{name}/manifests/{reference}"),
        Resource::TagsList { name } => format!("/v2/{name}/tags/list"),
        Resource::Referrers { name, digest } => format!("/v2/{name}/referrers/{digest}"),
        Resource::File { path } => path.as_str().to_string(),
    }
}

fn snapshot(trusted: &str) -> Snapshot {
    let yaml = format!("trusted_proxies: {trusted}\nupstream:\n  registry: https://registry.example\n");
    Snapshot::from_config(Config::from_yaml(&yaml, "test").unwrap(), Path::new(".")).unwrap()
}

/// The `X-Forwarded-For` rule written plainly, on the standard library's address parser.
fn model(snapshot: &Snapshot, peer: IpAddr, values: &[&[u8]]) -> IpAddr {
    let peer = peer.to_canonical();
    if !snapshot.is_trusted_proxy(peer) || values.iter().map(|v| v.len()).sum::<usize>() > ferry_serve::client::MAX_XFF
    {
        return peer;
    }
    let mut entries = Vec::new();
    for value in values {
        for entry in value.split(|&b| b == b',') {
            match std::str::from_utf8(entry.trim_ascii()).ok().and_then(|s| s.parse::<IpAddr>().ok()) {
                Some(ip) => entries.push(ip.to_canonical()),
                None => return peer,
            }
        }
    }
    entries.iter().rev().find(|ip| !snapshot.is_trusted_proxy(**ip)).or(entries.first()).copied().unwrap_or(peer)
}

/// One `X-Forwarded-For` entry: an address (IPv4, IPv6, IPv4-mapped) or something near one.
fn xff_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        2 => prop::sample::select(vec!["10.1.2.3", "10.255.0.1", "192.168.1.1", "::1", "fd00::7", "::ffff:10.0.0.1"]).prop_map(String::from),
        2 => any::<[u16; 8]>().prop_map(|s| std::net::Ipv6Addr::from(s).to_string()),
        2 => "[0-9.:a-f ]{0,16}",
        1 => "[0-9]{1,4}\\.[0-9]{1,4}\\.[0-9]{1,4}\\.[0-9]{1,4}",
    ]
}

proptest! {
    #[test]
    fn request_targets_print_back_or_are_refused(target in target()) {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target.as_str(), None),
        };
        match parse_request(path, query) {
            Ok(request) => {
                prop_assert_eq!(printed(&request.resource, path), path);
                prop_assert!(!path.contains(['%', '\\', ' ']) && !path.contains("//") && !path.contains("/."), "{}", path);
                if let (Some(q), Some(raw)) = (&request.query, query) {
                    prop_assert_eq!(q.as_str(), raw);
                }
            }
            Err(reject) => prop_assert!(matches!(reject.status(), 400 | 404)),
        }
    }

    #[test]
    fn arbitrary_request_targets_never_panic(path in "\\PC{0,40}", query in prop::option::of("\\PC{0,20}")) {
        if let Ok(request) = parse_request(&path, query.as_deref()) {
            prop_assert_eq!(printed(&request.resource, &path), path);
        }
    }

    #[test]
    fn registry_requests_parse_to_their_parts(name in repo_name(), seed in any::<[u8; 2]>(), tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}") {
        let digest = Digest::of(&seed);
        let blob = parse_request(&format!("/v2/{name}/blobs/{digest}"), None).unwrap();
        prop_assert_eq!(blob.resource, Resource::Blob { name: name.parse().unwrap(), digest: digest.clone() });
        let by_tag = parse_request(&format!("/v2/{name}/manifests/{tag}"), Some("ns=registry.k8s.io")).unwrap();
        prop_assert_eq!(by_tag.resource, Resource::Manifest { name: name.parse().unwrap(), reference: Reference::Tag(tag.parse().unwrap()) });
        prop_assert_eq!(by_tag.query.as_ref().map(|q| q.as_str()), Some("ns=registry.k8s.io"));
        let by_digest = parse_request(&format!("/v2/{name}/manifests/{digest}"), None).unwrap();
        prop_assert_eq!(by_digest.resource, Resource::Manifest { name: name.parse().unwrap(), reference: Reference::Digest(digest) });
    }

    #[test]
    fn forwarded_for_follows_the_rule(
        all_trusted in any::<bool>(),
        peer in prop::sample::select(vec!["10.1.2.3", "203.0.113.7", "::ffff:10.9.9.9", "2001:db8::1"]),
        headers in prop::collection::vec(prop::collection::vec(xff_entry(), 1..4), 0..3),
    ) {
        let snapshot = if all_trusted { snapshot(r#"["0.0.0.0/0", "::/0"]"#) } else { snapshot(r#"["10.0.0.0/8", "192.168.1.1", "::1", "fd00::/8"]"#) };
        let values: Vec<String> = headers.iter().map(|entries| entries.join(", ")).collect();
        let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let peer: IpAddr = peer.parse().unwrap();
        prop_assert_eq!(ferry_serve::fuzzing::client_address_from(&snapshot, peer, &values), model(&snapshot, peer, &values));
    }

    #[test]
    fn arbitrary_forwarded_for_never_panics(values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..3)) {
        let snapshot = snapshot(r#"["0.0.0.0/0", "::/0"]"#);
        let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let peer: IpAddr = [10, 0, 0, 1].into();
        prop_assert_eq!(ferry_serve::fuzzing::client_address_from(&snapshot, peer, &values), model(&snapshot, peer, &values));
    }

    #[test]
    fn arbitrary_config_never_panics(
        text in "(upstream:|  registry: [a-z:/.{}]{0,20}|mirrors:|  - name: [a-z]{0,4}|    blobs: [a-z:/.{}]{0,24}|    serves: \\[[a-z:*\", ]{0,10}\\]|trusted_proxies: \\[[0-9./:a-f\", ]{0,16}\\]|listen: [0-9.:\\[\\]]{0,16}|shutdown_grace: [-0-9.a-z]{0,6}|limits: \\{per_client: \\{requests_per_minute: [0-9]{0,3}, burst: [0-9]{0,3}\\}\\}|[ \t]{0,4}[-:{}\\[\\],&*!|>#'\"a-z0-9]{0,12}|\n){0,12}",
    ) {
        match Config::from_yaml(&text, "ferry.yaml") {
            Ok(config) => {
                if config.mirrors.iter().all(|m| m.inventory.is_none()) && config.tls.is_none() {
                    let _ = Snapshot::from_config(config, Path::new("/nonexistent"));
                }
            }
            Err(e) => prop_assert!(!e.field.is_empty() && !e.message.is_empty()),
        }
    }

    #[test]
    fn inventory_agrees_with_the_store(text in "(sha256:[0-9a-f]{64}|sha256:[0-9a-f]{0,3}|/[a-z]{1,3}(/[a-z.]{1,3}){0,2}|#[a-z ]{0,5}|[ \t]{0,2}|[ \t][0-9]{1,3}|\r?\n){0,20}") {
        let store = ferry_store::Inventory::parse(&text, "inv");
        let serve = Inventory::parse(&text, "inv");
        match (store, serve) {
            (Ok(store), Ok(serve)) => {
                prop_assert_eq!(serve.blob_count(), store.blobs().count());
                prop_assert_eq!(serve.file_count(), store.files().count());
                for d in store.blobs() {
                    prop_assert!(serve.has_blob(d));
                }
            }
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "store {:?}, serve {:?}", a, b),
        }
    }
}
