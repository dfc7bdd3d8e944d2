//! One iperf3 TCP stream between two ends of the cluster (a pod's network
//! namespace entered from its node, or a node itself), as the benchmarks
//! run it: the host's iperf3 on both ends, so only the path differs.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::Cluster;

/// Where one side of a path runs: a node, and a namespace name under its
/// /run/netns (None: the node's own network).
pub struct End {
    pub node: usize,
    pub netns: Option<String>,
}

impl End {
    fn argv<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut v = match &self.netns {
            Some(ns) => vec!["ip", "netns", "exec", ns.as_str()],
            None => vec![],
        };
        v.extend_from_slice(rest);
        v
    }
}

/// One iperf3 run from `client` to `server` (listening on `ip`); Gbit/s.
pub fn iperf(c: &Cluster, client: &End, server: &End, ip: &str, secs: usize) -> f64 {
    let mut srv = c
        .node_command(server.node, &server.argv(&["iperf3", "-s", "-1", "-B", ip]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(500));
    let t = secs.to_string();
    let out = c.on_node(
        client.node,
        &client.argv(&["iperf3", "-c", ip, "-t", &t, "-O", "1", "-J"]),
    );
    let _ = srv.wait();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 to {ip}: {e}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3 to {ip}: no result: {v}"))
        / 1e9
}
