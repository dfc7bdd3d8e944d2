//! Figure 1: a NetworkPolicy change written to the API server → every
//! node's kernel giving the new verdict, in packets.
//!
//! One policy, `bench-change` in `default`, selects every node's pod b
//! (`app=b`) and goes round a cycle of four changes: created letting in
//! app=a (c → b refused), patched to app=c (c → b passes), patched back
//! (refused), deleted (passes). On every node a probe connects from c to
//! b from just before the write until the new verdict holds; the change's
//! figure is the time until the last node got there. The clock starts
//! just before the write is sent (the admin's client, already
//! connected); the API's answer is timed too.

use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tweed_testkit::interrupt::check_interrupted;
use tweed_testkit::stats::percentile;

use crate::fabric::Fabric;
use crate::objects::{NetworkPolicySet, create_policy, policy};
use crate::probe::{Probe, Verdict};

const NAME: &str = "bench-change";
/// The echo port of every pod (tweed_testkit::bridged_pods' listeners).
pub const PORT: u16 = 80;
/// How long a probe may wait for a change to take effect on a node.
const DEADLINE: Duration = Duration::from_secs(30);

pub struct Results {
    /// Per change: write sent → the last node enforcing, ms.
    pub every_node_ms: Vec<f64>,
    /// Per change and node, ms.
    pub per_node_ms: Vec<f64>,
    /// Per change: write sent → the API server's answer, ms.
    pub api_ms: Vec<f64>,
}

/// b lets in pods labelled `app=<from>`.
fn spec(from: &str) -> serde_json::Value {
    json!({"podSelector": {"matchLabels": {"app": "b"}},
           "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": from}}}]}]})
}

/// Writes change `k` of the cycle; returns what c → b gives after it.
async fn write(client: &Client, k: usize) -> Verdict {
    let api = Api::<NetworkPolicy>::namespaced(client.clone(), "default");
    let patch = |from: &str| Patch::Merge(json!({"spec": spec(from)}));
    let params = PatchParams::default();
    let (done, verdict) = match k % 4 {
        0 => {
            create_policy(
                client,
                &policy("default", NAME, NetworkPolicySet::Change, spec("a")),
            )
            .await;
            (Ok(()), Verdict::Refused)
        }
        1 => (
            api.patch(NAME, &params, &patch("c")).await.map(drop),
            Verdict::Passes,
        ),
        2 => (
            api.patch(NAME, &params, &patch("a")).await.map(drop),
            Verdict::Refused,
        ),
        _ => (
            api.delete(NAME, &DeleteParams::default()).await.map(drop),
            Verdict::Passes,
        ),
    };
    done.unwrap_or_else(|e| panic!("change {k} of {NAME}: {e}"));
    verdict
}

pub async fn run(fabric: &Fabric, client: &Client, changes: usize, interval: Duration) -> Results {
    let mut r = Results {
        every_node_ms: Vec::new(),
        per_node_ms: Vec::new(),
        api_ms: Vec::new(),
    };
    // Whole cycles, so that the policy is gone at the end.
    let changes = changes.div_ceil(4) * 4;
    for k in 0..changes {
        check_interrupted();
        let want = if k % 2 == 0 {
            Verdict::Refused
        } else {
            Verdict::Passes
        };
        let probes: Vec<Probe> = fabric
            .nodes
            .iter()
            .map(|n| Probe {
                from_ns: n.pods.netns("c").to_string(),
                to: format!("{}:{PORT}", n.pods.addr("b")).parse().unwrap(),
                interval,
                // Far above a bridged connect (tens of µs) even on a busy
                // machine; a refused attempt is known only after it.
                timeout: Duration::from_millis(300),
            })
            .collect();
        let probing = futures::future::join_all(probes.iter().map(|p| p.until(want, DEADLINE)));
        let writing = async {
            // The probes see the old verdict first.
            tokio::time::sleep(interval * 3).await;
            let sent = Instant::now();
            let got = write(client, k).await;
            assert_eq!(got, want, "change {k}: the cycle and the probes disagree");
            (sent, sent.elapsed())
        };
        let (enforced, (sent, api)) = futures::join!(probing, writing);
        let mut latest = Duration::ZERO;
        for (node, at) in fabric.nodes.iter().zip(enforced) {
            let at = at.unwrap_or_else(|e| {
                panic!(
                    "change {k} on {}: {e}\n--- tweedd.log (tail) ---\n{}",
                    node.name,
                    crate::rules::tail(&node.log())
                )
            });
            let took = at.checked_duration_since(sent).unwrap_or_else(|| {
                panic!(
                    "change {k} on {}: the new verdict came before the write",
                    node.name
                )
            });
            r.per_node_ms.push(ms(took));
            latest = latest.max(took);
        }
        r.every_node_ms.push(ms(latest));
        r.api_ms.push(ms(api));
        if k % 20 == 19 || k + 1 == changes {
            println!(
                "  {} changes: every node p50 {:.1} ms, p99 {:.1} ms so far",
                k + 1,
                percentile(&r.every_node_ms, 50.0),
                percentile(&r.every_node_ms, 99.0)
            );
        }
        // The refused probes' leftover attempts time out before the next.
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    r
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
