//! Churn with kill -9, the agent's half (issue 16, item 3).
//!
//! A lab of three nodes (VXLAN, file store). For a number of rounds, one
//! running agent is SIGKILLed and, while it is dead, the cluster changes:
//! a node joins (new namespace, agent, lease, pod), a joined node leaves
//! (its pods deleted, its agent killed, its lease deleted), or a pod is
//! added or deleted on some node; then the killed agent is started again.
//! All the while a pod on n1 pings a pod on n2 at 20 packets a second.
//!
//! Asserted once every agent of a node that stayed runs again and they
//! have converged: every node's VXLAN routes, permanent neighbours and
//! FDB entries are exactly those the store's leases call for (one each
//! per other lease: `<subnet> via <network address> onlink`,
//! `<network address> lladdr <VTEP MAC>`, `<VTEP MAC> dst <public IP>`),
//! nothing of a node that left and nothing missing; every pod reaches
//! every pod; and the ping between the pods that stayed lost nothing.
//!
//! Seeded like the plugin's churn: `TWEED_AGENT_CHURN_SEED` repeats a
//! run's choices, `TWEED_AGENT_CHURN_ROUNDS` sets their number.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{TestLab, wait_until};
use serde_json::Value;
use tweed_testkit::stats::env_usize;

const VXLAN_DEV: &str = "tweed.1";

/// The store's leases: key (`10.244.3.0-24`) to value.
fn leases(lab: &TestLab) -> BTreeMap<String, Value> {
    let dir = lab.lab().state.dir().join("store").join("subnets");
    std::fs::read_dir(&dir)
        .expect("lease directory")
        .flatten()
        // Hidden files are writes in progress (or the stale ones counted
        // below), not leases.
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            let key = e.file_name().to_string_lossy().into_owned();
            let value = serde_json::from_slice(&std::fs::read(e.path()).expect("lease"))
                .expect("lease JSON");
            (key, value)
        })
        .collect()
}

/// A node's overlay state, as lines: `route ...`, `neigh ...`, `fdb ...`.
type Overlay = BTreeSet<String>;

/// What the store says `node` must have.
fn expected(lab: &TestLab, node: &str) -> Overlay {
    let own = lab.lab().lease_of(node).expect("own lease");
    let mut out = Overlay::new();
    for (key, v) in leases(lab) {
        if key == own {
            continue;
        }
        let cidr = key.replace('-', "/");
        let network = key.split('-').next().unwrap().to_string();
        let mac = v["BackendData"]["VtepMAC"].as_str().expect("VtepMAC");
        let ip = v["PublicIP"].as_str().expect("PublicIP");
        out.insert(format!("route {cidr} via {network}"));
        out.insert(format!("neigh {network} lladdr {mac}"));
        out.insert(format!("fdb {mac} dst {ip}"));
    }
    out
}

/// What `node`'s kernel has on the VXLAN device.
fn actual(lab: &TestLab, node: &str) -> Overlay {
    let mut out = Overlay::new();
    for r in lab
        .ip_json(node, &["route", "show", "dev", VXLAN_DEV])
        .as_array()
        .unwrap()
    {
        out.insert(format!(
            "route {} via {}",
            r["dst"].as_str().unwrap_or("?"),
            r["gateway"].as_str().unwrap_or("-")
        ));
    }
    for n in lab
        .ip_json(
            node,
            &["neigh", "show", "dev", VXLAN_DEV, "nud", "permanent"],
        )
        .as_array()
        .unwrap()
    {
        out.insert(format!(
            "neigh {} lladdr {}",
            n["dst"].as_str().unwrap_or("?"),
            n["lladdr"].as_str().unwrap_or("-")
        ));
    }
    let fdb = lab
        .lab()
        .exec_output(node, &["bridge", "-j", "fdb", "show", "dev", VXLAN_DEV])
        .expect("bridge fdb");
    let fdb: Value = serde_json::from_slice(&fdb.stdout).expect("fdb JSON");
    for e in fdb.as_array().unwrap() {
        // The device's own entries name no remote.
        if let Some(dst) = e["dst"].as_str() {
            out.insert(format!(
                "fdb {} dst {dst}",
                e["mac"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}

/// The lab's nodes that have not left.
fn staying(lab: &TestLab, left: &[String]) -> Vec<String> {
    lab.lab()
        .state
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .filter(|n| !left.contains(n))
        .collect()
}

fn agent_pid(lab: &TestLab, node: &str) -> Option<i32> {
    lab.lab().state.node(node).and_then(|n| n.agent_pid)
}

fn sigkill(pid: i32) {
    // SAFETY: kill(2) on the pid the lab recorded for its own agent, a
    // child of this process that has not been reaped (start_agent reaps
    // the old one only when it records the new).
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[test]
fn agents_killed_with_sigkill_while_nodes_and_pods_churn_converge_exactly() {
    let seed = env_usize("TWEED_AGENT_CHURN_SEED", fastrand::usize(..)) as u64;
    let rounds = env_usize("TWEED_AGENT_CHURN_ROUNDS", 20);
    eprintln!("agent churn seed {seed} (TWEED_AGENT_CHURN_SEED={seed} repeats the choices)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut lab = TestLab::up("ak9", 3, "vxlan", "file");
    let start = Instant::now();

    // Continuous traffic between two pods that stay, stopped with SIGINT
    // at the end (ping then prints its count).
    let target = lab.pod_ip("n2").to_string();
    let ping = lab
        .lab()
        .command(
            "n1/p1",
            &["ping", "-q", "-i", "0.05", "-W", "3", &target].map(String::from),
        )
        .unwrap()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ping");

    let mut joined: Vec<String> = Vec::new();
    let mut left: Vec<String> = Vec::new();
    let mut churn_pods: Vec<(String, String)> = Vec::new();
    let mut next_pod = 0;
    let mut events: BTreeMap<&str, usize> = BTreeMap::new();
    for round in 0..rounds {
        let staying = staying(&lab, &left);
        let victim = staying[rng.usize(..staying.len())].clone();
        let pid = agent_pid(&lab, &victim).expect("a running agent");
        sigkill(pid);
        *events.entry("agents killed").or_default() += 1;

        // While it is dead, the cluster changes.
        match rng.u8(0..4) {
            0 if joined.len() < 2 => {
                let node = lab.lab_mut().start_node().expect("join");
                wait_until(30, "the joining node's agent ready", || {
                    let n = lab.lab().state.node(&node).unwrap().clone();
                    lab.lab().ready(&n)
                });
                lab.lab_mut()
                    .add_pod(&node, "p1")
                    .expect("pod on joined node");
                joined.push(node);
                *events.entry("nodes joined").or_default() += 1;
            }
            1 if joined.iter().any(|n| *n != victim) => {
                let candidates: Vec<String> =
                    joined.iter().filter(|n| **n != victim).cloned().collect();
                let node = candidates[rng.usize(..candidates.len())].clone();
                let pods: Vec<String> = lab
                    .lab()
                    .state
                    .node(&node)
                    .unwrap()
                    .pods
                    .iter()
                    .map(|p| p.name.clone())
                    .collect();
                for p in pods {
                    lab.lab_mut()
                        .del_pod(&node, &p)
                        .expect("drain the leaving node");
                }
                churn_pods.retain(|(n, _)| *n != node);
                if let Some(pid) = agent_pid(&lab, &node) {
                    sigkill(pid);
                }
                lab.lab().delete_lease(&node).expect("delete the lease");
                joined.retain(|n| *n != node);
                left.push(node);
                *events.entry("nodes left").or_default() += 1;
            }
            2 if !churn_pods.is_empty() => {
                let (node, pod) = churn_pods.remove(rng.usize(..churn_pods.len()));
                lab.lab_mut().del_pod(&node, &pod).expect("delete a pod");
                *events.entry("pods deleted").or_default() += 1;
            }
            _ => {
                let node = staying[rng.usize(..staying.len())].clone();
                next_pod += 1;
                let pod = format!("c{next_pod}");
                lab.lab_mut().add_pod(&node, &pod).expect("add a pod");
                churn_pods.push((node, pod));
                *events.entry("pods added").or_default() += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.u64(200..1500)));
        if !left.contains(&victim) {
            lab.lab_mut()
                .start_agent(&victim)
                .unwrap_or_else(|e| panic!("round {round}: restart {victim}: {e}\n{}", lab.logs()));
        }
    }

    lab.lab()
        .wait_converged()
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let staying = staying(&lab, &left);
    let mut mismatches = Vec::new();
    for node in &staying {
        let want = expected(&lab, node);
        // Converged by the metric; the kernel is read until it agrees
        // or 10 s have passed.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut have = actual(&lab, node);
        while have != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            have = actual(&lab, node);
        }
        for x in have.difference(&want) {
            mismatches.push(format!("{node}: {x} not in the store"));
        }
        for x in want.difference(&have) {
            mismatches.push(format!("{node}: {x} missing"));
        }
    }
    // Temporary files of store writes that a kill cut short.
    let store = lab.lab().state.dir().join("store");
    for dir in [store.clone(), store.join("subnets")] {
        for e in std::fs::read_dir(&dir).expect("store dir").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                mismatches.push(format!("store: {} left over", e.path().display()));
            }
        }
    }
    let matrix = lab.lab().check().expect("reachability");

    // SAFETY: SIGINT to our own ping child, which prints its statistics.
    unsafe { libc::kill(ping.id() as i32, libc::SIGINT) };
    let out = ping.wait_with_output().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stats = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("no statistics")
        .to_string();

    eprintln!(
        "agent churn: {rounds} rounds in {:.1} s: {events:?}; {} nodes stayed, {} left; \
         overlay entries not as the store says or store files left over: {}; ping n1/p1 -> n2/p1: {stats}",
        start.elapsed().as_secs_f64(),
        staying.len(),
        left.len(),
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "overlay state differs from the store:\n{}\n{}",
        mismatches.join("\n"),
        lab.logs()
    );
    assert!(matrix.all_ok(), "{}", matrix.render());
    let (sent, received) = parse_counts(&stats);
    assert!(
        sent > 0 && received == sent,
        "the pods that stayed lost traffic: {stats}"
    );
}

/// (transmitted, received) from ping's statistics line.
fn parse_counts(line: &str) -> (u64, u64) {
    let mut words = line.split_whitespace();
    let sent = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let received = line
        .split(", ")
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .and_then(|w| w.parse().ok())
        .unwrap_or(0);
    (sent, received)
}
