//! Properties of the OCI vocabulary's parsers: everything valid prints back to the text it came
//! from and parses to the same value again, and arbitrary text never panics (the fuzz target
//! `oci_reference` in fuzz/ explores the same ground for longer).

use ferry_oci::{Descriptor, Digest, FilePath, ManifestRefs, ObjectName, Reference, RegistryAddress, RepoName, Tag};
use proptest::prelude::*;

/// A repository name by the grammar: components of `[a-z0-9]+` runs joined by `.`, `_`, `__`
/// or dashes, joined by `/`.
fn repo_name() -> impl Strategy<Value = String> {
    let run = "[a-z0-9]{1,6}";
    let component = (run, prop::collection::vec((prop::sample::select(vec![".", "_", "__", "-", "---"]), run), 0..3))
        .prop_map(|(first, rest)| rest.into_iter().fold(first, |s, (sep, run)| s + sep + &run));
    prop::collection::vec(component, 1..4).prop_map(|c| c.join("/"))
}

fn host() -> impl Strategy<Value = String> {
    let label = "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?";
    let name = prop::collection::vec(label, 1..4).prop_map(|l| l.join("."));
    let v6 = any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s)));
    let host = prop_oneof![name, v6];
    (host, prop::option::of(any::<u16>())).prop_map(|(h, port)| match port {
        Some(p) => format!("{h}:{p}"),
        None => h,
    })
}

proptest! {
    #[test]
    fn digest_round_trip(hex in "[0-9a-f]{64}") {
        let text = format!("sha256:{hex}");
        let digest: Digest = text.parse().unwrap();
        prop_assert_eq!(digest.as_str(), text.as_str());
        prop_assert_eq!(digest.hex(), hex.as_str());
        prop_assert_eq!(digest.to_string().parse::<Digest>().unwrap(), digest.clone());
        prop_assert_eq!(digest.tag_prefix(), format!("sha256-{hex}"));
    }

    #[test]
    fn digest_of_bytes_parses_back(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let digest = Digest::of(&bytes);
        prop_assert_eq!(digest.as_str().parse::<Digest>().unwrap(), digest);
    }

    #[test]
    fn arbitrary_text_parses_only_to_itself(text in ".{0,80}|sha256:[0-9a-fA-F:/.]{60,70}") {
        if let Ok(d) = text.parse::<Digest>() {
            prop_assert_eq!(d.as_str(), text.as_str());
            prop_assert_eq!(d.hex().len(), 64);
        }
        if let Ok(t) = text.parse::<Tag>() {
            prop_assert_eq!(t.as_str(), text.as_str());
            prop_assert!(text.parse::<Digest>().is_err());
        }
        if let Ok(r) = text.parse::<RepoName>() {
            prop_assert_eq!(r.as_str(), text.as_str());
            prop_assert!(r.as_str().split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
        }
        if let Ok(a) = text.parse::<RegistryAddress>() {
            prop_assert_eq!(a.to_string().parse::<RegistryAddress>().unwrap(), a);
        }
        if let Ok(p) = FilePath::parse(&text) {
            prop_assert_eq!(p.as_str(), text.as_str());
            prop_assert!(!p.as_str().contains("//") && !p.as_str().contains("/."));
        }
        if let Ok(n) = ObjectName::parse(&text) {
            prop_assert_eq!(n.as_str(), text.as_str());
            prop_assert!(n.as_str().split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
        }
    }

    #[test]
    fn tag_round_trip(text in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}") {
        let tag: Tag = text.parse().unwrap();
        prop_assert_eq!(tag.to_string(), text.clone());
        let reference = Reference::from(tag.clone());
        prop_assert_eq!(reference.to_string(), text);
        prop_assert_eq!(Reference::Tag(reference.to_string().parse().unwrap()), reference);
    }

    #[test]
    fn repo_name_round_trip(text in repo_name(), child in repo_name()) {
        let name: RepoName = text.parse().unwrap();
        prop_assert_eq!(name.to_string(), text.clone());
        let joined = name.join(&child.parse().unwrap());
        prop_assert_eq!(joined.as_str(), format!("{text}/{child}"));
        prop_assert_eq!(joined.as_str().parse::<RepoName>().is_ok(), joined.as_str().len() <= 255);
    }

    #[test]
    fn registry_address_round_trip(host in host(), prefix in prop::option::of(repo_name())) {
        let text = match &prefix {
            Some(p) => format!("{host}/{p}"),
            None => host.clone(),
        };
        let address: RegistryAddress = text.parse().unwrap();
        prop_assert_eq!(address.to_string(), text.clone());
        prop_assert_eq!(&address.to_string().parse::<RegistryAddress>().unwrap(), &address);
        let RegistryAddress::Remote { host: parsed_host, prefix: parsed_prefix } = address else {
            return Err(TestCaseError::fail("not a remote registry"));
        };
        prop_assert_eq!(parsed_host, host);
        prop_assert_eq!(parsed_prefix.map(String::from), prefix);
    }

    #[test]
    fn layout_address_round_trip(dir in "[a-zA-Z0-9_./-]{1,40}") {
        let text = format!("oci:{dir}");
        let address: RegistryAddress = text.parse().unwrap();
        prop_assert_eq!(address.to_string(), text);
    }

    #[test]
    fn manifest_refs_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = ManifestRefs::parse(&Digest::of(&bytes), &bytes, None);
    }

    #[test]
    fn manifest_refs_read_every_descriptor(
        children in prop::collection::vec((any::<[u8; 4]>(), any::<u64>()), 0..5),
        layers in prop::collection::vec((any::<[u8; 4]>(), any::<u64>()), 0..5),
    ) {
        let descriptor = |(seed, size): &([u8; 4], u64)| {
            serde_json::json!({"mediaType": "m", "digest": Digest::of(seed).as_str(), "size": size})
        };
        let json = serde_json::json!({
            "schemaVersion": 2,
            "manifests": children.iter().map(descriptor).collect::<Vec<_>>(),
            "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&json).unwrap();
        let refs = ManifestRefs::parse(&Digest::of(&bytes), &bytes, None).unwrap();
        let expect = |list: &[([u8; 4], u64)]| -> Vec<Descriptor> {
            list.iter()
                .map(|(seed, size)| Descriptor {
                    media_type: "m".into(),
                    digest: Digest::of(seed),
                    size: *size,
                    artifact_type: None,
                })
                .collect()
        };
        prop_assert_eq!(refs.manifests, expect(&children));
        prop_assert_eq!(refs.blobs, expect(&layers));
    }
}

proptest! {
    #[test]
    fn manifest_media_type_is_never_empty(
        media_type in prop::option::of("|application/vnd\\.[a-z.+]{1,20}"),
        served in prop::option::of("|application/vnd\\.[a-z.+]{1,20}"),
        index in any::<bool>(),
    ) {
        let mut json = serde_json::json!({"schemaVersion": 2});
        if let Some(t) = &media_type {
            json["mediaType"] = t.as_str().into();
        }
        if index {
            json["manifests"] = serde_json::json!([{"digest": Digest::of(b"child").as_str(), "size": 1}]);
        }
        let bytes = serde_json::to_vec(&json).unwrap();
        let refs = ManifestRefs::parse(&Digest::of(&bytes), &bytes, served.as_deref()).unwrap();
        let expected = [media_type.as_deref(), served.as_deref()]
            .into_iter()
            .flatten()
            .find(|t| !t.is_empty())
            .unwrap_or(if index { ferry_oci::media_types::OCI_INDEX } else { ferry_oci::media_types::OCI_MANIFEST });
        prop_assert_eq!(refs.media_type, expected);
    }
}

/// Found by the fuzz target `oci_reference` (2026-12-04, crash-2b7473776f5d4b94dfae4cf00c5b70c422fd139d):
/// an empty `mediaType` was kept as the manifest's type, so a manifest served with a generic
/// Content-Type would have been pushed with an empty one. It is inferred like a missing one now.
#[test]
fn empty_media_type_is_inferred() {
    let bytes = b"{\"sch-maVeon\": 2, \"mediaType\":\t\t\t\t\t\t \"\"}";
    let refs = ManifestRefs::parse(&Digest::of(bytes), bytes, None).unwrap();
    assert_eq!(refs.media_type, ferry_oci::media_types::OCI_MANIFEST);
    let refs = ManifestRefs::parse(&Digest::of(bytes), bytes, Some("")).unwrap();
    assert_eq!(refs.media_type, ferry_oci::media_types::OCI_MANIFEST);
    let refs = ManifestRefs::parse(&Digest::of(bytes), bytes, Some(ferry_oci::media_types::DOCKER_MANIFEST)).unwrap();
    assert_eq!(refs.media_type, ferry_oci::media_types::DOCKER_MANIFEST);
}
