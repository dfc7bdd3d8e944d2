//! The API objects the bench writes, as the cluster admin: Namespaces
//! (with the `default` ServiceAccount the API's admission wants before
//! it takes Pods), Pods with the
//! status kubelet would report (phase and podIP), NetworkPolicies. Pods
//! never run: tweedd reads only their labels, ports, node and addresses.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// How many writes the bench keeps in flight when it makes many objects.
const IN_FLIGHT: usize = 8;

/// A Pod to create with [`create_pods`].
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: Value,
    pub ip: String,
}

/// The bench's sets of policies, each labelled `bench=<set>` so that it
/// is deleted in one call.
#[derive(Debug, Clone, Copy)]
pub enum NetworkPolicySet {
    /// The policy changed in figure 1.
    Change,
    /// Figure 2's 1,000 rules.
    Rules,
    /// Figure 3's load.
    Load,
}

impl NetworkPolicySet {
    fn label(self) -> &'static str {
        match self {
            NetworkPolicySet::Change => "change",
            NetworkPolicySet::Rules => "rules",
            NetworkPolicySet::Load => "load",
        }
    }
}

pub async fn create_namespace(client: &Client, name: &str, labels: Value) {
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    create_default_service_account(client, name).await;
}

/// No controller-manager makes a namespace's `default` ServiceAccount
/// here, and the API takes no Pod into a namespace without one.
pub async fn create_default_service_account(client: &Client, namespace: &str) {
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap_or_else(|e| panic!("create {namespace}'s default service account: {e}"));
}

async fn create_pod(client: &Client, p: &PodSpec) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": p.name, "namespace": p.namespace, "labels": p.labels},
        "spec": {"nodeName": p.node, "automountServiceAccountToken": false,
                 "containers": [{"name": "c", "image": "localhost/none", "ports": [
                     {"name": "http", "containerPort": 8080},
                     {"name": "metrics", "containerPort": 9090}]}]},
    }))
    .unwrap();
    let api = Api::<Pod>::namespaced(client.clone(), &p.namespace);
    api.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create pod {}/{}: {e}", p.namespace, p.name));
    let status = json!({"status": {"phase": "Running", "podIP": p.ip, "podIPs": [{"ip": p.ip}]}});
    api.patch_status(&p.name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("status of pod {}/{}: {e}", p.namespace, p.name));
}

/// Creates the pods, [`IN_FLIGHT`] at a time.
pub async fn create_pods(client: &Client, pods: &[PodSpec]) {
    futures::stream::iter(pods)
        .for_each_concurrent(IN_FLIGHT, |p| create_pod(client, p))
        .await;
}

/// A NetworkPolicy `name` in `namespace`, one of `set`.
pub fn policy(namespace: &str, name: &str, set: NetworkPolicySet, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace, "labels": {"bench": set.label()}},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("policy {name}: {e}"))
}

pub async fn create_policy(client: &Client, p: &NetworkPolicy) {
    let ns = p.metadata.namespace.as_deref().unwrap();
    Api::<NetworkPolicy>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), p)
        .await
        .unwrap_or_else(|e| panic!("create policy {ns}/{:?}: {e}", p.metadata.name));
}

/// Creates the policies, [`IN_FLIGHT`] at a time.
pub async fn create_policies(client: &Client, policies: &[NetworkPolicy]) {
    futures::stream::iter(policies)
        .for_each_concurrent(IN_FLIGHT, |p| create_policy(client, p))
        .await;
}

/// Deletes every policy of `set`, in every namespace.
pub async fn delete_policies(client: &Client, set: NetworkPolicySet) {
    let api = Api::<NetworkPolicy>::all(client.clone());
    let selector = ListParams::default().labels(&format!("bench={}", set.label()));
    let found = api
        .list(&selector)
        .await
        .unwrap_or_else(|e| panic!("list policies {set:?}: {e}"));
    futures::stream::iter(found.items)
        .map(Ok::<_, kube::Error>)
        .try_for_each_concurrent(IN_FLIGHT, |p| async move {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let name = p.metadata.name.clone().unwrap_or_default();
            Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
                .delete(&name, &DeleteParams::default())
                .await
                .map(|_| ())
        })
        .await
        .unwrap_or_else(|e| panic!("delete policies {set:?}: {e}"));
}

/// A JSON merge patch of the labels of pod `namespace/name` (a `null`
/// value removes a label).
pub async fn label_pod(client: &Client, namespace: &str, name: &str, labels: Value) {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await
        .unwrap_or_else(|e| panic!("label pod {namespace}/{name}: {e}"));
}
