//! `X-Forwarded-For` (case 12 of docs/request-handling.md): the client address from the headers'
//! raw bytes, with its own dotted-IPv4 parser. Checked against a plain model built on the
//! standard library's address parser.
//!
//! Input: the first byte picks the peer and the trusted proxies; the rest, split at `\n`, are the
//! values of the request's `X-Forwarded-For` headers, in order.
#![no_main]

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use ferry_serve::{Config, Snapshot};
use libfuzzer_sys::fuzz_target;

fn snapshot(trusted: &str) -> Snapshot {
    let yaml = format!("trusted_proxies: {trusted}\nupstream:\n  registry: https://registry.example\n");
    Snapshot::from_config(Config::from_yaml(&yaml, "fuzz").unwrap(), Path::new(".")).unwrap()
}

fn snapshots() -> &'static [Snapshot; 2] {
    static SNAPSHOTS: OnceLock<[Snapshot; 2]> = OnceLock::new();
    SNAPSHOTS.get_or_init(|| {
        [snapshot(r#"["10.0.0.0/8", "192.168.1.1", "::1", "fd00::/8"]"#), snapshot(r#"["0.0.0.0/0", "::/0"]"#)]
    })
}

/// The rule, written plainly: the peer unless it is trusted; else the right-most entry that is
/// not a trusted proxy, or the left-most if all are; the peer when any entry is malformed or
/// the headers are too long.
fn model(snapshot: &Snapshot, peer: IpAddr, values: &[&[u8]]) -> IpAddr {
    let peer = peer.to_canonical();
    if !snapshot.is_trusted_proxy(peer) || values.iter().map(|v| v.len()).sum::<usize>() > ferry_serve::client::MAX_XFF
    {
        return peer;
    }
    let mut entries = Vec::new();
    for value in values {
        for entry in value.split(|&b| b == b',') {
            let parsed = std::str::from_utf8(entry.trim_ascii()).ok().and_then(|s| s.parse::<IpAddr>().ok());
            match parsed {
                Some(ip) => entries.push(ip.to_canonical()),
                None => return peer,
            }
        }
    }
    entries.iter().rev().find(|ip| !snapshot.is_trusted_proxy(**ip)).or(entries.first()).copied().unwrap_or(peer)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let snapshot = &snapshots()[usize::from(pick & 1)];
    let peers: [IpAddr; 4] = [
        [10, 1, 2, 3].into(),
        [203, 0, 113, 7].into(),
        "::ffff:10.9.9.9".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    ];
    let peer = peers[usize::from(pick >> 1) % 4];
    let values: Vec<&[u8]> = if rest.is_empty() { vec![] } else { rest.split(|&b| b == b'\n').collect() };
    let got = ferry_serve::fuzzing::client_address_from(snapshot, peer, &values);
    assert_eq!(got, model(snapshot, peer, &values), "peer {peer}, values {values:?}");
});
