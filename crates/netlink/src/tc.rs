//! Traffic control: the ingress qdisc and the u32 + mirred redirect that
//! joins two devices back to back.
//!
//! This is how a guest's tap device is joined to the pod's eth0 (the scheme
//! urunc, Kata and Firecracker use): an ingress qdisc on each device and a
//! filter matching every frame that redirects it out of the other device.
//! u32 with a zero mask is used for "match everything" because the
//! matchall and flower classifiers are not available on every kernel.

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};

use crate::error::Result;
use crate::socket::Netlink;

/// `ETH_P_ALL`: the filter sees frames of every protocol.
const ETH_P_ALL: u16 = 0x0003;
/// `ETH_P_IP`.
const ETH_P_IP: u16 = 0x0800;
/// `TCA_ACT_TAB`: the attribute that carries a filter's action list.
const TCA_ACT_TAB: u16 = 1;
/// The handle iproute2 gives the ingress qdisc (`ffff:`).
const INGRESS_HANDLE: u32 = 0xffff_0000;

/// A qdisc as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    pub index: u32,
    pub kind: String,
    pub handle: u32,
    pub parent: u32,
}

/// A filter as the kernel reports it, with the redirect target when the
/// filter's action is a mirred redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub index: u32,
    pub kind: String,
    pub parent: u32,
    /// Interface index frames are redirected to (`mirred egress redirect`).
    pub redirect_to: Option<u32>,
}

impl Netlink {
    /// Adds the ingress qdisc (`tc qdisc add dev X ingress`).
    pub fn add_ingress_qdisc(&mut self, index: u32) -> Result<()> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.handle = TcHandle::from(INGRESS_HANDLE);
        msg.header.parent = TcHandle::INGRESS;
        msg.attributes
            .push(TcAttribute::Kind("ingress".to_string()));
        self.execute(
            || format!("add ingress qdisc to link #{index}"),
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Removes the ingress qdisc and with it every filter attached to it.
    pub fn delete_ingress_qdisc(&mut self, index: u32) -> Result<()> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.handle = TcHandle::from(INGRESS_HANDLE);
        msg.header.parent = TcHandle::INGRESS;
        self.execute(
            || format!("delete ingress qdisc of link #{index}"),
            RouteNetlinkMessage::DelQueueDiscipline(msg),
            0,
        )
    }

    /// Qdiscs of one interface.
    pub fn qdiscs(&mut self, index: u32) -> Result<Vec<Qdisc>> {
        let msg = TcMessage::with_index(index as i32);
        let replies = self.dump(
            || format!("list qdiscs of link #{index}"),
            RouteNetlinkMessage::GetQueueDiscipline(msg),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| {
                let RouteNetlinkMessage::NewQueueDiscipline(m) = m else {
                    return None;
                };
                let kind = m.attributes.iter().find_map(|a| match a {
                    TcAttribute::Kind(k) => Some(k.clone()),
                    _ => None,
                })?;
                Some(Qdisc {
                    index: m.header.index as u32,
                    kind,
                    handle: u32::from(m.header.handle),
                    parent: u32::from(m.header.parent),
                })
            })
            .filter(|q| q.index == index)
            .collect())
    }

    /// Redirects every frame arriving on `from` out of `to`:
    /// `tc filter add dev FROM parent ffff: protocol all u32 match u8 0 0
    /// action mirred egress redirect dev TO`. Needs the ingress qdisc.
    pub fn add_redirect(&mut self, from: u32, to: u32) -> Result<()> {
        let mut msg = TcMessage::with_index(from as i32);
        msg.header.parent = TcHandle::from(INGRESS_HANDLE);
        // tcm_info: priority in the high half, protocol (network order) in
        // the low half.
        msg.header.info = u32::from(ETH_P_ALL.to_be());
        msg.attributes.push(TcAttribute::Kind("u32".to_string()));

        let mut selector = TcU32Selector::default();
        selector.flags = TcU32SelectorFlags::Terminal;
        selector.nkeys = 1;
        // mask 0, value 0: every frame matches.
        selector.keys = vec![TcU32Key::default()];

        let mut mirred = TcMirror::default();
        mirred.generic = TcActionGeneric::default();
        mirred.generic.action = TcActionType::Stolen;
        mirred.eaction = TcMirrorActionType::EgressRedir;
        mirred.ifindex = to;
        let mut action = TcAction::default();
        action.tab = TCA_ACT_TAB;
        action.attributes = vec![
            TcActionAttribute::Kind("mirred".to_string()),
            TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
                mirred,
            ))]),
        ];
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::Selector(selector)),
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
        ]));
        self.execute(
            || format!("redirect link #{from} ingress to link #{to}"),
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Lets IPv4 packets for `dst` through to this namespace's own stack:
    /// a u32 filter with no action ends classification with "pass", so a
    /// redirect at a lower priority (higher number) never sees them.
    /// `priority` must be below the redirect's (the kernel gives the first
    /// filter 49152).
    pub fn add_pass_ipv4_dst(
        &mut self,
        index: u32,
        dst: std::net::Ipv4Addr,
        priority: u16,
    ) -> Result<()> {
        // The destination address: bytes 16..20 of the IPv4 header.
        let keys = [(16, 0xffff_ffff, u32::from(dst))];
        self.add_pass_ipv4(index, &keys, priority, || {
            format!("pass {dst} on link #{index} ingress")
        })
    }

    /// Lets UDP datagrams for port `port` (any address, broadcasts
    /// included) through to this namespace's own stack, as
    /// [`Self::add_pass_ipv4_dst`] does for an address. Assumes a 20-byte
    /// IPv4 header: a packet with IP options is not matched and takes the
    /// redirect.
    pub fn add_pass_udp_dst_port(&mut self, index: u32, port: u16, priority: u16) -> Result<()> {
        let keys = [
            // The protocol: byte 9 of the IPv4 header (17, UDP).
            (8, 0x00ff_0000, u32::from(libc::IPPROTO_UDP as u8) << 16),
            // The destination port: bytes 2..4 of the UDP header.
            (20, 0x0000_ffff, u32::from(port)),
        ];
        self.add_pass_ipv4(index, &keys, priority, || {
            format!("pass UDP port {port} on link #{index} ingress")
        })
    }

    /// A u32 filter on `index`'s ingress with no action, matching IPv4
    /// packets on every (offset, mask, value) key: classification ends with
    /// "pass". Offsets count from the IPv4 header; masks and values are in
    /// host order.
    fn add_pass_ipv4(
        &mut self,
        index: u32,
        keys: &[(i32, u32, u32)],
        priority: u16,
        what: impl Fn() -> String,
    ) -> Result<()> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::from(INGRESS_HANDLE);
        msg.header.info = (u32::from(priority) << 16) | u32::from(ETH_P_IP.to_be());
        msg.attributes.push(TcAttribute::Kind("u32".to_string()));
        let mut selector = TcU32Selector::default();
        selector.flags = TcU32SelectorFlags::Terminal;
        selector.nkeys = keys.len() as u8;
        selector.keys = keys
            .iter()
            .map(|&(off, mask, val)| {
                let mut key = TcU32Key::default();
                key.off = off;
                key.mask = mask;
                key.val = val;
                key
            })
            .collect();
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::ClassId(TcHandle::from(
                INGRESS_HANDLE | 1,
            ))),
            TcOption::U32(TcFilterU32Option::Selector(selector)),
        ]));
        self.execute(
            what,
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Filters on the ingress qdisc of one interface.
    pub fn ingress_filters(&mut self, index: u32) -> Result<Vec<Filter>> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::from(INGRESS_HANDLE);
        let replies = self.dump(
            || format!("list ingress filters of link #{index}"),
            RouteNetlinkMessage::GetTrafficFilter(msg),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| {
                let RouteNetlinkMessage::NewTrafficFilter(m) = m else {
                    return None;
                };
                let mut kind = None;
                let mut redirect_to = None;
                for attr in &m.attributes {
                    match attr {
                        TcAttribute::Kind(k) => kind = Some(k.clone()),
                        TcAttribute::Options(opts) => {
                            redirect_to = redirect_to.or_else(|| redirect_target(opts));
                        }
                        _ => {}
                    }
                }
                Some(Filter {
                    index: m.header.index as u32,
                    kind: kind?,
                    parent: u32::from(m.header.parent),
                    redirect_to,
                })
            })
            .collect())
    }
}

fn redirect_target(opts: &[TcOption]) -> Option<u32> {
    opts.iter().find_map(|o| match o {
        TcOption::U32(TcFilterU32Option::Action(actions)) => actions.iter().find_map(|a| {
            a.attributes.iter().find_map(|attr| match attr {
                TcActionAttribute::Options(aopts) => aopts.iter().find_map(|ao| match ao {
                    TcActionOption::Mirror(TcActionMirrorOption::Parms(p))
                        if p.eaction == TcMirrorActionType::EgressRedir =>
                    {
                        Some(p.ifindex)
                    }
                    _ => None,
                }),
                _ => None,
            })
        }),
        _ => None,
    })
}
