//! Guests (VMs, unikernels) on the pod network: what the `tweed` plugin
//! records about a guest's network, and how `tweedctl guest-args` turns
//! that record into boot arguments.
//!
//! The plugin writes one [`GuestRecord`] per attachment at
//! `<state dir>/guests/<containerID>-<ifname>.json` ([`record::path`]);
//! [`render::render`] prints it in the syntax a guest type understands.
//! Both sides depend only on this crate, so the file format has one
//! definition. The same holds for [`DhcpRecord`] (`dhcp`), which `tweed
//! urunc-hook` writes and tweedd's DHCP server for guests reads.

pub mod dhcp;
pub mod dns;
pub mod port;
pub mod record;
pub mod render;

pub use dhcp::DhcpRecord;
pub use dns::GuestDns;
pub use port::{Port, Protocol};
pub use record::{DeviceNumber, GuestAddress, GuestMode, GuestRecord, GuestRoute, Localhost};
pub use render::{Format, RenderError, RenderOptions, render};
