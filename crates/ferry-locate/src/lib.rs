//! "Where is this client?" as a label: client address → `aws:us-east-2`, `gcp:europe-west1`,
//! `azure:westeurope`, an operator label such as `isp:example-nz`, or `country:NZ`.
//!
//! The redirector asks this for every request, so the work is split: [`Locator::load`] reads the
//! published range files and the country database once and flattens them into an immutable table
//! (see `table.rs`), and [`Locator::locate`] is a binary search over it: lock-free, no allocation.
//! A reload builds a new `Locator` and the redirector swaps it in whole.
//!
//! Precedence (see `docs/locations.md`): the longest matching prefix over all range sources, the
//! operator's `cidrs` winning a tie with a cloud prefix of the same length; if no range matches,
//! the country database; else no label.

mod error;
mod prefix;
mod sources;
mod table;

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::LocateError;
use prefix::Prefix;
use table::{Rank, Span, Table, V4, V6};

/// The `locations:` section of the redirector's config. Every field is optional. Relative paths
/// are used as given: the caller resolves them against its config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocationsConfig {
    /// AWS `ip-ranges.json` files → `aws:<region>`.
    pub aws: Vec<PathBuf>,
    /// Google Cloud `cloud.json` files → `gcp:<scope>`.
    pub gcp: Vec<PathBuf>,
    /// Azure Service Tags JSON files → `azure:<region>`.
    pub azure: Vec<PathBuf>,
    /// The operator's own prefixes → any label.
    pub cidrs: BTreeMap<String, String>,
    /// A MaxMind DB country (or city) database → `country:<ISO code>`.
    pub countries: Option<PathBuf>,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The operator's own prefixes (`locations.cidrs`).
    Cidrs,
    /// An AWS `ip-ranges.json` file.
    Aws,
    /// A Google Cloud `cloud.json` file.
    Gcp,
    /// An Azure Service Tags file.
    Azure,
    /// The MaxMind country database, consulted only when no range matches.
    Country,
}

impl Source {
    /// The lowercase name shown for it, as in JSON: `cidrs`, `aws`, `gcp`, `azure` or `country`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cidrs => "cidrs",
            Source::Aws => "aws",
            Source::Gcp => "gcp",
            Source::Azure => "azure",
            Source::Country => "country",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an address got its label, for a debug endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match<'a> {
    /// The label [`Locator::locate`] gives the address.
    pub label: &'a str,
    /// The matched prefix, e.g. `64.252.69.0/24` (IPv4-mapped addresses are shown as IPv4).
    pub prefix: String,
    /// The source the matched prefix came from.
    pub source: Source,
}

/// An immutable address → label index. `Send + Sync`: share it behind an `Arc`.
pub struct Locator {
    v4: Table<V4>,
    v6: Table<V6>,
    /// What each table value means; [`table::NONE`] is out of range, so it reads as no answer.
    answers: Box<[Answer]>,
    labels: Box<[Box<str>]>,
}

/// A table value. Keeping the prefix length (not the prefix) is enough for [`Locator::explain`],
/// as the prefix is the address masked to that length, and it lets adjacent intervals with the
/// same label, length and source share one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Answer {
    label: u32,
    len: u8,
    source: Source,
}

impl Locator {
    /// Reads every configured file and builds the index. Sources are added in the order cidrs,
    /// aws, gcp, azure (each list in order), country; for two equal prefixes the first added wins.
    pub fn load(config: &LocationsConfig) -> Result<Locator, LocateError> {
        Locator::load_with(config, &sources::from_disk)
    }

    /// [`Locator::load`], with each source file's bytes from `read` (a caller that fetched some
    /// of them over the network hands those over; `read` errors are reported as unreadable files).
    pub fn load_with(
        config: &LocationsConfig,
        read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
    ) -> Result<Locator, LocateError> {
        let mut b = Builder::default();
        for (cidr, label) in &config.cidrs {
            let bad = |message: String| LocateError::Cidr { cidr: cidr.clone(), message };
            let prefix = cidr.parse().map_err(bad)?;
            // The characters mirror `serves` patterns can name (docs/serve.md): a label with any
            // other would never match a mirror.
            if label.is_empty() || !label.bytes().all(|c| c.is_ascii_alphanumeric() || b":._/-".contains(&c)) {
                return Err(bad(format!("the label {label:?} is not made of A-Z a-z 0-9 : . _ / -")));
            }
            let label = b.label(label);
            b.add(prefix, label, Source::Cidrs);
        }
        for path in &config.aws {
            sources::aws(path, read, &mut b)?;
        }
        for path in &config.gcp {
            sources::gcp(path, read, &mut b)?;
        }
        for path in &config.azure {
            sources::azure(path, read, &mut b)?;
        }
        if let Some(path) = &config.countries {
            sources::country(path, read, &mut b)?;
        }
        Ok(b.finish())
    }

    /// The client's label, if any source knows it. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`)
    /// are looked up as IPv4.
    #[inline]
    pub fn locate(&self, ip: IpAddr) -> Option<&str> {
        self.answer(ip).map(|a| &*self.labels[a.label as usize])
    }

    /// The client's label as an index into [`Locator::labels`], so a caller can keep per-label
    /// state (the redirector's metric handles) in a plain array instead of hashing the label.
    #[inline]
    pub fn locate_id(&self, ip: IpAddr) -> Option<u32> {
        self.answer(ip).map(|a| a.label)
    }

    /// Every label, indexed by [`Locator::locate_id`].
    pub fn labels(&self) -> &[Box<str>] {
        &self.labels
    }

    /// The label with the prefix and source that gave it.
    pub fn explain(&self, ip: IpAddr) -> Option<Match<'_>> {
        let ip = ip.to_canonical();
        let a = self.answer(ip)?;
        let prefix = format!("{}/{}", prefix::network(ip, a.len), a.len);
        Some(Match { label: &self.labels[a.label as usize], prefix, source: a.source })
    }

    /// Heap bytes held by the index, for logging at (re)load against the redirector's memory budget.
    pub fn heap_bytes(&self) -> usize {
        let labels: usize = self.labels.iter().map(|l| l.len()).sum();
        self.v4.heap_bytes() + self.v6.heap_bytes() + size_of_val(&*self.answers) + size_of_val(&*self.labels) + labels
    }

    #[inline]
    fn answer(&self, ip: IpAddr) -> Option<&Answer> {
        let value = match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.get(u32::from(a).into()),
            IpAddr::V6(a) => self.v6.get(a.into()),
        };
        self.answers.get(value as usize)
    }
}

impl fmt::Debug for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locator")
            .field("v4_intervals", &self.v4.len())
            .field("v6_intervals", &self.v6.len())
            .field("labels", &self.labels.len())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

/// Collects prefixes and interns labels and answers while the sources are read.
#[derive(Default)]
struct Builder {
    labels: Vec<Box<str>>,
    label_ids: HashMap<Box<str>, u32>,
    answers: Vec<Answer>,
    answer_ids: HashMap<Answer, u32>,
    v4: Vec<Span>,
    v6: Vec<Span>,
}

impl Builder {
    fn label(&mut self, label: &str) -> u32 {
        if let Some(&id) = self.label_ids.get(label) {
            return id;
        }
        let id = self.labels.len() as u32;
        self.labels.push(label.into());
        self.label_ids.insert(label.into(), id);
        id
    }

    fn add(&mut self, prefix: Prefix, label: u32, source: Source) {
        let answer = Answer { label, len: prefix.len, source };
        let value = *self.answer_ids.entry(answer).or_insert_with(|| {
            self.answers.push(answer);
            self.answers.len() as u32 - 1
        });
        let order = Reverse((self.v4.len() + self.v6.len()) as u32);
        let rank = Rank { range: source != Source::Country, len: prefix.len, order };
        let spans = if prefix.v6 { &mut self.v6 } else { &mut self.v4 };
        spans.push(Span { first: prefix.first, last: prefix.last(), rank, value });
    }

    fn finish(self) -> Locator {
        Locator {
            v4: Table::build(self.v4),
            v6: Table::build(self.v6),
            answers: self.answers.into(),
            labels: self.labels.into(),
        }
    }
}
