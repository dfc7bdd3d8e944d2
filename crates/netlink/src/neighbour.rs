//! Neighbour (ARP/NDP) entries and bridge/VXLAN forwarding database entries.
//!
//! An overlay is programmed as explicit state: one permanent neighbour per
//! peer (its VTEP MAC) and one FDB entry telling the VXLAN device which
//! underlay address owns that MAC, so nothing depends on flood-and-learn.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::mac::MacAddr;
use crate::socket::Netlink;

/// An IP-to-MAC mapping on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub index: u32,
    pub ip: IpAddr,
    pub mac: Option<MacAddr>,
    pub permanent: bool,
}

/// A forwarding database entry: frames for `mac` leave through `index`,
/// and for a VXLAN device, are tunnelled to `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub index: u32,
    pub mac: MacAddr,
    pub dst: Option<IpAddr>,
    pub vni: Option<u32>,
    pub permanent: bool,
    /// The entry belongs to the device itself (`self`), not to a bridge.
    pub own: bool,
    /// The bridge the entry lives on (`master`).
    pub master: Option<u32>,
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn neighbour_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

fn to_ip(addr: NeighbourAddress) -> Option<IpAddr> {
    match addr {
        NeighbourAddress::Inet(a) => Some(IpAddr::V4(a)),
        NeighbourAddress::Inet6(a) => Some(IpAddr::V6(a)),
        // Bridge-family (FDB) messages carry the VXLAN destination as raw
        // bytes, because the message family does not say which IP family.
        NeighbourAddress::Other(b) => match b.len() {
            4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            _ => None,
        },
        _ => None,
    }
}

impl Netlink {
    /// Adds or replaces a permanent neighbour entry.
    pub fn set_neighbour(&mut self, index: u32, ip: IpAddr, mac: MacAddr) -> Result<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family(ip);
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(ip)));
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        self.execute(
            || format!("set neighbour {ip} lladdr {mac} on link #{index}"),
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    pub fn delete_neighbour(&mut self, index: u32, ip: IpAddr) -> Result<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family(ip);
        msg.header.ifindex = index;
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(ip)));
        self.execute(
            || format!("delete neighbour {ip} on link #{index}"),
            RouteNetlinkMessage::DelNeighbour(msg),
            0,
        )
    }

    /// Neighbour entries of one family, optionally on one interface.
    pub fn neighbours(&mut self, ipv6: bool, index: Option<u32>) -> Result<Vec<Neighbour>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = if ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        // Strict dump checking wants the interface filter as an attribute.
        if let Some(i) = index {
            msg.attributes.push(NeighbourAttribute::IfIndex(i));
        }
        let replies = self.dump(
            || "list neighbours".to_string(),
            RouteNetlinkMessage::GetNeighbour(msg),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| {
                let RouteNetlinkMessage::NewNeighbour(m) = m else {
                    return None;
                };
                let mut ip = None;
                let mut mac = None;
                for attr in m.attributes {
                    match attr {
                        NeighbourAttribute::Destination(a) => ip = to_ip(a),
                        NeighbourAttribute::LinkLayerAddress(l) => mac = MacAddr::from_slice(&l),
                        _ => {}
                    }
                }
                Some(Neighbour {
                    index: m.header.ifindex,
                    ip: ip?,
                    mac,
                    permanent: is_permanent(m.header.state),
                })
            })
            .filter(|n| index.is_none_or(|i| n.index == i))
            .collect())
    }

    /// Adds or replaces a permanent `self` FDB entry on a VXLAN device:
    /// frames for `mac` are tunnelled to `dst`.
    pub fn set_fdb(&mut self, index: u32, mac: MacAddr, dst: IpAddr) -> Result<()> {
        self.fdb_request(index, mac, Some(dst), NLM_F_CREATE | NLM_F_REPLACE)
    }

    /// Appends a `self` FDB entry without replacing others for the same
    /// MAC; with the all-zero MAC this builds head-end replication lists.
    pub fn append_fdb(&mut self, index: u32, mac: MacAddr, dst: IpAddr) -> Result<()> {
        self.fdb_request(index, mac, Some(dst), NLM_F_CREATE | NLM_F_APPEND)
    }

    /// Deletes the `self` FDB entry for `mac` (and `dst`, when several
    /// destinations share the MAC).
    pub fn delete_fdb(&mut self, index: u32, mac: MacAddr, dst: Option<IpAddr>) -> Result<()> {
        let msg = fdb_message(index, mac, dst);
        self.execute(
            || format!("delete fdb {mac} on link #{index}"),
            RouteNetlinkMessage::DelNeighbour(msg),
            0,
        )
    }

    fn fdb_request(
        &mut self,
        index: u32,
        mac: MacAddr,
        dst: Option<IpAddr>,
        flags: u16,
    ) -> Result<()> {
        let msg = fdb_message(index, mac, dst);
        self.execute(
            || match dst {
                Some(dst) => format!("set fdb {mac} dst {dst} on link #{index}"),
                None => format!("set fdb {mac} on link #{index}"),
            },
            RouteNetlinkMessage::NewNeighbour(msg),
            flags,
        )
    }

    /// The bridge/VXLAN forwarding database of one device.
    pub fn fdb(&mut self, index: u32) -> Result<Vec<FdbEntry>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        let replies = self.dump(
            || format!("list fdb of link #{index}"),
            RouteNetlinkMessage::GetNeighbour(msg),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| {
                let RouteNetlinkMessage::NewNeighbour(m) = m else {
                    return None;
                };
                let mut entry = FdbEntry {
                    index: m.header.ifindex,
                    mac: MacAddr::ZERO,
                    dst: None,
                    vni: None,
                    permanent: is_permanent(m.header.state),
                    own: m.header.flags.contains(NeighbourFlags::Own),
                    master: None,
                };
                let mut has_mac = false;
                for attr in m.attributes {
                    match attr {
                        NeighbourAttribute::LinkLayerAddress(l) => {
                            if let Some(mac) = MacAddr::from_slice(&l) {
                                entry.mac = mac;
                                has_mac = true;
                            }
                        }
                        NeighbourAttribute::Destination(a) => entry.dst = to_ip(a),
                        NeighbourAttribute::Vni(v) => entry.vni = Some(v),
                        NeighbourAttribute::Controller(c) => entry.master = Some(c),
                        _ => {}
                    }
                }
                has_mac.then_some(entry)
            })
            .filter(|e| e.index == index)
            .collect())
    }
}

/// `NUD_PERMANENT` may come combined with other bits (`NUD_NOARP`).
fn is_permanent(state: NeighbourState) -> bool {
    u16::from(state) & 0x80 != 0
}

fn fdb_message(index: u32, mac: MacAddr, dst: Option<IpAddr>) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
    if let Some(ip) = dst {
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(ip)));
    }
    msg
}
