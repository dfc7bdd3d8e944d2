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
//! - `tweed <backend>`: a 2-node lab per backend (vxlan, geneve, wireguard,
//!   srv6, host-gw; file store), pod n1/p1 to pod n2/p1; a backend whose
//!   kernel feature this kernel lacks is not measured, and the report says
//!   so: `TWEED_BENCH_VM=1` runs the whole bench in the VM runner, whose
//!   kernel has them all;
//! - `hand <backend>`: a copy of the lab's topology built with `ip`
//!   (underlay bridge, two node namespaces cabled by veth, a bridge and a
//!   single-queue veth pod per node, the same MTUs), with the overlay
//!   configured as flannel does it: VXLAN device `flannel.1` (VNI 1, port
//!   8472, nolearning, one permanent neighbour, one FDB entry, one onlink
//!   route per peer); Geneve as tweed builds it (flannel has none: one
//!   external device, one neighbour and one onlink route with `encap ip id
//!   1 dst <peer>` per peer); WireGuard as flannel does it (device
//!   `flannel-wg`, `wg set` with the peer's key, endpoint and allowed IPs,
//!   one route); SRv6 (seg6 encap route to the peer's End.DX4 SID, a local
//!   `seg6local End.DX4` SID); host-gw (one plain route);
//! - `underlay`: node n1 to node n2 of the host-gw lab, their eth0
//!   addresses (no pods, no overlay).
//!
//! Each round runs every path once; the paths that are compared run back
//! to back, and every other round runs in reverse order.
//! The bench fails only if a setup step or an iperf3 run fails.

#[path = "../common/mod.rs"]
mod common;
mod compare;
mod hand;
mod in_vm;
mod iperf;

use std::collections::BTreeMap;
use std::time::Instant;

use common::*;
use compare::compare_state;
use hand::hand_built;
use iperf::{PORT, Path, index, listening, run_rounds};
use tweed_lab::{Lab, LabSpec};

fn main() {
    if filtered_out("throughput") {
        return;
    }
    require_root("throughput");
    if in_vm::wanted() {
        in_vm::run();
        return;
    }
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

    // A backend whose kernel feature is missing here is not measured, and
    // the report says so instead of failing the whole bench; the VM runner
    // (TWEED_BENCH_VM=1) has them all.
    use tweed_testkit::vm::KernelFeature;
    let all: [(&str, &str, Option<KernelFeature>); 5] = [
        ("vxlan", "vx", None),
        ("geneve", "gn", Some(KernelFeature::Geneve)),
        ("wireguard", "wg", Some(KernelFeature::Wireguard)),
        ("srv6", "s6", Some(KernelFeature::Seg6)),
        ("host-gw", "gw", None),
    ];
    let mut missing: Vec<&str> = Vec::new();
    let backends: Vec<(&str, &str)> = all
        .iter()
        .filter(|(b, _, f)| match f {
            Some(f) if !f.present() => {
                println!(
                    "{b}: not measured, this kernel lacks {} (TWEED_BENCH_VM=1 runs the bench in a VM that has it)",
                    f.config_option()
                );
                missing.push(b);
                false
            }
            _ => true,
        })
        .map(|(b, s, _)| (*b, *s))
        .collect();
    let measured = |name: &str| !missing.iter().any(|b| name.ends_with(&format!(" {b}")));

    let mut scratch = Scratch::default();
    let mut labs: Vec<LabGuard> = Vec::new();
    let mut paths: Vec<Path> = Vec::new();

    // The labs, one per backend.
    let t = Instant::now();
    for &(backend, short) in &backends {
        check_interrupted();
        let spec = LabSpec {
            name: format!("tp{tag}{short}"),
            nodes: 2,
            backend: backend.into(),
            store: "file".into(),
            pods_per_node: 1,
            ip_masq,
            ipv6: false,
            underlay_subnets: 1,
            net_conf_overrides: Default::default(),
            vm_nodes: Vec::new(),
            vm_options: Default::default(),
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
    for &(backend, short) in &backends {
        check_interrupted();
        let p = hand_built(&mut scratch, &format!("tph{tag}{short}"), backend);
        paths.push(p);
    }
    println!(
        "setup: {n} labs and {n} hand-built topologies in {:.1} s",
        t.elapsed().as_secs_f64(),
        n = backends.len()
    );

    // What the tweed and hand-built paths are made of, side by side.
    let lab_of = |b: &str| {
        labs.iter()
            .find(|l| l.lab().state.backend == b)
            .expect("lab")
            .lab()
    };
    for &(backend, short) in &backends {
        compare_state(lab_of(backend), &format!("tph{tag}{short}"), backend);
    }

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
    let order: Vec<&str> = [
        "underlay",
        "tweed host-gw",
        "hand host-gw",
        "tweed vxlan",
        "hand vxlan",
        "tweed geneve",
        "hand geneve",
        "tweed wireguard",
        "hand wireguard",
        "tweed srv6",
        "hand srv6",
    ]
    .into_iter()
    .filter(|n| measured(n))
    .collect();
    let seq0: Vec<usize> = order.iter().map(|n| index(&paths, n)).collect();
    run_rounds(&mut paths, &seq0, reps, secs);
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
    for &name in &order {
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
        ("tweed geneve", "hand geneve", Some(0.95)),
        ("tweed wireguard", "hand wireguard", Some(0.95)),
        ("tweed srv6", "hand srv6", Some(0.95)),
        ("tweed host-gw", "hand host-gw", Some(0.95)),
        ("tweed host-gw", "underlay", Some(0.9)),
        ("hand host-gw", "underlay", None),
        ("hand vxlan", "underlay", None),
        ("hand geneve", "underlay", None),
        ("hand wireguard", "underlay", None),
        ("hand srv6", "underlay", None),
    ] {
        if !measured(a) || !measured(b) {
            continue;
        }
        let r = med[a] / med[b];
        let (pa, pb) = (&paths[index(&paths, a)].gbps, &paths[index(&paths, b)].gbps);
        let per_round: Vec<f64> = pa.iter().zip(pb).map(|(x, y)| x / y).collect();
        let pr = median(&per_round);
        match target {
            Some(t) => println!(
                "  {a:<15} / {b:<14} {r:.3} [{pr:.3}]   target >= {t}: {}",
                yes_no(r >= t)
            ),
            None => println!("  {a:<15} / {b:<14} {r:.3} [{pr:.3}]   (for reference)"),
        }
    }

    scratch.cleanup();
    drop(labs);
    println!("cleanup: labs down, hand-built namespaces deleted, iperf3 servers stopped");
}
