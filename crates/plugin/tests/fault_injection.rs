//! Fault injection at every step (issue 16, item 2): ADD (built-in IPAM
//! dual stack with wires, delegated host-local), guest ADD (tap with
//! localhost plumbing, macvtap) and DEL are run once with a trace of the
//! steps they pass (`tweed_plugin::faults`), then once per step with that
//! step failing.
//!
//! - ADD failing at step k answers the injected CNI error naming the step,
//!   and leaves the node, the pod and a live attachment of another pod
//!   exactly as before the call (links, addresses, routes of every table,
//!   programmed neighbours, qdiscs, tc filters, nftables, IPAM files with
//!   host-local's cursor, guest and wire records); a clean ADD of the same
//!   pod then succeeds.
//! - DEL failing at step k answers the injected error and still does
//!   everything else (the address is released unless releasing was the
//!   step); the other attachment is untouched; a retried DEL succeeds and
//!   leaves the node and pod as they were before the ADD.
//!
//! Runs against the debug build of `tweed`, the only one with fault
//! points (see `faults.rs`).

mod common;

use std::cell::RefCell;

use common::Node;
use common::state::{assert_same_state, state};
use serde_json::{Value, json};
use tweed_testkit::{CniOutput, TestNs, reference_plugin};

const INJECTED: u64 = tweed_plugin::faults::INJECTED as u64;

/// One network on one node, with a live attachment of another pod on it
/// and the pod the faults are injected on.
struct Bench {
    node: Node,
    /// The pod's network config (chained: with the bridge's result as
    /// `prevResult`, new for each attachment the bridge makes).
    conf: RefCell<Value>,
    /// CNI_ARGS of the pod under test.
    args: String,
    other: TestNs,
    pod: TestNs,
    /// False for a delegated host-local, whose own DEL (run by the
    /// rollback) leaves its round-robin cursor where its ADD moved it:
    /// that file is the delegate's, not tweed's, to write.
    cursor_restored: bool,
    chain: Option<Chained>,
}

/// What a bench of tweed chained after the reference bridge needs.
struct Chained {
    bridge: Value,
    /// tweed's config, without `prevResult`.
    tweed: Value,
    /// The snapshot without the pod's attachment: what the chain's DEL
    /// (tweed's, then the bridge's) must leave.
    empty: String,
}

const ID: &str = "fault-1";

impl Bench {
    fn new(tag: &str, conf: impl Fn(&Node) -> Value, args: &str, cursor_restored: bool) -> Bench {
        // A release build of the tests does not compile rather than pass
        // without a fault point to fail.
        const {
            assert!(
                cfg!(debug_assertions),
                "fault points exist only in debug builds: run this test without --release"
            )
        };
        let node = Node::new(tag);
        let mut conf = conf(&node);
        conf["wireDir"] = json!(node.dir.path().join("wires"));
        if conf.get("guest").is_some() {
            conf["guest"]["stateDir"] = json!(node.dir.path().join("state"));
        }
        let other = TestNs::new(&format!("{tag}o"));
        let pod = TestNs::new(&format!("{tag}p"));
        let bench = Bench {
            node,
            conf: RefCell::new(conf),
            args: args.to_string(),
            other,
            pod,
            cursor_restored,
            chain: None,
        };
        bench
            .node
            .call("ADD", &bench.conf())
            .container("live-1", &bench.other.path(), "eth0")
            // Wires too when the pod under test has them: the wire
            // directory and its lock, made on first use and shared, exist
            // before the calls under test, and a record of another pod's
            // is there to be left alone.
            .env(
                "CNI_ARGS",
                &if args.contains("TWEED_WIRES") {
                    with_wires("live")
                } else {
                    pod_args("live")
                },
            )
            .run()
            .expect_ok("ADD of the other pod");
        bench
    }

    /// tweed chained after the reference bridge (with host-local), adding
    /// a tap guest with localhost plumbing, so the pod's stack hands the
    /// bridge's addresses and routes over to the guest. The other pod gets
    /// the same; the calls under test are tweed's alone, with the bridge's
    /// result as `prevResult`, as a runtime runs the second plugin.
    fn chained(tag: &str) -> Bench {
        let node = Node::new(tag);
        let mut bridge = node.reference_bridge(96);
        bridge["cniVersion"] = json!("1.0.0");
        bridge["name"] = json!("fchain");
        let guest = json!({
            "mode": "tap",
            "localhostPorts": ["8080"],
            "stateDir": node.dir.path().join("state"),
        });
        let tweed = json!({
            "cniVersion": "1.0.0",
            "name": "fchain",
            "type": "tweed",
            "logFile": node.log_file(),
            "wireDir": node.dir.path().join("wires"),
            "guest": guest,
        });
        let mut bench = Bench {
            node,
            conf: RefCell::new(Value::Null),
            args: String::new(),
            other: TestNs::new(&format!("{tag}o")),
            pod: TestNs::new(&format!("{tag}p")),
            cursor_restored: true,
            chain: Some(Chained {
                bridge,
                tweed,
                empty: String::new(),
            }),
        };
        // The bridge makes a new pair for every attachment: without
        // duplicate address detection their link-local addresses settle
        // at once (tweed's own addresses skip it anyway).
        for ns in [&bench.node.ns, &bench.pod] {
            for key in ["all", "default"] {
                let setting = format!("net.ipv6.conf.{key}.accept_dad=0");
                ns.exec_ok(&["sysctl", "-qw", &setting]);
            }
        }
        let other = bench.chain_conf(bench.bridge_call("ADD", "live-1", &bench.other));
        bench
            .node
            .call("ADD", &other)
            .container("live-1", &bench.other.path(), "eth0")
            .run()
            .expect_ok("chained ADD of the other pod");
        let empty = bench.settled();
        if let Some(c) = bench.chain.as_mut() {
            c.empty = empty;
        }
        bench.attach_bridge();
        bench
    }

    fn conf(&self) -> Value {
        self.conf.borrow().clone()
    }

    /// The chained bench's reference bridge, for the attachment `id` of
    /// `ns`: its result (ADD) or nothing.
    fn bridge_call(&self, command: &str, id: &str, ns: &TestNs) -> Value {
        let chain = self.chain.as_ref().expect("a chained bench");
        tweed_testkit::CniCall::new(reference_plugin("bridge"), command)
            .config(&chain.bridge)
            .in_node(&self.node.ns.name)
            .container(id, &ns.path(), "eth0")
            .run()
            .expect_ok(&format!("the reference bridge's {command}"))
    }

    /// tweed's chained config after the bridge's `result`.
    fn chain_conf(&self, result: Value) -> Value {
        let mut conf = self.chain.as_ref().expect("a chained bench").tweed.clone();
        conf["prevResult"] = result;
        conf
    }

    /// The bridge's ADD of the pod under test, which tweed's calls follow.
    fn attach_bridge(&self) {
        let result = self.bridge_call("ADD", ID, &self.pod);
        *self.conf.borrow_mut() = self.chain_conf(result);
    }

    fn snapshot(&self) -> String {
        let dir = self.node.dir.path();
        let text = state(
            &[&self.node.ns.name, &self.other.name, &self.pod.name],
            &[&dir.join("ipam"), &dir.join("state"), &dir.join("wires")],
        );
        if self.cursor_restored {
            text
        } else {
            without_cursor(&text)
        }
    }

    /// The snapshot once it equals `expected` (a DEL's device removal
    /// finishes in a detached process; the kernel reports some changes a
    /// moment late), else the last one after `secs`.
    fn snapshot_like(&self, expected: &str, secs: u64, ignore_cursor: bool) -> String {
        let strip = |s: &str| {
            if ignore_cursor {
                without_cursor(s)
            } else {
                s.to_string()
            }
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let now = self.snapshot();
            if strip(&now) == strip(expected) || std::time::Instant::now() >= deadline {
                return now;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The snapshot once it stops changing: the links the other pod's ADD
    /// made finish IPv6 duplicate address detection (their link-local
    /// addresses stay `tentative` a second or more on a busy machine).
    /// In macvtap mode the pod interface's link-local address stays
    /// `dadfailed tentative` for good (the macvtap took its MAC, hence
    /// the same address), which is settled too.
    fn settled(&self) -> String {
        let mut last = self.snapshot();
        for _ in 0..40 {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let now = self.snapshot();
            if now == last && !dad_under_way(&now) {
                return now;
            }
            last = now;
        }
        panic!("the node and pods never settled:\n{last}");
    }

    fn run(&self, command: &str, env: &[(&str, String)]) -> CniOutput {
        let mut call = self
            .node
            .call(command, &self.conf())
            .container(ID, &self.pod.path(), "eth0")
            .env("CNI_ARGS", &self.args);
        for (k, v) in env {
            call = call.env(k, v);
        }
        call.run()
    }

    /// `command` run clean with a trace: the steps it passed, which must
    /// be at least `min` and include `must_pass`, so that no test passes
    /// for want of fault points.
    fn traced(&self, command: &str, min: usize, must_pass: &[&str]) -> Vec<String> {
        let trace = self.node.dir.path().join(format!("trace-{command}"));
        let _ = std::fs::remove_file(&trace);
        self.run(
            command,
            &[(tweed_plugin::faults::TRACE_ENV, path_str(&trace))],
        )
        .expect_ok(&format!("traced {command}"));
        let steps: Vec<String> = std::fs::read_to_string(&trace)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        assert!(
            steps.len() >= min,
            "{command} passed only {} fault points, expected at least {min}: {steps:?}",
            steps.len()
        );
        for s in must_pass {
            assert!(steps.iter().any(|x| x == s), "{s} not among {steps:?}");
        }
        // For docs/reliability.md (shown with --nocapture).
        eprintln!(
            "{} {command}: {} fault points: {}",
            self.conf()["name"],
            steps.len(),
            steps.join(" ")
        );
        steps
    }

    fn faulted(&self, command: &str, k: usize) -> CniOutput {
        self.run(command, &[(tweed_plugin::faults::AT_ENV, k.to_string())])
    }

    /// Asserts the injected error for step `k` of `steps`.
    fn expect_injected(&self, out: &CniOutput, steps: &[String], k: usize, what: &str) {
        let msg = out.expect_error(INJECTED, what);
        let step = format!("step {k}: {}", steps[k - 1]);
        assert!(msg.contains(&step), "{what}: {msg:?} does not name {step}");
        assert_eq!(
            out.json()["cniVersion"],
            self.conf()["cniVersion"],
            "{what}: {}",
            out.stdout
        );
    }

    /// A clean ADD then DEL of the pod under test; returns the snapshot
    /// after it.
    fn cycle(&self, before: &str, what: &str) -> String {
        self.run("ADD", &[])
            .expect_ok(&format!("{what}: clean ADD"));
        self.del(before, what)
    }

    /// DEL of the pod's attachment, which must leave the node and pods
    /// as `before` the ADD apart from the IPAM cursor the ADD moved; or,
    /// chained, where tweed's DEL leaves the pod interface to the
    /// bridge's, as the chain's DEL leaves them, before the bridge
    /// attaches the pod again. Returns the snapshot to go on from.
    fn del(&self, before: &str, what: &str) -> String {
        self.run("DEL", &[])
            .expect_ok(&format!("{what}: clean DEL"));
        let expected = match &self.chain {
            Some(c) => {
                self.bridge_call("DEL", ID, &self.pod);
                &c.empty
            }
            None => before,
        };
        let after = self.snapshot_like(expected, 5, true);
        assert_same_state(
            &without_cursor(expected),
            &without_cursor(&after),
            &format!("{what}: clean ADD and DEL"),
        );
        if self.chain.is_none() {
            return after;
        }
        self.attach_bridge();
        self.settled()
    }

    fn reservations(&self) -> Vec<String> {
        self.node
            .reservations(self.conf()["name"].as_str().unwrap())
    }
}

fn path_str(p: &std::path::Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// The pod's identity for wires (which join pods by name), as a
/// Kubernetes runtime passes it (with `IgnoreUnknown`, without which
/// host-local refuses keys it does not know).
fn pod_args(name: &str) -> String {
    format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}")
}

fn with_wires(name: &str) -> String {
    format!("{};TWEED_WIRES=eth1=peer:eth1", pod_args(name))
}

/// An IPv6 address still in duplicate address detection.
fn dad_under_way(snapshot: &str) -> bool {
    snapshot
        .lines()
        .any(|l| l.contains(" tentative") && !l.contains(" dadfailed"))
}

/// A snapshot without the IPAM store's round-robin cursor files.
fn without_cursor(text: &str) -> String {
    text.lines()
        .filter(|l| !l.contains("/last_reserved_ip."))
        .collect::<Vec<_>>()
        .join("\n")
}

/// ADD fails at each of its steps in turn; asserts every step's
/// rollback.
fn every_add_step(bench: &Bench, min_steps: usize, must_pass: &[&str]) {
    let before = bench.settled();
    let steps = bench.traced("ADD", min_steps, must_pass);
    let mut before = bench.del(&before, "the traced ADD");
    for k in 1..=steps.len() {
        let what = format!("ADD failing at step {k} ({})", steps[k - 1]);
        let out = bench.faulted("ADD", k);
        bench.expect_injected(&out, &steps, k, &what);
        let after = bench.snapshot_like(&before, 3, false);
        assert_same_state(&before, &after, &what);
        before = bench.cycle(&after, &what);
    }
}

/// DEL fails at each of its steps in turn, each time of a fresh ADD.
fn every_del_step(bench: &Bench, min_steps: usize, must_pass: &[&str]) {
    let mut before = bench.settled();
    bench.run("ADD", &[]).expect_ok("ADD to trace DEL");
    let steps = bench.traced("DEL", min_steps, must_pass);
    let after = bench.snapshot_like(&before, 5, true);
    assert_same_state(
        &without_cursor(&before),
        &without_cursor(&after),
        "the traced DEL",
    );
    before = after;
    let other = |b: &Bench| state(&[&b.other.name], &[]);
    let other_before = other(bench);
    let others = bench.reservations();
    for k in 1..=steps.len() {
        let what = format!("DEL failing at step {k} ({})", steps[k - 1]);
        bench.run("ADD", &[]).expect_ok(&format!("{what}: ADD"));
        let held = bench.reservations();
        let out = bench.faulted("DEL", k);
        bench.expect_injected(&out, &steps, k, &what);
        // The other pod's attachment: its namespace and reservation.
        assert_same_state(&other_before, &other(bench), &what);
        // DEL carries on past a failed step: the address is released
        // unless releasing it was the step; the other pod's stays.
        let left = bench.reservations();
        let kept = if ["del.release", "del.host-veth-down"].contains(&steps[k - 1].as_str()) {
            0
        } else {
            1
        };
        assert_eq!(
            left.len() + kept,
            held.len(),
            "{what}: {held:?} -> {left:?}"
        );
        assert!(
            others.iter().all(|ip| left.contains(ip)),
            "{what}: the other pod's {others:?} not in {left:?}"
        );
        bench
            .run("DEL", &[])
            .expect_ok(&format!("{what}: retried DEL"));
        let after = bench.snapshot_like(&before, 5, true);
        assert_same_state(
            &without_cursor(&before),
            &without_cursor(&after),
            &format!("{what}, then retried"),
        );
        before = after;
    }
}

fn dual_stack(node: &Node) -> Value {
    node.conf(
        "fdual",
        "1.1.0",
        json!([[{"subnet": "10.244.91.0/24"}], [{"subnet": "fd00:244:91::/64"}]]),
    )
}

/// A bench on a network whose IPAM is the reference host-local (1.1.1,
/// which speaks CNI up to 1.0.0).
fn host_local(tag: &str, name: &str, third: u8) -> Bench {
    reference_plugin("host-local");
    let conf = |node: &Node| {
        let ranges = json!([[{"subnet": format!("10.244.{third}.0/24")}]]);
        let mut c = node.conf(name, "1.0.0", ranges);
        c["ipam"]["type"] = json!("host-local");
        c
    };
    Bench::new(tag, conf, &pod_args("fault"), false)
}

fn guest_tap(node: &Node) -> Value {
    let mut c = node.conf_v4("fguest", 92);
    c["guest"] = json!({"mode": "tap", "localhostPorts": ["8080"], "podServices": [9090]});
    c
}

fn guest_macvtap(node: &Node) -> Value {
    let mut c = node.conf_v4("fmacv", 94);
    c["guest"] = json!({"mode": "macvtap"});
    c
}

#[test]
fn add_with_builtin_ipam_fails_cleanly_at_every_step() {
    let bench = Bench::new("fab", dual_stack, &with_wires("fault"), true);
    every_add_step(
        &bench,
        12,
        &[
            "add.ipam-allocate",
            "add.veth",
            "pod.address",
            "pod.route",
            "add.wires-record",
            "add.done",
        ],
    );
}

#[test]
fn add_with_delegated_host_local_fails_cleanly_at_every_step() {
    let bench = host_local("fad", "fdel", 93);
    every_add_step(
        &bench,
        9,
        &["add.ipam-delegate", "add.ipam-delegate-result", "add.done"],
    );
}

#[test]
fn guest_add_in_tap_mode_fails_cleanly_at_every_step() {
    let bench = Bench::new("fgt", guest_tap, &with_wires("fault"), true);
    every_add_step(
        &bench,
        22,
        &[
            "tap.create",
            "tap.redirect-tap-to-pod",
            "localhost.nft",
            "guest.record",
            "add.wires-record",
            "add.done",
        ],
    );
}

#[test]
fn guest_add_in_macvtap_mode_fails_cleanly_at_every_step() {
    let bench = Bench::new("fgm", guest_macvtap, &pod_args("fault"), true);
    every_add_step(
        &bench,
        10,
        &[
            "macvtap.pod-mac",
            "macvtap.create",
            "macvtap.device-number",
            "guest.record",
        ],
    );
}

#[test]
fn chained_guest_add_fails_cleanly_at_every_step() {
    let bench = Bench::chained("fgc");
    every_add_step(
        &bench,
        19,
        &[
            "tap.create",
            "localhost.nft",
            "guest.record",
            "chained.route-handover",
            "chained.address-handover",
            "chained.done",
        ],
    );
}

#[test]
fn del_of_a_guest_with_wires_finishes_when_retried_after_a_failure_at_every_step() {
    let bench = Bench::new("fdg", guest_tap, &with_wires("fault"), true);
    every_del_step(
        &bench,
        6,
        &[
            "guest.del-localhost",
            "guest.del-device",
            "guest.del-record",
            "del.wires",
            "del.release",
            "del.host-veth",
        ],
    );
}

#[test]
fn del_with_delegated_host_local_finishes_when_retried_after_a_failure_at_every_step() {
    let bench = host_local("fdd", "fdeld", 95);
    every_del_step(&bench, 3, &["del.release", "del.host-veth"]);
}

#[test]
fn del_of_a_macvtap_guest_finishes_when_retried_after_a_failure_at_every_step() {
    let bench = Bench::new("fdm", guest_macvtap, &pod_args("fault"), true);
    every_del_step(
        &bench,
        5,
        &["guest.del-device", "guest.del-record", "del.host-veth"],
    );
}
