//! A wire as a network of its own: a network config whose `wire` names the
//! cable's two ends, `["r1:eth2", "r3:eth1"]` — one NetworkAttachmentDefinition
//! per cable, which each end's pod attaches through Multus under the
//! interface name its end gives (`{"name": "r1-r3", "interface": "eth2"}`).
//!
//! Why this shape: a NAD is the object Kubernetes users declare secondary
//! networks with, and a cable is declared once, by both its ends, as a lab
//! builder draws it; the pod annotation (wires.rs) stays for pods without
//! Multus. ADD records this pod's end for tweedd exactly as the annotation
//! does — tweedd cables it when the peer's end exists, on either node — so
//! it makes no device and reserves nothing; DEL removes this end alone.

use std::path::Path;

use serde_json::Value;
use tweed_cni::error::CniError;
use tweed_cni::result::{CniResult, Interface};
use tweed_netlink::{NetNs, Netlink};
use tweed_wire::record::{self, DirLock, RECORD_VERSION};
use tweed_wire::{ALIAS_PREFIX, Endpoint, WireEnd, WireRecord};

use crate::commands::Call;
use crate::errors;

const FIELD: &str = "wire";

/// `wire` as written, checked for its shape: two ends `<pod>:<ifname>`
/// (or `<namespace>/<pod>:<ifname>`) on different pods, and none of the
/// fields a wire cannot honour (`given`).
pub fn parse_conf(value: &Value, given: &[&str]) -> Result<[String; 2], CniError> {
    if let Some(other) = given.first() {
        return Err(CniError::invalid_config(
            other,
            "cannot be combined with wire: a wire is a cable between two pod interfaces, with no bridge, addresses or guest, and the MTU of net-conf.json's Wires.MTU",
        ));
    }
    let ends: Vec<String> = match value {
        Value::Array(a) if a.len() == 2 && a.iter().all(Value::is_string) => a
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => {
            return Err(CniError::invalid_config(
                FIELD,
                format!(
                    "{value} must be the cable's two ends, [\"<pod>:<ifname>\", \"<pod>:<ifname>\"]"
                ),
            ));
        }
    };
    // The attaching pod's namespace is not known yet: "default" stands in
    // for it, which is enough to check the names.
    let [a, b] = [&ends[0], &ends[1]].map(|e| resolve(e, "default"));
    let (a, b) = (a?, b?);
    if a.pod == b.pod {
        return Err(CniError::invalid_config(
            FIELD,
            format!(
                "both ends are on pod {}: a wire from a pod to itself is not supported",
                a.pod
            ),
        ));
    }
    Ok([ends[0].clone(), ends[1].clone()])
}

/// One end as written, its pod in `namespace` unless it names its own.
fn resolve(end: &str, namespace: &str) -> Result<Endpoint, CniError> {
    let bad = |why: String| CniError::invalid_config(FIELD, format!("{end:?}: {why}"));
    let (pod, ifname) = end
        .rsplit_once(':')
        .ok_or_else(|| bad("must be <pod>:<ifname>".into()))?;
    let pod = if pod.contains('/') {
        pod.to_string()
    } else {
        format!("{namespace}/{pod}")
    };
    Endpoint::new(&pod, ifname).map_err(|e| bad(e.to_string()))
}

/// This pod's end of the wire (the one naming `K8S_POD_NAMESPACE`/
/// `K8S_POD_NAME` and CNI_IFNAME) and the far end.
fn this_end(
    ends: &[String; 2],
    args: &tweed_cni::args::CniArgs,
    ifname: &str,
) -> Result<(String, Endpoint), CniError> {
    let (Some(ns), Some(name)) = (&args.k8s_pod_namespace, &args.k8s_pod_name) else {
        return Err(CniError::invalid_env(
            "CNI_ARGS",
            "wire: wires join pods by name, so K8S_POD_NAMESPACE and K8S_POD_NAME are required",
        ));
    };
    let pod = format!("{ns}/{name}");
    let [a, b] = [&ends[0], &ends[1]].map(|e| resolve(e, ns));
    let (a, b) = (a?, b?);
    let me = Endpoint::new(&pod, ifname)
        .map_err(|e| CniError::invalid_env("CNI_ARGS", format!("K8S_POD_NAME/CNI_IFNAME: {e}")))?;
    if a == me {
        Ok((pod, b))
    } else if b == me {
        Ok((pod, a))
    } else {
        Err(CniError::invalid_config(
            FIELD,
            format!(
                "{me} is neither end of this wire ({a}, {b}): the pod attaches it under its end's interface name (Multus: \"interface\")"
            ),
        ))
    }
}

/// ADD: records this pod's end for tweedd, after the other records of the
/// pod (its annotation's wires, other wire networks).
pub fn add(call: &mut Call, ends: &[String; 2]) -> Result<Value, CniError> {
    let conf = call.conf;
    let (id, ifname) = (call.container_id(), call.ifname());
    let netns_path = call
        .env
        .netns
        .clone()
        .ok_or_else(|| crate::commands::missing("CNI_NETNS"))?;
    let (pod, peer) = this_end(ends, &call.env.args, ifname)?;
    let ns =
        NetNs::open(&netns_path).map_err(|e| CniError::invalid_env("CNI_NETNS", e.to_string()))?;
    let netns_id = ns.id().map_err(errors::kernel)?;
    let end = WireEnd {
        ifname: ifname.to_string(),
        peer,
        network: Some(conf.name().to_string()),
    };
    let fail = |e: record::RecordError| CniError::io(format!("recording the wire's end: {e}"));
    let lock = DirLock::take(&conf.wire_dir).map_err(fail)?;
    // A record of another namespace under this container ID is stale.
    let mut rec = match record::read(&conf.wire_dir, id) {
        Ok(Some(r)) if r.netns_id == netns_id => r,
        _ => WireRecord {
            version: RECORD_VERSION,
            container_id: id.to_string(),
            pod: pod.clone(),
            netns: netns_path.clone(),
            netns_id,
            ends: Vec::new(),
        },
    };
    match rec.ends.iter().find(|e| e.ifname == end.ifname) {
        // A runtime repeating its ADD: nothing to change.
        Some(e) if *e == end => {}
        Some(e) => {
            return Err(CniError::invalid_config(
                FIELD,
                format!(
                    "{} of {pod} is already wired to {} ({}); a pod interface takes one wire",
                    e.ifname,
                    e.peer,
                    match &e.network {
                        Some(n) => format!("by network {n}"),
                        None => format!("by {}", tweed_wire::ANNOTATION),
                    }
                ),
            ));
        }
        None => {
            // The interface name must be free for tweedd's device.
            let mut nl = Netlink::in_netns(&ns).map_err(errors::kernel)?;
            if nl.link_by_name(ifname).map_err(errors::kernel)?.is_some() {
                return Err(CniError::custom(
                    errors::INTERFACE_EXISTS,
                    format!(
                        "CNI_IFNAME: interface {ifname} already exists in {}",
                        netns_path.display()
                    ),
                ));
            }
            rec.ends.push(end);
            record::write(&conf.wire_dir, &rec, &lock).map_err(fail)?;
        }
    }
    // tweedd makes the device when the far end exists: the result names
    // it, with no address (a cable has none).
    let result = CniResult {
        interfaces: vec![Interface {
            name: ifname.to_string(),
            sandbox: Some(netns_path.display().to_string()),
            ..Default::default()
        }],
        ..Default::default()
    };
    Ok(result.to_json(conf.version))
}

/// DEL: removes this end's device (tweed's only, while the pod's namespace
/// is the recorded one) and this end from the pod's record; the far end's
/// agent removes its end when this one leaves the store, and a veth takes
/// its peer with it.
pub fn del(call: &Call) -> Result<(), CniError> {
    remove_end(
        &call.conf.wire_dir,
        call.container_id(),
        call.ifname(),
        call.conf.name(),
    )
}

fn remove_end(dir: &Path, id: &str, ifname: &str, network: &str) -> Result<(), CniError> {
    let fail = |e: record::RecordError| CniError::io(format!("removing the wire's end: {e}"));
    if !record::exists(dir, id) {
        return Ok(());
    }
    let lock = DirLock::take(dir).map_err(fail)?;
    let Some(mut rec) = record::read(dir, id).ok().flatten() else {
        // Unreadable: the pod network's DEL (or tweedd, once the
        // namespace is gone) takes it.
        return Ok(());
    };
    let before = rec.ends.len();
    rec.ends
        .retain(|e| !(e.ifname == ifname && e.network.as_deref() == Some(network)));
    if rec.ends.len() == before {
        return Ok(());
    }
    if let Ok(ns) = NetNs::open(&rec.netns)
        && ns.id().ok() == Some(rec.netns_id)
        && let Ok(mut nl) = Netlink::in_netns(&ns)
        && let Ok(Some(link)) = nl.link_by_name(ifname)
        && link
            .alias
            .as_deref()
            .is_some_and(|a| a.starts_with(ALIAS_PREFIX))
    {
        let _ = nl.delete_link(link.index);
    }
    if rec.ends.is_empty() {
        record::remove(dir, id, &lock).map_err(fail)
    } else {
        record::write(dir, &rec, &lock).map_err(fail)
    }
}

/// CHECK: the pod's record still holds this end (its device exists only
/// once the far end does).
pub fn check(call: &Call, ends: &[String; 2]) -> Result<(), CniError> {
    let (id, ifname) = (call.container_id(), call.ifname());
    let (_, peer) = this_end(ends, &call.env.args, ifname)?;
    let rec =
        record::read(&call.conf.wire_dir, id).map_err(|e| errors::check_failed(e.to_string()))?;
    let held = rec.iter().flat_map(|r| &r.ends).any(|e| {
        e.ifname == ifname && e.peer == peer && e.network.as_deref() == Some(call.conf.name())
    });
    if held {
        Ok(())
    } else {
        Err(errors::check_failed(format!(
            "no record of {ifname}'s wire to {peer} for tweedd"
        )))
    }
}

/// GC: this network's ends whose attachment is not among the valid ones.
pub fn gc(dir: &Path, network: &str, valid: &[(String, String)]) {
    let (records, _) = record::read_all(dir);
    for r in records {
        for e in &r.ends {
            if e.network.as_deref() == Some(network)
                && !valid
                    .iter()
                    .any(|(id, ifname)| *id == r.container_id && *ifname == e.ifname)
            {
                let _ = remove_end(dir, &r.container_id, &e.ifname, network);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tweed_cni::error::code;

    fn args(ns: &str, pod: &str) -> tweed_cni::args::CniArgs {
        tweed_cni::args::CniArgs::parse(&format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={pod}"
        ))
        .unwrap()
    }

    fn ends(a: &str, b: &str) -> [String; 2] {
        [a.to_string(), b.to_string()]
    }

    #[test]
    fn each_pod_finds_its_end_and_the_far_one() {
        let w = ends("r1:eth2", "lab/r3:eth1");
        let (pod, peer) = this_end(&w, &args("lab", "r1"), "eth2").unwrap();
        assert_eq!(
            (pod.as_str(), peer.to_string()),
            ("lab/r1", "lab/r3:eth1".into())
        );
        let (pod, peer) = this_end(&w, &args("lab", "r3"), "eth1").unwrap();
        assert_eq!(
            (pod.as_str(), peer.to_string()),
            ("lab/r3", "lab/r1:eth2".into())
        );
    }

    #[test]
    fn a_pod_that_is_neither_end_is_refused_naming_wire() {
        let w = ends("r1:eth2", "r3:eth1");
        for (pod, ifname) in [("r2", "eth1"), ("r1", "net1"), ("r3", "eth2")] {
            let e = this_end(&w, &args("default", pod), ifname).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{pod}:{ifname}");
            assert!(
                e.msg.contains("wire") && e.msg.contains("neither end"),
                "{}",
                e.msg
            );
        }
        let no_pod = tweed_cni::args::CniArgs::parse("IgnoreUnknown=1").unwrap();
        let e = this_end(&w, &no_pod, "eth2").unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV, "{}", e.msg);
    }

    #[test]
    fn bad_wires_are_refused_naming_the_field() {
        for (wire, needle) in [
            (json!("r1:eth1"), "two ends"),
            (json!(["r1:eth1"]), "two ends"),
            (json!(["r1:eth1", "r2:eth1", "r3:eth1"]), "two ends"),
            (json!(["r1:eth1", 7]), "two ends"),
            (json!(["r1", "r2:eth1"]), "must be <pod>:<ifname>"),
            (json!(["r1:eth1", "R2:eth1"]), "not a valid Kubernetes name"),
            (
                json!(["r1:eth1", "r2:averyveryverylongname"]),
                "interface name",
            ),
            (json!(["r1:eth1", "default/r1:eth2"]), "to itself"),
        ] {
            let e = parse_conf(&wire, &[]).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{wire}");
            assert!(
                e.msg.contains("wire") && e.msg.contains(needle),
                "{wire}: {}",
                e.msg
            );
        }
        let e = parse_conf(&json!(["r1:eth1", "r2:eth1"]), &["ipam"]).unwrap_err();
        assert!(
            e.msg.starts_with("ipam: cannot be combined with wire"),
            "{}",
            e.msg
        );
        assert_eq!(
            parse_conf(&json!(["r1:eth1", "other/r1:eth1"]), &[]).unwrap(),
            ends("r1:eth1", "other/r1:eth1")
        );
    }

    fn rec(dir: &Path, id: &str, ends: Vec<WireEnd>) {
        let lock = DirLock::take(dir).unwrap();
        let r = WireRecord {
            version: RECORD_VERSION,
            container_id: id.into(),
            pod: "lab/r1".into(),
            // No such namespace: removal touches no device.
            netns: "/nonexistent/netns".into(),
            netns_id: (0, 0),
            ends,
        };
        record::write(dir, &r, &lock).unwrap();
    }

    fn end(ifname: &str, network: Option<&str>) -> WireEnd {
        WireEnd {
            ifname: ifname.into(),
            peer: "lab/r9:eth1".parse().unwrap(),
            network: network.map(str::to_string),
        }
    }

    #[test]
    fn del_and_gc_take_this_networks_end_alone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        rec(
            d,
            "c1",
            vec![
                end("eth1", None),
                end("eth2", Some("w2")),
                end("eth3", Some("w3")),
            ],
        );
        // Another network's DEL for the same interface name leaves it.
        remove_end(d, "c1", "eth2", "w3").unwrap();
        assert_eq!(record::read(d, "c1").unwrap().unwrap().ends.len(), 3);
        remove_end(d, "c1", "eth2", "w2").unwrap();
        let left = record::read(d, "c1").unwrap().unwrap().ends;
        assert_eq!(left, vec![end("eth1", None), end("eth3", Some("w3"))]);
        // Repeated: nothing to do.
        remove_end(d, "c1", "eth2", "w2").unwrap();
        gc(d, "w3", &[("c1".into(), "eth3".into())]);
        assert_eq!(record::read(d, "c1").unwrap().unwrap().ends.len(), 2);
        gc(d, "w3", &[]);
        assert_eq!(
            record::read(d, "c1").unwrap().unwrap().ends,
            vec![end("eth1", None)]
        );
        // The last end takes the record with it.
        rec(d, "c2", vec![end("net1", Some("w2"))]);
        remove_end(d, "c2", "net1", "w2").unwrap();
        assert!(!record::exists(d, "c2"));
    }
}
