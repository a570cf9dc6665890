//! `serves` patterns: a location label (`aws:us-east-2`), a glob with `*` wildcards
//! (`gcp:europe-*`), or `*` alone. Hand-written because only `*` is needed: a `*` matches any run
//! of characters (including `:` and none at all).

use std::fmt;

/// How specific a match is; a higher tier wins (exact label before glob before `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Matched only by `*`.
    Any = 0,
    /// Matched by a glob with `*` wildcards.
    Glob = 1,
    /// Matched by the exact label.
    Exact = 2,
}

/// One parsed `serves` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// A location label, matched exactly (no `*`).
    Exact(String),
    /// Text with at least one `*` and at least one other character.
    Glob(String),
    /// `*` alone (or only `*`s): matches every client, with or without a label.
    Any,
}

impl Pattern {
    /// Accepts 1-128 characters of `[A-Za-z0-9:._/-]` and `*`.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() || text.len() > 128 {
            return Err(format!("pattern must be 1-128 characters, got {text:?}"));
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'/' | b'-' | b'*')) {
            return Err(format!("pattern {text:?} may only contain [A-Za-z0-9:._/-] and '*'"));
        }
        Ok(if text.bytes().all(|b| b == b'*') {
            Pattern::Any
        } else if text.contains('*') {
            Pattern::Glob(text.to_string())
        } else {
            Pattern::Exact(text.to_string())
        })
    }

    /// How specific a match by this pattern is.
    pub fn tier(&self) -> Tier {
        match self {
            Pattern::Exact(_) => Tier::Exact,
            Pattern::Glob(_) => Tier::Glob,
            Pattern::Any => Tier::Any,
        }
    }

    /// Whether the pattern covers a client with this label. A client without a label (its address
    /// is in no configured location) is covered only by `*`.
    pub fn matches(&self, label: Option<&str>) -> bool {
        match (self, label) {
            (Pattern::Any, _) => true,
            (_, None) => false,
            (Pattern::Exact(e), Some(l)) => e == l,
            (Pattern::Glob(g), Some(l)) => glob_match(g.as_bytes(), l.as_bytes()),
        }
    }
}

impl Pattern {
    /// The pattern as written (`*` for any run of `*`).
    pub fn as_str(&self) -> &str {
        match self {
            Pattern::Exact(s) | Pattern::Glob(s) => s,
            Pattern::Any => "*",
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(s) | Pattern::Glob(s) => f.write_str(s),
            Pattern::Any => f.write_str("*"),
        }
    }
}

/// Iterative `*`-only matcher, O(len(p) * len(s)) worst case, no recursion.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_and_matching() {
        let exact = Pattern::parse("aws:us-east-2").unwrap();
        let glob = Pattern::parse("gcp:europe-*").unwrap();
        let any = Pattern::parse("*").unwrap();
        assert_eq!((exact.tier(), glob.tier(), any.tier()), (Tier::Exact, Tier::Glob, Tier::Any));
        assert!(exact.matches(Some("aws:us-east-2")));
        assert!(!exact.matches(Some("aws:us-east-21")));
        assert!(glob.matches(Some("gcp:europe-west1")));
        assert!(glob.matches(Some("gcp:europe-")));
        assert!(!glob.matches(Some("gcp:us-east1")));
        assert!(!glob.matches(None));
        assert!(any.matches(None) && any.matches(Some("x")));
        let mid = Pattern::parse("aws:*-east-*").unwrap();
        assert!(mid.matches(Some("aws:us-east-1")));
        assert!(!mid.matches(Some("aws:us-west-1")));
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("a b").is_err());
        assert!(Pattern::parse("a?").is_err());
    }

    #[test]
    fn pathological_glob_is_fast() {
        let p = Pattern::parse(&"*a".repeat(60)).unwrap();
        assert!(!p.matches(Some(&"a".repeat(59))));
    }
}
