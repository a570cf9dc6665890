//! The YAML shapes kpromo reads (`gopkg.in/yaml.v2` `UnmarshalStrict` into its Go structs), as serde
//! types.
//!
//! The structure (fields, types, unknown fields) is enforced by serde and stops the file at the
//! first problem. Values — digests, tags, names, registries — are parsed as they are read but a
//! bad one does not stop the reading: it is kept as a [`Checked`] holding why, so that the loader
//! can report every bad value of a file, each at the line of its own node (from `lines.rs`).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use ferry_oci::{Digest, RegistryAddress, RepoName, Tag};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// `promoter-manifest.yaml` of a thin directory.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ThinFile {
    #[serde(default, deserialize_with = "null_as_default")]
    pub registries: Vec<RegistryEntry>,
    /// Deprecated in kpromo, where it does nothing; accepted so existing files still load.
    #[serde(rename = "imagesPath", default)]
    _images_path: Option<String>,
}

/// A plain manifest: registries and images in one file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlainFile {
    #[serde(default, deserialize_with = "null_as_default")]
    pub registries: Vec<RegistryEntry>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub images: Vec<ImageEntry>,
    /// Not in kpromo's plain schema, but harmless and accepted for symmetry with thin manifests.
    #[serde(rename = "imagesPath", default)]
    _images_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistryEntry {
    pub name: Checked<RegistryAddress>,
    #[serde(default, deserialize_with = "yaml11_bool")]
    pub src: bool,
    /// kpromo impersonates this account for GCP; Ferry authenticates through the usual Docker
    /// credentials instead, so the account is accepted and ignored.
    #[serde(rename = "service-account", default)]
    _service_account: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImageEntry {
    pub name: Checked<RepoName>,
    #[serde(default)]
    pub dmap: Dmap,
}

/// A `T` read from a YAML scalar through `FromStr`, or why it is not one. Like yaml.v2 decoding
/// into a Go string, any scalar is taken as its text (`1.10` is the tag "1.10", not a number).
pub(crate) struct Checked<T> {
    /// The scalar as written, for messages.
    pub text: String,
    pub value: Result<T, String>,
}

impl<'de, T: FromStr<Err: fmt::Display>> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: FromStr<Err: fmt::Display>> Visitor<'_> for V<T> {
            type Value = Checked<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Checked { text: s.to_string(), value: s.parse().map_err(|e: T::Err| e.to_string()) })
            }
        }
        deserializer.deserialize_str(V(PhantomData))
    }
}

/// An image's `dmap`: digest → tags, in file order, checked by the loader (a digest listed twice
/// is an error there: yaml.v2's strict mode rejects duplicate keys). A missing or null tag list
/// means no tags, as it does for kpromo.
#[derive(Default)]
pub(crate) struct Dmap(pub Vec<(Checked<Digest>, Vec<Checked<Tag>>)>);

impl<'de> Deserialize<'de> for Dmap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Dmap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of digests to lists of tags")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Dmap, E> {
                Ok(Dmap::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dmap, A::Error> {
                let mut dmap = Vec::new();
                while let Some(digest) = map.next_key()? {
                    let tags: Option<Vec<Checked<Tag>>> = map.next_value()?;
                    dmap.push((digest, tags.unwrap_or_default()));
                }
                Ok(Dmap(dmap))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// yaml.v2 decodes `key:` with no value (null) into an empty list; serde would reject it.
pub(crate) fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A boolean as yaml.v2 (YAML 1.1) reads one into a Go bool: `yes`, `on`, `y` and the like count,
/// and an empty value is `false`.
pub(crate) fn yaml11_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("true or false")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<bool, E> {
            match s {
                "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "y" | "Y" | "on" | "On" | "ON" => Ok(true),
                "false" | "False" | "FALSE" | "no" | "No" | "NO" | "n" | "N" | "off" | "Off" | "OFF" => Ok(false),
                "" | "~" | "null" | "Null" | "NULL" => Ok(false),
                _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
            }
        }
    }
    d.deserialize_str(V)
}
