//! The wires between lab pods: what each node's agent reports about them.

use std::time::{Duration, Instant};

use crate::{Lab, LabError};

impl Lab {
    /// The wire report of a node's agent (`<node dir>/wires/status.json`).
    pub fn wire_status(&self, node: &str) -> Vec<tweed_wire::WireStatus> {
        tweed_wire::status::read(&self.node_dir(node).join("wires")).unwrap_or_default()
    }

    /// Waits until every wire end of every node is up.
    pub fn wait_wires_up(&self, timeout: Duration) -> Result<(), LabError> {
        let want: usize = self
            .pods()
            .iter()
            .filter_map(|(_, p)| p.wires.as_deref())
            .map(|w| w.split(',').filter(|e| !e.trim().is_empty()).count())
            .sum();
        let deadline = Instant::now() + timeout;
        loop {
            let all: Vec<tweed_wire::WireStatus> = self
                .state
                .nodes
                .iter()
                .flat_map(|n| self.wire_status(&n.name))
                .collect();
            let up = all
                .iter()
                .filter(|s| matches!(s.state, tweed_wire::WireState::Up { .. }))
                .count();
            if up >= want {
                return Ok(());
            }
            if Instant::now() > deadline {
                let pending: Vec<String> = all
                    .iter()
                    .filter(|s| !matches!(s.state, tweed_wire::WireState::Up { .. }))
                    .map(|s| format!("{}: {}", s.local, s.state))
                    .collect();
                return Err(LabError::Setup(format!(
                    "{up} of {want} wire ends up after {}s; {}",
                    timeout.as_secs(),
                    pending.join("; ")
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
