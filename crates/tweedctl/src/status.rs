//! `tweedctl status`: this node's tweed at a glance — the lease file the
//! plugin reads, what the agent says about itself (readiness and the few
//! metrics that explain most trouble), and what is in the kernel — with a
//! warning for each inconsistency the troubleshooting guide lists.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use tweed_netlink::{NetNs, Netlink, TABLE_MAIN};
use tweed_segment::block::BlockFile;
use tweedd::reconcile::desired::ROUTE_PROTOCOL;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The lease file tweedd writes and the plugin reads.
    #[arg(long, default_value = "/run/tweed/subnet.env")]
    subnet_file: PathBuf,
    /// tweedd's --health-addr.
    #[arg(long, default_value = "127.0.0.1:9797")]
    health_addr: SocketAddr,
    /// The node bridge the plugin uses.
    #[arg(long, default_value = "tweed0")]
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
}

/// One HTTP GET to the agent (a plain HTTP/1.0 exchange: the health
/// server is tiny and local).
fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// `tweed_<name>` from a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    let full = format!("tweed_{name}");
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.rsplit_once(' ')?;
        (n == full || n == format!("{full}_total")).then(|| v.parse().ok())?
    })
}

struct Report {
    warnings: Vec<String>,
}

impl Report {
    fn warn(&mut self, w: String) {
        self.warnings.push(w);
    }
}

fn lease_section(args: &StatusArgs, r: &mut Report) -> Option<u32> {
    println!("lease file {}", args.subnet_file.display());
    match std::fs::read_to_string(&args.subnet_file) {
        Ok(text) => {
            let mut mtu = None;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                println!("  {line}");
                if let Some(v) = line.strip_prefix("TWEED_MTU=") {
                    mtu = v.trim().parse().ok();
                }
            }
            mtu
        }
        Err(e) => {
            println!("  missing ({e})");
            r.warn("no lease file: the node agent has not written it yet; pods fail with CNI error 11 until it does (is tweedd running? its log says why it is not ready)".into());
            None
        }
    }
}

fn agent_section(args: &StatusArgs, r: &mut Report) -> Option<f64> {
    println!("agent at {}", args.health_addr);
    match get(args.health_addr, "/readyz") {
        Ok((200, _)) => println!("  ready"),
        Ok((code, body)) => {
            println!("  NOT ready ({code}): {}", body.trim());
            r.warn(format!("agent not ready: {}", body.trim()));
        }
        Err(e) => {
            println!("  unreachable: {e}");
            r.warn(format!(
                "cannot reach tweedd's health endpoint at {}: {e}",
                args.health_addr
            ));
            return None;
        }
    }
    let text = get(args.health_addr, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    for (name, what) in [
        ("peers", "peers known"),
        ("kernel_entries", "kernel entries managed"),
        ("reconcile_errors", "reconcile errors"),
        ("lease_losses", "lease losses"),
        ("store_errors", "store errors"),
    ] {
        if let Some(v) = metric(&text, name) {
            println!("  {what:<24} {v}");
            if name == "lease_losses" && v > 0.0 {
                r.warn(format!(
                    "the lease was lost {v} time(s): see LEASE LOST in the agent's log"
                ));
            }
            if name == "reconcile_errors" && v > 0.0 {
                r.warn(format!(
                    "{v} reconcile error(s): see 'reconcile: ... failed' in the agent's log"
                ));
            }
        }
    }
    metric(&text, "peers")
}

/// A WireGuard device as the kernel reports it over generic netlink.
fn wireguard_params(index: u32) -> String {
    match tweed_netlink::Wireguard::new().and_then(|mut wg| wg.device(index)) {
        Ok(d) => format!(
            "wireguard port {} public-key {} peers {}",
            d.listen_port,
            d.public_key
                .map(|k| k.to_string())
                .unwrap_or_else(|| "(none)".into()),
            d.peers.len()
        ),
        Err(e) => format!("wireguard (cannot read: {e})"),
    }
}

fn kernel_section(
    args: &StatusArgs,
    lease_mtu: Option<u32>,
    peers: Option<f64>,
    r: &mut Report,
) -> Result<(), String> {
    let mut nl = Netlink::new().map_err(|e| e.to_string())?;
    println!("kernel");
    let links = nl.links().map_err(|e| e.to_string())?;
    // flannel.<VNI> is tweed's too on a node taken over with --flannel-compat.
    let overlay = |name: &str| {
        name.starts_with("tweed.") || name.starts_with("tweed-wg") || name.starts_with("flannel.")
    };
    // The pod network's tunnel device: vxlan (tweed.<VNI>), geneve
    // (tweed.geneve, whose VNI is on each route, not on the device) or
    // wireguard (tweed-wg, tweed-wg-v6: its port, public key and peers).
    for l in links.iter().filter(|l| overlay(&l.name)) {
        let params = match (l.kind.as_deref(), &l.vxlan, &l.geneve) {
            (Some("vxlan"), Some(v), _) => format!("vxlan vni {} port {}", v.vni, v.port),
            (Some("geneve"), _, Some(g)) => format!("geneve port {}", g.port),
            (Some("wireguard"), _, _) => wireguard_params(l.index),
            _ => continue,
        };
        println!(
            "  {:<12} {params}{} mtu {} qlen {}{}",
            l.name,
            l.mac.map(|m| format!(" mac {m}")).unwrap_or_default(),
            l.mtu,
            l.qlen,
            if l.up { "" } else { " DOWN" }
        );
        if let Some(m) = lease_mtu
            && m > l.mtu
        {
            r.warn(format!(
                "pod MTU {m} exceeds {}'s MTU {}: large packets will be dropped",
                l.name, l.mtu
            ));
        }
    }
    match links.iter().find(|l| l.name == args.bridge) {
        Some(b) => {
            let ports = links.iter().filter(|l| l.master == Some(b.index)).count();
            println!("  {:<12} bridge mtu {} ports {ports}", b.name, b.mtu);
            if let Some(m) = lease_mtu
                && m != b.mtu
            {
                r.warn(format!("bridge MTU {} differs from the lease's {m}", b.mtu));
            }
        }
        None => println!(
            "  {:<12} (no bridge yet: no pod has been created)",
            args.bridge
        ),
    }
    segments_section(&mut nl, &links, peers, &args.segment_dir, r)?;
    let mut routes = 0;
    for v6 in [false, true] {
        routes += nl
            .routes(v6, TABLE_MAIN)
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|r| r.protocol == ROUTE_PROTOCOL)
            .count();
    }
    println!("  routes by tweedd (proto {ROUTE_PROTOCOL}): {routes}");
    if let Some(p) = peers
        && (routes as f64) < p
    {
        r.warn(format!(
            "{p} peers but only {routes} routes: the overlay is incomplete"
        ));
    }
    Ok(())
}

pub fn run(args: StatusArgs) -> Result<(), String> {
    match &args.netns {
        // Everything, the agent's health address included, as seen from
        // inside that namespace.
        Some(name) => NetNs::named(name)
            .map_err(|e| e.to_string())?
            .run(|| report(&args))
            .map_err(|e| e.to_string())?,
        None => report(&args),
    }
}

fn report(args: &StatusArgs) -> Result<(), String> {
    let mut report = Report {
        warnings: Vec::new(),
    };
    let mtu = lease_section(args, &mut report);
    let peers = agent_section(args, &mut report);
    kernel_section(args, mtu, peers, &mut report)?;
    wires_section(&args.wire_dir, &mut report);
    if report.warnings.is_empty() {
        println!("no problems found");
    } else {
        println!("warnings");
        for w in &report.warnings {
            println!("  ! {w}");
        }
    }
    Ok(())
}

/// Wires: every wire end on this node with its state, as tweedd last
/// reported it, and the pods' records it works from.
fn wires_section(dir: &std::path::Path, r: &mut Report) {
    let (records, bad) = tweed_wire::record::read_all(dir);
    for e in bad {
        r.warn(format!("wire record: {e}"));
    }
    let report = match tweed_wire::status::read(dir) {
        Ok(s) => s,
        Err(e) => {
            r.warn(format!("wire report in {}: {e}", dir.display()));
            return;
        }
    };
    let declared: usize = records.iter().map(|rec| rec.ends.len()).sum();
    if declared == 0 && report.is_empty() {
        return;
    }
    println!("wires ({} pods with wires on this node)", records.len());
    for s in &report {
        println!("  {s}");
        if let tweed_wire::WireState::Error { why } = &s.state {
            r.warn(format!("wire {}: {why}", s.local));
        }
    }
    if report.len() < declared {
        r.warn(format!(
            "{declared} wire ends are recorded but tweedd reports {}: is tweedd running with --wire-dir {}?",
            report.len(),
            dir.display()
        ));
    }
}

/// The addresses a segment hands out on this node (its block file).
fn block_line(dir: &Path, name: &str, r: &mut Report) {
    match BlockFile::read(dir, name) {
        Ok(None) => println!("    no addresses (no Subnet)"),
        Ok(Some(BlockFile::Claimed(claims))) => {
            for b in &claims {
                let lines = b
                    .ipv4
                    .map(|b| (b.usable(), b.block.to_string(), b.subnet.to_string()))
                    .into_iter()
                    .chain(
                        b.ipv6
                            .map(|b| (b.usable(), b.block.to_string(), b.subnet.to_string())),
                    );
                for ((first, last), block, subnet) in lines {
                    println!("    addresses {first}-{last}: block {block} of subnet {subnet}");
                }
            }
            match tweed_segment::more::read(dir, name) {
                Ok(Some(tweed_segment::more::Request::Pending)) => {
                    println!("    another block asked for (the blocks are filling up)")
                }
                Ok(Some(tweed_segment::more::Request::Refused(reason))) => {
                    r.warn(format!("segment {name}: the blocks are filling up and tweedd cannot claim another: {reason}"))
                }
                Ok(None) => {}
                Err(e) => r.warn(format!("segment {name}: the request for another block: {e}")),
            }
        }
        Ok(Some(BlockFile::Unclaimed { subnets, reason })) => {
            let names: Vec<String> = subnets
                .ipv4
                .map(|n| n.to_string())
                .into_iter()
                .chain(subnets.ipv6.map(|n| n.to_string()))
                .collect();
            println!("    no block of subnet {} yet", names.join(" and "));
            r.warn(reason);
        }
        Err(e) => r.warn(e.to_string()),
    }
}

/// Layer-2 segments: each `tws-<name>` bridge with its ports, and its
/// `twx.<VNI>` device with the nodes it floods to.
fn segments_section(
    nl: &mut Netlink,
    links: &[tweed_netlink::Link],
    peers: Option<f64>,
    segment_dir: &Path,
    r: &mut Report,
) -> Result<(), String> {
    for b in links
        .iter()
        .filter(|l| l.name.starts_with("tws-") && l.kind.as_deref() == Some("bridge"))
    {
        let name = b.name.trim_start_matches("tws-");
        let vx = links
            .iter()
            .find(|l| l.master == Some(b.index) && l.name.starts_with("twx."));
        let ports = links
            .iter()
            .filter(|l| l.master == Some(b.index) && Some(l.index) != vx.map(|v| v.index))
            .count();
        let Some(vx) = vx else {
            println!(
                "  segment {name:<8} bridge {} mtu {} ports {ports}, no VXLAN device",
                b.name, b.mtu
            );
            r.warn(format!(
                "segment {name}: its bridge has no twx.<VNI> device: it does not reach other nodes"
            ));
            continue;
        };
        let flooding = nl
            .fdb(vx.index)
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|e| e.index == vx.index && e.mac.is_zero() && e.dst.is_some())
            .count();
        println!(
            "  segment {name:<8} bridge {} mtu {} ports {ports}; {} vni {} floods to {flooding} nodes",
            b.name,
            b.mtu,
            vx.name,
            vx.vxlan.as_ref().map(|v| v.vni).unwrap_or_default()
        );
        if let Some(p) = peers
            && (flooding as f64) < p
        {
            r.warn(format!(
                "segment {name}: {p} peers but it floods to {flooding} nodes"
            ));
        }
        block_line(segment_dir, name, r);
    }
    Ok(())
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
