//! The reachability matrix: every pod pings every other pod.

use std::net::IpAddr;
use std::time::Duration;

use crate::{Lab, LabError};

impl Lab {
    /// The pod-to-pod reachability matrix (IPv4, and IPv6 when pods have
    /// it): `matrix[i][j]` is whether pod i reaches pod j.
    pub fn check(&self) -> Result<Matrix, LabError> {
        let pods = self.pods();
        let labels: Vec<String> = pods
            .iter()
            .map(|(n, p)| format!("{}/{}", n.name, p.name))
            .collect();
        let mut ok = vec![vec![false; pods.len()]; pods.len()];
        std::thread::scope(|s| -> Result<(), LabError> {
            let mut handles = Vec::new();
            for (i, (node, from)) in pods.iter().enumerate() {
                let targets: Vec<(usize, Vec<IpAddr>)> = pods
                    .iter()
                    .enumerate()
                    .map(|(j, (_, to))| {
                        let addrs = [&to.ipv4, &to.ipv6]
                            .into_iter()
                            .flatten()
                            .filter_map(|a| a.parse().ok())
                            .collect();
                        (j, addrs)
                    })
                    .collect();
                let ns = from.ns.clone();
                let kernel = self.kernel(node);
                handles.push(
                    s.spawn(move || -> Result<Vec<(usize, usize, bool)>, LabError> {
                        let mut out = Vec::new();
                        for (j, addrs) in targets {
                            let mut all = !addrs.is_empty();
                            for a in addrs {
                                // Patient enough for a machine busy with
                                // other labs (one CI run saw a healthy pair
                                // miss 3 × 500 ms); a broken path still
                                // fails, after 5 s.
                                all &= kernel.ping(&ns, a, 5, Duration::from_secs(1))?;
                            }
                            out.push((i, j, all));
                        }
                        Ok(out)
                    }),
                );
            }
            for h in handles {
                for (i, j, v) in h
                    .join()
                    .map_err(|_| LabError::Setup("ping thread panicked".into()))??
                {
                    ok[i][j] = v;
                }
            }
            Ok(())
        })?;
        Ok(Matrix { labels, ok })
    }
}

/// Pod-to-pod reachability.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub labels: Vec<String>,
    pub ok: Vec<Vec<bool>>,
}

impl Matrix {
    pub fn all_ok(&self) -> bool {
        self.ok.iter().all(|row| row.iter().all(|v| *v))
    }

    pub fn render(&self) -> String {
        let w = self
            .labels
            .iter()
            .map(|l| l.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut s = format!("{:w$}", "from\\to");
        for l in &self.labels {
            s.push_str(&format!(" {l:>w$}"));
        }
        s.push('\n');
        for (i, row) in self.ok.iter().enumerate() {
            s.push_str(&format!("{:w$}", self.labels[i]));
            for v in row {
                s.push_str(&format!(" {:>w$}", if *v { "ok" } else { "FAIL" }));
            }
            s.push('\n');
        }
        s
    }
}
