//! tweed in a real Kubernetes cluster (scripts/cluster.sh: kube-apiserver,
//! controller-manager, scheduler, and per node containerd, kubelet and
//! kube-proxy), installed the way users install it: `kubectl apply -f
//! deploy/tweed.yaml`, the file as it is in the repository. One cluster for
//! the whole sequence (bringing one up costs a minute); each step says what
//! it shows, and a failure prints the cluster's events and its nodes' error
//! log lines.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tweed_cluster::{CP_NS, Cluster, STATE, repo_root};

const NODES: usize = 3;

/// A Deployment of the test image spread one pod per node, serving its own
/// name over HTTP on 8080, and a ClusterIP Service in front of it.
const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
        - name: web
          image: localhost/tweed-test:latest
          imagePullPolicy: Never
          command: ["/bin/sh", "-c", "echo web-$(hostname) > /www/index.html && echo serving && exec httpd -f -p 8080 -h /www"]
          ports: [{containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /, port: 8080}
            periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

struct Pod {
    name: String,
    ip: String,
    node: String,
}

fn web_pods(c: &Cluster) -> Vec<Pod> {
    let v = c.json(&["get", "pods", "-l", "app=web"]);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Pod {
            name: p["metadata"]["name"].as_str().unwrap().to_string(),
            ip: p["status"]["podIP"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            node: p["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
        .collect()
}

fn condition(node: &Value, kind: &str) -> String {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("absent")
        .to_string()
}

/// `kubectl exec POD -- ARGV`; the output, or the error text.
fn exec(c: &Cluster, pod: &str, argv: &[&str]) -> Result<String, String> {
    let mut args = vec!["exec", pod, "--"];
    args.extend_from_slice(argv);
    let out = c.kubectl(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// HTTP GET from inside a pod (busybox wget under `timeout`: Debian's
/// busybox wget crashes with its own -T).
fn http_from(c: &Cluster, pod: &str, url: &str) -> Result<String, String> {
    exec(c, pod, &["timeout", "5", "wget", "-qO-", url])
}

#[test]
fn tweed_installed_by_its_manifest_carries_pods_across_nodes() {
    let c = Cluster::up(NODES);

    // --- the manifest, unmodified --------------------------------------
    let nodes = c.json(&["get", "nodes"]);
    for n in nodes["items"].as_array().unwrap() {
        assert_eq!(
            condition(n, "Ready"),
            "False",
            "a node is Ready before any CNI"
        );
    }
    let manifest = repo_root().join("deploy/tweed.yaml");
    let applied = Instant::now();
    c.kubectl_ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.wait_until(
        240,
        "every node Ready with NetworkUnavailable=False",
        || {
            let nodes = c.json(&["get", "nodes"]);
            let items = nodes["items"].as_array().unwrap();
            items.len() == NODES
                && items.iter().all(|n| {
                    condition(n, "Ready") == "True" && condition(n, "NetworkUnavailable") == "False"
                })
        },
    );
    println!(
        "kubectl apply -f deploy/tweed.yaml -> {NODES} nodes Ready in {:.1} s",
        applied.elapsed().as_secs_f64()
    );
    c.wait_until(120, "the tweed DaemonSet ready on every node", || {
        c.json(&["-n", "kube-tweed", "get", "ds", "tweed"])["status"]["numberReady"] == NODES
    });
    c.wait_until(180, "CoreDNS running with pod addresses", || {
        let pods = c.json(&["-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns"]);
        let items = pods["items"].as_array().unwrap().clone();
        !items.is_empty()
            && items.iter().all(|p| {
                p["status"]["podIP"]
                    .as_str()
                    .is_some_and(|ip| ip.starts_with("10.244."))
                    && condition(p, "Ready") == "True"
            })
    });

    // --- pods on every node talk -----------------------------------------
    c.apply(WEB);
    c.wait_until(180, "web pods ready on every node", || {
        let pods = web_pods(&c);
        let mut nodes: Vec<&str> = pods.iter().map(|p| p.node.as_str()).collect();
        nodes.sort();
        nodes.dedup();
        pods.len() == NODES
            && nodes.len() == NODES
            && c.json(&["get", "deploy", "web"])["status"]["readyReplicas"] == NODES
    });
    let pods = web_pods(&c);
    for from in &pods {
        for to in &pods {
            let ping = exec(&c, &from.name, &["ping", "-c", "3", "-W", "2", &to.ip]);
            assert!(
                ping.as_ref().is_ok_and(|o| o.contains(" 0% packet loss")),
                "ping {} ({}) -> {} ({}): {ping:?}",
                from.name,
                from.node,
                to.name,
                to.node
            );
            let body = http_from(&c, &from.name, &format!("http://{}:8080/", to.ip));
            assert_eq!(
                body.as_deref().map(str::trim),
                Ok(format!("web-{}", to.name).as_str()),
                "HTTP {} ({}) -> {} ({})",
                from.name,
                from.node,
                to.name,
                to.node
            );
        }
        // The Service by its DNS names (CoreDNS on pod addresses, kube-proxy
        // on every node).
        for url in ["http://web.default.svc.cluster.local/", "http://web/"] {
            let body = http_from(&c, &from.name, url);
            assert!(
                body.as_ref().is_ok_and(|b| b.starts_with("web-")),
                "{url} from {} ({}): {body:?}",
                from.name,
                from.node
            );
        }
        // The API server through the `kubernetes` Service.
        let api = exec(
            &c,
            &from.name,
            &[
                "sh",
                "-c",
                "echo | timeout 5 nc 198.19.0.1 443 && echo connected",
            ],
        );
        assert!(
            api.as_ref().is_ok_and(|o| o.contains("connected")),
            "kubernetes Service from {}: {api:?}",
            from.name
        );
    }

    // --- kubectl logs, exec and port-forward reach the pods ----------------
    let first = &pods[0];
    let logs = c.kubectl_ok(&["logs", &first.name]);
    assert!(logs.contains("serving"), "kubectl logs: {logs}");
    let mut forward = Command::new(format!("{STATE}/bin/kubectl"))
        .env("KUBECONFIG", format!("{STATE}/pki/admin.kubeconfig"))
        .args(["port-forward", &format!("pod/{}", first.name), "18080:8080"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    let mut forwarded = String::new();
    c.wait_until(30, "port-forward answers", || {
        let out = Command::new("ip")
            .args([
                "netns", "exec", CP_NS, "timeout", "5", "busybox", "wget", "-qO-",
            ])
            .arg("http://127.0.0.1:18080/")
            .output()
            .expect("wget");
        forwarded = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    // `ip netns exec` execs kubectl itself: this pid is kubectl's.
    let _ = forward.kill();
    let _ = forward.wait();
    assert_eq!(forwarded.trim(), format!("web-{}", first.name));

    // --- restarting tweed on a node keeps its pods' traffic ----------------
    let (a, b) = (&pods[0], &pods[1]);
    let ping = Command::new(format!("{STATE}/bin/kubectl"))
        .env("KUBECONFIG", format!("{STATE}/pki/admin.kubeconfig"))
        .args([
            "exec", &a.name, "--", "ping", "-i", "0.2", "-c", "100", "-W", "1", &b.ip,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl exec ping");
    std::thread::sleep(Duration::from_secs(2));
    let tweed_pods = c.json(&[
        "-n",
        "kube-tweed",
        "get",
        "pods",
        "--field-selector",
        &format!("spec.nodeName={}", a.node),
    ]);
    let old = tweed_pods["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    c.kubectl_ok(&["-n", "kube-tweed", "delete", "pod", &old, "--wait=false"]);
    let out = ping.wait_with_output().expect("ping");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary = report
        .lines()
        .find(|l| l.contains("packet loss"))
        .unwrap_or_default()
        .to_string();
    println!(
        "ping {} -> {} while tweedd on {} restarted: {summary}",
        a.name, b.name, a.node
    );
    assert!(summary.contains(" 0% packet loss"), "{report}");
    c.wait_until(
        120,
        "the DaemonSet rolled a new tweed pod on the node",
        || c.json(&["-n", "kube-tweed", "get", "ds", "tweed"])["status"]["numberReady"] == NODES,
    );

    // --- deleting pods frees what they held --------------------------------
    c.kubectl_ok(&["delete", "deploy", "web", "--wait=true", "--timeout=120s"]);
    c.wait_until(60, "web pods gone", || web_pods(&c).is_empty());
    for i in 1..=NODES {
        c.wait_until(
            30,
            "no address or host veth left of the deleted pods",
            || {
                let reserved = c.on_node(i, &["ls", "/var/lib/cni/networks/tweed"]);
                let ips: Vec<String> = String::from_utf8_lossy(&reserved.stdout)
                    .lines()
                    .filter(|f| f.starts_with("10.244."))
                    .map(str::to_string)
                    .collect();
                // CoreDNS pods may live on this node: their addresses stay.
                let dns = c.json(&[
                    "-n",
                    "kube-system",
                    "get",
                    "pods",
                    "-l",
                    "k8s-app=kube-dns",
                    "--field-selector",
                    &format!("spec.nodeName={}", c.node_name(i)),
                ]);
                let keep: Vec<&str> = dns["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|p| p["status"]["podIP"].as_str())
                    .collect();
                let veths = c.on_node(i, &["ip", "-o", "link", "show", "type", "veth"]);
                let host_veths = String::from_utf8_lossy(&veths.stdout)
                    .lines()
                    .filter(|l| l.contains(": tw"))
                    .count();
                ips.iter().all(|ip| keep.contains(&ip.as_str())) && host_veths == keep.len()
            },
        );
    }
}
