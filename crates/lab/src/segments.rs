//! Lab pods on the lab's layer-2 segments: an extra interface attached
//! through the segment's own network configuration (a second network, as
//! Multus adds one), recorded in the lab state so `lab status` lists it
//! and `lab pod del` DELs it.

use std::time::{Duration, Instant};

use crate::state::{PodState, SegmentPort};
use crate::{Lab, LabError, pods};

impl Lab {
    /// The names of the lab's layer-2 segments (its net-conf `Segments`).
    pub fn segments(&self) -> Vec<String> {
        self.net_conf()["Segments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["Name"].as_str().map(str::to_string))
            .collect()
    }

    /// Refuses a segment name the lab does not have, naming those it has.
    pub fn check_segment(&self, segment: &str) -> Result<(), LabError> {
        let known = self.segments();
        if known.iter().any(|s| s == segment) {
            return Ok(());
        }
        Err(LabError::Usage(format!(
            "lab {} has no segment {segment:?} (its segments: {}; they come from the topology file's `segments`)",
            self.state.name,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )))
    }

    /// Attaches interface `ifname` of lab pod `pod` on `node` to layer-2
    /// `segment`, through the segment's own network configuration (a
    /// second network, as Multus adds one). The segment's bridge may still
    /// be in the making right after the agent starts: the plugin's "try
    /// again later" (11) is retried for a few seconds, as a kubelet would.
    pub fn attach_to_segment(
        &mut self,
        node: &str,
        pod: &str,
        ifname: &str,
        segment: &str,
    ) -> Result<SegmentPort, LabError> {
        let (idx, p) = self.pod_index(node, pod)?;
        self.check_segment(segment)?;
        let conf = pods::segment_conf(&self.node_dir(node), segment);
        let deadline = Instant::now() + Duration::from_secs(10);
        let result = loop {
            let pod_state = &self.state.nodes[idx].pods[p];
            let call = pods::Call {
                command: "ADD",
                container_id: &pod_state.container_id,
                pod_ns: &pod_state.ns,
                ifname,
                cni_args: &pods::k8s_args(pod),
            };
            match pods::cni_on(
                self.kernel(&self.state.nodes[idx]).as_ref(),
                &self.binaries.plugin,
                &self.state.nodes[idx].ns,
                &conf,
                &call,
            ) {
                Err(LabError::Plugin { output, .. })
                    if Instant::now() < deadline && pods::error_code(&output) == Some(11) =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => break other?,
            }
        };
        let port = SegmentPort {
            ifname: ifname.to_string(),
            segment: segment.to_string(),
            addresses: result["ips"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|ip| ip["address"].as_str().map(str::to_string))
                .collect(),
        };
        self.state.nodes[idx].pods[p].segments.push(port.clone());
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))?;
        Ok(port)
    }

    /// DELs every segment interface of `pod` on `node`, as a runtime
    /// deletes a pod's extra networks before its primary one.
    pub(crate) fn detach_segments(&self, node: &str, pod: &PodState) -> Result<(), LabError> {
        let idx = self.index(node)?;
        for port in &pod.segments {
            pods::cni_on(
                self.kernel(&self.state.nodes[idx]).as_ref(),
                &self.binaries.plugin,
                &self.state.nodes[idx].ns,
                &pods::segment_conf(&self.node_dir(node), &port.segment),
                &pods::Call {
                    command: "DEL",
                    container_id: &pod.container_id,
                    pod_ns: &pod.ns,
                    ifname: &port.ifname,
                    cni_args: &pods::k8s_args(&pod.name),
                },
            )?;
        }
        Ok(())
    }
}
