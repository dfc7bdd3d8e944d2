//! `tweedctl lab`: the emulated multi-node cluster (crate `tweed-lab`).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use tweed_lab::{Binaries, Lab, LabError, LabSpec};

use crate::Verdict;
use crate::status::Output;

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
        /// How many nodes (namespaces, each with its own tweedd).
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
        /// Pods the plugin creates on each node (p1, p2, ...).
        #[arg(long, default_value_t = 1)]
        pods_per_node: usize,
        /// Dual-stack pods.
        #[arg(long)]
        ipv6: bool,
        /// Underlay subnets (198.18.0.0/24, 198.18.1.0/24, ...) joined by the
        /// lab's router; nodes take turns, so from 2 up n1 and n2 reach each
        /// other only through the router (a routed underlay).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16))]
        underlay_subnets: u8,
        /// Do not masquerade pod traffic leaving the cluster network.
        #[arg(long)]
        no_ip_masq: bool,
        /// Every node a QEMU VM with its own kernel (Debian's, from the VM
        /// runner's image; see docs/lab.md) instead of a namespace of this
        /// machine's. Needs --store etcd or kube.
        #[arg(long)]
        vm: bool,
        #[command(flatten)]
        vm_options: VmFlags,
        /// Build the pods and wires of this topology file (YAML, in
        /// containerlab's shape; see docs/wires.md) instead of
        /// --pods-per-node pods; its `name`, `nodes` and `backend` apply
        /// unless given here.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// The tweedd binary to run [default: next to tweedctl].
        #[arg(long)]
        tweedd: Option<PathBuf>,
        /// The tweed plugin binary to run [default: next to tweedctl].
        #[arg(long)]
        plugin: Option<PathBuf>,
    },
    /// Nodes, agents, leases and pods of a lab; exit 3 if an agent is not
    /// ready or has not programmed every peer.
    Status {
        #[command(flatten)]
        which: Which,
        /// text for people, json for scripts (schema in docs/tweedctl.md).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Pod-to-pod reachability matrix; exit 3 if any pair cannot talk.
    Check(Which),
    /// Run a command in a node (n1), a pod (n1/p1) or the underlay.
    Exec {
        #[command(flatten)]
        which: Which,
        /// Where to run it: a node (n1), a pod (n1/p1) or `underlay`.
        target: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Add or delete a pod.
    Pod {
        #[command(flatten)]
        which: Which,
        /// add or del
        action: String,
        /// The node the pod runs on (n1).
        node: String,
        /// The pod's name (p1).
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
        /// The node to stop or start (n2); add picks the next free name.
        node: Option<String>,
        /// add: the new node is a VM with its own kernel.
        #[arg(long)]
        vm: bool,
    },
    /// Inside a VM node: make the node's namespace and serve the lab's
    /// requests (the lab starts this; not for people).
    #[command(hide = true)]
    VmServe {
        /// The channel directory.
        #[arg(long)]
        dir: PathBuf,
        /// The node's namespace.
        #[arg(long)]
        ns: String,
        /// The node's number (1 for n1).
        #[arg(long)]
        index: usize,
        /// Its underlay subnet.
        #[arg(long)]
        subnet: u8,
    },
    /// Remove a lab (or every lab with --all): processes, namespaces, files.
    Down {
        #[command(flatten)]
        which: Which,
        /// Every lab on this machine.
        #[arg(long)]
        all: bool,
    },
}

/// How VM nodes boot.
#[derive(Args, Clone)]
struct VmFlags {
    /// auto (KVM where it boots guests, else TCG), kvm or tcg.
    #[arg(long, default_value = "auto")]
    vm_accel: String,
    /// Memory of each VM node, MiB.
    #[arg(long, default_value_t = 1024)]
    vm_memory: u32,
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

/// One finished step of `lab up`, with how long it took, so a build that
/// takes minutes shows what it is doing.
fn progress(what: &str, took: Duration) {
    outln!("  {:>6.2}s  {what}", took.as_secs_f64());
}

pub fn run(args: LabArgs) -> Result<Verdict, LabError> {
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
            underlay_subnets,
            no_ip_masq,
            vm,
            vm_options,
            topology,
            tweedd,
            plugin,
        } => {
            if !["auto", "kvm", "tcg"].contains(&vm_options.vm_accel.as_str()) {
                return Err(LabError::Usage(format!(
                    "--vm-accel {:?}: auto, kvm or tcg",
                    vm_options.vm_accel
                )));
            }
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
                    explicit(&nodes, 3usize)
                        .unwrap_or(t.node_count().map_err(|e| LabError::Usage(e.to_string()))?),
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
                underlay_subnets,
                net_conf_overrides: match &topo {
                    Some(t) if !t.segments.is_empty() => [(
                        "Segments".to_string(),
                        serde_json::Value::from(
                            t.net_conf_segments()
                                .map_err(|e| LabError::Usage(e.to_string()))?,
                        ),
                    )]
                    .into_iter()
                    .collect(),
                    _ => Default::default(),
                },
                vm_nodes: match (&topo, vm) {
                    (_, true) => (1..=nodes).collect(),
                    (Some(t), false) => t
                        .vm_node_numbers()
                        .map_err(|e| LabError::Usage(e.to_string()))?,
                    (None, false) => Vec::new(),
                },
                vm_options: tweed_lab::vm_node::VmOptions {
                    accel: vm_options.vm_accel,
                    memory_mib: vm_options.vm_memory,
                },
                binaries: binaries(tweedd, plugin),
            };
            let started = Instant::now();
            outln!(
                "building lab {}: {} nodes, backend {}, store {}",
                spec.name,
                spec.nodes,
                spec.backend,
                spec.store
            );
            let mut lab = Lab::up_reporting(&spec, &mut progress)?;
            if let Some(t) = &topo {
                let step = Instant::now();
                if let Err(e) = tweed_lab::topology_file::build(&mut lab, t) {
                    tweed_lab::teardown(&spec.name);
                    return Err(e);
                }
                progress(
                    "the topology file's pods, wires and segments",
                    step.elapsed(),
                );
            }
            outln!(
                "lab {} up in {:.1}s\n",
                spec.name,
                started.elapsed().as_secs_f64(),
            );
            let verdict = crate::lab_status::run(Output::Text, &lab)?;
            let step = Instant::now();
            let m = lab.check()?;
            outln!(
                "\npod-to-pod reachability (ICMP, {:.2}s):\n{}",
                step.elapsed().as_secs_f64(),
                m.render().trim_end()
            );
            if !m.all_ok() {
                return Err(LabError::Setup("some pods cannot reach each other".into()));
            }
            outln!("\n{}", next_steps(&lab));
            Ok(verdict)
        }
        LabCmd::Status { which, output } => {
            crate::lab_status::run(output, &Lab::load(&which.name, binaries(None, None))?)
        }
        LabCmd::Check(w) => {
            let lab = Lab::load(&w.name, binaries(None, None))?;
            let m = lab.check()?;
            out!("{}", m.render());
            if m.all_ok() {
                Ok(Verdict::Fine)
            } else {
                outln!("  ! some pods cannot reach each other");
                Ok(Verdict::Problems)
            }
        }
        LabCmd::Exec {
            which,
            target,
            command,
        } => {
            let lab = Lab::load(&which.name, binaries(None, None))?;
            let (node, _) = lab.target(&target)?;
            if node.is_some_and(|n| n.vm.is_some()) {
                // In the VM's kernel: run to completion there, relay.
                let argv: Vec<&str> = command.iter().map(String::as_str).collect();
                let out = lab.exec_output(&target, &argv)?;
                use std::io::Write;
                let _ = std::io::stdout().write_all(&out.stdout);
                let _ = std::io::stderr().write_all(&out.stderr);
                std::process::exit(out.status.code().unwrap_or(128));
            }
            let err = lab.command(&target, &command)?.exec();
            Err(LabError::io(format!("exec {}", command.join(" ")), err))
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
                    outln!(
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
                        outln!(
                            "    {ifname} on segment {segment} {}",
                            port.addresses.join(" ")
                        );
                    }
                    Ok(Verdict::Fine)
                }
                "del" => lab.del_pod(&node, &pod).map(|()| Verdict::Fine),
                other => Err(LabError::Usage(format!("pod {other:?}: add or del"))),
            }
        }
        LabCmd::Node {
            which,
            action,
            node,
            vm,
        } => {
            let mut lab = Lab::load(&which.name, binaries(None, None))?;
            match (action.as_str(), node) {
                ("add", _) => {
                    let n = lab.add_node_as(vm)?;
                    outln!("{n} ready");
                    Ok(Verdict::Fine)
                }
                ("stop", Some(n)) => lab.stop_agent(&n).map(|()| Verdict::Fine),
                ("start", Some(n)) => lab.start_agent(&n).map(|()| Verdict::Fine),
                _ => Err(LabError::Usage(
                    "node add | node stop NODE | node start NODE".into(),
                )),
            }
        }
        LabCmd::VmServe {
            dir,
            ns,
            index,
            subnet,
        } => tweed_lab::vm_node::inside::run(&dir, &ns, index, subnet).map(|()| Verdict::Fine),
        LabCmd::Down { which, all } => {
            let names = if all {
                tweed_lab::state::labs()
            } else {
                vec![which.name]
            };
            for n in names {
                tweed_lab::teardown(&n);
                outln!("lab {n} removed");
            }
            Ok(Verdict::Fine)
        }
    }
}

/// What to try next, as commands that work as printed: this very
/// binary's path (tweedctl is not on PATH after a build) and a real pod
/// address on another node.
fn next_steps(lab: &Lab) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "tweedctl".into());
    let name = &lab.state.name;
    let pods = lab.pods();
    let mut text = String::new();
    if let Some((from_node, from)) = pods.first() {
        let to = pods
            .iter()
            .find(|(n, _)| n.name != from_node.name)
            .or(pods.last())
            .and_then(|(n, p)| Some((n, p, p.ipv4.as_deref().or(p.ipv6.as_deref())?)));
        if let Some((to_node, to_pod, ip)) = to {
            let ip = ip.split('/').next().unwrap_or(ip);
            text.push_str(&format!(
                "next: ping {}/{} from {}/{}:\n  {exe} lab exec --name {name} {}/{} -- ping -c 3 {ip}\n",
                to_node.name, to_pod.name, from_node.name, from.name, from_node.name, from.name
            ));
        }
    }
    text.push_str(&format!(
        "status: {exe} lab status --name {name}\nremove the lab: {exe} lab down --name {name}"
    ));
    text
}
