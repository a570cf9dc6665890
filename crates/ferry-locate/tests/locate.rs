//! Answers pinned to the published snapshot in shared/data/cloud-ranges, the precedence rules,
//! each file format, and bad input.

mod mmdb;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ferry_locate::{LocationsConfig, Locator, Match, Source};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/cloud-ranges/");

fn data(file: &str) -> PathBuf {
    Path::new(DATA).join(file)
}

fn clouds() -> LocationsConfig {
    LocationsConfig { aws: vec![data("aws-ip-ranges.json")], gcp: vec![data("gcp-cloud.json")], ..Default::default() }
}

fn cidrs(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries.iter().map(|&(cidr, label)| (cidr.into(), label.into())).collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn explained(locator: &Locator, addr: &str) -> Option<(String, String, Source)> {
    locator.explain(ip(addr)).map(|m: Match| (m.label.into(), m.prefix, m.source))
}

fn write(dir: &tempfile::TempDir, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn published_snapshot_answers() {
    let locator = Locator::load(&clouds()).unwrap();
    for (addr, label) in [
        ("3.128.0.5", Some("aws:us-east-2")),
        ("2600:1f16:8000::10", Some("aws:us-east-2")),
        ("64.252.69.10", Some("aws:us-east-1")),
        ("64.252.90.1", Some("aws:GLOBAL")),
        ("34.76.1.1", Some("gcp:europe-west1")),
        ("81.2.69.160", None),
        ("2001:db8::1", None),
    ] {
        assert_eq!(locator.locate(ip(addr)), label, "{addr}");
    }
    let aws = |label: &str, prefix: &str| Some((label.into(), prefix.into(), Source::Aws));
    assert_eq!(explained(&locator, "3.128.0.5"), aws("aws:us-east-2", "3.128.0.0/15"));
    assert_eq!(explained(&locator, "64.252.69.10"), aws("aws:us-east-1", "64.252.69.0/24"));
    assert_eq!(explained(&locator, "64.252.90.1"), aws("aws:GLOBAL", "64.252.64.0/18"));
    assert_eq!(explained(&locator, "34.76.1.1").unwrap().2, Source::Gcp);
    assert_eq!(explained(&locator, "81.2.69.160"), None);
}

#[test]
fn ipv4_mapped_ipv6_is_looked_up_as_ipv4() {
    let locator = Locator::load(&clouds()).unwrap();
    assert_eq!(locator.locate(ip("::ffff:3.128.0.5")), Some("aws:us-east-2"));
    assert_eq!(locator.locate(ip("::ffff:34.76.1.1")), Some("gcp:europe-west1"));
    assert_eq!(explained(&locator, "::ffff:64.252.69.10").unwrap().1, "64.252.69.0/24");
}

#[test]
fn operator_cidrs_win_ties_and_lose_to_longer_cloud_prefixes() {
    let config = LocationsConfig {
        cidrs: cidrs(&[
            ("3.128.0.0/15", "isp:tie"),          // the same prefix as AWS us-east-2
            ("64.252.64.0/18", "isp:outer"),      // the same as AWS GLOBAL, which holds a longer us-east-1 /24
            ("34.76.1.0/24", "isp:inner"),        // longer than the GCP prefix around it
            ("2600:1f16::/32", "isp:v6"),         // shorter than the AWS /36 it holds
            ("203.0.113.0/24", "isp:example-nz"), // in no cloud range
        ]),
        ..clouds()
    };
    let locator = Locator::load(&config).unwrap();
    let cidr = |label: &str, prefix: &str| Some((label.into(), prefix.into(), Source::Cidrs));
    assert_eq!(explained(&locator, "3.128.0.5"), cidr("isp:tie", "3.128.0.0/15"));
    assert_eq!(explained(&locator, "64.252.90.1"), cidr("isp:outer", "64.252.64.0/18"));
    assert_eq!(locator.locate(ip("64.252.69.10")), Some("aws:us-east-1"));
    assert_eq!(explained(&locator, "34.76.1.1"), cidr("isp:inner", "34.76.1.0/24"));
    assert_eq!(locator.locate(ip("34.76.2.1")), Some("gcp:europe-west1"));
    assert_eq!(locator.locate(ip("2600:1f16:8000::10")), Some("aws:us-east-2"));
    assert_eq!(locator.locate(ip("203.0.113.9")), Some("isp:example-nz"));
}

/// Shaped like Azure's ServiceTags_Public_*.json (trimmed): the global tags carry an empty region.
const AZURE: &str = r#"{
  "changeNumber": 331,
  "cloud": "Public",
  "values": [
    {"name": "AzureCloud", "id": "AzureCloud",
     "properties": {"changeNumber": 120, "region": "", "regionId": 0, "platform": "Azure", "systemService": "",
                    "addressPrefixes": ["4.0.0.0/8", "20.38.0.0/16", "2603:1000::/24"], "networkFeatures": ["API", "NSG"]}},
    {"name": "AzureCloud.australiaeast", "id": "AzureCloud.australiaeast",
     "properties": {"changeNumber": 61, "region": "australiaeast", "regionId": 3, "platform": "Azure", "systemService": "",
                    "addressPrefixes": ["4.198.0.0/16", "20.37.192.0/19", "2603:1010::/46"], "networkFeatures": ["API", "NSG"]}},
    {"name": "Storage.AustraliaEast", "id": "Storage.AustraliaEast",
     "properties": {"changeNumber": 40, "region": "australiaeast", "regionId": 3, "platform": "Azure", "systemService": "AzureStorage",
                    "addressPrefixes": ["20.38.112.0/23", "2603:1010::/46"], "networkFeatures": ["API", "NSG"]}},
    {"name": "AzureCloud.westeurope", "id": "AzureCloud.westeurope",
     "properties": {"changeNumber": 88, "region": "westeurope", "regionId": 18, "platform": "Azure", "systemService": "",
                    "addressPrefixes": ["4.175.0.0/16", "2603:1020:200::/46"], "networkFeatures": ["API", "NSG"]}}
  ]
}"#;

#[test]
fn azure_service_tags_by_region_skipping_global_tags() {
    let dir = tempfile::tempdir().unwrap();
    let locator =
        Locator::load(&LocationsConfig { azure: vec![write(&dir, "ServiceTags.json", AZURE)], ..Default::default() })
            .unwrap();
    assert_eq!(
        explained(&locator, "4.198.7.1"),
        Some(("azure:australiaeast".into(), "4.198.0.0/16".into(), Source::Azure))
    );
    assert_eq!(locator.locate(ip("20.38.113.4")), Some("azure:australiaeast"));
    assert_eq!(locator.locate(ip("2603:1010::5")), Some("azure:australiaeast"));
    assert_eq!(locator.locate(ip("2603:1020:200::5")), Some("azure:westeurope"));
    assert_eq!(locator.locate(ip("4.175.1.1")), Some("azure:westeurope"));
    // Only in the global AzureCloud tag: no region, no label.
    assert_eq!(locator.locate(ip("4.1.2.3")), None);
    assert_eq!(locator.locate(ip("20.38.1.1")), None);
}

#[test]
fn country_database_answers_where_no_range_does() {
    let db = mmdb::country_db(&[
        ("81.2.69.0/24", "country", "GB"),
        ("3.128.0.0/24", "country", "US"), // longer than AWS's 3.128.0.0/15, but a range always wins
        ("203.0.113.0/25", "registered_country", "NZ"),
        ("2001:db8::/32", "country", "NZ"),
    ]);
    maxminddb::Reader::from_source(&db).unwrap().verify().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = LocationsConfig { countries: Some(write(&dir, "country.mmdb", db)), ..clouds() };
    let locator = Locator::load(&config).unwrap();
    assert_eq!(explained(&locator, "81.2.69.160"), Some(("country:GB".into(), "81.2.69.0/24".into(), Source::Country)));
    assert_eq!(locator.locate(ip("::ffff:81.2.69.160")), Some("country:GB"));
    assert_eq!(locator.locate(ip("3.128.0.5")), Some("aws:us-east-2"));
    assert_eq!(locator.locate(ip("203.0.113.5")), Some("country:NZ"));
    assert_eq!(locator.locate(ip("203.0.113.200")), None);
    assert_eq!(
        explained(&locator, "2001:db8:1::1"),
        Some(("country:NZ".into(), "2001:db8::/32".into(), Source::Country))
    );
    assert_eq!(locator.locate(ip("2001:db9::1")), None);
}

#[test]
fn config_reads_from_yaml_and_rejects_unknown_fields() {
    let yaml = r#"
aws: [/etc/ferry/aws-ip-ranges.json]
gcp: [/etc/ferry/gcp-cloud.json]
azure: [/etc/ferry/ServiceTags.json]
cidrs: {"203.0.113.0/24": "isp:example-nz"}
countries: /etc/ferry/country.mmdb
"#;
    let config: LocationsConfig = serde_yaml_ng::from_str(yaml).unwrap();
    assert_eq!(config.azure, [PathBuf::from("/etc/ferry/ServiceTags.json")]);
    assert_eq!(config.cidrs, cidrs(&[("203.0.113.0/24", "isp:example-nz")]));
    assert_eq!(config.countries, Some(PathBuf::from("/etc/ferry/country.mmdb")));
    assert_eq!(serde_yaml_ng::from_str::<LocationsConfig>("{}").unwrap(), LocationsConfig::default());
    let typo = serde_yaml_ng::from_str::<LocationsConfig>("country: /etc/ferry/country.mmdb").unwrap_err();
    assert!(typo.to_string().contains("unknown field `country`"), "{typo}");
    assert_eq!(Locator::load(&LocationsConfig::default()).unwrap().locate(ip("3.128.0.5")), None);
}

#[test]
fn errors_name_the_file_or_entry() {
    let dir = tempfile::tempdir().unwrap();
    let error = |config: LocationsConfig| Locator::load(&config).unwrap_err().to_string();

    let missing = dir.path().join("missing.json");
    let message = error(LocationsConfig { aws: vec![missing.clone()], ..Default::default() });
    assert!(message.starts_with(&format!("{}: ", missing.display())), "{message}");

    let broken = write(&dir, "broken.json", "{\"prefixes\": [\n  {\"ip_prefix\": \"3.5.140.0/22\",, }\n]}");
    let message = error(LocationsConfig { aws: vec![broken.clone()], ..Default::default() });
    assert!(message.starts_with(&format!("{}: ", broken.display())) && message.contains("line 2 column"), "{message}");

    // A GCP file given as AWS: the field serde_json misses, with its position.
    let message = error(LocationsConfig { aws: vec![data("gcp-cloud.json")], ..Default::default() });
    assert!(message.contains("gcp-cloud.json: missing field `ip_prefix` at line"), "{message}");

    let bad_prefix =
        write(&dir, "gcp.json", r#"{"prefixes": [{"ipv4Prefix": "34.1.208.0/33", "scope": "africa-south1"}]}"#);
    let message = error(LocationsConfig { gcp: vec![bad_prefix.clone()], ..Default::default() });
    assert_eq!(
        message,
        format!("{}: bad prefix \"34.1.208.0/33\": prefix length 33 is longer than 32", bad_prefix.display())
    );

    let no_prefix = write(&dir, "gcp2.json", r#"{"prefixes": [{"service": "Google Cloud", "scope": "us-east1"}]}"#);
    let message = error(LocationsConfig { gcp: vec![no_prefix], ..Default::default() });
    assert!(
        message.contains("gcp2.json: the entry with scope \"us-east1\" has neither ipv4Prefix nor ipv6Prefix"),
        "{message}"
    );

    for (cidr, why) in [
        ("203.0.113.7/24", "host bits are set (the network is 203.0.113.0/24)"),
        ("203.0.113.0", "expected ADDRESS/LENGTH"),
        ("nz.example/24", "\"nz.example\" is not an IP address"),
    ] {
        let message = error(LocationsConfig { cidrs: cidrs(&[(cidr, "isp:x")]), ..Default::default() });
        assert_eq!(message, format!("locations.cidrs: {cidr:?}: {why}"));
    }
    for label in ["", "isp example"] {
        let message = error(LocationsConfig { cidrs: cidrs(&[("203.0.113.0/24", label)]), ..Default::default() });
        assert_eq!(
            message,
            format!("locations.cidrs: \"203.0.113.0/24\": the label {label:?} is not made of A-Z a-z 0-9 : . _ / -")
        );
    }

    let garbage = write(&dir, "garbage.mmdb", b"not a database");
    let message = error(LocationsConfig { countries: Some(garbage.clone()), ..Default::default() });
    assert!(message.starts_with(&format!("{}: not a readable MaxMind DB: ", garbage.display())), "{message}");

    let no_country = write(&dir, "asn.mmdb", mmdb::country_db(&[("81.2.69.0/24", "autonomous_system", "AS1")]));
    let message = error(LocationsConfig { countries: Some(no_country), ..Default::default() });
    assert!(message.contains("asn.mmdb: no record has country.iso_code"), "{message}");
}

#[test]
fn locator_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Locator>();
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn wide(&mut self) -> u128 {
        u128::from(self.next()) << 64 | u128::from(self.next())
    }
}

/// A prefix for the naive oracle: family, first and last address, length, label, operator's or not.
struct Naive {
    v6: bool,
    first: u128,
    last: u128,
    len: u8,
    label: String,
    operator: bool,
}

fn naive(text: &str, label: String, operator: bool) -> Naive {
    let (addr, len) = text.split_once('/').unwrap();
    let len: u8 = len.parse().unwrap();
    let (v6, bits, width) = match ip(addr) {
        IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (true, u128::from(a), 128),
    };
    Naive { v6, first: bits, last: bits | host(width, len), len, label, operator }
}

/// The host bits of a `width`-bit prefix of `len` bits.
fn host(width: u8, len: u8) -> u128 {
    1u128.checked_shl((width - len).into()).map_or(u128::MAX, |bit| bit - 1)
}

fn text(v6: bool, bits: u128, len: u8) -> String {
    let addr: IpAddr = if v6 { IpAddr::V6(bits.into()) } else { IpAddr::V4((bits as u32).into()) };
    format!("{addr}/{len}")
}

/// The flattened table must agree with the definition: scan every prefix, keep the longest,
/// operator prefixes winning ties. Addresses are drawn inside random prefixes and just outside
/// them (where intervals meet), plus uniformly random ones; operator prefixes are drawn equal to,
/// inside and around published ones so that every kind of overlap occurs.
#[test]
fn flattened_table_equals_a_linear_longest_prefix_scan() {
    let mut prefixes = Vec::new();
    for (file, source, keys) in [
        ("aws-ip-ranges.json", "aws", ["ip_prefix", "ipv6_prefix", "region"]),
        ("gcp-cloud.json", "gcp", ["ipv4Prefix", "ipv6Prefix", "scope"]),
    ] {
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(data(file)).unwrap()).unwrap();
        for list in ["prefixes", "ipv6_prefixes"] {
            for entry in json[list].as_array().into_iter().flatten() {
                let prefix = keys[..2].iter().find_map(|k| entry[k].as_str()).unwrap();
                prefixes.push(naive(prefix, format!("{source}:{}", entry[keys[2]].as_str().unwrap()), false));
            }
        }
    }

    let mut rng = Rng(0x5DEE_CE66_D1CE_5EED);
    let mut operator = BTreeMap::new();
    for i in 0..300 {
        let p = &prefixes[rng.next() as usize % prefixes.len()];
        let width = if p.v6 { 128 } else { 32 };
        let len = match i % 3 {
            0 => p.len,                                            // a tie
            1 => (p.len + 1 + (rng.next() % 4) as u8).min(width),  // inside
            _ => p.len.saturating_sub(1 + (rng.next() % 4) as u8), // around
        };
        let inside = p.first | (rng.wide() & (p.last - p.first));
        let bits = inside & !host(width, len);
        operator.insert(text(p.v6, bits, len), format!("op:{i}"));
    }
    prefixes.extend(operator.iter().map(|(cidr, label)| naive(cidr, label.clone(), true)));
    let locator = Locator::load(&LocationsConfig { cidrs: operator, ..clouds() }).unwrap();

    let oracle = |v6: bool, bits: u128| {
        prefixes
            .iter()
            .filter(|p| p.v6 == v6 && p.first <= bits && bits <= p.last)
            .max_by_key(|p| (p.len, p.operator))
            .map(|p| p.label.as_str())
    };
    for _ in 0..4000 {
        let p = &prefixes[rng.next() as usize % prefixes.len()];
        let top = host(if p.v6 { 128 } else { 32 }, 0);
        let r = rng.wide();
        for bits in
            [p.first | (r & (p.last - p.first)), p.first.wrapping_sub(1) & top, p.last.wrapping_add(1) & top, r & top]
        {
            let addr: IpAddr = if p.v6 { IpAddr::V6(bits.into()) } else { IpAddr::V4((bits as u32).into()) };
            assert_eq!(locator.locate(addr), oracle(p.v6, bits), "{addr}");
        }
    }
}
