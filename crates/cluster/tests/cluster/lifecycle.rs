//! What happens to running pods when tweed itself changes, and what is
//! left when pods and nodes go: a tweed pod rolled by its DaemonSet, the
//! whole DaemonSet deleted and applied again (continuous pings across
//! nodes: every lost packet is counted and reported), deleted pods, and a
//! node drained, switched off and deleted.

use std::time::Duration;

use tweed_cluster::Cluster;
use tweed_cluster::pods::{PingRun, Pod, assert_all_pairs_talk, assert_talk, pods};

use crate::faults::tweed_pod_on;
use crate::web;
use tweed_cluster::install;

/// Runs `action` while pods[0] pings pods[1] (on another node) `count`
/// times at 0.2 s; asserts nothing was lost and says so.
pub fn no_ping_lost_while(
    c: &Cluster,
    pods: &[Pod],
    what: &str,
    count: u32,
    action: impl FnOnce(),
) {
    let (a, b) = (&pods[0], &pods[1]);
    assert_ne!(a.node, b.node);
    let ping = PingRun::start(c, a, b, count);
    std::thread::sleep(Duration::from_secs(2));
    action();
    let (sent, received, report) = ping.finish();
    println!(
        "{what}: {} of {sent} pings lost ({} -> {})",
        sent - received,
        a.node,
        b.node
    );
    assert!(sent == count && received == sent, "{what}: {report}");
}

pub fn rolling_tweeds_pod_keeps_traffic(c: &Cluster, pods: &[Pod]) {
    let old = tweed_pod_on(c, &pods[0].node);
    no_ping_lost_while(
        c,
        pods,
        "tweed pod on the pinging node deleted",
        100,
        || {
            c.kubectl_ok(&["-n", "kube-tweed", "delete", "pod", &old, "--wait=false"]);
        },
    );
    install::daemonset_ready(c);
}

pub fn deleting_the_daemonset_keeps_traffic_and_reapplying_converges(c: &Cluster, pods: &[Pod]) {
    no_ping_lost_while(c, pods, "tweed DaemonSet deleted", 100, || {
        c.kubectl_ok(&[
            "-n",
            "kube-tweed",
            "delete",
            "ds",
            "tweed",
            "--wait=true",
            "--timeout=60s",
        ]);
    });
    c.wait_until(60, "no tweed pod left", || {
        c.json(&["-n", "kube-tweed", "get", "pods"])["items"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    });
    // The kernel state stays without its agent: the pods still talk.
    assert_all_pairs_talk(c, pods);
    no_ping_lost_while(c, pods, "tweed DaemonSet applied again", 100, || {
        c.apply(&install::manifest());
        install::daemonset_ready(c);
    });
    // Converged: a new pod on every node reaches the old ones, both ways.
    web::scale(c, c.nodes * 2);
    let new: Vec<Pod> = tweed_cluster::pods::pods(c, "app=web")
        .into_iter()
        .filter(|p| pods.iter().all(|old| old.name != p.name))
        .collect();
    assert_eq!(new.len(), c.nodes);
    assert_talk(c, &new, pods);
    assert_talk(c, pods, &new);
}

/// Deleting pods frees their addresses and host veths; only CoreDNS's stay.
pub fn deleted_pods_leave_nothing(c: &Cluster) {
    c.kubectl_ok(&["delete", "deploy", "web", "--wait=true", "--timeout=120s"]);
    c.wait_until(60, "web pods gone", || pods(c, "app=web").is_empty());
    for i in 1..=c.nodes {
        c.wait_until(
            30,
            "no address or host veth left of the deleted pods",
            || {
                let (ips, host_veths) = leftovers(c, i);
                let keep = dns_pod_ips(c, i);
                ips.iter().all(|ip| keep.contains(ip)) && host_veths == keep.len()
            },
        );
    }
}

/// Node `i`'s reserved pod addresses and the number of tweed host veths.
fn leftovers(c: &Cluster, i: usize) -> (Vec<String>, usize) {
    let reserved = c.on_node(i, &["ls", "/var/lib/cni/networks/tweed"]);
    let ips = String::from_utf8_lossy(&reserved.stdout)
        .lines()
        .filter(|f| f.starts_with("10.244."))
        .map(str::to_string)
        .collect();
    let veths = c.on_node(i, &["ip", "-o", "link", "show", "type", "veth"]);
    let host_veths = String::from_utf8_lossy(&veths.stdout)
        .lines()
        .filter(|l| l.contains(": tw"))
        .count();
    (ips, host_veths)
}

/// CoreDNS's pod addresses on node `i` (those stay).
fn dns_pod_ips(c: &Cluster, i: usize) -> Vec<String> {
    let dns = c.json(&[
        "-n",
        "kube-system",
        "get",
        "pods",
        "-l",
        "k8s-app=kube-dns",
        "--field-selector",
        &format!("spec.nodeName={}", c.node_name(i)),
    ]);
    dns["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .collect()
}

/// The last node is drained, switched off and deleted, as an operator
/// retires a machine: every other node drops its route to that node's pod
/// subnet.
pub fn a_removed_node_loses_its_routes_everywhere(c: &Cluster, nodes: usize) {
    let gone = c.node_name(nodes);
    let cidr = install::pod_cidrs(c)[nodes - 1].clone();
    let has_route = |i: usize| {
        let out = c.on_node(i, &["ip", "route", "show", &cidr]);
        !out.stdout.is_empty()
    };
    for i in 1..nodes {
        assert!(has_route(i), "node {i} has no route to {cidr} before");
    }
    c.kubectl_ok(&[
        "drain",
        &gone,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=120s",
    ]);
    c.stop_node(nodes);
    c.kubectl_ok(&["delete", "node", &gone, "--wait=true", "--timeout=60s"]);
    for i in 1..nodes {
        c.wait_until(30, &format!("node {i} drops its route to {cidr}"), || {
            !has_route(i)
        });
    }
}
