//! A real VM on the pod network, across nodes: the QEMU test guest
//! (Debian's cloud kernel and a busybox init, scripts/build-guest-image.sh)
//! boots in a pod on node 2 on the tap the plugin made, configured only by
//! the boot arguments `tweedctl guest-args` printed. A container pod on
//! node 1 fetches its page over the overlay; the guest resolves a name
//! through the cluster DNS the runtime passed (dnsmasq in a pod on node 1);
//! the pod's own localhost reaches it; DEL removes everything. Once with
//! tweed's own attachment (vxlan and host-gw labs), once with tweed chained
//! after the reference `bridge` plugin on node 2, once with tweed chained
//! after flannel's CNI plugin on a node 2 that runs real flanneld.

mod common;
mod guest_attach;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::flannel::{flannel_node, tweed_compat_node};
use common::{TestLab, wait_until};
use guest_attach::{Attach, Attacher, bridge_address, node_bridge, node_leftovers};
use serde_json::{Value, json};
use tweed_lab::pods;
use tweed_lab::topology;
use tweed_testkit::Attachment;
use tweed_testkit::dns::Dnsmasq;
use tweed_testkit::qemu::{Guest, GuestImage, ready_fields};

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

fn wget(ns: &str, url: &str) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "busybox", "timeout", "10"])
        .args(["busybox", "wget", "-q", "-O", "-", url])
        .output()
        .expect("busybox wget");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn tweedctl(lab: &TestLab) -> std::path::PathBuf {
    let p = lab.lab().binaries.plugin.parent().unwrap().join("tweedctl");
    assert!(
        p.is_file(),
        "{} missing: cargo build --workspace",
        p.display()
    );
    p
}

fn guest_args(tweedctl: &Path, state: &Path, id: &str, format: &str) -> String {
    let out = Command::new(tweedctl)
        .args(["guest-args", "--container", id, "--state-dir"])
        .arg(state)
        .args(["--format", format])
        .output()
        .expect("run tweedctl");
    assert!(
        out.status.success(),
        "tweedctl guest-args: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn linux_guest_on_node_2_serves_a_container_on_node_1_and_uses_cluster_dns() {
    guest_across_nodes("gql", "linux", "vxlan", Attach::Own);
}

#[test]
fn unikraft_args_guest_across_a_host_gw_lab() {
    guest_across_nodes("gqu", "unikraft", "host-gw", Attach::Own);
}

/// The reference `bridge` plugin makes the pod's interface on node 2 (on
/// the node bridge, with host-local addresses from the node's lease), and
/// tweed, chained after it, adds only the guest.
#[test]
fn guest_chained_after_the_reference_bridge_in_a_lab() {
    guest_across_nodes("gqc", "linux", "vxlan", Attach::ChainedAfterBridge);
}

/// Node 2 is a flannel node: real flanneld (etcd mode, the lab's etcd)
/// leases its subnet and programs its end of the overlay, node 1 runs tweed
/// with `--flannel-compat`; the pod's interface is made by flannel's CNI
/// plugin (reading flanneld's subnet.env, delegating to the reference
/// bridge and host-local), and tweed, chained after it, adds the guest.
#[test]
fn guest_chained_after_real_flannel_in_a_lab() {
    guest_across_nodes("gqf", "linux", "vxlan", Attach::ChainedAfterFlannel);
}

fn guest_across_nodes(tag: &str, format: &str, backend: &str, attach: Attach) {
    let image = GuestImage::build();
    let flannel = attach == Attach::ChainedAfterFlannel;
    let mut lab = TestLab::up(tag, 2, backend, if flannel { "etcd" } else { "file" });
    let (n1, n2) = ("n1", "n2");
    // Declared after the lab: stopped before the lab's namespaces go.
    let flanneld = flannel.then(|| {
        tweed_compat_node(&mut lab, n1);
        flannel_node(&mut lab, n2)
    });
    let client_ns = lab.lab().state.node(n1).unwrap().pods[0].ns.clone();
    let client_ip = lab.pod_ip(n1).to_string();

    // Cluster DNS: dnsmasq in a second pod on node 1, answering for the
    // client's name.
    let dns_pod = lab.lab_mut().add_pod(n1, "dns").expect("dns pod");
    let dns_ip = dns_pod.ipv4.clone().unwrap();
    let _dnsmasq = Dnsmasq::start(&dns_pod.ns, &dns_ip, &[("web.lab.test", &client_ip)]);

    // The guest pod on node 2, as a runtime that knows it starts a VM: the
    // guest section in the config, the cluster DNS as kubelet passes it.
    let node_dir = lab.lab().node_dir(n2);
    let state = node_dir.join("guest-state");
    let name = lab.lab().state.name.clone();
    let pod_ns = format!("{name}.{n2}.vm");
    let id = format!("{name}-vm");
    topology::create_pod_ns(&pod_ns).expect("pod ns");
    let node2_ns = lab.lab().state.node(n2).unwrap().ns.clone();
    let plugin = lab.lab().binaries.plugin.clone();
    let dns = json!({"nameservers": [dns_ip], "search": ["lab.test"]});
    let guest = json!({"mode": "tap", "localhostPorts": [80], "stateDir": state});
    let mut conf = pods::conflist(&node_dir);
    conf["guest"] = guest;
    conf["runtimeConfig"] = json!({ "dns": dns });
    let mut att = Attachment {
        container_id: id.clone(),
        netns: format!("/run/netns/{pod_ns}"),
        ifname: "eth0".into(),
        cni_args: Some("IgnoreUnknown=1;K8S_POD_NAME=vm-0;TWEED_GUEST=tap".into()),
        ..Default::default()
    };
    att.capability_args.insert("dns".into(), dns);
    let attacher = Attacher::new(
        attach,
        &node_dir,
        &plugin,
        &node2_ns,
        conf,
        att,
        flanneld.as_ref(),
    );
    let result = attacher.add();
    let guest_ip = pods::addresses(&result).0.expect("guest IPv4");
    let mac = Command::new("ip")
        .args(["-n", &pod_ns, "-j", "link", "show", "eth0"])
        .output()
        .unwrap();
    let mac: Value = serde_json::from_slice(&mac.stdout).unwrap();
    let mac = mac[0]["address"].as_str().unwrap().to_string();

    let args = guest_args(&tweedctl(&lab), &state, &id, format);
    let expected_start = match format {
        "linux" => format!("ip={guest_ip}::"),
        _ => format!("netdev.ip={guest_ip}/24:"),
    };
    assert!(
        args.starts_with(&expected_start) && args.contains(&dns_ip),
        "{args}"
    );
    let append = format!("{args} tweed.lookup=web.lab.test");
    let vm = Guest::start(&pod_ns, "tap0", &mac, &append, &image);
    let ready = vm
        .wait_ready(BOOT_TIMEOUT)
        .unwrap_or_else(|log| panic!("guest did not come up:\n{log}"));
    let fields = ready_fields(&ready);
    assert!(
        fields.get("ip").is_some_and(|ip| ip.starts_with(&guest_ip)),
        "{ready}"
    );
    // Its gateway is node 2's bridge, as the kernel has it: the previous
    // plugin's gateway (for flannel, on the subnet flanneld leased).
    let bridge = node_bridge(attach);
    let gateway = bridge_address(&node2_ns, bridge);
    assert_eq!(
        fields.get("gw"),
        Some(&gateway.addr().to_string()),
        "{ready}"
    );
    assert!(
        gateway.contains(&guest_ip.parse::<std::net::Ipv4Addr>().unwrap()),
        "{gateway} {guest_ip}"
    );
    if let Some(f) = &flanneld {
        assert_eq!(
            gateway.trunc(),
            f.subnet(),
            "{bridge} is not on flanneld's subnet"
        );
    }

    // Across the overlay: the container on node 1 fetches the guest's page.
    let page = wget(&client_ns, &format!("http://{guest_ip}/")).expect("client → guest");
    assert!(page.contains(&guest_ip), "{page}");
    // The guest resolved the client's name through the cluster DNS.
    let lookup = wget(&client_ns, &format!("http://{guest_ip}/lookup.txt")).unwrap();
    assert!(lookup.contains(&client_ip), "lookup: {lookup}");
    // The pod's own localhost reaches the guest (sidecars, probes).
    let local = wget(&pod_ns, "http://127.0.0.1/").expect("localhost → guest");
    assert!(local.contains(&guest_ip), "{local}");
    drop(vm);

    // DEL: nothing is left in the pod, on the node, or in IPAM.
    // The veth goes a few milliseconds after DEL returns (a detached
    // deletion), so its absence is waited for.
    attacher.del(&result);
    wait_until(5, "the pod's tap0 and eth0 to go", || {
        let links = Command::new("ip")
            .args(["-n", &pod_ns, "-o", "link"])
            .output()
            .unwrap();
        let links = String::from_utf8_lossy(&links.stdout).to_string();
        !links.contains("tap0") && !links.contains("eth0")
    });
    let tables = Command::new("ip")
        .args(["netns", "exec", &pod_ns, "nft", "list", "tables"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("tweed-guest"));
    assert!(!state.join(format!("guests/{id}-eth0.json")).exists());
    let (files, ports_kept) = node_leftovers(attach, &node_dir, &id, &guest_ip);
    for f in files {
        assert!(!f.exists(), "{} left", f.display());
    }
    // The node side: the pod's host veth goes too (tweed hands its deletion
    // to a detached process; give it a moment).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("ip")
            .args(["-n", &node2_ns, "-o", "link", "show", "master", bridge])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{bridge} on {n2}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ports = String::from_utf8_lossy(&out.stdout).lines().count();
        if ports == ports_kept {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the guest pod's host veth is still on {bridge}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = tweed_netlink::NetNs::delete_named(&pod_ns);
}
