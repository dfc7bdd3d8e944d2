//! The node lease file the CNI plugin reads: `/run/tweed/subnet.env`, and
//! optionally flannel's `/run/flannel/subnet.env` so flannel's own plugin
//! works on a tweed node. Written atomically (temporary file + rename): a
//! plugin never reads half a file.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

/// What the file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetInfo {
    pub ipv4_network: Option<IpNet>,
    pub ipv4_subnet: Option<IpNet>,
    pub ipv6_network: Option<IpNet>,
    pub ipv6_subnet: Option<IpNet>,
    pub mtu: u32,
    pub ip_masq: bool,
}

/// `10.244.1.0/24` → `10.244.1.1/24`: the first usable address (the
/// gateway the plugin puts on the bridge) with the prefix length.
fn first_usable(net: IpNet) -> String {
    let addr = match net.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    };
    format!("{addr}/{}", net.prefix_len())
}

pub fn render(info: &SubnetInfo, prefix: &str) -> String {
    let mut s = String::new();
    if let Some(n) = info.ipv4_network {
        let _ = writeln!(s, "{prefix}_NETWORK={n}");
    }
    if let Some(n) = info.ipv4_subnet {
        let _ = writeln!(s, "{prefix}_SUBNET={}", first_usable(n));
    }
    if let Some(n) = info.ipv6_network {
        let _ = writeln!(s, "{prefix}_IPV6_NETWORK={n}");
    }
    if let Some(n) = info.ipv6_subnet {
        let _ = writeln!(s, "{prefix}_IPV6_SUBNET={}", first_usable(n));
    }
    let _ = writeln!(s, "{prefix}_MTU={}", info.mtu);
    let _ = writeln!(s, "{prefix}_IPMASQ={}", info.ip_masq);
    s
}

pub fn write(path: &Path, info: &SubnetInfo, prefix: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("env.tmp");
    fs::write(&tmp, render(info, prefix))?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_keys_the_plugin_reads() {
        let info = SubnetInfo {
            ipv4_network: Some("10.244.0.0/16".parse().unwrap()),
            ipv4_subnet: Some("10.244.3.0/24".parse().unwrap()),
            ipv6_network: Some("fd00:10:244::/56".parse().unwrap()),
            ipv6_subnet: Some("fd00:10:244:3::/64".parse().unwrap()),
            mtu: 1450,
            ip_masq: true,
        };
        let text = render(&info, "TWEED");
        assert_eq!(
            text,
            "TWEED_NETWORK=10.244.0.0/16\nTWEED_SUBNET=10.244.3.1/24\nTWEED_IPV6_NETWORK=fd00:10:244::/56\nTWEED_IPV6_SUBNET=fd00:10:244:3::1/64\nTWEED_MTU=1450\nTWEED_IPMASQ=true\n"
        );
        assert!(
            render(&info, "FLANNEL")
                .starts_with("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24")
        );
    }
}
