//! Lookup time over the full published AWS + Google Cloud ranges (the snapshot in shared/).
// `criterion_group!` defines a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferry_locate::{LocationsConfig, Locator};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/cloud-ranges/");
const BATCH: usize = 1024;

fn config() -> LocationsConfig {
    LocationsConfig {
        aws: vec![PathBuf::from(DATA).join("aws-ip-ranges.json")],
        gcp: vec![PathBuf::from(DATA).join("gcp-cloud.json")],
        ..LocationsConfig::default()
    }
}

/// xorshift64*: deterministic addresses, so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Every published prefix as (address, length), read from the files.
fn published() -> Vec<(IpAddr, u8)> {
    let mut out = Vec::new();
    for (file, keys) in
        [("aws-ip-ranges.json", ["ip_prefix", "ipv6_prefix"]), ("gcp-cloud.json", ["ipv4Prefix", "ipv6Prefix"])]
    {
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(format!("{DATA}{file}")).unwrap()).unwrap();
        for list in ["prefixes", "ipv6_prefixes"] {
            for entry in json[list].as_array().into_iter().flatten() {
                let text = keys.iter().find_map(|k| entry[k].as_str()).unwrap();
                let (addr, len) = text.split_once('/').unwrap();
                out.push((addr.parse().unwrap(), len.parse().unwrap()));
            }
        }
    }
    out
}

/// A random address inside the prefix.
fn inside(rng: &mut Rng, (addr, len): (IpAddr, u8)) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) | (rng.next() as u32).checked_shr(len.into()).unwrap_or(0)).into()),
        IpAddr::V6(a) => {
            let r = (u128::from(rng.next()) << 64) | u128::from(rng.next());
            IpAddr::V6((u128::from(a) | r.checked_shr(len.into()).unwrap_or(0)).into())
        }
    }
}

/// `BATCH` addresses of one kind: inside random published IPv4 or IPv6 prefixes, or misses
/// (random IPv4 and global unicast IPv6 addresses that no range holds).
fn addresses(locator: &Locator, kind: &str) -> Vec<IpAddr> {
    let pool: Vec<(IpAddr, u8)> = match kind {
        "miss" => vec![("0.0.0.0".parse().unwrap(), 0), ("2000::".parse().unwrap(), 3)],
        _ => published().into_iter().filter(|(a, _)| a.is_ipv6() == (kind == "v6_hit")).collect(),
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(BATCH);
    while out.len() < BATCH {
        let prefix = pool[rng.next() as usize % pool.len()];
        let ip = inside(&mut rng, prefix);
        if (kind == "miss") == locator.locate(ip).is_none() {
            out.push(ip);
        }
    }
    out
}

fn lookup(c: &mut Criterion) {
    let started = Instant::now();
    let locator = Locator::load(&config()).unwrap();
    eprintln!("loaded in {:?}: {locator:?}", started.elapsed());

    let mut group = c.benchmark_group("locate");
    group.throughput(Throughput::Elements(BATCH as u64));
    let kinds: Vec<(&str, Vec<IpAddr>)> = ["v4_hit", "v6_hit", "miss"].map(|k| (k, addresses(&locator, k))).into();
    // A random interleaving, so the branch predictor cannot learn the sequence of families.
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mixed: Vec<IpAddr> =
        (0..BATCH).map(|_| kinds[rng.next() as usize % 3].1[rng.next() as usize % BATCH]).collect();
    for (name, ips) in kinds.iter().map(|(k, ips)| (*k, ips)).chain([("mixed", &mixed)]) {
        group.bench_function(name, |b| {
            b.iter(|| {
                // Addresses come from memory, as in a server; black_box on each one would add a
                // store-forwarding stall that no caller has.
                for &ip in ips {
                    black_box(locator.locate(ip));
                }
            })
        });
    }
    group.finish();

    c.bench_function("load_aws_gcp", |b| b.iter(|| Locator::load(&config()).unwrap()));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = lookup
}
criterion_main!(benches);
