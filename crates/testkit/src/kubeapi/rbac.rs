//! A manifest's identity and permissions applied to the fixture's API
//! server, and service account credentials, so code under test runs with
//! exactly what the manifest grants.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Credentials, KubeApi};

/// The kinds [`KubeApi::apply_rbac`] applies; everything else in the
/// manifest (ConfigMaps, workloads) is left out.
pub const IDENTITY_KINDS: [&str; 6] = [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// A service account: who a workload of the manifest runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccount {
    /// The user name the API server gives its tokens
    /// (`system:serviceaccount:<namespace>:<name>`), for `--as`.
    pub fn user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl KubeApi {
    /// Applies the [`IDENTITY_KINDS`] objects of `manifest` (read by
    /// kubectl itself, so any YAML it accepts works) and returns the
    /// service account its DaemonSet runs as.
    pub fn apply_rbac(&self, manifest: &Path) -> ServiceAccount {
        let path = manifest.display().to_string();
        // One JSON object per document, one after the other.
        let all = self.kubectl_ok(&["create", "--dry-run=client", "-o", "json", "-f", &path]);
        let items: Vec<Value> = serde_json::Deserializer::from_str(&all)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("kubectl on {path}: {e}: {all}"));
        let daemonset = items
            .iter()
            .find(|o| o["kind"] == "DaemonSet")
            .unwrap_or_else(|| panic!("{path} has no DaemonSet"));
        let sa = ServiceAccount {
            namespace: daemonset["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            name: daemonset["spec"]["template"]["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
        };
        let identity: Vec<Value> = items
            .into_iter()
            .filter(|o| IDENTITY_KINDS.iter().any(|k| o["kind"] == *k))
            .collect();
        assert!(
            identity.iter().any(|o| o["kind"] == "ServiceAccount"
                && o["metadata"]["name"] == sa.name.as_str()
                && o["metadata"]["namespace"] == sa.namespace.as_str()),
            "{path} does not create the service account its DaemonSet uses ({sa:?})"
        );
        let list = json!({"apiVersion": "v1", "kind": "List", "items": identity});
        self.kubectl_in_ok(&["apply", "-f", "-"], Some(&list.to_string()));
        sa
    }

    /// A token for `sa`, as the kubelet mounts one into its pods
    /// (`kubectl create token`, an hour long).
    pub fn token(&self, sa: &ServiceAccount) -> String {
        self.kubectl_ok(&[
            "create",
            "token",
            &sa.name,
            "-n",
            &sa.namespace,
            "--duration=1h",
        ])
        .trim()
        .to_string()
    }

    /// A kubeconfig authenticating as `sa` with a fresh token.
    pub fn token_kubeconfig(&self, sa: &ServiceAccount) -> PathBuf {
        let token = self.token(sa);
        self.write_kubeconfig(
            &format!("sa-{}-{}", sa.namespace, sa.name),
            &self.certs().ca,
            &Credentials::Token(&token),
        )
    }

    /// `kubectl auth can-i <verb> <resource> [--subresource <s>] [-n <ns>]
    /// --as <user>`: whether the API server's authorizer allows it.
    /// `resource` is `nodes`, `nodes/status` (a subresource) or
    /// `leases.coordination.k8s.io` (a group's); `namespace` `None` asks
    /// for every namespace at once (`--all-namespaces`: what a
    /// ClusterRole grants), which for cluster-scoped resources like nodes
    /// is the only question.
    pub fn can_i(&self, user: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
        let (resource, sub) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (resource, None),
        };
        let mut args = vec!["auth", "can-i", verb, resource, "--as", user];
        if let Some(s) = sub {
            args.extend_from_slice(&["--subresource", s]);
        }
        match namespace {
            Some(ns) => args.extend_from_slice(&["-n", ns]),
            None => args.push("--all-namespaces"),
        }
        let out = self.kubectl(&args, None);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // kubectl exits 1 for "no": only the printed answer decides, and
        // anything else (an error) fails the test.
        match answer.as_str() {
            "yes" => true,
            "no" => false,
            _ => panic!(
                "kubectl {args:?}: {answer}{}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}
