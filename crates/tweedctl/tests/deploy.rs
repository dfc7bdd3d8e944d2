//! deploy/tweed.yaml: every object parses into its typed k8s-openapi struct
//! with no field the struct does not know (k8s-openapi's structs ignore
//! unknown fields, so each object is round-tripped and every field of the
//! YAML must come back); the RBAC is exactly what tweedd needs; the
//! ConfigMap's net-conf parses with tweedd's parser, and its conflist is
//! installed by `tweedctl install-cni` and run by the real `tweed` plugin.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Deserialize;
use serde_json::{Value, json};
use tweed_testkit::{CniCall, TestNs};

fn manifest() -> Vec<Value> {
    manifest_file("tweed.yaml")
}

/// The documents of `deploy/<name>`.
fn manifest_file(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("deploy/{name}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every field of `original` is in `typed` with the same value.
fn contained(original: &Value, typed: &Value, at: &str) -> Result<(), String> {
    match (original, typed) {
        (Value::Object(o), Value::Object(t)) => {
            for (k, v) in o {
                let here = format!("{at}.{k}");
                let Some(tv) = t.get(k) else {
                    return Err(format!(
                        "{here}: unknown field (dropped by the typed struct)"
                    ));
                };
                contained(v, tv, &here)?;
            }
            Ok(())
        }
        (Value::Array(o), Value::Array(t)) if o.len() == t.len() => o
            .iter()
            .zip(t)
            .enumerate()
            .try_for_each(|(i, (a, b))| contained(a, b, &format!("{at}[{i}]"))),
        (o, t) if o == t => Ok(()),
        (o, t) => Err(format!("{at}: {o} came back as {t}")),
    }
}

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, what: &str) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{what}: not a valid {}: {e}", std::any::type_name::<T>()));
    let back = serde_json::to_value(&typed).unwrap();
    contained(doc, &back, what).unwrap_or_else(|e| panic!("{e}"));
    typed
}

fn target_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        p.is_file(),
        "{} missing: cargo build --workspace",
        p.display()
    );
    p
}

fn config_map(docs: &[Value]) -> ConfigMap {
    let doc = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("ConfigMap");
    round_trip(doc, "ConfigMap")
}

/// Round-trips one object through its typed struct; returns its kind.
fn check_object(doc: &Value, file: &str) -> String {
    let kind = doc["kind"].as_str().expect("kind").to_string();
    let name = format!("{kind}/{}", doc["metadata"]["name"].as_str().unwrap_or("?"));
    match kind.as_str() {
        "Namespace" => drop(round_trip::<Namespace>(doc, &name)),
        "ServiceAccount" => drop(round_trip::<ServiceAccount>(doc, &name)),
        "ClusterRole" => drop(round_trip::<ClusterRole>(doc, &name)),
        "ClusterRoleBinding" => drop(round_trip::<ClusterRoleBinding>(doc, &name)),
        "Role" => drop(round_trip::<Role>(doc, &name)),
        "RoleBinding" => drop(round_trip::<RoleBinding>(doc, &name)),
        "ConfigMap" => drop(round_trip::<ConfigMap>(doc, &name)),
        "DaemonSet" => drop(round_trip::<DaemonSet>(doc, &name)),
        other => panic!("unexpected kind {other} in deploy/{file}"),
    }
    kind
}

#[test]
fn every_object_is_a_valid_typed_kubernetes_object() {
    let mut kinds: Vec<String> = manifest()
        .iter()
        .map(|d| check_object(d, "tweed.yaml"))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet",
            "Namespace",
            "Role",
            "RoleBinding",
            "ServiceAccount"
        ]
    );
}

/// `resource:verb` for every pair a set of rules grants, sorted.
fn grants_of(rules: &[PolicyRule]) -> Vec<String> {
    let mut grants: Vec<String> = rules
        .iter()
        .flat_map(|r| {
            let resources = r.resources.clone().unwrap_or_default();
            let mut out = Vec::new();
            for v in &r.verbs {
                for res in &resources {
                    out.push(format!("{res}:{v}"));
                }
            }
            out
        })
        .collect();
    grants.sort();
    grants
}

#[test]
fn the_role_grants_exactly_what_tweedd_uses() {
    let docs = manifest();
    let doc = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let role: ClusterRole = round_trip(doc, "ClusterRole");
    assert_eq!(
        grants_of(&role.rules.unwrap_or_default()),
        [
            // --network-policy: what policies say and whom they select.
            "namespaces:list",
            "namespaces:watch",
            "networkpolicies:list",
            "networkpolicies:watch",
            "nodes/status:patch",
            "nodes:get",
            "nodes:list",
            "nodes:watch",
            "pods:list",
            "pods:watch"
        ]
    );
    // In tweed's namespace only: the Lease objects of segment blocks.
    let doc = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    let role: Role = round_trip(doc, "Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some("kube-tweed"));
    let rules = role.rules.unwrap_or_default();
    assert!(
        rules
            .iter()
            .all(|r| r.api_groups.as_deref() == Some(&["coordination.k8s.io".to_string()][..]))
    );
    assert_eq!(
        grants_of(&rules),
        [
            "leases:create",
            "leases:get",
            "leases:list",
            "leases:update"
        ]
    );
    let doc = docs.iter().find(|d| d["kind"] == "RoleBinding").unwrap();
    let binding: RoleBinding = round_trip(doc, "RoleBinding");
    assert_eq!(binding.role_ref.name, "tweed");
}

#[test]
fn the_daemonset_is_unprivileged_host_network_and_probed() {
    let docs = manifest();
    let doc = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    let ds: DaemonSet = round_trip(doc, "DaemonSet");
    let pod = ds.spec.template.spec.expect("pod spec");
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert!(
        pod.tolerations
            .unwrap_or_default()
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none())
    );
    let agent = &pod.containers[0];
    let sc = agent.security_context.clone().unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(
        sc.capabilities.unwrap().add.unwrap_or_default(),
        ["NET_ADMIN", "SYS_ADMIN", "BPF", "NET_BIND_SERVICE"]
            .map(String::from)
            .to_vec(),
        "NET_ADMIN for netlink and nftables, SYS_ADMIN to enter pods' namespaces (wires), BPF for VLAN segments, \
         NET_BIND_SERVICE for urunc guests' DHCP"
    );
    let probe_path = |p: Option<k8s_openapi::api::core::v1::Probe>| {
        p.and_then(|p| p.http_get)
            .and_then(|h| h.path)
            .unwrap_or_default()
    };
    assert_eq!(probe_path(agent.liveness_probe.clone()), "/healthz");
    assert_eq!(probe_path(agent.readiness_probe.clone()), "/readyz");
    // The store comes from the ConfigMap's `store` key, kube by default.
    let store = agent
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "TWEED_STORE")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.config_map_key_ref.as_ref())
        .expect("TWEED_STORE from the ConfigMap");
    assert_eq!(
        (store.name.as_str(), store.key.as_str()),
        ("tweed-cfg", "store")
    );
    assert_eq!(config_map(&docs).data.unwrap()["store"], "kube");
    // Pods' namespaces appear after tweedd starts: they must propagate in.
    let netns = agent
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/var/run/netns")
        .expect("/var/run/netns mounted for wires");
    assert_eq!(netns.mount_propagation.as_deref(), Some("HostToContainer"));
    let init = &pod.init_containers.unwrap()[0];
    assert_eq!(init.command.as_ref().unwrap()[1], "install-cni");
}

/// deploy/flannel-compat.yaml turns on exactly the variable tweed.yaml's
/// install step and agent read (optional: without it, compat is off), and
/// tweed's pods stay off nodes still labelled as flannel's.
#[test]
fn the_flannel_compat_variant_switches_both_containers() {
    let docs = manifest_file("flannel-compat.yaml");
    let kinds: Vec<String> = docs
        .iter()
        .map(|d| check_object(d, "flannel-compat.yaml"))
        .collect();
    assert_eq!(kinds, ["ConfigMap"]);
    let cm: ConfigMap = round_trip(&docs[0], "ConfigMap");
    let ns = cm.metadata.namespace.as_deref();
    let name = cm.metadata.name.as_deref().unwrap();
    assert_eq!(ns, Some("kube-tweed"));
    let data = cm.data.unwrap();
    let tweed = manifest();
    let doc = tweed.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    let ds: DaemonSet = round_trip(doc, "DaemonSet");
    let pod = ds.spec.template.spec.unwrap();
    let containers = pod.init_containers.iter().flatten().chain(&pod.containers);
    let mut switched = Vec::new();
    for c in containers {
        let var = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "TWEED_FLANNEL_COMPAT")
            .unwrap_or_else(|| panic!("{}: no TWEED_FLANNEL_COMPAT", c.name));
        let key = var
            .value_from
            .as_ref()
            .and_then(|v| v.config_map_key_ref.as_ref())
            .expect("from a ConfigMap");
        assert_eq!(key.name, name, "{}", c.name);
        assert_eq!(
            key.optional,
            Some(true),
            "{}: off without the variant",
            c.name
        );
        assert_eq!(data[&key.key], "true");
        switched.push(c.name.clone());
    }
    assert_eq!(switched, ["install-cni", "tweedd"]);
    let terms = pod.affinity.unwrap().node_affinity.unwrap();
    let terms = terms
        .required_during_scheduling_ignored_during_execution
        .unwrap();
    let expr = &terms.node_selector_terms[0]
        .match_expressions
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        (
            expr.key.as_str(),
            expr.operator.as_str(),
            expr.values.clone()
        ),
        (
            "tweed.io/network",
            "NotIn",
            Some(vec!["flannel".to_string()])
        )
    );
}

/// deploy/flannel-cleanup.yaml: a DaemonSet that sees the host's network
/// and processes and mounts flannel's paths where tweedctl looks for them.
#[test]
fn the_flannel_cleanup_daemonset_sees_what_it_cleans() {
    let docs = manifest_file("flannel-cleanup.yaml");
    let kinds: Vec<String> = docs
        .iter()
        .map(|d| check_object(d, "flannel-cleanup.yaml"))
        .collect();
    assert_eq!(kinds, ["DaemonSet"]);
    let ds: DaemonSet = round_trip(&docs[0], "DaemonSet");
    let pod = ds.spec.template.spec.unwrap();
    assert_eq!((pod.host_network, pod.host_pid), (Some(true), Some(true)));
    let c = &pod.containers[0];
    let argv = c.command.clone().unwrap();
    assert_eq!(
        argv[1..],
        ["flannel-cleanup", "--yes", "--then-wait"].map(String::from)
    );
    let volumes = pod.volumes.unwrap();
    for path in [
        "/etc/cni/net.d",
        "/opt/cni/bin",
        "/run/flannel",
        "/var/lib/cni",
    ] {
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("{path} not mounted"));
        let volume = volumes.iter().find(|v| v.name == mount.name).unwrap();
        assert_eq!(volume.host_path.as_ref().unwrap().path, path, "host {path}");
    }
}

#[test]
fn net_conf_parses_with_tweedds_parser() {
    let cm = config_map(&manifest());
    let data = cm.data.unwrap();
    let conf = tweedd::config::NetConfig::parse(&data["net-conf.json"]).expect("net-conf.json");
    assert_eq!(conf.backend.type_name(), "vxlan");
}

#[test]
fn the_conflist_installs_atomically_and_runs_with_the_real_plugin() {
    let cm = config_map(&manifest());
    let conflist: Value = serde_json::from_str(&cm.data.unwrap()["cni-conf.json"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("cni-conf.json");
    std::fs::write(&src, conflist.to_string()).unwrap();
    let (bin_dir, conf_dir) = (dir.path().join("bin"), dir.path().join("net.d"));
    let out = Command::new(target_bin("tweedctl"))
        .arg("install-cni")
        .arg("--plugin")
        .arg(target_bin("tweed"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--conflist")
        .arg(&src)
        .arg("--conf-dir")
        .arg(&conf_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed_plugin = bin_dir.join("tweed");
    let installed: Value =
        serde_json::from_slice(&std::fs::read(conf_dir.join("10-tweed.conflist")).unwrap())
            .unwrap();
    assert_eq!(installed, conflist);
    assert_eq!(
        std::fs::read_dir(&conf_dir).unwrap().count(),
        1,
        "temporary file left"
    );

    // The tweed entry, as a runtime hands it to the plugin, with a lease
    // file as tweedd would write it.
    let lease = dir.path().join("subnet.env");
    std::fs::write(
        &lease,
        "TWEED_NETWORK=10.244.0.0/16\nTWEED_SUBNET=10.244.93.1/24\nTWEED_MTU=1450\nTWEED_IPMASQ=true\n",
    )
    .unwrap();
    let mut plugin = conflist["plugins"][0].clone();
    let obj = plugin.as_object_mut().unwrap();
    obj.remove("capabilities");
    obj.insert("cniVersion".into(), conflist["cniVersion"].clone());
    obj.insert("name".into(), conflist["name"].clone());
    obj.insert("subnetFile".into(), json!(lease));
    obj.insert("logFile".into(), json!(dir.path().join("cni.log")));
    obj.insert("ipam".into(), json!({"dataDir": dir.path().join("ipam")}));
    obj.insert(
        "runtimeConfig".into(),
        json!({"io.kubernetes.cri.pod-annotations": {"io.kubernetes.pod.name": "web"}}),
    );
    let (node, pod) = (TestNs::new("dpn"), TestNs::new("dpp"));
    let r = CniCall::new(&installed_plugin, "ADD")
        .config(&plugin)
        .in_node(&node.name)
        .container("deploy-1", &pod.path(), "eth0")
        .run()
        .expect_ok("ADD with the deployed conflist");
    assert!(
        r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.244.93."),
        "{r}"
    );
    assert_eq!(r["interfaces"][2]["mtu"], 1450);
    CniCall::new(&installed_plugin, "DEL")
        .config(&plugin)
        .in_node(&node.name)
        .container("deploy-1", &pod.path(), "eth0")
        .run()
        .expect_ok("DEL");
}

#[test]
fn the_round_trip_catches_unknown_fields_and_wrong_types() {
    let unknown = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "lables": {"a": "b"}}});
    let typed: Namespace = serde_json::from_value(unknown.clone()).unwrap();
    let back = serde_json::to_value(&typed).unwrap();
    let err = contained(&unknown, &back, "Namespace").unwrap_err();
    assert!(err.contains("metadata.lables"), "{err}");
    let wrong = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": 7}});
    assert!(serde_json::from_value::<ServiceAccount>(wrong).is_err());
}
