//! Entry points for the fuzz targets in fuzz/ and the property tests; not a stable API.

use std::net::IpAddr;

use crate::snapshot::Snapshot;

/// [`crate::client_address`] from the raw values of the request's `X-Forwarded-For` headers, in
/// order, without building a header map.
pub fn client_address_from(snapshot: &Snapshot, peer: IpAddr, forwarded_for: &[&[u8]]) -> IpAddr {
    crate::client::client_address_from(snapshot, peer, forwarded_for)
}
