//! NetworkPolicy figures (issue 19, item 4), against a real
//! kube-apiserver and real tweedd processes, seen in packets:
//!
//! 1. a policy change (create, update, delete through the API server) →
//!    enforced on every node, p50 and p99 over 100 changes
//!    ([`enforcement`]);
//! 2. pod-to-pod throughput and request/response latency on one node with
//!    0 and with 1,000 rules, as ratios ([`datapath`]);
//! 3. tweedd's CPU and memory with 1,000 policies over 500 pods, against
//!    the same tweedd idle without policies ([`agent_cost`]).
//!
//! Run as root: `cargo bench -p tweedd --bench network_policy` (builds
//! tweedd in the bench profile itself). Knobs: `TWEED_BENCH_NODES` (3),
//! `TWEED_BENCH_CHANGES` (100), `TWEED_BENCH_PROBE_MS` (5),
//! `TWEED_BENCH_RULES` (1000), `TWEED_BENCH_ROUNDS` (6),
//! `TWEED_BENCH_SECS` (iperf3 seconds, 5), `TWEED_BENCH_PODS` (500),
//! `TWEED_BENCH_POLICIES` (1000), `TWEED_BENCH_POD_NODES` (node names the
//! pods are spread over, 10), `TWEED_BENCH_IDLE_SECS` (60: CPU time
//! comes in 10 ms ticks),
//! `TWEED_BENCH_PARTS` (any of `enforcement,datapath,agent`; all).
//! See docs/benchmarks.md.
//!
//! Everything runs in namespaces the bench makes (tt-npcp-* for the
//! control plane, which the bench's own threads run in; tt-bp* for the
//! nodes and pods), removed at the end, also after a failure or Ctrl-C.
//! Benchmarks print figures; this one fails only when something it
//! drives fails (a change never enforced, a rule count never reached).

#[allow(dead_code)] // the tests' module; the bench uses a part of it
#[path = "../../tests/kube_real/mod.rs"]
mod kube_real;
#[path = "../../tests/policy_agent/mod.rs"]
mod policy_agent;

mod agent_cost;
mod datapath;
mod enforcement;
mod fabric;
mod objects;
mod probe;
mod relay;
mod report;
mod rules;

use std::time::{Duration, Instant};

use tweed_testkit::TestNs;
use tweed_testkit::bridged_pods::in_ns;
use tweed_testkit::interrupt::catch_interrupts;
use tweed_testkit::machine::{loadavg, machine_line, today};
use tweed_testkit::stats::env_usize;

use fabric::Fabric;

struct Knobs {
    nodes: usize,
    changes: usize,
    probe_interval: Duration,
    rules: usize,
    rounds: usize,
    iperf_secs: usize,
    load: agent_cost::Load,
    parts: String,
}

impl Knobs {
    fn from_env() -> Knobs {
        Knobs {
            nodes: env_usize("TWEED_BENCH_NODES", 3).clamp(1, 9),
            changes: env_usize("TWEED_BENCH_CHANGES", 100).max(1),
            probe_interval: Duration::from_millis(
                env_usize("TWEED_BENCH_PROBE_MS", 5).max(1) as u64
            ),
            rules: env_usize("TWEED_BENCH_RULES", 1000).max(1),
            rounds: env_usize("TWEED_BENCH_ROUNDS", 6).max(1),
            iperf_secs: env_usize("TWEED_BENCH_SECS", 5).max(1),
            load: agent_cost::Load {
                pods: env_usize("TWEED_BENCH_PODS", 500),
                policies: env_usize("TWEED_BENCH_POLICIES", 1000),
                nodes: env_usize("TWEED_BENCH_POD_NODES", 10).max(1),
                idle_secs: env_usize("TWEED_BENCH_IDLE_SECS", 60).max(1) as u64,
            },
            parts: std::env::var("TWEED_BENCH_PARTS")
                .unwrap_or_else(|_| "enforcement,datapath,agent".into()),
        }
    }

    fn part(&self, name: &str) -> bool {
        self.parts.split(',').any(|p| p.trim() == name)
    }
}

/// True when `cargo bench` asked for another bench by name (it passes its
/// filter to every bench binary).
fn filtered_out() -> bool {
    std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"network_policy".contains(a.as_str()))
}

fn main() {
    if filtered_out() {
        return;
    }
    tweed_testkit::require_root();
    catch_interrupts();
    let knobs = Knobs::from_env();
    println!("network_policy: tweedd --network-policy against a real kube-apiserver, in packets");
    println!("{}", machine_line());
    println!("date: {}; load average before: {}", today(), loadavg());
    let started = Instant::now();
    let control_plane = TestNs::new("npcp");
    // Everything the bench starts from here on (the API server, kubectl,
    // the runtime's threads and so the API client's connections) lives in
    // the control plane's namespace; the nodes reach it through relays.
    in_ns(&control_plane.name, || run(&control_plane.name, &knobs));
    println!(
        "load average after: {}; {:.0} s in all",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
}

fn run(control_plane_ns: &str, k: &Knobs) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let mut fabric = Fabric::start(control_plane_ns, k.nodes).await;
        let admin = fabric.cluster.admin_client().await;
        println!(
            "{} nodes up, each with its tweedd; control plane: etcd + kube-apiserver (deploy/tweed.yaml's RBAC)",
            fabric.nodes.len()
        );
        let mut report = report::Report::default();
        if k.part("enforcement") {
            println!("figure 1: {} policy changes, probing every {:?} on every node", k.changes, k.probe_interval);
            report.enforcement = Some(enforcement::run(&fabric, &admin, k.changes, k.probe_interval).await);
        }
        if k.part("datapath") {
            println!("figure 2: a -> b on n1 with 0 and {} rules, {} rounds", k.rules, k.rounds);
            report.datapath = Some(datapath::run(&admin, &fabric.nodes[0], k.rules, k.rounds, k.iperf_secs).await);
        }
        if k.part("agent") {
            // Only node 1's tweedd is measured; the others would only
            // compete for the CPUs.
            for n in &mut fabric.nodes[1..] {
                n.stop_agent();
            }
            println!(
                "figure 3: n1's tweedd idle, then with {} policies over {} pods",
                k.load.policies, k.load.pods
            );
            report.agent = Some(agent_cost::run(&admin, &mut fabric.nodes[0], &k.load).await);
        }
        report.print(k.nodes, k.rules, &k.load);
    });
}
