//! Shared by the lab benchmarks (each bench includes this module and uses
//! part of it): the machine and binaries, Ctrl-C that still cleans up,
//! namespaces and processes the bench makes (and removes), statistics.

#![allow(dead_code)]

pub mod ns;
pub mod setup;
pub mod stats;

pub use ns::*;
pub use setup::*;
pub use stats::*;
pub use tweed_testkit::interrupt::*;
