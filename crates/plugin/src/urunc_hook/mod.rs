//! `tweed urunc-hook`: DNS, MTU and localhost for a urunc guest, run by
//! urunc as an OCI `poststart` hook (docs/urunc.md).
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
//! urunc gives the guest nothing but its address: for DNS servers, search
//! domains and the MTU, every guest's DHCP is answered by tweedd from a
//! record this hook writes ([`dhcp`]).
//!
//! Every other container (the pod's sandbox and sidecars, which urunc hands
//! to runc, and runc runs the same hook) is left alone, and so is localhost
//! for a pod declaring no ports.
//!
//! A guest container that stops and is started again in the same pod
//! (kubelet restarts it) finds eth0 without the address urunc needs: this
//! hook gave it to the previous guest. So the `poststart` stage notes the
//! address and gateway in eth0's alias before taking them, and the
//! `create-runtime` stage (an OCI `createRuntime` hook, which runs before
//! urunc reads eth0) gives them back and removes the localhost table, once
//! urunc's cleanup has removed the previous guest's tap.

use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use tweed_guest::Port;
use tweed_netlink::TABLE_MAIN;
use tweed_netlink::{MacAddr, NetNs, Netlink, Route};

use crate::guest::device::Device;
use crate::guest::localhost::{self, Plan};

mod bundle;
mod dhcp;
mod saved;
mod vmm;

use saved::Saved;
use vmm::{guest_mac, wait_for_vmm};

/// The argument that selects this program in the `tweed` binary; the next
/// one names the stage.
pub const ARG: &str = "urunc-hook";
pub const POSTSTART: &str = "poststart";
pub const CREATE_RUNTIME: &str = "create-runtime";
/// urunc's tap (its `tapX_urunc`, the first of a pod).
pub const URUNC_TAP: &str = "tap0_urunc";
/// The pod interface urunc joins its tap to (urunc's `DefaultInterface`).
pub const POD_IFNAME: &str = "eth0";
/// urunc's annotation naming the guest's type, in its container state.
const URUNC_TYPE: &str = "com.urunc.unikernel.unikernelType";
const LOCALHOST_PORTS: &str = "tweed.io/guest-localhost-ports";
const POD_SERVICES: &str = "tweed.io/guest-pod-services";

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
    bundle: Option<PathBuf>,
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
            log(&format!("tweed {ARG} {name} {id}: {e}"));
            1
        }
    }
}

/// Writes `line` to stderr and appends it to [`ERROR_LOG`].
fn log(line: &str) {
    eprintln!("{line}");
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ERROR_LOG)
        .and_then(|mut f| {
            use std::io::Write;
            writeln!(f, "{line}")
        });
}

fn apply(state: &State) -> Result<(), HookError> {
    if !state.is_urunc_guest() {
        return Ok(());
    }
    let localhost_ports = ports(state, LOCALHOST_PORTS)?;
    let pod_services = ports(state, POD_SERVICES)?;
    let pid = state
        .pid
        .ok_or_else(|| HookError::State("no pid: the container has not started".into()))?;
    wait_for_vmm(pid)?;

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
        .find_map(|a| match a.addr {
            IpNet::V4(v4) => Some(v4),
            IpNet::V6(_) => None,
        })
        .ok_or_else(|| HookError::Network(format!("{POD_IFNAME} has no IPv4 address")))?;
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

    if !(localhost_ports.is_empty() && pod_services.is_empty()) {
        let plan = Plan {
            ifname: POD_IFNAME,
            pod_ip: address.addr(),
            guest_mac: guest_mac(pid)?,
            localhost_ports: &localhost_ports,
            pod_services: &pod_services,
            dns_forward: None,
        };
        give_localhost(&ns, &mut nl, &tap, &eth, address, gateway, &plan)?;
    }

    // Every guest is offered its DNS and MTU; one that never asks loses
    // nothing, so a failure here is reported, not fatal to the guest.
    let lease = dhcp::Lease {
        address,
        gateway,
        mtu: eth.mtu,
    };
    let offered = state
        .bundle
        .as_deref()
        .ok_or_else(|| HookError::State("no bundle in the container state".into()))
        .and_then(bundle::Spec::read)
        .and_then(|spec| {
            dhcp::offer(
                &mut nl,
                &tap,
                &spec,
                &lease,
                Path::new(tweed_guest::dhcp::DEFAULT_DIR),
            )
        });
    if let Err(e) = offered {
        log(&format!(
            "tweed {ARG} {POSTSTART}: the guest gets no DHCP answers: {e}"
        ));
    }
    Ok(())
}

/// As in tap mode: the guest owns the pod's address, and the tap answers
/// to the MAC the guest sends its off-link packets to. What eth0 gives up
/// is noted on it for `restore`.
fn give_localhost(
    ns: &NetNs,
    nl: &mut Netlink,
    tap: &tweed_netlink::Link,
    eth: &tweed_netlink::Link,
    address: Ipv4Net,
    gateway: Ipv4Addr,
    plan: &Plan,
) -> Result<(), HookError> {
    let gateway_mac = gateway_mac_on_node(gateway)?;
    nl.set_link_mac(tap.index, gateway_mac).map_err(net)?;
    let saved = Saved {
        address: IpNet::V4(address),
        gateway,
    };
    nl.set_link_alias(eth.index, &saved.to_string())
        .map_err(net)?;
    nl.delete_address(eth.index, IpNet::V4(address))
        .map_err(net)?;
    let device = Device {
        name: URUNC_TAP.to_string(),
        index: tap.index,
        mac: Some(gateway_mac),
        number: None,
    };
    localhost::install(ns, nl, &device, plan).map_err(|e| HookError::Network(e.msg))
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

    #[test]
    fn other_containers_are_left_alone() {
        // runc runs the same hook for the pod's sandbox and sidecars: no
        // urunc type in their state, so nothing is waited for or touched.
        let runc_container = State {
            pid: Some(1),
            bundle: None,
            annotations: HashMap::from([(LOCALHOST_PORTS.to_string(), "80".to_string())]),
        };
        assert!(apply(&runc_container).is_ok());
        assert!(restore(&runc_container).is_ok());
    }

    #[test]
    fn a_bad_port_names_its_annotation() {
        let state = State {
            pid: Some(1),
            bundle: None,
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
