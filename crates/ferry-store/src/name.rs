//! How objects are named and shown: [`ObjectName`] itself is vocabulary (`ferry-oci`), shared with
//! the manifest reader.

pub use ferry_oci::{ObjectName, ObjectNameError};

/// How `name` in the store at `base` (a URL or path) is shown: the two joined by one `/`, so it
/// reads as the object's own URL.
pub fn object_url(base: &str, name: &str) -> String {
    format!("{}/{name}", base.strip_suffix('/').unwrap_or(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_url_joins_base_and_name_with_one_slash() {
        assert_eq!(object_url("gs://bucket/binaries/", "kops/1.16.0/x"), "gs://bucket/binaries/kops/1.16.0/x");
        assert_eq!(object_url("gs://bucket/binaries", "kops/1.16.0/x"), "gs://bucket/binaries/kops/1.16.0/x");
    }
}
