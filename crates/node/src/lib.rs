//! The node contract: what tweed leaves on a node for other programs to
//! rely on, in one place.
//!
//! - [`subnet_env`]: the lease file `/run/tweed/subnet.env` tweedd writes
//!   and the plugin (tweed's, or flannel's with `FLANNEL_*` keys) reads;
//! - [`kv`]: its `KEY=value` line format, which the segments' block files
//!   (`tweed-segment`) share;
//! - [`names`]: the route protocol, device names and nftables table that
//!   tweedctl, the plugin and a restarted agent recognise tweed's state by.
//!
//! Plain data only — no store, no kernel, no async runtime — so the
//! plugin and tweedctl can use it without pulling in the agent.

pub mod kv;
pub mod names;
pub mod subnet_env;

pub use subnet_env::{Family, Prefix, SubnetEnv, SubnetEnvError};
