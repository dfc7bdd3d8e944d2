//! The pod's wires (`tweed.io/wires`): checked and recorded at ADD for
//! tweedd, which cables them; their ends removed again at DEL.
//!
//! The plugin never cables a wire itself: the far end may be on another
//! node or not started yet, and only the agent knows either. What it does
//! is refuse a bad declaration before anything is made, and leave an exact
//! record (pod, namespace, ends) under the wire directory's lock.

use std::path::Path;

use serde_json::Value;
use tweed_cni::error::CniError;
use tweed_netlink::{NetNs, Netlink};
use tweed_wire::record::{self, DirLock, RECORD_VERSION};
use tweed_wire::{ALIAS_PREFIX, ANNOTATION, WireEnd, WireRecord};

use crate::errors;
use crate::guest::request::POD_ANNOTATIONS;

/// The CNI_ARGS key for runtimes without annotations (podman, nerdctl).
pub const ARGS_KEY: &str = "TWEED_WIRES";

/// The pod's declared wires, validated; `None` when it declares none.
pub fn requested(
    runtime_config: &serde_json::Map<String, Value>,
    args: &tweed_cni::args::CniArgs,
    ifname: &str,
) -> Result<Option<(String, Vec<WireEnd>)>, CniError> {
    let annotation_field = format!("runtimeConfig.{POD_ANNOTATIONS}[{ANNOTATION:?}]");
    let from_annotation = match runtime_config
        .get(POD_ANNOTATIONS)
        .and_then(|a| a.get(ANNOTATION))
    {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some((s.as_str(), annotation_field)),
        Some(_) => {
            return Err(CniError::invalid_config(
                &annotation_field,
                "must be a string",
            ));
        }
    };
    let from_args = args
        .other
        .iter()
        .find(|(k, _)| k == ARGS_KEY)
        .map(|(_, v)| (v.as_str(), format!("CNI_ARGS {ARGS_KEY}")));
    let Some((text, field)) = from_annotation.or(from_args) else {
        return Ok(None);
    };
    let (Some(ns), Some(name)) = (&args.k8s_pod_namespace, &args.k8s_pod_name) else {
        return Err(CniError::invalid_env(
            "CNI_ARGS",
            format!(
                "{field}: wires join pods by name, so K8S_POD_NAMESPACE and K8S_POD_NAME are required"
            ),
        ));
    };
    let pod = format!("{ns}/{name}");
    tweed_wire::Endpoint::new(&pod, ifname).map_err(|e| {
        CniError::invalid_env("CNI_ARGS", format!("K8S_POD_NAMESPACE/K8S_POD_NAME: {e}"))
    })?;
    let declared = tweed_wire::parse_annotation(text, &pod)
        .map_err(|e| CniError::invalid_config(&field, e.to_string()))?;
    if let Some(d) = declared.iter().find(|d| d.ifname == ifname) {
        return Err(CniError::invalid_config(
            &field,
            format!(
                "{} is this network's interface (CNI_IFNAME); a wire needs an interface of its own",
                d.ifname
            ),
        ));
    }
    if declared.is_empty() {
        return Ok(None);
    }
    let ends = declared
        .into_iter()
        .map(|d| WireEnd {
            ifname: d.ifname,
            peer: d.peer,
            network: None,
        })
        .collect();
    Ok(Some((pod, ends)))
}

/// What [`record`] replaced, for [`unrecord`].
pub struct Recorded {
    previous: Option<WireRecord>,
}

/// Records the pod's wire ends for tweedd (the last step of ADD).
pub fn record(
    dir: &Path,
    container_id: &str,
    pod: String,
    ns: &NetNs,
    ends: Vec<WireEnd>,
) -> Result<Recorded, CniError> {
    let fail = |e: record::RecordError| CniError::io(format!("recording the pod's wires: {e}"));
    let lock = DirLock::take(dir).map_err(fail)?;
    // Another interface's ADD of the same pod may have recorded them.
    let previous = record::read(dir, container_id).ok().flatten();
    let netns_id = ns.id().map_err(errors::kernel)?;
    // Ends of wire networks (wire_network.rs) are theirs to remove: kept.
    let mut ends = ends;
    for e in previous
        .iter()
        .filter(|p| p.netns_id == netns_id)
        .flat_map(|p| &p.ends)
        .filter(|e| e.network.is_some())
    {
        if !ends.iter().any(|mine| mine.ifname == e.ifname) {
            ends.push(e.clone());
        }
    }
    let rec = WireRecord {
        version: RECORD_VERSION,
        container_id: container_id.to_string(),
        pod,
        netns: ns.path().to_path_buf(),
        netns_id,
        ends,
    };
    record::write(dir, &rec, &lock).map_err(fail)?;
    Ok(Recorded { previous })
}

/// Undoes [`record`] for a failed ADD: the record it replaced is written
/// back, or none is left. Best effort, as every rollback step.
pub fn unrecord(dir: &Path, container_id: &str, recorded: &Recorded) {
    let Ok(lock) = DirLock::take(dir) else {
        return;
    };
    let _ = match &recorded.previous {
        Some(previous) => record::write(dir, previous, &lock),
        None => record::remove(dir, container_id, &lock),
    };
}

/// Removes the pod's wire ends (tweed's devices only, where its namespace
/// still exists) and its record. A veth end's removal takes the peer
/// pod's end with it; tweedd removes a remote peer's end when this pod's
/// record is gone from its lease.
pub fn remove(dir: &Path, container_id: &str) -> Result<(), CniError> {
    let fail = |e: record::RecordError| CniError::io(format!("removing the pod's wires: {e}"));
    // Most pods have no wires: one stat, no lock, nothing created.
    if !record::exists(dir, container_id) {
        return Ok(());
    }
    let lock = DirLock::take(dir).map_err(fail)?;
    let rec = match record::read(dir, container_id) {
        Ok(Some(r)) => Some(r),
        Ok(None) => None,
        // Unreadable: it cannot guide the teardown; the namespace's end
        // takes the devices.
        Err(_) => None,
    };
    if let Some(rec) = &rec
        && let Ok(ns) = NetNs::open(&rec.netns)
        && ns.id().ok() == Some(rec.netns_id)
        && let Ok(mut nl) = Netlink::in_netns(&ns)
    {
        for end in &rec.ends {
            if let Ok(Some(link)) = nl.link_by_name(&end.ifname)
                && link
                    .alias
                    .as_deref()
                    .is_some_and(|a| a.starts_with(ALIAS_PREFIX))
            {
                let _ = nl.delete_link(link.index);
            }
        }
    }
    record::remove(dir, container_id, &lock).map_err(fail)
}
