//! A wire as a network of its own (`"wire": [end, end]`, one
//! NetworkAttachmentDefinition per cable, docs/multus-lab.md), through the
//! real binary: ADD records the attaching pod's end for tweedd beside the
//! ends already recorded, DEL removes that end alone, and every refusal
//! names its field and leaves the record as it was.

mod common;

use common::Node;
use serde_json::{Value, json};
use tweed_testkit::TestNs;

fn pod_args(name: &str) -> String {
    format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=lab;K8S_POD_NAME={name}")
}

fn wire_conf(node: &Node, name: &str, ends: Value) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "type": "tweed",
        "wire": ends,
        "wireDir": node.dir.path().join("wires"),
        "logFile": node.log_file(),
    })
}

/// The pod's record, as tweedd reads it (`None` when there is none).
fn record(node: &Node, id: &str) -> Option<Value> {
    let path = node.dir.path().join(format!("wires/pods/{id}.json"));
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).expect("record JSON"))
}

fn ends(rec: &Option<Value>) -> Vec<String> {
    rec.as_ref()
        .and_then(|r| r["ends"].as_array())
        .into_iter()
        .flatten()
        .map(|e| format!("{}>{}@{}", e["ifname"], e["peer"], e["network"]))
        .collect()
}

#[test]
fn a_wire_network_records_this_pods_end_and_del_removes_it_alone() {
    let node = Node::new("wnet");
    let pod = TestNs::new("wnetpod");
    let cable = wire_conf(&node, "r1-r3", json!(["r1:eth2", "r3:eth1"]));
    let other = wire_conf(&node, "r1-r2", json!(["lab/r2:eth1", "r1:eth1"]));
    let add = |conf: &Value, pod_name: &str, ifname: &str| {
        node.call("ADD", conf)
            .container("c1", &pod.path(), ifname)
            .env("CNI_ARGS", &pod_args(pod_name))
            .run()
    };

    let result = add(&cable, "r1", "eth2").expect_ok("ADD r1 eth2");
    assert_eq!(result["interfaces"][0]["name"], "eth2", "{result}");
    assert!(
        result["ips"].as_array().is_none_or(Vec::is_empty),
        "{result}"
    );
    add(&other, "r1", "eth1").expect_ok("ADD r1 eth1");
    // A repeated ADD changes nothing.
    add(&cable, "r1", "eth2").expect_ok("ADD r1 eth2 again");
    let rec = record(&node, "c1");
    assert_eq!(rec.as_ref().unwrap()["pod"], "lab/r1");
    assert_eq!(
        ends(&rec),
        [
            "\"eth2\">\"lab/r3:eth1\"@\"r1-r3\"",
            "\"eth1\">\"lab/r2:eth1\"@\"r1-r2\"",
        ]
    );
    // The plugin makes no device: tweedd cables the wire.
    let links = tweed_testkit::kernel::links(&pod.name);
    assert_eq!(links.len(), 1, "{links:?}");

    // Refused, the record as it was.
    for (conf, pod_name, ifname, code, needle) in [
        (&cable, "r2", "eth2", 7, "wire: lab/r2:eth2 is neither end"),
        (&cable, "r1", "net1", 7, "wire: lab/r1:net1 is neither end"),
        (
            &wire_conf(&node, "r1-r9", json!(["r1:eth2", "r9:eth1"])),
            "r1",
            "eth2",
            7,
            "already wired to lab/r3:eth1 (by network r1-r3)",
        ),
        (
            &wire_conf(&node, "lo", json!(["r1:lo", "r9:eth1"])),
            "r1",
            "lo",
            103,
            "interface lo already exists",
        ),
        (
            &wire_conf(&node, "self", json!(["r1:eth5", "r1:eth6"])),
            "r1",
            "eth5",
            7,
            "to itself",
        ),
    ] {
        let msg = add(conf, pod_name, ifname).expect_error(code, needle);
        assert!(msg.contains(needle), "{msg}");
        assert_eq!(ends(&record(&node, "c1")).len(), 2, "after {needle}");
    }
    let no_pod = node
        .call("ADD", &cable)
        .container("c1", &pod.path(), "eth2")
        .env("CNI_ARGS", "IgnoreUnknown=1")
        .run();
    let msg = no_pod.expect_error(4, "no pod name");
    assert!(msg.contains("K8S_POD_NAME"), "{msg}");

    // DEL takes this network's end alone; the last end takes the record.
    let del = |conf: &Value, ifname: &str| {
        node.call("DEL", conf)
            .container("c1", &pod.path(), ifname)
            .env("CNI_ARGS", &pod_args("r1"))
            .run()
            .expect_ok("DEL")
    };
    del(&cable, "eth2");
    assert_eq!(
        ends(&record(&node, "c1")),
        ["\"eth1\">\"lab/r2:eth1\"@\"r1-r2\""]
    );
    del(&cable, "eth2");
    del(&other, "eth1");
    assert!(record(&node, "c1").is_none());
}
