//! Boot arguments for each guest type, from a [`GuestRecord`].
//!
//! Every renderer uses the record's real prefix length and real DNS
//! servers; where a format cannot carry something the record has (IPv6 in
//! `ip=`, DNS in Mewz), it is left out rather than approximated, and where
//! a format needs something the record lacks (an IPv4 address), rendering
//! fails with a message that says so.

mod firecracker;
mod linux;
mod mewz;
mod rumprun;
mod solo5;
mod unikraft;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use thiserror::Error;

use crate::record::GuestRecord;

/// The guest types `tweedctl guest-args --format` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Linux kernel `ip=` (nfsroot.txt syntax).
    Linux,
    /// Unikraft `netdev.ip=`.
    Unikraft,
    /// Rumprun's JSON configuration (`net` block).
    Rumprun,
    /// Solo5 / MirageOS unikernel arguments (`--ipv4=`, ...).
    Solo5,
    /// A Firecracker configuration fragment: the network interface and the
    /// kernel's `ip=`.
    Firecracker,
    /// Mewz `ip=<cidr> gateway=<gw>`.
    Mewz,
    /// The whole record, as JSON.
    Json,
}

impl Format {
    pub const ALL: [Format; 7] = [
        Format::Linux,
        Format::Unikraft,
        Format::Rumprun,
        Format::Solo5,
        Format::Firecracker,
        Format::Mewz,
        Format::Json,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Linux => "linux",
            Format::Unikraft => "unikraft",
            Format::Rumprun => "rumprun",
            Format::Solo5 => "solo5",
            Format::Firecracker => "firecracker",
            Format::Mewz => "mewz",
            Format::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name no guest type has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {name:?}; use one of {}", Format::ALL.map(|f| f.as_str()).join(", "))]
pub struct UnknownFormat {
    pub name: String,
}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        let s = s.to_ascii_lowercase();
        if s == "mirage" || s == "mirageos" {
            return Ok(Format::Solo5);
        }
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or(UnknownFormat { name: s })
    }
}

/// Choices the record does not make.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Leave nameservers out (for guests that reject unknown arguments,
    /// such as a MirageOS unikernel built without a resolver).
    pub no_dns: bool,
    /// The interface name inside the guest (Linux `eth0`, Rumprun
    /// `ukvmif0`, Firecracker's `iface_id`); each format has a default.
    pub guest_ifname: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RenderError {
    #[error("the {format} format carries IPv4 only, and this guest has no IPv4 address")]
    NoIpv4 { format: Format },
    #[error("the {format} format needs a tap device; this attachment is {mode}")]
    NeedsTap { format: Format, mode: &'static str },
    #[error("{0}")]
    Invalid(String),
}

/// Renders the boot arguments of `record` for `format`.
pub fn render(
    record: &GuestRecord,
    format: Format,
    opts: &RenderOptions,
) -> Result<String, RenderError> {
    match format {
        Format::Linux => linux::render(record, opts),
        Format::Unikraft => unikraft::render(record, opts),
        Format::Rumprun => rumprun::render(record, opts),
        Format::Solo5 => solo5::render(record, opts),
        Format::Firecracker => firecracker::render(record, opts),
        Format::Mewz => mewz::render(record, opts),
        Format::Json => Ok(serde_json::to_string_pretty(record).expect("records serialize")),
    }
}

/// The IPv4 address and gateway every IPv4-only format needs.
fn require_ipv4(
    record: &GuestRecord,
    format: Format,
) -> Result<(Ipv4Net, Option<Ipv4Addr>), RenderError> {
    record.ipv4().ok_or(RenderError::NoIpv4 { format })
}

/// IPv4 nameservers unless DNS is turned off.
fn ipv4_dns(record: &GuestRecord, opts: &RenderOptions) -> Vec<Ipv4Addr> {
    if opts.no_dns {
        Vec::new()
    } else {
        record.dns.ipv4_nameservers()
    }
}

/// A colon-separated field list with the empty fields at its end dropped
/// (both `ip=` and `netdev.ip=` allow that).
fn join_fields(fields: &[String]) -> String {
    let last = fields
        .iter()
        .rposition(|f| !f.is_empty())
        .map_or(0, |i| i + 1);
    fields[..last].join(":")
}
