//! The lab's `kube` store: the workspace's fake API server
//! (`fake-kube-apiserver`, crates/fakekube) run in the underlay namespace
//! as etcd is, a kubeconfig pointing at it, and each node registered in it
//! with the pod CIDRs kube-controller-manager would have allocated
//! (node i gets 10.244.i.0/24, and fd00:10:244:i::/64 with IPv6).
//!
//! Why the fake and not a real kube-apiserver (which the kube store's own
//! tests use, `tweed_testkit::kubeapi`): the lab is the workbench that
//! comes up in seconds on any machine, without the ~400 MB Kubernetes
//! build (scripts/build-kubernetes.sh, about five minutes on two cores)
//! and its certificates; and the lab's tests set and clear pod CIDRs,
//! which the real API allows to be set only once, through the fake's
//! `/admin` API. The kube store's behaviour against the real server is
//! covered by crates/agent/tests/kube_store.rs; a whole cluster with tweed
//! installed by its manifest is `scripts/cluster.sh`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tweed_netlink::NetNs;

use crate::{LabError, topology};

/// Where the fake API server listens (plain HTTP, in the underlay namespace).
pub const API_PORT: u16 = 6443;

pub fn api_addr() -> SocketAddr {
    (topology::ROUTER_IPV4, API_PORT).into()
}

/// The fake API server binary: built by the workspace next to `tweedd`.
pub fn binary(tweedd: &Path) -> std::path::PathBuf {
    tweedd.with_file_name("fake-kube-apiserver")
}

/// A kubeconfig for the agents (no credentials: the lab's server asks none).
pub fn kubeconfig() -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: http://{}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\ncurrent-context: lab\nusers:\n- name: lab\n  user: {{}}\n",
        api_addr()
    )
}

/// Node `n<i>`'s pod CIDRs.
pub fn pod_cidrs(i: usize, ipv6: bool) -> Vec<String> {
    let mut v = vec![format!("10.244.{i}.0/24")];
    if ipv6 {
        v.push(format!("fd00:10:244:{i:x}::/64"));
    }
    v
}

/// One request to the fake API server from inside `underlay_ns`: its
/// status code and JSON body (`Null` when empty).
pub fn call(
    underlay_ns: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), LabError> {
    let io = |what: &str, e: std::io::Error| LabError::io(format!("{what} {method} {path}"), e);
    let ns = NetNs::named(underlay_ns)?;
    let mut stream = ns
        .run(|| TcpStream::connect_timeout(&api_addr(), Duration::from_secs(2)))?
        .map_err(|e| io("connect for", e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| io("set timeout for", e))?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    );
    stream
        .write_all(format!("{head}{payload}").as_bytes())
        .map_err(|e| io("send", e))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| io("read the answer to", e))?;
    let bad = || LabError::Setup(format!("{method} {path}: bad answer {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let json = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).map_err(|_| bad())?
    };
    Ok((code, json))
}

/// [`call`], where anything but 2xx is an error.
pub fn call_ok(
    underlay_ns: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, LabError> {
    let (code, v) = call(underlay_ns, method, path, body)?;
    if !(200..300).contains(&code) {
        return Err(LabError::Setup(format!("{method} {path}: {code} {v}")));
    }
    Ok(v)
}

/// Registers node `name` with `cidrs`, as kubelet and node IPAM would;
/// a node already registered (set up by a test beforehand) is kept as is.
pub fn register_node(underlay_ns: &str, name: &str, cidrs: &[String]) -> Result<(), LabError> {
    let (code, v) = call(
        underlay_ns,
        "POST",
        "/admin/nodes",
        Some(&json!({"name": name, "podCIDRs": cidrs})),
    )?;
    match code {
        200..=299 | 409 => Ok(()),
        _ => Err(LabError::Setup(format!(
            "registering node {name} in the fake API server: {code} {v}"
        ))),
    }
}
