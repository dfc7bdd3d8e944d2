//! The summary the bench ends with: each figure, and its ratio where the
//! figure has a same-run reference.

use tweed_testkit::stats::{max, median, percentile};

use crate::agent_cost::{self, Load};
use crate::datapath;
use crate::enforcement;

#[derive(Default)]
pub struct Report {
    pub enforcement: Option<enforcement::Results>,
    pub datapath: Option<datapath::Results>,
    pub agent: Option<agent_cost::Results>,
}

/// A table row: the figure, its same-run reference, and their ratio
/// (none where the reference is zero: an idle process' CPU can be).
fn row(what: &str, reference: f64, measured: f64, unit: &str) {
    let ratio = if reference > 0.0 {
        format!("{:.2}", measured / reference)
    } else {
        "-".into()
    };
    println!("| {what} | {reference:.2} {unit} | {measured:.2} {unit} | {ratio} |");
}

impl Report {
    pub fn print(&self, nodes: usize, rules: usize, load: &Load) {
        println!("\n== results ==");
        if let Some(e) = &self.enforcement {
            let n = e.every_node_ms.len();
            println!(
                "policy change -> enforced on every node ({nodes} nodes, {n} changes: {} creates, {} patches, {} deletes), in packets:",
                n / 4,
                n / 2,
                n / 4
            );
            println!(
                "  every node: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                percentile(&e.every_node_ms, 50.0),
                percentile(&e.every_node_ms, 99.0),
                max(&e.every_node_ms)
            );
            println!(
                "  each node:  p50 {:.1} ms, p99 {:.1} ms; the API server's answer to the write: p50 {:.1} ms, p99 {:.1} ms",
                percentile(&e.per_node_ms, 50.0),
                percentile(&e.per_node_ms, 99.0),
                percentile(&e.api_ms, 50.0),
                percentile(&e.api_ms, 99.0)
            );
        }
        if let Some(d) = &self.datapath {
            println!(
                "\na -> b on node 1: {} rules in b's chain (the drop included), a's rule at position {}; label -> all rules in the kernel: median {:.2} s",
                d.chain_rules,
                d.allow_position,
                median(&d.apply_s)
            );
            println!("| figure | 0 rules | {rules} rules | ratio |\n|---|---|---|---|");
            let rounds = d.without.gbits.len();
            for (what, unit, without, with) in [
                (
                    "TCP throughput (one iperf3 stream)",
                    "Gbit/s",
                    &d.without.gbits,
                    &d.with.gbits,
                ),
                (
                    "request/response on one connection, p50",
                    "µs",
                    &d.without.rr_p50_us,
                    &d.with.rr_p50_us,
                ),
                (
                    "request/response on one connection, p99",
                    "µs",
                    &d.without.rr_p99_us,
                    &d.with.rr_p99_us,
                ),
                (
                    "new connection + request/response, p50",
                    "µs",
                    &d.without.crr_p50_us,
                    &d.with.crr_p50_us,
                ),
                (
                    "new connection + request/response, p99",
                    "µs",
                    &d.without.crr_p99_us,
                    &d.with.crr_p99_us,
                ),
            ] {
                row(
                    &format!("{what}, median of {rounds} rounds"),
                    median(without),
                    median(with),
                    unit,
                );
            }
        }
        if let Some(a) = &self.agent {
            println!(
                "\nn1's tweedd: {} policies over {} pods ({} on n1), {} rules in its table; in the kernel {:.1} s after the first write, {:.1} s after the last",
                load.policies, load.pods, a.node_pods, a.node_rules, a.load_s, a.lag_s
            );
            println!(
                "| figure | idle, no policies | with the policies | ratio |\n|---|---|---|---|"
            );
            row(
                "CPU while nothing changes (incl. nft children)",
                a.idle_cpu_ms_per_min,
                a.loaded_cpu_ms_per_min,
                "ms/min",
            );
            row("VmRSS", a.idle.rss_mib, a.end.rss_mib, "MiB");
            row(
                "peak RSS (VmHWM)",
                a.idle.peak_rss_mib,
                a.end.peak_rss_mib,
                "MiB",
            );
            println!(
                "CPU to take in the load: {}; per pod label change afterwards: {}; the whole run: {}",
                a.load_cpu, a.churn_cpu_per_change, a.whole_run_cpu
            );
        }
    }
}
