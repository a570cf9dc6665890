//! CIDR prefixes as integer ranges: an IPv4 address is its `u32` value, an IPv6 address its `u128`
//! value, both carried in a `u128` so one code path builds both tables.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A parsed prefix: the family, its first address and its length in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    pub v6: bool,
    pub first: u128,
    pub len: u8,
}

impl Prefix {
    /// `addr/len`; host bits must be zero, because a prefix like `203.0.113.7/24` is usually a typo
    /// for a /32 or for another network, and silently widening it would mislabel clients.
    pub(crate) fn new(addr: IpAddr, len: u8) -> Result<Prefix, String> {
        let (v6, bits) = bits(addr);
        let width = if v6 { 128 } else { 32 };
        if len > width {
            return Err(format!("prefix length {len} is longer than {width}"));
        }
        let first = bits & mask(width, len);
        if first != bits {
            return Err(format!("host bits are set (the network is {}/{len})", network(addr, len)));
        }
        Ok(Prefix { v6, first, len })
    }

    /// The last address inside the prefix.
    pub(crate) fn last(&self) -> u128 {
        let width = if self.v6 { 128 } else { 32 };
        self.first | (mask(width, width) & !mask(width, self.len))
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;

    fn from_str(text: &str) -> Result<Prefix, String> {
        let (addr, len) = text.split_once('/').ok_or("expected ADDRESS/LENGTH")?;
        let addr: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
        let len: u8 = len.parse().map_err(|_| format!("{len:?} is not a prefix length"))?;
        Prefix::new(addr, len)
    }
}

/// The address's family and value.
pub(crate) fn bits(addr: IpAddr) -> (bool, u128) {
    match addr {
        IpAddr::V4(a) => (false, u32::from(a).into()),
        IpAddr::V6(a) => (true, a.into()),
    }
}

/// The network of `len` bits that contains `addr`.
pub(crate) fn network(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask(32, len) as u32)),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask(128, len))),
    }
}

/// The mask that keeps the `len` leading bits of a `width`-bit address.
fn mask(width: u8, len: u8) -> u128 {
    let all = u128::MAX >> (128 - u32::from(width));
    all & !all.checked_shr(len.into()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_rejects_typos() {
        let p: Prefix = "64.252.64.0/18".parse().unwrap();
        assert_eq!((p.v6, p.first, p.last(), p.len), (false, 0x40FC_4000, 0x40FC_7FFF, 18));
        let all: Prefix = "::/0".parse().unwrap();
        assert_eq!((all.first, all.last()), (0, u128::MAX));
        let host: Prefix = "255.255.255.255/32".parse().unwrap();
        assert_eq!((host.first, host.last()), (0xFFFF_FFFF, 0xFFFF_FFFF));
        assert_eq!(
            "203.0.113.7/24".parse::<Prefix>().unwrap_err(),
            "host bits are set (the network is 203.0.113.0/24)"
        );
        assert!("203.0.113.0/33".parse::<Prefix>().is_err());
        assert!("203.0.113.0".parse::<Prefix>().is_err());
        assert!("2001:db8::/129".parse::<Prefix>().is_err());
        assert!("example.com/24".parse::<Prefix>().is_err());
    }
}
