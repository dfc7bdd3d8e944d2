//! Least privilege, proven against a real kube-apiserver with
//! deploy/tweed.yaml's RBAC applied (see `kube_real`): the DaemonSet's
//! service account may make every API call tweedd makes, and nothing else
//! this file asks about (`kubectl auth can-i --as
//! system:serviceaccount:kube-tweed:tweed`, the API server's own
//! authorizer answering).
//!
//! The calls tweedd makes are read from its source (the kube store's
//! `Api` method calls), so a new call without a matching grant — or a
//! grant the code no longer needs — fails here. docs/agent.md lists the
//! same.

#[allow(dead_code)] // each test binary uses a part of it
mod kube_real;

use std::collections::BTreeSet;
use std::path::Path;

use kube_real::Cluster;
use tweed_testkit::kubeapi::ServiceAccount;
use tweedd::store::LeaseStore;

const LEASES: &str = "leases.coordination.k8s.io";

/// Where tweedd talks to the API, the type of the file's `Api` (none in
/// watch.rs: it calls its store's) and the resource that is.
const SOURCES: [(&str, &str, &str); 3] = [
    ("src/store/kube/mod.rs", "Node", "nodes"),
    ("src/store/kube/watch.rs", "Node", "nodes"),
    ("src/store/kube/blocks.rs", "KubeLease", LEASES),
];

/// Where tweedd follows objects with kube-runtime's watcher (which lists,
/// then watches), the kind of each `Api::<Kind>` there and its resource.
const WATCHED: [(&str, &str, &str); 3] = [
    ("src/policy.rs", "NetworkPolicy", NETWORK_POLICIES),
    ("src/policy.rs", "Pod", "pods"),
    ("src/policy.rs", "Namespace", "namespaces"),
];
const NETWORK_POLICIES: &str = "networkpolicies.networking.k8s.io";

/// kube's `Api` methods as the verb (and subresource) each requests;
/// `None` for methods that make no request.
fn verb_of(method: &str) -> Option<(&'static str, &'static str)> {
    Some(match method {
        "get" | "get_opt" => ("get", ""),
        "list" => ("list", ""),
        "watch" => ("watch", ""),
        "create" => ("create", ""),
        "replace" => ("update", ""),
        "patch" => ("patch", ""),
        "delete" => ("delete", ""),
        "patch_status" => ("patch", "/status"),
        "replace_status" => ("update", "/status"),
        "clone" | "into_client" => return None,
        other => panic!(
            "the kube store calls Api::{other}: classify it here (verb, subresource) and grant it in deploy/tweed.yaml"
        ),
    })
}

/// Calls in the code that tweedd itself never makes, with why: they are
/// not granted, on purpose.
const NEVER_CALLED: [(&str, &str, &str); 1] = [(
    "delete",
    LEASES,
    "KubeBlockStore::delete (the LeaseStore trait's): segment blocks are never given back while the agent runs, they lapse",
)];

/// A source file as code only (comments name calls too), whitespace gone
/// (rustfmt breaks `self.api\n    .patch_status(` over lines).
fn code_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<String>()
        .split_whitespace()
        .collect()
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `(verb, resource)` for every `Api` call in the kube store's source.
fn calls_in_source() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // No other file of the agent's talks to the API.
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for f in files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if let Some((file, _, _)) = WATCHED.iter().find(|(w, _, _)| *w == rel) {
            let code = code_of(&f);
            for (at, _) in code.match_indices("Api::<") {
                let kind: String = code[at + 6..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                assert!(
                    WATCHED.iter().any(|(w, k, _)| w == file && *k == kind),
                    "{rel} follows {kind}: add it to WATCHED"
                );
            }
            continue;
        }
        if SOURCES.iter().all(|(s, _, _)| *s != rel) {
            let code = code_of(&f);
            assert!(
                !code.contains("Api<") && !code.contains("Api::"),
                "{rel} uses kube's Api: add it to SOURCES"
            );
        }
    }
    let mut calls = BTreeSet::new();
    for (_, _, resource) in WATCHED {
        calls.insert(("list".to_string(), resource.to_string()));
        calls.insert(("watch".to_string(), resource.to_string()));
    }
    for (file, kind, resource) in SOURCES {
        let code = code_of(&root.join(file));
        for (at, _) in code.match_indices("Api<") {
            let kind_here: String = code[at + 4..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert_eq!(kind_here, kind, "{file} has an Api of another kind");
        }
        for (at, _) in code.match_indices("api.") {
            // `self.api.x(` or `self.store.api.x(`, not `kube::api::`.
            if !code[..at].ends_with('.') {
                continue;
            }
            let rest = &code[at + 4..];
            let method: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !rest[method.len()..].starts_with('(') {
                continue;
            }
            if let Some((verb, sub)) = verb_of(&method) {
                calls.insert((verb.to_string(), format!("{resource}{sub}")));
            }
        }
    }
    calls
}

/// Asks the API server, for each `(verb, resource)`, whether `sa` may, in
/// `namespace` (`None`: cluster-wide); returns those answered otherwise
/// than `want`.
fn wrong_answers(
    c: &Cluster,
    sa: &ServiceAccount,
    checks: &[(&str, &str, Option<&str>)],
    want: bool,
) -> Vec<String> {
    checks
        .iter()
        .filter(|(verb, resource, ns)| c.api.can_i(&sa.user(), verb, resource, *ns) != want)
        .map(|(verb, resource, ns)| format!("{verb} {resource} in {}", ns.unwrap_or("(all)")))
        .collect()
}

#[test]
fn the_service_account_may_make_exactly_the_calls_tweedd_makes() {
    let c = Cluster::start();
    let ns = c.sa.namespace.as_str();
    assert_eq!(c.sa.user(), "system:serviceaccount:kube-tweed:tweed");

    // What the code calls, read from it...
    let called = calls_in_source();
    let never: BTreeSet<(String, String)> = NEVER_CALLED
        .iter()
        .map(|(v, r, _)| (v.to_string(), r.to_string()))
        .collect();
    let used: BTreeSet<(String, String)> = called.difference(&never).cloned().collect();
    let expected: BTreeSet<(String, String)> = [
        ("get", "nodes"),
        ("list", "nodes"),
        ("watch", "nodes"),
        ("patch", "nodes/status"),
        ("get", LEASES),
        ("list", LEASES),
        ("create", LEASES),
        ("update", LEASES),
        ("list", NETWORK_POLICIES),
        ("watch", NETWORK_POLICIES),
        ("list", "pods"),
        ("watch", "pods"),
        ("list", "namespaces"),
        ("watch", "namespaces"),
    ]
    .iter()
    .map(|(v, r)| (v.to_string(), r.to_string()))
    .collect();
    assert_eq!(
        used, expected,
        "the kube store's API calls changed: update deploy/tweed.yaml's RBAC, docs/agent.md and this list"
    );
    for n in &never {
        assert!(
            called.contains(n),
            "{n:?} is no longer in the code: drop it from NEVER_CALLED"
        );
    }

    // ...is allowed: nodes cluster-wide, Leases in tweed's namespace.
    let yes: Vec<(&str, &str, Option<&str>)> = used
        .iter()
        .map(|(v, r)| {
            let scope = if r == LEASES { Some(ns) } else { None };
            (v.as_str(), r.as_str(), scope)
        })
        .collect();
    let refused = wrong_answers(&c, &c.sa, &yes, true);
    assert!(
        refused.is_empty(),
        "tweedd needs, and is refused: {refused:?}"
    );

    // And nothing else. Nodes: no write beyond the status subresource's
    // patch, so no spec (taints, unschedulable, podCIDR) can be changed.
    let no: Vec<(&str, &str, Option<&str>)> = vec![
        ("patch", "nodes", None),
        ("update", "nodes", None),
        ("create", "nodes", None),
        ("delete", "nodes", None),
        ("deletecollection", "nodes", None),
        ("update", "nodes/status", None),
        ("get", "nodes/proxy", None),
        ("create", "nodes/proxy", None),
        // Leases: none of the calls the code does not make, and none
        // outside tweed's namespace (kube-system holds leader election and
        // kube-node-lease every node's heartbeat).
        ("delete", LEASES, Some(ns)),
        ("deletecollection", LEASES, Some(ns)),
        ("patch", LEASES, Some(ns)),
        ("watch", LEASES, Some(ns)),
        ("get", LEASES, Some("kube-system")),
        ("create", LEASES, Some("kube-system")),
        ("update", LEASES, Some("kube-system")),
        ("update", LEASES, Some("kube-node-lease")),
        ("list", LEASES, None),
        // Nothing of anyone else's.
        ("get", "secrets", Some(ns)),
        ("list", "secrets", None),
        ("get", "configmaps", Some(ns)),
        ("create", "pods", Some(ns)),
        ("get", "pods", Some(ns)),
        ("delete", "pods", Some(ns)),
        ("update", "pods", Some(ns)),
        ("create", NETWORK_POLICIES, Some(ns)),
        ("delete", NETWORK_POLICIES, Some(ns)),
        ("update", "namespaces", None),
        ("create", "pods/exec", Some(ns)),
        ("create", "serviceaccounts/token", Some(ns)),
        ("update", "daemonsets.apps", Some(ns)),
        ("create", "events", Some(ns)),
        ("create", "namespaces", None),
        ("create", "rolebindings.rbac.authorization.k8s.io", Some(ns)),
        (
            "create",
            "clusterrolebindings.rbac.authorization.k8s.io",
            None,
        ),
        ("escalate", "clusterroles.rbac.authorization.k8s.io", None),
        ("bind", "clusterroles.rbac.authorization.k8s.io", None),
        ("impersonate", "users", None),
        ("*", "*", None),
    ];
    let allowed = wrong_answers(&c, &c.sa, &no, false);
    assert!(allowed.is_empty(), "allowed beyond need: {allowed:?}");
}

/// Without tweed's RBAC (a service account nothing is bound to), the
/// store's calls are refused with 403, and the error says what tweedd
/// needs and where that is written down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_rbac_the_store_says_what_it_needs() {
    let c = Cluster::start();
    c.api.create_node("n1", &["10.244.1.0/24"]);
    c.api
        .kubectl_ok(&["create", "serviceaccount", "nobody", "-n", &c.sa.namespace]);
    let nobody = ServiceAccount {
        namespace: c.sa.namespace.clone(),
        name: "nobody".into(),
    };
    let kubeconfig = c.api.token_kubeconfig(&nobody);
    let store = tweedd::store::kube::KubeStore::connect(tweedd::store::kube::KubeOptions {
        node_name: "n1".into(),
        kubeconfig: Some(kubeconfig),
        flannel_compat: false,
        networks: tweedd::store::kube::node::Networks {
            ipv4: Some("10.244.0.0/16".parse().unwrap()),
            ipv6: None,
        },
    })
    .await
    .unwrap();
    let err = store.list().await.unwrap_err().to_string();
    assert!(err.contains("403"), "{err}");
    for needed in [
        "get/list/watch on nodes",
        "patch on nodes/status",
        "docs/agent.md",
    ] {
        assert!(err.contains(needed), "{needed:?} not in: {err}");
    }
}
