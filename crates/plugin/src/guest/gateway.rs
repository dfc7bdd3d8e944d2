//! The gateway's MAC, when tweed is chained after a plugin that made the
//! pod interface (flannel's bridge, Calico's proxy-ARP veth, ...): the
//! tap takes it (see `localhost`), and only the pod's own stack can learn
//! it — by sending one datagram to the gateway and reading the neighbour
//! entry its ARP request left behind.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tweed_netlink::{MacAddr, NetNs, Netlink};

/// How long to wait for the gateway to answer ARP.
const ARP_WAIT: Duration = Duration::from_secs(2);

/// The MAC of `gateway` as the pod interface `index` sees it, or `None`
/// if it does not answer.
pub fn learn_mac(ns: &NetNs, nl: &mut Netlink, index: u32, gateway: Ipv4Addr) -> Option<MacAddr> {
    let known = |nl: &mut Netlink| {
        nl.neighbours(false, Some(index))
            .ok()?
            .into_iter()
            .find(|n| n.ip == IpAddr::V4(gateway))
            .and_then(|n| n.mac)
            .filter(|m| !m.is_zero())
    };
    if let Some(mac) = known(nl) {
        return Some(mac);
    }
    // Port 9 is discard; the gateway may drop the datagram, the ARP
    // exchange is all that matters.
    let sent = ns.run(|| {
        UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.send_to(&[0], SocketAddr::from((gateway, 9))))
            .is_ok()
    });
    if !matches!(sent, Ok(true)) {
        return None;
    }
    let start = Instant::now();
    while start.elapsed() < ARP_WAIT {
        if let Some(mac) = known(nl) {
            return Some(mac);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}
