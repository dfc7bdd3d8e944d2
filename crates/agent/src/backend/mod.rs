//! Backends: how node-to-node pod traffic travels. One trait, one small
//! module per backend (flannel's shape); the reconciler never knows which
//! one runs.

pub mod desired;
pub mod factory;
pub mod geneve;
pub mod hostgw;
pub mod segments;
pub mod srv6;
pub mod tunnel;
pub mod vxlan;
pub mod wg_key;
pub mod wireguard;

use ipnet::IpNet;
use serde_json::Value;
use std::sync::Arc;
use thiserror::Error;
use tweed_netlink::{Netlink, NetlinkError};

use crate::backend::desired::Desired;
use crate::identity::Underlay;
use crate::lease::Lease;

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("{0}")]
    Netlink(#[from] NetlinkError),
    #[error("{0}")]
    Setup(String),
}

/// What a backend knows about this node.
#[derive(Debug, Clone)]
pub struct LocalNode {
    pub name: String,
    pub lease: Lease,
    pub underlay: Underlay,
    /// The underlay interface's connected networks: peers inside them are
    /// on the same L2 segment.
    pub underlay_networks: Vec<IpNet>,
}

pub trait Backend: Send {
    /// `BackendType` in lease records.
    fn kind(&self) -> &'static str;

    /// The backend's part of this node's lease record.
    fn lease_data(&self) -> Value;

    /// flannel's `BackendV6Data`: what the backend publishes for its IPv6
    /// side, when it has a separate one.
    fn lease_v6_data(&self) -> Value {
        Value::Null
    }

    /// MTU for pod interfaces (written to the lease file).
    fn pod_mtu(&self) -> u32;

    /// Creates or repairs this node's devices and settings; called before
    /// every reconcile pass, so a device deleted by hand comes back.
    fn ensure_devices(&mut self, nl: &mut Netlink, local: &LocalNode) -> Result<(), BackendError>;

    /// Brings state that is not routes, neighbours or FDB entries (a
    /// WireGuard device's peers) to what `peers` want; called after
    /// [`ensure_devices`](Backend::ensure_devices) and before the routes
    /// are applied, on every pass.
    fn sync_peers(
        &mut self,
        _local: &LocalNode,
        _peers: &[Arc<Lease>],
    ) -> Result<(), BackendError> {
        Ok(())
    }

    /// The routes, neighbours and FDB entries wanted for `peers`.
    fn desired(&self, local: &LocalNode, peers: &[Arc<Lease>]) -> Desired;
}

/// True when `ip` is on one of the underlay's connected networks.
pub fn on_link(local: &LocalNode, ip: std::net::IpAddr) -> bool {
    local.underlay_networks.iter().any(|n| n.contains(&ip))
}
