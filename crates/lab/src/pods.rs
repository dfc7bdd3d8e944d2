//! Pods, made by the real `tweed` plugin exactly as a runtime would: ADD
//! with the node's lease file as the subnet source, run inside the node's
//! namespace.

use std::path::Path;

use serde_json::{Value, json};

use crate::LabError;
use crate::node_kernel::{LocalKernel, NodeKernel, ProcessSpec};

/// The network configuration the lab's pods use on a node.
pub fn conflist(node_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": "tweed",
        "type": "tweed",
        "subnetFile": node_dir.join("subnet.env"),
        "logFile": node_dir.join("cni.log"),
        "wireDir": node_dir.join("wires"),
        "ipam": {"dataDir": node_dir.join("ipam")},
    })
}

/// The network configuration of a second interface on layer-2 segment
/// `segment` (what Multus would hand the plugin as `net1`'s network).
pub fn segment_conf(node_dir: &Path, segment: &str) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": format!("seg-{segment}"),
        "type": "tweed",
        "segment": segment,
        "logFile": node_dir.join("cni.log"),
        "segmentDir": node_dir.join("segments"),
        "ipam": {"dataDir": node_dir.join("ipam")},
    })
}

/// The CNI_ARGS a kubelet would pass for lab pod `pod` (namespace
/// `default`).
pub fn k8s_args(pod: &str) -> String {
    format!(
        "K8S_POD_NAMESPACE={};K8S_POD_NAME={pod}",
        crate::topology_file::POD_NAMESPACE
    )
}

/// Runs the plugin with the node's standard configuration; returns its
/// result JSON.
pub fn cni(
    plugin: &Path,
    node_ns: &str,
    node_dir: &Path,
    command: &str,
    container_id: &str,
    pod_ns: &str,
) -> Result<Value, LabError> {
    let call = Call {
        command,
        container_id,
        pod_ns,
        ifname: "eth0",
        cni_args: "",
    };
    cni_with(plugin, node_ns, &conflist(node_dir), &call)
}

/// The CNI error code in a plugin's error output, if it is one.
pub fn error_code(output: &str) -> Option<u64> {
    serde_json::from_str::<Value>(output).ok()?["code"].as_u64()
}

/// One plugin invocation's runtime side.
pub struct Call<'a> {
    pub command: &'a str,
    pub container_id: &'a str,
    /// The pod's named namespace.
    pub pod_ns: &'a str,
    /// `CNI_IFNAME`: `eth0` for the pod network, `net1`... for more.
    pub ifname: &'a str,
    pub cni_args: &'a str,
}

/// Runs the plugin with `conf` (the node's [`conflist`] with additions,
/// say a `guest` section) in the node's namespace on this machine.
pub fn cni_with(
    plugin: &Path,
    node_ns: &str,
    conf: &Value,
    call: &Call,
) -> Result<Value, LabError> {
    cni_on(&LocalKernel, plugin, node_ns, conf, call)
}

/// [`cni_with`] on the node's own kernel (a VM node's).
pub fn cni_on(
    kernel: &dyn NodeKernel,
    plugin: &Path,
    node_ns: &str,
    conf: &Value,
    call: &Call,
) -> Result<Value, LabError> {
    let env = [
        ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_string()),
        ("CNI_COMMAND", call.command.to_string()),
        ("CNI_CONTAINERID", call.container_id.to_string()),
        ("CNI_NETNS", format!("/run/netns/{}", call.pod_ns)),
        ("CNI_IFNAME", call.ifname.to_string()),
        ("CNI_ARGS", call.cni_args.to_string()),
        (
            "CNI_PATH",
            plugin
                .parent()
                .unwrap_or(Path::new("/"))
                .display()
                .to_string(),
        ),
    ];
    let process = ProcessSpec {
        argv: vec![plugin.display().to_string()],
        env: Some(env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
        stdin: Some(conf.to_string()),
    };
    let output = kernel.run(node_ns, &process)?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(LabError::Plugin {
            command: call.command.to_string(),
            pod: call.pod_ns.to_string(),
            output: text,
        });
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The first address of each family in a result.
pub fn addresses(result: &Value) -> (Option<String>, Option<String>) {
    let mut v4 = None;
    let mut v6 = None;
    for ip in result["ips"].as_array().into_iter().flatten() {
        let Some(a) = ip["address"].as_str() else {
            continue;
        };
        let bare = a.split('/').next().unwrap_or(a).to_string();
        if bare.contains(':') {
            v6.get_or_insert(bare);
        } else {
            v4.get_or_insert(bare);
        }
    }
    (v4, v6)
}
