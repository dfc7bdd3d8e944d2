//! Figure 3: what tweedd on node 1 costs with 1,000 NetworkPolicies over
//! 500 pods, against the same process idle without any policy, in one
//! run (tweed_testkit::proc_usage: CPU from /proc/<pid>/stat, its own and
//! that of the `nft` runs it waited for; memory from VmRSS and VmHWM).
//!
//! tweedd is restarted with its table removed, so its peak and its CPU
//! count from zero, and measured idle. Then the load arrives through the
//! API server: 10 namespaces (`load-<j>`, labelled `team=t<j>`), the pods
//! spread over 10 node names, node 1 among them (a tenth of the pods,
//! besides its own three), each with the status kubelet would write,
//! and the policies, 100 per namespace, of five kinds in turn (pods by
//! label on one port, namespace and pod selector together on a port
//! range, an ipBlock with an `except` on a named port, ingress and egress
//! with a named egress port, `matchExpressions` on UDP and SCTP ports).
//! The load is done when the kernel holds what tweedd's own compiler
//! makes of the API's objects. Then idle again with the policies, then
//! pod label changes one by one (each one a recompile of every policy
//! for node 1's pods, and an apply).

use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use serde_json::json;
use tweed_testkit::interrupt::check_interrupted;
use tweed_testkit::proc_usage::ProcUsage;

use crate::fabric::Node;
use crate::objects::{NetworkPolicySet, PodSpec, create_namespace, create_pods, label_pod, policy};
use crate::rules;

const NAMESPACES: usize = 10;
/// Pod label changes whose CPU is averaged.
const CHURN: usize = 20;

pub struct Load {
    pub pods: usize,
    pub policies: usize,
    pub nodes: usize,
    pub idle_secs: u64,
}

pub struct Results {
    pub idle: ProcUsage,
    pub idle_cpu_ms_per_min: f64,
    /// Pods of node 1 among the API's, rules in its table under load.
    pub node_pods: usize,
    pub node_rules: usize,
    /// First write → the kernel complete; last write → the same, s.
    pub load_s: f64,
    pub lag_s: f64,
    /// CPU from the first write until the kernel was complete.
    pub load_cpu: Cpu,
    pub loaded_cpu_ms_per_min: f64,
    pub churn_cpu_per_change: Cpu,
    /// Since tweedd started.
    pub whole_run_cpu: Cpu,
    /// After the load, the idle minute and the churn.
    pub end: ProcUsage,
}

fn pods(load: &Load) -> Vec<PodSpec> {
    let mut per_node = vec![0usize; load.nodes];
    (0..load.pods)
        .map(|p| {
            let node = (p / NAMESPACES) % load.nodes;
            per_node[node] += 1;
            assert!(per_node[node] <= 240, "more pods per node than a /24 holds");
            PodSpec {
                namespace: format!("load-{}", p % NAMESPACES),
                name: format!("pod-{p}"),
                node: format!("n{}", node + 1),
                // Apps mixed across namespaces and nodes (each node runs
                // pods of every app, as a scheduler spreads them).
                labels: json!({"app": format!("app-{}", (p + p / 100) % 10),
                               "role": if p % 3 == 0 { "client" } else { "server" }}),
                // Node k's pods in 10.244.k.0/24, above the bench's own.
                ip: format!("10.244.{}.{}", node + 1, 9 + per_node[node]),
            }
        })
        .collect()
}

fn policies(count: usize) -> Vec<NetworkPolicy> {
    (0..count)
        .map(|q| {
            let (j, i) = (q % NAMESPACES, q / NAMESPACES);
            let app = |k: usize| format!("app-{}", k % 10);
            let target = json!({"matchLabels": {"app": app(i)}});
            // Each app is selected by 10 policies of its namespace, two
            // of each kind.
            let spec = match (i / 10) % 5 {
                0 => json!({"podSelector": target, "ingress": [{
                    "from": [{"podSelector": {"matchLabels": {"app": app(i + 1)}}}],
                    "ports": [{"port": 8080}]}]}),
                1 => json!({"podSelector": target, "ingress": [{
                    "from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", (j + 1) % NAMESPACES)}},
                              "podSelector": {"matchLabels": {"role": "client"}}}],
                    "ports": [{"port": 8000, "endPort": 8100}]}]}),
                2 => json!({"podSelector": target, "ingress": [{
                    "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [format!("10.244.{}.0/24", j + 1)]}}],
                    "ports": [{"port": "http"}]}]}),
                3 => json!({"podSelector": target, "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": {}}]}],
                    "egress": [{"to": [{"podSelector": {"matchLabels": {"app": app(i + 2)}}}],
                                "ports": [{"port": "metrics"}]},
                               {"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}]}),
                _ => json!({"podSelector": target, "ingress": [{
                    "from": [{"podSelector": {"matchExpressions": [
                        {"key": "app", "operator": "In", "values": [app(i + 3), app(i + 4)]}]}}],
                    "ports": [{"protocol": "UDP", "port": 9000}, {"protocol": "SCTP", "port": 9001}]}]}),
            };
            policy(&format!("load-{j}"), &format!("load-{i:03}"), NetworkPolicySet::Load, spec)
        })
        .collect()
}

/// CPU time spent between two readings: tweedd's own, and its `nft`
/// runs'.
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    pub own_ms: f64,
    pub nft_ms: f64,
}

impl Cpu {
    fn between(before: &ProcUsage, after: &ProcUsage) -> Cpu {
        Cpu {
            own_ms: after.own_cpu_ms - before.own_cpu_ms,
            nft_ms: after.children_cpu_ms - before.children_cpu_ms,
        }
    }

    fn per(self, n: usize) -> Cpu {
        Cpu {
            own_ms: self.own_ms / n as f64,
            nft_ms: self.nft_ms / n as f64,
        }
    }
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} ms CPU (tweedd {:.0} + nft {:.0})",
            self.own_ms + self.nft_ms,
            self.own_ms,
            self.nft_ms
        )
    }
}

fn per_min(cpu_ms: f64, over: Duration) -> f64 {
    cpu_ms * 60.0 / over.as_secs_f64()
}

/// The CPU `node`'s tweedd spends over `secs` of doing nothing new.
fn idle_cpu(node: &Node, secs: u64) -> f64 {
    let pid = node.agent_pid();
    let before = ProcUsage::read(pid);
    std::thread::sleep(Duration::from_secs(secs));
    per_min(
        ProcUsage::read(pid).cpu_ms() - before.cpu_ms(),
        Duration::from_secs(secs),
    )
}

pub async fn run(client: &Client, node: &mut Node, load: &Load) -> Results {
    node.stop_agent();
    rules::remove_table(node.ns());
    node.start_agent();
    // Its first lists and apply behind it.
    std::thread::sleep(Duration::from_secs(5));
    let pid = node.agent_pid();
    let idle_cpu_ms_per_min = idle_cpu(node, load.idle_secs);
    let idle = ProcUsage::read(pid);
    println!(
        "  idle, no policies: {idle_cpu_ms_per_min:.1} ms CPU/min, VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        idle.rss_mib, idle.peak_rss_mib
    );

    check_interrupted();
    let pods = pods(load);
    let before = ProcUsage::read(pid);
    let first_write = Instant::now();
    for j in 0..NAMESPACES {
        create_namespace(
            client,
            &format!("load-{j}"),
            json!({"team": format!("t{j}")}),
        )
        .await;
    }
    create_pods(client, &pods).await;
    crate::objects::create_policies(client, &policies(load.policies)).await;
    let last_write = Instant::now();
    let node_rules = rules::expected(client, &node.name).await;
    let done = rules::wait_for(node.ns(), node_rules, Duration::from_secs(600), &node.log());
    let load_cpu = Cpu::between(&before, &ProcUsage::read(pid));
    let node_pods = 3 + pods.iter().filter(|p| p.node == node.name).count();
    println!(
        "  {} pods ({node_pods} on {}), {} policies: {node_rules} rules in {}'s kernel {:.1} s after the first write, {:.1} s after the last; {load_cpu}",
        pods.len(),
        node.name,
        load.policies,
        node.name,
        (done - first_write).as_secs_f64(),
        (done - last_write).as_secs_f64()
    );

    check_interrupted();
    std::thread::sleep(Duration::from_secs(5));
    let loaded_cpu_ms_per_min = idle_cpu(node, load.idle_secs);
    println!("  idle with the policies: {loaded_cpu_ms_per_min:.1} ms CPU/min");

    check_interrupted();
    let churn_cpu_per_change = churn(client, node, &pods).await;
    println!("  pod label changes: {churn_cpu_per_change} each");
    let end = ProcUsage::read(pid);
    Results {
        idle,
        idle_cpu_ms_per_min,
        node_pods,
        node_rules,
        load_s: (done - first_write).as_secs_f64(),
        lag_s: (done - last_write).as_secs_f64(),
        load_cpu,
        loaded_cpu_ms_per_min,
        churn_cpu_per_change,
        whole_run_cpu: Cpu {
            own_ms: end.own_cpu_ms,
            nft_ms: end.children_cpu_ms,
        },
        end,
    }
}

/// [`CHURN`] label changes of node 1's pods, 0.5 s apart (each its own
/// recompile: tweedd gathers changes for 50 ms), and the kernel checked
/// afterwards; the CPU per change.
async fn churn(client: &Client, node: &Node, pods: &[PodSpec]) -> Cpu {
    let mine: Vec<&PodSpec> = pods.iter().filter(|p| p.node == node.name).collect();
    let pid = node.agent_pid();
    let before = ProcUsage::read(pid);
    for k in 0..CHURN {
        let p = mine[k % mine.len()];
        // Another app, so that other policies select it and peer it.
        let app = format!("app-{}", (k + 5) % 10);
        label_pod(client, &p.namespace, &p.name, json!({"app": app})).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let want = rules::expected(client, &node.name).await;
    rules::wait_for(node.ns(), want, Duration::from_secs(120), &node.log());
    Cpu::between(&before, &ProcUsage::read(pid)).per(CHURN)
}
