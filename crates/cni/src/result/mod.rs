//! The ADD/CHECK result, held once in its richest (1.1.0) shape.
//!
//! Plugins build one [`CniResult`] and write it in whatever version the request came in
//! with ([`CniResult::to_json`]); results from other plugins (`prevResult`, delegated
//! IPAM output) are read from any supported version ([`CniResult::from_json`]). Keeping a
//! single in-memory shape means the version differences live in exactly two places.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

mod parse;
mod write;

#[cfg(test)]
mod tests;

/// A plugin result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces created by the attachment, host-side ones included. Empty in IPAM
    /// results.
    pub interfaces: Vec<Interface>,
    /// Addresses assigned by the attachment.
    pub ips: Vec<IpConfig>,
    /// Routes created by the attachment.
    pub routes: Vec<Route>,
    /// Resolver settings for the container.
    pub dns: Dns,
}

impl CniResult {
    /// The interface an address belongs to, if it names one that exists.
    pub fn interface_of(&self, ip: &IpConfig) -> Option<&Interface> {
        ip.interface.and_then(|i| self.interfaces.get(i))
    }
}

/// One interface of the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address, lower case with `:`.
    pub mac: Option<String>,
    /// MTU (written from 1.1.0 on).
    pub mtu: Option<u32>,
    /// Network namespace path for container-side interfaces; `None` on the host.
    pub sandbox: Option<String>,
    /// Socket of a vhost-user style interface (written from 1.1.0 on).
    pub socket_path: Option<String>,
    /// PCI device of the interface (written from 1.1.0 on).
    pub pci_id: Option<String>,
}

/// One address of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with its prefix length, host bits kept (`10.244.1.5/24`).
    pub address: IpNet,
    /// Default gateway of the subnet, if any.
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`]; `None` in IPAM results.
    pub interface: Option<usize>,
}

/// One route of the result. The fields after `gw` are written from 1.1.0 on.
///
/// `Route::default()` is the IPv4 default route (`0.0.0.0/0`) with nothing else set,
/// handy with struct-update syntax.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub dst: IpNet,
    /// Next hop; when absent the runtime may use the subnet's gateway.
    pub gw: Option<IpAddr>,
    /// Path MTU.
    pub mtu: Option<u32>,
    /// TCP MSS to advertise.
    pub advmss: Option<u32>,
    /// Route metric, lower is preferred.
    pub priority: Option<u32>,
    /// Routing table.
    pub table: Option<u32>,
    /// Route scope: 0 global, 253 link, 254 host.
    pub scope: Option<u8>,
}

impl Route {
    /// A route with only destination and next hop, the common case.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// Resolver settings, used both in the result and in the configuration's `dns` key.
/// Empty lists and absent strings are left out of the JSON, as in the reference types.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, most preferred first (IPv4 or IPv6 address strings).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub nameservers: Vec<String>,
    /// Local domain for short names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains, most preferred first.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub search: Vec<String>,
    /// Resolver options (`ndots:5`, ...).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub options: Vec<String>,
}

impl Dns {
    /// True when there is nothing to tell the resolver; such a `dns` key is omitted.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.as_deref().is_none_or(str::is_empty)
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// Reads `null` as the default value: Go encoders write `null` for nil slices, and the
/// reference decoders accept it, so we do too.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
