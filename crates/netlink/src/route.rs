//! Routes.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::encap;
pub use crate::encap::RouteEncap;
use crate::error::Result;
use crate::socket::Netlink;

/// The main routing table.
pub const TABLE_MAIN: u32 = 254;

/// A route, as written to or read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    pub table: u32,
    /// `RT_SCOPE_*`: 0 universe, 253 link, 254 host. `None` picks link scope
    /// for IPv4 routes without a gateway and universe otherwise, as `ip` does.
    pub scope: Option<u8>,
    /// Route metric (`RTA_PRIORITY`).
    pub metric: Option<u32>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    /// Use the gateway even if no connected route covers it (`onlink`).
    pub onlink: bool,
    /// Who installed the route (`RTPROT_*`); lets an agent find its own.
    pub protocol: u8,
    /// Lightweight-tunnel encapsulation (SRv6, IP tunnel metadata).
    pub encap: Option<RouteEncap>,
}

/// What the kernel would do with a packet to some destination
/// (`ip route get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLookup {
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would pick.
    pub prefsrc: Option<IpAddr>,
}

/// `RTPROT_BOOT`, what `ip route add` uses by default.
pub const PROTO_BOOT: u8 = 3;
/// `RTPROT_STATIC`.
pub const PROTO_STATIC: u8 = 4;

impl Route {
    /// A route to `dst` in the main table, installed with `RTPROT_BOOT`.
    pub fn new(dst: IpNet) -> Route {
        Route {
            dst,
            gateway: None,
            oif: None,
            table: TABLE_MAIN,
            scope: None,
            metric: None,
            mtu: None,
            advmss: None,
            onlink: false,
            protocol: PROTO_BOOT,
            encap: None,
        }
    }

    pub fn via(mut self, gateway: IpAddr) -> Route {
        self.gateway = Some(gateway);
        self
    }

    pub fn dev(mut self, index: u32) -> Route {
        self.oif = Some(index);
        self
    }

    fn effective_scope(&self) -> u8 {
        self.scope.unwrap_or(match (self.gateway, self.dst) {
            (None, IpNet::V4(_)) => 253,
            _ => 0,
        })
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " dev #{oif}")?;
        }
        if self.table != TABLE_MAIN {
            write!(f, " table {}", self.table)?;
        }
        Ok(())
    }
}

impl Netlink {
    /// Adds a route; EEXIST when an identical route exists.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        self.execute(
            || format!("add route {route}"),
            RouteNetlinkMessage::NewRoute(route_message(route)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Adds a route or replaces the one with the same destination.
    pub fn replace_route(&mut self, route: &Route) -> Result<()> {
        self.execute(
            || format!("replace route {route}"),
            RouteNetlinkMessage::NewRoute(route_message(route)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    pub fn delete_route(&mut self, route: &Route) -> Result<()> {
        self.execute(
            || format!("delete route {route}"),
            RouteNetlinkMessage::DelRoute(route_message(route)),
            0,
        )
    }

    /// Asks the kernel how it would route a packet to `dst`.
    pub fn route_get(&mut self, dst: IpAddr) -> Result<Option<RouteLookup>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = match dst {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        let reply = self.get(
            || format!("route get {dst}"),
            RouteNetlinkMessage::GetRoute(msg),
        )?;
        Ok(reply.map(|m| {
            let mut out = RouteLookup {
                oif: None,
                gateway: None,
                prefsrc: None,
            };
            if let RouteNetlinkMessage::NewRoute(m) = m {
                for attr in m.attributes {
                    match attr {
                        RouteAttribute::Oif(i) => out.oif = Some(i),
                        RouteAttribute::Gateway(a) => out.gateway = to_ip(a),
                        RouteAttribute::PrefSource(a) => out.prefsrc = to_ip(a),
                        _ => {}
                    }
                }
            }
            out
        }))
    }

    /// Unicast routes of one family in one table.
    pub fn routes(&mut self, ipv6: bool, table: u32) -> Result<Vec<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = if ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let replies = self.dump(
            || "list routes".to_string(),
            RouteNetlinkMessage::GetRoute(msg),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(parse_route)
            .filter(|r| r.table == table)
            .collect())
    }
}

fn route_message(route: &Route) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = match route.dst {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    h.destination_prefix_length = route.dst.prefix_len();
    h.kind = RouteType::Unicast;
    h.protocol = RouteProtocol::from(route.protocol);
    h.scope = RouteScope::from(route.effective_scope());
    if route.table < 256 {
        h.table = route.table as u8;
    } else {
        h.table = RouteHeader::RT_TABLE_UNSPEC;
    }
    if route.onlink {
        h.flags |= RouteFlags::Onlink;
    }
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(
            route.dst.network(),
        )));
    msg.attributes.push(RouteAttribute::Table(route.table));
    if let Some(gw) = route.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(metric) = route.metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    let mut metrics = Vec::new();
    if let Some(mtu) = route.mtu {
        metrics.push(RouteMetric::Mtu(mtu));
    }
    if let Some(advmss) = route.advmss {
        metrics.push(RouteMetric::Advmss(advmss));
    }
    if !metrics.is_empty() {
        msg.attributes.push(RouteAttribute::Metrics(metrics));
    }
    if let Some(encap) = &route.encap {
        let (kind, body) = encap::to_attributes(encap);
        msg.attributes.push(RouteAttribute::EncapType(kind));
        msg.attributes.push(RouteAttribute::Encap(body));
    }
    msg
}

fn to_ip(addr: RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(a)),
        _ => None,
    }
}

fn parse_route(message: RouteNetlinkMessage) -> Option<Route> {
    let RouteNetlinkMessage::NewRoute(msg) = message else {
        return None;
    };
    if msg.header.kind != RouteType::Unicast {
        return None;
    }
    let ipv6 = msg.header.address_family == AddressFamily::Inet6;
    let mut dst: Option<IpAddr> = None;
    let mut route = Route::new(if ipv6 {
        "::/0".parse().expect("literal")
    } else {
        "0.0.0.0/0".parse().expect("literal")
    });
    route.table = msg.header.table as u32;
    route.scope = Some(u8::from(msg.header.scope));
    route.onlink = msg.header.flags.contains(RouteFlags::Onlink);
    route.protocol = u8::from(msg.header.protocol);
    for attr in msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = to_ip(a),
            RouteAttribute::Gateway(a) => route.gateway = to_ip(a),
            RouteAttribute::Oif(i) => route.oif = Some(i),
            RouteAttribute::Table(t) => route.table = t,
            RouteAttribute::Priority(p) => route.metric = Some(p),
            RouteAttribute::Encap(items) => route.encap = encap::parse(items),
            RouteAttribute::Metrics(ms) => {
                for m in ms {
                    match m {
                        RouteMetric::Mtu(v) => route.mtu = Some(v),
                        RouteMetric::Advmss(v) => route.advmss = Some(v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(d) = dst {
        route.dst = IpNet::new(d, msg.header.destination_prefix_length).ok()?;
    }
    Some(route)
}
