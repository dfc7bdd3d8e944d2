//! Pod create-to-Ready, tweed against the reference plugins on the same
//! cluster in the same run.
//!
//! A round creates N pods at once (one `kubectl apply`), spread evenly
//! over the nodes by `nodeName` (the scheduler is left out: it is the same
//! for both and not the CNI's), and takes for each pod the moment a
//! `kubectl get -w` watch started before the apply reports it Ready.
//! Create-to-Ready is that moment minus the moment the apply started: API,
//! kubelet, containerd, the sandbox, the CNI ADD and the container start.
//! Then the pods are deleted and the next round uses the other plugin;
//! which goes first alternates.
//!
//! The reference is Debian's `bridge` + `host-local` (+ `portmap`, as
//! tweed's conflist chains it), written by hand to
//! /etc/cni/net.d/05-ref.conflist on every node, which sorts before tweed's
//! 10-tweed.conflist, so containerd takes it; removing it gives the nodes
//! back to tweed. Its pods get node-local addresses (10.244.10<i>.0/24 on
//! node i, a bridge `refbr0`): they only need to become Ready.

use std::collections::HashMap;
use std::time::Duration;

use tweed_cluster::{Cluster, ready};
use tweed_testkit::stats::{max, min, percentile};

#[derive(Clone, Copy, PartialEq)]
enum Plugin {
    Tweed,
    Reference,
}

impl Plugin {
    fn name(self) -> &'static str {
        match self {
            Plugin::Tweed => "tweed",
            Plugin::Reference => "bridge + host-local",
        }
    }
}

const REF_CONFLIST: &str = "/etc/cni/net.d/05-ref.conflist";

fn ref_conflist(i: usize) -> String {
    format!(
        r#"{{"cniVersion": "1.0.0", "name": "ref", "plugins": [
  {{"type": "bridge", "bridge": "refbr0", "isGateway": true, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "10.244.{}.0/24"}}]]}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
]}}"#,
        100 + i
    )
}

/// Points every node's runtime at `plugin`.
fn install(c: &Cluster, plugin: Plugin) {
    for i in 1..=c.nodes {
        let script = match plugin {
            Plugin::Reference => format!(
                "printf '%s' \"$1\" > {REF_CONFLIST}.tmp && mv {REF_CONFLIST}.tmp {REF_CONFLIST}"
            ),
            Plugin::Tweed => format!("rm -f {REF_CONFLIST}"),
        };
        let out = c.on_node(i, &["sh", "-c", &script, "sh", &ref_conflist(i)]);
        assert!(out.status.success(), "node {i}: {out:?}");
    }
    // containerd reloads its CNI config on a change of the directory.
    std::thread::sleep(Duration::from_secs(3));
}

/// One round with `plugin` installed; the pods' create-to-Ready times.
fn timed_round(c: &Cluster, plugin: Plugin, r: usize, n: usize) -> Vec<f64> {
    ready::round(c, r, n, |pod| {
        let from_tweed = !pod.ip.starts_with("10.244.10");
        assert_eq!(
            from_tweed,
            plugin == Plugin::Tweed,
            "{} got {}: not from {}",
            pod.name,
            pod.ip,
            plugin.name()
        );
    })
}

pub fn compare(c: &Cluster, rounds: usize, n: usize) {
    let mut samples: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut r = 0;
    for k in 0..rounds {
        let order = if k % 2 == 0 {
            [Plugin::Tweed, Plugin::Reference]
        } else {
            [Plugin::Reference, Plugin::Tweed]
        };
        for plugin in order {
            install(c, plugin);
            let t = timed_round(c, plugin, r, n);
            r += 1;
            println!(
                "round {r}: {:<20} {n} pods, create-to-Ready p50 {:.0} ms, max {:.0} ms",
                plugin.name(),
                percentile(&t, 50.0),
                max(&t)
            );
            samples.entry(plugin.name()).or_default().extend(t);
        }
    }
    install(c, Plugin::Tweed);
    println!(
        "\npod create-to-Ready, {n} pods at once over {} nodes, {rounds} rounds each, interleaved (ms)",
        c.nodes
    );
    println!("| plugin | pods | p50 | p99 | min | max |\n|---|---|---|---|---|---|");
    for p in [Plugin::Tweed, Plugin::Reference] {
        let t = &samples[p.name()];
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            p.name(),
            t.len(),
            percentile(t, 50.0),
            percentile(t, 99.0),
            min(t),
            max(t)
        );
    }
    let (t, rf) = (&samples["tweed"], &samples["bridge + host-local"]);
    println!(
        "tweed / reference: p50 {:.2}, p99 {:.2}\n",
        percentile(t, 50.0) / percentile(rf, 50.0),
        percentile(t, 99.0) / percentile(rf, 99.0)
    );
}
