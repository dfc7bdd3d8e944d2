//! `tweed-policy`: Kubernetes NetworkPolicy (`networking.k8s.io/v1`) as
//! tweedd enforces it.
//!
//! Three steps, each its own module:
//! - [`cluster`]: the view of pods and namespaces the policies speak
//!   about (labels, addresses, named ports), from the API's objects;
//! - [`compile`]: every policy that selects a pod of this node becomes
//!   that pod's ingress and egress allow-lists ([`PodPolicy`]): peers as
//!   address blocks, ports as protocol and range, named ports resolved;
//! - [`render`]: the allow-lists as one nftables transaction (table
//!   `inet tweed-policy`): replies of established connections pass, then
//!   each isolated pod's own chains decide, by its addresses.
//!
//! Selectors ([`selector`]) follow the API's rules: an empty selector
//! selects everything, an absent one nothing (or, in a peer, "the
//! policy's namespace").

pub mod cluster;
pub mod compile;
pub mod render;
pub mod selector;

pub use cluster::{Cluster, PodView};
pub use compile::{Block, PodPolicy, PortMatch, Protocol, Rule, compile};
