//! kill -9 at every step of ADD (issue 16, item 3): the deterministic
//! counterpart of `churn.rs`. ADD is traced once for the steps it passes
//! (`tweed_plugin::faults`), then, for each step k, SIGKILLed right there
//! (`TWEED_FAULT_KILL_AT=k`: no unwinding, no rollback) and the runtime
//! recovers as runtimes do:
//!
//! - DEL (no cached result): the node and the pod are exactly as before
//!   the ADD — links, addresses, routes, neighbours, tc, nftables, IPAM
//!   files, guest records — and a live attachment of another pod is
//!   untouched; then a clean ADD works (the pod reaches its gateway) and
//!   its DEL leaves the same state again;
//! - a retried ADD first (it succeeds, or is refused with 103 when the
//!   killed ADD left the pod's interface), then DEL with the result it
//!   got, if any: again exactly as before;
//! - for a plain pod, GC with only the other pod valid: exactly as
//!   before, the pod's namespace still there.
//!
//! DEL is killed at each of its steps too: whatever the step, the pod's
//! address is never free in the store while the pod is still on the
//! network with it (its eth0 up with carrier) — else the next ADD could
//! hand it to a second pod — and a retried DEL leaves the state as
//! before the ADD.
//!
//! Runs against the debug build of `tweed`, the only one with fault
//! points.

mod common;

use common::Node;
use common::state::{assert_same_state, state};
use serde_json::{Value, json};
use tweed_testkit::{CniOutput, TestNs};

const ID: &str = "killed-1";

struct Bench {
    node: Node,
    conf: Value,
    args: String,
    other: TestNs,
    pod: TestNs,
}

impl Bench {
    fn new(tag: &str, third: u8, guest: bool) -> Bench {
        const {
            assert!(
                cfg!(debug_assertions),
                "fault points exist only in debug builds: run this test without --release"
            )
        };
        let node = Node::new(tag);
        let mut conf = node.conf_v4(tag, third);
        conf["guest"] = json!({"stateDir": node.dir.path().join("state")});
        conf["wireDir"] = json!(node.dir.path().join("wires"));
        let args = if guest {
            "IgnoreUnknown=1;TWEED_GUEST=tap;TWEED_GUEST_PORTS=8080"
        } else {
            "IgnoreUnknown=1"
        };
        let bench = Bench {
            other: TestNs::new(&format!("{tag}o")),
            pod: TestNs::new(&format!("{tag}p")),
            node,
            conf,
            args: args.to_string(),
        };
        bench
            .node
            .call("ADD", &bench.conf)
            .container("live-1", &bench.other.path(), "eth0")
            .env("CNI_ARGS", &bench.args)
            .run()
            .expect_ok("ADD of the other pod");
        bench
    }

    fn run(&self, command: &str, conf: &Value, env: &[(&str, String)]) -> CniOutput {
        let mut call = self
            .node
            .call(command, conf)
            .container(ID, &self.pod.path(), "eth0")
            .env("CNI_ARGS", &self.args);
        for (k, v) in env {
            call = call.env(k, v);
        }
        call.run()
    }

    fn snapshot(&self) -> String {
        let dir = self.node.dir.path();
        let text = state(
            &[&self.node.ns.name, &self.other.name, &self.pod.name],
            &[&dir.join("ipam"), &dir.join("state"), &dir.join("wires")],
        );
        // The round-robin cursor moves with every reservation, by design.
        text.lines()
            .filter(|l| !l.contains("/last_reserved_ip."))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The snapshot once it equals `expected` (a DEL's device removal
    /// finishes in a detached process), else the last one after 5 s.
    fn snapshot_like(&self, expected: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let now = self.snapshot();
            if now == expected || std::time::Instant::now() >= deadline {
                return now;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// ADD killed at step `k`; asserts it died of the signal.
    fn killed_add(&self, k: usize, what: &str) {
        self.killed("ADD", &self.conf, k, what);
    }

    /// `command` killed at step `k`; asserts it died of the signal.
    fn killed(&self, command: &str, conf: &Value, k: usize, what: &str) {
        let out = self.run(
            command,
            conf,
            &[(tweed_plugin::faults::KILL_AT_ENV, k.to_string())],
        );
        assert!(
            !out.ok() && out.exit_code == 128 + libc::SIGKILL,
            "{what}: the {command} was not killed: exit {} {}{}",
            out.exit_code,
            out.stdout,
            out.stderr
        );
    }

    fn del(&self, prev: Option<&Value>, what: &str) {
        let mut conf = self.conf.clone();
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        self.run("DEL", &conf, &[])
            .expect_ok(&format!("{what}: DEL"));
    }

    /// A clean ADD (the pod reaches its gateway) and its DEL.
    fn clean_cycle(&self, before: &str, what: &str) {
        let result = self
            .run("ADD", &self.conf, &[])
            .expect_ok(&format!("{what}: clean ADD"));
        if !self.args.contains("TWEED_GUEST") {
            let gw = result["ips"][0]["gateway"].as_str().expect("gateway");
            assert!(self.pod.ping(gw), "{what}: the pod cannot reach {gw}");
        }
        self.del(Some(&result), &format!("{what}: clean"));
        let after = self.snapshot_like(before);
        assert_same_state(before, &after, &format!("{what}: clean ADD and DEL"));
    }
}

/// The steps a clean ADD passes (at least `min`, including `must_pass`).
fn traced_steps(bench: &Bench, min: usize, must_pass: &[&str]) -> Vec<String> {
    let trace = bench.node.dir.path().join("trace-ADD");
    let result = bench
        .run(
            "ADD",
            &bench.conf,
            &[(
                tweed_plugin::faults::TRACE_ENV,
                trace.to_str().unwrap().to_string(),
            )],
        )
        .expect_ok("traced ADD");
    bench.del(Some(&result), "traced ADD");
    let steps: Vec<String> = std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(steps.len() >= min, "only {} steps: {steps:?}", steps.len());
    for s in must_pass {
        assert!(steps.iter().any(|x| x == s), "{s} not among {steps:?}");
    }
    eprintln!(
        "{}: ADD killed at each of {} steps: {}",
        bench.conf["name"],
        steps.len(),
        steps.join(" ")
    );
    steps
}

/// Every step killed, each followed by every recovery.
fn every_step(bench: &Bench, min: usize, must_pass: &[&str], with_gc: bool) {
    let before = common::state::settled(|| bench.snapshot());
    let steps = traced_steps(bench, min, must_pass);
    let after_trace = bench.snapshot_like(&before);
    assert_same_state(&before, &after_trace, "the traced ADD and its DEL");
    for k in 1..=steps.len() {
        let what = format!("ADD killed at step {k} ({})", steps[k - 1]);

        bench.killed_add(k, &what);
        bench.del(None, &format!("{what}, then DEL"));
        let after = bench.snapshot_like(&before);
        assert_same_state(&before, &after, &format!("{what}, then DEL"));
        bench.clean_cycle(&before, &what);

        bench.killed_add(k, &what);
        let retry = bench.run("ADD", &bench.conf, &[]);
        let prev = if retry.ok() {
            Some(retry.json())
        } else {
            retry.expect_error(103, &format!("{what}, then ADD again"));
            None
        };
        bench.del(prev.as_ref(), &format!("{what}, then ADD again"));
        let after = bench.snapshot_like(&before);
        assert_same_state(&before, &after, &format!("{what}, then ADD again and DEL"));

        if with_gc {
            bench.killed_add(k, &what);
            let mut gc = bench.conf.clone();
            gc["cni.dev/valid-attachments"] = json!([{"containerID": "live-1", "ifname": "eth0"}]);
            bench
                .node
                .call("GC", &gc)
                .run()
                .expect_ok(&format!("{what}, then GC"));
            let after = bench.snapshot_like(&before);
            assert_same_state(&before, &after, &format!("{what}, then GC"));
        }
    }
}

#[test]
fn add_killed_at_every_step_is_recovered_by_del_retry_or_gc() {
    let bench = Bench::new("kplain", 141, false);
    every_step(
        &bench,
        8,
        &[
            "add.ipam-allocate",
            "add.veth",
            "add.veth-label",
            "pod.address",
            "add.done",
        ],
        true,
    );
}

#[test]
fn guest_add_killed_at_every_step_is_recovered_by_del_or_retry() {
    let bench = Bench::new("kguest", 142, true);
    every_step(
        &bench,
        20,
        &[
            "add.veth-label",
            "tap.create",
            "tap.alias",
            "tap.name",
            "localhost.nft",
            "guest.record",
            "add.done",
        ],
        false,
    );
}

/// The pod's eth0 is on the network: up, with carrier (its host end up).
fn on_the_network(pod: &TestNs) -> bool {
    tweed_testkit::kernel::link(&pod.name, "eth0").is_some_and(|l| {
        let flags: Vec<&str> = l["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        flags.contains(&"UP") && flags.contains(&"LOWER_UP")
    })
}

#[test]
fn del_killed_at_every_step_never_frees_an_address_still_in_use() {
    let bench = Bench::new("kdel", 143, false);
    let before = common::state::settled(|| bench.snapshot());
    let trace = bench.node.dir.path().join("trace-DEL");
    let result = bench
        .run("ADD", &bench.conf, &[])
        .expect_ok("ADD to trace DEL");
    let mut with_prev = bench.conf.clone();
    with_prev["prevResult"] = result;
    bench
        .run(
            "DEL",
            &with_prev,
            &[(
                tweed_plugin::faults::TRACE_ENV,
                trace.to_str().unwrap().to_string(),
            )],
        )
        .expect_ok("traced DEL");
    let steps: Vec<String> = std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    for s in ["del.host-veth-down", "del.release", "del.host-veth"] {
        assert!(steps.iter().any(|x| x == s), "{s} not among {steps:?}");
    }
    eprintln!(
        "DEL killed at each of {} steps: {}",
        steps.len(),
        steps.join(" ")
    );
    assert_same_state(&before, &bench.snapshot_like(&before), "the traced DEL");
    for k in 1..=steps.len() {
        let what = format!("DEL killed at step {k} ({})", steps[k - 1]);
        let result = bench
            .run("ADD", &bench.conf, &[])
            .expect_ok(&format!("{what}: ADD"));
        let ip_now = common::bare(&common::result_ip(&result, true));
        let mut with_prev = bench.conf.clone();
        with_prev["prevResult"] = result;
        bench.killed("DEL", &with_prev, k, &what);
        let reserved = bench.node.reservations("kdel").contains(&ip_now);
        assert!(
            reserved || !on_the_network(&bench.pod),
            "{what}: {ip_now} is free in the store while the pod is still on the network with it"
        );
        bench.del(Some(&with_prev["prevResult"]), &format!("{what}, retried"));
        let after = bench.snapshot_like(&before);
        assert_same_state(&before, &after, &format!("{what}, then DEL again"));
    }
}
