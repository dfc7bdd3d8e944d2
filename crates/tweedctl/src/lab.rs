//! `tweedctl lab`: the emulated multi-node cluster (crate `tweed-lab`).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use tweed_lab::{Binaries, Lab, LabError, LabSpec};

#[derive(Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCmd,
}

#[derive(Args, Clone)]
struct Which {
    /// The lab's name (several labs can run side by side).
    #[arg(long, default_value = "tweed")]
    name: String,
}

#[derive(Subcommand)]
enum LabCmd {
    /// Build a lab: N nodes running tweedd, pods attached by the plugin.
    Up {
        #[command(flatten)]
        which: Which,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// vxlan, geneve, host-gw, srv6 or wireguard.
        #[arg(long, default_value = "vxlan")]
        backend: String,
        /// file (embedded), etcd (Debian's etcd in the underlay namespace) or
        /// kube (tweed's fake Kubernetes API server there; nodes get their pod
        /// CIDRs from it).
        #[arg(long, default_value = "file")]
        store: String,
        #[arg(long, default_value_t = 1)]
        pods_per_node: usize,
        /// Dual-stack pods.
        #[arg(long)]
        ipv6: bool,
        /// Do not masquerade pod traffic leaving the cluster network.
        #[arg(long)]
        no_ip_masq: bool,
        /// Build the pods and wires of this topology file (YAML, in
        /// containerlab's shape; see docs/wires.md) instead of
        /// --pods-per-node pods; its `name`, `nodes` and `backend` apply
        /// unless given here.
        #[arg(long)]
        topology: Option<PathBuf>,
        #[arg(long)]
        tweedd: Option<PathBuf>,
        #[arg(long)]
        plugin: Option<PathBuf>,
    },
    /// Nodes, agents, leases and pods of a lab.
    Status(Which),
    /// Pod-to-pod reachability matrix; fails if any pair cannot talk.
    Check(Which),
    /// Run a command in a node (n1), a pod (n1/p1) or the underlay.
    Exec {
        #[command(flatten)]
        which: Which,
        target: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Add or delete a pod.
    Pod {
        #[command(flatten)]
        which: Which,
        /// add or del
        action: String,
        node: String,
        pod: String,
        /// The pod's wires, as its `tweed.io/wires` annotation would say
        /// (`eth1=r2:eth1, eth2=r3:eth1`); add only.
        #[arg(long, default_value = "")]
        wires: String,
        /// An interface on one of the lab's layer-2 segments, `eth1=lan`
        /// (repeatable; the lab's segments come from its topology file);
        /// add only.
        #[arg(long = "segment", value_name = "IF=SEGMENT")]
        segments: Vec<String>,
    },
    /// Add a node, or stop/start a node's agent.
    Node {
        #[command(flatten)]
        which: Which,
        /// add, stop or start
        action: String,
        node: Option<String>,
    },
    /// Remove a lab (or every lab with --all): processes, namespaces, files.
    Down {
        #[command(flatten)]
        which: Which,
        #[arg(long)]
        all: bool,
    },
}

/// `value` unless it is the flag's default (then the topology file's
/// setting, if any, applies).
fn explicit<T: PartialEq + Clone>(value: &T, default: impl Into<T>) -> Option<T> {
    (*value != default.into()).then(|| value.clone())
}

fn binaries(tweedd: Option<PathBuf>, plugin: Option<PathBuf>) -> Binaries {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("tweedctl"));
    let mut b = Binaries::beside(&exe);
    if let Some(p) = tweedd {
        b.tweedd = p;
    }
    if let Some(p) = plugin {
        b.plugin = p;
    }
    b
}

pub fn run(args: LabArgs) -> Result<(), LabError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::Usage(
            "the lab creates network namespaces: run as root".into(),
        ));
    }
    match args.command {
        LabCmd::Up {
            which,
            nodes,
            backend,
            store,
            pods_per_node,
            ipv6,
            no_ip_masq,
            topology,
            tweedd,
            plugin,
        } => {
            let topo = topology
                .as_deref()
                .map(tweed_lab::topology_file::TopologyFile::read)
                .transpose()?;
            let (name, nodes, backend, pods_per_node) = match &topo {
                None => (which.name, nodes, backend, pods_per_node),
                Some(t) => (
                    explicit(&which.name, "tweed")
                        .or(t.name.clone())
                        .unwrap_or(which.name),
                    explicit(&nodes, 3usize).unwrap_or(t.node_count().map_err(LabError::Usage)?),
                    explicit(&backend, "vxlan".to_string())
                        .or(t.backend.clone())
                        .unwrap_or(backend),
                    0,
                ),
            };
            let spec = LabSpec {
                name,
                nodes,
                backend,
                store,
                pods_per_node,
                ip_masq: !no_ip_masq,
                ipv6,
                net_conf_overrides: match &topo {
                    Some(t) if !t.segments.is_empty() => [(
                        "Segments".to_string(),
                        serde_json::Value::from(t.net_conf_segments().map_err(LabError::Usage)?),
                    )]
                    .into_iter()
                    .collect(),
                    _ => Default::default(),
                },
                binaries: binaries(tweedd, plugin),
            };
            let started = std::time::Instant::now();
            let mut lab = Lab::up(&spec)?;
            if let Some(t) = &topo
                && let Err(e) = tweed_lab::topology_file::build(&mut lab, t)
            {
                tweed_lab::teardown(&spec.name);
                return Err(e);
            }
            println!(
                "lab {} up in {:.1}s: {} nodes, backend {}, store {}\n",
                spec.name,
                started.elapsed().as_secs_f64(),
                spec.nodes,
                spec.backend,
                spec.store
            );
            print_status(&lab);
            let m = lab.check()?;
            println!("\npod-to-pod reachability (ICMP):\n{}", m.render());
            if !m.all_ok() {
                return Err(LabError::Setup("some pods cannot reach each other".into()));
            }
            let first = lab
                .pods()
                .first()
                .map(|(n, p)| format!("{}/{}", n.name, p.name))
                .unwrap_or_else(|| "n1".into());
            println!(
                "tweedctl lab exec --name {0} {first} -- ping <ip>   |   tweedctl lab down --name {0}",
                spec.name
            );
            Ok(())
        }
        LabCmd::Status(w) => {
            print_status(&Lab::load(&w.name, binaries(None, None))?);
            Ok(())
        }
        LabCmd::Check(w) => {
            let lab = Lab::load(&w.name, binaries(None, None))?;
            let m = lab.check()?;
            print!("{}", m.render());
            if m.all_ok() {
                Ok(())
            } else {
                Err(LabError::Setup("some pods cannot reach each other".into()))
            }
        }
        LabCmd::Exec {
            which,
            target,
            command,
        } => {
            let lab = Lab::load(&which.name, binaries(None, None))?;
            let err = lab.command(&target, &command)?.exec();
            Err(LabError::io(format!("exec {command:?}"), err))
        }
        LabCmd::Pod {
            which,
            action,
            node,
            pod,
            wires,
            segments,
        } => {
            let mut lab = Lab::load(&which.name, binaries(None, None))?;
            match action.as_str() {
                "add" => {
                    // Checked before the pod is made: a typo leaves nothing.
                    let ports = segments
                        .iter()
                        .map(|s| {
                            s.split_once('=')
                                .filter(|(i, n)| !i.is_empty() && !n.is_empty())
                                .ok_or_else(|| {
                                    LabError::Usage(format!(
                                        "--segment {s:?}: IF=SEGMENT, e.g. eth1=lan"
                                    ))
                                })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    for (_, segment) in &ports {
                        lab.check_segment(segment)?;
                    }
                    let p = lab.add_pod_wired(&node, &pod, &wires)?;
                    println!(
                        "{node}/{} {}",
                        p.name,
                        [p.ipv4, p.ipv6]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                    for (ifname, segment) in ports {
                        let port = match lab.attach_to_segment(&node, &pod, ifname, segment) {
                            Ok(port) => port,
                            Err(e) => {
                                // No half-made pod: take it away again.
                                let _ = lab.del_pod(&node, &pod);
                                return Err(e);
                            }
                        };
                        println!(
                            "    {ifname} on segment {segment} {}",
                            port.addresses.join(" ")
                        );
                    }
                    Ok(())
                }
                "del" => lab.del_pod(&node, &pod),
                other => Err(LabError::Usage(format!("pod {other:?}: add or del"))),
            }
        }
        LabCmd::Node {
            which,
            action,
            node,
        } => {
            let mut lab = Lab::load(&which.name, binaries(None, None))?;
            match (action.as_str(), node) {
                ("add", _) => {
                    let n = lab.add_node()?;
                    println!("{n} ready");
                    Ok(())
                }
                ("stop", Some(n)) => lab.stop_agent(&n),
                ("start", Some(n)) => lab.start_agent(&n),
                _ => Err(LabError::Usage(
                    "node add | node stop NODE | node start NODE".into(),
                )),
            }
        }
        LabCmd::Down { which, all } => {
            let names = if all {
                tweed_lab::state::labs()
            } else {
                vec![which.name]
            };
            for n in names {
                tweed_lab::teardown(&n);
                println!("lab {n} removed");
            }
            Ok(())
        }
    }
}

fn print_status(lab: &Lab) {
    let s = &lab.state;
    println!("lab {} ({}, store {})", s.name, s.backend, s.store_url);
    for n in &s.nodes {
        let agent = match n.agent_pid {
            Some(pid) if tweed_lab::procs::alive(pid) => {
                if lab.ready(n) {
                    format!("tweedd pid {pid} ready")
                } else {
                    format!("tweedd pid {pid} NOT READY")
                }
            }
            Some(pid) => format!("tweedd pid {pid} DEAD"),
            None => "tweedd stopped".to_string(),
        };
        let lease = lab.lease_of(&n.name).unwrap_or_else(|| "-".into());
        println!(
            "  {:<4} {:<14} lease {:<18} {agent}",
            n.name, n.underlay_ipv4, lease
        );
        for p in &n.pods {
            let addrs: Vec<&str> = [&p.ipv4, &p.ipv6]
                .into_iter()
                .flatten()
                .map(|s| s.as_str())
                .collect();
            println!("       pod {:<6} {}", p.name, addrs.join(" "));
            for port in &p.segments {
                println!(
                    "           {} on segment {} {}",
                    port.ifname,
                    port.segment,
                    port.addresses.join(" ")
                );
            }
        }
        for w in lab.wire_status(&n.name) {
            println!("       wire {w}");
        }
    }
}
