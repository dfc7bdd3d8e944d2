//! The guest's resolver settings, and where they come from.
//!
//! A guest cannot reach a loopback nameserver of its pod (`127.0.0.53`
//! from systemd-resolved, `127.0.0.11` from Docker's embedded DNS, a DNS
//! sidecar on `127.0.0.1`): its 127.0.0.1 is its own. Such a server is
//! replaced by the pod's link-local address for the guest, where the
//! plugin forwards port 53 to the loopback server ([`make_reachable`]).

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Resolver settings for the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestDns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DnsError {
    #[error("nameserver {0:?} is not an IP address")]
    BadNameserver(String),
    #[error(
        "nameserver {server} is a loopback address, which the guest cannot reach, and this attachment has no DNS forward to it{hint}"
    )]
    UnreachableLoopback { server: IpAddr, hint: &'static str },
}

impl GuestDns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }

    /// The IPv4 nameservers, in order (formats that carry IPv4 only).
    pub fn ipv4_nameservers(&self) -> Vec<Ipv4Addr> {
        self.nameservers
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect()
    }

    /// The domain a guest should call its own: `domain`, else the first
    /// search domain (what glibc does).
    pub fn local_domain(&self) -> Option<&str> {
        self.domain
            .as_deref()
            .or_else(|| self.search.first().map(String::as_str))
    }

    /// From CNI `dns` values (strings), refusing anything that is not an
    /// address.
    pub fn from_cni(
        nameservers: &[String],
        domain: Option<&str>,
        search: &[String],
        options: &[String],
    ) -> Result<GuestDns, DnsError> {
        let nameservers = nameservers
            .iter()
            .map(|s| {
                s.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| DnsError::BadNameserver(s.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GuestDns {
            nameservers,
            domain: domain.filter(|d| !d.is_empty()).map(str::to_string),
            search: search.to_vec(),
            options: options.to_vec(),
        })
    }
}

/// Reads resolv.conf text the way the glibc resolver does: `nameserver`,
/// `domain`, `search` (the last of domain/search wins) and `options`;
/// comments with `#` or `;`. Scoped IPv6 servers (`fe80::1%eth0`) are
/// skipped: a guest has no such interface.
pub fn parse_resolv_conf(text: &str) -> GuestDns {
    let mut dns = GuestDns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok())
                    && !dns.nameservers.contains(&ip)
                {
                    dns.nameservers.push(ip);
                }
            }
            Some("domain") => {
                dns.domain = words.next().map(str::to_string);
                dns.search.clear();
            }
            Some("search") => {
                dns.search = words.map(str::to_string).collect();
                dns.domain = None;
            }
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

/// Replaces loopback nameservers by `local` (the pod's address for the
/// guest), where the plugin forwards DNS to `forward_to`. Returns the
/// settings the guest can use and the loopback server that needs the
/// forward (the first one; the others are dropped, as one forward is made
/// per attachment). Without `local`, a loopback server is an error.
pub fn make_reachable(
    dns: &GuestDns,
    local: Option<Ipv4Addr>,
    forward_to: Option<IpAddr>,
) -> Result<(GuestDns, Option<IpAddr>), DnsError> {
    let mut out = dns.clone();
    out.nameservers.clear();
    let mut forward = forward_to;
    for ns in &dns.nameservers {
        if !ns.is_loopback() {
            if !out.nameservers.contains(ns) {
                out.nameservers.push(*ns);
            }
            continue;
        }
        let Some(local) = local else {
            return Err(DnsError::UnreachableLoopback {
                server: *ns,
                hint: " (guest DNS forwarding needs tap mode and an IPv4 pod address)",
            });
        };
        match forward {
            None => forward = Some(*ns),
            Some(f) if f == *ns => {}
            // A second, different loopback server: drop it; the guest
            // still has the first through the forward.
            Some(_) => continue,
        }
        let local = IpAddr::V4(local);
        if !out.nameservers.contains(&local) {
            out.nameservers.push(local);
        }
    }
    Ok((out, forward))
}

/// Like [`make_reachable`] for settings read after the attachment was made
/// (tweedctl guest-args --resolv-conf): only loopback servers the
/// attachment already forwards to can be mapped.
pub fn map_with_existing_forward(
    dns: &GuestDns,
    local: Option<Ipv4Addr>,
    forward_to: Option<IpAddr>,
) -> Result<GuestDns, DnsError> {
    if let Some(server) = dns
        .nameservers
        .iter()
        .find(|ns| ns.is_loopback() && Some(**ns) != forward_to)
    {
        return Err(DnsError::UnreachableLoopback {
            server: *server,
            hint: " (declare the resolv.conf when the pod is created, guest.resolvConf, so tweed sets up the forward)",
        });
    }
    match forward_to {
        Some(_) => make_reachable(dns, local, forward_to).map(|(d, _)| d),
        None => Ok(dns.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);

    #[test]
    fn parses_resolv_conf_like_glibc() {
        let dns = parse_resolv_conf(
            "# generated\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\nnameserver 10.96.0.10\n\
             search default.svc.cluster.local svc.cluster.local\n; old\noptions ndots:5 edns0\n",
        );
        assert_eq!(
            dns.nameservers,
            vec!["10.96.0.10".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            dns.search,
            vec!["default.svc.cluster.local", "svc.cluster.local"]
        );
        assert_eq!(dns.options, vec!["ndots:5", "edns0"]);
        assert_eq!(dns.local_domain(), Some("default.svc.cluster.local"));
        let dns = parse_resolv_conf("search a b\ndomain example.org\n");
        assert_eq!(dns.domain.as_deref(), Some("example.org"));
        assert!(dns.search.is_empty());
    }

    #[test]
    fn loopback_servers_become_the_local_address() {
        let dns = parse_resolv_conf(
            "nameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver 127.0.0.11\n",
        );
        let (out, forward) = make_reachable(&dns, Some(LOCAL), None).unwrap();
        assert_eq!(forward, Some("127.0.0.53".parse().unwrap()));
        assert_eq!(
            out.nameservers,
            vec![IpAddr::V4(LOCAL), "10.0.0.2".parse::<IpAddr>().unwrap()]
        );
        let err = make_reachable(&dns, None, None).unwrap_err();
        assert!(err.to_string().contains("127.0.0.53"), "{err}");
    }

    #[test]
    fn later_resolv_conf_needs_the_same_forward() {
        let dns = parse_resolv_conf("nameserver 127.0.0.53\n");
        let fwd = Some("127.0.0.53".parse().unwrap());
        let out = map_with_existing_forward(&dns, Some(LOCAL), fwd).unwrap();
        assert_eq!(out.nameservers, vec![IpAddr::V4(LOCAL)]);
        let err = map_with_existing_forward(&dns, Some(LOCAL), None).unwrap_err();
        assert!(err.to_string().contains("guest.resolvConf"), "{err}");
        let plain = parse_resolv_conf("nameserver 10.96.0.10\n");
        assert_eq!(
            map_with_existing_forward(&plain, None, None).unwrap(),
            plain
        );
    }

    #[test]
    fn cni_values_must_be_addresses() {
        let err = GuestDns::from_cni(&["dns.example".into()], None, &[], &[]).unwrap_err();
        assert_eq!(err, DnsError::BadNameserver("dns.example".into()));
    }
}
