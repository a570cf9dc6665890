use crate::Digest;
use std::fmt;
use std::str::FromStr;

/// A tag or repository name that breaks the distribution spec's grammar; each holds the text given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Not a valid [`Tag`].
    #[error("invalid tag {0:?}: a tag is 1-128 characters of [A-Za-z0-9_.-] not starting with '.' or '-'")]
    Tag(String),
    /// Not a valid [`RepoName`].
    #[error(
        "invalid repository name {0:?}: expected lowercase path components like \"team/app\" \
         ([a-z0-9] separated by '.', '_', '__' or '-', joined by '/')"
    )]
    Repo(String),
}

/// An image tag, as the OCI distribution spec (and kpromo) allow: `^\w[\w.-]{0,127}$`, ASCII only.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

/// `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`, checked by hand: names are checked on every request
/// `ferry serve` answers, where a regex costs more than the rest of the parsing.
fn is_tag(s: &str) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    match s.as_bytes() {
        [first, rest @ ..] => {
            rest.len() < 128 && word(first) && rest.iter().all(|b| word(b) || matches!(b, b'.' | b'-'))
        }
        [] => false,
    }
}

impl Tag {
    /// The tag as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_tag(s) {
            Ok(Tag(s.to_string()))
        } else {
            Err(NameError::Tag(s.to_string()))
        }
    }
}

string_newtype!(Tag, NameError);

/// A repository path inside a registry (`team/app`), as the OCI distribution spec defines it.
/// The grammar admits no `..`, no empty segment and no leading `/`, so a `RepoName` is also safe
/// to use as a relative directory path (the `oci:` layout backend relies on that).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoName(String);

/// The distribution spec's repository grammar, checked by hand (see [`is_tag`]): components
/// joined by `/`, each `[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*`.
fn is_repo(s: &str) -> bool {
    s.split('/').all(|component| is_repo_component(component.as_bytes()))
}

fn is_repo_component(c: &[u8]) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let run = i;
        while i < c.len() && alnum(c[i]) {
            i += 1;
        }
        if i == run {
            return false;
        }
        if i == c.len() {
            return true;
        }
        match c[i] {
            b'.' => i += 1,
            b'_' => i += if c.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while c.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

impl RepoName {
    /// The repository path, components joined by `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self/child`, validated.
    pub fn join(&self, child: &RepoName) -> RepoName {
        RepoName(format!("{}/{}", self.0, child.0))
    }
}

impl FromStr for RepoName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() <= 255 && is_repo(s) {
            Ok(RepoName(s.to_string()))
        } else {
            Err(NameError::Repo(s.to_string()))
        }
    }
}

string_newtype!(RepoName, NameError);

/// What a manifest request names: a tag or a digest.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Reference {
    /// A tag, which may point at different manifests over time.
    Tag(Tag),
    /// A digest, which names exactly one manifest's bytes.
    Digest(Digest),
}

impl Reference {
    /// The tag or digest as it appears in a URL.
    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(t) => t.as_str(),
            Reference::Digest(d) => d.as_str(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Tag> for Reference {
    fn from(t: Tag) -> Self {
        Reference::Tag(t)
    }
}

impl From<Digest> for Reference {
    fn from(d: Digest) -> Self {
        Reference::Digest(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        for ok in ["v1.2.3", "latest", "_x", "sha256-abc.sig", &"a".repeat(128)] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "é", &"a".repeat(129)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad}");
        }
    }

    #[test]
    fn repos() {
        for ok in ["a", "team/app", "a-b/c.d/e__f", "k8s-staging/pause"] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "../a", "a/../b", "A", "a/./b", "a b", ".", ".."] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad}");
        }
    }

    /// The hand-written checks accept exactly what the grammar's regular expressions accept,
    /// over every string of up to 6 characters from an alphabet of the interesting bytes.
    #[test]
    fn hand_checks_match_the_grammar() {
        let tag = regex::Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").unwrap();
        let repo =
            regex::Regex::new(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
                .unwrap();
        let alphabet = ['a', '0', '.', '_', '-', '/', 'A', ':'];
        let mut strings = vec![String::new()];
        for _ in 0..6 {
            let longer: Vec<String> =
                strings.iter().flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}"))).collect();
            for s in &longer {
                assert_eq!(is_tag(s), tag.is_match(s), "tag {s:?}");
                assert_eq!(is_repo(s), repo.is_match(s), "repo {s:?}");
            }
            strings = longer;
        }
        for len in [127, 128, 129] {
            let s = "a".repeat(len);
            assert_eq!(is_tag(&s), tag.is_match(&s), "tag of {len}");
        }
    }
}
