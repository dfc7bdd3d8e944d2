//! `tweedctl demo`: a single-node tweed network on this machine.
//!
//! Builds a "node" network namespace and two pod namespaces, runs the real
//! `tweed` plugin for each pod exactly as a container runtime would (inside
//! the node namespace), then proves the pods reach each other with a TCP
//! exchange and shows what the kernel now holds. Nothing outside the three
//! namespaces is touched; they are removed at the end unless `--keep`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};
use thiserror::Error;
use tweed_netlink::{NetNs, Netlink};

const NODE: &str = "tweed-demo-node";
const PODS: [&str; 2] = ["tweed-demo-pod-a", "tweed-demo-pod-b"];
const NETWORK: &str = "tweed-demo";
const SUBNET: &str = "10.244.99.0/24";
const STATE_DIR: &str = "/run/tweed-demo";

#[derive(Args)]
pub struct DemoArgs {
    /// The tweed plugin binary (default: next to tweedctl).
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Leave the namespaces in place to explore (`ip netns exec ...`).
    #[arg(long)]
    keep: bool,
    /// Only remove what an earlier `--keep` run left.
    #[arg(long)]
    cleanup: bool,
}

#[derive(Debug, Error)]
pub enum DemoError {
    #[error("the demo creates network namespaces and must run as root")]
    NotRoot,
    #[error(
        "cannot find the tweed plugin at {0}; build it (cargo build --release) or pass --plugin"
    )]
    NoPlugin(PathBuf),
    #[error("{0}")]
    Netlink(#[from] tweed_netlink::NetlinkError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tweed {command} for {pod} failed: {output}")]
    Plugin {
        command: &'static str,
        pod: String,
        output: String,
    },
    #[error("pod-to-pod check failed: {0}")]
    Connectivity(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}

pub fn run(args: &DemoArgs) -> Result<(), DemoError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(DemoError::NotRoot);
    }
    if args.cleanup {
        cleanup();
        println!("removed the demo namespaces and state");
        return Ok(());
    }
    let plugin = plugin_path(args.plugin.as_deref())?;
    cleanup();
    let result = run_demo(&plugin, args.keep);
    if result.is_err() || !args.keep {
        cleanup();
    }
    result
}

fn plugin_path(given: Option<&Path>) -> Result<PathBuf, DemoError> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("tweed")))
            .unwrap_or_else(|| PathBuf::from("tweed")),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(DemoError::NoPlugin(path))
    }
}

fn conf() -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": NETWORK,
        "type": "tweed",
        "bridge": "tweed0",
        "logFile": format!("{STATE_DIR}/cni.log"),
        "ipam": {
            "type": "tweed",
            "ranges": [[{"subnet": SUBNET}]],
            "dataDir": format!("{STATE_DIR}/ipam"),
        }
    })
}

fn run_demo(plugin: &Path, keep: bool) -> Result<(), DemoError> {
    println!("tweed demo: one node, two pods, network {NETWORK} ({SUBNET})\n");
    let node = NetNs::create_named(NODE)?;
    // Loopback up in every namespace, as runtimes do.
    set_lo_up(&node)?;
    let mut ips = Vec::new();
    for (i, pod) in PODS.iter().enumerate() {
        let ns = NetNs::create_named(pod)?;
        set_lo_up(&ns)?;
        let started = Instant::now();
        let result = cni(&node, plugin, "ADD", &format!("demo-{i}"), &ns)?;
        let took = started.elapsed();
        let ip = result["ips"][0]["address"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        println!(
            "  ADD {pod:<18} -> {ip:<16} via {}  ({:.1} ms)",
            result["ips"][0]["gateway"].as_str().unwrap_or("-"),
            took.as_secs_f64() * 1e3
        );
        ips.push(ip);
    }

    println!("\nnode {NODE}:");
    describe_node(&node)?;

    let a = NetNs::named(PODS[0])?;
    let b = NetNs::named(PODS[1])?;
    let ip_b: IpAddr = ips[1]
        .split('/')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| DemoError::Connectivity(format!("bad address {}", ips[1])))?;
    let rtt = tcp_exchange(&a, &b, ip_b)?;
    println!(
        "\n  TCP {} -> {}:7777: sent and echoed 5 bytes in {:.2} ms",
        ips[0],
        ip_b,
        rtt.as_secs_f64() * 1e3
    );

    if keep {
        println!(
            "\nkept. Try:\n  ip netns exec {} ping -c 3 {ip_b}\n  cat {STATE_DIR}/cni.log\n  tweedctl demo --cleanup",
            PODS[0]
        );
        return Ok(());
    }
    for (i, _) in PODS.iter().enumerate() {
        let ns = NetNs::named(PODS[i])?;
        cni(&node, plugin, "DEL", &format!("demo-{i}"), &ns)?;
    }
    println!("\nDEL both pods: addresses released; cleaning up.");
    Ok(())
}

fn set_lo_up(ns: &NetNs) -> Result<(), DemoError> {
    let mut nl = Netlink::in_netns(ns)?;
    if let Some(lo) = nl.link_by_name("lo")? {
        nl.set_link_up(lo.index, true)?;
    }
    Ok(())
}

/// Runs the plugin inside the node namespace as a runtime would.
fn cni(
    node: &NetNs,
    plugin: &Path,
    command: &'static str,
    id: &str,
    pod: &NetNs,
) -> Result<Value, DemoError> {
    let stdin = conf().to_string();
    let output = node
        .run(|| {
            let mut child = Command::new(plugin)
                .env("CNI_COMMAND", command)
                .env("CNI_CONTAINERID", id)
                .env("CNI_NETNS", pod.path())
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", plugin.parent().unwrap_or(Path::new("/")))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut input) = child.stdin.take() {
                input.write_all(stdin.as_bytes())?;
            }
            child.wait_with_output()
        })?
        .map_err(io(format!("running {}", plugin.display())))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(DemoError::Plugin {
            command,
            pod: pod.path().display().to_string(),
            output: text,
        });
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn describe_node(node: &NetNs) -> Result<(), DemoError> {
    let mut nl = Netlink::in_netns(node)?;
    let links = nl.links()?;
    for link in &links {
        if link.name == "lo" {
            continue;
        }
        let addrs: Vec<String> = nl
            .addresses(Some(link.index))?
            .into_iter()
            .filter(|a| !a.scope_link)
            .map(|a| a.addr.to_string())
            .collect();
        let master = link
            .master
            .and_then(|m| links.iter().find(|l| l.index == m))
            .map(|m| format!(" port of {}", m.name))
            .unwrap_or_default();
        println!(
            "  {:<16} {:<7} mtu {}{}{}{}",
            link.name,
            link.kind.as_deref().unwrap_or("-"),
            link.mtu,
            master,
            if addrs.is_empty() {
                String::new()
            } else {
                format!(" {}", addrs.join(" "))
            },
            link.bridge_port
                .filter(|p| p.hairpin)
                .map(|_| " hairpin")
                .unwrap_or_default(),
        );
    }
    Ok(())
}

/// A listener in pod b, a client in pod a: bytes across the bridge.
fn tcp_exchange(a: &NetNs, b: &NetNs, ip_b: IpAddr) -> Result<Duration, DemoError> {
    let addr = SocketAddr::new(ip_b, 7777);
    let listener = b
        .run(|| TcpListener::bind(addr))?
        .map_err(|e| DemoError::Connectivity(format!("listen on {addr} in pod b: {e}")))?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf)?;
        conn.write_all(&buf)
    });
    let started = Instant::now();
    let mut stream = a
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(3)))?
        .map_err(|e| DemoError::Connectivity(format!("connect from pod a to {addr}: {e}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(io("socket option"))?;
    stream.write_all(b"tweed").map_err(io("send"))?;
    let mut back = [0u8; 5];
    stream.read_exact(&mut back).map_err(io("receive"))?;
    let rtt = started.elapsed();
    let _ = server.join();
    if &back != b"tweed" {
        return Err(DemoError::Connectivity("echo mismatch".into()));
    }
    Ok(rtt)
}

/// Removes the demo namespaces (the node namespace takes the bridge and
/// host veths with it) and state.
fn cleanup() {
    for name in PODS.iter().chain([NODE].iter()) {
        let _ = NetNs::delete_named(name);
    }
    let _ = std::fs::remove_dir_all(STATE_DIR);
}
