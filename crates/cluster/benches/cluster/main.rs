//! tweed in the real cluster of scripts/cluster.sh, measured:
//!
//! 1. `kubectl apply -f deploy/tweed.yaml` to every node Ready;
//! 2. pod create-to-Ready for 30 pods over the 3 nodes with tweed, and in
//!    the same run on the same cluster with the reference `bridge` +
//!    `host-local` conflist installed by hand, rounds interleaved
//!    (ready.rs);
//! 3. cross-node pod-to-pod TCP throughput (iperf3) against the nodes'
//!    own underlay in the same run (throughput.rs).
//!
//! `cargo bench -p tweed-cluster --bench cluster`, as root. Environment:
//! `TWEED_BENCH_ROUNDS` (create-to-Ready rounds per plugin, default 2),
//! `TWEED_BENCH_PODS` (pods per round, default 30), `TWEED_BENCH_SECS`
//! (seconds per iperf3 run, default 5).

mod ready;
mod throughput;

use std::time::Instant;

use tweed_cluster::pods::condition;
use tweed_cluster::{Cluster, repo_root};
use tweed_testkit::stats::env_usize;

const NODES: usize = 3;

fn main() {
    let rounds = env_usize("TWEED_BENCH_ROUNDS", 2);
    let pods = env_usize("TWEED_BENCH_PODS", 30);
    let secs = env_usize("TWEED_BENCH_SECS", 5);
    let c = Cluster::up(NODES);

    let manifest = repo_root().join("deploy/tweed.yaml");
    let applied = Instant::now();
    c.kubectl_ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.wait_until(240, "every node Ready", || {
        let nodes = c.json(&["get", "nodes"]);
        nodes["items"]
            .as_array()
            .is_some_and(|n| n.len() == NODES && n.iter().all(|n| condition(n, "Ready") == "True"))
    });
    let to_ready = applied.elapsed().as_secs_f64();
    c.wait_until(120, "the tweed DaemonSet ready", || {
        c.json(&["-n", "kube-tweed", "get", "ds", "tweed"])["status"]["numberReady"] == NODES
    });
    println!("kubectl apply -f deploy/tweed.yaml -> {NODES} nodes Ready: {to_ready:.1} s\n");

    ready::compare(&c, rounds, pods);
    throughput::compare(&c, secs);
}
