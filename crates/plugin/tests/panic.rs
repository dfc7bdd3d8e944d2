//! A panic in the plugin still answers as a CNI plugin (issue 16, item 5):
//! the CNI error JSON with code 999 naming where it panicked on stdout,
//! exit status 1, and the call's line in the call log. The panic is
//! injected at a step in the middle of ADD (`TWEED_FAULT_PANIC_AT`, debug
//! builds only, see `faults.rs`); like a plugin killed there, it leaves
//! what ADD made so far, which DEL then removes.

mod common;

use common::Node;
use tweed_plugin::panic_hook::PANIC_CODE;
use tweed_testkit::TestNs;

#[test]
fn a_panic_answers_a_cni_error_and_logs_the_call() {
    let node = Node::new("pnc");
    let conf = node.conf_v4("pnc", 83);
    let pod = TestNs::new("pp");

    // Step 3 of ADD lies after the IPAM reservation and before the pod
    // interface is complete: a mid-call panic.
    let out = node
        .call("ADD", &conf)
        .container("p0", &pod.path(), "eth0")
        .env(tweed_plugin::faults::PANIC_AT_ENV, "3")
        .run();
    assert_eq!(out.exit_code, 1, "exit status; stderr: {}", out.stderr);
    let reply = out.json();
    assert_eq!(reply["code"], PANIC_CODE, "{reply}");
    assert_eq!(reply["cniVersion"], "1.1.0", "{reply}");
    let msg = reply["msg"].as_str().expect("msg");
    assert!(
        msg.contains("injected panic at step 3") && msg.contains("faults.rs:"),
        "the message names the panic and its location: {msg}"
    );

    let lines = node.log_lines();
    let last = lines.last().expect("a call-log line for the panicked call");
    assert_eq!(last["cmd"], "ADD", "{last}");
    assert_eq!(last["containerID"], "p0", "{last}");
    assert_eq!(last["network"], "pnc", "{last}");
    assert_eq!(last["result"], "error", "{last}");
    assert_eq!(last["code"], PANIC_CODE, "{last}");
    assert_eq!(last["msg"], msg, "{last}");

    // What the interrupted ADD left, DEL finds and removes.
    node.del(&conf, "p0", &pod.path(), "eth0")
        .expect_ok("DEL after the panic");
    assert!(node.reservations("pnc").is_empty(), "address released");
    node.wait_no_host_veths(5);
    node.add(&conf, "p0", &pod, "eth0")
        .expect_ok("ADD after the DEL");
    node.del(&conf, "p0", &pod.path(), "eth0")
        .expect_ok("final DEL");
}
