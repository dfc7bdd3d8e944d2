//! tweed's NetworkPolicy rules on a node: what the kernel holds (`nft -j
//! list table inet tweed-policy` in the node's namespace) and what it
//! should hold for the objects now in the API (listed back from the API
//! server and compiled with tweedd's own compiler, so the bench knows
//! when tweedd is done without reading its log).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::Value;
use tweed_policy::{Cluster, compile, render};
use tweed_testkit::bridged_pods::in_ns;

/// `nft <args>` in the node's namespace.
fn nft(node_ns: &str, args: &[&str]) -> Output {
    in_ns(node_ns, || Command::new("nft").args(args).output()).expect("run nft")
}

/// Removes the node's table (a restarted tweedd's first apply then shows
/// as the table appearing).
pub fn remove_table(node_ns: &str) {
    let out = nft(node_ns, &["delete", "table", "inet", render::TABLE]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nft delete table in {node_ns}: {err}");
}

/// The node's table as nft's JSON objects (empty: no table).
pub fn listing(node_ns: &str) -> Vec<Value> {
    let out = nft(node_ns, &["-j", "list", "table", "inet", render::TABLE]);
    if !out.status.success() {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("nft's JSON");
    v["nftables"].as_array().cloned().unwrap_or_default()
}

/// How many rules the node's table has (its chains' rules, all of them).
pub fn in_kernel(node_ns: &str) -> usize {
    listing(node_ns)
        .iter()
        .filter(|o| o.get("rule").is_some())
        .count()
}

/// The rules of chain-comment `comment` (as tweed writes it: `<ns>/<pod>
/// ingress`), in the order the kernel evaluates them.
pub fn chain_rules(node_ns: &str, comment: &str) -> Vec<Value> {
    listing(node_ns)
        .into_iter()
        .filter_map(|mut o| o.get_mut("rule").map(Value::take))
        .filter(|r| r["comment"] == comment)
        .collect()
}

/// How many rules tweedd on `node` should have in the kernel for what the
/// API holds now.
pub async fn expected(client: &Client, node: &str) -> usize {
    let lp = ListParams::default();
    let pods = Api::<Pod>::all(client.clone())
        .list(&lp)
        .await
        .expect("list pods");
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&lp)
        .await
        .expect("list namespaces");
    let policies = Api::<NetworkPolicy>::all(client.clone())
        .list(&lp)
        .await
        .expect("list policies");
    let cluster = Cluster::from_objects(pods.items.iter(), namespaces.items.iter());
    let wanted = compile(&policies.items, &cluster, |p| {
        p.node.as_deref() == Some(node)
    });
    let batch = serde_json::to_value(render::ruleset(&wanted)).expect("the ruleset as JSON");
    batch["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|cmd| cmd["add"].get("rule").is_some())
        .count()
}

/// Waits until the node's table holds exactly `want` rules and returns
/// when it first did; panics (with `log`, tweedd's) after `within`.
pub fn wait_for(node_ns: &str, want: usize, within: Duration, log: &std::path::Path) -> Instant {
    let started = Instant::now();
    loop {
        let have = in_kernel(node_ns);
        if have == want {
            return Instant::now();
        }
        if started.elapsed() > within {
            panic!(
                "{node_ns}: {have} rules in the kernel, not {want}, after {within:?}\n--- tweedd.log (tail) ---\n{}",
                tail(log)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last 4,000 bytes of a log, for a failure's message.
pub fn tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let cut = text.len().saturating_sub(4000);
    let cut = (cut..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(cut);
    text[cut..].to_string()
}
