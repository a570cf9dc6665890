use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::RepoName;

/// Where a registry is, as written in a promoter manifest's `registries[].name`:
/// - `host[:port][/prefix]` — a registry speaking the OCI distribution API; image `NAME` is the
///   repository `prefix/NAME` (the registry backend adds the prefix). IPv6 hosts are bracketed (`[::1]:5000`).
/// - `oci:DIR` — a directory of OCI image layouts; repository `NAME` is the layout `DIR/NAME`.
///   A relative `DIR` is relative to the current directory, as with skopeo.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum RegistryAddress {
    /// A registry reached over the OCI distribution API.
    Remote {
        /// `host[:port]`, IPv6 addresses bracketed.
        host: String,
        /// Repository path put before every image name; `None` when images sit at the top.
        prefix: Option<RepoName>,
    },
    /// A directory of OCI image layouts, one per repository.
    Layout {
        /// The directory, as written after `oci:` (possibly relative).
        dir: PathBuf,
    },
}

/// A registry address that is neither a valid `host[:port][/prefix]` nor `oci:DIR`; holds the text given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid registry {0:?}: expected host[:port][/path] (like gcr.io/project) or oci:DIR")]
pub struct AddressError(pub String);

/// `true` for `localhost`, 127.0.0.0/8 and `[::1]`, with or without a port.
pub fn is_loopback_host(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn valid_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) => {
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (None, port)
            }
            None => return false,
        }
    } else {
        match host.find(':') {
            Some(i) => (Some(&host[..i]), &host[i..]),
            None => (Some(host), ""),
        }
    };
    let port_ok = port.is_empty() || port.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    let name_ok = name.is_none_or(|n| {
        !n.is_empty()
            && n.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    });
    port_ok && name_ok
}

impl FromStr for RegistryAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || AddressError(s.to_string());
        if let Some(dir) = s.strip_prefix("oci:") {
            if dir.is_empty() {
                return Err(err());
            }
            return Ok(RegistryAddress::Layout { dir: PathBuf::from(dir) });
        }
        let (host, prefix) = match s.split_once('/') {
            Some((h, p)) => (h, Some(p.parse::<RepoName>().map_err(|_| err())?)),
            None => (s, None),
        };
        if !valid_host(host) {
            return Err(err());
        }
        Ok(RegistryAddress::Remote { host: host.to_string(), prefix })
    }
}

impl fmt::Display for RegistryAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAddress::Remote { host, prefix: Some(p) } => write!(f, "{host}/{p}"),
            RegistryAddress::Remote { host, prefix: None } => f.write_str(host),
            RegistryAddress::Layout { dir } => write!(f, "oci:{}", dir.display()),
        }
    }
}

impl serde::Serialize for RegistryAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let a: RegistryAddress = "us-central1-docker.pkg.dev/k8s-artifacts-prod/images".parse().unwrap();
        assert!(
            matches!(&a, RegistryAddress::Remote { prefix: Some(p), .. } if p.as_str() == "k8s-artifacts-prod/images")
        );
        assert_eq!(a.to_string(), "us-central1-docker.pkg.dev/k8s-artifacts-prod/images");
        for (host, loopback) in [("127.0.0.1:5000", true), ("[::1]:5000", true), ("localhost", true), ("gcr.io", false)]
        {
            assert!(format!("{host}/x").parse::<RegistryAddress>().is_ok());
            assert_eq!(is_loopback_host(host), loopback, "{host}");
        }
        assert_eq!("oci:/tmp/x".parse::<RegistryAddress>().unwrap(), RegistryAddress::Layout { dir: "/tmp/x".into() });
        for bad in ["", "oci:", "gcr.io/", "gcr.io/../x", "gcr.io:99999/x", "a b/x", "http://gcr.io/x", "[zz]:1"] {
            assert!(bad.parse::<RegistryAddress>().is_err(), "{bad}");
        }
    }
}
