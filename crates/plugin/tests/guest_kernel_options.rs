//! A guest attachment on a kernel without what it needs: the ADD fails
//! with one error naming the missing kernel option, and leaves nothing.
//! These run in the VM runner booted without the modules in question
//! (on this kernel they would be there, or be loaded on demand).

mod common;

use common::Node;
use serde_json::{Value, json};
use tweed_testkit::vm::on_a_kernel_without;
use tweed_testkit::{TestNs, kernel};

fn guest_conf(node: &Node, third: u8, mode: &str) -> Value {
    let mut conf = node.conf_v4("guestnet", third);
    conf["guest"] = json!({"mode": mode, "stateDir": node.dir.path().join("state")});
    conf
}

/// ADDs a `mode` guest to a fresh pod; expects code 100 naming `option`
/// and nothing left behind.
fn refused_naming(node: &Node, third: u8, mode: &str, option: &str) {
    let pod = TestNs::new("gko");
    let out = node.add(&guest_conf(node, third, mode), "ko-1", &pod, "eth0");
    let msg = out.expect_error(100, mode);
    assert!(msg.contains(option), "{mode}: {msg}");
    assert!(
        kernel::link(&pod.name, "eth0").is_none(),
        "{mode}: eth0 left"
    );
    assert!(node.reservations("guestnet").is_empty(), "{mode}: IP left");
    node.wait_no_host_veths(5);
    let links = kernel::links(&pod.name);
    assert!(
        links.iter().all(|l| l["ifname"] == "lo"),
        "{mode}: the pod keeps only lo: {links:?}"
    );
}

#[test]
fn without_tun_and_macvtap_the_error_names_the_kernel_options() {
    if !on_a_kernel_without(&["tun", "macvtap"]) {
        return; // ran, and passed, in the VM runner
    }
    let node = Node::new("gkt");
    refused_naming(&node, 81, "tap", "CONFIG_TUN");
    refused_naming(&node, 81, "macvtap", "CONFIG_MACVTAP");
}

#[test]
fn without_the_mirred_action_the_error_names_the_kernel_option() {
    if !on_a_kernel_without(&["act_mirred"]) {
        return; // ran, and passed, in the VM runner
    }
    let node = Node::new("gkm");
    refused_naming(&node, 82, "tap", "CONFIG_NET_ACT_MIRRED");
}
