//! tweed in a real Kubernetes cluster (scripts/cluster.sh: kube-apiserver,
//! controller-manager, scheduler, and per node containerd, kubelet and
//! kube-proxy), installed the way users install it: `kubectl apply -f
//! deploy/tweed.yaml`. Each test brings up its own cluster (one per
//! machine: they take turns) and runs a sequence of steps on it; a failure
//! prints the cluster's events and its nodes' error log lines.
//!
//! - the manifest as shipped (vxlan, kube store): pods, Services, DNS,
//!   kubectl exec/logs/port-forward, NetworkPolicy, wires, a segment through Multus,
//!   a lab of pods and a VM on a segment and a wire declared as Kubernetes objects,
//!   a urunc guest (QEMU) reached from another node,
//!   tweed's pods rolled and its whole DaemonSet deleted under traffic, a
//!   node drained and removed;
//! - the host-gw backend (the ConfigMap's net-conf edited), a broken
//!   net-conf, and an API server outage of 60 s;
//! - the etcd store (the ConfigMap's `store` key and the Secret
//!   `tweed-etcd`, as docs/deploy.md says);
//! - a cluster without pod CIDRs: tweed says why it is not ready;
//! - Kubernetes' own `[sig-network] [Conformance]` tests and a sample of
//!   its NetworkPolicy tests (scripts/e2e.sh, docs/e2e.md);
//! - real flannel (kube mode, and etcd mode on the cluster's etcd) carrying
//!   the cluster first, then migrated to tweed node by node under traffic
//!   (docs/migration.md), with the way back for one node and flannel's
//!   leftovers removed at the end.

mod faults;
mod guests;
mod lifecycle;
mod migration;
mod multus_lab;
mod policy;
mod segments;
mod web;
mod wires;

use tweed_cluster::{Cluster, e2e, flannel, install};

const NODES: usize = 3;
/// The `[sig-network]` tests tagged `[Conformance]` in Kubernetes v1.34.4
/// (test/conformance/testdata/conformance.yaml); none is `[Serial]`.
const NETWORK_CONFORMANCE_TESTS: usize = 45;

#[test]
fn the_manifest_as_shipped_carries_pods_services_and_wires_across_nodes() {
    let c = Cluster::up(NODES);
    install::apply(&c, &install::manifest());
    let pods = web::deploy(&c);
    web::services_and_dns_work(&c, &pods);
    web::kubectl_reaches_pods(&c, &pods[0]);
    policy::network_policies_are_enforced(&c, &pods);
    wires::cable_pods_on_one_node_and_across_nodes(&c);
    segments::multus_attaches_pods_to_a_segment_across_nodes(&c);
    multus_lab::a_lab_of_routers_pcs_a_vm_and_a_wire_works_through_multus(&c);
    guests::urunc_guest_is_reached_from_another_node(&c, &pods);
    lifecycle::rolling_tweeds_pod_keeps_traffic(&c, &pods);
    lifecycle::deleting_the_daemonset_keeps_traffic_and_reapplying_converges(&c, &pods);
    lifecycle::deleted_pods_leave_nothing(&c);
    lifecycle::a_removed_node_loses_its_routes_everywhere(&c, NODES);
}

/// Upstream's NetworkPolicy tests this suite runs: the whole `netpol` suite
/// takes about 25 minutes here (docs/e2e.md has its last full run), so CI
/// runs a sample covering default deny over TCP and UDP, a named port, a
/// pod and namespace selector on egress, and ipBlock with except.
const NETPOL_SAMPLE: &str = concat!(
    "should support a 'default-deny-ingress' policy|",
    "should allow ingress access from namespace on one named port|",
    "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector|",
    "should enforce except clause while egress access to server in CIDR block"
);
/// What NETPOL_SAMPLE selects: default deny is tested over TCP, UDP and
/// SCTP (skipped where the kernel has no SCTP, as here: the SCTP ports
/// are tested in the VM runner, crates/policy/tests/kernel.rs).
const NETPOL_SAMPLE_TESTS: usize = 5;

/// Kubernetes' own tests, built from the pinned release (docs/e2e.md).
#[test]
fn kubernetes_own_network_conformance_and_network_policy_tests_pass() {
    // The build needs no cluster: done before this test waits for its turn.
    e2e::build();
    let c = Cluster::up(NODES);
    install::apply(&c, &install::manifest());
    e2e::run(&c, "network-conformance", &[]).assert_all_passed(NETWORK_CONFORMANCE_TESTS);
    e2e::run(&c, "netpol", &["--focus", NETPOL_SAMPLE]).assert_all_passed(NETPOL_SAMPLE_TESTS);
}

#[test]
fn host_gw_backend() {
    let c = Cluster::up(NODES);
    let manifest = install::edit(
        &install::manifest(),
        r#""Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}"#,
        r#""Backend": {"Type": "host-gw"}"#,
    );
    install::apply(&c, &manifest);
    let pods = web::deploy(&c);
    // Routes straight to the other nodes, no tunnel device.
    let cidrs = install::pod_cidrs(&c);
    for i in 1..=NODES {
        let routes = c.on_node(i, &["ip", "route"]);
        let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
        for (j, cidr) in cidrs.iter().enumerate().map(|(j, x)| (j + 1, x)) {
            if j == i {
                continue;
            }
            let want = format!("{cidr} via 198.18.1.{} dev eth0", 10 + j);
            assert!(routes.contains(&want), "node {i}: no `{want}` in\n{routes}");
        }
        let links = c.on_node(i, &["ip", "-d", "link", "show", "type", "vxlan"]);
        assert!(
            links.stdout.is_empty(),
            "node {i} has a VXLAN device with host-gw: {}",
            String::from_utf8_lossy(&links.stdout)
        );
    }
    faults::a_broken_net_conf_names_the_field_and_keeps_the_node_working(&c, &manifest, &pods);
    faults::an_api_server_outage_leaves_traffic_untouched(&c, &pods);
}

#[test]
fn without_pod_cidrs_tweed_stays_not_ready_and_says_why() {
    let c = Cluster::up_with(1, &["--no-pod-cidrs"]);
    faults::without_pod_cidrs_tweed_says_why(&c);
}

#[test]
fn etcd_store() {
    let c = Cluster::up(NODES);
    install::etcd_secret(&c);
    let manifest = install::edit(
        &install::manifest(),
        "  store: kube\n",
        "  store: https://198.18.1.1:2379\n",
    );
    install::apply(&c, &manifest);
    web::deploy(&c);
    // The leases are in etcd, in flannel's layout, one per node.
    let out = c.etcdctl(&[
        "get",
        "--prefix",
        "--keys-only",
        "/coreos.com/network/subnets/",
    ]);
    let keys = String::from_utf8_lossy(&out.stdout).into_owned();
    let leases = keys.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(out.status.success(), "etcdctl: {out:?}");
    assert_eq!(leases, NODES, "one lease per node in etcd:\n{keys}");
}

#[test]
fn flannel_in_kube_mode_migrates_to_tweed_under_traffic() {
    let c = Cluster::up(NODES);
    flannel::install(&c, flannel::Store::Kube, "vxlan");
    // The peer is healthy before anything is compared with or moved from it.
    let pods = web::deploy(&c);
    web::services_and_dns_work(&c, &pods);
    migration::flannel_to_tweed_under_traffic(&c, &pods, &install::manifest());
}

#[test]
fn flannel_in_etcd_mode_migrates_to_tweed_under_traffic() {
    let c = Cluster::up(NODES);
    flannel::install(&c, flannel::Store::Etcd, "vxlan");
    let pods = web::deploy(&c);
    web::services_and_dns_work(&c, &pods);
    // tweed on flannel's etcd, with no net-conf.json of its own: it reads
    // flannel's /coreos.com/network/config, as docs/deploy.md describes.
    install::etcd_secret(&c);
    let manifest = install::edit(
        &install::manifest(),
        "  store: kube\n",
        "  store: https://198.18.1.1:2379\n",
    );
    let manifest = install::edit(
        &manifest,
        concat!(
            "  net-conf.json: |\n",
            "    {\n",
            "      \"Network\": \"10.244.0.0/16\",\n",
            "      \"Backend\": {\"Type\": \"vxlan\", \"VNI\": 1, \"Port\": 8472}\n",
            "    }\n",
        ),
        "",
    );
    migration::flannel_to_tweed_under_traffic(&c, &pods, &manifest);
    // tweed took flannel's records over in place: one per node, same keys,
    // now with tweed's NodeName.
    let out = c.etcdctl(&["get", "--prefix", "/coreos.com/network/subnets/"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "etcdctl: {out:?}");
    let records: Vec<&str> = text.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(records.len(), NODES, "one lease per node:\n{text}");
    assert!(
        records.iter().all(|r| r.contains("\"NodeName\"")),
        "records not tweed's:\n{text}"
    );
}
