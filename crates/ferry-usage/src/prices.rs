//! The price table (docs/report.md, "Prices"): internet egress per GB by provider and region,
//! with tiers; transfer inside a region and between regions of one provider; request prices;
//! and where the upstream and each mirror are. A default ships in the crate
//! (`prices/default.yaml`, with its sources and date); a user's file overrides it, provider by
//! provider and origin by origin.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Bytes in one priced GB: the clouds bill by GiB.
pub const GB: f64 = (1u64 << 30) as f64;

/// The default table, shipped with Ferry.
pub const DEFAULT: &str = include_str!("../prices/default.yaml");

/// One tier: `usd_per_gb` for the bytes up to `up_to_gb` (cumulative, in the period), or for all
/// the rest when `up_to_gb` is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Upper bound of the tier, in GB since the first byte of the period; none for the last.
    #[serde(default)]
    pub up_to_gb: Option<f64>,
    /// Price of one GB in this tier.
    pub usd_per_gb: f64,
}

/// One provider's prices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Internet egress, tiered.
    #[serde(default)]
    pub internet: Vec<Tier>,
    /// Internet egress from particular regions, where it differs from `internet`.
    #[serde(default)]
    pub internet_by_region: BTreeMap<String, Vec<Tier>>,
    /// To a client in the same region of the same provider, per GB.
    #[serde(default)]
    pub same_region_per_gb: f64,
    /// To a client in another region of the same provider, per GB.
    #[serde(default)]
    pub inter_region_per_gb: f64,
    /// Per 10,000 GET requests answered by the origin.
    #[serde(default)]
    pub requests_per_10k: f64,
}

/// The whole table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// Where the prices come from (pages, their dates).
    #[serde(default)]
    pub source: String,
    /// When they were read.
    #[serde(default)]
    pub date: String,
    /// Where the upstream origin is, as a location label (`gcp:us-central1`).
    #[serde(default)]
    pub upstream: String,
    /// Where each mirror is, by name, as a location label (`aws:us-east-2`).
    #[serde(default)]
    pub origins: BTreeMap<String, String>,
    /// Prices by provider (the part of a label before `:`, `aws`, `gcp`, `azure`).
    #[serde(default)]
    pub providers: BTreeMap<String, Provider>,
}

impl Prices {
    /// Parses a table; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Prices, Error> {
        ferry_yaml::check(text).map_err(|e| Error::Input(format!("{origin}: {e}")))?;
        let prices: Prices = serde_yaml_ng::from_str(text).map_err(|e| Error::Input(format!("{origin}: {e}")))?;
        for (name, p) in &prices.providers {
            for tiers in std::iter::once(&p.internet).chain(p.internet_by_region.values()) {
                let bounds: Vec<_> = tiers.iter().map(|t| t.up_to_gb).collect();
                let ok = bounds.iter().rev().skip(1).all(Option::is_some)
                    && bounds.windows(2).all(|w| matches!(w, [Some(a), b] if b.is_none_or(|b| b > *a)));
                if !ok {
                    return Err(Error::Input(format!(
                        "{origin}: providers.{name}: tiers must have increasing up_to_gb, only the last without one"
                    )));
                }
            }
        }
        Ok(prices)
    }

    /// The default table.
    pub fn default_table() -> Prices {
        Prices::parse(DEFAULT, "prices/default.yaml").expect("the shipped price table parses")
    }

    /// This table with `other`'s entries over it: its providers, origins, upstream, source and
    /// date replace those of the same name.
    pub fn overridden_by(mut self, other: Prices) -> Prices {
        self.providers.extend(other.providers);
        self.origins.extend(other.origins);
        if !other.upstream.is_empty() {
            self.upstream = other.upstream;
        }
        if !other.source.is_empty() {
            self.source = format!("{}; over: {}", other.source, self.source);
        }
        if !other.date.is_empty() {
            self.date = other.date;
        }
        self
    }

    /// Where an origin (a mirror's name, or `None` for the upstream) is, when the table says.
    pub fn origin_location(&self, mirror: Option<&str>) -> Option<&str> {
        match mirror {
            None => Some(self.upstream.as_str()).filter(|u| !u.is_empty()),
            Some(name) => self.origins.get(name).map(String::as_str),
        }
    }
}

/// How bytes from an origin reach a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    /// Same provider, same region.
    SameRegion,
    /// Same provider, another region.
    InterRegion,
    /// Anything else: the internet.
    Internet,
}

/// The path from an origin at `from` (a label) to a client labelled `to`.
pub fn path(from: &str, to: &str) -> Path {
    let provider = |l: &str| l.split_once(':').map_or(l, |(p, _)| p).to_string();
    if from == to {
        Path::SameRegion
    } else if !to.is_empty() && provider(from) == provider(to) {
        Path::InterRegion
    } else {
        Path::Internet
    }
}

/// The price of `bytes` through `tiers` (0 when there is no tier).
pub fn tiered(tiers: &[Tier], bytes: u64) -> f64 {
    let mut left = bytes as f64 / GB;
    let mut floor = 0.0;
    let mut cost = 0.0;
    for tier in tiers {
        let width = tier.up_to_gb.map_or(f64::INFINITY, |top| top - floor);
        let here = left.min(width);
        cost += here * tier.usd_per_gb;
        left -= here;
        if let Some(top) = tier.up_to_gb {
            floor = top;
        }
        if left <= 0.0 {
            break;
        }
    }
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_parses_and_names_its_sources() {
        let p = Prices::default_table();
        assert!(p.source.contains("aws.amazon.com") && !p.date.is_empty());
        assert!(p.providers.contains_key("aws") && p.providers.contains_key("gcp"));
    }

    #[test]
    fn tiers_price_each_byte_at_its_tier() {
        let tiers = vec![
            Tier { up_to_gb: Some(10.0), usd_per_gb: 0.1 },
            Tier { up_to_gb: Some(20.0), usd_per_gb: 0.05 },
            Tier { up_to_gb: None, usd_per_gb: 0.01 },
        ];
        let gb = 1u64 << 30;
        assert!((tiered(&tiers, 5 * gb) - 0.5).abs() < 1e-9);
        assert!((tiered(&tiers, 15 * gb) - 1.25).abs() < 1e-9);
        assert!((tiered(&tiers, 120 * gb) - 2.5).abs() < 1e-9);
        assert_eq!(tiered(&[], gb), 0.0);
        let bad = "providers:\n  x:\n    internet: [{usd_per_gb: 1}, {up_to_gb: 5, usd_per_gb: 1}]\n";
        assert!(Prices::parse(bad, "p.yaml").is_err());
    }

    #[test]
    fn paths_between_labels() {
        assert_eq!(path("aws:us-east-2", "aws:us-east-2"), Path::SameRegion);
        assert_eq!(path("aws:us-east-2", "aws:eu-west-1"), Path::InterRegion);
        assert_eq!(path("aws:us-east-2", "gcp:us-east1"), Path::Internet);
        assert_eq!(path("aws:us-east-2", ""), Path::Internet);
    }
}
