//! CHECK compares the attachment with prevResult and the kernel; GC removes
//! everything of the network that is not in the runtime's valid list.

mod common;

use common::{Node, bare, result_ip};
use serde_json::{Value, json};
use tweed_testkit::{TestNs, kernel, run_ok};

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

#[test]
fn check_passes_after_add_and_catches_each_kind_of_drift() {
    let node = Node::new("chk");
    let conf = node.conf(
        "chknet",
        "1.0.0",
        json!([[{"subnet": "10.244.45.0/24"}], [{"subnet": "fd00:45::/64"}]]),
    );
    let pod = TestNs::new("cp");
    let r = node.add(&conf, "chk-1", &pod, "eth0").expect_ok("ADD");
    let check = || {
        node.call("CHECK", &with_prev(&conf, &r))
            .container("chk-1", &pod.path(), "eth0")
            .run()
    };
    check().expect_ok("CHECK right after ADD");

    // A route removed inside the pod.
    run_ok("ip", &["-n", &pod.name, "route", "del", "default"]);
    let msg = check().expect_error(105, "missing default route");
    assert!(msg.contains("0.0.0.0/0"), "{msg}");
    run_ok(
        "ip",
        &[
            "-n",
            &pod.name,
            "route",
            "add",
            "default",
            "via",
            "10.244.45.1",
        ],
    );
    check().expect_ok("CHECK after restoring the route");

    // An address removed.
    let v6 = result_ip(&r, false);
    run_ok("ip", &["-n", &pod.name, "addr", "del", &v6, "dev", "eth0"]);
    let msg = check().expect_error(105, "missing address");
    assert!(msg.contains(&v6), "{msg}");
    run_ok(
        "ip",
        &["-n", &pod.name, "addr", "add", &v6, "dev", "eth0", "nodad"],
    );
    run_ok(
        "ip",
        &[
            "-n",
            &pod.name,
            "-6",
            "route",
            "replace",
            "default",
            "via",
            "fd00:45::1",
        ],
    );
    check().expect_ok("CHECK after restoring the address");

    // The host end taken off the bridge.
    let host = r["interfaces"][1]["name"].as_str().unwrap().to_string();
    run_ok(
        "ip",
        &["-n", &node.ns.name, "link", "set", &host, "nomaster"],
    );
    let msg = check().expect_error(105, "host veth off the bridge");
    assert!(msg.contains(&host), "{msg}");
    run_ok(
        "ip",
        &[
            "-n",
            &node.ns.name,
            "link",
            "set",
            &host,
            "master",
            "tweed0",
        ],
    );
    check().expect_ok("CHECK after re-enslaving");

    // The reservation lost.
    let v4 = bare(&result_ip(&r, true));
    std::fs::remove_file(node.data_dir().join("chknet").join(&v4)).unwrap();
    let msg = check().expect_error(105, "reservation gone");
    assert!(msg.contains(&v4), "{msg}");

    // The interface gone altogether.
    run_ok("ip", &["-n", &pod.name, "link", "del", "eth0"]);
    let msg = check().expect_error(105, "interface gone");
    assert!(msg.contains("eth0"), "{msg}");

    // CHECK without prevResult is a configuration error.
    node.call("CHECK", &conf)
        .container("chk-1", &pod.path(), "eth0")
        .run()
        .expect_error(7, "CHECK without prevResult");
}

#[test]
fn gc_keeps_valid_attachments_and_removes_the_rest() {
    let node = Node::new("gc");
    let conf = node.conf_v4("gcnet", 46);
    let other = node.conf_v4("othernet", 47);
    let pods: Vec<TestNs> = (0..4).map(|_| TestNs::new("gp")).collect();
    for (i, p) in pods.iter().enumerate() {
        node.add(&conf, &format!("gc-{i}"), p, "eth0")
            .expect_ok("ADD");
    }
    // Another network's attachment must survive this network's GC.
    let stranger = TestNs::new("gs");
    node.add(&other, "gc-x", &stranger, "eth0")
        .expect_ok("ADD other network");
    assert_eq!(node.host_veths().len(), 5);

    // Keep 0 and 2, by the current key.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": "gc-0", "ifname": "eth0"},
        {"containerID": "gc-2", "ifname": "eth0"},
    ]);
    node.call("GC", &gc).run().expect_ok("GC");
    assert_eq!(node.reservations("gcnet").len(), 2);
    assert_eq!(node.host_veths().len(), 3);
    assert!(kernel::link(&pods[1].name, "eth0").is_none());
    assert!(kernel::link(&pods[3].name, "eth0").is_none());
    assert!(kernel::link(&pods[0].name, "eth0").is_some());
    assert!(kernel::link(&stranger.name, "eth0").is_some());
    assert_eq!(node.reservations("othernet").len(), 1);

    // The older key works the same way: keep only 2.
    let mut gc = conf.clone();
    gc["cni.dev/attachments"] = json!([{"containerID": "gc-2", "ifname": "eth0"}]);
    node.call("GC", &gc)
        .run()
        .expect_ok("GC with cni.dev/attachments");
    assert_eq!(node.reservations("gcnet").len(), 1);
    assert!(kernel::link(&pods[0].name, "eth0").is_none());
    assert!(kernel::link(&pods[2].name, "eth0").is_some());

    // An empty list removes everything of this network, and nothing else.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    node.call("GC", &gc).run().expect_ok("GC everything");
    assert!(node.reservations("gcnet").is_empty());
    assert_eq!(node.host_veths().len(), 1);
    assert_eq!(node.reservations("othernet").len(), 1);

    // GC without any list is refused rather than guessed.
    node.call("GC", &conf)
        .run()
        .expect_error(7, "GC without a list");
}
