//! What the hook reads from the container's OCI bundle (`config.json`):
//! the pod's network namespace as a path tweedd can open, the pod's
//! hostname, and the resolv.conf the runtime mounts into the container
//! (kubelet's, with the cluster's DNS servers and search domains).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tweed_guest::GuestDns;

use super::HookError;

#[derive(Debug, Default, Deserialize)]
pub struct Spec {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    mounts: Vec<Mount>,
    #[serde(default)]
    linux: Option<Linux>,
}

#[derive(Debug, Deserialize)]
struct Mount {
    destination: PathBuf,
    #[serde(default)]
    source: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct Linux {
    #[serde(default)]
    namespaces: Vec<Namespace>,
}

#[derive(Debug, Deserialize)]
struct Namespace {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: Option<PathBuf>,
}

impl Spec {
    pub fn read(bundle: &Path) -> Result<Spec, HookError> {
        let path = bundle.join("config.json");
        let text = std::fs::read(&path)
            .map_err(|e| HookError::State(format!("{}: {e}", path.display())))?;
        serde_json::from_slice(&text)
            .map_err(|e| HookError::State(format!("{}: {e}", path.display())))
    }

    /// The network namespace the container joins (the pod's, which the
    /// CRI names under /var/run/netns).
    pub fn netns(&self) -> Option<&Path> {
        self.linux
            .as_ref()?
            .namespaces
            .iter()
            .find(|n| n.kind == "network")?
            .path
            .as_deref()
    }

    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref().filter(|h| !h.is_empty())
    }

    /// The resolver settings of the resolv.conf mounted at
    /// /etc/resolv.conf, without loopback servers (a guest cannot reach
    /// its pod's 127.0.0.1). None when nothing is mounted there.
    pub fn dns(&self) -> Result<Option<GuestDns>, HookError> {
        let Some(source) = self
            .mounts
            .iter()
            .find(|m| m.destination == Path::new("/etc/resolv.conf"))
            .and_then(|m| m.source.as_deref())
        else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(source)
            .map_err(|e| HookError::State(format!("{}: {e}", source.display())))?;
        let mut dns = tweed_guest::dns::parse_resolv_conf(&text);
        dns.nameservers.retain(|ip| !ip.is_loopback());
        Ok(Some(dns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pods_namespace_hostname_and_resolver_come_from_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            "search default.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.96.0.10\nnameserver 127.0.0.53\noptions ndots:5\n",
        )
        .unwrap();
        let config = serde_json::json!({
            "ociVersion": "1.1.0",
            "hostname": "web",
            "mounts": [
                {"destination": "/etc/hosts", "source": "/nowhere"},
                {"destination": "/etc/resolv.conf", "source": resolv},
            ],
            "linux": {"namespaces": [
                {"type": "pid"},
                {"type": "network", "path": "/var/run/netns/cni-42"},
            ]},
        });
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let spec = Spec::read(dir.path()).unwrap();
        assert_eq!(spec.netns(), Some(Path::new("/var/run/netns/cni-42")));
        assert_eq!(spec.hostname(), Some("web"));
        let dns = spec.dns().unwrap().unwrap();
        assert_eq!(
            dns.nameservers,
            vec!["10.96.0.10".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(dns.search.len(), 3);
        assert_eq!(dns.options, vec!["ndots:5".to_string()]);
    }

    #[test]
    fn a_missing_bundle_names_the_file() {
        let e = Spec::read(Path::new("/nonexistent-bundle")).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent-bundle/config.json"),
            "{e}"
        );
    }
}
