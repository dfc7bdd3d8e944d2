//! Which interface carries the overlay, and which address this node
//! publishes to its peers.
//!
//! Multi-NIC hosts are the classic source of "flannel picked the wrong
//! interface", so the choice follows explicit rules and the agent logs the
//! rule that decided: `--iface` (names or addresses, in order), then
//! `--iface-regex`, then `--iface-can-reach`, then the interface of the
//! default route. `--public-ip` overrides the published address (for NAT).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;
use tweed_netlink::{Link, Netlink, NetlinkError};

#[derive(Debug, Clone, Default)]
pub struct IdentityOptions {
    pub iface: Vec<String>,
    pub iface_regex: Vec<String>,
    pub iface_can_reach: Option<IpAddr>,
    pub public_ip: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
    /// The overlay needs an IPv4 / IPv6 underlay address.
    pub need_ipv4: bool,
    pub need_ipv6: bool,
}

/// The chosen underlay interface and the addresses published for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    pub iface: String,
    pub index: u32,
    pub mtu: u32,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// What peers use to reach us (the interface address unless overridden).
    pub public_ipv4: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
    /// Why this interface: shown in the log.
    pub reason: String,
}

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("{0}")]
    Netlink(#[from] NetlinkError),
    #[error("--iface-regex {0:?}: {1}")]
    BadRegex(String, String),
    #[error("no usable underlay interface: {0}")]
    NoInterface(String),
}

pub fn choose(nl: &mut Netlink, opts: &IdentityOptions) -> Result<Underlay, IdentityError> {
    let links = nl.links()?;
    let addrs = nl.addresses(None)?;
    let global = |index: u32, v6: bool| -> Option<IpAddr> {
        addrs
            .iter()
            .filter(|a| a.index == index && !a.scope_link && a.addr.addr().is_ipv6() == v6)
            .map(|a| a.addr.addr())
            .find(|ip| !ip.is_loopback())
    };
    let usable = |link: &Link| -> bool {
        (!opts.need_ipv4 || global(link.index, false).is_some())
            && (!opts.need_ipv6 || global(link.index, true).is_some())
    };
    let family_words = match (opts.need_ipv4, opts.need_ipv6) {
        (true, true) => "an IPv4 and an IPv6 address",
        (false, true) => "an IPv6 address",
        _ => "an IPv4 address",
    };

    let mut picked: Option<(&Link, String)> = None;
    for spec in &opts.iface {
        let by_addr: Option<IpAddr> = spec.parse().ok();
        let link = match by_addr {
            Some(ip) => addrs
                .iter()
                .find(|a| a.addr.addr() == ip)
                .and_then(|a| links.iter().find(|l| l.index == a.index)),
            None => links.iter().find(|l| &l.name == spec),
        };
        match link {
            Some(l) if usable(l) => {
                picked = Some((l, format!("--iface {spec}")));
                break;
            }
            Some(l) => {
                tracing::warn!(iface = %l.name, "--iface {spec}: interface lacks {family_words}, trying the next rule")
            }
            None => {
                tracing::warn!("--iface {spec}: no such interface or address, trying the next rule")
            }
        }
    }
    if picked.is_none() {
        for pattern in &opts.iface_regex {
            let re = regex::Regex::new(pattern)
                .map_err(|e| IdentityError::BadRegex(pattern.clone(), e.to_string()))?;
            if let Some(l) = links
                .iter()
                .find(|l| l.name != "lo" && re.is_match(&l.name) && usable(l))
            {
                picked = Some((l, format!("--iface-regex {pattern} matched")));
                break;
            }
        }
    }
    if picked.is_none()
        && let Some(target) = opts.iface_can_reach
        && let Some(lookup) = nl.route_get(target)?
        && let Some(l) = lookup.oif.and_then(|i| links.iter().find(|l| l.index == i))
        && usable(l)
    {
        picked = Some((
            l,
            format!("--iface-can-reach {target}: the route to it leaves here"),
        ));
    }
    if picked.is_none() {
        for (v6, probe) in [(false, "0.0.0.0/0"), (true, "::/0")] {
            if (v6 && !opts.need_ipv6) || (!v6 && !opts.need_ipv4 && opts.need_ipv6) {
                continue;
            }
            let routes = nl.routes(v6, tweed_netlink::TABLE_MAIN)?;
            if let Some(l) = routes
                .iter()
                .filter(|r| r.dst.prefix_len() == 0)
                .filter_map(|r| r.oif)
                .filter_map(|i| links.iter().find(|l| l.index == i))
                .find(|l| usable(l))
            {
                picked = Some((l, format!("the default route ({probe}) leaves here")));
                break;
            }
        }
    }
    let (link, reason) = picked.ok_or_else(|| {
        IdentityError::NoInterface(format!(
            "no interface with {family_words} matched --iface/--iface-regex/--iface-can-reach, and no default route leads to one"
        ))
    })?;
    let ipv4 = match global(link.index, false) {
        Some(IpAddr::V4(a)) => Some(a),
        _ => None,
    };
    let ipv6 = match global(link.index, true) {
        Some(IpAddr::V6(a)) => Some(a),
        _ => None,
    };
    Ok(Underlay {
        iface: link.name.clone(),
        index: link.index,
        mtu: link.mtu,
        ipv4,
        ipv6,
        public_ipv4: opts.public_ip.or(ipv4),
        public_ipv6: opts.public_ipv6.or(ipv6),
        reason,
    })
}
