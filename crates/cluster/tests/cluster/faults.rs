//! Bad input and faults in the cluster: a broken net-conf pushed through
//! the ConfigMap, an API server outage, and a cluster whose
//! controller-manager allocates no pod CIDRs.

use std::time::Duration;

use tweed_cluster::Cluster;
use tweed_cluster::pods::{Pod, assert_talk, pods};

use crate::lifecycle::no_ping_lost_while;
use crate::web;
use tweed_cluster::install;

/// A broken net-conf.json reaches the nodes when a tweed pod restarts: the
/// new pod fails naming the field, and the node keeps its working network
/// meanwhile; putting the good config back heals it.
pub fn a_broken_net_conf_names_the_field_and_keeps_the_node_working(
    c: &Cluster,
    manifest: &str,
    pods: &[Pod],
) {
    let broken = install::edit(
        manifest,
        r#""Network": "10.244.0.0/16","#,
        r#""Network": "10.244.0.0/33","#,
    );
    c.apply(&broken);
    let node = &pods[0].node;
    let old = tweed_pod_on(c, node);
    no_ping_lost_while(
        c,
        pods,
        "tweed pod restarted with a broken net-conf",
        100,
        || {
            c.kubectl_ok(&["-n", "kube-tweed", "delete", "pod", &old, "--wait=true"]);
            c.wait_until(60, "the new tweed pod fails, naming the field", || {
                let Some(new) = try_tweed_pod_on(c, node) else {
                    return false;
                };
                let logs = c.kubectl(&["-n", "kube-tweed", "logs", &new, "-c", "tweedd"]);
                let prev = c.kubectl(&[
                    "-n",
                    "kube-tweed",
                    "logs",
                    &new,
                    "-c",
                    "tweedd",
                    "--previous",
                ]);
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&prev.stdout)
                );
                text.contains("Network") && text.contains("10.244.0.0/33")
            });
        },
    );
    let new = tweed_pod_on(c, node);
    let p = c.json(&["-n", "kube-tweed", "get", "pod", &new]);
    assert_ne!(
        tweed_cluster::pods::condition(&p, "Ready"),
        "True",
        "a tweed pod with a broken net-conf is Ready"
    );
    println!(
        "broken net-conf: {}",
        c.kubectl_ok(&[
            "-n",
            "kube-tweed",
            "logs",
            &new,
            "-c",
            "tweedd",
            "--tail",
            "3"
        ])
    );
    // The good config back; the failing pod restarts into it.
    c.apply(manifest);
    c.kubectl_ok(&["-n", "kube-tweed", "delete", "pod", &new, "--wait=true"]);
    install::daemonset_ready(c);
}

/// The API server stopped for 60 s: the pods' traffic does not notice, and
/// afterwards tweed and the cluster carry on (a new pod per node talks).
pub fn an_api_server_outage_leaves_traffic_untouched(c: &Cluster, pods: &[Pod]) {
    no_ping_lost_while(c, pods, "API server stopped for 60 s", 350, || {
        c.stop_apiserver();
        std::thread::sleep(Duration::from_secs(60));
        c.start_missing();
    });
    c.wait_until(120, "the API server answers again", || {
        c.kubectl(&["get", "--raw", "/readyz"]).status.success()
    });
    install::daemonset_ready(c);
    web::scale(c, c.nodes * 2);
    let new: Vec<Pod> = pods_of(c)
        .into_iter()
        .filter(|p| pods.iter().all(|old| old.name != p.name))
        .collect();
    assert_talk(c, &new, pods);
    web::scale(c, c.nodes);
}

fn pods_of(c: &Cluster) -> Vec<Pod> {
    pods(c, "app=web")
}

fn try_tweed_pod_on(c: &Cluster, node: &str) -> Option<String> {
    let v = c.json(&[
        "-n",
        "kube-tweed",
        "get",
        "pods",
        "--field-selector",
        &format!("spec.nodeName={node}"),
    ]);
    v["items"][0]["metadata"]["name"]
        .as_str()
        .map(str::to_string)
}

pub fn tweed_pod_on(c: &Cluster, node: &str) -> String {
    try_tweed_pod_on(c, node).unwrap_or_else(|| panic!("no tweed pod on {node}"))
}

/// A cluster whose controller-manager allocates no pod CIDRs: tweed's pod
/// stays not ready, and its log and /readyz say why.
pub fn without_pod_cidrs_tweed_says_why(c: &Cluster) {
    c.apply(&install::manifest());
    let node = c.node_name(1);
    let mut pod = String::new();
    c.wait_until(
        60,
        "a tweed pod running on the node",
        || match try_tweed_pod_on(c, &node) {
            Some(p) => {
                let v = c.json(&["-n", "kube-tweed", "get", "pod", &p]);
                pod = p;
                v["status"]["phase"] == "Running"
            }
            None => false,
        },
    );
    let mut logs = String::new();
    c.wait_until(60, "tweedd's log names the missing podCIDR", || {
        logs = c.kubectl_ok(&["-n", "kube-tweed", "logs", &pod, "-c", "tweedd"]);
        logs.contains("podCIDR")
    });
    let readyz = c.on_node(1, &["curl", "-s", "http://127.0.0.1:9797/readyz"]);
    let readyz = String::from_utf8_lossy(&readyz.stdout).into_owned();
    println!("no pod CIDRs: /readyz says {readyz:?}");
    assert!(
        readyz.contains("podCIDR"),
        "/readyz: {readyz:?}\nlog:\n{logs}"
    );
    // Still not ready a while later: it does not pretend.
    std::thread::sleep(Duration::from_secs(10));
    let v = c.json(&["-n", "kube-tweed", "get", "pod", &pod]);
    assert_ne!(tweed_cluster::pods::condition(&v, "Ready"), "True");
    let n = c.json(&["get", "node", &node]);
    assert_ne!(
        tweed_cluster::pods::condition(&n, "NetworkUnavailable"),
        "False"
    );
}
