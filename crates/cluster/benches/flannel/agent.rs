//! What each network's node agent costs (tweed_cluster::agent_usage):
//! CPU time per minute and RSS idle, then during pod churn (rounds of 9
//! pods, 3 per node, created at once, Ready, deleted), averaged over the
//! nodes; the peak RSS is the largest on any node.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tweed_cluster::Cluster;
use tweed_cluster::agent_usage::{Usage, read};
use tweed_cluster::side_by_side::Network;

use crate::ready::{self, CniCalls};
use crate::table::{Better, Table};

const CHURN_PODS: usize = 9;

#[derive(Default, Clone, Copy)]
struct Figures {
    idle_cpu_ms_per_min: f64,
    idle_rss_mib: f64,
    churn_cpu_ms_per_min: f64,
    churn_peak_rss_mib: f64,
    churned_pods: usize,
}

/// A table row: its figure, unit, and where to find it.
type Row = (&'static str, &'static str, fn(&Figures) -> f64);

#[derive(Default)]
pub struct Results {
    by_net: HashMap<&'static str, Figures>,
}

fn read_all(c: &Cluster, net: Network) -> Vec<Usage> {
    (1..=c.nodes).map(|i| read(c, i, net)).collect()
}

/// Mean CPU ms per minute over the nodes between two readings.
fn cpu_per_min(before: &[Usage], after: &[Usage], took: Duration) -> f64 {
    let total: f64 = before
        .iter()
        .zip(after)
        .map(|(b, a)| a.cpu_ms - b.cpu_ms)
        .sum();
    total / before.len() as f64 / took.as_secs_f64() * 60.0
}

impl Results {
    /// `net`, which every node runs now: `idle` seconds idle, then
    /// `churn` seconds of churn; the churn's CNI calls go to `calls`.
    pub fn measure(
        &mut self,
        c: &Cluster,
        net: Network,
        idle: usize,
        churn: usize,
        calls: &mut ready::Results,
    ) {
        // The agent has just started: let it settle.
        std::thread::sleep(Duration::from_secs(10));
        let (start, t0) = (read_all(c, net), Instant::now());
        std::thread::sleep(Duration::from_secs(idle as u64));
        let (idle_end, t1) = (read_all(c, net), Instant::now());
        let mut f = Figures {
            idle_cpu_ms_per_min: cpu_per_min(&start, &idle_end, t1 - t0),
            idle_rss_mib: idle_end.iter().map(|u| u.rss_mib).sum::<f64>() / c.nodes as f64,
            ..Figures::default()
        };
        let cni = CniCalls::start(c);
        let mut round = 0;
        while t1.elapsed() < Duration::from_secs(churn as u64) {
            tweed_cluster::ready::round(c, 1000 + round, CHURN_PODS, |_| {});
            round += 1;
        }
        let (churn_end, t2) = (read_all(c, net), Instant::now());
        f.churned_pods = round * CHURN_PODS;
        cni.finish(c, f.churned_pods, calls, net);
        f.churn_cpu_ms_per_min = cpu_per_min(&idle_end, &churn_end, t2 - t1);
        f.churn_peak_rss_mib = churn_end.iter().map(|u| u.peak_rss_mib).fold(0.0, f64::max);
        println!(
            "agent {:<8} idle: {:.1} ms CPU/min, RSS {:.1} MiB; churn ({} pods in {:.0} s): {:.1} ms CPU/min, peak RSS {:.1} MiB",
            net.label(),
            f.idle_cpu_ms_per_min,
            f.idle_rss_mib,
            f.churned_pods,
            (t2 - t1).as_secs_f64(),
            f.churn_cpu_ms_per_min,
            f.churn_peak_rss_mib
        );
        self.by_net.insert(net.label(), f);
    }

    pub fn report(&self, backend: &str, table: &mut Table) {
        let (fl, tw) = (self.by_net["flannel"], self.by_net["tweed"]);
        let rows: [Row; 4] = [
            ("agent CPU idle, per node", "ms/min", |f| {
                f.idle_cpu_ms_per_min
            }),
            ("agent RSS idle, per node", "MiB", |f| f.idle_rss_mib),
            ("agent CPU during pod churn, per node", "ms/min", |f| {
                f.churn_cpu_ms_per_min
            }),
            ("agent peak RSS after pod churn", "MiB", |f| {
                f.churn_peak_rss_mib
            }),
        ];
        for (figure, unit, get) in rows {
            table.add(figure, backend, unit, (get(&fl), get(&tw)), Better::Lower);
        }
    }
}
