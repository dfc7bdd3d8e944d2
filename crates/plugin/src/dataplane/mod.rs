//! Kernel programming for a container attachment: the node bridge, the
//! veth pair, and the addresses and routes inside the pod.
//!
//! Everything goes over netlink through [`tweed_netlink`]; two handles are
//! used, one in the node's namespace and one in the pod's.

pub mod bridge;
pub mod pod;
pub mod veth;

use std::net::IpAddr;

use ipnet::IpNet;

/// An address for the pod's interface and the gateway that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
}

/// A route to install inside the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRoute {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
}

/// `From<&T>` for a type whose fields are copied from T's (IPAM's and a
/// result's addresses and routes all become the same pod settings).
macro_rules! from_fields {
    ($from:ty => $to:ident { $($field:ident: $source:ident),* }) => {
        impl From<&$from> for $to {
            fn from(x: &$from) -> Self {
                $to { $($field: x.$source),* }
            }
        }
    };
}

from_fields!(tweed_ipam::Allocation => PodAddress { address: address, gateway: gateway });
from_fields!(tweed_cni::result::IpConfig => PodAddress { address: address, gateway: gateway });
from_fields!(tweed_ipam::Route => PodRoute { dst: dst, gateway: gw });
from_fields!(tweed_cni::result::Route => PodRoute { dst: dst, gateway: gw });
