//! Convergence: in a 20-node lab, the time from a new node's lease
//! appearing in the store to its pods being reachable from every other
//! node; p50 and p99 over several joins (target p99 <= 500 ms).
//!
//! Run as root: `sudo cargo bench -p tweed-lab --bench convergence`
//! (`cargo build --release --workspace` first, with the same
//! CARGO_TARGET_DIR). Knobs: `TWEED_BENCH_NODES` (default 20),
//! `TWEED_BENCH_JOINS` (measured joins, default 30, after one warm-up),
//! `TWEED_BENCH_BACKEND` (vxlan, host-gw or srv6; default vxlan),
//! `TWEED_BENCH_PROBE_MS` (echo interval per source, default 5),
//! `TWEED_BENCH_COLD` (1, the default: the joining node comes back without
//! any overlay state, like a booted node; 0: its kernel keeps it).
//! See docs/benchmarks.md.
//!
//! A lab of N nodes (file store, one pod per node, masquerade on). Each
//! join takes the next node in turn: it leaves (agent stopped, lease
//! deleted, every other node's route to it gone, its own overlay removed),
//! then its agent starts again. The lease's appearance is stamped by
//! inotify on the store directory; from then, every other node's pod sends
//! an echo to the joining node's pod every few milliseconds until it gets
//! a reply. A join's figure is the time until the last of the N-1 pods got
//! its first reply.
//!
//! Only the absolute figure has a target; the same-run reference printed
//! beside it is the echo round trip between two converged pods (the
//! probe's own floor), and the probe interval bounds the resolution.

#[path = "../common/mod.rs"]
mod common;
mod join;
mod lease_watch;
mod probe;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use tweed_lab::{Lab, LabSpec, check};
use tweed_netlink::NetNs;

const TARGET_P99_MS: f64 = 500.0;

/// Real-time priority for the calling thread, so its time stamps do not
/// wait for a busy CPU (the bench's threads sleep nearly all the time).
pub fn realtime() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sets the calling thread's policy; the parameter is valid.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
}

fn main() {
    if filtered_out("convergence") {
        return;
    }
    require_root("convergence");
    catch_interrupts();
    let nodes = env_usize("TWEED_BENCH_NODES", 20).clamp(2, 200);
    let joins = env_usize("TWEED_BENCH_JOINS", 30).max(1);
    let backend = std::env::var("TWEED_BENCH_BACKEND").unwrap_or_else(|_| "vxlan".into());
    let interval = Duration::from_millis(env_usize("TWEED_BENCH_PROBE_MS", 5).max(1) as u64);
    let cold = env_usize("TWEED_BENCH_COLD", 1) != 0;
    let binaries = binaries();
    let tag = std::process::id() % 10000;

    println!(
        "convergence: {nodes}-node lab ({backend}, file store); a node's lease appears -> its pod reachable from every other node's pod"
    );
    println!("{}", machine_line());
    println!("{}", binaries_line(&binaries));
    println!("date: {}", today());

    let t = Instant::now();
    let spec = LabSpec {
        name: format!("cv{tag}"),
        nodes,
        backend: backend.clone(),
        store: "file".into(),
        pods_per_node: 1,
        ip_masq: true,
        ipv6: false,
        underlay_subnets: 1,
        net_conf_overrides: Default::default(),
        vm_nodes: Vec::new(),
        vm_options: Default::default(),
        binaries: binaries.clone(),
    };
    let mut guard = LabGuard(Some(
        Lab::up(&spec).unwrap_or_else(|e| panic!("lab up: {e}")),
    ));
    matrix_ok(guard.lab(), "after lab up");
    let rtt = echo_rtt(guard.lab());
    println!(
        "lab {} up in {:.1} s; all {} pod pairs reach each other; echo round trip between two converged pods: median {rtt:.2} ms",
        guard.lab().state.name,
        t.elapsed().as_secs_f64(),
        nodes * (nodes - 1)
    );
    println!(
        "{} joins (+1 warm-up), {}; echo every {} ms per source; load average before: {}",
        joins,
        if cold {
            "cold: the joining node's overlay devices and routes removed before its agent starts"
        } else {
            "warm: the joining node keeps its overlay state"
        },
        interval.as_millis(),
        loadavg()
    );
    println!();

    let mut results = Vec::new();
    for j in 0..=joins {
        check_interrupted();
        let lab = guard.lab_mut();
        let node = lab.state.nodes[(j + 1) % nodes].clone();
        let sources: Vec<(String, String)> = lab
            .state
            .nodes
            .iter()
            .filter(|n| n.name != node.name)
            .map(|n| (n.name.clone(), n.pods[0].ns.clone()))
            .collect();
        let dst: IpAddr = node.pods[0]
            .ipv4
            .as_deref()
            .expect("pod address")
            .parse()
            .expect("ip");
        let key = join::leave(lab, &node.name, cold);
        // Let the other agents' removal passes and the stopped node settle.
        std::thread::sleep(Duration::from_millis(300));
        let r = join::join(lab, &node.name, &key, &sources, dst, interval);
        let mut times: Vec<f64> = r.reached.iter().map(|x| x.1).collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{} {:>3}: {:<4} {:<15} lease {:>5.1} ms after the agent's start; reachable from all {} after {:>6.1} ms \
             (first {:>5.1}, median {:>5.1}; slowest from {}); ready at +{:.0} ms",
            if j == 0 { "warm-up" } else { "join   " },
            j,
            r.node,
            r.subnet,
            r.start_to_lease,
            r.reached.len(),
            r.all(),
            times[0],
            median(&times),
            r.slowest(),
            r.lease_to_ready
        );
        if j > 0 {
            results.push(r);
        }
    }
    println!("load average after: {}", loadavg());
    matrix_ok(guard.lab(), "after the joins");
    summary(&results, rtt, interval);
    drop(guard);
    println!("cleanup: lab down");
}

/// Every pod reaches every pod, or the bench stops with the matrix.
fn matrix_ok(lab: &Lab, when: &str) {
    let m = lab.check().expect("connectivity check");
    assert!(
        m.all_ok(),
        "{when}: not every pod reaches every pod\n{}",
        m.render()
    );
}

/// The median echo round trip from n1's pod to n2's pod (converged): what a
/// reply costs on top of the network being ready.
fn echo_rtt(lab: &Lab) -> f64 {
    let from = NetNs::named(&lab.state.nodes[0].pods[0].ns).expect("netns");
    let to: IpAddr = lab.state.nodes[1].pods[0]
        .ipv4
        .as_deref()
        .expect("pod address")
        .parse()
        .expect("ip");
    let rtts: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            assert!(
                check::ping(&from, to, 1, Duration::from_secs(1)).expect("ping"),
                "converged pods do not answer"
            );
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(&rtts)
}

fn summary(results: &[join::Join], rtt: f64, interval: Duration) {
    let all: Vec<f64> = results.iter().map(join::Join::all).collect();
    let pooled: Vec<f64> = results
        .iter()
        .flat_map(|r| r.reached.iter().map(|x| x.1))
        .collect();
    let to_lease: Vec<f64> = results.iter().map(|r| r.start_to_lease).collect();
    println!();
    println!(
        "{} joins; milliseconds from the lease appearing:",
        results.len()
    );
    println!(
        "{:<44} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "", "p50", "p90", "p99", "min", "max"
    );
    for (what, v) in [
        ("reachable from every other node (per join)", &all),
        ("reachable from one other node (all pairs)", &pooled),
    ] {
        println!(
            "{what:<44} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1}",
            percentile(v, 50.0),
            percentile(v, 90.0),
            percentile(v, 99.0),
            min(v),
            max(v)
        );
    }
    println!(
        "for reference: agent start -> lease p50 {:.1} ms; echo round trip between converged pods {rtt:.2} ms; \
         probe interval {} ms (a figure is late by at most that plus one round trip)",
        percentile(&to_lease, 50.0),
        interval.as_millis()
    );
    let p99 = percentile(&all, 99.0);
    println!(
        "  p99 (per join) {p99:.1} ms = {:.2}x the target of {TARGET_P99_MS} ms  target met: {}",
        p99 / TARGET_P99_MS,
        yes_no(p99 <= TARGET_P99_MS)
    );
    if results.len() < 100 {
        println!(
            "  (nearest rank: with {} joins, fewer than 100, the p99 is the largest)",
            results.len()
        );
    }
}
