//! containerd's own timing of the CNI calls it makes: every node's
//! containerd serves Prometheus metrics on 127.0.0.1:1338 in the node's
//! network namespace (cluster/node-init.sh), among them the histogram
//! `containerd_cri_network_plugin_operations_duration_seconds_seconds`
//! with `operation_type` `set_up_pod` (the CNI ADD of the whole conflist)
//! and `tear_down_pod` (its DEL), timed around libcni's call. This is the
//! ADD and DEL as the runtime sees them: exec of every plugin in the
//! chain included.

use crate::Cluster;

const METRIC: &str = "containerd_cri_network_plugin_operations_duration_seconds_seconds";

/// The CNI operations containerd times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniOp {
    Add,
    Del,
}

impl CniOp {
    fn label(self) -> &'static str {
        match self {
            CniOp::Add => "set_up_pod",
            CniOp::Del => "tear_down_pod",
        }
    }
}

/// One operation's histogram: cumulative counts per upper bound (s), the
/// sum of durations (s) and the count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// The calls between `earlier` and `self` (both cumulative).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0, |(_, n)| *n)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| (*le, n - before(*le)))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// Adds `other`'s calls (same buckets) to these.
    pub fn add(&mut self, other: &Histogram) {
        if self.buckets.is_empty() {
            self.buckets = other.buckets.iter().map(|(le, _)| (*le, 0)).collect();
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            assert_eq!(mine.0, theirs.0, "histograms with different buckets");
            mine.1 += theirs.1;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// The mean duration in ms (exact: sum over count).
    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        self.sum / self.count as f64 * 1000.0
    }

    /// The `q` quantile (0..1) in ms, interpolated linearly inside its
    /// bucket as Prometheus' `histogram_quantile` does: as coarse as the
    /// buckets (5, 10, 25, 50, 100, 250 ms ...).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let rank = q * self.count as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for (le, n) in &self.buckets {
            if *n as f64 >= rank {
                if le.is_infinite() {
                    return lower * 1000.0;
                }
                let inside = (*n - below) as f64;
                let frac = if inside == 0.0 {
                    1.0
                } else {
                    (rank - below as f64) / inside
                };
                return (lower + (le - lower) * frac) * 1000.0;
            }
            (lower, below) = (*le, *n);
        }
        lower * 1000.0
    }
}

/// Node `i`'s histogram of `op` as containerd reports it now (empty if
/// containerd has not made that call yet).
pub fn cni_histogram(c: &Cluster, i: usize, op: CniOp) -> Histogram {
    let out = c.on_node(i, &["curl", "-sf", "http://127.0.0.1:1338/v1/metrics"]);
    assert!(
        out.status.success(),
        "node {i}: containerd's metrics: {out:?}"
    );
    parse(&String::from_utf8_lossy(&out.stdout), op)
}

/// The sum over every node of the cluster.
pub fn cluster_histogram(c: &Cluster, op: CniOp) -> Histogram {
    let mut all = Histogram::default();
    for i in 1..=c.nodes {
        all.add(&cni_histogram(c, i, op));
    }
    all
}

/// `op`'s histogram from Prometheus' text format.
fn parse(text: &str, op: CniOp) -> Histogram {
    let selector = format!("operation_type=\"{}\"", op.label());
    let mut h = Histogram::default();
    for line in text.lines().filter(|l| l.starts_with(METRIC)) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if !series.contains(&selector) {
            continue;
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("metric line {line:?}"));
        let name = &series[..series.find('{').unwrap_or(series.len())];
        match name.strip_prefix(METRIC) {
            Some("_bucket") => {
                let le = series
                    .split("le=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_else(|| panic!("a bucket without le: {line:?}"));
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("a bucket bound")
                };
                h.buckets.push((le, value as u64));
            }
            Some("_sum") => h.sum = value,
            Some("_count") => h.count = value as u64,
            _ => {}
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"containerd_cri_network_plugin_operations_duration_seconds_seconds_bucket{operation_type="set_up_pod",le="0.01"} 0
containerd_cri_network_plugin_operations_duration_seconds_seconds_bucket{operation_type="set_up_pod",le="0.025"} 1
containerd_cri_network_plugin_operations_duration_seconds_seconds_bucket{operation_type="set_up_pod",le="0.05"} 4
containerd_cri_network_plugin_operations_duration_seconds_seconds_bucket{operation_type="set_up_pod",le="+Inf"} 4
containerd_cri_network_plugin_operations_duration_seconds_seconds_sum{operation_type="set_up_pod"} 0.1
containerd_cri_network_plugin_operations_duration_seconds_seconds_count{operation_type="set_up_pod"} 4
containerd_cri_network_plugin_operations_duration_seconds_seconds_count{operation_type="tear_down_pod"} 7
"#;

    #[test]
    fn parses_one_operation_and_interpolates_inside_buckets() {
        let h = parse(SAMPLE, CniOp::Add);
        assert_eq!(h.count, 4);
        assert_eq!(h.buckets.len(), 4);
        assert!((h.mean_ms() - 25.0).abs() < 1e-9);
        // Rank 2 of 4 lies a third into the 25..50 ms bucket (3 calls).
        assert!((h.quantile_ms(0.5) - (25.0 + 25.0 / 3.0)).abs() < 1e-9);
        assert_eq!(parse(SAMPLE, CniOp::Del).count, 7);
    }

    #[test]
    fn since_subtracts_bucket_by_bucket() {
        let now = parse(SAMPLE, CniOp::Add);
        let mut earlier = now.clone();
        earlier.buckets[2].1 = 2;
        earlier.buckets[3].1 = 2;
        earlier.sum = 0.04;
        earlier.count = 2;
        let d = now.since(&earlier);
        assert_eq!(d.count, 2);
        assert_eq!(d.buckets[2].1, 2);
        assert!((d.mean_ms() - 30.0).abs() < 1e-9);
    }
}
