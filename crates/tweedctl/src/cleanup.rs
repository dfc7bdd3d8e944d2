//! `tweedctl node-cleanup`: removes everything tweed created on this node
//! (the documented way to uninstall; deleting the DaemonSet alone leaves
//! the data plane running so pods stay connected).
//!
//! Without `--yes` it only lists what it would remove.

use std::path::PathBuf;

use clap::Args;
use tweed_netlink::nft;
use tweed_netlink::{Netlink, NetlinkError, TABLE_MAIN};
use tweed_node::names::{self, MASQ_TABLE, ROUTE_PROTOCOL};

#[derive(Args, Debug)]
pub struct CleanupArgs {
    /// Really remove (otherwise: print the plan).
    #[arg(long)]
    yes: bool,
    /// The node bridge the plugin created.
    #[arg(long, default_value = names::DEFAULT_BRIDGE)]
    bridge: String,
    /// The lease file tweedd wrote (its --subnet-file).
    #[arg(long, default_value = tweed_node::subnet_env::DEFAULT_PATH)]
    subnet_file: PathBuf,
    /// flannel's lease file, if tweedd wrote one (--flannel-subnet-file).
    #[arg(long)]
    flannel_subnet_file: Option<PathBuf>,
    /// Where tweedd writes the segments' block files (its --segment-dir):
    /// they and the plugin's requests for more blocks go.
    #[arg(long, default_value = tweed_segment::block::DEFAULT_DIR)]
    segment_dir: PathBuf,
    /// Where `tweed urunc-hook` records guests for tweedd's DHCP (its
    /// --guest-dhcp-dir): the records go.
    #[arg(long, default_value = tweed_guest::dhcp::DEFAULT_DIR)]
    guest_dhcp_dir: PathBuf,
    /// The installed plugin binary.
    #[arg(long, default_value = "/opt/cni/bin/tweed")]
    cni_bin: PathBuf,
    /// The installed conflist.
    #[arg(long, default_value = "/etc/cni/net.d/10-tweed.conflist")]
    cni_conflist: PathBuf,
}

/// One thing to remove.
enum Item {
    Link {
        index: u32,
        name: String,
        why: &'static str,
    },
    Route(tweed_netlink::Route),
    Nft,
    File(PathBuf),
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Link { name, why, .. } => write!(f, "link {name} ({why})"),
            Item::Route(r) => write!(f, "route {r} (proto {ROUTE_PROTOCOL})"),
            Item::Nft => write!(f, "nftables table inet {MASQ_TABLE}"),
            Item::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

/// Why `node-cleanup` did not finish.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("{0}")]
    Netlink(#[from] NetlinkError),
    /// What could not be removed, each with why.
    #[error("could not remove: {}", .0.join("; "))]
    NotRemoved(Vec<String>),
}

fn plan(args: &CleanupArgs, nl: &mut Netlink) -> Result<Vec<Item>, NetlinkError> {
    let mut items = Vec::new();
    let links = nl.links()?;
    let bridge = links
        .iter()
        .find(|l| l.name == args.bridge)
        .map(|l| l.index);
    for l in &links {
        let kind = l.kind.as_deref();
        let tunnel = format!("{}.", names::VXLAN_DEVICE_PREFIX);
        let why = if l.name.starts_with(&tunnel) && kind == Some("vxlan") {
            "tweedd's VXLAN device"
        } else if l.name.starts_with(&tunnel) && kind == Some("geneve") {
            "tweedd's Geneve device"
        } else if l.name.starts_with(names::WIREGUARD_DEVICE) && kind == Some("wireguard") {
            "tweedd's WireGuard device"
        } else if l.name.starts_with(names::SEGMENT_VXLAN_PREFIX) && kind == Some("vxlan") {
            "a layer-2 segment's VXLAN device"
        } else if l.name.starts_with(names::SEGMENT_BRIDGE_PREFIX) && kind == Some("bridge") {
            "a layer-2 segment's bridge"
        } else if Some(l.index) == bridge {
            "the plugin's node bridge"
        } else if l.alias.as_deref().is_some_and(|a| {
            a.starts_with(names::HOST_VETH_ALIAS_PREFIX)
                || a.starts_with(names::DELETING_ALIAS_PREFIX)
        }) {
            "a pod's host veth"
        } else {
            continue;
        };
        items.push(Item::Link {
            index: l.index,
            name: l.name.clone(),
            why,
        });
    }
    for v6 in [false, true] {
        for r in nl.routes(v6, TABLE_MAIN)? {
            if r.protocol == ROUTE_PROTOCOL {
                items.push(Item::Route(r));
            }
        }
    }
    items.push(Item::Nft);
    let files = [
        Some(args.subnet_file.clone()),
        args.flannel_subnet_file.clone(),
        Some(args.cni_conflist.clone()),
        Some(args.cni_bin.clone()),
    ];
    for f in files.into_iter().flatten() {
        if f.exists() {
            items.push(Item::File(f));
        }
    }
    items.extend(segment_files(&args.segment_dir).into_iter().map(Item::File));
    items.extend(
        tweed_guest::dhcp::read_all(&args.guest_dhcp_dir)
            .into_iter()
            .map(|(path, _)| Item::File(path)),
    );
    Ok(items)
}

/// The segments' block files and requests for more blocks in `dir`.
fn segment_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "env" || x == "more" || x == "tmp")
        })
        .collect();
    files.sort();
    files
}

pub fn run(args: CleanupArgs) -> Result<(), CleanupError> {
    let mut nl = Netlink::new()?;
    let items = plan(&args, &mut nl)?;
    if !args.yes {
        outln!("would remove (run again with --yes):");
        for i in &items {
            outln!("  {i}");
        }
        return Ok(());
    }
    let mut failures = Vec::new();
    for item in &items {
        let done = match item {
            Item::Link { index, .. } => match nl.delete_link(*index) {
                Err(e) if !e.is_not_found() => Err(e.to_string()),
                _ => Ok(()),
            },
            // Routes through a deleted device are gone already.
            Item::Route(r) => match nl.delete_route(r) {
                Err(e) if !e.is_not_found() => Err(e.to_string()),
                _ => Ok(()),
            },
            Item::Nft => nft::delete_table(
                nftables::types::NfFamily::INet,
                MASQ_TABLE,
                "remove the masquerade rules",
            )
            .map_err(|e| e.to_string()),
            Item::File(p) => std::fs::remove_file(p).map_err(|e| e.to_string()),
        };
        match done {
            Ok(()) => outln!("removed {item}"),
            Err(e) => failures.push(format!("{item}: {e}")),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CleanupError::NotRemoved(failures))
    }
}
