//! Mirror inventories: what a mirror is trusted to hold, so it needs no probe per request.
//!
//! Format: plain text, one entry a line: `sha256:<64 hex>` for a blob, `/path` for a release file,
//! each optionally followed by its size in bytes, read by the one parser of the format,
//! `ferry_store::inventory::parse_sized_entries`.
//!
//! Blob digests are stored as raw 32-byte values in a sorted boxed slice (binary search): exactly
//! 32 bytes an entry, so a 1,000,000-entry inventory costs 32 MB (a `HashSet<[u8; 32]>` would cost
//! about twice that, and ~4x transiently while it grows), and a lookup is ~20 comparisons. Sizes
//! (for the `ferry_serve_redirected_bytes` metric) sit in a parallel slice, 8 bytes an entry, and
//! only when the inventory records any.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use ferry_oci::Digest;
use ferry_store::inventory::Entry;

use crate::request::FilePath;

/// Why an inventory was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InventoryError {
    /// One line is not a valid entry (or is too long).
    #[error("{file}:{line}: {message}")]
    Line {
        /// The inventory's source, as configured.
        file: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// The inventory as a whole: it cannot be read or fetched, or it is too large.
    #[error("{file}: {message}")]
    Source {
        /// The inventory's source, as configured.
        file: String,
        /// What went wrong.
        message: String,
    },
}

/// What one mirror is trusted to hold: a set of blob digests and a set of file paths, with their
/// sizes where the inventory records them.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    blobs: Box<[[u8; 32]]>,
    /// `blob_sizes[i]` is the size of `blobs[i]` (0: not recorded); empty when none is.
    blob_sizes: Box<[u64]>,
    /// Each path with its size (0: not recorded).
    files: HashMap<Box<str>, u64>,
}

impl Inventory {
    /// Parses inventory text; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Inventory, InventoryError> {
        let mut blobs: Vec<([u8; 32], u64)> = Vec::new();
        let mut files = HashMap::new();
        ferry_store::inventory::parse_sized_entries(text, origin, |entry, size| match entry {
            Entry::Blob(digest) => blobs.push((decode_hex(digest.hex()), size.unwrap_or(0))),
            Entry::File(path) => {
                let listed = files.entry(Box::from(path.as_str())).or_insert(0);
                *listed = size.unwrap_or(*listed);
            }
        })
        .map_err(|e| from_store(e, origin))?;
        // A digest listed twice keeps the larger size: one with a size over one without.
        blobs.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        blobs.dedup_by_key(|b| b.0);
        files.shrink_to_fit();
        let blob_sizes =
            if blobs.iter().any(|b| b.1 > 0) { blobs.iter().map(|b| b.1).collect() } else { Box::default() };
        Ok(Inventory { blobs: blobs.into_iter().map(|b| b.0).collect(), blob_sizes, files })
    }

    /// Reads an inventory from `source`: a local path (relative ones are resolved against
    /// `base_dir`, the configuration file's folder) or a `file://` URL. Remote sources are fetched
    /// by [`crate::remote_inventory::RemoteInventories`] instead.
    pub fn load(source: &str, base_dir: &Path) -> Result<Inventory, InventoryError> {
        let path = resolve(source, base_dir)?;
        let fail = |message: String| InventoryError::Source { file: source.to_string(), message };
        // Never more than the limit plus one byte is read: enough to know it is too large.
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|file| file.take(ferry_store::Inventory::MAX_BYTES as u64 + 1).read_to_end(&mut bytes))
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        ferry_store::Inventory::check_size(bytes.len(), source).map_err(|e| from_store(e, source))?;
        let text =
            String::from_utf8(bytes).map_err(|_| fail("cannot read: stream did not contain valid UTF-8".into()))?;
        Inventory::parse(&text, source)
    }

    /// Whether the inventory lists this blob.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blobs.binary_search(&decode_hex(digest.hex())).is_ok()
    }

    /// Whether the inventory lists this file path.
    pub fn has_file(&self, path: &FilePath) -> bool {
        self.files.contains_key(path.as_str())
    }

    /// The size this inventory records for blob `digest`: `None` when it lists it without one
    /// or not at all.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        if self.blob_sizes.is_empty() {
            return None; // no sizes recorded: not worth decoding the digest per request
        }
        let i = self.blobs.binary_search(&decode_hex(digest.hex())).ok()?;
        self.blob_sizes.get(i).copied().filter(|&size| size > 0)
    }

    /// The size this inventory records for file `path` (as [`Inventory::blob_size`]).
    pub fn file_size(&self, path: &FilePath) -> Option<u64> {
        self.files.get(path.as_str()).copied().filter(|&size| size > 0)
    }

    /// Number of distinct blobs listed.
    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Number of distinct files listed.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }
}

/// The same error in this crate's terms (the store's bounds are shared; see `ferry_store::Inventory`).
fn from_store(error: ferry_store::InventoryError, origin: &str) -> InventoryError {
    match error {
        ferry_store::InventoryError::Line { origin, line, message } => {
            InventoryError::Line { file: origin, line, message }
        }
        ferry_store::InventoryError::Source { origin, message } => InventoryError::Source { file: origin, message },
        other => InventoryError::Source { file: origin.to_string(), message: other.to_string() },
    }
}

/// Where an inventory source lives on disk (also used to watch it for changes).
pub fn resolve(source: &str, base_dir: &Path) -> Result<PathBuf, InventoryError> {
    if let Some(rest) = source.strip_prefix("file://") {
        let url = url::Url::parse(source)
            .map_err(|e| InventoryError::Source { file: source.to_string(), message: format!("bad file URL: {e}") })?;
        return url.to_file_path().map_err(|()| InventoryError::Source {
            file: source.to_string(),
            message: format!("file URL must be absolute, got {rest:?}"),
        });
    }
    if let Some((scheme, _)) = source.split_once("://") {
        return Err(InventoryError::Source {
            file: source.to_string(),
            message: format!("{scheme}:// inventories are fetched by the server, not read from disk"),
        });
    }
    let path = Path::new(source);
    Ok(if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) })
}

/// The 32 bytes of a digest's 64 hex digits, by table (every blob request decodes once per
/// inventory it asks: a branch per digit cost about 500 instructions a decode).
fn decode_hex(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        *o = (NIBBLE[pair[0] as usize] << 4) | NIBBLE[pair[1] as usize];
    }
    out
}

/// Each hex digit's value (`Digest` only admits lowercase hex; anything else is 0, never read).
const NIBBLE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn parses_and_answers_membership() {
        let text = format!("# inventory\n\n{}\n  {}  \n/bin/kubectl\n{}\n", d('a'), d('b'), d('a'));
        let inv = Inventory::parse(&text, "inv.txt").unwrap();
        assert_eq!(inv.blob_count(), 2);
        assert_eq!(inv.file_count(), 1);
        assert!(inv.has_blob(&d('a').parse().unwrap()));
        assert!(inv.has_blob(&d('b').parse().unwrap()));
        assert!(!inv.has_blob(&d('c').parse().unwrap()));
        assert!(inv.has_file(&FilePath::parse("/bin/kubectl").unwrap()));
        assert!(!inv.has_file(&FilePath::parse("/bin/kubeadm").unwrap()));
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let text = format!("{}\nsha256:abc\n", d('a'));
        let e = Inventory::parse(&text, "s3inv.txt").unwrap_err();
        assert!(matches!(&e, InventoryError::Line { file, line: 2, .. } if file == "s3inv.txt"), "{e}");
        assert!(e.to_string().starts_with("s3inv.txt:2: "), "{e}");
        for bad in ["sha512:00", "bin/kubectl", "/a/../b", "/a b"] {
            let e = Inventory::parse(bad, "f").unwrap_err();
            assert!(matches!(e, InventoryError::Line { line: 1, .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn bounds_are_checked_before_parsing() {
        let long = format!("{}\n/{}\n", d('a'), "a".repeat(4096));
        let e = Inventory::parse(&long, "inv.txt").unwrap_err();
        assert!(matches!(&e, InventoryError::Line { line: 2, .. }), "{e}");
        assert!(e.to_string().starts_with("inv.txt:2: line of 4097 bytes is longer than the limit of 4096"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.txt");
        std::fs::write(&big, "#".repeat((256 << 20) + 1)).unwrap();
        let e = Inventory::load("big.txt", dir.path()).unwrap_err();
        assert_eq!(e.to_string(), "big.txt: larger than 256 MiB, the limit for an inventory");
    }

    #[test]
    fn sources() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inv.txt"), format!("{}\n", d('e'))).unwrap();
        let rel = Inventory::load("inv.txt", dir.path()).unwrap();
        assert_eq!(rel.blob_count(), 1);
        let url = url::Url::from_file_path(dir.path().join("inv.txt")).unwrap();
        assert_eq!(Inventory::load(url.as_str(), Path::new("/nonexistent")).unwrap().blob_count(), 1);
        let e = Inventory::load("s3://bucket/inv.txt", dir.path()).unwrap_err();
        assert!(e.to_string().contains("fetched by the server"), "{e}");
        let e = Inventory::load("missing.txt", dir.path()).unwrap_err();
        assert!(e.to_string().starts_with("missing.txt: cannot read"), "{e}");
    }

    #[test]
    fn sizes_are_kept_where_recorded() {
        let text = format!("{} 300\n{}\n{} 7\n/a/b 42\n/c\n", d('a'), d('b'), d('a'));
        let inv = Inventory::parse(&text, "sized").unwrap();
        assert_eq!(inv.blob_count(), 2);
        assert_eq!(inv.blob_size(&d('a').parse().unwrap()), Some(300), "the larger of two listings");
        assert_eq!(inv.blob_size(&d('b').parse().unwrap()), None);
        assert_eq!(inv.blob_size(&d('c').parse().unwrap()), None);
        let path = |p: &str| FilePath::parse(p).unwrap();
        assert_eq!(inv.file_size(&path("/a/b")), Some(42));
        assert_eq!(inv.file_size(&path("/c")), None);
        assert!(inv.has_file(&path("/c")));
    }

    #[test]
    fn million_entries_fit_the_budget() {
        // 1,000,000 digests: the blob table itself is exactly 32 MB.
        let mut text = String::with_capacity(72 * 1_000_000);
        for i in 0u64..1_000_000 {
            text.push_str(&format!("sha256:{:064x}\n", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        }
        let inv = Inventory::parse(&text, "big").unwrap();
        assert_eq!(inv.blob_count(), 1_000_000);
        assert_eq!(std::mem::size_of_val(&*inv.blobs), 32_000_000);
        assert_eq!(inv.blob_sizes.len(), 0, "no sizes recorded, none kept");
        assert!(inv.has_blob(&format!("sha256:{:064x}", 7u64.wrapping_mul(0x9E37_79B9_7F4A_7C15)).parse().unwrap()));
    }
}
