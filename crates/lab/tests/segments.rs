//! Layer-2 segments across nodes: tweedd builds, on every node, the
//! segment's bridge joined to its VXLAN device and programs head-end
//! replication towards every other node. Endpoints in namespaces of their
//! own are cabled to the bridge on two different nodes (by hand here; the
//! plugin's attachment comes with the segment network config): ARP
//! resolves across the nodes, ping works with addresses the test assigns,
//! and a raw Ethernet frame with an unusual EtherType crosses too.

mod common;

use std::time::Duration;

use common::{TestLab, wait_until};
use serde_json::json;
use tweed_testkit::netns::TestNs;

const SEGMENT: &str = "lab1";
const VNI: u32 = 4001;
/// IEEE 802 local experimental EtherType: nothing on the path parses it.
const ETHERTYPE: u16 = 0x88b5;

fn lab_with_segment(tag: &str, nodes: usize) -> TestLab {
    TestLab::up_with(tag, nodes, "vxlan", "file", |s| {
        s.net_conf_overrides
            .insert("Segments".into(), json!([{"Name": SEGMENT, "VNI": VNI}]));
    })
}

/// An endpoint on the segment: its own namespace, cabled by a veth to the
/// segment bridge of `node`, with `addr` assigned by hand.
fn endpoint(lab: &TestLab, node: &str, tag: &str, addr: &str) -> TestNs {
    let ep = TestNs::new(tag);
    let host_end = format!("sg{tag}");
    let node_ns = lab.lab().state.node(node).unwrap().ns.clone();
    let ip = |ns: &str, args: &str| {
        let mut argv = vec!["-n", ns];
        argv.extend(args.split(' '));
        tweed_testkit::netns::run_ok("ip", &argv);
    };
    ip(
        &node_ns,
        &format!(
            "link add {host_end} type veth peer name eth1 netns {}",
            ep.name
        ),
    );
    ip(
        &node_ns,
        &format!("link set {host_end} master tws-{SEGMENT} up"),
    );
    ip(&ep.name, "link set eth1 up");
    ip(&ep.name, &format!("addr add {addr}/24 dev eth1"));
    ep
}

fn fdb_dsts(lab: &TestLab, node: &str) -> Vec<String> {
    let dev = format!("twx.{VNI}");
    let out = lab
        .lab()
        .exec_output(node, &["bridge", "-j", "fdb", "show", "dev", &dev])
        .expect("bridge");
    if !out.status.success() {
        return Vec::new(); // the device is not there (yet)
    }
    let fdb: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bridge -j");
    fdb.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["mac"] == "00:00:00:00:00:00")
        .filter_map(|e| e["dst"].as_str().map(String::from))
        .collect()
}

fn underlay_ip(lab: &TestLab, node: &str) -> String {
    let n = lab.lab().state.node(node).unwrap();
    n.underlay_ipv4.split('/').next().unwrap().to_string()
}

#[test]
fn containers_on_two_nodes_share_one_segment() {
    let mut lab = lab_with_segment("seg", 3);
    // Every node: the bridge, the VXLAN device on it with learning off, and
    // one flooding entry per other node.
    for node in ["n1", "n2", "n3"] {
        let link = &lab.ip_json(node, &["-d", "link", "show", &format!("twx.{VNI}")])[0];
        assert_eq!(link["master"], format!("tws-{SEGMENT}"), "{link}");
        assert_eq!(link["linkinfo"]["info_data"]["id"], VNI, "{link}");
        assert_eq!(link["linkinfo"]["info_data"]["learning"], false, "{link}");
        let mut want: Vec<String> = ["n1", "n2", "n3"]
            .iter()
            .filter(|n| **n != node)
            .map(|n| underlay_ip(&lab, n))
            .collect();
        want.sort();
        wait_until(10, &format!("{node}'s flooding entries"), || {
            let mut have = fdb_dsts(&lab, node);
            have.sort();
            have == want
        });
    }

    let a = endpoint(&lab, "n1", "sga", "10.244.254.1");
    let b = endpoint(&lab, "n2", "sgb", "10.244.254.2");
    // ARP across nodes, then ICMP.
    assert!(b.ping("10.244.254.1"), "ping across the segment failed");
    let neigh = a.exec_ok(&["ip", "-j", "neigh", "show", "10.244.254.2"]);
    let b_mac = b.exec_ok(&["cat", "/sys/class/net/eth1/address"]);
    assert!(
        neigh.contains(b_mac.trim()),
        "ARP did not resolve n2's endpoint: {neigh} (want {})",
        b_mac.trim()
    );

    // A raw frame of an EtherType nothing routes: broadcast from n1,
    // received on n2.
    let receiver = raw::Receiver::open(&b.name, "eth1", ETHERTYPE);
    raw::send(
        &a.name,
        "eth1",
        [0xff; 6],
        ETHERTYPE,
        b"tweed segment frame",
    );
    let got = receiver.recv(Duration::from_secs(3));
    assert!(
        got.as_deref()
            .is_some_and(|p| p.starts_with(b"tweed segment frame")),
        "the raw frame did not cross the segment: {got:?}"
    );

    // A node leaving takes its flooding entry with it everywhere.
    lab.lab_mut().stop_agent("n3").unwrap();
    lab.lab().delete_lease("n3").unwrap();
    let n3 = underlay_ip(&lab, "n3");
    wait_until(10, "n1 to drop n3's flooding entry", || {
        !fdb_dsts(&lab, "n1").contains(&n3)
    });
    // Drift: the segment's VXLAN device deleted by hand comes back on the
    // bridge, with its entries, and the endpoints talk again.
    tweed_testkit::netns::run_ok(
        "ip",
        &[
            "-n",
            &lab.lab().state.node("n1").unwrap().ns,
            "link",
            "del",
            &format!("twx.{VNI}"),
        ],
    );
    wait_until(10, "n1's segment device to come back", || {
        fdb_dsts(&lab, "n1") == vec![underlay_ip(&lab, "n2")]
    });
    assert!(b.ping("10.244.254.1"), "ping after the device came back");
}

/// Raw Ethernet frames through an AF_PACKET socket, inside a namespace.
mod raw {
    use std::time::Duration;

    use tweed_netlink::NetNs;

    fn ifindex(name: &str) -> i32 {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: `c` is a valid NUL-terminated string for the call.
        let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
        assert!(i > 0, "no interface {name}");
        i as i32
    }

    /// A bound packet socket, opened inside `netns`.
    fn socket(netns: &str, ifname: &str, ethertype: u16) -> i32 {
        let ns = NetNs::named(netns).expect("netns");
        let ifname = ifname.to_string();
        ns.run(move || {
            let proto = ethertype.to_be() as i32;
            // SAFETY: plain socket creation; the result is checked.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
            assert!(
                fd >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = ethertype.to_be();
            sll.sll_ifindex = ifindex(&ifname);
            // SAFETY: `sll` is a valid sockaddr_ll and the length matches.
            let r = unsafe {
                libc::bind(
                    fd,
                    &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
            fd
        })
        .expect("run in netns")
    }

    pub struct Receiver(i32);

    impl Receiver {
        pub fn open(netns: &str, ifname: &str, ethertype: u16) -> Receiver {
            Receiver(socket(netns, ifname, ethertype))
        }

        /// The payload of the first frame within `timeout`.
        pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
            let tv = libc::timeval {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_usec: 0,
            };
            // SAFETY: `tv` is a valid timeval and the length matches.
            unsafe {
                libc::setsockopt(
                    self.0,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const libc::timeval as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as u32,
                )
            };
            let mut buf = [0u8; 2048];
            // SAFETY: `buf` is writable for its whole length.
            let n = unsafe { libc::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
            (n > 14).then(|| buf[14..n as usize].to_vec())
        }
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            // SAFETY: the descriptor is ours and closed once.
            unsafe { libc::close(self.0) };
        }
    }

    /// Sends one frame to `dst` with `ethertype` and `payload`.
    pub fn send(netns: &str, ifname: &str, dst: [u8; 6], ethertype: u16, payload: &[u8]) {
        let fd = socket(netns, ifname, ethertype);
        let mut frame = Vec::with_capacity(64);
        frame.extend_from_slice(&dst);
        frame.extend_from_slice(&[0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]);
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(payload);
        frame.resize(frame.len().max(60), 0);
        // SAFETY: `frame` is readable for its whole length.
        let n = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n as usize,
            frame.len(),
            "send: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(fd) };
    }
}
