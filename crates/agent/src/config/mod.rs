//! The network configuration, `/etc/tweed/net-conf.json`: a superset of
//! flannel's net-conf.json, so an operator's existing file works unchanged.
//!
//! Parsing is strict about types and values (every error names its field)
//! and lenient about unknown keys (flannel's files carry keys tweed does not
//! use).

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use crate::backend::srv6;
use crate::pools::{self, Pools};
pub use tweed_segment::Segment;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

pub(crate) fn err(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// The file as written (flannel's key names).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    network: Option<String>,
    subnet_len: Option<u8>,
    subnet_min: Option<String>,
    subnet_max: Option<String>,
    #[serde(rename = "EnableIPv4")]
    enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPv6Network")]
    ipv6_network: Option<String>,
    #[serde(rename = "IPv6SubnetLen")]
    ipv6_subnet_len: Option<u8>,
    #[serde(rename = "IPv6SubnetMin")]
    ipv6_subnet_min: Option<String>,
    #[serde(rename = "IPv6SubnetMax")]
    ipv6_subnet_max: Option<String>,
    backend: Option<Value>,
    /// Layer-2 segments (tweed's addition; flannel ignores the key).
    segments: Option<Value>,
    /// Point-to-point wires (tweed's addition): `{"MTU": 1450}`.
    wires: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWires {
    #[serde(rename = "MTU")]
    mtu: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawBackend {
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "VNI")]
    vni: Option<u32>,
    port: Option<u16>,
    #[serde(rename = "MTU")]
    mtu: Option<u32>,
    direct_routing: Option<bool>,
    /// Transmit queue length of the tunnel device (seed 003's `-qlen`);
    /// `qlen` as the seed spells it is accepted too.
    #[serde(alias = "qlen")]
    qlen: Option<u32>,
    /// SRv6: the prefix node SIDs are carved from.
    locator: Option<String>,
    /// WireGuard (flannel's keys): the pre-shared key, base64.
    #[serde(rename = "PSK")]
    psk: Option<String>,
    /// WireGuard (tweed's addition): a file holding the pre-shared key,
    /// so it need not sit in a ConfigMap.
    #[serde(rename = "PSKFile")]
    psk_file: Option<String>,
    listen_port: Option<u16>,
    #[serde(rename = "ListenPortV6")]
    listen_port_v6: Option<u16>,
    persistent_keepalive_interval: Option<u16>,
    mode: Option<String>,
}

/// Which overlay carries traffic between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    Vxlan {
        vni: u32,
        port: u16,
        /// Peers on the same L2 segment get a plain route instead.
        direct_routing: bool,
    },
    /// Geneve over one external device (see `backend::geneve`).
    Geneve {
        vni: u32,
        port: u16,
    },
    HostGw,
    Srv6 {
        /// Node SIDs are carved from this prefix.
        locator: Ipv6Net,
    },
    /// WireGuard between nodes (see `backend::wireguard`).
    Wireguard(WireguardConfig),
}

/// The wireguard backend's settings, flannel's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireguardConfig {
    /// UDP port of the IPv4 device, or of the one device (`ListenPort`).
    pub listen_port: u16,
    /// UDP port of the IPv6 device in `separate` mode (`ListenPortV6`).
    pub listen_port_v6: u16,
    /// Seconds between keepalives to each peer; 0: none
    /// (`PersistentKeepaliveInterval`).
    pub keepalive: u16,
    pub mode: WireguardMode,
    pub psk: Option<PskSource>,
}

/// Where the pre-shared key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PskSource {
    /// `PSK`, checked to be a key.
    Inline(tweed_netlink::WgKey),
    /// `PSKFile`, read when the agent starts.
    File(std::path::PathBuf),
}

/// How many devices, and which underlay family reaches a peer
/// (flannel's `Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireguardMode {
    /// One device per pod family: IPv4 pods over IPv4 endpoints
    /// (`tweed-wg`), IPv6 pods over IPv6 endpoints (`tweed-wg-v6`).
    Separate,
    /// One device for both families; a peer's IPv4 address when both
    /// nodes have one, else its IPv6 address.
    Auto,
    /// One device for both families, over IPv4 endpoints.
    Ipv4,
    /// One device for both families, over IPv6 endpoints.
    Ipv6,
}

pub const DEFAULT_WIREGUARD_PORT: u16 = 51820;
pub const DEFAULT_WIREGUARD_PORT_V6: u16 = 51821;

impl BackendConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendConfig::Vxlan { .. } => "vxlan",
            BackendConfig::Geneve { .. } => "geneve",
            BackendConfig::HostGw => "host-gw",
            BackendConfig::Srv6 { .. } => "srv6",
            BackendConfig::Wireguard(_) => "wireguard",
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The pools node subnets are cut from, one per family.
    pub pools: Pools,
    pub backend: BackendConfig,
    /// Overrides the MTU derived from the underlay.
    pub mtu: Option<u32>,
    /// Transmit queue length of the vxlan or geneve device (`Backend.Qlen`);
    /// `None` leaves the kernel's.
    pub qlen: Option<u32>,
    /// Layer-2 segments spanning the nodes (`Segments`).
    pub segments: Vec<Segment>,
    /// The MTU of every wire (`Wires.MTU`); default: the underlay's
    /// minus the VXLAN overhead, so a wire carries the same frames whether
    /// its pods share a node or not.
    pub wire_mtu: Option<u32>,
}

pub const DEFAULT_VNI: u32 = 1;
pub const DEFAULT_VXLAN_PORT: u16 = 8472;
/// IANA's Geneve port.
pub const DEFAULT_GENEVE_PORT: u16 = 6081;
pub const DEFAULT_SRV6_LOCATOR: &str = "fd00:5::/48";

impl NetConfig {
    pub fn parse(text: &str) -> Result<NetConfig, ConfigError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| err("net-conf.json", format!("not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(err("net-conf.json", "must be a JSON object"));
        }
        let raw: RawConfig = typed(&value, "")?;
        let enable_ipv4 = raw.enable_ipv4.unwrap_or(true);
        let enable_ipv6 = raw.enable_ipv6.unwrap_or(false);
        if !enable_ipv4 && !enable_ipv6 {
            return Err(err("EnableIPv4", "IPv4 and IPv6 are both disabled"));
        }
        let ipv4 = if enable_ipv4 {
            let network: Ipv4Net = parse_net(raw.network.as_deref(), "Network")?;
            Some(pools::build(
                network,
                raw.subnet_len.unwrap_or(24),
                raw.subnet_min.as_deref(),
                raw.subnet_max.as_deref(),
                ("SubnetLen", "SubnetMin", "SubnetMax"),
                30,
            )?)
        } else {
            None
        };
        let ipv6 = if enable_ipv6 {
            let network: Ipv6Net = parse_net(raw.ipv6_network.as_deref(), "IPv6Network")?;
            Some(pools::build(
                network,
                raw.ipv6_subnet_len.unwrap_or(64),
                raw.ipv6_subnet_min.as_deref(),
                raw.ipv6_subnet_max.as_deref(),
                ("IPv6SubnetLen", "IPv6SubnetMin", "IPv6SubnetMax"),
                126,
            )?)
        } else {
            None
        };
        let raw_backend: RawBackend = match &raw.backend {
            None => RawBackend::default(),
            Some(v) if v.is_object() => typed(v, "Backend.")?,
            Some(_) => return Err(err("Backend", "must be an object")),
        };
        let kind = raw_backend.kind.as_deref().unwrap_or("vxlan");
        let backend = match kind {
            "vxlan" => {
                let (vni, port) = vni_and_port(&raw_backend, DEFAULT_VXLAN_PORT)?;
                BackendConfig::Vxlan {
                    vni,
                    port,
                    direct_routing: raw_backend.direct_routing.unwrap_or(false),
                }
            }
            "geneve" => {
                let (vni, port) = vni_and_port(&raw_backend, DEFAULT_GENEVE_PORT)?;
                // Segments and wires are VXLAN on 8472 whatever the
                // backend: one UDP port cannot be both.
                if port == DEFAULT_VXLAN_PORT {
                    return Err(err(
                        "Backend.Port",
                        format!(
                            "{port} is the VXLAN port of segments and wires; Geneve needs another (default {DEFAULT_GENEVE_PORT})"
                        ),
                    ));
                }
                if raw_backend.direct_routing == Some(true) {
                    return Err(err(
                        "Backend.DirectRouting",
                        "only the vxlan backend has it",
                    ));
                }
                BackendConfig::Geneve { vni, port }
            }
            "host-gw" => BackendConfig::HostGw,
            "srv6" => {
                let locator: Ipv6Net = raw_backend
                    .locator
                    .as_deref()
                    .unwrap_or(DEFAULT_SRV6_LOCATOR)
                    .parse()
                    .map_err(|_| err("Backend.Locator", "not an IPv6 prefix"))?;
                if locator.prefix_len() > 64 {
                    return Err(err(
                        "Backend.Locator",
                        format!(
                            "/{} leaves no room for node SIDs; use /64 or shorter",
                            locator.prefix_len()
                        ),
                    ));
                }
                // Nodes are numbered by their subnet in the pool that
                // numbers them (IPv4 when there is one).
                let pool_bits = match (&ipv4, &ipv6) {
                    (Some(p), _) => p.subnet_bits(),
                    (None, Some(p)) => p.subnet_bits(),
                    (None, None) => 0,
                };
                if let Some(why) = srv6::locator_too_long(locator, pool_bits) {
                    return Err(err("Backend.Locator", why));
                }
                BackendConfig::Srv6 {
                    locator: locator.trunc(),
                }
            }
            "wireguard" => BackendConfig::Wireguard(wireguard(&raw_backend)?),
            other => {
                return Err(err(
                    "Backend.Type",
                    format!(
                        "unknown backend {other:?}; tweed has vxlan, geneve, host-gw, srv6 and wireguard"
                    ),
                ));
            }
        };
        if !matches!(backend, BackendConfig::Wireguard(_)) {
            for (present, field) in [
                (raw_backend.psk.is_some(), "Backend.PSK"),
                (raw_backend.psk_file.is_some(), "Backend.PSKFile"),
                (raw_backend.listen_port.is_some(), "Backend.ListenPort"),
                (raw_backend.listen_port_v6.is_some(), "Backend.ListenPortV6"),
                (
                    raw_backend.persistent_keepalive_interval.is_some(),
                    "Backend.PersistentKeepaliveInterval",
                ),
                (raw_backend.mode.is_some(), "Backend.Mode"),
            ] {
                if present {
                    return Err(err(field, "only the wireguard backend has it"));
                }
            }
        }
        if let Some(mtu) = raw_backend.mtu
            && !(576..=65535).contains(&mtu)
        {
            return Err(err("Backend.MTU", format!("{mtu} is outside 576..65535")));
        }
        if let Some(qlen) = raw_backend.qlen
            && !matches!(
                backend,
                BackendConfig::Vxlan { .. } | BackendConfig::Geneve { .. }
            )
        {
            return Err(err(
                "Backend.Qlen",
                format!(
                    "{qlen}: the {} backend has no tunnel device to queue on (vxlan and geneve have)",
                    backend.type_name()
                ),
            ));
        }
        let segments: Vec<Segment> = match &raw.segments {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => typed(v, "Segments")?,
        };
        tweed_segment::validate(&segments).map_err(|e| {
            let text = e.to_string();
            match text.split_once(": ") {
                Some((field, reason)) => err(field, reason),
                None => err("Segments", text),
            }
        })?;
        if let BackendConfig::Vxlan { vni, .. } = &backend
            && let Some(i) = segments.iter().position(|s| s.vni == *vni)
        {
            return Err(err(
                &format!("Segments[{i}].VNI"),
                format!("{vni} is the pod network's own VXLAN VNI (Backend.VNI)"),
            ));
        }
        // A segment's addresses live on the pod's extra interface, on-link:
        // overlapping the routed pod network would send one of the two
        // the wrong way inside the pod.
        overlap_check(
            ipv4.as_ref().map(|p| IpNet::V4(p.network)),
            segments.iter().map(|s| s.subnet.map(IpNet::V4)),
            ("Subnet", "Network"),
        )?;
        overlap_check(
            ipv6.as_ref().map(|p| IpNet::V6(p.network)),
            segments.iter().map(|s| s.ipv6_subnet.map(IpNet::V6)),
            ("IPv6Subnet", "IPv6Network"),
        )?;
        let wire_mtu = match &raw.wires {
            None | Some(Value::Null) => None,
            Some(v) => {
                let w: RawWires = typed(v, "Wires")?;
                if let Some(mtu) = w.mtu
                    && !(576..=65535).contains(&mtu)
                {
                    return Err(err("Wires.MTU", format!("{mtu} is outside 576..65535")));
                }
                w.mtu
            }
        };
        Ok(NetConfig {
            pools: Pools { ipv4, ipv6 },
            backend,
            mtu: raw_backend.mtu,
            qlen: raw_backend.qlen,
            segments,
            wire_mtu,
        })
    }

    /// The VNIs already in use on the nodes' VXLAN port: the pod
    /// network's and the segments'.
    pub fn reserved_vnis(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self.segments.iter().map(|s| s.vni).collect();
        if let BackendConfig::Vxlan { vni, .. } = &self.backend {
            out.push(*vni);
        }
        out
    }

    /// The whole cluster network(s), for masquerade and routing decisions.
    pub fn networks(&self) -> Vec<IpNet> {
        self.pools.networks()
    }
}

/// The wireguard backend's settings, checked.
fn wireguard(raw: &RawBackend) -> Result<WireguardConfig, ConfigError> {
    for (present, field) in [
        (raw.vni.is_some(), "Backend.VNI"),
        (raw.port.is_some(), "Backend.Port"),
        (raw.direct_routing.is_some(), "Backend.DirectRouting"),
    ] {
        if present {
            return Err(err(
                field,
                "the wireguard backend has no such setting (ports: ListenPort, ListenPortV6)",
            ));
        }
    }
    let listen_port = raw.listen_port.unwrap_or(DEFAULT_WIREGUARD_PORT);
    let listen_port_v6 = raw.listen_port_v6.unwrap_or(DEFAULT_WIREGUARD_PORT_V6);
    for (port, field) in [
        (listen_port, "Backend.ListenPort"),
        (listen_port_v6, "Backend.ListenPortV6"),
    ] {
        if port == 0 {
            return Err(err(field, "must not be 0"));
        }
        if port == DEFAULT_VXLAN_PORT {
            return Err(err(
                field,
                format!("{port} is the VXLAN port of segments and wires"),
            ));
        }
    }
    let mode = match raw.mode.as_deref().unwrap_or("separate") {
        "separate" => WireguardMode::Separate,
        "auto" => WireguardMode::Auto,
        "ipv4" => WireguardMode::Ipv4,
        "ipv6" => WireguardMode::Ipv6,
        other => {
            return Err(err(
                "Backend.Mode",
                format!("unknown mode {other:?}; one of separate, auto, ipv4, ipv6"),
            ));
        }
    };
    if mode == WireguardMode::Separate && listen_port == listen_port_v6 {
        return Err(err(
            "Backend.ListenPortV6",
            format!(
                "{listen_port_v6} is ListenPort too; separate mode has two devices, each on its own port"
            ),
        ));
    }
    let psk = match (&raw.psk, &raw.psk_file) {
        (Some(_), Some(_)) => {
            return Err(err("Backend.PSKFile", "give PSK or PSKFile, not both"));
        }
        (Some(text), None) => Some(PskSource::Inline(
            text.parse()
                .map_err(|e: tweed_netlink::InvalidKey| err("Backend.PSK", e.to_string()))?,
        )),
        (None, Some(path)) if path.is_empty() => {
            return Err(err("Backend.PSKFile", "must not be empty"));
        }
        (None, Some(path)) => Some(PskSource::File(path.into())),
        (None, None) => None,
    };
    Ok(WireguardConfig {
        listen_port,
        listen_port_v6,
        keepalive: raw.persistent_keepalive_interval.unwrap_or(0),
        mode,
        psk,
    })
}

/// `Backend.VNI` and `Backend.Port` of a tunnel backend, checked.
fn vni_and_port(raw: &RawBackend, default_port: u16) -> Result<(u32, u16), ConfigError> {
    let vni = raw.vni.unwrap_or(DEFAULT_VNI);
    if vni == 0 || vni >= 1 << 24 {
        return Err(err("Backend.VNI", format!("{vni} is outside 1..16777215")));
    }
    let port = raw.port.unwrap_or(default_port);
    if port == 0 {
        return Err(err("Backend.Port", "must not be 0"));
    }
    Ok((vni, port))
}

/// Refuses the first segment subnet (of one family, by segment index)
/// that overlaps the pod `network` of that family; `keys` name the two
/// fields.
fn overlap_check(
    network: Option<IpNet>,
    subnets: impl IntoIterator<Item = Option<IpNet>>,
    (subnet_key, network_key): (&str, &str),
) -> Result<(), ConfigError> {
    let Some(network) = network else {
        return Ok(());
    };
    for (i, subnet) in subnets.into_iter().enumerate() {
        if let Some(subnet) = subnet
            && (subnet.contains(&network) || network.contains(&subnet))
        {
            return Err(err(
                &format!("Segments[{i}].{subnet_key}"),
                format!("{subnet} overlaps the pod network {network} ({network_key})"),
            ));
        }
    }
    Ok(())
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value, prefix: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            prefix.trim_end_matches('.').to_string()
        } else {
            format!("{prefix}{path}")
        };
        err(&field, e.into_inner().to_string())
    })
}

fn parse_net<N: std::str::FromStr>(value: Option<&str>, field: &str) -> Result<N, ConfigError> {
    let v = value.ok_or_else(|| err(field, "missing"))?;
    v.parse()
        .map_err(|_| err(field, format!("{v:?} is not a network in CIDR notation")))
}

#[cfg(test)]
mod tests;
