//! A fresh node joining (scripts/cluster.sh join-node, labelled for the
//! network under test by its kubelet): the time from its Node object
//! appearing until a pod on it reaches a pod on every other node (one
//! ping each, all answered) — kubelet, the network's DaemonSet pod, the
//! agent's lease, every other node's route to the new subnet, the CNI
//! config and the pod's ADD. Then the node is removed for good, so the
//! other network's join is a fresh machine too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tweed_cluster::Cluster;
use tweed_cluster::pods::{Pod, pod, pod_netns, pods};
use tweed_cluster::side_by_side::{LABEL, Network};

use crate::ready::assert_made_by;
use crate::table::{Better, Table};

#[derive(Default)]
pub struct Results {
    secs: HashMap<&'static str, f64>,
}

fn pod_yaml(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{bench: join}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 0
  containers: [{{name: c, image: localhost/tweed-test:latest, imagePullPolicy: Never}}]
"
    )
}

/// True when one ping from `from` to each of `to` is answered.
fn reaches_all(c: &Cluster, i: usize, netns: &str, to: &[Pod]) -> bool {
    to.iter().all(|p| {
        c.on_node(
            i,
            &[
                "ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "1", &p.ip,
            ],
        )
        .status
        .success()
    })
}

impl Results {
    /// Node n+1 joins the cluster, every node of which runs `net`.
    pub fn measure(&mut self, c: &Cluster, net: Network) {
        let new = c.nodes + 1;
        let node = c.node_name(new);
        // One anchor pod on every other node.
        let anchors: String = (1..=c.nodes)
            .map(|i| pod_yaml(&format!("anchor-{i}"), &c.node_name(i)) + "---\n")
            .collect();
        c.apply(&anchors);
        c.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            "pod",
            "-l",
            "bench=join",
            "--timeout=120s",
        ]);
        let anchors = pods(c, "bench=join");

        c.join_node(new, &[&format!("{LABEL}={}", net.label())]);
        let registered = Instant::now();
        c.apply(&pod_yaml("joiner", &node));
        let deadline = registered + Duration::from_secs(300);
        let mut netns = None;
        let took = loop {
            assert!(
                Instant::now() < deadline,
                "{node} ({}): its pod does not reach every node after 300 s\n{}",
                net.label(),
                c.explain()
            );
            if netns.is_none() {
                let p = pod(c, "joiner");
                if !p.ip.is_empty() {
                    netns = Some((pod_netns(c, &p), p));
                }
            }
            if let Some((ns, _)) = &netns
                && reaches_all(c, new, ns, &anchors)
            {
                break registered.elapsed();
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let joiner = netns.expect("the joiner's namespace").1;
        assert_made_by(c, &joiner, net);
        println!(
            "join {:<8} {node}: Node object to its pod reaching every node's pod in {:.1} s",
            net.label(),
            took.as_secs_f64()
        );
        self.secs.insert(net.label(), took.as_secs_f64());

        c.kubectl_ok(&[
            "delete",
            "pods",
            "-l",
            "bench=join",
            "--force",
            "--grace-period=0",
        ]);
        c.remove_node(new);
        c.wait_until(120, &format!("no pod left on {node}"), || {
            let field = format!("spec.nodeName={node}");
            let all = c.json(&["get", "pods", "-A", "--field-selector", &field]);
            all["items"].as_array().is_some_and(|p| p.is_empty())
        });
    }

    pub fn report(&self, backend: &str, table: &mut Table) {
        table.add(
            "new node: Node object to its pod reaching every node",
            backend,
            "s",
            (self.secs["flannel"], self.secs["tweed"]),
            Better::Lower,
        );
    }
}
