//! What the mirrors are and hold: their names and `serves` patterns from a `ferry serve`
//! configuration, their inventories, and the sizes those inventories record
//! (`sha256:<hex> <bytes>`, `/path <bytes>`; docs/serve.md, "Inventory format").

use ferry_store::inventory::{parse_sized_entries, Entry};
use serde::Deserialize;

use crate::hash::{FxMap, FxSet};
use crate::Error;

/// One mirror as the report sees it.
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    /// Its name, as in the access log.
    pub name: String,
    /// Its `serves` patterns (labels, globs with `*`, or `"*"`); empty when only an inventory was
    /// given (then it is never the mirror a location should have used).
    pub serves: Vec<String>,
    /// Whether it has a `blobs` template (else it is never expected to hold a blob).
    pub blobs: bool,
    /// Whether it has a `files` template.
    pub files: bool,
    /// What its inventory lists (digests and paths); `None` without an inventory.
    pub holds: Option<FxSet<Box<str>>>,
}

/// How specifically a `serves` pattern matches a label: `Any` (`"*"`) < `Glob` < `Exact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// `"*"`: every client.
    Any,
    /// A pattern with `*` in it.
    Glob,
    /// The label itself.
    Exact,
}

/// Whether `pattern` matches `label` (a client without a label, `""`, only by `"*"`), and how.
pub fn matches(pattern: &str, label: &str) -> Option<Tier> {
    if pattern == "*" {
        return Some(Tier::Any);
    }
    if label.is_empty() {
        return None;
    }
    if !pattern.contains('*') {
        return (pattern == label).then_some(Tier::Exact);
    }
    glob(pattern.as_bytes(), label.as_bytes()).then_some(Tier::Glob)
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The mirrors and the object sizes their inventories record.
#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    /// The mirrors, in the configuration's order.
    pub list: Vec<Mirror>,
    sizes: FxMap<Box<str>, u64>,
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    mirrors: Vec<ConfigMirror>,
}

#[derive(Deserialize)]
struct ConfigMirror {
    name: String,
    #[serde(default)]
    blobs: Option<String>,
    #[serde(default)]
    files: Option<String>,
    #[serde(default)]
    serves: Vec<String>,
    #[serde(default)]
    inventory: Option<String>,
}

impl Mirrors {
    /// No mirror, no size.
    pub fn new() -> Mirrors {
        Mirrors::default()
    }

    /// The mirrors of a `ferry serve` configuration (`origin` names it in errors); `load` reads
    /// each mirror's `inventory` source as the configuration names it (a path relative to the
    /// configuration's folder, or a URL) and returns its text.
    pub fn from_config(
        text: &str,
        origin: &str,
        mut load: impl FnMut(&str) -> Result<String, Error>,
    ) -> Result<Mirrors, Error> {
        ferry_yaml::check(text).map_err(|e| Error::Input(format!("{origin}: {e}")))?;
        let config: Config = serde_yaml_ng::from_str(text).map_err(|e| Error::Input(format!("{origin}: {e}")))?;
        let mut mirrors = Mirrors::new();
        for m in config.mirrors {
            let mut mirror = Mirror {
                name: m.name,
                serves: m.serves,
                blobs: m.blobs.is_some(),
                files: m.files.is_some(),
                holds: None,
            };
            if let Some(source) = &m.inventory {
                let text = load(source)?;
                mirror.holds = Some(mirrors.read_inventory(&text, source)?);
            }
            mirrors.list.push(mirror);
        }
        Ok(mirrors)
    }

    /// Adds a mirror known only by its inventory (`--inventories NAME=URL`): its sizes count, and
    /// its name is listed, but no location expects it.
    pub fn add_inventory(&mut self, name: &str, text: &str, origin: &str) -> Result<(), Error> {
        let holds = self.read_inventory(text, origin)?;
        match self.list.iter_mut().find(|m| m.name == name) {
            Some(m) => m.holds = Some(holds),
            None => self.list.push(Mirror {
                name: name.into(),
                blobs: true,
                files: true,
                holds: Some(holds),
                ..Mirror::default()
            }),
        }
        Ok(())
    }

    fn read_inventory(&mut self, text: &str, origin: &str) -> Result<FxSet<Box<str>>, Error> {
        let mut holds = FxSet::default();
        parse_sized_entries(text, origin, |entry, size| {
            let key: Box<str> = match entry {
                Entry::Blob(digest) => digest.as_str().into(),
                Entry::File(path) => String::from(path).into(),
            };
            if let Some(size) = size {
                self.sizes.insert(key.clone(), size);
            }
            holds.insert(key);
        })
        .map_err(|e| Error::Input(e.to_string()))?;
        Ok(holds)
    }

    /// Adds `other`'s mirrors and sizes to these.
    pub fn merge(&mut self, other: Mirrors) {
        self.list.extend(other.list);
        self.sizes.extend(other.sizes);
    }

    /// Records a size (for tests and for sizes known from elsewhere).
    pub fn set_size(&mut self, key: &str, bytes: u64) {
        self.sizes.insert(key.into(), bytes);
    }

    /// The size of a blob (`sha256:<hex>`) or file (`/path`), when an inventory recorded it.
    pub fn size(&self, key: &str) -> Option<u64> {
        self.sizes.get(key).copied()
    }

    /// The mirrors that should serve `label` for this kind of object: those whose `serves`
    /// matches it most specifically (as `ferry serve` chooses, before health and presence), and
    /// that tier. Empty when none matches.
    pub fn expected(&self, label: &str, blob: bool) -> (Vec<usize>, Option<Tier>) {
        let mut best: Option<Tier> = None;
        let mut found = Vec::new();
        for (i, m) in self.list.iter().enumerate() {
            if (blob && !m.blobs) || (!blob && !m.files) {
                continue;
            }
            let Some(tier) = m.serves.iter().filter_map(|p| matches(p, label)).max() else {
                continue;
            };
            match best {
                Some(b) if tier < b => {}
                Some(b) if tier == b => found.push(i),
                _ => {
                    best = Some(tier);
                    found = vec![i];
                }
            }
        }
        (found, best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_ferry_serve_matches_them() {
        assert_eq!(matches("*", ""), Some(Tier::Any));
        assert_eq!(matches("aws:us-east-2", "aws:us-east-2"), Some(Tier::Exact));
        assert_eq!(matches("aws:*", "aws:us-east-2"), Some(Tier::Glob));
        assert_eq!(matches("gcp:europe-*1", "gcp:europe-west1"), Some(Tier::Glob));
        assert_eq!(matches("gcp:europe-*1", "gcp:europe-west2"), None);
        assert_eq!(matches("aws:*", ""), None);
    }

    #[test]
    fn reads_a_configuration_and_sized_inventories() {
        let d = format!("sha256:{}", "a".repeat(64));
        let config = "upstream: {registry: https://r.example}\nmirrors:\n  - {name: east, blobs: 'https://e/{digest}', serves: ['aws:us-east-*'], inventory: east.txt}\n  - {name: all, files: 'https://a/{path}', serves: ['*']}\n";
        let mirrors = Mirrors::from_config(config, "ferry.yaml", |source| {
            assert_eq!(source, "east.txt");
            Ok(format!("# sizes\n{d} 1000\n/old/file\n"))
        })
        .unwrap();
        assert_eq!(mirrors.size(&d), Some(1000));
        assert_eq!(mirrors.size("/old/file"), None);
        assert_eq!(mirrors.expected("aws:us-east-2", true), (vec![0], Some(Tier::Glob)));
        assert_eq!(mirrors.expected("aws:us-east-2", false), (vec![1], Some(Tier::Any)));
        assert_eq!(mirrors.expected("gcp:x", true), (vec![], None));
        assert!(mirrors.list[0].holds.as_ref().unwrap().contains(d.as_str()));
    }
}
