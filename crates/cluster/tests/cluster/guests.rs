//! urunc guests on tweed's pod network (docs/urunc.md): a pod with
//! RuntimeClass `urunc` boots tweed's test guest (Debian's kernel and the
//! guest's init) in QEMU, as urunc boots any `linux` guest, unchanged. One
//! guest has a sidecar and asks for tweed's localhost hook, one on another
//! node asks for nothing.

use tweed_cluster::Cluster;
use tweed_cluster::pods::{Pod, condition, exec, http_from, pod, port_forward_get};

const GUEST: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: urunc-guest
  namespace: default
  # tweed's hook on urunc's tap (docs/urunc.md): the pod's 127.0.0.1:80 is
  # the guest's port 80; the guest's 169.254.77.1:8081 is the sidecar.
  annotations:
    tweed.io/guest-localhost-ports: "80"
    tweed.io/guest-pod-services: "8081"
spec:
  runtimeClassName: urunc
  # urunc puts the container's environment on the guest's kernel command
  # line, which holds 2048 bytes: Service links would soon fill it.
  enableServiceLinks: false
  nodeName: @NODE@
  terminationGracePeriodSeconds: 1
  containers:
    - name: guest
      image: localhost/tweed-guest:urunc
      imagePullPolicy: Never
      # kubelet probes the pod's address: the guest answers.
      readinessProbe:
        httpGet: {path: /, port: 80}
        periodSeconds: 2
      # Under load urunc can lose `start`'s message to the container it
      # created (docs/urunc.md): the VMM never starts. Restarted, as any
      # hung container is.
      livenessProbe:
        httpGet: {path: /, port: 80}
        initialDelaySeconds: 60
        periodSeconds: 5
        failureThreshold: 6
    # An ordinary container beside the guest (urunc hands it to runc),
    # serving on the pod's loopback only, and fetching the guest's page
    # from 127.0.0.1:80 every second into from-guest.txt, after the time
    # of the fetch. (urunc has no
    # `exec`: kubectl exec fails for every container of a urunc pod.)
    - name: sidecar
      image: localhost/tweed-test:latest
      imagePullPolicy: Never
      command:
        - /bin/sh
        - -c
        - |
          echo sidecar-says-hi > /www/index.html
          while :; do
            if timeout 5 wget -qO /tmp/guest http://127.0.0.1:80/; then
              echo "$(date +%s) $(cat /tmp/guest)" > /tmp/seen && mv /tmp/seen /www/from-guest.txt
            fi
            sleep 1
          done &
          exec httpd -f -p 127.0.0.1:8081 -h /www
"#;

/// A urunc guest asking for nothing of tweed: no annotations, no sidecar.
const PLAIN: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: urunc-plain, namespace: default}
spec:
  runtimeClassName: urunc
  enableServiceLinks: false
  nodeName: @NODE@
  terminationGracePeriodSeconds: 1
  containers:
    - name: guest
      image: localhost/tweed-guest:urunc
      imagePullPolicy: Never
      readinessProbe:
        httpGet: {path: /, port: 80}
        periodSeconds: 2
      livenessProbe:
        httpGet: {path: /, port: 80}
        initialDelaySeconds: 60
        periodSeconds: 5
        failureThreshold: 6
"#;

/// The seed's validation: each guest has its pod's address from tweed
/// (urunc reads it from eth0 and puts it on the kernel command line),
/// kubelet's readiness probe reaches the guest's HTTP server, and so do pods
/// on the other nodes, through the overlay. The first pod's namespace shows
/// urunc's own plumbing on tweed's eth0, and localhost works both ways
/// through tweed's hook. Then both guests are killed and started again by
/// kubelet in their pods, and all of it works again. Deleting the pods
/// leaves nothing behind (`deleted_pods_leave_nothing` checks the nodes
/// later).
pub fn urunc_guest_is_reached_from_another_node(c: &Cluster, others: &[Pod]) {
    let node = c.node_name(1);
    c.apply(&GUEST.replace("@NODE@", &node));
    // QEMU gives every urunc `linux` guest the same MAC: one per node.
    c.apply(&PLAIN.replace("@NODE@", &c.node_name(2)));
    for name in ["urunc-guest", "urunc-plain"] {
        c.wait_until(
            240,
            &format!("the urunc pod {name} Ready (kubelet's probe answered by the guest)"),
            || condition(&c.json(&["get", "pod", name]), "Ready") == "True",
        );
    }
    let guest = pod(c, "urunc-guest");
    let plain = pod(c, "urunc-plain");
    let gateway = format!(
        "{}.1",
        guest.ip.rsplit_once('.').expect("an IPv4 pod address").0
    );

    // The guest's console is the container's output.
    let logs = c.kubectl_ok(&["logs", "urunc-guest", "-c", "guest"]);
    let ready = logs
        .lines()
        .find(|l| l.starts_with("TWEED-GUEST-READY"))
        .unwrap_or_else(|| panic!("the guest never said READY:\n{logs}"));
    for want in [
        format!("ip={}/24", guest.ip),
        format!("gw={gateway}"),
        "dev=eth0".to_string(),
    ] {
        assert!(ready.contains(&want), "{want} in {ready}");
    }

    // urunc's plumbing inside the pod (its tap, its redirect on tweed's
    // eth0) and tweed's hook on it: eth0 gave the guest its address, the
    // tap has the pod's link address.
    let i = c.node_index(&node);
    let ns = netns_with_urunc_tap(c, i);
    let ip = |args: &[&str]| {
        let mut argv = vec!["ip", "-n", &ns, "-o"];
        argv.extend_from_slice(args);
        String::from_utf8_lossy(&c.on_node(i, &argv).stdout).into_owned()
    };
    let tap = ip(&["addr", "show", "dev", "tap0_urunc"]);
    assert!(tap.contains("inet 169.254.77.1/32"), "{tap}");
    let eth0 = ip(&["-4", "addr", "show", "dev", "eth0"]);
    assert!(!eth0.contains("inet "), "eth0 still has an address: {eth0}");
    let filters = c.on_node(
        i,
        &[
            "tc", "-n", &ns, "filter", "show", "dev", "eth0", "parent", "ffff:",
        ],
    );
    let filters = String::from_utf8_lossy(&filters.stdout);
    assert!(
        filters.contains("Egress Redirect to device tap0_urunc"),
        "urunc's redirect on eth0: {filters}"
    );

    reached_over_http(c, &guest, others);
    reached_over_http(c, &plain, others);
    dns_and_mtu_come_by_dhcp(c, &guest, others);
    dns_and_mtu_come_by_dhcp(c, &plain, others);
    localhost_reaches_the_guest_both_ways(c, &guest, others, 0);

    // Both guests' VMMs killed; kubelet starts each again in its pod.
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    for p in [&guest, &plain] {
        restart_guest(c, p);
    }
    for p in [&guest, &plain] {
        reached_over_http(c, p, others);
        dns_and_mtu_come_by_dhcp(c, p, others);
    }
    localhost_reaches_the_guest_both_ways(c, &guest, others, killed_at);

    c.kubectl_ok(&[
        "delete",
        "pod",
        "urunc-guest",
        "urunc-plain",
        "--wait=true",
        "--timeout=60s",
    ]);
}

/// Pods on the other nodes fetch the guest's page over HTTP; its console
/// says it came up with the pod's address (the newest boot's, after a
/// restart).
fn reached_over_http(c: &Cluster, guest: &Pod, others: &[Pod]) {
    let logs = c.kubectl_ok(&["logs", &guest.name, "-c", "guest"]);
    assert!(
        logs.lines()
            .any(|l| l.starts_with("TWEED-GUEST-READY")
                && l.contains(&format!("ip={}/24", guest.ip))),
        "{}'s console:\n{logs}",
        guest.name
    );
    for from in others.iter().filter(|p| p.node != guest.node) {
        let body = http_from(c, &from.name, &format!("http://{}/", guest.ip));
        assert_eq!(
            body.as_deref().map(str::trim),
            Ok(format!("tweed-guest urunc {}", guest.ip).as_str()),
            "HTTP from {} on {} to {}",
            from.name,
            from.node,
            guest.name
        );
    }
}

/// urunc gives the guest its address only; tweedd answers the guest's DHCP
/// (the image asks with `tweed.dhcp=on`) with the pod's DNS servers, search
/// domains and MTU, from the resolv.conf kubelet made for the pod. Shown
/// by what the guest's console reports (the newest boot's), by the guest
/// resolving the API server's Service name, and by a ping whose echo does
/// not fit the pod network's MTU unfragmented (the guest must fragment its
/// reply at the pod's MTU, not its NIC's 1500).
fn dns_and_mtu_come_by_dhcp(c: &Cluster, guest: &Pod, others: &[Pod]) {
    let cluster_dns =
        c.json(&["-n", "kube-system", "get", "service", "kube-dns"])["spec"]["clusterIP"]
            .as_str()
            .expect("kube-dns's ClusterIP")
            .to_string();
    let api = c.json(&["get", "service", "kubernetes"])["spec"]["clusterIP"]
        .as_str()
        .expect("the kubernetes Service's ClusterIP")
        .to_string();
    let from = others
        .iter()
        .find(|p| p.node != guest.node)
        .expect("a pod on another node");
    let pod_mtu = exec(c, &from.name, &["cat", "/sys/class/net/eth0/mtu"])
        .expect("a pod's eth0 MTU")
        .trim()
        .to_string();
    let logs = c.kubectl_ok(&["logs", &guest.name, "-c", "guest"]);
    let ready = logs
        .lines()
        .rfind(|l| l.starts_with("TWEED-GUEST-READY"))
        .unwrap_or_else(|| panic!("{} never said READY:\n{logs}", guest.name));
    for want in [
        format!("dhcp={}/255.255.255.0@169.254.77.1", guest.ip),
        format!("dns={cluster_dns}"),
        "search=default.svc.cluster.local,svc.cluster.local,cluster.local".to_string(),
        format!("mtu={pod_mtu}"),
    ] {
        assert!(
            ready.contains(&want),
            "{}: {want} in its READY line: {ready}",
            guest.name
        );
    }
    let answer = http_from(
        c,
        &from.name,
        &format!(
            "http://{}/cgi-bin/lookup?kubernetes.default.svc.cluster.local",
            guest.ip
        ),
    );
    assert_eq!(
        answer.as_deref().map(str::trim),
        Ok(api.as_str()),
        "{} resolving kubernetes.default.svc.cluster.local",
        guest.name
    );
    let ping = exec(
        c,
        &from.name,
        &["ping", "-c", "3", "-W", "3", "-s", "1440", &guest.ip],
    );
    assert!(
        ping.is_ok(),
        "1468-byte pings from {} to {} over a {pod_mtu}-byte pod network: {ping:?}",
        from.name,
        guest.name
    );
}

/// tweed's urunc hook: the guest reaches the sidecar's 127.0.0.1:8081 at
/// 169.254.77.1:8081, and what the sidecar fetched from its 127.0.0.1:80
/// is the guest's page (the guest is asked over HTTP, from a pod on another
/// node, to fetch both from the sidecar); `kubectl port-forward` to port 80
/// answers with the guest's page.
fn localhost_reaches_the_guest_both_ways(c: &Cluster, guest: &Pod, others: &[Pod], since: u64) {
    let want = format!("tweed-guest urunc {}", guest.ip);
    let from = others
        .iter()
        .find(|p| p.node != guest.node)
        .expect("a pod on another node");
    let guest_fetches = |path: &str| {
        http_from(
            c,
            &from.name,
            &format!(
                "http://{}/cgi-bin/fetch?http://169.254.77.1:8081/{path}",
                guest.ip
            ),
        )
        .map(|body| body.trim().to_string())
    };
    assert_eq!(
        guest_fetches(""),
        Ok("sidecar-says-hi".to_string()),
        "the guest fetching the sidecar at 169.254.77.1:8081"
    );
    c.wait_until(30, "the sidecar's fetch of 127.0.0.1:80", || {
        let seen = guest_fetches("from-guest.txt").unwrap_or_default();
        seen.split_once(' ')
            .is_some_and(|(at, body)| at.parse::<u64>().is_ok_and(|at| at >= since) && body == want)
    });
    let forwarded = port_forward_get(c, "urunc-guest", 18081, 80);
    assert_eq!(forwarded.trim(), want, "kubectl port-forward to port 80");
}

/// The guest's container killed (its VMM, through containerd and urunc)
/// and started again by kubelet in the same pod, until Ready. urunc needs
/// eth0's address again, which tweed's hook gave the previous guest; its
/// `create-runtime` stage gives it back (the guest without annotations
/// shows a restart works where the hook took nothing).
fn restart_guest(c: &Cluster, guest: &Pod) {
    let status = |c: &Cluster| {
        let pod = c.json(&["get", "pod", &guest.name]);
        let container = pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == "guest")
            .cloned()
            .unwrap_or_default();
        let id = container["containerID"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("containerd://")
            .to_string();
        let restarts = container["restartCount"].as_u64().unwrap_or_default();
        (id, restarts, condition(&pod, "Ready"))
    };
    let (id, restarts, _) = status(c);
    assert!(!id.is_empty(), "{}'s guest container ID", guest.name);
    let kill = c.on_node(
        c.node_index(&guest.node),
        &[
            "ctr",
            "--address",
            "/run/containerd/containerd.sock",
            "-n",
            "k8s.io",
            "task",
            "kill",
            "-s",
            "SIGKILL",
            &id,
        ],
    );
    assert!(kill.status.success(), "ctr task kill: {kill:?}");
    c.wait_until(
        240,
        &format!("{}'s guest restarted in its pod and Ready", guest.name),
        || {
            let (_, now, ready) = status(c);
            now > restarts && ready == "True"
        },
    );
}

/// The network namespace on node `i` holding urunc's tap (the test's one
/// guest pod there). The usual lookup by the pod's address does not work:
/// the guest has it now.
fn netns_with_urunc_tap(c: &Cluster, i: usize) -> String {
    let out = c.on_node(
        i,
        &[
            "sh",
            "-c",
            "for n in $(ls /run/netns); do ip -n \"$n\" link show tap0_urunc >/dev/null 2>&1 && echo \"$n\"; done",
        ],
    );
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !found.is_empty() && !found.contains('\n'),
        "one network namespace with tap0_urunc on node {i}: {found:?}"
    );
    found
}
