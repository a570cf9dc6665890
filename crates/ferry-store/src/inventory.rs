//! Mirror inventories: the list of what a store holds, which `ferry serve` trusts so that it never
//! probes a mirror per request (docs/serve.md, "Inventory format").
//!
//! Plain text, one entry a line: `sha256:<64 lowercase hex>` for a blob, `/path` for a release
//! file, either followed by its size in bytes when known (`sha256:<hex> 31457280`; lines
//! without one, as older inventories have, still read). Whole-line `#` comments and blank lines are ignored, surrounding whitespace too; anything
//! else is an error naming the source and the line, and so is a line longer than
//! [`Inventory::MAX_LINE`] or a text larger than [`Inventory::MAX_BYTES`]. Rendering is sorted (blobs, then paths), so the
//! same contents always give the same bytes and two inventories diff cleanly.

use std::collections::BTreeMap;

use bytes::Bytes;
use ferry_oci::{Digest, FilePath};

use crate::name::ObjectName;
use crate::store::Store;
use crate::StoreError;

/// Why an inventory could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InventoryError {
    /// One line is malformed or too long.
    #[error("{origin}:{line}: {message}")]
    Line {
        /// Where the text came from (a file, or a store's URL and object name).
        origin: String,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The text as a whole is refused: too large, or not UTF-8.
    #[error("{origin}: {message}")]
    Source {
        /// Where the text came from (a file, or a store's URL and object name).
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A set of blob digests and release-file paths, each with its size in bytes when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    blobs: BTreeMap<Digest, Option<u64>>,
    files: BTreeMap<String, Option<u64>>,
}

impl Inventory {
    /// Largest inventory text read: some 3.7 million digests (a 1,000,000-entry inventory is
    /// 72 MB). What is larger is not an inventory Ferry wrote, and is refused before it is parsed.
    pub const MAX_BYTES: usize = 256 << 20;
    /// Longest line: room for a `/path` entry of the longest path ([`ferry_oci::MAX_PATH`]) with blanks
    /// around it, or a comment.
    pub const MAX_LINE: usize = 4096;

    /// An empty inventory.
    pub fn new() -> Inventory {
        Inventory::default()
    }

    /// Checks inventory text against [`Inventory::MAX_BYTES`] and [`Inventory::MAX_LINE`], in one
    /// linear pass, before it is parsed (by this crate or by `ferry serve`'s own parser).
    pub fn check_bounds(text: &str, origin: &str) -> Result<(), InventoryError> {
        Inventory::check_size(text.len(), origin)?;
        match text.lines().enumerate().find(|(_, line)| line.len() > Inventory::MAX_LINE) {
            Some((index, line)) => Err(InventoryError::Line {
                origin: origin.to_string(),
                line: index + 1,
                message: format!("line of {} bytes is longer than the limit of {}", line.len(), Inventory::MAX_LINE),
            }),
            None => Ok(()),
        }
    }

    /// Refuses `len` bytes of inventory when that is more than [`Inventory::MAX_BYTES`]; for readers
    /// that stop one byte past the limit rather than read a large object whole.
    pub fn check_size(len: usize, origin: &str) -> Result<(), InventoryError> {
        if len > Inventory::MAX_BYTES {
            let message = format!("larger than {} MiB, the limit for an inventory", Inventory::MAX_BYTES >> 20);
            return Err(InventoryError::Source { origin: origin.to_string(), message });
        }
        Ok(())
    }

    /// Parses inventory text; `origin` names the source in errors (`<origin>:<line>: <problem>`).
    pub fn parse(text: &str, origin: &str) -> Result<Inventory, InventoryError> {
        let mut inventory = Inventory::new();
        parse_sized_entries(text, origin, |entry, size| match entry {
            Entry::Blob(digest) => merge(&mut inventory.blobs, digest, size),
            Entry::File(path) => merge(&mut inventory.files, path.into(), size),
        })?;
        Ok(inventory)
    }

    /// The text form: blobs then paths, each sorted, one a line with its size after a space
    /// when known, newline-terminated.
    pub fn render(&self) -> String {
        let mut text =
            String::with_capacity(self.blobs.len() * 84 + self.files.keys().map(|f| f.len() + 13).sum::<usize>());
        let entries =
            self.blobs.iter().map(|(d, s)| (d.as_str(), s)).chain(self.files.iter().map(|(p, s)| (p.as_str(), s)));
        for (entry, size) in entries {
            text.push_str(entry);
            if let Some(size) = size {
                text.push(' ');
                text.push_str(&size.to_string());
            }
            text.push('\n');
        }
        text
    }

    /// Reads and parses the inventory stored at `name` in `store`; `None` when there is none.
    pub async fn read(store: &Store, name: &ObjectName) -> Result<Option<Inventory>, InventoryError> {
        let Some(bytes) = store.read_small(name, Inventory::MAX_BYTES as u64).await? else {
            return Ok(None);
        };
        let origin = format!("{} {name}", store.url());
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| InventoryError::Source { origin: origin.clone(), message: format!("not UTF-8 text: {e}") })?;
        Inventory::parse(text, &origin).map(Some)
    }

    /// Replaces the inventory at `name` in `store` in one atomic write: readers see the old
    /// inventory or the new one, never a mix.
    pub async fn write(&self, store: &Store, name: &ObjectName) -> Result<(), StoreError> {
        store.put_small(name, Bytes::from(self.render())).await
    }

    /// Adds a blob digest (keeping its size if it was listed with one); `false` when it was
    /// already there.
    pub fn insert_blob(&mut self, digest: Digest) -> bool {
        self.insert_blob_sized(digest, None)
    }

    /// Adds a blob digest with its size when known (a known size replaces the listed one, an
    /// unknown one keeps it); `false` when the digest was already there.
    pub fn insert_blob_sized(&mut self, digest: Digest, size: Option<u64>) -> bool {
        let new = !self.blobs.contains_key(&digest);
        merge(&mut self.blobs, digest, size);
        new
    }

    /// Removes a blob digest; `false` when it was not there.
    pub fn remove_blob(&mut self, digest: &Digest) -> bool {
        self.blobs.remove(digest).is_some()
    }

    /// Whether the blob `digest` is listed.
    pub fn contains_blob(&self, digest: &Digest) -> bool {
        self.blobs.contains_key(digest)
    }

    /// The listed size of blob `digest`: `None` when it is not listed or listed without one.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        self.blobs.get(digest).copied().flatten()
    }

    /// Adds a release-file path (`/release/v1.30.0/bin/linux/amd64/kubectl`). Refused unless
    /// `ferry serve` would accept it as a request path: otherwise the whole inventory, and with it
    /// serve's configuration, would fail to load. `Ok(false)` when it was already there.
    pub fn insert_file(&mut self, path: &str) -> Result<bool, String> {
        self.insert_file_sized(path, None)
    }

    /// [`Inventory::insert_file`] with the file's size when known (as for
    /// [`Inventory::insert_blob_sized`]).
    pub fn insert_file_sized(&mut self, path: &str, size: Option<u64>) -> Result<bool, String> {
        let path: String = FilePath::parse(path)?.into();
        let new = !self.files.contains_key(&path);
        merge(&mut self.files, path, size);
        Ok(new)
    }

    /// Removes a release-file path; `false` when it was not there.
    pub fn remove_file(&mut self, path: &str) -> bool {
        self.files.remove(path).is_some()
    }

    /// Whether the release-file path (`/release/...`, exactly as listed) is listed.
    pub fn contains_file(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// The listed size of a release file: `None` when it is not listed or listed without one.
    pub fn file_size(&self, path: &str) -> Option<u64> {
        self.files.get(path).copied().flatten()
    }

    /// The blob digests, sorted.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        self.blobs.keys()
    }

    /// The release-file paths, sorted.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Entries listed: blobs and paths together.
    pub fn len(&self) -> usize {
        self.blobs.len() + self.files.len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.files.is_empty()
    }
}

/// Adds `key`; a known `size` replaces the listed one, an unknown one keeps it.
fn merge<K: Ord>(map: &mut BTreeMap<K, Option<u64>>, key: K, size: Option<u64>) {
    let listed = map.entry(key).or_insert(None);
    if size.is_some() {
        *listed = size;
    }
}

/// One entry of an inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A `sha256:<hex>` line: a blob.
    Blob(Digest),
    /// A `/path` line: a release file.
    File(FilePath),
}

/// The one reader of the inventory format, for this crate's [`Inventory`] and `ferry serve`'s
/// compact one alike: checks the bounds, then hands each entry to `each`, in order. Whole-line `#`
/// comments and blank lines are skipped and surrounding whitespace ignored; any other line is an
/// error naming `origin` and the line.
pub fn parse_entries(text: &str, origin: &str, mut each: impl FnMut(Entry)) -> Result<(), InventoryError> {
    parse_sized_entries(text, origin, |entry, _| each(entry))
}

/// [`parse_entries`] with each entry's size: an entry may be followed, after blanks, by its size
/// in bytes (`sha256:<hex> 31457280`, `/path 1024`), which inventories written since sizes were
/// added carry; older lines have none (`None`). Anything else after an entry is an error.
pub fn parse_sized_entries(
    text: &str,
    origin: &str,
    mut each: impl FnMut(Entry, Option<u64>),
) -> Result<(), InventoryError> {
    Inventory::check_bounds(text, origin)?;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |message: String| InventoryError::Line { origin: origin.to_string(), line: index + 1, message };
        let (line, size) = match line.split_once([' ', '\t']) {
            None => (line, None),
            Some((entry, size)) => {
                let size = size.trim_start();
                match size.parse::<u64>() {
                    Ok(n) if size.bytes().all(|b| b.is_ascii_digit()) => (entry, Some(n)),
                    _ => {
                        let shown: String = size.chars().take(80).collect();
                        return Err(fail(format!("expected a size in bytes after the entry, got {shown:?}")));
                    }
                }
            }
        };
        if line.starts_with("sha256:") {
            each(Entry::Blob(line.parse().map_err(|e: ferry_oci::DigestError| fail(e.to_string()))?), size);
        } else if line.starts_with('/') {
            each(Entry::File(FilePath::parse(line).map_err(fail)?), size);
        } else {
            let shown: String = line.chars().take(80).collect();
            return Err(fail(format!("expected \"sha256:<hex>\" or \"/path\", got {shown:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_oci::MAX_PATH;

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64)).parse().unwrap()
    }

    #[test]
    fn parses_comments_blanks_whitespace_and_duplicates() {
        let text = format!("# mirror\n\n  {}  \n/bin/kubectl\n\t{}\n{}\n   \n# end\n", d('b'), d('a'), d('b'));
        let inventory = Inventory::parse(&text, "inv.txt").unwrap();
        assert_eq!(inventory.len(), 3);
        assert!(inventory.contains_blob(&d('a')) && inventory.contains_blob(&d('b')));
        assert!(!inventory.contains_blob(&d('c')));
        assert!(inventory.contains_file("/bin/kubectl"));
        assert_eq!(Inventory::parse("", "empty").unwrap(), Inventory::new());
    }

    #[test]
    fn errors_name_the_origin_and_line() {
        let text = format!("# ok\n{}\nsha256:abc\n", d('a'));
        let e = Inventory::parse(&text, "s3://bucket/inventory.txt").unwrap_err();
        assert!(matches!(&e, InventoryError::Line { line: 3, .. }), "{e:?}");
        assert!(e.to_string().starts_with("s3://bucket/inventory.txt:3: "), "{e}");
        let long = format!("/{}", "a".repeat(MAX_PATH));
        for bad in [
            "sha512:00",
            "bin/kubectl",
            "/a/../b",
            "/a/.hidden",
            "/a b",
            "/a//b",
            "/a/",
            "/",
            "/a%2e",
            &long,
            "sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "sha256:aaaa # trailing comment",
        ] {
            let e = Inventory::parse(bad, "f").unwrap_err();
            assert!(matches!(e, InventoryError::Line { line: 1, .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes_are_read_after_an_entry_and_old_lines_have_none() {
        let text = format!("{} 31457280\n{}\n/bin/kubectl\t 1024\n/bin/old\n", d('a'), d('b'));
        let mut seen = Vec::new();
        parse_sized_entries(&text, "inv.txt", |entry, size| seen.push((entry, size))).unwrap();
        assert_eq!(seen[0], (Entry::Blob(d('a')), Some(31_457_280)));
        assert_eq!(seen[1], (Entry::Blob(d('b')), None));
        assert_eq!(seen[2], (Entry::File(FilePath::parse("/bin/kubectl").unwrap()), Some(1024)));
        assert_eq!(seen[3], (Entry::File(FilePath::parse("/bin/old").unwrap()), None));
        // The unsized reader (and so `ferry serve`) accepts sized lines alike.
        assert_eq!(Inventory::parse(&text, "inv.txt").unwrap().len(), 4);
        for bad in [format!("{} -1", d('a')), format!("{} 12 13", d('a')), format!("{} +5", d('a')), "/a 1e3".into()] {
            let e = Inventory::parse(&bad, "inv.txt").unwrap_err();
            assert!(e.to_string().starts_with("inv.txt:1: expected a size in bytes"), "{bad}: {e}");
        }
    }

    #[test]
    fn bounds_are_checked_before_parsing() {
        // A line longer than any entry can be is refused by its number, whatever it holds.
        let long = format!("{}\n# {}\n", d('a'), "x".repeat(4096));
        let e = Inventory::parse(&long, "inv.txt").unwrap_err();
        assert_eq!(e.to_string(), format!("inv.txt:2: line of {} bytes is longer than the limit of 4096", 4096 + 2));
        assert!(Inventory::parse(&format!("# {}\n", "x".repeat(4096 - 2)), "f").is_ok());

        let big = "#".repeat((256 << 20) + 1);
        let e = Inventory::parse(&big, "s3://bucket/inventory.txt").unwrap_err();
        assert_eq!(e.to_string(), "s3://bucket/inventory.txt: larger than 256 MiB, the limit for an inventory");
    }

    #[test]
    fn renders_sorted_and_round_trips() {
        let mut inventory = Inventory::new();
        inventory.insert_file("/z/file").unwrap();
        inventory.insert_blob(d('c'));
        inventory.insert_file("/a/file-1.0+x~y@z=w,v").unwrap();
        inventory.insert_blob(d('a'));
        assert!(!inventory.insert_blob(d('a')));
        assert_eq!(inventory.insert_file("/z/file"), Ok(false));
        assert!(inventory.insert_file("relative").is_err());
        let text = inventory.render();
        assert_eq!(text, format!("{}\n{}\n/a/file-1.0+x~y@z=w,v\n/z/file\n", d('a'), d('c')));
        assert_eq!(Inventory::parse(&text, "x").unwrap(), inventory);
        assert!(inventory.remove_blob(&d('c')) && inventory.remove_file("/z/file"));
        assert_eq!(inventory.blobs().collect::<Vec<_>>(), [&d('a')]);
        assert_eq!(inventory.files().collect::<Vec<_>>(), ["/a/file-1.0+x~y@z=w,v"]);
        assert_eq!(Inventory::new().render(), "");
    }

    #[test]
    fn sizes_render_after_their_entries_and_round_trip() {
        let mut inventory = Inventory::parse(&format!("{}\n{} 10\n/old\n", d('a'), d('b')), "x").unwrap();
        assert_eq!((inventory.blob_size(&d('a')), inventory.blob_size(&d('b'))), (None, Some(10)));
        assert!(!inventory.insert_blob(d('b')), "an unknown size keeps the listed one");
        assert_eq!(inventory.blob_size(&d('b')), Some(10));
        assert!(!inventory.insert_blob_sized(d('a'), Some(7)));
        assert!(inventory.insert_blob_sized(d('c'), Some(0)));
        assert_eq!(inventory.insert_file_sized("/new", Some(3)), Ok(true));
        assert_eq!(inventory.file_size("/new"), Some(3));
        assert_eq!(inventory.file_size("/old"), None);
        let text = inventory.render();
        assert_eq!(text, format!("{} 7\n{} 10\n{} 0\n/new 3\n/old\n", d('a'), d('b'), d('c')));
        assert_eq!(Inventory::parse(&text, "x").unwrap(), inventory);
    }

    #[tokio::test]
    async fn reads_and_writes_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let name = ObjectName::parse("inventory.txt").unwrap();
        assert_eq!(Inventory::read(&store, &name).await.unwrap(), None);
        let mut inventory = Inventory::new();
        inventory.insert_blob(d('f'));
        inventory.write(&store, &name).await.unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("inventory.txt")).unwrap(), format!("{}\n", d('f')));
        assert_eq!(Inventory::read(&store, &name).await.unwrap(), Some(inventory));

        store.put_small(&name, Bytes::from_static(b"sha256:1\n")).await.unwrap();
        let e = Inventory::read(&store, &name).await.unwrap_err();
        assert!(e.to_string().contains("inventory.txt:1: "), "{e}");
        store.put_small(&name, Bytes::from_static(b"\xff\n")).await.unwrap();
        let e = Inventory::read(&store, &name).await.unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }
}
