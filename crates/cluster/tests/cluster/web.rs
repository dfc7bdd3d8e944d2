//! A Deployment spread one pod per node and a Service in front of it: the
//! everyday traffic a CNI must carry.

use tweed_cluster::Cluster;
use tweed_cluster::pods::{Pod, assert_all_pairs_talk, exec, http_from, pods, port_forward_get};

/// Serves its own name over HTTP on 8080.
const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: @REPLICAS@
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      # busybox httpd as PID 1 ignores SIGTERM: without this every
      # deleted pod would wait out the default 30 s.
      terminationGracePeriodSeconds: 1
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

/// The web Deployment with one pod per node, ready; its pods talk to each
/// other over ICMP and TCP.
pub fn deploy(c: &Cluster) -> Vec<Pod> {
    scale(c, c.nodes);
    let pods = pods(c, "app=web");
    assert_all_pairs_talk(c, &pods);
    pods
}

/// Applies the web Deployment with `replicas` pods and waits for them.
pub fn scale(c: &Cluster, replicas: usize) {
    c.apply(&WEB.replace("@REPLICAS@", &replicas.to_string()));
    c.wait_until(180, "web pods ready, spread over the nodes", || {
        let pods = pods(c, "app=web");
        let mut nodes: Vec<&str> = pods.iter().map(|p| p.node.as_str()).collect();
        nodes.sort();
        nodes.dedup();
        pods.len() == replicas
            && nodes.len() == replicas.min(c.nodes)
            && c.json(&["get", "deploy", "web"])["status"]["readyReplicas"] == replicas
    });
}

/// The Service by its DNS names (CoreDNS on pod addresses, kube-proxy on
/// every node) and the API server through the `kubernetes` Service, from
/// a pod on every node.
pub fn services_and_dns_work(c: &Cluster, pods: &[Pod]) {
    for from in pods {
        for url in ["http://web.default.svc.cluster.local/", "http://web/"] {
            let body = http_from(c, &from.name, url);
            assert!(
                body.as_ref().is_ok_and(|b| b.starts_with("web-")),
                "{url} from {} ({}): {body:?}",
                from.name,
                from.node
            );
        }
        let api = exec(
            c,
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
}

/// `kubectl logs` and `port-forward` reach a pod (exec did above).
pub fn kubectl_reaches_pods(c: &Cluster, pod: &Pod) {
    let logs = c.kubectl_ok(&["logs", &pod.name]);
    assert!(logs.contains("serving"), "kubectl logs: {logs}");
    let forwarded = port_forward_get(c, &pod.name, 18080, 8080);
    assert_eq!(forwarded.trim(), format!("web-{}", pod.name));
}
