//! Kernel change notifications: a socket subscribed to link, neighbour and
//! route events, so an agent notices at once when someone deletes state it
//! owns instead of waiting for its next periodic resync.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::LinkAttribute;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{NetlinkError, Result};

/// A change the kernel announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    LinkDeleted {
        index: u32,
        name: String,
    },
    /// A link changed (or was created); `up` is its administrative state.
    LinkChanged {
        index: u32,
        name: String,
        up: bool,
    },
    /// A route went away; `protocol` says who had installed it.
    RouteDeleted {
        protocol: u8,
    },
    /// A neighbour or FDB entry on `index` went away.
    NeighbourDeleted {
        index: u32,
    },
    /// The kernel dropped notifications (socket overrun): resync.
    Overrun,
}

/// A subscription to routing events in the namespace it was opened in.
pub struct Monitor {
    socket: Socket,
    buf: Vec<u8>,
}

const GROUPS: [u32; 4] = [
    libc::RTNLGRP_LINK,
    libc::RTNLGRP_NEIGH,
    libc::RTNLGRP_IPV4_ROUTE,
    libc::RTNLGRP_IPV6_ROUTE,
];

impl Monitor {
    pub fn new() -> Result<Monitor> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket
            .bind(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        for g in GROUPS {
            socket.add_membership(g).map_err(NetlinkError::Socket)?;
        }
        // A large buffer: a burst of pod deletions produces many events.
        let _ = socket.set_rx_buf_sz(4 * 1024 * 1024);
        Ok(Monitor {
            socket,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Waits up to `timeout` for the next batch of events.
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<Event>> {
        let mut pfd = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(Vec::new());
            }
            return Err(NetlinkError::Socket(e));
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        self.buf.clear();
        let len = match self.socket.recv(&mut self.buf, 0) {
            Ok(len) => len,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(vec![Event::Overrun]),
            Err(e) => return Err(NetlinkError::Socket(e)),
        };
        let mut events = Vec::new();
        let mut offset = 0;
        while offset < len {
            let Ok(msg) =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[offset..len])
            else {
                break;
            };
            let size = msg.header.length as usize;
            if size == 0 {
                break;
            }
            offset += (size + 3) & !3;
            if let NetlinkPayload::InnerMessage(inner) = msg.payload
                && let Some(ev) = translate(inner)
            {
                events.push(ev);
            }
        }
        Ok(events)
    }
}

fn link_name(attrs: &[LinkAttribute]) -> String {
    attrs
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn translate(msg: RouteNetlinkMessage) -> Option<Event> {
    use netlink_packet_route::link::LinkFlags;
    match msg {
        RouteNetlinkMessage::DelLink(m) => Some(Event::LinkDeleted {
            index: m.header.index,
            name: link_name(&m.attributes),
        }),
        RouteNetlinkMessage::NewLink(m) => Some(Event::LinkChanged {
            index: m.header.index,
            name: link_name(&m.attributes),
            up: m.header.flags.contains(LinkFlags::Up),
        }),
        RouteNetlinkMessage::DelRoute(m) => Some(Event::RouteDeleted {
            protocol: u8::from(m.header.protocol),
        }),
        RouteNetlinkMessage::DelNeighbour(m) => Some(Event::NeighbourDeleted {
            index: m.header.ifindex,
        }),
        _ => None,
    }
}
