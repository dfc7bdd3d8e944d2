//! A real VM on the pod network, across nodes: the QEMU test guest
//! (Debian's cloud kernel and a busybox init, scripts/build-guest-image.sh)
//! boots in a pod on node 2 on the tap the plugin made, configured only by
//! the boot arguments `tweedctl guest-args` printed. A container pod on
//! node 1 fetches its page over the overlay; the guest resolves a name
//! through the cluster DNS the runtime passed (dnsmasq in a pod on node 1);
//! the pod's own localhost reaches it; DEL removes everything.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::TestLab;
use serde_json::{Value, json};
use tweed_lab::pods::{self, Call};
use tweed_lab::topology;
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
    guest_across_nodes("gql", "linux", "vxlan");
}

#[test]
fn unikraft_args_guest_across_a_host_gw_lab() {
    guest_across_nodes("gqu", "unikraft", "host-gw");
}

fn guest_across_nodes(tag: &str, format: &str, backend: &str) {
    let image = GuestImage::build();
    let mut lab = TestLab::up(tag, 2, backend, "file");
    let (n1, n2) = ("n1", "n2");
    let client_ns = lab.lab().state.node(n1).unwrap().pods[0].ns.clone();
    let client_ip = lab.pod_ip(n1).to_string();

    // Cluster DNS: dnsmasq in a second pod on node 1, answering for the
    // client's name.
    let dns_pod = lab.lab_mut().add_pod(n1, "dns").expect("dns pod");
    let dns_ip = dns_pod.ipv4.clone().unwrap();
    let _dnsmasq = Dnsmasq::start(&dns_pod.ns, &dns_ip, &[("web.lab.test", &client_ip)]);

    // The guest pod on node 2, through the plugin, as a runtime that knows
    // it starts a VM: the guest section in the config, the cluster DNS as
    // kubelet passes it.
    let node_dir = lab.lab().node_dir(n2);
    let state = node_dir.join("guest-state");
    let mut conf = pods::conflist(&node_dir);
    conf["guest"] = json!({"localhostPorts": [80], "stateDir": state});
    conf["runtimeConfig"] = json!({"dns": {"nameservers": [dns_ip], "search": ["lab.test"]}});
    let name = &lab.lab().state.name;
    let pod_ns = format!("{name}.{n2}.vm");
    let id = format!("{name}-vm");
    topology::create_pod_ns(&pod_ns).expect("pod ns");
    let node2_ns = lab.lab().state.node(n2).unwrap().ns.clone();
    let plugin = lab.lab().binaries.plugin.clone();
    fn call<'a>(command: &'a str, id: &'a str, pod_ns: &'a str) -> Call<'a> {
        Call {
            command,
            container_id: id,
            pod_ns,
            cni_args: "K8S_POD_NAME=vm-0;TWEED_GUEST=tap",
        }
    }
    let result: Value =
        pods::cni_with(&plugin, &node2_ns, &conf, &call("ADD", &id, &pod_ns)).expect("guest ADD");
    let guest_ip = pods::addresses(&result).0.expect("guest IPv4");
    let mac = result["interfaces"][2]["mac"].as_str().unwrap().to_string();

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
    let guest = Guest::start(&pod_ns, "tap0", &mac, &append, &image);
    let ready = guest
        .wait_ready(BOOT_TIMEOUT)
        .unwrap_or_else(|log| panic!("guest did not come up:\n{log}"));
    let fields = ready_fields(&ready);
    assert!(
        fields.get("ip").is_some_and(|ip| ip.starts_with(&guest_ip)),
        "{ready}"
    );

    // Across the overlay: the container on node 1 fetches the guest's page.
    let page = wget(&client_ns, &format!("http://{guest_ip}/")).expect("client → guest");
    assert!(page.contains(&guest_ip), "{page}");
    // The guest resolved the client's name through the cluster DNS.
    let lookup = wget(&client_ns, &format!("http://{guest_ip}/lookup.txt")).unwrap();
    assert!(lookup.contains(&client_ip), "lookup: {lookup}");
    // The pod's own localhost reaches the guest (sidecars, probes).
    let local = wget(&pod_ns, "http://127.0.0.1/").expect("localhost → guest");
    assert!(local.contains(&guest_ip), "{local}");
    drop(guest);

    // DEL: tap, plumbing and record go; the namespace is left empty.
    pods::cni_with(&plugin, &node2_ns, &conf, &call("DEL", &id, &pod_ns)).expect("guest DEL");
    let links = Command::new("ip")
        .args(["-n", &pod_ns, "-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).to_string();
    assert!(
        !links.contains("tap0") && !links.contains("eth0"),
        "{links}"
    );
    assert!(!state.join(format!("guests/{id}-eth0.json")).exists());
    let reservation = node_dir.join("ipam").join("tweed").join(&guest_ip);
    assert!(!reservation.exists(), "{} left", reservation.display());
    let _ = tweed_netlink::NetNs::delete_named(&pod_ns);
}
