//! The kernel state the agent wants, computed from the leases by a
//! backend (each backend module produces one; the reconciler applies it).

use std::net::IpAddr;

use tweed_netlink::{MacAddr, Route};

/// The protocol number of tweedd's routes (in the node contract, because
/// tweedctl finds them by it too).
pub use tweed_node::names::ROUTE_PROTOCOL;

/// A permanent neighbour entry on a device tweedd owns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NeighbourWant {
    pub ip: IpAddr,
    pub mac: MacAddr,
}

/// A permanent FDB entry on a device tweedd owns: frames for `mac` are
/// tunnelled to `dst`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdbWant {
    pub mac: MacAddr,
    pub dst: IpAddr,
}

/// Everything a backend wants in the kernel. Neighbour and FDB entries are
/// owned per device: on a device listed here, entries not wanted are
/// removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub routes: Vec<Route>,
    /// Device name → its neighbour and FDB entries.
    pub devices: Vec<DeviceWant>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceWant {
    pub name: String,
    pub neighbours: Vec<NeighbourWant>,
    pub fdb: Vec<FdbWant>,
}

impl Desired {
    pub fn entry_count(&self) -> usize {
        self.routes.len()
            + self
                .devices
                .iter()
                .map(|d| d.neighbours.len() + d.fdb.len())
                .sum::<usize>()
    }
}
