//! Audit: does production still hold what the manifests promise, and nothing else?
//!
//! Every change to production is meant to go through the promoter. An audit notices what did
//! not: it reads every destination the manifests name — never writes, never reads more than it
//! needs — and reports each difference as a [`Finding`].
//!
//! - [`images::audit`]: for each destination registry, what the image manifests promise (the
//!   edges of [`ferry_promote::edges::expand`]) against what is there: a promised tag missing,
//!   pointing at another digest (moved by hand), a promised digest missing (a deleted image), a tag
//!   no manifest mentions in a promised repository, a repository no manifest mentions under the
//!   destination (pushed by hand).
//! - [`files::audit`]: for each destination store, the files the file manifests list against what
//!   is there: missing, holding other bytes (decided as `ferry promote files` decides "already
//!   there": the recorded sha256, else a re-hash), or present but listed by no manifest.
//!
//! Findings are a growing vocabulary ([`Kind`] is `#[non_exhaustive]`): a later check (for
//! example promoted digests without a valid signature, behind [`AuditOptions`]) adds a kind and a
//! step, and nothing else changes. The [`Report`] is sorted, so the same production state gives
//! the same report.

pub mod files;
pub mod images;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ferry_store::ObjectName;
use serde::Serialize;

/// What a finding is about. Shown (text and JSON) in kebab case: `moved-tag`, `unlisted-file` ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Kind {
    /// A tag a manifest promises is not in the repository.
    MissingTag,
    /// A digest a manifest promises (tagged or digest-only) is not in the repository: the image
    /// was deleted, or never promoted.
    MissingImage,
    /// A tag a manifest promises points at another digest: moved by hand.
    MovedTag,
    /// A tag in a promised repository that no manifest mentions (cosign and referrers tags of the
    /// promised digests excepted: they are promoted with their image).
    UnlistedTag,
    /// A repository under a destination that no manifest mentions: pushed by hand.
    UnlistedRepository,
    /// The destination offers no catalog (or refused it): unlisted repositories cannot be
    /// looked for there. The rest of the audit still runs.
    CannotListRepositories,
    /// A file a manifest lists is not at the destination.
    MissingFile,
    /// A file a manifest lists holds other bytes at the destination.
    ChangedFile,
    /// A file at the destination that no manifest lists.
    UnlistedFile,
    /// A promised digest present at the destination without a valid signature by the keys
    /// required (`--require-signatures`).
    Unsigned,
    /// Something that had to be read could not be (a request failed): nothing is known about it.
    Unreadable,
}

impl Kind {
    /// The kind as shown: `moved-tag`, `unlisted-file` ...
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::MissingTag => "missing-tag",
            Kind::MissingImage => "missing-image",
            Kind::MovedTag => "moved-tag",
            Kind::UnlistedTag => "unlisted-tag",
            Kind::UnlistedRepository => "unlisted-repository",
            Kind::CannotListRepositories => "cannot-list-repositories",
            Kind::MissingFile => "missing-file",
            Kind::ChangedFile => "changed-file",
            Kind::UnlistedFile => "unlisted-file",
            Kind::Unsigned => "unsigned",
            Kind::Unreadable => "unreadable",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One difference between what the manifests promise and what a destination holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What kind of difference.
    pub kind: Kind,
    /// The destination registry (`host/prefix`, `oci:DIR`) or store base, as the manifest writes
    /// it.
    pub destination: String,
    /// What it is about, as a user would write it: `host/prefix/app:v1`,
    /// `host/prefix/app@sha256:…`, `host/prefix/app`, `s3://bucket/dir/name`.
    pub subject: String,
    /// What the manifests promise there (a digest, a sha256, "absent (no manifest lists it)").
    pub expected: String,
    /// What is there instead.
    pub found: String,
    /// The manifest's `file:line` that promised it; `None` for what no manifest mentions.
    pub origin: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: expected {}, found {}", self.kind, self.subject, self.expected, self.found)?;
        if let Some(origin) = &self.origin {
            write!(f, " ({origin})")?;
        }
        Ok(())
    }
}

/// Counts of an audit.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Destinations read (registries and stores, each once however many manifests name it).
    pub destinations: usize,
    /// Promised things checked: tags and digests per destination repository, files per
    /// destination.
    pub checked: usize,
    /// Findings in all.
    pub findings: usize,
    /// Findings by kind (kinds with none left out).
    pub by_kind: BTreeMap<Kind, usize>,
    /// Wall-clock seconds the audit took.
    pub seconds: f64,
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit: {} destinations, {} promised checked, ", self.destinations, self.checked)?;
        if self.findings == 0 {
            write!(f, "no findings")?;
        } else {
            let kinds: Vec<String> = self.by_kind.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
            write!(f, "{} findings ({})", self.findings, kinds.join(", "))?;
        }
        write!(f, " in {:.1}s", self.seconds)
    }
}

/// Everything an audit found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Sorted by destination, subject, then kind.
    pub findings: Vec<Finding>,
    /// The counts.
    pub totals: Totals,
}

impl Report {
    /// A report of `findings` (sorted here) over `destinations` destinations and `checked`
    /// promised things.
    pub fn new(mut findings: Vec<Finding>, destinations: usize, checked: usize, took: Duration) -> Report {
        findings.sort_by(|a, b| {
            (&a.destination, &a.subject, a.kind, &a.expected, &a.found).cmp(&(
                &b.destination,
                &b.subject,
                b.kind,
                &b.expected,
                &b.found,
            ))
        });
        let mut by_kind = BTreeMap::new();
        for finding in &findings {
            *by_kind.entry(finding.kind).or_insert(0) += 1;
        }
        let totals = Totals { destinations, checked, findings: findings.len(), by_kind, seconds: took.as_secs_f64() };
        Report { findings, totals }
    }

    /// `true` when production holds exactly what the manifests promise.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// This report and `other` as one (an audit of images and files together).
    pub fn merge(self, other: Report) -> Report {
        let findings = self.findings.into_iter().chain(other.findings).collect();
        let took = Duration::from_secs_f64(self.totals.seconds + other.totals.seconds);
        Report::new(
            findings,
            self.totals.destinations + other.totals.destinations,
            self.totals.checked + other.totals.checked,
            took,
        )
    }
}

/// How an audit runs.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// Requests (and re-hashes) in flight at once, across destinations. Per-host limits are the
    /// registry client's.
    pub concurrency: usize,
    /// Names (relative to each destination store's base) that Ferry itself writes there and no
    /// manifest lists: the inventory of `ferry promote files --inventory` (`inventory.txt`).
    /// Never reported as unlisted files.
    pub inventories: Vec<ObjectName>,
    /// Each promised digest present must carry a cosign signature one of these keys verifies
    /// (an `unsigned` finding otherwise); `None` to not look at signatures.
    pub require_signatures: Option<std::sync::Arc<ferry_sign::signer::Verifier>>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            concurrency: 16,
            inventories: vec![ObjectName::parse("inventory.txt").expect("a valid object name")],
            require_signatures: None,
        }
    }
}

/// Whether `full` (a repository or object named in full) lies under a root longer than `own`
/// that is itself under `own`: another destination (or a source) nested inside this one, whose
/// contents are its own audit's business.
pub(crate) fn under_nested_root(full: &str, own: &str, roots: &[String]) -> bool {
    roots.iter().any(|root| {
        root.len() > own.len()
            && root.strip_prefix(own).is_some_and(|rest| rest.starts_with('/'))
            && full.strip_prefix(root.as_str()).is_some_and(|rest| rest.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(kind: Kind, subject: &str, origin: Option<&str>) -> Finding {
        Finding {
            kind,
            destination: "r/prod".into(),
            subject: subject.into(),
            expected: "sha256:aa".into(),
            found: "sha256:bb".into(),
            origin: origin.map(str::to_string),
        }
    }

    #[test]
    fn a_report_is_sorted_and_counted() {
        let report = Report::new(
            vec![
                finding(Kind::UnlistedTag, "r/prod/b:x", None),
                finding(Kind::MovedTag, "r/prod/a:v1", Some("images.yaml:4")),
                finding(Kind::MissingTag, "r/prod/a:v0", Some("images.yaml:3")),
            ],
            1,
            5,
            Duration::from_millis(1500),
        );
        let subjects: Vec<&str> = report.findings.iter().map(|f| f.subject.as_str()).collect();
        assert_eq!(subjects, ["r/prod/a:v0", "r/prod/a:v1", "r/prod/b:x"]);
        assert!(!report.is_clean());
        assert_eq!(report.totals.to_string(), "audit: 1 destinations, 5 promised checked, 3 findings (1 missing-tag, 1 moved-tag, 1 unlisted-tag) in 1.5s");
        assert_eq!(
            report.findings[1].to_string(),
            "moved-tag r/prod/a:v1: expected sha256:aa, found sha256:bb (images.yaml:4)"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["findings"][1]["kind"], "moved-tag");
        assert_eq!(json["findings"][2]["origin"], serde_json::Value::Null);
        assert_eq!(json["totals"]["by_kind"]["unlisted-tag"], 1);
        assert_eq!(json["totals"]["findings"], 3);
    }

    #[test]
    fn nested_roots() {
        let roots = vec!["h/prod".to_string(), "h/prod/eu".to_string(), "h/staging".to_string()];
        assert!(under_nested_root("h/prod/eu/app", "h/prod", &roots));
        assert!(!under_nested_root("h/prod/eurasia/app", "h/prod", &roots));
        assert!(!under_nested_root("h/prod/app", "h/prod", &roots));
        assert!(under_nested_root("h/staging/app", "h", &roots));
        assert!(!under_nested_root("h/prod/eu/app", "h/prod/eu", &roots));
    }
}
