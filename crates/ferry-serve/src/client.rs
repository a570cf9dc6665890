//! Case 12 of `docs/request-handling.md`: who the client is. The TCP peer, or, behind a trusted
//! proxy, what `X-Forwarded-For` says; parsed from the header bytes on every request, so without
//! allocation and with a dotted-IPv4 parser of its own.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue};

use crate::snapshot::Snapshot;

/// `X-Forwarded-For` headers longer than this (all of them together) are ignored.
pub const MAX_XFF: usize = 4096;

/// Case 12: the client address. The TCP peer, unless it is a trusted proxy: then the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy (the left-most if all are). A
/// malformed or oversized header is ignored (the peer is used). One pass, right to left, with no
/// allocation: the answer is kept while the rest of the list is still checked.
pub fn client_address(snapshot: &Snapshot, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    client_address_from(snapshot, peer, &forwarded_for(headers))
}

/// The raw values of the `X-Forwarded-For` headers, in order.
pub(crate) fn forwarded_for(headers: &HeaderMap) -> Vec<&[u8]> {
    headers.get_all("x-forwarded-for").iter().map(HeaderValue::as_bytes).collect()
}

/// [`client_address`] from the raw values of the request's `X-Forwarded-For` headers, in order.
#[inline]
pub(crate) fn client_address_from(snapshot: &Snapshot, peer: IpAddr, forwarded_for: &[&[u8]]) -> IpAddr {
    let peer = peer.to_canonical();
    if !snapshot.is_trusted_proxy(peer) {
        return peer;
    }
    if forwarded_for.iter().map(|v| v.len()).sum::<usize>() > MAX_XFF {
        return peer;
    }
    let (mut answer, mut leftmost) = (None, None);
    for value in forwarded_for.iter().rev() {
        for entry in value.rsplit(|&b| b == b',') {
            let Some(ip) = parse_ip(entry.trim_ascii()) else { return peer };
            let ip = ip.to_canonical();
            if answer.is_none() && !snapshot.is_trusted_proxy(ip) {
                answer = Some(ip);
            }
            leftmost = Some(ip);
        }
    }
    answer.or(leftmost).unwrap_or(peer)
}

/// An IP address as the standard library parses it. Dotted IPv4, nearly every client, is
/// parsed here directly from the bytes (the standard parser costs as much again as the whole
/// address lookup); it accepts exactly what `Ipv4Addr::from_str` accepts (test
/// `ipv4_parsing_matches_the_standard_library`).
fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    match parse_ipv4(text) {
        Some(v4) => Some(IpAddr::V4(v4)),
        // Whatever else the standard parser accepts has a ':' (IPv6), so the rest is refused.
        None if text.contains(&b':') => std::str::from_utf8(text).ok()?.parse().ok(),
        None => None,
    }
}

/// Four decimal octets separated by `.`, each 0-255 in at most three digits, none with a
/// leading zero but `0` itself. One pass over the bytes.
fn parse_ipv4(text: &[u8]) -> Option<std::net::Ipv4Addr> {
    let (mut octets, mut at) = ([0u8; 4], 0);
    let (mut value, mut digits) = (0u16, 0);
    for &b in text {
        match b {
            b'0'..=b'9' if digits < 3 && !(digits == 1 && value == 0) => {
                value = value * 10 + u16::from(b - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && at < 3 => {
                octets[at] = u8::try_from(value).ok()?;
                (at, value, digits) = (at + 1, 0, 0);
            }
            _ => return None,
        }
    }
    if digits == 0 || at != 3 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(std::net::Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn ipv4_parsing_matches_the_standard_library() {
        let std_v4 = |t: &[u8]| std::str::from_utf8(t).unwrap().parse::<std::net::Ipv4Addr>().ok();
        // Every string of up to 7 characters from "0129." (leading zeros, empty and extra
        // octets, too many dots), then random strings of digits and dots up to 17 long.
        let alphabet = b"0129.";
        let mut strings: Vec<Vec<u8>> = vec![vec![]];
        let mut all = vec![];
        for _ in 0..7 {
            strings = strings.iter().flat_map(|s| alphabet.iter().map(move |&c| [&s[..], &[c]].concat())).collect();
            all.extend(strings.iter().cloned());
        }
        let random = ferry_testkit::images::random_bytes(12, 200_000 * 18);
        for bytes in random.chunks(18) {
            let len = usize::from(bytes[0]) % 18;
            all.push(bytes[1..=len].iter().map(|&b| b"0123456789.."[usize::from(b) % 12]).collect());
        }
        for octets in [[0, 0, 0, 0], [255, 255, 255, 255], [3, 128, 0, 5], [10, 0, 100, 9], [1, 20, 255, 0]] {
            all.push(std::net::Ipv4Addr::from(octets).to_string().into_bytes());
        }
        for text in &all {
            assert_eq!(parse_ipv4(text), std_v4(text), "{:?}", String::from_utf8_lossy(text));
            assert_eq!(parse_ip(text), std::str::from_utf8(text).unwrap().parse().ok());
        }
        for text in ["01.2.3.4", "1.2.3.04", "00.1.1.1", "1.2.3.256", "1.2.3.999", "1..2.3", ".1.2.3.4", "1.2.3.0"] {
            assert_eq!(parse_ipv4(text.as_bytes()), text.parse().ok(), "{text:?}");
        }
        for text in ["2001:db8::1", "::ffff:1.2.3.4", "1.2.3.4 ", "x", "256.1.1.1", "1.2.3.4.", "", "1.2.3.4:80"] {
            assert_eq!(parse_ip(text.as_bytes()), text.parse().ok(), "{text:?}");
        }
    }

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn case_12_client_address() {
        let dir = tempfile::tempdir().unwrap();
        let text = "trusted_proxies: ['10.0.0.0/8', '::1']\nupstream: {registry: https://r}\n";
        let s = Snapshot::from_config(Config::from_yaml(text, "t").unwrap(), dir.path()).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxy = ip("10.1.1.1");
        let outsider = ip("198.51.100.9");
        // Untrusted peer: XFF ignored.
        assert_eq!(client_address(&s, outsider, &headers(&["203.0.113.7"])), outsider);
        // Trusted peer: right-most non-trusted entry.
        assert_eq!(client_address(&s, proxy, &headers(&["1.1.1.1, 203.0.113.7, 10.2.2.2"])), ip("203.0.113.7"));
        // Several headers form one list.
        assert_eq!(client_address(&s, proxy, &headers(&["1.1.1.1", "203.0.113.8"])), ip("203.0.113.8"));
        // All trusted: the left-most.
        assert_eq!(client_address(&s, proxy, &headers(&["10.3.3.3, 10.4.4.4"])), ip("10.3.3.3"));
        // No header: the peer.
        assert_eq!(client_address(&s, proxy, &headers(&[])), proxy);
        // Malformed: the peer.
        for bad in ["203.0.113.7, nope", "", "203.0.113.7:80", "1.1.1.1,,2.2.2.2", "unknown"] {
            assert_eq!(client_address(&s, proxy, &headers(&[bad])), proxy, "{bad:?}");
        }
        // Oversized: the peer.
        let huge = vec!["1.1.1.1"; 1000].join(",");
        assert_eq!(client_address(&s, proxy, &headers(&[&huge])), proxy);
        // IPv6 and IPv4-mapped peers.
        assert_eq!(client_address(&s, ip("::1"), &headers(&["2001:db8::1"])), ip("2001:db8::1"));
        assert_eq!(client_address(&s, ip("::ffff:10.1.1.1"), &headers(&["::ffff:203.0.113.7"])), ip("203.0.113.7"));
    }
}
