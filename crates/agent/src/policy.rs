//! NetworkPolicy enforcement (`--network-policy`): NetworkPolicies, Pods
//! and Namespaces followed from the Kubernetes API, compiled for this
//! node's pods and applied as one nftables transaction
//! ([`tweed_policy`]) after every change that alters the result.
//!
//! - Nothing is enforced until all three lists are complete: a policy
//!   applied before the pods it names are known would deny their
//!   traffic.
//! - Changes arriving together are applied together: the task waits
//!   [`SETTLE`] after an event for more before it compiles.
//! - A compile that gives what is already in the kernel applies nothing
//!   (pod status updates are frequent and rarely matter).
//! - A failed apply is retried on the next change or after [`RETRY`].
//! - Bridged traffic between pods of this node reaches the rules only
//!   when the bridge passes it to the IP hooks
//!   (`net.bridge.bridge-nf-call-iptables` and `-ip6tables`, from the
//!   `br_netfilter` module): the task turns them on when they are off,
//!   and warns when it cannot (a container's /proc/sys is read-only).
//!
//! Stopping tweedd leaves the rules in place, like the rest of the data
//! plane; without the flag, tweedd removes a table a run with it left.

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tweed_netlink::nft;
use tweed_policy::{Cluster, PodPolicy, compile, render};

/// How long to wait after a change for the ones that come with it.
const SETTLE: Duration = Duration::from_millis(50);
/// How soon a failed apply is tried again without a new change.
const RETRY: Duration = Duration::from_secs(5);

/// Starts enforcing NetworkPolicies for the pods of node `node`.
pub fn spawn(client: Client, node: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(client, node))
}

/// Removes the rules a run with `--network-policy` left (none: nothing
/// to do).
pub fn remove_stale() {
    if let Err(e) = nft::delete_table(
        nftables::types::NfFamily::INet,
        render::TABLE,
        "remove the NetworkPolicy rules",
    ) {
        tracing::debug!("no NetworkPolicy rules removed: {e}");
    }
}

/// A reflector's store and the stream that fills it, turned into "something
/// changed" ticks.
fn follow<K>(api: Api<K>) -> (Store<K>, impl Stream<Item = ()> + Send)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .filter_map(|event| async move {
            match event {
                Ok(_) => Some(()),
                Err(e) => {
                    tracing::warn!("NetworkPolicy watch: {e}");
                    None
                }
            }
        });
    (store, stream)
}

/// Whether a store holds its first complete list.
fn listed<K: kube::Resource<DynamicType = ()> + Clone + 'static>(store: &Store<K>) -> bool {
    futures::FutureExt::now_or_never(store.wait_until_ready()).is_some()
}

fn set_bridge_hooks() {
    for key in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"] {
        // Often already on (kube-proxy needs it too); a container's
        // /proc/sys is read-only, so write only when it is not.
        let path = format!("/proc/sys/net/bridge/{key}");
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
            continue;
        }
        if let Err(e) = tweed_netlink::sysctl::write(&["net", "bridge", key], "1") {
            tracing::warn!(
                "cannot set net.bridge.{key} ({e}): traffic between pods of this node is not policed; load br_netfilter"
            );
        }
    }
}

async fn run(client: Client, node: String) {
    set_bridge_hooks();
    let (policies, policy_events) = follow(Api::<NetworkPolicy>::all(client.clone()));
    let (pods, pod_events) = follow(Api::<Pod>::all(client.clone()));
    let (namespaces, ns_events) = follow(Api::<Namespace>::all(client));
    let mut events = futures::stream::select(
        futures::stream::select(policy_events, pod_events),
        ns_events,
    )
    .boxed();
    let mut applied: Option<Vec<PodPolicy>> = None;
    let mut retry = false;
    loop {
        let changed = if retry {
            tokio::time::timeout(RETRY, events.next())
                .await
                .unwrap_or(Some(()))
        } else {
            events.next().await
        };
        if changed.is_none() {
            return;
        }
        // What comes with this change, applied with it.
        while let Ok(Some(())) = tokio::time::timeout(SETTLE, events.next()).await {}
        if !(listed(&policies) && listed(&pods) && listed(&namespaces)) {
            continue;
        }
        let cluster = Cluster::from_objects(
            pods.state().iter().map(AsRef::as_ref),
            namespaces.state().iter().map(AsRef::as_ref),
        );
        let wanted = compile(&policies.state(), &cluster, |p| {
            p.node.as_deref() == Some(node.as_str())
        });
        if applied.as_ref() == Some(&wanted) {
            retry = false;
            continue;
        }
        let ruleset = render::ruleset(&wanted);
        let result = tokio::task::spawn_blocking(move || {
            nft::apply(&ruleset, "apply the NetworkPolicy rules")
        })
        .await;
        match result {
            Ok(Ok(())) => {
                let isolated = wanted.iter().filter(|p| p.isolated()).count();
                tracing::info!(
                    policies = policies.state().len(),
                    pods = wanted.len(),
                    isolated,
                    "NetworkPolicy rules applied"
                );
                applied = Some(wanted);
                retry = false;
            }
            Ok(Err(e)) => {
                tracing::error!("{e}; trying again");
                retry = true;
            }
            Err(e) => {
                tracing::error!("applying the NetworkPolicy rules: {e}; trying again");
                retry = true;
            }
        }
    }
}
