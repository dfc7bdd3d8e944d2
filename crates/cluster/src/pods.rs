//! Looking at pods and talking from inside them: their addresses and
//! nodes, `kubectl exec`, HTTP with busybox, and a ping that runs while a
//! test changes something and then says how many packets were lost.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::{CP_NS, Cluster, STATE};

/// A pod as the tests need it.
#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub ip: String,
    pub node: String,
}

impl Pod {
    fn from_json(p: &Value) -> Pod {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Pod {
            name: text(&p["metadata"]["name"]),
            ip: text(&p["status"]["podIP"]),
            node: text(&p["spec"]["nodeName"]),
        }
    }
}

/// The pods of the default namespace that match `selector`.
pub fn pods(c: &Cluster, selector: &str) -> Vec<Pod> {
    let v = c.json(&["get", "pods", "-l", selector]);
    v["items"]
        .as_array()
        .expect("a pod list")
        .iter()
        .map(Pod::from_json)
        .collect()
}

/// A pod of the default namespace that only sleeps, on node `node`, with
/// `labels` (YAML flow-map entries, `app: probe`), once it is Ready: a
/// client to talk from.
pub fn sleeper(c: &Cluster, name: &str, node: &str, labels: &str) -> Pod {
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default, labels: {{{labels}}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
    - name: sleeper
      image: localhost/tweed-test:latest
      imagePullPolicy: Never
      command: ["/bin/sleep", "2147483647"]
"#
    ));
    c.wait_until(120, &format!("{name} on {node} ready"), || {
        condition(&c.json(&["get", "pod", name]), "Ready") == "True"
    });
    pod(c, name)
}

/// One pod of the default namespace by name.
pub fn pod(c: &Cluster, name: &str) -> Pod {
    Pod::from_json(&c.json(&["get", "pod", name]))
}

/// The status (`True`, `False`) of condition `kind` of a node or pod, or
/// `absent`.
pub fn condition(obj: &Value, kind: &str) -> String {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("absent")
        .to_string()
}

/// `kubectl exec POD -- ARGV`; the output, or the error text.
pub fn exec(c: &Cluster, pod: &str, argv: &[&str]) -> Result<String, String> {
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
pub fn http_from(c: &Cluster, pod: &str, url: &str) -> Result<String, String> {
    exec(c, pod, &["timeout", "5", "wget", "-qO-", url])
}

/// `kubectl port-forward pod/POD LOCAL:REMOTE` from the control plane's
/// namespace, and what `GET /` through it answers (waiting up to 30 s for
/// the forward to work); the forward is stopped afterwards.
pub fn port_forward_get(c: &Cluster, pod: &str, local: u16, remote: u16) -> String {
    let mut forward = Command::new(format!("{STATE}/bin/kubectl"))
        .env("KUBECONFIG", format!("{STATE}/pki/admin.kubeconfig"))
        .args([
            "port-forward",
            &format!("pod/{pod}"),
            &format!("{local}:{remote}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    let mut body = String::new();
    c.wait_until(
        30,
        &format!("port-forward to {pod}:{remote} answers"),
        || {
            let out = Command::new("ip")
                .args([
                    "netns", "exec", CP_NS, "timeout", "5", "busybox", "wget", "-qO-",
                ])
                .arg(format!("http://127.0.0.1:{local}/"))
                .output()
                .expect("wget");
            body = String::from_utf8_lossy(&out.stdout).into_owned();
            out.status.success()
        },
    );
    // `ip netns exec` execs kubectl itself: this pid is kubectl's.
    let _ = forward.kill();
    let _ = forward.wait();
    body
}

/// Whether `count` pings from `pod` to `to` all came back.
pub fn ping_ok(c: &Cluster, pod: &str, to: &str, count: u32) -> Result<String, String> {
    let out = exec(c, pod, &["ping", "-c", &count.to_string(), "-W", "2", to])?;
    if out.contains(" 0% packet loss") {
        Ok(out)
    } else {
        Err(out)
    }
}

/// Every pod reaches every other over ICMP and TCP (HTTP on 8080, the
/// test image's `httpd` answering with `web-<pod name>`).
pub fn assert_all_pairs_talk(c: &Cluster, pods: &[Pod]) {
    assert_talk(c, pods, pods);
}

/// Every pod of `from` reaches every pod of `to`, as above.
pub fn assert_talk(c: &Cluster, from: &[Pod], to: &[Pod]) {
    let (sources, targets) = (from, to);
    for from in sources {
        for to in targets {
            let ping = ping_ok(c, &from.name, &to.ip, 3);
            assert!(
                ping.is_ok(),
                "ping {} ({}) -> {} ({}): {ping:?}",
                from.name,
                from.node,
                to.name,
                to.node
            );
            let body = http_from(c, &from.name, &format!("http://{}:8080/", to.ip));
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
    }
}

/// The name under the node's /run/netns of the network namespace holding
/// `pod`'s address (containerd's `cni-...`).
pub fn pod_netns(c: &Cluster, pod: &Pod) -> String {
    let i = c.node_index(&pod.node);
    let script = format!(
        "for n in $(ls /run/netns); do ip -n \"$n\" -4 -o addr show | grep -q ' {}/' && echo \"$n\"; done",
        pod.ip
    );
    let out = c.on_node(i, &["sh", "-c", &script]);
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !found.is_empty() && !found.contains('\n'),
        "the network namespace of {} ({}) on {}: {found:?}",
        pod.name,
        pod.ip,
        pod.node
    );
    found
}

/// A ping from a pod (every 0.2 s) while the test does something. It runs
/// in the pod's network namespace entered from its node, not through
/// `kubectl exec`, so it needs neither the API server nor kubelet: it
/// sees only what the data path does.
pub struct PingRun {
    child: Child,
    what: String,
}

impl PingRun {
    /// `count` pings, then it ends by itself ([`PingRun::finish`]).
    pub fn start(c: &Cluster, pod: &Pod, to: &Pod, count: u32) -> PingRun {
        Self::spawn(c, pod, to, &["-c", &count.to_string()])
    }

    /// Pings until [`PingRun::stop`].
    pub fn start_open(c: &Cluster, pod: &Pod, to: &Pod) -> PingRun {
        Self::spawn(c, pod, to, &[])
    }

    fn spawn(c: &Cluster, pod: &Pod, to: &Pod, extra: &[&str]) -> PingRun {
        let netns = pod_netns(c, pod);
        let mut argv = vec![
            "ip", "netns", "exec", &netns, "ping", "-i", "0.2", "-W", "1",
        ];
        argv.extend_from_slice(extra);
        argv.push(&to.ip);
        let child = c
            .node_command(c.node_index(&pod.node), &argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own, so `stop` reaches ping itself (nsenter
            // forks it into the node's PID namespace).
            .process_group(0)
            .spawn()
            .expect("ping in the pod's namespace");
        PingRun {
            child,
            what: format!("{} ({}) -> {} ({})", pod.name, pod.node, to.name, to.node),
        }
    }

    /// Interrupts ping (SIGINT: it prints its summary) and finishes.
    pub fn stop(self) -> (u32, u32, String) {
        let group = self.child.id() as i32;
        // SAFETY: kill(2) on the process group this run's child leads; the
        // child is not reaped yet, so the group id is still ours.
        unsafe { libc::kill(-group, libc::SIGINT) };
        self.finish()
    }

    /// Waits for the last ping; (sent, received) and ping's own report.
    pub fn finish(self) -> (u32, u32, String) {
        let out = self.child.wait_with_output().expect("ping");
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        let summary = report
            .lines()
            .find(|l| l.contains("packet loss"))
            .unwrap_or_default();
        // "100 packets transmitted, 99 packets received, 1% packet loss"
        let number_of = |word: &str| -> u32 {
            summary
                .split(',')
                .find(|part| part.contains(word))
                .and_then(|part| part.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let (sent, received) = (number_of("transmitted"), number_of("received"));
        (
            sent,
            received,
            format!(
                "ping {}: {summary}\n{report}{}",
                self.what,
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}
