//! The node lease file: `/run/tweed/subnet.env`, written by tweedd, read
//! by the plugin.
//!
//! It says which pod subnet this node owns:
//!
//! ```text
//! TWEED_NETWORK=10.244.0.0/16
//! TWEED_SUBNET=10.244.1.1/24
//! TWEED_IPV6_NETWORK=fd00:10:244::/56
//! TWEED_IPV6_SUBNET=fd00:10:244:1::1/64
//! TWEED_MTU=1450
//! TWEED_IPMASQ=true
//! ```
//!
//! `SUBNET` is the first usable address (the gateway the plugin puts on the
//! bridge) with the subnet's prefix length. flannel's agent writes the same
//! shape with `FLANNEL_*` keys to `/run/flannel/subnet.env`; tweedd can
//! write that too (`--flannel-subnet-file`), so flannel's plugin works on a
//! tweed node, and the plugin reads either, so tweed's plugin (and its
//! guest support) runs on a flannel node unchanged.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use thiserror::Error;

use crate::kv::{self, Pairs};

/// Where tweedd writes the lease and the plugin looks for it by default.
pub const DEFAULT_PATH: &str = "/run/tweed/subnet.env";

/// Whose keys: `TWEED_*` or flannel's `FLANNEL_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Tweed,
    Flannel,
}

impl Prefix {
    /// `TWEED_<suffix>` or `FLANNEL_<suffix>`, e.g. `suffix` [`MTU`].
    pub fn key(self, suffix: &str) -> String {
        let prefix = match self {
            Prefix::Tweed => "TWEED",
            Prefix::Flannel => "FLANNEL",
        };
        format!("{prefix}_{suffix}")
    }
}

/// Key suffixes (after `TWEED_` or `FLANNEL_`).
pub const NETWORK: &str = "NETWORK";
pub const SUBNET: &str = "SUBNET";
pub const IPV6_NETWORK: &str = "IPV6_NETWORK";
pub const IPV6_SUBNET: &str = "IPV6_SUBNET";
pub const MTU: &str = "MTU";
pub const IPMASQ: &str = "IPMASQ";

/// One family's share of the lease: the node's subnet and the gateway
/// (the first usable address, written as `SUBNET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// The whole cluster network (`NETWORK`), when given.
    pub network: Option<IpNet>,
    /// The node's pod subnet, e.g. `10.244.1.0/24`.
    pub subnet: IpNet,
    /// The bridge's address, e.g. `10.244.1.1`.
    pub gateway: IpAddr,
}

impl Family {
    /// The share of a node leasing `subnet` out of `network`: the gateway
    /// is the subnet's first usable address.
    pub fn new(network: Option<IpNet>, subnet: IpNet) -> Family {
        let gateway = match subnet.network() {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
        };
        Family {
            network,
            subnet: subnet.trunc(),
            gateway,
        }
    }
}

/// What the file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetEnv {
    pub ipv4: Option<Family>,
    pub ipv6: Option<Family>,
    pub mtu: Option<u32>,
    pub ip_masq: bool,
}

/// A key whose value the file cannot mean.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{key}: {reason}")]
pub struct InvalidKey {
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Error)]
pub enum SubnetEnvError {
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
    #[error("subnet file {path}: {error}")]
    Invalid { path: PathBuf, error: InvalidKey },
}

impl SubnetEnv {
    pub fn read(path: &Path) -> Result<SubnetEnv, SubnetEnvError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                SubnetEnvError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                SubnetEnvError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        SubnetEnv::parse(&text).map_err(|error| SubnetEnvError::Invalid {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Parses the file's text. `TWEED_*` keys win; `FLANNEL_*` keys are
    /// read when the file has no `TWEED_*` subnet at all. Values may be
    /// quoted.
    pub fn parse(text: &str) -> Result<SubnetEnv, InvalidKey> {
        let pairs = Pairs::parse(text);
        let prefix = if pairs.contains(&Prefix::Tweed.key(SUBNET))
            || pairs.contains(&Prefix::Tweed.key(IPV6_SUBNET))
        {
            Prefix::Tweed
        } else {
            Prefix::Flannel
        };
        let get = |suffix: &str| {
            let key = prefix.key(suffix);
            let value = pairs.get(&key)?.trim_matches('"').to_string();
            Some((key, value))
        };
        let invalid = |key: String, reason: String| InvalidKey { key, reason };

        let ipv4 = family(get(SUBNET), get(NETWORK), true)?;
        let ipv6 = family(get(IPV6_SUBNET), get(IPV6_NETWORK), false)?;
        if ipv4.is_none() && ipv6.is_none() {
            return Err(invalid(
                prefix.key(SUBNET),
                "missing: neither an IPv4 nor an IPv6 subnet is given".into(),
            ));
        }
        let mtu = match get(MTU) {
            None => None,
            Some((key, v)) => Some(
                v.parse::<u32>()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| {
                        invalid(key, format!("{v:?} is not an MTU between 68 and 65535"))
                    })?,
            ),
        };
        let ip_masq = match get(IPMASQ) {
            None => false,
            Some((key, v)) => match v.as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(invalid(key, format!("{v:?} is neither true nor false"))),
            },
        };
        Ok(SubnetEnv {
            ipv4,
            ipv6,
            mtu,
            ip_masq,
        })
    }

    /// The file's text with `prefix`'s keys.
    pub fn render(&self, prefix: Prefix) -> String {
        let mut w = kv::Writer::new();
        for (family, network, subnet) in [
            (&self.ipv4, NETWORK, SUBNET),
            (&self.ipv6, IPV6_NETWORK, IPV6_SUBNET),
        ] {
            if let Some(f) = family {
                if let Some(n) = f.network {
                    w.line(&prefix.key(network), n);
                }
                let with_prefix = format!("{}/{}", f.gateway, f.subnet.prefix_len());
                w.line(&prefix.key(subnet), with_prefix);
            }
        }
        if let Some(mtu) = self.mtu {
            w.line(&prefix.key(MTU), mtu);
        }
        w.line(&prefix.key(IPMASQ), self.ip_masq);
        w.finish()
    }

    /// Writes the file atomically: a plugin never reads half of it.
    pub fn write(&self, path: &Path, prefix: Prefix) -> io::Result<()> {
        kv::write_atomic(path, &self.render(prefix))
    }
}

fn family(
    subnet: Option<(String, String)>,
    network: Option<(String, String)>,
    ipv4: bool,
) -> Result<Option<Family>, InvalidKey> {
    let Some((key, value)) = subnet else {
        return Ok(None);
    };
    let invalid = |key: String, reason: String| InvalidKey { key, reason };
    let with_gateway: IpNet = value.parse().map_err(|_| {
        invalid(
            key.clone(),
            format!("{value:?} is not an address with prefix length"),
        )
    })?;
    // An IPv6 subnet under the IPv4 key (or the reverse) would be set up
    // as the other family's: the bridge, IPAM and routes would disagree.
    if with_gateway.addr().is_ipv4() != ipv4 {
        let want = if ipv4 { "IPv4" } else { "IPv6" };
        return Err(invalid(key, format!("{value:?} is not an {want} address")));
    }
    let subnet = with_gateway.trunc();
    if with_gateway.addr() == subnet.network() {
        return Err(invalid(
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
                .map_err(|_| invalid(nkey.clone(), format!("{nvalue:?} is not a CIDR")))?;
            if !net.trunc().contains(&subnet) {
                return Err(invalid(
                    nkey,
                    format!("{net} does not contain the node subnet {subnet}"),
                ));
            }
            Some(net.trunc())
        }
    };
    Ok(Some(Family {
        network,
        subnet,
        gateway: with_gateway.addr(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn renders_the_keys_the_plugin_reads() {
        let env = SubnetEnv {
            ipv4: Some(Family::new(
                Some(net("10.244.0.0/16")),
                net("10.244.3.0/24"),
            )),
            ipv6: Some(Family::new(
                Some(net("fd00:10:244::/56")),
                net("fd00:10:244:3::/64"),
            )),
            mtu: Some(1450),
            ip_masq: true,
        };
        let text = env.render(Prefix::Tweed);
        assert_eq!(
            text,
            "TWEED_NETWORK=10.244.0.0/16\nTWEED_SUBNET=10.244.3.1/24\nTWEED_IPV6_NETWORK=fd00:10:244::/56\nTWEED_IPV6_SUBNET=fd00:10:244:3::1/64\nTWEED_MTU=1450\nTWEED_IPMASQ=true\n"
        );
        assert_eq!(SubnetEnv::parse(&text).unwrap(), env);
        let flannel = env.render(Prefix::Flannel);
        assert!(flannel.starts_with("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24"));
        assert_eq!(SubnetEnv::parse(&flannel).unwrap(), env);
    }

    #[test]
    fn refuses_a_subnet_of_the_other_family() {
        // Found by the subnet_env fuzz target.
        let e = SubnetEnv::parse("TWEED_SUBNET=1::1/64\n").unwrap_err();
        assert_eq!(e.key, "TWEED_SUBNET");
        assert!(e.reason.contains("not an IPv4 address"), "{e}");
        let e = SubnetEnv::parse("TWEED_IPV6_SUBNET=10.244.1.1/24\n").unwrap_err();
        assert_eq!(e.key, "TWEED_IPV6_SUBNET");
        assert!(e.reason.contains("not an IPv6 address"), "{e}");
    }

    #[test]
    fn reads_tweed_keys() {
        let l = SubnetEnv::parse(
            "TWEED_NETWORK=10.244.0.0/16\nTWEED_SUBNET=10.244.1.1/24\nTWEED_MTU=1450\nTWEED_IPMASQ=true\n",
        )
        .unwrap();
        let v4 = l.ipv4.unwrap();
        assert_eq!(v4.subnet, net("10.244.1.0/24"));
        assert_eq!(v4.gateway, "10.244.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(v4.network, Some(net("10.244.0.0/16")));
        assert_eq!(l.mtu, Some(1450));
        assert!(l.ip_masq);
        assert!(l.ipv6.is_none());
    }

    #[test]
    fn reads_flannel_keys_quoted_values_and_dual_stack() {
        let l = SubnetEnv::parse(
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=\"10.244.3.1/24\"\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\n",
        )
        .unwrap();
        assert_eq!(
            l.ipv4.unwrap().gateway,
            "10.244.3.1".parse::<IpAddr>().unwrap()
        );
        let v6 = l.ipv6.unwrap();
        assert_eq!(v6.subnet, net("fd00:10:244:3::/64"));
        assert!(!l.ip_masq);
    }

    #[test]
    fn tweed_keys_win_over_flannel_keys() {
        let l =
            SubnetEnv::parse("FLANNEL_SUBNET=10.244.9.1/24\nTWEED_SUBNET=10.244.1.1/24\n").unwrap();
        assert_eq!(l.ipv4.unwrap().subnet, net("10.244.1.0/24"));
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
            let e = SubnetEnv::parse(text).unwrap_err();
            assert_eq!(e.key, key, "{text}");
        }
    }

    #[test]
    fn missing_file_says_the_agent_has_not_written_it() {
        let e = SubnetEnv::read(Path::new("/nonexistent/subnet.env")).unwrap_err();
        assert!(matches!(e, SubnetEnvError::Missing { .. }));
        assert!(e.to_string().contains("has not written"), "{e}");
    }

    #[test]
    fn writes_atomically_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("tweed-subnet-env-{}", std::process::id()));
        let path = dir.join("subnet.env");
        let env = SubnetEnv {
            ipv4: Some(Family::new(None, net("10.244.7.0/24"))),
            ipv6: None,
            mtu: Some(1500),
            ip_masq: false,
        };
        env.write(&path, Prefix::Tweed).unwrap();
        assert_eq!(SubnetEnv::read(&path).unwrap(), env);
        let e = std::fs::write(&path, "TWEED_SUBNET=10.244.7.0/24\n")
            .map(|()| SubnetEnv::read(&path).unwrap_err())
            .unwrap();
        assert!(
            e.to_string()
                .starts_with(&format!("subnet file {}: TWEED_SUBNET: ", path.display())),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
