//! The bench's cluster. One control plane (etcd and kube-apiserver with
//! deploy/tweed.yaml's RBAC: the tests' `kube_real::Cluster`) in the
//! namespace the bench runs in, and N nodes, each a
//! tweed_testkit::bridged_pods node with its pods a, b, c in
//! 10.244.<k>.0/24, a relay to the API server, and its own tweedd
//! `--network-policy` authenticating as the DaemonSet's service account.
//! The pods' objects are `n<k>-a`, `-b`, `-c` in `default`, labelled
//! `app=a|b|c`, with the nodes' real addresses.
//!
//! Dropped in order: tweedds, relays, nodes, control plane.

use std::path::PathBuf;
use std::process::Child;

use serde_json::json;
use tweed_testkit::bridged_pods::BridgedPods;

use crate::kube_real::Cluster;
use crate::objects::{PodSpec, create_default_service_account, create_pods};
use crate::policy_agent;
use crate::relay::Relay;

pub struct Node {
    /// The node's name in the API (`n<k>`).
    pub name: String,
    agent: Option<Child>,
    _relay: Relay,
    pub pods: BridgedPods,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

pub struct Fabric {
    pub nodes: Vec<Node>,
    pub cluster: Cluster,
}

impl Node {
    pub fn ns(&self) -> &str {
        &self.pods.node.name
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("tweedd.log")
    }

    pub fn agent_pid(&self) -> u32 {
        self.agent.as_ref().expect("tweedd runs").id()
    }

    pub fn stop_agent(&mut self) {
        if let Some(child) = self.agent.take() {
            policy_agent::stop(child);
        }
    }

    /// Starts tweedd and waits until it has applied its first rules.
    pub fn start_agent(&mut self) {
        assert!(self.agent.is_none(), "{}: tweedd runs already", self.name);
        let agent = policy_agent::start(
            self.ns(),
            &self.name,
            self.dir.path(),
            &self.kubeconfig,
            true,
        );
        self.agent = Some(agent);
        let ns = self.ns().to_string();
        policy_agent::wait_until("tweedd applies its rules", 90, &self.log(), || {
            policy_agent::has_table(&ns)
        });
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_agent();
    }
}

impl Fabric {
    /// The control plane in the calling thread's namespace, `nodes` nodes.
    pub async fn start(control_plane_ns: &str, nodes: usize) -> Fabric {
        let cluster = Cluster::start();
        let admin = cluster.admin_client().await;
        let mut fabric = Fabric {
            nodes: Vec::new(),
            cluster,
        };
        // Every node's pods in a /24 of their own, the remote pods (which
        // the bench does not use) in 10.244.1xx.0/24.
        for k in 1..=nodes {
            let k8 = u8::try_from(k).expect("at most 99 nodes");
            let pods = BridgedPods::on_subnets(k8, 100 + k8);
            let relay = Relay::start(&pods.node.name, control_plane_ns, fabric.cluster.api.port());
            fabric.nodes.push(Node {
                name: format!("n{k}"),
                agent: None,
                _relay: relay,
                pods,
                dir: tempfile::tempdir().expect("a directory for tweedd"),
                kubeconfig: fabric.cluster.kubeconfig.clone(),
            });
        }
        create_default_service_account(&admin, "default").await;
        let specs: Vec<PodSpec> = fabric
            .nodes
            .iter()
            .flat_map(|n| {
                ["a", "b", "c"].map(|p| PodSpec {
                    namespace: "default".into(),
                    name: format!("{}-{p}", n.name),
                    node: n.name.clone(),
                    labels: json!({"app": p}),
                    ip: n.pods.addr(p).to_string(),
                })
            })
            .collect();
        create_pods(&admin, &specs).await;
        for n in &fabric.nodes {
            n.pods.listen(crate::enforcement::PORT);
        }
        for n in &mut fabric.nodes {
            n.start_agent();
        }
        fabric
    }
}
