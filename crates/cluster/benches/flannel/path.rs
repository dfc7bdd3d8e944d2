//! The cross-node pod path: TCP throughput (one iperf3 stream, pod on
//! node 1 to pod on node 2) and request/response latency (one TCP
//! connection, 1 byte each way, like netperf's TCP_RR: the time of each
//! round trip), per network.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use tweed_cluster::Cluster;
use tweed_cluster::iperf::{End, iperf};
use tweed_cluster::pods::{Pod, pod, pod_netns};
use tweed_cluster::side_by_side::Network;
use tweed_cluster::stream::{enter, netns_path};
use tweed_testkit::stats::{median, percentile};
use tweed_testkit::tcp_rr::{pin_to_cpu, round_trips as round_trips_on};

use crate::ready::assert_made_by;
use crate::table::{Better, Table};

const IPERF_RUNS: usize = 3;
const ROUND_TRIPS: usize = 20_000;
const RR_PORT: u16 = 9100;

#[derive(Default)]
pub struct Results {
    gbits: HashMap<&'static str, Vec<f64>>,
    rtt_us: HashMap<&'static str, Vec<f64>>,
}

fn pods_yaml(k: usize) -> String {
    ["a", "b"]
        .iter()
        .zip(["tweed-n1", "tweed-n2"])
        .map(|(side, node)| {
            format!(
                "apiVersion: v1
kind: Pod
metadata: {{name: path-{k}-{side}, labels: {{bench: path}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 0
  containers: [{{name: c, image: localhost/tweed-test:latest, imagePullPolicy: Never}}]
---
"
            )
        })
        .collect()
}

impl Results {
    /// Run `k` on `net`, which every node runs now.
    pub fn run(&mut self, c: &Cluster, net: Network, k: usize, secs: usize) {
        c.apply(&pods_yaml(k));
        let (a, b) = (format!("path-{k}-a"), format!("path-{k}-b"));
        c.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{a}"),
            &format!("pod/{b}"),
            "--timeout=120s",
        ]);
        let (a, b) = (pod(c, &a), pod(c, &b));
        assert_made_by(c, &a, net);
        assert_made_by(c, &b, net);
        let (from, to) = (
            End {
                node: 1,
                netns: Some(pod_netns(c, &a)),
            },
            End {
                node: 2,
                netns: Some(pod_netns(c, &b)),
            },
        );
        let gbits: Vec<f64> = (0..IPERF_RUNS)
            .map(|_| iperf(c, &from, &to, &b.ip, secs))
            .collect();
        let rtts = round_trips(c, &a, &b);
        println!(
            "path {}: {:<8} TCP {:.2} Gbit/s (median of {IPERF_RUNS}), RR p50 {:.0} µs p99 {:.0} µs",
            k + 1,
            net.label(),
            median(&gbits),
            percentile(&rtts, 50.0),
            percentile(&rtts, 99.0)
        );
        self.gbits.entry(net.label()).or_default().extend(gbits);
        self.rtt_us.entry(net.label()).or_default().extend(rtts);
        c.kubectl_ok(&["delete", "pods", "-l", "bench=path", "--wait=true"]);
    }

    pub fn report(&self, backend: &str, table: &mut Table) {
        let pair = |m: &HashMap<&str, Vec<f64>>, f: &dyn Fn(&[f64]) -> f64| {
            (f(&m["flannel"]), f(&m["tweed"]))
        };
        table.add(
            "cross-node pod TCP throughput, median",
            backend,
            "Gbit/s",
            pair(&self.gbits, &|x| median(x)),
            Better::Higher,
        );
        for q in [50.0, 99.0] {
            table.add(
                &format!("cross-node TCP request/response p{q:.0}"),
                backend,
                "µs",
                pair(&self.rtt_us, &|x| percentile(x, q)),
                Better::Lower,
            );
        }
    }
}

/// `ROUND_TRIPS` 1-byte round trips from `client` to `server` over one
/// TCP connection (Nagle off), after 1,000 unmeasured; each in µs. Both
/// ends are threads of the benchmark in the pods' network namespaces,
/// pinned to the same CPU: left to the scheduler, the two landed on one
/// CPU in some runs and on two in others, and a wake-up across vCPUs
/// costs this VM ~50 µs, which swamped the path being measured.
fn round_trips(c: &Cluster, client: &Pod, server: &Pod) -> Vec<f64> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server_ns = netns_path(c, server);
    let echo = std::thread::spawn(move || {
        enter(&server_ns);
        pin_to_cpu(0);
        let listener = TcpListener::bind(("0.0.0.0", RR_PORT)).expect("listen");
        ready_tx.send(()).expect("the client waits");
        let (mut s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut byte = [0u8; 1];
        while s.read_exact(&mut byte).is_ok() {
            if s.write_all(&byte).is_err() {
                break;
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the echo server listening");
    let client_ns = netns_path(c, client);
    let to = server.ip.clone();
    // The socket is made in the client pod's namespace; the round trips
    // run on a pinned thread of their own.
    let stream = std::thread::spawn(move || {
        enter(&client_ns);
        TcpStream::connect((to.as_str(), RR_PORT)).expect("connect")
    })
    .join()
    .expect("the client");
    let rtts = round_trips_on(stream, ROUND_TRIPS, 1000, 0);
    echo.join().expect("the echo server");
    rtts
}
