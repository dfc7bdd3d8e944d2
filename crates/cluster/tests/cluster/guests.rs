//! A urunc guest on tweed's pod network (docs/urunc.md): a pod with
//! RuntimeClass `urunc` boots tweed's test guest (Debian's kernel and the
//! guest's init) in QEMU, as urunc boots any `linux` guest, unchanged.

use tweed_cluster::Cluster;
use tweed_cluster::pods::{Pod, condition, http_from, pod, pod_netns};

const GUEST: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: urunc-guest, namespace: default}
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
"#;

/// The seed's validation: the guest has the pod's address from tweed (urunc
/// reads it from eth0 and puts it on the kernel command line), kubelet's
/// readiness probe reaches the guest's HTTP server, and so does a pod on
/// another node, through the overlay. The pod's namespace shows urunc's
/// own plumbing on tweed's eth0. Deleting the pod leaves nothing behind
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

    // urunc's plumbing inside the pod: its tap, and eth0 (tweed's) keeping
    // the pod's address with urunc's ingress redirect to the tap.
    let i = c.node_index(&node);
    let ns = pod_netns(c, &guest);
    let link = |dev: &str| {
        let out = c.on_node(i, &["ip", "-n", &ns, "-o", "link", "show", dev]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(link("tap0_urunc").contains("UP"), "{}", link("tap0_urunc"));
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

    c.kubectl_ok(&[
        "delete",
        "pod",
        "urunc-guest",
        "--wait=true",
        "--timeout=60s",
    ]);
}
