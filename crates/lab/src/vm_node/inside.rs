//! The VM side of a VM node (`tweedctl lab vm-serve`): make the node's
//! namespace from the VM's NIC, then do what the lab asks.

use std::path::Path;
use std::time::Duration;

use tweed_netlink::{NetNs, Netlink};

use super::channel::{self, Reply, Request};
use super::{FAILED_FILE, READY_FILE};
use crate::node_kernel::{LocalKernel, NodeKernel};
use crate::{LabError, topology};

/// Makes node `index`'s namespace `ns` on underlay subnet `subnet` from
/// the VM's NIC, reports it in `dir`, and serves requests for ever.
pub fn run(dir: &Path, ns: &str, index: usize, subnet: u8) -> Result<(), LabError> {
    match make_node(ns, index, subnet) {
        Ok(()) => {
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            // Through a rename: the lab never reads it half-written.
            let tmp = dir.join(format!("{READY_FILE}.tmp"));
            std::fs::write(&tmp, release.trim())
                .and_then(|()| std::fs::rename(&tmp, dir.join(READY_FILE)))
                .map_err(|e| LabError::io("write the ready file", e))?;
        }
        Err(e) => {
            let _ = std::fs::write(dir.join(FAILED_FILE), e.to_string());
            return Err(e);
        }
    }
    channel::serve(dir, handle)
}

/// The VM's NIC (its only device besides loopback) becomes `eth0` of a
/// fresh namespace `ns`, addressed and routed as a namespace node's.
fn make_node(ns: &str, index: usize, subnet: u8) -> Result<(), LabError> {
    let mut root = Netlink::new()?;
    let nic = root
        .links()?
        .into_iter()
        .find(|l| l.name != "lo")
        .ok_or_else(|| LabError::Setup("the VM has no network device".into()))?;
    let node = NetNs::create_named(ns)?;
    root.set_link_netns(nic.index, &node)?;
    let mut nl = Netlink::in_netns(&node)?;
    let moved = nl
        .link_by_name(&nic.name)?
        .ok_or_else(|| LabError::Setup(format!("{} did not arrive in {ns}", nic.name)))?;
    if moved.name != "eth0" {
        nl.set_link_name(moved.index, "eth0")?;
    }
    topology::configure_node(&node, index, subnet)
}

fn handle(request: Request) -> Reply {
    let kernel = LocalKernel;
    let done = |r: Result<(), LabError>| match r {
        Ok(()) => Reply::Done,
        Err(e) => Reply::Error {
            message: e.to_string(),
        },
    };
    match request {
        Request::Spawn {
            ns,
            argv,
            log,
            caps,
        } => match kernel.spawn(&ns, &argv, &log, caps.as_deref()) {
            Ok(pid) => Reply::Pid { pid },
            Err(e) => Reply::Error {
                message: e.to_string(),
            },
        },
        Request::Stop { pid, grace_ms } => done(kernel.stop(pid, Duration::from_millis(grace_ms))),
        Request::Kill { pid } => done(kernel.kill(pid)),
        Request::Alive { pid } => Reply::Bool {
            value: kernel.alive(pid),
        },
        Request::Run { ns, process } => match kernel.run(&ns, &process) {
            Ok(out) => Reply::Output {
                wait_status: std::os::unix::process::ExitStatusExt::into_raw(out.status),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            Err(e) => Reply::Error {
                message: e.to_string(),
            },
        },
        Request::CreatePodNs { name } => done(kernel.create_pod_ns(&name)),
        Request::DeleteNs { name } => done(kernel.delete_ns(&name)),
        Request::Ping {
            ns,
            dst,
            tries,
            timeout_ms,
        } => match kernel.ping(&ns, dst, tries, Duration::from_millis(timeout_ms)) {
            Ok(value) => Reply::Bool { value },
            Err(e) => Reply::Error {
                message: e.to_string(),
            },
        },
        Request::HttpGet {
            ns,
            addr,
            path,
            timeout_ms,
        } => match kernel.http_get(&ns, addr, &path, Duration::from_millis(timeout_ms)) {
            Some((code, body)) => Reply::Http { code, body },
            None => Reply::Error {
                message: format!("no answer from http://{addr}{path}"),
            },
        },
    }
}
