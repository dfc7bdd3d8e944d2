//! The fake's data: Node objects, a resourceVersion counter and the event
//! log watches are served from, kept the way the real API server keeps
//! them for what tweed uses (every change bumps one global revision; a
//! change that changes nothing is no change; events older than the
//! compaction point are gone).

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

use crate::patch::PatchKind;

/// Events kept before the oldest are compacted away by themselves.
const MAX_EVENTS: usize = 10_000;

/// One watch event as the log keeps it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    pub object: Value,
}

/// A request the fake refuses, as a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            reason,
            message: message.into(),
        }
    }

    pub fn gone(message: impl Into<String>) -> Failure {
        Failure::new(410, "Expired", message)
    }

    pub fn not_found(name: &str) -> Failure {
        Failure::new(404, "NotFound", format!("nodes \"{name}\" not found"))
    }

    /// The `Status` object the API server sends.
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

/// Which part of a Node a PATCH may change, as kube-apiserver's node
/// strategies decide: the main resource keeps the old `status`; the
/// `status` subresource keeps the old `spec` but applies `status` and
/// metadata (annotations, labels) alike — flannel and tweedd publish their
/// node annotations there, needing no `patch` on `nodes` itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
}

#[derive(Debug, Default)]
pub struct Cluster {
    rv: u64,
    nodes: BTreeMap<String, Value>,
    events: VecDeque<Event>,
    /// Watches and continue tokens from revisions below this are 410 Gone.
    oldest: u64,
    next_uid: u64,
    /// `coordination.k8s.io` Leases; their writes move the revision on too.
    pub leases: crate::leases::Leases,
}

impl Cluster {
    pub fn revision(&self) -> u64 {
        self.rv
    }

    pub fn oldest(&self) -> u64 {
        self.oldest
    }

    /// Nodes in name order, after `after` (a continue token's position).
    pub fn list(&self, after: Option<&str>, limit: usize) -> (Vec<Value>, Option<String>) {
        let mut items: Vec<Value> = Vec::new();
        let mut more = None;
        let mut last_name: Option<String> = None;
        let rest = self
            .nodes
            .iter()
            .filter(|(n, _)| after.is_none_or(|a| n.as_str() > a));
        for (name, node) in rest {
            if items.len() == limit {
                more = last_name;
                break;
            }
            last_name = Some(name.clone());
            // Items of a list carry no kind/apiVersion, as from the real server.
            let mut item = node.clone();
            if let Some(o) = item.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            items.push(item);
        }
        (items, more)
    }

    pub fn get(&self, name: &str) -> Result<Value, Failure> {
        self.nodes
            .get(name)
            .cloned()
            .ok_or_else(|| Failure::not_found(name))
    }

    pub fn create(&mut self, mut node: Value) -> Result<Value, Failure> {
        let name = node["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Failure::new(422, "Invalid", "metadata.name: Required value"))?
            .to_string();
        if self.nodes.contains_key(&name) {
            return Err(Failure::new(
                409,
                "AlreadyExists",
                format!("nodes \"{name}\" already exists"),
            ));
        }
        self.next_uid += 1;
        node["kind"] = json!("Node");
        node["apiVersion"] = json!("v1");
        node["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.next_uid));
        node["metadata"]["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
        default_pod_cidr(&mut node);
        self.commit(name, node, "ADDED")
    }

    pub fn delete(&mut self, name: &str) -> Result<Value, Failure> {
        let mut node = self
            .nodes
            .remove(name)
            .ok_or_else(|| Failure::not_found(name))?;
        self.rv += 1;
        node["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.log("DELETED", node.clone());
        Ok(node)
    }

    pub fn patch(
        &mut self,
        name: &str,
        part: Part,
        kind: PatchKind,
        body: &Value,
    ) -> Result<Value, Failure> {
        let current = self.get(name)?;
        if let Some(want) = body["metadata"]["resourceVersion"].as_str()
            && current["metadata"]["resourceVersion"].as_str() != Some(want)
        {
            return Err(Failure::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on nodes \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                ),
            ));
        }
        let mut body = body.clone();
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            // Identity and bookkeeping are the server's.
            for k in ["name", "uid", "resourceVersion", "creationTimestamp"] {
                meta.remove(k);
            }
        }
        let mut next = current.clone();
        match part {
            Part::Main => {
                if let Some(o) = body.as_object_mut() {
                    o.remove("status");
                }
                kind.apply(&mut next, &body);
                next["status"] = current["status"].clone();
                check_pod_cidr_update(name, &current, &next)?;
            }
            Part::Status => {
                if let Some(o) = body.as_object_mut() {
                    o.remove("spec");
                }
                kind.apply(&mut next, &body);
                next["spec"] = current["spec"].clone();
            }
        }
        if let Some(o) = next.as_object_mut()
            && o.get("status").is_some_and(Value::is_null)
        {
            o.remove("status");
        }
        if next == current {
            // A no-op patch neither bumps the revision nor makes an event.
            return Ok(current);
        }
        self.commit(name.to_string(), next, "MODIFIED")
    }

    /// Sets a node's pod CIDRs as kube-controller-manager's node IPAM does
    /// (the admin API's way; the API itself refuses to change them).
    pub fn set_pod_cidrs(&mut self, name: &str, cidrs: &[String]) -> Result<Value, Failure> {
        let mut next = self.get(name)?;
        if !next["spec"].is_object() {
            next["spec"] = json!({});
        }
        let spec = next["spec"].as_object_mut().expect("made an object above");
        if cidrs.is_empty() {
            spec.remove("podCIDR");
            spec.remove("podCIDRs");
        } else {
            spec.insert("podCIDR".into(), json!(cidrs[0]));
            spec.insert("podCIDRs".into(), json!(cidrs));
        }
        if self.nodes.get(name) == Some(&next) {
            return Ok(next);
        }
        self.commit(name.to_string(), next, "MODIFIED")
    }

    /// Events after `rv`, or Gone when some of them were compacted away.
    pub fn events_after(&self, rv: u64) -> Result<Vec<Event>, Failure> {
        if rv < self.oldest {
            return Err(Failure::gone(format!(
                "too old resource version: {rv} ({})",
                self.oldest
            )));
        }
        Ok(self.events.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// Moves the revision on without a Node event, as writes to other
    /// resources do in the real store.
    pub fn bump(&mut self, by: u64) {
        self.rv += by;
    }

    /// The revision a write to another resource gets (a Lease).
    pub fn next_revision(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Forgets every event so far: watches from an older revision get 410.
    pub fn compact(&mut self) {
        self.events.clear();
        self.oldest = self.rv;
    }

    fn commit(
        &mut self,
        name: String,
        mut node: Value,
        kind: &'static str,
    ) -> Result<Value, Failure> {
        self.rv += 1;
        node["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.nodes.insert(name, node.clone());
        self.log(kind, node.clone());
        Ok(node)
    }

    fn log(&mut self, kind: &'static str, object: Value) {
        self.events.push_back(Event {
            rv: self.rv,
            kind,
            object,
        });
        if self.events.len() > MAX_EVENTS
            && let Some(e) = self.events.pop_front()
        {
            self.oldest = e.rv;
        }
    }
}

/// The API server's node validation: pod CIDRs may be set once (from
/// none), never changed or removed.
fn check_pod_cidr_update(name: &str, current: &Value, next: &Value) -> Result<(), Failure> {
    let before = &current["spec"]["podCIDRs"];
    let after = &next["spec"]["podCIDRs"];
    let was_set = before.as_array().is_some_and(|a| !a.is_empty());
    if was_set && (before != after || current["spec"]["podCIDR"] != next["spec"]["podCIDR"]) {
        return Err(Failure::new(
            422,
            "Invalid",
            format!(
                "Node \"{name}\" is invalid: spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"
            ),
        ));
    }
    Ok(())
}

/// The API server's defaulting: `podCIDR` is `podCIDRs[0]` and the
/// reverse, whichever was given.
fn default_pod_cidr(node: &mut Value) {
    let spec = &mut node["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    let first = spec["podCIDRs"].get(0).cloned();
    match (spec.get("podCIDR").cloned(), first) {
        (None, Some(f)) => spec["podCIDR"] = f,
        (Some(c), None) if c.is_string() => spec["podCIDRs"] = json!([c]),
        _ => {}
    }
}

/// A Node object with the given pod CIDRs, for tests.
pub fn node(name: &str, pod_cidrs: &[&str]) -> Value {
    let mut spec = json!({});
    if !pod_cidrs.is_empty() {
        spec["podCIDR"] = json!(pod_cidrs[0]);
        spec["podCIDRs"] = json!(pod_cidrs);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": spec,
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"},
                {"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated", "message": "Node created without a route"}
            ]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_events_and_compaction() {
        let mut c = Cluster::default();
        c.create(node("a", &["10.244.1.0/24"])).unwrap();
        c.create(node("b", &[])).unwrap();
        assert_eq!(c.revision(), 2);
        assert_eq!(c.get("a").unwrap()["metadata"]["resourceVersion"], "1");
        assert_eq!(c.get("b").unwrap()["spec"], json!({}));
        assert_eq!(c.create(node("a", &[])).unwrap_err().code, 409);
        let patch =
            json!({"metadata": {"annotations": {"x": "1"}}, "status": {"phase": "ignored"}});
        c.patch("a", Part::Main, PatchKind::Merge, &patch).unwrap();
        assert_eq!(c.revision(), 3);
        assert!(c.get("a").unwrap()["status"].get("phase").is_none());
        // The same patch again changes nothing.
        c.patch("a", Part::Main, PatchKind::Merge, &patch).unwrap();
        assert_eq!(c.revision(), 3);
        c.delete("b").unwrap();
        let evs = c.events_after(1).unwrap();
        let kinds: Vec<_> = evs.iter().map(|e| (e.rv, e.kind)).collect();
        assert_eq!(kinds, vec![(2, "ADDED"), (3, "MODIFIED"), (4, "DELETED")]);
        c.compact();
        assert_eq!(c.events_after(3).unwrap_err().code, 410);
        assert!(c.events_after(4).unwrap().is_empty());
    }

    #[test]
    fn status_subresource_takes_status_and_metadata_but_not_spec() {
        let mut c = Cluster::default();
        c.create(node("a", &["10.244.1.0/24"])).unwrap();
        let p = json!({
            "metadata": {"annotations": {"x": "1"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "NetworkUnavailable", "status": "False", "reason": "TweedIsUp"}]}
        });
        let n = c
            .patch("a", Part::Status, PatchKind::StrategicMerge, &p)
            .unwrap();
        assert_eq!(n["metadata"]["annotations"]["x"], "1");
        assert!(n["spec"].get("unschedulable").is_none(), "{n}");
        assert_eq!(n["spec"]["podCIDR"], "10.244.1.0/24");
        let conds = n["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 2, "merged by type: {conds:?}");
        assert_eq!(conds[1]["status"], "False");
        assert_eq!(conds[1]["message"], "Node created without a route");
    }

    #[test]
    fn pod_cidrs_are_set_once_through_the_api_and_freely_by_the_admin() {
        let mut c = Cluster::default();
        c.create(node("a", &[])).unwrap();
        let set = json!({"spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}});
        c.patch("a", Part::Main, PatchKind::Merge, &set).unwrap();
        let change = json!({"spec": {"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.2.0/24"]}});
        assert_eq!(
            c.patch("a", Part::Main, PatchKind::Merge, &change)
                .unwrap_err()
                .code,
            422
        );
        let rv = c.revision();
        let n = c.set_pod_cidrs("a", &["10.244.2.0/24".into()]).unwrap();
        assert_eq!(n["spec"]["podCIDR"], "10.244.2.0/24");
        assert_eq!(c.revision(), rv + 1);
        c.set_pod_cidrs("a", &["10.244.2.0/24".into()]).unwrap();
        assert_eq!(c.revision(), rv + 1, "no change, no event");
        let n = c.set_pod_cidrs("a", &[]).unwrap();
        assert!(n["spec"].get("podCIDRs").is_none());
    }

    #[test]
    fn resource_version_in_a_patch_is_a_precondition() {
        let mut c = Cluster::default();
        c.create(node("a", &[])).unwrap();
        let p = json!({"metadata": {"resourceVersion": "7", "labels": {"x": "y"}}});
        assert_eq!(
            c.patch("a", Part::Main, PatchKind::Merge, &p)
                .unwrap_err()
                .code,
            409
        );
    }

    #[test]
    fn lists_page_in_name_order() {
        let mut c = Cluster::default();
        for n in ["c", "a", "b"] {
            c.create(node(n, &[])).unwrap();
        }
        let (page, more) = c.list(None, 2);
        let names: Vec<_> = page.iter().map(|n| n["metadata"]["name"].clone()).collect();
        assert_eq!(names, vec![json!("a"), json!("b")]);
        assert!(page[0].get("kind").is_none());
        assert_eq!(more.as_deref(), Some("b"));
        let (page, more) = c.list(more.as_deref(), 2);
        assert_eq!(page.len(), 1);
        assert_eq!(more, None);
    }
}
