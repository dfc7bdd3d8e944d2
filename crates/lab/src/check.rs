//! Reachability between pods: ICMP echo from inside one pod's namespace to
//! another pod's address, with a raw socket opened in the source
//! namespace, so the check needs no tools inside the pods.

use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use tweed_netlink::NetNs;

use crate::LabError;

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn raw_socket(dst: IpAddr) -> std::io::Result<OwnedFd> {
    let (domain, proto) = match dst {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6),
    };
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr(dst: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let std_addr = SocketAddr::new(dst, 0);
    // SAFETY: sockaddr_storage is plain data; zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match std_addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is plain data; zero is a valid value.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = a.ip().octets();
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Sends up to `tries` echo requests from inside `ns`; true on the first
/// matching reply.
pub fn ping(ns: &NetNs, dst: IpAddr, tries: u32, timeout: Duration) -> Result<bool, LabError> {
    let sock = ns
        .run(|| raw_socket(dst))?
        .map_err(|e| LabError::io("open raw ICMP socket", e))?;
    let fd = sock.as_raw_fd();
    let id = (std::process::id() as u16) ^ (dst.to_string().len() as u16).rotate_left(8);
    let (addr, addr_len) = sockaddr(dst);
    for seq in 0..tries.max(1) {
        let seq = seq as u16;
        let kind = if dst.is_ipv4() { 8 } else { 128 };
        let mut packet = vec![kind, 0, 0, 0];
        packet.extend_from_slice(&id.to_be_bytes());
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(b"tweed-lab-ping--");
        if dst.is_ipv4() {
            let c = checksum(&packet);
            packet[2..4].copy_from_slice(&c.to_be_bytes());
        }
        // SAFETY: packet and addr are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                &addr as *const _ as *const libc::sockaddr,
                addr_len,
            )
        };
        if sent < 0 {
            continue;
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if n <= 0 {
                break;
            }
            let mut buf = [0u8; 1500];
            // SAFETY: buf is valid for its length.
            let len = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if len <= 0 {
                continue;
            }
            let data = &buf[..len as usize];
            // Raw IPv4 sockets deliver the IP header too.
            let icmp = if dst.is_ipv4() {
                let ihl = usize::from(data[0] & 0x0f) * 4;
                match data.get(ihl..) {
                    Some(d) => d,
                    None => continue,
                }
            } else {
                data
            };
            let reply = if dst.is_ipv4() { 0 } else { 129 };
            if icmp.len() >= 8
                && icmp[0] == reply
                && icmp[4..6] == id.to_be_bytes()
                && icmp[6..8] == seq.to_be_bytes()
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
