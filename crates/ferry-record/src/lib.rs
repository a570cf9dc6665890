//! Run records: what a confirmed run did, kept where an auditor can read it later.
//!
//! `ferry promote images|files --confirm --audit-log STORE_URL` writes one JSON object per run
//! into `STORE_URL` (a folder, `s3://`, `gs://`, `az://`), named
//! `YYYY/MM/DD/<YYYYMMDDTHHMMSSZ>-<command>-<run id>.json` so that a listing is in time order.
//! A name is never written twice (the run id is 64 random bits) and Ferry never rewrites or
//! deletes a record; make the bucket's retention policy or object lock enforce that too.
//!
//! The record ([`RunRecord`]) is an envelope — who ran what, when, from which revision of the
//! manifests — around the command's own `--output json` report, which lists every edge with its
//! action, digests and result. The schema is in `docs/audit.md`. Credentials never appear: the
//! command line is kept with the user info and query of every URL in it redacted.

mod redact;
mod who;

use std::time::SystemTime;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ferry_store::ObjectName;
use ferry_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

pub use redact::redact_arguments;
pub use who::{Ci, Who};

/// The value of [`RunRecord::schema`] for this version of the format.
pub const SCHEMA: &str = "https://ferry.dev/run-record/v1";

/// One confirmed run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// The format: [`SCHEMA`].
    pub schema: String,
    /// 16 hex digits, random; also in the object's name.
    pub run_id: String,
    /// The subcommand, e.g. `promote images`.
    pub command: String,
    /// The command line after the program name, URLs redacted ([`redact_arguments`]).
    pub arguments: Vec<String>,
    /// The Ferry version that ran.
    pub ferry_version: String,
    /// When the run started (UTC).
    pub started: DateTime<Utc>,
    /// When it finished (UTC).
    pub finished: DateTime<Utc>,
    /// Who ran it, from the environment.
    pub who: Who,
    /// The git revision of the manifests, when they are in a git repository.
    pub manifests: Option<ManifestsRevision>,
    /// The exit status the command returned (0 everything done, 1 something refused or failed).
    pub exit_status: u8,
    /// The command's `--output json` report: every edge with its action and result, and the
    /// summary.
    pub report: serde_json::Value,
}

/// Where the manifests came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestsRevision {
    /// The manifests directory as given.
    pub path: String,
    /// The commit checked out.
    pub commit: String,
    /// Whether the directory had changes not committed.
    pub dirty: bool,
}

impl RunRecord {
    /// A record of `command` (`promote images`), started at `started` and finished now, with a
    /// fresh run id, the redacted `arguments` and who ran it from this process's environment.
    pub fn new(
        command: &str,
        arguments: &[String],
        started: SystemTime,
        manifests: Option<ManifestsRevision>,
        exit_status: u8,
        report: serde_json::Value,
    ) -> RunRecord {
        RunRecord {
            schema: SCHEMA.to_string(),
            run_id: run_id(),
            command: command.to_string(),
            arguments: redact_arguments(arguments),
            ferry_version: env!("CARGO_PKG_VERSION").to_string(),
            started: started.into(),
            finished: Utc::now(),
            who: Who::from_env(|name| std::env::var(name).ok().filter(|v| !v.is_empty())),
            manifests,
            exit_status,
            report,
        }
    }

    /// The object name: `YYYY/MM/DD/<YYYYMMDDTHHMMSSZ>-<command>-<run id>.json`.
    pub fn object_name(&self) -> ObjectName {
        let command = self.command.replace(' ', "-");
        let name = format!("{}-{command}-{}.json", self.started.format("%Y/%m/%d/%Y%m%dT%H%M%SZ"), self.run_id);
        ObjectName::parse(&name).expect("dates, a command name and hex digits make a valid object name")
    }

    /// Writes the record into `store` as one object (never replacing one: the name is new) and
    /// returns where it went, as a URL.
    pub async fn write(&self, store: &Store) -> Result<String, StoreError> {
        let name = self.object_name();
        let mut json = serde_json::to_vec_pretty(self).expect("a record is always serialisable");
        json.push(b'\n');
        store.put_small(&name, Bytes::from(json)).await?;
        Ok(ferry_store::object_url(store.url(), name.as_str()))
    }
}

/// 64 random bits in hex: a run's id.
pub fn run_id() -> String {
    let mut bytes = [0u8; 8];
    // Without OS randomness the time's nanoseconds still make a name that will not repeat.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = Utc::now().timestamp_nanos_opt().unwrap_or_default().to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
