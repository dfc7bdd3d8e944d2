//! `tweedctl install-cni`: what the DaemonSet's init container runs to put
//! the plugin into the node's CNI bin dir and the conflist into its conf
//! dir, its `cniVersion` fitted to the chained plugins the node has
//! ([`crate::chain_version`]). Each file is written beside its target under a hidden name, synced,
//! and renamed into place, so kubelet and the runtime never see half a
//! binary or half a conflist (a half-written conflist is a node that
//! cannot start pods).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;
use thiserror::Error;

use crate::flannel_network;
use crate::take_over::{self, SetAside};

#[derive(Args, Debug)]
pub struct InstallCniArgs {
    /// The plugin binary to install (inside the image).
    #[arg(long, default_value = "/usr/local/bin/tweed")]
    plugin: PathBuf,
    /// The node's CNI bin dir, as mounted into the container.
    #[arg(long, default_value = "/host/opt/cni/bin")]
    bin_dir: PathBuf,
    /// The conflist to install (the ConfigMap's cni-conf.json).
    #[arg(long, default_value = "/etc/tweed/cni-conf.json")]
    conflist: PathBuf,
    /// The node's CNI conf dir, as mounted into the container.
    #[arg(long, default_value = "/host/etc/cni/net.d")]
    conf_dir: PathBuf,
    /// File name of the installed conflist (the runtime takes the
    /// alphabetically first).
    #[arg(long, default_value = "10-tweed.conflist")]
    conf_name: String,
    /// Another CNI config in --conf-dir to set aside once tweed's is in
    /// place (e.g. 10-flannel.conflist): renamed to NAME.tweed-replaced,
    /// never deleted. Repeatable; a missing file is fine.
    #[arg(long, value_name = "NAME")]
    take_over: Vec<String>,
    /// On a node moving from flannel (docs/migration.md): install tweed's
    /// conflist on flannel's CNI network name and bridge, read from
    /// flannel's conflist, and set that conflist aside.
    #[arg(long, env = "TWEED_FLANNEL_COMPAT")]
    flannel_compat: bool,
}

#[derive(Debug, Error)]
pub enum InstallError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable conflist: {why}")]
    BadConflist { path: PathBuf, why: String },
    #[error("--conf-name {0:?} must be a plain file name ending in .conflist")]
    BadName(String),
    #[error("--take-over {name:?} {why}")]
    BadTakeOver { name: String, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks that `bytes` is a conflist with a tweed plugin in it.
pub fn check_conflist(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let bad = |why: String| InstallError::BadConflist {
        path: path.to_path_buf(),
        why,
    };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    for key in ["cniVersion", "name"] {
        if !v[key].is_string() {
            return Err(bad(format!("no {key:?}")));
        }
    }
    let plugins = v["plugins"]
        .as_array()
        .ok_or_else(|| bad("no \"plugins\" list".into()))?;
    if !plugins.iter().any(|p| p["type"] == "tweed") {
        return Err(bad("no plugin of type \"tweed\"".into()));
    }
    Ok(())
}

/// Writes `bytes` to `dir/name` through a hidden temporary file and a
/// rename; `mode` is set before the rename.
pub fn install_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<PathBuf, InstallError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.tweed-{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, &target)?;
        // The rename itself survives a crash only once the directory is
        // synced.
        fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(InstallError::Io {
            path: target,
            source: e,
        });
    }
    Ok(target)
}

pub fn run(args: InstallCniArgs) -> Result<(), InstallError> {
    if args.conf_name.contains('/') || !args.conf_name.ends_with(".conflist") {
        return Err(InstallError::BadName(args.conf_name));
    }
    for name in &args.take_over {
        take_over::check_name(name, &args.conf_name)?;
    }
    let conflist = fs::read(&args.conflist).map_err(io(&args.conflist))?;
    check_conflist(&args.conflist, &conflist)?;
    // check_conflist parsed it already.
    let mut parsed: Value = serde_json::from_slice(&conflist).expect("checked above");
    let mut set_aside = args.take_over.clone();
    if args.flannel_compat {
        let flannel = flannel_network::find(&args.conf_dir).map_err(io(&args.conf_dir))?;
        outln!(
            "--flannel-compat: network {:?} on bridge {:?}, from {}",
            flannel.name,
            flannel.bridge,
            flannel.source
        );
        flannel_network::adopt(&mut parsed, &flannel);
        set_aside.extend(flannel.active_file.filter(|f| !set_aside.contains(f)));
    }
    let fitted = crate::chain_version::fit(parsed, &args.bin_dir);
    for note in &fitted.notes {
        outln!("note: {note}");
    }
    let mut conflist = serde_json::to_vec_pretty(&fitted.conflist).expect("JSON value");
    conflist.push(b'\n');
    let plugin = fs::read(&args.plugin).map_err(io(&args.plugin))?;
    // The binary first: a conflist naming a plugin that is not there yet
    // would fail every pod in between.
    let bin = install_atomically(&args.bin_dir, "tweed", &plugin, 0o755)?;
    outln!("installed {}", bin.display());
    let conf = install_atomically(&args.conf_dir, &args.conf_name, &conflist, 0o644)?;
    outln!("installed {}", conf.display());
    // Only now: setting the other config aside first would leave the node
    // without any for a moment.
    for name in &set_aside {
        match take_over::set_aside(&args.conf_dir, name)? {
            SetAside::Renamed(to) => outln!("took over from {name}: renamed to {}", to.display()),
            SetAside::Absent => outln!(
                "note: no {name} in {} to take over",
                args.conf_dir.display()
            ),
        }
    }
    match take_over::in_force(&args.conf_dir)? {
        Some(first) if first != args.conf_name => eprintln!(
            "warning: {} sorts before {} and is the CNI config containerd and CRI-O use \
             (the first *.conf, *.conflist or *.json file): new pods will not get tweed's \
             network; set it aside with --take-over {first}",
            args.conf_dir.join(&first).display(),
            args.conf_name
        ),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_atomically_and_refuses_a_conflist_without_tweed() {
        let dir = tempfile::tempdir().unwrap();
        let p = install_atomically(dir.path(), "10-tweed.conflist", b"{}", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"{}");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // No temporary file is left beside it.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let ok = br#"{"cniVersion":"1.1.0","name":"tweed","plugins":[{"type":"tweed"}]}"#;
        check_conflist(Path::new("x"), ok).unwrap();
        let no_tweed = br#"{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"bridge"}]}"#;
        assert!(check_conflist(Path::new("x"), no_tweed).is_err());
        assert!(check_conflist(Path::new("x"), b"not json").is_err());
    }
}
