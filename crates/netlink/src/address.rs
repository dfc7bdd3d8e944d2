//! Interface addresses.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::socket::Netlink;

/// An address configured on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    /// The address with its prefix length (`10.244.1.5/24`).
    pub addr: IpNet,
    pub scope_link: bool,
    /// IPv6 duplicate address detection still running.
    pub tentative: bool,
}

impl Netlink {
    /// Adds `addr` to the interface; EEXIST if it is already there.
    ///
    /// `nodad` skips IPv6 duplicate address detection: addresses handed out
    /// by IPAM are unique by construction and must be usable the moment a
    /// pod starts, not a second later.
    pub fn add_address(&mut self, index: u32, addr: IpNet, nodad: bool) -> Result<()> {
        let msg = address_message(index, addr, nodad);
        self.execute(
            || format!("add address {addr} to link #{index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Adds `addr`, or refreshes it when it already exists.
    pub fn replace_address(&mut self, index: u32, addr: IpNet, nodad: bool) -> Result<()> {
        let msg = address_message(index, addr, nodad);
        self.execute(
            || format!("replace address {addr} on link #{index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    pub fn delete_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        let msg = address_message(index, addr, false);
        self.execute(
            || format!("delete address {addr} from link #{index}"),
            RouteNetlinkMessage::DelAddress(msg),
            0,
        )
    }

    /// Addresses on one interface (`Some(index)`) or on all of them.
    pub fn addresses(&mut self, index: Option<u32>) -> Result<Vec<Address>> {
        let mut msg = AddressMessage::default();
        if let Some(i) = index {
            msg.header.index = i;
        }
        let replies = self.dump(
            || "list addresses".to_string(),
            RouteNetlinkMessage::GetAddress(msg),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(parse_address)
            .filter(|a| index.is_none_or(|i| a.index == i))
            .collect())
    }
}

fn address_message(index: u32, addr: IpNet, nodad: bool) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = addr.prefix_len();
    msg.header.family = match addr {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    let ip = addr.addr();
    msg.attributes.push(AddressAttribute::Local(ip));
    msg.attributes.push(AddressAttribute::Address(ip));
    if let IpNet::V4(v4) = addr
        && v4.prefix_len() < 31
    {
        msg.attributes
            .push(AddressAttribute::Broadcast(v4.broadcast()));
    }
    if nodad {
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    msg
}

fn parse_address(message: RouteNetlinkMessage) -> Option<Address> {
    let RouteNetlinkMessage::NewAddress(msg) = message else {
        return None;
    };
    let mut local: Option<IpAddr> = None;
    let mut address: Option<IpAddr> = None;
    let mut flags = AddressFlags::empty();
    for attr in msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(a),
            AddressAttribute::Address(a) => address = Some(a),
            AddressAttribute::Flags(f) => flags = f,
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    // point-to-point links. Prefer the local one.
    let ip = local
        .or(address)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let addr = IpNet::new(ip, msg.header.prefix_len).ok()?;
    Some(Address {
        index: msg.header.index,
        addr,
        scope_link: msg.header.scope == AddressScope::Link,
        tentative: flags.contains(AddressFlags::Tentative),
    })
}
