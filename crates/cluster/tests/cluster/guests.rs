//! A urunc guest on tweed's pod network (docs/urunc.md): a pod with
//! RuntimeClass `urunc` boots tweed's test guest (Debian's kernel and the
//! guest's init) in QEMU, as urunc boots any `linux` guest, unchanged.

use tweed_cluster::Cluster;
use tweed_cluster::pods::{Pod, condition, http_from, pod, port_forward_get};

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
    # An ordinary container beside the guest (urunc hands it to runc),
    # serving on the pod's loopback only, and fetching the guest's page
    # from 127.0.0.1:80 every second into from-guest.txt. (urunc has no
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
            timeout 5 wget -qO /tmp/guest http://127.0.0.1:80/ && mv /tmp/guest /www/from-guest.txt
            sleep 1
          done &
          exec httpd -f -p 127.0.0.1:8081 -h /www
"#;

/// The seed's validation: the guest has the pod's address from tweed (urunc
/// reads it from eth0 and puts it on the kernel command line), kubelet's
/// readiness probe reaches the guest's HTTP server, and so does a pod on
/// another node, through the overlay. The pod's namespace shows urunc's
/// own plumbing on tweed's eth0, and localhost works both ways through
/// tweed's hook. Deleting the pod leaves nothing behind
/// (`deleted_pods_leave_nothing` checks the node later).
pub fn urunc_guest_is_reached_from_another_node(c: &Cluster, others: &[Pod]) {
    let node = c.node_name(1);
    c.apply(&GUEST.replace("@NODE@", &node));
    c.wait_until(
        240,
        "the urunc guest pod Ready (kubelet's probe answered by the guest)",
        || condition(&c.json(&["get", "pod", "urunc-guest"]), "Ready") == "True",
    );
    let guest = pod(c, "urunc-guest");
    let gateway = format!(
        "{}.1",
        guest.ip.rsplit_once('.').expect("an IPv4 pod address").0
    );

    // The guest's console is the container's output.
    let logs = c.kubectl_ok(&["logs", "urunc-guest"]);
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

    for from in others.iter().filter(|p| p.node != node) {
        let body = http_from(c, &from.name, &format!("http://{}/", guest.ip));
        assert_eq!(
            body.as_deref().map(str::trim),
            Ok(format!("tweed-guest urunc {}", guest.ip).as_str()),
            "HTTP from {} on {} to the guest",
            from.name,
            from.node
        );
    }

    localhost_reaches_the_guest_both_ways(c, &guest, others);

    c.kubectl_ok(&[
        "delete",
        "pod",
        "urunc-guest",
        "--wait=true",
        "--timeout=60s",
    ]);
}

/// tweed's urunc hook: the guest reaches the sidecar's 127.0.0.1:8081 at
/// 169.254.77.1:8081, and what the sidecar fetched from its 127.0.0.1:80
/// is the guest's page (the guest is asked over HTTP, from a pod on another
/// node, to fetch both from the sidecar); `kubectl port-forward` to port 80
/// answers with the guest's page.
fn localhost_reaches_the_guest_both_ways(c: &Cluster, guest: &Pod, others: &[Pod]) {
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
    let mut seen = Err(String::new());
    c.wait_until(30, "the sidecar's fetch of 127.0.0.1:80", || {
        seen = guest_fetches("from-guest.txt");
        seen.as_deref() == Ok(want.as_str())
    });
    let forwarded = port_forward_get(c, "urunc-guest", 18081, 80);
    assert_eq!(forwarded.trim(), want, "kubectl port-forward to port 80");
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
