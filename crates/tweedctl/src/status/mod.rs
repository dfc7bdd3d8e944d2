//! `tweedctl status`: this node's tweed at a glance — the lease file the
//! plugin reads, what the agent says about itself (readiness and the few
//! metrics that explain most trouble), and what is in the kernel — with a
//! warning for each inconsistency the troubleshooting guide lists.

mod model;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::{Map, Value};
use tweed_netlink::{NetNs, Netlink, NetlinkError, TABLE_MAIN};
use tweed_node::names::ROUTE_PROTOCOL;
use tweed_node::{kv, subnet_env};
use tweed_segment::block::BlockFile;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The lease file tweedd writes and the plugin reads.
    #[arg(long, default_value = tweed_node::subnet_env::DEFAULT_PATH)]
    subnet_file: PathBuf,
    /// tweedd's --health-addr.
    #[arg(long, default_value = "127.0.0.1:9797")]
    health_addr: SocketAddr,
    /// The node bridge the plugin uses.
    #[arg(long, default_value = tweed_node::names::DEFAULT_BRIDGE)]
    bridge: String,
    /// Where the plugin records wires and tweedd reports on them
    /// (tweedd's --wire-dir).
    #[arg(long, default_value = tweed_wire::DEFAULT_DIR)]
    wire_dir: PathBuf,
    /// Where tweedd writes the segments' address blocks (tweedd's
    /// --segment-dir).
    #[arg(long, default_value = tweed_segment::block::DEFAULT_DIR)]
    segment_dir: PathBuf,
    /// Look inside this named network namespace (a lab node) instead.
    #[arg(long)]
    netns: Option<String>,
    /// text for people, json for scripts (schema in docs/tweedctl.md).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// How `status` and `lab status` print what they found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Prints `value` as pretty JSON, one document followed by a newline.
pub fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        // Only maps with non-string keys fail, and these have none.
        Err(e) => eprintln!("tweedctl: rendering JSON: {e}"),
    }
}

/// One HTTP GET to the agent (a plain HTTP/1.0 exchange: the health
/// server is tiny and local).
fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let (code, body) =
        tweed_lab::http::get(addr, path, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    Ok((code.unwrap_or(0), body))
}

/// `tweed_<name>` from a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    let full = format!("tweed_{name}");
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.rsplit_once(' ')?;
        (n == full || n == format!("{full}_total")).then(|| v.parse().ok())?
    })
}

use model::{
    AddressBlock, AgentStatus, Bridge, KernelStatus, LeaseStatus, NodeStatus, Segment, Tunnel,
    WiresStatus,
};

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, p: String) {
        self.0.push(p);
    }
}

/// A metric as a JSON number: whole counts stay integers.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&v) {
        Value::from(v as u64)
    } else {
        Value::from(v)
    }
}

fn lease_section(args: &StatusArgs, r: &mut Problems) -> LeaseStatus {
    let mut lease = LeaseStatus {
        file: args.subnet_file.clone(),
        present: false,
        error: None,
        values: Map::new(),
    };
    match std::fs::read_to_string(&args.subnet_file) {
        Ok(text) => {
            lease.present = true;
            for (k, v) in kv::Pairs::parse(&text).iter() {
                lease.values.insert(k.to_string(), Value::from(v));
            }
        }
        Err(e) => {
            lease.error = Some(e.to_string());
            r.add("no lease file: the node agent has not written it yet; pods fail with CNI error 11 until it does (is tweedd running? its log says why it is not ready)".into());
        }
    }
    lease
}

fn lease_mtu(lease: &LeaseStatus) -> Option<u32> {
    let key = subnet_env::Prefix::Tweed.key(subnet_env::MTU);
    lease.values.get(&key)?.as_str()?.parse().ok()
}

fn agent_section(args: &StatusArgs, r: &mut Problems) -> AgentStatus {
    let mut agent = AgentStatus {
        address: args.health_addr,
        reachable: false,
        ready: false,
        reason: None,
        metrics: Map::new(),
    };
    match get(args.health_addr, "/readyz") {
        Ok((200, _)) => {
            agent.reachable = true;
            agent.ready = true;
        }
        Ok((code, body)) => {
            agent.reachable = true;
            agent.reason = Some(format!("{code}: {}", body.trim()));
            r.add(format!("agent not ready: {}", body.trim()));
        }
        Err(e) => {
            r.add(format!(
                "cannot reach tweedd's health endpoint at {}: {e}",
                args.health_addr
            ));
            agent.reason = Some(e);
            return agent;
        }
    }
    let text = get(args.health_addr, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    for (name, _) in model::METRICS {
        let Some(v) = metric(&text, name) else {
            continue;
        };
        agent.metrics.insert(name.to_string(), number(v));
        if name == "lease_losses" && v > 0.0 {
            r.add(format!(
                "the lease was lost {v} time(s): see LEASE LOST in the agent's log"
            ));
        }
        if name == "reconcile_errors" && v > 0.0 {
            r.add(format!(
                "{v} reconcile error(s): see 'reconcile: ... failed' in the agent's log"
            ));
        }
    }
    agent
}

/// The peers the agent says it knows.
fn peers(agent: &AgentStatus) -> Option<f64> {
    agent.metrics.get("peers")?.as_f64()
}

fn kernel_section(
    args: &StatusArgs,
    lease_mtu: Option<u32>,
    peers: Option<f64>,
    r: &mut Problems,
) -> Result<KernelStatus, NetlinkError> {
    let mut nl = Netlink::new()?;
    let links = nl.links()?;
    // flannel.<VNI> is tweed's too on a node taken over with --flannel-compat.
    let overlay = |name: &str| {
        name.starts_with("tweed.") || name.starts_with("tweed-wg") || name.starts_with("flannel.")
    };
    // The pod network's tunnel device: vxlan (tweed.<VNI>), geneve
    // (tweed.geneve, whose VNI is on each route, not on the device) or
    // wireguard (tweed-wg, tweed-wg-v6: its port, public key and peers,
    // read over generic netlink).
    let mut tunnels = Vec::new();
    for l in links.iter().filter(|l| overlay(&l.name)) {
        let mut wg = None;
        let (kind, vni, port) = match (l.kind.as_deref(), &l.vxlan, &l.geneve) {
            (Some("vxlan"), Some(v), _) => ("vxlan", Some(v.vni), v.port),
            (Some("geneve"), _, Some(g)) => ("geneve", None, g.port),
            (Some("wireguard"), _, _) => {
                let device = tweed_netlink::Wireguard::new().and_then(|mut w| w.device(l.index));
                let port = device.as_ref().map(|d| d.listen_port).unwrap_or_default();
                wg = Some(device);
                ("wireguard", None, port)
            }
            _ => continue,
        };
        if let Some(m) = lease_mtu
            && m > l.mtu
        {
            r.add(format!(
                "pod MTU {m} exceeds {}'s MTU {}: large packets will be dropped",
                l.name, l.mtu
            ));
        }
        tunnels.push(Tunnel {
            name: l.name.clone(),
            kind: kind.to_string(),
            vni,
            port,
            mac: l.mac.map(|m| m.to_string()).unwrap_or_default(),
            public_key: wg
                .as_ref()
                .and_then(|d| d.as_ref().ok()?.public_key.as_ref().map(|k| k.to_string())),
            peers: wg.as_ref().and_then(|d| Some(d.as_ref().ok()?.peers.len())),
            error: wg.and_then(|d| d.err().map(|e| e.to_string())),
            mtu: l.mtu,
            qlen: l.qlen,
            up: l.up,
        });
    }
    let bridge = match links.iter().find(|l| l.name == args.bridge) {
        Some(b) => {
            if let Some(m) = lease_mtu
                && m != b.mtu
            {
                r.add(format!("bridge MTU {} differs from the lease's {m}", b.mtu));
            }
            Bridge {
                name: b.name.clone(),
                present: true,
                mtu: Some(b.mtu),
                ports: links.iter().filter(|l| l.master == Some(b.index)).count(),
            }
        }
        None => Bridge {
            name: args.bridge.clone(),
            present: false,
            mtu: None,
            ports: 0,
        },
    };
    let segments = segments_section(&mut nl, &links, peers, &args.segment_dir, r)?;
    let mut routes = 0;
    for v6 in [false, true] {
        routes += nl
            .routes(v6, TABLE_MAIN)?
            .iter()
            .filter(|r| r.protocol == ROUTE_PROTOCOL)
            .count();
    }
    if let Some(p) = peers
        && (routes as f64) < p
    {
        r.add(format!(
            "{p} peers but only {routes} routes: the overlay is incomplete"
        ));
    }
    Ok(KernelStatus {
        tunnels,
        bridge,
        segments,
        routes,
        route_protocol: ROUTE_PROTOCOL,
    })
}

/// Prints this node's status; `Problems` (exit 3) when it found any.
pub fn run(args: StatusArgs) -> Result<crate::Verdict, NetlinkError> {
    let status = match &args.netns {
        // Everything, the agent's health address included, as seen from
        // inside that namespace.
        Some(name) => NetNs::named(name)?.run(|| gather(&args))??,
        None => gather(&args)?,
    };
    match args.output {
        Output::Text => model::print_text(&status),
        Output::Json => print_json(&status),
    }
    Ok(if status.problems.is_empty() {
        crate::Verdict::Fine
    } else {
        crate::Verdict::Problems
    })
}

fn gather(args: &StatusArgs) -> Result<NodeStatus, NetlinkError> {
    let mut problems = Problems::default();
    let lease = lease_section(args, &mut problems);
    let agent = agent_section(args, &mut problems);
    let kernel = kernel_section(args, lease_mtu(&lease), peers(&agent), &mut problems)?;
    let wires = wires_section(&args.wire_dir, &mut problems);
    Ok(NodeStatus {
        lease,
        agent,
        kernel,
        wires,
        problems: problems.0,
    })
}

/// Wires: every wire end on this node with its state, as tweedd last
/// reported it, and the pods' records it works from.
fn wires_section(dir: &Path, r: &mut Problems) -> WiresStatus {
    let (records, bad) = tweed_wire::record::read_all(dir);
    for e in bad {
        r.add(format!("wire record: {e}"));
    }
    let mut wires = WiresStatus {
        pods: records.len(),
        ends: Vec::new(),
    };
    wires.ends = match tweed_wire::status::read(dir) {
        Ok(s) => s,
        Err(e) => {
            r.add(format!("wire report in {}: {e}", dir.display()));
            return wires;
        }
    };
    for s in &wires.ends {
        if let tweed_wire::WireState::Error { why } = &s.state {
            r.add(format!("wire {}: {why}", s.local));
        }
    }
    let declared: usize = records.iter().map(|rec| rec.ends.len()).sum();
    if wires.ends.len() < declared {
        r.add(format!(
            "{declared} wire ends are recorded but tweedd reports {}: is tweedd running with --wire-dir {}?",
            wires.ends.len(),
            dir.display()
        ));
    }
    wires
}

/// The addresses a segment hands out on this node (its block file).
fn segment_blocks(dir: &Path, seg: &mut Segment, r: &mut Problems) {
    let name = seg.name.clone();
    match BlockFile::read(dir, &name) {
        Ok(None) => seg.notes.push("no addresses (no Subnet)".into()),
        Ok(Some(BlockFile::Claimed(claims))) => {
            for b in &claims {
                let ranges = b
                    .ipv4
                    .map(|b| (b.usable(), b.block.to_string(), b.subnet.to_string()))
                    .into_iter()
                    .chain(
                        b.ipv6
                            .map(|b| (b.usable(), b.block.to_string(), b.subnet.to_string())),
                    );
                for ((first, last), block, subnet) in ranges {
                    seg.blocks.push(AddressBlock {
                        first: first.to_string(),
                        last: last.to_string(),
                        block,
                        subnet,
                    });
                }
            }
            match tweed_segment::more::read(dir, &name) {
                Ok(Some(tweed_segment::more::Request::Pending)) => seg
                    .notes
                    .push("another block asked for (the blocks are filling up)".into()),
                Ok(Some(tweed_segment::more::Request::Refused(reason))) => {
                    r.add(format!("segment {name}: the blocks are filling up and tweedd cannot claim another: {reason}"))
                }
                Ok(None) => {}
                Err(e) => r.add(format!("segment {name}: the request for another block: {e}")),
            }
        }
        Ok(Some(BlockFile::Unclaimed { subnets, reason })) => {
            let names: Vec<String> = subnets
                .ipv4
                .map(|n| n.to_string())
                .into_iter()
                .chain(subnets.ipv6.map(|n| n.to_string()))
                .collect();
            seg.notes
                .push(format!("no block of subnet {} yet", names.join(" and ")));
            r.add(reason);
        }
        Err(e) => r.add(e.to_string()),
    }
}

/// Layer-2 segments: each `tws-<name>` bridge with its ports, and its
/// `twx.<VNI>` device with the nodes it floods to.
fn segments_section(
    nl: &mut Netlink,
    links: &[tweed_netlink::Link],
    peers: Option<f64>,
    segment_dir: &Path,
    r: &mut Problems,
) -> Result<Vec<Segment>, NetlinkError> {
    let mut segments = Vec::new();
    for b in links
        .iter()
        .filter(|l| l.name.starts_with("tws-") && l.kind.as_deref() == Some("bridge"))
    {
        let name = b.name.trim_start_matches("tws-");
        let vx = links
            .iter()
            .find(|l| l.master == Some(b.index) && l.name.starts_with("twx."));
        let mut seg = Segment {
            name: name.to_string(),
            bridge: b.name.clone(),
            mtu: b.mtu,
            ports: links
                .iter()
                .filter(|l| l.master == Some(b.index) && Some(l.index) != vx.map(|v| v.index))
                .count(),
            vxlan: vx.map(|v| v.name.clone()),
            vni: vx.and_then(|v| v.vxlan.as_ref()).map(|v| v.vni),
            floods_to: 0,
            blocks: Vec::new(),
            notes: Vec::new(),
        };
        let Some(vx) = vx else {
            r.add(format!(
                "segment {name}: its bridge has no twx.<VNI> device: it does not reach other nodes"
            ));
            segments.push(seg);
            continue;
        };
        seg.floods_to = nl
            .fdb(vx.index)?
            .iter()
            .filter(|e| e.index == vx.index && e.mac.is_zero() && e.dst.is_some())
            .count();
        if let Some(p) = peers
            && (seg.floods_to as f64) < p
        {
            r.add(format!(
                "segment {name}: {p} peers but it floods to {} nodes",
                seg.floods_to
            ));
        }
        segment_blocks(segment_dir, &mut seg, r);
        segments.push(seg);
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_metrics_from_the_exposition() {
        let text = "# HELP tweed_peers x\ntweed_peers 4\ntweed_lease_losses_total 0\n";
        assert_eq!(metric(text, "peers"), Some(4.0));
        assert_eq!(metric(text, "lease_losses"), Some(0.0));
        assert_eq!(metric(text, "store_errors"), None);
    }
}
