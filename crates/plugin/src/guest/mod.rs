//! Guest attachments: a VM or unikernel in the pod takes the pod
//! interface's MAC, addresses, routes and MTU through a tap (two-way tc
//! redirect) or a macvtap, made here inside the pod namespace.
//!
//! [`request`] works out what the pod asked for; [`attach`] builds the
//! device ([`device`]), the localhost plumbing ([`localhost`]) and the
//! guest record (`tweed_guest::GuestRecord`), undoing all of it if a step
//! fails; [`detach`] is DEL's counterpart. The container path
//! (`commands::add`) and the chained path (`chained`) both end here.

pub mod chained;
pub mod check;
pub mod device;
pub mod gateway;
pub mod localhost;
pub mod nft;
pub mod request;
pub mod result;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::IpNet;
use tweed_cni::error::CniError;
use tweed_guest::record::{DnsSource, RECORD_VERSION};
use tweed_guest::{
    GuestAddress, GuestDns, GuestMode, GuestRecord, GuestRoute, Localhost, dns as guest_dns,
};
use tweed_netlink::{Link, MacAddr, NetNs, Netlink};

use crate::dataplane::{PodAddress, PodRoute};
use crate::errors;
use crate::faults;
pub use request::GuestRequest;

/// The pod side a guest is attached to.
pub struct PodSide<'a> {
    pub ns: &'a NetNs,
    pub netns_path: &'a Path,
    /// The pod interface (CNI_IFNAME), as it is now.
    pub eth: &'a Link,
    /// The MAC the guest takes.
    pub guest_mac: MacAddr,
    pub mtu: u32,
    pub addresses: &'a [PodAddress],
    pub routes: &'a [PodRoute],
    /// The gateway's MAC, when known (the tap takes it).
    pub gateway_mac: Option<MacAddr>,
    pub chained: bool,
}

/// Who the attachment is.
pub struct Identity<'a> {
    pub network: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
    /// The guest's hostname (the pod's name under Kubernetes).
    pub hostname: Option<&'a str>,
}

/// The CNI DNS settings offered for the guest and where they came from
/// (the best source the caller has).
pub type DnsOffer = Option<(tweed_cni::result::Dns, DnsSource)>;

/// The first source that has nameservers.
pub fn offer(sources: [(Option<&tweed_cni::result::Dns>, DnsSource); 3]) -> DnsOffer {
    sources.into_iter().find_map(|(d, src)| {
        d.filter(|d| !d.nameservers.is_empty())
            .map(|d| (d.clone(), src))
    })
}

/// A finished attachment.
pub struct Attached {
    pub device: device::Device,
    pub record: GuestRecord,
}

fn invalid_dns(source: DnsSource, msg: impl AsRef<str>) -> CniError {
    let field = match source {
        DnsSource::RuntimeConfig => "runtimeConfig.dns",
        DnsSource::NetworkConfig => "dns",
        DnsSource::PrevResult => "prevResult.dns",
        DnsSource::ResolvConf => "guest.resolvConf",
        DnsSource::None => "dns",
    };
    CniError::invalid_config(field, msg)
}

/// The guest's DNS: the offered CNI settings, else the pod's resolv.conf
/// (when configured and present), else none.
fn choose_dns(req: &GuestRequest, offer: &DnsOffer) -> Result<(GuestDns, DnsSource), CniError> {
    if let Some((d, source)) = offer {
        let dns = GuestDns::from_cni(&d.nameservers, d.domain.as_deref(), &d.search, &d.options)
            .map_err(|e| invalid_dns(*source, e.to_string()))?;
        return Ok((dns, *source));
    }
    if let Some(path) = &req.resolv_conf {
        match std::fs::read_to_string(path) {
            Ok(text) => return Ok((guest_dns::parse_resolv_conf(&text), DnsSource::ResolvConf)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(CniError::io(format!(
                    "guest.resolvConf {}: {e}",
                    path.display()
                )));
            }
        }
    }
    Ok((GuestDns::default(), DnsSource::None))
}

fn first_ipv4(addresses: &[PodAddress]) -> Option<Ipv4Addr> {
    addresses.iter().find_map(|a| match a.address {
        IpNet::V4(n) => Some(n.addr()),
        IpNet::V6(_) => None,
    })
}

/// Builds the guest attachment. Everything is checked before the first
/// change; after it, a failure undoes every change.
pub fn attach(
    nl: &mut Netlink,
    who: &Identity,
    req: &GuestRequest,
    pod: &PodSide,
    offer: &DnsOffer,
) -> Result<Attached, CniError> {
    let (dns, dns_source) = choose_dns(req, offer)?;
    let pod_ipv4 = first_ipv4(pod.addresses);
    let link_local =
        (req.mode == GuestMode::Tap && pod_ipv4.is_some()).then_some(localhost::POD_LINK_LOCAL);
    let (dns, forward) = guest_dns::make_reachable(&dns, link_local, None)
        .map_err(|e| invalid_dns(dns_source, e.to_string()))?;
    let forward = forward.map(|ip| match ip {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(v6) => Err(invalid_dns(
            dns_source,
            format!("nameserver {v6} is IPv6 loopback; the guest's DNS forward is IPv4 only"),
        )),
    });
    let forward = forward.transpose()?;
    let plan_ports = localhost::Plan {
        ifname: who.ifname,
        pod_ip: pod_ipv4.unwrap_or(Ipv4Addr::UNSPECIFIED),
        guest_mac: pod.guest_mac,
        localhost_ports: &req.localhost_ports,
        pod_services: &req.pod_services,
        dns_forward: forward,
    };
    if !plan_ports.is_empty() {
        if pod_ipv4.is_none() {
            return Err(CniError::invalid_config(
                "guest.localhostPorts",
                "localhost ports and pod services need an IPv4 address on the pod interface",
            ));
        }
        if pod.gateway_mac.is_none() {
            return Err(CniError::custom(
                errors::KERNEL,
                "guest localhost plumbing: the pod's IPv4 gateway did not answer ARP, so the \
                 tap cannot take its MAC",
            ));
        }
    }

    let alias = device::alias(who.container_id, who.ifname);
    let pending_name = crate::names::guest_tap_pending(who.container_id, who.ifname);
    let target = device::Target {
        pending_name: &pending_name,
        ns: pod.ns,
        eth: pod.eth,
        guest_mac: pod.guest_mac,
        tap_mac: pod.gateway_mac,
        alias: &alias,
    };
    let dev = device::create(nl, req, &target)?;
    let record = GuestRecord {
        version: RECORD_VERSION,
        network: who.network.to_string(),
        container_id: who.container_id.to_string(),
        ifname: who.ifname.to_string(),
        netns: pod.netns_path.display().to_string(),
        mode: req.mode,
        device: dev.name.clone(),
        device_number: dev.number,
        chained: pod.chained,
        mac: pod.guest_mac.to_string(),
        mtu: pod.mtu,
        hostname: who.hostname.map(str::to_string),
        addresses: pod
            .addresses
            .iter()
            .map(|a| GuestAddress {
                address: a.address,
                gateway: a.gateway,
            })
            .collect(),
        routes: pod
            .routes
            .iter()
            .map(|r| GuestRoute {
                dst: r.dst,
                gw: r.gateway,
            })
            .collect(),
        dns,
        dns_source,
        localhost: (!plan_ports.is_empty()).then(|| Localhost {
            address: localhost::POD_LINK_LOCAL,
            ports: req.localhost_ports.clone(),
            pod_services: req.pod_services.clone(),
            dns_forward: forward.map(IpAddr::V4),
        }),
    };
    let mut finish = || -> Result<(), CniError> {
        if !plan_ports.is_empty() {
            localhost::install(pod.ns, nl, &dev, &plan_ports)?;
        }
        faults::step("guest.record")?;
        record
            .write(&req.state_dir)
            .map_err(|e| CniError::io(format!("writing the guest record: {e}")))?;
        Ok(())
    };
    if let Err(e) = finish() {
        if !plan_ports.is_empty() {
            let _ = localhost::remove(pod.ns, who.ifname);
        }
        let _ = device::remove(
            nl,
            req.mode,
            &dev.name,
            &alias,
            &pending_name,
            who.ifname,
            pod.eth.mac,
        );
        return Err(e);
    }
    Ok(Attached {
        device: dev,
        record,
    })
}

/// Undoes [`attach`] as far as the record (or, without one, the request)
/// says. The namespace may be gone: then only the record is removed. If
/// anything in the namespace could not be removed, the record stays for
/// the runtime's retried DEL.
pub fn detach(
    state_dir: &Path,
    record: Option<&GuestRecord>,
    fallback: Option<(&GuestRequest, &str, &str)>,
    netns: Option<&Path>,
) -> Result<(), CniError> {
    let (mode, device, container_id, ifname, localhost, pod_mac) = match (record, fallback) {
        (Some(r), _) => (
            r.mode,
            r.device.clone(),
            r.container_id.clone(),
            r.ifname.clone(),
            r.localhost.is_some(),
            r.mac.parse::<MacAddr>().ok(),
        ),
        // No record: the ADD may have died anywhere after making the tap,
        // its localhost plumbing included (removing a table that is not
        // there is a no-op).
        (None, Some((req, id, ifname))) => (
            req.mode,
            req.device.clone(),
            id.to_string(),
            ifname.to_string(),
            req.mode == GuestMode::Tap,
            None,
        ),
        (None, None) => return Ok(()),
    };
    let ns = netns.and_then(|p| NetNs::open(p).ok());
    let mut first_error = None;
    if let Some(ns) = &ns {
        if localhost
            && let Err(e) =
                faults::step("guest.del-localhost").and_then(|()| localhost::remove(ns, &ifname))
        {
            first_error.get_or_insert(e);
        }
        let alias = device::alias(&container_id, &ifname);
        let pending = crate::names::guest_tap_pending(&container_id, &ifname);
        let removed = faults::step("guest.del-device")
            .and_then(|()| Netlink::in_netns(ns).map_err(errors::kernel))
            .and_then(|mut nl| {
                device::remove(&mut nl, mode, &device, &alias, &pending, &ifname, pod_mac)
            });
        if let Err(e) = removed {
            first_error.get_or_insert(e);
        }
    }
    // The record is what lets a retried DEL find the rest (whether there
    // is an nft table, the device's name): it goes only once the rest has.
    if let Some(e) = first_error {
        return Err(e);
    }
    faults::step("guest.del-record")?;
    GuestRecord::remove(state_dir, &container_id, &ifname).map_err(|e| CniError::io(e.to_string()))
}
