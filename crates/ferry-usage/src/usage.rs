//! The engine: access-log lines in, one at a time; a [`Report`] out. Memory grows with the
//! distinct keys seen (locations, mirrors, repositories, missing blobs, hours), never with the
//! lines.

use std::collections::BTreeMap;

use crate::hash::{FxMap as HashMap, FxSet as HashSet};

use serde::Serialize;

use crate::line::{Line, Object, TARGET};
use crate::mirrors::{Mirrors, Tier};
use crate::prices::{path, tiered, Path, Prices};
use crate::time;

/// What to count.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only lines at or after this time (seconds since the epoch).
    pub from: Option<i64>,
    /// Only lines before this time.
    pub to: Option<i64>,
    /// Rows kept in the top-N tables (repositories, missing blobs).
    pub top: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options { from: None, to: None, top: 20 }
    }
}

/// Requests and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests.
    pub requests: u64,
    /// Bytes redirected (GET redirects of objects whose size an inventory records).
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, bytes: u64) {
        self.requests += 1;
        self.bytes += bytes;
    }
}

#[derive(Debug, Default)]
struct Missing {
    counts: Counts,
    repository: String,
}

#[derive(Debug, Default)]
struct Down {
    counts: Counts,
    first: i64,
    last: i64,
    hours: HashSet<i64>,
}

/// The running totals; feed it lines with [`Usage::add_line`], then [`Usage::finish`].
pub struct Usage<'m> {
    mirrors: &'m Mirrors,
    options: Options,
    lines: Lines,
    first: Option<i64>,
    last: Option<i64>,
    unsized_count: u64,
    outcomes: HashMap<String, Counts>,
    labels: HashMap<String, Counts>,
    /// origin ("" = the upstream) → label → what it sent there.
    flows: HashMap<String, HashMap<String, Counts>>,
    repositories: HashMap<String, Counts>,
    hours: HashMap<i64, HashMap<String, u64>>,
    /// mirror index → object → what went to the upstream instead.
    missing: HashMap<usize, HashMap<String, Missing>>,
    down: HashMap<usize, Down>,
    /// label → the mirrors expected to serve it, for blobs and for files.
    expected: HashMap<String, [Option<Expected>; 2]>,
}

/// The mirrors expected to serve a label, and how specifically (`Mirrors::expected`).
type Expected = (Vec<usize>, Option<Tier>);

/// Lines read, by what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Lines {
    /// Every line read.
    pub read: u64,
    /// Access-log lines counted.
    pub counted: u64,
    /// Lines that are not JSON of the access log's shape, or whose timestamp does not parse.
    pub malformed: u64,
    /// JSON lines of other targets (the server's other logs).
    pub other: u64,
    /// Access-log lines outside `--from`/`--to`.
    pub outside_period: u64,
}

impl<'m> Usage<'m> {
    /// Nothing counted yet.
    pub fn new(mirrors: &'m Mirrors, options: Options) -> Usage<'m> {
        Usage {
            mirrors,
            options,
            lines: Lines::default(),
            first: None,
            last: None,
            unsized_count: 0,
            outcomes: HashMap::default(),
            labels: HashMap::default(),
            flows: HashMap::default(),
            repositories: HashMap::default(),
            hours: HashMap::default(),
            missing: HashMap::default(),
            down: HashMap::default(),
            expected: HashMap::default(),
        }
    }

    /// Adds what `other` counted (over other lines of the same logs) to this.
    pub fn merge(&mut self, other: Usage<'m>) {
        let (a, b) = (&mut self.lines, other.lines);
        a.read += b.read;
        a.counted += b.counted;
        a.malformed += b.malformed;
        a.other += b.other;
        a.outside_period += b.outside_period;
        self.first = [self.first, other.first].into_iter().flatten().min();
        self.last = [self.last, other.last].into_iter().flatten().max();
        self.unsized_count += other.unsized_count;
        for (mine, theirs) in [
            (&mut self.outcomes, other.outcomes),
            (&mut self.labels, other.labels),
            (&mut self.repositories, other.repositories),
        ] {
            add_counts(mine, theirs);
        }
        for (origin, flows) in other.flows {
            add_counts(self.flows.entry(origin).or_default(), flows);
        }
        for (hour, by_label) in other.hours {
            let mine = self.hours.entry(hour).or_default();
            for (label, b) in by_label {
                *mine.entry(label).or_default() += b;
            }
        }
        for (i, by_key) in other.missing {
            let mine = self.missing.entry(i).or_default();
            for (key, m) in by_key {
                let e =
                    mine.entry(key).or_insert_with(|| Missing { counts: Counts::default(), repository: m.repository });
                e.counts.requests += m.counts.requests;
                e.counts.bytes += m.counts.bytes;
            }
        }
        for (i, d) in other.down {
            match self.down.get_mut(&i) {
                None => drop(self.down.insert(i, d)),
                Some(mine) => {
                    mine.counts.requests += d.counts.requests;
                    mine.counts.bytes += d.counts.bytes;
                    mine.first = mine.first.min(d.first);
                    mine.last = mine.last.max(d.last);
                    mine.hours.extend(d.hours);
                }
            }
        }
    }

    /// Counts one line of a log (without its line ending).
    pub fn add_line(&mut self, text: &str) {
        self.lines.read += 1;
        if text.trim().is_empty() {
            self.lines.read -= 1;
            return;
        }
        let Some(line) = Line::parse(text) else {
            self.lines.malformed += 1;
            return;
        };
        if line.target != TARGET {
            self.lines.other += 1;
            return;
        }
        let Some(at) = time::parse(&line.timestamp) else {
            self.lines.malformed += 1;
            return;
        };
        if self.options.from.is_some_and(|from| at < from) || self.options.to.is_some_and(|to| at >= to) {
            self.lines.outside_period += 1;
            return;
        }
        self.lines.counted += 1;
        self.first = Some(self.first.map_or(at, |f| f.min(at)));
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
        self.count(&line, at);
    }

    fn count(&mut self, line: &Line<'_>, at: i64) {
        let f = &line.fields;
        let object = Object::of(&f.path);
        let redirect = f.status == 307;
        let get = f.method == "GET";
        let key = match object {
            Object::Blob { digest, .. } => Some(digest),
            Object::File { path } => Some(path),
            _ => None,
        };
        let size = key.and_then(|k| self.mirrors.size(k));
        let bytes = if redirect && get { size.unwrap_or(0) } else { 0 };
        if redirect && get && key.is_some() && size.is_none() {
            self.unsized_count += 1;
        }
        entry(&mut self.outcomes, &f.outcome).add(bytes);
        entry(&mut self.labels, &f.label).add(bytes);
        let repository = match object {
            Object::Blob { repository, .. } | Object::Registry { repository } => Some(repository),
            Object::File { path } => Some(path.rsplit_once('/').map_or("/", |(dir, _)| dir)).filter(|d| !d.is_empty()),
            Object::Other => None,
        };
        if let Some(r) = repository {
            entry(&mut self.repositories, r).add(bytes);
        }
        let origin = match &*f.outcome {
            "mirror" => Some(&*f.mirror),
            "upstream" | "files" | "signatures" => Some(""),
            _ => None,
        };
        if let (true, Some(origin)) = (redirect, origin) {
            let by_label = match self.flows.get_mut(origin) {
                Some(m) => m,
                None => self.flows.entry(origin.to_string()).or_default(),
            };
            entry(by_label, &f.label).add(bytes);
            if bytes > 0 {
                *entry(self.hours.entry(at.div_euclid(3600)).or_default(), &f.label) += bytes;
            }
        }
        let checksum = [".sha256", ".sha512", ".sig", ".cert", ".asc"].iter().any(|s| f.path.ends_with(s));
        if redirect && matches!(&*f.outcome, "upstream" | "files") && !checksum {
            if let Some(key) = key {
                self.gone_upstream(&f.label, matches!(object, Object::Blob { .. }), key, repository, bytes, at);
            }
        }
    }

    /// An object the upstream served: under each mirror that should have served it, missing (its
    /// inventory lacks it) or down (it lists it, so the mirror was out of the routing).
    fn gone_upstream(&mut self, label: &str, blob: bool, key: &str, repository: Option<&str>, bytes: u64, at: i64) {
        let mirrors = self.mirrors;
        let slots = match self.expected.get_mut(label) {
            Some(slots) => slots,
            None => self.expected.entry(label.to_string()).or_default(),
        };
        let (expected, tier) = slots[usize::from(blob)].get_or_insert_with(|| mirrors.expected(label, blob));
        if tier.is_none() {
            return;
        }
        for &i in expected.iter() {
            let holds = mirrors.list[i].holds.as_ref().is_some_and(|h| h.contains(key));
            if holds {
                let down = self.down.entry(i).or_insert_with(|| Down { first: at, last: at, ..Down::default() });
                down.counts.add(bytes);
                down.first = down.first.min(at);
                down.last = down.last.max(at);
                down.hours.insert(at.div_euclid(3600));
            } else {
                let by_key = self.missing.entry(i).or_default();
                let m = match by_key.get_mut(key) {
                    Some(m) => m,
                    None => by_key.entry(key.to_string()).or_insert_with(|| Missing {
                        counts: Counts::default(),
                        repository: repository.unwrap_or("").to_string(),
                    }),
                };
                m.counts.add(bytes);
            }
        }
    }

    /// The report, priced with `prices`.
    pub fn finish(self, prices: &Prices) -> Report {
        let top = self.options.top;
        let mut unpriced = Vec::new();
        // Cost of each origin's flows, per label, as served.
        let mut mirror_rows = Vec::new();
        let mut served_by_label: HashMap<&str, f64> = HashMap::default();
        let mut mirror_bytes: HashMap<&str, u64> = HashMap::default();
        let mut upstream_bytes: HashMap<&str, u64> = HashMap::default();
        let mut origins: Vec<&String> = self.flows.keys().collect();
        origins.sort();
        for origin in origins {
            let flows = &self.flows[origin];
            let name = (!origin.is_empty()).then_some(origin.as_str());
            let location = prices.origin_location(name);
            let costs = price_flows(prices, location, flows);
            if costs.is_none() {
                unpriced.push(name.unwrap_or("upstream").to_string());
            }
            let costs = costs.unwrap_or_default();
            let mut total = Counts::default();
            for (label, c) in flows {
                total.requests += c.requests;
                total.bytes += c.bytes;
                *served_by_label.entry(label).or_default() += costs.get(label.as_str()).copied().unwrap_or(0.0);
                let side = if name.is_some() { &mut mirror_bytes } else { &mut upstream_bytes };
                *side.entry(label).or_default() += c.bytes;
            }
            mirror_rows.push(MirrorRow {
                mirror: name.unwrap_or("upstream").to_string(),
                location: location.unwrap_or("").to_string(),
                requests: total.requests,
                bytes: total.bytes,
                cost_usd: costs.values().sum(),
            });
        }
        mirror_rows.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.mirror.cmp(&b.mirror)));
        // The counterfactual: every flow from the upstream.
        let mut all: HashMap<String, Counts> = HashMap::default();
        for flows in self.flows.values() {
            for (label, c) in flows {
                let e = entry(&mut all, label);
                e.requests += c.requests;
                e.bytes += c.bytes;
            }
        }
        let counterfactual = price_flows(prices, prices.origin_location(None), &all).unwrap_or_default();

        let mut locations: Vec<LocationRow> = self
            .labels
            .iter()
            .map(|(label, c)| {
                let (provider, region) = split_label(label);
                LocationRow {
                    label: label.clone(),
                    provider,
                    region,
                    requests: c.requests,
                    bytes: c.bytes,
                    mirror_bytes: mirror_bytes.get(label.as_str()).copied().unwrap_or(0),
                    upstream_bytes: upstream_bytes.get(label.as_str()).copied().unwrap_or(0),
                    cost_usd: served_by_label.get(label.as_str()).copied().unwrap_or(0.0),
                    counterfactual_usd: counterfactual.get(label.as_str()).copied().unwrap_or(0.0),
                    own_mirror: !label.is_empty()
                        && self.mirrors.expected(label, true).1.is_some_and(|t| t > Tier::Any),
                }
            })
            .collect();
        locations.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.requests.cmp(&a.requests)).then(a.label.cmp(&b.label)));

        let mut providers: BTreeMap<String, Counts> = BTreeMap::new();
        for l in &locations {
            let e = providers.entry(if l.label.is_empty() { "(none)".into() } else { l.provider.clone() }).or_default();
            e.requests += l.requests;
            e.bytes += l.bytes;
        }

        let cost_usd: f64 = mirror_rows.iter().map(|m| m.cost_usd).sum();
        let counterfactual_usd: f64 = counterfactual.values().sum();
        let redirected: u64 = mirror_rows.iter().map(|m| m.bytes).sum();
        let mirrored: u64 = mirror_rows.iter().filter(|m| m.mirror != "upstream").map(|m| m.bytes).sum();
        let totals = Totals {
            requests: self.lines.counted,
            redirects: mirror_rows.iter().map(|m| m.requests).sum(),
            bytes: redirected,
            mirror_bytes: mirrored,
            upstream_bytes: redirected - mirrored,
            mirror_share: share(mirrored as f64, redirected as f64),
            unsized_redirects: self.unsized_count,
            cost_usd,
            counterfactual_usd,
            savings_usd: counterfactual_usd - cost_usd,
            savings_share: share(counterfactual_usd - cost_usd, counterfactual_usd),
        };

        let mut missing = Vec::new();
        let mut missing_by_mirror = Vec::new();
        for (&i, by_key) in &self.missing {
            let name = &self.mirrors.list[i].name;
            let mut sum = Counts::default();
            for (key, m) in by_key {
                sum.requests += m.counts.requests;
                sum.bytes += m.counts.bytes;
                missing.push(MissingRow {
                    mirror: name.clone(),
                    object: key.clone(),
                    repository: m.repository.clone(),
                    requests: m.counts.requests,
                    bytes: m.counts.bytes,
                });
            }
            missing_by_mirror.push(Row { key: name.clone(), requests: sum.requests, bytes: sum.bytes });
        }
        missing.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.requests.cmp(&a.requests)).then(a.object.cmp(&b.object)));
        missing.truncate(top);
        sort_rows(&mut missing_by_mirror);

        let mut down: Vec<DownRow> = self
            .down
            .iter()
            .map(|(&i, d)| DownRow {
                mirror: self.mirrors.list[i].name.clone(),
                requests: d.counts.requests,
                bytes: d.counts.bytes,
                first: time::format(d.first),
                last: time::format(d.last),
                hours: d.hours.len() as u64,
            })
            .collect();
        down.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.mirror.cmp(&b.mirror)));

        let mut gaps: Vec<LocationRow> =
            locations.iter().filter(|l| !l.label.is_empty() && !l.own_mirror).cloned().collect();
        gaps.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.label.cmp(&b.label)));
        gaps.truncate(top);

        let over_time = over_time(&self.hours, &locations, self.first, self.last);
        let mut by_outcome = rows(self.outcomes);
        sort_rows(&mut by_outcome);
        let mut by_repository = rows(self.repositories);
        sort_rows(&mut by_repository);
        by_repository.truncate(top);
        Report {
            period: Period {
                from: self.options.from.map(time::format),
                to: self.options.to.map(time::format),
                first_line: self.first.map(time::format),
                last_line: self.last.map(time::format),
            },
            lines: self.lines,
            prices: PriceSource {
                source: prices.source.clone(),
                date: prices.date.clone(),
                upstream: prices.upstream.clone(),
            },
            unpriced,
            totals,
            by_outcome,
            by_mirror: mirror_rows,
            by_location: locations,
            by_provider: providers
                .into_iter()
                .map(|(key, c)| Row { key, requests: c.requests, bytes: c.bytes })
                .collect(),
            by_repository,
            over_time,
            missing,
            missing_by_mirror,
            locations_without_mirror: gaps,
            mirrors_down: down,
        }
    }
}

fn entry<'a, V: Default>(map: &'a mut HashMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("just inserted")
}

fn add_counts(mine: &mut HashMap<String, Counts>, theirs: HashMap<String, Counts>) {
    for (key, c) in theirs {
        let e = mine.entry(key).or_default();
        e.requests += c.requests;
        e.bytes += c.bytes;
    }
}

fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

fn split_label(label: &str) -> (String, String) {
    match label.split_once(':') {
        Some((p, r)) => (p.into(), r.into()),
        None => (label.into(), String::new()),
    }
}

fn rows(map: HashMap<String, Counts>) -> Vec<Row> {
    map.into_iter().map(|(key, c)| Row { key, requests: c.requests, bytes: c.bytes }).collect()
}

fn sort_rows(rows: &mut [Row]) {
    rows.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.requests.cmp(&a.requests)).then(a.key.cmp(&b.key)));
}

/// The cost of each label's flow from an origin at `location`; `None` when the origin's place or
/// its provider's prices are unknown. Internet bytes go through the tiers together (one origin,
/// one bill), and each label pays its share at the average rate.
fn price_flows(
    prices: &Prices,
    location: Option<&str>,
    flows: &HashMap<String, Counts>,
) -> Option<HashMap<String, f64>> {
    let location = location?;
    let (provider, region) = location.split_once(':').unwrap_or((location, ""));
    let p = prices.providers.get(provider)?;
    let tiers = p.internet_by_region.get(region).unwrap_or(&p.internet);
    let internet: u64 = flows.iter().filter(|(l, _)| path(location, l) == Path::Internet).map(|(_, c)| c.bytes).sum();
    let internet_cost = tiered(tiers, internet);
    let gb = crate::prices::GB;
    Some(
        flows
            .iter()
            .map(|(label, c)| {
                let transfer = match path(location, label) {
                    Path::SameRegion => c.bytes as f64 / gb * p.same_region_per_gb,
                    Path::InterRegion => c.bytes as f64 / gb * p.inter_region_per_gb,
                    Path::Internet => internet_cost * share(c.bytes as f64, internet as f64),
                };
                (label.clone(), transfer + c.requests as f64 * p.requests_per_10k / 10_000.0)
            })
            .collect(),
    )
}

/// Series shown: the locations with most bytes; the rest together as "other".
const SERIES: usize = 7;

fn over_time(
    hours: &HashMap<i64, HashMap<String, u64>>,
    locations: &[LocationRow],
    first: Option<i64>,
    last: Option<i64>,
) -> OverTime {
    let (Some(first), Some(last)) = (first, last) else {
        return OverTime { bucket_seconds: 3600, buckets: Vec::new(), series: Vec::new() };
    };
    let bucket = if last - first > 3 * 86_400 { 86_400 } else { 3600 };
    let start = first.div_euclid(bucket);
    let n = (last.div_euclid(bucket) - start + 1) as usize;
    let mut shown: Vec<&str> =
        locations.iter().filter(|l| l.mirror_bytes + l.upstream_bytes > 0).map(|l| l.label.as_str()).collect();
    let rest = shown.len() > SERIES;
    shown.truncate(if rest { SERIES - 1 } else { SERIES });
    let mut series: Vec<Series> =
        shown.iter().map(|l| Series { label: label_name(l).to_string(), bytes: vec![0; n] }).collect();
    if rest {
        series.push(Series { label: "other".into(), bytes: vec![0; n] });
    }
    for (&hour, by_label) in hours {
        let i = ((hour * 3600).div_euclid(bucket) - start) as usize;
        for (label, &b) in by_label {
            let s = shown.iter().position(|l| l == label).unwrap_or(series.len() - 1);
            if s < series.len() && (s < shown.len() || rest) {
                series[s].bytes[i] += b;
            }
        }
    }
    let buckets = (0..n as i64)
        .map(|i| {
            if bucket == 86_400 {
                time::format_date((start + i) * bucket)
            } else {
                time::format((start + i) * bucket)
            }
        })
        .collect();
    OverTime { bucket_seconds: bucket as u64, buckets, series }
}

/// How a label is shown: `(none)` for clients without one.
pub fn label_name(label: &str) -> &str {
    if label.is_empty() {
        "(none)"
    } else {
        label
    }
}

/// Everything `ferry report` shows; its JSON form is `--output json` (docs/report.md).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The period asked for and the one the lines span.
    pub period: Period,
    /// Lines read, by what became of them.
    pub lines: Lines,
    /// The price table's source and date.
    pub prices: PriceSource,
    /// Origins (mirror names, `upstream`) without a location or prices: their cost is 0.
    pub unpriced: Vec<String>,
    /// The totals.
    pub totals: Totals,
    /// Requests and bytes by outcome.
    pub by_outcome: Vec<Row>,
    /// By origin: each mirror, and `upstream`.
    pub by_mirror: Vec<MirrorRow>,
    /// By client location label.
    pub by_location: Vec<LocationRow>,
    /// By the provider part of the label (`aws`, `gcp`, `country`, `(none)`).
    pub by_provider: Vec<Row>,
    /// By repository (release files: by folder), top N by bytes.
    pub by_repository: Vec<Row>,
    /// Bytes by location over time.
    pub over_time: OverTime,
    /// Objects that went to the upstream although a mirror should have served them, because
    /// its inventory lacks them; top N by bytes.
    pub missing: Vec<MissingRow>,
    /// The same, summed per mirror (all objects, not only the top N).
    pub missing_by_mirror: Vec<Row>,
    /// Locations with traffic and no mirror of their own (only `"*"` or nothing serves them).
    pub locations_without_mirror: Vec<LocationRow>,
    /// Mirrors that were out of the routing: objects they list went to the upstream instead.
    pub mirrors_down: Vec<DownRow>,
}

/// The period.
#[derive(Debug, Clone, Serialize)]
pub struct Period {
    /// `--from`.
    pub from: Option<String>,
    /// `--to`.
    pub to: Option<String>,
    /// The first counted line's time.
    pub first_line: Option<String>,
    /// The last counted line's time.
    pub last_line: Option<String>,
}

/// Where the prices come from.
#[derive(Debug, Clone, Serialize)]
pub struct PriceSource {
    /// The table's `source`.
    pub source: String,
    /// The table's `date`.
    pub date: String,
    /// Where the upstream is.
    pub upstream: String,
}

/// The totals of the period.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Access-log lines counted.
    pub requests: u64,
    /// Redirects to an origin (a mirror or the upstream).
    pub redirects: u64,
    /// Bytes redirected.
    pub bytes: u64,
    /// Of which to mirrors.
    pub mirror_bytes: u64,
    /// Of which to the upstream.
    pub upstream_bytes: u64,
    /// `mirror_bytes / bytes`.
    pub mirror_share: f64,
    /// GET redirects of blobs or files whose size no inventory records (counted as 0 bytes).
    pub unsized_redirects: u64,
    /// What the traffic cost as served.
    pub cost_usd: f64,
    /// What it would have cost had every byte come from the upstream.
    pub counterfactual_usd: f64,
    /// `counterfactual_usd - cost_usd`.
    pub savings_usd: f64,
    /// `savings_usd / counterfactual_usd`.
    pub savings_share: f64,
}

/// Requests and bytes under one key.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The key (an outcome, a provider, a repository, a mirror).
    pub key: String,
    /// Requests.
    pub requests: u64,
    /// Bytes.
    pub bytes: u64,
}

/// One origin.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorRow {
    /// The mirror's name, or `upstream`.
    pub mirror: String,
    /// Where it is (from the price table), `""` when unknown.
    pub location: String,
    /// Redirects to it.
    pub requests: u64,
    /// Bytes it sent.
    pub bytes: u64,
    /// What that cost.
    pub cost_usd: f64,
}

/// One client location.
#[derive(Debug, Clone, Serialize)]
pub struct LocationRow {
    /// The label, `""` for clients without one.
    pub label: String,
    /// The part before `:` (`aws`, `country`).
    pub provider: String,
    /// The part after `:` (a region, a country code).
    pub region: String,
    /// Requests.
    pub requests: u64,
    /// Bytes.
    pub bytes: u64,
    /// Of which from mirrors.
    pub mirror_bytes: u64,
    /// Of which from the upstream.
    pub upstream_bytes: u64,
    /// What its traffic cost.
    pub cost_usd: f64,
    /// What it would have cost from the upstream.
    pub counterfactual_usd: f64,
    /// Whether a mirror serves it by its exact label or a glob (not only `"*"`).
    pub own_mirror: bool,
}

/// Bytes by location over time.
#[derive(Debug, Clone, Serialize)]
pub struct OverTime {
    /// 3600 (hours) or 86400 (days, when the lines span more than 3 days).
    pub bucket_seconds: u64,
    /// The buckets' starts.
    pub buckets: Vec<String>,
    /// One series per location shown (and `other`).
    pub series: Vec<Series>,
}

/// One location's bytes per bucket.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// The location label (`(none)`, `other`).
    pub label: String,
    /// Bytes per bucket.
    pub bytes: Vec<u64>,
}

/// An object a mirror should have served.
#[derive(Debug, Clone, Serialize)]
pub struct MissingRow {
    /// The mirror whose inventory lacks it.
    pub mirror: String,
    /// `sha256:<hex>` or `/path`.
    pub object: String,
    /// A repository it was asked from.
    pub repository: String,
    /// Requests sent to the upstream for it.
    pub requests: u64,
    /// Bytes.
    pub bytes: u64,
}

/// A mirror out of the routing.
#[derive(Debug, Clone, Serialize)]
pub struct DownRow {
    /// The mirror.
    pub mirror: String,
    /// Requests the upstream answered for objects it lists.
    pub requests: u64,
    /// Bytes.
    pub bytes: u64,
    /// First such request.
    pub first: String,
    /// Last such request.
    pub last: String,
    /// Distinct hours with such requests.
    pub hours: u64,
}
