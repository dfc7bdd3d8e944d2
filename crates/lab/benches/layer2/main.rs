//! One TCP stream between two pods on two lab nodes over each of the three
//! ways tweed connects them, in one lab and one run, with the repetitions
//! interleaved:
//! - `routed vxlan`: the pods' eth0, the routed pod network (VXLAN backend);
//! - `segment`: their net1 on a layer-2 segment (the node bridges joined by
//!   the segment's own VXLAN device; addresses from the segment's Subnet);
//! - `wire`: their eth1, a cross-node wire (a VXLAN device of the wire's own
//!   VNI inside each pod).
//!
//! Run as root: `sudo cargo bench -p tweed-lab --bench layer2`
//! (`cargo build --release --workspace` first, with the same
//! CARGO_TARGET_DIR). Knobs: `TWEED_BENCH_REPS` (rounds, default 7),
//! `TWEED_BENCH_SECS` (seconds per iperf3 run, default 5).
//! See docs/benchmarks.md. The bench fails only if a setup step or an
//! iperf3 run fails.

#[path = "../common/mod.rs"]
mod common;
// Shared with the throughput bench, which uses all of it.
#[allow(dead_code)]
#[path = "../throughput/iperf.rs"]
mod iperf;

use std::time::{Duration, Instant};

use common::*;
use iperf::{PORT, Path, listening, run_rounds};
use serde_json::{Value, json};
use tweed_lab::{Lab, LabSpec};

const SEGMENT: &str = "bench";
const SEGMENT_SUBNET: &str = "192.168.77.0/24";
/// The wire has no addresses of its own: the bench gives its ends these.
const WIRE_ADDRS: [&str; 2] = ["192.168.78.1/30", "192.168.78.2/30"];

fn main() {
    if filtered_out("layer2") {
        return;
    }
    require_root("layer2");
    catch_interrupts();
    let reps = env_usize("TWEED_BENCH_REPS", 7).max(1);
    let secs = env_usize("TWEED_BENCH_SECS", 5).max(2);
    let binaries = binaries();
    let tag = std::process::id() % 10000;

    println!(
        "layer2: one TCP stream (iperf3 -t {secs} -O 1), pod to pod across two nodes: routed, segment, wire"
    );
    println!("{}", machine_line());
    println!("{}", binaries_line(&binaries));
    println!("tools: {}", tool_version(&["iperf3", "--version"]));
    println!("date: {}", today());

    let t = Instant::now();
    let mut overrides = serde_json::Map::new();
    overrides.insert(
        "Segments".into(),
        json!([{"Name": SEGMENT, "VNI": 4101, "Subnet": SEGMENT_SUBNET}]),
    );
    let spec = LabSpec {
        name: format!("l2b{tag}"),
        nodes: 2,
        backend: "vxlan".into(),
        store: "file".into(),
        pods_per_node: 0,
        ip_masq: false,
        ipv6: false,
        underlay_subnets: 1,
        net_conf_overrides: overrides,
        vm_nodes: Vec::new(),
        vm_options: Default::default(),
        binaries,
    };
    let mut guard = LabGuard(Some(
        Lab::up(&spec).unwrap_or_else(|e| panic!("lab up: {e}")),
    ));
    // Two pods wired to each other, each also on the segment.
    let lab = guard.lab_mut();
    let a = lab
        .add_pod_wired("n1", "wa", "eth1=wb:eth1")
        .expect("pod wa");
    let b = lab
        .add_pod_wired("n2", "wb", "eth1=wa:eth1")
        .expect("pod wb");
    lab.wait_wires_up(Duration::from_secs(20))
        .expect("the wire comes up");
    let lab = guard.lab();
    segment_attach(lab, "n1", &a);
    let seg_b = segment_attach(lab, "n2", &b);
    for (pod, addr) in [(&a, WIRE_ADDRS[0]), (&b, WIRE_ADDRS[1])] {
        ipn(&pod.ns, &format!("addr add {addr} dev eth1"));
    }
    let host = |cidr: &str| cidr.split('/').next().expect("address").to_string();
    let mut paths = vec![
        Path::new(
            "routed vxlan",
            &a.ns,
            &b.ns,
            b.ipv4.as_deref().expect("pod address"),
        ),
        Path::new("segment", &a.ns, &b.ns, &seg_b),
        Path::new("wire", &a.ns, &b.ns, &host(WIRE_ADDRS[1])),
    ];
    println!(
        "setup: 2-node lab, 2 pods with eth0, net1 and a wire in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for (name, ifname) in [
        ("routed vxlan", "eth0"),
        ("segment", "net1"),
        ("wire", "eth1"),
    ] {
        println!("  {name:<13} {ifname}: mtu {}", mtu(&a.ns, ifname));
    }

    let mut scratch = Scratch::default();
    let pid = scratch.spawn(cmd_in(&b.ns, &["iperf3", "-s", "-p", &PORT.to_string()]));
    wait_until(10.0, "iperf3 server", || listening(pid, PORT));
    for p in &paths {
        let out = cmd_in(&p.client_ns, &["ping", "-c", "1", "-W", "2", &p.server_ip])
            .output()
            .expect("ping");
        assert!(
            out.status.success(),
            "{}: {} does not answer ping",
            p.name,
            p.server_ip
        );
    }

    println!(
        "load average before the timed region: {}; {reps} rounds x {} paths x {secs} s",
        loadavg(),
        paths.len()
    );
    let order: Vec<usize> = (0..paths.len()).collect();
    run_rounds(&mut paths, &order, reps, secs);
    println!("load average after: {}", loadavg());

    println!();
    println!(
        "{:<14} {:>8} {:>8} {:>8} {:>10}",
        "path", "median", "min", "max", "retrans"
    );
    println!(
        "{:<14} {:>8} {:>8} {:>8} {:>10}",
        "", "Gbit/s", "Gbit/s", "Gbit/s", "(median)"
    );
    for p in &paths {
        println!(
            "{:<14} {:>8.2} {:>8.2} {:>8.2} {:>10.0}",
            p.name,
            median(&p.gbps),
            min(&p.gbps),
            max(&p.gbps),
            median(&p.retrans)
        );
    }
    println!();
    println!("ratios of medians [median of the per-round ratios]:");
    let routed = &paths[0].gbps;
    for p in &paths[1..] {
        let per_round: Vec<f64> = p.gbps.iter().zip(routed).map(|(x, y)| x / y).collect();
        println!(
            "  {:<8} / routed vxlan {:.3} [{:.3}]",
            p.name,
            median(&p.gbps) / median(routed),
            median(&per_round)
        );
    }

    scratch.cleanup();
    drop(guard);
    println!("cleanup: lab down, iperf3 server stopped");
}

/// Gives `pod` (on `node`) a net1 on the segment through the plugin;
/// returns its address (from the node's block of the segment's Subnet).
fn segment_attach(lab: &Lab, node: &str, pod: &tweed_lab::state::PodState) -> String {
    let n = lab.state.node(node).expect("node");
    let conf = tweed_lab::pods::segment_conf(&lab.node_dir(node), SEGMENT);
    let result: Value = tweed_lab::pods::cni_with(
        &lab.binaries.plugin,
        &n.ns,
        &conf,
        &tweed_lab::pods::Call {
            command: "ADD",
            container_id: &pod.container_id,
            pod_ns: &pod.ns,
            ifname: "net1",
            cni_args: "",
        },
    )
    .unwrap_or_else(|e| panic!("{node}: segment ADD: {e}"));
    let cidr = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("{node}: no segment address: {result}"));
    cidr.split('/').next().expect("address").to_string()
}

/// `ifname`'s MTU in `ns`, read back from the kernel.
fn mtu(ns: &str, ifname: &str) -> u64 {
    let v: Value =
        serde_json::from_str(&ipn(ns, &format!("-j link show dev {ifname}"))).expect("ip -j link");
    v[0]["mtu"].as_u64().expect("mtu")
}
