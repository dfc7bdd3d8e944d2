//! One guest's DHCP server: a UDP socket on port 67 opened inside the
//! pod's namespace and bound to the guest's tap, so it hears only that
//! guest and its broadcast replies leave only there.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use dhcproto::v4::Message;
use dhcproto::{Decodable, Decoder, Encodable};
use socket2::{Domain, Protocol, Socket, Type};
use tweed_guest::DhcpRecord;
use tweed_netlink::{NetNs, Netlink};

use super::reply;

const BOOTPS: u16 = 67;
const BOOTPC: u16 = 68;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the pod's namespace {0}: {1}")]
    Netns(String, tweed_netlink::NetlinkError),
    #[error("the guest's tap {tap} is gone (urunc removed it, or the guest restarted)")]
    TapGone { tap: String },
    #[error("a socket on {tap}: {source}")]
    Socket { tap: String, source: io::Error },
}

pub struct Server {
    pub record: DhcpRecord,
    socket: UdpSocket,
}

impl Server {
    /// Opens the server for `record`; fails when the pod's namespace is
    /// gone or the tap is not the one the record names.
    pub fn open(record: DhcpRecord) -> Result<Server, ServeError> {
        let path = record.netns.display().to_string();
        let ns = NetNs::open(&record.netns).map_err(|e| ServeError::Netns(path.clone(), e))?;
        let mut nl = Netlink::in_netns(&ns).map_err(|e| ServeError::Netns(path.clone(), e))?;
        let tap = nl
            .link_by_name(&record.tap)
            .map_err(|e| ServeError::Netns(path.clone(), e))?;
        if tap.is_none_or(|t| t.index != record.tap_index) {
            return Err(ServeError::TapGone {
                tap: record.tap.clone(),
            });
        }
        let socket = ns
            .run(|| bound_socket(&record.tap))
            .map_err(|e| ServeError::Netns(path, e))?
            .map_err(|source| ServeError::Socket {
                tap: record.tap.clone(),
                source,
            })?;
        Ok(Server { record, socket })
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Answers every message waiting on the socket; returns how many
    /// replies went out.
    pub fn answer_waiting(&self) -> usize {
        let mut buf = [0u8; 1500];
        let mut sent = 0;
        loop {
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return sent,
                Err(e) => {
                    tracing::warn!(tap = %self.record.tap, error = %e, "guest DHCP: receive failed");
                    return sent;
                }
            };
            let req = match Message::decode(&mut Decoder::new(&buf[..n])) {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "guest DHCP: not a DHCP message");
                    continue;
                }
            };
            let Some(reply) = reply::answer(&req, &self.record) else {
                continue;
            };
            let bytes = match reply.to_vec() {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "guest DHCP: cannot encode a reply");
                    continue;
                }
            };
            // Broadcast, always: the guest may not answer ARP yet, and the
            // socket's device confines the broadcast to its tap.
            let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, BOOTPC);
            match self.socket.send_to(&bytes, to) {
                Ok(_) => {
                    sent += 1;
                    tracing::info!(
                        netns = %self.record.netns.display(),
                        kind = ?reply.opts().msg_type(),
                        address = %self.record.address,
                        "guest DHCP: answered"
                    );
                }
                Err(e) => {
                    tracing::warn!(tap = %self.record.tap, error = %e, "guest DHCP: send failed")
                }
            }
        }
    }
}

/// A non-blocking UDP socket on port 67 of `tap`, in the current
/// namespace. Address reuse lets other pods' servers and a restarted agent
/// bind the same port on their own devices.
fn bound_socket(tap: &str) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    socket.bind_device(Some(tap.as_bytes()))?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, BOOTPS).into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
