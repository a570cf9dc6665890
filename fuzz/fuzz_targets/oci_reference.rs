//! `ferry-oci`'s parsers: image references (`host[:port]/repo:tag`, `host/repo@sha256:...`) and
//! their parts (registry address, repository name, tag, digest), and the reader of what a
//! manifest refers to (`ManifestRefs::parse`). Everything accepted prints back to text that
//! parses to the same value.
#![no_main]

use ferry_oci::{Descriptor, Digest, ManifestRefs, Reference, RegistryAddress, RepoName, Tag};
use libfuzzer_sys::fuzz_target;

/// `HOST/REPO:TAG` or `HOST/REPO@DIGEST`, split as `ferry verify` splits it: from the right, a
/// `:` after the last `/` starts the tag (one before it is a port), and the host ends at the
/// first `/`.
fn image_reference(text: &str) -> Option<(RegistryAddress, RepoName, Reference)> {
    let (name, reference) = match text.rsplit_once('@') {
        Some((name, digest)) => (name, Reference::Digest(digest.parse().ok()?)),
        None => {
            let slash = text.rfind('/')?;
            let (name, tag) = text[slash..].split_once(':').map(|(n, t)| (&text[..slash + n.len()], t))?;
            (name, Reference::Tag(tag.parse().ok()?))
        }
    };
    let (host, repo) = name.split_once('/')?;
    Some((host.parse().ok()?, repo.parse().ok()?, reference))
}

fn round_trip<T: std::str::FromStr + std::fmt::Display + PartialEq + std::fmt::Debug>(text: &str)
where
    T::Err: std::fmt::Debug,
{
    if let Ok(value) = text.parse::<T>() {
        let printed = value.to_string();
        assert_eq!(printed.parse::<T>().unwrap(), value, "{text:?} printed as {printed:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        round_trip::<RegistryAddress>(text);
        round_trip::<RepoName>(text);
        round_trip::<Tag>(text);
        round_trip::<Digest>(text);
        if let Ok(digest) = text.parse::<Digest>() {
            assert_eq!(digest.as_str(), text);
            assert_eq!(digest.hex().len(), 64);
        }
        if let Ok(tag) = text.parse::<Tag>() {
            assert_eq!(tag.as_str(), text);
            assert!(text.parse::<Digest>().is_err(), "{text:?} is both a tag and a digest");
        }
        if let Ok(repo) = text.parse::<RepoName>() {
            // Safe as a relative directory path.
            assert!(repo.as_str().split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
        }
        if let Some((address, repo, reference)) = image_reference(text) {
            let separator = match reference {
                Reference::Tag(_) => ':',
                Reference::Digest(_) => '@',
            };
            let printed = format!("{address}/{repo}{separator}{reference}");
            assert_eq!(printed, text);
            assert_eq!(image_reference(&printed), Some((address, repo, reference)));
        }
    }
    let digest = Digest::of(data);
    if let Ok(refs) = ManifestRefs::parse(&digest, data, None) {
        assert!(!refs.media_type.is_empty());
        for d in refs.manifests.iter().chain(&refs.blobs).chain(&refs.subject) {
            // A descriptor written as JSON reads back as the same descriptor.
            let json = serde_json::to_vec(d).unwrap();
            assert_eq!(&serde_json::from_slice::<Descriptor>(&json).unwrap(), d);
        }
    }
});
