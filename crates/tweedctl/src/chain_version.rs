//! The conflist's `cniVersion`, fitted to the plugins the node really has.
//!
//! tweed's conflist chains `portmap` from the node's CNI bin dir, and what
//! version that binary speaks is the node's business: Debian's reference
//! plugins 1.1.1, for one, stop at 1.0.0. A conflist asking 1.1.0 then
//! works for ADD (portmap is skipped when there is nothing to map) but
//! every DEL fails with "incompatible CNI versions", and the pod never goes
//! away. So before the conflist is installed, every other plugin of the
//! chain is asked `VERSION`, and the conflist gets the newest version that
//! every plugin (tweed included) supports and that is not newer than the
//! one asked for.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use tweed_cni::version::{CniVersion, SUPPORTED};

/// What the negotiation decided.
#[derive(Debug, PartialEq, Eq)]
pub struct Fitted {
    /// The conflist to install.
    pub conflist: Value,
    /// One line per plugin that lowered the version, or could not be asked.
    pub notes: Vec<String>,
}

/// The versions `plugin` (a binary in `bin_dir`) answers to `VERSION`;
/// `Err` says why it could not be asked.
fn supported_by(bin_dir: &Path, plugin: &str, asked: &str) -> Result<Vec<String>, String> {
    let bin = bin_dir.join(plugin);
    if !bin.is_file() {
        return Err(format!("{} is not installed", bin.display()));
    }
    let mut child = Command::new(&bin)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(format!(r#"{{"cniVersion":"{asked}"}}"#).as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{} VERSION printed no JSON: {e}", bin.display()))?;
    let list = v["supportedVersions"]
        .as_array()
        .ok_or_else(|| format!("{} VERSION lists no supportedVersions", bin.display()))?;
    Ok(list
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect())
}

/// Fits `conflist`'s `cniVersion` to the plugins in `bin_dir` (see the
/// module doc). A plugin that cannot be asked leaves the version as it is,
/// with a note: refusing to install would leave the node without a network.
pub fn fit(mut conflist: Value, bin_dir: &Path) -> Fitted {
    let asked = conflist["cniVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Ok(asked_version) = asked.parse::<CniVersion>() else {
        return Fitted {
            conflist,
            notes: vec![format!(
                "cniVersion {asked:?} is not one tweed knows; left as it is"
            )],
        };
    };
    let mut candidates: Vec<CniVersion> = SUPPORTED
        .iter()
        .copied()
        .filter(|v| *v <= asked_version)
        .collect();
    let mut notes = Vec::new();
    let others: Vec<String> = conflist["plugins"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["type"].as_str())
                .filter(|t| *t != "tweed")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for plugin in others {
        match supported_by(bin_dir, &plugin, &asked) {
            Ok(theirs) => {
                let before = candidates.last().copied();
                candidates.retain(|v| theirs.iter().any(|t| t == v.as_str()));
                let after = candidates.last().copied();
                if after != before {
                    notes.push(format!(
                        "{plugin} supports {}: cniVersion {}",
                        theirs.join(", "),
                        after.map_or("(none in common)", CniVersion::as_str)
                    ));
                }
            }
            Err(why) => notes.push(format!("{why}; cniVersion not checked against it")),
        }
    }
    match candidates.last() {
        Some(v) if v.as_str() != asked => conflist["cniVersion"] = Value::from(v.as_str()),
        Some(_) => {}
        None => notes.push(format!(
            "no CNI version is common to every plugin of the chain; {asked} left as it is"
        )),
    }
    Fitted { conflist, notes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in plugin answering VERSION with `versions`.
    fn plugin(dir: &Path, name: &str, versions: &str) {
        let p = dir.join(name);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[{versions}]}}'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn conflist(version: &str) -> Value {
        serde_json::json!({"cniVersion": version, "name": "tweed",
            "plugins": [{"type": "tweed"}, {"type": "portmap"}]})
    }

    #[test]
    fn lowers_to_what_every_plugin_speaks() {
        let dir = tempfile::tempdir().unwrap();
        plugin(dir.path(), "portmap", r#""0.3.1","0.4.0","1.0.0""#);
        let f = fit(conflist("1.1.0"), dir.path());
        assert_eq!(f.conflist["cniVersion"], "1.0.0");
        assert_eq!(f.notes.len(), 1, "{:?}", f.notes);
        assert!(f.notes[0].contains("portmap"), "{:?}", f.notes);
    }

    #[test]
    fn keeps_the_version_when_all_speak_it_and_never_raises_it() {
        let dir = tempfile::tempdir().unwrap();
        plugin(dir.path(), "portmap", r#""0.4.0","1.0.0","1.1.0""#);
        let f = fit(conflist("1.1.0"), dir.path());
        assert_eq!(f.conflist["cniVersion"], "1.1.0");
        assert!(f.notes.is_empty());
        let f = fit(conflist("0.4.0"), dir.path());
        assert_eq!(f.conflist["cniVersion"], "0.4.0");
    }

    #[test]
    fn a_missing_plugin_leaves_the_version_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let f = fit(conflist("1.1.0"), dir.path());
        assert_eq!(f.conflist["cniVersion"], "1.1.0");
        assert!(f.notes[0].contains("not installed"), "{:?}", f.notes);
    }
}
