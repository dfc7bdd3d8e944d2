//! tweed together with Debian's reference CNI plugins (containernetworking
//! plugins 1.1.1 in /usr/lib/cni): chained before portmap, bandwidth and
//! tuning; sharing host-local's IPAM store (and a bridge) with the
//! reference bridge + host-local, in both directions; and delegating its
//! IPAM to host-local. Every effect is read back from the kernel (iproute2
//! and tc JSON, iptables-save, sysctls) or proven with packets.

mod common;

use common::{Node, NsProcess, bare, http_get, http_get_within, require_busybox, tweed_bin};
use serde_json::{Value, json};
use tweed_testkit::{
    Attachment, Chain, CniCall, CniOutput, TestNs, kernel, reference_plugin, run_ok,
};

/// `tc -j qdisc show` in `ns` (all devices, or one).
fn qdiscs(ns: &str, dev: Option<&str>) -> Vec<Value> {
    let mut args = vec!["-n", ns, "-j", "qdisc", "show"];
    if let Some(d) = dev {
        args.extend(["dev", d]);
    }
    serde_json::from_str::<Value>(&run_ok("tc", &args))
        .expect("tc qdisc JSON")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The root qdisc of `dev`, asserted to be a tbf with this rate and burst
/// (tc reports both in bytes).
fn assert_tbf(ns: &str, dev: &str, rate_bytes: u64, burst_bytes: u64) {
    let q = qdiscs(ns, Some(dev));
    let root = q
        .iter()
        .find(|q| q["root"] == true)
        .unwrap_or_else(|| panic!("no root qdisc on {dev}: {q:?}"));
    assert_eq!(root["kind"], "tbf", "{dev}: {root}");
    assert_eq!(root["options"]["rate"], rate_bytes, "{dev}: {root}");
    assert_eq!(root["options"]["burst"], burst_bytes, "{dev}: {root}");
}

/// The node's nat table as iptables-save prints it.
fn nat_table(node: &Node) -> String {
    assert!(
        std::path::Path::new("/usr/sbin/iptables-save").exists(),
        "iptables-save is missing: install iptables (scripts/install-deps.sh)"
    );
    run_ok(
        "ip",
        &["netns", "exec", &node.ns.name, "iptables-save", "-t", "nat"],
    )
}

/// A namespace standing for another host on the node's network: linked to
/// the node by its own veth, 10.244.<third>.2/24 with the node at .1 and a
/// default route through it.
fn client_beside(node: &Node, third: u8, node_end: &str) -> TestNs {
    let client = TestNs::new("icl");
    let (n, c) = (node.ns.name.as_str(), client.name.as_str());
    let node_addr = format!("10.244.{third}.1/24");
    let client_addr = format!("10.244.{third}.2/24");
    let gateway = format!("10.244.{third}.1");
    run_ok(
        "ip",
        &[
            "-n", n, "link", "add", node_end, "type", "veth", "peer", "name", "eth0", "netns", c,
        ],
    );
    run_ok("ip", &["-n", n, "addr", "add", &node_addr, "dev", node_end]);
    run_ok("ip", &["-n", n, "link", "set", node_end, "up"]);
    run_ok("ip", &["-n", c, "addr", "add", &client_addr, "dev", "eth0"]);
    run_ok("ip", &["-n", c, "link", "set", "eth0", "up"]);
    run_ok("ip", &["-n", c, "route", "add", "default", "via", &gateway]);
    client
}

/// True when Debian's installed containernetworking-plugins predates 1.3.0,
/// whose portmap CHECK looks for the IPv4 rules in ip6tables as well and so
/// always fails where ip6tables' nat table is usable
/// (containernetworking/plugins#819, fixed by fb5d195f in 1.3.0).
fn portmap_check_is_broken() -> bool {
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "containernetworking-plugins"])
        .output()
        .expect("dpkg-query");
    let v = String::from_utf8_lossy(&out.stdout);
    let mut parts = v.split(['.', '+', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) < (1, 3),
        _ => false,
    }
}

/// A page with a unique body in the node's temp dir, for busybox httpd.
fn web_root(node: &Node, token: &str) -> std::path::PathBuf {
    let dir = node.dir.path().join("www");
    std::fs::create_dir_all(&dir).expect("www dir");
    std::fs::write(dir.join("index.html"), format!("{token}\n")).expect("index.html");
    dir
}

/// tweed first in a 1.0.0 conflist, then the reference portmap (port
/// mapping capability), bandwidth (bandwidth capability) and tuning (a
/// sysctl, a MAC and an MTU), run by the testkit's libcni-like [`Chain`]
/// with every plugin in the node namespace. After ADD the kernel shows each
/// plugin's work on tweed's attachment: tuning's sysctl, MAC and MTU in the
/// pod; bandwidth's tbf on the host veth and on its ifb device, fed by a
/// mirred redirect; portmap's DNAT rule — and a TCP client in another
/// namespace, and one in the node itself, reach an httpd inside the pod
/// through the host port. CHECK through the chain passes (see
/// [`portmap_check_is_broken`] for the reference portmap's own CHECK); DEL
/// in reverse order removes the rule, the ifb, the qdiscs, the veth and the
/// reservation, and the host port stops answering.
#[test]
fn chained_with_portmap_bandwidth_and_tuning() {
    require_busybox();
    for p in ["portmap", "bandwidth", "tuning"] {
        reference_plugin(p);
    }
    let node = Node::new("ich");
    let net = "twic63";
    let mac = "02:42:0a:f4:3f:63";
    let tweed = json!({
        "type": "tweed",
        "bridge": net,
        "logFile": node.log_file(),
        "ipam": {
            "type": "tweed",
            "ranges": [[{"subnet": "10.244.63.0/24"}]],
            "dataDir": node.data_dir(),
        }
    });
    let portmap = json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true});
    let bandwidth = json!({"type": "bandwidth", "capabilities": {"bandwidth": true}});
    let tuning = json!({
        "type": "tuning",
        "sysctl": {"net.core.somaxconn": "512"},
        // Where tuning saves the link settings it restores on DEL (default
        // /run/cni/tuning).
        "dataDir": node.dir.path().join("tuning"),
        "mac": mac,
        "mtu": 1400,
    });
    let list = |plugins: &[&Value]| json!({"cniVersion": "1.0.0", "name": net, "plugins": plugins});
    let chain_of = |conflist: Value| {
        Chain::new(conflist)
            .binary("tweed", tweed_bin())
            .in_node(&node.ns.name)
    };
    let chain = chain_of(list(&[&tweed, &portmap, &bandwidth, &tuning]));

    let pod = TestNs::new("icp");
    let client = client_beside(&node, 64, "twic64");
    let mut att = Attachment {
        container_id: format!("ichain-{}", std::process::id()),
        netns: pod.path(),
        ifname: "eth0".into(),
        ..Default::default()
    };
    att.capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": 8063, "containerPort": 80, "protocol": "tcp"}]),
    );
    // bits/s and bits; tc reports bytes: in 1_000_000/10_000, out 2_000_000/20_000.
    att.capability_args.insert(
        "bandwidth".into(),
        json!({"ingressRate": 8_000_000, "ingressBurst": 80_000,
               "egressRate": 16_000_000, "egressBurst": 160_000}),
    );

    let result = chain
        .add(&att)
        .unwrap_or_else(|out| panic!("chained ADD failed: {out:?}"));
    let ip = bare(&common::result_ip(&result, true));
    assert_eq!(
        kernel::addresses(&pod.name, "eth0"),
        vec![format!("{ip}/24")]
    );
    let veths = node.host_veths();
    assert_eq!(veths.len(), 1, "{veths:?}");
    let host_veth = veths[0].clone();

    // tuning, inside the pod (and the result it passed on).
    assert_eq!(kernel::sysctl(&pod.name, "net.core.somaxconn"), "512");
    let eth0 = kernel::link(&pod.name, "eth0").expect("pod eth0");
    assert_eq!(eth0["address"], mac);
    assert_eq!(eth0["mtu"], 1400);
    assert_eq!(result["interfaces"][2]["mac"], mac);
    let tuning_state = node
        .dir
        .path()
        .join("tuning")
        .join(format!("{}_eth0.json", att.container_id));
    assert!(tuning_state.exists(), "tuning saved no state");

    // bandwidth: traffic to the pod shaped on the host veth; traffic from
    // the pod redirected from the veth's ingress to an ifb and shaped there.
    let ifbs: Vec<String> = kernel::links(&node.ns.name)
        .iter()
        .filter(|l| l["linkinfo"]["info_kind"] == "ifb")
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ifbs.len(), 1, "one ifb device: {ifbs:?}");
    let ifb = ifbs[0].clone();
    assert!(
        result["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == ifb.as_str()),
        "{result}"
    );
    assert_tbf(&node.ns.name, &host_veth, 1_000_000, 10_000);
    assert_tbf(&node.ns.name, &ifb, 2_000_000, 20_000);
    assert!(
        qdiscs(&node.ns.name, Some(&host_veth))
            .iter()
            .any(|q| q["kind"] == "ingress"),
        "no ingress qdisc on {host_veth}"
    );
    let filters: Value = serde_json::from_str(&run_ok(
        "tc",
        &[
            "-n",
            &node.ns.name,
            "-j",
            "filter",
            "show",
            "dev",
            &host_veth,
            "ingress",
        ],
    ))
    .expect("tc filter JSON");
    let redirects_to_ifb = filters.as_array().into_iter().flatten().any(|f| {
        f["options"]["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["kind"] == "mirred" && a["to_dev"] == ifb.as_str())
    });
    assert!(redirects_to_ifb, "no redirect to {ifb}: {filters}");

    // portmap: the DNAT rule, and real connections through it.
    let nat = nat_table(&node);
    let dnat = format!("--dport 8063 -j DNAT --to-destination {ip}:80");
    assert!(nat.contains(&dnat), "no `{dnat}` in:\n{nat}");
    assert!(nat.contains(&att.container_id), "{nat}");
    let token = format!("pod-behind-8063-{}", std::process::id());
    let _server = NsProcess::httpd(&pod.name, 80, &web_root(&node, &token));
    let from_client = "http://10.244.64.1:8063/";
    assert_eq!(
        http_get_within(&client.name, from_client, 10),
        format!("{token}\n")
    );
    assert_eq!(
        http_get_within(&node.ns.name, "http://10.244.63.1:8063/", 10),
        format!("{token}\n"),
        "from the node itself"
    );

    // CHECK with the cached result.
    if let Err(out) = chain.check(&att, &result) {
        let msg = out.json()["msg"].as_str().unwrap_or_default().to_string();
        assert!(
            portmap_check_is_broken() && msg.contains("could not check ipv6 dnat"),
            "chained CHECK failed: {out:?}"
        );
        // The reference portmap's CHECK is broken here (see above); the
        // rule it would look for was read back from the kernel already.
        // Everything else in the list must pass.
        chain_of(list(&[&tweed, &bandwidth, &tuning]))
            .check(&att, &result)
            .unwrap_or_else(|out| panic!("CHECK without portmap failed: {out:?}"));
    }

    // DEL in reverse order takes everything away.
    chain
        .del(&att, Some(&result))
        .unwrap_or_else(|out| panic!("chained DEL failed: {out:?}"));
    let nat = nat_table(&node);
    assert!(!nat.contains(&format!("{ip}:80")), "DNAT left:\n{nat}");
    assert!(
        !nat.contains(&att.container_id),
        "portmap rule left:\n{nat}"
    );
    assert!(kernel::link(&node.ns.name, &ifb).is_none(), "ifb left");
    assert!(!tuning_state.exists(), "tuning state left");
    assert!(node.reservations(net).is_empty());
    assert!(kernel::link(&pod.name, "eth0").is_none(), "pod eth0 left");
    node.wait_no_host_veths(10);
    let left: Vec<Value> = qdiscs(&node.ns.name, None)
        .into_iter()
        .filter(|q| q["kind"] == "tbf" || q["kind"] == "ingress")
        .collect();
    assert!(left.is_empty(), "qdiscs left: {left:?}");
    assert!(
        http_get(&client.name, from_client).is_err(),
        "host port still answers after DEL"
    );
}

/// A plain tweed config (built-in IPAM) for `net` on bridge `net`.
fn tweed_conf(node: &Node, net: &str, third: u8) -> Value {
    let mut conf = node.conf(
        net,
        "1.0.0",
        json!([[{"subnet": format!("10.244.{third}.0/24")}]]),
    );
    conf["bridge"] = json!(net);
    conf
}

/// The reference bridge + host-local for the same network, bridge and store.
fn reference_conf(node: &Node, net: &str, third: u8) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": net,
        "type": "bridge",
        "bridge": net,
        "isGateway": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": format!("10.244.{third}.0/24")}]],
            "dataDir": node.data_dir(),
        }
    })
}

fn reference(node: &Node, command: &str, conf: &Value, id: &str, netns: &str) -> CniOutput {
    CniCall::new(reference_plugin("bridge"), command)
        .config(conf)
        .container(id, netns, "eth0")
        .in_node(&node.ns.name)
        .run()
}

fn store_file(node: &Node, net: &str, name: &str) -> String {
    let p = node.data_dir().join(net).join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// host-local writes, tweed reads and releases. The reference bridge +
/// host-local attach A (.2) and X (.3), then release X, so host-local's
/// `last_reserved_ip.0` says .3 while .3 is free. tweed, on the same
/// network name, store and bridge, gives B .4 — it continues after
/// host-local's last reservation instead of reusing .3 — and the kernel
/// has that address on B's eth0; A and B ping each other across the shared
/// bridge. tweed's DEL for A's container ID releases the file host-local
/// wrote.
#[test]
fn tweed_uses_and_releases_a_store_written_by_host_local() {
    let node = Node::new("hlr");
    let net = "twhl65";
    let reference_conf = reference_conf(&node, net, 65);
    let tweed_conf = tweed_conf(&node, net, 65);
    let (a, x, b) = (TestNs::new("hla"), TestNs::new("hlx"), TestNs::new("hlb"));

    let ra =
        reference(&node, "ADD", &reference_conf, "hl-a", &a.path()).expect_ok("reference ADD a");
    assert_eq!(ra["ips"][0]["address"], "10.244.65.2/24");
    reference(&node, "ADD", &reference_conf, "hl-x", &x.path()).expect_ok("reference ADD x");
    reference(&node, "DEL", &reference_conf, "hl-x", &x.path()).expect_ok("reference DEL x");
    assert_eq!(node.reservations(net), vec!["10.244.65.2"]);
    assert_eq!(store_file(&node, net, "last_reserved_ip.0"), "10.244.65.3");
    assert_eq!(store_file(&node, net, "10.244.65.2"), "hl-a\r\neth0");

    let rb = node
        .add(&tweed_conf, "hl-b", &b, "eth0")
        .expect_ok("tweed ADD b");
    assert_eq!(rb["ips"][0]["address"], "10.244.65.4/24");
    assert_eq!(kernel::addresses(&b.name, "eth0"), vec!["10.244.65.4/24"]);
    assert_eq!(kernel::addresses(&a.name, "eth0"), vec!["10.244.65.2/24"]);
    assert_eq!(node.reservations(net), vec!["10.244.65.2", "10.244.65.4"]);
    assert_eq!(store_file(&node, net, "10.244.65.4"), "hl-b\r\neth0");
    assert_eq!(store_file(&node, net, "last_reserved_ip.0"), "10.244.65.4");
    assert!(
        a.ping("10.244.65.4"),
        "A (reference) cannot reach B (tweed)"
    );
    assert!(
        b.ping("10.244.65.2"),
        "B (tweed) cannot reach A (reference)"
    );

    node.del(&tweed_conf, "hl-a", &a.path(), "eth0")
        .expect_ok("tweed DEL of A");
    assert_eq!(node.reservations(net), vec!["10.244.65.4"]);
}

/// tweed writes, host-local reads and releases. tweed attaches C1 (.2) and
/// C2 (.3), then DEL frees C2; the reference bridge + host-local on the
/// same network name, store and bridge then gives D .4 — tweed kept
/// `last_reserved_ip.0` as host-local does — configured on D's eth0, and C1
/// and D ping each other. The reference DEL for C1's container ID
/// (host-local as the IPAM) releases the file tweed wrote.
#[test]
fn host_local_uses_and_releases_a_store_written_by_tweed() {
    let node = Node::new("hlt");
    let net = "twhl66";
    let reference_conf = reference_conf(&node, net, 66);
    let tweed_conf = tweed_conf(&node, net, 66);
    let (c1, c2, d) = (TestNs::new("hc1"), TestNs::new("hc2"), TestNs::new("hld"));

    let r1 = node
        .add(&tweed_conf, "hl-c1", &c1, "eth0")
        .expect_ok("tweed ADD c1");
    assert_eq!(r1["ips"][0]["address"], "10.244.66.2/24");
    node.add(&tweed_conf, "hl-c2", &c2, "eth0")
        .expect_ok("tweed ADD c2");
    node.del(&tweed_conf, "hl-c2", &c2.path(), "eth0")
        .expect_ok("tweed DEL c2");
    assert_eq!(node.reservations(net), vec!["10.244.66.2"]);
    assert_eq!(store_file(&node, net, "last_reserved_ip.0"), "10.244.66.3");
    assert_eq!(store_file(&node, net, "10.244.66.2"), "hl-c1\r\neth0");

    let rd =
        reference(&node, "ADD", &reference_conf, "hl-d", &d.path()).expect_ok("reference ADD d");
    assert_eq!(rd["ips"][0]["address"], "10.244.66.4/24");
    assert_eq!(kernel::addresses(&d.name, "eth0"), vec!["10.244.66.4/24"]);
    assert_eq!(node.reservations(net), vec!["10.244.66.2", "10.244.66.4"]);
    assert!(
        c1.ping("10.244.66.4"),
        "C1 (tweed) cannot reach D (reference)"
    );
    assert!(
        d.ping("10.244.66.2"),
        "D (reference) cannot reach C1 (tweed)"
    );

    reference(&node, "DEL", &reference_conf, "hl-c1", &c1.path()).expect_ok("reference DEL of C1");
    assert_eq!(node.reservations(net), vec!["10.244.66.4"]);
    assert!(d.ping("10.244.66.1"), "D lost its gateway");
}

/// tweed with `"ipam": {"type": "host-local", ...}` runs host-local from
/// CNI_PATH: ADD configures the address host-local reserved (its file
/// appears in host-local's store) and the pod pings the gateway on tweed's
/// bridge; CHECK passes, and consults host-local (it fails while the
/// reservation file is missing); DEL releases the reservation. An IPAM type
/// that does not exist is error 104 naming it, with no interface, bridge or
/// store left behind.
#[test]
fn ipam_delegated_to_host_local() {
    reference_plugin("host-local");
    let node = Node::new("dlg");
    let net = "twdl67";
    let mut conf = node.conf(net, "1.0.0", json!([[{"subnet": "10.244.67.0/24"}]]));
    conf["bridge"] = json!(net);
    conf["ipam"]["type"] = json!("host-local");
    let pod = TestNs::new("dlp");

    let r = node.add(&conf, "dl-p", &pod, "eth0").expect_ok("ADD");
    assert_eq!(r["ips"][0]["address"], "10.244.67.2/24");
    assert_eq!(r["ips"][0]["gateway"], "10.244.67.1");
    assert_eq!(kernel::addresses(&pod.name, "eth0"), vec!["10.244.67.2/24"]);
    assert_eq!(
        kernel::addresses(&node.ns.name, net),
        vec!["10.244.67.1/24"]
    );
    assert_eq!(node.reservations(net), vec!["10.244.67.2"]);
    let file = node.data_dir().join(net).join("10.244.67.2");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "dl-p\r\neth0");
    assert!(pod.ping("10.244.67.1"), "pod cannot reach its gateway");

    let mut with_prev = conf.clone();
    with_prev["prevResult"] = r.clone();
    let check = || {
        node.call("CHECK", &with_prev)
            .container("dl-p", &pod.path(), "eth0")
            .run()
    };
    check().expect_ok("CHECK");
    std::fs::remove_file(&file).unwrap();
    let out = check();
    assert!(!out.ok(), "CHECK passed without host-local's reservation");
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("host-local"), "{msg}");
    std::fs::write(&file, "dl-p\r\neth0").unwrap();
    check().expect_ok("CHECK with the reservation back");

    node.del(&conf, "dl-p", &pod.path(), "eth0")
        .expect_ok("DEL");
    assert!(!file.exists(), "host-local reservation not released");
    assert!(node.reservations(net).is_empty());
    node.wait_no_host_veths(10);

    // A delegate that does not exist.
    let mut missing = conf.clone();
    missing["name"] = json!("twdl67x");
    missing["bridge"] = json!("twdl67x");
    missing["ipam"]["type"] = json!("no-such-ipam");
    let q = TestNs::new("dlq");
    let msg = node
        .add(&missing, "dl-q", &q, "eth0")
        .expect_error(104, "ADD with a missing IPAM plugin");
    assert!(msg.contains("no-such-ipam"), "{msg}");
    assert!(
        kernel::link(&q.name, "eth0").is_none(),
        "pod interface left"
    );
    assert!(node.host_veths().is_empty(), "host veth left");
    assert!(
        kernel::link(&node.ns.name, "twdl67x").is_none(),
        "bridge left"
    );
    assert!(!node.data_dir().join("twdl67x").exists(), "store left");
}
