//! Test support for tweed: throwaway network namespaces, a CNI runtime
//! driver (single plugins and whole conflists), kernel state read back with
//! iproute2, podman as a real runtime, a real etcd ([`etcd`]) and a real
//! Kubernetes API server with etcd ([`kubeapi`]), real flannel built from
//! its Go module ([`flannel`]).
//!
//! Everything here panics with a clear message on failure: it runs inside
//! tests, where a panic is the report.

pub mod bridged_pods;
pub mod chain;
pub mod cli;
pub mod cni;
pub mod dns;
pub mod etcd;
pub mod flannel;
pub mod go_built;
pub mod interrupt;
pub mod kernel;
pub mod kubeapi;
pub mod machine;
pub mod netns;
pub mod pki;
pub mod podman;
pub mod proc_usage;
pub mod process;
pub mod qemu;
pub mod stats;
pub mod tap_guest;
pub mod tcp_rr;
pub mod vm;

pub use chain::{Attachment, Chain};
pub use cni::{CniCall, CniOutput, REFERENCE_PLUGIN_DIR, reference_plugin};
pub use netns::{TestNs, require_root, run_ok};
