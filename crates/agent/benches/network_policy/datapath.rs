//! Figure 2: traffic between two pods of node 1 (a → b across its
//! bridge) with no NetworkPolicy rules on the node and with 1,000, in the
//! same run, rounds alternating which goes first.
//!
//! The 1,000 rules: 1,000 policies (`bench=rules`) select b by the label
//! `rules=on` and let in, one each: a /32 ipBlock on port 80, a /24
//! ipBlock with an `except` on ports 8000-8100, pods app=c on a port of
//! their own, and — one of them — pods app=a on every port. Labelling b
//! puts all 1,000 rules in b's ingress chain (and one drop); taking the
//! label off leaves the node without rules. a's traffic is still allowed,
//! by the one rule; c's is refused (both checked).
//!
//! Measured a → b: TCP throughput (one iperf3 stream), request/response
//! on one connection (1-byte round trips, TCP_RR-like) and whole
//! connections (connect, one round trip, close: TCP_CRR-like). Only a
//! connection's first packet walks b's chain: the forward chain accepts
//! established traffic before any pod's rules, so the per-packet figures
//! are expected to stay put and the per-connection one to move.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::Client;
use serde_json::{Value, json};
use tweed_testkit::bridged_pods::in_ns;
use tweed_testkit::interrupt::check_interrupted;
use tweed_testkit::process::terminate_within;
use tweed_testkit::tcp_rr::{EchoServer, connection_round_trips, round_trips};

use crate::fabric::Node;
use crate::objects::{NetworkPolicySet, label_pod, policy};
use crate::rules;

const IPERF_PORT: u16 = 5201;
const RR_PORT: u16 = 9100;
const ROUND_TRIPS: usize = 20_000;
const CONNECTIONS: usize = 2_000;
/// The CPU both ends of the request/response figures are pinned to.
const CPU: usize = 0;

/// One side's figures, one value per round. Percentiles are taken per
/// round and summarised by their median over the rounds, so one round
/// disturbed by the machine's other work does not make the p99.
#[derive(Default)]
pub struct Side {
    pub gbits: Vec<f64>,
    pub rr_p50_us: Vec<f64>,
    pub rr_p99_us: Vec<f64>,
    pub crr_p50_us: Vec<f64>,
    pub crr_p99_us: Vec<f64>,
}

pub struct Results {
    pub without: Side,
    pub with: Side,
    /// Rules in b's ingress chain with the label on (the drop included).
    pub chain_rules: usize,
    /// Where in that chain the rule that lets a in is (1-based).
    pub allow_position: usize,
    /// Label written → the kernel holding every rule, s.
    pub apply_s: Vec<f64>,
}

/// The `count` policies, the one that lets a in last.
pub fn policies(count: usize) -> Vec<k8s_openapi::api::networking::v1::NetworkPolicy> {
    let selector = json!({"matchLabels": {"app": "b", "rules": "on"}});
    let mut out: Vec<_> = (0..count - 1)
        .map(|i| {
            let (hi, lo) = (i / 256, i % 256);
            let rule = match i % 3 {
                0 => json!({"from": [{"ipBlock": {"cidr": format!("10.250.{hi}.{lo}/32")}}],
                            "ports": [{"port": 80}]}),
                1 => json!({"from": [{"ipBlock": {"cidr": format!("10.251.{lo}.0/24"),
                                                  "except": [format!("10.251.{lo}.128/25")]}}],
                            "ports": [{"port": 8000, "endPort": 8100}]}),
                _ => json!({"from": [{"podSelector": {"matchLabels": {"app": "c"}}}],
                            "ports": [{"port": 10_000 + i}]}),
            };
            let spec = json!({"podSelector": selector, "ingress": [rule]});
            policy(
                "default",
                &format!("rules-{i:04}"),
                NetworkPolicySet::Rules,
                spec,
            )
        })
        .collect();
    let allow = json!({"podSelector": selector,
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]});
    out.push(policy(
        "default",
        "rules-allow-a",
        NetworkPolicySet::Rules,
        allow,
    ));
    out
}

/// Puts b's rules on or takes them off and waits for the kernel; the
/// time that took, s.
async fn set_rules(client: &Client, node: &Node, on: bool) -> f64 {
    let b = format!("{}-b", node.name);
    let label: Value = if on { json!("on") } else { Value::Null };
    let started = Instant::now();
    label_pod(client, "default", &b, json!({"rules": label})).await;
    let want = rules::expected(client, &node.name).await;
    let done = rules::wait_for(node.ns(), want, Duration::from_secs(120), &node.log());
    (done - started).as_secs_f64()
}

/// Checks the rules decide: a passes, c is refused; returns b's chain's
/// length and where a's rule is in it.
fn check_rules(node: &Node) -> (usize, usize) {
    let chain = rules::chain_rules(node.ns(), &format!("default/{}-b ingress", node.name));
    let a = format!("\"{}\"", node.pods.addr("a"));
    let position = chain
        .iter()
        .position(|r| r.to_string().contains(&a))
        .unwrap_or_else(|| panic!("no rule in b's chain names a ({a})"))
        + 1;
    assert!(
        node.pods.connect("a", "b", RR_PORT).is_some(),
        "a -> b refused with the rules on"
    );
    assert!(
        node.pods.connect("c", "b", RR_PORT).is_none(),
        "c -> b passes with the rules on"
    );
    (chain.len() + 1, position)
}

fn iperf3(node: &Node, secs: usize) -> f64 {
    let b = node.pods.addr("b");
    let out = in_ns(node.pods.netns("a"), || {
        Command::new("iperf3")
            .args([
                "-c",
                b,
                "-p",
                &IPERF_PORT.to_string(),
                "-t",
                &secs.to_string(),
                "-J",
            ])
            .output()
    })
    .expect("run iperf3");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let bps = v["end"]["sum_received"]["bits_per_second"].as_f64();
    match bps {
        Some(bps) if out.status.success() => bps / 1e9,
        _ => panic!(
            "iperf3 a -> b failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn measure(node: &Node, secs: usize, side: &mut Side) {
    let to: SocketAddr = format!("{}:{RR_PORT}", node.pods.addr("b"))
        .parse()
        .unwrap();
    let a_ns = node.pods.netns("a").to_string();
    let gbits = iperf3(node, secs);
    let stream = in_ns(&a_ns, || TcpStream::connect(to)).expect("a -> b");
    let rr = round_trips(stream, ROUND_TRIPS, 1_000, CPU);
    let crr = connection_round_trips(CONNECTIONS, CPU, move || {
        in_ns(&a_ns, || TcpStream::connect(to))
    });
    let q = |xs: &[f64], p: f64| tweed_testkit::stats::percentile(xs, p);
    println!(
        "    {gbits:.2} Gbit/s; request/response p50 {:.1} µs, p99 {:.1} µs; connection p50 {:.1} µs, p99 {:.1} µs",
        q(&rr, 50.0),
        q(&rr, 99.0),
        q(&crr, 50.0),
        q(&crr, 99.0)
    );
    side.gbits.push(gbits);
    side.rr_p50_us.push(q(&rr, 50.0));
    side.rr_p99_us.push(q(&rr, 99.0));
    side.crr_p50_us.push(q(&crr, 50.0));
    side.crr_p99_us.push(q(&crr, 99.0));
}

/// iperf3's server in b, stopped by its pid when dropped (also when the
/// bench fails).
struct IperfServer(Option<Child>);

impl IperfServer {
    fn start(node: &Node) -> IperfServer {
        let b = node.pods.addr("b");
        let child = in_ns(node.pods.netns("b"), || {
            Command::new("iperf3")
                .args(["-s", "-B", b, "-p", &IPERF_PORT.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .expect("start iperf3 -s");
        let server = IperfServer(Some(child));
        // Listening within a moment; a client before that is refused.
        let to: SocketAddr = format!("{b}:{IPERF_PORT}").parse().unwrap();
        for _ in 0..50 {
            if in_ns(node.pods.netns("a"), || TcpStream::connect(to)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("iperf3 -s in b not listening within 5 s");
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            terminate_within(child, Duration::from_secs(10), "iperf3 -s");
        }
    }
}

pub async fn run(
    client: &Client,
    node: &Node,
    count: usize,
    rounds: usize,
    secs: usize,
) -> Results {
    crate::objects::create_policies(client, &policies(count)).await;
    // 12 x 2,000 connections in a few minutes leave more ports in
    // TIME_WAIT than a has even ephemeral ports (connect() tries those
    // first), and then every connect() scans them all: milliseconds each,
    // seen in a run. a may reuse its TIME_WAIT ports instead.
    let a_ns = node.pods.netns("a").to_string();
    tweed_testkit::run_ok(
        "ip",
        &[
            "netns",
            "exec",
            &a_ns,
            "sysctl",
            "-qw",
            "net.ipv4.tcp_tw_reuse=1",
        ],
    );
    let b = node.pods.addr("b").to_string();
    let listener = in_ns(node.pods.netns("b"), || {
        TcpListener::bind((b.as_str(), RR_PORT))
    })
    .expect("listen in b");
    let echo = EchoServer::start(listener, CPU);
    let iperf_server = IperfServer::start(node);
    let mut r = Results {
        without: Side::default(),
        with: Side::default(),
        chain_rules: 0,
        allow_position: 0,
        apply_s: Vec::new(),
    };
    let mut on = false;
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for want in order {
            check_interrupted();
            if want != on {
                let took = set_rules(client, node, want).await;
                on = want;
                if on {
                    r.apply_s.push(took);
                    (r.chain_rules, r.allow_position) = check_rules(node);
                }
            }
            println!(
                "  round {}, {} rules on node 1:",
                round + 1,
                if on { count } else { 0 }
            );
            measure(node, secs, if on { &mut r.with } else { &mut r.without });
        }
    }
    if on {
        set_rules(client, node, false).await;
    }
    drop(iperf_server);
    echo.stop(move |addr| in_ns(&a_ns, || TcpStream::connect(addr)));
    crate::objects::delete_policies(client, NetworkPolicySet::Rules).await;
    r
}
