//! tweedd killed with SIGKILL every few seconds while nodes join and leave
//! and pods come and go (issue 16 item 3). Once it settles, every node's
//! routes, neighbours and FDB entries match the store exactly, and two pods
//! that stayed throughout kept talking.
//!
//! Seeded: `TWEED_CHURN_SEED=<n>` replays a run, `TWEED_CHURN_ROUNDS=<n>`
//! sets its length (20 rounds by default, about a minute).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{TestLab, etcd_entries, wait_for};

/// What a node's kernel holds for its peers, as comparable sets.
#[derive(Debug, Default, PartialEq)]
struct PeerState {
    /// (destination subnet, gateway) of tweed's routes (`proto 77`).
    routes: BTreeSet<(String, String)>,
    /// (gateway, VTEP MAC) of the permanent neighbours on the VXLAN device.
    neighbours: BTreeSet<(String, String)>,
    /// (VTEP MAC, underlay address) of the FDB entries on the VXLAN device.
    fdb: BTreeSet<(String, String)>,
}

/// A lease as the file store holds it.
struct StoreLease {
    key: String,
    public_ip: String,
    vtep_mac: String,
}

/// Every lease in the lab's store (file or etcd), as its raw record.
fn store_leases(lab: &TestLab) -> Vec<StoreLease> {
    let records: Vec<(String, Vec<u8>)> = match lab.lab().state.store.as_str() {
        "etcd" => {
            const PREFIX: &str = "/coreos.com/network/subnets/";
            etcd_entries(lab, PREFIX)
                .into_iter()
                .map(|(k, v)| (k[PREFIX.len()..].to_string(), v.into_bytes()))
                .collect()
        }
        _ => {
            let dir = lab.lab().state.dir().join("store").join("subnets");
            std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                // A dot file is a write in progress; a failed read, a
                // lease deleted meanwhile.
                .filter(|(key, _)| !key.starts_with('.'))
                .filter_map(|(key, path)| Some((key, std::fs::read(path).ok()?)))
                .collect()
        }
    };
    records
        .into_iter()
        .map(|(key, bytes)| {
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("lease {key} is not JSON ({e})"));
            let field = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            StoreLease {
                public_ip: field(&v["PublicIP"]),
                vtep_mac: field(&v["BackendData"]["VtepMAC"]),
                key,
            }
        })
        .collect()
}

/// What `node` should hold: every lease in the store but its own.
fn expected(lab: &TestLab, node: &str, leases: &[StoreLease]) -> PeerState {
    let own = lab.lab().lease_of(node);
    let mut want = PeerState::default();
    for l in leases.iter().filter(|l| Some(&l.key) != own.as_ref()) {
        let dst = l.key.replace('-', "/");
        let gateway = dst.split('/').next().unwrap().to_string();
        want.routes.insert((dst, gateway.clone()));
        want.neighbours.insert((gateway, l.vtep_mac.clone()));
        want.fdb.insert((l.vtep_mac.clone(), l.public_ip.clone()));
    }
    want
}

/// What `node`'s kernel holds, read back with `ip` and `bridge`.
fn actual(lab: &TestLab, node: &str) -> PeerState {
    let field = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let mut have = PeerState::default();
    for r in lab
        .ip_json(node, &["route", "show", "proto", "77"])
        .as_array()
        .unwrap()
    {
        have.routes.insert((field(r, "dst"), field(r, "gateway")));
    }
    let neigh = lab.ip_json(
        node,
        &["neigh", "show", "dev", "tweed.1", "nud", "permanent"],
    );
    for n in neigh.as_array().unwrap() {
        have.neighbours
            .insert((field(n, "dst"), field(n, "lladdr")));
    }
    let out = lab
        .lab()
        .exec_output(node, &["bridge", "-j", "fdb", "show", "dev", "tweed.1"])
        .unwrap();
    let fdb: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    for e in fdb.as_array().into_iter().flatten() {
        if e.get("dst").is_some() {
            have.fdb.insert((field(e, "mac"), field(e, "dst")));
        }
    }
    have
}

/// Every node whose kernel differs from the store, with both sides.
fn mismatches(lab: &TestLab) -> Vec<String> {
    let leases = store_leases(lab);
    let nodes = lab.node_names();
    nodes
        .iter()
        .filter_map(|n| {
            let (want, have) = (expected(lab, n, &leases), actual(lab, n));
            (want != have).then(|| format!("{n}:\n  store  {want:?}\n  kernel {have:?}"))
        })
        .collect()
}

fn ready(lab: &TestLab, node: &str) -> bool {
    lab.lab()
        .state
        .node(node)
        .is_some_and(|n| lab.lab().ready(n))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

#[derive(Debug, Default)]
struct Tally {
    kills: usize,
    joins: usize,
    leaves: usize,
    pods_added: usize,
    pods_deleted: usize,
}

#[test]
fn agents_killed_while_nodes_and_pods_churn_converge_to_the_file_store() {
    churn("acf", "file");
}

#[test]
fn agents_killed_while_nodes_and_pods_churn_converge_to_etcd() {
    churn("ace", "etcd");
}

fn churn(tag: &str, store: &str) {
    let seed = env_u64("TWEED_CHURN_SEED").unwrap_or_else(|| fastrand::u64(..));
    let rounds = env_u64("TWEED_CHURN_ROUNDS").unwrap_or(20);
    println!("seed {seed} (TWEED_CHURN_SEED={seed} replays this run), {rounds} rounds");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut lab = TestLab::up(tag, 3, "vxlan", store);

    // n1/p1 and n2/p1 stay throughout; the ping between them runs until
    // it is interrupted, then prints what was lost.
    let target = lab.pod_ip("n2").to_string();
    let ping = lab
        .lab()
        .command(
            "n1/p1",
            &["ping", "-q", "-i", "0.05", "-W", "3", &target].map(String::from),
        )
        .unwrap()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start ping");

    let started = Instant::now();
    let mut tally = Tally::default();
    let mut extra_nodes: Vec<String> = Vec::new();
    let mut churn_pods: Vec<(String, String)> = Vec::new();
    let mut next_pod = 0;
    for round in 0..rounds {
        let nodes = lab.node_names();
        let victim = nodes[rng.usize(..nodes.len())].clone();
        lab.lab_mut().kill_agent(&victim).unwrap();
        tally.kills += 1;
        // While the victim is dead, the cluster changes under it.
        let action = match rng.u8(..4) {
            0 if extra_nodes.len() < 2 => {
                let n = lab.lab_mut().start_node().expect("a node joins");
                extra_nodes.push(n.clone());
                tally.joins += 1;
                format!("{n} joins")
            }
            1 if extra_nodes.iter().any(|n| *n != victim && ready(&lab, n)) => {
                let i = extra_nodes
                    .iter()
                    .position(|n| *n != victim && ready(&lab, n))
                    .unwrap();
                let n = extra_nodes.remove(i);
                churn_pods.retain(|(node, _)| *node != n);
                lab.lab_mut().remove_node(&n).expect("a node leaves");
                tally.leaves += 1;
                format!("{n} leaves")
            }
            2 if !churn_pods.is_empty() => {
                let (node, pod) = churn_pods.swap_remove(rng.usize(..churn_pods.len()));
                lab.lab_mut().del_pod(&node, &pod).expect("DEL pod");
                tally.pods_deleted += 1;
                format!("{node}/{pod} deleted")
            }
            _ => {
                // Any node with a subnet, its agent alive or not.
                let leased: Vec<&String> = nodes
                    .iter()
                    .filter(|n| lab.lab().node_dir(n).join("subnet.env").exists())
                    .collect();
                let node = leased[rng.usize(..leased.len())].clone();
                {
                    next_pod += 1;
                    let pod = format!("c{next_pod}");
                    lab.lab_mut().add_pod(&node, &pod).expect("ADD pod");
                    churn_pods.push((node.clone(), pod.clone()));
                    tally.pods_added += 1;
                    format!("{node}/{pod} added")
                }
            }
        };
        std::thread::sleep(Duration::from_millis(rng.u64(0..1500)));
        lab.lab_mut()
            .start_agent(&victim)
            .unwrap_or_else(|e| panic!("round {round}: {victim} restarting: {e}\n{}", lab.logs()));
        println!(
            "round {round}: {victim}'s agent killed, {action}, restarted ({} ms in)",
            started.elapsed().as_millis()
        );
        std::thread::sleep(Duration::from_millis(rng.u64(500..2000)));
    }

    // Settle: every agent ready and reconciled, then the kernel of every
    // node is compared with the store.
    for n in extra_nodes.clone() {
        lab.lab_mut()
            .start_agent(&n)
            .unwrap_or_else(|e| panic!("{n} never got ready: {e}\n{}", lab.logs()));
    }
    lab.lab()
        .wait_converged()
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let leases = store_leases(&lab);
    assert_eq!(
        leases.len(),
        lab.lab().state.nodes.len(),
        "one lease per node, none left by nodes that left: {:?}",
        leases.iter().map(|l| &l.key).collect::<Vec<_>>()
    );
    if store == "file" {
        // Temporary files of lease writes a kill cut short.
        let dir = lab.lab().state.dir().join("store");
        for d in [dir.clone(), dir.join("subnets")] {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !name.starts_with('.'),
                    "{} left over in the store",
                    e.path().display()
                );
            }
        }
    }
    let settled = wait_for(30, || mismatches(&lab).is_empty());
    assert!(
        settled,
        "nodes disagree with the store 30 s after the churn:\n{}\n{}",
        mismatches(&lab).join("\n"),
        lab.logs()
    );
    let matrix = lab.lab().check().unwrap();
    assert!(
        matrix.all_ok(),
        "pods do not all reach each other:\n{}",
        matrix.render()
    );

    // SAFETY: SIGINT to the ping we started, by its pid; it then prints
    // its summary and exits.
    unsafe { libc::kill(ping.id() as i32, libc::SIGINT) };
    let out = ping.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout);
    println!(
        "{store} store: {tally:?} in {} s; nodes at the end: {}\nping n1/p1 -> n2/p1 across the churn: {}",
        started.elapsed().as_secs(),
        lab.lab().state.nodes.len(),
        summary.trim()
    );
    assert!(
        summary.contains(" 0% packet loss"),
        "the pods that stayed lost traffic:\n{summary}"
    );
}
