//! The node lease file written by the agent: `/run/tweed/subnet.env`.
//!
//! It says which pod subnet this node owns. tweed's agent writes `TWEED_*`
//! keys; flannel's agent writes the same shape with `FLANNEL_*` keys, and
//! reading either lets tweed's plugin (and its guest support) run on a
//! flannel node unchanged.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use thiserror::Error;

/// Where tweedd writes the lease by default.
pub const DEFAULT_SUBNET_FILE: &str = "/run/tweed/subnet.env";

/// One family's share of the lease: the node's subnet and the gateway
/// (the first usable address, which the agent writes as `SUBNET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyLease {
    /// The whole cluster network (`TWEED_NETWORK`), when given.
    pub network: Option<IpNet>,
    /// The node's pod subnet, e.g. `10.244.1.0/24`.
    pub subnet: IpNet,
    /// The bridge's address, e.g. `10.244.1.1`.
    pub gateway: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ipv4: Option<FamilyLease>,
    pub ipv6: Option<FamilyLease>,
    pub mtu: Option<u32>,
    pub ip_masq: bool,
}

#[derive(Debug, Error)]
pub enum LeaseError {
    #[error(
        "subnet file {path} does not exist: the node agent (tweedd) has not written this node's lease yet"
    )]
    Missing { path: PathBuf },
    #[error("subnet file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("subnet file {path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

impl Lease {
    pub fn read(path: &Path) -> Result<Lease, LeaseError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                LeaseError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                LeaseError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Lease::parse(&text).map_err(|(key, reason)| LeaseError::Invalid {
            path: path.to_path_buf(),
            key,
            reason,
        })
    }

    /// Parses `KEY=value` lines. `TWEED_*` keys win; `FLANNEL_*` keys are
    /// read when the file has no `TWEED_*` subnet at all.
    pub fn parse(text: &str) -> Result<Lease, (String, String)> {
        let pairs: Vec<(&str, &str)> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect();
        let prefix = if pairs
            .iter()
            .any(|(k, _)| *k == "TWEED_SUBNET" || *k == "TWEED_IPV6_SUBNET")
        {
            "TWEED_"
        } else {
            "FLANNEL_"
        };
        let get = |suffix: &str| {
            let key = format!("{prefix}{suffix}");
            pairs
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (key, v.to_string()))
        };

        let ipv4 = family(get("SUBNET"), get("NETWORK"), true)?;
        let ipv6 = family(get("IPV6_SUBNET"), get("IPV6_NETWORK"), false)?;
        if ipv4.is_none() && ipv6.is_none() {
            return Err((
                format!("{prefix}SUBNET"),
                "missing: neither an IPv4 nor an IPv6 subnet is given".into(),
            ));
        }
        let mtu = match get("MTU") {
            None => None,
            Some((key, v)) => Some(
                v.parse::<u32>()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or((key, format!("{v:?} is not an MTU between 68 and 65535")))?,
            ),
        };
        let ip_masq = match get("IPMASQ") {
            None => false,
            Some((key, v)) => match v.as_str() {
                "true" => true,
                "false" => false,
                _ => return Err((key, format!("{v:?} is neither true nor false"))),
            },
        };
        Ok(Lease {
            ipv4,
            ipv6,
            mtu,
            ip_masq,
        })
    }
}

fn family(
    subnet: Option<(String, String)>,
    network: Option<(String, String)>,
    ipv4: bool,
) -> Result<Option<FamilyLease>, (String, String)> {
    let Some((key, value)) = subnet else {
        return Ok(None);
    };
    let with_gateway: IpNet = value.parse().map_err(|_| {
        (
            key.clone(),
            format!("{value:?} is not an address with prefix length"),
        )
    })?;
    // An IPv6 subnet under the IPv4 key (or the reverse) would be set up
    // as the other family's: the bridge, IPAM and routes would disagree.
    if with_gateway.addr().is_ipv4() != ipv4 {
        let want = if ipv4 { "IPv4" } else { "IPv6" };
        return Err((key, format!("{value:?} is not an {want} address")));
    }
    let subnet = with_gateway.trunc();
    if with_gateway.addr() == subnet.network() {
        return Err((
            key,
            format!(
                "{value:?} must be the subnet's first usable address (the gateway), not its network address"
            ),
        ));
    }
    let network = match network {
        None => None,
        Some((nkey, nvalue)) => {
            // flannel may list several networks separated by commas; the
            // first one is the pod network.
            let first = nvalue.split(',').next().unwrap_or_default();
            let net: IpNet = first
                .parse()
                .map_err(|_| (nkey.clone(), format!("{nvalue:?} is not a CIDR")))?;
            if !net.trunc().contains(&subnet) {
                return Err((
                    nkey,
                    format!("{net} does not contain the node subnet {subnet}"),
                ));
            }
            Some(net.trunc())
        }
    };
    Ok(Some(FamilyLease {
        network,
        subnet,
        gateway: with_gateway.addr(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_subnet_of_the_other_family() {
        // Found by the subnet_env fuzz target.
        let (key, why) = Lease::parse("TWEED_SUBNET=1::1/64\n").unwrap_err();
        assert_eq!(key, "TWEED_SUBNET");
        assert!(why.contains("not an IPv4 address"), "{why}");
        let (key, why) = Lease::parse("TWEED_IPV6_SUBNET=10.244.1.1/24\n").unwrap_err();
        assert_eq!(key, "TWEED_IPV6_SUBNET");
        assert!(why.contains("not an IPv6 address"), "{why}");
    }

    #[test]
    fn reads_tweed_keys() {
        let l = Lease::parse(
            "TWEED_NETWORK=10.244.0.0/16\nTWEED_SUBNET=10.244.1.1/24\nTWEED_MTU=1450\nTWEED_IPMASQ=true\n",
        )
        .unwrap();
        let v4 = l.ipv4.unwrap();
        assert_eq!(v4.subnet, "10.244.1.0/24".parse::<IpNet>().unwrap());
        assert_eq!(v4.gateway, "10.244.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(v4.network, Some("10.244.0.0/16".parse().unwrap()));
        assert_eq!(l.mtu, Some(1450));
        assert!(l.ip_masq);
        assert!(l.ipv6.is_none());
    }

    #[test]
    fn reads_flannel_keys_and_dual_stack() {
        let l = Lease::parse(
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\n",
        )
        .unwrap();
        assert_eq!(
            l.ipv4.unwrap().gateway,
            "10.244.3.1".parse::<IpAddr>().unwrap()
        );
        let v6 = l.ipv6.unwrap();
        assert_eq!(v6.subnet, "fd00:10:244:3::/64".parse::<IpNet>().unwrap());
        assert!(!l.ip_masq);
    }

    #[test]
    fn tweed_keys_win_over_flannel_keys() {
        let l = Lease::parse("FLANNEL_SUBNET=10.244.9.1/24\nTWEED_SUBNET=10.244.1.1/24\n").unwrap();
        assert_eq!(
            l.ipv4.unwrap().subnet,
            "10.244.1.0/24".parse::<IpNet>().unwrap()
        );
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases = [
            ("TWEED_SUBNET=10.244.1.1\n", "TWEED_SUBNET"),
            ("TWEED_SUBNET=10.244.1.0/24\n", "TWEED_SUBNET"),
            ("TWEED_SUBNET=10.244.1.1/24\nTWEED_MTU=12\n", "TWEED_MTU"),
            (
                "TWEED_SUBNET=10.244.1.1/24\nTWEED_IPMASQ=yes\n",
                "TWEED_IPMASQ",
            ),
            (
                "TWEED_SUBNET=10.244.1.1/24\nTWEED_NETWORK=10.245.0.0/16\n",
                "TWEED_NETWORK",
            ),
            ("TWEED_MTU=1450\n", "FLANNEL_SUBNET"),
        ];
        for (text, key) in cases {
            let (k, _) = Lease::parse(text).unwrap_err();
            assert_eq!(k, key, "{text}");
        }
    }

    #[test]
    fn missing_file_says_the_agent_has_not_written_it() {
        let e = Lease::read(Path::new("/nonexistent/subnet.env")).unwrap_err();
        assert!(matches!(e, LeaseError::Missing { .. }));
        assert!(e.to_string().contains("has not written"), "{e}");
    }
}
