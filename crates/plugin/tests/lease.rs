//! The node lease file as the source of the pod subnet: tweed's own keys
//! and flannel's, the "try again later" error before the agent wrote it,
//! and STATUS following it.

mod common;

use common::{Node, result_ip};
use serde_json::json;
use tweed_testkit::{TestNs, kernel};

#[test]
fn subnet_comes_from_the_tweed_lease_file() {
    let node = Node::new("lease");
    let file = node.dir.path().join("subnet.env");
    let conf = node.lease_conf("leasenet", &file);
    let pod = TestNs::new("lp");

    // Before the agent wrote the lease: 11, and STATUS says unavailable.
    let msg = node
        .add(&conf, "l-1", &pod, "eth0")
        .expect_error(11, "no lease yet");
    assert!(
        msg.contains(&file.display().to_string()) && msg.contains("node agent"),
        "{msg}"
    );
    let status = node.call("STATUS", &conf).run();
    let msg = status.expect_error(50, "STATUS without lease");
    assert!(msg.contains("has not written"), "{msg}");
    assert!(node.reservations("leasenet").is_empty());
    assert!(kernel::link(&pod.name, "eth0").is_none());

    std::fs::write(
        &file,
        "TWEED_NETWORK=10.244.0.0/16\nTWEED_SUBNET=10.244.50.1/24\nTWEED_MTU=1450\nTWEED_IPMASQ=true\n\
         TWEED_IPV6_NETWORK=fd00:10:244::/56\nTWEED_IPV6_SUBNET=fd00:10:244:50::1/64\n",
    )
    .unwrap();
    node.call("STATUS", &conf)
        .run()
        .expect_ok("STATUS with lease");
    let r = node
        .add(&conf, "l-1", &pod, "eth0")
        .expect_ok("ADD from lease");
    assert!(result_ip(&r, true).starts_with("10.244.50."));
    assert!(result_ip(&r, false).starts_with("fd00:10:244:50::"));
    assert_eq!(r["ips"][0]["gateway"], "10.244.50.1");
    // The lease's MTU is used end to end.
    assert_eq!(kernel::link(&pod.name, "eth0").unwrap()["mtu"], 1450);
    assert_eq!(kernel::link(&node.ns.name, "tweed0").unwrap()["mtu"], 1450);
    assert!(kernel::addresses(&node.ns.name, "tweed0").contains(&"10.244.50.1/24".to_string()));
    assert!(pod.ping("10.244.50.1"));
    assert!(pod.ping("fd00:10:244:50::1"));

    // DEL works even if the lease disappears meanwhile.
    std::fs::remove_file(&file).unwrap();
    node.del(&conf, "l-1", &pod.path(), "eth0")
        .expect_ok("DEL without lease");
    assert!(node.reservations("leasenet").is_empty());
}

#[test]
fn flannel_lease_file_is_understood() {
    let node = Node::new("flan");
    let file = node.dir.path().join("flannel-subnet.env");
    std::fs::write(
        &file,
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.51.1/24\nFLANNEL_MTU=1410\nFLANNEL_IPMASQ=true\n",
    )
    .unwrap();
    let mut conf = node.lease_conf("flannet", &file);
    conf["isDefaultGateway"] = json!(false);
    let pod = TestNs::new("fp");
    let r = node
        .add(&conf, "f-1", &pod, "eth0")
        .expect_ok("ADD on a flannel lease");
    assert!(result_ip(&r, true).starts_with("10.244.51."));
    assert_eq!(kernel::link(&pod.name, "eth0").unwrap()["mtu"], 1410);
    // Without a default route, the cluster network is routed via the bridge.
    let routes = kernel::routes(&pod.name, "-4");
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "10.244.0.0/16" && r["gateway"] == "10.244.51.1"),
        "{routes:?}"
    );
    assert!(!routes.iter().any(|r| r["dst"] == "default"), "{routes:?}");
}

#[test]
fn invalid_lease_file_is_its_own_error() {
    let node = Node::new("badl");
    let file = node.dir.path().join("subnet.env");
    std::fs::write(&file, "TWEED_SUBNET=10.244.52.0/24\n").unwrap();
    let conf = node.lease_conf("badlease", &file);
    let pod = TestNs::new("bp");
    let msg = node
        .add(&conf, "b-1", &pod, "eth0")
        .expect_error(107, "network address as gateway");
    assert!(msg.contains("TWEED_SUBNET"), "{msg}");
    node.call("STATUS", &conf)
        .run()
        .expect_error(50, "STATUS on a bad lease");
}

#[test]
fn status_reports_an_unusable_ipam_store() {
    let node = Node::new("stst");
    let mut conf = node.conf_v4("stnet", 53);
    // A regular file where the store's directory should be.
    let blocker = node.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    conf["ipam"]["dataDir"] = json!(blocker);
    let msg = node
        .call("STATUS", &conf)
        .run()
        .expect_error(50, "STATUS with a broken store");
    assert!(msg.contains("IPAM store"), "{msg}");
    // And the same config with a usable store is fine.
    node.call("STATUS", &node.conf_v4("stnet", 53))
        .run()
        .expect_ok("STATUS");
}
