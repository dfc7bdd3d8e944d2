//! `--store kube`: leases as Kubernetes Node objects, flannel's
//! `--kube-subnet-mgr` model with tweed's own annotations.
//!
//! - **Subnet:** assigned, not picked: a node's subnet is its
//!   `spec.podCIDR(s)` as kube-controller-manager allocated it
//!   (`--allocate-node-cidrs`), one per configured family, inside the
//!   net-conf.json network ([`LeaseStore::assignment`]).
//! - **Record:** the agent publishes its [`LeaseAttrs`] as
//!   `tweed.io/...` annotations on its own Node ([`node`]); a node is a
//!   peer once it carries them. Annotations do not expire: "create" and
//!   "renew" both write them (a merge patch; writing the same values is a
//!   no-op on the server, which sends no event for it). The patch goes to
//!   the `status` subresource, as flannel's does: kube-apiserver's node
//!   status strategy resets only `spec` there and keeps metadata, so the
//!   agent needs `patch` on `nodes/status` alone, never on `nodes` (which
//!   would let it change any node's spec: taints, unschedulable, podCIDR).
//! - **Readiness:** [`LeaseStore::announce_ready`] sets the node condition
//!   `NetworkUnavailable=False` (reason `TweedIsUp`) on the `status`
//!   subresource, as flannel does, so the scheduler places pods there.
//! - **Watching:** our own list + watch loop ([`watch`]), not kube-runtime's
//!   watcher, because the agent already owns relisting: the store trait
//!   speaks in revisions (`list` gives one, `watch` resumes after it) and a
//!   `Resync` event, which maps one to one onto resourceVersion, bookmarks
//!   and 410 Gone, without a second cache of every Node in kube-runtime.
//! - **Throttling:** kube's client retries 429 (and 503/504) answers
//!   itself, waiting as long as the server's `Retry-After` says; a request
//!   still throttled after that is an [`StoreError::Unavailable`] the
//!   caller backs off from.
//!
//! Credentials: `--kubeconfig PATH`, or in a pod the service account
//! (`KUBERNETES_SERVICE_HOST`/`_PORT` and
//! `/var/run/secrets/kubernetes.io/serviceaccount`).

pub mod blocks;
pub mod node;
mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::mpsc;

use self::node::{BadNode, CidrProblem, Networks};
use super::{Assignment, Created, LeaseStore, Snapshot, StoreError, WatchEvent};
use crate::lease::{Lease, LeaseKey};

/// Nodes per list request: a large cluster's list comes in pages.
const LIST_PAGE: u32 = 500;
/// The field manager named on tweed's writes.
const FIELD_MANAGER: &str = "tweedd";

#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// This node's name (`--node-name`, `NODE_NAME`).
    pub node_name: String,
    /// `--kubeconfig`; `None` means in-cluster (the pod's service account).
    pub kubeconfig: Option<PathBuf>,
    /// The cluster network(s) of net-conf.json.
    pub networks: Networks,
    /// `--flannel-compat`: read flannel's node annotations for nodes
    /// without tweed's, and write flannel's besides tweed's.
    pub flannel_compat: bool,
}

/// Leases by node name, as of one resourceVersion: the store's last list.
#[derive(Debug, Clone, Default)]
struct Listed {
    /// Counts the lists made, so a watch waiting for the next one sees it.
    generation: u64,
    revision: u64,
    leases: BTreeMap<String, Lease>,
}

#[derive(Clone)]
pub struct KubeStore {
    api: Api<Node>,
    node_name: String,
    networks: Networks,
    flannel_compat: bool,
    /// The last list, so a watch started from its revision knows which
    /// nodes the receiver already holds as peers, and a watch that had to
    /// ask for a resync goes on from the receiver's new list.
    last_list: Arc<tokio::sync::watch::Sender<Listed>>,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("node_name", &self.node_name)
            .field("networks", &self.networks)
            .finish()
    }
}

/// A client error as a store error: everything is worth retrying (an API
/// server that is down, RBAC applied late) but says what failed and, for
/// 401/403, what the agent needs.
fn api_error(what: &str, e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => StoreError::Unavailable(format!(
            "{what}: {} {}: {} (tweedd needs get/list/watch on nodes, patch on nodes/status and, for segments with a Subnet, get/list/create/update on coordination.k8s.io leases in its namespace; see docs/agent.md)",
            s.code, s.reason, s.message
        )),
        kube::Error::Api(s) => {
            StoreError::Unavailable(format!("{what}: {} {}: {}", s.code, s.reason, s.message))
        }
        other => StoreError::Unavailable(format!("{what}: {}", with_causes(&other))),
    }
}

/// An error with its chain of causes: the client's own message for a
/// failed connection is just "client error (Connect)", and the reason an
/// operator needs (an untrusted certificate, a refused connection) is
/// further down.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// A resourceVersion as the store trait's revision. The API calls them
/// opaque, but kube-apiserver's are etcd revisions, decimal numbers.
fn revision(rv: Option<&str>) -> Result<u64, StoreError> {
    let rv = rv.unwrap_or("0");
    rv.parse().map_err(|_| StoreError::BadRecord {
        key: "NodeList".into(),
        reason: format!("resourceVersion {rv:?} is not a number"),
    })
}

/// A client of the Kubernetes API (no request is made yet): from
/// `kubeconfig`, or from the pod's service account.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, StoreError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| StoreError::Config(format!("--kubeconfig {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| StoreError::Config(format!("--kubeconfig {}: {e}", path.display())))?
        }
        None => Config::incluster().map_err(|e| {
            StoreError::Config(format!(
                "without --kubeconfig, the Kubernetes API needs the in-cluster service account (KUBERNETES_SERVICE_HOST/PORT and /var/run/secrets/kubernetes.io/serviceaccount): {e}"
            ))
        })?,
    };
    Client::try_from(config).map_err(|e| StoreError::Config(format!("Kubernetes client: {e}")))
}

impl KubeStore {
    /// Builds the client (no request is made yet): from `--kubeconfig`, or
    /// from the pod's service account.
    pub async fn connect(opts: KubeOptions) -> Result<KubeStore, StoreError> {
        if opts.node_name.is_empty() {
            return Err(StoreError::Config(
                "--store kube needs this node's name: --node-name or NODE_NAME".into(),
            ));
        }
        let client = client(opts.kubeconfig.as_deref()).await?;
        Ok(KubeStore::with_client(client, opts))
    }

    /// The lease a node's annotations describe (flannel's too under
    /// `--flannel-compat`).
    fn lease_of_node(&self, node: &Node) -> Result<Option<Lease>, BadNode> {
        node::node_lease_or_flannel(node, &self.networks, self.flannel_compat)
    }

    /// The store of segment `name`'s address blocks: Lease objects in the
    /// agent's namespace, on the same client.
    pub fn segment_blocks(&self, name: &str) -> blocks::KubeBlockStore {
        blocks::KubeBlockStore::new(
            self.api.clone().into_client(),
            &blocks::agent_namespace(),
            name,
        )
    }

    /// A store on an existing client (tests).
    pub fn with_client(client: Client, opts: KubeOptions) -> KubeStore {
        KubeStore {
            api: Api::all(client),
            node_name: opts.node_name,
            networks: opts.networks,
            flannel_compat: opts.flannel_compat,
            last_list: Arc::new(tokio::sync::watch::Sender::new(Listed::default())),
        }
    }

    /// Every Node, page by page at the first page's resourceVersion (a
    /// consistent list); starts over when the continuation expired.
    async fn list_nodes(&self) -> Result<(u64, Vec<Node>), StoreError> {
        let mut attempts = 0;
        'list: loop {
            attempts += 1;
            let mut nodes = Vec::new();
            let mut rv = None;
            let mut token: Option<String> = None;
            loop {
                let mut lp = ListParams::default().limit(LIST_PAGE);
                if let Some(t) = &token {
                    lp = lp.continue_token(t);
                }
                let page = match self.api.list(&lp).await {
                    Ok(p) => p,
                    Err(e) if is_status(&e, 410) && attempts < 3 => continue 'list,
                    Err(e) => return Err(api_error("listing nodes", e)),
                };
                rv.get_or_insert(page.metadata.resource_version.clone());
                nodes.extend(page.items);
                token = page.metadata.continue_.filter(|t| !t.is_empty());
                if token.is_none() {
                    break;
                }
            }
            return Ok((revision(rv.flatten().as_deref())?, nodes));
        }
    }

    /// The leases among `nodes`, by node name; nodes with a broken record
    /// are skipped with a warning (a list must not fail on one bad node).
    fn leases_of(&self, nodes: &[Node]) -> BTreeMap<String, Lease> {
        nodes
            .iter()
            .filter_map(|n| match self.lease_of_node(n) {
                Ok(l) => l.map(|l| (l.attrs.node_name.clone(), l)),
                Err(e) => {
                    warn_bad_node(&e);
                    None
                }
            })
            .collect()
    }

    /// Writes `lease`'s record onto our Node (through `nodes/status`, see
    /// the module's header); returns the Node as stored, `None` when it
    /// does not exist.
    async fn publish(&self, lease: &Lease) -> Result<Option<Node>, StoreError> {
        let patch = node::annotations_patch(&lease.attrs, self.flannel_compat);
        let pp = PatchParams::apply(FIELD_MANAGER);
        match self
            .api
            .patch_status(&self.node_name, &pp, &Patch::Merge(&patch))
            .await
        {
            Ok(n) => Ok(Some(n)),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(api_error("annotating this node", e)),
        }
    }

    fn subnet_of(&self, node: &Node) -> Result<LeaseKey, CidrProblem> {
        node::pod_subnet(node, &self.networks)
    }
}

fn warn_bad_node(e: &BadNode) {
    tracing::warn!(error = %e, "kube: ignoring a node whose tweed record is unusable");
}

impl LeaseStore for KubeStore {
    async fn assignment(&self) -> Result<Assignment, StoreError> {
        let node = match self.api.get_opt(&self.node_name).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                return Ok(Assignment::Pending(format!(
                    "node {:?} does not exist in the Kubernetes API (yet): --node-name/NODE_NAME must be the kubelet's node name (the DaemonSet passes spec.nodeName)",
                    self.node_name
                )));
            }
            Err(e) => return Err(api_error("reading this node", e)),
        };
        Ok(match self.subnet_of(&node) {
            Ok(key) => Assignment::Assigned(key),
            Err(problem) => Assignment::Pending(problem.to_string()),
        })
    }

    async fn announce_ready(&self, _lease: &Lease) -> Result<(), StoreError> {
        // The Node itself carries its status: reading it needs only `get`
        // on nodes, not on nodes/status (deploy/tweed.yaml grants no more).
        let current = self
            .api
            .get(&self.node_name)
            .await
            .map_err(|e| api_error("reading this node's conditions", e))?;
        if node::is_marked_ready(&current) {
            return Ok(());
        }
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let patch = node::ready_condition_patch(now);
        self.api
            .patch_status(
                &self.node_name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Strategic(&patch),
            )
            .await
            .map_err(|e| api_error("setting NetworkUnavailable=False", e))?;
        tracing::info!(node = %self.node_name, "kube: node condition NetworkUnavailable=False (TweedIsUp) set");
        Ok(())
    }

    async fn list(&self) -> Result<Snapshot, StoreError> {
        let (rv, nodes) = self.list_nodes().await?;
        let leases = self.leases_of(&nodes);
        self.last_list.send_modify(|last| {
            last.generation += 1;
            last.revision = rv;
            last.leases = leases.clone();
        });
        Ok(Snapshot {
            leases: leases.into_values().collect(),
            revision: rv,
        })
    }

    /// Publishes our record for the assigned subnet: `Taken` when the node
    /// is gone or its podCIDR no longer is `lease.key` (the agent asks for
    /// the assignment again).
    async fn create(&self, lease: &Lease, _ttl: Duration) -> Result<Created, StoreError> {
        if lease.attrs.node_name != self.node_name {
            return Err(StoreError::Config(format!(
                "the kube store writes only its own node's record ({}), not {}'s",
                self.node_name, lease.attrs.node_name
            )));
        }
        match self.publish(lease).await? {
            Some(n) if self.subnet_of(&n).ok() == Some(lease.key) => {
                tracing::info!(node = %self.node_name, subnet = %lease.key, "kube: published this node's record as tweed.io/ annotations");
                Ok(Created::Yes(lease.clone()))
            }
            _ => Ok(Created::Taken),
        }
    }

    async fn renew(&self, lease: &Lease, _ttl: Duration) -> Result<Lease, StoreError> {
        match self.publish(lease).await? {
            Some(n) if self.subnet_of(&n).ok() == Some(lease.key) => Ok(lease.clone()),
            _ => Err(StoreError::LeaseLost(lease.key)),
        }
    }

    /// Removes the tweed record from whichever node holds `key`.
    async fn delete(&self, key: &LeaseKey) -> Result<(), StoreError> {
        let (_, nodes) = self.list_nodes().await?;
        for n in nodes {
            if self.subnet_of(&n).ok() != Some(*key) {
                continue;
            }
            let name = n.metadata.name.clone().unwrap_or_default();
            self.api
                .patch_status(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER),
                    &Patch::Merge(&node::remove_annotations_patch()),
                )
                .await
                .map_err(|e| api_error("removing a node's tweed annotations", e))?;
        }
        Ok(())
    }

    async fn watch(&self, revision: u64) -> Result<mpsc::Receiver<WatchEvent>, StoreError> {
        let known = {
            let last = self.last_list.borrow();
            if last.revision == revision {
                last.leases.clone()
            } else {
                BTreeMap::new()
            }
        };
        Ok(watch::spawn(self.clone(), revision, known))
    }
}
