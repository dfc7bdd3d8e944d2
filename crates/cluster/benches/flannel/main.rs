//! flannel against tweed on the same cluster in one run (issue "Side by
//! side with real flannel", docs/benchmarks.md). For each backend (vxlan,
//! then host-gw, both networks configured alike) a fresh cluster of
//! scripts/cluster.sh runs real flannel (its own kube-flannel.yml, kube
//! mode) and tweed (deploy/tweed.yaml with deploy/flannel-compat.yaml), and
//! the node label `tweed.io/network` moves every node between the two as
//! docs/migration.md does, so both are measured on the same machines,
//! kernel, kubelet and containerd:
//!
//! 1. pod create-to-Ready, 30 pods at once over 3 nodes, rounds
//!    interleaved F T T F (ready.rs), and twice the same pods with
//!    `hostNetwork: true` (no CNI call: the floor for any network);
//! 2. CNI ADD and DEL as containerd times them, over those rounds and the
//!    churn (tweed_cluster::containerd_metrics);
//! 3. cross-node pod TCP throughput (iperf3) and request/response latency
//!    (1-byte ping-pong over one TCP connection), in the same F T T F
//!    order (path.rs);
//! 4. the node agent's CPU time and RSS, idle and during pod churn
//!    (agent.rs);
//! 5. a fresh node joining: from its Node object appearing until its pod
//!    reaches a pod on every other node (join.rs).
//!
//! `cargo bench -p tweed-cluster --bench flannel`, as root. Environment:
//! `TWEED_BENCH_BACKENDS` (default `vxlan,host-gw`), `TWEED_BENCH_PODS`
//! (default 30), `TWEED_BENCH_SECS` (seconds per iperf3 run, default 5),
//! `TWEED_BENCH_IDLE_SECS` (default 60), `TWEED_BENCH_CHURN_SECS`
//! (default 300), `TWEED_BENCH_PARTS` (which of `ready,path,agent,join`
//! to run; default all).

mod agent;
mod join;
mod path;
mod ready;
mod table;

use tweed_cluster::side_by_side::{self, Network};
use tweed_cluster::{Cluster, flannel, install};
use tweed_testkit::stats::env_usize;

use table::Table;

const NODES: usize = 3;

/// The order of the interleaved measurements: each network goes first
/// once and last once.
const ORDER: [Network; 4] = [
    Network::Flannel,
    Network::Tweed,
    Network::Tweed,
    Network::Flannel,
];

fn main() {
    let backends = std::env::var("TWEED_BENCH_BACKENDS").unwrap_or("vxlan,host-gw".into());
    let pods = env_usize("TWEED_BENCH_PODS", 30);
    let secs = env_usize("TWEED_BENCH_SECS", 5);
    let idle = env_usize("TWEED_BENCH_IDLE_SECS", 60);
    let churn = env_usize("TWEED_BENCH_CHURN_SECS", 300);
    let parts = std::env::var("TWEED_BENCH_PARTS").unwrap_or("ready,path,agent,join".into());
    let part = |name: &str| parts.split(',').any(|p| p == name);
    let mut table = Table::default();
    for backend in backends.split(',') {
        println!("\n=== {backend}: flannel and tweed on one cluster of {NODES} nodes\n");
        let c = Cluster::up(NODES);
        flannel::install(&c, flannel::Store::Kube, backend);
        side_by_side::keep_flannel_to_its_nodes(&c);
        let tweed = install::with_backend(&install::manifest(), backend);
        side_by_side::install_tweed_beside(&c, &tweed);

        let mut ready = ready::Results::default();
        let mut paths = path::Results::default();
        if part("ready") || part("path") {
            for (k, net) in ORDER.into_iter().enumerate() {
                side_by_side::switch_all(&c, net);
                if part("ready") {
                    ready.round(&c, net, k, pods);
                    // The floor, first and last too: F H T T F H.
                    if k == 0 || k == ORDER.len() - 1 {
                        ready.floor_round(&c, k, pods);
                    }
                }
                if part("path") {
                    paths.run(&c, net, k, secs);
                }
            }
        }
        let mut agents = agent::Results::default();
        if part("agent") {
            for net in [Network::Tweed, Network::Flannel] {
                side_by_side::switch_all(&c, net);
                agents.measure(&c, net, idle, churn, &mut ready);
            }
        }
        let mut joins = join::Results::default();
        if part("join") {
            for net in [Network::Flannel, Network::Tweed] {
                side_by_side::switch_all(&c, net);
                joins.measure(&c, net);
            }
        }
        if part("ready") || part("agent") {
            ready.report(backend, &mut table, part("ready"));
        }
        if part("path") {
            paths.report(backend, &mut table);
        }
        if part("agent") {
            agents.report(backend, &mut table);
        }
        if part("join") {
            joins.report(backend, &mut table);
        }
    }
    table.print();
}
