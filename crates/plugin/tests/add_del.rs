//! ADD and DEL against the real kernel: what the plugin reports is compared
//! with what iproute2 reads back, and pods must actually reach each other.

mod common;

use common::{Node, bare, result_ip};
use serde_json::json;
use tweed_testkit::{TestNs, kernel};

#[test]
fn add_builds_bridge_veth_and_pod_config_and_pods_ping() {
    let node = Node::new("add");
    let conf = node.conf_v4("podnet", 11);
    let (a, b) = (TestNs::new("pa"), TestNs::new("pb"));

    let ra = node.add(&conf, "ctr-a", &a, "eth0").expect_ok("ADD a");
    let rb = node.add(&conf, "ctr-b", &b, "eth0").expect_ok("ADD b");
    assert_eq!(ra["cniVersion"], "1.1.0");
    let ip_a = result_ip(&ra, true);
    let ip_b = result_ip(&rb, true);
    assert_ne!(ip_a, ip_b);
    assert_eq!(ra["ips"][0]["gateway"], "10.244.11.1");
    assert_eq!(ra["ips"][0]["interface"], 2);

    // The bridge: exists once, up, carries the gateway address.
    let br = kernel::link(&node.ns.name, "tweed0").expect("bridge");
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert!(br["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert_eq!(
        kernel::addresses(&node.ns.name, "tweed0"),
        vec!["10.244.11.1/24"]
    );
    assert_eq!(ra["interfaces"][0]["name"], "tweed0");
    assert_eq!(ra["interfaces"][0]["mac"], br["address"]);

    // The host end: a hairpin port of the bridge, up, same MTU, alias set.
    let host_name = ra["interfaces"][1]["name"].as_str().unwrap().to_string();
    let host = kernel::link(&node.ns.name, &host_name).expect("host veth");
    assert_eq!(host["master"], "tweed0");
    assert_eq!(host["linkinfo"]["info_slave_data"]["hairpin"], true);
    assert_eq!(host["mtu"], 1500);
    assert_eq!(host["ifalias"], "tweed/podnet/ctr-a/eth0");

    // The pod end: right name, MAC as reported, address, default route,
    // arp_notify on.
    let eth0 = kernel::link(&a.name, "eth0").expect("pod eth0");
    assert_eq!(eth0["address"], ra["interfaces"][2]["mac"]);
    assert_eq!(eth0["mtu"], 1500);
    assert_eq!(ra["interfaces"][2]["sandbox"], a.path());
    assert_eq!(kernel::addresses(&a.name, "eth0"), vec![ip_a.clone()]);
    let routes = kernel::routes(&a.name, "-4");
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "10.244.11.1" && r["dev"] == "eth0"),
        "{routes:?}"
    );
    assert_eq!(
        kernel::sysctl(&a.name, "net.ipv4.conf.eth0.arp_notify"),
        "1"
    );
    assert_eq!(kernel::sysctl(&node.ns.name, "net.ipv4.ip_forward"), "1");

    // Packets: pod to pod across the bridge, and pod to gateway.
    assert!(a.ping(&bare(&ip_b)), "a cannot reach b");
    assert!(b.ping(&bare(&ip_a)), "b cannot reach a");
    assert!(a.ping("10.244.11.1"), "a cannot reach its gateway");

    // Reservations on disk are host-local's format.
    assert_eq!(
        node.reservations("podnet"),
        vec![bare(&ip_a), bare(&ip_b)]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    let content =
        std::fs::read_to_string(node.data_dir().join("podnet").join(bare(&ip_a))).unwrap();
    assert_eq!(content, "ctr-a\r\neth0");

    // DEL: reservation gone at once, veth gone shortly, pod b unaffected.
    node.del(&conf, "ctr-a", &a.path(), "eth0")
        .expect_ok("DEL a");
    assert_eq!(node.reservations("podnet"), vec![bare(&ip_b)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while kernel::link(&node.ns.name, &host_name).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "host veth {host_name} not removed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        kernel::link(&a.name, "eth0").is_none(),
        "pod end removed with the host end"
    );
    assert!(
        kernel::link(&node.ns.name, "tweed0").is_some(),
        "bridge stays for other pods"
    );
    assert!(b.ping("10.244.11.1"));
}

#[test]
fn dual_stack_and_ipv6_only() {
    let node = Node::new("dual");
    let conf = node.conf(
        "dual",
        "1.0.0",
        json!([[{"subnet": "10.244.12.0/24"}], [{"subnet": "fd00:12::/64"}]]),
    );
    let (a, b) = (TestNs::new("da"), TestNs::new("db"));
    let ra = node.add(&conf, "d-a", &a, "eth0").expect_ok("ADD a");
    let rb = node.add(&conf, "d-b", &b, "eth0").expect_ok("ADD b");
    assert_eq!(ra["ips"].as_array().unwrap().len(), 2);
    assert!(
        ra["ips"][0].get("version").is_none(),
        "1.0.0 results have no ips[].version"
    );
    let v6_a = result_ip(&ra, false);
    let v6_b = result_ip(&rb, false);
    let addrs = kernel::addresses(&a.name, "eth0");
    assert!(
        addrs.contains(&v6_a) && addrs.contains(&result_ip(&ra, true)),
        "{addrs:?}"
    );
    let r6 = kernel::routes(&a.name, "-6");
    assert!(
        r6.iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "fd00:12::1"),
        "{r6:?}"
    );
    assert!(kernel::addresses(&node.ns.name, "tweed0").contains(&"fd00:12::1/64".to_string()));
    assert!(a.ping(&bare(&v6_b)), "IPv6 pod to pod");
    assert!(a.ping(&bare(&result_ip(&rb, true))), "IPv4 pod to pod");

    let six = Node::new("v6");
    let conf6 = six.conf("only6", "1.1.0", json!([[{"subnet": "fd00:13::/64"}]]));
    let c = TestNs::new("c6");
    let d = TestNs::new("d6");
    let rc = six.add(&conf6, "s-c", &c, "eth0").expect_ok("ADD v6-only");
    six.add(&conf6, "s-d", &d, "eth0")
        .expect_ok("ADD v6-only d");
    assert_eq!(rc["ips"].as_array().unwrap().len(), 1);
    assert!(d.ping(&bare(&result_ip(&rc, false))));
}

#[test]
fn static_ip_and_mac_from_args_and_capabilities() {
    let node = Node::new("static");
    let mut conf = node.conf_v4("stat", 14);
    let a = TestNs::new("sa");
    let ra = node
        .call("ADD", &conf)
        .container("st-a", &a.path(), "eth0")
        .env(
            "CNI_ARGS",
            "IgnoreUnknown=1;IP=10.244.14.77;MAC=02:aa:bb:cc:dd:ee;K8S_POD_NAME=web;FOO=bar",
        )
        .run()
        .expect_ok("ADD with IP= and MAC=");
    assert_eq!(ra["ips"][0]["address"], "10.244.14.77/24");
    assert_eq!(
        kernel::link(&a.name, "eth0").unwrap()["address"],
        "02:aa:bb:cc:dd:ee"
    );

    conf["runtimeConfig"] = json!({"ips": ["10.244.14.88/24"], "mac": "02:11:22:33:44:55"});
    let b = TestNs::new("sb");
    let rb = node
        .add(&conf, "st-b", &b, "eth0")
        .expect_ok("ADD with capabilities");
    assert_eq!(rb["ips"][0]["address"], "10.244.14.88/24");
    assert_eq!(
        kernel::link(&b.name, "eth0").unwrap()["address"],
        "02:11:22:33:44:55"
    );

    // A taken address is refused with tweed's code and nothing is left.
    let c = TestNs::new("sc");
    let msg = node
        .add(&conf, "st-c", &c, "eth0")
        .expect_error(102, "taken static IP");
    assert!(msg.contains("10.244.14.88"), "{msg}");
    assert!(kernel::link(&c.name, "eth0").is_none());
    assert_eq!(
        node.reservations("stat"),
        vec!["10.244.14.77", "10.244.14.88"]
    );
}

#[test]
fn add_for_an_existing_interface_fails_and_keeps_the_first() {
    let node = Node::new("exist");
    let conf = node.conf_v4("ex", 15);
    let a = TestNs::new("ea");
    node.add(&conf, "ex-a", &a, "eth0").expect_ok("first ADD");
    let msg = node
        .add(&conf, "ex-b", &a, "eth0")
        .expect_error(103, "second ADD same ifname");
    assert!(msg.contains("CNI_IFNAME") && msg.contains("eth0"), "{msg}");
    assert_eq!(node.reservations("ex").len(), 1, "no reservation leaked");
    assert_eq!(node.host_veths().len(), 1);
    // A second interface with a second default route fails at the very
    // last step, and everything made before it is rolled back.
    let msg = node
        .add(&conf, "ex-a", &a, "net1")
        .expect_error(100, "second default route");
    assert!(msg.contains("isDefaultGateway"), "{msg}");
    assert!(
        kernel::link(&a.name, "net1").is_none(),
        "pod end rolled back"
    );
    assert_eq!(node.host_veths().len(), 1, "host end rolled back");
    assert_eq!(node.reservations("ex").len(), 1, "reservation rolled back");
    // As a secondary network without a default route it works.
    let mut secondary = conf.clone();
    secondary["isDefaultGateway"] = json!(false);
    node.add(&secondary, "ex-a", &a, "net1")
        .expect_ok("second interface");
    assert_eq!(kernel::addresses(&a.name, "net1").len(), 1);
    assert_eq!(node.reservations("ex").len(), 2);
}

#[test]
fn del_is_idempotent_and_works_without_netns() {
    let node = Node::new("del");
    let conf = node.conf_v4("delnet", 16);
    // Never added: success.
    node.del(&conf, "ghost", "", "eth0")
        .expect_ok("DEL never added");
    node.del(&conf, "ghost", "/run/netns/does-not-exist", "eth0")
        .expect_ok("DEL bad netns");

    // Added, then the namespace disappears, then DEL (twice).
    let a = TestNs::new("gone");
    let path = a.path();
    node.add(&conf, "g-1", &a, "eth0").expect_ok("ADD");
    assert_eq!(node.reservations("delnet").len(), 1);
    drop(a);
    node.del(&conf, "g-1", &path, "eth0")
        .expect_ok("DEL after netns gone");
    node.del(&conf, "g-1", "", "eth0")
        .expect_ok("DEL again, no netns");
    assert!(node.reservations("delnet").is_empty());
    node.wait_no_host_veths(5);

    // Added and deleted twice with the namespace present.
    let b = TestNs::new("twice");
    node.add(&conf, "g-2", &b, "eth0").expect_ok("ADD");
    node.del(&conf, "g-2", &b.path(), "eth0").expect_ok("DEL 1");
    node.del(&conf, "g-2", &b.path(), "eth0").expect_ok("DEL 2");
    assert!(node.reservations("delnet").is_empty());
    node.wait_no_host_veths(5);
    assert!(kernel::link(&b.name, "eth0").is_none());

    // And ADD right after DEL for the same attachment works.
    node.add(&conf, "g-2", &b, "eth0").expect_ok("ADD again");
    node.del(&conf, "g-2", &b.path(), "eth0").expect_ok("DEL");
    node.add(&conf, "g-2", &b, "eth0")
        .expect_ok("ADD at once after DEL");
    assert_eq!(node.reservations("delnet").len(), 1);
}

#[test]
fn results_follow_the_requested_version() {
    let node = Node::new("ver");
    for (i, v) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        .iter()
        .enumerate()
    {
        let name = format!("v{i}");
        let conf = node.conf(
            &name,
            v,
            json!([[{"subnet": format!("10.244.{}.0/24", 20 + i)}]]),
        );
        let p = TestNs::new("vp");
        let r = node
            .add(&conf, &format!("ver-{i}"), &p, "eth0")
            .expect_ok(v);
        assert_eq!(r["cniVersion"], *v);
        let has_version = r["ips"][0].get("version").is_some();
        assert_eq!(
            has_version,
            v.starts_with("0."),
            "{v}: ips[].version presence"
        );
        let has_mtu = r["interfaces"][2].get("mtu").is_some();
        assert_eq!(has_mtu, *v == "1.1.0", "{v}: interface mtu only in 1.1.0");
        if v.starts_with("0.") {
            assert_eq!(r["ips"][0]["version"], "4");
        }
        node.del(&conf, &format!("ver-{i}"), &p.path(), "eth0")
            .expect_ok("DEL");
    }
}

#[test]
fn mtu_and_hairpin_settings_are_applied() {
    let node = Node::new("mtu");
    let mut conf = node.conf_v4("mtunet", 17);
    conf["mtu"] = json!(1400);
    conf["hairpinMode"] = json!(false);
    conf["bridge"] = json!("twbr17");
    let a = TestNs::new("ma");
    let r = node.add(&conf, "m-a", &a, "eth0").expect_ok("ADD");
    let host = r["interfaces"][1]["name"].as_str().unwrap();
    assert_eq!(kernel::link(&node.ns.name, "twbr17").unwrap()["mtu"], 1400);
    assert_eq!(kernel::link(&node.ns.name, host).unwrap()["mtu"], 1400);
    assert_eq!(
        kernel::link(&node.ns.name, host).unwrap()["linkinfo"]["info_slave_data"]["hairpin"],
        false
    );
    assert_eq!(kernel::link(&a.name, "eth0").unwrap()["mtu"], 1400);
    assert_eq!(r["interfaces"][2]["mtu"], 1400);
}

#[test]
fn every_call_is_logged_with_microseconds() {
    let node = Node::new("log");
    let conf = node.conf_v4("lognet", 18);
    let a = TestNs::new("la");
    node.add(&conf, "log-a", &a, "eth0").expect_ok("ADD");
    node.add(&conf, "log-a", &a, "eth0")
        .expect_error(103, "repeat ADD");
    node.del(&conf, "log-a", &a.path(), "eth0").expect_ok("DEL");
    let lines = node.log_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for l in &lines {
        let ts = l["ts"].as_str().unwrap();
        // 2026-11-22T06:01:02.123456Z
        assert_eq!(ts.len(), 27, "{ts}");
        assert_eq!(&ts[19..20], ".");
        assert!(l["durationUs"].as_u64().is_some());
        assert_eq!(l["containerID"], "log-a");
        assert_eq!(l["ifname"], "eth0");
        assert_eq!(l["netns"], a.path());
    }
    assert_eq!(lines[0]["cmd"], "ADD");
    assert_eq!(lines[0]["result"], "ok");
    assert_eq!(lines[1]["result"], "error");
    assert_eq!(lines[1]["code"], 103);
    assert_eq!(lines[2]["cmd"], "DEL");

    // An unwritable log never fails the call.
    let mut conf2 = node.conf_v4("lognet2", 19);
    conf2["logFile"] = json!("/proc/version/cannot/cni.log");
    let b = TestNs::new("lb");
    node.add(&conf2, "log-b", &b, "eth0")
        .expect_ok("ADD with unwritable log");
}

/// `logOptions` caps the call log: a call that finds the file at its
/// size rotates it, also when the configuration is rejected.
#[test]
fn a_full_call_log_is_rotated() {
    let node = Node::new("logrot");
    let mut conf = node.conf_v4("logrotnet", 21);
    conf["logOptions"] = json!({"maxSize": 1, "maxBackups": 1});
    let old = |n: usize| format!("{{\"old\":{n}}}\n").repeat(1 << 20).into_bytes();
    let rotated = node.log_file().with_extension("log.1");

    std::fs::write(node.log_file(), old(1)).unwrap();
    let a = TestNs::new("lr");
    node.add(&conf, "logrot-a", &a, "eth0").expect_ok("ADD");
    let lines = node.log_lines();
    assert_eq!(lines.len(), 1, "only this call's line is in the new file");
    assert_eq!(lines[0]["cmd"], "ADD");
    assert!(
        std::fs::read(&rotated).unwrap() == old(1),
        "cni.log.1 is the old file"
    );

    // Rejected configurations rotate too; one backup: the oldest goes.
    std::fs::write(node.log_file(), old(2)).unwrap();
    let mut bad = conf.clone();
    bad["mtu"] = json!(1);
    node.add(&bad, "logrot-a", &a, "eth1")
        .expect_error(7, "bad mtu");
    assert_eq!(node.log_lines().len(), 1);
    assert!(std::fs::read(&rotated).unwrap() == old(2));
    assert!(!node.log_file().with_extension("log.2").exists());
}

#[test]
fn chained_after_another_plugin_keeps_the_previous_result() {
    let node = Node::new("chain");
    let mut conf = node.conf_v4("chainnet", 48);
    conf["isDefaultGateway"] = json!(false);
    // What an earlier plugin in the list reported.
    conf["prevResult"] = json!({
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "net0", "sandbox": "/run/netns/elsewhere"}],
        "ips": [{"address": "192.0.2.10/24", "interface": 0}],
        "routes": [{"dst": "192.0.2.0/24"}],
        "dns": {"nameservers": ["192.0.2.53"]}
    });
    let a = TestNs::new("ch");
    let r = node.add(&conf, "ch-1", &a, "eth0").expect_ok("chained ADD");
    let names: Vec<&str> = r["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "net0");
    assert_eq!(names[1], "tweed0");
    assert_eq!(names[3], "eth0");
    assert_eq!(r["ips"][0]["address"], "192.0.2.10/24");
    assert_eq!(r["ips"][0]["interface"], 0);
    assert_eq!(
        r["ips"][1]["interface"], 3,
        "our address points at our interface"
    );
    assert_eq!(r["routes"][0]["dst"], "192.0.2.0/24");
    assert_eq!(r["dns"]["nameservers"][0], "192.0.2.53");
    assert_eq!(
        kernel::addresses(&a.name, "eth0"),
        vec![r["ips"][1]["address"].as_str().unwrap().to_string()]
    );
}

#[test]
fn dns_comes_from_the_capability_else_the_config() {
    let node = Node::new("dns");
    let mut conf = node.conf_v4("dnsnet", 54);
    conf["dns"] = json!({"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]});
    let a = TestNs::new("dna");
    let r = node
        .add(&conf, "dns-a", &a, "eth0")
        .expect_ok("ADD with config dns");
    assert_eq!(r["dns"]["nameservers"][0], "10.96.0.10");
    assert_eq!(r["dns"]["search"][0], "svc.cluster.local");
    conf["runtimeConfig"] = json!({"dns": {"nameservers": ["10.96.0.53"], "options": ["ndots:5"]}});
    let b = TestNs::new("dnb");
    let r = node
        .add(&conf, "dns-b", &b, "eth0")
        .expect_ok("ADD with the dns capability");
    assert_eq!(r["dns"]["nameservers"][0], "10.96.0.53");
    assert_eq!(r["dns"]["options"][0], "ndots:5");
}
