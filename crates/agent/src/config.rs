//! The network configuration, `/etc/tweed/net-conf.json`: a superset of
//! flannel's net-conf.json, so an operator's existing file works unchanged.
//!
//! Parsing is strict about types and values (every error names its field)
//! and lenient about unknown keys (flannel's files carry keys tweed does not
//! use).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use crate::backend::srv6;
pub use tweed_segment::Segment;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

fn err(field: &str, reason: impl Into<String>) -> ConfigError {
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

/// The pool node subnets of one family are cut from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool<N> {
    pub network: N,
    pub subnet_len: u8,
    /// First and last subnet that may be handed out.
    pub min: N,
    pub max: N,
}

impl<N: Family> Pool<N> {
    /// log2 of the number of subnets in the network.
    pub fn subnet_bits(&self) -> u8 {
        self.subnet_len - self.network.prefix()
    }
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
    pub ipv4: Option<Pool<Ipv4Net>>,
    pub ipv6: Option<Pool<Ipv6Net>>,
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
            Some(pool(
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
            Some(pool(
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
            ipv4,
            ipv6,
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
        let mut out = Vec::new();
        if let Some(p) = &self.ipv4 {
            out.push(IpNet::V4(p.network));
        }
        if let Some(p) = &self.ipv6 {
            out.push(IpNet::V6(p.network));
        }
        out
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

/// Operations both families need from their network type.
pub trait Family: Copy + Eq + std::fmt::Display + std::str::FromStr {
    type Addr: Copy + Eq + std::str::FromStr + Into<IpAddr>;
    fn new(addr: Self::Addr, len: u8) -> Option<Self>;
    fn addr(&self) -> Self::Addr;
    fn prefix(&self) -> u8;
    fn max_prefix() -> u8;
    fn trunc(&self) -> Self;
    fn contains_net(&self, other: &Self) -> bool;
    fn index_in(&self, network: &Self) -> u128;
    fn nth_subnet(network: &Self, len: u8, n: u128) -> Option<Self>;
}

impl Family for Ipv4Net {
    type Addr = Ipv4Addr;
    fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        Ipv4Net::new(addr, len).ok()
    }
    fn addr(&self) -> Ipv4Addr {
        Ipv4Net::addr(self)
    }
    fn prefix(&self) -> u8 {
        self.prefix_len()
    }
    fn max_prefix() -> u8 {
        32
    }
    fn trunc(&self) -> Self {
        Ipv4Net::trunc(self)
    }
    fn contains_net(&self, other: &Self) -> bool {
        self.contains(other)
    }
    fn index_in(&self, network: &Self) -> u128 {
        let off = u32::from(self.network()) - u32::from(network.network());
        u128::from(off >> (32 - self.prefix_len()))
    }
    fn nth_subnet(network: &Self, len: u8, n: u128) -> Option<Self> {
        let step = 1u128 << (32 - len);
        let base = u128::from(u32::from(network.network()));
        let addr = base.checked_add(n.checked_mul(step)?)?;
        let addr = u32::try_from(addr).ok()?;
        let net = Ipv4Net::new(Ipv4Addr::from(addr), len).ok()?;
        network.contains(&net).then_some(net)
    }
}

impl Family for Ipv6Net {
    type Addr = Ipv6Addr;
    fn new(addr: Ipv6Addr, len: u8) -> Option<Self> {
        Ipv6Net::new(addr, len).ok()
    }
    fn addr(&self) -> Ipv6Addr {
        Ipv6Net::addr(self)
    }
    fn prefix(&self) -> u8 {
        self.prefix_len()
    }
    fn max_prefix() -> u8 {
        128
    }
    fn trunc(&self) -> Self {
        Ipv6Net::trunc(self)
    }
    fn contains_net(&self, other: &Self) -> bool {
        self.contains(other)
    }
    fn index_in(&self, network: &Self) -> u128 {
        let off = u128::from(self.network()) - u128::from(network.network());
        off >> (128 - self.prefix_len())
    }
    fn nth_subnet(network: &Self, len: u8, n: u128) -> Option<Self> {
        let shift = 128 - u32::from(len);
        let step = 1u128.checked_shl(shift)?;
        let addr = u128::from(network.network()).checked_add(n.checked_mul(step)?)?;
        let net = Ipv6Net::new(Ipv6Addr::from(addr), len).ok()?;
        network.contains(&net).then_some(net)
    }
}

/// Builds and checks a pool. flannel's defaults: SubnetMin is the second
/// subnet of the network (the first holds the network address), SubnetMax
/// the last.
fn pool<N: Family>(
    network: N,
    subnet_len: u8,
    min: Option<&str>,
    max: Option<&str>,
    fields: (&str, &str, &str),
    longest: u8,
) -> Result<Pool<N>, ConfigError> {
    let (len_field, min_field, max_field) = fields;
    if network.trunc() != network {
        return Err(err(
            if N::max_prefix() == 32 {
                "Network"
            } else {
                "IPv6Network"
            },
            format!(
                "{network} has host bits set; did you mean {}?",
                network.trunc()
            ),
        ));
    }
    if subnet_len <= network.prefix() || subnet_len > longest {
        return Err(err(
            len_field,
            format!(
                "{subnet_len} must be longer than the network's /{} and at most {longest}",
                network.prefix()
            ),
        ));
    }
    let count_bits = u32::from(subnet_len - network.prefix());
    let last_index = if count_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << count_bits) - 1
    };
    let parse_bound = |v: Option<&str>, field: &str, default: u128| -> Result<N, ConfigError> {
        match v {
            None => N::nth_subnet(&network, subnet_len, default)
                .ok_or_else(|| err(field, "the network has no room for such a subnet")),
            Some(s) => {
                let addr: N::Addr = s
                    .parse()
                    .map_err(|_| err(field, format!("{s:?} is not an address")))?;
                let net = N::new(addr, subnet_len).ok_or_else(|| err(field, "bad address"))?;
                if net.trunc() != net {
                    return Err(err(
                        field,
                        format!("{s} is not the start of a /{subnet_len} subnet"),
                    ));
                }
                if !network.contains_net(&net) {
                    return Err(err(field, format!("{s} is outside {network}")));
                }
                Ok(net)
            }
        }
    };
    let min_net = parse_bound(min, min_field, 1.min(last_index))?;
    let max_net = parse_bound(max, max_field, last_index)?;
    if min_net.index_in(&network) > max_net.index_in(&network) {
        return Err(err(
            min_field,
            format!("{min_net} comes after {max_field} {max_net}"),
        ));
    }
    Ok(Pool {
        network,
        subnet_len,
        min: min_net,
        max: max_net,
    })
}

impl<N: Family> Pool<N> {
    /// How many subnets the pool holds.
    pub fn size(&self) -> u128 {
        self.max.index_in(&self.network) - self.min.index_in(&self.network) + 1
    }

    /// The `i`-th subnet of the pool (0 = `min`).
    pub fn subnet(&self, i: u128) -> Option<N> {
        if i >= self.size() {
            return None;
        }
        N::nth_subnet(
            &self.network,
            self.subnet_len,
            self.min.index_in(&self.network) + i,
        )
    }

    pub fn contains(&self, subnet: &N) -> bool {
        subnet.prefix() == self.subnet_len
            && self.network.contains_net(subnet)
            && (self.min.index_in(&self.network)..=self.max.index_in(&self.network))
                .contains(&subnet.index_in(&self.network))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flannel_defaults() {
        let c = NetConfig::parse(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}"#)
            .unwrap();
        let p = c.ipv4.unwrap();
        assert_eq!(p.subnet_len, 24);
        assert_eq!(p.min, "10.244.1.0/24".parse().unwrap());
        assert_eq!(p.max, "10.244.255.0/24".parse().unwrap());
        assert_eq!(p.size(), 255);
        assert_eq!(p.subnet(0), Some("10.244.1.0/24".parse().unwrap()));
        assert_eq!(p.subnet(255), None);
        assert_eq!(
            c.backend,
            BackendConfig::Vxlan {
                vni: 1,
                port: 8472,
                direct_routing: false
            }
        );
        assert!(c.ipv6.is_none());
    }

    #[test]
    fn dual_stack_and_bounds() {
        let c = NetConfig::parse(
            r#"{"Network": "10.244.0.0/16", "SubnetLen": 26, "SubnetMin": "10.244.8.0", "SubnetMax": "10.244.9.192",
                "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "IPv6SubnetLen": 64,
                "Backend": {"Type": "vxlan", "VNI": 4096, "Port": 4789, "DirectRouting": true, "MTU": 1400},
                "SomethingFlannelHas": 1}"#,
        )
        .unwrap();
        assert_eq!(c.ipv4.as_ref().unwrap().size(), 8);
        assert!(
            c.ipv4
                .as_ref()
                .unwrap()
                .contains(&"10.244.9.64/26".parse().unwrap())
        );
        assert!(
            !c.ipv4
                .as_ref()
                .unwrap()
                .contains(&"10.244.10.0/26".parse().unwrap())
        );
        let v6 = c.ipv6.unwrap();
        assert_eq!(v6.min, "fd00:10:244:1::/64".parse().unwrap());
        assert_eq!(v6.size(), 255);
        assert_eq!(
            c.backend,
            BackendConfig::Vxlan {
                vni: 4096,
                port: 4789,
                direct_routing: true
            }
        );
        assert_eq!(c.mtu, Some(1400));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("not json", "net-conf.json"),
            (r#"[]"#, "net-conf.json"),
            (r#"{}"#, "Network"),
            (r#"{"Network": "10.244.0.0/33"}"#, "Network"),
            (r#"{"Network": "10.244.1.0/16"}"#, "Network"),
            (
                r#"{"Network": "10.244.0.0/16", "SubnetLen": 16}"#,
                "SubnetLen",
            ),
            (
                r#"{"Network": "10.244.0.0/16", "SubnetLen": 31}"#,
                "SubnetLen",
            ),
            (
                r#"{"Network": "10.244.0.0/16", "SubnetLen": "24"}"#,
                "SubnetLen",
            ),
            (
                r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.245.0.0"}"#,
                "SubnetMin",
            ),
            (
                r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.0.5"}"#,
                "SubnetMin",
            ),
            (
                r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.9.0", "SubnetMax": "10.244.8.0"}"#,
                "SubnetMin",
            ),
            (
                r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}"#,
                "Backend.Type",
            ),
            (
                r#"{"Network": "10.244.0.0/16", "Backend": {"VNI": 0}}"#,
                "Backend.VNI",
            ),
            (
                r#"{"Network": "10.244.0.0/16", "Backend": {"VNI": "one"}}"#,
                "Backend.VNI",
            ),
            (
                r#"{"Network": "10.244.0.0/16", "Backend": {"MTU": 20}}"#,
                "Backend.MTU",
            ),
            (r#"{"Network": "10.244.0.0/16", "Backend": []}"#, "Backend"),
            (
                r#"{"EnableIPv4": false, "EnableIPv6": true}"#,
                "IPv6Network",
            ),
            (r#"{"EnableIPv4": false}"#, "EnableIPv4"),
            (
                r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "srv6", "Locator": "fd00::/96"}}"#,
                "Backend.Locator",
            ),
        ];
        for (text, field) in cases {
            let e = NetConfig::parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn the_wire_mtu_is_parsed_and_checked() {
        let c =
            NetConfig::parse(r#"{"Network": "10.244.0.0/16", "Wires": {"MTU": 9000}}"#).unwrap();
        assert_eq!(c.wire_mtu, Some(9000));
        assert_eq!(
            NetConfig::parse(r#"{"Network": "10.244.0.0/16"}"#)
                .unwrap()
                .wire_mtu,
            None
        );
        for (wires, field) in [
            (r#"{"MTU": 100}"#, "Wires.MTU"),
            (r#"{"Mtu": 1400}"#, "Wires"),
        ] {
            let e = NetConfig::parse(&format!(
                r#"{{"Network": "10.244.0.0/16", "Wires": {wires}}}"#
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains(field), "{wires}: {e}");
        }
    }

    #[test]
    fn segments_are_parsed_and_checked() {
        let c = NetConfig::parse(
            r#"{"Network": "10.244.0.0/16", "Segments": [{"Name": "lab1", "VNI": 4001, "MTU": 1400}]}"#,
        )
        .unwrap();
        assert_eq!(c.segments.len(), 1);
        assert_eq!(c.segments[0].name, "lab1");
        assert_eq!(c.segments[0].mtu, Some(1400));
        assert!(
            NetConfig::parse(r#"{"Network": "10.244.0.0/16"}"#)
                .unwrap()
                .segments
                .is_empty()
        );
        for (text, field) in [
            (r#"[{"Name": "Lab", "VNI": 5}]"#, "Segments[0].Name"),
            (r#"[{"Name": "a", "VNI": 0}]"#, "Segments[0].VNI"),
            (r#"[{"Name": "a", "VNI": "x"}]"#, "Segments[0].VNI"),
            (
                r#"[{"Name": "a", "VNI": 5}, {"Name": "b", "VNI": 5}]"#,
                "Segments[1]",
            ),
            (r#"[{"Name": "a", "VNI": 1}]"#, "Segments[0].VNI"),
            (r#"{"Name": "a"}"#, "Segments"),
            (
                r#"[{"Name": "a", "VNI": 5, "Subnet": "10.244.9.0/24"}]"#,
                "Segments[0].Subnet",
            ),
            (
                r#"[{"Name": "a", "VNI": 5, "Subnet": "192.168.0.1/24"}]"#,
                "Segments[0].Subnet",
            ),
            (
                r#"[{"Name": "a", "VNI": 5, "Subnet": "fd00:50::/64"}]"#,
                "Segments[0].Subnet",
            ),
            (
                r#"[{"Name": "a", "VNI": 5, "Subnet": "192.168.0.0/24", "BlockLen": 8}]"#,
                "Segments[0].BlockLen",
            ),
        ] {
            let e = NetConfig::parse(&format!(
                r#"{{"Network": "10.244.0.0/16", "Segments": {text}}}"#
            ))
            .unwrap_err();
            assert!(e.field.starts_with(field), "{text}: {e}");
        }
        let dual = |segment: &str| {
            NetConfig::parse(&format!(
                r#"{{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Segments": [{segment}]}}"#
            ))
        };
        let ok = dual(
            r#"{"Name": "a", "VNI": 5, "Subnet": "192.168.0.0/24", "IPv6Subnet": "fd00:50::/48"}"#,
        )
        .unwrap();
        assert_eq!(ok.segments[0].ipv6_block_len(), Some(64));
        let e = dual(r#"{"Name": "a", "VNI": 5, "IPv6Subnet": "fd00:10:244:1::/64"}"#).unwrap_err();
        assert_eq!(e.field, "Segments[0].IPv6Subnet", "{e}");
        assert!(
            e.to_string()
                .contains("overlaps the pod network fd00:10:244::/56"),
            "{e}"
        );
        let e =
            dual(r#"{"Name": "a", "VNI": 5, "IPv6Subnet": "fd00:50::/64", "IPv6BlockLen": 130}"#)
                .unwrap_err();
        assert_eq!(e.field, "Segments[0].IPv6BlockLen", "{e}");
    }

    #[test]
    fn geneve_defaults_and_settings() {
        let c = NetConfig::parse(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "geneve"}}"#)
            .unwrap();
        assert_eq!(c.backend, BackendConfig::Geneve { vni: 1, port: 6081 });
        assert_eq!(c.backend.type_name(), "geneve");
        assert_eq!(c.qlen, None);
        let c = NetConfig::parse(
            r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "geneve", "VNI": 16777215, "Port": 7000, "Qlen": 2000, "MTU": 1400}}"#,
        )
        .unwrap();
        assert_eq!(
            c.backend,
            BackendConfig::Geneve {
                vni: 16777215,
                port: 7000
            }
        );
        assert_eq!((c.qlen, c.mtu), (Some(2000), Some(1400)));
        // The VNI of geneve is not a VXLAN VNI: a segment may share it.
        NetConfig::parse(
            r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "geneve"}, "Segments": [{"Name": "a", "VNI": 1}]}"#,
        )
        .unwrap();
    }

    #[test]
    fn qlen_for_both_tunnel_backends_in_either_spelling() {
        for (backend, qlen) in [
            (r#"{"Type": "vxlan", "Qlen": 0}"#, 0),
            (r#"{"Type": "vxlan", "qlen": 500}"#, 500),
            (r#"{"Type": "geneve", "qlen": 10000}"#, 10000),
        ] {
            let c = NetConfig::parse(&format!(
                r#"{{"Network": "10.244.0.0/16", "Backend": {backend}}}"#
            ))
            .unwrap();
            assert_eq!(c.qlen, Some(qlen), "{backend}");
        }
    }

    #[test]
    fn geneve_and_qlen_errors_name_the_field() {
        for (backend, field, says) in [
            (
                r#"{"Type": "geneve", "VNI": 0}"#,
                "Backend.VNI",
                "outside 1..16777215",
            ),
            (
                r#"{"Type": "geneve", "VNI": 16777216}"#,
                "Backend.VNI",
                "outside",
            ),
            (
                r#"{"Type": "geneve", "Port": 0}"#,
                "Backend.Port",
                "must not be 0",
            ),
            (r#"{"Type": "geneve", "Port": 70000}"#, "Backend.Port", ""),
            (
                r#"{"Type": "geneve", "Port": 8472}"#,
                "Backend.Port",
                "VXLAN port",
            ),
            (
                r#"{"Type": "geneve", "DirectRouting": true}"#,
                "Backend.DirectRouting",
                "vxlan",
            ),
            (r#"{"Type": "geneve", "Qlen": -1}"#, "Backend.Qlen", ""),
            (r#"{"Type": "vxlan", "Qlen": "long"}"#, "Backend.Qlen", ""),
            (
                r#"{"Type": "geneve", "qlen": 4294967296}"#,
                "Backend.qlen",
                "",
            ),
            (
                r#"{"Type": "host-gw", "Qlen": 100}"#,
                "Backend.Qlen",
                "host-gw backend has no tunnel device",
            ),
            (r#"{"Type": "srv6", "Qlen": 100}"#, "Backend.Qlen", "srv6"),
            (
                r#"{"Type": "gre"}"#,
                "Backend.Type",
                "vxlan, geneve, host-gw, srv6 and wireguard",
            ),
        ] {
            let e = NetConfig::parse(&format!(
                r#"{{"Network": "10.244.0.0/16", "Backend": {backend}}}"#
            ))
            .unwrap_err();
            assert_eq!(e.field, field, "{backend}: {e}");
            assert!(e.reason.contains(says), "{backend}: {e}");
        }
    }

    #[test]
    fn srv6_locator_default() {
        let c = NetConfig::parse(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "srv6"}}"#)
            .unwrap();
        assert_eq!(
            c.backend,
            BackendConfig::Srv6 {
                locator: "fd00:5::/48".parse().unwrap()
            }
        );
    }

    #[test]
    fn wireguard_defaults_are_flannels() {
        let c =
            NetConfig::parse(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard"}}"#)
                .unwrap();
        assert_eq!(c.backend.type_name(), "wireguard");
        assert_eq!(
            c.backend,
            BackendConfig::Wireguard(WireguardConfig {
                listen_port: 51820,
                listen_port_v6: 51821,
                keepalive: 0,
                mode: WireguardMode::Separate,
                psk: None,
            })
        );
    }

    #[test]
    fn wireguard_settings_in_flannels_names() {
        let psk = "YLvHZ1gwN2kaQ7jkmGl6EYf5IvTPrYDtJ1yg0WJDLWs=";
        let c = NetConfig::parse(&format!(
            r#"{{"Network": "10.244.0.0/16", "Backend": {{"Type": "wireguard", "PSK": "{psk}", "ListenPort": 51000, "ListenPortV6": 51001, "PersistentKeepaliveInterval": 25, "Mode": "auto", "MTU": 1400}}}}"#
        ))
        .unwrap();
        assert_eq!(
            c.backend,
            BackendConfig::Wireguard(WireguardConfig {
                listen_port: 51000,
                listen_port_v6: 51001,
                keepalive: 25,
                mode: WireguardMode::Auto,
                psk: Some(PskSource::Inline(psk.parse().unwrap())),
            })
        );
        assert_eq!(c.mtu, Some(1400));
        for (mode, want) in [
            ("separate", WireguardMode::Separate),
            ("ipv4", WireguardMode::Ipv4),
            ("ipv6", WireguardMode::Ipv6),
        ] {
            let c = NetConfig::parse(&format!(
                r#"{{"Network": "10.244.0.0/16", "Backend": {{"Type": "wireguard", "Mode": "{mode}", "PSKFile": "/etc/tweed/psk"}}}}"#
            ))
            .unwrap();
            let BackendConfig::Wireguard(w) = c.backend else {
                panic!("{mode}")
            };
            assert_eq!(w.mode, want);
            assert_eq!(w.psk, Some(PskSource::File("/etc/tweed/psk".into())));
        }
    }

    #[test]
    fn wireguard_errors_name_the_field() {
        for (backend, field, says) in [
            (
                r#"{"Type": "wireguard", "PSK": "not-a-key"}"#,
                "Backend.PSK",
                "not a WireGuard key",
            ),
            (
                r#"{"Type": "wireguard", "PSK": "AAAA"}"#,
                "Backend.PSK",
                "3 bytes",
            ),
            (
                r#"{"Type": "wireguard", "PSK": "YLvHZ1gwN2kaQ7jkmGl6EYf5IvTPrYDtJ1yg0WJDLWs=", "PSKFile": "/k"}"#,
                "Backend.PSKFile",
                "not both",
            ),
            (
                r#"{"Type": "wireguard", "PSKFile": ""}"#,
                "Backend.PSKFile",
                "empty",
            ),
            (
                r#"{"Type": "wireguard", "ListenPort": 0}"#,
                "Backend.ListenPort",
                "must not be 0",
            ),
            (
                r#"{"Type": "wireguard", "ListenPortV6": 8472}"#,
                "Backend.ListenPortV6",
                "VXLAN port",
            ),
            (
                r#"{"Type": "wireguard", "ListenPort": 70000}"#,
                "Backend.ListenPort",
                "",
            ),
            (
                r#"{"Type": "wireguard", "ListenPort": 51821}"#,
                "Backend.ListenPortV6",
                "two devices",
            ),
            (
                r#"{"Type": "wireguard", "Mode": "both"}"#,
                "Backend.Mode",
                "separate, auto, ipv4, ipv6",
            ),
            (
                r#"{"Type": "wireguard", "PersistentKeepaliveInterval": -1}"#,
                "Backend.PersistentKeepaliveInterval",
                "",
            ),
            (
                r#"{"Type": "wireguard", "Port": 51820}"#,
                "Backend.Port",
                "ListenPort",
            ),
            (
                r#"{"Type": "wireguard", "VNI": 2}"#,
                "Backend.VNI",
                "no such setting",
            ),
            (
                r#"{"Type": "wireguard", "Qlen": 100}"#,
                "Backend.Qlen",
                "wireguard backend has no tunnel device",
            ),
            (
                r#"{"Type": "vxlan", "PSK": "x"}"#,
                "Backend.PSK",
                "only the wireguard backend",
            ),
            (
                r#"{"Type": "geneve", "Mode": "auto"}"#,
                "Backend.Mode",
                "only the wireguard backend",
            ),
        ] {
            let e = NetConfig::parse(&format!(
                r#"{{"Network": "10.244.0.0/16", "Backend": {backend}}}"#
            ))
            .unwrap_err();
            assert_eq!(e.field, field, "{backend}: {e}");
            assert!(e.reason.contains(says), "{backend}: {e}");
        }
        // The same port for both is fine when there is one device.
        NetConfig::parse(
            r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "Mode": "auto", "ListenPort": 51821}}"#,
        )
        .unwrap();
    }
}
