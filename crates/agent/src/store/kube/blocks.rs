//! Segment address blocks in Kubernetes: one `coordination.k8s.io/v1`
//! Lease object per claimed block, in the agent's namespace.
//!
//! Node objects cannot hold claims (two nodes can annotate themselves with
//! the same block and neither write fails), while creating a named object
//! is atomic: the API server refuses a second create of the same name
//! with 409. So a block's object is named after the segment and the block
//! (`tweed-seg-lab1-192-168-50-16-28`), its holder is the node, and its
//! `renewTime` + `leaseDurationSeconds` say when it lapses — the object
//! Kubernetes itself uses for this (leader election, node heartbeats).
//! Taking over a lapsed block replaces the object under its
//! `resourceVersion`, so two nodes cannot both take it either.
//!
//! Labels: `tweed.io/segment=<name>`; annotation `tweed.io/block` holds
//! the block in lease-key form and `tweed.io/record` the record (who holds
//! it, from where).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease as KubeLease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use tokio::sync::mpsc;

use super::{api_error, is_status};
use crate::lease::{Lease, LeaseAttrs, LeaseKey};
use crate::store::{Created, LeaseStore, Snapshot, StoreError, WatchEvent};

const SEGMENT_LABEL: &str = "tweed.io/segment";
const BLOCK_ANNOTATION: &str = "tweed.io/block";
const RECORD_ANNOTATION: &str = "tweed.io/record";
/// Where the blocks live when the agent's namespace is unknown.
pub const DEFAULT_NAMESPACE: &str = "kube-system";
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The namespace the agent runs in: `POD_NAMESPACE` (the DaemonSet sets
/// it), else the service account's, else [`DEFAULT_NAMESPACE`].
pub fn agent_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
}

#[derive(Clone)]
pub struct KubeBlockStore {
    api: Api<KubeLease>,
    segment: String,
}

impl std::fmt::Debug for KubeBlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeBlockStore")
            .field("segment", &self.segment)
            .finish()
    }
}

/// `tweed-seg-lab1-192-168-50-16-28`: a valid object name for any block.
fn object_name(segment: &str, key: &LeaseKey) -> String {
    let block = key.to_string().replace(['.', ':', '&'], "-");
    format!("tweed-seg-{segment}-{block}")
}

impl KubeBlockStore {
    pub fn new(client: Client, namespace: &str, segment: &str) -> KubeBlockStore {
        KubeBlockStore {
            api: Api::namespaced(client, namespace),
            segment: segment.to_string(),
        }
    }

    fn object(&self, lease: &Lease, ttl: Duration, resource_version: Option<String>) -> KubeLease {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        KubeLease {
            metadata: ObjectMeta {
                name: Some(object_name(&self.segment, &lease.key)),
                labels: Some(BTreeMap::from([(
                    SEGMENT_LABEL.to_string(),
                    self.segment.clone(),
                )])),
                annotations: Some(BTreeMap::from([
                    (BLOCK_ANNOTATION.to_string(), lease.key.to_string()),
                    (
                        RECORD_ANNOTATION.to_string(),
                        serde_json::to_string(&lease.attrs).expect("a record serializes"),
                    ),
                ])),
                resource_version,
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(lease.attrs.node_name.clone()),
                lease_duration_seconds: Some(ttl.as_secs().min(i32::MAX as u64) as i32),
                renew_time: Some(now.clone()),
                acquire_time: Some(now),
                ..Default::default()
            }),
        }
    }

    /// The lease an object describes; `None` for objects that are not a
    /// block of this segment.
    fn lease_of(&self, object: &KubeLease) -> Result<Option<Lease>, StoreError> {
        let name = object.metadata.name.clone().unwrap_or_default();
        let annotations = object.metadata.annotations.clone().unwrap_or_default();
        let Some(key) = annotations.get(BLOCK_ANNOTATION) else {
            return Ok(None);
        };
        let bad = |reason: String| StoreError::BadRecord {
            key: name.clone(),
            reason,
        };
        let key: LeaseKey = key.parse().map_err(|e| bad(format!("{e}")))?;
        let attrs: LeaseAttrs = annotations
            .get(RECORD_ANNOTATION)
            .map(|r| serde_json::from_str(r).map_err(|e| bad(format!("{RECORD_ANNOTATION}: {e}"))))
            .transpose()?
            .ok_or_else(|| bad(format!("no {RECORD_ANNOTATION}")))?;
        let spec = object.spec.clone().unwrap_or_default();
        let expires = match (spec.renew_time, spec.lease_duration_seconds) {
            (Some(t), Some(d)) => {
                Some(SystemTime::from(t.0) + Duration::from_secs(d.max(0) as u64))
            }
            _ => None,
        };
        Ok(Some(Lease {
            key,
            attrs,
            expires,
        }))
    }

    /// Writes `lease` over `existing`, only if nobody changed it since it
    /// was read; `None` when someone did (or deleted it).
    async fn replace_under(
        &self,
        lease: &Lease,
        ttl: Duration,
        existing: &KubeLease,
    ) -> Result<Option<Lease>, StoreError> {
        let object = self.object(lease, ttl, existing.metadata.resource_version.clone());
        let name = object_name(&self.segment, &lease.key);
        match self
            .api
            .replace(&name, &PostParams::default(), &object)
            .await
        {
            Ok(o) => Ok(Some(self.lease_of(&o)?.unwrap_or(lease.clone()))),
            Err(e) if is_status(&e, 409) || is_status(&e, 404) => Ok(None),
            Err(e) => Err(api_error("writing a segment block's Lease", e)),
        }
    }

    async fn get(&self, key: &LeaseKey) -> Result<Option<KubeLease>, StoreError> {
        match self.api.get(&object_name(&self.segment, key)).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(api_error("reading a segment block's Lease", e)),
        }
    }
}

impl LeaseStore for KubeBlockStore {
    async fn list(&self) -> Result<Snapshot, StoreError> {
        let lp = ListParams::default().labels(&format!("{SEGMENT_LABEL}={}", self.segment));
        let list = self
            .api
            .list(&lp)
            .await
            .map_err(|e| api_error("listing segment block Leases", e))?;
        let now = SystemTime::now();
        let mut leases = Vec::new();
        for o in &list.items {
            match self.lease_of(o) {
                Ok(Some(l)) if !l.is_expired(now) => leases.push(l),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "kube: ignoring an unusable segment block Lease")
                }
            }
        }
        Ok(Snapshot {
            leases,
            revision: 0,
        })
    }

    async fn create(&self, lease: &Lease, ttl: Duration) -> Result<Created, StoreError> {
        let object = self.object(lease, ttl, None);
        match self.api.create(&PostParams::default(), &object).await {
            Ok(o) => return Ok(Created::Yes(self.lease_of(&o)?.unwrap_or(lease.clone()))),
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(api_error("creating a segment block's Lease", e)),
        }
        // Taken, unless its holder let it lapse: then take it over, under
        // its resourceVersion so that only one node can.
        let Some(existing) = self.get(&lease.key).await? else {
            return Ok(Created::Taken);
        };
        let lapsed = self
            .lease_of(&existing)?
            .is_none_or(|l| l.is_expired(SystemTime::now()));
        if !lapsed {
            return Ok(Created::Taken);
        }
        Ok(match self.replace_under(lease, ttl, &existing).await? {
            Some(l) => Created::Yes(l),
            None => Created::Taken,
        })
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        let Some(existing) = self.get(&lease.key).await? else {
            return Err(StoreError::LeaseLost(lease.key));
        };
        if !self
            .lease_of(&existing)?
            .is_some_and(|l| l.same_owner(&lease.attrs))
        {
            return Err(StoreError::LeaseLost(lease.key));
        }
        self.replace_under(lease, ttl, &existing)
            .await?
            .ok_or(StoreError::LeaseLost(lease.key))
    }

    async fn delete(&self, key: &LeaseKey) -> Result<(), StoreError> {
        match self
            .api
            .delete(&object_name(&self.segment, key), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(api_error("deleting a segment block's Lease", e)),
        }
    }

    /// Nobody follows block claims as they change: each agent only needs
    /// its own, and lists when it claims.
    async fn watch(&self, _revision: u64) -> Result<mpsc::Receiver<WatchEvent>, StoreError> {
        Err(StoreError::Config(
            "segment block Leases are not watched".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_valid_kubernetes_names() {
        let key: LeaseKey = "192.168.50.16-28".parse().unwrap();
        let name = object_name("lab1", &key);
        assert_eq!(name, "tweed-seg-lab1-192-168-50-16-28");
        assert!(name.len() <= 253);
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        // IPv6 and dual-stack keys hold ':' and '&', which names may not.
        for (key, want) in [
            ("fd00:60::-124", "tweed-seg-six-fd00-60---124"),
            (
                "192.168.50.16-28&fd00:50:0:3::-64",
                "tweed-seg-six-192-168-50-16-28-fd00-50-0-3---64",
            ),
        ] {
            let key: LeaseKey = key.parse().unwrap();
            assert_eq!(object_name("six", &key), want);
        }
    }
}
