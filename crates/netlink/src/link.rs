//! Network devices: look up, create, change, delete.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    BridgeStpState, InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoMacVtap, InfoPortData,
    InfoPortKind, InfoVeth, InfoVxlan, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo,
    LinkMessage, MacVtapMode,
};

use crate::error::Result;
use crate::geneve::{self, GeneveInfo, GeneveSpec};
use crate::mac::MacAddr;
use crate::netns::NetNs;
use crate::socket::Netlink;

/// A network device as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// The driver kind (`veth`, `bridge`, `vxlan`, ...); `None` for
    /// physical devices and loopback.
    pub kind: Option<String>,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Index of the bridge (or other master) this device is a port of.
    pub master: Option<u32>,
    pub alias: Option<String>,
    /// For veth and other stacked devices: the index of the peer or lower
    /// device, which may live in another namespace (see `link_netnsid`).
    pub peer_index: Option<u32>,
    pub link_netnsid: Option<i32>,
    /// Set when the device is a bridge port.
    pub bridge_port: Option<BridgePort>,
    /// VXLAN parameters when the device is a VXLAN device.
    pub vxlan: Option<VxlanInfo>,
    /// Geneve parameters when the device is a Geneve device.
    pub geneve: Option<GeneveInfo>,
    /// Transmit queue length (`IFLA_TXQLEN`, `ip link ... qlen`); 0 on
    /// the veths some plugins make (the Go netlink library's).
    pub qlen: u32,
}

/// Bridge-port settings read back from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BridgePort {
    pub hairpin: bool,
    pub learning: bool,
}

/// What the kernel reports about a VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VxlanInfo {
    pub vni: u32,
    pub port: u16,
    pub local: Option<IpAddr>,
    pub underlay_index: Option<u32>,
    pub learning: bool,
    /// The unicast remote, for a point-to-point device.
    pub remote: Option<IpAddr>,
}

/// The kind-specific part of a device to create.
#[derive(Debug)]
pub enum LinkKind<'a> {
    Bridge,
    Veth(VethPeer<'a>),
    Vxlan(VxlanSpec),
    /// An external (metadata-mode) Geneve device.
    Geneve(GeneveSpec),
    /// A bridge-mode macvtap on top of the device with index `lower`.
    MacVtap {
        lower: u32,
    },
    /// A WireGuard device; its keys and peers are set over generic
    /// netlink ([`Wireguard`](crate::Wireguard)).
    Wireguard,
}

/// The far end of a veth pair. Creating it directly in its target namespace
/// (rather than creating it here and moving it) means no half-made device is
/// ever visible in the wrong namespace.
#[derive(Debug)]
pub struct VethPeer<'a> {
    pub name: String,
    pub mac: Option<MacAddr>,
    pub netns: Option<&'a NetNs>,
}

/// A VXLAN device for explicit (non-learning) forwarding.
#[derive(Debug, Clone)]
pub struct VxlanSpec {
    pub vni: u32,
    pub port: u16,
    pub local: Option<IpAddr>,
    pub underlay_index: Option<u32>,
    pub learning: bool,
    /// A point-to-point device: every frame goes to this underlay address
    /// (the kernel's all-zero FDB entry). `None`: the FDB decides.
    pub remote: Option<IpAddr>,
}

/// A device to create.
#[derive(Debug)]
pub struct NewLink<'a> {
    pub name: String,
    pub kind: LinkKind<'a>,
    pub mtu: Option<u32>,
    pub mac: Option<MacAddr>,
    pub up: bool,
    pub master: Option<u32>,
    pub alias: Option<String>,
    /// Hairpin on the new device's bridge port (needs `master`).
    pub hairpin: Option<bool>,
    /// Transmit/receive queues; one for a pod's veth, where several only
    /// cost an extra RCU wait at creation.
    pub queues: Option<u32>,
    /// Transmit queue length (`txqueuelen`); `None` keeps the kernel's.
    pub qlen: Option<u32>,
    /// Create the device directly in this namespace instead of the
    /// socket's. A VXLAN device created this way keeps its UDP socket in
    /// the socket's namespace: its tunnel runs over that namespace's
    /// underlay while the device itself is in the target.
    pub netns: Option<&'a NetNs>,
}

impl<'a> NewLink<'a> {
    pub fn new(name: impl Into<String>, kind: LinkKind<'a>) -> Self {
        NewLink {
            name: name.into(),
            kind,
            mtu: None,
            mac: None,
            up: false,
            master: None,
            alias: None,
            hairpin: None,
            queues: None,
            qlen: None,
            netns: None,
        }
    }
}

impl Netlink {
    /// Looks a device up by name; `None` when there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        // Counters are never needed here; leaving them out makes the reply
        // smaller and quicker to build and to decode.
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let reply = self.get(
            || format!("get link {name}"),
            RouteNetlinkMessage::GetLink(msg),
        )?;
        Ok(reply.and_then(parse_link))
    }

    /// Looks a device up by index; `None` when there is none.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let reply = self.get(
            || format!("get link #{index}"),
            RouteNetlinkMessage::GetLink(msg),
        )?;
        Ok(reply.and_then(parse_link))
    }

    /// All devices in this namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.dump(
            || "list links".to_string(),
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        Ok(replies.into_iter().filter_map(parse_link).collect())
    }

    /// Creates a device; fails with EEXIST if the name is taken (in the
    /// target namespace, for a veth peer).
    ///
    /// With [`NewLink::netns`] the device is made in that namespace, where
    /// this socket cannot see it: its alias and bridge-port settings are
    /// then left to a socket opened there.
    pub fn create_link(&mut self, spec: &NewLink) -> Result<()> {
        if spec.netns.is_some() {
            let (name, msg) = new_link_message(spec);
            return self.execute(
                || format!("create {name} in another namespace"),
                RouteNetlinkMessage::NewLink(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            );
        }
        self.create_link_and_get(spec).map(|_| ())
    }

    /// [`create_link`](Self::create_link), returning the new device as the
    /// kernel reports it right after creation. On an error the device does
    /// not exist: either the kernel refused it, or it was deleted again.
    pub fn create_link_and_get(&mut self, spec: &NewLink) -> Result<Link> {
        let (what, msg) = new_link_message(spec);
        let name = &spec.name;
        let echoed = self.execute_echo(
            || format!("create {what}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        // The kernel echoes the new device (Linux 6.3 and later); older
        // kernels need a lookup.
        let echoed = echoed
            .into_iter()
            .filter_map(parse_link)
            .find(|l| l.name == spec.name);
        let mut link = match echoed {
            Some(l) => l,
            None => self.link_by_name(&spec.name)?.ok_or_else(|| {
                crate::error::NetlinkError::NotFound {
                    what: format!("link {name} right after creating it"),
                }
            })?,
        };
        // The kernel ignores IFLA_IFALIAS and bridge-port settings when
        // creating a device, so they follow in one more request. If that
        // fails, the device this call made is deleted again (by its index:
        // the name may meanwhile be someone else's), so an error always
        // means nothing was created.
        if spec.alias.is_some() || spec.hairpin.is_some() {
            if let Err(e) =
                self.set_alias_and_hairpin(link.index, spec.alias.as_deref(), spec.hairpin)
            {
                let _ = self.delete_link(link.index);
                return Err(e);
            }
            if let Some(a) = &spec.alias {
                link.alias = Some(a.clone());
            }
            if let (Some(h), Some(port)) = (spec.hairpin, link.bridge_port.as_mut()) {
                port.hairpin = h;
            }
        }
        Ok(link)
    }

    /// Deletes a device (both ends, for a veth).
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.execute(
            || format!("delete link #{index}"),
            RouteNetlinkMessage::DelLink(msg),
            0,
        )
    }

    /// Brings a device up or down.
    pub fn set_link_up(&mut self, index: u32, up: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if up {
            msg.header.flags |= LinkFlags::Up;
        }
        msg.header.change_mask |= LinkFlags::Up;
        let state = if up { "up" } else { "down" };
        self.execute(
            || format!("set link #{index} {state}"),
            RouteNetlinkMessage::NewLink(msg),
            0,
        )
    }

    /// Makes the device a port of `master`, or frees it with `None`.
    pub fn set_link_master(&mut self, index: u32, master: Option<u32>) -> Result<()> {
        self.set_attribute(
            index,
            LinkAttribute::Controller(master.unwrap_or(0)),
            "master",
        )
    }

    pub fn set_link_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.set_attribute(index, LinkAttribute::Mtu(mtu), "mtu")
    }

    /// Sets the transmit queue length (`ip link set ... txqueuelen`).
    pub fn set_link_qlen(&mut self, index: u32, qlen: u32) -> Result<()> {
        self.set_attribute(index, LinkAttribute::TxQueueLen(qlen), "txqueuelen")
    }

    pub fn set_link_mac(&mut self, index: u32, mac: MacAddr) -> Result<()> {
        self.set_attribute(index, LinkAttribute::Address(mac.0.to_vec()), "address")
    }

    /// Renames a device; the kernel requires most devices to be down.
    pub fn set_link_name(&mut self, index: u32, name: &str) -> Result<()> {
        self.set_attribute(index, LinkAttribute::IfName(name.to_string()), "name")
    }

    pub fn set_link_alias(&mut self, index: u32, alias: &str) -> Result<()> {
        self.set_attribute(index, LinkAttribute::IfAlias(alias.to_string()), "alias")
    }

    /// Sets IPv4 per-device settings (`IPV4_DEVCONF_*` index → value) over
    /// netlink, which spares entering the device's namespace to write
    /// `/proc/sys/net/ipv4/conf/<dev>/...`.
    pub fn set_ipv4_devconf(&mut self, index: u32, settings: &[(u16, u32)]) -> Result<()> {
        const AF_INET: u16 = 2;
        const IFLA_INET_CONF: u16 = 1;
        const NLA_F_NESTED: u16 = 0x8000;
        let nla = |kind: u16, payload: &[u8]| -> Vec<u8> {
            let len = 4 + payload.len();
            let mut v = Vec::with_capacity((len + 3) & !3);
            v.extend_from_slice(&(len as u16).to_ne_bytes());
            v.extend_from_slice(&kind.to_ne_bytes());
            v.extend_from_slice(payload);
            v.resize((len + 3) & !3, 0);
            v
        };
        let mut conf = Vec::new();
        for (key, value) in settings {
            conf.extend(nla(*key, &value.to_ne_bytes()));
        }
        let inet = nla(IFLA_INET_CONF | NLA_F_NESTED, &conf);
        let af = nla(AF_INET | NLA_F_NESTED, &inet);
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::AfSpecUnknown(af));
        self.execute(
            || {
                let shown: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("set IPv4 devconf {} on link #{index}", shown.join(" "))
            },
            RouteNetlinkMessage::NewLink(msg),
            0,
        )
    }

    /// Moves a device into another namespace.
    pub fn set_link_netns(&mut self, index: u32, ns: &NetNs) -> Result<()> {
        self.set_attribute(index, LinkAttribute::NetNsFd(ns.as_raw_fd()), "netns")
    }

    /// Sets the alias and/or the bridge-port hairpin flag in one request.
    pub fn set_alias_and_hairpin(
        &mut self,
        index: u32,
        alias: Option<&str>,
        hairpin: Option<bool>,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if let Some(alias) = alias {
            msg.attributes
                .push(LinkAttribute::IfAlias(alias.to_string()));
        }
        if let Some(h) = hairpin {
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                    h,
                )])),
            ]));
        }
        self.execute(
            || format!("set alias/bridge port of link #{index}"),
            RouteNetlinkMessage::NewLink(msg),
            0,
        )
    }

    /// Sets bridge-port options on a port (hairpin lets a pod reach itself
    /// through a service address that is load-balanced back to it).
    pub fn set_bridge_port(&mut self, index: u32, hairpin: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                hairpin,
            )])),
        ]));
        self.execute(
            || format!("set bridge port #{index} hairpin {hairpin}"),
            RouteNetlinkMessage::NewLink(msg),
            0,
        )
    }

    fn set_attribute(&mut self, index: u32, attr: LinkAttribute, what: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let shown = format!("{attr:?}");
        msg.attributes.push(attr);
        self.execute(
            || format!("set link #{index} {what} ({shown})"),
            RouteNetlinkMessage::NewLink(msg),
            0,
        )
    }
}

fn parse_link(message: RouteNetlinkMessage) -> Option<Link> {
    let RouteNetlinkMessage::NewLink(msg) = message else {
        return None;
    };
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        mac: None,
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        master: None,
        alias: None,
        peer_index: None,
        link_netnsid: None,
        bridge_port: None,
        vxlan: None,
        geneve: None,
        qlen: 0,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Mtu(m) => link.mtu = m,
            LinkAttribute::TxQueueLen(q) => link.qlen = q,
            LinkAttribute::Address(a) => link.mac = MacAddr::from_slice(&a),
            LinkAttribute::Controller(m) if m != 0 => link.master = Some(m),
            LinkAttribute::IfAlias(a) => link.alias = Some(a),
            LinkAttribute::Link(l) if l != 0 => link.peer_index = Some(l),
            LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(id),
            LinkAttribute::LinkInfo(infos) => parse_link_info(&mut link, infos),
            _ => {}
        }
    }
    Some(link)
}

fn parse_link_info(link: &mut Link, infos: Vec<LinkInfo>) {
    for info in infos {
        match info {
            LinkInfo::Kind(kind) => link.kind = Some(kind.to_string()),
            LinkInfo::PortData(InfoPortData::BridgePort(opts)) => {
                let mut port = BridgePort::default();
                for opt in opts {
                    match opt {
                        InfoBridgePort::HairpinMode(h) => port.hairpin = h,
                        InfoBridgePort::Learning(l) => port.learning = l,
                        _ => {}
                    }
                }
                link.bridge_port = Some(port);
            }
            LinkInfo::Data(InfoData::Vxlan(opts)) => {
                let mut v = VxlanInfo::default();
                for opt in opts {
                    match opt {
                        InfoVxlan::Id(id) => v.vni = id,
                        InfoVxlan::Port(p) => v.port = p,
                        InfoVxlan::Local(a) => v.local = Some(IpAddr::V4(a)),
                        InfoVxlan::Local6(a) => v.local = Some(IpAddr::V6(a)),
                        InfoVxlan::Group(a) => v.remote = Some(IpAddr::V4(a)),
                        InfoVxlan::Group6(a) => v.remote = Some(IpAddr::V6(a)),
                        InfoVxlan::Link(l) if l != 0 => v.underlay_index = Some(l),
                        InfoVxlan::Learning(l) => v.learning = l,
                        _ => {}
                    }
                }
                link.vxlan = Some(v);
            }
            LinkInfo::Data(InfoData::Geneve(opts)) => link.geneve = Some(geneve::parse(opts)),
            _ => {}
        }
    }
}

/// The RTM_NEWLINK request for `spec`, and words for it in errors.
fn new_link_message(spec: &NewLink) -> (String, LinkMessage) {
    let mut msg = LinkMessage::default();
    msg.attributes
        .push(LinkAttribute::IfName(spec.name.clone()));
    if let Some(mtu) = spec.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = spec.mac {
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    if let Some(master) = spec.master {
        msg.attributes.push(LinkAttribute::Controller(master));
    }
    if spec.up {
        msg.header.flags |= LinkFlags::Up;
        msg.header.change_mask |= LinkFlags::Up;
    }
    if let Some(q) = spec.queues {
        msg.attributes.push(LinkAttribute::NumTxQueues(q));
        msg.attributes.push(LinkAttribute::NumRxQueues(q));
    }
    if let Some(q) = spec.qlen {
        msg.attributes.push(LinkAttribute::TxQueueLen(q));
    }
    if let Some(ns) = spec.netns {
        msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
    }
    let (kind, data) = match &spec.kind {
        LinkKind::Bridge => (
            InfoKind::Bridge,
            // No STP and no forwarding delay: a node bridge is a leaf,
            // and ports must forward the moment a pod starts.
            Some(InfoData::Bridge(vec![
                InfoBridge::StpState(BridgeStpState::Disabled),
                InfoBridge::ForwardDelay(0),
            ])),
        ),
        LinkKind::Veth(peer) => {
            let mut p = LinkMessage::default();
            p.attributes.push(LinkAttribute::IfName(peer.name.clone()));
            if let Some(mtu) = spec.mtu {
                p.attributes.push(LinkAttribute::Mtu(mtu));
            }
            if let Some(mac) = peer.mac {
                p.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
            }
            if let Some(ns) = peer.netns {
                p.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
            }
            if let Some(q) = spec.queues {
                p.attributes.push(LinkAttribute::NumTxQueues(q));
                p.attributes.push(LinkAttribute::NumRxQueues(q));
            }
            (InfoKind::Veth, Some(InfoData::Veth(InfoVeth::Peer(p))))
        }
        LinkKind::Vxlan(v) => {
            let mut opts = vec![
                InfoVxlan::Id(v.vni),
                InfoVxlan::Port(v.port),
                InfoVxlan::Learning(v.learning),
            ];
            match v.local {
                Some(IpAddr::V4(a)) => opts.push(InfoVxlan::Local(a)),
                Some(IpAddr::V6(a)) => opts.push(InfoVxlan::Local6(a)),
                None => {}
            }
            match v.remote {
                Some(IpAddr::V4(a)) => opts.push(InfoVxlan::Group(a)),
                Some(IpAddr::V6(a)) => opts.push(InfoVxlan::Group6(a)),
                None => {}
            }
            if let Some(index) = v.underlay_index {
                opts.push(InfoVxlan::Link(index));
            }
            (InfoKind::Vxlan, Some(InfoData::Vxlan(opts)))
        }
        LinkKind::Geneve(g) => (InfoKind::Geneve, Some(geneve::info_data(g))),
        LinkKind::Wireguard => (InfoKind::Wireguard, None),
        LinkKind::MacVtap { lower } => {
            msg.attributes.push(LinkAttribute::Link(*lower));
            (
                InfoKind::MacVtap,
                Some(InfoData::MacVtap(vec![InfoMacVtap::Mode(
                    MacVtapMode::Bridge,
                )])),
            )
        }
    };
    let mut info = vec![LinkInfo::Kind(kind)];
    if let Some(data) = data {
        info.push(LinkInfo::Data(data));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(info));
    let what = match &spec.kind {
        LinkKind::Bridge => "bridge".to_string(),
        LinkKind::Veth(p) => format!("veth (peer {})", p.name),
        LinkKind::Vxlan(v) => format!("vxlan (VNI {})", v.vni),
        LinkKind::Geneve(g) => format!("geneve (external, port {})", g.port),
        LinkKind::MacVtap { lower } => format!("macvtap on link #{lower}"),
        LinkKind::Wireguard => "wireguard".to_string(),
    };
    (format!("{what} {}", spec.name), msg)
}
