//! What the kernel of a namespace holds of a VXLAN overlay, and when it
//! got there.
//!
//! [`Watch`] listens to the kernel's own notifications (rtnetlink
//! multicast: IPv4 routes and neighbours, which include the VXLAN FDB) on a
//! thread of its own, keeps the set of overlay entries they describe, and
//! notes the moment the set is complete (or empty): no polling interval in
//! the figure. If the kernel drops notifications (ENOBUFS), it falls back to
//! dumping the tables every 10 ms and says so. The result is always
//! checked against a dump afterwards ([`verify`], [`count`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tweed_netlink::{MacAddr, NetNs, Netlink, TABLE_MAIN};

use super::peers::Peer;

pub const PROTO: u8 = 77;

/// Entries of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub routes: usize,
    pub neighbours: usize,
    pub fdb: usize,
}

impl Counts {
    pub fn all(n: usize) -> Counts {
        Counts {
            routes: n,
            neighbours: n,
            fdb: n,
        }
    }
}

/// Dumps the three tables: routes of protocol 77, permanent neighbours and
/// remote FDB entries of `dev`.
pub fn count(nl: &mut Netlink, dev: &str) -> Counts {
    let routes = nl
        .routes(false, TABLE_MAIN)
        .expect("dump routes")
        .iter()
        .filter(|r| r.protocol == PROTO)
        .count();
    let Some(link) = nl.link_by_name(dev).expect("link") else {
        return Counts {
            routes,
            ..Default::default()
        };
    };
    let neighbours = nl
        .neighbours(false, Some(link.index))
        .expect("dump neighbours")
        .iter()
        .filter(|n| n.permanent)
        .count();
    let fdb = nl
        .fdb(link.index)
        .expect("dump fdb")
        .iter()
        .filter(|e| e.own && e.permanent && e.dst.is_some())
        .count();
    Counts {
        routes,
        neighbours,
        fdb,
    }
}

pub fn count_in(ns: &str, dev: &str) -> Counts {
    let handle = NetNs::named(ns).expect("netns");
    count(&mut Netlink::in_netns(&handle).expect("netlink"), dev)
}

/// Checks that the kernel holds exactly the peers' entries.
pub fn verify(ns: &str, dev: &str, peers: &[Peer]) {
    let handle = NetNs::named(ns).expect("netns");
    let mut nl = Netlink::in_netns(&handle).expect("netlink");
    let link = nl.link_by_name(dev).expect("link").expect("device");
    let routes: BTreeMap<IpNet, (Option<IpAddr>, Option<u32>, bool)> = nl
        .routes(false, TABLE_MAIN)
        .expect("routes")
        .into_iter()
        .filter(|r| r.protocol == PROTO)
        .map(|r| (r.dst, (r.gateway, r.oif, r.onlink)))
        .collect();
    let neigh: BTreeMap<IpAddr, Option<MacAddr>> = nl
        .neighbours(false, Some(link.index))
        .expect("neighbours")
        .into_iter()
        .filter(|n| n.permanent)
        .map(|n| (n.ip, n.mac))
        .collect();
    let fdb: BTreeSet<(MacAddr, Option<IpAddr>)> = nl
        .fdb(link.index)
        .expect("fdb")
        .into_iter()
        .filter(|e| e.own && e.permanent && e.dst.is_some())
        .map(|e| (e.mac, e.dst))
        .collect();
    let got = Counts {
        routes: routes.len(),
        neighbours: neigh.len(),
        fdb: fdb.len(),
    };
    assert_eq!(got, Counts::all(peers.len()), "{ns}: entry counts");
    for p in peers {
        let gw = IpAddr::V4(p.subnet.network());
        assert_eq!(
            routes.get(&IpNet::V4(p.subnet)),
            Some(&(Some(gw), Some(link.index), true)),
            "{ns}: route to {}",
            p.subnet
        );
        assert_eq!(neigh.get(&gw), Some(&Some(p.mac)), "{ns}: neighbour {gw}");
        assert!(
            fdb.contains(&(p.mac, Some(IpAddr::V4(p.public)))),
            "{ns}: FDB {} -> {}",
            p.mac,
            p.public
        );
    }
}

// ---------------------------------------------------------------- notifications

const RTMGRP_NEIGH: u32 = 0x4;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const NUD_PERMANENT: u16 = 0x80;
const AF_INET: u8 = 2;
const AF_BRIDGE: u8 = 7;
const RT_TABLE_MAIN: u8 = 254;
/// RTA_DST and NDA_DST; NDA_LLADDR.
const ATTR_DST: u16 = 1;
const ATTR_LLADDR: u16 = 2;

/// The overlay entries the notifications so far describe.
#[derive(Default, Clone)]
pub struct Tables {
    routes: BTreeSet<[u8; 5]>,
    neighbours: BTreeSet<[u8; 4]>,
    fdb: BTreeSet<[u8; 6]>,
}

impl Tables {
    /// The entries `peers` produce.
    pub fn of(peers: &[Peer]) -> Tables {
        let mut t = Tables::default();
        for p in peers {
            let net = p.subnet.network().octets();
            let mut r = [0u8; 5];
            r[..4].copy_from_slice(&net);
            r[4] = p.subnet.prefix_len();
            t.routes.insert(r);
            t.neighbours.insert(net);
            t.fdb.insert(p.mac.0);
        }
        t
    }

    pub fn counts(&self) -> Counts {
        Counts {
            routes: self.routes.len(),
            neighbours: self.neighbours.len(),
            fdb: self.fdb.len(),
        }
    }

    /// Applies one datagram of notifications; true if anything changed.
    fn apply(&mut self, mut buf: &[u8]) -> bool {
        let before = self.counts();
        let mut touched = false;
        while buf.len() >= 16 {
            let len = u32::from_ne_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
            if len < 16 || len > buf.len() {
                break;
            }
            let kind = u16::from_ne_bytes([buf[4], buf[5]]);
            let body = &buf[16..len];
            touched |= match kind {
                RTM_NEWROUTE | RTM_DELROUTE => self.route(body, kind == RTM_NEWROUTE),
                RTM_NEWNEIGH | RTM_DELNEIGH => self.neighbour(body, kind == RTM_NEWNEIGH),
                _ => false,
            };
            buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        }
        touched || before != self.counts()
    }

    fn route(&mut self, body: &[u8], new: bool) -> bool {
        if body.len() < 12 || body[0] != AF_INET || body[5] != PROTO || body[4] != RT_TABLE_MAIN {
            return false;
        }
        let Some(dst) = attr(&body[12..], ATTR_DST).and_then(|d| <[u8; 4]>::try_from(d).ok())
        else {
            return false;
        };
        let mut key = [0u8; 5];
        key[..4].copy_from_slice(&dst);
        key[4] = body[1];
        if new {
            self.routes.insert(key)
        } else {
            self.routes.remove(&key)
        }
    }

    /// IPv4 neighbours count while permanent; FDB entries (bridge family)
    /// when they carry a remote (VXLAN) destination.
    fn neighbour(&mut self, body: &[u8], new: bool) -> bool {
        if body.len() < 12 {
            return false;
        }
        let state = u16::from_ne_bytes([body[8], body[9]]);
        let attrs = &body[12..];
        match body[0] {
            AF_INET => {
                let Some(ip) = attr(attrs, ATTR_DST).and_then(|d| <[u8; 4]>::try_from(d).ok())
                else {
                    return false;
                };
                if new && state & NUD_PERMANENT != 0 {
                    self.neighbours.insert(ip)
                } else {
                    self.neighbours.remove(&ip)
                }
            }
            AF_BRIDGE if attr(attrs, ATTR_DST).is_some() => {
                let Some(mac) = attr(attrs, ATTR_LLADDR).and_then(|d| <[u8; 6]>::try_from(d).ok())
                else {
                    return false;
                };
                if new {
                    self.fdb.insert(mac)
                } else {
                    self.fdb.remove(&mac)
                }
            }
            _ => false,
        }
    }
}

/// The payload of the first attribute of type `kind` (rtattr list).
fn attr(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let t = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if t == kind {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

/// A NETLINK_ROUTE socket in `ns` subscribed to route and neighbour
/// notifications, with a large receive buffer and a short read timeout.
fn listen(ns: &str) -> OwnedFd {
    let handle = NetNs::named(ns).expect("netns");
    let fd = handle
        .run(|| {
            // SAFETY: socket(2) with constant arguments; checked below.
            unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_ROUTE,
                )
            }
        })
        .expect("enter netns");
    assert!(
        fd >= 0,
        "netlink socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    let bufsize: libc::c_int = 64 << 20;
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: valid descriptor, option values of the sizes given; the
    // sockaddr is a zeroed sockaddr_nl with family and groups set.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bufsize as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        let mut sa: libc::sockaddr_nl = std::mem::zeroed();
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE;
        let rc = libc::bind(
            raw,
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    }
    fd
}

pub struct WatchResult {
    /// When the entries first were what was wanted.
    pub done_at: Option<Instant>,
    /// When the first relevant notification arrived.
    pub first_change_at: Option<Instant>,
    /// The kernel dropped notifications: the end was found by dumping.
    pub dumped: bool,
    pub last: Counts,
}

/// Watches a namespace's overlay from a thread until it holds `want` of
/// each kind (starting from `initial`, which the caller has checked).
pub struct Watch {
    handle: std::thread::JoinHandle<WatchResult>,
}

impl Watch {
    pub fn start(
        ns: &str,
        dev: &'static str,
        initial: Tables,
        want: Counts,
        deadline: Duration,
    ) -> Watch {
        let fd = listen(ns);
        let ns = ns.to_string();
        let handle = std::thread::spawn(move || {
            let until = Instant::now() + deadline;
            let mut tables = initial;
            let mut r = WatchResult {
                done_at: None,
                first_change_at: None,
                dumped: false,
                last: tables.counts(),
            };
            let mut buf = vec![0u8; 1 << 16];
            while Instant::now() < until && !crate::common::interrupted() {
                // SAFETY: buf is valid for its length; fd is open.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    match e.raw_os_error() {
                        Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                        Some(libc::ENOBUFS) => {
                            r.dumped = true;
                            break;
                        }
                        _ => panic!("netlink recv: {e}"),
                    }
                }
                if tables.apply(&buf[..n as usize]) {
                    let now = Instant::now();
                    r.first_change_at.get_or_insert(now);
                    r.last = tables.counts();
                    if r.last == want {
                        r.done_at = Some(now);
                        return r;
                    }
                }
            }
            if r.dumped {
                let handle = NetNs::named(&ns).expect("netns");
                let mut nl = Netlink::in_netns(&handle).expect("netlink");
                while Instant::now() < until && !crate::common::interrupted() {
                    r.last = count(&mut nl, dev);
                    if r.last == want {
                        r.done_at = Some(Instant::now());
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            r
        });
        Watch { handle }
    }

    pub fn finish(self) -> WatchResult {
        self.handle.join().expect("watch thread")
    }
}
