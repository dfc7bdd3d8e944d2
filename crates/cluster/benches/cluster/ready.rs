//! Pod create-to-Ready, tweed against the reference plugins on the same
//! cluster in the same run.
//!
//! A round creates N pods at once (one `kubectl apply`), spread evenly
//! over the nodes by `nodeName` (the scheduler is left out: it is the same
//! for both and not the CNI's), and takes for each pod the moment a
//! `kubectl get -w` watch started before the apply reports it Ready.
//! Create-to-Ready is that moment minus the moment the apply started: API,
//! kubelet, containerd, the sandbox, the CNI ADD and the container start.
//! Then the pods are deleted and the next round uses the other plugin;
//! which goes first alternates.
//!
//! The reference is Debian's `bridge` + `host-local` (+ `portmap`, as
//! tweed's conflist chains it), written by hand to
//! /etc/cni/net.d/05-ref.conflist on every node, which sorts before tweed's
//! 10-tweed.conflist, so containerd takes it; removing it gives the nodes
//! back to tweed. Its pods get node-local addresses (10.244.10<i>.0/24 on
//! node i, a bridge `refbr0`): they only need to become Ready.

use std::collections::HashMap;
use std::io::BufReader;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tweed_cluster::pods::condition;
use tweed_cluster::{Cluster, STATE};
use tweed_testkit::stats::{max, min, percentile};

#[derive(Clone, Copy, PartialEq)]
enum Plugin {
    Tweed,
    Reference,
}

impl Plugin {
    fn name(self) -> &'static str {
        match self {
            Plugin::Tweed => "tweed",
            Plugin::Reference => "bridge + host-local",
        }
    }
}

const REF_CONFLIST: &str = "/etc/cni/net.d/05-ref.conflist";

fn ref_conflist(i: usize) -> String {
    format!(
        r#"{{"cniVersion": "1.0.0", "name": "ref", "plugins": [
  {{"type": "bridge", "bridge": "refbr0", "isGateway": true, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "10.244.{}.0/24"}}]]}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
]}}"#,
        100 + i
    )
}

/// Points every node's runtime at `plugin`.
fn install(c: &Cluster, plugin: Plugin) {
    for i in 1..=c.nodes {
        let script = match plugin {
            Plugin::Reference => format!(
                "printf '%s' \"$1\" > {REF_CONFLIST}.tmp && mv {REF_CONFLIST}.tmp {REF_CONFLIST}"
            ),
            Plugin::Tweed => format!("rm -f {REF_CONFLIST}"),
        };
        let out = c.on_node(i, &["sh", "-c", &script, "sh", &ref_conflist(i)]);
        assert!(out.status.success(), "node {i}: {out:?}");
    }
    // containerd reloads its CNI config on a change of the directory.
    std::thread::sleep(Duration::from_secs(3));
}

fn pods_yaml(round: usize, n: usize, nodes: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "apiVersion: v1
kind: Pod
metadata: {{name: bench-{round}-{i}, labels: {{bench: ready}}}}
spec:
  nodeName: tweed-n{}
  terminationGracePeriodSeconds: 0
  containers: [{{name: c, image: localhost/tweed-test:latest, imagePullPolicy: Never}}]
---
",
                i % nodes + 1
            )
        })
        .collect()
}

/// Watches pods labelled bench=ready; sends (name, pod IP) with the moment
/// each first turns Ready.
fn watch_ready() -> (
    std::process::Child,
    mpsc::Receiver<(String, String, Instant)>,
) {
    let mut child = Command::new(format!("{STATE}/bin/kubectl"))
        .env("KUBECONFIG", format!("{STATE}/pki/admin.kubeconfig"))
        .args(["get", "pods", "-l", "bench=ready", "-w", "-o", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = std::collections::HashSet::new();
        let stream =
            serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>();
        for pod in stream.map_while(Result::ok) {
            let at = Instant::now();
            let name = pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if condition(&pod, "Ready") == "True" && seen.insert(name.clone()) {
                let ip = pod["status"]["podIP"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if tx.send((name, ip, at)).is_err() {
                    return;
                }
            }
        }
    });
    (child, rx)
}

/// One round: N pods created at once; their create-to-Ready times in ms.
fn round(c: &Cluster, plugin: Plugin, round: usize, n: usize) -> Vec<f64> {
    let (mut watch, ready) = watch_ready();
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    c.apply(&pods_yaml(round, n, c.nodes));
    let mut times = HashMap::new();
    let deadline = started + Duration::from_secs(300);
    while times.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((name, ip, at)) = ready.recv_timeout(left) else {
            panic!(
                "{}: only {} of {n} pods Ready after 300 s\n{}",
                plugin.name(),
                times.len(),
                c.explain()
            );
        };
        let from_tweed = !ip.starts_with("10.244.10");
        assert_eq!(
            from_tweed,
            plugin == Plugin::Tweed,
            "{name} got {ip}: not from {}",
            plugin.name()
        );
        times.insert(name, at.duration_since(started).as_secs_f64() * 1000.0);
    }
    let _ = watch.kill();
    let _ = watch.wait();
    c.kubectl_ok(&[
        "delete",
        "pods",
        "-l",
        "bench=ready",
        "--wait=true",
        "--timeout=300s",
    ]);
    times.into_values().collect()
}

pub fn compare(c: &Cluster, rounds: usize, n: usize) {
    let mut samples: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut r = 0;
    for k in 0..rounds {
        let order = if k % 2 == 0 {
            [Plugin::Tweed, Plugin::Reference]
        } else {
            [Plugin::Reference, Plugin::Tweed]
        };
        for plugin in order {
            install(c, plugin);
            let t = round(c, plugin, r, n);
            r += 1;
            println!(
                "round {r}: {:<20} {n} pods, create-to-Ready p50 {:.0} ms, max {:.0} ms",
                plugin.name(),
                percentile(&t, 50.0),
                max(&t)
            );
            samples.entry(plugin.name()).or_default().extend(t);
        }
    }
    install(c, Plugin::Tweed);
    println!(
        "\npod create-to-Ready, {n} pods at once over {} nodes, {rounds} rounds each, interleaved (ms)",
        c.nodes
    );
    println!("| plugin | pods | p50 | p99 | min | max |\n|---|---|---|---|---|---|");
    for p in [Plugin::Tweed, Plugin::Reference] {
        let t = &samples[p.name()];
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            p.name(),
            t.len(),
            percentile(t, 50.0),
            percentile(t, 99.0),
            min(t),
            max(t)
        );
    }
    let (t, rf) = (&samples["tweed"], &samples["bridge + host-local"]);
    println!(
        "tweed / reference: p50 {:.2}, p99 {:.2}\n",
        percentile(t, 50.0) / percentile(rf, 50.0),
        percentile(t, 99.0) / percentile(rf, 99.0)
    );
}
