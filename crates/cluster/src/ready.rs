//! Pod create-to-Ready, as the benchmarks measure it: N pods created at
//! once (one `kubectl apply`), spread evenly over the nodes by `nodeName`
//! (the scheduler is left out: it is the same for every network and not
//! the CNI's), each timed from the moment the apply started to the moment
//! a `kubectl get -w` watch started before it reports the pod Ready: API,
//! kubelet, containerd, the sandbox, the CNI ADD and the container start.
//!
//! [`host_network_round`] times the same pods with `hostNetwork: true`: no
//! network namespace and no CNI call at all, the floor under which no
//! network's pods can start on that cluster.

use std::collections::{HashMap, HashSet};
use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pods::{Pod, condition};
use crate::{Cluster, STATE};

/// The label of the pods a round creates.
const SELECTOR: &str = "bench=ready";

fn pods_yaml(round: usize, n: usize, nodes: usize, host_network: bool) -> String {
    (0..n)
        .map(|i| {
            format!(
                "apiVersion: v1
kind: Pod
metadata: {{name: bench-{round}-{i}, labels: {{bench: ready}}}}
spec:
  nodeName: tweed-n{}
  hostNetwork: {host_network}
  terminationGracePeriodSeconds: 0
  containers: [{{name: c, image: localhost/tweed-test:latest, imagePullPolicy: Never}}]
---
",
                i % nodes + 1
            )
        })
        .collect()
}

/// Watches the round's pods; sends each pod with the moment it first
/// turns Ready.
fn watch_ready() -> (Child, mpsc::Receiver<(Pod, Instant)>) {
    let mut child = Command::new(format!("{STATE}/bin/kubectl"))
        .env("KUBECONFIG", format!("{STATE}/pki/admin.kubeconfig"))
        .args(["get", "pods", "-l", SELECTOR, "-w", "-o", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = HashSet::new();
        let stream =
            serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>();
        for pod in stream.map_while(Result::ok) {
            let at = Instant::now();
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let found = Pod {
                name: text(&pod["metadata"]["name"]),
                ip: text(&pod["status"]["podIP"]),
                node: text(&pod["spec"]["nodeName"]),
            };
            if condition(&pod, "Ready") == "True"
                && seen.insert(found.name.clone())
                && tx.send((found, at)).is_err()
            {
                return;
            }
        }
    });
    (child, rx)
}

/// One round: `n` pods (named `bench-<round>-<i>`) created at once over
/// the cluster's nodes; `check` sees each pod once Ready (to assert which
/// network made it). Returns the pods' create-to-Ready times in ms, after
/// deleting the pods.
pub fn round(c: &Cluster, round: usize, n: usize, check: impl FnMut(&Pod)) -> Vec<f64> {
    timed_round(c, round, n, false, check)
}

/// The same round with `hostNetwork: true` pods: kubelet, containerd, the
/// sandbox and the container, without a network namespace or a CNI call.
pub fn host_network_round(c: &Cluster, round: usize, n: usize) -> Vec<f64> {
    timed_round(c, round, n, true, |_| {})
}

fn timed_round(
    c: &Cluster,
    round: usize,
    n: usize,
    host_network: bool,
    mut check: impl FnMut(&Pod),
) -> Vec<f64> {
    let (mut watch, ready) = watch_ready();
    // The watch lists first; pods created before it lists would be
    // reported late.
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    c.apply(&pods_yaml(round, n, c.nodes, host_network));
    let mut times = HashMap::new();
    let deadline = started + Duration::from_secs(300);
    while times.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((pod, at)) = ready.recv_timeout(left) else {
            panic!(
                "only {} of {n} pods Ready after 300 s\n{}",
                times.len(),
                c.explain()
            );
        };
        check(&pod);
        times.insert(pod.name, at.duration_since(started).as_secs_f64() * 1000.0);
    }
    let _ = watch.kill();
    let _ = watch.wait();
    c.kubectl_ok(&[
        "delete",
        "pods",
        "-l",
        SELECTOR,
        "--wait=true",
        "--timeout=300s",
    ]);
    times.into_values().collect()
}
