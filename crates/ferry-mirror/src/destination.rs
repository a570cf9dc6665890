//! A mirror destination: the store that holds the blobs and where its inventory lives.

use ferry_oci::Digest;
use ferry_store::{ObjectName, Store, StoreError};

/// Default inventory name, at the base of the blob store (beside the `sha256:<hex>` objects).
pub const DEFAULT_INVENTORY: &str = "inventory.txt";

/// One `--to`: blobs at `<store>/sha256:<hex>`, and the inventory that lists them.
#[derive(Clone, Debug)]
pub struct Destination {
    /// The store the blobs go into, each at `sha256:<hex>`.
    pub blobs: Store,
    /// The store holding the inventory: `blobs` itself unless `--inventory` names another.
    pub inventory_store: Store,
    /// The inventory's object name in `inventory_store`.
    pub inventory_name: ObjectName,
    /// How the inventory is shown to users: the `--inventory` URL, or `<to>/inventory.txt`.
    pub inventory_url: String,
}

impl Destination {
    /// Opens the blob store `to` and the inventory at `inventory` (a store URL or path naming the
    /// inventory object itself; `None` for `inventory.txt` at the base of `to`). `settings`
    /// override the environment's store settings (see [`Store::open_with`]).
    pub fn open(to: &str, inventory: Option<&str>, settings: &[(String, String)]) -> Result<Destination, StoreError> {
        let blobs = Store::open_with(to, settings)?;
        let Some(inventory) = inventory else {
            let inventory_url = format!("{}/{DEFAULT_INVENTORY}", to.trim_end_matches('/'));
            let inventory_name = ObjectName::parse(DEFAULT_INVENTORY).expect("a valid name");
            return Ok(Destination { inventory_store: blobs.clone(), blobs, inventory_name, inventory_url });
        };
        let (parent, name) = split_object_url(inventory).ok_or_else(|| StoreError::Url {
            url: inventory.to_string(),
            message: "names no object (ends in /)".into(),
        })?;
        let inventory_name = ObjectName::parse(name)
            .map_err(|e| StoreError::Url { url: inventory.to_string(), message: e.to_string() })?;
        Ok(Destination {
            blobs,
            inventory_store: Store::open_with(parent, settings)?,
            inventory_name,
            inventory_url: inventory.to_string(),
        })
    }

    /// Where a blob lives in the store: `sha256:<hex>`, the layout registry.k8s.io's mirror
    /// buckets use.
    pub fn blob_name(digest: &Digest) -> ObjectName {
        ObjectName::parse(digest.as_str()).expect("a digest is a valid object name")
    }
}

/// `s3://bucket/dir/inventory.txt` → (`s3://bucket/dir/`, `inventory.txt`); the same for local
/// paths. `None` when the URL ends in `/` or has no last segment.
fn split_object_url(url: &str) -> Option<(&str, &str)> {
    let cut = url.rfind('/');
    let (parent, name) = match cut {
        Some(i) => (&url[..=i], &url[i + 1..]),
        // A bare file name: the current directory.
        None => (".", url),
    };
    // `s3://bucket` has no object part: the last segment is the bucket.
    if name.is_empty() || parent.ends_with("://") {
        return None;
    }
    Some((parent, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_urls_split_into_store_and_object() {
        assert_eq!(split_object_url("s3://b/dir/inv.txt"), Some(("s3://b/dir/", "inv.txt")));
        assert_eq!(split_object_url("s3://b/inv.txt"), Some(("s3://b/", "inv.txt")));
        assert_eq!(split_object_url("/tmp/m/inv.txt"), Some(("/tmp/m/", "inv.txt")));
        assert_eq!(split_object_url("inv.txt"), Some((".", "inv.txt")));
        assert_eq!(split_object_url("s3://bucket"), None);
        assert_eq!(split_object_url("s3://b/dir/"), None);
    }

    #[test]
    fn default_inventory_sits_at_the_base_of_the_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("m1");
        let d = Destination::open(to.to_str().unwrap(), None, &[]).unwrap();
        assert_eq!(d.inventory_name.as_str(), "inventory.txt");
        assert_eq!(d.inventory_url, format!("{}/inventory.txt", to.display()));
        let e = Destination::open(to.to_str().unwrap(), Some("s3://bucket/"), &[]).unwrap_err();
        assert!(e.to_string().contains("names no object"), "{e}");
        let inventory = dir.path().join("elsewhere/mirror-1.txt");
        let d = Destination::open(to.to_str().unwrap(), Some(inventory.to_str().unwrap()), &[]).unwrap();
        assert_eq!(d.inventory_name.as_str(), "mirror-1.txt");
    }
}
