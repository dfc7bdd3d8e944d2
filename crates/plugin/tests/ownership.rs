//! A failed call undoes only what it created: a repeated or conflicting ADD
//! is refused and leaves the live attachment exactly as it was — links,
//! addresses, routes, qdiscs and IPAM files compared before and after —
//! and the pod keeps its traffic. An ADD interrupted after it made the
//! veth pair leaves something DEL finds, so the pod can be ADDed again.

mod common;

use common::{Node, bare, result_ip};
use serde_json::json;
use tweed_testkit::{TestNs, kernel, reference_plugin};

/// One repeated ADD per case: the same attachment, another container with
/// the same interface name, and the same attachment through a delegated
/// IPAM plugin (host-local, whose DEL on rollback would release the live
/// reservation if the call got that far).
#[test]
fn a_repeated_add_leaves_the_live_attachment_untouched() {
    reference_plugin("host-local");
    for (net, delegated) in [("own", false), ("ownd", true)] {
        // A node each: the kernel reports a bridge's carrier change up to a
        // second late, which must not fall between the before and after.
        let node = Node::new(net);
        let conf = if delegated {
            // host-local 1.1.1 speaks CNI up to 1.0.0.
            let mut c = node.conf(net, "1.0.0", json!([[{"subnet": "10.244.82.0/24"}]]));
            c["ipam"]["type"] = json!("host-local");
            c
        } else {
            node.conf_v4(net, 81)
        };
        let conf = &conf;
        let pod = TestNs::new("op");
        let first = node.add(conf, "c0", &pod, "eth0").expect_ok("first ADD");
        let ip = result_ip(&first, true);
        let before = common::state::state(&[&node.ns.name, &pod.name], &[&node.data_dir()]);

        for (id, what) in [("c0", "the same attachment"), ("c1", "another container")] {
            let msg = node
                .add(conf, id, &pod, "eth0")
                .expect_error(103, &format!("ADD of {what} ({net})"));
            assert!(msg.contains("CNI_IFNAME") && msg.contains("eth0"), "{msg}");
            let after = common::state::state(&[&node.ns.name, &pod.name], &[&node.data_dir()]);
            common::state::assert_same_state(&before, &after, &format!("ADD of {what} ({net})"));
        }
        assert_eq!(kernel::addresses(&pod.name, "eth0"), vec![ip.clone()]);
        assert_eq!(node.reservations(net), vec![bare(&ip)]);
        let gateway = first["ips"][0]["gateway"].as_str().unwrap().to_string();
        assert!(pod.ping(&gateway), "{net}: the pod lost its gateway");

        node.del(conf, "c0", &pod.path(), "eth0").expect_ok("DEL");
        assert!(node.reservations(net).is_empty());
        node.wait_no_host_veths(5);
    }
}

/// A second interface of the same container that fails at its last step
/// (a second default route) rolls back its own pair and address, and the
/// first interface keeps everything.
#[test]
fn a_failing_second_interface_rolls_back_only_itself() {
    let node = Node::new("own2");
    let conf = node.conf_v4("own2", 83);
    let pod = TestNs::new("op2");
    let first = node.add(&conf, "c0", &pod, "eth0").expect_ok("ADD eth0");
    let before = common::state::state(&[&node.ns.name, &pod.name], &[&node.data_dir()]);
    let msg = node
        .add(&conf, "c0", &pod, "net1")
        .expect_error(100, "ADD net1 with a second default route");
    assert!(msg.contains("isDefaultGateway"), "{msg}");
    // The rolled-back pair is deleted by index right away; its host end
    // may take a moment to leave the node's link list.
    common::wait_until(5, "net1's pair gone", || {
        kernel::link(&pod.name, "net1").is_none() && node.host_veths().len() == 1
    });
    let after = common::state::state(&[&node.ns.name, &pod.name], &[&node.data_dir()]);
    common::state::assert_same_state(&before, &after, "the failed ADD of net1");
    assert!(pod.ping(first["ips"][0]["gateway"].as_str().unwrap()));
}

/// ADD and DEL of one container racing each other (a runtime that gave up
/// on an ADD and cleans up while the ADD still runs): whichever wins, a
/// final DEL leaves nothing, and no address is held twice at any point.
#[test]
fn add_racing_del_of_the_same_container_leaks_nothing() {
    let node = Node::new("race");
    let conf = node.conf_v4("race", 84);
    let pod = TestNs::new("rp");
    for round in 0..20 {
        std::thread::scope(|s| {
            let add = s.spawn(|| node.add(&conf, "rc", &pod, "eth0"));
            let del = s.spawn(|| node.del(&conf, "rc", &pod.path(), "eth0"));
            let (add, del) = (add.join().unwrap(), del.join().unwrap());
            del.expect_ok(&format!("round {round}: DEL"));
            if !add.ok() {
                // DEL may take the pair away under the ADD (then ADD fails
                // on its next step) or still be removing the previous
                // one: any refusal must be a proper CNI error.
                let err = add.json();
                assert!(
                    err["code"].as_u64().is_some() && err["msg"].is_string(),
                    "round {round}: ADD failed without a CNI error: {err}"
                );
            }
            assert!(
                node.reservations("race").len() <= 1,
                "round {round}: {:?}",
                node.reservations("race")
            );
        });
        node.del(&conf, "rc", &pod.path(), "eth0")
            .expect_ok(&format!("round {round}: final DEL"));
        assert!(node.reservations("race").is_empty(), "round {round}");
        node.wait_no_host_veths(5);
        common::wait_until(5, "the pod's eth0 gone", || {
            kernel::link(&pod.name, "eth0").is_none()
        });
    }
}

/// An ADD killed after the kernel made the veth pair but before it was
/// labelled (the alias takes a second request) leaves an unlabelled host
/// end named for the attachment and a bare eth0 in the pod. The state is
/// built here exactly so; DEL removes it, and the pod can be ADDed again.
#[test]
fn del_removes_what_an_interrupted_add_left() {
    let node = Node::new("intr");
    let conf = node.conf_v4("intr", 85);
    let pod = TestNs::new("ip");
    let host_name = tweed_plugin::names::host_veth("intr", "ic", "eth0");
    node.ns.exec_ok(&[
        "ip", "link", "add", &host_name, "type", "veth", "peer", "name", "eth0", "netns", &pod.name,
    ]);
    node.add(&conf, "ic", &pod, "eth0")
        .expect_error(103, "ADD onto the leftover");
    assert!(kernel::link(&node.ns.name, &host_name).is_some());

    node.del(&conf, "ic", &pod.path(), "eth0")
        .expect_ok("DEL of the interrupted attachment");
    common::wait_until(5, "the leftover pair gone", || {
        kernel::link(&node.ns.name, &host_name).is_none()
            && kernel::link(&pod.name, "eth0").is_none()
    });
    let r = node.add(&conf, "ic", &pod, "eth0").expect_ok("ADD again");
    assert!(pod.ping(r["ips"][0]["gateway"].as_str().unwrap()));

    // A device of that name that tweed did not make (no veth) stays.
    let other = tweed_plugin::names::host_veth("intr", "ic2", "eth0");
    node.ns
        .exec_ok(&["ip", "link", "add", &other, "type", "bridge"]);
    node.del(&conf, "ic2", &pod.path(), "eth0")
        .expect_ok("DEL of an attachment that never was");
    assert!(kernel::link(&node.ns.name, &other).is_some());
}
