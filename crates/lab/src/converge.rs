//! When a lab has converged: every running agent has programmed one peer
//! per other lease in the store. The expected count comes from the store,
//! not from the agents that happen to run: a stopped agent's lease stays
//! (its node keeps its data plane, as on a real node) and its peers keep
//! programming it, while a deleted lease is gone for everyone.

use std::time::{Duration, Instant};

use crate::{ETCD_PORT, Lab, LabError, NodeState, READY_TIMEOUT, kube, topology};

/// How often a wait for convergence counts the store's leases again.
const LEASE_RECOUNT: Duration = Duration::from_millis(500);

/// flannel's default etcd prefix, which the lab's agents use.
const ETCD_SUBNETS: &str = "/coreos.com/network/subnets/";

impl Lab {
    /// Waits until every running agent has programmed every other lease
    /// holder (its `tweed_peers` metric, set after each reconcile pass,
    /// counts them all).
    pub fn wait_converged(&self) -> Result<(), LabError> {
        let running: Vec<&NodeState> = self
            .state
            .nodes
            .iter()
            .filter(|n| self.agent_alive(n))
            .collect();
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut want = self.expected_peers()?;
        let mut counted = Instant::now();
        for node in &running {
            loop {
                // Counted again now and then: a lease may still be on its
                // way (etcd's count costs an etcdctl run).
                if counted.elapsed() > LEASE_RECOUNT {
                    want = self.expected_peers()?;
                    counted = Instant::now();
                }
                let have = self.peers_of(node);
                if have == Some(want) {
                    break;
                }
                if Instant::now() > deadline {
                    let have = have
                        .map_or("no count (its /metrics did not answer)".to_string(), |n| {
                            n.to_string()
                        });
                    return Err(LabError::Setup(format!(
                        "{} has not programmed all {want} peers within {}s (the store holds {} leases; it reports {have})",
                        node.name,
                        READY_TIMEOUT.as_secs(),
                        want + 1,
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// How many peers a node holding a lease should program: the other
    /// leases in the store.
    pub fn expected_peers(&self) -> Result<usize, LabError> {
        Ok(self.store_leases()?.saturating_sub(1))
    }

    /// The number of node leases in the lab's store.
    pub fn store_leases(&self) -> Result<usize, LabError> {
        match self.state.store.as_str() {
            "etcd" => Ok(self.etcd_keys(ETCD_SUBNETS)?.len()),
            // A Node holds a lease once its agent has published its
            // record on it.
            "kube" => {
                let list = kube::call_ok(&self.state.underlay_ns, "GET", "/api/v1/nodes", None)?;
                Ok(list["items"]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter(|n| {
                                n["metadata"]["annotations"]
                                    .as_object()
                                    .is_some_and(|a| a.keys().any(|k| k.ends_with("/backend-data")))
                            })
                            .count()
                    })
                    .unwrap_or(0))
            }
            // One file per lease; writers' temporary files are hidden.
            _ => {
                let dir = self.state.dir().join("store").join("subnets");
                let entries = std::fs::read_dir(&dir)
                    .map_err(|e| LabError::io(format!("read {}", dir.display()), e))?;
                Ok(entries
                    .flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count())
            }
        }
    }

    /// The keys under `prefix` in the lab's etcd.
    pub fn etcd_keys(&self, prefix: &str) -> Result<Vec<String>, LabError> {
        Ok(self
            .etcd_entries(prefix)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// The (key, value) pairs under `prefix` in the lab's etcd, through
    /// etcdctl. Values must be one line (tweed's and flannel's JSON are).
    pub fn etcd_entries(&self, prefix: &str) -> Result<Vec<(String, String)>, LabError> {
        let endpoint = format!("http://{}:{ETCD_PORT}", topology::ROUTER_IPV4);
        let out = self.exec_output(
            "underlay",
            &[
                "etcdctl",
                "--endpoints",
                &endpoint,
                "get",
                "--prefix",
                prefix,
            ],
        )?;
        if !out.status.success() {
            return Err(LabError::Setup(format!(
                "etcdctl get {prefix} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        Ok(lines
            .chunks(2)
            .map(|kv| (kv[0].to_string(), kv.get(1).unwrap_or(&"").to_string()))
            .collect())
    }

    /// The number of peers a node's agent has reconciled, from `/metrics`.
    pub fn peers_of(&self, node: &NodeState) -> Option<usize> {
        let (code, body) = self.http_get(node, "/metrics")?;
        if code != 200 {
            return None;
        }
        body.lines()
            .find_map(|l| l.strip_prefix("tweed_peers "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as usize)
    }
}
