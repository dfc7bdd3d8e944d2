//! Cross-node TCP throughput in the cluster: one iperf3 stream from a pod
//! on node 1 to a pod on node 2 (tweed's data path: veth, bridge, the
//! backend's tunnel, and back), next to the same stream between the two
//! nodes themselves (the underlay, the ceiling) in the same run. Runs
//! alternate; medians and the median of per-round ratios.
//!
//! iperf3 runs in the pods' network namespaces, entered from the node (the
//! test image has no iperf3; the host's binary is the same program on both
//! paths).

use tweed_cluster::Cluster;
use tweed_cluster::iperf::{End, iperf};
use tweed_cluster::pods::{pod, pod_netns};
use tweed_testkit::stats::{max, median, min};

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: iperf-a, labels: {bench: iperf}}
spec:
  nodeName: tweed-n1
  terminationGracePeriodSeconds: 0
  containers: [{name: c, image: localhost/tweed-test:latest, imagePullPolicy: Never}]
---
apiVersion: v1
kind: Pod
metadata: {name: iperf-b, labels: {bench: iperf}}
spec:
  nodeName: tweed-n2
  terminationGracePeriodSeconds: 0
  containers: [{name: c, image: localhost/tweed-test:latest, imagePullPolicy: Never}]
"#;

pub fn compare(c: &Cluster, secs: usize) {
    c.apply(PODS);
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/iperf-a",
        "pod/iperf-b",
        "--timeout=120s",
    ]);
    let (a, b) = (pod(c, "iperf-a"), pod(c, "iperf-b"));
    let pod_a = End {
        node: 1,
        netns: Some(pod_netns(c, &a)),
    };
    let pod_b = End {
        node: 2,
        netns: Some(pod_netns(c, &b)),
    };
    let (node_a, node_b) = (
        End {
            node: 1,
            netns: None,
        },
        End {
            node: 2,
            netns: None,
        },
    );
    let rounds = 5;
    let (mut pods, mut under, mut ratios) = (vec![], vec![], vec![]);
    for r in 0..rounds {
        let (p, u) = if r % 2 == 0 {
            let p = iperf(c, &pod_a, &pod_b, &b.ip, secs);
            (p, iperf(c, &node_a, &node_b, "198.18.1.12", secs))
        } else {
            let u = iperf(c, &node_a, &node_b, "198.18.1.12", secs);
            (iperf(c, &pod_a, &pod_b, &b.ip, secs), u)
        };
        println!(
            "round {}: pod to pod {p:.2} Gbit/s, node to node {u:.2} Gbit/s",
            r + 1
        );
        pods.push(p);
        under.push(u);
        ratios.push(p / u);
    }
    c.kubectl_ok(&["delete", "pods", "-l", "bench=iperf", "--wait=true"]);
    println!(
        "\ncross-node TCP, one iperf3 stream, {rounds} runs of {secs} s each, alternating (Gbit/s)"
    );
    println!("| path | median | min | max |\n|---|---|---|---|");
    for (name, xs) in [
        ("pod to pod (tweed vxlan)", &pods),
        ("node to node (underlay)", &under),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} |",
            median(xs),
            min(xs),
            max(xs)
        );
    }
    println!(
        "pod / underlay: {:.3} of medians, {:.3} median of per-round ratios",
        median(&pods) / median(&under),
        median(&ratios)
    );
}
