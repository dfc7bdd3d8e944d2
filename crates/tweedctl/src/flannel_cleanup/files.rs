//! flannel's files on the node: its CNI config(s), its CNI plugin, the
//! lease file flanneld wrote, and the delegate configs its plugin saved
//! per pod (which nobody deletes once DEL goes to tweed's plugin).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::take_over::SUFFIX;

/// Where to look.
pub struct Dirs<'a> {
    /// The runtime's CNI config directory.
    pub conf: &'a Path,
    /// The CNI plugin directory.
    pub bin: &'a Path,
    /// flanneld's run directory, or `None` to keep its `subnet.env`.
    pub flannel_run: Option<&'a Path>,
    /// The CNI state directory (`/var/lib/cni`).
    pub cni_state: &'a Path,
}

/// One of flannel's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A CNI config whose plugins include flannel's.
    Config(PathBuf),
    /// flannel's CNI plugin binary.
    Plugin(PathBuf),
    /// The lease file flanneld wrote.
    SubnetEnv(PathBuf),
    /// The directory where flannel's plugin saves each pod's delegate
    /// config, with how many it holds.
    DelegateDir { path: PathBuf, files: usize },
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Config(p) => write!(f, "file {} (a CNI config using flannel)", p.display()),
            Item::Plugin(p) => write!(f, "file {} (flannel's CNI plugin)", p.display()),
            Item::SubnetEnv(p) => write!(f, "file {} (flanneld's lease file)", p.display()),
            Item::DelegateDir { path, files } => write!(
                f,
                "directory {} (delegate configs flannel's plugin saved for {})",
                path.display(),
                super::plural(*files, "pod")
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", path.display())]
pub struct ReadError {
    path: PathBuf,
    source: io::Error,
}

/// The lease file in flanneld's run directory.
pub fn subnet_env(run_dir: &Path) -> PathBuf {
    run_dir.join("subnet.env")
}

/// The directory flannel's plugin keeps per-pod state in (its `dataDir`).
fn delegate_dir(cni_state: &Path) -> PathBuf {
    cni_state.join("flannel")
}

/// flannel's files under `dirs`, and what could not be read. A directory
/// that does not exist holds nothing of flannel's.
pub fn find(dirs: &Dirs) -> (Vec<Item>, Vec<ReadError>) {
    let mut errors = Vec::new();
    let mut items: Vec<Item> = configs(dirs.conf, &mut errors)
        .into_iter()
        .map(Item::Config)
        .collect();
    let plugin = dirs.bin.join("flannel");
    if exists(&plugin, &mut errors) {
        items.push(Item::Plugin(plugin));
    }
    if let Some(run) = dirs.flannel_run {
        let env = subnet_env(run);
        if exists(&env, &mut errors) {
            items.push(Item::SubnetEnv(env));
        }
    }
    let state = delegate_dir(dirs.cni_state);
    match std::fs::read_dir(&state) {
        Ok(entries) => items.push(Item::DelegateDir {
            path: state,
            files: entries.count(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => errors.push(ReadError {
            path: state,
            source,
        }),
    }
    (items, errors)
}

/// Removes one item; one already gone counts as removed.
pub fn remove(item: &Item) -> io::Result<()> {
    let done = match item {
        Item::Config(p) | Item::Plugin(p) | Item::SubnetEnv(p) => std::fs::remove_file(p),
        Item::DelegateDir { path, .. } => std::fs::remove_dir_all(path),
    };
    match done {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn exists(p: &Path, errors: &mut Vec<ReadError>) -> bool {
    match p.symlink_metadata() {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(source) => {
            errors.push(ReadError {
                path: p.to_path_buf(),
                source,
            });
            false
        }
    }
}

/// The files in `conf_dir` that configure flannel's plugin, decided by
/// their content: a name proves nothing (a renamed copy, an unrelated file
/// called `*flannel*`).
fn configs(conf_dir: &Path, errors: &mut Vec<ReadError>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(conf_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(source) => {
            errors.push(ReadError {
                path: conf_dir.to_path_buf(),
                source,
            });
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    for path in entries.filter_map(|e| Some(e.ok()?.path())) {
        if !is_config_name(&path) || !path.is_file() {
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) if uses_flannel(&text) => found.push(path),
            Ok(_) => {}
            // Not UTF-8: not a CNI config.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {}
            Err(source) => errors.push(ReadError { path, source }),
        }
    }
    found.sort();
    found
}

/// The names a runtime loads (libcni: `.conf`, `.conflist`, `.json`) and
/// those tweed's installer gives a config it set aside (`--take-over`):
/// `NAME.tweed-replaced`, and `NAME.tweed-replaced.N` for earlier copies.
fn is_config_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let loaded = [".conf", ".conflist", ".json"]
        .iter()
        .any(|ext| name.ends_with(ext));
    let numbered = name.rsplit_once('.').is_some_and(|(stem, n)| {
        stem.ends_with(SUFFIX) && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    });
    loaded || name.ends_with(SUFFIX) || numbered
}

/// True when the JSON text is a CNI config of flannel's plugin: a single
/// plugin config of type `flannel`, or a list with one among its plugins.
fn uses_flannel(text: &str) -> bool {
    let Ok(conf) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    let is_flannel = |p: &Value| p.get("type").and_then(Value::as_str) == Some("flannel");
    is_flannel(&conf)
        || conf
            .get("plugins")
            .and_then(Value::as_array)
            .is_some_and(|plugins| plugins.iter().any(is_flannel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flannel_is_recognised_by_the_plugin_type() {
        // kube-flannel.yml's conflist.
        assert!(uses_flannel(
            r#"{"name": "cbr0", "cniVersion": "0.3.1", "plugins": [
                {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
                {"type": "portmap", "capabilities": {"portMappings": true}}]}"#
        ));
        assert!(uses_flannel(r#"{"name": "cbr0", "type": "flannel"}"#));
        assert!(!uses_flannel(
            r#"{"name": "cbr0", "plugins": [{"type": "tweed", "bridge": "cni0"}]}"#
        ));
        assert!(!uses_flannel(r#"{"name": "flannel", "type": "bridge"}"#));
        assert!(!uses_flannel("not json, mentions \"type\": \"flannel\""));
    }

    #[test]
    fn config_names_are_the_runtimes_and_the_installers() {
        for name in [
            "10-flannel.conflist",
            "10-flannel.conf",
            "x.json",
            "10-flannel.conflist.tweed-replaced",
            "10-flannel.conflist.tweed-replaced.2",
        ] {
            assert!(is_config_name(Path::new(name)), "{name}");
        }
        for name in [
            "README",
            "10-flannel.conflist.bak",
            "flannel",
            "x.tweed-replaced.old",
        ] {
            assert!(!is_config_name(Path::new(name)), "{name}");
        }
    }
}
