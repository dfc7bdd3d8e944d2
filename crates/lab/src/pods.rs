//! Pods, made by the real `tweed` plugin exactly as a runtime would: ADD
//! with the node's lease file as the subnet source, run inside the node's
//! namespace.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tweed_netlink::NetNs;

use crate::LabError;

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
/// say a `guest` section) in the node's namespace.
pub fn cni_with(
    plugin: &Path,
    node_ns: &str,
    conf: &Value,
    call: &Call,
) -> Result<Value, LabError> {
    let node = NetNs::named(node_ns)?;
    let stdin = conf.to_string();
    let (command, container_id, pod_ns) = (call.command, call.container_id, call.pod_ns);
    let netns_path = format!("/run/netns/{pod_ns}");
    let output = node
        .run(|| {
            let mut child = Command::new(plugin)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("CNI_COMMAND", command)
                .env("CNI_CONTAINERID", container_id)
                .env("CNI_NETNS", &netns_path)
                .env("CNI_IFNAME", call.ifname)
                .env("CNI_ARGS", call.cni_args)
                .env("CNI_PATH", plugin.parent().unwrap_or(Path::new("/")))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut input) = child.stdin.take() {
                input.write_all(stdin.as_bytes())?;
            }
            child.wait_with_output()
        })?
        .map_err(|e| LabError::io(format!("run {}", plugin.display()), e))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(LabError::Plugin {
            command: command.to_string(),
            pod: pod_ns.to_string(),
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
