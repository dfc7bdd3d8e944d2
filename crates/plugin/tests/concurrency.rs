//! Runtimes run CNI calls for different containers in parallel: 100 ADDs at
//! once must give 100 distinct, working addresses; 100 DELs at once must
//! leave an empty store and no host veths.

mod common;

use std::collections::BTreeSet;

use common::{Node, bare, result_ip};
use serde_json::json;
use tweed_testkit::{TestNs, kernel};

const PODS: usize = 100;

#[test]
fn hundred_parallel_adds_then_hundred_parallel_dels() {
    let node = Node::new("par");
    let conf = node.conf("parnet", "1.1.0", json!([[{"subnet": "10.244.40.0/24"}]]));
    let pods: Vec<TestNs> = (0..PODS).map(|_| TestNs::new("pp")).collect();

    let results: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || {
                    node.add(conf, &format!("par-{i}"), pod, "eth0")
                        .expect_ok("parallel ADD")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });

    let ips: BTreeSet<String> = results.iter().map(|r| bare(&result_ip(r, true))).collect();
    assert_eq!(ips.len(), PODS, "addresses must be distinct");
    assert_eq!(
        node.reservations("parnet")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        ips
    );
    assert_eq!(node.host_veths().len(), PODS);
    // Every pod really has its address; a sample reaches each other.
    for (pod, r) in pods.iter().zip(&results) {
        assert_eq!(
            kernel::addresses(&pod.name, "eth0"),
            vec![result_ip(r, true)]
        );
    }
    for i in [0, 37, 99] {
        let peer = bare(&result_ip(&results[(i + 50) % PODS], true));
        assert!(pods[i].ping(&peer), "pod {i} cannot reach {peer}");
    }
    // One bridge, one gateway address, no duplicates from the races.
    assert_eq!(
        kernel::addresses(&node.ns.name, "tweed0"),
        vec!["10.244.40.1/24"]
    );

    std::thread::scope(|s| {
        for (i, pod) in pods.iter().enumerate() {
            let (node, conf) = (&node, &conf);
            s.spawn(move || {
                node.del(conf, &format!("par-{i}"), &pod.path(), "eth0")
                    .expect_ok("parallel DEL")
            });
        }
    });
    assert!(
        node.reservations("parnet").is_empty(),
        "store not empty: {:?}",
        node.reservations("parnet")
    );
    node.wait_no_host_veths(30);
    for pod in &pods {
        assert!(kernel::link(&pod.name, "eth0").is_none());
    }
}
