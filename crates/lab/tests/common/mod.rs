//! Shared helpers for lab tests: a lab that tears itself down, built from
//! the workspace's own binaries.

#![allow(dead_code)]

pub mod capture;
pub mod flannel;
pub mod raw;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tweed_lab::{Binaries, Lab, LabSpec};
use tweed_netlink::NetNs;

/// `target/<profile>/`, where cargo put tweedd and tweed.
pub fn binaries() -> Binaries {
    let exe = std::env::current_exe().expect("test exe");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let b = Binaries {
        tweedd: profile_dir.join("tweedd"),
        plugin: profile_dir.join("tweed"),
        etcd: PathBuf::from("/usr/bin/etcd"),
    };
    for p in [&b.tweedd, &b.plugin, &b.etcd] {
        assert!(
            p.is_file(),
            "{} missing: build the workspace first (cargo build --workspace) and install etcd-server (scripts/install-deps.sh)",
            p.display()
        );
    }
    b
}

/// A lab's spec with a name unique to this test process: one pod per
/// node, masquerade on, IPv4, one underlay subnet, namespace nodes.
pub fn spec(tag: &str, nodes: usize, backend: &str, store: &str) -> LabSpec {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "lab tests must run as root");
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t{tag}{}x{}",
        std::process::id() % 100000,
        N.fetch_add(1, Ordering::SeqCst)
    );
    LabSpec {
        name,
        nodes,
        backend: backend.into(),
        store: store.into(),
        pods_per_node: 1,
        ip_masq: true,
        ipv6: false,
        underlay_subnets: 1,
        net_conf_overrides: Default::default(),
        vm_nodes: Vec::new(),
        vm_options: Default::default(),
        binaries: binaries(),
    }
}

/// A lab removed when dropped, with a name unique to this test process.
pub struct TestLab {
    pub lab: Option<Lab>,
}

impl TestLab {
    pub fn up(tag: &str, nodes: usize, backend: &str, store: &str) -> TestLab {
        TestLab::up_with(tag, nodes, backend, store, |_| {})
    }

    pub fn up_with(
        tag: &str,
        nodes: usize,
        backend: &str,
        store: &str,
        tweak: impl FnOnce(&mut LabSpec),
    ) -> TestLab {
        let mut spec = spec(tag, nodes, backend, store);
        tweak(&mut spec);
        let lab = Lab::up(&spec).unwrap_or_else(|e| panic!("lab up ({backend}, {store}): {e}"));
        TestLab { lab: Some(lab) }
    }

    pub fn lab(&self) -> &Lab {
        self.lab.as_ref().expect("lab")
    }

    pub fn lab_mut(&mut self) -> &mut Lab {
        self.lab.as_mut().expect("lab")
    }

    /// IPv4 address of pod `p1` on node `node`.
    pub fn pod_ip(&self, node: &str) -> IpAddr {
        let n = self.lab().state.node(node).expect("node");
        n.pods[0]
            .ipv4
            .as_ref()
            .expect("pod ipv4")
            .parse()
            .expect("ip")
    }

    /// The names of the lab's nodes, in order.
    pub fn node_names(&self) -> Vec<String> {
        self.lab()
            .state
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    pub fn pod_ns(&self, node: &str) -> NetNs {
        let n = self.lab().state.node(node).expect("node");
        NetNs::named(&n.pods[0].ns).expect("pod ns")
    }

    /// Runs `ip -j ...` in a node namespace and parses the output.
    pub fn ip_json(&self, target: &str, args: &[&str]) -> serde_json::Value {
        let mut argv = vec!["ip", "-j"];
        argv.extend_from_slice(args);
        let out = self.lab().exec_output(target, &argv).expect("ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return serde_json::Value::Array(vec![]);
        }
        serde_json::from_str(&text).expect("ip json")
    }

    pub fn logs(&self) -> String {
        self.lab().agent_logs()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Some(lab) = self.lab.take() {
            lab.down();
        }
    }
}

/// A TCP server in `ns` that reads everything a client sends, then answers
/// with the number of bytes and the peer address it saw.
pub fn tcp_sink(ns: &NetNs, addr: SocketAddr) -> std::thread::JoinHandle<(usize, SocketAddr)> {
    let listener = ns
        .run(|| TcpListener::bind(addr))
        .expect("enter ns")
        .unwrap_or_else(|e| panic!("listen on {addr}: {e}"));
    std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().expect("accept");
        let mut total = 0;
        let mut buf = vec![0u8; 65536];
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(_) => break,
            }
        }
        (total, peer)
    })
}

/// Sends `bytes` from `ns` to `addr`.
pub fn tcp_send(ns: &NetNs, addr: SocketAddr, bytes: usize) -> std::io::Result<()> {
    let mut s = ns
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(3)))
        .expect("enter ns")?;
    let chunk = vec![0x5au8; 65536];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n])?;
        left -= n;
    }
    s.shutdown(std::net::Shutdown::Write)
}

/// `etcdctl <args>` against the lab's etcd, from the underlay namespace;
/// panics unless it succeeds.
pub fn etcdctl(lab: &TestLab, args: &[&str]) -> std::process::Output {
    let endpoint = format!(
        "http://{}:{}",
        tweed_lab::topology::ROUTER_IPV4,
        tweed_lab::ETCD_PORT
    );
    let mut argv = vec!["etcdctl", "--endpoints", &endpoint];
    argv.extend_from_slice(args);
    let out = lab.lab().exec_output("underlay", &argv).expect("etcdctl");
    assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
    out
}

/// The keys under `prefix` in the lab's etcd, sorted.
pub fn etcd_keys(lab: &TestLab, prefix: &str) -> Vec<String> {
    let mut keys = lab.lab().etcd_keys(prefix).expect("etcdctl get");
    keys.sort();
    keys
}

/// The (key, value) pairs under `prefix` in the lab's etcd, sorted by key.
pub fn etcd_entries(lab: &TestLab, prefix: &str) -> Vec<(String, String)> {
    let mut entries = lab.lab().etcd_entries(prefix).expect("etcdctl get");
    entries.sort();
    entries
}

/// `count` pings at 20 a second from the lab target `from` (`n1/p1`) to
/// `target`, running while the test goes on; its output says what was lost.
pub fn ping_in_background(
    lab: &TestLab,
    from: &str,
    target: &str,
    count: u32,
) -> std::process::Child {
    let argv = [
        "ping",
        "-q",
        "-i",
        "0.05",
        "-c",
        &count.to_string(),
        "-W",
        "3",
        target,
    ]
    .map(String::from);
    lab.lab()
        .command(from, &argv)
        .expect("ping command")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start ping")
}

/// Polls `f` until true; false if it never was within `secs`.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Polls `f` until true or panics after `secs` with `what`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An endpoint on layer-2 segment `segment`: a namespace of its own,
/// cabled by a veth (`eth1` inside) to the segment bridge of `node`, with
/// `addr` (a CIDR) assigned by hand.
pub fn segment_endpoint(
    lab: &TestLab,
    node: &str,
    segment: &str,
    tag: &str,
    addr: &str,
) -> tweed_testkit::netns::TestNs {
    let ep = tweed_testkit::netns::TestNs::new(tag);
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
        &format!("link set {host_end} master tws-{segment} up"),
    );
    ip(&ep.name, "link set eth1 up");
    ip(&ep.name, &format!("addr add {addr} dev eth1"));
    ep
}

/// A lab made by `tweedctl lab up --topology` from a file's text, taken
/// down (`tweedctl lab down`) when dropped.
pub struct TopologyLab {
    pub name: String,
    /// What `lab up` printed.
    pub output: String,
    tweedctl: PathBuf,
    _dir: tempfile::TempDir,
}

impl TopologyLab {
    /// Runs `tweedctl` with `args` (e.g. `lab pod ...`), whatever it says.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(&self.tweedctl)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `tweedctl` with `args`; panics when it fails.
    pub fn tweedctl(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tweedctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TopologyLab {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.tweedctl)
            .args(["lab", "down", "--name", &self.name])
            .output();
    }
}

/// `tweedctl lab up --name <name> --topology <a file holding yaml>`; panics
/// (after taking the lab down) when `up` fails.
pub fn topology_lab(name: &str, yaml: &str) -> TopologyLab {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topo.yaml");
    std::fs::write(&file, yaml).unwrap();
    let tweedctl = binaries().plugin.with_file_name("tweedctl");
    let out = std::process::Command::new(&tweedctl)
        .args(["lab", "up", "--name", name, "--topology"])
        .arg(&file)
        .output()
        .unwrap();
    let lab = TopologyLab {
        name: name.to_string(),
        output: String::from_utf8_lossy(&out.stdout).into_owned(),
        tweedctl,
        _dir: dir,
    };
    assert!(
        out.status.success(),
        "lab up --topology: {}{}",
        lab.output,
        String::from_utf8_lossy(&out.stderr)
    );
    lab
}

/// The FDB of segment VNI `vni`'s device on `node`: (MAC, destination).
pub fn segment_fdb(lab: &TestLab, node: &str, vni: u32) -> Vec<(String, String)> {
    let dev = format!("twx.{vni}");
    let out = lab
        .lab()
        .exec_output(node, &["bridge", "-j", "fdb", "show", "dev", &dev])
        .expect("bridge");
    let fdb: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    fdb.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["mac"].as_str()?.to_string(),
                e["dst"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The nodes segment `vni`'s device on `node` floods to (all-zero MAC
/// entries).
pub fn segment_floods(lab: &TestLab, node: &str, vni: u32) -> Vec<String> {
    segment_fdb(lab, node, vni)
        .into_iter()
        .filter(|(mac, _)| mac == "00:00:00:00:00:00")
        .map(|(_, dst)| dst)
        .collect()
}

/// `node`'s underlay IPv4 address, without prefix.
pub fn underlay_ip(lab: &TestLab, node: &str) -> String {
    let n = lab.lab().state.node(node).unwrap();
    n.underlay_ipv4.split('/').next().unwrap().to_string()
}

/// Waits until segment `vni` floods from every node to every other: the
/// agents have seen each other's leases (lab readiness does not wait for
/// that, so a test that sends across a segment right after `up` waits
/// here first).
pub fn wait_segment_meshed(lab: &TestLab, vni: u32) {
    let nodes = lab.node_names();
    for node in &nodes {
        let mut want: Vec<String> = nodes
            .iter()
            .filter(|n| *n != node)
            .map(|n| underlay_ip(lab, n))
            .collect();
        want.sort();
        wait_until(
            10,
            &format!("{node}'s flooding entries of VNI {vni}"),
            || {
                let mut have = segment_floods(lab, node, vni);
                have.sort();
                have == want
            },
        );
    }
}

/// Pings `addr` from named namespace `ns`, one echo per try, for up to
/// `secs`: a busy machine (the suite runs labs and QEMU guests side by
/// side) can lose a first ARP exchange; a broken path fails every try.
pub fn ping_from(ns: &str, addr: &str, secs: u64) -> bool {
    wait_for(secs, || {
        std::process::Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", addr])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A segment as every node sees it, for failure messages: the VXLAN
/// device's FDB (MAC → VTEP) and the bridge's learnt stations.
pub fn segment_state(lab: &TestLab, vni: u32, bridge: &str) -> String {
    let mut text = String::new();
    for n in &lab.lab().state.nodes {
        let fdb = segment_fdb(lab, &n.name, vni);
        let learnt = lab
            .lab()
            .exec_output(&n.name, &["bridge", "fdb", "show", "br", bridge, "dynamic"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        text.push_str(&format!(
            "{}: twx.{vni} fdb {fdb:?}\n{bridge} learnt:\n{learnt}",
            n.name
        ));
    }
    text
}

/// Interface `ifname` in named namespace `ns`, as the kernel reports it.
pub fn link(ns: &str, ifname: &str) -> Option<tweed_netlink::Link> {
    let ns = NetNs::named(ns).ok()?;
    tweed_netlink::Netlink::in_netns(&ns)
        .ok()?
        .link_by_name(ifname)
        .ok()?
}

/// Full matrix by ICMP, then a 4 MB TCP transfer n1/p1 → n2/p1 whose
/// receiver sees n1/p1's own address.
pub fn pods_talk(lab: &TestLab) {
    pods_talk_anywhere(lab);
    let dst = SocketAddr::new(lab.pod_ip("n2"), 5001);
    let sink = tcp_sink(&lab.pod_ns("n2"), dst);
    tcp_send(&lab.pod_ns("n1"), dst, 4 << 20).expect("TCP transfer across nodes");
    let (bytes, peer) = sink.join().expect("sink");
    assert_eq!(bytes, 4 << 20);
    assert_eq!(
        peer.ip(),
        lab.pod_ip("n1"),
        "pod-to-pod traffic must keep the pod's source address"
    );
}

/// Every pod pings every other pod, on whichever kernel each runs (VM
/// nodes' pods too).
pub fn pods_talk_anywhere(lab: &TestLab) {
    let m = lab.lab().check().expect("check");
    assert!(m.all_ok(), "reachability:\n{}\n{}", m.render(), lab.logs());
}

/// The underlay namespace plays "outside": it has no route to pods, so a
/// pod reaches it only masqueraded behind its node's address.
pub fn pods_reach_outside_masqueraded(lab: &TestLab) {
    let outside = NetNs::named(&lab.lab().state.underlay_ns).expect("underlay ns");
    let addr: SocketAddr = "198.18.0.254:5002".parse().unwrap();
    let sink = tcp_sink(&outside, addr);
    tcp_send(&lab.pod_ns("n1"), addr, 1 << 16).expect("pod to outside");
    let (bytes, peer) = sink.join().expect("sink");
    assert_eq!(bytes, 1 << 16);
    let node_ip: IpAddr = lab
        .lab()
        .state
        .node("n1")
        .unwrap()
        .underlay_ipv4
        .parse()
        .unwrap();
    assert_eq!(
        peer.ip(),
        node_ip,
        "outside must see the node's address, not the pod's"
    );
}

/// Dual-stack pods: the matrix (both families), then a 1 MB IPv6 TCP
/// transfer n1/p1 → n2/p1.
pub fn dual_stack_pods_talk(lab: &TestLab) {
    let m = lab.lab().check().expect("check");
    assert!(m.all_ok(), "{}\n{}", m.render(), lab.logs());
    let n2 = lab.lab().state.node("n2").unwrap();
    let v6: IpAddr = n2.pods[0]
        .ipv6
        .as_ref()
        .expect("ipv6 pod address")
        .parse()
        .unwrap();
    let dst = SocketAddr::new(v6, 5003);
    let sink = tcp_sink(&lab.pod_ns("n2"), dst);
    tcp_send(&lab.pod_ns("n1"), dst, 1 << 20).expect("IPv6 TCP across nodes");
    assert_eq!(sink.join().unwrap().0, 1 << 20);
}

/// A TCP transfer of `bytes` from `from` (`n1/p1`) to pod `to`'s address,
/// with iperf3 on whichever kernels the pods are. A slow VM under TCG may
/// miss a first connect or end an attempt early: up to eight attempts,
/// each judged by iperf3's own report.
pub fn tcp_transfer(lab: &Lab, from: &str, to: &str, bytes: u64) {
    let (node, ns) = lab.target(to).unwrap();
    let node = node.expect("a pod target");
    let pod = node.pods.iter().find(|p| p.ns == ns).expect("the pod");
    let addr = pod.ipv4.clone().expect("IPv4");
    let log = lab.node_dir(&node.name).join("iperf3.log");
    let kernel = lab.kernel(node);
    let server = kernel
        .spawn(&ns, &["iperf3".into(), "-s".into()], &log, None)
        .expect("iperf3 server");
    let mut tries = Vec::new();
    let mut done = false;
    for _ in 0..8 {
        let out = lab
            .exec_output(
                from,
                &[
                    "iperf3",
                    "-c",
                    &addr,
                    "-n",
                    &bytes.to_string(),
                    "-J",
                    "--connect-timeout",
                    "5000",
                ],
            )
            .expect("iperf3 client");
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        // The client's count of what TCP took (all of it); the server's
        // count stops at the test's end, with a slow VM's last segments in
        // flight.
        let sent = report["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0);
        let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
        if out.status.success() && sent >= bytes && received >= bytes / 2 {
            done = true;
            break;
        }
        tries.push(format!(
            "sent {sent}, received {received}: {} {}",
            report["error"].as_str().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        std::thread::sleep(Duration::from_secs(1));
    }
    let _ = kernel.stop(server, Duration::from_secs(2));
    assert!(
        done,
        "{from} -> {to}: no transfer of {bytes} bytes in {} tries:\n{}\n--- server ---\n{}",
        tries.len(),
        tries.join("\n"),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// `ping` from pod `from` (`n1/p1`) to pod p1 of node `to`, on whichever
/// kernel `from` runs; panics with the agents' logs if no reply came.
pub fn exec_ping(lab: &TestLab, from: &str, to: &str) {
    let dst = lab.pod_ip(to).to_string();
    let out = lab
        .lab()
        .exec_output(from, &["ping", "-c", "3", "-W", "2", &dst])
        .expect("ping");
    assert!(
        out.status.success(),
        "{from} -> {to}/p1 ({dst}): {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        lab.logs()
    );
}

/// The tap of VM node `node` on the lab's underlay, and the underlay's
/// namespace: where a capture sees what the VM sends and receives.
pub fn vm_tap(lab: &TestLab, node: &str) -> (String, String) {
    let n = lab.lab().state.node(node).expect("node");
    let vm =
        n.vm.as_ref()
            .unwrap_or_else(|| panic!("{node} is not a VM"));
    (lab.lab().state.underlay_ns.clone(), vm.tap.clone())
}
