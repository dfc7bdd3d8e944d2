//! flannel in an etcd-backed lab: the store seen with flannel's key layout,
//! tweed nodes in `--flannel-compat`, and real flanneld (built by
//! scripts/build-flannel.sh) running a node, so both form one overlay.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tweed_lab::procs;

use super::{TestLab, wait_for};

/// flannel's default `--etcd-prefix`, which the lab's agents use too.
pub const PREFIX: &str = "/coreos.com/network";

/// etcdctl against the lab's etcd, from the underlay; its stdout.
pub fn etcdctl(lab: &TestLab, args: &[&str]) -> String {
    let endpoint = etcd_endpoint();
    let mut argv = vec!["etcdctl", "--endpoints", &endpoint];
    argv.extend_from_slice(args);
    let out = lab.lab().exec_output("underlay", &argv).expect("etcdctl");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn etcd_endpoint() -> String {
    format!(
        "http://{}:{}",
        tweed_lab::topology::ROUTER_IPV4,
        tweed_lab::ETCD_PORT
    )
}

/// Runs `argv` in `node`'s namespace; panics when it fails.
fn node_run(lab: &TestLab, node: &str, argv: &[&str]) {
    let out = lab.lab().exec_output(node, argv).expect("run in node");
    assert!(
        out.status.success(),
        "{node}: {argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Restarts a tweed node's agent with `--flannel-compat` (its old
/// `tweed.1` removed, as on a node that ran flannel before).
pub fn tweed_compat_node(lab: &mut TestLab, node: &str) {
    lab.lab_mut().stop_agent(node).unwrap();
    node_run(lab, node, &["ip", "link", "del", "tweed.1"]);
    lab.lab_mut()
        .start_agent_args(node, &["--flannel-compat"])
        .unwrap();
}

/// flanneld running in a lab node; stopped (by its pid) when dropped.
/// Declare it after the [`TestLab`] so that it stops before the lab's
/// namespaces go.
pub struct Flanneld {
    pid: i32,
    pub log: PathBuf,
    /// flannel's subnet.env, as flanneld wrote it.
    pub subnet_file: PathBuf,
}

impl Drop for Flanneld {
    fn drop(&mut self) {
        procs::stop(self.pid, Duration::from_secs(5));
    }
}

impl Flanneld {
    /// A `FLANNEL_*` value of the subnet file.
    pub fn env(&self, key: &str) -> String {
        let text = std::fs::read_to_string(&self.subnet_file).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {}:\n{text}", self.subnet_file.display()))
            .to_string()
    }

    /// The node's pod subnet (`FLANNEL_SUBNET`, as a network).
    pub fn subnet(&self) -> ipnet::Ipv4Net {
        self.env("FLANNEL_SUBNET")
            .parse::<ipnet::Ipv4Net>()
            .expect("FLANNEL_SUBNET")
            .trunc()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Turns `node` into a flannel node: its pods deleted and tweed taken off
/// it (agent stopped; `tweed.1`, `tweed0`, the masquerade table and its
/// lease removed), flannel's net-conf (the lab's own) put at
/// `<prefix>/config`, and flanneld started there in etcd mode, as
/// kube-flannel.yml starts it but with `--etcd-endpoints` instead of
/// `--kube-subnet-mgr`. Returns once flanneld wrote its subnet file and
/// every other node routes its subnet through `flannel.1`.
pub fn flannel_node(lab: &mut TestLab, node: &str) -> Flanneld {
    let bins = tweed_testkit::flannel::flannel_bins();
    let pods: Vec<String> = lab
        .lab()
        .state
        .node(node)
        .unwrap()
        .pods
        .iter()
        .map(|p| p.name.clone())
        .collect();
    for pod in pods {
        lab.lab_mut().del_pod(node, &pod).unwrap();
    }
    lab.lab_mut().stop_agent(node).unwrap();
    lab.lab().delete_lease(node).unwrap();
    node_run(lab, node, &["ip", "link", "del", "tweed.1"]);
    node_run(lab, node, &["ip", "link", "del", "tweed0"]);
    // The masquerade table, if the agent left it (a failure means it did not).
    let _ = lab
        .lab()
        .exec_output(node, &["nft", "delete", "table", "inet", "tweed"]);

    let net_conf = std::fs::read_to_string(lab.lab().state.dir().join("net-conf.json")).unwrap();
    etcdctl(lab, &["put", &format!("{PREFIX}/config"), &net_conf]);

    let dir = lab.lab().node_dir(node).join("flannel");
    std::fs::create_dir_all(&dir).unwrap();
    let subnet_file = dir.join("subnet.env");
    let log = dir.join("flanneld.log");
    let argv: Vec<String> = [
        bins.flanneld.display().to_string(),
        format!("--etcd-endpoints={}", etcd_endpoint()),
        format!("--etcd-prefix={PREFIX}"),
        "--iface=eth0".into(),
        "--ip-masq".into(),
        format!("--subnet-file={}", subnet_file.display()),
    ]
    .into();
    let ns = lab.lab().state.node(node).unwrap().ns.clone();
    let pid = procs::spawn_in(&ns, &argv, &log).expect("start flanneld");
    let flanneld = Flanneld {
        pid,
        log,
        subnet_file,
    };
    let written = wait_for(30, || {
        std::fs::read_to_string(&flanneld.subnet_file).is_ok_and(|t| t.contains("FLANNEL_SUBNET="))
    });
    assert!(
        written,
        "flanneld wrote no subnet file within 30 s:\n{}",
        flanneld.log_text()
    );
    let subnet = flanneld.subnet().to_string();
    let others: Vec<String> = lab
        .lab()
        .state
        .nodes
        .iter()
        .filter(|n| n.name != node)
        .map(|n| n.name.clone())
        .collect();
    for other in others {
        assert!(
            routes_via_flannel(lab, &other, &subnet),
            "{other} has no route to flanneld's subnet {subnet} via flannel.1\n{}",
            lab.logs()
        );
        // And flanneld routes the other node's subnet.
        let theirs = lab.lab().lease_of(&other).expect("lease").replace('-', "/");
        assert!(
            routes_via_flannel(lab, node, &theirs),
            "flanneld on {node} has no route to {other}'s subnet {theirs}:\n{}",
            flanneld.log_text()
        );
    }
    flanneld
}

/// Waits up to 15 s for `node` to route `subnet` through `flannel.1`.
fn routes_via_flannel(lab: &TestLab, node: &str, subnet: &str) -> bool {
    wait_for(15, || {
        let routes = lab.ip_json(node, &["route", "show", subnet]);
        routes
            .as_array()
            .is_some_and(|r| r.iter().any(|r: &Value| r["dev"] == "flannel.1"))
    })
}
