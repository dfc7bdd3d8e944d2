//! `tweedd --network-policy` end to end: a real kube-apiserver with
//! deploy/tweed.yaml's RBAC (tweedd authenticates as the DaemonSet's
//! service account), a node namespace with pods on a bridge and one pod
//! routed in from "another node" (tweed_testkit::bridged_pods), and TCP
//! connects between the pods telling what the kernel lets through as
//! NetworkPolicies, pod labels and tweedd's flag change.
//!
//! The control plane runs inside the node's namespace, so tweedd reaches
//! it on 127.0.0.1 there and nothing touches the host's network.

#[allow(dead_code)] // each test binary uses a part of it
mod kube_real;
mod policy_agent;

use kube_real::Cluster;
use policy_agent::{has_table, stop, wait_until};
use serde_json::json;
use tweed_testkit::bridged_pods::{BridgedPods, in_ns};

#[test]
fn network_policies_from_the_api_are_enforced_on_the_node() {
    let pods = BridgedPods::new();
    let node = pods.node.name.clone();
    let c = in_ns(&node, Cluster::start);
    let kubectl =
        |args: &[&str], stdin: Option<&str>| in_ns(&node, || c.api.kubectl_in_ok(args, stdin));
    // No controller-manager here to make the namespace's service account.
    let _ = in_ns(&node, || {
        c.api
            .kubectl(&["create", "serviceaccount", "default"], None)
    });
    for (name, on, app) in [
        ("a", "n1", "a"),
        ("b", "n1", "b"),
        ("c", "n1", "c"),
        ("r", "n2", "r"),
    ] {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"nodeName": on, "automountServiceAccountToken": false,
                     "containers": [{"name": "c", "image": "localhost/none",
                                     "ports": [{"name": "echo", "containerPort": 80}]}]},
        });
        kubectl(&["create", "-f", "-"], Some(&pod.to_string()));
        let ip = pods.addr(name);
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
        kubectl(
            &[
                "patch",
                "pod",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        );
    }
    pods.listen(80);
    pods.listen(81);

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tweedd.log");
    let agent = policy_agent::start(&node, "n1", dir.path(), &c.kubeconfig, true);
    wait_until("tweedd applies its (empty) rules", 60, &log, || {
        has_table(&node)
    });
    for (from, to) in [("a", "b"), ("c", "b"), ("r", "b")] {
        assert!(pods.passes(from, to, 80), "{from} -> {to} without policies");
    }

    // b takes port 80 ("echo", by name) from pods labelled app=a only.
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "b-from-a", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"app": "b"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
                              "ports": [{"port": "echo"}]}]},
    });
    kubectl(&["create", "-f", "-"], Some(&policy.to_string()));
    let took = wait_until("c -> b refused", 20, &log, || !pods.passes("c", "b", 80));
    println!(
        "policy created -> enforced in {} ms (connect probes)",
        took.as_millis()
    );
    assert!(pods.passes("a", "b", 80), "a -> b:80 is allowed");
    assert!(!pods.passes("a", "b", 81), "a -> b:81: not the named port");
    assert!(!pods.passes("r", "b", 80), "r (another node) -> b");
    assert!(pods.passes("b", "c", 80), "c is not isolated");

    // Selectors follow the pods: c relabelled app=a is let in.
    kubectl(&["label", "pod", "c", "app=a", "--overwrite"], None);
    wait_until("c (now app=a) -> b allowed", 20, &log, || {
        pods.passes("c", "b", 80)
    });

    // The policy deleted: everyone again.
    kubectl(&["delete", "networkpolicy", "b-from-a"], None);
    wait_until("r -> b allowed again", 20, &log, || {
        pods.passes("r", "b", 80)
    });

    // Stopping tweedd leaves the rules; a run without the flag removes them.
    stop(agent);
    assert!(has_table(&node), "the rules stay when tweedd stops");
    let agent = policy_agent::start(&node, "n1", dir.path(), &c.kubeconfig, false);
    wait_until("the table removed", 30, &log, || !has_table(&node));
    stop(agent);
}
