//! A stand-in guest for tests that need many guests quickly: a network
//! namespace whose interface is wired, frame for frame, to a tap in a pod.
//!
//! What a VMM does with a tap — open it by name in the pod's namespace,
//! read the frames the kernel hands it and write the guest's frames back —
//! a relay thread does here, carrying the frames to a veth whose other end
//! (`eth0` in the guest namespace) is configured like a guest would
//! configure itself. The kernel sees a real tap opened by a real reader;
//! the "guest" is a real Linux stack. The real VM (QEMU) is in `qemu`.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::netns::{TestNs, run_ok};

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `<linux/if_packet.h>`.
const PACKET_VNET_HDR: libc::c_int = 15;
/// `<linux/if_packet.h>`; Linux 4.20 and later.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// `struct virtio_net_hdr` without mergeable buffers.
const VNET_HDR_LEN: usize = 10;

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A running stand-in guest. Dropping it stops the relay and deletes the
/// guest namespace.
pub struct TapGuest {
    pub ns: TestNs,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn enter(ns_path: &str) {
    let f = std::fs::File::open(ns_path).unwrap_or_else(|e| panic!("open {ns_path}: {e}"));
    // SAFETY: setns on an open namespace file affects only this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {ns_path}: {}", std::io::Error::last_os_error());
}

/// Opens tap `name` in `pod_ns` (the thread enters it just for the open).
/// With a virtio-net header, as QEMU opens it (the plugin's tap has
/// IFF_VNET_HDR unless configured otherwise).
fn open_tap(pod_ns: &str, name: &str) -> OwnedFd {
    let pod_ns = pod_ns.to_string();
    let name = name.to_string();
    std::thread::spawn(move || {
        enter(&pod_ns);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .expect("open /dev/net/tun");
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        for (d, s) in req.name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: TUNSETIFF reads an ifreq that outlives the call.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
        assert_eq!(
            r,
            0,
            "attach to tap {name} in {pod_ns}: {}",
            std::io::Error::last_os_error()
        );
        OwnedFd::from(file)
    })
    .join()
    .expect("tap opener")
}

/// A packet socket bound to `ifname` in the namespace at `ns_path`.
fn packet_socket(ns_path: &str, ifname: &str) -> OwnedFd {
    let ns_path = ns_path.to_string();
    let ifname = ifname.to_string();
    std::thread::spawn(move || {
        enter(&ns_path);
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket creation.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd was just returned by socket() and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let cname = std::ffi::CString::new(ifname.clone()).unwrap();
        // SAFETY: cname is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        assert!(index > 0, "no {ifname} in {ns_path}");
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = index as i32;
        // SAFETY: addr is a valid sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            r,
            0,
            "bind packet socket: {}",
            std::io::Error::last_os_error()
        );
        // The frames this socket itself sends out of `ifname` would come
        // back to it and loop; take only what arrives.
        let one: libc::c_int = 1;
        // SAFETY: an int option of the right size.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_IGNORE_OUTGOING,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        assert_eq!(
            r,
            0,
            "PACKET_IGNORE_OUTGOING: {}",
            std::io::Error::last_os_error()
        );
        // Frames carry a virtio-net header, as on the tap: the guest
        // stack's checksum offload (a partial checksum plus where to
        // finish it) crosses intact instead of arriving as a bad checksum.
        // SAFETY: as above.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_VNET_HDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        assert_eq!(r, 0, "PACKET_VNET_HDR: {}", std::io::Error::last_os_error());
        fd
    })
    .join()
    .expect("packet socket opener")
}

/// Waits up to 100 ms for `fd` to be readable.
fn readable(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 100) > 0 }
}

/// Copies frames (each with its virtio-net header) from `from` to `to`
/// until told to stop.
fn relay(from: OwnedFd, to: i32, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 65536 + VNET_HDR_LEN];
    while !stop.load(Ordering::Relaxed) {
        if !readable(from.as_raw_fd()) {
            continue;
        }
        // SAFETY: the buffer is valid for its whole length.
        let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            continue;
        }
        // SAFETY: writing the initialised bytes just read.
        unsafe {
            libc::write(to, buf.as_ptr().cast(), n as usize);
        }
    }
}

impl TapGuest {
    /// Wires tap `tap` (opened with a vnet header) of the pod namespace `pod_ns` (a path or name under
    /// /run/netns) to `eth0` of a new guest namespace, which gets `mac`,
    /// `mtu` and comes up with no addresses: the test configures it like a
    /// guest would (`ns.exec_ok(["ip", ...])`).
    pub fn start(tag: &str, pod_ns: &str, tap: &str, mac: &str, mtu: u32) -> TapGuest {
        let pod_path = if pod_ns.starts_with('/') {
            pod_ns.to_string()
        } else {
            format!("/run/netns/{pod_ns}")
        };
        TapGuest::wire(tag, open_tap(&pod_path, tap), mac, mtu)
    }

    /// The same on a macvtap, through its character device (`/dev/tapN`
    /// or a node the test made with the major:minor the plugin recorded),
    /// which speaks with a vnet header by default.
    pub fn start_on_device(tag: &str, device: &std::path::Path, mac: &str, mtu: u32) -> TapGuest {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(device)
            .unwrap_or_else(|e| panic!("open {}: {e}", device.display()));
        TapGuest::wire(tag, OwnedFd::from(file), mac, mtu)
    }

    fn wire(tag: &str, tap_fd: OwnedFd, mac: &str, mtu: u32) -> TapGuest {
        let ns = TestNs::new(tag);
        let g = ns.name.as_str();
        run_ok(
            "ip",
            &[
                "-n", g, "link", "add", "eth0", "type", "veth", "peer", "name", "wire",
            ],
        );
        run_ok("ip", &["-n", g, "link", "set", "eth0", "address", mac]);
        for dev in ["eth0", "wire"] {
            run_ok(
                "ip",
                &["-n", g, "link", "set", dev, "mtu", &mtu.to_string()],
            );
            run_ok("ip", &["-n", g, "link", "set", dev, "up"]);
        }
        run_ok("ip", &["-n", g, "link", "set", "lo", "up"]);
        let wire_fd = packet_socket(&ns.path(), "wire");
        let stop = Arc::new(AtomicBool::new(false));
        let tap_w = tap_fd.as_raw_fd();
        let wire_w = wire_fd.as_raw_fd();
        let (s1, s2) = (stop.clone(), stop.clone());
        let threads = vec![
            std::thread::spawn(move || relay(tap_fd, wire_w, s1)),
            std::thread::spawn(move || relay(wire_fd, tap_w, s2)),
        ];
        TapGuest { ns, stop, threads }
    }
}

impl Drop for TapGuest {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
