//! The QEMU test guest with tweed chained after the reference `bridge`
//! plugin (the path a urunc user on another fabric takes): the guest boots
//! on the tap tweed added behind the bridge plugin's eth0, configured only
//! by `tweedctl guest-args`; a container on the same bridge fetches its
//! page, the guest resolves a name through the DNS server the runtime
//! passed (dnsmasq in another pod), a sidecar in the guest's pod reaches it
//! on 127.0.0.1, and DEL of the chain leaves nothing.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Node, http_get, http_get_within};
use serde_json::json;
use tweed_testkit::dns::Dnsmasq;
use tweed_testkit::qemu::{Guest, GuestImage};
use tweed_testkit::{Attachment, Chain, TestNs, kernel};

/// `tweedctl`, built beside the plugin by `cargo build --workspace`.
fn tweedctl() -> PathBuf {
    let p = common::tweed_bin().parent().unwrap().join("tweedctl");
    assert!(
        p.is_file(),
        "{} missing: cargo build --workspace",
        p.display()
    );
    p
}

#[test]
fn qemu_guest_chained_after_the_reference_bridge() {
    let image = GuestImage::build();
    let node = Node::new("gqc");
    let state = node.dir.path().join("state");
    let bridge = json!({
        "type": "bridge", "bridge": "refbr0", "isGateway": true, "isDefaultGateway": true,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.77.0/24"}]], "dataDir": node.data_dir()},
    });
    let guest_chain = Chain::new(json!({
        "cniVersion": "1.0.0",
        "name": "refnet",
        "plugins": [bridge, {
            "type": "tweed",
            "logFile": node.log_file(),
            "capabilities": {"dns": true},
            "guest": {"mode": "tap", "stateDir": state, "localhostPorts": [80]},
        }],
    }))
    .binary("tweed", common::tweed_bin())
    .in_node(&node.ns.name);
    let plain_chain =
        Chain::new(json!({"cniVersion": "1.0.0", "name": "refnet", "plugins": [bridge]}))
            .in_node(&node.ns.name);
    let att = |id: &str, ns: &TestNs| Attachment {
        container_id: id.into(),
        netns: ns.path(),
        ifname: "eth0".into(),
        ..Default::default()
    };

    // A container and a DNS server on the bridge.
    let (client, dns, pod) = (
        TestNs::new("gqcc"),
        TestNs::new("gqcd"),
        TestNs::new("gqcp"),
    );
    let rc = plain_chain
        .add(&att("client", &client))
        .expect("client ADD");
    let client_ip = common::bare(rc["ips"][0]["address"].as_str().unwrap());
    let rd = plain_chain.add(&att("dns", &dns)).expect("dns ADD");
    let dns_ip = common::bare(rd["ips"][0]["address"].as_str().unwrap());
    let _dnsmasq = Dnsmasq::start(&dns.name, &dns_ip, &[("web.lab.test", &client_ip)]);

    // The guest pod: bridge, then tweed's guest, with the DNS as kubelet
    // would pass it.
    let mut guest_att = att("vm-1", &pod);
    guest_att.capability_args.insert(
        "dns".into(),
        json!({"nameservers": [dns_ip], "search": ["lab.test"]}),
    );
    let r = guest_chain.add(&guest_att).expect("chained guest ADD");
    let guest_ip = common::bare(r["ips"][0]["address"].as_str().unwrap());
    let mac = kernel::link(&pod.name, "eth0").unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();

    let out = Command::new(tweedctl())
        .args([
            "guest-args",
            "--container",
            "vm-1",
            "--format",
            "linux",
            "--state-dir",
        ])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(args.contains(&guest_ip) && args.contains(&dns_ip), "{args}");
    let guest = Guest::start(
        &pod.name,
        "tap0",
        &mac,
        &format!("{args} tweed.lookup=web.lab.test"),
        &image,
    );
    guest
        .wait_ready(Duration::from_secs(180))
        .unwrap_or_else(|log| panic!("guest did not come up:\n{log}"));

    let page = http_get_within(&client.name, &format!("http://{guest_ip}/"), 20);
    assert!(page.contains(&guest_ip), "{page}");
    let lookup = http_get(&client.name, &format!("http://{guest_ip}/lookup.txt")).unwrap();
    assert!(lookup.contains(&client_ip), "lookup: {lookup}");
    let local = http_get(&pod.name, "http://127.0.0.1/").expect("sidecar → guest");
    assert!(local.contains(&guest_ip), "{local}");
    drop(guest);

    guest_chain.del(&guest_att, Some(&r)).expect("chained DEL");
    assert!(kernel::link(&pod.name, "tap0").is_none());
    assert!(kernel::link(&pod.name, "eth0").is_none());
    let tables = pod.exec_ok(&["nft", "list", "tables"]);
    assert!(!tables.contains("tweed-guest"), "{tables}");
    assert!(!state.join("guests/vm-1-eth0.json").exists());
    let reservation = node.data_dir().join("refnet").join(&guest_ip);
    assert!(!reservation.exists(), "{} left", reservation.display());
}
