//! The continuous check while the churn runs: no address is held by two
//! live attachments at once.
//!
//! A live attachment is a pod whose eth0 is up and whose host end is up
//! (so eth0 has carrier); it holds eth0's addresses, or — for a guest —
//! the addresses of the guest record naming its namespace. One pass reads
//! every pod in turn, so two pods are never read at the same instant:
//! when an address shows up a second time, the pod it was first seen in
//! is read again. If that pod still has the same eth0 (same ifindex: DEL
//! deletes an interface, nothing re-creates it under the same index) live
//! with the address, it held the address over the whole span in which the
//! second pod was seen with it: a real double owner, recorded with both
//! pods.
//!
//! The auditor reads over netlink sockets opened once in each pod (and
//! one in the node), not with a process per read as the final count
//! does: a pass over 200 pods then takes milliseconds, not seconds, and
//! the check is continuous in fact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tweed_netlink::{NetNs, Netlink};

/// A pod's eth0 as one read saw it, when live.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Live {
    ifindex: u32,
    addresses: Vec<String>,
}

/// One pod to watch.
struct Watched {
    name: String,
    guest: bool,
    nl: Netlink,
}

/// The pods to watch and where guest records are.
pub struct Auditor {
    pods: Vec<Watched>,
    node: Netlink,
    guest_records: PathBuf,
}

impl Auditor {
    /// Opens the sockets: `node` is the node namespace's name, `pods` the
    /// pods' names with whether each has a guest.
    pub fn new(node: &str, pods: &[(String, bool)], guest_records: PathBuf) -> Auditor {
        let open = |name: &str| {
            let ns = NetNs::open(format!("/run/netns/{name}")).expect("open netns");
            Netlink::in_netns(&ns).expect("netlink socket in the namespace")
        };
        Auditor {
            pods: pods
                .iter()
                .map(|(name, guest)| Watched {
                    name: name.clone(),
                    guest: *guest,
                    nl: open(name),
                })
                .collect(),
            node: open(node),
            guest_records,
        }
    }

    /// One pass over every pod; returns the double owners found.
    pub fn pass(&mut self) -> Vec<String> {
        let mut violations = Vec::new();
        let mut seen: HashMap<String, (usize, u32)> = HashMap::new();
        for slot in 0..self.pods.len() {
            let Some(live) = self.observe(slot) else {
                continue;
            };
            for a in &live.addresses {
                match seen.get(a) {
                    None => {
                        seen.insert(a.clone(), (slot, live.ifindex));
                    }
                    Some(&(first, ifindex)) => {
                        if let Some(again) = self.observe(first)
                            && again.ifindex == ifindex
                            && again.addresses.contains(a)
                        {
                            violations.push(format!(
                                "{a} held by live attachments in {} (eth0 #{ifindex}) and {} (eth0 #{})",
                                self.pods[first].name, self.pods[slot].name, live.ifindex
                            ));
                        }
                    }
                }
            }
        }
        violations
    }

    /// The pod's eth0 if it is live, with the addresses its attachment
    /// holds. A namespace deleted meanwhile reads as no attachment.
    fn observe(&mut self, slot: usize) -> Option<Live> {
        let pod = &mut self.pods[slot];
        let eth = pod.nl.link_by_name("eth0").ok()??;
        if !eth.up {
            return None;
        }
        let host = self.node.link_by_index(eth.peer_index?).ok()??;
        if !host.up {
            return None;
        }
        let addresses = if pod.guest {
            guest_addresses(&self.guest_records, &format!("/run/netns/{}", pod.name))
        } else {
            pod.nl
                .addresses(Some(eth.index))
                .ok()?
                .into_iter()
                .filter(|a| !a.scope_link)
                .map(|a| a.addr.addr().to_string())
                .collect()
        };
        Some(Live {
            ifindex: eth.index,
            addresses,
        })
    }
}

/// The addresses of the guest records naming the namespace `netns`.
fn guest_addresses(dir: &Path, netns: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(text) = std::fs::read(&p) else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<Value>(&text) else {
            continue;
        };
        if record["netns"] != netns {
            continue;
        }
        for a in record["addresses"].as_array().into_iter().flatten() {
            if let Some(addr) = a["address"].as_str() {
                out.push(addr.split('/').next().unwrap_or(addr).to_string());
            }
        }
    }
    out
}
