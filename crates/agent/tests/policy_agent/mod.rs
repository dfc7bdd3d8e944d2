//! `tweedd` as a node of tweed_testkit::bridged_pods runs it for
//! NetworkPolicy: inside the node's namespace, with the file store (its
//! leases are not what is under test), host-gw over the node's `remote`
//! veth, and with `--network-policy` the Kubernetes API reached through
//! `kubeconfig`. Shared by the end-to-end test and the benchmark.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tweed_testkit::bridged_pods::in_ns;

/// Starts tweedd as node `node_name` in namespace `node_ns`, its state and
/// log (`tweedd.log`) in `dir`.
pub fn start(node_ns: &str, node_name: &str, dir: &Path, kubeconfig: &Path, policy: bool) -> Child {
    std::fs::write(
        dir.join("net-conf.json"),
        r#"{"Network": "10.99.0.0/16", "Backend": {"Type": "host-gw"}}"#,
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("tweedd.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tweedd"));
    cmd.arg(format!("--store=file://{}", dir.join("store").display()))
        .arg(format!(
            "--net-conf={}",
            dir.join("net-conf.json").display()
        ))
        .arg(format!("--node-name={node_name}"))
        .arg("--iface=remote")
        .arg(format!(
            "--subnet-file={}",
            dir.join("subnet.env").display()
        ))
        .arg(format!("--state-dir={}", dir.join("state").display()))
        .arg(format!("--wire-dir={}", dir.join("wires").display()))
        .arg(format!("--segment-dir={}", dir.join("segments").display()))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    if policy {
        cmd.arg("--network-policy")
            .arg(format!("--kubeconfig={}", kubeconfig.display()));
    }
    in_ns(node_ns, || cmd.spawn()).expect("start tweedd")
}

/// SIGTERM, then waits for it to exit.
pub fn stop(mut child: Child) {
    // SAFETY: SIGTERM to our own child, still unreaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// Whether the node's nftables has tweed's policy table.
pub fn has_table(node_ns: &str) -> bool {
    in_ns(node_ns, || {
        Command::new("nft")
            .args(["list", "table", "inet", "tweed-policy"])
            .output()
    })
    .is_ok_and(|o| o.status.success())
}

/// Polls `f` every 100 ms until it holds and returns how long that took;
/// panics with tweedd's log after `secs`.
pub fn wait_until(what: &str, secs: u64, log: &Path, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        if f() {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "not within {secs} s: {what}\n--- tweedd.log ---\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
