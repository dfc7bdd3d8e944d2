//! `tweedctl flannel-cleanup`: removes what flannel leaves on a node once
//! its pod is gone and tweed runs there (docs/migration.md).
//!
//! Removed: flannel's iptables-nft chains (`FLANNEL-*` in the ip/ip6
//! `nat`, `filter` and `mangle` tables) with the rules that jump to them,
//! the tables flannel keeps itself with `EnableNFTables`
//! (`ip flannel-ipv4`, `ip6 flannel-ipv6`), CNI configs that use flannel's
//! plugin, the plugin binary, flanneld's `subnet.env` (unless
//! `--keep-subnet-env`) and the delegate configs flannel's plugin saved per
//! pod. Nobody else's rules or files are touched.
//!
//! Kept, because tweed uses them under `--flannel-compat`: the VXLAN device
//! `flannel.<VNI>` (tweed adopted it with its MAC, which flannel peers'
//! neighbour entries point at) with its routes, FDB and neighbour entries,
//! the bridge `cni0` and host-local's `/var/lib/cni/networks/cbr0` (tweed's
//! plugin uses both in the migration manifest).
//!
//! Without `--yes` it only prints the plan. It refuses while flanneld runs,
//! which would put its rules back. One failure does not stop the rest; all
//! are reported at the end.

mod files;
mod flanneld;
mod kept;
mod nft;

use std::path::{Path, PathBuf};

use clap::Args;

#[derive(Args, Debug)]
pub struct FlannelCleanupArgs {
    /// Really remove (otherwise: print the plan).
    #[arg(long)]
    yes: bool,
    /// Go ahead even while a process named flanneld runs.
    #[arg(long)]
    force: bool,
    /// The runtime's CNI config directory, searched for configs using
    /// flannel's plugin.
    #[arg(long, default_value = "/etc/cni/net.d")]
    conf_dir: PathBuf,
    /// The CNI plugin directory, which holds flannel's plugin.
    #[arg(long, default_value = "/opt/cni/bin")]
    bin_dir: PathBuf,
    /// flanneld's run directory (its subnet.env).
    #[arg(long, default_value = "/run/flannel")]
    flannel_run_dir: PathBuf,
    /// Keep subnet.env: tweedd writes it (--flannel-subnet-file) for the
    /// pods whose config reads it.
    #[arg(long)]
    keep_subnet_env: bool,
    /// The CNI state directory (flannel's plugin keeps its per-pod state
    /// in <dir>/flannel).
    #[arg(long, default_value = "/var/lib/cni")]
    cni_state_dir: PathBuf,
    /// After a complete run, stay until SIGTERM or SIGINT instead of
    /// exiting: for deploy/flannel-cleanup.yaml, a DaemonSet, whose pods
    /// must keep running. A run that fails still exits non-zero, so the
    /// pod restarts and tries again (e.g. once flanneld has gone).
    #[arg(long)]
    then_wait: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "flanneld is running (pid {}): stop flannel on this node first (take the node out of \
         flannel's DaemonSet), or pass --force; nothing was changed",
        list(.0)
    )]
    FlanneldRunning(Vec<u32>),
    #[error("cannot tell whether flanneld runs (reading /proc): {0}; nothing was changed")]
    Proc(#[source] std::io::Error),
    #[error("{}", .0.join("; "))]
    Incomplete(Vec<String>),
}

/// `1 rule`, `2 rules`: the plan reads as sentences.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn list(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything of flannel's found, in the order it is removed: the rules
/// first (they steer traffic), then the files.
struct Plan {
    nft: Vec<nft::Item>,
    files: Vec<files::Item>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.nft.is_empty() && self.files.is_empty()
    }

    fn lines(&self) -> impl Iterator<Item = String> + '_ {
        let nft = self.nft.iter().map(ToString::to_string);
        nft.chain(self.files.iter().map(ToString::to_string))
    }
}

/// Finds flannel's leftovers; what cannot be read goes to `problems`.
fn plan(args: &FlannelCleanupArgs, problems: &mut Vec<String>) -> Plan {
    let nft = nft::find_leftovers().unwrap_or_else(|e| {
        problems.push(format!("cannot read the nftables ruleset: {e}"));
        Vec::new()
    });
    let (files, errors) = files::find(&files::Dirs {
        conf: &args.conf_dir,
        bin: &args.bin_dir,
        flannel_run: (!args.keep_subnet_env).then_some(args.flannel_run_dir.as_path()),
        cni_state: &args.cni_state_dir,
    });
    problems.extend(errors.iter().map(ToString::to_string));
    Plan { nft, files }
}

/// Removes what `plan` found, reporting each; failures go to `problems`.
fn remove(plan: &Plan, problems: &mut Vec<String>) {
    if !plan.nft.is_empty() {
        match nft::remove(&plan.nft) {
            Ok(()) => plan.nft.iter().for_each(|i| outln!("removed {i}")),
            Err(e) => problems.push(format!(
                "could not remove flannel's nftables objects (one transaction: none was \
                 removed): {e}"
            )),
        }
    }
    for item in &plan.files {
        match files::remove(item) {
            Ok(()) => outln!("removed {item}"),
            Err(e) => problems.push(format!("could not remove {item}: {e}")),
        }
    }
}

pub fn run(args: FlannelCleanupArgs) -> Result<(), Error> {
    let flanneld = flanneld::running(Path::new("/proc")).map_err(Error::Proc)?;
    if args.yes && !args.force && !flanneld.is_empty() {
        return Err(Error::FlanneldRunning(flanneld));
    }
    let mut problems = Vec::new();
    let plan = plan(&args, &mut problems);
    if plan.is_empty() {
        outln!("nothing of flannel's left to remove");
    } else if args.yes {
        remove(&plan, &mut problems);
    } else {
        outln!("would remove (run again with --yes):");
        plan.lines().for_each(|l| outln!("  {l}"));
        if !flanneld.is_empty() {
            outln!(
                "warning: flanneld is running (pid {}): --yes refuses until it stops",
                list(&flanneld)
            );
        }
    }
    for k in kept::kept(&args.cni_state_dir) {
        outln!("kept: {k}");
    }
    let env = files::subnet_env(&args.flannel_run_dir);
    if args.keep_subnet_env && env.exists() {
        outln!("kept: {} (--keep-subnet-env)", env.display());
    }
    if !problems.is_empty() {
        return Err(Error::Incomplete(problems));
    }
    if args.then_wait {
        wait_for_termination();
    }
    Ok(())
}

/// Blocks until SIGTERM or SIGINT. The signals are blocked and taken with
/// sigwait rather than left to their default action, because as PID 1 of
/// a container (no hostPID) the default action would be to ignore them.
fn wait_for_termination() {
    use nix::sys::signal::{SigSet, Signal};
    outln!("done; waiting for SIGTERM");
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    // Only fails for an invalid `how`, which SIG_BLOCK is not.
    if set.thread_block().is_ok() {
        let _ = set.wait();
    }
}
