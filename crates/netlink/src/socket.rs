//! The request/response machinery every other module builds on.
//!
//! One [`Netlink`] owns one `NETLINK_ROUTE` socket. A socket belongs to the
//! network namespace that was current when it was opened, so a caller that
//! works on a host and a pod namespace keeps one handle per namespace (the
//! netavark pattern) instead of switching namespaces around each request.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_ECHO, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{NetlinkError, Result};
use crate::netns::NetNs;

/// Large enough for any single datagram the kernel sends on a route socket
/// (dump replies are capped at 32 KiB per datagram).
const RECV_BUFFER: usize = 64 * 1024;

/// A synchronous rtnetlink client bound to one network namespace.
pub struct Netlink {
    channel: Channel,
}

/// One netlink socket and its request/reply exchange, whatever the
/// protocol (route here, generic netlink for WireGuard).
pub(crate) struct Channel {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Channel {
    /// Opens a socket of `protocol` in the calling thread's current
    /// network namespace.
    pub(crate) fn open(protocol: isize) -> Result<Self> {
        // No explicit bind or connect: the kernel binds the socket on the
        // first send, and every request names the kernel as its peer. Three
        // system calls fewer per socket, on a path that runs per CNI call.
        let socket = Socket::new(protocol).map_err(NetlinkError::Socket)?;
        // Short acks (no echo of our request) with the kernel's explanation
        // attached: the explanation ends up in our error messages.
        socket.set_cap_ack(true).map_err(NetlinkError::Socket)?;
        socket.set_ext_ack(true).map_err(NetlinkError::Socket)?;
        // Let the kernel apply the filters we put in dump requests (by
        // interface, by table) instead of dumping everything.
        socket
            .set_netlink_get_strict_chk(true)
            .map_err(NetlinkError::Socket)?;
        Ok(Channel {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUFFER),
        })
    }

    /// Sends a request that changes state and waits for the kernel's ack.
    pub(crate) fn execute<M: NetlinkSerializable + NetlinkDeserializable>(
        &mut self,
        op: impl FnOnce() -> String,
        message: M,
        flags: u16,
    ) -> Result<()> {
        let seq = self.send(message, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        self.receive::<M>(seq, op, true, |_| {})
    }

    /// Like [`execute`](Self::execute) with `NLM_F_ECHO`: also returns the
    /// object the kernel created, as its notification describes it, which
    /// saves looking it up afterwards.
    pub(crate) fn execute_echo<M: NetlinkSerializable + NetlinkDeserializable>(
        &mut self,
        op: impl FnOnce() -> String,
        message: M,
        flags: u16,
    ) -> Result<Vec<M>> {
        let seq = self.send(message, NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO | flags)?;
        let mut out = Vec::new();
        self.receive(seq, op, true, |m| out.push(m))?;
        Ok(out)
    }

    /// Sends a dump request and collects every object of the reply.
    pub(crate) fn dump<M: NetlinkSerializable + NetlinkDeserializable>(
        &mut self,
        op: impl FnOnce() -> String,
        message: M,
    ) -> Result<Vec<M>> {
        let seq = self.send(message, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = Vec::new();
        self.receive(seq, op, false, |m| out.push(m))?;
        Ok(out)
    }

    /// Sends a request for a single object (a `GET` without `NLM_F_DUMP`).
    pub(crate) fn get<M: NetlinkSerializable + NetlinkDeserializable>(
        &mut self,
        op: impl FnOnce() -> String,
        message: M,
    ) -> Result<Option<M>> {
        let seq = self.send(message, NLM_F_REQUEST)?;
        let mut out = None;
        match self.receive(seq, op, false, |m| out = Some(m)) {
            Ok(()) => Ok(out),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn send<M: NetlinkSerializable>(&mut self, message: M, flags: u16) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket
            .send_to(&bytes, &SocketAddr::new(0, 0), 0)
            .map_err(NetlinkError::Socket)?;
        Ok(self.seq)
    }

    /// Reads replies to `seq` until the kernel says it is finished: an ack
    /// (error code 0), an error, or the end of a dump. With `until_ack`,
    /// single (echoed) objects do not end the exchange; only the ack does.
    fn receive<M: NetlinkDeserializable>(
        &mut self,
        seq: u32,
        op: impl FnOnce() -> String,
        until_ack: bool,
        mut on_message: impl FnMut(M),
    ) -> Result<()> {
        let mut op = Some(op);
        loop {
            self.buf.clear();
            let n = self
                .socket
                .recv(&mut self.buf, libc::MSG_TRUNC)
                .map_err(NetlinkError::Socket)?;
            if n > self.buf.len() {
                return Err(NetlinkError::Decode(format!(
                    "reply of {n} bytes truncated to {}",
                    self.buf.len()
                )));
            }
            let mut offset = 0;
            while offset < n {
                let bytes = &self.buf[offset..n];
                let message = NetlinkMessage::<M>::deserialize(bytes)
                    .map_err(|e| NetlinkError::Decode(e.to_string()))?;
                let length = message.header.length as usize;
                if length == 0 {
                    return Err(NetlinkError::Decode("zero-length message".into()));
                }
                offset += align4(length);
                if message.header.sequence_number != seq {
                    // A late reply to an earlier request we gave up on.
                    continue;
                }
                let multipart = message.header.flags & netlink_packet_core::NLM_F_MULTIPART != 0;
                match message.payload {
                    // A dump that fails reports its error in the DONE message.
                    NetlinkPayload::Done(done) if done.code < 0 => {
                        let describe = op.take().expect("error reported once");
                        return Err(NetlinkError::Kernel {
                            op: describe(),
                            errno: -done.code,
                            ext_ack: ext_ack_message(&done.extended_ack),
                        });
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(err) => match err.code {
                        None => return Ok(()),
                        Some(code) => {
                            let describe = op.take().expect("error reported once");
                            return Err(NetlinkError::Kernel {
                                op: describe(),
                                errno: -code.get(),
                                ext_ack: err.header.get(NLMSG_HDRLEN..).and_then(ext_ack_message),
                            });
                        }
                    },
                    NetlinkPayload::InnerMessage(inner) => {
                        on_message(inner);
                        if !multipart && !until_ack {
                            return Ok(());
                        }
                    }
                    NetlinkPayload::Noop | NetlinkPayload::Overrun(_) => {}
                    _ => {}
                }
            }
        }
    }
}

impl Netlink {
    /// Opens a handle in the calling thread's current network namespace.
    pub fn new() -> Result<Self> {
        Ok(Netlink {
            channel: Channel::open(NETLINK_ROUTE)?,
        })
    }

    /// Opens a handle inside `ns` without leaving the caller there.
    pub fn in_netns(ns: &NetNs) -> Result<Self> {
        ns.run(Netlink::new)?
    }

    /// See [`Channel::execute`].
    pub(crate) fn execute(
        &mut self,
        op: impl FnOnce() -> String,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<()> {
        self.channel.execute(op, message, flags)
    }

    /// See [`Channel::execute_echo`].
    pub(crate) fn execute_echo(
        &mut self,
        op: impl FnOnce() -> String,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.channel.execute_echo(op, message, flags)
    }

    /// See [`Channel::dump`].
    pub(crate) fn dump(
        &mut self,
        op: impl FnOnce() -> String,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.channel.dump(op, message)
    }

    /// See [`Channel::get`].
    pub(crate) fn get(
        &mut self,
        op: impl FnOnce() -> String,
        message: RouteNetlinkMessage,
    ) -> Result<Option<RouteNetlinkMessage>> {
        self.channel.get(op, message)
    }
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Length of a netlink message header. With `NETLINK_CAP_ACK` an error
/// message echoes only this much of our request before the ack TLVs.
const NLMSG_HDRLEN: usize = 16;

/// Finds the kernel's human-readable explanation (`NLMSGERR_ATTR_MSG`) in
/// extended-ack TLVs.
fn ext_ack_message(mut tlvs: &[u8]) -> Option<String> {
    const NLMSGERR_ATTR_MSG: u16 = 1;
    while tlvs.len() >= 4 {
        let len = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &tlvs[4..len];
            let text = text.split(|b| *b == 0).next().unwrap_or(text);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        tlvs = &tlvs[align4(len).min(tlvs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_ack_text_is_found_in_the_tlvs() {
        let mut payload = Vec::new();
        let text = b"Invalid prefix\0";
        let len = (4 + text.len()) as u16;
        payload.extend_from_slice(&len.to_ne_bytes());
        payload.extend_from_slice(&1u16.to_ne_bytes());
        payload.extend_from_slice(text);
        assert_eq!(ext_ack_message(&payload).as_deref(), Some("Invalid prefix"));
    }

    #[test]
    fn no_ext_ack_without_tlvs() {
        assert_eq!(ext_ack_message(&[]), None);
    }
}
