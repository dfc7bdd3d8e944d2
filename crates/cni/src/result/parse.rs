//! Reading a result of any supported version.
//!
//! One lenient wire shape covers every version: `ips[].version` is accepted and ignored
//! (it is implied by the address), and 1.1.0-only fields are kept if present whatever the
//! declared version. Empty strings read as absent, like the Go decoders do.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{CniResult, Dns, Interface, IpConfig, Route, null_as_default};
use crate::config::{TrackedError, deserialize_tracked, join_path, kind};
use crate::error::{CniError, code};
use crate::version::CniVersion;

impl CniResult {
    /// Reads a `prevResult` (or any result) of a supported version. Errors are code 6
    /// with the JSON path under `prevResult`, e.g. `prevResult.ips[0].address: invalid
    /// CIDR "10.0.0.5"`; an unsupported `cniVersion` is code 1.
    pub fn from_json(value: &Value) -> Result<CniResult, CniError> {
        Self::from_json_at(value, "prevResult")
    }

    /// [`CniResult::from_json`] for results from elsewhere, e.g. a delegated IPAM plugin's
    /// output: `origin` starts every error path (`"IPAM result"`).
    pub fn from_json_at(value: &Value, origin: &str) -> Result<CniResult, CniError> {
        // serde would accept a struct written as an array; a result never is one.
        if !value.is_object() {
            return Err(CniError::decode(format!(
                "{origin}: invalid type: {}, expected a JSON object",
                kind(value)
            )));
        }
        let wire: WireResult =
            deserialize_tracked(value).map_err(|TrackedError { path, msg }| {
                CniError::new(code::DECODE, format!("{}: {msg}", join_path(origin, &path)))
            })?;
        if let Some(v) = &wire.cni_version {
            v.parse::<CniVersion>().map_err(|e| {
                CniError::incompatible_version(format!("{origin}.cniVersion: {}", e.msg))
            })?;
        }
        Ok(wire.into())
    }
}

#[derive(Deserialize)]
struct WireResult {
    #[serde(rename = "cniVersion", default)]
    cni_version: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    interfaces: Vec<WireInterface>,
    #[serde(default, deserialize_with = "null_as_default")]
    ips: Vec<WireIp>,
    #[serde(default, deserialize_with = "null_as_default")]
    routes: Vec<WireRoute>,
    #[serde(default, deserialize_with = "null_as_default")]
    dns: Dns,
}

#[derive(Deserialize)]
struct WireInterface {
    name: String,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    sandbox: Option<String>,
    #[serde(rename = "socketPath", default)]
    socket_path: Option<String>,
    #[serde(rename = "pciID", default)]
    pci_id: Option<String>,
}

#[derive(Deserialize)]
struct WireIp {
    /// "4" or "6" before 1.0.0; implied by the address, so only its type is checked.
    #[serde(default, rename = "version")]
    _version: Option<String>,
    #[serde(default)]
    interface: Option<usize>,
    #[serde(deserialize_with = "cidr")]
    address: IpNet,
    #[serde(default, deserialize_with = "opt_ip")]
    gateway: Option<IpAddr>,
}

#[derive(Deserialize)]
struct WireRoute {
    #[serde(deserialize_with = "cidr")]
    dst: IpNet,
    #[serde(default, deserialize_with = "opt_ip")]
    gw: Option<IpAddr>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    advmss: Option<u32>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    table: Option<u32>,
    #[serde(default)]
    scope: Option<u8>,
}

/// `"10.244.1.5/24"` with a message that shows the bad value.
fn cidr<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map_err(|_| D::Error::custom(format!("invalid CIDR {s:?}")))
}

/// An optional address; `null` and `""` are absent.
fn opt_ip<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    match Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("invalid IP address {s:?}"))),
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

impl From<WireResult> for CniResult {
    fn from(w: WireResult) -> CniResult {
        CniResult {
            interfaces: w
                .interfaces
                .into_iter()
                .map(|i| Interface {
                    name: i.name,
                    mac: non_empty(i.mac),
                    mtu: i.mtu.filter(|&m| m != 0),
                    sandbox: non_empty(i.sandbox),
                    socket_path: non_empty(i.socket_path),
                    pci_id: non_empty(i.pci_id),
                })
                .collect(),
            ips: w
                .ips
                .into_iter()
                .map(|ip| IpConfig {
                    address: ip.address,
                    gateway: ip.gateway,
                    interface: ip.interface,
                })
                .collect(),
            routes: w
                .routes
                .into_iter()
                .map(|r| Route {
                    dst: r.dst,
                    gw: r.gw,
                    mtu: r.mtu.filter(|&m| m != 0),
                    advmss: r.advmss.filter(|&m| m != 0),
                    priority: r.priority.filter(|&p| p != 0),
                    table: r.table,
                    scope: r.scope,
                })
                .collect(),
            dns: Dns {
                domain: non_empty(w.dns.domain),
                ..w.dns
            },
        }
    }
}
