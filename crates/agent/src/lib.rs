//! tweedd, the tweed node agent: leases this node's pod subnet from a
//! store, programs the overlay towards every other node, keeps it correct,
//! and writes the lease file the CNI plugin reads.

pub mod config;
pub mod lease;
pub mod store;
