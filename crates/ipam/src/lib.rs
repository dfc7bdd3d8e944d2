//! tweed's built-in IPAM, interchangeable with the reference `host-local`
//! plugin (containernetworking/plugins, `plugins/ipam/host-local`).
//!
//! It reads the same `ipam` configuration, applies the same defaults and
//! allocation order, and keeps its state in exactly host-local's on-disk
//! format under the same `flock`, so a node can move between the two
//! plugins — or run both on one network — without losing or double-assigning
//! an address.
//!
//! Typical ADD:
//!
//! ```no_run
//! # fn main() -> Result<(), tweed_ipam::IpamError> {
//! use tweed_ipam::{IpamConf, Store, allocate};
//! let conf: IpamConf = serde_json::from_str(r#"{"ranges": [[{"subnet": "10.244.1.0/24"}]]}"#)
//!     .expect("valid JSON");
//! let spec = conf.validate()?;
//! let store = Store::open(&spec.data_dir, "tweed")?;
//! let guard = store.lock()?;
//! let addrs = allocate(&spec, &guard, "c0ffee", "eth0", &[])?;
//! # let _ = addrs; Ok(()) }
//! ```

pub mod allocator;
pub mod config;
pub mod error;
pub mod range;
pub mod store;

pub use allocator::{
    Allocation, Cursors, allocate, allocate_fresh, cursors, gc, parse_requested_ip,
    release_attachment, undo,
};
pub use config::{DEFAULT_DATA_DIR, IpamConf, IpamSpec, RangeConf, Route, RouteConf};
pub use error::IpamError;
pub use range::{Range, RangeSet};
pub use store::{Reservation, Store, StoreGuard};
