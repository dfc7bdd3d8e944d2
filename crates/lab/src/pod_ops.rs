//! Lab pods: added through the plugin (plain, or with wires), deleted,
//! listed.

use crate::{Lab, LabError, NodeState, PodState, pods};

impl Lab {
    /// Creates a pod on `node` through the plugin.
    pub fn add_pod(&mut self, node: &str, pod: &str) -> Result<PodState, LabError> {
        self.add_pod_wired(node, pod, "")
    }

    /// Creates a pod whose `tweed.io/wires` annotation is `wires`
    /// (`eth1=r2:eth1, ...`; empty for none), passed to the plugin the way
    /// containerd and CRI-O pass pod annotations. Lab pods are in
    /// namespace `default` under their own names.
    pub fn add_pod_wired(
        &mut self,
        node: &str,
        pod: &str,
        wires: &str,
    ) -> Result<PodState, LabError> {
        let idx = self.index(node)?;
        // Wires name their far end by pod name alone (namespace `default`),
        // so a wired pod's name must be unique in the lab (plain pods are
        // p1, p2... on every node).
        if !wires.is_empty() && self.pods().iter().any(|(_, p)| p.name == pod) {
            return Err(LabError::Usage(format!(
                "a pod {pod:?} already runs in lab {}; wired pods need names of their own",
                self.state.name
            )));
        }
        let ns_name = format!("{}.{node}.{pod}", self.state.name);
        let container_id = format!("{}-{node}-{pod}", self.state.name);
        let kernel = self.kernel(&self.state.nodes[idx]);
        kernel.create_pod_ns(&ns_name)?;
        let mut conf = pods::conflist(&self.node_dir(node));
        if !wires.is_empty() {
            conf["runtimeConfig"] = serde_json::json!({
                "io.kubernetes.cri.pod-annotations": {tweed_wire::ANNOTATION: wires}
            });
        }
        let cni_args = pods::k8s_args(pod);
        let result = pods::cni_on(
            kernel.as_ref(),
            &self.binaries.plugin,
            &self.state.nodes[idx].ns,
            &conf,
            &pods::Call {
                command: "ADD",
                container_id: &container_id,
                pod_ns: &ns_name,
                ifname: "eth0",
                cni_args: &cni_args,
            },
        );
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = kernel.delete_ns(&ns_name);
                return Err(e);
            }
        };
        let (ipv4, ipv6) = pods::addresses(&result);
        let state = PodState {
            name: pod.to_string(),
            ns: ns_name,
            container_id,
            ipv4,
            ipv6,
            wires: (!wires.is_empty()).then(|| wires.to_string()),
            segments: Vec::new(),
        };
        self.state.nodes[idx].pods.push(state.clone());
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))?;
        Ok(state)
    }

    /// Where pod `pod` of `node` is in the state: (node index, pod index).
    pub(crate) fn pod_index(&self, node: &str, pod: &str) -> Result<(usize, usize), LabError> {
        let idx = self.index(node)?;
        match self.state.nodes[idx]
            .pods
            .iter()
            .position(|p| p.name == pod)
        {
            Some(p) => Ok((idx, p)),
            None => Err(LabError::Usage(format!("no pod {pod:?} on {node}"))),
        }
    }

    /// Deletes a pod through the plugin (its segment interfaces first, as
    /// a runtime deletes the extra networks), then its namespace.
    pub fn del_pod(&mut self, node: &str, pod: &str) -> Result<(), LabError> {
        let (idx, p) = self.pod_index(node, pod)?;
        // Forgotten only once the plugin let go of it.
        let ps = self.state.nodes[idx].pods[p].clone();
        self.detach_segments(node, &ps)?;
        let kernel = self.kernel(&self.state.nodes[idx]);
        pods::cni_on(
            kernel.as_ref(),
            &self.binaries.plugin,
            &self.state.nodes[idx].ns,
            &pods::conflist(&self.node_dir(node)),
            &pods::Call {
                command: "DEL",
                container_id: &ps.container_id,
                pod_ns: &ps.ns,
                ifname: "eth0",
                cni_args: "",
            },
        )?;
        kernel.delete_ns(&ps.ns)?;
        self.state.nodes[idx].pods.remove(p);
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))
    }

    /// Every pod with the node it runs on.
    pub fn pods(&self) -> Vec<(&NodeState, &PodState)> {
        self.state
            .nodes
            .iter()
            .flat_map(|n| n.pods.iter().map(move |p| (n, p)))
            .collect()
    }
}
