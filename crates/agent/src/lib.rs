//! tweedd, the tweed node agent: leases this node's pod subnet from a
//! store, programs the overlay towards every other node, keeps it correct,
//! and writes the lease file the CNI plugin reads.

pub mod agent;
pub mod backend;
pub mod backoff;
pub mod capabilities;
pub mod config;
pub mod guest_dhcp;
pub mod health;
pub mod identity;
pub mod kernel_check;
pub mod lease;
pub mod leasing;
pub mod masq;
pub mod metrics;
pub mod net_conf_source;
pub mod policy;
pub mod pools;
pub mod reconcile;
pub mod segment_blocks;
pub mod segment_macs;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod wires;
