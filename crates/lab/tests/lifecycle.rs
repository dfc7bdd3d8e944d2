//! Nodes joining and leaving, agent restarts under traffic, and drift
//! repaired without a restart.

mod common;

use std::time::Duration;

use common::{TestLab, wait_until};

fn routes_to(lab: &TestLab, node: &str, subnet_key: &str) -> bool {
    let cidr = subnet_key.replace('-', "/");
    let routes = lab.ip_json(node, &["route", "show", "proto", "77"]);
    routes
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["dst"] == cidr.as_str())
}

#[test]
fn joining_node_is_reached_and_leaving_node_is_forgotten_everywhere() {
    let mut lab = TestLab::up("ljl", 2, "vxlan", "file");
    let n3 = lab.lab_mut().add_node().expect("add node");
    lab.lab_mut()
        .add_pod(&n3, "p1")
        .expect("pod on the new node");
    let joined = common::wait_for(10, || {
        lab.lab().check().map(|m| m.all_ok()).unwrap_or(false)
    });
    assert!(
        joined,
        "not every pod reaches every pod 10 s after the join:\n{}\n{}",
        lab.lab().check().map(|m| m.render()).unwrap_or_default(),
        lab.logs()
    );

    // n3 leaves: its agent stops and its lease is deleted.
    let key = lab.lab().lease_of(&n3).expect("n3 lease");
    let mac = lab.ip_json(&n3, &["link", "show", "tweed.1"])[0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    lab.lab_mut().stop_agent(&n3).unwrap();
    lab.lab().delete_lease(&n3).unwrap();
    for node in ["n1", "n2"] {
        wait_until(10, "the leaving node's routes to disappear", || {
            !routes_to(&lab, node, &key)
        });
        let neigh = lab.ip_json(node, &["neigh", "show", "dev", "tweed.1"]);
        assert!(
            !neigh
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["lladdr"] == mac.as_str()),
            "{node} still has a neighbour for {mac}: {neigh}"
        );
        let out = lab
            .lab()
            .exec_output(node, &["bridge", "-j", "fdb", "show", "dev", "tweed.1"])
            .unwrap();
        let fdb: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            !fdb.as_array()
                .unwrap()
                .iter()
                .any(|e| e["mac"] == mac.as_str()),
            "{node} still has an FDB entry for {mac}: {fdb}"
        );
    }
    // The others still talk.
    let m = lab.lab().check().unwrap();
    assert!(m.ok[0][1] && m.ok[1][0], "{}", m.render());
}

/// A peer that left while an agent was down is cleaned up when it starts.
#[test]
fn restarted_agent_removes_state_of_peers_that_left_meanwhile() {
    let mut lab = TestLab::up("lst", 3, "vxlan", "file");
    let key = lab.lab().lease_of("n3").unwrap();
    lab.lab_mut().stop_agent("n1").unwrap();
    lab.lab_mut().stop_agent("n3").unwrap();
    lab.lab().delete_lease("n3").unwrap();
    assert!(
        routes_to(&lab, "n1", &key),
        "the stopped agent left its routes in place"
    );
    lab.lab_mut().start_agent("n1").unwrap();
    wait_until(10, "n1 to drop the route of the node that left", || {
        !routes_to(&lab, "n1", &key)
    });
    let neigh = lab.ip_json(
        "n1",
        &["neigh", "show", "dev", "tweed.1", "nud", "permanent"],
    );
    assert_eq!(
        neigh.as_array().unwrap().len(),
        1,
        "only n2 remains: {neigh}"
    );
}

/// 50 packets per second across nodes while each end's agent restarts:
/// not one lost, and the node keeps its subnet and VTEP MAC.
#[test]
fn agent_restart_loses_no_packets_and_keeps_subnet_and_mac() {
    let mut lab = TestLab::up("lrs", 2, "vxlan", "file");
    let before: Vec<(String, String)> = ["n1", "n2"]
        .iter()
        .map(|n| {
            let mac = lab.ip_json(n, &["link", "show", "tweed.1"])[0]["address"]
                .as_str()
                .unwrap()
                .to_string();
            (lab.lab().lease_of(n).unwrap(), mac)
        })
        .collect();
    let target = lab.pod_ip("n2").to_string();
    let ping = lab
        .lab()
        .command(
            "n1/p1",
            &["ping", "-q", "-i", "0.02", "-c", "400", "-W", "3", &target].map(String::from),
        )
        .unwrap()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ping");
    std::thread::sleep(Duration::from_millis(500));
    for node in ["n1", "n2"] {
        lab.lab_mut().stop_agent(node).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        lab.lab_mut().start_agent(node).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = ping.wait_with_output().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("400 packets transmitted, 400 received"),
        "packets lost during restarts:\n{text}"
    );
    for (i, n) in ["n1", "n2"].iter().enumerate() {
        let mac = lab.ip_json(n, &["link", "show", "tweed.1"])[0]["address"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            (lab.lab().lease_of(n).unwrap(), mac),
            before[i],
            "{n} changed subnet or VTEP MAC"
        );
    }
}

#[test]
fn drift_is_repaired_without_a_restart() {
    let lab = TestLab::up("ldr", 2, "vxlan", "file");
    let peer_key = lab.lab().lease_of("n2").unwrap();
    let peer_net = peer_key.replace('-', "/");
    let gw = peer_net.split('/').next().unwrap().to_string();
    let pid = lab.lab().state.node("n1").unwrap().agent_pid;
    let run = |argv: &[&str]| {
        let out = lab.lab().exec_output("n1", argv).unwrap();
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let reachable = || lab.lab().check().map(|m| m.all_ok()).unwrap_or(false);

    run(&["ip", "route", "del", &peer_net]);
    wait_until(5, "the deleted route to come back", || {
        routes_to(&lab, "n1", &peer_key)
    });

    run(&["ip", "neigh", "del", &gw, "dev", "tweed.1"]);
    wait_until(5, "the deleted neighbour to come back", || {
        lab.ip_json(
            "n1",
            &["neigh", "show", "dev", "tweed.1", "nud", "permanent"],
        )
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["dst"] == gw.as_str())
    });

    let fdb = || -> usize {
        let out = lab
            .lab()
            .exec_output("n1", &["bridge", "-j", "fdb", "show", "dev", "tweed.1"])
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["dst"] == "198.18.0.2")
            .count()
    };
    let mac = lab.ip_json("n2", &["link", "show", "tweed.1"])[0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    run(&[
        "bridge",
        "fdb",
        "del",
        &mac,
        "dev",
        "tweed.1",
        "dst",
        "198.18.0.2",
        "self",
    ]);
    wait_until(5, "the deleted FDB entry to come back", || fdb() == 1);

    run(&["ip", "link", "del", "tweed.1"]);
    wait_until(
        5,
        "the deleted VXLAN device and its entries to come back",
        || routes_to(&lab, "n1", &peer_key) && fdb() == 1,
    );
    wait_until(5, "pods to reach each other again", reachable);
    assert_eq!(
        lab.lab().state.node("n1").unwrap().agent_pid,
        pid,
        "the agent was not restarted"
    );
    assert!(tweed_lab::procs::alive(pid.unwrap()));
}

/// Starting a running node's agent again restarts it: the old agent is
/// stopped, not left running where `down` cannot find it.
#[test]
fn starting_a_running_agent_restarts_it() {
    let mut lab = TestLab::up("lsr", 1, "vxlan", "file");
    let old = lab.lab().state.node("n1").unwrap().agent_pid.unwrap();
    lab.lab_mut().start_agent("n1").unwrap();
    let new = lab.lab().state.node("n1").unwrap().agent_pid.unwrap();
    assert_ne!(new, old);
    assert!(
        !tweed_lab::procs::alive(old),
        "the old agent {old} still runs"
    );
    assert!(tweed_lab::procs::alive(new));
    lab.lab_mut().stop_agent("n1").unwrap();
    assert!(!tweed_lab::procs::alive(new));
}

/// Ten agents starting at once, each racing for a subnet.
#[test]
fn ten_agents_starting_at_once_get_distinct_subnets() {
    for store in ["file", "etcd"] {
        // A pool of exactly ten subnets: every agent competes for the same
        // few, so lost races (and their retries) really happen.
        let lab = TestLab::up_with("lrc", 10, "vxlan", store, |s| {
            s.pods_per_node = 0;
            s.net_conf_overrides
                .insert("SubnetMin".into(), "10.244.10.0".into());
            s.net_conf_overrides
                .insert("SubnetMax".into(), "10.244.19.0".into());
        });
        let leases: std::collections::BTreeSet<String> = lab
            .lab()
            .state
            .nodes
            .iter()
            .map(|n| lab.lab().lease_of(&n.name).expect("lease"))
            .collect();
        assert_eq!(leases.len(), 10, "{store}: overlapping subnets: {leases:?}");
    }
}

/// A node joins while another node's agent is stopped: the stopped node's
/// lease stays in the store, so every agent keeps it as a peer, and the
/// join converges on one peer per other lease (not per running agent).
#[test]
fn a_node_joins_while_another_agent_is_stopped() {
    let mut lab = TestLab::up("ljs", 3, "vxlan", "file");
    lab.lab_mut().stop_agent("n2").unwrap();
    let n4 = lab
        .lab_mut()
        .add_node()
        .expect("a node joins while n2's agent is stopped");
    assert_eq!(lab.lab().store_leases().unwrap(), 4);
    for node in ["n1", "n3", n4.as_str()] {
        let state = lab.lab().state.node(node).unwrap().clone();
        assert_eq!(lab.lab().peers_of(&state), Some(3), "{node}'s tweed_peers");
        let routes = lab.ip_json(node, &["route", "show", "proto", "77"]);
        assert_eq!(
            routes.as_array().unwrap().len(),
            3,
            "{node} routes to n2 too: {routes}"
        );
    }
}
