//! The clsact qdisc and BPF classifiers on it: programs that see (and may
//! change) every frame a device receives or sends.

use std::os::fd::{AsRawFd, OwnedFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
};

use crate::error::Result;
use crate::socket::Netlink;

/// `TC_H_CLSACT`, the clsact qdisc's parent.
const CLSACT_PARENT: u32 = 0xffff_fff1;
const CLSACT_HANDLE: u32 = 0xffff_0000;
/// `ETH_P_ALL`.
const ETH_P_ALL: u16 = 0x0003;

/// Which way the frames go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl std::fmt::Display for Direction {
    /// As tc says it: `ingress`, `egress`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

impl Direction {
    fn parent(self) -> u32 {
        match self {
            Direction::Ingress => CLSACT_HANDLE | 0xfff2,
            Direction::Egress => CLSACT_HANDLE | 0xfff3,
        }
    }
}

impl Netlink {
    /// Adds the clsact qdisc (`tc qdisc add dev X clsact`); an existing one
    /// is fine.
    pub fn ensure_clsact(&mut self, index: u32) -> Result<()> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.handle = TcHandle::from(CLSACT_HANDLE);
        msg.header.parent = TcHandle::from(CLSACT_PARENT);
        msg.attributes.push(TcAttribute::Kind("clsact".to_string()));
        match self.execute(
            || format!("add clsact qdisc to link #{index}"),
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.is_exists() => Ok(()),
            other => other,
        }
    }

    /// Removes the clsact qdisc and every filter on it (none: fine).
    pub fn delete_clsact(&mut self, index: u32) -> Result<()> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.handle = TcHandle::from(CLSACT_HANDLE);
        msg.header.parent = TcHandle::from(CLSACT_PARENT);
        match self.execute(
            || format!("delete clsact qdisc of link #{index}"),
            RouteNetlinkMessage::DelQueueDiscipline(msg),
            0,
        ) {
            Err(e) if e.is_not_found() || e.errno() == Some(libc::EINVAL) => Ok(()),
            other => other,
        }
    }

    /// Attaches a loaded classifier program in direct-action mode (its
    /// return value is the verdict) for every protocol. The kernel keeps
    /// its own reference: `program` may be closed afterwards.
    pub fn add_bpf_filter(
        &mut self,
        index: u32,
        direction: Direction,
        program: &OwnedFd,
        name: &str,
    ) -> Result<()> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::from(direction.parent());
        msg.header.info = u32::from(ETH_P_ALL.to_be());
        msg.attributes.push(TcAttribute::Kind("bpf".to_string()));
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgFd(program.as_raw_fd() as u32)),
            TcOption::Bpf(TcFilterBpfOption::ProgName(name.to_string())),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
        ]));
        self.execute(
            || format!("attach BPF program {name} to link #{index} {direction}"),
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// The names of the BPF programs attached to one side of a device.
    pub fn bpf_filters(&mut self, index: u32, direction: Direction) -> Result<Vec<String>> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::from(direction.parent());
        let replies = self.dump(
            || format!("list {direction} filters of link #{index}"),
            RouteNetlinkMessage::GetTrafficFilter(msg),
        )?;
        let mut names = Vec::new();
        for m in replies {
            let RouteNetlinkMessage::NewTrafficFilter(m) = m else {
                continue;
            };
            for attr in &m.attributes {
                if let TcAttribute::Options(opts) = attr {
                    for o in opts {
                        if let TcOption::Bpf(TcFilterBpfOption::ProgName(n)) = o {
                            names.push(n.clone());
                        }
                    }
                }
            }
        }
        Ok(names)
    }
}
