//! What a guest attachment costs (root only; see docs/benchmarks.md).
//!
//! 1. ADD latency, tap mode against plain container mode: the real
//!    `tweed` binary, `TWEED_BENCH_N` pods each (default 50), interleaved,
//!    medians. Tap mode's ADD does everything the container ADD does plus
//!    the tap, the two qdiscs and redirects and the guest record.
//! 2. One TCP stream (iperf3, `TWEED_BENCH_SECS` s, default 5,
//!    `TWEED_BENCH_ROUNDS` rounds, default 5, interleaved) from a container
//!    to a guest on the same node, against container to container. The
//!    guest's side of the redirect is a veth into a "guest" namespace,
//!    joined to the pod's eth0 by the same two-way redirect tweed builds
//!    (`tweed_netlink::add_redirect`): the far end of a tap is a VMM, whose
//!    own speed (TCG here) would swamp what the redirect costs.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tweed_netlink::{NetNs, Netlink};
use tweed_testkit::stats::median;
use tweed_testkit::{CniCall, TestNs, run_ok};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tweed() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_tweed"))
}

fn add(node: &TestNs, conf: &Value, id: &str, pod: &TestNs) -> (Value, Duration) {
    let out = CniCall::new(tweed(), "ADD")
        .config(conf)
        .in_node(&node.name)
        .container(id, &pod.path(), "eth0")
        .run();
    let result = out.expect_ok("ADD");
    (result, out.elapsed)
}

fn del(node: &TestNs, conf: &Value, id: &str, pod: &TestNs) {
    CniCall::new(tweed(), "DEL")
        .config(conf)
        .in_node(&node.name)
        .container(id, &pod.path(), "eth0")
        .run()
        .expect_ok("DEL");
}

fn iperf(client: &TestNs, server_ip: &str, secs: u64) -> f64 {
    let out = Command::new("ip")
        .args(["netns", "exec", &client.name, "iperf3", "-J", "-O", "1"])
        .args(["-t", &secs.to_string(), "-c", server_ip])
        .output()
        .expect("iperf3");
    assert!(
        out.status.success(),
        "iperf3: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("bits_per_second")
        / 1e9
}

fn bare(result: &Value) -> String {
    let a = result["ips"][0]["address"].as_str().unwrap();
    a.split('/').next().unwrap().to_string()
}

/// An iperf3 server in `ns`, killed by pid on drop.
struct Server(std::process::Child);

impl Server {
    fn start(ns: &str) -> Server {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "iperf3", "-s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("iperf3 -s");
        std::thread::sleep(Duration::from_millis(300));
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let n = env_num("TWEED_BENCH_N", 50) as usize;
    let secs = env_num("TWEED_BENCH_SECS", 5);
    let rounds = env_num("TWEED_BENCH_ROUNDS", 5) as usize;
    let node = TestNs::new("bgn");
    let dir = tempfile::tempdir().unwrap();
    let base = |third: u8| {
        json!({
            "cniVersion": "1.1.0", "name": format!("bench{third}"), "type": "tweed",
            "bridge": "tweed0",
            "logFile": dir.path().join("cni.log"),
            "ipam": {"ranges": [[{"subnet": format!("10.244.{third}.0/22")}]], "dataDir": dir.path().join("ipam")},
        })
    };
    let plain = base(80);
    let mut tap = base(84);
    tap["guest"] = json!({"mode": "tap", "stateDir": dir.path().join("state")});

    // 1. ADD latency.
    let (mut t_plain, mut t_tap) = (Vec::new(), Vec::new());
    let warmup = 3;
    for i in 0..n + warmup {
        let (pa, pb) = (TestNs::new("bgp"), TestNs::new("bgt"));
        let order = [(&plain, &pa, "p", false), (&tap, &pb, "t", true)];
        let order: Vec<_> = if i % 2 == 0 {
            order.into_iter().collect()
        } else {
            order.into_iter().rev().collect()
        };
        for (conf, pod, tag, is_tap) in order {
            let id = format!("{tag}{i}");
            let (_, took) = add(&node, conf, &id, pod);
            if i >= warmup {
                let ms = took.as_secs_f64() * 1e3;
                if is_tap {
                    t_tap.push(ms)
                } else {
                    t_plain.push(ms)
                }
            }
            del(&node, conf, &id, pod);
        }
    }
    let (mp, mt) = (median(&t_plain), median(&t_tap));
    println!("guest ADD latency, {n} pods each, interleaved (medians)");
    println!("  plain container ADD   {mp:7.2} ms");
    println!("  tap-mode guest ADD    {mt:7.2} ms");
    println!("  ratio tap/plain       {:7.2}", mt / mp);

    // 2. Throughput through the redirect.
    let (client, server, gpod, guest) = (
        TestNs::new("bgc"),
        TestNs::new("bgs"),
        TestNs::new("bgg"),
        TestNs::new("bgv"),
    );
    add(&node, &plain, "client", &client);
    let (rs, _) = add(&node, &plain, "server", &server);
    let (rg, _) = add(&node, &plain, "guestpod", &gpod);
    let server_ip = bare(&rs);
    let guest_ip = bare(&rg);
    let guest_addr = rg["ips"][0]["address"].as_str().unwrap().to_string();
    let gw = rg["ips"][0]["gateway"].as_str().unwrap().to_string();
    let mac = rg["interfaces"][2]["mac"].as_str().unwrap().to_string();
    // The pod gives its address to the "guest", as in tap mode.
    run_ok("ip", &["-n", &gpod.name, "addr", "flush", "dev", "eth0"]);
    run_ok(
        "ip",
        &[
            "-n",
            &gpod.name,
            "link",
            "add",
            "vm0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &guest.name,
        ],
    );
    run_ok("ip", &["-n", &gpod.name, "link", "set", "vm0", "up"]);
    run_ok(
        "ip",
        &[
            "-n",
            &guest.name,
            "link",
            "set",
            "eth0",
            "address",
            &mac,
            "up",
        ],
    );
    run_ok(
        "ip",
        &["-n", &guest.name, "addr", "add", &guest_addr, "dev", "eth0"],
    );
    run_ok(
        "ip",
        &["-n", &guest.name, "route", "add", "default", "via", &gw],
    );
    let ns = NetNs::named(&gpod.name).unwrap();
    let mut nl = Netlink::in_netns(&ns).unwrap();
    let eth0 = nl.link_by_name("eth0").unwrap().unwrap().index;
    let vm0 = nl.link_by_name("vm0").unwrap().unwrap().index;
    for i in [eth0, vm0] {
        nl.add_ingress_qdisc(i).unwrap();
    }
    nl.add_redirect(eth0, vm0).unwrap();
    nl.add_redirect(vm0, eth0).unwrap();

    let _s1 = Server::start(&server.name);
    let _s2 = Server::start(&guest.name);
    let (mut c2c, mut c2g) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let pair = [(&server_ip, &mut c2c), (&guest_ip, &mut c2g)];
        if r % 2 == 0 {
            for (ip, v) in pair {
                v.push(iperf(&client, ip, secs));
            }
        } else {
            for (ip, v) in pair.into_iter().rev() {
                v.push(iperf(&client, ip, secs));
            }
        }
    }
    let (a, b) = (median(&c2c), median(&c2g));
    println!("one TCP stream on one node, {rounds} rounds of {secs} s, interleaved (medians)");
    println!("  container → container {a:7.2} Gbit/s");
    println!("  container → guest     {b:7.2} Gbit/s  (through the two-way redirect)");
    println!("  ratio guest/container {:7.2}", b / a);
}
