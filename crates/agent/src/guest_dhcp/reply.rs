//! The answer to one guest's DHCP message (RFC 2131), from its record.
//!
//! The guest already runs with its address (its runtime put it on the
//! kernel command line); DHCP only adds what the command line cannot
//! carry. So there is one lease to offer, the pod's own, for ever: an
//! infinite lease never needs tweedd again, so the guest keeps its network
//! while tweedd restarts or is upgraded.

use std::net::Ipv4Addr;

use dhcproto::Name;
use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use tweed_guest::DhcpRecord;

/// RFC 2131's "infinity".
const INFINITE_LEASE: u32 = u32::MAX;

/// The reply to `req`, or None when it needs none (not a request, a
/// release or decline, a request meant for another server).
pub fn answer(req: &Message, rec: &DhcpRecord) -> Option<Message> {
    if req.opcode() != Opcode::BootRequest {
        return None;
    }
    let kind = match req.opts().msg_type()? {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request => {
            if let Some(DhcpOption::ServerIdentifier(server)) =
                req.opts().get(OptionCode::ServerIdentifier)
                && *server != rec.server
            {
                return None;
            }
            let wanted = match req.opts().get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(ip)) => *ip,
                _ => req.ciaddr(),
            };
            if wanted == rec.address.addr() {
                MessageType::Ack
            } else {
                MessageType::Nak
            }
        }
        MessageType::Inform => MessageType::Ack,
        _ => return None,
    };
    let inform = req.opts().msg_type() == Some(MessageType::Inform);
    let yiaddr = if kind == MessageType::Nak || inform {
        Ipv4Addr::UNSPECIFIED
    } else {
        rec.address.addr()
    };
    let mut reply = Message::new_with_id(
        req.xid(),
        if inform {
            req.ciaddr()
        } else {
            Ipv4Addr::UNSPECIFIED
        },
        yiaddr,
        rec.server,
        req.giaddr(),
        &req.chaddr()[..usize::from(req.hlen()).min(16)],
    );
    reply
        .set_opcode(Opcode::BootReply)
        .set_htype(req.htype())
        .set_flags(req.flags());
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(rec.server));
    if kind == MessageType::Nak {
        opts.insert(DhcpOption::Message(format!(
            "this guest's address is {}",
            rec.address.addr()
        )));
        return Some(reply);
    }
    if !inform {
        opts.insert(DhcpOption::AddressLeaseTime(INFINITE_LEASE));
    }
    opts.insert(DhcpOption::SubnetMask(rec.address.netmask()));
    if let Some(gw) = rec.gateway {
        opts.insert(DhcpOption::Router(vec![gw]));
    }
    let servers = rec.dns.ipv4_nameservers();
    if !servers.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(servers));
    }
    if let Some(domain) = rec.dns.local_domain() {
        opts.insert(DhcpOption::DomainName(domain.to_string()));
    }
    let search: Vec<Name> = rec
        .dns
        .search
        .iter()
        .filter_map(|d| Name::from_ascii(d).ok())
        .collect();
    if !search.is_empty() {
        opts.insert(DhcpOption::DomainSearch(search));
    }
    opts.insert(DhcpOption::InterfaceMtu(rec.mtu));
    if let Some(host) = &rec.hostname {
        opts.insert(DhcpOption::Hostname(host.clone()));
    }
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DhcpRecord {
        DhcpRecord {
            netns: "/var/run/netns/cni-1".into(),
            tap: "tap0_urunc".into(),
            tap_index: 3,
            server: Ipv4Addr::new(169, 254, 77, 1),
            address: "10.244.2.7/24".parse().unwrap(),
            gateway: Some(Ipv4Addr::new(10, 244, 2, 1)),
            mtu: 1450,
            dns: tweed_guest::dns::parse_resolv_conf(
                "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n",
            ),
            hostname: Some("web".into()),
        }
    }

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn request(kind: MessageType, opts: &[DhcpOption]) -> Message {
        let mut m = Message::new_with_id(
            0x1234,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &MAC,
        );
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        for o in opts {
            m.opts_mut().insert(o.clone());
        }
        m
    }

    #[test]
    fn a_discover_is_offered_the_pods_address_dns_search_and_mtu() {
        let offer = answer(&request(MessageType::Discover, &[]), &record()).unwrap();
        assert_eq!(offer.opcode(), Opcode::BootReply);
        assert_eq!(offer.xid(), 0x1234);
        assert_eq!(offer.chaddr(), &MAC);
        assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 244, 2, 7));
        let o = offer.opts();
        assert_eq!(o.msg_type(), Some(MessageType::Offer));
        assert_eq!(
            o.get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            o.get(OptionCode::DomainNameServer),
            Some(&DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
                10, 96, 0, 10
            )]))
        );
        assert_eq!(
            o.get(OptionCode::DomainName),
            Some(&DhcpOption::DomainName("default.svc.cluster.local".into()))
        );
        let Some(DhcpOption::DomainSearch(search)) = o.get(OptionCode::DomainSearch) else {
            panic!("no search list: {o:?}");
        };
        assert_eq!(search.len(), 3);
        assert_eq!(
            o.get(OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(1450))
        );
        assert_eq!(
            o.get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(u32::MAX))
        );
    }

    #[test]
    fn a_request_is_acked_for_the_pods_address_only() {
        let rec = record();
        let ours = [
            DhcpOption::RequestedIpAddress(rec.address.addr()),
            DhcpOption::ServerIdentifier(rec.server),
        ];
        let ack = answer(&request(MessageType::Request, &ours), &rec).unwrap();
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr(), rec.address.addr());

        let other = [DhcpOption::RequestedIpAddress(Ipv4Addr::new(
            10, 244, 2, 99,
        ))];
        let nak = answer(&request(MessageType::Request, &other), &rec).unwrap();
        assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);

        let elsewhere = [
            DhcpOption::RequestedIpAddress(rec.address.addr()),
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1)),
        ];
        assert!(answer(&request(MessageType::Request, &elsewhere), &rec).is_none());
    }

    #[test]
    fn releases_and_replies_get_no_answer() {
        let rec = record();
        assert!(answer(&request(MessageType::Release, &[]), &rec).is_none());
        let mut reply = request(MessageType::Offer, &[]);
        reply.set_opcode(Opcode::BootReply);
        assert!(answer(&reply, &rec).is_none());
    }
}
