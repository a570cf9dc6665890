//! The published file formats, each read into the [`Builder`]. Provider files gain fields over
//! time, so unknown fields are ignored here (unlike in the operator's own config).

use std::collections::hash_map::{Entry, HashMap};
use std::fs;
use std::path::Path;

use maxminddb::{Reader, WithinOptions};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::prefix::Prefix;
use crate::{Builder, LocateError, Source};

/// AWS `ip-ranges.json`.
#[derive(Deserialize)]
struct AwsFile {
    prefixes: Vec<AwsV4>,
    ipv6_prefixes: Vec<AwsV6>,
}

#[derive(Deserialize)]
struct AwsV4 {
    ip_prefix: String,
    region: String,
}

#[derive(Deserialize)]
struct AwsV6 {
    ipv6_prefix: String,
    region: String,
}

/// Google Cloud `cloud.json`.
#[derive(Deserialize)]
struct GcpFile {
    prefixes: Vec<GcpPrefix>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GcpPrefix {
    ipv4_prefix: Option<String>,
    ipv6_prefix: Option<String>,
    scope: String,
}

/// Azure `ServiceTags_Public_*.json`.
#[derive(Deserialize)]
struct AzureFile {
    values: Vec<AzureTag>,
}

#[derive(Deserialize)]
struct AzureTag {
    properties: AzureProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AzureProperties {
    region: String,
    address_prefixes: Vec<String>,
}

/// The part of a GeoIP2/GeoLite2 Country (or City) record we use.
#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    registered_country: Option<IsoCode<'a>>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    iso_code: Option<&'a str>,
}

impl CountryRecord<'_> {
    /// `country`, else `registered_country`, which MaxMind sets alone for networks with no
    /// physical country (anycast, satellite, some mobile operators).
    fn iso_code(&self) -> Option<&str> {
        [&self.country, &self.registered_country]
            .into_iter()
            .flatten()
            .find_map(|c| c.iso_code.filter(|c| !c.is_empty()))
    }
}

pub(crate) fn aws(path: &Path, read: Read<'_>, b: &mut Builder) -> Result<(), LocateError> {
    let file: AwsFile = read_json(path, read)?;
    let v4 = file.prefixes.iter().map(|p| (&p.ip_prefix, &p.region));
    let v6 = file.ipv6_prefixes.iter().map(|p| (&p.ipv6_prefix, &p.region));
    for (prefix, region) in v4.chain(v6) {
        // "GLOBAL" (CloudFront and other edge services) is kept as a label of its own.
        let label = b.label(&format!("aws:{region}"));
        b.add(parse(path, prefix)?, label, Source::Aws);
    }
    Ok(())
}

pub(crate) fn gcp(path: &Path, read: Read<'_>, b: &mut Builder) -> Result<(), LocateError> {
    let file: GcpFile = read_json(path, read)?;
    for entry in &file.prefixes {
        let label = b.label(&format!("gcp:{}", entry.scope));
        let prefixes: Vec<&String> = entry.ipv4_prefix.iter().chain(&entry.ipv6_prefix).collect();
        if prefixes.is_empty() {
            let message = format!("the entry with scope {:?} has neither ipv4Prefix nor ipv6Prefix", entry.scope);
            return Err(LocateError::Format { path: path.into(), message });
        }
        for prefix in prefixes {
            b.add(parse(path, prefix)?, label, Source::Gcp);
        }
    }
    Ok(())
}

pub(crate) fn azure(path: &Path, read: Read<'_>, b: &mut Builder) -> Result<(), LocateError> {
    let file: AzureFile = read_json(path, read)?;
    // A tag with an empty region (AzureCloud, Storage, ...) is global: it spans every region, and
    // its prefixes reappear in the regional tags, so it says nothing about where a client is.
    for tag in file.values.iter().filter(|tag| !tag.properties.region.is_empty()) {
        let label = b.label(&format!("azure:{}", tag.properties.region));
        for prefix in &tag.properties.address_prefixes {
            b.add(parse(path, prefix)?, label, Source::Azure);
        }
    }
    Ok(())
}

/// Reads every network of a MaxMind DB into the builder as a country span. The database is read
/// once here and not kept: the flattened table answers country lookups as fast as cloud ones.
pub(crate) fn country(path: &Path, read: Read<'_>, b: &mut Builder) -> Result<(), LocateError> {
    let err = |source| LocateError::Country { path: path.into(), source };
    let reader = Reader::from_source(read_bytes(path, read)?).map_err(err)?;
    // Networks share records (one per country), so each record is decoded once.
    let mut labels: HashMap<usize, Option<u32>> = HashMap::new();
    for network in reader.networks(WithinOptions::default()).map_err(err)? {
        let network = network.map_err(err)?;
        let Some(offset) = network.offset() else { continue };
        let label = match labels.entry(offset) {
            Entry::Occupied(known) => *known.get(),
            Entry::Vacant(new) => {
                let record: Option<CountryRecord> = network.decode().map_err(err)?;
                let code = record.as_ref().and_then(CountryRecord::iso_code);
                *new.insert(code.map(|code| b.label(&format!("country:{code}"))))
            }
        };
        let Some(label) = label else { continue };
        let net = network.network().map_err(err)?;
        let prefix = Prefix::new(net.network(), net.prefix()).map_err(|message| format_error(path, message))?;
        b.add(prefix, label, Source::Country);
    }
    if !labels.values().any(Option::is_some) {
        let message = "no record has country.iso_code or registered_country.iso_code: not a country database";
        return Err(format_error(path, message.into()));
    }
    Ok(())
}

/// How a source's bytes are read: the file at the path, or what the caller fetched for it.
pub(crate) type Read<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

/// The file system, for [`Read`].
pub(crate) fn from_disk(path: &Path) -> std::io::Result<Vec<u8>> {
    fs::read(path)
}

fn read_bytes(path: &Path, read: Read<'_>) -> Result<Vec<u8>, LocateError> {
    read(path).map_err(|source| LocateError::Read { path: path.into(), source })
}

fn read_json<T: DeserializeOwned>(path: &Path, read: Read<'_>) -> Result<T, LocateError> {
    serde_json::from_slice(&read_bytes(path, read)?).map_err(|source| LocateError::Json { path: path.into(), source })
}

fn parse(path: &Path, prefix: &str) -> Result<Prefix, LocateError> {
    prefix.parse().map_err(|message| format_error(path, format!("bad prefix {prefix:?}: {message}")))
}

fn format_error(path: &Path, message: String) -> LocateError {
    LocateError::Format { path: path.into(), message }
}
