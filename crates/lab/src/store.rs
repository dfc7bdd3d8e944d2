//! The lab's store: the file store, a real etcd or the fake API server,
//! started and stopped under the agents, and the leases in it.

use std::time::{Duration, Instant};

use tweed_netlink::NetNs;

use crate::{ETCD_PORT, Lab, LabError, READY_TIMEOUT, kube, procs, topology, write};

impl Lab {
    /// Stops the lab's etcd (store outage tests); agents keep running.
    pub fn stop_store(&mut self) -> Result<(), LabError> {
        if let Some(pid) = self.state.etcd_pid.take() {
            procs::stop(pid, Duration::from_secs(5));
        }
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))
    }

    /// Starts the lab's etcd again on the same data.
    pub fn start_store(&mut self) -> Result<(), LabError> {
        if self.state.store != "etcd" {
            return Err(LabError::Usage(
                "only an etcd store can be stopped and started".into(),
            ));
        }
        self.start_etcd()
    }

    pub(crate) fn start_etcd(&mut self) -> Result<(), LabError> {
        let data = self.state.dir().join("etcd");
        let ip = topology::ROUTER_IPV4;
        let argv: Vec<String> = vec![
            self.binaries.etcd.display().to_string(),
            "--name".into(),
            "lab".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen-client-urls".into(),
            format!("http://{ip}:{ETCD_PORT}"),
            "--advertise-client-urls".into(),
            format!("http://{ip}:{ETCD_PORT}"),
            "--listen-peer-urls".into(),
            format!("http://{ip}:{}", ETCD_PORT + 1),
            "--initial-advertise-peer-urls".into(),
            format!("http://{ip}:{}", ETCD_PORT + 1),
            "--initial-cluster".into(),
            format!("lab=http://{ip}:{}", ETCD_PORT + 1),
        ];
        let log = self.state.dir().join("etcd.log");
        // A restart keeps the previous run's log for post-mortems.
        let _ = std::fs::rename(&log, self.state.dir().join("etcd.log.prev"));
        let pid = procs::spawn_in(&self.state.underlay_ns, &argv, &log)?;
        self.state.etcd_pid = Some(pid);
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))?;
        // Ready when it accepts connections.
        let ns = NetNs::named(&self.state.underlay_ns)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ok = ns.run(|| {
                std::net::TcpStream::connect_timeout(
                    &(ip, ETCD_PORT).into(),
                    Duration::from_millis(200),
                )
                .is_ok()
            })?;
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline || !procs::alive(pid) {
                return Err(LabError::Setup(format!(
                    "etcd did not come up; see {}",
                    log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the fake API server (store `kube`) and writes the agents'
    /// kubeconfig.
    pub(crate) fn start_fake_api(&mut self) -> Result<(), LabError> {
        write(
            &self.state.dir().join("kubeconfig"),
            kube::kubeconfig().as_bytes(),
        )?;
        let argv = vec![
            kube::binary(&self.binaries.tweedd).display().to_string(),
            "--listen".into(),
            kube::api_addr().to_string(),
        ];
        let log = self.state.dir().join("fake-kube-apiserver.log");
        let pid = procs::spawn_in(&self.state.underlay_ns, &argv, &log)?;
        self.state.api_pid = Some(pid);
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while kube::call(&self.state.underlay_ns, "GET", "/version", None).is_err() {
            if Instant::now() > deadline || !procs::alive(pid) {
                return Err(LabError::Setup(format!(
                    "the fake API server did not come up; see {}",
                    log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// With the `kube` store: registers node `n<i>` with its pod CIDRs
    /// (unless a test registered it beforehand).
    pub(crate) fn register_kube_node(&self, name: &str, i: usize) -> Result<(), LabError> {
        if self.state.store != "kube" {
            return Ok(());
        }
        let ipv6 = self.net_conf()["EnableIPv6"] == serde_json::json!(true);
        kube::register_node(&self.state.underlay_ns, name, &kube::pod_cidrs(i, ipv6))
    }

    /// The lab's net-conf.json (null when unreadable).
    pub(crate) fn net_conf(&self) -> serde_json::Value {
        std::fs::read(self.state.dir().join("net-conf.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The lease key a node holds, from its state directory.
    pub fn lease_of(&self, node: &str) -> Option<String> {
        let bytes = std::fs::read(self.node_dir(node).join("state").join("state.json")).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        v["lease"].as_str().map(str::to_string)
    }

    /// Deletes a node's lease from the store (the node "leaves"; with the
    /// `kube` store its Node object is deleted).
    pub fn delete_lease(&self, node: &str) -> Result<(), LabError> {
        if self.state.store == "kube" {
            kube::call_ok(
                &self.state.underlay_ns,
                "DELETE",
                &format!("/admin/nodes/{node}"),
                None,
            )?;
            return Ok(());
        }
        let key = self
            .lease_of(node)
            .ok_or_else(|| LabError::Usage(format!("{node} has no recorded lease")))?;
        match self.state.store.as_str() {
            "etcd" => {
                let out = self.exec_output(
                    "underlay",
                    &[
                        "etcdctl",
                        "--endpoints",
                        &format!("http://{}:{ETCD_PORT}", topology::ROUTER_IPV4),
                        "del",
                        &format!("/coreos.com/network/subnets/{key}"),
                    ],
                )?;
                if !out.status.success() {
                    return Err(LabError::Setup(format!(
                        "etcdctl del failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )));
                }
                Ok(())
            }
            _ => std::fs::remove_file(self.state.dir().join("store").join("subnets").join(&key))
                .map_err(|e| LabError::io(format!("delete lease {key}"), e)),
        }
    }
}
