//! Writing a files manifest from what a staging store holds (`ferry manifest files`): list the
//! store under a prefix, hash every file while reading it once, and render the `files:` list
//! that [`crate::promote`] reads, sorted by name.
//!
//! Every name is checked first: a name `ferry promote files` would refuse (an empty or `..`
//! segment, a backslash, a control character, more than 1,024 bytes) refuses the whole listing,
//! naming each one, before anything is read, so a manifest written is always a valid one.

use ferry_oci::Digest;
use ferry_store::{verify_object, ObjectName, Store, StoreError};
use futures::{StreamExt, TryStreamExt};

/// One file of a listing: its name relative to the store's base and the sha256 of its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedFile {
    /// The name relative to the store's base.
    pub name: ObjectName,
    /// The digest of the bytes read.
    pub sha256: Digest,
    /// Bytes read.
    pub size: u64,
}

/// Why no manifest could be written.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// Names under the prefix that `ferry promote files` would refuse, every one of them.
    #[error("{} name(s) under {store} cannot be promoted:\n{}", names.len(), names.join("\n"))]
    BadNames {
        /// The store's URL.
        store: String,
        /// Each bad name with its problem.
        names: Vec<String>,
    },
    /// No file under the prefix: such a manifest would be refused.
    #[error("no files in {store}{}", if prefix.is_empty() { String::new() } else { format!(" under prefix {prefix:?}") })]
    Empty {
        /// The store's URL.
        store: String,
        /// The prefix asked for.
        prefix: String,
    },
    /// The store could not be listed or a file read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ListingError {
    /// Bad input (a bad name, nothing listed) rather than a failure of the store.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ListingError::Store(_))
    }
}

/// Whether `name` is under `prefix`, taken as whole path segments: `1.30.0` (or `1.30.0/`)
/// holds `1.30.0/kops` but not `1.30.0-rc.1/kops`; the empty prefix holds everything.
pub fn under_prefix(name: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_matches('/');
    prefix.is_empty() || name == prefix || name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// Lists every file of `store` under `prefix` (see [`under_prefix`]) and hashes each one, read
/// once, `concurrency` files at a time; sorted by name.
pub async fn list_files(store: &Store, prefix: &str, concurrency: usize) -> Result<Vec<ListedFile>, ListingError> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (name, _size) in store.list_all().await? {
        match name {
            Ok(name) if under_prefix(name.as_str(), prefix) => good.push(name),
            Ok(_) => {}
            Err(e) if under_prefix(&e.name, prefix) => bad.push(format!("{:?}: {}", e.name, e.problem)),
            Err(_) => {}
        }
    }
    if !bad.is_empty() {
        return Err(ListingError::BadNames { store: store.url().to_string(), names: bad });
    }
    if good.is_empty() {
        return Err(ListingError::Empty { store: store.url().to_string(), prefix: prefix.to_string() });
    }
    // Any digest serves as the expectation: a mismatch hands back the digest the bytes have.
    let empty = Digest::of(b"");
    futures::stream::iter(good)
        .map(|name| {
            let empty = empty.clone();
            async move {
                let (size, verdict) = verify_object(store, &name, &empty, |_| {}).await?;
                let sha256 = verdict.err().unwrap_or(empty);
                Ok::<_, ListingError>(ListedFile { name, sha256, size })
            }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

/// The files manifest of `files`: `files:` with one `name`/`sha256` entry each, in the order
/// given. A name is written plain when YAML cannot read it as anything but that string, else
/// single-quoted.
pub fn render(files: &[ListedFile]) -> String {
    let mut out = String::from("files:\n");
    for file in files {
        out += &format!("- name: {}\n  sha256: {}\n", yaml_string(file.name.as_str()), file.sha256.hex());
    }
    out
}

/// `name` as a YAML scalar that reads back as that string, under YAML 1.1 and 1.2.
fn yaml_string(name: &str) -> String {
    let safe_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
    let first = name.bytes().next().unwrap_or(b' ');
    // A letter first rules out numbers, dates and `.inf`; a `/` rules out every other type;
    // what is left are the YAML 1.1 booleans and null.
    let words = ["y", "yes", "n", "no", "true", "false", "on", "off", "null"];
    let plain = safe_chars
        && (first.is_ascii_alphabetic() && !words.contains(&name.to_ascii_lowercase().as_str())
            || first.is_ascii_alphanumeric() && name.contains('/'));
    if plain {
        name.to_string()
    } else {
        format!("'{}'", name.replace('\'', "''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_whole_segments() {
        assert!(under_prefix("1.30.0/kops", "1.30.0"));
        assert!(under_prefix("1.30.0/kops", "1.30.0/"));
        assert!(under_prefix("1.30.0/kops", "/1.30.0/"));
        assert!(under_prefix("1.30.0", "1.30.0"));
        assert!(!under_prefix("1.30.0-rc.1/kops", "1.30.0"));
        assert!(under_prefix("anything", ""));
        assert!(under_prefix("a/b/c", "a/b"));
        assert!(!under_prefix("a/bc", "a/b"));
    }

    #[test]
    fn names_are_quoted_only_when_yaml_would_read_them_otherwise() {
        assert_eq!(yaml_string("1.30.0/linux/amd64/kops"), "1.30.0/linux/amd64/kops");
        assert_eq!(yaml_string("kops.sha256"), "kops.sha256");
        assert_eq!(yaml_string("1.30"), "'1.30'");
        assert_eq!(yaml_string("yes"), "'yes'");
        assert_eq!(yaml_string("Null"), "'Null'");
        assert_eq!(yaml_string("a b/it's #1: x"), "'a b/it''s #1: x'");
        assert_eq!(yaml_string("-x"), "'-x'");
    }

    /// Names YAML could misread go through the manifest loader back to themselves.
    #[test]
    fn a_rendered_manifest_loads_back_as_written() {
        let names = [
            "1.30",
            "yes",
            "null",
            "~x",
            "a b/c",
            "it's",
            "x: y",
            "#hash",
            "- dash",
            "[a]",
            "{b}",
            "1.30.0/kops",
            "é/ü",
            "@at",
            "%p",
            "&amp",
            "*star",
            "!bang",
            "|pipe",
            ">gt",
            "\"dq",
            "`bt",
            "a,b",
            "?q",
        ];
        let files: Vec<ListedFile> = names
            .iter()
            .map(|n| ListedFile { name: ObjectName::parse(n).unwrap(), sha256: Digest::of(n.as_bytes()), size: 0 })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let stores = dir.path().join("filestores.yaml");
        std::fs::write(&stores, "filestores:\n- base: /src\n  src: true\n- base: /dst\n").unwrap();
        let manifest = dir.path().join("files.yaml");
        std::fs::write(&manifest, render(&files)).unwrap();
        let loaded = ferry_manifest::load_files(&stores, &manifest).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<_> = loaded.files.iter().map(|f| (f.name.as_str().to_string(), f.sha256.clone())).collect();
        let want: Vec<_> = files.iter().map(|f| (f.name.as_str().to_string(), f.sha256.clone())).collect();
        assert_eq!(got, want);
    }
}
