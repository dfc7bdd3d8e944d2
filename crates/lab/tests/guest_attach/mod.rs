//! How the guest pod of guests.rs gets its interface on node 2: tweed's own
//! attachment, or tweed chained after the reference `bridge` plugin or
//! after flannel's CNI plugin; and what each leaves to check after DEL.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tweed_lab::pods::{self, Call};
use tweed_testkit::{Attachment, Chain};

use crate::common::flannel::Flanneld;

#[derive(Clone, Copy, PartialEq)]
pub enum Attach {
    /// tweed's own attachment with a guest.
    Own,
    ChainedAfterBridge,
    ChainedAfterFlannel,
}

/// The node's pod subnet from its lease file (`TWEED_SUBNET=10.244.x.1/24`).
fn node_subnet(node_dir: &Path) -> ipnet::Ipv4Net {
    let text = std::fs::read_to_string(node_dir.join("subnet.env")).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("TWEED_SUBNET="))
        .expect("TWEED_SUBNET");
    line.parse::<ipnet::Ipv4Net>().unwrap().trunc()
}

/// How the guest pod is ADDed and DELeted on its node.
pub struct Attacher {
    plugin: PathBuf,
    node_ns: String,
    conf: Value,
    chain: Option<Chain>,
    att: Attachment,
}

impl Attacher {
    /// `conf` is tweed's own network config (used for [`Attach::Own`]);
    /// the chained variants build their conflist here.
    pub fn new(
        attach: Attach,
        node_dir: &Path,
        plugin: &Path,
        node_ns: &str,
        conf: Value,
        att: Attachment,
        flanneld: Option<&Flanneld>,
    ) -> Attacher {
        let chain = chain_for(attach, node_dir, &conf["guest"], flanneld).map(|conflist| {
            let mut chain = Chain::new(conflist)
                .binary("tweed", plugin)
                .in_node(node_ns);
            if attach == Attach::ChainedAfterFlannel {
                let cni = &tweed_testkit::flannel::flannel_bins().cni_dir;
                chain = chain.binary("flannel", cni.join("flannel"));
            }
            chain
        });
        Attacher {
            plugin: plugin.to_path_buf(),
            node_ns: node_ns.to_string(),
            conf,
            chain,
            att,
        }
    }

    pub fn add(&self) -> Value {
        match &self.chain {
            Some(chain) => chain.add(&self.att).expect("chained ADD"),
            None => pods::cni_with(&self.plugin, &self.node_ns, &self.conf, &self.call("ADD"))
                .expect("guest ADD"),
        }
    }

    pub fn del(&self, cached: &Value) {
        match &self.chain {
            Some(chain) => chain.del(&self.att, Some(cached)).expect("chained DEL"),
            None => {
                pods::cni_with(&self.plugin, &self.node_ns, &self.conf, &self.call("DEL"))
                    .expect("guest DEL");
            }
        }
    }

    fn call<'a>(&'a self, command: &'a str) -> Call<'a> {
        Call {
            command,
            container_id: &self.att.container_id,
            pod_ns: self.att.netns.rsplit('/').next().unwrap(),
            ifname: "eth0",
            cni_args: self.att.cni_args.as_deref().unwrap_or(""),
        }
    }
}

/// The conflist that makes node 2's pod interface, with tweed chained
/// after it; `None` for tweed's own attachment. Every IPAM store is under
/// the node's directory.
fn chain_for(
    attach: Attach,
    node_dir: &Path,
    guest: &Value,
    flanneld: Option<&Flanneld>,
) -> Option<Value> {
    let mut tweed = json!({"type": "tweed", "logFile": node_dir.join("cni.log"), "guest": guest});
    tweed["capabilities"] = json!({"dns": true});
    match attach {
        Attach::Own => None,
        Attach::ChainedAfterBridge => {
            let subnet = node_subnet(node_dir);
            Some(json!({
                "cniVersion": "1.0.0",
                "name": "refnet",
                "plugins": [
                    {
                        "type": "bridge", "bridge": "tweed0", "isGateway": true, "isDefaultGateway": true,
                        "mtu": mtu_of(node_dir),
                        "ipam": {"type": "host-local", "dataDir": node_dir.join("ref-ipam"),
                                 "ranges": [[{"subnet": subnet.to_string(), "rangeStart": host(subnet, 200)}]]},
                    },
                    tweed,
                ],
            }))
        }
        // kube-flannel.yml's conflist (network cbr0, bridge cni0) with tweed
        // in portmap's place, flannel's files and host-local's store in the
        // node's directory.
        Attach::ChainedAfterFlannel => Some(json!({
            "cniVersion": "1.0.0",
            "name": "cbr0",
            "plugins": [
                {
                    "type": "flannel",
                    "subnetFile": flanneld.expect("flanneld").subnet_file,
                    "dataDir": node_dir.join("flannel").join("cni-data"),
                    "ipam": {"type": "host-local", "dataDir": node_dir.join("flannel").join("ipam")},
                    "delegate": {"hairpinMode": true, "isDefaultGateway": true},
                },
                tweed,
            ],
        })),
    }
}

/// Node 2's pod bridge: tweed's, or the one flannel's delegate makes.
pub fn node_bridge(attach: Attach) -> &'static str {
    match attach {
        Attach::Own | Attach::ChainedAfterBridge => "tweed0",
        Attach::ChainedAfterFlannel => "cni0",
    }
}

/// What must be gone after DEL besides the pod's devices: the IP
/// reservation (and flannel's saved delegate config); and how many ports
/// node 2's bridge keeps.
pub fn node_leftovers(
    attach: Attach,
    node_dir: &Path,
    id: &str,
    ip: &str,
) -> (Vec<PathBuf>, usize) {
    match attach {
        // Node 2 still has its own pod p1 on the bridge.
        Attach::Own => (vec![node_dir.join("ipam/tweed").join(ip)], 1),
        Attach::ChainedAfterBridge => (vec![node_dir.join("ref-ipam/refnet").join(ip)], 1),
        // A flannel node runs no other pod.
        Attach::ChainedAfterFlannel => (
            vec![
                node_dir.join("flannel/ipam/cbr0").join(ip),
                node_dir.join("flannel/cni-data").join(id),
            ],
            0,
        ),
    }
}

/// The IPv4 address (with prefix) of `bridge` in node namespace `ns`.
pub fn bridge_address(ns: &str, bridge: &str) -> ipnet::Ipv4Net {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "-4", "addr", "show", "dev", bridge])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let a = &v[0]["addr_info"][0];
    format!(
        "{}/{}",
        a["local"].as_str().unwrap_or_default(),
        a["prefixlen"]
    )
    .parse()
    .unwrap_or_else(|_| panic!("no IPv4 address on {bridge} in {ns}: {v}"))
}

/// The pod MTU from the node's lease file.
fn mtu_of(node_dir: &Path) -> u32 {
    let text = std::fs::read_to_string(node_dir.join("subnet.env")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("TWEED_MTU="))
        .and_then(|v| v.trim().parse().ok())
        .expect("TWEED_MTU")
}

/// The `n`th address of `net`.
fn host(net: ipnet::Ipv4Net, n: u32) -> String {
    std::net::Ipv4Addr::from(u32::from(net.network()) + n).to_string()
}
