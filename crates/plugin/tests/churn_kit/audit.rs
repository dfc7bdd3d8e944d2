//! The continuous check while the churn runs: no address is held by two
//! live attachments at once.
//!
//! A live attachment is a pod whose eth0 is up with carrier (its host end
//! up); it holds eth0's addresses, or — for a guest — the addresses of
//! the guest record naming its namespace. One pass reads every pod in
//! turn (with `ip`, not the code under test), so two pods are never read
//! at the same instant: when an address shows up a second time, the pod
//! it was first seen in is read again. If that pod still has the same
//! eth0 (same ifindex: DEL deletes an interface, nothing re-creates it
//! under the same index) live with the address, it held the address over
//! the whole span in which the second pod was seen with it: a real
//! double owner, recorded with both pods.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A pod's eth0 as one read saw it, when live.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Live {
    ifindex: u64,
    addresses: Vec<String>,
}

/// The pods to watch and where guest records are.
pub struct Auditor {
    /// Per slot: the pod namespace's name, and whether it has a guest.
    pub pods: Vec<(String, bool)>,
    pub guest_records: PathBuf,
}

impl Auditor {
    /// One pass over every pod; returns the double owners found.
    pub fn pass(&self) -> Vec<String> {
        let mut violations = Vec::new();
        let mut seen: HashMap<String, (usize, u64)> = HashMap::new();
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
                                self.pods[first].0, self.pods[slot].0, live.ifindex
                            ));
                        }
                    }
                }
            }
        }
        violations
    }

    /// The pod's eth0 if it is live, with the addresses its attachment
    /// holds.
    fn observe(&self, slot: usize) -> Option<Live> {
        let (ns, guest) = &self.pods[slot];
        let out = std::process::Command::new("ip")
            .args(["-n", ns, "-j", "addr", "show", "dev", "eth0"])
            .output()
            .expect("run ip");
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let link = v.as_array()?.first()?;
        let flags: Vec<&str> = link["flags"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if !flags.contains(&"UP") || !flags.contains(&"LOWER_UP") {
            return None;
        }
        let addresses = if *guest {
            guest_addresses(&self.guest_records, &format!("/run/netns/{ns}"))
        } else {
            link["addr_info"]
                .as_array()?
                .iter()
                .filter(|a| a["scope"] != "link")
                .filter_map(|a| a["local"].as_str().map(str::to_string))
                .collect()
        };
        Some(Live {
            ifindex: link["ifindex"].as_u64()?,
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
