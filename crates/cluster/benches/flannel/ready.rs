//! Pod create-to-Ready (tweed_cluster::ready) and containerd's timing of
//! the CNI ADD and DEL, per network.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tweed_cluster::Cluster;
use tweed_cluster::containerd_metrics::{CniOp, Histogram, cluster_histogram};
use tweed_cluster::side_by_side::{Network, host_veth_of};
use tweed_testkit::proc_usage::HostCpu;
use tweed_testkit::stats::{max, median, percentile};

use crate::table::{Better, Table};

/// What `hostNetwork` pods are filed under: no network at all.
const FLOOR: &str = "hostNetwork";

#[derive(Default)]
pub struct Results {
    /// Per network (and [`FLOOR`]), every pod's create-to-Ready, ms.
    ready_ms: HashMap<&'static str, Vec<f64>>,
    /// Per network (and [`FLOOR`]), each round's share of busy CPU time.
    cpu_busy: HashMap<&'static str, Vec<f64>>,
    add: HashMap<&'static str, Histogram>,
    del: HashMap<&'static str, Histogram>,
}

/// Panics unless `pod`'s host veth was made by `net`'s plugin (tweed's
/// are `tw…`, flannel's bridge plugin's `veth…`).
pub fn assert_made_by(c: &Cluster, pod: &tweed_cluster::pods::Pod, net: Network) {
    let (name, alias) = host_veth_of(c, pod);
    let ok = match net {
        Network::Tweed => name.starts_with("tw") && alias.starts_with("tweed/"),
        Network::Flannel => name.starts_with("veth"),
    };
    assert!(
        ok,
        "{} was not made by {}'s plugin: host veth {name} ({alias})",
        pod.name,
        net.label()
    );
}

impl Results {
    /// One round of `n` pods on `net`, which every node runs now.
    pub fn round(&mut self, c: &Cluster, net: Network, k: usize, n: usize) {
        let mut checked = false;
        let calls = CniCalls::start(c);
        let cpu = HostCpu::read();
        let t = tweed_cluster::ready::round(c, k, n, |pod| {
            if !checked {
                assert_made_by(c, pod, net);
                checked = true;
            }
        });
        let busy = HostCpu::read().busy_since(&cpu);
        calls.finish(c, n, self, net);
        self.record(net.label(), k, t, busy);
    }

    /// One round of `n` `hostNetwork` pods: no network namespace and no
    /// CNI call, the floor under any network's create-to-Ready here.
    pub fn floor_round(&mut self, c: &Cluster, k: usize, n: usize) {
        let cpu = HostCpu::read();
        let t = tweed_cluster::ready::host_network_round(c, 100 + k, n);
        let busy = HostCpu::read().busy_since(&cpu);
        self.record(FLOOR, k, t, busy);
    }

    fn record(&mut self, label: &'static str, k: usize, t: Vec<f64>, busy: f64) {
        println!(
            "round {}: {label:<11} {} pods, create-to-Ready p50 {:.0} ms, max {:.0} ms, \
             CPU {:.0} % busy (from the apply to the last Ready)",
            k + 1,
            t.len(),
            percentile(&t, 50.0),
            max(&t),
            busy * 100.0
        );
        self.ready_ms.entry(label).or_default().extend(t);
        self.cpu_busy.entry(label).or_default().push(busy);
    }

    /// The CNI rows, and with `create_to_ready` the create-to-Ready rows.
    pub fn report(&self, backend: &str, table: &mut Table, create_to_ready: bool) {
        if create_to_ready {
            self.report_ready(backend, table);
        }
        self.report_cni(backend, table);
    }

    fn report_ready(&self, backend: &str, table: &mut Table) {
        let get = |m: &HashMap<&str, Vec<f64>>, net: Network| m[net.label()].clone();
        let (f, t) = (
            get(&self.ready_ms, Network::Flannel),
            get(&self.ready_ms, Network::Tweed),
        );
        let p = |xs: &[f64], q| percentile(xs, q);
        table.add(
            &format!("pod create-to-Ready p50 ({} pods each)", t.len()),
            backend,
            "ms",
            (p(&f, 50.0), p(&t, 50.0)),
            Better::Lower,
        );
        table
            .add(
                "pod create-to-Ready p99",
                backend,
                "ms",
                (p(&f, 99.0), p(&t, 99.0)),
                Better::Lower,
            )
            .target(0.8);
        let busy = |label: &str| median(&self.cpu_busy[label]) * 100.0;
        table.note(format!(
            "{backend}: CPU busy from the apply to the last Ready, median of the rounds: \
             flannel {:.0} %, tweed {:.0} %",
            busy(Network::Flannel.label()),
            busy(Network::Tweed.label())
        ));
        if let Some(floor) = self.ready_ms.get(FLOOR) {
            table.note(format!(
                "{backend}: the floor, {} hostNetwork pods (no network namespace, no CNI \
                 call): create-to-Ready p50 {:.0} ms, p99 {:.0} ms = {:.2} of flannel's p99 \
                 (CPU {:.0} % busy)",
                floor.len(),
                p(floor, 50.0),
                p(floor, 99.0),
                p(floor, 99.0) / p(&f, 99.0),
                busy(FLOOR)
            ));
        }
    }

    fn report_cni(&self, backend: &str, table: &mut Table) {
        for (op, hist) in [("ADD", &self.add), ("DEL", &self.del)] {
            let (hf, ht) = (&hist["flannel"], &hist["tweed"]);
            table.add(
                &format!(
                    "CNI {op} as containerd times it, mean ({} calls each)",
                    ht.count.min(hf.count)
                ),
                backend,
                "ms",
                (hf.mean_ms(), ht.mean_ms()),
                Better::Lower,
            );
            for q in [0.5, 0.99] {
                table.add(
                    &format!("CNI {op} p{:.0} (from containerd's buckets)", q * 100.0),
                    backend,
                    "ms",
                    (hf.quantile_ms(q), ht.quantile_ms(q)),
                    Better::Lower,
                );
            }
        }
    }
}

/// containerd's CNI histograms over a stretch of pod work.
pub struct CniCalls {
    add: Histogram,
    del: Histogram,
}

impl CniCalls {
    pub fn start(c: &Cluster) -> CniCalls {
        CniCalls {
            add: cluster_histogram(c, CniOp::Add),
            del: cluster_histogram(c, CniOp::Del),
        }
    }

    /// Waits until containerd has made at least `pods` more ADDs and as
    /// many DELs (kubelet tears sandboxes down after the pods are gone
    /// from the API) and adds the calls since `start` to `net`'s.
    pub fn finish(self, c: &Cluster, pods: usize, results: &mut Results, net: Network) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let (add, del) = loop {
            let add = cluster_histogram(c, CniOp::Add).since(&self.add);
            let del = cluster_histogram(c, CniOp::Del).since(&self.del);
            if add.count >= pods as u64 && del.count >= add.count {
                break (add, del);
            }
            assert!(
                Instant::now() < deadline,
                "containerd reports {} ADDs and {} DELs for {pods} pods after 60 s",
                add.count,
                del.count
            );
            std::thread::sleep(Duration::from_millis(500));
        };
        results.add.entry(net.label()).or_default().add(&add);
        results.del.entry(net.label()).or_default().add(&del);
    }
}
