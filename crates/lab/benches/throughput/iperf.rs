//! One measured path and one iperf3 run over it.

use serde_json::Value;

use crate::common::{check_interrupted, cmd_in};

pub const PORT: u16 = 5201;

/// One measured path: a client namespace, a server namespace (running an
/// iperf3 server), the address the client connects to.
pub struct Path {
    pub name: String,
    pub client_ns: String,
    pub server_ns: String,
    pub server_ip: String,
    pub gbps: Vec<f64>,
    pub retrans: Vec<f64>,
    pub cpu_sender: Vec<f64>,
    pub cpu_receiver: Vec<f64>,
}

impl Path {
    pub fn new(name: &str, client_ns: &str, server_ns: &str, server_ip: &str) -> Path {
        Path {
            name: name.into(),
            client_ns: client_ns.into(),
            server_ns: server_ns.into(),
            server_ip: server_ip.into(),
            gbps: vec![],
            retrans: vec![],
            cpu_sender: vec![],
            cpu_receiver: vec![],
        }
    }
}

pub fn index(paths: &[Path], name: &str) -> usize {
    paths.iter().position(|p| p.name == name).expect("path")
}

pub struct IperfResult {
    pub gbps: f64,
    pub retransmits: f64,
    pub cpu_sender: f64,
    pub cpu_receiver: f64,
}

pub fn iperf(p: &Path, secs: usize) -> IperfResult {
    let mut argv: Vec<String> = vec!["iperf3".into()];
    for a in [
        "-c",
        &p.server_ip,
        "-p",
        &PORT.to_string(),
        "-t",
        &secs.to_string(),
        "-O",
        "1",
        "-J",
    ] {
        argv.push(a.to_string());
    }
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = cmd_in(&p.client_ns, &argv).output().expect("run iperf3");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: iperf3 output is not JSON ({e}): {text}", p.name));
    if !out.status.success() || v.get("error").is_some() {
        panic!("{}: iperf3 failed: {}", p.name, v["error"]);
    }
    let end = &v["end"];
    IperfResult {
        gbps: end["sum_received"]["bits_per_second"]
            .as_f64()
            .expect("bps")
            / 1e9,
        retransmits: end["sum_sent"]["retransmits"].as_f64().unwrap_or(f64::NAN),
        cpu_sender: end["cpu_utilization_percent"]["host_total"]
            .as_f64()
            .unwrap_or(f64::NAN),
        cpu_receiver: end["cpu_utilization_percent"]["remote_total"]
            .as_f64()
            .unwrap_or(f64::NAN),
    }
}

/// True once `pid` has a listening TCP socket on `port` (any family).
pub fn listening(pid: i32, port: u16) -> bool {
    let want = format!(":{port:04X} ");
    ["tcp", "tcp6"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{f}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && format!("{} ", cols[1]).ends_with(&want) && cols[3] == "0A"
            })
    })
}

/// Runs `reps` rounds of one iperf3 run per path in `order`, every other
/// round in reverse (so each side of a compared pair goes first equally
/// often), recording each run in its path and printing each round.
pub fn run_rounds(paths: &mut [Path], order: &[usize], reps: usize, secs: usize) {
    for round in 0..reps {
        let mut seq = order.to_vec();
        if round % 2 == 1 {
            seq.reverse();
        }
        for i in seq {
            check_interrupted();
            let r = iperf(&paths[i], secs);
            let p = &mut paths[i];
            p.gbps.push(r.gbps);
            p.retrans.push(r.retransmits);
            p.cpu_sender.push(r.cpu_sender);
            p.cpu_receiver.push(r.cpu_receiver);
        }
        let line: Vec<String> = order
            .iter()
            .map(|&i| {
                let p = &paths[i];
                format!(
                    "{} {:.2}",
                    p.name,
                    p.gbps.last().copied().unwrap_or(f64::NAN)
                )
            })
            .collect();
        println!("round {}: {}", round + 1, line.join(", "));
    }
}
