//! A minimal MaxMind DB writer, for tests only: no GeoLite2 file can be shipped or fetched here.
//!
//! Format 2.0 as the public spec lays it out: a binary search tree of 24-bit records (a record
//! below the node count points to a node, equal to it means "no data", above it points into the
//! data section), 16 zero bytes, the data section, then "\xAB\xCD\xEFMaxMind.com" and the
//! metadata map. The tree is IPv6; IPv4 networks live under ::/96, where readers look them up.

use std::net::IpAddr;

#[derive(Clone, Copy)]
enum Record {
    Empty,
    Node(usize),
    Data(usize),
}

/// A country database mapping each `(network, key, iso_code)` to `{key: {"iso_code": iso_code}}`,
/// where `key` is "country" or "registered_country". Networks must not nest.
pub(crate) fn country_db(networks: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut tree = vec![[Record::Empty; 2]];
    let mut data = Vec::new();
    for &(network, key, iso_code) in networks {
        let (addr, len) = network.split_once('/').unwrap();
        let len: u32 = len.parse().unwrap();
        let (bits, len) = match addr.parse().unwrap() {
            IpAddr::V4(a) => (u128::from(u32::from(a)), len + 96),
            IpAddr::V6(a) => (u128::from(a), len),
        };
        let offset = data.len();
        map(&mut data, 1);
        string(&mut data, key);
        map(&mut data, 1);
        string(&mut data, "iso_code");
        string(&mut data, iso_code);

        let mut node = 0;
        for depth in 0..len - 1 {
            let bit = (bits >> (127 - depth)) as usize & 1;
            node = match tree[node][bit] {
                Record::Node(next) => next,
                Record::Empty => {
                    tree.push([Record::Empty; 2]);
                    tree[node][bit] = Record::Node(tree.len() - 1);
                    tree.len() - 1
                }
                Record::Data(_) => panic!("{network} is inside another network"),
            };
        }
        tree[node][(bits >> (128 - len)) as usize & 1] = Record::Data(offset);
    }

    let count = tree.len();
    let mut out = Vec::new();
    for record in tree.iter().flatten() {
        let value = match *record {
            Record::Node(n) => n,
            Record::Empty => count,
            Record::Data(offset) => count + 16 + offset,
        };
        out.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
    }
    out.extend([0; 16]);
    out.extend(data);
    out.extend(b"\xAB\xCD\xEFMaxMind.com");
    map(&mut out, 9);
    string(&mut out, "binary_format_major_version");
    uint(&mut out, UINT16, 2);
    string(&mut out, "binary_format_minor_version");
    uint(&mut out, UINT16, 0);
    string(&mut out, "build_epoch");
    uint(&mut out, UINT64, 1_795_000_000);
    string(&mut out, "database_type");
    string(&mut out, "Ferry-Test-Country");
    string(&mut out, "description");
    map(&mut out, 1);
    string(&mut out, "en");
    string(&mut out, "Ferry test country database");
    string(&mut out, "ip_version");
    uint(&mut out, UINT16, 6);
    string(&mut out, "languages");
    control(&mut out, ARRAY, 1);
    string(&mut out, "en");
    string(&mut out, "node_count");
    uint(&mut out, UINT32, count as u64);
    string(&mut out, "record_size");
    uint(&mut out, UINT16, 24);
    out
}

const STRING: u8 = 2;
const UINT16: u8 = 5;
const UINT32: u8 = 6;
const MAP: u8 = 7;
const UINT64: u8 = 9;
const ARRAY: u8 = 11;

/// A control byte: type in the top 3 bits (types above 7 go in a second byte as type - 7), size
/// in the low 5 (every size here is below 29).
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    assert!(size < 29);
    if kind <= 7 {
        out.push(kind << 5 | size as u8);
    } else {
        out.extend([size as u8, kind - 7]);
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    control(out, STRING, s.len());
    out.extend(s.as_bytes());
}

fn map(out: &mut Vec<u8>, pairs: usize) {
    control(out, MAP, pairs);
}

/// Unsigned integers are big-endian without leading zero bytes.
fn uint(out: &mut Vec<u8>, kind: u8, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(out, kind, 8 - skip);
    out.extend(&bytes[skip..]);
}
