//! Root-free types for the CNI protocol (spec 1.1.0, also 0.3.0, 0.3.1, 0.4.0 and 1.0.0).
//!
//! A CNI plugin is a short-lived process started once per runtime call, so this crate is
//! deliberately small: no regex, no async, nothing that touches the system. It covers what
//! every call needs before doing real work:
//!
//! - [`env`](mod@env) reads and validates the `CNI_*` environment variables,
//! - [`args`] parses `CNI_ARGS`,
//! - [`config`] parses the network configuration from stdin with error codes and JSON
//!   paths that tell the operator exactly which field is wrong,
//! - [`result`] holds one canonical result and writes/reads it in every supported version,
//! - [`error`] is the spec's error object,
//! - [`version`] is the version negotiation,
//! - [`gc`] reads the attachment list of a `GC` call.

pub mod args;
pub mod config;
pub mod env;
pub mod error;
pub mod gc;
pub mod result;
pub mod version;

pub use args::CniArgs;
pub use config::NetConf;
pub use env::{Command, Environment};
pub use error::CniError;
pub use result::CniResult;
pub use version::CniVersion;
