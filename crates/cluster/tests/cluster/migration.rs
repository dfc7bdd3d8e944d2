//! A running flannel cluster becomes a tweed cluster node by node, under
//! traffic, the way docs/migration.md tells operators to do it:
//!
//! 1. every node labelled `tweed.io/network=flannel`, and flannel's
//!    DaemonSet given a node affinity for that label;
//! 2. `kubectl apply -f deploy/tweed.yaml -f deploy/flannel-compat.yaml`
//!    (tweed's DaemonSet stays off nodes labelled flannel);
//! 3. per node, the label set to `tweed`: flannel's pod leaves, tweed's
//!    arrives, adopts flannel.1 and takes over flannel's CNI network;
//! 4. the way back for one node (label `flannel` again), and forward;
//! 5. flannel's manifest deleted, deploy/flannel-cleanup.yaml run, the
//!    labels removed.
//!
//! Throughout: pings between pods across every pair of nodes (losses
//! counted per switch and printed), one TCP connection that must survive
//! it all, and on every node a sampler that counts, every 0.1 s or so,
//! the devices holding the node's gateway address. After each switch:
//! running pods keep their addresses, a new pod on the node gets the
//! plugin of the network the node now runs (tweed's host veths are `tw…`
//! with a `tweed/cbr0/…` alias, flannel's bridge plugin's are `veth…`),
//! and no address is held by two pods.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;
use tweed_cluster::pods::{PingRun, Pod, assert_all_pairs_talk, pods};
use tweed_cluster::side_by_side::{self, LABEL, Network};
use tweed_cluster::stream::TcpStream;
use tweed_cluster::{Cluster, flannel, install};

use crate::web;

/// The whole migration of a cluster running flannel with the web pods
/// `pods` (one per node), to tweed installed from `tweed_manifest`
/// (deploy/tweed.yaml, possibly edited for its store).
pub fn flannel_to_tweed_under_traffic(c: &Cluster, pods: &[Pod], tweed_manifest: &str) {
    // Step 1: every node is flannel's; flannel's DaemonSet keeps to them.
    side_by_side::keep_flannel_to_its_nodes(c);
    assert_all_pairs_talk(c, pods);

    // Step 2: tweed installed, running nowhere yet.
    side_by_side::install_tweed_beside(c, tweed_manifest);

    let samplers: Vec<GatewaySampler> =
        (1..=c.nodes).map(|i| GatewaySampler::start(c, i)).collect();
    let stream = TcpStream::start(c, &pods[0], &pods[1]);
    let mut probes = Vec::new();

    // Step 3: node by node.
    for i in 1..=c.nodes {
        switch(c, pods, i, Network::Tweed, &mut probes);
    }
    // Step 4: the way back for the last node, and forward again.
    switch(c, pods, c.nodes, Network::Flannel, &mut probes);
    switch(c, pods, c.nodes, Network::Tweed, &mut probes);

    let what = stream.what().to_string();
    let report = stream.finish();
    println!(
        "{what}: open throughout, {} lines in order, longest pause {:.1} s",
        report.lines,
        report.longest_pause.as_secs_f64()
    );
    for s in samplers {
        s.finish();
    }

    // Step 5: flannel goes, its leftovers with it.
    remove_flannel(c);
    for i in 1..=c.nodes {
        nothing_of_flannel_left(c, i);
    }
    assert_all_pairs_talk(c, pods);
    web::services_and_dns_work(c, pods);
    deleted_pods_leave_nothing(c, &probes);
}

/// Moves node `i` to `to` while every pod pings every pod on another
/// node, and checks what the switch must keep.
fn switch(c: &Cluster, pods: &[Pod], i: usize, to: Network, probes: &mut Vec<Pod>) {
    let node = c.node_name(i);
    let before = addresses(c);
    let pings: Vec<PingRun> = pods
        .iter()
        .flat_map(|a| pods.iter().map(move |b| (a, b)))
        .filter(|(a, b)| a.node != b.node)
        .map(|(a, b)| PingRun::start_open(c, a, b))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let took = side_by_side::switch_node(c, i, to);
    std::thread::sleep(Duration::from_secs(5));
    let (mut sent, mut lost, mut reports) = (0, 0, Vec::new());
    for ping in pings {
        let (s, r, report) = ping.stop();
        assert!(s > 0, "no ping went out: {report}");
        sent += s;
        lost += s - r;
        if s != r {
            reports.push(report);
        }
    }
    println!(
        "{node} -> {}: switched in {:.1} s; {lost} of {sent} pings lost (all pairs of nodes)",
        to.label(),
        took.as_secs_f64()
    );
    assert!(
        lost == 0,
        "{node} -> {}: {lost} pings lost:\n{}",
        to.label(),
        reports.join("\n")
    );
    // Running pods keep their addresses.
    let after = addresses(c);
    for (pod, ip) in &before {
        assert_eq!(after.get(pod), Some(ip), "{pod} changed address");
    }
    // A new pod here gets the network the node runs now, and reaches
    // every node's pods.
    let probe = start_probe(c, &node, probes.len());
    let veth = side_by_side::host_veth_of(c, &probe);
    match to {
        Network::Tweed => assert!(
            veth.0.starts_with("tw") && veth.1.starts_with("tweed/cbr0/"),
            "{} on {node} was not made by tweed's plugin: host veth {veth:?}",
            probe.name
        ),
        Network::Flannel => assert!(
            veth.0.starts_with("veth") && !veth.1.starts_with("tweed"),
            "{} on {node} was not made by flannel's plugin: host veth {veth:?}",
            probe.name
        ),
    }
    tweed_cluster::pods::assert_talk(c, std::slice::from_ref(&probe), pods);
    probes.push(probe);
    // No address is held twice.
    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (pod, ip) in addresses(c) {
        holders.entry(ip).or_default().push(pod);
    }
    for (ip, pods) in holders {
        assert_eq!(pods.len(), 1, "{ip} is held by {pods:?}");
    }
}

/// Every pod's address (pods on the host's network aside), by
/// `namespace/name`.
fn addresses(c: &Cluster) -> BTreeMap<String, String> {
    placed(c)
        .into_iter()
        .map(|(name, (ip, _))| (name, ip))
        .collect()
}

/// Every pod's address and node (pods on the host's network aside), by
/// `namespace/name`.
fn placed(c: &Cluster) -> BTreeMap<String, (String, String)> {
    let all = c.json(&["get", "pods", "-A"]);
    all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["spec"]["hostNetwork"] != true)
        .filter_map(|p| {
            let text = |v: &Value| v.as_str().map(String::from);
            let name = format!(
                "{}/{}",
                text(&p["metadata"]["namespace"])?,
                text(&p["metadata"]["name"])?
            );
            Some((
                name,
                (text(&p["status"]["podIP"])?, text(&p["spec"]["nodeName"])?),
            ))
        })
        .collect()
}

/// A pod pinned to `node`, running and with an address.
fn start_probe(c: &Cluster, node: &str, n: usize) -> Pod {
    tweed_cluster::pods::sleeper(c, &format!("probe-{n}"), node, "app: probe")
}

/// Ten times a second, how many addresses equal node `i`'s gateway (the
/// first address of its pod subnet, from the subnet.env the network
/// writes): it must be exactly one, on one device, all along.
struct GatewaySampler {
    child: Child,
    node: String,
    gateway: String,
}

impl GatewaySampler {
    fn start(c: &Cluster, i: usize) -> GatewaySampler {
        let env = c.on_node(i, &["cat", "/run/flannel/subnet.env"]);
        let env = String::from_utf8_lossy(&env.stdout).into_owned();
        let gateway = env
            .lines()
            .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
            .and_then(|s| s.split('/').next())
            .unwrap_or_else(|| panic!("node {i}: no FLANNEL_SUBNET in {env:?}"))
            .to_string();
        let script = format!(
            "while :; do ip -4 -o addr show | grep -F ' inet {gateway}/' | wc -l; sleep 0.1; done"
        );
        let child = c
            .node_command(i, &["sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("the gateway sampler");
        GatewaySampler {
            child,
            node: c.node_name(i),
            gateway,
        }
    }

    fn finish(self) {
        // SAFETY: kill(2) on the group our unreaped child leads.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
        let out = self.child.wait_with_output().expect("the sampler");
        let samples: Vec<u32> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let wrong = samples.iter().filter(|&&n| n != 1).count();
        println!(
            "{}: gateway {} held once in all of {} samples",
            self.node,
            self.gateway,
            samples.len()
        );
        assert!(samples.len() > 100, "{}: too few samples", self.node);
        assert_eq!(
            wrong,
            0,
            "{}: gateway {} not held exactly once in {wrong} of {} samples",
            self.node,
            self.gateway,
            samples.len()
        );
    }
}

/// flannel's manifest deleted, deploy/flannel-cleanup.yaml run on every
/// node and deleted, the migration labels removed.
fn remove_flannel(c: &Cluster) {
    let manifest = tempfile_with(&flannel::manifest());
    c.kubectl_ok(&["delete", "-f", &manifest, "--wait=true", "--timeout=120s"]);
    c.wait_until(120, "flannel's namespace gone", || {
        !c.kubectl(&["get", "namespace", "kube-flannel"])
            .status
            .success()
    });
    let cleanup = install::deploy_file("flannel-cleanup.yaml");
    c.apply(&cleanup);
    c.wait_until(120, "flannel-cleanup done on every node", || {
        let logs = c.kubectl(&[
            "-n",
            "kube-tweed",
            "logs",
            "-l",
            "app=flannel-cleanup",
            "--prefix",
        ]);
        let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
        logs.matches("done; waiting for SIGTERM").count() == c.nodes
    });
    let logs = c.kubectl_ok(&[
        "-n",
        "kube-tweed",
        "logs",
        "-l",
        "app=flannel-cleanup",
        "--prefix",
    ]);
    println!("flannel-cleanup:\n{logs}");
    let cleanup_file = tempfile_with(&cleanup);
    c.kubectl_ok(&[
        "delete",
        "-f",
        &cleanup_file,
        "--wait=true",
        "--timeout=60s",
    ]);
    c.kubectl_ok(&["label", "nodes", "--all", &format!("{LABEL}-")]);
    // tweed stays where it is: no label is as good as `tweed`.
    std::thread::sleep(Duration::from_secs(3));
    tweed_cluster::install::daemonset_ready(c);
}

/// Writes `text` to a file kubectl can read, and returns its path.
fn tempfile_with(text: &str) -> String {
    let path = std::env::temp_dir().join(format!(
        "tweed-migration-{}-{}.yaml",
        std::process::id(),
        text.len()
    ));
    std::fs::write(&path, text).expect("write a manifest file");
    path.display().to_string()
}

/// Nothing of flannel's is left on node `i`: no rules, no files, and on
/// flannel.1 (tweed's device now) only tweed's routes and exactly one FDB
/// and one neighbour entry per other node, with that node's VTEP MAC.
fn nothing_of_flannel_left(c: &Cluster, i: usize) {
    let node = c.node_name(i);
    let out = |argv: &[&str]| String::from_utf8_lossy(&c.on_node(i, argv).stdout).into_owned();
    let rules = out(&["nft", "list", "ruleset"]);
    assert!(
        !rules.to_lowercase().contains("flannel"),
        "{node}: flannel's rules are left:\n{rules}"
    );
    let flannel_configs = out(&["sh", "-c", "grep -l '\"flannel\"' /etc/cni/net.d/* || true"]);
    assert_eq!(
        flannel_configs.trim(),
        "",
        "{node}: flannel's CNI configs are left"
    );
    for path in [
        "/opt/cni/bin/flannel",
        "/run/flannel/subnet.env",
        "/var/lib/cni/flannel",
    ] {
        assert!(
            !c.on_node(i, &["test", "-e", path]).status.success(),
            "{node}: {path} is left"
        );
    }
    let routes: Value =
        serde_json::from_str(&out(&["ip", "-j", "route", "show", "dev", "flannel.1"]))
            .expect("ip -j route");
    let routes = routes.as_array().unwrap();
    assert_eq!(
        routes.len(),
        c.nodes - 1,
        "{node}: routes on flannel.1: {routes:?}"
    );
    for r in routes {
        assert_eq!(
            r["protocol"], "77",
            "{node}: a route that is not tweed's: {r}"
        );
    }
    let macs: Vec<(String, String)> = (1..=c.nodes)
        .filter(|&j| j != i)
        .map(|j| {
            let link: Value = serde_json::from_slice(
                &c.on_node(j, &["ip", "-j", "link", "show", "flannel.1"])
                    .stdout,
            )
            .expect("ip -j link");
            (
                format!("198.18.1.{}", 10 + j),
                link[0]["address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let fdb: Value =
        serde_json::from_str(&out(&["bridge", "-j", "fdb", "show", "dev", "flannel.1"]))
            .expect("bridge -j fdb");
    let mut fdb: Vec<(String, String)> = fdb
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let t = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (t("dst"), t("mac"))
        })
        .collect();
    fdb.sort();
    let mut want = macs.clone();
    want.sort();
    assert_eq!(fdb, want, "{node}: FDB on flannel.1");
    let neigh: Value =
        serde_json::from_str(&out(&["ip", "-j", "neigh", "show", "dev", "flannel.1"]))
            .expect("ip -j neigh");
    let mut lladdrs: Vec<String> = neigh
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["lladdr"].as_str().unwrap_or_default().to_string())
        .collect();
    lladdrs.sort();
    let mut want: Vec<String> = macs.into_iter().map(|(_, m)| m).collect();
    want.sort();
    assert_eq!(lladdrs, want, "{node}: neighbours on flannel.1");
}

/// The probe pods deleted, and the web pods (flannel made them; tweed's
/// plugin deletes them now): each node's bridge keeps one port per pod
/// still there, and host-local's directory one address per pod.
fn deleted_pods_leave_nothing(c: &Cluster, probes: &[Pod]) {
    for p in probes {
        c.kubectl_ok(&["delete", "pod", &p.name, "--wait=false"]);
    }
    c.kubectl_ok(&["delete", "deploy", "web", "--wait=true", "--timeout=120s"]);
    c.wait_until(120, "probe and web pods gone", || {
        pods(c, "app in (web, probe)").is_empty()
    });
    for i in 1..=c.nodes {
        let node = c.node_name(i);
        c.wait_until(
            60,
            &format!("{node}: one port and one address per pod"),
            || {
                let running: Vec<String> = placed(c)
                    .into_values()
                    .filter(|(_, on)| *on == node)
                    .map(|(ip, _)| ip)
                    .collect();
                let ports = c.on_node(i, &["ip", "-o", "link", "show", "master", "cni0"]);
                let ports = String::from_utf8_lossy(&ports.stdout).lines().count();
                let reserved = c.on_node(i, &["ls", "/var/lib/cni/networks/cbr0"]);
                let mut reserved: Vec<String> = String::from_utf8_lossy(&reserved.stdout)
                    .lines()
                    .filter(|f| f.starts_with("10.244."))
                    .map(String::from)
                    .collect();
                reserved.sort();
                let mut want = running.clone();
                want.sort();
                ports == running.len() && reserved == want
            },
        );
    }
    web::scale(c, c.nodes);
    assert_all_pairs_talk(c, &pods(c, "app=web"));
}
