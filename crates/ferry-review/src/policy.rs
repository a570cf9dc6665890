//! `policy.yaml`: a project's review rules.

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Finding;

/// The policy's file name, in the manifests directory.
pub const POLICY_FILE: &str = "policy.yaml";

/// The rules a change to the manifests is held to. The default (no `policy.yaml`) is Ferry's
/// behaviour without one: no removals, any source, no platform or size rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Whether a change may remove a digest, a tag, an image, a file, a destination or a project.
    #[serde(default)]
    pub allow_removals: bool,
    /// Platforms (`os/arch` or `os/arch/variant`) every added image index must hold; checked
    /// online only.
    #[serde(default)]
    pub required_platforms: Vec<Platform>,
    /// The largest an added image may be, in bytes; checked online only.
    #[serde(default)]
    pub max_image_bytes: Option<u64>,
    /// Registry prefixes and store URLs that may appear as a source; absent means any.
    #[serde(default)]
    pub allowed_sources: Option<Vec<String>>,
    /// Source images must be signed (cosign's format) by one of these keys to be promoted.
    #[serde(default)]
    pub require_signatures: Option<RequireSignatures>,
}

/// `require_signatures:` of the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequireSignatures {
    /// PEM public keys (cosign's `cosign.pub` format), relative to the policy file's directory.
    pub keys: Vec<std::path::PathBuf>,
}

/// `os/arch` or `os/arch/variant`, each part lower-case letters, digits, `_` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Platform(String);

/// Checked in the visitor, so that the error has the line of the entry rather than of its list.
impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Platform;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a platform like linux/amd64")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Platform, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(V)
    }
}

impl Platform {
    /// The platform as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let part_ok = |p: &&str| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        if (2..=3).contains(&parts.len()) && parts.iter().all(part_ok) {
            Ok(Platform(s.to_string()))
        } else {
            let shown: String = s.chars().take(80).collect();
            Err(format!("invalid platform {shown:?}: expected os/arch or os/arch/variant, like linux/amd64"))
        }
    }
}

impl From<Platform> for String {
    fn from(p: Platform) -> String {
        p.0
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Policy {
    /// Whether `source` (a registry address or a store URL, as written in a manifest) is one of
    /// the `allowed_sources`: it starts with an entry, or is an entry without its trailing `/`.
    pub fn allows_source(&self, source: &str) -> bool {
        self.allowed_sources.as_ref().is_none_or(|allowed| {
            allowed.iter().any(|p| source.starts_with(p.as_str()) || source == p.trim_end_matches('/'))
        })
    }
}

/// Reads `dir/policy.yaml`: `Ok(None)` when there is none, an error at its file and line when it
/// cannot be read or has a field or value Ferry does not know.
pub fn load_policy(dir: &Path) -> Result<Option<Policy>, Finding> {
    let path = dir.join(POLICY_FILE);
    let fail = |line: Option<usize>, message: String| Finding { path: path.clone(), line, message };
    let text = match ferry_yaml::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(None, format!("cannot read: {e}"))),
    };
    ferry_yaml::check(&text).map_err(|e| fail(e.line, e.message))?;
    match serde_yaml_ng::from_str::<Option<Policy>>(&text) {
        Ok(policy) => Ok(Some(policy.unwrap_or_default())),
        Err(e) => {
            let mut message = e.to_string();
            let location = e.location();
            if let Some(loc) = &location {
                let suffix = format!(" at line {} column {}", loc.line(), loc.column());
                if let Some(i) = message.find(&suffix) {
                    message.replace_range(i..i + suffix.len(), "");
                }
            }
            Err(fail(location.map(|l| l.line()), message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Policy>, Finding> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(POLICY_FILE), text).unwrap();
        load_policy(dir.path()).map_err(|mut f| {
            f.path = POLICY_FILE.into();
            f
        })
    }

    #[test]
    fn reads_every_field() {
        let policy = parse(
            "allow_removals: true\nrequired_platforms: [linux/amd64, linux/arm/v7]\nmax_image_bytes: 1000\nallowed_sources: [gcr.io/k8s-staging-]\n",
        )
        .unwrap()
        .unwrap();
        assert!(policy.allow_removals);
        assert_eq!(policy.required_platforms.len(), 2);
        assert_eq!(policy.max_image_bytes, Some(1000));
        assert!(policy.allows_source("gcr.io/k8s-staging-foo"));
        assert!(!policy.allows_source("docker.io/evil"));
        let policy = parse("require_signatures:\n  keys: [keys/release.pub]\n").unwrap().unwrap();
        assert_eq!(policy.require_signatures.unwrap().keys, vec![std::path::PathBuf::from("keys/release.pub")]);
        assert_eq!(parse("require_signatures: {key: x}\n").unwrap_err().line, Some(1));
    }

    #[test]
    fn absent_and_empty_are_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_policy(dir.path()).unwrap(), None);
        assert_eq!(parse("# nothing\n").unwrap(), Some(Policy::default()));
        assert!(Policy::default().allows_source("anything"));
    }

    #[test]
    fn unknown_fields_and_bad_values_name_their_line() {
        let e = parse("allow_removals: true\nallow_removal: true\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("allow_removal"), "{e}");
        let e = parse("required_platforms:\n- linux/amd64\n- linux\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("os/arch"), "{e}");
        let e = parse("max_image_bytes: lots\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn a_source_entry_matches_with_or_without_its_slash() {
        let policy = Policy { allowed_sources: Some(vec!["gs://staging/".into()]), ..Default::default() };
        assert!(policy.allows_source("gs://staging"));
        assert!(policy.allows_source("gs://staging/release"));
        assert!(!policy.allows_source("gs://staging-other"));
    }
}
