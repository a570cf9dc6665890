//! The SLSA provenance Ferry attaches to each promoted image: an in-toto Statement v1
//! (<https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>) whose predicate is
//! SLSA Provenance v1 (<https://slsa.dev/spec/v1.0/provenance>).
//!
//! ```json
//! {"_type":"https://in-toto.io/Statement/v1",
//!  "subject":[{"name":"registry.example/team/app","digest":{"sha256":"…"}}],
//!  "predicateType":"https://slsa.dev/provenance/v1",
//!  "predicate":{
//!   "buildDefinition":{"buildType":"<BUILD_TYPE>",
//!     "externalParameters":{"manifest":{"path":…,"line":…},"source":{"reference":…,"digest":…},
//!                           "destination":…,"manifestsRevision":…},
//!     "resolvedDependencies":[{"uri":<source reference>,"digest":{"sha256":"…"}}]},
//!   "runDetails":{"builder":{"id":…,"version":{"ferry":"0.1.0"}},
//!     "metadata":{"invocationId":…,"startedOn":"2026-01-02T03:04:05Z","finishedOn":…}}}}
//! ```
//!
//! A promotion builds nothing: the "build" is the copy, its external parameters are the line of
//! the promotion manifest that asked for it, and its one input is the source image. The subject
//! name is the destination repository, as cosign names subjects. `builder.version` is a map, as the
//! SLSA v1 schema (and cosign's Go type for it) requires, and the times are RFC 3339 UTC, which
//! Go's `time.Time` parses; cosign decodes the predicate into that type for
//! `verify-attestation --type slsaprovenance1`, so a different shape would fail there.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_oci::Digest;
use serde::{Deserialize, Serialize};

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// `_type` of the older in-toto Statement v0.1, still written by `cosign attest`; accepted when
/// checking.
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";
/// `predicateType` of SLSA Provenance v1 (cosign's `--type slsaprovenance1`).
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// `buildType` of a Ferry promotion: names the shape of `externalParameters` above. A URN, since
/// Ferry has no documentation site whose URL could serve as a stable name.
pub const BUILD_TYPE: &str = "urn:ferry:promotion:v1";

/// What was promoted, from the promotion manifest.
#[derive(Debug, Clone)]
pub struct Promotion<'a> {
    /// The destination repository, without tag or digest (`registry.example/team/app`).
    pub destination: &'a str,
    /// The manifest digest copied (the same at source and destination).
    pub digest: &'a Digest,
    /// The source repository or reference it was copied from.
    pub source: &'a str,
    /// The promotion manifest file that listed the image, relative to the manifests' root.
    pub manifest_file: &'a str,
    /// The line of that file, when known.
    pub manifest_line: Option<u64>,
    /// The git commit of the manifests, when they are in git.
    pub manifests_revision: Option<&'a str>,
}

/// Who ran the promotion, and when.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// `builder.id`: a URI naming the Ferry deployment (the CI job or service) that promoted.
    pub builder_id: &'a str,
    /// Ferry's version, recorded as `builder.version.ferry`.
    pub ferry_version: &'a str,
    /// An identifier of this run (a CI run URL or a UUID).
    pub invocation_id: &'a str,
    /// When the run started.
    pub started_on: SystemTime,
    /// When the run finished.
    pub finished_on: SystemTime,
}

#[derive(Serialize, Deserialize)]
struct Statement<P> {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: P,
}

#[derive(Serialize, Deserialize)]
struct Subject {
    #[serde(default)]
    name: String,
    digest: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Predicate<'a> {
    build_definition: BuildDefinition<'a>,
    run_details: RunDetails<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildDefinition<'a> {
    build_type: &'a str,
    external_parameters: ExternalParameters<'a>,
    resolved_dependencies: Vec<ResourceDescriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalParameters<'a> {
    manifest: ManifestLocation<'a>,
    source: Source<'a>,
    destination: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifests_revision: Option<&'a str>,
}

#[derive(Serialize)]
struct ManifestLocation<'a> {
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
}

#[derive(Serialize)]
struct Source<'a> {
    reference: &'a str,
    digest: &'a str,
}

#[derive(Serialize)]
struct ResourceDescriptor<'a> {
    uri: &'a str,
    digest: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RunDetails<'a> {
    builder: Builder<'a>,
    metadata: Metadata<'a>,
}

#[derive(Serialize)]
struct Builder<'a> {
    id: &'a str,
    version: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    invocation_id: &'a str,
    started_on: String,
    finished_on: String,
}

/// `time` as RFC 3339 UTC with whole seconds (`2026-01-02T03:04:05Z`); times before 1970 are
/// written as the epoch.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The in-toto statement (JSON bytes, the DSSE payload) for one promoted image.
pub fn statement(promotion: &Promotion<'_>, run: &Run<'_>) -> Vec<u8> {
    let hex = promotion.digest.hex();
    let statement = Statement {
        kind: STATEMENT_V1.to_string(),
        subject: vec![Subject {
            name: promotion.destination.to_string(),
            digest: [("sha256".to_string(), hex.to_string())].into_iter().collect(),
        }],
        predicate_type: SLSA_PROVENANCE_V1.to_string(),
        predicate: Predicate {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE,
                external_parameters: ExternalParameters {
                    manifest: ManifestLocation { path: promotion.manifest_file, line: promotion.manifest_line },
                    source: Source { reference: promotion.source, digest: promotion.digest.as_str() },
                    destination: promotion.destination,
                    manifests_revision: promotion.manifests_revision,
                },
                resolved_dependencies: vec![ResourceDescriptor {
                    uri: promotion.source,
                    digest: [("sha256", hex)].into_iter().collect(),
                }],
            },
            run_details: RunDetails {
                builder: Builder { id: run.builder_id, version: [("ferry", run.ferry_version)].into_iter().collect() },
                metadata: Metadata {
                    invocation_id: run.invocation_id,
                    started_on: rfc3339(run.started_on),
                    finished_on: rfc3339(run.finished_on),
                },
            },
        },
    };
    crate::gojson::to_vec(&statement)
}

/// Why a (signature-verified) statement was not accepted for an image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatementError {
    /// Not an in-toto statement.
    #[error("the attestation payload is not an in-toto statement: {0}")]
    Malformed(String),
    /// A statement about something else.
    #[error("the attestation's predicateType is {found:?}, not {expected:?}")]
    WrongPredicateType {
        /// The statement's predicate type.
        found: String,
        /// The one asked for.
        expected: String,
    },
    /// No subject has the digest being verified.
    #[error("the attestation is about {subjects}, not about {expected}")]
    WrongSubject {
        /// The subjects' sha256 digests.
        subjects: String,
        /// The digest being verified.
        expected: Digest,
    },
}

/// Checks a statement (the payload of a verified envelope) is of `predicate_type` and names
/// `expected` among its subjects, as `cosign verify-attestation` does; returns the predicate.
pub fn check_statement(
    payload: &[u8],
    expected: &Digest,
    predicate_type: &str,
) -> Result<serde_json::Value, StatementError> {
    let statement: Statement<serde_json::Value> =
        serde_json::from_slice(payload).map_err(|e| StatementError::Malformed(e.to_string()))?;
    if statement.kind != STATEMENT_V1 && statement.kind != STATEMENT_V01 {
        return Err(StatementError::Malformed(format!("unknown _type {:?}", statement.kind)));
    }
    if statement.predicate_type != predicate_type {
        return Err(StatementError::WrongPredicateType {
            found: statement.predicate_type,
            expected: predicate_type.to_string(),
        });
    }
    let digests: Vec<&str> =
        statement.subject.iter().filter_map(|s| s.digest.get("sha256").map(String::as_str)).collect();
    if !digests.contains(&expected.hex()) {
        let subjects = if digests.is_empty() {
            "no sha256 subject".to_string()
        } else {
            digests.iter().map(|d| format!("sha256:{d}")).collect::<Vec<_>>().join(", ")
        };
        return Err(StatementError::WrongSubject { subjects, expected: expected.clone() });
    }
    Ok(statement.predicate)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rfc3339_dates() {
        let at = |s| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_798_716_245), "2026-12-31T11:24:05Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn statement_checks() {
        let digest = Digest::of(b"image");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let promotion = Promotion {
            destination: "dst.example/app",
            digest: &digest,
            source: "src.example/app",
            manifest_file: "images/app/images.yaml",
            manifest_line: Some(3),
            manifests_revision: None,
        };
        let run = Run {
            builder_id: "https://ci.example/ferry",
            ferry_version: "0.1.0",
            invocation_id: "run-1",
            started_on: t,
            finished_on: t,
        };
        let bytes = statement(&promotion, &run);
        let predicate = check_statement(&bytes, &digest, SLSA_PROVENANCE_V1).unwrap();
        assert_eq!(predicate["runDetails"]["builder"]["version"]["ferry"], "0.1.0");
        assert!(predicate["buildDefinition"]["externalParameters"].get("manifestsRevision").is_none());

        let other = Digest::of(b"other");
        let err = check_statement(&bytes, &other, SLSA_PROVENANCE_V1).unwrap_err();
        assert_eq!(err.to_string(), format!("the attestation is about {digest}, not about {other}"));
        assert!(matches!(
            check_statement(&bytes, &digest, "https://spdx.dev/Document"),
            Err(StatementError::WrongPredicateType { .. })
        ));
        assert!(matches!(check_statement(b"[]", &digest, SLSA_PROVENANCE_V1), Err(StatementError::Malformed(_))));
    }
}
