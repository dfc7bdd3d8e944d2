//! What the kube store's tests against a real API server share: a control
//! plane of their own ([`tweed_testkit::kubeapi`]: etcd + kube-apiserver,
//! TLS, RBAC) with deploy/tweed.yaml's Namespace, ServiceAccount and RBAC
//! applied, and stores that authenticate with that service account's token
//! — so every call the store makes is allowed or refused exactly as in a
//! cluster running the DaemonSet. Setup and checks that are not tweedd's
//! own (creating Nodes, kubelet's status, reading objects back) are done
//! as the cluster admin with the built kubectl.
//!
//! Each test starts its own control plane (about 4 s): tests share no
//! state, and one that restarts its API server or compacts its etcd
//! disturbs no other.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tweed_testkit::kubeapi::{KubeApi, KubeApiOpts, ServiceAccount, repo_root};
use tweedd::config::NetConfig;
use tweedd::lease::{Lease, LeaseAttrs, LeaseKey};
use tweedd::store::WatchEvent;
use tweedd::store::kube::node::Networks;
use tweedd::store::kube::{KubeOptions, KubeStore};

pub const TTL: Duration = Duration::from_secs(3600);

pub struct Cluster {
    pub api: KubeApi,
    /// The DaemonSet's service account (kube-tweed/tweed).
    pub sa: ServiceAccount,
    /// A kubeconfig with its token.
    pub kubeconfig: PathBuf,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(KubeApiOpts::default())
    }

    pub fn start_with(opts: KubeApiOpts) -> Cluster {
        let api = KubeApi::start_with(opts);
        let sa = api.apply_rbac(&repo_root().join("deploy/tweed.yaml"));
        let kubeconfig = api.token_kubeconfig(&sa);
        Cluster {
            api,
            sa,
            kubeconfig,
        }
    }

    /// Node `node`'s agent's store, as the DaemonSet's service account.
    pub async fn store(&self, node: &str) -> KubeStore {
        self.store_with(node, false).await
    }

    pub async fn store_with(&self, node: &str, flannel_compat: bool) -> KubeStore {
        KubeStore::connect(KubeOptions {
            node_name: node.into(),
            kubeconfig: Some(self.kubeconfig.clone()),
            flannel_compat,
            networks: Networks {
                ipv4: Some("10.244.0.0/16".parse().unwrap()),
                ipv6: None,
            },
        })
        .await
        .expect("kube store")
    }

    /// A client as the DaemonSet's service account.
    pub async fn client(&self) -> kube::Client {
        client_of(&self.kubeconfig).await
    }

    /// A client as the cluster admin, for what a test or bench sets up.
    pub async fn admin_client(&self) -> kube::Client {
        client_of(self.api.admin_kubeconfig()).await
    }

    /// A Node as stored.
    pub fn node(&self, name: &str) -> Value {
        self.api.get_json(&["node", name])
    }

    pub fn resource_version(&self, name: &str) -> String {
        self.node(name)["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// What kubelet reports: `Ready` as given (a status change that is no
    /// lease change).
    pub fn kubelet_status(&self, name: &str, ready: bool) {
        let patch = json!({"status": {"conditions": [{
            "type": "Ready",
            "status": if ready { "True" } else { "False" },
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
        }]}});
        self.api.kubectl_ok(&[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=strategic",
            "-p",
            &patch.to_string(),
        ]);
    }

    /// Writes annotations onto a node as the admin (flannel's, a broken
    /// record, one outside tweed's network).
    pub fn annotate(&self, name: &str, annotations: Value) {
        self.api
            .patch_node(name, &json!({"metadata": {"annotations": annotations}}));
    }
}

async fn client_of(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

pub fn config() -> NetConfig {
    NetConfig::parse(
        r#"{"Network": "10.244.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan"}}"#,
    )
    .unwrap()
}

/// Node `node`'s record: its underlay address and VTEP MAC.
pub fn attrs(node: &str, ip: &str, mac: &str) -> LeaseAttrs {
    LeaseAttrs {
        public_ip: Some(ip.parse().unwrap()),
        public_ipv6: None,
        backend_type: "vxlan".into(),
        backend_data: json!({"VNI": 1, "VtepMAC": mac}).into(),
        backend_v6_data: tweedd::lease::BackendData::null(),
        node_name: node.to_string(),
        segment_macs: Default::default(),
        wire_ends: Default::default(),
    }
}

/// Node `node`'s agent publishing its record (n<i>: 198.18.0.<i>,
/// 02:00:00:00:00:<i>), as a peer's agent does.
pub async fn publish(c: &Cluster, node: &str, i: u8) -> Lease {
    let store = c.store(node).await;
    let a = attrs(
        node,
        &format!("198.18.0.{i}"),
        &format!("02:00:00:00:00:{i:02x}"),
    );
    tweedd::leasing::acquire(&store, &config().pools, move |_| a.clone(), None, TTL)
        .await
        .unwrap_or_else(|e| panic!("{node} publishing its record: {e}"))
}

pub fn key(s: &str) -> LeaseKey {
    s.parse().unwrap()
}

pub async fn next(rx: &mut mpsc::Receiver<WatchEvent>, within: Duration) -> Option<WatchEvent> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

/// Nothing more arrives for `d`.
pub async fn quiet(rx: &mut mpsc::Receiver<WatchEvent>, d: Duration) {
    if let Some(ev) = next(rx, d).await {
        panic!("unexpected event {ev:?}");
    }
}

pub fn put_of(ev: Option<WatchEvent>) -> Lease {
    match ev {
        Some(WatchEvent::Put(l)) => l,
        other => panic!("expected a Put, got {other:?}"),
    }
}
