//! The vocabulary of a routing decision, shared by the router, the prober, the metrics, the
//! access log and the two response paths: what a mirror may hold ([`Object`], [`Holding`]), how a
//! request ended ([`Outcome`]) and why ([`Reason`]), and the [`Decision`] itself.

use std::fmt;

use ferry_oci::Digest;
use serde::Serialize;

use crate::glob::{Pattern, Tier};
use crate::request::FilePath;

/// Whether a mirror holds an object, as far as is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// It holds it (listed in its inventory, found by a probe or in its folder).
    Yes,
    /// It does not (not in its inventory or folder, or a probe said absent).
    No,
    /// Not known (no probe answer within the budget, or the probe failed): the mirror is not chosen.
    Unknown,
}

/// An object a mirror may hold.
#[derive(Debug, Clone, Copy)]
pub enum Object<'a> {
    /// A registry blob, by its digest.
    Blob(&'a Digest),
    /// A release file, by its validated path.
    File(&'a FilePath),
}

/// How a request ended; also the `outcome` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered by Ferry itself (`/v2/`).
    Ok,
    /// 307 to a mirror.
    Mirror,
    /// 307 to `upstream.registry`.
    Upstream,
    /// 307 to `upstream.signatures`.
    Signatures,
    /// 307 to `upstream.files`.
    Files,
    /// Bytes served by Ferry itself from a local-folder mirror (case 3a).
    Served,
    /// 400 (malformed request), or 416 for an unsatisfiable range on mirror content.
    BadRequest,
    /// 404: not a path Ferry serves or redirects.
    NotFound,
    /// 405: a method other than `GET` or `HEAD`.
    MethodNotAllowed,
    /// 429: the client is over its per-client rate limit (`limits`).
    Limited,
    /// Bytes Ferry streamed itself from the redirect's target (proxy mode); the status is the
    /// origin's.
    Proxied,
    /// 503: a request to be proxied while `proxy_max_streams` streams are running.
    Busy,
}

impl Outcome {
    /// Every outcome, in [`Outcome::index`] order.
    pub const ALL: [Outcome; 12] = [
        Outcome::Ok,
        Outcome::Mirror,
        Outcome::Upstream,
        Outcome::Signatures,
        Outcome::Files,
        Outcome::Served,
        Outcome::BadRequest,
        Outcome::NotFound,
        Outcome::MethodNotAllowed,
        Outcome::Limited,
        Outcome::Proxied,
        Outcome::Busy,
    ];

    /// Position of the outcome in [`Outcome::ALL`] (indexes per-outcome metric counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The snake_case name used in metric labels, the access log and `/debug/route`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Mirror => "mirror",
            Outcome::Upstream => "upstream",
            Outcome::Signatures => "signatures",
            Outcome::Files => "files",
            Outcome::Served => "served",
            Outcome::BadRequest => "bad_request",
            Outcome::NotFound => "not_found",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::Limited => "limited",
            Outcome::Proxied => "proxied",
            Outcome::Busy => "busy",
        }
    }

    /// Whether the request is answered with a 307 (to a mirror or an upstream).
    pub fn is_redirect(&self) -> bool {
        matches!(self, Outcome::Mirror | Outcome::Upstream | Outcome::Signatures | Outcome::Files)
    }
}

/// One mirror as considered for a request (built only when a decision is explained).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// The mirror's name.
    pub mirror: String,
    /// The most specific `serves` pattern that matched the label, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
    /// The tier of that pattern; `None` when no pattern matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Why it was not chosen; `None` for the chosen mirror.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Whether [`crate::route::route`] lists every mirror it considered ([`Decision::candidates`]). Serving does
/// not (no allocation per mirror per request); `/debug/route` and the tests do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Decide only: no candidate list (serving).
    Lean,
    /// Also record every candidate and why it was skipped (`/debug/route`, tests).
    Explain,
}

/// How Ferry knows the chosen mirror holds the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The mirror's inventory lists it.
    Inventory,
    /// A presence probe (`HEAD`) found it.
    Probe,
    /// A local-folder mirror without an inventory: the file is there.
    Folder,
}

/// Why a decision was taken. Rendered (`Display`) only when it is logged or explained, so the
/// decision itself allocates nothing but its `Location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason<'a> {
    /// A fixed explanation (most redirects to an upstream, fixed answers).
    Text(&'static str),
    /// A refusal from parsing (rare; its message is built then).
    Owned(String),
    /// A mirror was chosen.
    Chosen {
        /// The mirror's most specific `serves` pattern matching the label.
        pattern: &'a Pattern,
        /// The client's location label; `None` when it has none.
        label: Option<&'a str>,
        /// How Ferry knows the mirror holds the object.
        evidence: Evidence,
        /// Eligible mirrors at the winning tier (the weighted hash chose when above 1).
        ties: usize,
    },
    /// No mirror was eligible among `considered` candidates.
    NoEligible {
        /// Mirrors with a template for this kind of object; 0 when there is none.
        considered: usize,
    },
    /// Over the per-client rate limit; within it again after `retry_after` seconds.
    Limited {
        /// Seconds until a request would be within the limit (≥ 1).
        retry_after: u64,
    },
}

impl Reason<'_> {
    /// Hands each piece of the text to `emit`, in order, with whether the piece is JSON-safe as
    /// it is (no quote, backslash or control character): `Display` and the access log (which
    /// escapes the other pieces straight into its line) share this one rendering.
    pub fn pieces(&self, emit: &mut dyn FnMut(&str, bool)) {
        match self {
            Reason::Text(t) => emit(t, false),
            Reason::Owned(t) => emit(t, false),
            Reason::Chosen { pattern, label, evidence, ties } => {
                emit(
                    match pattern.tier() {
                        Tier::Exact => "exact match ",
                        Tier::Glob => "glob match ",
                        Tier::Any => "catch-all match ",
                    },
                    true,
                );
                // Patterns are made of [A-Za-z0-9:._/-*].
                emit(pattern.as_str(), true);
                emit(" for label ", true);
                match label {
                    Some(l) => emit(l, false),
                    None => emit("(none)", true),
                }
                let evidence = match evidence {
                    Evidence::Inventory => ", in inventory",
                    Evidence::Probe => ", present (probe)",
                    Evidence::Folder => ", in its folder",
                };
                emit(evidence, true);
                if *ties > 1 {
                    emit(", chosen among ", true);
                    emit(decimal(&mut [0; 20], *ties), true);
                    emit(" by weighted hash", true);
                }
            }
            Reason::NoEligible { considered: 0 } => emit("no mirror configured for this kind of object", true),
            Reason::NoEligible { considered } => {
                emit("no eligible mirror (", true);
                emit(decimal(&mut [0; 20], *considered), true);
                emit(" considered)", true);
            }
            Reason::Limited { retry_after } => {
                emit("over the per-client rate limit; retry after ", true);
                emit(decimal(&mut [0; 20], *retry_after as usize), true);
                emit(" s", true);
            }
        }
    }
}

/// `n` in decimal, written into `buf` (no allocation or `fmt`: this is on every request's path).
pub(crate) fn decimal(buf: &mut [u8; 20], mut n: usize) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("digits")
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut result = Ok(());
        self.pieces(&mut |piece, _| {
            if result.is_ok() {
                result = f.write_str(piece);
            }
        });
        result
    }
}

impl Serialize for Reason<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How one request is answered: status, outcome, redirect target and why. Also the `decision`
/// of `/debug/route`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision<'a> {
    /// The HTTP status of the answer (200, 307, 400, 404, 405 or 429).
    pub status: u16,
    /// How the request ended (metrics and access-log `outcome`).
    pub outcome: Outcome,
    /// The redirect target (status 307 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The chosen mirror (outcome `mirror` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<&'a str>,
    /// Index of the chosen mirror in [`crate::Snapshot::mirrors`] (for the metrics).
    #[serde(skip)]
    pub mirror_index: Option<usize>,
    /// Why this answer was chosen.
    pub reason: Reason<'a>,
    /// Every mirror considered (blobs and non-checksum files only), with [`Detail::Explain`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    /// The redirected object's size, when an inventory records it (blobs and files; for the
    /// `ferry_serve_redirected_bytes` metric).
    #[serde(skip)]
    pub size: Option<u64>,
}

impl<'a> Decision<'a> {
    pub(crate) fn answer(status: u16, outcome: Outcome, reason: Reason<'a>) -> Decision<'a> {
        Decision {
            status,
            outcome,
            location: None,
            mirror: None,
            mirror_index: None,
            reason,
            candidates: Vec::new(),
            size: None,
        }
    }

    pub(crate) fn redirect(outcome: Outcome, location: String, reason: Reason<'a>) -> Decision<'a> {
        Decision {
            status: 307,
            outcome,
            location: Some(location),
            mirror: None,
            mirror_index: None,
            reason,
            candidates: Vec::new(),
            size: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_indices_follow_all() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i, "{o:?}");
        }
    }
}
