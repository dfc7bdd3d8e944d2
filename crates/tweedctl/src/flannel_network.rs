//! `install-cni --flannel-compat`: tweed's conflist takes over flannel's
//! CNI network on a node that ran flannel.
//!
//! Pods flannel made hang off flannel's bridge (`cni0`) with addresses its
//! delegate host-local reserved under `/var/lib/cni/networks/<name>`
//! (`cbr0` in kube-flannel.yml), and the runtime cached their results
//! under that network name. tweed's plugin takes over all three by using
//! the same bridge and network name: the gateway address stays on one
//! bridge, tweed's IPAM (host-local's on-disk format) sees every address
//! flannel handed out, and DEL of a pod flannel made reaches tweed's plugin
//! with its cached result. The names are read from flannel's own conflist,
//! so a cluster whose flannel config renamed them is taken over too; a
//! node without one (it joined during the migration) gets flannel's
//! defaults, so every node of the cluster looks the same.

use std::path::Path;

use serde_json::Value;

use crate::take_over::SUFFIX;

/// kube-flannel.yml's network name and flannel's default bridge.
const DEFAULT_NAME: &str = "cbr0";
const DEFAULT_BRIDGE: &str = "cni0";

/// flannel's CNI network on this node.
#[derive(Debug, PartialEq, Eq)]
pub struct FlannelNetwork {
    /// The CNI network name (the conflist's `name`).
    pub name: String,
    /// The bridge flannel's delegate uses.
    pub bridge: String,
    /// flannel's config file in the conf dir, if it is still in force
    /// (not already set aside by an earlier run).
    pub active_file: Option<String>,
    /// Where the names came from, for the log.
    pub source: String,
}

/// Finds flannel's config in `conf_dir`: a conflist with a plugin of type
/// `flannel` (or a single `.conf` of that type), in force or set aside.
/// Files are judged by their content, not their names.
pub fn find(conf_dir: &Path) -> std::io::Result<FlannelNetwork> {
    let mut names: Vec<String> = match std::fs::read_dir(conf_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    // In force first (as the runtime orders them), then set-aside copies.
    names.sort_by_key(|n| (n.contains(SUFFIX), n.clone()));
    for name in names {
        let Ok(bytes) = std::fs::read(conf_dir.join(&name)) else {
            continue;
        };
        let Ok(conf) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        if let Some(network) = flannel_network(&conf) {
            return Ok(FlannelNetwork {
                active_file: (!name.contains(SUFFIX)).then(|| name.clone()),
                source: conf_dir.join(&name).display().to_string(),
                ..network
            });
        }
    }
    Ok(FlannelNetwork {
        name: DEFAULT_NAME.into(),
        bridge: DEFAULT_BRIDGE.into(),
        active_file: None,
        source: "flannel's defaults (no flannel config on this node)".into(),
    })
}

/// The network a flannel conflist or single-plugin conf describes.
fn flannel_network(conf: &Value) -> Option<FlannelNetwork> {
    let plugin = match conf["plugins"].as_array() {
        Some(plugins) => plugins.iter().find(|p| p["type"] == "flannel")?,
        None if conf["type"] == "flannel" => conf,
        None => return None,
    };
    Some(FlannelNetwork {
        name: conf["name"].as_str()?.to_string(),
        bridge: plugin["delegate"]["bridge"]
            .as_str()
            .unwrap_or(DEFAULT_BRIDGE)
            .to_string(),
        active_file: None,
        source: String::new(),
    })
}

/// tweed's `conflist` on flannel's network: its name and the tweed
/// plugin's bridge.
pub fn adopt(conflist: &mut Value, network: &FlannelNetwork) {
    conflist["name"] = Value::from(network.name.clone());
    if let Some(plugins) = conflist["plugins"].as_array_mut() {
        for p in plugins.iter_mut().filter(|p| p["type"] == "tweed") {
            p["bridge"] = Value::from(network.bridge.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, name: &str, v: Value) {
        std::fs::write(dir.join(name), v.to_string()).unwrap();
    }

    #[test]
    fn reads_flannels_names_in_force_or_set_aside_and_defaults_without() {
        let dir = tempfile::tempdir().unwrap();
        let none = find(dir.path()).unwrap();
        assert_eq!((none.name.as_str(), none.bridge.as_str()), ("cbr0", "cni0"));
        assert_eq!(none.active_file, None);

        write(
            dir.path(),
            "05-other.conflist",
            json!({"name": "x", "plugins": [{"type": "bridge"}]}),
        );
        write(
            dir.path(),
            "10-flannel.conflist.tweed-replaced",
            json!({"name": "old", "plugins": [{"type": "flannel"}]}),
        );
        let aside = find(dir.path()).unwrap();
        assert_eq!(
            (aside.name.as_str(), aside.bridge.as_str()),
            ("old", "cni0")
        );
        assert_eq!(aside.active_file, None);

        write(
            dir.path(),
            "10-flannel.conflist",
            json!({"name": "pods", "plugins": [{"type": "flannel", "delegate": {"bridge": "br9"}}, {"type": "portmap"}]}),
        );
        let active = find(dir.path()).unwrap();
        assert_eq!(
            (active.name.as_str(), active.bridge.as_str()),
            ("pods", "br9")
        );
        assert_eq!(active.active_file.as_deref(), Some("10-flannel.conflist"));

        let mut tweed = json!({"name": "tweed", "plugins": [{"type": "tweed", "bridge": "tweed0"}, {"type": "portmap"}]});
        adopt(&mut tweed, &active);
        assert_eq!(tweed["name"], "pods");
        assert_eq!(tweed["plugins"][0]["bridge"], "br9");
        assert_eq!(tweed["plugins"][1].get("bridge"), None);
    }
}
