//! The YAML shapes kpromo reads (`gopkg.in/yaml.v2` `UnmarshalStrict` into its Go structs), as serde
//! types that validate every scalar while deserializing.
//!
//! Values are checked inside the deserializer's `deserialize_str` call (see [`Parsed`]), never
//! after it returns: serde_yaml_ng stamps an error with the position of the event being
//! deserialized when the error is raised, so this way a bad digest, tag, name or registry is
//! reported at its own line rather than at the start of the enclosing mapping.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use ferry_oci::{Digest, RegistryAddress, RepoName, Tag};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
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
    pub name: Parsed<RegistryAddress>,
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
    pub name: Parsed<RepoName>,
    #[serde(default)]
    pub dmap: Dmap,
}

/// A `T` read from a YAML scalar through `FromStr`. Like yaml.v2 decoding into a Go string, any
/// scalar is taken as its text (`1.10` is the tag "1.10", not a number).
pub(crate) struct Parsed<T>(pub T);

impl<'de, T: FromStr<Err: fmt::Display>> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: FromStr<Err: fmt::Display>> Visitor<'_> for V<T> {
            type Value = Parsed<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                s.parse().map(Parsed).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(V(PhantomData))
    }
}

/// An image's `dmap`: digest → tags. A digest listed twice is an error (yaml.v2's strict mode
/// rejects duplicate keys; serde's maps would silently keep the last). A missing or null tag list
/// means no tags, as it does for kpromo.
#[derive(Default)]
pub(crate) struct Dmap(pub BTreeMap<Digest, Vec<Tag>>);

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
                let mut dmap = BTreeMap::new();
                while let Some(digest) = map.next_key_seed(NewDigest(&dmap))? {
                    let tags: Option<Vec<Parsed<Tag>>> = map.next_value()?;
                    dmap.insert(digest, tags.into_iter().flatten().map(|t| t.0).collect());
                }
                Ok(Dmap(dmap))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A dmap key, rejected (at its own line) if it is not a digest or is already in the map.
struct NewDigest<'a>(&'a BTreeMap<Digest, Vec<Tag>>);

impl<'de> DeserializeSeed<'de> for NewDigest<'_> {
    type Value = Digest;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Digest, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for NewDigest<'_> {
    type Value = Digest;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a digest")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Digest, E> {
        let digest: Digest = s.parse().map_err(E::custom)?;
        if self.0.contains_key(&digest) {
            return Err(E::custom(format_args!("digest {digest} is listed twice in this dmap")));
        }
        Ok(digest)
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
