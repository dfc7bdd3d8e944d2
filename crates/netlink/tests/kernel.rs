//! The netlink layer against the real kernel, in throwaway namespaces.
//! Every state change is read back twice: through our own dump code and
//! through iproute2 (`ip -j`), so a bug in one decoder cannot hide itself.

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use ipnet::IpNet;
use serde_json::Value;
use tweed_netlink::{LinkKind, MacAddr, NetNs, Netlink, NewLink, Route, VethPeer, VxlanSpec};

/// A named namespace deleted on drop.
struct TempNs {
    name: String,
    ns: NetNs,
}

impl TempNs {
    fn new(tag: &str) -> TempNs {
        static N: AtomicU32 = AtomicU32::new(0);
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests program the kernel and must run as root"
        );
        let name = format!(
            "twnl-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let ns = NetNs::create_named(&name).expect("create netns");
        TempNs { name, ns }
    }

    fn nl(&self) -> Netlink {
        Netlink::in_netns(&self.ns).expect("netlink in netns")
    }

    fn ip_json(&self, args: &[&str]) -> Value {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-j", "-d"])
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("ip -j output")
    }
}

impl Drop for TempNs {
    fn drop(&mut self) {
        let _ = NetNs::delete_named(&self.name);
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn create_named_namespace_is_a_fresh_network_namespace() {
    let t = TempNs::new("ns");
    let here = NetNs::current().unwrap();
    assert_ne!(t.ns.id().unwrap(), here.id().unwrap());
    let links = t.nl().links().unwrap();
    assert_eq!(
        links.len(),
        1,
        "only loopback in a new namespace: {links:?}"
    );
    assert_eq!(links[0].name, "lo");
    // The thread that created it is back where it was.
    assert_eq!(NetNs::current().unwrap().id().unwrap(), here.id().unwrap());
}

/// Set in the copy of this test binary that runs inside a private mount
/// namespace (see the test below).
const IN_PRIVATE_MOUNTS: &str = "TWEED_TEST_IN_PRIVATE_MOUNTS";

/// On a machine where `/run/netns` is not yet a mount point (a fresh boot),
/// namespaces tweed names and namespaces `ip netns add` names must live on
/// one mount: iproute2 binds the directory onto itself the first time, and
/// a namespace mounted before that could then never be removed (its
/// original mount hidden under the copy, the name busy for good).
#[test]
fn named_namespaces_share_one_mount_with_iproute2() {
    if std::env::var_os(IN_PRIVATE_MOUNTS).is_none() {
        // Re-run just this test in a private mount namespace, where a fresh
        // tmpfs on /run plays the freshly booted machine; nothing of it
        // reaches the host's mounts.
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "named_namespaces_share_one_mount_with_iproute2",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(IN_PRIVATE_MOUNTS, "1")
            .output()
            .expect("run unshare (util-linux)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        return;
    }
    // Mounts at `path` on top of the test's tmpfs (the host's own mounts
    // under /run stay listed in mountinfo, hidden below it).
    let mounted = |path: &str| {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        // (id, parent id, mount point)
        let mounts: Vec<(&str, &str, &str)> = info
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f[0], f[1], f[4])
            })
            .collect();
        let mut ours: Vec<&str> = info
            .lines()
            .filter(|l| l.contains(" - tmpfs tweed-test "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let mut grew = true;
        while grew {
            let more: Vec<&str> = mounts
                .iter()
                .filter(|(id, parent, _)| ours.contains(parent) && !ours.contains(id))
                .map(|(id, _, _)| *id)
                .collect();
            grew = !more.is_empty();
            ours.extend(more);
        }
        mounts
            .iter()
            .filter(|(id, _, at)| *at == path && ours.contains(id))
            .count()
    };
    let run = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mount_tmpfs = Command::new("mount")
        .args(["-t", "tmpfs", "tweed-test", "/run"])
        .status()
        .unwrap();
    assert!(mount_tmpfs.success());
    std::fs::create_dir("/run/netns").unwrap();
    assert_eq!(
        mounted("/run/netns"),
        0,
        "the fresh /run/netns is a plain directory"
    );

    let ours = NetNs::create_named("tweed-first").unwrap();
    drop(ours);
    assert_eq!(
        mounted("/run/netns"),
        1,
        "tweed made /run/netns a mount point"
    );
    run(&["netns", "add", "iproute2-second"]);
    assert_eq!(
        mounted("/run/netns"),
        1,
        "iproute2 bound the directory again"
    );

    NetNs::delete_named("tweed-first").expect("tweed's namespace removed after iproute2's");
    assert!(!std::path::Path::new("/run/netns/tweed-first").exists());
    assert_eq!(
        mounted("/run/netns/tweed-first"),
        0,
        "a mount of it is left"
    );
    run(&["netns", "del", "iproute2-second"]);
    assert_eq!(mounted("/run/netns/iproute2-second"), 0);
}

#[test]
fn opening_something_that_is_not_a_netns_is_refused() {
    let err = NetNs::open("/etc/hostname").unwrap_err();
    assert!(err.to_string().contains("not a namespace"), "{err}");
    let err = NetNs::open("/proc/self/ns/uts").unwrap_err();
    assert!(err.to_string().contains("not a network namespace"), "{err}");
    assert!(NetNs::open("/nonexistent/ns").is_err());
}

#[test]
fn bridge_and_veth_with_peer_created_in_the_other_namespace() {
    let node = TempNs::new("node");
    let pod = TempNs::new("pod");
    let mut nl = node.nl();

    let mut br = NewLink::new("twbr0", LinkKind::Bridge);
    br.mtu = Some(1400);
    br.mac = Some("02:00:00:00:00:01".parse().unwrap());
    br.up = true;
    nl.create_link(&br).unwrap();
    let bridge = nl.link_by_name("twbr0").unwrap().expect("bridge exists");
    assert_eq!(bridge.kind.as_deref(), Some("bridge"));
    assert_eq!(bridge.mtu, 1400);
    assert!(bridge.up);

    // Creating it again is EEXIST, which callers rely on for races.
    let again = nl.create_link(&br).unwrap_err();
    assert!(again.is_exists(), "{again}");

    let pod_mac: MacAddr = "02:11:22:33:44:55".parse().unwrap();
    let mut veth = NewLink::new(
        "twhost0",
        LinkKind::Veth(VethPeer {
            name: "eth0".into(),
            mac: Some(pod_mac),
            netns: Some(&pod.ns),
        }),
    );
    veth.mtu = Some(1400);
    veth.master = Some(bridge.index);
    veth.up = true;
    veth.alias = Some("tweed/net/ctr/eth0".into());
    nl.create_link(&veth).unwrap();
    let host_index = nl.link_by_name("twhost0").unwrap().unwrap().index;
    nl.set_bridge_port(host_index, true).unwrap();

    let host = nl.link_by_name("twhost0").unwrap().unwrap();
    assert_eq!(host.master, Some(bridge.index));
    assert_eq!(host.alias.as_deref(), Some("tweed/net/ctr/eth0"));
    assert_eq!(host.bridge_port.map(|p| p.hairpin), Some(true));
    assert!(host.up);

    // The peer exists only in the pod namespace, with the MAC we asked for.
    assert!(nl.link_by_name("eth0").unwrap().is_none());
    let mut pnl = pod.nl();
    let eth0 = pnl.link_by_name("eth0").unwrap().expect("peer in pod ns");
    assert_eq!(eth0.mac, Some(pod_mac));
    assert_eq!(eth0.mtu, 1400);
    assert_eq!(eth0.peer_index, Some(host.index));

    // iproute2 agrees.
    let j = node.ip_json(&["link", "show", "twhost0"]);
    assert_eq!(j[0]["master"], "twbr0");
    assert_eq!(j[0]["linkinfo"]["info_slave_data"]["hairpin"], true);
    let j = pod.ip_json(&["link", "show", "eth0"]);
    assert_eq!(j[0]["address"], "02:11:22:33:44:55");

    // Deleting the host end removes both.
    nl.delete_link(host.index).unwrap();
    assert!(pnl.link_by_name("eth0").unwrap().is_none());
    let gone = nl.delete_link(host.index).unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
}

#[test]
fn veth_peer_name_taken_in_target_namespace_is_eexist_and_creates_nothing() {
    let node = TempNs::new("node");
    let pod = TempNs::new("pod");
    let mut nl = node.nl();
    let mk = |host: &str| {
        let mut l = NewLink::new(
            host,
            LinkKind::Veth(VethPeer {
                name: "eth0".into(),
                mac: None,
                netns: Some(&pod.ns),
            }),
        );
        l.mtu = Some(1500);
        l
    };
    nl.create_link(&mk("twa")).unwrap();
    let err = nl.create_link(&mk("twb")).unwrap_err();
    assert!(err.is_exists(), "{err}");
    assert!(
        nl.link_by_name("twb").unwrap().is_none(),
        "no half-made host end"
    );
}

#[test]
fn addresses_routes_and_sysctls_inside_a_namespace() {
    let node = TempNs::new("node");
    let pod = TempNs::new("pod");
    let mut nl = node.nl();
    nl.create_link(&NewLink::new(
        "twh",
        LinkKind::Veth(VethPeer {
            name: "eth0".into(),
            mac: None,
            netns: Some(&pod.ns),
        }),
    ))
    .unwrap();
    let mut pnl = pod.nl();
    let eth0 = pnl.link_by_name("eth0").unwrap().unwrap();
    pod.ns
        .run(|| tweed_netlink::sysctl::write(&["net", "ipv4", "conf", "eth0", "arp_notify"], "1"))
        .unwrap()
        .unwrap();
    let v = pod
        .ns
        .run(|| tweed_netlink::sysctl::read(&["net", "ipv4", "conf", "eth0", "arp_notify"]))
        .unwrap()
        .unwrap();
    assert_eq!(v, "1");
    // The host namespace has no eth0 setting from us.
    assert!(
        tweed_netlink::sysctl::read(&["net", "ipv4", "conf", "twh-none", "arp_notify"]).is_err()
    );

    pnl.add_address(eth0.index, net("10.244.7.5/24"), true)
        .unwrap();
    pnl.add_address(eth0.index, net("fd00:7::5/64"), true)
        .unwrap();
    assert!(
        pnl.add_address(eth0.index, net("10.244.7.5/24"), true)
            .unwrap_err()
            .is_exists()
    );
    pnl.set_link_up(eth0.index, true).unwrap();

    let addrs = pnl.addresses(Some(eth0.index)).unwrap();
    assert!(
        addrs.iter().any(|a| a.addr == net("10.244.7.5/24")),
        "{addrs:?}"
    );
    let v6 = addrs
        .iter()
        .find(|a| a.addr == net("fd00:7::5/64"))
        .expect("v6 address");
    assert!(!v6.tentative, "NODAD address must be usable at once");

    let gw: IpAddr = "10.244.7.1".parse().unwrap();
    pnl.add_route(&Route::new(net("0.0.0.0/0")).via(gw).dev(eth0.index))
        .unwrap();
    let mut r = Route::new(net("10.96.0.0/12")).via(gw).dev(eth0.index);
    r.mtu = Some(1300);
    r.metric = Some(50);
    pnl.add_route(&r).unwrap();
    let routes = pnl.routes(false, tweed_netlink::TABLE_MAIN).unwrap();
    let def = routes
        .iter()
        .find(|r| r.dst.prefix_len() == 0)
        .expect("default route");
    assert_eq!(def.gateway, Some(gw));
    let svc = routes
        .iter()
        .find(|r| r.dst == net("10.96.0.0/12"))
        .expect("service route");
    assert_eq!(svc.mtu, Some(1300));
    assert_eq!(svc.metric, Some(50));
    let j = pod.ip_json(&["route", "show", "default"]);
    assert_eq!(j[0]["gateway"], "10.244.7.1");

    pnl.delete_route(&r).unwrap();
    assert!(
        pnl.routes(false, tweed_netlink::TABLE_MAIN)
            .unwrap()
            .iter()
            .all(|x| x.dst != r.dst)
    );
    pnl.delete_address(eth0.index, net("10.244.7.5/24"))
        .unwrap();
    assert!(
        pnl.addresses(Some(eth0.index))
            .unwrap()
            .iter()
            .all(|a| a.addr != net("10.244.7.5/24"))
    );
}

#[test]
fn errors_carry_the_kernels_explanation() {
    let node = TempNs::new("node");
    let mut nl = node.nl();
    let lo = nl.link_by_name("lo").unwrap().unwrap();
    // Gateway unreachable: the kernel says why.
    let err = nl
        .add_route(
            &Route::new(net("10.1.0.0/16"))
                .via("198.18.255.1".parse().unwrap())
                .dev(lo.index),
        )
        .unwrap_err();
    assert!(err.errno().is_some());
    let text = err.to_string();
    assert!(
        text.starts_with("add route 10.1.0.0/16 via 198.18.255.1"),
        "{text}"
    );
}

#[test]
fn vxlan_device_neighbours_and_fdb() {
    let node = TempNs::new("node");
    let mut nl = node.nl();
    let mut vx = NewLink::new(
        "tweed.7",
        LinkKind::Vxlan(VxlanSpec {
            remote: None,
            vni: 7,
            port: 8472,
            local: Some("198.18.0.1".parse().unwrap()),
            underlay_index: None,
            learning: false,
        }),
    );
    vx.mtu = Some(1450);
    vx.mac = Some("02:00:00:00:07:01".parse().unwrap());
    vx.up = true;
    nl.create_link(&vx).unwrap();
    let dev = nl.link_by_name("tweed.7").unwrap().unwrap();
    let info = dev.vxlan.clone().expect("vxlan info");
    assert_eq!((info.vni, info.port, info.learning), (7, 8472, false));
    let j = node.ip_json(&["link", "show", "tweed.7"]);
    assert_eq!(j[0]["linkinfo"]["info_data"]["id"], 7);
    assert_eq!(j[0]["linkinfo"]["info_data"]["port"], 8472);

    let peer_mac: MacAddr = "02:00:00:00:07:02".parse().unwrap();
    let peer_ip: IpAddr = "10.244.2.0".parse().unwrap();
    let peer_underlay: IpAddr = "198.18.0.2".parse().unwrap();
    nl.set_neighbour(dev.index, peer_ip, peer_mac).unwrap();
    nl.set_fdb(dev.index, peer_mac, peer_underlay).unwrap();
    // Head-end replication: several destinations for the zero MAC.
    nl.append_fdb(dev.index, MacAddr::ZERO, "198.18.0.3".parse().unwrap())
        .unwrap();
    nl.append_fdb(dev.index, MacAddr::ZERO, "198.18.0.4".parse().unwrap())
        .unwrap();

    let neigh = nl.neighbours(false, Some(dev.index)).unwrap();
    assert!(
        neigh
            .iter()
            .any(|n| n.ip == peer_ip && n.mac == Some(peer_mac) && n.permanent),
        "{neigh:?}"
    );
    let fdb = nl.fdb(dev.index).unwrap();
    assert!(
        fdb.iter()
            .any(|e| e.mac == peer_mac && e.dst == Some(peer_underlay) && e.own && e.permanent),
        "{fdb:?}"
    );
    assert_eq!(fdb.iter().filter(|e| e.mac.is_zero()).count(), 2, "{fdb:?}");

    nl.delete_fdb(
        dev.index,
        MacAddr::ZERO,
        Some("198.18.0.3".parse().unwrap()),
    )
    .unwrap();
    nl.delete_fdb(dev.index, peer_mac, None).unwrap();
    nl.delete_neighbour(dev.index, peer_ip).unwrap();
    let fdb = nl.fdb(dev.index).unwrap();
    assert!(fdb.iter().all(|e| e.mac != peer_mac));
    assert_eq!(fdb.iter().filter(|e| e.mac.is_zero()).count(), 1);
    assert!(
        nl.neighbours(false, Some(dev.index))
            .unwrap()
            .iter()
            .all(|n| n.ip != peer_ip)
    );
}

#[test]
fn rename_and_move_between_namespaces() {
    let a = TempNs::new("a");
    let b = TempNs::new("b");
    let mut na = a.nl();
    na.create_link(&NewLink::new(
        "twx",
        LinkKind::Veth(VethPeer {
            name: "twy".into(),
            mac: None,
            netns: None,
        }),
    ))
    .unwrap();
    let x = na.link_by_name("twx").unwrap().unwrap();
    na.set_link_name(x.index, "twz").unwrap();
    assert!(na.link_by_name("twz").unwrap().is_some());
    na.set_link_mtu(x.index, 9000).unwrap();
    assert_eq!(na.link_by_index(x.index).unwrap().unwrap().mtu, 9000);
    // A veth gets the default queue of 1000; 0 (what Go's netlink gives
    // its veths) reads back as 0.
    assert_eq!(x.qlen, 1000);
    na.set_link_qlen(x.index, 0).unwrap();
    assert_eq!(na.link_by_index(x.index).unwrap().unwrap().qlen, 0);
    na.set_link_netns(x.index, &b.ns).unwrap();
    assert!(na.link_by_name("twz").unwrap().is_none());
    assert!(b.nl().link_by_name("twz").unwrap().is_some());
}

#[test]
fn ingress_redirect_joins_two_devices_back_to_back() {
    // left <-veth-> middle(a)  middle(b) <-veth-> right; a and b are joined
    // by two redirects, so left and right behave as if cabled together.
    let left = TempNs::new("left");
    let middle = TempNs::new("mid");
    let right = TempNs::new("right");
    let mut m = middle.nl();
    for (name, peer_ns) in [("a", &left.ns), ("b", &right.ns)] {
        let mut l = NewLink::new(
            name,
            LinkKind::Veth(VethPeer {
                name: "eth0".into(),
                mac: None,
                netns: Some(peer_ns),
            }),
        );
        l.up = true;
        m.create_link(&l).unwrap();
    }
    let a = m.link_by_name("a").unwrap().unwrap().index;
    let b = m.link_by_name("b").unwrap().unwrap().index;
    m.add_ingress_qdisc(a).unwrap();
    m.add_ingress_qdisc(b).unwrap();
    assert!(m.add_ingress_qdisc(a).unwrap_err().is_exists());
    m.add_redirect(a, b).unwrap();
    m.add_redirect(b, a).unwrap();

    let q = m.qdiscs(a).unwrap();
    assert!(
        q.iter()
            .any(|q| q.kind == "ingress" && q.handle == 0xffff_0000),
        "{q:?}"
    );
    let f = m.ingress_filters(a).unwrap();
    assert!(
        f.iter()
            .any(|f| f.kind == "u32" && f.redirect_to == Some(b)),
        "{f:?}"
    );
    // tc agrees.
    let out = Command::new("tc")
        .args([
            "-n",
            &middle.name,
            "-j",
            "filter",
            "show",
            "dev",
            "a",
            "ingress",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mirred") && text.contains("\"to_dev\":\"b\""),
        "{text}"
    );

    for (ns, addr) in [(&left, "10.244.250.1/24"), (&right, "10.244.250.2/24")] {
        let mut nl = ns.nl();
        let eth0 = nl.link_by_name("eth0").unwrap().unwrap();
        nl.add_address(eth0.index, net(addr), true).unwrap();
        nl.set_link_up(eth0.index, true).unwrap();
    }
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &left.name,
            "ping",
            "-c",
            "2",
            "-W",
            "2",
            "10.244.250.2",
        ])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping across the redirect failed: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // Without the ingress qdisc the filters go too, and the cable is cut.
    m.delete_ingress_qdisc(a).unwrap();
    assert!(m.ingress_filters(a).unwrap().is_empty());
    assert!(m.qdiscs(a).unwrap().iter().all(|q| q.kind != "ingress"));
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &left.name,
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "10.244.250.2",
        ])
        .output()
        .unwrap();
    assert!(
        !ping.status.success(),
        "traffic must stop without the redirect"
    );
}

#[test]
fn srv6_encap_and_end_dx4_carry_ipv4_over_an_ipv6_underlay() {
    if !tweed_testkit::vm::on_a_kernel_with(&[tweed_testkit::vm::KernelFeature::Seg6]) {
        return; // ran, and passed, in the VM runner
    }
    use tweed_netlink::RouteEncap;
    // a ==(IPv6 only)== b --(IPv4)-- c. a's IPv4 address lives on its
    // loopback; a reaches c only through the SRv6 tunnel a<->b.
    let a = TempNs::new("srA");
    let b = TempNs::new("srB");
    let c = TempNs::new("srC");
    let (mut na, mut nb, mut nc) = (a.nl(), b.nl(), c.nl());
    let mut l = NewLink::new(
        "a0",
        LinkKind::Veth(VethPeer {
            name: "b0".into(),
            mac: None,
            netns: Some(&b.ns),
        }),
    );
    l.up = true;
    na.create_link(&l).unwrap();
    let mut l = NewLink::new(
        "c0",
        LinkKind::Veth(VethPeer {
            name: "b1".into(),
            mac: None,
            netns: Some(&b.ns),
        }),
    );
    l.up = true;
    nc.create_link(&l).unwrap();
    let idx = |nl: &mut Netlink, n: &str| nl.link_by_name(n).unwrap().unwrap().index;
    let (a0, lo_a) = (idx(&mut na, "a0"), idx(&mut na, "lo"));
    let (b0, b1) = (idx(&mut nb, "b0"), idx(&mut nb, "b1"));
    let c0 = idx(&mut nc, "c0");
    nb.set_link_up(b0, true).unwrap();
    nb.set_link_up(b1, true).unwrap();
    na.set_link_up(lo_a, true).unwrap();
    na.add_address(a0, net("fd00:ab::1/64"), true).unwrap();
    nb.add_address(b0, net("fd00:ab::2/64"), true).unwrap();
    na.add_address(lo_a, net("10.244.252.1/32"), true).unwrap();
    nb.add_address(b1, net("10.244.253.1/24"), true).unwrap();
    nc.add_address(c0, net("10.244.253.2/24"), true).unwrap();
    nc.add_route(
        &Route::new(net("0.0.0.0/0"))
            .via("10.244.253.1".parse().unwrap())
            .dev(c0),
    )
    .unwrap();
    for ns in [&a, &b] {
        ns.ns
            .run(|| {
                tweed_netlink::sysctl::write(&["net", "ipv4", "ip_forward"], "1").unwrap();
                tweed_netlink::sysctl::write(&["net", "ipv6", "conf", "all", "forwarding"], "1")
                    .unwrap();
            })
            .unwrap();
    }
    // a: towards c's subnet, encapsulate to b's SID; a's own SID decaps.
    let mut r = Route::new(net("10.244.253.0/24")).dev(a0);
    r.encap = Some(RouteEncap::Seg6 {
        segments: vec!["fd00:b::100".parse().unwrap()],
    });
    na.add_route(&r).unwrap();
    let mut r = Route::new(net("fd00:a::100/128")).dev(a0);
    r.encap = Some(RouteEncap::EndDx4 {
        nh4: std::net::Ipv4Addr::UNSPECIFIED,
    });
    na.add_route(&r).unwrap();
    // b: the mirror image.
    let mut r = Route::new(net("10.244.252.1/32")).dev(b0);
    r.encap = Some(RouteEncap::Seg6 {
        segments: vec!["fd00:a::100".parse().unwrap()],
    });
    nb.add_route(&r).unwrap();
    let mut r = Route::new(net("fd00:b::100/128")).dev(b0);
    r.encap = Some(RouteEncap::EndDx4 {
        nh4: std::net::Ipv4Addr::UNSPECIFIED,
    });
    nb.add_route(&r).unwrap();
    // a has no route for fd00:b::/64 except via the on-link neighbour.
    na.add_route(
        &Route::new(net("fd00:b::/64"))
            .via("fd00:ab::2".parse().unwrap())
            .dev(a0),
    )
    .unwrap();
    nb.add_route(
        &Route::new(net("fd00:a::/64"))
            .via("fd00:ab::1".parse().unwrap())
            .dev(b0),
    )
    .unwrap();

    // Read back: our decoder and iproute2.
    let routes = na.routes(false, tweed_netlink::TABLE_MAIN).unwrap();
    let enc = routes
        .iter()
        .find(|r| r.dst == net("10.244.253.0/24"))
        .unwrap();
    assert_eq!(
        enc.encap,
        Some(RouteEncap::Seg6 {
            segments: vec!["fd00:b::100".parse().unwrap()]
        })
    );
    let v6 = nb.routes(true, tweed_netlink::TABLE_MAIN).unwrap();
    let local = v6.iter().find(|r| r.dst == net("fd00:b::100/128")).unwrap();
    assert!(
        matches!(local.encap, Some(RouteEncap::EndDx4 { .. })),
        "{local:?}"
    );
    let j = b.ip_json(&["-6", "route", "show", "fd00:b::100"]);
    assert_eq!(j[0]["encap"], "seg6local", "{j}");

    let lookup = na
        .route_get("10.244.253.2".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(lookup.oif, Some(a0));

    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &a.name,
            "ping",
            "-c",
            "2",
            "-W",
            "2",
            "-I",
            "10.244.252.1",
            "10.244.253.2",
        ])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping over SRv6 failed: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
}

#[test]
fn monitor_reports_deletions() {
    use tweed_netlink::{Event, Monitor};
    let t = TempNs::new("mon");
    let mut mon = t.ns.run(Monitor::new).unwrap().unwrap();
    let mut nl = t.nl();
    let mut l = NewLink::new(
        "twm0",
        LinkKind::Veth(VethPeer {
            name: "twm1".into(),
            mac: None,
            netns: None,
        }),
    );
    l.up = true;
    nl.create_link(&l).unwrap();
    let idx = nl.link_by_name("twm0").unwrap().unwrap().index;
    nl.add_address(idx, net("10.244.254.1/24"), true).unwrap();
    let mut r = Route::new(net("10.244.200.0/24"))
        .via("10.244.254.2".parse().unwrap())
        .dev(idx);
    r.protocol = 77;
    nl.add_route(&r).unwrap();
    nl.delete_route(&r).unwrap();
    nl.delete_link(idx).unwrap();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline
        && !seen
            .iter()
            .any(|e| matches!(e, Event::LinkDeleted { name, .. } if name == "twm0"))
    {
        seen.extend(mon.wait(std::time::Duration::from_millis(200)).unwrap());
    }
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::RouteDeleted { protocol: 77 })),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::LinkDeleted { name, .. } if name == "twm0")),
        "{seen:?}"
    );
}

#[test]
fn tap_devices_are_created_inside_a_namespace() {
    use tweed_netlink::{TapSpec, create_tap};
    let t = TempNs::new("tap");
    t.ns.run(|| {
        create_tap(&TapSpec {
            name: "tap0".into(),
            vnet_hdr: true,
            owner: Some(1234),
            group: Some(5678),
        })
    })
    .unwrap()
    .unwrap();
    let j = t.ip_json(&["link", "show", "tap0"]);
    let info = &j[0]["linkinfo"]["info_data"];
    assert_eq!(info["type"], "tap", "{j}");
    assert_eq!(info["pi"], false);
    assert_eq!(info["vnet_hdr"], true);
    assert_eq!(info["persist"], true);
    assert_eq!(info["user"], 1234);
    assert_eq!(info["group"], 5678);
    // Not in the caller's namespace.
    assert!(
        Netlink::new()
            .unwrap()
            .link_by_name("tap0")
            .unwrap()
            .is_none()
    );
    // Removed over netlink like any link.
    let mut nl = t.nl();
    let idx = nl.link_by_name("tap0").unwrap().unwrap().index;
    nl.delete_link(idx).unwrap();
    assert!(nl.link_by_name("tap0").unwrap().is_none());
    // A second tap with the same name in the same namespace is refused.
    t.ns.run(|| {
        create_tap(&TapSpec {
            name: "tap1".into(),
            vnet_hdr: false,
            owner: None,
            group: None,
        })
    })
    .unwrap()
    .unwrap();
    let err =
        t.ns.run(|| {
            create_tap(&TapSpec {
                name: "tap1".into(),
                vnet_hdr: true,
                owner: None,
                group: None,
            })
        })
        .unwrap();
    assert!(err.is_err());
}

#[test]
fn macvtap_in_bridge_mode_on_a_lower_device() {
    let t = TempNs::new("mvt");
    let mut nl = t.nl();
    nl.create_link(&NewLink::new(
        "eth0",
        LinkKind::Veth(VethPeer {
            name: "peer0".into(),
            mac: None,
            netns: None,
        }),
    ))
    .unwrap();
    let lower = nl.link_by_name("eth0").unwrap().unwrap().index;
    let mut spec = NewLink::new("mvtap0", LinkKind::MacVtap { lower });
    spec.mac = Some("02:00:00:00:aa:01".parse().unwrap());
    let link = nl.create_link_and_get(&spec).unwrap();
    assert_eq!(link.kind.as_deref(), Some("macvtap"));
    assert_eq!(link.peer_index, Some(lower));
    let j = t.ip_json(&["link", "show", "mvtap0"]);
    assert_eq!(j[0]["linkinfo"]["info_data"]["mode"], "bridge", "{j}");
    assert_eq!(j[0]["address"], "02:00:00:00:aa:01");
}

#[test]
fn a_pass_filter_lets_one_address_through_ahead_of_the_redirect() {
    let left = TempNs::new("pl");
    let middle = TempNs::new("pm");
    let right = TempNs::new("pr");
    let mut m = middle.nl();
    for (name, peer_ns) in [("a", &left.ns), ("b", &right.ns)] {
        let mut l = NewLink::new(
            name,
            LinkKind::Veth(VethPeer {
                name: "eth0".into(),
                mac: None,
                netns: Some(peer_ns),
            }),
        );
        l.up = true;
        m.create_link(&l).unwrap();
    }
    let a = m.link_by_name("a").unwrap().unwrap();
    let b = m.link_by_name("b").unwrap().unwrap().index;
    m.add_address(a.index, net("10.244.249.3/32"), true)
        .unwrap();
    m.add_ingress_qdisc(a.index).unwrap();
    m.add_ingress_qdisc(b).unwrap();
    m.add_redirect(a.index, b).unwrap();
    m.add_redirect(b, a.index).unwrap();
    m.add_pass_ipv4_dst(a.index, "10.244.249.3".parse().unwrap(), 1)
        .unwrap();
    for (ns, addr) in [(&left, "10.244.249.1/24"), (&right, "10.244.249.2/24")] {
        let mut nl = ns.nl();
        let eth0 = nl.link_by_name("eth0").unwrap().unwrap();
        nl.add_address(eth0.index, net(addr), true).unwrap();
        nl.set_link_up(eth0.index, true).unwrap();
    }
    // middle answers for .3 on a; left knows its MAC (ARP is redirected).
    let mut lnl = left.nl();
    let leth = lnl.link_by_name("eth0").unwrap().unwrap();
    lnl.set_neighbour(leth.index, "10.244.249.3".parse().unwrap(), a.mac.unwrap())
        .unwrap();
    m.add_route(&Route::new(net("10.244.249.1/32")).dev(a.index))
        .unwrap();
    // ARP is redirected too, so the middle knows left's MAC statically.
    m.set_neighbour(a.index, "10.244.249.1".parse().unwrap(), leth.mac.unwrap())
        .unwrap();
    let ping = |to: &str| {
        Command::new("ip")
            .args([
                "netns", "exec", &left.name, "ping", "-c", "1", "-W", "2", to,
            ])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        ping("10.244.249.3"),
        "the passed address reaches the middle's own stack"
    );
    assert!(
        ping("10.244.249.2"),
        "everything else still crosses the cable"
    );
}

fn pings(from: &TempNs, to: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", &from.name, "ping", "-c", "1", "-W", "1", to,
        ])
        .output()
        .unwrap()
        .status
        .success()
}

/// The VLAN programs: both ends of a veth tag what they send and untag
/// what they receive, so IP works across; an end that expects another tag
/// drops everything, so nothing does.
#[test]
fn bpf_programs_tag_and_untag_frames() {
    use tweed_netlink::{Direction, bpf};
    let (a, b) = (TempNs::new("vla"), TempNs::new("vlb"));
    let mut spec = NewLink::new(
        "va",
        LinkKind::Veth(VethPeer {
            name: "vb".into(),
            mac: None,
            netns: Some(&b.ns),
        }),
    );
    spec.up = true;
    a.nl().create_link(&spec).unwrap();
    let tag = |ns: &TempNs, dev: &str, push: u16, pop: u16| {
        let mut nl = ns.nl();
        let l = nl.link_by_name(dev).unwrap().unwrap();
        nl.delete_clsact(l.index).unwrap();
        nl.ensure_clsact(l.index).unwrap();
        nl.ensure_clsact(l.index).unwrap();
        let p = bpf::load_vlan_push(push).unwrap();
        nl.add_bpf_filter(l.index, Direction::Egress, &p, &format!("push{push}"))
            .unwrap();
        let p = bpf::load_vlan_pop(pop).unwrap();
        nl.add_bpf_filter(l.index, Direction::Ingress, &p, &format!("pop{pop}"))
            .unwrap();
        assert_eq!(
            nl.bpf_filters(l.index, Direction::Egress).unwrap(),
            [format!("push{push}")]
        );
        assert_eq!(
            nl.bpf_filters(l.index, Direction::Ingress).unwrap(),
            [format!("pop{pop}")]
        );
    };
    for (ns, dev, addr) in [(&a, "va", "10.244.251.1/24"), (&b, "vb", "10.244.251.2/24")] {
        let mut nl = ns.nl();
        let l = nl.link_by_name(dev).unwrap().unwrap();
        nl.add_address(l.index, net(addr), true).unwrap();
        nl.set_link_up(l.index, true).unwrap();
    }
    assert!(pings(&a, "10.244.251.2"), "plain veth");
    tag(&a, "va", 100, 100);
    assert!(
        !pings(&a, "10.244.251.2"),
        "tagged one way only, yet IP worked"
    );
    tag(&b, "vb", 100, 100);
    assert!(
        pings(&a, "10.244.251.2"),
        "tagged and untagged at both ends"
    );
    tag(&b, "vb", 100, 200);
    assert!(
        !pings(&a, "10.244.251.2"),
        "b expects VLAN 200 but took 100"
    );
    let mut nl = b.nl();
    let vb = nl.link_by_name("vb").unwrap().unwrap();
    nl.delete_clsact(vb.index).unwrap();
    assert!(
        nl.bpf_filters(vb.index, Direction::Ingress)
            .unwrap()
            .is_empty()
    );
    nl.delete_clsact(vb.index).unwrap();
}
