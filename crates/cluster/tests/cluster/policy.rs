//! NetworkPolicy as deploy/tweed.yaml ships it (`--network-policy` on):
//! the web pods (one per node) opened only to pods labelled
//! `role=client`, on their port 8080, and what then passes: a labelled
//! pod on another node, not an unlabelled one on another node nor one on
//! the same node (bridged), kubelet's readiness probes still (the node's
//! own traffic), and everything again once the policy is deleted.

use tweed_cluster::Cluster;
use tweed_cluster::pods::{Pod, http_from, sleeper};

const POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-clients, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
    - from: [{podSelector: {matchLabels: {role: client}}}]
      ports: [{protocol: TCP, port: 8080}]
"#;

fn reaches(c: &Cluster, from: &Pod, to: &Pod) -> bool {
    http_from(c, &from.name, &format!("http://{}:8080/", to.ip)).is_ok()
}

pub fn network_policies_are_enforced(c: &Cluster, web: &[Pod]) {
    let target = &web[0];
    let far = web
        .iter()
        .find(|p| p.node != target.node)
        .expect("web pods on two nodes")
        .node
        .clone();
    let allowed = sleeper(c, "policy-client", &far, "role: client");
    let stranger = sleeper(c, "policy-stranger", &far, "role: other");
    let neighbour = sleeper(c, "policy-neighbour", &target.node, "role: other");
    for p in [&allowed, &stranger, &neighbour] {
        assert!(
            reaches(c, p, target),
            "{} -> {} before any policy",
            p.name,
            target.name
        );
    }

    c.apply(POLICY);
    c.wait_until(30, "the stranger refused by web-from-clients", || {
        !reaches(c, &stranger, target)
    });
    assert!(
        reaches(c, &allowed, target),
        "role=client on another node is let in"
    );
    assert!(
        !reaches(c, &neighbour, target),
        "an unlabelled pod on the same node (bridged) is refused"
    );
    // The node's own traffic (kubelet's readiness probes) passes: after
    // several probe periods every web pod is still Ready.
    std::thread::sleep(std::time::Duration::from_secs(8));
    let ready = c.json(&["get", "deploy", "web"])["status"]["readyReplicas"].clone();
    assert_eq!(ready, web.len(), "web pods stay Ready under the policy");

    c.kubectl_ok(&["delete", "networkpolicy", "web-from-clients"]);
    c.wait_until(30, "everyone let in again", || {
        reaches(c, &stranger, target) && reaches(c, &neighbour, target)
    });
    c.kubectl_ok(&[
        "delete",
        "pod",
        "policy-client",
        "policy-stranger",
        "policy-neighbour",
        "--wait=false",
    ]);
}
