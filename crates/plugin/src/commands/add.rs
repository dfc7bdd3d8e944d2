//! ADD: give a container an interface on the network.
//!
//! Order matters for rollback: everything that can be refused without side
//! effects (config, environment, namespace, lease, an interface of that
//! name already in the pod) is checked before the first reservation is
//! made; after that, a failure undoes exactly what this call made — the
//! addresses it reserved and the veth pair it created, by index — and
//! nothing else. A repeated ADD of a live attachment is thus refused
//! without touching it; and if two ADDs race, the loser finds the names
//! taken when it creates the pair and leaves the winner's pair alone.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use tweed_cni::error::CniError;
use tweed_cni::result::{CniResult, Interface, IpConfig, Route};
use tweed_guest::record::DnsSource;
use tweed_netlink::{MacAddr, NetNs, Netlink};

use super::Call;
use crate::conf::DEFAULT_MTU;
use crate::dataplane::{PodAddress, PodRoute, bridge, pod, veth};
use crate::errors;
use crate::faults;
use crate::guest;
use crate::ipam::{IpamPlan, builtin, delegate, segment_block};
use crate::names;
use tweed_node::SubnetEnv;

/// What IPAM handed out.
struct Grant {
    addresses: Vec<PodAddress>,
    routes: Vec<PodRoute>,
    dns: Option<tweed_cni::result::Dns>,
    /// For tweed's own IPAM: what exactly this call reserved, to undo.
    reserved: Option<builtin::Reserved>,
}

pub fn run(call: &mut Call) -> Result<Value, CniError> {
    let conf = call.conf;
    if let Some(ends) = &conf.wire {
        return crate::wire_network::add(call, ends);
    }
    let network = conf.name().to_string();
    let container_id = call.container_id().to_string();
    let ifname = call.ifname().to_string();
    let netns_path = call
        .env
        .netns
        .clone()
        .ok_or_else(|| super::missing("CNI_NETNS"))?;

    let pod_ns =
        NetNs::open(&netns_path).map_err(|e| CniError::invalid_env("CNI_NETNS", e.to_string()))?;
    let mac = requested_mac(call)?;
    let requested_ips = requested_ips(call)?;
    let prev = match &conf.net.prev_result {
        Some(v) => Some(CniResult::from_json(v)?),
        None => None,
    };
    let guest_req = guest::request::resolve(&guest::request::Sources {
        section: conf.guest.as_ref(),
        runtime_config: &conf.net.runtime_config.extra,
        args: &call.env.args.other,
        container_id: &container_id,
        ifname: &ifname,
    })?;
    // Chained after the plugin that made the pod interface: add the guest
    // only.
    if let (Some(req), Some(prev)) = (&guest_req, &prev)
        && let Some(index) = guest::chained::pod_interface(prev, &ifname)
    {
        return guest::chained::add(call, req, prev.clone(), index);
    }
    // Wires belong to the pod, so the call for its routed pod network
    // records them (a segment interface is one more network of the pod's).
    let wires = match &conf.segment {
        None => crate::wires::requested(&conf.net.runtime_config.extra, &call.env.args, &ifname)?,
        Some(_) => None,
    };
    let lease = if conf.ipam.needs_lease() {
        Some(SubnetEnv::read(&conf.subnet_file).map_err(errors::lease)?)
    } else {
        None
    };
    let mut host = Netlink::new().map_err(errors::kernel)?;
    // A segment's bridge is tweedd's: it must exist, and its MTU is the
    // segment's.
    let segment_bridge = match &conf.segment {
        Some(name) => Some(bridge::segment(&mut host, name, conf.mtu)?),
        None => None,
    };
    let mtu = conf
        .mtu
        .or(segment_bridge.as_ref().map(|b| b.mtu))
        .or(lease.as_ref().and_then(|l| l.mtu))
        .unwrap_or(DEFAULT_MTU);

    let mut pod_nl = Netlink::in_netns(&pod_ns).map_err(errors::kernel)?;
    // The pod's MAC is chosen here (as the kernel would: random, locally
    // administered) unless the runtime asked for one, so the result needs
    // no lookup of the new interface.
    let pod_mac = mac.unwrap_or_else(MacAddr::random);

    // Refused before anything is reserved: the interface may be a live
    // attachment's (a runtime repeating its ADD), which must stay as it is.
    // Only a pair on its way out (a DEL of this network marked it and left
    // the kernel's slow unregistration to a detached helper) is finished
    // here, and then the interface is looked up again.
    if let Some(existing) = pod_nl.link_by_name(&ifname).map_err(errors::kernel)? {
        let finished = veth::finish_pending_delete(&mut host, &existing, &network)?;
        if !finished
            || pod_nl
                .link_by_name(&ifname)
                .map_err(errors::kernel)?
                .is_some()
        {
            return Err(interface_exists_error(&ifname, &netns_path));
        }
    }

    let grant = reserve(call, lease.as_ref(), &requested_ips)?;
    call.record.ips = grant
        .addresses
        .iter()
        .map(|a| a.address.to_string())
        .collect();

    let host_name = names::host_veth(&network, &container_id, &ifname);
    // What this call made, as far as it got: all that a failure below may
    // undo. The pair (the only device it deletes), the guest attachment
    // and the wire record it wrote (with the record it replaced).
    let mut created_veth: Option<u32> = None;
    let mut attached_guest: Option<tweed_guest::GuestRecord> = None;
    let mut wires_recorded: Option<crate::wires::Recorded> = None;
    let mut attach = || -> Result<Value, CniError> {
        let routes = pod_routes(call, &grant, lease.as_ref());
        let gateways: Vec<IpNet> = grant
            .addresses
            .iter()
            .filter_map(|a| {
                a.gateway.map(|gw| {
                    IpNet::new(gw, a.address.prefix_len()).expect("prefix from a valid net")
                })
            })
            .collect();
        faults::step("add.bridge")?;
        let br = match &segment_bridge {
            Some(b) => b.clone(),
            None => bridge::ensure(&mut host, &conf.bridge, mtu, &gateways)?,
        };
        let alias = names::alias(&network, &container_id, &ifname);
        let deleting_alias = names::deleting_alias(&network, &container_id, &ifname);
        let plan = veth::VethPlan {
            host_name: &host_name,
            alias: &alias,
            deleting_alias: &deleting_alias,
            bridge_index: br.index,
            hairpin: conf.hairpin,
            mtu,
            pod_ifname: &ifname,
            pod_mac: Some(pod_mac),
            pod_netns: &pod_ns,
        };
        faults::step("add.veth")?;
        let host_link = match veth::create_replacing_leftover(&mut host, &plan) {
            Ok(l) => l,
            Err(e) if e.code == errors::INTERFACE_EXISTS => {
                return Err(interface_exists(&mut pod_nl, &ifname, &netns_path, e));
            }
            Err(e) => return Err(e),
        };
        created_veth = Some(host_link.index);
        // The host end's IFLA_LINK is the pod end's index in the pod.
        let pod_index = host_link.peer_index.ok_or_else(|| {
            CniError::custom(errors::KERNEL, format!("{host_name} reports no peer"))
        })?;
        // A guest takes the addresses and routes; the pod's own stack
        // keeps none (see guest::localhost for its path to the guest).
        let (pod_addresses, pod_routes) = match guest_req {
            Some(_) => (&[][..], &[][..]),
            None => (&grant.addresses[..], &routes[..]),
        };
        pod::configure(
            &pod_ns,
            &mut pod_nl,
            &ifname,
            pod_index,
            pod_addresses,
            pod_routes,
        )?;
        let attached = match &guest_req {
            Some(req) => Some(attach_guest(
                call,
                req,
                &mut pod_nl,
                &pod_ns,
                pod_index,
                pod_mac,
                mtu,
                &grant,
                &routes,
                br.mac,
            )?),
            None => None,
        };
        attached_guest = attached.as_ref().map(|g| g.record.clone());

        let mut result = prev.clone().unwrap_or_default();
        let first = result.interfaces.len();
        result.interfaces.push(Interface {
            name: br.name.clone(),
            mac: br.mac.map(|m| m.to_string()),
            ..Default::default()
        });
        result.interfaces.push(Interface {
            name: host_link.name.clone(),
            mac: host_link.mac.map(|m| m.to_string()),
            ..Default::default()
        });
        result.interfaces.push(Interface {
            name: ifname.clone(),
            mac: Some(pod_mac.to_string()),
            mtu: Some(mtu),
            sandbox: Some(netns_path.display().to_string()),
            ..Default::default()
        });
        for a in &grant.addresses {
            result.ips.push(IpConfig {
                address: a.address,
                gateway: a.gateway,
                interface: Some(first + 2),
            });
        }
        for r in &routes {
            result.routes.push(Route {
                dst: r.dst,
                gw: r.gateway,
                ..Default::default()
            });
        }
        if let Some(dns) = result_dns(call, &grant) {
            result.dns = dns;
        }
        if let Some(g) = &attached {
            guest::result::add_guest(&mut result, g, &container_id);
        }
        if let Some((pod, ends)) = wires.clone() {
            faults::step("add.wires-record")?;
            wires_recorded = Some(crate::wires::record(
                &conf.wire_dir,
                &container_id,
                pod,
                &pod_ns,
                ends,
            )?);
        }
        // Where a step added after the last one would fail: everything
        // above must then be undone.
        faults::step("add.done")?;
        Ok(result.to_json(conf.version))
    };
    let outcome = attach();
    if outcome.is_err() {
        if let Some(recorded) = &wires_recorded {
            crate::wires::unrecord(&conf.wire_dir, &container_id, recorded);
        }
        if let (Some(record), Some(req)) = (&attached_guest, &guest_req) {
            // Its record, and in tap mode the tap with its plumbing (route,
            // neighbour, nft table), outlive the pod's end of the pair.
            let _ = guest::detach(&req.state_dir, Some(record), None, Some(&netns_path));
        }
        if let Some(index) = created_veth {
            veth::delete_created(&mut host, index);
        }
        unreserve(call, grant.reserved.as_ref());
    }
    outcome
}

/// The guest half of a container-path ADD, once the pod interface exists.
#[allow(clippy::too_many_arguments)]
fn attach_guest(
    call: &Call,
    req: &guest::GuestRequest,
    pod_nl: &mut Netlink,
    pod_ns: &NetNs,
    pod_index: u32,
    pod_mac: MacAddr,
    mtu: u32,
    grant: &Grant,
    routes: &[PodRoute],
    gateway_mac: Option<MacAddr>,
) -> Result<guest::Attached, CniError> {
    let eth = pod_nl
        .link_by_index(pod_index)
        .map_err(errors::kernel)?
        .ok_or_else(|| CniError::custom(errors::KERNEL, "the pod interface vanished"))?;
    let netns_path = pod_ns.path().to_path_buf();
    let offer = guest::offer([
        (
            call.conf.net.runtime_config.dns.as_ref(),
            DnsSource::RuntimeConfig,
        ),
        (call.conf.net.dns.as_ref(), DnsSource::NetworkConfig),
        (grant.dns.as_ref(), DnsSource::PrevResult),
    ]);
    guest::attach(
        pod_nl,
        &guest::Identity {
            network: call.conf.name(),
            container_id: call.container_id(),
            ifname: call.ifname(),
            hostname: call.env.args.k8s_pod_name.as_deref(),
        },
        req,
        &guest::PodSide {
            ns: pod_ns,
            netns_path: &netns_path,
            eth: &eth,
            guest_mac: pod_mac,
            mtu,
            addresses: &grant.addresses,
            routes,
            gateway_mac,
            chained: false,
        },
        &offer,
    )
}

/// The error for an ADD whose veth could not be created because a name
/// was taken: say which, naming the pod's interface when that is it.
fn interface_exists(
    pod_nl: &mut Netlink,
    ifname: &str,
    netns: &std::path::Path,
    fallback: CniError,
) -> CniError {
    match pod_nl.link_by_name(ifname) {
        Ok(Some(_)) => interface_exists_error(ifname, netns),
        _ => fallback,
    }
}

fn interface_exists_error(ifname: &str, netns: &std::path::Path) -> CniError {
    CniError::custom(
        errors::INTERFACE_EXISTS,
        format!(
            "CNI_IFNAME: interface {ifname} already exists in {}",
            netns.display()
        ),
    )
}

/// The MAC asked for through the `mac` capability or `MAC=` (capability
/// wins, as libcni documents for conflicting sources).
fn requested_mac(call: &Call) -> Result<Option<MacAddr>, CniError> {
    let from_runtime = call.conf.net.runtime_config.mac.as_deref();
    let from_args = call.env.args.mac.as_deref();
    match from_runtime.or(from_args) {
        None => Ok(None),
        Some(s) => s.parse::<MacAddr>().map(Some).map_err(|e| {
            let field = if from_runtime.is_some() {
                "runtimeConfig.mac"
            } else {
                "CNI_ARGS MAC"
            };
            CniError::invalid_config(field, e.to_string())
        }),
    }
}

/// Static addresses asked for through the `ips` capability or `IP=`.
fn requested_ips(call: &Call) -> Result<Vec<IpAddr>, CniError> {
    let mut out = Vec::new();
    for (i, s) in call.conf.net.runtime_config.ips.iter().enumerate() {
        // The capability carries CIDRs ("10.244.1.5/24"); plain addresses
        // are accepted too.
        let ip = s
            .parse::<IpNet>()
            .map(|n| n.addr())
            .or_else(|_| s.parse::<IpAddr>())
            .map_err(|_| {
                CniError::invalid_config(
                    &format!("runtimeConfig.ips[{i}]"),
                    format!("{s:?} is not an IP address"),
                )
            })?;
        out.push(ip);
    }
    for ip in &call.env.args.ips {
        if !out.contains(ip) {
            out.push(*ip);
        }
    }
    Ok(out)
}

fn reserve(
    call: &mut Call,
    lease: Option<&SubnetEnv>,
    requested: &[IpAddr],
) -> Result<Grant, CniError> {
    match &call.conf.ipam {
        IpamPlan::Builtin(ipam) => {
            let spec = builtin::spec(ipam, lease)?;
            faults::step("add.ipam-allocate")?;
            let reserved = builtin::allocate(
                &spec,
                call.conf.name(),
                call.container_id(),
                call.ifname(),
                requested,
            )?;
            Ok(Grant {
                addresses: reserved.allocations.iter().map(PodAddress::from).collect(),
                routes: spec.routes.iter().map(PodRoute::from).collect(),
                dns: None,
                reserved: Some(reserved),
            })
        }
        IpamPlan::Delegate(plugin) => {
            faults::step("add.ipam-delegate")?;
            let out = delegate::run(plugin, &call.env.path, "ADD", call.stdin)?;
            // The delegate succeeded, so it may hold a reservation now:
            // whatever refuses its answer must give that back.
            let grant =
                faults::step("add.ipam-delegate-result").and_then(|()| delegate_grant(plugin, out));
            if grant.is_err() {
                unreserve(call, None);
            }
            grant
        }
        IpamPlan::SegmentBlock { data_dir } => {
            let segment = call.conf.segment.as_deref().expect("a segment's plan");
            let dir = &call.conf.segment_dir;
            let (addresses, reserved) = match segment_block::spec(dir, segment, data_dir)? {
                Some(spec) => {
                    let reserved = builtin::allocate(
                        &spec,
                        call.conf.name(),
                        call.container_id(),
                        call.ifname(),
                        requested,
                    )
                    .map_err(|e| segment_block::full_block(e, dir, segment))?;
                    segment_block::ask_ahead(dir, segment, &spec, call.conf.name());
                    let addresses = reserved
                        .allocations
                        .iter()
                        .map(|a| PodAddress {
                            address: a.address,
                            gateway: None,
                        })
                        .collect();
                    (addresses, Some(reserved))
                }
                None => (Vec::new(), None),
            };
            Ok(Grant {
                addresses,
                routes: Vec::new(),
                dns: None,
                reserved,
            })
        }
    }
}

/// What a delegated IPAM plugin's successful ADD handed out.
fn delegate_grant(plugin: &str, out: Option<Value>) -> Result<Grant, CniError> {
    let out = out.ok_or_else(|| {
        CniError::custom(
            errors::DELEGATE_FAILED,
            format!("ipam plugin {plugin} returned no result"),
        )
    })?;
    let result = CniResult::from_json(&out)?;
    if result.ips.is_empty() {
        return Err(CniError::custom(
            errors::DELEGATE_FAILED,
            format!("ipam plugin {plugin} returned no addresses"),
        ));
    }
    Ok(Grant {
        addresses: result.ips.iter().map(PodAddress::from).collect(),
        routes: result.routes.iter().map(PodRoute::from).collect(),
        dns: Some(result.dns.clone()),
        reserved: None,
    })
}

/// Undoes [`reserve`] on a failed ADD: exactly what this call reserved
/// (addresses and round-robin cursor), never another address the
/// attachment may hold. A delegate gets DEL, as the spec asks; what that
/// releases is the delegate's business.
fn unreserve(call: &Call, reserved: Option<&builtin::Reserved>) {
    match (&call.conf.ipam, reserved) {
        (IpamPlan::Delegate(plugin), _) => {
            let _ = delegate::run(plugin, &call.env.path, "DEL", call.stdin);
        }
        (_, Some(reserved)) => {
            let _ = builtin::undo(
                reserved,
                call.conf.name(),
                call.container_id(),
                call.ifname(),
            );
        }
        (_, None) => {}
    }
}

/// Routes for the pod: IPAM's routes (a missing gateway means the family's
/// gateway), then a default route per family unless one was given or
/// `isDefaultGateway` is off — in which case the cluster network from the
/// lease is routed instead.
fn pod_routes(call: &Call, grant: &Grant, lease: Option<&SubnetEnv>) -> Vec<PodRoute> {
    let gateway_for = |v4: bool| {
        grant
            .addresses
            .iter()
            .find(|a| a.address.addr().is_ipv4() == v4)
            .and_then(|a| a.gateway)
    };
    let mut routes: Vec<PodRoute> = grant
        .routes
        .iter()
        .map(|r| PodRoute {
            dst: r.dst,
            gateway: r.gateway.or_else(|| gateway_for(r.dst.addr().is_ipv4())),
        })
        .collect();
    for v4 in [true, false] {
        let Some(gw) = gateway_for(v4) else { continue };
        let any: IpNet = if v4 {
            "0.0.0.0/0".parse().expect("literal")
        } else {
            "::/0".parse().expect("literal")
        };
        if call.conf.is_default_gateway {
            if !routes.iter().any(|r| r.dst == any) {
                routes.push(PodRoute {
                    dst: any,
                    gateway: Some(gw),
                });
            }
        } else if let Some(net) = lease
            .and_then(|l| if v4 { l.ipv4.as_ref() } else { l.ipv6.as_ref() })
            .and_then(|f| f.network)
            && !routes.iter().any(|r| r.dst == net)
        {
            routes.push(PodRoute {
                dst: net,
                gateway: Some(gw),
            });
        }
    }
    routes
}

/// DNS for the result: what the runtime passed (`dns` capability), else
/// the network config's `dns`, else what a delegated IPAM returned.
fn result_dns(call: &Call, grant: &Grant) -> Option<tweed_cni::result::Dns> {
    call.conf
        .net
        .runtime_config
        .dns
        .clone()
        .or_else(|| call.conf.net.dns.clone())
        .or_else(|| grant.dns.clone())
}
