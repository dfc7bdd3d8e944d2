//! What `tweedctl status` found, as one value: printed as text for people
//! or as JSON (`--output json`, schema in docs/tweedctl.md) for scripts.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;
use tweed_wire::WireStatus;

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub lease: LeaseStatus,
    pub agent: AgentStatus,
    pub kernel: KernelStatus,
    pub wires: WiresStatus,
    /// One sentence per problem found, each saying what to look at; empty
    /// when all is well (the exit code is then 0, else 3).
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct LeaseStatus {
    pub file: PathBuf,
    pub present: bool,
    /// Why it could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its `KEY=value` lines, in file order.
    pub values: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct AgentStatus {
    pub address: SocketAddr,
    pub reachable: bool,
    pub ready: bool,
    /// The agent's /readyz answer when not ready, or why it could not be
    /// reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The agent's counters that explain most trouble (absent when not
    /// reachable).
    pub metrics: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct KernelStatus {
    /// The pod network's tunnel devices (tweed.<VNI>, tweed.geneve, or a
    /// taken-over flannel.<VNI>).
    pub tunnels: Vec<Tunnel>,
    pub bridge: Bridge,
    pub segments: Vec<Segment>,
    /// Routes tweedd programmed (its route protocol), IPv4 and IPv6.
    pub routes: usize,
    pub route_protocol: u8,
}

#[derive(Debug, Serialize)]
pub struct Tunnel {
    pub name: String,
    /// `vxlan`, `geneve` or `wireguard`.
    pub kind: String,
    /// The device's VNI (VXLAN; Geneve carries it per route).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    pub port: u16,
    /// Empty for a WireGuard device, which has no MAC.
    pub mac: String,
    /// WireGuard: the node's public key (base64), as the kernel holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// WireGuard: the number of peers on the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<usize>,
    /// Why the device could not be read in full, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub mtu: u32,
    pub qlen: u32,
    pub up: bool,
}

#[derive(Debug, Serialize)]
pub struct Bridge {
    pub name: String,
    /// false until the first pod is created.
    pub present: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    pub ports: usize,
}

#[derive(Debug, Serialize)]
pub struct Segment {
    pub name: String,
    pub bridge: String,
    pub mtu: u32,
    /// Pod ports on the bridge (the VXLAN device not counted).
    pub ports: usize,
    /// The segment's `twx.<VNI>` device, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Nodes the VXLAN device floods to.
    pub floods_to: usize,
    /// The address blocks this node hands out on the segment.
    pub blocks: Vec<AddressBlock>,
    /// Other things worth saying (no subnet, another block asked for).
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct AddressBlock {
    pub first: String,
    pub last: String,
    pub block: String,
    pub subnet: String,
}

#[derive(Debug, Serialize)]
pub struct WiresStatus {
    /// Pods on this node whose records declare wires.
    pub pods: usize,
    /// Wire ends, as tweedd last reported them.
    pub ends: Vec<WireStatus>,
}

/// Sections as `tweedctl status` prints them for people.
pub fn print_text(s: &NodeStatus) {
    outln!("lease file {}", s.lease.file.display());
    match &s.lease.error {
        Some(e) => outln!("  missing ({e})"),
        None => {
            for (k, v) in &s.lease.values {
                outln!("  {k}={}", v.as_str().unwrap_or_default());
            }
        }
    }
    outln!("agent at {}", s.agent.address);
    match (&s.agent.reason, s.agent.reachable, s.agent.ready) {
        (Some(why), false, _) => outln!("  unreachable: {why}"),
        (_, _, true) => outln!("  ready"),
        (why, _, false) => outln!("  NOT ready: {}", why.as_deref().unwrap_or_default()),
    }
    for (name, what) in METRICS {
        if let Some(v) = s.agent.metrics.get(name) {
            outln!("  {what:<24} {v}");
        }
    }
    let k = &s.kernel;
    outln!("kernel");
    for t in &k.tunnels {
        let mut params = match t.vni {
            Some(vni) => format!("{} vni {vni} port {}", t.kind, t.port),
            None => format!("{} port {}", t.kind, t.port),
        };
        if let Some(e) = &t.error {
            params = format!("{} (cannot read: {e})", t.kind);
        }
        if let Some(key) = &t.public_key {
            params.push_str(&format!(" public-key {key}"));
        }
        if let Some(n) = t.peers {
            params.push_str(&format!(" peers {n}"));
        }
        if !t.mac.is_empty() {
            params.push_str(&format!(" mac {}", t.mac));
        }
        outln!(
            "  {:<12} {params} mtu {} qlen {}{}",
            t.name,
            t.mtu,
            t.qlen,
            if t.up { "" } else { " DOWN" }
        );
    }
    match k.bridge.mtu {
        Some(mtu) if k.bridge.present => outln!(
            "  {:<12} bridge mtu {mtu} ports {}",
            k.bridge.name,
            k.bridge.ports
        ),
        _ => outln!(
            "  {:<12} (no bridge yet: no pod has been created)",
            k.bridge.name
        ),
    }
    for seg in &k.segments {
        print_segment(seg);
    }
    outln!(
        "  routes by tweedd (proto {}): {}",
        k.route_protocol,
        k.routes
    );
    if !s.wires.ends.is_empty() || s.wires.pods > 0 {
        outln!("wires ({} pods with wires on this node)", s.wires.pods);
        for w in &s.wires.ends {
            outln!("  {w}");
        }
    }
    if s.problems.is_empty() {
        outln!("no problems found");
    } else {
        outln!("problems");
        for p in &s.problems {
            outln!("  ! {p}");
        }
    }
}

fn print_segment(seg: &Segment) {
    match (&seg.vxlan, seg.vni) {
        (Some(vx), Some(vni)) => outln!(
            "  segment {:<8} bridge {} mtu {} ports {}; {vx} vni {vni} floods to {} nodes",
            seg.name,
            seg.bridge,
            seg.mtu,
            seg.ports,
            seg.floods_to
        ),
        _ => outln!(
            "  segment {:<8} bridge {} mtu {} ports {}, no VXLAN device",
            seg.name,
            seg.bridge,
            seg.mtu,
            seg.ports
        ),
    }
    for b in &seg.blocks {
        outln!(
            "    addresses {}-{}: block {} of subnet {}",
            b.first,
            b.last,
            b.block,
            b.subnet
        );
    }
    for n in &seg.notes {
        outln!("    {n}");
    }
}

/// The agent's metrics `status` shows: `tweed_<name>` and its label.
pub const METRICS: [(&str, &str); 5] = [
    ("peers", "peers known"),
    ("kernel_entries", "kernel entries managed"),
    ("reconcile_errors", "reconcile errors"),
    ("lease_losses", "lease losses"),
    ("store_errors", "store errors"),
];
