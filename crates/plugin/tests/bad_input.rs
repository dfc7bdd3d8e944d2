//! Bad input: each case gets the right CNI error code, a message naming the
//! offending field or variable, and leaves nothing behind — no reservation,
//! no interface in the pod, no host veth.

mod common;

use common::{Node, tweed_bin};
use serde_json::{Value, json};
use tweed_testkit::{CniCall, TestNs, kernel};

struct Case {
    what: &'static str,
    code: u64,
    /// Text the message must contain.
    names: &'static str,
    call: CniCall,
}

fn assert_nothing_left(node: &Node, pod: &TestNs, network: &str) {
    assert!(
        node.reservations(network).is_empty(),
        "reservations left: {:?}",
        node.reservations(network)
    );
    assert!(
        node.host_veths().is_empty(),
        "host veths left: {:?}",
        node.host_veths()
    );
    let pod_links: Vec<String> = kernel::links(&pod.name)
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect();
    assert_eq!(pod_links, vec!["lo"], "pod namespace touched");
}

#[test]
fn bad_input_table() {
    let node = Node::new("bad");
    let pod = TestNs::new("badpod");
    let good = node.conf_v4("badnet", 30);
    let add = |conf: &Value| {
        CniCall::new(tweed_bin(), "ADD")
            .config(conf)
            .container("bad-ctr", &pod.path(), "eth0")
            .in_node(&node.ns.name)
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    let not_a_netns = node.dir.path().join("not-a-netns");
    std::fs::write(&not_a_netns, "").unwrap();

    let cases = vec![
        Case {
            what: "broken JSON",
            code: 6,
            names: "JSON",
            call: add(&good).raw_stdin(b"{\"cniVersion\": \"1.0.0\", "),
        },
        Case {
            what: "JSON but not an object",
            code: 6,
            names: "object",
            call: add(&good).raw_stdin(b"[1,2]"),
        },
        Case {
            what: "empty stdin",
            code: 6,
            names: "JSON",
            call: add(&good).raw_stdin(b""),
        },
        Case {
            what: "unknown cniVersion",
            code: 1,
            names: "cniVersion",
            call: add(&with(&|c| c["cniVersion"] = json!("9.9.9"))),
        },
        Case {
            what: "missing cniVersion",
            code: 7,
            names: "cniVersion",
            call: add(&with(&|c| {
                c.as_object_mut().unwrap().remove("cniVersion");
            })),
        },
        Case {
            what: "invalid CIDR",
            code: 7,
            names: "ipam.ranges[0][0].subnet",
            call: add(&with(&|c| {
                c["ipam"]["ranges"] = json!([[{"subnet": "10.244.30.0/33"}]])
            })),
        },
        Case {
            what: "range outside the subnet",
            code: 7,
            names: "ipam.ranges[0][0].rangeStart",
            call: add(&with(
                &|c| {
                    c["ipam"]["ranges"] =
                        json!([[{"subnet": "10.244.30.0/24", "rangeStart": "10.244.31.5"}]])
                },
            )),
        },
        Case {
            what: "gateway outside the subnet",
            code: 7,
            names: "ipam.ranges[0][0].gateway",
            call: add(&with(&|c| {
                c["ipam"]["ranges"] = json!([[{"subnet": "10.244.30.0/24", "gateway": "10.9.9.1"}]])
            })),
        },
        Case {
            what: "wrong type for mtu",
            code: 7,
            names: "mtu",
            call: add(&with(&|c| c["mtu"] = json!("big"))),
        },
        Case {
            what: "mtu out of range",
            code: 7,
            names: "mtu",
            call: add(&with(&|c| c["mtu"] = json!(20))),
        },
        Case {
            what: "wrong type for hairpinMode",
            code: 7,
            names: "hairpinMode",
            call: add(&with(&|c| c["hairpinMode"] = json!("yes"))),
        },
        Case {
            what: "bridge name too long",
            code: 7,
            names: "bridge",
            call: add(&with(&|c| c["bridge"] = json!("a-very-long-bridge-name"))),
        },
        Case {
            what: "ipam not an object",
            code: 7,
            names: "ipam",
            call: add(&with(&|c| c["ipam"] = json!("tweed"))),
        },
        Case {
            what: "missing network name",
            code: 7,
            names: "name",
            call: add(&with(&|c| {
                c.as_object_mut().unwrap().remove("name");
            })),
        },
        Case {
            what: "missing CNI_COMMAND",
            code: 4,
            names: "CNI_COMMAND",
            call: add(&good).without_env("CNI_COMMAND"),
        },
        Case {
            what: "unknown CNI_COMMAND",
            code: 4,
            names: "CNI_COMMAND",
            call: add(&good).env("CNI_COMMAND", "FROB"),
        },
        Case {
            what: "missing CNI_CONTAINERID",
            code: 4,
            names: "CNI_CONTAINERID",
            call: add(&good).without_env("CNI_CONTAINERID"),
        },
        Case {
            what: "empty CNI_CONTAINERID",
            code: 4,
            names: "CNI_CONTAINERID",
            call: add(&good).env("CNI_CONTAINERID", ""),
        },
        Case {
            what: "bad CNI_CONTAINERID",
            code: 4,
            names: "CNI_CONTAINERID",
            call: add(&good).env("CNI_CONTAINERID", "-leading-dash"),
        },
        Case {
            what: "missing CNI_NETNS",
            code: 4,
            names: "CNI_NETNS",
            call: add(&good).without_env("CNI_NETNS"),
        },
        Case {
            what: "missing CNI_IFNAME",
            code: 4,
            names: "CNI_IFNAME",
            call: add(&good).without_env("CNI_IFNAME"),
        },
        Case {
            what: "interface name too long",
            code: 4,
            names: "CNI_IFNAME",
            call: add(&good).env("CNI_IFNAME", "eth0123456789abc"),
        },
        Case {
            what: "interface name with a slash",
            code: 4,
            names: "CNI_IFNAME",
            call: add(&good).env("CNI_IFNAME", "eth/0"),
        },
        Case {
            what: "CNI_NETNS does not exist",
            code: 4,
            names: "CNI_NETNS",
            call: add(&good).env("CNI_NETNS", "/run/netns/tweed-no-such-ns"),
        },
        Case {
            what: "CNI_NETNS not a namespace",
            code: 4,
            names: "CNI_NETNS",
            call: add(&good).env("CNI_NETNS", not_a_netns.to_str().unwrap()),
        },
        Case {
            what: "CNI_NETNS another namespace type",
            code: 4,
            names: "CNI_NETNS",
            call: add(&good).env("CNI_NETNS", "/proc/self/ns/uts"),
        },
        Case {
            what: "bad CNI_ARGS IP",
            code: 4,
            names: "CNI_ARGS",
            call: add(&good).env("CNI_ARGS", "IP=10.244.30.999"),
        },
        Case {
            what: "bad CNI_ARGS MAC",
            code: 4,
            names: "CNI_ARGS",
            call: add(&good).env("CNI_ARGS", "MAC=zz:zz:zz:zz:zz:zz"),
        },
        Case {
            what: "malformed CNI_ARGS",
            code: 4,
            names: "CNI_ARGS",
            call: add(&good).env("CNI_ARGS", "IgnoreUnknown"),
        },
        Case {
            what: "bad runtimeConfig.mac",
            code: 7,
            names: "runtimeConfig.mac",
            call: add(&with(&|c| c["runtimeConfig"] = json!({"mac": "nope"}))),
        },
        Case {
            what: "bad runtimeConfig.ips",
            code: 7,
            names: "runtimeConfig.ips[0]",
            call: add(&with(&|c| {
                c["runtimeConfig"] = json!({"ips": ["300.1.1.1/24"]})
            })),
        },
        Case {
            what: "requested IP outside the ranges",
            code: 102,
            names: "10.244.99.9",
            call: add(&good).env("CNI_ARGS", "IP=10.244.99.9"),
        },
        Case {
            what: "CHECK on a 0.3.1 config",
            code: 1,
            names: "CHECK",
            call: add(&with(&|c| c["cniVersion"] = json!("0.3.1"))).env("CNI_COMMAND", "CHECK"),
        },
        Case {
            what: "GC on a 1.0.0 config",
            code: 1,
            names: "GC",
            call: add(&with(&|c| c["cniVersion"] = json!("1.0.0"))).env("CNI_COMMAND", "GC"),
        },
        Case {
            what: "missing lease file",
            code: 11,
            names: "has not written",
            call: add(&with(&|c| {
                c["ipam"] = json!({"dataDir": node.data_dir()});
                c["subnetFile"] = json!(node.dir.path().join("no-such-subnet.env"));
            })),
        },
    ];

    let total = cases.len();
    for case in cases {
        let out = case.call.run();
        let msg = out.expect_error(case.code, case.what);
        assert!(
            msg.contains(case.names),
            "{}: message {msg:?} does not name {:?}",
            case.what,
            case.names
        );
        // The error object is what the spec asks for.
        let v = out.json();
        assert!(v["cniVersion"].is_string(), "{}: {v}", case.what);
        assert_nothing_left(&node, &pod, "badnet");
    }
    assert!(total >= 30);
    // Every rejected call was logged too.
    assert!(
        node.log_lines().len() >= total - 10,
        "most bad calls are logged"
    );
}

#[test]
fn exhausted_range_is_reported_and_leaves_nothing() {
    let node = Node::new("full");
    // A /30 has exactly one usable pod address (host-local skips .1, the
    // gateway, and the broadcast .3).
    let conf = node.conf("tiny", "1.1.0", json!([[{"subnet": "10.244.31.0/30"}]]));
    let first = TestNs::new("f1");
    node.add(&conf, "full-1", &first, "eth0")
        .expect_ok("the one address");
    let second = TestNs::new("f2");
    let msg = node
        .add(&conf, "full-2", &second, "eth0")
        .expect_error(101, "exhausted");
    assert!(msg.contains("10.244.31.2"), "names the range: {msg}");
    assert_eq!(node.reservations("tiny"), vec!["10.244.31.2"]);
    assert!(kernel::link(&second.name, "eth0").is_none());
    assert_eq!(node.host_veths().len(), 1);
}

#[test]
fn version_answers_without_a_config() {
    let out = CniCall::new(tweed_bin(), "VERSION")
        .raw_stdin(br#"{"cniVersion":"0.4.0"}"#)
        .run();
    let v = out.expect_ok("VERSION");
    assert_eq!(v["cniVersion"], "0.4.0");
    let supported: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(supported, vec!["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
    // podman calls VERSION with placeholder variables and no config.
    let out = CniCall::new(tweed_bin(), "VERSION")
        .env("CNI_NETNS", "dummy")
        .env("CNI_IFNAME", "dummy")
        .env("CNI_PATH", "dummy")
        .run();
    assert_eq!(
        out.expect_ok("VERSION without stdin")["cniVersion"],
        "1.1.0"
    );
}
