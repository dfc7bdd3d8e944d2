//! tweed's netlink layer: a small synchronous rtnetlink client shared by
//! the CNI plugin and the node agent.
//!
//! Synchronous on purpose: the plugin runs once per CNI call and must start
//! in microseconds, so no async runtime sits on its path. One [`Netlink`]
//! handle is bound to one network namespace; [`NetNs`] opens and enters
//! namespaces; [`sysctl`] writes per-namespace kernel parameters. Links,
//! addresses, routes, neighbours, FDB entries, ingress qdiscs and redirect
//! filters each have their own module; WireGuard devices' keys and peers
//! ([`Wireguard`]) go over generic netlink. nftables rulesets go through
//! the `nft` program ([`nft`]), the one kernel interface here that is not
//! a socket of our own.

mod address;
pub mod bpf;
mod clsact;
mod encap;
mod error;
mod geneve;
mod link;
mod mac;
mod monitor;
mod neighbour;
mod netns;
pub mod nft;
mod route;
mod socket;
pub mod sysctl;
mod tap;
mod tc;
mod wireguard;

pub use address::Address;
pub use clsact::Direction;
pub use error::{NetlinkError, Result};
pub use geneve::{GeneveInfo, GeneveSpec};
pub use link::{BridgePort, Link, LinkKind, NewLink, VethPeer, VxlanInfo, VxlanSpec};
pub use mac::{InvalidMac, MacAddr};
pub use monitor::{Event, Monitor};
pub use neighbour::{FdbEntry, Neighbour};
pub use netns::{NAMED_NETNS_DIR, NetNs};
pub use route::{PROTO_BOOT, PROTO_STATIC, Route, RouteEncap, RouteLookup, TABLE_MAIN};
pub use socket::Netlink;
pub use tap::{TapSpec, create_tap};
pub use wireguard::{InvalidKey, WgDevice, WgKey, WgPeer, Wireguard};

/// `IPV4_DEVCONF_ARP_NOTIFY`: announce the address when the link comes up.
pub const IPV4_DEVCONF_ARP_NOTIFY: u16 = 22;
/// `IPV4_DEVCONF_ROUTE_LOCALNET`: route packets to and from 127.0.0.0/8.
pub const IPV4_DEVCONF_ROUTE_LOCALNET: u16 = 26;
pub use tc::{Filter, Qdisc};
