//! tweedd's DHCP for guests, against a real client: busybox udhcpc in a
//! "guest" namespace, cabled to a "pod" namespace the way urunc cables a
//! guest (its tap's ingress redirected to the pod's eth0), with the pass
//! filter and link-local address `tweed urunc-hook` adds. The client must
//! get the pod's address, DNS servers, search domains and MTU; without the
//! pass filter its requests would leave by eth0 and nobody would answer.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tweed_guest::DhcpRecord;
use tweed_netlink::{NetNs, Netlink};
use tweed_testkit::{TestNs, run_ok};
use tweedd::guest_dhcp::GuestDhcp;

const SERVER: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);

/// Leaves the calling thread only the capabilities deploy/tweed.yaml gives
/// tweedd (capabilities are per thread): the server runs as it would in
/// the DaemonSet, where binding port 67 needs NET_BIND_SERVICE.
fn with_daemonset_capabilities() {
    use caps::{CapSet, Capability};
    let keep = [
        Capability::CAP_NET_ADMIN,
        Capability::CAP_SYS_ADMIN,
        Capability::CAP_BPF,
        Capability::CAP_NET_BIND_SERVICE,
    ]
    .into_iter()
    .collect();
    caps::set(None, CapSet::Effective, &keep).expect("drop the thread's capabilities");
}

/// Pod and guest namespaces: `tap0_urunc` in the pod is cabled to the
/// guest's eth0, and its ingress is redirected to the pod's eth0 (a veth
/// whose far end is in `node`), as urunc does.
fn cabled() -> (TestNs, TestNs, TestNs, u32) {
    let (pod, guest, node) = (
        TestNs::new("dhpod"),
        TestNs::new("dhguest"),
        TestNs::new("dhnode"),
    );
    run_ok(
        "ip",
        &[
            "-n",
            &pod.name,
            "link",
            "add",
            "tap0_urunc",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &guest.name,
        ],
    );
    run_ok(
        "ip",
        &[
            "-n", &pod.name, "link", "add", "eth0", "type", "veth", "peer", "name", "veth0",
            "netns", &node.name,
        ],
    );
    for (ns, dev) in [
        (&pod, "tap0_urunc"),
        (&pod, "eth0"),
        (&guest, "eth0"),
        (&node, "veth0"),
    ] {
        run_ok("ip", &["-n", &ns.name, "link", "set", dev, "up"]);
    }
    let ns = NetNs::named(&pod.name).expect("open the pod namespace");
    let mut nl = Netlink::in_netns(&ns).expect("netlink in the pod");
    let tap = nl.link_by_name("tap0_urunc").unwrap().expect("tap");
    let eth = nl.link_by_name("eth0").unwrap().expect("eth0");
    // urunc's redirect first (the kernel gives it priority 49152), then
    // what the hook adds.
    nl.add_ingress_qdisc(tap.index).unwrap();
    nl.add_redirect(tap.index, eth.index).unwrap();
    nl.add_address(
        tap.index,
        IpNet::V4(ipnet::Ipv4Net::new(SERVER, 32).unwrap()),
        true,
    )
    .unwrap();
    nl.add_pass_udp_dst_port(tap.index, 67, 2).unwrap();
    (pod, guest, node, tap.index)
}

fn record(pod: &TestNs, tap_index: u32) -> DhcpRecord {
    DhcpRecord {
        netns: pod.path().into(),
        tap: "tap0_urunc".into(),
        tap_index,
        server: SERVER,
        address: "10.244.2.7/24".parse().unwrap(),
        gateway: Some(Ipv4Addr::new(10, 244, 2, 1)),
        mtu: 1450,
        dns: tweed_guest::dns::parse_resolv_conf(
            "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
        ),
        hostname: Some("web".into()),
    }
}

/// Runs udhcpc once in `guest`; what its script saw on `bound`, as
/// key=value lines, or None when no lease came.
fn udhcpc(guest: &TestNs, dir: &Path) -> Option<String> {
    let out = dir.join("bound.env");
    let script = dir.join("script.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] || exit 0\nenv | grep -E '^(ip|subnet|router|dns|domain|search|mtu|serverid|lease|hostname)=' | sort >{}\n",
            out.display()
        ),
    )
    .unwrap();
    run_ok("chmod", &["0755", &script.display().to_string()]);
    let run = guest.exec(&[
        "busybox",
        "udhcpc",
        "-i",
        "eth0",
        "-f",
        "-q",
        "-n",
        "-t",
        "5",
        "-T",
        "1",
        "-O",
        "mtu",
        "-O",
        "search",
        "-s",
        &script.display().to_string(),
    ]);
    if !run.status.success() {
        eprintln!(
            "udhcpc: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        return None;
    }
    std::fs::read_to_string(out).ok()
}

#[test]
fn a_guest_gets_the_pods_address_dns_and_mtu_by_dhcp_and_a_gone_pods_record_goes() {
    let (pod, guest, _node, tap_index) = cabled();
    let records = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let rec = record(&pod, tap_index);
    let path = rec.write(records.path()).unwrap();

    let (stop, stop_rx) = std::sync::mpsc::channel();
    let server = GuestDhcp {
        dir: records.path().to_path_buf(),
    };
    let thread = std::thread::spawn(move || {
        with_daemonset_capabilities();
        server.run(stop_rx)
    });

    let lease = udhcpc(&guest, scratch.path()).expect("udhcpc got a lease from tweedd");
    for want in [
        "ip=10.244.2.7",
        "subnet=255.255.255.0",
        "router=10.244.2.1",
        "dns=10.96.0.10",
        "domain=default.svc.cluster.local",
        "search=default.svc.cluster.local svc.cluster.local cluster.local",
        "mtu=1450",
        "serverid=169.254.77.1",
        "lease=4294967295",
        "hostname=web",
    ] {
        assert!(
            lease.lines().any(|l| l.trim() == want),
            "the guest's lease lacks {want:?}:\n{lease}"
        );
    }

    // The pod goes: so does its record, and nothing answers any more.
    drop(pod);
    let start = Instant::now();
    while path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the deleted pod's record {} is still there",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.send(()).unwrap();
    thread.join().expect("the DHCP thread ended cleanly");
}

#[test]
fn without_a_record_the_guests_requests_go_unanswered() {
    let (_pod, guest, _node, _) = cabled();
    let records = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (stop, stop_rx) = std::sync::mpsc::channel();
    let server = GuestDhcp {
        dir: records.path().to_path_buf(),
    };
    let thread = std::thread::spawn(move || server.run(stop_rx));
    assert!(
        udhcpc(&guest, scratch.path()).is_none(),
        "a lease came though no record asked for one"
    );
    stop.send(()).unwrap();
    thread.join().unwrap();
}
