//! Pod-to-pod throughput across two lab nodes, per backend, against the
//! same kernel devices configured by hand with `ip` (the way flannel
//! would) and against the raw underlay — all measured in one run, with the
//! repetitions interleaved.
//!
//! Run as root: `sudo cargo bench -p tweed-lab --bench throughput`
//! (`cargo build --release --workspace` first, with the same
//! CARGO_TARGET_DIR). Knobs: `TWEED_BENCH_REPS` (repetitions per path,
//! default 7), `TWEED_BENCH_SECS` (seconds per iperf3 run, default 5),
//! `TWEED_BENCH_IPMASQ=1` (run the labs' agents with `--ip-masq`; off by
//! default because the hand-built nodes have no nftables rules).
//! See docs/benchmarks.md.
//!
//! Paths, each one TCP stream with iperf3 (server in one namespace, client
//! in another):
//! - `tweed <backend>`: a 2-node lab per backend (vxlan, srv6, host-gw;
//!   file store), pod n1/p1 to pod n2/p1;
//! - `hand <backend>`: a copy of the lab's topology built with `ip`
//!   (underlay bridge, two node namespaces cabled by veth, a bridge and a
//!   single-queue veth pod per node, the same MTUs), with the overlay
//!   configured as flannel does it: VXLAN device `flannel.1` (VNI 1, port
//!   8472, nolearning, one permanent neighbour, one FDB entry, one onlink
//!   route per peer); SRv6 (seg6 encap route to the peer's End.DX4 SID, a
//!   local `seg6local End.DX4` SID); host-gw (one plain route);
//! - `underlay`: node n1 to node n2 of the host-gw lab, their eth0
//!   addresses (no pods, no overlay).
//!
//! Each round runs every path once; the paths that are compared run back
//! to back, and every other round runs in reverse order.
//! The bench fails only if a setup step or an iperf3 run fails.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use common::*;
use serde_json::Value;
use tweed_lab::{Lab, LabSpec};

const PORT: u16 = 5201;

/// One measured path: a client namespace, a server namespace (running an
/// iperf3 server), the address the client connects to.
struct Path {
    name: String,
    client_ns: String,
    server_ns: String,
    server_ip: String,
    gbps: Vec<f64>,
    retrans: Vec<f64>,
    cpu_sender: Vec<f64>,
    cpu_receiver: Vec<f64>,
}

impl Path {
    fn new(name: &str, client_ns: &str, server_ns: &str, server_ip: &str) -> Path {
        Path {
            name: name.into(),
            client_ns: client_ns.into(),
            server_ns: server_ns.into(),
            server_ip: server_ip.into(),
            gbps: vec![],
            retrans: vec![],
            cpu_sender: vec![],
            cpu_receiver: vec![],
        }
    }
}

fn main() {
    if filtered_out("throughput") {
        return;
    }
    require_root("throughput");
    catch_interrupts();
    let reps = env_usize("TWEED_BENCH_REPS", 7).max(1);
    let secs = env_usize("TWEED_BENCH_SECS", 5).max(2);
    let ip_masq = std::env::var("TWEED_BENCH_IPMASQ").is_ok_and(|v| v == "1");
    let binaries = binaries();
    let tag = std::process::id() % 10000;

    println!("throughput: one TCP stream (iperf3 -t {secs} -O 1), pod to pod across two nodes");
    println!("{}", machine_line());
    println!("{}", binaries_line(&binaries));
    println!(
        "tools: {}; {}",
        tool_version(&["iperf3", "--version"]),
        tool_version(&["ip", "-V"])
    );
    println!("date: {}", today());

    let mut scratch = Scratch::default();
    let mut labs: Vec<LabGuard> = Vec::new();
    let mut paths: Vec<Path> = Vec::new();

    // The labs, one per backend.
    let t = Instant::now();
    for (backend, short) in [("vxlan", "vx"), ("srv6", "s6"), ("host-gw", "gw")] {
        check_interrupted();
        let spec = LabSpec {
            name: format!("tp{tag}{short}"),
            nodes: 2,
            backend: backend.into(),
            store: "file".into(),
            pods_per_node: 1,
            ip_masq,
            ipv6: false,
            net_conf_overrides: Default::default(),
            binaries: binaries.clone(),
        };
        let lab = Lab::up(&spec).unwrap_or_else(|e| panic!("lab up ({backend}): {e}"));
        let guard = LabGuard(Some(lab));
        let lab = guard.lab();
        let (n1, n2) = (&lab.state.nodes[0], &lab.state.nodes[1]);
        let server_ip = n2.pods[0].ipv4.clone().expect("pod address");
        paths.push(Path::new(
            &format!("tweed {backend}"),
            &n1.pods[0].ns,
            &n2.pods[0].ns,
            &server_ip,
        ));
        if backend == "host-gw" {
            paths.push(Path::new("underlay", &n1.ns, &n2.ns, &n2.underlay_ipv4));
        }
        labs.push(guard);
    }
    // The hand-built copies.
    for (backend, short) in [("vxlan", "vx"), ("srv6", "s6"), ("host-gw", "gw")] {
        check_interrupted();
        let p = hand_built(&mut scratch, &format!("tph{tag}{short}"), backend);
        paths.push(p);
    }
    println!(
        "setup: 3 labs and 3 hand-built topologies in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // What the tweed and hand-built paths are made of, side by side.
    let lab_of = |b: &str| {
        labs.iter()
            .find(|l| l.lab().state.backend == b)
            .expect("lab")
            .lab()
    };
    compare_state(lab_of("vxlan"), &format!("tph{tag}vx"), "vxlan");
    compare_state(lab_of("srv6"), &format!("tph{tag}s6"), "srv6");
    compare_state(lab_of("host-gw"), &format!("tph{tag}gw"), "host-gw");

    // iperf3 servers.
    for p in &paths {
        let pid = scratch.spawn(cmd_in(
            &p.server_ns,
            &["iperf3", "-s", "-p", &PORT.to_string()],
        ));
        wait_until(10.0, &format!("iperf3 server in {}", p.server_ns), || {
            listening(pid, PORT)
        });
    }

    // Every path must carry traffic before anything is timed.
    for p in &paths {
        let out = cmd_in(&p.client_ns, &["ping", "-c", "1", "-W", "2", &p.server_ip])
            .output()
            .expect("ping");
        assert!(
            out.status.success(),
            "{}: {} does not answer ping from {}",
            p.name,
            p.server_ip,
            p.client_ns
        );
    }

    println!(
        "load average before the timed region: {}; {} rounds x {} paths x {} s",
        loadavg(),
        reps,
        paths.len(),
        secs
    );
    // Compared paths run back to back; every other round in reverse order,
    // so each side of a pair goes first equally often.
    let order = [
        "underlay",
        "tweed host-gw",
        "hand host-gw",
        "tweed vxlan",
        "hand vxlan",
        "tweed srv6",
        "hand srv6",
    ];
    let seq0: Vec<usize> = order.iter().map(|n| index(&paths, n)).collect();
    for round in 0..reps {
        let mut seq = seq0.clone();
        if round % 2 == 1 {
            seq.reverse();
        }
        for i in seq {
            check_interrupted();
            let r = iperf(&paths[i], secs);
            let p = &mut paths[i];
            p.gbps.push(r.gbps);
            p.retrans.push(r.retransmits);
            p.cpu_sender.push(r.cpu_sender);
            p.cpu_receiver.push(r.cpu_receiver);
        }
        let line: Vec<String> = seq0
            .iter()
            .map(|&i| {
                let p = &paths[i];
                format!(
                    "{} {:.2}",
                    p.name,
                    p.gbps.last().copied().unwrap_or(f64::NAN)
                )
            })
            .collect();
        println!("round {}: {}", round + 1, line.join(", "));
    }
    println!("load average after: {}", loadavg());

    println!();
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>10} {:>9} {:>9}",
        "path", "median", "min", "max", "retrans", "cpu snd", "cpu rcv"
    );
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>10} {:>9} {:>9}",
        "", "Gbit/s", "Gbit/s", "Gbit/s", "(median)", "% (med)", "% (med)"
    );
    let mut med: BTreeMap<&str, f64> = BTreeMap::new();
    for name in order {
        let p = paths.iter().find(|p| p.name == name).expect("path");
        med.insert(name, median(&p.gbps));
        println!(
            "{:<16} {:>8.2} {:>8.2} {:>8.2} {:>10.0} {:>9.0} {:>9.0}",
            p.name,
            median(&p.gbps),
            min(&p.gbps),
            max(&p.gbps),
            median(&p.retrans),
            median(&p.cpu_sender),
            median(&p.cpu_receiver)
        );
    }
    println!();
    println!("ratios of medians [median of the per-round ratios of the same pair]:");
    for (a, b, target) in [
        ("tweed vxlan", "hand vxlan", Some(0.95)),
        ("tweed srv6", "hand srv6", Some(0.95)),
        ("tweed host-gw", "underlay", Some(0.9)),
        ("hand host-gw", "underlay", None),
        ("tweed host-gw", "hand host-gw", None),
        ("hand vxlan", "underlay", None),
        ("hand srv6", "underlay", None),
    ] {
        let r = med[a] / med[b];
        let (pa, pb) = (&paths[index(&paths, a)].gbps, &paths[index(&paths, b)].gbps);
        let per_round: Vec<f64> = pa.iter().zip(pb).map(|(x, y)| x / y).collect();
        let pr = median(&per_round);
        match target {
            Some(t) => println!(
                "  {a:<14} / {b:<13} {r:.3} [{pr:.3}]   target >= {t}: {}",
                yes_no(r >= t)
            ),
            None => println!("  {a:<14} / {b:<13} {r:.3} [{pr:.3}]   (for reference)"),
        }
    }

    scratch.cleanup();
    drop(labs);
    println!("cleanup: labs down, hand-built namespaces deleted, iperf3 servers stopped");
}

fn index(paths: &[Path], name: &str) -> usize {
    paths.iter().position(|p| p.name == name).expect("path")
}

struct IperfResult {
    gbps: f64,
    retransmits: f64,
    cpu_sender: f64,
    cpu_receiver: f64,
}

fn iperf(p: &Path, secs: usize) -> IperfResult {
    let mut argv: Vec<String> = vec!["iperf3".into()];
    for a in [
        "-c",
        &p.server_ip,
        "-p",
        &PORT.to_string(),
        "-t",
        &secs.to_string(),
        "-O",
        "1",
        "-J",
    ] {
        argv.push(a.to_string());
    }
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = cmd_in(&p.client_ns, &argv).output().expect("run iperf3");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: iperf3 output is not JSON ({e}): {text}", p.name));
    if !out.status.success() || v.get("error").is_some() {
        panic!("{}: iperf3 failed: {}", p.name, v["error"]);
    }
    let end = &v["end"];
    IperfResult {
        gbps: end["sum_received"]["bits_per_second"]
            .as_f64()
            .expect("bps")
            / 1e9,
        retransmits: end["sum_sent"]["retransmits"].as_f64().unwrap_or(f64::NAN),
        cpu_sender: end["cpu_utilization_percent"]["host_total"]
            .as_f64()
            .unwrap_or(f64::NAN),
        cpu_receiver: end["cpu_utilization_percent"]["remote_total"]
            .as_f64()
            .unwrap_or(f64::NAN),
    }
}

/// True once `pid` has a listening TCP socket on `port` (any family).
fn listening(pid: i32, port: u16) -> bool {
    let want = format!(":{port:04X} ");
    ["tcp", "tcp6"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{f}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && format!("{} ", cols[1]).ends_with(&want) && cols[3] == "0A"
            })
    })
}

/// Builds, with `ip` only, a copy of a 2-node lab for `backend` under the
/// namespace prefix `prefix` (`<prefix>.ul`, `.n1`, `.n2`, `.n1.p`,
/// `.n2.p`), configured the way flannel configures its backends. Returns
/// the path from pod 1 to pod 2.
fn hand_built(s: &mut Scratch, prefix: &str, backend: &str) -> Path {
    let ul = s.netns(&format!("{prefix}.ul"));
    // The underlay switch, as the lab makes it.
    ipn(&ul, "link add ul0 type bridge");
    ipn(&ul, "link set ul0 up");
    ipn(&ul, "addr add 198.18.0.254/24 dev ul0");
    ipn(&ul, "addr add fd00:198::fe/64 dev ul0 nodad");
    let pod_mtu = match backend {
        "vxlan" => 1450,
        "srv6" => 1436,
        _ => 1500,
    };
    let mut nodes = Vec::new();
    for i in 1..=2u8 {
        let node = s.netns(&format!("{prefix}.n{i}"));
        ipn(
            &ul,
            &format!("link add n{i} type veth peer name eth0 netns {node}"),
        );
        ipn(&ul, &format!("link set n{i} master ul0 up"));
        ipn(&node, &format!("addr add 198.18.0.{i}/24 dev eth0"));
        ipn(&node, &format!("addr add fd00:198::{i}/64 dev eth0 nodad"));
        ipn(&node, "link set eth0 up");
        ipn(&node, "route add default via 198.18.0.254 dev eth0");
        ipn(&node, "-6 route add default via fd00:198::fe dev eth0");
        sysctl(&node, "net/ipv4/ip_forward", "1");
        sysctl(&node, "net/ipv6/conf/all/forwarding", "1");
        // The pod: a bridge with the gateway address, a single-queue veth
        // (as tweed's plugin makes it), the pod's address and default route.
        let pod = s.netns(&format!("{prefix}.n{i}.p"));
        ipn(
            &node,
            &format!("link add cni0 mtu {pod_mtu} type bridge stp_state 0 forward_delay 0"),
        );
        ipn(&node, &format!("addr add 10.244.{i}.1/24 dev cni0"));
        ipn(&node, "link set cni0 up");
        ipn(
            &node,
            &format!(
                "link add vethp mtu {pod_mtu} numtxqueues 1 numrxqueues 1 type veth \
                 peer name eth0 netns {pod} mtu {pod_mtu} numtxqueues 1 numrxqueues 1"
            ),
        );
        ipn(&node, "link set vethp master cni0 up");
        // Hairpin on the pod's port, as tweed's plugin (and flannel's
        // delegate, the bridge plugin with hairpinMode) sets it.
        ipn(&node, "link set vethp type bridge_slave hairpin on");
        ipn(&pod, &format!("addr add 10.244.{i}.2/24 dev eth0"));
        ipn(&pod, "link set eth0 up");
        ipn(
            &pod,
            &format!("route add default via 10.244.{i}.1 dev eth0"),
        );
        nodes.push(node);
    }
    let mac = |i: u8| format!("02:42:0a:f4:{i:02x}:00");
    for i in 1..=2u8 {
        let node = &nodes[usize::from(i - 1)];
        let j = 3 - i;
        match backend {
            "vxlan" => {
                ipn(
                    node,
                    &format!(
                        "link add flannel.1 address {} mtu 1450 type vxlan id 1 local 198.18.0.{i} dev eth0 dstport 8472 nolearning",
                        mac(i)
                    ),
                );
                ipn(node, &format!("addr add 10.244.{i}.0/32 dev flannel.1"));
                ipn(node, "link set flannel.1 up");
                ipn(
                    node,
                    &format!(
                        "neigh replace 10.244.{j}.0 lladdr {} dev flannel.1 nud permanent",
                        mac(j)
                    ),
                );
                run(Command::new("bridge").args([
                    "-n",
                    node,
                    "fdb",
                    "append",
                    &mac(j),
                    "dev",
                    "flannel.1",
                    "dst",
                    &format!("198.18.0.{j}"),
                    "self",
                    "permanent",
                ]));
                ipn(
                    node,
                    &format!("route add 10.244.{j}.0/24 via 10.244.{j}.0 dev flannel.1 onlink"),
                );
            }
            "srv6" => {
                sysctl(node, "net/ipv6/conf/all/seg6_enabled", "1");
                sysctl(node, "net/ipv6/conf/eth0/seg6_enabled", "1");
                ipn(
                    node,
                    &format!(
                        "-6 route add fd00:5:0:{i}::4/128 encap seg6local action End.DX4 nh4 0.0.0.0 dev eth0"
                    ),
                );
                ipn(
                    node,
                    &format!("-6 route add fd00:5:0:{j}::/64 via fd00:198::{j} dev eth0"),
                );
                ipn(
                    node,
                    &format!(
                        "route add 10.244.{j}.0/24 encap seg6 mode encap segs fd00:5:0:{j}::4 dev eth0 mtu 1436"
                    ),
                );
            }
            _ => {
                ipn(
                    node,
                    &format!("route add 10.244.{j}.0/24 via 198.18.0.{j} dev eth0"),
                );
            }
        }
    }
    Path::new(
        &format!("hand {backend}"),
        &format!("{prefix}.n1.p"),
        &format!("{prefix}.n2.p"),
        "10.244.2.2",
    )
}

fn sysctl(ns: &str, key: &str, value: &str) {
    let handle = tweed_netlink::NetNs::named(ns).expect("netns");
    let parts: Vec<&str> = key.split('/').collect();
    handle
        .run(|| tweed_netlink::sysctl::write(&parts, value))
        .expect("enter netns")
        .unwrap_or_else(|e| panic!("sysctl {key} in {ns}: {e}"));
}

// ---------------------------------------------------------------- comparing the two sides

/// `ip -d -j link show dev DEV` in `ns`, flattened to `path = value`.
fn link_params(ns: &str, dev: &str) -> BTreeMap<String, String> {
    let out = ipn(ns, &format!("-d -j link show dev {dev}"));
    let v: Value = serde_json::from_str(&out).expect("ip -j");
    let mut flat = BTreeMap::new();
    flatten("", &v[0], &mut flat);
    flat
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        Value::Array(a) if a.iter().all(|x| !x.is_object()) => {
            let s: Vec<String> = a.iter().map(|x| x.to_string()).collect();
            out.insert(prefix.to_string(), s.join(","));
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.to_string());
        }
    }
}

/// Keys that name or number a device rather than configure it.
fn identity_key(k: &str) -> bool {
    [
        "ifindex",
        "ifname",
        "address",
        "broadcast",
        "link",
        "link_index",
        "link_netnsid",
        "operstate",
        "master",
        "ifalias",
        "parentbus",
        "parentdev",
        "perm_address",
    ]
    .contains(&k)
        || k.starts_with("linkinfo.info_slave_data.")
            && ["id", "no", "designated_", "root_id", "bridge_id", "port_"]
                .iter()
                .any(|p| k.starts_with(&format!("linkinfo.info_slave_data.{p}")))
        || k.starts_with("linkinfo.info_data.")
            && [
                "bridge_id",
                "root_id",
                "designated",
                "hello_timer",
                "tcn_timer",
                "topology_change_timer",
                "gc_timer",
                "vlan_default_pvid",
                "group_addr",
                "multicast_router",
                "mcast_",
            ]
            .iter()
            .any(|p| k.starts_with(&format!("linkinfo.info_data.{p}")))
        || k.ends_with("timer")
}

/// Prints the parameters in which two devices differ.
fn compare_link(what: &str, a: (&str, &str), b: (&str, &str)) {
    let pa = link_params(a.0, a.1);
    let pb = link_params(b.0, b.1);
    let mut diffs = Vec::new();
    for k in pa
        .keys()
        .chain(pb.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if identity_key(k) {
            continue;
        }
        let (x, y) = (pa.get(k), pb.get(k));
        if x != y {
            diffs.push(format!(
                "{k}: {} vs {}",
                x.map(String::as_str).unwrap_or("-"),
                y.map(String::as_str).unwrap_or("-")
            ));
        }
    }
    if diffs.is_empty() {
        println!(
            "  {what:<22} same parameters (mtu {})",
            pa.get("mtu").map(String::as_str).unwrap_or("?")
        );
    } else {
        println!("  {what:<22} differ: {}", diffs.join("; "));
    }
}

/// The host end of a pod's veth: the one port of the node bridge.
fn bridge_port(ns: &str, bridge: &str) -> String {
    let out = ipn(ns, &format!("-j link show master {bridge}"));
    let v: Value = serde_json::from_str(&out).expect("ip -j");
    v[0]["ifname"].as_str().expect("a bridge port").to_string()
}

fn route_line(ns: &str, family: &str, dst: &str) -> String {
    let out = ipn(ns, &format!("{family} -d route show {dst}"));
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prints how tweed's node 1 and the hand-built node 1 differ.
fn compare_state(lab: &Lab, hand: &str, backend: &str) {
    let n1 = &lab.state.nodes[0];
    let n2 = &lab.state.nodes[1];
    let hn1 = format!("{hand}.n1");
    println!(
        "{backend}: tweed (lab {}) vs hand-built ({hand}.*), node 1 and its pod:",
        lab.state.name
    );
    compare_link("underlay eth0", (&n1.ns, "eth0"), (&hn1, "eth0"));
    compare_link("node bridge", (&n1.ns, "tweed0"), (&hn1, "cni0"));
    compare_link(
        "host veth",
        (&n1.ns, &bridge_port(&n1.ns, "tweed0")),
        (&hn1, "vethp"),
    );
    compare_link(
        "pod eth0",
        (&n1.pods[0].ns, "eth0"),
        (&format!("{hand}.n1.p"), "eth0"),
    );
    let peer_subnet = lease_subnet(lab, &n2.name);
    match backend {
        "vxlan" => {
            compare_link("vxlan device", (&n1.ns, "tweed.1"), (&hn1, "flannel.1"));
            println!("  route tweed: {}", route_line(&n1.ns, "-4", &peer_subnet));
            println!("  route hand:  {}", route_line(&hn1, "-4", "10.244.2.0/24"));
        }
        "srv6" => {
            println!("  route tweed: {}", route_line(&n1.ns, "-4", &peer_subnet));
            println!("  route hand:  {}", route_line(&hn1, "-4", "10.244.2.0/24"));
            let out = ipn(&n1.ns, "-6 route show proto 77");
            for l in out.lines() {
                println!(
                    "  route tweed: {}",
                    l.split_whitespace().collect::<Vec<_>>().join(" ")
                );
            }
            for dst in ["fd00:5:0:1::4", "fd00:5:0:2::/64"] {
                println!("  route hand:  {}", route_line(&hn1, "-6", dst));
            }
        }
        _ => {
            println!("  route tweed: {}", route_line(&n1.ns, "-4", &peer_subnet));
            println!("  route hand:  {}", route_line(&hn1, "-4", "10.244.2.0/24"));
        }
    }
}

/// The subnet (CIDR) a lab node leased.
fn lease_subnet(lab: &Lab, node: &str) -> String {
    let key = lab.lease_of(node).expect("lease");
    let (net, len) = key
        .split('&')
        .next()
        .unwrap()
        .rsplit_once('-')
        .expect("key");
    format!("{net}/{len}")
}
