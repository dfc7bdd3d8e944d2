//! Running another IPAM plugin on the pod's behalf, as the CNI spec
//! describes for delegation: same environment, same configuration on
//! stdin, the plugin found on `CNI_PATH`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use tweed_cni::error::CniError;

use crate::errors;

/// Finds `plugin` in the `CNI_PATH` directories.
pub fn find(plugin: &str, cni_path: &[PathBuf]) -> Result<PathBuf, CniError> {
    cni_path
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            let dirs: Vec<String> = cni_path.iter().map(|d| d.display().to_string()).collect();
            CniError::custom(
                errors::DELEGATE_FAILED,
                format!(
                    "ipam.type: plugin {plugin:?} not found in CNI_PATH ({})",
                    if dirs.is_empty() {
                        "empty".to_string()
                    } else {
                        dirs.join(":")
                    }
                ),
            )
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs the delegate with `command`; returns its stdout as JSON (`None`
/// when it printed nothing, as DEL/CHECK/GC/STATUS do). A CNI error from the
/// delegate is passed on with its own code.
pub fn run(
    plugin: &str,
    cni_path: &[PathBuf],
    command: &str,
    stdin: &[u8],
) -> Result<Option<Value>, CniError> {
    let bin = find(plugin, cni_path)?;
    let mut child = Command::new(&bin)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            CniError::custom(
                errors::DELEGATE_FAILED,
                format!("ipam plugin {plugin}: cannot run {}: {e}", bin.display()),
            )
        })?;
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().map_err(|e| {
        CniError::custom(
            errors::DELEGATE_FAILED,
            format!("ipam plugin {plugin}: {e}"),
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed: Option<Value> = if text.trim().is_empty() {
        None
    } else {
        serde_json::from_str(&text).ok()
    };
    if !out.status.success() {
        if let Some(err) = parsed.as_ref().and_then(|v| v.get("code").map(|c| (c, v)))
            && let Some(code) = err.0.as_u64()
        {
            let msg = err.1["msg"].as_str().unwrap_or_default();
            // Its own code, whatever it is: a delegate's 1 (incompatible
            // version) or 7 (invalid config) means the same to the runtime.
            let mut e = CniError::new(code as u32, format!("ipam plugin {plugin}: {msg}"));
            e.details = err.1["details"].as_str().map(str::to_string);
            return Err(e);
        }
        return Err(CniError::custom(
            errors::DELEGATE_FAILED,
            format!(
                "ipam plugin {plugin} failed ({}): {}{}",
                out.status,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    if parsed.is_none() && !text.trim().is_empty() {
        return Err(CniError::custom(
            errors::DELEGATE_FAILED,
            format!(
                "ipam plugin {plugin} printed something that is not JSON: {}",
                text.trim()
            ),
        ));
    }
    Ok(parsed)
}
