//! Guest attachments against the real kernel: the tap or macvtap, its
//! redirect, the result runtimes read, the guest record, localhost both
//! ways, chained after the reference bridge, and teardown. The guest is
//! testkit's stand-in (a namespace wired frame for frame to the tap, opened
//! as a VMM opens it); the QEMU guest is in the lab's tests.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Node, NsProcess, bare, http_get_within, require_busybox};
use serde_json::{Value, json};
use tweed_testkit::tap_guest::TapGuest;
use tweed_testkit::{Attachment, Chain, TestNs, kernel, run_ok};

fn guest_conf(node: &Node, third: u8, guest: Value) -> Value {
    let mut conf = node.conf_v4("guestnet", third);
    let mut guest = guest;
    guest["stateDir"] = json!(node.dir.path().join("state"));
    conf["guest"] = guest;
    conf
}

fn record(node: &Node, id: &str) -> Option<Value> {
    let p = node
        .dir
        .path()
        .join("state/guests")
        .join(format!("{id}-eth0.json"));
    std::fs::read(p)
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap())
}

fn nft_tables(ns: &str) -> String {
    run_ok("ip", &["netns", "exec", ns, "nft", "list", "tables"])
}

/// Configures the stand-in guest from the record, as a guest's init would
/// from its boot arguments.
fn configure_guest(guest: &TapGuest, rec: &Value) {
    let addr = rec["addresses"][0]["address"].as_str().unwrap();
    let gw = rec["addresses"][0]["gateway"].as_str().unwrap();
    guest
        .ns
        .exec_ok(&["ip", "addr", "add", addr, "dev", "eth0"]);
    guest
        .ns
        .exec_ok(&["ip", "route", "add", "default", "via", gw]);
}

fn page(dir: &Path, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("index.html"), body).unwrap();
}

#[test]
fn tap_guest_gets_the_pod_network_and_localhost_both_ways() {
    require_busybox();
    let node = Node::new("gtap");
    let conf = guest_conf(
        &node,
        71,
        json!({"mode": "tap", "localhostPorts": ["8080"], "podServices": [9090]}),
    );
    let plain = node.conf_v4("guestnet", 71);
    let (pod, other) = (TestNs::new("gtp"), TestNs::new("gto"));
    let id = "guest-tap-1";

    let r = node
        .call("ADD", &conf)
        .container(id, &pod.path(), "eth0")
        .env("CNI_ARGS", "K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default")
        .run()
        .expect_ok("ADD guest");
    node.add(&plain, "plain-1", &other, "eth0")
        .expect_ok("ADD plain");

    // The result: eth0 (its IP entries kept, for CRI), then the tap in the
    // pod and the VM pseudo-interface of the same name whose sandbox is
    // the container ID, carrying eth0's MAC, with the IPs pointing at it.
    let ifaces = r["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 5, "{r}");
    let eth0_mac = ifaces[2]["mac"].as_str().unwrap().to_string();
    assert_eq!(ifaces[3]["name"], "tap0");
    assert_eq!(ifaces[3]["sandbox"], pod.path());
    assert_eq!(ifaces[4]["name"], "tap0");
    assert_eq!(ifaces[4]["sandbox"], id);
    assert_eq!(ifaces[4]["mac"], eth0_mac.as_str());
    let ips = r["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 2, "{r}");
    assert_eq!(ips[0]["interface"], 2);
    assert_eq!(ips[1]["interface"], 4);
    assert_eq!(ips[0]["address"], ips[1]["address"]);
    let guest_ip = bare(ips[0]["address"].as_str().unwrap());

    // The kernel: a tap with eth0's MTU and the bridge's MAC, eth0 without
    // addresses, both ingress hooks redirecting to each other.
    let tap = kernel::link(&pod.name, "tap0").expect("tap0 in the pod");
    assert_eq!(tap["linkinfo"]["info_kind"], "tun");
    assert_eq!(tap["mtu"], 1500);
    assert_eq!(tap["ifalias"], format!("tweed-guest/{id}/eth0"));
    let bridge = kernel::link(&node.ns.name, "tweed0").unwrap();
    assert_eq!(tap["address"], bridge["address"]);
    assert!(kernel::addresses(&pod.name, "eth0").is_empty());
    for (from, to) in [("eth0", "tap0"), ("tap0", "eth0")] {
        let filters = run_ok(
            "ip",
            &[
                "netns", "exec", &pod.name, "tc", "filter", "show", "dev", from, "ingress",
            ],
        );
        assert!(
            filters.contains("mirred") && filters.contains(&format!("to device {to}")),
            "{from}: {filters}"
        );
    }
    assert!(nft_tables(&pod.name).contains("tweed-guest-eth0"));

    // The record.
    let rec = record(&node, id).expect("guest record");
    assert_eq!(rec["mode"], "tap");
    assert_eq!(rec["device"], "tap0");
    assert_eq!(rec["mac"], eth0_mac.as_str());
    assert_eq!(rec["mtu"], 1500);
    assert_eq!(rec["hostname"], "web-0");
    assert_eq!(rec["addresses"][0]["gateway"], "10.244.71.1");
    assert_eq!(rec["localhost"]["address"], "169.254.77.1");

    // A guest on the tap: reachable from another pod, from the pod's
    // localhost, and it reaches the pod's localhost service.
    let guest = TapGuest::start("gtg", &pod.name, "tap0", &eth0_mac, 1500);
    configure_guest(&guest, &rec);
    let www = node.dir.path().join("www-guest");
    page(&www, "hello from the guest\n");
    let _guest_http = NsProcess::httpd(&guest.ns.name, 8080, &www);
    assert!(other.ping(&guest_ip), "other pod cannot ping the guest");
    let url = format!("http://{guest_ip}:8080/");
    assert_eq!(
        http_get_within(&other.name, &url, 10),
        "hello from the guest\n"
    );
    assert_eq!(
        http_get_within(&pod.name, "http://127.0.0.1:8080/", 10),
        "hello from the guest\n"
    );
    let side = node.dir.path().join("www-pod");
    page(&side, "sidecar\n");
    let _sidecar = NsProcess::spawn(
        &pod.name,
        &[
            common::BUSYBOX,
            "httpd",
            "-f",
            "-p",
            "127.0.0.1:9090",
            "-h",
            side.to_str().unwrap(),
        ],
    );
    assert_eq!(
        http_get_within(&guest.ns.name, "http://169.254.77.1:9090/", 10),
        "sidecar\n"
    );
    // Undeclared ports stay closed.
    assert!(common::http_get(&guest.ns.name, "http://169.254.77.1:9091/").is_err());
    drop(guest);

    // DEL: everything goes, the address is free again.
    node.del(&conf, id, &pod.path(), "eth0")
        .expect_ok("DEL guest");
    assert!(kernel::link(&pod.name, "tap0").is_none());
    // The veth goes a few milliseconds after DEL (a detached deletion).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while kernel::link(&pod.name, "eth0").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pod's eth0 outlived DEL by 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!nft_tables(&pod.name).contains("tweed-guest"));
    assert!(record(&node, id).is_none());
    assert!(!node.reservations("guestnet").contains(&guest_ip));
    node.del(&conf, id, &pod.path(), "eth0")
        .expect_ok("repeated DEL");
}

#[test]
fn macvtap_guest_takes_the_pod_mac_through_its_character_device() {
    require_busybox();
    let node = Node::new("gmv");
    let conf = guest_conf(&node, 72, json!({}));
    let plain = node.conf_v4("guestnet", 72);
    let (pod, other) = (TestNs::new("gmp"), TestNs::new("gmo"));
    let id = "guest-mv-1";
    let r = node
        .call("ADD", &conf)
        .container(id, &pod.path(), "eth0")
        .env("CNI_ARGS", "IgnoreUnknown=1;TWEED_GUEST=macvtap")
        .run()
        .expect_ok("ADD macvtap guest");
    node.add(&plain, "plain-2", &other, "eth0")
        .expect_ok("ADD plain");
    let pod_mac = r["interfaces"][2]["mac"].as_str().unwrap().to_string();
    assert_eq!(r["interfaces"][4]["name"], "macvtap0");
    assert_eq!(r["interfaces"][4]["mac"], pod_mac.as_str());

    let mv = kernel::link(&pod.name, "macvtap0").expect("macvtap0");
    assert_eq!(mv["linkinfo"]["info_kind"], "macvtap");
    assert_eq!(mv["linkinfo"]["info_data"]["mode"], "bridge");
    assert_eq!(mv["address"], pod_mac.as_str());
    assert_ne!(
        kernel::link(&pod.name, "eth0").unwrap()["address"],
        pod_mac.as_str()
    );

    // The recorded device number is the one the pod's sysfs shows.
    let rec = record(&node, id).unwrap();
    let (major, minor) = (
        rec["deviceNumber"]["major"].as_u64().unwrap(),
        rec["deviceNumber"]["minor"].as_u64().unwrap(),
    );
    let index = mv["ifindex"].as_u64().unwrap();
    let sysfs = run_ok(
        "ip",
        &[
            "netns",
            "exec",
            &pod.name,
            "cat",
            &format!("/sys/class/net/macvtap0/macvtap/tap{index}/dev"),
        ],
    );
    assert_eq!(sysfs.trim(), format!("{major}:{minor}"));

    // A guest on the character device, as a runtime would open it.
    let dev = node.dir.path().join("macvtap0.dev");
    run_ok(
        "mknod",
        &[
            dev.to_str().unwrap(),
            "c",
            &major.to_string(),
            &minor.to_string(),
        ],
    );
    let guest = TapGuest::start_on_device("gmg", &dev, &pod_mac, 1500);
    configure_guest(&guest, &rec);
    let guest_ip = bare(rec["addresses"][0]["address"].as_str().unwrap());
    assert!(
        other.ping(&guest_ip),
        "other pod cannot ping the macvtap guest"
    );
    drop(guest);

    node.del(&conf, id, &pod.path(), "eth0").expect_ok("DEL");
    assert!(kernel::link(&pod.name, "macvtap0").is_none());
    assert!(record(&node, id).is_none());
}

#[test]
fn chained_after_the_reference_bridge() {
    let node = Node::new("gch");
    let state = node.dir.path().join("state");
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "refnet",
        "plugins": [
            node.reference_bridge(73),
            {"type": "tweed", "logFile": node.log_file(), "guest": {"mode": "tap", "stateDir": state}},
        ],
    });
    let chain = Chain::new(conflist)
        .binary("tweed", common::tweed_bin())
        .in_node(&node.ns.name);
    let only_bridge = Chain::new(json!({
        "cniVersion": "1.0.0",
        "name": "refnet",
        "plugins": [node.reference_bridge(73)],
    }))
    .in_node(&node.ns.name);
    let (pod, other) = (TestNs::new("gcp"), TestNs::new("gco"));
    let att = Attachment {
        container_id: "chained-1".into(),
        netns: pod.path(),
        ifname: "eth0".into(),
        ..Default::default()
    };
    let r = chain.add(&att).expect("chained ADD");
    only_bridge
        .add(&Attachment {
            container_id: "plain-3".into(),
            netns: other.path(),
            ifname: "eth0".into(),
            ..Default::default()
        })
        .expect("plain ADD");

    // The bridge's interfaces first, then tweed's two.
    let ifaces = r["interfaces"].as_array().unwrap();
    let n = ifaces.len();
    assert_eq!(ifaces[n - 2]["name"], "tap0");
    assert_eq!(ifaces[n - 1]["sandbox"], "chained-1");
    let eth0 = kernel::link(&pod.name, "eth0").unwrap();
    assert_eq!(ifaces[n - 1]["mac"], eth0["address"]);
    // Without localhost plumbing the pod interface keeps what the bridge
    // plugin gave it (so the bridge's own CHECK still passes); the tap
    // took the gateway's MAC, learnt over ARP.
    assert_eq!(kernel::addresses(&pod.name, "eth0"), vec!["10.244.73.2/24"]);
    let refbr = kernel::link(&node.ns.name, "refbr0").unwrap();
    assert_eq!(
        kernel::link(&pod.name, "tap0").unwrap()["address"],
        refbr["address"]
    );

    let rec: Value =
        serde_json::from_slice(&std::fs::read(state.join("guests/chained-1-eth0.json")).unwrap())
            .unwrap();
    assert_eq!(rec["chained"], true);
    assert!(
        rec["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "0.0.0.0/0" && r["gw"] == "10.244.73.1"),
        "{rec}"
    );
    let guest = TapGuest::start(
        "gcg",
        &pod.name,
        "tap0",
        eth0["address"].as_str().unwrap(),
        eth0["mtu"].as_u64().unwrap() as u32,
    );
    configure_guest(&guest, &rec);
    let guest_ip = bare(rec["addresses"][0]["address"].as_str().unwrap());
    assert!(
        other.ping(&guest_ip),
        "pod on the reference bridge cannot reach the guest"
    );
    drop(guest);

    chain.check(&att, &r).expect("CHECK");
    chain.del(&att, Some(&r)).expect("chained DEL");
    assert!(kernel::link(&pod.name, "tap0").is_none());
    assert!(!state.join("guests/chained-1-eth0.json").exists());
    assert!(!nft_tables(&pod.name).contains("tweed-guest"));
}

#[test]
fn bad_guest_requests_are_refused_and_leave_nothing() {
    let node = Node::new("gbad");
    let conf = guest_conf(&node, 74, json!({"mode": "tap"}));
    let pod = TestNs::new("gbp");
    let cases: &[(&str, Value, u64, &str)] = &[
        ("TWEED_GUEST=vhost", conf.clone(), 4, "TWEED_GUEST"),
        ("TWEED_GUEST_UID=root", conf.clone(), 4, "TWEED_GUEST_UID"),
        ("TWEED_GUEST_TAP=eth0", conf.clone(), 4, "TWEED_GUEST_TAP"),
        (
            "TWEED_GUEST_PORTS=80/sctp",
            conf.clone(),
            4,
            "TWEED_GUEST_PORTS",
        ),
        (
            "",
            guest_conf(
                &node,
                74,
                json!({"mode": "tap", "tapName": "tap with space"}),
            ),
            7,
            "guest.tapName",
        ),
        (
            "",
            guest_conf(&node, 74, json!({"mode": "tap", "unknownKey": 1})),
            7,
            "unknownKey",
        ),
        (
            "TWEED_GUEST=macvtap",
            guest_conf(&node, 74, json!({"localhostPorts": [80]})),
            7,
            "tap mode",
        ),
    ];
    for (args, conf, code, needle) in cases {
        let out = node
            .call("ADD", conf)
            .container("bad-1", &pod.path(), "eth0")
            .env("CNI_ARGS", args)
            .run();
        let msg = out.expect_error(*code, args);
        assert!(msg.contains(needle), "{args}: {msg}");
        assert!(
            kernel::link(&pod.name, "eth0").is_none(),
            "{args}: eth0 left"
        );
        assert!(node.reservations("guestnet").is_empty(), "{args}: IP left");
        assert!(node.host_veths().is_empty(), "{args}: host veth left");
    }

    // A taken device name is found only when the tap is made: everything
    // before it is rolled back, and the existing device is left alone.
    pod.exec_ok(&["ip", "tuntap", "add", "tap0", "mode", "tap"]);
    let out = node.add(&conf, "bad-2", &pod, "eth0");
    let msg = out.expect_error(103, "tap0 taken");
    assert!(msg.contains("tap0"), "{msg}");
    assert!(kernel::link(&pod.name, "tap0").is_some());
    assert!(kernel::link(&pod.name, "eth0").is_none());
    assert!(node.reservations("guestnet").is_empty());
    node.wait_no_host_veths(5);
    assert!(record(&node, "bad-2").is_none());
}

#[test]
fn del_after_the_namespace_is_gone_frees_everything() {
    let node = Node::new("ggone");
    let conf = guest_conf(&node, 75, json!({"mode": "tap", "localhostPorts": [80]}));
    let pod = TestNs::new("ggp");
    let path = pod.path();
    node.add(&conf, "gone-1", &pod, "eth0").expect_ok("ADD");
    assert!(record(&node, "gone-1").is_some());
    drop(pod);
    node.del(&conf, "gone-1", &path, "eth0")
        .expect_ok("DEL without netns");
    assert!(record(&node, "gone-1").is_none());
    assert!(node.reservations("guestnet").is_empty());
    node.wait_no_host_veths(5);
}
