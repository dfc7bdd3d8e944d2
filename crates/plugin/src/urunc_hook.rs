//! `tweed urunc-hook`: localhost for a urunc guest, run by urunc as an OCI
//! `poststart` hook (docs/urunc.md).
//!
//! urunc makes its own tap (`tap0_urunc`) and two-way redirect on the pod's
//! ordinary tweed attachment when the container starts, and refuses a pod
//! that already has a tap, so tweed's guest modes cannot serve it. After the
//! redirect every frame for the pod's address goes to the guest, and the
//! pod's own processes (a sidecar, `kubectl port-forward`) reach nothing on
//! 127.0.0.1. This hook adds, on urunc's tap, the same localhost plumbing
//! tweed's tap mode adds on its own ([`crate::guest::localhost`]) for the
//! ports the pod declares with tweed's annotations
//! (`tweed.io/guest-localhost-ports`, `tweed.io/guest-pod-services`, which
//! containerd passes into the container's spec when the runtime's
//! `pod_annotations` lets them through).
//!
//! Order matters: urunc reads eth0's address for the guest's command line
//! after making its tap, then execs the VMM. The hook runs once urunc has
//! asked the container to start; it waits until the container's process has
//! left the runtime's binary (exec'd the VMM), so urunc is done with eth0.
//! Then, as in tap mode, eth0 gives up the pod's address (the guest owns it)
//! and the tap takes the gateway's MAC.
//!
//! Every other container (the pod's sandbox and sidecars, which urunc hands
//! to runc, and runc runs the same hook) and a pod declaring no ports are
//! left alone.
//!
//! A guest container that stops and is started again in the same pod
//! (kubelet restarts it) finds eth0 without the address urunc needs: this
//! hook gave it to the previous guest. So the `poststart` stage notes the
//! address and gateway in eth0's alias before taking them, and the
//! `create-runtime` stage (an OCI `createRuntime` hook, which runs before
//! urunc reads eth0) gives them back and removes the localhost table, once
//! urunc's cleanup has removed the previous guest's tap.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;
use tweed_guest::Port;
use tweed_netlink::TABLE_MAIN;
use tweed_netlink::{MacAddr, NetNs, Netlink, Route};

use crate::guest::device::Device;
use crate::guest::localhost::{self, Plan};

/// The argument that selects this program in the `tweed` binary; the next
/// one names the stage.
pub const ARG: &str = "urunc-hook";
pub const POSTSTART: &str = "poststart";
pub const CREATE_RUNTIME: &str = "create-runtime";
/// eth0's alias while the guest has its address: what to give back.
const SAVED_PREFIX: &str = "tweed-urunc-hook";
/// urunc's tap (its `tapX_urunc`, the first of a pod).
pub const URUNC_TAP: &str = "tap0_urunc";
/// The pod interface urunc joins its tap to (urunc's `DefaultInterface`).
pub const POD_IFNAME: &str = "eth0";
/// urunc's annotation naming the guest's type, in its container state.
const URUNC_TYPE: &str = "com.urunc.unikernel.unikernelType";
const LOCALHOST_PORTS: &str = "tweed.io/guest-localhost-ports";
const POD_SERVICES: &str = "tweed.io/guest-pod-services";
/// QEMU's MAC for the first NIC when none is given, as urunc starts it.
const QEMU_DEFAULT_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
/// How long urunc may take from `start` to exec'ing the VMM.
const VMM_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("reading the container state on stdin: {0}")]
    State(String),
    #[error("annotation {annotation}: {why}")]
    Annotation {
        annotation: &'static str,
        why: String,
    },
    #[error("the container's process {pid}: {why}")]
    Process { pid: i32, why: String },
    #[error("{0}")]
    Network(String),
}

/// The OCI state a runtime hands a hook on stdin (the fields used here).
#[derive(Debug, Deserialize)]
struct State {
    pid: Option<i32>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// Where errors are also appended: urunc logs a hook's stderr only in the
/// task's own log, which containerd deletes with the failed task.
pub const ERROR_LOG: &str = "/run/tweed/urunc-hook.log";

impl State {
    /// urunc runs this container as a guest (its state carries urunc's
    /// config); runc's state for a sidecar or the sandbox does not.
    fn is_urunc_guest(&self) -> bool {
        self.annotations
            .get(URUNC_TYPE)
            .is_some_and(|t| !t.is_empty())
    }
}

/// Runs the hook stage `stage`; the process exit code. Errors go to stderr
/// and to [`ERROR_LOG`].
pub fn run(stage: Option<&str>) -> i32 {
    let name = stage.unwrap_or_default().to_string();
    let stage: fn(&State) -> Result<(), HookError> = match stage {
        Some(POSTSTART) => apply,
        Some(CREATE_RUNTIME) => restore,
        other => {
            eprintln!(
                "tweed {ARG}: give the stage, {POSTSTART} or {CREATE_RUNTIME} (got {other:?})"
            );
            return 2;
        }
    };
    let mut input = String::new();
    let outcome = std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| HookError::State(e.to_string()))
        .and_then(|_| serde_json::from_str(&input).map_err(|e| HookError::State(e.to_string())))
        .and_then(|state: State| stage(&state));
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            let id = serde_json::from_str::<serde_json::Value>(&input)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string))
                .unwrap_or_default();
            let line = format!("tweed {ARG} {name} {id}: {e}");
            eprintln!("{line}");
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(ERROR_LOG)
                .and_then(|mut f| {
                    use std::io::Write;
                    writeln!(f, "{line}")
                });
            1
        }
    }
}

fn apply(state: &State) -> Result<(), HookError> {
    if !state.is_urunc_guest() {
        return Ok(());
    }
    let localhost_ports = ports(state, LOCALHOST_PORTS)?;
    let pod_services = ports(state, POD_SERVICES)?;
    if localhost_ports.is_empty() && pod_services.is_empty() {
        return Ok(());
    }
    let pid = state
        .pid
        .ok_or_else(|| HookError::State("no pid: the container has not started".into()))?;
    wait_for_vmm(pid)?;
    let guest_mac = guest_mac(pid)?;

    let ns = NetNs::open(format!("/proc/{pid}/ns/net")).map_err(net)?;
    let mut nl = Netlink::in_netns(&ns).map_err(net)?;
    let tap = nl
        .link_by_name(URUNC_TAP)
        .map_err(net)?
        .ok_or_else(|| HookError::Network(format!("urunc's tap {URUNC_TAP} is not in the pod")))?;
    let eth = nl
        .link_by_name(POD_IFNAME)
        .map_err(net)?
        .ok_or_else(|| HookError::Network(format!("{POD_IFNAME} is not in the pod")))?;
    let address = nl
        .addresses(Some(eth.index))
        .map_err(net)?
        .into_iter()
        .find(|a| matches!(a.addr, IpNet::V4(_)))
        .ok_or_else(|| HookError::Network(format!("{POD_IFNAME} has no IPv4 address")))?;
    let IpAddr::V4(pod_ip) = address.addr.addr() else {
        unreachable!("an IPv4 network")
    };
    let gateway = nl
        .routes(false, TABLE_MAIN)
        .map_err(net)?
        .into_iter()
        .find(|r| r.dst.prefix_len() == 0)
        .and_then(|r| r.gateway)
        .ok_or_else(|| HookError::Network("the pod has no default route".into()))?;
    let IpAddr::V4(gateway) = gateway else {
        return Err(HookError::Network(format!("gateway {gateway} is not IPv4")));
    };
    let gateway_mac = gateway_mac_on_node(gateway)?;

    // As in tap mode: the guest owns the pod's address, and the tap answers
    // to the MAC the guest sends its off-link packets to. What eth0 gives
    // up is noted on it for `restore`.
    nl.set_link_mac(tap.index, gateway_mac).map_err(net)?;
    let saved = Saved {
        address: address.addr,
        gateway,
    };
    nl.set_link_alias(eth.index, &saved.to_string())
        .map_err(net)?;
    nl.delete_address(eth.index, address.addr).map_err(net)?;
    let device = Device {
        name: URUNC_TAP.to_string(),
        index: tap.index,
        mac: Some(gateway_mac),
        number: None,
    };
    let plan = Plan {
        ifname: POD_IFNAME,
        pod_ip,
        guest_mac,
        localhost_ports: &localhost_ports,
        pod_services: &pod_services,
        dns_forward: None,
    };
    localhost::install(&ns, &mut nl, &device, &plan).map_err(|e| HookError::Network(e.msg))
}

/// `create-runtime`, before urunc reads eth0 for a guest container: gives
/// eth0 back what this hook gave the pod's previous guest (see the module
/// docs). On a first start there is nothing to give back; other containers
/// are left alone.
fn restore(state: &State) -> Result<(), HookError> {
    if !state.is_urunc_guest() {
        return Ok(());
    }
    let pid = state
        .pid
        .ok_or_else(|| HookError::State("no pid: the container was not created".into()))?;
    let ns = NetNs::open(format!("/proc/{pid}/ns/net")).map_err(net)?;
    let mut nl = Netlink::in_netns(&ns).map_err(net)?;
    let Some(eth) = nl.link_by_name(POD_IFNAME).map_err(net)? else {
        return Ok(());
    };
    let Some(saved) = eth.alias.as_deref().and_then(Saved::parse) else {
        return Ok(());
    };
    if nl.link_by_name(URUNC_TAP).map_err(net)?.is_some() {
        return Err(HookError::Network(format!(
            "{URUNC_TAP} is still in the pod: the previous guest, which holds {}, \
             was not cleaned up",
            saved.address
        )));
    }
    localhost::remove(&ns, POD_IFNAME).map_err(|e| HookError::Network(e.msg))?;
    nl.add_address(eth.index, saved.address, true)
        .map_err(net)?;
    nl.add_route(&Route::new(IpNet::V4(Ipv4Net::default())).via(IpAddr::V4(saved.gateway)))
        .map_err(net)?;
    nl.set_link_alias(eth.index, "").map_err(net)
}

/// What eth0 gave the guest: `tweed-urunc-hook <address> via <gateway>`.
#[derive(Debug, PartialEq)]
struct Saved {
    address: IpNet,
    gateway: Ipv4Addr,
}

impl Saved {
    fn parse(alias: &str) -> Option<Saved> {
        let rest = alias.strip_prefix(SAVED_PREFIX)?.trim();
        let (address, gateway) = rest.split_once(" via ")?;
        Some(Saved {
            address: address.parse().ok()?,
            gateway: gateway.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SAVED_PREFIX} {} via {}", self.address, self.gateway)
    }
}

fn net(e: impl std::fmt::Display) -> HookError {
    HookError::Network(e.to_string())
}

fn ports(state: &State, annotation: &'static str) -> Result<Vec<Port>, HookError> {
    match state.annotations.get(annotation) {
        None => Ok(Vec::new()),
        Some(text) => tweed_guest::port::parse_list(text).map_err(|e| HookError::Annotation {
            annotation,
            why: e.to_string(),
        }),
    }
}

/// Waits until the container's process runs another binary than the
/// runtime that started this hook (our parent): urunc has exec'd the VMM.
fn wait_for_vmm(pid: i32) -> Result<(), HookError> {
    let exe = |p: String| std::fs::read_link(format!("/proc/{p}/exe"));
    let runtime =
        exe(std::os::unix::process::parent_id().to_string()).map_err(|e| HookError::Process {
            pid,
            why: format!("reading the runtime's binary: {e}"),
        })?;
    let start = Instant::now();
    loop {
        let now: PathBuf = exe(pid.to_string()).map_err(|e| HookError::Process {
            pid,
            why: format!("gone before its VMM started: {e}"),
        })?;
        if now != runtime {
            return Ok(());
        }
        if start.elapsed() > VMM_WAIT {
            return Err(HookError::Process {
                pid,
                why: format!(
                    "still {} after {} s: urunc never started the VMM",
                    runtime.display(),
                    VMM_WAIT.as_secs()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The guest's MAC, from the VMM's command line: QEMU's `mac=`/`macaddr=`
/// if urunc gave one, else QEMU's default for the first NIC (urunc gives
/// none to `linux` guests). Other VMMs are refused: their MAC is not known.
fn guest_mac(pid: i32) -> Result<MacAddr, HookError> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| HookError::Process {
        pid,
        why: format!("reading its command line: {e}"),
    })?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    mac_from_vmm_args(&args).map_err(|why| HookError::Process { pid, why })
}

fn mac_from_vmm_args(args: &[String]) -> Result<MacAddr, String> {
    if !args.iter().any(|a| a.contains("qemu-system")) {
        return Err(format!(
            "the VMM is not QEMU ({}): the guest's MAC is known only for QEMU",
            args.first().map(String::as_str).unwrap_or("?")
        ));
    }
    for arg in args {
        for option in arg.split(',') {
            if let Some(mac) = option
                .strip_prefix("macaddr=")
                .or_else(|| option.strip_prefix("mac="))
            {
                return mac.parse().map_err(|e| format!("QEMU's {option}: {e}"));
            }
        }
    }
    Ok(QEMU_DEFAULT_MAC)
}

/// The gateway's MAC: the hook runs on the node, where the gateway is an
/// address of one of the node's devices (tweed's bridge). The pod cannot
/// learn it by ARP any more: urunc's redirect hands every frame arriving on
/// eth0, ARP replies included, to the guest.
fn gateway_mac_on_node(gateway: Ipv4Addr) -> Result<MacAddr, HookError> {
    let mut nl = Netlink::new().map_err(net)?;
    let index = nl
        .addresses(None)
        .map_err(net)?
        .into_iter()
        .find(|a| a.addr.addr() == IpAddr::V4(gateway))
        .map(|a| a.index)
        .ok_or_else(|| {
            HookError::Network(format!("no device on the node holds the gateway {gateway}"))
        })?;
    nl.link_by_index(index)
        .map_err(net)?
        .and_then(|l| l.mac)
        .ok_or_else(|| HookError::Network(format!("the node's device for {gateway} has no MAC")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn the_guest_mac_comes_from_qemus_command_line() {
        let urunc_linux = args(
            "/usr/lib/tweed-cluster/urunc/qemu-system-x86_64 -m 256M -net nic,model=virtio -net tap,script=no,downscript=no,ifname=tap0_urunc",
        );
        assert_eq!(mac_from_vmm_args(&urunc_linux), Ok(QEMU_DEFAULT_MAC));
        let with_mac = args(
            "qemu-system-x86_64 -device virtio-net-pci,netdev=n0,mac=02:aa:bb:cc:dd:ee -netdev tap,id=n0",
        );
        assert_eq!(
            mac_from_vmm_args(&with_mac).unwrap().to_string(),
            "02:aa:bb:cc:dd:ee"
        );
        let bad = args("qemu-system-x86_64 -net nic,macaddr=zz");
        assert!(mac_from_vmm_args(&bad).unwrap_err().contains("macaddr=zz"));
        let firecracker = args("firecracker --api-sock /tmp/fc.sock");
        assert!(
            mac_from_vmm_args(&firecracker)
                .unwrap_err()
                .contains("only for QEMU")
        );
    }

    #[test]
    fn other_containers_and_pods_without_ports_are_left_alone() {
        let runc_container = State {
            pid: Some(1),
            annotations: HashMap::from([(LOCALHOST_PORTS.to_string(), "80".to_string())]),
        };
        assert!(apply(&runc_container).is_ok());
        let no_ports = State {
            pid: Some(1),
            annotations: HashMap::from([(URUNC_TYPE.to_string(), "linux".to_string())]),
        };
        assert!(apply(&no_ports).is_ok());
    }

    #[test]
    fn what_eth0_gave_up_reads_back_from_its_alias() {
        let saved = Saved {
            address: "10.244.1.6/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 244, 1, 1),
        };
        assert_eq!(
            saved.to_string(),
            "tweed-urunc-hook 10.244.1.6/24 via 10.244.1.1"
        );
        assert_eq!(Saved::parse(&saved.to_string()), Some(saved));
        assert_eq!(Saved::parse("tweed/eth0"), None);
        assert_eq!(Saved::parse("tweed-urunc-hook 10.244.1.6/24"), None);
    }

    #[test]
    fn a_bad_port_names_its_annotation() {
        let state = State {
            pid: Some(1),
            annotations: HashMap::from([
                (URUNC_TYPE.to_string(), "linux".to_string()),
                (POD_SERVICES.to_string(), "80,http".to_string()),
            ]),
        };
        let e = apply(&state).unwrap_err().to_string();
        assert!(
            e.starts_with("annotation tweed.io/guest-pod-services:"),
            "{e}"
        );
    }
}
